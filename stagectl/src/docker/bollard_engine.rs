//! [`ContainerEngine`] over the Docker Engine API with bollard. The API version is negotiated
//! with the engine, so older engines (Debian's 20.10 speaks 1.41) and newer ones both work.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

use super::*;
use crate::error::Error;

/// How long the first contact with the engine may take before we call it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request timeout; image builds and pulls stream and can take a while.
const REQUEST_TIMEOUT: u64 = 3600;

pub struct BollardEngine {
    pub(super) docker: Docker,
    pub(super) host: String,
    /// The engine is Podman (see `podman`: where its API differs).
    pub(super) podman: bool,
}

fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

fn stack_filter(stack: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{}={stack}", labels::STACK)])])
}

fn to_hash_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Whether the engine itself went away — its socket gone, the connection refused, cut, or
/// accepted and closed without an answer — as opposed to the engine refusing a request: the
/// former is "Docker unreachable" (exit 3) also in the middle of a run. The rule is "no HTTP
/// answer at all, or an answer cut short": a transport failure, told by the error's type (the
/// hyper client's connect and send errors, hyper's connection errors, I/O errors on the
/// connection), never by its text. An answer from the engine (any status) is not a loss.
fn engine_lost(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as B;
    match e {
        // Connecting failed, or the request could not be sent / its answer was not received.
        B::HyperLegacyError { err } => err.is_connect() || chain_is_transport(err),
        B::HyperResponseError { err } => hyper_transport(err) || chain_is_transport(err),
        // Reading an answer's body or an attached stream from the connection failed. bollard
        // hands hyper's body errors on as `io::Error::other(text)` (the type is lost there),
        // so this variant is the type information left: it only comes from the connection.
        B::IOError { .. } => true,
        B::SocketNotFoundError(_) => true,
        _ => chain_is_transport(e),
    }
}

/// A hyper error that means the connection failed, not the message: closed, cut before the
/// answer was complete, a body that could not be read or written to its end.
fn hyper_transport(err: &hyper::Error) -> bool {
    err.is_closed() || err.is_incomplete_message() || err.is_canceled() || err.is_body_write_aborted() || err.is_shutdown()
}

/// An I/O error of a broken connection (bollard wraps a body stream's hyper error in an
/// `io::Error` of kind `Other`: look inside it).
fn io_transport(io: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    if matches!(
        io.kind(),
        K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotFound | K::UnexpectedEof
    ) {
        return true;
    }
    match io.get_ref() {
        Some(inner) => dyn_transport(inner) || chain_is_transport(inner),
        None => false,
    }
}

fn dyn_transport(err: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(h) = err.downcast_ref::<hyper::Error>() {
        // hyper's body and I/O errors ("error reading a body from connection") carry the
        // connection's I/O error as their cause; its kind is checked by the caller's walk.
        return hyper_transport(h);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return io_transport(io);
    }
    false
}

/// Whether any error in `err`'s source chain is a transport failure.
fn chain_is_transport(err: &dyn std::error::Error) -> bool {
    let mut source = err.source();
    while let Some(e) = source {
        if dyn_transport(e) {
            return true;
        }
        source = e.source();
    }
    false
}

/// The error for a failed Docker API call: unreachable when the engine went away, else the
/// engine's own refusal with what was being done.
pub(super) fn lost_or(host: &str, context: impl Into<String>, e: bollard::errors::Error) -> Error {
    let context = context.into();
    if engine_lost(&e) {
        Error::DockerUnreachable { host: host.to_string(), detail: format!("lost while {context}: {e}") }
    } else {
        Error::docker(context, e)
    }
}

pub(super) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

pub(super) fn log_line(chunk: bollard::container::LogOutput) -> String {
    String::from_utf8_lossy(&chunk.into_bytes()).into_owned()
}

