//! Real git repositories for tests: a fresh temp dir each, a history scripted with the git
//! command line (so what we read is what git itself wrote), and the built binary to run.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// A git repository in a temp dir, removed when dropped.
pub struct Scratch {
    dir: TempDir,
    clock: std::cell::Cell<u64>,
}

impl Scratch {
    pub fn new() -> Scratch {
        let s = Scratch { dir: tempfile::tempdir().expect("a temp dir"), clock: std::cell::Cell::new(0) };
        s.git(&["init", "-q", "-b", "main"]);
        s
    }

    /// A repository that clones `from` with extra `git clone` arguments (`--bare`, `--depth=1`).
    pub fn clone_of(from: &Scratch, args: &[&str]) -> Scratch {
        let s = Scratch { dir: tempfile::tempdir().expect("a temp dir"), clock: std::cell::Cell::new(0) };
        let url = format!("file://{}", from.path().display());
        let mut all = vec!["clone", "-q"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[&url, "."]);
        s.git(&all);
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, path: &str) -> PathBuf {
        self.path().join(path)
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let full = self.file(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.file(path)).unwrap()
    }

    /// Runs git here with a clean, fixed configuration; panics with git's stderr on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let t = self.clock.get() + 1;
        self.clock.set(t);
        let date = format!("{} +0000", 1_700_000_000 + t * 60);
        let out = Command::new("git")
            .args(["-c", "core.autocrlf=false", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// Stages everything and commits; returns the new commit's id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn mv(&self, from: &str, to: &str) {
        if let Some(parent) = Path::new(to).parent() {
            std::fs::create_dir_all(self.file(&parent.to_string_lossy())).unwrap();
        }
        self.git(&["mv", from, to]);
    }
}

/// Runs the built `marginalia` with `args`, feeding `stdin`.
pub fn marginalia(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_marginalia"))
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the marginalia binary runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Numbered lines `prefix 1` .. `prefix n`, each distinct, newline-terminated.
pub fn numbered(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix} line {i} does work {}\n", i * 37 % 101)).collect()
}

pub mod fake_host;
pub mod lsp;

/// Runs `marginalia` in folder `cwd` with its store in `data_dir`.
pub fn marginalia_at(cwd: &Path, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marginalia"))
        .args(args)
        .current_dir(cwd)
        .env("MARGINALIA_DATA_DIR", data_dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the marginalia binary runs")
}
