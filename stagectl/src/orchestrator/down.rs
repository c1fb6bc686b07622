//! `down`: removes what the stack owns, found by its label, never by name.

use std::time::Instant;

use futures_util::future::join_all;

use super::{DownReport, Orchestrator, Phase, UpReport, STOP_GRACE_SECS};
use crate::docker::ContainerEngine;
use crate::error::Result;
use crate::manifest::Manifest;

/// How long a network whose removal failed may take to disappear on its own.
const NETWORK_GONE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Removes everything labelled with the stack: containers (in parallel), its network, and
    /// with `volumes` its named volumes. Without `volumes`, containers get a graceful stop; with
    /// it the data is discarded anyway, so they are killed at once.
    pub async fn down(&self, stack: &str, volumes: bool) -> Result<DownReport> {
        self.remove_owned(stack, volumes, true).await
    }

    /// `rebuild`: `down --volumes` then `up`, but the network stays (the same network: removing
    /// and creating it again costs time and gains nothing), and, when the stack owns no named
    /// volume (whose names the new containers need free), the old containers are renamed and
    /// taken off the network at once (killed first when they publish host ports, which the new
    /// ones need), then removed while the new ones come up: nothing can reach an old container
    /// by its service's name once `up` starts.
    pub async fn rebuild(&self, manifest: &Manifest) -> Result<UpReport> {
        let stack = manifest.stack.as_str();
        // A Swarm deployment's tasks are not renamed away: `remove_owned` removes its services.
        let containers = self.docker.list_containers(stack).await?;
        let on_swarm = containers.iter().any(|c| c.labels.contains_key(crate::docker::labels::SWARM_TASK));
        if on_swarm || self.docker.is_podman() || !self.docker.list_volumes(stack).await?.is_empty() {
            self.remove_owned(stack, true, false).await?;
            return self.up(manifest).await;
        }
        let network = crate::plan::network_name(stack);
        let moved = join_all(containers.iter().map(|c| {
            let network = &network;
            async move {
                self.reporter.phase(&c.service, Phase::Removing, &c.name);
                let gone = format!("{}-removing-{}", c.name, &c.id[..12.min(c.id.len())]);
                self.docker.rename_container(&c.id, &gone).await?;
                if c.ports.is_empty() && c.state == crate::docker::RunState::Running {
                    self.docker.disconnect_network(&c.id, network).await
                } else {
                    self.docker.stop_container(&c.id, 0).await
                }
            }
        }))
        .await;
        // A container that could not be renamed is removed before anything is created.
        let (renamed, stuck): (Vec<_>, Vec<_>) = containers.iter().zip(moved).partition(|(_, r)| r.is_ok());
        for (c, _) in &stuck {
            self.docker.remove_container(&c.id, 0).await?;
        }
        let gone: Vec<String> = renamed.iter().map(|(c, _)| c.id.clone()).collect();
        let removal = async {
            for r in join_all(renamed.iter().map(|(c, _)| self.docker.remove_container(&c.id, 0))).await {
                r?;
            }
            crate::migrations::check::remove_leftover_images(self.docker.as_ref(), Some(stack)).await?;
            crate::data::snapshot::remove_debris(self.docker.as_ref(), Some(stack)).await
        };
        let (up, removed) = tokio::join!(self.up_excluding(manifest, &gone), removal);
        removed?;
        up
    }

    async fn remove_owned(&self, stack: &str, volumes: bool, networks: bool) -> Result<DownReport> {
        let started = Instant::now();
        // A Swarm deployment (`deploy --swarm`): its services first, or Swarm would replace
        // the task containers removed below.
        let swarm_services = self.down_swarm(stack, volumes).await?;
        let containers = self.docker.list_containers(stack).await?;
        let grace = if volumes { 0 } else { STOP_GRACE_SECS };
        let results = join_all(containers.iter().map(|c| async move {
            self.reporter.phase(&c.service, Phase::Removing, &c.name);
            // A service's `stop_grace_period` is on its container's label.
            let grace = if grace == 0 { 0 } else { crate::plan::stop_grace_of(c, grace) };
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
        // Images of copies a killed `check migrations` left behind.
        crate::migrations::check::remove_leftover_images(self.docker.as_ref(), Some(stack)).await?;
        // Debris of a snapshot interrupted by a kill or a lost engine (usable snapshots stay).
        crate::data::snapshot::remove_debris(self.docker.as_ref(), Some(stack)).await?;
        let networks = if networks { self.docker.list_networks(stack).await? } else { vec![] };
        for n in &networks {
            self.remove_network_of(stack, &n.name).await?;
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
            swarm_services,
            containers: containers.len(),
            networks: networks.len(),
            volumes: removed_volumes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Removes network `name` of `stack`. A failure with the network gone anyway is success:
    /// an overlay network's removal goes through the swarm, and an attempt after Swarm removed
    /// it reads "network … not found" (status 500) while this node still lists it for a moment.
    pub(super) async fn remove_network_of(&self, stack: &str, name: &str) -> Result<()> {
        let Err(e) = self.docker.remove_network(name).await else { return Ok(()) };
        let deadline = std::time::Instant::now() + NETWORK_GONE_WAIT;
        while self.docker.list_networks(stack).await?.iter().any(|n| n.name == name) {
            if std::time::Instant::now() >= deadline {
                return Err(e);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    }
}
