//! `stagectl import`: a docker-compose.yml (Compose Spec, with or without `version:`) → the text
//! of a stack.toml plus warnings that name the compose file's lines. Pure, like `manifest`: the
//! caller passes the text and a function that reads env files; `file.rs` is that caller (the
//! one place here that touches the file system).
//!
//! | module | does |
//! |---|---|
//! | `yaml` | saphyr's marked tree → a small tree with lines, merge keys applied, scalars as written |
//! | `service` | one service: every key carried, translated or warned about |
//! | `health` | `healthcheck` → a `ready` probe and its deadline |
//! | `keys` | labels, tmpfs, ulimits, shm_size, cap_add/cap_drop, extra_hosts, init, stop_grace_period, carried as written |
//! | `text` | interpolation syntax, word splitting, env files, ports, durations, paths, TOML quoting |
//! | `emit` | the stack.toml text with `# import:` comments |
//! | `file` | the entry point: reads, rebases paths, writes, validates |

mod emit;
mod file;
mod health;
mod keys;
mod service;
mod text;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use file::{import_file, run, validate, Request};

use emit::StackOut;
use service::{Condition, Converted};
use text::dns_label;
use yaml::{Entry, Node};

/// What the conversion needs besides the compose text.
pub struct Options<'a> {
    /// How the compose file is named in messages.
    pub file: &'a str,
    /// `--stack`: wins over the compose `name:` and `default_stack`.
    pub stack: Option<&'a str>,
    /// The stack name when neither `--stack` nor `name:` gives one: the compose file's
    /// directory, as Compose names its project.
    pub default_stack: &'a str,
    /// `--profile`: services in other profiles are left out, as `docker compose up` does.
    pub profiles: &'a [String],
    /// The compose file's directory as seen from the stack.toml's ("" when they are the same):
    /// relative paths of the compose file are rebased onto it.
    pub base: &'a str,
    /// Reads an env file named as the compose file names it (relative to its directory).
    pub read_env_file: &'a dyn Fn(&str) -> Result<String, String>,
    /// What the caller found around the file that changes its meaning (an override file
    /// Compose would merge, a `.env` stagectl will not see): warnings about the whole file.
    pub surroundings: &'a [String],
}

/// The result: stack.toml text and what needs a human's look.
#[derive(Debug, Clone)]
pub struct Import {
    pub toml: String,
    pub stack: String,
    /// stagectl service names, in file order.
    pub services: Vec<String>,
    /// Sorted by line.
    pub warnings: Vec<Warning>,
}

/// Something of the compose file that stagectl does not do the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line in the compose file.
    pub line: usize,
    /// The compose key it is about, e.g. `services.web.restart` (empty for the file itself).
    pub key: String,
    pub message: String,
    /// The stagectl service whose table carries it as an `# import:` comment; `None`: `[stack]`.
    pub service: Option<String>,
}

impl Warning {
    /// `docker-compose.yml:12: warning: services.web.restart: ...`
    pub fn render(&self, file: &str) -> String {
        if self.key.is_empty() {
            format!("{file}:{}: warning: {}", self.line, self.message)
        } else {
            format!("{file}:{}: warning: {}: {}", self.line, self.key, self.message)
        }
    }
}

/// A file that is not a compose file stagectl can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}:{col}: invalid YAML: {message}")]
    Yaml { file: String, line: usize, col: usize, message: String },
    #[error("{file}:{line}: {message}")]
    NotCompose { file: String, line: usize, message: String },
}

/// The walk's context: options, warnings, and the top-level declarations services refer to.
struct Cx<'a> {
    opts: &'a Options<'a>,
    warnings: Vec<Warning>,
    /// Named volumes declared at the top level: name → external.
    declared_volumes: BTreeMap<String, bool>,
    /// Top-level secrets and configs: name → the file they come from (`None`: not a file).
    secrets: BTreeMap<String, Option<String>>,
    configs: BTreeMap<String, Option<String>>,
}

impl Cx<'_> {
    fn warn(&mut self, line: usize, service: Option<&str>, key: String, message: String) {
        self.warnings.push(Warning { line, key, message, service: service.map(str::to_string) });
    }
}

