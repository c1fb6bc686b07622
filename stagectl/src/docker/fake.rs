//! An in-memory [`ContainerEngine`] for unit tests: no Docker, no network, deterministic.
//!
//! It keeps containers, networks, volumes and images with their labels, records every call
//! in order (`"create_container s-db"`, `"start_container s-db#1"`, ...), and can be scripted
//! per container *name* (so the script also holds for a recreated container):
//! * [`FakeEngine::exits_with`]: the container exits with a code as soon as it starts (jobs do
//!   by default, with 0; other containers keep running);
//! * [`FakeEngine::exec_results`]: what successive `exec` calls return (exec readiness probes);
//! * [`FakeEngine::health`]: the Docker healthcheck status;
//! * [`FakeEngine::logs`]: the container's output;
//! * [`FakeEngine::fail_on`]: every call whose record starts with a prefix fails.
//!
//! Only what is observable through the trait is modelled, with Docker's refusals: creating a
//! container whose name is taken, whose network or image is missing, or exec in a container
//! that is not running, fail as they would. Container ids are `<name>#<n>`, so calls read
//! naturally and a recreated container is told apart from the one it replaced.
//! Compiled only for the library's unit tests (`#[cfg(test)]`): they are the only users (the
//! integration tests drive real Docker on purpose), and the binary never carries it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use futures_util::StreamExt;

use super::*;
use crate::error::Error;

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub spec: ContainerSpec,
    pub state: RunState,
    pub exit_code: Option<i64>,
    /// Order of creation (the fake's clock).
    pub created: i64,
}

#[derive(Debug, Clone)]
struct FakeImage {
    id: String,
    tags: Vec<String>,
    labels: BTreeMap<String, String>,
}

/// How a container with a given name behaves.
#[derive(Debug, Clone, Default)]
struct Script {
    /// `Some(code)`: exits with `code` when started. `None`: jobs exit 0, others keep running.
    exit_code: Option<i64>,
    /// Results of successive `exec` calls; the last one repeats; none means `(0, "")`.
    exec_results: VecDeque<(i64, String)>,
    health: Option<String>,
    logs: Vec<String>,
    /// Docker's restart count reported for the container.
    restarts: u64,
}

#[derive(Default)]
struct State {
    calls: Vec<String>,
    created: i64,
    containers: BTreeMap<String, FakeContainer>,
    networks: BTreeMap<String, BTreeMap<String, String>>,
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    images: Vec<FakeImage>,
    scripts: BTreeMap<String, Script>,
    /// `(call prefix, detail)`: matching calls fail with `Docker: <call>: <detail>`.
    failures: Vec<(String, String)>,
}

impl State {
    fn image(&self, reference: &str) -> Option<&FakeImage> {
        self.images.iter().find(|i| i.id == reference || i.tags.iter().any(|t| t == reference))
    }

    fn container(&self, id: &str) -> Result<&FakeContainer> {
        self.containers.get(id).ok_or_else(|| Error::docker(format!("inspecting container {id}"), format!("No such container: {id}")))
    }

    fn script(&self, container: &FakeContainer) -> Script {
        self.scripts.get(&container.spec.name).cloned().unwrap_or_default()
    }

    fn add_image(&mut self, id: String, tags: &[String], labels: BTreeMap<String, String>) {
        // A tag points at one image: moving it takes it away from the old one.
        for image in &mut self.images {
            image.tags.retain(|t| !tags.contains(t));
        }
        match self.images.iter_mut().find(|i| i.id == id) {
            Some(image) => image.tags.extend(tags.iter().cloned()),
            None => self.images.push(FakeImage { id, tags: tags.to_vec(), labels }),
        }
    }
}

#[derive(Default)]
pub struct FakeEngine {
    state: Mutex<State>,
}

fn has_label(labels: &BTreeMap<String, String>, key: &str, value: &str) -> bool {
    labels.get(key).is_some_and(|v| v == value)
}

