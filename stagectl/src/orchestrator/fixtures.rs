//! A data service's fixtures inside `up`: what identifies its data before it starts (the
//! snapshot key), then, once it is ready and the jobs its load waits for are done, the load
//! (or the restore from a snapshot), the load marker, and a new snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use super::pg_snapshot;
use super::{FixtureReport, Orchestrator, Phase};
use crate::data;
use crate::docker::{BoxFuture, ContainerEngine};
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
    /// A snapshot could not be saved (the data stays loaded; the next run loads again).
    #[error("{why}")]
    Snapshot { why: String },
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

/// A PostgreSQL snapshot being saved off the critical path (see [`pg_snapshot`]); `up` runs
/// these while the dependents start, and waits for them before it returns.
pub(super) type PendingSnapshot<'a> = BoxFuture<'a, SnapshotDone>;
pub(super) type SnapshotQueue<'a> = tokio::sync::mpsc::UnboundedSender<PendingSnapshot<'a>>;

/// How a snapshot saved in the background ended.
pub(super) struct SnapshotDone {
    pub(super) service: String,
    pub(super) result: Result<String, FixtureError>,
    pub(super) seconds: f64,
}

/// What identifies a snapshot to be saved: its reference, key, base image and labels.
#[derive(Clone)]
pub(super) struct SnapshotPlan {
    service: String,
    reference: String,
    key: String,
    base_image: String,
    labels: BTreeMap<String, String>,
    secret_env: Vec<String>,
}

/// The containers of a PostgreSQL snapshot: the throwaway server it is replayed in (`replay`:
/// its data directory on the volume `volume`), and the container whose layer is committed
/// (`image`). Both have the service's image and spec, but are not the service: never reached by
/// its name, never mistaken for its container (the next `up` removes one left behind as an
/// orphan), never holding its ports.
fn snapshot_spec(manifest: &Manifest, service: &Service, image: &str, role: &str) -> crate::docker::ContainerSpec {
    let mut spec = plan::container_spec(manifest, service, image, image, "snapshot");
    spec.name = format!("{}.{role}", spec.name);
    spec.labels.insert(crate::docker::labels::SERVICE.into(), format!("{}.snapshot", service.name));
    spec.aliases.clear();
    spec.ports.clear();
    spec.restart = None;
    spec.hostname = format!("{}-snapshot", service.name);
    spec
}