impl BollardEngine {
    /// Connects to `DOCKER_HOST` (or the local socket), negotiates the API version and pings.
    pub async fn connect() -> Result<Self> {
        let host = docker_host();
        let unreachable = |detail: String| Error::DockerUnreachable { host: host.clone(), detail };
        let ping = podman::ping_headers(&host).await;
        let podman = ping.as_ref().is_some_and(|(podman, _)| *podman);
        let docker = match ping.and_then(|(podman, api)| podman.then_some(api).flatten()).and_then(|api| podman::podman_client(&host, &api))
        {
            Some(docker) => docker,
            None => {
                let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
                let docker = docker.with_timeout(Duration::from_secs(REQUEST_TIMEOUT));
                match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => return Err(unreachable(e.to_string())),
                    Err(_) => return Err(unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))),
                }
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))),
        }
        tracing::debug!(host, version = ?docker.client_version(), podman, "connected to Docker");
        Ok(BollardEngine { docker, host, podman })
    }
}

/// How long after an exec's output ends its command may take to be seen exited.
pub(super) const EXEC_EXIT_WAIT: Duration = Duration::from_secs(3);
/// How long past its stop grace a container being removed by someone else may take to go.
const REMOVAL_MARGIN_SECS: u64 = 30;

impl BollardEngine {
    /// Polls until container `id` no longer exists, for at most `limit`.
    async fn wait_gone(&self, id: &str, limit: Duration, conflict: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.docker.inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>).await {
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(lost_or(&self.host, format!("waiting for the removal of container {id}"), e)),
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::docker(
                        format!("removing container {id}"),
                        format!("{conflict}; still there after {}s", limit.as_secs()),
                    ));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The image `raw` again, tagged `reference`, with a fresh config and no parent: the
    /// same layers (nothing is copied), the same runtime config (`Config`: environment with the
    /// secrets already emptied, labels, command, volumes…), and no `ContainerConfig` — that
    /// copy of the committing container's config, secrets included, is what engines before API
    /// 1.44 keep in a commit. The engine loads it from a tar holding only `manifest.json` and
    /// the config: `docker load` skips layers it already has (raw's), so no layer is sent.
    async fn reissue_without_container_config(&self, raw: &str, reference: &str) -> Result<String> {
        let ctx = || format!("snapshot {reference}");
        let info = self.docker.inspect_image(raw).await.map_err(|e| lost_or(&self.host, ctx(), e))?;
        let diff_ids = info.root_fs.and_then(|r| r.layers).unwrap_or_default();
        let layers: Vec<String> = (0..diff_ids.len()).map(|n| format!("{n}/layer.tar")).collect();
        let mut config = serde_json::json!({
            "architecture": info.architecture.unwrap_or_else(|| "amd64".into()),
            "os": info.os.unwrap_or_else(|| "linux".into()),
            "created": info.created,
            "config": info.config.unwrap_or_default(),
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if let Some(variant) = info.variant {
            config["variant"] = variant.into();
        }
        let config = serde_json::to_vec(&config).map_err(|e| Error::docker(ctx(), e))?;
        let config_name = format!("{}.json", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&config)));
        let manifest = serde_json::to_vec(&serde_json::json!([{ "Config": config_name, "RepoTags": [reference], "Layers": layers }]))
            .map_err(|e| Error::docker(ctx(), e))?;
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [(config_name.as_str(), &config), ("manifest.json", &manifest)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, data.as_slice()).map_err(|e| Error::docker(ctx(), e))?;
        }
        let tar = tar.into_inner().map_err(|e| Error::docker(ctx(), e))?;
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::new().quiet(true).build();
        let mut stream = self.docker.import_image(opts, bollard::body_full(tar.into()), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| lost_or(&self.host, ctx(), e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::docker(ctx(), err));
            }
        }
        self.image_id(reference).await?.ok_or_else(|| Error::docker(ctx(), "the engine loaded no image"))
    }
}

impl ContainerEngine for BollardEngine {
    fn host(&self) -> String {
        self.host.clone()
    }

