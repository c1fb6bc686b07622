//! `up`: the stack's network, volumes and orphans first, then one pipeline per service, all
//! running concurrently. A pipeline goes through its phases in order: image, fixture inputs
//! (data services: after the images of the jobs their load waits for), wait for dependencies
//! (and for the fixtures of every data service further down), decide, create and start, probe
//! (or wait for a job's exit), migrations, fixtures, and finally the signal its dependents
//! wait for.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::future::join_all;
use tokio::sync::watch;

use super::failure::Failure;
use super::fixtures::{fixture_inputs, mounted_content, FixtureInputs, Mounts, SnapshotDone, SnapshotQueue};
use super::images::{self, Builds, ResolvedImage};
use super::{FixtureReport, Orchestrator, Outcome, Phase, ServiceError, ServiceReport, UpReport, STOP_GRACE_SECS};
use crate::data;
use crate::docker::{ContainerEngine, ObservedContainer};
use crate::error::{Error, Result};
use crate::manifest::{Fixtures, Manifest, Protocol, Service};
use crate::plan::{self, Action};
use crate::probes;
use crate::secrets::Redactor;

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

type SignalTx = watch::Sender<Option<DepSignal>>;
type SignalRx = watch::Receiver<Option<DepSignal>>;
/// A service's resolved image ID, sent as soon as it is known (`Some(None)`: it has none).
type ImageTx = watch::Sender<Option<Option<String>>>;
type ImageRx = watch::Receiver<Option<Option<String>>>;

/// The signal a service sent, or `None` when it ended without one.
async fn wait_signal(mut rx: SignalRx) -> Option<DepSignal> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => *v,
        Err(_) => None,
    }
}

/// The image ID a service resolved, or `None` when it has none (its image failed).
async fn wait_image(mut rx: ImageRx) -> Option<String> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().flatten(),
        Err(_) => None,
    }
}

/// Everything one service's pipeline works with.
struct ServiceRun<'a> {
    manifest: &'a Manifest,
    service: &'a Service,
    /// Its container from before this run, if any.
    current: Option<ObservedContainer>,
    network: &'a str,
    redactor: &'a Redactor,
    /// The builds of this run, each done once for every service that shares it.
    builds: &'a Builds,
    /// Each dependency with the signal this service waits for (see [`plan::waits`]): `ready`
    /// when the dependency's fixture load waits for this service, `done` otherwise.
    deps: Vec<(String, SignalRx)>,
    /// Data services further down the dependencies whose fixtures this service waits for
    /// (their `done`), though it does not depend on them directly.
    data_deps: Vec<(String, SignalRx)>,
    /// Data services: the jobs their fixture load waits for (`after`).
    after_jobs: Vec<(String, SignalRx)>,
    /// Data services: the images of those jobs, part of the snapshot key.
    after_images: Vec<(String, ImageRx)>,
    /// Sent by a data service when its probe passed, before it loads fixtures.
    ready_signal: SignalTx,
    /// Sent once its container runs (created and started, or kept).
    started_signal: SignalTx,
    /// Sent as soon as the service's image is resolved.
    image_signal: ImageTx,
    /// Where a data service hands the snapshot it saves in the background.
    snapshots: SnapshotQueue<'a>,
}

/// What the service's container must be.
struct Target<'a> {
    /// The spec hash; for a data service combined with its snapshot key.
    hash: String,
    /// A data service's fixtures and what is known about them before it starts.
    data: Option<(&'a Fixtures, FixtureInputs)>,
    /// A fixture snapshot to start from, when one exists for the key.
    snapshot_image: Option<String>,
    /// The data directory of that snapshot's PostgreSQL when it is not the image's own
    /// (`PGDATA` of the restored container; see `pg_snapshot`).
    snapshot_pgdata: Option<String>,
    /// What the hash covers, for the container's spec label (`plan::drift`).
    fields: plan::drift::SpecFields,
}

/// The container this run uses.
struct Started {
    id: String,
    /// When its creation began (restore → ready is measured from here).
    created_at: Instant,
    /// Started from a fixture snapshot (its data is already in place).
    restored: bool,
    /// A stopped container with an unchanged spec, started again by this run.
    restarted: bool,
}

