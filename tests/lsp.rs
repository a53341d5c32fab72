//! The language server as an editor drives it: the real binary over stdio, a real git
//! repository, a real store file.

mod common;

use std::time::Duration;

use common::lsp::{Lsp, lines_of, range_json, uri};
use common::{Scratch, marginalia_at, numbered, stdout};
use serde_json::{Value, json};

fn setup() -> (Scratch, tempfile::TempDir, String, String) {
    let repo = Scratch::new();
    repo.write("src/lib.rs", numbered("fn", 30));
    repo.commit("start");
    let data = tempfile::tempdir().unwrap();
    let u = uri(&repo.file("src/lib.rs"));
    let text = repo.read("src/lib.rs");
    (repo, data, u, text)
}

fn create(lsp: &mut Lsp, u: &str, range: [u32; 4], kind: &str, body: &str) -> Value {
    lsp.command("marginalia.codemark.create", json!({"uri": u, "range": range_json(range), "kind": kind, "body": body}))
        .expect("create succeeds")
}

#[test]
fn a_codemark_follows_typing_survives_a_commit_and_a_restart() {
    let (repo, data, u, text) = setup();
    let mut lsp = Lsp::start(repo.path(), data.path());
    let init = lsp.initialize(repo.path(), false, json!({}));
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-16");
    assert_eq!(init["capabilities"]["textDocumentSync"]["change"], 2, "incremental sync");
    let commands = init["capabilities"]["executeCommandProvider"]["commands"].as_array().unwrap();
    for c in ["create", "reply", "resolve", "reopen", "edit", "delete"] {
        assert!(commands.contains(&json!(format!("marginalia.codemark.{c}"))), "{c} is advertised");
    }
    lsp.open(&u, 1, &text);

    // Lines 10-12 (0-based 9..=11), selected as whole lines.
    let made = create(&mut lsp, &u, [9, 0, 12, 0], "question", "Why three lines?");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["kind"], "question");
    assert_eq!(lines_of(&made), (9, 11));
    lsp.wait_for("didChangeCodemarks", |n| n["method"] == "marginalia/didChangeCodemarks" && n["params"]["uri"] == u);

    // Three lines typed above it push it down; a word typed inside keeps it there, modified.
    lsp.change(&u, 2, [0, 0, 0, 0], "// a\n// b\n// c\n");
    lsp.change(&u, 3, [13, 2, 13, 2], "XX");
    let marks = lsp.codemarks(&u);
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0]["id"], id.as_str());
    assert_eq!(lines_of(&marks[0]), (12, 14));
    assert_eq!(marks[0]["anchorStatus"], "modified");
    let lenses = lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
    assert_eq!(lenses.as_array().unwrap().len(), 1);
    assert_eq!(lenses[0]["range"]["start"]["line"], 12);
    let title = lenses[0]["command"]["title"].as_str().unwrap();
    assert!(title.contains("question: Why three lines?") && title.contains("1 comment · open"), "{title}");
    let hover = lsp
        .request("textDocument/hover", json!({"textDocument": {"uri": u}, "position": {"line": 13, "character": 0}}))
        .unwrap();
    assert!(hover["contents"]["value"].as_str().unwrap().contains("Why three lines?"));
    let none = lsp
        .request("textDocument/hover", json!({"textDocument": {"uri": u}, "position": {"line": 2, "character": 0}}))
        .unwrap();
    assert!(none.is_null(), "no hover away from the codemark");

    // Reply and resolve: the thread and the lens say so.
    lsp.command("marginalia.codemark.reply", json!({"id": id, "body": "Because of the cache."})).unwrap();
    let resolved = lsp.command("marginalia.codemark.resolve", json!({"id": id})).unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["replies"][0]["body"], "Because of the cache.");
    let one = lsp.request("marginalia/codemark", json!({"id": id})).unwrap();
    assert_eq!(one["replies"].as_array().unwrap().len(), 1);

    // Save what the buffer holds, commit it, and start over with a new server.
    let mut edited: Vec<String> = vec!["// a".into(), "// b".into(), "// c".into()];
    edited.extend(text.lines().map(str::to_owned));
    edited[13].insert_str(2, "XX");
    let saved = edited.join("\n") + "\n";
    repo.write("src/lib.rs", &saved);
    lsp.notify("textDocument/didSave", json!({"textDocument": {"uri": u}}));
    repo.commit("edit");
    lsp.stop();

    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    // Placing the stored codemarks at start is reported as progress.
    lsp.wait_for("the end of $/progress", |n| n["method"] == "$/progress" && n["params"]["value"]["kind"] == "end");
    lsp.open(&u, 1, &saved);
    let marks = lsp.codemarks(&u);
    assert_eq!(marks.len(), 1, "{marks:#?}");
    assert_eq!(lines_of(&marks[0]), (12, 14));
    assert_eq!(marks[0]["status"], "resolved");
    assert_eq!(marks[0]["anchorStatus"], "modified");
    lsp.stop();

    // The command line sees the same store.
    let out = marginalia_at(repo.path(), data.path(), &["codemark", "list", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!((list[0]["start"].as_u64(), list[0]["end"].as_u64()), (Some(13), Some(15)));
}

#[test]
fn a_stored_codemark_shows_its_lens_and_thread_and_tracks_typing_inside_it() {
    let (repo, data, u, text) = setup();
    let add = ["codemark", "add", "--path", "src/lib.rs", "--lines", "10-12", "--kind", "question"];
    let out = marginalia_at(
        repo.path(),
        data.path(),
        &[&add[..], &["--body", "Made before the editor started", "--json"]].concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let reply = ["codemark", "reply", &id, "--body", "A reply from the command line"];
    let out = marginalia_at(repo.path(), data.path(), &reply);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.wait_for("the end of $/progress", |n| n["method"] == "$/progress" && n["params"]["value"]["kind"] == "end");
    lsp.open(&u, 1, &text);
    // The lens, from what the server keeps of every codemark; the hover reads the thread.
    let lenses = lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
    assert_eq!(lenses.as_array().unwrap().len(), 1, "{lenses:#}");
    assert_eq!(lenses[0]["range"]["start"]["line"], 9);
    let title = lenses[0]["command"]["title"].as_str().unwrap();
    assert_eq!(title, "question: Made before the editor started · 2 comments · open");
    let hover = lsp
        .request("textDocument/hover", json!({"textDocument": {"uri": u}, "position": {"line": 10, "character": 0}}))
        .unwrap();
    let thread = hover["contents"]["value"].as_str().unwrap();
    assert!(thread.contains("Made before the editor started") && thread.contains("A reply from the command line"));

    // Typed inside, the code reads differently: modified. Typed away again: intact.
    lsp.change(&u, 2, [10, 0, 10, 0], "X");
    let marks = lsp.codemarks(&u);
    assert_eq!((marks[0]["anchorStatus"].as_str(), lines_of(&marks[0])), (Some("modified"), (9, 11)));
    let lenses = lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
    assert!(lenses[0]["command"]["title"].as_str().unwrap().starts_with("code changed · question"), "{lenses:#}");
    lsp.change(&u, 3, [10, 0, 10, 1], "");
    let marks = lsp.codemarks(&u);
    assert_eq!((marks[0]["anchorStatus"].as_str(), lines_of(&marks[0])), (Some("intact"), (9, 11)));
    assert_eq!(marks[0]["replies"].as_array().map(Vec::len), Some(1));

    // A reply from the command line while the editor runs: the lens counts it.
    lsp.settle(Duration::from_millis(100));
    lsp.notifications.clear();
    let reply = ["codemark", "reply", &id, "--body", "Another, while the editor runs"];
    let out = marginalia_at(repo.path(), data.path(), &reply);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lsp.wait_for("didChangeCodemarks", |n| n["method"] == "marginalia/didChangeCodemarks" && n["params"]["uri"] == u);
    let lenses = lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
    assert_eq!(lenses[0]["command"]["title"], "question: Made before the editor started · 3 comments · open");
    lsp.stop();
}

#[test]
fn changes_delivered_out_of_order_are_applied_in_version_order() {
    let (repo, data, u, text) = setup();
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &text);
    create(&mut lsp, &u, [20, 0, 21, 5], "comment", "here");
    // Version 2 puts two lines on top, pushing the codemark to lines 22-23; version 3 then
    // inserts a line just above it (line 21). Applied as delivered, version 3 would land inside
    // the codemark instead, and it would end at 22-24.
    lsp.change(&u, 3, [21, 0, 21, 0], "// three\n");
    lsp.change(&u, 2, [0, 0, 0, 0], "// one\n// two\n");
    let marks = lsp.codemarks(&u);
    assert_eq!(lines_of(&marks[0]), (23, 24));
    assert_eq!(marks[0]["anchorStatus"], "intact");

    // A gap nobody fills (Neovim's versions jump) is accepted after a short wait.
    lsp.change(&u, 9, [0, 0, 0, 0], "// four\n");
    lsp.settle(Duration::from_millis(400));
    let marks = lsp.codemarks(&u);
    assert_eq!(lines_of(&marks[0]), (24, 25));
    lsp.stop();
}

#[test]
fn lines_not_committed_yet_anchor_to_their_text_and_then_to_the_commit() {
    let (repo, data, u, text) = setup();
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &text);
    lsp.change(&u, 2, [5, 0, 5, 0], "fn brand_new() {\n    todo!()\n}\n");
    let made = create(&mut lsp, &u, [5, 0, 7, 1], "issue", "Not done");
    assert_eq!(made["pending"], true);
    let id = made["id"].as_str().unwrap().to_owned();

    let mut lines: Vec<&str> = text.lines().collect();
    lines.splice(5..5, ["fn brand_new() {", "    todo!()", "}"]);
    repo.write("src/lib.rs", lines.join("\n") + "\n");
    lsp.notify("textDocument/didSave", json!({"textDocument": {"uri": u}}));
    let head = repo.commit("add brand_new");
    // The server notices the commit by itself and moves the anchor onto it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let one = lsp.request("marginalia/codemark", json!({"id": id})).unwrap();
        if one["pending"] == false {
            assert_eq!(lines_of(&one), (5, 7));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the anchor was not promoted: {one:#}");
        lsp.settle(Duration::from_millis(200));
    }
    lsp.stop();
    let out = marginalia_at(repo.path(), data.path(), &["codemark", "show", &id, "--json"]);
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["anchor"]["commit"], head.as_str());
    assert_eq!((shown["anchor"]["start"].as_u64(), shown["anchor"]["end"].as_u64()), (Some(6), Some(8)));
}

