//! Local changes to codemarks, and the requests that carry them to the team server: what the
//! language server's commands and the `codemark` verbs call, so both share one rule.
//!
//! The rule: while signed in to a server, every codemark made here (bookmarks excepted: they
//! are private) is shared with it, and every later change to a shared codemark is queued in the
//! outbox in the same transaction as the change itself. Before anything is queued, its text and
//! code are scanned for credentials; a likely secret holds the request back until the user
//! redacts it, sends it anyway, or keeps it local. Requests the server would refuse for their
//! size are held too, with the reason. Codemarks made while signed out stay on this machine.

use crate::api::{self, limits};
use crate::codemark::{Codemark, Kind, Reply, StoredAnchor, new_id};
use crate::store::{Edit, Outgoing, Store, StoreError};

use super::convert::{anchor_out, code_bytes, new_codemark, snippet_bytes};

/// The setting that holds the server this store shares codemarks with.
pub const SERVER_SETTING: &str = "sync.server";

/// What happened to a change beyond this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queued {
    /// Requests written to the outbox.
    pub requests: usize,
    /// Why they wait for the user, when they do.
    pub held: Option<String>,
}

/// The server codemarks made here are shared with, if signed in: `MARGINALIA_SERVER` (headless
/// runs), else the one `marginalia login` saved.
pub fn signed_in(store: &Store) -> Result<Option<String>, StoreError> {
    let env = std::env::var(super::session::SERVER_ENV).ok().filter(|s| !s.trim().is_empty());
    if let Some(url) = env.and_then(|s| super::client::server_url(&s).ok()) {
        return Ok(Some(url));
    }
    store.setting(SERVER_SETTING)
}

/// Saves a new codemark, and queues it for the server when signed in (not a bookmark).
pub fn create(store: &Store, mut c: Codemark) -> Result<(Codemark, Queued), StoreError> {
    let server = signed_in(store)?.filter(|_| c.kind != Kind::Bookmark);
    let Some(server) = server else {
        store.insert(&c)?;
        return Ok((c, Queued::default()));
    };
    c.shared = Some(server.clone());
    let body = new_codemark(&c);
    let code = code_bytes(&body.anchors);
    let mut text = vec![("the body", c.body.as_str())];
    text.extend(c.title.as_deref().map(|t| ("the title", t)));
    let held = too_large(&body.anchors, &c.body, c.title.as_deref()).or_else(|| scan(&text, &body.anchors));
    let out = outgoing(&server, &c.id, "create", "POST", "/codemarks".into(), json(&body), code, held.clone());
    store.insert_queued(&c, &[out])?;
    Ok((c, Queued { requests: 1, held }))
}

/// Adds a reply, queued when the codemark is shared with the signed-in server. `None` when
/// there is no such codemark.
pub fn reply(store: &Store, id: &str, r: &Reply) -> Result<Option<Queued>, StoreError> {
    let Some(server) = shared_server(store, id)? else {
        return Ok(store.add_reply(id, r)?.then(Queued::default));
    };
    let body = api::NewReply { id: r.id.clone(), body: r.body.clone(), created: r.created };
    let held = if r.body.len() > limits::MAX_BODY_BYTES {
        Some(format!("the reply is {} bytes; the server takes at most {}", r.body.len(), limits::MAX_BODY_BYTES))
    } else {
        scan(&[("the reply", &r.body)], &[])
    };
    let out = outgoing(&server, id, "reply", "POST", format!("/codemarks/{id}/replies"), json(&body), 0, held.clone());
    Ok(store.add_reply_queued(id, r, &[out])?.then_some(Queued { requests: 1, held }))
}

/// Changes a codemark's body, title or status, queued when it is shared. `None` when there is
/// no such codemark.
pub fn edit(store: &Store, id: &str, e: &Edit, now: i64) -> Result<Option<Queued>, StoreError> {
    let Some(server) = shared_server(store, id)? else {
        return Ok(store.edit(id, e, now)?.then(Queued::default));
    };
    let patch = api::CodemarkPatch {
        body: e.body.clone(),
        title: e.title.clone(),
        status: e.status.map(|s| s.as_str().to_owned()),
        anchors: None,
    };
    let op = if e.body.is_none() && e.title.is_none() { "status" } else { "edit" };
    let mut text: Vec<(&str, &str)> = e.body.iter().map(|b| ("the body", b.as_str())).collect();
    text.extend(e.title.as_ref().and_then(|t| t.as_deref()).map(|t| ("the title", t)));
    let held = too_large(&[], e.body.as_deref().unwrap_or(""), e.title.as_ref().and_then(|t| t.as_deref()))
        .or_else(|| scan(&text, &[]));
    let out = outgoing(&server, id, op, "PATCH", format!("/codemarks/{id}"), json(&patch), 0, held.clone());
    Ok(store.edit_queued(id, e, now, &[out])?.then_some(Queued { requests: 1, held }))
}

/// Deletes a codemark here, and on the server when it is shared. `false` when there is no such
/// codemark.
pub fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let queue = match shared_server(store, id)? {
        Some(server) => vec![outgoing(&server, id, "delete", "DELETE", format!("/codemarks/{id}"), None, 0, None)],
        None => Vec::new(),
    };
    store.delete_queued(id, &queue)
}

