//! Why a service failed, and how a failure becomes its report: the message (secrets masked),
//! the last lines of the container's output when there is a container to ask, a `Failed` event.

use super::{FixtureError, ImageError, MigrationError, Orchestrator, Outcome, Phase, ServiceReport, FAILURE_LOG_LINES};
use crate::docker::ContainerEngine;
use crate::error::Error;
use crate::probes::NotReady;
use crate::secrets::Redactor;

/// Why one service did not become ready (or its job did not complete). It never crosses into
/// [`crate::error::Error`]: a failed service is a result in the report, not an error of the run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Fixtures(#[from] FixtureError),
    #[error(transparent)]
    Migrations(#[from] MigrationError),
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    Docker(#[from] Error),
    /// A service without a readiness probe was not running after its start.
    #[error("container exited with code {}", .code.unwrap_or(-1))]
    Exited { code: Option<i64> },
    /// A service without a readiness probe was restarted within its settle window.
    #[error("container restarted within {:.2}s of its start", .within.as_secs_f64())]
    Restarted { within: std::time::Duration },
    #[error("job exited with code {code}")]
    JobFailed { code: i64 },
    /// A job that a data service's fixture load waits for failed.
    #[error("fixtures not loaded: `{job}` failed")]
    FixtureJobFailed { job: String },
}

/// A failed phase: the error, and the container whose last output helps explain it (none
/// when the failure came before there was one, or does not concern it).
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) error: ServiceError,
    pub(super) logs_of: Option<String>,
}

impl Failure {
    /// A failure whose report includes the last lines of container `id`'s output.
    pub(super) fn with_logs(error: impl Into<ServiceError>, id: &str) -> Self {
        Failure { error: error.into(), logs_of: Some(id.to_string()) }
    }
}

/// `?` on a phase's error gives a failure without logs.
macro_rules! failure_from {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(error: $error) -> Self {
                Failure { error: error.into(), logs_of: None }
            }
        }
    )*};
}
failure_from!(ServiceError, ImageError, FixtureError, MigrationError, NotReady, Error);

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    pub(super) async fn fail(&self, mut report: ServiceReport, failure: Failure, redactor: &Redactor) -> ServiceReport {
        let message = redactor.apply(&failure.error.to_string());
        if let Some(id) = &failure.logs_of {
            if let Ok(lines) = self.docker.tail_logs(id, FAILURE_LOG_LINES).await {
                report.logs = lines.iter().map(|l| redactor.apply(l)).collect();
            }
        }
        let mut detail = message.clone();
        if !report.logs.is_empty() {
            detail.push_str(&format!("\n  last {} log lines:\n", report.logs.len()));
            for l in &report.logs {
                detail.push_str(&format!("    | {l}\n"));
            }
        }
        self.reporter.phase(&report.service, Phase::Failed, detail.trim_end());
        report.outcome = Outcome::Failed;
        report.message = Some(message);
        report
    }
}
