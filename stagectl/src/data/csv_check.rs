//! The structure of a CSV file as it streams past, read the way its reader will read it:
//! PostgreSQL's `COPY ... (FORMAT csv)` for files sent as they are, the csv crate for masked
//! files. Finds, at the row that causes them, the problems PostgreSQL misreports (a NUL byte,
//! a quote that is never closed or swallows a line break, a row whose field count differs from
//! the header's), and maps the line numbers PostgreSQL reports back to the file's lines.
//!
//! One pass over bytes, no allocation per row: ordinary bytes are skipped through a table.

/// How a reader treats quotes and empty lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL COPY (csv, `"` as quote and escape): a quote anywhere in a field starts a
    /// quoted section; an empty line is a row of one empty field.
    Postgres,
    /// The csv crate: a quote is special only at the start of a field; empty lines are skipped.
    CsvCrate,
}

/// A row, or the file, as its reader cannot take it. Lines are the file's, from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvProblem {
    /// A NUL byte at `line`, in field `field` (from 0) of the row starting at `row_line`.
    Nul { line: u64, row_line: u64, field: usize },
    /// The quote opened at `line` (in field `field` of the row starting at `row_line`;
    /// `mid_field`: after other characters of the field) is still open at the end of the file,
    /// whose last line is `last_line`.
    UnterminatedQuote { line: u64, row_line: u64, field: usize, mid_field: bool, last_line: u64 },
    /// The row on lines `line..=end_line` has `fields` fields, the header `expected`.
    /// `empty`: the row is an empty line. `spill`: the line and `mid_field` of the quote whose
    /// quoted section took the row's first line break into a value.
    FieldCount { line: u64, end_line: u64, fields: usize, expected: usize, empty: bool, spill: Option<(u64, bool)> },
}

impl CsvProblem {
    /// The file line to name for this problem.
    pub fn line(&self) -> u64 {
        match self {
            CsvProblem::Nul { line, .. } | CsvProblem::UnterminatedQuote { line, .. } => *line,
            CsvProblem::FieldCount { line, spill, .. } => spill.map(|(l, _)| l).unwrap_or(*line),
        }
    }

    /// The first line of the row the problem is in.
    pub fn row_line(&self) -> u64 {
        match self {
            CsvProblem::Nul { row_line, .. } | CsvProblem::UnterminatedQuote { row_line, .. } => *row_line,
            CsvProblem::FieldCount { line, .. } => *line,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing of the current row read yet.
    RowStart,
    /// Right after a delimiter.
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted section: it closes the section, unless another quote follows.
    QuoteInQuoted,
}

/// Bytes that matter outside quotes (bit 1) and inside them (bit 2).
const SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = 1;
    t[b'"' as usize] = 3;
    t[b'\n' as usize] = 3;
    t[b'\r' as usize] = 3;
    t[0] = 3;
    t
};

/// Feed it the file's bytes in order ([`CsvScanner::feed`]), then [`CsvScanner::finish`].
/// The first problem stops it: later calls return the same problem.
#[derive(Debug)]
pub struct CsvScanner {
    dialect: Dialect,
    state: State,
    /// The previous byte was a `\r`: a `\n` now belongs to the same line break.
    pending_cr: bool,
    line: u64,
    row_line: u64,
    /// Delimiters seen in the current row.
    delimiters: usize,
    header: Option<usize>,
    quote_line: u64,
    quote_field: usize,
    quote_mid: bool,
    spill: Option<(u64, bool)>,
    last_was_break: bool,
    problem: Option<CsvProblem>,
    map: LineMap,
    /// The first line of each row not yet taken, when a reader behind wants them.
    rows: Option<std::collections::VecDeque<u64>>,
}

impl CsvScanner {
    pub fn new(dialect: Dialect) -> Self {
        CsvScanner {
            dialect,
            state: State::RowStart,
            pending_cr: false,
            line: 1,
            row_line: 1,
            delimiters: 0,
            header: None,
            quote_line: 0,
            quote_field: 0,
            quote_mid: false,
            spill: None,
            last_was_break: false,
            problem: None,
            map: LineMap::default(),
            rows: None,
        }
    }

    /// Keeps the first line of each row for [`CsvScanner::next_row`]: for a reader that
    /// parses the same bytes behind the scanner (the header is a row too).
    pub fn with_rows(mut self) -> Self {
        self.rows = Some(Default::default());
        self
    }

