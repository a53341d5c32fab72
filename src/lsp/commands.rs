//! The commands (`workspace/executeCommand`) and custom requests: their stable names and
//! arguments, documented in the README. Each argument is one JSON object; a missing or wrong
//! field is an `InvalidParams` error that names it.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::{self as lsp, Uri};

use crate::anchor::{LineRange, Relocation, Status, Text, Via};
use crate::codemark::{self, Codemark, Kind, MarkStatus, Reply, new_id, now_ms};
use crate::store::Edit;
use crate::sync::outbox;

use super::proto::{BadPosition, byte_col, selected_lines};
use super::{Backend, blocking, internal, invalid, lock, views, with_store};

pub const CREATE: &str = "marginalia.codemark.create";
pub const REPLY: &str = "marginalia.codemark.reply";
pub const RESOLVE: &str = "marginalia.codemark.resolve";
pub const REOPEN: &str = "marginalia.codemark.reopen";
pub const EDIT: &str = "marginalia.codemark.edit";
pub const DELETE: &str = "marginalia.codemark.delete";
/// What a code lens runs: shows the thread (as a message) and returns the codemark.
pub const SHOW: &str = "marginalia.codemark.show";

pub const COMMANDS: &[&str] = &[
    CREATE,
    REPLY,
    RESOLVE,
    REOPEN,
    EDIT,
    DELETE,
    SHOW,
    // Pull requests (`pulls.rs`).
    super::pulls::CURRENT,
    super::pulls::THREADS,
    super::pulls::COMMENT,
    super::pulls::REPLY,
    super::pulls::CREATE,
    super::pulls::THREAD,
    // Feedback requests (`reviews.rs`).
    super::reviews::REQUEST,
    super::reviews::LIST,
    super::reviews::OPEN,
    super::reviews::COMMENT,
    super::reviews::APPROVE,
    super::reviews::REQUEST_CHANGES,
    super::reviews::CLOSE,
];

/// Bodies and titles longer than this are refused (they are discussions, not files).
const MAX_TEXT_BYTES: usize = 256 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    uri: Uri,
    range: lsp::Range,
    #[serde(default)]
    kind: Option<String>,
    body: String,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
struct ReplyArgs {
    id: String,
    body: String,
}

#[derive(Deserialize)]
struct EditArgs {
    id: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    title: Option<Option<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodemarksParams {
    text_document: lsp::TextDocumentIdentifier,
}

fn args<T: DeserializeOwned>(command: &str, arg: Value) -> Result<T> {
    serde_json::from_value(arg).map_err(|e| invalid(format!("bad argument to {command}: {e}")))
}

fn check_text(field: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(invalid(format!("`{field}` is {} bytes; the limit is {MAX_TEXT_BYTES}", text.len())));
    }
    Ok(())
}

