//! `deploy --swarm` on a one-node swarm: the demo-like stack deployed, ready, checked and
//! taken down to zero leftovers; a failing job and a readiness timeout read as on one node.
//!
//! One swarm per engine: the swarm tests take a machine-wide file lock (threads of this
//! binary and other test processes alike), make the engine a one-node swarm when it is not
//! one, and leave it again afterwards only if they made it. Leaving removes only swarm
//! resources; the containers of other tests running meanwhile are not touched.

use std::process::Command;

use crate::harness::*;
use crate::SECRET;

/// Holds the swarm for one test; see the module docs.
struct SwarmGuard {
    created: bool,
    /// `docker swarm init` also creates the bridge `docker_gwbridge`, which leaving keeps.
    gwbridge_created: bool,
    _lock: std::fs::File,
}

impl SwarmGuard {
    fn acquire() -> SwarmGuard {
        let path = std::env::temp_dir().join("stagectl-swarm-tests.lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).unwrap();
        fs4::FileExt::lock(&file).unwrap();
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let created = state.trim() != "active";
        let gwbridge_created = created && docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).trim().is_empty();
        if created {
            let out = Command::new("docker").args(["swarm", "init", "--advertise-addr", "127.0.0.1"]).output().unwrap();
            assert!(out.status.success(), "docker swarm init: {}", String::from_utf8_lossy(&out.stderr));
        }
        SwarmGuard { created, gwbridge_created, _lock: file }
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        if self.created {
            let _ = Command::new("docker").args(["swarm", "leave", "--force"]).output();
        }
        if self.gwbridge_created {
            let _ = Command::new("docker").args(["network", "rm", "docker_gwbridge"]).output();
        }
    }
}

impl SwarmGuard {
    /// Only the lock: the engine is left as it is (no swarm unless another test holds one).
    fn lock_only() -> std::fs::File {
        let path = std::env::temp_dir().join("stagectl-swarm-tests.lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).unwrap();
        fs4::FileExt::lock(&file).unwrap();
        file
    }
}

/// Swarm's ingress routing mesh needs the kernel's IPVS; where it is missing (some VMs and
/// nested containers, this project's CI machine among them) ports are published on the node.
fn publish_mode() -> &'static str {
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        "ingress"
    } else {
        eprintln!(
            "\n!!!!! NOTE: no IPVS in this kernel (/proc/net/ip_vs): Swarm's ingress cannot work here; testing `--publish host` !!!!!\n"
        );
        "host"
    }
}

/// The stack's swarm objects and containers, networks, volumes by its label.
fn leftovers(stack: &Stack) -> Vec<String> {
    let filter = format!("label=org.stagectl.stack={}", stack.name);
    let mut out = Vec::new();
    for kind in [
        &["service", "ls", "-q"][..],
        &["secret", "ls", "-q"],
        &["config", "ls", "-q"],
        &["ps", "-aq"],
        &["network", "ls", "-q"],
        &["volume", "ls", "-q"],
    ] {
        let mut args = kind.to_vec();
        args.extend(["--filter", filter.as_str()]);
        for id in docker(&args).lines().filter(|l| !l.trim().is_empty()) {
            out.push(format!("{} {id}", kind[0]));
        }
    }
    out
}

/// The demo stack (as in main.rs) with its fixtures and smoke checks.
const SHOP_SWARM: &str = r#"
[fixtures.db]
files = ["{repo}/fixtures/shop/*.csv", "{repo}/fixtures/shop/*.sql"]
after = ["migrate"]
mask = { "customers.email" = "email", "customers.name" = "name", "customers.phone" = "phone", "reviews.customer_email" = "email" }

[fixtures.cache]
loader = "redis"
files = ["{repo}/fixtures/cache/*.redis"]

[[checks.smoke]]
name = "home page"
http = { service = "app", port = 8080, path = "/", expect_json = { "/service" = "shop" } }

[[checks.smoke]]
name = "product list"
http = { service = "app", port = 8080, path = "/products", expect_json = { "/count" = 10 } }

[[checks.smoke]]
name = "fixtures are loaded"
sql = { service = "db", query = "SELECT count(*) FROM customers WHERE email LIKE '%@example.com'", expect = "5" }

[[checks.smoke]]
name = "cache is warm"
exec = { service = "cache", command = ["redis-cli", "GET", "shop:banner"], expect_output = "Welcome" }
"#;

