//! Following a file through renames between an anchor's commit and the target.
//!
//! git2's rename detection compares every deleted file with every added one, which is slow
//! over long ranges (see DEPENDENCIES.md). We only ever need one path at a time, so:
//! 1. If the path still exists at the target, it is the same file (git's own view).
//! 2. Otherwise compare that one file with the files the range added: an identical blob first,
//!    then content similarity (shared lines, at least 50%, as `git diff -M` defaults to),
//!    files with the same name first.
//! 3. If the content drifted too far for a direct match, find the commit where the path
//!    disappeared (bisecting the range, oldest first) and detect the rename in that commit
//!    alone, then continue from there: several renames are followed one by one.
//!
//! Answers are cached per (commit, path, target), and per (blob, path, target): one version of
//! a file read at many commits is followed once.

use super::{Changed, GitError, ObjectId, Repo, Target};

/// Share of lines two versions must have in common to be one file renamed.
const RENAME_SIMILARITY: f32 = 0.5;
/// Renames followed one after another before giving up.
const MAX_RENAMES: usize = 32;
/// Commits examined when looking for the one that renamed a file.
const MAX_WALK: usize = 500_000;
/// Added files compared by content for one rename.
const MAX_CANDIDATES: usize = 2_000;
/// Past this many candidates, they are compared nearest in size first.
const SIZE_SORT_FROM: usize = 64;

impl Repo {
    /// The path `path` (as of commit `from`) has at `target`, following renames; `None` when
    /// the file was deleted.
    pub fn follow(&self, from: ObjectId, path: &str, target: Target) -> Result<Option<String>, GitError> {
        self.follow_at_depth(from, path, target, 0)
    }

    fn follow_at_depth(
        &self,
        from: ObjectId,
        path: &str,
        target: Target,
        depth: usize,
    ) -> Result<Option<String>, GitError> {
        if self.exists(target, path)? {
            return Ok(Some(path.to_owned()));
        }
        let key = (from, path.to_owned(), target);
        if let Some(hit) = self.renames.borrow().get(&key) {
            return Ok(hit.clone());
        }
        let blob = self.blob_at(from, path)?;
        let by_blob = blob.map(|b| (b, path.to_owned(), target));
        if let Some(hit) = by_blob.as_ref().and_then(|k| self.renames_by_blob.borrow().get(k).cloned()) {
            self.renames.borrow_mut().insert(key, hit.clone());
            return Ok(hit);
        }
        let found = if depth >= MAX_RENAMES {
            None
        } else {
            match target {
                Target::Commit(to) => self.follow_commits(from, path, to, depth)?,
                Target::Worktree => match self.head() {
                    // Through history to HEAD first, then HEAD to the files on disk.
                    Some(head) if head != from => {
                        match self.follow_at_depth(from, path, Target::Commit(head), depth)? {
                            Some(p) if self.exists(Target::Worktree, &p)? => Some(p),
                            Some(p) => self.renamed_in(head, &p, Target::Worktree)?,
                            None => None,
                        }
                    }
                    _ => self.renamed_in(from, path, Target::Worktree)?,
                },
            }
        };
        self.renames.borrow_mut().insert(key, found.clone());
        if let Some(k) = by_blob {
            self.renames_by_blob.borrow_mut().insert(k, found.clone());
        }
        Ok(found)
    }

    fn follow_commits(
        &self,
        from: ObjectId,
        path: &str,
        to: ObjectId,
        depth: usize,
    ) -> Result<Option<String>, GitError> {
        if let Some(p) = self.renamed_in(from, path, Target::Commit(to))? {
            return Ok(Some(p));
        }
        // Too much drift for one comparison: find the commit that removed the path.
        let chain = self.range_oldest_first(from, to)?;
        let k = chain.partition_point(|&c| self.blob_at(c, path).ok().flatten().is_some());
        let Some(&gone_in) = chain.get(k) else { return Ok(None) };
        let before = if k == 0 { from } else { chain[k - 1] };
        let parent =
            self.first_parent(gone_in).filter(|&p| self.blob_at(p, path).ok().flatten().is_some()).unwrap_or(before);
        match self.renamed_in(parent, path, Target::Commit(gone_in))? {
            Some(next) => self.follow_at_depth(gone_in, &next, Target::Commit(to), depth + 1),
            None => Ok(None),
        }
    }

    /// Commits in `from..to`, oldest first.
    fn range_oldest_first(&self, from: ObjectId, to: ObjectId) -> Result<Vec<ObjectId>, GitError> {
        let err = |e: git2::Error| super::read_err(format!("history {}..{}", from.short(), to.short()), e);
        let mut walk = self.repo.revwalk().map_err(err)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE).map_err(err)?;
        walk.push(to.0).map_err(err)?;
        walk.hide(from.0).map_err(err)?;
        let mut out = Vec::new();
        for oid in walk.take(MAX_WALK) {
            out.push(ObjectId(oid.map_err(err)?));
        }
        Ok(out)
    }

    fn first_parent(&self, commit: ObjectId) -> Option<ObjectId> {
        let c = self.repo.find_commit(commit.0).ok()?;
        c.parent_id(0).ok().map(ObjectId)
    }

    /// The file that `path` (at `from`) became in `target`, judged by content among the files
    /// added since: identical first, then the most similar above the threshold.
    pub fn renamed_in(&self, from: ObjectId, path: &str, target: Target) -> Result<Option<String>, GitError> {
        let Some(blob) = self.blob_at(from, path)? else { return Ok(None) };
        let changes = self.changes(from, target)?;
        let added: Vec<&Changed> = changes.iter().filter(|c| c.old.is_none()).collect();
        if let Some(same) = added.iter().find(|c| c.new == Some(blob)) {
            return Ok(Some(same.path.clone()));
        }
        let old = self.text(blob, path)?;
        if old.is_binary() || old.is_empty() {
            return Ok(None);
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let same_name = |c: &&&Changed| c.path.rsplit('/').next() == Some(name);
        let (mut first, mut rest): (Vec<&Changed>, Vec<&Changed>) = added.iter().partition(same_name);
        // With many candidates, files of similar size are the likelier renames: compare those
        // first, up to a bound.
        if rest.len() > SIZE_SORT_FROM {
            let size = self.blob_size(blob).unwrap_or(0) as i64;
            rest.sort_by_key(|c| c.new.and_then(|id| self.blob_size(id)).map_or(i64::MAX, |s| (s as i64 - size).abs()));
        }
        first.extend(rest);
        let mut best: Option<(f32, &str)> = None;
        for c in first.into_iter().take(MAX_CANDIDATES) {
            let Some(file) = (match c.new {
                Some(id) => Some(super::File { id, text: self.text(id, &c.path)? }),
                None => self.file(target, &c.path)?,
            }) else {
                continue;
            };
            let s = old.shared_lines(&file.text);
            if s >= RENAME_SIMILARITY && best.is_none_or(|(b, _)| s > b) {
                best = Some((s, &c.path));
            }
        }
        Ok(best.map(|(_, p)| p.to_owned()))
    }
}