#[test]
fn utf8_is_negotiated_when_offered_and_surrogate_pairs_count_twice_otherwise() {
    let repo = Scratch::new();
    repo.write("a.txt", "héllo 😀 wörld\nsecond\nthird\n");
    repo.commit("start");
    let data = tempfile::tempdir().unwrap();
    let u = uri(&repo.file("a.txt"));
    let mut lsp = Lsp::start(repo.path(), data.path());
    let init = lsp.initialize(repo.path(), true, json!({}));
    assert_eq!(init["capabilities"]["positionEncoding"], "utf-8");
    lsp.open(&u, 1, &repo.read("a.txt"));
    let made = create(&mut lsp, &u, [0, 0, 0, 3], "comment", "accents");
    assert_eq!(made["range"]["end"]["character"], 18, "line 1 is 18 bytes long");
    lsp.stop();

    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &repo.read("a.txt"));
    let marks = lsp.codemarks(&u);
    assert_eq!(marks[0]["range"]["end"]["character"], 14, "line 1 is 14 UTF-16 units long");
    // Inside the emoji's surrogate pair: a clear error, and nothing made.
    let err = lsp
        .command("marginalia.codemark.create", json!({"uri": u, "range": range_json([0, 7, 0, 7]), "body": "x"}))
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("inside a character"), "{err}");
    // Typing after the emoji on line 1 moves nothing; typing a line above would.
    lsp.change(&u, 2, [0, 9, 0, 9], "!");
    assert_eq!(lsp.codemarks(&u).len(), 1);
    lsp.stop();
}

