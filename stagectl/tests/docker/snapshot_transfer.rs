//! `snapshots export` / `snapshots import`: a stack's snapshots carried to an engine that lacks
//! them (here: the same engine after they were removed) make the next `up` a hit.

use std::process::Command;

use crate::harness::*;

const STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app", CANARY = "${secret:canary}" }
ready = { exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "app"], timeout = "30s" }

[services.migrate]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
command = ["psql", "-h", "db", "-U", "postgres", "-d", "app", "-v", "ON_ERROR_STOP=1", "-q", "-f", "/schema.sql"]
volumes = ["./schema.sql:/schema.sql:ro"]

[services.cache]
image = "stagectl/redis:7"
ready = { tcp = 6379 }

[fixtures.db]
files = ["data/*.csv"]

[fixtures.cache]
loader = "redis"
files = ["cache/*.redis"]
"#;

const CANARY: &str = "canary-secret-4f1c9e";

fn transfer_stack(tag: &str) -> Stack {
    let s = Stack::new(tag, STACK);
    std::fs::write(s.path("secrets.env"), format!("canary={CANARY}\n")).unwrap();
    std::fs::write(s.path("schema.sql"), "CREATE TABLE IF NOT EXISTS users (id bigserial PRIMARY KEY, email text);\n").unwrap();
    std::fs::create_dir_all(s.path("data")).unwrap();
    std::fs::create_dir_all(s.path("cache")).unwrap();
    std::fs::write(s.path("data/users.csv"), "email\na@example.org\nb@example.org\nc@example.org\n").unwrap();
    std::fs::write(s.path("cache/warm.redis"), "SET greeting hello\n").unwrap();
    s
}

fn snapshot_state(report: &serde_json::Value, service: &str) -> String {
    let s = report["services"].as_array().unwrap().iter().find(|s| s["service"] == service).unwrap();
    s["fixtures"]["snapshot"].as_str().unwrap_or_default().to_string()
}

fn stack_snapshots(stack: &Stack) -> Vec<String> {
    let filter = format!("label=org.stagectl.stack={}", stack.name);
    let out = docker(&["images", "--filter", &filter, "--filter", &snapshot_filter(), "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut refs: Vec<String> = out.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    refs.sort();
    refs
}

/// Removes image tags a test created outside any stack's labels, also on panic.
struct Tags(Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", t]).output();
        }
    }
}

