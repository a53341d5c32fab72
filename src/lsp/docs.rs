//! Open documents: their text, and the codemark anchors placed in them, followed through every
//! edit as it is typed (the engine's edit mapping, no re-diffing).
//!
//! The LSP transport runs handlers concurrently, so `didChange` notifications can arrive here
//! out of order. Edits are applied strictly in version order: a change whose version is not
//! the next one waits in `stash` until the ones before it arrive. Versions need not be
//! consecutive (Neovim's are not), so a gap that nothing fills within [`GAP_WAIT`] is accepted
//! and the waiting changes are applied in order.

use std::collections::BTreeMap;
use std::time::Duration;

use tower_lsp_server::ls_types as lsp;

use crate::anchor::track::{LineChange, Tracked, Tracker};
use crate::anchor::{Document, LineRange, Relocation, Status};

use super::proto::{BadPosition, Encoding, from_lsp};

/// How long a change waits for an earlier version before the gap is taken as real.
pub const GAP_WAIT: Duration = Duration::from_millis(100);

/// Documents larger than this are not tracked (a message says so).
pub const MAX_DOCUMENT_BYTES: usize = crate::git::MAX_FILE_BYTES;

/// One anchor placed in a document.
#[derive(Clone, Debug)]
pub struct Placed {
    pub codemark: String,
    pub anchor: String,
    /// Its index in the document's tracker.
    pub slot: usize,
    /// The answer when it was placed; live edits inside an intact anchor make it modified.
    pub status: Status,
    /// The anchored lines, to tell whether the buffer still holds them unchanged.
    pub text: Option<String>,
    /// Added here by a command, and not yet confirmed by a placement: a placement computed
    /// before the codemark existed must not drop it.
    pub fresh: bool,
}

/// Where a placed anchor is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub status: Status,
    /// 0-based inclusive lines; for a deleted anchor, the line where it used to be (start ==
    /// end).
    pub start: u32,
    pub end: u32,
}

pub struct Doc {
    pub version: i32,
    pub text: Document,
    /// The file's repository (an index into the workspace's repositories) and path in it.
    pub home: Option<(usize, String)>,
    /// Why the document has no codemarks, when it cannot have any (binary, too large, outside
    /// any repository).
    pub unplaceable: Option<String>,
    pub placed: Vec<Placed>,
    tracker: Tracker,
    stash: BTreeMap<i32, Vec<lsp::TextDocumentContentChangeEvent>>,
    /// Line changes applied since the oldest placement still being computed, by version, so a
    /// placement computed on an older text can be brought up to date.
    log: Vec<(i32, LineChange)>,
    pub placing: u32,
    /// Just opened: where it belongs is still being found.
    pub opening: bool,
    /// A full-text replacement arrived: placements must be computed again.
    pub replaced: bool,
}

/// What applying changes did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Changes applied (0 when the change waits for an earlier version or was stale).
    pub applied: usize,
    /// Versions now waiting for an earlier one.
    pub waiting: usize,
    pub warnings: Vec<String>,
}

impl Doc {
    pub fn new(version: i32, text: String) -> Doc {
        Doc {
            version,
            text: Document::new(text),
            home: None,
            unplaceable: None,
            placed: Vec::new(),
            tracker: Tracker::default(),
            stash: BTreeMap::new(),
            log: Vec::new(),
            placing: 0,
            opening: false,
            replaced: false,
        }
    }

    /// Takes `changes` of `version`, applying it (and any waiting successors) when it is next.
    pub fn change(
        &mut self,
        version: i32,
        changes: Vec<lsp::TextDocumentContentChangeEvent>,
        enc: Encoding,
    ) -> Applied {
        let mut out = Applied::default();
        if version <= self.version {
            out.warnings.push(format!(
                "ignored a change to version {version}: the document is already at version {}",
                self.version
            ));
            return out;
        }
        self.stash.insert(version, changes);
        let next = self.version + 1;
        if *self.stash.keys().next().expect("just inserted") == next {
            self.drain(enc, &mut out, false);
        }
        out.waiting = self.stash.len();
        out
    }

    /// Applies the waiting changes in version order: only consecutive ones, or, when `gap` is
    /// set (the wait for a missing version is over), all of them.
    pub fn drain(&mut self, enc: Encoding, out: &mut Applied, gap: bool) {
        while let Some(entry) = self.stash.first_entry() {
            if !gap && *entry.key() != self.version + 1 {
                break;
            }
            let (version, changes) = entry.remove_entry();
            for c in changes {
                self.apply_one(c, version, enc, &mut out.warnings);
            }
            self.version = version;
            out.applied += 1;
        }
        out.waiting = self.stash.len();
    }

