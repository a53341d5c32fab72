//! Accuracy against git's own provenance.
//!
//! Truth: a line anchored at commit C survives at target T where `git blame -w -M -C` at T
//! attributes a line to the same origin (commit, path, line) that blame at C gives the
//! anchored line. From the surviving lines:
//! - none: `deleted`;
//! - one group of them, every anchored line present once, in order, contiguous, with the same
//!   text: `intact` at those lines; otherwise `modified`, spanning the survivors;
//! - several groups (the code was copied and blame traces every copy to the origin): the code
//!   now lives in more than one place, so the only honest status is `modified`, at any group.
//!
//! One justified departure, marked on its case: a range whose every line was edited in place
//! has no survivors for blame, but the issue asks for `modified` at the edited lines.
//!
//! The baseline is the plain approach: one `git diff -M -U0 C T`, ranges mapped through its
//! hunks (untouched: intact; partly touched: modified; all lines in hunks: deleted).
//!
//! Exact range: our lines equal a survivor group's span. Range ok: they cover a group's span
//! and add only lines written after C (the edited lines blame cannot tie to the anchor).
//!
//! `ACCURACY_TRACE=1 cargo test --test accuracy -- --nocapture` prints every case.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::Scratch;
use marginalia::anchor::{Anchor, LineRange};
use marginalia::git::{Repo, Target};
use marginalia::locate::{Located, Locator};

// ---------- a model of files made of named blocks, to script histories ----------

#[derive(Clone, Debug)]
struct Block {
    name: String,
    lines: Vec<String>,
}

fn function(name: &str, body: usize, salt: u64) -> Block {
    let mut lines = vec![format!("fn {name}(input: &Input) -> Output {{")];
    for i in 0..body as u64 {
        lines.push(format!(
            "    let {name}_{i} = transform_{}(input, {});",
            (salt + i) % 17,
            (salt * 31 + i * 7) % 1000
        ));
    }
    lines.push(format!("    combine_{name}(input)"));
    lines.push("}".into());
    Block { name: name.into(), lines }
}

#[derive(Clone, Default)]
struct Model {
    files: BTreeMap<String, Vec<Block>>,
}

impl Model {
    fn render(&self, path: &str) -> String {
        let mut out = String::new();
        for b in &self.files[path] {
            for l in &b.lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push('\n');
        }
        out
    }

    /// 1-based lines of block `name` in `path`.
    fn lines_of(&self, path: &str, name: &str) -> (u32, u32) {
        let mut line = 1u32;
        for b in &self.files[path] {
            if b.name == name {
                return (line, line + b.lines.len() as u32 - 1);
            }
            line += b.lines.len() as u32 + 1;
        }
        panic!("no block {name} in {path}");
    }

    fn block(&mut self, path: &str, name: &str) -> &mut Block {
        self.files.get_mut(path).unwrap().iter_mut().find(|b| b.name == name).unwrap()
    }

    fn take(&mut self, path: &str, name: &str) -> Block {
        let blocks = self.files.get_mut(path).unwrap();
        let i = blocks.iter().position(|b| b.name == name).unwrap();
        blocks.remove(i)
    }

    fn put(&mut self, path: &str, at: usize, block: Block) {
        let blocks = self.files.entry(path.into()).or_default();
        let at = at.min(blocks.len());
        blocks.insert(at, block);
    }

    /// Writes every file and commits; files no longer in the model are removed.
    fn commit(&self, r: &Scratch, message: &str) -> String {
        let tracked = r.git(&["ls-files"]);
        for p in tracked.lines() {
            if !self.files.contains_key(p) {
                r.git(&["rm", "-q", p]);
            }
        }
        for p in self.files.keys() {
            r.write(p, self.render(p));
        }
        r.commit(message)
    }

    fn rename(&mut self, r: &Scratch, from: &str, to: &str) {
        r.mv(from, to);
        let blocks = self.files.remove(from).unwrap();
        self.files.insert(to.into(), blocks);
    }
}

fn file_of(prefix: &str, count: usize, body: usize) -> Vec<Block> {
    (0..count).map(|i| function(&format!("{prefix}{i}"), body, (i * 13) as u64)).collect()
}

