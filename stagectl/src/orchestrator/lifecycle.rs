//! `stop` and `restart`: the containers of some services, kept (not removed). Both act on
//! every service of the manifest they are given (`plan::subset` of the named ones).

use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;

use super::{Orchestrator, Phase, STOP_GRACE_SECS};
use crate::docker::{ContainerEngine, ObservedContainer};
use crate::error::Result;
use crate::manifest::{Manifest, Service};
use crate::plan;
use crate::probes;
use crate::secrets::Redactor;

/// What `stop` or `restart` did, per service.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleReport {
    pub stack: String,
    /// `stop` or `restart`.
    pub verb: &'static str,
    pub ok: bool,
    pub seconds: f64,
    pub services: Vec<LifecycleRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LifecycleRow {
    pub service: String,
    /// stopped, ready, failed, missing.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl LifecycleRow {
    fn new(service: &str, outcome: &'static str, message: Option<String>) -> Self {
        LifecycleRow { service: service.to_string(), outcome, message }
    }
}

fn report(stack: &str, verb: &'static str, started: Instant, services: Vec<LifecycleRow>) -> LifecycleReport {
    let ok = services.iter().all(|r| r.outcome != "failed");
    LifecycleReport { stack: stack.to_string(), verb, ok, seconds: started.elapsed().as_secs_f64(), services }
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Stops the containers of the manifest's services (graceful stop, kept for a later `up`),
    /// dependents before what they depend on.
    pub async fn stop(&self, manifest: &Manifest) -> Result<LifecycleReport> {
        let started = Instant::now();
        let observed = self.docker.list_containers(&manifest.stack).await?;
        let mut rows = Vec::new();
        for s in plan::topological_order(manifest).into_iter().rev() {
            let Some(c) = plan::current_container(&manifest.stack, &s.name, &observed) else {
                rows.push(LifecycleRow::new(&s.name, "missing", Some("no container".into())));
                continue;
            };
            self.reporter.phase(&s.name, Phase::Stopping, &c.name);
            self.docker.stop_container(&c.id, STOP_GRACE_SECS).await?;
            self.reporter.phase(&s.name, Phase::Stopped, &c.name);
            rows.push(LifecycleRow::new(&s.name, "stopped", None));
        }
        rows.reverse();
        Ok(report(&manifest.stack, "stop", started, rows))
    }

    /// Restarts the containers of `services` (stopped ones are started) and waits until each
    /// is ready again: its probe passes, or without one it keeps running for the settle
    /// window. A data service is recreated instead, through `up` (fixtures restored from their
    /// snapshot or loaded again): a restart could lose data held only in memory (Redis) while
    /// its load marker stayed, and it would be reported ready without its data. Data services
    /// go first, so a restarted service finds its data in place. `manifest` holds `services`
    /// and what they need (`plan::with_dependencies`).
    pub async fn restart(&self, manifest: &Manifest, services: &[String]) -> Result<LifecycleReport> {
        let started = Instant::now();
        let observed = self.docker.list_containers(&manifest.stack).await?;
        let network = plan::network_name(&manifest.stack);
        let redactor = Redactor::for_manifest(manifest);
        let (data, others): (Vec<&String>, Vec<&String>) = services.iter().partition(|s| manifest.fixtures_for(s).is_some());
        let mut rows = Vec::new();
        if !data.is_empty() {
            let data: Vec<String> = data.into_iter().cloned().collect();
            for name in &data {
                if let Some(c) = plan::current_container(&manifest.stack, name, &observed) {
                    self.reporter.phase(name, Phase::Removing, "a data service is recreated: its fixtures are restored or loaded again");
                    self.docker.remove_container(&c.id, STOP_GRACE_SECS).await?;
                }
            }
            let needed = plan::with_dependencies(manifest, &data).map_err(|e| crate::error::Error::Usage(e.to_string()))?;
            let up = self.up_only(&plan::subset(manifest, &needed)).await?;
            for r in up.services.iter().filter(|r| data.contains(&r.service)) {
                let ok = matches!(r.outcome, super::Outcome::Ready);
                let message = if ok { Some("recreated, fixtures in place".to_string()) } else { r.message.clone() };
                rows.push(LifecycleRow::new(&r.service, if ok { "ready" } else { "failed" }, message));
            }
        }
        let restarts = others.into_iter().filter_map(|name| manifest.service(name)).map(|s| {
            let current = plan::current_container(&manifest.stack, &s.name, &observed);
            self.restart_one(s, current, &network, &redactor)
        });
        rows.extend(join_all(restarts).await);
        Ok(report(&manifest.stack, "restart", started, rows))
    }

    async fn restart_one(&self, s: &Service, c: Option<&ObservedContainer>, network: &str, redactor: &Redactor) -> LifecycleRow {
        let failed = |why: String| {
            let why = redactor.apply(&why);
            self.reporter.phase(&s.name, Phase::Failed, &why);
            LifecycleRow::new(&s.name, "failed", Some(why))
        };
        let Some(c) = c else {
            return failed(format!("no container; run `stagectl up {}` first", s.name));
        };
        self.reporter.phase(&s.name, Phase::Stopping, &c.name);
        if let Err(e) = self.docker.stop_container(&c.id, STOP_GRACE_SECS).await {
            return failed(e.to_string());
        }
        self.reporter.phase(&s.name, Phase::Starting, &c.name);
        if let Err(e) = self.docker.start_container(&c.id).await {
            return failed(e.to_string());
        }
        let t = Instant::now();
        let ready = match &s.ready {
            Some(readiness) => {
                self.reporter.phase(&s.name, Phase::Probing, &readiness.probe.describe());
                probes::wait_ready(self.docker.as_ref(), &c.id, network, readiness).await.map(|_| ()).map_err(|e| e.to_string())
            }
            None => self.still_running(&s.name, &c.id, network).await,
        };
        match ready {
            Ok(()) => {
                let secs = t.elapsed().as_secs_f64();
                self.reporter.phase(&s.name, Phase::Ready, &format!("ready in {secs:.2}s"));
                LifecycleRow::new(&s.name, "ready", None)
            }
            Err(why) => failed(why),
        }
    }

    /// Without a probe: still running, not restarted, after the settle window.
    async fn still_running(&self, name: &str, id: &str, network: &str) -> std::result::Result<(), String> {
        let window = self.settle;
        self.reporter.phase(name, Phase::Probing, &format!("no probe: must keep running for {:.2}s", window.as_secs_f64()));
        let before = self.docker.container_status(id, network).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(window).await;
        let after = self.docker.container_status(id, network).await.map_err(|e| e.to_string())?;
        if !after.running {
            return Err(format!("exited ({}) after the restart", after.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "?".into())));
        }
        if after.started_at != before.started_at {
            return Err("restarted by itself after the restart".into());
        }
        Ok(())
    }
}
