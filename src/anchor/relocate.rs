//! The decision: given an anchor and the texts around it, where is it now and how is it?
//!
//! 1. With the anchor's file at its commit, map the range through the line diff and keep the
//!    strongest run of kept or edited lines. All of them there with the same text: `intact`
//!    (unless a copy of the code appeared since: then `modified`). Enough meaningful lines kept
//!    or edited in place (an unchanged line counts twice an edited one, and lines that are
//!    commonplace in the file count for nothing): `modified` there.
//! 2. Otherwise the diff lost it: search the new file, then the other files the change added or
//!    changed (exact, then whitespace-insensitive, then fuzzy with context). A unique exact
//!    match is `intact` wherever it is; anything weaker, or a tie, is `modified`. Exact and
//!    whitespace-only matches anywhere, and fuzzy ones in its own file, are taken here.
//! 3. Code restyled line by line keeps its names: where the anchor's rare names sit together
//!    in its own file, in one place only, it is `modified` there.
//! 4. Weaker evidence last: a fuzzy match in another file, then the few lines the diff kept.
//! 5. Nothing: `deleted`, at the line where it used to be. Lines rewritten beyond recognition
//!    are deleted too: a diff cannot tell them from new code written where old code was
//!    deleted, and git blame agrees. Lines edited so that they still resemble what they were
//!    are paired, and stay `modified`.
//!
//! Without the commit's file (shallow clone, rewritten history), or when the anchored text is
//! not what the commit holds (lines anchored before they were committed), only the search runs.

use std::sync::Arc;

use super::linemap::{Fate, LineMap};
use super::search::{Candidate, Hay, Names, Needle, Tier, rare_enough, search, search_names};
use super::text::{Text, split_lines};
use super::{Anchor, CONTEXT_LINES, LineRange, Status, Unlocatable, Via};

/// Other files worth searching, with their paths; produced only when needed.
pub type Files = Arc<Vec<(String, Arc<Text>)>>;

/// The texts an anchor is relocated between.
#[derive(Clone, Copy, Default)]
pub struct Sources<'a> {
    /// The anchor's file at its commit; `None` when the commit is not available.
    pub old: Option<&'a Text>,
    /// The file at the target (its path after renames) and its text; `None` when it is gone.
    pub new: Option<(&'a str, &'a Text)>,
    /// The diff from `old` to `new`, when the caller keeps one per file pair.
    pub map: Option<&'a LineMap>,
    /// Other files worth searching when code left its file: those the change added or changed,
    /// or, with no commit to diff against, whatever the caller can afford. Called only when
    /// the anchor's own file does not settle the answer, so reading them can wait.
    pub others: Option<&'a dyn Fn() -> Files>,
}

/// Where an anchor is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    pub status: Status,
    pub path: String,
    pub lines: LineRange,
    pub via: Via,
}

/// Relocates one anchor. See the module documentation for the rules.
pub fn relocate(anchor: &Anchor, src: &Sources<'_>) -> Result<Relocation, Unlocatable> {
    let range = anchor.lines;
    if range.start == 0 || range.end < range.start {
        return Err(Unlocatable::BadRange(range));
    }
    let given: Option<Vec<&str>> = anchor.text.as_deref().map(split_lines);
    let (s, e) = (range.start - 1, range.end - 1);
    let Some(old) = src.old else {
        let lines = given.ok_or(Unlocatable::NoText)?;
        let before = anchor.before.iter().map(String::as_str);
        let after = anchor.after.iter().map(String::as_str);
        let hint = src.new.map(|(_, t)| s.min(t.len().saturating_sub(1) as u32));
        let home = src.new.map(|(_, t)| t);
        return by_text(anchor, src, &lines, &Needle::judged(&lines, before, after, home), hint);
    };
    if old.is_binary() {
        return Err(Unlocatable::Binary { path: anchor.path.clone() });
    }
    let past_end = e as usize >= old.len();
    if past_end && given.is_none() {
        return Err(Unlocatable::PastEnd { path: anchor.path.clone(), lines: range, len: old.len() });
    }
    if let Some((path, new)) = src.new
        && new.is_binary()
    {
        return Err(Unlocatable::Binary { path: path.to_owned() });
    }
    let before: Vec<&str> =
        old.lines(s.saturating_sub(CONTEXT_LINES as u32) as usize..(s as usize).min(old.len())).collect();
    let after: Vec<&str> = if past_end {
        Vec::new()
    } else {
        old.lines(e as usize + 1..(e as usize + 1 + CONTEXT_LINES).min(old.len())).collect()
    };
    let committed: Vec<&str> = if past_end { Vec::new() } else { old.lines(s as usize..e as usize + 1).collect() };
    let owned_map;
    let map = match (src.map, src.new) {
        (Some(map), _) => Some(map),
        (None, Some((_, new))) => {
            owned_map = LineMap::new(old, new);
            Some(&owned_map)
        }
        (None, None) => None,
    };
    match given {
        Some(lines) if past_end || lines != committed => {
            // Anchored on text the commit does not hold at those lines: search for the text,
            // near where the commit's lines went.
            let hint = map.map(|m| m.position(s.min(old.len() as u32)));
            by_text(anchor, src, &lines, &Needle::judged(&lines, before, after, Some(old)), hint)
        }
        _ => Ok(by_diff(
            anchor,
            src,
            old,
            map,
            &committed,
            (s, e),
            &Needle::judged(&committed, before, after, Some(old)),
        )),
    }
}

