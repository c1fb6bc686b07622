//! `stagectl export k8s` on the demo stack and every example: each exported document validates
//! against the Kubernetes OpenAPI schemas of two versions, offline and strict (PyPI's
//! `kubernetes-validate`, installed by scripts/install-kubernetes-validate.sh), and no secret
//! value is written without `--include-secret-values`. No Docker needed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Two Kubernetes versions the pinned kubernetes-validate ships schemas for: an old supported
/// one and a recent one.
const VERSIONS: [&str; 2] = ["1.29.0", "1.33.0"];

/// A value no manifest holds, given as the demo's `${secret:api_key}`.
const SECRET: &str = "s3cr3t-export-k8s-7f1d";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The demo's stack.toml and every `examples/*/stack.toml`.
fn stacks() -> Vec<PathBuf> {
    let root = repo_root();
    let mut stacks = vec![root.join("stack.toml")];
    let mut examples: Vec<PathBuf> =
        std::fs::read_dir(root.join("examples")).unwrap().flatten().map(|e| e.path().join("stack.toml")).filter(|p| p.is_file()).collect();
    examples.sort();
    assert!(examples.len() >= 3, "expected the examples' stack.toml files, found {examples:?}");
    stacks.extend(examples);
    stacks
}

fn export(stack: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_stagectl"))
        .arg("-f")
        .arg(stack)
        .args(["export", "k8s"])
        .args(args)
        .env("STAGECTL_SECRET_api_key", SECRET)
        .env("STAGECTL_SECRETS_FILE", "/nonexistent/secrets.env")
        .env_remove("STAGECTL_PROFILES")
        .env_remove("STAGECTL_PROJECT")
        .output()
        .unwrap();
    assert!(output.status.success(), "export of {} failed:\n{}", stack.display(), String::from_utf8_lossy(&output.stderr));
    output
}

/// The validator: `STAGECTL_KUBERNETES_VALIDATE`, the cached venv of the install script, or PATH.
fn validator() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("STAGECTL_KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var("STAGECTL_TOOLS_DIR").map(PathBuf::from).ok().or_else(|| {
        let base =
            std::env::var("XDG_CACHE_HOME").map(PathBuf::from).or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cache")));
        base.ok().map(|b| b.join("stagectl"))
    });
    let cached = cache.map(|c| c.join("kubernetes-validate/bin/kubernetes-validate"));
    if let Some(tool) = cached.filter(|t| t.is_file()) {
        return Some(tool);
    }
    Command::new("kubernetes-validate").arg("--version").output().ok().filter(|o| o.status.success()).map(|_| "kubernetes-validate".into())
}

