//! The language server's side of feedback requests: asking for a review of the workspace's
//! work, listing requests, opening one as virtual documents (`marginalia-review:` URIs, served
//! by the `marginalia/reviewDocument` request, so an editor can show base and proposed side by
//! side), commenting on their lines, and verdicts. Everything goes through the sync client:
//! reads straight from the server, changes through the outbox.
//!
//! A virtual document's URI is `marginalia-review:/<review id>/<revision>/<old|new>/<path>`,
//! each path segment percent-encoded. Its text is rebuilt from this repository's git objects plus
//! the revision's patches, checked against the author's blob ids; it never touches the working
//! copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{self as lsp, Uri};

use crate::anchor::{Document, LineRange, Sources, Text, relocate};
use crate::api::{self, Side};
use crate::git::Repo;
use crate::review::{changeset, comment, rebuild};
use crate::sync::reviews::{self, Whose};
use crate::sync::{SyncError, outbox};

use super::proto::{line_range, selected_lines};
use super::sync::SyncState;
use super::{Backend, blocking, internal, invalid, lock, views, with_store};

pub const REQUEST: &str = "marginalia.review.request";
pub const LIST: &str = "marginalia.review.list";
pub const OPEN: &str = "marginalia.review.open";
pub const COMMENT: &str = "marginalia.review.comment";
pub const APPROVE: &str = "marginalia.review.approve";
pub const REQUEST_CHANGES: &str = "marginalia.review.requestChanges";
pub const CLOSE: &str = "marginalia.review.close";

pub const COMMANDS: &[&str] = &[REQUEST, LIST, OPEN, COMMENT, APPROVE, REQUEST_CHANGES, CLOSE];

/// The scheme of a review's virtual documents.
pub const SCHEME: &str = "marginalia-review";

/// Reviews opened in this session: their rebuilt files, by (review id, revision).
#[derive(Default)]
pub struct Reviews {
    opened: Mutex<HashMap<(String, u32), Arc<Opened>>>,
}

pub struct Opened {
    review: api::Review,
    revision: api::Revision,
    files: Vec<rebuild::FileView>,
}

/// Where a virtual document points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRef {
    pub review: String,
    pub revision: u32,
    pub side: Side,
    pub path: String,
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The URI of one side of a review file.
pub fn doc_uri(review: &str, revision: u32, side: Side, path: &str) -> String {
    let side = if side == Side::Old { "old" } else { "new" };
    let path: Vec<String> = path.split('/').map(encode).collect();
    format!("{SCHEME}:/{}/{revision}/{side}/{}", encode(review), path.join("/"))
}

