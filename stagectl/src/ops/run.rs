//! The one lifecycle of a recorded run, shared by the CLI and the daemon's worker:
//! lock → start the run → mask secrets → report events to the display and the run's log →
//! execute → record the outcome → release the lock.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::{execute, OpOutcome, Operation, StackLock};
use crate::checks::{CheckOutcome, CheckResult};
use crate::docker::ContainerEngine;
use futures_util::FutureExt;

use crate::docker::RunState;
use crate::error::{Error, Result};
use crate::history::{CheckRecord, History, HistoryError, RunOutcome, StepRecord, Trigger};
use crate::manifest::Manifest;
use crate::orchestrator::{Orchestrator, Phase, Reporter};
use crate::secrets::Redactor;

/// The history entry a run is written to (created, queued, by the caller).
pub struct Recording {
    pub history: Arc<History>,
    pub run: i64,
}

/// The line shown and logged for a finished check: `✓ name (kind, 0.12s): message`.
pub fn check_line(passed: bool, name: &str, kind: &str, seconds: f64, message: &str) -> String {
    let mark = if passed { "✓" } else { "✗" };
    format!("{mark} {name} ({kind}, {seconds:.2}s): {message}")
}

/// Runs `op` on `stack` under the stack's lock, reporting to `display` and, with a recording,
/// to the run's log and outcome in the history. `connect` is awaited only once the lock is
/// held, so an unreachable Docker engine is a recorded failure of the run. When `cancel`
/// resolves first (SIGINT/SIGTERM), the work is dropped where it is and the run is recorded as
/// cancelled with the state the stack was left in. A panic in the work fails the run (recorded)
/// instead of taking the caller down with it.
pub async fn run_recorded<E, C>(
    connect: C,
    stack: &str,
    manifest: Option<&Manifest>,
    op: Operation,
    trigger: Trigger,
    recording: Option<Recording>,
    display: Arc<dyn Reporter>,
    cancel: impl Future<Output = ()>,
) -> Result<OpOutcome>
where
    E: ContainerEngine + ?Sized,
    C: Future<Output = Result<Arc<E>>>,
{
    let redactor = manifest.map(Redactor::for_manifest).unwrap_or_default();
    // What the person at the terminal sees is masked like what the history stores.
    let display: Arc<dyn Reporter> = Arc::new(Masking { inner: display, redactor: redactor.clone() });
    let finish = |result: Result<OpOutcome>| {
        if let Some(r) = &recording {
            let recorded = match &result {
                Err(Error::Cancelled(why)) => r.history.cancel_run(r.run, &redactor.apply(why)),
                _ => record(&r.history, r.run, &result, &redactor),
            };
            // The history (a full disk) would show this run as running, then interrupted.
            if let Err(e) = recorded {
                display.note(&format!(
                    "warning: the outcome of run {} could not be recorded ({e}); the run history will show it as interrupted",
                    r.run
                ));
            }
        }
        result
    };
    let waiting = || display.note(&format!("waiting for another stagectl operation on stack `{stack}` to finish"));
    let lock = match StackLock::acquire_async(stack, waiting).await {
        Ok(lock) => lock,
        Err(e) => return finish(Err(e.into())),
    };
    let recorder = recording.as_ref().map(|r| {
        let _ = r.history.start_run(r.run);
        Arc::new(RecordingReporter {
            inner: display.clone(),
            history: r.history.clone(),
            run: r.run,
            started: Instant::now(),
            redactor: redactor.clone(),
        })
    });
    let reporter: Arc<dyn Reporter> = match &recorder {
        Some(r) => {
            r.line(&format!("{} ({} trigger)", op.name(), trigger.as_str()));
            r.clone()
        }
        None => display.clone(),
    };
    let docker = match connect.await {
        Ok(docker) => docker,
        Err(e) => return finish(Err(e)),
    };
    let on_check = |c: &CheckResult| reporter.note(&check_line(c.outcome == CheckOutcome::Passed, &c.name, c.kind, c.seconds, &c.message));
    let orchestrator = Orchestrator::new(docker.clone(), reporter.clone());
    let work = std::panic::AssertUnwindSafe(execute(&orchestrator, stack, manifest, op, &on_check)).catch_unwind();
    let result = tokio::select! {
        outcome = work => outcome.unwrap_or_else(|panic| Err(Error::StackFailed(format!("internal error: {}; the run was stopped", panic_message(&*panic))))),
        () = cancel => Err(Error::Cancelled(cancelled_state(docker.as_ref(), stack, op).await)),
    };
    let result = unreachable_if_lost(docker.as_ref(), stack, result).await;
    let result = finish(result);
    // Released only now: the next run on this stack starts after this one is on record.
    drop(lock);
    result
}

