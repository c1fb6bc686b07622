//! One CSV file into PostgreSQL: `COPY table (header columns) FROM STDIN`, the file streamed as
//! it is or masked row by row, and checked on the way ([`csv_check`]) so that a NUL byte, a
//! quote left open or a row of the wrong width is reported as what it is, at its line, instead
//! of as PostgreSQL's misreading of it. What only PostgreSQL can see (a missing table or
//! column, a bad value) is mapped to the file's line, with a hint.
//!
//! A file found malformed is cut short with [`POISON`], so the COPY fails as a whole: no row
//! of it is committed, and the load fails (never marked loaded, never snapshotted).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;

use super::csv_check::{CsvProblem, CsvScanner, Dialect, LineMap};
use super::fast;
use super::mask::Masker;
use super::psql_output::{self, PsqlFailure};
use super::{display, psql_command, quote_ident, FixtureError};
use crate::docker::{ByteStream, ContainerEngine};
use crate::manifest::MaskRule;
use crate::text::last_lines_joined;

/// Sent instead of the rest of a malformed file: a quote that is never closed (after a line
/// break, so it cannot complete the row cut short), which PostgreSQL rejects at the end of
/// input. Not sent when the input already ends inside a quoted value: that end fails alone.
const POISON: &[u8] = b"\n\"stagectl: malformed input, abort the COPY";

/// What the input stream found, read after the COPY.
#[derive(Debug, Default)]
struct Checked {
    /// stagectl's finding, and how many lines (as PostgreSQL counts them) went out whole
    /// before it: a PostgreSQL error on one of those is real and came first.
    failure: Option<(FixtureError, u64)>,
    map: LineMap,
}

type Slot = Arc<Mutex<Checked>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Checked> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A CSV fixture file and what its errors need to name.
pub(super) struct CsvFile<'a> {
    pub path: &'a Path,
    /// As shown: relative to the manifest directory.
    pub name: &'a str,
    pub table: String,
    /// `` `data/*.csv` (stack.toml:18) ``: what brought the file in.
    pub origin: String,
    /// The manifest directory, and the files loaded after this one (one may create the table).
    pub dir: &'a Path,
    pub later: &'a [PathBuf],
}

/// Loads `csv` with `COPY`; the number of rows. An empty table is bulk-loaded first
/// ([`fast`]); when that is not possible or fails, the plain `COPY` runs, and names the error.
pub(super) async fn copy_csv<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    (user, database): (&str, &str),
    masker: &Masker,
    csv: &CsvFile<'_>,
) -> Result<u64, FixtureError> {
    let header = csv_header(csv.path, csv.name)?;
    if fast::enabled() {
        if let Some(statements) = fast::statements(&csv.table, &copy_statement(&csv.table, &header, true)) {
            let slot = Slot::default();
            let input = input_stream(masker, csv, &header, &slot).await?;
            let args: Vec<&str> = std::iter::once("-1").chain(statements.iter().flat_map(|s| ["-c", s.as_str()])).collect();
            let (code, out) = docker.exec_with_input(id, &psql_command(user, database, &args), input).await?;
            if code == 0 && lock(&slot).failure.is_none() {
                return Ok(copied_rows(&out));
            }
            // Rolled back as a whole: the plain COPY below says what is wrong, at its line.
        }
    }
    let slot = Slot::default();
    let input = input_stream(masker, csv, &header, &slot).await?;
    let copy = copy_statement(&csv.table, &header, false);
    let result = docker.exec_with_input(id, &psql_command(user, database, &["-c", &copy]), input).await;
    let checked = std::mem::take(&mut *lock(&slot));
    let failure = match &result {
        Ok((code, out)) if *code != 0 => psql_output::parse(out),
        _ => None,
    };
    if let Some((found, whole_lines)) = checked.failure {
        // PostgreSQL's own error comes first when it is about the statement (no line) or a
        // row it received whole before stagectl's finding; otherwise it is about the cut.
        let first = failure.as_ref().is_some_and(|f| f.copy_line.is_none_or(|l| l <= whole_lines));
        if !first {
            return Err(found);
        }
    }
    let (code, out) = result?;
    if code != 0 {
        return Err(match failure {
            Some(f) => copy_error(docker, id, (user, database), csv, &checked.map, f).await,
            None => FixtureError::Psql { file: csv.name.to_string(), line: None, message: last_lines_joined(&out, 10, "\n"), help: None },
        });
    }
    Ok(copied_rows(&out))
}

