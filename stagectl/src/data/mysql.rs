//! The mysql loader: MySQL/MariaDB fixtures through the client inside the container.
//!
//! - `.sql` files are streamed to `mariadb` (or `mysql`) as they are; the client stops at the
//!   first error and names the input line, which is the file's line.
//! - `.csv` files (file stem = table, header = columns) are parsed on the host, masked, and
//!   sent as multi-row `INSERT` statements, one batch a line, inside one transaction: a
//!   failure rolls the whole file back (InnoDB), and the server's "at line K ... at row R"
//!   points back at the CSV line. INSERT batches rather than `LOAD DATA LOCAL INFILE`: with
//!   LOCAL the server turns bad values and duplicate keys into warnings and goes on, where
//!   strict mode makes an INSERT fail, naming the row.
//!
//! The password is never handled by stagectl: the client is started by a small `sh` script
//! that reads it from the container's own environment (`MARIADB_ROOT_PASSWORD` or
//! `MYSQL_ROOT_PASSWORD` for root, `MARIADB_PASSWORD` or `MYSQL_PASSWORD` for another user)
//! into `MYSQL_PWD`, so it is in no argv, log or message.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::mask::Masker;
use super::{file_stream, FixtureError};
use crate::docker::{ByteStream, ContainerEngine};
use crate::manifest::MaskRule;
use crate::text::last_lines_joined;

/// Rows per INSERT statement, and the most bytes one may hold (the server's default
/// `max_allowed_packet` is 16 MB).
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 1 << 20;
/// Sent instead of the rest of a malformed CSV file: a statement the server rejects, so the
/// client stops and the transaction of the file is rolled back.
const POISON: &[u8] = b"stagectl: malformed CSV, abort;\n";

const CLIENT_SCRIPT: &str = r#"u=$1; shift
if [ "$u" = root ]; then p=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}; else p=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}; fi
if [ -n "$p" ]; then MYSQL_PWD=$p; export MYSQL_PWD; fi
for c in mariadb mysql; do
  if command -v "$c" >/dev/null 2>&1; then exec "$c" --user="$u" --default-character-set=utf8mb4 "$@"; fi
done
echo "stagectl: neither mariadb nor mysql is installed in the container" >&2; exit 127"#;

/// The MySQL client inside the container, as `user` on `database`, in batch mode.
pub fn client_command(user: &str, database: &str, extra: &[&str]) -> Vec<String> {
    let mut cmd: Vec<String> = vec!["sh".into(), "-c".into(), CLIENT_SCRIPT.into(), "stagectl-mysql".into(), user.into()];
    cmd.push("--batch".into());
    if !database.is_empty() {
        cmd.push(format!("--database={database}"));
    }
    cmd.extend(extra.iter().map(|s| s.to_string()));
    cmd
}

/// `` `name` ``, a MySQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A MySQL string literal (backslash escapes, the default `sql_mode`).
fn push_literal(out: &mut Vec<u8>, value: &str) {
    out.push(b'\'');
    for b in value.bytes() {
        match b {
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            0x1a => out.extend_from_slice(b"\\Z"),
            b => out.push(b),
        }
    }
    out.push(b'\'');
}

/// The client's error: `ERROR 1146 (42S02) at line 3: Table 'app.users' doesn't exist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientError {
    pub code: u32,
    pub line: Option<u64>,
    pub message: String,
}

pub(super) fn parse_client_error(out: &str) -> Option<ClientError> {
    let re = regex::Regex::new(r"(?m)^ERROR (\d+)(?: \(([0-9A-Za-z]{5})\))?(?: at line (\d+))?: (.*)$").expect("valid regex");
    let c = re.captures(out)?;
    Some(ClientError {
        code: c[1].parse().unwrap_or(0),
        line: c.get(3).and_then(|l| l.as_str().parse().ok()),
        message: format!("ERROR {}: {}", &c[1], c[4].trim()),
    })
}

/// Loads a `.sql` file.
pub(super) async fn load_sql<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    (user, database): (&str, &str),
    file: &Path,
    name: &str,
) -> Result<u64, FixtureError> {
    let (code, out) = docker.exec_with_input(id, &client_command(user, database, &[]), file_stream(file).await?).await?;
    if code == 0 {
        return Ok(0);
    }
    Err(match parse_client_error(&out) {
        Some(e) => {
            let help = matches!(e.code, 1146).then(|| {
                "create it in a migration, or in a .sql fixture loaded before this one (files load in the order of `files`)".to_string()
            });
            FixtureError::Mysql { file: name.to_string(), line: e.line, message: e.message, help }
        }
        None => FixtureError::Mysql { file: name.to_string(), line: None, message: last_lines_joined(&out, 10, "\n"), help: None },
    })
}

/// What the CSV stream learnt, read after the client exited.
#[derive(Debug, Default)]
struct Sent {
    /// The file line where each row sent starts, in order.
    row_lines: Vec<u64>,
    /// The index in `row_lines` of each batch's first row.
    batch_starts: Vec<usize>,
    failure: Option<FixtureError>,
}

