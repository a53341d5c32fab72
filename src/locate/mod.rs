//! Relocating anchors in a repository: the glue between the git reads and the anchor engine.
//!
//! A [`Locator`] serves one (repository, target) pair and keeps what many anchors share: one
//! line map per (old blob, new blob) pair, the files each commit range added or changed, and, for
//! anchors whose commit is missing, the target's whole tree. Anchors on a file that did not
//! change between their commit and the target cost one cached lookup.
//!
//! [`batch`] is the stable JSON Lines interface of `marginalia locate --batch`.

pub mod batch;
mod walk;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use crate::anchor::{Anchor, Files, LineMap, Relocation, Sources, Status, Text, Via, relocate};
use crate::git::{File, GitError, ObjectId, Repo, Target};

/// Files read when searching a whole tree for an anchor whose commit is missing.
const MAX_TREE_FILES: usize = 50_000;
/// Larger files are skipped by whole-tree and moved-code searches.
const MAX_SEARCH_FILE_BYTES: usize = 2 << 20;
/// Files a commit range added or changed that are searched for code that left its file.
const MAX_MOVE_TARGETS: usize = 2_000;

/// The answer for one anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    Found(Relocation),
    /// It cannot be located at all; the reason says why and, where it helps, what to do.
    Unknown(String),
}

/// Why an anchor could not be located.
enum Why {
    Unknown(String),
    Git(GitError),
}

impl From<GitError> for Why {
    fn from(e: GitError) -> Why {
        Why::Git(e)
    }
}

/// Relocates anchors of one repository to one target, sharing work between them.
pub struct Locator<'r> {
    repo: &'r Repo,
    target: Target,
    maps: RefCell<HashMap<(ObjectId, ObjectId), Arc<LineMap>>>,
    moved_into: RefCell<HashMap<ObjectId, Files>>,
    whole_tree: OnceCell<Files>,
    /// Working-tree files read so far: the disk is read and hashed once per path and pass.
    on_disk: RefCell<HashMap<String, Option<File>>>,
    /// What each step of history wrote, for lines lost in it (see `walk`).
    written: RefCell<HashMap<(ObjectId, Target), Arc<walk::Written>>>,
    /// Lines two versions share at their start and end, per pair of versions.
    edges: RefCell<HashMap<(ObjectId, ObjectId), (u32, u32)>>,
}

