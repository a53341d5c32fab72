//! `marginalia check` on a real repository with a scripted pull request: code under codemarks
//! edited, deleted, moved to another file, cut and pasted within its file, shifted by lines
//! added above it, changed on main before the branch and after it, and left alone. Every format
//! lists exactly the right codemarks; the SARIF validates against the SARIF 2.1.0 schema; a
//! depth-1 clone of the head gives the same answers for intact code and says how many codemarks
//! it located from their text; the team server is a source as good as the local store; `--post`
//! keeps one summary on GitHub, GitLab and Bitbucket stand-ins; the exit codes are as documented.

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::fake_host::{FakeHost, Reply, fixture_json};
use common::{Scratch, stderr, stdout};
use expect_test::expect;
use serde_json::{Value, json};

const REMOTE: &str = "git@github.com:octocat/Hello-World.git";

const CART: &str = r#"import math


def total(items):
    """Sum of the items' prices."""
    amount = 0
    for item in items:
        amount += item.price * item.quantity
    return amount


def tax(amount, rate):
    """Tax on an amount, rounded to cents."""
    taxed = amount * rate
    return round(taxed, 2)


def discount(amount, code):
    """Ten percent off with a welcome code."""
    if code == "WELCOME10":
        return amount * 0.9
    return amount


def shipping(weight):
    """Flat rate under five kilos."""
    if weight < 5:
        return 4.99
    return 4.99 + (weight - 5) * 1.25
"#;

const STOCK: &str = r#"class Stock:
    def __init__(self):
        self.levels = {}

    def restock(self, sku, count):
        """Add count units of sku."""
        current = self.levels.get(sku, 0)
        self.levels[sku] = current + count
        log_restock(sku, count)

    def describe(self, sku):
        """One line for the stock report."""
        level = self.levels.get(sku, 0)
        return f"{sku}: {level} in stock"

    def report(self, out):
        """Every sku with its level, lowest first."""
        ordered = sorted(self.levels.items(), key=lambda kv: kv[1])
        for sku, level in ordered:
            marker = "LOW" if level < 3 else ""
            out.write(f"{sku:<12} {level:>6} {marker}\n")
        out.write("-" * 24 + "\n")
        out.write(f"{len(ordered)} skus\n")
        out.flush()
        return len(ordered)
"#;

const UTIL: &str = r#"import re


def slugify(title):
    """Lowercase words joined by dashes."""
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "-".join(words)


def parse_money(text):
    """Cents from a price like 12.34."""
    whole, _, cents = text.partition(".")
    return int(whole) * 100 + int(cents or 0)


def clamp(value, low, high):
    """Value kept between low and high."""
    return max(low, min(high, value))
"#;

/// The repository and the names of the codemarks made on it, by what happens to their code.
struct Pr {
    repo: Scratch,
    data: tempfile::TempDir,
    /// Codemark id by name.
    ids: BTreeMap<&'static str, String>,
    /// The commit the codemarks were made on.
    a: String,
    /// The merge base: main after a change to `slugify`.
    b: String,
    /// The pull request's head.
    head: String,
}

/// The lines `first..first+len-1` where the line starting with `start` is the first, 1-based.
fn lines_of(text: &str, start: &str, len: usize) -> String {
    let i = text.lines().position(|l| l.trim_start().starts_with(start)).unwrap_or_else(|| panic!("{start}")) + 1;
    format!("{i}-{}", i + len - 1)
}

/// The built binary in `cwd` with its store in `data`; no token or server leaks in from the
/// machine.
fn run(cwd: &Path, data: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marginalia"));
    cmd.args(args)
        .current_dir(cwd)
        .env("MARGINALIA_DATA_DIR", data)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("MARGINALIA_LOG", "warn")
        .env("MARGINALIA_PROVIDER_MAX_WAIT", "2")
        .stdin(Stdio::null());
    for v in [
        "MARGINALIA_SERVER",
        "MARGINALIA_TOKEN",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITLAB_TOKEN",
        "BITBUCKET_TOKEN",
        "GITHUB_EVENT_PATH",
        "GITHUB_REF",
        "CI_MERGE_REQUEST_IID",
        "BITBUCKET_PR_ID",
        "CI",
    ] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("the marginalia binary runs")
}

impl Pr {
    fn run(&self, args: &[&str]) -> Output {
        run(self.repo.path(), self.data.path(), &[], args)
    }

