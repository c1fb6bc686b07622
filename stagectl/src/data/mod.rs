//! Fixture data: expanding file patterns, the snapshot key, and loading files into a running
//! data service through its own client (psql, the mariadb/mysql client, redis-cli, or a command), streamed over
//! `docker exec` stdin — never whole files in memory, and masked on the way for CSV.

mod copy;
mod csv_check;
mod error;
mod fast;
mod files;
pub mod mask;
mod mysql;
mod psql_output;
pub mod snapshot;

pub use error::FixtureError;
pub use files::expand_files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::docker::{ByteStream, ContainerEngine};
use crate::manifest::{Fixtures, Loader, Manifest};
use crate::text::last_lines_joined;
use mask::Masker;

#[derive(Debug, Clone, Serialize)]
pub struct FileLoad {
    pub file: String,
    pub rows: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct LoadReport {
    pub files: Vec<FileLoad>,
    pub rows: u64,
    pub seconds: f64,
}

/// Hash of the fixture inputs: file names and contents, loader, masking rules and seed.
pub fn fixtures_hash(dir: &Path, fixtures: &Fixtures, files: &[PathBuf]) -> Result<String, FixtureError> {
    let mut h = Sha256::new();
    for f in files {
        h.update(display(dir, f).as_bytes());
        h.update(b"\0");
        hash_file(&mut h, f)?;
    }
    h.update(format!("{:?}|{:?}|{}", fixtures.loader, fixtures.mask, fixtures.seed).as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// Each fixture file (as displayed) with the first 16 hex digits of its content hash: kept on
/// the data service's container, so a later run can say which file changed.
pub fn file_digests(dir: &Path, files: &[PathBuf]) -> Result<BTreeMap<String, String>, FixtureError> {
    files.iter().map(|f| Ok((display(dir, f), file_digest(f)?.chars().take(16).collect()))).collect()
}

/// What differs between the fixture files of the last load (`before`) and now (`now`), in
/// file order: `data/10_users.sql changed`, `... added`, `... removed`. Empty when the files
/// are the same (another input of the snapshot key changed).
pub fn changed_files(before: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = now
        .iter()
        .filter_map(|(f, d)| match before.get(f) {
            None => Some(format!("{f} added")),
            Some(old) if old != d => Some(format!("{f} changed")),
            Some(_) => None,
        })
        .collect();
    out.extend(before.keys().filter(|f| !now.contains_key(*f)).map(|f| format!("{f} removed")));
    out
}

/// Hash of the contents of host paths (files or directories, recursively, sorted).
pub fn paths_hash(paths: &[PathBuf]) -> Result<String, FixtureError> {
    let mut h = Sha256::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    stack.sort();
    stack.reverse();
    while let Some(p) = stack.pop() {
        h.update(p.to_string_lossy().as_bytes());
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|source| FixtureError::Read { path: p.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            entries.reverse();
            stack.extend(entries);
        } else if p.is_file() {
            hash_file(&mut h, &p)?;
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Adds a file's content hash to `h`. Hashes are cached by (path, size, mtime, inode) in the
/// user's cache directory, the way make and git trust file metadata, so a warm rebuild does not
/// re-read hundreds of megabytes of unchanged fixtures.
fn hash_file(h: &mut Sha256, path: &Path) -> Result<(), FixtureError> {
    h.update(file_digest(path)?.as_bytes());
    Ok(())
}

fn file_digest(path: &Path) -> Result<String, FixtureError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let read_error = |source| FixtureError::Read { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    let stamp = format!("{}:{}:{}:{}", meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string();
    let cache = hash_cache();
    if let Some((s, d)) = cache.lock().expect("hash cache lock").get(&key) {
        if *s == stamp {
            return Ok(d.clone());
        }
    }
    let mut f = std::fs::File::open(path).map_err(read_error)?;
    let mut file_hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        file_hash.update(&buf[..n]);
    }
    let digest = hex::encode(file_hash.finalize());
    cache.lock().expect("hash cache lock").insert(key, (stamp, digest.clone()));
    Ok(digest)
}

type HashCache = std::sync::Mutex<std::collections::HashMap<String, (String, String)>>;

fn hash_cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("stagectl").join("file-hashes.json"))
}

fn hash_cache() -> &'static HashCache {
    static CACHE: std::sync::OnceLock<HashCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        let map = hash_cache_path().and_then(|p| std::fs::read(p).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        std::sync::Mutex::new(map)
    })
}

/// Writes the file-hash cache back (atomically; a lost race only costs a re-hash later).
pub fn save_hash_cache() {
    let Some(path) = hash_cache_path() else { return };
    let Ok(json) = serde_json::to_vec(&*hash_cache().lock().expect("hash cache lock")) else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

pub fn display(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir).unwrap_or(file).display().to_string()
}

/// `03_users.csv` → `users`.
pub fn table_name(file: &Path) -> String {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match stem.split_once('_') {
        Some((prefix, rest)) if !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
        _ => stem,
    }
}

/// Loads every fixture file into the running container `id`, in order. Stops at the first
/// failure with a message naming the file and line.
pub async fn load<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    manifest: &Manifest,
    fixtures: &Fixtures,
    files: &[PathBuf],
    on_file: &(dyn Fn(&FileLoad) + Send + Sync),
) -> Result<LoadReport, FixtureError> {
    let started = Instant::now();
    let masker = Masker::new(&fixtures.seed, &fixtures.mask);
    let mut report = LoadReport::default();
    for (i, file) in files.iter().enumerate() {
        let t0 = Instant::now();
        let name = display(&manifest.dir, file);
        let rows = load_file(docker, id, manifest, fixtures, &masker, file, &name, &files[i + 1..]).await?;
        let done = FileLoad { file: name, rows, seconds: t0.elapsed().as_secs_f64() };
        on_file(&done);
        report.rows += rows;
        report.files.push(done);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn load_file<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    manifest: &Manifest,
    fixtures: &Fixtures,
    masker: &Masker,
    file: &Path,
    name: &str,
    later: &[PathBuf],
) -> Result<u64, FixtureError> {
    let ext = file.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match &fixtures.loader {
        Loader::Postgres { database, user } => {
            let psql = |extra: &[&str]| psql_command(user, database, extra);
            match ext.as_str() {
                "sql" => {
                    let (code, out) = docker.exec_with_input(id, &psql(&["-f", "-"]), file_stream(file).await?).await?;
                    if code != 0 {
                        return Err(psql_error(name, &out));
                    }
                    Ok(out.lines().filter_map(|l| l.strip_prefix("INSERT 0 ")).filter_map(|n| n.trim().parse::<u64>().ok()).sum())
                }
                "csv" => {
                    let csv = copy::CsvFile {
                        path: file,
                        name,
                        table: table_name(file),
                        origin: files::origin(&manifest.dir, fixtures, file),
                        dir: &manifest.dir,
                        later,
                    };
                    copy::copy_csv(docker, id, (user, database), masker, &csv).await
                }
                other => Err(FixtureError::UnsupportedFile {
                    file: name.to_string(),
                    loader: "postgres",
                    extension: other.to_string(),
                    origin: files::origin(&manifest.dir, fixtures, file),
                }),
            }
        }
        Loader::Mysql { database, user } => match ext.as_str() {
            "sql" => mysql::load_sql(docker, id, (user, database), file, name).await,
            "csv" => mysql::load_csv(docker, id, (user, database), masker, (file, name, &table_name(file))).await,
            other => Err(FixtureError::UnsupportedFile {
                file: name.to_string(),
                loader: "mysql",
                extension: other.to_string(),
                origin: files::origin(&manifest.dir, fixtures, file),
            }),
        },
        Loader::Redis => {
            let cmd: Vec<String> = vec!["redis-cli".into(), "--pipe".into()];
            let input = redis_protocol(file, name)?;
            let (code, out) = docker.exec_with_input(id, &cmd, input).await?;
            let errors = out
                .lines()
                .find_map(|l| l.strip_prefix("errors: "))
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.trim().parse::<u64>().ok());
            let replies = out.lines().find_map(|l| l.split("replies: ").nth(1)).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0);
            if code != 0 || errors != Some(0) {
                return Err(FixtureError::RedisPipe { file: name.to_string(), output: out.trim_end().to_string() });
            }
            Ok(replies)
        }
        Loader::Command { command } => {
            let (code, out) = docker.exec_with_input(id, command, file_stream(file).await?).await?;
            if code != 0 {
                return Err(FixtureError::LoaderCommand {
                    file: name.to_string(),
                    command: command.join(" "),
                    code,
                    output_tail: last_lines_joined(&out, 20, "\n"),
                });
            }
            Ok(0)
        }
    }
}

