//! Live edit tracking: the boundary rules, and two properties against random edit sequences.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;
use crate::anchor::{Anchor, Document, LineRange, Sources, Status, Text, relocate};

fn pos(line: u32, col: u32) -> Position {
    Position::new(line, col)
}

/// Applies one edit to `doc` and maps `range` through it.
fn edit(doc: &mut Document, tracker: &mut Tracker, start: Position, end: Position, text: &str) {
    if let Some(h) = doc.apply(start, end, text) {
        tracker.apply(&LineChange::single(h));
    }
}

fn doc() -> Document {
    Document::new("zero\none\ntwo\nthree\nfour\nfive\n")
}

fn at(a: u32, b: u32) -> Tracked {
    Tracked::At(LineRange::new(a, b))
}

#[test]
fn typing_a_new_line_just_above_pushes_the_anchor_down() {
    let (mut d, mut t) = (doc(), Tracker::new([LineRange::new(3, 4)]));
    edit(&mut d, &mut t, pos(2, 0), pos(2, 0), "inserted\n");
    assert_eq!(t.get(0), at(4, 5));
    // Enter at the end of the line above does the same.
    edit(&mut d, &mut t, pos(1, 3), pos(1, 3), "\n");
    assert_eq!(t.get(0), at(5, 6));
}

#[test]
fn typing_at_the_end_of_the_last_line_stays_inside() {
    let (mut d, mut t) = (doc(), Tracker::new([LineRange::new(3, 4)]));
    edit(&mut d, &mut t, pos(3, 5), pos(3, 5), " more");
    assert_eq!(t.get(0), at(3, 4));
    assert_eq!(d.line(3), "three more");
}

#[test]
fn enter_at_the_end_of_the_last_line_opens_a_line_below_outside() {
    let (mut d, mut t) = (doc(), Tracker::new([LineRange::new(3, 4)]));
    edit(&mut d, &mut t, pos(3, 5), pos(3, 5), "\nnext");
    assert_eq!(t.get(0), at(3, 4));
}

#[test]
fn typing_a_line_inside_grows_the_anchor() {
    let (mut d, mut t) = (doc(), Tracker::new([LineRange::new(3, 5)]));
    edit(&mut d, &mut t, pos(3, 0), pos(3, 0), "new\n");
    assert_eq!(t.get(0), at(3, 6));
}

#[test]
fn deleting_lines_above_pulls_it_up_and_deleting_its_lines_removes_it() {
    let (mut d, mut t) = (doc(), Tracker::new([LineRange::new(4, 5)]));
    edit(&mut d, &mut t, pos(0, 0), pos(2, 0), "");
    assert_eq!(t.get(0), at(2, 3));
    edit(&mut d, &mut t, pos(1, 0), pos(3, 0), "");
    assert_eq!(t.get(0), Tracked::Gone(1));
    assert_eq!(d.text(), "two\nfive\n");
}

#[test]
fn replacing_text_across_its_first_line_moves_its_start_to_the_replacement() {
    // "one" + "two" joined: the anchor on "two" is now part of line 2.
    let (mut d, mut t) = (doc(), Tracker::new([LineRange::new(3, 4)]));
    edit(&mut d, &mut t, pos(1, 3), pos(2, 0), " ");
    assert_eq!(d.line(1), "one two");
    assert_eq!(t.get(0), at(2, 3));
}

#[test]
fn multi_cursor_edits_sent_bottom_up_map_like_one_at_a_time() {
    let edits = [(pos(4, 0), pos(4, 0), "a\nb\n"), (pos(2, 1), pos(3, 1), "X"), (pos(0, 0), pos(0, 0), "top\n")];
    let ranges = [LineRange::new(1, 1), LineRange::new(2, 2), LineRange::new(3, 5), LineRange::new(5, 6)];
    let (mut d1, mut one_by_one) = (doc(), Tracker::new(ranges));
    for (s, e, text) in edits {
        edit(&mut d1, &mut one_by_one, s, e, text);
    }
    let (mut d2, mut together) = (doc(), Tracker::new(ranges));
    let mut change = LineChange::new();
    for (s, e, text) in edits {
        if let Some(h) = d2.apply(s, e, text) {
            change.push(h);
        }
    }
    together.apply(&change);
    for i in 0..ranges.len() {
        assert_eq!(one_by_one.get(i), together.get(i), "anchor {i}");
    }
}