    fn check(&self, extra: &[&str]) -> Output {
        let mut args = vec!["check", "--base", "main", "--head", "feature"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Puts each codemark's name in place of its id (ids are random), and `$DATA` for the store.
    fn named(&self, s: &str) -> String {
        let mut s = s.replace(&self.data.path().display().to_string(), "$DATA");
        for (name, id) in &self.ids {
            s = s.replace(id.as_str(), &format!("<{name}>"));
        }
        s
    }
}

/// Makes a codemark with the CLI (or the library for what the CLI cannot make) in the store of
/// `data`, with `env` (a headless sign-in, when sharing).
fn add(repo: &Scratch, data: &Path, env: &[(&str, &str)], path: &str, lines: &str, kind: &str, body: &str) -> String {
    let out = run(
        repo.path(),
        data,
        env,
        &["codemark", "add", "--path", path, "--lines", lines, "--kind", kind, "--body", body, "--json"],
    );
    assert!(out.status.success(), "codemark add: {}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// The scripted pull request. Codemarks are made on commit `a` (through the CLI, with `env`);
/// then main changes `slugify` (b, the branch point), the branch `feature` makes the pull
/// request's change, and main goes on to change `parse_money` after the branch.
fn scripted(env: &[(&str, &str)]) -> Pr {
    let repo = Scratch::new();
    repo.git(&["remote", "add", "origin", REMOTE]);
    repo.write("src/cart.py", CART);
    repo.write("src/stock.py", STOCK);
    repo.write("src/util.py", UTIL);
    let a = repo.commit("shop");
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let mut ids = BTreeMap::new();
    let mut mark = |name: &'static str, path: &str, text: &str, start: &str, len: usize, kind: &str, body: &str| {
        let id = add(&repo, d, env, path, &lines_of(text, start, len), kind, body);
        ids.insert(name, id);
    };
    mark("tax", "src/cart.py", CART, "def tax", 4, "question", "Should tax be rounded per item?");
    mark("restock", "src/stock.py", STOCK, "def restock", 5, "issue", "Restocking does not check the count");
    mark("discount", "src/cart.py", CART, "def discount", 5, "comment", "Codes belong in a table");
    mark("describe", "src/stock.py", STOCK, "def describe", 4, "comment", "Say \"out of stock\" at zero");
    mark("total", "src/cart.py", CART, "def total", 6, "question", "Why not sum()?");
    mark("shipping", "src/cart.py", CART, "def shipping", 5, "comment", "Rates change in May");
    mark("slugify", "src/util.py", UTIL, "def slugify", 4, "comment", "Accents are dropped");
    mark("parse-money", "src/util.py", UTIL, "def parse_money", 4, "issue", "Negative prices?");
    mark("resolved", "src/stock.py", STOCK, "def restock", 5, "question", "Already answered");
    mark("bookmark", "src/cart.py", CART, "def tax", 4, "bookmark", "look again");
    let resolved = ids["resolved"].clone();
    let out = run(repo.path(), d, env, &["codemark", "resolve", &resolved]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Main, before the branch: slugify changes (old drift the pull request must not be blamed for).
    repo.write("src/util.py", UTIL.replace("title.lower()", "title.casefold()"));
    let b = repo.commit("slugify: casefold");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    let cart = CART
        .replace("import math\n", "import math\n\nDEFAULT_RATE = 0.2\nCURRENCY = \"EUR\"\n")
        .replace("    taxed = amount * rate\n", "    taxed = amount * (rate or DEFAULT_RATE)\n");
    let discount = "\n\ndef discount(amount, code):\n    \"\"\"Ten percent off with a welcome code.\"\"\"\n    if code == \"WELCOME10\":\n        return amount * 0.9\n    return amount\n";
    let cart = cart.replace(discount, "");
    repo.write("src/cart.py", &cart);
    repo.write("src/pricing.py", format!("from cart import total\n{discount}"));
    let describe = "    def describe(self, sku):\n        \"\"\"One line for the stock report.\"\"\"\n        level = self.levels.get(sku, 0)\n        return f\"{sku}: {level} in stock\"\n\n";
    let restock = "    def restock(self, sku, count):\n        \"\"\"Add count units of sku.\"\"\"\n        current = self.levels.get(sku, 0)\n        self.levels[sku] = current + count\n        log_restock(sku, count)\n\n";
    let stock = STOCK.replace(restock, "").replace(describe, "") + "\n" + describe.trim_end() + "\n";
    repo.write("src/stock.py", &stock);
    let head = repo.commit("pricing: discounts move out; tax defaults; restocking goes");
    // Main, after the branch: parse_money changes; the pull request's diff does not show it.
    repo.git(&["checkout", "-q", "main"]);
    repo.write(
        "src/util.py",
        UTIL.replace("title.lower()", "title.casefold()").replace("int(cents or 0)", "int((cents or \"0\")[:2])"),
    );
    repo.commit("parse_money: at most two decimals");
    repo.git(&["checkout", "-q", "feature"]);
    // A codemark whose commit no clone has, and with no anchored text: nothing to find it by.
    let store = marginalia::store::Store::open(&d.join("marginalia.db")).unwrap();
    let mut lost = store.get(&ids["shipping"]).unwrap().unwrap();
    lost.id = marginalia::codemark::new_id();
    lost.body = "Lost its commit".into();
    lost.anchors[0].id = marginalia::codemark::new_id();
    lost.anchors[0].anchor.commit = "f".repeat(40);
    lost.anchors[0].anchor.text = None;
    store.insert(&lost).unwrap();
    ids.insert("lost", lost.id);
    Pr { repo, data, ids, a, b, head }
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.code().is_some_and(|c| c < 2), "exit {:?}: {}", out.status.code(), stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// `name: category head-place` for every listed codemark, in the report's order.
fn listed(pr: &Pr, v: &Value) -> Vec<String> {
    v["codemarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let head = match &c["head"] {
                Value::Null => "-".to_owned(),
                h => format!("{}:{}-{}", h["path"].as_str().unwrap(), h["start"], h["end"]),
            };
            pr.named(&format!("{} {} {head}", c["category"].as_str().unwrap(), c["id"].as_str().unwrap()))
        })
        .collect()
}

#[test]
fn each_format_lists_exactly_what_the_pull_request_touched() {
    let pr = scripted(&[]);
    let v = json_of(&pr.check(&["--format", "json"]));
    assert_eq!(
        listed(&pr, &v),
        [
            "deleted <restock> src/stock.py:5-5",
            "modified <tax> src/cart.py:15-18",
            "moved <discount> src/pricing.py:4-8",
            "moved <describe> src/stock.py:16-19",
            "unknown <lost> -",
        ]
    );
    assert_eq!(
        v["counts"],
        json!({"deleted": 1, "modified": 1, "moved": 2, "unknown": 1, "unchanged": 4, "touched": 4, "checked": 9, "goneAtBase": 0})
    );
    assert_eq!(v["skipped"], json!({"resolved": 1, "bookmarks": 1, "reviews": 0}));
    assert_eq!(v["source"]["kind"], "local");
    assert_eq!(v["locatedFromText"], 0);
    // Compared from the merge base: parse_money (changed on main after the branch) and slugify
    // (changed before it) are unchanged by this change.
    assert_eq!(v["start"], pr.b.as_str());
    assert_eq!(v["head"]["commit"], pr.head.as_str());
    let discount = &v["codemarks"][2];
    assert_eq!(discount["base"], json!({"path": "src/cart.py", "start": 18, "end": 22, "status": "intact"}));
    assert_eq!(discount["anchor"]["commit"], pr.a.as_str());
    assert_eq!(discount["link"], Value::Null, "local codemarks have no address beyond their id");
    let lost = &v["codemarks"][4];
    assert!(lost["reason"].as_str().unwrap().contains("is not in this repository"), "{lost}");

    let main = pr.repo.git(&["rev-parse", "main"]);
    let shas = |s: &str| s.replace(&main[..12], "<main>").replace(&pr.b[..12], "<b>").replace(&pr.head[..12], "<head>");
    let text = shas(&pr.named(&stdout(&pr.check(&[]))));
    expect![[r#"
        marginalia check: main (<main>) -> feature (<head>), compared from their merge base <b>
        9 open codemarks from the local store $DATA/marginalia.db (left out: 1 resolved, 1 bookmarks, 0 review comments)

        deleted   src/stock.py:5  issue "Restocking does not check the count"  <restock>
                  was src/stock.py:5-9; nothing of it is left
        modified  src/cart.py:15-18  question "Should tax be rounded per item?"  <tax>
                  was src/cart.py:12-15
        moved     src/pricing.py:4-8  comment "Codes belong in a table"  <discount>
                  was src/cart.py:18-22
        moved     src/stock.py:16-19  comment "Say "out of stock" at zero"  <describe>
                  was src/stock.py:11-14
        unknown   src/cart.py:25-29  comment "Lost its commit"  <lost>
                  could not be located: commit ffffffffffffffffffffffffffffffffffffffff is not in this repository (a shallow clone, or history rewritten since?) and the case has no `text` to search for: fetch the commit or send the anchored text

        1 deleted, 1 modified, 2 moved, 1 unknown, 4 unchanged; none located from their anchored text
    "#]]
    .assert_eq(&text);

    let md = shas(&pr.named(&stdout(&pr.check(&["--format", "markdown"]))));
    expect![[r#"
        <!-- marginalia-check -->
        ### marginalia: this change touches 4 open discussions

        | Change | Discussion | Now (head) | Was (base) |
        | --- | --- | --- | --- |
        | deleted | issue: Restocking does not check the count · `<restock>` | gone (was near `src/stock.py:5`) | `src/stock.py:5-9` |
        | modified | question: Should tax be rounded per item? · `<tax>` | `src/cart.py:15-18` | `src/cart.py:12-15` |
        | moved | comment: Codes belong in a table · `<discount>` | `src/pricing.py:4-8` | `src/cart.py:18-22` |
        | moved | comment: Say "out of stock" at zero · `<describe>` | `src/stock.py:16-19` | `src/stock.py:11-14` |
        | unknown | comment: Lost its commit · `<lost>` · could not be located: commit ffffffffffffffffffffffffffffffffffffffff is not in this repository (a shallow clone, or history rewritten since?) and the case has no 'text' to search for: fetch the commit or send the anchored text | ? | `src/cart.py:25-29 as made` |

        1 deleted, 1 modified, 2 moved, 1 unknown, 4 unchanged. None located from their anchored text. Codemarks from the local store $DATA/marginalia.db; base `main (<main>)`, head `feature (<head>)`.
    "#]]
    .assert_eq(&md);

    // Bookmarks count in when asked, from the local store.
    let v = json_of(&pr.check(&["--format", "json", "--include-bookmarks"]));
    assert_eq!(v["counts"]["modified"], 2);
    assert_eq!(v["skipped"]["bookmarks"], 0);
}

/// The SARIF 2.1.0 schema, kept in fixtures (see fixtures/sarif-schema-2.1.0.md).
fn sarif_validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sarif-schema-2.1.0.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).expect("the SARIF schema compiles")
}

fn assert_valid_sarif(v: &Value) {
    let validator = sarif_validator();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "not valid SARIF 2.1.0: {errors:#?}\n{v:#}");
}

#[test]
fn sarif_validates_against_the_schema_and_points_at_heads_lines() {
    // The validator itself refuses what the schema refuses.
    let bad = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"message": {"text": "m"}, "level": "loud"}]}]});
    assert!(!sarif_validator().is_valid(&bad));
    assert!(!sarif_validator().is_valid(&json!({"version": "2.0.0", "runs": []})));

    let pr = scripted(&[]);
    let v = json_of(&pr.check(&["--format", "sarif"]));
    assert_valid_sarif(&v);
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "marginalia");
    assert_eq!(run["tool"]["driver"]["version"], env!("CARGO_PKG_VERSION"));
    let rules: Vec<&str> =
        run["tool"]["driver"]["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(rules, ["codemark-deleted", "codemark-modified", "codemark-moved"]);
    let results: Vec<String> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let loc = &r["locations"][0]["physicalLocation"];
            let id = r["partialFingerprints"]["marginaliaCodemark/v1"].as_str().unwrap();
            pr.named(&format!(
                "{} {} {} {}:{}-{}",
                r["ruleId"].as_str().unwrap(),
                r["level"].as_str().unwrap(),
                id,
                loc["artifactLocation"]["uri"].as_str().unwrap(),
                loc["region"]["startLine"],
                loc["region"]["endLine"]
            ))
        })
        .collect();
    assert_eq!(
        results,
        [
            "codemark-deleted warning <restock> src/stock.py:5-5",
            "codemark-modified note <tax> src/cart.py:15-18",
            "codemark-moved note <discount> src/pricing.py:4-8",
            "codemark-moved note <describe> src/stock.py:16-19",
        ]
    );
    // The lines are head's: the region holds the codemark's code in the head commit.
    let at_head = pr.repo.git(&["show", &format!("{}:src/pricing.py", pr.head)]);
    let region: Vec<&str> = at_head.lines().skip(3).take(5).collect();
    assert_eq!(region[0], "def discount(amount, code):");
    // Rule indexes agree with the rules.
    for r in run["results"].as_array().unwrap() {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][i]["id"], r["ruleId"]);
    }
    let message = run["results"][1]["message"]["text"].as_str().unwrap();
    assert!(
        message.starts_with("This change modifies the code of question ")
            && message.contains("Should tax be rounded per item?"),
        "{message}"
    );
    // The codemark that could not be located is a notification of the run, not a result.
    let told = &run["invocations"][0]["toolExecutionNotifications"];
    assert_eq!(told.as_array().unwrap().len(), 1);
    assert!(pr.named(told[0]["message"]["text"].as_str().unwrap()).starts_with("comment <lost> could not be located"));
    // Stable across runs: the same fingerprints and the same bytes.
    assert_eq!(stdout(&pr.check(&["--format", "sarif"])), serde_json::to_string_pretty(&v).unwrap() + "\n");
    // An empty change is valid SARIF with no results.
    let empty = json_of(&pr.run(&["check", "--base", "feature", "--head", "feature", "--format", "sarif"]));
    assert_valid_sarif(&empty);
    assert_eq!(empty["runs"][0]["results"], json!([]));
}

