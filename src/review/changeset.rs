//! The author's side: a revision built from the working tree against a base the reviewers have.
//! Each changed file becomes a patch against its base version (renames, mode changes and
//! deletions kept; binary files listed, never sent); what the patches add is scanned for
//! secrets; the total is held to the server's cap.

use crate::api::{self, limits};
use crate::codemark::{new_id, now_ms};
use crate::git::{Base, FileChange, GitError, ObjectId, Repo};

use super::patch;

/// A revision ready to send, and what a person should know before it leaves.
#[derive(Debug)]
pub struct Built {
    pub revision: api::NewRevision,
    /// Lines of code the patches carry (added, removed and context), for the preview.
    pub lines: usize,
    /// Bytes of the patches.
    pub bytes: usize,
    /// Binary files: listed, not sent.
    pub binary: Vec<String>,
    /// Likely secrets in added lines, said for people; `None` when clean.
    pub secrets: Option<String>,
}

/// Why a revision cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("nothing to review: the working tree is the same as {base} ({note}){untracked}")]
    Empty { base: String, note: String, untracked: &'static str },
    #[error("the changes are too large for one review: {0}")]
    TooLarge(String),
}

/// Builds the revision of the working tree against `base` (untracked files when asked).
pub fn build(repo: &Repo, base: &Base, untracked: bool) -> Result<Built, BuildError> {
    let changes = repo.changes_since(base.commit, untracked)?;
    if changes.is_empty() {
        let hint = if untracked { "" } else { "; new files are left out unless --untracked is given" };
        return Err(BuildError::Empty { base: base.commit.short(), note: base.note.clone(), untracked: hint });
    }
    if changes.len() > limits::MAX_REVISION_FILES {
        return Err(BuildError::TooLarge(format!(
            "{} files changed; a review takes at most {}",
            changes.len(),
            limits::MAX_REVISION_FILES
        )));
    }
    let mut files = Vec::with_capacity(changes.len());
    let (mut lines, mut bytes, mut binary, mut secrets) = (0, 0, Vec::new(), Vec::new());
    for c in changes {
        let shown = c.new_path.clone().or(c.old_path.clone()).unwrap_or_default();
        let fp = file_patch(repo, &c)?;
        if fp.binary {
            binary.push(shown.clone());
        }
        if let Some(p) = &fp.patch {
            lines += p.lines().filter(|l| !l.starts_with('@') && !l.starts_with('\\')).count();
            bytes += p.len();
            let added: Vec<&str> = patch::added_lines(p).collect();
            let found = crate::secrets::scan(&added.join("\n"));
            if !found.is_empty() {
                let said = crate::secrets::describe(&found);
                secrets.push(format!("{shown}: {}", said.strip_prefix("held back: ").unwrap_or(&said)));
            }
        }
        files.push(fp);
    }
    if bytes > limits::MAX_REVISION_BYTES {
        return Err(BuildError::TooLarge(format!(
            "the patches are {bytes} bytes; a review revision takes at most {} (leave generated or vendored files \
             out, or split the work)",
            limits::MAX_REVISION_BYTES
        )));
    }
    let revision = api::NewRevision {
        id: new_id(),
        base: base.commit.to_string(),
        base_note: base.note.clone(),
        head: repo.head().map(|h| h.to_string()),
        files,
        created: now_ms(),
    };
    let secrets = (!secrets.is_empty()).then(|| format!("held back: {} (in added lines)", secrets.join("; ")));
    Ok(Built { revision, lines, bytes, binary, secrets })
}

/// One changed file as a patch against its base version.
fn file_patch(repo: &Repo, c: &FileChange) -> Result<api::FilePatch, GitError> {
    let mode = |m: Option<u32>| m.map(|m| format!("{m:o}"));
    let new_blob = c.new_bytes.as_ref().map(|b| ObjectId::of_blob(b).to_string());
    let mut fp = api::FilePatch {
        old_path: c.old_path.clone(),
        new_path: c.new_path.clone(),
        old_mode: mode(c.old_mode),
        new_mode: mode(c.new_mode),
        old_blob: c.old_blob.map(|b| b.to_string()),
        new_blob,
        binary: c.binary,
        patch: None,
    };
    if c.binary || (c.new_path.is_some() && c.new_bytes.is_none()) {
        // Binary, or too large to read: listed, not sent.
        fp.binary = true;
        return Ok(fp);
    }
    let old = match c.old_blob {
        Some(b) => repo.blob_bytes(b)?,
        None => Vec::new(),
    };
    let new = c.new_bytes.clone().unwrap_or_default();
    let (Ok(old), Ok(new)) = (String::from_utf8(old), String::from_utf8(new)) else {
        fp.binary = true;
        return Ok(fp);
    };
    fp.patch = patch::make(&old, &new);
    Ok(fp)
}
