//! `stagectl import` on the compose projects of `tests/import/`, without Docker: each converts to
//! the stack.toml and warnings of its golden files (`expected.toml`, `expected.warnings`;
//! `STAGECTL_BLESS=1 cargo test --test import` rewrites them), and the result passes the
//! manifest parser with the meaning the compose file had. Then the command line: warnings on
//! stderr with the compose file's lines, `--json`, `-o` and `--force`, errors with positions.
//! The same projects are brought up on real Docker in `tests/docker/import.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use stagectl::import::Import;
use stagectl::manifest::{Manifest, Probe, Service, VarSource, VolumeSource};

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import").join(case)
}

/// The case converted for a stack.toml beside its compose file, checked against the golden
/// files, and parsed by the manifest module (no variables set, build contexts must exist).
fn imported(case: &str, profiles: &[&str]) -> (Import, Manifest) {
    let dir = case_dir(case);
    let profiles: Vec<String> = profiles.iter().map(|p| p.to_string()).collect();
    let import = stagectl::import::import_file(&dir.join("docker-compose.yml"), &dir, None, &profiles).expect("import");
    let warnings: String = import.warnings.iter().map(|w| w.render("docker-compose.yml") + "\n").collect();
    golden(&dir.join("expected.toml"), &import.toml);
    golden(&dir.join("expected.warnings"), &warnings);
    let manifest = stagectl::manifest::parse(&import.toml, "stack.toml", &dir, &VarSource::default(), &|p: &Path| p.is_dir())
        .unwrap_or_else(|e| panic!("the imported manifest does not validate:\n{}\n{}", e.render(), import.toml));
    (import, manifest)
}

fn golden(path: &Path, actual: &str) {
    if std::env::var("STAGECTL_BLESS").as_deref() == Ok("1") {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual).unified_diff().header("expected", "actual").to_string();
        panic!("{} differs (STAGECTL_BLESS=1 to accept):\n{diff}", path.display());
    }
}

fn service<'m>(m: &'m Manifest, name: &str) -> &'m Service {
    m.service(name).unwrap_or_else(|| panic!("no service `{name}`"))
}

fn probe(m: &Manifest, name: &str) -> Option<Probe> {
    service(m, name).ready.as_ref().map(|r| r.probe.clone())
}

fn env<'m>(m: &'m Manifest, svc: &str, key: &str) -> &'m str {
    &service(m, svc).env.get(key).unwrap_or_else(|| panic!("no {key} in {svc}")).value
}

fn lines(import: &Import) -> Vec<usize> {
    import.warnings.iter().map(|w| w.line).collect()
}

#[test]
fn web_db_cache_keeps_the_services_their_gating_and_native_probes() {
    let (import, m) = imported("web-db-cache", &[]);
    assert_eq!(m.stack, "web-db-cache", "the directory names the stack, as it names a Compose project");
    assert_eq!(import.services, ["web", "db", "cache"]);
    assert_eq!(probe(&m, "web"), Some(Probe::Http { port: 8080, path: "/health".into(), status: 200 }));
    assert_eq!(probe(&m, "db"), Some(Probe::Postgres { port: 5432 }));
    assert_eq!(probe(&m, "cache"), Some(Probe::Tcp { port: 6379 }));
    assert_eq!(service(&m, "web").depends_on, ["db", "cache"]);
    assert_eq!(service(&m, "web").build.as_ref().unwrap().context, case_dir("web-db-cache").join("web"));
    assert_eq!(service(&m, "web").ports[0].container_port, 8080);
    assert_eq!(env(&m, "web", "PORT"), "8080");
    assert_eq!(env(&m, "db", "POSTGRES_DB"), "shop");
    // deadline = start_period + retries × (interval + timeout)
    assert_eq!(service(&m, "db").ready.as_ref().unwrap().timeout.as_secs(), 30 + 5 * 15);
    assert_eq!(lines(&import), [7], "container_name; the restarts and labels are carried");
    assert_eq!(service(&m, "db").restart, stagectl::manifest::Restart::Always);
    assert_eq!(service(&m, "web").restart, stagectl::manifest::Restart::Always, "unless-stopped");
    assert_eq!(service(&m, "cache").labels.get("com.example.tier").map(String::as_str), Some("cache"));
}

