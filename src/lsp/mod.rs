//! The language server (`marginalia lsp`, over stdio): codemarks in the editor.
//!
//! **Architecture invariant:** this is the only module that knows tower-lsp and the LSP types;
//! coordinates are converted in [`proto`] and nowhere else.
//!
//! - [`docs`]: open documents, edits applied strictly in version order, anchors tracked live.
//! - [`workspace`]: the repositories, where their anchors are in the working tree, what each
//!   codemark's lens shows, and the threads shown in open documents.
//! - [`views`]: what editors are shown (the JSON of `marginalia/codemarks`, lenses, hovers).
//! - [`commands`]: `workspace/executeCommand` and the custom requests.
//! - `reviews`: feedback requests: asking, listing, opening as `marginalia-review:` virtual
//!   documents, commenting, verdicts (the `marginalia.review.*` commands).
//! - [`sync`]: signed in to a team server: pushing after each change, following the event
//!   stream, asking before the first send and about changes held back for a likely secret.
//! - `pulls`: pull requests: their review threads as lenses and hovers beside codemarks, and the
//!   `marginalia.pr.*` commands.
//!
//! Locks are taken in one order, `work` then `store` then `docs`, and never across an await;
//! git and SQLite work runs on the blocking pool, where a panic becomes an error answer.

mod commands;
pub mod docs;
mod memory;
pub mod proto;
mod pulls;
mod reviews;
mod sync;
mod views;
pub mod workspace;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::{self as lsp, Uri};
use tower_lsp_server::{Bounded, Client, LanguageServer, LspService, NotCancellable, OngoingProgress, Server};

use crate::store::Store;
use docs::{Doc, MAX_DOCUMENT_BYTES};
use proto::Encoding;
use workspace::{Pass, Workspace};

/// The notification sent when a document's codemarks moved or changed.
pub const DID_CHANGE_CODEMARKS: &str = "marginalia/didChangeCodemarks";

/// How often HEAD, the refs and the store are checked for changes made outside the editor.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long the server waits for the client to answer one of its own requests.
const CLIENT_ANSWER: Duration = Duration::from_secs(10);
/// Edits are announced at most this often per document.
const NOTIFY_AFTER: Duration = Duration::from_millis(50);

/// Runs the language server on stdin and stdout until the client exits.
pub async fn serve_stdio() {
    memory::keep_idle_lean();
    let (service, socket) = LspService::build(Backend::new)
        .custom_method("marginalia/codemarks", Backend::codemarks)
        .custom_method("marginalia/codemark", Backend::codemark)
        .custom_method("marginalia/reviewDocument", Backend::review_document)
        .finish();
    Server::new(tokio::io::stdin(), tokio::io::stdout(), socket).serve(service).await;
}

#[derive(Default)]
struct Settings {
    enc: Encoding,
    diagnostics: bool,
    progress: bool,
    lens_refresh: bool,
}

/// Everything the handlers share.
#[derive(Default)]
struct Shared {
    settings: Mutex<Settings>,
    folders: Mutex<Vec<PathBuf>>,
    work: Mutex<Workspace>,
    /// The store, or why it could not be opened (then the server keeps serving what it can).
    store: Mutex<Option<std::result::Result<Store, String>>>,
    docs: Mutex<HashMap<Uri, Doc>>,
    notify_due: Mutex<HashSet<Uri>>,
    /// Repositories whose codemarks are being placed in the working tree; their documents'
    /// requests wait for it.
    refreshing: Mutex<HashSet<usize>>,
    /// The store's data version and codemark change counter when last looked at.
    store_version: Mutex<Option<(i64, i64)>>,
    /// Set after a pass over a repository: the watcher then returns freed memory to the system.
    trim_due: AtomicBool,
    /// Woken whenever a document's placement or a repository's refresh finishes.
    settle: tokio::sync::Notify,
    /// The sync client, while signed in to a team server.
    sync: Mutex<Option<Arc<sync::SyncState>>>,
    /// Feedback requests opened as virtual documents.
    reviews: reviews::Reviews,
    /// Pull requests fetched, and where their threads are in open documents.
    pulls: pulls::Pulls,
}

