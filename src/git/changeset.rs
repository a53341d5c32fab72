//! What a feedback request needs from git: a base the reviewers have (the merge-base with the
//! upstream branch, else with the remote's default branch), what the working tree changed
//! against it (local commits, staged and unstaged changes, untracked files when asked), and, on
//! the reviewer's side, a commit's whole tree and raw blobs to rebuild the proposed files from.
//! Reads only.

use std::path::Path;

use git2::{BranchType, Delta, DiffFindOptions, DiffOptions, ObjectType, Oid};

use super::{GitError, MAX_FILE_BYTES, ObjectId, Repo, read_err};

/// The commit a feedback request is made against, and why that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub commit: ObjectId,
    /// For people: `merge-base with origin/main (the upstream of main)`.
    pub note: String,
}

/// One file the working tree changed against the base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// The path in the base; `None` for an added file.
    pub old_path: Option<String>,
    /// The path in the working tree; `None` for a deleted file.
    pub new_path: Option<String>,
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    pub old_blob: Option<ObjectId>,
    /// The working tree's bytes (a symlink's target for a link); `None` when deleted or too
    /// large to read.
    pub new_bytes: Option<Vec<u8>>,
    /// Git judged it binary, on either side.
    pub binary: bool,
}

/// A file of a commit's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeFile {
    pub path: String,
    pub mode: u32,
    pub blob: ObjectId,
}

impl Repo {
    /// The base a feedback request is made against: the merge-base of HEAD with the current
    /// branch's upstream, else with the remote's default branch (`origin/HEAD`, else
    /// `origin/main` or `origin/master`). An error that says what to do when there is none.
    pub fn review_base(&self) -> Result<Base, GitError> {
        let head = self.head().ok_or_else(|| GitError::Read {
            what: "HEAD".into(),
            message: "the repository has no commit yet: commit something to review first".into(),
        })?;
        let mut tried = Vec::new();
        if let Ok(h) = self.repo.head()
            && h.is_branch()
            && let Ok(name) = h.shorthand()
        {
            match self.repo.find_branch(name, BranchType::Local).and_then(|b| b.upstream()) {
                Ok(up) => {
                    if let (Some(up_name), Some(target)) = (up.name().ok().flatten(), up.get().target()) {
                        let up_name = up_name.to_owned();
                        return self.merge_base(
                            head,
                            target,
                            format!("merge-base with {up_name} (the upstream of {name})"),
                        );
                    }
                }
                Err(_) => tried.push(format!("the branch {name} has no upstream")),
            }
        } else {
            tried.push("HEAD is not on a branch".into());
        }
        for candidate in ["refs/remotes/origin/HEAD", "refs/remotes/origin/main", "refs/remotes/origin/master"] {
            if let Ok(r) = self.repo.find_reference(candidate)
                && let Ok(resolved) = r.resolve()
                && let Some(target) = resolved.target()
            {
                let shown = resolved.shorthand().unwrap_or(candidate).to_owned();
                let why = if candidate.ends_with("/HEAD") {
                    "the remote's default branch"
                } else {
                    "the remote's main branch"
                };
                return self.merge_base(head, target, format!("merge-base with {shown} ({why})"));
            }
        }
        tried.push("there is no origin/HEAD, origin/main or origin/master".into());
        Err(GitError::Read {
            what: "a base for the review".into(),
            message: format!(
                "{}; reviewers need a commit they have: push a branch to base on (`git push -u origin BRANCH`), \
                 fetch the remote, or give one with --base REV",
                tried.join(", and ")
            ),
        })
    }

    /// [`review_base`](Repo::review_base) with the base named by the user.
    pub fn review_base_at(&self, rev: &str) -> Result<Base, GitError> {
        let commit = self.resolve(rev)?;
        Ok(Base { commit, note: format!("{rev}, as asked") })
    }

    fn merge_base(&self, a: ObjectId, b: Oid, what: String) -> Result<Base, GitError> {
        let oid = self.repo.merge_base(a.0, b).map_err(|e| read_err(format!("the {what}"), e))?;
        Ok(Base { commit: ObjectId(oid), note: what })
    }

