use super::*;

fn rules(sql: &str) -> Vec<&'static str> {
    lint("m.sql", sql, &[]).into_iter().map(|f| f.rule).collect()
}

/// Rules found, with a lock timeout set so `missing-lock-timeout` stays out of the way.
fn rules_lt(sql: &str) -> Vec<&'static str> {
    rules(&format!("SET lock_timeout = '2s';\n{sql}"))
}

// --- adding-not-null-column --------------------------------------------------------------

#[test]
fn not_null_column_without_default_is_flagged() {
    assert_eq!(rules_lt("ALTER TABLE users ADD COLUMN age int NOT NULL;"), vec![ADDING_NOT_NULL_COLUMN]);
    assert_eq!(rules_lt("alter table users add age int not null;"), vec![ADDING_NOT_NULL_COLUMN]);
    assert_eq!(rules_lt("ALTER TABLE users ADD COLUMN IF NOT EXISTS age int NOT NULL;"), vec![ADDING_NOT_NULL_COLUMN]);
    assert_eq!(rules_lt("ALTER TABLE users ADD COLUMN age int DEFAULT NULL NOT NULL;"), vec![ADDING_NOT_NULL_COLUMN]);
    assert_eq!(rules_lt("ALTER TABLE users ADD COLUMN code text PRIMARY KEY;"), vec![ADDING_NOT_NULL_COLUMN]);
}

#[test]
fn not_null_column_with_default_or_nullable_is_fine() {
    assert!(rules_lt("ALTER TABLE users ADD COLUMN age int NOT NULL DEFAULT 0;").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD COLUMN age int DEFAULT 0 NOT NULL;").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD COLUMN age int;").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD COLUMN age int CHECK (age IS NOT NULL);").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD COLUMN id bigserial NOT NULL;").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD COLUMN n int NOT NULL GENERATED ALWAYS AS IDENTITY;").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD COLUMN note text DEFAULT 'NOT NULL';").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD CONSTRAINT c CHECK (age IS NOT NULL) NOT VALID;").is_empty());
    assert!(rules_lt("ALTER TABLE users ALTER COLUMN age SET NOT NULL;").is_empty());
}

#[test]
fn not_null_in_one_of_several_actions() {
    assert_eq!(rules_lt("ALTER TABLE users ADD COLUMN a int, ADD COLUMN b int NOT NULL;"), vec![ADDING_NOT_NULL_COLUMN]);
    assert!(rules_lt("ALTER TABLE users ADD COLUMN a int NOT NULL DEFAULT 1, ADD COLUMN b int;").is_empty());
}

// --- create-index-non-concurrently -------------------------------------------------------

#[test]
fn create_index_without_concurrently_is_flagged() {
    assert_eq!(rules_lt("CREATE INDEX users_email ON users (email);"), vec![CREATE_INDEX_NON_CONCURRENTLY]);
    assert_eq!(rules_lt("create unique index users_email on public.users using btree (email);"), vec![CREATE_INDEX_NON_CONCURRENTLY]);
    assert_eq!(rules_lt("CREATE INDEX ON users (email);"), vec![CREATE_INDEX_NON_CONCURRENTLY]);
    assert_eq!(rules_lt("CREATE INDEX IF NOT EXISTS i ON ONLY users (email);"), vec![CREATE_INDEX_NON_CONCURRENTLY]);
}

#[test]
fn create_index_concurrently_is_fine() {
    assert!(rules("CREATE INDEX CONCURRENTLY users_email ON users (email);").is_empty());
    assert!(rules("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);").is_empty());
    assert!(rules("create index concurrently on users (email);").is_empty());
}

#[test]
fn create_index_on_table_created_in_same_file_is_fine() {
    let sql = "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\nCREATE INDEX orders_user ON orders (user_id);";
    assert!(rules(sql).is_empty());
    let sql = "CREATE TABLE IF NOT EXISTS app.\"Orders\" (id int);\nCREATE INDEX o ON app.\"Orders\" (id);";
    assert!(rules(sql).is_empty());
    let sql = "CREATE TABLE app.orders (id int);\nCREATE INDEX o ON orders (id);";
    assert!(rules(sql).is_empty());
}

