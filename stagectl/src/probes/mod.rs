//! Readiness probes: polled tightly (default every 20 ms) against a deadline, never a fixed
//! sleep. TCP and HTTP probes go to the container's address on the stack network, not to a
//! published port: Docker's port proxy accepts connections before the service inside does.

mod mysql;

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::docker::ContainerEngine;
use crate::manifest::{Probe, Readiness};

/// Why a service did not become ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The deadline passed; the last probe error is kept (as text: it only explains).
    Timeout { after: Duration, last_error: String },
    /// `retries` attempts failed after the start period.
    Retries { attempts: u32, last_error: String },
    /// The container stopped while we waited.
    Exited { code: Option<i64> },
    /// Docker itself failed (or the log probe's pattern is not a valid regex).
    Docker(String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Timeout { after, last_error } => {
                write!(f, "not ready after {:.1}s; last probe error: {last_error}", after.as_secs_f64())
            }
            NotReady::Retries { attempts, last_error } => {
                write!(f, "not ready after {attempts} failed probe attempts (`retries`); last probe error: {last_error}")
            }
            NotReady::Exited { code: Some(c) } => write!(f, "container exited with code {c} before it was ready"),
            NotReady::Exited { code: None } => write!(f, "container stopped before it was ready"),
            NotReady::Docker(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NotReady {}

/// Why one probe attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("container has no address on network {network}")]
    NoAddress { network: String },
    #[error("tcp {addr}: {source}")]
    Tcp { addr: String, source: std::io::Error },
    #[error("postgres {addr}: {source}")]
    PostgresIo { addr: String, source: std::io::Error },
    #[error("postgres {addr}: no answer: {source}")]
    PostgresNoAnswer { addr: String, source: std::io::Error },
    /// The server answered SQLSTATE 57P03 (starting up, shutting down, in recovery).
    #[error("postgres {addr}: {message}")]
    PostgresNotAccepting { addr: String, message: String },
    #[error("postgres {addr}: unexpected reply {reply:?}")]
    PostgresUnexpected { addr: String, reply: char },
    #[error("mysql {addr}: {source}")]
    MysqlIo { addr: String, source: std::io::Error },
    #[error("mysql {addr}: no greeting: {source}")]
    MysqlNoAnswer { addr: String, source: std::io::Error },
    /// The server sent an error packet instead of its handshake (too many connections, host
    /// blocked, shutting down).
    #[error("mysql {addr}: error {code}: {message}")]
    MysqlRefused { addr: String, code: u16, message: String },
    #[error("mysql {addr}: not a MySQL greeting: {detail}")]
    MysqlUnexpected { addr: String, detail: String },
    /// The request failed; `detail` is the error with its chain of causes.
    #[error("GET {url}: {detail}")]
    HttpRequest { url: String, detail: String },
    #[error("GET {url}: status {got} (want {want})")]
    HttpStatus { url: String, got: u16, want: u16 },
    /// `last_line` is the last line of the command's output, if any.
    #[error("`{}` exited with {code}{}", .command.join(" "), colon_prefixed(.last_line))]
    ExecFailed { command: Vec<String>, code: i64, last_line: String },
    #[error("docker healthcheck is {health}")]
    Unhealthy { health: String },
    #[error("the image defines no HEALTHCHECK")]
    NoHealthcheck,
    #[error("log probes are handled by wait_for_log")]
    LogProbeAttempt,
    #[error("{0}")]
    BadPattern(#[from] regex::Error),
    #[error("no log line matches /{pattern}/")]
    NoLogMatch { pattern: String },
    #[error("probe attempt timed out after {}ms", .budget.as_millis())]
    AttemptTimedOut { budget: Duration },
    #[error("not running")]
    NotRunning,
    #[error("probe timed out")]
    TimedOut,
    #[error(transparent)]
    Docker(#[from] crate::error::Error),
}

/// `": text"`, or nothing for empty text.
fn colon_prefixed(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
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
    let client = http_client(readiness.attempt_timeout);
    let mut last_error = String::from("no attempt finished");
    let mut last_state_check = Instant::now();
    // Failed attempts that count toward `retries`: those begun after the start period.
    let mut failures = 0u32;
    loop {
        let now = Instant::now();
        let counts = now.duration_since(start) >= readiness.start_period;
        let budget = deadline.saturating_duration_since(now).min(readiness.attempt_timeout);
        if budget.is_zero() {
            return Err(NotReady::Timeout { after: start.elapsed(), last_error });
        }
        match tokio::time::timeout(budget, attempt(docker, id, network, ip.as_deref(), &readiness.probe, &client)).await {
            Ok(Ok(())) => return Ok(start.elapsed()),
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = ProbeError::AttemptTimedOut { budget }.to_string(),
        }
        if counts {
            failures += 1;
            if readiness.retries.is_some_and(|r| failures >= r) {
                return Err(NotReady::Retries { attempts: failures, last_error });
            }
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
pub async fn probe_once<E: ContainerEngine + ?Sized>(docker: &E, id: &str, network: &str, probe: &Probe) -> Result<(), ProbeError> {
    let status = docker.container_status(id, network).await?;
    if !status.running {
        return Err(ProbeError::NotRunning);
    }
    let run = async {
        if let Probe::Log { pattern } = probe {
            let re = regex::Regex::new(pattern)?;
            let lines = docker.tail_logs(id, 10_000).await?;
            return if lines.iter().any(|l| re.is_match(l)) { Ok(()) } else { Err(ProbeError::NoLogMatch { pattern: pattern.clone() }) };
        }
        attempt(docker, id, network, status.ip.as_deref(), probe, &http_client(ATTEMPT_TIMEOUT)).await
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, run).await.unwrap_or(Err(ProbeError::TimedOut))
}

fn http_client(attempt_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(attempt_timeout)
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
) -> Result<(), ProbeError> {
    let need_ip = || ip.ok_or_else(|| ProbeError::NoAddress { network: network.to_string() });
    match probe {
        Probe::Tcp { port } => {
            let addr = format!("{}:{port}", need_ip()?);
            match tokio::net::TcpStream::connect(&addr).await {
                Ok(_) => Ok(()),
                Err(source) => Err(ProbeError::Tcp { addr, source }),
            }
        }
        Probe::Postgres { port } => postgres_accepting(&format!("{}:{port}", need_ip()?)).await,
        Probe::Mysql { port } => mysql::mysql_accepting(&format!("{}:{port}", need_ip()?)).await,
        Probe::Http { port, path, status } => {
            let url = format!("http://{}:{port}{path}", need_ip()?);
            let resp = match client.get(&url).send().await {
                Ok(resp) => resp,
                Err(e) => return Err(ProbeError::HttpRequest { detail: error_chain(&e), url }),
            };
            let got = resp.status().as_u16();
            if got == *status {
                Ok(())
            } else {
                Err(ProbeError::HttpStatus { url, got, want: *status })
            }
        }
        Probe::Exec { command } => match docker.exec(id, command).await? {
            (0, _) => Ok(()),
            (code, out) => {
                let last_line = out.lines().last().unwrap_or("").trim().to_string();
                Err(ProbeError::ExecFailed { command: command.clone(), code, last_line })
            }
        },
        Probe::Healthcheck => {
            let s = docker.container_status(id, network).await?;
            match s.health {
                Some(health) if health == "healthy" => Ok(()),
                Some(health) => Err(ProbeError::Unhealthy { health }),
                None => Err(ProbeError::NoHealthcheck),
            }
        }
        Probe::Log { .. } => Err(ProbeError::LogProbeAttempt),
    }
}

/// What pg_isready does, in-process: send a startup message and read the first reply. An
/// authentication request or any error other than SQLSTATE 57P03 (cannot connect now: starting
/// up, shutting down, in recovery) means the server accepts connections.
async fn postgres_accepting(addr: &str) -> Result<(), ProbeError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |source| ProbeError::PostgresIo { addr: addr.to_string(), source };
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let params = b"user\0postgres\0database\0postgres\0application_name\0stagectl-probe\0\0";
    let mut msg = Vec::with_capacity(8 + params.len());
    msg.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
    msg.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    msg.extend_from_slice(params);
    stream.write_all(&msg).await.map_err(io)?;
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.map_err(|source| ProbeError::PostgresNoAnswer { addr: addr.to_string(), source })?;
    match head[0] {
        b'R' => Ok(()),
        b'E' => {
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4).min(8192)];
            stream.read_exact(&mut body).await.map_err(io)?;
            let fields: Vec<&[u8]> = body.split(|b| *b == 0).collect();
            let field = |code: u8| fields.iter().find(|f| f.first() == Some(&code)).map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
            if field(b'C').as_deref() == Some("57P03") {
                Err(ProbeError::PostgresNotAccepting { addr: addr.to_string(), message: field(b'M').unwrap_or_default() })
            } else {
                Ok(())
            }
        }
        other => Err(ProbeError::PostgresUnexpected { addr: addr.to_string(), reply: other as char }),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::docker::fake::FakeEngine;
    use crate::docker::ContainerSpec;

    /// A started container `c` on network `n`; returns its id.
    async fn started(fake: &FakeEngine) -> String {
        fake.image("img");
        fake.ensure_network("n", &BTreeMap::new()).await.unwrap();
        let spec = ContainerSpec { name: "c".into(), image: "img".into(), network: "n".into(), ..Default::default() };
        let id = fake.create_container(&spec).await.unwrap();
        fake.start_container(&id).await.unwrap();
        id
    }

    fn ready(probe: Probe, timeout_ms: u64) -> Readiness {
        Readiness {
            probe,
            timeout: Duration::from_millis(timeout_ms),
            interval: Duration::from_millis(5),
            attempt_timeout: crate::manifest::DEFAULT_ATTEMPT_TIMEOUT,
            retries: None,
            start_period: Duration::ZERO,
        }
    }

    fn exec(command: &[&str]) -> Probe {
        Probe::Exec { command: command.iter().map(|s| s.to_string()).collect() }
    }

    #[tokio::test]
    async fn an_exec_probe_is_retried_until_it_exits_0_and_a_failure_names_the_command_and_its_last_line() {
        let fake = FakeEngine::new();
        let id = started(&fake).await;
        fake.exec_results("c", &[(1, "starting\n"), (1, "still starting"), (0, "")]);
        wait_ready(&fake, &id, "n", &ready(exec(&["pg_isready", "-q"]), 5_000)).await.unwrap();
        assert_eq!(fake.calls_to("exec").len(), 3);

        fake.exec_results("c", &[(2, "one\nbusy \n")]);
        let err = probe_once(&fake, &id, "n", &exec(&["pg_isready", "-q"])).await.unwrap_err();
        assert_eq!(err.to_string(), "`pg_isready -q` exited with 2: busy");
        let err = wait_ready(&fake, &id, "n", &ready(exec(&["pg_isready", "-q"]), 50)).await.unwrap_err();
        assert!(matches!(&err, NotReady::Timeout { last_error, .. } if last_error == "`pg_isready -q` exited with 2: busy"), "{err}");
    }

    #[tokio::test]
    async fn a_container_that_is_not_running_is_not_ready_with_its_exit_code() {
        let fake = FakeEngine::new();
        fake.exits_with("c", 137);
        let id = started(&fake).await;
        let err = wait_ready(&fake, &id, "n", &ready(Probe::Healthcheck, 5_000)).await.unwrap_err();
        assert_eq!(err, NotReady::Exited { code: Some(137) });
        assert_eq!(err.to_string(), "container exited with code 137 before it was ready");
        assert_eq!(probe_once(&fake, &id, "n", &Probe::Healthcheck).await.unwrap_err().to_string(), "not running");
    }

    #[tokio::test]
    async fn healthcheck_and_log_probes_read_what_docker_reports() {
        let fake = FakeEngine::new();
        let id = started(&fake).await;
        let err = probe_once(&fake, &id, "n", &Probe::Healthcheck).await.unwrap_err();
        assert_eq!(err.to_string(), "the image defines no HEALTHCHECK");
        fake.health("c", "healthy");
        probe_once(&fake, &id, "n", &Probe::Healthcheck).await.unwrap();

        fake.logs("c", &["booting", "database system is ready to accept connections"]);
        wait_ready(&fake, &id, "n", &ready(Probe::Log { pattern: "ready to accept".into() }, 5_000)).await.unwrap();
        let never = Probe::Log { pattern: "^listening".into() };
        let err = wait_ready(&fake, &id, "n", &ready(never.clone(), 50)).await.unwrap_err();
        assert!(err.to_string().ends_with("last probe error: no log line matched /^listening/"), "{err}");
        assert_eq!(probe_once(&fake, &id, "n", &never).await.unwrap_err().to_string(), "no log line matches /^listening/");
    }

    #[tokio::test]
    async fn retries_end_the_wait_after_that_many_failed_attempts_counted_after_the_start_period() {
        let fake = FakeEngine::new();
        let id = started(&fake).await;
        fake.exec_results("c", &[(1, "down"), (1, "down"), (1, "down"), (1, "down"), (1, "down"), (0, "")]);
        let mut r = ready(exec(&["check"]), 60_000);
        r.retries = Some(3);
        let err = wait_ready(&fake, &id, "n", &r).await.unwrap_err();
        assert!(matches!(&err, NotReady::Retries { attempts: 3, .. }), "{err}");
        assert_eq!(fake.calls_to("exec").len(), 3);

        // Attempts within the start period do not count: the sixth attempt passes.
        fake.forget_calls();
        fake.exec_results("c", &[(1, "down"), (1, "down"), (1, "down"), (1, "down"), (1, "down"), (0, "")]);
        r.start_period = Duration::from_secs(30);
        wait_ready(&fake, &id, "n", &r).await.unwrap();
        assert_eq!(fake.calls_to("exec").len(), 6);
    }
}
