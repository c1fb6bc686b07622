use std::path::Path;
use std::time::Duration;

use super::*;

pub(crate) fn parse_ok(src: &str) -> Manifest {
    let mut vars = VarSource::default();
    vars.vars.insert("TAG".into(), "15".into());
    vars.secrets.insert("api_key".into(), "hunter2".into());
    match parse(src, "stack.toml", Path::new("/proj"), &vars, &|_| true) {
        Ok(m) => m,
        Err(e) => panic!("expected a valid manifest, got:\n{}", e.render()),
    }
}

fn errors(src: &str) -> String {
    parse(src, "stack.toml", Path::new("/proj"), &VarSource::default(), &|_| true).unwrap_err().render()
}

const FULL: &str = r#"
[stack]
name = "shop"

[services.db]
image = "stagectl/postgres:${TAG}"
env = { POSTGRES_DB = "shop", PORT = 5432, DEBUG = true }
volumes = ["pgdata:/var/lib/postgresql/data", "./init:/docker-entrypoint-initdb.d:ro"]
ready = { exec = ["pg_isready", "-h", "127.0.0.1"], timeout = "20s", interval = "50ms" }

[services.migrate]
image = "stagectl/postgres:15"
command = ["psql", "-f", "/m.sql"]
depends_on = ["db"]
job = true

[services.app]
build = { context = "demo/shop", command = "scripts/build-shop.sh", args = { MODE = "release" } }
ports = ["8080:8080", "127.0.0.1:9090:9090/udp", "7000"]
depends_on = ["migrate", "db"]
env = { API_KEY = "${secret:api_key}", URL = "postgres://db/${NOPE:-shop}" }
ready = { http = "/healthz", port = 8080 }
"#;

#[test]
fn a_full_manifest_parses_into_typed_values() {
    let m = parse_ok(FULL);
    assert_eq!(m.stack, "shop");
    let names: Vec<&str> = m.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "migrate", "app"], "file order is kept");
    let db = m.service("db").unwrap();
    assert_eq!(db.image.as_deref(), Some("stagectl/postgres:15"));
    assert_eq!(db.env["PORT"].value, "5432");
    assert_eq!(db.env["DEBUG"].value, "true");
    assert_eq!(db.volumes[0].source, VolumeSource::Named("pgdata".into()));
    assert_eq!(db.volumes[1].source, VolumeSource::Bind("/proj/./init".into()));
    assert!(db.volumes[1].read_only);
    let ready = db.ready.as_ref().unwrap();
    assert_eq!(ready.timeout, Duration::from_secs(20));
    assert_eq!(ready.interval, Duration::from_millis(50));
    assert!(m.service("migrate").unwrap().job);
    let app = m.service("app").unwrap();
    let build = app.build.as_ref().unwrap();
    assert_eq!(build.context, Path::new("/proj/demo/shop"));
    assert_eq!(build.dockerfile, "Dockerfile");
    assert_eq!(build.args["MODE"], "release");
    assert_eq!(
        app.ports,
        vec![
            PortMapping { host_ip: None, host_port: Some(8080), container_port: 8080, protocol: Protocol::Tcp, auto: false },
            PortMapping {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(9090),
                container_port: 9090,
                protocol: Protocol::Udp,
                auto: false
            },
            PortMapping { host_ip: None, host_port: None, container_port: 7000, protocol: Protocol::Tcp, auto: false },
        ]
    );
    assert!(app.env["API_KEY"].secret);
    assert_eq!(app.env["URL"].value, "postgres://db/shop");
    assert_eq!(app.ready.as_ref().unwrap().probe, Probe::Http { port: 8080, path: "/healthz".into(), status: 200 });
    assert_eq!(m.secret_values(), vec!["hunter2".to_string()]);
    assert!(!format!("{m:?}").contains("hunter2"), "Debug shows a secret");
}

