//! Unified diff hunks: made from two texts, and applied to the base text, strictly. A patch is
//! untrusted input (it comes from the server, written by whoever claims to be the author): every
//! hunk must sit exactly where it says, its context and removed lines must be the base's, and
//! nothing is guessed. Pure: texts in, text or an error out.
//!
//! The format is git's without the file headers: `@@ -a,b +c,d @@` then lines starting with
//! ` ` (context), `-` (removed) or `+` (added), each ended by `\n`; `\ No newline at end of file`
//! follows a line that had no line break. Lines keep a `\r` before their `\n`.

use similar::{Algorithm, DiffOp, capture_diff_slices_deadline};
use std::time::{Duration, Instant};

/// Context lines around each change.
const CONTEXT: usize = 3;
/// A diff that takes longer gives a coarser (still correct) answer.
const DEADLINE: Duration = Duration::from_millis(500);
/// Hunks in one patch, and lines in one hunk, before the patch is refused as hostile.
pub const MAX_HUNKS: usize = 20_000;
pub const MAX_HUNK_LINES: usize = 1_000_000;

/// Why a patch cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("line {line} of the patch is not part of a unified diff: `{text}`")]
    Malformed { line: usize, text: String },
    #[error("hunk {hunk} (`{header}`) does not apply: {why}")]
    DoesNotApply { hunk: usize, header: String, why: String },
    #[error("the patch is too large: {0}")]
    TooLarge(String),
}

/// Splits a text into lines, each without its `\n`; the flag says whether the text ended with
/// one (an empty text has no lines).
fn lines(text: &str) -> (Vec<&str>, bool) {
    if text.is_empty() {
        return (Vec::new(), true);
    }
    let ends = text.ends_with('\n');
    let body = if ends { &text[..text.len() - 1] } else { text };
    (body.split('\n').collect(), ends)
}

/// The hunks that turn `old` into `new`; `None` when they are the same text.
pub fn make(old: &str, new: &str) -> Option<String> {
    if old == new {
        return None;
    }
    let (a, a_ends) = lines(old);
    let (b, b_ends) = lines(new);
    // The last line's missing break is part of its identity: `x` and `x\n` differ.
    let key = |v: &[&str], ends: bool| -> Vec<(String, bool)> {
        v.iter().enumerate().map(|(i, l)| ((*l).to_owned(), i + 1 < v.len() || ends)).collect()
    };
    let (ka, kb) = (key(&a, a_ends), key(&b, b_ends));
    let ops = capture_diff_slices_deadline(Algorithm::Myers, &ka, &kb, Some(Instant::now() + DEADLINE));
    let mut out = String::new();
    for group in group_ops(&ops) {
        let (first, last) = (group.first().expect("groups are not empty"), group.last().expect("not empty"));
        let (o0, n0) = (first.old_range().start, first.new_range().start);
        let (o1, n1) = (last.old_range().end, last.new_range().end);
        let start = |s: usize, len: usize| if len == 0 { s } else { s + 1 };
        out.push_str(&format!("@@ -{},{} +{},{} @@\n", start(o0, o1 - o0), o1 - o0, start(n0, n1 - n0), n1 - n0));
        for op in &group {
            let push = |out: &mut String, mark: char, text: &str, ended: bool| {
                out.push(mark);
                out.push_str(text);
                out.push('\n');
                if !ended {
                    out.push_str("\\ No newline at end of file\n");
                }
            };
            match *op {
                DiffOp::Equal { old_index, len, .. } => {
                    for (t, e) in &ka[old_index..old_index + len] {
                        push(&mut out, ' ', t, *e);
                    }
                }
                _ => {
                    for (t, e) in &ka[op.old_range()] {
                        push(&mut out, '-', t, *e);
                    }
                    for (t, e) in &kb[op.new_range()] {
                        push(&mut out, '+', t, *e);
                    }
                }
            }
        }
    }
    Some(out)
}

/// Groups diff ops into hunks with [`CONTEXT`] lines of context around each change, the way
/// `diff -u` does: changes closer than twice the context share a hunk.
fn group_ops(ops: &[DiffOp]) -> Vec<Vec<DiffOp>> {
    let mut groups: Vec<Vec<DiffOp>> = Vec::new();
    let mut current: Vec<DiffOp> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            DiffOp::Equal { old_index, new_index, len } => {
                let first = i == 0;
                let last = i + 1 == ops.len();
                if first {
                    let keep = len.min(CONTEXT);
                    current.push(DiffOp::Equal {
                        old_index: old_index + len - keep,
                        new_index: new_index + len - keep,
                        len: keep,
                    });
                } else if last || len > 2 * CONTEXT {
                    let head = len.min(CONTEXT);
                    current.push(DiffOp::Equal { old_index, new_index, len: head });
                    groups.push(std::mem::take(&mut current));
                    if !last {
                        let keep = CONTEXT.min(len);
                        current.push(DiffOp::Equal {
                            old_index: old_index + len - keep,
                            new_index: new_index + len - keep,
                            len: keep,
                        });
                    }
                } else {
                    current.push(*op);
                }
            }
            _ => current.push(*op),
        }
    }
    if current.iter().any(|op| !matches!(op, DiffOp::Equal { .. })) {
        groups.push(current);
    }
    groups.retain(|g| g.iter().any(|op| !matches!(op, DiffOp::Equal { .. })));
    // Empty context entries (len 0) say nothing.
    for g in &mut groups {
        g.retain(|op| !matches!(op, DiffOp::Equal { len: 0, .. }));
    }
    groups
}

