//! Why fixture data could not be found, hashed, loaded or scanned. Every message names the
//! fixture file (and line, where one is known) or the column it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("invalid fixture pattern `{pattern}`: {source}")]
    InvalidPattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },

    /// A typo must not load nothing.
    #[error("fixture pattern `{pattern}` of service `{service}` matches no file")]
    NoMatch { pattern: String, service: String },

    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Docker(#[from] crate::error::Error),

    /// psql failed on a file; `line` is the file's line when psql names one.
    #[error("{file}{}: {message}", at_line(*line))]
    Psql { file: String, line: Option<u64>, message: String },

    #[error("{file}: the postgres loader takes .sql and .csv files, not .{extension}")]
    UnsupportedFile { file: String, extension: String },

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

impl From<FixtureError> for crate::error::Error {
    fn from(e: FixtureError) -> Self {
        crate::error::Error::StackFailed(e.to_string())
    }
}