#[test]
fn create_index_on_table_created_later_or_other_table_is_flagged() {
    let sql = "SET lock_timeout = '2s';\nCREATE INDEX o ON orders (id);\nCREATE TABLE orders (id int);";
    assert_eq!(rules(sql), vec![CREATE_INDEX_NON_CONCURRENTLY]);
    let sql = "SET lock_timeout = '2s';\nCREATE TABLE orders (id int);\nCREATE INDEX u ON users (id);";
    assert_eq!(rules(sql), vec![CREATE_INDEX_NON_CONCURRENTLY]);
    let sql = "SET lock_timeout = '2s';\nCREATE TABLE a.orders (id int);\nCREATE INDEX u ON b.orders (id);";
    assert_eq!(rules(sql), vec![CREATE_INDEX_NON_CONCURRENTLY]);
    // Quoted names keep their case.
    let sql = "SET lock_timeout = '2s';\nCREATE TABLE \"Orders\" (id int);\nCREATE INDEX u ON orders (id);";
    assert_eq!(rules(sql), vec![CREATE_INDEX_NON_CONCURRENTLY]);
}

// --- changing-column-type ----------------------------------------------------------------

#[test]
fn changing_column_type_is_flagged() {
    assert_eq!(rules_lt("ALTER TABLE users ALTER COLUMN age TYPE bigint;"), vec![CHANGING_COLUMN_TYPE]);
    assert_eq!(rules_lt("ALTER TABLE users ALTER age SET DATA TYPE bigint USING age::bigint;"), vec![CHANGING_COLUMN_TYPE]);
    assert_eq!(rules_lt("ALTER TABLE users ALTER COLUMN type TYPE text;"), vec![CHANGING_COLUMN_TYPE]);
    assert_eq!(rules_lt("ALTER TABLE users ALTER COLUMN \"Age\" TYPE bigint;"), vec![CHANGING_COLUMN_TYPE]);
}

#[test]
fn other_alter_column_forms_are_fine() {
    assert!(rules_lt("ALTER TABLE users ALTER COLUMN age SET DEFAULT 0;").is_empty());
    assert!(rules_lt("ALTER TABLE users ALTER COLUMN age DROP DEFAULT;").is_empty());
    assert!(rules_lt("ALTER TABLE users ALTER COLUMN age SET STATISTICS 100;").is_empty());
    assert!(rules_lt("ALTER TABLE users ALTER CONSTRAINT fk DEFERRABLE;").is_empty());
}

// --- dropping-column ---------------------------------------------------------------------

#[test]
fn dropping_column_is_flagged() {
    assert_eq!(rules_lt("ALTER TABLE users DROP COLUMN age;"), vec![DROPPING_COLUMN]);
    assert_eq!(rules_lt("ALTER TABLE users DROP COLUMN IF EXISTS age CASCADE;"), vec![DROPPING_COLUMN]);
    assert_eq!(rules_lt("ALTER TABLE IF EXISTS ONLY users DROP age;"), vec![DROPPING_COLUMN]);
    // One finding per rule per statement.
    assert_eq!(rules_lt("ALTER TABLE users DROP COLUMN a, DROP COLUMN b;"), vec![DROPPING_COLUMN]);
}

#[test]
fn dropping_constraint_or_default_is_fine() {
    assert!(rules_lt("ALTER TABLE users DROP CONSTRAINT users_age_check;").is_empty());
    assert!(rules_lt("ALTER TABLE users ALTER COLUMN age DROP NOT NULL;").is_empty());
    assert!(rules_lt("ALTER TABLE users ADD COLUMN dropped boolean;").is_empty());
}

// --- dropping-table ----------------------------------------------------------------------

