//! Following anchors through an editor's live edits, without re-diffing the file.
//!
//! Each text edit (a range replaced by new text) is reduced to its effect on whole lines, a
//! [`LineHunk`]: old lines `start..old_end` became `new_len` lines, with lines that only
//! gained or lost a line break counted as unchanged. A didChange's edits are composed into one
//! [`LineChange`] (a sorted list of hunks in the document's coordinates before the change), and
//! the [`Tracker`] maps every anchor through it in one pass over its starts and one over its
//! ends, each kept sorted: O(hunks + anchors) per change.
//!
//! Boundaries, decided once here: an insertion exactly at the start of an anchor's first line
//! goes above it (typing a new line above an anchor pushes it down); an insertion at the end of
//! its last line stays on that line (typing there stays inside), and a line break typed there
//! opens a line below, outside. A replaced region that covered an anchor's edge takes the
//! anchor's edge to the region's new edge; a region deleted outright removes the lines.

use super::LineRange;

/// A position: 0-based line and a column in the edit's unit (the caller's choice, used
/// consistently; the language server uses UTF-8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: u32,
    pub col: u32,
}

impl Position {
    pub fn new(line: u32, col: u32) -> Position {
        Position { line, col }
    }
}

/// One edit's effect on whole lines (0-based): old `start..old_end` became `new_len` lines,
/// which start at `start` in the document just after the edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineHunk {
    pub start: u32,
    pub old_end: u32,
    pub new_len: u32,
}

impl LineHunk {
    /// The effect of replacing `start..end` by `text`. `line_len` gives the length of a line of
    /// the document before the edit, in the same unit as the columns. `None` for a no-op.
    pub fn from_edit(start: Position, end: Position, text: &str, line_len: impl Fn(u32) -> u32) -> Option<LineHunk> {
        let breaks = text.bytes().filter(|&b| b == b'\n').count() as u32;
        let first_empty = text.split('\n').next().is_some_and(str::is_empty);
        let last_empty = text.rsplit('\n').next().is_some_and(str::is_empty);
        let mut hunk = LineHunk { start: start.line, old_end: end.line + 1, new_len: breaks + 1 };
        // The last new line is the old last line untouched when the edit ended at its start
        // and the inserted text ends with a line break (or nothing was inserted before it).
        if end.col == 0 && last_empty && (breaks >= 1 || start.col == 0) {
            hunk.old_end -= 1;
            hunk.new_len -= 1;
        }
        // The first new line is the old first line untouched when the edit began at its end
        // and the inserted text begins with a line break (or the edit removed nothing after).
        let starts_at_eol = start.col >= line_len(start.line);
        let ends_at_eol = end.col >= line_len(end.line);
        if hunk.start < hunk.old_end
            && hunk.new_len >= 1
            && starts_at_eol
            && first_empty
            && (breaks >= 1 || ends_at_eol)
        {
            hunk.start += 1;
            hunk.old_end = hunk.old_end.max(hunk.start);
            hunk.new_len -= 1;
        }
        (hunk.start < hunk.old_end || hunk.new_len > 0).then_some(hunk)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Composed {
    old: u32,
    old_end: u32,
    new: u32,
    new_len: u32,
}

impl Composed {
    fn delta(&self) -> i64 {
        self.new_len as i64 - (self.old_end - self.old) as i64
    }
}

/// The line effect of a sequence of edits, in the coordinates before the first one.
#[derive(Clone, Debug, Default)]
pub struct LineChange {
    hunks: Vec<Composed>,
}

impl LineChange {
    pub fn new() -> LineChange {
        LineChange::default()
    }

    pub fn is_empty(&self) -> bool {
        self.hunks.is_empty()
    }

    /// Adds the next edit's hunk, given in the coordinates after all edits pushed so far.
    /// Linear in the hunks already held; constant for the common single edit and for
    /// multi-cursor edits sent bottom-up.
    pub fn push(&mut self, h: LineHunk) {
        let (p, q, r) = (h.start as i64, h.old_end as i64, h.new_len as i64);
        let overlaps = |c: &Composed| {
            let (n, nr) = (c.new as i64, c.new as i64 + c.new_len as i64);
            (n < q && p < nr) || (c.new_len == 0 && p < n && n < q)
        };
        // First hunk not entirely before the edit; stored hunks are sorted, so the ones it
        // touches follow contiguously.
        let first = self.hunks.partition_point(|c| (c.new as i64 + c.new_len as i64) <= p && !overlaps(c));
        let mut last = first;
        while last < self.hunks.len() && overlaps(&self.hunks[last]) {
            last += 1;
        }
        let delta_before: i64 = self.hunks[..first].iter().map(Composed::delta).sum();
        let merged = if first == last {
            let old = p - delta_before;
            Composed { old: old as u32, old_end: (old + q - p) as u32, new: p as u32, new_len: r as u32 }
        } else {
            let (a, b) = (self.hunks[first], self.hunks[last - 1]);
            let delta_through: i64 = delta_before + self.hunks[first..last].iter().map(Composed::delta).sum::<i64>();
            let new_start = p.min(a.new as i64);
            let new_end_before = q.max(b.new as i64 + b.new_len as i64);
            let old = if p < a.new as i64 { p - delta_before } else { a.old as i64 };
            let old_end = if q > (b.new + b.new_len) as i64 { q - delta_through } else { b.old_end as i64 };
            let new_len = new_end_before - new_start - (q - p) + r;
            Composed { old: old as u32, old_end: old_end as u32, new: new_start as u32, new_len: new_len as u32 }
        };
        let shift = r - (q - p);
        for c in &mut self.hunks[last..] {
            c.new = (c.new as i64 + shift) as u32;
        }
        self.hunks.splice(first..last, [merged]);
    }

    /// The change of a single edit.
    pub fn single(h: LineHunk) -> LineChange {
        let mut c = LineChange::new();
        c.push(h);
        c
    }
}

/// Maps sorted line numbers through a change, one forward pass.
struct Cursor<'a> {
    hunks: &'a [Composed],
    k: usize,
    delta: i64,
}

impl<'a> Cursor<'a> {
    fn new(change: &'a LineChange) -> Cursor<'a> {
        Cursor { hunks: &change.hunks, k: 0, delta: 0 }
    }

    /// Skips hunks entirely before `line` (including insertions right at it) and returns the
    /// hunk that contains it, if any.
    fn seek(&mut self, line: u32) -> Option<&'a Composed> {
        while let Some(h) = self.hunks.get(self.k) {
            if h.old_end > line {
                break;
            }
            self.delta += h.delta();
            self.k += 1;
        }
        self.hunks.get(self.k).filter(|h| h.old <= line && line < h.old_end)
    }

