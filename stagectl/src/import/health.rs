//! A Compose `healthcheck` → a stagectl `ready` probe. Recognised commands become native probes
//! that need no `docker exec` (`pg_isready` → `postgres`, `redis-cli ping` → `tcp`, `curl -f` /
//! `wget` of a local URL → `http`, `nc -z` → `tcp`); any other test runs as it is (`exec`); a
//! healthcheck without `test` keeps the image's own (`healthcheck = true`). The timing becomes
//! the deadline: start_period + retries × (interval + timeout), Compose's defaults filled in.

use std::time::Duration;

use super::emit::{Probe, ReadyOut};
use super::text::{go_duration, interpolate, is_shell_syntax, split_words, Word};
use super::yaml::{Node, Value};
use crate::manifest::MAX_TIMEOUT;

/// Compose's defaults: interval 30s, timeout 30s, retries 3, start_period 0.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// The deadline is never shorter than this: Compose counts from the container's start with
/// a warm image cache; stagectl's deadline also covers a fresh database initialising.
pub(super) const MIN_DEADLINE: Duration = Duration::from_secs(30);

const HEALTH_KEYS: &[&str] = &["test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"];

/// What became of a healthcheck: the probe (none when disabled) and warnings (line, message).
pub(super) struct Health {
    pub ready: Option<ReadyOut>,
    pub warnings: Vec<(usize, String)>,
}

pub(super) fn healthcheck(node: &Node) -> Health {
    let mut warnings = Vec::new();
    let Some(entries) = node.entries() else {
        warnings.push((node.line, format!("`healthcheck` must be a mapping, found {}; no probe", node.kind_name())));
        return Health { ready: None, warnings };
    };
    for e in entries.iter().filter(|e| !HEALTH_KEYS.contains(&e.key.as_str())) {
        warnings.push((e.line, format!("unknown healthcheck key `{}` is ignored", e.key)));
    }
    if node.get("disable").and_then(Node::boolean) == Some(true) {
        return Health { ready: None, warnings };
    }
    let (test, shown) = match node.get("test") {
        None => (Test::Image, String::new()),
        Some(t) => match test(t) {
            Some(test) => {
                let shown = test.shown();
                (test, shown)
            }
            None => {
                warnings.push((t.line, format!("`healthcheck.test` must be a string or a list, found {}; no probe", t.kind_name())));
                return Health { ready: None, warnings };
            }
        },
    };
    if matches!(test, Test::Disabled) {
        return Health { ready: None, warnings };
    }
    let (deadline, formula) = deadline(node, &mut warnings);
    let (probe, how) = match &test {
        Test::Image => (Probe::Healthcheck, "no `test`: the image's own HEALTHCHECK, as Compose keeps it".to_string()),
        _ => match recognise(&test) {
            Some((probe, note)) => (probe, format!("from `{shown}`{note}")),
            None => (Probe::Exec(test.exec()), format!("`{shown}` runs in the container as an exec probe")),
        },
    };
    let comment = format!("line {}: healthcheck {how}\ndeadline {formula}", node.line);
    Health { ready: Some(ReadyOut { probe, timeout: Some(deadline), line: node.line, comment }), warnings }
}

/// A healthcheck's `test`.
enum Test {
    /// No `test`: the image's HEALTHCHECK.
    Image,
    /// `["NONE"]`.
    Disabled,
    /// `["CMD", args...]`.
    Args(Vec<String>),
    /// `["CMD-SHELL", "..."]` or a plain string.
    Shell(String),
}

impl Test {
    fn shown(&self) -> String {
        match self {
            Test::Args(a) => a.join(" "),
            Test::Shell(s) => s.clone(),
            _ => String::new(),
        }
    }

    /// The probe command for an `exec` probe, in stagectl's interpolation syntax.
    fn exec(&self) -> Vec<String> {
        let mut ignored = Vec::new();
        let none = |_: &str| None;
        match self {
            Test::Args(a) => a.iter().map(|s| interpolate(s, &none, &mut ignored)).collect(),
            Test::Shell(s) => vec!["sh".into(), "-c".into(), interpolate(s, &none, &mut ignored)],
            _ => Vec::new(),
        }
    }
}