#[test]
fn dropping_table_is_flagged() {
    assert_eq!(rules_lt("DROP TABLE users;"), vec![DROPPING_TABLE]);
    assert_eq!(rules_lt("drop table if exists public.users, orders cascade;"), vec![DROPPING_TABLE]);
}

#[test]
fn dropping_other_things_is_fine() {
    assert!(rules("DROP INDEX CONCURRENTLY users_email;").is_empty());
    assert!(rules("DROP VIEW user_stats;").is_empty());
    assert!(rules("DROP FUNCTION drop_table();").is_empty());
    assert!(rules("SELECT 'DROP TABLE users';").is_empty());
}

#[test]
fn dropping_table_created_in_same_file_is_fine() {
    assert!(rules("CREATE TEMP TABLE scratch (id int);\nDROP TABLE scratch;").is_empty());
    assert_eq!(rules_lt("CREATE TABLE scratch (id int);\nDROP TABLE scratch, users;"), vec![DROPPING_TABLE]);
}

// --- renaming-column / renaming-table ----------------------------------------------------

#[test]
fn renaming_column_is_flagged() {
    assert_eq!(rules_lt("ALTER TABLE users RENAME COLUMN name TO full_name;"), vec![RENAMING_COLUMN]);
    assert_eq!(rules_lt("ALTER TABLE users RENAME name TO full_name;"), vec![RENAMING_COLUMN]);
}

#[test]
fn renaming_table_is_flagged() {
    assert_eq!(rules_lt("ALTER TABLE users RENAME TO accounts;"), vec![RENAMING_TABLE]);
    assert_eq!(rules_lt("ALTER TABLE IF EXISTS public.users RENAME TO accounts;"), vec![RENAMING_TABLE]);
}

#[test]
fn renaming_other_things_is_fine() {
    assert!(rules_lt("ALTER TABLE users RENAME CONSTRAINT a TO b;").is_empty());
    assert!(rules("ALTER INDEX users_email RENAME TO users_email_idx;").is_empty());
    assert!(rules("ALTER VIEW v RENAME TO w;").is_empty());
    // A table created in the file stays new after a rename.
    assert!(rules("CREATE TABLE t (id int);\nALTER TABLE t RENAME TO u;\nALTER TABLE u RENAME id TO uid;").is_empty());
}

#[test]
fn alter_table_on_new_table_is_fine() {
    let sql = "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN x int NOT NULL;\nALTER TABLE t RENAME COLUMN x TO y;\n\
               ALTER TABLE t ALTER COLUMN y TYPE bigint;\nALTER TABLE t DROP COLUMN y;\n\
               ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES users (id);";
    assert!(rules(sql).is_empty());
}

// --- adding-foreign-key-without-not-valid ------------------------------------------------

#[test]
fn foreign_key_without_not_valid_is_flagged() {
    assert_eq!(
        rules_lt("ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);"),
        vec![ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID]
    );
    assert_eq!(rules_lt("ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users;"), vec![ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID]);
    assert_eq!(rules_lt("ALTER TABLE orders ADD COLUMN user_id bigint REFERENCES users (id);"), vec![ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID]);
    assert_eq!(
        rules_lt("ALTER TABLE orders ADD COLUMN user_id bigint NOT NULL REFERENCES users (id);"),
        vec![ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID, ADDING_NOT_NULL_COLUMN]
    );
}

#[test]
fn foreign_key_with_not_valid_is_fine() {
    assert!(rules_lt("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;").is_empty());
    assert!(rules_lt("ALTER TABLE orders VALIDATE CONSTRAINT fk;").is_empty());
    assert!(rules_lt("ALTER TABLE orders ADD CONSTRAINT u UNIQUE (code);").is_empty());
    assert!(rules("CREATE TABLE orders (id int, user_id int REFERENCES users (id));").is_empty());
}

// --- missing-lock-timeout ----------------------------------------------------------------

