//! A JSON Schema (draft 2020-12) of `stack.toml`, for editors (Taplo / Even Better TOML):
//! completion, hover docs and early errors. It is built from one table per section, and a unit
//! test (`parse/tests.rs`) holds every table to the key list its section reader accepts, so
//! the schema cannot lag behind the parser. The parser stays the authority: the schema
//! describes the shapes, `stagectl validate` checks everything else (references between
//! sections, files, ranges).

use serde_json::{json, Map, Value};

/// One key of a table: its name, its schema, and what it does.
pub struct Key {
    pub name: &'static str,
    pub schema: fn() -> Value,
    pub doc: &'static str,
}

const fn key(name: &'static str, schema: fn() -> Value, doc: &'static str) -> Key {
    Key { name, schema, doc }
}

fn string() -> Value {
    json!({ "type": "string" })
}
fn boolean() -> Value {
    json!({ "type": "boolean" })
}
fn port() -> Value {
    json!({ "type": "integer", "minimum": 1, "maximum": 65535 })
}
fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}
fn string_table() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}
/// `"500ms"`, `"30s"`, `"1m30s"`, `"2h"` (or a `${VAR}` to interpolate).
fn duration() -> Value {
    json!({ "type": "string", "pattern": r"^(([0-9]+(\.[0-9]+)?(ms|s|m|h))+|.*\$\{.*)$", "examples": ["500ms", "30s", "2m"] })
}
fn size() -> Value {
    json!({ "type": "string", "examples": ["512MB", "5GB"] })
}
/// An argv: `["cmd", "arg"]`.
fn argv() -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "minItems": 1 })
}
fn env_table() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": ["string", "integer", "number", "boolean"] } })
}

pub const STACK: &[Key] = &[
    key("name", stack_name, "The stack's name: prefixes every container, network and volume (the default project)."),
    key("snapshot_budget", size, "Disk budget for fixture snapshots; least recently used ones are evicted (default 5GB)."),
    key(
        "port_range",
        || json!({ "type": "string", "pattern": r"^([0-9]+-[0-9]+|.*\$\{.*)$" }),
        "Where `auto:PORT` host ports come from (default \"20000-29999\").",
    ),
];

fn stack_name() -> Value {
    // Or a `${VAR}` to interpolate.
    json!({ "type": "string", "pattern": r"^([a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?|.*\$\{.*)$" })
}

pub const SERVICE: &[Key] = &[
    key("image", string, "Image reference; with `build`, the tag given to the built image."),
    key(
        "build",
        || json!({ "anyOf": [{ "type": "string" }, object(BUILD, &[])] }),
        "Build the image from a context directory (a path, or a table).",
    ),
    key("command", argv, "The container's command (argv array)."),
    key("entrypoint", argv, "The container's entrypoint (argv array)."),
    key("env", env_table, "Environment variables; values may use ${VAR}, ${VAR:-default} and ${secret:NAME}."),
    key(
        "ports",
        || json!({ "type": "array", "items": { "type": ["string", "integer"] } }),
        "\"HOST:CONTAINER\", \"IP:HOST:CONTAINER\", \"auto:CONTAINER\", \"CONTAINER\"; /udp for UDP.",
    ),
    key("volumes", strings, "\"NAME:/path\" (named, owned by the stack) or \"./dir:/path\" (bind); :ro for read-only."),
    key(
        "depends_on",
        || {
            json!({ "anyOf": [
            { "type": "array", "items": { "type": "string" } },
            { "type": "object", "additionalProperties": { "enum": ["ready", "started", "completed"] } }
        ] })
        },
        "Services that must be ready (jobs: completed) first; or a table service = \"ready\" | \"started\" | \"completed\".",
    ),
    key("job", boolean, "Run to completion (migrations, installers) instead of staying up."),
    key("ready", || object(READY, &[]), "Readiness probe: one of tcp, postgres, http, exec, log, healthcheck."),
    key("working_dir", string, "Working directory in the container."),
    key("user", string, "User (and group) the container runs as."),
    key("env_file", env_files, "Files of KEY=VALUE lines (compose's env-file syntax), merged under `env`."),
    key(
        "labels",
        || json!({ "anyOf": [{ "type": "array", "items": { "type": "string" } }, env_table()] }),
        "Container labels (not under org.stagectl.).",
    ),
    key("tmpfs", || json!({ "anyOf": [{ "type": "string" }, strings()] }), "tmpfs mounts: \"/path\" or \"/path:size=64m,mode=1777\"."),
    key(
        "ulimits",
        || {
            json!({ "type": "object", "additionalProperties": { "anyOf": [
            { "type": "integer" },
            { "type": "object", "properties": { "soft": { "type": "integer" }, "hard": { "type": "integer" } }, "additionalProperties": false }
        ] } })
        },
        "Resource limits: nofile = 1024 or { soft, hard }.",
    ),
    key("shm_size", || json!({ "type": ["string", "integer"] }), "Size of /dev/shm, e.g. \"64m\"."),
    key("cap_add", strings, "Linux capabilities to add."),
    key("cap_drop", strings, "Linux capabilities to drop."),
    key(
        "extra_hosts",
        || json!({ "anyOf": [{ "type": "array", "items": { "type": "string" } }, string_table()] }),
        "Extra /etc/hosts entries: \"host:ip\" (ip may be host-gateway).",
    ),
    key("init", boolean, "Run an init process as PID 1."),
    key("stop_grace_period", duration, "Time between SIGTERM and SIGKILL when stopping."),
    key("profiles", strings, "Profiles the service belongs to; it runs only when one is selected (--profile)."),
    key(
        "restart",
        || json!({ "type": "string", "pattern": "^(no|always|unless-stopped|on-failure(:[0-9]+)?)$" }),
        "Restart policy of a long-running service: no, on-failure[:N], always, unless-stopped.",
    ),
];