#[test]
fn exported_snapshots_imported_where_they_are_missing_make_up_a_hit_without_the_secret() {
    require_docker!();
    let stack = transfer_stack("snapx");
    let first = stack.up_ok();
    assert_eq!(snapshot_state(&first, "db"), "miss");
    // Redis keeps nothing on disk: its fixtures are reloaded, never snapshotted or exported.
    assert_eq!(snapshot_state(&first, "cache"), "off");
    let taken = stack_snapshots(&stack);
    assert_eq!(taken.len(), 1, "{taken:?}");

    let file = stack.path("snapshots.tar");
    let out = stack.run(&["--json", "snapshots", "export", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let report = last_json(&out);
    let exported: Vec<&str> = report["snapshots"].as_array().unwrap().iter().map(|s| s["reference"].as_str().unwrap()).collect();
    let mut exported: Vec<String> = exported.into_iter().map(String::from).collect();
    exported.sort();
    assert_eq!(exported, taken, "the snapshots `up` keys now: {report}");
    assert!(report["snapshots"].as_array().unwrap().iter().all(|s| s["how"] == "current"), "{report}");
    assert!(std::fs::metadata(&file).unwrap().len() > 1_000_000);
    assert_eq!(report["bytes"].as_u64(), Some(std::fs::metadata(&file).unwrap().len()));

    // Which snapshot is exported: changed fixtures have none yet (refused, nothing written)...
    let other = stack.path("other.tar");
    std::fs::write(stack.path("data/users.csv"), "email\na@example.org\n").unwrap();
    let out = stack.run(&["snapshots", "export", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("service `db`: no snapshot to export"), "{}", stderr(&out));
    assert!(!other.exists());
    // ...`--all` takes the stack's snapshots whatever the manifest keys now...
    let out = stack.run(&["--json", "snapshots", "export", "--all", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let all = last_json(&out);
    assert_eq!(all["snapshots"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["snapshots"][0]["how"], "all");
    // ...and a key that needs a pull falls back to the most recently used one, saying so.
    std::fs::write(stack.path("data/users.csv"), "email\na@example.org\nb@example.org\nc@example.org\n").unwrap();
    stack.write_manifest(&STACK.replacen("stagectl/postgres:15", "stagectl/postgres:no-such-tag", 1));
    let out = stack.run(&["--json", "snapshots", "export", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let latest = last_json(&out);
    assert_eq!(latest["snapshots"][0]["how"], "latest", "{latest}");
    assert!(latest["notes"][0].as_str().unwrap().contains("would be pulled"), "{latest}");
    stack.write_manifest(STACK);
    std::fs::remove_file(&other).unwrap();

    // A runner without them: no containers, no snapshots.
    assert_eq!(stack.run(&["down", "--volumes"]).status.code(), Some(0));
    for r in &taken {
        docker(&["rmi", "-f", r]);
    }
    assert!(stack_snapshots(&stack).is_empty());

    let out = stack.run(&["--json", "snapshots", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let report = last_json(&out);
    let mut services: Vec<&str> = report["snapshots"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    services.sort();
    assert_eq!(services, ["db"], "{report}");
    assert_eq!(stack_snapshots(&stack), taken);

    // The secret is not in the imported image's metadata (env cleared at commit).
    let db_ref = taken.iter().find(|r| r.starts_with(&snapshot_tag_prefix("db"))).unwrap();
    let inspect = docker(&["image", "inspect", db_ref]);
    assert!(inspect.contains(SNAPSHOT_KEY_LABEL), "{inspect}");
    assert!(!inspect.contains(CANARY), "the imported snapshot holds the secret");

    let warm = stack.up_ok();
    assert_eq!(snapshot_state(&warm, "db"), "hit", "{warm}");
    assert_eq!(snapshot_state(&warm, "cache"), "off", "{warm}");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM users").trim(), "3");
}

#[test]
fn an_archive_that_is_not_a_snapshot_is_refused_and_nothing_of_it_stays() {
    require_docker!();
    let stack = transfer_stack("snapno");
    // An image tagged like a snapshot but without its labels: loaded, checked, removed.
    let fake_ref = format!("{}0123456789abcdef01234567", snapshot_tag_prefix(&stack.name));
    let guard = Tags(vec![fake_ref.clone()]);
    std::fs::create_dir_all(stack.path("ctx")).unwrap();
    std::fs::write(stack.path("ctx/Dockerfile"), "FROM scratch\nCOPY x /x\n").unwrap();
    std::fs::write(stack.path("ctx/x"), "not a snapshot\n").unwrap();
    let built = Command::new("docker").args(["build", "-q", "-t", &fake_ref]).arg(stack.path("ctx")).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let file = stack.path("fake.tar");
    let saved = Command::new("docker").args(["save", "-o"]).arg(&file).arg(&fake_ref).output().unwrap();
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    docker(&["rmi", "-f", &fake_ref]);

    let out = stack.run(&["snapshots", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = stderr(&out);
    assert!(err.contains("not a stagectl snapshot archive") && err.contains("snapshot labels"), "{err}");
    assert_eq!(docker(&["images", "-q", &fake_ref]).trim(), "", "the loaded image was removed again");

    // An archive that would re-tag a base image is refused before anything is loaded.
    let base_id = docker(&["image", "inspect", "-f", "{{.Id}}", "stagectl/redis:7"]);
    let base = stack.path("base.tar");
    {
        let manifest = r#"[{"Config":"c.json","RepoTags":["stagectl/redis:7"],"Layers":[]}]"#;
        let mut b = tar::Builder::new(std::fs::File::create(&base).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", manifest.as_bytes()).unwrap();
        b.finish().unwrap();
    }
    let out = stack.run(&["snapshots", "import", base.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`stagectl/redis:7`, which is not a snapshot"), "{}", stderr(&out));
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", "stagectl/redis:7"]), base_id);
    drop(guard);
}
