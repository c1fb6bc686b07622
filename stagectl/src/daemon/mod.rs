//! `stagectl daemon`: the always-on runner of one stack on a shared VM. A tiny_http server
//! (JSON API under `/api/v1`, the status page at `/`, Prometheus text at `/metrics`), one
//! worker that runs queued operations one at a time under the stack's lock, a file watcher,
//! and a scheduler (cron rebuilds, idle teardown). Runs are recorded in the SQLite history.

pub mod client;
pub mod host;
pub mod metrics;
pub mod page;
mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use subtle::ConstantTimeEq;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::cli::Cli;
use crate::docker::BollardEngine;
use crate::error::{exit, Error, Result};
use crate::history::{History, Trigger};
use crate::manifest::Manifest;
use crate::ops::{CheckSet, Operation, RecordingReporter, StackLock};
use crate::orchestrator::{Orchestrator, Silent};
use crate::secrets::Redactor;

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Address to listen on. Anything but loopback needs an explicit token.
    #[arg(long, default_value = "127.0.0.1:7780", env = "STAGECTL_LISTEN")]
    pub listen: String,
    /// File holding the bearer token (must not be readable by group or others). Without it,
    /// STAGECTL_TOKEN; without that, a token is generated into the state directory.
    #[arg(long, env = "STAGECTL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Do not watch the manifest, fixtures, migrations and build contexts.
    #[arg(long)]
    pub no_watch: bool,
    /// Finished runs kept per stack in the history.
    #[arg(long, default_value_t = 500)]
    pub keep_runs: usize,
    /// Finished runs older than this many days are pruned.
    #[arg(long, default_value_t = 30)]
    pub keep_days: u32,
}

struct Job {
    run: i64,
    op: Operation,
    trigger: Trigger,
    detail: String,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The run being executed and its operation.
    running: Option<(i64, &'static str)>,
}

pub(crate) struct State {
    manifest_path: PathBuf,
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
    keep_runs: usize,
    keep_days: u32,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Entry point of `stagectl daemon`.
pub async fn run(cli: &Cli, args: &DaemonArgs) -> Result<i32> {
    let manifest = crate::load::load(&cli.file)?;
    let addr: SocketAddr =
        args.listen.parse().map_err(|e| Error::Usage(format!("--listen `{}`: {e}; write IP:PORT, e.g. 127.0.0.1:7780", args.listen)))?;
    let (token, token_file) = token(args, &manifest.stack, addr)?;
    let history = Arc::new(History::open(&History::default_path()).map_err(|e| Error::Usage(e.to_string()))?);
    let docker = Arc::new(BollardEngine::connect().await?);
    let server = listen(addr).map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
    let url = format!("http://{}", server.server_addr().to_ip().map(|a| a.to_string()).unwrap_or_else(|| addr.to_string()));

    let state = Arc::new(State {
        manifest_path: cli.file.clone(),
        stack: manifest.stack.clone(),
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
        keep_runs: args.keep_runs,
        keep_days: args.keep_days,
    });
    let _ = state.history.prune(state.keep_runs, state.keep_days);

    let discovery = client::discovery_path(&state.stack);
    if let Some(dir) = discovery.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    }
    let doc = client::Discovery { pid: std::process::id(), url: url.clone(), token_file };
    std::fs::write(&discovery, serde_json::to_vec(&doc).unwrap_or_default())
        .map_err(|e| Error::Usage(format!("{}: {e}", discovery.display())))?;

