//! Issue 10 against the fake engine: what a job leaves in a data service's loaded state (its
//! image ID, its mounts) is in the snapshot key and in its re-run decision; every dependent of
//! a data service waits for its fixtures; a service without a probe must keep running through
//! the settle window.

use super::*;
use crate::error::Error;

/// A project directory with files, and a manifest parsed in it (fixture files and bind
/// mounts are hashed from disk).
pub(super) struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub(super) fn new(files: &[(&str, &str)]) -> Project {
        let p = Project { dir: tempfile::tempdir().unwrap() };
        for (path, text) in files {
            p.write(path, text);
        }
        p
    }

    pub(super) fn write(&self, path: &str, text: &str) {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub(super) fn parse(&self, toml: &str) -> Manifest {
        let vars = VarSource::default();
        manifest::parse(toml, "stack.toml", self.dir.path(), &vars, &|p| p.is_dir()).unwrap_or_else(|e| panic!("{}", e.render()))
    }
}

/// A database with fixtures whose load waits for its jobs (by default, those that depend on
/// it): migrate, built from `./migrate`, and install; web depends only on install.
const APP: &str = r#"
[stack]
name = "s"
[services.db]
image = "pg"
ready = { healthcheck = true, timeout = "5s", interval = "10ms" }
[services.migrate]
build = "./migrate"
job = true
depends_on = ["db"]
command = ["psql", "-h", "db", "-f", "/schema.sql"]
[services.install]
image = "pg"
job = true
depends_on = ["db"]
[services.web]
image = "app"
depends_on = ["install"]
[fixtures.db]
files = ["data/*.sql"]
"#;

fn app_project() -> Project {
    Project::new(&[
        ("migrate/Dockerfile", "FROM pg\nCOPY schema.sql /schema.sql\n"),
        ("migrate/schema.sql", "CREATE TABLE users (id int);\n"),
        ("data/01_users.sql", "INSERT INTO users VALUES (1);\n"),
    ])
}

/// Index of the call that wrote db's load marker.
fn marker_written(fake: &FakeEngine) -> Option<usize> {
    fake.calls().iter().rposition(|c| c.starts_with("exec s-db#") && c.ends_with(crate::data::snapshot::MARKER_PATH))
}

