//! The compose-style verbs on real Docker: `up SERVICE...`, `stop`, `restart`, `diff`.

use std::collections::BTreeMap;

use crate::harness::*;

/// A data service with a Redis fixture, a dependent, and an unrelated service.
const PARTS: &str = r#"
[stack]
name = "{stack}"
[services.cache]
image = "stagectl/redis:7"
ready = { tcp = 6379, timeout = "20s" }
[services.web]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["cache"]
[services.other]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
[fixtures.cache]
loader = "redis"
files = ["cache/*.redis"]
snapshot = false
"#;

fn parts_stack(tag: &str) -> Stack {
    let s = Stack::new(tag, PARTS);
    std::fs::create_dir_all(s.path("cache")).unwrap();
    std::fs::write(s.path("cache/warm.redis"), "SET greeting hello\n").unwrap();
    s
}

fn status_rows(stack: &Stack) -> BTreeMap<String, serde_json::Value> {
    let out = stack.run(&["--json", "ps"]);
    let rows = last_json(&out);
    rows.as_array().unwrap().iter().map(|r| (r["service"].as_str().unwrap().to_string(), r.clone())).collect()
}

fn started_at(stack: &Stack, service: &str) -> String {
    docker(&["inspect", "-f", "{{.State.StartedAt}}", &format!("{}-{service}", stack.name)]).trim().to_string()
}