#[test]
fn a_secret_inside_a_longer_value_or_a_check_header_is_masked_by_itself() {
    let mut vars = VarSource::default();
    vars.secrets.insert("pw".into(), "pa55word".into());
    vars.secrets.insert("tok".into(), "t0ken-value".into());
    let src = r#"
[stack]
name = "s"
[services.app]
image = "app"
env = { DSN = "redis://u:${secret:pw}@cache/0" }
ports = ["8080:8080"]
[[checks.smoke]]
name = "auth"
http = { service = "app", port = 8080, path = "/", headers = { Authorization = "Bearer ${secret:tok}" } }
"#;
    let m = parse(src, "stack.toml", Path::new("/p"), &vars, &|_| true).unwrap_or_else(|e| panic!("{}", e.render()));
    let values = m.secret_values();
    for secret in ["pa55word", "t0ken-value", "redis://u:pa55word@cache/0"] {
        assert!(values.contains(&secret.to_string()), "{secret} not masked: {} values", values.len());
    }
}

#[test]
fn debug_output_of_a_manifest_never_contains_secret_values() {
    let m = parse_ok(FULL);
    assert!(!format!("{m:?}").contains("hunter2"));
}

#[test]
fn defaults_apply_when_timeouts_are_omitted() {
    let m = parse_ok("[stack]\nname = \"a\"\n[services.c]\nimage = \"redis:7\"\nready = { tcp = 6379 }\n");
    let r = m.services[0].ready.as_ref().unwrap();
    assert_eq!(r.timeout, DEFAULT_READY_TIMEOUT);
    assert_eq!(r.interval, DEFAULT_READY_INTERVAL);
    assert!(r.interval <= Duration::from_millis(50), "the issue asks for ≤ 50 ms polling by default");
}

#[test]
fn the_http_probe_port_defaults_to_the_only_published_port() {
    let m = parse_ok("[stack]\nname = \"a\"\n[services.w]\nimage = \"x\"\nports = [\"8000:80\"]\nready = { http = \"/\" }\n");
    assert_eq!(m.services[0].ready.as_ref().unwrap().probe, Probe::Http { port: 80, path: "/".into(), status: 200 });
}

#[test]
fn all_problems_are_reported_at_once_in_source_order() {
    let out = errors("[stack]\nname = \"a\"\n[services.x]\nimgae = \"x\"\n[services.y]\nimage = \"y\"\ndepends_on = [\"z\"]\n");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("stack.toml:")).collect();
    assert_eq!(
        lines,
        [
            "stack.toml:3:11: service `x` has neither `image` nor `build`",
            "stack.toml:4:1: unknown key `imgae` in [services.x]",
            "stack.toml:7:15: service `y` depends on unknown service `z`",
        ]
    );
    assert!(out.ends_with("3 problems found in stack.toml\n"));
}

/// A minimal valid manifest with `extra` appended to the one service's table (or after it, when
/// `extra` starts a new table).
fn with(extra: &str) -> String {
    format!("[stack]\nname = \"a\"\n[services.c]\nimage = \"redis:7\"\nports = [\"8080:80\"]\n{extra}\n")
}

fn result(src: &str) -> Result<Manifest, String> {
    parse(src, "stack.toml", Path::new("/proj"), &VarSource::default(), &|_| true).map_err(|e| e.render())
}

