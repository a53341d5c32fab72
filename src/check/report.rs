//! A check's report in the formats CI systems read: text for logs, JSON for programs, Markdown
//! for a pull request's summary comment, and SARIF 2.1.0 for GitHub code scanning. Pure
//! functions of a [`Report`]: no IO, the same input gives the same bytes.
//!
//! Every format says where the codemarks came from and how many were located from their
//! anchored text, and lists the deleted, modified, moved and unknown ones in the report's order
//! (category, then path, line and id); unchanged ones are counted.

use serde_json::{Value, json};

use super::post::MARKER;
use super::{Category, Checked, Place, Report, Source};
use crate::anchor::LineRange;

/// The tool's name and version, as SARIF and JSON carry them.
pub const TOOL: &str = "marginalia";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The SARIF schema the output follows (the OASIS standard, errata 01).
pub const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

fn at(path: &str, lines: LineRange) -> String {
    format!("{path}:{lines}")
}

fn place(p: &Place) -> String {
    at(&p.path, p.lines)
}

/// `main (1a2b3c4d5e6f)`, or `main (not in this clone)`.
fn rev(r: &super::Rev) -> String {
    match &r.commit {
        Some(c) => format!("{} ({})", r.rev, &c[..c.len().min(12)]),
        None => format!("{} (not in this clone)", r.rev),
    }
}

/// Where it was before the change: at the start, or (without one) where it was made.
fn was(c: &Checked) -> String {
    match &c.fate().base {
        Some(b) => place(b),
        None => {
            let a = &c.codemark.anchors[c.decisive].anchor;
            format!("{} as made", at(&a.path, a.lines))
        }
    }
}

fn counts_line(r: &Report) -> String {
    let mut parts: Vec<String> = Category::ALL.iter().map(|&c| format!("{} {c}", r.count(c))).collect();
    let gone = r.gone_at_base();
    if gone > 0 {
        parts.last_mut().expect("five categories").push_str(&format!(" ({gone} already gone at base)"));
    }
    parts.join(", ")
}

fn from_text_line(r: &Report) -> String {
    match r.from_text() {
        0 => "none located from their anchored text".to_owned(),
        1 => "1 located from its anchored text (its commit is not in this clone)".to_owned(),
        n => format!("{n} located from their anchored text (their commits are not in this clone)"),
    }
}

fn skipped_line(r: &Report) -> String {
    let s = &r.skipped;
    format!("left out: {} resolved, {} bookmarks, {} review comments", s.resolved, s.bookmarks, s.reviews)
}

