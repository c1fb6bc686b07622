//! The command line: argument parsing, dispatch, and the final output of each command.
//! Thin on purpose: the work happens in `engine`, the decisions in `plan`.

mod config;
pub mod daemon_client;
mod export;
pub mod output;
mod projects;
mod shell;
mod snapshots;
mod swarm;
mod verbs;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use futures_util::StreamExt;

use crate::docker::{BollardEngine, ContainerEngine};
use crate::error::{exit, Error, Result};
use crate::manifest::Manifest;
use crate::ops::{run_recorded, CheckSet, OpOutcome, Operation, Recording};
use crate::orchestrator::{Orchestrator, Outcome, UpReport};
use crate::plan;
use output::{json, out, Console, Mode};

#[derive(Debug, Parser)]
#[command(name = "stagectl", version, about = "Bring a staging stack up from stack.toml, check it, tear it down.")]
#[command(
    after_help = "Exit codes: 0 ok, 1 stack or check failed, 2 invalid manifest or usage, 3 Docker unreachable, 130 cancelled (Ctrl-C / SIGTERM)."
)]
pub struct Cli {
    /// The manifest (before the command: `stagectl -f other.toml up`).
    #[arg(short = 'f', long = "file", env = "STAGECTL_FILE", default_value = "stack.toml")]
    pub file: PathBuf,
    /// Run the manifest as this project: its own containers, network, volumes, lock, history
    /// and daemon, beside the manifest's other projects (fixture snapshots are shared).
    /// Default: the manifest's `[stack] name`.
    #[arg(short = 'p', long = "project-name", env = "STAGECTL_PROJECT", global = true, value_name = "NAME")]
    pub project: Option<String>,
    /// Also run the services of this profile (repeatable, or comma separated in
    /// STAGECTL_PROFILES; `*` for all). Services without `profiles` always run.
    #[arg(long = "profile", value_name = "NAME", env = "STAGECTL_PROFILES", value_delimiter = ',')]
    pub profiles: Vec<String>,
    /// Machine-readable output: JSON lines of events, then one JSON result.
    #[arg(long, global = true)]
    pub json: bool,
    /// Show build and pull output.
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Run here even when a `stagectl daemon` serves this stack (the per-stack lock still
    /// keeps the two from running at once).
    #[arg(long, global = true, env = "STAGECTL_LOCAL")]
    pub local: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest and report every problem; starts nothing.
    Validate,
    /// Build or pull images and start every service, each ready before its dependents start.
    /// With SERVICE names: only those and what they depend on; other services are left as
    /// they are.
    Up {
        /// Only these services (and their dependencies, and the jobs their fixtures wait for).
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Restart the containers of running services and wait until each is ready again
    /// (default: every long-running service).
    Restart {
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Stop services without removing them (default: all); `up` starts them again.
    Stop {
        #[arg(value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// The resolved manifest (variables interpolated, defaults applied) as TOML (JSON with
    /// --json); secret values are shown as `***`.
    Config,
    /// Compare the running stack with the manifest: which services would be created,
    /// recreated (and which fields changed) or removed. Exit 0: no drift, 1: drift, 2: trouble.
    Diff,
    /// Print a shell completion script (e.g. `stagectl completions bash > /etc/bash_completion.d/stagectl`).
    Completions {
        #[arg(value_enum)]
        shell: shell::Shell,
    },
    /// Print the man page (roff): `stagectl man > stagectl.1; man ./stagectl.1`.
    Man,
    /// Remove the stack's containers and network (and with --volumes its volumes).
    Down {
        /// Also remove the stack's named volumes (all data).
        #[arg(long, short = 'v')]
        volumes: bool,
        /// Take the stack name from here instead of the manifest (works with a broken manifest).
        #[arg(long)]
        stack: Option<String>,
    },
    /// `down --volumes` then `up`: a fresh environment.
    Rebuild,
    /// Deploy the stack to a distributed engine: `--swarm` makes each service a Docker Swarm
    /// service (the engine must be a swarm manager). `status`, `check`, `down` work on it.
    Deploy {
        /// Deploy to the Docker Swarm this engine manages.
        #[arg(long)]
        swarm: bool,
        /// Where published ports go: `ingress` (Swarm's routing mesh, every node) or `host`
        /// (the node running the task; for engines whose kernel lacks IPVS).
        #[arg(long, value_enum, default_value = "ingress")]
        publish: swarm::Publish,
        /// Services whose image exists only here (built) run it from this registry, where
        /// `snapshots push` put it, so every node can pull it.
        #[arg(long, value_name = "REGISTRY")]
        registry: Option<String>,
    },
    /// Services, state, readiness, ports, image, uptime.
    #[command(visible_alias = "ps")]
    Status,
    /// Run the checks of the manifest: smoke checks against the running stack, and the
    /// migration checks (lint, drift, apply on a copy of the fixture data with a lock probe,
    /// up/down/up round trip).
    Check {
        /// Which checks: all (default), smoke, or migrations.
        #[arg(value_enum, default_value = "all")]
        what: CheckArg,
        /// Only lint the migration files (needs no Docker and no running stack).
        #[arg(long)]
        lint_only: bool,
        /// Write a report: json:PATH, junit:PATH or markdown:PATH (repeatable).
        #[arg(long = "report", value_name = "FORMAT:PATH")]
        reports: Vec<String>,
    },
    /// `rebuild` then `check`: for pipelines; non-zero on any failure.
    Verify {
        /// Write a report: json:PATH, junit:PATH or markdown:PATH (repeatable).
        #[arg(long = "report", value_name = "FORMAT:PATH")]
        reports: Vec<String>,
    },
    /// Show service output.
    Logs {
        /// Only this service.
        service: Option<String>,
        /// Keep following new output.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines from the end of each log.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Fixture data tools.
    #[command(subcommand)]
    Fixtures(FixturesCommand),
    /// Fixture snapshots (images of loaded data services).
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
    /// Serve this stack: HTTP API, status page, metrics, file watching, schedules.
    Daemon(DaemonArgs),
    /// Export the stack for another engine (`export k8s`: Kubernetes documents).
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Convert a docker-compose.yml into a stack.toml; warnings name the compose file's lines.
    Import {
        /// The compose file.
        compose: PathBuf,
        /// Write the stack.toml here (default: stdout).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Stack name (default: the compose `name:`, else the compose file's directory).
        #[arg(long)]
        stack: Option<String>,
        /// Also import the services of this Compose profile (repeatable; `*` for all).
        #[arg(long = "profile", value_name = "PROFILE")]
        profiles: Vec<String>,
        /// Overwrite the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Every stack on this host: project, manifest, services running, state, age, last run.
    Ls,
    /// Print the JSON Schema of stack.toml (for editors: Taplo, Even Better TOML).
    Schema,
    /// Tear down (`down --volumes`) the projects idle for a while, e.g. forgotten branches:
    /// this manifest's projects, or every stack with --all-manifests.
    Gc {
        /// Idle time (e.g. 4h, 2d); default: `idle_ttl` in the manifest's [schedule].
        #[arg(long, value_name = "DURATION")]
        idle: Option<String>,
        /// Every stack on the host, whatever manifest it came from (needs --idle).
        #[arg(long, requires = "idle")]
        all_manifests: bool,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a command in a running service.
    Exec {
        service: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Address to listen on. Anything but loopback needs an explicit token.
    #[arg(long, default_value = "127.0.0.1:7780", env = "STAGECTL_LISTEN")]
    pub listen: String,
    /// File holding the bearer token (must not be readable by group or others). Without it,
    /// STAGECTL_TOKEN; without that, a token is generated into the state directory.
    #[arg(long, env = "STAGECTL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Do not watch the manifest, fixtures, migrations and build contexts.
    #[arg(long)]
    pub no_watch: bool,
    /// Finished runs kept per stack in the history.
    #[arg(long, default_value_t = 500)]
    pub keep_runs: usize,
    /// Finished runs older than this many days are pruned.
    #[arg(long, default_value_t = 30)]
    pub keep_days: u32,
    #[command(flatten)]
    pub swarm: swarm::SwarmArgs,
}

/// `stagectl check [WHAT]`: the command line's names for `ops::CheckSet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckArg {
    All,
    Smoke,
    Migrations,
}

impl From<CheckArg> for CheckSet {
    fn from(arg: CheckArg) -> CheckSet {
        match arg {
            CheckArg::All => CheckSet::All,
            CheckArg::Smoke => CheckSet::Smoke,
            CheckArg::Migrations => CheckSet::Migrations,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum FixturesCommand {
    /// Fail if a `sensitive` column of the running stack holds values that look unmasked.
    Scan,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// List snapshots, most recently used first.
    Ls,
    /// Evict this stack's least recently used snapshots beyond the budget.
    Prune {
        /// Budget (e.g. "2GB"); default: `stack.snapshot_budget` of the manifest (5GB if unset).
        #[arg(long)]
        budget: Option<String>,
        /// Remove all of the stack's snapshots.
        #[arg(long, conflicts_with = "budget")]
        all: bool,
        /// Apply to the snapshots of every stack on this machine, not just this manifest's.
        #[arg(long)]
        every_stack: bool,
    },
    /// Save the snapshots `up` would use now (one per data service) into FILE, a plain tar.
    Export {
        /// The archive to write (a `docker save` tar).
        file: std::path::PathBuf,
        /// Every snapshot of this stack instead.
        #[arg(long)]
        all: bool,
    },
    /// Load snapshots exported on another machine; a following `up` restores from them.
    Import {
        /// An archive written by `snapshots export`.
        file: std::path::PathBuf,
    },
    /// Push the snapshots `up` would use now and the stack's built images to a registry, for
    /// `deploy --swarm --registry` (every node pulls them from there).
    Push {
        /// `HOST:PORT[/PATH]`, e.g. `127.0.0.1:5000` or `registry.example:5000/team`.
        registry: String,
        /// Every snapshot of this stack instead of the current ones.
        #[arg(long)]
        all: bool,
    },
}

/// Runs the CLI and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let console = Arc::new(Console::new(Mode::detect(cli.json), cli.verbose));
    let result = dispatch(&cli, console.clone()).await;
    console.finish();
    match result {
        Ok(code) => code,
        Err(e) => {
            report_error(&e, cli.json);
            e.exit_code()
        }
    }
}

fn report_error(e: &Error, as_json: bool) {
    if as_json {
        json(&serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_code() }));
    }
    match e {
        Error::Manifest(_) => eprintln!("{e}"),
        _ => eprintln!("error: {e}"),
    }
}

async fn connect() -> Result<Arc<BollardEngine>> {
    Ok(Arc::new(BollardEngine::connect().await?))
}

fn load(cli: &Cli) -> Result<Manifest> {
    crate::load::load_with_profiles(&cli.file, cli.project.as_deref(), &cli.profiles)
}

async fn dispatch(cli: &Cli, console: Arc<Console>) -> Result<i32> {
    match &cli.command {
        Command::Validate => {
            let m = load(cli)?;
            if cli.json {
                json(&serde_json::json!({
                    "ok": true,
                    "stack": m.stack,
                    "services": m.services.iter().map(|s| &s.name).collect::<Vec<_>>(),
                    "not_selected": m.inactive,
                }));
            } else {
                let inactive = match m.inactive.as_slice() {
                    [] => String::new(),
                    names => format!("; not selected by profile: {}", names.join(", ")),
                };
                out(&format!(
                    "{}: ok (stack `{}`, {} service{}{inactive})",
                    cli.file.display(),
                    m.stack,
                    m.services.len(),
                    if m.services.len() == 1 { "" } else { "s" }
                ));
            }
            Ok(exit::OK)
        }
        Command::Up { services } if services.is_empty() => operate(cli, console, Operation::Up, None, vec![]).await,
        Command::Up { services } => verbs::up_services(cli, console, services).await,
        Command::Restart { services } => verbs::restart(cli, console, services).await,
        Command::Stop { services } => verbs::stop(cli, console, services).await,
        Command::Config => verbs::config(cli),
        Command::Diff => verbs::diff(cli, console).await,
        Command::Completions { shell } => {
            output::raw(&shell::completions(*shell));
            Ok(exit::OK)
        }
        Command::Man => {
            output::raw(&shell::man());
            Ok(exit::OK)
        }
        Command::Rebuild => operate(cli, console, Operation::Rebuild, None, vec![]).await,
        Command::Deploy { swarm, publish, registry } => swarm::deploy(cli, console, *swarm, *publish, registry.as_deref()).await,
        Command::Check { what, reports, lint_only } => {
            let targets = report_targets(reports)?;
            if *lint_only {
                let m = load(cli)?;
                let started = std::time::Instant::now();
                let results = crate::migrations::check::lint_migrations(&m)?;
                for r in &results {
                    note_check(&console, r);
                }
                return finish_checks(&m.stack, results, started, &targets, &console, cli.json);
            }
            operate(cli, console, Operation::Check((*what).into()), None, targets).await
        }
        Command::Verify { reports } => operate(cli, console, Operation::Verify, None, report_targets(reports)?).await,
        Command::Down { volumes, stack } => operate(cli, console, Operation::Down { volumes: *volumes }, stack.clone(), vec![]).await,
        Command::Daemon(args) => {
            let options = crate::daemon::Options {
                manifest_path: cli.file.clone(),
                project: cli.project.clone(),
                listen: args.listen.clone(),
                token_file: args.token_file.clone(),
                watch: !args.no_watch,
                keep_runs: args.keep_runs,
                keep_days: args.keep_days,
                swarm: args.swarm.target()?,
            };
            crate::daemon::run(&options).await
        }
        Command::Ls => projects::ls(cli).await,
        Command::Schema => {
            out(&serde_json::to_string_pretty(&crate::manifest::schema::json_schema()).unwrap_or_default());
            Ok(exit::OK)
        }
        Command::Gc { idle, all_manifests, dry_run } => projects::gc(cli, console, idle.as_deref(), *all_manifests, *dry_run).await,
        Command::Status => {
            let m = load(cli)?;
            let engine = Orchestrator::new(connect().await?, console.clone());
            let rows = engine.status(&m).await?;
            if cli.json {
                json(&rows);
            } else {
                let table: Vec<[String; 6]> = rows
                    .iter()
                    .map(|r| {
                        [
                            r.service.clone(),
                            if r.restarts > 0 { format!("{} (restarted {}×)", r.state, r.restarts) } else { r.state.clone() },
                            if r.ready { "yes".into() } else { "no".into() },
                            if r.ports.is_empty() { "-".into() } else { r.ports.join(",") },
                            r.image.clone(),
                            r.uptime_seconds.map(human_duration).unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print_table(&["SERVICE", "STATE", "READY", "PORTS", "IMAGE", "UPTIME"], &table);
            }
            let all_ready = rows.iter().all(|r| r.ready);
            Ok(if all_ready { exit::OK } else { exit::STACK_FAILED })
        }
        Command::Logs { service, follow, tail } => {
            let m = load(cli)?;
            if let Some(s) = service {
                if m.service(s).is_none() {
                    return Err(unknown_service(&m, s));
                }
            }
            let docker = connect().await?;
            let containers = docker.list_containers(&m.stack).await?;
            let selected: Vec<_> = containers.iter().filter(|c| service.as_ref().is_none_or(|s| &c.service == s)).collect();
            if selected.is_empty() {
                return Err(Error::StackFailed(format!(
                    "no containers for stack `{}`{}; run `stagectl up` first",
                    m.stack,
                    service.as_ref().map(|s| format!(" service `{s}`")).unwrap_or_default()
                )));
            }
            let redactor = crate::secrets::Redactor::for_manifest(&m);
            let prefix = selected.len() > 1;
            let width = selected.iter().map(|c| c.service.len()).max().unwrap_or(0);
            let streams = selected.iter().map(|c| {
                let name = c.service.clone();
                docker.stream_logs(&c.id, *follow, *tail).map(move |r| (name.clone(), r))
            });
            let mut merged = futures_util::stream::select_all(streams);
            let mut partial: std::collections::HashMap<String, String> = Default::default();
            while let Some((name, chunk)) = merged.next().await {
                let buf = partial.entry(name.clone()).or_default();
                buf.push_str(&chunk?);
                while let Some(nl) = buf.find('\n') {
                    let line: String = buf.drain(..=nl).collect();
                    let line = redactor.apply(line.trim_end_matches(['\n', '\r']));
                    if prefix {
                        out(&format!("{name:<width$} | {line}"));
                    } else {
                        out(&line);
                    }
                }
            }
            for (name, rest) in partial {
                if !rest.is_empty() {
                    let rest = redactor.apply(&rest);
                    out(&if prefix { format!("{name:<width$} | {rest}") } else { rest });
                }
            }
            Ok(exit::OK)
        }
        Command::Fixtures(FixturesCommand::Scan) => {
            let m = load(cli)?;
            let docker = connect().await?;
            let containers = docker.list_containers(&m.stack).await?;
            let mut findings = Vec::new();
            for f in m.fixtures.iter().filter(|f| !f.sensitive.is_empty()) {
                let Some(c) = plan::running_container(&m.stack, &f.service, &containers) else {
                    return Err(Error::StackFailed(format!("service `{}` is not running; run `stagectl up` first", f.service)));
                };
                findings.extend(crate::data::scan(docker.as_ref(), &c.id, f).await?);
            }
            let leaks: Vec<_> = findings.iter().filter(|f| f.unmasked > 0).collect();
            if cli.json {
                json(&serde_json::json!({ "ok": leaks.is_empty(), "columns": findings }));
            } else {
                for f in &findings {
                    let verdict = if f.unmasked == 0 {
                        "ok".to_string()
                    } else {
                        format!("LEAK: {} of {} values look unmasked", f.unmasked, f.total)
                    };
                    out(&format!("{}: {} ({}, {} values): {verdict}", f.service, f.column, f.rule, f.total));
                }
                if findings.is_empty() {
                    out("no sensitive columns declared");
                }
            }
            Ok(if leaks.is_empty() { exit::OK } else { exit::STACK_FAILED })
        }
        Command::Snapshots(cmd) => {
            snapshots::check_usage(cmd)?;
            let docker = connect().await?;
            match cmd {
                SnapshotsCommand::Ls => {
                    let list = crate::data::snapshot::list(docker.as_ref()).await?;
                    if cli.json {
                        json(&list);
                    } else {
                        let rows: Vec<[String; 6]> = list
                            .iter()
                            .map(|s| {
                                [
                                    s.reference.clone(),
                                    s.stack.clone(),
                                    s.service.clone(),
                                    indicatif::HumanBytes(s.bytes).to_string(),
                                    s.rows.to_string(),
                                    s.last_used.split('.').next().unwrap_or("").to_string(),
                                ]
                            })
                            .collect();
                        print_table(&["SNAPSHOT", "STACK", "SERVICE", "SIZE", "ROWS", "LAST USED"], &rows);
                    }
                }
                SnapshotsCommand::Prune { budget, all, every_stack } => {
                    let manifest = if *every_stack { None } else { Some(load(cli)?) };
                    let budget = if *all {
                        0
                    } else {
                        match budget {
                            Some(b) => crate::manifest::parse_size(b)
                                .ok_or_else(|| Error::Usage(format!("invalid budget `{b}`; write e.g. 2GB or 512MB")))?,
                            None => manifest.as_ref().map(|m| m.snapshot_budget).unwrap_or(crate::manifest::DEFAULT_SNAPSHOT_BUDGET),
                        }
                    };
                    let stack = manifest.as_ref().map(|m| m.stack.as_str());
                    let removed = crate::data::snapshot::prune(docker.as_ref(), budget, None, stack).await?;
                    if *all {
                        crate::migrations::check::remove_leftover_images(docker.as_ref(), stack).await?;
                    }
                    if cli.json {
                        json(&removed);
                    } else {
                        let bytes: u64 = removed.iter().map(|s| s.bytes).sum();
                        out(&format!("removed {} snapshots ({})", removed.len(), indicatif::HumanBytes(bytes)));
                    }
                }
                SnapshotsCommand::Export { file, all } => snapshots::export(cli, docker.as_ref(), file, *all).await?,
                SnapshotsCommand::Import { file } => snapshots::import(cli, docker.as_ref(), file).await?,
                SnapshotsCommand::Push { registry, all } => snapshots::push(cli, &console, docker.as_ref(), registry, *all).await?,
            }
            Ok(exit::OK)
        }
        Command::Export(command) => export::run(cli, command),
        Command::Import { compose, output, stack, profiles, force } => crate::import::run(&crate::import::Request {
            compose: compose.clone(),
            output: output.clone(),
            stack: stack.clone(),
            profiles: profiles.clone(),
            force: *force,
            json: cli.json,
        }),
        Command::Exec { service, command } => {
            let m = load(cli)?;
            if m.service(service).is_none() {
                return Err(unknown_service(&m, service));
            }
            let docker = connect().await?;
            let containers = docker.list_containers(&m.stack).await?;
            let Some(c) = plan::running_container(&m.stack, service, &containers) else {
                return Err(Error::StackFailed(format!("service `{service}` is not running; run `stagectl up` first")));
            };
            let (code, output) = docker.exec(&c.id, command).await?;
            print!("{}", crate::secrets::Redactor::for_manifest(&m).apply(&output));
            Ok(code.clamp(0, 255) as i32)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportFormat {
    Json,
    Junit,
    Markdown,
}

/// `FORMAT:PATH` arguments, checked before anything runs.
fn report_targets(args: &[String]) -> Result<Vec<(ReportFormat, PathBuf)>> {
    args.iter()
        .map(|a| {
            let (format, path) =
                a.split_once(':').ok_or_else(|| Error::Usage(format!("--report `{a}`: write FORMAT:PATH, e.g. junit:checks.xml")))?;
            let format = match format {
                "json" => ReportFormat::Json,
                "junit" => ReportFormat::Junit,
                "markdown" | "md" => ReportFormat::Markdown,
                other => return Err(Error::Usage(format!("--report `{a}`: unknown format `{other}` (json, junit, markdown)"))),
            };
            if path.is_empty() {
                return Err(Error::Usage(format!("--report `{a}`: the path is empty")));
            }
            Ok((format, PathBuf::from(path)))
        })
        .collect()
}

/// Runs an operation: through the daemon when one serves the stack, else here under the
/// stack's lock, recorded in the run history either way.
async fn operate(
    cli: &Cli,
    console: Arc<Console>,
    op: Operation,
    stack: Option<String>,
    targets: Vec<(ReportFormat, PathBuf)>,
) -> Result<i32> {
    // Down by stack name needs no manifest; everything else validates it before touching anything.
    let manifest = match (&op, &stack) {
        (Operation::Down { .. }, Some(_)) => None,
        _ => Some(load(cli)?),
    };
    operate_on(cli, console, op, stack, targets, manifest).await
}

/// [`operate`] with the manifest already loaded (or cut down to some services: `up SERVICE`,
/// `stop`, `restart`, which the daemon's API does not take and so always run here).
async fn operate_on(
    cli: &Cli,
    console: Arc<Console>,
    op: Operation,
    stack: Option<String>,
    targets: Vec<(ReportFormat, PathBuf)>,
    manifest: Option<Manifest>,
) -> Result<i32> {
    use crate::history::{History, Trigger};
    let stack = stack.or_else(|| manifest.as_ref().map(|m| m.stack.clone())).unwrap_or_default();
    let local_only = matches!(op, Operation::UpOnly | Operation::Stop | Operation::Restart { .. } | Operation::SwarmDeploy(_));
    // Reports and JSON need the full results in this process; a profile selection is this
    // command's own (the daemon runs with the selection it was started with).
    if local_only && !cli.local {
        daemon_client::refuse_if_daemon_on_swarm(&stack, op).await?;
    }
    if !cli.local && targets.is_empty() && !cli.json && cli.profiles.is_empty() && !local_only {
        if let Some(daemon) = daemon_client::discover(&stack).await {
            return daemon_client::forward(&daemon, op, &console).await;
        }
    }
    // History is a record, not a precondition: without it the operation still runs.
    let history = match History::open(&History::default_path()) {
        Ok(h) => Some(Arc::new(h)),
        Err(e) => {
            console.note(&format!("warning: run history unavailable: {e}"));
            None
        }
    };
    // Opening can succeed where the first write fails (a full disk with the WAL files already
    // there): that run is not recorded either, and the terminal says so.
    let recording = history.and_then(|h| match h.create_run(&stack, op.name(), Trigger::Cli) {
        Ok(run) => Some(Recording { history: h, run }),
        Err(e) => {
            console.note(&format!("warning: run history unavailable: {e}"));
            None
        }
    });
    let started = std::time::Instant::now();
    let outcome = run_recorded(connect(), &stack, manifest.as_ref(), op, Trigger::Cli, recording, console.clone(), interrupted()).await;
    console.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            let redactor = manifest.as_ref().map(crate::secrets::Redactor::for_manifest).unwrap_or_default();
            write_failure_report(&stack, "run", op.name(), &redactor.apply(&e.to_string()), started, &targets)?;
            return Err(e);
        }
    };
    console.finish();
    match outcome {
        OpOutcome::Down(report) => {
            if console.mode() == Mode::Json {
                json(&report);
            } else {
                let services = match report.swarm_services {
                    0 => String::new(),
                    n => format!("{n} Swarm services, "),
                };
                out(&format!(
                    "stack `{}` down: removed {services}{} containers, {} networks, {} volumes in {:.2}s",
                    report.stack, report.containers, report.networks, report.volumes, report.seconds
                ));
            }
            Ok(exit::OK)
        }
        OpOutcome::Up(report) => Ok(print_up(&report, console.mode())),
        OpOutcome::Lifecycle(report) => Ok(verbs::print_lifecycle(&report, console.mode())),
        OpOutcome::Checks(checks) => finish_checks(&stack, checks, started, &targets, &console, cli.json),
        OpOutcome::Verify { up, checks } => {
            let code = print_up(&up, console.mode());
            if code != exit::OK {
                write_failure_report(&stack, "up", "stack up", &up_failures(&up), started, &targets)?;
                return Ok(code);
            }
            finish_checks(&stack, checks, started, &targets, &console, cli.json)
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn note_check(console: &Console, r: &crate::checks::CheckResult) {
    let passed = r.outcome == crate::checks::CheckOutcome::Passed;
    console.note(&crate::ops::check_line(passed, &r.name, r.kind, r.seconds, &r.message));
}

fn finish_checks(
    stack: &str,
    results: Vec<crate::checks::CheckResult>,
    started: std::time::Instant,
    targets: &[(ReportFormat, PathBuf)],
    console: &Console,
    as_json: bool,
) -> Result<i32> {
    use crate::checks::report::CheckReport;
    if results.is_empty() {
        console.note("no checks in the manifest ([[checks.smoke]], [migrations.<service>])");
    }
    let report = CheckReport::new(stack, results, started.elapsed().as_secs_f64());
    write_reports(&report, targets)?;
    if as_json {
        json(&report);
    } else {
        // The findings went to stderr one by one; stdout gets the verdict.
        out(&format!("checks of `{}`: {} passed, {} failed in {:.2}s", report.stack, report.passed, report.failed, report.seconds));
    }
    Ok(if report.ok { exit::OK } else { exit::STACK_FAILED })
}

fn write_reports(report: &crate::checks::report::CheckReport, targets: &[(ReportFormat, PathBuf)]) -> Result<()> {
    for (format, path) in targets {
        let text = match format {
            ReportFormat::Json => report.json(),
            ReportFormat::Junit => report.junit(),
            ReportFormat::Markdown => report.markdown(),
        };
        std::fs::write(path, text).map_err(|e| Error::Usage(format!("cannot write report {}: {e}", path.display())))?;
    }
    Ok(())
}

/// A report for a run that ended before its checks could run (the stack did not come up, Docker
/// was unreachable, the run was cancelled): one failed entry saying why. Written so that a
/// pipeline never reads an older, passing report in its place.
fn write_failure_report(
    stack: &str,
    kind: &'static str,
    name: &str,
    message: &str,
    started: std::time::Instant,
    targets: &[(ReportFormat, PathBuf)],
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let seconds = started.elapsed().as_secs_f64();
    let failed = crate::checks::CheckResult {
        name: name.to_string(),
        kind,
        outcome: crate::checks::CheckOutcome::Failed,
        seconds,
        attempts: 1,
        message: message.to_string(),
        latency: None,
    };
    write_reports(&crate::checks::report::CheckReport::new(stack, vec![failed], seconds), targets)
}

/// Why a stack did not come up, one failed service per line.
fn up_failures(report: &UpReport) -> String {
    let lines: Vec<String> = report
        .services
        .iter()
        .filter(|s| s.outcome == Outcome::Failed)
        .map(|s| format!("{}: {}", s.service, s.message.as_deref().unwrap_or("failed")))
        .collect();
    if lines.is_empty() {
        "the stack did not come up".to_string()
    } else {
        lines.join("\n")
    }
}

fn unknown_service(m: &Manifest, s: &str) -> Error {
    let names: Vec<&str> = m.services.iter().map(|s| s.name.as_str()).collect();
    Error::Usage(format!("no service `{s}` in stack `{}` (services: {})", m.stack, names.join(", ")))
}

fn print_up(report: &UpReport, mode: Mode) -> i32 {
    if mode == Mode::Json {
        json(report);
    } else {
        let failed: Vec<&str> = report.services.iter().filter(|s| s.outcome == Outcome::Failed).map(|s| s.service.as_str()).collect();
        let skipped = report.services.iter().filter(|s| s.outcome == Outcome::Skipped).count();
        if report.ok {
            let verb = if report.changed { "ready" } else { "unchanged, ready" };
            let saved = report.services.iter().filter_map(|s| s.fixtures.as_ref()).any(|f| f.snapshot_seconds.is_some());
            let after = if saved { format!("; snapshot saved after {:.2}s", report.seconds) } else { String::new() };
            out(&format!("stack `{}` {verb} in {:.2}s ({} services{after})", report.stack, report.ready_seconds, report.services.len()));
            for p in &report.ports {
                let host = p.host_ip.as_deref().filter(|ip| *ip != "0.0.0.0").unwrap_or("localhost");
                let auto = if p.auto { " (auto)" } else { "" };
                out(&format!("  {}: {host}:{} -> {}/{}{auto}", p.service, p.host_port, p.container_port, p.protocol));
            }
        } else {
            out(&format!(
                "stack `{}` FAILED after {:.2}s: {} failed ({}){}",
                report.stack,
                report.seconds,
                failed.len(),
                failed.join(", "),
                if skipped > 0 { format!(", {skipped} skipped") } else { String::new() }
            ));
        }
    }
    if report.ok {
        exit::OK
    } else {
        exit::STACK_FAILED
    }
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn print_table(header: &[&str], rows: &[[String; 6]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    out(&line(header.to_vec()));
    for r in rows {
        out(&line(r.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