#[test]
fn durations_out_of_range_are_manifest_errors_with_the_allowed_range() {
    // The first validated and then panicked in `up` (Instant + Duration); the second panicked
    // `validate` itself (Duration::from_secs_f64).
    for (value, range) in [
        ("2777777777777777h", "from 1ms to 24h"),
        ("99999999999999999999s", "from 1ms to 24h"),
        ("0s", "from 1ms to 24h"),
        ("0.5ms", "from 1ms to 24h"),
        ("-5s", "from 1ms to 24h"),
        ("24h1ms", "from 1ms to 24h"),
    ] {
        let out = result(&with(&format!("ready = {{ tcp = 80, timeout = \"{value}\" }}"))).unwrap_err();
        assert!(out.starts_with(&format!("stack.toml:6:31: duration `{value}` for `services.c.ready.timeout` is out of range\n")), "{out}");
        assert!(out.contains(&format!("= help: `services.c.ready.timeout` must be {range} (units: ms, s, m, h)")), "{out}");
    }
    let m = parse_ok(&with("ready = { tcp = 80, timeout = \"24h\", interval = \"1ms\" }\n[schedule]\nidle_ttl = \"8760h\""));
    assert_eq!(m.services[0].ready.as_ref().unwrap().timeout, MAX_TIMEOUT);
    assert_eq!(m.schedule.idle_ttl, Some(MAX_IDLE_TTL));
    let out = result(&with("[schedule]\nidle_ttl = \"8761h\"")).unwrap_err();
    assert!(out.contains("= help: `schedule.idle_ttl` must be from 1ms to 8760h (units: ms, s, m, h)"), "{out}");
    // Both fields of one probe are reported, not just the first.
    let out = result(&with("ready = { tcp = 80, timeout = \"-1s\", interval = \"nan\" }")).unwrap_err();
    assert!(out.contains("duration `-1s`") && out.contains("invalid duration `nan`"), "{out}");
    // A bare number gets a hint to add the unit.
    let out = result(&with("ready = { tcp = 80, timeout = 30 }")).unwrap_err();
    assert!(out.contains("must be a string with a unit, found an integer") && out.contains("e.g. \"30s\" or \"30ms\""), "{out}");
}

#[test]
fn every_number_is_range_checked_at_parse_time() {
    let problem = |extra: &str| result(&with(extra)).unwrap_err();
    // An integer beyond 64 bits was "not an integer"; it is out of range.
    assert!(problem("ready = { tcp = 99999999999999999999 }").contains("`services.c.ready.tcp` 99999999999999999999 is out of range"));
    assert!(problem("[services.d]\nimage = \"x\"\nports = [\"99999999999:80\"]").contains("port 99999999999 is out of range (1-65535)"));
    let budget = |size: &str| result(&format!("[stack]\nname = \"a\"\nsnapshot_budget = \"{size}\"\n[services.c]\nimage = \"x\"\n"));
    assert_eq!(budget("100TB").unwrap().snapshot_budget, MAX_SNAPSHOT_BUDGET);
    for too_big in ["101TB", "99999999999999999999999", "99999999999999999999TB"] {
        assert!(budget(too_big).unwrap_err().contains("is out of range"), "{too_big}");
    }
    let http = |extra: &str| format!("[[checks.smoke]]\nname = \"h\"\nhttp = {{ service = \"c\", port = 80 }}\n{extra}");
    assert!(problem(&http("latency = { p95 = \"1s\", error_rate = nan }")).contains("`latency.error_rate` must be a fraction"));
    assert!(problem(&http("latency = { p95 = \"1s\", error_rate = inf }")).contains("`latency.error_rate` must be a fraction"));
    assert!(problem(&http("latency = { p95 = \"1s\", requests = 0 }")).contains("`latency.requests` must be a whole number"));
    assert!(problem(&http("latency = { p95 = \"25h\" }")).contains("duration `25h` for latency.p95 is out of range"));
    assert!(problem(&http("timeout = \"2777777777777777h\"")).contains("for check `h` timeout is out of range"));
    let json = |value: &str| {
        format!("[[checks.smoke]]\nname = \"h\"\nhttp = {{ service = \"c\", port = 80, expect_json = {{ \"/n\" = {value} }} }}")
    };
    // Both were silently turned into 0 and null.
    assert!(problem(&json("99999999999999999999")).contains("expected value at `/n` is out of range"));
    assert!(problem(&json("nan")).contains("expected value at `/n` must be a finite number"));
    let m = parse_ok(&with(&json("1_000.5")));
    let CheckKind::Http { expect_json, .. } = &m.smoke[0].kind else { panic!("an http check") };
    assert_eq!(expect_json["/n"], serde_json::json!(1000.5));
}

