//! `stagectl snapshots export FILE` / `import FILE`: a stack's fixture snapshots as one plain
//! `docker save` archive, so a machine without them (a CI runner) starts warm from an artifact.
//!
//! Export picks, per data service with snapshots on, the snapshot the current manifest keys
//! (resolved as `diff` does: nothing is built or pulled). When the key cannot be known without a
//! build or pull (a changed build context, a missing image), the service's most recently used
//! snapshot of this stack is taken instead and the report says so. `--all` takes every snapshot
//! of the stack. The image carries its key in its labels and its tag is derived from the key,
//! so nothing beside the archive is needed.
//!
//! Import checks the archive before anything reaches the engine (its `manifest.json` may only
//! tag `stagectl-snapshot/...` images), loads it, then checks every loaded image's labels (the
//! snapshot label, and a key whose reference is the tag it came with). Anything that fails is
//! removed again (a tag it moved is put back) and the import is refused. Loaded snapshots are
//! re-tagged, which also puts them first in the LRU order.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::fixtures::fixture_inputs;
use super::images;
use crate::data::snapshot::{self, SnapshotInfo};
use crate::docker::{labels, ContainerEngine};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::plan;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("nothing to export: stack `{stack}` has no data service with fixture snapshots on")]
    NoDataServices { stack: String },
    #[error("service `{service}`: no snapshot to export ({why}); run `stagectl up` first, or export `--all`")]
    Missing { service: String, why: String },
    #[error("{}: not a stagectl snapshot archive: {reason}; nothing from it was kept", path.display())]
    NotSnapshot { path: PathBuf, reason: String },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: compressed archives are not written; export to a `.tar` (CI artifact uploads compress it)", path.display())]
    Compressed { path: PathBuf },
    #[error("{}: its directory does not exist", path.display())]
    NoDirectory { path: PathBuf },
}

impl From<TransferError> for Error {
    fn from(e: TransferError) -> Self {
        Error::Usage(e.to_string())
    }
}

/// One snapshot that was exported or imported.
#[derive(Debug, Clone, Serialize)]
pub struct Transferred {
    pub service: String,
    pub stack: String,
    pub reference: String,
    pub key: String,
    /// `current` (the key `up` would use now), `latest` (most recently used; the current key
    /// was unknown), or `all`; on import, `imported`.
    pub how: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
    pub snapshots: Vec<Transferred>,
    pub notes: Vec<String>,
}

fn of_stack(manifest: &Manifest, s: &SnapshotInfo) -> bool {
    s.stack == manifest.stack || s.stack == manifest.snapshot_scope
}

fn entry(s: &SnapshotInfo, key: &str, how: &str) -> Transferred {
    Transferred {
        service: s.service.clone(),
        stack: s.stack.clone(),
        reference: s.reference.clone(),
        key: key.to_string(),
        how: how.into(),
    }
}

/// The snapshot key `up` would use now for the data service of `f`, or why it is unknown.
async fn current_key<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    f: &crate::manifest::Fixtures,
) -> Result<std::result::Result<String, String>> {
    let failed = |e: &dyn std::fmt::Display| Error::StackFailed(format!("snapshots: service `{}`: {e}", f.service));
    let Some(service) = manifest.service(&f.service) else { return Ok(Err("not a service".into())) };
    let image_id = match images::current_image(docker, service).await.map_err(|e| failed(&e))? {
        Ok(id) => id,
        Err(note) => return Ok(Err(note)),
    };
    let mut jobs = BTreeMap::new();
    for job in &f.after {
        let Some(j) = manifest.service(job) else { continue };
        match images::current_image(docker, j).await.map_err(|e| failed(&e))? {
            Ok(id) => jobs.insert(job.clone(), id),
            Err(note) => return Ok(Err(format!("job `{job}`: {note}"))),
        };
    }
    let spec_hash = plan::snapshot_spec_hash(manifest, service, &image_id);
    Ok(Ok(fixture_inputs(manifest, f, &image_id, &spec_hash, &jobs).map_err(|e| failed(&e))?.key))
}

/// An export is written as a plain tar; a name promising compression is refused.
pub fn check_export_path(path: &Path) -> std::result::Result<(), TransferError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if [".gz", ".tgz", ".zst", ".xz", ".bz2"].iter().any(|ext| name.ends_with(ext)) {
        return Err(TransferError::Compressed { path: path.to_path_buf() });
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(TransferError::NoDirectory { path: path.to_path_buf() });
    }
    Ok(())
}

/// Writes the stack's snapshots (see the module docs for which) into `path`.
pub async fn export<E: ContainerEngine + ?Sized>(docker: &E, manifest: &Manifest, all: bool, path: &Path) -> Result<TransferReport> {
    check_export_path(path)?;
    let started = Instant::now();
    let (chosen, notes) = select(docker, manifest, all).await?;
    let references: Vec<String> = chosen.iter().map(|t| t.reference.clone()).collect();
    let bytes = docker.export_images(&references, path).await?;
    Ok(TransferReport { file: path.to_path_buf(), bytes, seconds: started.elapsed().as_secs_f64(), snapshots: chosen, notes })
}