#[test]
fn up_service_brings_up_it_and_its_dependencies_with_fixtures_and_leaves_the_rest_alone() {
    require_docker!();
    let stack = parts_stack("upsvc");
    let out = stack.run(&["--json", "up", "web"]);
    assert_eq!(out.status.code(), Some(0));
    let report = last_json(&out);
    let services: Vec<&str> = report["services"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(services, ["cache", "web"], "only web and what it depends on: {report}");
    let ids = stack.container_ids();
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["cache", "web"]);
    // The data service's fixtures were loaded as in a full `up`.
    assert_eq!(docker(&["exec", &format!("{}-cache", stack.name), "redis-cli", "GET", "greeting"]).trim(), "hello");

    // Another service later: the running ones are neither recreated nor removed as orphans.
    let out = stack.run(&["--json", "up", "other"]);
    assert_eq!(out.status.code(), Some(0));
    let after = stack.container_ids();
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!((&after["cache"], &after["web"]), (&ids["cache"], &ids["web"]));

    let out = stack.run(&["up", "web", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no service `nope`") && stderr(&out).contains("(services: cache, web, other)"), "{}", stderr(&out));
}

#[test]
fn stop_keeps_the_containers_status_shows_them_stopped_and_up_or_restart_brings_them_back() {
    require_docker!();
    let stack = parts_stack("stop");
    stack.up_ok();
    let ids = stack.container_ids();

    let out = stack.run(&["stop", "cache", "web"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.container_ids(), ids, "stop removes nothing");
    let rows = status_rows(&stack);
    assert_eq!((rows["cache"]["state"].as_str(), rows["cache"]["ready"].as_bool()), (Some("stopped"), Some(false)));
    assert_eq!(rows["web"]["state"], "stopped");
    assert_eq!(rows["other"]["state"], "running", "services not named keep running");
    assert_eq!(stack.run(&["ps"]).status.code(), Some(1), "a stopped service: not all ready");

    // `up` starts the same web container again; the data service is recreated with its
    // fixtures (Redis held them in memory only: a started-again container would be empty).
    let report = stack.up_ok();
    let after = stack.container_ids();
    assert_eq!((&after["web"], &after["other"]), (&ids["web"], &ids["other"]), "{report}");
    assert_ne!(after["cache"], ids["cache"]);
    assert_eq!(docker(&["exec", &format!("{}-cache", stack.name), "redis-cli", "GET", "greeting"]).trim(), "hello");
    let ids = after;
    assert!(status_rows(&stack).values().all(|r| r["ready"] == true));

    // `restart`: same containers, started anew, awaited ready.
    let before = started_at(&stack, "web");
    let out = stack.run(&["--json", "restart", "web"]);
    assert_eq!(out.status.code(), Some(0));
    let report = last_json(&out);
    assert_eq!(report["services"][0]["outcome"], "ready", "{report}");
    assert_ne!(started_at(&stack, "web"), before, "web was restarted");
    assert_eq!(stack.container_ids(), ids);

    // Without names: every long-running service; a stopped one is started; the data service
    // is recreated first, its fixtures in place again.
    assert_eq!(stack.run(&["stop", "other"]).status.code(), Some(0));
    let out = stack.run(&["--json", "restart"]);
    assert_eq!(out.status.code(), Some(0));
    let report = last_json(&out);
    let rows: Vec<(&str, &str)> =
        report["services"].as_array().unwrap().iter().map(|r| (r["service"].as_str().unwrap(), r["outcome"].as_str().unwrap())).collect();
    assert_eq!(rows, [("cache", "ready"), ("web", "ready"), ("other", "ready")], "{report}");
    assert_eq!(docker(&["exec", &format!("{}-cache", stack.name), "redis-cli", "GET", "greeting"]).trim(), "hello");
    assert_eq!(stack.container_ids()["other"], ids["other"]);
    assert!(status_rows(&stack).values().all(|r| r["ready"] == true));
}

#[test]
fn diff_names_the_env_variable_and_the_image_that_changed_and_exits_1_on_drift() {
    require_docker!();
    let manifest = |mark: &str, web_image: &str| {
        format!(
            r#"
[stack]
name = "{{stack}}"
[services.cache]
image = "stagectl/redis:7"
env = {{ MARK = "{mark}", TOKEN = "${{secret:token}}" }}
ready = {{ tcp = 6379 }}
[services.web]
image = "{web_image}"
command = ["sleep", "infinity"]
"#
        )
    };
    let stack = Stack::new("diff", &manifest("one", "stagectl/debian:bookworm"));
    let canary = "canary-diff-secret-9";
    std::fs::write(stack.path("secrets.env"), format!("token={canary}\n")).unwrap();
    stack.up_ok();

    let out = stack.run(&["diff"]);
    assert_eq!(out.status.code(), Some(0), "no drift right after up");
    assert!(stdout(&out).contains("no drift"));

    // An env value and the image of another service change in the manifest; an orphan appears.
    stack.write_manifest(&manifest("two", "stagectl/postgres:15"));
    std::fs::write(stack.path("secrets.env"), "token=another-secret-value\n").unwrap();
    let out = stack.run(&["--json", "diff"]);
    assert_eq!(out.status.code(), Some(1), "drift exits 1");
    let text = stdout(&out);
    assert!(!text.contains(canary) && !text.contains("another-secret-value") && !text.contains("\"two\""), "{text}");
    let report = last_json(&out);
    assert_eq!(report["drifted"], 2, "{report}");
    let by: BTreeMap<&str, &serde_json::Value> =
        report["services"].as_array().unwrap().iter().map(|s| (s["service"].as_str().unwrap(), s)).collect();
    assert_eq!(by["cache"]["state"], "recreate");
    assert_eq!(by["cache"]["changes"][0]["field"], "env");
    assert_eq!(by["cache"]["changes"][0]["detail"], "changed: MARK, TOKEN");
    assert_eq!(by["web"]["state"], "recreate");
    let fields: Vec<&str> = by["web"]["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["image_id", "image"], "{report}");
    assert_eq!(by["web"]["changes"][1]["detail"], "stagectl/debian:bookworm → stagectl/postgres:15");

    // A container created by an older stagectl (no spec label): drift without details.
    let old = format!("{}-web", stack.name);
    docker(&["rm", "-f", &old]);
    docker(&[
        "create",
        "--name",
        &old,
        "--label",
        &format!("org.stagectl.stack={}", stack.name),
        "--label",
        "org.stagectl.service=web",
        "--label",
        "org.stagectl.spec-hash=0123456789abcdef",
        "stagectl/debian:bookworm",
        "sleep",
        "infinity",
    ]);
    let out = stack.run(&["diff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("web    would be recreated: changed (details unavailable: created by an older stagectl)"),
        "{}",
        stdout(&out)
    );
}