impl FakeEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the fake's lock is never held across a panic")
    }

    /// The containers of `stack` (or all), as Docker lists them.
    fn observed(&self, stack: Option<&str>) -> Vec<ObservedContainer> {
        let state = self.state();
        state
            .containers
            .values()
            .filter(|c| stack.is_none_or(|stack| has_label(&c.spec.labels, labels::STACK, stack)))
            .map(|c| ObservedContainer {
                id: c.id.clone(),
                name: c.spec.name.clone(),
                service: c.spec.labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                spec_hash: c.spec.labels.get(labels::SPEC_HASH).cloned().unwrap_or_default(),
                state: c.state,
                exit_code: c.exit_code,
                image: c.spec.labels.get(labels::IMAGE).cloned().unwrap_or_else(|| c.spec.image.clone()),
                created: c.created,
                labels: c.spec.labels.clone(),
                // Docker lists published ports of running containers only.
                ports: match c.state {
                    RunState::Running => c.spec.ports.iter().map(|(ip, host, port, proto)| published(ip, *host, *port, proto)).collect(),
                    _ => vec![],
                },
            })
            .collect()
    }

    fn script_mut(&self, name: &str, edit: impl FnOnce(&mut Script)) {
        edit(self.state().scripts.entry(name.to_string()).or_default());
    }

    /// Records the call, then fails it if a [`FakeEngine::fail_on`] prefix matches.
    fn record(&self, call: String) -> Result<()> {
        let mut state = self.state();
        state.calls.push(call.clone());
        match state.failures.iter().find(|(prefix, _)| call.starts_with(prefix.as_str())) {
            Some((_, detail)) => Err(Error::docker(call, detail)),
            None => Ok(()),
        }
    }

    /// [`FakeEngine::record`] after yielding, like a real request, so concurrent pipelines
    /// interleave.
    async fn call(&self, call: String) -> Result<()> {
        tokio::task::yield_now().await;
        self.record(call)
    }

    /// Adds an image with labels (e.g. a snapshot) under `reference`.
    pub fn labelled_image(&self, id: &str, reference: &str, labels: BTreeMap<String, String>) {
        self.state().add_image(id.to_string(), &[reference.to_string()], labels);
    }

    /// Makes `reference` present locally (as if pulled earlier); returns its id.
    pub fn image(&self, reference: &str) -> String {
        let id = format!("sha256:{reference}");
        self.state().add_image(id.clone(), &[reference.to_string()], BTreeMap::new());
        id
    }

    /// Containers named `name` exit with `code` as soon as they start.
    pub fn exits_with(&self, name: &str, code: i64) {
        self.script_mut(name, |s| s.exit_code = Some(code));
    }

    /// What successive `exec` calls in containers named `name` return; the last one repeats.
    pub fn exec_results(&self, name: &str, results: &[(i64, &str)]) {
        self.script_mut(name, |s| s.exec_results = results.iter().map(|(code, out)| (*code, out.to_string())).collect());
    }

    /// The running container named `name` exits with `code` now (a crash some time after its
    /// start).
    pub fn exit_now(&self, name: &str, code: i64) {
        if let Some(c) = self.state().containers.values_mut().find(|c| c.spec.name == name && c.state == RunState::Running) {
            c.state = RunState::Exited;
            c.exit_code = Some(code);
        }
    }

    /// The Docker healthcheck status (`healthy`, `unhealthy`, `starting`) of containers named `name`.
    pub fn health(&self, name: &str, status: &str) {
        self.script_mut(name, |s| s.health = Some(status.to_string()));
    }

    /// Docker's restart count of containers named `name` (their restart policy at work).
    pub fn restarts(&self, name: &str, count: u64) {
        self.script_mut(name, |s| s.restarts = count);
    }

    /// The output of containers named `name`.
    pub fn logs(&self, name: &str, lines: &[&str]) {
        self.script_mut(name, |s| s.logs = lines.iter().map(|l| l.to_string()).collect());
    }

    /// Every call whose record starts with `call_prefix` (e.g. `"create_container s-app"`) fails.
    pub fn fail_on(&self, call_prefix: &str, detail: &str) {
        self.state().failures.push((call_prefix.to_string(), detail.to_string()));
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Calls starting with `prefix`, in order.
    pub fn calls_to(&self, prefix: &str) -> Vec<String> {
        self.state().calls.iter().filter(|c| c.starts_with(prefix)).cloned().collect()
    }

    /// Index of the first call starting with `prefix`.
    pub fn first_call(&self, prefix: &str) -> Option<usize> {
        self.state().calls.iter().position(|c| c.starts_with(prefix))
    }

    /// Index of the last call starting with `prefix`.
    pub fn last_call(&self, prefix: &str) -> Option<usize> {
        self.state().calls.iter().rposition(|c| c.starts_with(prefix))
    }

    pub fn forget_calls(&self) {
        self.state().calls.clear();
    }

    /// The container named `name`, if there is one.
    pub fn container(&self, name: &str) -> Option<FakeContainer> {
        self.state().containers.values().find(|c| c.spec.name == name).cloned()
    }

    pub fn container_names(&self) -> Vec<String> {
        self.state().containers.values().map(|c| c.spec.name.clone()).collect()
    }

    pub fn networks(&self) -> Vec<String> {
        self.state().networks.keys().cloned().collect()
    }

    pub fn volumes(&self) -> Vec<String> {
        self.state().volumes.keys().cloned().collect()
    }
}

