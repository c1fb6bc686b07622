//! `stagectl daemon`: the always-on runner of one stack on a shared VM. A tiny_http server
//! (`http`: JSON API under `/api/v1`, the status page at `/`, Prometheus text at `/metrics`),
//! one worker that runs queued operations one at a time under the stack's lock (`queue`), the
//! cached status document (`status`), a file watcher (`watch`), and a scheduler (`schedule`:
//! cron rebuilds, idle teardown). Runs are recorded in the SQLite history. With `--swarm`,
//! every operation it queues is the Swarm form of it (`ops::Operation::on_swarm`).

mod auth;
pub mod discovery;
mod guard;
pub mod host;
mod http;
pub mod metrics;
pub mod page;
mod queue;
mod schedule;
mod status;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use crate::docker::BollardEngine;
use crate::error::{exit, Error, Result};
use crate::history::History;
use crate::manifest::Manifest;
use crate::ops::SwarmTarget;
use crate::orchestrator::{Orchestrator, Silent};
use queue::Queue;

/// What `stagectl daemon` is told on its command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub manifest_path: PathBuf,
    /// `-p`: serve the manifest as this project (default: its `[stack] name`).
    pub project: Option<String>,
    /// `IP:PORT`; anything but loopback needs an explicit token.
    pub listen: String,
    /// File holding the bearer token (must not be readable by group or others).
    pub token_file: Option<PathBuf>,
    /// Watch the manifest, fixtures, migrations and build contexts.
    pub watch: bool,
    /// Finished runs kept per stack in the history.
    pub keep_runs: usize,
    /// Finished runs older than this many days are pruned.
    pub keep_days: u32,
    /// `--swarm`: every operation runs in its Swarm form (`Operation::on_swarm`).
    pub swarm: Option<SwarmTarget>,
}

struct State {
    manifest_path: PathBuf,
    project: Option<String>,
    /// The manifest file as containers' labels name it: its other projects are found by it.
    manifest_file: String,
    stack: String,
    token: String,
    history: Arc<History>,
    docker: Arc<BollardEngine>,
    rt: tokio::runtime::Handle,
    queue: Mutex<Queue>,
    queue_changed: Condvar,
    /// The last status document, served as is: `GET /api/v1/status` never waits on Docker.
    status: RwLock<Arc<Vec<u8>>>,
    /// Unix ms of the last status or page request: status is refreshed only while watched.
    status_wanted: AtomicU64,
    /// Unix ms of the last refresh of `status`.
    status_at: AtomicU64,
    /// Held while refreshing, so concurrent requests do not all call Docker.
    refreshing: Mutex<()>,
    refresh_now: AtomicBool,
    /// Last run or mutating call, for the idle TTL.
    last_activity: Mutex<Instant>,
    /// The manifest's problems when the last load failed (shown on the page and in status).
    manifest_error: Mutex<Option<String>>,
    /// Readiness time of each service from the last `up`, for metrics.
    ready_seconds: Mutex<BTreeMap<String, f64>>,
    host: Mutex<host::HostSampler>,
    /// Long-lived, so what it learns about containers (load markers) is kept between refreshes.
    status_engine: Orchestrator<BollardEngine>,
    /// The last drift summary (`stagectl diff`) and the Unix ms it was computed at: computed
    /// at most every `status::DRIFT_INTERVAL_MS` (it hashes build contexts and fixture files).
    drift: Mutex<Option<(u64, Option<status::DriftSummary>)>>,
    keep_runs: usize,
    keep_days: u32,
    /// Where `up`, `rebuild` and `verify` deploy when the stack runs on Docker Swarm.
    swarm: Option<SwarmTarget>,
    /// Outcomes of finished runs the history could not take (a full disk): shown by the API
    /// and the page instead of the "running" the history still says, written when it can.
    unrecorded: queue::Unrecorded,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

impl State {
    /// The manifest as it is on disk now; its problems are kept for the page and status.
    fn load_manifest(&self) -> Result<Manifest> {
        let loaded = crate::load::load(&self.manifest_path, self.project.as_deref());
        *self.manifest_error.lock().unwrap() = loaded.as_ref().err().map(|e| e.to_string());
        loaded
    }

    /// What the daemon's operations run as, in the status document and `/api/v1/health`:
    /// `swarm` (Swarm services, `--swarm`) or `containers` (plain containers on this engine).
    fn engine_name(&self) -> &'static str {
        if self.swarm.is_some() {
            "swarm"
        } else {
            "containers"
        }
    }
}

