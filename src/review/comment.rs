//! A comment on a feedback request is a codemark: anchored to the commented lines' text on
//! that side (pending until a commit holds them, so it finds the author's lines in their
//! working copy, and the commit once the work is pushed), linked to the review.

use crate::anchor::{Anchor, CONTEXT_LINES, LineRange, Text};
use crate::api::{self, Side};
use crate::codemark::{Codemark, Kind, MarkStatus, ReviewLink, StoredAnchor, new_id, now_ms};

use super::rebuild::FileView;

/// A comment on lines of one side of a review file: a codemark anchored to those lines' text
/// (pending until a commit holds them), linked to the review.
#[allow(clippy::too_many_arguments)]
pub fn new(
    review: &api::Review,
    rev: &api::Revision,
    files: &[FileView],
    path: &str,
    lines: LineRange,
    side: Side,
    body: String,
    author: String,
) -> Result<Codemark, String> {
    if body.trim().is_empty() {
        return Err("the comment is empty".into());
    }
    let file = files
        .iter()
        .find(|f| match side {
            Side::Old => f.old_path.as_deref() == Some(path),
            Side::New => f.new_path.as_deref() == Some(path),
        })
        .ok_or_else(|| {
            let names: Vec<&str> = files.iter().map(|f| f.path()).collect();
            format!("the review has no {path} on that side; its files: {}", names.join(", "))
        })?;
    let text = match side {
        Side::Old => file.old_text.as_deref(),
        Side::New => file.new_text.as_deref(),
    }
    .ok_or_else(|| format!("{path} has no text on that side (binary, or absent there)"))?;
    let text = Text::new(text.to_owned());
    if lines.end as usize > text.len() {
        return Err(format!("lines {lines} are past the end of {path} on that side, which has {} lines", text.len()));
    }
    let (s, e) = (lines.start as usize - 1, lines.end as usize);
    let commit = match side {
        Side::Old => rev.base.clone(),
        Side::New => rev.head.clone().unwrap_or_else(|| rev.base.clone()),
    };
    let anchor = Anchor {
        commit,
        path: path.to_owned(),
        lines,
        text: Some(text.lines(s..e).collect::<Vec<_>>().join("\n")),
        before: text.lines(s.saturating_sub(CONTEXT_LINES)..s).map(str::to_owned).collect(),
        after: text.lines(e..(e + CONTEXT_LINES).min(text.len())).map(str::to_owned).collect(),
    };
    let now = now_ms();
    Ok(Codemark {
        id: new_id(),
        repo: review.repo.clone(),
        kind: Kind::Comment,
        title: None,
        body,
        author,
        status: MarkStatus::Open,
        anchors: vec![StoredAnchor { id: new_id(), anchor, pending: true }],
        replies: Vec::new(),
        created: now,
        updated: now,
        shared: None,
        review: Some(ReviewLink {
            review: review.id.clone(),
            revision: rev.number,
            path: path.to_owned(),
            side: match side {
                Side::Old => "old".into(),
                Side::New => "new".into(),
            },
        }),
    })
}
