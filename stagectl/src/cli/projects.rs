//! `stagectl ls` (every stack on the host) and `stagectl gc` (tear down the idle ones).

use std::sync::Arc;

use super::output::{json, out, Console};
use super::{connect, human_duration, operate, print_table, Cli};
use crate::docker::ContainerEngine;
use crate::error::{exit, Error, Result};
use crate::history::History;
use crate::ops::projects::{self, ProjectRow};
use crate::ops::Operation;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn rows() -> Result<Vec<ProjectRow>> {
    let containers = connect().await?.list_all_containers().await?;
    let history = History::open(&History::default_path()).ok();
    Ok(projects::projects(&containers, &projects::last_runs(history.as_ref()), now()))
}

pub(super) async fn ls(cli: &Cli) -> Result<i32> {
    let rows = rows().await?;
    if cli.json {
        json(&rows);
        return Ok(exit::OK);
    }
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.project.clone(),
                if r.manifest.is_empty() { "-".into() } else { r.manifest.clone() },
                format!("{}/{}", r.running, r.services),
                r.state.clone(),
                human_duration(r.age_seconds as u64),
                r.last_run
                    .as_ref()
                    .map(|l| format!("{} {} ({} ago)", l.operation, l.status, human_duration(r.idle_seconds as u64)))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["PROJECT", "MANIFEST", "RUNNING", "STATE", "AGE", "LAST RUN"], &table);
    Ok(exit::OK)
}

/// `gc`: `down --volumes` of every project idle for `--idle` (default: the manifest's
/// `schedule.idle_ttl`) — the manifest's projects, or with `--all-manifests` every stack.
pub(super) async fn gc(cli: &Cli, console: Arc<Console>, idle: Option<&str>, all_manifests: bool, dry_run: bool) -> Result<i32> {
    let manifest = match (all_manifests, idle) {
        (true, Some(_)) => None,
        _ => Some(super::load(cli)?),
    };
    let ttl = match idle {
        Some(text) => crate::manifest::parse_duration(text)
            .map_err(|_| Error::Usage(format!("--idle `{text}` is not a duration; write e.g. 30m, 4h or 2d")))?,
        None => manifest.as_ref().and_then(|m| m.schedule.idle_ttl).ok_or_else(|| {
            Error::Usage("no idle time: pass --idle DURATION (e.g. --idle 4h) or set `idle_ttl` in [schedule]".to_string())
        })?,
    };
    let file = manifest.as_ref().filter(|_| !all_manifests).map(|m| m.file.display().to_string());
    let rows = rows().await?;
    let idle = projects::idle(&rows, ttl.as_secs().min(i64::MAX as u64) as i64, file.as_deref(), &|_| false);
    if idle.is_empty() {
        out(&format!("no project idle for {} or longer", crate::manifest::format_duration(ttl)));
        return Ok(exit::OK);
    }
    let mut code = exit::OK;
    for project in idle {
        if dry_run {
            out(&format!("would remove `{project}` (idle)"));
            continue;
        }
        let c = operate(cli, console.clone(), Operation::Down { volumes: true }, Some(project), vec![]).await?;
        code = code.max(c);
    }
    Ok(code)
}
