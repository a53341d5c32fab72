//! Git reads through git2: file text at a commit or in the working tree, what a range of
//! history added or changed, renames, and the repository's identity.
//!
//! **Architecture invariant:** this is the only module that knows git2. It reads and never
//! writes. What many anchors share is read once: blob texts (by object id, bounded by size),
//! path lookups per commit, the files a commit range added or changed, and renames per
//! (commit, path, target). `changeset` has what a feedback request needs (a base the reviewers
//! have, what the working tree changed against it, whole trees and raw blobs).

mod changeset;
mod history;
mod identity;
mod renames;

pub use changeset::{Base, FileChange, TreeFile};
pub use history::Route;
pub use identity::{Relation, RepoIdentity, normalize_remote_url};

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{DiffOptions, ObjectType, Oid, Repository, StatusOptions};

use crate::anchor::Text;

/// Files larger than this are not read as text (a minified bundle, a data dump).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Blob texts kept in memory at once, by total size, before the cache starts over.
const TEXT_CACHE_BYTES: usize = 512 << 20;

/// A git object id (commit or blob), printable as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(Oid);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.0.to_string()[..12])
    }
}

impl ObjectId {
    /// The id git gives a blob with these bytes (what `git hash-object` prints): the key of an
    /// editor buffer's content, committed or not.
    pub fn of_blob(bytes: &[u8]) -> ObjectId {
        ObjectId(Oid::hash_object(ObjectType::Blob, bytes).unwrap_or(Oid::ZERO_SHA1))
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        self.0.to_string()[..12].to_owned()
    }
}

/// Where anchors are relocated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Commit(ObjectId),
    /// The files on disk, committed or not (tracked and untracked, ignored files excluded).
    Worktree,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{} is not a git repository (or it cannot be opened): {message}", path.display())]
    NotARepository { path: PathBuf, message: String },
    #[error("`{rev}` does not name a commit in this repository: {message}")]
    BadRevision { rev: String, message: String },
    #[error("the working tree is needed but {0} is a bare repository: pass --to REV")]
    Bare(PathBuf),
    #[error("{path} is too large to read as text ({size} bytes; the limit is {MAX_FILE_BYTES})")]
    TooLarge { path: String, size: usize },
    #[error("reading {what}: {message}")]
    Read { what: String, message: String },
}

fn read_err(what: impl fmt::Display, e: impl ErrorText) -> GitError {
    GitError::Read { what: what.to_string(), message: e.text() }
}

/// git2's `Display` appends `class=...; code=...`; people only need the message.
trait ErrorText {
    fn text(&self) -> String;
}

impl ErrorText for git2::Error {
    fn text(&self) -> String {
        self.message().to_owned()
    }
}

impl ErrorText for std::io::Error {
    fn text(&self) -> String {
        self.to_string()
    }
}

/// A file as read for relocation.
#[derive(Clone)]
pub struct File {
    /// The blob id of its content (hashed from disk for working-tree files).
    pub id: ObjectId,
    pub text: Arc<Text>,
}

/// One file a range of history added or changed.
#[derive(Clone, Debug)]
pub struct Changed {
    pub path: String,
    /// `None` when the file was added.
    pub old: Option<ObjectId>,
    /// The new content's id; for the working tree, `None` until read.
    pub new: Option<ObjectId>,
}

/// What a range of history added or changed, shared between anchors.
pub type Changes = Arc<Vec<Changed>>;

/// A repository opened for reading, with its caches.
pub struct Repo {
    repo: Repository,
    texts: RefCell<TextCache>,
    /// Path lookups: path -> commit -> blob there (looked up without allocating).
    paths: RefCell<HashMap<String, HashMap<ObjectId, Option<ObjectId>>>>,
    changes: RefCell<HashMap<(ObjectId, Target), Changes>>,
    renames: RefCell<HashMap<(ObjectId, String, Target), Option<String>>>,
    /// Renames by content: the same blob at the same path goes the same way, whichever commit
    /// it was read at.
    renames_by_blob: RefCell<HashMap<(ObjectId, String, Target), Option<String>>>,
    worktree_files: RefCell<Option<Arc<BTreeSet<String>>>>,
    blob_reads: std::cell::Cell<usize>,
    /// Routes through history: forward maps per target, backward maps per older commit.
    toward: RefCell<HashMap<ObjectId, history::Toward>>,
    down: RefCell<HashMap<ObjectId, history::Down>>,
}

#[derive(Default)]
struct TextCache {
    texts: HashMap<ObjectId, Arc<Text>>,
    bytes: usize,
}

