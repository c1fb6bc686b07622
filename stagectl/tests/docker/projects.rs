//! Parallel projects of one manifest (`-p`): separate namespaces, `auto` host ports that never
//! collide, shared fixture snapshots, `ls`, and `gc` of idle projects.

use std::process::Command;

use crate::harness::*;

const PROJECT_STACK: &str = r#"
[stack]
name = "{stack}"
port_range = "24000-24999"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app" }
ready = { postgres = 5432, timeout = "30s" }

[services.cache]
image = "stagectl/redis:7"
ports = ["auto:6379"]
ready = { tcp = 6379, timeout = "10s" }

[fixtures.db]
files = ["data/*.sql"]
"#;

/// Removes a second project of a test's manifest, whatever happens to the test.
struct Project(String);

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["down", "--volumes", "--stack", &self.0]).output();
        for id in docker(&["ps", "-aq", "--filter", &format!("label=org.stagectl.stack={}", self.0)]).lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
}

fn auto_port(report: &serde_json::Value) -> u16 {
    let ports = report["ports"].as_array().expect("ports in the up report");
    let p = ports.iter().find(|p| p["service"] == "cache").expect("the cache's port");
    assert_eq!(p["auto"], true, "{p}");
    p["host_port"].as_u64().unwrap() as u16
}

#[test]
fn two_projects_of_one_manifest_run_side_by_side_share_the_snapshot_and_are_collected_when_idle() {
    require_docker!();
    let stack = Stack::new("proj", PROJECT_STACK);
    std::fs::create_dir_all(stack.path("data")).unwrap();
    std::fs::write(stack.path("data/1.sql"), "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2), (3);\n").unwrap();
    // Same manifest, another project: at most 40 characters, distinct from the first.
    let other = Project(format!("b-{}", stack.name).chars().take(40).collect());

    let first = stack.up_ok();
    let out = stack.run(&["-p", &other.0, "--json", "up"]);
    assert_eq!(out.status.code(), Some(0), "second project's up failed");
    let second = last_json(&out);
    assert_eq!(second["stack"], other.0.as_str());

    // Each project has its own containers, and its own host port from the range.
    let (a, b) = (auto_port(&first), auto_port(&second));
    assert_ne!(a, b);
    for p in [a, b] {
        assert!((24000..=24999).contains(&p), "{p} outside stack.port_range");
    }
    assert_eq!(stack.host_port("cache", 6379), a);
    let theirs = docker(&["port", &format!("{}-cache", other.0), "6379"]);
    assert!(theirs.trim_end().ends_with(&format!(":{b}")), "{theirs}");
    // The first project took the fixture snapshot; the second started from it.
    let fixtures = |r: &serde_json::Value| {
        r["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap()["fixtures"]["snapshot"].clone()
    };
    assert_eq!(fixtures(&first), "miss");
    assert_eq!(fixtures(&second), "hit");

    // Up again: the same port, nothing recreated.
    let again = stack.up_ok();
    assert_eq!(auto_port(&again), a);
    assert_eq!(again["changed"], false, "{again}");

    // `ls` lists both, with the manifest they came from.
    let out = stack.run(&["--json", "ls"]);
    assert_eq!(out.status.code(), Some(0));
    let rows = last_json(&out);
    let manifest = std::fs::canonicalize(stack.path("stack.toml")).unwrap().display().to_string();
    for project in [stack.name.as_str(), other.0.as_str()] {
        let row =
            rows.as_array().unwrap().iter().find(|r| r["project"] == project).unwrap_or_else(|| panic!("{project} not in ls: {rows}"));
        assert_eq!(row["manifest"], manifest.as_str());
        assert_eq!(row["state"], "running");
        assert_eq!(row["services"], 2);
    }

    // `gc` takes the manifest's idle projects down (both, with a one-second idle time).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = stack.run(&["gc", "--idle", "1s", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0));
    for project in [stack.name.as_str(), other.0.as_str()] {
        assert!(stdout(&out).contains(&format!("would remove `{project}`")), "dry run names {project}");
    }
    assert_eq!(stack.owned_resources().0, 2, "a dry run removes nothing");
    let out = stack.run(&["--local", "gc", "--idle", "1s"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.owned_resources(), (0, 0, 0));
    let left = docker(&["ps", "-aq", "--filter", &format!("label=org.stagectl.stack={}", other.0)]);
    assert!(left.trim().is_empty(), "the second project was not collected");
}

#[test]
fn an_invalid_project_name_is_a_usage_error_before_anything_starts() {
    let stack = Stack::new("badproj", PROJECT_STACK);
    let out = stack.run(&["-p", "Feature_X", "up"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid project name `Feature_X`"), "{}", stderr(&out));
    let out = stack.run_env(&["validate"], &[("STAGECTL_PROJECT", "-x")]);
    assert_eq!(out.status.code(), Some(2), "STAGECTL_PROJECT is checked like -p");
}
