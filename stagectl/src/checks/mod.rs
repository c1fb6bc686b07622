//! Smoke checks against the running stack: http (status, body, JSON pointers, latency
//! budget), tcp, exec, sql, host script. Each is retried until it passes or its deadline.

mod error;
pub mod report;

pub use error::CheckError;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::docker::ContainerEngine;
use crate::manifest::{CheckKind, LatencyBudget, Manifest, SmokeCheck};
use crate::plan;
use crate::secrets::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed,
    Failed,
}

/// Latency figures of a burst (seed metrics M3 and M4).
#[derive(Debug, Clone, Serialize)]
pub struct LatencyStats {
    pub requests: u32,
    pub concurrency: u32,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub kind: &'static str,
    pub outcome: CheckOutcome,
    pub seconds: f64,
    pub attempts: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyStats>,
}

impl CheckResult {
    pub fn new(name: String, kind: &'static str, passed: bool, started: Instant, message: String) -> CheckResult {
        CheckResult {
            name,
            kind,
            outcome: if passed { CheckOutcome::Passed } else { CheckOutcome::Failed },
            seconds: started.elapsed().as_secs_f64(),
            attempts: 1,
            message,
            latency: None,
        }
    }
}

/// Pause between attempts of a failing check.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

pub async fn run_all<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    on_done: &(dyn Fn(&CheckResult) + Send + Sync),
) -> crate::error::Result<Vec<CheckResult>> {
    let redactor = Redactor::for_manifest(manifest);
    let containers = docker.list_containers(&manifest.stack).await?;
    let mut results = Vec::new();
    for check in &manifest.smoke {
        let started = Instant::now();
        let deadline = started + check.timeout.min(crate::manifest::MAX_TIMEOUT); // ≤ 24h by parse; min() guards hand-built values
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let outcome = attempt(docker, manifest, check, &containers).await;
            if outcome.is_ok() {
                break outcome;
            }
            tokio::time::sleep(RETRY_INTERVAL.min(deadline.saturating_duration_since(Instant::now()))).await;
            if Instant::now() >= deadline {
                break outcome;
            }
        };
        let mut result = CheckResult {
            name: check.name.clone(),
            kind: check.kind.kind(),
            outcome: CheckOutcome::Passed,
            seconds: 0.0,
            attempts,
            message: String::new(),
            latency: None,
        };
        match outcome {
            Ok(msg) => {
                result.message = msg;
                if let (Some(budget), CheckKind::Http { .. }) = (&check.latency, &check.kind) {
                    match target(docker, &check.kind, &manifest.stack, &containers).await {
                        Ok(base) => {
                            let stats = burst(&check.kind, &base, budget).await;
                            if let Some(why) = over_budget(&stats, budget) {
                                result.outcome = CheckOutcome::Failed;
                                result.message = why;
                            } else {
                                result.message = format!(
                                    "p95 {:.1} ms ≤ {} ms, errors {:.1} %",
                                    stats.p95_ms,
                                    budget.p95.as_millis(),
                                    stats.error_rate * 100.0
                                );
                            }
                            result.latency = Some(stats);
                        }
                        Err(e) => {
                            result.outcome = CheckOutcome::Failed;
                            result.message = e.to_string();
                        }
                    }
                }
            }
            Err(e) => {
                result.outcome = CheckOutcome::Failed;
                result.message = format!("{e} (after {attempts} attempts in {:.1}s)", started.elapsed().as_secs_f64());
            }
        }
        result.message = redactor.apply(&result.message);
        result.seconds = started.elapsed().as_secs_f64();
        on_done(&result);
        results.push(result);
    }
    Ok(results)
}

fn over_budget(stats: &LatencyStats, budget: &LatencyBudget) -> Option<String> {
    let p95_budget = budget.p95.as_secs_f64() * 1000.0;
    if stats.p95_ms > p95_budget {
        return Some(format!(
            "p95 {:.1} ms > budget {} ms ({} requests at concurrency {})",
            stats.p95_ms,
            budget.p95.as_millis(),
            stats.requests,
            stats.concurrency
        ));
    }
    if let Some(p99) = budget.p99 {
        if stats.p99_ms > p99.as_secs_f64() * 1000.0 {
            return Some(format!("p99 {:.1} ms > budget {} ms", stats.p99_ms, p99.as_millis()));
        }
    }
    if stats.error_rate > budget.max_error_rate {
        return Some(format!("error rate {:.1} % > budget {:.1} %", stats.error_rate * 100.0, budget.max_error_rate * 100.0));
    }
    None
}

