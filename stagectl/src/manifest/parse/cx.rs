//! The parse context [`Cx`] and the generic typed readers every section uses: each reads one
//! TOML value as the type a field needs, or records why it cannot and returns `None`.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::vars::{Interpolated, VarSource};
use crate::manifest::{format_duration, parse_duration, DurationError, ReadFile, Service, MAX_TIMEOUT, MIN_DURATION};

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
    /// Reads a file the manifest names (`env_file`).
    pub read_file: ReadFile<'a>,
    pub diags: Vec<Diagnostic>,
    /// The values of every `${secret:NAME}` the manifest uses, wherever it uses them.
    pub secrets: std::collections::BTreeSet<String>,
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

/// The value of a TOML integer in any radix (`0x1F`, `1_000`); `None` for other types and for a
/// literal beyond 64 bits (TOML does not allow one; the parser lets it through).
pub(super) fn exact_integer(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
}

/// Like [`exact_integer`], but a literal beyond 64 bits saturates, so every range check rejects
/// it as out of range rather than as "not an integer".
pub(super) fn integer(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    Some(exact_integer(v).unwrap_or(if i.as_str().starts_with('-') { i64::MIN } else { i64::MAX }))
}

/// The value of a TOML float (`1_000.5`, `nan`, `-inf`, `1e400` = inf); `None` for other types.
pub(super) fn float(v: &DeValue<'_>) -> Option<f64> {
    let f = v.as_float()?;
    Some(f.as_str().replace('_', "").parse::<f64>().unwrap_or(f64::NAN))
}

/// Names for a hint: all of them up to ten, else the first ten and how many more.
pub(super) fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    format!("{} and {} more", names[..SHOWN].join(", "), names.len() - SHOWN)
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
        let value = self.vars.interpolate(raw, &v.span(), self.src, allow_secrets, &mut self.diags)?;
        if value.secret {
            // The secret itself, not only the value built from it, must be masked wherever it
            // shows up alone (an app that logs its password, a header echoed back).
            for name in raw.split("${secret:").skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name)) {
                if let Some(secret) = self.vars.secrets.get(name) {
                    self.secrets.insert(secret.clone());
                }
            }
        }
        Some(value)
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
            Some(_) => {
                let literal = self.src.get(v.span()).unwrap_or("").trim();
                self.diags.push(Diagnostic::new(v.span(), format!("{what} {literal} is out of range")).help("ports are 1 to 65535"));
                None
            }
            None => {
                self.type_error(v.span(), what, "an integer port", v.get_ref());
                None
            }
        }
    }

    /// A timeout, interval or budget written with units, e.g. "500ms" or "1m30s": from
    /// [`MIN_DURATION`] to [`MAX_TIMEOUT`].
    pub fn duration(&mut self, v: &Value<'_>, what: &str) -> Option<Duration> {
        self.duration_up_to(v, what, MAX_TIMEOUT)
    }

    /// A duration from [`MIN_DURATION`] to `max`. Out-of-range values (zero, negative, too long
    /// for a `Duration`) are reported with the allowed range, so that no arithmetic on an
    /// accepted value (`Instant + timeout`) can overflow.
    pub fn duration_up_to(&mut self, v: &Value<'_>, what: &str, max: Duration) -> Option<Duration> {
        if let DeValue::Integer(_) | DeValue::Float(_) = v.get_ref() {
            let literal = self.src.get(v.span()).unwrap_or("").trim().to_string();
            self.type_error(v.span(), what, "a string with a unit", v.get_ref());
            if !literal.is_empty() && literal.len() <= 20 && literal.chars().all(|c| c.is_ascii_digit() || c == '.') {
                self.help_last(format!("write it in quotes with a unit, e.g. \"{literal}s\" or \"{literal}ms\""));
            } else {
                self.help_last("write it in quotes with a unit, e.g. \"500ms\", \"20s\", \"1m30s\"");
            }
            return None;
        }
        let text = self.raw_string(v, what)?;
        let range = format!("from {} to {}", format_duration(MIN_DURATION), format_duration(max));
        match parse_duration(text) {
            Ok(d) if (MIN_DURATION..=max).contains(&d) => Some(d),
            Ok(_) | Err(DurationError::Negative | DurationError::TooLong) => {
                self.diags.push(
                    Diagnostic::new(v.span(), format!("duration `{text}` for {what} is out of range"))
                        .help(format!("{what} must be {range} (units: ms, s, m, h)")),
                );
                None
            }
            Err(DurationError::Syntax) => {
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
