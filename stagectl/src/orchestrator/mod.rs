//! Executes plans against a [`ContainerEngine`]: `up`, `down`, `status`.
//!
//! `up` is a DAG run: every service is a future that waits for its dependencies' outcomes
//! (ready, or exited 0 for jobs) and then starts, so independent services start in parallel.
//! A failure is a recorded result: dependents are skipped, independent services carry on, and
//! the run reports failure at the end.

pub mod images;
pub mod progress;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::watch;

use crate::data;
use crate::docker::{ContainerEngine, ObservedContainer, RunState};
use crate::error::{Error, Result};
use crate::manifest::{Fixtures, Manifest, Protocol, Service};
use crate::plan::{self, Action};
use crate::probes;
use crate::secrets::Redactor;
pub use progress::{Phase, Reporter, Silent};

/// Lines of container output shown when a service fails.
pub const FAILURE_LOG_LINES: usize = 20;
/// Grace period for a graceful stop before Docker kills the container.
pub const STOP_GRACE_SECS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ready,
    Completed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    pub action: Action,
    pub outcome: Outcome,
    pub image: String,
    /// How the image was obtained: present, pulled, built, cached.
    pub image_source: String,
    pub image_seconds: f64,
    /// From container start to ready (or job exit).
    pub ready_seconds: Option<f64>,
    pub message: Option<String>,
    /// Last lines of output when the service failed (secrets masked).
    pub logs: Vec<String>,
    /// Data services: what happened to their fixtures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixtures: Option<FixtureReport>,
    /// Database services with native migrations: those applied in this run, with ms each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub migrations_applied: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FixtureReport {
    /// hit (restored from a snapshot), miss (loaded, snapshot taken), off (loaded, snapshots
    /// disabled), kept (container unchanged, data already there).
    pub snapshot: String,
    pub rows: u64,
    pub files: Vec<data::FileLoad>,
    /// Time to get the data in place (seed metric M6, data refresh time).
    pub refresh_seconds: f64,
}

/// Everything about a data service's fixtures that is known before it starts.
struct FixtureInputs {
    base_image: String,
    files: Vec<std::path::PathBuf>,
    key: String,
    snapshot_ref: String,
}

fn fixture_inputs(manifest: &Manifest, fixtures: &Fixtures, image_id: &str, spec_hash: &str) -> std::result::Result<FixtureInputs, String> {
    let files = data::expand_files(&manifest.dir, fixtures)?;
    let fx_hash = data::fixtures_hash(&manifest.dir, fixtures, &files)?;
    let mut jobs = Vec::new();
    for job in &fixtures.after {
        let Some(j) = manifest.service(job) else { continue };
        let binds: Vec<std::path::PathBuf> = j
            .volumes
            .iter()
            .filter_map(|v| match &v.source {
                crate::manifest::VolumeSource::Bind(p) => Some(p.clone()),
                crate::manifest::VolumeSource::Named(_) => None,
            })
            .collect();
        let reference = j.image.clone().or_else(|| j.build.as_ref().map(|b| b.context.display().to_string())).unwrap_or_default();
        jobs.push((plan::spec_hash(&manifest.stack, j, &reference), data::paths_hash(&binds)?));
    }
    // Natively applied migrations are part of the loaded state, like a migrate job's mounts.
    for m in manifest.migrations.iter().filter(|m| m.service == fixtures.service && m.job.is_none()) {
        jobs.push(("stagectl-migrations".to_string(), data::paths_hash(std::slice::from_ref(&m.dir))?));
    }
    data::save_hash_cache();
    let key = data::snapshot::key(image_id, spec_hash, &fx_hash, &jobs);
    let snapshot_ref = data::snapshot::reference(&fixtures.service, &key);
    Ok(FixtureInputs { base_image: image_id.to_string(), files, key, snapshot_ref })
}

async fn wait_signal(mut rx: watch::Receiver<Option<DepSignal>>) -> Option<DepSignal> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => *v,
        Err(_) => None,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub stack: String,
    pub ok: bool,
    pub seconds: f64,
    pub changed: bool,
    pub services: Vec<ServiceReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    pub stack: String,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub container: Option<String>,
    /// running, exited (N), created, missing, ...
    pub state: String,
    pub ready: bool,
    pub ports: Vec<String>,
    pub image: String,
    pub uptime_seconds: Option<u64>,
    pub detail: Option<String>,
}

