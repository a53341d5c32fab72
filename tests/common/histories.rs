//! Real histories for the `histories` benchmark and test: the case sets of `fixtures/histories/`
//! (anchors sampled from public projects, with the truth git blame gives), their bundles cloned
//! into bare repositories, and the evaluation's scoring rules in Rust. `judge.py`'s verdicts
//! (right / wrong place / lost, with its adjudication and the hand verdicts of `verdicts.jsonl`)
//! and `score.py`'s status accuracy, exact range and renamed-path figures, ported rule for rule:
//! the same answers get the same counts. fixtures/histories/README.md says what the truth is and
//! where it is known to be wrong.
//!
//! The repository is read with the git command line (`git cat-file --batch`, `git grep`), as the
//! Python harness does, never through the code under test.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;

use serde_json::{Value, json};
use tempfile::TempDir;

/// Every case set, forward then backward for each history.
pub const SETS: [&str; 8] =
    ["cobra", "cobra-back", "click", "click-back", "serde", "serde-back", "express", "express-back"];

/// `fixtures/histories/` in this repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/histories")
}

/// The `marginalia` to run: the one cargo built, or `HISTORIES_BIN` (another build, to compare).
pub fn marginalia_bin() -> PathBuf {
    std::env::var_os("HISTORIES_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_marginalia")), PathBuf::from)
}

/// The history a case set was sampled from: `serde-back` from `serde`.
pub fn history_of(set: &str) -> &str {
    set.strip_suffix("-back").unwrap_or(set)
}

/// A git command with no user or system configuration, so every machine runs the same git.
pub fn git_command(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir).env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_CONFIG_NOSYSTEM", "1");
    c
}

/// Clones a bundle into a new temp dir as a bare repository.
pub fn clone_bundle(bundle: &Path) -> TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = git_command(Path::new("."))
        .args(["clone", "-q", "--bare"])
        .arg(bundle)
        .arg(dir.path())
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git clone {}: {}", bundle.display(), String::from_utf8_lossy(&out.stderr));
    dir
}

