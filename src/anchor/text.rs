//! Text as the anchor engine sees it: a file's bytes decoded leniently into lines.
//!
//! A line is what git counts as one: the bytes up to a `\n`. Its content excludes the `\n` and a
//! `\r` just before it, so CRLF, LF and mixed files compare equal line by line. A UTF-8 byte
//! order mark is dropped, invalid UTF-8 is replaced (never a panic), and a final line without a
//! newline is still a line. Binary content (a NUL byte in the first 8,000 bytes, git's own test)
//! is kept but flagged, so callers can answer "unknown" instead of inventing line numbers.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use rustc_hash::{FxHashMap, FxHasher};

/// How far git looks for a NUL byte when it decides whether a blob is binary.
const BINARY_PROBE: usize = 8000;

/// A file's content split into lines, with per-line hashes computed once.
pub struct Text {
    src: String,
    /// Byte range of each line's content in `src`, without its terminator.
    lines: Vec<(u32, u32)>,
    /// Hash of each line's exact content, computed on first use (a version of a file that only
    /// shifts the lines followed through it is never hashed).
    exact: OnceLock<Vec<u64>>,
    /// Hash of each line with all whitespace removed, computed on first use.
    squashed: OnceLock<Vec<u64>>,
    /// Where each squashed hash occurs, computed on first use.
    index: OnceLock<FxHashMap<u64, Vec<u32>>>,
    /// How many times each exact line occurs, computed on first use.
    counts: OnceLock<FxHashMap<u64, u32>>,
    /// For each identifier token, the lines that contain it, computed on first use.
    token_lines: OnceLock<FxHashMap<u64, Vec<u32>>>,
    binary: bool,
}

impl Text {
    /// Decodes `bytes` leniently. Never fails: invalid UTF-8 becomes U+FFFD.
    pub fn from_bytes(bytes: &[u8]) -> Text {
        let binary = bytes[..bytes.len().min(BINARY_PROBE)].contains(&0);
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let src = match std::str::from_utf8(bytes) {
            Ok(valid) => valid.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        };
        Text::from_string(src, binary)
    }

    /// Wraps text that is already a string (an editor buffer, a test fixture).
    pub fn new(src: impl Into<String>) -> Text {
        let src = src.into();
        let src = match src.strip_prefix('\u{FEFF}') {
            Some(rest) => rest.to_owned(),
            None => src,
        };
        let binary = src.as_bytes()[..src.len().min(BINARY_PROBE)].contains(&0);
        Text::from_string(src, binary)
    }

    fn from_string(src: String, binary: bool) -> Text {
        assert!(src.len() < u32::MAX as usize, "texts over 4 GiB are refused before this point");
        let mut lines = Vec::with_capacity(src.len() / 32 + 1);
        let mut start = 0usize;
        let bytes = src.as_bytes();
        for i in memchr::memchr_iter(b'\n', bytes) {
            let end = if i > start && bytes[i - 1] == b'\r' { i - 1 } else { i };
            lines.push((start as u32, end as u32));
            start = i + 1;
        }
        if start < bytes.len() {
            let end = if bytes[bytes.len() - 1] == b'\r' { bytes.len() - 1 } else { bytes.len() };
            lines.push((start as u32, end as u32));
        }
        Text {
            src,
            lines,
            exact: OnceLock::new(),
            squashed: OnceLock::new(),
            index: OnceLock::new(),
            token_lines: OnceLock::new(),
            counts: OnceLock::new(),
            binary,
        }
    }

    /// Number of lines (a trailing newline does not start another line, as in git).
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// True when the content looks binary; line numbers mean nothing there.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Line `i` (0-based) without its terminator.
    pub fn line(&self, i: usize) -> &str {
        let (s, e) = self.lines[i];
        &self.src[s as usize..e as usize]
    }

    /// Lines `range` (0-based, end exclusive).
    pub fn lines(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &str> + '_ {
        range.map(move |i| self.line(i))
    }

    /// The whole decoded content.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// Exact hash of every line, in order.
    pub fn hashes(&self) -> &[u64] {
        self.exact
            .get_or_init(|| self.lines.iter().map(|&(s, e)| hash_str(&self.src[s as usize..e as usize])).collect())
    }