/// The volume the throwaway server keeps its data directory on.
fn replay_volume(manifest: &Manifest, service: &str) -> String {
    plan::volume_name(&manifest.stack, &format!("{service}.snapshot"))
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Step 1 of a PostgreSQL snapshot saved off the critical path (see [`pg_snapshot`]), run
    /// while the jobs the load waits for and the load itself run: `None` when the data service
    /// has no PostgreSQL snapshot to take, `Err` when it cannot be taken this way.
    pub(super) async fn stage_snapshot(
        &self,
        manifest: &Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        id: &str,
    ) -> Option<Result<pg_snapshot::BaseBackup, pg_snapshot::NoBaseBackup>> {
        let Loader::Postgres { user, database } = &fixtures.loader else { return None };
        if !fixtures.snapshot {
            return None;
        }
        let started = Instant::now();
        let staged = self.stage_base_backup(manifest, &fixtures.service, inputs, id, (user, database)).await;
        if staged.is_ok() {
            let detail = format!("base backup for the snapshot staged in {:.2}s", started.elapsed().as_secs_f64());
            self.reporter.phase(&fixtures.service, Phase::Loading, &detail);
        }
        Some(staged)
    }

    async fn stage_base_backup(
        &self,
        manifest: &Manifest,
        service: &str,
        inputs: &FixtureInputs,
        id: &str,
        login: (&str, &str),
    ) -> Result<pg_snapshot::BaseBackup, pg_snapshot::NoBaseBackup> {
        let declared = self.docker.image_volumes(&inputs.base_image).await.map_err(|e| e.to_string())?;
        let svc = manifest.service(service).ok_or_else(|| format!("no service `{service}`"))?;
        let at = pg_snapshot::locate(self.docker.as_ref(), id, login, &declared, &pg_snapshot::service_mounts(svc)).await?;
        if self.docker.is_podman() {
            let why = "Podman's archive upload breaks off the WAL copy".to_string();
            return Err(pg_snapshot::NoBaseBackup { why, data_in_mount: at.relocated() });
        }
        let failed = |e: Error| pg_snapshot::NoBaseBackup { why: e.to_string(), data_in_mount: at.relocated() };
        let volume = replay_volume(manifest, service);
        self.docker.ensure_volume(&volume, &plan::stack_labels(&manifest.stack)).await.map_err(failed)?;
        let mut spec = snapshot_spec(manifest, svc, &inputs.base_image, "snapshot-replay");
        spec.binds.push(format!("{volume}:{}", at.data_dir()));
        let throwaway = match self.docker.create_container(&spec).await {
            Ok(id) => id,
            Err(e) => {
                let _ = self.docker.remove_volume(&volume).await;
                return Err(failed(e));
            }
        };
        let staged = pg_snapshot::stage(self.docker.as_ref(), (service, id), at, &throwaway, &inputs.key).await;
        if staged.is_err() {
            let _ = self.docker.remove_container(&throwaway, 0).await;
            let _ = self.docker.remove_volume(&volume).await;
        }
        staged
    }

    /// Undoes a staged base backup whose load did not complete.
    pub(super) async fn discard_staged(
        &self,
        manifest: &Manifest,
        staged: Option<Result<pg_snapshot::BaseBackup, pg_snapshot::NoBaseBackup>>,
    ) {
        if let Some(Ok(base)) = staged {
            pg_snapshot::drop_slot(self.docker.as_ref(), &base).await;
            self.remove_replay(manifest, &base).await;
        }
    }

    /// The throwaway server and its volume.
    async fn remove_replay(&self, manifest: &Manifest, base: &pg_snapshot::BaseBackup) {
        let _ = self.docker.remove_container(&base.throwaway, 0).await;
        let _ = self.docker.remove_volume(&replay_volume(manifest, &base.service)).await;
    }

    /// Loads fixtures (unless the container already holds them: `Ok(Err(report))`), marks the
    /// container loaded.
    pub(super) async fn load_fixtures(
        &self,
        manifest: &Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        id: &str,
        action: &Action,
        restored: bool,
    ) -> Result<Result<data::LoadReport, FixtureReport>, FixtureError> {
        let name = fixtures.service.as_str();
        let started = Instant::now();
        if *action == Action::Keep {
            if let Loader::Postgres { user, database } = &fixtures.loader {
                // A run cancelled while its snapshot was being saved may have left its slot,
                // which would keep every WAL segment of this server from then on.
                let _ = self.docker.exec(id, &data::psql_command(user, database, &["-At", "-c", pg_snapshot::DROP_STALE_SLOTS])).await;
            }
            self.reporter.phase(name, Phase::Loading, "already loaded");
            return Ok(Err(FixtureReport::new("kept", 0, vec![], 0.0)));
        }
        if restored {
            // Refresh the snapshot's place in the LRU order.
            let _ = self.docker.tag_image(&inputs.snapshot_ref, &inputs.snapshot_ref).await;
            let secs = started.elapsed().as_secs_f64();
            self.reporter.phase(name, Phase::Loading, &format!("restored from snapshot {}", inputs.snapshot_ref));
            return Ok(Err(FixtureReport::new("hit", 0, vec![], secs)));
        }
        let reporter = self.reporter.clone();
        let on_file = move |f: &data::FileLoad| reporter.phase(&f.file, Phase::Loading, &format!("{} rows in {:.2}s", f.rows, f.seconds));
        self.reporter.phase(name, Phase::Loading, &format!("{} files", inputs.files.len()));
        let load = data::load(self.docker.as_ref(), id, manifest, fixtures, &inputs.files, &on_file).await?;
        let marker = vec!["sh".to_string(), "-c".to_string(), format!("echo {} > {}", inputs.key, data::snapshot::MARKER_PATH)];
        match self.docker.exec(id, &marker).await? {
            (0, _) => Ok(Ok(load)),
            (code, output) => Err(FixtureError::Marker { code, output }),
        }
    }

    /// After a complete load: the snapshot. A staged PostgreSQL one gets its restore point and
    /// is saved in the background (pushed to `queue`: the data service is ready at once); any
    /// other is committed here, on the critical path.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn snapshot_after_load<'a>(
        &'a self,
        manifest: &'a Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        id: &str,
        load: data::LoadReport,
        staged: Option<Result<pg_snapshot::BaseBackup, pg_snapshot::NoBaseBackup>>,
        queue: &SnapshotQueue<'a>,
    ) -> Result<FixtureReport, FixtureError> {
        let name = fixtures.service.as_str();
        let mut snapshot = "off";
        if fixtures.snapshot {
            snapshot = "miss";
            let plan = self.snapshot_plan(manifest, fixtures, inputs, &load);
            let mut in_layer = true;
            match staged {
                Some(Ok(base)) => match self.save_staged(manifest, &plan, base, queue).await {
                    Ok(()) => snapshot = "saving",
                    Err((why, relocated)) => {
                        in_layer = !relocated;
                        self.reporter.phase(name, Phase::Loading, &format!("snapshot on the critical path: {why}"));
                    }
                },
                Some(Err(no)) => {
                    self.reporter.phase(name, Phase::Loading, &format!("snapshot on the critical path: {}", no.why));
                    in_layer = !no.data_in_mount;
                }
                None => {}
            }
            if snapshot == "miss" {
                if !in_layer {
                    self.reporter.phase(name, Phase::Loading, "warning: snapshot not taken: the data is on a mount no commit holds");
                    snapshot = "off";
                } else if let Err(e) = self.take_snapshot(manifest, fixtures, inputs, id, &plan).await {
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
        }
        let secs = load.seconds;
        self.reporter.phase(name, Phase::Loading, &format!("{} rows loaded in {secs:.2}s", load.rows));
        Ok(FixtureReport::new(snapshot, load.rows, load.files, secs))
    }

    /// A staged PostgreSQL snapshot after a complete load: its restore point set and the rest
    /// handed to the background (`queue`). When the restore point cannot be set, the staged
    /// copy is discarded: `Err` says why, and whether its data directory had been relocated
    /// (then a commit of the service's container would not hold the data either).
    pub(super) async fn save_staged<'a>(
        &'a self,
        manifest: &'a Manifest,
        plan: &SnapshotPlan,
        base: pg_snapshot::BaseBackup,
        queue: &SnapshotQueue<'a>,
    ) -> Result<(), (String, bool)> {
        match pg_snapshot::mark(self.docker.as_ref(), &base).await {
            Ok(()) => {
                self.reporter.phase(&plan.service, Phase::Loading, "restore point set; the snapshot is saved in the background");
                let _ = queue.send(Box::pin(self.save_in_background(manifest, base, plan.clone())));
                Ok(())
            }
            Err(why) => {
                let relocated = base.at.relocated();
                self.discard_staged(manifest, Some(Ok(base))).await;
                Err((why, relocated))
            }
        }
    }

    pub(super) fn snapshot_plan(
        &self,
        manifest: &Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        load: &data::LoadReport,
    ) -> SnapshotPlan {
        let service = fixtures.service.clone();
        SnapshotPlan {
            labels: data::snapshot::image_labels(&manifest.stack, &service, &inputs.key, &inputs.base_image, load.rows, load.seconds),
            secret_env: manifest.service(&service).map(crate::secrets::secret_env_names).unwrap_or_default(),
            reference: inputs.snapshot_ref.clone(),
            key: inputs.key.clone(),
            base_image: inputs.base_image.clone(),
            service,
        }
    }

    /// Step 3 of [`pg_snapshot`]: the throwaway server replays to the restore point, is stopped
    /// cleanly and committed; whatever happens, it is removed and the slot dropped.
    async fn save_in_background(&self, manifest: &Manifest, base: pg_snapshot::BaseBackup, plan: SnapshotPlan) -> SnapshotDone {
        let started = Instant::now();
        let service = plan.service.clone();
        let result = self.replay_and_commit(manifest, &base, &plan).await;
        self.remove_replay(manifest, &base).await;
        if result.is_ok() {
            self.reporter.phase(&service, Phase::Loading, &format!("snapshot saved as {}", plan.reference));
            self.prune_snapshots(manifest, &service, &plan.reference).await;
        }
        SnapshotDone { service, result, seconds: started.elapsed().as_secs_f64() }
    }

    async fn replay_and_commit(
        &self,
        manifest: &Manifest,
        base: &pg_snapshot::BaseBackup,
        plan: &SnapshotPlan,
    ) -> Result<String, FixtureError> {
        let failed = |why: String| FixtureError::Snapshot { why };
        pg_snapshot::collect_wal(self.docker.as_ref(), base).await.map_err(failed)?;
        let network = plan::network_name(&manifest.stack);
        self.docker.start_container(&base.throwaway).await?;
        pg_snapshot::settle_replica(self.docker.as_ref(), &network, base).await.map_err(failed)?;
        self.docker.stop_container(&base.throwaway, SNAPSHOT_STOP_GRACE_SECS).await?;
        let status = self.docker.container_status(&base.throwaway, &network).await?;
        if status.exit_code != Some(0) {
            return Err(failed(format!("the throwaway server did not shut down cleanly (exit {})", status.exit_code.unwrap_or(-1))));
        }
        let service = manifest.service(&plan.service).ok_or_else(|| failed(format!("no service `{}`", plan.service)))?;
        let mut spec = snapshot_spec(manifest, service, &plan.base_image, "snapshot");
        let mut labels = plan.labels.clone();
        if base.at.relocated() {
            spec.env.retain(|e| !e.starts_with("PGDATA="));
            spec.env.push(format!("PGDATA={}", base.at.snapshot_data_dir));
            labels.insert(pg_snapshot::PGDATA_LABEL.into(), base.at.snapshot_data_dir.clone());
        }
        let image_container = self.docker.create_container(&spec).await?;
        let committed = async {
            pg_snapshot::copy_to_layer(self.docker.as_ref(), base, &image_container, &plan.key).await.map_err(failed)?;
            self.docker.commit(&image_container, &plan.reference, &labels, &plan.secret_env).await?;
            Ok(plan.reference.clone())
        }
        .await;
        let _ = self.docker.remove_container(&image_container, 0).await;
        committed
    }

    /// Evicts older snapshots past the budget; a failure is a warning of its own.
    async fn prune_snapshots(&self, manifest: &Manifest, service: &str, keep: &str) {
        if let Err(e) = data::snapshot::prune(self.docker.as_ref(), manifest.snapshot_budget, Some(keep), Some(&manifest.stack)).await {
            self.reporter.phase(service, Phase::Loading, &format!("warning: older snapshots not pruned: {e}"));
        }
    }

    /// The snapshot on the critical path: PostgreSQL committed running after a CHECKPOINT
    /// (restored through crash recovery), any other data service stopped cleanly first.
    async fn take_snapshot(
        &self,
        manifest: &Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        id: &str,
        plan: &SnapshotPlan,
    ) -> Result<(), FixtureError> {
        let (labels, secret_env) = (&plan.labels, &plan.secret_env);
        if let Some(why) = self.data_on_mount(manifest, &fixtures.service, &inputs.base_image).await? {
            return Err(FixtureError::Snapshot { why });
        }
        if let Loader::Postgres { user, database } = &fixtures.loader {
            // Flush everything to the data files so the restored server needs no recovery.
            match self.docker.exec(id, &data::psql_command(user, database, &["-c", "CHECKPOINT"])).await? {
                (0, _) => {}
                (_, output) => return Err(FixtureError::Checkpoint { output: output.trim().to_string() }),
            }
            self.docker.commit(id, &inputs.snapshot_ref, labels, secret_env).await?;
        } else {
            self.stopped_commit(manifest, &fixtures.service, id, &inputs.snapshot_ref, (labels, secret_env)).await?;
        }
        self.reporter.phase(&fixtures.service, Phase::Loading, &format!("snapshot saved as {}", inputs.snapshot_ref));
        self.prune_snapshots(manifest, &fixtures.service, &inputs.snapshot_ref).await;
        Ok(())
    }

    /// Why a commit of `service` would not hold its data, for a data service other than
    /// PostgreSQL (whose data directory [`pg_snapshot::prepare`] checks): the image declares
    /// volumes, or the service mounts writable volumes or tmpfs. Its data is likely there.
    async fn data_on_mount(&self, manifest: &Manifest, service: &str, base_image: &str) -> Result<Option<String>, FixtureError> {
        let Some(svc) = manifest.service(service) else { return Ok(None) };
        if manifest.fixtures_for(service).is_some_and(|f| matches!(f.loader, Loader::Postgres { .. })) {
            return Ok(None);
        }
        let declared = self.docker.image_volumes(base_image).await?;
        let mounts: Vec<String> =
            svc.volumes.iter().filter(|v| !v.read_only).map(|v| v.target.clone()).chain(svc.tmpfs.keys().cloned()).collect();
        Ok(match (declared.first(), mounts.first()) {
            (Some(v), _) => Some(format!(
                "the image declares the volume {v} (a commit holds only the container's own layer, and the data is likely there)"
            )),
            (None, Some(m)) => {
                Some(format!("the service mounts {m} (a commit holds only the container's own layer, and the data may be there)"))
            }
            (None, None) => None,
        })
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
