//! Fixture loading, masking and the snapshot cache, against real PostgreSQL and Redis.

use crate::harness::*;

const DATA_STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app" }
ready = { exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "app"], timeout = "30s" }

[services.migrate]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
command = ["psql", "-h", "db", "-U", "postgres", "-d", "app", "-v", "ON_ERROR_STOP=1", "-q", "-f", "/schema.sql"]
volumes = ["./schema.sql:/schema.sql:ro"]

[services.cache]
image = "stagectl/redis:7"
ready = { tcp = 6379 }

[fixtures.db]
files = ["data/*.csv", "data/*.sql"]
mask = { "users.email" = "email", "users.name" = "name", "users.phone" = "phone", "orders.email" = "email", "users.country" = "fixed:XX" }
sensitive = ["users.email", "users.phone", "orders.email"]
seed = "test-seed"

[fixtures.cache]
loader = "redis"
files = ["cache/*.redis"]
"#;

const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS users (id bigserial PRIMARY KEY, email text, name text, phone text, country text, age int);\n\
CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, email text, total int);\n";

const USERS: &str = "email,name,phone,country,age\n\
alice@corp.example,Alice Archer,+31 20 555 0101,NL,34\n\
bob@corp.example,Bob Baker,,DE,51\n\
carol@corp.example,\"Carol, the Third\",+1 212 555 0199,US,27\n";

const ORDERS: &str = "email,total\nalice@corp.example,100\nbob@corp.example,250\nalice@corp.example,75\n";

fn data_stack(tag: &str) -> Stack {
    let s = Stack::new(tag, DATA_STACK);
    std::fs::write(s.path("schema.sql"), SCHEMA).unwrap();
    std::fs::create_dir_all(s.path("data")).unwrap();
    std::fs::create_dir_all(s.path("cache")).unwrap();
    std::fs::write(s.path("data/01_users.csv"), USERS).unwrap();
    std::fs::write(s.path("data/02_orders.csv"), ORDERS).unwrap();
    std::fs::write(s.path("data/03_extra.sql"), "INSERT INTO orders (email, total) VALUES (NULL, 1);\n").unwrap();
    std::fs::write(s.path("cache/warm.redis"), "SET greeting \"hello world\"\nRPUSH list a b c\n").unwrap();
    s
}