fn test(t: &Node) -> Option<Test> {
    match &t.value {
        Value::Scalar { text, .. } => Some(Test::Shell(text.clone())),
        Value::Seq(items) => {
            let words: Vec<String> = items.iter().filter_map(|i| i.text().map(str::to_string)).collect();
            Some(match words.split_first() {
                Some((first, _)) if first == "NONE" => Test::Disabled,
                Some((first, rest)) if first == "CMD-SHELL" => Test::Shell(rest.join(" ")),
                Some((first, rest)) if first == "CMD" => Test::Args(rest.to_vec()),
                Some(_) => Test::Args(words),
                None => Test::Disabled,
            })
        }
        _ => None,
    }
}

/// The deadline and how it was computed, for the comment.
fn deadline(node: &Node, warnings: &mut Vec<(usize, String)>) -> (Duration, String) {
    let mut duration = |key: &str, default: Duration| match node.get(key) {
        None => default,
        Some(v) => match v.text().and_then(go_duration) {
            Some(d) => d,
            None => {
                warnings.push((v.line, format!("healthcheck `{key}` is not a duration (like 10s or 1m30s); Compose's default is used")));
                default
            }
        },
    };
    let interval = duration("interval", DEFAULT_INTERVAL);
    let timeout = duration("timeout", DEFAULT_TIMEOUT);
    let start = duration("start_period", Duration::ZERO);
    let retries = match node.get("retries") {
        None => DEFAULT_RETRIES,
        Some(v) => v.text().and_then(|t| t.parse::<u32>().ok()).unwrap_or_else(|| {
            warnings.push((v.line, format!("healthcheck `retries` must be a whole number; Compose's default {DEFAULT_RETRIES} is used")));
            DEFAULT_RETRIES
        }),
    };
    let exact = start.saturating_add((interval.saturating_add(timeout)).saturating_mul(retries));
    // Whole seconds, rounded up: a deadline needs no more precision.
    let computed = Duration::from_secs(exact.as_secs() + u64::from(exact.subsec_nanos() > 0));
    let deadline = computed.clamp(MIN_DEADLINE, MAX_TIMEOUT);
    let f = |d: Duration| if d.is_zero() { "0s".to_string() } else { crate::manifest::format_duration(d) };
    let mut formula = format!(
        "= start_period + retries × (interval + timeout) = {} + {retries} × ({} + {}) = {}",
        f(start),
        f(interval),
        f(timeout),
        f(computed)
    );
    if deadline != computed {
        formula.push_str(&format!(", {} {}", if computed < MIN_DEADLINE { "raised to at least" } else { "capped at" }, f(deadline)));
    }
    formula.push_str("; stagectl probes continuously until then");
    (deadline, formula)
}

/// A native probe for a command stagectl knows, with a note on how it differs.
fn recognise(test: &Test) -> Option<(Probe, String)> {
    let words: Vec<Word> = match test {
        Test::Args(a) => a.iter().map(|w| Word { text: w.clone(), quoted: true }).collect(),
        Test::Shell(s) => split_words(s).ok()?,
        _ => return None,
    };
    // `["CMD", "sh", "-c", "..."]` is a shell test too.
    if let [sh, c, script] = words.as_slice() {
        if matches!(sh.text.as_str(), "sh" | "bash" | "/bin/sh" | "/bin/bash") && c.text == "-c" {
            return recognise(&Test::Shell(script.text.clone()));
        }
    }
    let end = words.iter().position(is_shell_syntax).unwrap_or(words.len());
    let (cmd, rest) = words.split_at(end);
    let rest: Vec<&str> = rest.iter().map(|w| w.text.as_str()).collect();
    let rest = strip_exit(&rest);
    let args: Vec<&str> = cmd.iter().map(|w| w.text.as_str()).collect();
    let (program, args) = args.split_first()?;
    let program = program.rsplit('/').next().unwrap_or(program);
    match program {
        "pg_isready" if rest.is_empty() => pg_isready(args).map(|p| (Probe::Postgres(p), String::new())),
        "redis-cli" if rest.is_empty() || is_grep(rest) => redis_ping(args).map(|p| {
            (Probe::Tcp(p), ": a tcp probe (Redis accepts connections while it still loads its data; `ping` waited for that)".to_string())
        }),
        "curl" if rest.is_empty() => curl(args).map(|(port, path)| {
            (Probe::Http { port, path }, ": the probe expects status 200 (curl -f accepts any status below 400)".to_string())
        }),
        "wget" if rest.is_empty() => wget(args).map(|(port, path)| {
            (Probe::Http { port, path }, ": the probe expects status 200 (wget accepts any status below 400)".to_string())
        }),
        "nc" if rest.is_empty() => nc(args).map(|p| (Probe::Tcp(p), String::new())),
        "mysqladmin" | "mariadb-admin" if rest.is_empty() => mysqladmin_ping(args).map(|p| (Probe::Mysql(p), String::new())),
        // The official MariaDB image's script; its other checks (e.g. --innodb_initialized)
        // come down to a server that answers.
        "healthcheck.sh" if rest.is_empty() && args.contains(&"--connect") => Some((
            Probe::Mysql(3306),
            ": the server's greeting on 3306 (what `healthcheck.sh --connect` waits for; its other checks are not run)".to_string(),
        )),
        _ => None,
    }
}

