//! The daemon's file watcher: the manifest (and its `.env` files), fixture files, migration
//! directories and build contexts. Events are batched in a short window, then one `up`
//! reconciles whatever changed (`up` recreates only services whose inputs changed: a build
//! context → that image and service; a fixture → the data service's snapshot key; a new
//! migration → applied), followed by `check migrations` when a migration changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use super::State;
use crate::history::Trigger;
use crate::manifest::Manifest;
use crate::ops::{CheckSet, Operation};

/// Short enough that a save starts a reconcile well within 200 ms, long enough to take an
/// editor's write-rename-chmod burst as one change.
const WINDOW: Duration = Duration::from_millis(60);

/// What the watcher looks at, derived from the manifest.
struct Targets {
    root: PathBuf,
    manifest_files: Vec<PathBuf>,
    fixtures: Vec<glob::Pattern>,
    migrations: Vec<PathBuf>,
    contexts: Vec<PathBuf>,
}

#[derive(Debug, Default, PartialEq)]
struct Changes {
    paths: Vec<String>,
    migrations: bool,
    /// The manifest changed: what to watch may have changed too.
    manifest: bool,
}

impl Targets {
    fn new(manifest_path: &Path, m: &Manifest) -> Targets {
        let root = m.dir.clone();
        let manifest_file = std::fs::canonicalize(manifest_path).unwrap_or_else(|_| manifest_path.to_path_buf());
        let fixtures = m
            .fixtures
            .iter()
            .flat_map(|f| f.files.iter())
            .filter_map(|p| glob::Pattern::new(&root.join(p).to_string_lossy()).ok())
            .collect();
        Targets {
            manifest_files: vec![manifest_file, root.join(".env"), root.join("secrets.env")],
            fixtures,
            migrations: m.migrations.iter().filter_map(|x| x.dir.clone()).collect(),
            contexts: m.services.iter().filter_map(|s| s.build.as_ref().map(|b| b.context.clone())).collect(),
            root,
        }
    }