#[test]
fn bad_input_gets_an_error_that_names_it_and_the_server_keeps_serving() {
    let (repo, data, u, text) = setup();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("loose.txt"), "not in a repository\n").unwrap();
    let loose = uri(&outside.path().join("loose.txt"));
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &text);

    let expect_error = |lsp: &mut Lsp, arg: Value, says: &str| {
        let err = lsp.command("marginalia.codemark.create", arg.clone()).expect_err("an error");
        let msg = err["message"].as_str().unwrap();
        assert!(msg.contains(says), "{arg} gave `{msg}`, which does not say `{says}`");
    };
    let r = range_json([1, 0, 1, 0]);
    expect_error(&mut lsp, json!({"uri": u, "range": range_json([40, 0, 41, 0]), "body": "x"}), "has 31 lines");
    expect_error(&mut lsp, json!({"uri": u, "range": r, "body": "x", "kind": "rant"}), "unknown kind `rant`");
    expect_error(&mut lsp, json!({"uri": u, "range": r}), "missing field `body`");
    expect_error(&mut lsp, json!({"uri": "untitled:Untitled-1", "range": r, "body": "x"}), "only file: URIs");
    expect_error(&mut lsp, json!({"uri": loose, "range": r, "body": "x"}), "not inside a git repository");
    expect_error(&mut lsp, json!({"uri": u, "range": r, "body": "x".repeat(300_000)}), "the limit is");
    let err = lsp.command("marginalia.codemark.reply", json!({"id": "nope", "body": "hi"})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("no codemark `nope`"));
    let err = lsp.command("marginalia.codemark.frobnicate", json!({})).unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("unknown command"));

    // An edit past the end of the document is clamped, as LSP says, and tracking goes on.
    create(&mut lsp, &u, [3, 0, 3, 4], "comment", "still here");
    lsp.change(&u, 2, [99, 0, 120, 7], "tail\n");
    lsp.change(&u, 3, [0, 0, 0, 0], "top\n");
    let marks = lsp.codemarks(&u);
    assert_eq!(lines_of(&marks[0]), (4, 4));
    lsp.stop();
}