#[test]
fn a_depth_1_clone_gives_the_same_answers_for_intact_code_and_counts_the_text_located() {
    let pr = scripted(&[]);
    let full = json_of(&pr.check(&["--format", "json"]));
    let clone = Scratch::clone_of(&pr.repo, &["--depth=1", "--branch", "feature"]);
    // CI's checkout names the same remote; the store knows the repository by it.
    clone.git(&["remote", "set-url", "origin", REMOTE]);
    let out = run(clone.path(), pr.data.path(), &[], &["check", "--base", "main", "--format", "json"]);
    let shallow = json_of(&out);
    assert_eq!(shallow["base"]["commit"], Value::Null);
    assert_eq!(shallow["start"], Value::Null);
    assert!(shallow["notes"][0].as_str().unwrap().contains("base `main` is not in this shallow clone"), "{shallow:#}");
    // Every codemark that could be located was located from its text: no commit is here but head.
    assert_eq!(shallow["locatedFromText"], 8);
    let full_listed = listed(&pr, &full);
    let shallow_listed = listed(&pr, &shallow);
    // Intact code: moved (to another file, and within its file) and unchanged are the same.
    for name in ["<discount>", "<describe>"] {
        let a = full_listed.iter().find(|l| l.contains(name)).unwrap();
        let b = shallow_listed.iter().find(|l| l.contains(name)).unwrap();
        assert_eq!(a, b);
    }
    for name in ["total", "shipping", "parse-money"] {
        assert!(!shallow_listed.iter().any(|l| l.contains(&format!("<{name}>"))), "{name}: {shallow_listed:?}");
    }
    // So are the edited and the deleted code here.
    assert!(shallow_listed.contains(&"deleted <restock> src/stock.py:5-5".to_owned()), "{shallow_listed:?}");
    assert!(shallow_listed.contains(&"modified <tax> src/cart.py:15-18".to_owned()), "{shallow_listed:?}");
    // Without the base, drift made on main before the branch cannot be told from the change's:
    // slugify is reported by its state at head, as the note says.
    assert!(shallow_listed.iter().any(|l| l.starts_with("modified <slugify>")), "{shallow_listed:?}");
    let text = stdout(&run(clone.path(), pr.data.path(), &[], &["check", "--base", "main"]));
    assert!(text.contains("8 located from their anchored text (their commits are not in this clone)"), "{text}");
    let md = stdout(&run(clone.path(), pr.data.path(), &[], &["check", "--base", "main", "--format", "markdown"]));
    assert!(md.contains("8 located from their anchored text") && md.contains("not in this shallow clone"), "{md}");
}

