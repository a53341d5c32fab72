//! The reviewer's side: each file of a revision rebuilt from the reviewer's own git objects
//! (the base version) plus the stored patch, and checked: the base version must be the one the
//! author had, the rebuilt text must hash to the author's blob id. A patch is untrusted input:
//! paths with `..`, absolute paths, `.git/` paths and patches that do not apply are refused with a
//! message; a wrong diff is never shown. [`checkout`] writes the proposed tree into a new folder
//! and nowhere else.

use std::path::{Path, PathBuf};

use crate::api;
use crate::git::{GitError, ObjectId, Repo};

use super::patch::{self, PatchError};

/// One file of a revision, both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileView {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub old_mode: Option<String>,
    pub new_mode: Option<String>,
    /// `None` for an added file, or a binary one.
    pub old_text: Option<String>,
    /// `None` for a deleted file, or a binary one (not sent).
    pub new_text: Option<String>,
    pub binary: bool,
    pub patch: Option<String>,
}

impl FileView {
    /// The path people know it by: the proposed one, else the base one.
    pub fn path(&self) -> &str {
        self.new_path.as_deref().or(self.old_path.as_deref()).unwrap_or("")
    }
}

/// Why a revision cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(
        "the review's base commit {base} ({note}) is not in this repository; fetch it (`git fetch origin`, or the \
         branch the author works from) and try again: without it the diff would be wrong"
    )]
    MissingBase { base: String, note: String },
    #[error("the review names an unsafe path: {0}; nothing was written")]
    UnsafePath(String),
    #[error("{path}: {why}; the review's patch does not fit this repository, so it is not shown")]
    Mismatch { path: String, why: String },
    #[error("{path}: {source}")]
    Patch { path: String, source: PatchError },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{0}")]
    Write(String),
}

/// A path from a patch, checked: relative, `/`-separated, no empty, `.` or `..` parts, no
/// `.git` part in any case, no NUL or backslash.
pub fn check_path(p: &str) -> Result<(), RebuildError> {
    crate::locate::batch::check_path(p).map_err(RebuildError::UnsafePath)?;
    if p.split('/').any(|c| c.eq_ignore_ascii_case(".git")) {
        return Err(RebuildError::UnsafePath(format!("`{p}` is inside .git")));
    }
    if p.len() > 4096 {
        return Err(RebuildError::UnsafePath(format!("a path of {} bytes", p.len())));
    }
    Ok(())
}

/// Rebuilds every file of `rev` against the reviewer's copy of its base.
pub fn rebuild(repo: &Repo, rev: &api::Revision) -> Result<Vec<FileView>, RebuildError> {
    let missing = || RebuildError::MissingBase { base: rev.base.clone(), note: rev.base_note.clone() };
    let base = repo.commit(&rev.base).map_err(|_| missing())?.ok_or_else(missing)?;
    let mut out = Vec::with_capacity(rev.files.len());
    for f in &rev.files {
        for p in f.old_path.iter().chain(&f.new_path) {
            check_path(p)?;
        }
        if f.old_path.is_none() && f.new_path.is_none() {
            return Err(RebuildError::UnsafePath("a file with neither an old nor a new path".into()));
        }
        out.push(one(repo, base, f)?);
    }
    Ok(out)
}

fn one(repo: &Repo, base: ObjectId, f: &api::FilePatch) -> Result<FileView, RebuildError> {
    let path = f.new_path.clone().or(f.old_path.clone()).unwrap_or_default();
    let mismatch = |why: String| RebuildError::Mismatch { path: path.clone(), why };
    let mut view = FileView {
        old_path: f.old_path.clone(),
        new_path: f.new_path.clone(),
        old_mode: f.old_mode.clone(),
        new_mode: f.new_mode.clone(),
        old_text: None,
        new_text: None,
        binary: f.binary,
        patch: f.patch.clone(),
    };
    let old_bytes = match &f.old_path {
        Some(p) => {
            let blob = repo.blob_at(base, p)?.ok_or_else(|| mismatch(format!("the base has no file {p}")))?;
            if let Some(want) = &f.old_blob
                && *want != blob.to_string()
            {
                return Err(mismatch(format!("the base's {p} is not the version the author had")));
            }
            Some(repo.blob_bytes(blob)?)
        }
        None => None,
    };
    if f.binary {
        if f.patch.is_some() {
            return Err(mismatch("a binary file came with a patch".into()));
        }
        return Ok(view);
    }
    let old_text = match old_bytes {
        Some(b) => Some(String::from_utf8(b).map_err(|_| mismatch("the base version is not text".into()))?),
        None => None,
    };
    let base_text = old_text.clone().unwrap_or_default();
    let new_text = match &f.patch {
        Some(p) => patch::apply(&base_text, p).map_err(|source| RebuildError::Patch { path: path.clone(), source })?,
        None => base_text,
    };
    if f.new_path.is_some() {
        let got = ObjectId::of_blob(new_text.as_bytes()).to_string();
        match &f.new_blob {
            Some(want) if *want == got => {}
            Some(_) => return Err(mismatch("the rebuilt file is not the author's version (its hash differs)".into())),
            None => return Err(mismatch("the author's version has no hash to check against".into())),
        }
        view.new_text = Some(new_text);
    } else if !new_text.is_empty() {
        return Err(mismatch("a deleted file's patch leaves text behind".into()));
    }
    view.old_text = old_text;
    Ok(view)
}

