//! examples/wagtail on the real engine (issue 10, part 5): Wagtail from PyPI on PostgreSQL,
//! brought up from scratch with Django's real migrations as the migrate job, its smoke checks,
//! a migration added to the app image and applied by the next `up` (1a), `check migrations`
//! catching a risky migration on fixture data (migrations inside the image, part 3), a rebuild
//! from the snapshot, and a teardown with nothing left.
//!
//! The base image `stagectl/wagtail:7.0` comes from `scripts/build-wagtail-image.sh` (run by
//! `scripts/test.sh`; a no-op when the tag exists with the same inputs). When it cannot be
//! built (no PyPI), the test is skipped with a loud banner.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::harness::*;

const BASE_IMAGE: &str = "stagectl/wagtail:7.0";

/// Whether the base image is there, building it once per test process when it is not.
fn wagtail_image() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let script = repo_root().join("scripts/build-wagtail-image.sh");
        let built = Command::new(&script).output().map(|o| {
            if !o.status.success() {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            }
            o.status.success()
        });
        let present = !docker(&["images", "-q", BASE_IMAGE]).trim().is_empty();
        if !(present && matches!(built, Ok(true))) {
            eprintln!(
                "\n!!!!! SKIPPED: {BASE_IMAGE} could not be built ({}): run scripts/build-wagtail-image.sh (needs PyPI) !!!!!\n",
                script.display()
            );
        }
        present
    })
}

/// The stack and the images built for it: the stack goes first (its containers use them).
struct Example {
    stack: Stack,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["down", "--volumes", "--stack", &self.stack.name]).output();
        let filter = format!("label=org.stagectl.stack={}", self.stack.name);
        for id in docker(&["ps", "-aq", "--filter", &filter]).lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        for id in docker(&["images", "-q", "--filter", &filter]).lines() {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// examples/wagtail in a temp dir under a stack name of its own, the web port left to Docker
/// and the latency budget relaxed (timings belong to BENCHMARKS.md, not to a test).
fn example() -> Example {
    let src = repo_root().join("examples/wagtail");
    let manifest = std::fs::read_to_string(src.join("stack.toml")).unwrap();
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "examples/wagtail/stack.toml no longer has {from:?}");
        text.replace(from, to)
    };
    let manifest = replace(manifest, "name = \"wagtail\"", "name = \"{stack}\"");
    let manifest = replace(manifest, "ports = [\"${WAGTAIL_PORT:-8000}:8000\"]", "ports = [\"8000\"]");
    let manifest = replace(manifest, "p95 = \"500ms\"", "p95 = \"60s\"");
    let stack = Stack::new("wagtail", &manifest);
    for dir in ["app", "fixtures", "next"] {
        copy_dir(&src.join(dir), &stack.path(dir));
    }
    Example { stack }
}

/// Copies the files of `next/STEP` into the app: its models.py and its migration.
fn add_migration(stack: &Stack, step: &str) {
    let dir = stack.path("next").join(step);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target =
            if name == "models.py" { "app/overlay/staff/models.py".to_string() } else { format!("app/overlay/staff/migrations/{name}") };
        std::fs::copy(&path, stack.path(&target)).unwrap();
    }
}

fn service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn checks(stack: &Stack, what: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = stack.run(&[&["--json", "check"], what].concat());
    (out.status.code(), last_json(&out)["checks"].as_array().cloned().unwrap_or_default())
}

fn named<'a>(results: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    results.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no check {name:?} in {results:#?}"))
}

fn columns(stack: &Stack) -> String {
    sql(
        stack,
        "wagtail",
        "SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'staff_member'",
    )
    .trim()
    .to_string()
}

