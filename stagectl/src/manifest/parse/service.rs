//! `[services.NAME]`: image or build, command, env, ports, volumes, depends_on, job, and the
//! readiness probe (read in `ready`); the keys that come from docker compose are read in
//! `compose`.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::compose::COMPOSE_KEYS;
use super::cx::{is_dns_label, suggest_label, Cx, Key, Span, Value};
use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::vars::Interpolated;
use crate::manifest::{Build, Condition, PortMapping, Protocol, Readiness, Service, VolumeMount, VolumeSource};

pub(super) const OWN_KEYS: &[&str] =
    &["image", "build", "command", "entrypoint", "env", "ports", "volumes", "depends_on", "job", "ready", "working_dir", "user"];
const CONDITIONS: &[&str] = &["ready", "started", "completed"];
pub(super) const BUILD_KEYS: &[&str] = &["context", "dockerfile", "command", "args"];

/// Spans kept beside a parsed service for the checks that look across services.
pub(super) struct ServiceSpans {
    pub depends_on: Vec<Span>,
    pub ports: Vec<Span>,
    /// The value of each `depends_on` entry written with a condition (table form).
    pub conditions: BTreeMap<String, Span>,
}

/// The fields of `build` besides its context.
struct BuildOptions {
    /// Relative to the context.
    dockerfile: String,
    command: Option<String>,
    args: BTreeMap<String, String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { dockerfile: "Dockerfile".to_string(), command: None, args: BTreeMap::new() }
    }
}

/// A service's `depends_on` as far as it parsed.
#[derive(Default)]
struct Dependencies {
    names: Vec<String>,
    spans: Vec<Span>,
    /// Entries with a condition other than `ready`.
    conditions: BTreeMap<String, Condition>,
    condition_spans: BTreeMap<String, Span>,
}

/// A service's `ports` as far as they parsed.
struct Ports {
    mappings: Vec<PortMapping>,
    spans: Vec<Span>,
    /// Every entry parsed, so `mappings` is the full list.
    complete: bool,
}

impl Default for Ports {
    /// No `ports` at all: the (empty) list is complete.
    fn default() -> Self {
        Ports { mappings: Vec::new(), spans: Vec::new(), complete: true }
    }
}

