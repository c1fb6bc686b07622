//! `stagectl check migrations`: lint the pending migrations, check the applied ones for drift,
//! then apply the pending ones to a throwaway copy of the database (its fixture data) with a
//! lock probe, and run the up → down → up round trip there. The running stack's data is never
//! touched: the copy is a separate container without host ports or volumes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::checks::CheckResult;
use crate::docker::{ContainerEngine, ContainerSpec};
use crate::manifest::{Manifest, MigrationSql, Migrations, Probe, Readiness};
use crate::plan;

use super::pg::{self, LockProbe, Target};
use super::{discover, drift, image, lint, pending, MigrationError, MigrationFile};

pub(super) fn result(name: String, passed: bool, started: Instant, message: String) -> CheckResult {
    CheckResult::new(name, "migration", passed, started, message)
}

/// A failed result that says why.
pub(super) fn failed(name: String, started: Instant, e: MigrationError) -> CheckResult {
    result(name, false, started, e.to_string())
}

/// Lints every `*.up.sql` of each `[migrations.<service>]` (every `*.sql` of an `sql_dir`):
/// one result per file. Needs no Docker (`stagectl check migrations --lint-only`), so the SQL
/// an `sql` command prints is not linted here.
pub fn lint_migrations(manifest: &Manifest) -> Result<Vec<CheckResult>, MigrationError> {
    let mut results = Vec::new();
    for m in &manifest.migrations {
        let files = match (&m.dir, &m.sql) {
            (Some(dir), _) => discover(dir)?.into_iter().map(|f| f.up).collect(),
            (None, Some(MigrationSql::Dir(dir))) => image::sql_files(dir)?,
            (None, _) => continue,
        };
        results.extend(lint_files(manifest, m, files));
    }
    Ok(results)
}

/// Lints the given migration files of `m`: one result per file.
pub fn lint_files(manifest: &Manifest, m: &Migrations, files: Vec<PathBuf>) -> Vec<CheckResult> {
    let allow: Vec<&str> = m.allow.iter().map(String::as_str).collect();
    let mut results = Vec::new();
    for f in files {
        let started = Instant::now();
        let name = crate::data::display(&manifest.dir, &f);
        match std::fs::read_to_string(&f) {
            Ok(sql) => results.push(lint_text(&name, &sql, &allow, started)),
            Err(source) => {
                let e = MigrationError::Read { path: name.clone().into(), source };
                results.push(CheckResult::new(format!("lint {name}"), "lint", false, started, e.to_string()));
            }
        }
    }
    results
}

/// The lint result of one migration's SQL, `name` naming it in the result and its findings.
pub(super) fn lint_text(name: &str, sql: &str, allow: &[&str], started: Instant) -> CheckResult {
    let findings = lint::lint(name, sql, allow);
    let message = if findings.is_empty() {
        "no locking or destructive changes found".to_string()
    } else {
        findings
            .iter()
            .map(|f| format!("{}:{}: [{}] {}\n  statement: {}\n  instead: {}", f.file, f.line, f.rule, f.why, f.statement, f.instead))
            .collect::<Vec<_>>()
            .join("\n")
    };
    CheckResult::new(format!("lint {name}"), "lint", findings.is_empty(), started, message)
}

/// All migration checks of the manifest. `job_images` maps a migration job to the image built
/// for it just before (its build context may hold new migrations); a job not in it runs its
/// `image`, or the image of its last container.
pub async fn run<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    job_images: &BTreeMap<String, String>,
    on_done: &(dyn Fn(&CheckResult) + Send + Sync),
) -> crate::error::Result<Vec<CheckResult>> {
    let mut observed = docker.list_containers(&manifest.stack).await?;
    // A copy left by a check that was killed (kill -9 gives no chance to clean up).
    for stale in observed.iter().filter(|c| c.service.ends_with(COPY_SERVICE_SUFFIX)) {
        docker.remove_container(&stale.id, 0).await?;
    }
    observed.retain(|c| !c.service.ends_with(COPY_SERVICE_SUFFIX));
    remove_leftover_images(docker, Some(&manifest.stack)).await?;
    let mut results = Vec::new();
    for m in &manifest.migrations {
        let mut emit = |r: CheckResult| {
            on_done(&r);
            results.push(r);
        };
        check_service(docker, manifest, m, job_images, &observed, &mut emit).await;
    }
    Ok(results)
}

