//! Smoke checks against the running stack: http (status, body, JSON pointers, latency
//! budget), tcp, exec, sql, host script. Each is retried until it passes or its deadline.

mod error;
mod latency;
pub mod report;

pub use error::CheckError;
pub use latency::{FailureCount, FailureReason, FirstFailure, LatencyStats};

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::docker::ContainerEngine;
use crate::manifest::{CheckKind, Manifest, SmokeCheck};
use crate::plan;
use crate::secrets::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed,
    Failed,
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
            // A service that is down stays down for this run: fail at once, with the reason,
            // instead of retrying for the whole timeout.
            if outcome.is_ok() || matches!(outcome, Err(CheckError::NotRunning { .. })) {
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
                            let mut stats = latency::burst(&check.kind, &base, budget).await;
                            match latency::verdict(&stats, budget) {
                                Ok(msg) => result.message = msg,
                                Err(why) => {
                                    result.outcome = CheckOutcome::Failed;
                                    result.message = why;
                                }
                            }
                            if let Some(error) = stats.first_failure.as_mut().and_then(|f| f.error.as_mut()) {
                                *error = redactor.apply(error);
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
    if let Some(c) = plan::running_container(stack, service, containers) {
        return Ok(c.id.clone());
    }
    let state = match plan::current_container(stack, service, containers) {
        None => "no container: `stagectl up` creates it".to_string(),
        Some(c) => match (c.state, c.exit_code) {
            (crate::docker::RunState::Exited, Some(code)) => format!("exited with code {code}; `stagectl logs {service}` shows why"),
            (crate::docker::RunState::Exited, None) => "stopped".to_string(),
            (crate::docker::RunState::Created, _) => "created, never started".to_string(),
            _ => "restarting or paused".to_string(),
        },
    };
    Err(CheckError::NotRunning { service: service.to_string(), state })
}

/// A whole request (connect, send, answer, body) gets this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting alone gets this long, so an address nobody answers on (a container that is
/// gone) is reported as a connect error rather than as a slow answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("a plain HTTP client always builds")
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
    match crate::text::last_lines(output, SHOWN_LINES) {
        (_, lines) if lines.is_empty() => "(nothing)".to_string(),
        (0, lines) => lines.join(" / "),
        (more, lines) => format!("… {more} more line(s) / {}", lines.join(" / ")),
    }
}

/// A command as a shell would quote it, so it can be pasted: `sh -c 'echo $PW'`.
pub(crate) fn shell_words(argv: &[String]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