/// The snapshots an export (or a push) takes, and notes on how they were chosen (see the
/// module docs).
pub async fn select<E: ContainerEngine + ?Sized>(docker: &E, manifest: &Manifest, all: bool) -> Result<(Vec<Transferred>, Vec<String>)> {
    let known: Vec<SnapshotInfo> = snapshot::list(docker).await?.into_iter().filter(|s| of_stack(manifest, s)).collect();
    let mut chosen = Vec::new();
    let mut notes = Vec::new();
    if all {
        for s in known.iter().filter(|s| s.reference.starts_with(snapshot::REPOSITORY_PREFIX)) {
            let key = label_key(docker, &s.id).await?;
            chosen.push(entry(s, &key, "all"));
        }
        if chosen.is_empty() {
            return Err(
                TransferError::Missing { service: "*".into(), why: format!("stack `{}` has no snapshots here", manifest.stack) }.into()
            );
        }
    } else {
        let data: Vec<_> = manifest.fixtures.iter().filter(|f| f.snapshot).collect();
        if data.is_empty() {
            return Err(TransferError::NoDataServices { stack: manifest.stack.clone() }.into());
        }
        for f in data {
            match current_key(docker, manifest, f).await? {
                Ok(key) => {
                    let reference = snapshot::reference(&f.service, &key);
                    if docker.image_id(&reference).await?.is_none() {
                        let why = format!("the current fixture inputs (key {}) have no snapshot", &key[..12]);
                        return Err(TransferError::Missing { service: f.service.clone(), why }.into());
                    }
                    chosen.push(Transferred {
                        service: f.service.clone(),
                        stack: manifest.stack.clone(),
                        reference,
                        key,
                        how: "current".into(),
                    });
                }
                Err(why) => {
                    // `known` is most recently used first.
                    let Some(s) = known.iter().find(|s| s.service == f.service && s.reference.starts_with(snapshot::REPOSITORY_PREFIX))
                    else {
                        return Err(TransferError::Missing { service: f.service.clone(), why }.into());
                    };
                    notes.push(format!("{}: current snapshot key unknown ({why}); exporting its most recently used snapshot", f.service));
                    let key = label_key(docker, &s.id).await?;
                    chosen.push(entry(s, &key, "latest"));
                }
            }
        }
    }
    Ok((chosen, notes))
}

async fn label_key<E: ContainerEngine + ?Sized>(docker: &E, id: &str) -> Result<String> {
    let images = docker.list_images(snapshot::LABEL).await?;
    Ok(images.into_iter().find(|i| i.id == id).and_then(|i| i.labels.get(snapshot::KEY_LABEL).cloned()).unwrap_or_default())
}

