//! The walk over the spanned TOML tree. Each field is checked where it is read and every problem
//! is collected, so one run of `stagectl validate` reports the whole file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{did_you_mean, Diagnostic};
use super::vars::{Interpolated, VarSource};
use super::*;

type Span = Range<usize>;
type Value<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &["stack", "services", "fixtures", "checks", "migrations", "schedule"];
const CHECKS_KEYS: &[&str] = &["smoke"];
const SMOKE_KEYS: &[&str] = &["name", "http", "tcp", "exec", "sql", "script", "timeout", "latency"];
const SMOKE_KINDS: &[&str] = &["http", "tcp", "exec", "sql", "script"];
const HTTP_CHECK_KEYS: &[&str] =
    &["service", "port", "method", "path", "headers", "body", "expect_status", "expect_body", "expect_body_regex", "expect_json"];
const LATENCY_KEYS: &[&str] = &["requests", "concurrency", "p95", "p99", "error_rate"];
const STACK_KEYS: &[&str] = &["name", "snapshot_budget"];
const FIXTURE_KEYS: &[&str] = &["loader", "database", "user", "command", "files", "after", "mask", "sensitive", "seed", "snapshot"];
const LOADERS: &[&str] = &["postgres", "redis", "command"];
const SERVICE_KEYS: &[&str] =
    &["image", "build", "command", "entrypoint", "env", "ports", "volumes", "depends_on", "job", "ready", "working_dir", "user"];
const BUILD_KEYS: &[&str] = &["context", "dockerfile", "command", "args"];
const READY_KEYS: &[&str] = &["tcp", "postgres", "http", "exec", "log", "healthcheck", "port", "status", "timeout", "interval"];
const PROBE_KINDS: &[&str] = &["tcp", "postgres", "http", "exec", "log", "healthcheck"];

struct Cx<'a> {
    src: &'a str,
    dir: &'a Path,
    vars: &'a VarSource,
    dir_exists: &'a dyn Fn(&Path) -> bool,
    diags: Vec<Diagnostic>,
}

/// Spans kept beside a parsed service for the checks that look across services.
struct ServiceSpans {
    depends_on: Vec<Span>,
    ports: Vec<Span>,
}

pub(super) fn parse(src: &str, dir: &Path, vars: &VarSource, dir_exists: &dyn Fn(&Path) -> bool) -> Result<Manifest, Vec<Diagnostic>> {
    let (doc, errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim_end();
                let text = src.get(span.clone()).unwrap_or("").trim();
                let (_, _, line) = super::diag::locate(src, span.start);
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
            })
            .collect());
    }
    let mut cx = Cx { src, dir, vars, dir_exists, diags: Vec::new() };
    let doc = doc.into_inner();
    cx.unknown_keys(&doc, TOP_KEYS, "the top level");

    let stack = match doc.get("stack") {
        Some(v) => cx.stack(v),
        None => {
            cx.diags.push(Diagnostic::new(0..0, "missing [stack] table").help("start the file with `[stack]` and `name = \"myapp\"`"));
            None
        }
    };

    let mut services = Vec::new();
    let mut spans = Vec::new();
    match doc.get("services") {
        Some(v) => {
            if let Some(t) = cx.table(v, "`services`") {
                if t.is_empty() {
                    cx.diags.push(Diagnostic::new(v.span(), "no services defined").help("add a [services.NAME] table"));
                }
                for (name, body) in t.iter() {
                    if let Some((svc, sp)) = cx.service(name, body) {
                        services.push(svc);
                        spans.push(sp);
                    }
                }
            }
        }
        None => cx.diags.push(Diagnostic::new(0..0, "no services defined").help("add a [services.NAME] table with an `image`")),
    }

    cx.cross_checks(&services, &spans);

    let mut fixtures = Vec::new();
    if let Some(v) = doc.get("fixtures") {
        if let Some(t) = cx.table(v, "`fixtures`") {
            for (name, body) in t.iter() {
                if let Some(f) = cx.fixtures(name, body, &services, stack.as_deref().unwrap_or("")) {
                    fixtures.push(f);
                }
            }
        }
    }
    let mut smoke = Vec::new();
    if let Some(v) = doc.get("checks") {
        if let Some(t) = cx.table(v, "`checks`") {
            cx.unknown_keys(t, CHECKS_KEYS, "[checks]");
            if let Some(sv) = t.get("smoke") {
                match sv.get_ref() {
                    DeValue::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if let Some(c) = cx.smoke_check(i, item, &services) {
                                if smoke.iter().any(|o: &SmokeCheck| o.name == c.name) {
                                    cx.diags.push(
                                        Diagnostic::new(item.span(), format!("two smoke checks are named `{}`", c.name))
                                            .help("give each check a unique name: reports are keyed by it"),
                                    );
                                }
                                smoke.push(c);
                            }
                        }
                    }
                    other => cx.type_error(sv.span(), "`checks.smoke`", "an array of tables ([[checks.smoke]])", other),
                }
            }
        }
    }
    let mut migrations = Vec::new();
    if let Some(v) = doc.get("migrations") {
        if let Some(t) = cx.table(v, "`migrations`") {
            for (name, body) in t.iter() {
                if let Some(m) = cx.migrations(name, body, &services) {
                    migrations.push(m);
                }
            }
        }
    }
    let snapshot_budget = doc
        .get("stack")
        .and_then(|s| s.get_ref().as_table())
        .and_then(|t| t.get("snapshot_budget"))
        .and_then(|v| {
            let text = cx.raw_string(v, "`stack.snapshot_budget`")?;
            let size = parse_size(text);
            if size.is_none() {
                cx.diags.push(
                    Diagnostic::new(v.span(), format!("invalid size `{text}` for `stack.snapshot_budget`"))
                        .help("write a number with a unit, e.g. \"512MB\" or \"5GB\""),
                );
            }
            size
        })
        .unwrap_or(DEFAULT_SNAPSHOT_BUDGET);

    let schedule = doc.get("schedule").and_then(|v| cx.schedule(v)).unwrap_or_default();

    match (stack, cx.diags.is_empty()) {
        (Some(stack), true) => {
            Ok(Manifest { dir: dir.to_path_buf(), stack, services, fixtures, snapshot_budget, smoke, migrations, schedule })
        }
        _ => Err(cx.diags),
    }
}

