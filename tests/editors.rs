//! The editor setups that have no test runner of their own: the JetBrains (LSP4IJ) template in
//! `editors/jetbrains/marginalia`. Its files must parse and say what LSP4IJ reads, and the real
//! server, started with the template's options, must serve the flow LSP4IJ offers: a codemark
//! added from the IDE's terminal shows up as a code lens (after the server asks for a lens
//! refresh), the lens's command shows the thread, and hovers show it too.

mod common;

use std::path::Path;

use common::lsp::{Lsp, uri};
use common::{Scratch, marginalia_at, numbered};
use serde_json::{Value, json};

fn template_file(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/jetbrains/marginalia").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn the_jetbrains_template_says_what_lsp4ij_reads() {
    let t = template_file("template.json");
    assert_eq!(t["id"], "marginalia");
    assert_eq!(t["name"], "marginalia");
    let default = t["programArgs"]["default"].as_str().unwrap();
    let windows = t["programArgs"]["windows"].as_str().unwrap();
    assert!(default.ends_with("/marginalia lsp"), "{default}");
    assert!(windows.ends_with("/marginalia.exe lsp"), "{windows}");
    let mappings = t["fileTypeMappings"].as_array().unwrap();
    assert!(mappings.len() > 10, "the usual source files are mapped");
    for m in mappings {
        let patterns = m["fileType"]["patterns"].as_array().unwrap();
        assert!(!patterns.is_empty() && patterns.iter().all(|p| p.as_str().is_some_and(|p| !p.is_empty())), "{m}");
        assert!(m["languageId"].as_str().is_some_and(|l| !l.is_empty()), "{m}");
    }
    let all: Vec<&str> =
        mappings.iter().flat_map(|m| m["fileType"]["patterns"].as_array().unwrap()).filter_map(Value::as_str).collect();
    for p in ["*.rs", "*.py", "*.java", "*.kt", "*.go", "*.ts", "*.md"] {
        assert!(all.contains(&p), "{p} is mapped");
    }
    // Only the settings the server reads (`diagnostics`, bare or under `marginalia`).
    assert_eq!(template_file("initializationOptions.json"), json!({"diagnostics": false}));
    assert_eq!(template_file("settings.json"), json!({"marginalia": {"diagnostics": false}}));
}

#[test]
fn the_server_serves_what_lsp4ij_shows_lenses_their_command_and_hovers() {
    let repo = Scratch::new();
    repo.write("src/lib.rs", numbered("fn", 30));
    repo.commit("start");
    let data = tempfile::tempdir().unwrap();
    let u = uri(&repo.file("src/lib.rs"));

    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, template_file("initializationOptions.json"));
    lsp.notify("workspace/didChangeConfiguration", json!({"settings": template_file("settings.json")}));
    lsp.open(&u, 1, &repo.read("src/lib.rs"));
    let none = lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
    assert_eq!(none, json!([]));

    // The README's first codemark, from the IDE's terminal.
    let out = marginalia_at(
        repo.path(),
        data.path(),
        &[
            "codemark",
            "add",
            "--path",
            "src/lib.rs",
            "--lines",
            "10-12",
            "--kind",
            "question",
            "--body",
            "Why cache here?",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // LSP4IJ asks for lenses again when the server asks it to; the refresh that opening the
    // file caused may come first, so ask after each one until the new codemark is there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let lenses = loop {
        lsp.wait_for_request("workspace/codeLens/refresh");
        let lenses = lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
        if lenses != json!([]) || std::time::Instant::now() > deadline {
            break lenses;
        }
    };
    let lens = &lenses[0];
    assert_eq!(lenses.as_array().unwrap().len(), 1, "{lenses:#}");
    assert_eq!(lens["range"]["start"]["line"], 9);
    assert_eq!(lens["command"]["title"], "question: Why cache here? · 1 comment · open");

    // A click on the lens: LSP4IJ runs its command with its arguments, as they are.
    let shown = lsp
        .request(
            "workspace/executeCommand",
            json!({"command": lens["command"]["command"], "arguments": lens["command"]["arguments"]}),
        )
        .unwrap();
    assert_eq!(shown["body"], "Why cache here?");
    let message = lsp.wait_for("the thread as a message", |n| n["method"] == "window/showMessage");
    assert!(message["params"]["message"].as_str().unwrap().contains("Why cache here?"), "{message:#}");

    let hover = lsp
        .request("textDocument/hover", json!({"textDocument": {"uri": u}, "position": {"line": 11, "character": 0}}))
        .unwrap();
    assert_eq!(hover["contents"]["kind"], "markdown");
    assert!(hover["contents"]["value"].as_str().unwrap().contains("Why cache here?"));
    lsp.stop();
}