/// The revision as a unified diff, the way `git diff` prints it.
pub fn unified(files: &[FileView]) -> String {
    let mut out = String::new();
    for f in files {
        let (a, b) = (f.old_path.as_deref().unwrap_or(f.path()), f.new_path.as_deref().unwrap_or(f.path()));
        out.push_str(&format!("diff --git a/{a} b/{b}\n"));
        match (&f.old_path, &f.new_path) {
            (None, Some(_)) => out.push_str(&format!("new file mode {}\n", f.new_mode.as_deref().unwrap_or("100644"))),
            (Some(_), None) => {
                out.push_str(&format!("deleted file mode {}\n", f.old_mode.as_deref().unwrap_or("100644")))
            }
            (Some(o), Some(n)) => {
                if f.old_mode != f.new_mode {
                    out.push_str(&format!(
                        "old mode {}\nnew mode {}\n",
                        f.old_mode.as_deref().unwrap_or("?"),
                        f.new_mode.as_deref().unwrap_or("?")
                    ));
                }
                if o != n {
                    out.push_str(&format!("rename from {o}\nrename to {n}\n"));
                }
            }
            (None, None) => {}
        }
        if f.binary {
            out.push_str(&format!("Binary file {} (not sent)\n", f.path()));
            continue;
        }
        if let Some(p) = &f.patch {
            let from = f.old_path.as_ref().map_or("/dev/null".to_owned(), |o| format!("a/{o}"));
            let to = f.new_path.as_ref().map_or("/dev/null".to_owned(), |n| format!("b/{n}"));
            out.push_str(&format!("--- {from}\n+++ {to}\n{p}"));
        }
    }
    out
}

/// What changed between two rebuilt revisions of one request, as a unified diff of their
/// proposed trees: what a reviewer who read `earlier` has left to read. The revisions may sit on
/// different bases (the author pushed, or rebased, in between): a file a revision does not
/// change is read from its base.
pub fn interdiff(
    repo: &Repo,
    earlier: (&api::Revision, &[FileView]),
    later: (&api::Revision, &[FileView]),
) -> Result<String, RebuildError> {
    let mut paths: Vec<&str> = earlier
        .1
        .iter()
        .chain(later.1)
        .flat_map(|f| f.old_path.iter().chain(&f.new_path))
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out = String::new();
    for p in paths {
        let (old, new) = (proposed(repo, earlier, p)?, proposed(repo, later, p)?);
        if old == new {
            continue;
        }
        if matches!(old, Proposed::Binary) || matches!(new, Proposed::Binary) {
            out.push_str(&format!("diff --git a/{p} b/{p}\nBinary file {p} (not sent)\n"));
            continue;
        }
        let text = |x: &Proposed| if let Proposed::Text(t) = x { t.clone() } else { String::new() };
        let Some(patch) = patch::make(&text(&old), &text(&new)) else { continue };
        let from = if matches!(old, Proposed::Absent) { "/dev/null".to_owned() } else { format!("a/{p}") };
        let to = if matches!(new, Proposed::Absent) { "/dev/null".to_owned() } else { format!("b/{p}") };
        out.push_str(&format!("diff --git a/{p} b/{p}\n--- {from}\n+++ {to}\n{patch}"));
    }
    Ok(out)
}

/// A path in a revision's proposed tree.
#[derive(Debug, PartialEq, Eq)]
enum Proposed {
    Absent,
    Binary,
    Text(String),
}

fn proposed(repo: &Repo, (rev, files): (&api::Revision, &[FileView]), path: &str) -> Result<Proposed, RebuildError> {
    if let Some(f) = files.iter().find(|f| f.new_path.as_deref() == Some(path)) {
        return Ok(match &f.new_text {
            Some(t) => Proposed::Text(t.clone()),
            None => Proposed::Binary,
        });
    }
    if files.iter().any(|f| f.old_path.as_deref() == Some(path)) {
        return Ok(Proposed::Absent);
    }
    let missing = || RebuildError::MissingBase { base: rev.base.clone(), note: rev.base_note.clone() };
    let base = repo.commit(&rev.base).map_err(|_| missing())?.ok_or_else(missing)?;
    Ok(match repo.blob_at(base, path)? {
        Some(blob) => match String::from_utf8(repo.blob_bytes(blob)?) {
            Ok(t) => Proposed::Text(t),
            Err(_) => Proposed::Binary,
        },
        None => Proposed::Absent,
    })
}