    let server = Arc::new(server);
    let mut threads = Vec::new();
    // Blocking threads: tiny_http and SQLite are synchronous; engine work goes through `rt`.
    let s = state.clone();
    threads.push(std::thread::Builder::new().name("worker".into()).spawn(move || worker(&s)).expect("thread"));
    let s = state.clone();
    threads.push(std::thread::Builder::new().name("status".into()).spawn(move || status_loop(&s)).expect("thread"));
    let s = state.clone();
    let schedule = manifest.schedule.clone();
    threads.push(std::thread::Builder::new().name("schedule".into()).spawn(move || schedule_loop(&s, &schedule)).expect("thread"));
    if !args.no_watch {
        watch::start(state.clone(), &manifest).map_err(Error::Usage)?;
    }
    for i in 0..4 {
        let (s, srv) = (state.clone(), server.clone());
        threads.push(std::thread::Builder::new().name(format!("http-{i}")).spawn(move || serve(&s, &srv)).expect("thread"));
    }
    eprintln!(
        "stagectl daemon for stack `{}` on {url} (pid {}); history {}",
        state.stack,
        std::process::id(),
        state.history.path().display()
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| Error::Usage(e.to_string()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(&discovery);
    Ok(exit::OK)
}

/// A tiny_http server on a listening socket with TCP_NODELAY, which Linux hands on to every
/// accepted connection. tiny_http writes a response in 1 KiB pieces; with Nagle's algorithm on,
/// the piece after the first waits for the client's delayed ACK (~40 ms on a kept-alive
/// connection) — every status document over 1 KiB would take 40 ms instead of 1.
fn listen(addr: SocketAddr) -> std::result::Result<Server, Box<dyn std::error::Error + Send + Sync>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Server::from_listener(std::net::TcpListener::from(socket), None)
}

/// The bearer token: from a file (refused if group/other can read it), STAGECTL_TOKEN, or
/// generated (loopback only). Returns it and the file a generated one was written to.
fn token(args: &DaemonArgs, stack: &str, addr: SocketAddr) -> Result<(String, Option<PathBuf>)> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(f) = &args.token_file {
        let meta = std::fs::metadata(f).map_err(|e| Error::Usage(format!("--token-file {}: {e}", f.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::Usage(format!(
                "--token-file {}: readable by group or others (mode {:o}); run `chmod 600 {}`",
                f.display(),
                meta.permissions().mode() & 0o777,
                f.display()
            )));
        }
        let t = std::fs::read_to_string(f).map_err(|e| Error::Usage(format!("--token-file {}: {e}", f.display())))?.trim().to_string();
        if t.len() < 16 {
            return Err(Error::Usage(format!("--token-file {}: the token is shorter than 16 characters", f.display())));
        }
        return Ok((t, None));
    }
    if let Ok(t) = std::env::var("STAGECTL_TOKEN") {
        if t.len() < 16 {
            return Err(Error::Usage("STAGECTL_TOKEN is shorter than 16 characters".into()));
        }
        return Ok((t, None));
    }
    if !addr.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "refusing to listen on {addr} without a token: pass --token-file FILE (mode 600) or set STAGECTL_TOKEN"
        )));
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::Usage(format!("/dev/urandom: {e}")))?;
    let t = hex::encode(bytes);
    let path = crate::history::state_dir().join("daemons").join(format!("{stack}.token"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    opts.open(&path).and_then(|mut f| f.write_all(t.as_bytes())).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Ok((t, Some(path)))
}

impl State {
    /// Queues an operation; with `wait = false`, refuses (returns the busy run) when one is
    /// running or queued.
    pub(crate) fn submit(&self, op: Operation, trigger: Trigger, detail: &str, wait: bool) -> std::result::Result<i64, i64> {
        let mut q = self.queue.lock().unwrap();
        if !wait {
            if let Some(busy) = q.running.map(|r| r.0).or_else(|| q.jobs.front().map(|j| j.run)) {
                return Err(busy);
            }
        }
        // A watch or schedule trigger that is already waiting covers this one (its detail
        // grows by the newly changed paths).
        if matches!(trigger, Trigger::Watch | Trigger::Schedule) {
            if let Some(j) = q.jobs.iter_mut().find(|j| j.op == op && j.trigger == trigger) {
                let merged = merge_detail(&j.detail, detail);
                if merged != j.detail {
                    j.detail = merged;
                    let _ = self.history.set_detail(j.run, &j.detail);
                }
                return Ok(j.run);
            }
        }
        let run = self.history.create_run(&self.stack, op.name(), trigger).unwrap_or(0);
        if !detail.is_empty() {
            let _ = self.history.set_detail(run, detail);
        }
        q.jobs.push_back(Job { run, op, trigger, detail: detail.to_string() });
        if trigger != Trigger::Schedule {
            *self.last_activity.lock().unwrap() = Instant::now();
        }
        self.queue_changed.notify_all();
        Ok(run)
    }

    /// The manifest as it is on disk now.
    pub(crate) fn load_manifest(&self) -> std::result::Result<Manifest, String> {
        let loaded = crate::load::load(&self.manifest_path).map_err(|e| e.to_string());
        *self.manifest_error.lock().unwrap() = loaded.as_ref().err().cloned();
        loaded
    }
}

/// `changed: a, b` + `changed: b, c` → `changed: a, b, c`; other details are kept as they were.
fn merge_detail(old: &str, new: &str) -> String {
    const PREFIX: &str = "changed: ";
    match (old.strip_prefix(PREFIX), new.strip_prefix(PREFIX)) {
        (Some(a), Some(b)) => {
            let mut paths: Vec<&str> = a.split(", ").collect();
            for p in b.split(", ") {
                if !paths.contains(&p) {
                    paths.push(p);
                }
            }
            format!("{PREFIX}{}", paths.join(", "))
        }
        _ => old.to_string(),
    }
}

fn worker(state: &State) {
    loop {
        let job = {
            let mut q = state.queue.lock().unwrap();
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    q.running = Some((j.run, j.op.name()));
                    break j;
                }
                q = state.queue_changed.wait(q).unwrap();
            }
        };
        execute(state, &job);
        state.queue.lock().unwrap().running = None;
        *state.last_activity.lock().unwrap() = Instant::now();
        state.refresh_now.store(true, Ordering::Relaxed);
        let _ = state.history.prune(state.keep_runs, state.keep_days);
    }
}

