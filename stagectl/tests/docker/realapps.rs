//! Issue 10, on real applications: a migrate job built from a context that holds the
//! migrations, dependents of a data service two hops away, and a service without a probe that
//! exits at start.

use crate::harness::*;

const PG_READY: &str = r#"ready = { exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "app"], timeout = "30s" }"#;
const PSQL: &str = r#""psql", "-h", "db", "-U", "postgres", "-d", "app", "-v", "ON_ERROR_STOP=1", "-q""#;

fn service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap()
}

/// Images built for one test (labelled with its stack name), removed when it ends.
struct BuiltImages(String);

impl Drop for BuiltImages {
    fn drop(&mut self) {
        for id in docker(&["images", "-q", "--filter", &format!("label=test.stack={}", self.0)]).lines() {
            let _ = std::process::Command::new("docker").args(["rmi", "-f", id]).output();
        }
    }
}

#[test]
fn a_new_migration_in_a_job_image_is_applied_and_rebuild_restores_no_stale_snapshot() {
    require_docker!();
    let stack = Stack::new(
        "jobimg",
        &format!(
            r#"
[stack]
name = "{{stack}}"
[services.db]
image = "stagectl/postgres:15"
env = {{ POSTGRES_DB = "app" }}
{PG_READY}
[services.migrate]
build = "./migrate"
job = true
depends_on = ["db"]
command = [{PSQL}, "-f", "/schema.sql"]
[fixtures.db]
files = ["data/*.sql"]
"#
        ),
    );
    let _images = BuiltImages(stack.name.clone());
    std::fs::create_dir_all(stack.path("migrate")).unwrap();
    std::fs::create_dir_all(stack.path("data")).unwrap();
    let dockerfile = format!("FROM stagectl/postgres:15\nLABEL test.stack={}\nCOPY schema.sql /schema.sql\n", stack.name);
    std::fs::write(stack.path("migrate/Dockerfile"), dockerfile).unwrap();
    let schema = "CREATE TABLE IF NOT EXISTS users (id int);\n";
    std::fs::write(stack.path("migrate/schema.sql"), schema).unwrap();
    std::fs::write(stack.path("data/01_users.sql"), "INSERT INTO users VALUES (1);\n").unwrap();
    let first = stack.up_ok();
    assert_eq!(service(&first, "db")["fixtures"]["snapshot"], "miss");
    let audit = |s: &Stack| sql(s, "app", "SELECT to_regclass('audit') IS NOT NULL").trim().to_string();
    assert_eq!(audit(&stack), "f");

    // A new migration in the job's build context: a new image, so the load's state changes.
    std::fs::write(stack.path("migrate/schema.sql"), format!("{schema}CREATE TABLE IF NOT EXISTS audit (id int);\n")).unwrap();
    let migrated = stack.up_ok();
    assert_eq!(audit(&stack), "t", "the new migration is applied");
    assert_eq!(service(&migrated, "migrate")["outcome"], "completed");
    assert_ne!(service(&migrated, "migrate")["action"]["action"], "keep", "{migrated}");
    assert_eq!(service(&migrated, "db")["fixtures"]["snapshot"], "miss", "the old snapshot lacks the migration");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM users").trim(), "1");

    // rebuild restores the new state, not the stale snapshot of the first image.
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    let rebuilt = last_json(&out);
    assert_eq!(service(&rebuilt, "db")["fixtures"]["snapshot"], "hit");
    assert_eq!(audit(&stack), "t", "rebuild restored a snapshot taken before the migration");
}

