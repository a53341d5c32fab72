//! Relocation on real histories: `cargo bench --bench histories` (release build; figures go to
//! stdout).
//!
//! For each case set of `fixtures/histories/` (anchors sampled from cobra, click, serde and
//! express, relocated forward to the newest commit and backward to an older one) whose history
//! bundle is at hand: the bundle is cloned as a bare repository, then
//!
//! - ours: one `marginalia locate --batch --explain` process over every case (all cores), timed
//!   from start to exit;
//! - plain: the ordinary approach, `diffmap.py` of the evaluation harness in Rust: for each
//!   anchor one `git diff -U0 -M C T` (after one `git diff -M --name-status C T` per run of
//!   cases at the same commit), the range mapped through the hunks; one anchor at a time, timed;
//!
//! and both are scored with the harness's rules (tests/common/histories.rs): right / wrong place
//! / lost against blame's truth with adjudication and the hand verdicts of
//! `fixtures/histories/verdicts.jsonl`, plus status accuracy, exact range and renamed path.
//!
//! Environment:
//! - `HISTORIES=cobra,serde-back`: these sets only (default: all eight);
//! - `HISTORIES_PLAIN=0`: skip the plain baseline (20 to 50 seconds a set);
//! - `MARGINALIA_HISTORIES=DIR`: where the bundles are (`<history>.bundle`; default
//!   `../shared/histories` beside this repository). cobra's is also in `fixtures/histories/`;
//!   a set whose bundle is in neither place is skipped, and the run says so;
//! - `HISTORIES_KEEP=DIR`: write the answers there (`<set>-ours.jsonl`, `<set>-plain.jsonl`),
//!   for the Python harness or for reading;
//! - `HISTORIES_LIST=1`: under each set, judge.py's summary line for ours and our wrong and lost
//!   cases (the hand-verdict key is the `pred=` part);
//! - `HISTORIES_BIN=PATH`: run that `marginalia` instead of the one cargo built (an older build,
//!   to compare);
//! - `BENCH_QUICK=1`: every 25th case of each set (a smoke test of the benchmark itself).

#[path = "../common/histories.rs"]
mod histories;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use histories::{Blobs, Case, CaseSet, SETS, Score, Verdicts, clone_bundle, git_command, has_commit, history_of};

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let chosen: Vec<String> = match std::env::var("HISTORIES") {
        Ok(list) if !list.trim().is_empty() => list.split(',').map(|s| s.trim().to_owned()).collect(),
        _ => SETS.iter().map(|s| s.to_string()).collect(),
    };
    if let Some(bad) = chosen.iter().find(|s| !SETS.contains(&s.as_str())) {
        panic!("HISTORIES: no case set {bad:?} (the sets: {})", SETS.join(","));
    }
    let plain = std::env::var("HISTORIES_PLAIN").map_or(true, |v| v != "0");
    let list = std::env::var_os("HISTORIES_LIST").is_some();
    let keep = std::env::var_os("HISTORIES_KEEP").map(PathBuf::from);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bundles =
        std::env::var_os("MARGINALIA_HISTORIES").map_or_else(|| root.join("../shared/histories"), PathBuf::from);
    if let Some(dir) = &keep {
        std::fs::create_dir_all(dir).unwrap();
    }

    println!(
        "marginalia on real histories ({} build{})",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if quick { ", BENCH_QUICK: every 25th case" } else { "" }
    );
    println!(
        "ours: one `marginalia locate --batch` process, all cores; plain: one `git diff -U0 -M` per anchor, one at a time"
    );
    println!("binary: {}", histories::marginalia_bin().display());
    println!("bundles: {} (then fixtures/histories/)\n", bundles.display());
    println!(
        "{:<13} {:<6} {:>5} {:>7} {:>11} {:>11} {:>5} {:>8} {:>7} {:>14} {:>9} {:>10} {:>8} {:>10}",
        "set",
        "who",
        "cases",
        "right%",
        "wrong%",
        "lost%",
        "unk",
        "status%",
        "exact%",
        "renamed path",
        "unjudged",
        "anchors/s",
        "wall",
        "ours/plain"
    );

    let mut repos: HashMap<&str, (tempfile::TempDir, Blobs)> = HashMap::new();
    let mut skipped: Vec<&str> = Vec::new();
    let mut clones = Vec::new();
    for set in &chosen {
        let history = history_of(set);
        if !repos.contains_key(history) {
            let Some(bundle) =
                [bundles.join(format!("{history}.bundle")), histories::fixtures().join(format!("{history}.bundle"))]
                    .into_iter()
                    .find(|b| b.is_file())
            else {
                skipped.push(set.as_str());
                continue;
            };
            let t = Instant::now();
            let dir = clone_bundle(&bundle);
            clones.push(format!("{history} {:.1?}", t.elapsed()));
            let blobs = Blobs::new(dir.path());
            repos.insert(history, (dir, blobs));
        }
        let (dir, blobs) = &repos[history];
        let mut cases = CaseSet::load(set);
        if quick {
            cases = cases.subset(|i| i % 25 == 0);
        }
        assert!(
            has_commit(dir.path(), &cases.to),
            "{set}: the target {} (manifest.json \"to\") is not in {history}.bundle",
            cases.to
        );
        let verdicts = Verdicts::load(&histories::fixtures().join("verdicts.jsonl"), set);

        let (out, ours_wall) = run_ours(dir.path(), &cases);
        let ours = histories::score(&cases, &histories::parse_answers(&out), blobs, &verdicts);
        let plain_run = plain.then(|| {
            let t = Instant::now();
            let out = run_plain(dir.path(), &cases.to, &cases.cases);
            (out, t.elapsed())
        });
        let ratio = plain_run.as_ref().map(|(_, w)| w.as_secs_f64() / ours_wall.as_secs_f64());
        row(set, "ours", &ours, ours_wall, ratio);
        if let Some((out, wall)) = &plain_run {
            let score = histories::score(&cases, &histories::parse_answers(out), blobs, &verdicts);
            row(set, "plain", &score, *wall, None);
        }
        if list {
            println!("    {}", ours.judge_line(set));
            for line in &ours.listed {
                println!("    {line}");
            }
        }
        if let Some(dir) = &keep {
            std::fs::write(dir.join(format!("{set}-ours.jsonl")), &out).unwrap();
            if let Some((out, _)) = &plain_run {
                std::fs::write(dir.join(format!("{set}-plain.jsonl")), out).unwrap();
            }
        }
    }
    println!();
    if !clones.is_empty() {
        println!("cloned: {}", clones.join(", "));
    }
    if !skipped.is_empty() {
        println!(
            "SKIPPED {}: no bundle of their history in {} or fixtures/histories/ (set MARGINALIA_HISTORIES to the \
             folder of cobra.bundle, click.bundle, serde.bundle, express.bundle)",
            skipped.join(", "),
            bundles.display()
        );
    }
    println!(
        "right: deleted for deleted, or a range over a surviving line; wrong: code elsewhere; lost: deleted while code \
         survives (judge.py, hand verdicts by exact answer); unk: neither; status%, exact% (of surviving cases), \
         renamed path: score.py; unjudged: wrong/lost with no hand verdict"
    );
    if let Some(dir) = &keep {
        println!("answers kept in {}", dir.display());
    }
}