#[test]
fn worker_queue_makes_the_seeder_a_job_and_keeps_shell_variables_for_the_container() {
    let (import, m) = imported("worker-queue", &[]);
    assert!(service(&m, "seed").job, "the worker waits for it with service_completed_successfully");
    assert!(!service(&m, "worker").job && !service(&m, "queue").job);
    assert_eq!(service(&m, "worker").depends_on, ["queue", "seed"]);
    let command = service(&m, "worker").command.clone().unwrap();
    assert_eq!(command[..2], ["sh", "-c"]);
    assert!(command[2].contains("-h \"$QUEUE_HOST\""), "`$$` reaches the shell as `$`: {command:?}");
    assert!(import.warnings.iter().any(|w| w.line == 28 && w.message.contains("replicas: 2")));
}

#[test]
fn init_jobs_become_a_chain_of_jobs_and_merge_keys_are_applied() {
    let (_, m) = imported("init-jobs", &[]);
    assert!(service(&m, "migrate").job && service(&m, "seed").job);
    assert!(!service(&m, "db").job && !service(&m, "app").job);
    assert_eq!(service(&m, "seed").depends_on, ["migrate"]);
    assert_eq!(service(&m, "app").depends_on, ["seed"]);
    for job in ["migrate", "seed"] {
        assert_eq!(env(&m, job, "PGHOST"), "db", "from the `<<: *pg-client` merge key");
        assert_eq!(service(&m, job).image.as_deref(), Some("stagectl/postgres:15"));
        let v = &service(&m, job).volumes[0];
        assert_eq!((&v.source, v.read_only), (&VolumeSource::Bind(case_dir("init-jobs").join("sql")), true));
    }
    assert_eq!(service(&m, "migrate").command.as_deref().unwrap(), ["psql", "-v", "ON_ERROR_STOP=1", "-f", "/sql/001_schema.sql"]);
    assert_eq!(service(&m, "seed").entrypoint.as_deref().unwrap(), ["psql", "-v", "ON_ERROR_STOP=1"]);
}

#[test]
fn named_volumes_binds_and_anonymous_volumes_are_mounted_and_tmpfs_mounts_are_carried() {
    let (import, m) = imported("named-volumes", &[]);
    assert_eq!(m.stack, "volume-demo", "from the compose `name: Volume_Demo`");
    let app: Vec<(VolumeSource, &str, bool)> =
        service(&m, "app").volumes.iter().map(|v| (v.source.clone(), v.target.as_str(), v.read_only)).collect();
    assert_eq!(
        app,
        [
            (VolumeSource::Named("data".into()), "/data", false),
            (VolumeSource::Bind(case_dir("named-volumes").join("config")), "/config", true),
            (VolumeSource::Named("app-scratch".into()), "/scratch", false),
            (VolumeSource::Named("cache".into()), "/cache", false),
        ]
    );
    let reader = &service(&m, "reader").volumes;
    assert_eq!((&reader[0].source, reader[0].read_only), (&VolumeSource::Bind(case_dir("named-volumes").join("config")), true));
    let tmpfs: Vec<usize> = import.warnings.iter().filter(|w| w.message.contains("tmpfs")).map(|w| w.line).collect();
    assert_eq!(tmpfs, Vec::<usize>::new(), "the tmpfs key and the tmpfs mount of `volumes` are carried");
    assert_eq!(service(&m, "app").tmpfs.keys().collect::<Vec<_>>(), ["/run/tmp", "/tmp"]);
    assert_eq!(service(&m, "reader").condition("app"), stagectl::manifest::Condition::Ready, "the short syntax keeps stagectl's default");
    assert!(import.warnings.iter().any(|w| w.line == 10 && w.message.contains("option `z`")));
}

#[test]
fn profiles_choose_the_services_as_docker_compose_up_does() {
    let (import, m) = imported("profiles", &["test"]);
    assert_eq!(import.services, ["app", "mock-api", "e2e-runner"]);
    assert_eq!(m.services.len(), 3);
    assert!(import.warnings.iter().any(|w| w.line == 13 && w.message.contains("`adminer` is left out")));

    // Without --profile: only what `docker compose up` starts, plus what it depends on.
    let dir = case_dir("profiles");
    let plain = stagectl::import::import_file(&dir.join("docker-compose.yml"), &dir, None, &[]).unwrap();
    assert_eq!(plain.services, ["app", "mock-api"]);
    let left_out: Vec<&str> = plain.warnings.iter().filter(|w| w.message.contains("left out")).map(|w| w.key.as_str()).collect();
    assert_eq!(left_out, ["services.adminer.profiles", "services.e2e-runner.profiles"]);
    assert!(plain.warnings.iter().any(|w| w.line == 7 && w.message.contains("imported because `app` depends on it")));
    let all = stagectl::import::import_file(&dir.join("docker-compose.yml"), &dir, None, &["*".to_string()]).unwrap();
    assert_eq!(all.services.len(), 4);
}