pub struct Orchestrator<E: ContainerEngine + ?Sized> {
    pub docker: Arc<E>,
    pub reporter: Arc<dyn Reporter>,
    /// Containers seen holding the load marker. It is written once, after a complete load, and
    /// never removed, so a long-lived engine (the daemon's status) checks each container once
    /// instead of a `docker exec` per status refresh.
    loaded: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// What a service tells its dependents when it is done.
#[derive(Debug, Clone, Copy)]
struct DepSignal {
    /// Ready (or completed, for a job).
    ok: bool,
    /// Created or recreated in this run (jobs that depend on it re-run).
    changed: bool,
    /// A data service whose fixtures are already in place (restored from a snapshot, or a
    /// kept container with a complete load): the jobs its load waits for are part of that
    /// state (their spec and mounts are in the snapshot key) and need not run.
    data_present: bool,
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    pub fn new(docker: Arc<E>, reporter: Arc<dyn Reporter>) -> Self {
        Orchestrator { docker, reporter, loaded: Default::default() }
    }

    /// Brings the stack to the state the manifest describes.
    pub async fn up(&self, manifest: &Manifest) -> Result<UpReport> {
        let started = Instant::now();
        let redactor = Redactor::new(manifest.secret_values());
        let observed = self.docker.list_containers(&manifest.stack).await?;
        preflight_ports(manifest, &observed)?;

        let labels = plan::stack_labels(&manifest.stack);
        let network = plan::network_name(&manifest.stack);
        self.docker.ensure_network(&network, &labels).await?;
        let volume_names: Vec<String> = plan::named_volumes(manifest).iter().map(|v| plan::volume_name(&manifest.stack, v)).collect();
        for r in join_all(volume_names.iter().map(|v| self.docker.ensure_volume(v, &labels))).await {
            r?;
        }
        let orphans = plan::orphans(manifest, &observed);
        for r in join_all(orphans.iter().map(|id| self.docker.remove_container(id, STOP_GRACE_SECS))).await {
            r?;
        }

        // Every service is one pipeline: image, then its dependencies, then start and probe,
        // then (data services) fixtures. Pipelines run concurrently, so the database starts
        // while the app image builds. Each service signals twice: `ready` (probe passed) for the
        // jobs its fixtures wait for (migrations), `done` (data loaded) for everyone else.
        let mut ready_tx: BTreeMap<String, watch::Sender<Option<DepSignal>>> = BTreeMap::new();
        let mut done_tx: BTreeMap<String, watch::Sender<Option<DepSignal>>> = BTreeMap::new();
        let mut ready_rx: BTreeMap<String, watch::Receiver<Option<DepSignal>>> = BTreeMap::new();
        let mut done_rx: BTreeMap<String, watch::Receiver<Option<DepSignal>>> = BTreeMap::new();
        for s in &manifest.services {
            let (tx, rx) = watch::channel(None);
            ready_tx.insert(s.name.clone(), tx);
            ready_rx.insert(s.name.clone(), rx);
            let (tx, rx) = watch::channel(None);
            done_tx.insert(s.name.clone(), tx);
            done_rx.insert(s.name.clone(), rx);
        }
        let runs = manifest.services.iter().map(|service| {
            let deps: Vec<(String, watch::Receiver<Option<DepSignal>>)> = service
                .depends_on
                .iter()
                .map(|d| {
                    let runs_before_load = manifest.fixtures_for(d).is_some_and(|f| f.after.contains(&service.name));
                    (d.clone(), if runs_before_load { ready_rx[d].clone() } else { done_rx[d].clone() })
                })
                .collect();
            let after_jobs: Vec<(String, watch::Receiver<Option<DepSignal>>)> = manifest
                .fixtures_for(&service.name)
                .map(|f| f.after.iter().map(|j| (j.clone(), done_rx[j].clone())).collect())
                .unwrap_or_default();
            let (ready, done) = (ready_tx[&service.name].clone(), done_tx[&service.name].clone());
            let current = plan::current_container(&manifest.stack, &service.name, &observed).cloned();
            let (redactor, network) = (&redactor, &network);
            async move {
                let report = self.run_service(manifest, service, current, deps, after_jobs, &ready, network, redactor).await;
                let signal = DepSignal {
                    ok: matches!(report.outcome, Outcome::Ready | Outcome::Completed),
                    changed: report.action != Action::Keep,
                    data_present: false,
                };
                if ready.borrow().is_none() {
                    let _ = ready.send(Some(signal));
                }
                let _ = done.send(Some(signal));
                report
            }
        });
        let services = join_all(runs).await;
        let ok = services.iter().all(|r| matches!(r.outcome, Outcome::Ready | Outcome::Completed));
        let changed = !orphans.is_empty() || services.iter().any(|r| r.action != Action::Keep);
        Ok(UpReport { stack: manifest.stack.clone(), ok, seconds: started.elapsed().as_secs_f64(), changed, services })
    }

