//! The run queue and its one worker: operations run one at a time, in order, each under the
//! stack's lock and recorded (`ops::run_recorded`). Watch and schedule triggers already waiting
//! absorb new ones instead of queueing twice.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::State;
use crate::history::{History, HistoryError, RunOutcome, RunRow, RunStatus, Trigger};
use crate::ops::{OpOutcome, Operation, Recording};
use crate::orchestrator::Silent;

/// Why an operation was not queued.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("busy with run {0}")]
    Busy(i64),
    /// The history cannot take the run (e.g. the state disk is full).
    #[error("the run cannot be recorded: {0}")]
    Unrecorded(#[source] HistoryError),
    /// The daemon deploys to Docker Swarm and the operation has no Swarm form.
    #[error("{0}")]
    NotOnSwarm(#[source] crate::error::Error),
}

pub(super) struct Job {
    pub(super) run: i64,
    pub(super) op: Operation,
    pub(super) trigger: Trigger,
    pub(super) detail: String,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) jobs: VecDeque<Job>,
    /// The run being executed and its operation.
    pub(super) running: Option<(i64, &'static str)>,
}

impl State {
    /// Queues an operation; with `wait = false`, refuses when one is running or queued. A run
    /// that cannot be recorded is not run at all: nothing happens that the history would not show.
    /// With `--swarm`, what is queued (and recorded) is the operation's Swarm form.
    pub(super) fn submit(&self, op: Operation, trigger: Trigger, detail: &str, wait: bool) -> Result<i64, Refused> {
        let op = match self.swarm {
            Some(target) => op.on_swarm(target).map_err(Refused::NotOnSwarm)?,
            None => op,
        };
        let mut q = self.queue.lock().unwrap();
        if !wait {
            if let Some(busy) = q.running.map(|r| r.0).or_else(|| q.jobs.front().map(|j| j.run)) {
                return Err(Refused::Busy(busy));
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
        let run = self.history.create_run(&self.stack, op.name(), trigger).map_err(Refused::Unrecorded)?;
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

/// Outcomes the history could not take, by run: kept until the history takes them (retried
/// after each run) or the daemon ends (the next start marks those runs interrupted).
#[derive(Default, Clone)]
pub(super) struct Unrecorded(Arc<Mutex<BTreeMap<i64, (RunOutcome, String)>>>);

impl Unrecorded {
    /// `row` with the outcome kept in memory, when the history still shows it unfinished.
    pub(super) fn overlay(&self, mut row: RunRow) -> RunRow {
        if row.status.is_active() {
            if let Some((outcome, finished_at)) = self.0.lock().unwrap().get(&row.id) {
                row.status = if outcome.ok { RunStatus::Succeeded } else { RunStatus::Failed };
                row.error = outcome.error.clone();
                row.finished_at = Some(finished_at.clone());
            }
        }
        row
    }

    /// Writes the kept outcomes the history now takes, and forgets them.
    fn retry(&self, history: &History) {
        self.0.lock().unwrap().retain(|run, (outcome, _)| history.finish_run(*run, outcome).is_err());
    }
}

/// After a run: if the history does not show it finished (its final write failed, e.g. a full
/// disk), one more try; if that fails too, the outcome is kept in memory for the API and the
/// page, and the daemon's stderr says so — the run must not show "running" until a restart.
fn keep_if_unrecorded(state: &State, job: &Job, result: &crate::error::Result<OpOutcome>, manifest: &crate::manifest::Manifest) {
    let h = &state.history;
    let finished = matches!(h.run(job.run), Ok(Some(d)) if !d.run.status.is_active());
    if finished {
        return;
    }
    let outcome = crate::ops::summary(result, Some(manifest));
    let Err(e) = h.finish_run(job.run, &outcome) else { return };
    let verdict = if outcome.ok { "succeeded" } else { "failed" };
    eprintln!(
        "stagectl daemon: run {} ({}) {verdict}{}, but the run history cannot record it ({e}); the API and the page show it until the daemon restarts",
        job.run,
        job.op.name(),
        outcome.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
    );
    let finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    state.unrecorded.0.lock().unwrap().insert(job.run, (outcome, finished_at));
}

pub(super) fn worker(state: &State) {
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
        // A panic outside the run's own work (which `run_recorded` already turns into a failed
        // run) must not kill the only worker: every later run would stay queued for good.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(state, &job))).is_err() {
            let error = Some("internal error: the daemon's worker panicked while running this; see the daemon's stderr".to_string());
            let _ = state.history.finish_run(job.run, &RunOutcome { ok: false, error, snapshot: None, refresh_seconds: None });
        }
        state.unrecorded.retry(&state.history);
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
            let _ = h.append_log(job.run, &e.to_string());
            let error = format!("invalid manifest; the running stack was left as it is:\n{e}");
            let _ = h.finish_run(job.run, &RunOutcome { ok: false, error: Some(error), snapshot: None, refresh_seconds: None });
            return;
        }
    };
    let connect = async { Ok(state.docker.clone()) };
    let recording = Some(Recording { history: h.clone(), run: job.run });
    // The daemon's own SIGTERM ends the process; its unfinished run is marked interrupted on the
    // next start.
    let never_cancelled = std::future::pending();
    let run =
        crate::ops::run_recorded(connect, &state.stack, Some(&manifest), job.op, job.trigger, recording, Arc::new(Silent), never_cancelled);
    let result = state.rt.block_on(run);
    keep_if_unrecorded(state, job, &result, &manifest);
    if let Ok(outcome) = result {
        remember_ready_seconds(state, &outcome);
    }
}

/// Readiness time of each service from the last `up`, for `/metrics`.
fn remember_ready_seconds(state: &State, outcome: &OpOutcome) {
    if let Some(up) = outcome.up_report() {
        let mut ready = state.ready_seconds.lock().unwrap();
        for s in &up.services {
            if let Some(secs) = s.ready_seconds {
                ready.insert(s.service.clone(), secs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_watch_details_list_every_changed_path_once() {
        assert_eq!(merge_detail("changed: a, b", "changed: b, c"), "changed: a, b, c");
        assert_eq!(merge_detail("cron `* * * * *`", "cron `* * * * *`"), "cron `* * * * *`");
    }
}
