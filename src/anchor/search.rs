//! Finding anchored text again when the diff lost it: moved within the file, moved to another
//! file, reformatted, or edited a little on the way.
//!
//! Every meaningful anchored line (see [`is_trivial`]) looks itself up in each haystack's
//! whitespace-insensitive line index and votes for the diagonal `new line - anchored line`.
//! The best diagonals become candidates, widened to tolerate lines inserted or removed inside
//! the block, and graded: `Exact` (every line equal), `Whitespace` (equal ignoring whitespace)
//! or `Fuzzy` (at least half the meaningful lines found in order). Context lines around the
//! anchor break ties, then distance from where the anchor would have been. Cost is linear in
//! the anchor's length times the occurrences of its lines, never in the haystack's size.

use std::cmp::Reverse;

use super::text::{Text, hash_str, is_trivial, squashed_hash};

/// A line occurring more often than this in one haystack says nothing about where code went.
const MAX_OCCURRENCES: usize = 256;

/// How many of the most-voted diagonals per haystack are examined.
const DIAGONALS_PER_HAY: usize = 4;

/// What we are looking for: the anchored lines and the context around them.
pub struct Needle {
    exact: Vec<u64>,
    squashed: Vec<u64>,
    /// Lines that vote: the meaningful ones, or all of them when none is meaningful. Sorted.
    voters: Vec<usize>,
    only_trivial: bool,
    before: Vec<u64>,
    after: Vec<u64>,
    /// Letters and digits of each line: the weight of its evidence.
    substance: Vec<usize>,
}

/// A line found this many times or fewer among all the texts searched is rare: evidence that a
/// place in another file holds the anchored code rather than code like it.
const RARE: usize = 2;

/// Letters and digits that rare lines must carry for a candidate in another file, as a move in
/// git blame's `-M`/`-C` must.
const RARE_SUBSTANCE: usize = 20;

/// A line found this many times in its own file (`where`, `Ok(())`, a generated
/// `V: Visit + ?Sized,`) says nothing about where code went: it must still match, but it
/// neither votes nor counts as a survivor.
pub const COMMONPLACE: usize = 8;

impl Needle {
    /// Lines without three letters (braces, blanks) do not vote.
    pub fn new<'a>(
        lines: &[&'a str],
        before: impl IntoIterator<Item = &'a str>,
        after: impl IntoIterator<Item = &'a str>,
    ) -> Needle {
        Needle::judged(lines, before, after, None)
    }

    /// As [`Needle::new`], and lines commonplace in `home` (the file they were written in) do
    /// not vote either.
    pub fn judged<'a>(
        lines: &[&'a str],
        before: impl IntoIterator<Item = &'a str>,
        after: impl IntoIterator<Item = &'a str>,
        home: Option<&Text>,
    ) -> Needle {
        let common = |l: &str| home.is_some_and(|t| t.occurrences(l) as usize >= COMMONPLACE);
        let mut voters: Vec<usize> = (0..lines.len()).filter(|&i| !is_trivial(lines[i]) && !common(lines[i])).collect();
        let only_trivial = voters.is_empty();
        if only_trivial {
            voters = (0..lines.len()).collect();
        }
        Needle {
            exact: lines.iter().map(|l| hash_str(l)).collect(),
            squashed: lines.iter().map(|l| squashed_hash(l)).collect(),
            voters,
            only_trivial,
            before: before.into_iter().map(squashed_hash).collect(),
            after: after.into_iter().map(squashed_hash).collect(),
            substance: lines.iter().map(|l| l.chars().filter(|c| c.is_alphanumeric()).count()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// True when anchored line `i` votes (counts as evidence).
    pub fn votes(&self, i: usize) -> bool {
        self.voters.binary_search(&i).is_ok()
    }

    /// True when the anchored lines carry enough letters and digits to be told apart from
    /// other code, as a move must in git blame.
    pub fn substantial(&self) -> bool {
        self.substance.iter().sum::<usize>() >= RARE_SUBSTANCE
    }

    /// Number of meaningful lines, the denominator of a fuzzy score.
    pub fn voters(&self) -> usize {
        self.voters.len()
    }
}

/// A text to search, and the line the anchor would be at if it had not moved (same file only).
pub struct Hay<'a> {
    pub text: &'a Text,
    pub near: Option<u32>,
}

/// How well a candidate matches, best last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Fuzzy,
    Whitespace,
    Exact,
}

/// A place the anchored text may have gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the haystacks searched.
    pub hay: usize,
    /// 0-based inclusive line range in that haystack.
    pub start: u32,
    pub end: u32,
    pub tier: Tier,
    /// Meaningful anchored lines found in order.
    pub matched: u32,
    /// Context lines that match around the candidate.
    pub context: u32,
    /// Lines away from where the anchor would have been, when known.
    pub distance: Option<u32>,
}

