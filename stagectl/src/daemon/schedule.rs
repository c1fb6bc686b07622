//! The scheduler: cron rebuilds (`[schedule] rebuild`) and the idle teardown (`idle_ttl`).

use std::time::{Duration, Instant};

use super::State;
use crate::history::Trigger;
use crate::ops::Operation;

/// How often the other projects of the manifest are checked for idleness.
const SIBLINGS_EVERY: Duration = Duration::from_secs(60);

pub(super) fn schedule_loop(state: &State, schedule: &crate::manifest::Schedule) {
    let cron: Option<croner::Cron> = schedule.rebuild.as_ref().and_then(|c| c.parse().ok());
    let mut next = cron.as_ref().and_then(|c| c.find_next_occurrence(&chrono::Local::now(), false).ok());
    let mut siblings_checked = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(ttl) = schedule.idle_ttl.filter(|_| siblings_checked.elapsed() >= SIBLINGS_EVERY) {
            siblings_checked = Instant::now();
            reap_idle_siblings(state, ttl);
        }
        if let (Some(c), Some(at)) = (&cron, next) {
            if chrono::Local::now() >= at {
                let _ = state.submit(
                    Operation::Rebuild,
                    Trigger::Schedule,
                    &format!("cron `{}`", schedule.rebuild.as_deref().unwrap_or("")),
                    true,
                );
                next = c.find_next_occurrence(&chrono::Local::now(), false).ok();
            }
        }
        if let Some(ttl) = schedule.idle_ttl {
            let idle = state.last_activity.lock().unwrap().elapsed();
            let busy = {
                let q = state.queue.lock().unwrap();
                q.running.is_some() || !q.jobs.is_empty()
            };
            if idle >= ttl && !busy && stack_is_up(state) {
                let _ = state.submit(
                    Operation::Down { volumes: true },
                    Trigger::Schedule,
                    &format!("idle for {}s (idle_ttl)", idle.as_secs()),
                    true,
                );
                *state.last_activity.lock().unwrap() = Instant::now();
            }
        }
    }
}

fn stack_is_up(state: &State) -> bool {
    use crate::docker::ContainerEngine;
    state.rt.block_on(state.docker.list_containers(&state.stack)).map(|c| !c.is_empty()).unwrap_or(false)
}

/// `down --volumes` of this manifest's other projects (per-branch stacks) idle for `ttl`, each
/// under its own lock and recorded in the history like any scheduled run.
fn reap_idle_siblings(state: &State, ttl: Duration) {
    use crate::docker::ContainerEngine;
    use crate::ops::projects;
    let Ok(containers) = state.rt.block_on(state.docker.list_all_containers()) else { return };
    let rows = projects::projects(&containers, &projects::last_runs(Some(&state.history)), chrono::Utc::now().timestamp());
    let ttl_secs = ttl.as_secs().min(i64::MAX as u64) as i64;
    for project in projects::idle(&rows, ttl_secs, Some(&state.manifest_file), &|p| p == state.stack) {
        let recording = state.history.create_run(&project, "down", Trigger::Schedule).ok().map(|run| {
            let _ = state.history.set_detail(
                run,
                &format!("idle for {} or longer (idle_ttl of the daemon of `{}`)", crate::manifest::format_duration(ttl), state.stack),
            );
            crate::ops::Recording { history: state.history.clone(), run }
        });
        let docker = state.docker.clone();
        let run = crate::ops::run_recorded(
            async move { Ok(docker) },
            &project,
            None,
            Operation::Down { volumes: true },
            Trigger::Schedule,
            recording,
            std::sync::Arc::new(crate::orchestrator::Silent),
            std::future::pending(),
        );
        if let Err(e) = state.rt.block_on(run) {
            eprintln!("stagectl daemon: removing idle project `{project}` failed: {e}");
        }
    }
}