#[test]
fn env_files_are_inlined_in_compose_order_with_interpolation_converted() {
    let (import, m) = imported("env-files", &[]);
    let expect = [
        ("LOG_LEVEL", "debug"),
        ("APP_NAME", "demo app"),
        ("DB_URL", "postgres://db:5432/app"),
        ("LITERAL", "cost: $5"),
        ("DB_PASSWORD", "hunter2"),
        ("FEATURE_FLAG", "true"),
        ("RATIO", "1.10"),
        ("REGION", "eu-west-1"),
        ("PRICE", "$5"),
    ];
    for (key, value) in expect {
        assert_eq!(env(&m, "app", key), value, "{key}");
    }
    assert!(import.toml.contains("REGION = \"${REGION:-eu-west-1}\""), "the default stays a default");
    assert!(import.toml.contains("LOG_LEVEL = \"debug\"  # from env_file app.env:1"));
    assert!(import.warnings.iter().any(|w| w.message.contains("app.env:2: the value of DB_PASSWORD")));
}

#[test]
fn build_args_dockerfile_and_image_tag_are_carried_and_target_is_warned_about() {
    let (import, m) = imported("build-args", &[]);
    let app = service(&m, "app");
    let build = app.build.as_ref().unwrap();
    assert_eq!(build.dockerfile, "Dockerfile.custom");
    assert_eq!(build.args.get("GREETING").map(String::as_str), Some("hello"));
    assert_eq!(app.image.as_deref(), Some("import-test/app:dev"), "the build is tagged with `image`, as Compose does");
    let tool = service(&m, "tool");
    let args: Vec<(&str, &str)> = tool.build.as_ref().unwrap().args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(args, [("GREETING", "hi"), ("TARGET_ENV", "tools")]);
    assert_eq!(
        (tool.entrypoint.as_deref().unwrap(), tool.command.as_deref().unwrap()),
        (&["sleep".to_string()][..], &["infinity".to_string()][..])
    );
    let keys: Vec<&str> = import.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["services.app.build.target", "services.tool.build.cache_from"]);
}

#[test]
fn healthchecks_become_native_probes_exec_probes_or_the_image_healthcheck() {
    let (import, m) = imported("healthchecks", &[]);
    assert_eq!(probe(&m, "pg"), Some(Probe::Postgres { port: 5432 }));
    assert_eq!(probe(&m, "redis"), Some(Probe::Tcp { port: 6379 }));
    assert_eq!(probe(&m, "web"), Some(Probe::Http { port: 8000, path: "/health".into(), status: 200 }));
    assert_eq!(probe(&m, "custom"), Some(Probe::Exec { command: vec!["sh".into(), "-c".into(), "test -f /tmp/ready".into()] }));
    assert_eq!(probe(&m, "inherited"), Some(Probe::Healthcheck));
    assert_eq!(probe(&m, "disabled"), None);
    let timeout = |s: &str| service(&m, s).ready.as_ref().unwrap().timeout.as_secs();
    assert_eq!(timeout("web"), 60 + 3 * 2, "start_period + retries × (interval + timeout)");
    assert_eq!(timeout("pg"), 15 * 4);
    assert_eq!(timeout("redis"), 3 * 60, "Compose's defaults: 3 × (30s + 30s)");
    assert_eq!(timeout("custom"), 92, "rounded up to whole seconds");
    assert!(import.warnings.is_empty(), "{:?}", import.warnings);
}

// ---- the command line ----

fn stagectl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stagectl")).current_dir(dir).args(args).env("NO_COLOR", "1").output().unwrap()
}

