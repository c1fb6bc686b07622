//! `stack.toml` → a validated [`Manifest`]. Pure: the caller reads the files and the environment;
//! this module only turns text into values plus every problem found, all at once.

pub mod diag;
pub mod envfile;
mod parse;
mod profiles;
pub mod schema;
mod units;
pub mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diag::Diagnostic;
pub use profiles::ProfileError;
pub use units::{format_duration, parse_duration, parse_size, DurationError, MAX_IDLE_TTL, MAX_SNAPSHOT_BUDGET, MAX_TIMEOUT, MIN_DURATION};
pub use vars::{Interpolated, VarSource};

/// A validated stack description. Every field has been checked; names are unique; the
/// dependency graph is acyclic; host ports do not collide.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Directory relative paths in the manifest are resolved against.
    pub dir: PathBuf,
    /// The manifest file (in `dir`), shown by `stagectl ls` beside its projects.
    pub file: PathBuf,
    /// The project: what every container, network, volume, lock, history entry and daemon is
    /// named after. The `[stack] name` unless `-p/--project-name` gives another.
    pub stack: String,
    /// The `[stack] name` as written, whichever project runs the manifest. Fixture snapshots
    /// are keyed by it, so the projects of one manifest share them.
    pub snapshot_scope: String,
    /// Host ports for `"auto:PORT"` mappings come from this range (inclusive).
    pub port_range: (u16, u16),
    /// Services in the order they appear in the file.
    pub services: Vec<Service>,
    /// Fixture data per data service, in file order.
    pub fixtures: Vec<Fixtures>,
    /// Disk budget for fixture snapshots (bytes); least recently used ones are evicted.
    pub snapshot_budget: u64,
    /// `[[checks.smoke]]`, in file order.
    pub smoke: Vec<SmokeCheck>,
    /// `[migrations.<service>]`, in file order.
    pub migrations: Vec<Migrations>,
    /// `[schedule]`: what the daemon does on its own.
    pub schedule: Schedule,
    /// The value of every `${secret:NAME}` used anywhere (env, check headers), for masking.
    pub secrets: SecretValues,
    /// Services of the file left out because none of their `profiles` is selected (see
    /// [`Manifest::select_profiles`]); their containers are not orphans.
    pub inactive: Vec<String>,
}

/// Secret values; `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValues(pub Vec<String>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} secret value(s)]", self.0.len())
    }
}

/// Scheduled work of the daemon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    /// Cron expression (5 fields, or 6 with seconds first) for full rebuilds: staging is rebuilt
    /// from scratch regularly so it never drifts into a hand-tended pet.
    pub rebuild: Option<String>,
    /// Tear the stack down after this long without any run or API call (cost runaway).
    pub idle_ttl: Option<Duration>,
}

/// The migrations of one database service: a directory of `NNN_name.up.sql` /
/// `NNN_name.down.sql` files (applied by stagectl, or by a job), or migrations that live inside
/// a job's image (the command form without `dir`).
#[derive(Debug, Clone, PartialEq)]
pub struct Migrations {
    pub service: String,
    /// Absolute path of the directory of `NNN_name.up.sql` files. Always set in the native form
    /// (no `job`); `None` when the migrations live inside the job's image.
    pub dir: Option<PathBuf>,
    /// Lint rule ids allowed for every migration of this service.
    pub allow: Vec<String>,
    pub database: String,
    pub user: String,
    /// Port PostgreSQL listens on inside the container.
    pub port: u16,
    /// Longest a concurrent read or write of a touched table may wait during a migration.
    pub lock_budget: Duration,
    /// Whether `check migrations` runs the up → down → up schema round trip.
    pub round_trip: bool,
    /// Command form: the job service that applies the migrations with the team's own tool.
    /// Without it (the native form) stagectl applies the `.up.sql` files itself during `up`,
    /// recording them in `stagectl_migrations` with checksums.
    pub job: Option<String>,
    /// Command form: run in the job's image against a copy of the database; exit 0 means
    /// nothing is pending, non-zero that migrations are pending (`manage.py migrate --check`).
    pub pending: Option<Vec<String>>,
    /// Command form without `dir`: where the lint finds the SQL of the migrations.
    pub sql: Option<MigrationSql>,
}

