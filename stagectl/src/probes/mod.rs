//! Readiness probes: polled tightly (default every 20 ms) against a deadline, never a fixed
//! sleep. TCP and HTTP probes go to the container's address on the stack network, not to a
//! published port: Docker's port proxy accepts connections before the service inside does.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::docker::ContainerEngine;
use crate::manifest::{Probe, Readiness};

/// Why a service did not become ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The deadline passed; the last probe error is kept.
    Timeout { after: Duration, last_error: String },
    /// The container stopped while we waited.
    Exited { code: Option<i64> },
    /// Docker itself failed.
    Docker(String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Timeout { after, last_error } => {
                write!(f, "not ready after {:.1}s; last probe error: {last_error}", after.as_secs_f64())
            }
            NotReady::Exited { code: Some(c) } => write!(f, "container exited with code {c} before it was ready"),
            NotReady::Exited { code: None } => write!(f, "container stopped before it was ready"),
            NotReady::Docker(e) => write!(f, "{e}"),
        }
    }
}

/// How often to look at whether the container is still running while probing.
const STATE_CHECK_EVERY: Duration = Duration::from_millis(200);
/// Upper bound for one probe attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits until `readiness` passes for container `id`; returns the time it took from the call.
pub async fn wait_ready<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    network: &str,
    readiness: &Readiness,
) -> Result<Duration, NotReady> {
    let start = Instant::now();
    let deadline = start + readiness.timeout.min(crate::manifest::MAX_TIMEOUT); // ≤ 24h by parse; min() guards hand-built values
    let engine_err = |e: crate::error::Error| NotReady::Docker(e.to_string());
    let status = docker.container_status(id, network).await.map_err(engine_err)?;
    if !status.running {
        return Err(NotReady::Exited { code: status.exit_code });
    }
    if let Probe::Log { pattern } = &readiness.probe {
        return wait_for_log(docker, id, network, pattern, start, deadline).await;
    }
    let ip = status.ip.clone();
    let client = http_client();
    let mut last_error = String::from("no attempt finished");
    let mut last_state_check = Instant::now();
    loop {
        let now = Instant::now();
        let budget = deadline.saturating_duration_since(now).min(ATTEMPT_TIMEOUT);
        if budget.is_zero() {
            return Err(NotReady::Timeout { after: start.elapsed(), last_error });
        }
        match tokio::time::timeout(budget, attempt(docker, id, network, ip.as_deref(), &readiness.probe, &client)).await {
            Ok(Ok(())) => return Ok(start.elapsed()),
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = format!("probe attempt timed out after {}ms", budget.as_millis()),
        }
        if last_state_check.elapsed() >= STATE_CHECK_EVERY {
            last_state_check = Instant::now();
            let s = docker.container_status(id, network).await.map_err(engine_err)?;
            if !s.running {
                return Err(NotReady::Exited { code: s.exit_code });
            }
        }
        tokio::time::sleep(readiness.interval.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// One probe attempt with a short deadline, for `status`.
pub async fn probe_once<E: ContainerEngine + ?Sized>(docker: &E, id: &str, network: &str, probe: &Probe) -> Result<(), String> {
    let status = docker.container_status(id, network).await.map_err(|e| e.to_string())?;
    if !status.running {
        return Err("not running".into());
    }
    let run = async {
        if let Probe::Log { pattern } = probe {
            let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
            let lines = docker.tail_logs(id, 10_000).await.map_err(|e| e.to_string())?;
            return if lines.iter().any(|l| re.is_match(l)) { Ok(()) } else { Err(format!("no log line matches /{pattern}/")) };
        }
        attempt(docker, id, network, status.ip.as_deref(), probe, &http_client()).await
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, run).await.unwrap_or_else(|_| Err("probe timed out".into()))
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(ATTEMPT_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .expect("a plain HTTP client always builds")
}

async fn attempt<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    network: &str,
    ip: Option<&str>,
    probe: &Probe,
    client: &reqwest::Client,
) -> Result<(), String> {
    let need_ip = || ip.ok_or_else(|| format!("container has no address on network {network}"));
    match probe {
        Probe::Tcp { port } => {
            let addr = format!("{}:{port}", need_ip()?);
            tokio::net::TcpStream::connect(&addr).await.map(|_| ()).map_err(|e| format!("tcp {addr}: {e}"))
        }
        Probe::Postgres { port } => postgres_accepting(&format!("{}:{port}", need_ip()?)).await,
        Probe::Http { port, path, status } => {
            let url = format!("http://{}:{port}{path}", need_ip()?);
            let resp = client.get(&url).send().await.map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
            if resp.status().as_u16() == *status {
                Ok(())
            } else {
                Err(format!("GET {url}: status {} (want {status})", resp.status().as_u16()))
            }
        }
        Probe::Exec { command } => match docker.exec(id, command).await {
            Ok((0, _)) => Ok(()),
            Ok((code, out)) => {
                let last = out.lines().last().unwrap_or("").trim().to_string();
                Err(format!(
                    "`{}` exited with {code}{}",
                    command.join(" "),
                    if last.is_empty() { String::new() } else { format!(": {last}") }
                ))
            }
            Err(e) => Err(e.to_string()),
        },
        Probe::Healthcheck => {
            let s = docker.container_status(id, network).await.map_err(|e| e.to_string())?;
            match s.health.as_deref() {
                Some("healthy") => Ok(()),
                Some(other) => Err(format!("docker healthcheck is {other}")),
                None => Err("the image defines no HEALTHCHECK".into()),
            }
        }
        Probe::Log { .. } => Err("log probes are handled by wait_for_log".into()),
    }
}

/// What pg_isready does, in-process: send a startup message and read the first reply. An
/// authentication request or any error other than SQLSTATE 57P03 (cannot connect now: starting
/// up, shutting down, in recovery) means the server accepts connections.
async fn postgres_accepting(addr: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("postgres {addr}: {e}"))?;
    let params = b"user\0postgres\0database\0postgres\0application_name\0stagectl-probe\0\0";
    let mut msg = Vec::with_capacity(8 + params.len());
    msg.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
    msg.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    msg.extend_from_slice(params);
    stream.write_all(&msg).await.map_err(|e| format!("postgres {addr}: {e}"))?;
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.map_err(|e| format!("postgres {addr}: no answer: {e}"))?;
    match head[0] {
        b'R' => Ok(()),
        b'E' => {
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4).min(8192)];
            stream.read_exact(&mut body).await.map_err(|e| format!("postgres {addr}: {e}"))?;
            let fields: Vec<&[u8]> = body.split(|b| *b == 0).collect();
            let field = |code: u8| fields.iter().find(|f| f.first() == Some(&code)).map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
            if field(b'C').as_deref() == Some("57P03") {
                Err(format!("postgres {addr}: {}", field(b'M').unwrap_or_default()))
            } else {
                Ok(())
            }
        }
        other => Err(format!("postgres {addr}: unexpected reply {:?}", other as char)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn wait_for_log<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    network: &str,
    pattern: &str,
    start: Instant,
    deadline: Instant,
) -> Result<Duration, NotReady> {
    let re = regex::Regex::new(pattern).map_err(|e| NotReady::Docker(e.to_string()))?;
    let mut stream = docker.stream_logs(id, true, None);
    let mut partial = String::new();
    let mut ticker = tokio::time::interval(STATE_CHECK_EVERY);
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(text)) => {
                    partial.push_str(&text);
                    while let Some(nl) = partial.find('\n') {
                        let line: String = partial.drain(..=nl).collect();
                        if re.is_match(line.trim_end()) {
                            return Ok(start.elapsed());
                        }
                    }
                    if re.is_match(&partial) {
                        return Ok(start.elapsed());
                    }
                }
                Some(Err(e)) => return Err(NotReady::Docker(e.to_string())),
                // The log stream ends when the container stops.
                None => {
                    let s = docker.container_status(id, network).await.map_err(|e| NotReady::Docker(e.to_string()))?;
                    return Err(NotReady::Exited { code: s.exit_code });
                }
            },
            _ = ticker.tick() => {
                if Instant::now() >= deadline {
                    return Err(NotReady::Timeout { after: start.elapsed(), last_error: format!("no log line matched /{pattern}/") });
                }
            }
        }
    }
}