    /// What the working tree changed against `base`: committed since, staged and unstaged
    /// changes, renames (50% similar, as git), mode changes, deletions, and untracked files
    /// when `untracked`. Ignored files never. Paths sorted.
    pub fn changes_since(&self, base: ObjectId, untracked: bool) -> Result<Vec<FileChange>, GitError> {
        let root = self.workdir().ok_or_else(|| GitError::Bare(self.root().to_owned()))?.to_owned();
        let tree = self.tree(base)?;
        let mut opts = DiffOptions::new();
        opts.include_untracked(untracked).recurse_untracked_dirs(untracked).show_untracked_content(untracked);
        opts.include_typechange(true);
        let mut diff = self
            .repo
            .diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))
            .map_err(|e| read_err("the working tree's changes", e))?;
        let mut find = DiffFindOptions::new();
        find.renames(true).for_untracked(untracked).rename_threshold(50);
        diff.find_similar(Some(&mut find)).map_err(|e| read_err("renames in the working tree", e))?;
        let mut out = Vec::new();
        for d in diff.deltas() {
            let (old, new) = (d.old_file(), d.new_file());
            let path_of = |f: &git2::DiffFile<'_>| f.path().map(|p| p.to_string_lossy().replace('\\', "/"));
            let (old_path, new_path) = match d.status() {
                Delta::Added | Delta::Untracked => (None, path_of(&new)),
                Delta::Deleted => (path_of(&old), None),
                Delta::Modified | Delta::Renamed | Delta::Copied | Delta::Typechange => (path_of(&old), path_of(&new)),
                _ => continue,
            };
            let new_bytes = match &new_path {
                Some(p) => read_worktree(&root, p, u32::from(new.mode()))?,
                None => None,
            };
            let binary = old.is_binary()
                || new.is_binary()
                || new_bytes.as_ref().is_some_and(|b| b.contains(&0) || std::str::from_utf8(b).is_err())
                || self.blob_is_binary(old_path.as_ref().map(|_| old.id()));
            out.push(FileChange {
                old_mode: old_path.as_ref().map(|_| u32::from(old.mode())),
                new_mode: new_path.as_ref().map(|_| u32::from(new.mode())),
                old_blob: old_path.as_ref().map(|_| ObjectId(old.id())),
                old_path,
                new_path,
                new_bytes,
                binary,
            });
        }
        out.sort_by(|a, b| {
            a.new_path.as_ref().or(a.old_path.as_ref()).cmp(&b.new_path.as_ref().or(b.old_path.as_ref()))
        });
        Ok(out)
    }

    fn blob_is_binary(&self, blob: Option<Oid>) -> bool {
        let Some(id) = blob else { return false };
        self.repo.find_blob(id).is_ok_and(|b| b.is_binary() || std::str::from_utf8(b.content()).is_err())
    }

    /// Every file of a commit's tree (submodules excluded), with its mode and blob.
    pub fn tree_files(&self, commit: ObjectId) -> Result<Vec<TreeFile>, GitError> {
        let tree = self.tree(commit)?;
        let mut out = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob)
                && let Ok(name) = entry.name()
            {
                out.push(TreeFile {
                    path: format!("{dir}{name}"),
                    mode: entry.filemode() as u32,
                    blob: ObjectId(entry.id()),
                });
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|e| read_err(format!("the tree of {}", commit.short()), e))?;
        Ok(out)
    }

    /// A blob's exact bytes (bounded by [`MAX_FILE_BYTES`]).
    pub fn blob_bytes(&self, blob: ObjectId) -> Result<Vec<u8>, GitError> {
        let b = self.repo.find_blob(blob.0).map_err(|e| read_err(format!("blob {}", blob.short()), e))?;
        if b.size() > MAX_FILE_BYTES {
            return Err(GitError::TooLarge { path: format!("blob {}", blob.short()), size: b.size() });
        }
        Ok(b.content().to_vec())
    }

    /// Whether the repository has this commit.
    pub fn has_commit(&self, hex: &str) -> bool {
        matches!(self.commit(hex), Ok(Some(_)))
    }
}

/// A working-tree file's bytes, or a symlink's target; `None` when too large.
fn read_worktree(root: &Path, path: &str, mode: u32) -> Result<Option<Vec<u8>>, GitError> {
    let full = root.join(path);
    if mode == 0o120000 {
        let target = std::fs::read_link(&full).map_err(|e| read_err(path, e))?;
        return Ok(Some(target.to_string_lossy().into_owned().into_bytes()));
    }
    let meta = std::fs::symlink_metadata(&full).map_err(|e| read_err(path, e))?;
    if meta.len() as usize > MAX_FILE_BYTES {
        return Ok(None);
    }
    std::fs::read(&full).map(Some).map_err(|e| read_err(path, e))
}
