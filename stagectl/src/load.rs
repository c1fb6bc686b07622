//! Reading a manifest from disk: the file, `.env` beside it, secrets, and the environment.
//! This is the file-system adapter in front of the pure `manifest` module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::manifest::{self, Manifest, VarSource};

/// Environment variable prefix for secrets: `${secret:api_key}` reads `STAGECTL_SECRET_api_key`
/// (or the upper-cased name).
pub const SECRET_ENV_PREFIX: &str = "STAGECTL_SECRET_";

/// Environment variable naming the profiles to run, comma separated (like `--profile`).
pub const PROFILES_ENV: &str = "STAGECTL_PROFILES";

/// The manifest at `path` with the services of the profiles in `STAGECTL_PROFILES`, run as
/// `project` when given (`-p`; else its `[stack] name`). See [`load_with_profiles`].
pub fn load(path: &Path, project: Option<&str>) -> Result<Manifest> {
    let profiles: Vec<String> = std::env::var(PROFILES_ENV)
        .map(|v| v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    load_with_profiles(path, project, &profiles)
}

/// The manifest with the services that run under `profiles` (services without profiles
/// always run), as `project` when given.
pub fn load_with_profiles(path: &Path, project: Option<&str>, profiles: &[String]) -> Result<Manifest> {
    let manifest = load_all(path)?.select_profiles(profiles)?;
    match project {
        Some(project) => {
            manifest.with_project(project).map_err(|e| Error::Usage(format!("{e} (from -p/--project-name or STAGECTL_PROJECT)")))
        }
        None => Ok(manifest),
    }
}

/// Every service of the manifest, whatever its profiles.
pub fn load_all(path: &Path) -> Result<Manifest> {
    let bytes = std::fs::read(path).map_err(|source| Error::ManifestRead { path: path.to_path_buf(), source })?;
    // Not UTF-8: a manifest error at the first bad byte's line and column, not a read error.
    let source = manifest::decode(&bytes, &display_name(path)).map_err(Error::Manifest)?;
    let dir = path.parent().map(Path::to_path_buf).filter(|d| !d.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."));
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let vars = var_source(&dir, std::env::vars());
    manifest::parse_with_files(source, &display_name(path), &dir, &vars, &|p: &Path| p.is_dir(), &read_text).map_err(Error::Manifest)
}

/// A file the manifest names (an `env_file`), for the pure parser.
pub fn read_text(path: &Path) -> std::result::Result<String, manifest::FileReadError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| manifest::FileReadError::NotText),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(manifest::FileReadError::NotFound),
        Err(e) => Err(manifest::FileReadError::Other(e.to_string())),
    }
}

fn display_name(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches("./").to_string()
}

/// Variables: `.env` beside the manifest, overridden by the process environment.
/// Secrets: `secrets.env` beside the manifest (or `$STAGECTL_SECRETS_FILE`), overridden by
/// `STAGECTL_SECRET_<NAME>` variables.
pub fn var_source(dir: &Path, env: impl Iterator<Item = (String, String)>) -> VarSource {
    let mut vars = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let env: Vec<(String, String)> = env.collect();
    if let Ok(iter) = dotenvy::from_path_iter(dir.join(".env")) {
        vars.extend(iter.flatten());
    }
    let explicit = env.iter().find(|(k, _)| k == "STAGECTL_SECRETS_FILE").map(|(_, v)| PathBuf::from(v));
    let secrets_file_hint = match &explicit {
        Some(p) => p.display().to_string(),
        None => "secrets.env beside the manifest".to_string(),
    };
    let secrets_file = explicit.unwrap_or_else(|| dir.join("secrets.env"));
    if let Ok(iter) = dotenvy::from_path_iter(&secrets_file) {
        secrets.extend(iter.flatten());
    }
    for (k, v) in env {
        if let Some(name) = k.strip_prefix(SECRET_ENV_PREFIX) {
            secrets.insert(name.to_string(), v.clone());
            secrets.insert(name.to_lowercase(), v);
        } else {
            vars.insert(k, v);
        }
    }
    VarSource { vars, secrets, secrets_file_hint }
}
