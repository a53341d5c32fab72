//! `marginalia check`: which open discussions a change (a pull request) touches, for CI bots.
//!
//! The change runs from its *start* to `head`: the merge base of `base` and `head` (what
//! `git diff BASE...HEAD` and a pull request's diff start from), else `base` itself. Each
//! anchor of each open codemark is relocated twice, and the two answers are compared, so that
//! drift already on the base branch is never blamed on the change:
//!
//! 1. from the codemark's own commit to the start (the anchor engine, through every commit
//!    between; from the anchored text when that commit is not in this clone). Not found at all:
//!    `unknown`, with the reason. Already deleted there: `unchanged` (the change cannot touch
//!    code that was gone before it), counted as gone at base.
//! 2. from where it is at the start to `head`, as an anchor on the start commit. A file whose
//!    content is the same at both ends is `unchanged` without a diff. Otherwise the answer is
//!    the change's effect: `deleted`, `modified`, `moved` when intact but in another file or
//!    found elsewhere in its file by its text (cut and pasted: the diff did not carry it), and
//!    `unchanged` when intact where the diff carried it, even if lines above it shifted it.
//!
//! Without the start commit (a shallow clone that lacks `base`), step 2 is skipped: each anchor
//! is relocated from its own commit (or text) straight to `head` and reported by its state
//! there, so changes made before the base count too; the report says so. Found intact from its
//! text alone (its commit missing too), it is `moved` when none of the context lines it was
//! anchored with that are still in the file is within ten lines of it.
//!
//! A codemark with several anchors takes the most severe of their categories, in the order
//! deleted, modified, moved, unknown, unchanged; the anchor that decided it is the one shown.
//!
//! - [`source`]: where the codemarks come from (the team server, or the local store).
//! - [`report`]: the formats (text, JSON, Markdown, SARIF 2.1.0); pure functions of a [`Report`].
//! - [`post`]: the pull request's number from CI's environment, and the one summary comment
//!   kept up to date on it.
//!
//! Knows git only through [`crate::locate`] and [`crate::git`]; no HTTP (that is [`source`]'s
//! use of [`crate::sync`], and [`post`]'s of [`crate::providers`]), no printing.

pub mod post;
pub mod report;
pub mod source;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::anchor::{Anchor, LineRange, Relocation, Status, Text, Via};
use crate::codemark::{Codemark, Kind, MarkStatus};
use crate::git::{ObjectId, Repo, Target};
use crate::locate::{Located, Locator};

pub use source::Source;

/// What a change did to a codemark's code, most severe first (the order reports list them in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Nothing of the anchored code is left at head.
    Deleted,
    /// Part of it survives, or it was edited inside.
    Modified,
    /// Intact, but in another file, or cut and pasted elsewhere in its file.
    Moved,
    /// It could not be located; the reason says why.
    Unknown,
    /// Intact where the diff carried it (possibly shifted by lines added or removed around it),
    /// or already gone before the change.
    Unchanged,
}