    /// The first line of the oldest row not yet taken; `None` once the rows before the first
    /// problem are taken.
    pub fn next_row(&mut self) -> Option<u64> {
        self.rows.as_mut()?.pop_front()
    }

    /// Whether the bytes so far end inside a quoted section (as their reader sees them).
    pub fn in_quotes(&self) -> bool {
        self.state == State::Quoted
    }

    /// The line the next byte is on.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The first problem found, if any.
    pub fn problem(&self) -> Option<&CsvProblem> {
        self.problem.as_ref()
    }

    /// Where the rows that span several lines start (see [`LineMap`]).
    pub fn line_map(&self) -> &LineMap {
        &self.map
    }

    pub fn feed(&mut self, buf: &[u8]) -> Result<(), CsvProblem> {
        if let Some(p) = &self.problem {
            return Err(p.clone());
        }
        let n = buf.len();
        let mut i = 0;
        while i < n {
            let b = buf[i];
            i += 1;
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            if self.state == State::Quoted {
                match b {
                    b'"' => self.state = State::QuoteInQuoted,
                    b'\n' | b'\r' => {
                        self.pending_cr = b == b'\r';
                        if self.spill.is_none() {
                            self.spill = Some((self.quote_line, self.quote_mid));
                        }
                        self.line += 1;
                    }
                    0 => return self.nul(),
                    _ => {
                        while i < n && SPECIAL[buf[i] as usize] & 2 == 0 {
                            i += 1;
                        }
                    }
                }
                continue;
            }
            match b {
                b',' => {
                    self.delimiters += 1;
                    self.state = State::FieldStart;
                }
                b'"' => match (self.state, self.dialect) {
                    (State::QuoteInQuoted, _) => self.state = State::Quoted,
                    (State::Unquoted, Dialect::CsvCrate) => {}
                    (state, _) => {
                        self.quote_line = self.line;
                        self.quote_field = self.delimiters;
                        self.quote_mid = state == State::Unquoted;
                        self.state = State::Quoted;
                    }
                },
                b'\n' | b'\r' => {
                    self.pending_cr = b == b'\r';
                    if self.state == State::RowStart && self.dialect == Dialect::CsvCrate {
                        self.line += 1;
                        self.row_line = self.line;
                    } else {
                        self.end_row()?;
                    }
                }
                0 => return self.nul(),
                _ => {
                    self.state = State::Unquoted;
                    while i < n && SPECIAL[buf[i] as usize] & 1 == 0 {
                        i += 1;
                    }
                }
            }
        }
        if let Some(&last) = buf.last() {
            self.last_was_break = last == b'\n' || last == b'\r';
        }
        Ok(())
    }

    /// The end of the file: a quoted section still open, or a last row without a line break.
    pub fn finish(&mut self) -> Result<(), CsvProblem> {
        if let Some(p) = &self.problem {
            return Err(p.clone());
        }
        match self.state {
            State::RowStart => Ok(()),
            State::Quoted => {
                let last_line = if self.last_was_break { self.line - 1 } else { self.line };
                let p = CsvProblem::UnterminatedQuote {
                    line: self.quote_line,
                    row_line: self.row_line,
                    field: self.quote_field,
                    mid_field: self.quote_mid,
                    last_line: last_line.max(self.quote_line),
                };
                self.fail(p)
            }
            _ => self.end_row(),
        }
    }

    fn nul(&mut self) -> Result<(), CsvProblem> {
        let p = CsvProblem::Nul { line: self.line, row_line: self.row_line, field: self.delimiters };
        self.fail(p)
    }

    fn fail(&mut self, p: CsvProblem) -> Result<(), CsvProblem> {
        self.problem = Some(p.clone());
        Err(p)
    }

