//! `LineMap`: where each line of an old text went in a new text, from one line diff.
//!
//! The diff is `similar`'s Myers over per-line hashes, bounded by a deadline: on pathological
//! input it returns a coarser (still valid) diff instead of running on, and lines that the
//! coarse diff lost are found again by the search in [`super::search`]. Inside a changed hunk,
//! old lines are paired with the new lines they most resemble (a weighted alignment over
//! character-bigram similarity), so a line edited in place is "edited", not "deleted".

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use similar::{Algorithm, DiffOp};

use super::similarity::{Shingles, similarity};
use super::text::Text;

/// How long one diff may take before it settles for a coarser answer.
pub const DIFF_DEADLINE: Duration = Duration::from_millis(250);

/// Pairing inside a changed hunk is quadratic; past this many line pairs it maps by position.
const PAIRING_BUDGET: usize = 40_000;

/// Two lines at least this similar are the same line, edited.
const PAIRING_THRESHOLD: f32 = 0.5;

/// What became of one old line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Unchanged, now at this new line.
    Kept(u32),
    /// Edited in place, now this new line.
    Edited(u32),
    /// Removed, or rewritten beyond recognition; the lines around it now meet before new
    /// line `at`.
    Deleted { at: u32 },
}

#[derive(Clone, Copy, Debug)]
struct Hunk {
    old: u32,
    old_len: u32,
    new: u32,
    new_len: u32,
    equal: bool,
}

/// The mapping of old lines to new lines for one (old text, new text) pair.
///
/// Build it once per pair and share it: anchors on the same file version reuse the diff and
/// the hunk pairings, which are computed lazily on first use.
pub struct LineMap {
    hunks: Vec<Hunk>,
    /// For each hunk that is a replacement, the pairing of its old lines, filled on first use.
    pairings: Vec<OnceLock<Box<[Option<u32>]>>>,
    old_len: u32,
    new_len: u32,
    timed_out: bool,
}

impl LineMap {
    /// Diffs `old` against `new` with the default deadline.
    pub fn new(old: &Text, new: &Text) -> LineMap {
        LineMap::with_deadline(old, new, DIFF_DEADLINE)
    }

    pub fn with_deadline(old: &Text, new: &Text, deadline: Duration) -> LineMap {
        let started = Instant::now();
        let ops = similar::capture_diff_slices_deadline(
            Algorithm::Myers,
            old.hashes(),
            new.hashes(),
            Some(started + deadline),
        );
        let timed_out = started.elapsed() >= deadline;
        let mut hunks: Vec<Hunk> = Vec::with_capacity(ops.len());
        for op in ops {
            let (old_r, new_r) = (op.old_range(), op.new_range());
            let hunk = Hunk {
                old: old_r.start as u32,
                old_len: old_r.len() as u32,
                new: new_r.start as u32,
                new_len: new_r.len() as u32,
                equal: matches!(op, DiffOp::Equal { .. }),
            };
            // similar may emit a delete next to an insert; one replacement is easier to pair.
            match hunks.last_mut() {
                Some(prev) if !prev.equal && !hunk.equal => {
                    prev.old_len += hunk.old_len;
                    prev.new_len += hunk.new_len;
                }
                _ => hunks.push(hunk),
            }
        }
        let pairings = (0..hunks.len()).map(|_| OnceLock::new()).collect();
        LineMap { hunks, pairings, old_len: old.len() as u32, new_len: new.len() as u32, timed_out }
    }

    /// True when the diff hit its deadline and is coarser than a full diff would be.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// True when nothing changed.
    pub fn is_identity(&self) -> bool {
        self.hunks.iter().all(|h| h.equal)
    }

    fn hunk_index(&self, line: u32) -> usize {
        // The hunk whose old range contains `line`; pure insertions (old_len 0) are skipped
        // because no old line lives in them.
        let i = self.hunks.partition_point(|h| h.old + h.old_len <= line);
        debug_assert!(i < self.hunks.len(), "line {line} is past the old text");
        i
    }

