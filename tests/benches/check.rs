//! `marginalia check` speed: `cargo bench --bench check` (release build; figures go to stdout).
//!
//! A repository of 1,000 files with 20 commits of ordinary edits on main, 10,000 codemarks
//! made over those commits (each on 3 to 8 lines, with its anchored text and context, as the
//! editor and the server keep them), then a pull request of two commits that edits, deletes
//! and moves code in 100 files, while main goes on to change 30 more. The check runs in-process
//! (the engine, every core) and end to end (`marginalia check --source local --format json`:
//! process start, the store read, the report), the median of several runs. Target: 10,000
//! codemarks in under 2 s.
//!
//! Set `BENCH_QUICK=1` for a smaller run (a smoke test of the benchmark itself).

#[path = "common/synth.rs"]
mod synth;

use synth::{Rng, git, line_for, text_of};

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use marginalia::anchor::{Anchor, CONTEXT_LINES, LineRange};
use marginalia::check::{self, Category, Change};
use marginalia::codemark::{self, Codemark, Kind, MarkStatus, StoredAnchor, new_id};
use marginalia::git::Repo;
use marginalia::store::Store;

struct Sizes {
    files: usize,
    main_commits: usize,
    codemarks: usize,
    pr_files: usize,
    main_after: usize,
    runs: usize,
}

/// One commit for `git fast-import`: the files given, on top of `from`.
fn commit(
    stream: &mut Vec<u8>,
    branch: &str,
    mark: usize,
    from: Option<usize>,
    t: usize,
    files: &[(&String, &Vec<String>)],
) {
    writeln!(stream, "commit refs/heads/{branch}\nmark :{mark}").unwrap();
    writeln!(stream, "committer Bench <bench@example.com> {} +0000", 1_600_000_000 + t * 600).unwrap();
    let msg = format!("commit {mark}");
    writeln!(stream, "data {}\n{msg}", msg.len()).unwrap();
    if let Some(f) = from {
        writeln!(stream, "from :{f}").unwrap();
    }
    for (path, lines) in files {
        let text = text_of(lines);
        writeln!(stream, "M 100644 inline {path}\ndata {}", text.len()).unwrap();
        stream.extend_from_slice(text.as_bytes());
        stream.push(b'\n');
    }
}

/// An edit to one file: a line changed, lines added, a few removed.
fn edit(lines: &mut Vec<String>, rng: &mut Rng, serial: &mut u64) {
    let len = lines.len();
    match rng.below(3) {
        0 => {
            let i = 2 + rng.below(len - 3);
            lines[i].push_str(" // adjusted");
        }
        1 => {
            let at = 2 + rng.below(len - 3);
            for _ in 0..1 + rng.below(4) {
                let l = line_for(rng, serial);
                lines.insert(at, l);
            }
        }
        _ => {
            let at = 2 + rng.below(len - 8);
            lines.drain(at..at + 1 + rng.below(3));
        }
    }
}

struct Built {
    dir: tempfile::TempDir,
    codemarks: Vec<Codemark>,
}

