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

fn stagectl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stagectl")).args(args).env("CI", "1").output().unwrap()
}

/// A manifest with a secret in an env var, in a value built from it, and in a check header.
fn secret_manifest(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("stack.toml");
    std::fs::write(
        &path,
        r#"
[stack]
name = "cfg"
[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_PASSWORD = "${secret:db_password}", MODE = "${MODE:-plain}" }
ready = { postgres = 5432 }
[services.app]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["db"]
env = { DATABASE_URL = "postgres://app:${secret:db_password}@db/app" }
[[checks.smoke]]
name = "api"
http = { service = "app", port = 80, path = "/", headers = { Authorization = "Bearer ${secret:db_password}" } }
"#,
    )
    .unwrap();
    path
}

#[test]
fn config_prints_the_resolved_manifest_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_manifest(dir.path());
    let canary = "canary-Zq7-secret";
    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagectl"));
        cmd.arg("-f").arg(&file).arg("config").env("STAGECTL_SECRET_db_password", canary).env("MODE", "loud");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(!stdout.contains(canary) && !stdout.contains("Zq7"), "a secret was printed:\n{stdout}");
        let doc: serde_json::Value = if json {
            serde_json::from_str(&stdout).unwrap()
        } else {
            serde_json::to_value(toml::from_str::<toml::Table>(&stdout).unwrap()).unwrap()
        };
        // Interpolated and defaulted, secrets masked whole (also inside a built value).
        assert_eq!(doc["services"]["db"]["env"]["MODE"], "loud", "{stdout}");
        assert_eq!(doc["services"]["db"]["env"]["POSTGRES_PASSWORD"], "***");
        assert_eq!(doc["services"]["app"]["env"]["DATABASE_URL"], "***");
        assert_eq!(doc["services"]["db"]["ready"]["timeout"], "1m", "the default readiness timeout is applied");
        assert_eq!(doc["checks"]["smoke"][0]["http"]["headers"]["Authorization"], "***");
        assert_eq!(doc["stack"]["name"], "cfg");
    }
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    for (shell, marker) in [("bash", "_stagectl()"), ("zsh", "#compdef stagectl"), ("fish", "complete -c stagectl")] {
        let out = stagectl(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(marker), "{shell}: no {marker:?} in:\n{text}");
        for verb in ["restart", "diff", "config"] {
            assert!(text.contains(verb), "{shell}: the `{verb}` verb is not completed");
        }
    }
    let out = stagectl(&["completions", "powershell"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[possible values: bash, zsh, fish]"));
}

#[test]
fn man_prints_a_roff_page_documenting_every_verb() {
    let out = stagectl(&["man"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains(".TH stagectl 1"), "{text}");
    for section in ["STAGECTL UP", "STAGECTL DIFF", "STAGECTL STOP", "STAGECTL RESTART", "STAGECTL CONFIG"] {
        assert!(text.contains(section), "no section {section}");
    }
    assert!(text.contains("Exit 0: no drift, 1: drift"), "the diff exit codes are documented");
}

#[test]
fn usage_errors_of_the_new_verbs_exit_2_and_say_what_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_manifest(dir.path());
    let f = file.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stagectl"))
            .args(["-f", f])
            .args(args)
            .env("STAGECTL_SECRET_db_password", "x")
            // Nothing may reach a Docker engine: the names are checked first.
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    for verb in ["up", "stop", "restart"] {
        let (code, stderr) = run(&[verb, "db", "nope"]);
        assert_eq!(code, Some(2), "{verb}: {stderr}");
        assert!(stderr.contains("no service `nope` in stack `cfg` (services: db, app)"), "{verb}: {stderr}");
    }
    // `ps` is `status`, flags and all.
    let out = stagectl(&["ps", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: stagectl status"));
}

#[test]
fn snapshots_export_and_import_refuse_bad_files_before_reaching_docker() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_manifest(dir.path());
    let f = file.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stagectl"))
            .args(["-f", f, "snapshots"])
            .args(args)
            .env("STAGECTL_SECRET_db_password", "x")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, _) = run(&["export"]);
    assert_eq!(code, Some(2), "FILE is required");
    let (code, _) = run(&["import"]);
    assert_eq!(code, Some(2), "FILE is required");
    let (code, stderr) = run(&["export", "snaps.tar.gz"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("compressed archives are not written"), "{stderr}");
    let nowhere = dir.path().join("no/such/dir/snaps.tar");
    let (code, stderr) = run(&["export", nowhere.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("snaps.tar: its directory does not exist"), "{stderr}");
    let missing = dir.path().join("missing.tar");
    let (code, stderr) = run(&["import", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("missing.tar: cannot read"), "{stderr}");
    let text = dir.path().join("notes.tar");
    std::fs::write(&text, "just text\n").unwrap();
    let (code, stderr) = run(&["import", text.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("notes.tar: not a stagectl snapshot archive"), "{stderr}");
}