impl Backend {
    pub(super) async fn create(&self, arg: Value) -> Result<Value> {
        let a: CreateArgs = args(CREATE, arg)?;
        let kind: Kind = a.kind.as_deref().unwrap_or("comment").parse().map_err(invalid)?;
        check_text("body", &a.body)?;
        check_text("title", a.title.as_deref().unwrap_or(""))?;
        if a.body.trim().is_empty() && kind != Kind::Bookmark {
            return Err(invalid("`body` is empty: say something (only bookmarks may be empty)"));
        }
        self.settled(&a.uri).await;
        self.ensure_doc(&a.uri).map_err(invalid)?;
        let enc = self.enc();
        let (text, home, lines) = {
            let docs = lock(&self.shared.docs);
            let doc = docs.get(&a.uri).ok_or_else(|| invalid("the document was closed"))?;
            let home = match (&doc.home, &doc.unplaceable) {
                (Some(h), _) => h.clone(),
                (None, Some(why)) => return Err(invalid(why.clone())),
                (None, None) => return Err(invalid(format!("{} is not inside a git repository", a.uri.as_str()))),
            };
            let (s, e) = selected_lines(a.range);
            let count = doc.text.line_count();
            if e >= count {
                return Err(invalid(format!(
                    "the range ends on line {} but the document has {count} lines (lines count from 0)",
                    e
                )));
            }
            for p in [a.range.start, a.range.end] {
                if let Err((_, BadPosition::InsideCharacter { .. })) = byte_col(doc.text.line(p.line), p.character, enc)
                {
                    return Err(invalid(format!(
                        "character {} on line {} falls inside a character (a UTF-16 surrogate pair or UTF-8 sequence)",
                        p.character, p.line
                    )));
                }
            }
            (doc.text.text().to_owned(), home, LineRange::from_zero(s, e))
        };
        let shared = self.shared.clone();
        let (idx, path) = home;
        let (title, body) = (a.title.filter(|t| !t.trim().is_empty()), a.body);
        let made = blocking(move || -> std::result::Result<(Codemark, outbox::Queued), String> {
            let mut work = lock(&shared.work);
            let rs = &mut work.repos[idx];
            if rs.gone || !rs.root.exists() {
                return Err(format!(
                    "the repository at {} is gone: codemarks can only be made on a checkout that exists",
                    rs.root.display()
                ));
            }
            let anchor =
                codemark::anchor_selection(&rs.repo, &path, &Text::new(text), lines).map_err(|e| e.to_string())?;
            let now = now_ms();
            let author = codemark::author(Some(&rs.repo));
            let c = Codemark {
                id: new_id(),
                repo: rs.key.clone(),
                kind,
                title,
                body,
                author,
                status: MarkStatus::Open,
                anchors: vec![anchor],
                replies: Vec::new(),
                created: now,
                updated: now,
                shared: None,
                review: None,
            };
            let (c, queued) = with_store(&shared, |store| outbox::create(store, c).map_err(|e| e.to_string()))?;
            let here = Relocation { status: Status::Intact, path: path.clone(), lines, via: Via::Diff };
            work.add_mark(idx, c.clone(), here);
            Ok((c, queued))
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        let (made, queued) = made;
        self.queued(&made.id, queued);
        {
            let mut docs = lock(&self.shared.docs);
            if let Some(doc) = docs.get_mut(&a.uri) {
                let an = &made.anchors[0];
                doc.add(made.id.clone(), an.id.clone(), lines, an.anchor.text.clone());
            }
        }
        self.announce(&a.uri).await;
        Ok(self.view(&made.id))
    }

    pub(super) async fn reply(&self, arg: Value) -> Result<Value> {
        let a: ReplyArgs = args(REPLY, arg)?;
        check_text("body", &a.body)?;
        if a.body.trim().is_empty() {
            return Err(invalid("`body` is empty: a reply says something"));
        }
        let id = a.id.clone();
        self.update(&a.id, move |store, author| {
            let r = Reply { id: new_id(), author, body: a.body, created: now_ms() };
            outbox::reply(store, &id, &r).map_err(|e| e.to_string())
        })
        .await
    }

    pub(super) async fn set_status(&self, arg: Value, status: MarkStatus) -> Result<Value> {
        let a: IdArgs = args(if status == MarkStatus::Open { REOPEN } else { RESOLVE }, arg)?;
        let id = a.id.clone();
        self.update(&a.id, move |store, _| {
            let status = Edit { status: Some(status), ..Edit::default() };
            outbox::edit(store, &id, &status, now_ms()).map_err(|e| e.to_string())
        })
        .await
    }

    pub(super) async fn edit(&self, arg: Value) -> Result<Value> {
        let a: EditArgs = args(EDIT, arg)?;
        if a.body.is_none() && a.title.is_none() {
            return Err(invalid("nothing to edit: give `body`, `title` or both"));
        }
        check_text("body", a.body.as_deref().unwrap_or(""))?;
        check_text("title", a.title.as_ref().and_then(|t| t.as_deref()).unwrap_or(""))?;
        let id = a.id.clone();
        let edit = Edit { body: a.body, title: a.title.map(|t| t.filter(|t| !t.trim().is_empty())), status: None };
        self.update(&a.id, move |store, _| outbox::edit(store, &id, &edit, now_ms()).map_err(|e| e.to_string())).await
    }

    pub(super) async fn delete(&self, arg: Value) -> Result<Value> {
        let a: IdArgs = args(DELETE, arg)?;
        let shared = self.shared.clone();
        let id = a.id.clone();
        let found = blocking(move || {
            let mut work = lock(&shared.work);
            let found = with_store(&shared, |store| outbox::delete(store, &id).map_err(|e| e.to_string()))?;
            work.update_mark(&id, None);
            Ok::<_, String>(found)
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        if !found {
            return Err(invalid(format!("no codemark `{}`", a.id)));
        }
        self.queued(&a.id, outbox::Queued { requests: 1, held: None });
        let uris = self.docs_with(&a.id);
        for d in lock(&self.shared.docs).values_mut() {
            d.placed.retain(|p| p.codemark != a.id);
        }
        for uri in uris {
            self.announce(&uri).await;
        }
        Ok(json!({ "id": a.id, "deleted": true }))
    }

    pub(super) async fn show(&self, arg: Value) -> Result<Value> {
        let a: IdArgs = args(SHOW, arg)?;
        let c = self.lookup(&a.id).ok_or_else(|| invalid(format!("no codemark `{}`", a.id)))?;
        let text = views::thread_markdown(&c, None);
        self.client.show_message(lsp::MessageType::INFO, text).await;
        Ok(self.view(&a.id))
    }

    /// Runs a store change on one codemark, reloads it, and tells the documents that show it.
    async fn update(
        &self,
        id: &str,
        change: impl FnOnce(&crate::store::Store, String) -> std::result::Result<Option<outbox::Queued>, String>
        + Send
        + 'static,
    ) -> Result<Value> {
        let shared = self.shared.clone();
        let key = id.to_owned();
        let found = blocking(move || {
            let mut work = lock(&shared.work);
            let fresh = with_store(&shared, |store| {
                let Some(before) = store.get(&key).map_err(|e| e.to_string())? else { return Ok(None) };
                let author = codemark::author(work.repo_of(&before).map(|i| &work.repos[i].repo));
                let Some(queued) = change(store, author)? else { return Ok(None) };
                Ok(store.get(&key).map_err(|e| e.to_string())?.map(|c| (c, queued)))
            })?;
            let queued = fresh.map(|(c, q)| {
                work.update_mark(&key, Some(c));
                q
            });
            Ok::<_, String>(queued)
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        let Some(queued) = found else {
            return Err(invalid(format!("no codemark `{id}`")));
        };
        self.queued(id, queued);
        for uri in self.docs_with(id) {
            self.announce(&uri).await;
        }
        Ok(self.view(id))
    }

    fn docs_with(&self, id: &str) -> Vec<Uri> {
        lock(&self.shared.docs)
            .iter()
            .filter(|(_, d)| d.placed.iter().any(|p| p.codemark == id))
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// A codemark: the one shown in a document, else the store's.
    fn lookup(&self, id: &str) -> Option<Codemark> {
        let work = lock(&self.shared.work);
        if let Some((_, c)) = work.mark(id) {
            return Some(c.clone());
        }
        with_store(&self.shared, |store| store.get(id).map_err(|e| e.to_string())).ok().flatten()
    }

    /// One codemark with its thread, and where its anchors are in open documents.
    fn view(&self, id: &str) -> Value {
        let enc = self.enc();
        let Some(c) = self.lookup(id) else { return Value::Null };
        let docs = lock(&self.shared.docs);
        let mut v = views::codemark_json(&c, None, enc);
        let mut at = Vec::new();
        for (uri, d) in docs.iter() {
            for p in d.placed.iter().filter(|p| p.codemark == id) {
                let cur = d.current(p);
                at.push(json!({
                    "uri": uri,
                    "anchorStatus": cur.status.as_str(),
                    "range": views::range(&cur, &d.text, enc),
                }));
            }
        }
        if let Some(first) = at.first() {
            v["anchorStatus"] = first["anchorStatus"].clone();
            v["range"] = first["range"].clone();
            v["uri"] = first["uri"].clone();
        }
        v["locations"] = Value::Array(at);
        v
    }

    /// `marginalia/codemarks`: every codemark of a document with its current range.
    pub async fn codemarks(&self, params: CodemarksParams) -> Result<Value> {
        let uri = params.text_document.uri;
        if uri.scheme().as_str() == super::reviews::SCHEME {
            return self.review_codemarks(uri.as_str()).await;
        }
        self.settled(&uri).await;
        let opened_here = !lock(&self.shared.docs).contains_key(&uri);
        if opened_here {
            self.ensure_doc(&uri).map_err(invalid)?;
            self.place(&uri).await;
        }
        self.load_threads(&uri).await;
        let enc = self.enc();
        let list = {
            let work = lock(&self.shared.work);
            let docs = lock(&self.shared.docs);
            let doc = docs.get(&uri).ok_or_else(|| invalid(format!("{} is not open", uri.as_str())))?;
            let marks = work.marks_of(doc.home.as_ref());
            let mut list: Vec<(u32, Value)> = doc
                .placed
                .iter()
                .filter_map(|p| {
                    let c = marks.get(p.codemark.as_str())?;
                    let cur = doc.current(p);
                    Some((cur.start, views::codemark_json(c, Some((&cur, &doc.text)), enc)))
                })
                .collect();
            list.sort_by_key(|(line, _)| *line);
            list.into_iter().map(|(_, v)| v).collect::<Vec<_>>()
        };
        if opened_here {
            self.close(&uri);
        }
        Ok(json!({ "codemarks": list }))
    }

    /// `marginalia/codemark`: one codemark with its thread.
    pub async fn codemark(&self, params: IdParams) -> Result<Value> {
        let v = self.view(&params.id);
        if v.is_null() {
            return Err(Error::invalid_params(format!("no codemark `{}`", params.id)));
        }
        Ok(v)
    }
}

#[derive(Deserialize)]
pub struct IdParams {
    id: String,
}
