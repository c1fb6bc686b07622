//! `"auto:PORT"` host ports, allocated before `up` creates anything (the choice is
//! `plan::ports`; this is its file and Docker side). Reservations live in
//! `<state dir>/ports.json`, changed under a machine-wide lock, so two projects allocating at
//! once never get the same port: a project keeps its ports across `down` and `up`, and another
//! project does not take them while it has containers (or reserved them in the last ten
//! minutes, i.e. is being brought up now).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::docker::{ContainerEngine, ObservedContainer};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, Protocol};
use crate::plan::{self, ports::Wanted};

/// How long a fresh reservation holds its ports for a project that has no containers yet.
const FRESH_SECS: i64 = 600;
/// Reservations of projects without containers are forgotten after this long.
const FORGET_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Reservations {
    #[serde(default)]
    projects: BTreeMap<String, Reservation>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Reservation {
    /// Unix seconds of the last allocation.
    updated: i64,
    /// `service/container_port/protocol` → host port.
    ports: BTreeMap<String, u16>,
}

fn state_path() -> PathBuf {
    crate::history::state_dir().join("ports.json")
}

/// The machine-wide lock on the reservations (released when dropped, or when the process dies).
fn lock() -> std::io::Result<File> {
    let dir = crate::history::state_dir().join("locks");
    crate::history::private_dir(&dir)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("ports.lock"))?;
    fs4::FileExt::lock(&file)?;
    Ok(file)
}

fn read() -> Reservations {
    // A missing or unreadable file only loses preferences: ports are re-derived and checked.
    std::fs::read(state_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write(r: &Reservations) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_path();
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

fn io_error(e: std::io::Error) -> Error {
    Error::Preflight(vec![format!("cannot allocate auto host ports: {e} (state dir {})", crate::history::state_dir().display())])
}

/// `manifest` with every `auto` host port filled in (and reserved for its project). Without
/// `auto` mappings, the manifest as it is, untouched and without a Docker call.
pub async fn allocate<E: ContainerEngine + ?Sized>(docker: &E, manifest: &Manifest, observed: &[ObservedContainer]) -> Result<Manifest> {
    let mut resolved = manifest.clone();
    if !manifest.services.iter().any(|s| s.ports.iter().any(|p| p.auto)) {
        return Ok(resolved);
    }
    let everything = docker.list_all_containers().await?;
    let project = manifest.stack.clone();
    let given = tokio::task::spawn_blocking({
        let manifest = manifest.clone();
        let observed = observed.to_vec();
        move || -> Result<BTreeMap<String, u16>> {
            let _lock = lock().map_err(io_error)?;
            let mut reservations = read();
            let live: BTreeSet<&str> =
                everything.iter().filter_map(|c| c.labels.get(crate::docker::labels::STACK).map(String::as_str)).collect();
            let mut taken: BTreeSet<u16> = everything.iter().flat_map(|c| c.ports.iter().map(|(_, hp, _, _)| *hp)).collect();
            for (other, r) in &reservations.projects {
                if other != &project && (live.contains(other.as_str()) || now() - r.updated < FRESH_SECS) {
                    taken.extend(r.ports.values());
                }
            }
            reservations.projects.retain(|p, r| live.contains(p.as_str()) || now() - r.updated < FORGET_SECS);
            let mine = reservations.projects.get(&project);
            let wanted = wanted(&manifest, &observed, mine.map(|r| &r.ports));
            let ips = host_ips(&manifest);
            let given = plan::ports::allocate(&project, &wanted, manifest.port_range, &taken, &mut |p| bindable(&ips, p)).map_err(|e| {
                Error::Preflight(vec![format!(
                    "{e}\n  = help: widen `stack.port_range`, or `stagectl ls` to see which projects hold ports"
                )])
            })?;
            reservations.projects.insert(project.clone(), Reservation { updated: now(), ports: given.clone() });
            write(&reservations).map_err(io_error)?;
            Ok(given)
        }
    })
    .await
    .map_err(|e| io_error(std::io::Error::other(e)))??;
    for s in &mut resolved.services {
        for p in s.ports.iter_mut().filter(|p| p.auto) {
            p.host_port = given.get(&plan::ports::key(&s.name, p.container_port, p.protocol.as_str())).copied();
        }
    }
    Ok(resolved)
}

/// The auto ports this project had, for `status` and `diff` without allocating: the ports
/// its containers publish, else its reservations.
pub fn peek(manifest: &Manifest, observed: &[ObservedContainer]) -> Manifest {
    let mut resolved = manifest.clone();
    let reservations = read();
    let mine = reservations.projects.get(&manifest.stack).map(|r| &r.ports);
    for w in wanted(manifest, observed, mine) {
        let port = w.current.or(w.reserved);
        for s in &mut resolved.services {
            for p in s.ports.iter_mut().filter(|p| p.auto) {
                if plan::ports::key(&s.name, p.container_port, p.protocol.as_str()) == w.key {
                    p.host_port = port;
                }
            }
        }
    }
    resolved
}

/// Each `auto` mapping of the manifest with the port the project's container publishes for
/// it now and the one reserved for it.
fn wanted(manifest: &Manifest, observed: &[ObservedContainer], reserved: Option<&BTreeMap<String, u16>>) -> Vec<Wanted> {
    let mut out = Vec::new();
    for s in &manifest.services {
        let container = plan::current_container(&manifest.stack, &s.name, observed);
        for p in s.ports.iter().filter(|p| p.auto) {
            let key = plan::ports::key(&s.name, p.container_port, p.protocol.as_str());
            let current = container.and_then(|c| {
                c.ports.iter().find(|(_, _, cp, proto)| *cp == p.container_port && proto == p.protocol.as_str()).map(|(_, hp, _, _)| *hp)
            });
            out.push(Wanted { current, reserved: reserved.and_then(|r| r.get(&key).copied()), key });
        }
    }
    out
}

/// The addresses and protocols the auto ports will be published on.
fn host_ips(manifest: &Manifest) -> Vec<(String, Protocol)> {
    let mut ips: Vec<(String, Protocol)> = manifest
        .services
        .iter()
        .flat_map(|s| s.ports.iter().filter(|p| p.auto))
        .map(|p| (p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()), p.protocol))
        .collect();
    ips.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
    ips.dedup();
    ips
}

/// Whether another program holds the port: it must bind on every address and protocol used.
fn bindable(ips: &[(String, Protocol)], port: u16) -> bool {
    ips.iter().all(|(ip, proto)| match proto {
        Protocol::Tcp => std::net::TcpListener::bind((ip.as_str(), port)).is_ok(),
        Protocol::Udp => std::net::UdpSocket::bind((ip.as_str(), port)).is_ok(),
    })
}