/// Converts compose text to stack.toml text.
pub fn convert(source: &str, opts: &Options<'_>) -> Result<Import, ImportError> {
    let file = opts.file;
    let (root, tags) =
        yaml::parse(source).map_err(|e| ImportError::Yaml { file: file.into(), line: e.line, col: e.col, message: e.message })?;
    let not_compose = |line: usize, message: String| ImportError::NotCompose { file: file.into(), line, message };
    let root = root.ok_or_else(|| not_compose(1, "the file is empty; a compose file has `services`".into()))?;
    let top = root
        .entries()
        .ok_or_else(|| not_compose(root.line, format!("the top level must be a mapping with `services`, found {}", root.kind_name())))?;
    let mut cx = Cx { opts, warnings: Vec::new(), declared_volumes: BTreeMap::new(), secrets: BTreeMap::new(), configs: BTreeMap::new() };
    for message in opts.surroundings {
        cx.warn(1, None, String::new(), message.clone());
    }
    for (line, message) in tags {
        cx.warn(line, None, String::new(), message);
    }
    let mut project = None;
    let mut services = None;
    for e in top {
        match e.key.as_str() {
            // Obsolete in the Compose Spec; Compose itself ignores it.
            "version" => {}
            "name" => project = e.value.text().map(str::to_string),
            "services" => services = Some(&e.value),
            "volumes" => cx.top_volumes(&e.value),
            "networks" => cx.top_networks(&e.value),
            "secrets" => cx.secrets = top_files(&e.value),
            "configs" => cx.configs = top_files(&e.value),
            "include" => cx.warn(
                e.line,
                None,
                "include".into(),
                "`include` is not supported: flatten the files with `docker compose config > flat.yml` and import that".into(),
            ),
            k if k.starts_with("x-") => {}
            k => cx.warn(e.line, None, k.into(), format!("unknown top-level key `{k}` is ignored")),
        }
    }
    let services = services.ok_or_else(|| not_compose(root.line, "no `services` in the file".into()))?;
    let entries = services.entries().ok_or_else(|| not_compose(services.line, "`services` must be a mapping of service names".into()))?;
    if entries.is_empty() {
        return Err(not_compose(services.line, "`services` is empty".into()));
    }
    let (name, name_comment) = stack_name(opts, project);
    let selected = cx.select(entries);
    let names = cx.out_names(&selected);
    let mut converted: Vec<(String, Converted)> = Vec::new();
    for e in &selected {
        let mut c = cx.service(&e.key, &names[&e.key], &e.value);
        let profiles = profiles_of(&e.value);
        if !profiles.is_empty() {
            c.out.comments.push(format!("in Compose profile(s) {}; stagectl starts every service of the stack", profiles.join(", ")));
        }
        converted.push((e.key.clone(), c));
    }
    let defined: BTreeSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    cx.dependencies(&mut converted, &names, &defined);
    cx.warnings.sort_by_key(|w| w.line);
    let stack = StackOut { name, name_comment, services: converted.into_iter().map(|(_, c)| c.out).collect() };
    let toml = emit::emit(&stack, &cx.warnings, file);
    Ok(Import { toml, services: stack.services.iter().map(|s| s.name.clone()).collect(), stack: stack.name, warnings: cx.warnings })
}

/// `--stack`, else the compose `name:`, else the directory; made a valid stack name.
fn stack_name(opts: &Options<'_>, project: Option<String>) -> (String, Option<String>) {
    if let Some(s) = opts.stack {
        return (s.to_string(), None);
    }
    let (from, raw) = match project {
        Some(p) => ("the compose `name`", p),
        None => ("the compose file's directory", opts.default_stack.to_string()),
    };
    let label = Some(dns_label(&raw, 40)).filter(|l| !l.is_empty()).unwrap_or_else(|| "stack".to_string());
    (label, Some(format!("from {from} `{raw}`: it prefixes every container, network and volume (`--stack NAME` to choose)")))
}

fn profiles_of(service: &Node) -> Vec<String> {
    service.get("profiles").and_then(Node::items).unwrap_or_default().iter().filter_map(|n| n.text().map(str::to_string)).collect()
}

