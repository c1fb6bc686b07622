//! From a fixture set's `files` patterns to the files to load, and back: which pattern (and
//! which manifest line) brought a file in, and, for a pattern that matches nothing, what its
//! directory holds instead.

use std::path::{Component, Path, PathBuf};

use super::FixtureError;
use crate::manifest::diag::did_you_mean;
use crate::manifest::Fixtures;

/// The files of a fixture set, in load order: patterns in the order given, each pattern's
/// matches sorted. A pattern that matches nothing is an error (a typo must not load nothing).
pub fn expand_files(dir: &Path, fixtures: &Fixtures) -> Result<Vec<PathBuf>, FixtureError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for (i, pattern) in fixtures.files.iter().enumerate() {
        let full = dir.join(pattern);
        let mut matches: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
            .map_err(|source| FixtureError::InvalidPattern { pattern: pattern.clone(), source })?
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect();
        if matches.is_empty() {
            return Err(FixtureError::NoMatch {
                pattern: pattern.clone(),
                service: fixtures.service.clone(),
                at: pattern_at(fixtures, i),
                help: no_match_help(dir, pattern),
            });
        }
        matches.sort();
        for m in matches {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// Where `files` entry `i` is written: `stack.toml:18`, or `[fixtures.db] files` when the
/// manifest's lines are not known.
pub(super) fn pattern_at(fixtures: &Fixtures, i: usize) -> String {
    match fixtures.files_lines.get(i) {
        Some(line) if !fixtures.manifest_file.is_empty() => format!("{}:{line}", fixtures.manifest_file),
        _ => format!("[fixtures.{}] files", fixtures.service),
    }
}

/// The first pattern that brings `file` in (the one [`expand_files`] loaded it for), as
/// `` `data/*.csv` (stack.toml:18) ``.
pub(super) fn origin(dir: &Path, fixtures: &Fixtures, file: &Path) -> String {
    let options = glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };
    let found = fixtures
        .files
        .iter()
        .position(|p| glob::Pattern::new(&dir.join(p).to_string_lossy()).is_ok_and(|pat| pat.matches_path_with(file, options)));
    match found {
        Some(i) => format!("`{}` ({})", fixtures.files[i], pattern_at(fixtures, i)),
        None => format!("[fixtures.{}] files", fixtures.service),
    }
}

fn is_glob(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// `data/` for a directory named relative to `dir`, or its full path outside it.
fn shown(dir: &Path, path: &Path) -> String {
    match path.strip_prefix(dir) {
        Ok(rel) if rel.as_os_str().is_empty() => "the manifest's directory".to_string(),
        Ok(rel) => format!("{}/", rel.display()),
        Err(_) => format!("{}/", path.display()),
    }
}

/// Names in `dir`, sorted (directories with a trailing `/`).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if e.path().is_dir() {
                        format!("{name}/")
                    } else {
                        name
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Why `pattern` (relative to `dir`) matches no file, and what would.
pub(super) fn no_match_help(dir: &Path, pattern: &str) -> String {
    let parts: Vec<String> = Path::new(pattern)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let literal = parts.iter().take_while(|p| !is_glob(p)).count();
    // The directory the pattern lists: its literal leading components (all but the last when
    // the whole pattern is a plain path).
    let base_len = if literal == parts.len() { literal.saturating_sub(1) } else { literal };
    let base: PathBuf = dir.join(parts[..base_len].iter().collect::<PathBuf>());
    let relative = "patterns are relative to the manifest's directory";

    if !base.is_dir() {
        let mut existing = base.clone();
        while !existing.is_dir() && existing.pop() {}
        let missing =
            base.strip_prefix(&existing).ok().and_then(|m| m.components().next()).map(|c| c.as_os_str().to_string_lossy().into_owned());
        let mut help = format!("there is no directory {} ({relative}, {})", shown(dir, &base), dir.display());
        if let Some(m) = missing {
            let names = entries(&existing);
            let dirs: Vec<&str> = names.iter().filter_map(|n| n.strip_suffix('/')).collect();
            if let Some(s) = did_you_mean(&m, &dirs).or_else(|| dirs.iter().find(|d| d.eq_ignore_ascii_case(&m)).copied()) {
                help.push_str(&format!("; did you mean {}?", shown(dir, &existing.join(s))));
            }
        }
        return help;
    }

    let full = dir.join(pattern).to_string_lossy().into_owned();
    let any_case = glob::MatchOptions { case_sensitive: false, ..glob::MatchOptions::new() };
    let found: Vec<PathBuf> = glob::glob_with(&full, any_case).map(|g| g.filter_map(|p| p.ok()).collect()).unwrap_or_default();
    if let Some(f) = found.iter().find(|p| p.is_file()) {
        return format!("{} would match if case were ignored: patterns are case-sensitive", f.strip_prefix(dir).unwrap_or(f).display());
    }
    if let Some(d) = found.iter().find(|p| p.is_dir()) {
        let d = d.strip_prefix(dir).unwrap_or(d).display().to_string();
        return format!("it matches only directories, such as {d}/: name the files in them, e.g. `{d}/*.csv`");
    }

    let names = entries(&base);
    let where_ = shown(dir, &base);
    if names.is_empty() {
        return format!("{where_} is empty");
    }
    const SHOWN: usize = 8;
    let mut help = format!("{where_} holds {}", names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "));
    if names.len() > SHOWN {
        help.push_str(&format!(", … ({} in all)", names.len()));
    }
    // `data/*.cvs` → `data/*.csv`, `data/user.csv` → `data/users.csv`: the closest name or
    // extension present.
    let last = parts.last().map(String::as_str).unwrap_or("");
    let prefix = pattern.strip_suffix(last).unwrap_or("");
    let suggestion = match last.rsplit_once('.') {
        Some((stem, ext)) if is_glob(stem) && !is_glob(ext) => {
            let exts: Vec<&str> = names.iter().filter_map(|n| n.rsplit_once('.').map(|(_, e)| e)).collect();
            did_you_mean(ext, &exts).map(|e| format!("{prefix}{stem}.{e}"))
        }
        _ if !is_glob(last) => {
            let files: Vec<&str> = names.iter().map(String::as_str).filter(|n| !n.ends_with('/')).collect();
            did_you_mean(last, &files).map(|f| format!("{prefix}{f}"))
        }
        _ => None,
    };
    if let Some(s) = suggestion.filter(|s| s != pattern) {
        help.push_str(&format!("; did you mean `{s}`?"));
    }
    help
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            let p = d.path().join(f);
            if f.ends_with('/') {
                std::fs::create_dir_all(p).unwrap();
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, "x").unwrap();
            }
        }
        d
    }

    #[test]
    fn a_pattern_matching_nothing_says_what_is_there() {
        let d = tree(&["data/01_users.csv", "data/02_orders.csv", "data/03_extra.sql", "Seeds/a.csv", "nested/sub/x.csv"]);
        let help = |p: &str| no_match_help(d.path(), p);
        assert_eq!(help("data/*.cvs"), "data/ holds 01_users.csv, 02_orders.csv, 03_extra.sql; did you mean `data/*.csv`?");
        assert_eq!(help("data/01_user.csv"), "data/ holds 01_users.csv, 02_orders.csv, 03_extra.sql; did you mean `data/01_users.csv`?");
        assert_eq!(help("data/*.json"), "data/ holds 01_users.csv, 02_orders.csv, 03_extra.sql");
        assert_eq!(help("data/*.CSV"), "data/01_users.csv would match if case were ignored: patterns are case-sensitive");
        assert_eq!(help("nested/*"), "it matches only directories, such as nested/sub/: name the files in them, e.g. `nested/sub/*.csv`");
        let root = d.path().display();
        assert_eq!(
            help("fixtures/*.csv"),
            format!("there is no directory fixtures/ (patterns are relative to the manifest's directory, {root})")
        );
        assert_eq!(
            help("seeds/*.csv"),
            format!("there is no directory seeds/ (patterns are relative to the manifest's directory, {root}); did you mean Seeds/?")
        );
        assert_eq!(
            help("dta/*.csv"),
            format!("there is no directory dta/ (patterns are relative to the manifest's directory, {root}); did you mean data/?")
        );
        let empty = tree(&["data/"]);
        assert_eq!(no_match_help(empty.path(), "data/*.csv"), "data/ is empty");
    }

    #[test]
    fn a_file_is_traced_to_its_pattern_and_manifest_line() {
        let d = tree(&["data/a.csv", "data/b.sql", "data/sub/c.csv"]);
        let fx = Fixtures {
            service: "db".into(),
            loader: crate::manifest::Loader::Redis,
            files: vec!["data/*.csv".into(), "data/**/*.csv".into(), "data/*.sql".into()],
            files_lines: vec![7, 8, 9],
            manifest_file: "stack.toml".into(),
            after: vec![],
            mask: Default::default(),
            sensitive: vec![],
            seed: String::new(),
            snapshot: false,
        };
        let files = expand_files(d.path(), &fx).unwrap();
        let origins: Vec<String> = files.iter().map(|f| origin(d.path(), &fx, f)).collect();
        assert_eq!(origins, ["`data/*.csv` (stack.toml:7)", "`data/**/*.csv` (stack.toml:8)", "`data/*.sql` (stack.toml:9)"]);
        let typo = Fixtures { files: vec!["data/*.csv".into(), "data/*.cvs".into()], ..fx.clone() };
        let err = expand_files(d.path(), &typo).unwrap_err().to_string();
        assert_eq!(
            err,
            "stack.toml:8: fixture pattern `data/*.cvs` of [fixtures.db] matches no file\n  = help: data/ holds a.csv, b.sql, sub/; did you mean `data/*.csv`?"
        );
        let unknown = Fixtures { files_lines: vec![], ..typo };
        assert!(expand_files(d.path(), &unknown).unwrap_err().to_string().starts_with("[fixtures.db] files: fixture pattern `data/*.cvs`"));
    }
}