    fn list_containers(&self, stack: &str) -> BoxFuture<'_, Result<Vec<ObservedContainer>>> {
        let opts = ListContainersOptionsBuilder::new().all(true).filters(&stack_filter(stack)).build();
        self.observed(opts)
    }

    fn list_all_containers(&self) -> BoxFuture<'_, Result<Vec<ObservedContainer>>> {
        self.observed(ListContainersOptionsBuilder::new().all(true).build())
    }

    fn list_networks(&self, stack: &str) -> BoxFuture<'_, Result<Vec<OwnedResource>>> {
        let opts = ListNetworksOptionsBuilder::new().filters(&stack_filter(stack)).build();
        Box::pin(async move {
            let list = self.docker.list_networks(Some(opts)).await.map_err(|e| lost_or(&self.host, "listing networks", e))?;
            Ok(list.into_iter().filter_map(|n| Some(OwnedResource { name: n.name? })).collect())
        })
    }

    fn list_volumes(&self, stack: &str) -> BoxFuture<'_, Result<Vec<OwnedResource>>> {
        let opts = ListVolumesOptionsBuilder::new().filters(&stack_filter(stack)).build();
        Box::pin(async move {
            let list = self.docker.list_volumes(Some(opts)).await.map_err(|e| lost_or(&self.host, "listing volumes", e))?;
            Ok(list.volumes.unwrap_or_default().into_iter().map(|v| OwnedResource { name: v.name }).collect())
        })
    }

    fn image_id<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            match self.docker.inspect_image(reference).await {
                Ok(info) => Ok(info.id),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(lost_or(&self.host, format!("inspecting image {reference}"), e)),
            }
        })
    }

    fn pull_image<'a>(&'a self, reference: &'a str, progress: &'a (dyn Fn(ImageProgress) + Send + Sync)) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (name, tag) = split_reference(reference);
            let opts = CreateImageOptionsBuilder::new().from_image(name).tag(tag).build();
            let mut stream = self.docker.create_image(Some(opts), None, None);
            let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| lost_or(&self.host, format!("pulling {reference}"), e))?;
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(Error::docker(format!("pulling {reference}"), err));
                }
                match (info.id, info.progress_detail) {
                    (Some(id), Some(pd)) if pd.total.unwrap_or(0) > 0 => {
                        layers.insert(id, (pd.current.unwrap_or(0) as u64, pd.total.unwrap_or(0) as u64));
                        let (current, total) = layers.values().fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
                        progress(ImageProgress::Bytes { current, total });
                    }
                    _ => {
                        if let Some(status) = info.status {
                            progress(ImageProgress::Line(status));
                        }
                    }
                }
            }
            Ok(())
        })
    }

    fn build_image<'a>(
        &'a self,
        context_tar: Vec<u8>,
        dockerfile: &'a str,
        tags: &'a [String],
        build_args: &'a BTreeMap<String, String>,
        labels: &'a BTreeMap<String, String>,
        progress: &'a (dyn Fn(ImageProgress) + Send + Sync),
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let first = tags.first().cloned().unwrap_or_default();
            let opts = BuildImageOptionsBuilder::new()
                .dockerfile(dockerfile)
                .t(&first)
                .rm(true)
                .forcerm(true)
                .buildargs(&to_hash_map(build_args))
                .labels(&to_hash_map(labels))
                .build();
            let body = bollard::body_full(context_tar.into());
            let mut stream = self.docker.build_image(opts, None, Some(body));
            let mut image_id = None;
            let mut tail: Vec<String> = Vec::new();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| {
                    if engine_lost(&e) {
                        lost_or(&self.host, format!("building {first}"), e)
                    } else {
                        Error::docker(format!("building {first}"), format!("{e}\n{}", tail.join("\n")))
                    }
                })?;
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(Error::docker(format!("building {first}"), format!("{err}\n{}", tail.join("\n"))));
                }
                if let Some(line) = info.stream {
                    for l in line.lines().filter(|l| !l.trim().is_empty()) {
                        tail.push(l.to_string());
                        if tail.len() > 20 {
                            tail.remove(0);
                        }
                        progress(ImageProgress::Line(l.to_string()));
                    }
                }
                if let Some(aux) = info.aux {
                    if let Some(id) = aux.id {
                        image_id = Some(id);
                    }
                }
            }
            let id = match image_id {
                Some(id) => id,
                None => {
                    self.image_id(&first).await?.ok_or_else(|| Error::docker(format!("building {first}"), "the build produced no image"))?
                }
            };
            for extra in tags.iter().skip(1) {
                let (repo, tag) = split_reference(extra);
                let opts = bollard::query_parameters::TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
                self.docker.tag_image(&id, Some(opts)).await.map_err(|e| lost_or(&self.host, format!("tagging {extra}"), e))?;
            }
            Ok(id)
        })
    }

    fn ensure_network<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(lost_or(&self.host, format!("inspecting network {name}"), e)),
            }
            let req = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(to_hash_map(labels)),
                ..Default::default()
            };
            match self.docker.create_network(req).await {
                Ok(_) => Ok(()),
                // Another run created it in between: fine.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("creating network {name}"), e)),
            }
        })
    }

    fn ensure_volume<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let req = VolumeCreateRequest { name: Some(name.to_string()), labels: Some(to_hash_map(labels)), ..Default::default() };
            // Creating an existing volume is a no-op in the Docker API.
            self.docker.create_volume(req).await.map(|_| ()).map_err(|e| lost_or(&self.host, format!("creating volume {name}"), e))
        })
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.docker.remove_network(name).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("removing network {name}"), e)),
            }
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("removing volume {name}"), e)),
            }
        })
    }

    fn create_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
            let mut exposed = Vec::new();
            for (ip, host, container, proto) in &spec.ports {
                let key = format!("{container}/{proto}");
                exposed.push(key.clone());
                port_bindings
                    .entry(key)
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding { host_ip: ip.clone(), host_port: Some(if *host == 0 { String::new() } else { host.to_string() }) });
            }
            let body = ContainerCreateBody {
                image: Some(spec.image.clone()),
                hostname: Some(spec.hostname.clone()),
                env: Some(spec.env.clone()),
                cmd: spec.command.clone(),
                entrypoint: spec.entrypoint.clone(),
                working_dir: spec.working_dir.clone(),
                user: spec.user.clone(),
                labels: Some(to_hash_map(&spec.labels)),
                exposed_ports: (!exposed.is_empty()).then_some(exposed),
                stop_timeout: spec.stop_timeout.map(i64::from),
                host_config: Some(HostConfig {
                    binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
                    port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                    network_mode: Some(spec.network.clone()),
                    init: Some(spec.init),
                    tmpfs: (!spec.tmpfs.is_empty()).then(|| to_hash_map(&spec.tmpfs)),
                    ulimits: (!spec.ulimits.is_empty()).then(|| {
                        spec.ulimits
                            .iter()
                            .map(|(name, soft, hard)| ResourcesUlimits { name: Some(name.clone()), soft: Some(*soft), hard: Some(*hard) })
                            .collect()
                    }),
                    shm_size: spec.shm_size.and_then(|n| i64::try_from(n).ok()),
                    cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
                    cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
                    extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
                    restart_policy: spec.restart.as_ref().map(|(name, max)| RestartPolicy {
                        name: Some(match name.as_str() {
                            "always" => RestartPolicyNameEnum::ALWAYS,
                            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                            _ => RestartPolicyNameEnum::NO,
                        }),
                        maximum_retry_count: max.map(i64::from),
                    }),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        spec.network.clone(),
                        EndpointSettings { aliases: Some(spec.aliases.clone()), ..Default::default() },
                    )])),
                }),
                ..Default::default()
            };
            let opts = CreateContainerOptionsBuilder::new().name(&spec.name).build();
            let created = self
                .docker
                .create_container(Some(opts), body)
                .await
                .map_err(|e| lost_or(&self.host, format!("creating container {}", spec.name), e))?;
            Ok(created.id)
        })
    }

    fn start_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.docker
                .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
                .await
                .map_err(|e| lost_or(&self.host, format!("starting container {id}"), e))
        })
    }

    fn remove_container<'a>(&'a self, id: &'a str, grace_secs: u32) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if grace_secs > 0 {
                let opts = StopContainerOptionsBuilder::new().t(grace_secs as i32).build();
                match self.docker.stop_container(id, Some(opts)).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => return Ok(()),
                    // 304: already stopped.
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
                    Err(e) => return Err(lost_or(&self.host, format!("stopping container {id}"), e)),
                }
            }
            // `v`: the anonymous volumes of the image's `VOLUME`s go with the container. stagectl
            // never attaches them to another container, so kept they would only pile up.
            let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            match self.docker.remove_container(id, Some(opts)).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                // 409: removal already in progress — another `down`, or one whose process was
                // killed: the engine carries on without it. The container is not gone yet, and a
                // same-named one cannot be created until it is: wait for it (bounded).
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message }) => {
                    let limit = Duration::from_secs(u64::from(grace_secs) + REMOVAL_MARGIN_SECS);
                    self.wait_gone(id, limit, &message).await
                }
                Err(e) => Err(lost_or(&self.host, format!("removing container {id}"), e)),
            }
        })
    }

    fn stop_container<'a>(&'a self, id: &'a str, grace_secs: u32) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let opts = StopContainerOptionsBuilder::new().t(grace_secs as i32).build();
            match self.docker.stop_container(id, Some(opts)).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                // 304: already stopped.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("stopping container {id}"), e)),
            }
        })
    }

    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let opts = bollard::query_parameters::RenameContainerOptionsBuilder::new().name(name).build();
            self.docker.rename_container(id, opts).await.map_err(|e| lost_or(&self.host, format!("renaming container {id}"), e))
        })
    }

    fn disconnect_network<'a>(&'a self, id: &'a str, network: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let request = bollard::models::NetworkDisconnectRequest { container: id.to_string(), force: Some(true) };
            self.docker
                .disconnect_network(network, request)
                .await
                .map_err(|e| lost_or(&self.host, format!("disconnecting {id} from {network}"), e))
        })
    }

    fn container_status<'a>(&'a self, id: &'a str, network: &'a str) -> BoxFuture<'a, Result<ContainerStatus>> {
        Box::pin(async move {
            let info = self
                .docker
                .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>)
                .await
                .map_err(|e| lost_or(&self.host, format!("inspecting container {id}"), e))?;
            let restart_count = info.restart_count.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
            let state = info.state.unwrap_or_default();
            let settings = info.network_settings.unwrap_or_default();
            let ip = settings.networks.as_ref().and_then(|n| n.get(network)).and_then(|e| e.ip_address.clone()).filter(|ip| !ip.is_empty());
            let mut published = BTreeMap::new();
            for (key, bindings) in settings.ports.unwrap_or_default() {
                if let Some(port) = bindings.unwrap_or_default().iter().filter_map(|b| b.host_port.as_deref()?.parse::<u16>().ok()).next() {
                    published.insert(key, port);
                }
            }
            let mut health = state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty() && s != "none");
            if self.podman && state.running == Some(true) && matches!(health.as_deref(), Some("starting" | "unhealthy")) {
                health = self.run_podman_healthcheck(id).await.or(health);
            }
            Ok(ContainerStatus {
                running: state.running.unwrap_or(false),
                exit_code: state.exit_code,
                health,
                ip,
                published,
                started_at: state.started_at,
                restart_count,
            })
        })
    }

    fn wait_exit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            let mut stream = self.docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
            match stream.next().await {
                Some(Ok(r)) => Ok(r.status_code),
                // bollard reports a non-zero exit as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
                Some(Err(e)) => Err(lost_or(&self.host, format!("waiting for container {id}"), e)),
                None => Err(Error::docker(format!("waiting for container {id}"), "no exit status")),
            }
        })
    }

    fn tail_logs<'a>(&'a self, id: &'a str, n: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let text: Vec<String> = self.stream_logs(id, false, Some(n)).try_collect().await?;
            let lines: Vec<String> = text.concat().lines().map(str::to_string).collect();
            let skip = lines.len().saturating_sub(n);
            Ok(lines.into_iter().skip(skip).collect())
        })
    }

    fn stream_logs(&self, id: &str, follow: bool, tail: Option<usize>) -> LineStream {
        let tail = tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
        let opts = LogsOptionsBuilder::new().follow(follow).stdout(true).stderr(true).tail(&tail).build();
        let id = id.to_string();
        let host = self.host.clone();
        Box::pin(
            self.docker
                .logs(&id, Some(opts))
                .map(move |item| item.map(log_line).map_err(|e| lost_or(&host, format!("reading logs of {id}"), e))),
        )
    }

    fn exec<'a>(&'a self, id: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(self.run_exec(id, None, command, None))
    }

    fn exec_as<'a>(&'a self, id: &'a str, user: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(self.run_exec(id, Some(user), command, None))
    }

    fn exec_with_input<'a>(&'a self, id: &'a str, command: &'a [String], input: ByteStream) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(self.run_exec(id, None, command, Some(input)))
    }

    fn exec_into<'a>(
        &'a self,
        from: ExecAs<'a>,
        command: &'a [String],
        to: &'a str,
        to_dir: &'a str,
    ) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(self.exec_into_container(from, command, to, to_dir))
    }

    fn copy_between<'a>(&'a self, from: &'a str, from_path: &'a str, to: &'a str, to_dir: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.copy_archive(from, from_path, to, to_dir))
    }

    fn upload_tar<'a>(&'a self, to: &'a str, to_dir: &'a str, tar: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.upload(to, to_dir, tar))
    }

    fn image_volumes<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.declared_volumes(reference))
    }

    fn commit<'a>(
        &'a self,
        id: &'a str,
        reference: &'a str,
        labels: &'a BTreeMap<String, String>,
        clear_env: &'a [String],
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let (repo, tag) = split_reference(reference);
            // The engine reads the changes as Dockerfile lines, one a line. One label a line:
            // Podman takes everything after a LABEL's first `=` as its value.
            let change = labels
                .iter()
                .map(|(k, v)| format!("LABEL {k}={}", serde_json::to_string(v).unwrap_or_default()))
                .chain(clear_env.iter().map(|name| format!("ENV {name}=\"\"")))
                .collect::<Vec<_>>()
                .join("\n");
            // Engines before API 1.44 also store the committing container's whole config in the
            // image ("ContainerConfig"), secrets included, and no change can edit it. With secrets
            // to clear, the commit gets a temporary tag and the snapshot is the same layers under
            // a config without it, loaded as a new image with no parent; the commit is then
            // deleted. No layer is copied. (A build `FROM` the commit, as before, kept the
            // commit as the snapshot's parent, secret and all.)
            let stores_container_config = {
                let v = self.docker.client_version();
                (v.major_version, v.minor_version) < (1, 44)
            };
            // Podman keeps no such copy (and cannot load the layer-less tar the rebuild uses).
            let rebuild = !clear_env.is_empty() && stores_container_config && !self.podman;
            let raw_tag = if rebuild { format!("{tag}-raw") } else { tag.to_string() };
            let opts = bollard::query_parameters::CommitContainerOptionsBuilder::new()
                .container(id)
                .repo(repo)
                .tag(&raw_tag)
                .pause(true)
                .changes(&change)
                .build();
            let r = self
                .docker
                .commit_container(opts, bollard::models::ContainerConfig::default())
                .await
                .map_err(|e| lost_or(&self.host, format!("committing {id} as {reference}"), e))?;
            if !rebuild {
                return Ok(r.id);
            }
            let raw = format!("{repo}:{raw_tag}");
            let reissued = self.reissue_without_container_config(&raw, reference).await;
            let _ = self.docker.remove_image(&raw, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
            reissued
        })
    }

    fn list_images<'a>(&'a self, label: &'a str) -> BoxFuture<'a, Result<Vec<ImageInfo>>> {
        Box::pin(async move {
            let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
            let opts = bollard::query_parameters::ListImagesOptionsBuilder::new().filters(&filters).build();
            let list = self.docker.list_images(Some(opts)).await.map_err(|e| lost_or(&self.host, "listing images", e))?;
            let mut out = Vec::new();
            for img in list {
                let last_tagged = match self.docker.inspect_image(&img.id).await {
                    // Podman never records it: its zero time (year 1) means unknown.
                    Ok(info) => info
                        .metadata
                        .and_then(|m| m.last_tag_time)
                        .map(|t| t.to_string())
                        .filter(|t| !t.starts_with("0001-"))
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                };
                out.push(ImageInfo {
                    id: img.id,
                    tags: img.repo_tags.iter().map(|t| podman::familiar_name(t, self.podman)).collect(),
                    size: img.size.max(0) as u64,
                    created: img.created,
                    last_tagged,
                    labels: img.labels.into_iter().collect(),
                });
            }
            Ok(out)
        })
    }

    fn remove_image<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Podman's forced removal also removes the containers using the image, running
            // ones included; Docker's refuses. An image in use stays, as on Docker.
            if self.podman {
                self.refuse_if_podman_image_in_use(reference).await?;
            }
            let opts = bollard::query_parameters::RemoveImageOptionsBuilder::new().force(true).build();
            match self.docker.remove_image(reference, Some(opts), None).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(lost_or(&self.host, format!("removing image {reference}"), e)),
            }
        })
    }

    fn image_size<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            match self.docker.inspect_image(reference).await {
                Ok(info) => Ok(info.size.map(|s| s.max(0) as u64)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(lost_or(&self.host, format!("inspecting image {reference}"), e)),
            }
        })
    }

    fn tag_image<'a>(&'a self, id: &'a str, reference: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (repo, tag) = split_reference(reference);
            let opts = bollard::query_parameters::TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
            self.docker.tag_image(id, Some(opts)).await.map_err(|e| lost_or(&self.host, format!("tagging {reference}"), e))
        })
    }

    fn export_images<'a>(&'a self, references: &'a [String], path: &'a std::path::Path) -> BoxFuture<'a, Result<u64>> {
        Box::pin(self.save_to_file(references, path))
    }

    fn import_images<'a>(&'a self, path: &'a std::path::Path) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.load_from_file(path))
    }

    fn push_image<'a>(&'a self, reference: &'a str, progress: &'a (dyn Fn(ImageProgress) + Send + Sync)) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.push_to_registry(reference, progress))
    }

    fn swarm(&self) -> Option<&dyn swarm::SwarmEngine> {
        Some(self)
    }

    fn is_podman(&self) -> bool {
        self.podman
    }
}

