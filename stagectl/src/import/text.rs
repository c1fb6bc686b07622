//! Small pure text conversions: Compose's `$` interpolation → stagectl's, shell-like word
//! splitting of string commands, env files, short port syntax, Go durations, paths, names and
//! TOML quoting.

use std::time::Duration;

/// A `$` that must reach the container (or stagectl's own interpolation) literally.
pub(super) fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// Compose's interpolation syntax rewritten into stagectl's: `$$` stays a literal `$`, `$VAR`
/// becomes `${VAR}` (Compose expands the bare form, stagectl only the braced one), `${VAR-d}`
/// becomes `${VAR:-d}`, `${VAR:?msg}` becomes `${VAR}` (both refuse an unset variable). A
/// variable `local` knows (an earlier line of the same env file) is substituted at once.
/// Anything stagectl cannot express is noted in `notes`.
pub(super) fn interpolate(text: &str, local: &dyn Fn(&str) -> Option<String>, notes: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push_str("$$");
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            match matching_brace(body) {
                Some(close) => {
                    out.push_str(&expression(&body[..close], local, notes));
                    rest = &body[close + 1..];
                }
                None => {
                    notes.push("an unclosed `${` is kept as literal text".to_string());
                    out.push_str("$$");
                    rest = after;
                }
            }
        } else {
            let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if len > 0 && !after.starts_with(|c: char| c.is_ascii_digit()) {
                let name = &after[..len];
                out.push_str(&local(name).map(|v| literal(&v)).unwrap_or_else(|| format!("${{{name}}}")));
                rest = &after[len..];
            } else {
                // A lone `$` is literal in both.
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The index of the `}` closing a `${` whose body starts `body`, counting nested `${...}`.
fn matching_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One `${...}` body (between the braces) in stagectl's syntax.
fn expression(expr: &str, local: &dyn Fn(&str) -> Option<String>, notes: &mut Vec<String>) -> String {
    let len = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
    let (name, tail) = expr.split_at(len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        notes.push(format!("`${{{expr}}}` is not a variable reference; kept as literal text"));
        return format!("$${{{expr}}}");
    }
    let (op, arg) =
        ["-", ":-", "?", ":?", "+", ":+"].iter().rev().find_map(|op| tail.strip_prefix(op).map(|arg| (*op, arg))).unwrap_or((tail, ""));
    if let Some(value) = local(name) {
        let set = !value.is_empty();
        let chosen = match op {
            ":-" if !set => interpolate(arg, local, notes),
            ":+" if set => interpolate(arg, local, notes),
            "+" => interpolate(arg, local, notes),
            ":+" => String::new(),
            _ => literal(&value),
        };
        return chosen;
    }
    match op {
        "" => format!("${{{name}}}"),
        ":-" | "-" => {
            if op == "-" {
                notes.push(format!("`${{{name}-...}}` became `${{{name}:-...}}`: stagectl also uses the default when {name} is empty"));
            }
            if arg.contains(['$', '}']) {
                notes.push(format!("the default of `${{{expr}}}` refers to another variable, which stagectl cannot nest; it was dropped"));
                format!("${{{name}}}")
            } else {
                format!("${{{name}:-{arg}}}")
            }
        }
        "?" | ":?" => format!("${{{name}}}"),
        "+" | ":+" => {
            notes.push(format!("`${{{expr}}}` (a replacement when {name} is set) has no stagectl form; written as its replacement text"));
            interpolate(arg, local, notes)
        }
        _ => {
            notes.push(format!("`${{{expr}}}` is not an interpolation stagectl understands; kept as literal text"));
            format!("$${{{expr}}}")
        }
    }
}

/// One word of a string command, and whether any of it was quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    pub text: String,
    pub quoted: bool,
}

/// Splits a string command the way Compose does (POSIX shell quoting, no expansion, no
/// operators): `bundle exec "my app"` → `bundle`, `exec`, `my app`.
pub(super) fn split_words(s: &str) -> Result<Vec<Word>, &'static str> {
    let mut words = Vec::new();
    let mut current: Option<Word> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                words.extend(current.take());
            }
            '\'' => {
                let w = current.get_or_insert(Word { text: String::new(), quoted: true });
                w.quoted = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.text.push(c),
                        None => return Err("unclosed single quote"),
                    }
                }
            }
            '"' => {
                let w = current.get_or_insert(Word { text: String::new(), quoted: true });
                w.quoted = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => w.text.push(e),
                            Some('\n') => {}
                            Some(other) => {
                                w.text.push('\\');
                                w.text.push(other);
                            }
                            None => return Err("unclosed double quote"),
                        },
                        Some(c) => w.text.push(c),
                        None => return Err("unclosed double quote"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(e) => current.get_or_insert(Word { text: String::new(), quoted: true }).text.push(e),
                None => current.get_or_insert(Word { text: String::new(), quoted: false }).text.push('\\'),
            },
            c => current.get_or_insert(Word { text: String::new(), quoted: false }).text.push(c),
        }
    }
    words.extend(current);
    Ok(words)
}

/// Whether an unquoted word is shell syntax (`&&`, `|`, `;`, `>`, `$(`...), which a string
/// command in Compose passes to the program literally.
pub(super) fn is_shell_syntax(w: &Word) -> bool {
    !w.quoted
        && (matches!(w.text.as_str(), "&&" | "||" | "|" | "&" | ";" | ">" | ">>" | "<" | "2>&1")
            || w.text.ends_with(';')
            || w.text.contains("$(")
            || w.text.contains('`'))
}

/// One variable of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EnvLine {
    pub key: String,
    /// `None` for a bare `KEY` (its value comes from the environment).
    pub value: Option<String>,
    pub line: usize,
    /// Single-quoted: no interpolation.
    pub literal: bool,
}