/// How waiting for the dependencies ended.
enum Dependencies {
    /// All ready; `changed` when any was (re)created in this run.
    Ready {
        changed: bool,
    },
    Failed {
        dependency: String,
    },
    /// A data service further down did not get its fixtures in place.
    NotLoaded {
        data_service: String,
    },
    /// This job's result is already in the named data service's restored or kept data.
    InDataOf {
        data_service: String,
    },
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Brings the stack to the state the manifest describes.
    pub async fn up(&self, manifest: &Manifest) -> Result<UpReport> {
        self.up_with(manifest, true, &[]).await
    }

    /// `up` as if the containers `gone` (being removed by `rebuild`) were not there.
    pub(super) async fn up_excluding(&self, manifest: &Manifest, gone: &[String]) -> Result<UpReport> {
        self.up_with(manifest, true, gone).await
    }

    /// `up SERVICE...`: brings up the services of `manifest`, a part of the stack's manifest
    /// (`plan::subset` of the named services and what they need); the stack's other
    /// containers are left as they are, not removed as orphans.
    pub async fn up_only(&self, manifest: &Manifest) -> Result<UpReport> {
        self.up_with(manifest, false, &[]).await
    }

    async fn up_with(&self, manifest: &Manifest, remove_orphans: bool, gone: &[String]) -> Result<UpReport> {
        let started = Instant::now();
        if let Some(cycle) = plan::wait_cycle(manifest) {
            return Err(Error::Preflight(vec![format!(
                "{cycle}: no start order can satisfy this\n  = help: take the job out of the load's `after` list, or drop the dependency that makes it wait for the load"
            )]));
        }
        let redactor = Redactor::for_manifest(manifest);
        let mut observed = self.docker.list_containers(&manifest.stack).await?;
        observed.retain(|c| !gone.contains(&c.id));
        // Plain containers beside a Swarm deployment's tasks would answer to the same names.
        if observed.iter().any(|c| c.labels.contains_key(crate::docker::labels::SWARM_TASK)) {
            let stack = &manifest.stack;
            return Err(Error::Preflight(vec![format!(
                "stack `{stack}` is deployed on Docker Swarm (`deploy --swarm`)\n  = help: `stagectl deploy --swarm` deploys it again; `stagectl -p {stack} down` removes it before `up`"
            )]));
        }
        // From here on the manifest has its `auto` host ports filled in.
        let manifest = &super::ports::allocate(self.docker.as_ref(), manifest, &observed).await?;
        preflight_ports(manifest, &observed)?;

        let labels = plan::stack_labels(&manifest.stack);
        let network = plan::network_name(&manifest.stack);
        self.docker.ensure_network(&network, &labels).await?;
        let volume_names: Vec<String> = plan::named_volumes(manifest).iter().map(|v| plan::volume_name(&manifest.stack, v)).collect();
        for r in join_all(volume_names.iter().map(|v| self.docker.ensure_volume(v, &labels))).await {
            r?;
        }
        let orphans = if remove_orphans { plan::orphans(manifest, &observed) } else { vec![] };
        let grace =
            |id: &String| observed.iter().find(|c| &c.id == id).map_or(STOP_GRACE_SECS, |c| plan::stop_grace_of(c, STOP_GRACE_SECS));
        for r in join_all(orphans.iter().map(|id| self.docker.remove_container(id, grace(id)))).await {
            r?;
        }

        // Every service is one pipeline: image, then its dependencies, then start and probe,
        // then (data services) fixtures. Pipelines run concurrently, so the database starts
        // while the app image builds. Each service signals twice: `ready` (probe passed) for the
        // jobs its fixtures wait for (migrations), `done` (data loaded) for everyone else.
        // A data service's snapshot key holds the image IDs of the jobs its load waits for:
        // every pipeline sends its image ID as soon as it has it, before it waits for anything,
        // so waiting for those IDs cannot deadlock.
        let mut ready: BTreeMap<&str, (SignalTx, SignalRx)> = BTreeMap::new();
        let mut done: BTreeMap<&str, (SignalTx, SignalRx)> = BTreeMap::new();
        let mut images: BTreeMap<&str, (ImageTx, ImageRx)> = BTreeMap::new();
        // `started`: the container runs (for dependents with the condition `started`).
        let mut started_signals: BTreeMap<&str, (SignalTx, SignalRx)> = BTreeMap::new();
        let builds = Builds::new(manifest);
        let (snapshot_queue, snapshots_pending) = tokio::sync::mpsc::unbounded_channel();
        for s in &manifest.services {
            started_signals.insert(&s.name, watch::channel(None));
            ready.insert(&s.name, watch::channel(None));
            done.insert(&s.name, watch::channel(None));
            images.insert(&s.name, watch::channel(None));
        }
        let runs = manifest
            .services
            .iter()
            .map(|service| {
                let (mut deps, mut data_deps) = (vec![], vec![]);
                for w in plan::waits(manifest, service) {
                    let signal = match w.signal {
                        plan::Signal::Started => &started_signals[w.service.as_str()],
                        plan::Signal::Ready => &ready[w.service.as_str()],
                        plan::Signal::Done => &done[w.service.as_str()],
                    };
                    let to = if w.direct { &mut deps } else { &mut data_deps };
                    to.push((w.service, signal.1.clone()));
                }
                let after = manifest.fixtures_for(&service.name).map(|f| f.after.as_slice()).unwrap_or_default();
                let run = ServiceRun {
                    manifest,
                    service,
                    current: plan::current_container(&manifest.stack, &service.name, &observed).cloned(),
                    network: &network,
                    redactor: &redactor,
                    builds: &builds,
                    deps,
                    data_deps,
                    after_jobs: after.iter().map(|j| (j.clone(), done[j.as_str()].1.clone())).collect(),
                    after_images: after.iter().map(|j| (j.clone(), images[j.as_str()].1.clone())).collect(),
                    ready_signal: ready[service.name.as_str()].0.clone(),
                    started_signal: started_signals[service.name.as_str()].0.clone(),
                    image_signal: images[service.name.as_str()].0.clone(),
                    snapshots: snapshot_queue.clone(),
                };
                let done = done[service.name.as_str()].0.clone();
                async move {
                    let report = self.run_service(&run).await;
                    let signal = DepSignal {
                        ok: matches!(report.outcome, Outcome::Ready | Outcome::Completed),
                        changed: report.action != Action::Keep,
                        data_present: false,
                    };
                    if run.image_signal.borrow().is_none() {
                        let _ = run.image_signal.send(Some(None));
                    }
                    if run.ready_signal.borrow().is_none() {
                        let _ = run.ready_signal.send(Some(signal));
                    }
                    if run.started_signal.borrow().is_none() {
                        let _ = run.started_signal.send(Some(signal));
                    }
                    let _ = done.send(Some(signal));
                    report
                }
            })
            .collect::<Vec<_>>();
        drop(snapshot_queue);
        let (services, ready_seconds) = self.pipelines_and_snapshots(runs, started, snapshots_pending).await?;
        let ok = services.iter().all(|r| matches!(r.outcome, Outcome::Ready | Outcome::Completed));
        let changed = !orphans.is_empty() || services.iter().any(|r| r.action != Action::Keep);
        let ports = published_ports(manifest);
        Ok(UpReport {
            stack: manifest.stack.clone(),
            ok,
            seconds: started.elapsed().as_secs_f64(),
            ready_seconds,
            changed,
            services,
            ports,
        })
    }

