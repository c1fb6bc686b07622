//! A pure linter for PostgreSQL migration files, in the spirit of squawk: no database, no I/O,
//! just the file's text in and findings out.
//!
//! The file is lexed once (comments, `'...'` strings with `''` escapes, `E'...'` strings with
//! backslash escapes, `"..."` identifiers, `$$...$$` / `$tag$...$tag$` bodies), split into
//! statements at top-level semicolons, and each statement is matched on its tokens, so keywords
//! inside comments, strings and function bodies never count.
//!
//! Tables created earlier in the same file are new: nothing reads them yet, so statements on them
//! (`CREATE INDEX`, `ALTER TABLE`, `DROP TABLE`, `TRUNCATE`) are not flagged by any rule.
//!
//! A rule is skipped for a file when the manifest lists it in `allow` or when the file has a
//! `-- stagectl:allow RULE_ID reason` comment (several rules may be joined with commas). Such a
//! comment without a reason is not honoured and yields an `allow-without-reason` finding.

use std::collections::HashSet;

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

/// Splits `sql` into statements at top-level semicolons. Each item is the 1-based line of the
/// statement's first token and its text (from its first token up to, not including, the `;`).
/// Comments between statements are dropped; comments inside a statement are kept.
pub fn split_statements(sql: &str) -> Vec<(usize, String)> {
    let lexed = lex(sql);
    statements(sql, &lexed.toks).into_iter().map(|s| (s.line, s.raw.to_string())).collect()
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

/// Every identifier and keyword outside comments and string literals: unquoted ones lowercased
/// (as PostgreSQL folds them), quoted ones as written. The lock probe intersects this with the
/// tables that exist to find the tables a migration touches.
pub fn identifiers(sql: &str) -> std::collections::BTreeSet<String> {
    lex(sql)
        .toks
        .into_iter()
        .filter_map(|t| match t.kind {
            Kind::Word(w) => Some(w.to_ascii_lowercase()),
            Kind::QIdent(q) => Some(q),
            _ => None,
        })
        .collect()
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
// Lexing

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Keyword or unquoted identifier, ASCII-uppercased.
    Word(String),
    /// `"quoted identifier"`, unescaped.
    QIdent(String),
    /// `'string'`, `E'string'`.
    Str,
    /// `$$body$$`, `$tag$body$tag$`.
    Dollar,
    Num,
    /// `$1`.
    Param,
    /// Any other single ASCII character (`;`, `(`, `,`, `.`, `=`...).
    Punct(u8),
}

#[derive(Debug, Clone)]
struct Tok<'a> {
    kind: Kind,
    text: &'a str,
    start: usize,
    end: usize,
}

struct Lexed<'a> {
    toks: Vec<Tok<'a>>,
    /// Byte ranges of comments, delimiters included.
    comments: Vec<std::ops::Range<usize>>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// End (exclusive) of a quoted token opened at `open`; `n` when unterminated.
fn scan_quoted(b: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut j = open + 1;
    while j < b.len() {
        if backslash_escapes && b[j] == b'\\' {
            j += 2;
        } else if b[j] == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
            } else {
                return j + 1;
            }
        } else {
            j += 1;
        }
    }
    b.len()
}

/// Length of the dollar-quote tag (`$$` or `$tag$`) starting at `i`, if any.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&b'$') {
        return Some(2);
    }
    let mut j = i + 1;
    if j < b.len() && is_ident_start(b[j]) {
        while j < b.len() && (is_ident_start(b[j]) || b[j].is_ascii_digit()) {
            j += 1;
        }
        if b.get(j) == Some(&b'$') {
            return Some(j + 1 - i);
        }
    }
    None
}

fn lex(src: &str) -> Lexed<'_> {
    let b = src.as_bytes();
    let n = b.len();
    let mut toks = Vec::new();
    let mut comments = Vec::new();
    let mut i = 0;
    while i < n {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            let end = src[i..].find('\n').map_or(n, |p| i + p);
            comments.push(i..end);
            i = end;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // Block comments nest in PostgreSQL.
            let mut depth = 1;
            let mut j = i + 2;
            while j < n && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            let end = j.min(n);
            comments.push(i..end);
            i = end;
            continue;
        }
        let start = i;
        let kind = match c {
            b'\'' => {
                i = scan_quoted(b, i, b'\'', false);
                Kind::Str
            }
            b'"' => {
                i = scan_quoted(b, i, b'"', false);
                let inner_end = if i > start + 1 && i <= n && b[i - 1] == b'"' { i - 1 } else { i };
                Kind::QIdent(src[start + 1..inner_end].replace("\"\"", "\""))
            }
            b'$' => match dollar_tag(b, i) {
                Some(len) => {
                    let tag = &src[i..i + len];
                    i = src[i + len..].find(tag).map_or(n, |p| i + len + p + len);
                    Kind::Dollar
                }
                None => {
                    i += 1;
                    while i < n && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    Kind::Param
                }
            },
            c if is_ident_start(c) => {
                let mut j = i + 1;
                while j < n && is_ident_char(b[j]) {
                    j += 1;
                }
                if j == i + 1 && (c == b'e' || c == b'E') && b.get(j) == Some(&b'\'') {
                    i = scan_quoted(b, j, b'\'', true).min(n);
                    Kind::Str
                } else {
                    i = j;
                    Kind::Word(src[start..j].to_ascii_uppercase())
                }
            }
            c if c.is_ascii_digit() => {
                while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                Kind::Num
            }
            _ => {
                i += 1;
                Kind::Punct(c)
            }
        };
        let i_end = i.min(n);
        i = i_end;
        toks.push(Tok { kind, text: &src[start..i_end], start, end: i_end });
    }
    Lexed { toks, comments }
}