/// For people reading a CI log.
pub fn text(r: &Report) -> String {
    let mut out = format!("marginalia check: {} -> {}", rev(&r.base), rev(&r.head));
    match &r.start {
        Some(s) if r.base.commit.as_deref() != Some(s.as_str()) => {
            out.push_str(&format!(", compared from their merge base {}", &s[..s.len().min(12)]))
        }
        _ => {}
    }
    out.push_str(&format!("\n{} open codemarks from {} ({})\n", r.checked.len(), r.source.describe(), skipped_line(r)));
    let listed: Vec<&Checked> = r.listed().collect();
    if !listed.is_empty() {
        out.push('\n');
    }
    for c in listed {
        let (path, lines) = c.shown_at();
        out.push_str(&format!(
            "{:<9} {}  {} \"{}\"  {}\n",
            c.category.as_str(),
            at(path, lines),
            c.codemark.kind,
            c.headline(),
            c.codemark.id
        ));
        match (&c.fate().reason, c.category) {
            (Some(why), _) => out.push_str(&format!("          could not be located: {why}\n")),
            (None, Category::Deleted) => out.push_str(&format!("          was {}; nothing of it is left\n", was(c))),
            (None, _) => out.push_str(&format!("          was {}\n", was(c))),
        }
        if let Some(link) = r.link(&c.codemark) {
            out.push_str(&format!("          {link}\n"));
        }
    }
    out.push_str(&format!("\n{}; {}\n", counts_line(r), from_text_line(r)));
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

fn place_json(p: &Place) -> Value {
    json!({ "path": p.path, "start": p.lines.start, "end": p.lines.end, "status": p.status.as_str() })
}

fn source_json(s: &Source) -> Value {
    match s {
        Source::Server { url } => json!({ "kind": "server", "server": url }),
        Source::Local { store } => json!({ "kind": "local", "store": store.display().to_string() }),
    }
}

/// For programs: everything listed, with both ends of the change. Stable field names.
pub fn json(r: &Report) -> Value {
    let codemarks: Vec<Value> = r
        .listed()
        .map(|c| {
            let f = c.fate();
            let a = &c.codemark.anchors[c.decisive].anchor;
            json!({
                "id": c.codemark.id,
                "category": c.category.as_str(),
                "kind": c.codemark.kind.as_str(),
                "title": c.codemark.title,
                "headline": c.headline(),
                "author": c.codemark.author,
                "link": r.link(&c.codemark),
                "head": f.head.as_ref().map(place_json),
                "base": f.base.as_ref().map(place_json),
                "anchor": { "commit": a.commit, "path": a.path, "start": a.lines.start, "end": a.lines.end },
                "anchors": c.anchors.len(),
                "fromText": c.from_text(),
                "reason": f.reason,
            })
        })
        .collect();
    let mut counts = serde_json::Map::new();
    for c in Category::ALL {
        counts.insert(c.as_str().to_owned(), json!(r.count(c)));
    }
    counts.insert("touched".into(), json!(r.touched()));
    counts.insert("checked".into(), json!(r.checked.len()));
    counts.insert("goneAtBase".into(), json!(r.gone_at_base()));
    json!({
        "version": 1,
        "tool": { "name": TOOL, "version": VERSION },
        "base": { "rev": r.base.rev, "commit": r.base.commit },
        "head": { "rev": r.head.rev, "commit": r.head.commit },
        "start": r.start,
        "source": source_json(&r.source),
        "counts": counts,
        "skipped": { "resolved": r.skipped.resolved, "bookmarks": r.skipped.bookmarks, "reviews": r.skipped.reviews },
        "locatedFromText": r.from_text(),
        "codemarks": codemarks,
        "notes": r.notes,
    })
}

/// Text made safe for a Markdown table cell: no pipes or line breaks breaking the table, no
/// HTML, and no `@mentions` pinging people on every update.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\''),
            '@' => out.push_str("@\u{200B}"),
            c => out.push(c),
        }
    }
    out
}

