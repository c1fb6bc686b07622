//! `up SERVICE...`, `stop`, `restart` and `diff` against the in-memory engine.

use std::collections::BTreeSet;

use super::*;
use crate::plan::{self, drift::DriftState};

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn up_of_a_part_leaves_the_other_containers_alone() {
    let (fake, orch, _) = setup();
    let m = parse(WITH_JOB);
    let part = plan::with_dependencies(&m, &["app".to_string()]).unwrap();
    assert_eq!(part, names(&["app", "db", "migrate"]));
    orch.up_only(&plan::subset(&m, &names(&["worker"]))).await.unwrap();
    let worker = fake.container("s-worker").unwrap().id;
    let report = orch.up_only(&plan::subset(&m, &part)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(fake.container("s-worker").map(|c| c.id), Some(worker), "not removed as an orphan");
    assert_eq!(fake.container_names().len(), 4);
}

#[tokio::test]
async fn a_stopped_service_is_started_again_by_up_not_recreated() {
    let (fake, orch, _) = setup();
    let m = parse(WEB);
    orch.up(&m).await.unwrap();
    let db = fake.container("s-db").unwrap().id;
    let stopped = orch.stop(&plan::subset(&m, &names(&["db"]))).await.unwrap();
    assert!(stopped.ok && stopped.services[0].outcome == "stopped");
    let status = orch.status(&m).await.unwrap();
    let row = status.iter().find(|r| r.service == "db").unwrap();
    assert_eq!((row.state.as_str(), row.ready), ("stopped", false));
    fake.forget_calls();

    let report = orch.up(&m).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(service(&report, "db").action, Action::Keep);
    assert_eq!(fake.calls_to("start_container"), vec![format!("start_container {db}")]);
    assert!(fake.calls_to("create_container").is_empty(), "{:#?}", fake.calls());
}

#[tokio::test]
async fn restart_starts_the_same_containers_again_and_probes_them() {
    let (fake, orch, _) = setup();
    let m = parse(WEB);
    orch.up(&m).await.unwrap();
    let db = fake.container("s-db").unwrap().id;
    fake.forget_calls();
    let services = vec!["db".to_string(), "app".to_string()];
    let report = orch.restart(&m, &services).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(fake.container("s-db").unwrap().id, db);
    assert_eq!(fake.calls_to(&format!("stop_container {db}")).len(), 1);
    assert_eq!(fake.calls_to("exec s-db").len(), 1, "probed again");
    assert!(fake.calls_to("start_container").len() == 2 && fake.calls_to("create_container").is_empty());
}

#[tokio::test]
async fn diff_reads_the_spec_label_and_names_what_changed() {
    let (fake, orch, _) = setup();
    let m = parse(WEB);
    orch.up(&m).await.unwrap();
    let label = fake.container("s-db").unwrap().spec.labels[labels::SPEC].clone();
    assert!(label.contains("POSTGRES_DB") && !label.contains("shop"), "env values stay out of labels: {label}");
    assert_eq!(orch.drift(&m).await.unwrap().drifted, 0);

    let changed =
        parse(&WEB.replace(r#"POSTGRES_DB = "shop""#, r#"POSTGRES_DB = "shop2""#).replace("[services.cache]", "[services.cache2]"));
    let report = orch.drift(&changed).await.unwrap();
    let states: Vec<(&str, DriftState)> = report.services.iter().map(|s| (s.service.as_str(), s.state)).collect();
    assert_eq!(
        states,
        [("db", DriftState::Recreate), ("app", DriftState::Unchanged), ("cache2", DriftState::Create), ("cache", DriftState::Remove)]
    );
    assert_eq!(report.services[0].changes[0].detail, "changed: POSTGRES_DB");
}
