//! `stagectl check migrations` for migrations that live inside the job's image (the command
//! form of `[migrations.<service>]` without `dir`: Django, Rails, Flyway, MediaWiki's
//! `update.php` ship them in the application image).
//!
//! On a throwaway copy of the database (its fixture data), in order:
//! 1. `pending` (optional) runs in the job's image: exit 0 means nothing is pending and the
//!    check ends there; non-zero means migrations are pending;
//! 2. the SQL to lint: every `*.sql` of `sql_dir` (linted before the copy starts), or what the
//!    `sql` command prints, split into one lint result per migration at
//!    `-- stagectl:migration NAME` lines;
//! 3. the job applies the migrations with the lock probe on the tables that SQL touches
//!    (`check::on_copy_job`);
//! 4. `pending` again must exit 0: the job applied everything its tool considers pending.
//!
//! Steps 1, 3 and 4 are also the command form with `dir` (`job_on_copy`; its files were linted
//! already, and their SQL names the tables to probe).
//!
//! The commands run as the job does (image, env, mounts), on the copy's private network where
//! the database's service name resolves to the copy, with the image's entrypoint reset so the
//! argv runs as written. Their containers carry the copy's service label, so a killed check's
//! leftovers are removed by the next one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checks::CheckResult;
use crate::docker::{ContainerEngine, ObservedContainer};
use crate::manifest::{Manifest, MigrationSql, Migrations};
use crate::plan;
use crate::secrets::Redactor;

use super::check::{failed, lint_files, lint_text, on_copy_job, result, Copy, COPY_SERVICE_SUFFIX};
use super::MigrationError;

/// A line of an `sql` command's output that starts the SQL of one migration.
pub const MIGRATION_MARKER: &str = "-- stagectl:migration ";
/// Longest a `pending` or `sql` command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Most output lines kept of a command (the SQL of many migrations fits).
const MAX_OUTPUT_LINES: usize = 100_000;
/// Output lines shown when a command fails.
const SHOWN_LINES: usize = 20;

