//! The edge between LSP coordinates and ours. Inside, a position is a line and a UTF-8 byte
//! column ([`Position`]); the client speaks UTF-16 code units unless it offered UTF-8 at
//! initialize. Conversions happen here and nowhere else.

use tower_lsp_server::ls_types as lsp;

use crate::anchor::Document;
use crate::anchor::track::Position;

/// The negotiated position encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    Utf8,
    #[default]
    Utf16,
}

impl Encoding {
    /// UTF-8 when the client offers it (no conversion at all), otherwise the mandatory UTF-16.
    pub fn negotiate(offered: Option<&[lsp::PositionEncodingKind]>) -> Encoding {
        match offered {
            Some(kinds) if kinds.contains(&lsp::PositionEncodingKind::UTF8) => Encoding::Utf8,
            _ => Encoding::Utf16,
        }
    }

    pub fn kind(self) -> lsp::PositionEncodingKind {
        match self {
            Encoding::Utf8 => lsp::PositionEncodingKind::UTF8,
            Encoding::Utf16 => lsp::PositionEncodingKind::UTF16,
        }
    }
}

/// A position the client sent that cannot be taken as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPosition {
    #[error("line {line} is past the end of the document, which has {lines} lines")]
    PastEnd { line: u32, lines: u32 },
    #[error(
        "character {character} on line {line} falls inside a character (a UTF-16 surrogate pair or UTF-8 sequence)"
    )]
    InsideCharacter { line: u32, character: u32 },
}

/// The byte column of an LSP character offset on `line`. Past the end of the line means its end
/// (the LSP rule); an offset inside a character is an error, with where it would land.
pub fn byte_col(line: &str, character: u32, enc: Encoding) -> Result<u32, (u32, BadPosition)> {
    let bad = |at: usize| (at as u32, BadPosition::InsideCharacter { line: 0, character });
    match enc {
        Encoding::Utf8 => {
            let c = (character as usize).min(line.len());
            if line.is_char_boundary(c) {
                return Ok(c as u32);
            }
            let mut at = c;
            while !line.is_char_boundary(at) {
                at -= 1;
            }
            Err(bad(at))
        }
        Encoding::Utf16 => {
            let mut units = 0u32;
            for (i, ch) in line.char_indices() {
                if units == character {
                    return Ok(i as u32);
                }
                let next = units + ch.len_utf16() as u32;
                if next > character {
                    return Err(bad(i));
                }
                units = next;
            }
            Ok(line.len() as u32)
        }
    }
}

/// The LSP character offset of byte column `col` on `line`.
pub fn lsp_col(line: &str, col: u32, enc: Encoding) -> u32 {
    let col = (col as usize).min(line.len());
    match enc {
        Encoding::Utf8 => col as u32,
        Encoding::Utf16 => line[..floor_boundary(line, col)].encode_utf16().count() as u32,
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Our position of an LSP position in `doc`, following LSP's forgiving rules for edits (past
/// the end of a line is its end, past the last line is the end of the text); the error says
/// what was wrong when the position had to be moved to mean anything.
pub fn from_lsp(doc: &Document, pos: lsp::Position, enc: Encoding) -> (Position, Option<BadPosition>) {
    if pos.line >= doc.line_count() {
        let last = doc.line_count() - 1;
        let at = Position::new(last, doc.line_len(last));
        return (at, Some(BadPosition::PastEnd { line: pos.line, lines: doc.line_count() }));
    }
    match byte_col(doc.line(pos.line), pos.character, enc) {
        Ok(col) => (Position::new(pos.line, col), None),
        Err((col, BadPosition::InsideCharacter { character, .. })) => {
            (Position::new(pos.line, col), Some(BadPosition::InsideCharacter { line: pos.line, character }))
        }
        Err((col, other)) => (Position::new(pos.line, col), Some(other)),
    }
}

/// The LSP range covering whole lines `start..=end` (0-based) of `doc`.
pub fn line_range(doc: &Document, start: u32, end: u32, enc: Encoding) -> lsp::Range {
    let end = end.min(doc.line_count().saturating_sub(1));
    let start = start.min(end);
    let end_col = lsp_col(doc.line(end), doc.line_len(end), enc);
    lsp::Range::new(lsp::Position::new(start, 0), lsp::Position::new(end, end_col))
}

/// The 0-based inclusive lines an editor selection covers: a selection that ends at the very
/// start of a line (a whole-line selection) does not include that line.
pub fn selected_lines(range: lsp::Range) -> (u32, u32) {
    let (s, e) = if range.end < range.start { (range.end, range.start) } else { (range.start, range.end) };
    let last = if e.character == 0 && e.line > s.line { e.line - 1 } else { e.line };
    (s.line, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns_count_surrogate_pairs_as_two() {
        let line = "a😀b"; // 😀 is 4 bytes, 2 UTF-16 units
        assert_eq!(byte_col(line, 0, Encoding::Utf16), Ok(0));
        assert_eq!(byte_col(line, 1, Encoding::Utf16), Ok(1));
        assert_eq!(byte_col(line, 3, Encoding::Utf16), Ok(5));
        assert_eq!(byte_col(line, 4, Encoding::Utf16), Ok(6));
        assert_eq!(byte_col(line, 99, Encoding::Utf16), Ok(6), "past the end is the end");
        assert!(matches!(byte_col(line, 2, Encoding::Utf16), Err((1, BadPosition::InsideCharacter { .. }))));
        assert_eq!(lsp_col(line, 5, Encoding::Utf16), 3);
        assert_eq!(lsp_col(line, 6, Encoding::Utf16), 4);
        assert_eq!(lsp_col("é", 2, Encoding::Utf8), 2);
    }

    #[test]
    fn utf8_columns_inside_a_character_are_reported() {
        assert_eq!(byte_col("é", 2, Encoding::Utf8), Ok(2));
        assert!(matches!(byte_col("é", 1, Encoding::Utf8), Err((0, BadPosition::InsideCharacter { .. }))));
    }

    #[test]
    fn whole_line_selections_stop_before_the_next_line() {
        let r = |a, b, c, d| lsp::Range::new(lsp::Position::new(a, b), lsp::Position::new(c, d));
        assert_eq!(selected_lines(r(2, 0, 5, 0)), (2, 4));
        assert_eq!(selected_lines(r(2, 3, 5, 1)), (2, 5));
        assert_eq!(selected_lines(r(2, 0, 2, 0)), (2, 2));
        assert_eq!(selected_lines(r(5, 1, 2, 0)), (2, 5), "a backwards selection");
    }
}
