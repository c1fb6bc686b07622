use std::collections::BTreeMap;

use super::*;
use crate::docker::{ObservedContainer, RunState};
use crate::manifest::tests::parse_ok;

const STACK: &str = r#"
[stack]
name = "s"
[services.db]
image = "pg"
[services.migrate]
image = "pg"
job = true
depends_on = ["db"]
[services.app]
image = "app"
depends_on = ["migrate", "cache"]
[services.cache]
image = "redis"
"#;

fn hashes(m: &Manifest) -> BTreeMap<String, String> {
    m.services.iter().map(|s| (s.name.clone(), spec_hash(&m.stack, s, "sha256:img"))).collect()
}

fn observed(m: &Manifest, h: &BTreeMap<String, String>) -> Vec<ObservedContainer> {
    m.services
        .iter()
        .map(|s| ObservedContainer {
            id: format!("id-{}", s.name),
            name: container_name(&m.stack, &s.name),
            service: s.name.clone(),
            spec_hash: h[&s.name].clone(),
            state: if s.job { RunState::Exited } else { RunState::Running },
            exit_code: s.job.then_some(0),
            image: String::new(),
            created: 0,
            labels: BTreeMap::new(),
            ports: vec![],
        })
        .collect()
}

#[test]
fn dependencies_come_first() {
    let m = parse_ok(STACK);
    let order: Vec<&str> = topological_order(&m).iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["db", "migrate", "cache", "app"]);
}

#[test]
fn nothing_running_means_create_everything() {
    let m = parse_ok(STACK);
    let plan = diff(&m, &hashes(&m), &[]);
    assert!(plan.steps.iter().all(|(_, a)| *a == Action::Create));
    assert!(plan.orphans.is_empty());
}

#[test]
fn an_unchanged_stack_is_a_noop() {
    let m = parse_ok(STACK);
    let h = hashes(&m);
    let plan = diff(&m, &h, &observed(&m, &h));
    assert!(plan.is_noop(), "{plan:?}");
}

#[test]
fn a_changed_service_is_recreated_and_its_long_running_dependents_are_kept() {
    let m = parse_ok(STACK);
    let h = hashes(&m);
    let obs = observed(&m, &h);
    let mut h2 = h.clone();
    h2.insert("cache".into(), "changed".into());
    let plan = diff(&m, &h2, &obs);
    assert_eq!(plan.action("cache"), Some(&Action::Recreate("spec changed".into())));
    assert_eq!(plan.action("app"), Some(&Action::Keep));
    assert_eq!(plan.action("db"), Some(&Action::Keep));
}

#[test]
fn a_job_reruns_when_its_dependency_is_recreated() {
    let m = parse_ok(STACK);
    let h = hashes(&m);
    let obs = observed(&m, &h);
    let mut h2 = h.clone();
    h2.insert("db".into(), "changed".into());
    let plan = diff(&m, &h2, &obs);
    assert_eq!(plan.action("migrate"), Some(&Action::Recreate("a dependency was recreated".into())));
    assert_eq!(plan.action("app"), Some(&Action::Keep));
}

#[test]
fn a_failed_job_and_a_stopped_service_are_recreated() {
    let m = parse_ok(STACK);
    let h = hashes(&m);
    let mut obs = observed(&m, &h);
    for c in obs.iter_mut() {
        if c.service == "migrate" {
            c.exit_code = Some(3);
        }
        if c.service == "cache" {
            c.state = RunState::Exited;
        }
    }
    let plan = diff(&m, &h, &obs);
    assert_eq!(plan.action("migrate"), Some(&Action::Recreate("previous run failed".into())));
    assert_eq!(plan.action("cache"), Some(&Action::Recreate("not running".into())));
}

#[test]
fn containers_of_removed_services_are_orphans() {
    let m = parse_ok(STACK);
    let h = hashes(&m);
    let mut obs = observed(&m, &h);
    let mut old = obs[0].clone();
    old.id = "id-old".into();
    old.service = "worker".into();
    old.name = "s-worker".into();
    obs.push(old);
    assert_eq!(diff(&m, &h, &obs).orphans, vec!["id-old".to_string()]);
}