fn db_fixtures(report: &serde_json::Value) -> serde_json::Value {
    report["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap()["fixtures"].clone()
}

const DUMP: &str = "SELECT string_agg(concat_ws('|', id, email, name, phone, country, age), ';' ORDER BY id) FROM users";

#[test]
fn fixtures_load_masked_deterministic_and_join_consistent() {
    require_docker!();
    let stack = data_stack("fxmask");
    let first = stack.up_ok();
    let fx = db_fixtures(&first);
    assert_eq!(fx["snapshot"], "miss");
    assert_eq!(fx["rows"], 7, "3 users + 3 orders + 1 SQL insert: {fx}");
    let files: Vec<&str> = fx["files"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["data/01_users.csv", "data/02_orders.csv", "data/03_extra.sql"], "CSV patterns first, each sorted");

    let users = sql(&stack, "app", DUMP);
    for raw in ["alice@", "bob@", "carol@", "Alice", "Archer", "555 0101", "NL", "DE"] {
        assert!(!users.contains(raw), "raw value {raw:?} reached the database: {users}");
    }
    assert!(users.contains("@example.com") && users.contains("|XX|34"), "{users}");
    // An empty phone stays NULL rather than being masked into a fake number.
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM users WHERE phone IS NULL").trim(), "1");
    // Joins survive: alice's two orders still join to her (masked) user row.
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM orders o JOIN users u USING (email)").trim(), "3");
    assert_eq!(docker(&["exec", &format!("{}-cache", stack.name), "redis-cli", "lrange", "list", "0", "-1"]), "a\nb\nc\n");

    // The scanner agrees nothing sensitive is left unmasked...
    let out = stack.run(&["fixtures", "scan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // ...and catches a leak, without printing the leaked value.
    sql(&stack, "app", "INSERT INTO users (email) VALUES ('leaked.person@corp.example')");
    let out = stack.run(&["fixtures", "scan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("db: users.email (email, 4 values): LEAK: 1 of 4 values look unmasked"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("leaked.person"));

    // Determinism: a full reload (snapshot deleted) gives byte-identical masked data.
    // (Only this stack's snapshot: `snapshots prune --all` would hit parallel tests too.)
    let ours = stack.snapshot_images();
    assert_eq!(ours.lines().count(), 1);
    assert!(stack.run(&["down", "--volumes"]).status.success());
    docker(&["rmi", ours.trim()]);
    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(db_fixtures(&last_json(&out))["snapshot"], "miss");
    assert_eq!(sql(&stack, "app", DUMP), users, "same input and seed give the same masked output");
}

#[test]
fn a_rebuild_restores_the_snapshot_and_a_changed_fixture_reloads() {
    require_docker!();
    let stack = data_stack("fxsnap");
    let first = stack.up_ok();
    assert_eq!(db_fixtures(&first)["snapshot"], "miss");
    let before = sql(&stack, "app", DUMP);
    let orders = sql(&stack, "app", "SELECT string_agg(concat_ws('|', id, email, total), ';' ORDER BY id) FROM orders");

    let out = stack.run(&["--json", "rebuild"]);
    assert_eq!(out.status.code(), Some(0));
    let rebuilt = last_json(&out);
    let fx = db_fixtures(&rebuilt);
    assert_eq!(fx["snapshot"], "hit", "{fx}");
    // The migrate job's effect is in the snapshot: it is not run again.
    let migrate = rebuilt["services"].as_array().unwrap().iter().find(|s| s["service"] == "migrate").unwrap().clone();
    assert_eq!((migrate["outcome"].as_str(), migrate["action"]["action"].as_str()), (Some("completed"), Some("keep")), "{migrate}");
    assert!(!stack.container_ids().contains_key("migrate"));
    let status = stack.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "every service counts as ready");
    let rows = last_json(&status);
    let m = rows.as_array().unwrap().iter().find(|r| r["service"] == "migrate").unwrap().clone();
    assert_eq!(m["state"], "in snapshot");
    assert_eq!(sql(&stack, "app", DUMP), before, "restored data is identical");
    assert_eq!(sql(&stack, "app", "SELECT string_agg(concat_ws('|', id, email, total), ';' ORDER BY id) FROM orders"), orders);

    // A second `up` keeps everything, fixtures included.
    let again = stack.up_ok();
    assert_eq!(db_fixtures(&again)["snapshot"], "kept");
    assert_eq!(again["changed"], false);

    // Any changed input makes a new key: the new row appears.
    std::fs::write(stack.path("data/02_orders.csv"), format!("{ORDERS}carol@corp.example,999\n")).unwrap();
    let changed = stack.up_ok();
    assert_eq!(db_fixtures(&changed)["snapshot"], "miss");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM orders WHERE total = 999").trim(), "1");
    // A changed migration (a mounted file of a job the load waits for) changes the key too.
    std::fs::write(stack.path("schema.sql"), format!("{SCHEMA}CREATE TABLE IF NOT EXISTS audit (id int);\n")).unwrap();
    let migrated = stack.up_ok();
    assert_eq!(db_fixtures(&migrated)["snapshot"], "miss");
    assert_eq!(sql(&stack, "app", "SELECT to_regclass('audit') IS NOT NULL").trim(), "t");

    let out = stack.run(&["--json", "snapshots", "ls"]);
    let ours = last_json(&out).as_array().unwrap().iter().filter(|s| s["stack"] == stack.name.as_str()).count();
    assert_eq!(ours, 3, "one snapshot per distinct key");
    // Pruning is scoped to the manifest's stack (parallel tests' snapshots are untouched).
    let out = stack.run(&["snapshots", "prune", "--all"]);
    assert_eq!(stdout(&out).split(" (").next().unwrap_or(""), "removed 3 snapshots");
    let left = stack.snapshot_images();
    assert_eq!(left.trim(), "");
}

#[test]
fn a_broken_fixture_fails_naming_file_and_line_and_keeps_the_previous_snapshot() {
    require_docker!();
    let stack = data_stack("fxbroken");
    stack.up_ok();
    let before = stack.snapshot_images();
    assert_eq!(before.lines().count(), 1);

    // A malformed CSV row (an extra field on line 3).
    std::fs::write(stack.path("data/02_orders.csv"), "email,total\nalice@corp.example,100\nbob@corp.example,250,oops\n").unwrap();
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let report = last_json(&out);
    let db = report["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap().clone();
    assert_eq!(db["outcome"], "failed");
    assert_eq!(
        db["message"],
        "data/02_orders.csv:3: malformed CSV: row has 3 fields, the header has 2\n  = help: quote a value that contains a comma (\"a, b\"), or remove the extra fields"
    );
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM orders").trim(), "0", "the COPY failed as a whole");

    // A failing SQL statement.
    std::fs::write(stack.path("data/02_orders.csv"), ORDERS).unwrap();
    std::fs::write(
        stack.path("data/03_extra.sql"),
        "-- comment\nINSERT INTO orders (email, total) VALUES ('x', 1);\nINSERT INTO nowhere VALUES (1);\n",
    )
    .unwrap();
    let out = stack.run(&["up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("db FAILED: data/03_extra.sql:3: ERROR: relation \"nowhere\" does not exist"), "{}", stderr(&out));
    assert!(stdout(&out).contains("FAILED"));
    // Never ready, and the earlier good snapshot is still there; no snapshot of the bad load.
    let out = stack.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "a failed load is not ready: {}", stdout(&out));
    assert_eq!(stack.snapshot_images(), before);

    // Fixing the file restores the previous snapshot instantly.
    std::fs::write(stack.path("data/03_extra.sql"), "INSERT INTO orders (email, total) VALUES (NULL, 1);\n").unwrap();
    let fixed = stack.up_ok();
    assert_eq!(db_fixtures(&fixed)["snapshot"], "hit");
}

#[test]
fn a_deleted_snapshot_falls_back_to_a_full_load() {
    require_docker!();
    let stack = data_stack("fxgone");
    stack.up_ok();
    let expected = sql(&stack, "app", DUMP);
    let snapshot = docker(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("label=org.stagectl.stack={}", stack.name),
        "--filter",
        &snapshot_filter(),
    ]);
    let snapshot = snapshot.trim().to_string();
    assert!(snapshot.starts_with(&snapshot_tag_prefix("db")), "{snapshot}");
    assert!(stack.run(&["down", "--volumes"]).status.success());
    docker(&["rmi", &snapshot]);
    let report = stack.up_ok();
    assert_eq!(db_fixtures(&report)["snapshot"], "miss", "loaded from the files again");
    assert_eq!(sql(&stack, "app", DUMP), expected);
}

/// A stack for bad fixtures: `orders` loads as it is, `users` is masked.
const BAD_STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app" }
ready = { exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "app"], timeout = "30s" }

[services.migrate]
image = "stagectl/postgres:15"
job = true
depends_on = ["db"]
command = ["psql", "-h", "db", "-U", "postgres", "-d", "app", "-v", "ON_ERROR_STOP=1", "-q", "-f", "/schema.sql"]
volumes = ["./schema.sql:/schema.sql:ro"]

[fixtures.db]
files = [
    "data/*.csv",
    "data/*.sql",
]
mask = { "users.email" = "email" }
"#;

const BAD_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, email text, total int);\n\
CREATE TABLE IF NOT EXISTS users (id bigserial PRIMARY KEY, email text, name text, age int);\n";

fn bad_stack(tag: &str, files: &[(&str, &[u8])]) -> Stack {
    let s = Stack::new(tag, BAD_STACK);
    std::fs::write(s.path("schema.sql"), BAD_SCHEMA).unwrap();
    std::fs::create_dir_all(s.path("data")).unwrap();
    std::fs::write(s.path("data/99_check.sql"), "SELECT 1;\n").unwrap();
    for (name, text) in files {
        std::fs::write(s.path(&format!("data/{name}")), text).unwrap();
    }
    s
}

/// `stack.toml:LINE` of the first line of the manifest holding `text`, as stagectl names it.
fn manifest_at(stack: &Stack, text: &str) -> String {
    let line = BAD_STACK.lines().position(|l| l.contains(text)).expect("text in the manifest") + 1;
    format!("{}:{line}", stack.path("stack.toml").display())
}

/// `up` fails on `db` only because of its fixtures; the stack is not ready and nothing was
/// snapshotted. Returns the failure message.
fn load_fails(stack: &Stack) -> String {
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let report = last_json(&out);
    let db = report["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap().clone();
    assert_eq!(db["outcome"], "failed", "{db}");
    let status = stack.run(&["status"]);
    assert_eq!(status.status.code(), Some(1), "a failed load is not ready: {}", stdout(&status));
    let snapshots = stack.snapshot_images();
    assert_eq!(snapshots.trim(), "", "a failed load is never snapshotted");
    db["message"].as_str().unwrap().to_string()
}

#[test]
fn a_nul_byte_in_a_csv_is_named_with_its_line_and_column_and_loads_nothing() {
    require_docker!();
    // PostgreSQL said "extra data after last expected column" for this one...
    let stack = bad_stack("fxnul", &[("orders.csv", b"email,total\na@x,1\nb@x,2\0\nc@x,3\n")]);
    assert_eq!(
        load_fails(&stack),
        "data/orders.csv:3: NUL byte (0x00) in column \"total\" (field 2): PostgreSQL cannot store NUL in text, and COPY misreads the row around it\n  \
         = help: remove the NUL bytes (e.g. `tr -d '\\000' < orders.csv > fixed.csv`); a file full of them is probably UTF-16: convert it with `iconv -f UTF-16 -t UTF-8`"
    );
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM orders").trim(), "0", "the COPY failed as a whole");

    // ...and silently cut this value short at the NUL. A masked file is checked too.
    std::fs::write(stack.path("data/orders.csv"), "email,total\na@x,1\n").unwrap();
    std::fs::write(stack.path("data/users.csv"), b"email,name,age\nann@corp.example,Ann,30\nbob@corp.example,B\0ob,40\n").unwrap();
    let message = load_fails(&stack);
    assert!(message.starts_with("data/users.csv:3: NUL byte (0x00) in column \"name\" (field 2): "), "{message}");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM users").trim(), "0");
}

#[test]
fn a_quote_left_open_is_named_where_it_opens() {
    require_docker!();
    // Closed only on the next line: PostgreSQL said "missing data for column \"total\"" at line 4.
    let stack = bad_stack("fxquote", &[("orders.csv", b"email,total\na@x,1\n\"b@x,2\nc@x,3\"\nd@x,4\n")]);
    assert_eq!(
        load_fails(&stack),
        "data/orders.csv:3: malformed CSV: the quoted value opened on line 3 runs on to line 4, so lines 3-4 are read as one row of 1 field, \
         the header has 2\n  = help: close the quote at the end of the value; a quote that belongs to the value is written twice (\"\")"
    );
    // Never closed, opened inside a value: PostgreSQL said "unterminated CSV quoted field" at
    // line 5 of a 4-line file.
    std::fs::write(stack.path("data/orders.csv"), "email,total\na@x,1\nb@x,5\" screen\nc@x,3\n").unwrap();
    assert_eq!(
        load_fails(&stack),
        "data/orders.csv:3: unterminated quoted field: the quote opened in column \"total\" (field 2) on this line is never closed, \
         so lines 3-4, to the end of the file, would be read as one value\n  = help: a quote inside a value opens a quoted section in CSV: \
         quote the whole value and double the quote in it (5\" screen → \"5\"\" screen\")"
    );
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM orders").trim(), "0");
}

#[test]
fn a_csv_for_a_missing_table_names_the_file_the_manifest_line_and_where_the_table_is_made() {
    require_docker!();
    let stack = bad_stack(
        "fxnotable",
        &[
            ("01_orders.csv", b"email,total\na@x,1\n"),
            ("02_items.csv", b"name\nlamp\n"),
            ("03_schema.sql", b"CREATE TABLE items (name text);\n"),
        ],
    );
    // PostgreSQL said `relation "items" does not exist`, naming no line and no manifest entry.
    assert_eq!(
        load_fails(&stack),
        format!(
            "data/02_items.csv:1: table \"items\" does not exist: a CSV file loads into the table named after it (02_items.csv → items)\n  \
             = help: data/03_schema.sql creates it, but is loaded after this file (files load pattern by pattern, in the order of `files`, \
             each pattern's matches by name): list its pattern first, or create the table in a migration; this file is loaded by `data/*.csv` ({})",
            manifest_at(&stack, "\"data/*.csv\"")
        )
    );
    std::fs::remove_file(stack.path("data/03_schema.sql")).unwrap();
    std::fs::write(stack.path("data/03_more.sql"), "INSERT INTO orders (total) VALUES (2);\n").unwrap();
    let message = load_fails(&stack);
    let help = format!(
        "= help: create it in a migration or in a .sql fixture that sorts before this file, or name the file after an existing table; \
         this file is loaded by `data/*.csv` ({})",
        manifest_at(&stack, "\"data/*.csv\"")
    );
    assert!(message.ends_with(&help), "{message}");
}

#[test]
fn a_pattern_that_matches_nothing_names_its_manifest_line_and_what_is_there() {
    require_docker!();
    let stack = bad_stack("fxnomatch", &[("01_orders.csv", b"email,total\na@x,1\n"), ("02_users.csv", b"email\nann@corp.example\n")]);
    std::fs::remove_file(stack.path("data/99_check.sql")).unwrap();
    // Only .sql files were expected: "fixture pattern `data/*.sql` of service `db` matches no file".
    assert_eq!(
        load_fails(&stack),
        format!(
            "{}: fixture pattern `data/*.sql` of [fixtures.db] matches no file\n  = help: data/ holds 01_orders.csv, 02_users.csv",
            manifest_at(&stack, "\"data/*.sql\"")
        )
    );
    stack.write_manifest(&BAD_STACK.replace("\"data/*.csv\"", "\"data/*.cvs\""));
    let message = load_fails(&stack);
    let line = BAD_STACK.lines().position(|l| l.contains("\"data/*.csv\"")).unwrap() + 1;
    assert_eq!(
        message,
        format!(
            "{}:{line}: fixture pattern `data/*.cvs` of [fixtures.db] matches no file\n  = help: data/ holds 01_orders.csv, 02_users.csv; \
             did you mean `data/*.csv`?",
            stack.path("stack.toml").display()
        )
    );
}

#[test]
fn postgres_errors_on_a_csv_name_the_file_line_and_column() {
    require_docker!();
    // A header column the table does not have: PostgreSQL named no line.
    let stack = bad_stack("fxpgerr", &[("orders.csv", b"email,totl\na@x,1\n")]);
    assert_eq!(
        load_fails(&stack),
        "data/orders.csv:1: column \"totl\" of the header is not a column of table \"orders\"\n  = help: did you mean \"total\"? \
         the header names the columns to load: rename it to a column of the table, or add the column in a migration; \"orders\" has: id, email, total"
    );
    // A bad value in a row with a line break in a value: PostgreSQL names the row's last line.
    std::fs::write(stack.path("data/orders.csv"), "email,total\na@x,1\n\"b@x\nsecond line\",zz\nc@x,3\n").unwrap();
    assert_eq!(load_fails(&stack), "data/orders.csv:3: ERROR: invalid input syntax for type integer: \"zz\" (column \"total\")");
    // A masked file is re-encoded without its empty lines: the line is still the file's.
    std::fs::write(stack.path("data/orders.csv"), "email,total\na@x,1\n").unwrap();
    std::fs::write(stack.path("data/users.csv"), "email,name,age\n\nann@corp.example,Ann,30\n\nbob@corp.example,Bob,old\n").unwrap();
    assert_eq!(load_fails(&stack), "data/users.csv:5: ERROR: invalid input syntax for type integer: \"old\" (column \"age\")");
}

const BULK_STACK: &str = r#"
[stack]
name = "{stack}"

[services.db]
image = "stagectl/postgres:15"
env = { POSTGRES_DB = "app" }
ready = { exec = ["pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "app"], timeout = "30s" }

[fixtures.db]
files = ["data/*.sql", "data/*.csv"]
mask = { "users.email" = "email" }
"#;

const BULK_SCHEMA: &str = "CREATE TABLE countries (code text PRIMARY KEY, name text);\n\
INSERT INTO countries VALUES ('XX', 'seeded by the schema');\n\
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text, country text REFERENCES countries (code));\n\
CREATE INDEX users_email_idx ON users (email);\n\
CREATE INDEX users_name_idx ON users (name);\n\
COMMENT ON INDEX users_name_idx IS 'kept in place: it has a comment';\n\
CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE, total int CHECK (total > 0));\n\
CREATE INDEX orders_user_idx ON orders (user_id);\n\
CREATE UNIQUE INDEX orders_total_per_user ON orders (user_id, total);\n";

/// `pg_dump -s` of a database, without the per-dump `\restrict` key.
fn schema_dump(stack: &Stack, database: &str) -> String {
    let dump = docker(&["exec", &format!("{}-db", stack.name), "pg_dump", "-s", "-U", "postgres", database]);
    dump.lines().filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_bulk_load_gives_the_rows_and_schema_of_a_plain_copy_and_a_broken_key_is_still_named() {
    require_docker!();
    let stack = Stack::new("fxbulk", BULK_STACK);
    std::fs::create_dir_all(stack.path("data")).unwrap();
    std::fs::write(stack.path("data/00_schema.sql"), BULK_SCHEMA).unwrap();
    std::fs::write(stack.path("data/01_countries.csv"), "code,name\nNL,Netherlands\nDE,Germany\n").unwrap();
    std::fs::write(
        stack.path("data/02_users.csv"),
        "id,email,name,country\n1,a@corp.example,Ann,NL\n2,b@corp.example,Bob,DE\n3,c@corp.example,Cy,XX\n",
    )
    .unwrap();
    std::fs::write(stack.path("data/03_orders.csv"), "id,user_id,total\n1,1,10\n2,1,20\n3,2,5\n4,3,7\n").unwrap();
    let fx = db_fixtures(&stack.up_ok());
    assert_eq!(fx["rows"], 10, "the seed row, 2 countries, 3 users, 4 orders: {fx}");

    // Empty tables were bulk-loaded (truncated: a new relfilenode); the seeded one was not, and
    // keeps its row.
    let truncated = "SELECT string_agg(relname || '=' || (relfilenode <> oid), ',' ORDER BY relname) FROM pg_class \
                     WHERE relname IN ('countries', 'users', 'orders')";
    assert_eq!(sql(&stack, "app", truncated).trim(), "countries=false,orders=true,users=true");
    assert_eq!(sql(&stack, "app", "SELECT string_agg(code, ',' ORDER BY code) FROM countries").trim(), "DE,NL,XX");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id").trim(), "4");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM users WHERE email LIKE '%@corp.example'").trim(), "0", "masked");

    // The same schema as the schema file alone gives: indexes and keys rebuilt as they were.
    sql(&stack, "app", "CREATE DATABASE reference");
    sql(&stack, "reference", BULK_SCHEMA);
    let (loaded, reference) = (schema_dump(&stack, "app"), schema_dump(&stack, "reference"));
    assert!(loaded.contains("orders_user_id_fkey") && loaded.contains("kept in place"), "{loaded}");
    assert_eq!(loaded, reference);

    // A row breaking a foreign key: the bulk load rolls back, the plain COPY names the error.
    std::fs::write(stack.path("data/03_orders.csv"), "id,user_id,total\n1,1,10\n2,99,20\n").unwrap();
    let out = stack.run(&["--json", "up"]);
    assert_eq!(out.status.code(), Some(1));
    let report = last_json(&out);
    let db = report["services"].as_array().unwrap().iter().find(|s| s["service"] == "db").unwrap().clone();
    let message = db["message"].as_str().unwrap();
    assert!(
        message.starts_with("data/03_orders.csv") && message.contains("violates foreign key constraint \"orders_user_id_fkey\""),
        "{message}"
    );
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM orders").trim(), "0");
    assert_eq!(sql(&stack, "app", "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_user_id_fkey'").trim(), "1");
}
