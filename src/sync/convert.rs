//! Codemarks between the local model and the wire: what a codemark sends (its snippet is the
//! only code that leaves), and what the server's answers become here, checked on the way in.

use crate::anchor::{Anchor, LineRange};
use crate::api;
use crate::codemark::{Codemark, Kind, MarkStatus, Reply, StoredAnchor};

/// An anchor as the server stores it: where, and the snippet (anchored lines and context).
pub fn anchor_out(a: &StoredAnchor) -> api::Anchor {
    let x = &a.anchor;
    api::Anchor {
        id: a.id.clone(),
        commit: x.commit.clone(),
        path: x.path.clone(),
        start: x.lines.start,
        end: x.lines.end,
        text: x.text.clone(),
        before: x.before.clone(),
        after: x.after.clone(),
        pending: a.pending,
    }
}

/// The body of `POST /codemarks` for a codemark made here.
pub fn new_codemark(c: &Codemark) -> api::NewCodemark {
    api::NewCodemark {
        id: c.id.clone(),
        repo: c.repo.clone(),
        kind: c.kind.as_str().to_owned(),
        title: c.title.clone(),
        body: c.body.clone(),
        status: c.status.as_str().to_owned(),
        anchors: c.anchors.iter().map(anchor_out).collect(),
        created: c.created,
        review: c.review.as_ref().map(review_out),
    }
}

/// A review comment's link as the server has it.
pub fn review_out(r: &crate::codemark::ReviewLink) -> api::ReviewRef {
    api::ReviewRef {
        review: r.review.clone(),
        revision: r.revision,
        path: r.path.clone(),
        side: if r.side == "old" { api::Side::Old } else { api::Side::New },
    }
}

/// Bytes of code in anchors: their lines and context, as sent.
pub fn code_bytes(anchors: &[api::Anchor]) -> usize {
    anchors.iter().map(snippet_bytes).sum()
}

/// One anchor's snippet size, as the server's limit counts it.
pub fn snippet_bytes(a: &api::Anchor) -> usize {
    a.text.as_deref().map_or(0, str::len) + a.before.iter().chain(&a.after).map(String::len).sum::<usize>()
}

/// A codemark from the server, checked: a value this build cannot read is an error naming it,
/// and the codemark is skipped, never half-stored.
pub fn codemark_in(c: api::Codemark, server: &str) -> Result<Codemark, String> {
    let what = |field: &str, problem: String| format!("codemark {} from the server: `{field}` {problem}", c.id);
    let kind: Kind = c.kind.parse().map_err(|e| what("kind", e))?;
    let status: MarkStatus = c.status.parse().map_err(|e| what("status", e))?;
    if c.anchors.is_empty() {
        return Err(what("anchors", "is empty".into()));
    }
    let mut anchors = Vec::with_capacity(c.anchors.len());
    for (i, a) in c.anchors.into_iter().enumerate() {
        if a.start == 0 || a.end < a.start {
            return Err(what(&format!("anchors[{i}]"), format!("has lines {}-{}", a.start, a.end)));
        }
        if a.path.is_empty() || a.path.starts_with('/') || a.path.split('/').any(|p| p == "..") {
            return Err(what(&format!("anchors[{i}].path"), format!("`{}` is not a path inside a repository", a.path)));
        }
        anchors.push(StoredAnchor {
            id: a.id,
            anchor: Anchor {
                commit: a.commit,
                path: a.path,
                lines: LineRange::new(a.start, a.end),
                text: a.text,
                before: a.before,
                after: a.after,
            },
            pending: a.pending,
        });
    }
    let replies =
        c.replies.into_iter().map(|r| Reply { id: r.id, author: r.author, body: r.body, created: r.created }).collect();
    Ok(Codemark {
        id: c.id,
        repo: c.repo,
        kind,
        title: c.title,
        body: c.body,
        author: c.author,
        status,
        anchors,
        replies,
        created: c.created,
        updated: c.updated,
        shared: Some(server.to_owned()),
        review: c.review.map(|r| crate::codemark::ReviewLink {
            review: r.review,
            revision: r.revision,
            path: r.path,
            side: match r.side {
                api::Side::Old => "old".into(),
                api::Side::New => "new".into(),
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Codemark {
        Codemark {
            id: "c1".into(),
            repo: "github.com/acme/shop".into(),
            kind: Kind::Question,
            title: Some("Why?".into()),
            body: "Because.".into(),
            author: "Ann <ann@example.com>".into(),
            status: MarkStatus::Open,
            anchors: vec![StoredAnchor {
                id: "a1".into(),
                anchor: Anchor {
                    commit: "c".repeat(40),
                    path: "src/x.rs".into(),
                    lines: LineRange::new(3, 4),
                    text: Some("let a = 1;\nlet b = 2;".into()),
                    before: vec!["fn f() {".into()],
                    after: vec!["}".into()],
                },
                pending: true,
            }],
            replies: vec![],
            created: 5,
            updated: 5,
            shared: None,
            review: None,
        }
    }

    #[test]
    fn a_codemark_goes_out_with_its_snippet_and_comes_back_the_same() {
        let c = local();
        let out = new_codemark(&c);
        assert_eq!(code_bytes(&out.anchors), "let a = 1;\nlet b = 2;".len() + "fn f() {".len() + 1);
        let back = api::Codemark {
            id: out.id,
            repo: out.repo,
            kind: out.kind,
            title: out.title,
            body: out.body,
            author: c.author.clone(),
            author_id: Some("m1".into()),
            status: out.status,
            anchors: out.anchors,
            replies: vec![],
            created: 5,
            updated: 5,
            review: out.review,
        };
        let got = codemark_in(back, "https://team.example").unwrap();
        assert_eq!(got, Codemark { shared: Some("https://team.example".into()), ..c });
    }

    #[test]
    fn what_cannot_be_read_is_refused_by_name() {
        let mut bad = api::Codemark {
            id: "c9".into(),
            repo: "r".into(),
            kind: "rant".into(),
            title: None,
            body: String::new(),
            author: String::new(),
            author_id: None,
            status: "open".into(),
            anchors: new_codemark(&local()).anchors,
            replies: vec![],
            created: 0,
            updated: 0,
            review: None,
        };
        let e = codemark_in(bad.clone(), "s").unwrap_err();
        assert!(e.contains("codemark c9") && e.contains("`kind`") && e.contains("rant"), "{e}");
        bad.kind = "comment".into();
        bad.anchors[0].path = "../../etc/passwd".into();
        let e = codemark_in(bad.clone(), "s").unwrap_err();
        assert!(e.contains("anchors[0].path"), "{e}");
        bad.anchors[0].path = "ok.rs".into();
        bad.anchors[0].start = 0;
        assert!(codemark_in(bad, "s").unwrap_err().contains("has lines 0-4"));
    }
}
