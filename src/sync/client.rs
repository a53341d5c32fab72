//! The team server's HTTP client: one place that sends requests, and so the one place that
//! records each of them in the egress ledger (before sending, completed with the answer),
//! enforces TLS (plain `http://` only to loopback), and turns answers into [`SyncError`]s that
//! say what to do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::api;
use crate::codemark::now_ms;
use crate::store::{Egress, Store, StoreError};

/// A whole request, answer included, may take this long.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The event stream sends a keep-alive well within this; silence this long means it is dead.
const STREAM_IDLE: Duration = Duration::from_secs(90);

pub use crate::transport::CA_ENV;

/// A bearer token. Never printed: `Debug` shows only that there is one.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Token {
        Token(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Why talking to the server did not work, worded for the person who reads it.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Not signed in, a bad server address, no token: nothing was sent.
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach {server}: {cause}; changes stay queued and go when it answers")]
    Offline { server: String, cause: String },
    #[error(
        "{server} does not accept this token ({message}); sign in again with `marginalia login --server {server} --invite CODE`"
    )]
    Unauthorized { server: String, message: String },
    #[error("{server} refused {what}: {message}")]
    Refused { server: String, status: u16, what: String, message: String },
    #[error("{server} asks to wait {}s before the next request", retry_after.as_secs())]
    RateLimited { server: String, retry_after: Duration },
    #[error("{server} failed ({status}): {message}; trying again later")]
    Server { server: String, status: u16, message: String },
    #[error(
        "{server} answered what this marginalia cannot read ({detail}); is it a marginalia server of this version?"
    )]
    Protocol { server: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    /// A refusal that sending the same request again cannot change.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SyncError::Refused { .. })
    }
}

/// Checks a server address and gives its canonical form (no trailing `/`): `https://`, or
/// `http://` to this machine only (the server's dev mode), so tokens and code never cross a
/// network in the clear.
pub fn server_url(s: &str) -> Result<String, SyncError> {
    crate::transport::check_url(s)
        .map_err(|why| SyncError::Setup(format!("`{s}` is not a server address to use: {why}")))
}

/// One request to send.
pub struct Call<'a> {
    pub method: Method,
    /// From `/api/v1`, with its query.
    pub path: &'a str,
    pub body: Option<&'a str>,
    /// The `Idempotency-Key`.
    pub key: Option<&'a str>,
    /// What it is about, for the ledger (a codemark id).
    pub subject: Option<&'a str>,
    pub code_bytes: usize,
    /// Recorded in the ledger beside it.
    pub note: Option<String>,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str) -> Call<'a> {
        Call { method: Method::GET, path, body: None, key: None, subject: None, code_bytes: 0, note: None }
    }
}

/// Talks to one server with one token, recording every request in the ledger of `store`.
pub struct Client {
    server: String,
    http: reqwest::Client,
    stream: reqwest::Client,
    token: Option<Token>,
    store: Arc<Mutex<Store>>,
}