impl Repo {
    /// Opens the repository at exactly `path` (a working tree's top folder, its `.git`, or a
    /// bare repository).
    pub fn open(path: &Path) -> Result<Repo, GitError> {
        let flags = git2::RepositoryOpenFlags::NO_SEARCH;
        let repo = Repository::open_ext(path, flags, std::iter::empty::<&std::ffi::OsStr>())
            .map_err(|e| GitError::NotARepository { path: path.to_owned(), message: e.message().to_owned() })?;
        Ok(Repo::wrap(repo))
    }

    /// Opens the repository containing `path`, searching upwards.
    pub fn discover(path: &Path) -> Result<Repo, GitError> {
        let repo = Repository::discover(path)
            .map_err(|e| GitError::NotARepository { path: path.to_owned(), message: e.message().to_owned() })?;
        Ok(Repo::wrap(repo))
    }

    fn wrap(repo: Repository) -> Repo {
        // libgit2 re-hashes every object it reads to check it (strict verification); we only
        // read objects git itself wrote and indexed, and the check costs a SHA-1 per blob.
        git2::opts::strict_hash_verification(false);
        Repo {
            repo,
            texts: RefCell::default(),
            paths: RefCell::default(),
            changes: RefCell::default(),
            renames: RefCell::default(),
            renames_by_blob: RefCell::default(),
            worktree_files: RefCell::default(),
            blob_reads: std::cell::Cell::new(0),
            toward: RefCell::default(),
            down: RefCell::default(),
        }
    }

    /// How many blobs (or working-tree files) were read from storage: cache misses.
    pub fn blob_reads(&self) -> usize {
        self.blob_reads.get()
    }

    pub fn is_bare(&self) -> bool {
        self.repo.is_bare()
    }

    /// The working tree's top folder, if any.
    pub fn workdir(&self) -> Option<&Path> {
        self.repo.workdir()
    }

    /// The `.git` folder (or the bare repository itself), where HEAD and the refs live.
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// Who the user is here, from git's `user.name` and `user.email` (as commits would say).
    pub fn user(&self) -> Option<String> {
        let config = self.repo.config().ok()?;
        let name = config.get_string("user.name").ok().filter(|n| !n.trim().is_empty());
        let email = config.get_string("user.email").ok().filter(|e| !e.trim().is_empty());
        match (name, email) {
            (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
            (n, e) => n.or(e),
        }
    }

    /// The folder that names this repository on disk: its working tree, or the git folder.
    pub fn root(&self) -> &Path {
        self.workdir().unwrap_or_else(|| self.git_dir())
    }

    /// Resolves any revision git understands (`HEAD~3`, a branch, a tag, a hex prefix) to a
    /// commit.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, GitError> {
        let bad = |e: git2::Error| GitError::BadRevision { rev: rev.to_owned(), message: e.message().to_owned() };
        let obj = self.repo.revparse_single(rev).map_err(bad)?;
        let commit = obj.peel_to_commit().map_err(bad)?;
        Ok(ObjectId(commit.id()))
    }

    /// True in a shallow clone (`git clone --depth=N`): commits before its graft points are
    /// missing, and so may be revisions named on the command line.
    pub fn is_shallow(&self) -> bool {
        self.repo.is_shallow()
    }

    /// The best common ancestor of two commits (what `git diff A...B` starts from); `None`
    /// when their histories do not meet here (unrelated, or cut off by a shallow clone).
    pub fn common_ancestor(&self, a: ObjectId, b: ObjectId) -> Option<ObjectId> {
        self.repo.merge_base(a.0, b.0).ok().map(ObjectId)
    }

    /// The commit HEAD points at; `None` in a repository without commits.
    pub fn head(&self) -> Option<ObjectId> {
        self.repo.head().ok()?.peel_to_commit().ok().map(|c| ObjectId(c.id()))
    }

