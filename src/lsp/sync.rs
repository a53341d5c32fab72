//! The language server's side of a team server: when signed in, it pushes the outbox after
//! each change, follows the server's event stream so a teammate's codemark appears in the open
//! editor at once (placed in this checkout), asks before the first send to a server (showing
//! exactly what leaves), and asks what to do with a change held back for a likely secret.
//!
//! Signed out, none of this runs: solo mode. The sync client keeps its own connection to the
//! store; after taking teammates' changes it places just those codemarks again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_lsp_server::ls_types as lsp;

use crate::store::{Queued, Store};
use crate::sync::engine::{self, Pulled};
use crate::sync::{Client, SyncError, outbox, session};

use super::{Backend, blocking, lock, store_versions, with_store};

/// The outbox is tried again this often when nothing nudges it (offline retries).
const RETRY_EVERY: Duration = Duration::from_secs(30);

/// The sync client while signed in.
pub struct SyncState {
    pub server: String,
    store: Arc<Mutex<Store>>,
    client: Client,
    /// Wakes the pusher: a change was queued, or a held one released.
    nudge: tokio::sync::Notify,
    /// The user said "not now" to the first send; asked again after their next change.
    declined: AtomicBool,
    /// Held rows the user was already asked about.
    asked: Mutex<std::collections::HashSet<i64>>,
}

impl SyncState {
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn store(&self) -> &Arc<Mutex<Store>> {
        &self.store
    }

    /// Wakes the pusher: something was queued.
    pub fn nudge(&self) {
        self.declined.store(false, Ordering::Relaxed);
        self.nudge.notify_one();
    }
}

const SHARE: &str = "Share";
const SHOW: &str = "Show exactly what";
const NOT_NOW: &str = "Not now";
const REDACT: &str = "Redact and share";
const ANYWAY: &str = "Share anyway";
const KEEP: &str = "Keep it local";

impl Backend {
    /// Starts syncing when signed in (the server saved by `marginalia login`, or
    /// `MARGINALIA_SERVER` with `MARGINALIA_TOKEN`).
    pub(super) async fn start_sync(&self) {
        let opened = blocking(|| -> Result<Option<SyncState>, String> {
            let store = Store::open_default().map_err(|e| e.to_string())?;
            let Some(s) = session::current(&store).map_err(|e| e.to_string())? else { return Ok(None) };
            let store = Arc::new(Mutex::new(store));
            let client = Client::new(&s.server, Some(s.token), store.clone()).map_err(|e| e.to_string())?;
            tracing::info!("syncing with {} (token from {})", s.server, s.source);
            Ok(Some(SyncState {
                server: s.server,
                store,
                client,
                nudge: tokio::sync::Notify::new(),
                declined: AtomicBool::new(false),
                asked: Mutex::new(Default::default()),
            }))
        })
        .await;
        let state = match opened {
            Ok(Ok(Some(s))) => Arc::new(s),
            Ok(Ok(None)) => return,
            Ok(Err(e)) | Err(e) => {
                self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {e}")).await;
                return;
            }
        };
        *lock(&self.shared.sync) = Some(state.clone());
        let me = self.again();
        let st = state.clone();
        tokio::spawn(async move { me.push_loop(st).await });
        let me = self.again();
        tokio::spawn(async move { me.follow_loop(state).await });
    }

    fn again(&self) -> Backend {
        Backend { client: self.client.clone(), shared: self.shared.clone() }
    }

    /// After a command changed a codemark: wakes the pusher, and asks about a held change.
    pub(super) fn queued(&self, codemark: &str, q: outbox::Queued) {
        let Some(state) = lock(&self.shared.sync).clone() else { return };
        if q.requests == 0 {
            return;
        }
        state.declined.store(false, Ordering::Relaxed);
        if q.held.is_some() {
            let (me, codemark) = (self.again(), codemark.to_owned());
            tokio::spawn(async move { me.ask_about_held(&state, Some(&codemark)).await });
        } else {
            state.nudge.notify_one();
        }
    }

