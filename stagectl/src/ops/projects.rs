//! Every stack on the host, for `stagectl ls`, and the idle ones, for `stagectl gc` and the
//! daemon's `idle_ttl` over per-branch projects (a forgotten branch stack goes away).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::docker::{labels, ObservedContainer, RunState};
use crate::history::{History, RunRow};

/// One project (stack) as `stagectl ls` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProjectRow {
    pub project: String,
    /// The manifest file it was brought up from (empty for containers made before the label).
    pub manifest: String,
    pub services: usize,
    pub running: usize,
    /// running (every long-running service up), partial, or stopped.
    pub state: String,
    /// Seconds since its oldest container was created.
    pub age_seconds: i64,
    pub last_run: Option<LastRun>,
    /// Seconds since anything happened to it: its newest container, or its last run's end.
    pub idle_seconds: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastRun {
    pub id: i64,
    pub operation: String,
    pub status: String,
    /// RFC 3339.
    pub at: String,
}

/// The stacks among `containers` (every container on the engine), with their last runs.
/// `now` and run times in Unix seconds.
pub fn projects(containers: &[ObservedContainer], last_runs: &BTreeMap<String, RunRow>, now: i64) -> Vec<ProjectRow> {
    let mut by_project: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
    for c in containers {
        if let Some(stack) = c.labels.get(labels::STACK) {
            // Snapshots' and migration checks' helper containers carry the stack but no service.
            if !c.service.is_empty() {
                by_project.entry(stack).or_default().push(c);
            }
        }
    }
    by_project
        .into_iter()
        .map(|(project, cs)| {
            let long_running: Vec<_> = cs.iter().filter(|c| c.labels.get(labels::JOB).is_none_or(|j| j != "true")).collect();
            let running = cs.iter().filter(|c| c.state == RunState::Running).count();
            let lr_running = long_running.iter().filter(|c| c.state == RunState::Running).count();
            let state = match lr_running {
                0 => "stopped",
                n if n == long_running.len() => "running",
                _ => "partial",
            };
            let oldest = cs.iter().map(|c| c.created).min().unwrap_or(now);
            let newest = cs.iter().map(|c| c.created).max().unwrap_or(now);
            let last = last_runs.get(project);
            let last_activity = last.and_then(run_time).map_or(newest, |t| t.max(newest));
            ProjectRow {
                project: project.to_string(),
                manifest: cs.iter().find_map(|c| c.labels.get(labels::MANIFEST).cloned()).unwrap_or_default(),
                services: cs.len(),
                running,
                state: state.to_string(),
                age_seconds: (now - oldest).max(0),
                last_run: last.map(|r| LastRun {
                    id: r.id,
                    operation: r.operation.clone(),
                    status: r.status.as_str().to_string(),
                    at: r.finished_at.clone().or_else(|| r.started_at.clone()).unwrap_or_else(|| r.queued_at.clone()),
                }),
                idle_seconds: (now - last_activity).max(0),
            }
        })
        .collect()
}

/// When a run last did something: its end, else its start, else when it was queued.
fn run_time(r: &RunRow) -> Option<i64> {
    let at = r.finished_at.as_deref().or(r.started_at.as_deref()).unwrap_or(&r.queued_at);
    chrono::DateTime::parse_from_rfc3339(at).ok().map(|t| t.timestamp())
}

/// The projects idle for at least `ttl_seconds`, optionally only those of one manifest file;
/// a project with a run queued or running is never idle.
pub fn idle(rows: &[ProjectRow], ttl_seconds: i64, manifest: Option<&str>, active: &dyn Fn(&str) -> bool) -> Vec<String> {
    rows.iter()
        .filter(|r| manifest.is_none_or(|m| r.manifest == m))
        .filter(|r| r.idle_seconds >= ttl_seconds && !active(&r.project))
        .map(|r| r.project.clone())
        .collect()
}

