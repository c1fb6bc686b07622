//! The service keys people bring from docker compose: `env_file`, `labels`, `tmpfs`,
//! `ulimits`, `shm_size`, `cap_add`/`cap_drop`, `extra_hosts`, `init`, `stop_grace_period`,
//! `profiles` and `restart`. Each is read into the [`Service`] field of the same name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::cx::{exact_integer, Cx, Span, Value};
use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::vars::Interpolated;
use crate::manifest::{envfile, FileReadError, Restart, Ulimit};

pub(super) const COMPOSE_KEYS: &[&str] = &[
    "env_file",
    "labels",
    "tmpfs",
    "ulimits",
    "shm_size",
    "cap_add",
    "cap_drop",
    "extra_hosts",
    "init",
    "stop_grace_period",
    "profiles",
    "restart",
];
const ENV_FILE_KEYS: &[&str] = &["path", "required", "secret"];
const ULIMIT_KEYS: &[&str] = &["soft", "hard"];
const ULIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];
const TMPFS_OPTIONS: &[&str] = &["size", "mode", "uid", "gid", "nr_inodes", "noexec", "exec", "nosuid", "suid", "nodev", "dev", "ro", "rw"];
const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];
/// Longest `stop_grace_period`.
const MAX_STOP_GRACE: Duration = Duration::from_secs(3600);
/// Largest `shm_size` and tmpfs `size`: 1 TiB.
const MAX_SIZE: u64 = 1 << 40;

/// The compose keys of one service as far as they parsed.
#[derive(Default)]
pub(super) struct ComposeKeys {
    pub env_files: Vec<PathBuf>,
    /// Variables from the env files, merged in file order (`env` is merged over them later).
    pub file_env: BTreeMap<String, Interpolated>,
    pub labels: BTreeMap<String, String>,
    pub tmpfs: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    pub shm_size: Option<u64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub extra_hosts: Vec<(String, String)>,
    pub init: bool,
    pub stop_grace_period: Option<Duration>,
    pub profiles: Vec<String>,
    pub restart: Restart,
}

