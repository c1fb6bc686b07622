//! `stagectl import` brought up on real Docker: each compose project of `tests/import/` is copied
//! into the test's own directory, imported with the test's own stack name (`--stack`), brought
//! up with `stagectl up`, checked from outside, and taken down with `down -v`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else if !entry.file_name().to_string_lossy().starts_with("expected.") {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The case imported into a new stack and brought up; returns the stack and `up`'s report.
fn import_and_up(case: &str, tag: &str, extra: &[&str]) -> (Stack, serde_json::Value) {
    let stack = Stack::new(tag, "");
    copy_dir(&repo_root().join("stagectl/tests/import").join(case), stack.dir.path());
    let (compose, toml) = (stack.path("docker-compose.yml"), stack.path("stack.toml"));
    let (compose, toml) = (compose.to_str().unwrap(), toml.to_str().unwrap());
    let mut args = vec!["import", compose, "-o", toml, "--stack", &stack.name, "--force"];
    args.extend_from_slice(extra);
    let out = stack.run(&args);
    assert_eq!(out.status.code(), Some(0), "import failed");
    let report = stack.up_ok();
    assert_eq!(report["ok"], true, "{report}");
    (stack, report)
}

fn outcome(report: &serde_json::Value, service: &str) -> String {
    let services = report["services"].as_array().unwrap();
    let s = services.iter().find(|s| s["service"] == service).unwrap_or_else(|| panic!("no {service} in {report}"));
    s["outcome"].as_str().unwrap().to_string()
}

fn down(stack: &Stack) {
    let out = stack.run(&["down", "-v"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.owned_resources(), (0, 0, 0), "down -v leaves nothing labelled");
}

fn exec(stack: &Stack, service: &str, cmd: &[&str]) -> String {
    let container = format!("{}-{service}", stack.name);
    let mut args = vec!["exec", container.as_str()];
    args.extend_from_slice(cmd);
    docker(&args).trim_end().to_string()
}

#[test]
fn imported_web_db_cache_comes_up_gated_on_native_probes() {
    require_docker!();
    let (stack, report) = import_and_up("web-db-cache", "imp-web", &[]);
    for s in ["web", "db", "cache"] {
        assert_eq!(outcome(&report, s), "ready", "{s}");
    }
    let (status, body) = http_get(stack.host_port("web", 8080), "/health");
    assert_eq!((status, body.as_str()), (200, "ok hello\n"));
    let (_, _, volumes) = stack.owned_resources();
    assert_eq!(volumes, 1, "pgdata");
    down(&stack);
}

#[test]
fn imported_worker_queue_runs_the_seeder_as_a_job_and_the_worker_drains_the_queue() {
    require_docker!();
    let (stack, report) = import_and_up("worker-queue", "imp-queue", &[]);
    assert_eq!(outcome(&report, "seed"), "completed");
    assert_eq!(outcome(&report, "worker"), "ready");
    // Three BLPOP replies of two lines each (the list's name, the job).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut done = String::new();
    while Instant::now() < deadline {
        done = exec(&stack, "worker", &["sh", "-c", "cat /tmp/done 2>/dev/null"]);
        if done.lines().count() >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(done.lines().filter(|l| *l != "jobs").collect::<Vec<_>>(), ["one", "two", "three"], "the worker took every job");
    assert_eq!(exec(&stack, "queue", &["redis-cli", "LLEN", "jobs"]), "0");
    down(&stack);
}

#[test]
fn imported_init_jobs_migrate_and_seed_before_the_app_starts() {
    require_docker!();
    let (stack, report) = import_and_up("init-jobs", "imp-init", &[]);
    assert_eq!(outcome(&report, "migrate"), "completed");
    assert_eq!(outcome(&report, "seed"), "completed");
    assert_eq!(outcome(&report, "app"), "ready");
    assert_eq!(sql(&stack, "app", "SELECT string_agg(name, ',' ORDER BY id) FROM items").trim(), "alpha,beta,gamma");
    down(&stack);
}

#[test]
fn imported_volumes_are_shared_bound_and_removed_by_down_v() {
    require_docker!();
    let (stack, report) = import_and_up("named-volumes", "imp-vol", &[]);
    assert_eq!(outcome(&report, "app"), "ready");
    assert_eq!(exec(&stack, "reader", &["cat", "/shared/copy"]), "mode=imported", "the named volume is shared");
    assert_eq!(exec(&stack, "reader", &["cat", "/etc/demo/app.conf"]), "mode=imported", "the bind mount is relative to the compose file");
    let (_, _, volumes) = stack.owned_resources();
    assert_eq!(volumes, 3, "data, cache and the anonymous volume made named");
    down(&stack);
}

#[test]
fn imported_profiles_start_only_the_chosen_services() {
    require_docker!();
    let (stack, report) = import_and_up("profiles", "imp-prof", &["--profile", "test"]);
    let names: Vec<String> = stack.container_ids().into_keys().collect();
    assert_eq!(names, ["app", "e2e-runner", "mock-api"], "{report}");
    down(&stack);
}

#[test]
fn imported_env_files_reach_the_container_with_literal_dollars() {
    require_docker!();
    let (stack, _) = import_and_up("env-files", "imp-env", &[]);
    let env = exec(&stack, "app", &["cat", "/tmp/env"]);
    for line in ["LOG_LEVEL=debug", "APP_NAME=demo app", "DB_URL=postgres://db:5432/app", "LITERAL=cost: $5", "PRICE=$5", "RATIO=1.10"] {
        assert!(env.lines().any(|l| l == line), "missing {line:?} in:\n{env}");
    }
    down(&stack);
}

#[test]
fn imported_builds_use_the_dockerfile_and_the_args() {
    require_docker!();
    let (stack, report) = import_and_up("build-args", "imp-build", &[]);
    assert_eq!(outcome(&report, "tool"), "ready");
    assert_eq!(exec(&stack, "app", &["cat", "/greeting"]), "hello from unset\nbuilt");
    assert_eq!(exec(&stack, "tool", &["cat", "/greeting"]), "hi from tools\nbuilt");
    down(&stack);
    // The tag the compose file gives the build (the build cache keeps the image itself).
    docker(&["rmi", "import-test/app:dev"]);
}

#[test]
fn imported_healthchecks_gate_the_client_on_every_kind_of_probe() {
    require_docker!();
    let (stack, report) = import_and_up("healthchecks", "imp-health", &[]);
    for s in ["pg", "redis", "web", "custom", "inherited", "disabled", "client"] {
        assert_eq!(outcome(&report, s), "ready", "{s}: {report}");
    }
    down(&stack);
}