    /// Runs the services' pipelines while the snapshots they hand over are saved in the
    /// background: their reports (each saved snapshot recorded in its service's) and the
    /// seconds from `started` until the last pipeline ended (every service ready or failed).
    pub(super) async fn pipelines_and_snapshots<'a>(
        &self,
        runs: Vec<impl std::future::Future<Output = ServiceReport>>,
        started: Instant,
        pending: tokio::sync::mpsc::UnboundedReceiver<super::fixtures::PendingSnapshot<'a>>,
    ) -> Result<(Vec<ServiceReport>, f64)> {
        let pipelines = async {
            let services = join_all(runs).await;
            (services, started.elapsed().as_secs_f64())
        };
        let ((mut services, ready_seconds), saved) = tokio::join!(pipelines, self.background_snapshots(pending));
        for done in saved {
            record_snapshot(&mut services, done)?;
        }
        Ok((services, ready_seconds))
    }

    /// Runs the snapshots the data services hand over, concurrently with the pipelines, until
    /// every pipeline is done (the queue closes) and every snapshot has ended.
    async fn background_snapshots<'a>(
        &self,
        mut queue: tokio::sync::mpsc::UnboundedReceiver<super::fixtures::PendingSnapshot<'a>>,
    ) -> Vec<SnapshotDone> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let mut running = FuturesUnordered::new();
        let mut done = Vec::new();
        let mut open = true;
        loop {
            tokio::select! {
                next = queue.recv(), if open => match next {
                    Some(snapshot) => running.push(snapshot),
                    None => {
                        open = false;
                        if !running.is_empty() {
                            self.reporter.note(&format!("stack ready; waiting for {} fixture snapshot(s) to be saved", running.len()));
                        }
                    }
                },
                Some(finished) = running.next(), if !running.is_empty() => done.push(finished),
                else => break,
            }
        }
        done
    }

    async fn run_service<'a>(&'a self, run: &ServiceRun<'a>) -> ServiceReport {
        let mut report = ServiceReport::pending(run.service);
        match self.pipeline(run, &mut report).await {
            Ok(()) => report,
            Err(failure) => self.fail(report, failure, run.redactor).await,
        }
    }

    /// The phases in order. A phase hands its result to the next, or ends the pipeline early:
    /// with `Ok` when the report already holds the result (skipped, kept), or with a failure.
    async fn pipeline<'a>(&'a self, run: &ServiceRun<'a>, report: &mut ServiceReport) -> std::result::Result<(), Failure> {
        let image =
            images::ensure_image(self.docker.as_ref(), run.manifest, run.service, run.builds, self.reporter.as_ref(), run.redactor).await?;
        report.image = image.reference.clone();
        report.image_source = image.how.to_string();
        report.image_seconds = image.seconds;
        let _ = run.image_signal.send(Some(Some(image.id.clone())));
        let target = self.target(run, &image).await?;

        let dependency_changed = match self.wait_for_dependencies(run).await {
            Dependencies::Ready { changed } => changed,
            Dependencies::Failed { dependency } => {
                self.skip(run, report, format!("not started: dependency `{dependency}` failed"));
                return Ok(());
            }
            Dependencies::NotLoaded { data_service } => {
                self.skip(run, report, format!("not started: `{data_service}`'s fixtures are not loaded"));
                return Ok(());
            }
            Dependencies::InDataOf { data_service } => {
                // E.g. migrations whose result is already in the restored data.
                report.action = Action::Keep;
                report.outcome = Outcome::Completed;
                let kept = kept_volumes_note(run.service);
                self.reporter.phase(&run.service.name, Phase::Kept, &format!("contained in `{data_service}`'s loaded data{kept}"));
                return Ok(());
            }
        };
        let (action, restarted) = self.decide(run, &target, dependency_changed).await;
        report.action = action.clone();

        let mut container = self.replace_or_keep(run, &image, &target, &action).await?;
        container.restarted = restarted;
        let _ = run.started_signal.send(Some(DepSignal { ok: true, changed: action != Action::Keep, data_present: false }));
        let started = Instant::now();
        if run.service.job {
            return self.complete_job(run, report, &container.id, &action, started).await;
        }
        let action = match self.wait_until_ready(run, &image, &target, &action, &mut container).await {
            Ok(()) => action,
            // A kept container that stopped or vanished while probed was taken by another
            // process: a removal the engine carried on with after its `down` was killed (it
            // lists a container being force-removed as running). What it held is gone: start
            // anew, once.
            Err(_) if action == Action::Keep && self.stopped(&container.id, run.network).await => {
                let action = Action::Recreate("the kept container was stopped or removed by another process".into());
                report.action = action.clone();
                container = self.replace_or_keep(run, &image, &target, &action).await?;
                self.wait_until_ready(run, &image, &target, &action, &mut container).await?;
                action
            }
            Err(failure) => return Err(failure),
        };
        if let Some(m) = run.manifest.migrations.iter().find(|m| m.service == run.service.name && m.job.is_none()) {
            report.migrations_applied = self
                .apply_migrations(run.manifest, m, &container.id, run.network)
                .await
                .map_err(|e| Failure::with_logs(e, &container.id))?;
        }
        if let Some((fixtures, inputs)) = &target.data {
            let mut fixtures = self.fixtures_in_place(run, fixtures, inputs, &container, &action).await?;
            if container.restored {
                fixtures.restore_to_ready_seconds = Some(container.created_at.elapsed().as_secs_f64());
            }
            report.fixtures = Some(fixtures);
        }

        let secs = started.elapsed().as_secs_f64();
        // A kept container may have been restarted by its `restart` policy since it was made:
        // the run (and so the history) says how often. Only a policy restarts containers.
        if run.service.restart != crate::manifest::Restart::No {
            report.restarts = self.docker.container_status(&container.id, run.network).await.map_or(0, |s| s.restart_count);
        }
        report.outcome = Outcome::Ready;
        if action == Action::Keep {
            self.reporter.phase(&run.service.name, Phase::Kept, "unchanged, ready");
        } else {
            report.ready_seconds = Some(secs);
            self.reporter.phase(&run.service.name, Phase::Ready, &format!("ready in {secs:.2}s"));
        }
        Ok(())
    }

    fn skip(&self, run: &ServiceRun<'_>, report: &mut ServiceReport, message: String) {
        self.reporter.phase(&run.service.name, Phase::Skipped, &message);
        report.outcome = Outcome::Skipped;
        report.message = Some(message);
    }

    /// A data service's data: tells the jobs its load waits for (migrations) that it is ready,
    /// waits for them, then loads its fixtures (or finds them restored or kept).
    async fn fixtures_in_place<'a>(
        &'a self,
        run: &ServiceRun<'a>,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        container: &Started,
        action: &Action,
    ) -> std::result::Result<FixtureReport, Failure> {
        let data_present = container.restored || *action == Action::Keep;
        let _ = run.ready_signal.send(Some(DepSignal { ok: true, changed: *action != Action::Keep, data_present }));
        // A snapshot's base backup is taken while the jobs the load waits for and the load run.
        let staging = async {
            match data_present {
                true => None,
                false => self.stage_snapshot(run.manifest, fixtures, inputs, &container.id).await,
            }
        };
        let jobs_then_load = async {
            for (job, rx) in &run.after_jobs {
                if !matches!(wait_signal(rx.clone()).await, Some(DepSignal { ok: true, .. })) {
                    return Err(Failure::from(ServiceError::FixtureJobFailed { job: job.clone() }));
                }
            }
            let loaded = self.load_fixtures(run.manifest, fixtures, inputs, &container.id, action, container.restored).await;
            loaded.map_err(|e| Failure::with_logs(e, &container.id))
        };
        let (staged, loaded) = tokio::join!(staging, jobs_then_load);
        let load = match loaded {
            Ok(Ok(load)) => load,
            Ok(Err(report)) => {
                self.discard_staged(run.manifest, staged).await;
                return Ok(report);
            }
            Err(failure) => {
                self.discard_staged(run.manifest, staged).await;
                return Err(failure);
            }
        };
        let report = self.snapshot_after_load(run.manifest, fixtures, inputs, &container.id, load, staged, &run.snapshots).await;
        report.map_err(|e| Failure::with_logs(e, &container.id))
    }

    /// The spec hash and, for a data service, its fixture inputs and snapshot. A data
    /// service's container is defined by its spec *and* its data: the hash covers the snapshot
    /// key, so a container restored from a snapshot and one loaded from files are
    /// interchangeable, and any change to the inputs replaces the container.
    async fn target<'a>(&self, run: &ServiceRun<'a>, image: &ResolvedImage) -> std::result::Result<Target<'a>, Failure> {
        let secrets = run.manifest.secret_values();
        let fields = |inputs: Option<String>| plan::drift::spec_fields(&run.manifest.stack, run.service, &image.id, inputs, &secrets);
        let mut target = Target {
            hash: plan::spec_hash(&run.manifest.stack, run.service, &image.id),
            data: None,
            snapshot_image: None,
            snapshot_pgdata: None,
            fields: fields(None),
        };
        if run.service.job {
            // What a job leaves behind depends on the content of its inputs too: new migration
            // files in a read-only mount re-run it.
            if let Some(content) = mounted_content(run.service, Mounts::ReadOnly)? {
                target.hash = plan::combine_hash(&target.hash, &content);
                target.fields = fields(Some(content));
            }
        }
        let Some(fixtures) = run.manifest.fixtures_for(&run.service.name) else { return Ok(target) };
        let job_images = self.job_images(run).await?;
        // Data services are never jobs: nothing was combined into `target.hash` yet.
        let snapshot_hash = plan::snapshot_spec_hash(run.manifest, run.service, &image.id);
        let inputs = fixture_inputs(run.manifest, fixtures, &image.id, &snapshot_hash, &job_images)?;
        target.hash = plan::combine_hash(&target.hash, &inputs.key);
        target.fields = fields(Some(inputs.key.clone()));
        if fixtures.snapshot {
            target.snapshot_image = self.docker.image_id(&inputs.snapshot_ref).await?;
            if let Some(id) = &target.snapshot_image {
                let key_label = format!("{}={}", data::snapshot::KEY_LABEL, inputs.key);
                let images = self.docker.list_images(&key_label).await?;
                let labels = images.iter().find(|i| &i.id == id).map(|i| &i.labels);
                target.snapshot_pgdata = labels.and_then(|l| l.get(super::pg_snapshot::PGDATA_LABEL)).cloned();
            }
        }
        target.data = Some((fixtures, inputs));
        Ok(target)
    }

    /// The image IDs of the jobs a data service's load waits for: part of its snapshot key
    /// (a rebuilt image with the same tag has a new ID and may hold new migrations).
    async fn job_images(&self, run: &ServiceRun<'_>) -> std::result::Result<BTreeMap<String, String>, Failure> {
        let pending: Vec<&str> = run.after_images.iter().filter(|(_, rx)| rx.borrow().is_none()).map(|(j, _)| j.as_str()).collect();
        if !pending.is_empty() {
            let detail = format!("for the image of {} (part of the fixture snapshot key)", pending.join(", "));
            self.reporter.phase(&run.service.name, Phase::Waiting, &detail);
        }
        let mut ids = BTreeMap::new();
        for (job, rx) in &run.after_images {
            let Some(id) = wait_image(rx.clone()).await else { return Err(ServiceError::FixtureJobFailed { job: job.clone() }.into()) };
            ids.insert(job.clone(), id);
        }
        Ok(ids)
    }

    async fn wait_for_dependencies(&self, run: &ServiceRun<'_>) -> Dependencies {
        if !run.deps.is_empty() || !run.data_deps.is_empty() {
            let names: Vec<String> =
                run.deps.iter().map(|(d, _)| d.clone()).chain(run.data_deps.iter().map(|(d, _)| format!("{d}'s fixtures"))).collect();
            self.reporter.phase(&run.service.name, Phase::Waiting, &format!("for {}", names.join(", ")));
        }
        let mut changed = false;
        let mut in_data_of = None;
        for (dep, rx) in &run.deps {
            match wait_signal(rx.clone()).await {
                Some(DepSignal { ok: true, changed: dep_changed, data_present }) => {
                    changed |= dep_changed;
                    if data_present && run.manifest.fixtures_for(dep).is_some_and(|f| f.after.contains(&run.service.name)) {
                        in_data_of = Some(dep.clone());
                    }
                }
                _ => return Dependencies::Failed { dependency: dep.clone() },
            }
        }
        for (data_service, rx) in &run.data_deps {
            if !matches!(wait_signal(rx.clone()).await, Some(DepSignal { ok: true, .. })) {
                return Dependencies::NotLoaded { data_service: data_service.clone() };
            }
        }
        match in_data_of {
            Some(data_service) => Dependencies::InDataOf { data_service },
            None => Dependencies::Ready { changed },
        }
    }

    /// Keep, create or recreate (see [`plan::decide`]); a kept data service must also hold a
    /// complete load, else it is replaced. A stopped long-running container whose spec is
    /// unchanged (`stagectl stop`) is started again and kept (`true`: restarted), unless it is
    /// a data service, which is recreated with its fixtures.
    async fn decide(&self, run: &ServiceRun<'_>, target: &Target<'_>, dependency_changed: bool) -> (Action, bool) {
        let mut action = plan::decide(run.service, &target.hash, run.current.as_ref(), dependency_changed);
        let mut restarted = false;
        if let (Action::Recreate(_), Some(c), Some((_, inputs))) = (&action, &run.current, &target.data) {
            if let Some(why) = inputs.files_changed(&run.service.name, c) {
                return (Action::Recreate(why), false);
            }
        }
        if let (Action::Recreate(_), Some(c)) = (&action, &run.current) {
            // Not a data service: its data may have lived in memory only (see `restart`).
            if target.data.is_none() && plan::restartable(run.service, &target.hash, c) {
                self.reporter.phase(&run.service.name, Phase::Starting, "stopped, spec unchanged: starting it again");
                if self.docker.start_container(&c.id).await.is_ok() {
                    action = Action::Keep;
                    restarted = true;
                }
            }
        }
        if let (Action::Keep, Some(c), Some(_)) = (&action, &run.current, &target.data) {
            if !matches!(self.docker.exec(&c.id, &data::load_marker_check()).await, Ok((0, _))) {
                return (Action::Recreate("fixtures were not loaded completely".into()), false);
            }
        }
        (action, restarted)
    }

    /// The kept container, or a new one (from the fixture snapshot when there is one) after
    /// the old one is removed.
    async fn replace_or_keep(
        &self,
        run: &ServiceRun<'_>,
        image: &ResolvedImage,
        target: &Target<'_>,
        action: &Action,
    ) -> std::result::Result<Started, Failure> {
        if let (Action::Keep, Some(c)) = (action, &run.current) {
            return Ok(Started { id: c.id.clone(), created_at: Instant::now(), restored: false, restarted: false });
        }
        if let Some(old) = &run.current {
            let why = match action {
                Action::Recreate(reason) => reason,
                _ => "replacing",
            };
            self.reporter.phase(&run.service.name, Phase::Removing, why);
            self.docker.remove_container(&old.id, plan::stop_grace_of(old, STOP_GRACE_SECS)).await?;
        }
        let (run_image, restored) = match &target.snapshot_image {
            Some(snapshot) => (snapshot.as_str(), true),
            None => (image.id.as_str(), false),
        };
        let created_at = Instant::now();
        let id = self.create_and_start(run, run_image, &image.reference, target, restored).await?;
        Ok(Started { id, created_at, restored, restarted: false })
    }

    async fn create_and_start(
        &self,
        run: &ServiceRun<'_>,
        image_id: &str,
        reference: &str,
        target: &Target<'_>,
        from_snapshot: bool,
    ) -> std::result::Result<String, Failure> {
        let name = run.service.name.as_str();
        let detail = if from_snapshot { format!("{reference} (from fixture snapshot)") } else { reference.to_string() };
        self.reporter.phase(name, Phase::Creating, &detail);
        let mut spec = plan::container_spec(run.manifest, run.service, image_id, reference, &target.hash);
        spec.labels.insert(plan::drift::SPEC_LABEL.to_string(), plan::drift::spec_label(&target.fields));
        if let Some((_, inputs)) = &target.data {
            spec.labels.insert(crate::docker::labels::FIXTURE_FILES.to_string(), inputs.files_label());
        }
        if let (true, Some(dir)) = (from_snapshot, &target.snapshot_pgdata) {
            spec.env.retain(|e| !e.starts_with("PGDATA="));
            spec.env.push(format!("PGDATA={dir}"));
        }
        let id = self.docker.create_container(&spec).await?;
        self.reporter.phase(name, Phase::Starting, "");
        self.docker.start_container(&id).await.map_err(|e| Failure::with_logs(e, &id))?;
        Ok(id)
    }

    /// A job is done when it exits 0; a kept one completed in an earlier run.
    async fn complete_job(
        &self,
        run: &ServiceRun<'_>,
        report: &mut ServiceReport,
        id: &str,
        action: &Action,
        started: Instant,
    ) -> std::result::Result<(), Failure> {
        let name = run.service.name.as_str();
        if *action == Action::Keep {
            self.reporter.phase(name, Phase::Kept, "completed earlier (exit 0)");
            report.outcome = Outcome::Completed;
            return Ok(());
        }
        self.reporter.phase(name, Phase::Probing, "running to completion");
        match self.docker.wait_exit(id).await.map_err(|e| Failure::with_logs(e, id))? {
            0 => {
                let secs = started.elapsed().as_secs_f64();
                self.reporter.phase(name, Phase::Completed, &format!("exit 0 in {secs:.2}s"));
                report.outcome = Outcome::Completed;
                report.ready_seconds = Some(secs);
                Ok(())
            }
            code => Err(Failure::with_logs(ServiceError::JobFailed { code }, id)),
        }
    }

    /// Probes until ready (kept services too: nothing is reported ready that was not probed
    /// in this run). Without a probe, see [`Self::settle`].
    async fn wait_until_ready(
        &self,
        run: &ServiceRun<'_>,
        image: &ResolvedImage,
        target: &Target<'_>,
        action: &Action,
        container: &mut Started,
    ) -> std::result::Result<(), Failure> {
        let name = run.service.name.as_str();
        let Some(readiness) = &run.service.ready else {
            // A container started again by this run must settle like a new one.
            let action = if container.restarted { &Action::Recreate("started again".into()) } else { action };
            return self.settle(run, action, &container.id).await;
        };
        if *action != Action::Keep {
            self.reporter.phase(name, Phase::Probing, &readiness.probe.describe());
        }
        let mut probe = probes::wait_ready(self.docker.as_ref(), &container.id, run.network, readiness).await;
        if let (Err(why), true) = (&probe, container.restored) {
            // A snapshot that does not come up is treated as corrupt: fall back to a clean
            // start and a full load.
            self.reporter.phase(
                name,
                Phase::Loading,
                &format!("warning: snapshot did not become ready ({why}); falling back to a full load"),
            );
            let _ = self.docker.remove_container(&container.id, 0).await;
            container.restored = false;
            container.id = self.create_and_start(run, &image.id, &image.reference, target, false).await?;
            probe = probes::wait_ready(self.docker.as_ref(), &container.id, run.network, readiness).await;
        }
        probe.map(|_| ()).map_err(|e| Failure::with_logs(e, &container.id))
    }
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Whether container `id` no longer runs (exited, or gone).
    async fn stopped(&self, id: &str, network: &str) -> bool {
        self.docker.container_status(id, network).await.map_or(true, |s| !s.running)
    }

    /// Without a probe, running is all we can know, and right after the start a process that
    /// fails at once may not have exited yet: a started service is ready when it is still
    /// running, not restarted, [`super::SETTLE_WINDOW`] after its start. An exit within the
    /// window is seen at once (the wait for its exit is raced against the window). A kept
    /// container has been running since an earlier run: it only has to be running now.
    async fn settle(&self, run: &ServiceRun<'_>, action: &Action, id: &str) -> std::result::Result<(), Failure> {
        let failed = |e: ServiceError| Failure::with_logs(e, id);
        let status = self.docker.container_status(id, run.network).await.map_err(|e| Failure::with_logs(e, id))?;
        if !status.running {
            return Err(failed(ServiceError::Exited { code: status.exit_code }));
        }
        if *action == Action::Keep {
            return Ok(());
        }
        let window = self.settle;
        self.reporter.phase(&run.service.name, Phase::Probing, &format!("no probe: must keep running for {:.2}s", window.as_secs_f64()));
        if let Ok(exit) = tokio::time::timeout(window, self.docker.wait_exit(id)).await {
            let code = exit.map_err(|e| Failure::with_logs(e, id))?;
            return Err(failed(ServiceError::Exited { code: Some(code) }));
        }
        let after = self.docker.container_status(id, run.network).await.map_err(|e| Failure::with_logs(e, id))?;
        if !after.running {
            return Err(failed(ServiceError::Exited { code: after.exit_code }));
        }
        if after.started_at != status.started_at {
            return Err(failed(ServiceError::Restarted { within: window }));
        }
        Ok(())
    }
}