/// A run that failed because the Docker engine went away mid-run failed for that reason, not
/// for whatever step happened to notice: the result becomes "Docker unreachable" (exit 3) when
/// the engine no longer answers now.
async fn unreachable_if_lost<E: ContainerEngine + ?Sized>(docker: &E, stack: &str, result: Result<OpOutcome>) -> Result<OpOutcome> {
    match result {
        Ok(outcome) if outcome.ok() => Ok(outcome),
        Err(e @ (Error::DockerUnreachable { .. } | Error::Cancelled(_))) => Err(e),
        other => match docker.list_containers(stack).await {
            Err(lost @ Error::DockerUnreachable { .. }) => Err(lost),
            _ => other,
        },
    }
}

/// What a panic carried, for the run's error (`panic!("...")` carries a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The sentence a cancelled run ends with: which of the stack's containers exist and run now.
async fn cancelled_state<E: ContainerEngine + ?Sized>(docker: &E, stack: &str, op: Operation) -> String {
    let containers = match docker.list_containers(stack).await {
        Ok(c) => c,
        Err(e) => return format!("`{}` of stack `{stack}` cancelled; its state is unknown ({e})", op.name()),
    };
    let running: Vec<&str> = containers.iter().filter(|c| c.state == RunState::Running).map(|c| c.service.as_str()).collect();
    let next = match op {
        Operation::Down { .. } => "run `stagectl down` again to finish removing it",
        _ => "run `stagectl up` to finish it or `stagectl down` to remove it",
    };
    format!(
        "`{}` of stack `{stack}` cancelled: {} container(s) left, {} running ({}); nothing of this run is reported ready; {next}",
        op.name(),
        containers.len(),
        running.len(),
        if running.is_empty() { "none".to_string() } else { running.join(", ") }
    )
}

/// An outcome as the history's summary of it, secrets masked: for a caller that must say or
/// keep what happened when [`record`] could not write it (the daemon keeps it in memory).
pub fn summary(result: &Result<OpOutcome>, manifest: Option<&Manifest>) -> RunOutcome {
    let redactor = manifest.map(Redactor::for_manifest).unwrap_or_default();
    match result {
        Ok(o) => {
            let ok = o.ok();
            let mut failures: Vec<String> = o
                .up_report()
                .map(|up| {
                    up.services.iter().filter_map(|s| Some(format!("{}: {}", s.service, redactor.apply(s.message.as_ref()?)))).collect()
                })
                .unwrap_or_default();
            failures.extend(o.checks().iter().filter(|c| c.outcome != CheckOutcome::Passed).map(|c| format!("check `{}` failed", c.name)));
            let error = (!ok).then(|| if failures.is_empty() { "failed".to_string() } else { failures.join("; ") });
            RunOutcome { ok, error, snapshot: None, refresh_seconds: None }
        }
        Err(e) => RunOutcome { ok: false, error: Some(redactor.apply(&e.to_string())), snapshot: None, refresh_seconds: None },
    }
}

