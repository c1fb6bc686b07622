//! Drift: the running stack against the manifest (`stagectl diff`). Pure: the caller resolves
//! what the manifest wants now (image ids, spec hashes, input hashes) and lists the containers;
//! this module says, per service, whether it is unchanged, would be created, started again,
//! recreated (and which fields changed), or removed.
//!
//! Each container carries its spec as a label ([`SPEC_LABEL`], [`SpecFields`] as JSON) next to
//! the spec hash, so a changed field can be named. The label never holds a secret or an
//! environment value: env values are fingerprints, and any other field text that contains a
//! secret is replaced by one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::docker::{labels, ObservedContainer, RunState};
use crate::manifest::{Manifest, Service, VolumeSource};

/// The label holding a container's [`SpecFields`] as JSON.
pub const SPEC_LABEL: &str = labels::SPEC;

/// What went into a container's spec hash, in a form that can be compared field by field and
/// shown: nothing secret, no env values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecFields {
    pub image_id: String,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Variable name → fingerprint of its value.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub job: bool,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// The content the hash also covers: a job's read-only mounts, a data service's fixture
    /// inputs (files, migrations, the jobs its load waits for).
    #[serde(default)]
    pub inputs: Option<String>,
}

fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("sha256:{}", &hex::encode(h.finalize())[..12])
}

/// `text`, or a fingerprint of it when it contains any of `secrets`.
fn scrub(stack: &str, text: &str, secrets: &[String]) -> String {
    if secrets.iter().any(|s| !s.is_empty() && text.contains(s.as_str())) {
        format!("(secret) {}", fingerprint(&[stack, text]))
    } else {
        text.to_string()
    }
}

/// The fields of `service` run from `image_id`, with `inputs` (see [`SpecFields::inputs`]).
/// `secrets`: every secret value of the manifest ([`Manifest::secret_values`]).
pub fn spec_fields(stack: &str, service: &Service, image_id: &str, inputs: Option<String>, secrets: &[String]) -> SpecFields {
    let list = |v: &Option<Vec<String>>| v.as_ref().map(|c| c.iter().map(|a| scrub(stack, a, secrets)).collect());
    let opt = |v: &Option<String>| v.as_ref().map(|t| scrub(stack, t, secrets));
    SpecFields {
        image_id: image_id.to_string(),
        image: opt(&service.image),
        command: list(&service.command),
        entrypoint: list(&service.entrypoint),
        env: service.env.iter().map(|(k, v)| (k.clone(), fingerprint(&[stack, k, &v.value]))).collect(),
        ports: service
            .ports
            .iter()
            .map(|p| {
                let ip = p.host_ip.as_ref().map(|ip| format!("{ip}:")).unwrap_or_default();
                let host = p.host_port.map(|h| format!("{h}:")).unwrap_or_default();
                format!("{ip}{host}{}/{}", p.container_port, p.protocol.as_str())
            })
            .collect(),
        volumes: service
            .volumes
            .iter()
            .map(|v| {
                let source = match &v.source {
                    VolumeSource::Named(n) => n.clone(),
                    VolumeSource::Bind(p) => scrub(stack, &p.display().to_string(), secrets),
                };
                format!("{source}:{}{}", v.target, if v.read_only { ":ro" } else { "" })
            })
            .collect(),
        job: service.job,
        working_dir: opt(&service.working_dir),
        user: opt(&service.user),
        inputs,
    }
}

/// The label text of `fields`.
pub fn spec_label(fields: &SpecFields) -> String {
    serde_json::to_string(fields).unwrap_or_default()
}

/// One field that differs between the container and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    /// What changed, e.g. `sha256:1a2b… → sha256:3c4d…`, `changed: API_KEY; added: DEBUG`.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    Unchanged,
    /// No container: `up` creates it.
    Create,
    /// The container matches but is stopped: `up` starts it again.
    Start,
    /// The container differs (or a job would re-run): `up` replaces it.
    Recreate,
    /// A container of the stack no service owns: `up` removes it.
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDrift {
    pub service: String,
    pub state: DriftState,
    /// For `recreate`: the fields that changed (empty when they cannot be named).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// Why, when the fields do not say it all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    pub stack: String,
    /// Services that are not `unchanged` (orphans included).
    pub drifted: usize,
    pub services: Vec<ServiceDrift>,
}

