//! Routes through history: the commits an anchor's lines are followed through, one parent or
//! child at a time, from the anchor's commit to the target.
//!
//! - **Forward** (the anchor's commit is an ancestor of the target): one topological walk of
//!   the target's history gives every ancestor the child it continues through, preferring
//!   first-parent edges (the mainline, where each step is one merge or one commit) over the
//!   second parent of a merge. Built once per target and shared by every anchor.
//! - **Backward** (the target is older, as when a teammate checks out a release): every
//!   descendant of the target gets the parent it goes back through, again first parents first.
//!   A batch names its commits up front ([`Repo::prepare_routes`]) so one walk serves them all.
//! - **Diverged** (the anchor is on another branch): back to the merge base, then forward.
//!
//! Routes are plain lists of commits; what changed along them is read per path by bisection
//! (`Repo::change_points`), so a file that changed 20 times in 3,000 commits costs about 20
//! diffs and a few hundred tree lookups, never 3,000.

use std::collections::HashMap;
use std::sync::Arc;

use super::{GitError, ObjectId, Repo};

/// Commits examined by one walk before giving up on routes (the anchor is then relocated
/// across the whole range at once).
const MAX_WALK: usize = 300_000;

/// A route: the anchor's commit first, the target last, each a parent or child of the one
/// before.
pub type Route = Arc<[ObjectId]>;

/// For one target: every ancestor and the child to continue through, with how many
/// second-parent edges the route from it takes.
#[derive(Default)]
pub(super) struct Toward {
    next: HashMap<ObjectId, (ObjectId, u32)>,
}

/// For one older commit (a pivot): descendants walked so far and the parent to go back
/// through, with how many second-parent edges that takes.
#[derive(Default)]
pub(super) struct Down {
    prev: HashMap<ObjectId, (ObjectId, u32)>,
    /// Commits whose ancestry down to the pivot has been walked.
    tips: Vec<ObjectId>,
}

impl Repo {
    /// The commits from `from` to `to`; `None` when the histories do not meet here (unrelated,
    /// cut off by a shallow clone) or the walk would be too long.
    pub fn route(&self, from: ObjectId, to: ObjectId) -> Result<Option<Route>, GitError> {
        if from == to {
            return Ok(Some(Arc::from(vec![from])));
        }
        if let Some(r) = self.forward(from, to)? {
            return Ok(Some(r.into()));
        }
        if let Some(r) = self.backward(from, to)? {
            return Ok(Some(r.into()));
        }
        let Some(base) = self.common_ancestor(from, to) else { return Ok(None) };
        let (Some(mut back), Some(forth)) = (self.backward(from, base)?, self.forward(base, to)?) else {
            return Ok(None);
        };
        back.extend_from_slice(&forth[1..]);
        Ok(Some(back.into()))
    }

    /// Walks, in one pass, the ancestry of every commit in `commits` that is newer than `to`,
    /// so the backward routes of a batch share one walk.
    pub fn prepare_routes(&self, commits: &[ObjectId], to: ObjectId) -> Result<(), GitError> {
        self.toward(to)?;
        let newer: Vec<ObjectId> = {
            let toward = self.toward.borrow();
            let t = &toward[&to];
            commits.iter().copied().filter(|c| *c != to && !t.next.contains_key(c)).collect()
        };
        if !newer.is_empty() {
            self.walk_down(&newer, to)?;
        }
        Ok(())
    }

    fn forward(&self, from: ObjectId, to: ObjectId) -> Result<Option<Vec<ObjectId>>, GitError> {
        if from == to {
            return Ok(Some(vec![from]));
        }
        self.toward(to)?;
        let toward = self.toward.borrow();
        let next = &toward[&to].next;
        if !next.contains_key(&from) {
            return Ok(None);
        }
        Ok(chain(next, from, to))
    }

    fn backward(&self, from: ObjectId, to: ObjectId) -> Result<Option<Vec<ObjectId>>, GitError> {
        if from == to {
            return Ok(Some(vec![from]));
        }
        let known = self.down.borrow().get(&to).is_some_and(|d| d.prev.contains_key(&from) || d.tips.contains(&from));
        if !known {
            self.walk_down(&[from], to)?;
        }
        let down = self.down.borrow();
        let Some(prev) = down.get(&to).map(|d| &d.prev) else { return Ok(None) };
        if !prev.contains_key(&from) {
            return Ok(None);
        }
        Ok(chain(prev, from, to))
    }

    /// Builds the forward map of `to` (once): its ancestors and their parents, then, children
    /// before parents (Kahn's order), each parent offered the route of each child.
    fn toward(&self, to: ObjectId) -> Result<(), GitError> {
        if self.toward.borrow().contains_key(&to) {
            return Ok(());
        }
        let graph = self.ancestry(&[to], &|_| false)?;
        let mut children: HashMap<ObjectId, u32> = HashMap::with_capacity(graph.len());
        for parents in graph.values() {
            for p in parents.iter().filter(|p| graph.contains_key(p)) {
                *children.entry(*p).or_default() += 1;
            }
        }
        let mut next: HashMap<ObjectId, (ObjectId, u32)> = HashMap::with_capacity(graph.len());
        let mut ready = vec![(to, 0u32)];
        while let Some((id, here)) = ready.pop() {
            for (i, &p) in graph[&id].iter().enumerate() {
                let cost = here + u32::from(i > 0);
                if next.get(&p).is_none_or(|&(_, l)| cost < l) {
                    next.insert(p, (id, cost));
                }
                let Some(left) = children.get_mut(&p) else { continue };
                *left -= 1;
                if *left == 0 {
                    ready.push((p, next[&p].1));
                }
            }
        }
        self.toward.borrow_mut().insert(to, Toward { next });
        Ok(())
    }