#[test]
fn a_corrupt_store_is_reported_and_left_alone() {
    let (repo, data, u, text) = setup();
    let junk = b"this is not a database, but it is somebody's file".repeat(100);
    std::fs::write(data.path().join("marginalia.db"), &junk).unwrap();
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    let shown = lsp.wait_for("an error message", |n| n["method"] == "window/showMessage");
    assert!(shown["params"]["message"].as_str().unwrap().contains("marginalia.db"), "{shown}");
    lsp.open(&u, 1, &text);
    let err = lsp
        .command("marginalia.codemark.create", json!({"uri": u, "range": range_json([1, 0, 2, 0]), "body": "x"}))
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("store"), "{err}");
    // Still serving.
    assert!(lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).is_ok());
    lsp.stop();
    assert_eq!(std::fs::read(data.path().join("marginalia.db")).unwrap(), junk, "the file is untouched");
}

#[test]
fn diagnostics_are_off_until_asked_for() {
    let (repo, data, u, text) = setup();
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &text);
    create(&mut lsp, &u, [2, 0, 2, 3], "issue", "Leaks");
    lsp.settle(Duration::from_millis(200));
    assert!(!lsp.notifications.iter().any(|n| n["method"] == "textDocument/publishDiagnostics"));
    lsp.notify("workspace/didChangeConfiguration", json!({"settings": {"marginalia": {"diagnostics": true}}}));
    let d = lsp.wait_for("diagnostics", |n| n["method"] == "textDocument/publishDiagnostics");
    let diag = &d["params"]["diagnostics"][0];
    assert_eq!(diag["severity"], 3, "Information");
    assert_eq!(diag["source"], "marginalia");
    assert_eq!(diag["range"]["start"]["line"], 2);
    lsp.stop();
}

