//! The walk over the spanned TOML tree. Each field is checked where it is read and every problem
//! is collected, so one run of `stagectl validate` reports the whole file.
//!
//! One module per manifest section, all reading through the context in `cx`:
//!
//! | module | reads |
//! |---|---|
//! | `cx` | the context `Cx` and the generic typed readers (strings, integers, durations, commands, unknown keys) |
//! | `stack` | `[stack]` |
//! | `service` | `[services.NAME]`: image, build, env, ports, volumes, depends_on, job |
//! | `compose` | the keys people bring from docker compose: env_file, labels, tmpfs, ulimits, shm_size, cap_add/cap_drop, extra_hosts, init, stop_grace_period, profiles, restart |
//! | `ready` | `[services.NAME.ready]`: the readiness probe |
//! | `cross` | what looks across services: unknown dependencies, cycles, host port collisions |
//! | `fixtures` | `[fixtures.NAME]` |
//! | `checks` | `[[checks.smoke]]`, one reader per check kind, and latency budgets |
//! | `migrations` | `[migrations.NAME]` |
//! | `schedule` | `[schedule]` |
//!
//! Sections are read in a fixed order (services before the sections that refer to them), and
//! within a section in file order, which is the order problems are reported in for equal spans.

mod checks;
mod compose;
mod cross;
mod cx;
mod fixtures;
mod migrations;
mod ready;
mod schedule;
mod service;
mod stack;
#[cfg(test)]
mod tests;

use std::path::Path;

use toml::de::DeTable;

use super::diag::{locate, Diagnostic};
use super::vars::VarSource;
use super::{Manifest, ReadFile};
use cx::Cx;

/// A valid `[stack] name` (and project name).
pub(super) fn is_stack_name(name: &str) -> bool {
    cx::is_dns_label(name) && name.len() <= 40
}

pub(super) const TOP_KEYS: &[&str] = &["stack", "services", "fixtures", "checks", "migrations", "schedule"];

pub(super) fn parse(
    src: &str,
    dir: &Path,
    vars: &VarSource,
    dir_exists: &dyn Fn(&Path) -> bool,
    read_file: ReadFile<'_>,
) -> Result<Manifest, Vec<Diagnostic>> {
    let (doc, errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        return Err(errors.iter().map(|e| syntax_error(src, e)).collect());
    }
    let mut cx = Cx { src, dir, vars, dir_exists, read_file, diags: Vec::new(), secrets: Default::default() };
    let doc = doc.into_inner();
    cx.unknown_keys(&doc, TOP_KEYS, "the top level");

    let stack = cx.stack(doc.get("stack"));
    let (services, spans) = cx.services(doc.get("services"));
    cx.cross_checks(&services, &spans);
    let fixtures = doc.get("fixtures").map(|v| cx.fixtures(v, &services, stack.as_deref().unwrap_or(""))).unwrap_or_default();
    cx.condition_checks(&services, &spans, &fixtures);
    let smoke = doc.get("checks").map(|v| cx.checks(v, &services)).unwrap_or_default();
    let migrations = doc.get("migrations").map(|v| cx.migrations(v, &services)).unwrap_or_default();
    let snapshot_budget = cx.snapshot_budget(doc.get("stack"));
    let port_range = cx.port_range(doc.get("stack"));
    let schedule = doc.get("schedule").and_then(|v| cx.schedule(v)).unwrap_or_default();

    match (stack, cx.diags.is_empty()) {
        (Some(stack), true) => {
            let secrets = super::SecretValues(cx.secrets.into_iter().collect());
            Ok(Manifest {
                dir: dir.to_path_buf(),
                file: dir.join("stack.toml"),
                snapshot_scope: stack.clone(),
                stack,
                port_range,
                services,
                fixtures,
                snapshot_budget,
                smoke,
                migrations,
                schedule,
                secrets,
                inactive: Vec::new(),
            })
        }
        _ => Err(cx.diags),
    }
}

/// A TOML syntax error as a diagnostic, with a hint for the common slips.
fn syntax_error(src: &str, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim_end();
    let text = src.get(span.clone()).unwrap_or("").trim();
    let (_, _, line) = locate(src, span.start);
    // "unclosed table, expected `]`" and the like: the caret is where it is missing.
    let missing = message.strip_suffix('`').and_then(|m| m.rsplit_once("expected `")).map(|(_, t)| t);
    if let Some(token) = missing.filter(|t| !t.is_empty()) {
        Diagnostic::new(span, format!("invalid TOML: {message}")).help(format!("insert `{token}` here"))
    } else if text.is_empty() || text.contains('\n') {
        Diagnostic::new(span, format!("invalid TOML: {message}")).help("fix the syntax; see https://toml.io")
    } else if message == "duplicate key" && line.trim_start().starts_with('[') {
        Diagnostic::new(span, format!("invalid TOML: duplicate table {}", line.split('#').next().unwrap_or("").trim()))
            .help("this table is already defined above; merge the two into one")
    } else if message == "duplicate key" {
        Diagnostic::new(span, format!("invalid TOML: duplicate key `{text}`"))
            .help(format!("`{text}` is already set earlier in the same table; keep one definition"))
    } else if message.starts_with("string values must be quoted") && !text.contains(char::is_whitespace) {
        Diagnostic::new(span, format!("invalid TOML: {message}")).help(format!("put the value in quotes: \"{text}\""))
    } else {
        Diagnostic::new(span, format!("invalid TOML: {message}")).help("fix the syntax; see https://toml.io")
    }
}