impl Category {
    pub const ALL: [Category; 5] =
        [Category::Deleted, Category::Modified, Category::Moved, Category::Unknown, Category::Unchanged];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Deleted => "deleted",
            Category::Modified => "modified",
            Category::Moved => "moved",
            Category::Unknown => "unknown",
            Category::Unchanged => "unchanged",
        }
    }

    /// Whether the change touched the code: deleted, modified or moved it.
    pub fn touched(self) -> bool {
        matches!(self, Category::Deleted | Category::Modified | Category::Moved)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--fail-on`: which categories make the check fail (exit 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Code under an open discussion was modified or deleted.
    Modified,
    /// Code under an open discussion was deleted.
    Deleted,
}

impl FailOn {
    pub fn fails(self, c: Category) -> bool {
        match self {
            FailOn::Modified => matches!(c, Category::Modified | Category::Deleted),
            FailOn::Deleted => c == Category::Deleted,
        }
    }
}

impl FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<FailOn, String> {
        match s {
            "modified" => Ok(FailOn::Modified),
            "deleted" => Ok(FailOn::Deleted),
            _ => Err(format!("`{s}`: expected modified (modified or deleted) or deleted")),
        }
    }
}

/// Where an anchor is on one side of the change, and how it got there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub path: String,
    pub lines: LineRange,
    /// At the start: the codemark's anchor relocated there. At head: what the change did to the
    /// code it had at the start (or, without a start, the anchor relocated to head).
    pub status: Status,
}

impl Place {
    fn of(r: &Relocation) -> Place {
        Place { path: r.path.clone(), lines: r.lines, status: r.status }
    }
}

/// One anchor's fate in the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorFate {
    pub category: Category,
    /// At the start of the change; `None` without a start commit or when it was not found.
    pub base: Option<Place>,
    /// At head; `None` when it could not be located, or was gone before the change.
    pub head: Option<Place>,
    /// Why it could not be located (`unknown`).
    pub reason: Option<String>,
    /// Located from its anchored text alone: its commit is not in this clone.
    pub from_text: bool,
    /// Deleted before the change started (on the base branch).
    pub gone_at_base: bool,
}

impl AnchorFate {
    fn unknown(reason: String, base: Option<Place>, from_text: bool) -> AnchorFate {
        AnchorFate {
            category: Category::Unknown,
            base,
            head: None,
            reason: Some(reason),
            from_text,
            gone_at_base: false,
        }
    }
}

/// A codemark and what the change did to its code.
#[derive(Clone, Debug)]
pub struct Checked {
    pub codemark: Codemark,
    /// The most severe of its anchors' categories.
    pub category: Category,
    /// One per anchor, in the codemark's order.
    pub anchors: Vec<AnchorFate>,
    /// The anchor that decided the category (the one reports show).
    pub decisive: usize,
}

impl Checked {
    pub fn fate(&self) -> &AnchorFate {
        &self.anchors[self.decisive]
    }

    /// Any of its anchors was located from its anchored text.
    pub fn from_text(&self) -> bool {
        self.anchors.iter().any(|a| a.from_text)
    }

    /// Where it is best shown: at head, else where it was at the start, else where it was made.
    pub fn shown_at(&self) -> (&str, LineRange) {
        let f = self.fate();
        match (&f.head, &f.base) {
            (Some(p), _) | (None, Some(p)) => (&p.path, p.lines),
            _ => {
                let a = &self.codemark.anchors[self.decisive].anchor;
                (&a.path, a.lines)
            }
        }
    }

    /// The title, else the first line of the body, at most 100 characters.
    pub fn headline(&self) -> String {
        headline(&self.codemark)
    }
}

/// A codemark's title, else the first non-blank line of its body, cut at 100 characters.
pub fn headline(c: &Codemark) -> String {
    let text = c.title.as_deref().filter(|t| !t.trim().is_empty()).unwrap_or(&c.body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(99).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// Open codemarks that a change can touch, and how many were left out and why.
#[derive(Debug, Default)]
pub struct Selection {
    pub open: Vec<Codemark>,
    pub skipped: Skipped,
}

/// Codemarks left out of a check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub resolved: usize,
    /// Private notes; only counted in with `--include-bookmarks` on the local store.
    pub bookmarks: usize,
    /// Comments in feedback requests: they belong to the request's proposed code, not the branch.
    pub reviews: usize,
}

/// Keeps the open comments, questions and issues (and bookmarks when asked), leaving out
/// resolved ones and feedback-request comments.
pub fn select(all: Vec<Codemark>, include_bookmarks: bool) -> Selection {
    let mut s = Selection::default();
    for c in all {
        if c.status != MarkStatus::Open {
            s.skipped.resolved += 1;
        } else if c.review.is_some() {
            s.skipped.reviews += 1;
        } else if c.kind == Kind::Bookmark && !include_bookmarks {
            s.skipped.bookmarks += 1;
        } else {
            s.open.push(c);
        }
    }
    s
}

/// The change to check: from `start` to `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The merge base of base and head (else base); `None` when base is not in this clone.
    pub start: Option<ObjectId>,
    pub head: ObjectId,
}

