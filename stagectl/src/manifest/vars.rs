//! Variable interpolation in manifest strings.
//!
//! Only the braced forms are interpolated, so `$HOME` inside a shell command stays literal:
//! `${NAME}`, `${NAME:-default}` (default used when NAME is unset or empty), `${secret:NAME}`, and
//! `$$` for a literal dollar sign.

use std::collections::BTreeMap;
use std::ops::Range;

use super::diag::Diagnostic;

/// Where variable and secret values come from. Built once per load; pure afterwards.
#[derive(Debug, Clone, Default)]
pub struct VarSource {
    /// Process environment merged over the `.env` file (the environment wins, as in Compose).
    pub vars: BTreeMap<String, String>,
    /// Secret values by name: `STAGECTL_SECRET_<NAME>` from the environment, then the secrets file.
    pub secrets: BTreeMap<String, String>,
    /// Human description of where secrets are looked up, for hints.
    pub secrets_file_hint: String,
}

/// The result of interpolating one string.
#[derive(Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub value: String,
    /// True when any part came from a secret: the value must never be shown.
    pub secret: bool,
}

impl std::fmt::Debug for Interpolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secret {
            f.write_str("\"***\"")
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl VarSource {
    /// Interpolates `raw`, whose TOML value sits at `span` in `source`. Problems are pushed to
    /// `diags`; the return value is `None` when any were found.
    pub fn interpolate(
        &self,
        raw: &str,
        span: &Range<usize>,
        source: &str,
        allow_secrets: bool,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Interpolated> {
        let mut out = String::with_capacity(raw.len());
        let mut secret = false;
        let mut ok = true;
        let mut rest = raw;
        let mut consumed = 0usize;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let here = consumed + pos;
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                consumed += pos + 2;
                rest = stripped;
                continue;
            }
            if !after.starts_with('{') {
                out.push('$');
                consumed += pos + 1;
                rest = after;
                continue;
            }
            let Some(close) = after.find('}') else {
                diags.push(
                    Diagnostic::new(sub_span(source, span, raw, here, raw.len() - here), "unclosed `${` in value")
                        .help("close it with `}`, or write `$$` for a literal dollar sign"),
                );
                return None;
            };
            let expr = &after[1..close];
            match self.resolve(expr, allow_secrets) {
                Ok(value) => {
                    out.push_str(value.text);
                    secret |= value.secret;
                }
                Err(problem) => {
                    let expr_span = sub_span(source, span, raw, here, close + 2);
                    diags.push(Diagnostic::new(expr_span, problem.to_string()).help(problem.help()));
                    ok = false;
                }
            }
            consumed += pos + 1 + close + 1;
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        ok.then_some(Interpolated { value: out, secret })
    }
}

/// The value of one `${...}` expression.
struct Resolved<'a> {
    text: &'a str,
    /// It came from a secret.
    secret: bool,
}

/// Why a `${...}` expression has no value; `Display` is the diagnostic's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    #[error("secret `{0}` used outside `env`")]
    SecretOutsideEnv(String),
    #[error("invalid secret name `{0}`")]
    InvalidSecretName(String),
    #[error("undefined secret `{name}`")]
    UndefinedSecret {
        name: String,
        /// Where secrets are looked up, for the hint.
        secrets_file_hint: String,
    },
    #[error("invalid variable name `{0}`")]
    InvalidVariableName(String),
    #[error("undefined variable `{0}`")]
    UndefinedVariable(String),
}

impl VarError {
    /// How to fix it.
    pub fn help(&self) -> String {
        match self {
            VarError::SecretOutsideEnv(_) => {
                "secrets may only appear in `env` values, so they never show up in names, logs or status".to_string()
            }
            VarError::InvalidSecretName(_) => "secret names use letters, digits and `_`".to_string(),
            VarError::UndefinedSecret { name, secrets_file_hint } => {
                format!("set STAGECTL_SECRET_{name} in the environment or add `{name}=...` to {secrets_file_hint}")
            }
            VarError::InvalidVariableName(_) => {
                "variable names use letters, digits and `_`; write `$$` for a literal dollar sign".to_string()
            }
            VarError::UndefinedVariable(name) => {
                format!("set {name} in the environment or in .env, or give a default: ${{{name}:-value}}")
            }
        }
    }
}