/// An anchored range to check.
#[derive(Clone, Debug)]
struct Spec {
    label: String,
    commit: String,
    path: String,
    start: u32,
    end: u32,
    /// A justified departure from blame's answer: the status we must give instead, and why.
    instead: Option<(&'static str, &'static str)>,
}

fn spec(label: &str, commit: &str, path: &str, (start, end): (u32, u32)) -> Spec {
    Spec { label: label.into(), commit: commit.into(), path: path.into(), start, end, instead: None }
}

// ---------- the scripted histories ----------

fn edits_around(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("f", 7, 5));
    let c = m.commit(r, "start");
    let specs = vec![
        spec("block below an insertion", &c, "a.rs", m.lines_of("a.rs", "f2")),
        spec(
            "lines around an edited line",
            &c,
            "a.rs",
            (m.lines_of("a.rs", "f4").0 + 2, m.lines_of("a.rs", "f4").0 + 4),
        ),
        spec("block with a line added inside", &c, "a.rs", m.lines_of("a.rs", "f5")),
        spec("single line untouched", &c, "a.rs", (m.lines_of("a.rs", "f6").0 + 1, m.lines_of("a.rs", "f6").0 + 1)),
        spec("block above the edits", &c, "a.rs", m.lines_of("a.rs", "f0")),
    ];
    m.put("a.rs", 2, function("inserted", 3, 99));
    m.block("a.rs", "f4").lines[3].push_str(" // tuned");
    m.block("a.rs", "f5").lines.insert(3, "    log_progress(input);".into());
    m.put("a.rs", 99, function("appended", 2, 7));
    m.commit(r, "edits");
    specs
}

fn deletions(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("g", 6, 4));
    let c = m.commit(r, "start");
    let g3 = m.lines_of("a.rs", "g3");
    let specs = vec![
        spec("whole block deleted", &c, "a.rs", g3),
        spec("middle of a deleted block", &c, "a.rs", (g3.0 + 2, g3.0 + 3)),
        spec("block after the deletion", &c, "a.rs", m.lines_of("a.rs", "g4")),
        spec("tail of a block cut short", &c, "a.rs", m.lines_of("a.rs", "g1")),
    ];
    m.take("a.rs", "g3");
    m.block("a.rs", "g1").lines.drain(3..5);
    m.commit(r, "deletions");
    specs
}

fn moves_within_a_file(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("h", 8, 5));
    let c = m.commit(r, "start");
    let h1 = m.lines_of("a.rs", "h1");
    let specs = vec![
        spec("function moved to the end", &c, "a.rs", h1),
        spec("part of the moved function", &c, "a.rs", (h1.0 + 2, h1.0 + 4)),
        spec("function moved up and edited", &c, "a.rs", m.lines_of("a.rs", "h6")),
        spec("neighbour left in place", &c, "a.rs", m.lines_of("a.rs", "h2")),
    ];
    let b = m.take("a.rs", "h1");
    m.put("a.rs", 99, b);
    let mut b = m.take("a.rs", "h6");
    b.lines[2].push_str(" // checked");
    m.put("a.rs", 0, b);
    m.commit(r, "moves");
    specs
}

fn moves_to_another_file(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("k", 6, 5));
    m.files.insert("b.rs".into(), file_of("m", 4, 5));
    let c = m.commit(r, "start");
    let k2 = m.lines_of("a.rs", "k2");
    let specs = vec![
        spec("function moved to b.rs", &c, "a.rs", k2),
        spec("part of it", &c, "a.rs", (k2.0 + 1, k2.0 + 3)),
        spec("function moved to a new file and edited", &c, "a.rs", m.lines_of("a.rs", "k4")),
        spec("function that stayed", &c, "a.rs", m.lines_of("a.rs", "k5")),
    ];
    let b = m.take("a.rs", "k2");
    m.put("b.rs", 2, b);
    let mut b = m.take("a.rs", "k4");
    b.lines[1].push_str(" // moved");
    m.put("c.rs", 0, function("new_in_c", 3, 5));
    m.put("c.rs", 1, b);
    m.commit(r, "split a.rs");
    specs
}