    /// How many lines `self` and `new` share at their start and at their end, byte for byte
    /// (line endings included), without overlapping: a diff keeps those lines where they are,
    /// or shifted by the difference in length, whatever it does in between. Cheap: no line is
    /// hashed.
    pub fn common_edges(&self, new: &Text) -> (u32, u32) {
        let (a, b) = (self.src.as_bytes(), new.src.as_bytes());
        if a == b {
            return (self.len() as u32, 0);
        }
        let p = common_prefix(a, b);
        let head = memchr::memchr_iter(b'\n', &a[..p]).count() as u32;
        let s = common_prefix_rev(&a[p..], &b[p..]);
        // Lines that start strictly inside the common end: their line break before them is
        // common too, so they are lines of both texts.
        let from = a.len() - s;
        let tail = self.lines.iter().rev().take_while(|&&(start, _)| start as usize > from).count() as u32;
        (head, tail.min(self.len() as u32 - head))
    }

    /// Whitespace-insensitive hash of every line, in order.
    pub fn squashed_hashes(&self) -> &[u64] {
        self.squashed.get_or_init(|| (0..self.len()).map(|i| squashed_hash(self.line(i))).collect())
    }

    /// Lines shared with `other` over lines in both (Dice over line multisets): how git judges
    /// whether a deleted file and an added one are one file renamed. 0 for empty or binary.
    pub fn shared_lines(&self, other: &Text) -> f32 {
        if self.is_empty() || other.is_empty() || self.binary || other.binary {
            return 0.0;
        }
        let mut x = self.hashes().to_vec();
        let mut y = other.hashes().to_vec();
        x.sort_unstable();
        y.sort_unstable();
        (2 * super::similarity::common_sorted(&x, &y)) as f32 / (x.len() + y.len()) as f32
    }

    /// How many lines read exactly `line` (line endings aside).
    pub(crate) fn occurrences(&self, line: &str) -> u32 {
        let counts = self.counts.get_or_init(|| {
            let mut counts: FxHashMap<u64, u32> = FxHashMap::default();
            for &h in self.hashes() {
                *counts.entry(h).or_default() += 1;
            }
            counts
        });
        counts.get(&hash_str(line)).copied().unwrap_or(0)
    }

    /// How many lines contain the token with this hash (see [`super::similarity::tokens`]).
    pub(crate) fn lines_with_token(&self, token: u64) -> u32 {
        self.token_lines(token).len() as u32
    }

    /// The lines that contain the token with this hash, in order.
    pub(crate) fn token_lines(&self, token: u64) -> &[u32] {
        let index = self.token_lines.get_or_init(|| {
            let mut index: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
            for i in 0..self.len() {
                for t in super::similarity::tokens(self.line(i)) {
                    let lines = index.entry(t).or_default();
                    if lines.last() != Some(&(i as u32)) {
                        lines.push(i as u32);
                    }
                }
            }
            index
        });
        index.get(&token).map_or(&[], Vec::as_slice)
    }

    /// Positions of every line by whitespace-insensitive hash.
    pub(crate) fn index(&self) -> &FxHashMap<u64, Vec<u32>> {
        self.index.get_or_init(|| {
            let mut index: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
            for (i, &h) in self.squashed_hashes().iter().enumerate() {
                index.entry(h).or_default().push(i as u32);
            }
            index
        })
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text").field("lines", &self.len()).field("binary", &self.binary).finish()
    }
}

/// Length of the common start of two byte strings, compared 256 bytes at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 256 <= n && a[i..i + 256] == b[i..i + 256] {
        i += 256;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Length of the common end of two byte strings.
fn common_prefix_rev(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut i = 0;
    while i + 256 <= n && a[n - i - 256..n - i] == b[n - i - 256..n - i] {
        i += 256;
    }
    while i < n && a[n - i - 1] == b[n - i - 1] {
        i += 1;
    }
    i
}

/// Hash of a line's exact content.
pub fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// Hash of a line with every whitespace character removed, as `git diff -w` compares lines.
pub fn squashed_hash(s: &str) -> u64 {
    // The bytes of the line without its whitespace, hashed at once: most lines are ASCII and
    // short, so the bytes are gathered on the stack; other lines go through chars.
    let mut h = FxHasher::default();
    let mut buf = [0u8; 256];
    if s.is_ascii() && s.len() <= buf.len() {
        let mut n = 0;
        for &b in s.as_bytes() {
            if !b.is_ascii_whitespace() && b != 0x0b {
                buf[n] = b;
                n += 1;
            }
        }
        h.write(&buf[..n]);
    } else {
        let squashed: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        h.write(squashed.as_bytes());
    }
    h.finish()
}