type Slot = Arc<Mutex<Sent>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Sent> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lines of the statement stream before the first batch (`SET NAMES`, `START TRANSACTION`).
const PREAMBLE_LINES: u64 = 2;

/// Loads a `.csv` file into `table`; the number of rows.
pub(super) async fn load_csv<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    (user, database): (&str, &str),
    masker: &Masker,
    (file, name, table): (&Path, &str, &str),
) -> Result<u64, FixtureError> {
    let header = super::copy::csv_header(file, name)?;
    let slot = Slot::default();
    let input = insert_stream(file.to_path_buf(), name.to_string(), header.clone(), table.to_string(), masker.clone(), slot.clone());
    let result = docker.exec_with_input(id, &client_command(user, database, &[]), input).await;
    let sent = std::mem::take(&mut *lock(&slot));
    if let Some(f) = sent.failure {
        return Err(f);
    }
    let (code, out) = result?;
    if code == 0 {
        return Ok(sent.row_lines.len() as u64);
    }
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(e) = parse_client_error(&out) else {
        return Err(FixtureError::Mysql { file: name.to_string(), line: None, message: last_lines_joined(&out, 10, "\n"), help: None });
    };
    let mysql =
        |line: Option<u64>, message: String, help: Option<String>| FixtureError::Mysql { file: name.to_string(), line, message, help };
    Err(match e.code {
        1146 => mysql(
            Some(1),
            format!("{}: a CSV file loads into the table named after it ({file_name} → {table})", e.message),
            Some("create it in a migration or in a .sql fixture that sorts before this file".into()),
        ),
        1054 => mysql(
            Some(1),
            e.message,
            Some("the header names the columns to load: rename it to a column of the table, or add the column in a migration".into()),
        ),
        _ => {
            let (line, place) = row_of(&sent, &e);
            mysql(line, format!("{}{place}", e.message), None)
        }
    })
}

/// The CSV line the server's error is about: its "at row R" of the batch on the statement
/// line it names; without a row, the lines of the batch.
fn row_of(sent: &Sent, e: &ClientError) -> (Option<u64>, String) {
    let Some(batch) = e.line.and_then(|l| l.checked_sub(PREAMBLE_LINES + 1)).map(|b| b as usize) else { return (None, String::new()) };
    let Some(&start) = sent.batch_starts.get(batch) else { return (None, String::new()) };
    let end = sent.batch_starts.get(batch + 1).copied().unwrap_or(sent.row_lines.len());
    let row = regex::Regex::new(r"at row (\d+)").expect("valid regex").captures(&e.message).and_then(|c| c[1].parse::<usize>().ok());
    match row.and_then(|r| sent.row_lines.get(start + r.checked_sub(1)?)).filter(|_| row.is_some_and(|r| start + r <= end)) {
        Some(line) => (Some(*line), String::new()),
        None => {
            let first = sent.row_lines.get(start).copied();
            let last = end.checked_sub(1).and_then(|i| sent.row_lines.get(i)).copied();
            match (first, last) {
                (Some(a), Some(b)) if b > a => (Some(a), format!(" (in the rows of lines {a}-{b}, sent as one INSERT)")),
                (a, _) => (a, String::new()),
            }
        }
    }
}

/// Parses and masks the CSV on a blocking thread, sending INSERT batches; a malformed file
/// ends the stream with [`POISON`] (the client stops, the transaction is rolled back).
fn insert_stream(file: PathBuf, name: String, header: Vec<String>, table: String, masker: Masker, slot: Slot) -> ByteStream {
    let rules: Vec<Option<MaskRule>> = header.iter().map(|c| masker.rule(&table, c).cloned()).collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let send = |b: Vec<u8>| tx.blocking_send(Ok(Bytes::from(b))).is_ok();
        let prefix = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_ident(&table),
            header.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")
        );
        if let Err(failure) = insert_rows(&file, &name, &prefix, &rules, &masker, &slot, &send) {
            lock(&slot).failure = Some(failure);
            send(POISON.to_vec());
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

fn insert_rows(
    file: &Path,
    name: &str,
    prefix: &str,
    rules: &[Option<MaskRule>],
    masker: &Masker,
    slot: &Slot,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<(), FixtureError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_path(file).map_err(|source| FixtureError::Csv {
        file: name.to_string(),
        line: None,
        source,
    })?;
    if !send(b"SET NAMES utf8mb4;\nSTART TRANSACTION;\n".to_vec()) {
        return Ok(());
    }
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut in_batch = 0usize;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                let detail = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("row has {len} fields, the header has {expected_len}")
                    }
                    _ => e.to_string(),
                };
                return Err(FixtureError::MalformedCsv { file: name.to_string(), line, detail });
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        {
            let mut s = lock(slot);
            if in_batch == 0 {
                let n = s.row_lines.len();
                s.batch_starts.push(n);
            }
            s.row_lines.push(line);
        }
        batch.extend_from_slice(if in_batch == 0 { prefix.as_bytes() } else { b"," });
        batch.push(b'(');
        for (i, (v, rule)) in record.iter().zip(rules).enumerate() {
            if i > 0 {
                batch.push(b',');
            }
            // An empty field loads NULL (as an unquoted empty field does in PostgreSQL's CSV).
            let value = match rule {
                _ if v.is_empty() => None,
                Some(rule) => masker.apply(rule, v),
                None => Some(v.to_string()),
            };
            match value {
                Some(v) => push_literal(&mut batch, &v),
                None => batch.extend_from_slice(b"NULL"),
            }
        }
        batch.push(b')');
        in_batch += 1;
        if in_batch >= BATCH_ROWS || batch.len() >= BATCH_BYTES {
            batch.extend_from_slice(b";\n");
            if !send(std::mem::take(&mut batch)) {
                return Ok(());
            }
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        batch.extend_from_slice(b";\n");
    }
    batch.extend_from_slice(b"COMMIT;\n");
    send(batch);
    Ok(())
}