/// Locks even a mutex a panicking thread left poisoned: the data is still ours to serve.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Backend {
    client: Client,
    shared: Arc<Shared>,
}

/// Runs blocking work (git, SQLite) on the blocking pool; a panic there is an error answer.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::result::Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("internal error: {e}"))
}

/// The store, opened on first use; an error that names the problem when it cannot be.
fn with_store<T>(
    shared: &Shared,
    f: impl FnOnce(&Store) -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    let mut slot = lock(&shared.store);
    if slot.is_none() {
        *slot = Some(Store::open_default().map_err(|e| e.to_string()));
    }
    match slot.as_ref().expect("just set") {
        Ok(store) => f(store),
        Err(e) => Err(format!("the codemark store cannot be used: {e}")),
    }
}

fn internal(message: impl Into<String>) -> Error {
    Error { code: tower_lsp_server::jsonrpc::ErrorCode::InternalError, message: message.into().into(), data: None }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_params(message.into())
}

impl Backend {
    fn new(client: Client) -> Backend {
        Backend { client, shared: Arc::new(Shared::default()) }
    }

    fn enc(&self) -> Encoding {
        lock(&self.shared.settings).enc
    }

    /// Places a document's codemarks (again), then tells the editor.
    async fn place(&self, uri: &Uri) {
        loop {
            let snapshot = {
                let mut docs = lock(&self.shared.docs);
                let Some(doc) = docs.get_mut(uri) else { return };
                doc.opening = false;
                let Some(home) = doc.home.clone() else {
                    self.shared.settle.notify_waiters();
                    return;
                };
                let version = doc.begin_placing();
                (version, doc.text.text().to_owned(), home)
            };
            let (version, text, (idx, path)) = snapshot;
            let shared = self.shared.clone();
            let found = blocking(move || {
                let mut work = lock(&shared.work);
                with_store(&shared, |store| work.place(idx, &path, &text, store))
            })
            .await;
            let (found, failed) = match found {
                Ok(Ok(f)) => (f, None),
                Ok(Err(e)) | Err(e) => (Vec::new(), Some(e)),
            };
            let again = {
                let mut docs = lock(&self.shared.docs);
                let Some(doc) = docs.get_mut(uri) else { return };
                doc.finish_placing(version, found);
                doc.replaced
            };
            self.shared.settle.notify_waiters();
            if let Some(e) = failed {
                self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {e}")).await;
                return;
            }
            if !again {
                break;
            }
        }
        self.announce(uri).await;
    }