#[test]
fn deleted_code_keeps_its_codemark_listed_where_it_was() {
    // The commented lines are unlike the others: in a file of near-identical lines the engine
    // may take a neighbour for the deleted code, edited, where the live tracker knows better.
    let repo = Scratch::new();
    let mut lines: Vec<String> = numbered("fn", 30).lines().map(str::to_owned).collect();
    lines[10] = "socket.set_nodelay(true).expect(\"nodelay\");".into();
    lines[11] = "assert!(matrix.rows() == matrix.cols(), \"square\");".into();
    let code: String = lines.iter().map(|l| format!("{l}\n")).collect();
    repo.write("src/lib.rs", &code);
    repo.commit("start");
    let data = tempfile::tempdir().unwrap();
    let u = uri(&repo.file("src/lib.rs"));
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &code);
    assert!(lsp.codemarks(&u).is_empty(), "placed, and nothing there yet");
    create(&mut lsp, &u, [10, 0, 12, 0], "comment", "going away");
    lsp.change(&u, 2, [9, 0, 13, 0], "");
    let check = |lsp: &mut Lsp, when: &str| {
        let marks = lsp.codemarks(&u);
        assert_eq!(marks.len(), 1, "listed, not dropped ({when})");
        assert_eq!(marks[0]["anchorStatus"], "deleted", "{when}");
        assert_eq!(lines_of(&marks[0]), (9, 9), "where it used to be ({when})");
        let lenses = lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).unwrap();
        assert!(lenses[0]["command"]["title"].as_str().unwrap().starts_with("code deleted"), "{lenses}");
    };
    check(&mut lsp, "tracked live");
    // A save places the codemarks again from the commit with the engine: the same answer.
    let edited: String =
        code.lines().enumerate().filter(|(i, _)| !(9..13).contains(i)).map(|(_, l)| format!("{l}\n")).collect();
    repo.write("src/lib.rs", &edited);
    lsp.settle(Duration::from_millis(100));
    lsp.notifications.clear();
    lsp.notify("textDocument/didSave", json!({"textDocument": {"uri": u}}));
    lsp.wait_for("didChangeCodemarks after the save", |n| n["method"] == "marginalia/didChangeCodemarks");
    check(&mut lsp, "placed again after a save");
    lsp.stop();
}

