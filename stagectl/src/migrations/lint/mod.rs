//! A pure linter for PostgreSQL migration files, in the spirit of squawk: no database, no I/O,
//! just the file's text in and findings out.
//!
//! The file is split into statements by [`crate::sql`] and each statement is matched on its
//! tokens, so keywords inside comments, strings and function bodies never count.
//!
//! Tables created earlier in the same file are new: nothing reads them yet, so statements on them
//! (`CREATE INDEX`, `ALTER TABLE`, `DROP TABLE`, `TRUNCATE`) are not flagged by any rule.
//!
//! A rule is skipped for a file when the manifest lists it in `allow` or when the file has a
//! `-- stagectl:allow RULE_ID reason` comment (several rules may be joined with commas). Such a
//! comment without a reason is not honoured and yields an `allow-without-reason` finding.

use std::collections::HashSet;

use crate::sql::{
    eat, has_seq, ident_part, is_kw, is_punct, lex, name_at, split_top_level, statements, table_list, top_level, word, Kind, LineIndex, Tok,
};

/// One problem found in a migration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Rule id, one of [`RULES`].
    pub rule: &'static str,
    pub file: String,
    /// 1-based line where the statement (or the allow comment) starts.
    pub line: usize,
    /// First 80 characters of the statement, comments removed and whitespace squashed.
    pub statement: String,
    pub why: String,
    pub instead: String,
}

pub const ADDING_NOT_NULL_COLUMN: &str = "adding-not-null-column";
pub const CREATE_INDEX_NON_CONCURRENTLY: &str = "create-index-non-concurrently";
pub const CHANGING_COLUMN_TYPE: &str = "changing-column-type";
pub const DROPPING_COLUMN: &str = "dropping-column";
pub const DROPPING_TABLE: &str = "dropping-table";
pub const RENAMING_COLUMN: &str = "renaming-column";
pub const RENAMING_TABLE: &str = "renaming-table";
pub const ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID: &str = "adding-foreign-key-without-not-valid";
pub const MISSING_LOCK_TIMEOUT: &str = "missing-lock-timeout";
pub const ALLOW_WITHOUT_REASON: &str = "allow-without-reason";

/// Every rule id this linter can report, e.g. to validate a manifest's allow list.
pub const RULES: &[&str] = &[
    ADDING_NOT_NULL_COLUMN,
    CREATE_INDEX_NON_CONCURRENTLY,
    CHANGING_COLUMN_TYPE,
    DROPPING_COLUMN,
    DROPPING_TABLE,
    RENAMING_COLUMN,
    RENAMING_TABLE,
    ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID,
    MISSING_LOCK_TIMEOUT,
    ALLOW_WITHOUT_REASON,
];

/// Maximum length, in characters, of [`Finding::statement`].
const STATEMENT_CHARS: usize = 80;

