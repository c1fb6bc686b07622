//! The binary without Docker: the migration lint through `stagectl check migrations`.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn check_migrations_flags_the_risky_example_and_writes_a_junit_report() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("lint.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_stagectl"))
        .arg("-f")
        .arg(repo().join("examples/risky-migration/stack.toml"))
        .args(["check", "migrations", "--lint-only", "--report"])
        .arg(format!("junit:{}", junit.display()))
        .env("CI", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("checks of `risky`: 2 passed, 1 failed"), "{stdout}");
    for expected in [
        "migrations/002_risky_changes.up.sql:2: [adding-not-null-column]",
        "migrations/002_risky_changes.up.sql:2: [missing-lock-timeout]",
        "migrations/002_risky_changes.up.sql:3: [changing-column-type]",
        "migrations/002_risky_changes.up.sql:4: [create-index-non-concurrently]",
        "✓ lint migrations/003_safe_changes.up.sql",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!((suite.attribute("tests"), suite.attribute("failures")), (Some("3"), Some("1")));
}

#[test]
fn the_demo_migrations_pass_the_lint() {
    let out = Command::new(env!("CARGO_BIN_EXE_stagectl"))
        .arg("-f")
        .arg(repo().join("stack.toml"))
        .args(["check", "migrations", "--lint-only"])
        .env("CI", "1")
        .env("STAGECTL_SECRET_api_key", "unused")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
