//! Integration tests against the real Docker engine, real PostgreSQL and Redis containers and
//! the real `stagectl` binary. Images come from `scripts/build-images.sh` (run by `.ci/run`).

#[macro_use]
mod harness;
mod checks;
mod compose_keys;
mod daemon;
mod faults;
mod fixtures;
mod import;
mod mediawiki;
mod migrations;
mod mysql;
mod pg_snapshots;
mod podman;
mod projects;
mod realapps;
mod registry;
mod snapshot_transfer;
mod swarm;
mod verbs;
mod wagtail;

use std::collections::BTreeMap;

use harness::*;

/// The demo stack, with the app's port left to Docker so tests can run in parallel.
pub(crate) const SHOP: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "shop" }
volumes = ["pgdata:/var/lib/postgresql/data"]
ready = { exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "shop"], timeout = "30s" }

[services.cache]
image = "stagectl/redis:7"
ready = { tcp = 6379, timeout = "10s" }

[services.migrate]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
entrypoint = ["/bin/sh", "/migrate.sh"]
volumes = ["{repo}/demo/shop/migrate.sh:/migrate.sh:ro", "{repo}/demo/shop/migrations:/migrations:ro"]

[services.app]
build = { context = "{repo}/demo/shop", command = "{repo}/scripts/build-shop.sh" }
ports = ["8080"]
depends_on = ["migrate", "cache"]
env = { DATABASE_URL = "postgres://postgres@db:5432/shop", REDIS_URL = "redis://cache:6379/", API_KEY = "${secret:api_key}" }
ready = { http = "/healthz", port = 8080, timeout = "30s" }
"#;

const SECRET: &str = "s3cret-value-for-tests";

fn shop_stack(tag: &str) -> Stack {
    let s = Stack::new(tag, SHOP);
    std::fs::write(s.path("secrets.env"), format!("api_key={SECRET}\n")).unwrap();
    s
}