/// What [`checkout`] wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub files: usize,
    /// Binary files of the revision, not sent: the base version was written where there was one.
    pub binary: Vec<String>,
}

/// Writes the proposed tree (the base's files, with the revision's changes) into `dir`, a
/// folder that must not exist yet or be empty. Nothing is written anywhere else: every path is
/// checked, folders are made here, and symbolic links are made last, so no write goes through
/// one. The reviewer's own working copy is never touched.
pub fn checkout(repo: &Repo, rev: &api::Revision, files: &[FileView], dir: &Path) -> Result<Written, RebuildError> {
    let werr = |what: &Path, e: std::io::Error| RebuildError::Write(format!("cannot write {}: {e}", what.display()));
    let existed = dir.exists();
    if existed {
        let empty = std::fs::read_dir(dir).map_err(|e| werr(dir, e))?.next().is_none();
        if !dir.is_dir() || !empty {
            return Err(RebuildError::Write(format!(
                "{} exists and is not an empty folder; give a new one",
                dir.display()
            )));
        }
    }
    // Written beside it under another name, then renamed: a failure half-way leaves nothing.
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "review".into());
    let partial = dir.with_file_name(format!(".{name}.marginalia-partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| werr(&partial, e))?;
    match write_tree(repo, rev, files, &partial) {
        Ok(written) => {
            if existed {
                std::fs::remove_dir(dir).map_err(|e| werr(dir, e))?;
            }
            std::fs::rename(&partial, dir).map_err(|e| {
                let _ = std::fs::remove_dir_all(&partial);
                werr(dir, e)
            })?;
            Ok(written)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

fn write_tree(repo: &Repo, rev: &api::Revision, files: &[FileView], dir: &Path) -> Result<Written, RebuildError> {
    let werr = |what: &Path, e: std::io::Error| RebuildError::Write(format!("cannot write {}: {e}", what.display()));
    let base = repo
        .commit(&rev.base)
        .ok()
        .flatten()
        .ok_or_else(|| RebuildError::MissingBase { base: rev.base.clone(), note: rev.base_note.clone() })?;
    // What the tree will hold: the base's files, minus what the revision moved or deleted.
    let mut planned: std::collections::BTreeMap<String, (String, Vec<u8>)> = std::collections::BTreeMap::new();
    let gone: std::collections::HashSet<&str> =
        files.iter().filter(|f| !f.binary).filter_map(|f| f.old_path.as_deref()).collect();
    for t in repo.tree_files(base)? {
        if gone.contains(t.path.as_str()) {
            continue;
        }
        check_path(&t.path)?;
        planned.insert(t.path.clone(), (format!("{:o}", t.mode), repo.blob_bytes(t.blob)?));
    }
    let mut written = Written::default();
    for f in files {
        if f.binary {
            written.binary.push(f.path().to_owned());
            continue;
        }
        if let (Some(p), Some(text)) = (&f.new_path, &f.new_text) {
            planned
                .insert(p.clone(), (f.new_mode.clone().unwrap_or_else(|| "100644".into()), text.clone().into_bytes()));
        }
    }
    let mut links = Vec::new();
    for (path, (mode, bytes)) in &planned {
        let full = under(dir, path);
        if mode == "120000" {
            links.push((full, bytes.clone()));
            continue;
        }
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| werr(parent, e))?;
        }
        let meta = std::fs::symlink_metadata(&full);
        if meta.is_ok_and(|m| !m.is_file()) {
            return Err(RebuildError::UnsafePath(format!("`{path}` is both a folder and a file in the review")));
        }
        std::fs::write(&full, bytes).map_err(|e| werr(&full, e))?;
        #[cfg(unix)]
        if mode == "100755" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).map_err(|e| werr(&full, e))?;
        }
        written.files += 1;
    }
    for (full, target) in links {
        #[cfg(unix)]
        {
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).map_err(|e| werr(parent, e))?;
            }
            let target = String::from_utf8_lossy(&target).into_owned();
            std::os::unix::fs::symlink(&target, &full).map_err(|e| werr(&full, e))?;
            written.files += 1;
        }
        #[cfg(not(unix))]
        {
            std::fs::write(&full, &target).map_err(|e| werr(&full, e))?;
            written.files += 1;
        }
    }
    Ok(written)
}

/// `dir` joined with a checked repository path.
fn under(dir: &Path, path: &str) -> PathBuf {
    let mut p = dir.to_path_buf();
    for part in path.split('/') {
        p.push(part);
    }
    p
}