    async fn run_service(
        &self,
        manifest: &Manifest,
        service: &Service,
        current: Option<ObservedContainer>,
        deps: Vec<(String, watch::Receiver<Option<DepSignal>>)>,
        after_jobs: Vec<(String, watch::Receiver<Option<DepSignal>>)>,
        ready_signal: &watch::Sender<Option<DepSignal>>,
        network: &str,
        redactor: &Redactor,
    ) -> ServiceReport {
        let name = service.name.as_str();
        let mut report = ServiceReport {
            service: name.to_string(),
            action: Action::Create,
            outcome: Outcome::Failed,
            image: service.image.clone().unwrap_or_default(),
            image_source: String::new(),
            image_seconds: 0.0,
            ready_seconds: None,
            message: None,
            logs: vec![],
            fixtures: None,
            migrations_applied: vec![],
        };
        let image = match images::ensure_image(self.docker.as_ref(), manifest, service, self.reporter.as_ref(), redactor).await {
            Ok(image) => image,
            Err(e) => return self.fail(report, e, None, redactor).await,
        };
        report.image = image.reference.clone();
        report.image_source = image.how.to_string();
        report.image_seconds = image.seconds;
        let mut hash = plan::spec_hash(&manifest.stack, service, &image.id);

        // A data service's container is defined by its spec *and* its data: the hash covers
        // the snapshot key, so a container restored from a snapshot and one loaded from files
        // are interchangeable, and any change to the inputs replaces the container.
        let fixtures = manifest.fixtures_for(name);
        let mut data = None;
        if let Some(f) = fixtures {
            match fixture_inputs(manifest, f, &image.id, &hash) {
                Ok(inputs) => {
                    hash = plan::combine_hash(&hash, &inputs.key);
                    data = Some(inputs);
                }
                Err(e) => return self.fail(report, e, None, redactor).await,
            }
        }
        let snapshot_image = match (&data, fixtures.is_some_and(|f| f.snapshot)) {
            (Some(d), true) => match self.docker.image_id(&d.snapshot_ref).await {
                Ok(id) => id,
                Err(e) => return self.fail(report, e.to_string(), None, redactor).await,
            },
            _ => None,
        };

        if !deps.is_empty() {
            self.reporter.phase(
                name,
                Phase::Waiting,
                &format!("for {}", deps.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", ")),
            );
        }
        let mut dependency_changed = false;
        let mut in_snapshot_of = None;
        for (dep, rx) in deps {
            match wait_signal(rx).await {
                Some(DepSignal { ok: true, changed, data_present }) => {
                    dependency_changed |= changed;
                    if data_present && manifest.fixtures_for(&dep).is_some_and(|f| f.after.contains(&service.name)) {
                        in_snapshot_of = Some(dep);
                    }
                }
                _ => {
                    let msg = format!("not started: dependency `{dep}` failed");
                    self.reporter.phase(name, Phase::Skipped, &msg);
                    report.outcome = Outcome::Skipped;
                    report.message = Some(msg);
                    return report;
                }
            }
        }
        if let Some(data_service) = in_snapshot_of {
            // E.g. migrations whose result is already in the restored data.
            report.action = Action::Keep;
            report.outcome = Outcome::Completed;
            self.reporter.phase(name, Phase::Kept, &format!("contained in `{data_service}`'s loaded data"));
            return report;
        }
        let mut action = plan::decide(service, &hash, current.as_ref(), dependency_changed);
        if let (Action::Keep, Some(c), Some(_)) = (&action, &current, &data) {
            // Kept data services must hold a complete load; a failed one is replaced.
            if !matches!(self.docker.exec(&c.id, &data::load_marker_check()).await, Ok((0, _))) {
                action = Action::Recreate("fixtures were not loaded completely".into());
            }
        }
        report.action = action.clone();