#[test]
fn wagtail_example_comes_up_applies_a_new_migration_catches_a_risky_one_and_rebuilds() {
    require_docker!();
    if !wagtail_image() {
        return;
    }
    let ex = example();
    let stack = &ex.stack;

    // From scratch: Django's own migrations, then the masked fixtures, then the web service.
    let first = stack.up_ok();
    assert_eq!(service(&first, "migrate")["outcome"], "completed", "{first}");
    assert_eq!(service(&first, "web")["outcome"], "ready", "{first}");
    assert_eq!(service(&first, "db")["fixtures"]["snapshot"], "miss");
    let applied: u32 = sql(stack, "wagtail", "SELECT count(*) FROM django_migrations").trim().parse().unwrap();
    assert!(applied >= 150, "Django's and Wagtail's migrations ran: {applied}");
    assert_eq!(sql(stack, "wagtail", "SELECT count(*) FROM staff_member").trim(), "200003");

    // The example's checks all pass; nothing is pending in the image.
    let (code, results) = checks(stack, &[]);
    assert_eq!(code, Some(0), "{results:#?}");
    assert_eq!(results.len(), 8, "6 smoke checks, the job's image, pending: {results:#?}");
    assert!(named(&results, "pending (job `migrate`)")["message"].as_str().unwrap().starts_with("nothing pending"));
    let image_tag = |results: &[serde_json::Value]| {
        let message = named(results, "image (job `migrate`)")["message"].as_str().unwrap().to_string();
        message.split_whitespace().next().unwrap().to_string()
    };
    let reviewed_image = image_tag(&results);

    // The app serves masked data only: no fixture email reached the database.
    let port = stack.host_port("web", 8000);
    let (status, body) = http_get(port, "/staff/api/users");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"count\": 4") && body.contains("@example.com") && !body.contains("corp.example"), "{body}");

    // 1a: a migration added to the app image is applied by the next `up`.
    add_migration(stack, "1-nickname");
    let migrated = stack.up_ok();
    assert_ne!(service(&migrated, "migrate")["action"]["action"], "keep", "{migrated}");
    assert_eq!(service(&migrated, "migrate")["outcome"], "completed");
    assert_eq!(service(&migrated, "db")["fixtures"]["snapshot"], "miss", "the old snapshot lacks the migration");
    assert_eq!(columns(stack), "email,handle,id,joined,nickname,team");

    // A risky migration (an index built without CONCURRENTLY on 200k rows) inside the image:
    // `check migrations` builds the image, sees it pending, lints its SQL and fails.
    add_migration(stack, "2-badge");
    let (code, results) = checks(stack, &["migrations"]);
    assert_eq!(code, Some(1), "{results:#?}");
    assert_ne!(image_tag(&results), reviewed_image, "the job's image was built from the changed context");
    assert!(named(&results, "pending (job `migrate`)")["message"].as_str().unwrap().starts_with("migrations are pending"));
    let lint = named(&results, "lint staff.0003_member_badge");
    assert_eq!(lint["outcome"], "failed");
    let message = lint["message"].as_str().unwrap();
    assert!(message.contains("staff.0003_member_badge:") && message.contains("[create-index-non-concurrently]"), "{message}");
    // The job ran it on the copy (how long it blocked the table is the machine's business).
    assert!(named(&results, "apply (job `migrate`)")["message"].as_str().unwrap().contains("`migrate` applied the migrations"));
    assert_eq!(named(&results, "applied (job `migrate`)")["outcome"], "passed", "nothing left pending after the job");
    assert_eq!(columns(stack), "email,handle,id,joined,nickname,team", "the live database was not touched");

    // Back to the reviewed state: rebuild starts from the snapshot taken with the new migration.
    add_migration(stack, "1-nickname");
    std::fs::remove_file(stack.path("app/overlay/staff/migrations/0003_member_badge.py")).unwrap();
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    let rebuilt = last_json(&out);
    assert_eq!(service(&rebuilt, "db")["fixtures"]["snapshot"], "hit", "{rebuilt}");
    assert_eq!(service(&rebuilt, "web")["outcome"], "ready");
    assert_eq!(columns(stack), "email,handle,id,joined,nickname,team");
    assert_eq!(sql(stack, "wagtail", "SELECT count(*) FROM staff_member").trim(), "200003");

    let out = stack.run(&["down", "-v"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.owned_resources(), (0, 0, 0), "containers, networks, volumes left");
    let filter = format!("label=org.stagectl.stack={}", stack.name);
    let copies = docker(&["images", "--filter", &filter, "--format", "{{.Repository}}"]);
    assert!(!copies.contains("mcheck"), "a migration-check copy image was left: {copies}");
}