/// Entry point of `stagectl daemon`.
pub async fn run(options: &Options) -> Result<i32> {
    let manifest = crate::load::load(&options.manifest_path, options.project.as_deref())?;
    let addr: SocketAddr = options
        .listen
        .parse()
        .map_err(|e| Error::Usage(format!("--listen `{}`: {e}; write IP:PORT, e.g. 127.0.0.1:7780", options.listen)))?;
    let (token, token_file) = auth::token(options, &manifest.stack, addr)?;
    let history = Arc::new(History::open(&History::default_path()).map_err(|e| Error::Usage(e.to_string()))?);
    let docker = Arc::new(BollardEngine::connect().await?);
    // Every run of a `--swarm` daemon would fail on an engine that manages no swarm: say so now.
    if options.swarm.is_some() {
        crate::orchestrator::swarm::require_manager(docker.as_ref()).await?;
    }
    let cannot_listen = |e: &dyn std::fmt::Display| Error::Usage(format!("cannot listen on {addr}: {e}"));
    let (guard, inner) = guard::Guard::bind(addr).map_err(|e| cannot_listen(&e))?;
    let url = format!("http://{}", guard.local_addr().map_err(|e| cannot_listen(&e))?);
    let server = tiny_http::Server::from_listener(inner, None).map_err(|e| cannot_listen(&e))?;

    let state = Arc::new(State {
        manifest_path: options.manifest_path.clone(),
        project: options.project.clone(),
        stack: manifest.stack.clone(),
        manifest_file: manifest.file.display().to_string(),
        token,
        history,
        docker: docker.clone(),
        rt: tokio::runtime::Handle::current(),
        queue: Mutex::new(Queue::default()),
        queue_changed: Condvar::new(),
        status: RwLock::new(Arc::new(b"{}".to_vec())),
        status_wanted: AtomicU64::new(0),
        status_at: AtomicU64::new(0),
        refreshing: Mutex::new(()),
        refresh_now: AtomicBool::new(true),
        last_activity: Mutex::new(Instant::now()),
        manifest_error: Mutex::new(None),
        ready_seconds: Mutex::new(BTreeMap::new()),
        host: Mutex::new(host::HostSampler::new()),
        status_engine: Orchestrator::new(docker.clone(), Arc::new(Silent)),
        drift: Mutex::new(None),
        keep_runs: options.keep_runs,
        keep_days: options.keep_days,
        swarm: options.swarm,
        unrecorded: queue::Unrecorded::default(),
    });
    let _ = state.history.prune(state.keep_runs, state.keep_days);

    let discovery = discovery::path(&state.stack);
    if let Some(dir) = discovery.parent() {
        crate::history::private_dir(dir).map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    }
    let doc = discovery::Discovery { pid: std::process::id(), url: url.clone(), token_file };
    std::fs::write(&discovery, serde_json::to_vec(&doc).unwrap_or_default())
        .map_err(|e| Error::Usage(format!("{}: {e}", discovery.display())))?;

    let server = Arc::new(server);
    std::thread::Builder::new().name("guard".into()).spawn(move || guard.run()).map_err(|e| cannot_listen(&e))?;
    let mut threads = Vec::new();
    // Blocking threads: tiny_http and SQLite are synchronous; engine work goes through `rt`.
    let s = state.clone();
    threads.push(std::thread::Builder::new().name("worker".into()).spawn(move || queue::worker(&s)).expect("thread"));
    let s = state.clone();
    threads.push(std::thread::Builder::new().name("status".into()).spawn(move || status::status_loop(&s)).expect("thread"));
    let s = state.clone();
    let schedule = manifest.schedule.clone();
    threads
        .push(std::thread::Builder::new().name("schedule".into()).spawn(move || schedule::schedule_loop(&s, &schedule)).expect("thread"));
    if options.watch {
        watch::start(state.clone(), &manifest).map_err(|e| Error::Usage(e.to_string()))?;
    }
    for i in 0..4 {
        let (s, srv) = (state.clone(), server.clone());
        threads.push(std::thread::Builder::new().name(format!("http-{i}")).spawn(move || http::serve(&s, &srv)).expect("thread"));
    }
    eprintln!(
        "stagectl daemon for stack `{}` on {url} (pid {}); history {}{}",
        state.stack,
        std::process::id(),
        state.history.path().display(),
        if state.swarm.is_some() { "; deploys to Docker Swarm" } else { "" }
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| Error::Usage(e.to_string()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(&discovery);
    Ok(exit::OK)
}
