//! Exports of a stack to other engines. `k8s`: the manifest as Kubernetes documents (pure:
//! manifest + file contents in, documents + warnings out); `file`: the thin entry point that
//! reads the fixture and migration files and writes the documents.

mod file;
pub mod k8s;

pub use file::{export_k8s, read_inputs, ExportError, K8sRequest, Written};
