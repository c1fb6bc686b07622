//! `[services.NAME.ready]`: exactly one probe (tcp, postgres, mysql, http, exec, log, healthcheck)
//! plus its timing: `timeout` (the deadline for being ready), `interval` (between attempts),
//! and, as compose users know them from `healthcheck`, `attempt_timeout` (compose's
//! `timeout`: one attempt), `retries` and `start_period`.

use toml::de::{DeTable, DeValue};

use std::time::Duration;

use super::cx::{http_status, integer, Cx, Value};
use crate::manifest::diag::Diagnostic;
use crate::manifest::{PortMapping, Probe, Readiness, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_READY_INTERVAL, DEFAULT_READY_TIMEOUT};

pub(super) const READY_KEYS: &[&str] = &[
    "tcp",
    "postgres",
    "mysql",
    "http",
    "exec",
    "log",
    "healthcheck",
    "port",
    "status",
    "timeout",
    "interval",
    "attempt_timeout",
    "retries",
    "start_period",
];
/// Most `retries` accepted.
const MAX_RETRIES: i64 = 1_000_000;
const PROBE_KINDS: &[&str] = &["tcp", "postgres", "mysql", "http", "exec", "log", "healthcheck"];
/// Keys that only an http probe uses.
const HTTP_ONLY_KEYS: [&str; 2] = ["port", "status"];

/// The service an http probe belongs to and its published ports, where the probe's port
/// defaults from.
struct ServicePorts<'a> {
    service: &'a str,
    mappings: &'a [PortMapping],
    /// Every entry of `ports` parsed (so `mappings` is the full list).
    complete: bool,
}

