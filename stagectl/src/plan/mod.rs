//! Manifest + observed state → what to do. Pure: no Docker, no clock, no files.
//!
//! * [`spec_hash`] fingerprints everything that shapes a container, so an unchanged service
//!   is recognised and left alone.
//! * [`diff`] compares desired services with the containers Docker reports and decides, per
//!   service, whether to keep, create or recreate it, plus which containers are orphans.
//! * [`container_spec`] turns a service into the exact container to create.
//! * [`waits`] (in `waits.rs`): what each service waits for before it starts, fixtures
//!   included, and [`wait_cycle`], a manifest whose waits can never all be met.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::docker::{labels, ContainerSpec, ObservedContainer, RunState};
use crate::manifest::{Manifest, PortMapping, Restart, Service, VolumeSource};

pub mod drift;
pub mod ports;
mod select;
mod waits;
pub use select::{check_names, subset, with_dependencies, UnknownService};
pub use waits::{before_load, dependencies, wait_cycle, waits, Signal, Wait};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn container_name(stack: &str, service: &str) -> String {
    format!("{stack}-{service}")
}

/// A service's name in a Docker Swarm (`deploy --swarm`); its tasks' containers are named
/// `<this>.<slot>.<task id>`.
pub fn swarm_service_name(stack: &str, service: &str) -> String {
    format!("{stack}_{service}")
}

pub fn network_name(stack: &str) -> String {
    format!("{stack}-net")
}

pub fn volume_name(stack: &str, volume: &str) -> String {
    format!("{stack}-{volume}")
}

/// Labels carried by every resource of a stack.
pub fn stack_labels(stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::STACK.to_string(), stack.to_string()), (labels::VERSION.to_string(), VERSION.to_string())])
}

/// Named volumes the stack uses, sorted and unique.
pub fn named_volumes(manifest: &Manifest) -> Vec<String> {
    let set: BTreeSet<&str> = manifest
        .services
        .iter()
        .flat_map(|s| &s.volumes)
        .filter_map(|v| match &v.source {
            VolumeSource::Named(n) => Some(n.as_str()),
            VolumeSource::Bind(_) => None,
        })
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// Services ordered so that each comes after everything it depends on (file order otherwise).
pub fn topological_order(manifest: &Manifest) -> Vec<&Service> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::with_capacity(manifest.services.len());
    while out.len() < manifest.services.len() {
        let before = out.len();
        for s in &manifest.services {
            if !done.contains(s.name.as_str()) && s.depends_on.iter().all(|d| done.contains(d.as_str())) {
                done.insert(&s.name);
                out.push(s);
            }
        }
        // The manifest is validated acyclic; this guard only keeps a bad caller from looping.
        if out.len() == before {
            out.extend(manifest.services.iter().filter(|s| !done.contains(s.name.as_str())));
            break;
        }
    }
    out
}