impl<'r> Locator<'r> {
    pub fn new(repo: &'r Repo, target: Target) -> Locator<'r> {
        Locator {
            repo,
            target,
            maps: RefCell::default(),
            moved_into: RefCell::default(),
            whole_tree: OnceCell::new(),
            on_disk: RefCell::default(),
            written: RefCell::default(),
            edges: RefCell::default(),
        }
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// Tells the locator which anchors' commits are coming, so the history between them and
    /// the target is walked once for all of them rather than once each. Optional; unknown or
    /// missing commits are ignored.
    pub fn prepare<'a>(&self, commits: impl IntoIterator<Item = &'a str>) {
        let end = match self.target {
            Target::Commit(t) => Some(t),
            Target::Worktree => self.repo.head(),
        };
        let Some(end) = end else { return };
        let mut ids: Vec<ObjectId> = commits.into_iter().filter_map(|c| self.repo.commit(c).ok().flatten()).collect();
        ids.sort_unstable();
        ids.dedup();
        if let Err(e) = self.repo.prepare_routes(&ids, end) {
            tracing::debug!("preparing routes: {e}");
        }
    }

    /// How many line diffs were computed: one per distinct (old blob, new blob) pair.
    pub fn diffs_computed(&self) -> usize {
        self.maps.borrow().len()
    }

    /// Where `anchor` is at the target.
    pub fn locate(&self, anchor: &Anchor) -> Located {
        match self.try_locate(anchor) {
            Ok(Ok(found)) => Located::Found(found),
            Ok(Err(unlocatable)) => Located::Unknown(unlocatable.to_string()),
            Err(Why::Unknown(reason)) => Located::Unknown(reason),
            Err(Why::Git(e)) => Located::Unknown(e.to_string()),
        }
    }

    fn try_locate(&self, anchor: &Anchor) -> Result<Result<Relocation, crate::anchor::Unlocatable>, Why> {
        let Some(commit) = self.repo.commit(&anchor.commit).map_err(Why::Unknown)? else {
            if anchor.text.is_none() {
                return Err(Why::Unknown(format!(
                    "commit {} is not in this repository (a shallow clone, or history rewritten since?) and \
                     the case has no `text` to search for: fetch the commit or send the anchored text",
                    anchor.commit
                )));
            }
            return Ok(self.by_text(anchor)?);
        };
        let Some(old_blob) = self.repo.blob_at(commit, &anchor.path)? else {
            if anchor.text.is_some() {
                return Ok(self.by_text(anchor)?);
            }
            return Err(Why::Unknown(format!("{} does not exist at commit {}", anchor.path, commit.short())));
        };
        let old = self.repo.text(old_blob, &anchor.path)?;
        if let Some(walked) = self.try_walk(anchor, commit, &old)? {
            return Ok(walked);
        }
        let new_path = self.repo.follow(commit, &anchor.path, self.target)?;
        let new = match &new_path {
            Some(p) => self.file(p)?,
            None => None,
        };
        let map = new.as_ref().map(|n| self.line_map(old_blob, &old, n.id, &n.text));
        let others = || self.moved_into(commit);
        let src = Sources {
            old: Some(&old),
            new: new_path.as_deref().zip(new.as_ref()).map(|(p, n)| (p, &*n.text)),
            map: map.as_deref(),
            others: Some(&others),
        };
        Ok(relocate(anchor, &src))
    }

    /// Follows the anchor through history when its lines are the commit's and a route exists.
    fn try_walk(
        &self,
        anchor: &Anchor,
        commit: ObjectId,
        old: &Text,
    ) -> Result<Option<Result<Relocation, crate::anchor::Unlocatable>>, GitError> {
        let range = anchor.lines;
        if old.is_binary() {
            return Ok(Some(Err(crate::anchor::Unlocatable::Binary { path: anchor.path.clone() })));
        }
        if range.end as usize > old.len() {
            // Past the end of the commit's file: only its text can place it (the two ends).
            return Ok(None);
        }
        if let Some(text) = &anchor.text {
            let committed: Vec<&str> = old.lines(range.start as usize - 1..range.end as usize).collect();
            if crate::anchor::text::split_lines(text) != committed {
                return Ok(None);
            }
        }
        // The same lines, once and only once at both ends, in the same file: nothing to follow.
        if let Some(new) = self.file(&anchor.path)?
            && !new.text.is_binary()
            && let Some(lines) = crate::anchor::trail::unmistakable(old, range, &new.text)
        {
            return Ok(Some(Ok(Relocation {
                status: Status::Intact,
                path: anchor.path.clone(),
                lines,
                via: Via::Diff,
            })));
        }
        self.walk(anchor, commit, old)
    }

    /// No usable commit: search the anchored text at the same path, then everywhere.
    fn by_text(&self, anchor: &Anchor) -> Result<Result<Relocation, crate::anchor::Unlocatable>, GitError> {
        let new = self.file(&anchor.path)?;
        let others = || self.whole_tree();
        let src = Sources {
            old: None,
            new: new.as_ref().map(|n| (anchor.path.as_str(), &*n.text)),
            map: None,
            others: Some(&others),
        };
        Ok(relocate(anchor, &src))
    }

    /// The target's file at `path`. Commits are cached by the repository; working-tree files
    /// here, so many anchors on one file read it once.
    pub fn file(&self, path: &str) -> Result<Option<File>, GitError> {
        if self.target != Target::Worktree {
            return self.repo.file(self.target, path);
        }
        if let Some(f) = self.on_disk.borrow().get(path) {
            return Ok(f.clone());
        }
        let f = self.repo.file(self.target, path)?;
        self.on_disk.borrow_mut().insert(path.to_owned(), f.clone());
        Ok(f)
    }

    /// The line diff from `old` to `new`, computed once per pair of versions and shared by
    /// every anchor on them.
    fn line_map(&self, old_id: ObjectId, old: &Text, new_id: ObjectId, new: &Text) -> Arc<LineMap> {
        let key = (old_id, new_id);
        if let Some(m) = self.maps.borrow().get(&key) {
            return m.clone();
        }
        let map = Arc::new(LineMap::new(old, new));
        self.maps.borrow_mut().insert(key, map.clone());
        map
    }

    /// Files that `commit..target` added or changed: where code leaving its file can have
    /// gone. (Over a long range, a file that received code may also have lost more than it
    /// gained, so "grew" is not a safe filter.)
    fn moved_into(&self, commit: ObjectId) -> Files {
        if let Some(f) = self.moved_into.borrow().get(&commit) {
            return f.clone();
        }
        let mut files = Vec::new();
        if let Ok(changes) = self.repo.changes(commit, self.target) {
            for c in changes.iter() {
                if files.len() >= MAX_MOVE_TARGETS {
                    break;
                }
                if let Some(file) = self.readable(&c.path) {
                    files.push((c.path.clone(), file));
                }
            }
        }
        let files: Files = Arc::new(files);
        self.moved_into.borrow_mut().insert(commit, files.clone());
        files
    }

    /// Every readable text file of the target, read once per locator and shared (the search
    /// skips the anchor's own file itself).
    fn whole_tree(&self) -> Files {
        self.whole_tree
            .get_or_init(|| {
                let paths = self.repo.all_paths(self.target).unwrap_or_default();
                let files =
                    paths.into_iter().take(MAX_TREE_FILES).filter_map(|p| self.readable(&p).map(|t| (p, t))).collect();
                Arc::new(files)
            })
            .clone()
    }

    fn readable(&self, path: &str) -> Option<Arc<Text>> {
        let file = self.file(path).ok()??;
        (!file.text.is_binary() && file.text.as_str().len() <= MAX_SEARCH_FILE_BYTES).then_some(file.text)
    }
}