    async fn push_loop(&self, st: Arc<SyncState>) {
        let mut said: Option<String> = None;
        loop {
            let rows = engine::db(&st.store, {
                let server = st.server.clone();
                move |s| s.outbox(&server)
            })
            .await
            .unwrap_or_default();
            let ready = rows.iter().filter(|r| r.out.held.is_none()).count();
            let mut go = ready > 0;
            if go && !engine::approved(&st.store, &st.server).await.unwrap_or(false) {
                go = !st.declined.load(Ordering::Relaxed) && self.ask_first_send(&st, &rows).await;
            }
            if go {
                match engine::push(&st.store, &st.client).await {
                    Ok(p) => {
                        if let Some(e) = p.stopped {
                            self.sync_trouble(&mut said, &e).await;
                        } else {
                            said = None;
                        }
                        if !p.held.is_empty() {
                            self.ask_about_held(&st, None).await;
                        }
                    }
                    Err(e) => self.sync_trouble(&mut said, &e).await,
                }
            }
            let _ = tokio::time::timeout(RETRY_EVERY, st.nudge.notified()).await;
        }
    }

    async fn follow_loop(&self, st: Arc<SyncState>) {
        let mut failures = 0u32;
        let mut said: Option<String> = None;
        loop {
            // Catch up first (the stream resumes from the cursor too; a pull pages through a
            // long absence in big steps).
            match engine::pull(&st.store, &st.client).await {
                Ok(p) => {
                    failures = 0;
                    said = None;
                    self.remote_changed(p).await;
                    let me = self.again();
                    let handler = move |p: Pulled| {
                        let me = me.again();
                        tokio::spawn(async move { me.remote_changed(p).await });
                    };
                    let why = engine::follow(&st.store, &st.client, &handler).await;
                    tracing::info!("the event stream of {} stopped: {why}", st.server);
                    failures += 1;
                    tokio::time::sleep(engine::backoff(failures.min(1), &why)).await;
                }
                Err(e) => {
                    failures += 1;
                    self.sync_trouble(&mut said, &e).await;
                    tokio::time::sleep(engine::backoff(failures, &e)).await;
                }
            }
        }
    }

    /// Says a sync problem once (not at every retry): offline is logged, the rest shown.
    async fn sync_trouble(&self, said: &mut Option<String>, e: &SyncError) {
        let text = e.to_string();
        if said.as_deref() == Some(text.as_str()) {
            return;
        }
        *said = Some(text.clone());
        match e {
            SyncError::Offline { .. } | SyncError::RateLimited { .. } | SyncError::Server { .. } => {
                tracing::warn!("{text}");
                self.client.log_message(lsp::MessageType::WARNING, format!("marginalia: {text}")).await;
            }
            _ => self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {text}")).await,
        }
    }

    /// Places the codemarks a pull or the event stream changed, and tells the editor.
    async fn remote_changed(&self, p: Pulled) {
        if p.codemarks.is_empty() {
            return;
        }
        for s in &p.skipped {
            self.client.log_message(lsp::MessageType::WARNING, format!("marginalia: skipped {s}")).await;
        }
        let shared = self.shared.clone();
        let ids = p.codemarks;
        let touched = blocking(move || {
            let mut work = lock(&shared.work);
            let touched = with_store(&shared, |store| work.apply_changed(&ids, store));
            // What the sync client wrote is taken: the watcher need not place everything again.
            *lock(&shared.store_version) = with_store(&shared, store_versions).ok();
            touched
        })
        .await;
        let repos = match touched {
            Ok(Ok(r)) => r,
            Ok(Err(e)) | Err(e) => {
                self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {e}")).await;
                return;
            }
        };
        let uris: Vec<_> = lock(&self.shared.docs)
            .iter()
            .filter(|(_, d)| d.home.as_ref().is_some_and(|(i, _)| repos.contains(i)))
            .map(|(u, _)| u.clone())
            .collect();
        for uri in uris {
            self.place(&uri).await;
        }
    }