impl Candidate {
    fn rank(&self) -> (Reverse<Tier>, Reverse<u32>, Reverse<u32>, bool, Option<u32>) {
        (Reverse(self.tier), Reverse(self.matched), Reverse(self.context), self.distance.is_none(), self.distance)
    }

    /// Two candidates nothing tells apart: the answer must not claim certainty.
    pub fn ties_with(&self, other: &Candidate) -> bool {
        self.tier == other.tier
            && self.matched == other.matched
            && self.context == other.context
            && self.distance == other.distance
    }
}

/// All acceptable candidates, best first.
pub fn search(needle: &Needle, hays: &[Hay<'_>]) -> Vec<Candidate> {
    if needle.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Candidate> = Vec::new();
    for (h, hay) in hays.iter().enumerate() {
        if hay.text.is_empty() || hay.text.is_binary() {
            continue;
        }
        // (diagonal, anchored line, hay line) for every vote.
        let mut votes: Vec<(i64, u32, u32)> = Vec::new();
        let index = hay.text.index();
        for &i in &needle.voters {
            let Some(places) = index.get(&needle.squashed[i]) else { continue };
            if places.len() > MAX_OCCURRENCES && !needle.only_trivial {
                continue;
            }
            votes.extend(places.iter().take(MAX_OCCURRENCES).map(|&j| (j as i64 - i as i64, i as u32, j)));
        }
        if votes.is_empty() {
            continue;
        }
        votes.sort_unstable();
        for diagonal in top_diagonals(&votes) {
            if let Some(c) = candidate_at(needle, hay, h, diagonal, &votes)
                && !out.iter().any(|o| o.hay == c.hay && o.start == c.start && o.end == c.end)
            {
                out.push(c);
            }
        }
    }
    out.retain(|c| acceptable(needle, c));
    out.sort_by_key(|c| c.rank());
    out
}

/// True when candidate `c` holds enough of the anchored lines that are rare among all of
/// `hays` (found at most [`RARE`] times in them together) to say it is the anchored code and
/// not code like it: an `if err != nil { return err }` or a `Run: func(cmd ...)` is everywhere.
pub fn rare_enough(needle: &Needle, hays: &[Hay<'_>], c: &Candidate) -> bool {
    let text = hays[c.hay].text;
    let index = text.index();
    let weight: usize = (needle.voters.iter())
        .filter(|&&i| !needle.only_trivial && needle.substance[i] > 0)
        .filter(|&&i| {
            let h = needle.squashed[i];
            let inside = index.get(&h).is_some_and(|at| at.iter().any(|&j| j >= c.start && j <= c.end));
            inside && hays.iter().map(|hay| hay.text.index().get(&h).map_or(0, Vec::len)).sum::<usize>() <= RARE
        })
        .map(|&i| needle.substance[i])
        .sum();
    weight >= RARE_SUBSTANCE
}

/// The diagonals with the most distinct voting lines, most first.
fn top_diagonals(votes: &[(i64, u32, u32)]) -> Vec<i64> {
    let mut counts: Vec<(u32, i64)> = Vec::new();
    let mut k = 0;
    while k < votes.len() {
        let d = votes[k].0;
        let mut n = 0;
        let mut last_i = u32::MAX;
        while k < votes.len() && votes[k].0 == d {
            if votes[k].1 != last_i {
                n += 1;
                last_i = votes[k].1;
            }
            k += 1;
        }
        counts.push((n, d));
    }
    counts.sort_unstable_by_key(|&(n, d)| (Reverse(n), d));
    counts.into_iter().take(DIAGONALS_PER_HAY).map(|(_, d)| d).collect()
}

/// Builds the candidate around `diagonal`: the votes near it, kept in order, projected to the
/// block's full extent, then graded.
fn candidate_at(
    needle: &Needle,
    hay: &Hay<'_>,
    h: usize,
    diagonal: i64,
    votes: &[(i64, u32, u32)],
) -> Option<Candidate> {
    let k = needle.len() as i64;
    let slack = (k / 2).max(2);
    // For each anchored line, the vote closest to the diagonal.
    let lo = votes.partition_point(|v| v.0 < diagonal - slack);
    let hi = votes.partition_point(|v| v.0 <= diagonal + slack);
    let mut best: Vec<Option<(i64, u32)>> = vec![None; needle.len()];
    for &(d, i, j) in &votes[lo..hi] {
        let dist = (d - diagonal).abs();
        let slot = &mut best[i as usize];
        if slot.is_none_or(|(bd, _)| dist < bd) {
            *slot = Some((dist, j));
        }
    }
    // Keep them in order: each matched line must come after the previous one.
    let mut matches: Vec<(u32, u32)> = Vec::new();
    for (i, slot) in best.iter().enumerate() {
        if let Some((_, j)) = *slot
            && matches.last().is_none_or(|&(_, pj)| j > pj)
        {
            matches.push((i as u32, j));
        }
    }
    // A block scattered by moves can match in two places: keep the run with the most lines,
    // breaking wherever found lines jump further apart than the block is long.
    let mut runs = matches.chunk_by(|a, b| b.1 - a.1 <= k as u32);
    let first_run = runs.next()?;
    let matches = runs.fold(first_run, |best, run| if run.len() > best.len() { run } else { best });
    let (&(i0, j0), &(i1, j1)) = (matches.first()?, matches.last()?);
    let last = hay.text.len() as i64 - 1;
    let start = (j0 as i64 - i0 as i64).clamp(0, last) as u32;
    let end = (j1 as i64 + (k - 1 - i1 as i64)).clamp(start as i64, last) as u32;
    let matched = matches.len() as u32;
    let tier = grade(needle, hay.text, start, end);
    Some(Candidate {
        hay: h,
        start,
        end,
        tier,
        matched: if tier == Tier::Fuzzy { matched } else { needle.voters.len() as u32 },
        context: context_matches(needle, hay.text, start, end),
        distance: hay.near.map(|n| n.abs_diff(start)),
    })
}

fn grade(needle: &Needle, text: &Text, start: u32, end: u32) -> Tier {
    if (end - start + 1) as usize != needle.len() {
        return Tier::Fuzzy;
    }
    let range = start as usize..end as usize + 1;
    if text.hashes()[range.clone()] == needle.exact[..] {
        Tier::Exact
    } else if text.squashed_hashes()[range] == needle.squashed[..] {
        Tier::Whitespace
    } else {
        Tier::Fuzzy
    }
}

fn context_matches(needle: &Needle, text: &Text, start: u32, end: u32) -> u32 {
    let sq = text.squashed_hashes();
    let nb = needle.before.len();
    let before = needle
        .before
        .iter()
        .enumerate()
        .filter(|&(b, h)| {
            let at = start as i64 - nb as i64 + b as i64;
            at >= 0 && sq.get(at as usize) == Some(h)
        })
        .count();
    let after = needle.after.iter().enumerate().filter(|&(a, h)| sq.get(end as usize + 1 + a) == Some(h)).count();
    (before + after) as u32
}

fn acceptable(needle: &Needle, c: &Candidate) -> bool {
    if needle.only_trivial {
        // A blank line or a lone brace is everywhere: only its context can place it.
        return c.tier >= Tier::Whitespace && c.context > 0;
    }
    let voters = needle.voters.len() as u32;
    match c.tier {
        Tier::Exact | Tier::Whitespace => true,
        // Half the meaningful lines, and more than one unless the context agrees.
        Tier::Fuzzy => c.matched * 2 >= voters && (c.matched >= voters.min(2) || c.context > 0),
    }
}

// ---------- the last resort: where the anchor's names are ----------

/// A token occurring on more lines than this in a haystack does not vote for a place.
const MAX_TOKEN_LINES: usize = 32;

/// Code rewritten line by line (restyled, regenerated) can keep none of its lines, yet keep its
/// names: `fold_label`, `Label`, `colon_token` still sit together in one place. What we look
/// for here is that place.
pub struct Names {
    /// Distinct identifiers of at least three characters, each weighted by its rarity where
    /// the anchor was written (1 / lines containing it).
    tokens: Vec<(u64, f32)>,
    /// For each token, which anchored lines hold it (bit i for line i; lines past 64 share
    /// the last bit).
    held_by: Vec<u64>,
    total: f32,
    len: u32,
}

impl Names {
    /// `rarity(token)` is how many lines of the anchor's original text contain the token (at
    /// least 1).
    pub fn new(lines: &[&str], rarity: &dyn Fn(u64) -> u32) -> Names {
        // Identifiers only: numbers are literals, and literals coincide.
        let is_name = |w: &&str| w.len() >= 3 && !w.starts_with(|c: char| c.is_ascii_digit());
        let mut tokens: Vec<u64> =
            lines.iter().flat_map(|l| super::similarity::words(l)).filter(is_name).map(hash_str).collect();
        tokens.sort_unstable();
        tokens.dedup();
        let held_by = tokens
            .iter()
            .map(|&t| {
                let holds = |l: &str| super::similarity::tokens(l).any(|x| x == t);
                lines.iter().enumerate().filter(|(_, l)| holds(l)).fold(0u64, |m, (i, _)| m | 1 << i.min(63))
            })
            .collect();
        let tokens: Vec<(u64, f32)> = tokens.into_iter().map(|t| (t, 1.0 / rarity(t).max(1) as f32)).collect();
        let total = tokens.iter().map(|&(_, w)| w).sum();
        Names { tokens, held_by, total, len: lines.len() as u32 }
    }
}

/// The place in `hay` where most of the anchor's weight of names sits within a few lines, if
/// it holds at least half of it, in at least two names (on more than one line, or as they stood
/// together in one anchored line), and clearly more than any other place; or, when two places are close in weight, the one clearly nearer
/// `near` (where the anchor would be if it had not changed). Returns the 0-based lines.
pub fn search_names(names: &Names, hay: &Text, near: Option<u32>) -> Option<(u32, u32)> {
    if hay.is_binary() || names.tokens.len() < 2 {
        return None;
    }
    // Words found everywhere (`pub`, `self`) weigh next to nothing and do not vote.
    let heaviest = names.tokens.iter().map(|&(_, w)| w).fold(0.0, f32::max);
    // (line, index of the token in `names`) for every rare enough occurrence.
    let mut hits: Vec<(u32, usize)> = Vec::new();
    for (k, &(t, w)) in names.tokens.iter().enumerate() {
        if w < heaviest / 16.0 {
            continue;
        }
        let lines = hay.token_lines(t);
        if !lines.is_empty() && lines.len() <= MAX_TOKEN_LINES {
            hits.extend(lines.iter().map(|&j| (j, k)));
        }
    }
    hits.sort_unstable();
    let width = (2 * names.len + 4).max(8);
    let best = densest(&hits, names, width, None)?;
    let runner_up = densest(&hits, names, width, Some((best.1, best.2)));
    let good = |(weight, lo, _): (f32, u32, u32)| {
        let inside: Vec<&(u32, usize)> = hits.iter().filter(|&&(j, _)| lo <= j && j < lo + width).collect();
        let distinct = inside.iter().map(|&&(_, k)| k).collect::<std::collections::BTreeSet<_>>();
        // Spread over lines, as code is; or, on one line, names that also stood together in one
        // anchored line (a signature), not names from all over packed into a list
        // (`use a::{B, C, D}`).
        let spread = inside.iter().any(|&&(j, _)| j != inside[0].0);
        let together = distinct.iter().fold(u64::MAX, |m, &k| m & names.held_by[k]) != 0;
        weight >= 0.5 * names.total && distinct.len() >= 2 && (spread || together)
    };
    if !good(best) {
        return None;
    }
    let chosen = match runner_up {
        Some(r) if r.0 * 1.5 > best.0 => {
            // Two places close in weight: only a clearly nearer one will do.
            let (near, rival) = (near?, good(r).then_some(r)?);
            let (db, dr) = (best.1.abs_diff(near), rival.1.abs_diff(near));
            if db * 2 <= dr {
                best
            } else if dr * 2 <= db {
                rival
            } else {
                return None;
            }
        }
        _ => best,
    };
    // Report the heaviest run of names in the window, split where they jump further apart than
    // the anchor is long: a block scattered by moves should not answer with both pieces.
    // Only distinctive names mark the extent: words common in the file fill every gap.
    let distinctive = |k: usize| names.tokens[k].1 >= heaviest / 4.0;
    let inside: Vec<(u32, usize)> =
        hits.iter().copied().filter(|&(j, k)| chosen.1 <= j && j <= chosen.2 && distinctive(k)).collect();
    let weight = |run: &[(u32, usize)]| {
        let distinct: std::collections::BTreeSet<usize> = run.iter().map(|&(_, k)| k).collect();
        distinct.iter().map(|&k| names.tokens[k].1).sum::<f32>()
    };
    let run = inside
        .chunk_by(|a, b| b.0 - a.0 <= names.len)
        .fold(&inside[..0], |best, run| if weight(run) > weight(best) { run } else { best });
    Some((run.first()?.0, run.last()?.0))
}

/// The window of `width` lines whose distinct tokens weigh most: (weight, first hit line, last
/// hit line). Hits within `width` of `avoid` are left out.
fn densest(hits: &[(u32, usize)], names: &Names, width: u32, avoid: Option<(u32, u32)>) -> Option<(f32, u32, u32)> {
    let hits: Vec<(u32, usize)> = match avoid {
        Some((a, b)) => hits.iter().copied().filter(|&(j, _)| j + width < a || j > b + width).collect(),
        None => hits.to_vec(),
    };
    let mut count = vec![0u32; names.tokens.len()];
    let (mut weight, mut lo) = (0.0f32, 0usize);
    let mut best: Option<(f32, u32, u32)> = None;
    for hi in 0..hits.len() {
        let (j, k) = hits[hi];
        if count[k] == 0 {
            weight += names.tokens[k].1;
        }
        count[k] += 1;
        while hits[lo].0 + width <= j {
            let k = hits[lo].1;
            count[k] -= 1;
            if count[k] == 0 {
                weight -= names.tokens[k].1;
            }
            lo += 1;
        }
        if best.is_none_or(|b| weight > b.0 + f32::EPSILON) {
            best = Some((weight, hits[lo].0, j));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(anchored: &[&str], before: &[&str], after: &[&str], hay: &str, near: Option<u32>) -> Vec<Candidate> {
        let text = Text::new(hay);
        let needle = Needle::new(anchored, before.iter().copied(), after.iter().copied());
        search(&needle, &[Hay { text: &text, near }])
    }

    #[test]
    fn exact_block_found_where_it_moved() {
        let hay = "a\nb\nc\nfn moved() {\n    work();\n}\nd\n";
        let c = find(&["fn moved() {", "    work();", "}"], &[], &[], hay, Some(0));
        assert_eq!((c[0].start, c[0].end, c[0].tier), (3, 5, Tier::Exact));
    }

    #[test]
    fn reindented_block_is_whitespace_tier() {
        let hay = "mod m {\n    fn moved() {\n        work();\n    }\n}\n";
        let c = find(&["fn moved() {", "    work();", "}"], &[], &[], hay, None);
        assert_eq!((c[0].start, c[0].end, c[0].tier), (1, 3, Tier::Whitespace));
    }

    #[test]
    fn block_with_an_inserted_line_is_fuzzy_and_spans_it() {
        let hay = "x\nfn moved() {\n    setup();\n    work();\n    more();\n}\ny\n";
        let c = find(&["fn moved() {", "    work();", "    more();", "}"], &[], &[], hay, None);
        assert_eq!((c[0].start, c[0].end, c[0].tier, c[0].matched), (1, 5, Tier::Fuzzy, 3));
    }

    #[test]
    fn context_picks_the_right_copy_of_duplicated_code() {
        let hay = "fn one() {\n    shared_line();\n}\nfn two() {\n    shared_line();\n}\n";
        let c = find(&["    shared_line();"], &["fn two() {"], &["}"], hay, Some(0));
        assert_eq!((c[0].start, c[0].context), (4, 2));
        assert!(!c[0].ties_with(&c[1]));
    }

    #[test]
    fn without_context_the_nearest_copy_wins_and_equal_distance_ties() {
        let hay = "shared_line();\nx\nshared_line();\ny\nshared_line();\n";
        let c = find(&["shared_line();"], &[], &[], hay, Some(3));
        assert_eq!(c[0].distance, Some(1));
        assert!(c[0].ties_with(&c[1]), "lines 2 and 4 are both one line away");
    }

    #[test]
    fn too_little_survives_to_claim_a_fuzzy_match() {
        let hay = "fn moved() {\n    totally();\n    different();\n    body();\n}\n";
        let c = find(&["fn moved() {", "    work();", "    more();", "    again();", "}"], &[], &[], hay, None);
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn one_line_of_two_found_again_needs_its_context() {
        let hay = "fn other() {\n    let kept_line = 1;\n}\nfn moved() {\n    let edited_line = 5;\n    let kept_line = 1;\n    tail();\n}\n";
        let anchored = ["    let edited_line = 0;", "    let kept_line = 1;"];
        assert!(find(&anchored, &[], &[], hay, None).is_empty());
        let c = find(&anchored, &["fn moved() {"], &["    tail();"], hay, None);
        assert_eq!(c.len(), 1, "the decoy in other() has no context: {c:?}");
        assert_eq!((c[0].start, c[0].end, c[0].matched, c[0].context), (4, 5, 1, 2));
    }

    #[test]
    fn restyled_code_is_found_by_its_names() {
        let old = [
            "pub fn fold_label<V: Fold + ?Sized>(_visitor: &mut V, _i: Label) -> Label {",
            "    Label {",
            "        name: _visitor.fold_lifetime(_i.name),",
            "        colon_token: Token ! [ : ](tokens_helper(_visitor, &_i.colon_token.spans)),",
            "    }",
        ];
        let hay = Text::new(
            "pub fn fold_item<F>(f: &mut F, node: crate::Item) -> crate::Item {\n    node\n}\n\
             pub fn fold_label<F>(f: &mut F, node: crate::Label) -> crate::Label\nwhere\n    F: Fold + ?Sized,\n{\n\
             \x20   crate::Label {\n        name: f.fold_lifetime(node.name),\n        colon_token: node.colon_token,\n    }\n}\n\
             pub fn fold_loop<F>(f: &mut F, node: crate::Loop) -> crate::Loop {\n    label: node.label.map(|it| f.fold_label(it)),\n}\n",
        );
        // Rarity where the anchor was written: the function's own names are rare there.
        let rare = ["fold_label", "Label", "colon_token", "fold_lifetime", "name"].map(hash_str);
        let names = Names::new(&old, &|t| if rare.contains(&t) { 2 } else { 300 });
        assert_eq!(search_names(&names, &hay, None), Some((3, 9)));
        // Names from different anchored lines, packed in one list, are not code.
        let listed = Text::new("use crate::{fold_label, fold_lifetime, colon_token};\n");
        assert_eq!(search_names(&names, &listed, None), None);
        // Another function's names are not enough.
        let other = Names::new(&["pub fn fold_block(b: Block) -> Block {", "    b.stmts.len()"], &|_| 2);
        assert_eq!(search_names(&other, &hay, None), None);
        // The same names in two places: only nearness to the old position decides.
        let twice = Text::new(format!("{}\n{}", hay.as_str(), "\n".repeat(40) + hay.as_str()));
        assert_eq!(search_names(&names, &twice, None), None);
        assert_eq!(search_names(&names, &twice, Some(60)), Some((59, 65)));
    }

    #[test]
    fn a_lone_brace_needs_its_context() {
        let hay = "a();\n}\nb();\n}\n";
        assert!(find(&["}"], &[], &[], hay, None).is_empty());
        let c = find(&["}"], &["b();"], &[], hay, None);
        assert_eq!(c[0].start, 3);
    }
}
