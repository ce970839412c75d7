//! Where in an import file something is: a line and column, a line, or an item.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The file as a whole.
    File,
    /// 1-based line and column (columns count characters; in CSV, CSV columns).
    At { line: u64, column: u64 },
    /// 1-based line (CSV records).
    Line(u64),
    /// An item, described by the format (`item 3 "GitHub"`, `vault "Personal", item 2`).
    Item(String),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::File => f.write_str("the file"),
            Position::At { line, column } => write!(f, "line {line}, column {column}"),
            Position::Line(line) => write!(f, "line {line}"),
            Position::Item(what) => f.write_str(what),
        }
    }
}

/// The 1-based line and column of byte `offset` in `text` (columns count characters).
pub fn line_column(text: &[u8], offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters, not bytes: continuation bytes (10xxxxxx) do not start one.
    let column = before[line_start..]
        .iter()
        .filter(|b| (**b & 0xC0) != 0x80)
        .count() as u64
        + 1;
    Position::At { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one_in_characters() {
        let text = "ab\ncé\nxyz".as_bytes();
        assert_eq!(line_column(text, 0), Position::At { line: 1, column: 1 });
        assert_eq!(line_column(text, 3), Position::At { line: 2, column: 1 });
        // After "cé" (3 bytes): column 3.
        assert_eq!(line_column(text, 6), Position::At { line: 2, column: 3 });
        assert_eq!(line_column(text, 99), Position::At { line: 3, column: 4 });
    }
}
