//! Diagnostics: a problem found in a manifest, located by byte span, rendered as
//! `FILE:LINE:COL: message` followed by the source line, a caret and an optional hint.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic { span, message: message.into(), help: None }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic against the source it was found in.
    pub fn render(&self, file: &str, source: &str) -> String {
        let (line_no, col, line_text) = locate(source, self.span.start);
        let mut out = format!("{file}:{line_no}:{col}: {}\n", self.message);
        let gutter = line_no.to_string().len();
        let caret_len = {
            let end = self.span.end.min(self.span.start + line_text.len().saturating_sub(col - 1));
            let visible = source.get(self.span.start..end).unwrap_or("");
            visible.chars().count().max(1)
        };
        out.push_str(&format!("{:>gutter$} | {}\n", line_no, line_text));
        let pad: String = line_text.chars().take(col - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        out.push_str(&format!("{:>gutter$} | {}{}\n", "", pad, "^".repeat(caret_len)));
        if let Some(help) = &self.help {
            out.push_str(&format!("{:>gutter$} = help: {}\n", "", help));
        }
        out
    }
}

/// 1-based line and column (in characters) of a byte offset, and the text of that line.
pub fn locate(source: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = source[offset..].find('\n').map(|i| offset + i).unwrap_or(source.len());
    let line_no = source[..line_start].matches('\n').count() + 1;
    let col = source[line_start..offset].chars().count() + 1;
    (line_no, col, source[line_start..line_end].trim_end_matches('\r'))
}

/// The closest candidate by edit distance, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(input, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_columns_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(locate(src, 0), (1, 1, "a = 1"));
        assert_eq!(locate(src, 6), (2, 1, "bb = 2"));
        assert_eq!(locate(src, 11), (2, 6, "bb = 2"));
    }

    #[test]
    fn render_points_at_the_span() {
        let src = "[stack]\nnaem = \"x\"\n";
        let d = Diagnostic::new(8..12, "unknown key `naem`").help("did you mean `name`?");
        assert_eq!(
            d.render("stack.toml", src),
            "stack.toml:2:1: unknown key `naem`\n2 | naem = \"x\"\n  | ^^^^\n  = help: did you mean `name`?\n"
        );
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("imgae", &["image", "build"]), Some("image"));
        assert_eq!(did_you_mean("zzzzzz", &["image", "build"]), None);
    }
}
