//! Migrations applied by stagectl itself (the native form of `[migrations.<service>]`):
//! `NNN_name.up.sql` / `NNN_name.down.sql` files, recorded in the database's
//! `stagectl_migrations` table with a SHA-256 checksum of each applied `.up.sql` file.
//!
//! This module is the pure part: finding and ordering the files, pending and drift decisions,
//! mapping an error position to a line. `lint` finds locking and destructive changes in a file's
//! text, `pg` talks to PostgreSQL, `check` runs `stagectl check migrations` (the lint, and the
//! files applied to a throwaway copy of the database); `image` is that check for migrations
//! that live inside a job's image (the command form without `dir`).

pub mod check;
mod error;
mod image;
pub mod lint;
pub mod pg;

pub use error::{FileProblem, MigrationError, SqlError};

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One migration: its `.up.sql` file and, when present, its `.down.sql` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The numeric prefix, as written (`"003"`); ordered by its numeric value.
    pub version: String,
    /// `NNN_name`, the file name without `.up.sql`.
    pub name: String,
    pub up: PathBuf,
    pub down: Option<PathBuf>,
    /// SHA-256 of the `.up.sql` file, hex.
    pub checksum: String,
    pub up_sql: String,
}

/// A row of `stagectl_migrations`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedMigration {
    pub version: String,
    pub name: String,
    pub checksum: String,
    pub duration_ms: f64,
}

/// Reads a migrations directory. Files that end in `.sql` but do not follow
/// `NNN_name.up.sql` / `NNN_name.down.sql`, duplicate versions and down files without an
/// up file are errors: a misnamed migration that silently never runs is worse than a failure.
pub fn discover(dir: &Path) -> Result<Vec<MigrationFile>, MigrationError> {
    let read_dir_error = |source| MigrationError::ReadDir { dir: dir.to_path_buf(), source };
    let entries = std::fs::read_dir(dir).map_err(read_dir_error)?;
    let mut ups: Vec<(u64, String, String, PathBuf)> = Vec::new();
    let mut downs: Vec<(String, PathBuf)> = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_dir_error)?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).map(str::to_string) else { continue };
        if !file.ends_with(".sql") || !path.is_file() {
            continue;
        }
        match parse_name(&file) {
            Some((number, version, name, Direction::Up)) => ups.push((number, version, name, path)),
            Some((_, _, name, Direction::Down)) => downs.push((name, path)),
            None => problems.push(FileProblem::Misnamed { path }),
        }
    }
    ups.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    for pair in ups.windows(2) {
        if pair[0].0 == pair[1].0 {
            problems.push(FileProblem::SameVersion { first: pair[0].3.clone(), second: pair[1].3.clone(), version: pair[0].1.clone() });
        }
    }
    for (name, path) in &downs {
        if !ups.iter().any(|u| &u.2 == name) {
            problems.push(FileProblem::NoMatchingUp { path: path.clone(), name: name.clone() });
        }
    }
    if !problems.is_empty() {
        problems.sort_by_cached_key(ToString::to_string);
        return Err(MigrationError::BadFiles(problems));
    }
    let mut out = Vec::new();
    for (_, version, name, up) in ups {
        let bytes = std::fs::read(&up).map_err(|source| MigrationError::Read { path: up.clone(), source })?;
        let up_sql = String::from_utf8(bytes.clone()).map_err(|_| MigrationError::NotUtf8 { path: up.clone() })?;
        let down = downs.iter().find(|d| d.0 == name).map(|d| d.1.clone());
        out.push(MigrationFile { version, name, up, down, checksum: hex::encode(Sha256::digest(&bytes)), up_sql });
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// `003_add_email.up.sql` → (3, "003", "003_add_email", Up).
fn parse_name(file: &str) -> Option<(u64, String, String, Direction)> {
    let (stem, direction) = if let Some(s) = file.strip_suffix(".up.sql") {
        (s, Direction::Up)
    } else if let Some(s) = file.strip_suffix(".down.sql") {
        (s, Direction::Down)
    } else {
        return None;
    };
    let (version, rest) = stem.split_once('_')?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || rest.is_empty() {
        return None;
    }
    Some((version.parse().ok()?, version.to_string(), stem.to_string(), direction))
}

/// Files not yet recorded as applied, in order.
pub fn pending<'a>(files: &'a [MigrationFile], applied: &[AppliedMigration]) -> Vec<&'a MigrationFile> {
    files.iter().filter(|f| !applied.iter().any(|a| a.version == f.version)).collect()
}

/// Applied migrations whose file changed or disappeared. Each message names the file.
pub fn drift(dir_display: &str, files: &[MigrationFile], applied: &[AppliedMigration]) -> Vec<String> {
    let mut out = Vec::new();
    for a in applied {
        match files.iter().find(|f| f.version == a.version) {
            None => out.push(format!("{dir_display}/{}.up.sql was applied but is gone; restore it (applied migrations are history)", a.name)),
            Some(f) if f.checksum != a.checksum => out.push(format!(
                "{dir_display}/{}.up.sql changed after it was applied (checksum {} recorded, file is {}); restore it and put the change in a new migration",
                f.name,
                &a.checksum[..a.checksum.len().min(12)],
                &f.checksum[..12]
            )),
            Some(_) => {}
        }
    }
    out
}

