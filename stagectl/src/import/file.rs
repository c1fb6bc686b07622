//! The thin entry point around the pure conversion, and the only I/O of `import`: reads the
//! compose file and its env files, works out where the compose file's relative paths point from
//! the stack.toml's directory, writes the result, and checks it as `stagectl validate` would.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use super::{convert, Import, Options};
use crate::error::{exit, Error, Result};
use crate::manifest::{self, ManifestErrors};

/// `stagectl import COMPOSE [-o OUTPUT] [--stack NAME] [--profile P]... [--force]`.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub compose: PathBuf,
    /// Where to write the stack.toml; stdout when `None`.
    pub output: Option<PathBuf>,
    pub stack: Option<String>,
    pub profiles: Vec<String>,
    /// Overwrite an existing output file.
    pub force: bool,
    pub json: bool,
}

/// Reads and converts `compose` for a stack.toml that will live in `out_dir`.
pub fn import_file(compose: &Path, out_dir: &Path, stack: Option<&str>, profiles: &[String]) -> Result<Import> {
    let bytes = std::fs::read(compose).map_err(|source| Error::ManifestRead { path: compose.to_path_buf(), source })?;
    let display = display_name(compose);
    let source =
        String::from_utf8(bytes).map_err(|e| Error::Usage(format!("{display}: not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
    let compose_dir = absolute(compose.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
    let base = relative(&absolute(out_dir), &compose_dir);
    let default_stack = compose_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(compose_dir.join(p)).map_err(|e| e.to_string());
    let surroundings = surroundings(compose, &compose_dir, !base.is_empty());
    let opts = Options {
        file: &display,
        stack,
        default_stack: &default_stack,
        profiles,
        base: &base,
        read_env_file: &read,
        surroundings: &surroundings,
    };
    convert(&source, &opts).map_err(|e| Error::Usage(e.to_string()))
}

/// Files beside the compose file that `docker compose` would use and the stack.toml will not.
fn surroundings(compose: &Path, compose_dir: &Path, elsewhere: bool) -> Vec<String> {
    let mut found = Vec::new();
    let this = compose.file_name().unwrap_or_default();
    for name in ["compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"] {
        if name != this && compose_dir.join(name).is_file() {
            found.push(format!(
                "{name} is beside it: `docker compose` merges it in, `stagectl import` reads one file; run `docker compose config > flat.yml` and import that to keep both"
            ));
        }
    }
    if elsewhere && compose_dir.join(".env").is_file() {
        found.push(
            "the .env beside the compose file sets its variables; stagectl reads the .env beside stack.toml: copy it there".to_string(),
        );
    }
    found
}

/// Checks the converted text as `stagectl validate` would for a stack.toml in `out_dir`:
/// variables from the environment and `.env` there, build contexts that must exist.
pub fn validate(import: &Import, out_dir: &Path, display: &str) -> std::result::Result<manifest::Manifest, ManifestErrors> {
    let dir = absolute(out_dir);
    let vars = crate::load::var_source(&dir, std::env::vars());
    manifest::parse_with_files(&import.toml, display, &dir, &vars, &|p: &Path| p.is_dir(), &crate::load::read_text)
}

/// The command: convert, write (stdout or `-o`), print warnings, validate. Exit 2 when the
/// result does not validate yet (the file is still written, to be fixed by hand).
pub fn run(req: &Request) -> Result<i32> {
    if let Some(s) = &req.stack {
        if super::text::dns_label(s, 40) != *s {
            return Err(Error::Usage(format!("--stack `{s}`: use up to 40 lowercase letters, digits and `-`")));
        }
    }
    if let Some(o) = req.output.as_ref().filter(|o| o.exists() && !req.force) {
        return Err(Error::Usage(format!("{} exists; pass --force to overwrite it", o.display())));
    }
    let out_dir = match &req.output {
        Some(o) => o.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
        None => PathBuf::from("."),
    };
    let import = import_file(&req.compose, &out_dir, req.stack.as_deref(), &req.profiles)?;
    let compose = display_name(&req.compose);
    let output = req.output.as_deref().map(display_name);
    if let Some(o) = &req.output {
        std::fs::write(o, &import.toml).map_err(|e| Error::Usage(format!("cannot write {}: {e}", o.display())))?;
    }
    let problems = validate(&import, &out_dir, output.as_deref().unwrap_or("stack.toml")).err();
    let mut stdout = std::io::stdout().lock();
    if req.json {
        let warnings: Vec<serde_json::Value> = import
            .warnings
            .iter()
            .map(|w| serde_json::json!({ "file": compose, "line": w.line, "key": w.key, "message": w.message }))
            .collect();
        let doc = serde_json::json!({
            "ok": problems.is_none(),
            "compose": compose,
            "output": output,
            "stack": import.stack,
            "services": import.services,
            "warnings": warnings,
            "problems": problems.as_ref().map(|p| p.render()),
            "toml": if req.output.is_none() { Some(&import.toml) } else { None },
        });
        let _ = writeln!(stdout, "{doc}");
    } else {
        for w in &import.warnings {
            eprintln!("{}", w.render(&compose));
        }
        match &output {
            None => {
                let _ = stdout.write_all(import.toml.as_bytes());
            }
            Some(o) => {
                let n = import.services.len();
                let _ = writeln!(
                    stdout,
                    "{compose} → {o}: stack `{}`, {n} service{}, {} warning{}",
                    import.stack,
                    if n == 1 { "" } else { "s" },
                    import.warnings.len(),
                    if import.warnings.len() == 1 { "" } else { "s" }
                );
            }
        }
        if let Some(p) = &problems {
            eprint!("{}", p.render());
            eprintln!(
                "error: the converted manifest does not pass `stagectl validate` yet; fix {} (see its `# import:` comments)",
                output.as_deref().unwrap_or("the output")
            );
        }
    }
    Ok(if problems.is_some() { exit::USAGE } else { exit::OK })
}

fn display_name(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches("./").to_string()
}

/// An absolute, normalised path (symlinks resolved when the path exists).
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf()))
}

/// `to` as seen from `from` (both absolute): `""` when equal, `deploy`, `../compose`; `to`
/// itself when they share nothing but the root.
fn relative(from: &Path, to: &Path) -> String {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return to.to_string_lossy().into_owned();
    }
    let ups = std::iter::repeat_n("..".to_string(), f.len() - common);
    let downs = t[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned());
    ups.chain(downs).collect::<Vec<_>>().join("/")
}
