//! Review threads on the working copy: each thread's lines at the commit they refer to,
//! relocated with the anchor engine to the working tree (or an editor buffer), so a comment made
//! on an older commit shows at the right line after the code moved on. And the other way: lines
//! selected in the working copy, as lines of the pull request's head commit, for a new comment.
//!
//! Blocking (git): call from `spawn_blocking` or a plain thread.

use crate::anchor::{Anchor, LineMap, LineRange, Relocation, Sources, Status, Text, relocate};
use crate::codemark::{StoredAnchor, locate_in_text};
use crate::git::{Repo, Target};
use crate::locate::{Located, Locator};

use serde_json::{Value, json};

use super::Thread;

/// Where a thread is in the working copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Where {
    /// Its lines, relocated: `intact`, `modified` or `deleted` (then where they used to be).
    Found(Relocation),
    /// On a whole file, not on lines.
    File(String),
    /// On the whole pull request.
    General,
    /// It cannot be placed; the reason says why (its commit is not here, say).
    Unknown(String),
}

impl Where {
    /// `intact`, `modified`, `deleted`, `file`, `general` or `unknown`.
    pub fn status(&self) -> &'static str {
        match self {
            Where::Found(r) => r.status.as_str(),
            Where::File(_) => "file",
            Where::General => "general",
            Where::Unknown(_) => "unknown",
        }
    }

    /// The path it is on now, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            Where::Found(r) => Some(&r.path),
            Where::File(p) => Some(p),
            _ => None,
        }
    }
}

/// The anchor a thread's lines make: lines of `path` at `commit`, with the commented text when
/// the provider gave it (so a thread whose commit is missing here is found by its text).
pub fn anchor_of(t: &Thread) -> Option<Anchor> {
    let (path, lines) = (t.path.clone()?, t.lines?);
    let commit = t.commit.clone().unwrap_or_else(|| crate::codemark::NO_COMMIT.to_owned());
    Some(Anchor { commit, path, lines, text: t.anchored_text.clone(), before: Vec::new(), after: Vec::new() })
}

/// Where each thread is in the working tree, in order.
pub fn in_worktree(repo: &Repo, threads: &[Thread]) -> Vec<Where> {
    let locator = Locator::new(repo, Target::Worktree);
    threads
        .iter()
        .map(|t| match (anchor_of(t), &t.path) {
            (Some(a), _) => match locator.locate(&a) {
                Located::Found(r) => Where::Found(r),
                Located::Unknown(why) => Where::Unknown(why),
            },
            (None, Some(p)) => Where::File(p.clone()),
            (None, None) => Where::General,
        })
        .collect()
}

/// Where the threads whose code is now in `path` are in `text` (an editor buffer of that file):
/// `worktree` is [`in_worktree`]'s answer, which says which threads belong to the file.
pub fn in_text(
    repo: &Repo,
    threads: &[Thread],
    worktree: &[Where],
    path: &str,
    text: &Text,
) -> Vec<Option<Relocation>> {
    let here: Vec<usize> =
        (0..threads.len()).filter(|&i| worktree.get(i).and_then(Where::path) == Some(path)).collect();
    let anchors: Vec<StoredAnchor> = here
        .iter()
        .filter_map(|&i| {
            anchor_of(&threads[i]).map(|anchor| StoredAnchor { id: threads[i].id.clone(), anchor, pending: false })
        })
        .collect();
    let refs: Vec<&StoredAnchor> = anchors.iter().collect();
    let mut found = locate_in_text(repo, &refs, path, text).into_iter();
    let mut out = vec![None; threads.len()];
    for i in here {
        if anchor_of(&threads[i]).is_some() {
            out[i] = found.next().and_then(Result::ok);
        }
    }
    out
}

/// `line 7` or `lines 7-9`.
fn lines_word(l: LineRange) -> String {
    if l.start == l.end { format!("line {}", l.start) } else { format!("lines {l}") }
}

/// Lines selected in the working copy (`text`, the file at `path` as the user sees it), as the
/// same lines of the file at `commit` (a pull request's head), when every one of them is there
/// unchanged; otherwise a message saying why a comment there would land on other code.
pub fn lines_at_commit(
    repo: &Repo,
    commit: &str,
    path: &str,
    text: &Text,
    lines: LineRange,
) -> Result<LineRange, String> {
    let short = &commit[..commit.len().min(12)];
    let id = match repo.commit(commit) {
        Ok(Some(id)) => id,
        Ok(None) => {
            return Err(format!(
                "the pull request's head commit {short} is not in this repository: `git fetch` it first, so the \
                 lines can be matched"
            ));
        }
        Err(e) => return Err(e),
    };
    let at_head = repo.file(Target::Commit(id), path).map_err(|e| e.to_string())?;
    let Some(at_head) = at_head else {
        return Err(format!("{path} is not in the pull request's head commit {short}: push it first"));
    };
    if lines.start == 0 || lines.end as usize > text.len() {
        return Err(format!("{} past the end of {path}, which has {} lines", lines_word(lines), text.len()));
    }
    let selected = text.lines(lines.start as usize - 1..lines.end as usize).collect::<Vec<_>>().join("\n");
    let anchor =
        Anchor { commit: String::new(), path: path.to_owned(), lines, text: Some(selected), ..Anchor::default() };
    let map = LineMap::new(text, &at_head.text);
    let src = Sources { old: Some(text), new: Some((path, &at_head.text)), map: Some(&map), others: None };
    match relocate(&anchor, &src) {
        Ok(r) if r.status == Status::Intact && r.path == path => Ok(r.lines),
        Ok(r) if r.status == Status::Deleted => Err(format!(
            "{} of {path} {} not in the pull request's head commit {short} (new or changed here): commit and push \
             first",
            lines_word(lines),
            if lines.start == lines.end { "is" } else { "are" }
        )),
        Ok(r) => Err(format!(
            "{} of {path} differ from the pull request's head commit {short} (there: {}, {}): commit and push first, \
             or select lines that are the same there",
            lines_word(lines),
            lines_word(r.lines),
            r.status
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The stable JSON of a thread placed in the working copy (`pr comments --json`, the language
/// server): the thread, `original` (its commit, path and lines as the provider gave them),
/// `anchorStatus`, and the current `path`, `start`, `end` when placed, or a `reason`.
pub fn placed_json(t: &Thread, w: &Where) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    v["original"] = json!({
        "commit": t.commit, "path": t.path,
        "start": t.lines.map(|l| l.start), "end": t.lines.map(|l| l.end),
    });
    v["anchorStatus"] = json!(w.status());
    v["path"] = json!(w.path().or(t.path.as_deref()));
    if let Where::Found(r) = w {
        v["start"] = json!(r.lines.start);
        v["end"] = json!(r.lines.end);
    }
    if let Where::Unknown(why) = w {
        v["reason"] = json!(why);
    }
    v
}