fn outcomes(report: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                (s["outcome"].as_str().unwrap().to_string(), s["action"]["action"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

#[test]
fn up_brings_the_demo_stack_ready_the_app_answers_and_down_removes_everything() {
    require_docker!();
    let stack = shop_stack("shop");
    let report = stack.up_ok();
    assert_eq!(report["ok"], true);
    let o = outcomes(&report);
    assert_eq!(o["db"].0, "ready");
    assert_eq!(o["cache"].0, "ready");
    assert_eq!(o["migrate"].0, "completed");
    assert_eq!(o["app"].0, "ready");

    // The app answers through its published port and really talks to PostgreSQL and Redis.
    let port = stack.host_port("app", 8080);
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(port, "/products");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"products\""), "{body}");

    // status agrees: every service ready, ports shown, and the secret is nowhere.
    let out = stack.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let rows = last_json(&out);
    assert!(rows.as_array().unwrap().iter().all(|r| r["ready"] == true), "{rows}");
    assert!(!stdout(&out).contains(SECRET));

    // Secrets never reach our output, not even in verbose JSON.
    let again = stack.run(&["--json", "--verbose", "up"]);
    assert!(!stdout(&again).contains(SECRET) && !stderr(&again).contains(SECRET));

    let (c, n, v) = stack.owned_resources();
    assert_eq!((c, n, v), (4, 1, 1), "containers, networks, volumes while up");
    let out = stack.run(&["down", "--volumes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stack.owned_resources(), (0, 0, 0), "down --volumes leaves nothing labelled");
}

#[test]
fn a_second_up_changes_nothing_and_an_env_edit_recreates_only_that_service() {
    require_docker!();
    let manifest = |cache_env: &str| {
        format!(
            r#"
[stack]
name = "{{stack}}"
[services.cache]
image = "stagectl/redis:7"
env = {{ MARK = "{cache_env}" }}
ready = {{ tcp = 6379 }}
[services.db]
image = "stagectl/postgres:15"
ready = {{ exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres"] }}
[services.web]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["cache", "db"]
"#
        )
    };
    let stack = Stack::new("idem", &manifest("one"));
    let first = stack.up_ok();
    assert_eq!(first["changed"], true);
    let ids = stack.container_ids();
    assert_eq!(ids.len(), 3);

    let second = stack.up_ok();
    assert_eq!(second["changed"], false, "second up must change nothing: {second}");
    assert!(outcomes(&second).values().all(|(_, action)| action == "keep"));
    assert_eq!(stack.container_ids(), ids, "no container was replaced");

    stack.write_manifest(&manifest("two"));
    let third = stack.up_ok();
    let o = outcomes(&third);
    assert_eq!(o["cache"].1, "recreate");
    assert_eq!(o["db"].1, "keep");
    assert_eq!(o["web"].1, "keep", "a long-running dependent is not recreated");
    let after = stack.container_ids();
    assert_ne!(after["cache"], ids["cache"]);
    assert_eq!(after["db"], ids["db"]);
    assert_eq!(after["web"], ids["web"]);
    let env = docker(&["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", &format!("{}-cache", stack.name)]);
    assert!(env.lines().any(|l| l == "MARK=two"), "{env}");
}

#[test]
fn a_readiness_timeout_reports_the_probe_error_and_the_last_log_lines() {
    require_docker!();
    let stack = Stack::new(
        "timeout",
        r#"
[stack]
name = "{stack}"
[services.slow]
image = "stagectl/debian:bookworm"
command = ["sh", "-c", "for i in $(seq 1 30); do echo line-$i; done; echo still-booting; sleep 300"]
ready = { tcp = 9999, timeout = "1500ms" }
[services.after]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["slow"]
"#,
    );
    let out = stack.run(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("slow FAILED: not ready after 1."), "{err}");
    assert!(err.contains(":9999: Connection refused"), "the probe's last error is shown: {err}");
    assert!(err.contains("last 20 log lines"), "{err}");
    assert!(err.contains("| still-booting"), "{err}");
    assert!(err.contains("| line-30") && !err.contains("| line-10\n"), "only the last 20 lines: {err}");
    assert!(err.contains("after skipped: not started: dependency `slow` failed"), "{err}");
    assert!(stdout(&out).contains("FAILED"), "the summary says the stack failed");
    let ids = stack.container_ids();
    assert!(!ids.contains_key("after"), "a dependent of a failed service is never created");
}

#[test]
fn a_failing_job_fails_the_run_with_its_logs_and_its_dependents_do_not_start() {
    require_docker!();
    let stack = Stack::new(
        "job",
        r#"
[stack]
name = "{stack}"
[services.migrate]
image = "stagectl/debian:bookworm"
job = true
command = ["sh", "-c", "echo applying 001; echo 'ERROR: relation missing' >&2; exit 3"]
[services.app]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["migrate"]
"#,
    );
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let report = last_json(&out);
    assert_eq!(report["ok"], false);
    let job = report["services"].as_array().unwrap().iter().find(|s| s["service"] == "migrate").unwrap().clone();
    assert_eq!(job["outcome"], "failed");
    assert_eq!(job["message"], "job exited with code 3");
    let mut logs: Vec<&str> = job["logs"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    // stdout and stderr are separate pipes: Docker does not promise their relative order.
    logs.sort();
    assert_eq!(logs, ["ERROR: relation missing", "applying 001"]);
    assert_eq!(outcomes(&report)["app"].0, "skipped");
    assert!(!stack.container_ids().contains_key("app"));
}

#[test]
fn a_job_that_succeeds_gates_its_dependents_and_is_not_rerun_when_nothing_changed() {
    require_docker!();
    let stack = Stack::new(
        "jobok",
        r#"
[stack]
name = "{stack}"
[services.seed]
image = "stagectl/debian:bookworm"
job = true
command = ["sh", "-c", "sleep 0.3; echo seeded"]
[services.app]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["seed"]
"#,
    );
    stack.up_ok();
    let finished = docker(&["inspect", "-f", "{{.State.FinishedAt}}", &format!("{}-seed", stack.name)]);
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &format!("{}-app", stack.name)]);
    assert!(started.trim() > finished.trim(), "app started ({started}) after the job finished ({finished})");
    let second = stack.up_ok();
    assert_eq!(outcomes(&second)["seed"], ("completed".to_string(), "keep".to_string()));
}

#[test]
fn docker_unreachable_gives_exit_code_3_and_says_how_to_fix_it() {
    // No Docker needed: the point is that it is not there.
    let stack = Stack::new("nodocker", "[stack]\nname = \"{stack}\"\n[services.a]\nimage = \"stagectl/debian:bookworm\"\n");
    for host in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"] {
        let out = stack.run_env(&["up"], &[("DOCKER_HOST", host)]);
        assert_eq!(out.status.code(), Some(3), "DOCKER_HOST={host}");
        let err = stderr(&out);
        assert!(err.starts_with(&format!("error: cannot reach the Docker engine at {host}: ")), "{err}");
        assert!(err.contains("help: is Docker running?"), "{err}");
        assert!(err.contains("DOCKER_HOST"), "{err}");
    }
}

/// A relay in front of the Docker socket that can be cut, as when the engine dies mid-run.
struct CuttableDocker {
    path: std::path::PathBuf,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
}

impl CuttableDocker {
    fn start(path: std::path::PathBuf) -> CuttableDocker {
        use std::os::unix::net::{UnixListener, UnixStream};
        let real = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        let listener = UnixListener::bind(&path).unwrap();
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = streams.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), Ok(engine)) = (client, UnixStream::connect(&real)) else { return };
                let mut open = kept.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(engine.try_clone().unwrap());
                for (mut from, mut to) in [(client.try_clone().unwrap(), engine.try_clone().unwrap()), (engine, client)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CuttableDocker { path, streams }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// The engine "dies": the socket disappears and every open connection is cut.
    fn cut(&self) {
        let _ = std::fs::remove_file(&self.path);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn docker_lost_mid_run_gives_exit_code_3_not_a_stack_failure() {
    require_docker!();
    let stack = Stack::new(
        "lost",
        r#"
[stack]
name = "{stack}"
[services.a]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
[services.b]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = { exec = ["false"], timeout = "6s", interval = "50ms" }
"#,
    );
    let relay = CuttableDocker::start(stack.path("docker.sock"));
    let host = relay.host();
    let cutter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(2500));
        relay.cut();
    });
    let out = stack.run_env(&["up"], &[("DOCKER_HOST", &host)]);
    cutter.join().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("cannot reach the Docker engine at {host}")), "{err}");
}

