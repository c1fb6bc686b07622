//! `[[checks.smoke]]`: one reader per check kind (http, tcp, exec, sql, script) and the latency
//! budget of http checks.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::cx::{env_or, exact_integer, float, http_status, integer, name_list, Cx, Span, Value};
use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::vars::Interpolated;
use crate::manifest::{CheckKind, LatencyBudget, Service, SmokeCheck};

const CHECKS_KEYS: &[&str] = &["smoke"];
pub(super) const SMOKE_KEYS: &[&str] = &["name", "http", "tcp", "exec", "sql", "script", "timeout", "latency"];
const SMOKE_KINDS: &[&str] = &["http", "tcp", "exec", "sql", "script"];
pub(super) const HTTP_CHECK_KEYS: &[&str] =
    &["service", "port", "method", "path", "headers", "body", "expect_status", "expect_body", "expect_body_regex", "expect_json"];
pub(super) const TCP_CHECK_KEYS: &[&str] = &["service", "port"];
pub(super) const EXEC_CHECK_KEYS: &[&str] = &["service", "command", "expect_output"];
pub(super) const SQL_CHECK_KEYS: &[&str] = &["service", "query", "expect", "database", "user"];
pub(super) const LATENCY_KEYS: &[&str] = &["requests", "concurrency", "p95", "p99", "error_rate"];
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

