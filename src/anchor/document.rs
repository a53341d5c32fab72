//! An editor buffer: text with its line starts, edited in place by (range, text) edits whose
//! columns are UTF-8 byte offsets within a line. Out-of-range positions are clamped the way
//! LSP asks (past the end of a line means its end; past the last line means the end of the
//! text); a column inside a multi-byte character moves back to the character's start.
//!
//! Each edit reports its effect on whole lines as a [`LineHunk`], which is what anchors follow.

use super::track::{LineHunk, Position};

#[derive(Clone, Debug, Default)]
pub struct Document {
    text: String,
    /// Byte offset where each line starts; always at least one entry.
    starts: Vec<usize>,
}

impl Document {
    pub fn new(text: impl Into<String>) -> Document {
        let text = text.into();
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Document { text, starts }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Lines as an editor counts them: a trailing newline opens one more (empty) line.
    pub fn line_count(&self) -> u32 {
        self.starts.len() as u32
    }

    /// Line `line`'s content, without `\n` or `\r\n`; empty past the end.
    pub fn line(&self, line: u32) -> &str {
        let Some(&s) = self.starts.get(line as usize) else { return "" };
        let e = self.starts.get(line as usize + 1).map_or(self.text.len(), |&n| n - 1);
        let l = &self.text[s..e];
        l.strip_suffix('\r').unwrap_or(l)
    }

    /// Length of a line in bytes, without its terminator.
    pub fn line_len(&self, line: u32) -> u32 {
        self.line(line).len() as u32
    }

    /// Byte offset of `pos`, clamped into the text and onto a character boundary.
    pub fn offset(&self, pos: Position) -> usize {
        let Some(&s) = self.starts.get(pos.line as usize) else { return self.text.len() };
        let line = self.line(pos.line);
        let mut col = (pos.col as usize).min(line.len());
        while !line.is_char_boundary(col) {
            col -= 1;
        }
        s + col
    }

    /// The position of a byte offset (clamped).
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        Position::new(line as u32, (offset - self.starts[line]) as u32)
    }

    /// Replaces `start..end` with `text` and returns the effect on whole lines, in the
    /// coordinates before the edit (`None` when nothing changed).
    pub fn apply(&mut self, start: Position, end: Position, text: &str) -> Option<LineHunk> {
        let (mut a, mut b) = (self.offset(start), self.offset(end));
        if b < a {
            std::mem::swap(&mut a, &mut b);
        }
        let (start, end) = (self.position(a), self.position(b));
        let hunk = LineHunk::from_edit(start, end, text, |l| self.line_len(l));
        self.text.replace_range(a..b, text);
        // Lines after the edit keep their starts, shifted; the edited lines get new ones.
        let delta = text.len() as isize - (b - a) as isize;
        let (sl, el) = (start.line as usize, end.line as usize);
        let inserted = text.match_indices('\n').map(|(i, _)| a + i + 1);
        let tail: Vec<usize> = self.starts[el + 1..].iter().map(|&s| (s as isize + delta) as usize).collect();
        self.starts.truncate(sl + 1);
        self.starts.extend(inserted);
        self.starts.extend(tail);
        hunk
    }
}
