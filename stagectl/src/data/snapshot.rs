//! Fixture snapshots: after a clean load, the data service's container file system is committed
//! as an image keyed by everything that shaped the data; a later `up` with the same key starts
//! from that image instead of reloading. Least recently used snapshots are evicted past a disk
//! budget (the LRU clock is Docker's `LastTagTime`, refreshed by re-tagging on every hit).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::docker::{labels, ContainerEngine};
use crate::error::Result;

pub const LABEL: &str = "org.stagectl.snapshot";
/// Every snapshot's tag starts so: `stagectl-snapshot/<service>:<key prefix>` (see [`reference`]).
pub const REPOSITORY_PREFIX: &str = "stagectl-snapshot/";
pub const KEY_LABEL: &str = "org.stagectl.snapshot-key";
/// The image the snapshot was taken on; its size is subtracted to get the snapshot's own bytes.
pub const BASE_LABEL: &str = "org.stagectl.snapshot-base";
pub const ROWS_LABEL: &str = "org.stagectl.snapshot-rows";
pub const LOAD_SECONDS_LABEL: &str = "org.stagectl.snapshot-load-seconds";

/// Marker written into a data service once its fixtures loaded completely; a container
/// without it never counts as loaded (and it is part of every snapshot).
pub const MARKER_PATH: &str = "/tmp/.stagectl-fixtures-loaded";

/// The snapshot key: base image, the service's spec, the fixture inputs, and the jobs that
/// run before the load (their spec hashed with their resolved image ID, not their image's
/// name, and the content of the host paths they mount).
pub fn key(base_image_id: &str, service_spec_hash: &str, fixtures_hash: &str, jobs: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    // Bumped whenever what a snapshot contains changes shape (e.g. the marker's location).
    h.update(b"stagectl-snapshot-v2\0");
    for part in [base_image_id, service_spec_hash, fixtures_hash] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    for (spec, content) in jobs {
        h.update(spec.as_bytes());
        h.update(content.as_bytes());
        h.update(b"\0");
    }
    hex::encode(h.finalize())
}

pub fn reference(service: &str, key: &str) -> String {
    format!("{REPOSITORY_PREFIX}{service}:{}", &key[..24])
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub reference: String,
    pub id: String,
    pub stack: String,
    pub service: String,
    pub bytes: u64,
    pub rows: u64,
    pub load_seconds: f64,
    pub created: i64,
    pub last_used: String,
}

/// Whether an image with the snapshot label is a usable snapshot: it carries a snapshot tag.
/// Without one it is debris of a snapshot that was interrupted (a kill or a lost engine while
/// it was committed): the `<snapshot>-raw` commit of an engine that stores the container's
/// config in the image, or the untagged result of a build that never got its tag. No run can
/// find it (runs look snapshots up by tag), so it only takes space.
fn usable(tags: &[String]) -> bool {
    tags.iter().any(|t| t.starts_with(REPOSITORY_PREFIX) && !t.ends_with(RAW_SUFFIX))
}

/// The tag suffix of a snapshot's temporary commit (see the engine's `commit`).
pub const RAW_SUFFIX: &str = "-raw";

/// The usable snapshots (debris is not listed, see [`remove_debris`]), most recently used first.
pub async fn list<E: ContainerEngine + ?Sized>(docker: &E) -> Result<Vec<SnapshotInfo>> {
    let mut out = Vec::new();
    for i in docker.list_images(LABEL).await?.into_iter().filter(|i| usable(&i.tags)) {
        let l = |k: &str| i.labels.get(k).cloned().unwrap_or_default();
        let base = match l(BASE_LABEL) {
            b if b.is_empty() => 0,
            b => docker.image_size(&b).await?.unwrap_or(0),
        };
        out.push(SnapshotInfo {
            reference: i.tags.iter().find(|t| t.starts_with(REPOSITORY_PREFIX)).cloned().unwrap_or_else(|| i.id.clone()),
            id: i.id.clone(),
            stack: l(labels::STACK),
            service: l(labels::SERVICE),
            bytes: i.size.saturating_sub(base),
            rows: l(ROWS_LABEL).parse().unwrap_or(0),
            load_seconds: l(LOAD_SECONDS_LABEL).parse().unwrap_or(0.0),
            created: i.created,
            last_used: i.last_tagged.clone(),
        });
    }
    // Most recently used first.
    out.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(b.created.cmp(&a.created)));
    Ok(out)
}