/// Fingerprint of everything that shapes the container of `service` when run from `image_id`.
/// A container whose label holds a different hash is recreated, so the value for an unchanged
/// service must stay the same across stagectl versions (`plan::tests` pins it).
pub fn spec_hash(stack: &str, service: &Service, image_id: &str) -> String {
    // Every field is named (no `..`): a field added to `Service` does not compile here until
    // someone decides whether it changes the container. Those bound to `_` deliberately do not.
    let Service {
        // The container is found by its name (`<stack>-<service>`): a renamed service is a new
        // container, and the old one an orphan, whatever the hash says.
        name: _,
        image,
        // What the build produced is `image_id`; the build's settings matter only through it.
        build: _,
        command,
        entrypoint,
        env,
        ports,
        volumes,
        // The order services start in, not what runs in the container.
        depends_on: _,
        job,
        // How we wait for readiness: changing it does not require a new container.
        ready: _,
        working_dir,
        user,
        // Their values are in `env`.
        env_files: _,
        labels: user_labels,
        tmpfs,
        ulimits,
        shm_size,
        cap_add,
        cap_drop,
        extra_hosts,
        init,
        stop_grace_period,
        // Which services run, not what runs in the container.
        profiles: _,
        // Like `depends_on`: the order of starts.
        conditions: _,
        restart,
    } = service;

    // Field order and types are part of the hash: append new fields, never reorder. A field
    // added after the first release is skipped when it has its default, so a service that does
    // not use it hashes as before (an upgrade must not recreate running stacks).
    #[derive(Serialize)]
    struct Shape<'a> {
        stack: &'a str,
        image_id: &'a str,
        image: &'a Option<String>,
        command: &'a Option<Vec<String>>,
        entrypoint: &'a Option<Vec<String>>,
        env: BTreeMap<&'a str, &'a str>,
        ports: Vec<String>,
        volumes: Vec<String>,
        job: bool,
        working_dir: &'a Option<String>,
        user: &'a Option<String>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        labels: &'a BTreeMap<String, String>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        tmpfs: &'a BTreeMap<String, String>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        ulimits: BTreeMap<&'a str, (i64, i64)>,
        #[serde(skip_serializing_if = "Option::is_none")]
        shm_size: &'a Option<u64>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        cap_add: &'a [String],
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        cap_drop: &'a [String],
        #[serde(skip_serializing_if = "<[(String, String)]>::is_empty")]
        extra_hosts: &'a [(String, String)],
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        init: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        stop_grace_ms: Option<u128>,
        #[serde(skip_serializing_if = "Option::is_none")]
        restart: Option<String>,
    }
    let shape = Shape {
        stack,
        image_id,
        image,
        command,
        entrypoint,
        env: env.iter().map(|(k, v)| (k.as_str(), v.value.as_str())).collect(),
        ports: ports.iter().map(hashed_port).collect(),
        volumes: volumes.iter().map(|v| format!("{:?}", v)).collect(),
        job: *job,
        working_dir,
        user,
        labels: user_labels,
        tmpfs,
        ulimits: ulimits.iter().map(|(k, u)| (k.as_str(), (u.soft, u.hard))).collect(),
        shm_size,
        cap_add,
        cap_drop,
        extra_hosts,
        init: *init,
        stop_grace_ms: stop_grace_period.map(|d| d.as_millis()),
        restart: (*restart != Restart::No).then(|| restart.describe()),
    };
    let json = serde_json::to_vec(&shape).expect("serialising plain data cannot fail");
    hex::encode(Sha256::digest(&json))[..16].to_string()
}

/// The spec hash that goes into a fixture snapshot's key: the manifest's `[stack] name`, not
/// the project, and `auto` host ports unallocated — what a project is called and which ports
/// it got do not change the data, so every project of one manifest shares its snapshots.
pub fn snapshot_spec_hash(manifest: &Manifest, service: &Service, image_id: &str) -> String {
    if service.ports.iter().any(|p| p.auto) {
        let mut unallocated = service.clone();
        unallocated.ports.iter_mut().filter(|p| p.auto).for_each(|p| p.host_port = None);
        return spec_hash(&manifest.snapshot_scope, &unallocated, image_id);
    }
    spec_hash(&manifest.snapshot_scope, service, image_id)
}

/// A port mapping as the hash has always spelt it (the `Debug` form of its first four fields).
/// `auto` is left out: an allocated port is hashed as the number it got, so a stack keeps its
/// containers when the allocation gives the same port again.
fn hashed_port(p: &PortMapping) -> String {
    let PortMapping { host_ip, host_port, container_port, protocol, auto: _ } = p;
    format!("PortMapping {{ host_ip: {host_ip:?}, host_port: {host_port:?}, container_port: {container_port:?}, protocol: {protocol:?} }}")
}

/// A spec hash extended with another input (e.g. a data service's snapshot key).
pub fn combine_hash(spec_hash: &str, extra: &str) -> String {
    hex::encode(Sha256::digest(format!("{spec_hash}\0{extra}").as_bytes()))[..16].to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "reason")]
