//! The daemon: HTTP API, status page, watcher, schedules.

pub mod host;
pub mod metrics;
pub mod page;
