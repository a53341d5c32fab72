//! Following anchored lines through a file's history one version at a time, as `git blame`
//! follows lines (edited lines are followed too, where blame would let them go).
//!
//! A [`Trail`] knows where each anchored line is now: in which file (a slot: the anchor's own
//! file, or a file code moved to) and at which line. The caller walks the versions and calls
//! [`Trail::step`] with each version's line diff; lines the diff kept or paired move on, lines it
//! deleted are lost. Lines lost in a step can be found again only where that same step wrote
//! new text, in the same file (moved within it) or in another file the step changed (moved
//! between files): [`Trail::rescue`]. That is the evidence a two-point diff over a long range
//! lacks: code that merely looks alike, in a sibling function or another module, was not
//! written in the commit that removed the anchored lines, so it is never taken.
//!
//! What counts as a move is what git's own `blame -M -C` counts: lines equal up to whitespace,
//! together at least 20 letters and digits, with at least one line that is not commonplace. A
//! move that two places could explain equally is not taken.
//!
//! At the end ([`Trail::finish`]) the file holding most of the meaningful surviving lines is
//! the answer: `intact` when every line is there, in order, together and unchanged; otherwise
//! `modified`, spanning the surviving lines (lines inserted between them included, so a range
//! keeps its extent); `deleted` when no meaningful line survives (a `}` that happens to remain
//! says nothing about where the code went).

use rustc_hash::FxHashMap;

use super::linemap::{Fate, LineMap};
use super::search::COMMONPLACE;
use super::similarity::{Shingles, similarity};
use super::text::{Text, is_trivial};
use super::{LineRange, Status};

/// Letters and digits a moved block must carry, as git blame's `-M`/`-C` default.
const MOVE_SCORE: usize = 20;

/// Where one anchored line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    slot: usize,
    line: u32,
    /// Lines that moved together (by the same rescue) share a group; 0 for lines that never
    /// left their first file.
    group: u32,
}

/// A file that holds (or held) anchored lines: the anchor's own, or one code moved to.
#[derive(Clone, Debug)]
pub struct Slot {
    /// Its path at the current step.
    pub path: String,
    /// The step from which lines are in it (0 for the anchor's own file).
    pub since: usize,
    /// Where the anchored code is, or was last seen, in this file: kept in step with each
    /// version, for a `deleted` answer. `None` once the file itself is gone.
    ghost: Option<u32>,
}

/// Anchored lines on their way through history.
pub struct Trail {
    at: Vec<Option<Place>>,
    /// Which anchored lines are evidence (not trivial, not commonplace where they were written).
    meaningful: Vec<bool>,
    /// The anchored lines, to tell `intact` at the end and whether an edited line still
    /// resembles what it was.
    anchored: Vec<String>,
    slots: Vec<Slot>,
    groups: u32,
}

/// A line lost in a step: which anchored line, and where it was in the step's old version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub index: usize,
    pub line: u32,
}

/// A text a step wrote, where lost lines may have moved: which lines are new in it.
pub struct Landing<'a> {
    pub path: &'a str,
    pub text: &'a Text,
    /// For each line of `text`, true when the step wrote it (not kept from before).
    pub fresh: &'a [bool],
}

/// The end of a trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    pub status: Status,
    pub path: String,
    pub lines: LineRange,
    /// The lines were found again where a step wrote them anew (moved within their file or to
    /// another), not carried by the diffs alone.
    pub moved: bool,
}

