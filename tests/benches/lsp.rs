//! Language server speed and memory: `cargo bench --bench lsp` (release build; figures go to
//! stdout).
//!
//! 1. Open to code lenses: a file with 1,000 codemarks, opened in the real server over stdio
//!    (`didOpen` then `textDocument/codeLens`, timed until the lenses arrive); the first open
//!    after start and the median of repeated open/close cycles.
//! 2. One keystroke's `didChange` handling in a document with 1,000 placed anchors: the work
//!    the server does per change (ordering, applying the edit, moving the anchors), in-process.
//! 3. Resident memory of the idle server with 10,000 codemarks in the store, after it placed
//!    them all (VmRSS from /proc).
//!
//! `BENCH_QUICK=1` runs a smaller version (a smoke test of the benchmark itself).

#[path = "../common/lsp.rs"]
#[allow(dead_code)]
mod client;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tower_lsp_server::ls_types as lsp;

use client::{Lsp, uri};
use marginalia::anchor::{LineRange, Relocation, Status, Text, Via};
use marginalia::codemark::{self, Codemark, Kind, MarkStatus, now_ms};
use marginalia::git::{Repo, Target};
use marginalia::lsp::docs::Doc;
use marginalia::lsp::proto::Encoding;
use marginalia::store::Store;

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    println!(
        "marginalia language server benchmark ({} build)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    open_to_lenses(if quick { 5 } else { 30 });
    keystrokes(if quick { 2_000 } else { 50_000 });
    idle_memory(if quick { 1_000 } else { 10_000 });
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn source(file: usize, lines: usize) -> String {
    (0..lines).map(|i| format!("    let value_{file}_{i} = compute(input, {});\n", i * 37 % 101)).collect()
}

/// A repository with `files` files of `lines` lines, and `per_file` codemarks on each file in a
/// store in `data`.
fn fixture(files: usize, lines: usize, per_file: usize) -> (tempfile::TempDir, tempfile::TempDir) {
    let repo_dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    git(repo_dir.path(), &["init", "-q"]);
    for f in 0..files {
        let p = repo_dir.path().join(format!("src/file_{f}.rs"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, source(f, lines)).unwrap();
    }
    git(repo_dir.path(), &["add", "-A"]);
    git(repo_dir.path(), &["commit", "-q", "-m", "start"]);
    let repo = Repo::open(repo_dir.path()).unwrap();
    let key = codemark::repo_key(&repo).unwrap();
    let store = Store::open(&data.path().join("marginalia.db")).unwrap();
    let step = (lines / per_file).max(1);
    for f in 0..files {
        let path = format!("src/file_{f}.rs");
        let text = repo.file(Target::Worktree, &path).unwrap().unwrap().text;
        for i in 0..per_file {
            let start = (i * step) as u32 + 1;
            let lines = LineRange::new(start, start + (step as u32).min(3) - 1);
            let anchor = codemark::anchor_selection(&repo, &path, &text, lines).unwrap();
            let now = now_ms();
            store
                .insert(&Codemark {
                    id: codemark::new_id(),
                    repo: key.clone(),
                    kind: Kind::Comment,
                    title: None,
                    body: format!("Codemark {i} on {path}: is this right?"),
                    author: "Bench".into(),
                    status: MarkStatus::Open,
                    anchors: vec![anchor],
                    replies: Vec::new(),
                    created: now,
                    updated: now,
                    shared: None,
                    review: None,
                })
                .unwrap();
        }
    }
    (repo_dir, data)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn open_to_lenses(rounds: usize) {
    let (repo, data) = fixture(1, 5_000, 1_000);
    let path = repo.path().join("src/file_0.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let u = uri(&path);
    let mut server = Lsp::start(repo.path(), data.path());
    server.initialize(repo.path(), false, json!({}));
    let mut times = Vec::new();
    for round in 0..=rounds {
        let t = Instant::now();
        server.open(&u, 1, &text);
        let lenses = server.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
        let took = t.elapsed();
        assert_eq!(lenses.as_array().map(Vec::len), Some(1_000), "every codemark has its lens");
        if round == 0 {
            println!("open to code lenses, 1,000 codemarks, first open after start: {:.2} ms", ms(took));
        } else {
            times.push(took);
        }
        if round == 1 {
            // The same request again, nothing to place: what the lenses themselves cost (1,000 of
            // them, built, serialised, sent and parsed).
            let t = Instant::now();
            server.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
            println!("code lenses again, open document, no edit: {:.2} ms", ms(t.elapsed()));
        }
        server.notify("textDocument/didClose", json!({"textDocument": {"uri": u}}));
    }
    let p50 = median(&mut times);
    println!(
        "open to code lenses, 1,000 codemarks: median {:.2} ms, max {:.2} ms over {rounds} opens (target < 20 ms)",
        ms(p50),
        ms(*times.last().unwrap())
    );
    server.stop();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn keystrokes(n: usize) {
    let text = source(0, 20_000);
    let mut doc = Doc::new(1, text);
    let found = (0..1_000u32)
        .map(|i| {
            let start = i * 20 + 1;
            let rel = Relocation {
                status: Status::Intact,
                path: "a.rs".into(),
                lines: LineRange::new(start, start + 2),
                via: Via::Diff,
            };
            (format!("c{i}"), format!("a{i}"), rel, None)
        })
        .collect();
    let version = doc.begin_placing();
    doc.finish_placing(version, found);
    let mut times = Vec::with_capacity(n);
    let mut version = 1;
    for k in 0..n {
        // Typing on a line in the middle, with an Enter now and then.
        let line = 10_000 + (k / 40) as u32;
        let col = (k % 40) as u32;
        let text = if k % 40 == 39 { "\n" } else { "x" };
        version += 1;
        let change = lsp::TextDocumentContentChangeEvent {
            range: Some(lsp::Range::new(lsp::Position::new(line, col), lsp::Position::new(line, col))),
            range_length: None,
            text: text.to_owned(),
        };
        let t = Instant::now();
        let applied = doc.change(version, vec![change], Encoding::Utf16);
        times.push(t.elapsed());
        assert_eq!(applied.applied, 1);
    }
    let p50 = median(&mut times);
    let p99 = times[times.len() * 99 / 100];
    println!(
        "one keystroke's didChange, 1,000 anchors in a 20,000-line document: median {:.1} µs, p99 {:.1} µs over {n} keystrokes (target median < 50 µs)",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    let _ = Text::new("");
}

fn idle_memory(codemarks: usize) {
    let files = codemarks / 100;
    let (repo, data) = fixture(files, 2_000, 100);
    let mut server = Lsp::start(repo.path(), data.path());
    server.initialize(repo.path(), false, json!({}));
    // Opening one file waits for the start-up pass over every codemark.
    let path = repo.path().join("src/file_0.rs");
    let u = uri(&path);
    server.open(&u, 1, &std::fs::read_to_string(&path).unwrap());
    let marks = server.codemarks(&u);
    assert_eq!(marks.len(), 100);
    server.settle(Duration::from_secs(2));
    let rss = server.rss_kib().expect("VmRSS in /proc");
    let mib = |field| server.status_kib(field).map_or(f64::NAN, |k| k as f64 / 1024.0);
    println!(
        "resident memory, idle, {codemarks} codemarks in the store (all placed): {:.1} MiB (target < 30 MB); \
         of which its own {:.1} MiB (RssAnon) and {:.1} MiB mapped from files (RssFile: the executable's \
         code, shared with the page cache)",
        rss as f64 / 1024.0,
        mib("RssAnon:"),
        mib("RssFile:"),
    );
    server.stop();
}