#[test]
fn nested_repositories_and_the_command_line_share_one_store_with_the_editor() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let make = |dir: &std::path::Path, name: &str| {
        std::fs::create_dir_all(dir).unwrap();
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(["-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
                .args(args)
                .current_dir(dir)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .status()
                .unwrap();
            assert!(ok.success());
        };
        run(&["init", "-q"]);
        std::fs::write(dir.join("main.rs"), numbered(name, 12)).unwrap();
        run(&["add", "-A"]);
        run(&["commit", "-q", "-m", "start"]);
    };
    let (a, b) = (root.path().join("apps/a"), root.path().join("libs/deep/b"));
    make(&a, "alpha");
    make(&b, "beta");
    let (ua, ub) = (uri(&a.join("main.rs")), uri(&b.join("main.rs")));
    let mut lsp = Lsp::start(root.path(), data.path());
    lsp.initialize(root.path(), false, json!({}));
    lsp.open(&ua, 1, &numbered("alpha", 12));
    lsp.open(&ub, 1, &numbered("beta", 12));
    create(&mut lsp, &ua, [1, 0, 2, 0], "comment", "in a");
    create(&mut lsp, &ub, [3, 0, 4, 0], "comment", "in b");
    assert_eq!(lsp.codemarks(&ua).len(), 1);
    assert_eq!(lsp.codemarks(&ub).len(), 1);

    // The command line writes the same store while the editor runs; the editor picks it up.
    lsp.settle(Duration::from_millis(100));
    lsp.notifications.clear();
    let out = marginalia_at(
        &b,
        data.path(),
        &["codemark", "add", "--path", "main.rs", "--lines", "8-9", "--body", "from CI"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    lsp.wait_for("didChangeCodemarks for b", |n| {
        n["method"] == "marginalia/didChangeCodemarks" && n["params"]["uri"] == ub
    });
    let marks = lsp.codemarks(&ub);
    assert_eq!(marks.len(), 2);
    assert_eq!(lines_of(&marks[1]), (7, 8));
    assert_eq!(marks[1]["body"], "from CI");
    lsp.stop();
}

#[test]
fn binary_and_huge_documents_are_named_and_the_server_keeps_serving() {
    let (repo, data, u, text) = setup();
    repo.write("logo.png", "\u{89}PNG\r\n\u{1a}\n\0\0\0\rIHDR\0\0\0\x10");
    repo.write("big.txt", "small for now\n");
    repo.commit("assets");
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &text);
    create(&mut lsp, &u, [4, 0, 5, 0], "comment", "kept through it all");

    let binary = uri(&repo.file("logo.png"));
    lsp.open(&binary, 1, &repo.read("logo.png"));
    let warned = lsp.wait_for("a warning", |n| n["method"] == "window/showMessage");
    assert!(warned["params"]["message"].as_str().unwrap().contains("logo.png is a binary file"), "{warned}");
    let err = lsp
        .command("marginalia.codemark.create", json!({"uri": binary, "range": range_json([0, 0, 0, 3]), "body": "x"}))
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("binary file"), "{err}");
    assert!(lsp.codemarks(&binary).is_empty());

    // Past the tracking limit (64 MiB): said once, not tracked, nothing else disturbed.
    lsp.settle(Duration::from_millis(100));
    lsp.notifications.clear();
    let huge = uri(&repo.file("big.txt"));
    let line = "a line of a generated file that nobody reads by hand, repeated\n";
    let big = line.repeat((64 << 20) / line.len() + 1);
    lsp.open(&huge, 1, &big);
    let warned = lsp.wait_for("a warning", |n| n["method"] == "window/showMessage");
    assert!(warned["params"]["message"].as_str().unwrap().contains("big.txt is larger than"), "{warned}");
    let err = lsp
        .command("marginalia.codemark.create", json!({"uri": huge, "range": range_json([0, 0, 0, 3]), "body": "x"}))
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("larger than"), "{err}");
    lsp.change(&huge, 2, [0, 0, 0, 0], "typing goes on\n");

    let marks = lsp.codemarks(&u);
    assert_eq!(marks.len(), 1);
    assert_eq!(lines_of(&marks[0]), (4, 4));
    lsp.stop();
}

#[test]
fn a_deleted_repository_is_reported_and_its_codemarks_stay_in_the_store() {
    let (repo, data, u, text) = setup();
    let mut lsp = Lsp::start(repo.path(), data.path());
    lsp.initialize(repo.path(), false, json!({}));
    lsp.open(&u, 1, &text);
    let made = create(&mut lsp, &u, [4, 0, 6, 0], "issue", "survives its checkout");
    lsp.settle(Duration::from_millis(100));
    lsp.notifications.clear();

    let root = repo.path().to_owned();
    std::fs::remove_dir_all(&root).unwrap();
    let gone = lsp.wait_for("the repository is gone", |n| n["method"] == "window/showMessage");
    let said = gone["params"]["message"].as_str().unwrap();
    assert!(said.contains("is gone") && said.contains("stay in the store"), "{said}");

    // The editor still has the buffer: it is served, and a new codemark says why it cannot be.
    assert!(lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}})).is_ok());
    let err = lsp
        .command("marginalia.codemark.create", json!({"uri": u, "range": range_json([1, 0, 2, 0]), "body": "x"}))
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains(&*root.to_string_lossy()), "{err}");
    let one = lsp.request("marginalia/codemark", json!({"id": made["id"]})).unwrap();
    assert_eq!(one["body"], "survives its checkout");
    lsp.stop();

    let store = marginalia::store::Store::open(&data.path().join("marginalia.db")).unwrap();
    let kept = store.get(made["id"].as_str().unwrap()).unwrap().expect("still stored");
    assert_eq!(kept.body, "survives its checkout");
}
