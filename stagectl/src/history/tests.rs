use super::*;

use std::collections::HashMap;
use std::sync::Arc;

fn open_in(dir: &tempfile::TempDir) -> (History, PathBuf) {
    let path = dir.path().join("state/history.db");
    (History::open(&path).unwrap(), path)
}

/// A second, plain connection for what the API does not do: setting times, reading counts.
fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(BUSY_TIMEOUT).unwrap();
    conn
}

fn count(conn: &Connection, sql: &str, id: i64) -> i64 {
    conn.query_row(sql, params![id], |r| r.get(0)).unwrap()
}

fn finished(h: &History, stack: &str, operation: &str, ok: bool) -> i64 {
    let id = h.create_run(stack, operation, Trigger::Cli).unwrap();
    h.start_run(id).unwrap();
    h.finish_run(id, &RunOutcome { ok, error: (!ok).then(|| "boom".to_string()), snapshot: None, refresh_seconds: None }).unwrap();
    id
}

fn insert_active(path: &Path, stack: &str, status: RunStatus, pid: u32, start: Option<i64>) -> i64 {
    let conn = raw(path);
    conn.execute(
        "INSERT INTO runs (stack, operation, triggered_by, status, owner_pid, owner_start, queued_at)
         VALUES (?1, 'up', 'api', ?2, ?3, ?4, ?5)",
        params![stack, status, pid, start, now()],
    )
    .unwrap();
    conn.last_insert_rowid()
}

fn status_of(h: &History, id: i64) -> RunStatus {
    h.run(id).unwrap().unwrap().run.status
}

fn check(name: &str, outcome: &str, p95: Option<f64>) -> CheckRecord {
    CheckRecord {
        name: name.to_string(),
        kind: "http".to_string(),
        outcome: outcome.to_string(),
        seconds: 0.25,
        message: format!("{name} {outcome}"),
        p95_ms: p95,
        p99_ms: p95.map(|p| p * 2.0),
        error_rate: Some(0.0),
    }
}

fn parse_time(text: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap()
}

#[test]
fn history_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<History>();
    assert_send_sync::<Arc<History>>();
}

#[test]
fn create_start_finish_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = open_in(&dir);

    let id = h.create_run("shop", "rebuild", Trigger::Watch).unwrap();
    let queued = h.run(id).unwrap().unwrap().run;
    assert_eq!(queued.status, RunStatus::Queued);
    assert_eq!(queued.owner_pid, std::process::id());
    assert_eq!(queued.started_at, None);

    h.start_run(id).unwrap();
    assert_eq!(status_of(&h, id), RunStatus::Running);
    std::thread::sleep(std::time::Duration::from_millis(30));
    h.set_detail(id, "changed: seed/users.csv").unwrap();
    h.finish_run(id, &RunOutcome { ok: true, error: None, snapshot: Some("hit".to_string()), refresh_seconds: Some(1.5) }).unwrap();

    let run = h.run(id).unwrap().unwrap().run;
    assert_eq!(run.id, id);
    assert_eq!(run.stack, "shop");
    assert_eq!(run.operation, "rebuild");
    assert_eq!(run.trigger, Trigger::Watch);
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.error, None);
    assert_eq!(run.snapshot.as_deref(), Some("hit"));
    assert_eq!(run.refresh_seconds, Some(1.5));
    assert_eq!(run.detail, "changed: seed/users.csv");
    let started = parse_time(run.started_at.as_deref().unwrap());
    let finished = parse_time(run.finished_at.as_deref().unwrap());
    assert!(parse_time(&run.queued_at) <= started);
    let elapsed = (finished - started).num_milliseconds() as f64 / 1000.0;
    let seconds = run.seconds.unwrap();
    assert!(seconds >= 0.03, "seconds {seconds}");
    assert!((seconds - elapsed).abs() < 0.002, "seconds {seconds} vs {elapsed}");

    let failed = finished_run_failing(&h);
    let failed = h.run(failed).unwrap().unwrap().run;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("boom"));

    assert_eq!(h.run(id + 100).unwrap(), None);
    let err = h.start_run(id + 100).unwrap_err();
    assert!(matches!(err, HistoryError::NoSuchRun { .. }), "{err}");
    assert!(err.to_string().contains("history.db: no run"), "{err}");
}

