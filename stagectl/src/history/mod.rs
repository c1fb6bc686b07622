//! Run history: every run of an operation on a stack, with its steps, check results and log,
//! kept in one SQLite file that the CLI and the daemon write concurrently.
//!
//! Durability: WAL mode and one autocommit transaction per write, so whatever was written
//! before a `kill -9` survives. Runs whose process died are marked `interrupted` on the next
//! open (`recover_interrupted`).
//!
//! Times are stored and exposed as RFC 3339 UTC text with milliseconds
//! (`2025-01-31T12:00:00.123Z`): fixed width, so text order is time order in SQL.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use chrono::{SecondsFormat, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Schema migrations; version N of the database = the first N applied. Append only: a
/// released entry is never edited, a change is a new entry.
const MIGRATIONS: &[&str] = &[
    // 1: runs, steps, checks, logs.
    "CREATE TABLE runs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        stack           TEXT NOT NULL,
        operation       TEXT NOT NULL,
        triggered_by    TEXT NOT NULL,
        status          TEXT NOT NULL,
        owner_pid       INTEGER NOT NULL,
        owner_start     INTEGER,
        queued_at       TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT,
        seconds         REAL,
        error           TEXT,
        snapshot        TEXT,
        refresh_seconds REAL,
        detail          TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX runs_by_stack ON runs (stack, id);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE steps (
        id      INTEGER PRIMARY KEY,
        run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name    TEXT NOT NULL,
        status  TEXT NOT NULL,
        seconds REAL,
        detail  TEXT
    );
    CREATE INDEX steps_by_run ON steps (run_id, id);
    CREATE TABLE checks (
        id         INTEGER PRIMARY KEY,
        run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        kind       TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        seconds    REAL NOT NULL,
        message    TEXT NOT NULL,
        p95_ms     REAL,
        p99_ms     REAL,
        error_rate REAL
    );
    CREATE INDEX checks_by_run ON checks (run_id, id);
    CREATE TABLE logs (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq    INTEGER NOT NULL,
        at     TEXT NOT NULL,
        line   TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;",
];

/// How long a write waits for the other process's write lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Deployment success rate (M1) is computed over this many latest finished deployments.
const SUCCESS_WINDOW: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {}: cannot create its directory: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("history database {}: cannot create it: {source}", path.display())]
    CreateFile { path: PathBuf, source: std::io::Error },
    #[error("history database {}: {what}: {source}", path.display())]
    Sqlite { path: PathBuf, what: &'static str, source: rusqlite::Error },
    #[error(
        "history database {}: schema version {found} is newer than this stagectl knows ({known}); use a newer stagectl or another STAGECTL_STATE_DIR",
        path.display()
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("history database {}: no run {id}", path.display())]
    NoSuchRun { path: PathBuf, id: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Cli,
    Api,
    Watch,
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Api => "api",
            Trigger::Watch => "watch",
            Trigger::Schedule => "schedule",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Trigger::Cli, Trigger::Api, Trigger::Watch, Trigger::Schedule].into_iter().find(|t| t.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Interrupted,
    /// Stopped on request (SIGINT/SIGTERM) before it finished.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Queued or running: the run may still change, and is never pruned.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    fn parse(text: &str) -> Option<Self> {
        [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Interrupted, RunStatus::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

macro_rules! text_enum_sql {
    ($ty:ty, $what:literal) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                <$ty>::parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown {} {text:?}", $what).into()))
            }
        }
    };
}
text_enum_sql!(Trigger, "trigger");
text_enum_sql!(RunStatus, "run status");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub id: i64,
    pub stack: String,
    /// up, down, rebuild, check, verify, ...
    pub operation: String,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub owner_pid: u32,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Wall time from start to finish; none if the run never started or never finished.
    pub seconds: Option<f64>,
    pub error: Option<String>,
    /// hit, miss, kept or off.
    pub snapshot: Option<String>,
    /// Time spent getting data in place (seed metric M6).
    pub refresh_seconds: Option<f64>,
    /// Free text, e.g. which files changed for a watch run.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: String,
    pub seconds: Option<f64>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub kind: String,
    /// passed or failed.
    pub outcome: String,
    pub seconds: f64,
    pub message: String,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub steps: Vec<StepRecord>,
    pub checks: Vec<CheckRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// 1-based, per run.
    pub seq: i64,
    pub at: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub ok: bool,
    pub error: Option<String>,
    pub snapshot: Option<String>,
    pub refresh_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub interrupted: u64,
    pub cancelled: u64,
}

