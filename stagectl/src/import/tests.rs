//! Unit tests of the pure conversion: text helpers, the YAML tree, healthcheck recognition, and
//! whole conversions of small compose files. The eight compose projects of `tests/import/` are
//! checked end to end in `tests/import.rs` and on Docker in `tests/docker/import.rs`.

use std::time::Duration;

use super::emit::Probe;
use super::health::{healthcheck, MIN_DEADLINE};
use super::text::*;
use super::{convert, Import, ImportError, Options};

fn import_with(yaml: &str, base: &str, files: &[(&str, &str)]) -> Result<Import, ImportError> {
    let read = |p: &str| files.iter().find(|(n, _)| *n == p).map(|(_, t)| t.to_string()).ok_or_else(|| "No such file".to_string());
    let opts = Options {
        file: "docker-compose.yml",
        stack: Some("t"),
        default_stack: "dir",
        profiles: &[],
        base,
        read_env_file: &read,
        surroundings: &[],
    };
    convert(yaml, &opts)
}

fn import(yaml: &str) -> Import {
    import_with(yaml, "", &[]).unwrap()
}

fn messages(i: &Import) -> Vec<String> {
    i.warnings.iter().map(|w| format!("{}: {}", w.line, w.message)).collect()
}

fn has_warning(i: &Import, line: usize, part: &str) -> bool {
    i.warnings.iter().any(|w| w.line == line && w.message.contains(part))
}

fn interp(s: &str) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let out = interpolate(s, &|_: &str| None, &mut notes);
    (out, notes)
}

#[test]
fn interpolation_is_rewritten_into_stagectls_syntax() {
    assert_eq!(interp("a $$b ${C} $D ${E:-x} $ 1").0, "a $$b ${C} ${D} ${E:-x} $ 1");
    assert_eq!(interp("${E:?must be set}").0, "${E}");
    let (out, notes) = interp("${E-x}");
    assert_eq!(out, "${E:-x}");
    assert!(notes[0].contains("also uses the default when E is empty"));
    let (out, notes) = interp("${A:-${B}}");
    assert_eq!(out, "${A}");
    assert!(notes[0].contains("cannot nest"));
    let (out, notes) = interp("${A:+on}");
    assert_eq!(out, "on");
    assert_eq!(notes.len(), 1);
    assert_eq!(interp("${oops").0, "$${oops");
    // A variable of the same env file is substituted at once.
    let mut notes = Vec::new();
    let local = |n: &str| (n == "HOST").then(|| "db".to_string());
    assert_eq!(interpolate("pg://${HOST}:${PORT:-5432}/$HOST", &local, &mut notes), "pg://db:${PORT:-5432}/db");
}