fn finished_run_failing(h: &History) -> i64 {
    finished(h, "shop", "up", false)
}

#[test]
fn runs_lists_newest_first_and_filters_by_stack() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = open_in(&dir);
    let a1 = finished(&h, "a", "up", true);
    let b1 = finished(&h, "b", "up", true);
    let a2 = h.create_run("a", "check", Trigger::Schedule).unwrap();

    let ids = |rows: Vec<RunRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(h.runs(None, 10).unwrap()), vec![a2, b1, a1]);
    assert_eq!(ids(h.runs(Some("a"), 10).unwrap()), vec![a2, a1]);
    assert_eq!(ids(h.runs(Some("a"), 1).unwrap()), vec![a2]);
    assert!(h.runs(Some("nope"), 10).unwrap().is_empty());
}

#[test]
fn steps_checks_and_log_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = open_in(&dir);
    let id = h.create_run("shop", "verify", Trigger::Api).unwrap();
    let other = h.create_run("shop", "up", Trigger::Cli).unwrap();

    let steps: Vec<StepRecord> = ["db", "cache", "api"]
        .iter()
        .enumerate()
        .map(|(i, name)| StepRecord {
            name: name.to_string(),
            status: "ready".to_string(),
            seconds: Some(i as f64 + 0.5),
            detail: (i == 1).then(|| "pulled".to_string()),
        })
        .collect();
    for step in &steps {
        h.add_step(id, step).unwrap();
    }
    h.add_step(other, &steps[0]).unwrap();
    let checks = vec![check("home", "passed", Some(12.0)), check("login", "failed", None)];
    for c in &checks {
        h.add_check(id, c).unwrap();
    }

    let started = std::time::Instant::now();
    for i in 1..=1000 {
        assert_eq!(h.append_log(id, &format!("line {i}")).unwrap(), i);
    }
    eprintln!("1000 log lines appended in {:?}", started.elapsed());
    assert_eq!(h.append_log(other, "first of other").unwrap(), 1);

    let detail = h.run(id).unwrap().unwrap();
    assert_eq!(detail.steps, steps);
    assert_eq!(detail.checks, checks);
    let log = h.log_since(id, 0, 2000).unwrap();
    assert_eq!(log.len(), 1000);
    for (i, l) in log.iter().enumerate() {
        assert_eq!(l.seq, i as i64 + 1);
        assert_eq!(l.line, format!("line {}", i + 1));
    }
    assert!(parse_time(&log[0].at) <= parse_time(&log[999].at));

    // The HTTP API sends these as JSON and the CLI reads them back.
    let json = serde_json::to_string(&detail).unwrap();
    assert!(json.contains(r#""trigger":"api""#), "{json}");
    assert!(json.contains(r#""status":"queued""#), "{json}");
    assert_eq!(serde_json::from_str::<RunDetail>(&json).unwrap(), detail);
}

#[test]
fn log_since_pages_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = open_in(&dir);
    let id = h.create_run("shop", "up", Trigger::Cli).unwrap();
    for i in 1..=25 {
        h.append_log(id, &format!("l{i}")).unwrap();
    }
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = h.log_since(id, after, 10).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().seq;
        pages.push(page.iter().map(|l| l.seq).collect::<Vec<_>>());
        assert!(pages.len() <= 3, "paging does not advance: {pages:?}");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
    assert_eq!(pages.concat(), (1..=25).collect::<Vec<i64>>());
    assert_eq!(h.log_since(id, 24, 10).unwrap()[0].line, "l25");
    // A follower that polls after new lines arrive gets only those.
    h.append_log(id, "l26").unwrap();
    let new = h.log_since(id, after, 10).unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!((new[0].seq, new[0].line.as_str()), (26, "l26"));
}

#[test]
fn schema_version_is_set_and_reopen_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (h, path) = open_in(&dir);
    let id = finished(&h, "shop", "up", true);
    drop(h);

    let version = |conn: &Connection| -> i64 { conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap() };
    let mode: String = raw(&path).pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version(&raw(&path)), MIGRATIONS.len() as i64);

    let h = History::open(&path).unwrap();
    assert_eq!(version(&raw(&path)), MIGRATIONS.len() as i64);
    assert_eq!(h.runs(None, 10).unwrap().len(), 1);
    assert_eq!(status_of(&h, id), RunStatus::Succeeded);
    drop(h);

    // A database from a newer stagectl is refused, not misread.
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    let err = History::open(&path).err().unwrap();
    assert!(matches!(err, HistoryError::TooNew { found: 99, .. }), "{err}");
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let err = History::open(&blocker.join("history.db")).err().unwrap();
    assert!(matches!(err, HistoryError::CreateDir { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("history database {}", blocker.display())));

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let err = History::open(&garbage).err().unwrap();
    assert!(matches!(err, HistoryError::Sqlite { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("history database {}:", garbage.display())), "{err}");
}

#[test]
fn two_connections_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (cli, path) = open_in(&dir);
    let daemon = History::open(&path).unwrap();

    let id = cli.create_run("shop", "up", Trigger::Cli).unwrap();
    cli.start_run(id).unwrap();
    cli.append_log(id, "from the cli").unwrap();
    // The daemon opening (and recovering) while the CLI's run is live leaves it alone.
    let late = History::open(&path).unwrap();
    assert_eq!(status_of(&late, id), RunStatus::Running);
    assert_eq!(daemon.log_since(id, 0, 10).unwrap()[0].line, "from the cli");

    let other = daemon.create_run("shop", "check", Trigger::Api).unwrap();
    assert_eq!(cli.runs(None, 10).unwrap()[0].id, other);

    // Both append to one run at once: every line gets its own seq.
    let (cli, daemon) = (Arc::new(cli), Arc::new(daemon));
    let writers: Vec<_> = [cli.clone(), daemon.clone()]
        .into_iter()
        .map(|h| std::thread::spawn(move || (0..200).map(|i| h.append_log(id, &format!("{i}")).unwrap()).collect::<Vec<_>>()))
        .collect();
    let mut seqs: Vec<i64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=401).collect::<Vec<i64>>());
    assert_eq!(cli.log_since(id, 0, 1000).unwrap().len(), 401);
}

