//! Operations on a stack — up, down, rebuild, check, verify — as the units of work that the CLI
//! and the daemon both run: one at a time per stack (an exclusive lock on a file in the state
//! directory), each recorded in the run history with its steps, check results and log.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checks::{CheckOutcome, CheckResult};
use crate::docker::ContainerEngine;
use crate::history::{CheckRecord, History, RunOutcome, StepRecord};
use crate::manifest::Manifest;
use crate::orchestrator::{DownReport, Orchestrator, Phase, Reporter, UpReport};
use crate::secrets::Redactor;

/// Which checks a check operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CheckSet {
    All,
    Smoke,
    Migrations,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Up,
    Down { volumes: bool },
    Rebuild,
    Check(CheckSet),
    Verify,
}

impl Operation {
    /// The name in the run history and the API path (`/api/v1/<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Up => "up",
            Operation::Down { .. } => "down",
            Operation::Rebuild => "rebuild",
            Operation::Check(_) => "check",
            Operation::Verify => "verify",
        }
    }
}

/// Exclusive right to operate on one stack, held until dropped (the OS releases it when the
/// process dies, so a killed runner never leaves a stale lock).
pub struct StackLock {
    _file: File,
}

impl StackLock {
    fn path(stack: &str) -> PathBuf {
        crate::history::state_dir().join("locks").join(format!("{stack}.lock"))
    }

    fn open(stack: &str) -> std::io::Result<File> {
        let path = Self::path(stack);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)
    }

    /// The lock if it is free now; `None` when another process or run holds it.
    pub fn try_acquire(stack: &str) -> std::io::Result<Option<StackLock>> {
        let file = Self::open(stack)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(StackLock { _file: file })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Waits for the lock (blocking: call from a blocking thread).
    pub fn acquire(stack: &str) -> std::io::Result<StackLock> {
        let file = Self::open(stack)?;
        fs4::FileExt::lock(&file)?;
        Ok(StackLock { _file: file })
    }
}

/// What an operation produced.
#[derive(Debug, Default)]
pub struct OpOutcome {
    pub ok: bool,
    pub up: Option<UpReport>,
    pub down: Option<DownReport>,
    pub checks: Vec<CheckResult>,
}

/// Runs `op`. `manifest` may be `None` only for `down` (by stack name).
pub async fn execute<E: ContainerEngine + ?Sized>(
    engine: &Orchestrator<E>,
    stack: &str,
    manifest: Option<&Manifest>,
    op: Operation,
    on_check: &(dyn Fn(&CheckResult) + Send + Sync),
) -> crate::error::Result<OpOutcome> {
    let need = || manifest.ok_or_else(|| crate::error::Error::Usage(format!("`{}` needs the manifest", op.name())));
    let mut out = OpOutcome::default();
    match op {
        Operation::Down { volumes } => {
            out.down = Some(engine.down(stack, volumes).await?);
            out.ok = true;
        }
        Operation::Up => {
            let report = engine.up(need()?).await?;
            out.ok = report.ok;
            out.up = Some(report);
        }
        Operation::Rebuild | Operation::Verify => {
            let m = need()?;
            engine.down(&m.stack, true).await?;
            let report = engine.up(m).await?;
            out.ok = report.ok;
            out.up = Some(report);
            if op == Operation::Verify && out.ok {
                out.checks = run_checks(engine.docker.as_ref(), m, CheckSet::All, on_check).await?;
                out.ok = out.checks.iter().all(|c| c.outcome == CheckOutcome::Passed);
            }
        }
        Operation::Check(set) => {
            out.checks = run_checks(engine.docker.as_ref(), need()?, set, on_check).await?;
            out.ok = out.checks.iter().all(|c| c.outcome == CheckOutcome::Passed);
        }
    }
    Ok(out)
}

pub async fn run_checks<E: ContainerEngine + ?Sized>(
    docker: &E,
    m: &Manifest,
    set: CheckSet,
    on_check: &(dyn Fn(&CheckResult) + Send + Sync),
) -> crate::error::Result<Vec<CheckResult>> {
    let mut results = Vec::new();
    if set != CheckSet::Migrations {
        results.extend(crate::checks::run_all(docker, m, on_check).await?);
    }
    if set != CheckSet::Smoke {
        results.extend(crate::migrations::check::run(docker, m, on_check).await?);
    }
    Ok(results)
}

/// Writes an outcome's steps (one per service), check results and summary to the history.
pub fn record(history: &History, run: i64, result: &crate::error::Result<OpOutcome>, redactor: &Redactor) {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = history.finish_run(
                run,
                &RunOutcome { ok: false, error: Some(redactor.apply(&e.to_string())), snapshot: None, refresh_seconds: None },
            );
            return;
        }
    };
    let mut snapshot = None;
    let mut refresh = None;
    let mut failures = Vec::new();
    if let Some(up) = &outcome.up {
        for s in &up.services {
            let status = serde_json::to_value(s.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let detail = s.message.as_ref().map(|m| redactor.apply(m));
            if let Some(d) = &detail {
                failures.push(format!("{}: {d}", s.service));
            }
            let _ = history.add_step(run, &StepRecord { name: s.service.clone(), status, seconds: s.ready_seconds, detail });
            if let Some(f) = &s.fixtures {
                snapshot = Some(f.snapshot.clone());
                refresh = Some(refresh.unwrap_or(0.0) + f.refresh_seconds);
            }
            for (name, ms) in &s.migrations_applied {
                let _ = history.add_step(
                    run,
                    &StepRecord {
                        name: format!("{}: migration {name}", s.service),
                        status: "applied".into(),
                        seconds: Some(ms / 1000.0),
                        detail: None,
                    },
                );
            }
        }
    }
    if let Some(down) = &outcome.down {
        let detail = format!("removed {} containers, {} networks, {} volumes", down.containers, down.networks, down.volumes);
        let _ = history
            .add_step(run, &StepRecord { name: "down".into(), status: "done".into(), seconds: Some(down.seconds), detail: Some(detail) });
    }
    for c in &outcome.checks {
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
    let error = (!outcome.ok).then(|| if failures.is_empty() { "failed".to_string() } else { failures.join("; ") });
    let _ = history.finish_run(run, &RunOutcome { ok: outcome.ok, error, snapshot, refresh_seconds: refresh });
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
}
