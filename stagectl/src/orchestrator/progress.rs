//! How the engine tells the outside world what it is doing. The CLI renders these events as a
//! live display on a terminal, plain lines when piped, or JSON lines.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Building,
    Pulling,
    ImageReady,
    Waiting,
    Removing,
    Creating,
    Starting,
    Probing,
    /// Applying pending migrations (native form of `[migrations.<service>]`).
    Migrating,
    /// Loading fixture data (or restoring it from a snapshot).
    Loading,
    Ready,
    Completed,
    Kept,
    Failed,
    Skipped,
    Removed,
    /// `stagectl stop`: stopping a container (it is kept).
    Stopping,
    Stopped,
    /// `snapshots push`: an image going to a registry, then there.
    Pushing,
    Pushed,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Ready
                | Phase::Completed
                | Phase::Kept
                | Phase::Failed
                | Phase::Skipped
                | Phase::Removed
                | Phase::Stopped
                | Phase::Pushed
        )
    }
}

pub trait Reporter: Send + Sync {
    /// A service (or resource) entered a phase; `detail` is a short human text.
    fn phase(&self, subject: &str, phase: Phase, detail: &str);
    /// Bytes done for a pull.
    fn bytes(&self, _subject: &str, _current: u64, _total: u64) {}
    /// A line of build or pull output, for verbose displays.
    fn output(&self, _subject: &str, _line: &str) {}
    /// A line of text for the person watching (a check result, why nothing happens yet).
    fn note(&self, _line: &str) {}
}

/// A reporter that drops everything (library use, tests).
pub struct Silent;

impl Reporter for Silent {
    fn phase(&self, _: &str, _: Phase, _: &str) {}
}
