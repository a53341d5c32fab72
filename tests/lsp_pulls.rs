//! Pull request threads in the editor: the real language server over stdio, a real repository
//! whose code moved on since a review comment was made, and a stand-in GitHub on loopback.

mod common;

use serde_json::{Value, json};

use common::Scratch;
use common::fake_host::{FakeHost, Reply, fixture_json};
use common::lsp::{Lsp, range_json, uri};

const TOKEN: &str = "ghp_lspTestToken0123456789abcdefABCDEFxyz";

/// `src/shop.py` commented on at commit `a` (lines 5-6, `def step_3`); commit `b`, the pull
/// request's head, adds three lines above; the working tree two more.
fn repo() -> (Scratch, String, String) {
    let repo = Scratch::new();
    let base: String = (1..=20).map(|i| format!("def step_{i}(cart):\n    return cart.total() * {i}\n")).collect();
    repo.write("src/shop.py", &base);
    let a = repo.commit("shop");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("src/shop.py", format!("import math\nimport os\nimport sys\n{base}"));
    let b = repo.commit("imports");
    repo.write("src/shop.py", format!("# local note\n# another\nimport math\nimport os\nimport sys\n{base}"));
    repo.git(&["remote", "add", "origin", "git@github.com:octocat/Hello-World.git"]);
    (repo, a, b)
}

fn host(a: &str, b: &str) -> FakeHost {
    let mut pull = fixture_json("github/pull.response-200-201.json");
    pull["head"]["sha"] = json!(b);
    pull["head"]["ref"] = json!("feature");
    pull["base"]["sha"] = json!(a);
    let mut c = fixture_json("github/list-review-comments.response-200.json")[0].clone();
    c["id"] = json!(501);
    c["in_reply_to_id"] = Value::Null;
    c["path"] = json!("src/shop.py");
    c["commit_id"] = json!(a);
    c["start_line"] = json!(5);
    c["line"] = json!(6);
    c["body"] = json!("Why times three?");
    let state = json!({"data": {"repository": {"pullRequest": {"reviewThreads": {
        "pageInfo": {"hasNextPage": false, "endCursor": null},
        "nodes": [{"isResolved": true, "isOutdated": false, "comments": {"nodes": [{"databaseId": 501}]}}]}}}}});
    let h = FakeHost::start();
    h.on(
        "GET",
        "/repos/octocat/Hello-World/pulls?head=octocat:feature&state=open&per_page=100",
        Reply::json(200, json!([pull]).to_string()),
    );
    h.on("GET", "/repos/octocat/Hello-World/pulls/1347/comments", Reply::json(200, json!([c]).to_string()));
    h.on("POST", "/graphql", Reply::json(200, state.to_string()));
    h.on(
        "GET",
        "/repos/octocat/Hello-World/pulls/1347/files",
        Reply::json(200, json!([{"filename": "src/shop.py", "status": "modified", "additions": 3, "deletions": 0,
            "patch": "@@ -1,3 +1,6 @@\n+import math\n+import os\n+import sys\n def step_1(cart):\n     return cart.total() * 1\n def step_2(cart):"}]).to_string()),
    );
    h.on(
        "POST",
        "/repos/octocat/Hello-World/pulls/1347/comments",
        Reply::fixture(201, "github/create-review-comment.response-201-multi-line.json"),
    );
    h
}

fn lenses(lsp: &mut Lsp, u: &str) -> Vec<Value> {
    lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": u}}))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn review_threads_show_as_lenses_and_hovers_at_their_lines_in_the_buffer_and_comments_go_to_the_head() {
    let (repo, a, b) = repo();
    let fake = host(&a, &b);
    let data = tempfile::tempdir().unwrap();
    let mut lsp = Lsp::start_with(
        repo.path(),
        data.path(),
        &[("MARGINALIA_GITHUB_API", &fake.base), ("GITHUB_TOKEN", TOKEN), ("GH_TOKEN", "")],
    );
    let init = lsp.initialize(repo.path(), false, json!({}));
    let commands = init["capabilities"]["executeCommandProvider"]["commands"].as_array().unwrap().clone();
    for c in ["current", "threads", "comment", "reply", "create", "thread"] {
        assert!(commands.contains(&json!(format!("marginalia.pr.{c}"))), "{c} is advertised");
    }
    let u = uri(&repo.file("src/shop.py"));
    // The buffer has one more line typed above, not saved.
    let text = format!("# typed\n{}", repo.read("src/shop.py"));
    lsp.open(&u, 1, &text);
    assert!(lenses(&mut lsp, &u).is_empty(), "nothing is fetched until asked");
    assert!(fake.requests().is_empty());

    let got = lsp.command("marginalia.pr.threads", json!({"uri": u})).expect("threads");
    assert_eq!(got["pullRequest"]["subject"], "github:octocat/Hello-World#1347");
    let t = &got["threads"][0];
    // Lines 5-6 at commit a: 3 lines added in b, 2 in the working tree, 1 in the buffer.
    assert_eq!((t["start"].as_u64(), t["end"].as_u64()), (Some(11), Some(12)));
    assert_eq!(t["range"]["start"]["line"], 10);
    assert_eq!(t["range"]["end"]["line"], 11);
    assert_eq!(
        (t["provider"].as_str(), t["resolved"].as_bool(), t["anchorStatus"].as_str()),
        (Some("github"), Some(true), Some("intact"))
    );
    assert_eq!(t["comments"][0]["body"], "Why times three?");

    let l = lenses(&mut lsp, &u);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["range"]["start"]["line"], 10);
    assert_eq!(l[0]["command"]["title"], "github review: Why times three? · 1 comment · resolved");
    assert_eq!(l[0]["command"]["command"], "marginalia.pr.thread");

    // Another line typed above: the lens follows.
    lsp.change(&u, 2, [0, 0, 0, 0], "# more\n");
    let l = lenses(&mut lsp, &u);
    assert_eq!(l[0]["range"]["start"]["line"], 11);
    let hover = lsp
        .request("textDocument/hover", json!({"textDocument": {"uri": u}, "position": {"line": 12, "character": 3}}))
        .unwrap();
    let md = hover["contents"]["value"].as_str().unwrap();
    assert!(md.contains("**GitHub review** on github:octocat/Hello-World#1347 · resolved"), "{md}");
    assert!(md.contains("Why times three?"), "{md}");

    // A comment on buffer lines 9-10 (0-based 8-9; two lines typed): 7-8 on disk, 5-6 at the head.
    let posted = lsp
        .command("marginalia.pr.comment", json!({"uri": u, "range": range_json([8, 0, 10, 0]), "body": "Why two?"}))
        .expect("comment");
    assert_eq!(posted["lines"], json!({"start": 5, "end": 6}));
    let post = &fake.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments")[0];
    assert_eq!(post.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(
        post.json(),
        json!({"body": "Why two?", "commit_id": b, "path": "src/shop.py", "start_line": 5, "start_side": "RIGHT", "line": 6, "side": "RIGHT"})
    );
    // Lines the head does not have are refused with a message that says so.
    let e = lsp
        .command("marginalia.pr.comment", json!({"uri": u, "range": range_json([0, 0, 0, 3]), "body": "x"}))
        .unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("line 1 of src/shop.py is not in the pull request's head commit"),
        "{e}"
    );
    let e = lsp.command("marginalia.pr.reply", json!({"threadId": "501"})).unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("missing field `body`"), "{e}");
    lsp.stop();
}