/// A line that says too little to identify code on its own: blank, a brace, `end`, `});`.
/// Such lines do not vote when searching for moved code, though they still have to match.
pub fn is_trivial(line: &str) -> bool {
    line.chars().filter(|c| c.is_alphanumeric()).take(3).count() < 3
}

/// Splits anchored text the way [`Text`] splits a file: `\n` terminators, `\r` dropped, a
/// final newline not starting another line.
pub fn split_lines(text: &str) -> Vec<&str> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut out: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    if text.ends_with('\n') || text.is_empty() {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(t: &Text) -> Vec<&str> {
        t.lines(0..t.len()).collect()
    }

    #[test]
    fn lf_crlf_and_mixed_endings_give_the_same_lines() {
        let lf = Text::new("a\nb\nc\n");
        let crlf = Text::new("a\r\nb\r\nc\r\n");
        let mixed = Text::new("a\r\nb\nc\r\n");
        assert_eq!(lines(&lf), ["a", "b", "c"]);
        assert_eq!(lines(&crlf), ["a", "b", "c"]);
        assert_eq!(lines(&mixed), ["a", "b", "c"]);
        assert_eq!(lf.hashes(), crlf.hashes());
        assert_eq!(lf.hashes(), mixed.hashes());
    }

    #[test]
    fn a_lone_carriage_return_is_content_not_a_line_break() {
        assert_eq!(lines(&Text::new("a\rb\n")), ["a\rb"]);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_line() {
        let t = Text::from_bytes(b"\xEF\xBB\xBFfn main() {}\n");
        assert_eq!(lines(&t), ["fn main() {}"]);
        assert_eq!(lines(&Text::new("\u{FEFF}x\n")), ["x"]);
    }

    #[test]
    fn no_final_newline_still_counts_the_last_line() {
        assert_eq!(lines(&Text::new("a\nb")), ["a", "b"]);
        assert_eq!(lines(&Text::new("a\nb\r")), ["a", "b"]);
    }

    #[test]
    fn empty_file_has_no_lines_and_a_lone_newline_has_one() {
        assert_eq!(Text::new("").len(), 0);
        assert_eq!(lines(&Text::new("\n")), [""]);
        assert_eq!(lines(&Text::new("\n\n")), ["", ""]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let t = Text::from_bytes(b"ok\n\xff\xfe bad \xc3\n");
        assert_eq!(t.len(), 2);
        assert_eq!(t.line(0), "ok");
        assert!(t.line(1).contains('\u{FFFD}'));
        assert!(!t.is_binary());
    }

    #[test]
    fn nul_bytes_mark_binary_content() {
        assert!(Text::from_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").is_binary());
        assert!(!Text::from_bytes(b"plain\n").is_binary());
    }

    #[test]
    fn tabs_and_spaces_differ_exactly_but_not_when_squashed() {
        let t = Text::new("\tlet x = 1;\n    let x = 1;\nlet  x=1;\n");
        assert_ne!(t.hashes()[0], t.hashes()[1]);
        assert_eq!(t.squashed_hashes()[0], t.squashed_hashes()[1]);
        assert_eq!(t.squashed_hashes()[0], t.squashed_hashes()[2]);
    }

    #[test]
    fn shared_lines_measure_how_much_of_a_file_survives() {
        let a = Text::new("a\nb\nc\nd\n");
        assert_eq!(a.shared_lines(&Text::new("a\r\nb\r\nc\r\nd\r\n")), 1.0);
        assert_eq!(a.shared_lines(&Text::new("a\nb\nx\ny\n")), 0.5);
        assert_eq!(a.shared_lines(&Text::new("")), 0.0);
    }

    #[test]
    fn split_lines_matches_text_lines() {
        for s in ["", "\n", "a", "a\n", "a\r\nb", "a\n\nb\n", "\u{FEFF}a\r\n"] {
            assert_eq!(split_lines(s), lines(&Text::new(s)), "{s:?}");
        }
    }

    #[test]
    fn trivial_lines_are_the_ones_without_three_letters() {
        for l in ["", "   ", "}", "});", "{", "fi", "*/"] {
            assert!(is_trivial(l), "{l:?}");
        }
        for l in ["end", "return x;", "else {", "let a = b;"] {
            assert!(!is_trivial(l), "{l:?}");
        }
    }
}
