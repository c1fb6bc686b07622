//! Why fixture data could not be found, hashed, loaded or scanned. Every message names the
//! fixture file (and line, where one is known) or the column it is about.

use std::path::PathBuf;

use super::csv_check::CsvProblem;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("invalid fixture pattern `{pattern}`: {source}")]
    InvalidPattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },

    /// A typo must not load nothing. `at`: where the pattern is written (`stack.toml:18`);
    /// `help`: what the pattern's directory holds instead.
    #[error("{at}: fixture pattern `{pattern}` of [fixtures.{service}] matches no file\n  = help: {help}")]
    NoMatch { pattern: String, service: String, at: String, help: String },

    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Docker(#[from] crate::error::Error),

    /// psql failed on a file; `line` is the file's line when psql names one. `message` is
    /// PostgreSQL's (with its detail and hint), `help` stagectl's advice.
    #[error("{file}{}: {message}{}", at_line(*line), help_line(help))]
    Psql { file: String, line: Option<u64>, message: String, help: Option<String> },

    /// The MySQL client failed on a file; `line` is the file's line when it is known.
    #[error("{file}{}: {message}{}", at_line(*line), help_line(help))]
    Mysql { file: String, line: Option<u64>, message: String, help: Option<String> },

    /// The table a CSV file loads into (named after the file) does not exist.
    /// `origin`: the `files` pattern that matched the file and where it is written.
    #[error("{file}:1: table \"{table}\" does not exist: a CSV file loads into the table named after it ({file_name} → {table})\n  = help: {help}")]
    MissingTable { file: String, file_name: String, table: String, help: String },

    /// A column of the CSV header is not a column of the table. `columns`: the table's columns,
    /// when they could be read (empty otherwise).
    #[error(
        "{file}:1: column \"{column}\" of the header is not a column of table \"{table}\"\n  = help: {}",
        missing_column_help(column, table, columns)
    )]
    MissingColumn { file: String, column: String, table: String, columns: Vec<String> },

    #[error("{file}: the {loader} loader takes .sql and .csv files, not .{extension} (matched by {origin})")]
    UnsupportedFile { file: String, loader: &'static str, extension: String, origin: String },

    /// The CSV file cannot be opened or its header read (`line` 1).
    #[error("{file}{}: {source}", at_line(*line))]
    Csv {
        file: String,
        line: Option<u64>,
        #[source]
        source: csv::Error,
    },

    #[error("{file}:{line}: malformed CSV: {detail}")]
    MalformedCsv { file: String, line: u64, detail: String },

    /// The structure of a CSV file is wrong at a row, found by stagectl while streaming it,
    /// before PostgreSQL misreports it. `header`: the header's column names.
    #[error("{}", bad_csv(file, problem, header))]
    BadCsv { file: String, problem: Box<CsvProblem>, header: Vec<String> },

    #[error("{file}:{line}: unclosed quote")]
    UnclosedQuote { file: String, line: usize },

    #[error("{file}: redis-cli --pipe reported errors:\n{output}")]
    RedisPipe { file: String, output: String },

    #[error("{file}: `{command}` exited with {code}:\n{output_tail}")]
    LoaderCommand { file: String, command: String, code: i64, output_tail: String },

    #[error("scanning {column}: {output}")]
    ScanQuery { column: String, output: String },

    #[error("scanning {column}: {source}")]
    ScanCsv {
        column: String,
        #[source]
        source: csv::Error,
    },
}