impl Cx<'_> {
    pub(super) fn compose_keys(&mut self, t: &DeTable<'_>, service: &str, job: bool) -> ComposeKeys {
        let field = |k: &str| format!("`services.{service}.{k}`");
        let mut keys = ComposeKeys::default();
        if let Some(v) = t.get("env_file") {
            self.env_files(v, service, &mut keys);
        }
        if let Some(v) = t.get("labels") {
            keys.labels = self.labels(v, &field("labels"));
        }
        if let Some(v) = t.get("tmpfs") {
            keys.tmpfs = self.tmpfs(v, &field("tmpfs"));
        }
        if let Some(v) = t.get("ulimits") {
            keys.ulimits = self.ulimits(v, service);
        }
        keys.shm_size = t.get("shm_size").and_then(|v| self.docker_size(v, &field("shm_size")));
        keys.cap_add = t.get("cap_add").map(|v| self.capabilities(v, &field("cap_add"))).unwrap_or_default();
        keys.cap_drop = t.get("cap_drop").map(|v| self.capabilities(v, &field("cap_drop"))).unwrap_or_default();
        if let Some(v) = t.get("extra_hosts") {
            keys.extra_hosts = self.extra_hosts(v, &field("extra_hosts"));
        }
        keys.init = t.get("init").and_then(|v| self.boolean(v, &field("init"))).unwrap_or(false);
        keys.stop_grace_period =
            t.get("stop_grace_period").and_then(|v| self.duration_up_to(v, &field("stop_grace_period"), MAX_STOP_GRACE));
        if let Some(v) = t.get("profiles") {
            keys.profiles = self.profiles(v, &field("profiles"));
        }
        if let Some(v) = t.get("restart") {
            keys.restart = self.restart(v, service, job);
        }
        keys
    }

    /// `env_file = "a.env"`, a list of such, or `{ path, required = true, secret = false }`
    /// items. Relative to the manifest's directory.
    fn env_files(&mut self, v: &Value<'_>, service: &str, keys: &mut ComposeKeys) {
        let what = format!("`services.{service}.env_file`");
        let items: Vec<&Value<'_>> = match v.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            DeValue::String(_) | DeValue::Table(_) => vec![v],
            other => {
                self.type_error(v.span(), &what, "a path, a list of paths, or a table with `path`", other);
                return;
            }
        };
        for item in items {
            let (path_v, required, secret) = match item.get_ref() {
                DeValue::String(_) => (item, true, false),
                DeValue::Table(t) => {
                    self.unknown_keys(t, ENV_FILE_KEYS, &format!("an entry of {what}"));
                    let Some(p) = t.get("path") else {
                        self.diags.push(
                            Diagnostic::new(item.span(), format!("missing `path` in an entry of {what}"))
                                .help("write { path = \"web.env\" } (relative to the directory of stack.toml)"),
                        );
                        continue;
                    };
                    let flag = |cx: &mut Self, k: &str, default: bool| {
                        t.get(k).and_then(|f| cx.boolean(f, &format!("`{k}` in {what}"))).unwrap_or(default)
                    };
                    (p, flag(self, "required", true), flag(self, "secret", false))
                }
                other => {
                    self.type_error(item.span(), &format!("each entry of {what}"), "a path or a table with `path`", other);
                    continue;
                }
            };
            let Some(rel) = self.plain_string(path_v, &what) else { continue };
            let path = self.dir.join(&rel);
            let text = match (self.read_file)(&path) {
                Ok(text) => text,
                Err(FileReadError::NotFound) if !required => continue,
                Err(e) => {
                    let help = match e {
                        FileReadError::NotFound => "create it, or correct the path: it is relative to the directory of stack.toml (write { path = \"…\", required = false } for an optional file)",
                        _ => "an env file holds KEY=VALUE lines of UTF-8 text",
                    };
                    self.diags.push(
                        Diagnostic::new(path_v.span(), format!("env file `{rel}` of service `{service}` cannot be read: {e}")).help(help),
                    );
                    continue;
                }
            };
            let vars = self.vars;
            let lookup = |k: &str| vars.vars.get(k).cloned();
            match envfile::parse(&text, &lookup) {
                Ok(entries) => {
                    for e in entries {
                        if secret && !e.value.is_empty() {
                            self.secrets.insert(e.value.clone());
                        }
                        keys.file_env.insert(e.key, Interpolated { value: e.value, secret });
                    }
                    keys.env_files.push(path);
                }
                Err(e) => self.diags.push(
                    Diagnostic::new(path_v.span(), format!("invalid env file `{rel}:{}:{}`: {}", e.line, e.column, e.kind))
                        .help("write one KEY=VALUE per line; quote values with spaces or `#`; lines starting with # are comments"),
                ),
            }
        }
    }

    /// `labels = { "com.example.team" = "web" }` or `["com.example.team=web"]`.
    fn labels(&mut self, v: &Value<'_>, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut entries: Vec<(String, String, Span)> = Vec::new();
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, val) in t.iter() {
                    let value = match val.get_ref() {
                        DeValue::String(_) => self.plain_string(val, &format!("label `{}` in {what}", k.get_ref())),
                        DeValue::Integer(i) => Some(i.as_str().to_string()),
                        DeValue::Float(f) => Some(f.as_str().to_string()),
                        DeValue::Boolean(b) => Some(b.to_string()),
                        other => {
                            self.type_error(val.span(), &format!("label `{}` in {what}", k.get_ref()), "a string", other);
                            None
                        }
                    };
                    if let Some(value) = value {
                        entries.push((k.get_ref().to_string(), value, k.span()));
                    }
                }
            }
            DeValue::Array(_) => {
                for (text, span) in self.string_array(v, what).unwrap_or_default() {
                    let (k, val) = text.split_once('=').unwrap_or((&text, ""));
                    entries.push((k.to_string(), val.to_string(), span));
                }
            }
            other => {
                self.type_error(v.span(), what, "a table or an array of \"key=value\" strings", other);
                return out;
            }
        }
        for (key, value, span) in entries {
            if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.diags.push(
                    Diagnostic::new(span, format!("invalid label name `{key}` in {what}"))
                        .help("label names are non-empty and without spaces, e.g. \"com.example.team\""),
                );
            } else if key.starts_with("org.stagectl.") || key == "org.stagectl" {
                self.diags.push(
                    Diagnostic::new(span, format!("label `{key}` in {what} is reserved"))
                        .help("labels under org.stagectl.* are stagectl's own (how it finds and compares containers); use your own prefix, e.g. com.example.*"),
                );
            } else if out.insert(key.clone(), value).is_some() {
                self.diags.push(Diagnostic::new(span, format!("label `{key}` is set twice in {what}")).help("remove one of them"));
            }
        }
        out
    }

    /// `tmpfs = "/run"` or `["/run", "/tmp:size=64m,mode=1777"]`.
    fn tmpfs(&mut self, v: &Value<'_>, what: &str) -> BTreeMap<String, String> {
        let items = match v.get_ref() {
            DeValue::String(_) => self.plain_string(v, what).map(|s| vec![(s, v.span())]).unwrap_or_default(),
            _ => self.string_array(v, what).unwrap_or_default(),
        };
        let mut out = BTreeMap::new();
        for (text, span) in items {
            let (path, options) = text.split_once(':').unwrap_or((&text, ""));
            let problem = if !path.starts_with('/') {
                Some(format!("the path `{path}` must be absolute"))
            } else if out.contains_key(path) {
                Some(format!("`{path}` is listed twice"))
            } else {
                options.split(',').filter(|o| !o.is_empty()).find_map(tmpfs_option_problem)
            };
            match problem {
                Some(why) => self.diags.push(Diagnostic::new(span, format!("invalid tmpfs mount `{text}` in {what}: {why}")).help(
                    "write \"/path\" or \"/path:size=64m,mode=1777\" (options: size, mode, uid, gid, nr_inodes, noexec, nosuid, nodev, ro)",
                )),
                None => {
                    out.insert(path.to_string(), options.to_string());
                }
            }
        }
        out
    }

    /// `ulimits = { nofile = 1024, nproc = { soft = 512, hard = 1024 } }`.
    fn ulimits(&mut self, v: &Value<'_>, service: &str) -> BTreeMap<String, Ulimit> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(v, &format!("`services.{service}.ulimits`")) else { return out };
        for (k, val) in t.iter() {
            let name: &str = k.get_ref();
            let what = format!("`services.{service}.ulimits.{name}`");
            if !ULIMITS.contains(&name) {
                let help = match did_you_mean(name, ULIMITS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of: {}", ULIMITS.join(", ")),
                };
                self.diags.push(Diagnostic::new(k.span(), format!("unknown ulimit `{name}`")).help(help));
                continue;
            }
            let limit = match val.get_ref() {
                DeValue::Integer(_) => self.limit_value(val, &what).map(|n| Ulimit { soft: n, hard: n }),
                DeValue::Table(lt) => {
                    self.unknown_keys(lt, ULIMIT_KEYS, &what);
                    let (Some(s), Some(h)) = (lt.get("soft"), lt.get("hard")) else {
                        self.diags.push(
                            Diagnostic::new(val.span(), format!("{what} needs both `soft` and `hard`"))
                                .help("write { soft = 1024, hard = 4096 }, or one number for both"),
                        );
                        continue;
                    };
                    match (self.limit_value(s, &format!("{what}.soft")), self.limit_value(h, &format!("{what}.hard"))) {
                        (Some(soft), Some(hard)) if hard != -1 && (soft == -1 || soft > hard) => {
                            self.diags.push(
                                Diagnostic::new(val.span(), format!("{what}: the soft limit is above the hard limit"))
                                    .help("the soft limit must be at most the hard limit"),
                            );
                            None
                        }
                        (Some(soft), Some(hard)) => Some(Ulimit { soft, hard }),
                        _ => None,
                    }
                }
                other => {
                    self.type_error(val.span(), &what, "an integer or a table { soft, hard }", other);
                    None
                }
            };
            if let Some(limit) = limit {
                out.insert(name.to_string(), limit);
            }
        }
        out
    }

    fn limit_value(&mut self, v: &Value<'_>, what: &str) -> Option<i64> {
        match exact_integer(v.get_ref()) {
            Some(n) if n >= -1 => Some(n),
            Some(_) | None if matches!(v.get_ref(), DeValue::Integer(_)) => {
                self.diags.push(Diagnostic::new(v.span(), format!("{what} is out of range")).help("use 0 or more, or -1 for unlimited"));
                None
            }
            _ => {
                self.type_error(v.span(), what, "an integer", v.get_ref());
                None
            }
        }
    }

    /// A size as Docker writes it: `"64m"`, `"1g"`, `"512k"`, or a number of bytes.
    fn docker_size(&mut self, v: &Value<'_>, what: &str) -> Option<u64> {
        let parsed = match v.get_ref() {
            DeValue::Integer(_) => exact_integer(v.get_ref()).and_then(|n| u64::try_from(n).ok()),
            DeValue::String(s) => parse_docker_size(s),
            other => {
                self.type_error(v.span(), what, "a size such as \"64m\"", other);
                return None;
            }
        };
        match parsed {
            Some(n) if (1..=MAX_SIZE).contains(&n) => Some(n),
            _ => {
                let text = self.src.get(v.span()).unwrap_or("").trim().to_string();
                self.diags.push(
                    Diagnostic::new(v.span(), format!("invalid size {text} for {what}"))
                        .help("write a number with an optional unit b, k, m or g (powers of 1024), e.g. \"64m\", up to 1 TiB"),
                );
                None
            }
        }
    }

    /// Capability names, normalised to upper case without `CAP_`.
    fn capabilities(&mut self, v: &Value<'_>, what: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (text, span) in self.string_array(v, what).unwrap_or_default() {
            let upper = text.to_ascii_uppercase();
            let name = upper.strip_prefix("CAP_").unwrap_or(&upper).to_string();
            if !CAPABILITIES.contains(&name.as_str()) {
                let help = match did_you_mean(&name, CAPABILITIES) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "see `man 7 capabilities`; write e.g. \"NET_ADMIN\" or \"ALL\"".to_string(),
                };
                self.diags.push(Diagnostic::new(span, format!("unknown capability `{text}` in {what}")).help(help));
            } else if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// `extra_hosts = ["db.local:10.0.0.5", "host.docker.internal:host-gateway"]` or a table
    /// host → address.
    fn extra_hosts(&mut self, v: &Value<'_>, what: &str) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String, Span)> = Vec::new();
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, val) in t.iter() {
                    if let Some(ip) = self.plain_string(val, &format!("host `{}` in {what}", k.get_ref())) {
                        entries.push((k.get_ref().to_string(), ip, val.span()));
                    }
                }
            }
            DeValue::Array(_) => {
                for (text, span) in self.string_array(v, what).unwrap_or_default() {
                    // Host names hold no `:` or `=`; an IPv6 address may hold `:`.
                    match text.split_once([':', '=']) {
                        Some((h, ip)) => entries.push((h.to_string(), ip.to_string(), span)),
                        None => entries.push((text.clone(), String::new(), span)),
                    }
                }
            }
            other => {
                self.type_error(v.span(), what, "an array of \"host:address\" strings or a table", other);
                return Vec::new();
            }
        }
        let mut out = Vec::new();
        for (host, ip, span) in entries {
            let ip_bare = ip.trim_start_matches('[').trim_end_matches(']');
            let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if !host_ok {
                self.diags.push(
                    Diagnostic::new(span, format!("invalid host name `{host}` in {what}"))
                        .help("write \"host:address\", e.g. \"db.local:10.0.0.5\""),
                );
            } else if ip.is_empty() {
                self.diags.push(
                    Diagnostic::new(span, format!("host `{host}` in {what} has no address"))
                        .help("write \"host:address\", e.g. \"db.local:10.0.0.5\" or \"host.docker.internal:host-gateway\""),
                );
            } else if ip_bare != "host-gateway" && ip_bare.parse::<std::net::IpAddr>().is_err() {
                self.diags.push(
                    Diagnostic::new(span, format!("`{ip}` for host `{host}` in {what} is not an IP address"))
                        .help("write an IPv4 or IPv6 address, or host-gateway for the Docker host"),
                );
            } else {
                out.push((host, ip_bare.to_string()));
            }
        }
        out
    }

    fn profiles(&mut self, v: &Value<'_>, what: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (name, span) in self.string_array(v, what).unwrap_or_default() {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                self.diags.push(
                    Diagnostic::new(span, format!("invalid profile name `{name}` in {what}"))
                        .help("use letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
                );
            } else if !out.contains(&name) {
                out.push(name);
            }
        }
        if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
            self.diags
                .push(Diagnostic::new(v.span(), format!("{what} is empty")).help("remove it to run the service always, or name a profile"));
        }
        out
    }

    /// `restart = "no" | "on-failure" | "on-failure:N" | "always" | "unless-stopped"`.
    fn restart(&mut self, v: &Value<'_>, service: &str, job: bool) -> Restart {
        let what = format!("`services.{service}.restart`");
        let Some(text) = self.plain_string(v, &what) else { return Restart::No };
        let policy = match text.as_str() {
            "no" => Some(Restart::No),
            "always" | "unless-stopped" => Some(Restart::Always),
            "on-failure" => Some(Restart::OnFailure(None)),
            other => other
                .strip_prefix("on-failure:")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
                .map(|n| Restart::OnFailure(Some(n))),
        };
        match policy {
            Some(p) if job && p != Restart::No => {
                self.diags.push(
                    Diagnostic::new(v.span(), format!("job `{service}` cannot have a restart policy"))
                        .help("a job runs once and is done when it exits 0; remove `restart` or drop `job = true`"),
                );
                Restart::No
            }
            Some(p) => p,
            None => {
                self.diags.push(
                    Diagnostic::new(v.span(), format!("invalid restart policy `{text}` for {what}"))
                        .help("use \"no\", \"on-failure\", \"on-failure:N\" (at most N restarts), \"always\" or \"unless-stopped\""),
                );
                Restart::No
            }
        }
    }
}