#[test]
fn exit_codes_say_what_failed() {
    let pr = scripted(&[]);
    assert_eq!(pr.check(&[]).status.code(), Some(0), "report-only by default");
    assert_eq!(pr.check(&["--fail-on", "modified"]).status.code(), Some(1));
    assert_eq!(pr.check(&["--fail-on", "deleted"]).status.code(), Some(1));
    let empty = |extra: &[&str]| {
        let mut args = vec!["check", "--base", "feature", "--head", "feature"];
        args.extend_from_slice(extra);
        pr.run(&args)
    };
    let out = empty(&["--fail-on", "modified"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 deleted, 0 modified, 0 moved, 1 unknown, 8 unchanged"), "{}", stdout(&out));
    // Only a deletion fails --fail-on deleted: the merge base to main's tip changes parse_money.
    let out = pr.run(&["check", "--base", "feature", "--head", "main", "--fail-on", "deleted", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let code_and_err = |o: Output| (o.status.code(), stderr(&o));
    let (code, err) = code_and_err(pr.run(&["check", "--base", "nope"]));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--base")
            && err.contains("`nope` does not name a commit")
            && err.contains("git fetch origin nope"),
        "{err}"
    );
    let (code, err) = code_and_err(pr.run(&["check", "--base", "main", "--head", "nope"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("--head nope"), "{err}");
    let (code, err) = code_and_err(pr.run(&["check"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("--base <REV>"), "{err}");
    let (code, err) = code_and_err(pr.check(&["--fail-on", "moved"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("expected modified (modified or deleted) or deleted"), "{err}");
    let (code, err) = code_and_err(pr.check(&["--source", "server"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("--source server needs a team server: set MARGINALIA_SERVER and MARGINALIA_TOKEN"), "{err}");
    let (code, err) = code_and_err(pr.check(&["--source", "server", "--include-bookmarks"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("bookmarks are private"), "{err}");
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, err) = code_and_err(run(elsewhere.path(), pr.data.path(), &[], &["check", "--base", "main"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a git repository"), "{err}");
    // --post with no token anywhere: the report is printed, then the missing token is named.
    let out = pr.run(&["check", "--base", "main", "--head", "feature", "--post", "--pr", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("1 deleted, 1 modified"), "{}", stdout(&out));
    assert!(stderr(&out).contains("--post: no GitHub token for github.com"), "{}", stderr(&out));
}

#[test]
fn the_team_server_is_a_source_with_links_back_to_each_codemark() {
    let server = serve::Served::start();
    let token = server.member("shop", "Ann", "admin");
    let trust = server.trust();
    let env =
        [("MARGINALIA_SERVER", server.url.as_str()), ("MARGINALIA_TOKEN", token.as_str()), (trust.0, trust.1.as_str())];
    let pr = scripted(&env);
    let out = run(pr.repo.path(), pr.data.path(), &env, &["sync", "--yes"]);
    assert!(out.status.success(), "sync: {} {}", stdout(&out), stderr(&out));

    // A CI bot: a fresh store, the server and a token in the environment.
    let bot = tempfile::tempdir().unwrap();
    let out =
        run(pr.repo.path(), bot.path(), &env, &["check", "--base", "main", "--head", "feature", "--format", "json"]);
    let v = json_of(&out);
    assert_eq!(v["source"], json!({"kind": "server", "server": server.url}));
    // The same answers as from the local store, less what never left it (the bookmark, and the
    // codemark the library put in the store without queueing it).
    assert_eq!(
        listed(&pr, &v),
        [
            "deleted <restock> src/stock.py:5-5",
            "modified <tax> src/cart.py:15-18",
            "moved <discount> src/pricing.py:4-8",
            "moved <describe> src/stock.py:16-19",
        ]
    );
    assert_eq!(v["skipped"], json!({"resolved": 1, "bookmarks": 0, "reviews": 0}));
    let tax = &v["codemarks"][1];
    let link = format!("{}/api/v1/codemarks/{}", server.url, pr.ids["tax"]);
    assert_eq!(tax["link"], link.as_str());
    // The link is the codemark on the server, readable with a team token.
    assert_eq!(server.get(&token, &format!("/codemarks/{}", pr.ids["tax"]))["body"], "Should tax be rounded per item?");
    // `auto` picks the server from the environment; every format says so.
    let md = stdout(&run(
        pr.repo.path(),
        bot.path(),
        &env,
        &["check", "--base", "main", "--head", "feature", "--format", "markdown"],
    ));
    assert!(md.contains(&format!("[`{}`]({link})", pr.ids["tax"])), "{md}");
    assert!(md.contains(&format!("Codemarks from the team server {}", server.url)), "{md}");
    let sarif = json_of(&run(
        pr.repo.path(),
        bot.path(),
        &env,
        &["check", "--base", "main", "--head", "feature", "--format", "sarif"],
    ));
    assert_valid_sarif(&sarif);
    assert!(sarif["runs"][0]["results"][1]["message"]["text"].as_str().unwrap().contains(&link));
    // The request is on the bot's egress ledger.
    let ledger = json_of(&run(pr.repo.path(), bot.path(), &env, &["egress", "--json"]));
    assert!(
        ledger.as_array().unwrap().iter().any(|e| e["endpoint"] == "/api/v1/codemarks" && e["method"] == "GET"),
        "{ledger:#}"
    );
    // A token the server does not know: exit 2, naming the problem.
    let bad =
        [("MARGINALIA_SERVER", server.url.as_str()), ("MARGINALIA_TOKEN", "mrg_nope"), (trust.0, trust.1.as_str())];
    let out = run(pr.repo.path(), bot.path(), &bad, &["check", "--base", "main"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not accept this token"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// --post against stand-in code hosts
// ---------------------------------------------------------------------------------------------

/// A GitHub issue comment as the API returns it (the documented example, with our id, author and body).
fn gh_comment(id: u64, login: &str, body: &str) -> Value {
    let mut v = fixture_json("github/create-issue-comment.response-201.json");
    v["id"] = json!(id);
    v["user"]["login"] = json!(login);
    v["body"] = json!(body);
    v["html_url"] = json!(format!("https://github.com/octocat/Hello-World/pull/1347#issuecomment-{id}"));
    v
}

#[test]
fn post_on_github_creates_the_summary_then_edits_the_same_comment() {
    let pr = scripted(&[]);
    let host = FakeHost::start();
    let comments = "/repos/octocat/Hello-World/issues/1347/comments";
    host.on("GET", "/user", Reply::json(200, r#"{"login":"marginalia-bot"}"#));
    host.on("GET", comments, Reply::json(200, json!([gh_comment(1, "octocat", "Me too")]).to_string()));
    host.on("POST", comments, Reply::json(201, gh_comment(9001, "marginalia-bot", "posted").to_string()));
    let event = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(event.path(), r#"{"action":"synchronize","number":1347,"pull_request":{"number":1347}}"#).unwrap();
    let event_path = event.path().display().to_string();
    let env = [
        ("MARGINALIA_GITHUB_API", host.base.as_str()),
        ("GITHUB_TOKEN", "ghp_fakeTokenForTests0123456789abcdefABCD"),
        ("GITHUB_EVENT_PATH", event_path.as_str()),
        ("CI", "true"),
    ];
    let post = |args: &[&str]| {
        let mut all = vec!["check", "--base", "main", "--head", "feature", "--post"];
        all.extend_from_slice(args);
        run(pr.repo.path(), pr.data.path(), &env, &all)
    };
    let out = post(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("posted the summary on github:octocat/Hello-World#1347 (from GITHUB_EVENT_PATH (pull_request.number)) as comment 9001"),
        "{}",
        stderr(&out)
    );
    let posts = host.requests_to("POST", comments);
    assert_eq!(posts.len(), 1);
    let body = posts[0].json()["body"].as_str().unwrap().to_owned();
    assert_eq!(posts[0].json().as_object().unwrap().len(), 1, "only `body`, as documented");
    assert!(
        body.starts_with("<!-- marginalia-check -->\n### marginalia: this change touches 4 open discussions"),
        "{body}"
    );
    // The summary is the Markdown report, whatever --format printed.
    assert_eq!(body, stdout(&pr.check(&["--format", "markdown"])));
    let list = &host.requests_to("GET", comments)[0];
    assert_eq!(list.pairs(), vec![("per_page".to_owned(), "100".to_owned())]);
    assert_eq!(list.header("authorization"), Some("Bearer ghp_fakeTokenForTests0123456789abcdefABCD"));
    assert_eq!(list.header("x-github-api-version"), Some("2022-11-28"));

    // The next run finds its comment (marker, same author; a teammate's bot's is not ours) and edits it.
    host.on(
        "GET",
        comments,
        Reply::json(
            200,
            json!([
                gh_comment(1, "octocat", "Me too"),
                gh_comment(77, "other-bot", "<!-- marginalia-check -->\nsomeone else's"),
                gh_comment(9001, "marginalia-bot", &body.replace("4 open", "5 open")),
            ])
            .to_string(),
        ),
    );
    host.on(
        "PATCH",
        "/repos/octocat/Hello-World/issues/comments/9001",
        Reply::json(200, gh_comment(9001, "marginalia-bot", "x").to_string()),
    );
    let out = post(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("updated the summary comment 9001 on github:octocat/Hello-World#1347"),
        "{}",
        stderr(&out)
    );
    let edits = host.requests_to("PATCH", "/repos/octocat/Hello-World/issues/comments/9001");
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].json(), json!({ "body": body }));
    assert_eq!(host.requests_to("POST", comments).len(), 1, "no second comment");

    // Nothing touched any more (an empty change): the summary says so.
    host.on("GET", comments, Reply::json(200, json!([gh_comment(9001, "marginalia-bot", &body)]).to_string()));
    let out = run(pr.repo.path(), pr.data.path(), &env, &["check", "--base", "feature", "--head", "feature", "--post"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let edits = host.requests_to("PATCH", "/repos/octocat/Hello-World/issues/comments/9001");
    assert_eq!(edits.len(), 2);
    let cleared = edits[1].json()["body"].as_str().unwrap().to_owned();
    assert!(
        cleared.starts_with(
            "<!-- marginalia-check -->\n### marginalia: this change no longer touches any open discussion"
        ),
        "{cleared}"
    );
    // With no earlier summary and nothing touched, nothing is posted.
    host.on("GET", comments, Reply::json(200, "[]"));
    let out = run(pr.repo.path(), pr.data.path(), &env, &["check", "--base", "feature", "--head", "feature", "--post"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to post on github:octocat/Hello-World#1347"), "{}", stderr(&out));
    assert_eq!(host.requests_to("POST", comments).len(), 1);
    assert_eq!(host.requests_to("PATCH", "/repos/octocat/Hello-World/issues/comments/9001").len(), 2);

    // Every request is on the egress ledger, never the token.
    let ledger = stdout(&run(pr.repo.path(), pr.data.path(), &[], &["egress", "--json"]));
    assert!(ledger.contains("/repos/octocat/Hello-World/issues/comments/9001") && !ledger.contains("ghp_"), "{ledger}");
}

#[test]
fn post_on_gitlab_and_bitbucket_finds_the_number_in_ci_and_edits_its_note() {
    let pr = scripted(&[]);
    // GitLab: the merge request from CI_MERGE_REQUEST_IID; its notes, then a PUT on ours.
    // `upstream` names the code host (where a fork's pull requests go); `origin` still names
    // the repository, whose key the store knows the codemarks by.
    pr.repo.git(&["remote", "add", "upstream", "git@gitlab.com:acme/shop.git"]);
    let host = FakeHost::start();
    let notes = "/projects/acme%2Fshop/merge_requests/5/notes";
    host.on("GET", "/user", Reply::json(200, r#"{"username":"ci-bot"}"#));
    let mut ours = fixture_json("gitlab/get-merge-request-note.response-200.json");
    ours["id"] = json!(302);
    ours["author"]["username"] = json!("ci-bot");
    ours["body"] = json!("<!-- marginalia-check -->\nold");
    let mut system = fixture_json("gitlab/get-merge-request-note.response-200.json");
    system["id"] = json!(303);
    system["system"] = json!(true);
    system["body"] = json!("<!-- marginalia-check --> added 1 commit");
    host.on(
        "GET",
        notes,
        Reply::json(
            200,
            json!([fixture_json("gitlab/get-merge-request-note.response-200.json"), system, ours.clone()]).to_string(),
        ),
    );
    host.on("PUT", &format!("{notes}/302"), Reply::json(200, ours.to_string()));
    let env = [
        ("MARGINALIA_GITLAB_API", host.base.as_str()),
        ("GITLAB_TOKEN", "glpat-fakeTokenForTests01234"),
        ("CI_MERGE_REQUEST_IID", "5"),
    ];
    let out = run(
        pr.repo.path(),
        pr.data.path(),
        &env,
        &["check", "--base", "main", "--head", "feature", "--source", "local", "--post"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("updated the summary comment 302 on gitlab:acme/shop!5"), "{}", stderr(&out));
    let list = &host.requests_to("GET", notes)[0];
    let mut want = vec![("order_by", "created_at"), ("per_page", "100"), ("sort", "asc")]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect::<Vec<_>>();
    want.sort();
    assert_eq!(list.pairs(), want);
    let put = &host.requests_to("PUT", &format!("{notes}/302"))[0];
    let body = put.json()["body"].as_str().unwrap().to_owned();
    assert!(body.starts_with("<!-- marginalia-check -->\n### marginalia: this change touches"), "{body}");
    assert_eq!(put.header("authorization"), Some("Bearer glpat-fakeTokenForTests01234"));
    assert!(host.requests_to("POST", notes).is_empty());

    // Bitbucket: the pull request from BITBUCKET_PR_ID; no earlier summary, so one is added.
    pr.repo.git(&["remote", "set-url", "upstream", "git@bitbucket.org:team-ws/shop.git"]);
    let host = FakeHost::start();
    let comments = "/repositories/team-ws/shop/pullrequests/7/comments";
    host.on("GET", "/user", Reply::json(200, r#"{"display_name":"CI Bot"}"#));
    host.on(
        "GET",
        comments,
        Reply::json(
            200,
            json!({"values": [
                {"id": 1, "content": {"raw": "<!-- marginalia-check --> inline, not ours"}, "inline": {"path": "a.py", "to": 3}, "user": {"display_name": "CI Bot"}},
                {"id": 2, "content": {"raw": "Looks good"}, "user": {"display_name": "Ann"}},
            ], "pagelen": 100, "size": 2, "page": 1})
            .to_string(),
        ),
    );
    host.on("POST", comments, Reply::json(201, r#"{"id":3,"content":{"raw":"x"},"user":{"display_name":"CI Bot"},"links":{"html":{"href":"https://bitbucket.org/team-ws/shop/pull-requests/7#comment-3"}}}"#));
    let env =
        [("MARGINALIA_BITBUCKET_API", host.base.as_str()), ("BITBUCKET_TOKEN", "bbtoken"), ("BITBUCKET_PR_ID", "7")];
    let out = run(
        pr.repo.path(),
        pr.data.path(),
        &env,
        &["check", "--base", "main", "--head", "feature", "--source", "local", "--post"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("posted the summary on bitbucket:team-ws/shop#7 (from BITBUCKET_PR_ID) as comment 3: https://bitbucket.org/team-ws/shop/pull-requests/7#comment-3"),
        "{}",
        stderr(&out)
    );
    let post = &host.requests_to("POST", comments)[0];
    let sent = post.json();
    assert_eq!(
        sent.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["content"],
        "no `inline`: a comment on the whole pull request"
    );
    assert!(sent["content"]["raw"].as_str().unwrap().starts_with("<!-- marginalia-check -->"));
}
