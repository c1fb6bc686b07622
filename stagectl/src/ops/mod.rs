//! Operations on a stack — up, down, rebuild, check, verify — as the units of work that the CLI
//! and the daemon both run: one at a time per stack (`lock`), each recorded in the run history
//! with its steps, check results and log (`run`).

mod lock;
pub mod projects;
mod run;

use serde::{Deserialize, Serialize};

use crate::checks::{CheckOutcome, CheckResult};
use crate::docker::ContainerEngine;
use crate::manifest::Manifest;
use crate::orchestrator::{DownReport, LifecycleReport, Orchestrator, UpReport};
pub use lock::{LockError, StackLock};
pub use run::{check_line, record, run_recorded, summary, Recording, RecordingReporter};

#[cfg(test)]
mod tests;

/// Which checks a check operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSet {
    All,
    Smoke,
    Migrations,
}

impl CheckSet {
    pub const ALL: [CheckSet; 3] = [CheckSet::All, CheckSet::Smoke, CheckSet::Migrations];

    /// The name on the command line and in the API (`/api/v1/check?what=<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckSet::All => "all",
            CheckSet::Smoke => "smoke",
            CheckSet::Migrations => "migrations",
        }
    }

    pub fn parse(name: &str) -> Option<CheckSet> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Up,
    Down {
        volumes: bool,
    },
    Rebuild,
    Check(CheckSet),
    Verify,
    /// `up SERVICE...`: up the services of the manifest given (a `plan::subset`), leaving the
    /// stack's other containers alone.
    UpOnly,
    /// Stop the containers of the manifest's services (kept).
    Stop,
    /// Restart these services and wait until they are ready again; the manifest given holds
    /// them and what they need (`plan::with_dependencies`), as a data service is recreated
    /// through `up` (its fixtures may live in memory only). The names live as long as the
    /// process (the CLI leaks its one list), which keeps `Operation` a plain `Copy` value.
    Restart {
        services: &'static [String],
    },
    /// `deploy --swarm`: the stack as Docker Swarm services (`orchestrator::swarm`), replacing
    /// an earlier deployment of the project. `up` and `rebuild` of `daemon --swarm`.
    SwarmDeploy(SwarmTarget),
    /// `verify` of `daemon --swarm`: a Swarm deploy, then every check.
    SwarmVerify(SwarmTarget),
}

/// Where and how a Swarm deploy puts the stack (`--publish`, `--registry`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SwarmTarget {
    /// Ports published on the node running the task (`--publish host`), not through Swarm's
    /// ingress routing mesh.
    pub publish_on_node: bool,
    /// `--registry`: images only this engine has run from there (`snapshots push`). The one
    /// name lives as long as the process, which keeps `Operation` a plain `Copy` value.
    pub registry: Option<&'static str>,
}

impl Operation {
    /// The name in the run history and the API path (`/api/v1/<name>`).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Up => "up",
            Operation::Down { .. } => "down",
            Operation::Rebuild => "rebuild",
            Operation::Check(_) => "check",
            Operation::Verify => "verify",
            Operation::UpOnly => "up",
            Operation::Stop => "stop",
            Operation::Restart { .. } => "restart",
            Operation::SwarmDeploy(_) => "deploy",
            Operation::SwarmVerify(_) => "verify",
        }
    }

    /// What this operation is on a stack that runs on Docker Swarm (`daemon --swarm`): `up` and
    /// `rebuild` become a deploy (which replaces an earlier one whole), `verify` a deploy plus
    /// every check; `down` (which removes Swarm services first) and `check` (which reaches the
    /// tasks' containers on this node) stay as they are. The operations on single containers
    /// have no Swarm form: they are refused rather than run on the tasks' containers, whose
    /// stop Swarm would undo and whose replacement it would not know of.
    pub fn on_swarm(self, target: SwarmTarget) -> crate::error::Result<Operation> {
        let refuse =
            |why: &str| Err(crate::error::Error::Usage(format!("`{}` does not work on a stack on Docker Swarm: {why}", self.cli_name())));
        match self {
            Operation::Up | Operation::Rebuild => Ok(Operation::SwarmDeploy(target)),
            Operation::Verify => Ok(Operation::SwarmVerify(target)),
            Operation::Down { .. } | Operation::Check(_) | Operation::SwarmDeploy(_) | Operation::SwarmVerify(_) => Ok(self),
            Operation::UpOnly => refuse("a deploy replaces the whole stack; run `up` without service names"),
            Operation::Stop => refuse("Swarm would start a stopped task again; `down` removes the stack"),
            Operation::Restart { .. } => refuse("a task restarts as a new container only through a deploy; run `rebuild`"),
        }
    }

    /// The command a person typed for this operation.
    fn cli_name(&self) -> &'static str {
        match self {
            Operation::UpOnly => "up SERVICE...",
            other => other.name(),
        }
    }
}

/// What an operation produced.
#[derive(Debug)]
pub enum OpOutcome {
    /// `up` and `rebuild`.
    Up(UpReport),
    Down(DownReport),
    Checks(Vec<CheckResult>),
    /// The checks ran only if the stack came up; otherwise the list is empty.
    Verify {
        up: UpReport,
        checks: Vec<CheckResult>,
    },
    /// `stop` and `restart`.
    Lifecycle(LifecycleReport),
}

fn all_passed(checks: &[CheckResult]) -> bool {
    checks.iter().all(|c| c.outcome == CheckOutcome::Passed)
}

