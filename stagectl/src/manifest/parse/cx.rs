//! The parse context [`Cx`] and the generic typed readers every section uses: each reads one
//! TOML value as the type a field needs, or records why it cannot and returns `None`.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::vars::{Interpolated, VarSource};
use crate::manifest::{parse_duration, Service};

pub(super) type Span = Range<usize>;
pub(super) type Value<'i> = Spanned<DeValue<'i>>;
/// A table key with its position, e.g. the `db` of `[services.db]`.
pub(super) type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;

/// What the walk needs from its caller, plus every problem found so far.
pub(super) struct Cx<'a> {
    pub src: &'a str,
    /// Directory relative paths are resolved against.
    pub dir: &'a Path,
    pub vars: &'a VarSource,
    pub dir_exists: &'a dyn Fn(&Path) -> bool,
    pub diags: Vec<Diagnostic>,
}

/// "a string", "an integer", ... for type errors.
pub(super) fn kind_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The value of a TOML integer in any radix (`0x1F`, `1_000`); `None` for other types.
pub(super) fn integer(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
}

/// An HTTP status code (100-599); `None` for anything else, which the caller reports.
pub(super) fn http_status(v: &Value<'_>) -> Option<u16> {
    integer(v.get_ref()).filter(|n| (100..=599).contains(n)).map(|n| n as u16)
}

/// A lowercase DNS label: what a stack or service name must be, as it becomes a host name.
pub(super) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A hint suffix such as ", e.g. `my-app`" when lowercasing and `_` → `-` make `name` a valid
/// label; empty otherwise.
pub(super) fn suggest_label(name: &str) -> String {
    let fixed = name.to_ascii_lowercase().replace(['_', '.', ' '], "-");
    if fixed != name && is_dns_label(&fixed) {
        format!(", e.g. `{fixed}`")
    } else {
        String::new()
    }
}

/// The value of `key` in the service's environment, or `default`: connection settings
/// (database, user) default to what the image was configured with.
pub(super) fn env_or(service: &Service, key: &str, default: &str) -> String {
    service.env.get(key).map(|v| v.value.clone()).unwrap_or_else(|| default.to_string())
}

impl Cx<'_> {
    pub fn type_error(&mut self, span: Span, what: &str, expected: &str, found: &DeValue<'_>) {
        self.diags.push(Diagnostic::new(span, format!("{what} must be {expected}, found {}", kind_name(found))));
    }

    /// Adds a hint to the diagnostic pushed last.
    pub fn help_last(&mut self, help: impl Into<String>) {
        if let Some(d) = self.diags.last_mut() {
            d.help = Some(help.into());
        }
    }

    pub fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                let help = match did_you_mean(name, allowed) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of: {}", allowed.join(", ")),
                };
                self.diags.push(Diagnostic::new(key.span(), format!("unknown key `{name}` in {context}")).help(help));
            }
        }
    }

    pub fn table<'t, 'i>(&mut self, v: &'t Value<'i>, what: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.type_error(v.span(), what, "a table", other);
                None
            }
        }
    }

    /// A plain string, not interpolated.
    pub fn raw_string<'t>(&mut self, v: &'t Value<'_>, what: &str) -> Option<&'t str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s),
            other => {
                self.type_error(v.span(), what, "a string", other);
                None
            }
        }
    }

    /// A string with `${...}` interpolation; secrets only where `allow_secrets`.
    pub fn string(&mut self, v: &Value<'_>, what: &str, allow_secrets: bool) -> Option<Interpolated> {
        let raw = self.raw_string(v, what)?;
        self.vars.interpolate(raw, &v.span(), self.src, allow_secrets, &mut self.diags)
    }

    /// An interpolated string that may not contain secrets.
    pub fn plain_string(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        self.string(v, what, false).map(|i| i.value)
    }

    /// Every item with its span; `None` if any item is not a string (each such item is reported).
    pub fn string_array(&mut self, v: &Value<'_>, what: &str) -> Option<Vec<(String, Span)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(v.span(), what, "an array of strings", v.get_ref());
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(_) => match self.plain_string(item, what) {
                    Some(s) => out.push((s, item.span())),
                    None => ok = false,
                },
                other => {
                    self.diags.push(Diagnostic::new(
                        item.span(),
                        format!("{what} must be an array of strings, found {} in it", kind_name(other)),
                    ));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A non-empty argument vector; a single string gets a hint on how to split it.
    pub fn command(&mut self, v: &Value<'_>, what: &str) -> Option<Vec<String>> {
        if let DeValue::String(s) = v.get_ref() {
            self.diags.push(
                Diagnostic::new(v.span(), format!("{what} must be an array of strings, found a string"))
                    .help(format!("split it into arguments, e.g. [\"sh\", \"-c\", {:?}]", s.as_ref() as &str)),
            );
            return None;
        }
        let items = self.string_array(v, what)?;
        if items.is_empty() {
            self.diags.push(Diagnostic::new(v.span(), format!("{what} must not be empty")));
            return None;
        }
        Some(items.into_iter().map(|(s, _)| s).collect())
    }

    pub fn boolean(&mut self, v: &Value<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.type_error(v.span(), what, "true or false", other);
                None
            }
        }
    }

    pub fn port_number(&mut self, v: &Value<'_>, what: &str) -> Option<u16> {
        match integer(v.get_ref()) {
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(n) => {
                self.diags.push(Diagnostic::new(v.span(), format!("{what} {n} is out of range")).help("ports are 1 to 65535"));
                None
            }
            None => {
                self.type_error(v.span(), what, "an integer port", v.get_ref());
                None
            }
        }
    }

    /// A positive duration written with units, e.g. "500ms" or "1m30s".
    pub fn duration(&mut self, v: &Value<'_>, what: &str) -> Option<Duration> {
        let text = self.raw_string(v, what)?;
        match parse_duration(text) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.diags.push(
                    Diagnostic::new(v.span(), format!("invalid duration `{text}` for {what}"))
                        .help("write a number with a unit: ms, s, m or h, e.g. \"500ms\", \"20s\", \"1m30s\""),
                );
                None
            }
        }
    }

    /// The service a `[fixtures.NAME]` or `[migrations.NAME]` table is keyed by; an unknown name
    /// is reported with a suggestion, or with `fallback_help` when nothing is close.
    pub fn keyed_service<'s>(&mut self, key: &Key<'_>, services: &'s [Service], section: &str, fallback_help: &str) -> Option<&'s Service> {
        let name: &str = key.get_ref();
        if let Some(service) = services.iter().find(|s| s.name == name) {
            return Some(service);
        }
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        let help = match did_you_mean(name, &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => fallback_help.to_string(),
        };
        self.diags.push(Diagnostic::new(key.span(), format!("{section} for unknown service `{name}`")).help(help));
        None
    }
}