    /// The commits reachable from `tips` through parents, with their parents, not going past
    /// commits where `stop` is true (nor listing them); at most `MAX_WALK` commits.
    fn ancestry(
        &self,
        tips: &[ObjectId],
        stop: &dyn Fn(ObjectId) -> bool,
    ) -> Result<HashMap<ObjectId, Vec<ObjectId>>, GitError> {
        let mut graph: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
        let mut queue: Vec<ObjectId> = tips.iter().copied().filter(|&t| !stop(t)).collect();
        while let Some(id) = queue.pop() {
            if graph.contains_key(&id) {
                continue;
            }
            if graph.len() >= MAX_WALK {
                break;
            }
            // A commit cut off by a shallow clone has no object: it ends the walk there.
            let Ok(commit) = self.repo.find_commit(id.0) else { continue };
            let parents: Vec<ObjectId> = commit.parent_ids().map(ObjectId).collect();
            queue.extend(parents.iter().copied().filter(|&p| !stop(p) && !graph.contains_key(&p)));
            graph.insert(id, parents);
        }
        Ok(graph)
    }

    /// Extends the backward map of `pivot` with the ancestry of `tips` down to it: the commits
    /// between (not the pivot's own ancestors, nor commits walked before), parents before
    /// children, each reaching the pivot through a parent that is it or reaches it.
    fn walk_down(&self, tips: &[ObjectId], pivot: ObjectId) -> Result<(), GitError> {
        self.toward(pivot)?;
        let toward = self.toward.borrow();
        let older = &toward[&pivot].next;
        let mut down = self.down.borrow_mut();
        let d = down.entry(pivot).or_default();
        let graph = self.ancestry(tips, &|c| c == pivot || older.contains_key(&c) || d.prev.contains_key(&c))?;
        // Kahn's order the other way: a commit once all its parents in the walk are settled.
        let mut waiting: HashMap<ObjectId, usize> = HashMap::with_capacity(graph.len());
        let mut children: HashMap<ObjectId, Vec<ObjectId>> = HashMap::with_capacity(graph.len());
        let mut ready: Vec<ObjectId> = Vec::new();
        for (&id, parents) in &graph {
            let inside = parents.iter().filter(|p| graph.contains_key(p)).count();
            for p in parents.iter().filter(|p| graph.contains_key(p)) {
                children.entry(*p).or_default().push(id);
            }
            if inside == 0 {
                ready.push(id);
            } else {
                waiting.insert(id, inside);
            }
        }
        while let Some(id) = ready.pop() {
            let mut best: Option<(ObjectId, u32)> = None;
            for (i, &p) in graph[&id].iter().enumerate() {
                let base = if p == pivot { Some(0) } else { d.prev.get(&p).map(|&(_, l)| l) };
                if let Some(l) = base {
                    let cost = l + u32::from(i > 0);
                    if best.is_none_or(|(_, b)| cost < b) {
                        best = Some((p, cost));
                    }
                }
            }
            if let Some(b) = best {
                d.prev.insert(id, b);
            }
            for c in children.get(&id).into_iter().flatten() {
                let w = waiting.get_mut(c).expect("a child waits for its parents");
                *w -= 1;
                if *w == 0 {
                    ready.push(*c);
                }
            }
        }
        d.tips.extend_from_slice(tips);
        Ok(())
    }

    /// Indexes into `route` (after `from`) where the blob at `path` differs from the commit
    /// before it, in order. Found by bisection: a stretch whose two ends hold the same blob is
    /// taken as unchanged (a change undone inside it leaves the same lines anyway).
    pub fn change_points(&self, route: &[ObjectId], path: &str, from: usize) -> Result<Vec<usize>, GitError> {
        let mut out = Vec::new();
        if from + 1 >= route.len() {
            return Ok(out);
        }
        let last = route.len() - 1;
        let a = self.blob_at(route[from], path)?;
        let b = self.blob_at(route[last], path)?;
        self.split(route, path, (from, a), (last, b), &mut out)?;
        Ok(out)
    }

    fn split(
        &self,
        route: &[ObjectId],
        path: &str,
        (lo, a): (usize, Option<ObjectId>),
        (hi, b): (usize, Option<ObjectId>),
        out: &mut Vec<usize>,
    ) -> Result<(), GitError> {
        if a == b {
            return Ok(());
        }
        if hi == lo + 1 {
            out.push(hi);
            return Ok(());
        }
        let mid = lo + (hi - lo) / 2;
        let m = self.blob_at(route[mid], path)?;
        self.split(route, path, (lo, a), (mid, m), out)?;
        self.split(route, path, (mid, m), (hi, b), out)
    }
}

/// The commits from `from` to `to` through `links` (each commit's next one on the way), when
/// the links lead there.
fn chain(links: &HashMap<ObjectId, (ObjectId, u32)>, from: ObjectId, to: ObjectId) -> Option<Vec<ObjectId>> {
    let mut route = vec![from];
    let mut at = from;
    while let Some(&(step, _)) = links.get(&at) {
        route.push(step);
        at = step;
    }
    (at == to).then_some(route)
}