fn execute(state: &State, job: &Job) {
    let h = &state.history;
    // Every run re-reads the manifest: an invalid one fails the run and touches nothing.
    let manifest = match state.load_manifest() {
        Ok(m) => m,
        Err(e) => {
            let _ = h.start_run(job.run);
            let _ = h.append_log(job.run, &e);
            let _ = h.finish_run(
                job.run,
                &crate::history::RunOutcome {
                    ok: false,
                    error: Some(format!("invalid manifest; the running stack was left as it is:\n{e}")),
                    snapshot: None,
                    refresh_seconds: None,
                },
            );
            return;
        }
    };
    // The CLI takes the same lock when it runs without the daemon.
    let _lock = StackLock::acquire(&state.stack);
    let _ = h.start_run(job.run);
    let redactor = Redactor::new(manifest.secret_values());
    let reporter = Arc::new(RecordingReporter {
        inner: Arc::new(Silent),
        history: h.clone(),
        run: job.run,
        started: Instant::now(),
        redactor: redactor.clone(),
    });
    let engine = Orchestrator::new(state.docker.clone(), reporter.clone());
    let on_check = |c: &crate::checks::CheckResult| {
        let mark = if c.outcome == crate::checks::CheckOutcome::Passed { "✓" } else { "✗" };
        reporter.line(&format!("{mark} {} ({}, {:.2}s): {}", c.name, c.kind, c.seconds, c.message));
    };
    reporter.line(&format!("{} ({} trigger)", job.op.name(), job.trigger.as_str()));
    let result = state.rt.block_on(crate::ops::execute(&engine, &state.stack, Some(&manifest), job.op, &on_check));
    if let Ok(o) = &result {
        if let Some(up) = &o.up {
            let mut ready = state.ready_seconds.lock().unwrap();
            for s in &up.services {
                if let Some(secs) = s.ready_seconds {
                    ready.insert(s.service.clone(), secs);
                }
            }
        }
    }
    crate::ops::record(h, job.run, &result, &redactor);
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    stack: &'a str,
    docker: bool,
    busy: Option<serde_json::Value>,
    queued: usize,
    manifest_error: Option<String>,
    services: Vec<crate::orchestrator::ServiceStatus>,
    checks: Vec<crate::history::CheckRecord>,
    host: host::HostMetrics,
    updated_at: String,
}

