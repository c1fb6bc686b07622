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

use crate::docker::{ContainerEngine, ObservedContainer, RunState};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Protocol, Service};
use crate::plan::{self, Action};
use crate::probes;
pub use progress::{Phase, Redactor, Reporter, Silent};

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

pub struct Engine<E: ContainerEngine + ?Sized> {
    pub docker: Arc<E>,
    pub reporter: Arc<dyn Reporter>,
}

/// What a service tells its dependents when it is done.
#[derive(Debug, Clone, Copy)]
struct DepSignal {
    /// Ready (or completed, for a job).
    ok: bool,
    /// Created or recreated in this run (jobs that depend on it re-run).
    changed: bool,
}

impl<E: ContainerEngine + ?Sized> Engine<E> {
    pub fn new(docker: Arc<E>, reporter: Arc<dyn Reporter>) -> Self {
        Engine { docker, reporter }
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

        // Every service is one pipeline: image, then its dependencies, then start and probe.
        // Pipelines run concurrently, so the database starts while the app image builds.
        let mut senders: BTreeMap<String, watch::Sender<Option<DepSignal>>> = BTreeMap::new();
        let mut receivers: BTreeMap<String, watch::Receiver<Option<DepSignal>>> = BTreeMap::new();
        for s in &manifest.services {
            let (tx, rx) = watch::channel(None);
            senders.insert(s.name.clone(), tx);
            receivers.insert(s.name.clone(), rx);
        }
        let runs = manifest.services.iter().map(|service| {
            let deps: Vec<(String, watch::Receiver<Option<DepSignal>>)> =
                service.depends_on.iter().map(|d| (d.clone(), receivers[d].clone())).collect();
            let tx = senders[&service.name].clone();
            let current = plan::current_container(&manifest.stack, &service.name, &observed).cloned();
            let (redactor, network) = (&redactor, &network);
            async move {
                let report = self.run_service(manifest, service, current, deps, network, redactor).await;
                let ok = matches!(report.outcome, Outcome::Ready | Outcome::Completed);
                let _ = tx.send(Some(DepSignal { ok, changed: report.action != Action::Keep }));
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
        };
        let image = match images::ensure_image(self.docker.as_ref(), manifest, service, self.reporter.as_ref(), redactor).await {
            Ok(image) => image,
            Err(e) => return self.fail(report, e, None, redactor).await,
        };
        report.image = image.reference.clone();
        report.image_source = image.how.to_string();
        report.image_seconds = image.seconds;
        let hash = plan::spec_hash(&manifest.stack, service, &image.id);

        if !deps.is_empty() {
            self.reporter.phase(name, Phase::Waiting, &format!("for {}", deps.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", ")));
        }
        let mut dependency_changed = false;
        for (dep, mut rx) in deps {
            let signal = match rx.wait_for(Option::is_some).await {
                Ok(v) => *v,
                Err(_) => None,
            };
            match signal {
                Some(DepSignal { ok: true, changed }) => dependency_changed |= changed,
                _ => {
                    let msg = format!("not started: dependency `{dep}` failed");
                    self.reporter.phase(name, Phase::Skipped, &msg);
                    report.outcome = Outcome::Skipped;
                    report.message = Some(msg);
                    return report;
                }
            }
        }
        let action = plan::decide(service, &hash, current.as_ref(), dependency_changed);
        report.action = action.clone();

        let id = match (&action, &current) {
            (Action::Keep, Some(c)) => c.id.clone(),
            _ => {
                if let Some(old) = &current {
                    self.reporter.phase(name, Phase::Removing, match &action { Action::Recreate(r) => r, _ => "replacing" });
                    if let Err(e) = self.docker.remove_container(&old.id, STOP_GRACE_SECS).await {
                        return self.fail(report, e.to_string(), None, redactor).await;
                    }
                }
                self.reporter.phase(name, Phase::Creating, &image.reference);
                let spec = plan::container_spec(manifest, service, &image.id, &image.reference, &hash);
                let id = match self.docker.create_container(&spec).await {
                    Ok(id) => id,
                    Err(e) => return self.fail(report, e.to_string(), None, redactor).await,
                };
                self.reporter.phase(name, Phase::Starting, "");
                if let Err(e) = self.docker.start_container(&id).await {
                    return self.fail(report, e.to_string(), Some(&id), redactor).await;
                }
                id
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
                    Ok(s) => return self.fail(report, format!("container exited with code {}", s.exit_code.unwrap_or(-1)), Some(&id), redactor).await,
                    Err(e) => return self.fail(report, e.to_string(), Some(&id), redactor).await,
                }
            }
            Some(readiness) => {
                if action != Action::Keep {
                    self.reporter.phase(name, Phase::Probing, &readiness.probe.describe());
                }
                if let Err(e) = probes::wait_ready(self.docker.as_ref(), &id, network, readiness).await {
                    return self.fail(report, e.to_string(), Some(&id), redactor).await;
                }
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
            self.status_row(&s.name, Some(s), c, &network)
        });
        let mut out = join_all(rows).await;
        let extra = observed.iter().filter(|c| manifest.service(&c.service).is_none());
        for c in extra {
            out.push(self.status_row(&c.service, None, Some(c), &network).await);
        }
        Ok(out)
    }

    async fn status_row(&self, name: &str, service: Option<&Service>, c: Option<&ObservedContainer>, network: &str) -> ServiceStatus {
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