        let mut restored = false;
        let mut id = match (&action, &current) {
            (Action::Keep, Some(c)) => c.id.clone(),
            _ => {
                if let Some(old) = &current {
                    self.reporter.phase(
                        name,
                        Phase::Removing,
                        match &action {
                            Action::Recreate(r) => r,
                            _ => "replacing",
                        },
                    );
                    if let Err(e) = self.docker.remove_container(&old.id, STOP_GRACE_SECS).await {
                        return self.fail(report, e.to_string(), None, redactor).await;
                    }
                }
                let run_image = match &snapshot_image {
                    Some(id) => {
                        restored = true;
                        id.clone()
                    }
                    None => image.id.clone(),
                };
                match self.create_and_start(manifest, service, &run_image, &image.reference, &hash, restored).await {
                    Ok(id) => id,
                    Err((e, id)) => return self.fail(report, e, id.as_deref(), redactor).await,
                }
            }
        };
        let started = Instant::now();

        if service.job {
            if action == Action::Keep {
                self.reporter.phase(name, Phase::Kept, "completed earlier (exit 0)");
                report.outcome = Outcome::Completed;
                return report;
            }
            self.reporter.phase(name, Phase::Probing, "running to completion");
            return match self.docker.wait_exit(&id).await {
                Ok(0) => {
                    let secs = started.elapsed().as_secs_f64();
                    self.reporter.phase(name, Phase::Completed, &format!("exit 0 in {secs:.2}s"));
                    report.outcome = Outcome::Completed;
                    report.ready_seconds = Some(secs);
                    report
                }
                Ok(code) => self.fail(report, format!("job exited with code {code}"), Some(&id), redactor).await,
                Err(e) => self.fail(report, e.to_string(), Some(&id), redactor).await,
            };
        }

        match &service.ready {
            None => {
                // No probe: running is all we can know.
                match self.docker.container_status(&id, network).await {
                    Ok(s) if s.running => {}
                    Ok(s) => {
                        return self
                            .fail(report, format!("container exited with code {}", s.exit_code.unwrap_or(-1)), Some(&id), redactor)
                            .await
                    }
                    Err(e) => return self.fail(report, e.to_string(), Some(&id), redactor).await,
                }
            }
            Some(readiness) => {
                if action != Action::Keep {
                    self.reporter.phase(name, Phase::Probing, &readiness.probe.describe());
                }
                let mut probe = probes::wait_ready(self.docker.as_ref(), &id, network, readiness).await;
                if probe.is_err() && restored {
                    // A snapshot that does not come up is treated as corrupt: fall back to a
                    // clean start and a full load.
                    let why = probe.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
                    self.reporter.phase(
                        name,
                        Phase::Loading,
                        &format!("warning: snapshot did not become ready ({why}); falling back to a full load"),
                    );
                    let _ = self.docker.remove_container(&id, 0).await;
                    restored = false;
                    match self.create_and_start(manifest, service, &image.id, &image.reference, &hash, false).await {
                        Ok(new_id) => id = new_id,
                        Err((e, cid)) => return self.fail(report, e, cid.as_deref(), redactor).await,
                    }
                    probe = probes::wait_ready(self.docker.as_ref(), &id, network, readiness).await;
                }
                if let Err(e) = probe {
                    return self.fail(report, e.to_string(), Some(&id), redactor).await;
                }
            }
        }
        if let Some(m) = manifest.migrations.iter().find(|m| m.service == service.name && m.job.is_none()) {
            match self.apply_migrations(manifest, m, &id, network).await {
                Ok(applied) => report.migrations_applied = applied,
                Err(e) => return self.fail(report, e, Some(&id), redactor).await,
            }
        }
        if let (Some(f), Some(d)) = (fixtures, &data) {
            let data_present = restored || action == Action::Keep;
            let _ = ready_signal.send(Some(DepSignal { ok: true, changed: action != Action::Keep, data_present }));
            for (job, rx) in after_jobs {
                if !matches!(wait_signal(rx).await, Some(DepSignal { ok: true, .. })) {
                    return self.fail(report, format!("fixtures not loaded: `{job}` failed"), None, redactor).await;
                }
            }
            match self.fixtures_phase(manifest, f, d, &id, &action, restored).await {
                Ok(r) => report.fixtures = Some(r),
                Err(e) => return self.fail(report, e, Some(&id), redactor).await,
            }
        }
        let secs = started.elapsed().as_secs_f64();
        report.outcome = Outcome::Ready;
        if action == Action::Keep {
            self.reporter.phase(name, Phase::Kept, "unchanged, ready");
        } else {
            report.ready_seconds = Some(secs);
            self.reporter.phase(name, Phase::Ready, &format!("ready in {secs:.2}s"));
        }
        report
    }

