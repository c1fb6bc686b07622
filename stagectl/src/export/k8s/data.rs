//! The stack-wide documents: the Secret of `${secret:...}` env values, claims of shared named
//! volumes, ConfigMaps of fixture and migration files, the Job applying native migrations, and
//! the ServiceAccount that may wait for Jobs.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::workload::FIXTURES_MOUNT;
use super::{Context, Document, Export, InputFile, Inputs};
use crate::manifest::{Loader, VolumeSource};

/// What a ConfigMap may hold: Kubernetes refuses objects over 1 MiB; the rest is left for the
/// object's metadata.
pub const CONFIGMAP_DATA_LIMIT: usize = 1024 * 1024 - 16 * 1024;

/// Written instead of a secret's value unless `--include-secret-values`.
pub const SECRET_PLACEHOLDER: &str = "REPLACE-ME";

pub fn secret(cx: &mut Context<'_>, export: &mut Export) {
    let mut data = Map::new();
    for service in &cx.manifest.services {
        for (var, value) in service.env.iter().filter(|(_, v)| v.secret) {
            let shown = if cx.options.include_secret_values { value.value.clone() } else { SECRET_PLACEHOLDER.to_string() };
            data.insert(Context::secret_key(&service.name, var), json!(shown));
        }
    }
    if data.is_empty() {
        return;
    }
    let name = cx.secret_name();
    let mut metadata = cx.metadata(&name, None);
    if !cx.options.include_secret_values {
        metadata["annotations"] = json!({
            "org.stagectl.secret-values": format!("placeholders: replace each {SECRET_PLACEHOLDER} before applying (README.md, \"Moving to Kubernetes\")"),
        });
    }
    export.documents.push(Document {
        kind: "Secret",
        name: name.clone(),
        value: json!({ "apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "stringData": data }),
    });
}

/// Claims of named volumes that are not one long-running service's own (those are claim templates).
pub fn claims(cx: &mut Context<'_>, export: &mut Export) {
    let mut done = BTreeSet::new();
    for service in &cx.manifest.services {
        for v in &service.volumes {
            let VolumeSource::Named(volume) = &v.source else { continue };
            if cx.own_volume(service, volume) || !done.insert(volume.clone()) {
                continue;
            }
            let users = &cx.volume_users[volume];
            if users.len() > 1 {
                let names: Vec<&str> = users.iter().map(String::as_str).collect();
                export.warnings.push(format!(
                    "volume {volume}: shared by {} as one ReadWriteOnce claim: their pods must run on one node (or use a ReadWriteMany storage class)",
                    names.join(", ")
                ));
            }
            let name = cx.claim_name(volume);
            export.documents.push(Document {
                kind: "PersistentVolumeClaim",
                name: name.clone(),
                value: json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": cx.metadata(&name, None),
                    "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": cx.options.volume_size } } },
                }),
            });
        }
    }
}

/// Native migrations of a PostgreSQL service: a ConfigMap of the `.up.sql` files and a Job in
/// the database's image that applies the ones not yet recorded, each in one transaction.
pub fn migrations(cx: &mut Context<'_>, inputs: &Inputs, export: &mut Export) {
    for m in cx.manifest.migrations.iter().filter(|m| m.job.is_none()) {
        let db = &m.service;
        let files = inputs.migrations.get(db).map(Vec::as_slice).unwrap_or_default();
        let name = format!("{db}-migrations");
        let (data, left_out) = fit(files, |_| None, &mut export.warnings, &format!("migrations.{db}"));
        if left_out || data.is_empty() {
            export.warnings.push(format!(
                "migrations.{db}: not applied in Kubernetes: {}; apply them with psql against the {db} Service",
                if data.is_empty() { "no migration file found" } else { "not every file fits in a ConfigMap" }
            ));
            continue;
        }
        export.documents.push(config_map(cx, &name, db, data));
        let Some(service) = cx.manifest.service(db) else { continue };
        let image = super::image_of(&cx.manifest.stack, service);
        let mut env = vec![
            json!({ "name": "PGHOST", "value": db }),
            json!({ "name": "PGPORT", "value": m.port.to_string() }),
            json!({ "name": "PGUSER", "value": m.user }),
            json!({ "name": "PGDATABASE", "value": m.database }),
        ];
        if let Some(password) = service.env.get("POSTGRES_PASSWORD") {
            env.push(if password.secret {
                json!({ "name": "PGPASSWORD", "valueFrom": { "secretKeyRef": { "name": cx.secret_name(), "key": Context::secret_key(db, "POSTGRES_PASSWORD") } } })
            } else {
                json!({ "name": "PGPASSWORD", "value": password.value })
            });
        }
        let wait = format!("until pg_isready --quiet; do echo waiting for {db}; sleep 2; done");
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": cx.metadata(&name, Some(db)),
            "spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": { "labels": cx.labels(Some(db)) },
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "migrate",
                            "image": image,
                            "command": ["sh", "-c", format!("{wait}\n{MIGRATE_SCRIPT}")],
                            "env": env,
                            "volumeMounts": [{ "name": "migrations", "mountPath": "/migrations", "readOnly": true }],
                        }],
                        "volumes": [{ "name": "migrations", "configMap": { "name": name } }],
                    },
                },
            },
        });
        export.documents.push(Document { kind: "Job", name: name.clone(), value: job });
        cx.migration_jobs.insert(db.clone(), name);
    }
}