/// 1-based line of a 1-based character position in `sql` (PostgreSQL reports error positions
/// in characters of the query text).
pub fn line_of_position(sql: &str, position: usize) -> usize {
    1 + sql.chars().take(position.saturating_sub(1)).filter(|c| *c == '\n').count()
}

/// Statements that cannot run inside a transaction block: the file is then applied one
/// statement at a time, outside a transaction.
pub fn needs_no_transaction(sql: &str) -> bool {
    crate::sql::identifiers(sql).contains("concurrently")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn discovers_in_numeric_order_with_down_files_and_checksums() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "10_later.up.sql", "select 10;");
        write(d.path(), "2_second.up.sql", "select 2;");
        write(d.path(), "2_second.down.sql", "select -2;");
        write(d.path(), "README.md", "not sql");
        let files = discover(d.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["2_second", "10_later"]);
        assert!(files[0].down.as_ref().unwrap().ends_with("2_second.down.sql"));
        assert!(files[1].down.is_none());
        assert_eq!(files[0].checksum, hex::encode(Sha256::digest(b"select 2;")));
    }

    #[test]
    fn misnamed_and_duplicate_files_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "001_a.up.sql", "");
        write(d.path(), "1_b.up.sql", "");
        write(d.path(), "add_users.sql", "");
        write(d.path(), "005_orphan.down.sql", "");
        let err = discover(d.path()).unwrap_err().to_string();
        assert!(err.contains("add_users.sql: not a migration file name"), "{err}");
        assert!(err.contains("same version"), "{err}");
        assert!(err.contains("005_orphan.down.sql: no matching 005_orphan.up.sql"), "{err}");
        assert!(matches!(discover(d.path()), Err(MigrationError::BadFiles(p)) if p.len() == 3));
    }

    #[test]
    fn sql_errors_name_file_and_line_with_detail_and_hint() {
        let mut e = SqlError {
            file: "migrations/002_x.up.sql".into(),
            line: 3,
            severity: "ERROR".into(),
            message: "column \"x\" does not exist".into(),
            detail: None,
            hint: None,
        };
        assert_eq!(e.to_string(), "migrations/002_x.up.sql:3: ERROR: column \"x\" does not exist");
        e.detail = Some("Key (id)=(1) already exists.".into());
        e.hint = Some("Perhaps you meant \"y\".".into());
        assert_eq!(
            MigrationError::Sql(Box::new(e)).to_string(),
            "migrations/002_x.up.sql:3: ERROR: column \"x\" does not exist\n  detail: Key (id)=(1) already exists.\n  hint: Perhaps you meant \"y\"."
        );
    }

    fn file(version: &str, sql: &str) -> MigrationFile {
        MigrationFile {
            version: version.into(),
            name: format!("{version}_m"),
            up: PathBuf::from(format!("{version}_m.up.sql")),
            down: None,
            checksum: hex::encode(Sha256::digest(sql.as_bytes())),
            up_sql: sql.into(),
        }
    }

    fn applied(f: &MigrationFile) -> AppliedMigration {
        AppliedMigration { version: f.version.clone(), name: f.name.clone(), checksum: f.checksum.clone(), duration_ms: 1.0 }
    }

    #[test]
    fn pending_and_drift() {
        let files = vec![file("001", "a"), file("002", "b"), file("003", "c")];
        let mut rows = vec![applied(&files[0]), applied(&files[1])];
        assert_eq!(pending(&files, &rows).iter().map(|f| f.version.as_str()).collect::<Vec<_>>(), ["003"]);
        assert!(drift("m", &files, &rows).is_empty());
        rows[1].checksum = hex::encode(Sha256::digest(b"old"));
        let d = drift("m", &files, &rows);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("m/002_m.up.sql changed after it was applied"), "{d:?}");
        rows.push(AppliedMigration { version: "009".into(), name: "009_gone".into(), checksum: "x".into(), duration_ms: 0.0 });
        assert!(drift("m", &files, &rows)[1].contains("009_gone.up.sql was applied but is gone"));
    }

    #[test]
    fn error_positions_map_to_lines() {
        let sql = "-- comment\nALTER TABLE t\n  ADD COLUMN x int NOT NUL;";
        let pos = sql.find("NUL;").unwrap() + 1;
        assert_eq!(line_of_position(sql, pos), 3);
        assert_eq!(line_of_position(sql, 1), 1);
        assert_eq!(line_of_position("é\nx", 3), 2);
    }

    #[test]
    fn concurrently_needs_no_transaction() {
        assert!(needs_no_transaction("CREATE INDEX CONCURRENTLY i ON t (x);"));
        assert!(!needs_no_transaction("CREATE INDEX i ON t (x); -- not concurrently"));
        assert!(!needs_no_transaction("INSERT INTO t VALUES ('concurrently');"));
    }
}