fn renames(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("p", 10, 4));
    let c = m.commit(r, "start");
    let specs = vec![
        spec("after one rename", &c, "a.rs", m.lines_of("a.rs", "p1")),
        spec("edited across renames", &c, "a.rs", m.lines_of("a.rs", "p4")),
        spec("late in the file", &c, "a.rs", m.lines_of("a.rs", "p9")),
    ];
    m.rename(r, "a.rs", "src/b.rs");
    m.block("src/b.rs", "p4").lines[2].push_str(" // b");
    m.put("src/b.rs", 0, function("b_header", 2, 3));
    let c2 = m.commit(r, "a -> b");
    let mut specs = specs;
    specs.push(spec("anchored after the first rename", &c2, "src/b.rs", m.lines_of("src/b.rs", "p6")));
    m.rename(r, "src/b.rs", "lib/c.rs");
    for name in ["p0", "p2", "p3", "p5"] {
        m.block("lib/c.rs", name).lines[1].push_str(" // c");
    }
    m.take("lib/c.rs", "p7");
    m.commit(r, "b -> c");
    m.rename(r, "lib/c.rs", "lib/d.rs");
    m.commit(r, "c -> d");
    specs
}

fn copies(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("q", 5, 5));
    let c = m.commit(r, "start");
    let specs = vec![
        spec("copied file, original edited inside", &c, "a.rs", m.lines_of("a.rs", "q1")),
        spec("copied file, copy edited", &c, "a.rs", m.lines_of("a.rs", "q3")),
        spec("copied file, untouched", &c, "a.rs", m.lines_of("a.rs", "q4")),
    ];
    m.files.insert("a_copy.rs".into(), m.files["a.rs"].clone());
    m.commit(r, "copy a.rs");
    m.block("a.rs", "q1").lines[2].push_str(" // original");
    m.block("a_copy.rs", "q3").lines[2].push_str(" // copy");
    m.commit(r, "edit after copy");
    specs
}

fn duplicated_functions(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("d", 5, 6));
    let c = m.commit(r, "start");
    // Blame calls both copies the anchored lines, so its status is `modified`; the copy that
    // still reads exactly as anchored is where the discussion belongs, `intact`.
    let unchanged_copy =
        Some(("intact", "an unchanged copy of the anchored code survives, and the answer is that copy"));
    let specs = vec![
        Spec {
            instead: unchanged_copy,
            ..spec("duplicated, then the original edited", &c, "a.rs", m.lines_of("a.rs", "d1"))
        },
        Spec {
            instead: unchanged_copy,
            ..spec("duplicated, then the copy edited", &c, "a.rs", m.lines_of("a.rs", "d3"))
        },
        spec("not duplicated", &c, "a.rs", m.lines_of("a.rs", "d4")),
    ];
    for name in ["d1", "d3"] {
        let i = m.files["a.rs"].iter().position(|b| b.name == name).unwrap();
        let mut copy = m.files["a.rs"][i].clone();
        copy.name = format!("{name}_copy");
        m.put("a.rs", i + 1, copy);
    }
    m.commit(r, "duplicate");
    m.block("a.rs", "d1").lines[3].push_str(" // original changed");
    m.block("a.rs", "d3_copy").lines[3].push_str(" // copy changed");
    m.commit(r, "edit one copy each");
    specs
}

fn reformatting(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("w", 5, 4));
    let c = m.commit(r, "start");
    let w2 = m.lines_of("a.rs", "w2");
    let specs = vec![
        spec("re-indented function", &c, "a.rs", w2),
        spec("one re-indented line", &c, "a.rs", (w2.0 + 2, w2.0 + 2)),
        spec("lines that kept their spacing", &c, "a.rs", (w2.0, w2.0)),
    ];
    for b in m.files.get_mut("a.rs").unwrap() {
        for l in b.lines.iter_mut() {
            if let Some(rest) = l.strip_prefix("    ") {
                *l = format!("\t{rest}");
            }
        }
    }
    m.commit(r, "tabs");
    specs
}

