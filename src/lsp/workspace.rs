//! The repositories the editor has open: found from the workspace folders (nested and several)
//! or from the files opened, each with its codemarks and where their anchors are in the working
//! tree. Blocking work: call it from `spawn_blocking`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::anchor::{Relocation, Text};
use crate::codemark::{self, CachedLocation, Codemark, LocationCache, StoredAnchor};
use crate::git::{ObjectId, Repo};
use crate::locate::Located;
use crate::store::Store;

/// How deep under a workspace folder nested repositories are looked for, and how many folders
/// are looked at in all.
const NESTED_DEPTH: usize = 5;
const NESTED_FOLDERS: usize = 20_000;

/// How far a pass is, for `$/progress`: anchors to place (known once the codemarks are
/// loaded, which `counted` signals) and anchors placed.
#[derive(Default)]
pub struct Pass {
    pub total: AtomicUsize,
    pub done: AtomicUsize,
    pub counted: tokio::sync::Notify,
}

pub struct RepoState {
    /// The working tree's top folder, canonical.
    pub root: PathBuf,
    /// The repository's key in the store.
    pub key: String,
    pub repo: Repo,
    pub marks: Vec<Codemark>,
    /// Anchor id to where it is in the working tree, from the last pass.
    pub places: HashMap<String, Located>,
    /// HEAD when the last pass ran, to notice commits, checkouts and pulls.
    pub head: Option<ObjectId>,
    /// Set when the repository's folder disappeared; its codemarks stay in the store.
    pub gone: bool,
}

#[derive(Default)]
pub struct Workspace {
    pub repos: Vec<RepoState>,
}