/// Saves anchors rewritten here (pending anchors whose lines are now committed), queued for the
/// server when the codemark is shared and ours (`me` is the local author, as git names us):
/// teammates then place it by the commit, not only by its text. A teammate's codemark is
/// rewritten here only; its author's client tells the server.
pub fn rewrite_anchors(
    store: &Store,
    codemark: &Codemark,
    anchors: &[StoredAnchor],
    me: &str,
) -> Result<(), StoreError> {
    let server = signed_in(store)?.filter(|s| codemark.shared.as_deref() == Some(s.as_str()));
    let ours = codemark.author == me
        || store.setting(super::session::MEMBER_SETTING)?.is_some_and(|name| name == codemark.author);
    let Some(server) = server.filter(|_| ours) else { return store.update_anchors_queued(anchors, &[]) };
    let all: Vec<api::Anchor> =
        codemark.anchors.iter().map(|a| anchors.iter().find(|b| b.id == a.id).unwrap_or(a)).map(anchor_out).collect();
    let code = code_bytes(&all);
    let patch = api::CodemarkPatch { anchors: Some(all), ..api::CodemarkPatch::default() };
    let id = &codemark.id;
    // The code was scanned when the codemark was made; a rewritten anchor is the same lines.
    let out = outgoing(&server, id, "anchors", "PATCH", format!("/codemarks/{id}"), json(&patch), code, None);
    store.update_anchors_queued(anchors, &[out])
}

/// The signed-in server, when the codemark is shared with it.
fn shared_server(store: &Store, id: &str) -> Result<Option<String>, StoreError> {
    let Some(server) = signed_in(store)? else { return Ok(None) };
    let shared = store.get(id)?.and_then(|c| c.shared);
    Ok(shared.filter(|s| *s == server))
}

#[allow(clippy::too_many_arguments)]
fn outgoing(
    server: &str,
    codemark: &str,
    op: &str,
    method: &str,
    path: String,
    body: Option<String>,
    code_bytes: usize,
    held: Option<String>,
) -> Outgoing {
    Outgoing {
        key: new_id(),
        server: server.to_owned(),
        codemark_id: codemark.to_owned(),
        op: op.to_owned(),
        method: method.to_owned(),
        path,
        body,
        code_bytes,
        held,
        note: None,
    }
}

fn json<T: serde::Serialize>(v: &T) -> Option<String> {
    Some(serde_json::to_string(v).expect("wire types always serialize"))
}

/// Likely credentials in the text and the snippets, said in one message that names where:
/// `held back: the body: line 2 has a GitHub token (ghp_…x2Qa); src/app.py: line 14 has ...`
/// (code lines are the file's, the context included).
fn scan(text: &[(&str, &str)], anchors: &[api::Anchor]) -> Option<String> {
    let said = |f: &[crate::secrets::Finding]| {
        let d = crate::secrets::describe(f);
        d.strip_prefix("held back: ").unwrap_or(&d).to_owned()
    };
    let mut parts = Vec::new();
    for (what, t) in text {
        let f = crate::secrets::scan(t);
        if !f.is_empty() {
            parts.push(format!("{what}: {}", said(&f)));
        }
    }
    for a in anchors {
        let mut lines: Vec<&str> = a.before.iter().map(String::as_str).collect();
        lines.extend(a.text.as_deref());
        lines.extend(a.after.iter().map(String::as_str));
        let mut f = crate::secrets::scan(&lines.join("\n"));
        let first = (a.start as usize).saturating_sub(a.before.len()).max(1);
        for x in &mut f {
            x.line += first - 1;
        }
        if !f.is_empty() {
            parts.push(format!("{}: {}", a.path, said(&f)));
        }
    }
    (!parts.is_empty()).then(|| format!("held back: {}", parts.join("; ")))
}

/// What the server would refuse for its size, said before it is sent.
fn too_large(anchors: &[api::Anchor], body: &str, title: Option<&str>) -> Option<String> {
    if body.len() > limits::MAX_BODY_BYTES {
        return Some(format!("the body is {} bytes; the server takes at most {}", body.len(), limits::MAX_BODY_BYTES));
    }
    if let Some(t) = title.filter(|t| t.len() > limits::MAX_TITLE_BYTES) {
        return Some(format!("the title is {} bytes; the server takes at most {}", t.len(), limits::MAX_TITLE_BYTES));
    }
    if anchors.len() > limits::MAX_ANCHORS {
        return Some(format!("it has {} anchors; the server takes at most {}", anchors.len(), limits::MAX_ANCHORS));
    }
    anchors.iter().enumerate().find(|(_, a)| snippet_bytes(a) > limits::MAX_SNIPPET_BYTES).map(|(i, a)| {
        format!(
            "anchor {} ({} lines {}-{}) is {} bytes of code; the server takes at most {} per anchor",
            i + 1,
            a.path,
            a.start,
            a.end,
            snippet_bytes(a),
            limits::MAX_SNIPPET_BYTES
        )
    })
}

/// A queued request's body with every likely secret in its strings replaced, its bytes of code
/// after, and what was found (rule names), for people. A body that is not JSON is redacted as
/// text.
pub fn redact_body(body: &str) -> (String, usize, String) {
    let mut rules: Vec<&'static str> = Vec::new();
    let (out, code) = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut v) => {
            walk_strings(&mut v, &mut |s| {
                let (r, found) = crate::secrets::redact(s);
                rules.extend(found.iter().map(|f| f.rule));
                *s = r;
            });
            let code = v
                .get("anchors")
                .and_then(serde_json::Value::as_array)
                .map(|anchors| {
                    anchors
                        .iter()
                        .filter_map(|a| serde_json::from_value::<api::Anchor>(a.clone()).ok())
                        .map(|a| snippet_bytes(&a))
                        .sum()
                })
                .unwrap_or(0);
            (v.to_string(), code)
        }
        Err(_) => {
            let (r, found) = crate::secrets::redact(body);
            rules.extend(found.iter().map(|f| f.rule));
            (r, 0)
        }
    };
    rules.sort_unstable();
    rules.dedup();
    let found = if rules.is_empty() { "nothing".to_owned() } else { rules.join(", ") };
    (out, code, found)
}

fn walk_strings(v: &mut serde_json::Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk_strings(x, f)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}
