//! The language server's side of pull requests: the current branch's pull request, its review
//! threads placed in open documents (relocated from the commit each was made on, then through
//! the buffer's unsaved edits), shown as code lenses and hovers beside codemarks and marked with
//! the provider, and commands to comment on a selection, reply and open a pull request.
//!
//! Nothing is fetched until a command asks (`marginalia.pr.threads`, or any command that
//! changes a pull request): lenses and hovers only show what was fetched, so an editor that
//! never uses pull requests sends nothing to a code host. Each repository gets one client
//! (its token looked up once); requests go through [`crate::providers`] and its egress ledger.
//! Placements in a document are remembered per document version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::{self as lsp, Uri};

use crate::anchor::{LineRange, Relocation, Status, Text};
use crate::git::Repo;
use crate::providers::place::{self, Where};
use crate::providers::{
    self, Forge, HttpOptions, NewComment, NewPull, Provider, ProviderError, PullRequest, Side, Thread,
};
use crate::store::Store;

use super::proto::{Encoding, line_range, selected_lines};
use super::{Backend, blocking, internal, invalid, lock};

pub const CURRENT: &str = "marginalia.pr.current";
pub const THREADS: &str = "marginalia.pr.threads";
pub const COMMENT: &str = "marginalia.pr.comment";
pub const REPLY: &str = "marginalia.pr.reply";
pub const CREATE: &str = "marginalia.pr.create";
/// What a pull-request lens runs: shows the thread (as a message) and returns it.
pub const THREAD: &str = "marginalia.pr.thread";

pub const COMMANDS: &[&str] = &[CURRENT, THREADS, COMMENT, REPLY, CREATE, THREAD];

/// The longest rate-limit wait sat out while the editor waits (unless
/// `MARGINALIA_PROVIDER_MAX_WAIT` says otherwise).
const EDITOR_MAX_WAIT: Duration = Duration::from_secs(10);
/// Comment bodies longer than this are refused.
const MAX_BODY_BYTES: usize = 256 << 10;

/// Pull requests per repository, and where their threads are in open documents.
#[derive(Default)]
pub struct Pulls {
    repos: Mutex<HashMap<PathBuf, Arc<RepoPulls>>>,
    placed: Mutex<HashMap<Uri, DocPlaces>>,
    generation: AtomicU64,
}

/// One repository's code host client and what was last fetched.
struct RepoPulls {
    forge: Forge,
    loaded: Mutex<Option<Arc<Loaded>>>,
}

/// A pull request and its threads, placed in the working tree when fetched.
struct Loaded {
    pull: PullRequest,
    subject: String,
    threads: Vec<Thread>,
    places: Vec<Where>,
    generation: u64,
}

