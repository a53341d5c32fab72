//! Unified-diff hunks as providers send them (GitHub's `patch`, GitLab's `diff`, Bitbucket's
//! whole-pull-request diff): which lines of a file the diff shows, and each line's number on
//! both sides. A line comment can only go on a line the diff shows; GitLab also wants both
//! numbers of an unchanged line, and codes lines by them. Pure.

use std::collections::HashMap;

use crate::anchor::LineRange;

use super::Side;

/// What a diff line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Context,
    Added,
    Removed,
}

/// One line a diff shows, with the line counters of both sides at that point: for an added
/// line `old` is the old line that would come next, for a removed line `new` is the new line
/// that would come next (what GitLab's line codes use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub kind: Kind,
    pub old: u32,
    pub new: u32,
}

impl Line {
    /// Its number on `side`, when it is on that side.
    pub fn on(&self, side: Side) -> Option<u32> {
        match (side, self.kind) {
            (Side::New, Kind::Removed) | (Side::Old, Kind::Added) => None,
            (Side::New, _) => Some(self.new),
            (Side::Old, _) => Some(self.old),
        }
    }
}

/// The lines of one file's hunks. Headers before the first hunk (`diff --git`, `---`, `+++`,
/// `index`) and `\ No newline at end of file` are skipped; a malformed hunk header ends the
/// reading there.
pub fn parse(patch: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let (mut old, mut new) = (0u32, 0u32);
    let mut in_hunk = false;
    let body = patch.strip_suffix('\n').unwrap_or(patch);
    for raw in body.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = line.strip_prefix("@@") {
            match hunk_start(rest) {
                Some((o, n)) => {
                    (old, new) = (o, n);
                    in_hunk = true;
                }
                None => break,
            }
            continue;
        }
        if !in_hunk {
            continue;
        }
        match line.as_bytes().first() {
            Some(b'+') => {
                out.push(Line { kind: Kind::Added, old, new });
                new += 1;
            }
            Some(b'-') => {
                out.push(Line { kind: Kind::Removed, old, new });
                old += 1;
            }
            Some(b' ') => {
                out.push(Line { kind: Kind::Context, old, new });
                old += 1;
                new += 1;
            }
            Some(b'\\') => {}
            // An unchanged empty line whose leading space was stripped on the way.
            None => {
                out.push(Line { kind: Kind::Context, old, new });
                old += 1;
                new += 1;
            }
            _ => in_hunk = false,
        }
    }
    out
}

/// `-12,5 +14,7 @@ fn x()` → (12, 14).
fn hunk_start(rest: &str) -> Option<(u32, u32)> {
    let mut words = rest.split_whitespace();
    let old = words.next()?.strip_prefix('-')?;
    let new = words.next()?.strip_prefix('+')?;
    let first = |s: &str| s.split(',').next()?.parse::<u32>().ok();
    Some((first(old)?, first(new)?))
}

/// The diff lines of `lines` on `side`, in order, when the diff shows every one of them; else
/// the lines it does not show.
pub fn find(diff: &[Line], side: Side, lines: LineRange) -> Result<Vec<Line>, Vec<u32>> {
    let by_number: HashMap<u32, Line> = diff.iter().filter_map(|l| l.on(side).map(|n| (n, *l))).collect();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in lines.start..=lines.end {
        match by_number.get(&n) {
            Some(l) => found.push(*l),
            None => missing.push(n),
        }
    }
    if missing.is_empty() { Ok(found) } else { Err(missing) }
}

