//! What psql printed about a failed statement, taken apart: the message, PostgreSQL's detail
//! and hint, and where it happened (`psql:<stdin>:N:` for a script, `CONTEXT: COPY t, line N,
//! column c` for a COPY). Pure, so the mapping to a fixture's file and line is tested without a
//! server.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PsqlFailure {
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The message, whitespace squashed.
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The script line psql names (`psql:<stdin>:7: ERROR: ...`).
    pub script_line: Option<u64>,
    /// The line of the COPY input PostgreSQL names (`CONTEXT: COPY t, line 3...`).
    pub copy_line: Option<u64>,
    /// The column of the COPY input it names (`..., column price: "abc"`).
    pub copy_column: Option<String>,
}

impl PsqlFailure {
    /// `ERROR: message`.
    pub fn render_message(&self) -> String {
        format!("{}: {}", self.severity, self.message)
    }

    /// PostgreSQL's detail and hint, each on its own line, or nothing.
    pub fn render_notes(&self) -> String {
        let note = |label: &str, text: &Option<String>| text.as_ref().map(|t| format!("\n  {label}: {t}")).unwrap_or_default();
        format!("{}{}", note("detail", &self.detail), note("hint", &self.hint))
    }
}

/// The first error psql reports in `out`, if it reports one in PostgreSQL's format.
pub fn parse(out: &str) -> Option<PsqlFailure> {
    let mut lines = out.lines().skip_while(|l| !is_error_line(l));
    let first = lines.next()?;
    let mut f = PsqlFailure::default();
    let mut rest = first.trim();
    if let Some(after) = rest.strip_prefix("psql:") {
        // `psql:<stdin>:7: ERROR:  ...`
        let mut parts = after.splitn(3, ':');
        let (_source, line, tail) = (parts.next(), parts.next(), parts.next());
        f.script_line = line.and_then(|l| l.trim().parse().ok());
        rest = tail.unwrap_or("").trim();
    }
    let (severity, message) = rest.split_once(':')?;
    f.severity = severity.trim().to_string();
    f.message = squash(message);
    for line in lines {
        let line = line.trim();
        if is_error_line(line) {
            break;
        }
        if let Some(d) = line.strip_prefix("DETAIL:") {
            f.detail.get_or_insert_with(|| squash(d));
        } else if let Some(h) = line.strip_prefix("HINT:") {
            f.hint.get_or_insert_with(|| squash(h));
        } else if let Some(c) = line.strip_prefix("CONTEXT:") {
            if let Some((copy_line, column)) = copy_context(c.trim()) {
                f.copy_line.get_or_insert(copy_line);
                if f.copy_column.is_none() {
                    f.copy_column = column;
                }
            }
        }
    }
    Some(f)
}

fn is_error_line(l: &str) -> bool {
    let l = l.trim_start();
    let l = match l.strip_prefix("psql:") {
        // `psql:<stdin>:7: ERROR: ...`
        Some(after) => after.splitn(3, ':').nth(2).unwrap_or("").trim_start(),
        None => l,
    };
    ["ERROR:", "FATAL:", "PANIC:"].iter().any(|s| l.starts_with(s))
}