/// One parsed hunk.
struct Hunk {
    header: String,
    old_start: usize,
    old_len: usize,
    new_len: usize,
    /// (mark, text, ends with a line break)
    lines: Vec<(char, String, bool)>,
}

fn parse(patch: &str) -> Result<Vec<Hunk>, PatchError> {
    let mut hunks: Vec<Hunk> = Vec::new();
    for (n, raw) in patch.split_inclusive('\n').enumerate() {
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let bad = || PatchError::Malformed { line: n + 1, text: line.chars().take(80).collect() };
        if let Some(rest) = line.strip_prefix("@@ ") {
            if hunks.len() >= MAX_HUNKS {
                return Err(PatchError::TooLarge(format!("more than {MAX_HUNKS} hunks")));
            }
            let spec = rest.split(" @@").next().ok_or_else(bad)?;
            let mut parts = spec.split(' ');
            let range = |p: Option<&str>, sign: char| -> Option<(usize, usize)> {
                let p = p?.strip_prefix(sign)?;
                let (s, l) = p.split_once(',').unwrap_or((p, "1"));
                Some((s.parse().ok()?, l.parse().ok()?))
            };
            let (old_start, old_len) = range(parts.next(), '-').ok_or_else(bad)?;
            let (_, new_len) = range(parts.next(), '+').ok_or_else(bad)?;
            if old_len > MAX_HUNK_LINES || new_len > MAX_HUNK_LINES {
                return Err(PatchError::TooLarge(format!("a hunk of more than {MAX_HUNK_LINES} lines")));
            }
            hunks.push(Hunk { header: line.to_owned(), old_start, old_len, new_len, lines: Vec::new() });
            continue;
        }
        let hunk = hunks.last_mut().ok_or_else(bad)?;
        if line.starts_with('\\') {
            let last = hunk.lines.last_mut().ok_or_else(bad)?;
            last.2 = false;
            continue;
        }
        let mut chars = line.chars();
        let mark = chars.next().ok_or_else(bad)?;
        if !matches!(mark, ' ' | '-' | '+') {
            return Err(bad());
        }
        if hunk.lines.len() > MAX_HUNK_LINES {
            return Err(PatchError::TooLarge(format!("a hunk of more than {MAX_HUNK_LINES} lines")));
        }
        hunk.lines.push((mark, chars.as_str().to_owned(), true));
    }
    Ok(hunks)
}

/// Applies hunks to `old`, strictly: each at its stated line, its context and removed lines
/// exactly the base's, the hunks in order and not overlapping, the counts as stated.
pub fn apply(old: &str, patch: &str) -> Result<String, PatchError> {
    let hunks = parse(patch)?;
    let (a, a_ends) = lines(old);
    let base: Vec<(&str, bool)> = a.iter().enumerate().map(|(i, l)| (*l, i + 1 < a.len() || a_ends)).collect();
    let mut out: Vec<(String, bool)> = Vec::with_capacity(base.len());
    let mut at = 0usize; // next base line to copy
    for (i, h) in hunks.iter().enumerate() {
        let fail = |why: String| PatchError::DoesNotApply { hunk: i + 1, header: h.header.clone(), why };
        let olds = h.lines.iter().filter(|(m, ..)| *m != '+').count();
        let news = h.lines.iter().filter(|(m, ..)| *m != '-').count();
        if olds != h.old_len || news != h.new_len {
            return Err(fail(format!(
                "it says {} old and {} new lines but holds {olds} and {news}",
                h.old_len, h.new_len
            )));
        }
        let start = if h.old_len == 0 {
            h.old_start
        } else {
            h.old_start.checked_sub(1).ok_or_else(|| fail("it starts at line 0".into()))?
        };
        if start < at {
            return Err(fail(format!("it starts at line {} inside or before the previous hunk", h.old_start)));
        }
        if start + h.old_len > base.len() {
            return Err(fail(format!("it reaches line {} but the base has {} lines", start + h.old_len, base.len())));
        }
        out.extend(base[at..start].iter().map(|(t, e)| ((*t).to_owned(), *e)));
        let mut k = start;
        for (mark, text, ended) in &h.lines {
            match mark {
                '+' => out.push((text.clone(), *ended)),
                _ => {
                    let (have, have_end) = base[k];
                    if have != text || have_end != *ended {
                        return Err(fail(format!(
                            "line {} of the base is `{}`, not `{}`",
                            k + 1,
                            have.chars().take(60).collect::<String>(),
                            text.chars().take(60).collect::<String>()
                        )));
                    }
                    if *mark == ' ' {
                        out.push((text.clone(), *ended));
                    }
                    k += 1;
                }
            }
        }
        at = k;
    }
    out.extend(base[at..].iter().map(|(t, e)| ((*t).to_owned(), *e)));
    let mut text = String::with_capacity(old.len());
    for (i, (t, ended)) in out.iter().enumerate() {
        text.push_str(t);
        if *ended {
            text.push('\n');
        } else if i + 1 != out.len() {
            // Only the last line may lack a break; a patch that says otherwise is wrong.
            return Err(PatchError::DoesNotApply {
                hunk: hunks.len(),
                header: String::new(),
                why: "a line without a line break is not the last".into(),
            });
        }
    }
    Ok(text)
}