impl OpOutcome {
    pub fn ok(&self) -> bool {
        match self {
            OpOutcome::Up(up) => up.ok,
            OpOutcome::Down(_) => true,
            OpOutcome::Checks(checks) => all_passed(checks),
            OpOutcome::Verify { up, checks } => up.ok && all_passed(checks),
            OpOutcome::Lifecycle(report) => report.ok,
        }
    }

    /// The stack's up report, for the operations that bring it up.
    pub fn up_report(&self) -> Option<&UpReport> {
        match self {
            OpOutcome::Up(up) | OpOutcome::Verify { up, .. } => Some(up),
            OpOutcome::Down(_) | OpOutcome::Checks(_) | OpOutcome::Lifecycle(_) => None,
        }
    }

    pub fn checks(&self) -> &[CheckResult] {
        match self {
            OpOutcome::Checks(checks) | OpOutcome::Verify { checks, .. } => checks,
            OpOutcome::Up(_) | OpOutcome::Down(_) | OpOutcome::Lifecycle(_) => &[],
        }
    }
}

/// Runs `op`. `manifest` may be `None` only for `down` (by stack name).
pub async fn execute<E: ContainerEngine + ?Sized>(
    orchestrator: &Orchestrator<E>,
    stack: &str,
    manifest: Option<&Manifest>,
    op: Operation,
    on_check: &(dyn Fn(&CheckResult) + Send + Sync),
) -> crate::error::Result<OpOutcome> {
    let need = || manifest.ok_or_else(|| crate::error::Error::Usage(format!("`{}` needs the manifest", op.name())));
    Ok(match op {
        Operation::Down { volumes } => OpOutcome::Down(orchestrator.down(stack, volumes).await?),
        Operation::Up => OpOutcome::Up(orchestrator.up(need()?).await?),
        Operation::UpOnly => OpOutcome::Up(orchestrator.up_only(need()?).await?),
        Operation::SwarmDeploy(target) => OpOutcome::Up(deploy_swarm(orchestrator, need()?, target).await?),
        Operation::Stop => OpOutcome::Lifecycle(orchestrator.stop(need()?).await?),
        Operation::Restart { services } => OpOutcome::Lifecycle(orchestrator.restart(need()?, services).await?),
        Operation::Rebuild => OpOutcome::Up(orchestrator.rebuild(need()?).await?),
        Operation::Verify | Operation::SwarmVerify(_) => {
            let m = need()?;
            let up = match op {
                Operation::SwarmVerify(target) => deploy_swarm(orchestrator, m, target).await?,
                _ => orchestrator.rebuild(m).await?,
            };
            let checks = if up.ok { run_checks(orchestrator.docker.as_ref(), m, CheckSet::All, on_check).await? } else { vec![] };
            OpOutcome::Verify { up, checks }
        }
        Operation::Check(set) => OpOutcome::Checks(run_checks(orchestrator.docker.as_ref(), need()?, set, on_check).await?),
    })
}

async fn deploy_swarm<E: ContainerEngine + ?Sized>(
    orchestrator: &Orchestrator<E>,
    m: &Manifest,
    target: SwarmTarget,
) -> crate::error::Result<UpReport> {
    orchestrator.deploy_swarm(m, target.publish_on_node, target.registry).await
}

pub async fn run_checks<E: ContainerEngine + ?Sized>(
    docker: &E,
    m: &Manifest,
    set: CheckSet,
    on_check: &(dyn Fn(&CheckResult) + Send + Sync),
) -> crate::error::Result<Vec<CheckResult>> {
    let mut results = Vec::new();
    if set != CheckSet::Migrations {
        results.extend(crate::checks::run_all(docker, m, on_check).await?);
    }
    if set != CheckSet::Smoke {
        let job_images = build_migration_jobs(docker, m, &mut |r| {
            on_check(&r);
            results.push(r);
        })
        .await;
        results.extend(crate::migrations::check::run(docker, m, &job_images, on_check).await?);
    }
    Ok(results)
}

/// Builds the image of each migration job that has a `build` (cached when its context is
/// unchanged), so `check migrations` runs the migrations the context holds now, not those of
/// the last `up`. Returns job → image id; a failed build is a failed check result, and the
/// job then runs the image it ran last.
async fn build_migration_jobs<E: ContainerEngine + ?Sized>(
    docker: &E,
    m: &Manifest,
    emit: &mut dyn FnMut(CheckResult),
) -> std::collections::BTreeMap<String, String> {
    use crate::orchestrator::images;
    let builds = images::Builds::new(m);
    let redactor = crate::secrets::Redactor::for_manifest(m);
    let mut out = std::collections::BTreeMap::new();
    for job in m.migrations.iter().filter_map(|x| x.job.as_deref()) {
        let Some(service) = m.service(job).filter(|s| s.build.is_some()) else { continue };
        if out.contains_key(job) {
            continue;
        }
        let started = std::time::Instant::now();
        let name = format!("image (job `{job}`)");
        match images::ensure_image(docker, m, service, &builds, &crate::orchestrator::Silent, &redactor).await {
            Ok(image) => {
                let how = if image.how == "cached" { "cached: build context unchanged" } else { image.how };
                emit(CheckResult::new(name, "migration", true, started, format!("{} ({how})", image.reference)));
                out.insert(job.to_string(), image.id);
            }
            Err(e) => emit(CheckResult::new(name, "migration", false, started, redactor.apply(&e.to_string()))),
        }
    }
    out
}
