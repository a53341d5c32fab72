//! The repositories the editor has open: found from the workspace folders (nested and several)
//! or from the files opened, each with its codemarks and where their anchors are in the working
//! tree. Blocking work: call it from `spawn_blocking`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::anchor::{LineRange, Relocation, Status, Text};
use crate::codemark::{self, CachedLocation, Codemark, Kind, LocationCache, MarkStatus, StoredAnchor};
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
    /// Where every anchor of the repository is in the working tree, from the last pass: anchor
    /// id to its codemark and the answer. All the memory an idle repository costs.
    pub places: HashMap<String, Place>,
    /// What a code lens shows of every codemark of the repository, by codemark id: with the
    /// places, a document's lenses need nothing from the store when it opens.
    pub summaries: HashMap<String, Summary>,
    /// Complete codemarks (threads), by id: those a hover or `marginalia/codemarks` asked for in
    /// an open document, or a command just touched. The others stay in the store until then.
    pub shown: HashMap<String, Codemark>,
    /// HEAD when the last pass ran, to notice commits, checkouts and pulls.
    pub head: Option<ObjectId>,
    /// Set when the repository's folder disappeared; its codemarks stay in the store.
    pub gone: bool,
}

/// The places again in fresh allocations, made once the pass's temporaries are freed: the
/// places' small strings were allocated among the pass's codemarks, and each page holding one
/// stayed resident after the rest was freed. Packed together, an idle editor keeps a few
/// megabytes less (glibc's allocator returns only whole free pages). The trim first merges the
/// freed memory into large free blocks, so the copies are carved from them side by side instead
/// of filling the holes between the old ones.
fn compact(
    places: HashMap<String, Place>,
    summaries: HashMap<String, Summary>,
) -> (HashMap<String, Place>, HashMap<String, Summary>) {
    super::memory::release();
    let fresh = places
        .iter()
        .map(|(anchor, p)| {
            let located = match &p.located {
                Located::Found(r) => Located::Found(Relocation { path: r.path.as_str().to_owned(), ..*r }),
                Located::Unknown(why) => Located::Unknown(why.as_str().to_owned()),
            };
            (anchor.as_str().to_owned(), Place { codemark: p.codemark.as_str().to_owned(), located })
        })
        .collect();
    drop(places);
    let summaries = summaries
        .iter()
        .map(|(id, s)| (id.as_str().to_owned(), Summary { headline: Box::from(&*s.headline), ..*s }))
        .collect();
    (fresh, summaries)
}

/// What a code lens or a diagnostic shows of a codemark.
#[derive(Clone, Debug)]
pub struct Summary {
    pub kind: Kind,
    pub status: MarkStatus,
    /// The codemark's body and its replies.
    pub comments: u32,
    /// The title, else the body's first line, cut short.
    pub headline: Box<str>,
}

impl Summary {
    pub fn of(c: &Codemark) -> Summary {
        Summary {
            kind: c.kind,
            status: c.status,
            comments: u32::try_from(1 + c.replies.len()).unwrap_or(u32::MAX),
            headline: super::views::headline(c, super::views::HEADLINE).into_boxed_str(),
        }
    }
}

/// Where one anchor is in the working tree.
#[derive(Clone, Debug)]
pub struct Place {
    pub codemark: String,
    pub located: Located,
}

