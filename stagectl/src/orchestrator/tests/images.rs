//! Issue 10 against the fake engine: a build context shared by several services is built
//! once per `up`, and they all run the same image.

use super::data::Project;
use super::*;

/// `api` and `worker` build the same context; `api` names the image.
const SHARED: &str = r#"
[stack]
name = "s"
[services.api]
build = "./app"
image = "shop:dev"
[services.worker]
build = "./app"
command = ["worker"]
"#;

fn app() -> Project {
    Project::new(&[("app/Dockerfile", "FROM debian\nCOPY main.sh /main.sh\n"), ("app/main.sh", "echo hi\n")])
}

fn image_of(fake: &FakeEngine, container: &str) -> String {
    fake.container(container).unwrap().spec.image
}

#[tokio::test]
async fn services_sharing_a_build_context_build_it_once_and_run_the_same_image() {
    let (fake, orch, events) = setup();
    let project = app();
    let report = orch.up(&project.parse(SHARED)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(fake.calls_to("build_image").len(), 1, "{:#?}", fake.calls());
    let id = image_of(&fake, "s-api");
    assert_eq!(image_of(&fake, "s-worker"), id);
    // The user's tag and each service's build tag name that one image.
    assert_eq!(fake.image_id("shop:dev").await.unwrap().as_deref(), Some(id.as_str()));
    let building: Vec<_> =
        events.0.lock().unwrap().iter().filter(|(_, p, d)| *p == Phase::Building && d.starts_with("docker build")).cloned().collect();
    assert_eq!(building.len(), 1, "{building:#?}");

    // A changed context: built once again, both services recreated on the new image.
    project.write("app/main.sh", "echo bye\n");
    fake.forget_calls();
    let report = orch.up(&project.parse(SHARED)).await.unwrap();
    assert!(report.ok, "{report:#?}");
    assert_eq!(fake.calls_to("build_image").len(), 1, "{:#?}", fake.calls());
    assert_eq!(image_of(&fake, "s-api"), image_of(&fake, "s-worker"));

    // Unchanged: cached, nothing built, both kept.
    fake.forget_calls();
    let report = orch.up(&project.parse(SHARED)).await.unwrap();
    assert!(report.ok && !report.changed, "{report:#?}");
    assert_eq!(fake.calls_to("build_image"), Vec::<String>::new());
    assert!(report.services.iter().all(|s| s.image_source == "cached"), "{report:#?}");
}

#[tokio::test]
async fn a_failed_shared_build_fails_every_service_that_shares_it_with_the_same_message() {
    let (fake, orch, _) = setup();
    fake.fail_on("build_image", "no space left on device");
    let report = orch.up(&app().parse(SHARED)).await.unwrap();
    assert!(!report.ok);
    assert_eq!(fake.calls_to("build_image").len(), 1, "{:#?}", fake.calls());
    let (api, worker) = (service(&report, "api"), service(&report, "worker"));
    assert_eq!((api.outcome, worker.outcome), (Outcome::Failed, Outcome::Failed));
    assert!(api.message.as_deref().unwrap().contains("no space left on device"), "{api:#?}");
    assert_eq!(api.message, worker.message);
}

#[tokio::test]
async fn built_images_carry_the_stack_label_and_status_shows_the_users_tag() {
    let (fake, orch, _) = setup();
    let project = app();
    let m = project.parse(SHARED);
    assert!(orch.up(&m).await.unwrap().ok);
    let built = fake.list_images(&format!("{}=s", labels::STACK)).await.unwrap();
    assert_eq!(built.len(), 1, "{built:#?}");
    assert!(built[0].tags.contains(&"shop:dev".to_string()), "{built:#?}");
    let status = orch.status(&m).await.unwrap();
    let image = |name: &str| status.iter().find(|r| r.service == name).unwrap().image.clone();
    assert_eq!(image("api"), "shop:dev");
    // No `image` to show: the build tag.
    assert!(image("worker").starts_with("stagectl-build/worker:"), "{status:#?}");
}