impl VarSource {
    /// The value of the expression between `${` and `}`: `secret:NAME`, `NAME` or `NAME:-default`
    /// (the default also replaces an empty value).
    fn resolve<'a>(&'a self, expr: &'a str, allow_secrets: bool) -> Result<Resolved<'a>, VarError> {
        if let Some(name) = expr.strip_prefix("secret:") {
            if !allow_secrets {
                return Err(VarError::SecretOutsideEnv(name.to_string()));
            }
            if !valid_name(name) {
                return Err(VarError::InvalidSecretName(name.to_string()));
            }
            return match self.secrets.get(name) {
                Some(v) => Ok(Resolved { text: v, secret: true }),
                None => Err(VarError::UndefinedSecret { name: name.to_string(), secrets_file_hint: self.secrets_file_hint.clone() }),
            };
        }
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if !valid_name(name) {
            return Err(VarError::InvalidVariableName(name.to_string()));
        }
        match (self.vars.get(name).filter(|v| !v.is_empty() || default.is_none()), default) {
            (Some(v), _) => Ok(Resolved { text: v, secret: false }),
            (None, Some(d)) => Ok(Resolved { text: d, secret: false }),
            (None, None) => Err(VarError::UndefinedVariable(name.to_string())),
        }
    }
}

/// Narrows the span of a whole TOML string value to a part of its content when the source text
/// is the literal content between quotes (no escapes); otherwise keeps the whole value's span.
fn sub_span(source: &str, span: &Range<usize>, raw: &str, offset: usize, len: usize) -> Range<usize> {
    let text = source.get(span.clone()).unwrap_or("");
    let quote_len = if text.starts_with("\"\"\"") || text.starts_with("'''") {
        3
    } else if text.starts_with('"') || text.starts_with('\'') {
        1
    } else {
        0
    };
    if quote_len > 0 && text.len() == raw.len() + 2 * quote_len && &text[quote_len..quote_len + raw.len()] == raw {
        let start = span.start + quote_len + offset;
        start..start + len
    } else {
        span.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> VarSource {
        let mut v = VarSource::default();
        v.vars.insert("USER".into(), "alice".into());
        v.vars.insert("EMPTY".into(), String::new());
        v.secrets.insert("api_key".into(), "s3cr3t".into());
        v.secrets_file_hint = "secrets.env".into();
        v
    }

    fn run(raw: &str, allow_secrets: bool) -> (Option<Interpolated>, Vec<Diagnostic>) {
        let src = format!("x = \"{raw}\"");
        let span = 4..src.len();
        let mut diags = vec![];
        let r = source().interpolate(raw, &span, &src, allow_secrets, &mut diags);
        (r, diags)
    }

    #[test]
    fn expands_variables_defaults_and_dollars() {
        assert_eq!(run("hi ${USER}", false).0.unwrap().value, "hi alice");
        assert_eq!(run("${NOPE:-x}", false).0.unwrap().value, "x");
        assert_eq!(run("${EMPTY:-d}", false).0.unwrap().value, "d");
        assert_eq!(run("$$HOME $HOME", false).0.unwrap().value, "$HOME $HOME");
    }

    #[test]
    fn secrets_are_marked_and_hidden_from_debug() {
        let r = run("Bearer ${secret:api_key}", true).0.unwrap();
        assert!(r.secret);
        assert_eq!(r.value, "Bearer s3cr3t");
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn undefined_variable_points_inside_the_string() {
        let (r, d) = run("a ${MISSING} b", false);
        assert!(r.is_none());
        assert_eq!(d[0].message, "undefined variable `MISSING`");
        assert_eq!(d[0].span, 7..17);
    }

    #[test]
    fn an_undefined_secret_says_where_secrets_are_looked_up() {
        let (r, d) = run("${secret:db_pass}", true);
        assert!(r.is_none());
        assert_eq!(d[0].message, "undefined secret `db_pass`");
        assert_eq!(d[0].help.as_deref(), Some("set STAGECTL_SECRET_db_pass in the environment or add `db_pass=...` to secrets.env"));
        assert_eq!(run("${1X:-d}", false).1[0].message, "invalid variable name `1X`");
        assert_eq!(run("${secret:a-b}", true).1[0].message, "invalid secret name `a-b`");
    }

    #[test]
    fn secrets_outside_env_are_refused() {
        let (r, d) = run("${secret:api_key}", false);
        assert!(r.is_none());
        assert_eq!(d[0].message, "secret `api_key` used outside `env`");
    }
}
