//! The Compose service keys stagectl has a form of its own for, carried over as they are
//! written (after translation): `labels`, `tmpfs`, `ulimits`, `shm_size`, `cap_add`,
//! `cap_drop`, `extra_hosts`, `init`, `stop_grace_period`. Each becomes one line of the
//! service's table; a value that cannot be carried is a warning naming its line.

use super::emit::ServiceOut;
use super::text::{go_duration, toml_array, toml_key, toml_string};
use super::yaml::{Entry, Node, Value};
use super::Cx;
use crate::manifest::format_duration;

/// The keys [`Cx::carry`] handles.
pub(super) const CARRIED: &[&str] =
    &["labels", "tmpfs", "ulimits", "shm_size", "cap_add", "cap_drop", "extra_hosts", "init", "stop_grace_period"];

impl Cx<'_> {
    /// Carries `e` (one of [`CARRIED`]) into `out`, or warns why it cannot.
    pub(super) fn carry(&mut self, out: &mut ServiceOut, name: &str, e: &Entry) {
        let key = format!("services.{name}.{}", e.key);
        let v = &e.value;
        let svc = out.name.clone();
        let value = match e.key.as_str() {
            "labels" => self.carried_labels(v, &svc, &key),
            "tmpfs" => match strings(v) {
                // With the tmpfs mounts of `volumes`, written once by `emit`.
                Some(items) => {
                    out.tmpfs.extend(items);
                    return;
                }
                None => None,
            },
            "cap_add" | "cap_drop" => strings(v).map(|items| toml_array(&items)),
            "extra_hosts" => match &v.value {
                Value::Map(entries) => {
                    let items: Option<Vec<String>> = entries.iter().map(|h| h.value.text().map(|ip| format!("{}:{ip}", h.key))).collect();
                    items.map(|i| toml_array(&i))
                }
                _ => strings(v).map(|items| toml_array(&items.iter().map(|h| h.replacen('=', ":", 1)).collect::<Vec<_>>())),
            },
            "ulimits" => ulimits(v),
            "shm_size" => v.text().map(|t| match t.parse::<u64>() {
                Ok(n) => n.to_string(),
                Err(_) => toml_string(t),
            }),
            "init" => v.boolean().map(|b| b.to_string()),
            "stop_grace_period" => v.text().and_then(go_duration).filter(|d| !d.is_zero()).map(|d| toml_string(&format_duration(d))),
            _ => None,
        };
        match value {
            Some(value) => out.extra.push((e.key.clone(), value)),
            None if v.is_null() => {}
            None => self.warn(
                e.line,
                Some(&svc),
                key,
                format!(
                    "`{}` is dropped: its value ({}) has no stagectl form; see README.md, \"Coming from docker compose\"",
                    e.key,
                    v.kind_name()
                ),
            ),
        }
    }

    /// A mapping or a `key=value` list; labels under org.stagectl.* are stagectl's own.
    fn carried_labels(&mut self, v: &Node, svc: &str, key: &str) -> Option<String> {
        let pairs: Vec<(String, String, usize)> = match &v.value {
            Value::Map(entries) => entries.iter().map(|e| (e.key.clone(), e.value.text().unwrap_or("").to_string(), e.line)).collect(),
            Value::Seq(items) => items
                .iter()
                .filter_map(|i| i.text().map(|t| (t.split_once('=').unwrap_or((t, "")), i.line)))
                .map(|((k, val), line)| (k.to_string(), val.to_string(), line))
                .collect(),
            _ => return None,
        };
        let mut kept = Vec::new();
        for (k, val, line) in pairs {
            if k.starts_with("org.stagectl.") {
                self.warn(line, Some(svc), key.to_string(), format!("label `{k}` is dropped: org.stagectl.* labels are stagectl's own"));
            } else {
                kept.push(format!("{} = {}", toml_key(&k), toml_string(&val)));
            }
        }
        Some(format!("{{ {} }}", kept.join(", ")))
    }
}

/// A scalar or a list of scalars as strings.
fn strings(v: &Node) -> Option<Vec<String>> {
    match &v.value {
        Value::Scalar { text, .. } => Some(vec![text.clone()]),
        Value::Seq(items) => items.iter().map(|i| i.text().map(str::to_string)).collect(),
        _ => None,
    }
}

/// `nofile: 1024` or `nofile: {soft: 1024, hard: 2048}`.
fn ulimits(v: &Node) -> Option<String> {
    let entries = v.entries()?;
    let mut parts = Vec::new();
    for e in entries {
        let number = |n: &Node| n.text().and_then(|t| t.parse::<i64>().ok());
        let limit = match (number(&e.value), e.value.get("soft").and_then(number), e.value.get("hard").and_then(number)) {
            (Some(n), _, _) => n.to_string(),
            (None, Some(soft), Some(hard)) => format!("{{ soft = {soft}, hard = {hard} }}"),
            _ => return None,
        };
        parts.push(format!("{} = {limit}", toml_key(&e.key)));
    }
    Some(format!("{{ {} }}", parts.join(", ")))
}