    /// What became of old line `line` (0-based). `old` and `new` must be the texts this map was
    /// built from; they are needed to pair lines inside changed hunks.
    pub fn fate(&self, line: u32, old: &Text, new: &Text) -> Fate {
        assert!(line < self.old_len, "line {line} is past the old text ({})", self.old_len);
        let i = self.hunk_index(line);
        let h = self.hunks[i];
        let offset = line - h.old;
        if h.equal {
            return Fate::Kept(h.new + offset);
        }
        if h.new_len == 0 {
            return Fate::Deleted { at: h.new };
        }
        let pairing = self.pairings[i].get_or_init(|| pair_hunk(h, old, new));
        if let Some(j) = pairing[offset as usize] {
            return Fate::Edited(j);
        }
        // Unpaired: rewritten beyond recognition or deleted, which a diff cannot tell apart;
        // either way nothing of it survives. It was where its paired neighbour's line ends.
        let prev = pairing[..offset as usize].iter().rev().find_map(|&p| p);
        let start = prev.map_or(h.new, |j| j + 1);
        Fate::Deleted { at: start }
    }

    /// For every new line, true when the diff did not keep it from the old text: written,
    /// edited or moved there. Where moved code can have landed.
    pub fn fresh(&self) -> Vec<bool> {
        let mut out = vec![true; self.new_len as usize];
        for h in self.hunks.iter().filter(|h| h.equal) {
            out[h.new as usize..(h.new + h.new_len) as usize].fill(false);
        }
        out
    }

    /// Where old line `line` lands when only positions matter: its new line if it was kept,
    /// otherwise the start of the new text that took its hunk's place.
    pub fn position(&self, line: u32) -> u32 {
        if line >= self.old_len {
            return self.new_len;
        }
        let h = self.hunks[self.hunk_index(line)];
        if h.equal { h.new + (line - h.old) } else { h.new }
    }
}

