//! The status document behind `GET /api/v1/status`, the page and `/metrics`: cached, refreshed
//! every second only while someone looks (an unwatched daemon makes no Docker calls), and
//! refreshed in the request when it is more than two seconds old.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{host, metrics, now_ms, State};

/// Drift of the running stack against the manifest is computed at most this often.
pub(super) const DRIFT_INTERVAL_MS: u64 = 30_000;

/// What `stagectl diff` would say, in short: the services that drifted.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DriftSummary {
    pub drifted: usize,
    /// `service: state` of each drifted service (`app: recreate`).
    pub services: Vec<String>,
    pub checked_at: String,
}

#[derive(Serialize)]
struct StatusDoc<'a> {
    stack: &'a str,
    /// `swarm` or `containers` (`State::engine_name`), and with `swarm` how it deploys.
    engine: &'static str,
    swarm: Option<crate::ops::SwarmTarget>,
    docker: bool,
    busy: Option<serde_json::Value>,
    queued: usize,
    manifest_error: Option<String>,
    services: Vec<crate::orchestrator::ServiceStatus>,
    drift: Option<DriftSummary>,
    checks: Vec<crate::history::CheckRecord>,
    host: host::HostMetrics,
    updated_at: String,
}

/// The cached drift summary, recomputed when older than [`DRIFT_INTERVAL_MS`]. `None` while
/// it cannot be known (Docker unreachable, unreadable inputs).
fn drift_summary(state: &State, m: &crate::manifest::Manifest) -> Option<DriftSummary> {
    let mut cache = state.drift.lock().unwrap();
    if let Some((at, summary)) = &*cache {
        if now_ms().saturating_sub(*at) < DRIFT_INTERVAL_MS {
            return summary.clone();
        }
    }
    let summary = state.rt.block_on(state.status_engine.drift(m)).ok().map(|r| DriftSummary {
        drifted: r.drifted,
        services: r
            .services
            .iter()
            .filter(|s| s.state != crate::plan::drift::DriftState::Unchanged)
            .map(|s| {
                format!(
                    "{}: {}",
                    s.service,
                    serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
                )
            })
            .collect(),
        checked_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    *cache = Some((now_ms(), summary.clone()));
    summary
}

fn refresh_status(state: &State) {
    // Mid-run the stack is on its way to the manifest, not drifted: nothing is computed, and
    // the first refresh after the run computes afresh.
    if state.queue.lock().unwrap().running.is_some() {
        *state.drift.lock().unwrap() = None;
    }
    let (services, docker_ok, drift) = match state.load_manifest() {
        Ok(m) => match state.rt.block_on(state.status_engine.status(&m)) {
            Ok(rows) => {
                let busy = state.queue.lock().unwrap().running.is_some();
                // `diff` compares `up`'s containers by name; a Swarm task's container has
                // another, so on Swarm every service would read "create": none is said instead.
                (rows, true, if busy || state.swarm.is_some() { None } else { drift_summary(state, &m) })
            }
            Err(_) => (vec![], false, None),
        },
        Err(_) => (vec![], true, None),
    };
    let (busy, queued) = {
        let q = state.queue.lock().unwrap();
        (q.running.map(|(id, op)| serde_json::json!({ "run_id": id, "operation": op })), q.jobs.len())
    };
    let doc = StatusDoc {
        stack: &state.stack,
        engine: state.engine_name(),
        swarm: state.swarm,
        docker: docker_ok,
        busy,
        queued,
        manifest_error: state.manifest_error.lock().unwrap().clone(),
        services,
        drift,
        checks: state.history.latest_checks(&state.stack).unwrap_or_default(),
        host: state.host.lock().unwrap().sample(),
        updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    *state.status.write().unwrap() = Arc::new(serde_json::to_vec(&doc).unwrap_or_default());
    state.status_at.store(now_ms(), Ordering::Relaxed);
}

/// The status document, refreshed first when the background loop has not kept it fresh
/// (nobody asked for a while): an answer is never more than about two seconds old.
pub(super) fn current_status(state: &State) -> Arc<Vec<u8>> {
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
pub(super) fn status_loop(state: &State) {
    loop {
        let watched = now_ms().saturating_sub(state.status_wanted.load(Ordering::Relaxed)) < 15_000;
        if watched || state.refresh_now.swap(false, Ordering::Relaxed) {
            let _refreshing = state.refreshing.lock().unwrap();
            refresh_status(state);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub(super) fn metrics_text(state: &State) -> String {
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
                    metrics::ServiceMetric {
                        ready_seconds: ready.get(&name).copied(),
                        ready: r["ready"].as_bool().unwrap_or(false),
                        restarts: r["restarts"].as_u64().unwrap_or(0),
                        name,
                    }
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
        drifted_services: status["drift"]["drifted"].as_u64(),
    };
    metrics::render(&input)
}