impl Cx<'_> {
    /// `ports_complete`: every entry of the service's `ports` parsed (so `ports` is the full list).
    pub(super) fn ready(&mut self, v: &Value<'_>, service: &str, ports: &[PortMapping], ports_complete: bool) -> Option<Readiness> {
        let t = self.table(v, &format!("`services.{service}.ready`"))?;
        let context = format!("`services.{service}.ready`");
        self.unknown_keys(t, READY_KEYS, &context);
        let kind = self.probe_kind(v, t, &context)?;
        let field = |k: &str| format!("`services.{service}.ready.{k}`");
        self.http_only_keys(t, kind, service);
        let pv = &t[kind];
        let probe = match kind {
            "tcp" => self.port_number(pv, &field("tcp")).map(|port| Probe::Tcp { port }),
            "postgres" => self.port_number(pv, "postgres probe port").map(|port| Probe::Postgres { port }),
            "mysql" => self.port_number(pv, "mysql probe port").map(|port| Probe::Mysql { port }),
            "http" => self.http_probe(pv, t, ServicePorts { service, mappings: ports, complete: ports_complete }),
            "exec" => self.command(pv, &field("exec")).map(|command| Probe::Exec { command }),
            "log" => self.log_probe(pv, service),
            _ => self.healthcheck_probe(pv, service),
        };
        // Each field is checked even when another has a problem, so all are reported at once.
        let timeout = match t.get("timeout") {
            Some(d) => self.duration(d, &field("timeout")),
            None => Some(DEFAULT_READY_TIMEOUT),
        };
        let interval = match t.get("interval") {
            Some(d) => self.duration(d, &field("interval")),
            None => Some(DEFAULT_READY_INTERVAL),
        };
        let attempt_timeout = match t.get("attempt_timeout") {
            Some(d) => self.duration(d, &field("attempt_timeout")),
            None => Some(DEFAULT_ATTEMPT_TIMEOUT),
        };
        let start_period = match t.get("start_period") {
            Some(d) => self.duration(d, &field("start_period")),
            None => Some(Duration::ZERO),
        };
        let retries = match t.get("retries") {
            Some(r) => match integer(r.get_ref()) {
                Some(n) if (1..=MAX_RETRIES).contains(&n) => Some(Some(n as u32)),
                _ => {
                    self.diags.push(
                        Diagnostic::new(r.span(), format!("{} must be a whole number from 1 to {MAX_RETRIES}", field("retries")))
                            .help("the service fails after this many failed probe attempts (counted after `start_period`)"),
                    );
                    None
                }
            },
            None => Some(None),
        };
        Some(Readiness {
            probe: probe?,
            timeout: timeout?,
            interval: interval?,
            attempt_timeout: attempt_timeout?,
            retries: retries?,
            start_period: start_period?,
        })
    }

    /// The one probe key present in the table.
    fn probe_kind(&mut self, v: &Value<'_>, t: &DeTable<'_>, context: &str) -> Option<&'static str> {
        let kinds: Vec<&'static str> = PROBE_KINDS.iter().copied().filter(|k| t.contains_key(*k)).collect();
        if let [kind] = kinds.as_slice() {
            return Some(kind);
        }
        let msg = if kinds.is_empty() {
            format!("{context} needs a probe")
        } else {
            format!("{context} has more than one probe ({})", kinds.join(", "))
        };
        self.diags.push(
            Diagnostic::new(v.span(), msg).help(
                "use exactly one of: tcp = PORT, postgres = PORT, mysql = PORT, http = \"/path\", exec = [..], log = \"regex\", healthcheck = true",
            ),
        );
        None
    }

    /// Reports `port` and `status` beside a probe other than http.
    fn http_only_keys(&mut self, t: &DeTable<'_>, kind: &str, service: &str) {
        if kind == "http" {
            return;
        }
        for key in HTTP_ONLY_KEYS {
            let Some(x) = t.get(key) else { continue };
            let help = if key == "port" && matches!(kind, "tcp" | "postgres" | "mysql") {
                format!("remove it: a {kind} probe connects to the port given as `{kind} = PORT`")
            } else {
                format!("remove it: a {kind} probe does not use `{key}`")
            };
            self.diags
                .push(Diagnostic::new(x.span(), format!("`services.{service}.ready.{key}` only applies to an http probe")).help(help));
        }
    }

    /// `http = "/path"`, with `port` (default: the service's only port) and `status` (default 200).
    fn http_probe(&mut self, pv: &Value<'_>, t: &DeTable<'_>, ports: ServicePorts<'_>) -> Option<Probe> {
        let service = ports.service;
        let field = |k: &str| format!("`services.{service}.ready.{k}`");
        let path = self.plain_string(pv, &field("http"))?;
        if !path.starts_with('/') {
            self.diags.push(
                Diagnostic::new(pv.span(), format!("http probe path `{path}` in {} must start with `/`", field("http")))
                    .help(format!("write http = \"/{path}\"")),
            );
            return None;
        }
        let port = match t.get("port") {
            Some(p) => self.port_number(p, &field("port"))?,
            None => self.http_probe_default_port(pv, &ports)?,
        };
        let status = match t.get("status") {
            Some(s) => match http_status(s) {
                Some(n) => n,
                None => {
                    self.diags.push(
                        Diagnostic::new(s.span(), format!("{} must be an HTTP status code (100-599)", field("status")))
                            .help("write e.g. `status = 204`"),
                    );
                    return None;
                }
            },
            None => 200,
        };
        Some(Probe::Http { port, path, status })
    }

    /// The container port of the service's only published port.
    fn http_probe_default_port(&mut self, pv: &Value<'_>, ports: &ServicePorts<'_>) -> Option<u16> {
        match ports.mappings {
            [only] => return Some(only.container_port),
            // A port that failed to parse is reported already; guessing here would mislead.
            _ if !ports.complete => return None,
            _ => {}
        }
        let why =
            if ports.mappings.is_empty() { "publishes no ports".to_string() } else { format!("publishes {} ports", ports.mappings.len()) };
        let example = ports.mappings.first().map_or(8080, |p| p.container_port);
        self.diags.push(
            Diagnostic::new(
                pv.span(),
                format!("the http probe in `services.{}.ready` needs a `port`: service `{}` {why}", ports.service, ports.service),
            )
            .help(format!("add `port = {example}` (the container port to probe)")),
        );
        None
    }

    /// `log = "regex"`: ready once a log line matches.
    fn log_probe(&mut self, pv: &Value<'_>, service: &str) -> Option<Probe> {
        let what = format!("`services.{service}.ready.log`");
        let pattern = self.plain_string(pv, &what)?;
        if let Err(e) = regex::Regex::new(&pattern) {
            let last = e.to_string().lines().last().unwrap_or("").trim().to_string();
            let why = last.strip_prefix("error: ").unwrap_or(&last);
            self.diags.push(
                Diagnostic::new(pv.span(), format!("invalid regex in {what}: {why}")).help(
                    "the pattern is a Rust regex; escape a literal ( [ { . * + ? with a backslash (`\\\\(` in a \"...\" TOML string)",
                ),
            );
            return None;
        }
        Some(Probe::Log { pattern })
    }

    /// `healthcheck = true`: the image's own HEALTHCHECK.
    fn healthcheck_probe(&mut self, pv: &Value<'_>, service: &str) -> Option<Probe> {
        if let DeValue::Boolean(true) = pv.get_ref() {
            return Some(Probe::Healthcheck);
        }
        self.diags.push(
            Diagnostic::new(pv.span(), format!("`services.{service}.ready.healthcheck` must be `true`"))
                .help("write `healthcheck = true` to wait for the image's HEALTHCHECK, or remove `ready` to skip readiness checks"),
        );
        None
    }
}
