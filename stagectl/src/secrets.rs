//! Secret values and where they must not appear. `Redactor` masks them in every text stagectl
//! shows or stores (terminal output, container logs, exec output, errors, check messages,
//! reports, history, the daemon's API), in the forms they take on the way: as written, inside
//! JSON strings, URL-encoded (path and form), and line by line when a secret spans lines.

use crate::manifest::{Manifest, Service};

/// Fragments shorter than this (a line of a multi-line secret, an encoded form that differs
/// from the value) are not masked on their own: they would match ordinary text.
const MIN_FRAGMENT: usize = 6;

/// Replaces every secret value in text that stagectl is about to show or store.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: Vec<String>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            needles.push(secret.clone());
            let mut forms = vec![
                // Inside a JSON string (quotes, backslashes, control characters escaped).
                serde_json::to_string(secret).map(|q| q[1..q.len() - 1].to_string()).unwrap_or_default(),
                // In a URL path or query (`%40`), and form-encoded (`+` for space).
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string(),
                form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            ];
            // A multi-line secret (a key file) printed or logged line by line.
            forms.extend(secret.lines().map(|l| l.trim().to_string()));
            needles.extend(forms.into_iter().filter(|f| f.len() >= MIN_FRAGMENT && f != secret));
        }
        // Longest first, so a secret that contains another is replaced whole.
        needles.sort_by_key(|s| std::cmp::Reverse(s.len()));
        needles.dedup();
        Redactor { needles }
    }

    /// Everything secret in the manifest: the values of `${secret:…}` references and every
    /// value built from one.
    pub fn for_manifest(manifest: &Manifest) -> Self {
        Redactor::new(manifest.secret_values())
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.needles {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// The service's environment variables whose value came (wholly or partly) from a secret:
/// emptied in images stagectl commits.
pub fn secret_env_names(service: &Service) -> Vec<String> {
    service.env.iter().filter(|(_, v)| v.secret).map(|(k, _)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::Redactor;

    #[test]
    fn secrets_are_masked_longest_first() {
        let r = Redactor::new(vec!["abc".into(), "abcdef".into(), String::new()]);
        assert_eq!(r.apply("key=abcdef other=abc"), "key=*** other=***");
        assert_eq!(r.apply("nothing here"), "nothing here");
    }

    #[test]
    fn json_escaped_and_url_encoded_forms_are_masked() {
        let r = Redactor::new(vec![r#"p@ss "word"/1"#.into()]);
        let json = serde_json::json!({ "dsn": r#"user:p@ss "word"/1@db"# }).to_string();
        assert_eq!(r.apply(&json), r#"{"dsn":"user:***@db"}"#);
        assert_eq!(r.apply("GET /login?pw=p%40ss%20%22word%22%2F1 200"), "GET /login?pw=*** 200");
        assert_eq!(r.apply("body: pw=p%40ss+%22word%22%2F1"), "body: pw=***");
    }

    #[test]
    fn a_multi_line_secret_is_masked_line_by_line() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----";
        let r = Redactor::new(vec![key.into()]);
        assert_eq!(r.apply("line: AQEFAASCBKcwggSjAgEAAoIB"), "line: ***");
        assert_eq!(r.apply(key), "***");
        // Short fragments are left alone: they would match ordinary words.
        let r = Redactor::new(vec!["ab\ncd".into()]);
        assert_eq!(r.apply("ab cd"), "ab cd");
    }
}