pub enum Action {
    /// No container yet.
    Create,
    /// A container exists but must be replaced; the reason is shown to the user.
    Recreate(String),
    /// The running container already matches.
    Keep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One step per service, in dependency order.
    pub steps: Vec<(String, Action)>,
    /// Containers of the stack whose service no longer exists (or duplicates): removed.
    pub orphans: Vec<String>,
}

impl Plan {
    pub fn action(&self, service: &str) -> Option<&Action> {
        self.steps.iter().find(|(s, _)| s == service).map(|(_, a)| a)
    }

    pub fn is_noop(&self) -> bool {
        self.orphans.is_empty() && self.steps.iter().all(|(_, a)| *a == Action::Keep)
    }
}

/// Decides what to do with each service given the desired hashes and the observed containers.
///
/// Long-running services are recreated only when their own spec changed or they are not
/// running; dependents are left alone (they reconnect). A job is re-run when its spec changed,
/// its last run did not exit 0, or any service it depends on is being (re)created, because a job
/// typically acts on its dependencies' state (e.g. migrations on a fresh database).
pub fn diff(manifest: &Manifest, hashes: &BTreeMap<String, String>, observed: &[ObservedContainer]) -> Plan {
    let mut steps: Vec<(String, Action)> = Vec::new();
    let mut used_ids = BTreeSet::new();
    for service in topological_order(manifest) {
        let current = current_container(&manifest.stack, &service.name, observed);
        if let Some(c) = current {
            used_ids.insert(c.id.clone());
        }
        let desired = hashes.get(&service.name).map(String::as_str).unwrap_or("");
        let dependency_changed = service.depends_on.iter().any(|d| steps.iter().any(|(s, a)| s == d && *a != Action::Keep));
        let action = decide(service, desired, current, dependency_changed);
        steps.push((service.name.clone(), action));
    }
    debug_assert_eq!(used_ids.len(), observed.len() - orphans(manifest, observed).len());
    Plan { steps, orphans: orphans(manifest, observed) }
}

/// IDs of the stack's containers that no service of the manifest owns (removed services,
/// renamed stacks' leftovers with our label, stray duplicates). Containers of services left
/// out by the profile selection are not orphans: `up` without `--profile debug` leaves the
/// debug tools an earlier `up --profile debug` started.
pub fn orphans(manifest: &Manifest, observed: &[ObservedContainer]) -> Vec<String> {
    observed
        .iter()
        .filter(|c| {
            current_container(&manifest.stack, &c.service, observed).is_none_or(|own| own.id != c.id)
                || (manifest.service(&c.service).is_none() && !manifest.inactive.contains(&c.service))
        })
        .map(|c| c.id.clone())
        .collect()
}

/// The decision for one service; see [`diff`] for the rules.
pub fn decide(service: &Service, desired_hash: &str, current: Option<&ObservedContainer>, dependency_changed: bool) -> Action {
    match current {
        None => Action::Create,
        Some(c) if c.spec_hash != desired_hash => Action::Recreate("spec changed".into()),
        Some(c) if service.job => match (c.state, c.exit_code) {
            (RunState::Exited, Some(0)) if dependency_changed => Action::Recreate("a dependency was recreated".into()),
            (RunState::Exited, Some(0)) => Action::Keep,
            (RunState::Running, _) => Action::Recreate("previous run still running".into()),
            _ => Action::Recreate("previous run failed".into()),
        },
        Some(c) if c.state != RunState::Running => Action::Recreate("not running".into()),
        Some(_) => Action::Keep,
    }
}

/// A stopped long-running container whose spec is unchanged: `up` starts it again (keeping
/// its data) instead of replacing it.
pub fn restartable(service: &Service, desired_hash: &str, current: &ObservedContainer) -> bool {
    !service.job && current.spec_hash == desired_hash && matches!(current.state, RunState::Exited | RunState::Created)
}