/// Maps byte offsets to 1-based line numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

struct Stmt<'a> {
    line: usize,
    /// Source text from the first token to the last, comments included.
    raw: &'a str,
    /// Tokens joined by single spaces, comments removed.
    clean: String,
    toks: Vec<Tok<'a>>,
}

fn statements<'a>(src: &'a str, toks: &[Tok<'a>]) -> Vec<Stmt<'a>> {
    let lines = LineIndex::new(src);
    toks.split(|t| t.kind == Kind::Punct(b';'))
        .filter(|group| !group.is_empty())
        .map(|group| {
            let (first, last) = (&group[0], &group[group.len() - 1]);
            let mut clean = String::new();
            let mut prev_end = first.start;
            for t in group {
                if t.start > prev_end {
                    clean.push(' ');
                }
                clean.push_str(t.text);
                prev_end = t.end;
            }
            Stmt { line: lines.line(first.start), raw: &src[first.start..last.end], clean, toks: group.to_vec() }
        })
        .collect()
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

fn word<'t>(t: &'t Tok<'_>) -> Option<&'t str> {
    match &t.kind {
        Kind::Word(w) => Some(w),
        _ => None,
    }
}

fn is_kw(toks: &[Tok<'_>], i: usize, kw: &str) -> bool {
    toks.get(i).and_then(word) == Some(kw)
}

fn is_punct(toks: &[Tok<'_>], i: usize, p: u8) -> bool {
    toks.get(i).is_some_and(|t| t.kind == Kind::Punct(p))
}

/// Consumes the keywords `kws` at `*i` if they are all there.
fn eat(toks: &[Tok<'_>], i: &mut usize, kws: &[&str]) -> bool {
    if kws.iter().enumerate().all(|(k, kw)| is_kw(toks, *i + k, kw)) {
        *i += kws.len();
        true
    } else {
        false
    }
}

fn ident_part(t: &Tok<'_>) -> Option<String> {
    match &t.kind {
        Kind::Word(w) => Some(w.to_ascii_lowercase()),
        Kind::QIdent(s) => Some(s.clone()),
        _ => None,
    }
}

/// Consumes a possibly schema-qualified name at `*i`, normalised (unquoted parts lower-cased).
fn name_at(toks: &[Tok<'_>], i: &mut usize) -> Option<String> {
    let mut name = ident_part(toks.get(*i)?)?;
    *i += 1;
    while is_punct(toks, *i, b'.') {
        match toks.get(*i + 1).and_then(ident_part) {
            Some(part) => {
                name.push('.');
                name.push_str(&part);
                *i += 2;
            }
            None => break,
        }
    }
    Some(name)
}

/// Comma-separated table names from `*i` (each optionally preceded by ONLY and followed by `*`).
fn table_list(toks: &[Tok<'_>], mut i: usize) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        eat(toks, &mut i, &["ONLY"]);
        let Some(name) = name_at(toks, &mut i) else { break };
        names.push(name);
        if is_punct(toks, i, b'*') {
            i += 1;
        }
        if !is_punct(toks, i, b',') {
            break;
        }
        i += 1;
    }
    names
}

/// Splits at commas outside parentheses.
fn split_top_level<'s, 'a>(toks: &'s [Tok<'a>]) -> Vec<&'s [Tok<'a>]> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0usize, 0);
    for (k, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Punct(b'(') | Kind::Punct(b'[') => depth += 1,
            Kind::Punct(b')') | Kind::Punct(b']') => depth = depth.saturating_sub(1),
            Kind::Punct(b',') if depth == 0 => {
                parts.push(&toks[from..k]);
                from = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[from..]);
    parts
}

/// Indexes of the tokens outside parentheses.
fn top_level(toks: &[Tok<'_>]) -> Vec<usize> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Punct(b'(') | Kind::Punct(b'[') => depth += 1,
            Kind::Punct(b')') | Kind::Punct(b']') => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(k),
            _ => {}
        }
    }
    out
}

/// Whether the keyword sequence `kws` occurs outside parentheses.
fn has_seq(toks: &[Tok<'_>], kws: &[&str]) -> bool {
    let top = top_level(toks);
    top.windows(kws.len()).any(|w| w.iter().zip(kws).all(|(&k, kw)| is_kw(toks, k, kw)))
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
mod tests {
    use super::*;

    fn rules(sql: &str) -> Vec<&'static str> {
        lint("m.sql", sql, &[]).into_iter().map(|f| f.rule).collect()
    }

    /// Rules found, with a lock timeout set so `missing-lock-timeout` stays out of the way.
    fn rules_lt(sql: &str) -> Vec<&'static str> {
        rules(&format!("SET lock_timeout = '2s';\n{sql}"))
    }

    // --- split_statements -------------------------------------------------------------------

    #[test]
    fn splits_simple_statements_with_lines() {
        let s = split_statements("SELECT 1;\nSELECT 2;\n\n  SELECT\n 3;");
        assert_eq!(s, vec![(1, "SELECT 1".to_string()), (2, "SELECT 2".to_string()), (4, "SELECT\n 3".to_string())]);
    }

    #[test]
    fn split_keeps_last_statement_without_semicolon_and_skips_empty_ones() {
        let s = split_statements(";;\nSELECT 1;;\nSELECT 2");
        assert_eq!(s, vec![(2, "SELECT 1".to_string()), (3, "SELECT 2".to_string())]);
        assert!(split_statements("").is_empty());
        assert!(split_statements("  -- only a comment\n/* and another */\n").is_empty());
    }

    #[test]
    fn split_line_is_first_token_after_leading_comments() {
        let s = split_statements("-- header; with semicolon\n/* block;\n still; */\nDROP TABLE t;");
        assert_eq!(s, vec![(4, "DROP TABLE t".to_string())]);
    }

    #[test]
    fn split_ignores_semicolons_in_strings_and_identifiers() {
        let s = split_statements("INSERT INTO t VALUES ('a;b', 'it''s; ok');\nSELECT \"we;ird\" FROM t;");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1, "INSERT INTO t VALUES ('a;b', 'it''s; ok')");
        assert_eq!(s[1], (2, "SELECT \"we;ird\" FROM t".to_string()));
    }

    #[test]
    fn split_handles_escape_strings() {
        let s = split_statements("SELECT E'a\\'; b';\nSELECT 2;");
        assert_eq!(s, vec![(1, "SELECT E'a\\'; b'".to_string()), (2, "SELECT 2".to_string())]);
    }

    #[test]
    fn split_handles_dollar_quotes() {
        let sql = "CREATE FUNCTION f() RETURNS void AS $$\nBEGIN\n  DELETE FROM t;\nEND;\n$$ LANGUAGE plpgsql;\n\
                   DO $body$ BEGIN PERFORM 1; PERFORM $$x;$$; END $body$;\nSELECT $1;";
        let s = split_statements(sql);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].0, 1);
        assert!(s[0].1.ends_with("LANGUAGE plpgsql"));
        assert_eq!(s[1].0, 6);
        assert!(s[1].1.ends_with("END $body$"));
        assert_eq!(s[2], (7, "SELECT $1".to_string()));
    }

    #[test]
    fn split_handles_nested_block_comments() {
        let s = split_statements("/* outer /* inner; */ still comment; */ SELECT 1; SELECT 2;");
        assert_eq!(s, vec![(1, "SELECT 1".to_string()), (1, "SELECT 2".to_string())]);
    }

    #[test]
    fn split_keeps_comments_inside_a_statement() {
        let s = split_statements("SELECT 1 -- one; really\n + 2;");
        assert_eq!(s, vec![(1, "SELECT 1 -- one; really\n + 2".to_string())]);
    }

    #[test]
    fn split_survives_unterminated_tokens() {
        assert_eq!(split_statements("SELECT 'abc").len(), 1);
        assert_eq!(split_statements("SELECT \"abc").len(), 1);
        assert_eq!(split_statements("SELECT $$abc").len(), 1);
        assert_eq!(split_statements("SELECT 1 /* abc").len(), 1);
        assert_eq!(split_statements("SELECT E'abc\\").len(), 1);
    }

    #[test]
    fn split_handles_non_ascii() {
        let s = split_statements("SELECT 'héllo; wörld';\nCREATE TABLE ünïcode (x int);");
        assert_eq!(s, vec![(1, "SELECT 'héllo; wörld'".to_string()), (2, "CREATE TABLE ünïcode (x int)".to_string())]);
    }

    #[test]
    fn split_handles_crlf_line_numbers() {
        let s = split_statements("SELECT 1;\r\n\r\nSELECT 2;\r\n");
        assert_eq!(s, vec![(1, "SELECT 1".to_string()), (3, "SELECT 2".to_string())]);
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
        assert_eq!(
            rules_lt("ALTER TABLE orders ADD COLUMN user_id bigint REFERENCES users (id);"),
            vec![ADDING_FOREIGN_KEY_WITHOUT_NOT_VALID]
        );
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
}
