//! Native migrations inside `up`: once the database's probe has passed, check that applied
//! migrations still match their files, then apply the pending `.up.sql` files in order.

use super::{Orchestrator, Phase};
use crate::data;
use crate::docker::ContainerEngine;
use crate::error::Error;
use crate::manifest::{Manifest, Migrations};
use crate::migrations::{self, pg};

/// Why a database's migrations were not applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Finding, connecting, or applying failed (`migrations` names the file and line).
    #[error(transparent)]
    Migrations(#[from] migrations::MigrationError),
    #[error("`{service}` has no address on {network}")]
    NoAddress { service: String, network: String },
    /// Applied migrations whose files changed or disappeared, one line each.
    #[error("migration drift:\n{}\n  (`stagectl rebuild` starts the database from scratch)", .drifted.join("\n"))]
    Drift { drifted: Vec<String> },
    #[error(transparent)]
    Docker(#[from] Error),
}

impl<E: ContainerEngine + ?Sized> Orchestrator<E> {
    /// Applies the pending `.up.sql` files of a native `[migrations.<service>]`, after checking
    /// that the applied ones still match their files. Returns the applied names with ms each.
    pub(super) async fn apply_migrations(
        &self,
        manifest: &Manifest,
        m: &Migrations,
        id: &str,
        network: &str,
    ) -> Result<Vec<(String, f64)>, MigrationError> {
        let name = m.service.as_str();
        // The native form always has a directory; migrations inside an image are a job's.
        let Some(dir_path) = &m.dir else { return Ok(vec![]) };
        let dir = data::display(&manifest.dir, dir_path);
        // Announced at once: the probe has passed, and the time from here is migration work.
        self.reporter.phase(name, Phase::Migrating, &format!("checking {dir}"));
        let files = migrations::discover(dir_path)?;
        let status = self.docker.container_status(id, network).await?;
        let host = status.ip.ok_or_else(|| MigrationError::NoAddress { service: name.to_string(), network: network.to_string() })?;
        let password = manifest.service(name).and_then(|s| s.env.get("POSTGRES_PASSWORD")).map(|v| v.value.clone());
        let target = pg::Target { host, port: m.port, user: m.user.clone(), database: m.database.clone(), password };
        let mut client = pg::connect(&target).await?;
        let applied = pg::applied(&client).await?;
        let drifted = migrations::drift(&dir, &files, &applied);
        if !drifted.is_empty() {
            return Err(MigrationError::Drift { drifted });
        }
        let todo = migrations::pending(&files, &applied);
        if todo.is_empty() {
            return Ok(vec![]);
        }
        self.reporter.phase(name, Phase::Migrating, &format!("{} pending", todo.len()));
        let mut out = Vec::new();
        for f in todo {
            let ms = pg::apply(&mut client, f, &format!("{dir}/{}.up.sql", f.name)).await?;
            self.reporter.phase(name, Phase::Migrating, &format!("{} applied in {ms:.0} ms", f.name));
            out.push((f.name.clone(), ms));
        }
        Ok(out)
    }
}
