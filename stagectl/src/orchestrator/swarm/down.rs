//! Taking a Swarm deployment down: services (their task containers on this node stopped and
//! removed right away, with their grace period unless the data is discarded), then secrets
//! and configs, then the overlay network once its last endpoint is gone. `Orchestrator::down`
//! calls it first, so the one `down` works for both engines; a new deployment of the project
//! replaces the services and keeps the network.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::{overlay_network, swarm_of};
use crate::docker::swarm::SwarmState;
use crate::docker::ContainerEngine;
use crate::error::Result;
use crate::orchestrator::{Orchestrator, Phase, STOP_GRACE_SECS};

/// How long the tasks of removed services on other nodes may take to stop.
const TASKS_GONE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the overlay network may stay busy after its last task is gone.
const NETWORK_RETRY_FOR: Duration = Duration::from_secs(20);

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Removes the project's Swarm services, secrets, configs and overlay network; returns how
    /// many services there were. Nothing to do (0) on an engine that is not a swarm manager.
    /// `kill`: the task containers are killed at once (their data is discarded anyway).
    pub async fn down_swarm(&self, stack: &str, kill: bool) -> Result<usize> {
        let Some(services) = self.remove_swarm_services(stack, kill).await? else { return Ok(0) };
        let overlay = overlay_network(stack);
        if self.docker.list_networks(stack).await?.iter().any(|n| n.name == overlay) {
            let deadline = Instant::now() + NETWORK_RETRY_FOR;
            loop {
                match self.remove_network_of(stack, &overlay).await {
                    Ok(()) => break,
                    // The swarm lets go of the task endpoints a moment after the containers.
                    Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(services)
    }

    /// The services (and their secrets and configs) of a deployment, but not its network: what
    /// a new deployment of the project replaces. `None` on an engine that is no swarm manager.
    ///
    /// The task containers on this node are stopped and removed here, concurrently, rather
    /// than left to Swarm: it takes seconds to get round to them (about 3 s on a one-node swarm
    /// before the first stop), and until they are gone they hold their host ports and carry
    /// the stack's labels (a check could find an old one).
    pub(super) async fn remove_swarm_services(&self, stack: &str, kill: bool) -> Result<Option<usize>> {
        let Some(swarm) = self.docker.swarm() else { return Ok(None) };
        if swarm.swarm_state().await? != SwarmState::Manager {
            return Ok(None);
        }
        let swarm = swarm_of(self.docker.as_ref())?;
        let services = swarm.list_services(stack).await?;
        let removals = services.iter().map(|s| async move {
            let service = s.labels.get(crate::docker::labels::SERVICE).cloned().unwrap_or_else(|| s.name.clone());
            self.reporter.phase(&service, Phase::Removing, &s.name);
            swarm.remove_service(&s.id).await?;
            self.reporter.phase(&service, Phase::Removed, &s.name);
            Ok::<(), crate::error::Error>(())
        });
        for removed in join_all(removals).await {
            removed?;
        }
        let tasks = || async {
            let all = self.docker.list_containers(stack).await?;
            Ok::<_, crate::error::Error>(
                all.into_iter().filter(|c| c.labels.contains_key(crate::docker::labels::SWARM_TASK)).collect::<Vec<_>>(),
            )
        };
        let stops = tasks().await?;
        let grace = |c| if kill { 0 } else { crate::plan::stop_grace_of(c, STOP_GRACE_SECS) };
        // One already gone (Swarm got there first) is not an error.
        join_all(stops.iter().map(|c| self.docker.remove_container(&c.id, grace(c)))).await;
        // Tasks of other nodes are Swarm's to stop: wait for their containers to be gone.
        let deadline = Instant::now() + TASKS_GONE_TIMEOUT;
        loop {
            let left = tasks().await?;
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for c in &left {
                    self.docker.remove_container(&c.id, 0).await?;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for s in swarm.list_secrets(stack).await? {
            swarm.remove_secret(&s.name).await?;
        }
        for c in swarm.list_configs(stack).await? {
            swarm.remove_config(&c.name).await?;
        }
        Ok(Some(services.len()))
    }
}