impl Cx<'_> {
    /// `[services]`: every service in file order, with the spans the cross-service checks need.
    pub(super) fn services(&mut self, v: Option<&Value<'_>>) -> (Vec<Service>, Vec<ServiceSpans>) {
        let mut services = Vec::new();
        let mut spans = Vec::new();
        let Some(v) = v else {
            self.diags.push(Diagnostic::new(0..0, "no services defined").help("add a [services.NAME] table with an `image`"));
            return (services, spans);
        };
        let Some(t) = self.table(v, "`services`") else { return (services, spans) };
        if t.is_empty() {
            self.diags.push(Diagnostic::new(v.span(), "no services defined").help("add a [services.NAME] table"));
        }
        for (name, body) in t.iter() {
            if let Some((svc, sp)) = self.service(name, body) {
                services.push(svc);
                spans.push(sp);
            }
        }
        (services, spans)
    }

    fn service(&mut self, name_key: &Key<'_>, body: &Value<'_>) -> Option<(Service, ServiceSpans)> {
        let name = name_key.get_ref().to_string();
        if !is_dns_label(&name) {
            self.diags.push(Diagnostic::new(name_key.span(), format!("invalid service name `{name}`")).help(format!(
                "use lowercase letters, digits and `-` (it becomes a host name on the stack network){}",
                suggest_label(&name)
            )));
        }
        let t = self.table(body, &format!("service `{name}`"))?;
        let keys: Vec<&str> = OWN_KEYS.iter().chain(COMPOSE_KEYS).copied().collect();
        self.unknown_keys(t, &keys, &format!("[services.{name}]"));
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
        let mut env = t.get("env").map(|v| self.env(v, &name)).unwrap_or_default();
        let ports = t.get("ports").map(|v| self.ports(v, &name)).unwrap_or_default();
        let volumes = t.get("volumes").map(|v| self.volumes(v, &name)).unwrap_or_default();
        let deps = t.get("depends_on").map(|v| self.depends_on(v, &name)).unwrap_or_default();
        let job = t.get("job").is_some_and(|v| self.job_flag(v, &name));
        let compose = self.compose_keys(t, &name, job);
        // `env` wins over the env files.
        for (k, v) in compose.file_env {
            env.entry(k).or_insert(v);
        }
        let ready = self.service_ready(t, &name, job, &ports);
        let working_dir = t.get("working_dir").and_then(|v| self.plain_string(v, &field("working_dir")));
        let user = t.get("user").and_then(|v| self.plain_string(v, &field("user")));

        // Returned even when a field had errors (those are already reported), so the checks
        // across services still see this service's name, dependencies and ports.
        let service = Service {
            name,
            image,
            build,
            command,
            entrypoint,
            env,
            ports: ports.mappings,
            volumes,
            depends_on: deps.names,
            job,
            ready,
            working_dir,
            user,
            env_files: compose.env_files,
            labels: compose.labels,
            tmpfs: compose.tmpfs,
            ulimits: compose.ulimits,
            shm_size: compose.shm_size,
            cap_add: compose.cap_add,
            cap_drop: compose.cap_drop,
            extra_hosts: compose.extra_hosts,
            init: compose.init,
            stop_grace_period: compose.stop_grace_period,
            profiles: compose.profiles,
            conditions: deps.conditions,
            restart: compose.restart,
        };
        let spans = ServiceSpans { depends_on: deps.spans, ports: ports.spans, conditions: deps.condition_spans };
        Some((service, spans))
    }

    fn check_image(&mut self, image: &str, span: Span) -> Option<String> {
        if let Some(hint) = image_reference_hint(image) {
            self.diags.push(Diagnostic::new(span, format!("invalid image reference `{image}`")).help(hint));
            return None;
        }
        Some(image.to_string())
    }

    /// `build = "dir"` or `build = { context, dockerfile, command, args }`.
    fn build(&mut self, v: &Value<'_>, service: &str) -> Option<Build> {
        let (context_v, options) = match v.get_ref() {
            DeValue::String(_) => (v, BuildOptions::default()),
            DeValue::Table(t) => {
                self.unknown_keys(t, BUILD_KEYS, &format!("[services.{service}.build]"));
                let Some(context_v) = t.get("context") else {
                    self.diags.push(
                        Diagnostic::new(v.span(), format!("missing `context` in `services.{service}.build`"))
                            .help("add `context = \"path/to/dir\"` (the directory holding the Dockerfile)"),
                    );
                    return None;
                };
                (context_v, self.build_options(t, service)?)
            }
            other => {
                self.type_error(v.span(), &format!("`services.{service}.build`"), "a path string or a table", other);
                return None;
            }
        };
        let rel = self.plain_string(context_v, &format!("`services.{service}.build.context`"))?;
        let context = self.dir.join(&rel);
        if !(self.dir_exists)(&context) {
            self.diags.push(
                Diagnostic::new(context_v.span(), format!("build context `{rel}` of service `{service}` is not a directory"))
                    .help("create the directory or correct the path; it is relative to the directory of stack.toml"),
            );
            return None;
        }
        let BuildOptions { dockerfile, command, args } = options;
        Some(Build { context, dockerfile, command, args })
    }

    /// The fields of the table form of `build` besides `context`.
    fn build_options(&mut self, t: &DeTable<'_>, service: &str) -> Option<BuildOptions> {
        let field = |k: &str| format!("`services.{service}.build.{k}`");
        let mut options = BuildOptions::default();
        if let Some(d) = t.get("dockerfile") {
            options.dockerfile = self.plain_string(d, &field("dockerfile"))?;
        }
        if let Some(c) = t.get("command") {
            options.command = Some(self.plain_string(c, &field("command"))?);
        }
        if let Some(a) = t.get("args") {
            let at = self.table(a, &field("args"))?;
            for (k, val) in at.iter() {
                let s = self.plain_string(val, &format!("build arg `{}`", k.get_ref()))?;
                options.args.insert(k.get_ref().to_string(), s);
            }
        }
        Some(options)
    }

    /// `env`: strings (which may hold secrets), numbers and booleans, as strings.
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

    /// `ports`: strings like "8080:80", or bare integers for a container port.
    fn ports(&mut self, v: &Value<'_>, service: &str) -> Ports {
        let field = format!("`services.{service}.ports`");
        let mut ports = Ports { mappings: Vec::new(), spans: Vec::new(), complete: true };
        let items = match v.get_ref() {
            DeValue::Array(items) => items,
            DeValue::String(s) => {
                ports.complete = false;
                self.diags.push(
                    Diagnostic::new(v.span(), format!("{field} must be an array of strings like \"8080:80\", found a string"))
                        .help(format!("put the mapping in brackets: ports = [{:?}]", s.as_ref() as &str)),
                );
                return ports;
            }
            other => {
                ports.complete = false;
                self.type_error(v.span(), &field, "an array of strings like \"8080:80\"", other);
                return ports;
            }
        };
        for item in items.iter() {
            let parsed = match item.get_ref() {
                DeValue::Integer(_) => self.port_number(item, "port").map(|p| PortMapping {
                    host_ip: None,
                    host_port: None,
                    container_port: p,
                    protocol: Protocol::Tcp,
                    auto: false,
                }),
                DeValue::String(_) => self.plain_string(item, &field).and_then(|s| self.port_mapping(&s, item.span())),
                other => {
                    self.type_error(item.span(), &format!("each entry of {field}"), "a string like \"8080:80\"", other);
                    None
                }
            };
            match parsed {
                Some(p) => {
                    ports.mappings.push(p);
                    ports.spans.push(item.span());
                }
                None => ports.complete = false,
            }
        }
        ports
    }

    fn port_mapping(&mut self, text: &str, span: Span) -> Option<PortMapping> {
        match parse_port_mapping(text) {
            Ok(mapping) => Some(mapping),
            Err(why) => {
                self.diags.push(
                    Diagnostic::new(span, format!("invalid port mapping `{text}`: {why}"))
                        .help("write \"HOST:CONTAINER\" (e.g. \"8080:80\"), \"IP:HOST:CONTAINER\", \"auto:CONTAINER\" for a stable port from `stack.port_range`, or \"CONTAINER\" for any free host port; append /udp for UDP"),
                );
                None
            }
        }
    }

    fn volumes(&mut self, v: &Value<'_>, service: &str) -> Vec<VolumeMount> {
        let mut volumes = Vec::new();
        for (text, span) in self.string_array(v, &format!("`services.{service}.volumes`")).unwrap_or_default() {
            match parse_volume(&text, self.dir) {
                Ok(mount) => volumes.push(mount),
                Err(why) => self.diags.push(
                    Diagnostic::new(span, format!("invalid volume `{text}`: {why}"))
                        .help("write \"NAME:/path\" for a named volume or \"./dir:/path\" for a host directory; append :ro for read-only"),
                ),
            }
        }
        volumes
    }

    /// `depends_on` without duplicates, with the span of each entry: a list of names (each
    /// waited for `ready`), or a table name → condition. Whether the names exist is checked
    /// across services, once all are read.
    fn depends_on(&mut self, v: &Value<'_>, service: &str) -> Dependencies {
        let field = format!("`services.{service}.depends_on`");
        let mut deps = Dependencies::default();
        if let DeValue::Table(t) = v.get_ref() {
            for (k, val) in t.iter() {
                let dep = k.get_ref().to_string();
                let what = format!("`services.{service}.depends_on.{dep}`");
                let Some(text) = self.raw_string(val, &what).map(str::to_string) else {
                    self.help_last(format!("write {dep} = \"ready\", \"started\" or \"completed\""));
                    continue;
                };
                let condition = match text.as_str() {
                    "ready" | "service_healthy" => Condition::Ready,
                    "started" | "service_started" => Condition::Started,
                    "completed" | "service_completed_successfully" => Condition::Completed,
                    _ => {
                        let help = match did_you_mean(&text, CONDITIONS) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "use \"ready\" (probed ready, the default), \"started\" (container started) or \"completed\" (a job that exited 0)".to_string(),
                        };
                        self.diags.push(Diagnostic::new(val.span(), format!("unknown condition `{text}` in {what}")).help(help));
                        continue;
                    }
                };
                if condition != Condition::Ready {
                    deps.conditions.insert(dep.clone(), condition);
                }
                deps.condition_spans.insert(dep.clone(), val.span());
                deps.names.push(dep);
                deps.spans.push(k.span());
            }
            return deps;
        }
        let mut seen = std::collections::HashSet::new();
        for (dep, span) in self.string_array(v, &field).unwrap_or_default() {
            if !seen.insert(dep.clone()) {
                self.diags.push(Diagnostic::new(span, format!("`{dep}` is listed twice in {field}")).help("remove the second entry"));
                continue;
            }
            deps.names.push(dep);
            deps.spans.push(span);
        }
        deps
    }

    fn job_flag(&mut self, v: &Value<'_>, service: &str) -> bool {
        self.boolean(v, &format!("`services.{service}.job`")).unwrap_or_else(|| {
            self.help_last("write `job = true` or `job = false`, without quotes");
            false
        })
    }

    /// The `ready` probe of a long-running service; a job is ready when it exits 0.
    fn service_ready(&mut self, t: &DeTable<'_>, service: &str, job: bool, ports: &Ports) -> Option<Readiness> {
        let v = t.get("ready")?;
        if job {
            self.diags.push(
                Diagnostic::new(v.span(), format!("job `{service}` cannot have a `ready` probe"))
                    .help("a job is done when it exits 0; remove `ready` or drop `job = true`"),
            );
            return None;
        }
        self.ready(v, service, &ports.mappings, ports.complete)
    }
}

