//! The deployment as a whole: every service's pipeline runs concurrently and waits only for
//! what it needs ([`plan::waits`], as `up` does), so independent services start together and
//! a service starts as soon as its dependencies are ready. A data service whose fixture
//! snapshot exists on this engine runs from it (the jobs its load waits for are then part of
//! that data and do not run); otherwise its fixtures are loaded through its task's container
//! and, for PostgreSQL, a snapshot is saved in the background as on one node.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::future::join_all;
use tokio::sync::watch;

use super::{overlay_network, swarm_of, Deployment, Restore};
use crate::docker::labels;
use crate::docker::ContainerEngine;
use crate::error::{Error, Result};
use crate::manifest::{Fixtures, Manifest, Service};
use crate::orchestrator::failure::Failure;
use crate::orchestrator::fixtures::{fixture_inputs, FixtureInputs, SnapshotQueue};
use crate::orchestrator::images::{self, Builds, ResolvedImage};
use crate::orchestrator::{FixtureReport, Orchestrator, Outcome, Phase, PublishedPort, ServiceError, ServiceReport, UpReport};
use crate::plan::{self, Action};
use crate::secrets::Redactor;

/// What a service tells the services waiting for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Signal {
    pub(super) ok: bool,
    /// A data service started from its fixture snapshot: the jobs its load waits for are
    /// already in its data.
    pub(super) data_present: bool,
}

type SignalTx = watch::Sender<Option<Signal>>;
type SignalRx = watch::Receiver<Option<Signal>>;
type ImageTx = watch::Sender<Option<Option<String>>>;
type ImageRx = watch::Receiver<Option<Option<String>>>;

/// Sends `value` unless a value was sent already.
fn send_once<T>(tx: &watch::Sender<Option<T>>, value: T) {
    tx.send_if_modified(|current| match current {
        Some(_) => false,
        None => {
            *current = Some(value);
            true
        }
    });
}

async fn wait_signal(mut rx: SignalRx) -> Option<Signal> {
    rx.wait_for(Option::is_some).await.ok().and_then(|v| *v)
}

async fn wait_image(mut rx: ImageRx) -> Option<String> {
    rx.wait_for(Option::is_some).await.ok().and_then(|v| v.clone().flatten())
}

