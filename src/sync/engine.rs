//! Pushing the outbox, pulling by cursor, following the event stream: the sync loop shared by
//! `marginalia sync` and the language server.
//!
//! Exactly once: each outbox row is sent with the idempotency key it was written with, and
//! leaves the outbox only after the server answered it; a process killed in between sends it
//! again, and the server answers the repeat without doing it twice. Rows go in order; a row
//! the server refuses for good (a 4xx other than 401 and 429) is held with the server's message
//! and the rest go on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;

use crate::api;
use crate::store::{Incoming, Queued, Store, StoreError};

use super::client::{Call, Client, SyncError};
use super::convert::codemark_in;
use super::sse::SseParser;

/// The setting holding the cursor of the changes pulled from a server (suffixed by its URL).
pub const CURSOR_SETTING: &str = "sync.cursor:";
/// The setting recording that the user saw what leaves for a server and agreed.
pub const APPROVED_SETTING: &str = "sync.approved:";

/// Waits longer than this between tries are not waited out in `marginalia sync`.
pub const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// What a push did.
#[derive(Debug, Default)]
pub struct Pushed {
    pub sent: usize,
    /// Rows waiting for the user (secrets, refusals), with why.
    pub held: Vec<Queued>,
    /// Why the push stopped before the end (offline, signed out), when it did.
    pub stopped: Option<SyncError>,
}

/// What a pull did.
#[derive(Debug, Default)]
pub struct Pulled {
    pub events: usize,
    /// Repositories (store keys) whose codemarks changed.
    pub repos: Vec<String>,
    /// Codemarks that changed or went.
    pub codemarks: Vec<String>,
    /// Changes that could not be taken (a value this build cannot read), with why.
    pub skipped: Vec<String>,
    /// Feedback requests that changed or went (read from the server when shown).
    pub reviews: Vec<String>,
}

/// Runs store work off the async threads.
pub async fn db<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store.lock().unwrap_or_else(|e| e.into_inner()))).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(SyncError::Setup(format!("internal error: {e}"))),
    }
}

/// Whether the user agreed to what leaves for this server.
pub async fn approved(store: &Arc<Mutex<Store>>, server: &str) -> Result<bool, SyncError> {
    let key = format!("{APPROVED_SETTING}{server}");
    Ok(db(store, move |s| s.setting(&key)).await?.is_some())
}

/// Records that the user agreed to what leaves for this server.
pub async fn approve(store: &Arc<Mutex<Store>>, server: &str) -> Result<(), SyncError> {
    let key = format!("{APPROVED_SETTING}{server}");
    let at = crate::codemark::rfc3339(crate::codemark::now_ms());
    db(store, move |s| s.set_setting(&key, Some(&at))).await
}

/// Sends every row of the outbox that may go, oldest first.
pub async fn push(store: &Arc<Mutex<Store>>, client: &Client) -> Result<Pushed, SyncError> {
    let server = client.server().to_owned();
    let rows = db(store, move |s| s.outbox(&server)).await?;
    let mut done = Pushed::default();
    for row in rows {
        if row.out.held.is_some() {
            done.held.push(row);
            continue;
        }
        let method = Method::from_bytes(row.out.method.as_bytes()).unwrap_or(Method::POST);
        let call = Call {
            method,
            path: &row.out.path,
            body: row.out.body.as_deref(),
            key: Some(&row.out.key),
            subject: Some(&row.out.codemark_id),
            code_bytes: row.out.code_bytes,
            note: row.out.note.clone(),
        };
        let seq = row.seq;
        match client.call(call).await {
            Ok(_) => {
                db(store, move |s| s.outbox_sent(seq)).await?;
                done.sent += 1;
            }
            // Created already (sent before without its key): the server has it.
            Err(SyncError::Refused { status: 409, .. }) if row.out.op == "create" => {
                db(store, move |s| s.outbox_sent(seq)).await?;
                done.sent += 1;
            }
            // Gone on the server: a change to it, or its deletion, has nothing left to do.
            Err(SyncError::Refused { status: 404, .. }) if row.out.op == "delete" => {
                db(store, move |s| s.outbox_sent(seq)).await?;
            }
            Err(e) if e.is_permanent() => {
                let why = e.to_string();
                db(store, move |s| s.outbox_failed(seq, &why, true)).await?;
                let mut held = row.clone();
                held.out.held = Some(e.to_string());
                done.held.push(held);
            }
            Err(e) => {
                let why = e.to_string();
                db(store, move |s| s.outbox_failed(seq, &why, false)).await?;
                done.stopped = Some(e);
                break;
            }
        }
    }
    Ok(done)
}

