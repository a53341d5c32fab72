//! Teams sharing codemarks through a real `marginalia serve` over TLS on loopback: two
//! teammates' editors, the CLI, the outbox across kills, the first-send agreement, secrets held
//! back, the egress ledger, and the keychain.

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lsp::{Lsp, lines_of, range_json, uri};
use common::{Scratch, numbered, stderr, stdout};
use serde_json::{Value, json};
use serve::{BIN, Served, run};

/// The environment of a headless client of `server` with `token`.
fn headless(server: &Served, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MARGINALIA_SERVER", server.url.clone()),
        ("MARGINALIA_TOKEN", token.to_owned()),
        (server.trust().0, server.trust().1),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An upstream repository with a history, and the shared remote URL its clones name.
fn upstream() -> Scratch {
    let up = Scratch::new();
    up.write("src/cart.rs", numbered("cart", 40));
    up.commit("start");
    up
}

/// All the bytes of the files in `dir` (a store or a server's data), for looking for secrets.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            out.extend(std::fs::read(e.path()).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_teammates_codemark_appears_in_my_editor_at_my_lines_without_a_reload() {
    let server = Served::start();
    let (ann, bob) = (server.member("shop", "Ann", "admin"), server.member("shop", "Bob", "member"));

    // Ann's clone is at the newest commit; Bob's is one commit behind, so the same code sits
    // five lines higher for him.
    let up = upstream();
    let bob_repo = Scratch::clone_of(&up, &[]);
    let mut text = String::from("// one\n// two\n// three\n// four\n// five\n");
    text.push_str(&up.read("src/cart.rs"));
    up.write("src/cart.rs", &text);
    up.commit("a header");
    let ann_repo = Scratch::clone_of(&up, &[]);
    let (ann_data, bob_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ann_env, bob_env) = (headless(&server, &ann), headless(&server, &bob));

    let bob_file = uri(&bob_repo.file("src/cart.rs"));
    let mut bob_lsp = Lsp::start_with(bob_repo.path(), bob_data.path(), &env_refs(&bob_env));
    bob_lsp.initialize(bob_repo.path(), false, json!({}));
    bob_lsp.open(&bob_file, 1, &bob_repo.read("src/cart.rs"));
    assert!(bob_lsp.codemarks(&bob_file).is_empty());
    bob_lsp.settle(Duration::from_millis(300));
    bob_lsp.notifications.clear();

    let ann_file = uri(&ann_repo.file("src/cart.rs"));
    let mut ann_lsp = Lsp::start_with(ann_repo.path(), ann_data.path(), &env_refs(&ann_env));
    ann_lsp.initialize(ann_repo.path(), false, json!({}));
    ann_lsp.open(&ann_file, 1, &ann_repo.read("src/cart.rs"));
    // Lines 21-23 for Ann (0-based 20..=22) are lines 16-18 for Bob.
    let made = ann_lsp
        .command(
            "marginalia.codemark.create",
            json!({"uri": ann_file, "range": range_json([20, 0, 23, 0]), "kind": "question", "body": "Why is the total rounded twice?"}),
        )
        .unwrap();
    let sent = Instant::now();
    // The first send to a server asks first, showing what leaves; this user agrees.
    let asked = ann_lsp.wait_for("the first-send question", |n| n["method"] == "window/showMessageRequest");
    let question = asked["params"]["message"].as_str().unwrap();
    assert!(question.contains(&server.url) && question.contains("bytes of code"), "{question}");

    bob_lsp.wait_for("Bob's editor hears of it", |n| {
        n["method"] == "marginalia/didChangeCodemarks" && n["params"]["uri"] == bob_file
    });
    let took = sent.elapsed();
    let marks = bob_lsp.codemarks(&bob_file);
    assert_eq!(marks.len(), 1, "{marks:#?}");
    assert_eq!(marks[0]["id"], made["id"]);
    assert_eq!(marks[0]["body"], "Why is the total rounded twice?");
    assert_eq!(marks[0]["anchorStatus"], "intact");
    assert_eq!(lines_of(&marks[0]), (15, 17), "placed at Bob's lines, not Ann's");
    let lenses = bob_lsp.request("textDocument/codeLens", json!({"textDocument": {"uri": bob_file}})).unwrap();
    assert_eq!(lenses.as_array().map(Vec::len), Some(1), "{lenses:#}");
    assert_eq!(lenses[0]["range"]["start"]["line"], 15);
    let title = lenses[0]["command"]["title"].as_str().unwrap();
    assert!(title.contains("Why is the total rounded twice? · 1 comment · open"), "{title}");
    eprintln!("Ann's codemark reached Bob's editor in {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // Bob replies from his editor (agreeing to his first send when asked); Ann sees the thread
    // grow.
    bob_lsp.command("marginalia.codemark.reply", json!({"id": made["id"], "body": "Tax rules, see #12."})).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        bob_lsp.settle(Duration::from_millis(50));
        ann_lsp.settle(Duration::from_millis(50));
        let marks = ann_lsp.codemarks(&ann_file);
        if marks[0]["replies"].as_array().is_some_and(|r| r.len() == 1) {
            assert_eq!(marks[0]["replies"][0]["body"], "Tax rules, see #12.");
            break;
        }
        assert!(Instant::now() < deadline, "the reply never reached Ann: {marks:#?}");
    }
    assert!(
        bob_lsp.notifications.iter().any(|n| n["method"] == "window/showMessageRequest")
            || bob_lsp.server_requests.iter().any(|n| n["method"] == "window/showMessageRequest"),
        "Bob was asked before his first send"
    );
    ann_lsp.stop();
    bob_lsp.stop();

    // Tokens are nowhere in either store; the ledger names what left.
    for (data, token) in [(&ann_data, &ann), (&bob_data, &bob)] {
        assert!(!contains(&all_bytes(data.path()), token), "a token was written to the store");
    }
    let ledger = run(ann_repo.path(), ann_data.path(), &env_refs(&ann_env), &["egress", "--json"]);
    let ledger: Value = serde_json::from_slice(&ledger.stdout).unwrap();
    let create =
        ledger.as_array().unwrap().iter().find(|e| e["method"] == "POST" && e["endpoint"] == "/api/v1/codemarks");
    let create = create.unwrap_or_else(|| panic!("no codemark POST in the ledger: {ledger:#}"));
    assert_eq!(create["status"], 201);
    assert!(create["codeBytes"].as_u64().unwrap() > 0);
    assert_eq!(create["subject"], made["id"]);
}

