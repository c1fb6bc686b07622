//! [`SwarmEngine`] for [`BollardEngine`]: swarm state, overlay network, secrets, services,
//! tasks. Service specs are built from the single-node [`ContainerSpec`], so a service runs
//! the same container as `up` would (image, env, command, labels, mounts, limits).

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    LocalNodeState, Mount, MountTmpfsOptions, MountType, NetworkAttachmentConfig, NetworkConnectRequest, SecretSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, SwarmInitRequest, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{LeaveSwarmOptions, ListConfigsOptions, ListSecretsOptions, ListServicesOptions, ListTasksOptions};

use super::swarm::{ObservedService, ObservedTask, ServiceSpec, SwarmEngine, SwarmState};
use super::*;

/// Standard base64 (the Engine API takes secret data so); the one place stagectl needs it.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `source:/target[:ro]` (a named volume, or a host path when it starts with `/`) as a mount.
fn bind_mount(bind: &str) -> Mount {
    let (rest, read_only) = match bind.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (bind, false),
    };
    let (source, target) = rest.split_once(':').unwrap_or((rest, rest));
    Mount {
        target: Some(target.to_string()),
        source: Some(source.to_string()),
        typ: Some(if source.starts_with('/') { MountType::BIND } else { MountType::VOLUME }),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// A tmpfs mount; `size=` (bytes, or with k/m/g) and `mode=` (octal) are carried over.
fn tmpfs_mount(target: &str, options: &str) -> Mount {
    let mut tmpfs = MountTmpfsOptions::default();
    for opt in options.split(',') {
        if let Some(size) = opt.strip_prefix("size=") {
            let (digits, unit) = size.split_at(size.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
            let scale = match unit.to_ascii_lowercase().as_str() {
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                _ => 1,
            };
            tmpfs.size_bytes = digits.parse::<i64>().ok().map(|n| n * scale);
        } else if let Some(mode) = opt.strip_prefix("mode=") {
            tmpfs.mode = i64::from_str_radix(mode, 8).ok();
        }
    }
    Mount { target: Some(target.to_string()), typ: Some(MountType::TMPFS), tmpfs_options: Some(tmpfs), ..Default::default() }
}

fn service_spec(spec: &ServiceSpec) -> bollard::models::ServiceSpec {
    let c = &spec.container;
    let mut mounts: Vec<Mount> = c.binds.iter().map(|b| bind_mount(b)).collect();
    mounts.extend(c.tmpfs.iter().map(|(t, o)| tmpfs_mount(t, o)));
    let secrets = spec
        .secrets
        .iter()
        .map(|s| TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(s.file.clone()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o444),
            }),
            secret_id: Some(s.id.clone()),
            secret_name: Some(s.name.clone()),
        })
        .collect::<Vec<_>>();
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let container = TaskSpecContainerSpec {
        image: Some(c.image.clone()),
        labels: Some(to_hash_map(&c.labels)),
        command: c.entrypoint.clone(),
        args: c.command.clone(),
        hostname: Some(c.hostname.clone()),
        env: Some(c.env.clone()),
        dir: c.working_dir.clone(),
        user: c.user.clone(),
        mounts: (!mounts.is_empty()).then_some(mounts),
        stop_grace_period: c.stop_timeout.map(|s| i64::from(s) * 1_000_000_000),
        hosts: non_empty(&c.extra_hosts.iter().map(|h| h.split_once(':').map(|(n, ip)| format!("{ip} {n}")).unwrap_or_default()).collect()),
        secrets: (!secrets.is_empty()).then_some(secrets),
        init: c.init.then_some(true),
        capability_add: non_empty(&c.cap_add),
        capability_drop: non_empty(&c.cap_drop),
        ulimits: (!c.ulimits.is_empty()).then(|| {
            c.ulimits
                .iter()
                .map(|(name, soft, hard)| bollard::models::ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(*soft),
                    hard: Some(*hard),
                })
                .collect()
        }),
        ..Default::default()
    };
    let restart = if spec.run_once {
        TaskSpecRestartPolicy { condition: Some(TaskSpecRestartPolicyConditionEnum::NONE), ..Default::default() }
    } else {
        let condition = match c.restart.as_ref().map(|(name, _)| name.as_str()) {
            Some("on-failure") => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            // A long-running service with no policy still is one in Swarm: a task that stops
            // is not replaced, as on one node a stopped container stays stopped.
            Some(_) => TaskSpecRestartPolicyConditionEnum::ANY,
            None => TaskSpecRestartPolicyConditionEnum::NONE,
        };
        let max = c.restart.as_ref().and_then(|(_, max)| max.map(i64::from));
        TaskSpecRestartPolicy { condition: Some(condition), max_attempts: max, ..Default::default() }
    };
    let ports: Vec<EndpointPortConfig> = c
        .ports
        .iter()
        .map(|(_, host, container, proto)| EndpointPortConfig {
            protocol: Some(match proto.as_str() {
                "udp" => EndpointPortConfigProtocolEnum::UDP,
                "sctp" => EndpointPortConfigProtocolEnum::SCTP,
                _ => EndpointPortConfigProtocolEnum::TCP,
            }),
            target_port: Some(i64::from(*container)),
            published_port: (*host != 0).then_some(i64::from(*host)),
            publish_mode: Some(if spec.publish_on_node {
                EndpointPortConfigPublishModeEnum::HOST
            } else {
                EndpointPortConfigPublishModeEnum::INGRESS
            }),
            ..Default::default()
        })
        .collect();
    let network = NetworkAttachmentConfig { target: Some(spec.network.clone()), aliases: Some(c.aliases.clone()), ..Default::default() };
    bollard::models::ServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(to_hash_map(&spec.labels)),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            restart_policy: Some(restart),
            networks: Some(vec![network]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }), ..Default::default() }),
        // Ports on the node need no routing mesh, and one task per service no load balancer:
        // its name then resolves to the task itself (DNS round robin) rather than to a virtual
        // IP, which needs the kernel's IPVS on every node (missing on many VMs; a VIP there
        // answers no SYN, and each new connection stalls until a retry finds another record).
        endpoint_spec: Some(EndpointSpec {
            mode: Some(if spec.publish_on_node { EndpointSpecModeEnum::DNSRR } else { EndpointSpecModeEnum::VIP }),
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    }
}

