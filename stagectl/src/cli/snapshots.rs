//! `snapshots export FILE`, `snapshots import FILE` (the work is `orchestrator::snapshots`) and
//! `snapshots push REGISTRY` (`orchestrator::registry`).

use std::path::Path;

use super::output::{json, out, Console};
use super::{load, Cli, SnapshotsCommand};
use crate::docker::ContainerEngine;
use crate::error::Result;
use crate::orchestrator::registry;
use crate::orchestrator::snapshots::{self, TransferReport};

fn print(cli: &Cli, verb: &str, report: &TransferReport) {
    if cli.json {
        json(report);
        return;
    }
    for note in &report.notes {
        out(&format!("note: {note}"));
    }
    for s in &report.snapshots {
        out(&format!(
            "{verb} {} (stack {}, service {}, key {}, {})",
            s.reference,
            s.stack,
            s.service,
            &s.key[..s.key.len().min(12)],
            s.how
        ));
    }
    out(&format!(
        "{} snapshot(s), {} in {:.1}s: {}",
        report.snapshots.len(),
        indicatif::HumanBytes(report.bytes),
        report.seconds,
        report.file.display()
    ));
}

/// What can be refused before the engine is asked: a compressed export, an import archive
/// that is missing or not a snapshot archive.
pub fn check_usage(cmd: &SnapshotsCommand) -> Result<()> {
    match cmd {
        SnapshotsCommand::Export { file, .. } => snapshots::check_export_path(file)?,
        SnapshotsCommand::Import { file } => {
            snapshots::archive_tags(file)?;
        }
        SnapshotsCommand::Push { registry, .. } => registry::check_registry(registry)?,
        _ => {}
    }
    Ok(())
}

pub async fn export<E: ContainerEngine + ?Sized>(cli: &Cli, docker: &E, file: &Path, all: bool) -> Result<()> {
    let manifest = load(cli)?;
    let report = snapshots::export(docker, &manifest, all, file).await?;
    print(cli, "exported", &report);
    Ok(())
}

/// Needs no manifest: the archive's images carry their stack, service and key.
pub async fn import<E: ContainerEngine + ?Sized>(cli: &Cli, docker: &E, file: &Path) -> Result<()> {
    let report = snapshots::import(docker, file).await?;
    print(cli, "imported", &report);
    Ok(())
}

/// Progress per image on the console (live, plain lines, or JSON events), then the summary.
pub async fn push<E: ContainerEngine + ?Sized>(cli: &Cli, console: &Console, docker: &E, registry: &str, all: bool) -> Result<()> {
    let manifest = load(cli)?;
    let report = registry::push(docker, &manifest, registry, all, console).await?;
    console.finish();
    if cli.json {
        json(&report);
        return Ok(());
    }
    for note in &report.notes {
        out(&format!("note: {note}"));
    }
    for p in &report.images {
        out(&format!("pushed {} (service {}, {} {}, {:.1}s)", p.reference, p.service, p.kind, p.how, p.seconds));
    }
    out(&format!("{} image(s) pushed to {} in {:.1}s", report.images.len(), report.registry, report.seconds));
    Ok(())
}