/// The name of the `apply` result: by directory, or by job for migrations inside its image.
fn apply_name(manifest: &Manifest, m: &Migrations) -> String {
    match (&m.dir, &m.job) {
        (Some(dir), _) => format!("apply {}", crate::data::display(&manifest.dir, dir)),
        (None, job) => format!("apply (job `{}`)", job.as_deref().unwrap_or_default()),
    }
}

/// The copy container's service label: `<service>.mcheck`.
pub(super) const COPY_SERVICE_SUFFIX: &str = ".mcheck";
/// Images committed for a copy when the database has no fixture snapshot.
const COPY_IMAGE_PREFIX: &str = "stagectl-mcheck/";

/// Removes the copy images a killed `check migrations` left behind, of one stack or (with
/// `None`) of every stack. Their containers carry the stack's labels, so `up` (as orphans) and
/// `down` remove those; an image still in use stays. Returns how many were removed.
pub async fn remove_leftover_images<E: ContainerEngine + ?Sized>(docker: &E, stack: Option<&str>) -> crate::error::Result<usize> {
    let label = match stack {
        Some(stack) => format!("{}={stack}", crate::docker::labels::STACK),
        None => crate::docker::labels::STACK.to_string(),
    };
    let mut removed = 0;
    for image in docker.list_images(&label).await? {
        for tag in image.tags.iter().filter(|t| t.starts_with(COPY_IMAGE_PREFIX)) {
            if docker.remove_image(tag).await.is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Address of the service's PostgreSQL for a container on `network`.
pub(super) async fn target<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    m: &Migrations,
    id: &str,
    network: &str,
) -> Result<Target, MigrationError> {
    let status = docker.container_status(id, network).await?;
    let host = status.ip.ok_or_else(|| MigrationError::NoAddress { service: m.service.clone(), network: network.to_string() })?;
    let password = manifest.service(&m.service).and_then(|s| s.env.get("POSTGRES_PASSWORD")).map(|v| v.value.clone());
    Ok(Target { host, port: m.port, user: m.user.clone(), database: m.database.clone(), password })
}

async fn check_service<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    m: &Migrations,
    job_images: &BTreeMap<String, String>,
    observed: &[crate::docker::ObservedContainer],
    emit: &mut dyn FnMut(CheckResult),
) {
    let started = Instant::now();
    let job_image = |job: &str| job_images.get(job).cloned();
    let (Some(mdir), job) = (&m.dir, &m.job) else {
        // Migrations that live inside the job's image.
        let job = m.job.as_deref().unwrap_or_default();
        return image::check(docker, manifest, m, job, job_image(job), observed, emit).await;
    };
    let dir = crate::data::display(&manifest.dir, mdir);
    let files = match discover(mdir) {
        Ok(f) => f,
        Err(e) => return emit(failed(format!("migrations {dir}"), started, e)),
    };
    let network = plan::network_name(&manifest.stack);
    let Some(live) = plan::running_container(&manifest.stack, &m.service, observed) else {
        for r in lint_files(manifest, m, files.iter().map(|f| f.up.clone()).collect()) {
            emit(r);
        }
        return emit(result(
            format!("apply {dir}"),
            false,
            started,
            format!("`{}` is not running, so nothing was applied; run `stagectl up` first (the lint covered every file)", m.service),
        ));
    };

    // Drift is about the running database: what it has applied against what the files say now.
    let live_target = match target(docker, manifest, m, &live.id, &network).await {
        Ok(t) => t,
        Err(e) => return emit(failed(format!("apply {dir}"), started, e)),
    };
    let applied_live = if m.job.is_none() {
        match pg::connect(&live_target).await {
            Ok(c) => pg::applied(&c).await,
            Err(e) => Err(e),
        }
    } else {
        Ok(vec![])
    };
    let applied_live = match applied_live {
        Ok(a) => a,
        Err(e) => return emit(failed(format!("drift {dir}"), started, e)),
    };
    if m.job.is_none() {
        let drifted = drift(&dir, &files, &applied_live);
        let msg =
            if drifted.is_empty() { format!("{} applied migrations match their files", applied_live.len()) } else { drifted.join("\n") };
        emit(result(format!("drift {dir}"), drifted.is_empty(), started, msg));
    }

    // The job form cannot tell what its tool considers pending: every file is linted.
    let to_lint: Vec<PathBuf> = match m.job {
        None => pending(&files, &applied_live).into_iter().map(|f| f.up.clone()).collect(),
        Some(_) => files.iter().map(|f| f.up.clone()).collect(),
    };
    for r in lint_files(manifest, m, to_lint) {
        emit(r);
    }

    let copy = match Copy::start_for(docker, manifest, m, &live.id, observed).await {
        Ok(c) => c,
        Err(r) => return emit(*r),
    };
    match job {
        None => on_copy_native(docker, manifest, m, &files, &copy, &dir, emit).await,
        Some(job) => {
            let all_sql: String = files.iter().map(|f| f.up_sql.as_str()).collect::<Vec<_>>().join("\n;\n");
            image::job_on_copy(docker, manifest, m, job, &all_sql, job_image(job), &copy, emit).await;
        }
    }
    copy.remove(docker).await;
}

async fn on_copy_native<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    m: &Migrations,
    files: &[MigrationFile],
    copy: &Copy,
    dir: &str,
    emit: &mut dyn FnMut(CheckResult),
) {
    let started = Instant::now();
    let target = match target(docker, manifest, m, &copy.id, &copy.network).await {
        Ok(t) => t,
        Err(e) => return emit(failed(format!("apply {dir}"), started, e)),
    };
    let mut client = match pg::connect(&target).await {
        Ok(c) => c,
        Err(e) => return emit(failed(format!("apply {dir}"), started, e)),
    };
    let applied = match pg::applied(&client).await {
        Ok(a) => a,
        Err(e) => return emit(failed(format!("apply {dir}"), started, e)),
    };
    let todo = pending(files, &applied);
    if todo.is_empty() {
        emit(result(format!("apply {dir}"), true, started, format!("nothing pending: all {} migrations are applied", files.len())));
    }
    let before = if todo.is_empty() { None } else { schema(docker, m, &copy.id).await.ok() };
    for f in &todo {
        let started = Instant::now();
        let display = format!("{dir}/{}.up.sql", f.name);
        let tables = match pg::touched_tables(&client, &f.up_sql).await {
            Ok(t) => t,
            Err(e) => return emit(failed(format!("apply {display}"), started, e)),
        };
        let table_names: Vec<String> = tables.iter().map(|t| t.display.clone()).collect();
        let probe = match LockProbe::start(&target, tables).await {
            Ok(p) => p,
            Err(e) => return emit(failed(format!("apply {display}"), started, e)),
        };
        let applied = pg::apply(&mut client, f, &display).await;
        let stats = probe.finish().await;
        match applied {
            Err(e) => return emit(failed(format!("apply {display}"), started, e)),
            Ok(ms) => {
                let budget_ms = m.lock_budget.as_secs_f64() * 1000.0;
                let blocked = stats.longest_block_ms > budget_ms;
                let probe_msg = if table_names.is_empty() {
                    "no existing table touched".to_string()
                } else {
                    format!(
                        "longest wait of a concurrent read+write: {:.0} ms on {} (budget {:.0} ms, {} probes of {})",
                        stats.longest_block_ms,
                        stats.table.as_deref().unwrap_or("-"),
                        budget_ms,
                        stats.probes,
                        table_names.join(", ")
                    )
                };
                let mut msg = format!("applied in {ms:.0} ms on fixture data; {probe_msg}");
                if blocked {
                    msg.push_str("\n  the migration blocks reads or writes longer than the budget: in production every query on that table would wait this long; split it (add nullable, backfill in batches, validate separately) or raise lock_budget");
                }
                emit(result(format!("apply {display}"), !blocked, started, msg));
            }
        }
    }
    if !m.round_trip {
        return;
    }
    // Round trip over the pending migrations, or the newest one when nothing is pending.
    let set: Vec<&MigrationFile> = if todo.is_empty() { files.last().into_iter().collect() } else { todo };
    if set.is_empty() {
        return;
    }
    let started = Instant::now();
    let name = format!("round trip {dir} ({})", set.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "));
    match round_trip(docker, m, &mut client, &copy.id, &set, before.as_deref(), dir).await {
        Ok(msg) => emit(result(name, true, started, msg)),
        Err(e) => emit(failed(name, started, e)),
    }
}

async fn round_trip<E: ContainerEngine + ?Sized>(
    docker: &E,
    m: &Migrations,
    client: &mut tokio_postgres::Client,
    id: &str,
    set: &[&MigrationFile],
    before: Option<&str>,
    dir: &str,
) -> Result<String, MigrationError> {
    let after_up = schema(docker, m, id).await?;
    for f in set.iter().rev() {
        let display = format!("{dir}/{}.down.sql", f.name);
        let Some(down) = &f.down else {
            return Err(MigrationError::MissingDown { file: display, service: m.service.clone() });
        };
        let sql = std::fs::read_to_string(down).map_err(|source| MigrationError::Read { path: display.clone().into(), source })?;
        pg::revert(client, f, &sql, &display).await.map_err(|e| MigrationError::DownFailed(Box::new(e)))?;
    }
    let after_down = schema(docker, m, id).await?;
    if let Some(before) = before {
        if before != after_down {
            return Err(MigrationError::SchemaNotRestored { diff: diff(before, &after_down, "before up", "after down") });
        }
    }
    for f in set {
        let display = format!("{dir}/{}.up.sql", f.name);
        pg::apply(client, f, &display).await.map_err(|e| MigrationError::UpAgainFailed(Box::new(e)))?;
    }
    let again = schema(docker, m, id).await?;
    if again != after_up {
        return Err(MigrationError::SchemaChanged { diff: diff(&after_up, &again, "after up", "after up, down, up") });
    }
    Ok(format!("schema after up, down, up equals the schema after up ({} lines)", after_up.lines().count()))
}

fn diff(a: &str, b: &str, a_name: &str, b_name: &str) -> String {
    similar::TextDiff::from_lines(a, b).unified_diff().context_radius(2).header(a_name, b_name).to_string()
}

/// The schema as `pg_dump --schema-only` prints it, without comments, blank lines and the
/// per-dump random `\restrict` key of newer pg_dump versions.
async fn schema<E: ContainerEngine + ?Sized>(docker: &E, m: &Migrations, id: &str) -> Result<String, MigrationError> {
    let cmd: Vec<String> = ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", "-U", &m.user, "-d", &m.database]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match docker.exec(id, &cmd).await {
        Ok((0, out)) => Ok(out
            .lines()
            .filter(|l| !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict") && !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect()),
        Ok((code, out)) => Err(MigrationError::PgDump { code, output: out.trim().to_string() }),
        Err(e) => Err(e.into()),
    }
}

/// Runs the migration job on the copy with a lock probe on the tables `all_sql` touches.
/// Returns whether the job ran and exited 0 (within the lock budget or not).
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_copy_job<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    m: &Migrations,
    job: &str,
    all_sql: &str,
    copy: &Copy,
    built: Option<String>,
    emit: &mut dyn FnMut(CheckResult),
) -> bool {
    let started = Instant::now();
    let name = format!("apply (job `{job}`)");
    let Some(service) = manifest.service(job) else { return false };
    let mut emit = |r: CheckResult| {
        emit(r);
        false
    };
    let target = match target(docker, manifest, m, &copy.id, &copy.network).await {
        Ok(t) => t,
        Err(e) => return emit(failed(name, started, e)),
    };
    let client = match pg::connect(&target).await {
        Ok(c) => c,
        Err(e) => return emit(failed(name, started, e)),
    };
    let tables = pg::touched_tables(&client, all_sql).await.unwrap_or_default();
    let probe = match LockProbe::start(&target, tables).await {
        Ok(p) => p,
        Err(e) => return emit(failed(name, started, e)),
    };
    // A job image built for this check first; else the user's tag, else (a built job image
    // has a content-hash tag) the image of the job's last container.
    let image = match built.or_else(|| service.image.clone()).or_else(|| copy.job_image.clone()) {
        Some(i) => i,
        None => return emit(result(name, false, started, format!("`{job}` has no image yet; run `stagectl up` once to build it"))),
    };
    let mut spec = plan::container_spec(manifest, service, &image, &image, "migration-check");
    spec.name = format!("{}-{}", copy.name, job);
    spec.network = copy.network.clone();
    spec.aliases = vec![];
    spec.ports = vec![];
    let outcome = run_job(docker, &spec).await;
    let stats = probe.finish().await;
    let budget_ms = m.lock_budget.as_secs_f64() * 1000.0;
    match outcome {
        Ok(secs) => {
            let blocked = stats.longest_block_ms > budget_ms;
            let msg = format!(
                "`{job}` applied the migrations in {secs:.2}s on fixture data; longest wait of a concurrent read+write: {:.0} ms on {} (budget {budget_ms:.0} ms)",
                stats.longest_block_ms,
                stats.table.as_deref().unwrap_or("-")
            );
            emit(result(name, !blocked, started, msg));
            true
        }
        Err(e) => emit(failed(name, started, e)),
    }
}

async fn run_job<E: ContainerEngine + ?Sized>(docker: &E, spec: &ContainerSpec) -> Result<f64, MigrationError> {
    let started = Instant::now();
    let id = docker.create_container(spec).await?;
    let run = async {
        docker.start_container(&id).await?;
        let code = docker.wait_exit(&id).await?;
        if code != 0 {
            let logs = docker.tail_logs(&id, 20).await.unwrap_or_default().join("\n");
            return Err(MigrationError::JobFailed { code, logs });
        }
        Ok(started.elapsed().as_secs_f64())
    };
    let out = run.await;
    let _ = docker.remove_container(&id, 0).await;
    out
}

/// A throwaway copy of a database service, started from its fixture snapshot (or a commit
/// of the running container when it has none).
pub(super) struct Copy {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) network: String,
    /// Image committed for this copy, removed with it.
    temp_image: Option<String>,
    /// Private network of a job-form copy, removed with it.
    temp_network: bool,
    /// Image of the job's last container (job form).
    pub(super) job_image: Option<String>,
}