/// What is wrong with an image reference, as a hint; `None` when it looks valid.
pub(super) fn image_reference_hint(image: &str) -> Option<&'static str> {
    let repo = image.rsplit_once('/').map(|(_, r)| r).unwrap_or(image);
    let repo_name = repo.split([':', '@']).next().unwrap_or("");
    if image.is_empty() || image.chars().any(char::is_whitespace) || repo_name.is_empty() {
        return Some("write it as NAME[:TAG], e.g. \"postgres:15\"");
    }
    let path = image.split([':', '@']).next().unwrap_or("");
    // A registry host (`reg.io`, `host:5000`, `localhost`) may have capitals; the path may not.
    let path_after_registry = match path.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => rest,
        _ => path,
    };
    if path_after_registry.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("image repository names must be lowercase");
    }
    None
}

/// Why a port mapping is invalid; rendered after "invalid port mapping `TEXT`: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum PortMappingError {
    #[error("unknown protocol `{0}`")]
    UnknownProtocol(String),
    #[error("port ranges are not supported; list each port separately")]
    Range,
    #[error("port {0} is out of range (1-65535)")]
    OutOfRange(String),
    #[error("`{0}` is not a port number")]
    NotAPort(String),
    #[error("`{0}` is not an IP address")]
    NotAnIp(String),
    #[error("too many `:`")]
    TooManyColons,
}