/// `(why, instead)` of a rule.
fn explain(rule: &str) -> (&'static str, &'static str) {
    match rule {
        ADDING_NOT_NULL_COLUMN => (
            "adding a NOT NULL column without a DEFAULT fails as soon as the table has rows, and otherwise rewrites/validates the whole table under an ACCESS EXCLUSIVE lock that blocks all reads and writes",
            "add the column nullable, backfill it in batches, then ALTER COLUMN ... SET NOT NULL (on PostgreSQL 12+ first add and VALIDATE a CHECK (col IS NOT NULL) NOT VALID constraint so SET NOT NULL skips the full scan)",
        ),
        CREATE_INDEX_NON_CONCURRENTLY => (
            "CREATE INDEX without CONCURRENTLY locks the table against INSERT, UPDATE and DELETE for the whole index build",
            "use CREATE INDEX CONCURRENTLY, outside a transaction block (in a migration of its own)",
        ),
        CHANGING_COLUMN_TYPE => (
            "changing a column's type usually rewrites the whole table and its indexes under an ACCESS EXCLUSIVE lock that blocks all reads and writes",
            "add a new column with the new type, backfill it in batches while writing both, switch the code over, then drop the old column",
        ),
        DROPPING_COLUMN => (
            "the application version still running may read or write this column; its queries fail the moment the migration commits",
            "stop using the column in the code first and deploy that, then drop the column in a later migration",
        ),
        DROPPING_TABLE => (
            "the application version still running may use this table; its queries fail the moment the migration commits, and the data is gone",
            "stop using the table in the code first and deploy that, then drop the table in a later migration",
        ),
        RENAMING_COLUMN => (
            "the application version still running uses the old column name; its queries fail the moment the rename commits",
            "add the new column, dual-write and backfill, move reads to it, then remove the old column in a later migration",
        ),
        RENAMING_TABLE => (
            "the application version still running uses the old table name; its queries fail the moment the rename commits",
            "create the new table, dual-write and backfill, move reads to it, then remove the old table in a later migration",
        ),
        ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID => (
            "adding a foreign key without NOT VALID validates every existing row while holding SHARE ROW EXCLUSIVE locks on both tables, blocking writes to both",
            "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT ... in a separate statement",
        ),
        MISSING_LOCK_TIMEOUT => (
            "this statement takes a strong lock on an existing table with no lock_timeout set; if it waits behind a long query, every other query on the table queues behind it",
            "start the migration with SET lock_timeout = '2s'; (and retry the migration if it times out)",
        ),
        ALLOW_WITHOUT_REASON => (
            "a stagectl:allow comment must name a rule and give the reason it is safe here; without one the allow is ignored",
            "write -- stagectl:allow RULE_ID reason, e.g. -- stagectl:allow dropping-table orders_old unused since v42",
        ),
        _ => ("", ""),
    }
}

/// Lints one migration file. `allow` holds rule ids to skip (from the manifest).
/// Findings come in line order.
pub fn lint(file_name: &str, sql: &str, allow: &[&str]) -> Vec<Finding> {
    let lexed = lex(sql);
    let lines = LineIndex::new(sql);
    let finding = |rule: &'static str, line: usize, text: &str| {
        let (why, instead) = explain(rule);
        Finding { rule, file: file_name.to_string(), line, statement: squash(text), why: why.to_string(), instead: instead.to_string() }
    };

    let mut findings = Vec::new();
    let mut allowed: HashSet<String> = allow.iter().map(|a| a.trim().to_ascii_lowercase()).collect();
    for c in &lexed.comments {
        match allow_directive(&sql[c.clone()]) {
            Some(Ok(rules)) => allowed.extend(rules),
            Some(Err(())) => findings.push(finding(ALLOW_WITHOUT_REASON, lines.line(c.start), &sql[c.clone()])),
            None => {}
        }
    }

    let mut state = FileState::default();
    let mut lock_reported = false;
    for stmt in statements(sql, &lexed.toks) {
        let mut hits = Vec::new();
        let takes_lock = analyze(&stmt.toks, &mut state, &mut hits);
        if takes_lock && !state.lock_timeout && !lock_reported {
            hits.push(MISSING_LOCK_TIMEOUT);
            lock_reported = true;
        }
        let mut seen = HashSet::new();
        for rule in hits {
            if seen.insert(rule) {
                findings.push(finding(rule, stmt.line, &stmt.clean));
            }
        }
    }

    findings.retain(|f| !allowed.contains(f.rule));
    findings.sort_by_key(|f| f.line);
    findings
}

