//! The Neovim plugin (`editors/neovim`) for real: headless Neovim with the plugin, against the
//! real `marginalia lsp`, on a real repository and an isolated store. The steps and their checks
//! are in `editors/neovim/tests/follows_edits.lua`; this test builds the repository, runs Neovim
//! with a deadline, and reads what the script saw.
//!
//! Without `nvim` on PATH the test says `SKIPPED: neovim is not installed` and passes, unless
//! `MARGINALIA_REQUIRE_NEOVIM=1` (set by `.ci/test`, which installs Neovim first): then it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, numbered};
use serde_json::Value;

/// Neovim, the language server and the script together get this long before Neovim is killed.
const DEADLINE: Duration = Duration::from_secs(120);

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/neovim")
}

#[test]
fn a_codemark_sign_follows_lines_typed_above_it_in_neovim() {
    let Some(nvim) = on_path("nvim") else {
        if std::env::var("MARGINALIA_REQUIRE_NEOVIM").as_deref() == Ok("1") {
            panic!("neovim is not installed, and MARGINALIA_REQUIRE_NEOVIM=1 says it must be");
        }
        println!("SKIPPED: neovim is not installed (apt-get install neovim, or see editors/neovim/README.md)");
        return;
    };

    let repo = Scratch::new();
    repo.write("src/lib.rs", numbered("fn", 30));
    repo.commit("start");
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("store");
    let result = home.path().join("result.json");
    let file = std::fs::canonicalize(repo.file("src/lib.rs")).unwrap();
    let tests = plugin_dir().join("tests");

    let started = Instant::now();
    let mut child = Command::new(&nvim)
        .args(["--headless", "--noplugin", "-n", "-i", "NONE", "-u"])
        .arg(tests.join("minimal_init.lua"))
        .arg("-c")
        .arg(format!("luafile {}", tests.join("follows_edits.lua").display()))
        .current_dir(repo.path())
        .env("MARGINALIA_PATH", env!("CARGO_BIN_EXE_marginalia"))
        .env("MARGINALIA_DATA_DIR", &data)
        .env("MARGINALIA_LOG", "warn")
        .env("MARGINALIA_TEST_FILE", &file)
        .env("MARGINALIA_TEST_RESULT", &result)
        // Nothing of the user's: no config, state or git settings.
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nvim starts");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "neovim did not finish within {DEADLINE:?}\nstdout: {}\nstderr: {}\nresult: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&result).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = std::fs::read_to_string(&result).unwrap_or_else(|e| {
        panic!(
            "the test script wrote no result ({e}); neovim exited with {status}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let seen: Value = serde_json::from_str(&text).expect("the result is JSON");
    println!("neovim {} ({}), {:.1} s", seen["nvim"], seen["start"], started.elapsed().as_secs_f64());
    for s in seen["steps"].as_array().into_iter().flatten() {
        println!("  ok: {}", s.as_str().unwrap_or_default());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        println!("neovim's messages:\n{}", stderr.trim_end());
    }
    assert!(
        seen["ok"] == true && status.success(),
        "the Neovim test failed (exit {status}): {}\nstderr: {}",
        seen["error"].as_str().unwrap_or("no message"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(seen["steps"].as_array().map(Vec::len), Some(6), "every step ran: {seen:#}");
}
