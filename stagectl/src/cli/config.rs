//! `stagectl config`: the resolved manifest (variables interpolated, defaults applied, paths
//! absolute) as TOML or JSON. Secret values are never printed: every value built from a
//! `${secret:…}` is written as `***`, and the finished text goes through the manifest's
//! `Redactor` as well, so a secret that reached some other field is masked too.

use toml::{Table, Value};

use crate::manifest::{
    format_duration, CheckKind, Fixtures, Interpolated, Loader, Manifest, Migrations, PortMapping, Probe, Service, SmokeCheck, VolumeMount,
    VolumeSource,
};
use crate::secrets::Redactor;

/// What a secret value is shown as.
pub const MASK: &str = "***";

/// The resolved manifest as TOML text, secrets masked.
pub fn toml_text(m: &Manifest) -> String {
    let text = toml::to_string(&document(m)).unwrap_or_default();
    Redactor::for_manifest(m).apply(&text)
}

/// The resolved manifest as pretty JSON text, secrets masked.
pub fn json_text(m: &Manifest) -> String {
    let text = serde_json::to_string_pretty(&document(m)).unwrap_or_default();
    Redactor::for_manifest(m).apply(&text)
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    Value::Array(items.into_iter().map(|i| s(i.as_str())).collect())
}

fn masked(v: &Interpolated) -> Value {
    s(if v.secret { MASK } else { v.value.as_str() })
}

fn duration(d: std::time::Duration) -> Value {
    s(format_duration(d))
}

/// Builds a table from `(key, Option<value>)` pairs, leaving out the `None`s.
fn table<const N: usize>(entries: [(&str, Option<Value>); N]) -> Table {
    entries.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect()
}

fn document(m: &Manifest) -> Table {
    let mut doc = Table::new();
    doc.insert(
        "stack".into(),
        Value::Table(table([
            ("name", Some(s(m.stack.as_str()))),
            ("dir", Some(s(m.dir.display().to_string()))),
            ("snapshot_budget", Some(Value::Integer(i64::try_from(m.snapshot_budget).unwrap_or(i64::MAX)))),
        ])),
    );
    doc.insert("services".into(), Value::Table(m.services.iter().map(|sv| (sv.name.clone(), Value::Table(service(sv)))).collect()));
    if !m.fixtures.is_empty() {
        doc.insert("fixtures".into(), Value::Table(m.fixtures.iter().map(|f| (f.service.clone(), Value::Table(fixtures(f)))).collect()));
    }
    if !m.smoke.is_empty() {
        let mut checks = Table::new();
        checks.insert("smoke".into(), Value::Array(m.smoke.iter().map(|c| Value::Table(smoke(c))).collect()));
        doc.insert("checks".into(), Value::Table(checks));
    }
    if !m.migrations.is_empty() {
        doc.insert(
            "migrations".into(),
            Value::Table(m.migrations.iter().map(|g| (g.service.clone(), Value::Table(migrations(g)))).collect()),
        );
    }
    let schedule =
        table([("rebuild", m.schedule.rebuild.as_ref().map(|c| s(c.as_str()))), ("idle_ttl", m.schedule.idle_ttl.map(duration))]);
    if !schedule.is_empty() {
        doc.insert("schedule".into(), Value::Table(schedule));
    }
    doc
}

pub fn port(p: &PortMapping) -> String {
    let ip = p.host_ip.as_ref().map(|ip| format!("{ip}:")).unwrap_or_default();
    let host = p.host_port.map(|h| format!("{h}:")).unwrap_or_default();
    format!("{ip}{host}{}/{}", p.container_port, p.protocol.as_str())
}

pub fn volume(v: &VolumeMount) -> String {
    let source = match &v.source {
        VolumeSource::Named(n) => n.clone(),
        VolumeSource::Bind(p) => p.display().to_string(),
    };
    format!("{source}:{}{}", v.target, if v.read_only { ":ro" } else { "" })
}

fn service(sv: &Service) -> Table {
    let build = sv.build.as_ref().map(|b| {
        Value::Table(table([
            ("context", Some(s(b.context.display().to_string()))),
            ("dockerfile", Some(s(b.dockerfile.as_str()))),
            ("command", b.command.as_ref().map(|c| s(c.as_str()))),
            ("args", (!b.args.is_empty()).then(|| Value::Table(b.args.iter().map(|(k, v)| (k.clone(), s(v.as_str()))).collect()))),
        ]))
    });
    let ready = sv.ready.as_ref().map(|r| {
        let mut t = probe(&r.probe);
        t.insert("timeout".into(), duration(r.timeout));
        t.insert("interval".into(), duration(r.interval));
        Value::Table(t)
    });
    table([
        ("image", sv.image.as_ref().map(|i| s(i.as_str()))),
        ("build", build),
        ("command", sv.command.as_ref().map(strings)),
        ("entrypoint", sv.entrypoint.as_ref().map(strings)),
        ("env", (!sv.env.is_empty()).then(|| Value::Table(sv.env.iter().map(|(k, v)| (k.clone(), masked(v))).collect()))),
        ("ports", (!sv.ports.is_empty()).then(|| Value::Array(sv.ports.iter().map(|p| s(port(p))).collect()))),
        ("volumes", (!sv.volumes.is_empty()).then(|| Value::Array(sv.volumes.iter().map(|v| s(volume(v))).collect()))),
        ("depends_on", (!sv.depends_on.is_empty()).then(|| strings(&sv.depends_on))),
        ("job", sv.job.then_some(Value::Boolean(true))),
        ("ready", ready),
        ("working_dir", sv.working_dir.as_ref().map(|w| s(w.as_str()))),
        ("user", sv.user.as_ref().map(|u| s(u.as_str()))),
    ])
}

