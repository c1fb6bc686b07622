//! `deploy --swarm`: the stack as Docker Swarm services. The same manifest, the same plan
//! (names, labels, container specs, topological order), the same probes, fixture loader and
//! failure reports as `up`; what differs is how a service runs:
//!
//! - every service is a Swarm service `<project>_<service>` with one task, on the attachable
//!   overlay network `<project>` (its DNS name there is the service's name, as on one node);
//!   a job is a service with restart policy `none`, awaited until its task completes;
//! - a `${secret:...}` env value becomes a Swarm secret `<project>_<service>_<VAR>`, mounted
//!   at `/run/secrets/<that name>`; the service spec carries no value: its entrypoint is a
//!   `/bin/sh` wrapper that exports each variable from its file and then execs the image's
//!   own entrypoint and command (see [`secret_wrapper`]);
//! - published ports go through Swarm's ingress;
//! - probes, migrations and fixtures talk to the task's container on this node: it is also
//!   connected to the local bridge network `plan::network_name(project)`, which the host
//!   reaches (an overlay network is not routed to the host). So `stagectl check` and
//!   `status` find it as they find a container of `up` (it carries the same labels).
//!
//! Services are deployed concurrently, each once what it waits for is ready (see
//! [`deploy`]); a data service's fixtures load when it is ready and the jobs in its `after`
//! have completed, or it starts from its fixture snapshot.

mod deploy;
mod down;

use std::time::{Duration, Instant};

use super::failure::Failure;
use super::images::ResolvedImage;
use super::{Orchestrator, Outcome, Phase, ServiceError, ServiceReport};
use crate::docker::labels;
use crate::docker::swarm::{SecretMount, ServiceSpec, SwarmEngine, SwarmState};
use crate::docker::ContainerEngine;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Service};
use crate::plan::{self, Action};
use crate::probes;

/// How often a task's state is read while waiting for it.
const TASK_POLL: Duration = Duration::from_millis(100);
/// How long a task may take to get a running container (scheduling, image on the node).
const TASK_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a published port may take to answer through the ingress once the task is ready.
const PUBLISHED_TIMEOUT: Duration = Duration::from_secs(30);

/// The overlay network of a project: named after it.
pub fn overlay_network(stack: &str) -> String {
    stack.to_string()
}

/// A service's name in the swarm.
pub fn service_name(stack: &str, service: &str) -> String {
    plan::swarm_service_name(stack, service)
}

/// The Swarm secret holding env variable `var` of `service`.
pub fn secret_name(stack: &str, service: &str, var: &str) -> String {
    format!("{stack}_{service}_{var}")
}

/// The image reference a service's tasks run: with `--registry`, an image only this engine
/// has (built here, a snapshot) is named in that registry, where `snapshots push` put it, so
/// any node can pull it; anything else (and everything without a registry) as it is.
pub fn run_reference(registry: Option<&str>, built: bool, reference: &str) -> String {
    match registry {
        Some(r) if built || super::registry::local_only(reference) => super::registry::registry_reference(r, reference),
        _ => reference.to_string(),
    }
}

/// The entrypoint that turns secret files back into environment variables: `sh -c SCRIPT
/// stagectl-secrets ENTRYPOINT... CMD...`. The variables exist only in the process it execs
/// (not in the service spec, not in `docker inspect`, not in a `docker exec`). Command
/// substitution drops trailing newlines of a value.
pub fn secret_wrapper(vars: &[(String, String)]) -> Vec<String> {
    let mut script = String::new();
    for (var, file) in vars {
        script.push_str(&format!("{var}=\"$(cat '/run/secrets/{file}')\" || exit 1; export {var}; "));
    }
    script.push_str("exec \"$@\"");
    vec!["/bin/sh".into(), "-c".into(), script, "stagectl-secrets".into()]
}

/// How services are deployed: where ports are published, where images come from.
#[derive(Debug, Clone, Copy)]
struct Deployment<'a> {
    publish_on_node: bool,
    registry: Option<&'a str>,
}

/// A data service started from its fixture snapshot on this engine.
struct Restore {
    /// The snapshot image (as this engine names it).
    reference: String,
    /// Its data directory when it is not the image's own (`PGDATA`; see `pg_snapshot`).
    pgdata: Option<String>,
}

/// The engine's Swarm side, or why there is none to deploy to.
fn swarm_of<E: ContainerEngine + ?Sized>(docker: &E) -> Result<&dyn SwarmEngine> {
    docker.swarm().ok_or_else(|| Error::Usage(format!("the engine at {} cannot run Swarm services", docker.host())))
}