/// Where the lint of migrations that live inside an image finds their SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationSql {
    /// `sql_dir`: every `*.sql` file of this directory (absolute path).
    Dir(PathBuf),
    /// `sql`: a command run in the job's image against a copy of the database that prints the
    /// SQL of the pending migrations (`manage.py sqlmigrate APP NNNN`, or a script).
    Command(Vec<String>),
}

/// A smoke check run against the running stack by `stagectl check`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeCheck {
    pub name: String,
    pub kind: CheckKind,
    /// Retry deadline: the check is attempted until it passes or this passes.
    pub timeout: Duration,
    /// Only for http checks: a burst of requests after the check first passes.
    pub latency: Option<LatencyBudget>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Http {
        service: String,
        port: u16,
        method: String,
        path: String,
        headers: BTreeMap<String, Interpolated>,
        body: Option<String>,
        expect_status: u16,
        expect_body: Option<String>,
        expect_body_regex: Option<String>,
        /// JSON pointer → expected JSON value.
        expect_json: BTreeMap<String, serde_json::Value>,
    },
    Tcp {
        service: String,
        port: u16,
    },
    Exec {
        service: String,
        command: Vec<String>,
        expect_output: Option<String>,
    },
    Sql {
        service: String,
        database: String,
        user: String,
        query: String,
        expect: String,
    },
    /// A host command (run in the manifest directory); passes on exit 0.
    Script {
        command: Vec<String>,
    },
}

