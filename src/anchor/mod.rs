//! The anchor engine: where anchored lines are now. Pure functions of texts and edits.
//!
//! **Architecture invariant:** nothing in here knows about git, the disk, async, JSON or LSP
//! types. Callers hand in texts (a file at the anchor's commit, the file at the target, other
//! files worth searching) or edits, and get answers. Lost and ambiguous anchors are answers
//! (`Deleted`, `Modified`), not errors; only input that cannot be located at all is an error
//! ([`Unlocatable`]).
//!
//! - [`text`]: bytes to lines (CRLF, BOM, invalid UTF-8, binary).
//! - [`linemap`]: one line diff per (old, new) pair, with edited lines paired inside hunks.
//! - [`search`]: finding anchored text that moved, was reformatted or slightly edited.
//! - [`relocate`](mod@relocate): the decision that combines them into `intact | modified | deleted`.
//! - [`trail`]: following anchored lines through a file's history one version at a time, with
//!   lines moved within or between files found again in the step that moved them.
//! - [`track`]: following anchors through an editor's live edits without re-diffing.

pub mod document;
pub mod linemap;
pub mod relocate;
pub mod search;
mod similarity;
pub mod text;
pub mod track;
pub mod trail;

pub use document::Document;
pub use linemap::LineMap;
pub use relocate::{Files, Relocation, Sources, relocate};
pub use text::Text;

use std::fmt;

/// Lines `start..=end`, 1-based and inclusive, as git prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineRange {
    pub start: u32,
    pub end: u32,
}

impl LineRange {
    pub fn new(start: u32, end: u32) -> LineRange {
        LineRange { start, end }
    }

    /// From 0-based inclusive line indexes.
    pub fn from_zero(start: u32, end: u32) -> LineRange {
        LineRange { start: start + 1, end: end + 1 }
    }

    /// Parses `A-B` or a single line `A`.
    pub fn parse(s: &str) -> Result<LineRange, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let num = |x: &str| {
            x.trim().parse::<u32>().map_err(|_| format!("`{s}` is not a line range like 10-14 (lines are 1-based)"))
        };
        let r = LineRange::new(num(a)?, num(b)?);
        if r.start == 0 || r.end < r.start {
            return Err(format!("`{s}` is not a line range: lines start at 1 and the end is not before the start"));
        }
        Ok(r)
    }
}

impl fmt::Display for LineRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end { write!(f, "{}", self.start) } else { write!(f, "{}-{}", self.start, self.end) }
    }
}

/// A discussion's hold on code: lines of a file at a commit, with their text and context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Anchor {
    /// The commit the line numbers refer to (opaque here; the git layer resolves it).
    pub commit: String,
    pub path: String,
    pub lines: LineRange,
    /// The anchored lines, when known apart from the commit: needed when the commit is missing
    /// (shallow clone, rewritten history) and for lines that were never committed.
    pub text: Option<String>,
    /// A few lines before and after, used to tell copies apart when the commit is missing.
    pub before: Vec<String>,
    pub after: Vec<String>,
}

impl Default for LineRange {
    fn default() -> Self {
        LineRange::new(1, 1)
    }
}

/// The three answers of DESIGN.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Every anchored line is there, unchanged, possibly shifted or in a renamed file.
    Intact,
    /// Part of it survives, or it was edited inside.
    Modified,
    /// Nothing survives; the location says where it used to be.
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Intact => "intact",
            Status::Modified => "modified",
            Status::Deleted => "deleted",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a relocation was found, for reports ("located from text in a shallow clone").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// Followed through the diff from the anchor's commit.
    Diff,
    /// The diff lost it; found again by searching for the anchored text.
    Search,
    /// No usable commit: located from the anchored text alone.
    Text,
}

/// Input that cannot be located at all, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unlocatable {
    #[error("{path} is a binary file; lines mean nothing there")]
    Binary { path: String },
    #[error("lines {lines} are past the end of {path}, which has {len} lines at that commit")]
    PastEnd { path: String, lines: LineRange, len: usize },
    #[error("line range {0} is empty: lines start at 1 and the end is not before the start")]
    BadRange(LineRange),
    #[error("the anchor's commit is not available and it carries no text to search for")]
    NoText,
}

/// Context lines kept on each side of an anchor.
pub const CONTEXT_LINES: usize = 3;