#[test]
fn dependents_two_hops_away_wait_for_the_fixtures_and_a_failed_load_starts_none() {
    require_docker!();
    let stack = Stack::new(
        "depwait",
        &format!(
            r#"
[stack]
name = "{{stack}}"
[services.db]
image = "stagectl/postgres:15"
env = {{ POSTGRES_DB = "app" }}
{PG_READY}
[services.install]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
command = [{PSQL}, "-c", "CREATE TABLE IF NOT EXISTS users (id int, email text)"]
[services.web]
image = "stagectl/postgres:15"
depends_on = ["install"]
entrypoint = ["sh", "-c"]
command = ["psql -h db -U postgres -d app -tA -c 'SELECT count(*) FROM users' > /tmp/seen && exec sleep infinity"]
[fixtures.db]
files = ["data/*.csv"]
"#
        ),
    );
    std::fs::create_dir_all(stack.path("data")).unwrap();
    let broken = "id,email\n1,a@example.com\n2,b@example.com,extra\n";
    std::fs::write(stack.path("data/users.csv"), broken).unwrap();

    // The load fails: web, which depends on db only through install, is never started.
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let report = last_json(&out);
    assert_eq!(service(&report, "db")["outcome"], "failed");
    assert_eq!(service(&report, "web")["outcome"], "skipped");
    assert_eq!(service(&report, "web")["message"], "not started: `db`'s fixtures are not loaded");
    assert!(!stack.container_ids().contains_key("web"), "web was started before db's fixtures loaded");
    let status = stack.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(1));
    let rows = last_json(&status);
    assert!(rows.as_array().unwrap().iter().filter(|r| r["service"] != "install").all(|r| r["ready"] == false), "{rows}");

    // Fixed: web starts after the load and sees the rows.
    std::fs::write(stack.path("data/users.csv"), "id,email\n1,a@example.com\n2,b@example.com\n").unwrap();
    let ok = stack.up_ok();
    assert_eq!(service(&ok, "web")["outcome"], "ready");
    let seen = docker(&["exec", &format!("{}-web", stack.name), "cat", "/tmp/seen"]);
    assert_eq!(seen.trim(), "2", "web started before the fixtures were in");

    // Broken again: web's container from the last run stays, but is not called ready.
    std::fs::write(stack.path("data/users.csv"), broken).unwrap();
    assert_eq!(stack.run(&["up"]).status.code(), Some(1));
    let status = stack.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(1));
    let rows = last_json(&status);
    let web = rows.as_array().unwrap().iter().find(|r| r["service"] == "web").unwrap();
    assert_eq!((web["state"].as_str(), web["ready"].as_bool()), (Some("running"), Some(false)), "{rows}");
    assert_eq!(web["detail"], "waits for `db`'s fixtures, which are not in place");
}

#[test]
fn a_service_without_a_probe_that_exits_at_start_fails_every_time() {
    require_docker!();
    let stack = Stack::new(
        "exit1",
        r#"
[stack]
name = "{stack}"
[services.crash]
image = "stagectl/debian:bookworm"
command = ["sh", "-c", "exit 1"]
"#,
    );
    for run in 1..=16 {
        let out = stack.run(&["up"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "run {run}: a service that exited was reported ready");
        assert!(err.contains("crash FAILED: container exited with code 1"), "run {run}: {err}");
    }
}

/// Issue 10 (1d): two services sharing one build context get one build and one image.
#[test]
fn two_services_sharing_a_build_context_build_it_once_and_run_the_same_image() {
    require_docker!();
    // Declared first, so dropped last: after the stack's containers are gone.
    let _images;
    let stack = Stack::new(
        "shared",
        r#"
[stack]
name = "{stack}"
[services.api]
build = "./app"
image = "{stack}-app:dev"
[services.worker]
build = "./app"
command = ["sh", "-c", "exec sleep infinity"]
"#,
    );
    _images = BuiltImages(stack.name.clone());
    std::fs::create_dir_all(stack.path("app")).unwrap();
    let dockerfile =
        format!("FROM stagectl/debian:bookworm\nLABEL test.stack={}\nCOPY main.sh /main.sh\nCMD [\"sh\", \"/main.sh\"]\n", stack.name);
    std::fs::write(stack.path("app/Dockerfile"), dockerfile).unwrap();
    std::fs::write(stack.path("app/main.sh"), "exec sleep infinity\n").unwrap();

    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let builds: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            e["event"] == "phase" && e["phase"] == "building" && e["detail"].as_str().is_some_and(|d| d.starts_with("docker build"))
        })
        .collect();
    assert_eq!(builds.len(), 1, "the shared context is built once: {builds:#?}");

    let ids = stack.container_ids();
    let image = |service: &str| docker(&["inspect", "-f", "{{.Image}}", &ids[service]]).trim().to_string();
    assert_eq!(image("api"), image("worker"), "both services run the one image");
    let tagged = docker(&["image", "inspect", "-f", "{{.Id}}", &format!("{}-app:dev", stack.name)]);
    assert_eq!(tagged.trim(), image("api"), "the user's tag names the image both run");
    // The build carries the stack's label, so `down` and prune can find it.
    let label = docker(&["image", "inspect", "-f", "{{index .Config.Labels \"org.stagectl.stack\"}}", &image("api")]);
    assert_eq!(label.trim(), stack.name);

    // `status` shows the user's tag for the built service.
    let status = stack.run(&["--json", "status"]);
    let rows = last_json(&status);
    let api = rows.as_array().unwrap().iter().find(|r| r["service"] == "api").unwrap();
    assert_eq!(api["image"], format!("{}-app:dev", stack.name), "{rows}");
}