impl Client {
    /// A client of `server` (checked with [`server_url`]); `token` may be absent only for
    /// signing in.
    pub fn new(server: &str, token: Option<Token>, store: Arc<Mutex<Store>>) -> Result<Client, SyncError> {
        let server = server_url(server)?;
        let build = |b: reqwest::ClientBuilder| -> Result<reqwest::Client, SyncError> {
            let b = b
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("marginalia/", env!("CARGO_PKG_VERSION")))
                .https_only(!server.starts_with("http://"));
            crate::transport::with_extra_roots(b)
                .map_err(SyncError::Setup)?
                .build()
                .map_err(|e| SyncError::Setup(format!("cannot set up HTTPS: {e}")))
        };
        let http = build(reqwest::Client::builder().timeout(TIMEOUT))?;
        let stream = build(reqwest::Client::builder().read_timeout(STREAM_IDLE))?;
        Ok(Client { server, http, stream, token, store })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends a call and reads its JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, SyncError> {
        let answer = self.send(&self.http, call).await?;
        let bytes = answer.bytes().await.map_err(|e| self.offline(e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.protocol(e.to_string()))
    }

    /// Sends a call whose answer's body does not matter; returns its status.
    pub async fn call(&self, call: Call<'_>) -> Result<StatusCode, SyncError> {
        Ok(self.send(&self.http, call).await?.status())
    }

    /// Opens a long-lived stream (the event stream): the answer, once its status is good.
    pub async fn open_stream(&self, path: &str) -> Result<reqwest::Response, SyncError> {
        self.send(&self.stream, Call::get(path)).await
    }

    async fn send(&self, http: &reqwest::Client, call: Call<'_>) -> Result<reqwest::Response, SyncError> {
        let url = format!("{}{}{}", self.server, api::PREFIX, call.path);
        let endpoint = format!("{}{}", api::PREFIX, call.path.split('?').next().unwrap_or_default());
        let entry = Egress {
            at: now_ms(),
            destination: crate::transport::origin(&self.server),
            method: call.method.to_string(),
            endpoint,
            subject: call.subject.map(str::to_owned),
            code_bytes: call.code_bytes,
            body_bytes: call.body.map_or(0, str::len),
            status: None,
            note: call.note.clone(),
        };
        let store = self.store.clone();
        // On the record before it leaves: a crash in between leaves a row without an answer.
        let row = blocking(move || store.lock().unwrap_or_else(|e| e.into_inner()).egress_begin(&entry)).await?;
        let mut req = http.request(call.method.clone(), &url).header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(k) = call.key {
            req = req.header(api::IDEMPOTENCY_HEADER, k);
        }
        if let Some(b) = call.body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_owned());
        }
        let answer = req.send().await.map_err(|e| self.offline(e))?;
        let status = answer.status();
        let store = self.store.clone();
        blocking(move || store.lock().unwrap_or_else(|e| e.into_inner()).egress_answered(row, status.as_u16())).await?;
        if status.is_success() {
            return Ok(answer);
        }
        let retry_after = answer
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = answer.bytes().await.unwrap_or_default();
        let message = match serde_json::from_slice::<api::ErrorBody>(&body) {
            Ok(e) => e.error.message,
            Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned(),
        };
        let message = if message.is_empty() { status.to_string() } else { message };
        let server = self.server.clone();
        Err(match status {
            StatusCode::UNAUTHORIZED => SyncError::Unauthorized { server, message },
            StatusCode::TOO_MANY_REQUESTS => {
                SyncError::RateLimited { server, retry_after: Duration::from_secs(retry_after.unwrap_or(5)) }
            }
            s if s.is_server_error() => SyncError::Server { server, status: s.as_u16(), message },
            s => SyncError::Refused {
                server,
                status: s.as_u16(),
                what: format!("{} {}", call.method, call.path.split('?').next().unwrap_or_default()),
                message,
            },
        })
    }

    fn offline(&self, e: reqwest::Error) -> SyncError {
        // The chain says what happened (refused, timed out, certificate not trusted).
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        if cause.contains("certificate") || cause.contains("UnknownIssuer") {
            cause
                .push_str(&format!(" (for a server with its own certificate authority, set {CA_ENV} to its PEM file)"));
        }
        SyncError::Offline { server: self.server.clone(), cause }
    }

    fn protocol(&self, detail: String) -> SyncError {
        SyncError::Protocol { server: self.server.clone(), detail }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(SyncError::Setup(format!("internal error: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_address_is_checked_with_the_transport_rules() {
        let e = server_url("http://team.example.com").unwrap_err().to_string();
        assert!(e.contains("is not a server address to use: plain http:// is refused"), "{e}");
    }

    #[test]
    fn a_token_is_never_printed() {
        let t = Token::new("mrg_secret".into());
        assert_eq!(format!("{t:?}"), "Token(…)");
    }
}
