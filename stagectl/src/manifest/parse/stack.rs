//! `[stack]`: the stack's name and its snapshot budget.

use super::cx::{suggest_label, Cx, Value};
use crate::manifest::diag::Diagnostic;
use crate::manifest::units::size_in_bytes;
use crate::manifest::{DEFAULT_PORT_RANGE, DEFAULT_SNAPSHOT_BUDGET, MAX_SNAPSHOT_BUDGET};

pub(super) const STACK_KEYS: &[&str] = &["name", "snapshot_budget", "port_range"];

impl Cx<'_> {
    /// The stack name, which prefixes every container, network and volume.
    pub(super) fn stack(&mut self, v: Option<&Value<'_>>) -> Option<String> {
        let Some(v) = v else {
            self.diags.push(Diagnostic::new(0..0, "missing [stack] table").help("start the file with `[stack]` and `name = \"myapp\"`"));
            return None;
        };
        let t = self.table(v, "`stack`")?;
        self.unknown_keys(t, STACK_KEYS, "[stack]");
        let Some(name_v) = t.get("name") else {
            self.diags.push(Diagnostic::new(v.span(), "missing `name` in [stack]").help("add `name = \"myapp\"`"));
            return None;
        };
        let name = self.plain_string(name_v, "`stack.name`")?;
        if !super::is_stack_name(&name) {
            self.diags.push(Diagnostic::new(name_v.span(), format!("invalid stack name `{name}`")).help(format!(
                "use up to 40 lowercase letters, digits and `-`{}; it prefixes every container, network and volume",
                suggest_label(&name)
            )));
            return None;
        }
        Some(name)
    }

    /// `stack.snapshot_budget` in bytes. Read after the other sections, so its problems come
    /// last among those at the same position; a `stack` that is not a table was reported already.
    pub(super) fn snapshot_budget(&mut self, stack: Option<&Value<'_>>) -> u64 {
        let Some(v) = stack.and_then(|s| s.get_ref().as_table()).and_then(|t| t.get("snapshot_budget")) else {
            return DEFAULT_SNAPSHOT_BUDGET;
        };
        let Some(text) = self.raw_string(v, "`stack.snapshot_budget`") else { return DEFAULT_SNAPSHOT_BUDGET };
        match size_in_bytes(text) {
            Some(bytes) if bytes <= MAX_SNAPSHOT_BUDGET as f64 => return bytes as u64,
            Some(_) => self.diags.push(
                Diagnostic::new(v.span(), format!("size `{text}` for `stack.snapshot_budget` is out of range"))
                    .help("`stack.snapshot_budget` must be from 0 to 100TB, e.g. \"512MB\" or \"5GB\""),
            ),
            None => self.diags.push(
                Diagnostic::new(v.span(), format!("invalid size `{text}` for `stack.snapshot_budget`"))
                    .help("write a number with a unit, e.g. \"512MB\" or \"5GB\""),
            ),
        }
        DEFAULT_SNAPSHOT_BUDGET
    }

    /// `stack.port_range = "FIRST-LAST"`: where `"auto:PORT"` host ports are allocated.
    pub(super) fn port_range(&mut self, stack: Option<&Value<'_>>) -> (u16, u16) {
        let Some(v) = stack.and_then(|s| s.get_ref().as_table()).and_then(|t| t.get("port_range")) else {
            return DEFAULT_PORT_RANGE;
        };
        let Some(text) = self.raw_string(v, "`stack.port_range`") else { return DEFAULT_PORT_RANGE };
        match parse_port_range(text) {
            Some(range) => range,
            None => {
                self.diags.push(
                    Diagnostic::new(v.span(), format!("invalid port range `{text}` for `stack.port_range`"))
                        .help("write \"FIRST-LAST\" with 1024 <= FIRST <= LAST <= 65535, e.g. \"20000-20999\""),
                );
                DEFAULT_PORT_RANGE
            }
        }
    }
}

/// `"FIRST-LAST"`, unprivileged ports, FIRST <= LAST.
pub(super) fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (first, last) = text.trim().split_once('-')?;
    let (first, last) = (first.trim().parse::<u16>().ok()?, last.trim().parse::<u16>().ok()?);
    (1024 <= first && first <= last).then_some((first, last))
}
