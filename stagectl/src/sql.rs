//! A pure lexer and statement splitter for PostgreSQL: no I/O and no knowledge of any lint rule,
//! just text in and tokens, statements and identifiers out.
//!
//! The text is lexed once (comments, `'...'` strings with `''` escapes, `E'...'` strings with
//! backslash escapes, `"..."` identifiers, `$$...$$` / `$tag$...$tag$` bodies) and split into
//! statements at top-level semicolons, so keywords and semicolons inside comments, strings and
//! function bodies never count. The token helpers at the end match keywords and names on a
//! statement's tokens.

/// Splits `sql` into statements at top-level semicolons. Each item is the 1-based line of the
/// statement's first token and its text (from its first token up to, not including, the `;`).
/// Comments between statements are dropped; comments inside a statement are kept.
pub fn split_statements(sql: &str) -> Vec<(usize, String)> {
    let lexed = lex(sql);
    statements(sql, &lexed.toks).into_iter().map(|s| (s.line, s.raw.to_string())).collect()
}

/// Every identifier and keyword outside comments and string literals: unquoted ones lowercased
/// (as PostgreSQL folds them), quoted ones as written. The lock probe intersects this with the
/// tables that exist to find the tables a migration touches.
pub fn identifiers(sql: &str) -> std::collections::BTreeSet<String> {
    lex(sql)
        .toks
        .into_iter()
        .filter_map(|t| match t.kind {
            Kind::Word(w) => Some(w.to_ascii_lowercase()),
            Kind::QIdent(q) => Some(q),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Lexing

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Keyword or unquoted identifier, ASCII-uppercased.
    Word(String),
    /// `"quoted identifier"`, unescaped.
    QIdent(String),
    /// `'string'`, `E'string'`.
    Str,
    /// `$$body$$`, `$tag$body$tag$`.
    Dollar,
    Num,
    /// `$1`.
    Param,
    /// Any other single ASCII character (`;`, `(`, `,`, `.`, `=`...).
    Punct(u8),
}

/// A token: its kind, its source text and its byte range in the source.
#[derive(Debug, Clone)]
pub struct Tok<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

/// A lexed text: its tokens, and where its comments are (for directives written in them).
pub struct Lexed<'a> {
    pub toks: Vec<Tok<'a>>,
    /// Byte ranges of comments, delimiters included.
    pub comments: Vec<std::ops::Range<usize>>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// End (exclusive) of a quoted token opened at `open`; `n` when unterminated.
fn scan_quoted(b: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut j = open + 1;
    while j < b.len() {
        if backslash_escapes && b[j] == b'\\' {
            j += 2;
        } else if b[j] == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
            } else {
                return j + 1;
            }
        } else {
            j += 1;
        }
    }
    b.len()
}

/// Length of the dollar-quote tag (`$$` or `$tag$`) starting at `i`, if any.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&b'$') {
        return Some(2);
    }
    let mut j = i + 1;
    if j < b.len() && is_ident_start(b[j]) {
        while j < b.len() && (is_ident_start(b[j]) || b[j].is_ascii_digit()) {
            j += 1;
        }
        if b.get(j) == Some(&b'$') {
            return Some(j + 1 - i);
        }
    }
    None
}

/// Lexes `src`; never fails: an unterminated string, identifier, body or comment runs to the end.
pub fn lex(src: &str) -> Lexed<'_> {
    let b = src.as_bytes();
    let n = b.len();
    let mut toks = Vec::new();
    let mut comments = Vec::new();
    let mut i = 0;
    while i < n {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            let end = src[i..].find('\n').map_or(n, |p| i + p);
            comments.push(i..end);
            i = end;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // Block comments nest in PostgreSQL.
            let mut depth = 1;
            let mut j = i + 2;
            while j < n && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            let end = j.min(n);
            comments.push(i..end);
            i = end;
            continue;
        }
        let start = i;
        let kind = match c {
            b'\'' => {
                i = scan_quoted(b, i, b'\'', false);
                Kind::Str
            }
            b'"' => {
                i = scan_quoted(b, i, b'"', false);
                let inner_end = if i > start + 1 && i <= n && b[i - 1] == b'"' { i - 1 } else { i };
                Kind::QIdent(src[start + 1..inner_end].replace("\"\"", "\""))
            }
            b'$' => match dollar_tag(b, i) {
                Some(len) => {
                    let tag = &src[i..i + len];
                    i = src[i + len..].find(tag).map_or(n, |p| i + len + p + len);
                    Kind::Dollar
                }
                None => {
                    i += 1;
                    while i < n && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    Kind::Param
                }
            },
            c if is_ident_start(c) => {
                let mut j = i + 1;
                while j < n && is_ident_char(b[j]) {
                    j += 1;
                }
                if j == i + 1 && (c == b'e' || c == b'E') && b.get(j) == Some(&b'\'') {
                    i = scan_quoted(b, j, b'\'', true).min(n);
                    Kind::Str
                } else {
                    i = j;
                    Kind::Word(src[start..j].to_ascii_uppercase())
                }
            }
            c if c.is_ascii_digit() => {
                while i < n && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                Kind::Num
            }
            _ => {
                i += 1;
                Kind::Punct(c)
            }
        };
        let i_end = i.min(n);
        i = i_end;
        toks.push(Tok { kind, text: &src[start..i_end], start, end: i_end });
    }
    Lexed { toks, comments }
}