impl CheckKind {
    pub fn kind(&self) -> &'static str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Exec { .. } => "exec",
            CheckKind::Sql { .. } => "sql",
            CheckKind::Script { .. } => "script",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBudget {
    pub requests: u32,
    pub concurrency: u32,
    pub p95: Duration,
    pub p99: Option<Duration>,
    /// Largest acceptable fraction of failed requests (0.0–1.0).
    pub max_error_rate: f64,
}

/// Curated data loaded into one service after its migrations.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixtures {
    pub service: String,
    pub loader: Loader,
    /// Glob patterns relative to the manifest directory; applied in this order, each
    /// pattern's matches sorted by name.
    pub files: Vec<String>,
    /// The manifest line of each `files` entry (same order), so runtime errors can name it.
    pub files_lines: Vec<usize>,
    /// How the manifest file is named in messages (its `display_name`), for `file:line`.
    pub manifest_file: String,
    /// Jobs that must complete before loading (e.g. migrations); default: the jobs that depend
    /// on this service.
    pub after: Vec<String>,
    /// `table.column` → rule, applied while streaming CSV rows.
    pub mask: BTreeMap<String, MaskRule>,
    /// `table.column`s that `stagectl fixtures scan` checks hold no unmasked values.
    pub sensitive: Vec<String>,
    pub seed: String,
    /// Snapshot the loaded state and restore it on the next rebuild with the same inputs.
    pub snapshot: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Loader {
    /// `*.sql` through psql, `*.csv` through `COPY ... FROM STDIN` (file stem = table).
    Postgres { database: String, user: String },
    /// MySQL/MariaDB: `*.sql` through the `mariadb`/`mysql` client, `*.csv` as multi-row
    /// INSERTs (file stem = table, masked on the way). The password comes from the container's
    /// own environment (`MARIADB_ROOT_PASSWORD`, `MYSQL_ROOT_PASSWORD`, or for another user
    /// `MARIADB_PASSWORD`, `MYSQL_PASSWORD`), read inside the container: stagectl never holds it.
    Mysql { database: String, user: String },
    /// `*.redis` files of Redis commands, one per line, through `redis-cli --pipe`.
    Redis,
    /// Each file is streamed to the stdin of this command, run inside the service.
    Command { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskRule {
    Email,
    Name,
    Phone,
    Hash,
    Null,
    Keep,
    Fixed(String),
}

impl MaskRule {
    pub fn parse(text: &str) -> Option<MaskRule> {
        Some(match text {
            "email" => MaskRule::Email,
            "name" => MaskRule::Name,
            "phone" => MaskRule::Phone,
            "hash" => MaskRule::Hash,
            "null" => MaskRule::Null,
            "keep" => MaskRule::Keep,
            other => MaskRule::Fixed(other.strip_prefix("fixed:")?.to_string()),
        })
    }

    pub fn as_string(&self) -> String {
        match self {
            MaskRule::Email => "email".into(),
            MaskRule::Name => "name".into(),
            MaskRule::Phone => "phone".into(),
            MaskRule::Hash => "hash".into(),
            MaskRule::Null => "null".into(),
            MaskRule::Keep => "keep".into(),
            MaskRule::Fixed(v) => format!("fixed:{v}"),
        }
    }
}

/// Default disk budget for fixture snapshots.
/// Where `"auto:PORT"` host ports come from unless `[stack] port_range` says otherwise: below
/// the kernel's ephemeral range (32768-60999), where Docker's own "any free port" lands.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (20000, 29999);

/// Whether `name` can name a stack or project: it prefixes every container, network and volume.
pub fn valid_stack_name(name: &str) -> bool {
    parse::is_stack_name(name)
}

/// Why a project name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid project name `{0}`: use up to 40 lowercase letters, digits and `-`, not starting or ending with `-`")]
pub struct InvalidProject(pub String);

pub const DEFAULT_SNAPSHOT_BUDGET: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    /// Image reference to run; for built services, the tag the build is also given (optional).
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, Interpolated>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<VolumeMount>,
    pub depends_on: Vec<String>,
    /// A one-shot service (e.g. migrations): done when it exits 0; dependents wait for that.
    pub job: bool,
    pub ready: Option<Readiness>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// `env_file`: the files read (absolute), in order. Their values are already merged into
    /// `env` (later files over earlier ones, `env` over all).
    pub env_files: Vec<PathBuf>,
    /// User labels of the container (never under `org.stagectl.`).
    pub labels: BTreeMap<String, String>,
    /// tmpfs mounts: container path → mount options (`size=64m,mode=1777`, or empty).
    pub tmpfs: BTreeMap<String, String>,
    /// Resource limits by name (`nofile`, `nproc`, ...).
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Size of /dev/shm in bytes.
    pub shm_size: Option<u64>,
    /// Capabilities, upper case without the `CAP_` prefix (`ALL` allowed).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `(host name, address)` lines added to /etc/hosts; the address may be `host-gateway`.
    pub extra_hosts: Vec<(String, String)>,
    /// Run an init process (tini) as PID 1 that reaps zombies and forwards signals.
    pub init: bool,
    /// Time between SIGTERM and SIGKILL when the container is stopped (default 10 s).
    pub stop_grace_period: Option<Duration>,
    /// Compose-style profiles: a service with profiles runs only when one of them is selected.
    pub profiles: Vec<String>,
    /// How this service waits for each dependency; entries absent here wait for `ready`.
    pub conditions: BTreeMap<String, Condition>,
    /// Docker restart policy of a long-running service.
    pub restart: Restart,
}

impl Service {
    /// What this service waits for from `dependency` before it starts.
    pub fn condition(&self, dependency: &str) -> Condition {
        self.conditions.get(dependency).copied().unwrap_or_default()
    }
}

/// A `depends_on` condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// The dependency is probed ready (a job: exited 0; a data service: fixtures loaded).
    #[default]
    Ready,
    /// The dependency's container is started, not probed.
    Started,
    /// The dependency is a job and exited 0 (for a job the same as `ready`).
    Completed,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Ready => "ready",
            Condition::Started => "started",
            Condition::Completed => "completed",
        }
    }
}

/// A soft and hard resource limit (-1: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// Docker's restart policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times when given.
    OnFailure(Option<u32>),
    /// Restart whatever the exit (`always`, also written `unless-stopped`).
    Always,
}

impl Restart {
    /// Docker's policy name and maximum retry count.
    pub fn docker_policy(self) -> (&'static str, Option<u32>) {
        match self {
            Restart::No => ("no", None),
            Restart::OnFailure(n) => ("on-failure", n),
            Restart::Always => ("always", None),
        }
    }