/// The engine must manage a swarm: a usage error that says how to get there otherwise.
pub async fn require_manager<E: ContainerEngine + ?Sized>(docker: &E) -> Result<()> {
    match swarm_of(docker)?.swarm_state().await? {
        SwarmState::Manager => Ok(()),
        SwarmState::Worker => Err(Error::Usage(format!(
            "the engine at {} is a swarm worker; deploy from a manager (point DOCKER_HOST at one)",
            docker.host()
        ))),
        SwarmState::Inactive { detail } => Err(Error::Usage(format!(
            "the engine at {} is not in a swarm ({detail})\n  = help: `docker swarm init --advertise-addr 127.0.0.1` makes it a one-node swarm",
            docker.host()
        ))),
    }
}

/// A task's container, running (or the reason it never ran / stopped).
enum TaskEnd {
    Running(String),
    /// The task ended: its container (if it had one), exit code, Swarm's message.
    Ended {
        container: Option<String>,
        state: String,
        exit_code: Option<i64>,
        message: String,
    },
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// One service: secrets, the Swarm service, its task's container (`on_started` once it
    /// runs), then the job's completion or the probe and native migrations. Returns the
    /// running container of a long-running service (for fixtures), `None` for a job.
    #[allow(clippy::too_many_arguments)]
    async fn deploy_service(
        &self,
        manifest: &Manifest,
        service: &Service,
        image: &ResolvedImage,
        restore: Option<&Restore>,
        deployment: Deployment<'_>,
        report: &mut ServiceReport,
        on_started: &(dyn Fn() + Sync),
    ) -> std::result::Result<Option<String>, Failure> {
        let swarm = swarm_of(self.docker.as_ref())?;
        let stack = manifest.stack.as_str();
        let name = service.name.as_str();
        let Deployment { publish_on_node, registry } = deployment;
        // A fixture snapshot is an image only this engine has, like a built one.
        let local = restore.map_or(image.reference.as_str(), |r| r.reference.as_str());
        let runs = run_reference(registry, service.build.is_some(), local);
        report.image = runs.clone();
        report.image_source = image.how.to_string();
        report.image_seconds = image.seconds;
        let hash = plan::spec_hash(stack, service, &image.id);
        let user_reference = service.image.clone().unwrap_or_else(|| image.reference.clone());
        let mut container = plan::container_spec(manifest, service, &runs, &user_reference, &hash);
        if let Some(dir) = restore.and_then(|r| r.pgdata.as_ref()) {
            container.env.retain(|e| !e.starts_with("PGDATA="));
            container.env.push(format!("PGDATA={dir}"));
        }
        let detail = match restore {
            Some(_) => format!("{} (from fixture snapshot {local})", service_name(stack, name)),
            None => service_name(stack, name),
        };
        self.reporter.phase(name, Phase::Creating, &detail);
        let mut secrets = Vec::new();
        let mut wrapped = Vec::new();
        for (var, value) in service.env.iter().filter(|(_, v)| v.secret) {
            let secret = secret_name(stack, name, var);
            let mut secret_labels = plan::stack_labels(stack);
            secret_labels.insert(labels::SERVICE.into(), name.to_string());
            let id = swarm.create_secret(&secret, value.value.as_bytes(), &secret_labels).await?;
            container.env.retain(|e| !e.starts_with(&format!("{var}=")));
            secrets.push(SecretMount { id, name: secret.clone(), file: secret.clone() });
            wrapped.push((var.clone(), secret));
        }
        if !wrapped.is_empty() {
            // The wrapper replaces the entrypoint: the image's own (or the manifest's) and its
            // command become the wrapper's arguments, as Docker would have run them.
            let (image_entrypoint, image_cmd) = swarm.image_command(local).await?;
            let entrypoint = service.entrypoint.clone().unwrap_or(image_entrypoint);
            let command = match (&service.command, &service.entrypoint) {
                (Some(c), _) => c.clone(),
                (None, Some(_)) => vec![],
                (None, None) => image_cmd,
            };
            container.entrypoint = Some(secret_wrapper(&wrapped));
            container.command = Some(entrypoint.into_iter().chain(command).collect());
        }
        let mut service_labels = plan::stack_labels(stack);
        service_labels.insert(labels::SERVICE.into(), name.to_string());
        let spec = ServiceSpec {
            name: service_name(stack, name),
            container,
            network: overlay_network(stack),
            secrets,
            run_once: service.job,
            publish_on_node,
            labels: service_labels,
        };
        let id = swarm.create_service(&spec).await?;
        report.action = Action::Create;
        self.reporter.phase(name, Phase::Starting, "waiting for its task");
        let started = Instant::now();
        if service.job {
            return match self.task_end(&id, true).await? {
                TaskEnd::Ended { state, exit_code: Some(0), .. } if state == "complete" => {
                    report.outcome = Outcome::Completed;
                    report.ready_seconds = Some(started.elapsed().as_secs_f64());
                    self.reporter.phase(name, Phase::Completed, "exit 0");
                    Ok(None)
                }
                TaskEnd::Ended { container: Some(c), exit_code: Some(code), .. } => {
                    Err(Failure::with_logs(ServiceError::JobFailed { code }, &c))
                }
                TaskEnd::Ended { message, state, .. } => Err(task_failed(&spec.name, &state, &message)),
                TaskEnd::Running(_) => unreachable!("task_end waits for the end of a job"),
            };
        }
        let container = match self.task_end(&id, false).await? {
            TaskEnd::Running(c) => c,
            TaskEnd::Ended { container: Some(c), exit_code, .. } if exit_code.is_some() => {
                return Err(Failure::with_logs(probes::NotReady::Exited { code: exit_code }, &c))
            }
            TaskEnd::Ended { state, message, .. } => return Err(task_failed(&spec.name, &state, &message)),
        };
        on_started();
        let probe_network = plan::network_name(stack);
        if let Err(e) = swarm.connect_network(&probe_network, &container).await {
            return Err(self.elsewhere(stack, &id, name, &container).await.unwrap_or_else(|| Failure::from(e)));
        }
        if let Some(ready) = &service.ready {
            self.reporter.phase(name, Phase::Probing, &ready.probe.describe());
            probes::wait_ready(self.docker.as_ref(), &container, &probe_network, ready)
                .await
                .map_err(|e| Failure::with_logs(e, &container))?;
        } else {
            tokio::time::sleep(self.settle).await;
            let status = self.docker.container_status(&container, &probe_network).await?;
            if !status.running {
                return Err(Failure::with_logs(ServiceError::Exited { code: status.exit_code }, &container));
            }
        }
        if let Some(m) = manifest.migrations.iter().find(|m| m.service == name && m.dir.is_some()) {
            report.migrations_applied =
                self.apply_migrations(manifest, m, &container, &probe_network).await.map_err(|e| Failure::with_logs(e, &container))?;
        }
        if !service.ports.is_empty() {
            self.ports_reachable(stack, &id, name, publish_on_node.then_some(container.as_str())).await?;
        }
        report.ready_seconds = Some(started.elapsed().as_secs_f64());
        report.outcome = Outcome::Ready;
        self.reporter.phase(name, Phase::Ready, &format!("{:.2}s", started.elapsed().as_secs_f64()));
        Ok(Some(container))
    }