#[test]
fn thousands_of_problems_render_the_first_fifty_and_a_count() {
    // 10,000 unknown dependencies on one 150 KB line printed 1.18 GB before.
    let deps: Vec<String> = (0..10_000).map(|i| format!("\"dep{i}\"")).collect();
    let src = with(&format!("depends_on = [{}]", deps.join(", ")));
    let errors = parse(&src, "stack.toml", Path::new("/proj"), &VarSource::default(), &|_| true).unwrap_err();
    assert_eq!(errors.diagnostics.len(), 10_000);
    let out = errors.render();
    assert!(out.len() < 50 * 1024, "{} bytes", out.len());
    assert!(out.ends_with("… and 9950 more problems (fix these first)\n10000 problems found in stack.toml\n"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("stack.toml:")).count(), MAX_RENDERED_DIAGNOSTICS);
    // Below the cap, nothing changes: every problem in full, then the count.
    let few = ManifestErrors { diagnostics: errors.diagnostics[..3].to_vec(), ..errors.clone() };
    let rendered: String = few.diagnostics.iter().map(|d| d.render("stack.toml", &src)).collect();
    assert_eq!(few.render(), format!("{rendered}3 problems found in stack.toml\n"));
}

#[test]
fn a_long_dependency_chain_or_cycle_does_not_overflow_the_stack() {
    // The cycle search was recursive: 20,000 services in a chain aborted `validate`.
    let chain = |n: usize, close: bool| {
        let mut src = String::from("[stack]\nname = \"a\"\n");
        for i in 0..n {
            let next = if close && i + 1 == n { "s0".to_string() } else { format!("s{}", i + 1) };
            src.push_str(&format!("[services.s{i}]\nimage = \"x\"\ndepends_on = [\"{next}\"]\n"));
        }
        src.push_str(&format!("[services.s{}]\nimage = \"x\"\n", n));
        src
    };
    assert_eq!(parse_ok(&chain(30_000, false)).services.len(), 30_001);
    let out = result(&chain(30_000, true)).unwrap_err();
    assert!(
        out.contains("dependency cycle: s0 -> s1 -> s2 -> s3 -> s4 -> … 29991 more … -> s29996 -> s29997 -> s29998 -> s29999 -> s0"),
        "{out}"
    );
}

#[test]
fn invalid_utf8_is_reported_at_the_first_bad_byte() {
    let bytes = b"[stack]\nname = \"a\"\n[services.c]\nimage = \"r\xE9dis:7\"\n# \xFF\xFE\n";
    let errors = decode(bytes, "stack.toml").unwrap_err();
    assert_eq!(
        errors.render(),
        "stack.toml:4:11: invalid UTF-8: byte 0xE9 is not part of a valid character\n\
         4 | image = \"r\u{FFFD}dis:7\"\n  |           ^\n  \
         = help: the manifest must be UTF-8 text; convert it, e.g. `iconv -f latin1 -t utf-8 stack.toml` (3 invalid byte sequences in all)\n\
         1 problem found in stack.toml\n"
    );
    // A character cut off by the end of the file; columns count characters, not bytes.
    let bytes = [b"[stack]\nname = \"".as_slice(), "é\u{1F600}".as_bytes(), b"\xF0\x9F"].concat();
    let errors = decode(&bytes, "m.toml").unwrap_err();
    assert!(errors.render().starts_with("m.toml:2:11: invalid UTF-8: bytes 0xF0 0x9F are not a valid character\n"), "{}", errors.render());
    assert_eq!(decode(b"[stack]\n", "stack.toml").unwrap(), "[stack]\n");
}

#[test]
fn http_methods_and_header_names_are_checked_while_parsing() {
    let check = |http: &str| result(&with(&format!("[[checks.smoke]]\nname = \"h\"\nhttp = {{ service = \"c\", port = 80, {http} }}")));
    // Both were accepted: the method then fell back to GET, the header failed every attempt.
    assert!(check("method = \"GE T\"").unwrap_err().contains("invalid HTTP method `GE T` in check `h`"));
    assert!(check("headers = { \"X Bad\" = \"1\" }").unwrap_err().contains("invalid HTTP header name `X Bad`"));
    let out = check("headers = { X-Token = \"a\\nb\" }").unwrap_err();
    assert!(out.contains("the value of header `X-Token` contains a control character"), "{out}");
    let m = check("method = \"patch\", headers = { X-Request-Id = \"42\", Accept = \"*/*\" }").unwrap();
    let CheckKind::Http { method, headers, .. } = &m.smoke[0].kind else { panic!("an http check") };
    assert_eq!((method.as_str(), headers.len()), ("PATCH", 2));
}