fn by_diff(
    anchor: &Anchor,
    src: &Sources<'_>,
    old: &Text,
    map: Option<&LineMap>,
    lines: &[&str],
    (s, e): (u32, u32),
    needle: &Needle,
) -> Relocation {
    let (Some(map), Some((new_path, new))) = (map, src.new) else {
        // The file is gone: it may live on in another file, or it was deleted with its file.
        return match find(needle, src, None, &anchor.path, Via::Search).map(|f| f.0) {
            Some(found) => found,
            None => {
                Relocation { status: Status::Deleted, path: anchor.path.clone(), lines: anchor.lines, via: Via::Diff }
            }
        };
    };
    let meaningful = |i: u32| needle.votes((i - s) as usize);
    // Where each anchored line went, when the diff kept it or paired it with an edited line.
    let mut kept: Vec<(u32, u32)> = Vec::new();
    let mut unchanged = vec![false; (e - s + 1) as usize];
    for i in s..=e {
        match map.fate(i, old, new) {
            Fate::Kept(j) => {
                kept.push((i, j));
                unchanged[(i - s) as usize] = true;
            }
            Fate::Edited(j) => kept.push((i, j)),
            Fate::Deleted { .. } => {}
        }
    }
    // When the block now exists twice, the diff may take some lines from one copy and the rest
    // from the other: keep the strongest run of lines that stay close together.
    let run = strongest_run(&kept, e - s + 1, &meaningful);
    // Evidence that it stayed, in half lines: an unchanged line counts 2, an edited line 1 (a
    // look-alike line can be paired where the real one left).
    let strength: u32 = run
        .iter()
        .filter(|&&(i, _)| meaningful(i))
        .map(|&(i, _)| if unchanged[(i - s) as usize] { 2 } else { 1 })
        .sum();
    let (mut lo, mut hi) = (run.first().map_or(u32::MAX, |r| r.1), run.last().map_or(0, |r| r.1));
    if let (Some(&(first, _)), Some(&(last, _))) = (run.first(), run.last()) {
        (lo, hi) = snap_edges(old, new, (s, e), (first, last), (lo, hi));
    }
    let here =
        |status| Relocation { status, path: new_path.to_owned(), lines: LineRange::from_zero(lo, hi), via: Via::Diff };
    if lo <= hi && hi - lo == e - s && new.hashes()[lo as usize..=hi as usize] == old.hashes()[s as usize..=e as usize]
    {
        if !map.is_identity() && copied_since(needle, old, new, (s, e), (lo, hi)) {
            // A copy of this code appeared: the diff kept one copy, but nothing says it is the
            // one the discussion was about. Not a silent intact.
            return here(Status::Modified);
        }
        return here(Status::Intact);
    }
    let voters = needle.voters() as u32;
    if strength > 0 && strength >= voters {
        return here(Status::Modified);
    }
    // The diff lost most of it. Look for it before settling for what little stayed: an exact
    // or whitespace-only match anywhere, or a fuzzy one in its own file, is good evidence;
    let near = map.position(s);
    let found = find(needle, src, Some((new_path, new, near)), &anchor.path, Via::Search);
    let beats = |c: &Candidate| 2 * c.matched > strength;
    if let Some((r, c)) = &found
        && (c.tier > Tier::Fuzzy || (beats(c) && r.path == new_path))
    {
        return r.clone();
    }
    // so are its names, together in its own file (code restyled line by line);
    let rarity = |t: u64| old.lines_with_token(t);
    if let Some(named) = by_names(lines, &rarity, Some((new_path, new)), Some(near)) {
        return named;
    }
    // weaker: a fuzzy match in another file, or the few lines the diff kept.
    if let Some((r, c)) = found
        && beats(&c)
    {
        return r;
    }
    if strength > 0 {
        return here(Status::Modified);
    }
    Relocation { status: Status::Deleted, path: new_path.to_owned(), lines: deleted_at(near, new), via: Via::Diff }
}

