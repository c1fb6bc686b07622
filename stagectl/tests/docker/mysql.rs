//! MariaDB as a data service: the `mysql` readiness probe, the mysql loader (SQL and masked
//! CSV), `fixtures scan`, and snapshots through the generic stop-commit-start path.

use crate::harness::*;

const MARIADB_STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/mariadb:10.11"
env = { MARIADB_DATABASE = "app", MARIADB_USER = "app", MARIADB_PASSWORD = "app-pw", MARIADB_ROOT_PASSWORD = "root-pw" }
ready = { mysql = 3306, timeout = "60s" }

[fixtures.db]
loader = "mysql"
files = ["data/*.sql", "data/*.csv"]
mask = { "users.email" = "email" }
sensitive = ["users.email"]
seed = "mysql-test-seed"
"#;

const SCHEMA: &str = "-- schema\n\
CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200), name VARCHAR(200), age INT) ENGINE=InnoDB;\n\
CREATE TABLE pages (id INT PRIMARY KEY, title VARCHAR(200)) ENGINE=InnoDB;\n\
INSERT INTO pages VALUES (1, 'Main Page'), (2, 'Sandbox');\n";

const USERS: &str = "id,email,name,age\n\
1,alice@corp.example,\"Archer, Alice\",34\n\
2,bob@corp.example,O'Brien,\n\
3,carol@corp.example,\"Carol \"\"C\"\" Third\",27\n";

fn mariadb_stack(tag: &str) -> Stack {
    let s = Stack::new(tag, MARIADB_STACK);
    std::fs::create_dir_all(s.path("data")).unwrap();
    std::fs::write(s.path("data/01_schema.sql"), SCHEMA).unwrap();
    std::fs::write(s.path("data/02_users.csv"), USERS).unwrap();
    s
}

/// Runs SQL in the stack's `db` (root over the socket) and returns the client's batch output.
fn mysql(stack: &Stack, query: &str) -> String {
    docker(&["exec", &format!("{}-db", stack.name), "mariadb", "--batch", "--skip-column-names", "app", "-e", query])
}

fn db(report: &serde_json::Value) -> serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap().clone()
}

const DUMP: &str = "SELECT CONCAT_WS('|', id, email, name, IFNULL(age, 'NULL')) FROM users ORDER BY id";