fn env_files() -> Value {
    let entry = json!({ "anyOf": [
        { "type": "string" },
        { "type": "object", "required": ["path"], "additionalProperties": false, "properties": {
            "path": { "type": "string" }, "required": { "type": "boolean" }, "secret": { "type": "boolean" }
        } }
    ] });
    json!({ "anyOf": [entry, { "type": "array", "items": entry }] })
}

pub const BUILD: &[Key] = &[
    key("context", string, "Build context directory (relative to the manifest)."),
    key("dockerfile", string, "Dockerfile inside the context (default Dockerfile)."),
    key("command", string, "A host command run before the build (e.g. to compile a binary into the context)."),
    key("args", env_table, "Build arguments."),
];

pub const READY: &[Key] = &[
    key("tcp", port, "Ready when the port accepts a connection."),
    key("postgres", port, "Ready when PostgreSQL answers its startup handshake on this port."),
    key("mysql", port, "Ready when MariaDB/MySQL sends its greeting on this port."),
    key(
        "http",
        || json!({ "type": "string", "pattern": "^/" }),
        "Ready when GET of this path answers `status` (default 200); needs `port`.",
    ),
    key("exec", argv, "Ready when this command exits 0 in the container."),
    key("log", string, "Ready when a log line matches this regular expression."),
    key("healthcheck", || json!({ "const": true }), "Ready when the image's HEALTHCHECK reports healthy."),
    key("port", port, "Port of the http probe."),
    key("status", || json!({ "type": "integer", "minimum": 100, "maximum": 599 }), "Expected HTTP status of the http probe."),
    key("timeout", duration, "Deadline for the service to become ready, from container start."),
    key("interval", duration, "Pause between probe attempts."),
    key("attempt_timeout", duration, "Longest single probe attempt (compose's healthcheck timeout; default 2s)."),
    key(
        "retries",
        || json!({ "type": "integer", "minimum": 1 }),
        "Failed attempts (after start_period) before the service counts as failed.",
    ),
    key("start_period", duration, "Attempts in this time after start do not count against retries."),
];

pub const FIXTURES: &[Key] = &[
    key("loader", || json!({ "enum": ["postgres", "mysql", "redis", "command"] }), "How files are loaded (default postgres)."),
    key(
        "database",
        string,
        "postgres/mysql loader: the database (default: POSTGRES_DB, MARIADB_DATABASE or MYSQL_DATABASE of the service).",
    ),
    key("user", string, "postgres/mysql loader: the user (default postgres / root)."),
    key("command", argv, "command loader: the command each file is piped into."),
    key("files", strings, "Files or glob patterns, loaded in order (relative to the manifest)."),
    key("after", strings, "Jobs that must complete before the load (default: the jobs that depend on the service)."),
    key("mask", string_table, "\"table.column\" = rule: email, name, phone, hash, null, keep, or fixed:VALUE."),
    key("sensitive", strings, "\"table.column\" that must never hold real-looking values (`fixtures scan`)."),
    key("seed", string, "Seed of the deterministic masking."),
    key("snapshot", boolean, "Snapshot the loaded state and restore it next time (default true)."),
];

pub const SMOKE: &[Key] = &[
    key("name", string, "What the check proves; shown in results and reports."),
    key("http", || object(HTTP_CHECK, &["service"]), "An HTTP request to a service."),
    key("tcp", || object(TCP_CHECK, &["service", "port"]), "A TCP connection to a service."),
    key("exec", || object(EXEC_CHECK, &["service", "command"]), "A command in a service's container."),
    key("sql", || object(SQL_CHECK, &["service", "query"]), "A query against a PostgreSQL service."),
    key("script", argv, "A command run on the host (exit 0 = pass)."),
    key("timeout", duration, "How long the check may retry before it fails."),
    key("latency", || object(LATENCY, &[]), "Run the http check as a burst with a latency budget."),
];