    /// The commit named by a full or abbreviated hex id, if this repository has it. Missing
    /// commits (shallow clones, rewritten history) are `Ok(None)`, not errors.
    pub fn commit(&self, hex: &str) -> Result<Option<ObjectId>, String> {
        if hex.len() < 4 || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hex}` is not a commit id (4 to 64 hex digits)"));
        }
        let found = if hex.len() == 40 {
            Oid::from_str(hex).ok().and_then(|oid| self.repo.find_commit(oid).ok())
        } else {
            self.repo.find_commit_by_prefix(hex).ok()
        };
        Ok(found.map(|c| ObjectId(c.id())))
    }

    /// The blob at `path` in `commit`; `None` when there is no such file (or it is a folder or
    /// a submodule).
    pub fn blob_at(&self, commit: ObjectId, path: &str) -> Result<Option<ObjectId>, GitError> {
        if let Some(&hit) = self.paths.borrow().get(path).and_then(|m| m.get(&commit)) {
            return Ok(hit);
        }
        let tree = self.tree(commit)?;
        let found = match tree.get_path(Path::new(path)) {
            Ok(entry) if entry.kind() == Some(ObjectType::Blob) => Some(ObjectId(entry.id())),
            Ok(_) => None,
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(read_err(format!("{path} at {}", ObjectId(commit.0).short()), e)),
        };
        self.paths.borrow_mut().entry(path.to_owned()).or_default().insert(commit, found);
        Ok(found)
    }

    fn tree(&self, commit: ObjectId) -> Result<git2::Tree<'_>, GitError> {
        self.repo
            .find_commit(commit.0)
            .and_then(|c| c.tree())
            .map_err(|e| read_err(format!("the tree of commit {}", commit.short()), e))
    }

    /// The text of a blob, read once and shared.
    pub fn text(&self, blob: ObjectId, path: &str) -> Result<Arc<Text>, GitError> {
        if let Some(t) = self.texts.borrow().texts.get(&blob) {
            return Ok(t.clone());
        }
        let b = self.repo.find_blob(blob.0).map_err(|e| read_err(format!("{path} (blob {})", blob.short()), e))?;
        self.blob_reads.set(self.blob_reads.get() + 1);
        if b.size() > MAX_FILE_BYTES {
            return Err(GitError::TooLarge { path: path.to_owned(), size: b.size() });
        }
        let text = Arc::new(Text::from_bytes(b.content()));
        self.remember(blob, &text);
        Ok(text)
    }

    fn remember(&self, id: ObjectId, text: &Arc<Text>) {
        let mut cache = self.texts.borrow_mut();
        let size = text.as_str().len();
        if cache.bytes + size > TEXT_CACHE_BYTES {
            cache.texts.clear();
            cache.bytes = 0;
        }
        cache.bytes += size;
        cache.texts.insert(id, text.clone());
    }

    /// The file at `path` in `target`, or `None` when it does not exist there.
    pub fn file(&self, target: Target, path: &str) -> Result<Option<File>, GitError> {
        match target {
            Target::Commit(c) => match self.blob_at(c, path)? {
                Some(id) => Ok(Some(File { id, text: self.text(id, path)? })),
                None => Ok(None),
            },
            Target::Worktree => self.worktree_file(path),
        }
    }

    fn worktree_file(&self, path: &str) -> Result<Option<File>, GitError> {
        let root = self.workdir().ok_or_else(|| GitError::Bare(self.repo.path().to_owned()))?;
        let full = root.join(path);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(full.display(), e)),
        };
        let bytes = if meta.file_type().is_symlink() {
            // git stores a symlink as the path it points to.
            std::fs::read_link(&full)
                .map_err(|e| read_err(full.display(), e))?
                .to_string_lossy()
                .into_owned()
                .into_bytes()
        } else if meta.is_file() {
            if meta.len() as usize > MAX_FILE_BYTES {
                return Err(GitError::TooLarge { path: path.to_owned(), size: meta.len() as usize });
            }
            self.blob_reads.set(self.blob_reads.get() + 1);
            std::fs::read(&full).map_err(|e| read_err(full.display(), e))?
        } else {
            return Ok(None);
        };
        let id = ObjectId(Oid::hash_object(ObjectType::Blob, &bytes).map_err(|e| read_err(path, e))?);

        if let Some(t) = self.texts.borrow().texts.get(&id) {
            return Ok(Some(File { id, text: t.clone() }));
        }
        let text = Arc::new(Text::from_bytes(&bytes));
        self.remember(id, &text);
        Ok(Some(File { id, text }))
    }

    /// True when `path` exists as a file in `target`.
    pub fn exists(&self, target: Target, path: &str) -> Result<bool, GitError> {
        match target {
            Target::Commit(c) => Ok(self.blob_at(c, path)?.is_some()),
            Target::Worktree => Ok(self.worktree_paths()?.contains(path)),
        }
    }

    /// The files in the working tree: tracked ones still on disk, and untracked ones that are
    /// not ignored.
    pub fn worktree_paths(&self) -> Result<Arc<BTreeSet<String>>, GitError> {
        if let Some(p) = self.worktree_files.borrow().as_ref() {
            return Ok(p.clone());
        }
        let root = self.workdir().ok_or_else(|| GitError::Bare(self.repo.path().to_owned()))?.to_owned();
        let mut paths = BTreeSet::new();
        let index = self.repo.index().map_err(|e| read_err("the index", e))?;
        for entry in index.iter() {
            let path = String::from_utf8_lossy(&entry.path).into_owned();
            if root.join(&path).symlink_metadata().is_ok() {
                paths.insert(path);
            }
        }
        let mut opts = StatusOptions::new();
        opts.include_untracked(true).recurse_untracked_dirs(true).include_ignored(false);
        let statuses = self.repo.statuses(Some(&mut opts)).map_err(|e| read_err("the working tree status", e))?;
        for s in statuses.iter() {
            if s.status().contains(git2::Status::WT_NEW)
                && let Ok(p) = s.path()
            {
                paths.insert(p.to_owned());
            }
        }
        let paths = Arc::new(paths);
        *self.worktree_files.borrow_mut() = Some(paths.clone());
        Ok(paths)
    }

    /// Every file in `target` (for searching anchored text when its commit is missing).
    pub fn all_paths(&self, target: Target) -> Result<Vec<String>, GitError> {
        match target {
            Target::Worktree => Ok(self.worktree_paths()?.iter().cloned().collect()),
            Target::Commit(c) => {
                let tree = self.tree(c)?;
                let mut out = Vec::new();
                tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                    if entry.kind() == Some(ObjectType::Blob) {
                        out.push(format!("{dir}{}", entry.name().unwrap_or_default()));
                    }
                    git2::TreeWalkResult::Ok
                })
                .map_err(|e| read_err(format!("the tree of {}", c.short()), e))?;
                Ok(out)
            }
        }
    }

    /// The files that `from..target` added or modified (renames appear as an addition).
    pub fn changes(&self, from: ObjectId, target: Target) -> Result<Changes, GitError> {
        let key = (from, target);
        if let Some(c) = self.changes.borrow().get(&key) {
            return Ok(c.clone());
        }
        let old_tree = self.tree(from)?;
        let mut opts = DiffOptions::new();
        opts.skip_binary_check(true).ignore_submodules(true);
        let diff = match target {
            Target::Commit(to) => {
                let new_tree = self.tree(to)?;
                self.repo.diff_tree_to_tree(Some(&old_tree), Some(&new_tree), Some(&mut opts))
            }
            Target::Worktree => {
                opts.include_untracked(true).recurse_untracked_dirs(true);
                self.repo.diff_tree_to_workdir_with_index(Some(&old_tree), Some(&mut opts))
            }
        }
        .map_err(|e| read_err(format!("the changes since {}", from.short()), e))?;
        let mut out = Vec::new();
        for delta in diff.deltas() {
            use git2::Delta::*;
            let Some(path) = delta.new_file().path().and_then(Path::to_str) else { continue };
            // A submodule is a commit id, not a file: nothing to read there.
            if delta.new_file().mode() == git2::FileMode::Commit {
                continue;
            }
            let present = |f: git2::DiffFile<'_>| (!f.id().is_zero()).then(|| ObjectId(f.id()));
            match delta.status() {
                Added | Untracked | Copied | Renamed => {
                    out.push(Changed { path: path.to_owned(), old: None, new: present(delta.new_file()) })
                }
                Modified | Typechange => out.push(Changed {
                    path: path.to_owned(),
                    old: present(delta.old_file()),
                    new: present(delta.new_file()),
                }),
                _ => {}
            }
        }
        let out = Arc::new(out);
        self.changes.borrow_mut().insert(key, out.clone());
        Ok(out)
    }

    /// Size in bytes of a blob, without reading its content where the store allows.
    pub fn blob_size(&self, blob: ObjectId) -> Option<usize> {
        let odb = self.repo.odb().ok()?;
        odb.read_header(blob.0).ok().map(|(size, _)| size)
    }

    /// The branch HEAD is on (`main`, `feature/x`); `None` when HEAD is detached or unborn.
    pub fn branch(&self) -> Option<String> {
        let head = self.repo.head().ok()?;
        if !head.is_branch() {
            return None;
        }
        head.shorthand().ok().map(str::to_owned)
    }

    /// The remotes as configured, by name, with their URLs exactly as written (`origin`,
    /// `git@github.com:Acme/Shop.git`); remotes without a URL are left out.
    pub fn remotes(&self) -> Vec<(String, String)> {
        let Ok(names) = self.repo.remotes() else { return Vec::new() };
        names
            .iter()
            .flatten()
            .flatten()
            .filter_map(|n| {
                let url = self.repo.find_remote(n).ok()?.url().ok()?.to_owned();
                Some((n.to_owned(), url))
            })
            .collect()
    }

    /// Where a local branch is pushed and pulled: `branch.<name>.remote` and the branch name on
    /// that remote (from `branch.<name>.merge`), when configured.
    pub fn upstream_of(&self, branch: &str) -> Option<(String, String)> {
        let config = self.repo.config().ok()?;
        let remote = config.get_string(&format!("branch.{branch}.remote")).ok()?;
        let merge = config.get_string(&format!("branch.{branch}.merge")).ok()?;
        let name = merge.strip_prefix("refs/heads/").unwrap_or(&merge).to_owned();
        Some((remote, name))
    }

    /// The repository's identity: normalised remote URLs and root commits.
    pub fn identity(&self) -> Result<RepoIdentity, GitError> {
        identity::read(&self.repo)
    }
}