    /// Why a running task's container cannot be reached from here when Swarm placed it on
    /// another node (`None` when it is on this engine: the error is another one).
    async fn elsewhere(&self, stack: &str, id: &str, name: &str, container: &str) -> Option<Failure> {
        let here = self.docker.list_containers(stack).await.ok()?;
        if here.iter().any(|c| c.id == container) {
            return None;
        }
        let tasks = swarm_of(self.docker.as_ref()).ok()?.service_tasks(id).await.ok()?;
        let node = tasks.first().and_then(|t| t.node_id.clone()).unwrap_or_else(|| "?".into());
        Some(Failure::from(Error::docker(
            format!("reaching the task of `{name}`"),
            format!(
                "Swarm placed it on node {node}, not on the node of the engine at {}; stagectl probes it, applies migrations and loads fixtures through that engine, so on a multi-node swarm the services it must reach have to run there (see README \"Beyond one node\")",
                self.docker.host()
            ),
        )))
    }

    /// Waits for the newest task of service `id` to have a running container (or, for a job,
    /// to end). A task that ends before that (or a job's task) is reported as it ended.
    async fn task_end(&self, id: &str, job: bool) -> std::result::Result<TaskEnd, Failure> {
        let swarm = swarm_of(self.docker.as_ref())?;
        let deadline = Instant::now() + TASK_START_TIMEOUT;
        let mut running_since: Option<Instant> = None;
        loop {
            let tasks = swarm.service_tasks(id).await?;
            if let Some(task) = tasks.first() {
                if task.ended() {
                    return Ok(TaskEnd::Ended {
                        container: task.container_id.clone(),
                        state: task.state.clone(),
                        exit_code: task.exit_code,
                        message: task.error.clone().unwrap_or_else(|| task.message.clone()),
                    });
                }
                if task.state == "running" {
                    running_since.get_or_insert_with(Instant::now);
                    if !job {
                        if let Some(c) = &task.container_id {
                            return Ok(TaskEnd::Running(c.clone()));
                        }
                    }
                }
            }
            // A job runs as long as it runs (as on one node); only getting it started is bounded.
            if running_since.is_none() && Instant::now() >= deadline {
                let state = tasks.first().map(|t| format!("{} ({})", t.state, t.message)).unwrap_or_else(|| "no task".into());
                return Err(Failure::from(Error::docker(
                    format!("starting service {id}"),
                    format!("no running task after {}s; last task state: {state}", TASK_START_TIMEOUT.as_secs()),
                )));
            }
            tokio::time::sleep(TASK_POLL).await;
        }
    }

