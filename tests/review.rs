//! Feedback requests: the author's changeset rebuilt byte for byte on the reviewer's side,
//! comments that reach the author's working copy, and hostile patches refused with nothing
//! left behind.

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Command;

use common::{Scratch, numbered, stderr, stdout};
use marginalia::api;
use marginalia::git::Repo;
use marginalia::review::{changeset, rebuild};
use serde_json::Value;
use serve::{Served, run};

/// A bare upstream with a history, as a team's remote.
fn upstream() -> Scratch {
    let seed = Scratch::new();
    seed.write("src/cart.rs", numbered("cart", 30));
    seed.write("src/tax.rs", numbered("tax", 20));
    seed.write("src/old_name.rs", numbered("renamed", 15));
    seed.write("docs/guide.md", "# Guide\n\nRead me.\n");
    seed.commit("start");
    Scratch::clone_of(&seed, &["--bare"])
}

/// The files git tracks in a working tree (staged state), with their bytes as on disk.
fn tracked(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let out = Command::new("git").args(["ls-files", "-z"]).current_dir(dir).output().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|p| !p.is_empty() && dir.join(p).exists())
        .map(|p| (p.to_owned(), std::fs::read(dir.join(p)).unwrap()))
        .collect();
    files.sort();
    files
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.push((p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn status(dir: &Path) -> String {
    let out = Command::new("git").args(["status", "--porcelain", "-uall"]).current_dir(dir).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The author's work: an unpushed commit, a staged change, an unstaged edit, a rename, a new
/// executable, a binary file and an untracked one.
fn author_work(author: &Scratch) {
    let mut cart = author.read("src/cart.rs");
    cart = cart.replace("cart line 4 does work", "cart line 4 does better work");
    author.write("src/cart.rs", &cart);
    author.commit("unpushed: better cart");
    author.write("src/tax.rs", author.read("src/tax.rs").replace("tax line 2 does", "tax line 2 now does"));
    author.git(&["add", "src/tax.rs"]);
    author.write("docs/guide.md", "# Guide\n\nRead me, then read the code.\nIt is short.\n");
    author.git(&["mv", "src/old_name.rs", "src/new_name.rs"]);
    author.write("tools/run.sh", "#!/bin/sh\necho run\n");
    author.git(&["add", "tools/run.sh"]);
    author.git(&["update-index", "--chmod=+x", "tools/run.sh"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(author.file("tools/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    author.write("assets/logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    author.git(&["add", "assets/logo.png"]);
    author.write("notes.txt", "an untracked note\n");
}

#[test]
fn a_reviewer_rebuilds_the_authors_work_byte_for_byte_and_the_comment_reaches_the_author() {
    let server = Served::start();
    let (ann, bob) = (server.member("shop", "Ann", "admin"), server.member("shop", "Bob", "member"));
    let up = upstream();
    let author = Scratch::clone_of(&up, &[]);
    let reviewer = Scratch::clone_of(&up, &[]);
    let (ann_data, bob_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca = server.trust().1;
    let ann_env = [
        ("MARGINALIA_SERVER", server.url.as_str()),
        ("MARGINALIA_TOKEN", ann.as_str()),
        ("MARGINALIA_CA_CERT", ca.as_str()),
    ];
    let bob_env = [
        ("MARGINALIA_SERVER", server.url.as_str()),
        ("MARGINALIA_TOKEN", bob.as_str()),
        ("MARGINALIA_CA_CERT", ca.as_str()),
    ];

    author_work(&author);
    // The reviewer is on another branch with work of their own, not committed.
    reviewer.git(&["checkout", "-q", "-b", "bobs-branch"]);
    reviewer.write("src/cart.rs", reviewer.read("src/cart.rs").replace("cart line 9", "bob's line 9"));
    let reviewer_before = (status(reviewer.path()), files_under(&reviewer.file("src")));

    let out = run(
        author.path(),
        ann_data.path(),
        &ann_env,
        &["review", "request", "--title", "Better cart", "--reviewer", "Bob", "--yes", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("assets/logo.png: binary, listed but not sent"), "{said}");
    assert!(said.contains("merge-base with origin/main"), "{said}");
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["state"], "sent");
    let id = sent["id"].as_str().unwrap().to_owned();

    let out = run(reviewer.path(), bob_data.path(), &bob_env, &["review", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str(), "Bob is asked: {list:#}");

    let out = run(reviewer.path(), bob_data.path(), &bob_env, &["review", "show", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let diff = stdout(&out);
    for expected in [
        "rename from src/old_name.rs\nrename to src/new_name.rs",
        "-cart line 4 does work",
        "+cart line 4 does better work",
        "+tax line 2 now does",
        "+It is short.",
        "new file mode 100755",
        "Binary file assets/logo.png (not sent)",
    ] {
        assert!(diff.contains(expected), "the diff lacks {expected:?}:\n{diff}");
    }
    assert!(!diff.contains("untracked note"), "untracked files stay home without --untracked");

    let into = tempfile::tempdir().unwrap();
    let dir = into.path().join("proposed");
    let out = run(reviewer.path(), bob_data.path(), &bob_env, &["review", "checkout", &id, dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut want = tracked(author.path());
    want.retain(|(p, _)| p != "assets/logo.png");
    let mut got = files_under(&dir);
    got.retain(|(p, _)| p != "assets/logo.png");
    assert_eq!(
        got.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        want.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>()
    );
    assert!(got == want, "the rebuilt files are the author's, byte for byte");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("tools/run.sh")).unwrap().permissions().mode() & 0o111, 0o111);
    }
    assert_eq!(
        (status(reviewer.path()), files_under(&reviewer.file("src"))),
        reviewer_before,
        "Bob's copy is untouched"
    );

    // Bob comments on the proposed guide's new lines; Ann's next sync places it in her copy.
    let out = run(
        reviewer.path(),
        bob_data.path(),
        &bob_env,
        &[
            "review",
            "comment",
            &id,
            "--path",
            "docs/guide.md",
            "--lines",
            "3-4",
            "--side",
            "new",
            "--body",
            "Say which code.",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(author.path(), ann_data.path(), &ann_env, &["sync", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = |author: &Scratch| -> Value {
        let out =
            run(author.path(), ann_data.path(), &ann_env, &["codemark", "list", "--path", "docs/guide.md", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let marks = list(&author);
    assert_eq!(marks.as_array().unwrap().len(), 1, "{marks:#}");
    assert_eq!(marks[0]["body"], "Say which code.");
    assert_eq!((marks[0]["start"].as_u64(), marks[0]["end"].as_u64()), (Some(3), Some(4)));
    assert_eq!(marks[0]["anchorStatus"], "intact");
    assert_eq!(marks[0]["review"]["review"], id.as_str());

    // Ann commits and pushes the work: the comment stays on those lines.
    author.git(&["add", "-A"]);
    author.commit("the reviewed work");
    author.git(&["push", "-q", "origin", "main"]);
    let marks = list(&author);
    assert_eq!(
        (marks[0]["start"].as_u64(), marks[0]["end"].as_u64(), marks[0]["anchorStatus"].as_str()),
        (Some(3), Some(4), Some("intact"))
    );

    // Ann changes the work again and amends the request; Bob reads only what changed since.
    author.write("src/tax.rs", author.read("src/tax.rs").replace("tax line 5 does", "tax line 5 also does"));
    let out = run(author.path(), ann_data.path(), &ann_env, &["review", "amend", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Its base is now Ann's pushed commit, which Bob has not fetched: he is told so, not shown
    // a wrong diff.
    let out = run(reviewer.path(), bob_data.path(), &bob_env, &["review", "show", &id, "--since", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not in this repository; fetch it"), "{}", stderr(&out));
    reviewer.git(&["fetch", "-q", "origin"]);
    let out = run(reviewer.path(), bob_data.path(), &bob_env, &["review", "show", &id, "--since", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let since = stdout(&out);
    assert!(since.contains("+tax line 5 also does"), "{since}");
    assert!(!since.contains("cart line 4"), "what Bob read already is not shown again:\n{since}");

    // Bob approves; Ann sees it.
    let out = run(reviewer.path(), bob_data.path(), &bob_env, &["review", "approve", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(author.path(), ann_data.path(), &ann_env, &["review", "list", "--mine", "--json"]);
    let mine: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mine[0]["status"], "approved", "{mine:#}");
}

#[test]
fn a_review_whose_base_is_missing_says_what_to_fetch() {
    let up = upstream();
    let author = Scratch::clone_of(&up, &[]);
    author.write("src/cart.rs", "new\n");
    author.commit("local");
    let repo = Repo::open(author.path()).unwrap();
    let built = changeset::build(&repo, &repo.review_base_at("HEAD~1").unwrap(), false).unwrap();
    let mut rev = revision(built.revision);
    rev.base = "1234567890123456789012345678901234567890".into();
    rev.base_note = "merge-base with origin/main".into();
    let e = rebuild::rebuild(&repo, &rev).unwrap_err().to_string();
    assert!(
        e.contains("1234567890123456789012345678901234567890 (merge-base with origin/main) is not in this repository"),
        "{e}"
    );
    assert!(e.contains("git fetch"), "{e}");
}

fn revision(r: api::NewRevision) -> api::Revision {
    api::Revision {
        id: r.id,
        number: 1,
        base: r.base,
        base_note: r.base_note,
        head: r.head,
        files: r.files,
        created: r.created,
    }
}

#[test]
fn hostile_patches_are_refused_and_leave_no_file_behind() {
    let up = upstream();
    let author = Scratch::clone_of(&up, &[]);
    author.write("src/cart.rs", author.read("src/cart.rs").replace("cart line 7", "cart line seven"));
    let reviewer = Scratch::clone_of(&up, &[]);
    let before = status(reviewer.path());
    let repo = Repo::open(author.path()).unwrap();
    let honest = revision(changeset::build(&repo, &repo.review_base().unwrap(), false).unwrap().revision);
    let reviewer_repo = Repo::open(reviewer.path()).unwrap();
    assert!(rebuild::rebuild(&reviewer_repo, &honest).is_ok(), "the honest one rebuilds");

    let outside = tempfile::tempdir().unwrap();
    let with = |f: &dyn Fn(&mut api::FilePatch)| {
        let mut r = honest.clone();
        f(&mut r.files[0]);
        r
    };
    let escape = outside.path().join("escaped").display().to_string();
    let cases: Vec<(&str, api::Revision, &str)> = vec![
        ("a path with ..", with(&|f| f.new_path = Some("../evil.rs".into())), "unsafe path"),
        ("an absolute path", with(&|f| f.new_path = Some(escape.clone())), "unsafe path"),
        ("a .git path", with(&|f| f.new_path = Some(".git/hooks/pre-commit".into())), "inside .git"),
        ("a .GIT path", with(&|f| f.new_path = Some("src/.GIT/config".into())), "inside .git"),
        (
            "a patch that does not apply",
            with(&|f| f.patch = Some(f.patch.clone().unwrap().replace("-cart line 7", "-cart line 8"))),
            "does not apply",
        ),
        (
            "conflicting hunks",
            with(&|f| {
                let p = f.patch.clone().unwrap();
                f.patch = Some(format!("{p}{p}"));
            }),
            "before the previous hunk",
        ),
        ("an enormous hunk", with(&|f| f.patch = Some("@@ -1,999999999 +1,1 @@\n-x\n+y\n".into())), "too large"),
        ("a wrong result", with(&|f| f.new_blob = Some("0".repeat(40))), "hash differs"),
        ("a binary file with a patch", with(&|f| f.binary = true), "binary file came with a patch"),
    ];
    for (what, rev, says) in cases {
        let dir = outside.path().join("proposed");
        let e = rebuild::rebuild(&reviewer_repo, &rev)
            .and_then(|files| rebuild::checkout(&reviewer_repo, &rev, &files, &dir))
            .expect_err(what)
            .to_string();
        assert!(e.contains(says), "{what}: `{e}` does not say `{says}`");
        assert!(!dir.exists(), "{what}: left {}", dir.display());
    }

    // A link planted as a file of the tree, then a file "inside" it: the write never goes
    // through the link, and the half-written folder goes.
    let mut trick = honest.clone();
    let target = outside.path().join("through-the-link");
    std::fs::create_dir(&target).unwrap();
    let link_text = target.display().to_string();
    trick.files.push(api::FilePatch {
        old_path: None,
        new_path: Some("link".into()),
        old_mode: None,
        new_mode: Some("120000".into()),
        old_blob: None,
        new_blob: Some(marginalia::git::ObjectId::of_blob(link_text.as_bytes()).to_string()),
        binary: false,
        patch: marginalia::review::patch::make("", &link_text),
    });
    trick.files.push(api::FilePatch {
        old_path: None,
        new_path: Some("link/pwned".into()),
        old_mode: None,
        new_mode: Some("100644".into()),
        old_blob: None,
        new_blob: Some(marginalia::git::ObjectId::of_blob(b"gotcha\n").to_string()),
        binary: false,
        patch: marginalia::review::patch::make("", "gotcha\n"),
    });
    let dir = outside.path().join("tricked");
    let files = rebuild::rebuild(&reviewer_repo, &trick).unwrap();
    let e = rebuild::checkout(&reviewer_repo, &trick, &files, &dir).unwrap_err().to_string();
    assert!(e.contains("cannot write"), "{e}");
    assert!(!dir.exists(), "the half-written folder is gone");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "nothing went through the link");
    assert_eq!(status(reviewer.path()), before, "the reviewer's checkout is untouched");
}

#[test]
fn the_editor_asks_for_a_review_and_the_reviewer_reads_and_comments_in_virtual_documents() {
    use common::lsp::{Lsp, lines_of, range_json};
    use serde_json::json;

    let server = Served::start();
    let (ann, bob) = (server.member("shop", "Ann", "admin"), server.member("shop", "Bob", "member"));
    let up = upstream();
    let author = Scratch::clone_of(&up, &[]);
    let reviewer = Scratch::clone_of(&up, &[]);
    author_work(&author);
    let (ann_data, bob_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca = server.trust().1;
    let ann_env = [
        ("MARGINALIA_SERVER", server.url.as_str()),
        ("MARGINALIA_TOKEN", ann.as_str()),
        ("MARGINALIA_CA_CERT", ca.as_str()),
    ];
    let bob_env = [
        ("MARGINALIA_SERVER", server.url.as_str()),
        ("MARGINALIA_TOKEN", bob.as_str()),
        ("MARGINALIA_CA_CERT", ca.as_str()),
    ];

    let mut ann_lsp = Lsp::start_with(author.path(), ann_data.path(), &ann_env);
    ann_lsp.initialize(author.path(), false, json!({}));
    // The sync client starts after the first placement; wait until a command finds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let asked = loop {
        match ann_lsp.command("marginalia.review.request", json!({"title": "Better cart", "reviewers": ["Bob"]})) {
            Ok(v) => break v,
            Err(e) if e["message"].as_str().unwrap_or("").contains("need a team server") => {
                assert!(std::time::Instant::now() < deadline, "the editor never signed in");
                ann_lsp.settle(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(asked["state"], "queued");
    assert_eq!(asked["binary"], json!(["assets/logo.png"]));
    let id = asked["id"].as_str().unwrap().to_owned();
    // The first send asks; the editor's user agrees (the test client takes the first action).
    ann_lsp.wait_for("the first-send question", |n| n["method"] == "window/showMessageRequest");

    let mut bob_lsp = Lsp::start_with(reviewer.path(), bob_data.path(), &bob_env);
    bob_lsp.initialize(reviewer.path(), false, json!({}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let list = loop {
        ann_lsp.settle(std::time::Duration::from_millis(50));
        match bob_lsp.command("marginalia.review.list", json!({})) {
            Ok(v) if v["reviews"].as_array().is_some_and(|r| !r.is_empty()) => break v,
            _ => assert!(std::time::Instant::now() < deadline, "the request never reached Bob"),
        }
        bob_lsp.settle(std::time::Duration::from_millis(100));
    };
    assert_eq!(list["reviews"][0]["id"], id.as_str());

    let opened = bob_lsp.command("marginalia.review.open", json!({"id": id})).unwrap();
    let guide = opened["files"].as_array().unwrap().iter().find(|f| f["path"] == "docs/guide.md").unwrap().clone();
    assert_eq!(guide["status"], "modified");
    let proposed = guide["proposed"].as_str().unwrap().to_owned();
    assert!(proposed.starts_with("marginalia-review:/"), "{proposed}");
    let doc = bob_lsp.request("marginalia/reviewDocument", json!({"uri": proposed})).unwrap();
    assert_eq!(doc["text"].as_str().unwrap(), author.read("docs/guide.md"), "byte for byte");
    let base = bob_lsp.request("marginalia/reviewDocument", json!({"uri": guide["base"]})).unwrap();
    assert_eq!(base["text"], "# Guide\n\nRead me.\n");
    let logo = opened["files"].as_array().unwrap().iter().find(|f| f["path"] == "assets/logo.png").unwrap();
    assert_eq!((logo["binary"].as_bool(), logo["proposed"].is_null()), (Some(true), true), "binary: listed, not sent");

    let made = bob_lsp
        .command(
            "marginalia.review.comment",
            json!({"uri": proposed, "range": range_json([2, 0, 4, 0]), "body": "Which code?"}),
        )
        .unwrap();
    assert_eq!(made["review"]["path"], "docs/guide.md");
    let marks = bob_lsp.request("marginalia/codemarks", json!({"textDocument": {"uri": proposed}})).unwrap();
    let marks = marks["codemarks"].as_array().unwrap();
    assert_eq!(marks.len(), 1);
    assert_eq!(lines_of(&marks[0]), (2, 3));

    let err = bob_lsp
        .request("marginalia/reviewDocument", json!({"uri": "marginalia-review:/x/1/new/../../etc/passwd"}))
        .unwrap_err();
    assert!(err["message"].as_str().unwrap().contains("not a review document URI"), "{err}");
    ann_lsp.stop();
    bob_lsp.stop();
}