#[test]
fn runs_of_dead_processes_are_marked_interrupted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (h, path) = open_in(&dir);
    if own_start_time().is_none() {
        eprintln!("no /proc: recovery is disabled, nothing to test");
        return;
    }
    let mine = h.create_run("shop", "up", Trigger::Cli).unwrap();
    h.start_run(mine).unwrap();
    let done = finished(&h, "shop", "up", true);

    let mut exited = std::process::Command::new("true").spawn().unwrap();
    let exited_pid = exited.id();
    exited.wait().unwrap();
    let mut live = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let live_start = process_start_time(live.id()).unwrap();

    let never_existed = insert_active(&path, "shop", RunStatus::Running, 4_000_000, Some(1));
    let reaped = insert_active(&path, "shop", RunStatus::Queued, exited_pid, None);
    // Same pid as this process, but from an earlier process (pid 1 in a container).
    let earlier_self = insert_active(&path, "shop", RunStatus::Running, std::process::id(), Some(own_start_time().unwrap() - 1));
    let other_live = insert_active(&path, "shop", RunStatus::Running, live.id(), Some(live_start));
    // The live process's pid, but recorded by a process that had it before.
    let reused_pid = insert_active(&path, "shop", RunStatus::Running, live.id(), Some(live_start - 1));

    let reopened = History::open(&path).unwrap();
    for id in [never_existed, reaped, earlier_self, reused_pid] {
        let run = reopened.run(id).unwrap().unwrap().run;
        assert_eq!(run.status, RunStatus::Interrupted, "run {id}");
        let pid = run.owner_pid;
        assert_eq!(run.error, Some(format!("the process running it stopped (pid {pid})")));
    }
    assert_eq!(status_of(&reopened, mine), RunStatus::Running);
    assert_eq!(status_of(&reopened, other_live), RunStatus::Running);
    assert_eq!(status_of(&reopened, done), RunStatus::Succeeded);
    assert_eq!(reopened.recover_interrupted().unwrap(), 0);

    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(reopened.recover_interrupted().unwrap(), 1);
    assert_eq!(status_of(&reopened, other_live), RunStatus::Interrupted);
    assert_eq!(status_of(&reopened, mine), RunStatus::Running);
}