    fn end_row(&mut self) -> Result<(), CsvProblem> {
        let fields = self.delimiters + 1;
        let (line, end_line) = (self.row_line, self.line);
        match self.header {
            None => self.header = Some(fields),
            Some(expected) if expected != fields => {
                let empty = self.state == State::RowStart;
                let spill = self.spill;
                return self.fail(CsvProblem::FieldCount { line, end_line, fields, expected, empty, spill });
            }
            Some(_) => {}
        }
        if end_line > line {
            self.map.row(line, end_line, line);
        }
        if let Some(rows) = &mut self.rows {
            rows.push_back(line);
        }
        self.line += 1;
        self.row_line = self.line;
        self.delimiters = 0;
        self.spill = None;
        self.state = State::RowStart;
        Ok(())
    }
}

/// From the lines PostgreSQL names in `COPY t, line N` to the file's lines. PostgreSQL counts
/// the line breaks inside quoted values and names a row by its last line; a masked file is
/// re-encoded (empty lines dropped, values changed), so its lines are counted anew. Only rows
/// where the two disagree are kept; between them the two advance together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineMap {
    /// (first line, last line as PostgreSQL counts them, first line in the file)
    anchors: Vec<(u64, u64, u64)>,
}

impl LineMap {
    /// A row PostgreSQL sees on lines `pg_first..=pg_last`, starting at `file_first` in the
    /// file. Rows must come in order.
    pub fn row(&mut self, pg_first: u64, pg_last: u64, file_first: u64) {
        if pg_last > pg_first || self.file_line(pg_first) != file_first {
            self.anchors.push((pg_first, pg_last, file_first));
        }
    }

