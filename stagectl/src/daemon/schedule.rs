//! The scheduler: cron rebuilds (`[schedule] rebuild`) and the idle teardown (`idle_ttl`).

use std::time::{Duration, Instant};

use super::State;
use crate::history::Trigger;
use crate::ops::Operation;

pub(super) fn schedule_loop(state: &State, schedule: &crate::manifest::Schedule) {
    let cron: Option<croner::Cron> = schedule.rebuild.as_ref().and_then(|c| c.parse().ok());
    let mut next = cron.as_ref().and_then(|c| c.find_next_occurrence(&chrono::Local::now(), false).ok());
    loop {
        std::thread::sleep(Duration::from_millis(250));
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
