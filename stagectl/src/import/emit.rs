//! The stack.toml text: what the conversion decided, as TOML in the manifest's own layout, with
//! `# import:` comments where a human should look (every warning is one, next to its service).

use std::time::Duration;

use super::text::{toml_array, toml_key, toml_string};
use super::Warning;
use crate::manifest::format_duration;

pub(super) struct StackOut {
    pub name: String,
    /// Said above `name`, e.g. where the name came from.
    pub name_comment: Option<String>,
    pub services: Vec<ServiceOut>,
}

/// One `[services.NAME]` table.
#[derive(Debug, Default)]
pub(super) struct ServiceOut {
    pub name: String,
    /// `# import:` lines at the top of the table, besides the warnings.
    pub comments: Vec<String>,
    pub image: Option<String>,
    pub build: Option<BuildOut>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub depends_on: Vec<String>,
    pub job: bool,
    pub ready: Option<ReadyOut>,
    pub env: Vec<EnvOut>,
    /// `depends_on` entries with a condition other than `ready`.
    pub conditions: Vec<(String, &'static str)>,
    /// `restart` of a long-running service (not `no`).
    pub restart: Option<String>,
    /// tmpfs mounts: the `tmpfs` key and `type: tmpfs` entries of `volumes`.
    pub tmpfs: Vec<String>,
    /// Keys carried as written: key → TOML value.
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub(super) struct BuildOut {
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: Vec<(String, String)>,
}

#[derive(Debug)]
pub(super) struct EnvOut {
    pub key: String,
    pub value: String,
    /// Said after the value: which env file it came from.
    pub origin: Option<String>,
}

#[derive(Debug)]
pub(super) struct ReadyOut {
    pub probe: Probe,
    pub timeout: Option<Duration>,
    /// The compose file's line of the healthcheck.
    pub line: usize,
    /// Said on the line above: where the probe came from.
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Probe {
    Tcp(u16),
    Postgres(u16),
    Mysql(u16),
    Http { port: u16, path: String },
    Exec(Vec<String>),
    Healthcheck,
}

impl ServiceOut {
    /// Sets an environment variable, replacing an earlier value in place (env files first,
    /// then `environment`, as Compose layers them).
    pub fn set_env(&mut self, key: &str, value: String, origin: Option<String>) {
        match self.env.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.value = value;
                e.origin = origin;
            }
            None => self.env.push(EnvOut { key: key.to_string(), value, origin }),
        }
    }
}

fn comment_lines(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str(&format!("# import: {line}\n"));
    }
}

/// The whole file. `warnings` with a `service` go under that service's table, the others under
/// `[stack]`.
pub(super) fn emit(stack: &StackOut, warnings: &[Warning], file: &str) -> String {
    let mut out = String::new();
    let file = std::path::Path::new(file).file_name().map(|f| f.to_string_lossy()).unwrap_or_default();
    out.push_str(&format!("# Converted from {file} by `stagectl import`. Lines starting with `# import:` need a look;\n"));
    out.push_str("# check the result with `stagectl validate` (README.md, \"Coming from docker compose\").\n\n");
    out.push_str("[stack]\n");
    if let Some(c) = &stack.name_comment {
        comment_lines(&mut out, c);
    }
    out.push_str(&format!("name = {}\n", toml_string(&stack.name)));
    for w in warnings.iter().filter(|w| w.service.is_none()) {
        comment_lines(&mut out, &format!("line {}: {}", w.line, w.message));
    }
    for s in &stack.services {
        out.push('\n');
        service(&mut out, s, warnings.iter().filter(|w| w.service.as_deref() == Some(&s.name)));
    }
    out
}

fn service<'w>(out: &mut String, s: &ServiceOut, warnings: impl Iterator<Item = &'w Warning>) {
    let table = format!("services.{}", toml_key(&s.name));
    out.push_str(&format!("[{table}]\n"));
    for w in warnings {
        comment_lines(out, &format!("line {}: {}", w.line, w.message));
    }
    for c in &s.comments {
        comment_lines(out, c);
    }
    let mut line = |key: &str, value: String| out.push_str(&format!("{key} = {value}\n"));
    if let Some(image) = &s.image {
        line("image", toml_string(image));
    }
    let build_table = s.build.as_ref().filter(|b| !b.args.is_empty());
    if let Some(b) = s.build.as_ref().filter(|b| b.args.is_empty()) {
        match &b.dockerfile {
            None => line("build", toml_string(&b.context)),
            Some(d) => line("build", format!("{{ context = {}, dockerfile = {} }}", toml_string(&b.context), toml_string(d))),
        }
    }
    if let Some(c) = &s.command {
        line("command", toml_array(c));
    }
    if let Some(e) = &s.entrypoint {
        line("entrypoint", toml_array(e));
    }
    if let Some(w) = &s.working_dir {
        line("working_dir", toml_string(w));
    }
    if let Some(u) = &s.user {
        line("user", toml_string(u));
    }
    if !s.ports.is_empty() {
        line("ports", toml_array(&s.ports));
    }
    if !s.volumes.is_empty() {
        line("volumes", toml_array(&s.volumes));
    }
    if !s.tmpfs.is_empty() {
        line("tmpfs", toml_array(&s.tmpfs));
    }
    if !s.depends_on.is_empty() && s.conditions.is_empty() {
        line("depends_on", toml_array(&s.depends_on));
    } else if !s.depends_on.is_empty() {
        let condition = |d: &String| s.conditions.iter().find(|(n, _)| n == d).map_or("ready", |(_, c)| *c);
        let entries: Vec<String> = s.depends_on.iter().map(|d| format!("{} = {}", toml_key(d), toml_string(condition(d)))).collect();
        line("depends_on", format!("{{ {} }}", entries.join(", ")));
    }
    if s.job {
        line("job", "true".to_string());
    }
    if let Some(r) = &s.restart {
        line("restart", toml_string(r));
    }
    for (k, v) in &s.extra {
        line(k, v.clone());
    }
    if let Some(r) = &s.ready {
        comment_lines(out, &r.comment);
        out.push_str(&format!("ready = {}\n", ready(r)));
    }
    if let Some(b) = build_table {
        out.push_str(&format!("\n[{table}.build]\ncontext = {}\n", toml_string(&b.context)));
        if let Some(d) = &b.dockerfile {
            out.push_str(&format!("dockerfile = {}\n", toml_string(d)));
        }
        out.push_str(&format!("\n[{table}.build.args]\n"));
        for (k, v) in &b.args {
            out.push_str(&format!("{} = {}\n", toml_key(k), toml_string(v)));
        }
    }
    if !s.env.is_empty() {
        out.push_str(&format!("\n[{table}.env]\n"));
        for e in &s.env {
            let origin = e.origin.as_ref().map(|o| format!("  # from {o}")).unwrap_or_default();
            out.push_str(&format!("{} = {}{origin}\n", toml_key(&e.key), toml_string(&e.value)));
        }
    }
}

fn ready(r: &ReadyOut) -> String {
    let probe = match &r.probe {
        Probe::Tcp(port) => format!("tcp = {port}"),
        Probe::Postgres(port) => format!("postgres = {port}"),
        Probe::Mysql(port) => format!("mysql = {port}"),
        Probe::Http { port, path } => format!("http = {}, port = {port}", toml_string(path)),
        Probe::Exec(args) => format!("exec = {}", toml_array(args)),
        Probe::Healthcheck => "healthcheck = true".to_string(),
    };
    match r.timeout {
        Some(t) => format!("{{ {probe}, timeout = {} }}", toml_string(&format_duration(t))),
        None => format!("{{ {probe} }}"),
    }
}
