//! The syntax of an `env_file`, as docker compose reads it: one `KEY=VALUE` per line, blank
//! lines and `#` comments ignored, an optional `export ` before the key, values unquoted
//! (trimmed, a ` #` starts a comment), in single quotes (literal) or in double quotes (`\n`,
//! `\t`, `\\`, `\"`, `\$` escapes; may span lines). A line with only `KEY` takes the value from
//! the variables stagectl reads (environment, `.env`), or is skipped when there is none.
//! Values are taken literally: no `${...}` interpolation. Errors never quote a value, which
//! may be a secret.

use std::collections::BTreeMap;

/// One variable read from the file, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A problem at a 1-based line and column of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {kind}")]
pub struct EnvFileError {
    pub line: usize,
    pub column: usize,
    pub kind: EnvFileErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileErrorKind {
    #[error("invalid variable name `{0}` (letters, digits, `_`, `.` and `-`, not starting with a digit)")]
    BadName(String),
    #[error("the value of `{0}` has an unclosed {1} quote")]
    Unclosed(String, &'static str),
    #[error("unexpected text after the closing quote of `{0}`'s value")]
    AfterQuote(String),
}

/// Every `KEY=VALUE` of `text` in file order; `lookup` answers a bare `KEY` line.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<EnvEntry>, EnvFileError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let raw = lines[i];
        i += 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let (body, body_at) = match trimmed.strip_prefix("export ") {
            Some(rest) => (rest.trim_start(), indent + (trimmed.len() - rest.trim_start().len())),
            None => (trimmed, indent),
        };
        let column = |byte: usize| raw[..byte.min(raw.len())].chars().count() + 1;
        let (key, rest) = match body.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v)),
            None => (body.trim_end(), None),
        };
        if !valid_key(key) {
            return Err(EnvFileError { line: line_no, column: column(body_at), kind: EnvFileErrorKind::BadName(shorten(key)) });
        }
        let Some(rest) = rest else {
            if let Some(value) = lookup(key) {
                out.push(EnvEntry { key: key.to_string(), value, line: line_no });
            }
            continue;
        };
        let value_at = body_at + body.len() - rest.len();
        let value_text = rest.trim_start();
        let quote_at = value_at + rest.len() - value_text.len();
        let value = match value_text.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let kind = if q == '"' { "double" } else { "single" };
                // The quoted value may continue on the following lines.
                let mut buf = value_text[1..].to_string();
                let (value, after) = loop {
                    if let Some((v, after)) = closing(&buf, q) {
                        break (v, after);
                    }
                    if i >= lines.len() {
                        return Err(EnvFileError {
                            line: line_no,
                            column: column(quote_at),
                            kind: EnvFileErrorKind::Unclosed(key.to_string(), kind),
                        });
                    }
                    buf.push('\n');
                    buf.push_str(lines[i]);
                    i += 1;
                };
                let after = after.trim_start();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(EnvFileError { line: i, column: 1, kind: EnvFileErrorKind::AfterQuote(key.to_string()) });
                }
                value
            }
            _ => {
                let without_comment = match value_text.find(" #").or_else(|| value_text.find("\t#")) {
                    Some(at) => &value_text[..at],
                    None => value_text,
                };
                without_comment.trim_end().to_string()
            }
        };
        out.push(EnvEntry { key: key.to_string(), value, line: line_no });
    }
    Ok(out)
}

/// Later entries override earlier ones.
pub fn to_map(entries: Vec<EnvEntry>) -> BTreeMap<String, String> {
    entries.into_iter().map(|e| (e.key, e.value)).collect()
}

/// The value up to the closing quote `q` (escapes applied in double quotes) and what follows it.
fn closing(text: &str, q: char) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c == q {
            return Some((value, &text[at + c.len_utf8()..]));
        }
        if c == '\\' && q == '"' {
            match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, e @ ('\\' | '"' | '$'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return None,
            }
            continue;
        }
        value.push(c);
    }
    None
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A key as shown in an error: at most 40 characters.
fn shorten(key: &str) -> String {
    if key.chars().count() <= 40 {
        key.to_string()
    } else {
        format!("{}…", key.chars().take(40).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
        let lookup = |k: &str| (k == "FROM_ENV").then(|| "outside".to_string());
        parse(text, &lookup).map(|v| v.into_iter().map(|e| (e.key, e.value)).collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn compose_syntax_is_read() {
        let text = "# comment\n\nA=1\nexport B = two words # note\nC='lit $X \\n'\nD=\"a\\nb \\\"q\\\"\"\nE=\nFROM_ENV\nMISSING\nF=x#y\nG=\"multi\nline\"\n";
        assert_eq!(
            read(text).unwrap(),
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "lit $X \\n"),
                ("D", "a\nb \"q\""),
                ("E", ""),
                ("FROM_ENV", "outside"),
                ("F", "x#y"),
                ("G", "multi\nline")
            ])
        );
    }

    #[test]
    fn problems_have_line_and_column_and_never_the_value() {
        let e = read("A=1\n  1BAD=secret\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = read("A=1\nB=\"hunter2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert!(e.to_string().contains("unclosed double quote") && !e.to_string().contains("hunter2"), "{e}");
        let e = read("B='x' y\n").unwrap_err();
        assert_eq!(e.kind, EnvFileErrorKind::AfterQuote("B".into()));
    }

    #[test]
    fn the_last_definition_wins() {
        let map = to_map(parse("A=1\nA=2\n", &|_| None).unwrap());
        assert_eq!(map["A"], "2");
    }
}
