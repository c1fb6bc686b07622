//! A small harness for tests against the real Docker engine: each test gets its own stack
//! name and temp dir, runs the real `stagectl` binary, and tears its stack down on drop —
//! also when the test panics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_stagectl");

/// How stagectl names fixture snapshots: the tests use the library's names, not copies of them.
pub use stagectl::data::snapshot::{KEY_LABEL as SNAPSHOT_KEY_LABEL, REPOSITORY_PREFIX as SNAPSHOT_REPOSITORY};

/// The `docker images --filter` that picks fixture snapshots.
pub fn snapshot_filter() -> String {
    format!("label={}", stagectl::data::snapshot::LABEL)
}

/// The tag of a snapshot of `service` up to its key: `stagectl-snapshot/db:`.
pub fn snapshot_tag_prefix(service: &str) -> String {
    format!("{SNAPSHOT_REPOSITORY}{service}:")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Whether Docker is usable. In CI (`STAGECTL_REQUIRE_DOCKER=1`) its absence fails the test;
/// elsewhere the test is skipped with a loud message on stderr.
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let ok = *AVAILABLE.get_or_init(|| Command::new("docker").arg("info").output().map(|o| o.status.success()).unwrap_or(false));
    if !ok {
        if std::env::var("STAGECTL_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("Docker is required (STAGECTL_REQUIRE_DOCKER=1) but `docker info` fails");
        }
        eprintln!("\n!!!!! SKIPPED: Docker is not reachable; this test needs a real Docker engine !!!!!\n");
    }
    ok
}

/// Skips (loudly) the calling test when Docker is unavailable.
#[macro_export]
macro_rules! require_docker {
    () => {
        if !$crate::harness::docker_available() {
            return;
        }
    };
}

pub struct Stack {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// A new stack; `{stack}` and `{repo}` in the manifest are replaced.
    pub fn new(tag: &str, manifest: &str) -> Stack {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}-{n}-{tag}", std::process::id() % 100_000).chars().take(40).collect::<String>();
        let dir = tempfile::tempdir().unwrap();
        let stack = Stack { name, dir };
        stack.write_manifest(manifest);
        stack
    }

    pub fn write_manifest(&self, manifest: &str) {
        let text = manifest.replace("{stack}", &self.name).replace("{repo}", &repo_root().display().to_string());
        std::fs::write(self.dir.path().join("stack.toml"), text).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `stagectl -f <dir>/stack.toml ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("-f").arg(self.path("stack.toml")).args(args).env_remove("STAGECTL_FILE").env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run stagectl");
        eprintln!(
            "--- stagectl {} (exit {:?})\n[stdout]\n{}\n[stderr]\n{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `up` must succeed; returns the JSON report.
    pub fn up_ok(&self) -> serde_json::Value {
        let out = self.run(&["--json", "up"]);
        assert_eq!(out.status.code(), Some(0), "up failed");
        last_json(&out)
    }

    /// The IDs of the stack's fixture snapshot images, one a line, from the Docker CLI.
    pub fn snapshot_images(&self) -> String {
        docker(&["images", "-q", "--filter", &format!("label=org.stagectl.stack={}", self.name), "--filter", &snapshot_filter()])
    }

    /// IDs of the stack's containers by service, from the Docker CLI (independent of stagectl).
    pub fn container_ids(&self) -> std::collections::BTreeMap<String, String> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=org.stagectl.stack={}", self.name),
            "--format",
            "{{.Label \"org.stagectl.service\"}} {{.ID}}",
        ]);
        out.lines().filter_map(|l| l.split_once(' ')).map(|(s, id)| (s.to_string(), id.to_string())).collect()
    }

    /// Counts of labelled containers, networks and volumes, from the Docker CLI.
    pub fn owned_resources(&self) -> (usize, usize, usize) {
        let filter = format!("label=org.stagectl.stack={}", self.name);
        let count = |args: &[&str]| docker(args).lines().filter(|l| !l.trim().is_empty()).count();
        (
            count(&["ps", "-aq", "--filter", &filter]),
            count(&["network", "ls", "-q", "--filter", &filter]),
            count(&["volume", "ls", "-q", "--filter", &filter]),
        )
    }

    /// The host port Docker published for `service`'s `container_port`.
    pub fn host_port(&self, service: &str, container_port: u16) -> u16 {
        let out = docker(&["port", &format!("{}-{service}", self.name), &container_port.to_string()]);
        out.lines().next().and_then(|l| l.rsplit(':').next()).and_then(|p| p.trim().parse().ok()).expect("published port")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Clean up through the Docker CLI too, so a broken `down` cannot leak resources.
        let _ = Command::new(BIN).args(["down", "--volumes", "--stack", &self.name]).output();
        let filter = format!("label=org.stagectl.stack={}", self.name);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in ids.lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        // Fixture snapshots taken for this stack.
        let images = self.snapshot_images();
        for id in images.lines() {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
    }
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last line of stdout parsed as JSON (the final report of a `--json` run).
pub fn last_json(out: &Output) -> serde_json::Value {
    let text = stdout(out);
    let line = text.lines().rev().find(|l| l.starts_with('{') || l.starts_with('[')).expect("a JSON line on stdout");
    serde_json::from_str(line).expect("valid JSON")
}

/// A minimal HTTP GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Runs SQL in the stack's `db` service and returns psql's unaligned output.
pub fn sql(stack: &Stack, database: &str, query: &str) -> String {
    docker(&["exec", &format!("{}-db", stack.name), "psql", "-X", "-U", "postgres", "-d", database, "-tA", "-c", query])
}

/// A small tmpfs (e.g. a test's state directory, to fill it) mounted for one test and
/// unmounted on drop (also when the test panics). The full-disk tests share it.
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// `None` (with a loud message) where mounting is not permitted (not root).
    pub fn mount(dir: PathBuf, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("\n!!!!! SKIPPED: cannot mount a tmpfs here (needs root); this full-disk test did not run !!!!!\n");
        }
        ok.then_some(SmallDisk { dir })
    }

    /// Writes zeros until the disk is full.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
