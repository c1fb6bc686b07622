//! Issue 11 against the fake engine: `depends_on` conditions, profiles, the stop grace period,
//! and the compose keys reaching the container spec.

use super::*;

/// `app` waits for `db` only to be started; `db`'s probe never passes.
const STARTED: &str = r#"
[stack]
name = "s"
[services.db]
image = "pg"
ready = { exec = ["pg_isready"], timeout = "300ms", interval = "10ms" }
[services.app]
image = "app"
depends_on = { db = "started" }
"#;

#[tokio::test]
async fn a_dependent_waiting_for_started_does_not_wait_for_the_probe() {
    let (fake, orch, _) = setup();
    fake.exec_results("s-db", &[(1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no")]);
    let report = orch.up(&parse(STARTED)).await.unwrap();
    let app_created = fake.first_call("create_container s-app").expect("app is created though db never became ready");
    let db_started = fake.first_call("start_container").unwrap();
    assert!(db_started < app_created, "{:#?}", fake.calls());
    assert_eq!(service(&report, "db").outcome, Outcome::Failed);
    assert_eq!(service(&report, "app").outcome, Outcome::Ready, "{report:#?}");

    // The default (`ready`) still waits for the probe: app is skipped.
    let (fake, orch, _) = setup();
    fake.exec_results("s-db", &[(1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no"), (1, "no")]);
    let report = orch.up(&parse(&STARTED.replace(r#"{ db = "started" }"#, r#"["db"]"#))).await.unwrap();
    assert_eq!(service(&report, "app").outcome, Outcome::Skipped);
    assert!(fake.first_call("create_container s-app").is_none());
}

const PROFILES: &str = r#"
[stack]
name = "s"
[services.app]
image = "app"
[services.debug]
image = "busybox"
profiles = ["debug"]
depends_on = ["app"]
"#;

#[tokio::test]
async fn a_service_of_an_unselected_profile_is_not_started_and_its_container_is_not_an_orphan() {
    let (fake, orch, _) = setup();
    let all = parse(PROFILES);
    let report = orch.up(&all.clone().select_profiles(&["debug".into()]).unwrap()).await.unwrap();
    assert!(report.ok && fake.container("s-debug").is_some(), "{report:#?}");

    fake.forget_calls();
    let plain = all.select_profiles(&[]).unwrap();
    assert_eq!(plain.inactive, ["debug"]);
    let report = orch.up(&plain).await.unwrap();
    assert_eq!(report.services.len(), 1);
    assert!(fake.container("s-debug").is_some(), "removed as an orphan: {:#?}", fake.calls());
}

#[tokio::test]
async fn stop_grace_period_is_used_when_the_container_is_replaced_and_at_down() {
    let (fake, orch, _) = setup();
    let m = parse(&PROFILES.replace("[services.app]\nimage = \"app\"", "[services.app]\nimage = \"app\"\nstop_grace_period = \"1m30s\""));
    orch.up(&m.clone().select_profiles(&[]).unwrap()).await.unwrap();
    let spec = fake.container("s-app").unwrap().spec;
    assert_eq!(spec.labels.get(labels::STOP_GRACE).map(String::as_str), Some("90"));
    assert_eq!(spec.stop_timeout, Some(90));
    orch.down("s", false).await.unwrap();
    assert_eq!(fake.calls_to("remove_container").iter().filter(|c| c.ends_with("grace=90")).count(), 1, "{:#?}", fake.calls());
}

#[tokio::test]
async fn compose_keys_reach_the_container_spec() {
    let (fake, orch, _) = setup();
    let m = parse(
        r#"
[stack]
name = "s"
[services.app]
image = "app"
labels = { "com.example.team" = "shop" }
tmpfs = ["/run:size=1m"]
ulimits = { nofile = { soft = 100, hard = 200 } }
shm_size = "2m"
cap_drop = ["net_raw"]
extra_hosts = ["api.local:10.1.2.3"]
init = true
restart = "on-failure:2"
"#,
    );
    orch.up(&m).await.unwrap();
    let spec: ContainerSpec = fake.container("s-app").unwrap().spec;
    assert_eq!(spec.labels.get("com.example.team").map(String::as_str), Some("shop"));
    assert_eq!(spec.labels.get(labels::STACK).map(String::as_str), Some("s"));
    assert_eq!(spec.tmpfs, BTreeMap::from([("/run".to_string(), "size=1m".to_string())]));
    assert_eq!(spec.ulimits, [("nofile".to_string(), 100, 200)]);
    assert_eq!(spec.shm_size, Some(2 * 1024 * 1024));
    assert_eq!(spec.cap_drop, ["NET_RAW"]);
    assert_eq!(spec.extra_hosts, ["api.local:10.1.2.3"]);
    assert!(spec.init);
    assert_eq!(spec.restart, Some(("on-failure".to_string(), Some(2))));
}