/// The plain sentence for lines a diff does not show: `lines 40-41 of src/x.rs are not part
/// of the pull request's diff (it shows 10-18 and 52-60 of the new file)`.
pub fn not_in_diff(path: &str, side: Side, lines: LineRange, diff: Option<&[Line]>, noun: &str) -> String {
    let which = if side == Side::New { "new" } else { "old" };
    let what = if lines.start == lines.end { format!("line {}", lines.start) } else { format!("lines {lines}") };
    let shown = match diff {
        None => format!("{path} is not changed by this {noun}"),
        Some(d) => {
            let ranges = runs(d.iter().filter_map(|l| l.on(side)));
            if ranges.is_empty() {
                format!("it shows no lines of the {which} file")
            } else {
                let list: Vec<String> = ranges.iter().take(6).map(ToString::to_string).collect();
                let more = if ranges.len() > 6 { " …" } else { "" };
                format!("it shows {}{more} of the {which} file", join_and(&list))
            }
        }
    };
    let verb = if lines.start == lines.end { "is" } else { "are" };
    format!(
        "{what} of {path} ({which} side) {verb} not part of the {noun}'s diff ({shown}); a line comment can only go \
         on lines the diff shows"
    )
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Consecutive numbers as ranges.
fn runs(numbers: impl Iterator<Item = u32>) -> Vec<LineRange> {
    let mut v: Vec<u32> = numbers.collect();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<LineRange> = Vec::new();
    for n in v {
        match out.last_mut() {
            Some(r) if r.end + 1 == n => r.end = n,
            _ => out.push(LineRange::new(n, n)),
        }
    }
    out
}

/// A whole diff split by file: the new path (the old one for a deleted file) to its hunks.
pub fn split_files(diff: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut current: Option<(Option<String>, Option<String>, String)> = None;
    let finish = |c: Option<(Option<String>, Option<String>, String)>, out: &mut HashMap<String, String>| {
        if let Some((old, new, body)) = c
            && let Some(path) = new.or(old)
        {
            out.insert(path, body);
        }
    };
    for line in diff.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            finish(current.take(), &mut out);
            current = Some((None, None, String::new()));
            continue;
        }
        let Some((old, new, body)) = current.as_mut() else { continue };
        if body.is_empty() {
            let l = line.trim_end_matches(['\n', '\r']);
            if let Some(p) = l.strip_prefix("--- ") {
                *old = side_path(p, "a/");
                continue;
            }
            if let Some(p) = l.strip_prefix("+++ ") {
                *new = side_path(p, "b/");
                continue;
            }
        }
        if line.starts_with("@@") || !body.is_empty() {
            body.push_str(line);
        }
    }
    finish(current.take(), &mut out);
    out
}

/// `a/src/x.rs` → `src/x.rs`; `/dev/null` → `None`.
fn side_path(p: &str, prefix: &str) -> Option<String> {
    let p = p.split('\t').next().unwrap_or(p).trim();
    if p == "/dev/null" {
        return None;
    }
    Some(p.strip_prefix(prefix).unwrap_or(p).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "@@ -10,6 +10,7 @@ fn cache() {\n     let a = 1;\n-    let b = 2;\n+    let b = 3;\n+    let c = 4;\n     let d = 5;\n \n     a + b\n\\ No newline at end of file\n@@ -40,2 +41,2 @@\n fn tail() {}\n-fn gone() {}\n+fn here() {}";

    #[test]
    fn both_counters_are_kept_for_every_line() {
        let d = parse(PATCH);
        let shown: Vec<(Kind, u32, u32)> = d.iter().map(|l| (l.kind, l.old, l.new)).collect();
        use Kind::*;
        assert_eq!(
            shown,
            vec![
                (Context, 10, 10),
                (Removed, 11, 11),
                (Added, 12, 11),
                (Added, 12, 12),
                (Context, 12, 13),
                (Context, 13, 14),
                (Context, 14, 15),
                (Context, 40, 41),
                (Removed, 41, 42),
                (Added, 42, 42),
            ]
        );
    }

    #[test]
    fn lines_the_diff_shows_and_lines_it_does_not() {
        let d = parse(PATCH);
        let found = find(&d, Side::New, LineRange::new(11, 13)).unwrap();
        assert_eq!(found.iter().map(|l| l.kind).collect::<Vec<_>>(), vec![Kind::Added, Kind::Added, Kind::Context]);
        assert_eq!(find(&d, Side::Old, LineRange::new(11, 11)).unwrap()[0].kind, Kind::Removed);
        assert_eq!(find(&d, Side::New, LineRange::new(14, 17)).unwrap_err(), vec![16, 17]);
        let msg = not_in_diff("src/c.rs", Side::New, LineRange::new(20, 21), Some(&d), "pull request");
        assert_eq!(
            msg,
            "lines 20-21 of src/c.rs (new side) are not part of the pull request's diff (it shows 10-15 and 41-42 of \
             the new file); a line comment can only go on lines the diff shows"
        );
    }

    #[test]
    fn a_whole_diff_splits_into_files() {
        let diff = "diff --git a/x.rs b/y.rs\nsimilarity index 90%\nrename from x.rs\nrename to y.rs\n--- a/x.rs\n+++ b/y.rs\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n";
        let files = split_files(diff);
        assert_eq!(files["y.rs"], "@@ -1 +1 @@\n-a\n+b\n");
        assert_eq!(files["gone.txt"], "@@ -1 +0,0 @@\n-bye\n");
        assert_eq!(parse(&files["y.rs"]).len(), 2);
        // A stripped blank context line still counts on both sides; the final newline does not.
        let d = parse("@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n");
        assert_eq!(d.iter().map(|l| (l.old, l.new)).collect::<Vec<_>>(), vec![(1, 1), (2, 2), (3, 3), (4, 3)]);
    }

    #[test]
    fn garbage_is_no_lines_not_a_panic() {
        assert!(parse("not a diff at all\n+++").is_empty());
        assert!(parse("@@ -x +y @@\n+a").is_empty());
        assert!(parse("").is_empty());
    }
}
