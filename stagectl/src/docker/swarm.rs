//! What stagectl asks of Docker Swarm (`stagectl deploy --swarm`): the swarm's state, an
//! attachable overlay network, secrets, services and their tasks. A separate trait from
//! [`ContainerEngine`]: an engine reaches it through [`ContainerEngine::swarm`], which is `None`
//! unless the engine can speak Swarm (the in-memory fake cannot).

use std::collections::BTreeMap;

use super::{BoxFuture, ContainerSpec, OwnedResource};
use crate::error::Result;

/// Whether the engine is a swarm node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmState {
    /// A manager (services can be created here).
    Manager,
    /// A worker: services are created on a manager.
    Worker,
    /// Not in a swarm (or joining/leaving: `detail` says which).
    Inactive { detail: String },
}

/// A secret handed to a service: mounted as the file `/run/secrets/<file>`.
#[derive(Debug, Clone)]
pub struct SecretMount {
    pub id: String,
    pub name: String,
    pub file: String,
}

/// One Swarm service to create: the container part is what `plan::container_spec` says for a
/// single node (image, env without secret values, command, labels, ports, mounts, …).
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's name in the swarm (`<project>_<service>`).
    pub name: String,
    pub container: ContainerSpec,
    /// The overlay network the service joins, with `container.aliases` as its DNS names.
    pub network: String,
    pub secrets: Vec<SecretMount>,
    /// A job: one task, restart policy `none` (runs to completion).
    pub run_once: bool,
    /// Publish ports on the node running the task (`mode=host`) instead of Swarm's ingress.
    pub publish_on_node: bool,
    /// Labels of the service object itself.
    pub labels: BTreeMap<String, String>,
}

/// A service of a stack as the swarm reports it.
#[derive(Debug, Clone)]
pub struct ObservedService {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Published ports: `(published, target, proto)`.
    pub ports: Vec<(u16, u16, String)>,
}

/// One task of a service.
#[derive(Debug, Clone)]
pub struct ObservedTask {
    pub id: String,
    /// Swarm's task state: `new` … `running`, `complete`, `failed`, `rejected`, `shutdown`, ….
    pub state: String,
    pub desired_state: String,
    /// The task's container, once it has one.
    pub container_id: Option<String>,
    /// The node Swarm placed the task on.
    pub node_id: Option<String>,
    pub exit_code: Option<i64>,
    /// Swarm's status message and error (why a task failed or was rejected).
    pub message: String,
    pub error: Option<String>,
    /// RFC 3339 time of the last state change.
    pub timestamp: String,
}

impl ObservedTask {
    /// Whether the task has ended (will not run again).
    pub fn ended(&self) -> bool {
        matches!(self.state.as_str(), "complete" | "failed" | "rejected" | "shutdown" | "orphaned" | "remove")
    }
}

pub trait SwarmEngine: Send + Sync {
    fn swarm_state(&self) -> BoxFuture<'_, Result<SwarmState>>;
    /// Makes this engine a one-node swarm manager advertising `advertise_addr`.
    fn swarm_init<'a>(&'a self, advertise_addr: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Leaves the swarm (forced: a manager's last leave).
    fn swarm_leave(&self) -> BoxFuture<'_, Result<()>>;

    /// Creates the attachable overlay network `name` unless it exists.
    fn ensure_overlay_network<'a>(&'a self, name: &'a str, labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<()>>;
    /// Connects a container to a (local) network; already connected is fine.
    fn connect_network<'a>(&'a self, network: &'a str, container: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Creates a secret; returns its ID. The value goes to the engine only.
    fn create_secret<'a>(&'a self, name: &'a str, value: &'a [u8], labels: &'a BTreeMap<String, String>) -> BoxFuture<'a, Result<String>>;
    /// Secrets labelled with the stack (names only; values cannot be read back).
    fn list_secrets<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Vec<OwnedResource>>>;
    fn remove_secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Configs labelled with the stack (stagectl creates none today; `down` removes any).
    fn list_configs<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Vec<OwnedResource>>>;
    fn remove_config<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The image's entrypoint and command (for wrapping them; see `orchestrator::swarm`).
    fn image_command<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<(Vec<String>, Vec<String>)>>;

    fn create_service<'a>(&'a self, spec: &'a ServiceSpec) -> BoxFuture<'a, Result<String>>;
    fn list_services<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Vec<ObservedService>>>;
    fn remove_service<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// The tasks of a service, newest first.
    fn service_tasks<'a>(&'a self, service_id: &'a str) -> BoxFuture<'a, Result<Vec<ObservedTask>>>;
}