/// What the manifest wants for one service now.
#[derive(Debug, Clone)]
pub struct Desired {
    pub service: String,
    /// The full spec hash, `None` when it cannot be known without building or pulling (the
    /// image is not there yet).
    pub hash: Option<String>,
    pub fields: SpecFields,
    /// Why the image is unknown (`would be rebuilt: build context changed`), when it is.
    pub image_note: Option<String>,
}

/// Services in manifest order, then orphans.
pub fn compare(manifest: &Manifest, desired: &[Desired], observed: &[ObservedContainer]) -> DriftReport {
    let mut services = Vec::new();
    for d in desired {
        let Some(service) = manifest.service(&d.service) else { continue };
        let current = super::current_container(&manifest.stack, &d.service, observed);
        services.push(one(service, manifest.fixtures_for(&d.service).is_some(), d, current));
    }
    // A job that never ran because its result is in a data service's restored data.
    let unchanged: BTreeSet<String> = services.iter().filter(|s| s.state == DriftState::Unchanged).map(|s| s.service.clone()).collect();
    for s in services.iter_mut().filter(|s| s.state == DriftState::Create) {
        if let Some(f) = manifest.fixtures.iter().find(|f| f.after.contains(&s.service) && unchanged.contains(&f.service)) {
            s.state = DriftState::Unchanged;
            s.reason = Some(format!("contained in `{}`'s loaded data", f.service));
        }
    }
    for id in super::orphans(manifest, observed) {
        let Some(c) = observed.iter().find(|c| c.id == id) else { continue };
        let reason = if manifest.service(&c.service).is_some() {
            format!("stray container `{}`", c.name)
        } else {
            format!("service `{}` is no longer in the manifest", c.service)
        };
        services.push(ServiceDrift { service: c.service.clone(), state: DriftState::Remove, changes: vec![], reason: Some(reason) });
    }
    let drifted = services.iter().filter(|s| s.state != DriftState::Unchanged).count();
    DriftReport { stack: manifest.stack.clone(), drifted, services }
}

fn one(service: &Service, data_service: bool, d: &Desired, current: Option<&ObservedContainer>) -> ServiceDrift {
    let drift = |state, changes, reason: Option<String>| ServiceDrift { service: d.service.clone(), state, changes, reason };
    let Some(c) = current else { return drift(DriftState::Create, vec![], None) };
    let same_hash = d.hash.as_deref() == Some(c.spec_hash.as_str());
    if !same_hash {
        let Some(old) = c.labels.get(SPEC_LABEL).and_then(|l| serde_json::from_str::<SpecFields>(l).ok()) else {
            let mut changes = vec![];
            if let Some(note) = &d.image_note {
                changes.push(FieldChange { field: "image_id".into(), detail: note.clone() });
            }
            return drift(DriftState::Recreate, changes, Some("changed (details unavailable: created by an older stagectl)".into()));
        };
        let mut changes = changed_fields(&old, &d.fields);
        if let Some(note) = &d.image_note {
            changes.retain(|c| c.field != "image_id");
            changes.insert(0, FieldChange { field: "image_id".into(), detail: note.clone() });
        }
        let reason = changes.is_empty().then(|| "settings that the container's label does not record changed".to_string());
        return drift(DriftState::Recreate, changes, reason);
    }
    if service.job {
        return match (c.state, c.exit_code) {
            (RunState::Exited, Some(0)) => drift(DriftState::Unchanged, vec![], None),
            (RunState::Running, _) => drift(DriftState::Unchanged, vec![], Some("running".into())),
            (_, code) => drift(
                DriftState::Recreate,
                vec![],
                Some(format!("previous run failed{}", code.map(|c| format!(" (exit {c})")).unwrap_or_default())),
            ),
        };
    }
    match c.state {
        RunState::Running => drift(DriftState::Unchanged, vec![], None),
        // Its data may have lived in memory only: `up` recreates it with its fixtures.
        _ if data_service => drift(DriftState::Recreate, vec![], Some("stopped data service: recreated with its fixtures".into())),
        _ => drift(DriftState::Start, vec![], Some("stopped".into())),
    }
}

/// Short form of an image id for messages.
fn short_id(id: &str) -> String {
    let (algo, hex) = id.split_once(':').unwrap_or(("", id));
    let hex: String = hex.chars().take(12).collect();
    if algo.is_empty() {
        hex
    } else {
        format!("{algo}:{hex}")
    }
}

