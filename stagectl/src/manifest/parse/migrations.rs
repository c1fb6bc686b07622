//! `[migrations.SERVICE]`: the directory of migration files, the connection, the lock budget,
//! and for the command form the job that applies them.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeTable;

use super::cx::{env_or, integer, Cx, Key, Value};
use crate::manifest::diag::{did_you_mean, Diagnostic};
use crate::manifest::{Migrations, Service};

pub(super) const MIGRATIONS_KEYS: &[&str] = &["dir", "allow", "database", "user", "port", "lock_budget", "round_trip", "job"];
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
        let dir = self.migrations_dir(body, t, &service_name)?;
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
        Some(Migrations { service: service_name, dir, allow, database, user, port, lock_budget, round_trip, job })
    }

    /// `dir`, resolved against the manifest directory; it must exist.
    fn migrations_dir(&mut self, body: &Value<'_>, t: &DeTable<'_>, service: &str) -> Option<PathBuf> {
        let Some(dv) = t.get("dir") else {
            self.diags.push(
                Diagnostic::new(body.span(), format!("missing `migrations.{service}.dir`"))
                    .help("add dir = \"migrations\" (NNN_name.up.sql / NNN_name.down.sql files)"),
            );
            return None;
        };
        let rel = self.plain_string(dv, &format!("`migrations.{service}.dir`"))?;
        let dir = self.dir.join(&rel);
        if !(self.dir_exists)(&dir) {
            self.diags.push(
                Diagnostic::new(dv.span(), format!("migrations dir `{rel}` of `{service}` is not a directory"))
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