    /// As written in the manifest.
    pub fn describe(self) -> String {
        match self {
            Restart::OnFailure(Some(n)) => format!("on-failure:{n}"),
            other => other.docker_policy().0.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    /// Absolute path of the build context.
    pub context: PathBuf,
    /// Dockerfile path relative to the context.
    pub dockerfile: String,
    /// Optional host command run (with `sh -c`, in the manifest directory) before the image build.
    pub command: Option<String>,
    pub args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// Host address to bind; `None` means all addresses.
    pub host_ip: Option<String>,
    /// Host port; `None` means Docker picks a free one (or, with `auto`, stagectl does).
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
    /// `"auto:PORT"`: the host port is allocated from `[stack] port_range`, stable for the
    /// project and free of every other container's ports (see `orchestrator::ports`).
    pub auto: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A named volume owned by the stack (created as `<stack>-<name>`, removed by `down --volumes`).
    Named(String),
    /// A host path (absolute after resolution), never removed by stagectl.
    Bind(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub probe: Probe,
    /// Deadline for the service to become ready, counted from container start.
    pub timeout: Duration,
    /// Pause between probe attempts.
    pub interval: Duration,
    /// Longest one probe attempt may take (compose's healthcheck `timeout`).
    pub attempt_timeout: Duration,
    /// Give up after this many failed attempts counted after `start_period` (compose's
    /// `retries`); `None`: only the deadline (`timeout`) ends the wait.
    pub retries: Option<u32>,
    /// Failed attempts in this time after the start do not count toward `retries`.
    pub start_period: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Tcp {
        port: u16,
    },
    /// PostgreSQL's own protocol: a startup message answered by anything but "the database
    /// system is starting up" (what pg_isready checks), without a `docker exec` per attempt.
    Postgres {
        port: u16,
    },
    /// MySQL/MariaDB's own protocol: the server's initial handshake (protocol 10), not an
    /// error packet such as "too many connections", without a `docker exec` per attempt.
    Mysql {
        port: u16,
    },
    Http {
        port: u16,
        path: String,
        status: u16,
    },
    Exec {
        command: Vec<String>,
    },
    Log {
        pattern: String,
    },
    /// The image's own Docker HEALTHCHECK reports `healthy`.
    Healthcheck,
}

impl Probe {
    pub fn describe(&self) -> String {
        match self {
            Probe::Tcp { port } => format!("tcp :{port}"),
            Probe::Postgres { port } => format!("postgres :{port}"),
            Probe::Mysql { port } => format!("mysql :{port}"),
            Probe::Http { port, path, status } => format!("http :{port}{path} → {status}"),
            Probe::Exec { command } => format!("exec {}", command.join(" ")),
            Probe::Log { pattern } => format!("log /{pattern}/"),
            Probe::Healthcheck => "docker healthcheck".to_string(),
        }
    }
}

pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_millis(20);
/// Default longest single probe attempt.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

impl Manifest {
    /// The same manifest run as project `project` (`-p`): a separate namespace for every
    /// resource, sharing fixture snapshots with the manifest's other projects.
    pub fn with_project(mut self, project: &str) -> Result<Manifest, InvalidProject> {
        if !valid_stack_name(project) {
            return Err(InvalidProject(project.to_string()));
        }
        self.stack = project.to_string();
        Ok(self)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn fixtures_for(&self, service: &str) -> Option<&Fixtures> {
        self.fixtures.iter().find(|f| f.service == service)
    }

    /// Every secret value used by the stack, for redaction of anything stagectl prints.
    pub fn secret_values(&self) -> Vec<String> {
        let built = self.services.iter().flat_map(|s| s.env.values()).filter(|v| v.secret).map(|v| v.value.clone());
        let unique: std::collections::BTreeSet<String> = built.chain(self.secrets.0.iter().cloned()).collect();
        unique.into_iter().collect()
    }
}

/// A manifest that failed validation: every problem, ready to render against the source.
#[derive(Debug, Clone)]
pub struct ManifestErrors {
    pub file: String,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// Problems rendered in full; the rest are only counted. Fixing the first ones usually clears many
/// of the rest, and a file with thousands of problems must not print gigabytes.
pub const MAX_RENDERED_DIAGNOSTICS: usize = 50;

impl ManifestErrors {
    /// The first [`MAX_RENDERED_DIAGNOSTICS`] problems with their source lines, a count of the
    /// others, and the total.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in self.diagnostics.iter().take(MAX_RENDERED_DIAGNOSTICS) {
            out.push_str(&d.render(&self.file, &self.source));
        }
        let n = self.diagnostics.len();
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if let Some(more) = n.checked_sub(MAX_RENDERED_DIAGNOSTICS).filter(|m| *m > 0) {
            out.push_str(&format!("… and {more} more problem{} (fix these first)\n", plural(more)));
        }
        out.push_str(&format!("{n} problem{} found in {}\n", plural(n), self.file));
        out
    }
}

/// The text of a manifest file's bytes, or the problem at the first byte that is not UTF-8.
/// `display_name` is how the file is named in messages.
pub fn decode<'a>(bytes: &'a [u8], display_name: &str) -> Result<&'a str, ManifestErrors> {
    let error = match std::str::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let at = error.valid_up_to();
    let bad = &bytes[at..at + error.error_len().unwrap_or(bytes.len() - at)];
    let shown: Vec<String> = bad.iter().map(|b| format!("0x{b:02X}")).collect();
    let message = match shown.as_slice() {
        [one] => format!("invalid UTF-8: byte {one} is not part of a valid character"),
        many => format!("invalid UTF-8: bytes {} are not a valid character", many.join(" ")),
    };
    let sequences = bytes.utf8_chunks().filter(|c| !c.invalid().is_empty()).count();
    let mut help = format!("the manifest must be UTF-8 text; convert it, e.g. `iconv -f latin1 -t utf-8 {display_name}`");
    if sequences > 1 {
        help.push_str(&format!(" ({sequences} invalid byte sequences in all)"));
    }
    // The lossy text is unchanged before `at`, where the bad bytes became one U+FFFD (3 bytes).
    let diagnostic = Diagnostic::new(at..at + '\u{FFFD}'.len_utf8(), message).help(help);
    let source = String::from_utf8_lossy(bytes).into_owned();
    Err(ManifestErrors { file: display_name.to_string(), source, diagnostics: vec![diagnostic] })
}

/// Why a file the manifest names (an `env_file`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileReadError {
    #[error("not found")]
    NotFound,
    #[error("not UTF-8 text")]
    NotText,
    #[error("{0}")]
    Other(String),
}