/// Applies each `/migrations/*.up.sql` (in name order) not yet in `stagectl_k8s_migrations`, in
/// one transaction with its record, so a re-run Job applies only what is new.
const MIGRATE_SCRIPT: &str = r#"set -eu
psql -v ON_ERROR_STOP=1 -qc 'CREATE TABLE IF NOT EXISTS stagectl_k8s_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())'
for f in /migrations/*.up.sql; do
  name=$(basename "$f")
  if [ -n "$(psql -tAc "SELECT 1 FROM stagectl_k8s_migrations WHERE name = '$name'")" ]; then continue; fi
  echo "applying $name"
  psql -v ON_ERROR_STOP=1 -1 -f "$f" -c "INSERT INTO stagectl_k8s_migrations (name) VALUES ('$name')"
done"#;

/// Fixture files → a ConfigMap mounted read-only into the data service at
/// [`FIXTURES_MOUNT`]. CSV files of masked tables stay out: raw values of masked columns never
/// leave the host (stagectl masks them while loading, which the export does not do).
pub fn fixtures(cx: &mut Context<'_>, inputs: &Inputs, export: &mut Export) {
    for f in &cx.manifest.fixtures {
        let service = &f.service;
        let masked: BTreeSet<String> = f.mask.keys().filter_map(|k| k.split_once('.')).map(|(table, _)| table.to_string()).collect();
        let files = inputs.fixtures.get(service).map(Vec::as_slice).unwrap_or_default();
        let is_masked = |file: &InputFile| {
            let (stem, ext) = file.name.rsplit_once('.')?;
            let table = table_name(stem);
            (ext.eq_ignore_ascii_case("csv") && masked.contains(table)).then(|| {
                format!(
                    "fixtures.{service}: {} left out of the ConfigMap: table `{table}` is masked while stagectl loads it, and raw values never leave the host",
                    file.shown
                )
            })
        };
        let (data, _) = fit(files, is_masked, &mut export.warnings, &format!("fixtures.{service}"));
        let loader = match &f.loader {
            Loader::Postgres { .. } => "psql",
            Loader::Mysql { .. } => "mariadb/mysql",
            Loader::Redis => "redis-cli --pipe",
            Loader::Command { .. } => "the loader command",
        };
        if data.is_empty() {
            export.warnings.push(format!("fixtures.{service}: not carried over: no file fits in a ConfigMap"));
            continue;
        }
        let name = format!("{service}-fixtures");
        export.warnings.push(format!(
            "fixtures.{service}: loading not carried over: the files are in ConfigMap {name}, mounted at {FIXTURES_MOUNT} in {service}; load them with {loader} through `kubectl exec` (README.md)"
        ));
        export.documents.push(config_map(cx, &name, service, data));
        cx.fixture_maps.insert(service.clone(), name);
    }
}

/// The table a CSV file loads, as stagectl names it: the stem without a numeric prefix
/// (`03_users` → `users`).
fn table_name(stem: &str) -> &str {
    match stem.split_once('_') {
        Some((prefix, rest)) if !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => stem,
    }
}

/// The files that fit into one ConfigMap, in order, and whether any was left out (each named
/// in a warning): not UTF-8 text, refused by `refuse`, or over the size limit.
fn fit(
    files: &[InputFile],
    refuse: impl Fn(&InputFile) -> Option<String>,
    warnings: &mut Vec<String>,
    section: &str,
) -> (Map<String, Value>, bool) {
    let mut data = Map::new();
    let mut size = 0usize;
    let mut left_out = false;
    for file in files {
        if let Some(why) = refuse(file) {
            warnings.push(why);
            left_out = true;
            continue;
        }
        if size + file.name.len() + file.size as usize > CONFIGMAP_DATA_LIMIT {
            warnings.push(format!(
                "{section}: {} left out of the ConfigMap: {} bytes would pass Kubernetes' 1 MiB limit for a ConfigMap",
                file.shown, file.size
            ));
            left_out = true;
            continue;
        }
        let Ok(text) = std::str::from_utf8(&file.bytes) else {
            warnings.push(format!("{section}: {} left out of the ConfigMap: not UTF-8 text", file.shown));
            left_out = true;
            continue;
        };
        if file.name.is_empty() || !file.name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
            warnings.push(format!(
                "{section}: {} left out of the ConfigMap: a ConfigMap key may hold only letters, digits, `-`, `_` and `.`; rename the file",
                file.shown
            ));
            left_out = true;
            continue;
        }
        if data.contains_key(&file.name) {
            warnings.push(format!("{section}: {} left out of the ConfigMap: another file is named {}", file.shown, file.name));
            left_out = true;
            continue;
        }
        size += file.name.len() + text.len();
        data.insert(file.name.clone(), json!(text));
    }
    (data, left_out)
}

fn config_map(cx: &Context<'_>, name: &str, service: &str, data: Map<String, Value>) -> Document {
    Document {
        kind: "ConfigMap",
        name: name.to_string(),
        value: json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": cx.metadata(name, Some(service)), "data": data }),
    }
}

/// The ServiceAccount the pods that wait for a Job run as, allowed to read the namespace's
/// Jobs and nothing else (what `kubectl wait --for=condition=complete job/NAME` needs).
pub fn waiter_rbac(cx: &Context<'_>, export: &mut Export) {
    if cx.awaited_jobs.is_empty() {
        return;
    }
    let name = cx.waiter_account();
    let meta = cx.metadata(&name, None);
    export.documents.push(Document {
        kind: "ServiceAccount",
        name: name.clone(),
        value: json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta }),
    });
    export.documents.push(Document {
        kind: "Role",
        name: name.clone(),
        value: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [{ "apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"] }],
        }),
    });
    export.documents.push(Document {
        kind: "RoleBinding",
        name: name.clone(),
        value: json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": name }],
        }),
    });
}
