//! `stagectl daemon` over real HTTP, with real Docker: auth, the per-stack queue, the CLI
//! forwarding to it, history across `kill -9`, metrics, the watcher, schedules.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// A daemon process serving a test stack; killed (SIGKILL) on drop, before the stack is removed.
pub(crate) struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    pub(crate) fn start(stack: &Stack, extra: &[&str]) -> Daemon {
        let mut child = Command::new(BIN)
            .arg("-f")
            .arg(stack.path("stack.toml"))
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("STAGECTL_STATE_DIR", stack.path("state"))
            .env("STAGECTL_TOKEN", TOKEN)
            .env_remove("STAGECTL_FILE")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start daemon");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in daemon output: {line:?}"));
        // Keep draining its stderr so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = stderr.read_to_string(&mut sink);
        });
        Daemon { child, port }
    }

    pub(crate) fn request(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }

    pub(crate) fn json(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = self.request(method, path, Some(TOKEN));
        (code, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    pub(crate) fn runs(&self) -> Vec<serde_json::Value> {
        self.json("GET", "/api/v1/runs?limit=100").1["runs"].as_array().cloned().unwrap_or_default()
    }

    pub(crate) fn run(&self, id: i64) -> serde_json::Value {
        self.json("GET", &format!("/api/v1/runs/{id}")).1["run"].clone()
    }

    /// Waits for run `id` to leave queued/running; returns its row.
    pub(crate) fn wait_run(&self, id: i64, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self.run(id);
            if r["status"] != "queued" && r["status"] != "running" {
                return r;
            }
            assert!(Instant::now() < deadline, "run {id} still {} after {within:?}", r["status"]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a run matching `pred` to exist.
    pub(crate) fn wait_for(&self, within: Duration, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.runs().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(Instant::now() < deadline, "no run {what} after {within:?}: {:#?}", self.runs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn post(&self, path: &str) -> i64 {
        let (code, v) = self.json("POST", path);
        assert_eq!(code, 202, "{path}: {v}");
        v["run_id"].as_i64().unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One long-running service.
const WEB: &str = r#"
[stack]
name = "{stack}"

[services.web]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = { exec = ["true"] }
"#;

/// A job that takes a second and a half: `rebuild` lasts long enough to overlap with other
/// requests.
const SEED: &str = r#"
[services.seed]
image = "stagectl/debian:bookworm"
job = true
command = ["sleep", "1.5"]
depends_on = ["web"]
"#;

#[test]
fn api_needs_a_token_queues_per_stack_and_keeps_history_across_kill_9() {
    require_docker!();
    let stack = Stack::new("d-api", &format!("{WEB}{SEED}"));
    let mut d = Daemon::start(&stack, &["--no-watch"]);

    // Reads are open; mutating calls and logs need the token.
    let (code, body) = d.request("GET", "/api/v1/status", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&format!("\"stack\":\"{}\"", stack.name)), "{body}");
    assert_eq!(d.request("POST", "/api/v1/up", None).0, 401);
    assert_eq!(d.request("POST", "/api/v1/up", Some("test-token-0123456789abcdeX")).0, 401);
    assert_eq!(d.request("GET", "/api/v1/runs/1/log", None).0, 401);

    // One operation per stack: a second caller that will not wait gets 409, others queue.
    let first = d.post("/api/v1/rebuild");
    let (code, busy) = d.json("POST", "/api/v1/rebuild?wait=false");
    assert_eq!(code, 409, "{busy}");
    assert_eq!(busy["busy_run_id"], first);
    let second = d.post("/api/v1/rebuild");
    let a = d.wait_run(first, Duration::from_secs(120));
    let b = d.wait_run(second, Duration::from_secs(120));
    assert_eq!((a["status"].as_str(), b["status"].as_str()), (Some("succeeded"), Some("succeeded")), "{a}\n{b}");
    assert!(a["finished_at"].as_str().unwrap() <= b["started_at"].as_str().unwrap(), "runs overlapped:\n{a}\n{b}");
    let (code, log) = d.json("GET", &format!("/api/v1/runs/{first}/log"));
    assert_eq!(code, 200);
    assert!(log.as_array().unwrap().iter().any(|l| l["line"].as_str().unwrap().contains("seed completed")), "{log}");
    let (code, followed) = d.request("GET", &format!("/api/v1/runs/{first}/log?follow=1"), Some(TOKEN));
    assert_eq!(code, 200);
    assert!(followed.contains("seed completed") && followed.contains(&format!("run {first} succeeded")), "{followed}");

    // The CLI hands its operation to the daemon and follows it.
    let out = stack.run_env(&["up"], &[("STAGECTL_STATE_DIR", stack.path("state").to_str().unwrap()), ("STAGECTL_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("succeeded"), "{}", stdout(&out));
    let cli_run = d.runs().into_iter().next().unwrap();
    assert_eq!((cli_run["trigger"].as_str(), cli_run["operation"].as_str()), (Some("cli"), Some("up")), "{cli_run}");

    // Metrics are Prometheus text.
    let (code, metrics) = d.request("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert_prometheus_text(&metrics);
    assert!(metrics.contains(&format!("stagectl_deploy_success_ratio{{stack=\"{}\"}} 1", stack.name)), "{metrics}");

    // kill -9 in the middle of a run: the history survives, the run is marked interrupted.
    let killed = d.post("/api/v1/rebuild");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.run(killed)["status"] != "running" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill();
    let d = Daemon::start(&stack, &["--no-watch"]);
    let runs = d.runs();
    let status_of = |id: i64| runs.iter().find(|r| r["id"] == id).map(|r| r["status"].as_str().unwrap().to_string());
    assert_eq!(status_of(first).as_deref(), Some("succeeded"));
    assert_eq!(status_of(second).as_deref(), Some("succeeded"));
    assert_eq!(status_of(killed).as_deref(), Some("interrupted"), "{runs:#?}");
}

/// Every line is a comment or `name{labels} value`; every sample's family has a TYPE line.
pub(crate) fn assert_prometheus_text(text: &str) {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$"#,
    )
    .unwrap();
    let mut typed = std::collections::HashSet::new();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            assert!(typed.insert(parts.next().unwrap().to_string()), "TYPE twice: {line}");
            assert!(matches!(parts.next(), Some("gauge" | "counter" | "summary" | "histogram" | "untyped")), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let caps = sample.captures(line).unwrap_or_else(|| panic!("not a Prometheus sample line: {line:?}"));
        assert!(typed.contains(&caps[1]), "sample before its TYPE: {line}");
        samples += 1;
    }
    assert!(samples > 5, "{text}");
}

#[test]
fn watcher_reconciles_only_the_changed_service_and_ignores_an_invalid_manifest() {
    require_docker!();
    let manifest = r#"
[stack]
name = "{stack}"

[services.a]
build = { context = "a" }
ready = { exec = ["true"] }

[services.b]
build = { context = "b" }
ready = { exec = ["true"] }
"#;
    let stack = Stack::new("d-watch", manifest);
    for svc in ["a", "b"] {
        std::fs::create_dir_all(stack.path(svc)).unwrap();
        std::fs::write(
            stack.path(&format!("{svc}/Dockerfile")),
            "FROM stagectl/debian:bookworm\nCOPY msg /msg\nCMD [\"sleep\", \"infinity\"]\n",
        )
        .unwrap();
        std::fs::write(stack.path(&format!("{svc}/msg")), "one\n").unwrap();
    }
    let d = Daemon::start(&stack, &[]);
    let first = d.post("/api/v1/up");
    assert_eq!(d.wait_run(first, Duration::from_secs(120))["status"], "succeeded");
    let before = stack.container_ids();

    std::fs::write(stack.path("a/msg"), "two\n").unwrap();
    let run = d.wait_for(Duration::from_secs(20), "triggered by the watcher", |r| r["trigger"] == "watch");
    assert!(run["detail"].as_str().unwrap().contains("a/msg"), "{run}");
    let run = d.wait_run(run["id"].as_i64().unwrap(), Duration::from_secs(120));
    assert_eq!(run["status"], "succeeded", "{run}");
    let after = stack.container_ids();
    assert_ne!(before["a"], after["a"], "a was not recreated");
    assert_eq!(before["b"], after["b"], "b was recreated although only a changed");
    assert_eq!(docker(&["exec", &after["a"], "cat", "/msg"]).trim(), "two");

    // An invalid manifest: the run fails with the file's errors, nothing is touched.
    std::fs::write(stack.path("stack.toml"), manifest.replace("{stack}", &stack.name).replace("[services.b]", "[services.b]\nimage = 42"))
        .unwrap();
    let bad = d.wait_for(Duration::from_secs(20), "for the invalid manifest", |r| {
        r["trigger"] == "watch" && r["id"].as_i64() > run["id"].as_i64()
    });
    let bad = d.wait_run(bad["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(bad["status"], "failed");
    let error = bad["error"].as_str().unwrap();
    assert!(error.contains("stack.toml:") && error.contains("image"), "{error}");
    assert_eq!(stack.container_ids(), after, "an invalid manifest changed the running stack");
    let (_, status) = d.json("GET", "/api/v1/status");
    std::thread::sleep(Duration::from_millis(1100));
    let (_, status2) = d.json("GET", "/api/v1/status");
    assert!(status["manifest_error"].is_string() || status2["manifest_error"].is_string(), "{status2}");
}

#[test]
fn cron_schedule_rebuilds_and_idle_ttl_tears_down() {
    require_docker!();
    let stack = Stack::new("d-sched", &format!("{WEB}\n[schedule]\nrebuild = \"*/2 * * * * *\"\n"));
    let d = Daemon::start(&stack, &["--no-watch"]);
    let run = d.wait_for(Duration::from_secs(30), "from the schedule", |r| r["trigger"] == "schedule" && r["operation"] == "rebuild");
    let run = d.wait_run(run["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["detail"].as_str().unwrap().contains("cron"), "{run}");
    assert_eq!(stack.container_ids().len(), 1);
    drop(d);

    stack.write_manifest(&format!("{WEB}\n[schedule]\nidle_ttl = \"2s\"\n"));
    let d = Daemon::start(&stack, &["--no-watch"]);
    let down =
        d.wait_for(Duration::from_secs(30), "tearing the idle stack down", |r| r["trigger"] == "schedule" && r["operation"] == "down");
    let down = d.wait_run(down["id"].as_i64().unwrap(), Duration::from_secs(60));
    assert_eq!(down["status"], "succeeded", "{down}");
    assert!(down["detail"].as_str().unwrap().contains("idle"), "{down}");
    assert!(stack.container_ids().is_empty(), "idle stack still running");
}

/// Resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

#[test]
fn slow_and_oversized_clients_cannot_starve_the_api_or_its_memory() {
    require_docker!();
    let stack = Stack::new("dslow", WEB);
    let daemon = Daemon::start(&stack, &["--no-watch"]);
    assert_eq!(daemon.request("GET", "/api/v1/status", None).0, 200);
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    };
    // More idle clients than serving threads: bodies announced and never sent, heads never ended.
    let mut idle = Vec::new();
    for i in 0..8 {
        let mut s = connect();
        write!(s, "POST /api/v1/rebuild HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000\r\n\r\n").unwrap();
        idle.push(s);
        let mut s = connect();
        write!(s, "GET /api/v1/status?{i} HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
        idle.push(s);
    }
    // One endless header: 20 MB, refused after the first 64 KiB.
    let before = rss_kib(daemon.child.id());
    let mut big = connect();
    let chunk = vec![b'a'; 64 * 1024];
    write!(big, "GET /api/v1/status HTTP/1.1\r\nX-Big: ").unwrap();
    let mut sent = 0;
    while sent < 20 * 1024 * 1024 && big.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    assert!(sent < 20 * 1024 * 1024, "the daemon read a 20 MB header to the end");
    assert!(answer.is_empty() || String::from_utf8_lossy(&answer).contains(" 431 "), "{}", String::from_utf8_lossy(&answer));
    let grown_mib = rss_kib(daemon.child.id()).saturating_sub(before) / 1024;
    assert!(grown_mib < 32, "RSS grew by {grown_mib} MiB for one oversized header");
    // Meanwhile the API answers everybody else promptly.
    for _ in 0..10 {
        let started = Instant::now();
        let (code, _) = daemon.request("GET", "/api/v1/status", None);
        assert_eq!(code, 200);
        assert!(started.elapsed() < Duration::from_secs(5), "status took {:?} with idle clients", started.elapsed());
    }
    // A request with a body is refused without queueing anything.
    let mut s = connect();
    write!(s, "POST /api/v1/up HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(daemon.runs().is_empty(), "a refused request queued a run: {:?}", daemon.runs());
    // A head that stalls is closed after the stall limit (10 s), not held forever.
    let mut stalled = connect();
    write!(stalled, "GET /api/v1/status HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(18), "a stalled head was held {:?}", started.elapsed());
    drop(idle);
}

#[test]
fn a_full_state_disk_refuses_runs_with_503_and_the_cli_says_why() {
    require_docker!();
    let stack = Stack::new("dfull", WEB);
    let Some(disk) = SmallDisk::mount(stack.path("state"), "4m") else { return };
    let daemon = Daemon::start(&stack, &["--no-watch"]);
    assert_eq!(daemon.request("GET", "/api/v1/status", None).0, 200);
    disk.fill();
    let (code, body) = daemon.request("POST", "/api/v1/rebuild", Some(TOKEN));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("cannot be recorded"), "{body}");
    // Nothing ran behind the history's back.
    std::thread::sleep(Duration::from_millis(500));
    assert!(stack.container_ids().is_empty(), "a refused rebuild started containers: {:?}", stack.container_ids());
    // The CLI forwards to the daemon and says what happened.
    let out = stack.run_env(&["up"], &[("STAGECTL_STATE_DIR", stack.path("state").to_str().unwrap()), ("STAGECTL_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("503") && stderr(&out).contains("cannot be recorded"), "{}", stderr(&out));
}

/// The daemon's status and `/metrics` show how many services drifted from the manifest
/// (`stagectl diff`), computed in the background and cached.
#[test]
fn status_and_metrics_count_the_services_that_drifted_from_the_manifest() {
    require_docker!();
    let stack = Stack::new("daemondrift", WEB);
    stack.up_ok();
    // The manifest changes after `up`; the daemon does not watch, so the stack stays as it is.
    stack.write_manifest(&WEB.replace(r#"command = ["sleep", "infinity"]"#, r#"command = ["sleep", "1000000"]"#));
    let d = Daemon::start(&stack, &["--no-watch"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (code, status) = d.json("GET", "/api/v1/status");
        assert_eq!(code, 200);
        if !status["drift"].is_null() {
            break status;
        }
        assert!(Instant::now() < deadline, "no drift in the status document: {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["drift"]["drifted"], 1, "{status}");
    assert_eq!(status["drift"]["services"][0], "web: recreate", "{status}");
    let (code, metrics) = d.request("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert_prometheus_text(&metrics);
    assert!(metrics.contains(&format!("stagectl_drifted_services{{stack=\"{}\"}} 1", stack.name)), "{metrics}");
}