#[test]
fn mariadb_loads_sql_and_masked_csv_is_probed_natively_and_restores_from_its_snapshot() {
    require_docker!();
    let stack = mariadb_stack("mysqlfx");
    let first = stack.up_ok();
    let d = db(&first);
    assert_eq!(d["outcome"], "ready", "{d}");
    assert_eq!(d["fixtures"]["snapshot"], "miss", "{d}");
    assert_eq!(d["fixtures"]["rows"], 3, "the 3 CSV rows: {d}");

    let users = mysql(&stack, DUMP);
    assert_eq!(users.lines().count(), 3, "{users}");
    for raw in ["alice@", "bob@", "carol@", "corp.example"] {
        assert!(!users.contains(raw), "raw value {raw:?} reached the database: {users}");
    }
    assert!(users.lines().all(|l| l.contains("@example.com")), "{users}");
    // Unmasked columns arrive as written: quotes, commas, an apostrophe; an empty field is NULL.
    assert!(users.contains("|Archer, Alice|34") && users.contains("|O'Brien|NULL") && users.contains("|Carol \"C\" Third|27"), "{users}");
    assert_eq!(mysql(&stack, "SELECT title FROM pages WHERE id = 1").trim(), "Main Page");
    // The users and database of the image's env exist (the app user over TCP, with its password).
    let as_app = docker(&[
        "exec",
        &format!("{}-db", stack.name),
        "mariadb",
        "-h127.0.0.1",
        "-uapp",
        "-papp-pw",
        "--batch",
        "--skip-column-names",
        "app",
        "-e",
        "SELECT COUNT(*) FROM users",
    ]);
    assert_eq!(as_app.trim(), "3");

    // `fixtures scan` reads the column through the mysql client and finds nothing unmasked...
    let out = stack.run(&["fixtures", "scan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // ...and catches a leak without printing it.
    mysql(&stack, "INSERT INTO users (id, email) VALUES (9, 'leaked.person@corp.example')");
    let out = stack.run(&["fixtures", "scan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("users.email (email, 4 values): LEAK: 1 of 4"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("leaked.person"));

    // The password never shows in what stagectl printed or committed.
    let snapshot = stack.snapshot_images();
    assert_eq!(snapshot.lines().count(), 1, "one snapshot taken");

    // A rebuild starts from the snapshot (taken after a clean shutdown): the rows are back,
    // without the leaked one, and the server answers the probe.
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    let rebuilt = last_json(&out);
    let d = db(&rebuilt);
    assert_eq!((d["outcome"].as_str(), d["fixtures"]["snapshot"].as_str()), (Some("ready"), Some("hit")), "{d}");
    assert_eq!(mysql(&stack, DUMP), users, "restored data is identical");
    let out = stack.run(&["fixtures", "scan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // A changed fixture file is named as the reason to reload, and its new row arrives.
    std::fs::write(stack.path("data/02_users.csv"), format!("{USERS}4,dave@corp.example,Dave,40\n")).unwrap();
    let changed = stack.up_ok();
    let d = db(&changed);
    assert_eq!(d["action"]["reason"], "data/02_users.csv changed → reloading db", "{d}");
    assert_eq!(d["fixtures"]["snapshot"], "miss");
    assert_eq!(mysql(&stack, "SELECT COUNT(*) FROM users").trim(), "4");

    assert!(stack.run(&["down", "--volumes"]).status.success());
    assert_eq!(stack.owned_resources(), (0, 0, 0));
}

#[test]
fn a_mariadb_sql_error_names_the_fixture_file_and_line() {
    require_docker!();
    let stack = mariadb_stack("mysqlerr");
    std::fs::write(
        stack.path("data/03_bad.sql"),
        "-- one good statement\nINSERT INTO pages VALUES (3, 'ok');\nINSERT INTO pagez VALUES (4, 'x');\n",
    )
    .unwrap();
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let d = db(&last_json(&out));
    assert_eq!(d["outcome"], "failed");
    let message = d["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("data/03_bad.sql:3: ERROR 1146: Table 'app.pagez' doesn't exist"), "{message}");

    // A CSV value the column cannot hold names the CSV line (strict mode, not a warning).
    std::fs::remove_file(stack.path("data/03_bad.sql")).unwrap();
    std::fs::write(stack.path("data/02_users.csv"), "id,email,name,age\n1,a@corp.example,A,1\n2,b@corp.example,B,old\n").unwrap();
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let message = db(&last_json(&out))["message"].as_str().unwrap_or_default().to_string();
    assert!(message.starts_with("data/02_users.csv:3: ERROR 1366: Incorrect integer value: 'old'"), "{message}");
    assert_eq!(mysql(&stack, "SELECT COUNT(*) FROM users").trim(), "0", "the file's rows were rolled back as a whole");

    // A malformed row is found on the host, at its line; nothing of the file is committed,
    // not even the INSERT batches already sent before it (1000 rows each).
    let mut csv = String::from("id,email,name,age\n");
    for i in 1..=1500 {
        csv.push_str(&format!("{i},u{i}@corp.example,U{i},{}\n", i % 90));
    }
    csv.push_str("1501,b@corp.example,B,2,extra\n");
    std::fs::write(stack.path("data/02_users.csv"), csv).unwrap();
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let message = db(&last_json(&out))["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(message, "data/02_users.csv:1502: malformed CSV: row has 5 fields, the header has 4");
    assert_eq!(mysql(&stack, "SELECT COUNT(*) FROM users").trim(), "0");
}

#[test]
fn the_mysql_loader_logs_in_with_a_secret_from_the_container_env_that_shows_nowhere() {
    require_docker!();
    let stack = Stack::new(
        "mysqlsecret",
        r#"
[stack]
name = "{stack}"
[services.db]
image = "stagectl/mariadb:10.11"
env = { MARIADB_DATABASE = "app", MARIADB_USER = "app", MARIADB_PASSWORD = "${secret:app_pw}", MARIADB_ROOT_PASSWORD = "${secret:root_pw}" }
ready = { mysql = 3306, timeout = "60s" }
[fixtures.db]
loader = "mysql"
user = "app"
files = ["data/*.sql", "data/*.csv"]
mask = { "users.email" = "email" }
"#,
    );
    std::fs::create_dir_all(stack.path("data")).unwrap();
    std::fs::write(stack.path("data/01_schema.sql"), SCHEMA).unwrap();
    std::fs::write(stack.path("data/02_users.csv"), USERS).unwrap();
    let (app_pw, root_pw) = ("canary-app-Hq7", "canary-root-Xw2");
    let secrets = [("STAGECTL_SECRET_app_pw", app_pw), ("STAGECTL_SECRET_root_pw", root_pw)];
    // Loaded as `app`: only possible with its password, which the client read in the container.
    let out = stack.run_env(&["--json", "up"], &secrets);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(db(&last_json(&out))["fixtures"]["rows"], 3);
    let up_printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!up_printed.contains(app_pw) && !up_printed.contains(root_pw));
    let out = stack.run_env(&["fixtures", "scan"], &secrets);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!printed.contains(app_pw) && !printed.contains(root_pw));
    let images =
        docker(&["images", "--filter", &format!("label=org.stagectl.stack={}", stack.name), "--format", "{{.Repository}}:{{.Tag}}"]);
    let snapshots: Vec<&str> = images.lines().filter(|l| l.starts_with(SNAPSHOT_REPOSITORY)).collect();
    assert_eq!(snapshots.len(), 1, "{images}");
    let config = docker(&["image", "inspect", snapshots[0]]);
    assert!(!config.contains(app_pw) && !config.contains(root_pw), "the snapshot keeps a secret: {config}");
    // Restored from the snapshot, with the secrets from the manifest again.
    let out = stack.run_env(&["--json", "rebuild"], &secrets);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(db(&last_json(&out))["fixtures"]["snapshot"], "hit");
}
