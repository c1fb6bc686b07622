//! `snapshots push REGISTRY`: a stack's fixture snapshot pushed to a real registry (Debian's
//! `docker-registry`, started here on a free loopback port: Docker talks plain HTTP to
//! registries on 127.0.0.0/8 without configuration) and pulled back from there.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const BINARY: &str = "/usr/bin/docker-registry";

/// A registry on loopback with its own storage, killed (and its storage removed) on drop.
pub(crate) struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `None` (after a loud banner) when the binary is missing; under
    /// `STAGECTL_REQUIRE_DOCKER=1` that fails the test (scripts/test.sh installs it).
    pub(crate) fn start() -> Option<Registry> {
        if !std::path::Path::new(BINARY).exists() {
            if std::env::var("STAGECTL_REQUIRE_DOCKER").as_deref() == Ok("1") {
                panic!("{BINARY} is required (STAGECTL_REQUIRE_DOCKER=1); `apt-get install docker-registry` (scripts/test.sh does)");
            }
            eprintln!("\n!!!!! SKIPPED: {BINARY} is missing; `snapshots push` was NOT tested (apt-get install docker-registry) !!!!!\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new(BINARY).arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let registry = Registry { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || http_get(port, "/v2/").0 != 200 {
            assert!(Instant::now() < deadline, "the registry on 127.0.0.1:{port} did not answer /v2/");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (just released by the system).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// Image tags a test pulled or built, removed also on panic (the stack's drop removes its
/// snapshots; a build tag carries no stack label).
pub(crate) struct Pulled(pub(crate) Vec<String>);

impl Drop for Pulled {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", t]).output();
        }
    }
}

/// A PostgreSQL data service with a fixture (snapshotted) and a built service.
pub(crate) const STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app" }
ready = { postgres = 5432, timeout = "30s" }

[fixtures.db]
files = ["seed.sql"]

[services.web]
build = { context = "ctx" }
command = ["sleep", "infinity"]
"#;

#[test]
fn pushed_snapshots_can_be_pulled_from_the_registry_and_a_dead_registry_is_named() {
    require_docker!();
    let Some(registry) = Registry::start() else { return };
    let stack = Stack::new("push", STACK);
    std::fs::write(stack.path("seed.sql"), "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);\n").unwrap();
    std::fs::create_dir_all(stack.path("ctx")).unwrap();
    std::fs::write(stack.path("ctx/Dockerfile"), format!("FROM stagectl/debian:bookworm\nLABEL test.stack={}\n", stack.name)).unwrap();
    let up = stack.up_ok();
    let service = |name: &str| up["services"].as_array().unwrap().iter().find(|s| s["service"] == name).unwrap().clone();
    assert_eq!(service("db")["fixtures"]["snapshot"], "miss", "{up}");
    let built = service("web")["image"].as_str().unwrap().to_string();
    assert!(built.starts_with(&format!("{}web:", stagectl::orchestrator::images::BUILD_REPOSITORY_PREFIX)), "{up}");

    let out = stack.run(&["--json", "snapshots", "push", &registry.address()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = last_json(&out);
    let images = report["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "the data service's snapshot and the build: {report}");
    assert_eq!((images[1]["image"].as_str(), images[1]["kind"].as_str()), (Some(built.as_str()), Some("build")), "{report}");
    let built_pushed = format!("{}/{built}", registry.address());
    assert_eq!(images[1]["reference"], built_pushed.as_str());
    let (local, pushed) = (images[0]["image"].as_str().unwrap(), images[0]["reference"].as_str().unwrap().to_string());
    assert!(local.starts_with(&snapshot_tag_prefix("db")), "{report}");
    assert_eq!(pushed, format!("{}/{local}", registry.address()));
    assert_eq!((images[0]["kind"].as_str(), images[0]["how"].as_str()), (Some("snapshot"), Some("current")));
    // The build's tag too: it is not labelled with the stack, so the stack's drop leaves it.
    let _pulled = Pulled(vec![pushed.clone(), built_pushed.clone(), built.clone()]);

    // The registry tag was only the push's handle; pulled back, the image is the snapshot.
    let _ = Command::new("docker").args(["rmi", &pushed]).output();
    assert!(docker(&["images", "-q", &pushed]).trim().is_empty(), "the registry tag is not left locally");
    let pull = Command::new("docker").args(["pull", "-q", &pushed]).output().unwrap();
    assert!(pull.status.success(), "docker pull {pushed}: {}", stderr(&pull));
    let labels = docker(&["image", "inspect", "-f", "{{json .Config.Labels}}", &pushed]);
    assert!(labels.contains(&format!("\"{}\"", stagectl::data::snapshot::LABEL)), "{labels}");
    assert!(labels.contains(&format!("\"org.stagectl.stack\":\"{}\"", stack.name)), "{labels}");
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &pushed]), docker(&["image", "inspect", "-f", "{{.Id}}", local]));
    let pull = Command::new("docker").args(["pull", "-q", &built_pushed]).output().unwrap();
    assert!(pull.status.success(), "docker pull {built_pushed}: {}", stderr(&pull));
    assert!(docker(&["image", "inspect", "-f", "{{json .Config.Labels}}", &built_pushed]).contains(&stack.name));

    // Piped: one plain line per image.
    let out = stack.run(&["snapshots", "push", &registry.address()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("pushed {pushed} (service db, snapshot current")), "{}", stdout(&out));

    // Nothing listens there: exit 1, naming the registry and the image.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = stack.run(&["snapshots", "push", &dead]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("pushing {local} to registry {dead} failed")), "{err}");
    assert!(docker(&["images", "-q", &format!("{dead}/{local}")]).trim().is_empty(), "a failed push leaves no tag");

    // An address Docker would not take is refused before anything is asked.
    let out = stack.run(&["snapshots", "push", "https://user:pw@127.0.0.1:5000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("a scheme is not part") && !stderr(&out).contains("pw@"), "{}", stderr(&out));
}