/// psql inside a PostgreSQL container, over its local socket, stopping at the first error.
pub fn psql_command(user: &str, database: &str, extra: &[&str]) -> Vec<String> {
    let mut cmd: Vec<String> = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", database].iter().map(|s| s.to_string()).collect();
    cmd.extend(extra.iter().map(|s| s.to_string()));
    cmd
}

/// The command that tells whether a container holds a complete fixture load.
pub fn load_marker_check() -> Vec<String> {
    vec!["test".into(), "-f".into(), snapshot::MARKER_PATH.into()]
}

async fn file_stream(file: &Path) -> Result<ByteStream, FixtureError> {
    let f = tokio::fs::File::open(file).await.map_err(|source| FixtureError::Read { path: file.to_path_buf(), source })?;
    Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)))
}

/// Turns `SET key "a value"` lines into Redis protocol (blank lines and `#` comments skipped).
fn redis_protocol(file: &Path, name: &str) -> Result<ByteStream, FixtureError> {
    let text = std::fs::read_to_string(file).map_err(|source| FixtureError::Read { path: name.into(), source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let args = split_words(line).ok_or_else(|| FixtureError::UnclosedQuote { file: name.to_string(), line: i + 1 })?;
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(Box::pin(futures_util::stream::once(async move { Ok(Bytes::from(out)) })))
}

/// The words of a line, `None` when a quote is left open.
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            '\\' if in_quotes => cur.push(chars.next().unwrap_or('\\')),
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    words.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            c => {
                cur.push(c);
                has_word = true;
            }
        }
    }
    if in_quotes {
        return None;
    }
    if has_word {
        words.push(cur);
    }
    Some(words)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// psql's error on a `.sql` fixture, named by the file and the line psql names.