impl ContainerEngine for FakeEngine {
    fn host(&self) -> String {
        "fake".to_string()
    }

    fn list_containers(&self, stack: &str) -> BoxFuture<'_, Result<Vec<ObservedContainer>>> {
        let stack = stack.to_string();
        Box::pin(async move {
            self.call(format!("list_containers {stack}")).await?;
            Ok(self.observed(Some(&stack)))
        })
    }

    fn list_all_containers(&self) -> BoxFuture<'_, Result<Vec<ObservedContainer>>> {
        Box::pin(async move {
            self.call("list_all_containers".to_string()).await?;
            Ok(self.observed(None))
        })
    }

    fn list_networks(&self, stack: &str) -> BoxFuture<'_, Result<Vec<OwnedResource>>> {
        let stack = stack.to_string();
        Box::pin(async move {
            self.call(format!("list_networks {stack}")).await?;
            let state = self.state();
            let owned = state.networks.iter().filter(|(_, l)| has_label(l, labels::STACK, &stack));
            Ok(owned.map(|(name, _)| OwnedResource { name: name.clone() }).collect())
        })
    }

    fn list_volumes(&self, stack: &str) -> BoxFuture<'_, Result<Vec<OwnedResource>>> {
        let stack = stack.to_string();
        Box::pin(async move {
            self.call(format!("list_volumes {stack}")).await?;
            let state = self.state();
            let owned = state.volumes.iter().filter(|(_, l)| has_label(l, labels::STACK, &stack));
            Ok(owned.map(|(name, _)| OwnedResource { name: name.clone() }).collect())
        })
    }

    fn image_id<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            self.call(format!("image_id {reference}")).await?;
            Ok(self.state().image(reference).map(|i| i.id.clone()))
        })
    }

    fn pull_image<'a>(&'a self, reference: &'a str, _progress: &'a (dyn Fn(ImageProgress) + Send + Sync)) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("pull_image {reference}")).await?;
            self.image(reference);
            Ok(())
        })
    }

    fn build_image<'a>(
        &'a self,
        _context_tar: Vec<u8>,
        _dockerfile: &'a str,
        tags: &'a [String],
        _build_args: &'a BTreeMap<String, String>,
        labels: &'a BTreeMap<String, String>,
        _progress: &'a (dyn Fn(ImageProgress) + Send + Sync),
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let first = tags.first().cloned().unwrap_or_default();
            self.call(format!("build_image {first}")).await?;
            let id = format!("sha256:build-{first}");
            self.state().add_image(id.clone(), tags, labels.clone());
            Ok(id)
        })
    }

    fn ensure_network<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("ensure_network {name}")).await?;
            self.state().networks.entry(name.to_string()).or_insert_with(|| labels.clone());
            Ok(())
        })
    }

    fn ensure_volume<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("ensure_volume {name}")).await?;
            self.state().volumes.entry(name.to_string()).or_insert_with(|| labels.clone());
            Ok(())
        })
    }

    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("remove_network {name}")).await?;
            self.state().networks.remove(name);
            Ok(())
        })
    }

    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("remove_volume {name}")).await?;
            self.state().volumes.remove(name);
            Ok(())
        })
    }

    fn create_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            self.call(format!("create_container {}", spec.name)).await?;
            let mut state = self.state();
            if state.containers.values().any(|c| c.spec.name == spec.name) {
                return Err(Error::docker(format!("creating container {}", spec.name), "Conflict. The container name is already in use"));
            }
            if !spec.network.is_empty() && !state.networks.contains_key(&spec.network) {
                return Err(Error::docker(format!("creating container {}", spec.name), format!("network {} not found", spec.network)));
            }
            if state.image(&spec.image).is_none() {
                return Err(Error::docker(format!("creating container {}", spec.name), format!("No such image: {}", spec.image)));
            }
            state.created += 1;
            let id = format!("{}#{}", spec.name, state.created);
            let container =
                FakeContainer { id: id.clone(), spec: spec.clone(), state: RunState::Created, exit_code: None, created: state.created };
            state.containers.insert(id.clone(), container);
            Ok(id)
        })
    }

    fn start_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("start_container {id}")).await?;
            let mut state = self.state();
            let container = state.container(id)?;
            let is_job = has_label(&container.spec.labels, labels::JOB, "true");
            let exit_code = state.script(container).exit_code.or(is_job.then_some(0));
            let container = state.containers.get_mut(id).expect("looked up above");
            container.state = if exit_code.is_some() { RunState::Exited } else { RunState::Running };
            container.exit_code = exit_code;
            Ok(())
        })
    }

    fn remove_container<'a>(&'a self, id: &'a str, grace_secs: u32) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("remove_container {id} grace={grace_secs}")).await?;
            // Like the real engine's adapter: an absent container is already removed.
            self.state().containers.remove(id);
            Ok(())
        })
    }

    fn stop_container<'a>(&'a self, id: &'a str, grace_secs: u32) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("stop_container {id} grace={grace_secs}")).await?;
            if let Some(c) = self.state().containers.get_mut(id) {
                if c.state == RunState::Running {
                    c.state = RunState::Exited;
                    c.exit_code = Some(0);
                }
            }
            Ok(())
        })
    }

    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("rename_container {id} {name}")).await?;
            match self.state().containers.get_mut(id) {
                Some(c) => {
                    c.spec.name = name.to_string();
                    Ok(())
                }
                None => Err(Error::docker(format!("renaming container {id}"), "no such container")),
            }
        })
    }

    fn disconnect_network<'a>(&'a self, id: &'a str, network: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("disconnect_network {id} {network}")).await?;
            match self.state().containers.get_mut(id) {
                Some(c) if c.spec.network == network => {
                    c.spec.network = String::new();
                    Ok(())
                }
                _ => Err(Error::docker(format!("disconnecting {id} from {network}"), "not connected")),
            }
        })
    }

    fn container_status<'a>(&'a self, id: &'a str, network: &'a str) -> BoxFuture<'a, Result<ContainerStatus>> {
        Box::pin(async move {
            self.call(format!("container_status {id}")).await?;
            let state = self.state();
            let c = state.container(id)?;
            let running = c.state == RunState::Running;
            Ok(ContainerStatus {
                running,
                exit_code: Some(c.exit_code.unwrap_or(0)),
                health: state.script(c).health.filter(|_| running),
                ip: (running && c.spec.network == network).then(|| format!("10.89.0.{}", c.created)),
                published: c
                    .spec
                    .ports
                    .iter()
                    .map(|(ip, host, port, proto)| published(ip, *host, *port, proto))
                    .map(|p| (format!("{}/{}", p.2, p.3), p.1))
                    .collect(),
                started_at: (c.state != RunState::Created).then(|| "2024-01-01T00:00:00Z".to_string()),
                restart_count: state.script(c).restarts,
            })
        })
    }

    fn wait_exit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move {
            self.call(format!("wait_exit {id}")).await?;
            let code = {
                let state = self.state();
                let c = state.container(id)?;
                (c.state == RunState::Exited).then(|| c.exit_code.unwrap_or(0))
            };
            match code {
                Some(code) => Ok(code),
                // A container that keeps running never exits: the wait lasts until dropped.
                None => std::future::pending().await,
            }
        })
    }

    fn tail_logs<'a>(&'a self, id: &'a str, n: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            self.call(format!("tail_logs {id}")).await?;
            let state = self.state();
            let logs = state.script(state.container(id)?).logs;
            Ok(logs[logs.len().saturating_sub(n)..].to_vec())
        })
    }

    fn stream_logs(&self, id: &str, follow: bool, tail: Option<usize>) -> LineStream {
        let found = self.record(format!("stream_logs {id}")).and_then(|()| {
            let state = self.state();
            let c = state.container(id)?;
            Ok((state.script(c).logs, c.state == RunState::Running))
        });
        let (lines, running) = match found {
            Ok(found) => found,
            Err(e) => return Box::pin(futures_util::stream::iter([Err(e)])),
        };
        let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
        let lines = futures_util::stream::iter(lines.into_iter().skip(skip).map(|l| Ok(format!("{l}\n"))));
        // Following a running container's output waits for more, which never comes here.
        if follow && running {
            Box::pin(lines.chain(futures_util::stream::pending()))
        } else {
            Box::pin(lines)
        }
    }

    fn exec<'a>(&'a self, id: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(async move {
            self.call(format!("exec {id} {}", command.join(" "))).await?;
            self.next_exec_result(id)
        })
    }

    fn exec_as<'a>(&'a self, id: &'a str, user: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(async move {
            self.call(format!("exec_as {id} {user} {}", command.join(" "))).await?;
            self.next_exec_result(id)
        })
    }

    fn exec_into<'a>(
        &'a self,
        from: ExecAs<'a>,
        command: &'a [String],
        to: &'a str,
        to_dir: &'a str,
    ) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(async move {
            self.call(format!("exec_into {}:{} {} -> {to}:{to_dir}", from.container, from.user, command.join(" "))).await?;
            self.state().container(to)?;
            self.next_exec_result(from.container)
        })
    }

    fn copy_between<'a>(&'a self, from: &'a str, from_path: &'a str, to: &'a str, to_dir: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("copy_between {from}:{from_path} {to}:{to_dir}")).await?;
            let state = self.state();
            state.container(from)?;
            state.container(to)?;
            Ok(())
        })
    }

    fn upload_tar<'a>(&'a self, to: &'a str, to_dir: &'a str, _tar: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("upload_tar {to}:{to_dir}")).await?;
            self.state().container(to)?;
            Ok(())
        })
    }

    fn image_volumes<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            self.call(format!("image_volumes {reference}")).await?;
            Ok(vec![])
        })
    }

    fn exec_with_input<'a>(&'a self, id: &'a str, command: &'a [String], mut input: ByteStream) -> BoxFuture<'a, Result<(i64, String)>> {
        Box::pin(async move {
            self.call(format!("exec_with_input {id} {}", command.join(" "))).await?;
            while let Some(chunk) = input.next().await {
                chunk.map_err(|e| Error::StackFailed(e.to_string()))?;
            }
            self.next_exec_result(id)
        })
    }

    fn commit<'a>(
        &'a self,
        id: &'a str,
        reference: &'a str,
        labels: &'a BTreeMap<String, String>,
        _clear_env: &'a [String],
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            self.call(format!("commit {id} {reference}")).await?;
            let mut state = self.state();
            state.container(id)?;
            let image_id = format!("sha256:commit-{id}");
            state.add_image(image_id.clone(), &[reference.to_string()], labels.clone());
            Ok(image_id)
        })
    }

    fn list_images<'a>(&'a self, label: &'a str) -> BoxFuture<'a, Result<Vec<ImageInfo>>> {
        Box::pin(async move {
            self.call(format!("list_images {label}")).await?;
            let (key, value) = label.split_once('=').map_or((label, None), |(k, v)| (k, Some(v)));
            let state = self.state();
            let matching = state.images.iter().filter(|i| i.labels.get(key).is_some_and(|v| value.is_none_or(|want| v == want)));
            Ok(matching
                .map(|i| ImageInfo {
                    id: i.id.clone(),
                    tags: i.tags.clone(),
                    size: 0,
                    created: 0,
                    last_tagged: String::new(),
                    labels: i.labels.clone(),
                })
                .collect())
        })
    }

    fn remove_image<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("remove_image {reference}")).await?;
            // As Docker: a tag of an image with other tags is only untagged.
            let mut state = self.state();
            for i in state.images.iter_mut().filter(|i| i.tags.len() > 1) {
                i.tags.retain(|t| t != reference);
            }
            state.images.retain(|i| i.id != reference && !i.tags.iter().any(|t| t == reference));
            Ok(())
        })
    }

    fn image_size<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            self.call(format!("image_size {reference}")).await?;
            Ok(self.state().image(reference).map(|_| 0))
        })
    }

    fn tag_image<'a>(&'a self, id: &'a str, reference: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("tag_image {id} {reference}")).await?;
            let mut state = self.state();
            let image_id = state
                .image(id)
                .map(|i| i.id.clone())
                .ok_or_else(|| Error::docker(format!("tagging {reference}"), format!("No such image: {id}")))?;
            state.add_image(image_id, &[reference.to_string()], BTreeMap::new());
            Ok(())
        })
    }

    /// The "archive" is JSON: each image's ID, the requested tags and labels.
    fn export_images<'a>(&'a self, references: &'a [String], path: &'a std::path::Path) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            self.call(format!("export_images {}", references.join(" "))).await?;
            let images: Vec<serde_json::Value> = {
                let state = self.state();
                let mut out = Vec::new();
                for r in references {
                    let i = state.image(r).ok_or_else(|| Error::docker("saving images", format!("No such image: {r}")))?;
                    out.push(serde_json::json!({ "id": i.id, "tags": [r], "labels": i.labels }));
                }
                out
            };
            let text = serde_json::to_vec(&images).unwrap_or_default();
            std::fs::write(path, &text).map_err(|e| Error::docker("saving images", e))?;
            Ok(text.len() as u64)
        })
    }

    fn import_images<'a>(&'a self, path: &'a std::path::Path) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            self.call(format!("import_images {}", path.display())).await?;
            let text = std::fs::read(path).map_err(|e| Error::docker("loading images", e))?;
            let images: Vec<serde_json::Value> =
                serde_json::from_slice(&text).map_err(|e| Error::docker("loading images", format!("invalid tar header: {e}")))?;
            let mut loaded = Vec::new();
            let mut state = self.state();
            for i in images {
                let id = i["id"].as_str().unwrap_or_default().to_string();
                let tags: Vec<String> = i["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
                let labels: BTreeMap<String, String> = serde_json::from_value(i["labels"].clone()).unwrap_or_default();
                state.add_image(id.clone(), &tags, labels);
                if tags.is_empty() {
                    loaded.push(id);
                }
                loaded.extend(tags);
            }
            Ok(loaded)
        })
    }

    /// Records `push_image REFERENCE` (fail it with `fail_on`); the image must be present.
    fn push_image<'a>(&'a self, reference: &'a str, progress: &'a (dyn Fn(ImageProgress) + Send + Sync)) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.call(format!("push_image {reference}")).await?;
            if self.state().image(reference).is_none() {
                return Err(Error::docker(
                    format!("pushing {reference}"),
                    format!("An image does not exist locally with the tag: {reference}"),
                ));
            }
            progress(ImageProgress::Line("Pushed".into()));
            Ok(())
        })
    }
}

