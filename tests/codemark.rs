//! `marginalia codemark ...` as scripts use it: the real binary, a real repository, a real store.

mod common;

use common::{Scratch, marginalia_at, numbered, stderr, stdout};
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn add_list_show_reply_resolve_delete() {
    let repo = Scratch::new();
    repo.write("src/lib.rs", numbered("fn", 20));
    let head = repo.commit("start");
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| marginalia_at(repo.path(), data.path(), args);

    let added = json(&run(&[
        "codemark",
        "add",
        "--path",
        "src/lib.rs",
        "--lines",
        "5-7",
        "--body",
        "Why?",
        "--kind",
        "question",
        "--json",
    ]));
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["anchor"]["commit"], head.as_str(), "committed lines anchor to HEAD");
    assert_eq!(added["pending"], false);

    // Lines move: two lines inserted above, one edited inside.
    let mut lines: Vec<String> = repo.read("src/lib.rs").lines().map(str::to_owned).collect();
    lines.insert(0, "// one".into());
    lines.insert(0, "// two".into());
    lines[7].push_str(" // edited");
    repo.write("src/lib.rs", lines.join("\n") + "\n");
    let list = json(&run(&["codemark", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    let m = &list[0];
    assert_eq!((m["id"].as_str(), m["path"].as_str()), (Some(id.as_str()), Some("src/lib.rs")));
    assert_eq!((m["start"].as_u64(), m["end"].as_u64()), (Some(7), Some(9)));
    assert_eq!(
        (m["anchorStatus"].as_str(), m["kind"].as_str(), m["status"].as_str()),
        (Some("modified"), Some("question"), Some("open"))
    );
    assert_eq!(m["body"], "Why?");
    assert_eq!(json(&run(&["codemark", "list", "--path", "src/other.rs", "--json"])).as_array().unwrap().len(), 0);

    // Short ids work; replies and status show up.
    let short = &id[..13];
    json(&run(&["codemark", "reply", short, "--body", "Because.", "--json"]));
    let resolved = json(&run(&["codemark", "resolve", short, "--json"]));
    assert_eq!(resolved["status"], "resolved");
    let shown = json(&run(&["codemark", "show", short, "--json"]));
    assert_eq!(shown["replies"][0]["body"], "Because.");
    assert_eq!((shown["start"].as_u64(), shown["anchorStatus"].as_str()), (Some(7), Some("modified")));
    let text = stdout(&run(&["codemark", "show", short]));
    assert!(text.contains("Because.") && text.contains("resolved"), "{text}");

    json(&run(&["codemark", "delete", short, "--json"]));
    assert_eq!(json(&run(&["codemark", "list", "--json"])).as_array().unwrap().len(), 0);
}

#[test]
fn uncommitted_lines_are_pending_until_committed() {
    let repo = Scratch::new();
    repo.write("a.py", numbered("def", 10));
    repo.commit("start");
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| marginalia_at(repo.path(), data.path(), args);
    repo.write("a.py", numbered("def", 10) + "def new():\n    return 42\n");
    let added = json(&run(&["codemark", "add", "--path", "a.py", "--lines", "11-12", "--body", "new code", "--json"]));
    assert_eq!(added["pending"], true);
    let list = json(&run(&["codemark", "list", "--json"]));
    assert_eq!((list[0]["start"].as_u64(), list[0]["anchorStatus"].as_str()), (Some(11), Some("intact")));
}

#[test]
fn mistakes_get_messages_that_name_them() {
    let repo = Scratch::new();
    repo.write("a.txt", "one\ntwo\n");
    repo.commit("start");
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| marginalia_at(repo.path(), data.path(), args);
    let cases: &[(&[&str], &str)] = &[
        (&["codemark", "add", "--path", "a.txt", "--lines", "5-6", "--body", "x"], "past the end of a.txt"),
        (&["codemark", "add", "--path", "missing.txt", "--lines", "1", "--body", "x"], "does not exist"),
        (&["codemark", "add", "--path", "a.txt", "--lines", "1", "--body", "  "], "the body is empty"),
        (&["codemark", "add", "--path", "a.txt", "--lines", "1", "--body", "x", "--kind", "rant"], "unknown kind"),
        (&["codemark", "show", "0190abcd"], "no codemark `0190abcd`"),
        (&["codemark", "show", "01"], "too short"),
        (&["codemark", "add", "--path", "../x", "--lines", "1", "--body", "x"], ".."),
    ];
    for (args, says) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?} said: {}", stderr(&out));
    }
    let outside = tempfile::tempdir().unwrap();
    let out = marginalia_at(outside.path(), data.path(), &["codemark", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a git repository"), "{}", stderr(&out));
}