#[test]
fn the_command_prints_the_toml_on_stdout_and_warnings_with_compose_lines_on_stderr() {
    let out = stagectl(&case_dir("web-db-cache"), &["import", "docker-compose.yml"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, std::fs::read_to_string(case_dir("web-db-cache/expected.toml")).unwrap());
    let first = stderr.lines().next().unwrap();
    assert!(first.starts_with("docker-compose.yml:7: warning: services.web.container_name: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn output_to_a_file_rebases_paths_refuses_to_overwrite_and_json_gives_the_warnings_as_data() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("stack.toml");
    let compose = case_dir("build-args").join("docker-compose.yml");
    let compose = compose.to_str().unwrap();
    let out_path = out_file.to_str().unwrap();
    let out = stagectl(tmp.path(), &["--json", "import", compose, "-o", out_path, "--stack", "rebased"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["stack"], "rebased");
    assert_eq!(doc["services"], serde_json::json!(["app", "tool"]));
    assert_eq!(doc["warnings"][0]["line"], 7);
    assert_eq!(doc["warnings"][0]["key"], "services.app.build.target");
    assert!(doc["toml"].is_null(), "written to the file, not to stdout");
    let text = std::fs::read_to_string(&out_file).unwrap();
    let context = std::fs::canonicalize(case_dir("build-args/app")).unwrap();
    // Relative to the written file when it is near, absolute otherwise: either way it must
    // resolve to the compose file's app/.
    let written =
        text.lines().find_map(|l| l.trim().strip_prefix("context = \"")).and_then(|r| r.strip_suffix('"')).expect("a build context");
    let resolved = std::fs::canonicalize(out_file.parent().unwrap().join(written)).unwrap();
    assert_eq!(resolved, context, "the build context points at the compose file's app/:\n{text}");
    let check = Command::new(env!("CARGO_BIN_EXE_stagectl")).arg("-f").arg(&out_file).arg("validate").output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));

    let again = stagectl(tmp.path(), &["import", compose, "-o", out_path]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists; pass --force to overwrite it"));
    let forced = stagectl(tmp.path(), &["import", compose, "-o", out_path, "--force", "--stack", "again"]);
    assert_eq!(forced.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&forced.stdout).contains("stack.toml: stack `again`, 2 services, 2 warnings"), "{forced:?}");
}

#[test]
fn bad_yaml_is_an_error_at_its_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("compose.yml"), "services:\n  web:\n    image: a\n   ports: [1]\n").unwrap();
    let out = stagectl(tmp.path(), &["import", "compose.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: compose.yml:4:"), "{stderr}");
    assert!(stderr.contains("invalid YAML"), "{stderr}");
    assert!(out.stdout.is_empty());

    std::fs::write(tmp.path().join("dup.yml"), "services:\n  web:\n    image: a\n    image: b\n").unwrap();
    let out = stagectl(tmp.path(), &["import", "dup.yml"]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: dup.yml:4:5: invalid YAML: duplicated key"), "{out:?}");

    std::fs::write(tmp.path().join("list.yml"), "- a\n- b\n").unwrap();
    let out = stagectl(tmp.path(), &["import", "list.yml"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: list.yml:1: the top level must be a mapping with `services`, found a list"
    );
}

#[test]
fn a_result_that_does_not_validate_yet_is_written_and_its_problems_shown() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("docker-compose.yml"), "services:\n  app:\n    image: \"example/app:${APP_TAG}\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stagectl"))
        .current_dir(tmp.path())
        .args(["import", "docker-compose.yml", "-o", "stack.toml"])
        .env_remove("APP_TAG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("undefined variable `APP_TAG`"), "{stderr}");
    assert!(stderr.contains("does not pass `stagectl validate` yet"), "{stderr}");
    assert!(std::fs::read_to_string(tmp.path().join("stack.toml")).unwrap().contains("image = \"example/app:${APP_TAG}\""));
}

#[test]
fn files_docker_compose_would_also_read_are_named_in_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("docker-compose.yml"), "services:\n  a:\n    image: stagectl/redis:7\n").unwrap();
    std::fs::write(app.join("docker-compose.override.yml"), "services:\n  a:\n    ports: ['6379']\n").unwrap();
    std::fs::write(app.join(".env"), "TAG=1\n").unwrap();
    let import = stagectl::import::import_file(&app.join("docker-compose.yml"), tmp.path(), None, &[]).unwrap();
    let warnings: Vec<String> = import.warnings.iter().map(|w| w.render("docker-compose.yml")).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("docker-compose.yml:1: warning: docker-compose.override.yml is beside it: `docker compose` merges it in")
    );
    assert!(warnings[1].contains("the .env beside the compose file sets its variables; stagectl reads the .env beside stack.toml"));
    assert_eq!(import.stack, "app");
}

/// Only the entry point (`file.rs`) of the import module touches the outside world.
#[test]
fn the_conversion_does_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/import");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "file.rs" || name == "tests.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        for io in ["std::fs", "std::env", "std::process", "std::io", "tokio", "println!", "eprintln!", "print!", "Instant::now"] {
            assert!(!code.contains(io), "{name} is part of the pure conversion but uses `{io}`");
        }
        checked += 1;
    }
    assert!(checked >= 5, "found only {checked} files in {}", dir.display());
}