fn build(sizes: &Sizes) -> Built {
    let mut rng = Rng(0x5eed_c0de);
    let mut serial = 0u64;
    let mut files = synth::files(&mut rng, &mut serial, sizes.files, 60..200);
    let mut stream = Vec::new();
    let mut anchors: Vec<(usize, String, Anchor)> = Vec::new();
    let per_commit = sizes.codemarks / sizes.main_commits;
    for c in 0..sizes.main_commits {
        let paths: Vec<String> = files.keys().cloned().collect();
        let changed: Vec<String> = if c == 0 {
            paths.clone()
        } else {
            let mut changed: Vec<String> = (0..20).map(|_| paths[rng.below(paths.len())].clone()).collect();
            changed.sort();
            changed.dedup();
            for p in &changed {
                edit(files.get_mut(p).unwrap(), &mut rng, &mut serial);
            }
            changed
        };
        let list: Vec<(&String, &Vec<String>)> = changed.iter().map(|p| (p, &files[p])).collect();
        commit(&mut stream, "main", c + 1, (c > 0).then_some(c), c, &list);
        // Codemarks made on this commit, with their anchored text and context.
        for _ in 0..per_commit {
            let path = &paths[rng.below(paths.len())];
            let lines = &files[path];
            let start = 2 + rng.below(lines.len() - 12);
            let end = start + 2 + rng.below(6);
            let anchor = Anchor {
                commit: format!("mark:{}", c + 1),
                path: path.clone(),
                lines: LineRange::new(start as u32 + 1, end as u32 + 1),
                text: Some(lines[start..=end].join("\n")),
                before: lines[start.saturating_sub(CONTEXT_LINES)..start].to_vec(),
                after: lines[end + 1..(end + 1 + CONTEXT_LINES).min(lines.len())].to_vec(),
            };
            anchors.push((c + 1, path.clone(), anchor));
        }
    }
    let base_mark = sizes.main_commits;
    // The pull request: edits in most of its files, whole blocks deleted in some, and blocks
    // moved to another file in others.
    let paths: Vec<String> = files.keys().cloned().collect();
    let mut pr_files = files.clone();
    let mut touched: Vec<String> = (0..sizes.pr_files).map(|_| paths[rng.below(paths.len())].clone()).collect();
    touched.sort();
    touched.dedup();
    for (k, p) in touched.clone().iter().enumerate() {
        match k % 4 {
            0 | 1 => {
                for _ in 0..3 {
                    edit(pr_files.get_mut(p).unwrap(), &mut rng, &mut serial);
                }
            }
            2 => {
                let lines = pr_files.get_mut(p).unwrap();
                let at = 2 + rng.below(lines.len() - 30);
                lines.drain(at..at + 20);
            }
            _ => {
                let lines = pr_files.get_mut(p).unwrap();
                let at = 2 + rng.below(lines.len() - 20);
                let block: Vec<String> = lines.drain(at..at + 12).collect();
                let to = format!("src/moved/from{k:03}.rs");
                pr_files.insert(to.clone(), block);
                touched.push(to);
            }
        }
    }
    let list: Vec<(&String, &Vec<String>)> = touched.iter().map(|p| (p, &pr_files[p])).collect();
    commit(&mut stream, "feature", base_mark + 1, Some(base_mark), base_mark + 1, &list);
    // Main goes on after the branch.
    let mut after: Vec<String> = (0..sizes.main_after).map(|_| paths[rng.below(paths.len())].clone()).collect();
    after.sort();
    after.dedup();
    for p in &after {
        edit(files.get_mut(p).unwrap(), &mut rng, &mut serial);
    }
    let list: Vec<(&String, &Vec<String>)> = after.iter().map(|p| (p, &files[p])).collect();
    commit(&mut stream, "main", base_mark + 2, Some(base_mark), base_mark + 2, &list);

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
    git(dir.path(), &["checkout", "-q", "feature"]);
    let commits: Vec<String> =
        git(dir.path(), &["rev-list", "--reverse", "main~1"]).lines().map(str::to_owned).collect();
    let repo = Repo::open(dir.path()).unwrap();
    let key = codemark::repo_key(&repo).unwrap();
    let codemarks = anchors
        .into_iter()
        .enumerate()
        .map(|(i, (mark, _, mut anchor))| {
            anchor.commit = commits[mark - 1].clone();
            Codemark {
                id: new_id(),
                repo: key.clone(),
                kind: [Kind::Comment, Kind::Question, Kind::Issue][i % 3],
                title: None,
                body: format!("Codemark {i}: is this right?"),
                author: "Bench".into(),
                status: MarkStatus::Open,
                anchors: vec![StoredAnchor { id: new_id(), anchor, pending: false }],
                replies: Vec::new(),
                created: 0,
                updated: 0,
                shared: None,
                review: None,
            }
        })
        .collect();
    Built { dir, codemarks }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let sizes = if quick {
        Sizes { files: 100, main_commits: 5, codemarks: 500, pr_files: 20, main_after: 5, runs: 1 }
    } else {
        Sizes { files: 1_000, main_commits: 20, codemarks: 10_000, pr_files: 100, main_after: 30, runs: 5 }
    };
    println!("marginalia check benchmark ({} build)", if cfg!(debug_assertions) { "debug" } else { "release" });
    let t = Instant::now();
    let built = build(&sizes);
    let dir = built.dir.path();
    println!(
        "repository: {} files, {} commits on main, a pull request touching {} files, main {} files further; {} codemarks (built in {:.1?})",
        sizes.files,
        sizes.main_commits,
        sizes.pr_files,
        sizes.main_after,
        built.codemarks.len(),
        t.elapsed()
    );

    // In-process: the engine alone, every core, cold caches.
    let repo = Repo::open(dir).unwrap();
    let base = repo.resolve("main").unwrap();
    let head = repo.resolve("feature").unwrap();
    let start = repo.common_ancestor(base, head);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut times = Vec::new();
    let mut counts = BTreeMap::new();
    for _ in 0..sizes.runs {
        let t = Instant::now();
        let checked = check::check(dir, Change { start, head }, built.codemarks.clone(), threads, &|| {});
        times.push(t.elapsed());
        counts = Category::ALL
            .iter()
            .map(|c| (c.as_str(), checked.iter().filter(|x| x.category == *c).count()))
            .collect::<BTreeMap<_, _>>();
    }
    let in_process = median(&mut times);
    println!(
        "in-process: {:>8.1?} for {} codemarks ({} threads, median of {}; {:?})",
        in_process,
        built.codemarks.len(),
        threads,
        sizes.runs,
        counts
    );
    assert_eq!(counts.values().sum::<usize>(), built.codemarks.len());
    assert!(counts["deleted"] + counts["modified"] + counts["moved"] > 0, "the pull request touches codemarks");
    assert_eq!(counts["unknown"], 0, "every codemark is found");

    // End to end: the CLI with the codemarks in a local store.
    let data = tempfile::tempdir().unwrap();
    let t = Instant::now();
    {
        let store = Store::open(&data.path().join("marginalia.db")).unwrap();
        for c in &built.codemarks {
            store.insert(c).unwrap();
        }
    }
    let stored = t.elapsed();
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..sizes.runs {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_marginalia"))
            .args(["check", "--base", "main", "--head", "feature", "--source", "local", "--format", "json"])
            .current_dir(dir)
            .env("MARGINALIA_DATA_DIR", data.path())
            .env_remove("MARGINALIA_SERVER")
            .env_remove("MARGINALIA_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        times.push(t.elapsed());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        bytes = out.stdout.len();
    }
    let cli = median(&mut times);
    let (lo, hi) = (times[0], times[times.len() - 1]);
    println!(
        "CLI:        {cli:>8.1?} for {} codemarks (median of {}, {lo:.1?} to {hi:.1?}; the store read, process start and a {} KiB JSON report included; stored in {stored:.1?})",
        built.codemarks.len(),
        sizes.runs,
        bytes / 1024
    );
    if !quick {
        let verdict = if cli < Duration::from_secs(2) { "met" } else { "NOT met" };
        println!("target: 10,000 codemarks under 2 s end to end: {verdict}");
    }
}