#[test]
fn deploy_swarm_brings_the_demo_stack_ready_checks_pass_and_down_leaves_nothing() {
    require_docker!();
    let _swarm = SwarmGuard::acquire();
    let stack = Stack::new("swarm", &format!("{}{SHOP_SWARM}", crate::SHOP));
    std::fs::write(stack.path("secrets.env"), format!("api_key={SECRET}\n")).unwrap();

    let out = stack.run(&["--json", "deploy", "--swarm", "--publish", publish_mode()]);
    assert_eq!(out.status.code(), Some(0), "deploy --swarm failed:\n{}\n{}", stdout(&out), stderr(&out));
    let report = last_json(&out);
    let outcome = |s: &str| report["services"].as_array().unwrap().iter().find(|r| r["service"] == s).unwrap()["outcome"].clone();
    assert_eq!(
        (outcome("db"), outcome("cache"), outcome("migrate"), outcome("app")),
        ("ready".into(), "ready".into(), "completed".into(), "ready".into())
    );
    assert!(!stdout(&out).contains(SECRET) && !stderr(&out).contains(SECRET));

    // Swarm services on the project's overlay network; the secret is a Swarm secret, not in
    // the service spec; the app still gets it (its /healthz needs API_KEY).
    let services = docker(&["service", "ls", "--filter", &format!("label=org.stagectl.stack={}", stack.name), "--format", "{{.Name}}"]);
    assert_eq!(services.lines().count(), 4, "{services}");
    let spec = docker(&["service", "inspect", &format!("{}_app", stack.name)]);
    assert!(!spec.contains(SECRET), "the secret's value is in the service spec");
    assert!(spec.contains(&format!("{}_app_API_KEY", stack.name)), "the secret is mounted");
    let overlay = docker(&["network", "inspect", &stack.name, "--format", "{{.Driver}} {{.Attachable}}"]);
    assert_eq!(overlay.trim(), "overlay true");

    // Published (through the ingress where the kernel has IPVS): the app answers on the host
    // port Swarm assigned.
    let port = report["ports"].as_array().unwrap().iter().find(|p| p["service"] == "app").unwrap()["host_port"].as_u64().unwrap();
    let (status, body) = http_get(port as u16, "/products");
    assert_eq!(status, 200, "{body}");

    let out = stack.run(&["check", "smoke"]);
    assert_eq!(out.status.code(), Some(0), "checks failed:\n{}\n{}", stdout(&out), stderr(&out));
    // `status` probes once per service; a connection across this engine's overlay network
    // sometimes takes seconds to open (SYN retransmits), longer than one attempt, so a few
    // looks are allowed before every service must have been seen ready.
    let mut rows = serde_json::Value::Null;
    for _ in 0..10 {
        let out = stack.run(&["status", "--json"]);
        // 1: some service not ready (yet).
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
        rows = last_json(&out);
        if out.status.code() == Some(0) && rows.as_array().unwrap().iter().all(|r| r["ready"] == true) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert!(rows.as_array().unwrap().iter().all(|r| r["ready"] == true), "{rows}");

    // `up` would start plain containers beside the tasks: refused, nothing created.
    let out = stack.run(&["up"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is deployed on Docker Swarm"), "{}", stderr(&out));
    let plain = docker(&["ps", "-aq", "--filter", &format!("name=^{}-", stack.name)]);
    assert!(plain.trim().is_empty(), "up created plain containers: {plain}");

    // Names resolve to the tasks themselves with ports on the node (a virtual IP needs IPVS).
    let mode = docker(&["service", "inspect", "-f", "{{.Spec.EndpointSpec.Mode}}", &format!("{}_db", stack.name)]);
    assert_eq!(mode.trim(), if publish_mode() == "host" { "dnsrr" } else { "vip" });

    // Deployed again: the earlier deployment is replaced from scratch, its named volume (the
    // database's data) emptied, so migrations and fixtures apply to a new database (the
    // checks count the rows). Snapshots on Swarm: the registry test.
    let out = stack.run(&["--json", "deploy", "--swarm", "--publish", publish_mode()]);
    assert_eq!(out.status.code(), Some(0), "second deploy failed:\n{}\n{}", stdout(&out), stderr(&out));
    let again = last_json(&out);
    let rows = |r: &serde_json::Value| {
        r["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap()["fixtures"]["rows"].clone()
    };
    assert_eq!(rows(&again), rows(&report), "{again}");
    assert_eq!(again["services"].as_array().unwrap().iter().find(|s| s["service"] == "migrate").unwrap()["outcome"], "completed");
    let services = docker(&["service", "ls", "--filter", &format!("label=org.stagectl.stack={}", stack.name), "--format", "{{.Name}}"]);
    assert_eq!(services.lines().count(), 4, "{services}");
    let tasks = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.stagectl.stack={}", stack.name),
        "--filter",
        "label=com.docker.swarm.task.id",
    ]);
    assert_eq!(tasks.lines().count(), 4, "only the new deployment's task containers are left: {tasks}");
    let out = stack.run(&["check", "smoke"]);
    assert_eq!(out.status.code(), Some(0), "checks after the redeploy failed:\n{}\n{}", stdout(&out), stderr(&out));

    let out = stack.run(&["down", "--volumes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(leftovers(&stack), Vec::<String>::new(), "down leaves nothing labelled with the stack");
}

const FAILING: &str = r#"
[stack]
name = "{stack}"

[services.setup]
image = "stagectl/debian:bookworm"
job = true
command = ["sh", "-c", "echo setting up; echo boom >&2; exit 3"]

[services.after-setup]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["setup"]

[services.deaf]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
ready = { tcp = 9, timeout = "2s" }
"#;

/// Each service's outcome and message in a JSON report.
fn messages(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["service"].as_str().unwrap().into(), s["outcome"].as_str().unwrap().into(), s["message"].as_str().unwrap_or("").into()))
        .collect()
}

#[test]
fn a_failing_job_and_a_readiness_timeout_read_on_swarm_as_on_one_node() {
    require_docker!();
    let _swarm = SwarmGuard::acquire();
    let on_swarm = Stack::new("swfail", FAILING);
    let out = on_swarm.run(&["--json", "deploy", "--swarm"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let swarm = messages(&last_json(&out));
    let one_node = Stack::new("swfail1", FAILING);
    let out = one_node.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let single = messages(&last_json(&out));
    let find = |rows: &[(String, String, String)], s: &str| rows.iter().find(|r| r.0 == s).cloned().unwrap();

    // The job: the same message, and its output in the report.
    assert_eq!(find(&swarm, "setup"), find(&single, "setup"));
    assert_eq!(find(&swarm, "setup").2, "job exited with code 3");
    assert_eq!(find(&swarm, "after-setup"), find(&single, "after-setup"));
    assert_eq!(find(&swarm, "after-setup").1, "skipped");
    // The timeout: the same wording and probe error (the address and seconds differ).
    let (swarm_deaf, single_deaf) = (find(&swarm, "deaf"), find(&single, "deaf"));
    assert_eq!((swarm_deaf.1.as_str(), single_deaf.1.as_str()), ("failed", "failed"));
    for m in [&swarm_deaf.2, &single_deaf.2] {
        assert!(m.starts_with("not ready after 2.") && m.contains("; last probe error: tcp ") && m.contains(":9: "), "{m}");
    }
    let out = on_swarm.run(&["down"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(leftovers(&on_swarm), Vec::<String>::new());
}

/// `snapshots push` then `deploy --swarm --registry`: the services run the snapshot and the
/// build from the registry (what every node of a bigger swarm would pull), not from this
/// engine's local tags; the data service starts with its fixtures in place.
#[test]
fn a_deploy_with_a_registry_runs_the_pushed_snapshot_and_build_from_there() {
    require_docker!();
    let Some(registry) = crate::registry::Registry::start() else { return };
    let _swarm = SwarmGuard::acquire();
    let stack = Stack::new("swreg", crate::registry::STACK);
    std::fs::write(stack.path("seed.sql"), "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);\n").unwrap();
    std::fs::create_dir_all(stack.path("ctx")).unwrap();
    std::fs::write(stack.path("ctx/Dockerfile"), format!("FROM stagectl/debian:bookworm\nLABEL test.stack={}\n", stack.name)).unwrap();
    let up = stack.up_ok();
    let db = up["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap().clone();
    assert_eq!(db["fixtures"]["snapshot"], "miss", "{up}");
    let out = stack.run(&["down"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = stack.run(&["--json", "snapshots", "push", &registry.address()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pushed: Vec<String> =
        last_json(&out)["images"].as_array().unwrap().iter().map(|i| i["reference"].as_str().unwrap().to_string()).collect();
    // What the deploy makes the engine pull is removed afterwards (the stack's drop removes its
    // snapshots; a build tag carries no stack label).
    let _pulled = crate::registry::Pulled(pushed.clone());

    let out = stack.run(&["--json", "deploy", "--swarm", "--publish", publish_mode(), "--registry", &registry.address()]);
    assert_eq!(out.status.code(), Some(0), "deploy --swarm --registry failed:\n{}\n{}", stdout(&out), stderr(&out));
    let report = last_json(&out);
    let service = |name: &str| report["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap().clone();
    assert_eq!(service("db")["fixtures"]["snapshot"], "hit", "{report}");
    let image_of =
        |name: &str| docker(&["service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", &format!("{}_{name}", stack.name)]);
    for (name, kind) in [("db", "stagectl-snapshot/db:"), ("web", "stagectl-build/web:")] {
        let image = image_of(name);
        assert!(image.starts_with(&format!("{}/{kind}", registry.address())), "{name} runs {image}, not the pushed image");
        assert!(pushed.iter().any(|p| image.starts_with(p.as_str())), "{name} runs {image}; pushed: {pushed:?}");
    }
    let out = stack.run(&["exec", "db", "--", "psql", "-U", "postgres", "-d", "app", "-Atc", "SELECT count(*) FROM t"]);
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "2"), "{}", stderr(&out));

    let out = stack.run(&["down", "--volumes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(leftovers(&stack), Vec::<String>::new());
}

/// A small stack for `daemon --swarm`: PostgreSQL with a published port and a one-file
/// fixture, a service that depends on it, a smoke check on the loaded data.
const SWARM_DAEMON: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app" }
ports = ["5432"]
ready = { exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "app"], timeout = "60s" }

[services.worker]
image = "stagectl/debian:bookworm"
command = ["sleep", "infinity"]
depends_on = ["db"]

[fixtures.db]
files = ["seed.sql"]

[[checks.smoke]]
name = "fixture rows"
sql = { service = "db", query = "SELECT count(*) FROM notes", expect = "2" }
"#;

#[test]
fn daemon_swarm_deploys_up_and_verify_as_swarm_services_reports_them_and_takes_them_down() {
    use crate::daemon::{assert_prometheus_text, Daemon, TOKEN};
    use std::time::{Duration, Instant};

    require_docker!();
    let _swarm = SwarmGuard::acquire();
    let stack = Stack::new("swd", SWARM_DAEMON);
    std::fs::write(
        stack.path("seed.sql"),
        "CREATE TABLE notes (id int PRIMARY KEY, body text);\nINSERT INTO notes VALUES (1, 'a'), (2, 'b');\n",
    )
    .unwrap();
    let publish = publish_mode();
    // Dropped (killed) before the stack, whose drop runs `down`, and before the swarm guard.
    let d = Daemon::start(&stack, &["--no-watch", "--swarm", "--publish", publish]);
    let (_, health) = d.json("GET", "/api/v1/health");
    assert_eq!(health["engine"], "swarm", "{health}");

    let up = d.post("/api/v1/up");
    let run = d.wait_run(up, Duration::from_secs(300));
    assert_eq!((run["status"].as_str(), run["operation"].as_str()), (Some("succeeded"), Some("deploy")), "{run}");

    // Swarm services, not `up`'s plain containers; ports published as asked.
    let filter = format!("label=org.stagectl.stack={}", stack.name);
    let services = docker(&["service", "ls", "--filter", &filter, "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = services.lines().collect();
    names.sort();
    assert_eq!(names, [format!("{}_db", stack.name), format!("{}_worker", stack.name)], "{services}");
    assert!(docker(&["ps", "-aq", "--filter", &format!("name=^{}-db$", stack.name)]).trim().is_empty(), "a plain container `-db` exists");
    let mode =
        docker(&["service", "inspect", &format!("{}_db", stack.name), "--format", "{{range .Endpoint.Ports}}{{.PublishMode}}{{end}}"]);
    assert_eq!(mode.trim(), publish);

    // The status document says where the stack runs and sees every service ready. A
    // connection across the overlay sometimes takes seconds to open (see the test above), so
    // the document is read until it does.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (code, status) = d.json("GET", "/api/v1/status");
        assert_eq!(code, 200, "{status}");
        let rows = status["services"].as_array().cloned().unwrap_or_default();
        if rows.len() == 2 && rows.iter().all(|r| r["ready"] == true) {
            break status;
        }
        assert!(Instant::now() < deadline, "not every service ready in the daemon's status: {status:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status["engine"], "swarm", "{status}");
    assert_eq!(status["swarm"]["publish_on_node"], publish == "host", "{status}");
    // Drift compares `up`'s containers by name: not said for Swarm tasks rather than wrong.
    assert!(status["drift"].is_null(), "{status}");

    // Per-service series for the Swarm services, and the deploy counted as a deployment.
    let (code, metrics) = d.request("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert_prometheus_text(&metrics);
    for service in ["db", "worker"] {
        let labels = format!("{{stack=\"{}\",service=\"{service}\"}}", stack.name);
        assert!(metrics.contains(&format!("stagectl_service_ready{labels} 1\n")), "{service} not ready in:\n{metrics}");
        assert!(metrics.contains(&format!("stagectl_service_ready_seconds{labels} ")), "no ready time for {service}:\n{metrics}");
        assert!(metrics.contains(&format!("stagectl_service_restarts{labels} ")), "no restarts for {service}:\n{metrics}");
    }
    assert!(metrics.contains(&format!("stagectl_deploy_runs_total{{stack=\"{}\"}} 1\n", stack.name)), "{metrics}");
    assert!(!metrics.contains("stagectl_drifted_services"), "{metrics}");

    // A verb on single containers is refused while the daemon deploys the stack to Swarm.
    let env = [("STAGECTL_STATE_DIR", stack.path("state").to_str().unwrap().to_string()), ("STAGECTL_TOKEN", TOKEN.to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = stack.run_env(&["stop"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`stop` does not work on a stack on Docker Swarm"), "{}", stderr(&out));

    // verify: a fresh deploy, then the checks.
    let verify = d.post("/api/v1/verify");
    let run = d.wait_run(verify, Duration::from_secs(300));
    assert_eq!((run["status"].as_str(), run["operation"].as_str()), (Some("succeeded"), Some("verify")), "{run}");
    let (_, detail) = d.json("GET", &format!("/api/v1/runs/{verify}"));
    let checks = detail["checks"].as_array().cloned().unwrap_or_default();
    assert!(checks.iter().any(|c| c["name"] == "fixture rows" && c["outcome"] == "passed"), "{detail:#}");
    assert_eq!(docker(&["service", "ls", "-q", "--filter", &filter]).lines().count(), 2);

    let down = d.post("/api/v1/down");
    assert_eq!(d.wait_run(down, Duration::from_secs(120))["status"], "succeeded");
    assert_eq!(leftovers(&stack), Vec::<String>::new(), "the daemon's down leaves nothing labelled with the stack");
}

/// On an engine that manages no swarm, `deploy --swarm` and `daemon --swarm` are refused at
/// once with the way to make one (the daemon before it listens: each of its runs would fail).
#[test]
fn deploy_and_daemon_on_an_engine_in_no_swarm_say_how_to_make_one() {
    require_docker!();
    let _lock = SwarmGuard::lock_only();
    if docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).trim() == "active" {
        eprintln!("\n!!!!! NOTE: this engine is in a swarm not made by these tests; the refusal was NOT tested !!!!!\n");
        return;
    }
    let stack = Stack::new(
        "noswarm",
        "[stack]\nname = \"{stack}\"\n\n[services.a]\nimage = \"stagectl/debian:bookworm\"\ncommand = [\"sleep\", \"infinity\"]\n",
    );
    let state = tempfile::tempdir().unwrap();
    let env = [("STAGECTL_STATE_DIR", state.path().to_str().unwrap())];
    for args in [&["deploy", "--swarm"][..], &["daemon", "--swarm", "--listen", "127.0.0.1:0"]] {
        let out = stack.run_env(args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("is not in a swarm") && err.contains("docker swarm init --advertise-addr 127.0.0.1"), "{args:?}: {err}");
    }
    assert_eq!(leftovers(&stack), Vec::<String>::new(), "nothing was created");
}
