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
    sql(stack, "app", "SELECT count(*), max(id) FROM users").trim().to_string()
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
    let slots = sql(&stack, "app", "SELECT count(*) FROM pg_replication_slots");
    assert_eq!(slots.trim(), "0");
    let image = stack.snapshot_images();
    let image = image.lines().next().expect("a snapshot image").to_string();
    let config = docker(&["image", "inspect", &image, "--format", "{{json .Config.Env}} {{json .Config.Labels}}"]);
    assert!(!config.contains(SECRET), "{config}");
    assert!(config.contains(stagectl::orchestrator::PGDATA_LABEL), "the data moved out of the declared volume: {config}");

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

    // The image's anonymous volumes (its `VOLUME` on PGDATA) go with their containers.
    let anonymous = |s: &Stack| {
        let ids = s.container_ids().into_values().collect::<Vec<_>>();
        ids.iter()
            .flat_map(|id| {
                docker(&["inspect", id, "--format", "{{range .Mounts}}{{.Name}} {{end}}"])
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let volumes = anonymous(&stack);
    assert!(!volumes.is_empty(), "the db has its image's volume");
    let out = stack.run(&["down", "--volumes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.owned_resources(), (0, 0, 0));
    let left: Vec<&String> =
        volumes.iter().filter(|v| !docker(&["volume", "ls", "-q", "--filter", &format!("name={v}")]).trim().is_empty()).collect();
    assert!(left.is_empty(), "anonymous volumes left behind: {left:?}");
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
    let images = stack.snapshot_images();
    assert!(images.trim().is_empty(), "{images}");
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(service(&last_json(&out), "db")["fixtures"]["snapshot"], "off");
    assert_eq!(users(&stack), "3|999999", "loaded again, not restored empty");
}

/// Ctrl-C while the snapshot is saved in the background: no snapshot is tagged (nothing half
/// made is ever used), and the next `up` keeps the loaded database, drops the slot the cut run
/// left (it would keep every WAL segment), removes the throwaway container, and is ready.
#[test]
fn a_snapshot_cut_short_is_discarded_and_the_next_up_cleans_up_after_it() {
    require_docker!();
    let stack = stack("pgcut");
    let child = std::process::Command::new(BIN)
        .arg("-f")
        .arg(stack.path("stack.toml"))
        .arg("up")
        .env_remove("STAGECTL_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The restore point is set once the throwaway server exists and the app may start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let replaying = || !docker(&["ps", "-a", "--filter", &format!("name={}-db.snapshot-replay", stack.name), "-q"]).trim().is_empty();
    let app_up = || stack.container_ids().contains_key("app");
    while !(replaying() && app_up()) {
        assert!(std::time::Instant::now() < deadline, "the snapshot never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let tagged = stack.snapshot_images();
    assert!(tagged.trim().is_empty(), "a cut snapshot was kept: {tagged}");

    let again = stack.up_ok();
    let db = service(&again, "db");
    assert_eq!(db["action"]["action"], "keep", "{db}");
    assert_eq!(db["fixtures"]["snapshot"], "kept");
    let slots = sql(&stack, "app", "SELECT count(*) FROM pg_replication_slots");
    assert_eq!(slots.trim(), "0", "the cut run's slot is dropped");
    let names = docker(&["ps", "-a", "--filter", &format!("label=org.stagectl.stack={}", stack.name), "--format", "{{.Names}}"]);
    assert!(!names.contains("snapshot"), "the throwaway container is an orphan the next up removes: {names}");
    assert_eq!(users(&stack), format!("{}|999999", ROWS + 1));
    let out = stack.run(&["down", "--volumes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.owned_resources(), (0, 0, 0), "down --volumes removes the throwaway server's volume too");
}