    /// Applies the pending `.up.sql` files of a native `[migrations.<service>]`, after checking
    /// that the applied ones still match their files.
    async fn apply_migrations(
        &self,
        manifest: &Manifest,
        m: &crate::manifest::Migrations,
        id: &str,
        network: &str,
    ) -> std::result::Result<Vec<(String, f64)>, String> {
        use crate::migrations::{self, pg};
        let name = m.service.as_str();
        let dir = data::display(&manifest.dir, &m.dir);
        // Announced at once: the probe has passed, and the time from here is migration work.
        self.reporter.phase(name, Phase::Migrating, &format!("checking {dir}"));
        let files = migrations::discover(&m.dir)?;
        let status = self.docker.container_status(id, network).await.map_err(|e| e.to_string())?;
        let host = status.ip.ok_or_else(|| format!("`{name}` has no address on {network}"))?;
        let password = manifest.service(name).and_then(|s| s.env.get("POSTGRES_PASSWORD")).map(|v| v.value.clone());
        let target = pg::Target { host, port: m.port, user: m.user.clone(), database: m.database.clone(), password };
        let mut client = pg::connect(&target).await?;
        let applied = pg::applied(&client).await?;
        let drifted = migrations::drift(&dir, &files, &applied);
        if !drifted.is_empty() {
            return Err(format!("migration drift:\n{}\n  (`stagectl rebuild` starts the database from scratch)", drifted.join("\n")));
        }
        let todo = migrations::pending(&files, &applied);
        if todo.is_empty() {
            return Ok(vec![]);
        }
        self.reporter.phase(name, Phase::Migrating, &format!("{} pending", todo.len()));
        let mut out = Vec::new();
        for f in todo {
            let ms = pg::apply(&mut client, f, &format!("{dir}/{}.up.sql", f.name)).await?;
            self.reporter.phase(name, Phase::Migrating, &format!("{} applied in {ms:.0} ms", f.name));
            out.push((f.name.clone(), ms));
        }
        Ok(out)
    }

    async fn create_and_start(
        &self,
        manifest: &Manifest,
        service: &Service,
        image_id: &str,
        reference: &str,
        hash: &str,
        from_snapshot: bool,
    ) -> std::result::Result<String, (String, Option<String>)> {
        let name = service.name.as_str();
        let detail = if from_snapshot { format!("{reference} (from fixture snapshot)") } else { reference.to_string() };
        self.reporter.phase(name, Phase::Creating, &detail);
        let spec = plan::container_spec(manifest, service, image_id, reference, hash);
        let id = self.docker.create_container(&spec).await.map_err(|e| (e.to_string(), None))?;
        self.reporter.phase(name, Phase::Starting, "");
        self.docker.start_container(&id).await.map_err(|e| (e.to_string(), Some(id.clone())))?;
        Ok(id)
    }