/// One service's pipeline and the signals it waits for and sends.
struct SwarmRun<'a> {
    manifest: &'a Manifest,
    service: &'a Service,
    builds: &'a Builds,
    redactor: &'a Redactor,
    deployment: Deployment<'a>,
    waits: Vec<(plan::Wait, SignalRx)>,
    /// A data service: the jobs its load waits for, their `done` and their image IDs (part of
    /// the snapshot key).
    after_jobs: Vec<(String, SignalRx, ImageRx)>,
    image: ImageTx,
    started: SignalTx,
    ready: SignalTx,
    snapshots: SnapshotQueue<'a>,
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Deploys the manifest's services to the swarm this engine manages (replacing an earlier
    /// deployment of the project), each started once what it waits for is ready.
    pub async fn deploy_swarm(&self, manifest: &Manifest, publish_on_node: bool, registry: Option<&str>) -> Result<UpReport> {
        let started = Instant::now();
        let stack = manifest.stack.as_str();
        self.prepare_swarm(manifest).await?;
        let redactor = Redactor::for_manifest(manifest);
        let builds = Builds::new(manifest);
        let deployment = Deployment { publish_on_node, registry };
        let channels = |_: &Service| (watch::channel(None), watch::channel(None), watch::channel(None), watch::channel(None));
        let signals: BTreeMap<&str, _> = manifest.services.iter().map(|s| (s.name.as_str(), channels(s))).collect();
        let (snapshot_queue, snapshots_pending) = tokio::sync::mpsc::unbounded_channel();
        let runs: Vec<_> = manifest
            .services
            .iter()
            .map(|service| {
                let (image, started, ready, done) = &signals[service.name.as_str()];
                let waits = plan::waits(manifest, service)
                    .into_iter()
                    .map(|w| {
                        let (_, s, r, d) = &signals[w.service.as_str()];
                        let rx = match w.signal {
                            plan::Signal::Started => s.1.clone(),
                            plan::Signal::Ready => r.1.clone(),
                            plan::Signal::Done => d.1.clone(),
                        };
                        (w, rx)
                    })
                    .collect();
                let after = manifest.fixtures_for(&service.name).map(|f| f.after.as_slice()).unwrap_or_default();
                let after_jobs = after
                    .iter()
                    .map(|j| {
                        let (i, _, _, d) = &signals[j.as_str()];
                        (j.clone(), d.1.clone(), i.1.clone())
                    })
                    .collect();
                let run = SwarmRun {
                    manifest,
                    service,
                    builds: &builds,
                    redactor: &redactor,
                    deployment,
                    waits,
                    after_jobs,
                    image: image.0.clone(),
                    started: started.0.clone(),
                    ready: ready.0.clone(),
                    snapshots: snapshot_queue.clone(),
                };
                let done = done.0.clone();
                async move {
                    let report = self.swarm_service(&run).await;
                    // Whatever was not sent yet goes out now, so nothing waits forever.
                    let signal = Signal { ok: matches!(report.outcome, Outcome::Ready | Outcome::Completed), data_present: false };
                    send_once(&run.image, None);
                    for tx in [&run.started, &run.ready, &done] {
                        send_once(tx, signal);
                    }
                    report
                }
            })
            .collect();
        drop(snapshot_queue);
        let (services, ready_seconds) = self.pipelines_and_snapshots(runs, started, snapshots_pending).await?;
        let ports = self.swarm_ports(stack, publish_on_node).await?;
        let ok = services.iter().all(|r| matches!(r.outcome, Outcome::Ready | Outcome::Completed));
        let seconds = started.elapsed().as_secs_f64();
        Ok(UpReport { stack: stack.to_string(), ok, seconds, ready_seconds, changed: true, services, ports })
    }

    /// The engine must manage a swarm and the project must not run as plain containers; an
    /// earlier deployment (or what a cut one left) is taken down; networks and volumes made.
    async fn prepare_swarm(&self, manifest: &Manifest) -> Result<()> {
        let stack = manifest.stack.as_str();
        super::require_manager(self.docker.as_ref()).await?;
        let swarm = swarm_of(self.docker.as_ref())?;
        let previous = swarm.list_services(stack).await?;
        if previous.is_empty() && !self.docker.list_containers(stack).await?.is_empty() {
            return Err(Error::Preflight(vec![format!(
                "stack `{stack}` runs on this engine as plain containers (`stagectl up`)\n  = help: `stagectl -p {stack} down` it first, or deploy under another project (`-p`)"
            )]));
        }
        // A deploy starts from scratch, as `rebuild` does: an earlier deployment (or what a cut
        // one left: its secrets would clash by name) is removed with the data in its named
        // volumes (fixtures and jobs would run again on top of it); its network stays.
        if !previous.is_empty() || !swarm.list_secrets(stack).await?.is_empty() {
            self.remove_swarm_services(stack, true).await?;
        }
        for r in join_all(self.docker.list_volumes(stack).await?.iter().map(|v| self.docker.remove_volume(&v.name))).await {
            r?;
        }
        let stack_labels = plan::stack_labels(stack);
        swarm.ensure_overlay_network(&overlay_network(stack), &stack_labels).await?;
        self.docker.ensure_network(&plan::network_name(stack), &stack_labels).await?;
        for v in plan::named_volumes(manifest) {
            self.docker.ensure_volume(&plan::volume_name(stack, &v), &stack_labels).await?;
        }
        Ok(())
    }

    async fn swarm_service<'a>(&'a self, run: &SwarmRun<'a>) -> ServiceReport {
        let mut report = ServiceReport::pending(run.service);
        match self.swarm_pipeline(run, &mut report).await {
            Ok(()) => report,
            Err(failure) => self.fail(report, failure, run.redactor).await,
        }
    }

    /// Image, fixture inputs, dependencies, the Swarm service, then a data service's fixtures.
    async fn swarm_pipeline<'a>(&'a self, run: &SwarmRun<'a>, report: &mut ServiceReport) -> std::result::Result<(), Failure> {
        let (manifest, service) = (run.manifest, run.service);
        let name = service.name.as_str();
        let image = images::ensure_image(self.docker.as_ref(), manifest, service, run.builds, self.reporter.as_ref(), run.redactor).await?;
        let _ = run.image.send(Some(Some(image.id.clone())));
        let data = match manifest.fixtures_for(name) {
            Some(fixtures) => Some(self.swarm_fixture_inputs(run, fixtures, &image).await?),
            None => None,
        };
        for (wait, rx) in &run.waits {
            let message = match wait_signal(rx.clone()).await {
                Some(Signal { ok: true, data_present }) => {
                    let in_data = data_present && manifest.fixtures_for(&wait.service).is_some_and(|f| f.after.iter().any(|j| j == name));
                    if wait.direct && in_data {
                        // E.g. migrations whose result is already in the restored data.
                        report.action = Action::Keep;
                        report.outcome = Outcome::Completed;
                        self.reporter.phase(name, Phase::Kept, &format!("contained in `{}`'s loaded data", wait.service));
                        return Ok(());
                    }
                    continue;
                }
                _ if wait.direct => format!("not started: dependency `{}` failed", wait.service),
                _ => format!("not started: `{}`'s fixtures are not loaded", wait.service),
            };
            self.reporter.phase(name, Phase::Skipped, &message);
            report.outcome = Outcome::Skipped;
            report.message = Some(message);
            return Ok(());
        }
        let restore = data.as_ref().and_then(|(_, restore)| restore.as_ref());
        let restored = restore.is_some();
        let created = Instant::now();
        let on_started = || {
            let _ = run.started.send(Some(Signal { ok: true, data_present: restored }));
        };
        let container = self.deploy_service(manifest, service, &image, restore, run.deployment, report, &on_started).await?;
        let _ = run.ready.send(Some(Signal { ok: true, data_present: restored }));
        if let (Some(container), Some((inputs, _))) = (container, &data) {
            let fixtures = manifest.fixtures_for(name).expect("data services have fixtures");
            let mut loaded = self.swarm_fixtures(run, fixtures, inputs, &container, restored).await?;
            if restored {
                loaded.restore_to_ready_seconds = Some(created.elapsed().as_secs_f64());
            }
            report.fixtures = Some(loaded);
            self.reporter.phase(name, Phase::Ready, "fixtures in place");
        }
        Ok(())
    }

    /// A data service's snapshot key (with the image IDs of the jobs its load waits for) and
    /// the snapshot on this engine to start from, if there is one.
    async fn swarm_fixture_inputs(
        &self,
        run: &SwarmRun<'_>,
        fixtures: &Fixtures,
        image: &ResolvedImage,
    ) -> std::result::Result<(FixtureInputs, Option<Restore>), Failure> {
        let mut job_images = BTreeMap::new();
        for (job, _, rx) in &run.after_jobs {
            let Some(id) = wait_image(rx.clone()).await else { return Err(ServiceError::FixtureJobFailed { job: job.clone() }.into()) };
            job_images.insert(job.clone(), id);
        }
        let spec_hash = plan::snapshot_spec_hash(run.manifest, run.service, &image.id);
        let inputs = fixture_inputs(run.manifest, fixtures, &image.id, &spec_hash, &job_images)?;
        if !fixtures.snapshot || self.docker.image_id(&inputs.snapshot_ref).await?.is_none() {
            return Ok((inputs, None));
        }
        let key_label = format!("{}={}", crate::data::snapshot::KEY_LABEL, inputs.key);
        let images = self.docker.list_images(&key_label).await?;
        let pgdata = images.iter().find_map(|i| i.labels.get(crate::orchestrator::pg_snapshot::PGDATA_LABEL)).cloned();
        let restore = Restore { reference: inputs.snapshot_ref.clone(), pgdata };
        Ok((inputs, Some(restore)))
    }

    /// The fixtures of a ready data service: restored, or loaded once the jobs they wait for
    /// are done, with a PostgreSQL base backup staged meanwhile and saved in the background.
    /// Nothing here stops the task's container (Swarm would replace it with an empty one), so
    /// a snapshot that needs a stopped server is not taken on Swarm.
    async fn swarm_fixtures<'a>(
        &'a self,
        run: &SwarmRun<'a>,
        fixtures: &Fixtures,
        inputs: &FixtureInputs,
        container: &str,
        restored: bool,
    ) -> std::result::Result<FixtureReport, Failure> {
        let name = fixtures.service.as_str();
        let with_logs = |e: crate::orchestrator::FixtureError| Failure::with_logs(e, container);
        if restored {
            return match self.load_fixtures(run.manifest, fixtures, inputs, container, &Action::Create, true).await {
                Ok(Err(report)) => Ok(report),
                Ok(Ok(_)) => unreachable!("a restored load reports without loading"),
                Err(e) => Err(with_logs(e)),
            };
        }
        let staging = async {
            match fixtures.snapshot {
                true => self.stage_snapshot(run.manifest, fixtures, inputs, container).await,
                false => None,
            }
        };
        let jobs_then_load = async {
            for (job, rx, _) in &run.after_jobs {
                if !matches!(wait_signal(rx.clone()).await, Some(Signal { ok: true, .. })) {
                    return Err(Failure::from(ServiceError::FixtureJobFailed { job: job.clone() }));
                }
            }
            self.load_fixtures(run.manifest, fixtures, inputs, container, &Action::Create, false).await.map_err(with_logs)
        };
        let (staged, loaded) = tokio::join!(staging, jobs_then_load);
        let load = match loaded {
            Ok(Ok(load)) => load,
            other => {
                self.discard_staged(run.manifest, staged).await;
                return match other {
                    Ok(Err(report)) => Ok(report),
                    Err(failure) => Err(failure),
                    Ok(Ok(_)) => unreachable!(),
                };
            }
        };
        let plan = self.snapshot_plan(run.manifest, fixtures, inputs, &load);
        let snapshot = match staged {
            Some(Ok(base)) => match self.save_staged(run.manifest, &plan, base, &run.snapshots).await {
                Ok(()) => "saving",
                Err((why, _)) => {
                    self.reporter.phase(name, Phase::Loading, &format!("snapshot not saved on Swarm: {why}"));
                    "off"
                }
            },
            Some(Err(no)) => {
                self.reporter.phase(name, Phase::Loading, &format!("snapshot not saved on Swarm: {}", no.why));
                "off"
            }
            None => "off",
        };
        self.reporter.phase(name, Phase::Loading, &format!("{} rows loaded in {:.2}s", load.rows, load.seconds));
        Ok(FixtureReport::new(snapshot, load.rows, load.files, load.seconds))
    }

    /// The published ports: bound by the node's engine (the task containers say), or by
    /// Swarm's ingress (the services say).
    async fn swarm_ports(&self, stack: &str, publish_on_node: bool) -> Result<Vec<PublishedPort>> {
        let mut ports = Vec::new();
        if publish_on_node {
            for c in self.docker.list_containers(stack).await? {
                for (host_ip, host_port, container_port, protocol) in c.ports {
                    let host_ip = Some(host_ip).filter(|ip| !ip.is_empty() && ip != "0.0.0.0");
                    ports.push(PublishedPort { service: c.service.clone(), host_ip, host_port, container_port, protocol, auto: false });
                }
            }
        } else {
            for s in swarm_of(self.docker.as_ref())?.list_services(stack).await? {
                let service = s.labels.get(labels::SERVICE).cloned().unwrap_or_default();
                for (published, target, protocol) in s.ports {
                    ports.push(PublishedPort {
                        service: service.clone(),
                        host_ip: None,
                        host_port: published,
                        container_port: target,
                        protocol,
                        auto: false,
                    });
                }
            }
        }
        ports.sort_by(|a, b| (&a.service, a.container_port, &a.host_ip).cmp(&(&b.service, b.container_port, &b.host_ip)));
        ports.dedup_by(|a, b| a.service == b.service && a.container_port == b.container_port && a.host_port == b.host_port);
        Ok(ports)
    }
}
