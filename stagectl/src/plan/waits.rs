//! What each service waits for before it starts. Pure: the dependency graph and the fixtures
//! of the manifest, nothing else.
//!
//! A data service (one with fixtures) signals twice: `Ready` when its probe passed (and its
//! native migrations are applied), `Done` when its fixtures are loaded. Its load waits for the
//! jobs in `after` (its migrations), so those jobs, and everything they need, can wait only
//! for `Ready`. Every other service that depends on it, directly or through other services,
//! waits for `Done`: nothing runs against a database whose data is not in place yet.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::{Condition, Fixtures, Manifest, Service};

/// Which of a service's two signals to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// The container started (a `depends_on` condition `started`); not probed.
    Started,
    /// Probed ready; for a data service, before its fixtures are loaded.
    Ready,
    /// Finished: ready with its fixtures loaded, or a job that exited 0.
    Done,
}

/// One thing a service waits for before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub service: String,
    pub signal: Signal,
    /// In the service's own `depends_on`; otherwise a data service further down its
    /// dependencies, waited for only so that its fixtures are in place.
    pub direct: bool,
}

/// Every service `name` depends on, directly or through others (not `name` itself).
pub fn dependencies<'a>(manifest: &'a Manifest, name: &str) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = manifest.service(name).map(|s| s.depends_on.iter().map(String::as_str).collect()).unwrap_or_default();
    while let Some(d) = todo.pop() {
        let Some(s) = manifest.service(d) else { continue };
        if seen.insert(s.name.as_str()) {
            todo.extend(s.depends_on.iter().map(String::as_str));
        }
    }
    seen
}

/// The services that must run before `fixtures` load: the jobs in `after` and everything they
/// depend on.
pub fn before_load<'a>(manifest: &'a Manifest, fixtures: &'a Fixtures) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    for job in &fixtures.after {
        out.insert(job.as_str());
        out.extend(dependencies(manifest, job));
    }
    out
}

/// What `service` waits for: each of its dependencies (`Ready` for a data service whose load
/// must come after it, else `Done`), then every data service further down whose load is not
/// waiting for it (`Done`), in manifest order.
pub fn waits(manifest: &Manifest, service: &Service) -> Vec<Wait> {
    let signal_of = |data_service: &str| match manifest.fixtures_for(data_service) {
        Some(f) if before_load(manifest, f).contains(service.name.as_str()) => Signal::Ready,
        _ => Signal::Done,
    };
    let direct = |d: &String| match service.condition(d) {
        Condition::Started => Signal::Started,
        Condition::Ready | Condition::Completed => signal_of(d),
    };
    let mut out: Vec<Wait> = service.depends_on.iter().map(|d| Wait { service: d.clone(), signal: direct(d), direct: true }).collect();
    let all = dependencies(manifest, &service.name);
    for f in &manifest.fixtures {
        let indirect = all.contains(f.service.as_str()) && !service.depends_on.contains(&f.service);
        if indirect && signal_of(&f.service) == Signal::Done {
            out.push(Wait { service: f.service.clone(), signal: Signal::Done, direct: false });
        }
    }
    out
}

/// A chain of waits that closes on itself, if the manifest has one, as a sentence such as
/// "`db`'s fixtures wait for `seed`, which waits for `app`, which waits for `db`'s fixtures".
/// `depends_on` is validated acyclic, but a load that waits for jobs (`after`) adds edges
/// against the dependency direction: a load that needs a service which itself needs the
/// load can never happen. `up` refuses such a manifest instead of hanging.
pub fn wait_cycle(manifest: &Manifest) -> Option<String> {
    let mut state: BTreeMap<(String, Signal), bool> = BTreeMap::new(); // false: on the path, true: done
    let mut path = Vec::new();
    for s in &manifest.services {
        if let Some(cycle) = visit(manifest, node(manifest, &s.name, Signal::Done), &mut state, &mut path) {
            return Some(cycle);
        }
    }
    None
}

/// A service without fixtures signals once: its `Ready` is its `Done`. (Its `Started` needs
/// the same waits met; a data service cannot be waited for only `Started`.)
fn node(manifest: &Manifest, name: &str, signal: Signal) -> (String, Signal) {
    (name.to_string(), if manifest.fixtures_for(name).is_some() { signal } else { Signal::Done })
}

/// What a signal waits for: a data service's `Done` waits for its `Ready` and the jobs in
/// `after`; any other signal is sent after the service started, which waits for [`waits`].
fn edges(manifest: &Manifest, (name, signal): &(String, Signal)) -> Vec<(String, Signal)> {
    match (manifest.fixtures_for(name), signal) {
        (Some(f), Signal::Done) => {
            std::iter::once(node(manifest, name, Signal::Ready)).chain(f.after.iter().map(|j| node(manifest, j, Signal::Done))).collect()
        }
        _ => manifest
            .service(name)
            .map(|s| waits(manifest, s).into_iter().map(|w| node(manifest, &w.service, w.signal)).collect())
            .unwrap_or_default(),
    }
}

fn visit(
    manifest: &Manifest,
    at: (String, Signal),
    state: &mut BTreeMap<(String, Signal), bool>,
    path: &mut Vec<(String, Signal)>,
) -> Option<String> {
    match state.get(&at) {
        Some(true) => return None,
        Some(false) => {
            let from = path.iter().position(|n| *n == at).expect("a node on the path is in it");
            let mut chain: Vec<&(String, Signal)> = path[from..].iter().collect();
            chain.push(&at);
            return Some(describe(manifest, &chain));
        }
        None => {}
    }
    state.insert(at.clone(), false);
    path.push(at.clone());
    for next in edges(manifest, &at) {
        if let Some(cycle) = visit(manifest, next, state, path) {
            return Some(cycle);
        }
    }
    path.pop();
    state.insert(at, true);
    None
}

fn describe(manifest: &Manifest, chain: &[&(String, Signal)]) -> String {
    let loads = |(n, s): &(String, Signal)| *s == Signal::Done && manifest.fixtures_for(n).is_some();
    let name = |node: &(String, Signal)| match (loads(node), manifest.fixtures_for(&node.0).is_some()) {
        (true, _) => format!("`{}`'s fixtures", node.0),
        (false, true) => format!("`{}`'s start", node.0),
        _ => format!("`{}`", node.0),
    };
    let mut text = name(chain[0]);
    for pair in chain.windows(2) {
        let which = if text.contains(" for ") { ", which" } else { "" };
        text.push_str(&format!("{which} {} for {}", if loads(pair[0]) { "wait" } else { "waits" }, name(pair[1])));
    }
    text
}