impl Copy {
    /// A copy of `m`'s database with the image of the job's last container noted, or the
    /// failed `apply` result that says why there is none.
    pub(super) async fn start_for<E: ContainerEngine + ?Sized>(
        docker: &E,
        manifest: &Manifest,
        m: &Migrations,
        live_id: &str,
        observed: &[crate::docker::ObservedContainer],
    ) -> Result<Copy, Box<CheckResult>> {
        let started = Instant::now();
        match Copy::start(docker, manifest, m, live_id).await {
            Ok(mut c) => {
                c.job_image = m.job.as_deref().and_then(|j| plan::current_container(&manifest.stack, j, observed)).map(|c| c.image.clone());
                tracing::debug!("copy of {} ready in {:.2}s", m.service, started.elapsed().as_secs_f64());
                Ok(c)
            }
            Err(e) => {
                Err(Box::new(result(apply_name(manifest, m), false, started, format!("could not start a copy of `{}`: {e}", m.service))))
            }
        }
    }

    async fn start<E: ContainerEngine + ?Sized>(
        docker: &E,
        manifest: &Manifest,
        m: &Migrations,
        live_id: &str,
    ) -> Result<Copy, MigrationError> {
        let service = manifest.service(&m.service).ok_or_else(|| MigrationError::UnknownService { service: m.service.clone() })?;
        let nonce = format!(
            "{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() & 0xffff_ffff
        );
        let name = format!("{}-mcheck-{nonce}", plan::container_name(&manifest.stack, &m.service));
        let snapshot = match docker.exec(live_id, &["cat".to_string(), crate::data::snapshot::MARKER_PATH.to_string()]).await {
            Ok((0, key)) => {
                let r = crate::data::snapshot::reference(&m.service, key.trim());
                docker.image_id(&r).await.ok().flatten().map(|_| r)
            }
            _ => None,
        };
        let (image, temp_image) = match snapshot {
            Some(r) => (r, None),
            None => {
                // Flush to the data files so the copy starts without recovery work.
                let _ = docker.exec(live_id, &crate::data::psql_command(&m.user, &m.database, &["-c", "CHECKPOINT"])).await;
                let r = format!("{COPY_IMAGE_PREFIX}{}:{nonce}", m.service);
                docker.commit(live_id, &r, &plan::stack_labels(&manifest.stack), &crate::secrets::secret_env_names(service)).await?;
                (r.clone(), Some(r))
            }
        };
        // The job form reaches the copy under the service's own name on a private network, so
        // the team's tool needs no other configuration.
        let (network, temp_network) = match m.job {
            Some(_) => {
                let n = format!("{}-mcheck-{nonce}", plan::network_name(&manifest.stack));
                docker.ensure_network(&n, &plan::stack_labels(&manifest.stack)).await?;
                (n, true)
            }
            None => (plan::network_name(&manifest.stack), false),
        };
        let mut spec = plan::container_spec(manifest, service, &image, &image, "migration-check");
        spec.labels.insert(crate::docker::labels::SERVICE.into(), format!("{}{COPY_SERVICE_SUFFIX}", m.service));
        spec.name = name.clone();
        spec.network = network.clone();
        spec.aliases = if temp_network { vec![m.service.clone()] } else { vec![] };
        // No host ports (they belong to the live service) and no volumes (a second server
        // must never open the live data directory).
        spec.ports = vec![];
        spec.binds = vec![];
        let mut copy = Copy { id: String::new(), name, network, temp_image, temp_network, job_image: None };
        let started = async {
            let id = docker.create_container(&spec).await?;
            copy.id = id.clone();
            docker.start_container(&id).await?;
            let readiness = Readiness {
                probe: Probe::Postgres { port: m.port },
                timeout: Duration::from_secs(60),
                interval: Duration::from_millis(20),
                attempt_timeout: crate::manifest::DEFAULT_ATTEMPT_TIMEOUT,
                retries: None,
                start_period: Duration::ZERO,
            };
            crate::probes::wait_ready(docker, &id, &copy.network, &readiness).await.map_err(MigrationError::NotReady)?;
            Ok::<(), MigrationError>(())
        }
        .await;
        match started {
            Ok(()) => Ok(copy),
            Err(e) => {
                copy.remove(docker).await;
                Err(e)
            }
        }
    }

    pub(super) async fn remove<E: ContainerEngine + ?Sized>(&self, docker: &E) {
        if !self.id.is_empty() {
            let _ = docker.remove_container(&self.id, 0).await;
        }
        if self.temp_network {
            let _ = docker.remove_network(&self.network).await;
        }
        if let Some(r) = &self.temp_image {
            let _ = docker.remove_image(r).await;
        }
    }
}