impl BollardEngine {
    /// The containers `opts` selects, reduced to what planning, status and `ls` need.
    fn observed(&self, opts: bollard::query_parameters::ListContainersOptions) -> BoxFuture<'_, Result<Vec<ObservedContainer>>> {
        Box::pin(async move {
            let list = self.docker.list_containers(Some(opts)).await.map_err(|e| lost_or(&self.host, "listing containers", e))?;
            Ok(list
                .into_iter()
                .map(|c| {
                    let labels: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
                    ObservedContainer {
                        id: c.id.unwrap_or_default(),
                        name: c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default(),
                        service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                        spec_hash: labels.get(labels::SPEC_HASH).cloned().unwrap_or_default(),
                        state: match c.state {
                            Some(ContainerSummaryStateEnum::RUNNING) => RunState::Running,
                            Some(ContainerSummaryStateEnum::EXITED) => RunState::Exited,
                            Some(ContainerSummaryStateEnum::CREATED) => RunState::Created,
                            _ => RunState::Other,
                        },
                        exit_code: c.status.as_deref().and_then(exit_code_from_status),
                        image: labels
                            .get(labels::IMAGE)
                            .cloned()
                            .or(c.image.map(|i| podman::familiar_name(&i, self.podman)))
                            .unwrap_or_default(),
                        created: c.created.unwrap_or_default(),
                        ports: c
                            .ports
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|p| {
                                Some((
                                    p.ip.unwrap_or_default(),
                                    p.public_port?,
                                    p.private_port,
                                    p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()),
                                ))
                            })
                            .collect(),
                        labels,
                    }
                })
                .collect())
        })
    }
}

/// Docker's list API gives an exited container's code only in text: `Exited (137) 2 minutes ago`.
fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// `name[:tag]` → (name, tag), leaving a registry port alone and defaulting the tag to `latest`.
pub fn split_reference(reference: &str) -> (&str, &str) {
    if reference.contains('@') {
        return (reference, "");
    }
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    }
}

/// Docker Swarm (a child module: it uses the engine's private parts).
#[path = "bollard_swarm.rs"]
mod swarm_impl;
/// `snapshots export` / `snapshots import` (a child module: it uses the engine's private parts).
#[path = "bollard_transfer.rs"]
mod transfer;

/// Podman's Docker-compatible API: the differences (a child module, as `transfer`).
#[path = "bollard_podman.rs"]
mod podman;

#[cfg(test)]
#[path = "bollard_tests.rs"]
mod tests;