#[test]
fn string_commands_split_like_compose_splits_them() {
    let words = |s: &str| split_words(s).unwrap().into_iter().map(|w| w.text).collect::<Vec<_>>();
    assert_eq!(words(r#"sh -c "echo \"hi\" $$X" 'a b' c\ d"#), ["sh", "-c", "echo \"hi\" $$X", "a b", "c d"]);
    assert_eq!(words("  spaced\tout \n"), ["spaced", "out"]);
    assert_eq!(words("''"), [""]);
    assert!(split_words("echo 'open").is_err());
    let ops: Vec<bool> = split_words("a && b '|' c;").unwrap().iter().map(is_shell_syntax).collect();
    assert_eq!(ops, [false, true, false, false, true]);
}

#[test]
fn env_files_read_like_compose_reads_them() {
    let text =
        "# comment\n\nexport A=1\nB = \"two words\" # c\nC='lit $X' \nD=plain # comment\nE\nF=\"esc\\n\\\"q\\\"\"\nbad line\nG='open\n";
    let (vars, problems) = parse_env_file(text);
    let got: Vec<(&str, Option<&str>, bool)> = vars.iter().map(|v| (v.key.as_str(), v.value.as_deref(), v.literal)).collect();
    assert_eq!(
        got,
        [
            ("A", Some("1"), false),
            ("B", Some("two words"), false),
            ("C", Some("lit $X"), true),
            ("D", Some("plain"), false),
            ("E", None, false),
            ("F", Some("esc\n\"q\""), false),
        ]
    );
    assert_eq!(problems.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [9, 10]);
}

#[test]
fn short_ports_expand_ranges_and_keep_addresses() {
    let ok = |s: &str| short_port(s).unwrap();
    assert_eq!(ok("80").0, ["80"]);
    assert_eq!(ok("8080:80").0, ["8080:80"]);
    assert_eq!(ok("127.0.0.1:8080:80/udp").0, ["127.0.0.1:8080:80/udp"]);
    assert_eq!(ok("[::1]:8080:80").0, ["[::1]:8080:80"]);
    assert_eq!(ok("3000-3002").0, ["3000", "3001", "3002"]);
    assert_eq!(ok("9000-9001:3000-3001").0, ["9000:3000", "9001:3001"]);
    let (ports, notes) = ok("9000-9010:80");
    assert_eq!((ports, notes.len()), (vec!["9000:80".to_string()], 1));
    let (ports, notes) = ok("127.0.0.1::80");
    assert_eq!((ports, notes.len()), (vec!["80".to_string()], 1));
    assert!(short_port("80/sctp").unwrap_err().contains("sctp"));
    assert!(short_port("1-3:1-2").is_err());
    assert!(short_port("http").is_err());
}

#[test]
fn durations_paths_names_and_toml_strings() {
    assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(go_duration("0"), Some(Duration::ZERO));
    assert_eq!(go_duration("10"), None);
    assert_eq!(go_duration("5d"), None);
    assert_eq!(rebase("", "./data"), "./data");
    assert_eq!(rebase("", "data"), "./data");
    assert_eq!(rebase("", "."), ".");
    assert_eq!(rebase("deploy", "./data/../conf"), "./deploy/conf");
    assert_eq!(rebase("../compose", "../shared"), "../shared");
    assert_eq!(rebase("/srv/app", "./x"), "/srv/app/x");
    assert_eq!(rebase("deploy", "/abs"), "/abs");
    assert_eq!(rebase("deploy", "${PWD}/x"), "${PWD}/x");
    assert_eq!(dns_label("My_App.v2", 63), "my-app-v2");
    assert_eq!(dns_label("__x__", 63), "x");
    assert_eq!(dns_label("abcdef", 3), "abc");
    assert_eq!(toml_string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    assert_eq!(toml_key("com.example"), "\"com.example\"");
    assert_eq!(toml_key("A_B-1"), "A_B-1");
}

fn probe_of(yaml: &str) -> (Option<Probe>, Option<Duration>) {
    let (root, _) = super::yaml::parse(yaml).unwrap();
    let h = healthcheck(&root.unwrap());
    (h.ready.as_ref().map(|r| r.probe.clone()), h.ready.and_then(|r| r.timeout))
}

#[test]
fn healthchecks_are_recognised_only_when_a_native_probe_means_the_same() {
    let p = |yaml: &str| probe_of(yaml).0;
    let exec = |args: &[&str]| Some(Probe::Exec(args.iter().map(|s| s.to_string()).collect()));
    assert_eq!(p("test: pg_isready -q -p 5433 --username=app"), Some(Probe::Postgres(5433)));
    assert_eq!(p("test: [CMD, sh, -c, 'pg_isready -h 127.0.0.1']"), Some(Probe::Postgres(5432)));
    assert_eq!(p("test: pg_isready -h other-host"), exec(&["sh", "-c", "pg_isready -h other-host"]));
    assert_eq!(p("test: pg_isready && psql -c 'select 1'"), exec(&["sh", "-c", "pg_isready && psql -c 'select 1'"]));
    assert_eq!(p("test: [CMD, redis-cli, -h, localhost, -p, '6380', --no-auth-warning, -a, pw, PING]"), Some(Probe::Tcp(6380)));
    assert_eq!(p("test: redis-cli ping | grep -q PONG || exit 1"), Some(Probe::Tcp(6379)));
    assert_eq!(p("test: redis-cli get key"), exec(&["sh", "-c", "redis-cli get key"]));
    assert_eq!(p("test: curl -fsS http://127.0.0.1:3000/api?x=1 || exit 1"), Some(Probe::Http { port: 3000, path: "/api?x=1".into() }));
    assert_eq!(p("test: [CMD, curl, --fail, -o, /dev/null, 'http://localhost']"), Some(Probe::Http { port: 80, path: "/".into() }));
    assert_eq!(p("test: curl http://localhost/"), exec(&["sh", "-c", "curl http://localhost/"]), "without -f curl passes on any status");
    assert_eq!(p("test: curl -fL http://localhost/"), exec(&["sh", "-c", "curl -fL http://localhost/"]), "redirects followed");
    assert_eq!(p("test: curl -f https://localhost/"), exec(&["sh", "-c", "curl -f https://localhost/"]));
    assert_eq!(p("test: curl -f http://api.example.com/"), exec(&["sh", "-c", "curl -f http://api.example.com/"]));
    assert_eq!(p("test: wget -qO- http://localhost:8081/ready"), Some(Probe::Http { port: 8081, path: "/ready".into() }));
    assert_eq!(p("test: [CMD, nc, -z, localhost, '9000']"), Some(Probe::Tcp(9000)));
    assert_eq!(p("test: mysqladmin ping -h localhost -u root -p$$MYSQL_ROOT_PASSWORD"), Some(Probe::Mysql(3306)));
    assert_eq!(p("test: [CMD, mariadb-admin, ping, --silent, -P, '3307']"), Some(Probe::Mysql(3307)));
    assert_eq!(p("test: [CMD, healthcheck.sh, --connect, --innodb_initialized]"), Some(Probe::Mysql(3306)));
    assert_eq!(p("test: mysqladmin ping -h db"), exec(&["sh", "-c", "mysqladmin ping -h db"]), "another host");
    assert_eq!(p("test: mysqladmin status"), exec(&["sh", "-c", "mysqladmin status"]));
    assert_eq!(p("test: [CMD, test, -f, /ok]"), exec(&["test", "-f", "/ok"]));
    assert_eq!(p("test: echo $$HOME"), exec(&["sh", "-c", "echo $$HOME"]), "`$$` stays a literal dollar");
    assert_eq!(p("interval: 5s"), Some(Probe::Healthcheck));
    assert_eq!(p("test: [NONE]"), None);
    assert_eq!(p("test: pg_isready\ndisable: true"), None);
}

#[test]
fn the_deadline_follows_compose_timing_within_bounds() {
    let t = |yaml: &str| probe_of(yaml).1.unwrap();
    assert_eq!(t("test: 'true'"), Duration::from_secs(180), "Compose's defaults: 3 × (30s + 30s)");
    assert_eq!(t("test: 'true'\ninterval: 10s\ntimeout: 5s\nretries: 4\nstart_period: 20s"), Duration::from_secs(80));
    assert_eq!(t("test: 'true'\ninterval: 1s\ntimeout: 1s\nretries: 1"), MIN_DEADLINE);
    assert_eq!(t("test: 'true'\ninterval: 1000h"), crate::manifest::MAX_TIMEOUT);
    let (root, _) = super::yaml::parse("test: 'true'\ninterval: soon\nretries: many").unwrap();
    let h = healthcheck(&root.unwrap());
    assert_eq!(h.warnings.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [2, 3]);
}

#[test]
fn merge_keys_apply_unless_the_mapping_sets_the_key_and_scalars_keep_their_text() {
    let i = import(
        "x-a: &a\n  image: stagectl/redis:7\n  environment: {A: 1.10}\nx-b: &b\n  image: other\n  user: '1000'\nservices:\n  s:\n    <<: [*a, *b]\n    environment: {B: 0x1F}\n",
    );
    assert!(i.toml.contains("image = \"stagectl/redis:7\""), "the first merge source wins:\n{}", i.toml);
    assert!(i.toml.contains("user = \"1000\""));
    assert!(i.toml.contains("B = \"0x1F\"") && !i.toml.contains("A = "), "the service's own environment wins whole:\n{}", i.toml);
}

#[test]
fn yaml_errors_and_non_compose_files_say_where() {
    let err = import_with("services:\n  a: [1, 2\n", "", &[]).unwrap_err();
    assert!(matches!(err, ImportError::Yaml { line: 3, .. }), "{err}");
    assert!(err.to_string().starts_with("docker-compose.yml:3:"), "{err}");
    assert_eq!(import_with("", "", &[]).unwrap_err().to_string(), "docker-compose.yml:1: the file is empty; a compose file has `services`");
    assert_eq!(import_with("version: '3'\n", "", &[]).unwrap_err().to_string(), "docker-compose.yml:1: no `services` in the file");
    assert_eq!(import_with("services: {}\n", "", &[]).unwrap_err().to_string(), "docker-compose.yml:1: `services` is empty");
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (prev, c) in ('a'..='g').zip('b'..='h') {
        bomb.push_str(&format!("{c}: &{c} [{}]\n", vec![format!("*{prev}"); 10].join(", ")));
    }
    assert!(matches!(import_with(&bomb, "", &[]), Err(ImportError::Yaml { .. })), "alias expansion is bounded");
}

#[test]
fn names_are_made_dns_labels_and_references_follow() {
    let i = import("services:\n  Web_App:\n    image: a\n    depends_on: [db_main]\n  db_main:\n    image: b\n");
    assert_eq!(i.services, ["web-app", "db-main"]);
    assert!(i.toml.contains("[services.web-app]\n") && i.toml.contains("depends_on = [\"db-main\"]"), "{}", i.toml);
    assert!(has_warning(&i, 2, "service `Web_App` is `web-app` in stagectl"));
    let clash = import("services:\n  a_b:\n    image: x\n  a-b:\n    image: y\n");
    assert_eq!(clash.services, ["a-b", "a-b-2"]);
}

#[test]
fn dependencies_conditions_and_jobs() {
    let i = import(
        "services:
  init:
    image: a
    restart: always
    healthcheck: {test: 'true'}
  web:
    image: b
    depends_on:
      init: {condition: service_completed_successfully, required: false}
      cache: {condition: service_healthy}
      ghost: {condition: service_started}
  cache:
    image: c
",
    );
    assert!(i.toml.contains("# import: a job: `web` wait(s) for it with `service_completed_successfully`"), "{}", i.toml);
    assert!(i.toml.contains("job = true") && !i.toml.contains("ready ="), "a job has no probe:\n{}", i.toml);
    let m = messages(&i);
    assert!(has_warning(&i, 4, "`restart: always` is dropped: a dependent waits for `service_completed_successfully`"), "{m:?}");
    assert_eq!(i.warnings.iter().filter(|w| w.line == 4).count(), 1, "{m:?}");
    assert!(has_warning(&i, 5, "dropped: a job is done when it exits 0"), "{m:?}");
    assert!(has_warning(&i, 9, "`required: false` is dropped"), "{m:?}");
    assert!(has_warning(&i, 10, "`cache` has no healthcheck"), "{m:?}");
    assert!(has_warning(&i, 11, "depends on `ghost`, which the file does not define; dropped"), "{m:?}");
    assert!(i.toml.contains("depends_on = { init = \"completed\", cache = \"ready\" }"), "{}", i.toml);
}

#[test]
fn compose_keys_with_a_stagectl_form_are_carried() {
    let i = import(
        "services:
  web:
    image: a
    restart: on-failure:3
    labels: [com.example.team=web, org.stagectl.stack=x]
    tmpfs: [/run, /tmp:size=64m]
    volumes:
      - {type: tmpfs, target: /cache, tmpfs: {size: 1048576, mode: 01777}}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    shm_size: 64m
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    extra_hosts: {api.local: 10.0.0.5}
    init: true
    stop_grace_period: 1m30s
    depends_on:
      cache: {condition: service_started}
  cache:
    image: c
",
    );
    let t = &i.toml;
    for line in [
        "restart = \"on-failure:3\"",
        "labels = { \"com.example.team\" = \"web\" }",
        "tmpfs = [\"/run\", \"/tmp:size=64m\", \"/cache:size=1048576,mode=1777\"]",
        "ulimits = { nofile = { soft = 1024, hard = 2048 }, nproc = 512 }",
        "shm_size = \"64m\"",
        "cap_add = [\"NET_ADMIN\"]",
        "cap_drop = [\"ALL\"]",
        "extra_hosts = [\"api.local:10.0.0.5\"]",
        "init = true",
        "stop_grace_period = \"90s\"",
        "depends_on = { cache = \"started\" }",
    ] {
        assert!(t.contains(&format!("{line}\n")), "{line} missing in:\n{t}");
    }
    assert!(has_warning(&i, 5, "label `org.stagectl.stack` is dropped"), "{:?}", messages(&i));
    let m = crate::manifest::parse(t, "stack.toml", std::path::Path::new("/p"), &Default::default(), &|_| true);
    assert!(m.is_ok(), "the result validates:\n{}", m.err().map(|e| e.render()).unwrap_or_default());
    assert_eq!(i.warnings.len(), 1, "{:?}", messages(&i));
}

#[test]
fn ports_commands_volumes_and_secrets_convert_or_warn() {
    let yaml = "services:
  web:
    image: a
    command: npm start && echo done
    entrypoint: []
    ports:
      - 8080:80
      - 53:53/udp
      - target: 9000
        published: '9001'
        host_ip: 127.0.0.1
        mode: host
      - {target: 7000, host_ip: 127.0.0.1}
      - '${WEB_PORT:-8000}:8000'
    volumes:
      - ~/.cache:/cache
      - ./data:/data:ro
      - /srv/abs:/abs
    secrets: [db_pw, {source: api, target: api_key, mode: 0400}, env_only]
    configs: [nginx]
    networks: [front]
    ulimits: {nofile: 1024}
    x-custom: ignored
secrets:
  db_pw: {file: ./secrets/db.txt}
  api: {file: api.txt}
  env_only: {environment: TOKEN}
configs:
  nginx: {file: ./nginx.conf}
networks:
  front: {}
  default:
weird: 1
";
    let i = import_with(yaml, "deploy", &[]).unwrap();
    let t = &i.toml;
    assert!(t.contains("command = [\"npm\", \"start\", \"&&\", \"echo\", \"done\"]"), "{t}");
    assert!(has_warning(&i, 4, "shell syntax (`&&`)"));
    assert!(has_warning(&i, 5, "an empty value"));
    assert!(t.contains("ports = [\"8080:80\", \"53:53/udp\", \"127.0.0.1:9001:9000\", \"7000\", \"${WEB_PORT:-8000}:8000\"]"), "{t}");
    assert!(has_warning(&i, 12, "port option `mode` is dropped"));
    assert!(has_warning(&i, 13, "cannot bind 127.0.0.1 with a port Docker picks"));
    assert!(
        t.contains(
            "volumes = [\"${HOME}/.cache:/cache\", \"./deploy/data:/data:ro\", \"/srv/abs:/abs\", \"./deploy/secrets/db.txt:/run/secrets/db_pw:ro\", \"./deploy/api.txt:/run/secrets/api_key:ro\", \"./deploy/nginx.conf:/nginx:ro\"]"
        ),
        "{t}"
    );
    assert!(has_warning(&i, 19, "`mode` of `api` is dropped"));
    assert!(has_warning(&i, 19, "`env_only` is not declared with a `file:`"));
    assert!(has_warning(&i, 21, "`networks` is dropped"));
    assert!(t.contains("ulimits = { nofile = 1024 }"), "{t}");
    assert!(has_warning(&i, 31, "network `front` is dropped"), "{:?}", messages(&i));
    assert!(has_warning(&i, 33, "unknown top-level key `weird`"));
    assert!(!messages(&i).iter().any(|m| m.contains("x-custom") || m.contains("`default`")), "{:?}", messages(&i));
}

#[test]
fn env_files_are_read_through_the_callers_function() {
    let yaml = "services:\n  a:\n    image: x\n    env_file: [one.env, {path: none.env, required: false}, missing.env]\n    environment: [B=override, C]\n";
    let i = import_with(yaml, "", &[("one.env", "A=1\nB=2\nAPI_TOKEN=t\n")]).unwrap();
    assert!(
        i.toml.contains(
            "A = \"1\"  # from env_file one.env:1\nB = \"override\"\nAPI_TOKEN = \"t\"  # from env_file one.env:3\nC = \"${C}\"\n"
        ),
        "{}",
        i.toml
    );
    assert!(has_warning(&i, 4, "env file `missing.env` cannot be read (No such file)"));
    assert!(has_warning(&i, 4, "one.env:3: the value of API_TOKEN is written into stack.toml"));
    assert!(has_warning(&i, 5, "`C` has no value: it becomes `${C}`"));
    assert!(!messages(&i).iter().any(|m| m.contains("none.env")), "an optional missing file is fine");
}

#[test]
fn tags_second_documents_and_the_stack_name() {
    let i = import_with("name: My Project!\nservices:\n  a:\n    image: x\n    command: !reset []\n---\nother: 1\n", "", &[]).unwrap();
    assert!(has_warning(&i, 5, "YAML tag `!reset` is not understood"), "{:?}", messages(&i));
    assert!(has_warning(&i, 7, "a second YAML document"), "{:?}", messages(&i));
    assert!(i.toml.contains("name = \"t\""), "--stack wins");
    let read = |_: &str| Err(String::new());
    let around = ["an override file is beside it".to_string()];
    let opts = Options {
        file: "c.yml",
        stack: None,
        default_stack: "Some_Dir",
        profiles: &[],
        base: "",
        read_env_file: &read,
        surroundings: &around,
    };
    let named = convert("name: My Project!\nservices:\n  a:\n    image: x\n", &opts).unwrap();
    assert_eq!(named.stack, "my-project");
    let unnamed = convert("services:\n  a:\n    image: x\n", &opts).unwrap();
    assert_eq!(unnamed.stack, "some-dir");
    assert_eq!(unnamed.warnings[0].render("c.yml"), "c.yml:1: warning: an override file is beside it");
    assert!(unnamed.toml.contains("# import: from the compose file's directory `Some_Dir`"), "{}", unnamed.toml);
}