/// Whether `c` is `service`'s container: the one `up` names, or a Swarm task's (a running one
/// first: a swarm keeps the containers of ended tasks for a while).
fn is_container_of(stack: &str, service: &str, c: &ObservedContainer) -> bool {
    c.service == service
        && (c.name == container_name(stack, service)
            || c.name.strip_prefix(&swarm_service_name(stack, service)).is_some_and(|rest| rest.starts_with('.')))
}

/// The container of `service` among the observed ones, if any.
pub fn current_container<'a>(stack: &str, service: &str, observed: &'a [ObservedContainer]) -> Option<&'a ObservedContainer> {
    running_container(stack, service, observed).or_else(|| observed.iter().find(|c| is_container_of(stack, service, c)))
}

/// The running container of `service`, if it has one (for exec, checks, scans).
pub fn running_container<'a>(stack: &str, service: &str, observed: &'a [ObservedContainer]) -> Option<&'a ObservedContainer> {
    observed.iter().find(|c| is_container_of(stack, service, c) && c.state == RunState::Running)
}

/// The container to create for `service`, running `image` (an image ID or reference).
pub fn container_spec(manifest: &Manifest, service: &Service, image: &str, reference: &str, hash: &str) -> ContainerSpec {
    let mut labels = stack_labels(&manifest.stack);
    labels.insert(labels::IMAGE.into(), reference.to_string());
    labels.insert(labels::SERVICE.into(), service.name.clone());
    labels.insert(labels::SPEC_HASH.into(), hash.to_string());
    labels.insert(labels::MANIFEST.into(), manifest.file.display().to_string());
    if service.job {
        labels.insert(labels::JOB.into(), "true".into());
    }
    if let Some(grace) = service.stop_grace_period {
        labels.insert(labels::STOP_GRACE.into(), stop_grace_secs(grace).to_string());
    }
    // The user's labels never replace stagectl's (the manifest rejects org.stagectl.*).
    for (k, v) in &service.labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let binds = service
        .volumes
        .iter()
        .map(|v| {
            let source = match &v.source {
                VolumeSource::Named(n) => volume_name(&manifest.stack, n),
                VolumeSource::Bind(p) => p.display().to_string(),
            };
            format!("{source}:{}{}", v.target, if v.read_only { ":ro" } else { "" })
        })
        .collect();
    ContainerSpec {
        name: container_name(&manifest.stack, &service.name),
        image: image.to_string(),
        hostname: service.name.clone(),
        network: network_name(&manifest.stack),
        aliases: vec![service.name.clone()],
        env: service.env.iter().map(|(k, v)| format!("{k}={}", v.value)).collect(),
        command: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        working_dir: service.working_dir.clone(),
        user: service.user.clone(),
        labels,
        ports: service
            .ports
            .iter()
            .map(|p| (p.host_ip.clone(), p.host_port.unwrap_or(0), p.container_port, p.protocol.as_str().to_string()))
            .collect(),
        binds,
        tmpfs: service.tmpfs.clone(),
        ulimits: service.ulimits.iter().map(|(k, u)| (k.clone(), u.soft, u.hard)).collect(),
        shm_size: service.shm_size,
        cap_add: service.cap_add.clone(),
        cap_drop: service.cap_drop.clone(),
        extra_hosts: service.extra_hosts.iter().map(|(h, ip)| format!("{h}:{ip}")).collect(),
        init: service.init,
        stop_timeout: service.stop_grace_period.map(stop_grace_secs),
        restart: (service.restart != Restart::No).then(|| {
            let (name, max) = service.restart.docker_policy();
            (name.to_string(), max)
        }),
    }
}

/// A stop grace period in whole seconds, as Docker takes it (rounded up, at least 1).
pub fn stop_grace_secs(grace: std::time::Duration) -> u32 {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// The grace period to stop `container` with: its label (the service's `stop_grace_period`
/// when it was created), else `default`.
pub fn stop_grace_of(container: &ObservedContainer, default: u32) -> u32 {
    container.labels.get(labels::STOP_GRACE).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[cfg(test)]
mod tests;