fn show<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v).unwrap_or_default() {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Names added, removed and changed between two sorted sets or maps, as one line.
fn set_change(added: Vec<String>, removed: Vec<String>, changed: Vec<String>) -> String {
    let mut parts = vec![];
    for (what, names) in [("changed", changed), ("added", added), ("removed", removed)] {
        if !names.is_empty() {
            parts.push(format!("{what}: {}", names.join(", ")));
        }
    }
    parts.join("; ")
}

/// The fields that differ, in a fixed order; env by variable name only.
pub fn changed_fields(old: &SpecFields, new: &SpecFields) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, detail: String| out.push(FieldChange { field: field.to_string(), detail });
    if old.image_id != new.image_id {
        push("image_id", format!("{} → {}", short_id(&old.image_id), short_id(&new.image_id)));
    }
    if old.image != new.image {
        push("image", format!("{} → {}", show(&old.image), show(&new.image)));
    }
    if old.command != new.command {
        push("command", format!("{} → {}", show(&old.command), show(&new.command)));
    }
    if old.entrypoint != new.entrypoint {
        push("entrypoint", format!("{} → {}", show(&old.entrypoint), show(&new.entrypoint)));
    }
    if old.env != new.env {
        let added = new.env.keys().filter(|k| !old.env.contains_key(*k)).cloned().collect();
        let removed = old.env.keys().filter(|k| !new.env.contains_key(*k)).cloned().collect();
        let changed = new.env.iter().filter(|(k, v)| old.env.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| k.clone()).collect();
        push("env", set_change(added, removed, changed));
    }
    for (field, a, b) in [("ports", &old.ports, &new.ports), ("volumes", &old.volumes, &new.volumes)] {
        if a != b {
            let added = b.iter().filter(|x| !a.contains(x)).cloned().collect();
            let removed = a.iter().filter(|x| !b.contains(x)).cloned().collect();
            let detail = set_change(added, removed, vec![]);
            push(field, if detail.is_empty() { "order changed".into() } else { detail });
        }
    }
    if old.job != new.job {
        push("job", format!("{} → {}", old.job, new.job));
    }
    if old.working_dir != new.working_dir {
        push("working_dir", format!("{} → {}", show(&old.working_dir), show(&new.working_dir)));
    }
    if old.user != new.user {
        push("user", format!("{} → {}", show(&old.user), show(&new.user)));
    }
    if old.inputs != new.inputs {
        let what =
            if new.job { "mounted files changed" } else { "fixture inputs changed (files, migrations, or the jobs the load waits for)" };
        push("inputs", what.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Interpolated;

    fn manifest() -> Manifest {
        crate::manifest::tests::parse_ok(
            r#"
[stack]
name = "d"
[services.db]
image = "pg:15"
env = { POSTGRES_PASSWORD = "pw", MODE = "a" }
ports = ["5432:5432"]
[services.app]
image = "app:1"
command = ["serve", "--port", "80"]
depends_on = ["db"]
[services.migrate]
image = "app:1"
job = true
depends_on = ["db"]
"#,
        )
    }

    fn observed(m: &Manifest, service: &str, fields: &SpecFields, hash: &str, state: RunState, with_label: bool) -> ObservedContainer {
        let mut labels = BTreeMap::new();
        if with_label {
            labels.insert(SPEC_LABEL.to_string(), spec_label(fields));
        }
        ObservedContainer {
            id: format!("id-{service}"),
            name: crate::plan::container_name(&m.stack, service),
            service: service.into(),
            spec_hash: hash.into(),
            state,
            exit_code: (state == RunState::Exited).then_some(0),
            image: String::new(),
            created: 0,
            labels,
            ports: vec![],
        }
    }

    fn desired(m: &Manifest, service: &str, image_id: &str) -> Desired {
        let s = m.service(service).unwrap();
        let fields = spec_fields(&m.stack, s, image_id, None, &m.secret_values());
        Desired { service: service.into(), hash: Some(crate::plan::spec_hash(&m.stack, s, image_id)), fields, image_note: None }
    }

    fn running_as_desired(m: &Manifest) -> (Vec<Desired>, Vec<ObservedContainer>) {
        let desired: Vec<Desired> =
            ["db", "app", "migrate"].iter().map(|s| desired(m, s, &format!("sha256:{s}0000000000000000"))).collect();
        let observed = desired
            .iter()
            .map(|d| {
                let state = if d.fields.job { RunState::Exited } else { RunState::Running };
                observed(m, &d.service, &d.fields, d.hash.as_deref().unwrap(), state, true)
            })
            .collect();
        (desired, observed)
    }

    #[test]
    fn a_stack_as_the_manifest_says_has_no_drift() {
        let m = manifest();
        let (desired, observed) = running_as_desired(&m);
        let report = compare(&m, &desired, &observed);
        assert_eq!(report.drifted, 0, "{report:?}");
        assert!(report.services.iter().all(|s| s.state == DriftState::Unchanged));
    }

    #[test]
    fn a_changed_env_value_names_the_variable_never_the_value() {
        let m = manifest();
        let (_, observed) = running_as_desired(&m);
        let mut changed = m.clone();
        let db = changed.services.iter_mut().find(|s| s.name == "db").unwrap();
        db.env.insert("POSTGRES_PASSWORD".into(), Interpolated { value: "canary-new-value".into(), secret: true });
        db.env.insert("EXTRA".into(), Interpolated { value: "x".into(), secret: false });
        db.env.remove("MODE");
        let desired: Vec<Desired> =
            ["db", "app", "migrate"].iter().map(|s| desired(&changed, s, &format!("sha256:{s}0000000000000000"))).collect();
        let report = compare(&changed, &desired, &observed);
        let db = &report.services[0];
        assert_eq!(db.state, DriftState::Recreate);
        assert_eq!(
            db.changes,
            vec![FieldChange { field: "env".into(), detail: "changed: POSTGRES_PASSWORD; added: EXTRA; removed: MODE".into() }]
        );
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("canary-new-value") && !json.contains("\"pw\""), "{json}");
        assert_eq!(report.drifted, 1);
    }

    #[test]
    fn a_new_image_id_and_command_are_named_with_both_sides() {
        let m = manifest();
        let (_, observed) = running_as_desired(&m);
        let mut changed = m.clone();
        changed.services.iter_mut().find(|s| s.name == "app").unwrap().command = Some(vec!["serve".into()]);
        let mut desired: Vec<Desired> =
            ["db", "app", "migrate"].iter().map(|s| desired(&changed, s, &format!("sha256:{s}0000000000000000"))).collect();
        desired[1] = super::tests::desired(&changed, "app", "sha256:ffffeeeeddddcccc");
        let report = compare(&changed, &desired, &observed);
        let app = report.services.iter().find(|s| s.service == "app").unwrap();
        assert_eq!(app.state, DriftState::Recreate);
        let fields: Vec<&str> = app.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["image_id", "command"]);
        assert_eq!(app.changes[0].detail, "sha256:app000000000 → sha256:ffffeeeedddd");
        assert_eq!(app.changes[1].detail, r#"["serve","--port","80"] → ["serve"]"#);
    }

    #[test]
    fn missing_stopped_old_and_orphaned_containers() {
        let m = manifest();
        let (desired, mut observed) = running_as_desired(&m);
        // db: created by an older stagectl (no spec label) and since changed.
        observed[0].labels.clear();
        observed[0].spec_hash = "old".into();
        // app: stopped.
        observed[1].state = RunState::Exited;
        // migrate: gone; an orphan of a removed service instead.
        observed.pop();
        let mut orphan = observed[1].clone();
        orphan.id = "id-worker".into();
        orphan.service = "worker".into();
        orphan.name = "d-worker".into();
        observed.push(orphan);
        let report = compare(&m, &desired, &observed);
        let states: Vec<(&str, DriftState)> = report.services.iter().map(|s| (s.service.as_str(), s.state)).collect();
        assert_eq!(
            states,
            [("db", DriftState::Recreate), ("app", DriftState::Start), ("migrate", DriftState::Create), ("worker", DriftState::Remove)]
        );
        assert_eq!(report.services[0].reason.as_deref(), Some("changed (details unavailable: created by an older stagectl)"));
        assert_eq!(report.drifted, 4);
    }

    #[test]
    fn the_label_holds_no_secret_and_no_env_value() {
        let mut m = manifest();
        let db = m.services.iter_mut().find(|s| s.name == "db").unwrap();
        db.env.insert("TOKEN".into(), Interpolated { value: "canary-s3cret".into(), secret: true });
        db.command = Some(vec!["--token=canary-s3cret".into()]);
        let db = m.service("db").unwrap();
        let label = spec_label(&spec_fields(&m.stack, db, "sha256:1", None, &m.secret_values()));
        assert!(!label.contains("canary-s3cret") && !label.contains("\"pw\""), "{label}");
        assert!(label.contains("\"TOKEN\"") && label.contains("(secret) sha256:"), "{label}");
        // A label without the newer fields still reads.
        let old: SpecFields = serde_json::from_str(r#"{"image_id":"sha256:1"}"#).unwrap();
        assert_eq!(old.image_id, "sha256:1");
    }
}