    pub fn has_waiting(&self) -> bool {
        !self.stash.is_empty()
    }

    fn apply_one(&mut self, c: lsp::TextDocumentContentChangeEvent, version: i32, enc: Encoding, w: &mut Vec<String>) {
        let Some(range) = c.range else {
            self.text = Document::new(c.text);
            self.replaced = true;
            return;
        };
        let (start, bad_start) = from_lsp(&self.text, range.start, enc);
        let (end, bad_end) = from_lsp(&self.text, range.end, enc);
        for bad in [bad_start, bad_end].into_iter().flatten() {
            // Past the end is allowed by LSP and means the end; say so only for real errors.
            if matches!(bad, BadPosition::InsideCharacter { .. }) {
                w.push(format!("change to version {version}: {bad}; applied at the character's start"));
            }
        }
        if let Some(hunk) = self.text.apply(start, end, &c.text) {
            let change = LineChange::single(hunk);
            if !self.tracker.is_empty() {
                self.tracker.apply(&change);
            }
            if self.placing > 0 {
                self.log.push((version, change));
            }
        }
    }

    /// Starts a placement on the current text; returns the version it is computed for.
    pub fn begin_placing(&mut self) -> i32 {
        self.placing += 1;
        self.replaced = false;
        self.version
    }

    /// Installs placements computed for `version`, mapped through the edits made since.
    pub fn finish_placing(&mut self, version: i32, found: Vec<(String, String, Relocation, Option<String>)>) {
        self.placing = self.placing.saturating_sub(1);
        let mut tracker = Tracker::default();
        let mut placed = Vec::with_capacity(found.len());
        let last = self.text.line_count().max(1);
        for (codemark, anchor, rel, text) in found {
            let end = rel.lines.end.clamp(1, last);
            let slot = tracker.push(LineRange::new(rel.lines.start.clamp(1, end), end));
            placed.push(Placed { codemark, anchor, slot, status: rel.status, text, fresh: false });
        }
        for (_, change) in self.log.iter().filter(|(v, _)| *v > version) {
            tracker.apply(change);
        }
        let kept: Vec<Placed> =
            self.placed.iter().filter(|p| p.fresh && !placed.iter().any(|q| q.anchor == p.anchor)).cloned().collect();
        for p in kept {
            if let Tracked::At(r) = self.tracker.get(p.slot) {
                let slot = tracker.push(r);
                placed.push(Placed { slot, ..p });
            }
        }
        if self.placing == 0 {
            self.log.clear();
        }
        self.tracker = tracker;
        self.placed = placed;
    }

    /// Adds one anchor at `lines` of the current text (a codemark just made here).
    pub fn add(&mut self, codemark: String, anchor: String, lines: LineRange, text: Option<String>) {
        if self.placed.iter().any(|p| p.anchor == anchor) {
            return; // a placement that ran meanwhile already has it
        }
        let slot = self.tracker.push(lines);
        self.placed.push(Placed { codemark, anchor, slot, status: Status::Intact, text, fresh: true });
    }

    /// Where `p` is now. An intact anchor whose lines no longer read as they did is modified.
    pub fn current(&self, p: &Placed) -> Current {
        match self.tracker.get(p.slot) {
            Tracked::At(r) if p.status == Status::Deleted => {
                Current { status: Status::Deleted, start: r.start - 1, end: r.start - 1 }
            }
            Tracked::At(r) => {
                let status = if p.status == Status::Intact && !self.reads(r, p.text.as_deref()) {
                    Status::Modified
                } else {
                    p.status
                };
                Current { status, start: r.start - 1, end: (r.end - 1).min(self.text.line_count().saturating_sub(1)) }
            }
            Tracked::Gone(at) => {
                let line = at.min(self.text.line_count().saturating_sub(1));
                Current { status: Status::Deleted, start: line, end: line }
            }
        }
    }

    fn reads(&self, r: LineRange, text: Option<&str>) -> bool {
        let Some(text) = text else { return true };
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        (r.start - 1..r.end).all(|i| lines.next() == Some(self.text.line(i))) && lines.next().is_none()
    }
}
