//! Why a migration could not be found, applied, reverted or checked. Every message names the
//! file (with its line for an SQL error), the service or the table list it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("reading migrations dir {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Misnamed, duplicate or orphaned files, one line each, sorted.
    #[error("{}", lines(.0))]
    BadFiles(Vec<FileProblem>),

    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },

    #[error("connecting to PostgreSQL at {host}:{port} (database {database}, user {user}): {source}")]
    Connect {
        host: String,
        port: u16,
        database: String,
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("creating stagectl_migrations: {0}")]
    CreateHistory(#[source] tokio_postgres::Error),

    #[error("reading stagectl_migrations: {0}")]
    ReadHistory(#[source] tokio_postgres::Error),

    #[error("recording {file}: {source}")]
    Record {
        file: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error(transparent)]
    Sql(Box<SqlError>),

    /// A failure while running `file` that is not an error in its SQL (connection, transaction).
    #[error("{file}: {source}")]
    Postgres {
        file: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("listing tables: {0}")]
    ListTables(#[source] tokio_postgres::Error),

    #[error("`{service}` has no address on network {network}")]
    NoAddress { service: String, network: String },

    #[error("unknown service")]
    UnknownService { service: String },

    #[error(transparent)]
    Docker(#[from] crate::error::Error),

    #[error("{0}")]
    NotReady(crate::probes::NotReady),

    #[error("{file} is missing: write it, or set round_trip = false in [migrations.{service}]")]
    MissingDown { file: String, service: String },

    #[error("down failed: {0}")]
    DownFailed(#[source] Box<MigrationError>),

    #[error("up again after down failed: {0}")]
    UpAgainFailed(#[source] Box<MigrationError>),

    #[error("the down migrations do not restore the schema:\n{diff}")]
    SchemaNotRestored { diff: String },

    #[error("schema after up, down, up differs from the schema after the first up:\n{diff}")]
    SchemaChanged { diff: String },

    #[error("pg_dump failed ({code}): {output}")]
    PgDump { code: i64, output: String },

    #[error("the migration job exited with {code}:\n{logs}")]
    JobFailed { code: i64, logs: String },

    /// A `pending` or `sql` command of `[migrations.<service>]` did not exit in time.
    #[error("`{command}` did not exit within {secs}s (its container was removed)")]
    CommandTimedOut { command: String, secs: u64 },
}

/// PostgreSQL rejected a statement of a migration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {severity}: {message}{}{}", labelled("detail", detail), labelled("hint", hint))]
pub struct SqlError {
    pub file: String,
    /// The file's line of the error position (of the statement when PostgreSQL gives none).
    pub line: usize,
    pub severity: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// A file in a migrations directory that cannot be a migration as it stands: a misnamed
/// migration that silently never runs is worse than a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    #[error("{}: not a migration file name; name it NNN_description.up.sql (and NNN_description.down.sql to revert it)", path.display())]
    Misnamed { path: PathBuf },

    #[error("{} and {} have the same version {version}; give each migration its own number", first.display(), second.display())]
    SameVersion { first: PathBuf, second: PathBuf, version: String },

    #[error("{}: no matching {name}.up.sql", path.display())]
    NoMatchingUp { path: PathBuf, name: String },
}

fn lines(problems: &[FileProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// `\n  label: text`, or nothing.
fn labelled(label: &str, text: &Option<String>) -> String {
    text.as_ref().map(|t| format!("\n  {label}: {t}")).unwrap_or_default()
}

impl From<MigrationError> for crate::error::Error {
    fn from(e: MigrationError) -> Self {
        crate::error::Error::StackFailed(e.to_string())
    }
}