/// Takes every change since the stored cursor, page by page.
pub async fn pull(store: &Arc<Mutex<Store>>, client: &Client) -> Result<Pulled, SyncError> {
    let key = format!("{CURSOR_SETTING}{}", client.server());
    let k = key.clone();
    let mut cursor = db(store, move |s| s.setting(&k)).await?;
    let mut out = Pulled::default();
    loop {
        let path = match &cursor {
            Some(c) => format!("/changes?after={}&limit={}", urlencode(c), api::limits::MAX_PAGE),
            None => format!("/changes?limit={}", api::limits::MAX_PAGE),
        };
        let page: api::Changes = client.json(Call::get(&path)).await?;
        let more = page.more && !page.events.is_empty();
        take(store, client.server(), &key, page.events, &page.cursor, &mut out).await?;
        cursor = Some(page.cursor);
        if !more {
            return Ok(out);
        }
    }
}

/// Applies events and moves the cursor, in one transaction.
async fn take(
    store: &Arc<Mutex<Store>>,
    server: &str,
    key: &str,
    events: Vec<api::Event>,
    cursor: &str,
    out: &mut Pulled,
) -> Result<(), SyncError> {
    out.events += events.len();
    let mut changes = Vec::with_capacity(events.len());
    for e in events {
        match e.change {
            api::Change::Codemark { codemark } => match codemark_in(codemark, server) {
                Ok(c) => {
                    out.codemarks.push(c.id.clone());
                    changes.push(Incoming::Upsert(c));
                }
                Err(why) => out.skipped.push(why),
            },
            api::Change::CodemarkDeleted { id } => {
                out.codemarks.push(id.clone());
                changes.push(Incoming::Delete(id));
            }
            api::Change::Review { review } => out.reviews.push(review.id),
            api::Change::ReviewDeleted { id } => out.reviews.push(id),
        }
    }
    let (server, key, cursor) = (server.to_owned(), key.to_owned(), cursor.to_owned());
    let repos = db(store, move |s| s.apply_incoming(&server, &changes, (&key, &cursor))).await?;
    for r in repos {
        if !out.repos.contains(&r) {
            out.repos.push(r);
        }
    }
    Ok(())
}

/// Follows the event stream from the stored cursor until it ends or fails, handing each batch
/// of taken changes to `changed`. Returns why it stopped; the caller waits and calls again.
pub async fn follow(store: &Arc<Mutex<Store>>, client: &Client, changed: &(dyn Fn(Pulled) + Send + Sync)) -> SyncError {
    let key = format!("{CURSOR_SETTING}{}", client.server());
    let k = key.clone();
    let cursor = match db(store, move |s| s.setting(&k)).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let path = match &cursor {
        Some(c) => format!("/events?after={}", urlencode(c)),
        None => "/events".to_owned(),
    };
    let answer = match client.open_stream(&path).await {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut bytes = answer.bytes_stream();
    let mut parser = SseParser::default();
    while let Some(chunk) = bytes.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return SyncError::Offline {
                    server: client.server().to_owned(),
                    cause: format!("the event stream broke: {e}"),
                };
            }
        };
        let mut events = Vec::new();
        for ev in parser.push(&chunk) {
            if ev.event != "change" {
                continue;
            }
            match serde_json::from_str::<api::Event>(&ev.data) {
                Ok(e) => events.push(e),
                Err(e) => tracing::warn!("an event from {} this marginalia cannot read: {e}", client.server()),
            }
        }
        let Some(last) = events.last().map(|e| e.cursor.clone()) else { continue };
        let mut out = Pulled::default();
        if let Err(e) = take(store, client.server(), &key, events, &last, &mut out).await {
            return e;
        }
        changed(out);
    }
    SyncError::Offline { server: client.server().to_owned(), cause: "the event stream ended".into() }
}

/// How long to wait before trying again after the `n`th failure in a row: 1 s doubling to 30 s,
/// or what the server asked for.
pub fn backoff(n: u32, e: &SyncError) -> Duration {
    if let SyncError::RateLimited { retry_after, .. } = e {
        return *retry_after;
    }
    Duration::from_secs(1u64 << n.min(5)).min(Duration::from_secs(30))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
