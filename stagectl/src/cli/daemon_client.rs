//! The CLI's side of the daemon: find a daemon serving a stack, hand it an operation, follow
//! the run's log, and turn the run's outcome into an exit code.

use std::time::Duration;

use crate::cli::output::Console;
use crate::error::{exit, Error, Result};
use crate::history::{RunDetail, RunStatus};
use crate::ops::{check_line, Operation};

/// A daemon that serves `stack` and answers now, with the token to use.
pub struct Daemon {
    pub url: String,
    pub token: Option<String>,
    /// Started with `--swarm`: its operations deploy to Docker Swarm.
    pub on_swarm: bool,
}

/// The daemon of `stack` if its discovery file names a live process that answers as that
/// daemon (a file left by a killed daemon, or a reused pid, is ignored).
pub async fn discover(stack: &str) -> Option<Daemon> {
    let text = std::fs::read_to_string(crate::daemon::discovery::path(stack)).ok()?;
    let d: crate::daemon::discovery::Discovery = serde_json::from_str(&text).ok()?;
    if !std::path::Path::new(&format!("/proc/{}", d.pid)).exists() {
        return None;
    }
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?
        .get(format!("{}/api/v1/health", d.url))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&health.text().await.ok()?).ok()?;
    if v["pid"].as_u64() != Some(u64::from(d.pid)) || v["stack"].as_str() != Some(stack) {
        return None;
    }
    let token = std::env::var("STAGECTL_TOKEN")
        .ok()
        .or_else(|| d.token_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).map(|t| t.trim().to_string()));
    Some(Daemon { url: d.url, token, on_swarm: v["engine"] == "swarm" })
}

/// A verb that always runs here (`up SERVICE...`, `stop`, `restart`) on a stack whose daemon
/// deploys it to Docker Swarm: refused with the reason `Operation::on_swarm` gives, rather than
/// run on the tasks' containers as if they were `up`'s.
pub async fn refuse_if_daemon_on_swarm(stack: &str, op: Operation) -> Result<()> {
    match discover(stack).await {
        // Only whether the operation has a Swarm form matters here, not where it would deploy.
        Some(d) if d.on_swarm => op.on_swarm(crate::ops::SwarmTarget::default()).map(drop),
        _ => Ok(()),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

async fn get(daemon: &Daemon, path: &str) -> Result<(u16, String)> {
    let mut req = client().get(format!("{}{path}", daemon.url));
    if let Some(t) = &daemon.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| Error::StackFailed(format!("daemon at {}: {e}", daemon.url)))?;
    let code = resp.status().as_u16();
    Ok((code, resp.text().await.unwrap_or_default()))
}

pub fn api_path(op: Operation) -> String {
    match op {
        Operation::Down { volumes } => format!("/api/v1/down?volumes={volumes}"),
        Operation::Check(set) => format!("/api/v1/check?what={}", set.as_str()),
        other => format!("/api/v1/{}", other.name()),
    }
}

/// Submits `op`, prints the run's log as it grows, and maps the outcome to an exit code.
pub async fn forward(daemon: &Daemon, op: Operation, console: &Console) -> Result<i32> {
    let path = api_path(op);
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut req = client().post(format!("{}{path}{sep}trigger=cli", daemon.url));
    if let Some(t) = &daemon.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| Error::StackFailed(format!("daemon at {}: {e}", daemon.url)))?;
    let code = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    if code != 202 {
        return Err(Error::StackFailed(format!("daemon at {} refused `{}` ({code}): {body}", daemon.url, op.name())));
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let run = v["run_id"].as_i64().ok_or_else(|| Error::StackFailed(format!("daemon answered without a run id: {body}")))?;
    console.note(&format!("run #{run} on the daemon at {} (queued); following its log", daemon.url));
    let mut after = 0;
    loop {
        let (code, text) = get(daemon, &format!("/api/v1/runs/{run}/log?after={after}")).await?;
        if code != 200 {
            return Err(Error::StackFailed(format!("reading the log of run #{run}: {code} {text}")));
        }
        let lines: Vec<crate::history::LogLine> = serde_json::from_str(&text).unwrap_or_default();
        for l in &lines {
            console.note(&l.line);
            after = l.seq;
        }
        if lines.is_empty() {
            let (_, text) = get(daemon, &format!("/api/v1/runs/{run}")).await?;
            let detail: RunDetail = serde_json::from_str(&text).map_err(|e| Error::StackFailed(format!("run #{run}: {e}: {text}")))?;
            if !detail.run.status.is_active() {
                // Lines written between the last read and the status change.
                let (_, text) = get(daemon, &format!("/api/v1/runs/{run}/log?after={after}")).await?;
                for l in serde_json::from_str::<Vec<crate::history::LogLine>>(&text).unwrap_or_default() {
                    console.note(&l.line);
                }
                for c in &detail.checks {
                    console.note(&check_line(c.outcome == "passed", &c.name, &c.kind, c.seconds, &c.message));
                }
                console.finish();
                let r = &detail.run;
                let secs = r.seconds.unwrap_or_default();
                return Ok(match r.status {
                    RunStatus::Succeeded => {
                        crate::cli::output::out(&format!("run #{run} `{}` of `{}` succeeded in {secs:.2}s", r.operation, r.stack));
                        exit::OK
                    }
                    _ => {
                        crate::cli::output::out(&format!(
                            "run #{run} `{}` of `{}` {}: {}",
                            r.operation,
                            r.stack,
                            r.status.as_str(),
                            r.error.as_deref().unwrap_or("")
                        ));
                        exit::STACK_FAILED
                    }
                });
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}
