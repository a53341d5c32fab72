//! `marginalia locate` against real repositories: renames, bare and shallow clones, the
//! working tree, bad input, and the caches that make a batch cheap.

mod common;

use common::{Scratch, marginalia, numbered, stderr, stdout};
use marginalia::anchor::{Anchor, LineRange};
use marginalia::git::{Relation, Repo, Target};
use marginalia::locate::{Located, Locator};
use serde_json::{Value, json};

/// Runs a batch through the binary and returns the answers.
fn locate(repo: &Scratch, to: Option<&str>, cases: &[Value]) -> Vec<Value> {
    let input: String = cases.iter().map(|c| format!("{c}\n")).collect();
    let dir = repo.path().to_str().unwrap();
    let mut args = vec!["locate", "--repo", dir, "--batch", "-"];
    if let Some(to) = to {
        args.extend(["--to", to]);
    }
    let out = marginalia(&args, &input);
    assert!(out.status.success(), "locate failed: {}", stderr(&out));
    stdout(&out).lines().map(|l| serde_json::from_str(l).expect("every output line is JSON")).collect()
}

fn case(id: &str, commit: &str, path: &str, start: u32, end: u32) -> Value {
    json!({"id": id, "commit": commit, "path": path, "start": start, "end": end})
}

fn answer(status: &str, path: &str, start: u32, end: u32) -> Value {
    json!({"status": status, "path": path, "start": start, "end": end})
}

/// The answers without their ids, for comparing.
fn strip(answers: Vec<Value>) -> Vec<Value> {
    answers
        .into_iter()
        .map(|mut a| {
            a.as_object_mut().unwrap().remove("id");
            a
        })
        .collect()
}

#[test]
fn a_renamed_and_edited_file_is_followed() {
    let r = Scratch::new();
    r.write("src/parse.rs", numbered("parse", 30));
    let c = r.commit("first");
    r.mv("src/parse.rs", "src/parser/mod.rs");
    let edited = format!("// moved into a module\n{}", numbered("parse", 30).replace("line 20 ", "line twenty "));
    r.write("src/parser/mod.rs", edited);
    r.commit("rename");
    let got = strip(locate(&r, None, &[case("a", &c, "src/parse.rs", 5, 8), case("b", &c, "src/parse.rs", 19, 21)]));
    assert_eq!(got, [answer("intact", "src/parser/mod.rs", 6, 9), answer("modified", "src/parser/mod.rs", 20, 22)]);
}

#[test]
fn several_renames_are_followed_one_by_one() {
    // Each step keeps most lines, but the first and last versions share too few for a direct
    // match: only following each rename in its own commit finds the file.
    let r = Scratch::new();
    let v1: Vec<String> = (1..=40).map(|i| format!("let v{i} = step_one({i});")).collect();
    r.write("a.rs", v1.join("\n") + "\n");
    let c = r.commit("v1");
    let mut v2 = v1.clone();
    for line in v2.iter_mut().take(18) {
        *line = line.replace("step_one", "step_two");
    }
    r.mv("a.rs", "b.rs");
    r.write("b.rs", v2.join("\n") + "\n");
    r.commit("a -> b");
    let mut v3 = v2.clone();
    for line in v3.iter_mut().skip(18).take(17) {
        *line = line.replace("step_one", "step_three");
    }
    r.mv("b.rs", "lib/c.rs");
    r.write("lib/c.rs", v3.join("\n") + "\n");
    r.commit("b -> c");
    let got = strip(locate(&r, Some("HEAD"), &[case("a", &c, "a.rs", 37, 40), case("b", &c, "a.rs", 1, 2)]));
    assert_eq!(got, [answer("intact", "lib/c.rs", 37, 40), answer("modified", "lib/c.rs", 1, 2)]);
}