/// One anchor placed in a document's text: (codemark id, anchor id, where, anchored text).
pub type Found = (String, String, Relocation, Option<String>);

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
            places: HashMap::new(),
            summaries: HashMap::new(),
            shown: HashMap::new(),
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
    /// `pass` as it goes. Only the answers are kept, and the codemarks already shown.
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
            // Shared codemarks tell the server too, so teammates place them by the commit.
            let me = codemark::author(Some(&rs.repo));
            for c in marks.iter().filter(|c| c.anchors.iter().any(|a| promoted.iter().any(|p| p.id == a.id))) {
                let mine: Vec<StoredAnchor> =
                    promoted.iter().filter(|p| c.anchors.iter().any(|a| a.id == p.id)).cloned().collect();
                crate::sync::outbox::rewrite_anchors(store, c, &mine, &me).map_err(|e| e.to_string())?;
            }
            if !promoted.is_empty() {
                marks = store.of_repo(&rs.key).map_err(|e| e.to_string())?;
            }
        }
        let anchors: Vec<&StoredAnchor> = marks.iter().flat_map(|c| &c.anchors).collect();
        pass.total.fetch_add(anchors.len(), Ordering::Relaxed);
        pass.counted.notify_one();
        let tick = || _ = pass.done.fetch_add(1, Ordering::Relaxed);
        let mut found = codemark::locate_in_worktree(&rs.repo, &anchors, store, &tick);
        let mut places = HashMap::with_capacity(found.len());
        let mut summaries = HashMap::with_capacity(marks.len());
        let mut shown = HashMap::with_capacity(rs.shown.len());
        for c in marks {
            summaries.insert(c.id.clone(), Summary::of(&c));
            for a in &c.anchors {
                if let Some(located) = found.remove(&a.id) {
                    places.insert(a.id.clone(), Place { codemark: c.id.clone(), located });
                }
            }
            if rs.shown.contains_key(&c.id) {
                shown.insert(c.id.clone(), c);
            }
        }
        drop(found);
        (rs.places, rs.summaries) = compact(places, summaries);
        rs.shown = shown;
        // The pass read every file with a codemark; an idle editor should not keep them all.
        if let Ok(fresh) = Repo::open(&rs.root) {
            rs.repo = fresh;
        }
        Ok(())
    }

    /// Takes codemarks that changed in the store behind our back (a teammate's, through the
    /// sync client): each is read again and its anchors placed in its repository's working tree;
    /// those gone from the store are dropped. Returns the repositories whose codemarks changed.
    pub fn apply_changed(&mut self, ids: &[String], store: &Store) -> Result<Vec<usize>, String> {
        let mut touched = Vec::new();
        let gone: HashSet<&str> = ids.iter().map(String::as_str).collect();
        for (i, rs) in self.repos.iter_mut().enumerate() {
            let before = rs.places.len() + rs.summaries.len() + rs.shown.len();
            rs.places.retain(|_, p| !gone.contains(p.codemark.as_str()));
            rs.summaries.retain(|id, _| !gone.contains(id.as_str()));
            rs.shown.retain(|id, _| !gone.contains(id.as_str()));
            if rs.places.len() + rs.summaries.len() + rs.shown.len() != before {
                touched.push(i);
            }
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        for c in store.get_many(&ids).map_err(|e| e.to_string())? {
            let Some(i) = self.repos.iter().position(|rs| rs.key == c.repo && !rs.gone) else { continue };
            let rs = &mut self.repos[i];
            // A fresh handle: the working tree may have changed since the last pass.
            let repo = Repo::open(&rs.root).map_err(|e| e.to_string())?;
            let anchors: Vec<&StoredAnchor> = c.anchors.iter().collect();
            for (anchor, located) in codemark::locate_in_worktree(&repo, &anchors, store, &|| {}) {
                rs.places.insert(anchor, Place { codemark: c.id.clone(), located });
            }
            rs.summaries.insert(c.id.clone(), Summary::of(&c));
            if !touched.contains(&i) {
                touched.push(i);
            }
        }
        Ok(touched)
    }

    /// Replaces one codemark (after an edit) or drops it (when `fresh` is `None`).
    pub fn update_mark(&mut self, id: &str, fresh: Option<Codemark>) {
        match fresh {
            Some(c) => {
                if let Some(rs) = self.repos.iter_mut().find(|rs| rs.key == c.repo) {
                    rs.summaries.insert(c.id.clone(), Summary::of(&c));
                    rs.shown.insert(c.id.clone(), c);
                }
            }
            None => {
                for rs in &mut self.repos {
                    rs.summaries.remove(id);
                    rs.shown.remove(id);
                    rs.places.retain(|_, p| p.codemark != id);
                }
            }
        }
    }

    /// Adds a codemark just made, placed at `here` in the working tree.
    pub fn add_mark(&mut self, idx: usize, c: Codemark, here: Relocation) {
        let rs = &mut self.repos[idx];
        for a in &c.anchors {
            rs.places.insert(a.id.clone(), Place { codemark: c.id.clone(), located: Located::Found(here.clone()) });
        }
        rs.summaries.insert(c.id.clone(), Summary::of(&c));
        rs.shown.insert(c.id.clone(), c);
    }

    /// Forgets the shown codemarks of a repository that no open document shows any more.
    pub fn keep_shown(&mut self, idx: usize, keep: &HashSet<String>) {
        if let Some(rs) = self.repos.get_mut(idx) {
            rs.shown.retain(|id, _| keep.contains(id));
        }
    }

    /// What the lenses of a document's codemarks show, by codemark id.
    pub fn summaries_of(&self, home: Option<&(usize, String)>) -> &HashMap<String, Summary> {
        static NONE: std::sync::LazyLock<HashMap<String, Summary>> = std::sync::LazyLock::new(HashMap::new);
        home.and_then(|(i, _)| self.repos.get(*i)).map_or(&NONE, |rs| &rs.summaries)
    }

    /// Reads the complete codemarks with these ids that are not in memory yet, to be shown;
    /// answers how many it read.
    pub fn show(&mut self, idx: usize, ids: &[&str], store: &Store) -> Result<usize, String> {
        let Some(rs) = self.repos.get_mut(idx) else { return Ok(0) };
        read_missing(&mut rs.shown, ids, store)
    }

    /// The complete codemarks in memory for a document, by id (see [`Workspace::show`]).
    pub fn marks_of(&self, home: Option<&(usize, String)>) -> &HashMap<String, Codemark> {
        static NONE: std::sync::LazyLock<HashMap<String, Codemark>> = std::sync::LazyLock::new(HashMap::new);
        home.and_then(|(i, _)| self.repos.get(*i)).map_or(&NONE, |rs| &rs.shown)
    }

    /// A codemark shown in a document, with its repository.
    pub fn mark(&self, id: &str) -> Option<(usize, &Codemark)> {
        self.repos.iter().enumerate().find_map(|(i, rs)| rs.shown.get(id).map(|c| (i, c)))
    }

    /// The repository a codemark belongs to, by its key.
    pub fn repo_of(&self, c: &Codemark) -> Option<usize> {
        self.repos.iter().position(|rs| rs.key == c.repo)
    }

    /// Where the anchors that belong in `path` are in `text` (an editor buffer of that file).
    /// When the buffer is the file on disk (the usual case on open), the pass's answers hold and
    /// nothing is read from the store; otherwise the codemarks are read and kept as shown.
    pub fn place(&mut self, idx: usize, path: &str, text: &str, store: &Store) -> Result<Vec<Found>, String> {
        let rs = &mut self.repos[idx];
        let here: HashMap<&str, &Relocation> = rs
            .places
            .iter()
            .filter_map(|(anchor, p)| match &p.located {
                Located::Found(rel) if rel.path == path => Some((anchor.as_str(), rel)),
                _ => None,
            })
            .collect();
        if here.is_empty() {
            return Ok(Vec::new());
        }
        // A byte comparison, cheaper than hashing both.
        if std::fs::read(rs.root.join(path)).is_ok_and(|disk| disk == text.as_bytes()) {
            let lines = LineStarts::of(text);
            let mut found: Vec<Found> = here
                .into_iter()
                .filter_map(|(anchor, rel)| {
                    let codemark = rs.places.get(anchor)?.codemark.clone();
                    // An intact anchor's lines read in the buffer as they were anchored.
                    let text = (rel.status == Status::Intact).then(|| lines.slice(text, rel.lines)).flatten();
                    Some((codemark, anchor.to_owned(), rel.clone(), text.map(str::to_owned)))
                })
                .collect();
            found.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            return Ok(found);
        }
        let mut ids: Vec<&str> = here.keys().filter_map(|a| rs.places.get(*a)).map(|p| p.codemark.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        read_missing(&mut rs.shown, &ids, store)?;
        let at = &here;
        let here: Vec<(&Codemark, &StoredAnchor, &Relocation)> = ids
            .iter()
            .filter_map(|id| rs.shown.get(*id))
            .flat_map(|c| c.anchors.iter().filter_map(move |a| at.get(a.id.as_str()).map(|rel| (c, a, *rel))))
            .collect();
        let out =
            |c: &Codemark, a: &StoredAnchor, rel: Relocation| (c.id.clone(), a.id.clone(), rel, a.anchor.text.clone());
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
        Ok(found)
    }
}

/// Reads into `shown` the complete codemarks with these ids that it lacks; answers how many.
fn read_missing(shown: &mut HashMap<String, Codemark>, ids: &[&str], store: &Store) -> Result<usize, String> {
    let mut missing: Vec<&str> = ids.iter().copied().filter(|id| !shown.contains_key(*id)).collect();
    missing.sort_unstable();
    missing.dedup();
    let read = store.get_many(&missing).map_err(|e| e.to_string())?;
    let n = read.len();
    for c in read {
        shown.insert(c.id.clone(), c);
    }
    Ok(n)
}

/// Where each line of a text starts, to cut whole lines out of it.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn of(text: &str) -> LineStarts {
        LineStarts(std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    /// Lines `lines` (1-based, inclusive) joined by their line breaks, without the last one;
    /// `None` past the end.
    fn slice<'t>(&self, text: &'t str, lines: LineRange) -> Option<&'t str> {
        let start = *self.0.get(lines.start as usize - 1)?;
        let end = match self.0.get(lines.end as usize) {
            Some(&next) => next - 1,
            None if (lines.end as usize) <= self.0.len() => text.len(),
            None => return None,
        };
        (start <= end).then(|| &text[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_are_cut_without_their_last_break() {
        let text = "one\ntwo\r\nthree";
        let lines = LineStarts::of(text);
        assert_eq!(lines.slice(text, LineRange::new(1, 1)), Some("one"));
        assert_eq!(lines.slice(text, LineRange::new(1, 2)), Some("one\ntwo\r"));
        assert_eq!(lines.slice(text, LineRange::new(3, 3)), Some("three"));
        assert_eq!(lines.slice(text, LineRange::new(3, 4)), None, "past the end");
        let ended = "one\ntwo\n";
        let lines = LineStarts::of(ended);
        assert_eq!(lines.slice(ended, LineRange::new(2, 2)), Some("two"));
        assert_eq!(lines.slice(ended, LineRange::new(3, 3)), Some(""), "the empty line after the last break");
        assert_eq!(lines.slice(ended, LineRange::new(4, 4)), None);
    }
}