fn refresh_status(state: &State) {
    let (services, docker_ok) = match state.load_manifest() {
        Ok(m) => match state.rt.block_on(state.status_engine.status(&m)) {
            Ok(rows) => (rows, true),
            Err(_) => (vec![], false),
        },
        Err(_) => (vec![], true),
    };
    let (busy, queued) = {
        let q = state.queue.lock().unwrap();
        (q.running.map(|(id, op)| serde_json::json!({ "run_id": id, "operation": op })), q.jobs.len())
    };
    let doc = StatusDoc {
        stack: &state.stack,
        docker: docker_ok,
        busy,
        queued,
        manifest_error: state.manifest_error.lock().unwrap().clone(),
        services,
        checks: state.history.latest_checks(&state.stack).unwrap_or_default(),
        host: state.host.lock().unwrap().sample(),
        updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    *state.status.write().unwrap() = Arc::new(serde_json::to_vec(&doc).unwrap_or_default());
    state.status_at.store(now_ms(), Ordering::Relaxed);
}

/// The status document, refreshed first when the background loop has not kept it fresh
/// (nobody asked for a while): an answer is never more than about two seconds old.
fn current_status(state: &State) -> Arc<Vec<u8>> {
    state.status_wanted.store(now_ms(), Ordering::Relaxed);
    let stale = |state: &State| now_ms().saturating_sub(state.status_at.load(Ordering::Relaxed)) > 2_000;
    if stale(state) {
        // Never filled yet: wait for whoever is filling it rather than answer `{}`. Otherwise
        // an old document is better than every request waiting on Docker.
        let guard =
            if state.status_at.load(Ordering::Relaxed) == 0 { state.refreshing.lock().ok() } else { state.refreshing.try_lock().ok() };
        if guard.is_some() && stale(state) {
            refresh_status(state);
        }
    }
    state.status.read().unwrap().clone()
}

/// Refreshes the status document every second while someone looks at it (and after every
/// run); an unwatched daemon makes no Docker calls at all.
fn status_loop(state: &State) {
    loop {
        let watched = now_ms().saturating_sub(state.status_wanted.load(Ordering::Relaxed)) < 15_000;
        if watched || state.refresh_now.swap(false, Ordering::Relaxed) {
            let _refreshing = state.refreshing.lock().unwrap();
            refresh_status(state);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn schedule_loop(state: &State, schedule: &crate::manifest::Schedule) {
    let cron: Option<croner::Cron> = schedule.rebuild.as_ref().and_then(|c| c.parse().ok());
    let mut next = cron.as_ref().and_then(|c| c.find_next_occurrence(&chrono::Local::now(), false).ok());
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if let (Some(c), Some(at)) = (&cron, next) {
            if chrono::Local::now() >= at {
                let _ = state.submit(
                    Operation::Rebuild,
                    Trigger::Schedule,
                    &format!("cron `{}`", schedule.rebuild.as_deref().unwrap_or("")),
                    true,
                );
                next = c.find_next_occurrence(&chrono::Local::now(), false).ok();
            }
        }
        if let Some(ttl) = schedule.idle_ttl {
            let idle = state.last_activity.lock().unwrap().elapsed();
            let busy = {
                let q = state.queue.lock().unwrap();
                q.running.is_some() || !q.jobs.is_empty()
            };
            if idle >= ttl && !busy && stack_is_up(state) {
                let _ = state.submit(
                    Operation::Down { volumes: true },
                    Trigger::Schedule,
                    &format!("idle for {}s (idle_ttl)", idle.as_secs()),
                    true,
                );
                *state.last_activity.lock().unwrap() = Instant::now();
            }
        }
    }
}

fn stack_is_up(state: &State) -> bool {
    use crate::docker::ContainerEngine;
    state.rt.block_on(state.docker.list_containers(&state.stack)).map(|c| !c.is_empty()).unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// HTTP

type Resp = Response<std::io::Cursor<Vec<u8>>>;

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn json_response<T: Serialize>(code: u16, body: &T) -> Resp {
    Response::from_data(serde_json::to_vec(body).unwrap_or_default())
        .with_status_code(code)
        .with_header(header("Content-Type", "application/json"))
}

fn error(code: u16, message: &str) -> Resp {
    json_response(code, &serde_json::json!({ "error": message }))
}

fn serve(state: &State, server: &Server) {
    while let Ok(req) = server.recv() {
        handle(state, req);
    }
}

fn authorized(state: &State, req: &Request) -> bool {
    let presented =
        req.headers().iter().find(|h| h.field.equiv("Authorization")).and_then(|h| h.value.as_str().strip_prefix("Bearer ")).unwrap_or("");
    // Constant time in the token's content: no timing hints about how much of a guess matched.
    bool::from(presented.as_bytes().ct_eq(state.token.as_bytes()))
}

fn query(url: &str) -> BTreeMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&').filter_map(|kv| kv.split_once('=').or(Some((kv, "")))).map(|(k, v)| (k.to_string(), v.to_string())).collect()
        })
        .unwrap_or_default()
}

fn handle(state: &State, req: Request) {
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").trim_end_matches('/').to_string();
    let q = query(&url);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let response = match (&method, segments.as_slice()) {
        (Method::Get, []) => {
            state.status_wanted.store(now_ms(), Ordering::Relaxed);
            Response::from_data(page::STATUS_PAGE.as_bytes().to_vec()).with_header(header("Content-Type", "text/html; charset=utf-8"))
        }
        (Method::Get, ["api", "v1", "health"]) => {
            json_response(200, &serde_json::json!({ "ok": true, "stack": state.stack, "pid": std::process::id() }))
        }
        (Method::Get, ["api", "v1", "status"]) => {
            let body = current_status(state);
            Response::from_data(body.as_ref().clone()).with_header(header("Content-Type", "application/json"))
        }
        (Method::Get, ["metrics"]) => {
            Response::from_data(metrics_text(state).into_bytes()).with_header(header("Content-Type", "text/plain; version=0.0.4"))
        }
        (Method::Get, ["api", "v1", "runs"]) => {
            let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50usize).min(1000);
            match state.history.runs(Some(&state.stack), limit) {
                Ok(runs) => json_response(200, &serde_json::json!({ "runs": runs })),
                Err(e) => error(500, &e.to_string()),
            }
        }
        (Method::Get, ["api", "v1", "runs", id]) => match id.parse::<i64>().ok().map(|id| state.history.run(id)) {
            Some(Ok(Some(detail))) => json_response(200, &detail),
            Some(Ok(None)) | None => error(404, &format!("no run {id}")),
            Some(Err(e)) => error(500, &e.to_string()),
        },
        (Method::Get, ["api", "v1", "runs", id, "log"]) => {
            if !authorized(state, &req) {
                error(401, "a run's log needs `Authorization: Bearer <token>`")
            } else {
                let Ok(id) = id.parse::<i64>() else { return respond(req, error(404, "no such run")) };
                let after = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
                if q.get("follow").is_some_and(|f| f == "1" || f == "true") {
                    let follower = LogFollower { history: state.history.clone(), run: id, after, buf: Vec::new(), pos: 0 };
                    // A follower lasts as long as the run: it gets a thread of its own so the
                    // four serving threads stay free for status and API calls.
                    let _ = std::thread::Builder::new().name("follow".into()).spawn(move || {
                        let resp =
                            Response::new(200.into(), vec![header("Content-Type", "text/plain; charset=utf-8")], follower, None, None);
                        let _ = req.respond(resp);
                    });
                    return;
                }
                match state.history.log_since(id, after, 1000) {
                    Ok(lines) => json_response(200, &lines),
                    Err(e) => error(500, &e.to_string()),
                }
            }
        }
        (Method::Post, ["api", "v1", op]) => {
            if !authorized(state, &req) {
                error(401, "mutating calls need `Authorization: Bearer <token>`")
            } else {
                let operation = match *op {
                    "up" => Some(Operation::Up),
                    "down" => Some(Operation::Down { volumes: q.get("volumes").is_none_or(|v| v != "false") }),
                    "rebuild" => Some(Operation::Rebuild),
                    "verify" => Some(Operation::Verify),
                    "check" => match q.get("what").map(String::as_str).unwrap_or("all") {
                        "all" => Some(Operation::Check(CheckSet::All)),
                        "smoke" => Some(Operation::Check(CheckSet::Smoke)),
                        "migrations" => Some(Operation::Check(CheckSet::Migrations)),
                        _ => None,
                    },
                    _ => None,
                };
                match operation {
                    None => error(404, &format!("unknown operation `{op}`; use up, down, rebuild, check, verify")),
                    Some(operation) => {
                        let wait = q.get("wait").is_none_or(|w| w != "false");
                        // The CLI forwarding to the daemon says so; the history keeps who asked.
                        let trigger = if q.get("trigger").is_some_and(|t| t == "cli") { Trigger::Cli } else { Trigger::Api };
                        match state.submit(operation, trigger, "", wait) {
                            Ok(run) => json_response(
                                202,
                                &serde_json::json!({ "run_id": run, "status": "queued", "log": format!("/api/v1/runs/{run}/log?follow=1") }),
                            ),
                            Err(busy) => json_response(
                                409,
                                &serde_json::json!({ "error": format!("stack `{}` is busy with run {busy}; retry, or omit wait=false to queue", state.stack), "busy_run_id": busy }),
                            ),
                        }
                    }
                }
            }
        }
        _ => error(404, &format!("no route {} {path}", method)),
    };
    respond(req, response);
}