impl StatusCounts {
    /// Every status with its count, zeros included, for one sample per status.
    pub fn pairs(&self) -> [(RunStatus, u64); 6] {
        [
            (RunStatus::Queued, self.queued),
            (RunStatus::Running, self.running),
            (RunStatus::Succeeded, self.succeeded),
            (RunStatus::Failed, self.failed),
            (RunStatus::Interrupted, self.interrupted),
            (RunStatus::Cancelled, self.cancelled),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsData {
    pub stack: String,
    /// Finished (succeeded or failed) up/rebuild/verify/deploy runs among the latest 100 of them.
    /// Interrupted runs are left out: a killed process says nothing about the deployment.
    pub deployments: u64,
    pub deployments_succeeded: u64,
    /// The latest finished rebuild, verify or Swarm deploy run (a deploy replaces the whole
    /// earlier deployment: a rebuild; `daemon --swarm` records its rebuilds as deploys).
    pub last_rebuild_seconds: Option<f64>,
    pub last_rebuild_succeeded: Option<bool>,
    /// The latest run that recorded a data refresh time (M6).
    pub last_refresh_seconds: Option<f64>,
    /// See [`History::latest_checks`] (latency p95/p99 and error rate, M3/M4).
    pub latest_checks: Vec<CheckRecord>,
    /// All runs of the stack still in the history, by status.
    pub runs_by_status: StatusCounts,
}

impl MetricsData {
    /// Deployment success rate (M1), none before the first finished deployment.
    pub fn success_rate(&self) -> Option<f64> {
        (self.deployments > 0).then(|| self.deployments_succeeded as f64 / self.deployments as f64)
    }
}

/// The run history. Cheap to share behind an `Arc`; calls are serialised on one connection,
/// which is fine for a handful of writes per second.
pub struct History {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// `$STAGECTL_STATE_DIR`, else `$XDG_STATE_HOME/stagectl`, else `~/.local/state/stagectl`:
/// the history, the lock files and the daemon discovery file live here.
/// Creates `dir` (and missing parents) readable by its owner only, and narrows an existing
/// one: run logs, history and daemon tokens live here.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Creates the database file readable by its owner only before SQLite opens it (SQLite gives
/// its `-wal` and `-shm` files the database file's permissions).
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o600))?;
    }
    Ok(())
}

pub fn state_dir() -> PathBuf {
    state_dir_from(|name| std::env::var_os(name))
}

fn state_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("STAGECTL_STATE_DIR") {
        return dir;
    }
    // The XDG spec says to ignore relative values.
    if let Some(dir) = set("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
        return dir.join("stagectl");
    }
    match set("HOME") {
        Some(home) => home.join(".local/state/stagectl"),
        None => std::env::temp_dir().join("stagectl"),
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

macro_rules! select_runs {
    () => {
        "SELECT id, stack, operation, triggered_by, status, owner_pid, queued_at, started_at,
                finished_at, seconds, error, snapshot, refresh_seconds, detail
         FROM runs "
    };
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        stack: r.get(1)?,
        operation: r.get(2)?,
        trigger: r.get(3)?,
        status: r.get(4)?,
        owner_pid: r.get(5)?,
        queued_at: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        seconds: r.get(9)?,
        error: r.get(10)?,
        snapshot: r.get(11)?,
        refresh_seconds: r.get(12)?,
        detail: r.get(13)?,
    })
}