/// `[IP:][HOST:]CONTAINER[/PROTO]`, where HOST may be `auto`.
pub(super) fn parse_port_mapping(text: &str) -> Result<PortMapping, PortMappingError> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((s, "tcp")) => (s, Protocol::Tcp),
        Some((s, "udp")) => (s, Protocol::Udp),
        Some((_, p)) => return Err(PortMappingError::UnknownProtocol(p.to_string())),
        None => (text, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    // The host port is checked before the container port, so its problem is the one reported.
    let host = |h: &str| if h == "auto" { Ok(None) } else { port(h).map(Some) };
    let auto = parts.len() > 1 && parts[1] == "auto";
    let (host_ip, host_port, container_port) = match parts.as_slice() {
        [c] => (None, None, port(c)?),
        [c, h] => (None, host(h)?, port(c)?),
        [c, h, ip] => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(PortMappingError::NotAnIp(ip.to_string()));
            }
            (Some(ip.to_string()), host(h)?, port(c)?)
        }
        _ => return Err(PortMappingError::TooManyColons),
    };
    Ok(PortMapping { host_ip, host_port, container_port, protocol, auto })
}

fn port(text: &str) -> Result<u16, PortMappingError> {
    if text.contains('-') {
        return Err(PortMappingError::Range);
    }
    match text.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        // Digits only: a number, just not a port (however many digits).
        _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => Err(PortMappingError::OutOfRange(text.to_string())),
        _ => Err(PortMappingError::NotAPort(text.to_string())),
    }
}

/// Why a volume is invalid; rendered after "invalid volume `TEXT`: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum VolumeError {
    #[error("unknown mode `{0}` (use ro or rw)")]
    UnknownMode(String),
    #[error("missing the container path")]
    MissingContainerPath,
    #[error("too many `:`")]
    TooManyColons,
    #[error("container path `{0}` must be absolute")]
    RelativeContainerPath(String),
    #[error("`{0}` is neither a volume name nor a path starting with . or /")]
    BadSource(String),
}

/// `NAME:/path[:ro|:rw]` for a named volume, `./dir:/path` or `/abs:/path` for a bind mount
/// (resolved against `dir`).
pub(super) fn parse_volume(text: &str, dir: &Path) -> Result<VolumeMount, VolumeError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        [_, _, m] => return Err(VolumeError::UnknownMode(m.to_string())),
        [_] => return Err(VolumeError::MissingContainerPath),
        _ => return Err(VolumeError::TooManyColons),
    };
    if !target.starts_with('/') {
        return Err(VolumeError::RelativeContainerPath(target.to_string()));
    }
    let source = if source.starts_with('/') || source.starts_with('.') {
        VolumeSource::Bind(dir.join(source))
    } else if is_volume_name(source) {
        VolumeSource::Named(source.to_string())
    } else {
        return Err(VolumeError::BadSource(source.to_string()));
    };
    Ok(VolumeMount { source, target: target.to_string(), read_only })
}

/// What Docker accepts as a volume name: alphanumerics, `_`, `-` and `.`, starting alphanumeric.
fn is_volume_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
