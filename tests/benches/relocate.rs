//! Relocation speed: `cargo bench --bench relocate` (release build; figures go to stdout).
//!
//! 1. A repository with a long history: 2,000 files, 1,000 commits of ordinary edits (lines
//!    changed, added, removed, blocks moved) and some renames, built with `git fast-import`.
//!    10,000 anchors spread over 500 of those commits are relocated to HEAD: in-process with a
//!    cold `Locator`, and end to end through `marginalia locate --batch`. Beside them, the plain
//!    approach (one `git diff -M -U0 C HEAD` per anchor) on a sample, in anchors per second.
//! 2. 1,000 anchors in one 20,000-line file with 200 edits.
//! 3. 1,000 anchors mapped through one keystroke (median and p99 over many keystrokes).
//! 4. A 100,000-line file with thousands of edits (the diff deadline bounds it).
//!
//! Set `BENCH_QUICK=1` for a smaller run (a smoke test of the benchmark itself), and
//! `BENCH_KEEP=1` to keep the generated repository and batch file for profiling.

#[path = "common/synth.rs"]
mod synth;

use synth::{Rng, git, line_for, text_of};

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use marginalia::anchor::track::{LineChange, Position, Tracker};
use marginalia::anchor::{Anchor, Document, LineMap, LineRange, Sources, Text, relocate};
use marginalia::git::{Repo, Target};
use marginalia::locate::{Located, Locator};

struct Sizes {
    files: usize,
    commits: usize,
    anchor_commits: usize,
    anchors_per_commit: usize,
    plain_sample: usize,
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let sizes = if quick {
        Sizes { files: 200, commits: 100, anchor_commits: 50, anchors_per_commit: 20, plain_sample: 20 }
    } else {
        Sizes { files: 2_000, commits: 1_000, anchor_commits: 500, anchors_per_commit: 20, plain_sample: 100 }
    };
    println!("marginalia relocation benchmark ({} build)", if cfg!(debug_assertions) { "debug" } else { "release" });
    history_benchmark(&sizes);
    one_big_file();
    keystrokes();
    huge_file();
}

// ---------- 1. a long history ----------

struct History {
    dir: tempfile::TempDir,
    /// (commit index, path, start, end) of every anchor, 1-based lines.
    anchors: Vec<(usize, String, u32, u32)>,
    commits: Vec<String>,
}