fn parse_with_env_files(src: &str, files: &[(&str, &str)]) -> Result<Manifest, ManifestErrors> {
    let files: Vec<(String, String)> = files.iter().map(|(p, t)| (format!("/proj/{p}"), t.to_string())).collect();
    let read = move |p: &Path| files.iter().find(|(f, _)| Path::new(f) == p).map(|(_, t)| t.clone()).ok_or(FileReadError::NotFound);
    parse_with_files(src, "stack.toml", Path::new("/proj"), &VarSource::default(), &|_| true, &read)
}

#[test]
fn env_files_are_merged_in_order_under_env_and_secret_ones_are_masked() {
    let src = r#"
[stack]
name = "s"
[services.app]
image = "app"
env_file = ["a.env", { path = "b.env", secret = true }, { path = "none.env", required = false }]
env = { B = "from-env" }
"#;
    let m =
        parse_with_env_files(src, &[("a.env", "A=1\nB=2\nC=3\n"), ("b.env", "C=s3cret\n")]).unwrap_or_else(|e| panic!("{}", e.render()));
    let app = m.service("app").unwrap();
    let env: BTreeMap<&str, &str> = app.env.iter().map(|(k, v)| (k.as_str(), v.value.as_str())).collect();
    assert_eq!(env, BTreeMap::from([("A", "1"), ("B", "from-env"), ("C", "s3cret")]));
    assert!(app.env["C"].secret && !app.env["A"].secret);
    assert!(m.secret_values().contains(&"s3cret".to_string()));
    assert!(!format!("{m:?}").contains("s3cret"));
    assert_eq!(app.env_files, [Path::new("/proj/a.env"), Path::new("/proj/b.env")]);
}

#[test]
fn a_bad_env_file_is_located_and_its_values_are_never_shown() {
    let src = "[stack]\nname = \"s\"\n[services.app]\nimage = \"app\"\nenv_file = \"a.env\"\n";
    let errors = parse_with_env_files(src, &[("a.env", "OK=1\nTOKEN='hunter2\n")]).unwrap_err().render();
    assert!(errors.contains("stack.toml:5:12: invalid env file `a.env:2:7`"), "{errors}");
    assert!(!errors.contains("hunter2"), "{errors}");
}

#[test]
fn ready_has_compose_style_probe_options_and_keeps_timeout_as_the_deadline() {
    let m = parse_ok(
        "[stack]\nname = \"s\"\n[services.db]\nimage = \"pg\"\nready = { tcp = 5432, timeout = \"90s\", attempt_timeout = \"3s\", retries = 4, start_period = \"10s\" }\n",
    );
    let r = m.service("db").unwrap().ready.clone().unwrap();
    assert_eq!(
        (r.timeout, r.attempt_timeout, r.retries, r.start_period),
        (Duration::from_secs(90), Duration::from_secs(3), Some(4), Duration::from_secs(10))
    );
    let m = parse_ok("[stack]\nname = \"s\"\n[services.db]\nimage = \"pg\"\nready = { tcp = 5432 }\n");
    let r = m.service("db").unwrap().ready.clone().unwrap();
    assert_eq!((r.attempt_timeout, r.retries, r.start_period), (DEFAULT_ATTEMPT_TIMEOUT, None, Duration::ZERO));
}

const PROFILED: &str = r#"
[stack]
name = "s"
[services.db]
image = "pg"
[services.admin]
image = "adminer"
profiles = ["debug", "tools"]
depends_on = ["db"]
[services.app]
image = "app"
depends_on = { db = "ready" }
[[checks.smoke]]
name = "admin up"
tcp = { service = "admin", port = 8080 }
"#;