    /// New position of a range's first line.
    fn start(&mut self, line: u32) -> i64 {
        match self.seek(line) {
            Some(h) => h.new as i64,
            None => line as i64 + self.delta,
        }
    }

    /// New position of a range's last line (one before the start when it was deleted).
    fn end(&mut self, line: u32) -> i64 {
        match self.seek(line) {
            Some(h) => h.new as i64 + h.new_len as i64 - 1,
            None => line as i64 + self.delta,
        }
    }
}

/// Where a tracked anchor is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// At these lines (1-based, inclusive).
    At(LineRange),
    /// Its lines were deleted; the gap is now before this line (0-based).
    Gone(u32),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    start: u32,
    /// Inclusive last line; meaningless when `gone`.
    end: u32,
    gone: bool,
}

impl Slot {
    fn end_key(&self) -> u32 {
        if self.gone { self.start } else { self.end + 1 }
    }
}

/// Many anchors in one document, followed through its edits.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    slots: Vec<Slot>,
    by_start: Vec<u32>,
    by_end: Vec<u32>,
}

impl Tracker {
    pub fn new(ranges: impl IntoIterator<Item = LineRange>) -> Tracker {
        let slots: Vec<Slot> =
            ranges.into_iter().map(|r| Slot { start: r.start - 1, end: r.end - 1, gone: false }).collect();
        let mut t =
            Tracker { by_start: (0..slots.len() as u32).collect(), by_end: (0..slots.len() as u32).collect(), slots };
        t.resort();
        t
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds an anchor and returns its index.
    pub fn push(&mut self, range: LineRange) -> usize {
        let i = self.slots.len() as u32;
        self.slots.push(Slot { start: range.start - 1, end: range.end - 1, gone: false });
        let at = self.by_start.partition_point(|&k| self.slots[k as usize].start < range.start);
        self.by_start.insert(at, i);
        let at = self.by_end.partition_point(|&k| self.slots[k as usize].end_key() <= range.end);
        self.by_end.insert(at, i);
        i as usize
    }

    pub fn get(&self, i: usize) -> Tracked {
        let s = self.slots[i];
        if s.gone { Tracked::Gone(s.start) } else { Tracked::At(LineRange::from_zero(s.start, s.end)) }
    }

    /// Maps every anchor through `change` in one pass over starts and one over ends.
    pub fn apply(&mut self, change: &LineChange) {
        if change.is_empty() {
            return;
        }
        let mut starts = Cursor::new(change);
        for &k in &self.by_start {
            let slot = &mut self.slots[k as usize];
            slot.start = starts.start(slot.start).max(0) as u32;
        }
        let mut ends = Cursor::new(change);
        let mut new_ends: Vec<i64> = Vec::with_capacity(self.by_end.len());
        for &k in &self.by_end {
            let slot = &self.slots[k as usize];
            new_ends.push(if slot.gone { 0 } else { ends.end(slot.end) });
        }
        for (&k, &e) in self.by_end.iter().zip(&new_ends) {
            let slot = &mut self.slots[k as usize];
            if slot.gone {
                continue;
            }
            if e < slot.start as i64 {
                slot.gone = true;
            } else {
                slot.end = e as u32;
            }
        }
        // Mapping is monotone, so both orders survive; a range that just disappeared changes
        // its end key, which can break the end order: then sort again.
        let sorted = |v: &[u32], key: &dyn Fn(&Slot) -> u32| {
            v.windows(2).all(|w| key(&self.slots[w[0] as usize]) <= key(&self.slots[w[1] as usize]))
        };
        if !sorted(&self.by_start, &|s| s.start) || !sorted(&self.by_end, &Slot::end_key) {
            self.resort();
        }
    }

    fn resort(&mut self) {
        let slots = &self.slots;
        self.by_start.sort_by_key(|&k| slots[k as usize].start);
        self.by_end.sort_by_key(|&k| slots[k as usize].end_key());
    }
}

#[cfg(test)]
mod tests;