fn probe(p: &Probe) -> Table {
    let port = |n: u16| Some(Value::Integer(n.into()));
    match p {
        Probe::Tcp { port: n } => table([("tcp", port(*n))]),
        Probe::Postgres { port: n } => table([("postgres", port(*n))]),
        Probe::Mysql { port: n } => table([("mysql", port(*n))]),
        Probe::Http { port: n, path, status } => {
            table([("http", Some(s(path.as_str()))), ("port", port(*n)), ("status", Some(Value::Integer((*status).into())))])
        }
        Probe::Exec { command } => table([("exec", Some(strings(command)))]),
        Probe::Log { pattern } => table([("log", Some(s(pattern.as_str())))]),
        Probe::Healthcheck => table([("healthcheck", Some(Value::Boolean(true)))]),
    }
}

fn fixtures(f: &Fixtures) -> Table {
    let loader = match &f.loader {
        Loader::Postgres { database, user } => {
            table([("loader", Some(s("postgres"))), ("database", Some(s(database.as_str()))), ("user", Some(s(user.as_str())))])
        }
        Loader::Mysql { database, user } => {
            table([("loader", Some(s("mysql"))), ("database", Some(s(database.as_str()))), ("user", Some(s(user.as_str())))])
        }
        Loader::Redis => table([("loader", Some(s("redis")))]),
        Loader::Command { command } => table([("loader", Some(s("command"))), ("command", Some(strings(command)))]),
    };
    let mut t = loader;
    t.extend(table([
        ("files", Some(strings(&f.files))),
        ("after", Some(strings(&f.after))),
        ("mask", (!f.mask.is_empty()).then(|| Value::Table(f.mask.iter().map(|(k, r)| (k.clone(), s(r.as_string()))).collect()))),
        ("sensitive", (!f.sensitive.is_empty()).then(|| strings(&f.sensitive))),
        // The masking seed keys an HMAC: knowing it lets one test guesses against masked values.
        ("seed", Some(s(MASK))),
        ("snapshot", Some(Value::Boolean(f.snapshot))),
    ]));
    t
}

fn smoke(c: &SmokeCheck) -> Table {
    let mut t = table([("name", Some(s(c.name.as_str())))]);
    let kind = match &c.kind {
        CheckKind::Http { service, port, method, path, headers, body, expect_status, expect_body, expect_body_regex, expect_json } => {
            table([
                ("service", Some(s(service.as_str()))),
                ("port", Some(Value::Integer((*port).into()))),
                ("method", Some(s(method.as_str()))),
                ("path", Some(s(path.as_str()))),
                ("headers", (!headers.is_empty()).then(|| Value::Table(headers.iter().map(|(k, v)| (k.clone(), masked(v))).collect()))),
                ("body", body.as_ref().map(|b| s(b.as_str()))),
                ("expect_status", Some(Value::Integer((*expect_status).into()))),
                ("expect_body", expect_body.as_ref().map(|b| s(b.as_str()))),
                ("expect_body_regex", expect_body_regex.as_ref().map(|b| s(b.as_str()))),
                (
                    "expect_json",
                    (!expect_json.is_empty())
                        .then(|| Value::Table(expect_json.iter().map(|(k, v)| (k.clone(), s(v.to_string()))).collect())),
                ),
            ])
        }
        CheckKind::Tcp { service, port } => table([("service", Some(s(service.as_str()))), ("port", Some(Value::Integer((*port).into())))]),
        CheckKind::Exec { service, command, expect_output } => table([
            ("service", Some(s(service.as_str()))),
            ("command", Some(strings(command))),
            ("expect_output", expect_output.as_ref().map(|o| s(o.as_str()))),
        ]),
        CheckKind::Sql { service, database, user, query, expect } => table([
            ("service", Some(s(service.as_str()))),
            ("database", Some(s(database.as_str()))),
            ("user", Some(s(user.as_str()))),
            ("query", Some(s(query.as_str()))),
            ("expect", Some(s(expect.as_str()))),
        ]),
        CheckKind::Script { command } => table([("command", Some(strings(command)))]),
    };
    t.insert(c.kind.kind().into(), Value::Table(kind));
    t.insert("timeout".into(), duration(c.timeout));
    if let Some(l) = &c.latency {
        t.insert(
            "latency".into(),
            Value::Table(table([
                ("requests", Some(Value::Integer(l.requests.into()))),
                ("concurrency", Some(Value::Integer(l.concurrency.into()))),
                ("p95", Some(duration(l.p95))),
                ("p99", l.p99.map(duration)),
                ("error_rate", Some(Value::Float(l.max_error_rate))),
            ])),
        );
    }
    t
}

fn migrations(g: &Migrations) -> Table {
    table([
        ("dir", g.dir.as_ref().map(|d| s(d.display().to_string()))),
        ("allow", (!g.allow.is_empty()).then(|| strings(&g.allow))),
        ("database", Some(s(g.database.as_str()))),
        ("user", Some(s(g.user.as_str()))),
        ("port", Some(Value::Integer(g.port.into()))),
        ("lock_budget", Some(duration(g.lock_budget))),
        ("round_trip", Some(Value::Boolean(g.round_trip))),
        ("job", g.job.as_ref().map(|j| s(j.as_str()))),
        ("pending", g.pending.as_ref().map(strings)),
        (
            "sql",
            match &g.sql {
                Some(crate::manifest::MigrationSql::Command(c)) => Some(strings(c)),
                _ => None,
            },
        ),
        (
            "sql_dir",
            match &g.sql {
                Some(crate::manifest::MigrationSql::Dir(d)) => Some(s(d.display().to_string())),
                _ => None,
            },
        ),
    ])
}