#[test]
fn missing_lock_timeout_is_reported_once_at_first_locking_statement() {
    let sql = "SELECT 1;\n\nALTER TABLE users ADD COLUMN a int;\nALTER TABLE users ADD COLUMN b int;\nTRUNCATE users;";
    let f = lint("m.sql", sql, &[]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, MISSING_LOCK_TIMEOUT);
    assert_eq!(f[0].line, 3);
    assert_eq!(f[0].statement, "ALTER TABLE users ADD COLUMN a int");
}

#[test]
fn each_locking_statement_kind_needs_lock_timeout() {
    assert_eq!(rules("ALTER TABLE users ADD COLUMN a int;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("ALTER TABLE users VALIDATE CONSTRAINT fk;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("TRUNCATE TABLE ONLY users, orders;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("DROP TABLE users;"), vec![DROPPING_TABLE, MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("CREATE INDEX i ON users (a);"), vec![CREATE_INDEX_NON_CONCURRENTLY, MISSING_LOCK_TIMEOUT]);
}

#[test]
fn lock_timeout_set_earlier_is_fine() {
    assert!(rules("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN a int;").is_empty());
    assert!(rules("set local lock_timeout to 2000;\nTRUNCATE users;").is_empty());
    assert!(rules("BEGIN;\nSET SESSION lock_timeout = '1min';\nALTER TABLE users ADD COLUMN a int;\nCOMMIT;").is_empty());
}

#[test]
fn lock_timeout_set_later_or_disabled_is_flagged() {
    let f = lint("m.sql", "ALTER TABLE users ADD COLUMN a int;\nSET lock_timeout = '2s';", &[]);
    assert_eq!((f.len(), f[0].rule, f[0].line), (1, MISSING_LOCK_TIMEOUT, 1));
    assert_eq!(rules("SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN a int;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("SET lock_timeout = '0';\nALTER TABLE users ADD COLUMN a int;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("SET lock_timeout TO DEFAULT;\nALTER TABLE users ADD COLUMN a int;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("SET lock_timeout = '2s';\nRESET lock_timeout;\nALTER TABLE users ADD COLUMN a int;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("SET statement_timeout = '2s';\nALTER TABLE users ADD COLUMN a int;"), vec![MISSING_LOCK_TIMEOUT]);
    assert_eq!(rules("-- SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN a int;"), vec![MISSING_LOCK_TIMEOUT]);
}

#[test]
fn new_tables_and_harmless_statements_need_no_lock_timeout() {
    let sql = "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users (id));\n\
               CREATE INDEX orders_user ON orders (user_id);\nALTER TABLE orders ADD COLUMN note text;\n\
               TRUNCATE orders;\nINSERT INTO orders VALUES (1, 1);\nCREATE INDEX CONCURRENTLY users_x ON users (x);\n\
               CREATE VIEW v AS SELECT 1;\nUPDATE users SET x = 1;";
    assert!(rules(sql).is_empty(), "{:?}", rules(sql));
}

// --- comments, strings, dollar quotes ----------------------------------------------------

#[test]
fn keywords_in_comments_are_ignored() {
    assert!(rules("-- DROP TABLE users;\n/* ALTER TABLE users DROP COLUMN a; */\nSELECT 1;").is_empty());
    assert!(rules("SELECT 1 /* ; DROP TABLE users; */;").is_empty());
}

#[test]
fn keywords_in_strings_are_ignored() {
    assert!(rules("INSERT INTO audit (q) VALUES ('DROP TABLE users; ALTER TABLE users DROP COLUMN a;');").is_empty());
    assert!(rules("INSERT INTO audit (q) VALUES ('it''s; DROP TABLE users');").is_empty());
    assert!(rules("INSERT INTO audit (q) VALUES (E'\\'; DROP TABLE users; --');").is_empty());
    assert!(rules("COMMENT ON TABLE users IS 'do not DROP TABLE users;';").is_empty());
}

#[test]
fn keywords_in_function_bodies_are_ignored() {
    let sql = "CREATE OR REPLACE FUNCTION cleanup() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  DROP TABLE users;\n  \
               ALTER TABLE users DROP COLUMN a;\n  CREATE INDEX i ON users (a);\nEND;\n$$;\n\
               DO $do$\nBEGIN\n  EXECUTE 'DROP TABLE users';\n  DROP TABLE orders;\nEND\n$do$;";
    assert!(rules(sql).is_empty(), "{:?}", rules(sql));
}

#[test]
fn statement_after_function_body_is_still_checked() {
    let sql = "SET lock_timeout = '2s';\nCREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql;\n\nDROP TABLE users;";
    let f = lint("m.sql", sql, &[]);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].rule, f[0].line), (DROPPING_TABLE, 4));
}

#[test]
fn quoted_identifier_with_keywords_is_not_a_keyword() {
    assert!(rules_lt("ALTER TABLE users ADD COLUMN \"not null\" int;").is_empty());
    assert!(rules("SELECT \"DROP\" FROM \"TABLE\";").is_empty());
}

// --- findings ----------------------------------------------------------------------------

#[test]
fn finding_fields() {
    let sql = "SET lock_timeout = '2s';\n-- drop the legacy table\n\nDROP   TABLE\n  legacy  -- old\n  CASCADE;";
    let f = lint("migrations/0042_drop.sql", sql, &[]);
    assert_eq!(f.len(), 1);
    let f = &f[0];
    assert_eq!(f.rule, "dropping-table");
    assert_eq!(f.file, "migrations/0042_drop.sql");
    assert_eq!(f.line, 4);
    assert_eq!(f.statement, "DROP TABLE legacy CASCADE");
    assert!(f.why.contains("application version"));
    assert!(f.instead.contains("later migration"));
}

#[test]
fn statement_is_truncated_to_80_chars() {
    let cols: Vec<String> = (0..40).map(|k| format!("column_number_{k}")).collect();
    let sql = format!("SET lock_timeout = '1s'; ALTER TABLE users DROP COLUMN {};", cols.join(", DROP COLUMN "));
    let f = lint("m.sql", &sql, &[]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].statement.chars().count(), 80);
    assert!(f[0].statement.starts_with("ALTER TABLE users DROP COLUMN column_number_0, DROP COLUMN"));
    // Non-ASCII text is cut at a character boundary.
    let sql = format!("DROP TABLE \"{}\";", "é".repeat(100));
    assert_eq!(lint("m.sql", &sql, &[MISSING_LOCK_TIMEOUT])[0].statement.chars().count(), 80);
}

#[test]
fn findings_are_in_line_order_and_every_rule_has_text() {
    let sql = "ALTER TABLE a RENAME TO b;\nALTER TABLE c RENAME x TO y;\nDROP TABLE d;\n-- stagectl:allow dropping-table\n";
    let f = lint("m.sql", sql, &[]);
    let got: Vec<(usize, &str)> = f.iter().map(|f| (f.line, f.rule)).collect();
    assert_eq!(
        got,
        vec![(1, RENAMING_TABLE), (1, MISSING_LOCK_TIMEOUT), (2, RENAMING_COLUMN), (3, DROPPING_TABLE), (4, ALLOW_WITHOUT_REASON)]
    );
    for rule in RULES {
        let (why, instead) = explain(rule);
        assert!(!why.is_empty() && !instead.is_empty(), "{rule}");
    }
}

#[test]
fn findings_serialise_to_json() {
    let f = lint("m.sql", "DROP TABLE t;", &[MISSING_LOCK_TIMEOUT]);
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v[0]["rule"], "dropping-table");
    assert_eq!(v[0]["file"], "m.sql");
    assert_eq!(v[0]["line"], 1);
    assert_eq!(v[0]["statement"], "DROP TABLE t");
    assert!(v[0]["why"].is_string() && v[0]["instead"].is_string());
}