/// Every `*.sql` file directly in `dir`, by name.
pub fn sql_files(dir: &Path) -> Result<Vec<PathBuf>, MigrationError> {
    let read_dir_error = |source| MigrationError::ReadDir { dir: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_error)? {
        let path = entry.map_err(read_dir_error)?.path();
        if path.extension().is_some_and(|e| e == "sql") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The output of an `sql` command split into `(name, sql)` per migration: a
/// [`MIGRATION_MARKER`] line starts one named by the rest of the line; text before the first
/// marker (or all of it, without markers) is named `fallback`. Empty parts are dropped.
pub fn split_migrations(output: &str, fallback: &str) -> Vec<(String, String)> {
    let mut parts: Vec<(String, String)> = vec![(fallback.to_string(), String::new())];
    for line in output.lines() {
        match line.trim_start().strip_prefix(MIGRATION_MARKER) {
            Some(name) if !name.trim().is_empty() => parts.push((name.trim().to_string(), String::new())),
            _ => {
                let sql = &mut parts.last_mut().expect("never empty").1;
                sql.push_str(line);
                sql.push('\n');
            }
        }
    }
    parts.retain(|(_, sql)| !sql.trim().is_empty());
    parts
}

/// `python manage.py migrate --check`, quoted as a shell would.
fn words(argv: &[String]) -> String {
    crate::checks::shell_words(argv)
}

/// The last [`SHOWN_LINES`] non-empty lines, indented; `(no output)` when there are none.
fn tail(output: &str) -> String {
    match crate::text::last_lines(output, SHOWN_LINES) {
        (_, lines) if lines.is_empty() => "  (no output)".to_string(),
        (more, lines) => {
            let more = if more > 0 { format!("  … {more} more line(s)\n") } else { String::new() };
            format!("{more}{}", lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"))
        }
    }
}

/// The check of one `[migrations.<service>]` whose migrations live inside `job`'s image;
/// `built` is the image built for the job just before, if it has a build.
pub(super) async fn check<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    m: &Migrations,
    job: &str,
    built: Option<String>,
    observed: &[ObservedContainer],
    emit: &mut dyn FnMut(CheckResult),
) {
    let started = Instant::now();
    let apply = format!("apply (job `{job}`)");
    let mut dir_sql = String::new();
    if let Some(MigrationSql::Dir(dir)) = &m.sql {
        match sql_files(dir) {
            Ok(files) => {
                dir_sql = files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect::<Vec<_>>().join("\n;\n");
                for r in lint_files(manifest, m, files) {
                    emit(r);
                }
            }
            Err(e) => emit(failed(format!("lint {}", crate::data::display(&manifest.dir, dir)), started, e)),
        }
    }
    let Some(live) = plan::running_container(&manifest.stack, &m.service, observed) else {
        let linted = if matches!(m.sql, Some(MigrationSql::Dir(_))) { " (the lint covered every file of sql_dir)" } else { "" };
        return emit(result(
            apply,
            false,
            started,
            format!("`{}` is not running, so nothing was applied; run `stagectl up` first{linted}", m.service),
        ));
    };
    let copy = match Copy::start_for(docker, manifest, m, &live.id, observed).await {
        Ok(c) => c,
        Err(r) => return emit(*r),
    };
    job_on_copy(docker, manifest, m, job, &dir_sql, built, &copy, emit).await;
    copy.remove(docker).await;
}

/// The command form on a started copy (with or without `dir`; `files_sql` is the SQL of its
/// files): `pending`, `sql`, the job with the lock probe, `pending` again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn job_on_copy<E: ContainerEngine + ?Sized>(
    docker: &E,
    manifest: &Manifest,
    m: &Migrations,
    job: &str,
    files_sql: &str,
    built: Option<String>,
    copy: &Copy,
    emit: &mut dyn FnMut(CheckResult),
) {
    let started = Instant::now();
    let Some(service) = manifest.service(job) else { return };
    let Some(image) = built.clone().or_else(|| service.image.clone()).or_else(|| copy.job_image.clone()) else {
        let apply = format!("apply (job `{job}`)");
        return emit(result(apply, false, started, format!("`{job}` has no image yet; run `stagectl up` once to build it")));
    };
    let allow: Vec<&str> = m.allow.iter().map(String::as_str).collect();
    let runner = Runner { docker, manifest, service, image: &image, copy, redactor: Redactor::for_manifest(manifest) };
    on_copy(&runner, m, job, files_sql, &allow, built, emit).await;
}

/// Steps 1 to 4 of the module doc, on a started copy.
async fn on_copy<E: ContainerEngine + ?Sized>(
    runner: &Runner<'_, E>,
    m: &Migrations,
    job: &str,
    dir_sql: &str,
    allow: &[&str],
    built: Option<String>,
    emit: &mut dyn FnMut(CheckResult),
) {
    let pending_name = format!("pending (job `{job}`)");
    if let Some(cmd) = &m.pending {
        let started = Instant::now();
        match runner.run(cmd, "pending").await {
            Ok((0, _)) => {
                return emit(result(pending_name, true, started, format!("nothing pending: `{}` exited 0 on fixture data", words(cmd))));
            }
            Ok((code, out)) => {
                let shown = if out.trim().is_empty() { String::new() } else { format!("\n{}", tail(&out)) };
                emit(result(
                    pending_name,
                    true,
                    started,
                    format!("migrations are pending: `{}` exited {code} on fixture data{shown}", words(cmd)),
                ))
            }
            Err(e) => return emit(failed(pending_name, started, e)),
        }
    }

    let sql = match &m.sql {
        Some(MigrationSql::Command(cmd)) => {
            let started = Instant::now();
            let name = format!("sql (job `{job}`)");
            match runner.run(cmd, "sql").await {
                Ok((0, out)) => {
                    let fallback = format!("{job}: {}", words(cmd));
                    let parts = split_migrations(&out, &fallback);
                    if parts.is_empty() {
                        emit(result(name, true, started, format!("`{}` printed no SQL: nothing to lint", words(cmd))));
                    }
                    for (unit, sql) in &parts {
                        emit(lint_text(unit, sql, allow, Instant::now()));
                    }
                    out
                }
                Ok((code, out)) => {
                    emit(result(name, false, started, format!("`{}` exited {code}, so nothing was linted:\n{}", words(cmd), tail(&out))));
                    String::new()
                }
                Err(e) => {
                    emit(failed(name, started, e));
                    String::new()
                }
            }
        }
        _ => dir_sql.to_string(),
    };

    let applied = on_copy_job(runner.docker, runner.manifest, m, job, &sql, runner.copy, built, emit).await;
    let (true, Some(cmd)) = (applied, &m.pending) else { return };
    let started = Instant::now();
    let name = format!("applied (job `{job}`)");
    match runner.run(cmd, "pending").await {
        Ok((0, _)) => emit(result(name, true, started, format!("`{}` exits 0 after `{job}` ran: nothing left pending", words(cmd)))),
        Ok((code, out)) => emit(result(
            name,
            false,
            started,
            format!(
                "`{job}` exited 0 but `{}` still reports pending migrations (exit {code}):\n{}\n  does the job run every migration the image holds?",
                words(cmd),
                tail(&out)
            ),
        )),
        Err(e) => emit(failed(name, started, e)),
    }
}

/// Runs commands as the job would, on the copy's network.
struct Runner<'a, E: ContainerEngine + ?Sized> {
    docker: &'a E,
    manifest: &'a Manifest,
    service: &'a crate::manifest::Service,
    image: &'a str,
    copy: &'a Copy,
    redactor: Redactor,
}

