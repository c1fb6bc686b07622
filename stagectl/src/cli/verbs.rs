//! The verbs compose users reach for: `up SERVICE...`, `restart`, `stop`, `config`, `diff`.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::output::{json, out, Console, Mode};
use super::{config as render, connect, load, operate_on, Cli};
use crate::error::{exit, Error, Result};
use crate::manifest::Manifest;
use crate::ops::Operation;
use crate::orchestrator::{LifecycleReport, Orchestrator};
use crate::plan::{self, drift::DriftState};

fn usage(e: plan::UnknownService) -> Error {
    Error::Usage(e.to_string())
}

/// `up SERVICE...`: the named services, their dependencies and the jobs their fixtures wait
/// for; the stack's other containers are left alone.
pub async fn up_services(cli: &Cli, console: Arc<Console>, names: &[String]) -> Result<i32> {
    let m = load(cli)?;
    let keep = plan::with_dependencies(&m, names).map_err(usage)?;
    let extra: Vec<&str> = keep.iter().filter(|s| !names.contains(s)).map(String::as_str).collect();
    if !extra.is_empty() {
        console.note(&format!("also bringing up what {} need(s): {}", names.join(", "), extra.join(", ")));
    }
    let sub = plan::subset(&m, &keep);
    operate_on(cli, console, Operation::UpOnly, None, vec![], Some(sub)).await
}

/// The named services, or every long-running one (`restart`) / every one (`stop`).
fn selection(m: &Manifest, names: &[String], long_running_only: bool) -> Result<BTreeSet<String>> {
    plan::check_names(m, names).map_err(usage)?;
    if long_running_only {
        if let Some(job) = names.iter().find(|n| m.service(n).is_some_and(|s| s.job)) {
            return Err(Error::Usage(format!(
                "`{job}` is a job (it runs to completion); `stagectl up {job}` runs it again when its inputs changed"
            )));
        }
    }
    Ok(m.services
        .iter()
        .filter(|s| if names.is_empty() { !(long_running_only && s.job) } else { names.contains(&s.name) })
        .map(|s| s.name.clone())
        .collect())
}

/// `restart`: the manifest handed on holds the services and what they need, since a data
/// service is recreated through `up`.
pub async fn restart(cli: &Cli, console: Arc<Console>, names: &[String]) -> Result<i32> {
    let m = load(cli)?;
    let set = selection(&m, names, true)?;
    // In manifest order.
    let selected: Vec<String> = m.services.iter().filter(|s| set.contains(&s.name)).map(|s| s.name.clone()).collect();
    let closed = plan::subset(&m, &plan::with_dependencies(&m, &selected).map_err(usage)?);
    // One small list for the life of the process keeps `Operation` a `Copy` value.
    let services: &'static [String] = Box::leak(selected.into_boxed_slice());
    operate_on(cli, console, Operation::Restart { services }, None, vec![], Some(closed)).await
}

pub async fn stop(cli: &Cli, console: Arc<Console>, names: &[String]) -> Result<i32> {
    let m = load(cli)?;
    let keep = selection(&m, names, false)?;
    operate_on(cli, console, Operation::Stop, None, vec![], Some(plan::subset(&m, &keep))).await
}

pub fn print_lifecycle(report: &LifecycleReport, mode: Mode) -> i32 {
    if mode == Mode::Json {
        json(report);
    } else {
        for r in &report.services {
            out(&format!("{}: {}{}", r.service, r.outcome, r.message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()));
        }
        let failed = report.services.iter().filter(|r| r.outcome == "failed").count();
        let verdict = if report.ok { "done".to_string() } else { format!("FAILED ({failed} failed)") };
        out(&format!("{} of stack `{}`: {verdict} in {:.2}s", report.verb, report.stack, report.seconds));
    }
    if report.ok {
        exit::OK
    } else {
        exit::STACK_FAILED
    }
}

/// `config`: the resolved manifest, secrets masked.
pub fn config(cli: &Cli) -> Result<i32> {
    let m = load(cli)?;
    if cli.json {
        out(&render::json_text(&m));
    } else {
        super::output::raw(render::toml_text(&m).as_bytes());
    }
    Ok(exit::OK)
}

/// `diff`: exit 0 when the running stack matches the manifest, 1 when it drifted.
pub async fn diff(cli: &Cli, console: Arc<Console>) -> Result<i32> {
    let m = load(cli)?;
    let engine = Orchestrator::new(connect().await?, console);
    // Like `diff`, trouble is 2, so that 1 always means drift (Docker unreachable stays 3).
    let report = engine.drift(&m).await.map_err(|e| match e {
        Error::DockerUnreachable { .. } | Error::Cancelled(_) | Error::Usage(_) => e,
        other => Error::Usage(other.to_string()),
    })?;
    let redactor = crate::secrets::Redactor::for_manifest(&m);
    if cli.json {
        out(&redactor.apply(&serde_json::to_string(&report).unwrap_or_default()));
    } else {
        let width = report.services.iter().map(|s| s.service.len()).max().unwrap_or(0);
        for s in &report.services {
            let state = match s.state {
                DriftState::Unchanged => "unchanged",
                DriftState::Create => "would be created",
                DriftState::Start => "would be started (stopped)",
                DriftState::Recreate => "would be recreated",
                DriftState::Remove => "would be removed",
            };
            let reason = s.reason.as_ref().filter(|_| s.state != DriftState::Start).map(|r| format!(": {r}")).unwrap_or_default();
            out(&redactor.apply(&format!("{:<width$}  {state}{reason}", s.service)));
            for c in &s.changes {
                out(&redactor.apply(&format!("{:<width$}    {}: {}", "", c.field, c.detail)));
            }
        }
        out(&format!(
            "stack `{}`: {}",
            report.stack,
            match report.drifted {
                0 => "no drift".to_string(),
                1 => "1 service drifted".to_string(),
                n => format!("{n} services drifted"),
            }
        ));
    }
    Ok(if report.drifted == 0 { exit::OK } else { exit::STACK_FAILED })
}
