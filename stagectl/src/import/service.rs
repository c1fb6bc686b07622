//! One Compose service → one `[services.NAME]` table: every key is carried, translated, or
//! named in a warning.

use super::emit::{BuildOut, ServiceOut};
use super::keys::CARRIED;
use super::text::{dns_label, interpolate, is_shell_syntax, literal, parse_env_file, rebase, short_port, split_words};
use super::yaml::{Entry, Kind, Node, Value};
use super::Cx;

/// How a dependent waits for a dependency (`depends_on` long syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Condition {
    /// The short syntax (a list, `links`): Compose waits for the start; stagectl keeps its
    /// own default, readiness.
    Listed,
    Started,
    Healthy,
    Completed,
}

#[derive(Debug, Clone)]
pub(super) struct Dep {
    /// The dependency's Compose name.
    pub service: String,
    pub condition: Condition,
    pub line: usize,
}

pub(super) struct Converted {
    pub out: ServiceOut,
    pub deps: Vec<Dep>,
    /// `restart` and its line.
    pub restart: Option<(String, usize)>,
}

/// Keys with no stagectl equivalent, and why each is dropped.
const DROPPED: &[(&str, &str)] = &[
    ("container_name", "stagectl names the container `<stack>-<service>`; other services reach it by its service name"),
    ("hostname", "the host name on the stack network is the service name"),
    ("domainname", "the host name on the stack network is the service name"),
    ("networks", "every service of a stack joins one network, `<stack>-net`, and is reached by its service name; aliases are not carried"),
    ("network_mode", "every service joins the stack network"),
    ("deploy", "stagectl runs one container per service without resource limits or placement"),
    ("scale", "stagectl runs one container per service"),
    ("extends", "not supported: flatten the file with `docker compose config > flat.yml` and import that"),
    ("logging", "stagectl reads logs through the engine's default log driver"),
    ("expose", "no effect in stagectl either: every container port is reachable on the stack network"),
    ("stop_signal", "`down` stops containers with the image's stop signal"),
    ("pull_policy", "stagectl pulls an image only when it is missing, and builds when `build` is set"),
    ("platform", "stagectl uses the engine's platform"),
];