impl<E: ContainerEngine + ?Sized> Runner<'_, E> {
    /// `(exit code, output)` of `argv`, secrets masked; the container is removed.
    async fn run(&self, argv: &[String], what: &str) -> Result<(i64, String), MigrationError> {
        let mut spec = plan::container_spec(self.manifest, self.service, self.image, self.image, "migration-check");
        spec.name = format!("{}-{}-{what}", self.copy.name, self.service.name);
        spec.labels.insert(crate::docker::labels::SERVICE.into(), format!("{}{COPY_SERVICE_SUFFIX}", self.service.name));
        spec.network = self.copy.network.clone();
        spec.aliases = vec![];
        spec.ports = vec![];
        spec.command = Some(argv.to_vec());
        // `[""]` resets the image's entrypoint: the argv runs as written.
        spec.entrypoint = Some(vec![String::new()]);
        let id = self.docker.create_container(&spec).await?;
        let run = async {
            self.docker.start_container(&id).await?;
            let code = match tokio::time::timeout(COMMAND_TIMEOUT, self.docker.wait_exit(&id)).await {
                Ok(code) => code?,
                Err(_) => return Err(MigrationError::CommandTimedOut { command: words(argv), secs: COMMAND_TIMEOUT.as_secs() }),
            };
            let lines = self.docker.tail_logs(&id, MAX_OUTPUT_LINES).await?;
            Ok((code, self.redactor.apply(&lines.join("\n"))))
        };
        let out = run.await;
        let _ = self.docker.remove_container(&id, 0).await;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_splits_into_named_migrations_at_marker_lines() {
        let out = "warning: x\n-- stagectl:migration staff.0002_a\nBEGIN;\nALTER TABLE t ADD c int;\nCOMMIT;\n  -- stagectl:migration staff.0003_b\nCREATE INDEX i ON t (c);\n-- stagectl:migration  \n";
        let parts = split_migrations(out, "migrate: sql");
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["migrate: sql", "staff.0002_a", "staff.0003_b"]);
        assert_eq!(parts[1].1, "BEGIN;\nALTER TABLE t ADD c int;\nCOMMIT;\n");
        // A marker without a name is SQL text (a comment) of the migration before it.
        assert_eq!(parts[2].1, "CREATE INDEX i ON t (c);\n-- stagectl:migration  \n");
        assert!(split_migrations("\n\n", "x").is_empty());
        assert_eq!(split_migrations("SELECT 1;", "x"), vec![("x".to_string(), "SELECT 1;\n".to_string())]);
    }

    #[test]
    fn lint_lines_count_from_the_migration_not_the_whole_output() {
        let out = "-- stagectl:migration a\nSELECT 1;\n-- stagectl:migration b\nSET lock_timeout = '2s';\nCREATE INDEX i ON t (c);\n";
        let parts = split_migrations(out, "x");
        let findings = crate::migrations::lint::lint(&parts[1].0, &parts[1].1, &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!((findings[0].file.as_str(), findings[0].line, findings[0].rule), ("b", 2, "create-index-non-concurrently"));
    }

    #[test]
    fn sql_files_are_the_sql_files_of_the_dir_by_name() {
        let d = tempfile::tempdir().unwrap();
        for f in ["V2__b.sql", "V1__a.sql", "README.md"] {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        std::fs::create_dir(d.path().join("sub.sql")).unwrap();
        let names: Vec<String> =
            sql_files(d.path()).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["V1__a.sql", "V2__b.sql"]);
        assert!(matches!(sql_files(&d.path().join("nope")), Err(MigrationError::ReadDir { .. })));
    }

    #[test]
    fn commands_are_quoted_as_a_shell_would_and_tails_are_bounded() {
        assert_eq!(words(&["sh".into(), "-c".into(), "echo $X".into()]), "sh -c 'echo $X'");
        assert_eq!(tail(""), "  (no output)");
        let long: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&long);
        assert!(t.starts_with("  … 10 more line(s)\n  line 11"), "{t}");
        assert!(t.ends_with("  line 30"));
    }
}
