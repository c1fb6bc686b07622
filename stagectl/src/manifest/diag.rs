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

    /// Renders the diagnostic against the source it was found in. A source line longer than
    /// [`MAX_LINE_CHARS`] is shown as a window around the caret, and a quoted value longer than
    /// [`MAX_CODE_CHARS`] in the message or help is shortened, so one diagnostic stays a few
    /// hundred bytes whatever the input.
    pub fn render(&self, file: &str, source: &str) -> String {
        let (line_no, col, line_text) = locate(source, self.span.start);
        let mut out = format!("{file}:{line_no}:{col}: {}\n", shorten(&self.message));
        let gutter = line_no.to_string().len();
        // The span's characters on this line (at least one, for an empty span or one at the end).
        let line_end = self.span.start + line_text.len() - byte_offset(line_text, col - 1);
        let caret_len = source.get(self.span.start..self.span.end.clamp(self.span.start, line_end)).map_or(0, |t| t.chars().count()).max(1);
        let window = Window::around(line_text, col - 1, caret_len);
        out.push_str(&format!("{:>gutter$} | {}\n", line_no, window.text));
        out.push_str(&format!("{:>gutter$} | {}{}\n", "", window.pad, "^".repeat(window.caret_len)));
        if let Some(help) = &self.help {
            out.push_str(&format!("{:>gutter$} = help: {}\n", "", shorten(help)));
        }
        out
    }
}

/// Longest source line reprinted whole, in characters.
pub const MAX_LINE_CHARS: usize = 160;
/// Longest `quoted` value reprinted whole in a message or help, in characters.
pub const MAX_CODE_CHARS: usize = 80;
/// Longest message or help line, in characters, after quoted values are shortened.
const MAX_TEXT_CHARS: usize = 400;

/// The part of a source line shown under the location, and the caret line below it.
struct Window {
    text: String,
    /// Spaces (tabs kept) up to the caret.
    pad: String,
    caret_len: usize,
}

impl Window {
    /// `caret`: 0-based character column of the span's start; `caret_len` in characters.
    fn around(line: &str, caret: usize, caret_len: usize) -> Window {
        let pad_of = |s: &str| s.chars().map(|c| if c == '\t' { '\t' } else { ' ' }).collect::<String>();
        // No more characters than bytes: a short line needs no count.
        let chars = if line.len() <= MAX_LINE_CHARS { line.len() } else { line.chars().count() };
        if chars <= MAX_LINE_CHARS {
            let pad = pad_of(&line[..byte_offset(line, caret)]);
            return Window { text: line.to_string(), pad, caret_len };
        }
        // Room for an ellipsis on each side; the caret sits a third of the way in.
        let width = MAX_LINE_CHARS - 2;
        let start = caret.saturating_sub(width / 3).min(chars - width);
        let end = start + width;
        let (from, at, to) = (byte_offset(line, start), byte_offset(line, caret.min(end)), byte_offset(line, end));
        let ellipsis = |shown: bool| if shown { "…" } else { "" };
        let text = format!("{}{}{}", ellipsis(start > 0), &line[from..to], ellipsis(end < chars));
        let pad = format!("{}{}", if start > 0 { " " } else { "" }, pad_of(&line[from..at]));
        // Up to the end of the window (one past it for a caret at the end of the line).
        let caret_len = caret_len.min(end.saturating_sub(caret)).max(1);
        Window { text, pad, caret_len }
    }
}

/// Byte offset of the `n`th character of `s` (its length if `s` is shorter).
fn byte_offset(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// `text` with every `quoted` part over [`MAX_CODE_CHARS`] shortened around an ellipsis, and the
/// whole cut at [`MAX_TEXT_CHARS`].
fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= MAX_CODE_CHARS {
        return text.into();
    }
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let n = part.chars().count();
        if i % 2 == 1 && n > MAX_CODE_CHARS {
            let head = MAX_CODE_CHARS * 3 / 4;
            let tail = MAX_CODE_CHARS - head - 1;
            out.extend(part.chars().take(head));
            out.push('…');
            out.extend(part.chars().skip(n - tail));
        } else {
            out.push_str(part);
        }
    }
    if out.chars().count() > MAX_TEXT_CHARS {
        out = out.chars().take(MAX_TEXT_CHARS - 1).collect();
        out.push('…');
    }
    out.into()
}

/// 1-based line and column (in characters) of a byte offset, and the text of that line.
pub fn locate(source: &str, offset: usize) -> (usize, usize, &str) {
    let mut offset = offset.min(source.len());
    // A span inside a character (none should be) counts from the character's start.
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
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
    fn a_long_source_line_is_shown_as_a_window_around_the_caret() {
        let line = format!("deps = [{}\"bad\"{}]", "\"x\", ".repeat(100), ", \"y\"".repeat(100));
        let src = format!("[a]\n{line}\n");
        let start = src.find("\"bad\"").unwrap();
        let out = Diagnostic::new(start..start + 5, "unknown `bad`").render("f.toml", &src);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "f.toml:2:509: unknown `bad`");
        let shown = lines[1].strip_prefix("2 | ").unwrap();
        assert!(shown.starts_with('…') && shown.ends_with('…') && shown.chars().count() == MAX_LINE_CHARS, "{shown}");
        // The caret still sits under the span.
        let caret = lines[2].strip_prefix("  | ").unwrap();
        let at = caret.find('^').unwrap();
        assert_eq!(caret[at..].trim_end(), "^^^^^");
        assert_eq!(shown.chars().skip(at).take(5).collect::<String>(), "\"bad\"");
        // At the very end of a long line, the window ends there too.
        let end = Diagnostic::new(src.len() - 1..src.len() - 1, "missing").render("f.toml", &src);
        assert!(end.lines().nth(1).unwrap().ends_with(", \"y\"]") && end.lines().nth(2).unwrap().ends_with(" ^"), "{end}");
        // A short line is shown whole, as before.
        assert_eq!(Window::around("a = 1", 4, 1).text, "a = 1");
    }

    #[test]
    fn long_quoted_values_in_messages_are_shortened() {
        let long = "y".repeat(10_000);
        let d = Diagnostic::new(0..1, format!("invalid image reference `{long}`")).help(format!("put it in quotes: \"{long}\""));
        let out = d.render("f.toml", "x");
        let message = out.lines().next().unwrap();
        assert_eq!(message, format!("f.toml:1:1: invalid image reference `{}…{}`", "y".repeat(60), "y".repeat(19)));
        let help = out.lines().last().unwrap();
        assert!(help.chars().count() < MAX_TEXT_CHARS + 20 && help.ends_with('…'), "{help}");
        assert_eq!(shorten("did you mean `name`?"), "did you mean `name`?");
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("imgae", &["image", "build"]), Some("image"));
        assert_eq!(did_you_mean("zzzzzz", &["image", "build"]), None);
    }
}