fn build_history(sizes: &Sizes) -> History {
    let mut rng = Rng(0x00c0_ffee);
    let mut serial = 0u64;
    let mut files = synth::files(&mut rng, &mut serial, sizes.files, 40..200);
    let step = sizes.commits / sizes.anchor_commits;
    let anchor_at: Vec<usize> = (0..sizes.anchor_commits).map(|k| k * step).collect();
    let mut stream: Vec<u8> = Vec::new();
    let mut anchors = Vec::new();
    let mut renamed = 0;
    for c in 0..sizes.commits {
        let mut changed: Vec<String> = Vec::new();
        let mut renames: Vec<(String, String)> = Vec::new();
        if c == 0 {
            changed.extend(files.keys().cloned());
        } else {
            let paths: Vec<String> = files.keys().cloned().collect();
            for _ in 0..1 + rng.below(5) {
                let path = paths[rng.below(paths.len())].clone();
                let lines = files.get_mut(&path).unwrap();
                let len = lines.len();
                match rng.below(10) {
                    0..=3 => {
                        let i = 2 + rng.below(len - 3);
                        lines[i].push_str(" // adjusted");
                    }
                    4..=5 => {
                        let at = 2 + rng.below(len - 3);
                        for _ in 0..1 + rng.below(5) {
                            let l = line_for(&mut rng, &mut serial);
                            lines.insert(at, l);
                        }
                    }
                    6..=7 if len > 12 => {
                        let at = 2 + rng.below(len - 8);
                        lines.drain(at..at + 1 + rng.below(3));
                    }
                    _ if len > 20 => {
                        let from = 2 + rng.below(len - 10);
                        let block: Vec<String> = lines.drain(from..from + 5).collect();
                        let to = 2 + rng.below(lines.len() - 3);
                        lines.splice(to..to, block);
                    }
                    _ => {}
                }
                changed.push(path);
            }
            if c % 25 == 0 {
                let path = paths[rng.below(paths.len())].clone();
                renamed += 1;
                let to = format!("src/renamed/r{renamed:03}_{}", path.rsplit('/').next().unwrap());
                let lines = files.remove(&path).unwrap();
                files.insert(to.clone(), lines);
                changed.retain(|p| *p != path);
                renames.push((path, to));
            }
        }
        writeln!(stream, "commit refs/heads/main\nmark :{}", c + 1).unwrap();
        writeln!(stream, "committer Bench <bench@example.com> {} +0000", 1_600_000_000 + c * 600).unwrap();
        let msg = format!("commit {c}");
        writeln!(stream, "data {}\n{msg}", msg.len()).unwrap();
        if c > 0 {
            writeln!(stream, "from :{c}").unwrap();
        }
        for (from, to) in &renames {
            writeln!(stream, "R {from} {to}").unwrap();
        }
        changed.sort();
        changed.dedup();
        for path in &changed {
            if let Some(lines) = files.get(path) {
                let text = text_of(lines);
                writeln!(stream, "M 100644 inline {path}\ndata {}", text.len()).unwrap();
                stream.extend_from_slice(text.as_bytes());
                stream.push(b'\n');
            }
        }
        if anchor_at.contains(&c) {
            let paths: Vec<&String> = files.keys().collect();
            for _ in 0..sizes.anchors_per_commit {
                let path = paths[rng.below(paths.len())];
                let len = files[path].len() as u32;
                let start = 1 + rng.below(len as usize - 10) as u32;
                let end = start + 2 + rng.below(8) as u32;
                anchors.push((c, path.clone(), start, end.min(len)));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success(), "git fast-import failed");
    let commits: Vec<String> = git(dir.path(), &["rev-list", "--reverse", "main"]).lines().map(str::to_owned).collect();
    assert_eq!(commits.len(), sizes.commits);
    git(dir.path(), &["checkout", "-q", "main"]);
    History { dir, anchors, commits }
}

fn history_benchmark(sizes: &Sizes) {
    let t = Instant::now();
    let h = build_history(sizes);
    println!(
        "\n1. history: {} files, {} commits, {} anchors over {} commits (built in {:.1?})",
        sizes.files,
        sizes.commits,
        h.anchors.len(),
        sizes.anchor_commits,
        t.elapsed()
    );
    let anchors: Vec<Anchor> = h
        .anchors
        .iter()
        .map(|(c, path, s, e)| Anchor {
            commit: h.commits[*c].clone(),
            path: path.clone(),
            lines: LineRange::new(*s, *e),
            ..Anchor::default()
        })
        .collect();

    // In-process, cold: a fresh repository handle and locator.
    let t = Instant::now();
    let repo = Repo::open(h.dir.path()).unwrap();
    let locator = Locator::new(&repo, Target::Commit(repo.resolve("HEAD").unwrap()));
    let mut order: Vec<usize> = (0..anchors.len()).collect();
    order.sort_by(|&a, &b| (&anchors[a].path, &anchors[a].commit).cmp(&(&anchors[b].path, &anchors[b].commit)));
    let mut counts = BTreeMap::new();
    for &i in &order {
        let key = match locator.locate(&anchors[i]) {
            Located::Found(r) => r.status.as_str(),
            Located::Unknown(_) => "unknown",
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    let inproc = t.elapsed();
    println!(
        "   in-process:  {:>8.1?} for {} anchors = {:>9.0} anchors/s  (one thread, cold; {} blob reads, {} diffs; {counts:?})",
        inproc,
        anchors.len(),
        anchors.len() as f64 / inproc.as_secs_f64(),
        repo.blob_reads(),
        locator.diffs_computed()
    );

    // End to end through the binary.
    let batch: String = h
        .anchors
        .iter()
        .enumerate()
        .map(|(k, (c, p, s, e))| {
            format!("{{\"id\":{k},\"commit\":\"{}\",\"path\":\"{p}\",\"start\":{s},\"end\":{e}}}\n", h.commits[*c])
        })
        .collect();
    let file = h.dir.path().join("anchors.jsonl");
    std::fs::write(&file, batch).unwrap();
    // Five runs: this is a shared 2-core VM, and one run can land on a busy moment.
    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_marginalia"))
                .args([
                    "locate",
                    "--repo",
                    h.dir.path().to_str().unwrap(),
                    "--to",
                    "HEAD",
                    "--batch",
                    file.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            let took = t.elapsed();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), anchors.len());
            took
        })
        .collect();
    runs.sort();
    let cli = runs[2];
    println!(
        "   CLI batch:   {:>8.1?} for {} anchors = {:>9.0} anchors/s  (median of 5, {:.0?} to {:.0?}; all cores, \
         process start and JSON included)",
        cli,
        anchors.len(),
        anchors.len() as f64 / cli.as_secs_f64(),
        runs[0],
        runs[4]
    );
    if std::env::var_os("BENCH_KEEP").is_some() {
        println!("   kept: {} (batch: {})", h.dir.path().display(), file.display());
    }

    // The plain approach on a sample: one `git diff -M -U0 C HEAD` per anchor.
    let sample: Vec<&(usize, String, u32, u32)> =
        h.anchors.iter().step_by(h.anchors.len() / sizes.plain_sample).collect();
    let t = Instant::now();
    for (c, path, _, _) in &sample {
        let out = Command::new("git")
            .args(["diff", "-M", "-U0", "--no-color", &h.commits[*c], "HEAD", "--"])
            .current_dir(h.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        // Mapping the range through the hunks is negligible beside the diff itself.
        std::hint::black_box((path, out.stdout.len()));
    }
    let plain = t.elapsed();
    if std::env::var_os("BENCH_KEEP").is_some() {
        std::mem::forget(h.dir);
    }
    let per = plain / sample.len() as u32;
    println!(
        "   plain diff:  {:>8.1?} per anchor = {:>9.0} anchors/s  (sample of {}; 10,000 would take {:.0?})",
        per,
        1.0 / per.as_secs_f64(),
        sample.len(),
        per * anchors.len() as u32
    );
}

// ---------- 2. one big file ----------

fn numbered(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("    let item_{i} = process(item_{}, \"{tag}\");", i.saturating_sub(1))).collect()
}

fn one_big_file() {
    let old = numbered(20_000, "v1");
    let mut new = old.clone();
    let mut rng = Rng(42);
    for _ in 0..200 {
        let at = rng.below(new.len());
        match rng.below(3) {
            0 => new[at].push_str(" // edited"),
            1 => new.insert(at, format!("    inserted_{}();", rng.next() % 1000)),
            _ => {
                new.remove(at);
            }
        }
    }
    let (old_t, new_t) = (Text::new(old.join("\n")), Text::new(new.join("\n")));
    let anchors: Vec<Anchor> = (0..1000u32)
        .map(|k| Anchor {
            path: "big.rs".into(),
            lines: LineRange::new(1 + k * 19, 1 + k * 19 + 4),
            ..Anchor::default()
        })
        .collect();
    let t = Instant::now();
    let map = LineMap::new(&old_t, &new_t);
    let src = Sources { old: Some(&old_t), new: Some(("big.rs", &new_t)), map: Some(&map), others: None };
    let mut intact = 0;
    for a in &anchors {
        intact += (relocate(a, &src).unwrap().status == marginalia::anchor::Status::Intact) as usize;
    }
    let took = t.elapsed();
    println!("\n2. 1,000 anchors in one 20,000-line file with 200 edits: {took:.2?} ({intact} intact), diff included");
}

// ---------- 3. keystrokes ----------

fn keystrokes() {
    let text: String = numbered(5_000, "doc").iter().map(|l| format!("{l}\n")).collect();
    let mut doc = Document::new(text);
    let ranges: Vec<LineRange> = (0..1000u32).map(|k| LineRange::new(1 + k * 5, 3 + k * 5)).collect();
    let mut tracker = Tracker::new(ranges);
    let mut rng = Rng(7);
    let (mut map_only, mut whole) = (Vec::new(), Vec::new());
    for k in 0..20_000 {
        let line = rng.below(4_900) as u32;
        // Type a character, or press Enter and then take it back, at a random place.
        let (start, end, text) = match k % 3 {
            0 => (Position::new(line, 4), Position::new(line, 4), "x"),
            1 => (Position::new(line, 4), Position::new(line, 4), "\n"),
            _ => (Position::new(line, doc.line_len(line)), Position::new(line + 1, 0), ""),
        };
        let t = Instant::now();
        let hunk = doc.apply(start, end, text);
        let t_map = Instant::now();
        if let Some(h) = hunk {
            tracker.apply(&LineChange::single(h));
        }
        let done = Instant::now();
        map_only.push(done - t_map);
        whole.push(done - t);
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() * 99 / 100])
    };
    let (m50, m99) = stats(&mut map_only);
    let (w50, w99) = stats(&mut whole);
    println!(
        "\n3. one keystroke, 1,000 anchors: mapping median {m50:.2?} p99 {m99:.2?}; \
         with the buffer edit (5,000-line document) median {w50:.2?} p99 {w99:.2?}"
    );
}

// ---------- 4. the worst case ----------

fn huge_file() {
    let old = numbered(100_000, "v1");
    let mut new = Vec::with_capacity(old.len());
    for (i, l) in old.iter().enumerate() {
        if i % 30 == 0 {
            new.push(format!("    // inserted before {i}"));
        }
        if i % 50 != 0 {
            new.push(if i % 20 == 0 { format!("{l} // edited") } else { l.clone() });
        }
    }
    let (old_t, new_t) = (Text::new(old.join("\n")), Text::new(new.join("\n")));
    let t = Instant::now();
    let map = LineMap::new(&old_t, &new_t);
    let diff = t.elapsed();
    let src = Sources { old: Some(&old_t), new: Some(("huge.rs", &new_t)), map: Some(&map), others: None };
    for line in (1..100_000).step_by(100) {
        let a = Anchor { path: "huge.rs".into(), lines: LineRange::new(line, line + 2), ..Anchor::default() };
        relocate(&a, &src).unwrap();
    }
    println!(
        "\n4. 100,000-line file, 10,666 changes: diff {diff:.1?}{}, then 1,000 anchors in {:.1?} in all",
        if map.timed_out() { " (hit the deadline, coarser diff)" } else { "" },
        t.elapsed()
    );
}