    /// Tells the editor a document's codemarks changed: the notification, fresh diagnostics
    /// when asked for, and a code lens refresh where the client supports it.
    async fn announce(&self, uri: &Uri) {
        self.client.send_notification::<DidChangeCodemarks>(DidChangeCodemarksParams { uri: uri.clone() }).await;
        let (diagnostics, refresh) = {
            let s = lock(&self.shared.settings);
            (s.diagnostics, s.lens_refresh)
        };
        if diagnostics {
            let (diags, version) = self.diagnostics(uri);
            self.client.publish_diagnostics(uri.clone(), diags, version).await;
        }
        if refresh {
            // Not awaited by the handler: a client that never answers (or has exited) must not
            // hold the handler, and with it the server's exit, forever.
            let client = self.client.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLIENT_ANSWER, client.code_lens_refresh()).await;
            });
        }
    }

    fn diagnostics(&self, uri: &Uri) -> (Vec<lsp::Diagnostic>, Option<i32>) {
        let enc = self.enc();
        let work = lock(&self.shared.work);
        let docs = lock(&self.shared.docs);
        let Some(doc) = docs.get(uri) else { return (Vec::new(), None) };
        let marks = work.summaries_of(doc.home.as_ref());
        let diags = doc
            .placed
            .iter()
            .filter_map(|p| {
                let s = marks.get(p.codemark.as_str())?;
                Some(views::diagnostic(&p.codemark, s, &doc.current(p), &doc.text, enc))
            })
            .collect();
        (diags, Some(doc.version))
    }

    /// Announces a document's changes once the typing pauses.
    fn announce_soon(&self, uri: &Uri) {
        if !lock(&self.shared.notify_due).insert(uri.clone()) {
            return;
        }
        let (client, shared, uri) = (self.client.clone(), self.shared.clone(), uri.clone());
        tokio::spawn(async move {
            tokio::time::sleep(NOTIFY_AFTER).await;
            lock(&shared.notify_due).remove(&uri);
            Backend { client, shared }.announce(&uri).await;
        });
    }

    /// Refreshes repositories (codemarks, pending anchors, working-tree places) with progress,
    /// then places every open document of theirs again.
    async fn refresh(&self, repos: Vec<usize>, title: &str) {
        if repos.is_empty() {
            return;
        }
        lock(&self.shared.refreshing).extend(repos.iter().copied());
        let pass = Arc::new(Pass::default());
        let shared = self.shared.clone();
        let counter = pass.clone();
        let repos_for_work = repos.clone();
        let task = blocking(move || {
            let mut work = lock(&shared.work);
            let mut errors = Vec::new();
            for idx in repos_for_work {
                if let Err(e) = with_store(&shared, |store| work.refresh(idx, store, &counter)) {
                    errors.push(e);
                }
            }
            drop(work);
            let _ = with_store(&shared, |store| {
                store.release_memory();
                Ok(())
            });
            errors
        });
        tokio::pin!(task);
        let mut progress = None;
        let errors = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = pass.counted.notified(), if progress.is_none() => progress = self.begin_progress(title, &pass).await,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(p) = &progress {
                        let (n, total) = (pass.done.load(Ordering::Relaxed), pass.total.load(Ordering::Relaxed));
                        p.report_with_message(format!("{n}/{total} anchors"), (n * 100 / total.max(1)) as u32).await;
                    }
                }
            }
        };
        // A pass quicker than the client's answer to the progress request is still reported.
        if progress.is_none() {
            progress = self.begin_progress(title, &pass).await;
        }
        if let Some(p) = progress {
            p.finish_with_message(format!("{} anchors placed", pass.total.load(Ordering::Relaxed))).await;
        }
        match errors {
            Ok(errors) => {
                for e in errors {
                    self.client.show_message(lsp::MessageType::ERROR, e).await;
                }
            }
            Err(e) => self.client.show_message(lsp::MessageType::ERROR, e).await,
        }
        // The documents stay busy from the end of the refresh to their placement, so a request
        // in between waits for the new answers instead of taking the old ones.
        let uris: Vec<Uri> = lock(&self.shared.docs)
            .iter_mut()
            .filter(|(_, d)| d.home.as_ref().is_some_and(|(i, _)| repos.contains(i)))
            .map(|(u, d)| {
                d.opening = true;
                u.clone()
            })
            .collect();
        {
            let mut refreshing = lock(&self.shared.refreshing);
            for i in &repos {
                refreshing.remove(i);
            }
        }
        self.shared.settle.notify_waiters();
        for uri in uris {
            self.place(&uri).await;
        }
        // The pass and the placements freed most of what they read; the next idle moment hands
        // it back (see `watch`).
        self.shared.trim_due.store(true, Ordering::Relaxed);
    }

    /// Starts a `$/progress` report for a pass with anchors to place, when the client takes them.
    async fn begin_progress(&self, title: &str, pass: &Pass) -> Option<OngoingProgress<Bounded, NotCancellable>> {
        if !lock(&self.shared.settings).progress || pass.total.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let token = lsp::ProgressToken::String(format!("marginalia/{}", crate::codemark::new_id()));
        match tokio::time::timeout(CLIENT_ANSWER, self.client.create_work_done_progress(token.clone())).await {
            Ok(Ok(())) => Some(self.client.progress(token, title).with_percentage(0).begin().await),
            _ => None,
        }
    }

    /// Refreshes in a task of its own, so the handler that asked returns at once; documents of
    /// these repositories wait for it before answering.
    fn spawn_refresh(&self, repos: Vec<usize>) {
        lock(&self.shared.refreshing).extend(repos.iter().copied());
        let me = Backend { client: self.client.clone(), shared: self.shared.clone() };
        tokio::spawn(async move { me.refresh(repos, "Placing codemarks").await });
    }

    /// Watches for what changes codemarks' places outside the editor: commits, checkouts and
    /// pulls (HEAD moves), and other processes writing the store (the CLI, a second editor).
    fn watch(&self) {
        let (client, shared) = (self.client.clone(), self.shared.clone());
        tokio::spawn(async move {
            let me = Backend { client, shared };
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                if me.shared.trim_due.swap(false, Ordering::Relaxed) {
                    _ = blocking(memory::release).await;
                }
                let shared = me.shared.clone();
                let stale = blocking(move || {
                    let work = lock(&shared.work);
                    let version = with_store(&shared, store_versions).ok();
                    let mut seen = lock(&shared.store_version);
                    // Another connection wrote (data version), and what it wrote was codemarks
                    // (the counter), not a cache or the ledger.
                    let store_moved = match (*seen, version) {
                        (Some((d0, c0)), Some((d1, c1))) => d0 != d1 && c0 != c1,
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    *seen = version;
                    work.repos
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| !r.gone && (store_moved || !r.root.exists() || r.repo.head() != r.head))
                        .map(|(i, _)| i)
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                me.refresh(stale, "Placing codemarks").await;
            }
        });
    }

    /// The document at `uri`, opened from disk when the editor has not opened it.
    fn ensure_doc(&self, uri: &Uri) -> std::result::Result<(), String> {
        if lock(&self.shared.docs).contains_key(uri) {
            return Ok(());
        }
        let path = file_path(uri)?;
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (home, why) = self.home_of(uri, &text);
        let mut doc = Doc::new(0, if why.is_some() { String::new() } else { text });
        doc.home = home;
        doc.unplaceable = why;
        lock(&self.shared.docs).entry(uri.clone()).or_insert(doc);
        Ok(())
    }

    /// Forgets a document, and the codemarks only it showed.
    fn close(&self, uri: &Uri) {
        let mut work = lock(&self.shared.work);
        let mut docs = lock(&self.shared.docs);
        let Some(Doc { home: Some((idx, _)), .. }) = docs.remove(uri) else { return };
        let keep: HashSet<String> = docs
            .values()
            .filter(|d| d.home.as_ref().is_some_and(|(i, _)| *i == idx))
            .flat_map(|d| d.placed.iter().map(|p| p.codemark.clone()))
            .collect();
        work.keep_shown(idx, &keep);
    }

    /// The repository and path of a document, or why it cannot hold codemarks.
    fn home_of(&self, uri: &Uri, text: &str) -> (Option<(usize, String)>, Option<String>) {
        let path = match file_path(uri) {
            Ok(p) => p,
            Err(e) => return (None, Some(e)),
        };
        if text.len() > MAX_DOCUMENT_BYTES {
            let why = format!(
                "{} is larger than {MAX_DOCUMENT_BYTES} bytes; codemarks are not tracked in it",
                path.display()
            );
            return (None, Some(why));
        }
        if text.contains('\0') {
            return (None, Some(format!("{} is a binary file; codemarks go on lines of text", path.display())));
        }
        let mut work = lock(&self.shared.work);
        let idx = match work.find(&path) {
            Some(i) => Some(i),
            None => work.open(&path).ok().flatten(),
        };
        match idx {
            Some(i) => {
                let root = &work.repos[i].root;
                let canon = std::fs::canonicalize(&path).unwrap_or(path.clone());
                let rel = canon.strip_prefix(root).unwrap_or(&canon);
                (Some((i, rel.to_string_lossy().replace('\\', "/"))), None)
            }
            None => (None, Some(format!("{} is not inside a git repository", path.display()))),
        }
    }

    /// Reads the threads of a document's codemarks that are not in memory yet (lenses need only
    /// the summaries; hovers and `marginalia/codemarks` show whole threads).
    async fn load_threads(&self, uri: &Uri) {
        let wanted = {
            let work = lock(&self.shared.work);
            let docs = lock(&self.shared.docs);
            let Some(Doc { home: Some(home), placed, .. }) = docs.get(uri) else { return };
            let shown = work.marks_of(Some(home));
            let missing: Vec<String> =
                placed.iter().filter(|p| !shown.contains_key(&p.codemark)).map(|p| p.codemark.clone()).collect();
            if missing.is_empty() {
                return; // the usual case once a document was hovered: no trip to the blocking pool
            }
            (home.0, missing)
        };
        let shared = self.shared.clone();
        let read = blocking(move || {
            let (idx, ids) = wanted;
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut work = lock(&shared.work);
            with_store(&shared, |store| work.show(idx, &ids, store))
        })
        .await;
        match read {
            // What the read freed goes back at the next idle moment, as after a pass.
            Ok(Ok(n)) if n > 0 => self.shared.trim_due.store(true, Ordering::Relaxed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) | Err(e) => tracing::warn!("reading the threads of {}: {e}", uri.as_str()),
        }
    }

    /// Waits until a document's codemarks are placed (it was just opened, or changed wholesale),
    /// so a request answers for the text the editor has; gives up after 30 seconds.
    async fn settled(&self, uri: &Uri) {
        for _ in 0..1_500 {
            let woken = self.shared.settle.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let busy = match lock(&self.shared.docs).get(uri) {
                Some(d) if d.opening || d.placing > 0 => true,
                Some(Doc { home: Some((i, _)), .. }) => lock(&self.shared.refreshing).contains(i),
                _ => false,
            };
            if !busy {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), woken).await;
        }
    }
}