    /// Before the first send to a server: what leaves, and may it. `true` when agreed.
    async fn ask_first_send(&self, st: &SyncState, rows: &[Queued]) -> bool {
        let ready: Vec<&Queued> = rows.iter().filter(|r| r.out.held.is_none()).collect();
        let code: usize = ready.iter().map(|r| r.out.code_bytes).sum();
        let message = format!(
            "marginalia is about to share with {} for the first time: {} change(s), {code} bytes of code in all (the \
             lines each codemark is on, a few lines around them, and its text). Nothing is sent until you agree.",
            st.server,
            ready.len()
        );
        loop {
            match self.ask(lsp::MessageType::INFO, message.clone(), &[SHARE, SHOW, NOT_NOW]).await.as_deref() {
                Some(SHARE) => {
                    return engine::approve(&st.store, &st.server).await.is_ok();
                }
                Some(SHOW) => self.show_outgoing(&ready).await,
                _ => {
                    st.declined.store(true, Ordering::Relaxed);
                    return false;
                }
            }
        }
    }

    /// Writes exactly what would be sent to a file in the data directory and opens it.
    async fn show_outgoing(&self, rows: &[&Queued]) {
        let mut text = String::from("// What marginalia would send: each request and its body, exactly.\n");
        for r in rows {
            text.push_str(&format!("\n// {} {}{}\n", r.out.method, crate::api::PREFIX, r.out.path));
            let pretty = r
                .out
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_default();
            text.push_str(&pretty);
            text.push('\n');
        }
        let written = blocking(move || -> Result<std::path::PathBuf, String> {
            let dir = crate::store::data_dir().map_err(|e| e.to_string())?;
            let path = dir.join("outgoing-preview.jsonc");
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(path)
        })
        .await;
        match written {
            Ok(Ok(path)) => {
                let Some(uri) = lsp::Uri::from_file_path(&path) else { return };
                let params = lsp::ShowDocumentParams { uri, external: None, take_focus: Some(true), selection: None };
                let _ = tokio::time::timeout(super::CLIENT_ANSWER, self.client.show_document(params)).await;
            }
            Ok(Err(e)) | Err(e) => self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {e}")).await,
        }
    }

    /// Asks what to do with changes held back for a likely secret (each once).
    async fn ask_about_held(&self, st: &SyncState, codemark: Option<&str>) {
        let server = st.server.clone();
        let rows = engine::db(&st.store, move |s| s.outbox(&server)).await.unwrap_or_default();
        for r in rows.into_iter().filter(|r| r.out.held.is_some()) {
            if codemark.is_some_and(|c| c != r.out.codemark_id) || !lock(&st.asked).insert(r.seq) {
                continue;
            }
            let why = r.out.held.clone().unwrap_or_default();
            // A review's diffs cannot be redacted after the fact: each file is checked against
            // the author's version on the reviewer's side.
            let secret = why.starts_with("held back:") && !matches!(r.out.op.as_str(), "review" | "revision");
            let message =
                format!("marginalia did not share a {} of codemark {}: {why}", r.out.op, short(&r.out.codemark_id));
            let actions: &[&str] = if secret { &[REDACT, ANYWAY, KEEP] } else { &[KEEP] };
            let seq = r.seq;
            let choice = self.ask(lsp::MessageType::WARNING, message, actions).await;
            let done = match choice.as_deref() {
                Some(REDACT) => {
                    let body = r.out.body.clone().unwrap_or_default();
                    engine::db(&st.store, move |s| {
                        let (redacted, code, found) = outbox::redact_body(&body);
                        s.outbox_release(
                            seq,
                            Some((&redacted, code)),
                            Some(&format!("redacted before sending: {found}")),
                        )
                    })
                    .await
                }
                Some(ANYWAY) => {
                    let note = format!("sent as it was, despite: {why}");
                    engine::db(&st.store, move |s| s.outbox_release(seq, None, Some(&note))).await
                }
                Some(KEEP) => engine::db(&st.store, move |s| s.outbox_drop(seq)).await,
                _ => continue,
            };
            if let Err(e) = done {
                self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {e}")).await;
            }
        }
        st.nudge.notify_one();
    }

    /// `window/showMessageRequest`: the title of the action chosen, if any.
    async fn ask(&self, kind: lsp::MessageType, message: String, actions: &[&str]) -> Option<String> {
        let items =
            actions.iter().map(|a| lsp::MessageActionItem { title: (*a).to_owned(), properties: Default::default() });
        match self.client.show_message_request(kind, message, Some(items.collect())).await {
            Ok(Some(item)) => Some(item.title),
            _ => None,
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}