    /// Waits until each published TCP port of service `id` accepts connections on this host:
    /// through the Swarm ingress (the routing mesh is programmed a moment after the task
    /// runs), or, published on the node (`on_node`: the task's container), where the node's
    /// engine bound it. Only for a local engine: a remote one's ports are not on this host's
    /// loopback.
    async fn ports_reachable(&self, stack: &str, id: &str, name: &str, on_node: Option<&str>) -> std::result::Result<(), Failure> {
        if !self.docker.host().starts_with("unix://") {
            return Ok(());
        }
        let swarm = swarm_of(self.docker.as_ref())?;
        let ports: Vec<u16> = match on_node {
            Some(container) => {
                let all = self.docker.list_containers(stack).await?;
                let c = all.into_iter().find(|c| c.id == container);
                c.map(|c| c.ports.iter().filter(|p| p.3 == "tcp").map(|p| p.1).collect()).unwrap_or_default()
            }
            None => {
                let service = swarm.list_services(stack).await?.into_iter().find(|s| s.id == id);
                service.map(|s| s.ports.iter().filter(|p| p.2 == "tcp" && p.0 != 0).map(|p| p.0).collect()).unwrap_or_default()
            }
        };
        let how = if on_node.is_some() { "on the node" } else { "through the Swarm ingress" };
        for port in ports {
            self.reporter.phase(name, Phase::Probing, &format!("published port 127.0.0.1:{port} ({how})"));
            let deadline = Instant::now() + PUBLISHED_TIMEOUT;
            loop {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        // The routing mesh needs IPVS in the (local) engine's kernel.
                        let hint = match on_node.is_none() && !std::path::Path::new("/proc/net/ip_vs").exists() {
                            true => "\n  = help: this kernel has no IPVS (/proc/net/ip_vs), which Swarm's ingress needs; deploy with `--publish host`",
                            false => "",
                        };
                        return Err(Failure::from(Error::docker(
                            format!("publishing port {port} of `{name}` {how}"),
                            format!("127.0.0.1:{port} not reachable after {}s: {e}{hint}", PUBLISHED_TIMEOUT.as_secs()),
                        )));
                    }
                    Err(_) => tokio::time::sleep(TASK_POLL).await,
                }
            }
        }
        Ok(())
    }
}

/// A task that never got a container to run (or whose container is gone): Swarm's reason.
fn task_failed(service: &str, state: &str, message: &str) -> Failure {
    Failure::from(Error::docker(format!("running service {service}"), format!("task {state}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_exports_each_secret_then_execs_the_command() {
        let w = secret_wrapper(&[("API_KEY".into(), "p_app_API_KEY".into())]);
        assert_eq!(w[0..2], ["/bin/sh".to_string(), "-c".to_string()]);
        assert_eq!(w[2], "API_KEY=\"$(cat '/run/secrets/p_app_API_KEY')\" || exit 1; export API_KEY; exec \"$@\"");
        assert_eq!(w[3], "stagectl-secrets");
    }

    #[test]
    fn with_a_registry_only_local_images_are_named_there() {
        let built = "stagectl-build/app:0123456789abcdef";
        assert_eq!(run_reference(None, true, built), built);
        assert_eq!(run_reference(Some("127.0.0.1:5000"), true, built), format!("127.0.0.1:5000/{built}"));
        assert_eq!(run_reference(Some("reg:5000/team"), false, "stagectl-snapshot/db:ab"), "reg:5000/team/stagectl-snapshot/db:ab");
        assert_eq!(run_reference(Some("127.0.0.1:5000"), false, "stagectl/postgres:15"), "stagectl/postgres:15");
    }

    #[test]
    fn names_follow_the_project() {
        assert_eq!(overlay_network("shop-x"), "shop-x");
        assert_eq!(service_name("shop-x", "db"), "shop-x_db");
        assert_eq!(secret_name("shop-x", "app", "API_KEY"), "shop-x_app_API_KEY");
    }
}