/// `KEY=VALUE` lines as Compose reads env files: `#` comments, blank lines, `export KEY=...`,
/// single quotes (literal), double quotes (with `\n`, `\t`, `\"`, `\\` escapes), unquoted values
/// up to a ` #` comment. Lines it cannot read come back as (line, problem).
pub(super) fn parse_env_file(text: &str) -> (Vec<EnvLine>, Vec<(usize, String)>) {
    let mut vars = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").map(str::trim_start).unwrap_or(l);
        let (key, value) = match l.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim_start())),
            None => (l, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            problems.push((line, format!("`{l}` is not KEY=VALUE")));
            continue;
        }
        let (value, literal) = match value {
            None => (None, false),
            Some(v) if v.starts_with('\'') => match v[1..].find('\'') {
                Some(end) => (Some(v[1..1 + end].to_string()), true),
                None => {
                    problems.push((line, format!("unclosed single quote in the value of {key}")));
                    continue;
                }
            },
            Some(v) if v.starts_with('"') => match double_quoted(&v[1..]) {
                Some(s) => (Some(s), false),
                None => {
                    problems.push((line, format!("unclosed double quote in the value of {key}")));
                    continue;
                }
            },
            Some(v) => {
                let end = v.find(" #").or_else(|| v.find("\t#")).unwrap_or(v.len());
                (Some(v[..end].trim_end().to_string()), false)
            }
        };
        vars.push(EnvLine { key: key.to_string(), value, line, literal });
    }
    (vars, problems)
}

fn double_quoted(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

/// A Compose short port mapping (`[IP:][HOST:]CONTAINER[/PROTO]`, with ranges) as stagectl
/// mappings, one per port, plus notes on what changed. `Err` when stagectl cannot publish it.
pub(super) fn short_port(text: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let (spec, proto) = match text.rsplit_once('/') {
        Some((s, "tcp")) => (s, ""),
        Some((s, "udp")) => (s, "/udp"),
        Some((_, p)) => return Err(format!("protocol `{p}` is not supported (tcp and udp are)")),
        None => (text, ""),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [c, h] => (None, Some(*h), *c),
        [c, h, ip] => (Some(ip.trim_start_matches('[').trim_end_matches(']')), Some(*h), *c),
        _ => unreachable!("rsplitn gives 1 to 3 parts"),
    };
    let mut notes = Vec::new();
    let containers = port_range(container)?;
    let host = host.filter(|h| !h.is_empty());
    let ip = match (ip, host) {
        (Some(ip), None) => {
            notes.push(format!("`{text}`: stagectl cannot bind {ip} with a port Docker picks; published on all addresses"));
            None
        }
        (ip, _) => ip.filter(|i| !i.is_empty()),
    };
    let hosts = match host {
        Some(h) => port_range(h)?,
        None => Vec::new(),
    };
    let prefix = match ip {
        Some(ip) if ip.contains(':') => format!("[{ip}]:"),
        Some(ip) => format!("{ip}:"),
        None => String::new(),
    };
    let out = if hosts.is_empty() {
        containers.iter().map(|c| format!("{c}{proto}")).collect()
    } else if hosts.len() == containers.len() {
        hosts.iter().zip(&containers).map(|(h, c)| format!("{prefix}{h}:{c}{proto}")).collect()
    } else if containers.len() == 1 {
        notes.push(format!("`{text}`: a host port range for one container port becomes its first port, {}", hosts[0]));
        vec![format!("{prefix}{}:{}{proto}", hosts[0], containers[0])]
    } else {
        return Err(format!("`{text}`: the host and container ranges differ in length"));
    };
    Ok((out, notes))
}

/// `80` or `8000-8002` → the ports.
fn port_range(text: &str) -> Result<Vec<u16>, String> {
    let port = |t: &str| t.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{t}` is not a port number"));
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a || b - a > 1000 {
                return Err(format!("port range `{text}` is empty or too long"));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![port(text)?]),
    }
}

/// A Go duration as Compose writes them (`1m30s`, `500ms`, `2.5s`, `10us`).
pub(super) fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A path of the compose file (relative to its directory) as seen from the stack.toml's
/// directory: `base` is the compose file's directory from there ("" when it is the same).
/// The result starts with `./`, `../` or `/`, so stagectl reads it as a path.
pub(super) fn rebase(base: &str, path: &str) -> String {
    if path.starts_with('/') || path.starts_with("${") {
        return path.to_string();
    }
    let joined = if base.is_empty() { path.to_string() } else { format!("{}/{path}", base.trim_end_matches('/')) };
    let absolute = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (absolute, parts.first()) {
        (true, _) => format!("/{body}"),
        (false, None) => ".".to_string(),
        (false, Some(&"..")) => body,
        (false, Some(_)) => format!("./{body}"),
    }
}

/// A lowercase DNS label of at most `max` characters made from a Compose name: `web_app` →
/// `web-app`. Empty when nothing usable is left.
pub(super) fn dns_label(name: &str, max: usize) -> String {
    let mapped: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' }).collect();
    let mut label = String::new();
    for c in mapped.chars() {
        if !(c == '-' && (label.is_empty() || label.ends_with('-'))) {
            label.push(c);
        }
    }
    let label: String = label.chars().take(max).collect();
    label.trim_end_matches('-').to_string()
}

/// A TOML basic string.
pub(super) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, quoted otherwise.
pub(super) fn toml_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        toml_string(k)
    }
}

/// `["a", "b"]`.
pub(super) fn toml_array(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|i| toml_string(i)).collect::<Vec<_>>().join(", "))
}
