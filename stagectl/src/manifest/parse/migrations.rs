//! `[migrations.SERVICE]`: the directory of migration files, the connection, the lock budget,
//! and for the command form the job that applies them; when the migrations live inside the
//! job's image (no `dir`), the `pending` command and where the SQL to lint comes from
//! (`sql_dir`, or an `sql` command).

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeTable;

use super::cx::{env_or, integer, Cx, Key, Value};
use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::{MigrationSql, Migrations, Service};

pub(super) const MIGRATIONS_KEYS: &[&str] =
    &["dir", "allow", "database", "user", "port", "lock_budget", "round_trip", "job", "pending", "sql", "sql_dir"];
/// Keys of the command form only.
const JOB_ONLY_KEYS: &[&str] = &["pending", "sql", "sql_dir"];
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_LOCK_BUDGET: Duration = Duration::from_secs(1);

impl Cx<'_> {
    /// `[migrations]`: one entry per database service, in file order.
    pub(super) fn migrations(&mut self, v: &Value<'_>, services: &[Service]) -> Vec<Migrations> {
        let Some(t) = self.table(v, "`migrations`") else { return Vec::new() };
        t.iter().filter_map(|(name, body)| self.migrations_of(name, body, services)).collect()
    }

    fn migrations_of(&mut self, name_key: &Key<'_>, body: &Value<'_>, services: &[Service]) -> Option<Migrations> {
        let service_name: String = name_key.get_ref().to_string();
        let field = |key: &str| format!("`migrations.{service_name}.{key}`");
        let t = self.table(body, &format!("`migrations.{service_name}`"))?;
        self.unknown_keys(t, MIGRATIONS_KEYS, &format!("[migrations.{service_name}]"));
        let service = self.keyed_service(name_key, services, "migrations", "migrations are keyed by the database service they apply to")?;
        let in_image = t.get("job").is_some() && t.get("dir").is_none();
        let dir = if in_image { None } else { Some(self.migrations_dir(body, t, &service_name)?) };
        let (pending, sql) = self.command_form(t, &service_name)?;
        let allow = match t.get("allow") {
            Some(a) => self.string_array(a, &field("allow"))?.into_iter().map(|(s, _)| s).collect(),
            None => vec![],
        };
        let database = match t.get("database") {
            Some(v) => self.plain_string(v, &field("database"))?,
            None => env_or(service, "POSTGRES_DB", "postgres"),
        };
        let user = match t.get("user") {
            Some(v) => self.plain_string(v, &field("user"))?,
            None => env_or(service, "POSTGRES_USER", "postgres"),
        };
        let port = match t.get("port") {
            Some(v) => self.migrations_port(v, &field("port"))?,
            None => DEFAULT_PORT,
        };
        let lock_budget = match t.get("lock_budget") {
            Some(v) => self.duration(v, &field("lock_budget"))?,
            None => DEFAULT_LOCK_BUDGET,
        };
        let round_trip = match t.get("round_trip") {
            Some(v) => self.boolean(v, &field("round_trip"))?,
            None => true,
        };
        let job = match t.get("job") {
            Some(v) => Some(self.migrations_job(v, services, &service_name)?),
            None => None,
        };
        Some(Migrations { service: service_name, dir, allow, database, user, port, lock_budget, round_trip, job, pending, sql })
    }

    /// `pending`, and `sql` or `sql_dir`: only with `job`; the SQL sources only without `dir`
    /// (whose files are linted already), and one of them.
    #[allow(clippy::type_complexity)]
    fn command_form(&mut self, t: &DeTable<'_>, service: &str) -> Option<(Option<Vec<String>>, Option<MigrationSql>)> {
        let field = |key: &str| format!("`migrations.{service}.{key}`");
        let mut ok = true;
        for key in JOB_ONLY_KEYS {
            let Some((k, _)) = t.get_key_value(*key) else { continue };
            if t.get("job").is_none() {
                self.diags.push(Diagnostic::new(k.span(), format!("{} needs `job`", field(key))).help(format!(
                    "`{key}` belongs to the command form: name the job service that applies the migrations, e.g. job = \"migrate\""
                )));
                ok = false;
            } else if *key != "pending" && t.get("dir").is_some() {
                self.diags.push(
                    Diagnostic::new(k.span(), format!("{} and `dir` cannot be used together", field(key)))
                        .help("the .up.sql files of `dir` are linted already; keep `dir`, or remove it when the migrations live inside the job's image"),
                );
                ok = false;
            }
        }
        if let (Some(_), Some((k, _))) = (t.get("sql"), t.get_key_value("sql_dir")) {
            self.diags.push(
                Diagnostic::new(k.span(), format!("{} and {} cannot be used together", field("sql_dir"), field("sql")))
                    .help("keep one source of the SQL to lint: a directory of .sql files, or a command that prints the pending SQL"),
            );
            ok = false;
        }
        let pending = match t.get("pending") {
            Some(v) => Some(self.command(v, &field("pending"))?),
            None => None,
        };
        let sql = match (t.get("sql"), t.get("sql_dir")) {
            (Some(v), _) => Some(MigrationSql::Command(self.command(v, &field("sql"))?)),
            (None, Some(v)) => Some(MigrationSql::Dir(self.existing_dir(v, &field("sql_dir"), service)?)),
            (None, None) => None,
        };
        ok.then_some((pending, sql))
    }

    /// `dir`, resolved against the manifest directory; it must exist.
    fn migrations_dir(&mut self, body: &Value<'_>, t: &DeTable<'_>, service: &str) -> Option<PathBuf> {
        let Some(dv) = t.get("dir") else {
            self.diags.push(
                Diagnostic::new(body.span(), format!("missing `migrations.{service}.dir`")).help(
                    "add dir = \"migrations\" (NNN_name.up.sql / NNN_name.down.sql files), or job = \"<job service>\" when your migration tool applies migrations that live inside its image",
                ),
            );
            return None;
        };
        self.existing_dir(dv, &format!("`migrations.{service}.dir`"), service)
    }

    /// A directory path, resolved against the manifest directory; it must exist.
    fn existing_dir(&mut self, dv: &Value<'_>, what: &str, service: &str) -> Option<PathBuf> {
        let rel = self.plain_string(dv, what)?;
        let dir = self.dir.join(&rel);
        if !(self.dir_exists)(&dir) {
            let noun = if what.ends_with(".sql_dir`") { "sql_dir" } else { "migrations dir" };
            self.diags.push(
                Diagnostic::new(dv.span(), format!("{noun} `{rel}` of `{service}` is not a directory"))
                    .help("paths are relative to the directory of stack.toml"),
            );
            return None;
        }
        Some(dir)
    }

    /// The port PostgreSQL listens on inside the container.
    fn migrations_port(&mut self, v: &Value<'_>, what: &str) -> Option<u16> {
        let port = integer(v.get_ref()).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
        if port.is_none() {
            self.diags.push(
                Diagnostic::new(v.span(), format!("{what} must be a port number (1-65535)"))
                    .help("the port PostgreSQL listens on inside the container, e.g. port = 5432"),
            );
        }
        port
    }

    /// `job`: the command form names a job service that depends on the database.
    fn migrations_job(&mut self, v: &Value<'_>, services: &[Service], service: &str) -> Option<String> {
        let j = self.plain_string(v, &format!("`migrations.{service}.job`"))?;
        match services.iter().find(|s| s.name == j) {
            Some(s) if s.job && s.depends_on.iter().any(|d| d == service) => Some(j),
            Some(_) => {
                self.diags.push(Diagnostic::new(v.span(), format!("`{j}` cannot apply the migrations of `{service}`")).help(format!(
                    "the command form names a job service (job = true) with depends_on = [\"{service}\"] that runs your migration tool"
                )));
                None
            }
            None => {
                let names: Vec<&str> = services.iter().filter(|s| s.job).map(|s| s.name.as_str()).collect();
                let help = match did_you_mean(&j, &names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "name the job service that runs your migration tool (sqlx, diesel, Flyway, ...)".to_string(),
                };
                self.diags.push(Diagnostic::new(v.span(), format!("unknown job `{j}`")).help(help));
                None
            }
        }
    }
}
