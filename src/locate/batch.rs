//! The stable JSON Lines interface of `marginalia locate --batch` (DESIGN.md).
//!
//! ```text
//! in:  {"id":"a1","commit":"<hex>","path":"src/x.rs","start":10,"end":14,"text":"optional"}
//! out: {"id":"a1","status":"intact|modified|deleted","path":"src/y.rs","start":12,"end":16}
//!      {"id":"a1","status":"unknown","reason":"..."}        the case cannot be located
//!      {"id":"a1","line":3,"status":"error","reason":"..."}  the input line is malformed
//! ```
//!
//! One answer per case, in input order; blank lines are not cases. Optional input fields
//! beyond DESIGN.md: `before` and `after` (arrays of context lines) help tell copies apart
//! when the commit is missing. One bad line never stops the batch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::path::Path;

use super::{Located, Locator};
use crate::anchor::{Anchor, LineRange, Via};
use crate::git::{Repo, Target};

#[derive(Deserialize)]
struct CaseIn {
    #[serde(default)]
    id: Value,
    commit: String,
    path: String,
    start: u32,
    end: u32,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    before: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
}

/// A parsed input line.
#[derive(Clone, Debug)]
pub struct Case {
    pub id: Value,
    pub anchor: Anchor,
}

/// A malformed input line: its id when one could be read, and what is wrong.
#[derive(Clone, Debug)]
pub struct BadCase {
    pub id: Value,
    pub reason: String,
}

/// Parses one input line.
pub fn parse_case(line: &str) -> Result<Case, BadCase> {
    let id_of = || serde_json::from_str::<Value>(line).ok().and_then(|v| v.get("id").cloned()).unwrap_or(Value::Null);
    let c: CaseIn = serde_json::from_str(line).map_err(|e| BadCase { id: id_of(), reason: json_reason(&e) })?;
    let bad = |reason: String| BadCase { id: c.id.clone(), reason };
    check_path(&c.path).map_err(&bad)?;
    if c.start == 0 || c.end < c.start {
        return Err(bad(format!(
            "`start` {} and `end` {} are not a line range: lines are 1-based and `end` is not before `start`",
            c.start, c.end
        )));
    }
    Ok(Case {
        id: c.id.clone(),
        anchor: Anchor {
            commit: c.commit,
            path: c.path,
            lines: LineRange::new(c.start, c.end),
            text: c.text,
            before: c.before,
            after: c.after,
        },
    })
}

fn json_reason(e: &serde_json::Error) -> String {
    // serde's messages already name the field ("missing field `commit`", "invalid type:
    // string \"x\", expected u32"); the column helps find it in a long line.
    let what = e.to_string();
    let what = what.split(" at line ").next().unwrap_or_default();
    match e.classify() {
        serde_json::error::Category::Data => format!("{what} (column {})", e.column()),
        _ => format!("not a JSON object: {what} at column {}", e.column()),
    }
}

/// A path must name a file inside the repository: relative, `/`-separated, no `..`.
pub fn check_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`path` {path:?} {why}"));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.starts_with('/') || path.contains('\0') || path.contains('\\') {
        return bad("must be relative to the repository root, with `/` between folders");
    }
    if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("must not contain empty, `.` or `..` parts");
    }
    Ok(())
}

