//! A data service's fixtures inside `up`: what identifies its data before it starts (the
//! snapshot key), then, once it is ready and the jobs its load waits for are done, the load
//! (or the restore from a snapshot), the load marker, and a new snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use super::{FixtureReport, Orchestrator, Phase};
use crate::data;
use crate::docker::ContainerEngine;
use crate::error::Error;
use crate::manifest::{Fixtures, Loader, Manifest, Service, VolumeSource};
use crate::plan::{self, Action};

/// Why a data service's fixtures are not in place.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The fixture files or the inputs of the snapshot key could not be read, or loading a file
    /// failed (`data` names the file and line).
    #[error(transparent)]
    Data(#[from] data::FixtureError),
    #[error("writing the load marker failed ({code}): {output}")]
    Marker { code: i64, output: String },
    /// PostgreSQL refused to flush its data files before a snapshot.
    #[error("CHECKPOINT failed: {output}")]
    Checkpoint { output: String },
    /// The data service, stopped for a snapshot, did not come back: the stack cannot go on.
    #[error("{service} did not come back after its snapshot was taken: {reason}")]
    RestartAfterSnapshot { service: String, reason: String },
    #[error(transparent)]
    Docker(#[from] Error),
}

/// How long a data service other than PostgreSQL gets to shut down cleanly for a snapshot.
const SNAPSHOT_STOP_GRACE_SECS: u32 = 60;

/// Everything about a data service's fixtures that is known before it starts.
pub(super) struct FixtureInputs {
    base_image: String,
    files: Vec<PathBuf>,
    /// The snapshot key: image, spec, fixture files and the jobs the load waits for (each
    /// one's spec with its resolved image ID, and the content it mounts).
    pub(super) key: String,
    pub(super) snapshot_ref: String,
    /// Each fixture file with its content digest, as loaded (kept as a container label).
    pub(super) file_digests: BTreeMap<String, String>,
}

impl FixtureInputs {
    /// Why the data is replaced, naming the fixture files that changed since the load of the
    /// container `current` (from its label); `None` when no file differs or it is unknown.
    pub(super) fn files_changed(&self, service: &str, current: &crate::docker::ObservedContainer) -> Option<String> {
        let label = current.labels.get(crate::docker::labels::FIXTURE_FILES)?;
        let before: BTreeMap<String, String> = serde_json::from_str(label).ok()?;
        let changed = data::changed_files(&before, &self.file_digests);
        (!changed.is_empty()).then(|| format!("{} → reloading {service}", changed.join(", ")))
    }

    /// The label value for [`Self::file_digests`].
    pub(super) fn files_label(&self) -> String {
        serde_json::to_string(&self.file_digests).unwrap_or_default()
    }
}

/// Which of a job's bind mounts [`mounted_content`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mounts {
    /// Every bind mount: what a load that waits for the job depends on (its snapshot key).
    All,
    /// Read-only ones: the job's inputs, part of its re-run decision. A writable mount is (also)
    /// the job's output or workspace (`npm ci` into `./:/app`): its content changing must not
    /// re-run the job, or every run would cause the next.
    ReadOnly,
}

/// The content of the host paths a job mounts (`None` when it mounts none of `which`). What
/// a job leaves behind depends on it as much as on its image and spec.
pub(super) fn mounted_content(job: &Service, which: Mounts) -> Result<Option<String>, FixtureError> {
    let binds: Vec<PathBuf> = job
        .volumes
        .iter()
        .filter(|v| which == Mounts::All || v.read_only)
        .filter_map(|v| match &v.source {
            VolumeSource::Bind(p) => Some(p.clone()),
            VolumeSource::Named(_) => None,
        })
        .collect();
    if binds.is_empty() {
        return Ok(None);
    }
    let hash = data::paths_hash(&binds)?;
    data::save_hash_cache();
    Ok(Some(hash))
}