impl FakeEngine {
    fn next_exec_result(&self, id: &str) -> Result<(i64, String)> {
        let mut state = self.state();
        let c = state.container(id)?;
        if c.state != RunState::Running {
            return Err(Error::docker(format!("exec in {id}"), format!("container {id} is not running")));
        }
        let name = c.spec.name.clone();
        let script = state.scripts.entry(name).or_default();
        let result = if script.exec_results.len() > 1 { script.exec_results.pop_front() } else { script.exec_results.front().cloned() };
        Ok(result.unwrap_or((0, String::new())))
    }
}

/// A published port as Docker lists it: all addresses as `0.0.0.0`, "any free port" as an
/// ephemeral one.
fn published(ip: &Option<String>, host: u16, container: u16, proto: &str) -> (String, u16, u16, String) {
    let host = if host == 0 { 32768 + container } else { host };
    (ip.clone().unwrap_or_else(|| "0.0.0.0".into()), host, container, proto.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fake_refuses_what_docker_refuses_and_runs_jobs_to_their_scripted_exit() {
        let fake = FakeEngine::new();
        let labels = BTreeMap::from([(labels::JOB.to_string(), "true".to_string())]);
        let spec = ContainerSpec { name: "s-job".into(), image: "pg".into(), network: "s-net".into(), labels, ..Default::default() };
        let err = fake.create_container(&spec).await.unwrap_err().to_string();
        assert_eq!(err, "Docker: creating container s-job: network s-net not found");
        fake.ensure_network("s-net", &BTreeMap::new()).await.unwrap();
        assert!(fake.create_container(&spec).await.unwrap_err().to_string().ends_with("No such image: pg"));

        fake.image("pg");
        let id = fake.create_container(&spec).await.unwrap();
        fake.start_container(&id).await.unwrap();
        assert_eq!(fake.wait_exit(&id).await.unwrap(), 0, "jobs exit 0 unless scripted");
        assert!(fake.exec(&id, &["true".into()]).await.is_err(), "no exec in an exited container");
        fake.remove_container(&id, 0).await.unwrap();

        fake.exits_with("s-job", 2);
        fake.fail_on("tail_logs", "boom");
        let id = fake.create_container(&spec).await.unwrap();
        fake.start_container(&id).await.unwrap();
        assert_eq!(fake.wait_exit(&id).await.unwrap(), 2);
        assert_eq!(fake.tail_logs(&id, 5).await.unwrap_err().to_string(), format!("Docker: tail_logs {id}: boom"));
        assert_eq!(fake.calls_to("create_container").len(), 4, "failed calls are recorded too");
    }
}
