//! Where codemarks are: anchoring a selection when a codemark is made, placing anchors in the
//! working tree or in an editor buffer, and turning anchors on uncommitted lines into anchors
//! on the commit that now holds them.
//!
//! Shared by the language server and the command line; knows git (through [`crate::git`]) and
//! the anchor engine, never the store's SQL or the editor's protocol.

use std::collections::HashMap;
use std::sync::Arc;

use crate::anchor::linemap::Fate;
use crate::anchor::{Anchor, CONTEXT_LINES, LineMap, LineRange, Relocation, Sources, Status, Text, relocate};
use crate::git::{GitError, ObjectId, Repo, Target};
use crate::locate::{Located, Locator};

use super::{CachedLocation, StoredAnchor, new_id};

/// The commit id a pending anchor records when the repository has no commit yet.
pub const NO_COMMIT: &str = "0000000000000000000000000000000000000000";

/// The key that names a repository in the store: its primary remote, else its first root
/// commit, else its folder. Clones of one repository share it, so their codemarks meet.
pub fn repo_key(repo: &Repo) -> Result<String, GitError> {
    let id = repo.identity()?;
    if let Some(primary) = id.primary {
        return Ok(primary);
    }
    if let Some(root) = id.roots.first() {
        return Ok(format!("root:{root}"));
    }
    let dir = repo.root();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    Ok(format!("path:{}", dir.display()))
}

/// Who is writing, as a codemark or reply records it: git's user name and email in this
/// repository, else the login name.
pub fn author(repo: Option<&Repo>) -> String {
    repo.and_then(Repo::user).or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "me".into())
}