/// The names a service depends on (`depends_on` in either form, `links`), with their lines.
fn dependency_names(service: &Node) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    if let Some(d) = service.get("depends_on") {
        for i in d.items().unwrap_or_default() {
            out.extend(i.text().map(|t| (t.to_string(), i.line)));
        }
        for e in d.entries().unwrap_or_default() {
            out.push((e.key.clone(), e.line));
        }
    }
    for i in service.get("links").and_then(Node::items).unwrap_or_default() {
        out.extend(i.text().map(|t| (t.split(':').next().unwrap_or(t).to_string(), i.line)));
    }
    out
}

/// Top-level `secrets` / `configs`: name → file.
fn top_files(v: &Node) -> BTreeMap<String, Option<String>> {
    v.entries().unwrap_or_default().iter().map(|e| (e.key.clone(), e.value.get("file").and_then(Node::text).map(str::to_string))).collect()
}

impl Cx<'_> {
    fn top_volumes(&mut self, v: &Node) {
        for e in v.entries().unwrap_or_default() {
            let external = e.value.get("external").is_some_and(|x| x.boolean() != Some(false));
            self.declared_volumes.insert(e.key.clone(), external);
            for o in e.value.entries().unwrap_or_default().iter().filter(|o| o.key != "external") {
                self.warn(
                    o.line,
                    None,
                    format!("volumes.{}.{}", e.key, o.key),
                    format!("volume option `{}` is dropped: stagectl creates a plain local volume `<stack>-{}`", o.key, e.key),
                );
            }
        }
    }

    fn top_networks(&mut self, v: &Node) {
        for e in v.entries().unwrap_or_default() {
            if e.key == "default" && e.value.entries().unwrap_or_default().is_empty() {
                continue;
            }
            self.warn(
                e.line,
                None,
                format!("networks.{}", e.key),
                format!("network `{}` is dropped: every service of a stack joins one network, `<stack>-net`", e.key),
            );
        }
    }

    /// The services to import: those in no profile or an active one, plus what they depend on.
    fn select<'e>(&mut self, entries: &'e [Entry]) -> Vec<&'e Entry> {
        let active = |e: &Entry| {
            let p = profiles_of(&e.value);
            p.is_empty() || p.iter().any(|x| self.opts.profiles.iter().any(|a| a == x || a == "*"))
        };
        let mut included: BTreeSet<&str> = entries.iter().filter(|e| active(e)).map(|e| e.key.as_str()).collect();
        loop {
            let mut pulled = Vec::new();
            for e in entries.iter().filter(|e| included.contains(e.key.as_str())) {
                for (dep, line) in dependency_names(&e.value) {
                    if let Some(d) = entries.iter().find(|d| d.key == dep && !included.contains(d.key.as_str())) {
                        pulled.push((d, e.key.clone(), line));
                    }
                }
            }
            if pulled.is_empty() {
                break;
            }
            for (d, by, line) in pulled {
                if included.insert(d.key.as_str()) {
                    let msg =
                        format!("`{}` (profiles: {}) is imported because `{by}` depends on it", d.key, profiles_of(&d.value).join(", "));
                    self.warn(line, None, format!("services.{by}.depends_on"), msg);
                }
            }
        }
        for e in entries.iter().filter(|e| !included.contains(e.key.as_str())) {
            let p = profiles_of(&e.value).join(", ");
            self.warn(
                e.line,
                None,
                format!("services.{}.profiles", e.key),
                format!("service `{}` is left out: it is in profile(s) {p}, which `docker compose up` starts only when asked; import with `--profile NAME` to include it", e.key),
            );
        }
        entries.iter().filter(|e| included.contains(e.key.as_str())).collect()
    }

    /// Compose name → stagectl name (a DNS label, unique).
    fn out_names(&mut self, selected: &[&Entry]) -> BTreeMap<String, String> {
        let mut names = BTreeMap::new();
        let mut used = BTreeSet::new();
        for e in selected {
            let base = Some(dns_label(&e.key, 63)).filter(|l| !l.is_empty()).unwrap_or_else(|| "service".to_string());
            let mut label = base.clone();
            let mut n = 2;
            while used.contains(&label) {
                label = format!("{base}-{n}");
                n += 1;
            }
            used.insert(label.clone());
            if label != e.key {
                self.warn(e.line, Some(&label), format!("services.{}", e.key), format!(
                    "service `{}` is `{label}` in stagectl (a service name is its host name: lowercase letters, digits and `-`); settings that name the host `{}` must change too",
                    e.key, e.key
                ));
            }
            names.insert(e.key.clone(), label);
        }
        names
    }

    /// `depends_on` across services: names, conditions, and the services that become jobs.
    fn dependencies(&mut self, converted: &mut [(String, Converted)], names: &BTreeMap<String, String>, defined: &BTreeSet<&str>) {
        let mut waited_to_complete: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, c) in converted.iter() {
            for d in c.deps.iter().filter(|d| d.condition == Condition::Completed) {
                waited_to_complete.entry(d.service.clone()).or_default().push(name.clone());
            }
        }
        let probed: BTreeSet<String> = converted.iter().filter(|(_, c)| c.out.ready.is_some()).map(|(n, _)| n.clone()).collect();
        for (name, c) in converted.iter_mut() {
            let svc = c.out.name.clone();
            let key = format!("services.{name}.depends_on");
            for d in &c.deps {
                let Some(target) = names.get(&d.service) else {
                    let why = if defined.contains(d.service.as_str()) { "which is not imported" } else { "which the file does not define" };
                    self.warn(d.line, Some(&svc), key.clone(), format!("depends on `{}`, {why}; dropped", d.service));
                    continue;
                };
                if !c.out.depends_on.contains(target) {
                    c.out.depends_on.push(target.clone());
                }
                let job = waited_to_complete.contains_key(&d.service);
                match d.condition {
                    Condition::Healthy if !probed.contains(&d.service) && !job => self.warn(
                        d.line,
                        Some(&svc),
                        key.clone(),
                        format!(
                            "`service_healthy`, but `{}` has no healthcheck: stagectl waits only until it runs; give it a `ready` probe",
                            d.service
                        ),
                    ),
                    Condition::Listed if probed.contains(&d.service) && !job => c.out.comments.push(format!(
                        "line {}: waits until `{target}` is ready (its probe), not only started (stagectl's default; write `{target} = \"started\"` in a `depends_on` table for Compose's behaviour)",
                        d.line
                    )),
                    Condition::Started => c.out.conditions.push((target.clone(), "started")),
                    Condition::Completed => c.out.conditions.push((target.clone(), "completed")),
                    _ => {}
                }
            }
        }
        for (name, c) in converted.iter_mut() {
            let Some(dependents) = waited_to_complete.get(name.as_str()) else {
                if let Some(("no", line)) = c.restart.as_ref().map(|(p, l)| (p.as_str(), *l)) {
                    c.out.comments.push(format!(
                        "line {line}: `restart: \"no\"`: if this service is meant to exit, make it `job = true` (a service that stops fails `up`)"
                    ));
                }
                continue;
            };
            c.out.job = true;
            c.out.restart = None;
            let by: Vec<String> = dependents.iter().map(|d| format!("`{}`", names.get(d).unwrap_or(d))).collect();
            c.out.comments.push(format!("a job: {} wait(s) for it with `service_completed_successfully`; it must exit 0", by.join(", ")));
            if let Some(ready) = c.out.ready.take() {
                let svc = c.out.name.clone();
                self.warn(
                    ready.line,
                    Some(&svc),
                    format!("services.{name}.healthcheck"),
                    "dropped: a job is done when it exits 0".to_string(),
                );
            }
            if let Some((policy, line)) = c.restart.clone().filter(|(p, _)| p != "no") {
                let svc = c.out.name.clone();
                self.warn(line, Some(&svc), format!("services.{name}.restart"), format!(
                    "`restart: {policy}` is dropped: a dependent waits for `service_completed_successfully`, so stagectl runs it once, as a job"
                ));
            }
        }
    }
}