#[test]
fn a_host_port_in_use_is_reported_before_anything_starts() {
    require_docker!();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stack = Stack::new(
        "port",
        &format!(
            "[stack]\nname = \"{{stack}}\"\n[services.db]\nimage = \"stagectl/redis:7\"\n[services.web]\nimage = \"stagectl/debian:bookworm\"\ncommand = [\"sleep\", \"infinity\"]\nports = [\"{port}:80\"]\n"
        ),
    );
    let out = stack.run(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().next().unwrap_or(""), format!("error: host port {port}/tcp for service `web` is already in use"));
    assert_eq!(stack.owned_resources(), (0, 0, 0), "nothing was created");
    drop(listener);
}

#[test]
fn an_invalid_manifest_starts_nothing_and_rebuild_keeps_the_running_stack() {
    require_docker!();
    let stack = Stack::new("invalid", "[stack]\nname = \"{stack}\"\n[services.a]\nimage = \"stagectl/redis:7\"\nready = { tcp = 6379 }\n");
    stack.up_ok();
    let ids = stack.container_ids();
    stack.write_manifest(
        "[stack]\nname = \"{stack}\"\n[services.a]\nimage = \"stagectl/redis:7\"\nready = { tcp = 6379 }\nport = [\"1:2\"]\n",
    );
    let out = stack.run(&["rebuild"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown key `port` in [services.a]"), "{}", stderr(&out));
    assert_eq!(stack.container_ids(), ids, "the running stack was not touched");
}

#[test]
fn down_removes_only_what_the_stack_owns() {
    require_docker!();
    let manifest = "[stack]\nname = \"{stack}\"\n[services.a]\nimage = \"stagectl/debian:bookworm\"\ncommand = [\"sleep\", \"infinity\"]\nvolumes = [\"data:/data\"]\n";
    let one = Stack::new("own1", manifest);
    let two = Stack::new("own2", manifest);
    one.up_ok();
    two.up_ok();
    let out = one.run(&["down"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(one.owned_resources(), (0, 0, 1), "down without --volumes keeps the data volume");
    assert_eq!(two.owned_resources(), (1, 1, 1), "the other stack is untouched");
    let out = one.run(&["down", "--volumes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(one.owned_resources(), (0, 0, 0));
}

#[test]
fn secrets_are_masked_in_failure_logs() {
    require_docker!();
    let stack = Stack::new(
        "secret",
        r#"
[stack]
name = "{stack}"
[services.leaky]
image = "stagectl/debian:bookworm"
env = { TOKEN = "${secret:token}" }
command = ["sh", "-c", "echo token is $TOKEN; exit 1"]
ready = { tcp = 1, timeout = "5s" }
"#,
    );
    let out = stack.run_env(&["up"], &[("STAGECTL_SECRET_token", "tok-XYZ-123")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("| token is ***"), "{err}");
    assert!(!err.contains("tok-XYZ-123") && !stdout(&out).contains("tok-XYZ-123"));
}

#[test]
fn fixture_snapshots_are_committed_without_secret_environment_values() {
    require_docker!();
    let stack = Stack::new(
        "snapsecret",
        r#"
[stack]
name = "{stack}"
[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app", APP_DSN = "postgres://app:${secret:pw}@db/app" }
ready = { postgres = 5432, timeout = "30s" }
[fixtures.db]
files = ["seed.sql"]
"#,
    );
    std::fs::write(stack.path("seed.sql"), "CREATE TABLE t (id int); INSERT INTO t VALUES (1);\n").unwrap();
    let canary = "canary-Zq8v1PwX";
    let out = stack.run_env(&["up"], &[("STAGECTL_SECRET_pw", canary)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let images =
        docker(&["images", "--filter", &format!("label=org.stagectl.stack={}", stack.name), "--format", "{{.Repository}}:{{.Tag}}"]);
    let snapshots: Vec<&str> = images.lines().filter(|l| l.starts_with(SNAPSHOT_REPOSITORY)).collect();
    assert!(!snapshots.is_empty(), "no snapshot was taken: {images}");
    for image in snapshots {
        let config = docker(&["image", "inspect", image]);
        assert!(!config.contains(canary), "{image} keeps the secret: {config}");
        assert!(config.contains("APP_DSN="), "the variable itself is kept (emptied): {config}");
    }
    // Restored from the snapshot, the service still gets its secret from the manifest.
    let out = stack.run_env(&["rebuild"], &[("STAGECTL_SECRET_pw", canary)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &stack.container_ids()["db"]]);
    assert!(env.contains(&format!("APP_DSN=postgres://app:{canary}@db/app")), "{env}");
}

/// A secret used inside longer values, printed alone, JSON-escaped and URL-encoded by the app,
/// and echoed by a failing check: no channel shows it (terminal, `logs`, `exec`, JSON output,
/// the three report formats, the run history on disk).
#[test]
fn a_secret_canary_appears_in_no_output_channel() {
    require_docker!();
    let stack = Stack::new(
        "canary",
        r#"
[stack]
name = "{stack}"
[services.app]
image = "stagectl/debian:bookworm"
env = { DSN = "redis://u:${secret:pw}@cache/0", PW = "${secret:pw}" }
command = ["sh", "-c", "echo \"password is $PW\"; echo \"{\\\"pw\\\":\\\"$PW\\\"}\"; echo \"url=$(printf %s \"$PW\" | sed 's/!/%21/g; s/\\\"/%22/g')\"; sleep infinity"]
ready = { log = "url=", timeout = "10s" }
[[checks.smoke]]
name = "echoes the secret"
exec = { service = "app", command = ["sh", "-c", "echo $PW; echo $DSN"], expect_output = "nothing like it" }
timeout = "1s"
"#,
    );
    let canary = "Cnry!7f3k\"Q9";
    let forms = [canary.to_string(), "Cnry%217f3k".to_string(), r#"Cnry!7f3k\"Q9"#.to_string(), "Cnry!7f3k".to_string()];
    let state = stack.path("state");
    let env = [("STAGECTL_SECRET_pw", canary), ("STAGECTL_STATE_DIR", state.to_str().unwrap()), ("STAGECTL_LOCAL", "true")];
    let (json, junit, md) = (stack.path("r.json"), stack.path("r.xml"), stack.path("r.md"));
    let reports = [format!("json:{}", json.display()), format!("junit:{}", junit.display()), format!("markdown:{}", md.display())];
    let mut seen = String::new();
    for args in [
        vec!["up"],
        vec!["--json", "up"],
        vec!["logs", "app"],
        vec!["exec", "app", "--", "sh", "-c", "echo $PW; echo $DSN"],
        vec!["check", "--report", &reports[0], "--report", &reports[1], "--report", &reports[2]],
        vec!["--json", "check"],
        vec!["status", "--json"],
    ] {
        let out = stack.run_env(&args, &env);
        seen.push_str(&format!("\n== {args:?}\n{}{}", stdout(&out), stderr(&out)));
    }
    assert!(seen.contains("password is ***"), "the app's output is shown, masked: {seen}");
    for file in [&json, &junit, &md] {
        seen.push_str(&std::fs::read_to_string(file).unwrap());
    }
    for entry in std::fs::read_dir(&state).unwrap().flatten() {
        if entry.path().is_file() {
            seen.push_str(&String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()));
        }
    }
    for form in &forms {
        assert!(!seen.contains(form.as_str()), "the secret shows as {form:?} in: {seen}");
    }
}

#[test]
fn logs_and_exec_reach_the_running_service() {
    require_docker!();
    let stack = Stack::new(
        "logs",
        "[stack]\nname = \"{stack}\"\n[services.w]\nimage = \"stagectl/debian:bookworm\"\ncommand = [\"sh\", \"-c\", \"echo hello-logs; sleep infinity\"]\nready = { log = \"hello-logs\" }\n",
    );
    stack.up_ok();
    let out = stack.run(&["logs", "w"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "hello-logs\n");
    let out = stack.run(&["exec", "w", "--", "sh", "-c", "echo from-exec; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out), "from-exec\n");
}

#[test]
fn a_build_is_cached_by_content_and_a_changed_context_rebuilds_and_recreates() {
    require_docker!();
    let stack = Stack::new(
        "build",
        r#"
[stack]
name = "{stack}"
[services.web]
build = { context = "ctx", command = "echo built-on-host > ctx/host.txt" }
ready = { healthcheck = true, timeout = "20s" }
"#,
    );
    let ctx = stack.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let dockerfile = |version: &str| {
        format!(
            "FROM stagectl/debian:bookworm\nCOPY version.txt host.txt /\nHEALTHCHECK --interval=100ms --timeout=1s CMD test -f /tmp/ok\nCMD [\"sh\", \"-c\", \"sleep 0.5; touch /tmp/ok; exec sleep infinity\"]\nLABEL v={version}\n"
        )
    };
    std::fs::write(ctx.join("Dockerfile"), dockerfile("1")).unwrap();
    std::fs::write(ctx.join("version.txt"), format!("{}-one\n", stack.name)).unwrap();

    let first = stack.up_ok();
    let web = &first["services"][0];
    assert_eq!(web["image_source"], "built");
    assert_eq!(web["outcome"], "ready", "the image's own HEALTHCHECK was waited for");
    let id1 = stack.container_ids()["web"].clone();
    let out = docker(&["exec", &format!("{}-web", stack.name), "cat", "/host.txt", "/version.txt"]);
    assert_eq!(out, format!("built-on-host\n{}-one\n", stack.name), "the host command ran before the build");

    let second = stack.up_ok();
    assert_eq!(second["services"][0]["image_source"], "cached");
    assert_eq!(second["changed"], false);

    std::fs::write(ctx.join("version.txt"), format!("{}-two\n", stack.name)).unwrap();
    let third = stack.up_ok();
    assert_eq!(third["services"][0]["image_source"], "built");
    assert_eq!(third["services"][0]["action"]["action"], "recreate");
    assert_ne!(stack.container_ids()["web"], id1);
    let out = docker(&["exec", &format!("{}-web", stack.name), "cat", "/version.txt"]);
    assert_eq!(out, format!("{}-two\n", stack.name));
    // Built images are ours to clean up in the test (they are per-content tags).
    let tag = third["services"][0]["image"].as_str().unwrap().to_string();
    drop(stack);
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
}

#[test]
fn a_missing_image_that_cannot_be_pulled_fails_with_a_clear_error_and_starts_nothing() {
    require_docker!();
    let stack = Stack::new(
        "pull",
        "[stack]\nname = \"{stack}\"\n[services.db]\nimage = \"stagectl/redis:7\"\n[services.ghost]\nimage = \"registry.invalid/nobody/ghost:1\"\n[services.app]\nimage = \"stagectl/debian:bookworm\"\ncommand = [\"sleep\", \"infinity\"]\ndepends_on = [\"ghost\"]\n",
    );
    let out = stack.run(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("ghost FAILED: Docker: pulling registry.invalid/nobody/ghost:1"), "{err}");
    assert!(err.contains("help: check the image name"), "{err}");
    assert!(err.contains("app skipped: not started: dependency `ghost` failed"), "{err}");
    assert!(!stack.container_ids().contains_key("app"));
}

#[test]
fn sigint_during_up_stops_cleanly_records_the_run_cancelled_and_exits_130() {
    require_docker!();
    let stack = Stack::new(
        "sigint",
        r#"
[stack]
name = "{stack}"
[services.quick]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = { exec = ["true"] }
[services.never]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = { exec = ["false"], timeout = "60s", interval = "50ms" }
[services.after]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["never"]
"#,
    );
    let state = stack.path("state");
    let child = std::process::Command::new(BIN)
        .arg("-f")
        .arg(stack.path("stack.toml"))
        .arg("up")
        .env("STAGECTL_STATE_DIR", &state)
        .env("STAGECTL_LOCAL", "true")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until both containers run (`never` is then being probed), then interrupt as Ctrl-C would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let running = || {
        docker(&[
            "ps",
            "--filter",
            &format!("label=org.stagectl.stack={}", stack.name),
            "--filter",
            "status=running",
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .count()
    };
    while running() < 2 {
        assert!(std::time::Instant::now() < deadline, "the stack never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "stopping took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("`up` of stack") && err.contains("cancelled: 2 container(s) left, 2 running"), "{err}");
    assert!(err.contains("run `stagectl up` to finish it or `stagectl down` to remove it"), "{err}");
    assert!(!stack.container_ids().contains_key("after"), "a dependent was started after the interrupt");
    // The run is on record as cancelled, not running.
    let history = stack.run_env(&["down"], &[("STAGECTL_STATE_DIR", state.to_str().unwrap())]);
    assert_eq!(history.status.code(), Some(0));
    let db = run_statuses_in(&state.join("history.db"));
    assert!(db.contains("cancelled"), "run statuses: {db}");
}

/// The run statuses in a history database, read with the sqlite3 CLI if present, else as raw
/// bytes (the status text is stored as-is).
fn run_statuses_in(path: &std::path::Path) -> String {
    let mut text = String::new();
    for suffix in ["", "-wal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(bytes) = std::fs::read(&file) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    ["running", "cancelled", "succeeded", "failed", "interrupted"]
        .iter()
        .filter(|s| text.contains(*s))
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}
