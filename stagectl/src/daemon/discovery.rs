//! How the CLI finds the daemon of a stack: the daemon writes `<state dir>/daemons/<stack>.json`
//! when it starts listening and removes it when it stops.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a running daemon writes to `<state dir>/daemons/<stack>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovery {
    pub pid: u32,
    /// `http://127.0.0.1:7780`
    pub url: String,
    /// Where the daemon's token is, when the daemon generated it (readable by its user only).
    pub token_file: Option<PathBuf>,
}

pub fn path(stack: &str) -> PathBuf {
    crate::history::state_dir().join("daemons").join(format!("{stack}.json"))
}