#[test]
fn prune_deletes_by_count_and_age_but_never_active_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (h, path) = open_in(&dir);
    let conn = raw(&path);
    let days_ago = |days: i64| (Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let set_time = |id: i64, column: &str, at: &str| {
        let sql = match column {
            "queued_at" => "UPDATE runs SET queued_at = ?2 WHERE id = ?1",
            _ => "UPDATE runs SET finished_at = ?2 WHERE id = ?1",
        };
        conn.execute(sql, params![id, at]).unwrap();
    };

    // Stack a: an old running run and five finished ones, the oldest with steps, checks, log.
    let running = h.create_run("a", "up", Trigger::Watch).unwrap();
    h.start_run(running).unwrap();
    set_time(running, "queued_at", &days_ago(100));
    let a: Vec<i64> = (0..5).map(|_| finished(&h, "a", "up", true)).collect();
    h.add_step(a[0], &StepRecord { name: "db".into(), status: "ready".into(), seconds: None, detail: None }).unwrap();
    h.add_check(a[0], &check("home", "passed", None)).unwrap();
    h.append_log(a[0], "x").unwrap();
    // Stack b: within the count, but one is too old.
    let b_old = finished(&h, "b", "up", true);
    set_time(b_old, "finished_at", &days_ago(40));
    let b_new = finished(&h, "b", "up", true);
    set_time(b_new, "finished_at", &days_ago(20));
    // Stack c: interrupted long ago, so no finished_at; its age is its queue time.
    let c = insert_active(&path, "c", RunStatus::Running, 4_000_000, None);
    h.recover_interrupted().unwrap();
    set_time(c, "queued_at", &days_ago(50));

    assert_eq!(h.prune(3, 30).unwrap(), 4);

    let left = |stack| {
        let mut ids: Vec<i64> = h.runs(Some(stack), 100).unwrap().iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(left("a"), vec![running, a[2], a[3], a[4]]);
    assert_eq!(left("b"), vec![b_new]);
    assert!(left("c").is_empty());
    for table in ["steps", "checks", "logs"] {
        let sql = match table {
            "steps" => "SELECT count(*) FROM steps WHERE run_id = ?1",
            "checks" => "SELECT count(*) FROM checks WHERE run_id = ?1",
            _ => "SELECT count(*) FROM logs WHERE run_id = ?1",
        };
        assert_eq!(count(&conn, sql, a[0]), 0, "{table} of a pruned run");
    }

    assert_eq!(h.prune(3, 30).unwrap(), 0);
    // Keeping nothing still keeps the running run.
    assert_eq!(h.prune(0, 0).unwrap(), 4);
    assert_eq!(left("a"), vec![running]);
}

#[test]
fn latest_checks_come_from_the_last_finished_run_with_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = open_in(&dir);
    assert!(h.latest_checks("shop").unwrap().is_empty());

    let old = finished(&h, "shop", "check", true);
    h.add_check(old, &check("home", "passed", Some(50.0))).unwrap();
    let verify = finished(&h, "shop", "verify", false);
    h.add_check(verify, &check("home", "failed", Some(900.0))).unwrap();
    h.add_check(verify, &check("login", "passed", Some(30.0))).unwrap();
    finished(&h, "shop", "up", true); // no checks
    let running = h.create_run("shop", "check", Trigger::Schedule).unwrap();
    h.start_run(running).unwrap();
    h.add_check(running, &check("partial", "passed", None)).unwrap();
    let other_stack = finished(&h, "other", "check", true);
    h.add_check(other_stack, &check("elsewhere", "passed", None)).unwrap();

    let names: Vec<String> = h.latest_checks("shop").unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["home", "login"]);
    assert_eq!(h.latest_checks("shop").unwrap()[0].p95_ms, Some(900.0));
}

