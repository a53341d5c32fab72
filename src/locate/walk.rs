//! Following an anchor through history, commit by commit: the route from its commit to the
//! target ([`Repo::route`]), the versions of its file along it (renames followed in the commit
//! that made them), each version's line diff applied to a [`Trail`], and lines lost in a step
//! looked for where that same step wrote new text. For the working tree, the last step is from
//! HEAD to the files on disk.

use std::sync::Arc;

use super::{Locator, MAX_SEARCH_FILE_BYTES};
use crate::anchor::trail::{Ending, Landing, Lost, Trail};
use crate::anchor::{Anchor, LineMap, Relocation, Text, Unlocatable, Via};
use crate::git::{GitError, ObjectId, Target};

/// Files a single step added or changed that are searched for lines it moved.
const MAX_LANDINGS: usize = 500;

impl Locator<'_> {
    /// Relocates `anchor` (lines of `old`, its file at `commit`) by following it through history.
    /// `None` when there is no route to follow (unrelated or cut-off history, no HEAD for the
    /// working tree): the caller then compares the two ends instead.
    pub(super) fn walk(
        &self,
        anchor: &Anchor,
        commit: ObjectId,
        old: &Text,
    ) -> Result<Option<Result<Relocation, Unlocatable>>, GitError> {
        let end = match self.target {
            Target::Commit(t) => t,
            Target::Worktree => match self.repo.head() {
                Some(h) => h,
                None => return Ok(None),
            },
        };
        let Some(route) = self.repo.route(commit, end)? else { return Ok(None) };
        tracing::trace!(steps = route.len() - 1, from = %commit.short(), to = %end.short(), "route");
        let mut trail = Trail::new(&anchor.path, old, anchor.lines);
        let mut s = 0;
        while s < trail.slots().len() {
            self.follow_slot(&mut trail, s, &route)?;
            s += 1;
        }
        if self.target == Target::Worktree {
            let walked = trail.slots().len();
            for s in 0..walked {
                self.onto_disk(&mut trail, s, end, route.len())?;
            }
        }
        let ends: Vec<Option<Arc<Text>>> =
            trail.slots().iter().map(|slot| self.file(&slot.path).ok().flatten().map(|f| f.text)).collect();
        let Ending { status, path, lines, moved } =
            trail.finish(&|slot| ends[slot].as_deref(), (&anchor.path, anchor.lines));
        if ends.iter().flatten().any(|t| t.is_binary()) && status != crate::anchor::Status::Deleted {
            return Ok(Some(Err(Unlocatable::Binary { path })));
        }
        let via = if moved { Via::Search } else { Via::Diff };
        Ok(Some(Ok(Relocation { status, path, lines, via })))
    }

    /// Follows the lines in slot `s` from the step it starts at to the end of the route: every
    /// version of its file, each diffed against the one before (diffs are shared by every anchor
    /// on that file), renames followed in the step that made them.
    fn follow_slot(&self, trail: &mut Trail, s: usize, route: &[ObjectId]) -> Result<(), GitError> {
        let mut path = trail.slots()[s].path.clone();
        let mut from = trail.slots()[s].since;
        let Some(mut before) = self.repo.blob_at(route[from], &path)? else {
            trail.gone(s);
            return Ok(());
        };
        let last = route.len() - 1;
        'versions: loop {
            let points = self.repo.change_points(route, &path, from)?;

            // Nothing left but the place the lines were last seen: one diff to the last version of
            // the file stands for all of them.
            if let Some(&end) = points.last()
                && !trail.holds(s)
                && let Some(after) = self.repo.blob_at(route[end], &path)?.filter(|_| end == last || points.len() > 1)
                && let (Some(old), Some(new)) = (self.own_blob(before, &path), self.own_blob(after, &path))
            {
                let map = self.line_map(before, &old, after, &new);
                if trail.kept_through(s, &old, &new, &map) {
                    trail.step(s, &old, &new, &map, None, end);
                    tracing::trace!(step = end, %path, "last seen, carried to the end");
                    return Ok(());
                }
            }
            for j in points {
                if !trail.follows(s) {
                    return Ok(());
                }
                let (parent, next) = (route[j - 1], Target::Commit(route[j]));
                let Some(old) = self.own_blob(before, &path) else {
                    trail.gone(s);
                    return Ok(());
                };
                let after = match self.repo.blob_at(route[j], &path)? {
                    Some(after) => Some((path.clone(), after)),
                    // Gone in this step: renamed, or deleted (its code may live on in the files
                    // the same step wrote).
                    None => match self.repo.renamed_in(parent, &path, next)? {
                        Some(q) => self.repo.blob_at(route[j], &q)?.map(|b| (q, b)),
                        None => None,
                    },
                };
                let Some((new, (q, after))) = after.and_then(|(q, b)| Some((self.own_blob(b, &q)?, (q, b)))) else {
                    tracing::trace!(step = j, commit = %route[j].short(), %path, "gone");
                    let lost = trail.gone(s);
                    return self.elsewhere(trail, &lost, &old, (parent, next), j, s, None);
                };
                // Most versions change lines elsewhere in the file: they only shift the followed
                // ones, which their common start and end tell without a diff.
                let shifted = q == path && trail.shift(s, self.edges(before, &old, after, &new), &old, &new);
                if shifted {
                    before = after;
                    continue;
                }
                let map = self.line_map(before, &old, after, &new);
                let lost = self.step(trail, s, (&old, &new, &map), &q, j);
                self.elsewhere(trail, &lost, &old, (parent, next), j, s, Some(&q))?;
                tracing::trace!(step = j, commit = %route[j].short(), path = %q, at = ?trail.lines_in(s), "version");
                before = after;
                if q != path {
                    tracing::trace!(step = j, from = %path, to = %q, "renamed");
                    trail.renamed(s, &q);
                    path = q;
                    from = j;
                    continue 'versions;
                }
            }
            return Ok(());
        }
    }

    /// One version of slot `s`'s file (now at `path`), with what the step wrote in that file
    /// when the step disturbs the followed lines. Returns the lines still lost.
    fn step(
        &self,
        trail: &mut Trail,
        s: usize,
        (old, new, map): (&Text, &Text, &LineMap),
        path: &str,
        j: usize,
    ) -> Vec<Lost> {
        let fresh = trail.disturbed(s, old, new, map).then(|| map.fresh());
        let own = fresh.as_deref().map(|fresh| Landing { path, text: new, fresh });
        trail.step(s, old, new, map, own, j)
    }

    /// Looks for meaningful lines lost from slot `s` in the step from `parent` to `child` in
    /// every other file that step added or changed (code moved between files, a file split).
    #[allow(clippy::too_many_arguments)]
    fn elsewhere(
        &self,
        trail: &mut Trail,
        lost: &[Lost],
        old: &Text,
        (parent, child): (ObjectId, Target),
        j: usize,
        s: usize,
        own: Option<&str>,
    ) -> Result<(), GitError> {
        let wanted = trail.evidence(lost, old);
        if wanted.is_empty() {
            return Ok(());
        }
        let landings = self.landings(parent, child, own, &wanted)?;
        trail.rescue(lost, old, &landings.borrowed(), j, s);
        Ok(())
    }

    /// The last step for the working tree: from HEAD to the file on disk (renamed or moved
    /// without telling git included).
    fn onto_disk(&self, trail: &mut Trail, s: usize, head: ObjectId, step: usize) -> Result<(), GitError> {
        if !trail.follows(s) {
            return Ok(());
        }
        let path = trail.slots()[s].path.clone();
        let Some(before) = self.repo.blob_at(head, &path)? else { return Ok(()) };
        let Some(old) = self.own_blob(before, &path) else { return Ok(()) };
        let on_disk = match self.repo.follow(head, &path, Target::Worktree)? {
            Some(p) => self.file(&p)?.filter(|f| !f.text.is_binary()).map(|f| (p, f)),
            None => None,
        };
        let Some((p, file)) = on_disk else {
            let lost = trail.gone(s);
            return self.elsewhere(trail, &lost, &old, (head, Target::Worktree), step, s, None);
        };
        if file.id == before && p == path {
            return Ok(());
        }
        let map = self.line_map(before, &old, file.id, &file.text);
        let lost = self.step(trail, s, (&old, &file.text, &map), &p, step);
        self.elsewhere(trail, &lost, &old, (head, Target::Worktree), step, s, Some(&p))?;
        if p != path {
            trail.renamed(s, &p);
        }
        Ok(())
    }

    /// The files the step from `parent` to `child` added or changed, but `own`, that hold one
    /// of the `wanted` lines (squashed hashes), with the lines the step wrote in them.
    fn landings(
        &self,
        parent: ObjectId,
        child: Target,
        own: Option<&str>,
        wanted: &[u64],
    ) -> Result<Landings, GitError> {
        let written = self.written(parent, child)?;
        let mut files: Vec<u32> = wanted.iter().filter_map(|h| written.by_line.get(h)).flatten().copied().collect();
        files.sort_unstable();
        files.dedup();
        let mut out = Landings::default();
        for k in files {
            let (path, new_id, new, old_id) = &written.files[k as usize];
            if own == Some(path.as_str()) {
                continue;
            }
            let fresh = match old_id.and_then(|id| Some((id, self.readable_blob(id, path)?))) {
                Some((old_id, before)) => self.line_map(old_id, &before, *new_id, new).fresh(),
                None => vec![true; new.len()],
            };
            out.0.push((path.clone(), new.clone(), fresh));
        }
        Ok(out)
    }

    /// What the step from `parent` to `child` wrote: the texts of the files it added or changed,
    /// and which of them hold each line. Built once per step and shared by every anchor that
    /// lost lines in it (a merge that reorganised a crate is searched once, not per anchor).
    fn written(&self, parent: ObjectId, child: Target) -> Result<Arc<Written>, GitError> {
        if let Some(w) = self.written.borrow().get(&(parent, child)) {
            return Ok(w.clone());
        }
        let mut written = Written::default();
        let changes = self.repo.changes(parent, child)?;
        for c in changes.iter().take(MAX_LANDINGS) {
            let new = match c.new {
                Some(id) => self.readable_blob(id, &c.path).map(|t| (id, t)),
                None => self.file(&c.path)?.filter(|f| readable(&f.text)).map(|f| (f.id, f.text)),
            };
            let Some((id, text)) = new else { continue };
            let k = written.files.len() as u32;
            for &h in text.index().keys() {
                written.by_line.entry(h).or_default().push(k);
            }
            written.files.push((c.path.clone(), id, text, c.old));
        }
        let written = Arc::new(written);
        self.written.borrow_mut().insert((parent, child), written.clone());
        Ok(written)
    }

    /// The lines two versions share at their start and end ([`Text::common_edges`]), once per
    /// pair of versions.
    fn edges(&self, old_id: ObjectId, old: &Text, new_id: ObjectId, new: &Text) -> (u32, u32) {
        *self.edges.borrow_mut().entry((old_id, new_id)).or_insert_with(|| old.common_edges(new))
    }

    /// A version of a file being followed: any text (a binary version ends the trail there).
    fn own_blob(&self, id: ObjectId, path: &str) -> Option<Arc<Text>> {
        self.repo.text(id, path).ok().filter(|t| !t.is_binary())
    }

    /// A blob's text when it can be searched for moved lines: not binary, not huge.
    fn readable_blob(&self, id: ObjectId, path: &str) -> Option<Arc<Text>> {
        self.repo.text(id, path).ok().filter(|t| readable(t))
    }
}

/// The files a step added or changed (path, new blob, its text, old blob if it was there), and
/// for each squashed line, the files holding it.
#[derive(Default)]
pub(super) struct Written {
    files: Vec<(String, ObjectId, Arc<Text>, Option<ObjectId>)>,
    by_line: rustc_hash::FxHashMap<u64, Vec<u32>>,
}

/// Texts a step wrote, owned, with their fresh lines.
#[derive(Default)]
struct Landings(Vec<(String, Arc<Text>, Vec<bool>)>);

impl Landings {
    fn borrowed(&self) -> Vec<Landing<'_>> {
        self.0.iter().map(|(path, text, fresh)| Landing { path, text, fresh }).collect()
    }
}

fn readable(text: &Text) -> bool {
    !text.is_binary() && text.as_str().len() <= MAX_SEARCH_FILE_BYTES
}