/// The values of `table.column`, hex-encoded by the server so that no value can break the
/// line format; `None` for NULL and for an empty value (as the PostgreSQL scan reads them:
/// nothing there to leak).
pub(super) async fn column_values<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    (user, database): (&str, &str),
    column: &str,
) -> Result<Vec<Option<String>>, FixtureError> {
    let Some((table, col)) = column.split_once('.') else { return Ok(vec![]) };
    let sql = format!("SELECT HEX({}) FROM {}", quote_ident(col), quote_ident(table));
    let (code, out) = docker.exec(id, &client_command(user, database, &["--skip-column-names", "-e", &sql])).await?;
    if code != 0 {
        let output = parse_client_error(&out).map(|e| e.message).unwrap_or_else(|| last_lines_joined(&out, 5, "\n"));
        return Err(FixtureError::ScanQuery { column: column.to_string(), output });
    }
    Ok(out
        .lines()
        .map(str::trim)
        .map(|l| match l {
            "NULL" | "" => None,
            hex => Some(String::from_utf8_lossy(&hex::decode(hex).unwrap_or_default()).into_owned()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_parsed_with_their_line() {
        let e =
            parse_client_error("ERROR 1064 (42000) at line 7: You have an error in your SQL syntax; check the manual near 'x' at line 1\n")
                .unwrap();
        assert_eq!(e.code, 1064);
        assert_eq!(e.line, Some(7));
        assert!(e.message.starts_with("ERROR 1064: You have an error"), "{}", e.message);
        let e = parse_client_error("ERROR 1045 (28000): Access denied for user 'x'@'localhost' (using password: NO)\n").unwrap();
        assert_eq!((e.code, e.line), (1045, None));
        assert!(parse_client_error("all fine\n").is_none());
    }

    #[test]
    fn literals_escape_what_the_server_would_misread() {
        let mut out = Vec::new();
        push_literal(&mut out, "O'Brien \\ \n\r\0\u{1a} é");
        assert_eq!(String::from_utf8(out).unwrap(), "'O\\'Brien \\\\ \\n\\r\\0\\Z é'");
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
    }

    #[test]
    fn a_row_error_points_at_the_csv_line_of_the_row() {
        let sent = Sent { row_lines: vec![2, 3, 5, 6], batch_starts: vec![0, 2], failure: None };
        let e = |line, message: &str| ClientError { code: 1366, line: Some(line), message: message.to_string() };
        // Statement line 3 is the first batch (after SET NAMES and START TRANSACTION).
        assert_eq!(row_of(&sent, &e(3, "ERROR 1366: Incorrect integer value: 'x' for column `t`.`id` at row 2")).0, Some(3));
        assert_eq!(row_of(&sent, &e(4, "ERROR 1366: Incorrect integer value at row 1")).0, Some(5));
        let (line, place) = row_of(&sent, &e(4, "ERROR 1062: Duplicate entry '1' for key 'PRIMARY'"));
        assert_eq!(line, Some(5));
        assert_eq!(place, " (in the rows of lines 5-6, sent as one INSERT)");
        assert_eq!(row_of(&sent, &e(9, "x")).0, None);
        assert_eq!(row_of(&sent, &e(4, "at row 7")).0, Some(5));
    }

    #[test]
    fn the_client_script_reads_the_password_in_the_container() {
        let cmd = client_command("root", "wiki", &["-e", "SELECT 1"]);
        assert_eq!(&cmd[..2], &["sh", "-c"]);
        assert!(cmd[2].contains("MARIADB_ROOT_PASSWORD") && cmd[2].contains("MYSQL_PWD"));
        assert_eq!(&cmd[3..], &["stagectl-mysql", "root", "--batch", "--database=wiki", "-e", "SELECT 1"]);
    }
}