fn respond(req: Request, resp: Resp) {
    let _ = req.respond(resp);
}

/// A run's log as a stream that ends when the run does (`?follow=1`, e.g. `curl -N`).
struct LogFollower {
    history: Arc<History>,
    run: i64,
    after: i64,
    buf: Vec<u8>,
    pos: usize,
}

impl LogFollower {
    /// Buffers up to `limit` new lines; false when there are none.
    fn fill(&mut self, limit: usize) -> std::io::Result<bool> {
        let lines = self.history.log_since(self.run, self.after, limit).map_err(std::io::Error::other)?;
        let Some(last) = lines.last() else { return Ok(false) };
        self.after = last.seq;
        self.buf = lines.iter().map(|l| format!("{}\n", l.line)).collect::<String>().into_bytes();
        self.pos = 0;
        Ok(true)
    }
}

impl Read for LogFollower {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.fill(500)? {
                continue;
            }
            match self.history.run(self.run).map_err(std::io::Error::other)? {
                Some(d) if d.run.status.is_active() => std::thread::sleep(Duration::from_millis(100)),
                Some(d) => {
                    // Drain lines written just before the status changed, then the verdict.
                    if self.fill(100_000)? {
                        continue;
                    }
                    if self.run < 0 {
                        return Ok(0);
                    }
                    let verdict = format!(
                        "run {} {}{}\n",
                        self.run,
                        d.run.status.as_str(),
                        d.run.error.map(|e| format!(": {e}")).unwrap_or_default()
                    );
                    self.buf = verdict.into_bytes();
                    self.pos = 0;
                    self.run = -self.run;
                }
                None => return Ok(0),
            }
        }
    }
}