impl Cx<'_> {
    /// Converts the service `name` (Compose name) whose body is `body`; `out_name` is its
    /// stagectl name.
    pub(super) fn service(&mut self, name: &str, out_name: &str, body: &Node) -> Converted {
        let mut c = Converted { out: ServiceOut { name: out_name.to_string(), ..Default::default() }, deps: Vec::new(), restart: None };
        let Some(entries) = body.entries() else {
            self.warn(body.line, Some(out_name), format!("services.{name}"), format!("must be a mapping, found {}", body.kind_name()));
            return c;
        };
        // Env files first: `environment` overrides them.
        if let Some(e) = entries.iter().find(|e| e.key == "env_file") {
            self.env_files(&mut c.out, name, e);
        }
        for e in entries {
            let key = format!("services.{name}.{}", e.key);
            let v = &e.value;
            match e.key.as_str() {
                "image" => c.out.image = self.string(v, out_name, &key),
                "build" => c.out.build = self.build(v, out_name, &key),
                "command" => c.out.command = self.command(v, out_name, &key),
                "entrypoint" => c.out.entrypoint = self.command(v, out_name, &key),
                "working_dir" => c.out.working_dir = self.string(v, out_name, &key),
                "user" => c.out.user = self.string(v, out_name, &key),
                "environment" => self.environment(&mut c.out, v, &key),
                "env_file" => {}
                "ports" => self.ports(&mut c.out, v, &key),
                "volumes" => self.volumes(&mut c.out, v, &key),
                "secrets" | "configs" => self.file_mounts(&mut c.out, v, &key, e.key == "secrets"),
                "depends_on" => c.deps.extend(self.depends_on(v, out_name, &key)),
                "links" => self.links(&mut c.deps, v, out_name, &key),
                "healthcheck" => {
                    let health = super::health::healthcheck(v);
                    for (line, message) in health.warnings {
                        self.warn(line, Some(out_name), key.clone(), message);
                    }
                    c.out.ready = health.ready;
                }
                "deploy" if v.get("replicas").and_then(Node::text).is_some_and(|r| r != "1") => {
                    let n = v.get("replicas").and_then(Node::text).unwrap_or("?");
                    self.warn(e.line, Some(out_name), key, format!("`deploy` (replicas: {n}) is dropped: stagectl runs one container per service, without resource limits or placement"));
                }
                "restart" => {
                    let policy = v.text().unwrap_or("no").to_string();
                    let known = matches!(policy.as_str(), "no" | "always" | "unless-stopped" | "on-failure")
                        || policy.strip_prefix("on-failure:").is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0));
                    if !known {
                        self.warn(
                            e.line,
                            Some(out_name),
                            key,
                            format!("`restart: {policy}` is dropped: not a restart policy stagectl knows"),
                        );
                    } else if policy != "no" {
                        c.out.restart = Some(policy.clone());
                    }
                    c.restart = Some((policy, e.line));
                }
                k if CARRIED.contains(&k) => self.carry(&mut c.out, name, e),
                // Applied when the services to import were chosen.
                "profiles" => {}
                k if k.starts_with("x-") => {}
                k => {
                    let why = DROPPED.iter().find(|(d, _)| *d == k).map(|(_, why)| *why).unwrap_or("stagectl has no equivalent");
                    self.warn(e.line, Some(out_name), key, format!("`{k}` is dropped: {why}"));
                }
            }
        }
        if c.out.image.is_none() && c.out.build.is_none() {
            self.warn(
                body.line,
                Some(out_name),
                format!("services.{name}"),
                "has neither a usable `image` nor `build`: add one to the stack.toml".to_string(),
            );
        }
        c
    }

    /// A scalar in stagectl's interpolation syntax; `None` (with a warning) for anything else.
    fn string(&mut self, v: &Node, svc: &str, key: &str) -> Option<String> {
        match v.text() {
            Some(t) => Some(self.interp(t, v.line, svc, key)),
            None if v.is_null() => None,
            None => {
                self.warn(v.line, Some(svc), key.to_string(), format!("must be a single value, found {}; dropped", v.kind_name()));
                None
            }
        }
    }

    /// Compose interpolation → stagectl's, each note a warning.
    fn interp(&mut self, text: &str, line: usize, svc: &str, key: &str) -> String {
        let mut notes = Vec::new();
        let out = interpolate(text, &|_: &str| None, &mut notes);
        for n in notes {
            self.warn(line, Some(svc), key.to_string(), n);
        }
        out
    }

    /// `command` / `entrypoint`: a list as it is; a string split the way Compose splits it.
    fn command(&mut self, v: &Node, svc: &str, key: &str) -> Option<Vec<String>> {
        let words: Vec<String> = match &v.value {
            Value::Null => return None,
            Value::Seq(items) => items.iter().filter_map(|i| i.text().map(|t| self.interp(t, i.line, svc, key))).collect(),
            Value::Scalar { text, .. } => match split_words(text) {
                Ok(words) => {
                    if let Some(op) = words.iter().find(|w| is_shell_syntax(w)) {
                        self.warn(v.line, Some(svc), key.to_string(), format!(
                            "this string holds shell syntax (`{}`), which Compose (and so stagectl) passes to the program as a plain argument; write [\"sh\", \"-c\", \"...\"] if a shell was meant",
                            op.text
                        ));
                    }
                    words.iter().map(|w| self.interp(&w.text, v.line, svc, key)).collect()
                }
                Err(why) => {
                    self.warn(v.line, Some(svc), key.to_string(), format!("cannot be split into arguments ({why}); dropped"));
                    return None;
                }
            },
            Value::Map(_) => {
                self.warn(v.line, Some(svc), key.to_string(), "must be a string or a list; dropped".to_string());
                return None;
            }
        };
        if words.is_empty() {
            self.warn(
                v.line,
                Some(svc),
                key.to_string(),
                "an empty value (which resets the image's) has no stagectl form; dropped".to_string(),
            );
            return None;
        }
        Some(words)
    }

    /// `build`: a context path, or `{ context, dockerfile, args, target, ... }`.
    fn build(&mut self, v: &Node, svc: &str, key: &str) -> Option<BuildOut> {
        let mut b = BuildOut { context: ".".to_string(), ..Default::default() };
        let context_node = match &v.value {
            Value::Scalar { .. } => Some(v),
            Value::Map(entries) => {
                for e in entries {
                    let k = format!("{key}.{}", e.key);
                    match e.key.as_str() {
                        "context" => {}
                        "dockerfile" => b.dockerfile = self.string(&e.value, svc, &k),
                        "args" => b.args = self.pairs(&e.value, svc, &k),
                        "target" => self.warn(e.line, Some(svc), k, format!(
                            "`target: {}` is dropped: stagectl builds the Dockerfile's last stage; make that stage the last one, or point `dockerfile` at a file whose last stage it is",
                            e.value.text().unwrap_or("?")
                        )),
                        other => self.warn(e.line, Some(svc), k, format!("`build.{other}` is dropped: stagectl builds with context, dockerfile and args only")),
                    }
                }
                v.get("context")
            }
            _ => {
                self.warn(v.line, Some(svc), key.to_string(), format!("must be a path or a mapping, found {}; dropped", v.kind_name()));
                return None;
            }
        };
        if let Some(c) = context_node {
            let text = c.text().unwrap_or(".");
            if text.contains("://") || text.starts_with("git@") {
                self.warn(
                    c.line,
                    Some(svc),
                    key.to_string(),
                    format!("remote build context `{text}` is not supported: clone it and point `build` at the directory"),
                );
                return None;
            }
            let converted = self.interp(text, c.line, svc, key);
            b.context = rebase(self.opts.base, &converted);
        } else {
            b.context = rebase(self.opts.base, ".");
        }
        Some(b)
    }

    /// A mapping or a `KEY=VALUE` list as pairs; a key without a value takes `${KEY}`.
    fn pairs(&mut self, v: &Node, svc: &str, key: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match &v.value {
            Value::Map(entries) => {
                for e in entries {
                    let value = match e.value.text() {
                        Some(t) => self.interp(t, e.line, svc, key),
                        None => self.environment_ref(&e.key, e.line, svc, key),
                    };
                    out.push((e.key.clone(), value));
                }
            }
            Value::Seq(items) => {
                for i in items {
                    let Some(t) = i.text() else { continue };
                    match t.split_once('=') {
                        Some((k, val)) => out.push((k.to_string(), self.interp(val, i.line, svc, key))),
                        None => out.push((t.to_string(), self.environment_ref(t, i.line, svc, key))),
                    }
                }
            }
            Value::Null => {}
            Value::Scalar { .. } => {
                self.warn(v.line, Some(svc), key.to_string(), "must be a mapping or a list of KEY=VALUE; dropped".to_string());
            }
        }
        out
    }

    /// A variable Compose takes from the shell: stagectl's `${NAME}`, which `up` refuses while
    /// NAME is unset (Compose would leave it out).
    fn environment_ref(&mut self, name: &str, line: usize, svc: &str, key: &str) -> String {
        self.warn(
            line,
            Some(svc),
            key.to_string(),
            format!("`{name}` has no value: it becomes `${{{name}}}`, which stagectl requires to be set (in the environment or .env)"),
        );
        format!("${{{name}}}")
    }

    fn environment(&mut self, out: &mut ServiceOut, v: &Node, key: &str) {
        let svc = out.name.clone();
        for (k, value) in self.pairs(v, &svc, key) {
            out.set_env(&k, value, None);
        }
    }

    /// `env_file`: each file read (relative to the compose file) and its variables inlined.
    fn env_files(&mut self, out: &mut ServiceOut, name: &str, e: &Entry) {
        let key = format!("services.{name}.env_file");
        let svc = out.name.clone();
        let files: Vec<(String, bool, usize)> = match &e.value.value {
            Value::Scalar { text, .. } => vec![(text.clone(), true, e.value.line)],
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| match (i.text(), i.get("path").and_then(Node::text)) {
                    (Some(t), _) => Some((t.to_string(), true, i.line)),
                    (None, Some(p)) => Some((p.to_string(), i.get("required").and_then(Node::boolean) != Some(false), i.line)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for (path, required, line) in files {
            let text = match (self.opts.read_env_file)(&path) {
                Ok(text) => text,
                Err(why) if required => {
                    self.warn(
                        line,
                        Some(&svc),
                        key.clone(),
                        format!("env file `{path}` cannot be read ({why}); its variables are missing"),
                    );
                    continue;
                }
                Err(_) => continue,
            };
            let (vars, problems) = parse_env_file(&text);
            for (l, p) in problems {
                self.warn(line, Some(&svc), key.clone(), format!("{path}:{l}: {p}; line skipped"));
            }
            let mut local = std::collections::BTreeMap::<String, String>::new();
            for var in vars {
                let value = match &var.value {
                    None => self.environment_ref(&var.key, line, &svc, &key),
                    Some(v) if var.literal => literal(v),
                    Some(v) => {
                        let mut notes = Vec::new();
                        let converted = interpolate(v, &|n: &str| local.get(n).cloned(), &mut notes);
                        for n in notes {
                            self.warn(line, Some(&svc), key.clone(), format!("{path}:{}: {n}", var.line));
                        }
                        converted
                    }
                };
                if looks_secret(&var.key) {
                    self.warn(line, Some(&svc), key.clone(), format!(
                        "{path}:{}: the value of {} is written into stack.toml; if it is a secret, use `${{secret:{}}}` and put it in secrets.env",
                        var.line,
                        var.key,
                        var.key.to_ascii_lowercase()
                    ));
                }
                local.insert(var.key.clone(), value.clone());
                out.set_env(&var.key, value, Some(format!("env_file {path}:{}", var.line)));
            }
        }
    }

    fn ports(&mut self, out: &mut ServiceOut, v: &Node, key: &str) {
        let svc = out.name.clone();
        for item in v.items().unwrap_or_default() {
            match &item.value {
                Value::Scalar { text, kind: Kind::Int } => out.ports.push(text.clone()),
                Value::Scalar { text, .. } if text.contains('$') => out.ports.push(self.interp(text, item.line, &svc, key)),
                Value::Scalar { text, .. } => match short_port(text) {
                    Ok((ports, notes)) => {
                        out.ports.extend(ports);
                        for n in notes {
                            self.warn(item.line, Some(&svc), key.to_string(), n);
                        }
                    }
                    Err(why) => self.warn(item.line, Some(&svc), key.to_string(), format!("{why}; not published")),
                },
                Value::Map(_) => self.long_port(out, item, key),
                _ => {}
            }
        }
    }

    /// `{ target, published, host_ip, protocol, mode, name, app_protocol }`.
    fn long_port(&mut self, out: &mut ServiceOut, item: &Node, key: &str) {
        let svc = out.name.clone();
        let text = |k: &str| item.get(k).and_then(Node::text).map(str::to_string);
        let Some(target) = text("target") else {
            self.warn(item.line, Some(&svc), key.to_string(), "a port without `target` is skipped".to_string());
            return;
        };
        for e in item.entries().unwrap_or_default() {
            if !matches!(e.key.as_str(), "target" | "published" | "host_ip" | "protocol") {
                self.warn(e.line, Some(&svc), key.to_string(), format!("port option `{}` is dropped", e.key));
            }
        }
        let mut short = target;
        let ip = text("host_ip");
        if let Some(published) = text("published").or_else(|| ip.as_ref().map(|_| String::new())) {
            short = format!("{published}:{short}");
        }
        if let Some(ip) = ip {
            short = format!("{}:{short}", if ip.contains(':') { format!("[{ip}]") } else { ip });
        }
        if let Some(proto) = text("protocol") {
            short = format!("{short}/{proto}");
        }
        let fake = Node { line: item.line, value: Value::Scalar { text: short, kind: Kind::Str } };
        self.ports(out, &Node { line: item.line, value: Value::Seq(vec![fake]) }, key);
    }

    fn volumes(&mut self, out: &mut ServiceOut, v: &Node, key: &str) {
        let svc = out.name.clone();
        for item in v.items().unwrap_or_default() {
            if item.get("type").and_then(Node::text) == Some("tmpfs") {
                if let Some(mount) = self.tmpfs_volume(&svc, item, key) {
                    out.tmpfs.push(mount);
                }
                continue;
            }
            let mount = match &item.value {
                Value::Scalar { text, .. } => self.short_volume(&svc, text, item.line, key),
                Value::Map(_) => self.long_volume(&svc, item, key),
                _ => None,
            };
            out.volumes.extend(mount);
        }
    }

    /// `SOURCE:TARGET[:MODE]` or an anonymous `TARGET`.
    fn short_volume(&mut self, svc: &str, text: &str, line: usize, key: &str) -> Option<String> {
        let parts = split_outside_braces(text, ':');
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, *t, ""),
            [s, t] => (Some(*s), *t, ""),
            [s, t, m] => (Some(*s), *t, *m),
            _ => {
                self.warn(line, Some(svc), key.to_string(), format!("volume `{text}` has too many `:`; skipped"));
                return None;
            }
        };
        let mut read_only = false;
        for m in mode.split(',').filter(|m| !m.is_empty()) {
            match m {
                "ro" => read_only = true,
                "rw" => {}
                other => self.warn(line, Some(svc), key.to_string(), format!("volume option `{other}` of `{text}` is dropped")),
            }
        }
        self.mount(svc, source, target, read_only, line, key)
    }

    /// `{ type: tmpfs, target, tmpfs: { size, mode } }` → a `tmpfs` entry `/path:size=..,mode=..`.
    fn tmpfs_volume(&mut self, svc: &str, item: &Node, key: &str) -> Option<String> {
        let Some(target) = item.get("target").and_then(Node::text) else {
            self.warn(item.line, Some(svc), key.to_string(), "a tmpfs mount without `target` is skipped".to_string());
            return None;
        };
        let mut options = Vec::new();
        for e in item.get("tmpfs").and_then(Node::entries).unwrap_or_default() {
            match (e.key.as_str(), e.value.text()) {
                ("size", Some(size)) => options.push(format!("size={size}")),
                // Written 0o1777 or 01777; Docker wants the octal digits.
                ("mode", Some(mode)) => {
                    let digits = mode.trim_start_matches("0o").trim_start_matches('0');
                    options.push(format!("mode={}", if digits.is_empty() { "0" } else { digits }));
                }
                (other, _) => self.warn(e.line, Some(svc), key.to_string(), format!("tmpfs option `{other}` is dropped")),
            }
        }
        for e in item.entries().unwrap_or_default().iter().filter(|e| !matches!(e.key.as_str(), "type" | "target" | "tmpfs")) {
            self.warn(e.line, Some(svc), key.to_string(), format!("volume option `{}` of a tmpfs mount is dropped", e.key));
        }
        Some(if options.is_empty() { target.to_string() } else { format!("{target}:{}", options.join(",")) })
    }

    /// `{ type, source, target, read_only, bind, volume, tmpfs, consistency }`.
    fn long_volume(&mut self, svc: &str, item: &Node, key: &str) -> Option<String> {
        let text = |k: &str| item.get(k).and_then(Node::text);
        let kind = text("type").unwrap_or("volume");
        let Some(target) = text("target") else {
            self.warn(item.line, Some(svc), key.to_string(), "a volume without `target` is skipped".to_string());
            return None;
        };
        if !matches!(kind, "volume" | "bind") {
            self.warn(
                item.line,
                Some(svc),
                key.to_string(),
                format!("`type: {kind}` mount at {target} is dropped: stagectl mounts named volumes and host paths only"),
            );
            return None;
        }
        for e in item.entries().unwrap_or_default() {
            if !matches!(e.key.as_str(), "type" | "source" | "target" | "read_only") {
                self.warn(e.line, Some(svc), key.to_string(), format!("volume option `{}` is dropped", e.key));
            }
        }
        let read_only = item.get("read_only").and_then(Node::boolean).unwrap_or(false);
        self.mount(svc, text("source"), target, read_only, item.line, key)
    }

    /// A stagectl volume string: named, bind (rebased onto the stack.toml's directory), or an
    /// anonymous volume made a named one.
    fn mount(&mut self, svc: &str, source: Option<&str>, target: &str, read_only: bool, line: usize, key: &str) -> Option<String> {
        let target = self.interp(target, line, svc, key);
        let suffix = if read_only { ":ro" } else { "" };
        let Some(source) = source.filter(|s| !s.is_empty()) else {
            let name = dns_label(&format!("{svc}-{target}"), 63);
            self.warn(
                line,
                Some(svc),
                key.to_string(),
                format!(
                    "the anonymous volume at {target} becomes the named volume `{name}` (kept across `up`, removed by `down --volumes`)"
                ),
            );
            return Some(format!("{name}:{target}{suffix}"));
        };
        let converted = self.interp(source, line, svc, key);
        let source = if let Some(home) = source.strip_prefix('~') {
            format!("${{HOME}}{home}")
        } else if source.starts_with(['.', '/']) {
            rebase(self.opts.base, &converted)
        } else if source.starts_with('$') {
            converted
        } else {
            match self.declared_volumes.get(source) {
                Some(true) => self.warn(line, Some(svc), key.to_string(), format!(
                    "`{source}` is an external volume in Compose; stagectl mounts its own stack volume `<stack>-{source}` instead, so its data is not shared"
                )),
                Some(false) => {}
                None => self.warn(line, Some(svc), key.to_string(), format!("volume `{source}` is not declared under the top-level `volumes`; stagectl creates it anyway")),
            }
            converted
        };
        Some(format!("{source}:{target}{suffix}"))
    }

    /// Service `secrets` / `configs` from files: read-only bind mounts at the place Compose
    /// mounts them (`/run/secrets/NAME`, `/NAME`).
    fn file_mounts(&mut self, out: &mut ServiceOut, v: &Node, key: &str, secrets: bool) {
        let svc = out.name.clone();
        for item in v.items().unwrap_or_default() {
            let (source, target) = match (item.text(), item.get("source").and_then(Node::text)) {
                (Some(s), _) => (s.to_string(), None),
                (None, Some(s)) => (s.to_string(), item.get("target").and_then(Node::text).map(str::to_string)),
                _ => continue,
            };
            for e in item.entries().unwrap_or_default().iter().filter(|e| !matches!(e.key.as_str(), "source" | "target")) {
                self.warn(e.line, Some(&svc), key.to_string(), format!("`{}` of `{source}` is dropped", e.key));
            }
            let declared = if secrets { self.secrets.get(&source) } else { self.configs.get(&source) };
            let Some(Some(file)) = declared.cloned() else {
                self.warn(item.line, Some(&svc), key.to_string(), format!(
                    "`{source}` is not declared with a `file:` at the top level; stagectl mounts only file-based secrets and configs; dropped"
                ));
                continue;
            };
            let dir = if secrets { "/run/secrets/" } else { "/" };
            let target = match target {
                Some(t) if t.starts_with('/') => t,
                Some(t) => format!("{dir}{t}"),
                None => format!("{dir}{source}"),
            };
            out.volumes.push(format!("{}:{target}:ro", rebase(self.opts.base, &file)));
        }
    }

    /// `depends_on`: a list (started) or a mapping with conditions.
    fn depends_on(&mut self, v: &Node, svc: &str, key: &str) -> Vec<Dep> {
        let mut deps = Vec::new();
        match &v.value {
            Value::Seq(items) => {
                for i in items {
                    if let Some(t) = i.text() {
                        deps.push(Dep { service: t.to_string(), condition: Condition::Listed, line: i.line });
                    }
                }
            }
            Value::Map(entries) => {
                for e in entries {
                    let condition = match e.value.get("condition").and_then(Node::text).unwrap_or("service_started") {
                        "service_healthy" => Condition::Healthy,
                        "service_completed_successfully" => Condition::Completed,
                        "service_started" => Condition::Started,
                        other => {
                            self.warn(
                                e.line,
                                Some(svc),
                                key.to_string(),
                                format!("unknown condition `{other}` is read as service_started"),
                            );
                            Condition::Started
                        }
                    };
                    if e.value.get("required").and_then(Node::boolean) == Some(false) {
                        self.warn(
                            e.line,
                            Some(svc),
                            key.to_string(),
                            format!(
                                "`required: false` is dropped: stagectl always starts `{}` first, and skips this service if it fails",
                                e.key
                            ),
                        );
                    }
                    if e.value.get("restart").and_then(Node::boolean) == Some(true) {
                        self.warn(
                            e.line,
                            Some(svc),
                            key.to_string(),
                            format!(
                                "`restart: true` is dropped: a long-running service is not recreated when `{}` is (a job is re-run)",
                                e.key
                            ),
                        );
                    }
                    deps.push(Dep { service: e.key.clone(), condition, line: e.line });
                }
            }
            _ => {}
        }
        deps
    }

    /// `links`: `SERVICE[:ALIAS]`, a dependency; the alias is not carried.
    fn links(&mut self, deps: &mut Vec<Dep>, v: &Node, svc: &str, key: &str) {
        for i in v.items().unwrap_or_default() {
            let Some(t) = i.text() else { continue };
            let (service, alias) = t.split_once(':').unwrap_or((t, t));
            if alias != service {
                self.warn(i.line, Some(svc), key.to_string(), format!("link alias `{alias}` is dropped: reach the service as `{service}`"));
            }
            deps.push(Dep { service: service.to_string(), condition: Condition::Listed, line: i.line });
        }
    }
}

/// Names that usually hold secrets.
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "PRIVATE_KEY", "ACCESS_KEY"].iter().any(|s| k.contains(s))
}

/// Splits on `sep` outside `${...}`.
fn split_outside_braces(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut prev = '\0';
    for (i, c) in text.char_indices() {
        match c {
            '{' if prev == '$' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
        prev = c;
    }
    parts.push(&text[start..]);
    parts
}