#[test]
fn offline_changes_reach_the_server_exactly_once_through_kills_and_restarts() {
    let server = Served::start();
    let token = server.member("shop", "Ann", "admin");
    let up = upstream();
    let repo = Scratch::clone_of(&up, &[]);
    let data = tempfile::tempdir().unwrap();
    let env = headless(&server, &token);
    let env = env_refs(&env);

    // 1,000 changes made offline through the library, as the editor makes them: 250 codemarks,
    // each with two replies and a status change.
    let key = {
        let store = marginalia::store::Store::open(&data.path().join("marginalia.db")).unwrap();
        store.set_setting("sync.server", Some(&server.url)).unwrap();
        let r = marginalia::git::Repo::open(repo.path()).unwrap();
        let key = marginalia::codemark::repo_key(&r).unwrap();
        let text = r.file(marginalia::git::Target::Worktree, "src/cart.rs").unwrap().unwrap().text;
        for i in 0..250u32 {
            let lines = marginalia::anchor::LineRange::new(i % 38 + 1, i % 38 + 2);
            let anchor = marginalia::codemark::anchor_selection(&r, "src/cart.rs", &text, lines).unwrap();
            let now = marginalia::codemark::now_ms();
            let c = marginalia::codemark::Codemark {
                id: marginalia::codemark::new_id(),
                repo: key.clone(),
                kind: marginalia::codemark::Kind::Comment,
                title: None,
                body: format!("note {i}"),
                author: "Ann".into(),
                status: marginalia::codemark::MarkStatus::Open,
                anchors: vec![anchor],
                replies: vec![],
                created: now,
                updated: now,
                shared: None,
                review: None,
            };
            let (c, _) = marginalia::sync::outbox::create(&store, c).unwrap();
            for j in 0..2 {
                let r = marginalia::codemark::Reply {
                    id: marginalia::codemark::new_id(),
                    author: "Ann".into(),
                    body: format!("reply {j} to {i}"),
                    created: now + j + 1,
                };
                marginalia::sync::outbox::reply(&store, &c.id, &r).unwrap().unwrap();
            }
            let resolve = marginalia::store::Edit {
                status: Some(marginalia::codemark::MarkStatus::Resolved),
                ..Default::default()
            };
            marginalia::sync::outbox::edit(&store, &c.id, &resolve, now + 5).unwrap().unwrap();
        }
        assert_eq!(store.outbox(&server.url).unwrap().len(), 1_000);
        key
    };

    // `marginalia sync`, killed at random points until it gets through.
    let mut kills = 0;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let started = Instant::now();
    loop {
        let mut child = Command::new(BIN)
            .args(["sync", "--yes"])
            .current_dir(repo.path())
            .envs(env.iter().copied())
            .env("MARGINALIA_DATA_DIR", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = Duration::from_millis(30 + seed % 400);
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t.elapsed() >= after {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match status {
            Some(s) => {
                assert!(s.success(), "sync failed: {s}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(600), "sync never got through ({kills} kills)");
    }
    eprintln!("1,000 changes delivered through {kills} SIGKILLs in {:?}", started.elapsed());
    assert!(kills >= 3, "the test killed the client only {kills} times: it proves little");

    let store = marginalia::store::Store::open(&data.path().join("marginalia.db")).unwrap();
    assert!(store.outbox(&server.url).unwrap().is_empty(), "everything left the outbox");
    let held = server.get(&token, &format!("/codemarks?repo={}", urlencode(&key)));
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 250, "each codemark once");
    for c in held {
        let replies = c["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 2, "each reply once: {c:#}");
        assert_ne!(replies[0]["id"], replies[1]["id"]);
        assert_eq!(c["status"], "resolved");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_first_send_waits_for_agreement_and_a_teammate_catches_up_by_cursor() {
    let server = Served::start();
    let (ann, bob) = (server.member("shop", "Ann", "admin"), server.member("shop", "Bob", "member"));
    let up = upstream();
    let (ann_repo, bob_repo) = (Scratch::clone_of(&up, &[]), Scratch::clone_of(&up, &[]));
    let (ann_data, bob_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ann_env, bob_env) = (headless(&server, &ann), headless(&server, &bob));
    let (ann_env, bob_env) = (env_refs(&ann_env), env_refs(&bob_env));

    for (lines, body) in [("3-4", "First thought"), ("10-12", "Second thought"), ("30", "Third")] {
        let out = run(
            ann_repo.path(),
            ann_data.path(),
            &ann_env,
            &["codemark", "add", "--path", "src/cart.rs", "--lines", lines, "--body", body],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // A bookmark is private: it is never queued.
    let out = run(
        ann_repo.path(),
        ann_data.path(),
        &ann_env,
        &["codemark", "add", "--path", "src/cart.rs", "--lines", "5", "--body", "mine", "--kind", "bookmark"],
    );
    assert!(out.status.success());

    // Without a terminal to ask on, the first send needs --yes; nothing leaves meanwhile.
    let out = run(ann_repo.path(), ann_data.path(), &ann_env, &["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--preview"), "{}", stderr(&out));
    let ledger = run(ann_repo.path(), ann_data.path(), &ann_env, &["egress", "--json"]);
    assert_eq!(stdout(&ledger).trim(), "[]", "nothing was sent");

    // The preview shows exactly the bodies: the code lines and the text.
    let out = run(ann_repo.path(), ann_data.path(), &ann_env, &["sync", "--preview"]);
    let preview = stdout(&out);
    assert!(preview.contains("3 request(s) would go to"), "{preview}");
    assert!(preview.contains("cart line 10 does work") && preview.contains("Second thought"), "{preview}");
    assert!(!preview.contains("mine"), "the bookmark is not in it");

    let out = run(ann_repo.path(), ann_data.path(), &ann_env, &["sync", "--yes", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["sent"], 3);

    // Bob was away; one sync takes everything since his cursor (none yet), and again nothing new.
    let out = run(bob_repo.path(), bob_data.path(), &bob_env, &["sync", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["pulled"], 3);
    let out = run(bob_repo.path(), bob_data.path(), &bob_env, &["sync", "--json"]);
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["pulled"], 0, "the cursor moved on");

    let out = run(bob_repo.path(), bob_data.path(), &bob_env, &["codemark", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bodies: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["First thought", "Second thought", "Third"]);
    assert_eq!((list[1]["start"].as_u64(), list[1]["end"].as_u64()), (Some(10), Some(12)));
    assert_eq!(list[1]["author"], "Ann", "the server names the author");

    // Ann deletes one; Bob's next sync drops it.
    let id = list[0]["id"].as_str().unwrap();
    let out = run(ann_repo.path(), ann_data.path(), &ann_env, &["codemark", "delete", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run(ann_repo.path(), ann_data.path(), &ann_env, &["sync"]).status.success());
    assert!(run(bob_repo.path(), bob_data.path(), &bob_env, &["sync"]).status.success());
    let out = run(bob_repo.path(), bob_data.path(), &bob_env, &["codemark", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[test]
fn a_likely_secret_is_held_back_until_redacted_or_sent_anyway_and_the_choice_is_on_record() {
    let server = Served::start();
    let ann = server.member("shop", "Ann", "admin");
    let up = upstream();
    up.write("src/config.py", "import os\n\nAPI_HOST = \"api.example.com\"\nGITHUB_TOKEN = \"ghp_R4nd0mLooK1ngT0kenV4lue123456789abcd\"\n\ndef connect():\n    return os.environ\n");
    up.commit("config");
    let repo = Scratch::clone_of(&up, &[]);
    let data = tempfile::tempdir().unwrap();
    let env = headless(&server, &ann);
    let env = env_refs(&env);
    let secret = "ghp_R4nd0mLooK1ngT0kenV4lue123456789abcd";

    let out = run(
        repo.path(),
        data.path(),
        &env,
        &["codemark", "add", "--path", "src/config.py", "--lines", "3", "--body", "Move the host to settings?"],
    );
    assert!(out.status.success());
    // Line 3 is clean, but its context (line 4) holds the token.
    let said = stderr(&out);
    assert!(said.contains("held back") && said.contains("src/config.py: line 4 has a GitHub token"), "{said}");
    assert!(!said.contains(secret), "the message masks the secret: {said}");

    let out = run(repo.path(), data.path(), &env, &["sync", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(1), "something waits");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sent"], 0);
    let seq = report["held"][0]["seq"].as_i64().unwrap().to_string();

    let out = run(repo.path(), data.path(), &env, &["outbox", "send", &seq, "--redact"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(repo.path(), data.path(), &env, &["sync", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let all = server.get(&ann, "/codemarks");
    let c = &all.as_array().unwrap()[0];
    let context = c["anchors"][0]["after"].to_string();
    assert!(context.contains("[redacted: github-token]") && !context.contains(secret), "{context}");
    assert!(!contains(&all_bytes(server.data.path()), secret), "the server never saw it");

    // A body with a key, sent anyway on purpose: it goes, and the ledger says so.
    let out = run(
        repo.path(),
        data.path(),
        &env,
        &[
            "codemark",
            "add",
            "--path",
            "src/config.py",
            "--lines",
            "6-7",
            "--body",
            "Rotate AKIAIOSFODNN7EXAMPLE after the demo",
        ],
    );
    assert!(stderr(&out).contains("AWS access key id"), "{}", stderr(&out));
    let out = run(repo.path(), data.path(), &env, &["outbox", "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seq = rows[0]["seq"].as_i64().unwrap().to_string();
    assert!(run(repo.path(), data.path(), &env, &["outbox", "send", &seq, "--anyway"]).status.success());
    assert!(run(repo.path(), data.path(), &env, &["sync"]).status.success());
    let ledger = run(repo.path(), data.path(), &env, &["egress", "--json"]);
    let ledger: Value = serde_json::from_slice(&ledger.stdout).unwrap();
    let notes: Vec<&str> = ledger.as_array().unwrap().iter().filter_map(|e| e["note"].as_str()).collect();
    assert!(notes.iter().any(|n| n.starts_with("redacted before sending: github-token")), "{notes:?}");
    assert!(
        notes.iter().any(|n| n.starts_with("sent as it was, despite:") && n.contains("AWS access key id")),
        "{notes:?}"
    );
}

#[test]
fn login_keeps_the_token_in_the_keychain_and_logout_forgets_it() {
    if marginalia::keychain::Keychain::open().is_err() && std::env::var_os("MARGINALIA_REQUIRE_KEYCHAIN").is_none() {
        eprintln!("SKIPPED: no OS keychain works on this machine (set MARGINALIA_REQUIRE_KEYCHAIN=1 to fail instead)");
        return;
    }
    let server = Served::start();
    let invite = server.invite("shop", "admin");
    let repo = Scratch::clone_of(&upstream(), &[]);
    let data = tempfile::tempdir().unwrap();
    let ca = server.trust().1;
    let trust = [("MARGINALIA_CA_CERT", ca.as_str())];

    let out = run(
        repo.path(),
        data.path(),
        &trust,
        &["login", "--server", &server.url, "--invite", &invite, "--name", "Ann"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).trim().is_empty(), "the token is not printed: {}", stdout(&out));
    assert!(stderr(&out).contains("kept in"), "{}", stderr(&out));
    let again = run(
        repo.path(),
        data.path(),
        &trust,
        &["login", "--server", &server.url, "--invite", &invite, "--name", "Ann"],
    );
    assert!(!again.status.success(), "an invite is used once");

    // Signed in with nothing but the keychain: a codemark goes to the server.
    let out = run(
        repo.path(),
        data.path(),
        &trust,
        &["codemark", "add", "--path", "src/cart.rs", "--lines", "2", "--body", "hi"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(repo.path(), data.path(), &trust, &["sync", "--yes", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sent"], 1);

    let out = run(repo.path(), data.path(), &trust, &["logout"]);
    assert!(stderr(&out).contains("removed from the keychain"), "{}", stderr(&out));
    let out = run(repo.path(), data.path(), &trust, &["sync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not signed in"), "{}", stderr(&out));
}

#[test]
fn plain_http_is_refused_off_this_machine() {
    let data = tempfile::tempdir().unwrap();
    let repo = Scratch::new();
    let out = run(
        repo.path(),
        data.path(),
        &[],
        &["login", "--server", "http://team.example.com", "--invite", "x", "--name", "A"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("plain http:// is refused"), "{}", stderr(&out));
    let out = run(repo.path(), data.path(), &[], &["sync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not signed in"), "{}", stderr(&out));
}
