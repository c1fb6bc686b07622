//! stagectl: a single-node staging runner.
//!
//! The pure core (`manifest`, `plan`) does no I/O; adapters (`docker`, the file system, the
//! terminal) sit around it. See ARCHITECTURE.md for the map and the invariants.

pub mod checks;
pub mod cli;
pub mod daemon;
pub mod data;
pub mod docker;
pub mod error;
pub mod export;
pub mod history;
pub mod import;
pub mod load;
pub mod manifest;
pub mod migrations;
pub mod ops;
pub mod orchestrator;
pub mod plan;
pub mod probes;
pub mod secrets;
pub mod sql;
pub mod text;
