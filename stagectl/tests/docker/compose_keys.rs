//! Issue 11 part 1 on real Docker: the service keys people bring from docker compose take
//! effect in the container (checked with `docker inspect` and inside the container, not
//! through stagectl), `depends_on` conditions order the starts, and profiles choose services.

use super::harness::*;

const KEYS: &str = r#"
[stack]
name = "{stack}"

[services.app]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
env_file = ["app.env", { path = "secret.env", secret = true }]
env = { OVERRIDDEN = "from-env" }
labels = { "com.example.team" = "shop" }
tmpfs = ["/scratch:size=8m,mode=1777"]
ulimits = { nofile = { soft = 1000, hard = 2000 } }
shm_size = "32m"
cap_drop = ["NET_RAW", "CHOWN"]
extra_hosts = ["api.test:10.11.12.13"]
init = true
restart = "on-failure:5"
stop_grace_period = "3s"

[services.flaky]
image = "stagectl/debian:bookworm"
command = ["sh", "-c", "sleep 2; exit 3"]
restart = "always"
"#;

const SECRET: &str = "env-file-secret-4711";

fn inspect(container: &str, format: &str) -> String {
    docker(&["inspect", "--format", format, container]).trim().to_string()
}

fn exec(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script]).trim().to_string()
}

#[test]
fn compose_keys_take_effect_in_the_container() {
    require_docker!();
    let stack = Stack::new("ckeys", KEYS);
    std::fs::write(stack.path("app.env"), "# the app\nMODE=from-file\nOVERRIDDEN=from-file\nGREETING=\"hello world\"\n").unwrap();
    std::fs::write(stack.path("secret.env"), format!("TOKEN={SECRET}\n")).unwrap();
    let report = stack.up_ok();
    assert_eq!(report["ok"], true, "{report}");
    let app = format!("{}-app", stack.name);

    let env = inspect(&app, "{{json .Config.Env}}");
    for want in ["\"MODE=from-file\"", "\"OVERRIDDEN=from-env\"", "\"GREETING=hello world\"", &format!("\"TOKEN={SECRET}\"")] {
        assert!(env.contains(want), "{want} not in {env}");
    }
    assert_eq!(inspect(&app, "{{index .Config.Labels \"com.example.team\"}}"), "shop");
    assert_eq!(inspect(&app, "{{index .Config.Labels \"org.stagectl.stack\"}}"), stack.name, "stagectl's own labels stay");
    assert_eq!(inspect(&app, "{{json .HostConfig.Tmpfs}}"), r#"{"/scratch":"size=8m,mode=1777"}"#);
    assert_eq!(exec(&app, "df -k /scratch | tail -1 | awk '{print $2}'"), "8192", "a tmpfs of 8 MiB");
    assert_eq!(exec(&app, "stat -c %a /scratch"), "1777");
    assert_eq!(inspect(&app, "{{json .HostConfig.Ulimits}}"), r#"[{"Name":"nofile","Hard":2000,"Soft":1000}]"#);
    // The container's processes run with them (PID 1: the init, and its child).
    assert_eq!(exec(&app, "grep 'Max open files' /proc/1/limits | awk '{print $4, $5}'"), "1000 2000");
    assert_eq!(inspect(&app, "{{.HostConfig.ShmSize}}"), (32 * 1024 * 1024).to_string());
    assert_eq!(exec(&app, "df -k /dev/shm | tail -1 | awk '{print $2}'"), "32768");
    assert_eq!(inspect(&app, "{{json .HostConfig.CapDrop}}"), r#"["NET_RAW","CHOWN"]"#);
    // CHOWN dropped: even root cannot give a file away.
    assert_ne!(docker_status(&app, "touch /tmp/f && chown 1:1 /tmp/f"), 0, "chown must fail without CAP_CHOWN");
    assert_eq!(inspect(&app, "{{json .HostConfig.ExtraHosts}}"), r#"["api.test:10.11.12.13"]"#);
    assert!(exec(&app, "cat /etc/hosts").lines().any(|l| l.starts_with("10.11.12.13") && l.contains("api.test")));
    assert_eq!(inspect(&app, "{{.HostConfig.Init}}"), "true");
    assert!(exec(&app, "cat /proc/1/cmdline | tr '\\0' ' '").contains("docker-init"), "PID 1 is the init process");
    assert_eq!(inspect(&app, "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"), "on-failure 5");
    assert_eq!(inspect(&app, "{{.Config.StopTimeout}} {{index .Config.Labels \"org.stagectl.stop-grace\"}}"), "3 3");

    // The env file's secret is masked like any `${secret:...}`: not in stagectl's labels.
    assert!(!inspect(&app, "{{json .Config.Labels}}").contains(SECRET));

    // `restart = "always"`: Docker restarts the service that exits; status shows the count.
    let flaky = format!("{}-flaky", stack.name);
    assert_eq!(inspect(&flaky, "{{.HostConfig.RestartPolicy.Name}}"), "always");
    let mut restarts = 0;
    for _ in 0..60 {
        restarts = inspect(&flaky, "{{.RestartCount}}").parse::<u64>().unwrap_or(0);
        if restarts >= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(restarts >= 1, "flaky was never restarted");
    let out = stack.run(&["--json", "status"]);
    let rows = last_json(&out);
    let row = |name: &str| rows.as_array().unwrap().iter().find(|r| r["service"] == name).unwrap().clone();
    assert_eq!(row("app")["restart"], "on-failure:5");
    assert_eq!(row("app")["restarts"], 0);
    assert_eq!(row("flaky")["restart"], "always");
    assert!(row("flaky")["restarts"].as_u64().unwrap() >= 1, "{rows}");
    assert!(!stdout(&out).contains(SECRET) && !stderr(&out).contains(SECRET));

    // An unchanged manifest keeps the container; a changed compose key recreates it.
    let id = stack.container_ids()["app"].clone();
    stack.up_ok();
    assert_eq!(stack.container_ids()["app"], id, "kept when nothing changed");
    stack.write_manifest(&KEYS.replace("shm_size = \"32m\"", "shm_size = \"16m\""));
    stack.up_ok();
    assert_ne!(stack.container_ids()["app"], id, "recreated for a new shm_size");
    assert_eq!(inspect(&app, "{{.HostConfig.ShmSize}}"), (16 * 1024 * 1024).to_string());
}

/// The exit status of a shell script run in the container.
fn docker_status(container: &str, script: &str) -> i32 {
    std::process::Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .map(|o| o.status.code().unwrap_or(-1))
        .unwrap_or(-1)
}

const CONDITIONS: &str = r#"
[stack]
name = "{stack}"

# Ready only after a few seconds.
[services.db]
image = "stagectl/debian:bookworm"
command = ["sh", "-c", "sleep 4; touch /tmp/ready; sleep infinity"]
ready = { exec = ["test", "-f", "/tmp/ready"], timeout = "60s", interval = "100ms" }

[services.migrate]
image = "stagectl/debian:bookworm"
command = ["sh", "-c", "sleep 1; exit 0"]
job = true

# Starts as soon as db runs, and after migrate exited 0.
[services.app]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = { db = "started", migrate = "completed" }

[services.reader]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["db"]

[services.debug]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
profiles = ["debug"]
depends_on = ["app"]
"#;

/// `(service, phase)` of each phase event of a `--json` run, in order.
fn phases(out: &std::process::Output) -> Vec<(String, String)> {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "phase")
        .map(|v| (v["service"].as_str().unwrap_or("").to_string(), v["phase"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn position(events: &[(String, String)], service: &str, phase: &str) -> usize {
    events.iter().position(|(s, p)| s == service && p == phase).unwrap_or_else(|| panic!("no {service} {phase} in {events:?}"))
}

#[test]
fn depends_on_conditions_order_the_starts_and_profiles_choose_the_services() {
    require_docker!();
    let stack = Stack::new("cconds", CONDITIONS);
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(0), "up failed");
    let events = phases(&out);
    // `started`: app is created before db is probed ready; the list form waits for ready.
    assert!(position(&events, "app", "creating") < position(&events, "db", "ready"), "{events:?}");
    assert!(position(&events, "reader", "creating") > position(&events, "db", "ready"), "{events:?}");
    // `completed`: app is created only after migrate exited 0.
    assert!(position(&events, "app", "creating") > position(&events, "migrate", "completed"), "{events:?}");
    // No profile selected: debug does not run.
    assert!(!stack.container_ids().contains_key("debug"));
    assert_eq!(stack.container_ids().len(), 4);

    // Selected by --profile (or STAGECTL_PROFILES), it runs; a later plain `up` leaves it alone.
    let out = stack.run(&["--profile", "debug", "--json", "up"]);
    assert_eq!(out.status.code(), Some(0));
    let debug = stack.container_ids()["debug"].clone();
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.container_ids().get("debug"), Some(&debug), "not removed as an orphan");
    let out = stack.run_env(&["--json", "status"], &[("STAGECTL_PROFILES", "debug")]);
    assert!(last_json(&out).as_array().unwrap().iter().any(|r| r["service"] == "debug" && r["ready"] == true));

    // A service that runs always cannot depend on one of an unselected profile.
    // (debug's own dependency on app is dropped, or the two would form a cycle.)
    let bad = CONDITIONS.replace("profiles = [\"debug\"]\ndepends_on = [\"app\"]\n", "profiles = [\"debug\"]\n");
    stack.write_manifest(&bad.replace(
        "depends_on = { db = \"started\", migrate = \"completed\" }",
        "depends_on = { db = \"started\", migrate = \"completed\", debug = \"started\" }",
    ));
    let out = stack.run(&["up"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("service `app` depends on `debug`") && err.contains("--profile debug"), "{err}");
}