/// The pull request summary: a hidden marker (so `--post` finds it again), a heading, a short
/// table, the counts and where the codemarks came from. `again` says a summary was posted
/// before, so an empty one says "any more".
pub fn markdown(r: &Report, again: bool) -> String {
    let touched = r.touched();
    let mut out = format!("{MARKER}\n");
    match touched {
        0 if again => out.push_str("### marginalia: this change no longer touches any open discussion\n"),
        0 => out.push_str("### marginalia: this change touches no open discussion\n"),
        1 => out.push_str("### marginalia: this change touches 1 open discussion\n"),
        n => out.push_str(&format!("### marginalia: this change touches {n} open discussions\n")),
    }
    let listed: Vec<&Checked> = r.listed().collect();
    if !listed.is_empty() {
        out.push_str("\n| Change | Discussion | Now (head) | Was (base) |\n| --- | --- | --- | --- |\n");
    }
    for c in listed {
        // The whole id: UUID v7s made close together share their first digits.
        let id = &c.codemark.id;
        let reference = match r.link(&c.codemark) {
            Some(link) => format!("[`{id}`]({link})"),
            None => format!("`{id}`"),
        };
        let mut what = format!("{}: {} · {reference}", c.codemark.kind, md(&c.headline()));
        if let Some(why) = &c.fate().reason {
            what.push_str(&format!(" · could not be located: {}", md(why)));
        }
        let now = match (&c.fate().head, c.category) {
            (Some(p), Category::Deleted) => format!("gone (was near `{}`)", md(&place(p))),
            (Some(p), _) => format!("`{}`", md(&place(p))),
            (None, _) => "?".to_owned(),
        };
        out.push_str(&format!("| {} | {what} | {now} | `{}` |\n", c.category, md(&was(c))));
    }
    out.push_str(&format!(
        "\n{}. {}. Codemarks from {}; base `{}`, head `{}`.\n",
        counts_line(r),
        capitalized(&from_text_line(r)),
        md(&r.source.describe()),
        md(&rev(&r.base)),
        md(&rev(&r.head)),
    ));
    for n in &r.notes {
        out.push_str(&format!("\n> {}\n", md(n)));
    }
    out
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The SARIF rules, one per category reported, with their levels: deleted code under an open
/// discussion is a warning; modified or moved code is a note.
const RULES: [(Category, &str, &str, &str); 3] = [
    (
        Category::Deleted,
        "codemark-deleted",
        "warning",
        "The change deletes code that an open discussion (a marginalia codemark) is about.",
    ),
    (
        Category::Modified,
        "codemark-modified",
        "note",
        "The change modifies code that an open discussion (a marginalia codemark) is about.",
    ),
    (
        Category::Moved,
        "codemark-moved",
        "note",
        "The change moves code that an open discussion (a marginalia codemark) is about, unchanged.",
    ),
];

/// SARIF 2.1.0 for GitHub code scanning: one result per deleted, modified or moved codemark, at
/// its lines in head (a deleted one at the line where its code used to be), with a fingerprint
/// per codemark so alerts follow it from run to run. Codemarks that could not be located have
/// no lines to point at: they are tool notifications of the run instead.
pub fn sarif(r: &Report) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(_, id, level, text)| {
            json!({
                "id": id,
                "name": id,
                "shortDescription": { "text": text },
                "defaultConfiguration": { "level": level },
            })
        })
        .collect();
    let results: Vec<Value> = r
        .listed()
        .filter_map(|c| {
            let index = RULES.iter().position(|(cat, ..)| *cat == c.category)?;
            let (_, rule, level, _) = RULES[index];
            let (path, lines) = c.shown_at();
            let id = &c.codemark.id;
            let mut message = match c.category {
                Category::Deleted => format!("This change deletes the code of {} {id}", c.codemark.kind),
                Category::Modified => format!("This change modifies the code of {} {id}", c.codemark.kind),
                _ => format!("This change moves the code of {} {id} here from {}", c.codemark.kind, was(c)),
            };
            message.push_str(&format!(": \"{}\"", c.headline()));
            if let Some(link) = r.link(&c.codemark) {
                message.push_str(&format!(" ({link})"));
            }
            message.push('.');
            Some(json!({
                "ruleId": rule,
                "ruleIndex": index,
                "level": level,
                "message": { "text": message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri_path(path) },
                        "region": { "startLine": lines.start, "endLine": lines.end },
                    },
                }],
                "partialFingerprints": { "marginaliaCodemark/v1": id },
                "properties": {
                    "codemark": id,
                    "kind": c.codemark.kind.as_str(),
                    "category": c.category.as_str(),
                    "was": was(c),
                    "link": r.link(&c.codemark),
                },
            }))
        })
        .collect();
    let notifications: Vec<Value> = r
        .listed()
        .filter(|c| c.category == Category::Unknown)
        .map(|c| {
            let why = c.fate().reason.as_deref().unwrap_or("unknown");
            json!({
                "level": "warning",
                "message": { "text": format!("{} {} could not be located: {why}", c.codemark.kind, c.codemark.id) },
            })
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": { "name": TOOL, "version": VERSION, "semanticVersion": VERSION, "rules": rules } },
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
            "properties": {
                "source": source_json(&r.source),
                "base": r.base.commit,
                "head": r.head.commit,
                "start": r.start,
                "locatedFromText": r.from_text(),
                "unchanged": r.count(Category::Unchanged),
                "notes": r.notes,
            },
        }],
    })
}

/// A repository path as a relative URI reference: each byte outside the unreserved set and `/`
/// percent-encoded (a space, `#` or `%` in a file name would otherwise break the URI).
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_cannot_break_the_table_or_ping_anyone() {
        assert_eq!(md("a | b\nc <script> @ann `x`"), "a \\| b c &lt;script&gt; @\u{200B}ann 'x'");
    }

    #[test]
    fn paths_are_uri_references() {
        assert_eq!(uri_path("src/a b#c%.rs"), "src/a%20b%23c%25.rs");
        assert_eq!(uri_path("src/ünï.rs"), "src/%C3%BCn%C3%AF.rs");
    }
}