/// What a `marginalia-review:` URI names; an error that says what is wrong with it.
pub fn parse_uri(uri: &str) -> std::result::Result<DocRef, String> {
    let bad = |why: &str| {
        format!("{uri} is not a review document URI ({why}); they look like {SCHEME}:/ID/REVISION/old|new/PATH")
    };
    let rest = uri.strip_prefix(&format!("{SCHEME}:")).ok_or_else(|| bad("another scheme"))?;
    let rest = rest.trim_start_matches('/');
    let mut parts = rest.splitn(4, '/');
    let review = parts.next().and_then(decode).filter(|s| !s.is_empty()).ok_or_else(|| bad("no review id"))?;
    let revision = parts.next().and_then(|r| r.parse().ok()).ok_or_else(|| bad("no revision number"))?;
    let side = match parts.next() {
        Some("old") => Side::Old,
        Some("new") => Side::New,
        _ => return Err(bad("the side is old or new")),
    };
    let path = parts.next().ok_or_else(|| bad("no path"))?;
    let path = path.split('/').map(decode).collect::<Option<Vec<_>>>().ok_or_else(|| bad("bad escapes"))?.join("/");
    rebuild::check_path(&path).map_err(|e| bad(&e.to_string()))?;
    Ok(DocRef { review, revision, side, path })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    reviewers: Vec<String>,
    #[serde(default)]
    untracked: bool,
    #[serde(default)]
    base: Option<String>,
    /// A document of the repository to review; the workspace's first repository otherwise.
    #[serde(default)]
    uri: Option<Uri>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    mine: bool,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    closed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenArgs {
    id: String,
    #[serde(default)]
    revision: Option<u32>,
    /// The revision the reviewer read last: the answer adds `since`, the unified diff of what
    /// changed from it.
    #[serde(default)]
    since: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentArgs {
    uri: String,
    range: lsp::Range,
    body: String,
}

#[derive(Deserialize)]
struct IdArgs {
    id: String,
}

/// `marginalia/reviewDocument` parameters.
#[derive(Deserialize)]
pub struct DocumentParams {
    uri: String,
}

fn args<T: serde::de::DeserializeOwned>(command: &str, arg: Value) -> Result<T> {
    serde_json::from_value(arg).map_err(|e| invalid(format!("bad argument to {command}: {e}")))
}

fn sync_err(e: SyncError) -> tower_lsp_server::jsonrpc::Error {
    invalid(e.to_string())
}

impl Backend {
    pub(super) async fn review_command(&self, name: &str, arg: Value) -> Result<Value> {
        let Some(st) = lock(&self.shared.sync).clone() else {
            return Err(invalid(
                "feedback requests need a team server: sign in with `marginalia login --server URL --invite CODE`",
            ));
        };
        match name {
            REQUEST => self.review_request(&st, args(REQUEST, arg)?).await,
            LIST => {
                let a: ListArgs = if arg.is_null() { ListArgs::default() } else { args(LIST, arg)? };
                let whose = if a.mine {
                    Whose::Mine
                } else if a.all {
                    Whose::All
                } else {
                    Whose::ForMe
                };
                let list = reviews::list(st.client(), whose, a.closed).await.map_err(sync_err)?;
                Ok(json!({ "reviews": list }))
            }
            OPEN => {
                let a: OpenArgs = args(OPEN, arg)?;
                let opened = self.open_review(&st, &a.id, a.revision).await?;
                let mut v = opened_json(&opened);
                if let Some(n) = a.since.filter(|n| *n < opened.revision.number) {
                    let earlier = self.open_review(&st, &a.id, Some(n)).await?;
                    let root = self.root_of(&opened.review.repo)?;
                    let (e, l) = (earlier.clone(), opened.clone());
                    let diff = blocking(move || -> std::result::Result<String, String> {
                        let repo = Repo::open(&root).map_err(|e| e.to_string())?;
                        rebuild::interdiff(&repo, (&e.revision, &e.files), (&l.revision, &l.files))
                            .map_err(|e| e.to_string())
                    })
                    .await
                    .map_err(internal)?
                    .map_err(invalid)?;
                    v["since"] = json!({ "revision": n, "diff": diff });
                }
                Ok(v)
            }
            COMMENT => self.review_comment(args(COMMENT, arg)?).await,
            APPROVE | REQUEST_CHANGES => {
                let a: IdArgs = args(name, arg)?;
                let verdict = if name == APPROVE { "approved" } else { "changes_requested" };
                let body = serde_json::to_string(&api::Verdict { verdict: verdict.into() }).expect("serializes");
                self.review_change(&st, &a.id, "verdict", "POST", format!("/reviews/{}/verdict", a.id), body).await
            }
            CLOSE => {
                let a: IdArgs = args(name, arg)?;
                let patch = api::ReviewPatch { status: Some("closed".into()), ..Default::default() };
                let body = serde_json::to_string(&patch).expect("serializes");
                self.review_change(&st, &a.id, "status", "PATCH", format!("/reviews/{}", a.id), body).await
            }
            other => Err(invalid(format!("unknown review command `{other}`"))),
        }
    }

    /// Queues a change to a review and wakes the pusher.
    async fn review_change(
        &self,
        st: &Arc<SyncState>,
        id: &str,
        op: &str,
        method: &str,
        path: String,
        body: String,
    ) -> Result<Value> {
        let out = reviews::Queue {
            server: &st.server,
            subject: id,
            op,
            method,
            path,
            body: Some(body),
            code_bytes: 0,
            held: None,
        }
        .outgoing();
        crate::sync::engine::db(st.store(), move |s| s.enqueue(&[out])).await.map_err(sync_err)?;
        st.nudge();
        Ok(json!({ "id": id, "state": "queued" }))
    }

    async fn review_request(&self, st: &Arc<SyncState>, a: RequestArgs) -> Result<Value> {
        if a.title.trim().is_empty() {
            return Err(invalid("`title` is empty: say what the work is"));
        }
        let root = self.review_root(a.uri.as_ref())?;
        let (untracked, base) = (a.untracked, a.base.clone());
        let built = blocking(move || -> std::result::Result<(changeset::Built, String), String> {
            let repo = Repo::open(&root).map_err(|e| e.to_string())?;
            let key = crate::codemark::repo_key(&repo).map_err(|e| e.to_string())?;
            let base = match base {
                Some(b) => repo.review_base_at(&b),
                None => repo.review_base(),
            }
            .map_err(|e| e.to_string())?;
            Ok((changeset::build(&repo, &base, untracked).map_err(|e| e.to_string())?, key))
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        let (built, key) = built;
        let ids = reviews::reviewers(st.client(), &a.reviewers).await.map_err(sync_err)?;
        let held = built.secrets.clone();
        let (files, lines, binary) = (built.revision.files.len(), built.lines, built.binary.clone());
        let review = api::NewReview {
            id: crate::codemark::new_id(),
            repo: key,
            title: a.title,
            description: a.description,
            reviewers: ids,
            revision: built.revision,
        };
        let (body, code) = reviews::request_body(&review);
        let out = reviews::Queue {
            server: &st.server,
            subject: &review.id,
            op: "review",
            method: "POST",
            path: "/reviews".into(),
            body: Some(body),
            code_bytes: code,
            held: held.clone(),
        }
        .outgoing();
        crate::sync::engine::db(st.store(), move |s| s.enqueue(&[out])).await.map_err(sync_err)?;
        if let Some(why) = &held {
            self.client
                .show_message(
                    lsp::MessageType::WARNING,
                    format!(
                        "marginalia did not send the review request: {why}. Take the secret out and ask again; the held \
                         request can be dropped with `marginalia outbox drop`."
                    ),
                )
                .await;
        } else {
            st.nudge();
        }
        Ok(json!({
            "id": review.id,
            "state": if held.is_some() { "held" } else { "queued" },
            "held": held,
            "files": files,
            "lines": lines,
            "binary": binary,
        }))
    }

    /// The repository a review is asked from: that of `uri`, else the first one open.
    fn review_root(&self, uri: Option<&Uri>) -> Result<std::path::PathBuf> {
        let work = lock(&self.shared.work);
        if let Some(u) = uri {
            let path = super::file_path(u).map_err(invalid)?;
            let i =
                work.find(&path).ok_or_else(|| invalid(format!("{} is not inside an open repository", u.as_str())))?;
            return Ok(work.repos[i].root.clone());
        }
        work.repos
            .iter()
            .find(|r| !r.gone)
            .map(|r| r.root.clone())
            .ok_or_else(|| invalid("no repository is open in this workspace"))
    }

    /// The working tree of the repository with this key, open in the workspace.
    fn root_of(&self, key: &str) -> Result<std::path::PathBuf> {
        let work = lock(&self.shared.work);
        let root = work.repos.iter().find(|r| r.key == key && !r.gone).map(|r| r.root.clone());
        root.ok_or_else(|| invalid(format!("the review is of repository {key}, which is not open in this workspace")))
    }

    /// Fetches and rebuilds a revision (the latest without `revision`), remembered for the
    /// session.
    async fn open_review(&self, st: &Arc<SyncState>, id: &str, revision: Option<u32>) -> Result<Arc<Opened>> {
        if let Some(n) = revision
            && let Some(o) = lock(&self.shared.reviews.opened).get(&(id.to_owned(), n))
        {
            return Ok(o.clone());
        }
        let review = reviews::get(st.client(), id).await.map_err(sync_err)?;
        let rev = reviews::revision(st.client(), &review, revision).await.map_err(sync_err)?;
        let root = self.root_of(&review.repo)?;
        let rev2 = rev.clone();
        let files = blocking(move || -> std::result::Result<Vec<rebuild::FileView>, String> {
            let repo = Repo::open(&root).map_err(|e| e.to_string())?;
            rebuild::rebuild(&repo, &rev2).map_err(|e| e.to_string())
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        let opened = Arc::new(Opened { review, revision: rev, files });
        let key = (opened.review.id.clone(), opened.revision.number);
        lock(&self.shared.reviews.opened).insert(key, opened.clone());
        Ok(opened)
    }

    /// The review and text a virtual document shows.
    async fn review_doc(&self, uri: &str) -> Result<(DocRef, Arc<Opened>, String)> {
        let r = parse_uri(uri).map_err(invalid)?;
        let Some(st) = lock(&self.shared.sync).clone() else {
            return Err(invalid("review documents need a team server: sign in with `marginalia login`"));
        };
        let opened = self.open_review(&st, &r.review, Some(r.revision)).await?;
        let file = opened
            .files
            .iter()
            .find(|f| match r.side {
                Side::Old => f.old_path.as_deref() == Some(r.path.as_str()),
                Side::New => f.new_path.as_deref() == Some(r.path.as_str()),
            })
            .ok_or_else(|| invalid(format!("the review has no {} on that side", r.path)))?;
        let text = match r.side {
            Side::Old => file.old_text.clone(),
            Side::New => file.new_text.clone(),
        }
        .ok_or_else(|| invalid(format!("{} is binary or absent on that side: it was not sent", r.path)))?;
        Ok((r, opened.clone(), text))
    }

    /// `marginalia/reviewDocument`: the text of one side of a review file.
    pub async fn review_document(&self, params: DocumentParams) -> Result<Value> {
        let (_, _, text) = self.review_doc(&params.uri).await?;
        Ok(json!({ "text": text }))
    }

    async fn review_comment(&self, a: CommentArgs) -> Result<Value> {
        let (r, opened, _) = self.review_doc(&a.uri).await?;
        let (s, e) = selected_lines(a.range);
        let author = {
            let work = lock(&self.shared.work);
            let repo = work.repos.iter().find(|x| x.key == opened.review.repo).map(|x| &x.repo);
            crate::codemark::author(repo)
        };
        let c = comment::new(
            &opened.review,
            &opened.revision,
            &opened.files,
            &r.path,
            LineRange::from_zero(s, e),
            r.side,
            a.body,
            author,
        )
        .map_err(invalid)?;
        let shared = self.shared.clone();
        let (made, queued) =
            blocking(move || with_store(&shared, |store| outbox::create(store, c).map_err(|e| e.to_string())))
                .await
                .map_err(internal)?
                .map_err(invalid)?;
        self.queued(&made.id, queued);
        if let Ok(uri) = a.uri.parse::<Uri>() {
            self.client.send_notification::<super::DidChangeCodemarks>(super::DidChangeCodemarksParams { uri }).await;
        }
        Ok(views::codemark_json(&made, None, self.enc()))
    }

    /// `marginalia/codemarks` for a review document: the review's comments on that side of
    /// that file, placed in its text (those made on another revision found by their text).
    pub(super) async fn review_codemarks(&self, uri: &str) -> Result<Value> {
        let (r, _, text) = self.review_doc(uri).await?;
        let shared = self.shared.clone();
        let review = r.review.clone();
        let marks = blocking(move || with_store(&shared, |store| store.of_review(&review).map_err(|e| e.to_string())))
            .await
            .map_err(internal)?
            .map_err(invalid)?;
        let side = if r.side == Side::Old { "old" } else { "new" };
        let doc = Document::new(text.clone());
        let t = Text::new(text);
        let enc = self.enc();
        let mut list: Vec<(u32, Value)> = Vec::new();
        for c in &marks {
            let Some(link) = &c.review else { continue };
            if link.path != r.path || link.side != side {
                continue;
            }
            let Some(a) = c.anchors.first() else { continue };
            let found = if link.revision == r.revision {
                Ok(crate::anchor::Relocation {
                    status: crate::anchor::Status::Intact,
                    path: r.path.clone(),
                    lines: a.anchor.lines,
                    via: crate::anchor::Via::Text,
                })
            } else {
                relocate(&a.anchor, &Sources { old: None, new: Some((&r.path, &t)), map: None, others: None })
            };
            let Ok(rel) = found else { continue };
            let (start, end) = (rel.lines.start.saturating_sub(1), rel.lines.end.saturating_sub(1));
            let mut v = views::codemark_json(c, None, enc);
            v["anchorStatus"] = json!(rel.status.as_str());
            v["range"] = serde_json::to_value(line_range(&doc, start, end, enc)).unwrap_or(Value::Null);
            list.push((start, v));
        }
        list.sort_by_key(|(l, _)| *l);
        Ok(json!({ "codemarks": list.into_iter().map(|(_, v)| v).collect::<Vec<_>>() }))
    }
}

fn opened_json(o: &Opened) -> Value {
    let (id, n) = (&o.review.id, o.revision.number);
    let files: Vec<Value> = o
        .files
        .iter()
        .map(|f| {
            let status = match (&f.old_path, &f.new_path) {
                (None, Some(_)) => "added",
                (Some(_), None) => "deleted",
                (Some(a), Some(b)) if a != b => "renamed",
                _ => "modified",
            };
            let base = f.old_path.as_ref().filter(|_| f.old_text.is_some()).map(|p| doc_uri(id, n, Side::Old, p));
            let proposed = f.new_path.as_ref().filter(|_| f.new_text.is_some()).map(|p| doc_uri(id, n, Side::New, p));
            json!({
                "path": f.path(),
                "oldPath": f.old_path,
                "newPath": f.new_path,
                "status": status,
                "binary": f.binary,
                "base": base,
                "proposed": proposed,
            })
        })
        .collect();
    json!({
        "id": id,
        "title": o.review.title,
        "description": o.review.description,
        "status": o.review.status,
        "author": o.review.author,
        "revision": n,
        "base": o.revision.base,
        "baseNote": o.revision.base_note,
        "reviewers": o.review.reviewers,
        "files": files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_uris_round_trip_and_refuse_what_is_not_one() {
        let u = doc_uri("01a2-b", 3, Side::New, "src/a b/ü#1.rs");
        assert_eq!(u, "marginalia-review:/01a2-b/3/new/src/a%20b/%C3%BC%231.rs");
        assert_eq!(
            parse_uri(&u).unwrap(),
            DocRef { review: "01a2-b".into(), revision: 3, side: Side::New, path: "src/a b/ü#1.rs".into() }
        );
        for bad in [
            "file:///x",
            "marginalia-review:/id/x/new/a.rs",
            "marginalia-review:/id/1/both/a.rs",
            "marginalia-review:/id/1/new/../etc/passwd",
            "marginalia-review:/id/1/new/.git/config",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }
}