    /// Directories to watch and how.
    fn watches(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut out: Vec<(PathBuf, RecursiveMode)> = vec![(self.root.clone(), RecursiveMode::NonRecursive)];
        for p in &self.fixtures {
            // The directory part before the first wildcard.
            let text = p.as_str();
            let cut = text.find(['*', '?', '[']).unwrap_or(text.len());
            let head = &text[..cut];
            let dir = match head.strip_suffix('/') {
                Some(d) => PathBuf::from(d),
                None => Path::new(head).parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let mode = if text.contains("**") { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
            out.push((dir, mode));
        }
        out.extend(self.migrations.iter().map(|d| (d.clone(), RecursiveMode::NonRecursive)));
        out.extend(self.contexts.iter().map(|d| (d.clone(), RecursiveMode::Recursive)));
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// Sorts changed paths into what they mean; paths that mean nothing are dropped.
    fn classify(&self, paths: &[PathBuf]) -> Changes {
        let mut changes = Changes::default();
        for p in paths {
            if ignored(p) {
                continue;
            }
            let manifest = self.manifest_files.iter().any(|m| m == p);
            changes.manifest |= manifest;
            let relevant = manifest || self.fixtures.iter().any(|g| g.matches_path(p)) || self.contexts.iter().any(|c| p.starts_with(c));
            let migration = self.migrations.iter().any(|d| p.parent() == Some(d.as_path())) && p.extension().is_some_and(|e| e == "sql");
            if relevant || migration {
                changes.migrations |= migration;
                let shown = p.strip_prefix(&self.root).unwrap_or(p).display().to_string();
                if !changes.paths.contains(&shown) {
                    changes.paths.push(shown);
                }
            }
        }
        changes.paths.sort();
        changes
    }
}

/// The watcher could not be started or could not watch a directory.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("starting the file watcher: {0}")]
    Start(#[source] notify::Error),
    #[error("starting the watcher's thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("watching {}: {source}", dir.display())]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// Build outputs, version control and editor droppings.
fn ignored(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    p.components().any(|c| matches!(c.as_os_str().to_str(), Some("target" | ".git" | "node_modules")))
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.starts_with(".#")
        || name == "4913"
}

fn add_watches(watcher: &mut notify::RecommendedWatcher, targets: &Targets, watched: &mut Vec<PathBuf>) -> Result<(), WatchError> {
    for (dir, mode) in targets.watches() {
        if dir.is_dir() && !watched.contains(&dir) {
            watcher.watch(&dir, mode).map_err(|source| WatchError::Watch { dir: dir.clone(), source })?;
            watched.push(dir);
        }
    }
    Ok(())
}

/// Starts watching; events are batched on a thread of their own, which owns the watcher. Reads
/// (inotify's OPEN, which every build and snapshot causes) are not changes and are dropped, or
/// stagectl's own runs would trigger the next.
pub(super) fn start(state: Arc<State>, manifest: &Manifest) -> Result<(), WatchError> {
    let mut targets = Targets::new(&state.manifest_path, manifest);
    let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(tx).map_err(WatchError::Start)?;
    let mut watched = Vec::new();
    add_watches(&mut watcher, &targets, &mut watched)?;
    let is_change = |e: &notify::Event| !matches!(e.kind, EventKind::Access(_) | EventKind::Other);
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut paths: Vec<PathBuf> = first.into_iter().filter(is_change).flat_map(|e| e.paths).collect();
                if paths.is_empty() {
                    continue;
                }
                // Collect the rest of the burst.
                let until = std::time::Instant::now() + WINDOW;
                while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok(ev) => paths.extend(ev.into_iter().filter(is_change).flat_map(|e| e.paths)),
                        Err(_) => break,
                    }
                }
                paths.retain(|p| !p.is_dir());
                let changes = targets.classify(&paths);
                if changes.paths.is_empty() {
                    continue;
                }
                let detail = format!("changed: {}", changes.paths.join(", "));
                let _ = state.submit(Operation::Up, Trigger::Watch, &detail, true);
                if changes.migrations {
                    let _ = state.submit(Operation::Check(CheckSet::Migrations), Trigger::Watch, &detail, true);
                }
                // New fixture directories, migrations or build contexts are watched from now on.
                if changes.manifest {
                    if let Ok(m) = state.load_manifest() {
                        targets = Targets::new(&state.manifest_path, &m);
                        let _ = add_watches(&mut watcher, &targets, &mut watched);
                    }
                }
            }
        })
        .map_err(WatchError::Thread)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        Targets {
            root: PathBuf::from("/s"),
            manifest_files: vec![PathBuf::from("/s/stack.toml"), PathBuf::from("/s/.env"), PathBuf::from("/s/secrets.env")],
            fixtures: vec![glob::Pattern::new("/s/fixtures/shop/*.csv").unwrap()],
            migrations: vec![PathBuf::from("/s/migrations")],
            contexts: vec![PathBuf::from("/s/app")],
        }
    }

    #[test]
    fn classifies_changes_and_drops_noise() {
        let t = targets();
        let paths: Vec<PathBuf> = [
            "/s/stack.toml",
            "/s/app/src/main.rs",
            "/s/app/target/debug/x",
            "/s/app/.main.rs.swp",
            "/s/README.md",
            "/s/fixtures/shop/a.csv",
            "/s/fixtures/shop/notes.txt",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let c = t.classify(&paths);
        assert_eq!(c.paths, ["app/src/main.rs", "fixtures/shop/a.csv", "stack.toml"]);
        assert!(!c.migrations);
        let c = t.classify(&[PathBuf::from("/s/migrations/004_x.up.sql")]);
        assert_eq!((c.paths.len(), c.migrations), (1, true));
        assert!(t.classify(&[PathBuf::from("/s/migrations/README")]).paths.is_empty());
    }

    #[test]
    fn watches_each_directory_once_with_the_right_mode() {
        let w = targets().watches();
        let dirs: Vec<String> = w.iter().map(|(d, _)| d.display().to_string()).collect();
        assert_eq!(dirs, ["/s", "/s/app", "/s/fixtures/shop", "/s/migrations"]);
        assert_eq!(w[1].1, RecursiveMode::Recursive);
        assert_eq!(w[2].1, RecursiveMode::NonRecursive);
    }
}