#[test]
fn positions_past_the_end_are_clamped_and_never_panic() {
    let (mut d, mut t) = (doc(), Tracker::new([LineRange::new(2, 2)]));
    edit(&mut d, &mut t, pos(1, 999), pos(99, 99), "");
    assert_eq!(d.text(), "zero\none");
    assert_eq!(t.get(0), at(2, 2));
    let mut u = Document::new("é\n");
    u.apply(pos(0, 1), pos(0, 1), "x"); // inside the two bytes of é: moves to its start
    assert_eq!(u.text(), "xé\n");
}

// ---- properties over random edit sequences ----

/// A line of random letters: unrelated lines share almost no bigrams, as unrelated code does.
fn word_line(seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 12 + (x % 12) as usize;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Recipe {
    kind: u8,
    a: u32,
    b: u32,
    c: u32,
}

fn recipe() -> impl Strategy<Value = Recipe> {
    (0u8..7, any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(kind, a, b, c)| Recipe { kind, a, b, c })
}

/// Turns a recipe into a concrete edit on the current document. Inserted text is fresh, so
/// the diff between the first and last texts is never ambiguous.
fn concrete(d: &Document, r: &Recipe, fresh: &mut u64) -> (Position, Position, String) {
    let n = d.line_count().max(1);
    let line = r.a % n;
    let len = d.line_len(line);
    let col = |v: u32| if len == 0 { 0 } else { v % (len + 1) };
    let mut new = || {
        *fresh += 1;
        format!("QQ{}{}", *fresh, word_line(*fresh + 1_000_000))
    };
    match r.kind {
        // Whole new lines above a line.
        0 => (pos(line, 0), pos(line, 0), (0..1 + r.b % 3).map(|_| new() + "\n").collect()),
        // Whole lines deleted.
        1 => (pos(line, 0), pos((line + 1 + r.b % 3).min(n), 0), String::new()),
        // Characters replaced inside one line.
        2 => {
            let (x, y) = (col(r.b).min(col(r.c)), col(r.b).max(col(r.c)));
            (
                pos(line, x),
                pos(line, y),
                format!("Z{}", {
                    *fresh += 1;
                    *fresh
                }),
            )
        }
        // A line split, with fresh text after the break.
        3 => (pos(line, col(r.b)), pos(line, col(r.b)), format!("\n{}", new())),
        // A line joined with the next.
        4 => (pos(line, len), pos(line + 1, 0), String::new()),
        // Enter at the end of a line and type.
        5 => (pos(line, len), pos(line, len), format!("\n{}", new())),
        // A region across lines replaced with fresh lines.
        _ => {
            let end = (line + 1 + r.b % 2).min(n - 1);
            (pos(line, col(r.c)), pos(end, d.line_len(end) / 2), format!("{}\n{}", new(), new()))
        }
    }
}

/// The lines of `r`; an editor's final empty line, which git does not count, reads as "".
/// A document of `n` random lines and the anchors drawn for it.
fn setup(n: u32, anchors: &[(u32, u32)]) -> (String, Vec<LineRange>) {
    let text: String = (0..n).map(|i| word_line(i as u64) + "\n").collect();
    let ranges = anchors
        .iter()
        .map(|&(s, l)| {
            let s = s % n;
            LineRange::from_zero(s, (s + l).min(n - 1))
        })
        .collect();
    (text, ranges)
}

fn lines_of(text: &Text, r: LineRange) -> Vec<&str> {
    (r.start as usize - 1..r.end as usize).map(|i| if i < text.len() { text.line(i) } else { "" }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Composing a didChange's edits into one change, then mapping once, is the same as
    /// mapping after every edit.
    #[test]
    fn a_composed_change_maps_like_its_edits_one_by_one(
        n in 1u32..30,
        anchors in prop::collection::vec((0u32..30, 0u32..4), 1..8),
        recipes in prop::collection::vec(recipe(), 1..12),
    ) {
        let (text, ranges) = setup(n, &anchors);
        let (mut d1, mut d2) = (Document::new(text.clone()), Document::new(text));
        let (mut stepwise, mut composed) = (Tracker::new(ranges.clone()), Tracker::new(ranges.clone()));
        let (mut f1, mut f2) = (0, 0);
        let mut change = LineChange::new();
        for r in &recipes {
            let (s, e, t) = concrete(&d1, r, &mut f1);
            if let Some(h) = d1.apply(s, e, &t) {
                stepwise.apply(&LineChange::single(h));
            }
            let (s, e, t) = concrete(&d2, r, &mut f2);
            if let Some(h) = d2.apply(s, e, &t) {
                change.push(h);
            }
        }
        composed.apply(&change);
        prop_assert_eq!(d1.text(), d2.text());
        for i in 0..ranges.len() {
            let (a, b) = (stepwise.get(i), composed.get(i));
            // Composition may merge touching hunks, which only ever widens a range.
            match (a, b) {
                (Tracked::At(x), Tracked::At(y)) => prop_assert!(y.start <= x.start && x.end <= y.end, "{:?} vs {:?}", x, y),
                (Tracked::Gone(_), _) => {}
                (x, y) => prop_assert!(false, "stepwise {:?} composed {:?}", x, y),
            }
        }
    }

    /// Tracking edit by edit and relocating by diff agree wherever both are defined:
    /// - unchanged anchored text: both intact, same lines;
    /// - the diff sees it intact: inside the tracked range (which may be wider);
    /// - the diff's modified range lies inside the tracked range;
    /// - the tracker lost it: the diff says deleted, or can't tell a rewrite from a deletion;
    /// - the diff says deleted: no anchored line survives verbatim in the tracked range.
    #[test]
    fn tracking_edits_agrees_with_relocating_by_diff(
        n in 1u32..40,
        anchors in prop::collection::vec((0u32..40, 0u32..5), 1..8),
        recipes in prop::collection::vec(recipe(), 1..10),
    ) {
        let (original, ranges) = setup(n, &anchors);
        let mut d = Document::new(original.clone());
        let mut tracker = Tracker::new(ranges.clone());
        let mut fresh = 0;
        for r in &recipes {
            let (s, e, t) = concrete(&d, r, &mut fresh);
            if let Some(h) = d.apply(s, e, &t) {
                tracker.apply(&LineChange::single(h));
            }
        }
        let (old, new) = (Text::new(original.clone()), Text::new(d.text()));
        for (i, &range) in ranges.iter().enumerate() {
            let anchor = Anchor { path: "f".into(), lines: range, ..Anchor::default() };
            let by_diff = relocate(&anchor, &Sources { old: Some(&old), new: Some(("f", &new)), ..Sources::default() }).unwrap();
            let anchored = lines_of(&old, range);
            match tracker.get(i) {
                Tracked::At(t) => {
                    prop_assert!(t.end <= d.line_count(), "tracked {:?} past the end", t);
                    let tracked_text = lines_of(&new, t);
                    if tracked_text == anchored {
                        prop_assert_eq!(by_diff.status, Status::Intact);
                        prop_assert_eq!(by_diff.lines, t);
                    } else if by_diff.status == Status::Intact {
                        // An edit touched the lines but put them back (split where a join
                        // was): the tracker works in whole hunks and over-approximates.
                        let d = by_diff.lines;
                        prop_assert!(t.start <= d.start && d.end <= t.end, "intact {:?} outside tracked {:?}", d, t);
                    } else if by_diff.status == Status::Deleted {
                        for a in &anchored {
                            prop_assert!(!tracked_text.iter().any(|l| l.contains(a)), "{:?} survives in {:?}", a, t);
                        }
                    } else {
                        prop_assert_eq!(by_diff.status, Status::Modified);
                        let d = by_diff.lines;
                        let guessed = lines_of(&new, d).iter().all(|l| !original.lines().any(|o| o == *l));
                        if guessed {
                            // Rewritten beyond recognition: the diff can only guess which new
                            // lines took its place, so its lines are not defined; it agrees
                            // that the anchor survives, modified.
                        } else {
                            prop_assert!(t.start <= d.start && d.end <= t.end, "diff {:?} outside tracked {:?}", d, t);
                        }
                    }
                }
                Tracked::Gone(_) => {
                    if by_diff.status != Status::Deleted {
                        prop_assert_eq!(by_diff.status, Status::Modified);
                        for l in lines_of(&new, by_diff.lines) {
                            prop_assert!(!original.lines().any(|o| o == l), "{:?} is old text, yet the tracker saw it deleted", l);
                        }
                    }
                }
            }
        }
    }
}
