//! The Docker boundary. Everything else talks to Docker only through [`ContainerEngine`]; its
//! real implementation, [`BollardEngine`], is the only code that imports bollard (`fake` is an
//! in-memory one for unit tests). Failures are [`crate::error::Error::Docker`] (what was being
//! done, and Docker's answer) or, when connecting, [`crate::error::Error::DockerUnreachable`].

mod bollard_archive;
mod bollard_engine;
mod bollard_exec;
mod bollard_push;
/// An in-memory engine for unit tests (see its module docs).
#[cfg(test)]
pub mod fake;
/// Docker Swarm: services, tasks, secrets, the overlay network (`deploy --swarm`).
pub mod swarm;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use futures_util::Stream;

pub use bollard_engine::BollardEngine;

use crate::error::Result;

/// Labels every resource stagectl creates carries; `down` finds what to remove by them.
pub mod labels {
    pub const STACK: &str = "org.stagectl.stack";
    pub const SERVICE: &str = "org.stagectl.service";
    pub const SPEC_HASH: &str = "org.stagectl.spec-hash";
    /// What the spec hash covers, as JSON without secrets or env values (`plan::drift`).
    pub const SPEC: &str = "org.stagectl.spec";
    pub const VERSION: &str = "org.stagectl.version";
    pub const JOB: &str = "org.stagectl.job";
    pub const CONTEXT_HASH: &str = "org.stagectl.context-hash";
    /// The image reference as the user knows it (containers are created from the image ID).
    pub const IMAGE: &str = "org.stagectl.image";
    /// The manifest file a container's stack was brought up from (for `stagectl ls`).
    pub const MANIFEST: &str = "org.stagectl.manifest";
    /// Seconds between SIGTERM and SIGKILL when stopping (the service's `stop_grace_period`).
    pub const STOP_GRACE: &str = "org.stagectl.stop-grace";
    /// On a data service: its fixture files and their content digests (JSON), as loaded.
    pub const FIXTURE_FILES: &str = "org.stagectl.fixture-files";
    /// Put by Swarm on a task's container (`deploy --swarm`).
    pub const SWARM_TASK: &str = "com.docker.swarm.task.id";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Exited,
    Other,
}

/// A container as Docker reports it, reduced to what planning and status need.
#[derive(Debug, Clone)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    pub spec_hash: String,
    pub state: RunState,
    /// Exit code of an exited container (parsed from Docker's status text).
    pub exit_code: Option<i64>,
    /// The image reference (from our label), else what Docker reports.
    pub image: String,
    /// Unix seconds.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// `(host_ip, host_port, container_port, proto)` for each published port.
    pub ports: Vec<(String, u16, u16, String)>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub hostname: String,
    pub network: String,
    pub aliases: Vec<String>,
    pub env: Vec<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `(host_ip, host_port, container_port, proto)`; host_port 0 means "any free port".
    pub ports: Vec<(Option<String>, u16, u16, String)>,
    /// Docker bind strings: `volume:/path[:ro]` or `/host:/path[:ro]`.
    pub binds: Vec<String>,
    /// tmpfs mounts: container path → options.
    pub tmpfs: BTreeMap<String, String>,
    /// `(name, soft, hard)`.
    pub ulimits: Vec<(String, i64, i64)>,
    /// Bytes of /dev/shm.
    pub shm_size: Option<u64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `host:ip` lines for /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// Run Docker's init as PID 1.
    pub init: bool,
    /// Seconds `docker stop` waits before killing.
    pub stop_timeout: Option<u32>,
    /// Docker restart policy name and maximum retries; `None`: no restarts.
    pub restart: Option<(String, Option<u32>)>,
}

/// Live state of one container.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub running: bool,
    pub exit_code: Option<i64>,
    /// `healthy`, `unhealthy`, `starting`, or `None` when the image has no healthcheck.
    pub health: Option<String>,
    /// IP address on the given network, when attached.
    pub ip: Option<String>,
    /// Published host port for each `container_port/proto`.
    pub published: BTreeMap<String, u16>,
    /// RFC 3339 start time.
    pub started_at: Option<String>,
    /// How often Docker restarted the container (its restart policy).
    pub restart_count: u64,
}