impl Cx<'_> {
    /// `[checks]`: the smoke checks in file order; names must be unique.
    pub(super) fn checks(&mut self, v: &Value<'_>, services: &[Service]) -> Vec<SmokeCheck> {
        let mut smoke: Vec<SmokeCheck> = Vec::new();
        let Some(t) = self.table(v, "`checks`") else { return smoke };
        self.unknown_keys(t, CHECKS_KEYS, "[checks]");
        let Some(sv) = t.get("smoke") else { return smoke };
        let DeValue::Array(items) = sv.get_ref() else {
            self.type_error(sv.span(), "`checks.smoke`", "an array of tables ([[checks.smoke]])", sv.get_ref());
            return smoke;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(c) = self.smoke_check(i, item, services) else { continue };
            if smoke.iter().any(|o| o.name == c.name) {
                self.diags.push(
                    Diagnostic::new(item.span(), format!("two smoke checks are named `{}`", c.name))
                        .help("give each check a unique name: reports are keyed by it"),
                );
            }
            smoke.push(c);
        }
        smoke
    }

    fn smoke_check(&mut self, index: usize, item: &Value<'_>, services: &[Service]) -> Option<SmokeCheck> {
        let what = format!("`checks.smoke[{index}]`");
        let t = self.table(item, &what)?;
        self.unknown_keys(t, SMOKE_KEYS, &format!("[[checks.smoke]] #{}", index + 1));
        let name = match t.get("name") {
            Some(v) => self.plain_string(v, &format!("{what}.name"))?,
            None => {
                self.diags.push(Diagnostic::new(item.span(), format!("{what} needs a `name`")).help("add name = \"home page\""));
                return None;
            }
        };
        let what = format!("check `{name}`");
        let kinds: Vec<&str> = SMOKE_KINDS.iter().copied().filter(|k| t.contains_key(*k)).collect();
        let [kind] = kinds.as_slice() else {
            self.diags.push(
                Diagnostic::new(item.span(), format!("{what} needs exactly one of: {}", SMOKE_KINDS.join(", ")))
                    .help("e.g. http = { service = \"app\", port = 8080, path = \"/\" }"),
            );
            return None;
        };
        let kv = &t[*kind];
        let timeout = match t.get("timeout") {
            Some(d) => self.duration(d, &format!("{what} timeout"))?,
            None => DEFAULT_CHECK_TIMEOUT,
        };
        let kind = match *kind {
            "http" => self.http_check(kv, &name, services)?,
            "tcp" => self.tcp_check(kv, &name, services)?,
            "exec" => self.exec_check(kv, &name, services)?,
            "sql" => self.sql_check(kv, &name, services)?,
            _ => CheckKind::Script { command: self.command(kv, &format!("{what} script"))? },
        };
        let latency = match t.get("latency") {
            Some(lv) => Some(self.latency(lv, &kind, &name)?),
            None => None,
        };
        Some(SmokeCheck { name, kind, timeout, latency })
    }

    /// The `service` a check runs against; it must exist.
    fn check_service<'s>(&mut self, t: &DeTable<'_>, span: Span, what: &str, services: &'s [Service]) -> Option<&'s Service> {
        let Some(v) = t.get("service") else {
            self.diags
                .push(Diagnostic::new(span, format!("{what} needs a `service`")).help("name the service to check, e.g. service = \"app\""));
            return None;
        };
        let name = self.plain_string(v, &format!("{what}.service"))?;
        if let Some(s) = services.iter().find(|s| s.name == name) {
            return Some(s);
        }
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        let help = match did_you_mean(&name, &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("defined services: {}", name_list(&names)),
        };
        self.diags.push(Diagnostic::new(v.span(), format!("{what} names unknown service `{name}`")).help(help));
        None
    }

    fn http_check(&mut self, kv: &Value<'_>, name: &str, services: &[Service]) -> Option<CheckKind> {
        let what = format!("check `{name}`");
        let ht = self.table(kv, &format!("{what} http"))?;
        self.unknown_keys(ht, HTTP_CHECK_KEYS, &format!("the http check `{name}`"));
        let service = self.check_service(ht, kv.span(), &what, services)?;
        let port = match ht.get("port") {
            Some(p) => self.port_number(p, "http check port")?,
            None => match service.ports.as_slice() {
                [only] => only.container_port,
                _ => {
                    self.diags
                        .push(Diagnostic::new(kv.span(), format!("{what} needs a `port`")).help("add port = 8080 (the container port)"));
                    return None;
                }
            },
        };
        let path = match ht.get("path") {
            Some(p) => self.plain_string(p, "http check path")?,
            None => "/".to_string(),
        };
        if !path.starts_with('/') {
            self.diags.push(Diagnostic::new(ht["path"].span(), format!("path `{path}` of {what} must start with `/`")));
            return None;
        }
        let method = match ht.get("method") {
            Some(m) => {
                let method = self.plain_string(m, "http check method")?.to_ascii_uppercase();
                if !is_http_token(&method) {
                    // It used to fall back to GET silently when the request was built.
                    self.diags.push(
                        Diagnostic::new(m.span(), format!("invalid HTTP method `{method}` in {what}"))
                            .help("use a method name such as GET, POST, PUT, DELETE or HEAD"),
                    );
                    return None;
                }
                method
            }
            None => "GET".to_string(),
        };
        let headers = match ht.get("headers") {
            Some(h) => self.headers(h)?,
            None => BTreeMap::new(),
        };
        let body = match ht.get("body") {
            Some(b) => Some(self.plain_string(b, "http check body")?),
            None => None,
        };
        let expect_status = match ht.get("expect_status") {
            Some(s) => self.expect_status(s)?,
            None => 200,
        };
        let expect_body = match ht.get("expect_body") {
            Some(b) => Some(self.plain_string(b, "expect_body")?),
            None => None,
        };
        let expect_body_regex = match ht.get("expect_body_regex") {
            Some(b) => Some(self.body_regex(b, &what)?),
            None => None,
        };
        let expect_json = match ht.get("expect_json") {
            Some(j) => self.expect_json(j)?,
            None => BTreeMap::new(),
        };
        let service = service.name.clone();
        Some(CheckKind::Http { service, port, method, path, headers, body, expect_status, expect_body, expect_body_regex, expect_json })
    }

    /// Request headers; values may hold secrets (they are sent, never shown).
    fn headers(&mut self, v: &Value<'_>) -> Option<BTreeMap<String, Interpolated>> {
        let h = self.table(v, "http check headers")?;
        let mut headers = BTreeMap::new();
        let mut ok = true;
        for (k, v) in h.iter() {
            let name: &str = k.get_ref();
            if !is_http_token(name) {
                self.diags.push(
                    Diagnostic::new(k.span(), format!("invalid HTTP header name `{name}`"))
                        .help("header names are letters, digits and !#$%&'*+-.^_`|~, e.g. \"X-Request-Id\""),
                );
                ok = false;
                continue;
            }
            let Some(value) = self.string(v, &format!("header `{name}`"), true) else {
                ok = false;
                continue;
            };
            // The value is not shown: it may hold a secret.
            if value.value.chars().any(|c| c.is_control() && c != '\t') {
                self.diags.push(
                    Diagnostic::new(v.span(), format!("the value of header `{name}` contains a control character"))
                        .help("header values cannot hold line breaks or other control characters"),
                );
                ok = false;
                continue;
            }
            headers.insert(name.to_string(), value);
        }
        ok.then_some(headers)
    }

    fn expect_status(&mut self, v: &Value<'_>) -> Option<u16> {
        let status = http_status(v);
        if status.is_none() {
            self.diags.push(Diagnostic::new(v.span(), "`expect_status` must be an HTTP status code (100-599)"));
        }
        status
    }

    fn body_regex(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        let r = self.plain_string(v, "expect_body_regex")?;
        if let Err(e) = regex::Regex::new(&r) {
            let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
            self.diags.push(Diagnostic::new(v.span(), format!("invalid regex in {what}: {first}")));
            return None;
        }
        Some(r)
    }

    /// JSON pointer → expected scalar; bad entries are reported and left out.
    fn expect_json(&mut self, v: &Value<'_>) -> Option<BTreeMap<String, serde_json::Value>> {
        let jt = self.table(v, "expect_json")?;
        let mut expect_json = BTreeMap::new();
        for (k, v) in jt.iter() {
            let pointer: &str = k.get_ref();
            if !pointer.starts_with('/') {
                self.diags.push(
                    Diagnostic::new(k.span(), format!("JSON pointer `{pointer}` must start with `/`"))
                        .help("e.g. \"/status\" or \"/items/0/id\""),
                );
                continue;
            }
            let value = match v.get_ref() {
                DeValue::String(s) => serde_json::Value::String(s.to_string()),
                DeValue::Boolean(b) => serde_json::Value::Bool(*b),
                DeValue::Integer(_) => match exact_integer(v.get_ref()) {
                    Some(n) => serde_json::Value::from(n),
                    None => {
                        self.diags.push(
                            Diagnostic::new(v.span(), format!("expected value at `{pointer}` is out of range"))
                                .help("TOML integers are 64-bit; compare a larger number as a string"),
                        );
                        continue;
                    }
                },
                DeValue::Float(_) => match float(v.get_ref()).and_then(serde_json::Number::from_f64) {
                    Some(n) => serde_json::Value::Number(n),
                    None => {
                        self.diags.push(
                            Diagnostic::new(v.span(), format!("expected value at `{pointer}` must be a finite number"))
                                .help("JSON has no NaN or infinity; compare such a value as a string"),
                        );
                        continue;
                    }
                },
                other => {
                    self.type_error(v.span(), &format!("expected value at `{pointer}`"), "a string, number or boolean", other);
                    continue;
                }
            };
            expect_json.insert(pointer.to_string(), value);
        }
        Some(expect_json)
    }

    fn tcp_check(&mut self, kv: &Value<'_>, name: &str, services: &[Service]) -> Option<CheckKind> {
        let what = format!("check `{name}`");
        let tt = self.table(kv, &format!("{what} tcp"))?;
        self.unknown_keys(tt, TCP_CHECK_KEYS, &format!("the tcp check `{name}`"));
        let service = self.check_service(tt, kv.span(), &what, services)?.name.clone();
        let Some(p) = tt.get("port") else {
            self.diags.push(Diagnostic::new(kv.span(), format!("{what} needs a `port`")));
            return None;
        };
        Some(CheckKind::Tcp { service, port: self.port_number(p, "tcp check port")? })
    }

    fn exec_check(&mut self, kv: &Value<'_>, name: &str, services: &[Service]) -> Option<CheckKind> {
        let what = format!("check `{name}`");
        let et = self.table(kv, &format!("{what} exec"))?;
        self.unknown_keys(et, EXEC_CHECK_KEYS, &format!("the exec check `{name}`"));
        let service = self.check_service(et, kv.span(), &what, services)?.name.clone();
        let Some(c) = et.get("command") else {
            self.diags.push(Diagnostic::new(kv.span(), format!("{what} needs a `command`")));
            return None;
        };
        let command = self.command(c, "exec check command")?;
        let expect_output = match et.get("expect_output") {
            Some(o) => Some(self.plain_string(o, "expect_output")?),
            None => None,
        };
        Some(CheckKind::Exec { service, command, expect_output })
    }

    fn sql_check(&mut self, kv: &Value<'_>, name: &str, services: &[Service]) -> Option<CheckKind> {
        let what = format!("check `{name}`");
        let st = self.table(kv, &format!("{what} sql"))?;
        self.unknown_keys(st, SQL_CHECK_KEYS, &format!("the sql check `{name}`"));
        let service = self.check_service(st, kv.span(), &what, services)?;
        let (Some(q), Some(e)) = (st.get("query"), st.get("expect")) else {
            self.diags.push(
                Diagnostic::new(kv.span(), format!("{what} needs `query` and `expect`"))
                    .help("e.g. query = \"select count(*) from products\", expect = \"10\""),
            );
            return None;
        };
        let query = self.plain_string(q, "sql check query")?;
        let expect = match e.get_ref() {
            DeValue::Integer(i) => i.as_str().to_string(),
            _ => self.plain_string(e, "sql check expect")?,
        };
        let database = match st.get("database") {
            Some(d) => self.plain_string(d, "sql check database")?,
            None => env_or(service, "POSTGRES_DB", "postgres"),
        };
        let user = match st.get("user") {
            Some(u) => self.plain_string(u, "sql check user")?,
            None => env_or(service, "POSTGRES_USER", "postgres"),
        };
        Some(CheckKind::Sql { service: service.name.clone(), database, user, query, expect })
    }

    /// The latency budget of an http check: a burst of requests after the check first passes.
    fn latency(&mut self, lv: &Value<'_>, kind: &CheckKind, name: &str) -> Option<LatencyBudget> {
        let what = format!("check `{name}`");
        if !matches!(kind, CheckKind::Http { .. }) {
            self.diags.push(Diagnostic::new(lv.span(), format!("`latency` only applies to http checks ({what} is {})", kind.kind())));
            return None;
        }
        let lt = self.table(lv, "latency")?;
        self.unknown_keys(lt, LATENCY_KEYS, &format!("the latency budget of `{name}`"));
        // Every field is checked even when another has a problem, so all are reported at once.
        let requests = self.latency_count(lt, "requests", 50);
        let concurrency = self.latency_count(lt, "concurrency", 5);
        let p95 = match lt.get("p95") {
            Some(v) => self.duration(v, "latency.p95"),
            None => {
                self.diags.push(
                    Diagnostic::new(lv.span(), format!("the latency budget of {what} needs `p95`"))
                        .help("e.g. latency = { p95 = \"150ms\", requests = 50, concurrency = 5 }"),
                );
                None
            }
        };
        let p99 = lt.get("p99").map(|v| self.duration(v, "latency.p99"));
        let max_error_rate = lt.get("error_rate").map(|v| self.error_rate(v));
        Some(LatencyBudget {
            requests: requests?,
            concurrency: concurrency?,
            p95: p95?,
            p99: p99.map_or(Some(None), |d| d.map(Some))?,
            max_error_rate: max_error_rate.unwrap_or(Some(0.0))?,
        })
    }

    /// `requests` or `concurrency`: 1 to 100000.
    fn latency_count(&mut self, lt: &DeTable<'_>, key: &str, default: u32) -> Option<u32> {
        let Some(v) = lt.get(key) else { return Some(default) };
        match integer(v.get_ref()) {
            Some(n) if (1..=100_000).contains(&n) => Some(n as u32),
            _ => {
                self.diags.push(Diagnostic::new(v.span(), format!("`latency.{key}` must be a whole number from 1 to 100000")));
                None
            }
        }
    }

    /// A fraction from 0.0 to 1.0; an integer (0 or 1) is accepted too.
    fn error_rate(&mut self, v: &Value<'_>) -> Option<f64> {
        let rate = match v.get_ref() {
            DeValue::Float(_) => float(v.get_ref()),
            DeValue::Integer(_) => integer(v.get_ref()).map(|i| i as f64),
            _ => None,
        };
        match rate {
            Some(r) if (0.0..=1.0).contains(&r) => Some(r),
            _ => {
                self.diags.push(
                    Diagnostic::new(v.span(), "`latency.error_rate` must be a fraction from 0.0 to 1.0")
                        .help("e.g. error_rate = 0.01 for 1 %"),
                );
                None
            }
        }
    }
}

/// An HTTP token (RFC 9110): what a method or a header name is made of.
fn is_http_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