fn psql_error(name: &str, out: &str) -> FixtureError {
    let file = name.to_string();
    let Some(f) = psql_output::parse(out) else {
        return FixtureError::Psql { file, line: None, message: last_lines_joined(out, 10, "\n"), help: None };
    };
    let help = psql_output::missing_relation(&f.message)
        .map(|_| "create it in a migration, or in a .sql fixture loaded before this one (files load in the order of `files`)".to_string());
    FixtureError::Psql { file, line: f.script_line.or(f.copy_line), message: format!("{}{}", f.render_message(), f.render_notes()), help }
}

/// A sensitive column holding values that do not look masked.
#[derive(Debug, Clone, Serialize)]
pub struct ScanFinding {
    pub service: String,
    pub column: String,
    pub rule: String,
    pub unmasked: u64,
    pub total: u64,
}

/// Checks every `sensitive` column of a PostgreSQL or MySQL fixture set in the running
/// container. Values are compared on the spot and never returned, so a leak is not leaked again.
pub async fn scan<E: ContainerEngine + ?Sized>(docker: &E, id: &str, fixtures: &Fixtures) -> Result<Vec<ScanFinding>, FixtureError> {
    if !matches!(fixtures.loader, Loader::Postgres { .. } | Loader::Mysql { .. }) {
        return Ok(vec![]);
    }
    let mut findings = Vec::new();
    for column in &fixtures.sensitive {
        let Some((table, col)) = column.split_once('.') else { continue };
        let Some(rule) = fixtures.mask.get(column) else { continue };
        let values = match &fixtures.loader {
            Loader::Mysql { database, user } => mysql::column_values(docker, id, (user, database), column).await?,
            Loader::Postgres { database, user } => {
                let sql = format!("COPY (SELECT {} FROM {}) TO STDOUT WITH (FORMAT csv)", quote_ident(col), quote_ident(table));
                let (code, out) = docker.exec(id, &psql_command(user, database, &["-c", &sql])).await?;
                if code != 0 {
                    return Err(FixtureError::ScanQuery { column: column.clone(), output: psql_output::squash(&out) });
                }
                let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(out.as_bytes());
                let mut values = Vec::new();
                for rec in reader.records() {
                    let rec = rec.map_err(|source| FixtureError::ScanCsv { column: column.clone(), source })?;
                    values.push(rec.get(0).filter(|v| !v.is_empty()).map(str::to_string));
                }
                values
            }
            _ => continue,
        };
        let total = values.len() as u64;
        let unmasked = values.iter().filter(|v| !Masker::looks_masked(rule, v.as_deref())).count() as u64;
        findings.push(ScanFinding { service: fixtures.service.clone(), column: column.clone(), rule: rule.as_string(), unmasked, total });
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_errors_of_sql_files_are_mapped_to_file_and_line() {
        assert_eq!(
            psql_error(
                "fixtures/a.sql",
                "INSERT 0 1\npsql:<stdin>:7: ERROR:  relation \"nope\" does not exist\nLINE 1: insert into nope\n"
            )
            .to_string(),
            "fixtures/a.sql:7: ERROR: relation \"nope\" does not exist\n  = help: create it in a migration, or in a .sql fixture loaded before this one (files load in the order of `files`)"
        );
        assert_eq!(
            psql_error("fixtures/b.sql", "psql:<stdin>:3: ERROR:  duplicate key value violates unique constraint \"t_pkey\"\nDETAIL:  Key (id)=(1) already exists.\n")
                .to_string(),
            "fixtures/b.sql:3: ERROR: duplicate key value violates unique constraint \"t_pkey\"\n  detail: Key (id)=(1) already exists."
        );
        assert_eq!(
            psql_error("fixtures/c.sql", "psql: error: connection refused\n").to_string(),
            "fixtures/c.sql: psql: error: connection refused"
        );
    }

    #[test]
    fn changed_files_name_what_changed_was_added_or_removed() {
        let m = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let before = m(&[("f/01_a.sql", "1"), ("f/02_b.csv", "2"), ("f/03_c.sql", "3")]);
        assert!(changed_files(&before, &before).is_empty());
        let now = m(&[("f/01_a.sql", "1"), ("f/02_b.csv", "9"), ("f/04_d.sql", "4")]);
        assert_eq!(changed_files(&before, &now), ["f/02_b.csv changed", "f/04_d.sql added", "f/03_c.sql removed"]);
    }

    #[test]
    fn table_names_drop_a_numeric_prefix() {
        assert_eq!(table_name(Path::new("f/03_users.csv")), "users");
        assert_eq!(table_name(Path::new("f/order_items.csv")), "order_items");
    }

    #[test]
    fn redis_lines_split_on_spaces_and_respect_quotes() {
        assert_eq!(split_words(r#"SET k "a b \"c\"""#).unwrap(), vec!["SET", "k", "a b \"c\""]);
        assert_eq!(split_words(r#"SET k """#).unwrap(), vec!["SET", "k", ""]);
        assert!(split_words(r#"SET "k"#).is_none());
    }

    #[test]
    fn redis_syntax_errors_name_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("cache.redis");
        std::fs::write(&file, "# warm the cache\nSET k \"open\n").unwrap();
        let err = redis_protocol(&file, "data/cache.redis").err().unwrap();
        assert_eq!(err.to_string(), "data/cache.redis:2: unclosed quote");
        let err = redis_protocol(&d.path().join("gone.redis"), "data/gone.redis").err().unwrap();
        assert!(err.to_string().starts_with("reading data/gone.redis: "), "{err}");
    }
}