impl Workspace {
    /// The repository holding `file`: the one with the longest root that contains it.
    pub fn find(&self, file: &Path) -> Option<usize> {
        self.repos
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.gone && file.starts_with(&r.root))
            .max_by_key(|(_, r)| r.root.as_os_str().len())
            .map(|(i, _)| i)
    }

    /// The repository holding `path` (a file or folder), opened if it is new to us; `Ok(None)`
    /// when it is not inside a git working tree.
    pub fn open(&mut self, path: &Path) -> Result<Option<usize>, String> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let start = if path.is_dir() { path.clone() } else { path.parent().map_or(path.clone(), Path::to_owned) };
        let Ok(repo) = Repo::discover(&start) else { return Ok(None) };
        let Some(workdir) = repo.workdir() else { return Ok(None) };
        let root = std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_owned());
        if let Some(i) = self.repos.iter().position(|r| r.root == root) {
            self.repos[i].gone = false;
            return Ok(Some(i));
        }
        let key = codemark::repo_key(&repo).map_err(|e| e.to_string())?;
        self.repos.push(RepoState {
            root,
            key,
            repo,
            marks: Vec::new(),
            places: HashMap::new(),
            head: None,
            gone: false,
        });
        Ok(Some(self.repos.len() - 1))
    }

    /// Opens the repositories of a workspace folder: the one it is in, and those nested in it.
    pub fn open_folder(&mut self, folder: &Path) -> Vec<usize> {
        let mut found = Vec::new();
        if let Ok(Some(i)) = self.open(folder) {
            found.push(i);
        }
        let mut queue = vec![(folder.to_owned(), 0)];
        let mut seen = 0;
        while let Some((dir, depth)) = queue.pop() {
            seen += 1;
            if seen > NESTED_FOLDERS {
                break;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name == ".git"
                    && dir != folder
                    && let Ok(Some(i)) = self.open(&dir)
                    && !found.contains(&i)
                {
                    found.push(i);
                }
                let skip = name.starts_with('.') || name == "node_modules" || name == "target";
                if !skip && depth < NESTED_DEPTH && e.file_type().is_ok_and(|t| t.is_dir()) {
                    queue.push((e.path(), depth + 1));
                }
            }
        }
        found
    }

    /// Reloads a repository's codemarks, turns pending anchors whose lines are now committed
    /// into anchors on that commit, and places every anchor in the working tree, counting in
    /// `pass` as it goes.
    pub fn refresh(&mut self, idx: usize, store: &Store, pass: &Pass) -> Result<(), String> {
        let rs = &mut self.repos[idx];
        if !rs.root.exists() {
            rs.gone = true;
            return Err(format!("the repository at {} is gone; its codemarks stay in the store", rs.root.display()));
        }
        // Reopened for every pass: the working tree's file list and renames are cached inside.
        rs.repo = Repo::open(&rs.root).map_err(|e| e.to_string())?;
        rs.head = rs.repo.head();
        let mut marks = store.of_repo(&rs.key).map_err(|e| e.to_string())?;
        let pending: Vec<&StoredAnchor> = marks.iter().flat_map(|c| &c.anchors).filter(|a| a.pending).collect();
        if !pending.is_empty() && !store.read_only() {
            let promoted = codemark::promote_pending(&rs.repo, &pending);
            for a in &promoted {
                store.update_anchor(a).map_err(|e| e.to_string())?;
            }
            if !promoted.is_empty() {
                marks = store.of_repo(&rs.key).map_err(|e| e.to_string())?;
            }
        }
        let anchors: Vec<&StoredAnchor> = marks.iter().flat_map(|c| &c.anchors).collect();
        pass.total.fetch_add(anchors.len(), Ordering::Relaxed);
        pass.counted.notify_one();
        let tick = || _ = pass.done.fetch_add(1, Ordering::Relaxed);
        rs.places = codemark::locate_in_worktree(&rs.repo, &anchors, store, &tick);
        rs.marks = marks;
        // The pass read every file with a codemark; an idle editor should not keep them all.
        if let Ok(fresh) = Repo::open(&rs.root) {
            rs.repo = fresh;
        }
        Ok(())
    }

    /// Replaces one codemark (after an edit) or drops it (when `fresh` is `None`).
    pub fn update_mark(&mut self, id: &str, fresh: Option<Codemark>) {
        for rs in &mut self.repos {
            if let Some(i) = rs.marks.iter().position(|c| c.id == id) {
                match fresh {
                    Some(c) => rs.marks[i] = c,
                    None => {
                        let gone = rs.marks.remove(i);
                        for a in gone.anchors {
                            rs.places.remove(&a.id);
                        }
                    }
                }
                return;
            }
        }
    }

    /// The codemarks a document can show, by id (one lookup per placed anchor, not a scan).
    pub fn marks_of(&self, home: Option<&(usize, String)>) -> HashMap<&str, &Codemark> {
        let Some(rs) = home.and_then(|(i, _)| self.repos.get(*i)) else { return HashMap::new() };
        rs.marks.iter().map(|c| (c.id.as_str(), c)).collect()
    }

    pub fn mark(&self, id: &str) -> Option<(usize, &Codemark)> {
        self.repos.iter().enumerate().find_map(|(i, rs)| rs.marks.iter().find(|c| c.id == id).map(|c| (i, c)))
    }

    /// Where the anchors that belong in `path` are in `text` (an editor buffer of that file):
    /// (codemark id, anchor id, where, anchored text).
    pub fn place(
        &self,
        idx: usize,
        path: &str,
        text: &str,
        store: &Store,
    ) -> Vec<(String, String, Relocation, Option<String>)> {
        let rs = &self.repos[idx];
        let here: Vec<(&Codemark, &StoredAnchor, &Relocation)> = rs
            .marks
            .iter()
            .flat_map(|c| c.anchors.iter().map(move |a| (c, a)))
            .filter_map(|(c, a)| match rs.places.get(&a.id) {
                Some(Located::Found(rel)) if rel.path == path => Some((c, a, rel)),
                _ => None,
            })
            .collect();
        if here.is_empty() {
            return Vec::new();
        }
        let out =
            |c: &Codemark, a: &StoredAnchor, rel: Relocation| (c.id.clone(), a.id.clone(), rel, a.anchor.text.clone());
        // The buffer is the file on disk (the usual case on open): the pass's answers hold. A
        // byte comparison, cheaper than hashing both.
        if std::fs::read(rs.root.join(path)).is_ok_and(|disk| disk == text.as_bytes()) {
            return here.into_iter().map(|(c, a, rel)| out(c, a, rel.clone())).collect();
        }
        let blob = ObjectId::of_blob(text.as_bytes());
        // The buffer differs from the file: remembered answers for this content, else the engine.
        let cache: &dyn LocationCache = store;
        let key = blob.to_string();
        let mut found = Vec::with_capacity(here.len());
        let mut todo = Vec::new();
        for (c, a, rel) in here {
            match cache.get(&a.id, &key) {
                Some(loc) => found.push(out(
                    c,
                    a,
                    Relocation { status: loc.status, path: loc.path, lines: loc.lines, via: rel.via },
                )),
                None => todo.push((c, a)),
            }
        }
        let anchors: Vec<&StoredAnchor> = todo.iter().map(|(_, a)| *a).collect();
        let text = Text::new(text.to_owned());
        for ((c, a), r) in todo.iter().zip(codemark::locate_in_text(&rs.repo, &anchors, path, &text)) {
            match r {
                Ok(rel) => {
                    cache.put(
                        &a.id,
                        &key,
                        &CachedLocation { status: rel.status, path: rel.path.clone(), lines: rel.lines },
                    );
                    found.push(out(c, a, rel));
                }
                Err(e) => tracing::debug!("placing anchor {} in {path}: {e}", a.id),
            }
        }
        found
    }
}
