//! Executes plans against a [`ContainerEngine`]: `up`, `down`, `status`.
//!
//! `up` is a DAG run: every service is a future that waits for its dependencies' outcomes
//! (ready, or exited 0 for jobs) and then starts, so independent services start in parallel.
//! A failure is a recorded result: dependents are skipped, independent services carry on, and
//! the run reports failure at the end.
//!
//! Module map (children use this module's types; among themselves, no cycles):
//! * `up`: the run and the per-service pipeline, one method per phase; uses `fixtures`,
//!   `migrate`, `failure`, `images`;
//! * `fixtures`: a data service's snapshot key, load, marker and snapshot (phases of `up`);
//! * `migrate`: native migrations of a database service (a phase of `up`);
//! * `failure`: [`ServiceError`], why a service failed (wrapping the error types of
//!   `images`, `fixtures`, `migrate`), and how that becomes its report;
//! * `down`, `status`: the other two operations;
//! * `lifecycle`: `stop` and `restart` of some services' containers (kept, not removed);
//! * `drift`: `stagectl diff`, what `up` would change (the comparison is `plan::drift`);
//! * `images`: pull, or host build command + deterministic context tar + build; `Builds`:
//!   one build per distinct (context, dockerfile, args, host command) per `up`, awaited by
//!   every service that shares it (one image id, one failure message);
//! * `ports`: `"auto:PORT"` host ports, allocated and reserved before `up` creates anything;
//! * `progress`: the [`Reporter`] events;
//! * `snapshots`: `snapshots export` / `import`, a stack's fixture snapshots as one
//!   `docker save` archive (the current keys resolved as `drift` does; uses `fixtures`, `images`).
//!
//! Outside this module they use `docker` (the trait only), `plan`, `manifest`, `probes`,
//! `data`, `migrations`, `secrets`, `error`.

mod down;
mod drift;
mod failure;
mod fixtures;
pub mod images;
mod lifecycle;
mod migrate;
mod pg_snapshot;
pub mod ports;
pub mod progress;
pub mod registry;
pub mod snapshots;
mod status;
pub mod swarm;
mod up;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::data;
use crate::docker::ContainerEngine;
use crate::plan::Action;
pub use failure::ServiceError;
pub use fixtures::FixtureError;
pub use images::ImageError;
pub use lifecycle::{LifecycleReport, LifecycleRow};
pub use migrate::MigrationError;
/// On a snapshot image: the data directory a restored PostgreSQL must use (`PGDATA`).
pub use pg_snapshot::PGDATA_LABEL;
pub use progress::{Phase, Reporter, Silent};

/// Lines of container output shown when a service fails.
pub const FAILURE_LOG_LINES: usize = 20;
/// Grace period for a graceful stop before Docker kills the container.
pub const STOP_GRACE_SECS: u32 = 10;
/// A started service without a readiness probe is ready when it is still running this long
/// after its start, not restarted: long enough for a process that fails at start (bad
/// config, missing file, import error) to have exited. Only services without a probe wait
/// for it, concurrently.
pub const SETTLE_WINDOW: Duration = Duration::from_millis(750);

pub struct Orchestrator<E: ContainerEngine + ?Sized> {
    pub docker: Arc<E>,
    pub reporter: Arc<dyn Reporter>,
    /// Containers seen holding the load marker. It is written once, after a complete load, and
    /// never removed, so a long-lived engine (the daemon's status) checks each container once
    /// instead of a `docker exec` per status refresh.
    loaded: Mutex<HashSet<String>>,
    /// [`SETTLE_WINDOW`]; shorter in the fake-engine tests.
    settle: Duration,
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    pub fn new(docker: Arc<E>, reporter: Arc<dyn Reporter>) -> Self {
        Orchestrator { docker, reporter, loaded: Default::default(), settle: SETTLE_WINDOW }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ready,
    Completed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    pub action: Action,
    pub outcome: Outcome,
    pub image: String,
    /// How the image was obtained: present, pulled, built, cached.
    pub image_source: String,
    pub image_seconds: f64,
    /// From container start to ready (or job exit).
    pub ready_seconds: Option<f64>,
    pub message: Option<String>,
    /// Last lines of output when the service failed (secrets masked).
    pub logs: Vec<String>,
    /// Data services: what happened to their fixtures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixtures: Option<FixtureReport>,
    /// Database services with native migrations: those applied in this run, with ms each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub migrations_applied: Vec<(String, f64)>,
    /// Times Docker restarted the service's container (its `restart` policy), as of this run.
    #[serde(skip_serializing_if = "is_zero")]
    pub restarts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FixtureReport {
    /// hit (restored from a snapshot), miss (loaded, snapshot taken), off (loaded, no snapshot:
    /// disabled, or the data is on a mount), kept (container unchanged, data already there),
    /// failed (loaded, the snapshot could not be saved: `snapshot_error` says why).
    pub snapshot: String,
    pub rows: u64,
    pub files: Vec<data::FileLoad>,
    /// Time to get the data in place (seed metric M6, data refresh time).
    pub refresh_seconds: f64,
    /// Restored from a snapshot: from creating the container to its probe passing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_to_ready_seconds: Option<f64>,
    /// A snapshot saved in the background, after the service was ready: how long it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_error: Option<String>,
}

impl ServiceReport {
    /// A service's report before its pipeline ran: failed until a phase says otherwise.
    pub(crate) fn pending(service: &crate::manifest::Service) -> Self {
        ServiceReport {
            service: service.name.clone(),
            action: Action::Create,
            outcome: Outcome::Failed,
            image: service.image.clone().unwrap_or_default(),
            image_source: String::new(),
            image_seconds: 0.0,
            ready_seconds: None,
            message: None,
            logs: vec![],
            fixtures: None,
            migrations_applied: vec![],
            restarts: 0,
        }
    }
}

impl FixtureReport {
    pub(crate) fn new(snapshot: &str, rows: u64, files: Vec<data::FileLoad>, refresh_seconds: f64) -> Self {
        FixtureReport {
            snapshot: snapshot.to_string(),
            rows,
            files,
            refresh_seconds,
            restore_to_ready_seconds: None,
            snapshot_seconds: None,
            snapshot_error: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub stack: String,
    pub ok: bool,
    /// Until `up` returned: the stack ready and every snapshot saved.
    pub seconds: f64,
    /// Until every service was ready (or had failed); snapshots may be saved after that.
    pub ready_seconds: f64,
    pub changed: bool,
    pub services: Vec<ServiceReport>,
    /// The host ports the manifest publishes, `auto` ones as allocated.
    pub ports: Vec<PublishedPort>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

/// One host port a service publishes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublishedPort {
    pub service: String,
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    /// Allocated by stagectl (`"auto:PORT"`).
    pub auto: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    pub stack: String,
    /// Services of a Swarm deployment (`deploy --swarm`), with their secrets and network.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub swarm_services: usize,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub container: Option<String>,
    /// running, exited (N) (jobs), stopped (long-running services not running), missing, ...
    pub state: String,
    pub ready: bool,
    pub ports: Vec<String>,
    pub image: String,
    pub uptime_seconds: Option<u64>,
    pub detail: Option<String>,
    /// The restart policy (`no`, `on-failure`, `always`).
    pub restart: String,
    /// How often Docker restarted the container (its `RestartCount`).
    pub restarts: u64,
}
