//! Taking a Swarm deployment down: services (Swarm stops their tasks with their grace
//! period), then secrets and configs, then the overlay network once its last endpoint is
//! gone. `Orchestrator::down` calls it first, so the one `down` works for both engines.

use std::time::{Duration, Instant};

use super::{overlay_network, swarm_of};
use crate::docker::swarm::SwarmState;
use crate::docker::ContainerEngine;
use crate::error::Result;
use crate::orchestrator::{Orchestrator, Phase};

/// The label Swarm puts on a task's container.
const TASK_LABEL: &str = "com.docker.swarm.task.id";
/// How long the tasks of removed services may take to stop (their grace period and more).
const TASKS_GONE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the overlay network may stay busy after its last task is gone.
const NETWORK_RETRY_FOR: Duration = Duration::from_secs(20);

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Removes the project's Swarm services, secrets, configs and overlay network; returns how
    /// many services there were. Nothing to do (0) on an engine that is not a swarm manager.
    pub async fn down_swarm(&self, stack: &str) -> Result<usize> {
        let Some(swarm) = self.docker.swarm() else { return Ok(0) };
        if swarm.swarm_state().await? != SwarmState::Manager {
            return Ok(0);
        }
        let swarm = swarm_of(self.docker.as_ref())?;
        let services = swarm.list_services(stack).await?;
        for s in &services {
            let service = s.labels.get(crate::docker::labels::SERVICE).cloned().unwrap_or_else(|| s.name.clone());
            self.reporter.phase(&service, Phase::Removing, &s.name);
            swarm.remove_service(&s.id).await?;
            self.reporter.phase(&service, Phase::Removed, &s.name);
        }
        // Swarm stops the tasks on its own; wait for their containers so that the networks
        // they are attached to can go.
        let deadline = Instant::now() + TASKS_GONE_TIMEOUT;
        loop {
            let left: Vec<_> =
                self.docker.list_containers(stack).await?.into_iter().filter(|c| c.labels.contains_key(TASK_LABEL)).collect();
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
        let overlay = overlay_network(stack);
        if self.docker.list_networks(stack).await?.iter().any(|n| n.name == overlay) {
            let deadline = Instant::now() + NETWORK_RETRY_FOR;
            loop {
                match self.docker.remove_network(&overlay).await {
                    Ok(()) => break,
                    // The swarm lets go of the task endpoints a moment after the containers.
                    Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(services.len())
    }
}