#[test]
fn code_moved_to_another_file_is_found_there() {
    let r = Scratch::new();
    let helper =
        "fn checksum(data: &[u8]) -> u32 {\n    data.iter().fold(7, |h, b| h.wrapping_mul(31) ^ *b as u32)\n}\n";
    r.write("a.rs", format!("{}{helper}{}", numbered("a", 10), numbered("a-tail", 5)));
    r.write("b.rs", numbered("b", 10));
    let c = r.commit("first");
    r.write("a.rs", format!("{}{}", numbered("a", 10), numbered("a-tail", 5)));
    r.write("b.rs", format!("{}\n{helper}", numbered("b", 10)));
    r.commit("move checksum to b.rs");
    let got = strip(locate(&r, None, &[case("a", &c, "a.rs", 11, 13)]));
    assert_eq!(got, [answer("intact", "b.rs", 12, 14)]);
}

#[test]
fn a_bare_repository_needs_a_target_revision() {
    let r = Scratch::new();
    r.write("x.txt", numbered("x", 10));
    let c = r.commit("first");
    r.write("x.txt", format!("new top\n{}", numbered("x", 10)));
    r.commit("second");
    let bare = Scratch::clone_of(&r, &["--bare"]);
    let got = strip(locate(&bare, Some("main"), &[case("a", &c, "x.txt", 2, 3)]));
    assert_eq!(got, [answer("intact", "x.txt", 3, 4)]);
    let out = marginalia(&["locate", "--repo", bare.path().to_str().unwrap(), "--batch", "-"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bare repository") && stderr(&out).contains("--to"), "{}", stderr(&out));
}

#[test]
fn the_working_tree_includes_uncommitted_edits_and_moves() {
    let r = Scratch::new();
    r.write("a.rs", numbered("a", 20));
    r.write("b.rs", numbered("b", 20));
    let c = r.commit("first");
    // Unsaved-to-git edit above the anchor, and a file moved on disk without telling git.
    r.write("a.rs", format!("fn added_on_disk() {{}}\n\n{}", numbered("a", 20)));
    std::fs::rename(r.file("b.rs"), r.file("moved_b.rs")).unwrap();
    let got = strip(locate(&r, None, &[case("a", &c, "a.rs", 4, 6), case("b", &c, "b.rs", 10, 12)]));
    assert_eq!(got, [answer("intact", "a.rs", 6, 8), answer("intact", "moved_b.rs", 10, 12)]);
    // The same cases against HEAD ignore what is only on disk.
    let got = strip(locate(&r, Some("HEAD"), &[case("a", &c, "a.rs", 4, 6)]));
    assert_eq!(got, [answer("intact", "a.rs", 4, 6)]);
}

#[test]
fn a_shallow_clone_relocates_from_text_and_says_why_it_cannot_without() {
    let r = Scratch::new();
    r.write("a.rs", numbered("a", 30));
    let old = r.commit("first");
    r.write("a.rs", format!("// a new header\n// and another\n{}", numbered("a", 30)));
    r.commit("second");
    let shallow = Scratch::clone_of(&r, &["--depth=1"]);
    let text = "a line 10 does work 67\na line 11 does work 3\n";
    let with_text = json!({"id": "t", "commit": old, "path": "a.rs", "start": 10, "end": 11, "text": text});
    let got = locate(&shallow, None, &[with_text, case("n", &old, "a.rs", 10, 11)]);
    assert_eq!(got[0], json!({"id": "t", "status": "intact", "path": "a.rs", "start": 12, "end": 13}));
    assert_eq!(got[1]["status"], "unknown");
    let reason = got[1]["reason"].as_str().unwrap();
    assert!(reason.contains("not in this repository") && reason.contains("text"), "{reason}");
}

#[test]
fn binary_files_and_ranges_past_the_end_are_unknown_with_a_reason() {
    let r = Scratch::new();
    r.write("logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\n\n\n".as_slice());
    r.write("short.txt", "one\ntwo\nthree\n");
    let c = r.commit("first");
    let got = locate(&r, None, &[case("png", &c, "logo.png", 1, 2), case("past", &c, "short.txt", 3, 9)]);
    assert_eq!(got[0]["status"], "unknown");
    assert!(got[0]["reason"].as_str().unwrap().contains("binary"), "{}", got[0]);
    assert_eq!(got[1]["status"], "unknown");
    assert!(got[1]["reason"].as_str().unwrap().contains("past the end of short.txt, which has 3 lines"), "{}", got[1]);
}

#[test]
fn one_bad_line_never_stops_the_batch_and_order_is_kept() {
    let r = Scratch::new();
    r.write("a.rs", numbered("a", 10));
    let c = r.commit("first");
    let input = [
        case("1", &c, "a.rs", 1, 2).to_string(),
        "{not json".to_owned(),
        String::new(),
        json!({"id": "3", "commit": c, "path": "a.rs", "start": "two", "end": 3}).to_string(),
        json!({"id": "4", "commit": "zzz", "path": "a.rs", "start": 1, "end": 1}).to_string(),
        json!({"id": "5", "commit": c, "path": "../outside", "start": 1, "end": 1}).to_string(),
        json!({"id": "6", "commit": c, "path": "nope.rs", "start": 1, "end": 1}).to_string(),
        case("7", &c, "a.rs", 9, 10).to_string(),
    ]
    .join("\n");
    let out = marginalia(&["locate", "--repo", r.path().to_str().unwrap(), "--batch", "-"], &input);
    assert!(out.status.success());
    let got: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary: Vec<(Value, &str)> = got.iter().map(|a| (a["id"].clone(), a["status"].as_str().unwrap())).collect();
    assert_eq!(
        summary,
        [
            (json!("1"), "intact"),
            (json!(null), "error"),
            (json!("3"), "error"),
            (json!("4"), "unknown"),
            (json!("5"), "error"),
            (json!("6"), "unknown"),
            (json!("7"), "intact"),
        ]
    );
    assert_eq!(got[1]["line"], 2);
    assert!(got[2]["reason"].as_str().unwrap().contains("expected u32"), "{}", got[2]);
    assert!(got[3]["reason"].as_str().unwrap().contains("not a commit id"), "{}", got[3]);
    assert!(got[5]["reason"].as_str().unwrap().contains("does not exist at commit"), "{}", got[5]);
}

#[test]
fn the_single_anchor_form_reads_well() {
    let r = Scratch::new();
    r.write("a.rs", "fn one() {}\nfn two() {\n    work();\n}\n");
    let c = r.commit("first");
    r.write("a.rs", "// header\nfn one() {}\nfn two() {\n    work();\n}\n");
    r.commit("second");
    let dir = r.path().to_str().unwrap();
    let out = marginalia(&["locate", "--repo", dir, "--commit", &c[..10], "--path", "a.rs", "--lines", "2-4"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("intact    a.rs:3-5\n"), "{text}");
    assert!(text.contains("     4 |     work();"), "{text}");
    let out = marginalia(&["locate", "--repo", dir, "--commit", &c, "--path", "a.rs", "--lines", "2-4", "--json"], "");
    assert_eq!(stdout(&out).trim(), r#"{"id":null,"status":"intact","path":"a.rs","start":3,"end":5}"#);
    let out = marginalia(&["locate", "--repo", dir, "--commit", &c, "--path", "gone.rs", "--lines", "1"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("unknown"), "{}", stdout(&out));
}

#[test]
fn usage_and_environment_errors_exit_2_and_say_what_is_wrong() {
    let not_a_repo = tempfile::tempdir().unwrap();
    let out = marginalia(&["locate", "--repo", not_a_repo.path().to_str().unwrap(), "--batch", "-"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a git repository"), "{}", stderr(&out));
    let r = Scratch::new();
    r.write("a", "a\n");
    r.commit("first");
    let out =
        marginalia(&["locate", "--repo", r.path().to_str().unwrap(), "--to", "no-such-branch", "--batch", "-"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`no-such-branch` does not name a commit"), "{}", stderr(&out));
    let out = marginalia(&["locate", "--lines", "3-1", "--commit", "abcd", "--path", "a"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a line range"), "{}", stderr(&out));
    let out = marginalia(&["locate", "--help"], "");
    assert!(stdout(&out).contains("Examples:"), "--help teaches by example");
}

#[test]
fn anchors_sharing_a_commit_share_their_reads_and_diff() {
    let r = Scratch::new();
    r.write("big.rs", numbered("big", 500));
    let c = r.commit("first");
    r.write("big.rs", format!("// top\n{}", numbered("big", 500).replace("line 250 ", "line two-fifty ")));
    r.commit("second");
    let repo = Repo::open(r.path()).unwrap();
    let locator = Locator::new(&repo, Target::Commit(repo.resolve("HEAD").unwrap()));
    for start in (1..480).step_by(4) {
        let anchor = Anchor {
            commit: c.clone(),
            path: "big.rs".into(),
            lines: LineRange::new(start, start + 3),
            ..Anchor::default()
        };
        assert!(matches!(locator.locate(&anchor), Located::Found(_)));
    }
    assert_eq!(repo.blob_reads(), 2, "one read of each version for 120 anchors");
    assert_eq!(locator.diffs_computed(), 1, "one diff for 120 anchors");
}

#[test]
fn clones_are_one_repository_and_a_fork_is_related_but_distinct() {
    let upstream = Scratch::new();
    upstream.write("a", "a\n");
    upstream.commit("root");
    let one = Scratch::clone_of(&upstream, &[]);
    let two = Scratch::clone_of(&upstream, &[]);
    // Same repository reached over ssh and https.
    one.git(&["remote", "set-url", "origin", "git@github.com:Team/Project.git"]);
    two.git(&["remote", "set-url", "origin", "https://github.com/team/project"]);
    let fork = Scratch::clone_of(&upstream, &[]);
    fork.git(&["remote", "set-url", "origin", "git@github.com:someone/project.git"]);
    fork.git(&["remote", "add", "upstream", "https://github.com/team/project.git"]);
    let id = |s: &Scratch| Repo::open(s.path()).unwrap().identity().unwrap();
    let (a, b, f) = (id(&one), id(&two), id(&fork));
    assert_eq!(a.primary.as_deref(), Some("github.com/team/project"));
    assert_eq!(a.roots.len(), 1);
    assert_eq!(a.relation(&b), Relation::Same);
    assert_eq!(a.relation(&f), Relation::Related);
    let stranger = Scratch::new();
    stranger.write("z", "z\n");
    stranger.commit("other root");
    stranger.git(&["remote", "add", "origin", "https://gitlab.com/x/y.git"]);
    assert_eq!(a.relation(&id(&stranger)), Relation::Unrelated);
}

#[test]
fn crlf_checkouts_and_a_bom_do_not_move_anchors() {
    let r = Scratch::new();
    r.write("w.txt", numbered("w", 10));
    let c = r.commit("lf");
    r.write("w.txt", format!("\u{FEFF}{}", numbered("w", 10).replace('\n', "\r\n")));
    r.commit("crlf and bom");
    let got = strip(locate(&r, Some("HEAD"), &[case("a", &c, "w.txt", 1, 10)]));
    assert_eq!(got, [answer("intact", "w.txt", 1, 10)]);
}

#[test]
fn a_batch_on_several_threads_answers_exactly_as_on_one() {
    let r = Scratch::new();
    for f in 0..12 {
        r.write(&format!("f{f}.rs"), numbered(&format!("f{f}"), 60));
    }
    let c = r.commit("first");
    for f in (0..12).step_by(3) {
        r.write(
            &format!("f{f}.rs"),
            format!("// top\n{}", numbered(&format!("f{f}"), 60).replace("line 30 ", "line thirty ")),
        );
    }
    r.mv("f4.rs", "moved/f4.rs");
    r.commit("second");
    let mut lines: Vec<String> = (0..12)
        .flat_map(|f| (1..55).step_by(5).map(move |s| (f, s)))
        .map(|(f, s)| case(&format!("{f}:{s}"), &c, &format!("f{f}.rs"), s, s + 4).to_string())
        .collect();
    lines.insert(7, "not json".into());
    let repo = Repo::open(r.path()).unwrap();
    let target = Target::Commit(repo.resolve("HEAD").unwrap());
    let one = marginalia::locate::batch::answer_all(&lines, &Locator::new(&repo, target), false, &|| {});
    let three = marginalia::locate::batch::answer_all_parallel(&lines, r.path(), target, 3, false, &|| {});
    assert_eq!(one.len(), lines.len());
    assert_eq!(one, three);
    assert!(one.iter().any(|a| a.status == "modified") && one.iter().any(|a| a.path.as_deref() == Some("moved/f4.rs")));
}

// Failure patterns seen on real histories, each rebuilt as a small real history.

const HOOKS: &str = r#"class App:
    def before_app_request(self, f):
        """Register a function to run before each request to the app."""
        self.before_request_funcs.setdefault(None, []).append(f)
        return f

    def after_app_request(self, f):
        """Register a function to run after each request to the app."""
        self.after_request_funcs.setdefault(None, []).append(f)
        return f

    def teardown_app_request(self, f):
        """Register a function to run at the end of each request."""
        self.teardown_request_funcs.setdefault(None, []).append(f)
        return f
"#;

#[test]
fn a_deleted_function_is_deleted_not_its_look_alike_sibling() {
    let r = Scratch::new();
    r.write("app.py", HOOKS);
    let c = r.commit("hooks");
    // Later work around it, then the function goes; its siblings stay.
    r.write("app.py", HOOKS.replace("class App:\n", "import functools\n\n\nclass App:\n"));
    r.commit("imports");
    let before = "    def before_app_request(self, f):\n        \"\"\"Register a function to run before each request to the app.\"\"\"\n        self.before_request_funcs.setdefault(None, []).append(f)\n        return f\n\n";
    r.write("app.py", HOOKS.replace("class App:\n", "import functools\n\n\nclass App:\n").replace(before, ""));
    r.commit("before_app_request goes");
    let got = locate(&r, None, &[case("a", &c, "app.py", 2, 5), case("b", &c, "app.py", 4, 4)]);
    assert_eq!(got[0]["status"], "deleted", "{}", got[0]);
    assert_eq!(got[1]["status"], "deleted", "{}", got[1]);
    // Where it used to be: its own file, between the lines that stood around it.
    assert_eq!(got[0]["path"], "app.py");
}

#[test]
fn a_look_alike_in_another_module_is_not_where_deleted_code_went() {
    let r = Scratch::new();
    let handler = |name: &str| {
        format!(
            "pub async fn {name}(state: State) -> Response {{\n    let Some(user) = state.user().await else {{\n        return (StatusCode::INTERNAL_SERVER_ERROR, \"no user\").into_response();\n    }};\n    render(user)\n}}\n"
        )
    };
    r.write("src/users.rs", format!("use crate::prelude::*;\n\n{}", handler("show_user")));
    r.write("src/teams.rs", format!("use crate::prelude::*;\n\n{}", handler("show_team")));
    let c = r.commit("handlers");
    // The user handler is deleted while the team one is rewritten in the same commit.
    r.write("src/users.rs", "use crate::prelude::*;\n");
    r.write("src/teams.rs", format!("use crate::prelude::*;\n\n{}// teams\n", handler("show_team")));
    r.commit("users move to the new API");
    let got = locate(&r, None, &[case("a", &c, "src/users.rs", 3, 8), case("b", &c, "src/users.rs", 5, 5)]);
    assert_eq!(got[0]["status"], "deleted", "{}", got[0]);
    assert_eq!(got[1]["status"], "deleted", "{}", got[1]);
}

#[test]
fn a_range_with_lines_inserted_inside_spans_from_first_to_last_survivor() {
    let r = Scratch::new();
    let lines: Vec<String> = (1..=40).map(|i| format!("    total += weight_{i} * factor({i});")).collect();
    r.write("calc.rs", lines.join("\n") + "\n");
    let c = r.commit("first");
    let mut edited = lines.clone();
    // Ten lines inserted after the anchor's third line, and its first and last lines edited.
    for k in 0..10 {
        edited.insert(13 + k, format!("    debug_assert!(weight_{k} >= 0.0, \"inserted {k}\");"));
    }
    edited[10] = "    total += weight_11 * factor(11) * 2;".into();
    edited[33] = "    total -= weight_24 * factor(24);".into();
    r.write("calc.rs", edited.join("\n") + "\n");
    r.commit("insert checks");
    let got = strip(locate(&r, None, &[case("a", &c, "calc.rs", 11, 24), case("b", &c, "calc.rs", 30, 35)]));
    assert_eq!(got, [answer("modified", "calc.rs", 11, 34), answer("intact", "calc.rs", 40, 45)]);
}

#[test]
fn text_that_only_shifted_is_intact_even_beside_inserted_lines() {
    let r = Scratch::new();
    let lines: Vec<String> = (1..=30).map(|i| format!("let value_{i} = compute({i});")).collect();
    r.write("a.rs", lines.join("\n") + "\n");
    let c = r.commit("first");
    let mut edited = lines.clone();
    edited.insert(14, "let inserted_after = compute(0);".into());
    edited.insert(9, "let inserted_before = compute(0);".into());
    r.write("a.rs", edited.join("\n") + "\n");
    r.commit("neighbours");
    let got = strip(locate(&r, None, &[case("a", &c, "a.rs", 10, 14)]));
    assert_eq!(got, [answer("intact", "a.rs", 11, 15)]);
}

const PARSER: &str = r#"def parse_header(line):
    """Split a header line into its name and value."""
    name, _, value = line.partition(":")
    if not name or name != name.strip():
        raise HeaderError(f"bad header name in {line!r}")
    return name.lower(), value.strip()
"#;

#[test]
fn code_moved_to_another_folder_and_edited_is_found_both_ways() {
    let r = Scratch::new();
    r.write("lib/http.py", format!("import re\n\n\n{PARSER}\n\ndef other():\n    return None\n"));
    r.write("lib/util.py", "def util():\n    return 1\n");
    let old = r.commit("first");
    // One commit moves the function into another folder and edits it.
    r.write("lib/http.py", "import re\n\n\ndef other():\n    return None\n");
    let edited = PARSER.replace("return name.lower(), value.strip()", "return name.casefold(), value.strip()");
    r.write("src/headers/parse.py", format!("from .errors import HeaderError\n\n\n{edited}"));
    let new = r.commit("headers get their own package");
    let forward = strip(locate(&r, Some(&new), &[case("a", &old, "lib/http.py", 4, 9)]));
    assert_eq!(forward, [answer("modified", "src/headers/parse.py", 4, 9)]);
    // A teammate on the old commit sees the discussion written on the new one.
    let backward = strip(locate(&r, Some(&old), &[case("a", &new, "src/headers/parse.py", 4, 9)]));
    assert_eq!(backward, [answer("modified", "lib/http.py", 4, 9)]);
    // And a rename back in time: the file's old name.
    r.mv("lib/util.py", "lib/helpers.py");
    let renamed = r.commit("util -> helpers");
    let backward = strip(locate(&r, Some(&old), &[case("b", &renamed, "lib/helpers.py", 1, 2)]));
    assert_eq!(backward, [answer("intact", "lib/util.py", 1, 2)]);
}

#[test]
fn submodules_symlinks_and_odd_paths_answer_or_say_why() {
    let r = Scratch::new();
    r.write("src/wéird name (1).rs", numbered("odd", 20));
    r.write("vendor/lib.rs", numbered("vendored", 10));
    r.write("target.txt", numbered("target", 5));
    let c = r.commit("first");
    // A submodule (a gitlink) appears beside the files and in place of one; a file becomes a
    // symlink; the oddly named file is renamed into a folder with a space.
    let gitlink = format!("160000,{c},vendor/sub");
    r.git(&["update-index", "--add", "--cacheinfo", &gitlink]);
    r.git(&["rm", "-q", "vendor/lib.rs"]);
    let replace = format!("160000,{c},vendor/lib.rs");
    r.git(&["update-index", "--add", "--cacheinfo", &replace]);
    r.git(&["commit", "-q", "-m", "vendor as a submodule"]);
    std::fs::remove_file(r.file("target.txt")).unwrap();
    std::os::unix::fs::symlink("src/elsewhere.txt", r.file("target.txt")).unwrap();
    r.mv("src/wéird name (1).rs", "src/new dir/ünï côde.rs");
    r.git(&["add", "target.txt"]);
    let head = r.git(&["commit", "-q", "-m", "symlink and rename"]);
    let _ = head;
    let got = locate(
        &r,
        Some("HEAD"),
        &[
            case("odd", &c, "src/wéird name (1).rs", 3, 5),
            case("sub", &c, "vendor/lib.rs", 2, 4),
            case("link", &c, "target.txt", 1, 2),
        ],
    );
    assert_eq!(strip(got[..1].to_vec()), [answer("intact", "src/new dir/ünï côde.rs", 3, 5)]);
    for a in &got[1..] {
        let status = a["status"].as_str().unwrap();
        assert!(status == "deleted" || status == "unknown" && a["reason"].is_string(), "{a}");
        assert!(!a.to_string().contains("object not found"), "{a}");
    }
}

#[test]
fn a_range_ending_on_a_blank_line_keeps_it() {
    let r = Scratch::new();
    let body = "fn a() {\n    one();\n}\n\nfn b() {\n    two();\n}\n\n\nfn c() {}\n";
    r.write("a.rs", body);
    let c = r.commit("first");
    // Untouched checkout, and a commit that leaves the range alone.
    let got = strip(locate(&r, None, &[case("a", &c, "a.rs", 5, 8), case("b", &c, "a.rs", 4, 9)]));
    assert_eq!(got, [answer("intact", "a.rs", 5, 8), answer("intact", "a.rs", 4, 9)]);
    r.write("a.rs", format!("// top\n{body}"));
    r.commit("header");
    let got = strip(locate(&r, Some("HEAD"), &[case("a", &c, "a.rs", 5, 8), case("b", &c, "a.rs", 4, 9)]));
    assert_eq!(got, [answer("intact", "a.rs", 6, 9), answer("intact", "a.rs", 5, 10)]);
}

#[test]
fn from_text_alone_boilerplate_in_another_file_is_not_the_anchored_code() {
    let r = Scratch::new();
    let tail = "\tif err != nil {\n\t\treturn err\n\t}\n\treturn nil\n}\n";
    r.write(
        "doc/yaml.go",
        format!("package doc\n\nfunc writeYaml(w io.Writer) error {{\n\t_, err := w.Write(out)\n{tail}"),
    );
    r.write("doc/man.go", format!("package doc\n\nfunc writeMan(w io.Writer) error {{\n\terr := render(w)\n{tail}"));
    r.write(
        "doc/md.go",
        format!("package doc\n\nfunc writeMarkdown(w io.Writer) error {{\n\terr := markdown(w)\n{tail}"),
    );
    r.write(
        "cmd/helpers.go",
        "package cmd\n\nfunc helperNames() []string {\n\treturn listHelpersForTheCommandLine()\n}\n",
    );
    r.commit("first");
    // The anchor's commit is not here (a shallow checkout): only its text is.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let boilerplate = json!({"id": "b", "commit": missing, "path": "cmd/helpers.go", "start": 9, "end": 13,
        "text": "\tif err != nil {\n\t\treturn err\n\t}\n\treturn nil\n}"});
    let rare = json!({"id": "r", "commit": missing, "path": "cmd/old_helpers.go", "start": 3, "end": 5,
        "text": "func helperNames() []string {\n\treturn listHelpersForTheCommandLine()\n}"});
    let got = locate(&r, Some("HEAD"), &[boilerplate, rare]);
    assert_eq!(got[0]["status"], "deleted", "{}", got[0]);
    assert_eq!(got[1], json!({"id": "r", "status": "intact", "path": "cmd/helpers.go", "start": 3, "end": 5}));
}