fn row(set: &str, who: &str, s: &Score, wall: Duration, ratio: Option<f64>) {
    let pct = |count: usize, of: usize| if of == 0 { 0.0 } else { 100.0 * count as f64 / of as f64 };
    println!(
        "{:<13} {:<6} {:>5} {:>7.2} {:>11} {:>11} {:>5} {:>8.1} {:>7.1} {:>14} {:>9} {:>10.0} {:>8} {:>10}",
        set,
        who,
        s.n,
        s.pct(s.right),
        format!("{:.2} ({})", s.pct(s.wrong), s.wrong),
        format!("{:.2} ({})", s.pct(s.lost), s.lost),
        s.unknown,
        s.pct(s.status_ok),
        pct(s.exact, s.n_loc),
        format!("{}/{} ({:.0}%)", s.path_ok, s.n_renamed, pct(s.path_ok, s.n_renamed)),
        format!("{}/{}", s.unjudged_wrong, s.unjudged_lost),
        s.n as f64 / wall.as_secs_f64(),
        format!("{:.2?}", wall),
        ratio.map_or(String::new(), |r| format!("{r:.1}x"))
    );
}

/// The release binary over the whole set in one process; its stdout and the wall-clock time.
fn run_ours(repo: &Path, cases: &CaseSet) -> (String, Duration) {
    let batch = repo.join(format!("{}.jsonl", cases.name));
    std::fs::write(&batch, cases.batch()).unwrap();
    let t = Instant::now();
    let out = Command::new(histories::marginalia_bin())
        .args(["locate", "--repo"])
        .arg(repo)
        .args(["--to", &cases.to, "--batch"])
        .arg(&batch)
        .arg("--explain")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("the marginalia binary runs");
    let wall = t.elapsed();
    assert!(out.status.success(), "{}: marginalia locate failed: {}", cases.name, String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8(out.stdout).expect("UTF-8 answers");
    assert_eq!(out.lines().count(), cases.cases.len(), "{}: one answer per case", cases.name);
    (out, wall)
}

// ---------- the plain approach: diffmap.py ----------

/// A hunk header of `git diff -U0`: old start, old count, new start, new count.
type Hunk = (i64, i64, i64, i64);

fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = git_command(repo).args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// JSON Lines answers for `cases`, as `diffmap.py --repo REPO --to T --batch` prints them.
fn run_plain(repo: &Path, to: &str, cases: &[Case]) -> String {
    // The fate of every path between one commit and T, kept for the current commit only (the
    // cases are not sorted by commit).
    let mut fates: Option<(String, HashMap<String, Option<String>>)> = None;
    let mut out = String::new();
    for case in cases {
        let answer = predict(repo, to, case, &mut fates).unwrap_or_else(|e| {
            eprintln!("plain: {}: {e}", case.id);
            json!({"id": case.id, "status": "error"})
        });
        out.push_str(&answer.to_string());
        out.push('\n');
    }
    out
}

/// `{old path: Some(new path) when renamed, None when deleted}` between `from` and `to`.
fn name_status(repo: &Path, from: &str, to: &str) -> Result<HashMap<String, Option<String>>, String> {
    let out = git(repo, &["diff", "-M", "--name-status", "-z", "--no-color", from, to])?;
    let toks: Vec<String> = out.split(|&b| b == 0).map(|t| String::from_utf8_lossy(t).into_owned()).collect();
    let mut fates = HashMap::new();
    let mut i = 0;
    while i < toks.len() && !toks[i].is_empty() {
        let kind = toks[i].as_bytes()[0];
        let tok = |k: usize| toks.get(k).cloned().ok_or("short --name-status output");
        if kind == b'R' || kind == b'C' {
            if kind == b'R' {
                fates.insert(tok(i + 1)?, Some(tok(i + 2)?));
            }
            i += 3;
        } else {
            if kind == b'D' {
                fates.entry(tok(i + 1)?).or_insert(None);
            }
            i += 2;
        }
    }
    Ok(fates)
}

/// `@@ -a[,b] +c[,d] @@` at the start of a line.
fn hunk(line: &[u8]) -> Option<Hunk> {
    fn range(s: &[u8]) -> Option<(i64, i64, &[u8])> {
        let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
        let n = digits(s);
        let start = std::str::from_utf8(&s[..n]).ok()?.parse().ok()?;
        let rest = &s[n..];
        match rest.strip_prefix(b",") {
            Some(more) if digits(more) > 0 => {
                let m = digits(more);
                Some((start, std::str::from_utf8(&more[..m]).ok()?.parse().ok()?, &more[m..]))
            }
            _ => Some((start, 1, rest)),
        }
    }
    let (a, b, rest) = range(line.strip_prefix(b"@@ -")?)?;
    let (c, d, rest) = range(rest.strip_prefix(b" +")?)?;
    rest.starts_with(b" @@").then_some((a, b, c, d))
}

/// The new line of old line `x`, or, when a hunk removed it, `Err` with the nearest new line.
fn map_line(hunks: &[Hunk], x: i64) -> Result<i64, i64> {
    let mut off = 0;
    for &(a, b, c, d) in hunks {
        if b > 0 {
            if a <= x && x < a + b {
                return Err(if d == 0 { c + 1 } else { c });
            }
            if a + b - 1 < x {
                off += d - b;
                continue;
            }
        } else if a < x {
            off += d; // a pure insertion after old line a
            continue;
        }
        break;
    }
    Ok(x + off)
}

fn predict(
    repo: &Path,
    to: &str,
    case: &Case,
    fates: &mut Option<(String, HashMap<String, Option<String>>)>,
) -> Result<Value, String> {
    if fates.as_ref().is_none_or(|(c, _)| *c != case.commit) {
        *fates = Some((case.commit.clone(), name_status(repo, &case.commit, to)?));
    }
    let fate = fates.as_ref().unwrap().1.get(&case.path);
    if let Some(None) = fate {
        return Ok(json!({"id": case.id, "status": "deleted", "path": null, "start": null, "end": null}));
    }
    let target = fate.cloned().flatten().unwrap_or_else(|| case.path.clone());
    let mut args = vec!["diff", "-U0", "-M", "--no-color", "--no-ext-diff", &case.commit, to, "--", &case.path];
    if target != case.path {
        args.push(&target);
    }
    let diff = git(repo, &args)?;
    let hunks: Vec<Hunk> = diff.split(|&b| b == b'\n').filter_map(hunk).collect();
    let mapped: Vec<Result<i64, i64>> = (case.start..=case.end).map(|x| map_line(&hunks, x)).collect();
    let alive: Vec<i64> = mapped.iter().filter_map(|m| m.ok()).collect();
    if alive.is_empty() {
        let near = mapped.first().and_then(|m| m.err()).unwrap_or(1).max(1);
        return Ok(json!({"id": case.id, "status": "deleted", "path": target, "start": near, "end": near}));
    }
    let inserted_inside = hunks.iter().any(|&(a, b, _, _)| b == 0 && case.start <= a && a < case.end);
    let status = if alive.len() == mapped.len() && !inserted_inside { "intact" } else { "modified" };
    let (start, end) = (alive.iter().min(), alive.iter().max());
    Ok(json!({"id": case.id, "status": status, "path": target, "start": start, "end": end}))
}