/// Relocation from the anchored text alone, near `hint` in the new file when known.
fn by_text(
    anchor: &Anchor,
    src: &Sources<'_>,
    lines: &[&str],
    needle: &Needle,
    hint: Option<u32>,
) -> Result<Relocation, Unlocatable> {
    let new = src.new.map(|(p, t)| (p, t, hint.unwrap_or(0)));
    if let Some((found, _)) = find(needle, src, new, &anchor.path, Via::Text) {
        return Ok(found);
    }
    // With no original file, rarity is judged where the anchor is looked for.
    let rarity = |t: u64| src.new.map_or(1, |(_, text)| text.lines_with_token(t));
    if let Some(mut found) = by_names(lines, &rarity, src.new, hint) {
        found.via = Via::Text;
        return Ok(found);
    }
    let (path, lines) = match src.new {
        Some((path, text)) => (path.to_owned(), deleted_at(hint.unwrap_or(anchor.lines.start - 1), text)),
        None => (anchor.path.clone(), anchor.lines),
    };
    Ok(Relocation { status: Status::Deleted, path, lines, via: Via::Text })
}

/// The run of (old line, new line) pairs with the most meaningful lines, where a run breaks
/// wherever the new lines jump further apart than the anchor is long.
fn strongest_run<'k>(kept: &'k [(u32, u32)], len: u32, meaningful: &dyn Fn(u32) -> bool) -> &'k [(u32, u32)] {
    let gap = len.max(3);
    let weight = |run: &[(u32, u32)]| (run.iter().filter(|&&(i, _)| meaningful(i)).count(), run.len());
    let (mut best, mut start) = (&kept[..0], 0);
    for k in 1..=kept.len() {
        if k == kept.len() || kept[k].1 - kept[k - 1].1 > gap {
            let run = &kept[start..k];
            if weight(run) > weight(best) {
                best = run;
            }
            start = k;
        }
    }
    best
}

/// Grows the span of a run (old lines `first..=last` at new `lo..=hi`) over the anchored
/// lines on either side when the neighbouring new lines read the same: Myers happily matches a
/// closing `}` with another one further on, and a copy can lend the diff half its lines.
fn snap_edges(
    old: &Text,
    new: &Text,
    (s, e): (u32, u32),
    (first, last): (u32, u32),
    (mut lo, mut hi): (u32, u32),
) -> (u32, u32) {
    let (osq, nsq) = (old.squashed_hashes(), new.squashed_hashes());
    let mut i = first;
    while i > s && lo > 0 && osq[i as usize - 1] == nsq[lo as usize - 1] {
        i -= 1;
        lo -= 1;
    }
    let mut i = last;
    while i < e && (hi as usize + 1) < new.len() && osq[i as usize + 1] == nsq[hi as usize + 1] {
        i += 1;
        hi += 1;
    }
    (lo, hi)
}