#[test]
fn metrics_count_deployments_and_take_the_latest_values() {
    let dir = tempfile::tempdir().unwrap();
    let (h, path) = open_in(&dir);
    let empty = h.metrics("shop").unwrap();
    assert_eq!((empty.deployments, empty.success_rate()), (0, None));

    finished(&h, "shop", "up", true);
    finished(&h, "shop", "up", false);
    let rebuild = finished(&h, "shop", "rebuild", true);
    raw(&path).execute("UPDATE runs SET seconds = 42.5 WHERE id = ?1", params![rebuild]).unwrap();
    let verify = finished(&h, "shop", "verify", false);
    raw(&path).execute("UPDATE runs SET seconds = 7.25 WHERE id = ?1", params![verify]).unwrap();
    h.add_check(verify, &check("home", "failed", Some(120.0))).unwrap();
    // Not deployments: check and down runs, an interrupted and a running up, another stack.
    finished(&h, "shop", "check", false);
    finished(&h, "shop", "down", true);
    insert_active(&path, "shop", RunStatus::Running, 4_000_000, None);
    h.recover_interrupted().unwrap();
    let running = h.create_run("shop", "up", Trigger::Cli).unwrap();
    h.start_run(running).unwrap();
    finished(&h, "other", "up", false);
    let with_refresh = h.create_run("shop", "up", Trigger::Cli).unwrap();
    h.start_run(with_refresh).unwrap();
    h.finish_run(with_refresh, &RunOutcome { ok: true, error: None, snapshot: Some("miss".into()), refresh_seconds: Some(3.5) }).unwrap();
    finished(&h, "shop", "up", true); // later, without a refresh time

    let m = h.metrics("shop").unwrap();
    assert_eq!(m.stack, "shop");
    assert_eq!((m.deployments, m.deployments_succeeded), (6, 4));
    assert_eq!(m.success_rate(), Some(4.0 / 6.0));
    assert_eq!(m.last_rebuild_seconds, Some(7.25));
    assert_eq!(m.last_rebuild_succeeded, Some(false));
    assert_eq!(m.last_refresh_seconds, Some(3.5));
    assert_eq!(m.latest_checks, vec![check("home", "failed", Some(120.0))]);
    assert_eq!(m.runs_by_status, StatusCounts { queued: 0, running: 1, succeeded: 5, failed: 3, interrupted: 1, cancelled: 0 });
    assert_eq!(m.runs_by_status.pairs()[3], (RunStatus::Failed, 3));
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["runs_by_status"]["failed"], 3);
}

/// `deploy --swarm` and the up/rebuild of `daemon --swarm`, recorded as `deploy`, are
/// deployments, and each replaces the whole stack: a rebuild.
#[test]
fn swarm_deploys_count_as_deployments_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let (h, path) = open_in(&dir);
    finished(&h, "shop", "rebuild", true);
    let deploy = finished(&h, "shop", "deploy", false);
    raw(&path).execute("UPDATE runs SET seconds = 9.5 WHERE id = ?1", params![deploy]).unwrap();
    let m = h.metrics("shop").unwrap();
    assert_eq!((m.deployments, m.deployments_succeeded), (2, 1));
    assert_eq!((m.last_rebuild_seconds, m.last_rebuild_succeeded), (Some(9.5), Some(false)));
}

#[test]
fn success_rate_covers_the_latest_hundred_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = open_in(&dir);
    for _ in 0..5 {
        finished(&h, "shop", "up", false);
    }
    for _ in 0..100 {
        finished(&h, "shop", "rebuild", true);
    }
    let m = h.metrics("shop").unwrap();
    assert_eq!((m.deployments, m.deployments_succeeded), (100, 100));
    finished(&h, "shop", "verify", false);
    let m = h.metrics("shop").unwrap();
    assert_eq!((m.deployments, m.deployments_succeeded), (100, 99));
}

#[test]
fn state_dir_follows_the_environment() {
    let dir = |vars: &[(&str, &str)]| {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        state_dir_from(|name| vars.get(name).map(Into::into))
    };
    let all = [("STAGECTL_STATE_DIR", "/s"), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")];
    assert_eq!(dir(&all), PathBuf::from("/s"));
    assert_eq!(dir(&all[1..]), PathBuf::from("/x/stagectl"));
    assert_eq!(dir(&all[2..]), PathBuf::from("/h/.local/state/stagectl"));
    assert_eq!(dir(&[("STAGECTL_STATE_DIR", ""), ("XDG_STATE_HOME", "rel"), ("HOME", "/h")]), PathBuf::from("/h/.local/state/stagectl"));
    assert_eq!(dir(&[]), std::env::temp_dir().join("stagectl"));
}

#[test]
fn the_state_dir_and_the_database_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A state dir made earlier with the usual umask is narrowed too.
    std::fs::create_dir(dir.path().join("state")).unwrap();
    std::fs::set_permissions(dir.path().join("state"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (h, path) = open_in(&dir);
    h.create_run("s", "up", Trigger::Cli).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    for file in [path.clone(), path.with_extension("db-wal")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}