/// Address (`ip:port`) of an http/tcp check's service on the stack network.
async fn target<E: ContainerEngine + ?Sized>(
    docker: &E,
    kind: &CheckKind,
    stack: &str,
    containers: &[crate::docker::ObservedContainer],
) -> Result<String, CheckError> {
    let network = plan::network_name(stack);
    let (service, port) = match kind {
        CheckKind::Http { service, port, .. } | CheckKind::Tcp { service, port } => (service, *port),
        _ => return Err(CheckError::NoNetworkTarget),
    };
    let id = running(stack, service, containers)?;
    let status = docker.container_status(&id, &network).await?;
    let ip = status.ip.ok_or_else(|| CheckError::NoAddress { service: service.clone(), network: network.clone() })?;
    Ok(format!("{ip}:{port}"))
}

fn running(stack: &str, service: &str, containers: &[crate::docker::ObservedContainer]) -> Result<String, CheckError> {
    plan::running_container(stack, service, containers)
        .map(|c| c.id.clone())
        .ok_or_else(|| CheckError::NotRunning { service: service.to_string() })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("a plain HTTP client always builds")
}

fn request(client: &reqwest::Client, kind: &CheckKind, base: &str) -> Option<reqwest::RequestBuilder> {
    let CheckKind::Http { method, path, headers, body, .. } = kind else { return None };
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client.request(method, format!("http://{base}{path}"));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.value.as_str());
    }
    if let Some(b) = body {
        req = req.body(b.clone());
    }
    Some(req)
}

/// How many lines of a failing command's output a check message shows.
const SHOWN_LINES: usize = 5;

/// The last lines a command printed, joined by ` / ` (secrets are masked with the whole
/// message); `(nothing)` when it printed nothing.
fn last_lines(output: &str) -> String {
    let lines: Vec<&str> = output.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return "(nothing)".to_string();
    }
    let from = lines.len().saturating_sub(SHOWN_LINES);
    let more = if from > 0 { format!("… {from} more line(s) / ") } else { String::new() };
    format!("{more}{}", lines[from..].join(" / "))
}

/// A command as a shell would quote it, so it can be pasted: `sh -c 'echo $PW'`.
fn shell_words(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

async fn attempt<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    check: &SmokeCheck,
    containers: &[crate::docker::ObservedContainer],
) -> Result<String, CheckError> {
    match &check.kind {
        CheckKind::Http { path, expect_status, expect_body, expect_body_regex, expect_json, method, .. } => {
            let base = target(docker, &check.kind, &manifest.stack, containers).await?;
            let req = request(&client(), &check.kind, &base).expect("http check");
            let request = || format!("{method} {path}");
            let started = Instant::now();
            let resp = req.send().await.map_err(|source| CheckError::Request { request: request(), source })?;
            let status = resp.status().as_u16();
            let body = resp.text().await.map_err(|source| CheckError::ReadBody { request: request(), source })?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if status != *expect_status {
                return Err(CheckError::Status { request: request(), status, expected: *expect_status });
            }
            if let Some(s) = expect_body {
                if !body.contains(s.as_str()) {
                    return Err(CheckError::BodyLacks { request: request(), expected: s.clone() });
                }
            }
            if let Some(r) = expect_body_regex {
                let re = regex::Regex::new(r)?;
                if !re.is_match(&body) {
                    return Err(CheckError::BodyMismatch { request: request(), regex: r.clone() });
                }
            }
            if !expect_json.is_empty() {
                let json: serde_json::Value =
                    serde_json::from_str(&body).map_err(|source| CheckError::NotJson { request: request(), source })?;
                for (pointer, want) in expect_json {
                    match json.pointer(pointer) {
                        Some(got) if got == want => {}
                        Some(got) => {
                            return Err(CheckError::JsonValue {
                                request: request(),
                                pointer: pointer.clone(),
                                got: got.clone(),
                                expected: want.clone(),
                            })
                        }
                        None => return Err(CheckError::JsonMissing { request: request(), pointer: pointer.clone() }),
                    }
                }
            }
            Ok(format!("{method} {path} → {status} in {ms:.1} ms"))
        }
        CheckKind::Tcp { port, .. } => {
            let addr = target(docker, &check.kind, &manifest.stack, containers).await?;
            tokio::net::TcpStream::connect(&addr).await.map_err(|source| CheckError::Tcp { addr: addr.clone(), source })?;
            Ok(format!("tcp :{port} accepts connections"))
        }
        CheckKind::Exec { service, command, expect_output } => {
            let id = running(&manifest.stack, service, containers)?;
            let (code, out) = docker.exec(&id, command).await?;
            let shown = shell_words(command);
            if code != 0 {
                return Err(CheckError::ExecFailed { command: shown, code, last_lines: last_lines(&out) });
            }
            if let Some(want) = expect_output {
                if !out.contains(want.as_str()) {
                    return Err(CheckError::ExecOutputLacks { command: shown, expected: want.clone(), last_lines: last_lines(&out) });
                }
            }
            Ok(format!("`{shown}` exited 0"))
        }
        CheckKind::Sql { service, database, user, query, expect } => {
            let id = running(&manifest.stack, service, containers)?;
            let cmd = crate::data::psql_command(user, database, &["-tA", "-c", query]);
            let (code, out) = docker.exec(&id, &cmd).await?;
            if code != 0 {
                return Err(CheckError::QueryFailed { output: out.split_whitespace().collect::<Vec<_>>().join(" ") });
            }
            let got = out.trim();
            if got != expect.trim() {
                return Err(CheckError::QueryMismatch { got: got.to_string(), expected: expect.clone() });
            }
            Ok(format!("query returned {got:?}"))
        }
        CheckKind::Script { command } => {
            let out = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .current_dir(&manifest.dir)
                .env("STAGECTL_STACK", &manifest.stack)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|source| CheckError::ScriptSpawn { command: command.join(" "), source })?;
            if out.status.success() {
                Ok(format!("`{}` exited 0", command.join(" ")))
            } else {
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                Err(CheckError::ScriptFailed { command: shell_words(command), status: out.status, last_lines: last_lines(&text) })
            }
        }
    }
}

