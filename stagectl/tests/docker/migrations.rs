//! Migrations applied by stagectl and `stagectl check migrations`, on real PostgreSQL.

use crate::harness::*;

const DB: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app" }
ready = { postgres = 5432, timeout = "30s" }

[migrations.db]
dir = "migrations"
"#;

fn write(stack: &Stack, rel: &str, body: &str) {
    let p = stack.path(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// The check results by name, from `check migrations --json`.
fn check(stack: &Stack) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = stack.run(&["--json", "check", "migrations"]);
    let report = last_json(&out);
    (out.status.code(), report["checks"].as_array().cloned().unwrap_or_default())
}

fn find<'a>(results: &'a [serde_json::Value], prefix: &str) -> &'a serde_json::Value {
    results
        .iter()
        .find(|r| r["name"].as_str().unwrap_or("").starts_with(prefix))
        .unwrap_or_else(|| panic!("no result starting with {prefix:?} in {results:#?}"))
}

fn passed(r: &serde_json::Value) -> bool {
    r["outcome"] == "passed"
}

#[test]
fn lock_probe_catches_a_table_rewrite_on_100k_rows_and_passes_an_additive_migration() {
    require_docker!();
    let stack = Stack::new("mig-lock", &format!("{DB}lock_budget = \"200ms\"\n\n[fixtures.db]\nfiles = [\"fixtures/*.sql\"]\n"));
    write(&stack, "migrations/001_events.up.sql", "CREATE TABLE events (id int PRIMARY KEY, n int NOT NULL, payload text);\n");
    write(&stack, "migrations/001_events.down.sql", "DROP TABLE events;\n");
    write(&stack, "fixtures/events.sql", "INSERT INTO events SELECT g, g, repeat('x', 200) FROM generate_series(1, 100000) g;\n");
    let report = stack.up_ok();
    let db = report["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap().clone();
    assert_eq!(db["migrations_applied"][0][0], "001_events", "{db}");
    let history = sql(&stack, "app", "SELECT version || ' ' || name || ' ' || length(checksum) FROM stagectl_migrations");
    assert_eq!(history.trim(), "001 001_events 64");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM events").trim(), "100000");

    // A rewrite (int → bigint takes ACCESS EXCLUSIVE and rewrites table and index) and an
    // additive change (nullable column: a lock of a few ms).
    write(&stack, "migrations/002_widen.up.sql", "ALTER TABLE events ALTER COLUMN n TYPE bigint;\n");
    write(&stack, "migrations/002_widen.down.sql", "ALTER TABLE events ALTER COLUMN n TYPE int;\n");
    write(&stack, "migrations/003_note.up.sql", "SET lock_timeout = '2s';\nALTER TABLE events ADD COLUMN note text;\n");
    write(&stack, "migrations/003_note.down.sql", "ALTER TABLE events DROP COLUMN note;\n");
    let (code, results) = check(&stack);
    assert_eq!(code, Some(1));
    let lint = find(&results, "lint migrations/002_widen.up.sql");
    assert!(!passed(lint) && lint["message"].as_str().unwrap().contains("[changing-column-type]"), "{lint}");
    let rewrite = find(&results, "apply migrations/002_widen.up.sql");
    let msg = rewrite["message"].as_str().unwrap();
    assert!(!passed(rewrite), "{rewrite}");
    assert!(msg.contains("on public.events") && msg.contains("blocks reads or writes longer than the budget"), "{msg}");
    let additive = find(&results, "apply migrations/003_note.up.sql");
    assert!(passed(additive), "{additive}");
    assert!(passed(find(&results, "lint migrations/003_note.up.sql")));
    assert!(passed(find(&results, "drift migrations")));
    let round_trip = find(&results, "round trip migrations (002_widen, 003_note)");
    assert!(passed(round_trip), "{round_trip}");

    // All of it happened on a copy: the running database is as it was.
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM stagectl_migrations").trim(), "1");
    assert_eq!(
        sql(&stack, "app", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'note'").trim(),
        "0"
    );
    let leftovers = docker(&["ps", "-a", "--filter", &format!("label=org.stagectl.stack={}", stack.name), "--format", "{{.Names}}"]);
    assert!(!leftovers.contains("mcheck"), "copy left behind: {leftovers}");
}

#[test]
fn broken_down_migration_fails_the_round_trip_and_an_edited_applied_migration_fails_drift() {
    require_docker!();
    let stack = Stack::new("mig-rt", DB);
    write(&stack, "migrations/001_accounts.up.sql", "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);\n");
    write(&stack, "migrations/001_accounts.down.sql", "DROP TABLE accounts;\n");
    stack.up_ok();

    // A down migration that forgets to undo its up: the second up fails.
    write(&stack, "migrations/002_plan.up.sql", "SET lock_timeout = '2s';\nALTER TABLE accounts ADD COLUMN plan text;\n");
    write(&stack, "migrations/002_plan.down.sql", "SELECT 1;\n");
    let (code, results) = check(&stack);
    assert_eq!(code, Some(1));
    assert!(passed(find(&results, "apply migrations/002_plan.up.sql")));
    let rt = find(&results, "round trip migrations (002_plan)");
    let msg = rt["message"].as_str().unwrap();
    assert!(!passed(rt), "{rt}");
    assert!(msg.contains("do not restore the schema") && msg.contains("+    plan text") || msg.contains("already exists"), "{msg}");

    // A correct down passes.
    write(&stack, "migrations/002_plan.down.sql", "ALTER TABLE accounts DROP COLUMN plan;\n");
    let (code, results) = check(&stack);
    assert_eq!(code, Some(0), "{results:#?}");

    // `up` applies 002; then 001 is edited after the fact.
    let report = stack.up_ok();
    assert_eq!(report["services"][0]["migrations_applied"][0][0], "002_plan", "{report}");
    write(&stack, "migrations/001_accounts.up.sql", "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);\n");
    let (code, results) = check(&stack);
    assert_eq!(code, Some(1));
    let drift = find(&results, "drift migrations");
    assert!(!passed(drift), "{drift}");
    assert!(drift["message"].as_str().unwrap().contains("migrations/001_accounts.up.sql changed after it was applied"), "{drift}");
    // `up` refuses too, naming the file, and leaves the database running.
    let out = stack.run(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("001_accounts.up.sql changed after it was applied"), "{}", stderr(&out));
}

#[test]
fn command_form_runs_the_teams_migration_job_against_a_copy() {
    require_docker!();
    let stack = Stack::new(
        "mig-job",
        r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "shop" }
ready = { postgres = 5432, timeout = "30s" }

[services.migrate]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
entrypoint = ["/bin/sh", "/migrate.sh"]
volumes = ["{repo}/demo/shop/migrate.sh:/migrate.sh:ro", "./migrations:/migrations:ro"]

[migrations.db]
dir = "migrations"
job = "migrate"
"#,
    );
    write(&stack, "migrations/001_items.up.sql", "CREATE TABLE items (id int PRIMARY KEY);\n");
    stack.up_ok();
    write(&stack, "migrations/002_items_name.up.sql", "SET lock_timeout = '2s';\nALTER TABLE items ADD COLUMN name text;\n");
    let (code, results) = check(&stack);
    assert_eq!(code, Some(0), "{results:#?}");
    let apply = find(&results, "apply (job `migrate`)");
    assert!(apply["message"].as_str().unwrap().contains("`migrate` applied the migrations"), "{apply}");
    // The team's tool ran against the copy: the live database has no `name` column yet.
    assert_eq!(
        sql(&stack, "shop", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'name'").trim(),
        "0"
    );

    // A failing migration fails the check with the tool's output.
    write(&stack, "migrations/003_broken.up.sql", "ALTER TABLE nope ADD COLUMN x int;\n");
    let (code, results) = check(&stack);
    assert_eq!(code, Some(1));
    let apply = find(&results, "apply (job `migrate`)");
    assert!(apply["message"].as_str().unwrap().contains("relation \"nope\" does not exist"), "{apply}");
}

/// Names of the stack's containers and of the copy images labelled with it (Docker CLI).
fn copies_left(stack: &Stack) -> (Vec<String>, Vec<String>) {
    let label = format!("label=org.stagectl.stack={}", stack.name);
    let containers = docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]);
    let images = docker(&["images", "--filter", &label, "--format", "{{.Repository}}:{{.Tag}}"]);
    let mcheck = |text: &str| text.lines().filter(|l| l.contains("mcheck")).map(str::to_string).collect::<Vec<_>>();
    (mcheck(&containers), mcheck(&images))
}

