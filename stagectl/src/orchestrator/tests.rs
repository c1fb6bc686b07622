//! The orchestrator's decisions against the in-memory engine: ordering, keep vs recreate,
//! jobs, failures, `down`, `status`, cancellation. Probes here go through the trait (`exec`,
//! `healthcheck`) or are absent; TCP/HTTP/postgres probes need real addresses and are covered
//! by the Docker integration tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::docker::fake::FakeEngine;
use crate::docker::{labels, ContainerEngine, ContainerSpec};
use crate::manifest::{self, Manifest, VarSource};
use crate::plan::Action;

mod compose;
mod data;
mod images;
mod verbs;

/// Every event the orchestrator reported, in order.
#[derive(Default)]
struct Events(Mutex<Vec<(String, Phase, String)>>);

impl Reporter for Events {
    fn phase(&self, subject: &str, phase: Phase, detail: &str) {
        self.0.lock().unwrap().push((subject.to_string(), phase, detail.to_string()));
    }
}

impl Events {
    fn phases_of(&self, subject: &str) -> Vec<Phase> {
        self.0.lock().unwrap().iter().filter(|(s, _, _)| s == subject).map(|(_, p, _)| *p).collect()
    }
}

fn parse(toml: &str) -> Manifest {
    let mut vars = VarSource::default();
    vars.secrets.insert("api_key".into(), "hunter2".into());
    manifest::parse(toml, "stack.toml", Path::new("/proj"), &vars, &|_| true).unwrap_or_else(|e| panic!("{}", e.render()))
}

fn setup() -> (Arc<FakeEngine>, Orchestrator<FakeEngine>, Arc<Events>) {
    let fake = Arc::new(FakeEngine::new());
    let events = Arc::new(Events::default());
    let mut orchestrator = Orchestrator::new(fake.clone(), events.clone());
    // The settle window of services without a probe, short: the fake's containers that exit
    // at start have exited before the first look.
    orchestrator.settle = Duration::from_millis(20);
    (fake, orchestrator, events)
}

/// `service → (action, outcome)` of a report.
fn results(report: &UpReport) -> BTreeMap<&str, (Action, Outcome)> {
    report.services.iter().map(|s| (s.service.as_str(), (s.action.clone(), s.outcome))).collect()
}

fn service<'a>(report: &'a UpReport, name: &str) -> &'a ServiceReport {
    report.services.iter().find(|s| s.service == name).unwrap()
}

/// A database probed by `exec`, an app that needs it, and a cache that needs nothing.
const WEB: &str = r#"
[stack]
name = "s"
[services.db]
image = "pg"
env = { POSTGRES_DB = "shop" }
ready = { exec = ["pg_isready"], timeout = "5s", interval = "10ms" }
[services.app]
image = "app"
depends_on = ["db"]
[services.cache]
image = "redis"
"#;

/// Migrations as a job between the database and the app.
const WITH_JOB: &str = r#"
[stack]
name = "s"
[services.db]
image = "pg"
env = { POSTGRES_DB = "shop" }
ready = { exec = ["pg_isready"], timeout = "5s", interval = "10ms" }
[services.migrate]
image = "pg"
job = true
depends_on = ["db"]
[services.app]
image = "app"
env = { MODE = "a" }
depends_on = ["migrate"]
[services.worker]
image = "app"
"#;

#[tokio::test]
async fn a_dependent_is_created_only_after_its_dependency_is_probed_ready() {
    let (fake, orch, _) = setup();
    fake.exec_results("s-db", &[(1, "no response"), (1, "no response"), (0, "accepting connections")]);
    let report = orch.up(&parse(WEB)).await.unwrap();

    assert!(report.ok, "{report:#?}");
    assert_eq!(fake.calls_to("exec s-db").len(), 3, "the probe is retried until it passes");
    let db_ready = fake.last_call("exec s-db").unwrap();
    let app_created = fake.first_call("create_container s-app").unwrap();
    assert!(db_ready < app_created, "app created before db was ready: {:#?}", fake.calls());
    // The cache depends on nothing: it does not wait for the database.
    assert!(fake.first_call("create_container s-cache").unwrap() < db_ready, "{:#?}", fake.calls());
    assert!(results(&report).values().all(|r| *r == (Action::Create, Outcome::Ready)));
}