/// A snapshot saved in the background, into its service's report: an engine lost meanwhile
/// fails the run (exit 3); any other failure costs speed next time, not correctness now.
fn record_snapshot(services: &mut [ServiceReport], done: SnapshotDone) -> Result<()> {
    let Some(fixtures) = services.iter_mut().find(|r| r.service == done.service).and_then(|r| r.fixtures.as_mut()) else { return Ok(()) };
    fixtures.snapshot_seconds = Some(done.seconds);
    match done.result {
        Ok(_) => fixtures.snapshot = "miss".into(),
        Err(super::fixtures::FixtureError::Docker(lost @ Error::DockerUnreachable { .. })) => return Err(lost),
        Err(e) => {
            fixtures.snapshot = "failed".into();
            fixtures.snapshot_error = Some(e.to_string());
        }
    }
    Ok(())
}

/// The host ports the manifest publishes where the number is known before Docker picks.
fn published_ports(manifest: &Manifest) -> Vec<super::PublishedPort> {
    let mut out = Vec::new();
    for s in &manifest.services {
        for p in &s.ports {
            let Some(host_port) = p.host_port else { continue };
            out.push(super::PublishedPort {
                service: s.name.clone(),
                host_ip: p.host_ip.clone(),
                host_port,
                container_port: p.container_port,
                protocol: p.protocol.as_str().to_string(),
                auto: p.auto,
            });
        }
    }
    out
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

/// A job whose result is taken from a data service's snapshot is not run, but what it wrote
/// into the stack's named volumes (an installer's config) is not in the snapshot: say so
/// (the volume holds whatever the job's last run left, nothing after `down --volumes`).
fn kept_volumes_note(job: &crate::manifest::Service) -> String {
    let names: Vec<String> = job
        .volumes
        .iter()
        .filter(|v| !v.read_only)
        .filter_map(|v| match &v.source {
            crate::manifest::VolumeSource::Named(n) => Some(format!("`{n}`")),
            crate::manifest::VolumeSource::Bind(_) => None,
        })
        .collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => format!("; volume {one} it writes is not in the snapshot: it keeps what the job's last run left there, if anything"),
        many => format!(
            "; volumes {} it writes are not in the snapshot: they keep what the job's last run left there, if anything",
            many.join(", ")
        ),
    }
}