/// The tags a `docker save` archive's `manifest.json` gives its images (read without unpacking
/// the layers: the reader seeks over them).
pub fn archive_tags(path: &Path) -> std::result::Result<Vec<String>, TransferError> {
    let not = |reason: String| TransferError::NotSnapshot { path: path.to_path_buf(), reason };
    let read = |source| TransferError::Read { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mut magic = [0u8; 2];
    if file.read(&mut magic).map_err(read)? == 2 && magic == [0x1f, 0x8b] {
        return Err(not("it is gzip-compressed; `gunzip` it first".into()));
    }
    let file = std::fs::File::open(path).map_err(read)?;
    let mut archive = tar::Archive::new(file);
    let entries = archive.entries_with_seek().map_err(|e| not(format!("not a tar archive ({e})")))?;
    for e in entries {
        let mut e = e.map_err(|e| not(format!("not a tar archive ({e})")))?;
        let is_manifest = e.path().map(|p| p == Path::new("manifest.json")).unwrap_or(false);
        if !is_manifest {
            continue;
        }
        if e.size() > 16 << 20 {
            return Err(not("its manifest.json is implausibly large".into()));
        }
        let mut text = Vec::new();
        e.read_to_end(&mut text).map_err(read)?;
        let items: Vec<serde_json::Value> = serde_json::from_slice(&text).map_err(|e| not(format!("manifest.json: {e}")))?;
        let mut tags = Vec::new();
        for item in &items {
            let these: Vec<String> =
                item["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
            if these.is_empty() {
                return Err(not("it holds an untagged image".into()));
            }
            tags.extend(these);
        }
        if tags.is_empty() {
            return Err(not("it holds no image".into()));
        }
        if let Some(other) = tags.iter().find(|t| !t.starts_with(snapshot::REPOSITORY_PREFIX)) {
            return Err(not(format!("it holds `{other}`, which is not a snapshot (`{}...`)", snapshot::REPOSITORY_PREFIX)));
        }
        return Ok(tags);
    }
    Err(not("no manifest.json (not a `docker save` archive)".into()))
}

/// Loads the snapshot archive `path` (see the module docs for the checks).
pub async fn import<E: ContainerEngine + ?Sized>(docker: &E, path: &Path) -> Result<TransferReport> {
    let started = Instant::now();
    let bytes = std::fs::metadata(path).map_err(|source| TransferError::Read { path: path.to_path_buf(), source })?.len();
    let owned = path.to_path_buf();
    let tags = tokio::task::spawn_blocking(move || archive_tags(&owned))
        .await
        .map_err(|e| Error::StackFailed(format!("snapshots import: {e}")))??;
    let mut before = BTreeMap::new();
    for t in &tags {
        before.insert(t.clone(), docker.image_id(t).await?);
    }
    let loaded = docker.import_images(path).await?;
    let snapshots = docker.list_images(snapshot::LABEL).await?;
    let mut arrived = Vec::new();
    let mut refused = None;
    for r in &loaded {
        let image = snapshots.iter().find(|i| i.tags.contains(r) || i.id == *r);
        let l = |k: &str| image.and_then(|i| i.labels.get(k)).cloned().unwrap_or_default();
        let (service, key) = (l(labels::SERVICE), l(snapshot::KEY_LABEL));
        if image.is_none() || service.is_empty() || key.len() < 24 || snapshot::reference(&service, &key) != *r {
            refused.get_or_insert_with(|| format!("`{r}` does not carry the stagectl snapshot labels its tag promises"));
            continue;
        }
        arrived.push(Transferred { service, stack: l(labels::STACK), reference: r.clone(), key, how: "imported".into() });
    }
    if loaded.is_empty() {
        refused = Some("Docker loaded nothing from it".into());
    }
    if let Some(reason) = refused {
        for r in &loaded {
            match before.get(r).cloned().flatten() {
                Some(old) => {
                    // Put the tag back where it was (a no-op when the same image came back).
                    docker.tag_image(&old, r).await?;
                }
                None => docker.remove_image(r).await?,
            }
        }
        return Err(TransferError::NotSnapshot { path: path.to_path_buf(), reason }.into());
    }
    let mut notes = Vec::new();
    for t in &arrived {
        // Re-tagging refreshes the LRU clock: an imported snapshot is the newest.
        docker.tag_image(&t.reference, &t.reference).await?;
        let base = snapshots
            .iter()
            .find(|i| i.tags.contains(&t.reference))
            .and_then(|i| i.labels.get(snapshot::BASE_LABEL))
            .cloned()
            .unwrap_or_default();
        if !base.is_empty() && docker.image_id(&base).await?.is_none() {
            notes.push(format!(
                "{}: its base image {} is not on this engine; `up` restores it only when the service's image has that same ID",
                t.service,
                base.trim_start_matches("sha256:").get(..12).unwrap_or(&base)
            ));
        }
    }
    Ok(TransferReport { file: path.to_path_buf(), bytes, seconds: started.elapsed().as_secs_f64(), snapshots: arrived, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::fake::FakeEngine;

    fn snapshot_image(fake: &FakeEngine, service: &str, key: &str) -> String {
        let reference = snapshot::reference(service, key);
        let labels = snapshot::image_labels("s", service, key, "sha256:base", 3, 0.1);
        fake.labelled_image(&format!("sha256:{service}-{}", &key[..4]), &reference, labels);
        reference
    }

    #[tokio::test]
    async fn the_fake_engine_round_trips_a_labelled_snapshot_through_an_archive() {
        let fake = FakeEngine::default();
        let key = "a".repeat(64);
        let reference = snapshot_image(&fake, "db", &key);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snap.json");
        fake.export_images(std::slice::from_ref(&reference), &file).await.unwrap();
        fake.remove_image(&reference).await.unwrap();
        assert!(fake.image_id(&reference).await.unwrap().is_none());
        let loaded = fake.import_images(&file).await.unwrap();
        assert_eq!(loaded, vec![reference.clone()]);
        assert!(fake.image_id(&reference).await.unwrap().is_some());
    }

    #[test]
    fn an_archive_that_tags_anything_but_snapshots_is_refused_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, manifest: &str| {
            let path = dir.path().join(name);
            let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
            let mut h = tar::Header::new_gnu();
            h.set_size(manifest.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "manifest.json", manifest.as_bytes()).unwrap();
            b.finish().unwrap();
            path
        };
        let ok = write("ok.tar", r#"[{"Config":"c.json","RepoTags":["stagectl-snapshot/db:0123456789abcdef01234567"],"Layers":[]}]"#);
        assert_eq!(archive_tags(&ok).unwrap(), vec!["stagectl-snapshot/db:0123456789abcdef01234567"]);
        let base = write("base.tar", r#"[{"Config":"c.json","RepoTags":["stagectl/postgres:15"],"Layers":[]}]"#);
        assert!(archive_tags(&base).unwrap_err().to_string().contains("`stagectl/postgres:15`, which is not a snapshot"));
        let untagged = write("untagged.tar", r#"[{"Config":"c.json","RepoTags":null,"Layers":[]}]"#);
        assert!(archive_tags(&untagged).unwrap_err().to_string().contains("untagged"));
        let text = dir.path().join("text.tar");
        std::fs::write(&text, "hello").unwrap();
        assert!(archive_tags(&text).unwrap_err().to_string().contains("not a stagectl snapshot archive"));
        let gz = dir.path().join("x.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        assert!(archive_tags(&gz).unwrap_err().to_string().contains("gunzip"));
    }
}