const SELECT_CHECKS: &str = "SELECT name, kind, outcome, seconds, message, p95_ms, p99_ms, error_rate
     FROM checks WHERE run_id = ?1 ORDER BY id";

fn check_row(r: &Row<'_>) -> rusqlite::Result<CheckRecord> {
    Ok(CheckRecord {
        name: r.get(0)?,
        kind: r.get(1)?,
        outcome: r.get(2)?,
        seconds: r.get(3)?,
        message: r.get(4)?,
        p95_ms: r.get(5)?,
        p99_ms: r.get(6)?,
        error_rate: r.get(7)?,
    })
}

impl History {
    pub fn default_path() -> PathBuf {
        state_dir().join("history.db")
    }

    /// Opens (creating it if needed) and migrates the database, then marks the runs of dead
    /// processes as interrupted.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|source| HistoryError::CreateDir { path: path.to_path_buf(), source })?;
        }
        private_file(path).map_err(|source| HistoryError::CreateFile { path: path.to_path_buf(), source })?;
        let fail = |what| {
            let path = path.to_path_buf();
            move |source| HistoryError::Sqlite { path, what, source }
        };
        let mut conn = Connection::open(path).map_err(fail("open"))?;
        // The timeout first: switching to WAL and migrating take the write lock.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail("set busy_timeout"))?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(fail("switch to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail("switch to WAL mode")(rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode}"))));
        }
        // NORMAL in WAL mode loses at most the last commits on power loss, never on a
        // process crash, which is the failure that matters here.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(fail("set pragmas"))?;
        migrate(&mut conn, path)?;
        let history = History { path: path.to_path_buf(), conn: Mutex::new(conn) };
        history.recover_interrupted()?;
        Ok(history)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (every statement
        // is atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> HistoryError + '_ {
        move |source| HistoryError::Sqlite { path: self.path.clone(), what, source }
    }

    fn expect_one(&self, changed: usize, id: i64) -> Result<(), HistoryError> {
        if changed == 0 {
            return Err(HistoryError::NoSuchRun { path: self.path.clone(), id });
        }
        Ok(())
    }

    /// Records a new queued run owned by this process and returns its id.
    pub fn create_run(&self, stack: &str, operation: &str, trigger: Trigger) -> Result<i64, HistoryError> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO runs (stack, operation, triggered_by, status, owner_pid, owner_start, queued_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut st| st.execute(params![stack, operation, trigger, RunStatus::Queued, std::process::id(), own_start_time(), now()]))
        .map_err(self.fail("record a new run"))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn start_run(&self, id: i64) -> Result<(), HistoryError> {
        let changed = self
            .conn()
            .prepare_cached("UPDATE runs SET status = ?2, started_at = ?3 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id, RunStatus::Running, now()]))
            .map_err(self.fail("mark a run started"))?;
        self.expect_one(changed, id)
    }

    pub fn finish_run(&self, id: i64, outcome: &RunOutcome) -> Result<(), HistoryError> {
        let status = if outcome.ok { RunStatus::Succeeded } else { RunStatus::Failed };
        // Seconds computed in SQL from the stored start: one statement, no read-then-write.
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE runs SET status = ?2, finished_at = ?3, error = ?4, snapshot = ?5,
                    refresh_seconds = ?6,
                    seconds = round(max(0.0, (julianday(?3) - julianday(started_at)) * 86400.0), 3)
                 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![id, status, now(), outcome.error, outcome.snapshot, outcome.refresh_seconds]))
            .map_err(self.fail("mark a run finished"))?;
        self.expect_one(changed, id)
    }

    /// Ends a run that was stopped on request; `why` says what state it left behind.
    pub fn cancel_run(&self, id: i64, why: &str) -> Result<(), HistoryError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE runs SET status = ?2, finished_at = ?3, error = ?4,
                    seconds = round(max(0.0, (julianday(?3) - julianday(started_at)) * 86400.0), 3)
                 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![id, RunStatus::Cancelled, now(), why]))
            .map_err(self.fail("mark a run cancelled"))?;
        self.expect_one(changed, id)
    }

    pub fn set_detail(&self, id: i64, detail: &str) -> Result<(), HistoryError> {
        let changed = self
            .conn()
            .prepare_cached("UPDATE runs SET detail = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![id, detail]))
            .map_err(self.fail("set a run's detail"))?;
        self.expect_one(changed, id)
    }

    pub fn add_step(&self, run: i64, step: &StepRecord) -> Result<(), HistoryError> {
        self.conn()
            .prepare_cached("INSERT INTO steps (run_id, name, status, seconds, detail) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut st| st.execute(params![run, step.name, step.status, step.seconds, step.detail]))
            .map_err(self.fail("record a step"))?;
        Ok(())
    }

    pub fn add_check(&self, run: i64, check: &CheckRecord) -> Result<(), HistoryError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO checks (run_id, name, kind, outcome, seconds, message, p95_ms, p99_ms, error_rate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    run,
                    check.name,
                    check.kind,
                    check.outcome,
                    check.seconds,
                    check.message,
                    check.p95_ms,
                    check.p99_ms,
                    check.error_rate
                ])
            })
            .map_err(self.fail("record a check result"))?;
        Ok(())
    }

    /// Appends a log line and returns its sequence number (1-based per run).
    pub fn append_log(&self, run: i64, line: &str) -> Result<i64, HistoryError> {
        // Next seq and insert in one statement, so two writers of the same run cannot
        // both take the same number.
        self.conn()
            .prepare_cached(
                "INSERT INTO logs (run_id, seq, at, line)
                 SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3 FROM logs WHERE run_id = ?1
                 RETURNING seq",
            )
            .and_then(|mut st| st.query_row(params![run, now(), line], |r| r.get(0)))
            .map_err(self.fail("append a log line"))
    }

    /// Up to `limit` log lines of a run with seq > `after_seq`, in order; pass the last seq
    /// seen to follow the log.
    pub fn log_since(&self, run: i64, after_seq: i64, limit: usize) -> Result<Vec<LogLine>, HistoryError> {
        self.conn()
            .prepare_cached("SELECT seq, at, line FROM logs WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
            .and_then(|mut st| {
                st.query_map(params![run, after_seq, clamp(limit)], |r| Ok(LogLine { seq: r.get(0)?, at: r.get(1)?, line: r.get(2)? }))?
                    .collect()
            })
            .map_err(self.fail("read a run's log"))
    }

    /// The latest `limit` runs, of one stack or of all, newest first.
    pub fn runs(&self, stack: Option<&str>, limit: usize) -> Result<Vec<RunRow>, HistoryError> {
        self.conn()
            .prepare_cached(concat!(select_runs!(), "WHERE ?1 IS NULL OR stack = ?1 ORDER BY id DESC LIMIT ?2"))
            .and_then(|mut st| st.query_map(params![stack, clamp(limit)], run_row)?.collect())
            .map_err(self.fail("list runs"))
    }

    pub fn run(&self, id: i64) -> Result<Option<RunDetail>, HistoryError> {
        let conn = self.conn();
        let run = conn
            .prepare_cached(concat!(select_runs!(), "WHERE id = ?1"))
            .and_then(|mut st| st.query_row(params![id], run_row).optional())
            .map_err(self.fail("read a run"))?;
        let Some(run) = run else {
            return Ok(None);
        };
        let steps = conn
            .prepare_cached("SELECT name, status, seconds, detail FROM steps WHERE run_id = ?1 ORDER BY id")
            .and_then(|mut st| {
                st.query_map(params![id], |r| Ok(StepRecord { name: r.get(0)?, status: r.get(1)?, seconds: r.get(2)?, detail: r.get(3)? }))?
                    .collect()
            })
            .map_err(self.fail("read a run's steps"))?;
        let checks = conn
            .prepare_cached(SELECT_CHECKS)
            .and_then(|mut st| st.query_map(params![id], check_row)?.collect())
            .map_err(self.fail("read a run's check results"))?;
        Ok(Some(RunDetail { run, steps, checks }))
    }

    /// The check results of the stack's most recently finished (succeeded or failed) run that
    /// has any; a later run without checks (say `up`) does not hide them.
    pub fn latest_checks(&self, stack: &str) -> Result<Vec<CheckRecord>, HistoryError> {
        latest_checks(&self.conn(), stack).map_err(self.fail("read the latest check results"))
    }

    /// Marks as interrupted the queued or running runs whose owning process is gone: its pid
    /// no longer exists, or now belongs to another process (pid reuse, or this very process
    /// when an earlier one had the same pid, as for pid 1 in a container). Returns how many.
    ///
    /// Without `/proc` no process can be checked, so nothing is marked: marking a live run
    /// would be worse than leaving a dead one running.
    pub fn recover_interrupted(&self) -> Result<usize, HistoryError> {
        if own_start_time().is_none() {
            return Ok(0);
        }
        let conn = self.conn();
        let active: Vec<(i64, u32, Option<i64>)> = conn
            .prepare_cached("SELECT id, owner_pid, owner_start FROM runs WHERE status IN ('queued', 'running')")
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
            .map_err(self.fail("list active runs"))?;
        let mut marked = 0;
        for (id, pid, start) in active {
            if owner_alive(pid, start) {
                continue;
            }
            marked += conn
                .prepare_cached(
                    "UPDATE runs SET status = ?2, error = ?3
                     WHERE id = ?1 AND status IN ('queued', 'running')",
                )
                .and_then(|mut st| st.execute(params![id, RunStatus::Interrupted, format!("the process running it stopped (pid {pid})")]))
                .map_err(self.fail("mark a run interrupted"))?;
        }
        Ok(marked)
    }

    /// Deletes finished runs (with their steps, checks and log) beyond the newest `keep_runs`
    /// finished runs of each stack, or older than `keep_days` days (0 keeps none by age).
    /// Queued and running runs are never deleted. Returns how many runs were deleted.
    pub fn prune(&self, keep_runs: usize, keep_days: u32) -> Result<usize, HistoryError> {
        let cutoff = (Utc::now() - chrono::Duration::days(i64::from(keep_days))).to_rfc3339_opts(SecondsFormat::Millis, true);
        self.conn()
            .prepare_cached(
                "DELETE FROM runs
                 WHERE status NOT IN ('queued', 'running')
                   AND (coalesce(finished_at, started_at, queued_at) < ?2
                        OR id IN (SELECT id FROM (
                            SELECT id, row_number() OVER (PARTITION BY stack ORDER BY id DESC) AS n
                            FROM runs WHERE status NOT IN ('queued', 'running'))
                           WHERE n > ?1))",
            )
            .and_then(|mut st| st.execute(params![clamp(keep_runs), cutoff]))
            .map_err(self.fail("prune old runs"))
    }

    /// Aggregates for the stack's Prometheus metrics.
    pub fn metrics(&self, stack: &str) -> Result<MetricsData, HistoryError> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<MetricsData> {
            let (deployments, deployments_succeeded) = conn
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(status = 'succeeded'), 0) FROM (
                        SELECT status FROM runs
                        WHERE stack = ?1 AND operation IN ('up', 'rebuild', 'verify', 'deploy')
                          AND status IN ('succeeded', 'failed')
                        ORDER BY finished_at DESC, id DESC LIMIT ?2)",
                )?
                .query_row(params![stack, SUCCESS_WINDOW], |r| Ok((count_at(r, 0)?, count_at(r, 1)?)))?;
            let last_rebuild: Option<(Option<f64>, RunStatus)> = conn
                .prepare_cached(
                    "SELECT seconds, status FROM runs
                     WHERE stack = ?1 AND operation IN ('rebuild', 'verify', 'deploy')
                       AND status IN ('succeeded', 'failed')
                     ORDER BY finished_at DESC, id DESC LIMIT 1",
                )?
                .query_row(params![stack], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let last_refresh_seconds: Option<f64> = conn
                .prepare_cached(
                    "SELECT refresh_seconds FROM runs
                     WHERE stack = ?1 AND refresh_seconds IS NOT NULL
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![stack], |r| r.get(0))
                .optional()?;
            let mut runs_by_status = StatusCounts::default();
            let mut st = conn.prepare_cached("SELECT status, count(*) FROM runs WHERE stack = ?1 GROUP BY status")?;
            for row in st.query_map(params![stack], |r| Ok((r.get(0)?, count_at(r, 1)?)))? {
                let (status, count): (RunStatus, u64) = row?;
                *match status {
                    RunStatus::Queued => &mut runs_by_status.queued,
                    RunStatus::Running => &mut runs_by_status.running,
                    RunStatus::Succeeded => &mut runs_by_status.succeeded,
                    RunStatus::Failed => &mut runs_by_status.failed,
                    RunStatus::Interrupted => &mut runs_by_status.interrupted,
                    RunStatus::Cancelled => &mut runs_by_status.cancelled,
                } = count;
            }
            Ok(MetricsData {
                stack: stack.to_string(),
                deployments,
                deployments_succeeded,
                last_rebuild_seconds: last_rebuild.and_then(|(seconds, _)| seconds),
                last_rebuild_succeeded: last_rebuild.map(|(_, s)| s == RunStatus::Succeeded),
                last_refresh_seconds,
                latest_checks: latest_checks(&conn, stack)?,
                runs_by_status,
            })
        };
        read().map_err(self.fail("compute metrics"))
    }
}