#[test]
fn profiles_select_services_and_a_dependency_left_out_is_an_error_naming_both() {
    let m = parse_ok(PROFILED);
    let plain = m.clone().select_profiles(&[]).unwrap();
    assert_eq!(plain.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["db", "app"]);
    assert_eq!(plain.inactive, ["admin"]);
    assert!(plain.smoke.is_empty(), "the check of a service that does not run is left out");
    for selection in [vec!["tools".to_string()], vec!["*".to_string()]] {
        let selected = m.clone().select_profiles(&selection).unwrap();
        assert_eq!(selected.services.len(), 3);
        assert!(selected.inactive.is_empty());
    }
    let unknown = m.clone().select_profiles(&["debgu".into()]).unwrap_err().to_string();
    assert!(unknown.contains("no service has profile `debgu`") && unknown.contains("debug, tools"), "{unknown}");

    let broken = parse_ok(&PROFILED.replace("depends_on = { db = \"ready\" }", "depends_on = { db = \"ready\", admin = \"started\" }"));
    let e = broken.select_profiles(&[]).unwrap_err().to_string();
    assert!(e.contains("service `app` depends on `admin`") && e.contains("`debug` or `tools`") && e.contains("--profile debug"), "{e}");
}

const IN_IMAGE: &str = r#"[stack]
name = "a"
[services.db]
image = "stagectl/postgres:15"
[services.migrate]
build = "app"
job = true
depends_on = ["db"]
"#;

#[test]
fn migrations_inside_a_job_image_need_no_dir_and_take_pending_and_an_sql_source() {
    let m = result(&format!(
        "{IN_IMAGE}[migrations.db]\njob = \"migrate\"\npending = [\"python\", \"manage.py\", \"migrate\", \"--check\"]\nsql = [\"pending-sql\"]\n"
    ))
    .unwrap();
    let mig = &m.migrations[0];
    assert_eq!((mig.dir.as_ref(), mig.job.as_deref()), (None, Some("migrate")));
    assert_eq!(mig.pending.as_deref(), Some(&["python".to_string(), "manage.py".into(), "migrate".into(), "--check".into()][..]));
    assert_eq!(mig.sql, Some(MigrationSql::Command(vec!["pending-sql".into()])));
    let m = result(&format!("{IN_IMAGE}[migrations.db]\njob = \"migrate\"\nsql_dir = \"sql\"\n")).unwrap();
    assert_eq!(m.migrations[0].sql, Some(MigrationSql::Dir(Path::new("/proj/sql").to_path_buf())));
    // The dir forms are unchanged; `pending` goes with a dir too.
    let m = result(&format!("{IN_IMAGE}[migrations.db]\ndir = \"m\"\njob = \"migrate\"\npending = [\"x\"]\n")).unwrap();
    assert_eq!((m.migrations[0].dir.as_deref(), m.migrations[0].sql.as_ref()), (Some(Path::new("/proj/m")), None));
    assert_eq!(result(&format!("{IN_IMAGE}[migrations.db]\ndir = \"m\"\n")).unwrap().migrations[0].pending, None);
}

#[test]
fn command_form_keys_are_checked_where_they_are_written() {
    let err = |body: &str| result(&format!("{IN_IMAGE}[migrations.db]\n{body}\n")).unwrap_err();
    let e = err("dir = \"m\"\npending = [\"x\"]");
    assert!(e.contains("stack.toml:11:1: `migrations.db.pending` needs `job`"), "{e}");
    let e = err("dir = \"m\"\njob = \"migrate\"\nsql_dir = \"s\"");
    assert!(e.contains("stack.toml:12:1: `migrations.db.sql_dir` and `dir` cannot be used together"), "{e}");
    let e = err("job = \"migrate\"\nsql = [\"a\"]\nsql_dir = \"s\"");
    assert!(e.contains("stack.toml:12:1: `migrations.db.sql_dir` and `migrations.db.sql` cannot be used together"), "{e}");
    let e = err("job = \"migrate\"\nsql = \"manage.py sqlmigrate staff 0002\"");
    assert!(e.contains("stack.toml:11:7: `migrations.db.sql` must be an array of strings, found a string"), "{e}");
    let e = err("job = \"migrate\"\npending = []");
    assert!(e.contains("stack.toml:11:11: `migrations.db.pending` must not be empty"), "{e}");
    let e = err("pending = [\"x\"]");
    assert!(e.contains("missing `migrations.db.dir`") && e.contains("or job = \"<job service>\""), "{e}");
}
