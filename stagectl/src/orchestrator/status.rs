//! `status`: one row per service, with readiness probed once (not waited for).

use futures_util::future::join_all;

use super::{Orchestrator, ServiceStatus};
use crate::data;
use crate::docker::{ContainerEngine, ObservedContainer, RunState};
use crate::error::Result;
use crate::manifest::{Manifest, Service};
use crate::plan;
use crate::probes;

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
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
        // A service that waits for a data service's fixtures before it starts (`plan::waits`)
        // is not ready while they are not in place: it would be running against missing data.
        let not_ready: Vec<String> =
            out.iter().filter(|r| !r.ready && manifest.fixtures_for(&r.service).is_some()).map(|r| r.service.clone()).collect();
        for row in out.iter_mut().filter(|r| r.ready) {
            let Some(s) = manifest.service(&row.service) else { continue };
            let waits = plan::waits(manifest, s);
            if let Some(w) = waits.iter().find(|w| w.signal == plan::Signal::Done && not_ready.contains(&w.service)) {
                row.ready = false;
                row.detail = Some(format!("waits for `{}`'s fixtures, which are not in place", w.service));
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
                restart: service.map(|s| s.restart.describe()).unwrap_or_else(|| "no".into()),
                restarts: 0,
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
        // A long-running service that is not running was stopped (`stagectl stop`) or died;
        // either way `up` starts it again.
        let stopped = service.is_some() && !is_job && c.state == RunState::Exited;
        let state = if stopped { "stopped".to_string() } else { state };
        let (ready, detail) = match (c.state, service.and_then(|s| s.ready.as_ref())) {
            (RunState::Exited, _) if is_job => (c.exit_code == Some(0), None),
            (RunState::Running, Some(r)) => match probes::probe_once(self.docker.as_ref(), &c.id, network, &r.probe).await {
                Ok(()) => (true, None),
                Err(e) => (false, Some(e.to_string())),
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
        let detail = match (stopped, c.exit_code) {
            (true, Some(code)) => Some(format!("exited {code}; `stagectl up` starts it again")),
            (true, None) => Some("`stagectl up` starts it again".to_string()),
            _ => detail,
        };
        // A container Docker is restarting (`restart = "always"` between two runs) has a
        // restart count too: it is what the row is about.
        let live = match c.state {
            RunState::Running | RunState::Exited | RunState::Other => self.docker.container_status(&c.id, network).await.ok(),
            RunState::Created => None,
        };
        let restarts = live.as_ref().map_or(0, |s| s.restart_count);
        let uptime_seconds = live
            .filter(|_| c.state == RunState::Running)
            .and_then(|s| s.started_at)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0) as u64);
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
            // A built service runs its content-addressed build tag; the user's `image` names
            // the same image and is the one they know.
            image: service.filter(|s| s.build.is_some()).and_then(|s| s.image.clone()).unwrap_or_else(|| c.image.clone()),
            uptime_seconds,
            detail,
            restart: service.map(|s| s.restart.describe()).unwrap_or_else(|| "no".into()),
            restarts,
        }
    }
}