fn latest_checks(conn: &Connection, stack: &str) -> rusqlite::Result<Vec<CheckRecord>> {
    let run: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM runs r
             WHERE stack = ?1 AND status IN ('succeeded', 'failed')
               AND EXISTS (SELECT 1 FROM checks c WHERE c.run_id = r.id)
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )?
        .query_row(params![stack], |r| r.get(0))
        .optional()?;
    match run {
        Some(run) => conn.prepare_cached(SELECT_CHECKS)?.query_map(params![run], check_row)?.collect(),
        None => Ok(Vec::new()),
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), HistoryError> {
    let fail = |source| HistoryError::Sqlite { path: path.to_path_buf(), what: "migrate the schema", source };
    let known = MIGRATIONS.len() as i64;
    loop {
        // IMMEDIATE takes the write lock before reading the version, so a CLI and a daemon
        // opening a new file together apply each migration once.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(fail)?;
        if version > known {
            return Err(HistoryError::TooNew { path: path.to_path_buf(), found: version, known });
        }
        if version == known {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[version as usize]).map_err(fail)?;
        tx.pragma_update(None, "user_version", version + 1).map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
}

/// SQLite has no unsigned integers; a count is never negative.
fn count_at(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(row.get::<_, i64>(index)?).unwrap_or(0))
}

/// SQLite limits are i64; anything beyond is "no limit" in practice.
fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// This process's start time, recorded with its runs so a later process that got the same
/// pid is not taken for the owner. None without `/proc`.
fn own_start_time() -> Option<i64> {
    static START: OnceLock<Option<i64>> = OnceLock::new();
    *START.get_or_init(|| process_start_time(std::process::id()))
}

/// Start time (clock ticks since boot) of a live process; None if there is no such process
/// or it has exited and is waiting to be reaped.
fn process_start_time(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    // starttime is field 22 of stat; `state` was field 3.
    fields.nth(22 - 4)?.parse().ok()
}

fn owner_alive(pid: u32, recorded_start: Option<i64>) -> bool {
    match process_start_time(pid) {
        None => false,
        // A row without a start time can only be checked by pid.
        Some(start) => recorded_start.is_none_or(|recorded| recorded == start),
    }
}
