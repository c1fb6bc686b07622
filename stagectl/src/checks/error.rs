//! Why one attempt of a smoke check failed. The message becomes the check's result (after the
//! last attempt), so each names the request, command or query it is about.

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no network target")]
    NoNetworkTarget,

    /// Not retried: the containers are listed once per check run, so it cannot change.
    #[error("service `{service}` is not running ({state}); not retried")]
    NotRunning { service: String, state: String },

    #[error("service `{service}` has no address on {network}")]
    NoAddress { service: String, network: String },

    #[error(transparent)]
    Docker(#[from] crate::error::Error),

    /// `request` is the check's `METHOD path`.
    #[error("{request}: {source}")]
    Request {
        request: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{request}: reading body: {source}")]
    ReadBody {
        request: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("{request}: status {status}, expected {expected}")]
    Status { request: String, status: u16, expected: u16 },

    #[error("{request}: body does not contain {expected:?}")]
    BodyLacks { request: String, expected: String },

    #[error(transparent)]
    InvalidRegex(#[from] regex::Error),

    #[error("{request}: body does not match /{regex}/")]
    BodyMismatch { request: String, regex: String },

    #[error("{request}: body is not JSON: {source}")]
    NotJson {
        request: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{request}: {pointer} is {got}, expected {expected}")]
    JsonValue { request: String, pointer: String, got: serde_json::Value, expected: serde_json::Value },

    #[error("{request}: {pointer} is missing")]
    JsonMissing { request: String, pointer: String },

    #[error("tcp {addr}: {source}")]
    Tcp {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    /// `command` is quoted as a shell would; `last_lines` are the last lines it printed.
    #[error("`{command}` exited with {code}; it printed: {last_lines}")]
    ExecFailed { command: String, code: i64, last_lines: String },

    #[error("`{command}` output does not contain {expected:?}; it printed: {last_lines}")]
    ExecOutputLacks { command: String, expected: String, last_lines: String },

    /// The query's psql output, whitespace squashed.
    #[error("query failed: {output}")]
    QueryFailed { output: String },

    #[error("query returned {got:?}, expected {expected:?}")]
    QueryMismatch { got: String, expected: String },

    #[error("cannot run `{command}`: {source}")]
    ScriptSpawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// `last_lines` are the last lines of stdout and stderr, joined by ` / `.
    #[error("`{command}` failed ({status}): {last_lines}")]
    ScriptFailed { command: String, status: std::process::ExitStatus, last_lines: String },
}
