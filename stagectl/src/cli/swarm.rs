//! `deploy --swarm`: the stack as Docker Swarm services (see `orchestrator::swarm`). It runs
//! as a recorded operation like `up` (history, lock, the same report); `status`, `check`,
//! `logs` and `down` then work on the deployed stack as they do on one node.

use std::sync::Arc;

use super::output::Console;
use super::{load, operate_on, Cli};
use crate::error::{Error, Result};
use crate::ops::Operation;

/// Where `deploy --swarm` publishes ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Publish {
    Ingress,
    Host,
}

pub async fn deploy(cli: &Cli, console: Arc<Console>, swarm: bool, publish: Publish, registry: Option<&str>) -> Result<i32> {
    if !swarm {
        return Err(Error::Usage(
            "`deploy` needs an engine: `stagectl deploy --swarm` (Docker Swarm); `stagectl up` runs the stack on this engine".into(),
        ));
    }
    if let Some(r) = registry {
        crate::orchestrator::registry::check_registry(r)?;
    }
    let m = load(cli)?;
    // `Operation` is a plain `Copy` value: the one registry name lives as long as the process.
    let registry: Option<&'static str> = registry.map(|r| &*Box::leak(r.trim_end_matches('/').to_string().into_boxed_str()));
    let op = Operation::SwarmDeploy { publish_on_node: publish == Publish::Host, registry };
    operate_on(cli, console, op, None, vec![], Some(m)).await
}