fn kind_name(v: &DeValue<'_>) -> &'static str {
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

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A hint suffix such as ", e.g. `my-app`" when lowercasing and `_` → `-` make `name` a valid
/// label; empty otherwise.
fn suggest_label(name: &str) -> String {
    let fixed = name.to_ascii_lowercase().replace(['_', '.', ' '], "-");
    if fixed != name && is_dns_label(&fixed) {
        format!(", e.g. `{fixed}`")
    } else {
        String::new()
    }
}

fn is_table_column(s: &str) -> bool {
    let ident = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    matches!(s.split_once('.'), Some((t, c)) if ident(t) && ident(c))
}

fn integer(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
}

impl Cx<'_> {
    fn type_error(&mut self, span: Span, what: &str, expected: &str, found: &DeValue<'_>) {
        self.diags.push(Diagnostic::new(span, format!("{what} must be {expected}, found {}", kind_name(found))));
    }

    /// Adds a hint to the diagnostic pushed last.
    fn help_last(&mut self, help: impl Into<String>) {
        if let Some(d) = self.diags.last_mut() {
            d.help = Some(help.into());
        }
    }

    fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
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

    fn table<'t, 'i>(&mut self, v: &'t Value<'i>, what: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.type_error(v.span(), what, "a table", other);
                None
            }
        }
    }

    /// A plain string, not interpolated.
    fn raw_string<'t>(&mut self, v: &'t Value<'_>, what: &str) -> Option<&'t str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s),
            other => {
                self.type_error(v.span(), what, "a string", other);
                None
            }
        }
    }

    /// A string with `${...}` interpolation; secrets only where `allow_secrets`.
    fn string(&mut self, v: &Value<'_>, what: &str, allow_secrets: bool) -> Option<Interpolated> {
        let raw = self.raw_string(v, what)?;
        self.vars.interpolate(raw, &v.span(), self.src, allow_secrets, &mut self.diags)
    }

    fn plain_string(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        self.string(v, what, false).map(|i| i.value)
    }

    fn string_array(&mut self, v: &Value<'_>, what: &str) -> Option<Vec<(String, Span)>> {
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

    fn command(&mut self, v: &Value<'_>, what: &str) -> Option<Vec<String>> {
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

    fn port_number(&mut self, v: &Value<'_>, what: &str) -> Option<u16> {
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

    fn duration(&mut self, v: &Value<'_>, what: &str) -> Option<Duration> {
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

    fn stack(&mut self, v: &Value<'_>) -> Option<String> {
        let t = self.table(v, "`stack`")?;
        self.unknown_keys(t, STACK_KEYS, "[stack]");
        let Some(name_v) = t.get("name") else {
            self.diags.push(Diagnostic::new(v.span(), "missing `name` in [stack]").help("add `name = \"myapp\"`"));
            return None;
        };
        let name = self.plain_string(name_v, "`stack.name`")?;
        if !is_dns_label(&name) || name.len() > 40 {
            self.diags.push(Diagnostic::new(name_v.span(), format!("invalid stack name `{name}`")).help(format!(
                "use up to 40 lowercase letters, digits and `-`{}; it prefixes every container, network and volume",
                suggest_label(&name)
            )));
            return None;
        }
        Some(name)
    }

    fn service(&mut self, name_key: &Spanned<std::borrow::Cow<'_, str>>, body: &Value<'_>) -> Option<(Service, ServiceSpans)> {
        let name = name_key.get_ref().to_string();
        let context = format!("[services.{name}]");
        if !is_dns_label(&name) {
            self.diags.push(Diagnostic::new(name_key.span(), format!("invalid service name `{name}`")).help(format!(
                "use lowercase letters, digits and `-` (it becomes a host name on the stack network){}",
                suggest_label(&name)
            )));
        }
        let t = self.table(body, &format!("service `{name}`"))?;
        self.unknown_keys(t, SERVICE_KEYS, &context);
        let field = |k: &str| format!("`services.{name}.{k}`");

        let image = t.get("image").and_then(|v| {
            let image = self.plain_string(v, &field("image"))?;
            self.check_image(&image, v.span())
        });
        let build = t.get("build").and_then(|v| self.build(v, &name));
        if t.get("image").is_none() && t.get("build").is_none() {
            self.diags.push(
                Diagnostic::new(name_key.span(), format!("service `{name}` has neither `image` nor `build`"))
                    .help("add `image = \"postgres:15\"` to run an image, or `build = \"path/to/context\"` to build one"),
            );
        }
        let command = t.get("command").and_then(|v| self.command(v, &field("command")));
        let entrypoint = t.get("entrypoint").and_then(|v| self.command(v, &field("entrypoint")));
        let env = t.get("env").map(|v| self.env(v, &name)).unwrap_or_default();

        let mut ports = Vec::new();
        let mut port_spans = Vec::new();
        let mut ports_ok = true;
        if let Some(v) = t.get("ports") {
            match v.get_ref() {
                DeValue::Array(items) => {
                    for item in items.iter() {
                        let parsed = match item.get_ref() {
                            DeValue::Integer(_) => self.port_number(item, "port").map(|p| PortMapping {
                                host_ip: None,
                                host_port: None,
                                container_port: p,
                                protocol: Protocol::Tcp,
                            }),
                            DeValue::String(_) => self.plain_string(item, &field("ports")).and_then(|s| self.port_mapping(&s, item.span())),
                            other => {
                                self.type_error(
                                    item.span(),
                                    &format!("each entry of {}", field("ports")),
                                    "a string like \"8080:80\"",
                                    other,
                                );
                                None
                            }
                        };
                        match parsed {
                            Some(p) => {
                                ports.push(p);
                                port_spans.push(item.span());
                            }
                            None => ports_ok = false,
                        }
                    }
                }
                DeValue::String(s) => {
                    ports_ok = false;
                    self.diags.push(
                        Diagnostic::new(
                            v.span(),
                            format!("{} must be an array of strings like \"8080:80\", found a string", field("ports")),
                        )
                        .help(format!("put the mapping in brackets: ports = [{:?}]", s.as_ref() as &str)),
                    );
                }
                other => {
                    ports_ok = false;
                    self.type_error(v.span(), &field("ports"), "an array of strings like \"8080:80\"", other)
                }
            }
        }

        let mut volumes = Vec::new();
        if let Some(v) = t.get("volumes") {
            for (text, span) in self.string_array(v, &field("volumes")).unwrap_or_default() {
                volumes.extend(self.volume(&text, span));
            }
        }

        let mut depends_on = Vec::new();
        let mut dep_spans = Vec::new();
        if let Some(v) = t.get("depends_on") {
            for (dep, span) in self.string_array(v, &field("depends_on")).unwrap_or_default() {
                if depends_on.contains(&dep) {
                    self.diags.push(
                        Diagnostic::new(span, format!("`{dep}` is listed twice in {}", field("depends_on")))
                            .help("remove the second entry"),
                    );
                    continue;
                }
                depends_on.push(dep);
                dep_spans.push(span);
            }
        }

        let job = match t.get("job") {
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => *b,
                other => {
                    self.type_error(v.span(), &field("job"), "true or false", other);
                    self.help_last("write `job = true` or `job = false`, without quotes");
                    false
                }
            },
            None => false,
        };

        let ready = match t.get("ready") {
            Some(v) if job => {
                self.diags.push(
                    Diagnostic::new(v.span(), format!("job `{name}` cannot have a `ready` probe"))
                        .help("a job is done when it exits 0; remove `ready` or drop `job = true`"),
                );
                None
            }
            Some(v) => self.ready(v, &name, &ports, ports_ok),
            None => None,
        };
        let working_dir = t.get("working_dir").and_then(|v| self.plain_string(v, &field("working_dir")));
        let user = t.get("user").and_then(|v| self.plain_string(v, &field("user")));

        // Returned even when a field had errors (those are already reported), so the checks
        // across services still see this service's name, dependencies and ports.
        Some((
            Service { name, image, build, command, entrypoint, env, ports, volumes, depends_on, job, ready, working_dir, user },
            ServiceSpans { depends_on: dep_spans, ports: port_spans },
        ))
    }

    fn check_image(&mut self, image: &str, span: Span) -> Option<String> {
        let repo = image.rsplit_once('/').map(|(_, r)| r).unwrap_or(image);
        let repo_name = repo.split([':', '@']).next().unwrap_or("");
        if image.is_empty() || image.chars().any(char::is_whitespace) || repo_name.is_empty() {
            self.diags.push(
                Diagnostic::new(span, format!("invalid image reference `{image}`")).help("write it as NAME[:TAG], e.g. \"postgres:15\""),
            );
            return None;
        }
        let path = image.split([':', '@']).next().unwrap_or("");
        let path_after_registry = match path.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => rest,
            _ => path,
        };
        if path_after_registry.chars().any(|c| c.is_ascii_uppercase()) {
            self.diags
                .push(Diagnostic::new(span, format!("invalid image reference `{image}`")).help("image repository names must be lowercase"));
            return None;
        }
        Some(image.to_string())
    }

    fn build(&mut self, v: &Value<'_>, service: &str) -> Option<Build> {
        let field = |k: &str| format!("`services.{service}.build.{k}`");
        let (context_v, dockerfile, command, args) = match v.get_ref() {
            DeValue::String(_) => (v, "Dockerfile".to_string(), None, BTreeMap::new()),
            DeValue::Table(t) => {
                self.unknown_keys(t, BUILD_KEYS, &format!("[services.{service}.build]"));
                let Some(context_v) = t.get("context") else {
                    self.diags.push(
                        Diagnostic::new(v.span(), format!("missing `context` in `services.{service}.build`"))
                            .help("add `context = \"path/to/dir\"` (the directory holding the Dockerfile)"),
                    );
                    return None;
                };
                let dockerfile = match t.get("dockerfile") {
                    Some(d) => self.plain_string(d, &field("dockerfile"))?,
                    None => "Dockerfile".to_string(),
                };
                let command = match t.get("command") {
                    Some(c) => Some(self.plain_string(c, &field("command"))?),
                    None => None,
                };
                let mut args = BTreeMap::new();
                if let Some(a) = t.get("args") {
                    let at = self.table(a, &field("args"))?;
                    for (k, val) in at.iter() {
                        let s = self.plain_string(val, &format!("build arg `{}`", k.get_ref()))?;
                        args.insert(k.get_ref().to_string(), s);
                    }
                }
                (context_v, dockerfile, command, args)
            }
            other => {
                self.type_error(v.span(), &format!("`services.{service}.build`"), "a path string or a table", other);
                return None;
            }
        };
        let rel = self.plain_string(context_v, &field("context"))?;
        let context = self.dir.join(&rel);
        if !(self.dir_exists)(&context) {
            self.diags.push(
                Diagnostic::new(context_v.span(), format!("build context `{rel}` of service `{service}` is not a directory"))
                    .help("create the directory or correct the path; it is relative to the directory of stack.toml"),
            );
            return None;
        }
        Some(Build { context, dockerfile, command, args })
    }

    fn env(&mut self, v: &Value<'_>, service: &str) -> BTreeMap<String, Interpolated> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(v, &format!("`services.{service}.env`")) else { return out };
        for (k, val) in t.iter() {
            let key: &str = k.get_ref();
            if key.is_empty() || key.contains('=') {
                self.diags.push(Diagnostic::new(k.span(), format!("invalid environment variable name `{key}`")));
                continue;
            }
            let what = format!("`services.{service}.env.{key}`");
            let value = match val.get_ref() {
                DeValue::String(_) => self.string(val, &what, true),
                DeValue::Integer(i) => Some(Interpolated { value: i.as_str().to_string(), secret: false }),
                DeValue::Float(f) => Some(Interpolated { value: f.as_str().to_string(), secret: false }),
                DeValue::Boolean(b) => Some(Interpolated { value: b.to_string(), secret: false }),
                other => {
                    self.type_error(val.span(), &what, "a string, number or boolean", other);
                    if matches!(other, DeValue::Array(_)) {
                        self.help_last("an environment variable holds one string: join the items, e.g. with commas or spaces");
                    }
                    None
                }
            };
            if let Some(value) = value {
                out.insert(key.to_string(), value);
            }
        }
        out
    }

    /// `[IP:][HOST:]CONTAINER[/PROTO]`
    fn port_mapping(&mut self, text: &str, span: Span) -> Option<PortMapping> {
        let bad = |cx: &mut Self, why: &str| {
            cx.diags.push(
                Diagnostic::new(span.clone(), format!("invalid port mapping `{text}`: {why}"))
                    .help("write \"HOST:CONTAINER\" (e.g. \"8080:80\"), \"IP:HOST:CONTAINER\", or \"CONTAINER\" for a free host port; append /udp for UDP"),
            );
            None
        };
        let (spec, protocol) = match text.rsplit_once('/') {
            Some((s, "tcp")) => (s, Protocol::Tcp),
            Some((s, "udp")) => (s, Protocol::Udp),
            Some((_, p)) => return bad(self, &format!("unknown protocol `{p}`")),
            None => (text, Protocol::Tcp),
        };
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let port = |s: &str| -> Result<u16, String> {
            if s.contains('-') {
                return Err("port ranges are not supported; list each port separately".into());
            }
            match s.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                Ok(n) => Err(format!("port {n} is out of range (1-65535)")),
                Err(_) => Err(format!("`{s}` is not a port number")),
            }
        };
        let result = match parts.as_slice() {
            [c] => port(c).map(|c| (None, None, c)),
            [c, h] => port(h).and_then(|h| port(c).map(|c| (None, Some(h), c))),
            [c, h, ip] => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                if ip.parse::<std::net::IpAddr>().is_err() {
                    Err(format!("`{ip}` is not an IP address"))
                } else {
                    port(h).and_then(|h| port(c).map(|c| (Some(ip.to_string()), Some(h), c)))
                }
            }
            _ => Err("too many `:`".into()),
        };
        match result {
            Ok((host_ip, host_port, container_port)) => Some(PortMapping { host_ip, host_port, container_port, protocol }),
            Err(why) => bad(self, &why),
        }
    }

    /// `NAME:/path[:ro|:rw]` for a named volume, `./dir:/path` or `/abs:/path` for a bind mount.
    fn volume(&mut self, text: &str, span: Span) -> Option<VolumeMount> {
        let bad = |cx: &mut Self, why: String| {
            cx.diags.push(
                Diagnostic::new(span.clone(), format!("invalid volume `{text}`: {why}"))
                    .help("write \"NAME:/path\" for a named volume or \"./dir:/path\" for a host directory; append :ro for read-only"),
            );
            None
        };
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, read_only) = match parts.as_slice() {
            [s, t] => (*s, *t, false),
            [s, t, "ro"] => (*s, *t, true),
            [s, t, "rw"] => (*s, *t, false),
            [_, _, m] => return bad(self, format!("unknown mode `{m}` (use ro or rw)")),
            [_] => return bad(self, "missing the container path".into()),
            _ => return bad(self, "too many `:`".into()),
        };
        if !target.starts_with('/') {
            return bad(self, format!("container path `{target}` must be absolute"));
        }
        let source = if source.starts_with('/') || source.starts_with('.') {
            VolumeSource::Bind(self.dir.join(source))
        } else if !source.is_empty()
            && source.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && source.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        {
            VolumeSource::Named(source.to_string())
        } else {
            return bad(self, format!("`{source}` is neither a volume name nor a path starting with . or /"));
        };
        Some(VolumeMount { source, target: target.to_string(), read_only })
    }

    /// `ports_complete`: every entry of the service's `ports` parsed (so `ports` is the full list).
    fn ready(&mut self, v: &Value<'_>, service: &str, ports: &[PortMapping], ports_complete: bool) -> Option<Readiness> {
        let t = self.table(v, &format!("`services.{service}.ready`"))?;
        let context = format!("`services.{service}.ready`");
        self.unknown_keys(t, READY_KEYS, &context);
        let kinds: Vec<&str> = PROBE_KINDS.iter().copied().filter(|k| t.contains_key(*k)).collect();
        if kinds.len() != 1 {
            let msg = if kinds.is_empty() {
                format!("{context} needs a probe")
            } else {
                format!("{context} has more than one probe ({})", kinds.join(", "))
            };
            self.diags.push(Diagnostic::new(v.span(), msg).help(
                "use exactly one of: tcp = PORT, postgres = PORT, http = \"/path\", exec = [..], log = \"regex\", healthcheck = true",
            ));
            return None;
        }
        let kind = kinds[0];
        let pv = &t[kind];
        let field = |k: &str| format!("`services.{service}.ready.{k}`");
        for extra in ["port", "status"] {
            if kind != "http" {
                if let Some(x) = t.get(extra) {
                    let help = if extra == "port" && matches!(kind, "tcp" | "postgres") {
                        format!("remove it: a {kind} probe connects to the port given as `{kind} = PORT`")
                    } else {
                        format!("remove it: a {kind} probe does not use `{extra}`")
                    };
                    self.diags.push(Diagnostic::new(x.span(), format!("{} only applies to an http probe", field(extra))).help(help));
                }
            }
        }
        let probe = match kind {
            "tcp" => Probe::Tcp { port: self.port_number(pv, &field("tcp"))? },
            "postgres" => Probe::Postgres { port: self.port_number(pv, "postgres probe port")? },
            "http" => {
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
                    None => match ports {
                        [only] => only.container_port,
                        // A port that failed to parse is reported already; guessing here would mislead.
                        _ if !ports_complete => return None,
                        _ => {
                            let why = if ports.is_empty() {
                                "publishes no ports".to_string()
                            } else {
                                format!("publishes {} ports", ports.len())
                            };
                            let example = ports.first().map_or(8080, |p| p.container_port);
                            self.diags.push(
                                Diagnostic::new(
                                    pv.span(),
                                    format!("the http probe in {context} needs a `port`: service `{service}` {why}"),
                                )
                                .help(format!("add `port = {example}` (the container port to probe)")),
                            );
                            return None;
                        }
                    },
                };
                let status = match t.get("status") {
                    Some(s) => match integer(s.get_ref()) {
                        Some(n) if (100..=599).contains(&n) => n as u16,
                        _ => {
                            self.diags.push(
                                Diagnostic::new(s.span(), format!("{} must be an HTTP status code (100-599)", field("status")))
                                    .help("write e.g. `status = 204`"),
                            );
                            return None;
                        }
                    },
                    None => 200,
                };
                Probe::Http { port, path, status }
            }
            "exec" => Probe::Exec { command: self.command(pv, &field("exec"))? },
            "log" => {
                let pattern = self.plain_string(pv, &field("log"))?;
                if let Err(e) = regex::Regex::new(&pattern) {
                    let last = e.to_string().lines().last().unwrap_or("").trim().to_string();
                    let why = last.strip_prefix("error: ").unwrap_or(&last);
                    self.diags.push(Diagnostic::new(pv.span(), format!("invalid regex in {}: {why}", field("log"))).help(
                        "the pattern is a Rust regex; escape a literal ( [ { . * + ? with a backslash (`\\\\(` in a \"...\" TOML string)",
                    ));
                    return None;
                }
                Probe::Log { pattern }
            }
            _ => match pv.get_ref() {
                DeValue::Boolean(true) => Probe::Healthcheck,
                _ => {
                    self.diags.push(Diagnostic::new(pv.span(), format!("{} must be `true`", field("healthcheck"))).help(
                        "write `healthcheck = true` to wait for the image's HEALTHCHECK, or remove `ready` to skip readiness checks",
                    ));
                    return None;
                }
            },
        };
        let timeout = match t.get("timeout") {
            Some(d) => self.duration(d, &field("timeout"))?,
            None => DEFAULT_READY_TIMEOUT,
        };
        let interval = match t.get("interval") {
            Some(d) => self.duration(d, &field("interval"))?,
            None => DEFAULT_READY_INTERVAL,
        };
        Some(Readiness { probe, timeout, interval })
    }

    fn fixtures(
        &mut self,
        name_key: &Spanned<std::borrow::Cow<'_, str>>,
        body: &Value<'_>,
        services: &[Service],
        stack: &str,
    ) -> Option<Fixtures> {
        let service_name = name_key.get_ref().to_string();
        let context = format!("[fixtures.{service_name}]");
        let field = |k: &str| format!("`fixtures.{service_name}.{k}`");
        let t = self.table(body, &format!("`fixtures.{service_name}`"))?;
        self.unknown_keys(t, FIXTURE_KEYS, &context);
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        let Some(service) = services.iter().find(|s| s.name == service_name) else {
            let help = match did_you_mean(&service_name, &names) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "fixtures are keyed by the data service they load into".to_string(),
            };
            self.diags.push(Diagnostic::new(name_key.span(), format!("fixtures for unknown service `{service_name}`")).help(help));
            return None;
        };
        if service.job {
            self.diags.push(
                Diagnostic::new(name_key.span(), format!("fixtures cannot load into job `{service_name}`"))
                    .help("load into the long-running data service instead"),
            );
            return None;
        }
        let env_or = |key: &str, default: &str| service.env.get(key).map(|v| v.value.clone()).unwrap_or_else(|| default.to_string());
        let loader_name = match t.get("loader") {
            Some(v) => {
                let l = self.raw_string(v, &field("loader"))?.to_string();
                if !LOADERS.contains(&l.as_str()) {
                    self.diags.push(
                        Diagnostic::new(v.span(), format!("unknown loader `{l}`")).help(format!("use one of: {}", LOADERS.join(", "))),
                    );
                    return None;
                }
                l
            }
            None => "postgres".to_string(),
        };
        for (key, only) in [("database", "postgres"), ("user", "postgres"), ("command", "command")] {
            if let Some(v) = t.get(key) {
                if loader_name != only {
                    self.diags.push(Diagnostic::new(v.span(), format!("`{key}` only applies to the {only} loader")));
                }
            }
        }
        let loader = match loader_name.as_str() {
            "postgres" => Loader::Postgres {
                database: match t.get("database") {
                    Some(v) => self.plain_string(v, &field("database"))?,
                    None => env_or("POSTGRES_DB", "postgres"),
                },
                user: match t.get("user") {
                    Some(v) => self.plain_string(v, &field("user"))?,
                    None => env_or("POSTGRES_USER", "postgres"),
                },
            },
            "redis" => Loader::Redis,
            _ => match t.get("command") {
                Some(v) => Loader::Command { command: self.command(v, &field("command"))? },
                None => {
                    self.diags.push(
                        Diagnostic::new(body.span(), format!("the command loader needs {}", field("command")))
                            .help("add `command = [\"sh\", \"-c\", \"mysql -uroot app\"]`; each file is streamed to its stdin"),
                    );
                    return None;
                }
            },
        };
        let files = match t.get("files") {
            Some(v) => {
                let items = self.string_array(v, &field("files"))?;
                if items.is_empty() {
                    self.diags.push(Diagnostic::new(v.span(), format!("{} is empty", field("files"))));
                    return None;
                }
                for (pattern, span) in &items {
                    if let Err(e) = glob::Pattern::new(pattern) {
                        self.diags.push(Diagnostic::new(span.clone(), format!("invalid file pattern `{pattern}`: {}", e.msg)));
                    }
                }
                items.into_iter().map(|(p, _)| p).collect()
            }
            None => {
                self.diags.push(
                    Diagnostic::new(body.span(), format!("missing {}", field("files")))
                        .help("add `files = [\"fixtures/*.sql\", \"fixtures/*.csv\"]`"),
                );
                return None;
            }
        };
        let dependent_jobs: Vec<&str> =
            services.iter().filter(|s| s.job && s.depends_on.contains(&service_name)).map(|s| s.name.as_str()).collect();
        let after = match t.get("after") {
            Some(v) => {
                let items = self.string_array(v, &field("after"))?;
                for (a, span) in &items {
                    if !dependent_jobs.contains(&a.as_str()) {
                        self.diags.push(
                            Diagnostic::new(
                                span.clone(),
                                format!("`{a}` in {} is not a job that depends on `{service_name}`", field("after")),
                            )
                            .help("list jobs (job = true) whose depends_on includes this service, such as its migrations"),
                        );
                    }
                }
                items.into_iter().map(|(a, _)| a).collect()
            }
            None => dependent_jobs.iter().map(|s| s.to_string()).collect(),
        };
        let mut mask = BTreeMap::new();
        if let Some(v) = t.get("mask") {
            let mt = self.table(v, &field("mask"))?;
            for (k, rv) in mt.iter() {
                let key: &str = k.get_ref();
                if !is_table_column(key) {
                    self.diags.push(Diagnostic::new(k.span(), format!("mask key `{key}` must be `table.column`")));
                    continue;
                }
                let Some(text) = self.raw_string(rv, &format!("mask rule for `{key}`")) else { continue };
                match MaskRule::parse(text) {
                    Some(r) => {
                        mask.insert(key.to_string(), r);
                    }
                    None => self.diags.push(
                        Diagnostic::new(rv.span(), format!("unknown mask rule `{text}`"))
                            .help("use one of: email, name, phone, hash, null, keep, fixed:VALUE"),
                    ),
                }
            }
        }
        let mut sensitive = Vec::new();
        if let Some(v) = t.get("sensitive") {
            for (c, span) in self.string_array(v, &field("sensitive")).unwrap_or_default() {
                if !is_table_column(&c) {
                    self.diags.push(Diagnostic::new(span, format!("sensitive column `{c}` must be `table.column`")));
                } else if !mask.contains_key(&c) {
                    self.diags.push(
                        Diagnostic::new(span, format!("sensitive column `{c}` has no mask rule"))
                            .help(format!("add a rule for it to {}, e.g. \"{c}\" = \"hash\"", field("mask"))),
                    );
                } else {
                    sensitive.push(c);
                }
            }
        }
        let seed = match t.get("seed") {
            Some(v) => self.plain_string(v, &field("seed"))?,
            None => stack.to_string(),
        };
        let snapshot = match t.get("snapshot") {
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => *b,
                other => {
                    self.type_error(v.span(), &field("snapshot"), "true or false", other);
                    return None;
                }
            },
            None => matches!(loader, Loader::Postgres { .. }),
        };
        if snapshot && !matches!(loader, Loader::Postgres { .. }) {
            if let Some(v) = t.get("snapshot") {
                self.diags.push(
                    Diagnostic::new(v.span(), "snapshots are supported for the postgres loader only")
                        .help("remove `snapshot = true`; reloading small Redis or command fixtures is fast"),
                );
            }
        }
        Some(Fixtures { service: service_name, loader, files, after, mask, sensitive, seed, snapshot })
    }

    fn migrations(&mut self, name_key: &Spanned<std::borrow::Cow<'_, str>>, body: &Value<'_>, services: &[Service]) -> Option<Migrations> {
        let service_name: String = name_key.get_ref().to_string();
        let field = |key: &str| format!("`migrations.{service_name}.{key}`");
        let t = self.table(body, &format!("`migrations.{service_name}`"))?;
        self.unknown_keys(
            t,
            &["dir", "allow", "database", "user", "port", "lock_budget", "round_trip", "job"],
            &format!("[migrations.{service_name}]"),
        );
        let Some(service) = services.iter().find(|s| s.name == service_name) else {
            let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
            let help = match did_you_mean(&service_name, &names) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "migrations are keyed by the database service they apply to".to_string(),
            };
            self.diags.push(Diagnostic::new(name_key.span(), format!("migrations for unknown service `{service_name}`")).help(help));
            return None;
        };
        let Some(dv) = t.get("dir") else {
            self.diags.push(
                Diagnostic::new(body.span(), format!("missing `migrations.{service_name}.dir`"))
                    .help("add dir = \"migrations\" (NNN_name.up.sql / NNN_name.down.sql files)"),
            );
            return None;
        };
        let rel = self.plain_string(dv, &field("dir"))?;
        let dir = self.dir.join(&rel);
        if !(self.dir_exists)(&dir) {
            self.diags.push(
                Diagnostic::new(dv.span(), format!("migrations dir `{rel}` of `{service_name}` is not a directory"))
                    .help("paths are relative to the directory of stack.toml"),
            );
            return None;
        }
        let allow = match t.get("allow") {
            Some(a) => self.string_array(a, &field("allow"))?.into_iter().map(|(s, _)| s).collect(),
            None => vec![],
        };
        let env_or = |key: &str, default: &str| service.env.get(key).map(|v| v.value.clone()).unwrap_or_else(|| default.to_string());
        let database = match t.get("database") {
            Some(v) => self.plain_string(v, &field("database"))?,
            None => env_or("POSTGRES_DB", "postgres"),
        };
        let user = match t.get("user") {
            Some(v) => self.plain_string(v, &field("user"))?,
            None => env_or("POSTGRES_USER", "postgres"),
        };
        let port = match t.get("port") {
            Some(v) => match integer(v.get_ref()).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                Some(p) => p,
                None => {
                    self.diags.push(
                        Diagnostic::new(v.span(), format!("{} must be a port number (1-65535)", field("port")))
                            .help("the port PostgreSQL listens on inside the container, e.g. port = 5432"),
                    );
                    return None;
                }
            },
            None => 5432,
        };
        let lock_budget = match t.get("lock_budget") {
            Some(v) => self.duration(v, &field("lock_budget"))?,
            None => Duration::from_secs(1),
        };
        let round_trip = match t.get("round_trip") {
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => *b,
                other => {
                    self.type_error(v.span(), &field("round_trip"), "true or false", other);
                    return None;
                }
            },
            None => true,
        };
        let job = match t.get("job") {
            Some(v) => {
                let j = self.plain_string(v, &field("job"))?;
                match services.iter().find(|s| s.name == j) {
                    Some(s) if s.job && s.depends_on.contains(&service_name) => Some(j),
                    Some(_) => {
                        self.diags.push(
                            Diagnostic::new(v.span(), format!("`{j}` cannot apply the migrations of `{service_name}`"))
                                .help(format!("the command form names a job service (job = true) with depends_on = [\"{service_name}\"] that runs your migration tool")),
                        );
                        return None;
                    }
                    None => {
                        let names: Vec<&str> = services.iter().filter(|s| s.job).map(|s| s.name.as_str()).collect();
                        let help = match did_you_mean(&j, &names) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "name the job service that runs your migration tool (sqlx, diesel, Flyway, ...)".to_string(),
                        };
                        self.diags.push(Diagnostic::new(v.span(), format!("unknown job `{j}`")).help(help));
                        return None;
                    }
                }
            }
            None => None,
        };
        Some(Migrations { service: service_name, dir, allow, database, user, port, lock_budget, round_trip, job })
    }

    fn schedule(&mut self, v: &Value<'_>) -> Option<Schedule> {
        let t = self.table(v, "`schedule`")?;
        self.unknown_keys(t, &["rebuild", "idle_ttl"], "[schedule]");
        let rebuild = match t.get("rebuild") {
            Some(rv) => {
                let text = self.plain_string(rv, "`schedule.rebuild`")?;
                if let Err(e) = text.parse::<croner::Cron>() {
                    self.diags
                        .push(Diagnostic::new(rv.span(), format!("invalid cron expression `{text}` for `schedule.rebuild`: {e}")).help(
                        "five fields (minute hour day month weekday), or six with seconds first, e.g. \"0 4 * * *\" for 04:00 every day",
                    ));
                    return None;
                }
                Some(text)
            }
            None => None,
        };
        let idle_ttl = match t.get("idle_ttl") {
            Some(d) => Some(self.duration(d, "`schedule.idle_ttl`")?),
            None => None,
        };
        Some(Schedule { rebuild, idle_ttl })
    }

    fn check_service<'s>(&mut self, t: &DeTable<'_>, span: Span, what: &str, services: &'s [Service]) -> Option<&'s Service> {
        let Some(v) = t.get("service") else {
            self.diags
                .push(Diagnostic::new(span, format!("{what} needs a `service`")).help("name the service to check, e.g. service = \"app\""));
            return None;
        };
        let name = self.plain_string(v, &format!("{what}.service"))?;
        match services.iter().find(|s| s.name == name) {
            Some(s) => Some(s),
            None => {
                let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
                let help = match did_you_mean(&name, &names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("defined services: {}", names.join(", ")),
                };
                self.diags.push(Diagnostic::new(v.span(), format!("{what} names unknown service `{name}`")).help(help));
                None
            }
        }
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
        if kinds.len() != 1 {
            self.diags.push(
                Diagnostic::new(item.span(), format!("{what} needs exactly one of: {}", SMOKE_KINDS.join(", ")))
                    .help("e.g. http = { service = \"app\", port = 8080, path = \"/\" }"),
            );
            return None;
        }
        let kv = &t[kinds[0]];
        let timeout = match t.get("timeout") {
            Some(d) => self.duration(d, &format!("{what} timeout"))?,
            None => std::time::Duration::from_secs(10),
        };
        let kind = match kinds[0] {
            "http" => {
                let ht = self.table(kv, &format!("{what} http"))?;
                self.unknown_keys(ht, HTTP_CHECK_KEYS, &format!("the http check `{name}`"));
                let service = self.check_service(ht, kv.span(), &what, services)?;
                let port = match ht.get("port") {
                    Some(p) => self.port_number(p, "http check port")?,
                    None => match service.ports.as_slice() {
                        [only] => only.container_port,
                        _ => {
                            self.diags.push(
                                Diagnostic::new(kv.span(), format!("{what} needs a `port`")).help("add port = 8080 (the container port)"),
                            );
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
                    Some(m) => self.plain_string(m, "http check method")?.to_ascii_uppercase(),
                    None => "GET".to_string(),
                };
                let mut headers = BTreeMap::new();
                if let Some(h) = ht.get("headers") {
                    let h = self.table(h, "http check headers")?;
                    for (k, v) in h.iter() {
                        let value = self.string(v, &format!("header `{}`", k.get_ref()), true)?;
                        headers.insert(k.get_ref().to_string(), value);
                    }
                }
                let body = match ht.get("body") {
                    Some(b) => Some(self.plain_string(b, "http check body")?),
                    None => None,
                };
                let expect_status = match ht.get("expect_status") {
                    Some(s) => match integer(s.get_ref()) {
                        Some(n) if (100..=599).contains(&n) => n as u16,
                        _ => {
                            self.diags.push(Diagnostic::new(s.span(), "`expect_status` must be an HTTP status code (100-599)"));
                            return None;
                        }
                    },
                    None => 200,
                };
                let expect_body = match ht.get("expect_body") {
                    Some(b) => Some(self.plain_string(b, "expect_body")?),
                    None => None,
                };
                let expect_body_regex = match ht.get("expect_body_regex") {
                    Some(b) => {
                        let r = self.plain_string(b, "expect_body_regex")?;
                        if let Err(e) = regex::Regex::new(&r) {
                            let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
                            self.diags.push(Diagnostic::new(b.span(), format!("invalid regex in {what}: {first}")));
                            return None;
                        }
                        Some(r)
                    }
                    None => None,
                };
                let mut expect_json = BTreeMap::new();
                if let Some(j) = ht.get("expect_json") {
                    let jt = self.table(j, "expect_json")?;
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
                            DeValue::Integer(_) => serde_json::Value::from(integer(v.get_ref()).unwrap_or_default()),
                            DeValue::Float(f) => f.as_str().parse::<f64>().ok().map(serde_json::Value::from).unwrap_or_default(),
                            other => {
                                self.type_error(v.span(), &format!("expected value at `{pointer}`"), "a string, number or boolean", other);
                                continue;
                            }
                        };
                        expect_json.insert(pointer.to_string(), value);
                    }
                }
                CheckKind::Http {
                    service: service.name.clone(),
                    port,
                    method,
                    path,
                    headers,
                    body,
                    expect_status,
                    expect_body,
                    expect_body_regex,
                    expect_json,
                }
            }
            "tcp" => {
                let tt = self.table(kv, &format!("{what} tcp"))?;
                self.unknown_keys(tt, &["service", "port"], &format!("the tcp check `{name}`"));
                let service = self.check_service(tt, kv.span(), &what, services)?.name.clone();
                let Some(p) = tt.get("port") else {
                    self.diags.push(Diagnostic::new(kv.span(), format!("{what} needs a `port`")));
                    return None;
                };
                CheckKind::Tcp { service, port: self.port_number(p, "tcp check port")? }
            }
            "exec" => {
                let et = self.table(kv, &format!("{what} exec"))?;
                self.unknown_keys(et, &["service", "command", "expect_output"], &format!("the exec check `{name}`"));
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
                CheckKind::Exec { service, command, expect_output }
            }
            "sql" => {
                let st = self.table(kv, &format!("{what} sql"))?;
                self.unknown_keys(st, &["service", "query", "expect", "database", "user"], &format!("the sql check `{name}`"));
                let service = self.check_service(st, kv.span(), &what, services)?;
                let env_or =
                    |key: &str, default: &str| service.env.get(key).map(|v| v.value.clone()).unwrap_or_else(|| default.to_string());
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
                    None => env_or("POSTGRES_DB", "postgres"),
                };
                let user = match st.get("user") {
                    Some(u) => self.plain_string(u, "sql check user")?,
                    None => env_or("POSTGRES_USER", "postgres"),
                };
                CheckKind::Sql { service: service.name.clone(), database, user, query, expect }
            }
            _ => CheckKind::Script { command: self.command(kv, &format!("{what} script"))? },
        };
        let latency = match t.get("latency") {
            Some(lv) => {
                if !matches!(kind, CheckKind::Http { .. }) {
                    self.diags
                        .push(Diagnostic::new(lv.span(), format!("`latency` only applies to http checks ({what} is {})", kind.kind())));
                    return None;
                }
                let lt = self.table(lv, "latency")?;
                self.unknown_keys(lt, LATENCY_KEYS, &format!("the latency budget of `{name}`"));
                let count = |cx: &mut Self, key: &str, default: u32| -> Option<u32> {
                    match lt.get(key) {
                        Some(v) => match integer(v.get_ref()) {
                            Some(n) if (1..=100_000).contains(&n) => Some(n as u32),
                            _ => {
                                cx.diags
                                    .push(Diagnostic::new(v.span(), format!("`latency.{key}` must be a whole number from 1 to 100000")));
                                None
                            }
                        },
                        None => Some(default),
                    }
                };
                let requests = count(self, "requests", 50)?;
                let concurrency = count(self, "concurrency", 5)?;
                let Some(p95v) = lt.get("p95") else {
                    self.diags.push(
                        Diagnostic::new(lv.span(), format!("the latency budget of {what} needs `p95`"))
                            .help("e.g. latency = { p95 = \"150ms\", requests = 50, concurrency = 5 }"),
                    );
                    return None;
                };
                let p95 = self.duration(p95v, "latency.p95")?;
                let p99 = match lt.get("p99") {
                    Some(v) => Some(self.duration(v, "latency.p99")?),
                    None => None,
                };
                let max_error_rate = match lt.get("error_rate") {
                    Some(v) => {
                        let rate = match v.get_ref() {
                            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
                            DeValue::Integer(_) => integer(v.get_ref()).map(|i| i as f64),
                            _ => None,
                        };
                        match rate {
                            Some(r) if (0.0..=1.0).contains(&r) => r,
                            _ => {
                                self.diags.push(
                                    Diagnostic::new(v.span(), "`latency.error_rate` must be a fraction from 0.0 to 1.0")
                                        .help("e.g. error_rate = 0.01 for 1 %"),
                                );
                                return None;
                            }
                        }
                    }
                    None => 0.0,
                };
                Some(LatencyBudget { requests, concurrency, p95, p99, max_error_rate })
            }
            None => None,
        };
        Some(SmokeCheck { name, kind, timeout, latency })
    }

    fn cross_checks(&mut self, services: &[Service], spans: &[ServiceSpans]) {
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        // depends_on names a service that exists.
        for (svc, sp) in services.iter().zip(spans) {
            for (dep, span) in svc.depends_on.iter().zip(&sp.depends_on) {
                if !names.contains(&dep.as_str()) {
                    let help = match did_you_mean(dep, &names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("defined services: {}", names.join(", ")),
                    };
                    self.diags.push(
                        Diagnostic::new(span.clone(), format!("service `{}` depends on unknown service `{dep}`", svc.name)).help(help),
                    );
                }
            }
        }
        self.cycles(services, spans);
        // Two services publishing the same host port.
        // (host port, protocol) → (host IP if specific, service) of each publication so far.
        type Publications<'a> = HashMap<(u16, Protocol), Vec<(Option<&'a str>, &'a str)>>;
        let mut published: Publications = HashMap::new();
        for (svc, sp) in services.iter().zip(spans) {
            for (p, span) in svc.ports.iter().zip(&sp.ports) {
                let Some(hp) = p.host_port else { continue };
                let ip = p.host_ip.as_deref().filter(|ip| *ip != "0.0.0.0" && *ip != "::");
                let entry = published.entry((hp, p.protocol)).or_default();
                if let Some((_, other)) = entry.iter().find(|(oip, _)| oip.is_none() || ip.is_none() || *oip == ip) {
                    let by = if *other == svc.name { "earlier in the same list".to_string() } else { format!("by service `{other}`") };
                    self.diags.push(
                        Diagnostic::new(span.clone(), format!("host port {hp}/{} is already published {by}", p.protocol.as_str()))
                            .help("pick another host port, or give only the container port to let Docker choose one"),
                    );
                } else {
                    entry.push((ip, &svc.name));
                }
            }
        }
    }

    fn cycles(&mut self, services: &[Service], spans: &[ServiceSpans]) {
        let index: HashMap<&str, usize> = services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state = vec![0u8; services.len()];
        let mut path: Vec<usize> = Vec::new();
        fn visit(
            i: usize,
            services: &[Service],
            spans: &[ServiceSpans],
            index: &HashMap<&str, usize>,
            state: &mut [u8],
            path: &mut Vec<usize>,
            found: &mut Vec<Diagnostic>,
        ) {
            state[i] = 1;
            path.push(i);
            for (dep, span) in services[i].depends_on.iter().zip(&spans[i].depends_on) {
                let Some(&j) = index.get(dep.as_str()) else { continue };
                match state[j] {
                    0 => visit(j, services, spans, index, state, path, found),
                    1 if j == i => found.push(
                        Diagnostic::new(span.clone(), format!("service `{dep}` depends on itself"))
                            .help(format!("remove `{dep}` from its `depends_on`")),
                    ),
                    1 => {
                        let start = path.iter().position(|&p| p == j).unwrap_or(0);
                        let mut names: Vec<&str> = path[start..].iter().map(|&p| services[p].name.as_str()).collect();
                        names.push(&services[j].name);
                        found.push(
                            Diagnostic::new(span.clone(), format!("dependency cycle: {}", names.join(" -> ")))
                                .help("remove one of these `depends_on` entries"),
                        );
                    }
                    _ => {}
                }
            }
            path.pop();
            state[i] = 2;
        }
        let mut found = Vec::new();
        for i in 0..services.len() {
            if state[i] == 0 {
                visit(i, services, spans, &index, &mut state, &mut path, &mut found);
            }
        }
        self.diags.extend(found);
    }
}