/// Reads a file the manifest names; the caller's adapter to the file system.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> Result<String, FileReadError>;

/// Parses and validates manifest text. `display_name` is how the file is named in messages;
/// `dir` is where relative paths are resolved. No file the manifest names can be read: an
/// `env_file` is reported missing (use [`parse_with_files`]).
pub fn parse(
    source: &str,
    display_name: &str,
    dir: &Path,
    vars: &VarSource,
    dir_exists: &dyn Fn(&Path) -> bool,
) -> Result<Manifest, ManifestErrors> {
    parse_with_files(source, display_name, dir, vars, dir_exists, &|_| Err(FileReadError::NotFound))
}

/// [`parse`], reading the files the manifest names (`env_file`) through `read_file`.
pub fn parse_with_files(
    source: &str,
    display_name: &str,
    dir: &Path,
    vars: &VarSource,
    dir_exists: &dyn Fn(&Path) -> bool,
    read_file: ReadFile<'_>,
) -> Result<Manifest, ManifestErrors> {
    let mut manifest = parse::parse(source, dir, vars, dir_exists, read_file).map_err(|mut diagnostics| {
        diagnostics.sort_by(|a, b| a.span.start.cmp(&b.span.start).then_with(|| a.message.cmp(&b.message)));
        diagnostics.dedup();
        ManifestErrors { file: display_name.to_string(), source: source.to_string(), diagnostics }
    })?;
    manifest.fixtures.iter_mut().for_each(|f| f.manifest_file = display_name.to_string());
    manifest.file = dir.join(Path::new(display_name).file_name().unwrap_or(std::ffi::OsStr::new("stack.toml")));
    Ok(manifest)
}

#[cfg(test)]
pub(crate) mod tests;