fn snapshot(report: &UpReport, name: &str) -> String {
    service(report, name).fixtures.as_ref().map(|f| f.snapshot.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_rebuilt_job_image_changes_the_snapshot_key_and_reruns_the_job() {
    let (fake, orch, _) = setup();
    fake.health("s-db", "healthy");
    let project = app_project();
    let first = orch.up(&project.parse(APP)).await.unwrap();
    assert!(first.ok, "{first:#?}");
    assert_eq!(snapshot(&first, "db"), "miss");

    // Unchanged: everything kept, the migrations are in the loaded data.
    let again = orch.up(&project.parse(APP)).await.unwrap();
    assert_eq!(results(&again)["db"], (Action::Keep, Outcome::Ready));
    assert_eq!(results(&again)["migrate"], (Action::Keep, Outcome::Completed));

    // A new migration in the job's build context: a new image, so a new key, a fresh
    // database, and the job runs on it.
    project.write("migrate/schema.sql", "CREATE TABLE users (id int);\nCREATE TABLE audit (id int);\n");
    let migrated = orch.up(&project.parse(APP)).await.unwrap();
    assert!(migrated.ok, "{migrated:#?}");
    assert_eq!(results(&migrated)["db"], (Action::Recreate("spec changed".into()), Outcome::Ready));
    assert_eq!(snapshot(&migrated, "db"), "miss", "the old snapshot does not hold the new migration");
    assert_eq!(results(&migrated)["migrate"].1, Outcome::Completed);
    assert_ne!(results(&migrated)["migrate"].0, Action::Keep);
    let db = fake.container("s-db").unwrap().id;

    // A rebuild restores the snapshot of the new key, not the stale one.
    orch.down("s", true).await.unwrap();
    let rebuilt = orch.up(&project.parse(APP)).await.unwrap();
    assert_eq!(snapshot(&rebuilt, "db"), "hit");
    assert_eq!(fake.container("s-db").unwrap().spec.image, format!("sha256:commit-{db}"));
    assert_eq!(results(&rebuilt)["migrate"], (Action::Keep, Outcome::Completed), "in the restored data");
}

#[tokio::test]
async fn a_retagged_job_image_changes_the_key_though_its_name_did_not() {
    let (fake, orch, _) = setup();
    fake.health("s-db", "healthy");
    let project = app_project();
    let m = project.parse(&APP.replace(r#"build = "./migrate""#, r#"image = "migrator:latest""#));
    fake.image("migrator:latest");
    assert!(orch.up(&m).await.unwrap().ok);

    // Same tag, new image (pulled or built elsewhere): a new key.
    fake.image("migrator-v2");
    fake.tag_image("sha256:migrator-v2", "migrator:latest").await.unwrap();
    let report = orch.up(&m).await.unwrap();
    assert_eq!(results(&report)["db"].0, Action::Recreate("spec changed".into()));
    assert_eq!(snapshot(&report, "db"), "miss");
    assert_eq!(fake.container("s-migrate").unwrap().spec.image, "sha256:migrator-v2");
}

#[tokio::test]
async fn a_job_reruns_when_the_content_it_mounts_read_only_changes() {
    let (fake, orch, _) = setup();
    let project = Project::new(&[("migrations/001.sql", "CREATE TABLE a (id int);\n")]);
    let toml = WITH_JOB.replace("job = true\n", "job = true\nvolumes = [\"./migrations:/migrations:ro\"]\n");
    orch.up(&project.parse(&toml)).await.unwrap();
    let kept = orch.up(&project.parse(&toml)).await.unwrap();
    assert_eq!(results(&kept)["migrate"], (Action::Keep, Outcome::Completed));

    project.write("migrations/002.sql", "CREATE TABLE b (id int);\n");
    let report = orch.up(&project.parse(&toml)).await.unwrap();
    assert_eq!(results(&report)["migrate"], (Action::Recreate("spec changed".into()), Outcome::Completed));
    assert_eq!(results(&report)["db"].0, Action::Keep);
    assert_eq!(fake.calls_to("create_container s-migrate").len(), 2);

    // A writable mount is the job's workspace too (it may write there): no re-run for that.
    let toml = toml.replace("\"./migrations:/migrations:ro\"", "\"./migrations:/migrations:ro\", \"./work:/work\"");
    project.write("work/out.txt", "1");
    orch.up(&project.parse(&toml)).await.unwrap();
    project.write("work/out.txt", "2");
    let report = orch.up(&project.parse(&toml)).await.unwrap();
    assert_eq!(results(&report)["migrate"], (Action::Keep, Outcome::Completed));
}

#[tokio::test]
async fn a_failed_job_image_fails_the_load_that_waits_for_it() {
    let (fake, orch, _) = setup();
    fake.health("s-db", "healthy");
    fake.fail_on("build_image stagectl-build/migrate", "no space left on device");
    let report = orch.up(&app_project().parse(APP)).await.unwrap();
    let r = results(&report);
    assert_eq!(r["migrate"].1, Outcome::Failed);
    assert_eq!(r["db"].1, Outcome::Failed);
    assert_eq!(service(&report, "db").message.as_deref(), Some("fixtures not loaded: `migrate` failed"));
    assert_eq!((r["install"].1, r["web"].1), (Outcome::Skipped, Outcome::Skipped));
}

#[tokio::test]
async fn every_dependent_of_a_data_service_waits_for_its_fixtures() {
    let (fake, orch, events) = setup();
    fake.health("s-db", "healthy");
    let report = orch.up(&app_project().parse(APP)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    // The load waits for the jobs that depend on db...
    let loaded = marker_written(&fake).expect("the load marker");
    let load = fake.first_call("exec_with_input s-db").unwrap();
    assert!(load > fake.first_call("wait_exit s-migrate").unwrap() && load > fake.first_call("wait_exit s-install").unwrap());
    // ...and web, which depends only on install, starts after the fixtures are in place.
    assert!(fake.first_call("create_container s-web").unwrap() > loaded, "{:#?}", fake.calls());
    let waiting = events.0.lock().unwrap().iter().find(|(s, p, _)| s == "web" && *p == Phase::Waiting).cloned();
    assert_eq!(waiting.unwrap().2, "for install, db's fixtures");
}

#[tokio::test]
async fn a_failed_load_starts_no_dependent_and_status_reports_none_ready() {
    let (fake, orch, _) = setup();
    fake.health("s-db", "healthy");
    let project = app_project();
    fake.exec_results("s-db", &[(3, "psql:<stdin>:1: ERROR:  relation \"users\" does not exist")]);
    let report = orch.up(&project.parse(APP)).await.unwrap();
    assert!(!report.ok);
    let r = results(&report);
    assert_eq!(r["db"].1, Outcome::Failed);
    assert_eq!(r["web"].1, Outcome::Skipped);
    assert_eq!(service(&report, "web").message.as_deref(), Some("not started: `db`'s fixtures are not loaded"));
    assert_eq!(fake.first_call("create_container s-web"), None);

    // With an earlier good load, web is left running; status does not call it ready. (The
    // failed container has no marker: it is replaced.)
    fake.exec_results("s-db", &[(1, ""), (0, "")]);
    let good = orch.up(&project.parse(APP)).await.unwrap();
    assert!(good.ok, "{good:#?}");
    assert_eq!(results(&good)["db"].0, Action::Recreate("fixtures were not loaded completely".into()));
    project.write("data/01_users.sql", "INSERT INTO nowhere VALUES (1);\n");
    fake.exec_results("s-db", &[(3, "ERROR:  relation \"nowhere\" does not exist")]);
    let report = orch.up(&project.parse(APP)).await.unwrap();
    assert_eq!((results(&report)["db"].1, results(&report)["web"].1), (Outcome::Failed, Outcome::Skipped));
    let rows = orch.status(&project.parse(APP)).await.unwrap();
    let row = |name: &str| rows.iter().find(|r| r.service == name).unwrap().clone();
    assert_eq!((row("db").ready, row("db").detail.as_deref()), (false, Some("fixtures not loaded")));
    assert_eq!((row("web").state.as_str(), row("web").ready), ("running", false));
    assert_eq!(row("web").detail.as_deref(), Some("waits for `db`'s fixtures, which are not in place"));
}

#[tokio::test]
async fn waits_that_can_never_all_be_met_are_refused_before_anything_starts() {
    let (fake, orch, _) = setup();
    let project = Project::new(&[("a.sql", ""), ("b.redis", "")]);
    // db's load waits for j, j needs x, x needs kv's data, kv's load waits for k, k needs y,
    // and y needs db's data.
    let m = project.parse(
        r#"
[stack]
name = "s"
[services.db]
image = "pg"
[services.kv]
image = "redis"
[services.y]
image = "app"
depends_on = ["db"]
[services.k]
image = "app"
job = true
depends_on = ["kv", "y"]
[services.x]
image = "app"
depends_on = ["kv"]
[services.j]
image = "app"
job = true
depends_on = ["db", "x"]
[fixtures.db]
files = ["a.sql"]
[fixtures.kv]
loader = "redis"
files = ["b.redis"]
"#,
    );
    let err = orch.up(&m).await.unwrap_err();
    assert!(matches!(err, Error::Preflight(_)));
    assert_eq!(
        err.to_string().lines().next().unwrap(),
        "`db`'s fixtures wait for `j`, which waits for `x`, which waits for `kv`'s fixtures, which wait for `k`, which waits for `y`, which waits for `db`'s fixtures: no start order can satisfy this"
    );
    assert!(fake.calls().is_empty(), "{:#?}", fake.calls());
}

#[tokio::test]
async fn a_service_without_a_probe_that_exits_within_the_settle_window_fails() {
    let (fake, mut orch, events) = setup();
    orch.settle = Duration::from_millis(300);
    let m = parse(WEB);
    let crash = {
        let fake = fake.clone();
        tokio::spawn(async move {
            // The cache runs at first, then crashes (as a process that fails at start does,
            // after the engine reported it started).
            while fake.container("s-cache").is_none_or(|c| c.state != crate::docker::RunState::Running) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            fake.exit_now("s-cache", 1);
        })
    };
    let report = orch.up(&m).await.unwrap();
    crash.await.unwrap();
    assert!(!report.ok);
    assert_eq!(service(&report, "cache").message.as_deref(), Some("container exited with code 1"));
    assert_eq!(service(&report, "app").outcome, Outcome::Ready);
    assert!(report.seconds >= 0.3, "ready only after the window: {}", report.seconds);
    assert!(events.phases_of("app").contains(&Phase::Probing));

    // Kept, still running: no window to wait for again.
    fake.forget_calls();
    let again = orch.up(&m).await.unwrap();
    assert_eq!(results(&again)["app"], (Action::Keep, Outcome::Ready));
    assert_eq!(fake.calls_to("wait_exit s-app"), Vec::<String>::new());
}

/// A MariaDB with the mysql loader: its snapshot goes through the generic path.
const MARIADB: &str = r#"
[stack]
name = "s"
[services.db]
image = "mariadb"
env = { MARIADB_DATABASE = "app" }
ready = { healthcheck = true, timeout = "5s", interval = "10ms" }
[fixtures.db]
loader = "mysql"
files = ["data/*.sql"]
"#;

#[tokio::test]
async fn a_mysql_snapshot_stops_the_service_commits_it_and_brings_it_back_ready() {
    let (fake, orch, _) = setup();
    fake.image("mariadb");
    fake.health("s-db", "healthy");
    let project = Project::new(&[("data/01_users.sql", "CREATE TABLE users (id int);\n")]);
    let first = orch.up(&project.parse(MARIADB)).await.unwrap();
    assert!(first.ok, "{first:#?}");
    assert_eq!(snapshot(&first, "db"), "miss");
    let db = fake.container("s-db").unwrap().id;
    let calls = fake.calls();
    let at = |prefix: &str| calls.iter().rposition(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"));
    let (stop, commit, start) = (at(&format!("stop_container {db}")), at(&format!("commit {db}")), at(&format!("start_container {db}")));
    assert!(marker_written(&fake).unwrap() < stop && stop < commit && commit < start, "{calls:#?}");
    // Probed again after the restart, before the service is reported ready.
    assert!(calls[start..].iter().any(|c| c.starts_with(&format!("container_status {db}"))), "{calls:#?}");
    assert!(matches!(fake.container("s-db").unwrap().state, crate::docker::RunState::Running));

    orch.down("s", true).await.unwrap();
    let rebuilt = orch.up(&project.parse(MARIADB)).await.unwrap();
    assert!(rebuilt.ok);
    assert_eq!(snapshot(&rebuilt, "db"), "hit");
    assert_eq!(fake.container("s-db").unwrap().spec.image, format!("sha256:commit-{db}"));
}

#[tokio::test]
async fn a_postgres_snapshot_is_committed_running_after_a_checkpoint() {
    let (fake, orch, _) = setup();
    fake.health("s-db", "healthy");
    let project = app_project();
    assert!(orch.up(&project.parse(APP)).await.unwrap().ok);
    assert!(fake.calls_to("stop_container").is_empty(), "{:#?}", fake.calls());
    assert!(fake.calls().iter().any(|c| c.contains("CHECKPOINT")));
}

#[tokio::test]
async fn a_changed_fixture_file_is_named_as_the_reason_to_reload() {
    let (fake, orch, _) = setup();
    fake.health("s-db", "healthy");
    let project = app_project();
    assert!(orch.up(&project.parse(APP)).await.unwrap().ok);
    project.write("data/01_users.sql", "INSERT INTO users VALUES (2);\n");
    project.write("data/02_more.sql", "INSERT INTO users VALUES (3);\n");
    let report = orch.up(&project.parse(APP)).await.unwrap();
    assert_eq!(results(&report)["db"].0, Action::Recreate("data/01_users.sql changed, data/02_more.sql added → reloading db".into()));
    // Another input of the key (the masking seed) changed, no file: the general reason.
    let reseeded = APP.replace(r#"files = ["data/*.sql"]"#, "files = [\"data/*.sql\"]\nseed = \"other\"");
    let report = orch.up(&project.parse(&reseeded)).await.unwrap();
    assert_eq!(results(&report)["db"].0, Action::Recreate("spec changed".into()));
}

#[tokio::test]
async fn the_command_loader_may_snapshot_through_the_generic_path() {
    let (fake, orch, _) = setup();
    fake.image("mariadb");
    fake.health("s-db", "healthy");
    let project = Project::new(&[("data/01_users.sql", "CREATE TABLE users (id int);\n")]);
    let toml = MARIADB.replace(r#"loader = "mysql""#, "loader = \"command\"\ncommand = [\"mariadb\", \"app\"]\nsnapshot = true");
    let first = orch.up(&project.parse(&toml)).await.unwrap();
    assert!(first.ok, "{first:#?}");
    assert_eq!(snapshot(&first, "db"), "miss");
    assert_eq!(fake.calls_to("stop_container").len(), 1, "{:#?}", fake.calls());
    orch.down("s", true).await.unwrap();
    assert_eq!(snapshot(&orch.up(&project.parse(&toml)).await.unwrap(), "db"), "hit");
}

#[tokio::test]
async fn a_job_kept_in_the_snapshot_says_the_volume_it_writes_was_kept() {
    let (fake, orch, events) = setup();
    fake.health("s-db", "healthy");
    let project = app_project();
    let toml = APP.replace("[services.install]\nimage = \"pg\"", "[services.install]\nimage = \"pg\"\nvolumes = [\"config:/config\"]");
    assert!(orch.up(&project.parse(&toml)).await.unwrap().ok);
    orch.down("s", false).await.unwrap();
    let rebuilt = orch.up(&project.parse(&toml)).await.unwrap();
    assert_eq!(snapshot(&rebuilt, "db"), "hit");
    let kept: Vec<String> =
        events.0.lock().unwrap().iter().filter(|(s, p, _)| s == "install" && *p == Phase::Kept).map(|(_, _, d)| d.clone()).collect();
    assert_eq!(
        kept.last().map(String::as_str),
        Some("contained in `db`'s loaded data; volume `config` it writes is not in the snapshot: it keeps what the job's last run left there, if anything")
    );
}

/// The LRU prune runs after the snapshot is saved: its failure is a warning about the prune,
/// not "snapshot not taken" (RELIABILITY finding 10).
#[tokio::test]
async fn a_failed_prune_after_a_snapshot_is_not_reported_as_a_snapshot_not_taken() {
    let (fake, orch, events) = setup();
    fake.health("s-db", "healthy");
    fake.fail_on("list_images org.stagectl.snapshot", "database disk image is malformed");
    let report = orch.up(&app_project().parse(APP)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    let db: Vec<String> = events.0.lock().unwrap().iter().filter(|(s, _, _)| s == "db").map(|(_, _, d)| d.clone()).collect();
    assert!(db.iter().any(|d| d.starts_with("snapshot saved as")), "{db:?}");
    assert!(!db.iter().any(|d| d.contains("snapshot not taken")), "{db:?}");
    assert!(db.iter().any(|d| d.starts_with("warning: older snapshots not pruned") && d.contains("malformed")), "{db:?}");
}