    /// The file line where the row PostgreSQL names by `pg_line` starts.
    pub fn file_line(&self, pg_line: u64) -> u64 {
        let i = self.anchors.partition_point(|a| a.0 <= pg_line);
        let Some(&(first, last, file)) = i.checked_sub(1).map(|i| &self.anchors[i]) else { return pg_line };
        if pg_line <= last {
            file
        } else {
            file + (last - first) + (pg_line - last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(dialect: Dialect, text: &[u8]) -> Result<CsvScanner, CsvProblem> {
        let mut s = CsvScanner::new(dialect);
        s.feed(text)?;
        s.finish()?;
        Ok(s)
    }

    /// Every split of `text` into two chunks gives the same result as one chunk.
    fn scan_split(dialect: Dialect, text: &[u8]) -> Result<(), CsvProblem> {
        let whole = scan(dialect, text).map(|s| s.map);
        for at in 0..=text.len() {
            let mut s = CsvScanner::new(dialect);
            let r = s.feed(&text[..at]).and_then(|_| s.feed(&text[at..])).and_then(|_| s.finish()).map(|_| s.map);
            assert_eq!(r, whole, "split at {at} of {:?}", String::from_utf8_lossy(text));
        }
        whole.map(|_| ())
    }

    #[test]
    fn well_formed_files_pass_in_both_dialects() {
        for text in [
            &b"a,b\n1,2\n3,4\n"[..],
            b"a,b\r\n1,2\r\n3,4",
            b"a,b\r1,2\r3,4\r",
            b"a,b\n\"x, y\",\"say \"\"hi\"\"\"\n,\n",
            b"a,b\n\"two\nlines\",2\n",
            b"",
            b"a\n",
        ] {
            assert_eq!(scan_split(Dialect::Postgres, text), Ok(()));
            assert_eq!(scan_split(Dialect::CsvCrate, text), Ok(()));
        }
    }

    #[test]
    fn a_nul_byte_is_found_with_its_line_and_field() {
        let p = scan_split(Dialect::Postgres, b"email,total\na@x,1\nb@x,2\0\nc@x,3\n").unwrap_err();
        assert_eq!(p, CsvProblem::Nul { line: 3, row_line: 3, field: 1 });
        let p = scan_split(Dialect::CsvCrate, b"email,total\n\"a\n\0\",1\n").unwrap_err();
        assert_eq!(p, CsvProblem::Nul { line: 3, row_line: 2, field: 0 });
    }

    #[test]
    fn a_quote_never_closed_names_the_line_it_opened_on() {
        let p = scan_split(Dialect::Postgres, b"email,total\na@x,1\n\"b@x,2\nc@x,3\n").unwrap_err();
        assert_eq!(p, CsvProblem::UnterminatedQuote { line: 3, row_line: 3, field: 0, mid_field: false, last_line: 4 });
        // PostgreSQL opens a quoted section at a quote inside a value; the csv crate does not.
        let text = b"item,size\ntv,5\" screen\nradio,small\n";
        let p = scan_split(Dialect::Postgres, text).unwrap_err();
        assert_eq!(p, CsvProblem::UnterminatedQuote { line: 2, row_line: 2, field: 1, mid_field: true, last_line: 3 });
        assert_eq!(scan_split(Dialect::CsvCrate, text), Ok(()));
        // The csv crate would silently end the value at the end of the file.
        let p = scan_split(Dialect::CsvCrate, b"a,b\n1,\"2").unwrap_err();
        assert_eq!(p, CsvProblem::UnterminatedQuote { line: 2, row_line: 2, field: 1, mid_field: false, last_line: 2 });
    }

    #[test]
    fn rows_with_another_field_count_than_the_header_are_found() {
        let p = scan_split(Dialect::Postgres, b"email,total\nalice,100\nbob,250,oops\n").unwrap_err();
        assert_eq!(p, CsvProblem::FieldCount { line: 3, end_line: 3, fields: 3, expected: 2, empty: false, spill: None });
        assert_eq!(p.line(), 3);
        // The last row, without a line break.
        let p = scan_split(Dialect::Postgres, b"a,b\n1,2\n3").unwrap_err();
        assert_eq!(p, CsvProblem::FieldCount { line: 3, end_line: 3, fields: 1, expected: 2, empty: false, spill: None });
        // A quote closed only on a later line takes the line break into the value.
        let p = scan_split(Dialect::Postgres, b"email,total\na@x,1\n\"b@x,2\nc@x,3\"\nd,4\n").unwrap_err();
        assert_eq!(p, CsvProblem::FieldCount { line: 3, end_line: 4, fields: 1, expected: 2, empty: false, spill: Some((3, false)) });
    }

    #[test]
    fn empty_lines_are_rows_for_postgres_and_skipped_by_the_csv_crate() {
        let text = b"a,b\n1,2\n\n3,4\n";
        let p = scan_split(Dialect::Postgres, text).unwrap_err();
        assert_eq!(p, CsvProblem::FieldCount { line: 3, end_line: 3, fields: 1, expected: 2, empty: true, spill: None });
        assert_eq!(scan_split(Dialect::CsvCrate, text), Ok(()));
        assert_eq!(scan_split(Dialect::CsvCrate, b"a,b\r\n\r\n1,2\r\n"), Ok(()));
        // One column: an empty line is a NULL row.
        assert_eq!(scan_split(Dialect::Postgres, b"a\n1\n\n2\n"), Ok(()));
    }

    #[test]
    fn line_numbers_count_line_breaks_inside_quotes() {
        let mut s = CsvScanner::new(Dialect::Postgres);
        s.feed(b"a,b\n\"x\ny\",1\n\"p\r\nq\r\nr\",2\nlast,3").unwrap();
        s.finish().unwrap();
        // PostgreSQL names a row by its last line.
        assert_eq!(s.line_map().file_line(3), 2);
        assert_eq!(s.line_map().file_line(6), 4);
        assert_eq!(s.line_map().file_line(7), 7);
        assert_eq!(s.line_map().file_line(1), 1);
    }

    #[test]
    fn a_line_map_follows_rows_that_moved() {
        let mut m = LineMap::default();
        m.row(2, 2, 2);
        m.row(3, 3, 5); // two empty lines dropped before it
        m.row(4, 5, 6); // a value with a line break
        m.row(6, 6, 8);
        assert_eq!(m.anchors.len(), 2);
        assert_eq!([1, 2, 3, 4, 5, 6, 9].map(|l| m.file_line(l)), [1, 2, 5, 6, 6, 8, 11]);
    }

    #[test]
    fn rows_are_handed_to_a_reader_behind_up_to_the_first_problem() {
        let mut s = CsvScanner::new(Dialect::CsvCrate).with_rows();
        let _ = s.feed(b"a,b\n1,2\n\n\"x\ny\",3\n4,\0\n5,6\n");
        let rows: Vec<u64> = std::iter::from_fn(|| s.next_row()).collect();
        assert_eq!(rows, [1, 2, 4]);
    }

    #[test]
    fn the_first_problem_sticks() {
        let mut s = CsvScanner::new(Dialect::Postgres);
        let first = s.feed(b"a,b\n1\0").unwrap_err();
        assert_eq!(s.feed(b"ok\n"), Err(first.clone()));
        assert_eq!(s.finish(), Err(first.clone()));
        assert_eq!(s.problem(), Some(&first));
    }
}
