//! PostgreSQL fixture snapshots saved off the critical path (a throwaway server replays the
//! load's WAL to a restore point, is stopped cleanly and committed), on an image that
//! initialises its cluster on first start and keeps it in a declared volume, as the official
//! image does.

use crate::harness::*;

/// `app` starts as soon as `db` is ready and writes a row at once: the snapshot, saved after
/// that, must not hold it (else the app's insert fails on the primary key after a restore).
const STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres-firststart:15"
env = { POSTGRES_DB = "app", POSTGRES_PASSWORD = "${secret:pgpass}" }
ready = { postgres = 5432, timeout = "120s" }

[services.schema]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
env = { PGPASSWORD = "${secret:pgpass}" }
entrypoint = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "db", "-U", "postgres", "-d", "app", "-c", "CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL)"]

[services.app]
image = "stagectl/postgres:15"
depends_on = ["db"]
env = { PGPASSWORD = "${secret:pgpass}" }
entrypoint = ["sh", "-c", "psql -X -v ON_ERROR_STOP=1 -h db -U postgres -d app -c \"INSERT INTO users VALUES (999999, 'written after the load')\" && exec sleep 3600"]

[fixtures.db]
files = ["users.csv"]
after = ["schema"]
"#;

const SECRET: &str = "pg-secret-for-snapshot-tests";
const ROWS: usize = 3000;

fn stack(tag: &str) -> Stack {
    let s = Stack::new(tag, STACK);
    std::fs::write(s.path("secrets.env"), format!("pgpass={SECRET}\n")).unwrap();
    let mut csv = String::from("id,name\n");
    for i in 1..=ROWS {
        csv.push_str(&format!("{i},user {i}\n"));
    }
    std::fs::write(s.path("users.csv"), csv).unwrap();
    s
}

fn service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap()
}

fn users(stack: &Stack) -> String {
    let out = docker(&[
        "exec",
        &format!("{}-db", stack.name),
        "psql",
        "-X",
        "-At",
        "-U",
        "postgres",
        "-d",
        "app",
        "-c",
        "SELECT count(*), max(id) FROM users",
    ]);
    out.trim().to_string()
}

/// Both streams of a container's output.
fn container_logs(name: &str) -> String {
    let out = std::process::Command::new("docker").args(["logs", name]).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_postgres_snapshot_is_saved_in_the_background_and_restores_without_crash_recovery() {
    require_docker!();
    let stack = stack("pgsnap");
    let first = stack.up_ok();
    let db = service(&first, "db");
    assert_eq!(db["fixtures"]["snapshot"], "miss", "saved in the background: {db}");
    assert!(db["fixtures"]["snapshot_seconds"].as_f64().is_some(), "{db}");
    assert!(first["ready_seconds"].as_f64().unwrap() <= first["seconds"].as_f64().unwrap(), "{first}");
    assert_eq!(users(&stack), format!("{}|999999", ROWS + 1), "the live database has the load and the app's row");

    // The throwaway server is gone, the live server keeps no replication slot (it would hold
    // every WAL segment forever), and the snapshot image holds no secret.
    let names = docker(&["ps", "-a", "--filter", &format!("label=org.stagectl.stack={}", stack.name), "--format", "{{.Names}}"]);
    assert!(!names.contains("snapshot"), "{names}");
    assert_eq!(stack.owned_resources().2, 0, "the throwaway server's volume is removed");
    let slots = docker(&[
        "exec",
        &format!("{}-db", stack.name),
        "psql",
        "-X",
        "-At",
        "-U",
        "postgres",
        "-d",
        "app",
        "-c",
        "SELECT count(*) FROM pg_replication_slots",
    ]);
    assert_eq!(slots.trim(), "0");
    let image = docker(&[
        "images",
        "-q",
        "--filter",
        &format!("label=org.stagectl.stack={}", stack.name),
        "--filter",
        "label=org.stagectl.snapshot",
    ]);
    let image = image.lines().next().expect("a snapshot image").to_string();
    let config = docker(&["image", "inspect", &image, "--format", "{{json .Config.Env}} {{json .Config.Labels}}"]);
    assert!(!config.contains(SECRET), "{config}");
    assert!(config.contains("org.stagectl.snapshot-pgdata"), "the data moved out of the declared volume: {config}");

    // A rebuild restores it: exactly the load (the app's row of the first run is not in it, or
    // its insert would fail now), from a cleanly shut down cluster.
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0), "rebuild failed");
    let rebuilt = last_json(&out);
    let db = service(&rebuilt, "db");
    assert_eq!(db["fixtures"]["snapshot"], "hit", "{db}");
    assert!(db["fixtures"]["restore_to_ready_seconds"].as_f64().is_some(), "restore → ready is reported: {db}");
    assert_eq!(service(&rebuilt, "app")["outcome"], "ready");
    assert_eq!(users(&stack), format!("{}|999999", ROWS + 1));
    let logs = container_logs(&format!("{}-db", stack.name));
    assert!(logs.contains("database system was shut down at"), "{logs}");
    assert!(!logs.contains("not properly shut down") && !logs.contains("automatic recovery"), "{logs}");
    assert!(!logs.contains("initdb") && !logs.contains("creating database"), "no new cluster: {logs}");

    let out = stack.run(&["down", "--volumes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.owned_resources(), (0, 0, 0));
}

#[test]
fn a_data_directory_on_a_named_volume_is_loaded_but_never_snapshotted() {
    require_docker!();
    let manifest = STACK.replace(
        "ready = { postgres = 5432, timeout = \"120s\" }",
        "ready = { postgres = 5432, timeout = \"120s\" }\nvolumes = [\"pgdata:/var/lib/postgresql/data\"]",
    );
    let stack = Stack::new("pgvol", &manifest);
    std::fs::write(stack.path("secrets.env"), format!("pgpass={SECRET}\n")).unwrap();
    std::fs::write(stack.path("users.csv"), "id,name\n1,one\n2,two\n").unwrap();
    let first = stack.up_ok();
    assert_eq!(service(&first, "db")["fixtures"]["snapshot"], "off", "a commit cannot hold a volume");
    let images = docker(&[
        "images",
        "-q",
        "--filter",
        &format!("label=org.stagectl.stack={}", stack.name),
        "--filter",
        "label=org.stagectl.snapshot",
    ]);
    assert!(images.trim().is_empty(), "{images}");
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(service(&last_json(&out), "db")["fixtures"]["snapshot"], "off");
    assert_eq!(users(&stack), "3|999999", "loaded again, not restored empty");
}