/// Lines a patch adds, for the secret scan and for counting.
pub fn added_lines(patch: &str) -> impl Iterator<Item = &str> {
    patch.lines().filter(|l| l.starts_with('+')).map(|l| &l[1..])
}

/// (added, removed) line counts of a patch.
pub fn counts(patch: &str) -> (u32, u32) {
    let mut add = 0;
    let mut del = 0;
    for l in patch.lines() {
        if l.starts_with('+') {
            add += 1;
        } else if l.starts_with('-') {
            del += 1;
        }
    }
    (add, del)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(old: &str, new: &str) -> String {
        let p = make(old, new).unwrap_or_default();
        let got = apply(old, &p).unwrap_or_else(|e| panic!("{e}\npatch:\n{p}"));
        assert_eq!(got, new, "patch:\n{p}");
        p
    }

    #[test]
    fn patches_read_like_git_and_rebuild_the_text() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let new = "a\nb\nC\nd\ne\nf\ng\nh\ni\nj\nk\n";
        let p = round_trip(old, new);
        expect_test::expect![[r#"
            @@ -1,6 +1,6 @@
             a
             b
            -c
            +C
             d
             e
             f
            @@ -8,3 +8,4 @@
             h
             i
             j
            +k
        "#]]
        .assert_eq(&p);
    }

    #[test]
    fn missing_final_newlines_and_crlf_survive() {
        let p = round_trip("one\r\ntwo", "one\r\ntwo\r\n");
        assert!(p.contains("\\ No newline at end of file"), "{p}");
        round_trip("", "new file\n");
        round_trip("old file\n", "");
        round_trip("x", "y");
    }

    #[test]
    fn a_patch_that_does_not_fit_the_base_is_refused_by_name() {
        let p = make("a\nb\nc\n", "a\nB\nc\n").unwrap();
        let e = apply("a\nX\nc\n", &p).unwrap_err();
        assert!(e.to_string().contains("line 2 of the base is `X`, not `b`"), "{e}");
        let e = apply("a\n", &p).unwrap_err();
        assert!(e.to_string().contains("but the base has 1 lines"), "{e}");
        let e = apply("a\nb\nc\n", "@@ -1,1 +1,1 @@\n a\n+b\n").unwrap_err();
        assert!(e.to_string().contains("says 1 old and 1 new lines but holds 1 and 2"), "{e}");
        let e = apply("a\n", "diff --git a/x b/x\n").unwrap_err();
        assert!(matches!(e, PatchError::Malformed { line: 1, .. }), "{e}");
        let e = apply("a\nb\n", "@@ -2,1 +2,1 @@\n-b\n+c\n@@ -1,1 +1,1 @@\n-a\n+z\n").unwrap_err();
        assert!(e.to_string().contains("before the previous hunk"), "{e}");
        let e = apply("a\n", "@@ -1,1 +1,3 @@\n a\n+b\n\\ No newline at end of file\n+c\n").unwrap_err();
        assert!(e.to_string().contains("not the last"), "{e}");
    }

    proptest! {
        #[test]
        fn any_edit_round_trips(old in proptest::collection::vec("[abc]{0,3}", 0..30), edits in proptest::collection::vec((0usize..30, 0usize..3, "[abcd]{0,3}"), 0..8), ends in any::<(bool, bool)>()) {
            let mut new = old.clone();
            for (at, kind, text) in edits {
                let at = at.min(new.len());
                match kind {
                    0 => new.insert(at, text),
                    1 if at < new.len() => { new.remove(at); }
                    _ if at < new.len() => new[at] = text,
                    _ => {}
                }
            }
            let join = |v: &[String], end: bool| { let mut s = v.join("\n"); if end && !v.is_empty() { s.push('\n'); } s };
            let (a, b) = (join(&old, ends.0), join(&new, ends.1));
            let p = make(&a, &b).unwrap_or_default();
            prop_assert_eq!(apply(&a, &p).unwrap(), b);
        }
    }
}
