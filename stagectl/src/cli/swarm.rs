//! `deploy --swarm`: the stack as Docker Swarm services (see `orchestrator::swarm`). It runs
//! as a recorded operation like `up` (history, lock, the same report); `status`, `check`,
//! `logs` and `down` then work on the deployed stack as they do on one node. `daemon --swarm`
//! takes the same options ([`SwarmArgs`]).

use std::sync::Arc;

use super::output::Console;
use super::{load, operate_on, Cli};
use crate::error::{Error, Result};
use crate::ops::{Operation, SwarmTarget};

/// Where `deploy --swarm` publishes ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Publish {
    Ingress,
    Host,
}

/// `daemon --swarm [--publish ingress|host] [--registry R]`.
#[derive(Debug, clap::Args)]
pub struct SwarmArgs {
    /// Run the daemon's `up`, `rebuild` (API, watcher, cron) and `verify` as `deploy --swarm`
    /// on the Docker Swarm this engine manages.
    #[arg(long)]
    pub swarm: bool,
    /// With --swarm: where published ports go, as for `deploy --swarm`.
    #[arg(long, value_enum, default_value = "ingress", requires = "swarm")]
    pub publish: Publish,
    /// With --swarm: services whose image exists only here run it from this registry.
    #[arg(long, value_name = "REGISTRY", requires = "swarm")]
    pub registry: Option<String>,
}

impl SwarmArgs {
    /// The daemon's Swarm target, `None` without `--swarm`.
    pub fn target(&self) -> Result<Option<SwarmTarget>> {
        self.swarm.then(|| target(self.publish, self.registry.as_deref())).transpose()
    }
}

/// `--publish` and `--registry` as a [`SwarmTarget`]; the registry name is checked.
fn target(publish: Publish, registry: Option<&str>) -> Result<SwarmTarget> {
    if let Some(r) = registry {
        crate::orchestrator::registry::check_registry(r)?;
    }
    // `Operation` is a plain `Copy` value: the one registry name lives as long as the process.
    let registry: Option<&'static str> = registry.map(|r| &*Box::leak(r.trim_end_matches('/').to_string().into_boxed_str()));
    Ok(SwarmTarget { publish_on_node: publish == Publish::Host, registry })
}

pub async fn deploy(cli: &Cli, console: Arc<Console>, swarm: bool, publish: Publish, registry: Option<&str>) -> Result<i32> {
    if !swarm {
        return Err(Error::Usage(
            "`deploy` needs an engine: `stagectl deploy --swarm` (Docker Swarm); `stagectl up` runs the stack on this engine".into(),
        ));
    }
    let target = target(publish, registry)?;
    let m = load(cli)?;
    operate_on(cli, console, Operation::SwarmDeploy(target), None, vec![], Some(m)).await
}