impl Trail {
    /// Starts a trail for lines `range` (1-based) of `old`, the anchor's file `path` at its
    /// commit.
    pub fn new(path: &str, old: &Text, range: LineRange) -> Trail {
        let (s, e) = (range.start - 1, range.end - 1);
        let lines: Vec<&str> = old.lines(s as usize..e as usize + 1).collect();
        let meaningful = lines.iter().map(|l| !is_trivial(l) && old.occurrences(l) < COMMONPLACE as u32).collect();
        Trail {
            at: (s..=e).map(|line| Some(Place { slot: 0, line, group: 0 })).collect(),
            meaningful,
            anchored: lines.iter().map(|l| (*l).to_owned()).collect(),
            slots: vec![Slot { path: path.to_owned(), since: 0, ghost: Some(s) }],
            groups: 0,
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// True while slot `slot` holds a line, or the place its lines were last seen.
    pub fn follows(&self, slot: usize) -> bool {
        self.slots[slot].ghost.is_some() || self.at.iter().flatten().any(|p| p.slot == slot)
    }

    /// Where the lines in slot `slot` are (0-based), for tracing.
    pub fn lines_in(&self, slot: usize) -> Vec<u32> {
        self.at.iter().flatten().filter(|p| p.slot == slot).map(|p| p.line).collect()
    }

    /// The file of slot `slot` was renamed to `path`.
    pub fn renamed(&mut self, slot: usize, path: &str) {
        self.slots[slot].path = path.to_owned();
    }

    /// Crosses a version whose changes all lie between the slot's lines: `head` lines at the
    /// start and `tail` at the end of `old` are unchanged in `new` (see [`Text::common_edges`]).
    /// Returns false, changing nothing, when a line of the slot (or the place they were last
    /// seen) lies in the changed middle: then the version needs its diff.
    pub fn shift(&mut self, slot: usize, (head, tail): (u32, u32), old: &Text, new: &Text) -> bool {
        let from = old.len() as u32 - tail;
        let outside = |line: u32| line < head || line >= from;
        let ghost = self.slots[slot].ghost;
        if !ghost.is_none_or(outside) || !self.at.iter().flatten().filter(|p| p.slot == slot).all(|p| outside(p.line)) {
            return false;
        }
        let moved =
            |line: u32| if line >= from { (line as i64 + new.len() as i64 - old.len() as i64) as u32 } else { line };
        for p in self.at.iter_mut().flatten().filter(|p| p.slot == slot) {
            p.line = moved(p.line);
        }
        self.slots[slot].ghost = ghost.map(moved);
        true
    }

    /// True while slot `slot` holds an anchored line.
    pub fn holds(&self, slot: usize) -> bool {
        self.at.iter().flatten().any(|p| p.slot == slot)
    }

    /// True when `map` (from `old` to `new`, several versions apart) can stand for every version
    /// between for slot `slot`: it keeps each of the slot's lines unchanged, at least one of them
    /// meaningful (a lone `}` kept across many versions may be another one); or the slot holds
    /// no line any more, only the place they were last seen.
    pub fn kept_through(&self, slot: usize, old: &Text, new: &Text, map: &LineMap) -> bool {
        let mut lines = self.at.iter().enumerate().filter(|(_, p)| p.is_some_and(|p| p.slot == slot)).peekable();
        if lines.peek().is_none() {
            return self.slots[slot].ghost.is_some();
        }
        let mut evidence = false;
        for (i, p) in lines {
            evidence |= self.meaningful[i];
            if !matches!(map.fate(p.unwrap().line, old, new), Fate::Kept(_)) {
                return false;
            }
        }
        evidence
    }

    /// True when the step `map` (from `old` to `new`) would edit or lose a meaningful line of
    /// slot `slot`: only then is it worth reading what else the step wrote.
    pub fn disturbed(&self, slot: usize, old: &Text, new: &Text, map: &LineMap) -> bool {
        self.at.iter().enumerate().any(|(i, p)| {
            p.is_some_and(|p| {
                p.slot == slot && self.meaningful[i] && !matches!(map.fate(p.line, old, new), Fate::Kept(_))
            })
        })
    }

    /// One version step of slot `slot`'s file, from `old` to `new` through `map`, at step
    /// `step` of the route. `own` is the new version with the lines the step wrote in it, given
    /// when the step disturbs the slot's meaningful lines ([`Trail::disturbed`]). Returns the
    /// lines still lost: the caller may look for them in the other files the step wrote
    /// ([`Trail::rescue`]).
    ///
    /// A block of anchored lines that the step wrote again, exactly, among the lines it wrote,
    /// while the place it was at was edited or deleted, moved: the copy is the anchored code (as
    /// blame's `-M` would have it). Otherwise lines follow the diff, and lines it lost are looked
    /// for among what the step wrote in the same file.
    pub fn step(
        &mut self,
        slot: usize,
        old: &Text,
        new: &Text,
        map: &LineMap,
        own: Option<Landing<'_>>,
        step: usize,
    ) -> Vec<Lost> {
        let own: Vec<Landing<'_>> = own.into_iter().collect();
        let copied = if own.is_empty() { Vec::new() } else { self.copies(slot, old, &own) };
        let mut lost = Vec::new();
        for (i, place) in self.at.iter_mut().enumerate() {
            let Some(p) = place else { continue };
            if p.slot != slot {
                continue;
            }
            match map.fate(p.line, old, new) {
                Fate::Kept(j) | Fate::Edited(j) => p.line = j,
                Fate::Deleted { .. } => {
                    lost.push(Lost { index: i, line: p.line });
                    *place = None;
                }
            }
        }
        self.slide(slot, &mut lost, old, new);
        let ghost = &mut self.slots[slot].ghost;
        *ghost = ghost.map(|g| map.position(g).min(new.len().saturating_sub(1) as u32));
        for (_, moved) in copied {
            self.groups += 1;
            for (l, line) in moved {
                self.at[l.index] = Some(Place { slot, line, group: self.groups });
            }
            lost.retain(|x: &Lost| self.at[x.index].is_none());
        }
        if own.is_empty() { lost } else { self.rescue(&lost, old, &own, step, slot) }
    }

    /// Takes back lost lines that a diff only slid: a `}` or blank line of the anchor, lost
    /// while the same text stands right beside its anchored neighbour in `new` (deleting the
    /// function after this one, a diff may keep that one's `}` and drop ours).
    fn slide(&mut self, slot: usize, lost: &mut Vec<Lost>, old: &Text, new: &Text) {
        loop {
            let taken = lost.iter().position(|l| {
                if self.meaningful[l.index] {
                    // Only lines that say nothing by themselves slide.
                    return false;
                }
                let text = old.line(l.line as usize);
                let beside = |index: Option<usize>, offset: i64| {
                    let Some(Some(p)) = index.and_then(|i| self.at.get(i)) else { return None };
                    let j = p.line as i64 + offset;
                    let free = p.slot == slot
                        && j >= 0
                        && (j as usize) < new.len()
                        && new.line(j as usize) == text
                        && !self.at.iter().flatten().any(|q| q.slot == slot && q.line as i64 == j);
                    free.then_some((j as u32, p.group))
                };
                beside(l.index.checked_sub(1), 1).or_else(|| beside(Some(l.index + 1), -1)).is_some()
            });
            let Some(k) = taken else { return };
            let l = lost.remove(k);
            let text = old.line(l.line as usize);
            let (before, after) =
                (l.index.checked_sub(1).and_then(|i| self.at[i]), self.at.get(l.index + 1).copied().flatten());
            let place = match before {
                Some(p)
                    if p.slot == slot && (p.line as usize + 1) < new.len() && new.line(p.line as usize + 1) == text =>
                {
                    Place { line: p.line + 1, ..p }
                }
                _ => {
                    let p = after.unwrap();
                    Place { line: p.line - 1, ..p }
                }
            };
            self.at[l.index] = Some(place);
        }
    }

    /// The squashed hashes of the meaningful lines among `lost` (as they read in `old`): what
    /// to look for elsewhere, empty when nothing is worth looking for.
    pub fn evidence(&self, lost: &[Lost], old: &Text) -> Vec<u64> {
        let meaningful: Vec<&Lost> = lost.iter().filter(|l| self.meaningful[l.index]).collect();
        // Too little to make a move of, wherever it might be found.
        if meaningful.iter().map(|l| substance(old.line(l.line as usize))).sum::<usize>() < MOVE_SCORE {
            return Vec::new();
        }
        let squashed = old.squashed_hashes();
        meaningful.iter().map(|l| squashed[l.line as usize]).collect()
    }

    /// Runs of slot `slot`'s lines (at their places in `old`) that the step wrote again, whole
    /// and unchanged, among fresh lines of `landings`: which landing, and where each line went.
    #[allow(clippy::type_complexity)]
    fn copies(&self, slot: usize, old: &Text, landings: &[Landing<'_>]) -> Vec<(usize, Vec<(Lost, u32)>)> {
        let mut block: Vec<Lost> = (self.at.iter().enumerate())
            .filter_map(|(i, p)| p.filter(|p| p.slot == slot).map(|p| Lost { index: i, line: p.line }))
            .collect();
        block.sort_by_key(|l| l.index);
        let runs: Vec<Vec<Lost>> =
            block.chunk_by(|a, b| b.line == a.line + 1 && b.index == a.index + 1).map(<[Lost]>::to_vec).collect();
        runs.iter()
            .filter_map(|run| self.exact_copy(run, old, landings).filter(|(_, moved)| moved.len() == run.len()))
            .collect()
    }

    /// Slot `slot`'s file is gone: its lines are lost (the caller may look for them where the
    /// step wrote, [`Trail::rescue`]).
    pub fn gone(&mut self, slot: usize) -> Vec<Lost> {
        let mut lost = Vec::new();
        for (i, place) in self.at.iter_mut().enumerate() {
            if let Some(p) = place
                && p.slot == slot
            {
                lost.push(Lost { index: i, line: p.line });
                *place = None;
            }
        }
        self.slots[slot].ghost = None;
        lost
    }

    /// Looks for `lost` (lines of `old`, the version they were lost from) among the lines the
    /// same step wrote in `landings`. Lines found again join the slot of their new file (made at
    /// step `step` when new; `current` is the slot they were lost from). Returns the lines still
    /// lost.
    pub fn rescue(
        &mut self,
        lost: &[Lost],
        old: &Text,
        landings: &[Landing<'_>],
        step: usize,
        current: usize,
    ) -> Vec<Lost> {
        let mut left: Vec<Lost> = lost.to_vec();
        if !lost.iter().any(|l| self.meaningful[l.index]) {
            return left;
        }
        while let Some((k, moved)) = self.best_move(&left, old, landings) {
            self.groups += 1;
            let slot = self.slot_for(landings[k].path, step, current);
            for &(l, line) in &moved {
                self.at[l.index] = Some(Place { slot, line, group: self.groups });
            }
            left.retain(|l| !moved.iter().any(|(m, _)| m.index == l.index));
        }
        left
    }

    /// The slot for lines landing in `path` at step `step`: `current` when that is the file
    /// being stepped (a move within it), else one made for that file from that step on.
    fn slot_for(&mut self, path: &str, step: usize, current: usize) -> usize {
        if self.slots.get(current).is_some_and(|s| s.path == path) {
            return current;
        }
        if let Some(k) = self.slots.iter().position(|s| s.path == path && s.since == step) {
            return k;
        }
        self.slots.push(Slot { path: path.to_owned(), since: step, ghost: None });
        self.slots.len() - 1
    }

    /// Where the meaningful lines among `lines` (of `old`) were written, equal up to whitespace,
    /// among the fresh lines of `landings`: (landing, line written, index in `lines`).
    fn fresh_hits(&self, lines: &[Lost], old: &Text, landings: &[Landing<'_>]) -> Vec<(usize, u32, usize)> {
        let squashed = old.squashed_hashes();
        let mut hits = Vec::new();
        for (k, landing) in landings.iter().enumerate().filter(|(_, l)| !l.text.is_binary()) {
            let index = landing.text.index();
            for (r, l) in lines.iter().enumerate().filter(|(_, l)| self.meaningful[l.index]) {
                let Some(places) = index.get(&squashed[l.line as usize]) else { continue };
                // A line written in many places at once is no clue where this one went.
                let fresh: Vec<u32> = places.iter().copied().filter(|&j| landing.fresh[j as usize]).collect();
                if fresh.len() <= 4 {
                    hits.extend(fresh.into_iter().map(|j| (k, j, r)));
                }
            }
        }
        hits
    }

    /// Where the consecutive lines `run` were copied whole: the landing and diagonal where the
    /// most of it reads the same among fresh lines, if that carries enough to be a move and no
    /// other place explains as much.
    fn exact_copy(&self, run: &[Lost], old: &Text, landings: &[Landing<'_>]) -> Option<(usize, Vec<(Lost, u32)>)> {
        let squashed = old.squashed_hashes();
        // (landing, diagonal) -> weight of meaningful lines matching there.
        let mut votes: FxHashMap<(usize, i64), usize> = FxHashMap::default();
        for (k, j, r) in self.fresh_hits(run, old, landings) {
            *votes.entry((k, j as i64 - r as i64)).or_default() += substance(old.line(run[r].line as usize));
        }
        let mut ranked: Vec<((usize, i64), usize)> = votes.into_iter().collect();
        ranked.sort_by_key(|&((k, d), w)| (std::cmp::Reverse(w), k, d));
        let &((k, d), weight) = ranked.first()?;
        if weight < MOVE_SCORE || ranked.get(1).is_some_and(|&(_, w)| w == weight) {
            return None;
        }
        // Every line of the run that reads the same on that diagonal, trivial ones included.
        let landing = &landings[k];
        let lsq = landing.text.squashed_hashes();
        let moved: Vec<(Lost, u32)> = run
            .iter()
            .enumerate()
            .filter_map(|(r, &l)| {
                let j = d + r as i64;
                let ok = j >= 0
                    && (j as usize) < lsq.len()
                    && landing.fresh[j as usize]
                    && lsq[j as usize] == squashed[l.line as usize];
                ok.then_some((l, j as u32))
            })
            .collect();
        (!moved.is_empty()).then_some((k, moved))
    }

    /// Where lost lines went: the stretch of fresh lines in one landing, a little longer than
    /// the lines themselves, where the most of their substance reads the same (equal up to
    /// whitespace), in their order. Enough substance to be a move, and clearly more than any
    /// other stretch, or nothing. Trivial lines join where they sit between found ones.
    fn best_move(&self, lost: &[Lost], old: &Text, landings: &[Landing<'_>]) -> Option<(usize, Vec<(Lost, u32)>)> {
        let squashed = old.squashed_hashes();
        let span = lost.last()?.index - lost.first()?.index + 1;
        let width = (2 * span + 4) as u32;
        let mut hits = self.fresh_hits(lost, old, landings);
        hits.sort_unstable();
        let weigh = |window: &[(usize, u32, usize)]| -> usize {
            let mut seen: Vec<usize> = window.iter().map(|h| h.2).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.iter().map(|&r| substance(old.line(lost[r].line as usize))).sum()
        };
        // The heaviest window of each landing, then the heaviest overall.
        let mut windows: Vec<(usize, usize, usize)> = Vec::new(); // (weight, first hit, end hit)
        let mut a = 0;
        for b in 0..hits.len() {
            while hits[a].0 != hits[b].0 || hits[a].1 + width <= hits[b].1 {
                a += 1;
            }
            windows.push((weigh(&hits[a..=b]), a, b + 1));
        }
        windows.sort_by_key(|&(w, a, _)| (std::cmp::Reverse(w), a));
        let &(weight, a, b) = windows.first()?;
        let (k, lo) = (hits[a].0, hits[a].1);
        let rival =
            windows.iter().find(|&&(_, x, y)| hits[x].0 != k || hits[y - 1].1 + width <= lo || hits[x].1 >= lo + width);
        if weight < MOVE_SCORE || rival.is_some_and(|&(w, _, _)| 2 * w > weight) {
            return None;
        }
        // In order: each lost line takes its first place after the one before.
        let mut moved: Vec<(Lost, u32)> = Vec::new();
        let mut last: Option<u32> = None;
        for (r, &l) in lost.iter().enumerate() {
            let place = hits[a..b].iter().filter(|h| h.2 == r && last.is_none_or(|p| h.1 > p)).map(|h| h.1).min();
            if let Some(j) = place {
                moved.push((l, j));
                last = Some(j);
            }
        }
        // Trivial lines between two found ones, on their diagonal.
        let landing = &landings[k];
        let lsq = landing.text.squashed_hashes();
        let mut extra: Vec<(Lost, u32)> = Vec::new();
        for pair in moved.windows(2) {
            let ((x, jx), (y, jy)) = (pair[0], pair[1]);
            if jy - jx == (y.index - x.index) as u32 {
                for l in lost.iter().filter(|l| l.index > x.index && l.index < y.index) {
                    let j = jx + (l.index - x.index) as u32;
                    if landing.fresh[j as usize] && lsq[j as usize] == squashed[l.line as usize] {
                        extra.push((*l, j));
                    }
                }
            }
        }
        // Lines right before the first found one and right after the last, on the diagonal,
        // while they read the same (a closing `}`) or, edited with the move, still resemble
        // what they were: the edges of the moved code.
        if let (Some(&(first, jf)), Some(&(last, jl))) = (moved.first(), moved.last()) {
            let carried = |l: &Lost, j: i64| {
                let was = old.line(l.line as usize);
                let ok = j >= 0 && (j as usize) < lsq.len() && landing.fresh[j as usize];
                ok && (lsq[j as usize] == squashed[l.line as usize]
                    || !is_trivial(was) && resembles(was, landing.text, j as u32))
            };
            let before = lost.iter().rev().filter(|l| l.index < first.index);
            for (n, l) in before.enumerate() {
                let j = jf as i64 - (first.index - l.index) as i64;
                if l.index + n + 1 != first.index || !carried(l, j) {
                    break;
                }
                extra.push((*l, j as u32));
            }
            let after = lost.iter().filter(|l| l.index > last.index);
            for (n, l) in after.enumerate() {
                let j = jl as i64 + (l.index - last.index) as i64;
                if l.index != last.index + n + 1 || !carried(l, j) {
                    break;
                }
                extra.push((*l, j as u32));
            }
        }
        moved.extend(extra);
        Some((k, moved))
    }

    /// Where the anchor ends up. `at_end(slot)` is the slot's file at the target, `None` when
    /// it is gone.
    ///
    /// Evidence is a meaningful line that survives and still resembles what it was (a line
    /// edited step after step can end up as something else entirely). The file and group
    /// (lines that moved together) holding the most of it win; a group that moved carries at
    /// least a third of the anchor's meaningful lines, so one line that happened to move with
    /// other code does not take the discussion along. The range spans that group, and other
    /// surviving lines of the anchor right beside it.
    pub fn finish<'t>(&self, at_end: &dyn Fn(usize) -> Option<&'t Text>, origin: (&str, LineRange)) -> Ending {
        let any_meaningful = self.meaningful.iter().any(|&m| m);
        let total = self.meaningful.iter().filter(|&&m| m).count();
        let evidence: Vec<bool> = (self.at.iter().enumerate())
            .map(|(i, p)| match (p, any_meaningful) {
                (None, _) => false,
                (Some(_), false) => true,
                (Some(p), true) => {
                    self.meaningful[i] && at_end(p.slot).is_some_and(|t| resembles(&self.anchored[i], t, p.line))
                }
            })
            .collect();
        // (slot, group) -> lines of evidence, survivors.
        let mut weight: FxHashMap<(usize, u32), (usize, usize)> = FxHashMap::default();
        for (i, p) in self.at.iter().enumerate() {
            if let Some(p) = p {
                let w = weight.entry((p.slot, p.group)).or_default();
                w.0 += usize::from(evidence[i]);
                w.1 += 1;
            }
        }
        let enough = |group: u32, w: usize| w > 0 && (group == 0 || !any_meaningful || 3 * w >= total);
        let best = (weight.iter())
            .filter(|&(&(_, group), w)| enough(group, w.0))
            .max_by_key(|&(&(slot, group), &w)| (w, std::cmp::Reverse(slot), std::cmp::Reverse(group)));
        let Some((&(slot, group), _)) = best else {
            return self.deleted(at_end, origin);
        };
        let Some(text) = at_end(slot) else { return self.deleted(at_end, origin) };
        let k = self.at.len() as u32;
        let core: Vec<u32> = (self.at.iter().enumerate())
            .filter_map(|(i, p)| p.filter(|p| p.slot == slot && p.group == group && evidence[i]).map(|p| p.line))
            .collect();
        let (lo, hi) = (*core.iter().min().unwrap(), *core.iter().max().unwrap());
        let near = |line: u32| line + k >= lo && line <= hi + k;
        let members: Vec<(usize, u32)> = (self.at.iter().enumerate())
            .filter_map(|(i, p)| p.filter(|p| p.slot == slot && near(p.line)).map(|p| (i, p.line)))
            .collect();
        let start = members.iter().map(|m| m.1).min().unwrap();
        let end = members.iter().map(|m| m.1).max().unwrap();
        let whole = members.len() == self.at.len()
            && members.iter().enumerate().all(|(n, &(i, line))| i == n && line == start + n as u32)
            && members
                .iter()
                .all(|&(i, line)| (line as usize) < text.len() && text.line(line as usize) == self.anchored[i]);
        if !whole && let Some(at) = self.twin(text, start, end) {
            return Ending {
                status: Status::Intact,
                path: self.slots[slot].path.clone(),
                lines: LineRange::from_zero(at, at + k - 1),
                moved: true,
            };
        }
        Ending {
            status: if whole { Status::Intact } else { Status::Modified },
            path: self.slots[slot].path.clone(),
            lines: LineRange::from_zero(start, end),
            moved: group != 0,
        }
    }

    /// Where the anchored lines stand whole and unchanged, once, right beside the edited answer
    /// `start..=end` of `text`: code duplicated and then one copy edited. A diff pairs identical
    /// blocks arbitrarily; the copy that still reads as anchored is the one to show.
    fn twin(&self, text: &Text, start: u32, end: u32) -> Option<u32> {
        let n = self.anchored.len();
        if !self.meaningful.iter().any(|&m| m) || self.anchored.iter().map(|l| substance(l)).sum::<usize>() < MOVE_SCORE
        {
            return None;
        }
        let lo = (start as usize).saturating_sub(2 * n);
        let hi = (end as usize + 2 * n).min(text.len().saturating_sub(n));
        let mut found =
            (lo..=hi).filter(|&j| (0..n).all(|i| j + i < text.len() && text.line(j + i) == self.anchored[i]));
        match (found.next(), found.next()) {
            (Some(j), None) => Some(j as u32),
            _ => None,
        }
    }

    /// Nothing survives: where the anchor used to be, in its own file if that is still there.
    fn deleted<'t>(&self, at_end: &dyn Fn(usize) -> Option<&'t Text>, (path, lines): (&str, LineRange)) -> Ending {
        let own = &self.slots[0];
        match (own.ghost, at_end(0)) {
            (Some(g), Some(text)) if !text.is_empty() => {
                let line = g.min(text.len() as u32 - 1);
                Ending {
                    status: Status::Deleted,
                    path: own.path.clone(),
                    lines: LineRange::from_zero(line, line),
                    moved: false,
                }
            }
            _ => Ending { status: Status::Deleted, path: path.to_owned(), lines, moved: false },
        }
    }
}

/// Where lines `range` (1-based) of `old` are in `new` when that cannot be mistaken: the block,
/// with at least one meaningful line and enough substance to be told apart (as a move must),
/// occurs exactly once in `old` and exactly once in `new`, every line unchanged. Then following
/// it version by version could only find it there, so there is no need to.
pub fn unmistakable(old: &Text, range: LineRange, new: &Text) -> Option<LineRange> {
    let (s, e) = (range.start as usize - 1, range.end as usize - 1);
    let lines: Vec<&str> = old.lines(s..e + 1).collect();
    let meaningful = |l: &&str| !is_trivial(l) && old.occurrences(l) < COMMONPLACE as u32;
    if !lines.iter().any(meaningful) || lines.iter().map(|l| substance(l)).sum::<usize>() < MOVE_SCORE {
        return None;
    }
    // The rarest line in `new` says where the block can be.
    let (k, rarest) =
        lines.iter().enumerate().filter(|(_, l)| meaningful(l)).min_by_key(|(_, l)| new.occurrences(l))?;
    let block = &old.hashes()[s..=e];
    let found_in = |text: &Text, line: &str| -> Vec<usize> {
        let Some(places) = text.index().get(&super::text::squashed_hash(line)) else { return Vec::new() };
        places
            .iter()
            .filter_map(|&j| (j as usize).checked_sub(k))
            .filter(|&at| text.hashes().get(at..at + block.len()) == Some(block))
            .collect()
    };
    let (was, at) = match (found_in(old, rarest).as_slice(), found_in(new, rarest).as_slice()) {
        (&[was], &[at]) => (was, at),
        _ => return None,
    };
    // Between the same neighbours, or it may have moved within the file: that takes the walk.
    let n = block.len();
    let same = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => old.hashes()[a] == new.hashes()[b],
        (a, b) => a.is_none() && b.is_none(),
    };
    let above = |t: &Text, at: usize| (0..at).rev().find(|&j| !is_trivial(t.line(j)));
    let below = |t: &Text, end: usize| (end..t.len()).find(|&j| !is_trivial(t.line(j)));
    (same(above(old, was), above(new, at)) && same(below(old, was + n), below(new, at + n)))
        .then(|| LineRange::from_zero(at as u32, (at + n - 1) as u32))
}

/// True when line `line` of `text` still resembles `was`: equal, or alike in characters and in
/// the names it carries, names weighted by how rare they are in `text`.
fn resembles(was: &str, text: &Text, line: u32) -> bool {
    let Some(now) = (line as usize).checked_sub(0).filter(|&l| l < text.len()).map(|l| text.line(l)) else {
        return false;
    };
    if now == was {
        return true;
    }
    let weight = |t: u64| 1.0 / ((text.lines_with_token(t) + 1) as f32).sqrt();
    similarity(&Shingles::weighted(was, &weight), &Shingles::weighted(now, &weight)) >= RESEMBLANCE
}

/// How alike a followed line must still be to what was anchored, as when pairing edited lines.
const RESEMBLANCE: f32 = 0.5;

/// Letters and digits in a line: what a move is weighed by.
fn substance(line: &str) -> usize {
    line.chars().filter(|c| c.is_alphanumeric()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[&str]) -> Text {
        Text::new(lines.iter().map(|l| format!("{l}\n")).collect::<String>())
    }

    /// Steps the anchor's own file from `old` to `new`, with what the step wrote, and finishes.
    fn one_step(old: &Text, range: LineRange, new: &Text, elsewhere: &[(&str, &Text)]) -> Ending {
        let mut trail = Trail::new("a.rs", old, range);
        let map = LineMap::new(old, new);
        let fresh = map.fresh();
        let own = Landing { path: "a.rs", text: new, fresh: &fresh };
        let lost = trail.step(0, old, new, &map, Some(own), 1);
        let all_fresh: Vec<Vec<bool>> = elsewhere.iter().map(|(_, t)| vec![true; t.len()]).collect();
        let landings: Vec<Landing<'_>> =
            (elsewhere.iter().zip(&all_fresh)).map(|((path, text), fresh)| Landing { path, text, fresh }).collect();
        trail.rescue(&lost, old, &landings, 1, 0);
        let ends: Vec<Option<&Text>> = (trail.slots().iter())
            .map(|s| if s.path == "a.rs" { Some(new) } else { elsewhere.iter().find(|e| e.0 == s.path).map(|e| e.1) })
            .collect();
        trail.finish(&|slot| ends[slot], ("a.rs", range))
    }

    const SIBLINGS: [&str; 9] = [
        "fn before_app_request(&mut self, f: Hook) {",
        "    self.before_request_funcs.push(f);",
        "}",
        "",
        "fn after_app_request(&mut self, f: Hook) {",
        "    self.after_request_funcs.push(f);",
        "}",
        "",
        "fn teardown(&mut self) {}",
    ];

    #[test]
    fn deleted_code_is_deleted_though_a_sibling_looks_alike() {
        let old = text(&SIBLINGS);
        let new = text(&SIBLINGS[4..]);
        let end = one_step(&old, LineRange::new(1, 3), &new, &[]);
        assert_eq!(end.status, Status::Deleted);
        assert_eq!((end.path.as_str(), end.lines), ("a.rs", LineRange::new(1, 1)));
    }

    #[test]
    fn code_moved_in_the_same_step_is_found_where_it_was_written() {
        let old = text(&SIBLINGS);
        let new = text(&SIBLINGS[4..]);
        let other = text(&["use crate::Hook;", "", SIBLINGS[0], SIBLINGS[1], SIBLINGS[2]]);
        let end = one_step(&old, LineRange::new(1, 3), &new, &[("hooks.rs", &other)]);
        assert_eq!((end.status, end.path.as_str(), end.lines), (Status::Intact, "hooks.rs", LineRange::new(3, 5)));
        assert!(end.moved);
    }

    #[test]
    fn a_move_two_places_explain_equally_is_not_taken() {
        let old = text(&SIBLINGS);
        let new = text(&SIBLINGS[4..]);
        let copy = text(&[SIBLINGS[0], SIBLINGS[1], SIBLINGS[2]]);
        let end = one_step(&old, LineRange::new(1, 3), &new, &[("x.rs", &copy), ("y.rs", &copy)]);
        assert_eq!(end.status, Status::Deleted);
    }

    #[test]
    fn a_closing_brace_the_diff_slid_stays_with_its_function() {
        // Deleting the function after ours, a diff may keep its `}` and drop ours.
        let old = text(&["fn a() {", "    first_thing();", "}", "fn b() {", "    second_thing();", "}", "tail();"]);
        let new = text(&["// top", "fn a() {", "    first_thing();", "}", "tail();"]);
        let end = one_step(&old, LineRange::new(1, 3), &new, &[]);
        assert_eq!((end.status, end.lines), (Status::Intact, LineRange::new(2, 4)));
    }

    #[test]
    fn an_edited_range_spans_its_survivors_and_what_was_inserted_between() {
        let old = text(&["alpha_one();", "beta_two();", "gamma_three();", "delta_four();"]);
        let new = text(&[
            "alpha_one();",
            "inserted_x();",
            "inserted_y();",
            "beta_two();",
            "gamma_three(3);",
            "delta_four();",
        ]);
        let end = one_step(&old, LineRange::new(1, 4), &new, &[]);
        assert_eq!((end.status, end.lines), (Status::Modified, LineRange::new(1, 6)));
    }

    #[test]
    fn unmistakable_needs_one_place_at_both_ends_and_the_same_neighbours() {
        let old = text(&["fn a() {", "    compute_the_total(items);", "}", "fn b() {}"]);
        let shifted = text(&["", "", "fn a() {", "    compute_the_total(items);", "}", "", "fn b() {}"]);
        assert_eq!(unmistakable(&old, LineRange::new(1, 3), &shifted), Some(LineRange::new(3, 5)));
        let headed = text(&["// header", "fn a() {", "    compute_the_total(items);", "}", "fn b() {}"]);
        assert_eq!(unmistakable(&old, LineRange::new(1, 3), &headed), None, "a new neighbour: walk it");
        let twice =
            text(&["fn a() {", "    compute_the_total(items);", "}", "fn a() {", "    compute_the_total(items);", "}"]);
        assert_eq!(unmistakable(&old, LineRange::new(1, 3), &twice), None);
        let moved = text(&["fn b() {}", "fn a() {", "    compute_the_total(items);", "}"]);
        assert_eq!(unmistakable(&old, LineRange::new(1, 3), &moved), None, "moved within the file: walk it");
        let brace = text(&["}"]);
        assert_eq!(unmistakable(&old, LineRange::new(3, 3), &brace), None, "a lone brace says nothing");
    }
}