/// Why a tmpfs option is invalid, if it is.
fn tmpfs_option_problem(option: &str) -> Option<String> {
    let (name, value) = match option.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (option, None),
    };
    match (name, value) {
        ("size", Some(v)) if parse_docker_size(v).is_some_and(|n| n > 0 && n <= MAX_SIZE) => None,
        ("size", _) => Some(format!("`{option}`: the size needs a unit like 64m")),
        ("mode", Some(v)) if !v.is_empty() && v.len() <= 4 && v.chars().all(|c| ('0'..='7').contains(&c)) => None,
        ("mode", _) => Some(format!("`{option}`: the mode is octal, e.g. mode=1777")),
        ("uid" | "gid" | "nr_inodes", Some(v)) if v.parse::<u32>().is_ok() => None,
        ("uid" | "gid" | "nr_inodes", _) => Some(format!("`{option}` needs a number")),
        (flag, None) if TMPFS_OPTIONS.contains(&flag) => None,
        (other, _) => Some(match did_you_mean(other, TMPFS_OPTIONS) {
            Some(s) => format!("unknown option `{other}` (did you mean `{s}`?)"),
            None => format!("unknown option `{other}`"),
        }),
    }
}

/// `64m`, `1g`, `512k`, `100b`, `1024`, `1.5g`: bytes (powers of 1024, as Docker reads them).
pub(super) fn parse_docker_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: f64 = number.parse().ok()?;
    let factor: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    if unit.len() > 3 || (unit.ends_with('i')) {
        return None;
    }
    let bytes = number * factor as f64;
    (bytes.is_finite() && bytes < 1e18).then_some(bytes as u64)
}