fn copied_rows(out: &str) -> u64 {
    out.lines().filter_map(|l| l.strip_prefix("COPY ")).filter_map(|n| n.trim().parse::<u64>().ok()).sum()
}

/// `COPY table (header columns) FROM STDIN ...`, with `FREEZE` for a table emptied in the
/// same transaction.
fn copy_statement(table: &str, header: &[String], freeze: bool) -> String {
    format!(
        "COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true{})",
        quote_ident(table),
        header.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", "),
        if freeze { ", FREEZE true" } else { "" }
    )
}

/// The file's rows as they go to PostgreSQL: masked when the table has rules, else as they are;
/// checked on the way either way, findings into `slot`.
async fn input_stream(masker: &Masker, csv: &CsvFile<'_>, header: &[String], slot: &Slot) -> Result<ByteStream, FixtureError> {
    Ok(if masker.has_rules_for(&csv.table) {
        masked_stream(csv.path.to_path_buf(), csv.name.to_string(), header.to_vec(), csv.table.clone(), masker.clone(), slot.clone())
    } else {
        checked_stream(csv.path, csv.name, header.to_vec(), slot.clone()).await?
    })
}

/// A failed COPY, named by the fixture's file and line, with a hint where the cause is known.
async fn copy_error<E: ContainerEngine + ?Sized>(
    docker: &E,
    id: &str,
    (user, database): (&str, &str),
    csv: &CsvFile<'_>,
    map: &LineMap,
    f: PsqlFailure,
) -> FixtureError {
    let file = csv.name.to_string();
    if f.copy_line.is_none() {
        if psql_output::missing_relation(&f.message).is_some() {
            let file_name = csv.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            return FixtureError::MissingTable { file, file_name, table: csv.table.clone(), help: missing_table_help(csv) };
        }
        if let Some((column, table)) = psql_output::missing_column(&f.message) {
            let columns = table_columns(docker, id, (user, database), table).await;
            return FixtureError::MissingColumn { file, column: column.to_string(), table: table.to_string(), columns };
        }
    }
    row_error(file, map, &f)
}

/// PostgreSQL's error on a row (or one without a hint of stagectl's), at the file's line.
fn row_error(file: String, map: &LineMap, f: &PsqlFailure) -> FixtureError {
    let line = f.copy_line.map(|l| map.file_line(l));
    let column = f.copy_column.as_ref().map(|c| format!(" (column \"{c}\")")).unwrap_or_default();
    let help = f
        .message
        .starts_with("invalid byte sequence for encoding \"UTF8\"")
        .then(|| "the file is not UTF-8: convert it, e.g. `iconv -f LATIN1 -t UTF-8` for Latin-1 (ISO 8859-1) text".to_string());
    FixtureError::Psql { file, line, message: format!("{}{column}{}", f.render_message(), f.render_notes()), help }
}

/// Where to create the missing table: a later `.sql` fixture that creates it is named.
fn missing_table_help(csv: &CsvFile<'_>) -> String {
    let creates = |f: &PathBuf| {
        let is_sql = f.extension().is_some_and(|e| e.eq_ignore_ascii_case("sql"));
        let mut head = String::new();
        is_sql
            && std::fs::File::open(f).and_then(|h| h.take(4 << 20).read_to_string(&mut head)).is_ok()
            && psql_output::creates_table(&head, &csv.table)
    };
    match csv.later.iter().find(|f| creates(f)) {
        Some(f) => format!(
            "{} creates it, but is loaded after this file (files load pattern by pattern, in the order of `files`, each pattern's matches by name): list its pattern first, or create the table in a migration; this file is loaded by {}",
            display(csv.dir, f),
            csv.origin
        ),
        None => format!(
            "create it in a migration or in a .sql fixture that sorts before this file, or name the file after an existing table; this file is loaded by {}",
            csv.origin
        ),
    }
}