fn metrics_text(state: &State) -> String {
    let data = state.history.metrics(&state.stack).unwrap_or_else(|_| crate::history::MetricsData {
        stack: state.stack.clone(),
        deployments: 0,
        deployments_succeeded: 0,
        last_rebuild_seconds: None,
        last_rebuild_succeeded: None,
        last_refresh_seconds: None,
        latest_checks: vec![],
        runs_by_status: Default::default(),
    });
    let status: serde_json::Value = serde_json::from_slice(&current_status(state)).unwrap_or_default();
    let ready = state.ready_seconds.lock().unwrap().clone();
    let services = status["services"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let name = r["service"].as_str().unwrap_or("").to_string();
                    metrics::ServiceMetric { ready_seconds: ready.get(&name).copied(), ready: r["ready"].as_bool().unwrap_or(false), name }
                })
                .collect()
        })
        .unwrap_or_default();
    let host = serde_json::from_value(status["host"].clone()).ok();
    let input = metrics::MetricsInput {
        stack: state.stack.clone(),
        deploy_runs_total: data.deployments,
        deploy_runs_succeeded: data.deployments_succeeded,
        last_rebuild_seconds: data.last_rebuild_seconds,
        last_refresh_seconds: data.last_refresh_seconds,
        checks: data
            .latest_checks
            .iter()
            .map(|c| metrics::CheckMetric {
                name: c.name.clone(),
                passed: c.outcome == "passed",
                seconds: c.seconds,
                p95_ms: c.p95_ms,
                p99_ms: c.p99_ms,
                error_rate: c.error_rate,
            })
            .collect(),
        services,
        runs_by_status: data.runs_by_status.pairs().iter().map(|(s, n)| (s.as_str().to_string(), *n)).collect(),
        host,
        up: status["docker"].as_bool().unwrap_or(true),
    };
    metrics::render(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_watch_details_list_every_changed_path_once() {
        assert_eq!(merge_detail("changed: a, b", "changed: b, c"), "changed: a, b, c");
        assert_eq!(merge_detail("cron `* * * * *`", "cron `* * * * *`"), "cron `* * * * *`");
    }

    #[test]
    fn query_strings_parse_with_and_without_values() {
        let q = query("/api/v1/check?what=smoke&wait=false&x");
        assert_eq!((q["what"].as_str(), q["wait"].as_str(), q["x"].as_str()), ("smoke", "false", ""));
        assert!(query("/api/v1/up").is_empty());
    }
}