/// The store's data version (moved by other connections' writes) and codemark change counter.
fn store_versions(s: &Store) -> std::result::Result<(i64, i64), String> {
    let data = s.data_version().map_err(|e| e.to_string())?;
    Ok((data, s.codemarks_version().map_err(|e| e.to_string())?))
}

/// The file a `file:` URI names.
fn file_path(uri: &Uri) -> std::result::Result<PathBuf, String> {
    if uri.scheme().as_str() != "file" {
        return Err(format!("{} is not a file: only file: URIs can hold codemarks", uri.as_str()));
    }
    uri.to_file_path().map(|p| p.into_owned()).ok_or_else(|| format!("{} does not name a file", uri.as_str()))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DidChangeCodemarksParams {
    uri: Uri,
}

enum DidChangeCodemarks {}

impl lsp::notification::Notification for DidChangeCodemarks {
    type Params = DidChangeCodemarksParams;
    const METHOD: &'static str = DID_CHANGE_CODEMARKS;
}

/// Settings from `initializationOptions` or `workspace/didChangeConfiguration`: either
/// `{"diagnostics": true}` or the same under a `"marginalia"` key.
fn read_settings(value: &Value, settings: &mut Settings) {
    let v = value.get("marginalia").unwrap_or(value);
    if let Some(d) = v.get("diagnostics").and_then(Value::as_bool) {
        settings.diagnostics = d;
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: lsp::InitializeParams) -> Result<lsp::InitializeResult> {
        let caps = &params.capabilities;
        let enc = Encoding::negotiate(caps.general.as_ref().and_then(|g| g.position_encodings.as_deref()));
        {
            let mut s = lock(&self.shared.settings);
            s.enc = enc;
            s.progress = caps.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false);
            s.lens_refresh = caps
                .workspace
                .as_ref()
                .and_then(|w| w.code_lens.as_ref())
                .and_then(|c| c.refresh_support)
                .unwrap_or(false);
            if let Some(opts) = &params.initialization_options {
                read_settings(opts, &mut s);
            }
        }
        let mut folders: Vec<PathBuf> =
            params.workspace_folders.iter().flatten().filter_map(|f| file_path(&f.uri).ok()).collect();
        #[allow(deprecated)]
        if folders.is_empty() {
            folders.extend(params.root_uri.as_ref().and_then(|u| file_path(u).ok()));
        }
        *lock(&self.shared.folders) = folders;
        let sync = lsp::TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(lsp::TextDocumentSyncKind::INCREMENTAL),
            save: Some(lsp::TextDocumentSyncSaveOptions::Supported(true)),
            ..lsp::TextDocumentSyncOptions::default()
        };
        Ok(lsp::InitializeResult {
            server_info: Some(lsp::ServerInfo {
                name: "marginalia".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            capabilities: lsp::ServerCapabilities {
                position_encoding: Some(enc.kind()),
                text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(sync)),
                code_lens_provider: Some(lsp::CodeLensOptions { resolve_provider: Some(false) }),
                hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
                execute_command_provider: Some(lsp::ExecuteCommandOptions {
                    commands: commands::COMMANDS.iter().map(|c| c.to_string()).collect(),
                    ..lsp::ExecuteCommandOptions::default()
                }),
                workspace: Some(lsp::WorkspaceServerCapabilities {
                    workspace_folders: Some(lsp::WorkspaceFoldersServerCapabilities {
                        supported: Some(true),
                        change_notifications: Some(lsp::OneOf::Left(true)),
                    }),
                    file_operations: None,
                }),
                ..lsp::ServerCapabilities::default()
            },
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: lsp::InitializedParams) {
        let shared = self.shared.clone();
        let opened = blocking(move || {
            let store = with_store(&shared, |s| {
                // What the store was when we started; the watcher reacts to later writers.
                *lock(&shared.store_version) = store_versions(s).ok();
                Ok(())
            });
            let folders = lock(&shared.folders).clone();
            let mut work = lock(&shared.work);
            let mut repos = Vec::new();
            for f in folders {
                for i in work.open_folder(&f) {
                    if !repos.contains(&i) {
                        repos.push(i);
                    }
                }
            }
            // Marked before the workspace is let go, so documents opened meanwhile wait.
            lock(&shared.refreshing).extend(repos.iter().copied());
            (store, repos)
        })
        .await;
        let (store, repos) = opened.unwrap_or_else(|e| (Err(e), Vec::new()));
        if let Err(e) = store {
            self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {e}")).await;
        }
        let me = Backend { client: self.client.clone(), shared: self.shared.clone() };
        tokio::spawn(async move {
            me.refresh(repos, "Placing codemarks").await;
            me.watch();
            me.start_sync().await;
        });
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: lsp::DidOpenTextDocumentParams) {
        let td = params.text_document;
        // In before the first await: requests that follow (lenses, hovers) find it and wait for
        // its codemarks, and changes that follow apply to it.
        let mut doc = Doc::new(td.version, td.text.clone());
        doc.opening = true;
        lock(&self.shared.docs).insert(td.uri.clone(), doc);
        let me = Backend { client: self.client.clone(), shared: self.shared.clone() };
        let uri = td.uri.clone();
        let found = blocking(move || {
            let known = lock(&me.shared.work).repos.len();
            let (home, why) = me.home_of(&uri, &td.text);
            let new_repo = home.as_ref().map(|(i, _)| *i).filter(|&i| i >= known);
            (home, why, new_repo)
        })
        .await;
        let (home, why, new_repo) = match found {
            Ok((home, why, new_repo)) => {
                let mut docs = lock(&self.shared.docs);
                if let Some(doc) = docs.get_mut(&td.uri) {
                    if home.is_none() {
                        // Nothing to track: do not keep a huge or binary text around.
                        doc.text = crate::anchor::Document::new(String::new());
                    }
                    doc.home = home.clone();
                    doc.unplaceable = why.clone();
                }
                (home, why, new_repo)
            }
            Err(e) => (None, Some(e), None),
        };
        match new_repo {
            Some(i) => self.spawn_refresh(vec![i]),
            None => self.place(&td.uri).await,
        }
        if let (None, Some(why)) = (home, why) {
            tracing::info!("{why}");
            if why.contains("binary") || why.contains("larger") || why.contains("internal") {
                self.client.show_message(lsp::MessageType::WARNING, format!("marginalia: {why}")).await;
            }
        }
    }

    async fn did_change(&self, params: lsp::DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let enc = self.enc();
        let (applied, replaced, marked) = {
            let mut docs = lock(&self.shared.docs);
            let Some(doc) = docs.get_mut(&uri) else {
                tracing::warn!("a change to {} which is not open", uri.as_str());
                return;
            };
            let applied = doc.change(params.text_document.version, params.content_changes, enc);
            (applied, doc.replaced && doc.placing == 0, !doc.placed.is_empty())
        };
        for w in &applied.warnings {
            tracing::warn!("{}: {w}", uri.as_str());
            self.client.log_message(lsp::MessageType::WARNING, format!("{}: {w}", uri.as_str())).await;
        }
        if applied.waiting > 0 {
            let (client, shared, uri) = (self.client.clone(), self.shared.clone(), uri.clone());
            tokio::spawn(async move {
                tokio::time::sleep(docs::GAP_WAIT).await;
                let me = Backend { client, shared };
                let drained = {
                    let mut docs = lock(&me.shared.docs);
                    let Some(doc) = docs.get_mut(&uri) else { return };
                    if !doc.has_waiting() {
                        return;
                    }
                    let mut out = docs::Applied::default();
                    doc.drain(enc, &mut out, true);
                    out.applied > 0
                };
                if drained {
                    me.announce_soon(&uri);
                }
            });
        }
        if replaced {
            self.place(&uri).await;
        } else if applied.applied > 0 && marked {
            self.announce_soon(&uri);
        }
    }

    async fn did_save(&self, params: lsp::DidSaveTextDocumentParams) {
        let repo = lock(&self.shared.docs).get(&params.text_document.uri).and_then(|d| d.home.as_ref().map(|h| h.0));
        if let Some(i) = repo {
            self.spawn_refresh(vec![i]);
        }
    }

    async fn did_close(&self, params: lsp::DidCloseTextDocumentParams) {
        self.close(&params.text_document.uri);
        if lock(&self.shared.settings).diagnostics {
            self.client.publish_diagnostics(params.text_document.uri, Vec::new(), None).await;
        }
    }

    async fn did_change_configuration(&self, params: lsp::DidChangeConfigurationParams) {
        let (before, after) = {
            let mut s = lock(&self.shared.settings);
            let before = s.diagnostics;
            read_settings(&params.settings, &mut s);
            (before, s.diagnostics)
        };
        if before == after {
            return;
        }
        let uris: Vec<Uri> = lock(&self.shared.docs).keys().cloned().collect();
        for uri in uris {
            if after {
                let (diags, version) = self.diagnostics(&uri);
                self.client.publish_diagnostics(uri, diags, version).await;
            } else {
                self.client.publish_diagnostics(uri, Vec::new(), None).await;
            }
        }
    }

    async fn did_change_workspace_folders(&self, params: lsp::DidChangeWorkspaceFoldersParams) {
        let added: Vec<PathBuf> = params.event.added.iter().filter_map(|f| file_path(&f.uri).ok()).collect();
        let shared = self.shared.clone();
        let repos = blocking(move || {
            let mut work = lock(&shared.work);
            let mut repos = Vec::new();
            for f in added {
                repos.extend(work.open_folder(&f));
            }
            repos
        })
        .await
        .unwrap_or_default();
        self.spawn_refresh(repos);
    }

    async fn code_lens(&self, params: lsp::CodeLensParams) -> Result<Option<Vec<lsp::CodeLens>>> {
        self.settled(&params.text_document.uri).await;
        // Pull request threads beside the codemarks (none until a `marginalia.pr.*` command).
        let pull_lenses = self.pull_lenses(&params.text_document.uri).await;
        let enc = self.enc();
        let work = lock(&self.shared.work);
        let docs = lock(&self.shared.docs);
        let Some(doc) = docs.get(&params.text_document.uri) else { return Ok(None) };
        let marks = work.summaries_of(doc.home.as_ref());
        let lenses = doc
            .placed
            .iter()
            .filter_map(|p| {
                let s = marks.get(p.codemark.as_str())?;
                let cur = doc.current(p);
                let r = views::range(&cur, &doc.text, enc);
                Some(lsp::CodeLens {
                    range: lsp::Range::new(r.start, r.start),
                    command: Some(lsp::Command {
                        title: views::lens_title(s, cur.status),
                        command: commands::SHOW.to_owned(),
                        arguments: Some(vec![json!({ "id": p.codemark })]),
                    }),
                    data: None,
                })
            })
            .chain(pull_lenses)
            .collect();
        Ok(Some(lenses))
    }

    async fn hover(&self, params: lsp::HoverParams) -> Result<Option<lsp::Hover>> {
        let pos = params.text_document_position_params;
        self.settled(&pos.text_document.uri).await;
        self.load_threads(&pos.text_document.uri).await;
        let pull_hovers = self.pull_hovers(&pos.text_document.uri, pos.position.line).await;
        let work = lock(&self.shared.work);
        let docs = lock(&self.shared.docs);
        let Some(doc) = docs.get(&pos.text_document.uri) else { return Ok(None) };
        let marks = work.marks_of(doc.home.as_ref());
        let line = pos.position.line;
        let threads: Vec<String> = doc
            .placed
            .iter()
            .filter_map(|p| {
                let cur = doc.current(p);
                (cur.start <= line && line <= cur.end).then_some(())?;
                let c = marks.get(p.codemark.as_str())?;
                Some(views::thread_markdown(c, Some(cur.status)))
            })
            .chain(pull_hovers)
            .collect();
        if threads.is_empty() {
            return Ok(None);
        }
        Ok(Some(lsp::Hover {
            contents: lsp::HoverContents::Markup(lsp::MarkupContent {
                kind: lsp::MarkupKind::Markdown,
                value: threads.join("\n\n---\n\n"),
            }),
            range: None,
        }))
    }

    async fn execute_command(&self, params: lsp::ExecuteCommandParams) -> Result<Option<lsp::LSPAny>> {
        let arg = params.arguments.into_iter().next().unwrap_or(Value::Null);
        let result = match params.command.as_str() {
            commands::CREATE => self.create(arg).await,
            commands::REPLY => self.reply(arg).await,
            commands::RESOLVE => self.set_status(arg, crate::codemark::MarkStatus::Resolved).await,
            commands::REOPEN => self.set_status(arg, crate::codemark::MarkStatus::Open).await,
            commands::EDIT => self.edit(arg).await,
            commands::DELETE => self.delete(arg).await,
            commands::SHOW => self.show(arg).await,
            name if pulls::COMMANDS.contains(&name) => self.pull_command(name, arg).await,
            name if reviews::COMMANDS.contains(&name) => self.review_command(name, arg).await,
            other => {
                return Err(invalid(format!(
                    "unknown command `{other}`: this server offers {}",
                    commands::COMMANDS.join(", ")
                )));
            }
        };
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                self.client.show_message(lsp::MessageType::ERROR, format!("marginalia: {}", e.message)).await;
                Err(e)
            }
        }
    }
}
