//! Pure helpers for quoting a command's output in a message: no I/O, text in and text out.

/// The last `n` non-blank lines of `output` (trailing whitespace trimmed) and how many non-blank
/// lines came before them. Messages quote a failing command by the end of what it printed,
/// where its error is; blank lines would only take the room of lines that say something.
pub fn last_lines(output: &str, n: usize) -> (usize, Vec<&str>) {
    let lines: Vec<&str> = output.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    (from, lines[from..].to_vec())
}

/// The last `n` non-blank lines of `output` (see [`last_lines`]) joined by `separator`.
pub fn last_lines_joined(output: &str, n: usize, separator: &str) -> String {
    last_lines(output, n).1.join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_skip_blank_ones_and_count_what_came_before() {
        assert_eq!(last_lines("", 3), (0, vec![]));
        assert_eq!(last_lines("a\n\n  \nb  \n", 3), (0, vec!["a", "b"]));
        let many: String = (1..=8).map(|i| format!("line {i}\n\n")).collect();
        assert_eq!(last_lines(&many, 3), (5, vec!["line 6", "line 7", "line 8"]));
        assert_eq!(last_lines("  indented\r\nlast\r\n", 5).1, vec!["  indented", "last"], "leading space is kept");
        assert_eq!(last_lines_joined("x\ny\nz\n", 2, " / "), "y / z");
        assert_eq!(last_lines_joined("x\n", 0, "\n"), "");
    }
}