/// Checks every anchor of `codemarks` against the change, on `threads` threads (each with its
/// own handle on the repository at `dir`; anchors are split by file so the versions of one file
/// stay on one thread and share reads and diffs). `tick` is called once per anchor. Results
/// are sorted as reports list them: by category, then path, line and id.
pub fn check(
    dir: &Path,
    change: Change,
    codemarks: Vec<Codemark>,
    threads: usize,
    tick: &(dyn Fn() + Sync),
) -> Vec<Checked> {
    let work: Vec<(usize, usize)> =
        codemarks.iter().enumerate().flat_map(|(i, c)| (0..c.anchors.len()).map(move |k| (i, k))).collect();
    let threads = threads.clamp(1, work.len().max(1));
    let mut buckets: Vec<Vec<(usize, usize)>> = (0..threads).map(|_| Vec::new()).collect();
    for &(i, k) in &work {
        let path = &codemarks[i].anchors[k].anchor.path;
        buckets[(crate::anchor::text::hash_str(path) % threads as u64) as usize].push((i, k));
    }
    let marks = &codemarks;
    let done: Vec<Vec<((usize, usize), AnchorFate)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = buckets
            .into_iter()
            .map(|mut bucket| {
                scope.spawn(move || {
                    // Successive versions of one file share git's delta bases and line maps.
                    bucket.sort_by(|&(a, x), &(b, y)| {
                        let (p, q) = (&marks[a].anchors[x].anchor, &marks[b].anchors[y].anchor);
                        (&p.path, &p.commit).cmp(&(&q.path, &q.commit))
                    });
                    let repo = match Repo::discover(dir) {
                        Ok(r) => r,
                        Err(e) => {
                            let why = e.to_string();
                            return bucket
                                .into_iter()
                                .map(|slot| (slot, AnchorFate::unknown(why.clone(), None, false)))
                                .collect();
                        }
                    };
                    let at_start = change.start.map(|s| Locator::new(&repo, Target::Commit(s)));
                    let at_head = Locator::new(&repo, Target::Commit(change.head));
                    bucket
                        .into_iter()
                        .map(|(i, k)| {
                            let fate = fate_of(&repo, change, at_start.as_ref(), &at_head, &marks[i].anchors[k].anchor);
                            tick();
                            ((i, k), fate)
                        })
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a check worker panicked")).collect()
    });
    let mut fates: Vec<Vec<Option<AnchorFate>>> = codemarks.iter().map(|c| vec![None; c.anchors.len()]).collect();
    for ((i, k), fate) in done.into_iter().flatten() {
        fates[i][k] = Some(fate);
    }
    let mut out: Vec<Checked> = codemarks
        .into_iter()
        .zip(fates)
        .map(|(codemark, fates)| {
            let anchors: Vec<AnchorFate> = fates.into_iter().map(|f| f.expect("every anchor was checked")).collect();
            let decisive = (0..anchors.len()).min_by_key(|&k| anchors[k].category).unwrap_or(0);
            let category = anchors.get(decisive).map_or(Category::Unknown, |a| a.category);
            Checked { codemark, category, anchors, decisive }
        })
        .collect();
    out.sort_by(|a, b| {
        let (pa, la) = a.shown_at();
        let (pb, lb) = b.shown_at();
        (a.category, pa, la.start, &a.codemark.id).cmp(&(b.category, pb, lb.start, &b.codemark.id))
    });
    out
}

/// One anchor, relocated to the start and on to head (or straight to head without a start).
fn fate_of(
    repo: &Repo,
    change: Change,
    at_start: Option<&Locator<'_>>,
    at_head: &Locator<'_>,
    anchor: &Anchor,
) -> AnchorFate {
    let (Some(start), Some(at_start)) = (change.start, at_start) else {
        return head_only(at_head, anchor);
    };
    let b = match at_start.locate(anchor) {
        Located::Found(b) => b,
        Located::Unknown(reason) => return AnchorFate::unknown(reason, None, false),
    };
    let from_text = b.via == Via::Text;
    if b.status == Status::Deleted {
        return AnchorFate {
            category: Category::Unchanged,
            base: Some(Place::of(&b)),
            head: None,
            reason: None,
            from_text,
            gone_at_base: true,
        };
    }
    let base = Place::of(&b);
    // A file the change left as it was: nothing to diff.
    if let (Ok(Some(x)), Ok(Some(y))) = (repo.blob_at(start, &b.path), repo.blob_at(change.head, &b.path))
        && x == y
    {
        let head = Place { status: Status::Intact, ..base.clone() };
        return AnchorFate {
            category: Category::Unchanged,
            base: Some(base),
            head: Some(head),
            reason: None,
            from_text,
            gone_at_base: false,
        };
    }
    let on_start = Anchor { commit: start.to_string(), path: b.path.clone(), lines: b.lines, ..Anchor::default() };
    match at_head.locate(&on_start) {
        Located::Found(h) => {
            let category = match h.status {
                Status::Deleted => Category::Deleted,
                Status::Modified => Category::Modified,
                Status::Intact if h.path != b.path || h.via == Via::Search => Category::Moved,
                Status::Intact => Category::Unchanged,
            };
            AnchorFate {
                category,
                base: Some(base),
                head: Some(Place::of(&h)),
                reason: None,
                from_text,
                gone_at_base: false,
            }
        }
        Located::Unknown(reason) => AnchorFate::unknown(reason, Some(base), from_text),
    }
}

/// Without a start commit: the anchor relocated straight to head, reported by its state there.
fn head_only(at_head: &Locator<'_>, anchor: &Anchor) -> AnchorFate {
    let h = match at_head.locate(anchor) {
        Located::Found(h) => h,
        Located::Unknown(reason) => return AnchorFate::unknown(reason, None, false),
    };
    let category = match h.status {
        Status::Deleted => Category::Deleted,
        Status::Modified => Category::Modified,
        Status::Intact if h.path != anchor.path || h.via == Via::Search => Category::Moved,
        Status::Intact if h.via == Via::Text => {
            let kept = at_head
                .file(&h.path)
                .ok()
                .flatten()
                .is_some_and(|f| neighbours_kept(&f.text, h.lines, &anchor.before, &anchor.after));
            if kept { Category::Unchanged } else { Category::Moved }
        }
        Status::Intact => Category::Unchanged,
    };
    AnchorFate {
        category,
        base: None,
        head: Some(Place::of(&h)),
        reason: None,
        from_text: h.via == Via::Text,
        gone_at_base: false,
    }
}

/// Lines around code found from its text alone in which its old neighbours are looked for.
const NEIGHBOURHOOD: usize = 10;

/// Whether code found at `at` in `text` is still among the neighbours it was anchored with:
/// a line of its context before it (after it) is within [`NEIGHBOURHOOD`] lines above (below)
/// it. Context lines that are no longer anywhere in the file (deleted or moved away with their
/// own code) and lines of fewer than three characters (`}`, blank lines) say nothing; with
/// nothing left to go on, it has kept them (only shifted).
fn neighbours_kept(text: &Text, at: LineRange, before: &[String], after: &[String]) -> bool {
    let (s, e) = (at.start as usize - 1, (at.end as usize).min(text.len()));
    let near = |range: std::ops::Range<usize>, line: &str| text.lines(range).any(|l| l.trim() == line);
    let anywhere = |line: &str| text.lines(0..text.len()).any(|l| l.trim() == line);
    let mut telling = 0;
    let context = before
        .iter()
        .map(|l| (l, s.saturating_sub(NEIGHBOURHOOD)..s))
        .chain(after.iter().map(|l| (l, e..(e + NEIGHBOURHOOD).min(text.len()))));
    for (line, window) in context {
        let line = line.trim();
        if line.len() < 3 {
            continue;
        }
        if near(window, line) {
            return true;
        }
        if anywhere(line) {
            telling += 1;
        }
    }
    telling == 0
}

/// Both ends of the change as given, and what they resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rev {
    /// As given on the command line (`origin/main`, a sha).
    pub rev: String,
    /// The commit; `None` when it is not in this clone.
    pub commit: Option<String>,
}

/// Everything a report says: pure data, rendered by [`report`].
#[derive(Clone, Debug)]
pub struct Report {
    pub base: Rev,
    pub head: Rev,
    /// The commit the change was compared from (the merge base, else base); `None` without base.
    pub start: Option<String>,
    pub source: Source,
    pub skipped: Skipped,
    /// Every open codemark checked, sorted as reports list them.
    pub checked: Vec<Checked>,
    /// Things the reader should know (base missing, codemarks the server sent that were unreadable).
    pub notes: Vec<String>,
}

impl Report {
    pub fn count(&self, c: Category) -> usize {
        self.checked.iter().filter(|x| x.category == c).count()
    }

    /// Codemarks whose code the change deleted, modified or moved.
    pub fn touched(&self) -> usize {
        self.checked.iter().filter(|x| x.category.touched()).count()
    }

    /// Codemarks reports list one by one: all but the unchanged.
    pub fn listed(&self) -> impl Iterator<Item = &Checked> {
        self.checked.iter().filter(|x| x.category != Category::Unchanged)
    }

    /// Codemarks with an anchor located from its text (its commit not in this clone).
    pub fn from_text(&self) -> usize {
        self.checked.iter().filter(|x| x.from_text()).count()
    }

    /// Unchanged codemarks whose code was already gone at the start of the change.
    pub fn gone_at_base(&self) -> usize {
        self.checked.iter().filter(|x| x.category == Category::Unchanged && x.fate().gone_at_base).count()
    }

    /// A stable reference back to a codemark: on the team server, its API address (readable
    /// with a team token); from the local store, nothing beyond its id.
    pub fn link(&self, c: &Codemark) -> Option<String> {
        match &self.source {
            Source::Server { url } => Some(format!("{url}{}/codemarks/{}", crate::api::PREFIX, c.id)),
            Source::Local { .. } => None,
        }
    }

    /// The exit code the issue documents: 1 when `fail_on` names a category found, else 0.
    pub fn exit_code(&self, fail_on: Option<FailOn>) -> u8 {
        match fail_on {
            Some(f) if self.checked.iter().any(|c| f.fails(c.category)) => 1,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_beside_the_code_tells_a_shift_from_a_move() {
        let text = Text::new("fn a() {\n    one();\n}\n\nfn b() {\n    two();\n}\n");
        let before = vec!["}".to_owned(), String::new(), "fn b() {".to_owned()];
        let after = vec!["}".to_owned()];
        // `two();` at line 6, right under `fn b() {` as it was anchored.
        assert!(neighbours_kept(&text, LineRange::new(6, 6), &before, &after));
        // Code found far from `fn b() {`, which is still in the file: it was moved there.
        let far = Text::new(format!("fn b() {{\n{}    two();\n}}\n", "    x();\n".repeat(20)));
        assert!(!neighbours_kept(&far, LineRange::new(22, 22), &before, &after));
        // Its neighbour is gone from the file: nothing to tell by, so not a move.
        assert!(neighbours_kept(&far, LineRange::new(22, 22), &["fn gone() {".to_owned()], &[]));
        // Nothing meaningful to compare: kept.
        assert!(neighbours_kept(&text, LineRange::new(2, 2), &["}".to_owned()], &[]));
    }

    #[test]
    fn fail_on_modified_also_fails_on_deleted() {
        assert!(FailOn::Modified.fails(Category::Deleted));
        assert!(FailOn::Modified.fails(Category::Modified));
        assert!(!FailOn::Modified.fails(Category::Moved));
        assert!(FailOn::Deleted.fails(Category::Deleted));
        assert!(!FailOn::Deleted.fails(Category::Modified));
        assert!("moved".parse::<FailOn>().is_err());
    }

    #[test]
    fn headlines_are_the_title_or_the_first_line() {
        let mut c = Codemark {
            id: "c".into(),
            repo: "r".into(),
            kind: Kind::Question,
            title: None,
            body: "\n  Why cache this forever?\nMore text".into(),
            author: "a".into(),
            status: MarkStatus::Open,
            anchors: vec![],
            replies: vec![],
            created: 0,
            updated: 0,
            shared: None,
            review: None,
        };
        assert_eq!(headline(&c), "Why cache this forever?");
        c.title = Some("Caching".into());
        assert_eq!(headline(&c), "Caching");
        c.title = Some("x".repeat(150));
        assert_eq!(headline(&c).chars().count(), 100);
    }
}
