//! The one place provider requests are sent from, so the one place that:
//!
//! - records each request in the egress ledger before it leaves (destination origin, method,
//!   path without the query, what it is about such as `github:acme/shop#42`, bytes of body and
//!   of code) and completes the row with the answer's status; never the token;
//! - refuses plain `http://` except to loopback, and attaches the token only to its provider's
//!   API origin: a redirect elsewhere (Bitbucket sends diffs through redirects) is followed
//!   without it, and a page link to another origin is not followed at all;
//! - bounds each request in time (`MARGINALIA_PROVIDER_TIMEOUT`, 30 s by default) and each
//!   answer in size;
//! - honours rate limits: `Retry-After`, the reset headers (`X-RateLimit-Reset`,
//!   `RateLimit-Reset`), GitHub's secondary limits (a minute when nothing says how long); it
//!   waits when the wait is at most `MARGINALIA_PROVIDER_MAX_WAIT` seconds (30 by default) and
//!   otherwise stops with a message saying when to try again;
//! - follows every page of a list (`Link: rel="next"` and GitLab's `X-Next-Page`; Bitbucket's
//!   `next` field);
//! - words refusals for people: whether the token, its scope or the repository is the problem.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::codemark::now_ms;
use crate::store::{Egress, Store, StoreError};

use super::detect::{is_loopback, origin};
use super::{Forge, Provider};

/// Seconds one request may take, answer included.
pub const TIMEOUT_ENV: &str = "MARGINALIA_PROVIDER_TIMEOUT";
/// Seconds a rate limit is waited out before giving up with a message.
pub const MAX_WAIT_ENV: &str = "MARGINALIA_PROVIDER_MAX_WAIT";
/// Extra certificate authorities to trust (a PEM file): a GitHub Enterprise or GitLab host with
/// a private CA. The same variable the sync client reads.
pub use crate::transport::CA_ENV;

/// Answers larger than this are refused (a list page is a few hundred KiB at most).
const MAX_BODY_BYTES: usize = 32 << 20;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Rate-limit waits for one request before giving up.
const MAX_RATE_WAITS: u32 = 3;
/// The wait when a rate-limited answer does not say how long (GitHub: "wait at least one minute").
const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(60);

/// How patient the client is.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// One request, answer included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// The longest rate-limit wait sat out; longer ones are errors that say when to retry.
    pub max_wait: Duration,
    /// Pages read from one list at most.
    pub max_pages: usize,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
            max_pages: 100,
        }
    }
}

impl HttpOptions {
    /// The defaults, with `MARGINALIA_PROVIDER_TIMEOUT` and `MARGINALIA_PROVIDER_MAX_WAIT`
    /// (seconds) applied when set.
    pub fn from_env() -> HttpOptions {
        let secs =
            |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| *s >= 0.0);
        let mut o = HttpOptions::default();
        if let Some(s) = secs(TIMEOUT_ENV).filter(|s| *s > 0.0) {
            o.timeout = Duration::from_secs_f64(s);
            o.connect_timeout = o.connect_timeout.min(o.timeout);
        }
        if let Some(s) = secs(MAX_WAIT_ENV) {
            o.max_wait = Duration::from_secs_f64(s);
        }
        o
    }
}

