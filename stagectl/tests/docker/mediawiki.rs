//! The MediaWiki example (examples/mediawiki) from scratch: its image (built once, cached by
//! tag), up (MariaDB, the installer job, fixtures through the mysql loader with masked
//! e-mails), its smoke checks, a rebuild from the fixture snapshot, and a teardown that leaves
//! nothing behind.

use std::process::Command;

use crate::harness::*;

const IMAGE: &str = "stagectl-example/mediawiki:1.39";

/// Builds the example's image unless its tag exists (the script itself skips a present tag).
fn example_image() {
    let script = repo_root().join("examples/mediawiki/build-image.sh");
    let out = Command::new(&script).output().expect("run examples/mediawiki/build-image.sh");
    assert!(out.status.success(), "building {IMAGE} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The example's manifest and fixtures in the test's directory, under the test's stack name,
/// with the web port published on a free host port.
fn wiki_stack() -> Stack {
    let dir = repo_root().join("examples/mediawiki");
    let manifest = std::fs::read_to_string(dir.join("stack.toml")).unwrap();
    assert!(manifest.contains("name = \"wiki\"") && manifest.contains("ports = [\"${WIKI_PORT:-8080}:80\"]"));
    let manifest =
        manifest.replace("name = \"wiki\"", "name = \"{stack}\"").replace("ports = [\"${WIKI_PORT:-8080}:80\"]", "ports = [\"80\"]");
    let stack = Stack::new("mediawiki", &manifest);
    std::fs::create_dir_all(stack.path("fixtures")).unwrap();
    for entry in std::fs::read_dir(dir.join("fixtures")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, stack.path("fixtures").join(path.file_name().unwrap())).unwrap();
    }
    stack
}

fn service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap()
}

fn user_emails(stack: &Stack) -> String {
    docker(&[
        "exec",
        &format!("{}-db", stack.name),
        "mariadb",
        "--batch",
        "--skip-column-names",
        "wiki",
        "-e",
        "SELECT CONCAT(user_name, '|', user_email) FROM user ORDER BY user_id",
    ])
}

#[test]
fn the_mediawiki_example_comes_up_passes_its_checks_and_rebuilds_from_its_snapshot() {
    require_docker!();
    example_image();
    let stack = wiki_stack();

    let first = stack.up_ok();
    assert_eq!(service(&first, "install")["outcome"], "completed", "{first}");
    assert_eq!(service(&first, "db")["fixtures"]["snapshot"], "miss");
    assert_eq!(service(&first, "db")["fixtures"]["rows"], 3);
    let users = user_emails(&stack);
    assert!(users.starts_with("Admin|"), "the installer's admin comes first: {users}");
    for raw in ["analytical.example", "navy.example", "bletchley.example"] {
        assert!(!users.contains(raw), "raw e-mail {raw:?} reached the database: {users}");
    }
    assert_eq!(users.lines().filter(|l| l.ends_with("@example.com")).count(), 3, "{users}");
    // The page and the API, from the host through the published port.
    let port = stack.host_port("web", 80);
    let (status, body) = http_get(port, "/mediawiki/index.php?title=Special:ListUsers");
    assert_eq!(status, 200);
    assert!(body.contains("Grace Hopper") && !body.contains("Augusta Ada King"), "fixture user listed, real name masked");

    let out = stack.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "smoke checks");
    let out = stack.run(&["fixtures", "scan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // A rebuild restores the snapshot: the installer's tables and the fixture rows come back,
    // the installer does not run again.
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    let rebuilt = last_json(&out);
    assert_eq!(service(&rebuilt, "db")["fixtures"]["snapshot"], "hit", "{rebuilt}");
    assert_eq!(service(&rebuilt, "install")["action"]["action"], "keep", "{rebuilt}");
    assert_eq!(user_emails(&stack), users);
    let out = stack.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "smoke checks after the rebuild");

    // Zero leftovers: containers, network, volumes, and (after a prune) its snapshots.
    assert!(stack.run(&["down", "--volumes"]).status.success());
    assert!(stack.run(&["snapshots", "prune", "--all"]).status.success());
    assert_eq!(stack.owned_resources(), (0, 0, 0));
    let filter = format!("label=org.stagectl.stack={}", stack.name);
    assert_eq!(docker(&["images", "-q", "--filter", &filter]).trim(), "", "no image of the stack is left");
}