/// The columns of `table`, in order (none when it cannot be asked).
async fn table_columns<E: ContainerEngine + ?Sized>(docker: &E, id: &str, (user, database): (&str, &str), table: &str) -> Vec<String> {
    let regclass = quote_ident(table).replace('\'', "''");
    let sql = format!(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('{regclass}') AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    );
    match docker.exec(id, &psql_command(user, database, &["-tA", "-c", &sql])).await {
        Ok((0, out)) => out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn csv_header(file: &Path, name: &str) -> Result<Vec<String>, FixtureError> {
    let csv_error = |line, source| FixtureError::Csv { file: name.to_string(), line, source };
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_path(file).map_err(|e| csv_error(None, e))?;
    let h = r.headers().map_err(|e| csv_error(Some(1), e))?;
    Ok(h.iter().map(str::to_string).collect())
}

/// The file as it is, checked chunk by chunk as PostgreSQL will read it. A chunk with a
/// problem is not sent: the COPY gets [`POISON`] instead.
async fn checked_stream(file: &Path, name: &str, header: Vec<String>, slot: Slot) -> Result<ByteStream, FixtureError> {
    let f = tokio::fs::File::open(file).await.map_err(|source| FixtureError::Read { path: file.to_path_buf(), source })?;
    let chunks = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
    let check = RawCheck { scanner: CsvScanner::new(Dialect::Postgres), slot, name: name.to_string(), header };
    let stream = futures_util::stream::unfold(Some((chunks, check)), |state| async move {
        let (mut chunks, mut check) = state?;
        match chunks.next().await {
            Some(Ok(chunk)) => {
                let (line, quoted) = (check.scanner.line(), check.scanner.in_quotes());
                match check.scanner.feed(&chunk) {
                    Ok(()) => Some((Ok(chunk), Some((chunks, check)))),
                    // PostgreSQL has the lines before this chunk's first one whole.
                    Err(p) => Some((Ok(check.fail(p.clone(), line.min(p.line()) - 1, quoted)), None)),
                }
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => match check.scanner.finish() {
                Ok(()) => None,
                Err(p) => {
                    let quoted = check.scanner.in_quotes();
                    Some((Ok(check.fail(p.clone(), p.line() - 1, quoted)), None))
                }
            },
        }
    });
    Ok(Box::pin(stream))
}

/// The scanner of a file streamed as it is; hands its line map to the slot when dropped
/// (the stream is dropped when the COPY ends, also when PostgreSQL stops it early).
struct RawCheck {
    scanner: CsvScanner,
    slot: Slot,
    name: String,
    header: Vec<String>,
}

impl RawCheck {
    /// Records the problem; what to send instead of the chunk.
    fn fail(&mut self, problem: CsvProblem, whole_lines: u64, quoted: bool) -> Bytes {
        let error = FixtureError::BadCsv { file: self.name.clone(), problem: Box::new(problem), header: std::mem::take(&mut self.header) };
        lock(&self.slot).failure = Some((error, whole_lines));
        if quoted {
            Bytes::new()
        } else {
            Bytes::from_static(POISON)
        }
    }
}

impl Drop for RawCheck {
    fn drop(&mut self) {
        lock(&self.slot).map = self.scanner.line_map().clone();
    }
}

/// Feeds what the csv crate reads to a scanner of its dialect.
struct ScanRead<R> {
    inner: R,
    scanner: CsvScanner,
}

impl<R: Read> Read for ScanRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        // A problem is kept in the scanner and picked up after each record.
        let _ = if n == 0 { self.scanner.finish() } else { self.scanner.feed(&buf[..n]) };
        Ok(n)
    }
}

/// Parses and masks the CSV on a blocking thread, sending re-encoded chunks. A malformed
/// file ends the stream with [`POISON`] after the last whole row, so the COPY fails as a
/// whole instead of committing the rows before it.
fn masked_stream(file: PathBuf, name: String, header: Vec<String>, table: String, masker: Masker, slot: Slot) -> ByteStream {
    let rules: Vec<Option<MaskRule>> = header.iter().map(|c| masker.rule(&table, c).cloned()).collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let send = |b: Vec<u8>| tx.blocking_send(Ok(Bytes::from(b))).is_ok();
        let mut map = LineMap::default();
        let outcome = mask_rows(&file, &name, &header, &rules, &masker, &mut map, &send);
        let mut checked = lock(&slot);
        checked.map = map;
        if let Err(failure) = outcome {
            checked.failure = Some(failure);
            drop(checked);
            send(POISON.to_vec());
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Masks the rows of `file` and sends them re-encoded; on a problem, sends the rows before it
/// and returns it with the number of lines sent.
fn mask_rows(
    file: &Path,
    name: &str,
    header: &[String],
    rules: &[Option<MaskRule>],
    masker: &Masker,
    map: &mut LineMap,
    send: &dyn Fn(Vec<u8>) -> bool,
) -> Result<(), (FixtureError, u64)> {
    let input = std::fs::File::open(file).map_err(|source| (FixtureError::Read { path: file.to_path_buf(), source }, 0))?;
    let input = ScanRead { inner: input, scanner: CsvScanner::new(Dialect::CsvCrate).with_rows() };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    // The header's row (the csv crate reads it with the first record).
    let mut header_row = true;
    let writer = || csv::WriterBuilder::new().from_writer(Vec::with_capacity(128 * 1024));
    let mut w = writer();
    let newlines = |fields: &mut dyn Iterator<Item = &[u8]>| fields.map(|f| f.iter().filter(|b| **b == b'\n').count() as u64).sum::<u64>();
    let _ = w.write_record(header);
    // Lines of the output, as PostgreSQL counts them.
    let mut lines = 1 + newlines(&mut header.iter().map(|h| h.as_bytes()));
    let mut record = csv::StringRecord::new();
    loop {
        let read = reader.read_record(&mut record);
        let scanner = &mut reader.get_mut().scanner;
        if std::mem::take(&mut header_row) {
            scanner.next_row();
        }
        // The scanner reads ahead: the row the csv crate read is one it passed whole, unless
        // it is the one with the problem.
        let row_line = scanner.next_row();
        let problem = scanner.problem().cloned().filter(|_| row_line.is_none() || !matches!(read, Ok(true)));
        let failure = match (problem, read) {
            (Some(problem), _) => FixtureError::BadCsv { file: name.to_string(), problem: Box::new(problem), header: header.to_vec() },
            (None, Ok(false)) => break,
            (None, Ok(true)) => {
                let fields: Vec<Option<String>> = record
                    .iter()
                    .zip(rules)
                    .map(|(v, r)| match r {
                        Some(rule) if !v.is_empty() => masker.apply(rule, v),
                        _ => Some(v.to_string()),
                    })
                    .collect();
                // An unquoted empty field is NULL in PostgreSQL's CSV format.
                let _ = w.write_record(fields.iter().map(|f| f.as_deref().unwrap_or("").as_bytes()));
                let first = lines + 1;
                lines = first + newlines(&mut fields.iter().map(|f| f.as_deref().unwrap_or("").as_bytes()));
                map.row(first, lines, row_line.unwrap_or(first));
                if w.get_ref().len() >= 64 * 1024 && !send(std::mem::replace(&mut w, writer()).into_inner().unwrap_or_default()) {
                    return Ok(());
                }
                continue;
            }
            (None, Err(e)) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                let detail = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("row has {len} fields, the header has {expected_len}")
                    }
                    _ => e.to_string(),
                };
                FixtureError::MalformedCsv { file: name.to_string(), line, detail }
            }
        };
        send(w.into_inner().unwrap_or_default());
        return Err((failure, lines));
    }
    send(w.into_inner().unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(mut stream: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    /// The bytes `checked_stream` sends for `text`, and what it found.
    async fn checked(text: &[u8]) -> (Vec<u8>, Checked) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let slot = Slot::default();
        let sent = collect(checked_stream(&path, "data/t.csv", vec!["a".into(), "b".into()], slot.clone()).await.unwrap()).await;
        let found = std::mem::take(&mut *lock(&slot));
        (sent, found)
    }

    fn rows(n: usize, quoted: bool) -> String {
        let mut s = String::from("a,b\n");
        for i in 0..n {
            s.push_str(&if quoted { format!("{i},\"value {i}\"\n") } else { format!("{i},value {i}\n") });
        }
        s
    }

    #[tokio::test]
    async fn a_good_file_is_sent_unchanged_over_many_chunks() {
        let text = format!("{}\"two\nlines\",x\n", rows(60_000, true));
        let (sent, found) = checked(text.as_bytes()).await;
        assert!(text.len() > 3 * 256 * 1024);
        assert_eq!(sent, text.as_bytes());
        assert!(found.failure.is_none());
        // PostgreSQL names the last row by its second line.
        assert_eq!(found.map.file_line(60_003), 60_002);
    }

    #[tokio::test]
    async fn a_nul_byte_cuts_the_file_before_its_chunk_and_poisons_the_copy() {
        let good = rows(60_000, false);
        let text = format!("{good}1,bad\0value\n2,after\n");
        let (sent, found) = checked(text.as_bytes()).await;
        let (error, whole_lines) = found.failure.unwrap();
        assert_eq!(
            error.to_string().lines().next().unwrap(),
            "data/t.csv:60002: NUL byte (0x00) in column \"b\" (field 2): PostgreSQL cannot store NUL in text, and COPY misreads the row around it"
        );
        // The chunks before the one with the NUL, then the poison.
        let cut = sent.len() - POISON.len();
        assert!(cut > 0 && cut < good.len(), "{cut}");
        assert_eq!(&sent[..cut], &text.as_bytes()[..cut]);
        assert_eq!(&sent[cut..], POISON);
        assert!(!sent.contains(&0));
        let line_at_cut = 1 + text.as_bytes()[..cut].iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(whole_lines, line_at_cut - 1);
    }

    #[tokio::test]
    async fn a_file_cut_inside_a_quoted_value_gets_no_poison() {
        // The first chunk ends inside a long quoted value; the NUL is in the second one.
        let text = [&b"a,b\n1,\""[..], &vec![b'x'; 300_000], b"\0\"\n"].concat();
        let (sent, found) = checked(&text).await;
        assert!(!sent.is_empty() && sent.len() < 300_000, "{}", sent.len());
        assert_eq!(sent, text[..sent.len()], "the input ends inside the quote: PostgreSQL fails on that alone");
        assert!(found.failure.unwrap().0.to_string().starts_with("data/t.csv:2: NUL byte"));
    }

    #[tokio::test]
    async fn a_quote_open_at_the_end_is_left_to_fail_alone() {
        let (sent, found) = checked(b"a,b\n1,2\n\"3,4\n5,6\n").await;
        assert_eq!(sent, b"a,b\n1,2\n\"3,4\n5,6\n", "input ending inside quotes fails the COPY as it is");
        let (error, whole_lines) = found.failure.unwrap();
        assert_eq!(
            error.to_string(),
            "data/t.csv:3: unterminated quoted field: the quote opened in column \"a\" (field 1) on this line is never closed, so lines 3-4, to the end of the file, would be read as one value\n  = help: close the quote at the end of the value; a quote that belongs to the value is written twice (\"\")"
        );
        assert_eq!(whole_lines, 2);
        // A short last row is followed by the poison.
        let (sent, found) = checked(b"a,b\n1,2\n3").await;
        assert_eq!(sent, [&b"a,b\n1,2\n3"[..], POISON].concat());
        assert_eq!(
            found.failure.unwrap().0.to_string().lines().next().unwrap(),
            "data/t.csv:3: malformed CSV: row has 1 field, the header has 2"
        );
    }

    #[tokio::test]
    async fn a_masked_file_is_cut_after_its_last_good_row() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("users.csv");
        std::fs::write(&path, "email,n\na@x.example,1\n\n\"b@x\nexample\",2\nc@x.example,3,extra\nd@x.example,4\n").unwrap();
        let rules = std::collections::BTreeMap::from([("users.email".to_string(), MaskRule::Hash)]);
        let masker = Masker::new("seed", &rules);
        let slot = Slot::default();
        let header = vec!["email".to_string(), "n".to_string()];
        let sent = collect(masked_stream(path, "data/users.csv".into(), header, "users".into(), masker, slot.clone())).await;
        let sent = String::from_utf8(sent).unwrap();
        let found = std::mem::take(&mut *lock(&slot));
        let (error, whole_lines) = found.failure.unwrap();
        assert_eq!(error.to_string().lines().next().unwrap(), "data/users.csv:6: malformed CSV: row has 3 fields, the header has 2");
        assert!(sent.ends_with(",2\n\n\"stagectl: malformed input, abort the COPY"), "{sent}");
        assert!(!sent.contains("a@x") && !sent.contains("extra"), "{sent}");
        assert_eq!(whole_lines, 3, "header and two rows, the empty line dropped");
        // PostgreSQL's lines of the re-encoded rows map back to the file's.
        assert_eq!((found.map.file_line(2), found.map.file_line(3)), (2, 4));
    }

    #[test]
    fn row_errors_are_named_by_the_file_line_and_column() {
        let mut map = LineMap::default();
        map.row(3, 4, 3);
        let f = psql_output::parse(
            "ERROR:  invalid input syntax for type integer: \"abc\"\nCONTEXT:  COPY products, line 4, column price_cents: \"abc\"\n",
        )
        .unwrap();
        assert_eq!(
            row_error("fixtures/p.csv".into(), &map, &f).to_string(),
            "fixtures/p.csv:3: ERROR: invalid input syntax for type integer: \"abc\" (column \"price_cents\")"
        );
        let f = psql_output::parse("ERROR:  invalid byte sequence for encoding \"UTF8\": 0xe9 0x74 0x65\nCONTEXT:  COPY users, line 7\n")
            .unwrap();
        assert_eq!(
            row_error("u.csv".into(), &map, &f).to_string(),
            "u.csv:7: ERROR: invalid byte sequence for encoding \"UTF8\": 0xe9 0x74 0x65\n  = help: the file is not UTF-8: convert it, e.g. `iconv -f LATIN1 -t UTF-8` for Latin-1 (ISO 8859-1) text"
        );
    }

    #[test]
    fn a_missing_table_names_the_later_file_that_creates_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("schema.sql"), "CREATE TABLE IF NOT EXISTS orders (id int);").unwrap();
        std::fs::write(d.path().join("other.sql"), "INSERT INTO orders VALUES (1);").unwrap();
        let later = [d.path().join("other.sql"), d.path().join("schema.sql")];
        let csv = CsvFile {
            path: Path::new("data/02_orders.csv"),
            name: "data/02_orders.csv",
            table: "orders".into(),
            origin: "`data/*.csv` (stack.toml:7)".into(),
            dir: d.path(),
            later: &later,
        };
        assert_eq!(
            missing_table_help(&csv),
            "schema.sql creates it, but is loaded after this file (files load pattern by pattern, in the order of `files`, each pattern's matches by name): list its pattern first, or create the table in a migration; this file is loaded by `data/*.csv` (stack.toml:7)"
        );
        let csv = CsvFile { later: &later[..1], ..csv };
        assert_eq!(
            missing_table_help(&csv),
            "create it in a migration or in a .sql fixture that sorts before this file, or name the file after an existing table; this file is loaded by `data/*.csv` (stack.toml:7)"
        );
    }
}