#[test]
fn the_spec_hash_follows_env_and_image_but_not_readiness() {
    let a = parse_ok("[stack]\nname = \"s\"\n[services.w]\nimage = \"x\"\nenv = { A = \"1\" }\n");
    let b = parse_ok("[stack]\nname = \"s\"\n[services.w]\nimage = \"x\"\nenv = { A = \"2\" }\n");
    let c = parse_ok("[stack]\nname = \"s\"\n[services.w]\nimage = \"x\"\nenv = { A = \"1\" }\nready = { tcp = 80 }\n");
    let h = |m: &Manifest, img: &str| spec_hash(&m.stack, &m.services[0], img);
    assert_ne!(h(&a, "i1"), h(&b, "i1"));
    assert_ne!(h(&a, "i1"), h(&a, "i2"));
    assert_eq!(h(&a, "i1"), h(&c, "i1"));
}

#[test]
fn the_container_spec_names_labels_and_mounts_by_stack() {
    let m = parse_ok(
        "[stack]\nname = \"s\"\n[services.db]\nimage = \"pg\"\nvolumes = [\"data:/d\", \"/etc/x:/x:ro\"]\nports = [\"5433:5432\"]\n",
    );
    let spec = container_spec(&m, &m.services[0], "sha256:abc", "pg", "h1");
    assert_eq!(spec.name, "s-db");
    assert_eq!(spec.network, "s-net");
    assert_eq!(spec.binds, vec!["s-data:/d".to_string(), "/etc/x:/x:ro".to_string()]);
    assert_eq!(spec.labels[labels::STACK], "s");
    assert_eq!(spec.labels[labels::SERVICE], "db");
    assert_eq!(spec.labels[labels::SPEC_HASH], "h1");
    assert_eq!(spec.labels[labels::IMAGE], "pg");
    assert_eq!(spec.image, "sha256:abc");
    assert_eq!(spec.ports, vec![(None, 5433, 5432, "tcp".to_string())]);
    assert_eq!(named_volumes(&m), vec!["data".to_string()]);
}

/// A service with every field set; its hash is pinned below.
const PINNED: &str = r#"
[stack]
name = "shop"
[services.db]
image = "postgres:15"
[services.app]
image = "shop/app:1"
build = { context = "demo/shop", dockerfile = "Dockerfile.dev", command = "make dist", args = { PROFILE = "dev" } }
command = ["serve", "--port", "8080"]
entrypoint = ["/bin/sh", "-c"]
env = { B = "2", A = "1", API_KEY = "${secret:api_key}", DEBUG = true }
ports = ["8080:80", "127.0.0.1:9000:9000/udp", "7000"]
volumes = ["data:/data", "./conf:/etc/app:ro"]
depends_on = ["db"]
ready = { http = "/healthz", port = 80, timeout = "5s" }
working_dir = "/srv"
user = "1000:1000"
[services.migrate]
image = "postgres:15"
job = true
depends_on = ["db"]
command = ["psql", "-f", "/m.sql"]
"#;

#[test]
fn the_spec_hash_of_an_unchanged_service_never_changes() {
    // Computed before `spec_hash` was restructured: a different value would recreate every
    // running container on upgrade.
    let m = parse_ok(PINNED);
    let hash = |name: &str| spec_hash(&m.stack, m.service(name).unwrap(), "sha256:0123abcd");
    assert_eq!(hash("app"), "7f2f857fea5d4913");
    assert_eq!(hash("migrate"), "3c9273cface6ad90");
    assert_eq!(hash("db"), "8eb31bb8c6480e86");
}

/// `(service, signal, direct)` of each wait, for compact assertions.
fn waits_of(m: &Manifest, service: &str) -> Vec<(String, Signal, bool)> {
    waits(m, m.service(service).unwrap()).into_iter().map(|w| (w.service, w.signal, w.direct)).collect()
}

fn w(service: &str, signal: Signal, direct: bool) -> (String, Signal, bool) {
    (service.to_string(), signal, direct)
}