    /// Loads fixtures (unless the container already holds them), marks the container loaded,
    /// and snapshots the result.
    async fn fixtures_phase(
        &self,
        manifest: &Manifest,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        id: &str,
        action: &Action,
        restored: bool,
    ) -> std::result::Result<FixtureReport, String> {
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
        match self.docker.exec(id, &marker).await {
            Ok((0, _)) => {}
            Ok((code, out)) => return Err(format!("writing the load marker failed ({code}): {out}")),
            Err(e) => return Err(e.to_string()),
        }
        let mut snapshot = "off".to_string();
        if fixtures.snapshot {
            snapshot = "miss".into();
            match self.take_snapshot(manifest, fixtures, inputs, id, &load).await {
                Ok(()) => {}
                // A failed snapshot costs speed next time, not correctness now.
                Err(e) => self.reporter.phase(name, Phase::Loading, &format!("warning: snapshot not taken: {e}")),
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
    ) -> std::result::Result<(), String> {
        if let crate::manifest::Loader::Postgres { user, database } = &fixtures.loader {
            // Flush everything to the data files so the restored server needs no recovery.
            match self.docker.exec(id, &data::psql_command(user, database, &["-c", "CHECKPOINT"])).await {
                Ok((0, _)) => {}
                Ok((_, out)) => return Err(format!("CHECKPOINT failed: {}", out.trim())),
                Err(e) => return Err(e.to_string()),
            }
        }
        let labels =
            data::snapshot::image_labels(&manifest.stack, &fixtures.service, &inputs.key, &inputs.base_image, load.rows, load.seconds);
        self.docker.commit(id, &inputs.snapshot_ref, &labels).await.map_err(|e| e.to_string())?;
        self.reporter.phase(&fixtures.service, Phase::Loading, &format!("snapshot saved as {}", inputs.snapshot_ref));
        data::snapshot::prune(self.docker.as_ref(), manifest.snapshot_budget, Some(&inputs.snapshot_ref), Some(&manifest.stack))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn fail(&self, mut report: ServiceReport, message: String, id: Option<&str>, redactor: &Redactor) -> ServiceReport {
        let message = redactor.apply(&message);
        if let Some(id) = id {
            if let Ok(lines) = self.docker.tail_logs(id, FAILURE_LOG_LINES).await {
                report.logs = lines.iter().map(|l| redactor.apply(l)).collect();
            }
        }
        let mut detail = message.clone();
        if !report.logs.is_empty() {
            detail.push_str(&format!("\n  last {} log lines:\n", report.logs.len()));
            for l in &report.logs {
                detail.push_str(&format!("    | {l}\n"));
            }
        }
        self.reporter.phase(&report.service, Phase::Failed, detail.trim_end());
        report.outcome = Outcome::Failed;
        report.message = Some(message);
        report
    }

    /// Removes everything labelled with the stack: containers (in parallel), its network, and
    /// with `volumes` its named volumes. Without `volumes`, containers get a graceful stop; with
    /// it the data is discarded anyway, so they are killed at once.
    pub async fn down(&self, stack: &str, volumes: bool) -> Result<DownReport> {
        let started = Instant::now();
        let containers = self.docker.list_containers(stack).await?;
        let grace = if volumes { 0 } else { STOP_GRACE_SECS };
        let results = join_all(containers.iter().map(|c| async move {
            self.reporter.phase(&c.service, Phase::Removing, &c.name);
            let r = self.docker.remove_container(&c.id, grace).await;
            if r.is_ok() {
                self.reporter.phase(&c.service, Phase::Removed, &c.name);
            }
            r
        }))
        .await;
        for r in results {
            r?;
        }
        let networks = self.docker.list_networks(stack).await?;
        for n in &networks {
            self.docker.remove_network(&n.name).await?;
        }
        let mut removed_volumes = 0;
        if volumes {
            let vols = self.docker.list_volumes(stack).await?;
            for r in join_all(vols.iter().map(|v| self.docker.remove_volume(&v.name))).await {
                r?;
            }
            removed_volumes = vols.len();
        }
        Ok(DownReport {
            stack: stack.to_string(),
            containers: containers.len(),
            networks: networks.len(),
            volumes: removed_volumes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// One line per service of the manifest (plus containers of the stack it no longer has).
    pub async fn status(&self, manifest: &Manifest) -> Result<Vec<ServiceStatus>> {
        let observed = self.docker.list_containers(&manifest.stack).await?;
        let network = plan::network_name(&manifest.stack);
        let rows = manifest.services.iter().map(|s| {
            let c = observed.iter().find(|c| c.service == s.name);
            self.status_row(&s.name, Some(s), c, &network, Some(manifest))
        });
        let mut out = join_all(rows).await;
        // A job that fixtures wait for and that never ran because the data came from a
        // snapshot is part of that data service's state.
        for f in &manifest.fixtures {
            let data_ready = out.iter().any(|r| r.service == f.service && r.ready);
            for row in out.iter_mut().filter(|r| r.container.is_none() && f.after.contains(&r.service)) {
                if data_ready {
                    row.state = "in snapshot".into();
                    row.ready = true;
                    row.detail = Some(format!("contained in `{}`'s loaded data", f.service));
                }
            }
        }
        let extra = observed.iter().filter(|c| manifest.service(&c.service).is_none());
        for c in extra {
            out.push(self.status_row(&c.service, None, Some(c), &network, None).await);
        }
        Ok(out)
    }

    async fn status_row(
        &self,
        name: &str,
        service: Option<&Service>,
        c: Option<&ObservedContainer>,
        network: &str,
        manifest: Option<&Manifest>,
    ) -> ServiceStatus {
        let Some(c) = c else {
            return ServiceStatus {
                service: name.to_string(),
                container: None,
                state: "missing".into(),
                ready: false,
                ports: vec![],
                image: service.and_then(|s| s.image.clone()).unwrap_or_default(),
                uptime_seconds: None,
                detail: None,
            };
        };
        let state = match (c.state, c.exit_code) {
            (RunState::Running, _) => "running".to_string(),
            (RunState::Exited, Some(code)) => format!("exited ({code})"),
            (RunState::Exited, None) => "exited".to_string(),
            (RunState::Created, _) => "created".to_string(),
            (RunState::Other, _) => "other".to_string(),
        };
        let is_job = service.is_some_and(|s| s.job);
        let (ready, detail) = match (c.state, service.and_then(|s| s.ready.as_ref())) {
            (RunState::Exited, _) if is_job => (c.exit_code == Some(0), None),
            (RunState::Running, Some(r)) => match probes::probe_once(self.docker.as_ref(), &c.id, network, &r.probe).await {
                Ok(()) => (true, None),
                Err(e) => (false, Some(e)),
            },
            (RunState::Running, None) => (true, None),
            _ => (false, None),
        };
        // A data service is ready only with its fixtures completely loaded.
        let (ready, detail) = match (ready, service.map(|s| s.name.as_str()).and_then(|n| manifest.and_then(|m| m.fixtures_for(n)))) {
            (true, Some(_)) => {
                if self.loaded.lock().unwrap().contains(&c.id) {
                    (true, detail)
                } else {
                    match self.docker.exec(&c.id, &data::load_marker_check()).await {
                        Ok((0, _)) => {
                            self.loaded.lock().unwrap().insert(c.id.clone());
                            (true, detail)
                        }
                        _ => (false, Some("fixtures not loaded".to_string())),
                    }
                }
            }
            other => (other.0, detail),
        };
        let uptime_seconds = match c.state {
            RunState::Running => self
                .docker
                .container_status(&c.id, network)
                .await
                .ok()
                .and_then(|s| s.started_at)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0) as u64),
            _ => None,
        };
        let mut ports: Vec<String> = c
            .ports
            .iter()
            .map(|(ip, host, container, proto)| {
                let ip = if ip.is_empty() || ip == "0.0.0.0" || ip == "::" { String::new() } else { format!("{ip}:") };
                format!("{ip}{host}->{container}/{proto}")
            })
            .collect();
        ports.sort();
        ports.dedup();
        ServiceStatus {
            service: name.to_string(),
            container: Some(c.name.clone()),
            state,
            ready,
            ports,
            image: c.image.clone(),
            uptime_seconds,
            detail,
        }
    }
}

/// Host ports the stack publishes that something else already holds. Ports held by this
/// stack's own containers are fine: `up` either keeps those containers or replaces them.
fn preflight_ports(manifest: &Manifest, observed: &[ObservedContainer]) -> Result<()> {
    let mut problems = Vec::new();
    for s in &manifest.services {
        for p in &s.ports {
            let Some(port) = p.host_port else { continue };
            let ours = observed.iter().any(|c| c.ports.iter().any(|(_, hp, _, proto)| *hp == port && proto == p.protocol.as_str()));
            if ours {
                continue;
            }
            let ip = p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
            let free = match p.protocol {
                Protocol::Tcp => std::net::TcpListener::bind((ip.as_str(), port)).is_ok(),
                Protocol::Udp => std::net::UdpSocket::bind((ip.as_str(), port)).is_ok(),
            };
            if !free {
                problems.push(format!(
                    "host port {port}/{} for service `{}` is already in use\n  = help: stop whatever listens on it (`ss -ltnp 'sport = :{port}'`), or change the host port in the manifest",
                    p.protocol.as_str(),
                    s.name
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Preflight(problems))
    }
}