// --- allow-listing -----------------------------------------------------------------------

#[test]
fn manifest_allow_skips_rules() {
    let sql = "DROP TABLE users;";
    assert_eq!(rules(sql), vec![DROPPING_TABLE, MISSING_LOCK_TIMEOUT]);
    let f = lint("m.sql", sql, &["dropping-table"]);
    assert_eq!(f.iter().map(|f| f.rule).collect::<Vec<_>>(), vec![MISSING_LOCK_TIMEOUT]);
    assert!(lint("m.sql", sql, &["dropping-table", "missing-lock-timeout"]).is_empty());
    assert!(lint("m.sql", sql, &[" Dropping-Table ", "missing-lock-timeout"]).is_empty());
    // Other rules in the allow list do not hide this one.
    assert_eq!(lint("m.sql", sql, &["dropping-column"]).len(), 2);
}

#[test]
fn comment_allow_with_reason_skips_rule_for_whole_file() {
    let sql = "SET lock_timeout = '2s';\nDROP TABLE a;\n-- stagectl:allow dropping-table tables unused since v42\nDROP TABLE b;";
    assert!(rules(sql).is_empty());
    let sql = "/* stagectl:allow dropping-table,dropping-column cleanup after v42 */\nSET lock_timeout = '2s';\n\
               DROP TABLE a;\nALTER TABLE b DROP COLUMN c;\nALTER TABLE b RENAME TO d;";
    assert_eq!(rules(sql), vec![RENAMING_TABLE]);
    // Inside a statement works too.
    let sql = "SET lock_timeout = '2s';\nDROP TABLE a -- stagectl:allow dropping-table empty since v3\n;";
    assert!(rules(sql).is_empty());
}