/// Why a provider call did not work, worded for the person who reads it. No variant holds a
/// token.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Something to set up first (no provider remote, a bad address, an unknown thread id).
    #[error("{0}")]
    Setup(String),
    /// No token anywhere; the message lists where it looked and what to do.
    #[error("{0}")]
    NoToken(String),
    #[error("cannot reach {host}: {cause}")]
    Offline { host: String, cause: String },
    #[error("{host} did not answer {what} within {secs} s; try again later ({TIMEOUT_ENV} sets the limit)")]
    Timeout { host: String, what: String, secs: u64 },
    /// 401: the token itself is the problem.
    #[error("{host} does not accept the token from {source_} ({message}): it is wrong, expired or revoked. {fix}")]
    BadToken { host: String, source_: String, message: String, fix: String },
    /// 403 that is not a rate limit: a scope or permission is missing.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such repository or pull request, or the token cannot see it.
    #[error("{0}")]
    NotFound(String),
    /// The lines are not part of the pull request's diff; nothing was posted.
    #[error("{0}")]
    NotInDiff(String),
    /// The text to send looks like it holds a credential; nothing was sent.
    #[error("{0}")]
    Held(String),
    #[error("{host}: {detail}")]
    RateLimited { host: String, detail: String, retry_at: SystemTime },
    #[error("{host} refused {what} ({status}): {message}")]
    Refused { host: String, status: u16, what: String, message: String },
    #[error("{host} failed ({status}) on {what}: {message}; try again later")]
    Server { host: String, status: u16, what: String, message: String },
    #[error("{host} answered {what} with what marginalia cannot read: {detail}")]
    Unexpected { host: String, what: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProviderError {
    /// The command line's exit code: 1 when the provider said no (not found, refused, not in
    /// the diff, rate limited) or a send was held back; 2 for what the user must set up or fix
    /// (no token, a bad token, a missing scope, no provider remote, unreachable, unreadable).
    pub fn exit_code(&self) -> u8 {
        match self {
            ProviderError::NotFound(_)
            | ProviderError::NotInDiff(_)
            | ProviderError::Held(_)
            | ProviderError::Refused { .. }
            | ProviderError::RateLimited { .. } => 1,
            _ => 2,
        }
    }
}

/// How a request authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthKind {
    Bearer,
    /// HTTP Basic with this user (Bitbucket API tokens: the Atlassian account email).
    Basic(String),
}

/// The HTTP client shared by every provider call, with the ledger it records them in.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    store: Arc<Mutex<Store>>,
    pub options: HttpOptions,
}

impl Http {
    /// A client recording in `store`'s egress ledger.
    pub fn new(store: Arc<Mutex<Store>>, options: HttpOptions) -> Result<Http, ProviderError> {
        let b = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("marginalia/", env!("CARGO_PKG_VERSION")))
            // Followed by hand, so each hop is on the record and the token stays home.
            .redirect(reqwest::redirect::Policy::none());
        let client = crate::transport::with_extra_roots(b)
            .map_err(ProviderError::Setup)?
            .build()
            .map_err(|e| ProviderError::Setup(format!("cannot set up HTTPS: {e}")))?;
        Ok(Http { client, store, options })
    }

    async fn ledger<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ProviderError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store.lock().unwrap_or_else(|e| e.into_inner()))).await {
            Ok(r) => Ok(r?),
            Err(e) => Err(ProviderError::Setup(format!("internal error: {e}"))),
        }
    }
}

/// One request to send.
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    /// The `Accept` header; the provider's JSON type when `None`.
    pub accept: Option<&'static str>,
    /// A JSON body.
    pub body: Option<Value>,
    /// Bytes of code in the body, for the ledger.
    pub code_bytes: usize,
    /// What it is about, for the ledger: `github:acme/shop#42`.
    pub subject: String,
    /// What it asks for, for messages: `the pull requests of acme/shop`.
    pub what: String,
    /// Recorded in the ledger beside it (`sent despite: …`).
    pub note: Option<String>,
}

impl Call {
    pub fn get(url: Url, subject: String, what: String) -> Call {
        Call { method: Method::GET, url, accept: None, body: None, code_bytes: 0, subject, what, note: None }
    }

    pub fn post(url: Url, body: Value, subject: String, what: String) -> Call {
        Call { method: Method::POST, url, accept: None, body: Some(body), code_bytes: 0, subject, what, note: None }
    }

    /// A request with a JSON body and another method (`PATCH`, `PUT`: editing a comment).
    pub fn with_body(method: Method, url: Url, body: Value, subject: String, what: String) -> Call {
        Call { method, url, accept: None, body: Some(body), code_bytes: 0, subject, what, note: None }
    }

    /// The same call carrying a user's Markdown: its code counted for the ledger, and the note
    /// that goes beside it there (why it was sent despite a finding).
    pub fn carrying(mut self, markdown: &str, note: Option<String>) -> Call {
        self.code_bytes = code_bytes(markdown);
        self.note = note;
        self
    }
}

/// A provider's answer, read whole.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// How a list is split into pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Paging {
    /// A JSON array per page; the next page in `Link: <…>; rel="next"` (GitHub, GitLab), or
    /// GitLab's `X-Next-Page`.
    Link,
    /// `{values: [...], next: "…"}` (Bitbucket).
    Envelope,
}

