//! The thin entry point of `stagectl export k8s`: reads the fixture and migration files the
//! manifest names, converts (pure, [`super::k8s::convert`]), and writes the documents into a
//! directory or returns them as one YAML stream.

use std::path::{Path, PathBuf};

use super::k8s::{self, Export, InputFile, Inputs, Options, CONFIGMAP_DATA_LIMIT};
use crate::manifest::Manifest;

/// What `stagectl export k8s` was asked for.
#[derive(Debug, Clone)]
pub struct K8sRequest {
    /// Write one file per document here; `None`: one multi-document stream (returned).
    pub output: Option<PathBuf>,
    pub options: Options,
}

/// Why the export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What was exported: the conversion's result, the files written (with `output`), and the YAML
/// stream (without).
#[derive(Debug)]
pub struct Written {
    pub export: Export,
    pub files: Vec<PathBuf>,
    pub stream: Option<String>,
}

/// Reads the inputs, converts, writes. Warnings about files that could not be read join the
/// conversion's.
pub fn export_k8s(manifest: &Manifest, request: &K8sRequest) -> Result<Written, ExportError> {
    let (inputs, read_warnings) = read_inputs(manifest);
    let mut export = k8s::convert(manifest, &inputs, &request.options);
    export.warnings.splice(0..0, read_warnings);
    let Some(dir) = &request.output else {
        let stream = export.to_yaml();
        return Ok(Written { export, files: Vec::new(), stream: Some(stream) });
    };
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Write { path: dir.clone(), source })?;
    let mut files = Vec::new();
    for (name, text) in export.files() {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ExportError::Write { path: path.clone(), source })?;
        files.push(path);
    }
    Ok(Written { export, files, stream: None })
}

/// The fixture files (patterns in order, each pattern's matches sorted, as `up` loads them)
/// and the native migrations' `.up.sql` files (by name), with a warning per file not read.
pub fn read_inputs(manifest: &Manifest) -> (Inputs, Vec<String>) {
    let mut inputs = Inputs::default();
    let mut warnings = Vec::new();
    for f in &manifest.fixtures {
        let mut paths: Vec<PathBuf> = Vec::new();
        for pattern in &f.files {
            let full = manifest.dir.join(pattern);
            let mut matches: Vec<PathBuf> =
                glob::glob(&full.to_string_lossy()).into_iter().flatten().flatten().filter(|p| p.is_file()).collect();
            if matches.is_empty() {
                warnings.push(format!("fixtures.{}: `{pattern}` matches no file", f.service));
            }
            matches.sort();
            for m in matches {
                if !paths.contains(&m) {
                    paths.push(m);
                }
            }
        }
        let files = read_all(&manifest.dir, &paths, &format!("fixtures.{}", f.service), &mut warnings);
        inputs.fixtures.insert(f.service.clone(), files);
    }
    for m in &manifest.migrations {
        let Some(dir) = m.dir.as_ref().filter(|_| m.job.is_none()) else { continue };
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".up.sql")).collect(),
            Err(e) => {
                warnings.push(format!("migrations.{}: cannot read {}: {e}", m.service, dir.display()));
                Vec::new()
            }
        };
        paths.sort();
        let files = read_all(&manifest.dir, &paths, &format!("migrations.{}", m.service), &mut warnings);
        inputs.migrations.insert(m.service.clone(), files);
    }
    (inputs, warnings)
}

fn read_all(base: &Path, paths: &[PathBuf], section: &str, warnings: &mut Vec<String>) -> Vec<InputFile> {
    let mut files = Vec::new();
    for path in paths {
        let shown = path.strip_prefix(base).unwrap_or(path).display().to_string();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        // A file too big for a ConfigMap is not read: fixtures can be gigabytes.
        let size = match std::fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(e) => {
                warnings.push(format!("{section}: {shown} left out: {e}"));
                continue;
            }
        };
        if size > CONFIGMAP_DATA_LIMIT as u64 {
            files.push(InputFile { shown, name, size, bytes: Vec::new() });
            continue;
        }
        match std::fs::read(path) {
            Ok(bytes) => files.push(InputFile { shown, name, size: bytes.len() as u64, bytes }),
            Err(e) => warnings.push(format!("{section}: {shown} left out: {e}")),
        }
    }
    files
}