/// `:line` after a file name, or nothing.
fn at_line(line: Option<u64>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

/// `\n  = help: text`, or nothing.
fn help_line(help: &Option<String>) -> String {
    help.as_ref().map(|h| format!("\n  = help: {h}")).unwrap_or_default()
}

fn missing_column_help(column: &str, table: &str, columns: &[String]) -> String {
    let fix = "the header names the columns to load: rename it to a column of the table, or add the column in a migration";
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    // A typo of a column, not any short name: `totl` → `total`, but not `x` → `id`.
    let close = names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(column, n), *n))
        .filter(|(d, _)| *d <= 1.max(column.chars().count() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n);
    match (names.is_empty(), close) {
        (true, _) => fix.to_string(),
        (false, Some(s)) => format!("did you mean \"{s}\"? {fix}; \"{table}\" has: {}", names.join(", ")),
        (false, None) => format!("{fix}; \"{table}\" has: {}", names.join(", ")),
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `column "email" (field 1)`, or `field 3` past the header's columns.
fn column(header: &[String], field: usize) -> String {
    match header.get(field) {
        Some(name) => format!("column \"{name}\" (field {})", field + 1),
        None => format!("field {}", field + 1),
    }
}

/// What is wrong, at which line, and how to fix it.
fn bad_csv(file: &str, problem: &CsvProblem, header: &[String]) -> String {
    let quote_help = |mid_field: bool| {
        if mid_field {
            "a quote inside a value opens a quoted section in CSV: quote the whole value and double the quote in it (5\" screen → \"5\"\" screen\")"
        } else {
            "close the quote at the end of the value; a quote that belongs to the value is written twice (\"\")"
        }
    };
    let (line, what, help) = match problem {
        CsvProblem::Nul { line, row_line, field } => {
            let place = if *row_line == 1 { "the header".to_string() } else { column(header, *field) };
            let base = file.rsplit('/').next().unwrap_or(file);
            (
                *line,
                format!("NUL byte (0x00) in {place}: PostgreSQL cannot store NUL in text, and COPY misreads the row around it"),
                format!("remove the NUL bytes (e.g. `tr -d '\\000' < {base} > fixed.csv`); a file full of them is probably UTF-16: convert it with `iconv -f UTF-16 -t UTF-8`"),
            )
        }
        CsvProblem::UnterminatedQuote { line, field, mid_field, last_line, .. } => {
            let rest = if last_line > line { format!("lines {line}-{last_line}, to the end of the file,") } else { "the rest of the file".into() };
            (
                *line,
                format!("unterminated quoted field: the quote opened in {} on this line is never closed, so {rest} would be read as one value", column(header, *field)),
                quote_help(*mid_field).to_string(),
            )
        }
        CsvProblem::FieldCount { line, expected, empty: true, .. } => (
            *line,
            format!("malformed CSV: empty line: PostgreSQL reads it as a row of 1 field, the header has {expected}"),
            "remove the empty line".to_string(),
        ),
        CsvProblem::FieldCount { line, end_line, fields, expected, spill: Some((quote_line, mid_field)), .. } => (
            *quote_line,
            format!(
                "malformed CSV: the quoted value opened on line {quote_line} runs on to line {end_line}, so lines {line}-{end_line} are read as one row of {}, the header has {expected}",
                plural(*fields, "field")
            ),
            quote_help(*mid_field).to_string(),
        ),
        CsvProblem::FieldCount { line, fields, expected, .. } => (
            *line,
            format!("malformed CSV: row has {}, the header has {expected}", plural(*fields, "field")),
            if fields > expected {
                "quote a value that contains a comma (\"a, b\"), or remove the extra fields".to_string()
            } else {
                "add the missing fields (an empty field loads NULL)".to_string()
            },
        ),
    };
    format!("{file}:{line}: {what}\n  = help: {help}")
}

impl From<FixtureError> for crate::error::Error {
    fn from(e: FixtureError) -> Self {
        crate::error::Error::StackFailed(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_column_suggests_only_a_close_name() {
        let columns = ["id", "email", "total"].map(String::from);
        let help = |c: &str| missing_column_help(c, "orders", &columns);
        assert!(help("totl").starts_with("did you mean \"total\"? the header names"), "{}", help("totl"));
        assert!(help("emial").starts_with("did you mean \"email\"?"));
        assert!(help("x").starts_with("the header names the columns to load") && help("x").ends_with("\"orders\" has: id, email, total"));
        assert_eq!(
            missing_column_help("x", "orders", &[]),
            "the header names the columns to load: rename it to a column of the table, or add the column in a migration"
        );
    }
}