/// `COPY orders, line 4, column total: "x"` → (4, Some("total")).
fn copy_context(c: &str) -> Option<(u64, Option<String>)> {
    let rest = c.strip_prefix("COPY ")?;
    let (_, after) = rest.split_once(", line ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let line = digits.parse().ok()?;
    let column = after[digits.len()..].strip_prefix(", column ").map(|c| match c.split_once(": ") {
        Some((name, _)) => name.to_string(),
        None => c.trim_end_matches(':').to_string(),
    });
    Some((line, column))
}

/// `relation "nope" does not exist` → `nope`.
pub fn missing_relation(message: &str) -> Option<&str> {
    message.strip_prefix("relation \"")?.strip_suffix("\" does not exist")
}

/// `column "totl" of relation "orders" does not exist` → (`totl`, `orders`).
pub fn missing_column(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("column \"")?.strip_suffix("\" does not exist")?;
    rest.split_once("\" of relation \"")
}

/// Whether SQL text creates table `table` (`CREATE [UNLOGGED] TABLE [IF NOT EXISTS]
/// [schema.]table`), judged on words only: good enough for a hint, never for a decision.
pub fn creates_table(sql: &str, table: &str) -> bool {
    let lower = sql.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| c.is_whitespace() || c == '(' || c == ';').filter(|w| !w.is_empty()).collect();
    let want = table.to_lowercase();
    words.windows(2).enumerate().any(|(i, w)| {
        if w != ["create", "table"] && !(w[0] == "create" && ["unlogged", "temp", "temporary"].contains(&w[1])) {
            return false;
        }
        let mut rest = words[i + 1..].iter().skip_while(|w| **w != "table").skip(1);
        let mut name = rest.next().copied().unwrap_or("");
        if name == "if" {
            name = rest.nth(2).copied().unwrap_or("");
        }
        let name = name.rsplit('.').next().unwrap_or("").trim_matches('"');
        name == want
    })
}

pub fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_error_gives_its_line_and_column() {
        let f =
            parse("ERROR:  invalid input syntax for type integer: \"abc\"\nCONTEXT:  COPY products, line 3, column price_cents: \"abc\"\n")
                .unwrap();
        assert_eq!(f.severity, "ERROR");
        assert_eq!(f.message, "invalid input syntax for type integer: \"abc\"");
        assert_eq!((f.copy_line, f.copy_column.as_deref(), f.script_line), (Some(3), Some("price_cents"), None));
        let f = parse(
            "ERROR:  duplicate key value violates unique constraint \"users_pkey\"\nDETAIL:  Key (id)=(1) already exists.\nCONTEXT:  COPY users, line 4\n",
        )
        .unwrap();
        assert_eq!((f.copy_line, f.copy_column), (Some(4), None));
        assert_eq!(f.detail.as_deref(), Some("Key (id)=(1) already exists."));
        let f = parse("ERROR:  missing data for column \"total\"\nCONTEXT:  COPY orders, line 3: \"\"\n").unwrap();
        assert_eq!((f.copy_line, f.copy_column), (Some(3), None));
    }

    #[test]
    fn a_script_error_gives_its_line_and_hint() {
        let out = "INSERT 0 1\npsql:<stdin>:7: ERROR:  relation \"nope\" does not exist\nLINE 1: insert into nope\n                    ^\n";
        let f = parse(out).unwrap();
        assert_eq!((f.script_line, f.message.as_str()), (Some(7), "relation \"nope\" does not exist"));
        let out = "psql:<stdin>:2: ERROR:  column \"nme\" does not exist\nLINE 1: select nme from t;\nHINT:  Perhaps you meant to reference the column \"t.name\".\n";
        assert_eq!(parse(out).unwrap().hint.as_deref(), Some("Perhaps you meant to reference the column \"t.name\"."));
        assert_eq!(parse("psql: error: connection to server failed\n"), None);
        assert_eq!(parse("COPY 3\n"), None);
    }

    #[test]
    fn missing_tables_and_columns_are_recognised() {
        assert_eq!(missing_relation("relation \"nope\" does not exist"), Some("nope"));
        assert_eq!(missing_relation("column \"a\" does not exist"), None);
        assert_eq!(missing_column("column \"totl\" of relation \"orders\" does not exist"), Some(("totl", "orders")));
        assert_eq!(missing_column("column \"totl\" does not exist"), None);
    }

    #[test]
    fn create_table_statements_are_recognised() {
        assert!(creates_table("-- schema\nCREATE TABLE IF NOT EXISTS public.\"Orders\" (id int);", "orders"));
        assert!(creates_table("create unlogged table orders(id int);", "orders"));
        assert!(creates_table("CREATE TABLE orders\n(id int)", "orders"));
        assert!(!creates_table("CREATE TABLE orders_archive (id int); INSERT INTO orders VALUES (1);", "orders"));
        assert!(!creates_table("CREATE INDEX ON orders (id);", "orders"));
    }
}
