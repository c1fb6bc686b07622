//! stagectl against Podman's Docker-compatible API (README "Podman"): the test starts its own
//! `podman system service` on a socket in its temp dir, copies the base images from Docker
//! into Podman when Podman lacks them, and runs the real binary with `DOCKER_HOST` pointing
//! at that socket: up → ready → checks → rebuild from the fixture snapshot → down, with no
//! container, network, volume or image of the stack left in Podman.
//!
//! Without podman the test is skipped with a loud banner; with `STAGECTL_REQUIRE_PODMAN=1`
//! (CI installs podman, `.ci/run`) it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const IMAGES: &[&str] = &["stagectl/postgres:15", "stagectl/redis:7", "stagectl/debian:bookworm"];
const SECRET: &str = "podman-canary-7Hq2xV";

/// PostgreSQL with migrations, fixtures (and so a snapshot) and a secret in its environment;
/// Redis with fixtures; the demo app (the binary scripts/build-shop.sh builds, mounted into
/// the Debian image) probed over HTTP; a built image whose own HEALTHCHECK gates readiness.
const STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "shop", APP_TOKEN = "${secret:api_key}" }
ready = { postgres = 5432, timeout = "60s" }

[services.cache]
image = "stagectl/redis:7"
ready = { tcp = 6379, timeout = "30s" }

[services.app]
image = "stagectl/debian:bookworm"
command = ["/usr/local/bin/shop"]
volumes = ["{repo}/demo/shop/dist/shop:/usr/local/bin/shop:ro"]
ports = ["8080"]
depends_on = ["db", "cache"]
env = { PORT = "8080", DATABASE_URL = "postgres://postgres@db:5432/shop", REDIS_URL = "redis://cache:6379/", API_KEY = "${secret:api_key}" }
ready = { http = "/healthz", port = 8080, timeout = "60s" }

[services.health]
build = { context = "health" }
ready = { healthcheck = true, timeout = "60s" }

[fixtures.db]
files = ["{repo}/fixtures/shop/*.csv", "{repo}/fixtures/shop/*.sql", "seed.sql"]
mask = { "customers.email" = "email", "customers.name" = "name" }

[fixtures.cache]
loader = "redis"
files = ["{repo}/fixtures/cache/*.redis"]

[migrations.db]
dir = "{repo}/demo/shop/migrations"

[[checks.smoke]]
name = "home page"
http = { service = "app", port = 8080, path = "/", expect_json = { "/service" = "shop" } }

[[checks.smoke]]
name = "fixtures are loaded"
sql = { service = "db", query = "SELECT count(*) FROM customers WHERE email LIKE '%@example.com'", expect = "5" }

[[checks.smoke]]
name = "cache is warm"
exec = { service = "cache", command = ["redis-cli", "GET", "shop:banner"], expect_output = "Welcome" }
"#;

/// Whether podman is installed. In CI (`STAGECTL_REQUIRE_PODMAN=1`) its absence fails the
/// test; elsewhere the test is skipped with a loud message on stderr.
fn podman_available() -> bool {
    let ok = Command::new("podman").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("STAGECTL_REQUIRE_PODMAN").as_deref() == Ok("1") {
            panic!("podman is required (STAGECTL_REQUIRE_PODMAN=1) but `podman --version` fails; `apt-get install podman catatonit`");
        }
        eprintln!(
            "\n!!!!! SKIPPED: podman is not installed; stagectl against Podman's Docker API was NOT tested (apt-get install podman catatonit) !!!!!\n"
        );
    }
    ok
}