fn required() -> bool {
    std::env::var("STAGECTL_REQUIRE_DOCKER").as_deref() == Ok("1") || std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// A stack that uses every mapped field the demo and examples leave out: named volumes (own and
/// shared), tmpfs, shm, udp ports, capabilities, user ids, host aliases, init, grace period,
/// labels, each probe kind, a job with a volume.
const EVERYTHING: &str = r#"
[stack]
name = "everything"

[services.db]
image = "postgres:15"
volumes = ["pgdata:/var/lib/postgresql/data", "shared:/shared"]
env = { POSTGRES_PASSWORD = "${secret:api_key}" }
ready = { postgres = 5432, timeout = "45s", interval = "500ms", retries = 4 }

[services.maria]
image = "mariadb:10.11"
ready = { mysql = 3306 }

[services.dns]
image = "dns:1"
ports = ["5353:53/udp", "127.0.0.1:8053:8053"]
ready = { exec = ["test", "-f", "/ready"] }
cap_add = ["NET_BIND_SERVICE"]
cap_drop = ["ALL"]
user = "1000:1000"

[services.seed]
image = "seed:1"
job = true
depends_on = ["db"]
volumes = ["scratch:/scratch"]

[services.web]
image = "web:1"
ports = ["auto:8000", "9000:9000"]
depends_on = { db = "started", seed = "completed", maria = "ready" }
volumes = ["shared:/srv/shared:ro", "./conf:/etc/web:ro"]
tmpfs = ["/run:size=64m", "/tmp"]
shm_size = "256m"
extra_hosts = ["metadata.local:169.254.169.254", "gw:host-gateway"]
init = true
stop_grace_period = "20s"
labels = { "com.example.team" = "core", "tier" = "frontend" }
ulimits = { nofile = 4096 }
restart = "on-failure:3"
ready = { http = "/healthz", port = 8000, status = 204 }

[services.logger]
image = "logger:1"
ready = { log = "started" }
"#;

#[test]
fn exported_documents_validate_against_two_kubernetes_versions() {
    let Some(tool) = validator() else {
        if required() {
            panic!("kubernetes-validate is required in CI: run scripts/install-kubernetes-validate.sh (scripts/test.sh does)");
        }
        eprintln!("\n!!!!! SKIPPED: kubernetes-validate not found; run scripts/install-kubernetes-validate.sh !!!!!\n");
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let everything = out.path().join("everything.toml");
    std::fs::write(&everything, EVERYTHING).unwrap();
    let mut runs: Vec<(PathBuf, Vec<&str>)> = stacks().into_iter().map(|s| (s, vec![])).collect();
    runs.push((everything.clone(), vec![]));
    runs.push((everything, vec!["--published", "load-balancer", "--volume-size", "5Gi"]));
    let mut files = Vec::new();
    for (i, (stack, extra)) in runs.iter().enumerate() {
        let dir = out.path().join(format!("stack-{i}"));
        let mut args = vec!["-o", dir.to_str().unwrap()];
        args.extend(extra);
        export(stack, &args);
        let mut written: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        written.sort();
        assert!(written.iter().any(|p| p.to_string_lossy().contains("deployment-")), "{}: no Deployment in {written:?}", stack.display());
        for file in &written {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(!text.contains(SECRET), "{} holds the secret value", file.display());
        }
        files.extend(written);
    }
    for version in VERSIONS {
        let result = Command::new(&tool).args(["--strict", "--quiet", "-k", version]).args(&files).output().unwrap();
        assert!(
            result.status.success(),
            "kubernetes-validate -k {version} --strict failed:\n{}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
}

#[test]
fn secret_values_appear_only_when_asked_for() {
    let demo = repo_root().join("stack.toml");
    let plain = export(&demo, &[]);
    let stdout = String::from_utf8(plain.stdout).unwrap();
    let stderr = String::from_utf8(plain.stderr).unwrap();
    assert!(stdout.contains("kind: Secret") && stdout.contains("app.API_KEY: REPLACE-ME"), "{stdout}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    assert_eq!(stdout.matches("\n---\n").count(), stdout.matches("\nkind: ").count(), "one separator per document");
    let with = export(&demo, &["--include-secret-values"]);
    assert!(String::from_utf8(with.stdout).unwrap().contains(SECRET));
}

#[test]
fn fields_that_do_not_carry_over_are_named_on_stderr() {
    let output = export(&repo_root().join("stack.toml"), &[]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    for needle in [
        "warning: service app: build not carried over",
        "warning: checks.smoke `home page`: not carried over",
        "warning: fixtures.db: fixtures/shop/02_customers.csv left out of the ConfigMap: table `customers` is masked",
        "warning: migrations.db: the lint, the lock probe",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
}

#[test]
fn an_unwritable_output_directory_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("k8s");
    let output = Command::new(env!("CARGO_BIN_EXE_stagectl"))
        .arg("-f")
        .arg(repo_root().join("examples/risky-migration/stack.toml"))
        .args(["export", "k8s", "-o"])
        .arg(&under_a_file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(&format!("error: cannot write {}", under_a_file.display())), "{stderr}");
}
