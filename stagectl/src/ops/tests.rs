//! The recorded-run lifecycle (`run_recorded`) against the in-memory engine and a real SQLite
//! history in a temp dir: what is recorded for success, failure, a panic and a cancellation,
//! and that a busy stack makes the next run wait.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::docker::fake::FakeEngine;
use crate::error::Error;
use crate::history::{History, RunDetail, RunStatus, Trigger};
use crate::manifest::{self, VarSource};
use crate::orchestrator::{Phase, Reporter};

/// A stack name no other test (or process) uses: the stack lock is machine-wide.
fn unique_stack(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("ops-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

fn manifest(stack: &str, db_timeout: &str) -> Manifest {
    let toml = format!(
        r#"
[stack]
name = "{stack}"
[services.db]
image = "pg"
env = {{ PASSWORD = "${{secret:db_password}}" }}
ready = {{ exec = ["pg_isready"], timeout = "{db_timeout}", interval = "10ms" }}
[services.app]
image = "app"
depends_on = ["db"]
"#
    );
    let mut vars = VarSource::default();
    vars.secrets.insert("db_password".into(), "s3cr3t-value".into());
    manifest::parse(&toml, "stack.toml", Path::new("/proj"), &vars, &|_| true).unwrap_or_else(|e| panic!("{}", e.render()))
}

/// What the person at the terminal would have seen.
#[derive(Default)]
struct Display {
    notes: Mutex<Vec<String>>,
    panic_on: Option<(&'static str, Phase)>,
}

impl Reporter for Display {
    fn phase(&self, subject: &str, phase: Phase, _detail: &str) {
        if self.panic_on == Some((subject, phase)) {
            panic!("display broke on {subject}");
        }
    }

    fn note(&self, line: &str) {
        self.notes.lock().unwrap().push(line.to_string());
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    history: Arc<History>,
    fake: Arc<FakeEngine>,
    stack: String,
}

fn setup(tag: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let history = Arc::new(History::open(&dir.path().join("history.db")).unwrap());
    Setup { _dir: dir, history, fake: Arc::new(FakeEngine::new()), stack: unique_stack(tag) }
}

impl Setup {
    async fn run(
        &self,
        m: &Manifest,
        op: Operation,
        display: Arc<Display>,
        cancel: impl std::future::Future<Output = ()>,
    ) -> (Result<OpOutcome, Error>, RunDetail) {
        let run = self.history.create_run(&self.stack, op.name(), Trigger::Cli).unwrap();
        let recording = Some(Recording { history: self.history.clone(), run });
        let connect = async { Ok(self.fake.clone()) };
        let result = run_recorded(connect, &self.stack, Some(m), op, Trigger::Cli, recording, display, cancel).await;
        (result, self.history.run(run).unwrap().unwrap())
    }

    fn log(&self, run: i64) -> String {
        self.history.log_since(run, 0, 1000).unwrap().into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")
    }
}

#[tokio::test]
async fn a_successful_up_is_recorded_with_a_step_per_service_and_its_log() {
    let s = setup("ok");
    s.fake.exec_results(&format!("{}-db", s.stack), &[(0, "accepting connections")]);
    let (result, detail) = s.run(&manifest(&s.stack, "5s"), Operation::Up, Arc::default(), std::future::pending()).await;

    let outcome = result.unwrap();
    assert!(outcome.ok() && matches!(outcome, OpOutcome::Up(_)));
    assert_eq!(detail.run.status, RunStatus::Succeeded);
    let steps: Vec<(&str, &str)> = detail.steps.iter().map(|s| (s.name.as_str(), s.status.as_str())).collect();
    assert_eq!(steps, [("db", "ready"), ("app", "ready")]);
    let log = s.log(detail.run.id);
    assert!(log.contains("up (cli trigger)") && log.contains("db ready"), "{log}");
}

#[tokio::test]
async fn a_failed_service_fails_the_run_naming_it_and_masks_secrets() {
    let s = setup("fail");
    s.fake.exec_results(&format!("{}-db", s.stack), &[(1, "password s3cr3t-value rejected")]);
    let (result, detail) = s.run(&manifest(&s.stack, "100ms"), Operation::Up, Arc::default(), std::future::pending()).await;

    assert!(!result.unwrap().ok());
    assert_eq!(detail.run.status, RunStatus::Failed);
    let error = detail.run.error.unwrap_or_default();
    assert!(error.starts_with("db: "), "{error}");
    let everything = format!("{error}\n{:?}\n{}", detail.steps, s.log(detail.run.id));
    assert!(!everything.contains("s3cr3t-value"), "a secret reached the history: {everything}");
    assert_eq!(detail.steps.iter().find(|st| st.name == "app").map(|st| st.status.as_str()), Some("skipped"));
}

#[tokio::test]
async fn a_panic_in_the_run_fails_that_run_on_record_and_returns() {
    let s = setup("panic");
    s.fake.exec_results(&format!("{}-db", s.stack), &[(0, "ok")]);
    let display = Arc::new(Display { panic_on: Some(("db", Phase::Ready)), ..Display::default() });
    let (result, detail) = s.run(&manifest(&s.stack, "5s"), Operation::Up, display, std::future::pending()).await;

    let error = result.unwrap_err().to_string();
    assert!(error.contains("internal error: display broke on db"), "{error}");
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert!(detail.run.error.unwrap_or_default().contains("internal error"));
    // The lock was released: the next run on the stack does not wait.
    assert!(StackLock::try_acquire(&s.stack).unwrap().is_some());
}

#[tokio::test]
async fn a_cancelled_run_is_recorded_as_cancelled_with_what_it_left_behind() {
    let s = setup("cancel");
    // The database never becomes ready within the run: it is cancelled while probing.
    s.fake.exec_results(&format!("{}-db", s.stack), &[(1, "starting")]);
    let cancel = tokio::time::sleep(Duration::from_millis(200));
    let (result, detail) = s.run(&manifest(&s.stack, "60s"), Operation::Up, Arc::default(), cancel).await;

    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), crate::error::exit::CANCELLED);
    let message = err.to_string();
    assert!(message.contains("cancelled: 1 container(s) left, 1 running (db)"), "{message}");
    assert_eq!(detail.run.status, RunStatus::Cancelled);
    assert_eq!(detail.run.error.as_deref(), Some(message.as_str()));
    assert!(s.fake.container(&format!("{}-app", s.stack)).is_none(), "the app was started after the cancel");
}

#[tokio::test]
async fn a_run_on_a_busy_stack_waits_for_the_lock_and_says_so() {
    let s = setup("busy");
    s.fake.exec_results(&format!("{}-db", s.stack), &[(0, "ok")]);
    let held = StackLock::try_acquire(&s.stack).unwrap().expect("free at first");
    let display = Arc::new(Display::default());
    let m = manifest(&s.stack, "5s");
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(s.fake.calls().is_empty(), "the run touched Docker while another held the lock");
        drop(held);
    };
    let ((result, detail), ()) = tokio::join!(s.run(&m, Operation::Up, display.clone(), std::future::pending()), release);

    assert!(result.unwrap().ok());
    assert_eq!(detail.run.status, RunStatus::Succeeded);
    let notes = display.notes.lock().unwrap().clone();
    assert!(notes.iter().any(|n| n.contains("waiting for another stagectl operation")), "{notes:?}");
}

#[tokio::test]
async fn a_services_restarts_are_in_its_history_step_and_do_not_fail_the_run() {
    let s = setup("restarts");
    let m = manifest(&s.stack, "5s");
    let toml_app = m.services.iter().position(|x| x.name == "app").unwrap();
    let mut m = m;
    m.services[toml_app].restart = crate::manifest::Restart::Always;
    s.fake.exec_results(&format!("{}-db", s.stack), &[(0, "accepting connections")]);
    s.fake.restarts(&format!("{}-app", s.stack), 3);
    let (result, detail) = s.run(&m, Operation::Up, Arc::default(), std::future::pending()).await;

    assert!(result.unwrap().ok());
    assert_eq!(detail.run.status, RunStatus::Succeeded);
    let app = detail.steps.iter().find(|st| st.name == "app").unwrap();
    assert_eq!(app.detail.as_deref(), Some("restarted 3× by its restart policy"));
    assert_eq!(detail.run.error, None, "restarts are not a failure");
}

/// `daemon --swarm`: every operation the daemon submits, in its Swarm form.
#[test]
fn on_swarm_deploys_for_up_and_rebuild_verifies_after_a_deploy_and_refuses_single_container_verbs() {
    let target = SwarmTarget { publish_on_node: true, registry: Some("registry.local:5000") };
    assert_eq!(Operation::Up.on_swarm(target).unwrap(), Operation::SwarmDeploy(target));
    assert_eq!(Operation::Rebuild.on_swarm(target).unwrap(), Operation::SwarmDeploy(target));
    assert_eq!(Operation::Verify.on_swarm(target).unwrap(), Operation::SwarmVerify(target));
    assert_eq!(Operation::SwarmVerify(target).name(), "verify");
    // Already for Swarm, or the same on Swarm as on one node.
    for same in [
        Operation::Down { volumes: true },
        Operation::Down { volumes: false },
        Operation::Check(CheckSet::All),
        Operation::Check(CheckSet::Migrations),
        Operation::SwarmDeploy(target),
        Operation::SwarmVerify(target),
    ] {
        assert_eq!(same.on_swarm(target).unwrap(), same);
    }
    // Never run on the tasks' containers as if they were `up`'s.
    static SERVICES: Vec<String> = Vec::new();
    for (refused, verb) in
        [(Operation::UpOnly, "`up SERVICE...`"), (Operation::Stop, "`stop`"), (Operation::Restart { services: &SERVICES }, "`restart`")]
    {
        match refused.on_swarm(target) {
            Err(Error::Usage(message)) => {
                assert!(message.starts_with(&format!("{verb} does not work on a stack on Docker Swarm: ")), "{message}")
            }
            other => panic!("{refused:?} on Swarm: {other:?}"),
        }
    }
}