#[test]
fn a_check_killed_mid_copy_leaves_nothing_that_up_and_down_do_not_remove() {
    require_docker!();
    let stack = Stack::new("mig-kill", DB);
    write(&stack, "migrations/001_t.up.sql", "CREATE TABLE t (id int PRIMARY KEY);\n");
    write(&stack, "migrations/001_t.down.sql", "DROP TABLE t;\n");
    stack.up_ok();
    // No fixture snapshot: the check commits the live database into a copy image first.
    let mut child = std::process::Command::new(BIN)
        .arg("-f")
        .arg(stack.path("stack.toml"))
        .args(["check", "migrations"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while copies_left(&stack).0.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no copy container appeared");
        assert!(child.try_wait().unwrap().is_none(), "the check ended before its copy was seen");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    child.wait().unwrap();
    let (containers, images) = copies_left(&stack);
    assert!(!containers.is_empty() && !images.is_empty(), "the kill came too late to test anything: {containers:?} {images:?}");

    // The next check starts by removing what the killed one left, and passes.
    let (code, results) = check(&stack);
    assert_eq!(code, Some(0), "{results:#?}");
    assert_eq!(copies_left(&stack), (vec![], vec![]));

    // And `down -v` removes a leftover copy image too.
    docker(&[
        "commit",
        "--change",
        &format!("LABEL org.stagectl.stack={}", stack.name),
        &stack.container_ids()["db"],
        "stagectl-mcheck/db:leftover",
    ]);
    let out = stack.run(&["down", "-v"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(copies_left(&stack), (vec![], vec![]));
}