/// Maps byte offsets to 1-based line numbers.
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line of byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// A statement: its tokens up to, not including, the top-level `;`.
pub struct Stmt<'a> {
    /// 1-based line of the first token.
    pub line: usize,
    /// Source text from the first token to the last, comments included.
    pub raw: &'a str,
    /// Tokens joined by single spaces, comments removed.
    pub clean: String,
    pub toks: Vec<Tok<'a>>,
}

/// Splits the tokens of `src` into statements at top-level semicolons; empty ones are dropped.
pub fn statements<'a>(src: &'a str, toks: &[Tok<'a>]) -> Vec<Stmt<'a>> {
    let lines = LineIndex::new(src);
    toks.split(|t| t.kind == Kind::Punct(b';'))
        .filter(|group| !group.is_empty())
        .map(|group| {
            let (first, last) = (&group[0], &group[group.len() - 1]);
            let mut clean = String::new();
            let mut prev_end = first.start;
            for t in group {
                if t.start > prev_end {
                    clean.push(' ');
                }
                clean.push_str(t.text);
                prev_end = t.end;
            }
            Stmt { line: lines.line(first.start), raw: &src[first.start..last.end], clean, toks: group.to_vec() }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Token helpers

/// The keyword or unquoted identifier (uppercased), if `t` is one.
pub fn word<'t>(t: &'t Tok<'_>) -> Option<&'t str> {
    match &t.kind {
        Kind::Word(w) => Some(w),
        _ => None,
    }
}

/// Whether token `i` is the keyword `kw` (uppercase).
pub fn is_kw(toks: &[Tok<'_>], i: usize, kw: &str) -> bool {
    toks.get(i).and_then(word) == Some(kw)
}

/// Whether token `i` is the punctuation character `p`.
pub fn is_punct(toks: &[Tok<'_>], i: usize, p: u8) -> bool {
    toks.get(i).is_some_and(|t| t.kind == Kind::Punct(p))
}

/// Consumes the keywords `kws` at `*i` if they are all there.
pub fn eat(toks: &[Tok<'_>], i: &mut usize, kws: &[&str]) -> bool {
    if kws.iter().enumerate().all(|(k, kw)| is_kw(toks, *i + k, kw)) {
        *i += kws.len();
        true
    } else {
        false
    }
}

/// One part of a name, normalised: unquoted lowercased (as PostgreSQL folds it), quoted as written.
pub fn ident_part(t: &Tok<'_>) -> Option<String> {
    match &t.kind {
        Kind::Word(w) => Some(w.to_ascii_lowercase()),
        Kind::QIdent(s) => Some(s.clone()),
        _ => None,
    }
}

/// Consumes a possibly schema-qualified name at `*i`, normalised (unquoted parts lower-cased).
pub fn name_at(toks: &[Tok<'_>], i: &mut usize) -> Option<String> {
    let mut name = ident_part(toks.get(*i)?)?;
    *i += 1;
    while is_punct(toks, *i, b'.') {
        match toks.get(*i + 1).and_then(ident_part) {
            Some(part) => {
                name.push('.');
                name.push_str(&part);
                *i += 2;
            }
            None => break,
        }
    }
    Some(name)
}

/// Comma-separated table names from `*i` (each optionally preceded by ONLY and followed by `*`).
pub fn table_list(toks: &[Tok<'_>], mut i: usize) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        eat(toks, &mut i, &["ONLY"]);
        let Some(name) = name_at(toks, &mut i) else { break };
        names.push(name);
        if is_punct(toks, i, b'*') {
            i += 1;
        }
        if !is_punct(toks, i, b',') {
            break;
        }
        i += 1;
    }
    names
}

/// Splits at commas outside parentheses.
pub fn split_top_level<'s, 'a>(toks: &'s [Tok<'a>]) -> Vec<&'s [Tok<'a>]> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0usize, 0);
    for (k, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Punct(b'(') | Kind::Punct(b'[') => depth += 1,
            Kind::Punct(b')') | Kind::Punct(b']') => depth = depth.saturating_sub(1),
            Kind::Punct(b',') if depth == 0 => {
                parts.push(&toks[from..k]);
                from = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[from..]);
    parts
}

/// Indexes of the tokens outside parentheses.
pub fn top_level(toks: &[Tok<'_>]) -> Vec<usize> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Punct(b'(') | Kind::Punct(b'[') => depth += 1,
            Kind::Punct(b')') | Kind::Punct(b']') => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(k),
            _ => {}
        }
    }
    out
}

/// Whether the keyword sequence `kws` occurs outside parentheses.
pub fn has_seq(toks: &[Tok<'_>], kws: &[&str]) -> bool {
    let top = top_level(toks);
    top.windows(kws.len()).any(|w| w.iter().zip(kws).all(|(&k, kw)| is_kw(toks, k, kw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- split_statements -------------------------------------------------------------------

    #[test]
    fn splits_simple_statements_with_lines() {
        let s = split_statements("SELECT 1;\nSELECT 2;\n\n  SELECT\n 3;");
        assert_eq!(s, vec![(1, "SELECT 1".to_string()), (2, "SELECT 2".to_string()), (4, "SELECT\n 3".to_string())]);
    }

    #[test]
    fn split_keeps_last_statement_without_semicolon_and_skips_empty_ones() {
        let s = split_statements(";;\nSELECT 1;;\nSELECT 2");
        assert_eq!(s, vec![(2, "SELECT 1".to_string()), (3, "SELECT 2".to_string())]);
        assert!(split_statements("").is_empty());
        assert!(split_statements("  -- only a comment\n/* and another */\n").is_empty());
    }

    #[test]
    fn split_line_is_first_token_after_leading_comments() {
        let s = split_statements("-- header; with semicolon\n/* block;\n still; */\nDROP TABLE t;");
        assert_eq!(s, vec![(4, "DROP TABLE t".to_string())]);
    }

    #[test]
    fn split_ignores_semicolons_in_strings_and_identifiers() {
        let s = split_statements("INSERT INTO t VALUES ('a;b', 'it''s; ok');\nSELECT \"we;ird\" FROM t;");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].1, "INSERT INTO t VALUES ('a;b', 'it''s; ok')");
        assert_eq!(s[1], (2, "SELECT \"we;ird\" FROM t".to_string()));
    }

    #[test]
    fn split_handles_escape_strings() {
        let s = split_statements("SELECT E'a\\'; b';\nSELECT 2;");
        assert_eq!(s, vec![(1, "SELECT E'a\\'; b'".to_string()), (2, "SELECT 2".to_string())]);
    }

    #[test]
    fn split_handles_dollar_quotes() {
        let sql = "CREATE FUNCTION f() RETURNS void AS $$\nBEGIN\n  DELETE FROM t;\nEND;\n$$ LANGUAGE plpgsql;\n\
                   DO $body$ BEGIN PERFORM 1; PERFORM $$x;$$; END $body$;\nSELECT $1;";
        let s = split_statements(sql);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].0, 1);
        assert!(s[0].1.ends_with("LANGUAGE plpgsql"));
        assert_eq!(s[1].0, 6);
        assert!(s[1].1.ends_with("END $body$"));
        assert_eq!(s[2], (7, "SELECT $1".to_string()));
    }

    #[test]
    fn split_handles_nested_block_comments() {
        let s = split_statements("/* outer /* inner; */ still comment; */ SELECT 1; SELECT 2;");
        assert_eq!(s, vec![(1, "SELECT 1".to_string()), (1, "SELECT 2".to_string())]);
    }

    #[test]
    fn split_keeps_comments_inside_a_statement() {
        let s = split_statements("SELECT 1 -- one; really\n + 2;");
        assert_eq!(s, vec![(1, "SELECT 1 -- one; really\n + 2".to_string())]);
    }

    #[test]
    fn split_survives_unterminated_tokens() {
        assert_eq!(split_statements("SELECT 'abc").len(), 1);
        assert_eq!(split_statements("SELECT \"abc").len(), 1);
        assert_eq!(split_statements("SELECT $$abc").len(), 1);
        assert_eq!(split_statements("SELECT 1 /* abc").len(), 1);
        assert_eq!(split_statements("SELECT E'abc\\").len(), 1);
    }

    #[test]
    fn split_handles_non_ascii() {
        let s = split_statements("SELECT 'héllo; wörld';\nCREATE TABLE ünïcode (x int);");
        assert_eq!(s, vec![(1, "SELECT 'héllo; wörld'".to_string()), (2, "CREATE TABLE ünïcode (x int)".to_string())]);
    }

    #[test]
    fn split_handles_crlf_line_numbers() {
        let s = split_statements("SELECT 1;\r\n\r\nSELECT 2;\r\n");
        assert_eq!(s, vec![(1, "SELECT 1".to_string()), (3, "SELECT 2".to_string())]);
    }

    // --- lexing --------------------------------------------------------------------------------

    fn kinds(sql: &str) -> Vec<Kind> {
        lex(sql).toks.into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn lexes_every_token_kind() {
        assert_eq!(
            kinds("select \"We\"\"ird\", 'it''s', E'\\'', $$ body; $$, $f$ x $f$, $1, 3.5e2;"),
            vec![
                Kind::Word("SELECT".into()),
                Kind::QIdent("We\"ird".into()),
                Kind::Punct(b','),
                Kind::Str,
                Kind::Punct(b','),
                Kind::Str,
                Kind::Punct(b','),
                Kind::Dollar,
                Kind::Punct(b','),
                Kind::Dollar,
                Kind::Punct(b','),
                Kind::Param,
                Kind::Punct(b','),
                Kind::Num,
                Kind::Punct(b';'),
            ]
        );
    }

    #[test]
    fn tokens_keep_their_source_text_and_range() {
        let src = "ALTER  TABLE \"T\"";
        let toks = lex(src).toks;
        assert_eq!(toks.iter().map(|t| t.text).collect::<Vec<_>>(), ["ALTER", "TABLE", "\"T\""]);
        assert!(toks.iter().all(|t| &src[t.start..t.end] == t.text));
    }

    #[test]
    fn comments_are_ranges_and_not_tokens() {
        let src = "-- one\nSELECT /* two /* nested */ still */ 1;";
        let lexed = lex(src);
        let comments: Vec<&str> = lexed.comments.iter().map(|c| &src[c.clone()]).collect();
        assert_eq!(comments, ["-- one", "/* two /* nested */ still */"]);
        assert_eq!(lexed.toks.len(), 3);
    }

    #[test]
    fn line_index_maps_offsets_to_lines() {
        let lines = LineIndex::new("a\nbc\n\nd");
        assert_eq!([0, 1, 2, 4, 5, 6].map(|o| lines.line(o)), [1, 1, 2, 2, 3, 4]);
    }

    #[test]
    fn statements_have_clean_text_and_their_tokens() {
        let src = "SET x = 1;\n\nALTER  TABLE t -- note\n  DROP c;";
        let lexed = lex(src);
        let stmts = statements(src, &lexed.toks);
        assert_eq!(stmts.len(), 2);
        assert_eq!((stmts[1].line, stmts[1].clean.as_str(), stmts[1].toks.len()), (3, "ALTER TABLE t DROP c", 5));
        assert_eq!(stmts[1].raw, "ALTER  TABLE t -- note\n  DROP c");
    }

    #[test]
    fn identifiers_fold_unquoted_names_and_skip_literals() {
        let ids = identifiers("UPDATE Public.\"Users\" SET name = 'Orders' -- accounts\nWHERE $$ items $$ = x;");
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["Users", "name", "public", "set", "update", "where", "x"]);
    }

    // --- token helpers -------------------------------------------------------------------------

    #[test]
    fn names_are_qualified_and_normalised() {
        let toks = lex("App.\"Orders\" x").toks;
        let mut i = 0;
        assert_eq!(name_at(&toks, &mut i).as_deref(), Some("app.Orders"));
        assert_eq!(i, 3);
        assert_eq!(table_list(&lex("ONLY a *, b.c, 'x'").toks, 0), ["a", "b.c"]);
    }

    #[test]
    fn keywords_are_matched_outside_parentheses_only() {
        let toks = lex("ADD COLUMN a int CHECK (a IS NOT NULL), ADD b int NOT NULL").toks;
        let parts = split_top_level(&toks);
        assert_eq!(parts.len(), 2);
        assert!(!has_seq(parts[0], &["NOT", "NULL"]));
        assert!(has_seq(parts[1], &["NOT", "NULL"]));
        let mut i = 0;
        assert!(eat(parts[0], &mut i, &["ADD", "COLUMN"]) && i == 2);
        assert!(!eat(parts[0], &mut i, &["INT"]) && i == 2);
        assert!(is_kw(parts[0], 3, "INT") && is_punct(parts[0], 5, b'(') && word(&parts[0][2]) == Some("A"));
    }
}