#[tokio::test]
async fn a_second_up_keeps_everything_but_still_probes() {
    let (fake, orch, events) = setup();
    let m = parse(WEB);
    orch.up(&m).await.unwrap();
    fake.forget_calls();
    let report = orch.up(&m).await.unwrap();

    assert!(report.ok && !report.changed, "{report:#?}");
    assert!(results(&report).values().all(|r| *r == (Action::Keep, Outcome::Ready)));
    for call in ["create_container", "start_container", "remove_container", "pull_image"] {
        assert_eq!(fake.calls_to(call), Vec::<String>::new());
    }
    // Nothing is reported ready that was not probed in this run, kept services included.
    assert_eq!(fake.calls_to("exec s-db#").len(), 1);
    assert_eq!(events.phases_of("db").last(), Some(&Phase::Kept));
}

#[tokio::test]
async fn a_changed_env_recreates_only_that_service_and_keeps_its_long_running_dependents() {
    let (fake, orch, _) = setup();
    orch.up(&parse(WEB)).await.unwrap();
    let (db_before, app_before) = (fake.container("s-db").unwrap().id, fake.container("s-app").unwrap().id);
    fake.forget_calls();
    let report = orch.up(&parse(&WEB.replace(r#"POSTGRES_DB = "shop""#, r#"POSTGRES_DB = "shop2""#))).await.unwrap();

    assert!(report.ok && report.changed);
    let r = results(&report);
    assert_eq!(r["db"], (Action::Recreate("spec changed".into()), Outcome::Ready));
    assert_eq!(r["app"], (Action::Keep, Outcome::Ready));
    assert_eq!(r["cache"], (Action::Keep, Outcome::Ready));
    // The old container is stopped gracefully before its replacement is created.
    let removed = fake.first_call(&format!("remove_container {db_before} grace=10")).expect("old db removed");
    assert!(removed < fake.first_call("create_container s-db").unwrap());
    assert!(fake.container("s-db").unwrap().spec.env.contains(&"POSTGRES_DB=shop2".to_string()));
    assert_eq!(fake.container("s-app").unwrap().id, app_before);
    assert_eq!(fake.calls_to("create_container"), ["create_container s-db"]);
}

#[tokio::test]
async fn a_job_reruns_only_when_a_dependency_was_recreated() {
    let (fake, orch, _) = setup();
    let first = orch.up(&parse(WITH_JOB)).await.unwrap();
    assert_eq!(results(&first)["migrate"], (Action::Create, Outcome::Completed));
    assert_eq!(fake.container("s-migrate").unwrap().exit_code, Some(0));

    // Only the app changed: the job's last run still holds.
    let report = orch.up(&parse(&WITH_JOB.replace(r#"MODE = "a""#, r#"MODE = "b""#))).await.unwrap();
    let r = results(&report);
    assert_eq!(r["migrate"], (Action::Keep, Outcome::Completed));
    assert_eq!(r["app"], (Action::Recreate("spec changed".into()), Outcome::Ready));
    assert_eq!(fake.calls_to("create_container s-migrate").len(), 1);

    // The database is new: the job runs again on it, the long-running app is left alone.
    let m = parse(&WITH_JOB.replace(r#"MODE = "a""#, r#"MODE = "b""#).replace(r#""shop""#, r#""shop2""#));
    let report = orch.up(&m).await.unwrap();
    let r = results(&report);
    assert_eq!(r["db"].0, Action::Recreate("spec changed".into()));
    assert_eq!(r["migrate"], (Action::Recreate("a dependency was recreated".into()), Outcome::Completed));
    assert_eq!(r["app"], (Action::Keep, Outcome::Ready));
    assert_eq!(fake.calls_to("create_container s-migrate").len(), 2);
    let db_ready = fake.last_call("exec s-db").unwrap();
    assert!(db_ready < fake.last_call("create_container s-migrate").unwrap(), "{:#?}", fake.calls());
}

#[tokio::test]
async fn a_failed_job_skips_its_dependents_while_independent_services_carry_on() {
    let (fake, orch, events) = setup();
    fake.image("pg");
    fake.image("app");
    fake.exits_with("s-migrate", 3);
    fake.logs("s-migrate", &["connecting with hunter2", "ERROR: relation exists"]);
    let report = orch
        .up(&parse(&WITH_JOB.replace("[services.migrate]", "[services.migrate]\nenv = { KEY = \"${secret:api_key}\" }")))
        .await
        .unwrap();

    assert!(!report.ok);
    let r = results(&report);
    assert_eq!(r["db"].1, Outcome::Ready);
    assert_eq!(r["migrate"].1, Outcome::Failed);
    assert_eq!(r["app"].1, Outcome::Skipped);
    assert_eq!(r["worker"].1, Outcome::Ready);
    let migrate = service(&report, "migrate");
    assert_eq!(migrate.message.as_deref(), Some("job exited with code 3"));
    assert_eq!(migrate.logs, ["connecting with ***", "ERROR: relation exists"], "last lines, secrets masked");
    assert_eq!(service(&report, "app").message.as_deref(), Some("not started: dependency `migrate` failed"));
    assert_eq!(fake.first_call("create_container s-app"), None);
    assert_eq!(events.phases_of("app"), [Phase::ImageReady, Phase::Waiting, Phase::Skipped]);
}

#[tokio::test]
async fn a_docker_error_fails_only_that_service() {
    let (fake, orch, _) = setup();
    fake.fail_on("create_container s-db", "no space left on device");
    let report = orch.up(&parse(WEB)).await.unwrap();

    let r = results(&report);
    assert_eq!(r["db"], (Action::Create, Outcome::Failed));
    assert_eq!(r["app"].1, Outcome::Skipped);
    assert_eq!(r["cache"].1, Outcome::Ready);
    assert_eq!(service(&report, "db").message.as_deref(), Some("Docker: create_container s-db: no space left on device"));
    assert!(service(&report, "db").logs.is_empty(), "no container, no logs to show");
}

#[tokio::test]
async fn a_probe_that_never_passes_fails_with_its_last_error_and_the_container_logs() {
    let (fake, orch, _) = setup();
    let m = parse(
        r#"
[stack]
name = "s"
[services.api]
image = "api"
ready = { healthcheck = true, timeout = "150ms", interval = "10ms" }
[services.web]
image = "web"
depends_on = ["api"]
"#,
    );
    fake.health("s-api", "unhealthy");
    fake.logs("s-api", &["listening on nothing"]);
    let report = orch.up(&m).await.unwrap();

    let api = service(&report, "api");
    assert_eq!(api.outcome, Outcome::Failed);
    let message = api.message.as_deref().unwrap();
    assert!(message.starts_with("not ready after 0."), "{message}");
    assert!(message.ends_with("; last probe error: docker healthcheck is unhealthy"), "{message}");
    assert_eq!(api.logs, ["listening on nothing"]);
    assert_eq!(service(&report, "web").outcome, Outcome::Skipped);
}

#[tokio::test]
async fn a_service_without_a_probe_that_exits_at_start_fails() {
    let (fake, orch, _) = setup();
    fake.exits_with("s-cache", 1);
    let report = orch.up(&parse(WEB)).await.unwrap();
    assert_eq!(service(&report, "cache").message.as_deref(), Some("container exited with code 1"));
    assert_eq!(service(&report, "app").outcome, Outcome::Ready, "the app does not depend on the cache");
}

#[tokio::test]
async fn missing_images_are_pulled_once_and_a_failed_pull_says_how_to_check() {
    let (fake, orch, _) = setup();
    fake.image("pg");
    fake.fail_on("pull_image redis", "manifest unknown");
    let m = parse(WEB);
    let report = orch.up(&m).await.unwrap();

    let mut pulled = fake.calls_to("pull_image");
    pulled.sort();
    assert_eq!(pulled, ["pull_image app", "pull_image redis"]);
    assert_eq!(service(&report, "db").image_source, "present");
    assert_eq!(service(&report, "app").image_source, "pulled");
    let cache = service(&report, "cache");
    assert_eq!(cache.outcome, Outcome::Failed);
    assert_eq!(
        cache.message.as_deref(),
        Some("Docker: pull_image redis: manifest unknown\n  = help: check the image name, or that the registry is reachable (pull it by hand with `docker pull redis`)")
    );
    assert_eq!(fake.first_call("create_container s-cache"), None);

    fake.forget_calls();
    orch.up(&m).await.unwrap();
    assert_eq!(fake.calls_to("pull_image"), ["pull_image redis"], "pulled images are present now");
}

#[tokio::test]
async fn containers_of_removed_services_are_removed_as_orphans() {
    let (fake, orch, _) = setup();
    orch.up(&parse(WEB)).await.unwrap();
    let without_cache = WEB.replace("[services.cache]\nimage = \"redis\"\n", "");
    let report = orch.up(&parse(&without_cache)).await.unwrap();
    assert!(report.changed, "removing an orphan is a change");
    assert!(results(&report).values().all(|r| r.0 == Action::Keep));
    assert_eq!(fake.container("s-cache").map(|c| c.id), None);
}

/// A container another stack (or nobody) owns, created through the trait like any other.
async fn foreign_container(fake: &FakeEngine, name: &str, owner: Option<&str>) {
    fake.image("busybox");
    let labels = owner.map(|stack| BTreeMap::from([(labels::STACK.to_string(), stack.to_string())])).unwrap_or_default();
    let spec = ContainerSpec { name: name.into(), image: "busybox".into(), labels, ..Default::default() };
    let id = fake.create_container(&spec).await.unwrap();
    fake.start_container(&id).await.unwrap();
}

#[tokio::test]
async fn down_removes_only_what_is_labelled_with_the_stack() {
    let (fake, orch, events) = setup();
    let m = parse(&WEB.replace("[services.db]", "[services.db]\nvolumes = [\"pgdata:/var/lib/postgresql/data\"]"));
    orch.up(&m).await.unwrap();
    foreign_container(&fake, "other-db", Some("other")).await;
    foreign_container(&fake, "s-handmade", None).await;
    let other_labels = BTreeMap::from([(labels::STACK.to_string(), "other".to_string())]);
    fake.ensure_network("other-net", &other_labels).await.unwrap();
    fake.ensure_volume("other-pgdata", &other_labels).await.unwrap();
    fake.ensure_volume("s-unlabelled", &BTreeMap::new()).await.unwrap();

    let report = orch.down("s", false).await.unwrap();
    assert_eq!((report.containers, report.networks, report.volumes), (3, 1, 0));
    assert_eq!(fake.container_names(), ["other-db", "s-handmade"]);
    assert_eq!(fake.networks(), ["other-net"]);
    assert_eq!(fake.volumes(), ["other-pgdata", "s-pgdata", "s-unlabelled"], "volumes stay without --volumes");
    assert!(fake.calls_to("remove_container").iter().all(|c| c.ends_with("grace=10")));
    assert_eq!(events.phases_of("db").last(), Some(&Phase::Removed));

    orch.up(&m).await.unwrap();
    fake.forget_calls();
    let report = orch.down("s", true).await.unwrap();
    assert_eq!(report.volumes, 1);
    assert_eq!(fake.volumes(), ["other-pgdata", "s-unlabelled"]);
    // The data is discarded anyway: no graceful stop.
    assert_eq!(fake.calls_to("remove_container").len(), 3);
    assert!(fake.calls_to("remove_container").iter().all(|c| c.ends_with("grace=0")));
}

#[tokio::test]
async fn status_shows_each_service_and_containers_the_manifest_no_longer_has() {
    let (fake, orch, _) = setup();
    orch.up(&parse(WITH_JOB)).await.unwrap();
    let with_extra = format!("{WITH_JOB}[services.cache]\nimage = \"redis\"\n").replace("[services.worker]\nimage = \"app\"\n", "");
    fake.exec_results("s-db", &[(2, "no response")]);
    let rows = orch.status(&parse(&with_extra)).await.unwrap();

    let row = |name: &str| rows.iter().find(|r| r.service == name).unwrap_or_else(|| panic!("no row for {name}: {rows:#?}"));
    assert_eq!((row("db").state.as_str(), row("db").ready), ("running", false));
    assert_eq!(row("db").detail.as_deref(), Some("`pg_isready` exited with 2: no response"));
    assert_eq!((row("migrate").state.as_str(), row("migrate").ready), ("exited (0)", true));
    assert_eq!((row("app").state.as_str(), row("app").ready), ("running", true));
    assert_eq!((row("cache").state.as_str(), row("cache").container.as_deref()), ("missing", None));
    assert_eq!(row("worker").container.as_deref(), Some("s-worker"), "still there, listed after the manifest's services");
    assert_eq!(rows.last().unwrap().service, "worker");
}

#[tokio::test]
async fn a_cancelled_up_reports_nothing_ready_and_the_next_up_probes_what_it_left() {
    let (fake, orch, events) = setup();
    let m = parse(&WEB.replace(r#"timeout = "5s""#, r#"timeout = "60s""#));
    fake.exec_results("s-db", &[(1, "starting")]);
    let cancelled = tokio::time::timeout(Duration::from_millis(300), orch.up(&m)).await;
    assert!(cancelled.is_err(), "the probe never passes, so up is still running when dropped");

    // Honest claims about a dropped run: there is no report; only the cache, which was
    // checked running, was announced ready; the unprobed database and the app waiting for it
    // never were, and the app was never created; what had started stays (no cleanup on drop).
    assert_eq!(events.phases_of("cache").last(), Some(&Phase::Ready));
    assert!(!events.phases_of("db").iter().any(|p| p.is_final()), "{:?}", events.phases_of("db"));
    assert_eq!(events.phases_of("app").last(), Some(&Phase::Waiting));
    assert_eq!(fake.first_call("create_container s-app"), None);
    assert_eq!(fake.container("s-db").unwrap().state, crate::docker::RunState::Running);

    // The next run adopts the leftover database, but only after probing it.
    fake.exec_results("s-db", &[(0, "accepting connections")]);
    fake.forget_calls();
    let report = orch.up(&m).await.unwrap();
    assert!(report.ok);
    assert_eq!(results(&report)["db"], (Action::Keep, Outcome::Ready));
    assert!(fake.first_call("exec s-db#").unwrap() < fake.first_call("create_container s-app").unwrap());
}

#[tokio::test]
async fn a_check_against_a_service_that_is_down_fails_at_once_with_the_reason() {
    let (fake, orch, _) = setup();
    let m = parse(
        r#"
[stack]
name = "s"
[services.web]
image = "web"
[[checks.smoke]]
name = "web answers"
tcp = { service = "web", port = 80 }
timeout = "60s"
"#,
    );
    assert!(orch.up(&m).await.unwrap().ok);
    fake.exit_now("s-web", 3);
    let results = crate::checks::run_all(fake.as_ref(), &m, &|_| {}).await.unwrap();
    let r = &results[0];
    assert_eq!(r.outcome, crate::checks::CheckOutcome::Failed);
    // One attempt, not 60 s of retries against a container that cannot come back by itself.
    assert_eq!(r.attempts, 1, "{r:?}");
    assert!(r.message.contains("service `web` is not running (exited with code 3"), "{}", r.message);
}

/// A kept container that stops while it is probed (a removal the engine carried on with after
/// a killed `rebuild`'s `down`) is recreated once, not reported failed (RELIABILITY finding 7).
#[tokio::test]
async fn a_kept_container_that_stops_while_probed_is_recreated() {
    let (fake, orch, _) = setup();
    let manifest = parse(WEB);
    assert!(orch.up(&manifest).await.unwrap().ok);
    let first_db = fake.container("s-db").unwrap().id;
    let before = fake.calls().len();
    fake.exec_results("s-db", &[(1, "no response")]);
    let killer = {
        let fake = fake.clone();
        tokio::spawn(async move {
            while !fake.calls()[before..].iter().any(|c| c.starts_with("exec s-db")) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            fake.exit_now("s-db", 137);
            fake.exec_results("s-db", &[(0, "accepting connections")]);
        })
    };
    let report = orch.up(&manifest).await.unwrap();
    killer.await.unwrap();
    assert!(report.ok, "{report:#?}");
    let db = service(&report, "db");
    assert!(matches!(&db.action, Action::Recreate(why) if why.contains("another process")), "{:?}", db.action);
    assert_ne!(fake.container("s-db").unwrap().id, first_db, "not recreated");
    assert!(fake.calls()[before..].iter().any(|c| c.starts_with(&format!("remove_container {first_db}"))), "{:#?}", fake.calls());
}

#[tokio::test]
async fn the_restarts_of_a_service_with_a_restart_policy_are_in_the_up_report() {
    let (fake, orch, _) = setup();
    let m = parse("[stack]\nname = \"s\"\n[services.worker]\nimage = \"w\"\nrestart = \"always\"\n[services.web]\nimage = \"web\"\n");
    orch.up(&m).await.unwrap();
    fake.restarts("s-worker", 4);
    fake.restarts("s-web", 9);
    let report = orch.up(&m).await.unwrap();
    assert_eq!(service(&report, "worker").restarts, 4);
    // Without a policy Docker restarts nothing: the count is not even asked for.
    assert_eq!(service(&report, "web").restarts, 0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["services"][0]["restarts"], 4, "{json}");
}

#[tokio::test]
async fn rebuild_keeps_the_network_and_creates_the_new_containers_before_the_old_ones_are_gone() {
    let (fake, orch, _) = setup();
    let m = parse(WEB);
    orch.up(&m).await.unwrap();
    let old: Vec<String> = fake.list_containers("s").await.unwrap().into_iter().map(|c| c.id).collect();
    fake.forget_calls();
    let report = orch.rebuild(&m).await.unwrap();
    assert!(report.ok);
    let calls = fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("remove_network")), "{calls:?}");
    assert_eq!(fake.networks(), ["s-net"], "the network stays");
    // Each old container is renamed and taken off the network before anything is created, so
    // no one reaches it by its service's name; its removal goes on beside the new ones.
    let first_create = calls.iter().position(|c| c.starts_with("create_container")).unwrap();
    for id in &old {
        let renamed = calls.iter().position(|c| c.starts_with(&format!("rename_container {id}"))).unwrap();
        let off = calls.iter().position(|c| c.starts_with(&format!("disconnect_network {id}"))).unwrap();
        assert!(renamed < first_create && off < first_create, "{calls:?}");
        assert!(calls.iter().any(|c| c.starts_with(&format!("remove_container {id}"))), "{calls:?}");
    }
    let now = fake.list_containers("s").await.unwrap();
    assert_eq!(now.len(), 3);
    assert!(now.iter().all(|c| !old.contains(&c.id)), "all new");

    // With a named volume the old containers go first: the new ones need the volume's name.
    let m = parse(&WEB.replace("[services.db]", "[services.db]\nvolumes = [\"pgdata:/var/lib/postgresql/data\"]"));
    orch.up(&m).await.unwrap();
    fake.forget_calls();
    orch.rebuild(&m).await.unwrap();
    let calls = fake.calls();
    let last_removal = calls.iter().rposition(|c| c.starts_with("remove_container")).unwrap();
    let first_create = calls.iter().position(|c| c.starts_with("create_container")).unwrap();
    assert!(last_removal < first_create, "{calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("remove_volume s-pgdata")), "{calls:?}");
}
