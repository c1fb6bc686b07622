//! `ready` → a readinessProbe (ongoing readiness: Services route only to ready pods) and a
//! startupProbe with the same check (the `timeout` deadline: a container not ready in time is
//! restarted, as stagectl fails a service that is not ready in time).

use serde_json::{json, Value};

use crate::manifest::{format_duration, Probe, Readiness};

/// The container port a probe connects to.
pub fn port(probe: &Probe) -> Option<u16> {
    match probe {
        Probe::Tcp { port } | Probe::Postgres { port } | Probe::Mysql { port } | Probe::Http { port, .. } => Some(*port),
        Probe::Exec { .. } | Probe::Log { .. } | Probe::Healthcheck => None,
    }
}

/// The probes of a container: `(readinessProbe, startupProbe)`, or why `ready` cannot map
/// (the container then has no probe: Kubernetes counts it ready once started).
pub fn probes(service: &str, ready: &Readiness, warnings: &mut Vec<String>) -> Option<(Value, Value)> {
    let handler = match &ready.probe {
        Probe::Tcp { port } | Probe::Mysql { port } => json!({ "tcpSocket": { "port": port } }),
        // pg_isready tells "accepting connections" from "starting up", as stagectl's probe does.
        Probe::Postgres { port } => {
            json!({ "exec": { "command": ["pg_isready", "--host", "127.0.0.1", "--port", port.to_string(), "--quiet"] } })
        }
        Probe::Http { port, path, status } => {
            if !(200..400).contains(status) {
                warnings
                    .push(format!("service {service}: ready.status {status} not carried over: Kubernetes counts only 200-399 as ready"));
            }
            json!({ "httpGet": { "path": path, "port": port } })
        }
        Probe::Exec { command } => json!({ "exec": { "command": command } }),
        Probe::Log { pattern } => {
            warnings.push(format!(
                "service {service}: ready.log /{pattern}/ not carried over: Kubernetes probes cannot read the log; the pod counts as ready once started (use a tcp, http or exec probe)"
            ));
            return None;
        }
        Probe::Healthcheck => {
            warnings.push(format!(
                "service {service}: ready.healthcheck not carried over: Kubernetes ignores the image's HEALTHCHECK; the pod counts as ready once started (use a tcp, http or exec probe)"
            ));
            return None;
        }
    };
    let period = seconds(ready.interval).max(1);
    let attempt = seconds(ready.attempt_timeout).max(1);
    let mut readiness = handler.clone();
    readiness["periodSeconds"] = json!(period);
    readiness["timeoutSeconds"] = json!(attempt);
    readiness["failureThreshold"] = json!(ready.retries.unwrap_or(3).max(1));
    let mut startup = handler;
    startup["periodSeconds"] = json!(period);
    startup["timeoutSeconds"] = json!(attempt);
    startup["failureThreshold"] = json!(seconds(ready.timeout).div_ceil(period).max(1));
    Some((readiness, startup))
}

/// What a probe that cannot map is noted as on the pod (`org.stagectl.ready`).
pub fn describe(ready: &Readiness) -> String {
    format!("{} (timeout {})", ready.probe.describe(), format_duration(ready.timeout))
}

/// Whole seconds, rounded up: Kubernetes counts probe times in seconds.
fn seconds(d: std::time::Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}
