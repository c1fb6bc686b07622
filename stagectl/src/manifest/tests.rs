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
            PortMapping { host_ip: None, host_port: Some(8080), container_port: 8080, protocol: Protocol::Tcp },
            PortMapping { host_ip: Some("127.0.0.1".into()), host_port: Some(9090), container_port: 9090, protocol: Protocol::Udp },
            PortMapping { host_ip: None, host_port: None, container_port: 7000, protocol: Protocol::Tcp },
        ]
    );
    assert!(app.env["API_KEY"].secret);
    assert_eq!(app.env["URL"].value, "postgres://db/shop");
    assert_eq!(app.ready.as_ref().unwrap().probe, Probe::Http { port: 8080, path: "/healthz".into(), status: 200 });
    assert_eq!(m.secret_values(), vec!["hunter2".to_string()]);
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

#[test]
fn durations_parse_with_units_and_reject_garbage() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("5 parsecs"), None);
    assert_eq!(parse_duration(""), None);
}
