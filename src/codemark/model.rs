//! What a codemark is: a discussion held by one or more anchors, with its thread. Plain data,
//! shared by the store, the language server and the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::anchor::Anchor;

/// What kind of discussion it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Comment,
    Question,
    Issue,
    /// A private note to self.
    Bookmark,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Comment, Kind::Question, Kind::Issue, Kind::Bookmark];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Comment => "comment",
            Kind::Question => "question",
            Kind::Issue => "issue",
            Kind::Bookmark => "bookmark",
        }
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind `{s}`: expected one of comment, question, issue, bookmark"))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the discussion is still going.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkStatus {
    Open,
    Resolved,
}

impl MarkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkStatus::Open => "open",
            MarkStatus::Resolved => "resolved",
        }
    }
}

impl FromStr for MarkStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<MarkStatus, String> {
        match s {
            "open" => Ok(MarkStatus::Open),
            "resolved" => Ok(MarkStatus::Resolved),
            _ => Err(format!("unknown status `{s}`: expected open or resolved")),
        }
    }
}

impl fmt::Display for MarkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of a codemark's holds on code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnchor {
    /// UUID v7, text form.
    pub id: String,
    /// `anchor.commit` is a commit that has the lines. For a pending anchor it is the base
    /// commit the lines were written on, `anchor.lines` are the lines in the buffer they were
    /// written in, and `anchor.text` is the only reliable record of them.
    pub anchor: Anchor,
    /// The lines were not committed when the codemark was made; cleared once a commit holds
    /// them (then `anchor` is rewritten to that commit's lines).
    pub pending: bool,
}

/// A reply in a codemark's thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub author: String,
    pub body: String,
    /// Milliseconds since the Unix epoch.
    pub created: i64,
}

/// A discussion on code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codemark {
    /// UUID v7, text form (sorts by creation time).
    pub id: String,
    /// The repository's identity key (see [`repo_key`](super::repo_key)): clones share it.
    pub repo: String,
    pub kind: Kind,
    pub title: Option<String>,
    /// Markdown.
    pub body: String,
    pub author: String,
    pub status: MarkStatus,
    /// At least one.
    pub anchors: Vec<StoredAnchor>,
    /// Oldest first.
    pub replies: Vec<Reply>,
    /// Milliseconds since the Unix epoch.
    pub created: i64,
    pub updated: i64,
    /// The team server it is shared with (its URL); `None` while it lives on this machine only.
    pub shared: Option<String>,
    /// Set for a comment made in a feedback request.
    pub review: Option<ReviewLink>,
}

/// Where a review comment sits: the feedback request, its revision, the file and side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewLink {
    pub review: String,
    pub revision: u32,
    pub path: String,
    /// `old` (the base) or `new` (the proposed version).
    pub side: String,
}

impl Codemark {
    /// The fields every JSON view of a codemark shares (the language server's
    /// `marginalia/codemarks` and the CLI's `--json`): id, kind, title, body, status, author,
    /// created, updated (RFC 3339), pending, and the replies.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "title": self.title,
            "body": self.body,
            "status": self.status.as_str(),
            "author": self.author,
            "created": rfc3339(self.created),
            "updated": rfc3339(self.updated),
            "pending": self.anchors.iter().any(|a| a.pending),
            "shared": self.shared,
            "review": self.review,
            "replies": self.replies.iter().map(|r| serde_json::json!({
                "id": r.id, "author": r.author, "body": r.body, "created": rfc3339(r.created),
            })).collect::<Vec<_>>(),
        })
    }
}

/// A remembered answer: where an anchor is in one version of a file (its git blob id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedLocation {
    pub status: crate::anchor::Status,
    pub path: String,
    pub lines: crate::anchor::LineRange,
}

/// A new UUID v7 in text form.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 form of a millisecond timestamp, for people and JSON.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
