//! The one error type of stagectl and the one place errors become exit codes.

use std::path::PathBuf;

use crate::manifest::{ManifestErrors, ProfileError};

/// Documented exit codes (README, "Exit codes").
pub mod exit {
    pub const OK: i32 = 0;
    /// The stack (or a check) failed: a service did not become ready, a job failed, ...
    pub const STACK_FAILED: i32 = 1;
    /// The manifest is invalid or the command line is wrong.
    pub const USAGE: i32 = 2;
    /// The Docker engine cannot be reached.
    pub const DOCKER_UNREACHABLE: i32 = 3;
    /// Stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
    pub const CANCELLED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    ManifestRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}", .0.render().trim_end())]
    Manifest(ManifestErrors),

    #[error("cannot reach the Docker engine at {host}: {detail}\n  = help: is Docker running? Start it (`sudo systemctl start docker` or `dockerd`), or point DOCKER_HOST at a running engine")]
    DockerUnreachable { host: String, detail: String },

    #[error("Docker: {context}: {detail}")]
    Docker { context: String, detail: String },

    #[error("{0}")]
    Usage(String),

    /// The selected profiles leave out a service something selected needs.
    #[error(transparent)]
    Profile(#[from] ProfileError),

    /// Problems found before anything was started (ports in use, name conflicts).
    #[error("{}", .0.join("\n"))]
    Preflight(Vec<String>),

    /// The run went ahead and failed; details were already reported per service.
    #[error("{0}")]
    StackFailed(String),

    /// Stopped on request; the message says what state the stack was left in.
    #[error("{0}")]
    Cancelled(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ManifestRead { .. } | Error::Manifest(_) | Error::Usage(_) | Error::Profile(_) => exit::USAGE,
            Error::DockerUnreachable { .. } => exit::DOCKER_UNREACHABLE,
            Error::Docker { .. } | Error::Preflight(_) | Error::StackFailed(_) => exit::STACK_FAILED,
            Error::Cancelled(_) => exit::CANCELLED,
        }
    }

    pub fn docker(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Docker { context: context.into(), detail: err.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