fn task(t: bollard::models::Task) -> ObservedTask {
    let status = t.status.unwrap_or_default();
    let cs = status.container_status.unwrap_or_default();
    let text = |s: Option<bollard::models::TaskState>| s.map(|s| s.to_string()).unwrap_or_default();
    ObservedTask {
        id: t.id.unwrap_or_default(),
        state: text(status.state),
        desired_state: text(t.desired_state),
        container_id: cs.container_id.filter(|c| !c.is_empty()),
        node_id: t.node_id.filter(|n| !n.is_empty()),
        exit_code: cs.exit_code,
        message: status.message.unwrap_or_default(),
        error: status.err.filter(|e| !e.is_empty()),
        timestamp: status.timestamp.map(|t| t.to_string()).unwrap_or_default(),
    }
}

impl SwarmEngine for BollardEngine {
    fn swarm_state(&self) -> BoxFuture<'_, Result<SwarmState>> {
        Box::pin(async move {
            let info = self.docker.info().await.map_err(|e| lost_or(&self.host, "reading the engine's swarm state", e))?;
            let swarm = info.swarm.unwrap_or_default();
            Ok(match swarm.local_node_state {
                Some(LocalNodeState::ACTIVE) if swarm.control_available == Some(true) => SwarmState::Manager,
                Some(LocalNodeState::ACTIVE) => SwarmState::Worker,
                other => SwarmState::Inactive {
                    detail: other.map(|s| s.to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "inactive".into()),
                },
            })
        })
    }

    fn swarm_init<'a>(&'a self, advertise_addr: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let req = SwarmInitRequest {
                listen_addr: Some(format!("{advertise_addr}:2377")),
                advertise_addr: Some(advertise_addr.to_string()),
                ..Default::default()
            };
            self.docker.init_swarm(req).await.map_err(|e| lost_or(&self.host, "initialising a swarm", e))?;
            Ok(())
        })
    }

    fn swarm_leave(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let opts = LeaveSwarmOptions { force: true };
            self.docker.leave_swarm(Some(opts)).await.map_err(|e| lost_or(&self.host, "leaving the swarm", e))
        })
    }

    fn ensure_overlay_network<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await {
                Ok(n) if n.driver.as_deref() == Some("overlay") && n.attachable == Some(true) => return Ok(()),
                // A network of that name that is not ours to use (`bridge`, `host`, a user's).
                Ok(n) => {
                    return Err(Error::docker(
                        format!("creating overlay network {name}"),
                        format!(
                        "a {} network named {name} exists and is not an attachable overlay network; deploy under another project (`-p`)",
                        n.driver.unwrap_or_default()
                    ),
                    ))
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(lost_or(&self.host, format!("inspecting network {name}"), e)),
            }
            let req = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("overlay".into()),
                attachable: Some(true),
                labels: Some(to_hash_map(labels)),
                ..Default::default()
            };
            self.docker.create_network(req).await.map_err(|e| lost_or(&self.host, format!("creating overlay network {name}"), e))?;
            Ok(())
        })
    }

    fn connect_network<'a>(&'a self, network: &'a str, container: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let req = NetworkConnectRequest { container: container.to_string(), endpoint_config: None };
            match self.docker.connect_network(network, req).await {
                Ok(()) => Ok(()),
                // "endpoint with name … already exists in network …"
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 403, message })
                    if message.contains("already exists") =>
                {
                    Ok(())
                }
                Err(e) => Err(lost_or(&self.host, format!("connecting {container} to {network}"), e)),
            }
        })
    }

    fn create_secret<'a>(&'a self, name: &'a str, value: &'a [u8], labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let spec = SecretSpec {
                name: Some(name.to_string()),
                labels: Some(to_hash_map(labels)),
                data: Some(base64(value)),
                ..Default::default()
            };
            // The error is Docker's answer about the request; it never contains the data.
            let created = self.docker.create_secret(spec).await.map_err(|e| lost_or(&self.host, format!("creating secret {name}"), e))?;
            Ok(created.id)
        })
    }

    fn list_secrets<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Vec<OwnedResource>>> {
        Box::pin(async move {
            let opts = ListSecretsOptions { filters: Some(stack_filter(stack)) };
            let list = self.docker.list_secrets(Some(opts)).await.map_err(|e| lost_or(&self.host, "listing secrets", e))?;
            Ok(list.into_iter().filter_map(|s| s.spec.and_then(|s| s.name)).map(|name| OwnedResource { name }).collect())
        })
    }

    fn remove_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.docker.delete_secret(name).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("removing secret {name}"), e)),
            }
        })
    }

    fn list_configs<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Vec<OwnedResource>>> {
        Box::pin(async move {
            let opts = ListConfigsOptions { filters: Some(stack_filter(stack)) };
            let list = self.docker.list_configs(Some(opts)).await.map_err(|e| lost_or(&self.host, "listing configs", e))?;
            Ok(list.into_iter().filter_map(|s| s.spec.and_then(|s| s.name)).map(|name| OwnedResource { name }).collect())
        })
    }

    fn remove_config<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.docker.delete_config(name).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("removing config {name}"), e)),
            }
        })
    }

    fn image_command<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<(Vec<String>, Vec<String>)>> {
        Box::pin(async move {
            let image =
                self.docker.inspect_image(reference).await.map_err(|e| lost_or(&self.host, format!("inspecting image {reference}"), e))?;
            let config = image.config.unwrap_or_default();
            Ok((config.entrypoint.unwrap_or_default(), config.cmd.unwrap_or_default()))
        })
    }

    fn create_service<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let created = self
                .docker
                .create_service(service_spec(spec), None)
                .await
                .map_err(|e| lost_or(&self.host, format!("creating service {}", spec.name), e))?;
            Ok(created.id.unwrap_or_default())
        })
    }

    fn list_services<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Vec<ObservedService>>> {
        Box::pin(async move {
            let opts = ListServicesOptions { filters: Some(stack_filter(stack)), status: None };
            let list = self.docker.list_services(Some(opts)).await.map_err(|e| lost_or(&self.host, "listing services", e))?;
            Ok(list
                .into_iter()
                .map(|s| {
                    let spec = s.spec.unwrap_or_default();
                    let ports = s
                        .endpoint
                        .and_then(|e| e.ports)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| {
                            let port = |n: Option<i64>| n.and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
                            (port(p.published_port), port(p.target_port), p.protocol.map(|p| p.to_string()).unwrap_or_else(|| "tcp".into()))
                        })
                        .collect();
                    ObservedService {
                        id: s.id.unwrap_or_default(),
                        name: spec.name.unwrap_or_default(),
                        labels: spec.labels.unwrap_or_default().into_iter().collect(),
                        ports,
                    }
                })
                .collect())
        })
    }

    fn remove_service<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.docker.delete_service(id).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("removing service {id}"), e)),
            }
        })
    }

    fn service_tasks<'a>(&'a self, service_id: &'a str) -> BoxFuture<'a, Result<Vec<ObservedTask>>> {
        Box::pin(async move {
            let filters = HashMap::from([("service".to_string(), vec![service_id.to_string()])]);
            let opts = ListTasksOptions { filters: Some(filters) };
            let list =
                self.docker.list_tasks(Some(opts)).await.map_err(|e| lost_or(&self.host, format!("listing tasks of {service_id}"), e))?;
            let mut tasks: Vec<ObservedTask> = list.into_iter().map(task).collect();
            tasks.sort_by(|a, b| b.timestamp.cmp(&a.timestamp));
            Ok(tasks)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn binds_become_volume_or_bind_mounts() {
        let m = bind_mount("proj-data:/var/lib/x:ro");
        assert_eq!(
            (m.source.as_deref(), m.target.as_deref(), m.typ, m.read_only),
            (Some("proj-data"), Some("/var/lib/x"), Some(MountType::VOLUME), Some(true))
        );
        let m = bind_mount("/srv/in:/in");
        assert_eq!((m.typ, m.read_only), (Some(MountType::BIND), Some(false)));
        let t = tmpfs_mount("/tmp", "size=64m,mode=1777");
        let o = t.tmpfs_options.unwrap();
        assert_eq!((o.size_bytes, o.mode), (Some(64 << 20), Some(0o1777)));
    }
}