/// `job_images`: the resolved image ID of each job in `fixtures.after` (a rebuilt image keeps
/// its tag but gets a new ID; its tag alone would let a stale snapshot through).
pub(super) fn fixture_inputs(
    manifest: &Manifest,
    fixtures: &Fixtures,
    image_id: &str,
    spec_hash: &str,
    job_images: &BTreeMap<String, String>,
) -> Result<FixtureInputs, FixtureError> {
    let files = data::expand_files(&manifest.dir, fixtures)?;
    let fx_hash = data::fixtures_hash(&manifest.dir, fixtures, &files)?;
    let file_digests = data::file_digests(&manifest.dir, &files)?;
    let mut jobs = Vec::new();
    for job in &fixtures.after {
        let Some(j) = manifest.service(job) else { continue };
        let job_image = job_images.get(job).map(String::as_str).unwrap_or_default();
        jobs.push((plan::snapshot_spec_hash(manifest, j, job_image), mounted_content(j, Mounts::All)?.unwrap_or_default()));
    }
    // Natively applied migrations are part of the loaded state, like a migrate job's mounts.
    for m in manifest.migrations.iter().filter(|m| m.service == fixtures.service && m.job.is_none()) {
        jobs.push(("stagectl-migrations".to_string(), data::paths_hash(m.dir.as_slice())?));
    }
    data::save_hash_cache();
    let key = data::snapshot::key(image_id, spec_hash, &fx_hash, &jobs);
    let snapshot_ref = data::snapshot::reference(&fixtures.service, &key);
    Ok(FixtureInputs { base_image: image_id.to_string(), files, key, snapshot_ref, file_digests })
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Loads fixtures (unless the container already holds them), marks the container loaded,
    /// and snapshots the result.
    pub(super) async fn load_fixtures(
        &self,
        manifest: &Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        id: &str,
        action: &Action,
        restored: bool,
    ) -> Result<FixtureReport, FixtureError> {
        let name = fixtures.service.as_str();
        let started = Instant::now();
        if *action == Action::Keep {
            self.reporter.phase(name, Phase::Loading, "already loaded");
            return Ok(FixtureReport { snapshot: "kept".into(), rows: 0, files: vec![], refresh_seconds: 0.0 });
        }
        if restored {
            // Refresh the snapshot's place in the LRU order.
            let _ = self.docker.tag_image(&inputs.snapshot_ref, &inputs.snapshot_ref).await;
            let secs = started.elapsed().as_secs_f64();
            self.reporter.phase(name, Phase::Loading, &format!("restored from snapshot {}", inputs.snapshot_ref));
            return Ok(FixtureReport { snapshot: "hit".into(), rows: 0, files: vec![], refresh_seconds: secs });
        }
        let reporter = self.reporter.clone();
        let on_file = move |f: &data::FileLoad| reporter.phase(&f.file, Phase::Loading, &format!("{} rows in {:.2}s", f.rows, f.seconds));
        self.reporter.phase(name, Phase::Loading, &format!("{} files", inputs.files.len()));
        let load = data::load(self.docker.as_ref(), id, manifest, fixtures, &inputs.files, &on_file).await?;
        let marker = vec!["sh".to_string(), "-c".to_string(), format!("echo {} > {}", inputs.key, data::snapshot::MARKER_PATH)];
        match self.docker.exec(id, &marker).await? {
            (0, _) => {}
            (code, output) => return Err(FixtureError::Marker { code, output }),
        }
        let mut snapshot = "off".to_string();
        if fixtures.snapshot {
            snapshot = "miss".into();
            if let Err(e) = self.take_snapshot(manifest, fixtures, inputs, id, &load).await {
                if let FixtureError::RestartAfterSnapshot { .. } = e {
                    return Err(e);
                }
                // An engine that went away meanwhile is the run's failure (exit 3), whatever
                // error the cut call gave; the run must not go on to report the stack ready.
                if let FixtureError::Docker(lost @ Error::DockerUnreachable { .. }) = e {
                    return Err(FixtureError::Docker(lost));
                }
                if let Err(lost @ Error::DockerUnreachable { .. }) = self.docker.list_containers(&manifest.stack).await {
                    return Err(FixtureError::Docker(lost));
                }
                // A failed snapshot costs speed next time, not correctness now.
                self.reporter.phase(name, Phase::Loading, &format!("warning: snapshot not taken: {e}"));
            }
        }
        let secs = started.elapsed().as_secs_f64();
        self.reporter.phase(name, Phase::Loading, &format!("{} rows loaded in {secs:.2}s", load.rows));
        Ok(FixtureReport { snapshot, rows: load.rows, files: load.files, refresh_seconds: secs })
    }

    async fn take_snapshot(
        &self,
        manifest: &Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        id: &str,
        load: &data::LoadReport,
    ) -> Result<(), FixtureError> {
        let labels =
            data::snapshot::image_labels(&manifest.stack, &fixtures.service, &inputs.key, &inputs.base_image, load.rows, load.seconds);
        let secret_env = manifest.service(&fixtures.service).map(crate::secrets::secret_env_names).unwrap_or_default();
        if let Loader::Postgres { user, database } = &fixtures.loader {
            // Flush everything to the data files so the restored server needs no recovery.
            match self.docker.exec(id, &data::psql_command(user, database, &["-c", "CHECKPOINT"])).await? {
                (0, _) => {}
                (_, output) => return Err(FixtureError::Checkpoint { output: output.trim().to_string() }),
            }
            self.docker.commit(id, &inputs.snapshot_ref, &labels, &secret_env).await?;
        } else {
            self.stopped_commit(manifest, &fixtures.service, id, &inputs.snapshot_ref, (&labels, &secret_env)).await?;
        }
        self.reporter.phase(&fixtures.service, Phase::Loading, &format!("snapshot saved as {}", inputs.snapshot_ref));
        // The snapshot is taken; a failed prune of older ones is a warning of its own (an engine
        // gone meanwhile still fails the run).
        match data::snapshot::prune(self.docker.as_ref(), manifest.snapshot_budget, Some(&inputs.snapshot_ref), Some(&manifest.stack)).await
        {
            Err(lost @ Error::DockerUnreachable { .. }) => return Err(lost.into()),
            Err(e) => self.reporter.phase(&fixtures.service, Phase::Loading, &format!("warning: older snapshots not pruned: {e}")),
            Ok(_) => {}
        }
        Ok(())
    }

    /// The generic snapshot of a data service: stopped cleanly (its stop signal, e.g. a
    /// MariaDB shutdown that flushes InnoDB), committed, started again and probed until ready,
    /// so the image holds files no server is writing and a restore needs no crash recovery.
    /// A service that does not come back is [`FixtureError::RestartAfterSnapshot`]; a failed
    /// commit alone is returned after the restart.
    async fn stopped_commit(
        &self,
        manifest: &Manifest,
        service: &str,
        id: &str,
        reference: &str,
        (labels, secret_env): (&BTreeMap<String, String>, &[String]),
    ) -> Result<(), FixtureError> {
        self.reporter.phase(service, Phase::Loading, "stopping for the snapshot");
        self.docker.stop_container(id, SNAPSHOT_STOP_GRACE_SECS).await?;
        let committed = self.docker.commit(id, reference, labels, secret_env).await;
        let restart = |reason: String| FixtureError::RestartAfterSnapshot { service: service.to_string(), reason };
        self.docker.start_container(id).await.map_err(|e| restart(e.to_string()))?;
        let network = plan::network_name(&manifest.stack);
        match manifest.service(service).and_then(|s| s.ready.as_ref()) {
            Some(readiness) => {
                crate::probes::wait_ready(self.docker.as_ref(), id, &network, readiness).await.map_err(|e| restart(e.to_string()))?;
            }
            None => {
                let status = self.docker.container_status(id, &network).await.map_err(|e| restart(e.to_string()))?;
                if !status.running {
                    return Err(restart(format!("exited with {}", status.exit_code.unwrap_or(-1))));
                }
            }
        }
        committed?;
        Ok(())
    }
}