fn podman(args: &[&str]) -> String {
    let out = Command::new("podman").args(args).output().expect("podman CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A hard limit of this process from /proc/self/limits (`Max open files`, `Max processes`).
fn hard_limit(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().nth(1)?.parse().ok()
}

/// The containers.conf the service runs with. Podman gives every container nofile 1048576 and
/// nproc 4194304 unless told otherwise, and raising a hard limit needs CAP_SYS_RESOURCE,
/// which a sandboxed CI runner may not have ("error setting rlimit … operation not
/// permitted"): the defaults become the limits this process has (nproc at most the kernel's
/// pid_max, as high as Podman could go here).
fn containers_conf(dir: &Path) -> PathBuf {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(32768);
    let nofile = hard_limit("Max open files").unwrap_or(1024).min(1_048_576);
    let nproc = hard_limit("Max processes").unwrap_or(pid_max).min(pid_max);
    let path = dir.join("containers.conf");
    std::fs::write(&path, format!("[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n")).unwrap();
    path
}

/// The base images in Podman: copied from Docker (`docker save | podman load`) when missing.
fn load_images() {
    let missing: Vec<&str> = IMAGES
        .iter()
        .copied()
        .filter(|i| !Command::new("podman").args(["image", "exists", i]).status().is_ok_and(|s| s.success()))
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("podman test: copying {} from Docker into Podman", missing.join(", "));
    let mut save = Command::new("docker").arg("save").args(&missing).stdout(Stdio::piped()).spawn().expect("docker save");
    let load = Command::new("podman").args(["load", "-q"]).stdin(save.stdout.take().unwrap()).output().expect("podman load");
    assert!(save.wait().unwrap().success(), "docker save {missing:?} failed (scripts/build-images.sh builds them)");
    assert!(load.status.success(), "podman load failed: {}", String::from_utf8_lossy(&load.stderr));
}

/// A `podman system service` on a private socket, stopped on drop.
struct PodmanService {
    child: Child,
    host: String,
}

impl PodmanService {
    fn start(dir: &Path) -> PodmanService {
        let socket = dir.join("podman.sock");
        let host = format!("unix://{}", socket.display());
        let log = std::fs::File::create(dir.join("podman-service.log")).unwrap();
        let child = Command::new("podman")
            .args(["system", "service", "--time=0", &host])
            .env("CONTAINERS_CONF", containers_conf(dir))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("podman system service");
        let service = PodmanService { child, host };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "podman system service did not listen on {}", socket.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Podman holds of `stack`: containers, networks, volumes, images (by the stack label;
/// one label filter each: Podman ORs several label filters on images).
fn leftovers(stack: &str) -> Vec<String> {
    let filter = format!("label=org.stagectl.stack={stack}");
    let mut all = Vec::new();
    for args in [
        vec!["ps", "-a", "--filter", &filter, "--format", "container {{.Names}}"],
        vec!["network", "ls", "--filter", &filter, "--format", "network {{.Name}}"],
        vec!["volume", "ls", "--filter", &filter, "--format", "volume {{.Name}}"],
        vec!["images", "--filter", &filter, "--format", "image {{.ID}}"],
    ] {
        all.extend(podman(&args).lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
    }
    all
}

/// Removes whatever of the stack is left in Podman (also when the test fails), before the
/// service stops.
struct Cleanup<'a> {
    stack: &'a Stack,
    host: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.stack.run_env(&["down", "--volumes"], &[("DOCKER_HOST", &self.host)]);
        let filter = format!("label=org.stagectl.stack={}", self.stack.name);
        for (list, remove) in [
            (vec!["ps", "-aq", "--filter", &filter], vec!["rm", "-f", "-t", "0"]),
            (vec!["network", "ls", "-q", "--filter", &filter], vec!["network", "rm", "-f"]),
            (vec!["volume", "ls", "-q", "--filter", &filter], vec!["volume", "rm", "-f"]),
            (vec!["images", "-q", "--filter", &filter], vec!["rmi", "-f"]),
        ] {
            for id in podman(&list).lines().filter(|l| !l.trim().is_empty()) {
                let _ = Command::new("podman").args(&remove).arg(id).output();
            }
        }
    }
}

fn service<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn podman_up_ready_checks_rebuild_from_the_snapshot_and_down_leave_nothing() {
    require_docker!();
    if !podman_available() {
        return;
    }
    let shop = repo_root().join("demo/shop/dist/shop");
    assert!(shop.exists(), "{} is missing: run scripts/build-shop.sh (scripts/test.sh does)", shop.display());
    load_images();
    let stack = Stack::new("podman", STACK);
    std::fs::write(stack.path("secrets.env"), format!("api_key={SECRET}\n")).unwrap();
    // A fixture unique to this run, so its snapshot key is too (no other run's snapshot hits).
    std::fs::write(stack.path("seed.sql"), format!("-- {}\nSELECT 1;\n", stack.name)).unwrap();
    std::fs::create_dir_all(stack.path("health")).unwrap();
    std::fs::write(
        stack.path("health/Dockerfile"),
        "FROM stagectl/debian:bookworm\nHEALTHCHECK --interval=1s --timeout=5s CMD test -f /tmp/ok\nCMD [\"sh\", \"-c\", \"sleep 1; touch /tmp/ok; exec sleep infinity\"]\n",
    )
    .unwrap();
    let service_dir = tempfile::tempdir().unwrap();
    let podman_service = PodmanService::start(service_dir.path());
    let host = podman_service.host.clone();
    let _cleanup = Cleanup { stack: &stack, host: host.clone() };
    let env = [("DOCKER_HOST", host.as_str())];

    let out = stack.run_env(&["--json", "up"], &env);
    assert_eq!(out.status.code(), Some(0), "up on Podman failed: {}", stderr(&out));
    let report = last_json(&out);
    for (name, outcome) in [("db", "ready"), ("cache", "ready"), ("app", "ready"), ("health", "ready")] {
        assert_eq!(service(&report, name)["outcome"], outcome, "{name}: {report}");
    }
    assert_eq!(service(&report, "db")["fixtures"]["snapshot"], "miss", "{report}");
    assert_eq!(service(&report, "health")["image_source"], "built");
    assert!(!stdout(&out).contains(SECRET) && !stderr(&out).contains(SECRET), "the secret reached the output");

    // The snapshot is listed under its short name and holds no secret.
    let out = stack.run_env(&["snapshots", "ls"], &env);
    assert_eq!(out.status.code(), Some(0));
    let listed: Vec<String> = stdout(&out).lines().filter(|l| l.contains(&stack.name)).map(str::to_string).collect();
    assert_eq!(listed.len(), 1, "{}", stdout(&out));
    assert!(listed[0].starts_with(&snapshot_tag_prefix("db")), "{listed:?}");
    let snapshot = listed[0].split_whitespace().next().unwrap().to_string();
    let inspect = podman(&["image", "inspect", &snapshot]);
    assert!(!inspect.is_empty(), "podman cannot inspect {snapshot}");
    assert!(!inspect.contains(SECRET), "the snapshot holds the secret");

    let out = stack.run_env(&["check"], &env);
    assert_eq!(out.status.code(), Some(0), "checks on Podman failed: {}", stdout(&out));
    let out = stack.run_env(&["--json", "status"], &env);
    assert_eq!(out.status.code(), Some(0));
    let rows = last_json(&out);
    assert!(rows.as_array().unwrap().iter().all(|r| r["ready"] == true), "{rows}");

    let out = stack.run_env(&["--json", "rebuild"], &env);
    assert_eq!(out.status.code(), Some(0), "rebuild on Podman failed: {}", stderr(&out));
    assert_eq!(service(&last_json(&out), "db")["fixtures"]["snapshot"], "hit");

    // The db now runs from the snapshot: a prune leaves it (Podman's forced removal of an
    // image would take the container with it).
    let out = stack.run_env(&["snapshots", "prune", "--budget", "0B"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = stack.run_env(&["--json", "status"], &env);
    let rows = last_json(&out);
    assert_eq!(rows.as_array().unwrap().len(), 4, "a prune removed a container: {rows}");
    assert!(rows.as_array().unwrap().iter().all(|r| r["ready"] == true), "{rows}");
    assert!(stdout(&stack.run_env(&["snapshots", "ls"], &env)).contains(&snapshot), "a prune removed the snapshot in use");

    let out = stack.run_env(&["down", "--volumes"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let images: Vec<String> = leftovers(&stack.name).into_iter().filter(|l| !l.starts_with("image ")).collect();
    assert_eq!(images, Vec::<String>::new(), "down --volumes left these in Podman");
    let out = stack.run_env(&["snapshots", "prune", "--budget", "0B"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Only the built image is left (stagectl keeps built images; the test removes it).
    let left = leftovers(&stack.name);
    assert!(left.iter().all(|l| l.starts_with("image ")) && left.len() <= 1, "{left:?}");
}