#[test]
fn comment_allow_without_reason_is_reported_and_not_honoured() {
    let sql = "SET lock_timeout = '2s';\n\n-- stagectl:allow dropping-table\nDROP TABLE a;";
    let f = lint("m.sql", sql, &[]);
    let got: Vec<(usize, &str)> = f.iter().map(|f| (f.line, f.rule)).collect();
    assert_eq!(got, vec![(3, ALLOW_WITHOUT_REASON), (4, DROPPING_TABLE)]);
    assert_eq!(f[0].statement, "-- stagectl:allow dropping-table");
    // Punctuation alone is not a reason; a missing rule id is reported too.
    assert_eq!(rules("-- stagectl:allow dropping-table --\nSELECT 1;"), vec![ALLOW_WITHOUT_REASON]);
    assert_eq!(rules("-- stagectl:allow\nSELECT 1;"), vec![ALLOW_WITHOUT_REASON]);
    // The manifest can still skip it.
    assert!(lint("m.sql", "-- stagectl:allow\n", &[ALLOW_WITHOUT_REASON]).is_empty());
}

#[test]
fn allow_like_text_that_is_not_a_comment_directive_is_ignored() {
    assert_eq!(rules_lt("SELECT '-- stagectl:allow dropping-table reason';\nDROP TABLE a;"), vec![DROPPING_TABLE]);
    assert_eq!(rules_lt("-- stagectl:allowed dropping-table reason\nDROP TABLE a;"), vec![DROPPING_TABLE]);
    assert_eq!(rules_lt("-- see stagectl:allow dropping-table reason\nDROP TABLE a;"), vec![DROPPING_TABLE]);
    assert_eq!(rules_lt("-- stagectl:allow dropping-column wrong rule\nDROP TABLE a;"), vec![DROPPING_TABLE]);
}

#[test]
fn allow_directive_parsing() {
    assert_eq!(allow_directive("-- stagectl:allow dropping-table because"), Some(Ok(vec!["dropping-table".to_string()])));
    assert_eq!(allow_directive("--STAGECTL:ALLOW Dropping-Table because"), Some(Ok(vec!["dropping-table".to_string()])));
    assert_eq!(allow_directive("/* stagectl:allow a,b why not */"), Some(Ok(vec!["a".to_string(), "b".to_string()])));
    assert_eq!(allow_directive("-- stagectl:allow a"), Some(Err(())));
    assert_eq!(allow_directive("-- stagectl:allow"), Some(Err(())));
    assert_eq!(allow_directive("-- nothing to see"), None);
    assert_eq!(allow_directive("-- é"), None);
}