/// Whether `rev` names a commit in the repository at `dir`.
pub fn has_commit(dir: &Path, rev: &str) -> bool {
    git_command(dir)
        .args(["cat-file", "-e", &format!("{rev}^{{commit}}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------- the cases, their truth, answers and hand verdicts ----------

/// One anchor: lines `start..=end` of `path` at `commit`.
#[derive(Clone, Debug)]
pub struct Case {
    pub id: String,
    pub commit: String,
    pub path: String,
    pub start: i64,
    pub end: i64,
}

/// Where blame says the anchored lines are at the target (`truth.jsonl`). `survivors` has one
/// entry per anchored line: its line at the target, if it survives there.
#[derive(Clone, Debug)]
pub struct Truth {
    pub id: String,
    pub status: String,
    pub path: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub survivors: Vec<Option<i64>>,
    /// The other file most of the lines moved to, by blame: (path, survivors there).
    pub elsewhere: Option<(String, Vec<Option<i64>>)>,
}

/// One case set: the cases, their truth (in the truth file's order, which the judge follows) and
/// the target commit.
#[derive(Clone, Debug)]
pub struct CaseSet {
    pub name: String,
    pub to: String,
    pub cases: Vec<Case>,
    pub truth: Vec<Truth>,
}

fn jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn lines_of(v: &Value) -> Vec<Option<i64>> {
    v.as_array().map(|a| a.iter().map(Value::as_i64).collect()).unwrap_or_default()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

impl CaseSet {
    /// Reads `fixtures/histories/<name>/`.
    pub fn load(name: &str) -> CaseSet {
        let dir = fixtures().join(name);
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json"))
                .expect("manifest.json is JSON");
        let cases = jsonl(&dir.join("cases.jsonl"))
            .iter()
            .map(|c| Case {
                id: text(&c["id"]).expect("a case id"),
                commit: text(&c["commit"]).expect("a case commit"),
                path: text(&c["path"]).expect("a case path"),
                start: c["start"].as_i64().expect("a case start"),
                end: c["end"].as_i64().expect("a case end"),
            })
            .collect();
        let truth = jsonl(&dir.join("truth.jsonl"))
            .iter()
            .map(|t| Truth {
                id: text(&t["id"]).expect("a truth id"),
                status: text(&t["status"]).expect("a truth status"),
                path: text(&t["path"]),
                start: t["start"].as_i64(),
                end: t["end"].as_i64(),
                survivors: lines_of(&t["survivors"]),
                elsewhere: t["elsewhere"]
                    .as_object()
                    .map(|e| (text(&e["path"]).unwrap_or_default(), lines_of(&e["survivors"]))),
            })
            .collect();
        CaseSet { name: name.to_owned(), to: text(&manifest["to"]).expect("manifest \"to\""), cases, truth }
    }

    /// The same set reduced to the cases `keep` accepts (by their index in the case file).
    pub fn subset(&self, keep: impl Fn(usize) -> bool) -> CaseSet {
        let cases: Vec<Case> =
            self.cases.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, c)| c.clone()).collect();
        let ids: std::collections::HashSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        let truth = self.truth.iter().filter(|t| ids.contains(t.id.as_str())).cloned().collect();
        CaseSet { name: self.name.clone(), to: self.to.clone(), cases, truth }
    }

    /// The cases as `marginalia locate --batch` input.
    pub fn batch(&self) -> String {
        self.cases
            .iter()
            .map(|c| {
                format!("{}\n", json!({"id": c.id, "commit": c.commit, "path": c.path, "start": c.start, "end": c.end}))
            })
            .collect()
    }
}

/// One answer line of `marginalia locate` (or of the plain baseline). Absent and `null` fields
/// are `None`, as Python's `p.get(...)` sees them.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    pub status: Option<String>,
    pub path: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl Answer {
    /// The answer as a hand verdict names it: `status|path|start|end`, Python's `None` for what
    /// is missing.
    pub fn key(&self) -> String {
        let n = |v: &Option<i64>| v.map_or("None".to_owned(), |x| x.to_string());
        format!(
            "{}|{}|{}|{}",
            self.status.as_deref().unwrap_or("None"),
            self.path.as_deref().unwrap_or("None"),
            n(&self.start),
            n(&self.end)
        )
    }

    fn is(&self, status: &str) -> bool {
        self.status.as_deref() == Some(status)
    }
}

/// Answers by case id from JSON Lines output; lines that are not JSON objects are skipped, and
/// the last answer for an id wins (as in judge.py; `locate` prints one per id).
pub fn parse_answers(out: &str) -> HashMap<String, Answer> {
    let mut answers = HashMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let id = match &v["id"] {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        let answer = Answer {
            status: text(&v["status"]),
            path: text(&v["path"]),
            start: v["start"].as_i64(),
            end: v["end"].as_i64(),
        };
        answers.insert(id, answer);
    }
    answers
}

/// Hand verdicts (`verdicts.jsonl`) for one case set: (case id, answer key) to verdict. A verdict
/// with no `history` applies to every set; a later line overrides an earlier one.
pub struct Verdicts(HashMap<(String, String), String>);

impl Verdicts {
    pub fn load(path: &Path, set: &str) -> Verdicts {
        let mut map = HashMap::new();
        for v in jsonl(path) {
            if v.get("history").is_none_or(|h| h.is_null() || h.as_str() == Some(set)) {
                let (id, answer, verdict) = (text(&v["id"]), text(&v["answer"]), text(&v["verdict"]));
                map.insert((id.expect("a verdict id"), answer.expect("a verdict answer")), verdict.expect("a verdict"));
            }
        }
        Verdicts(map)
    }

    pub fn none() -> Verdicts {
        Verdicts(HashMap::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

// ---------- reading the repository ----------

/// File texts and fixed-string searches in one repository, through the git command line: one
/// long-lived `git cat-file --batch` for blobs, cached.
pub struct Blobs {
    dir: PathBuf,
    cat: RefCell<Option<(Child, BufReader<std::process::ChildStdout>)>>,
    cache: RefCell<HashMap<String, Option<Rc<[String]>>>>,
    occurrences: RefCell<HashMap<Vec<String>, usize>>,
}

impl Drop for Blobs {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.cat.get_mut().take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Blobs {
    pub fn new(dir: &Path) -> Blobs {
        Blobs {
            dir: dir.to_owned(),
            cat: RefCell::new(None),
            cache: RefCell::new(HashMap::new()),
            occurrences: RefCell::new(HashMap::new()),
        }
    }

    /// The lines of `rev:path` (judge.py's `blob`: `git show`, decoded lossily, split on `\n`,
    /// without the empty string after a final newline), or `None` when it is not a file there.
    pub fn lines(&self, rev: &str, path: &str) -> Option<Rc<[String]>> {
        let spec = format!("{rev}:{path}");
        if let Some(hit) = self.cache.borrow().get(&spec) {
            return hit.clone();
        }
        let lines = self.read(&spec).map(|bytes| {
            let text = String::from_utf8_lossy(&bytes);
            let mut parts: Vec<String> = text.split('\n').map(str::to_owned).collect();
            if parts.last().is_some_and(String::is_empty) {
                parts.pop();
            }
            Rc::from(parts)
        });
        self.cache.borrow_mut().insert(spec, lines.clone());
        lines
    }

    fn read(&self, spec: &str) -> Option<Vec<u8>> {
        if spec.contains('\n') {
            return None;
        }
        let mut cat = self.cat.borrow_mut();
        let (child, out) = cat.get_or_insert_with(|| {
            let mut child = git_command(&self.dir)
                .args(["cat-file", "--batch"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("git cat-file runs");
            let out = BufReader::new(child.stdout.take().unwrap());
            (child, out)
        });
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{spec}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
        let mut header = String::new();
        out.read_line(&mut header).unwrap();
        // "<sha> <type> <size>", or "<spec> missing" (the spec may hold spaces): no size.
        let parts: Vec<&str> = header.trim_end().split(' ').collect();
        let [_, kind, size] = parts.as_slice() else { return None };
        let size: usize = size.parse().ok()?;
        let mut data = vec![0; size];
        out.read_exact(&mut data).unwrap();
        let mut newline = [0u8];
        out.read_exact(&mut newline).unwrap();
        (*kind == "blob").then_some(data)
    }

    /// judge.py's `occurrences`: how many times `block` appears, line for line, in the tree of
    /// `to`, found from its longest line with `git grep -F`.
    fn occurrences(&self, to: &str, block: &[String]) -> usize {
        if let Some(&n) = self.occurrences.borrow().get(block) {
            return n;
        }
        let mut key = 0;
        for (k, l) in block.iter().enumerate() {
            if py_strip(l).chars().count() > py_strip(&block[key]).chars().count() {
                key = k;
            }
        }
        let out = git_command(&self.dir)
            .args(["grep", "-F", "-n", "-I", "--no-color", "-e", &block[key], to])
            .output()
            .expect("git grep runs");
        let out = if out.status.success() { String::from_utf8_lossy(&out.stdout).into_owned() } else { String::new() };
        let prefix = format!("{to}:");
        let mut n = 0;
        for row in py_splitlines(&out) {
            let Some(rest) = row.strip_prefix(&prefix) else { continue };
            let Some((path, line)) = grep_location(rest) else { continue };
            let Some(file) = self.lines(to, path) else { continue };
            let start = line - key as i64;
            if !file.is_empty() && start >= 1 && py_slice(&file, start - 1, start - 1 + block.len() as i64) == block {
                n += 1;
            }
        }
        self.occurrences.borrow_mut().insert(block.to_vec(), n);
        n
    }
}

/// `(.*?):(\d+):` at the start of a `git grep -n` row after the revision: the path and line.
fn grep_location(rest: &str) -> Option<(&str, i64)> {
    for (i, _) in rest.match_indices(':') {
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after.as_bytes().get(digits) == Some(&b':') {
            return Some((&rest[..i], after[..digits].parse().ok()?));
        }
    }
    None
}

// ---------- Python's string semantics, where the rules depend on them ----------

/// Python's `str.isspace` for one character: Unicode whitespace and the four separators
/// U+001C..U+001F, which Rust does not count.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// Python's `str.splitlines()`.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(
            c,
            '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        ) {
            out.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, d)| d == '\n') {
                chars.next();
                next += 1;
            }
            start = next;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Python's `v[a:b]` for a step of one.
fn py_slice<T>(v: &[T], a: i64, b: i64) -> &[T] {
    let n = v.len() as i64;
    let at = |i: i64| if i < 0 { (i + n).max(0) } else { i.min(n) };
    let (a, b) = (at(a), at(b));
    if a >= b { &[] } else { &v[a as usize..b as usize] }
}

/// The anchored lines at C: `old[case.start - 1 : case.end]`.
fn anchored<'a>(old: &'a [String], case: &Case) -> &'a [String] {
    py_slice(old, case.start - 1, case.end)
}

fn alnum(l: &str) -> usize {
    l.bytes().filter(u8::is_ascii_alphanumeric).count()
}

/// A line that says something: three ASCII letters or digits.
fn meaningful_line(l: &str) -> bool {
    alnum(l) >= 3
}

/// No letter, digit or non-ASCII character: `}`, a blank line.
fn trivial(line: &str) -> bool {
    !line.chars().any(|c| c.is_ascii_alphanumeric() || c as u32 >= 0x80)
}

/// The line without whitespace, single quotes as double quotes.
fn squash(l: &str) -> String {
    l.chars().filter(|&c| !py_space(c)).map(|c| if c == '\'' { '"' } else { c }).collect()
}

/// The squashed line's character pairs, sorted (a multiset).
fn bigrams(l: &str) -> Vec<(char, char)> {
    let chars: Vec<char> = squash(l).chars().collect();
    let mut pairs: Vec<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
    pairs.sort_unstable();
    pairs
}

/// Shared pairs of two sorted multisets.
fn common(x: &[(char, char)], y: &[(char, char)]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < x.len() && j < y.len() {
        match x[i].cmp(&y[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// judge.py's `alike`: 60% of the character pairs in common (Dice), or equal when too short to
/// have pairs.
fn alike(a: &str, x: &[(char, char)], b: &str, y: &[(char, char)]) -> bool {
    if x.is_empty() || y.is_empty() {
        return py_strip(a) == py_strip(b);
    }
    let total = (x.len() + y.len()) as f64;
    // Shared pairs are at most the shorter list: skip the count when even that falls short (the
    // same float comparison, so the same answer).
    if 2.0 * x.len().min(y.len()) as f64 / total < 0.6 {
        return false;
    }
    2.0 * common(x, y) as f64 / total >= 0.6
}

// ---------- the judge ----------

/// How one answer is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Right,
    Wrong,
    Lost,
    /// Not intact, modified or deleted: `unknown`, an error, no answer.
    Unknown,
}

impl Verdict {
    fn parse(s: &str) -> Verdict {
        match s {
            "right" => Verdict::Right,
            "wrong" => Verdict::Wrong,
            "lost" => Verdict::Lost,
            _ => Verdict::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Right => "right",
            Verdict::Wrong => "wrong",
            Verdict::Lost => "lost",
            Verdict::Unknown => "unknown",
        }
    }
}

/// The figures for one set of answers.
#[derive(Clone, Debug, Default)]
pub struct Score {
    pub n: usize,
    pub right: usize,
    pub wrong: usize,
    pub lost: usize,
    pub unknown: usize,
    /// Wrong by the truth, right by an adjudication rule.
    pub adjudicated: usize,
    /// Wrong or lost with no hand verdict for that exact answer.
    pub unjudged_wrong: usize,
    pub unjudged_lost: usize,
    /// score.py: answers whose status is the truth's.
    pub status_ok: usize,
    /// score.py: cases whose lines survive (the truth is not `deleted`), and the answers there
    /// at exactly the truth's range in the truth's file.
    pub n_loc: usize,
    pub exact: usize,
    /// score.py: surviving cases whose file was renamed, and answers naming the new path.
    pub n_renamed: usize,
    pub path_ok: usize,
    /// One line per wrong or lost case (by the final verdict or, unjudged, by the rules).
    pub listed: Vec<String>,
}

impl Score {
    pub fn pct(&self, count: usize) -> f64 {
        if self.n == 0 { 0.0 } else { 100.0 * count as f64 / self.n as f64 }
    }

    /// judge.py's summary line.
    pub fn judge_line(&self, name: &str) -> String {
        format!(
            "{name}: n={} right={:.2}% wrong={:.2}% ({}) lost={:.2}% ({}) unknown={} adjudicated={} unjudged wrong={} lost={}",
            self.n,
            self.pct(self.right),
            self.pct(self.wrong),
            self.wrong,
            self.pct(self.lost),
            self.lost,
            self.unknown,
            self.adjudicated,
            self.unjudged_wrong,
            self.unjudged_lost
        )
    }
}

/// Scores `answers` to `set`'s cases: judge.py's verdicts and score.py's figures.
pub fn score(set: &CaseSet, answers: &HashMap<String, Answer>, blobs: &Blobs, verdicts: &Verdicts) -> Score {
    let cases: HashMap<&str, &Case> = set.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let judge = Judge { blobs, to: &set.to };
    let missing = Answer { status: Some("missing".into()), ..Answer::default() };
    let mut s = Score { n: set.truth.len(), ..Score::default() };
    for t in &set.truth {
        let case = cases[t.id.as_str()];
        let p = answers.get(&t.id).unwrap_or(&missing);
        let mut got = judge.auto(t, p, case);
        if got == Verdict::Wrong && judge.adjudicated(case, t, p) {
            got = Verdict::Right;
            s.adjudicated += 1;
        }
        let hand = verdicts.0.get(&(t.id.clone(), p.key()));
        let last = hand.map_or(got, |v| Verdict::parse(v));
        if hand.is_none() {
            s.unjudged_wrong += (got == Verdict::Wrong) as usize;
            s.unjudged_lost += (got == Verdict::Lost) as usize;
        }
        match last {
            Verdict::Right => s.right += 1,
            Verdict::Wrong => s.wrong += 1,
            Verdict::Lost => s.lost += 1,
            Verdict::Unknown => s.unknown += 1,
        }
        if matches!(last, Verdict::Wrong | Verdict::Lost)
            || (hand.is_none() && matches!(got, Verdict::Wrong | Verdict::Lost))
        {
            s.listed.push(format!(
                "{} auto={} final={} truth={} {}:{}-{} pred={}",
                t.id,
                got.as_str(),
                last.as_str(),
                t.status,
                t.path.as_deref().unwrap_or("None"),
                t.start.map_or("None".into(), |x| x.to_string()),
                t.end.map_or("None".into(), |x| x.to_string()),
                p.key()
            ));
        }
        harness_figures(&mut s, case, t, answers.get(&t.id));
    }
    s
}

/// score.py's figures for one case: an invalid or missing answer is wrong on each.
fn harness_figures(s: &mut Score, case: &Case, t: &Truth, p: Option<&Answer>) {
    let valid = p.filter(|p| valid(p));
    s.status_ok += valid.is_some_and(|p| p.status.as_deref() == Some(t.status.as_str())) as usize;
    if t.status == "deleted" {
        return;
    }
    s.n_loc += 1;
    if let Some(p) = valid.filter(|p| !p.is("deleted") && p.path == t.path) {
        s.exact += ((p.start, p.end) == (t.start, t.end)) as usize;
    }
    if t.path.as_deref() != Some(case.path.as_str()) {
        s.n_renamed += 1;
        s.path_ok += valid.is_some_and(|p| p.path == t.path) as usize;
    }
}

/// score.py's `validate`: a known status, and for code a path and `1 <= start <= end`.
fn valid(p: &Answer) -> bool {
    let range = matches!((p.start, p.end), (Some(s), Some(e)) if 1 <= s && s <= e);
    match p.status.as_deref() {
        Some("deleted") => (p.start.is_none() && p.end.is_none()) || range,
        Some("intact" | "modified") => p.path.as_deref().is_some_and(|x| !x.is_empty()) && range,
        _ => false,
    }
}

/// judge.py's rules against one repository and target.
struct Judge<'a> {
    blobs: &'a Blobs,
    to: &'a str,
}

impl Judge<'_> {
    /// The anchored file at C (`None` when missing or empty, as Python's `not old`).
    fn old(&self, case: &Case) -> Option<Rc<[String]>> {
        self.blobs.lines(&case.commit, &case.path).filter(|l| !l.is_empty())
    }

    /// The answer's file at the target.
    fn answered(&self, p: &Answer) -> Option<Rc<[String]>> {
        self.blobs.lines(self.to, p.path.as_deref()?).filter(|l| !l.is_empty())
    }

    /// By the truth. An answer pointing at code is right when it covers a surviving line that is
    /// not trivial; `deleted` is lost only when a line that identifies code survives (not trivial,
    /// not found 3 times in the file).
    fn auto(&self, t: &Truth, p: &Answer, case: &Case) -> Verdict {
        if !(p.is("intact") || p.is("modified") || p.is("deleted")) {
            return Verdict::Unknown;
        }
        let surv: Vec<Option<i64>> = if t.status != "deleted" { t.survivors.clone() } else { Vec::new() };
        let (mut weak, mut strong) = (surv.clone(), surv.clone());
        if !surv.is_empty() {
            let old = self.old(case);
            let lines: &[String] = old.as_deref().map_or(&[], |o| anchored(o, case));
            if lines.iter().any(|l| !trivial(l)) {
                let keep = |k: usize, x: Option<i64>, also: &dyn Fn(&str) -> bool| {
                    x.filter(|_| lines.get(k).is_some_and(|l| !trivial(l) && also(l)))
                };
                weak = surv.iter().enumerate().map(|(k, &x)| keep(k, x, &|_| true)).collect();
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for l in old.as_deref().unwrap_or(&[]) {
                    *counts.entry(py_strip(l)).or_default() += 1;
                }
                let rare = |l: &str| counts.get(py_strip(l)).copied().unwrap_or(0) < 3;
                if lines.iter().any(|l| !trivial(l) && rare(l)) {
                    strong = surv.iter().enumerate().map(|(k, &x)| keep(k, x, &rare)).collect();
                } else {
                    strong = weak.clone();
                }
            }
        }
        if p.is("deleted") {
            return if strong.iter().any(Option::is_some) { Verdict::Lost } else { Verdict::Right };
        }
        if !weak.iter().any(Option::is_some) || p.path != t.path {
            return Verdict::Wrong;
        }
        let (Some(s), Some(e)) = (p.start, p.end) else { return Verdict::Wrong };
        if weak.iter().flatten().any(|&x| s <= x && x <= e) { Verdict::Right } else { Verdict::Wrong }
    }

    /// Right although blame disagrees: the answer sits on the lines blame found in another file
    /// ("elsewhere"), or holds the anchored code (as is or edited) better than any other stretch
    /// of its file, or is the anchored text byte for byte, meaningful and unique at the target.
    fn adjudicated(&self, case: &Case, t: &Truth, p: &Answer) -> bool {
        if let (Some((path, survivors)), Some(s), Some(e)) = (&t.elsewhere, p.start, p.end)
            && p.path.as_deref() == Some(path.as_str())
            && survivors.iter().flatten().any(|&x| s <= x && x <= e)
        {
            return true;
        }
        if self.content_agrees(case, p) || self.resembles(case, p) {
            return true;
        }
        if !p.is("intact") {
            return false;
        }
        let (Some(old), Some(new), Some(s), Some(e)) = (self.old(case), self.answered(p), p.start, p.end) else {
            return false;
        };
        let block = anchored(&old, case);
        if py_slice(&new, s - 1, e) != block || block.iter().filter(|l| meaningful_line(l)).count() < 2 {
            return false;
        }
        self.blobs.occurrences(self.to, block) == 1
    }

    /// The answer holds at least half of the anchored meaningful lines (equal up to whitespace),
    /// and no other stretch of that file holds as many.
    fn content_agrees(&self, case: &Case, p: &Answer) -> bool {
        let (Some(old), Some(new), Some(start), Some(end)) = (self.old(case), self.answered(p), p.start, p.end) else {
            return false;
        };
        // Squashed lines as numbers, so the sliding count compares integers.
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut id = |l: &str| {
            let next = ids.len();
            *ids.entry(squash(l)).or_insert(next)
        };
        let want: Vec<usize> = anchored(&old, case).iter().filter(|l| meaningful_line(l)).map(|l| id(l)).collect();
        if want.is_empty() {
            return false;
        }
        let sq: Vec<usize> = new.iter().map(|l| id(l)).collect();
        let count = |a: i64, b: i64| {
            let mut have: Vec<Option<usize>> = py_slice(&sq, a, b).iter().copied().map(Some).collect();
            let mut n = 0;
            for w in &want {
                if let Some(slot) = have.iter_mut().find(|h| **h == Some(*w)) {
                    *slot = None;
                    n += 1;
                }
            }
            n
        };
        let (s, e) = (start - 1, end);
        let got = count(s, e);
        if 2 * got < want.len() || got < 1 {
            return false;
        }
        let width = (e - s).max(want.len() as i64);
        for a in 0..(sq.len() as i64 - width + 1).max(1) {
            if (a + width <= s || a >= e) && count(a, a + width) >= got {
                return false;
            }
        }
        true
    }

    /// The anchored code, edited: at least half of its meaningful lines have a look-alike (60% of
    /// character pairs) in the answer, and no other stretch of that file has as many.
    fn resembles(&self, case: &Case, p: &Answer) -> bool {
        let (Some(old), Some(new), Some(start), Some(end)) = (self.old(case), self.answered(p), p.start, p.end) else {
            return false;
        };
        let want: Vec<&String> = anchored(&old, case).iter().filter(|l| meaningful_line(l)).collect();
        if want.is_empty() {
            return false;
        }
        let want_pairs: Vec<Vec<(char, char)>> = want.iter().map(|l| bigrams(l)).collect();
        let new_pairs: Vec<Vec<(char, char)>> = new.iter().map(|l| bigrams(l)).collect();
        // like[w][r]: anchored line w has a look-alike at line r of the answer's file.
        let like: Vec<Vec<bool>> = want
            .iter()
            .zip(&want_pairs)
            .map(|(w, x)| new.iter().zip(&new_pairs).map(|(r, y)| alike(w, x, r, y)).collect())
            .collect();
        let count = |a: i64, b: i64| {
            let (a, b) = (a.max(0), b);
            like.iter().filter(|row| py_slice(row, a, b).iter().any(|&hit| hit)).count()
        };
        let (s, e) = (start - 1, end);
        let got = count(s, e);
        if 2 * got < want.len() {
            return false;
        }
        let width = (e - s).max(want.len() as i64);
        let step = (width / 2).max(1) as usize;
        for a in (0..(new.len() as i64 - width + 1).max(1)).step_by(step) {
            if (a + width <= s || a >= e) && count(a, a + width) >= got {
                return false;
            }
        }
        true
    }
}