/// A resource owned by a stack other than containers.
#[derive(Debug, Clone)]
pub struct OwnedResource {
    pub name: String,
}

pub type LineStream = Pin<Box<dyn Stream<Item = Result<String>> + Send>>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Progress of a pull or build: a line of text, or bytes done of a total.
#[derive(Debug, Clone)]
pub enum ImageProgress {
    Line(String),
    Bytes { current: u64, total: u64 },
}

pub trait ContainerEngine: Send + Sync + 'static {
    /// Where the engine is, for messages.
    fn host(&self) -> String;

    fn list_containers(&self, stack: &str) -> BoxFuture<'_, Result<Vec<ObservedContainer>>>;
    /// Every container on the engine, stagectl's or not (for `ls` and free host ports).
    fn list_all_containers(&self) -> BoxFuture<'_, Result<Vec<ObservedContainer>>>;
    fn list_networks(&self, stack: &str) -> BoxFuture<'_, Result<Vec<OwnedResource>>>;
    fn list_volumes(&self, stack: &str) -> BoxFuture<'_, Result<Vec<OwnedResource>>>;

    /// The image's ID, or `None` when it is not present locally.
    fn image_id<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Option<String>>>;
    fn pull_image<'a>(&'a self, reference: &'a str, progress: &'a (dyn Fn(ImageProgress) + Send + Sync)) -> BoxFuture<'a, Result<()>>;
    /// Builds from a tar of the context; returns the image ID.
    fn build_image<'a>(
        &'a self,
        context_tar: Vec<u8>,
        dockerfile: &'a str,
        tags: &'a [String],
        build_args: &'a BTreeMap<String, String>,
        labels: &'a BTreeMap<String, String>,
        progress: &'a (dyn Fn(ImageProgress) + Send + Sync),
    ) -> BoxFuture<'a, Result<String>>;

    fn ensure_network<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>>;
    fn ensure_volume<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>>;
    fn remove_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
    fn remove_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;

    fn create_container<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, Result<String>>;
    fn start_container<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Stops with SIGTERM (or the image's stop signal) and a grace period, then removes.
    /// With `grace_secs == 0` the container is killed at once.
    fn remove_container<'a>(&'a self, id: &'a str, grace_secs: u32) -> BoxFuture<'a, Result<()>>;
    /// Stops the container (SIGTERM or the image's stop signal, killed after `grace_secs`)
    /// without removing it; a stopped or absent container is fine.
    fn stop_container<'a>(&'a self, id: &'a str, grace_secs: u32) -> BoxFuture<'a, Result<()>>;
    /// Renames a container (a removal can then go on while a new one takes its name).
    fn rename_container<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Takes a container off a network (its aliases there stop resolving at once).
    fn disconnect_network<'a>(&'a self, id: &'a str, network: &'a str) -> BoxFuture<'a, Result<()>>;
    fn container_status<'a>(&'a self, id: &'a str, network: &'a str) -> BoxFuture<'a, Result<ContainerStatus>>;
    /// Waits for the container to exit and returns its exit code.
    fn wait_exit<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<i64>>;
    /// The last `n` lines of output (stdout and stderr interleaved).
    fn tail_logs<'a>(&'a self, id: &'a str, n: usize) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Output lines from the start (or the last `tail` lines), then new ones while `follow`.
    fn stream_logs(&self, id: &str, follow: bool, tail: Option<usize>) -> LineStream;
    /// Runs a command in the container, returns its exit code and combined output.
    fn exec<'a>(&'a self, id: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<(i64, String)>>;
    /// Like `exec`, as `user` (a name or `uid:gid`; Docker's exec `User`).
    fn exec_as<'a>(&'a self, id: &'a str, user: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<(i64, String)>>;
    /// Runs `command` in `from` and extracts what it writes to stdout, a tar, into the
    /// directory `to_dir` of container `to` (which need not be started), streamed through
    /// Docker's archive API: nothing is held in memory, owners and modes are the tar's.
    /// Returns the command's exit code and its stderr; a failed command may have left part of
    /// the tar extracted.
    fn exec_into<'a>(
        &'a self,
        from: ExecAs<'a>,
        command: &'a [String],
        to: &'a str,
        to_dir: &'a str,
    ) -> BoxFuture<'a, Result<(i64, String)>>;
    /// Copies the file or directory `from_path` of container `from` (stopped or not; a path in
    /// a volume too) into the directory `to_dir` of container `to`, streamed through Docker's
    /// archive API: owners and modes kept, nothing held in memory.
    fn copy_between<'a>(&'a self, from: &'a str, from_path: &'a str, to: &'a str, to_dir: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Extracts the tar `tar` into the directory `to_dir` of container `to`.
    fn upload_tar<'a>(&'a self, to: &'a str, to_dir: &'a str, tar: Vec<u8>) -> BoxFuture<'a, Result<()>>;
    /// The paths an image declares as volumes (`VOLUME` in its Dockerfile): a container gets a
    /// fresh anonymous volume there, which a commit does not hold.
    fn image_volumes<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Like `exec`, streaming `input` to the command's stdin (closed at the end of the stream).
    fn exec_with_input<'a>(&'a self, id: &'a str, command: &'a [String], input: ByteStream) -> BoxFuture<'a, Result<(i64, String)>>;

    /// Commits the container's file system (paused while it is copied) as `reference`, with
    /// `labels`, and with the variables named in `clear_env` emptied in the image's config (a
    /// container's environment is copied into the image; secrets must not be).
    fn commit<'a>(
        &'a self,
        id: &'a str,
        reference: &'a str,
        labels: &'a BTreeMap<String, String>,
        clear_env: &'a [String],
    ) -> BoxFuture<'a, Result<String>>;
    /// Local images carrying the label `key=value` (or just `key`).
    fn list_images<'a>(&'a self, label: &'a str) -> BoxFuture<'a, Result<Vec<ImageInfo>>>;
    fn remove_image<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Total size of a local image in bytes, `None` if absent.
    fn image_size<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<Option<u64>>>;
    /// Points `reference` at `id`; re-tagging refreshes the image's last-tag time (our LRU clock).
    fn tag_image<'a>(&'a self, id: &'a str, reference: &'a str) -> BoxFuture<'a, Result<()>>;
    /// `docker save` of `references` into the file `path` (a plain tar), streamed: the archive
    /// is never held in memory. Written beside `path` and renamed, so a failed export leaves
    /// no partial file under `path`. Returns the bytes written.
    fn export_images<'a>(&'a self, references: &'a [String], path: &'a std::path::Path) -> BoxFuture<'a, Result<u64>>;
    /// `docker load` of the archive in the file `path`, streamed. Returns what it loaded: the
    /// references (`name:tag`) it tagged, or the bare image IDs of untagged images.
    fn import_images<'a>(&'a self, path: &'a std::path::Path) -> BoxFuture<'a, Result<Vec<String>>>;
    /// Pushes the local image `reference` (`registry[/path]/repo:tag`) to the registry it
    /// names, without credentials (`snapshots push`).
    fn push_image<'a>(&'a self, reference: &'a str, progress: &'a (dyn Fn(ImageProgress) + Send + Sync)) -> BoxFuture<'a, Result<()>>;

    /// The engine's Swarm side, when it has one (`deploy --swarm`, and `down` of such a stack).
    fn swarm(&self) -> Option<&dyn swarm::SwarmEngine> {
        None
    }

    /// Whether the engine is Podman, whose Docker-compatible API (4.3) breaks two things the
    /// faster paths need: the extraction of a live WAL copy ([`Self::exec_into`] ends in "write
    /// |1: broken pipe", so PostgreSQL snapshots are committed the older way) and listing a
    /// container it stopped (state `stopped`, which the API's schema does not have, so
    /// `rebuild` removes the old containers before creating new ones).
    fn is_podman(&self) -> bool {
        false
    }
}

/// A container and the user (a name or `uid:gid`) a command runs as there.
#[derive(Debug, Clone, Copy)]
pub struct ExecAs<'a> {
    pub container: &'a str,
    pub user: &'a str,
}

pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: u64,
    /// Unix seconds.
    pub created: i64,
    /// RFC 3339-ish text from Docker (`Metadata.LastTagTime`), empty if unknown.
    pub last_tagged: String,
    pub labels: BTreeMap<String, String>,
}