/// The last run of every stack in the history (an unreadable history gives none).
pub fn last_runs(history: Option<&History>) -> BTreeMap<String, RunRow> {
    let mut out = BTreeMap::new();
    let Some(rows) = history.and_then(|h| h.runs(None, 10_000).ok()) else { return out };
    for r in rows {
        // `runs` lists the newest first: keep the first seen per stack.
        out.entry(r.stack.clone()).or_insert(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{RunStatus, Trigger};

    fn container(stack: &str, service: &str, state: RunState, created: i64, job: bool) -> ObservedContainer {
        let mut labels =
            BTreeMap::from([(labels::STACK.to_string(), stack.to_string()), (labels::MANIFEST.to_string(), "/m/stack.toml".into())]);
        if job {
            labels.insert(labels::JOB.into(), "true".into());
        }
        ObservedContainer {
            id: format!("{stack}-{service}"),
            name: format!("{stack}-{service}"),
            service: service.into(),
            spec_hash: String::new(),
            state,
            exit_code: None,
            image: String::new(),
            created,
            labels,
            ports: vec![],
        }
    }

    fn run(stack: &str, finished: &str) -> RunRow {
        RunRow {
            id: 7,
            stack: stack.into(),
            operation: "up".into(),
            trigger: Trigger::Cli,
            status: RunStatus::Succeeded,
            owner_pid: 1,
            queued_at: finished.into(),
            started_at: Some(finished.into()),
            finished_at: Some(finished.into()),
            seconds: Some(1.0),
            error: None,
            snapshot: None,
            refresh_seconds: None,
            detail: String::new(),
        }
    }

    #[test]
    fn projects_are_grouped_with_state_age_and_idle_time() {
        let now = 1_800_000_000;
        let cs = vec![
            container("shop", "db", RunState::Running, now - 600, false),
            container("shop", "migrate", RunState::Exited, now - 590, true),
            container("branch-x", "db", RunState::Running, now - 100, false),
            container("branch-x", "app", RunState::Exited, now - 100, false),
            // Not a stagectl container, and a helper without a service: neither is listed.
            ObservedContainer { labels: BTreeMap::new(), ..container("other", "x", RunState::Running, now, false) },
            container("shop", "", RunState::Running, now, false),
        ];
        // An hour before `now`: older than shop's newest container, which then counts.
        let runs = BTreeMap::from([("shop".to_string(), run("shop", "2027-01-15T07:00:00.000Z"))]);
        let rows = projects(&cs, &runs, now);
        assert_eq!(rows.iter().map(|r| r.project.as_str()).collect::<Vec<_>>(), ["branch-x", "shop"]);
        let (branch, shop) = (&rows[0], &rows[1]);
        assert_eq!((branch.state.as_str(), branch.services, branch.running), ("partial", 2, 1));
        // The exited job does not make the stack partial.
        assert_eq!((shop.state.as_str(), shop.age_seconds), ("running", 600));
        assert_eq!(shop.manifest, "/m/stack.toml");
        assert_eq!(shop.idle_seconds, 590);
        assert_eq!(branch.idle_seconds, 100);
        assert_eq!(idle(&rows, 300, None, &|_| false), ["shop"]);
        assert_eq!(idle(&rows, 50, Some("/m/stack.toml"), &|p| p == "branch-x"), ["shop"]);
        assert!(idle(&rows, 50, Some("/other.toml"), &|_| false).is_empty());
    }

    #[test]
    fn a_recent_run_keeps_a_project_busy_however_old_its_containers() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z").unwrap().timestamp();
        let cs = vec![container("p", "db", RunState::Running, now - 86_400, false)];
        let runs = BTreeMap::from([("p".to_string(), run("p", "2026-11-29T11:59:00.000Z"))]);
        let rows = projects(&cs, &runs, now);
        assert_eq!(rows[0].idle_seconds, 60);
        assert_eq!(rows[0].last_run.as_ref().map(|r| r.status.as_str()), Some("succeeded"));
    }
}