/// `Some(Ok(rules))` for a valid `stagectl:allow` comment, `Some(Err(()))` for one without a rule
/// or a reason, `None` for any other comment.
fn allow_directive(comment: &str) -> Option<Result<Vec<String>, ()>> {
    let body = if let Some(rest) = comment.strip_prefix("--") {
        rest
    } else {
        let rest = comment.strip_prefix("/*").unwrap_or(comment);
        rest.strip_suffix("*/").unwrap_or(rest)
    };
    let body = body.trim();
    const PREFIX: &str = "stagectl:allow";
    if body.len() < PREFIX.len() || !body.is_char_boundary(PREFIX.len()) || !body[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &body[PREFIX.len()..];
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    let rest = rest.trim_start();
    let (rules, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let rules: Vec<String> = rules.split(',').map(|r| r.trim().to_ascii_lowercase()).filter(|r| !r.is_empty()).collect();
    if rules.is_empty() || !reason.chars().any(char::is_alphanumeric) {
        return Some(Err(()));
    }
    Some(Ok(rules))
}

/// Whitespace squashed, truncated to [`STATEMENT_CHARS`] characters.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(STATEMENT_CHARS).collect()
}

// ---------------------------------------------------------------------------------------------
// Rules

#[derive(Default)]
struct FileState {
    /// Tables created earlier in the file (normalised names).
    new_tables: Vec<String>,
    /// A non-zero `lock_timeout` is in effect.
    lock_timeout: bool,
}

impl FileState {
    fn is_new(&self, table: &str) -> bool {
        self.new_tables.iter().any(|t| same_table(t, table))
    }
}

/// Same table, treating an unqualified name as matching any schema.
fn same_table(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let last = |s: &str| s.rsplit('.').next().unwrap_or(s).to_string();
    (!a.contains('.') || !b.contains('.')) && last(a) == last(b)
}

/// Runs the per-statement rules, pushing rule ids onto `hits`. Returns whether the statement
/// takes a strong lock on an existing table (for `missing-lock-timeout`).
fn analyze(toks: &[Tok<'_>], state: &mut FileState, hits: &mut Vec<&'static str>) -> bool {
    match toks.first().and_then(word) {
        Some("CREATE") => create(toks, state, hits),
        Some("ALTER") if is_kw(toks, 1, "TABLE") => alter_table(toks, state, hits),
        Some("DROP") if is_kw(toks, 1, "TABLE") => {
            let mut i = 2;
            eat(toks, &mut i, &["IF", "EXISTS"]);
            let names = table_list(toks, i);
            let existing = names.is_empty() || names.iter().any(|t| !state.is_new(t));
            if existing {
                hits.push(DROPPING_TABLE);
            }
            existing
        }
        Some("TRUNCATE") => {
            let mut i = 1;
            eat(toks, &mut i, &["TABLE"]);
            let names = table_list(toks, i);
            names.is_empty() || names.iter().any(|t| !state.is_new(t))
        }
        Some("SET") => {
            let mut i = 1;
            if !eat(toks, &mut i, &["SESSION"]) {
                eat(toks, &mut i, &["LOCAL"]);
            }
            if eat(toks, &mut i, &["LOCK_TIMEOUT"]) {
                if !eat(toks, &mut i, &["TO"]) && is_punct(toks, i, b'=') {
                    i += 1;
                }
                state.lock_timeout = toks.get(i).is_some_and(|t| !is_zero_timeout(t));
            }
            false
        }
        Some("RESET") => {
            if is_kw(toks, 1, "LOCK_TIMEOUT") || is_kw(toks, 1, "ALL") {
                state.lock_timeout = false;
            }
            false
        }
        _ => false,
    }
}

/// `0`, `'0'`, `'0ms'`, `DEFAULT`: no timeout.
fn is_zero_timeout(t: &Tok<'_>) -> bool {
    match &t.kind {
        Kind::Word(w) => w == "DEFAULT",
        Kind::Num | Kind::Str => {
            let v = t.text.trim_matches('\'').trim();
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            digits.parse::<f64>().is_ok_and(|x| x == 0.0)
        }
        _ => false,
    }
}

fn create(toks: &[Tok<'_>], state: &mut FileState, hits: &mut Vec<&'static str>) -> bool {
    let mut i = 1;
    while ["GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED"].iter().any(|kw| is_kw(toks, i, kw)) {
        i += 1;
    }
    if eat(toks, &mut i, &["TABLE"]) {
        eat(toks, &mut i, &["IF", "NOT", "EXISTS"]);
        if let Some(name) = name_at(toks, &mut i) {
            state.new_tables.push(name);
        }
        return false;
    }
    let mut i = 1;
    eat(toks, &mut i, &["UNIQUE"]);
    if !eat(toks, &mut i, &["INDEX"]) {
        return false;
    }
    let concurrently = eat(toks, &mut i, &["CONCURRENTLY"]);
    eat(toks, &mut i, &["IF", "NOT", "EXISTS"]);
    if !is_kw(toks, i, "ON") {
        name_at(toks, &mut i);
    }
    if !eat(toks, &mut i, &["ON"]) {
        return false;
    }
    eat(toks, &mut i, &["ONLY"]);
    let table = name_at(toks, &mut i);
    if concurrently || table.is_some_and(|t| state.is_new(&t)) {
        return false;
    }
    hits.push(CREATE_INDEX_NON_CONCURRENTLY);
    true
}

fn alter_table(toks: &[Tok<'_>], state: &mut FileState, hits: &mut Vec<&'static str>) -> bool {
    let mut i = 2;
    eat(toks, &mut i, &["IF", "EXISTS"]);
    eat(toks, &mut i, &["ONLY"]);
    let Some(table) = name_at(toks, &mut i) else { return true };
    if state.is_new(&table) {
        // A new table keeps being new under its new name.
        let mut j = i;
        if eat(toks, &mut j, &["RENAME", "TO"]) {
            if let Some(renamed) = name_at(toks, &mut j) {
                state.new_tables.push(renamed);
            }
        }
        return false;
    }
    if is_punct(toks, i, b'*') {
        i += 1;
    }
    for action in split_top_level(&toks[i..]) {
        match action.first().and_then(word) {
            Some("ADD") => add_action(action, hits),
            Some("ALTER") => {
                let mut j = 1;
                if is_kw(action, j, "CONSTRAINT") {
                    continue;
                }
                eat(action, &mut j, &["COLUMN"]);
                if action.get(j).and_then(ident_part).is_some() {
                    j += 1;
                }
                if eat(action, &mut j, &["TYPE"]) || eat(action, &mut j, &["SET", "DATA", "TYPE"]) {
                    hits.push(CHANGING_COLUMN_TYPE);
                }
            }
            Some("DROP") if !is_kw(action, 1, "CONSTRAINT") => hits.push(DROPPING_COLUMN),
            Some("RENAME") => {
                if is_kw(action, 1, "TO") {
                    hits.push(RENAMING_TABLE);
                } else if !is_kw(action, 1, "CONSTRAINT") {
                    hits.push(RENAMING_COLUMN);
                }
            }
            _ => {}
        }
    }
    true
}

/// `ADD [COLUMN] ...` or `ADD [CONSTRAINT name] table_constraint` of an `ALTER TABLE`.
fn add_action(action: &[Tok<'_>], hits: &mut Vec<&'static str>) {
    let explicit_column = is_kw(action, 1, "COLUMN");
    let next = action.get(if explicit_column { 2 } else { 1 }).and_then(word);
    let constraint = !explicit_column && matches!(next, Some("CONSTRAINT" | "PRIMARY" | "UNIQUE" | "CHECK" | "FOREIGN" | "EXCLUDE"));
    let not_valid = has_seq(action, &["NOT", "VALID"]);
    if constraint {
        if has_seq(action, &["FOREIGN", "KEY"]) && !not_valid {
            hits.push(ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID);
        }
        return;
    }
    if has_seq(action, &["REFERENCES"]) && !not_valid {
        hits.push(ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID);
    }
    let not_null = has_seq(action, &["NOT", "NULL"]) || has_seq(action, &["PRIMARY", "KEY"]);
    let top = top_level(action);
    let default = top.iter().any(|&k| is_kw(action, k, "DEFAULT") && !is_kw(action, k + 1, "NULL"));
    let generated = has_seq(action, &["GENERATED"]);
    let serial =
        top.iter().any(|&k| ["SERIAL", "BIGSERIAL", "SMALLSERIAL", "SERIAL2", "SERIAL4", "SERIAL8"].iter().any(|s| is_kw(action, k, s)));
    if not_null && !(default || generated || serial) {
        hits.push(ADDING_NOT_NULL_COLUMN);
    }
}

#[cfg(test)]
mod tests;