impl Forge {
    fn auth_kind(&self) -> AuthKind {
        match self.repo.provider {
            Provider::Bitbucket => match self.token.expose().split_once(':') {
                Some((user, _)) if user.contains('@') => AuthKind::Basic(user.to_owned()),
                _ => AuthKind::Bearer,
            },
            _ => AuthKind::Bearer,
        }
    }

    fn json_type(&self) -> &'static str {
        match self.repo.provider {
            Provider::GitHub => "application/vnd.github+json",
            _ => "application/json",
        }
    }

    /// A URL under the API base: `segments` are appended one by one, each percent-encoded as
    /// a whole (so GitLab's `group/project` becomes one `group%2Fproject` segment).
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = Url::parse(&self.repo.api_base).expect("the API base was checked when it was read");
        {
            let mut path = url.path_segments_mut().expect("an http(s) URL has a path");
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends a call: on the record, with the token only to the API's origin, through
    /// redirects and rate limits; a refusal becomes the matching [`ProviderError`].
    pub(crate) async fn send(&self, call: &Call) -> Result<Answer, ProviderError> {
        let mut waited = 0;
        loop {
            let answer = self.send_once(call).await?;
            if answer.status.is_success() {
                return Ok(answer);
            }
            if let Some((wait, detail)) = rate_limited(self.repo.provider, &answer) {
                let retry_at = SystemTime::now() + wait;
                if wait <= self.http.options.max_wait && waited < MAX_RATE_WAITS {
                    waited += 1;
                    tracing::info!("{}: {detail}; waiting {} s", self.repo.host, wait.as_secs_f32());
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(ProviderError::RateLimited {
                    host: self.repo.host.clone(),
                    detail: format!("{detail}; try again {} ({} from now)", clock(retry_at), span(wait)),
                    retry_at,
                });
            }
            return Err(self.refusal(call, &answer));
        }
    }

    /// One attempt, following redirects.
    async fn send_once(&self, call: &Call) -> Result<Answer, ProviderError> {
        let home = origin(&self.repo.api_base);
        let mut url = call.url.clone();
        let mut method = call.method.clone();
        let mut body = call.body.as_ref().map(|b| serde_json::to_string(b).expect("JSON values always serialize"));
        for _ in 0..=MAX_REDIRECTS {
            check_scheme(&url, &self.repo.host)?;
            let ours = origin(url.as_str()) == home;
            let entry = Egress {
                at: now_ms(),
                destination: origin(url.as_str()),
                method: method.to_string(),
                endpoint: url.path().to_owned(),
                subject: Some(call.subject.clone()),
                code_bytes: if body.is_some() { call.code_bytes } else { 0 },
                body_bytes: body.as_ref().map_or(0, String::len),
                status: None,
                note: call.note.clone(),
            };
            // On the record before it leaves: a crash in between leaves a row without an answer.
            let row = self.http.ledger(move |s| s.egress_begin(&entry)).await?;
            let mut req = self.http.client.request(method.clone(), url.clone());
            req = req.header(reqwest::header::ACCEPT, call.accept.unwrap_or(self.json_type()));
            if ours {
                if self.repo.provider == Provider::GitHub {
                    req = req.header("X-GitHub-Api-Version", "2022-11-28");
                }
                req = match self.auth_kind() {
                    AuthKind::Bearer => req.bearer_auth(self.token.expose()),
                    AuthKind::Basic(user) => {
                        let secret = self.token.expose().split_once(':').map_or("", |(_, t)| t);
                        req.basic_auth(user, Some(secret))
                    }
                };
            }
            if let Some(b) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone());
            }
            let mut resp = req.send().await.map_err(|e| self.transport(e, &call.what))?;
            let status = resp.status();
            self.http.ledger(move |s| s.egress_answered(row, status.as_u16())).await?;
            let headers = resp.headers().clone();
            if status.is_redirection()
                && let Some(next) = headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok())
            {
                let next = url.join(next).map_err(|e| self.unexpected(&call.what, format!("a bad redirect: {e}")))?;
                if status == StatusCode::SEE_OTHER || (method == Method::POST && status.as_u16() <= 302) {
                    method = Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e, &call.what))? {
                if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(self.unexpected(&call.what, format!("an answer over {} MiB", MAX_BODY_BYTES >> 20)));
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(Answer { status, headers, body: bytes });
        }
        Err(self.unexpected(&call.what, format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// Sends a call and reads its JSON answer.
    pub(crate) async fn json(&self, call: &Call) -> Result<Value, ProviderError> {
        let a = self.send(call).await?;
        self.parse(&call.what, &a.body)
    }

    /// GETs a JSON document.
    pub(crate) async fn get_json(&self, url: Url, what: String, pr: Option<u64>) -> Result<Value, ProviderError> {
        self.json(&Call::get(url, self.subject(pr), what)).await
    }

    pub(crate) fn parse(&self, what: &str, body: &[u8]) -> Result<Value, ProviderError> {
        serde_json::from_slice(body).map_err(|e| {
            let start: String = String::from_utf8_lossy(&body[..body.len().min(80)])
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            self.unexpected(what, format!("not JSON ({e}): {:?}", start.trim()))
        })
    }

    /// Every item of a list, page after page.
    pub(crate) async fn pages(
        &self,
        first: Url,
        paging: Paging,
        what: String,
        pr: Option<u64>,
    ) -> Result<Vec<Value>, ProviderError> {
        let home = origin(&self.repo.api_base);
        let mut items = Vec::new();
        let mut url = Some(first);
        let mut seen = std::collections::HashSet::new();
        let mut pages = 0;
        while let Some(u) = url.take() {
            if !seen.insert(u.to_string()) {
                break;
            }
            if pages == self.http.options.max_pages {
                tracing::warn!("{}: stopped reading {what} after {pages} pages", self.repo.host);
                break;
            }
            pages += 1;
            let a = self.send(&Call::get(u.clone(), self.subject(pr), what.clone())).await?;
            let v = self.parse(&what, &a.body)?;
            let (page, next) = match paging {
                Paging::Link => {
                    let Value::Array(page) = v else {
                        return Err(self.unexpected(&what, format!("a list was expected, not {}", kind(&v))));
                    };
                    let next = next_link(&a.headers).or_else(|| next_page_header(&a.headers, &u));
                    (page, next.map(|n| u.join(&n)).transpose().ok().flatten())
                }
                Paging::Envelope => {
                    let next = v.get("next").and_then(Value::as_str).and_then(|n| u.join(n).ok());
                    let Some(Value::Array(page)) = v.get("values").cloned() else {
                        return Err(
                            self.unexpected(&what, format!("a page with `values` was expected, not {}", kind(&v)))
                        );
                    };
                    (page, next)
                }
            };
            items.extend(page);
            if let Some(n) = &next
                && origin(n.as_str()) != home
            {
                return Err(self.unexpected(
                    &what,
                    format!(
                        "the next page is on another host ({}); not following it with the token",
                        origin(n.as_str())
                    ),
                ));
            }
            url = next;
        }
        Ok(items)
    }

    pub(crate) fn unexpected(&self, what: &str, detail: String) -> ProviderError {
        ProviderError::Unexpected { host: self.repo.host.clone(), what: what.to_owned(), detail }
    }

    fn transport(&self, e: reqwest::Error, what: &str) -> ProviderError {
        if e.is_timeout() {
            return ProviderError::Timeout {
                host: self.repo.host.clone(),
                what: what.to_owned(),
                secs: self.http.options.timeout.as_secs_f64().ceil() as u64,
            };
        }
        // The chain says what happened (refused, no such host, certificate not trusted).
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        if cause.contains("certificate") || cause.contains("UnknownIssuer") {
            cause.push_str(&format!(" (for a host with its own certificate authority, set {CA_ENV} to its PEM file)"));
        }
        ProviderError::Offline { host: self.repo.host.clone(), cause }
    }

    /// What a refused call means, for people.
    fn refusal(&self, call: &Call, a: &Answer) -> ProviderError {
        let message = error_message(&a.body)
            .unwrap_or_else(|| a.status.canonical_reason().unwrap_or("no reason given").to_owned());
        let host = self.repo.host.clone();
        let source = self.token_source.to_string();
        let write = call.method != Method::GET;
        let scopes = scope_hint(self.repo.provider, write);
        let what = call.what.clone();
        match a.status.as_u16() {
            401 => ProviderError::BadToken {
                host,
                source_: source,
                message,
                fix: format!(
                    "Run `marginalia auth login {}{}` with a new token ({scopes}), or set {}",
                    self.repo.provider,
                    self.host_flag(),
                    super::auth::env_vars(self.repo.provider, &self.repo.host).join(" or ")
                ),
            },
            403 => ProviderError::Forbidden(self.forbidden(a, &what, &message, &source, write)),
            404 => ProviderError::NotFound(format!(
                "{host} has no {what}, or the token from {source} cannot see it (it needs {scopes}, and access to {})",
                self.repo.slug()
            )),
            s if s >= 500 => ProviderError::Server { host, status: s, what, message },
            s => ProviderError::Refused { host, status: s, what, message },
        }
    }

    fn host_flag(&self) -> String {
        if self.repo.host == self.repo.provider.public_host() || self.repo.overridden {
            String::new()
        } else {
            format!(" --host {}", self.repo.host)
        }
    }

    fn forbidden(&self, a: &Answer, what: &str, message: &str, source: &str, write: bool) -> String {
        let host = &self.repo.host;
        let header = |n: &str| a.headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
        match self.repo.provider {
            Provider::GitHub => {
                if let Some(needed) = header("x-accepted-oauth-scopes") {
                    let has = header("x-oauth-scopes").unwrap_or("none");
                    return format!(
                        "{host} refused {what}: the token from {source} has the scopes `{has}` but this needs one of \
                         `{needed}` ({message})"
                    );
                }
                if let Some(perms) = header("x-accepted-github-permissions") {
                    return format!(
                        "{host} refused {what}: the token from {source} lacks a permission this needs (`{perms}` for a \
                         fine-grained token) ({message})"
                    );
                }
            }
            Provider::GitLab => {
                if let Ok(v) = serde_json::from_slice::<Value>(&a.body)
                    && v.get("error").and_then(Value::as_str) == Some("insufficient_scope")
                {
                    return format!(
                        "{host} refused {what}: the token from {source} lacks the scope for it ({}): {}",
                        scope_hint(Provider::GitLab, write),
                        v.get("error_description").and_then(Value::as_str).unwrap_or(message)
                    );
                }
            }
            Provider::Bitbucket => {}
        }
        format!(
            "{host} refused {what} ({message}): the token from {source} may lack {}, or your account may lack access \
             to {} on {host}",
            scope_hint(self.repo.provider, write),
            self.repo.slug()
        )
    }
}

/// The scopes a provider wants, for messages.
pub fn scope_hint(p: Provider, write: bool) -> &'static str {
    match (p, write) {
        (Provider::GitHub, false) => {
            "the `repo` scope (`public_repo` for a public repository), or read access to pull requests for a \
             fine-grained token"
        }
        (Provider::GitHub, true) => {
            "the `repo` scope (`public_repo` for a public repository), or read and write access to pull requests \
             for a fine-grained token"
        }
        (Provider::GitLab, false) => "the `read_api` scope",
        (Provider::GitLab, true) => "the `api` scope",
        (Provider::Bitbucket, false) => "the `read:pullrequest:bitbucket` and `read:repository:bitbucket` scopes",
        (Provider::Bitbucket, true) => "the `write:pullrequest:bitbucket` scope",
    }
}

/// The message in a provider's error body: GitHub `{message, errors[]}`, GitLab `{message}`
/// (a string, or field errors) or `{error, error_description}`, Bitbucket `{error: {message,
/// detail}}`; else the start of the text.
fn error_message(body: &[u8]) -> Option<String> {
    let text = |s: &str| {
        let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let s = s.trim().to_owned();
        (!s.is_empty())
            .then(|| if s.chars().count() > 300 { format!("{}…", s.chars().take(300).collect::<String>()) } else { s })
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return text(&String::from_utf8_lossy(body)) };
    let mut parts = Vec::new();
    match v.get("message") {
        Some(Value::String(s)) => parts.push(s.clone()),
        Some(Value::Object(fields)) => {
            for (k, e) in fields {
                let said = match e {
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
                    other => other.as_str().map_or_else(|| other.to_string(), str::to_owned),
                };
                parts.push(format!("{k} {said}"));
            }
        }
        Some(Value::Array(a)) => parts.extend(a.iter().filter_map(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    if let Some(e) = v.get("error") {
        match e {
            Value::String(s) => {
                parts.push(s.clone());
                if let Some(d) = v.get("error_description").and_then(Value::as_str) {
                    parts.push(d.to_owned());
                }
            }
            Value::Object(_) => {
                parts.extend(e.get("message").and_then(Value::as_str).map(str::to_owned));
                if let Some(d) = e.get("detail") {
                    parts.push(d.as_str().map_or_else(|| d.to_string(), str::to_owned));
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Array(errors)) = v.get("errors") {
        for e in errors {
            let said = e
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| e.as_str().map(str::to_owned))
                .or_else(|| {
                    let field = e.get("field").and_then(Value::as_str)?;
                    let code = e.get("code").and_then(Value::as_str).unwrap_or("invalid");
                    Some(format!("{field} {code}"))
                });
            parts.extend(said);
        }
    }
    if parts.is_empty() {
        return text(&String::from_utf8_lossy(body));
    }
    text(&parts.join("; "))
}

/// Whether an answer is a rate limit, how long to wait, and what to tell people.
fn rate_limited(p: Provider, a: &Answer) -> Option<(Duration, String)> {
    let header = |n: &str| a.headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let status = a.status.as_u16();
    let remaining_zero = header("x-ratelimit-remaining").or(header("ratelimit-remaining")) == Some("0");
    let said = error_message(&a.body).unwrap_or_default().to_ascii_lowercase();
    let secondary = said.contains("secondary rate limit") || said.contains("abuse");
    let limited = status == 429 || (status == 403 && (remaining_zero || secondary || said.contains("rate limit")));
    if !limited {
        return None;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
    let reset = header("x-ratelimit-reset")
        .or(header("ratelimit-reset"))
        .and_then(|v| v.parse::<u64>().ok())
        // GitLab's RateLimit-Reset is a time; some proxies send seconds. A small number is seconds.
        .map(
            |t| if t > 1_000_000_000 { Duration::from_secs(t.saturating_sub(now) + 1) } else { Duration::from_secs(t) },
        );
    let wait = retry_after.or(if remaining_zero { reset } else { None }).or(reset).unwrap_or(DEFAULT_RATE_WAIT);
    let limit = header("x-ratelimit-limit").or(header("ratelimit-limit"));
    let detail = if secondary {
        format!("{}'s secondary rate limit (too many requests at once)", p.title())
    } else if remaining_zero {
        match limit {
            Some(l) => format!("the rate limit of {l} requests is used up"),
            None => "the rate limit is used up".to_owned(),
        }
    } else {
        "too many requests (rate limited)".to_owned()
    };
    Some((wait, detail))
}

/// `14:05:09 UTC` for a time within the day, else the RFC 3339 form.
fn clock(t: SystemTime) -> String {
    let full = humantime::format_rfc3339_seconds(t).to_string();
    let soon = t.duration_since(SystemTime::now()).unwrap_or_default() < Duration::from_secs(20 * 3600);
    match (soon, full.split_once('T')) {
        (true, Some((_, time))) => format!("at {} UTC", time.trim_end_matches('Z')),
        _ => format!("at {full}"),
    }
}

/// `42 s`, `7 min`, `2 h 5 min`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_owned());
            }
        }
    }
    None
}

/// GitLab's `X-Next-Page: 3` when there is no `Link` header: the same URL with `page=3`.
fn next_page_header(headers: &HeaderMap, current: &Url) -> Option<String> {
    let n = headers.get("x-next-page")?.to_str().ok()?.trim().parse::<u64>().ok()?;
    let mut next = current.clone();
    let kept: Vec<(String, String)> =
        current.query_pairs().filter(|(k, _)| k != "page").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    next.query_pairs_mut().clear().extend_pairs(kept).append_pair("page", &n.to_string());
    Some(next.to_string())
}

/// `https://`, or `http://` to this machine only.
fn check_scheme(url: &Url, host: &str) -> Result<(), ProviderError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host_str().is_some_and(is_loopback) => Ok(()),
        other => Err(ProviderError::Unexpected {
            host: host.to_owned(),
            what: "a redirect".into(),
            detail: format!("it points at {other}://{}: only https:// is followed", url.host_str().unwrap_or("")),
        }),
    }
}

/// Bytes of code in a Markdown text: the lines inside fenced code blocks (```` ``` ```` or
/// `~~~`, GitHub's ```` ```suggestion ```` included). The rest is prose.
pub fn code_bytes(markdown: &str) -> usize {
    let mut fence: Option<&str> = None;
    let mut n = 0;
    for line in markdown.split_inclusive('\n') {
        let t = line.trim_start();
        match fence {
            Some(f) if t.starts_with(f) => fence = None,
            Some(_) => n += line.len(),
            None if t.starts_with("```") => fence = Some("```"),
            None if t.starts_with("~~~") => fence = Some("~~~"),
            None => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        Answer { status: StatusCode::from_u16(status).unwrap(), headers: h, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=3>; rel="next", <https://api.github.com/x?page=9>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://api.github.com/x?page=3"));
        let mut g = HeaderMap::new();
        g.insert("x-next-page", "4".parse().unwrap());
        let cur = Url::parse("https://gitlab.com/api/v4/p?per_page=100&page=3").unwrap();
        assert_eq!(next_page_header(&g, &cur).as_deref(), Some("https://gitlab.com/api/v4/p?per_page=100&page=4"));
        g.insert("x-next-page", "".parse().unwrap());
        assert_eq!(next_page_header(&g, &cur), None);
    }

    #[test]
    fn rate_limits_are_told_from_refusals() {
        let a = answer(429, &[("retry-after", "7")], "Retry later");
        assert_eq!(rate_limited(Provider::GitLab, &a).unwrap().0, Duration::from_secs(7));
        let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
        let a = answer(
            403,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-limit", "5000"), ("x-ratelimit-reset", &reset.to_string())],
            r#"{"message":"API rate limit exceeded"}"#,
        );
        let (wait, detail) = rate_limited(Provider::GitHub, &a).unwrap();
        assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(602), "{wait:?}");
        assert!(detail.contains("5000"), "{detail}");
        let a = answer(403, &[], r#"{"message":"You have exceeded a secondary rate limit. Please wait."}"#);
        let (wait, detail) = rate_limited(Provider::GitHub, &a).unwrap();
        assert_eq!(wait, DEFAULT_RATE_WAIT);
        assert!(detail.contains("secondary"), "{detail}");
        assert!(rate_limited(Provider::GitHub, &answer(403, &[], r#"{"message":"Must have admin rights"}"#)).is_none());
        assert!(rate_limited(Provider::GitHub, &answer(404, &[], "{}")).is_none());
    }

    #[test]
    fn error_bodies_of_every_provider_are_read() {
        assert_eq!(
            error_message(br#"{"message":"Bad credentials","documentation_url":"x"}"#).unwrap(),
            "Bad credentials"
        );
        assert_eq!(
            error_message(br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}"#)
                .unwrap(),
            "Validation Failed; head invalid"
        );
        assert_eq!(error_message(br#"{"message":{"title":["can't be blank"]}}"#).unwrap(), "title can't be blank");
        assert_eq!(
            error_message(br#"{"error":"insufficient_scope","error_description":"needs api"}"#).unwrap(),
            "insufficient_scope; needs api"
        );
        assert_eq!(
            error_message(br#"{"type":"error","error":{"message":"Repository not found"}}"#).unwrap(),
            "Repository not found"
        );
        assert_eq!(error_message(b"Retry later\n").unwrap(), "Retry later");
        assert_eq!(error_message(b""), None);
    }

    #[test]
    fn only_fenced_code_counts_as_code() {
        assert_eq!(code_bytes("Why cache this forever?"), 0);
        let body = "Try this:\n```suggestion\nlet x = 1;\n```\nthanks";
        assert_eq!(code_bytes(body), "let x = 1;\n".len());
        assert_eq!(code_bytes("~~~\nab\n"), 3);
    }

    #[test]
    fn waits_are_said_in_words_people_use() {
        assert_eq!(span(Duration::from_secs(42)), "42 s");
        assert_eq!(span(Duration::from_secs(600)), "10 min");
        assert_eq!(span(Duration::from_secs(7500)), "2 h 5 min");
    }
}