/// Why a selection cannot be anchored.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("{path} is a binary file; codemarks go on lines of text")]
    Binary { path: String },
    #[error("lines {lines} are past the end of {path}, which has {len} lines")]
    PastEnd { path: String, lines: LineRange, len: usize },
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Anchors `lines` (1-based, of `text`, the file at `path` as the user sees it: on disk or in
/// an editor buffer). Lines that HEAD holds unchanged anchor to HEAD with HEAD's line numbers;
/// otherwise the anchor is pending: the base commit (HEAD) plus the anchored text, resolved to
/// a real commit once a commit holds those lines ([`promote_pending`]).
pub fn anchor_selection(repo: &Repo, path: &str, text: &Text, lines: LineRange) -> Result<StoredAnchor, AnchorError> {
    if text.is_binary() {
        return Err(AnchorError::Binary { path: path.to_owned() });
    }
    if lines.start == 0 || lines.end as usize > text.len().max(1) {
        return Err(AnchorError::PastEnd { path: path.to_owned(), lines, len: text.len() });
    }
    let (s, e) = (lines.start as usize - 1, lines.end as usize);
    let selected = text.lines(s..e.min(text.len())).collect::<Vec<_>>().join("\n");
    let head = repo.head();
    if let Some(h) = head
        && let Some(file) = repo.file(Target::Commit(h), path)?
        && let Some(at_head) = committed_lines(text, &file.text, lines)
    {
        let anchor = with_context(
            Anchor { commit: h.to_string(), path: path.to_owned(), lines: at_head, ..Anchor::default() },
            &file.text,
            selected,
        );
        return Ok(StoredAnchor { id: new_id(), anchor, pending: false });
    }
    let commit = head.map_or_else(|| NO_COMMIT.to_owned(), |h| h.to_string());
    let anchor = with_context(Anchor { commit, path: path.to_owned(), lines, ..Anchor::default() }, text, selected);
    Ok(StoredAnchor { id: new_id(), anchor, pending: true })
}

/// Where `lines` of `text` are in `committed`, when every one of them is there unchanged and
/// in one piece.
fn committed_lines(text: &Text, committed: &Text, lines: LineRange) -> Option<LineRange> {
    if committed.is_binary() || lines.end as usize > text.len() {
        return None;
    }
    let map = LineMap::new(text, committed);
    let first = match map.fate(lines.start - 1, text, committed) {
        Fate::Kept(j) => j,
        _ => return None,
    };
    for (i, l) in (lines.start - 1..lines.end).enumerate() {
        if map.fate(l, text, committed) != Fate::Kept(first + i as u32) {
            return None;
        }
    }
    Some(LineRange::from_zero(first, first + lines.end - lines.start))
}

fn with_context(mut anchor: Anchor, text: &Text, selected: String) -> Anchor {
    let (s, e) = (anchor.lines.start as usize - 1, anchor.lines.end as usize);
    let e = e.min(text.len());
    anchor.before = text.lines(s.saturating_sub(CONTEXT_LINES)..s).map(str::to_owned).collect();
    anchor.after = text.lines(e..(e + CONTEXT_LINES).min(text.len())).map(str::to_owned).collect();
    anchor.text = Some(selected);
    anchor
}

/// Places anchors in one file's text (an editor buffer, or the file on disk) at `path`, sharing
/// one line diff per version of the file the anchors were made on. Nothing else is searched:
/// which anchors belong to this file is decided by a whole-tree pass ([`locate_in_worktree`]).
pub fn locate_in_text(
    repo: &Repo,
    anchors: &[&StoredAnchor],
    path: &str,
    text: &Text,
) -> Vec<Result<Relocation, String>> {
    let mut maps: HashMap<ObjectId, (Arc<Text>, LineMap)> = HashMap::new();
    anchors
        .iter()
        .map(|sa| {
            let old = base_blob(repo, sa).map_err(|e| e.to_string())?;
            let new = Some((path, text));
            let found = match old {
                Some((blob, path)) => {
                    if let std::collections::hash_map::Entry::Vacant(v) = maps.entry(blob) {
                        let old = repo.text(blob, &path).map_err(|e| e.to_string())?;
                        let map = LineMap::new(&old, text);
                        v.insert((old, map));
                    }
                    let (old, map) = &maps[&blob];
                    relocate(&sa.anchor, &Sources { old: Some(old), new, map: Some(map), others: None })
                }
                None => relocate(&sa.anchor, &Sources { old: None, new, map: None, others: None }),
            };
            found.map_err(|e| e.to_string())
        })
        .collect()
}

/// The blob (and its path) an anchor's line numbers refer to; `None` for pending anchors and
/// anchors whose commit or file is missing here (they are placed by their text).
fn base_blob(repo: &Repo, sa: &StoredAnchor) -> Result<Option<(ObjectId, String)>, GitError> {
    if sa.pending {
        return Ok(None);
    }
    let Ok(Some(commit)) = repo.commit(&sa.anchor.commit) else { return Ok(None) };
    Ok(repo.blob_at(commit, &sa.anchor.path)?.map(|b| (b, sa.anchor.path.clone())))
}

/// A remembered-answers lookup and record, so a pass does not recompute what it knew: keyed
/// by (anchor id, blob id of the file it was found in).
pub trait LocationCache {
    fn get(&self, anchor: &str, blob: &str) -> Option<CachedLocation>;
    fn put(&self, anchor: &str, blob: &str, loc: &CachedLocation);
}

/// The store remembers answers; a failing cache is only slower.
impl LocationCache for crate::store::Store {
    fn get(&self, anchor: &str, blob: &str) -> Option<CachedLocation> {
        self.cached_location(anchor, blob).ok().flatten()
    }
    fn put(&self, anchor: &str, blob: &str, loc: &CachedLocation) {
        if self.read_only() {
            return;
        }
        if let Err(e) = self.cache_location(anchor, blob, loc) {
            tracing::debug!("remembering where anchor {anchor} is: {e}");
        }
    }
}

/// Where each anchor is in the working tree, following renames and code that moved between
/// files. An anchor found intact in a file version the cache knows is not relocated again.
/// `tick` is called once per anchor, for progress.
pub fn locate_in_worktree(
    repo: &Repo,
    anchors: &[&StoredAnchor],
    cache: &dyn LocationCache,
    tick: &dyn Fn(),
) -> HashMap<String, Located> {
    let locator = Locator::new(repo, Target::Worktree);
    let mut out = HashMap::with_capacity(anchors.len());
    for sa in anchors {
        tick();
        let known = locator.file(&sa.anchor.path).ok().flatten().and_then(|f| {
            let loc = cache.get(&sa.id, &f.id.to_string())?;
            (loc.status == Status::Intact && loc.path == sa.anchor.path).then_some(loc)
        });
        if let Some(loc) = known {
            let rel =
                Relocation { status: loc.status, path: loc.path, lines: loc.lines, via: crate::anchor::Via::Diff };
            out.insert(sa.id.clone(), Located::Found(rel));
            continue;
        }
        let located = locator.locate(&sa.anchor);
        if let Located::Found(rel) = &located
            && let Ok(Some(f)) = locator.file(&rel.path)
        {
            let loc = CachedLocation { status: rel.status, path: rel.path.clone(), lines: rel.lines };
            cache.put(&sa.id, &f.id.to_string(), &loc);
        }
        out.insert(sa.id.clone(), located);
    }
    out
}

/// Pending anchors whose lines HEAD now holds, unchanged: rewritten to HEAD's commit and line
/// numbers. Returns the rewritten anchors (the caller stores them).
pub fn promote_pending(repo: &Repo, anchors: &[&StoredAnchor]) -> Vec<StoredAnchor> {
    let Some(head) = repo.head() else { return Vec::new() };
    let locator = Locator::new(repo, Target::Commit(head));
    let mut out = Vec::new();
    for sa in anchors.iter().filter(|a| a.pending) {
        let mut probe = sa.anchor.clone();
        // Placed by its text alone: the base commit's lines are not these.
        probe.commit = NO_COMMIT.to_owned();
        let Located::Found(rel) = locator.locate(&probe) else { continue };
        if rel.status != Status::Intact {
            continue;
        }
        let Ok(Some(file)) = repo.file(Target::Commit(head), &rel.path) else { continue };
        let text = sa.anchor.text.clone().unwrap_or_default();
        let anchor = with_context(
            Anchor { commit: head.to_string(), path: rel.path.clone(), lines: rel.lines, ..Anchor::default() },
            &file.text,
            text,
        );
        out.push(StoredAnchor { id: sa.id.clone(), anchor, pending: false });
    }
    out
}