/// One output line.
#[derive(Serialize, Debug, PartialEq)]
pub struct Answer {
    pub id: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How it was found (`diff`, `search`, `text`); only with `--explain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
}

/// Locates one case; a panic in the engine (a bug) answers this case `unknown` and the batch
/// goes on.
fn locate_one(locator: &Locator<'_>, case: &Case, explain: bool) -> Answer {
    let anchor = &case.anchor;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| locator.locate(anchor))) {
        Ok(located) => Answer::located(case.id.clone(), located, explain),
        Err(_) => Answer::unknown(
            case.id.clone(),
            "internal error while locating this case (a bug in marginalia: please report it with the case)".into(),
        ),
    }
}

impl Answer {
    pub fn located(id: Value, located: Located, explain: bool) -> Answer {
        match located {
            Located::Found(r) => Answer {
                id,
                line: None,
                status: r.status.as_str(),
                path: Some(r.path),
                start: Some(r.lines.start),
                end: Some(r.lines.end),
                reason: None,
                via: explain.then_some(match r.via {
                    Via::Diff => "diff",
                    Via::Search => "search",
                    Via::Text => "text",
                }),
            },
            Located::Unknown(reason) => Answer::unknown(id, reason),
        }
    }

    pub fn unknown(id: Value, reason: String) -> Answer {
        Answer {
            id,
            line: None,
            status: "unknown",
            path: None,
            start: None,
            end: None,
            reason: Some(reason),
            via: None,
        }
    }

    pub fn error(line: usize, bad: BadCase) -> Answer {
        Answer {
            id: bad.id,
            line: Some(line),
            status: "error",
            path: None,
            start: None,
            end: None,
            reason: Some(bad.reason),
            via: None,
        }
    }
}

/// A batch parsed: one slot per non-blank input line, the malformed ones already answered.
struct Parsed {
    answers: Vec<Option<Answer>>,
    cases: Vec<(usize, Case)>,
}

fn parse_all(lines: &[String]) -> Parsed {
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(lines.len());
    let mut cases: Vec<(usize, Case)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_case(line) {
            Ok(case) => {
                cases.push((answers.len(), case));
                answers.push(None);
            }
            Err(bad) => answers.push(Some(Answer::error(i + 1, bad))),
        }
    }
    Parsed { answers, cases }
}

/// By path, then commit: successive versions of one file share git's delta bases and our
/// line maps.
fn sort_for_locality(cases: &mut [(usize, Case)]) {
    cases.sort_by(|(_, a), (_, b)| (&a.anchor.path, &a.anchor.commit).cmp(&(&b.anchor.path, &b.anchor.commit)));
}

/// Answers every line of a batch with one locator, in input order. `tick` is called once per
/// case answered (for a progress bar).
pub fn answer_all(lines: &[String], locator: &Locator<'_>, explain: bool, tick: &dyn Fn()) -> Vec<Answer> {
    let Parsed { mut answers, mut cases } = parse_all(lines);
    sort_for_locality(&mut cases);
    locator.prepare(cases.iter().map(|(_, c)| c.anchor.commit.as_str()));
    for (slot, case) in cases {
        answers[slot] = Some(locate_one(locator, &case, explain));
        tick();
    }
    answers.into_iter().flatten().collect()
}

/// Answers a batch on `threads` threads, each with its own handle on the repository at `dir`
/// (git2 handles are not shared between threads). The cases of one file stay together (its
/// versions, reads and diffs are shared by them); files are handed out in path order (git's
/// delta cache holds the bases of neighbouring files) to whichever thread is free.
pub fn answer_all_parallel(
    lines: &[String],
    dir: &Path,
    target: Target,
    threads: usize,
    explain: bool,
    tick: &(dyn Fn() + Sync),
) -> Vec<Answer> {
    let Parsed { mut answers, mut cases } = parse_all(lines);
    let threads = threads.clamp(1, cases.len().max(1));
    sort_for_locality(&mut cases);
    let mut files: Vec<Vec<(usize, Case)>> = Vec::new();
    for (slot, case) in cases {
        match files.last_mut() {
            Some(group) if group[0].1.anchor.path == case.anchor.path => group.push((slot, case)),
            _ => files.push(vec![(slot, case)]),
        }
    }
    let commits: Vec<&str> = files.iter().flatten().map(|(_, c)| c.anchor.commit.as_str()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: Vec<Vec<(usize, Answer)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (files, next, commits) = (&files, &next, &commits);
                scope.spawn(move || {
                    let repo = match Repo::discover(dir) {
                        Ok(repo) => repo,
                        Err(e) => {
                            let why = e.to_string();
                            let mut out = Vec::new();
                            while let Some(group) = files.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                                out.extend(
                                    group.iter().map(|(slot, c)| (*slot, Answer::unknown(c.id.clone(), why.clone()))),
                                );
                            }
                            return out;
                        }
                    };
                    let locator = Locator::new(&repo, target);
                    locator.prepare(commits.iter().copied());
                    let mut out = Vec::new();
                    while let Some(group) = files.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                        for (slot, case) in group {
                            out.push((*slot, locate_one(&locator, case, explain)));
                            tick();
                        }
                    }
                    tracing::debug!(
                        cases = out.len(),
                        blob_reads = repo.blob_reads(),
                        diffs = locator.diffs_computed(),
                        "locate worker done"
                    );
                    out
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a locate worker panicked")).collect()
    });
    for (slot, answer) in done.into_iter().flatten() {
        answers[slot] = Some(answer);
    }
    answers.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(line: &str) -> String {
        parse_case(line).unwrap_err().reason
    }

    #[test]
    fn malformed_lines_name_the_problem() {
        assert_eq!(reason("not json"), "not a JSON object: expected ident at column 2");
        assert!(reason(r#"{"commit":"ab12","#).starts_with("not a JSON object: EOF"));
        assert!(reason(r#"{"id":"a","path":"x","start":1,"end":2}"#).contains("missing field `commit`"));
        assert!(
            reason(r#"{"commit":"ab12","path":"x","start":"1","end":2}"#)
                .contains("invalid type: string \"1\", expected u32")
        );
        assert!(reason(r#"{"commit":"ab12","path":"x","start":0,"end":2}"#).contains("1-based"));
        assert!(reason(r#"{"commit":"ab12","path":"x","start":5,"end":2}"#).contains("not before"));
        assert!(reason(r#"{"commit":"ab12","path":"../etc/passwd","start":1,"end":1}"#).contains("`..`"));
        assert!(reason(r#"{"commit":"ab12","path":"/etc/passwd","start":1,"end":1}"#).contains("relative"));
    }

    #[test]
    fn the_id_is_kept_even_when_the_rest_is_wrong() {
        let bad = parse_case(r#"{"id":"a7","commit":"ab12","path":"x","start":1}"#).unwrap_err();
        assert_eq!(bad.id, Value::from("a7"));
        let bad = parse_case(r#"{"id":7,"commit":12}"#).unwrap_err();
        assert_eq!(bad.id, Value::from(7));
    }

    #[test]
    fn answers_serialize_with_the_stable_field_names() {
        let a = Answer::unknown(Value::from("a1"), "why".into());
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"id":"a1","status":"unknown","reason":"why"}"#);
        let e = Answer::error(3, BadCase { id: Value::Null, reason: "bad".into() });
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"id":null,"line":3,"status":"error","reason":"bad"}"#);
    }
}