/// True when the new text holds more copies of the anchored code (apart from the kept one)
/// than the old text did (apart from the anchor itself). Only for code with enough substance
/// to be copied deliberately: git's own copy detection wants 20 alphanumeric characters.
fn copied_since(needle: &Needle, old: &Text, new: &Text, (s, e): (u32, u32), (lo, hi): (u32, u32)) -> bool {
    let substance: usize = (s..=e).map(|i| old.line(i as usize).chars().filter(|c| c.is_alphanumeric()).count()).sum();
    if substance < 20 || needle.voters() < 2 {
        return false;
    }
    let others = |text: &Text, (a, b): (u32, u32)| {
        search(needle, &[Hay { text, near: None }]).iter().filter(|c| c.end < a || c.start > b).count()
    };
    let in_new = others(new, (lo, hi));
    in_new > 0 && in_new > others(old, (s, e))
}

/// The last resort for code rewritten line by line (restyled, regenerated): the one place in
/// its own file where its rare names still sit together. Not in other files: restyled and moved
/// at once leaves too little to go on. Never `intact`: no line is what it was.
fn by_names(
    lines: &[&str],
    rarity: &dyn Fn(u64) -> u32,
    own: Option<(&str, &Text)>,
    near: Option<u32>,
) -> Option<Relocation> {
    let (path, text) = own?;
    let names = Names::new(lines, rarity);
    search_names(&names, text, near).map(|(a, b)| Relocation {
        status: Status::Modified,
        path: path.to_owned(),
        lines: LineRange::from_zero(a, b),
        via: Via::Search,
    })
}

/// Searches the anchor's own file first (`new`, with the line it would be at); only when that
/// does not give a unique exact match are the other files read and searched along with it.
/// The best candidate is `intact` only when it is exact and nothing ties with it. `home` is
/// the anchor's path at its commit.
fn find(
    needle: &Needle,
    src: &Sources<'_>,
    new: Option<(&str, &Text, u32)>,
    home: &str,
    via: Via,
) -> Option<(Relocation, Candidate)> {
    let answer = |found: &[Candidate], path: &dyn Fn(usize) -> String| -> Option<(Relocation, Candidate)> {
        let top = *found.first()?;
        let tie = found.get(1).is_some_and(|next| top.ties_with(next));
        let status = if top.tier == Tier::Exact && !tie { Status::Intact } else { Status::Modified };
        Some((Relocation { status, path: path(top.hay), lines: LineRange::from_zero(top.start, top.end), via }, top))
    };
    let own_path = new.map(|(p, _, _)| p.to_owned()).unwrap_or_default();
    let own: Vec<Hay<'_>> = new.map(|(_, text, near)| Hay { text, near: Some(near) }).into_iter().collect();
    let found_here = search(needle, &own);
    let settled = answer(&found_here, &|_| own_path.clone()).filter(|(r, _)| r.status == Status::Intact);
    if settled.is_some() {
        return settled;
    }
    let all = src.others.map(|f| f()).unwrap_or_default();
    // The anchor's own file may be among the changed files; it was searched already.
    let others: Vec<&(String, Arc<Text>)> = all.iter().filter(|(p, _)| *p != own_path).collect();
    if others.is_empty() {
        return answer(&found_here, &|_| own_path.clone());
    }
    // Slot 0 is the anchor's own file, present or not, so indexes into `others` stay stable.
    let empty = Text::new("");
    let mut hays = vec![own.into_iter().next().unwrap_or(Hay { text: &empty, near: None })];
    hays.extend(others.iter().map(|(_, text)| Hay { text, near: None }));
    let mut found = search(needle, &hays);
    // Another file holds the anchored code only on evidence that code like it cannot supply:
    // rare lines, or the whole block, exactly, in one place only. A file of the same name
    // elsewhere (a crate or package moved) is most likely the anchor's own file, renamed.
    let exact = found.iter().filter(|c| c.tier == Tier::Exact).count();
    let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    let same_name = |k: usize| k > 0 && name(&others[k - 1].0) == name(home);
    found.retain(|c| {
        c.hay == 0
            || same_name(c.hay)
            || rare_enough(needle, &hays, c)
            || c.tier == Tier::Exact && exact == 1 && needle.substantial()
    });
    answer(&found, &|k| if k == 0 { own_path.clone() } else { others[k - 1].0.clone() })
}

/// "Where it used to be": the line now at the gap it left, within the new file.
fn deleted_at(at: u32, new: &Text) -> LineRange {
    let line = (at as usize).min(new.len().saturating_sub(1)) as u32;
    LineRange::from_zero(line, line)
}

#[cfg(test)]
mod tests;
