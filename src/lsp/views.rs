//! What the editor is shown: codemarks as JSON for `marginalia/codemarks`, code lens titles,
//! hover text and diagnostics.

use std::fmt::Write;

use serde_json::{Value, json};
use tower_lsp_server::ls_types as lsp;

use crate::anchor::{Document, Status};
use crate::codemark::{Codemark, MarkStatus, rfc3339};

use super::docs::Current;
use super::proto::{Encoding, line_range};
use super::workspace::Summary;

/// A codemark as editors read it: the stable shape of `marginalia/codemarks`.
pub fn codemark_json(c: &Codemark, at: Option<(&Current, &Document)>, enc: Encoding) -> Value {
    let mut v = c.to_json();
    if let Some((cur, doc)) = at {
        v["anchorStatus"] = json!(cur.status.as_str());
        v["range"] = serde_json::to_value(range(cur, doc, enc)).unwrap_or(Value::Null);
    }
    v
}

/// The LSP range of a placed anchor: its whole lines, or the start of the line where deleted
/// code used to be.
pub fn range(cur: &Current, doc: &Document, enc: Encoding) -> lsp::Range {
    if cur.status == Status::Deleted {
        let p = lsp::Position::new(cur.start.min(doc.line_count() - 1), 0);
        return lsp::Range::new(p, p);
    }
    line_range(doc, cur.start, cur.end, enc)
}

/// How many characters of a title (or a body's first line) a lens shows.
pub const HEADLINE: usize = 60;

/// "question: Why cache here? · 2 comments · open", marked when the code changed or went.
pub fn lens_title(s: &Summary, status: Status) -> String {
    let n = s.comments;
    let mut t = String::with_capacity(s.headline.len() + 48);
    t.push_str(match status {
        Status::Deleted => "code deleted · ",
        Status::Modified => "code changed · ",
        Status::Intact => "",
    });
    t.push_str(s.kind.as_str());
    t.push_str(": ");
    t.push_str(&s.headline);
    _ = write!(t, " · {n} comment{} · {}", if n == 1 { "" } else { "s" }, s.status);
    t
}

/// The title, else the body's first line, cut to `max` characters.
pub fn headline(c: &Codemark, max: usize) -> String {
    let line =
        c.title.as_deref().filter(|t| !t.trim().is_empty()).unwrap_or_else(|| c.body.lines().next().unwrap_or(""));
    let line = line.trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

/// The thread in Markdown, for hovers and messages.
pub fn thread_markdown(c: &Codemark, status: Option<Status>) -> String {
    let mut s = format!("**{}** · {} · {}", c.kind, c.status, c.author);
    if let Some(st) = status.filter(|s| *s != Status::Intact) {
        s.push_str(&format!(" · code {}", if st == Status::Deleted { "deleted" } else { "changed since" }));
    }
    s.push_str(&format!(" · {}\n\n", &rfc3339(c.created)[..10]));
    if let Some(t) = c.title.as_deref().filter(|t| !t.trim().is_empty()) {
        s.push_str(&format!("### {t}\n\n"));
    }
    s.push_str(&c.body);
    for r in &c.replies {
        s.push_str(&format!("\n\n---\n\n**{}** · {}\n\n{}", r.author, &rfc3339(r.created)[..10], r.body));
    }
    s
}

pub fn diagnostic(id: &str, s: &Summary, cur: &Current, doc: &Document, enc: Encoding) -> lsp::Diagnostic {
    lsp::Diagnostic {
        range: range(cur, doc, enc),
        severity: Some(if s.status == MarkStatus::Open {
            lsp::DiagnosticSeverity::INFORMATION
        } else {
            lsp::DiagnosticSeverity::HINT
        }),
        code: Some(lsp::NumberOrString::String(id.to_owned())),
        source: Some("marginalia".to_owned()),
        message: lens_title(s, cur.status),
        ..lsp::Diagnostic::default()
    }
}