/// Without a trailing `|| exit 1` (or `|| exit`, `|| false`), which changes nothing here.
fn strip_exit<'a>(rest: &'a [&'a str]) -> &'a [&'a str] {
    for tail in [&["||", "exit", "1"][..], &["||", "exit"], &["||", "false"]] {
        if let Some(head) = rest.strip_suffix(tail) {
            return head;
        }
    }
    rest
}

fn is_grep(rest: &[&str]) -> bool {
    matches!(rest, ["|", "grep", .., last] if last.eq_ignore_ascii_case("pong"))
}

fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "::1" | "[::1]")
}

/// Options of a command line: (name, value) pairs and positionals. `with_value` lists the
/// options that take a value (`-p 5432`, `-p5432`, `--port=5432`, `--port 5432`).
/// Options (name, value) and positionals of a command line.
type Parsed<'a> = (Vec<(String, &'a str)>, Vec<&'a str>);

fn options<'a>(args: &[&'a str], with_value: &[&str]) -> Option<Parsed<'a>> {
    let mut opts = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v)),
                None => (a.to_string(), None),
            };
            let value = match value {
                Some(v) => v,
                None if with_value.contains(&name.as_str()) => {
                    i += 1;
                    *args.get(i - 1)?
                }
                None => "",
            };
            opts.push((name, value));
        } else if a.len() > 1 && a.starts_with('-') && a != "-" {
            // Bundled short options: `-fsS`, `-qO-`, `-p5432`.
            let flags: Vec<char> = a[1..].chars().collect();
            for (j, c) in flags.iter().enumerate() {
                let name = format!("-{c}");
                if with_value.contains(&name.as_str()) {
                    let attached: String = flags[j + 1..].iter().collect();
                    let value = if attached.is_empty() {
                        i += 1;
                        *args.get(i - 1)?
                    } else {
                        &a[a.len() - attached.len()..]
                    };
                    opts.push((name, value));
                    break;
                }
                opts.push((name, ""));
            }
        } else {
            positional.push(a);
        }
    }
    Some((opts, positional))
}

fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p > 0)
}

fn pg_isready(args: &[&str]) -> Option<u16> {
    let with_value = ["-h", "--host", "-p", "--port", "-U", "--username", "-d", "--dbname", "-t", "--timeout"];
    let (opts, positional) = options(args, &with_value)?;
    if !positional.is_empty() {
        return None;
    }
    let mut port = 5432;
    for (name, value) in opts {
        match name.as_str() {
            "-p" | "--port" => port = port_number(value)?,
            "-h" | "--host" if !is_local(value) => return None,
            "-h" | "--host" | "-U" | "--username" | "-d" | "--dbname" | "-t" | "--timeout" | "-q" | "--quiet" => {}
            _ => return None,
        }
    }
    Some(port)
}