/// `requests` requests at `concurrency`, a small burst as real users make them.
async fn burst(kind: &CheckKind, base: &str, budget: &LatencyBudget) -> LatencyStats {
    let CheckKind::Http { expect_status, .. } = kind else { unreachable!("latency budgets are http only") };
    let client = client();
    let next = std::sync::atomic::AtomicU32::new(0);
    let workers = (0..budget.concurrency.min(budget.requests)).map(|_| async {
        let mut samples = Vec::new();
        while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < budget.requests {
            let started = Instant::now();
            let ok = match request(&client, kind, base).expect("http check").send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    status == *expect_status
                }
                Err(_) => false,
            };
            samples.push((started.elapsed().as_secs_f64() * 1000.0, ok));
        }
        samples
    });
    let samples: Vec<(f64, bool)> = futures_util::future::join_all(workers).await.into_iter().flatten().collect();
    let mut ms: Vec<f64> = samples.iter().map(|(m, _)| *m).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let errors = samples.iter().filter(|(_, ok)| !ok).count();
    LatencyStats {
        requests: samples.len() as u32,
        concurrency: budget.concurrency,
        p50_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        p99_ms: percentile(&ms, 99.0),
        error_rate: if samples.is_empty() { 1.0 } else { errors as f64 / samples.len() as f64 },
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
    }

    #[test]
    fn a_failing_command_shows_its_last_lines_and_a_pasteable_argv() {
        assert_eq!(shell_words(&["sh".into(), "-c".into(), "echo $PW; exit 1".into()]), "sh -c 'echo $PW; exit 1'");
        assert_eq!(last_lines("a\n\nb\n"), "a / b");
        assert_eq!(last_lines(""), "(nothing)");
        let many: String = (1..=8).map(|i| format!("line {i}\n")).collect();
        assert_eq!(last_lines(&many), "… 3 more line(s) / line 4 / line 5 / line 6 / line 7 / line 8");
    }

    #[test]
    fn attempt_errors_name_the_request_command_or_query() {
        let e = CheckError::Status { request: "GET /".into(), status: 200, expected: 404 };
        assert_eq!(e.to_string(), "GET /: status 200, expected 404");
        let (got, expected) = (serde_json::json!(false), serde_json::json!({"ok": true}));
        let e = CheckError::JsonValue { request: "GET /health".into(), pointer: "/ok".into(), got, expected };
        assert_eq!(e.to_string(), r#"GET /health: /ok is false, expected {"ok":true}"#);
        let e = CheckError::ExecOutputLacks { command: "cat /etc/ready".into(), expected: "yes".into(), last_lines: "no".into() };
        assert_eq!(e.to_string(), r#"`cat /etc/ready` output does not contain "yes"; it printed: no"#);
        assert_eq!(
            CheckError::QueryMismatch { got: "1".into(), expected: "2\n".into() }.to_string(),
            r#"query returned "1", expected "2\n""#
        );
    }

    #[test]
    fn budgets_fail_on_p95_p99_and_error_rate() {
        let budget = LatencyBudget {
            requests: 10,
            concurrency: 2,
            p95: Duration::from_millis(100),
            p99: Some(Duration::from_millis(200)),
            max_error_rate: 0.1,
        };
        let stats = |p95, p99, err| LatencyStats { requests: 10, concurrency: 2, p50_ms: 1.0, p95_ms: p95, p99_ms: p99, error_rate: err };
        assert_eq!(over_budget(&stats(50.0, 60.0, 0.0), &budget), None);
        assert!(over_budget(&stats(150.0, 160.0, 0.0), &budget).unwrap().starts_with("p95 150.0 ms > budget 100 ms"));
        assert!(over_budget(&stats(90.0, 250.0, 0.0), &budget).unwrap().starts_with("p99 250.0 ms"));
        assert!(over_budget(&stats(90.0, 95.0, 0.2), &budget).unwrap().starts_with("error rate 20.0 %"));
    }
}