fn edited_in_place(r: &Scratch) -> Vec<Spec> {
    let mut m = Model::default();
    m.files.insert("a.rs".into(), file_of("e", 4, 5));
    let c = m.commit(r, "start");
    let e1 = m.lines_of("a.rs", "e1");
    let mut body = spec("every line of a body edited a little", &c, "a.rs", (e1.0 + 1, e1.0 + 3));
    body.instead = Some(("modified", "the issue asks that lines edited in place are modified, not deleted"));
    let specs = vec![body, spec("the function around them", &c, "a.rs", e1)];
    for i in 1..=3 {
        m.block("a.rs", "e1").lines[i].push_str(" // edited");
    }
    m.commit(r, "edit in place");
    specs
}

/// A longer history: random edits, insertions, deletions, moves within and across files and a
/// rename, with anchors taken at several points along the way.
fn random_history(r: &Scratch, mut seed: u64) -> Vec<Spec> {
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut m = Model::default();
    m.files.insert("core.rs".into(), file_of("core", 20, 4));
    m.files.insert("util.rs".into(), file_of("util", 12, 3));
    let mut specs = Vec::new();
    let mut fresh = 0;
    for step in 0..60 {
        if step % 10 == 0 {
            let c = m.commit(r, &format!("step {step}"));
            for k in 0..8 {
                let paths: Vec<String> = m.files.keys().cloned().collect();
                let path = &paths[rand(paths.len())];
                let blocks = &m.files[path];
                let name = blocks[rand(blocks.len())].name.clone();
                let (s, e) = m.lines_of(path, &name);
                let range = if k % 2 == 0 { (s, e) } else { (s + 1, (s + 2).min(e)) };
                specs.push(spec(&format!("step {step} anchor {k} on {name}"), &c, path, range));
            }
        }
        let paths: Vec<String> = m.files.keys().cloned().collect();
        let path = paths[rand(paths.len())].clone();
        let count = m.files[&path].len();
        if count < 3 {
            continue;
        }
        let name = m.files[&path][rand(count)].name.clone();
        match rand(7) {
            0 | 1 => {
                let b = m.block(&path, &name);
                let i = 1 + rand(b.lines.len() - 2);
                b.lines[i].push_str(&format!(" // rev {step}"));
            }
            2 => {
                fresh += 1;
                let at = rand(count + 1);
                m.put(&path, at, function(&format!("fresh{fresh}"), 3, fresh));
            }
            3 => {
                m.take(&path, &name);
            }
            4 => {
                let b = m.take(&path, &name);
                let at = rand(count);
                m.put(&path, at, b);
            }
            5 => {
                let other = paths.iter().find(|p| **p != path).cloned().unwrap();
                let b = m.take(&path, &name);
                let at = rand(m.files[&other].len() + 1);
                m.put(&other, at, b);
            }
            _ => {
                let b = m.block(&path, &name);
                let i = 1 + rand(b.lines.len() - 2);
                b.lines.insert(i, format!("    trace_{step}(input);"));
            }
        }
        if step == 25 {
            m.rename(r, "util.rs", "helpers/util.rs");
        }
        if step == 45 {
            m.rename(r, "core.rs", "src/core/mod.rs");
        }
        m.commit(r, &format!("step {step}"));
    }
    specs
}

// ---------- truth, our answer, and the plain approach ----------

#[derive(Clone, Debug, PartialEq)]
struct Answer {
    status: String,
    path: String,
    start: u32,
    end: u32,
}

/// `git blame -w -M -C --line-porcelain` at `rev`: the origin of each line of `path`.
fn blame(r: &Scratch, rev: &str, path: &str) -> Vec<(String, String, u32)> {
    let out = r.git(&["blame", "-w", "-M", "-C", "--line-porcelain", rev, "--", path]);
    let mut origins = Vec::new();
    let (mut sha, mut line) = (String::new(), 0);
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix("filename ") {
            origins.push((sha.clone(), rest.to_owned(), line));
        } else if !l.starts_with('\t') {
            let mut parts = l.split(' ');
            let first = parts.next().unwrap_or_default();
            if first.len() == 40 && first.bytes().all(|b| b.is_ascii_hexdigit()) {
                sha = first.to_owned();
                line = parts.next().unwrap().parse().unwrap();
            }
        }
    }
    origins
}