#[test]
fn every_dependent_of_a_data_service_waits_for_its_fixtures_but_what_its_load_needs() {
    // install and migrate (jobs on db) run before db's load; web, through install, after it.
    // seed (a job on db too, so in `after`) needs api: api runs before the load as well.
    let m = parse_ok(
        r#"
[stack]
name = "s"
[services.db]
image = "pg"
[services.migrate]
image = "pg"
job = true
depends_on = ["db"]
[services.install]
image = "pg"
job = true
depends_on = ["db"]
[services.web]
image = "app"
depends_on = ["install"]
[services.api]
image = "app"
depends_on = ["migrate"]
[services.seed]
image = "app"
job = true
depends_on = ["db", "api"]
[services.report]
image = "app"
depends_on = ["web"]
[fixtures.db]
files = ["*.sql"]
"#,
    );
    assert_eq!(waits_of(&m, "migrate"), [w("db", Signal::Ready, true)]);
    assert_eq!(waits_of(&m, "install"), [w("db", Signal::Ready, true)]);
    assert_eq!(waits_of(&m, "web"), [w("install", Signal::Done, true), w("db", Signal::Done, false)]);
    assert_eq!(waits_of(&m, "report"), [w("web", Signal::Done, true), w("db", Signal::Done, false)]);
    assert_eq!(waits_of(&m, "api"), [w("migrate", Signal::Done, true)], "seed, in the load's `after`, needs it");
    assert_eq!(waits_of(&m, "seed"), [w("db", Signal::Ready, true), w("api", Signal::Done, true)]);
    assert_eq!(before_load(&m, m.fixtures_for("db").unwrap()).into_iter().collect::<Vec<_>>(), ["api", "db", "install", "migrate", "seed"]);
    assert_eq!(wait_cycle(&m), None);
    // Without fixtures, waits are the dependencies, each done.
    let plain = parse_ok(STACK);
    assert_eq!(waits_of(&plain, "app"), [w("migrate", Signal::Done, true), w("cache", Signal::Done, true)]);
    assert_eq!(wait_cycle(&plain), None);
}

/// Each compose key that shapes the container changes the hash; the ones that do not
/// (profiles, conditions, the env files' paths) leave it alone.
#[test]
fn compose_keys_are_in_the_hash_only_when_they_shape_the_container() {
    let base = "[stack]\nname = \"s\"\n[services.db]\nimage = \"pg\"\n[services.app]\nimage = \"app\"\ndepends_on = [\"db\"]\n";
    let hash_of = |extra: &str| {
        let m = parse_ok(&base.replace("depends_on = [\"db\"]\n", &format!("depends_on = [\"db\"]\n{extra}\n")));
        spec_hash(&m.stack, m.service("app").unwrap(), "sha256:img")
    };
    let plain = hash_of("");
    for changes in [
        "labels = { a = \"b\" }",
        "tmpfs = [\"/run\"]",
        "ulimits = { nofile = 1024 }",
        "shm_size = \"64m\"",
        "cap_add = [\"NET_ADMIN\"]",
        "cap_drop = [\"ALL\"]",
        "extra_hosts = [\"a:10.0.0.1\"]",
        "init = true",
        "stop_grace_period = \"20s\"",
        "restart = \"always\"",
    ] {
        assert_ne!(hash_of(changes), plain, "{changes}");
    }
    for same in ["profiles = [\"x\"]", "init = false", "restart = \"no\"", "tmpfs = []", "labels = {}"] {
        assert_eq!(hash_of(same), plain, "{same}");
    }
    let with_condition = parse_ok(&base.replace("depends_on = [\"db\"]", "depends_on = { db = \"started\" }"));
    assert_eq!(spec_hash("s", with_condition.service("app").unwrap(), "sha256:img"), plain);
    assert_ne!(hash_of("restart = \"on-failure\""), hash_of("restart = \"on-failure:3\""));
}

#[test]
fn a_swarm_tasks_container_is_the_services_container_and_a_running_task_comes_first() {
    let m = parse_ok(STACK);
    let mut containers = observed(&m, &hashes(&m));
    for c in &mut containers {
        c.name = format!("{}.1.task{}", swarm_service_name("s", &c.service), c.id);
    }
    // An ended task of `db` listed before the running one.
    let mut ended = containers[0].clone();
    ended.id = "old".into();
    ended.name = format!("{}.1.old", swarm_service_name("s", "db"));
    ended.state = RunState::Exited;
    containers.insert(0, ended);
    assert_eq!(current_container("s", "db", &containers).map(|c| c.id.as_str()), Some("id-db"));
    assert_eq!(running_container("s", "app", &containers).map(|c| c.id.as_str()), Some("id-app"));
    // Another project whose name extends this one's is not this one's.
    let mut other = containers[1].clone();
    other.name = "s_db2.1.x".into();
    assert!(current_container("s", "db", std::slice::from_ref(&other)).is_none());
}