/// Evicts least recently used snapshots until their total is within `budget` bytes; `keep` is
/// never evicted. With `stack`, only that stack's snapshots are considered (one stack's budget
/// never evicts another's). The stack's snapshot debris is removed first, whatever the budget.
/// Returns the snapshots removed.
pub async fn prune<E: ContainerEngine + ?Sized>(
    docker: &E,
    budget: u64,
    keep: Option<&str>,
    stack: Option<&str>,
) -> Result<Vec<SnapshotInfo>> {
    remove_debris(docker, stack).await?;
    let all: Vec<SnapshotInfo> = list(docker).await?.into_iter().filter(|s| stack.is_none_or(|st| s.stack == st)).collect();
    let mut total: u64 = 0;
    let mut removed = Vec::new();
    for s in all {
        let kept = keep.is_some_and(|k| k == s.reference || k == s.id);
        if kept || total + s.bytes <= budget {
            total += s.bytes;
            continue;
        }
        // A snapshot a running container was started from cannot go; it stays (and counts).
        match docker.remove_image(&s.id).await {
            Ok(()) => removed.push(s),
            Err(e) => {
                tracing::info!("keeping snapshot {} in use: {e}", s.reference);
                total += s.bytes;
            }
        }
    }
    Ok(removed)
}

/// Removes the snapshot debris of one stack (or of every stack with `None`): images with the
/// snapshot label and no usable tag (see [`usable`]). Untagged images go first, so a raw commit
/// whose half-built child was among them can go too; an image still in use stays. Returns how
/// many were removed. A snapshot being committed by another process at this very moment can
/// lose its raw commit: that snapshot is then not taken (a warning), nothing else.
pub async fn remove_debris<E: ContainerEngine + ?Sized>(docker: &E, stack: Option<&str>) -> Result<usize> {
    let mut debris: Vec<_> = docker
        .list_images(LABEL)
        .await?
        .into_iter()
        .filter(|i| !usable(&i.tags) && stack.is_none_or(|st| i.labels.get(labels::STACK).is_some_and(|l| l == st)))
        .collect();
    let tagged = |i: &crate::docker::ImageInfo| i.tags.iter().any(|t| t.ends_with(RAW_SUFFIX));
    debris.sort_by_key(tagged);
    let mut removed = 0;
    for image in debris {
        let raw_tags: Vec<&String> = image.tags.iter().filter(|t| t.ends_with(RAW_SUFFIX)).collect();
        let result = if raw_tags.is_empty() {
            docker.remove_image(&image.id).await
        } else {
            let mut r = Ok(());
            for tag in raw_tags {
                r = r.and(docker.remove_image(tag).await);
            }
            r
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) => tracing::info!("keeping snapshot debris {}: {e}", image.id),
        }
    }
    Ok(removed)
}

/// Labels for a new snapshot image.
pub fn image_labels(stack: &str, service: &str, key: &str, base_image: &str, rows: u64, load_seconds: f64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL.to_string(), "1".to_string()),
        (KEY_LABEL.to_string(), key.to_string()),
        (labels::STACK.to_string(), stack.to_string()),
        (labels::SERVICE.to_string(), service.to_string()),
        (BASE_LABEL.to_string(), base_image.to_string()),
        (ROWS_LABEL.to_string(), rows.to_string()),
        (LOAD_SECONDS_LABEL.to_string(), format!("{load_seconds:.3}")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_changes_the_key() {
        let jobs = vec![("jobspec".to_string(), "migrations-v1".to_string())];
        let base = key("img", "spec", "fx", &jobs);
        assert_eq!(base, key("img", "spec", "fx", &jobs));
        assert_ne!(base, key("img2", "spec", "fx", &jobs));
        assert_ne!(base, key("img", "spec2", "fx", &jobs));
        assert_ne!(base, key("img", "spec", "fx2", &jobs));
        assert_ne!(base, key("img", "spec", "fx", &[("jobspec".to_string(), "migrations-v2".to_string())]));
        assert!(reference("db", &base).starts_with("stagectl-snapshot/db:"));
    }
}