/// Threads placed in one document's text: (thread index, where), for one version of it and
/// one fetch.
struct DocPlaces {
    version: i32,
    generation: u64,
    found: Vec<(usize, Relocation)>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UriArgs {
    #[serde(default)]
    uri: Option<Uri>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentArgs {
    uri: Uri,
    range: lsp::Range,
    body: String,
    /// `new` (default) or `old`.
    #[serde(default)]
    side: Option<String>,
    /// A comment on the whole file.
    #[serde(default)]
    file: bool,
    #[serde(default)]
    anyway: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplyArgs {
    thread_id: String,
    body: String,
    #[serde(default)]
    uri: Option<Uri>,
    #[serde(default)]
    anyway: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    uri: Option<Uri>,
    #[serde(default)]
    anyway: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ThreadArgs {
    thread_id: String,
}

fn args<T: serde::de::DeserializeOwned>(command: &str, arg: Value) -> Result<T> {
    let arg = if arg.is_null() { json!({}) } else { arg };
    serde_json::from_value(arg).map_err(|e| invalid(format!("bad argument to {command}: {e}")))
}

fn check_body(body: &str) -> Result<()> {
    if body.trim().is_empty() {
        return Err(invalid("`body` is empty: say something"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid(format!("`body` is {} bytes; the limit is {MAX_BODY_BYTES}", body.len())));
    }
    Ok(())
}

/// "github review: Why times three? · 2 comments · resolved", marked when outdated or when the
/// code changed or went.
fn lens_title(t: &Thread, status: Status) -> String {
    let mut s = String::new();
    if t.outdated {
        s.push_str("outdated · ");
    }
    match status {
        Status::Modified => s.push_str("code changed · "),
        Status::Deleted => s.push_str("code deleted · "),
        Status::Intact => {}
    }
    let first = t.comments.first().map(|c| c.body.lines().next().unwrap_or("").trim()).unwrap_or("");
    let head: String = if first.chars().count() > 60 {
        format!("{}…", first.chars().take(59).collect::<String>())
    } else {
        first.to_owned()
    };
    let n = t.comments.len();
    s.push_str(&format!("{} review: {head} · {n} comment{}", t.provider, if n == 1 { "" } else { "s" }));
    match t.resolved {
        Some(true) => s.push_str(" · resolved"),
        Some(false) => s.push_str(" · open"),
        None => {}
    }
    s
}

/// The thread in Markdown, for hovers and messages.
fn thread_markdown(t: &Thread, subject: &str, status: Option<Status>) -> String {
    let mut s = format!("**{} review** on {subject}", title_of(t.provider));
    match t.resolved {
        Some(true) => s.push_str(" · resolved"),
        Some(false) => s.push_str(" · open"),
        None => {}
    }
    if t.outdated {
        s.push_str(" · outdated");
    }
    match status {
        Some(Status::Modified) => s.push_str(" · code changed since"),
        Some(Status::Deleted) => s.push_str(" · code deleted"),
        _ => {}
    }
    for (i, c) in t.comments.iter().enumerate() {
        let when = c.created.as_deref().map(|d| format!(" · {}", &d[..d.len().min(10)])).unwrap_or_default();
        let sep = if i == 0 { "\n\n" } else { "\n\n---\n\n" };
        s.push_str(&format!("{sep}**{}**{when}\n\n{}", c.author.as_deref().unwrap_or("someone"), c.body));
    }
    if let Some(u) = &t.url {
        s.push_str(&format!("\n\n[Open on {}]({u})", title_of(t.provider)));
    }
    s
}

fn title_of(p: Provider) -> &'static str {
    p.title()
}

fn range_of(rel: &Relocation, doc: &crate::anchor::Document, enc: Encoding) -> lsp::Range {
    let (s, e) = (rel.lines.start.saturating_sub(1), rel.lines.end.saturating_sub(1));
    if rel.status == Status::Deleted {
        let p = lsp::Position::new(s.min(doc.line_count().saturating_sub(1)), 0);
        return lsp::Range::new(p, p);
    }
    line_range(doc, s, e, enc)
}

fn pull_json(pr: &PullRequest, subject: &str, provider: Provider) -> Value {
    let mut v = serde_json::to_value(pr).unwrap_or(Value::Null);
    v["provider"] = json!(provider);
    v["subject"] = json!(subject);
    v
}

impl Backend {
    pub(super) async fn pull_command(&self, name: &str, arg: Value) -> Result<Value> {
        match name {
            CURRENT => self.pr_current(arg).await,
            THREADS => self.pr_threads(arg).await,
            COMMENT => self.pr_comment(arg).await,
            REPLY => self.pr_reply(arg).await,
            CREATE => self.pr_create(arg).await,
            THREAD => self.pr_thread(arg).await,
            other => Err(invalid(format!("unknown command `{other}`"))),
        }
    }

    /// The repository root of a document (opened from disk when the editor has not), or of the
    /// first repository of the workspace when no document is named.
    fn pr_root(&self, uri: Option<&Uri>) -> Result<(PathBuf, Option<String>)> {
        if let Some(uri) = uri {
            self.ensure_doc(uri).map_err(invalid)?;
            let home = {
                let docs = lock(&self.shared.docs);
                let doc = docs.get(uri).ok_or_else(|| invalid("the document was closed"))?;
                match (&doc.home, &doc.unplaceable) {
                    (Some(h), _) => h.clone(),
                    (None, Some(why)) => return Err(invalid(why.clone())),
                    (None, None) => return Err(invalid(format!("{} is not inside a git repository", uri.as_str()))),
                }
            };
            let work = lock(&self.shared.work);
            let root = work.repos.get(home.0).map(|r| r.root.clone()).ok_or_else(|| internal("no such repository"))?;
            return Ok((root, Some(home.1)));
        }
        let work = lock(&self.shared.work);
        let root = work
            .repos
            .iter()
            .find(|r| !r.gone)
            .map(|r| r.root.clone())
            .ok_or_else(|| invalid("no git repository is open in the editor: name a document with `uri`"))?;
        Ok((root, None))
    }

    /// The code host client of a repository, made once (the token is looked up then).
    async fn pr_client(&self, root: &Path) -> Result<Arc<RepoPulls>> {
        if let Some(r) = lock(&self.shared.pulls.repos).get(root) {
            return Ok(r.clone());
        }
        let at = root.to_path_buf();
        let forge = blocking(move || -> std::result::Result<Forge, String> {
            let repo = Repo::open(&at).map_err(|e| e.to_string())?;
            let store = Store::open_default().map_err(|e| e.to_string())?;
            let mut options = HttpOptions::from_env();
            if std::env::var_os(providers::http::MAX_WAIT_ENV).is_none() {
                options.max_wait = options.max_wait.min(EDITOR_MAX_WAIT);
            }
            providers::connect(&repo, Arc::new(Mutex::new(store)), None, options).map_err(|e| e.to_string())
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        let made = Arc::new(RepoPulls { forge, loaded: Mutex::new(None) });
        Ok(lock(&self.shared.pulls.repos).entry(root.to_path_buf()).or_insert(made).clone())
    }

    /// A provider's refusal as an error answer. A refused token also forgets the repository's
    /// client, so the next command looks the token up again (after `marginalia auth login`).
    fn pr_refused(&self, root: &Path, e: ProviderError) -> Error {
        if matches!(e, ProviderError::BadToken { .. }) {
            lock(&self.shared.pulls.repos).remove(root);
        }
        invalid(e.to_string())
    }

    /// The open pull request of the branch checked out at `root`.
    async fn pr_of_branch(&self, root: &Path, rp: &RepoPulls) -> Result<Option<PullRequest>> {
        let (at, target) = (root.to_path_buf(), rp.forge.repo.clone());
        let (branch, owner) = blocking(move || {
            let repo = Repo::open(&at).map_err(|e| e.to_string())?;
            providers::detect::head_branch(&repo, &target).map_err(|e| e.to_string())
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        rp.forge.pull_for_branch(&branch, owner.as_deref()).await.map_err(|e| self.pr_refused(root, e))
    }

    async fn pr_required(&self, root: &Path, rp: &RepoPulls) -> Result<PullRequest> {
        self.pr_of_branch(root, rp).await?.ok_or_else(|| {
            invalid(format!(
                "the branch checked out in {} has no open {} on {}",
                root.display(),
                rp.forge.provider().pr_noun(),
                rp.forge.subject(None)
            ))
        })
    }

    /// Fetches a pull request's threads, places them in the working tree, keeps them, and tells
    /// the documents of that repository to show them.
    async fn pr_load(&self, root: &Path, rp: &Arc<RepoPulls>, pull: PullRequest) -> Result<Arc<Loaded>> {
        let threads = rp.forge.threads(&pull).await.map_err(|e| self.pr_refused(root, e))?;
        let at = root.to_path_buf();
        let (threads, places) = blocking(move || {
            let places = match Repo::open(&at) {
                Ok(repo) => place::in_worktree(&repo, &threads),
                Err(e) => threads.iter().map(|_| Where::Unknown(e.to_string())).collect(),
            };
            (threads, places)
        })
        .await
        .map_err(internal)?;
        let generation = self.shared.pulls.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let subject = rp.forge.subject(Some(pull.number));
        let loaded = Arc::new(Loaded { pull, subject, threads, places, generation });
        *lock(&rp.loaded) = Some(loaded.clone());
        let uris: Vec<Uri> = {
            let work = lock(&self.shared.work);
            let docs = lock(&self.shared.docs);
            docs.iter()
                .filter(|(_, d)| d.home.as_ref().and_then(|(i, _)| work.repos.get(*i)).is_some_and(|r| r.root == root))
                .map(|(u, _)| u.clone())
                .collect()
        };
        for uri in uris {
            self.announce(&uri).await;
        }
        Ok(loaded)
    }

    /// Threads placed in a document's current text, from the last fetch of its repository's
    /// pull request; `None` when nothing was fetched. Remembered per document version.
    async fn pr_placed(&self, uri: &Uri) -> Option<(Arc<Loaded>, Vec<(usize, Relocation)>)> {
        let (version, home) = {
            let docs = lock(&self.shared.docs);
            let d = docs.get(uri)?;
            (d.version, d.home.clone()?)
        };
        let root = lock(&self.shared.work).repos.get(home.0)?.root.clone();
        let rp = lock(&self.shared.pulls.repos).get(&root)?.clone();
        let loaded = lock(&rp.loaded).clone()?;
        if let Some(p) = lock(&self.shared.pulls.placed).get(uri)
            && p.version == version
            && p.generation == loaded.generation
        {
            return Some((loaded, p.found.clone()));
        }
        let text = lock(&self.shared.docs).get(uri)?.text.text().to_owned();
        let l = loaded.clone();
        let found = blocking(move || {
            let repo = Repo::open(&root).ok()?;
            let placed = place::in_text(&repo, &l.threads, &l.places, &home.1, &Text::new(text));
            Some(placed.into_iter().enumerate().filter_map(|(i, r)| r.map(|r| (i, r))).collect::<Vec<_>>())
        })
        .await
        .ok()
        .flatten()?;
        lock(&self.shared.pulls.placed)
            .insert(uri.clone(), DocPlaces { version, generation: loaded.generation, found: found.clone() });
        Some((loaded, found))
    }

    /// Code lenses for the pull request's threads in a document (beside the codemarks').
    pub(super) async fn pull_lenses(&self, uri: &Uri) -> Vec<lsp::CodeLens> {
        let Some((loaded, found)) = self.pr_placed(uri).await else { return Vec::new() };
        let enc = self.enc();
        let docs = lock(&self.shared.docs);
        let Some(doc) = docs.get(uri) else { return Vec::new() };
        found
            .iter()
            .map(|(i, rel)| {
                let t = &loaded.threads[*i];
                let r = range_of(rel, &doc.text, enc);
                lsp::CodeLens {
                    range: lsp::Range::new(r.start, r.start),
                    command: Some(lsp::Command {
                        title: lens_title(t, rel.status),
                        command: THREAD.to_owned(),
                        arguments: Some(vec![json!({ "threadId": t.id })]),
                    }),
                    data: None,
                }
            })
            .collect()
    }

    /// Hover texts of the pull request's threads on a line (0-based) of a document.
    pub(super) async fn pull_hovers(&self, uri: &Uri, line: u32) -> Vec<String> {
        let Some((loaded, found)) = self.pr_placed(uri).await else { return Vec::new() };
        found
            .iter()
            .filter(|(_, rel)| rel.lines.start <= line + 1 && line < rel.lines.end.max(rel.lines.start))
            .map(|(i, rel)| thread_markdown(&loaded.threads[*i], &loaded.subject, Some(rel.status)))
            .collect()
    }

    /// The threads of a document as `marginalia.pr.threads` returns them.
    async fn pr_doc_threads(&self, uri: &Uri, loaded: &Loaded) -> Vec<Value> {
        let found = match self.pr_placed(uri).await {
            Some((l, f)) if l.generation == loaded.generation => f,
            _ => Vec::new(),
        };
        let enc = self.enc();
        let docs = lock(&self.shared.docs);
        let Some(doc) = docs.get(uri) else { return Vec::new() };
        let mut out: Vec<(u32, Value)> = found
            .iter()
            .map(|(i, rel)| {
                let t = &loaded.threads[*i];
                let mut v = place::placed_json(t, &loaded.places[*i]);
                v["anchorStatus"] = json!(rel.status.as_str());
                v["start"] = json!(rel.lines.start);
                v["end"] = json!(rel.lines.end);
                v["range"] = serde_json::to_value(range_of(rel, &doc.text, enc)).unwrap_or(Value::Null);
                v["pullRequest"] = json!(loaded.subject);
                (rel.lines.start, v)
            })
            .collect();
        out.sort_by_key(|(l, _)| *l);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// `marginalia.pr.current {uri?}`: the open pull request of the branch checked out, or null.
    async fn pr_current(&self, arg: Value) -> Result<Value> {
        let a: UriArgs = args(CURRENT, arg)?;
        let (root, _) = self.pr_root(a.uri.as_ref())?;
        let rp = self.pr_client(&root).await?;
        Ok(match self.pr_of_branch(&root, &rp).await? {
            Some(pr) => pull_json(&pr, &rp.forge.subject(Some(pr.number)), rp.forge.provider()),
            None => Value::Null,
        })
    }

    /// `marginalia.pr.threads {uri}`: fetches the current branch's pull request and its threads,
    /// and returns those placed in the document, each with its range in the buffer.
    async fn pr_threads(&self, arg: Value) -> Result<Value> {
        let a: UriArgs = args(THREADS, arg)?;
        let uri = a.uri.ok_or_else(|| invalid("bad argument to marginalia.pr.threads: missing field `uri`"))?;
        self.settled(&uri).await;
        let (root, _) = self.pr_root(Some(&uri))?;
        let rp = self.pr_client(&root).await?;
        let Some(pull) = self.pr_of_branch(&root, &rp).await? else {
            return Ok(json!({ "pullRequest": null, "threads": [] }));
        };
        let loaded = self.pr_load(&root, &rp, pull).await?;
        let threads = self.pr_doc_threads(&uri, &loaded).await;
        Ok(json!({
            "pullRequest": pull_json(&loaded.pull, &loaded.subject, rp.forge.provider()),
            "threads": threads,
            "total": loaded.threads.len(),
        }))
    }

    /// `marginalia.pr.comment {uri, range, body, side?, file?, anyway?}`: a line or multi-line
    /// comment on the selection, on the current branch's pull request at its head commit.
    async fn pr_comment(&self, arg: Value) -> Result<Value> {
        let a: CommentArgs = args(COMMENT, arg)?;
        check_body(&a.body)?;
        let side: Side = a.side.as_deref().unwrap_or("new").parse().map_err(invalid)?;
        self.settled(&a.uri).await;
        let (root, path) = self.pr_root(Some(&a.uri))?;
        let path = path.ok_or_else(|| internal("a document without a path"))?;
        let (text, lines) = {
            let docs = lock(&self.shared.docs);
            let doc = docs.get(&a.uri).ok_or_else(|| invalid("the document was closed"))?;
            let (s, e) = selected_lines(a.range);
            let count = doc.text.line_count();
            if e >= count {
                return Err(invalid(format!(
                    "the range ends on line {e} but the document has {count} lines (lines count from 0)"
                )));
            }
            (doc.text.text().to_owned(), LineRange::from_zero(s, e))
        };
        let rp = self.pr_client(&root).await?;
        let pull = self.pr_required(&root, &rp).await?;
        let sent = if side == Side::New && !a.file {
            let head = pull.head_sha.clone().ok_or_else(|| invalid("the pull request names no head commit"))?;
            let (at, p) = (root.clone(), path.clone());
            blocking(move || {
                let repo = Repo::open(&at).map_err(|e| e.to_string())?;
                place::lines_at_commit(&repo, &head, &p, &Text::new(text), lines)
            })
            .await
            .map_err(internal)?
            .map_err(invalid)?
        } else {
            lines
        };
        let new =
            NewComment { path: path.clone(), lines: sent, side, body: a.body, file_level: a.file, anyway: a.anyway };
        let posted = rp.forge.comment(&pull, &new).await.map_err(|e| self.pr_refused(&root, e))?;
        if let Some(n) = &posted.note {
            self.client.show_message(lsp::MessageType::INFO, format!("marginalia: {n}")).await;
        }
        let subject = rp.forge.subject(Some(pull.number));
        if let Err(e) = self.pr_load(&root, &rp, pull).await {
            tracing::warn!("reading the threads again after commenting: {}", e.message);
        }
        let mut v = serde_json::to_value(&posted).unwrap_or(Value::Null);
        v["path"] = json!(path);
        v["lines"] = json!({ "start": sent.start, "end": sent.end });
        v["side"] = json!(side);
        v["pullRequest"] = json!(subject);
        Ok(v)
    }

    /// The repository and pull request a thread belongs to, from what was fetched.
    fn pr_owner_of(&self, thread: &str) -> Option<(PathBuf, Arc<RepoPulls>, Arc<Loaded>)> {
        let repos = lock(&self.shared.pulls.repos);
        repos.iter().find_map(|(root, rp)| {
            let loaded = lock(&rp.loaded).clone()?;
            loaded.threads.iter().any(|t| t.id == thread).then(|| (root.clone(), rp.clone(), loaded))
        })
    }

    /// `marginalia.pr.reply {threadId, body, uri?, anyway?}`.
    async fn pr_reply(&self, arg: Value) -> Result<Value> {
        let a: ReplyArgs = args(REPLY, arg)?;
        check_body(&a.body)?;
        let (root, rp, pull) = match (self.pr_owner_of(&a.thread_id), &a.uri) {
            (Some((root, rp, loaded)), _) => (root, rp, loaded.pull.clone()),
            (None, uri) => {
                let (root, _) = self.pr_root(uri.as_ref())?;
                let rp = self.pr_client(&root).await?;
                let pull = self.pr_required(&root, &rp).await?;
                (root, rp, pull)
            }
        };
        let posted =
            rp.forge.reply(&pull, &a.thread_id, &a.body, a.anyway).await.map_err(|e| self.pr_refused(&root, e))?;
        let subject = rp.forge.subject(Some(pull.number));
        if let Err(e) = self.pr_load(&root, &rp, pull).await {
            tracing::warn!("reading the threads again after replying: {}", e.message);
        }
        let mut v = serde_json::to_value(&posted).unwrap_or(Value::Null);
        v["pullRequest"] = json!(subject);
        Ok(v)
    }

    /// `marginalia.pr.create {title, body?, base?, draft?, uri?, anyway?}`: from the branch
    /// checked out.
    async fn pr_create(&self, arg: Value) -> Result<Value> {
        let a: CreateArgs = args(CREATE, arg)?;
        if a.title.trim().is_empty() {
            return Err(invalid("`title` is empty"));
        }
        check_body(a.body.as_deref().unwrap_or("x"))?;
        let (root, _) = self.pr_root(a.uri.as_ref())?;
        let rp = self.pr_client(&root).await?;
        let (at, target) = (root.to_path_buf(), rp.forge.repo.clone());
        let (branch, owner) = blocking(move || {
            let repo = Repo::open(&at).map_err(|e| e.to_string())?;
            providers::detect::head_branch(&repo, &target).map_err(|e| e.to_string())
        })
        .await
        .map_err(internal)?
        .map_err(invalid)?;
        let head = match owner {
            Some(o) if rp.forge.provider() == Provider::GitHub => format!("{o}:{branch}"),
            _ => branch,
        };
        let new = NewPull { title: a.title, body: a.body, head, base: a.base, draft: a.draft, anyway: a.anyway };
        let pr = rp.forge.create_pull(&new).await.map_err(|e| self.pr_refused(&root, e))?;
        let subject = rp.forge.subject(Some(pr.number));
        self.client.show_message(lsp::MessageType::INFO, format!("marginalia: opened {subject}")).await;
        Ok(pull_json(&pr, &subject, rp.forge.provider()))
    }

    /// `marginalia.pr.thread {threadId}`: one fetched thread; also shown as a message (what
    /// lenses run).
    async fn pr_thread(&self, arg: Value) -> Result<Value> {
        let a: ThreadArgs = args(THREAD, arg)?;
        let (_, _, loaded) = self.pr_owner_of(&a.thread_id).ok_or_else(|| {
            invalid(format!("no thread `{}` among the pull request threads fetched (run {THREADS} first)", a.thread_id))
        })?;
        let i = loaded.threads.iter().position(|t| t.id == a.thread_id).expect("found above");
        let t = &loaded.threads[i];
        self.client.show_message(lsp::MessageType::INFO, thread_markdown(t, &loaded.subject, None)).await;
        let mut v = place::placed_json(t, &loaded.places[i]);
        v["pullRequest"] = json!(loaded.subject);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Comment;

    fn thread(resolved: Option<bool>, outdated: bool, n: usize) -> Thread {
        Thread {
            id: "501".into(),
            provider: Provider::GitHub,
            path: Some("a.rs".into()),
            side: Side::New,
            lines: Some(LineRange::new(3, 4)),
            commit: None,
            resolved,
            outdated,
            comments: (0..n)
                .map(|i| Comment {
                    id: i.to_string(),
                    author: Some("bob".into()),
                    body: format!("Why {i}?\nmore"),
                    created: None,
                })
                .collect(),
            url: Some("https://github.com/acme/shop/pull/42#discussion_r501".into()),
            anchored_text: None,
        }
    }

    #[test]
    fn lenses_name_the_provider_the_thread_and_its_state() {
        assert_eq!(
            lens_title(&thread(Some(true), false, 2), Status::Intact),
            "github review: Why 0? · 2 comments · resolved"
        );
        assert_eq!(
            lens_title(&thread(Some(false), true, 1), Status::Modified),
            "outdated · code changed · github review: Why 0? · 1 comment · open"
        );
        assert_eq!(
            lens_title(&thread(None, false, 1), Status::Deleted),
            "code deleted · github review: Why 0? · 1 comment"
        );
        let md = thread_markdown(&thread(Some(true), false, 2), "github:acme/shop#42", None);
        assert!(
            md.starts_with(
                "**GitHub review** on github:acme/shop#42 · resolved\n\n**bob**\n\nWhy 0?\nmore\n\n---\n\n**bob**"
            ),
            "{md}"
        );
        assert!(md.ends_with("[Open on GitHub](https://github.com/acme/shop/pull/42#discussion_r501)"), "{md}");
    }
}
