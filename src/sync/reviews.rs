//! Feedback requests on the team server: reads straight from the server, and changes (a
//! request, a new revision, a verdict, closing) through the outbox like every other change, so
//! they are sent once, also after working offline.

use std::sync::{Arc, Mutex};

use crate::api;
use crate::codemark::new_id;
use crate::store::{Outgoing, Store};

use super::client::{Call, Client, SyncError};
use super::engine::{self, Pushed};

/// Which requests to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whose {
    /// Those I am asked to review.
    ForMe,
    /// Those I asked for.
    Mine,
    All,
}

/// Reviews of this team, newest first: open ones, or all with `closed`.
pub async fn list(client: &Client, whose: Whose, closed: bool) -> Result<Vec<api::Review>, SyncError> {
    let whose = match whose {
        Whose::ForMe => "me",
        Whose::Mine => "mine",
        Whose::All => "all",
    };
    let status = if closed { "all" } else { "open" };
    client.json(Call::get(&format!("/reviews?for={whose}&status={status}"))).await
}

pub async fn get(client: &Client, id: &str) -> Result<api::Review, SyncError> {
    client.json(Call::get(&format!("/reviews/{id}"))).await
}

/// One revision with its patches; the latest when `number` is `None`.
pub async fn revision(client: &Client, review: &api::Review, number: Option<u32>) -> Result<api::Revision, SyncError> {
    let latest = review.revisions.last().map_or(1, |r| r.number);
    let n = number.unwrap_or(latest);
    let mut call = Call::get("");
    let path = format!("/reviews/{}/revisions/{n}", review.id);
    call.path = &path;
    call.subject = Some(&review.id);
    client.json(call).await
}

/// A change to send: queued with its key, then pushed (it stays queued when offline). `held`
/// keeps it for the user (a likely secret).
pub struct Queue<'a> {
    pub server: &'a str,
    pub subject: &'a str,
    pub op: &'a str,
    pub method: &'a str,
    pub path: String,
    pub body: Option<String>,
    pub code_bytes: usize,
    pub held: Option<String>,
}

impl Queue<'_> {
    /// The outbox row that carries it, with a fresh idempotency key.
    pub fn outgoing(self) -> Outgoing {
        Outgoing {
            key: new_id(),
            server: self.server.to_owned(),
            codemark_id: self.subject.to_owned(),
            op: self.op.to_owned(),
            method: self.method.to_owned(),
            path: self.path,
            body: self.body,
            code_bytes: self.code_bytes,
            held: self.held,
            note: None,
        }
    }
}

/// Queues one change and pushes the outbox; what the push did.
pub async fn send(store: &Arc<Mutex<Store>>, client: &Client, q: Queue<'_>) -> Result<Pushed, SyncError> {
    let out = q.outgoing();
    engine::db(store, move |s| s.enqueue(&[out])).await?;
    engine::push(store, client).await
}

/// The body and bytes of code of a new request.
pub fn request_body(r: &api::NewReview) -> (String, usize) {
    let code = r.revision.files.iter().filter_map(|f| f.patch.as_ref()).map(String::len).sum();
    (serde_json::to_string(r).expect("wire types always serialize"), code)
}

/// The body and bytes of code of a new revision.
pub fn revision_body(r: &api::NewRevision) -> (String, usize) {
    let code = r.files.iter().filter_map(|f| f.patch.as_ref()).map(String::len).sum();
    (serde_json::to_string(r).expect("wire types always serialize"), code)
}

/// Member ids for names or emails given by a person (or ids as they are).
pub async fn reviewers(client: &Client, names: &[String]) -> Result<Vec<String>, SyncError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let members: Vec<api::Member> = client.json(Call::get("/members")).await?;
    names
        .iter()
        .map(|n| {
            let want = n.trim().to_lowercase();
            let found: Vec<&api::Member> = members
                .iter()
                .filter(|m| {
                    m.id == *n
                        || m.name.to_lowercase() == want
                        || m.email.as_deref().is_some_and(|e| e.to_lowercase() == want)
                })
                .collect();
            match found.as_slice() {
                [one] => Ok(one.id.clone()),
                [] => Err(SyncError::Setup(format!(
                    "no member `{n}` in the team; members: {}",
                    members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                ))),
                _ => Err(SyncError::Setup(format!("`{n}` names several members: give their email"))),
            }
        })
        .collect()
}