/// Pairs the old lines of a changed hunk with new lines: the monotone matching that maximises
/// total similarity, counting only pairs above the threshold. Large hunks fall back to pairing
/// by position when the lines are alike.
fn pair_hunk(h: Hunk, old: &Text, new: &Text) -> Box<[Option<u32>]> {
    let (m, n) = (h.old_len as usize, h.new_len as usize);
    // Names rare in these texts say more than words found everywhere in them.
    let weight = |t: u64| 1.0 / ((old.lines_with_token(t) + new.lines_with_token(t)).max(1) as f32).sqrt();
    let olds: Vec<Shingles> = (0..m).map(|i| Shingles::weighted(old.line(h.old as usize + i), &weight)).collect();
    if m * n > PAIRING_BUDGET {
        // Too big to align: pair by proportional position, keeping only pairs that resemble.
        return (0..m)
            .map(|i| {
                let j = (i * n / m).min(n - 1);
                let s = similarity(&olds[i], &Shingles::weighted(new.line(h.new as usize + j), &weight));
                (s >= PAIRING_THRESHOLD).then_some(h.new + j as u32)
            })
            .collect();
    }
    let news: Vec<Shingles> = (0..n).map(|j| Shingles::weighted(new.line(h.new as usize + j), &weight)).collect();
    // score[i][j]: best total for olds[i..] against news[j..].
    let w = n + 1;
    let mut score = vec![0f32; (m + 1) * w];
    let mut take = vec![false; (m + 1) * w];
    for i in (0..m).rev() {
        for j in (0..n).rev() {
            let skip_old = score[(i + 1) * w + j];
            let skip_new = score[i * w + j + 1];
            let s = similarity(&olds[i], &news[j]);
            let pair = if s >= PAIRING_THRESHOLD { s + score[(i + 1) * w + j + 1] } else { f32::MIN };
            let best = skip_old.max(skip_new);
            if pair > best {
                score[i * w + j] = pair;
                take[i * w + j] = true;
            } else {
                score[i * w + j] = best;
            }
        }
    }
    let mut out = vec![None; m];
    let (mut i, mut j) = (0, 0);
    while i < m && j < n {
        if take[i * w + j] {
            out[i] = Some(h.new + j as u32);
            i += 1;
            j += 1;
        } else if score[(i + 1) * w + j] >= score[i * w + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    absorb_joins(&mut out, old, new, h);
    out.into_boxed_slice()
}

/// Lines joined into one (two old lines made one new line) cannot all be paired one to one;
/// an old line whose whole text lives on inside a new line of its gap (between the new lines
/// its paired neighbours went to) is paired there too: many to one, order kept. Only for
/// meaningful lines, which are not contained in others by chance.
fn absorb_joins(out: &mut [Option<u32>], old: &Text, new: &Text, h: Hunk) {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let mut squashed_new: Vec<Option<String>> = vec![None; h.new_len as usize];
    for i in 0..out.len() {
        if out[i].is_some() {
            continue;
        }
        let line = old.line(h.old as usize + i);
        if super::text::is_trivial(line) {
            continue;
        }
        let mine = squash(line);
        let lo = out[..i].iter().rev().find_map(|&p| p).unwrap_or(h.new);
        let hi = out[i + 1..].iter().find_map(|&p| p).unwrap_or(h.new + h.new_len - 1);
        for j in lo..=hi {
            let theirs = squashed_new[(j - h.new) as usize].get_or_insert_with(|| squash(new.line(j as usize)));
            if theirs.contains(&mine) {
                out[i] = Some(j);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fates(old: &str, new: &str) -> Vec<Fate> {
        let (old, new) = (Text::new(old), Text::new(new));
        let map = LineMap::new(&old, &new);
        (0..old.len() as u32).map(|i| map.fate(i, &old, &new)).collect()
    }

    #[test]
    fn unchanged_lines_are_kept_and_shifted() {
        use Fate::*;
        assert_eq!(fates("a\nb\nc\n", "new\na\nb\nc\n"), [Kept(1), Kept(2), Kept(3)]);
        assert_eq!(fates("a\nb\nc\n", "a\nc\n"), [Kept(0), Deleted { at: 1 }, Kept(1)]);
    }

    #[test]
    fn lines_edited_in_place_are_paired_not_deleted() {
        use Fate::*;
        let old = "fn f() {\n    let total = compute(a, b);\n    total\n}\n";
        let new = "fn f() {\n    let total = compute(a, b, c);\n    total + 1\n}\n";
        assert_eq!(fates(old, new), [Kept(0), Edited(1), Edited(2), Kept(3)]);
    }

    #[test]
    fn pairing_skips_inserted_lines_inside_a_hunk() {
        use Fate::*;
        let old = "start\nlet alpha = one(1);\nlet beta = two(2);\nend\n";
        let new = "start\nlet alpha = one(10);\n// a brand new comment here\nlet beta = two(20);\nend\n";
        assert_eq!(fates(old, new), [Kept(0), Edited(1), Edited(3), Kept(4)]);
    }

    #[test]
    fn a_line_rewritten_beyond_recognition_is_deleted() {
        use Fate::*;
        let f = fates("a\nthe quick brown fox\nz\n", "a\n0123456789\nz\n");
        assert_eq!(f, [Kept(0), Deleted { at: 1 }, Kept(2)]);
    }

    #[test]
    fn a_deadline_of_zero_still_gives_a_valid_map() {
        let old: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let new: String = (0..2000).map(|i| format!("line {}\n", if i % 7 == 0 { i * 3 } else { i })).collect();
        let (old, new) = (Text::new(old), Text::new(new));
        let map = LineMap::with_deadline(&old, &new, Duration::ZERO);
        for i in 0..old.len() as u32 {
            match map.fate(i, &old, &new) {
                Fate::Kept(j) => assert_eq!(old.line(i as usize), new.line(j as usize)),
                Fate::Edited(j) | Fate::Deleted { at: j } => {
                    assert!((j as usize) <= new.len())
                }
            }
        }
    }
}