/// Writes an outcome's steps (one per service), check results and summary to the history.
/// The error is that of the final write, which is what marks the run finished.
pub fn record(history: &History, run: i64, result: &Result<OpOutcome>, redactor: &Redactor) -> Result<(), HistoryError> {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            return history.finish_run(
                run,
                &RunOutcome { ok: false, error: Some(redactor.apply(&e.to_string())), snapshot: None, refresh_seconds: None },
            );
        }
    };
    let mut snapshot = None;
    let mut refresh = None;
    let mut failures = Vec::new();
    if let Some(up) = outcome.up_report() {
        for s in &up.services {
            let status = serde_json::to_value(s.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let detail = s.message.as_ref().map(|m| redactor.apply(m));
            if let Some(d) = &detail {
                failures.push(format!("{}: {d}", s.service));
            }
            // Restarts are a fact about the service, not a failure of this run.
            let detail = detail.or_else(|| (s.restarts > 0).then(|| format!("restarted {}× by its restart policy", s.restarts)));
            let _ = history.add_step(run, &StepRecord { name: s.service.clone(), status, seconds: s.ready_seconds, detail });
            if let Some(f) = &s.fixtures {
                snapshot = Some(f.snapshot.clone());
                refresh = Some(refresh.unwrap_or(0.0) + f.refresh_seconds);
            }
            for (name, ms) in &s.migrations_applied {
                let step = StepRecord {
                    name: format!("{}: migration {name}", s.service),
                    status: "applied".into(),
                    seconds: Some(ms / 1000.0),
                    detail: None,
                };
                let _ = history.add_step(run, &step);
            }
        }
    }
    if let OpOutcome::Down(down) = outcome {
        let detail = format!("removed {} containers, {} networks, {} volumes", down.containers, down.networks, down.volumes);
        let _ = history
            .add_step(run, &StepRecord { name: "down".into(), status: "done".into(), seconds: Some(down.seconds), detail: Some(detail) });
    }
    if let OpOutcome::Lifecycle(report) = outcome {
        for r in &report.services {
            let step = StepRecord {
                name: r.service.clone(),
                status: r.outcome.into(),
                seconds: None,
                detail: r.message.as_ref().map(|m| redactor.apply(m)),
            };
            if let Some(d) = &step.detail {
                failures.push(format!("{}: {d}", r.service));
            }
            let _ = history.add_step(run, &step);
        }
    }
    for c in outcome.checks() {
        let record = CheckRecord {
            name: c.name.clone(),
            kind: c.kind.to_string(),
            outcome: if c.outcome == CheckOutcome::Passed { "passed".into() } else { "failed".into() },
            seconds: c.seconds,
            message: redactor.apply(&c.message),
            p95_ms: c.latency.as_ref().map(|l| l.p95_ms),
            p99_ms: c.latency.as_ref().map(|l| l.p99_ms),
            error_rate: c.latency.as_ref().map(|l| l.error_rate),
        };
        let _ = history.add_check(run, &record);
        if c.outcome != CheckOutcome::Passed {
            failures.push(format!("check `{}` failed", c.name));
        }
    }
    let ok = outcome.ok();
    let error = (!ok).then(|| if failures.is_empty() { "failed".to_string() } else { failures.join("; ") });
    history.finish_run(run, &RunOutcome { ok, error, snapshot, refresh_seconds: refresh })
}

/// Passes events on and writes each as a log line of a run (secrets masked).
pub struct RecordingReporter {
    pub inner: Arc<dyn Reporter>,
    pub history: Arc<History>,
    pub run: i64,
    pub started: Instant,
    pub redactor: Redactor,
}

impl RecordingReporter {
    /// A line in the run's log only.
    pub fn line(&self, text: &str) {
        let line = format!("{:7.2}s {}", self.started.elapsed().as_secs_f64(), self.redactor.apply(text));
        let _ = self.history.append_log(self.run, &line);
    }
}

impl Reporter for RecordingReporter {
    fn phase(&self, subject: &str, phase: Phase, detail: &str) {
        self.inner.phase(subject, phase, detail);
        let phase = serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        self.line(&format!("{subject} {phase}{}{detail}", if detail.is_empty() { "" } else { ": " }));
    }

    fn bytes(&self, subject: &str, current: u64, total: u64) {
        self.inner.bytes(subject, current, total);
    }

    fn output(&self, subject: &str, line: &str) {
        self.inner.output(subject, line);
    }

    fn note(&self, line: &str) {
        self.inner.note(line);
        self.line(line);
    }
}

/// Masks secrets in every event before passing it on.
struct Masking {
    inner: Arc<dyn Reporter>,
    redactor: Redactor,
}

impl Reporter for Masking {
    fn phase(&self, subject: &str, phase: Phase, detail: &str) {
        self.inner.phase(subject, phase, &self.redactor.apply(detail));
    }

    fn bytes(&self, subject: &str, current: u64, total: u64) {
        self.inner.bytes(subject, current, total);
    }

    fn output(&self, subject: &str, line: &str) {
        self.inner.output(subject, &self.redactor.apply(line));
    }

    fn note(&self, line: &str) {
        self.inner.note(&self.redactor.apply(line));
    }
}