/// `mysqladmin ping` (or `mariadb-admin ping`) against this container: passes once the server
/// answers, as the mysql probe does. A password (`-pSECRET`, `--password=...`) is ignored.
fn mysqladmin_ping(args: &[&str]) -> Option<u16> {
    let args: Vec<&str> = args.iter().copied().filter(|a| !(a.starts_with("-p") || a.starts_with("--password"))).collect();
    let with_value = ["-h", "--host", "-P", "--port", "-u", "--user", "--protocol", "--connect-timeout"];
    let (opts, positional) = options(&args, &with_value)?;
    if !matches!(positional.as_slice(), [cmd] if cmd.eq_ignore_ascii_case("ping")) {
        return None;
    }
    let mut port = 3306;
    for (name, value) in opts {
        match name.as_str() {
            "-P" | "--port" => port = port_number(value)?,
            "-h" | "--host" if !is_local(value) => return None,
            "--protocol" if !value.eq_ignore_ascii_case("tcp") => return None,
            "-h" | "--host" | "-u" | "--user" | "--protocol" | "--connect-timeout" | "-s" | "--silent" => {}
            _ => return None,
        }
    }
    Some(port)
}

fn redis_ping(args: &[&str]) -> Option<u16> {
    let with_value = ["-h", "-p", "-a", "--pass", "--user", "-n"];
    let (opts, positional) = options(args, &with_value)?;
    if !matches!(positional.as_slice(), [cmd] if cmd.eq_ignore_ascii_case("ping")) {
        return None;
    }
    let mut port = 6379;
    for (name, value) in opts {
        match name.as_str() {
            "-p" => port = port_number(value)?,
            "-h" if !is_local(value) => return None,
            "-h" | "-a" | "--pass" | "--user" | "-n" | "--no-auth-warning" | "--raw" => {}
            _ => return None,
        }
    }
    Some(port)
}

fn curl(args: &[&str]) -> Option<(u16, String)> {
    let with_value = ["-o", "--output", "-m", "--max-time", "--connect-timeout", "--retry", "-X", "--request", "-w", "--write-out"];
    let (opts, positional) = options(args, &with_value)?;
    let mut fail = false;
    for (name, value) in &opts {
        match name.as_str() {
            "-f" | "--fail" | "--fail-with-body" => fail = true,
            "-X" | "--request" if !value.eq_ignore_ascii_case("GET") => return None,
            "-s" | "--silent" | "-S" | "--show-error" | "-I" | "--head" | "-o" | "--output" | "-m" | "--max-time" | "--connect-timeout"
            | "--retry" | "-X" | "--request" | "-w" | "--write-out" | "-v" | "--verbose" => {}
            _ => return None,
        }
    }
    match positional.as_slice() {
        [url] if fail => local_url(url),
        _ => None,
    }
}

fn wget(args: &[&str]) -> Option<(u16, String)> {
    let with_value = ["-O", "--output-document", "-T", "--timeout", "-t", "--tries"];
    let (opts, positional) = options(args, &with_value)?;
    for (name, _) in &opts {
        match name.as_str() {
            "-q" | "--quiet" | "--spider" | "-O" | "--output-document" | "-T" | "--timeout" | "-t" | "--tries" | "-S"
            | "--server-response" | "--no-verbose" | "-n" | "-v" => {}
            _ => return None,
        }
    }
    match positional.as_slice() {
        [url] => local_url(url),
        _ => None,
    }
}

fn nc(args: &[&str]) -> Option<u16> {
    let (opts, positional) = options(args, &["-w"])?;
    if !opts.iter().any(|(n, _)| n == "-z") || opts.iter().any(|(n, _)| !matches!(n.as_str(), "-z" | "-w" | "-v")) {
        return None;
    }
    match positional.as_slice() {
        [host, port] if is_local(host) => port_number(port),
        _ => None,
    }
}

/// `http://localhost[:PORT][/PATH]` → (port, path).
fn local_url(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, port_number(p)?),
        _ => (authority, 80),
    };
    if !is_local(host) || path.contains('$') {
        return None;
    }
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    Some((port, path))
}