pub const HTTP_CHECK: &[Key] = &[
    key("service", string, "The service to call."),
    key("port", port, "Its container port."),
    key("method", string, "HTTP method (default GET)."),
    key("path", string, "Request path (default /)."),
    key("headers", string_table, "Request headers; values may use ${secret:NAME}."),
    key("body", string, "Request body."),
    key("expect_status", || json!({ "type": "integer", "minimum": 100, "maximum": 599 }), "Expected status (default 200)."),
    key("expect_body", string, "Text the body must contain."),
    key("expect_body_regex", string, "Regular expression the body must match."),
    key("expect_json", || json!({ "type": "object" }), "JSON pointer = expected value, e.g. { \"/count\" = 10 }."),
];

pub const TCP_CHECK: &[Key] = &[key("service", string, "The service."), key("port", port, "Its container port.")];

pub const EXEC_CHECK: &[Key] = &[
    key("service", string, "The service."),
    key("command", argv, "The command (argv array)."),
    key("expect_output", string, "Text the output must contain."),
];

pub const SQL_CHECK: &[Key] = &[
    key("service", string, "The PostgreSQL service."),
    key("query", string, "The query; its first column of the first row is compared."),
    key("expect", || json!({ "type": ["string", "integer", "number", "boolean"] }), "The expected value (compared as text)."),
    key("database", string, "Database (default: POSTGRES_DB of the service)."),
    key("user", string, "User (default postgres)."),
];

pub const LATENCY: &[Key] = &[
    key("requests", || json!({ "type": "integer", "minimum": 1 }), "Requests in the burst."),
    key("concurrency", || json!({ "type": "integer", "minimum": 1 }), "Simulated users at once."),
    key("p95", duration, "Budget for the 95th percentile."),
    key("p99", duration, "Budget for the 99th percentile."),
    key("error_rate", || json!({ "type": "number", "minimum": 0, "maximum": 1 }), "Largest share of failed requests (0.0 to 1.0)."),
];

pub const MIGRATIONS: &[Key] = &[
    key("dir", string, "Directory of NNN_name.up.sql / NNN_name.down.sql files."),
    key("allow", strings, "Lint rules allowed for this directory."),
    key("database", string, "Database (default: POSTGRES_DB of the service)."),
    key("user", string, "User (default postgres)."),
    key("port", port, "PostgreSQL port in the container (default 5432)."),
    key("lock_budget", duration, "Longest lock a migration may hold on fixture data (`check migrations`)."),
    key("round_trip", boolean, "Check up → down → up (default true)."),
    key("job", string, "A job that applies the migrations instead of stagectl (then `dir` is optional)."),
    key("pending", argv, "Command form: exits 0 when no migration is pending (e.g. manage.py migrate --check)."),
    key("sql", argv, "Command form: prints the SQL of the pending migrations, for the lint."),
    key("sql_dir", string, "Command form: a directory of *.sql files to lint."),
];

pub const SCHEDULE: &[Key] = &[
    key("rebuild", string, "Cron expression for full rebuilds by the daemon (5 fields, or 6 with seconds)."),
    key("idle_ttl", duration, "Tear the stack (and idle sibling projects) down after this long without activity."),
];

/// The top level and the table of each section, for the test that holds them to the parser.
pub const SECTIONS: &[(&str, &[Key])] = &[
    ("stack", STACK),
    ("service", SERVICE),
    ("build", BUILD),
    ("ready", READY),
    ("fixtures", FIXTURES),
    ("smoke", SMOKE),
    ("http_check", HTTP_CHECK),
    ("tcp_check", TCP_CHECK),
    ("exec_check", EXEC_CHECK),
    ("sql_check", SQL_CHECK),
    ("latency", LATENCY),
    ("migrations", MIGRATIONS),
    ("schedule", SCHEDULE),
];

/// A closed table of `keys`, `required` among them.
fn object(keys: &[Key], required: &[&str]) -> Value {
    let mut properties = Map::new();
    for k in keys {
        let mut schema = (k.schema)();
        if let Value::Object(o) = &mut schema {
            o.insert("description".into(), Value::String(k.doc.to_string()));
        }
        properties.insert(k.name.to_string(), schema);
    }
    let mut o = json!({ "type": "object", "properties": properties, "additionalProperties": false });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn table_of(v: Value, doc: &str) -> Value {
    json!({ "type": "object", "description": doc, "additionalProperties": v })
}

/// The whole schema.
pub fn json_schema() -> Value {
    let mut top = object(&[], &["stack"]);
    top["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    top["$id"] = json!("https://stagectl.dev/schema/stack.json");
    top["title"] = json!("stagectl stack.toml");
    top["properties"] = json!({
        "stack": object(STACK, &["name"]),
        "services": table_of(object(SERVICE, &[]), "One table per service, keyed by its name."),
        "fixtures": table_of(object(FIXTURES, &["files"]), "Fixture data per data service, keyed by the service's name."),
        "checks": { "type": "object", "additionalProperties": false, "properties": {
            "smoke": { "type": "array", "items": object(SMOKE, &["name"]), "description": "[[checks.smoke]]: smoke checks, in order." }
        }},
        "migrations": table_of(object(MIGRATIONS, &[]), "Migrations per database service, keyed by the service's name."),
        "schedule": object(SCHEDULE, &[]),
    });
    top
}