struct Truth {
    status: String,
    /// (path, start, end) of each survivor group.
    groups: Vec<(String, u32, u32)>,
}

struct Oracle<'a> {
    r: &'a Scratch,
    /// origin -> where it is at HEAD.
    at_head: HashMap<(String, String, u32), Vec<(String, u32)>>,
    head_lines: HashMap<(String, u32), (String, String, u32)>,
    ancestry: HashMap<String, HashSet<String>>,
}

impl<'a> Oracle<'a> {
    fn new(r: &'a Scratch) -> Oracle<'a> {
        let mut at_head: HashMap<_, Vec<_>> = HashMap::new();
        let mut head_lines = HashMap::new();
        for path in r.git(&["ls-tree", "-r", "--name-only", "HEAD"]).lines() {
            for (i, origin) in blame(r, "HEAD", path).into_iter().enumerate() {
                at_head.entry(origin.clone()).or_default().push((path.to_owned(), i as u32 + 1));
                head_lines.insert((path.to_owned(), i as u32 + 1), origin);
            }
        }
        Oracle { r, at_head, head_lines, ancestry: HashMap::new() }
    }

    fn truth(&self, s: &Spec) -> Truth {
        let origins: Vec<_> = blame(self.r, &s.commit, &s.path)[s.start as usize - 1..s.end as usize].to_vec();
        let mut survivors: Vec<(String, u32, usize)> = Vec::new();
        for (k, o) in origins.iter().enumerate() {
            for (p, l) in self.at_head.get(o).into_iter().flatten() {
                survivors.push((p.clone(), *l, k));
            }
        }
        if survivors.is_empty() {
            return Truth { status: "deleted".into(), groups: vec![] };
        }
        survivors.sort();
        let k = origins.len() as u32;
        // Groups: same file, lines within the anchor's length of each other.
        // A group never holds one anchored line twice: a repeat starts the next copy.
        let mut groups: Vec<Vec<(String, u32, usize)>> = Vec::new();
        for sv in survivors {
            match groups.last_mut() {
                Some(g)
                    if g.last().unwrap().0 == sv.0 && sv.1 - g.last().unwrap().1 <= k && sv.2 > g.last().unwrap().2 =>
                {
                    g.push(sv)
                }
                _ => groups.push(vec![sv]),
            }
        }
        let spans: Vec<(String, u32, u32)> =
            groups.iter().map(|g| (g[0].0.clone(), g[0].1, g.last().unwrap().1)).collect();
        if groups.len() > 1 {
            return Truth { status: "modified".into(), groups: spans };
        }
        let g = &groups[0];
        let in_order =
            g.len() == k as usize && g.iter().enumerate().all(|(i, sv)| sv.2 == i && sv.1 == g[0].1 + i as u32);
        let same_text = in_order && {
            let old = self.r.git(&["show", &format!("{}:{}", s.commit, s.path)]);
            let new = self.r.git(&["show", &format!("HEAD:{}", g[0].0)]);
            let old: Vec<&str> = old.lines().collect();
            let new: Vec<&str> = new.lines().collect();
            old[s.start as usize - 1..s.end as usize] == new[g[0].1 as usize - 1..g[0].1 as usize - 1 + k as usize]
        };
        Truth { status: if same_text { "intact" } else { "modified" }.into(), groups: spans }
    }

    /// True when HEAD's line was written after `commit` (an edit blame cannot tie to an anchor).
    fn written_after(&mut self, commit: &str, path: &str, line: u32) -> bool {
        let Some(origin) = self.head_lines.get(&(path.to_owned(), line)) else { return false };
        let before = self
            .ancestry
            .entry(commit.to_owned())
            .or_insert_with(|| self.r.git(&["rev-list", commit]).lines().map(str::to_owned).collect());
        !before.contains(&origin.0)
    }
}

fn ours(locator: &Locator<'_>, s: &Spec) -> Answer {
    let anchor = Anchor {
        commit: s.commit.clone(),
        path: s.path.clone(),
        lines: LineRange::new(s.start, s.end),
        ..Anchor::default()
    };
    match locator.locate(&anchor) {
        Located::Found(r) => {
            Answer { status: r.status.to_string(), path: r.path, start: r.lines.start, end: r.lines.end }
        }
        Located::Unknown(why) => panic!("{}: unknown: {why}", s.label),
    }
}

/// One `git diff -M -U0 C HEAD`, the range mapped through its hunks.
fn plain(r: &Scratch, s: &Spec) -> Answer {
    let diff = r.git(&["diff", "-M", "-U0", "--no-color", &s.commit, "HEAD"]);
    let mut path = s.path.clone();
    let mut hunks: Vec<(u32, u32, u32, u32)> = Vec::new();
    let mut in_file = false;
    let mut deleted = false;
    for l in diff.lines() {
        if let Some(rest) = l.strip_prefix("diff --git a/") {
            in_file = rest.split(" b/").next() == Some(s.path.as_str());
            if in_file {
                path = rest.split(" b/").nth(1).unwrap_or(&s.path).to_owned();
            }
        } else if in_file && l.starts_with("deleted file") {
            deleted = true;
        } else if in_file && l.starts_with("@@ ") {
            let nums: Vec<u32> = l
                .split(' ')
                .skip(1)
                .take(2)
                .flat_map(|part| {
                    let mut it = part[1..].split(',');
                    let a: u32 = it.next().unwrap().parse().unwrap();
                    let b: u32 = it.next().map_or(1, |b| b.parse().unwrap());
                    [a, b]
                })
                .collect();
            hunks.push((nums[0], nums[1], nums[2], nums[3]));
        }
    }
    if deleted {
        return Answer { status: "deleted".into(), path, start: s.start, end: s.end };
    }
    let map = |line: u32| -> Option<u32> {
        let mut delta: i64 = 0;
        for &(a, b, _c, d) in &hunks {
            let (old_start, old_end) = if b == 0 { (a + 1, a + 1) } else { (a, a + b) };
            if b > 0 && line >= old_start && line < old_end {
                return None;
            }
            if line >= old_end || (b == 0 && line > a) {
                delta += d as i64 - b as i64;
            }
        }
        Some((line as i64 + delta) as u32)
    };
    let survivors: Vec<u32> = (s.start..=s.end).filter_map(map).collect();
    let touched = survivors.len() < (s.end - s.start + 1) as usize
        || hunks.iter().any(|&(a, b, _, _)| b == 0 && a >= s.start && a < s.end);
    match (survivors.first(), survivors.last()) {
        (None, _) | (_, None) => Answer { status: "deleted".into(), path, start: s.start, end: s.end },
        (Some(&f), Some(&l)) => {
            Answer { status: if touched { "modified" } else { "intact" }.into(), path, start: f, end: l }
        }
    }
}

#[derive(Default)]
struct Score {
    cases: usize,
    status: usize,
    exact: usize,
    range_ok: usize,
}

impl Score {
    fn row(&self) -> String {
        let pct = |n: usize| 100.0 * n as f64 / self.cases.max(1) as f64;
        format!("{:>5.1}% {:>6.1}% {:>6.1}%", pct(self.status), pct(self.exact), pct(self.range_ok))
    }
}

fn grade(oracle: &mut Oracle<'_>, s: &Spec, truth: &Truth, a: &Answer, score: &mut Score) -> bool {
    score.cases += 1;
    let expected = s.instead.map_or(truth.status.as_str(), |(status, _)| status);
    let status_ok = a.status == expected;
    score.status += status_ok as usize;
    if a.status == "deleted" || truth.groups.is_empty() {
        let both_deleted = a.status == "deleted" && truth.groups.is_empty();
        score.exact += both_deleted as usize;
        score.range_ok += (both_deleted || s.instead.is_some() && status_ok) as usize;
        return status_ok;
    }
    let exact = truth.groups.iter().any(|(p, gs, ge)| *p == a.path && *gs == a.start && *ge == a.end);
    let covers = truth.groups.iter().any(|(p, gs, ge)| {
        *p == a.path
            && a.start <= *gs
            && *ge <= a.end
            && (a.start..*gs).chain(*ge + 1..=a.end).all(|l| oracle.written_after(&s.commit, p, l))
    });
    score.exact += exact as usize;
    score.range_ok += (exact || covers) as usize;
    status_ok
}

#[test]
fn relocation_matches_git_blame_and_beats_the_plain_diff() {
    type Script = fn(&Scratch) -> Vec<Spec>;
    let scenarios: [(&str, Script); 11] = [
        ("edits above/below/inside", edits_around),
        ("deletions", deletions),
        ("moves within a file", moves_within_a_file),
        ("moves to another file", moves_to_another_file),
        ("renames (one and several)", renames),
        ("copy then edit", copies),
        ("duplicate then edit a copy", duplicated_functions),
        ("whitespace reformatting", reformatting),
        ("edited in place", edited_in_place),
        ("random history A, 60 commits", |r| random_history(r, 0x5eed)),
        ("random history B, 60 commits", |r| random_history(r, 0xfeed_beef)),
    ];
    let mut report = format!(
        "{:<28} {:>5}   {:^22}   {:^22}\n",
        "history", "cases", "ours: status exact ok", "plain: status exact ok"
    );
    let (mut all_ours, mut all_plain) = (Score::default(), Score::default());
    let mut misses = Vec::new();
    for (name, script) in scenarios {
        let r = Scratch::new();
        let specs = script(&r);
        let mut oracle = Oracle::new(&r);
        let repo = Repo::open(r.path()).unwrap();
        let locator = Locator::new(&repo, Target::Commit(repo.resolve("HEAD").unwrap()));
        let (mut o, mut p) = (Score::default(), Score::default());
        for s in &specs {
            let truth = oracle.truth(s);
            let mine = ours(&locator, s);
            if !grade(&mut oracle, s, &truth, &mine, &mut o) {
                misses.push(format!("{name} / {}: truth {} {:?}, ours {mine:?}", s.label, truth.status, truth.groups));
            }
            let theirs = plain(&r, s);
            grade(&mut oracle, s, &truth, &theirs, &mut p);
            if std::env::var_os("ACCURACY_TRACE").is_some() {
                eprintln!("{name} / {}: {}:{}-{} at {}", s.label, s.path, s.start, s.end, &s.commit[..8]);
                eprintln!("    truth {} {:?}\n    ours  {mine:?}\n    plain {theirs:?}", truth.status, truth.groups);
                let old = r.git(&["show", &format!("{}:{}", s.commit, s.path)]);
                for l in old.lines().skip(s.start as usize - 1).take((s.end - s.start + 1) as usize) {
                    eprintln!("      was | {l}");
                }
                if let Ok(new) = std::fs::read_to_string(r.file(&mine.path)) {
                    for l in new.lines().skip(mine.start as usize - 1).take((mine.end - mine.start + 1) as usize) {
                        eprintln!("      ours| {l}");
                    }
                }
            }
        }
        report += &format!("{name:<28} {:>5}   {}   {}\n", specs.len(), o.row(), p.row());
        for (total, part) in [(&mut all_ours, o), (&mut all_plain, p)] {
            total.cases += part.cases;
            total.status += part.status;
            total.exact += part.exact;
            total.range_ok += part.range_ok;
        }
    }
    report += &format!("{:<28} {:>5}   {}   {}\n", "all", all_ours.cases, all_ours.row(), all_plain.row());
    eprintln!("{report}");
    for m in &misses {
        eprintln!("status differs from blame: {m}");
    }
    assert!(misses.is_empty(), "{} cases differ from git's truth", misses.len());
    assert!(all_ours.status > all_plain.status, "status accuracy must beat the plain diff");
    assert!(all_ours.exact > all_plain.exact, "exact ranges must beat the plain diff");
    assert!(all_ours.range_ok * 100 >= all_ours.cases * 90, "ranges must be right in at least 90% of cases:\n{report}");
}
