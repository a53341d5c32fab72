//! Signing in to a team server, and finding the token again: the OS keychain, where
//! `marginalia login` puts it, or `MARGINALIA_TOKEN` for headless runs (CI bots). The store
//! keeps which server (a setting), never the token; nothing here logs or prints it, except
//! `--print-token`, once, on the user's request.

use std::sync::{Arc, Mutex};

use reqwest::Method;

use crate::api;
use crate::keychain::Keychain;
use crate::store::Store;

use super::client::{Call, Client, SyncError, Token, server_url};
use super::outbox::SERVER_SETTING;

/// The token of headless runs.
pub const TOKEN_ENV: &str = "MARGINALIA_TOKEN";
/// The server of headless runs (else the one `marginalia login` saved).
pub const SERVER_ENV: &str = "MARGINALIA_SERVER";
/// The keychain service tokens are kept under; the account is `sync:<server URL>`.
pub const KEYCHAIN_SERVICE: &str = "marginalia";
/// Settings naming who we are on the server, for people.
pub const TEAM_SETTING: &str = "sync.team";
pub const MEMBER_SETTING: &str = "sync.member";

fn account(server: &str) -> String {
    format!("sync:{server}")
}

/// A server to talk to and the token to talk with.
#[derive(Debug)]
pub struct Session {
    pub server: String,
    pub token: Token,
    /// Where the token came from, for people: `MARGINALIA_TOKEN` or the keychain's name.
    pub source: String,
}

/// The server in use: `MARGINALIA_SERVER`, else the one saved by `marginalia login`.
pub fn server(store: &Store) -> Result<Option<String>, SyncError> {
    if let Some(s) = std::env::var(SERVER_ENV).ok().filter(|s| !s.trim().is_empty()) {
        return server_url(&s).map(Some);
    }
    Ok(store.setting(SERVER_SETTING)?)
}

/// The session to use, `None` when not signed in anywhere. Signed in without a token to be
/// found is an error that says what to do. Blocking (the keychain).
pub fn current(store: &Store) -> Result<Option<Session>, SyncError> {
    let Some(server) = server(store)? else { return Ok(None) };
    if let Some(t) = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()) {
        return Ok(Some(Session { server, token: Token::new(t.trim().to_owned()), source: TOKEN_ENV.into() }));
    }
    let keychain = Keychain::open().map_err(|e| {
        SyncError::Setup(format!(
            "signed in to {server}, but the token cannot be read: {e}; set {TOKEN_ENV} (headless runs), or sign in again"
        ))
    })?;
    match keychain.get(KEYCHAIN_SERVICE, &account(&server)) {
        Ok(Some(t)) => Ok(Some(Session { server, token: Token::new(t), source: keychain.backend().to_string() })),
        Ok(None) => Err(SyncError::Setup(format!(
            "signed in to {server}, but {} holds no token for it; run `marginalia login --server {server} --invite CODE` \
             with a new invite, or set {TOKEN_ENV}",
            keychain.backend()
        ))),
        Err(e) => Err(SyncError::Setup(format!("cannot read the token for {server} from the keychain: {e}"))),
    }
}

/// What `login` needs to know.
pub struct LoginRequest {
    pub server: String,
    pub invite: String,
    pub name: String,
    pub email: Option<String>,
    pub token_label: Option<String>,
    /// Give the token back instead of keeping it (a CI bot's): nothing is saved here.
    pub print_token: bool,
}

/// What `login` did.
pub struct LoggedIn {
    pub issued: api::Issued,
    /// Where the token was put, or `None` when it is to be printed.
    pub kept_in: Option<String>,
}

/// Redeems an invite and keeps the token in the keychain (or hands it back with
/// `print_token`). The keychain is opened first, so an invite (single use) is never spent on a
/// token there is nowhere to keep.
pub async fn login(store: Arc<Mutex<Store>>, req: LoginRequest) -> Result<LoggedIn, SyncError> {
    let server = server_url(&req.server)?;
    let keychain = if req.print_token {
        None
    } else {
        let k = tokio::task::spawn_blocking(Keychain::open).await.map_err(|e| SyncError::Setup(e.to_string()))?;
        Some(k.map_err(|e| {
            SyncError::Setup(format!(
                "nowhere to keep the token: {e}; the invite was not used. On a machine without a keychain, run \
                 `marginalia login --print-token ...` and set {TOKEN_ENV} to the token it prints"
            ))
        })?)
    };
    let client = Client::new(&server, None, store.clone())?;
    let body = api::Login { invite: req.invite, name: req.name, email: req.email, token_label: req.token_label };
    let body = serde_json::to_string(&body).expect("wire types always serialize");
    let issued: api::Issued = client
        .json(Call {
            method: Method::POST,
            path: "/login",
            body: Some(&body),
            key: None,
            subject: None,
            code_bytes: 0,
            note: Some("sign-in".into()),
        })
        .await?;
    let Some(keychain) = keychain else { return Ok(LoggedIn { issued, kept_in: None }) };
    let (acct, token) = (account(&server), issued.token.clone());
    let kept = tokio::task::spawn_blocking(move || {
        keychain.set(KEYCHAIN_SERVICE, &acct, &token).map(|()| keychain.backend().to_string())
    })
    .await
    .map_err(|e| SyncError::Setup(e.to_string()))?
    .map_err(|e| SyncError::Setup(format!("signed in, but the keychain refused the token: {e}")))?;
    let (team, member) = (issued.team.name.clone(), issued.member.name.clone());
    let st = store.clone();
    super::engine::db(&st, move |s| {
        s.set_setting(SERVER_SETTING, Some(&server))?;
        s.set_setting(TEAM_SETTING, Some(&team))?;
        s.set_setting(MEMBER_SETTING, Some(&member))
    })
    .await?;
    Ok(LoggedIn { issued, kept_in: Some(kept) })
}

/// What `logout` did.
pub struct LoggedOut {
    pub server: Option<String>,
    /// The keychain held a token and it is gone.
    pub forgot_token: bool,
    /// Changes that had not reached the server; they stay queued for the next sign-in there.
    pub unsent: usize,
}

/// Forgets the token and the server. Queued changes stay, for when the user signs in to that
/// server again. Blocking (the keychain).
pub fn logout(store: &Store) -> Result<LoggedOut, SyncError> {
    let Some(server) = store.setting(SERVER_SETTING)? else {
        return Ok(LoggedOut { server: None, forgot_token: false, unsent: 0 });
    };
    let forgot_token = match Keychain::open() {
        Ok(k) => k
            .delete(KEYCHAIN_SERVICE, &account(&server))
            .map_err(|e| SyncError::Setup(format!("cannot remove the token from the keychain: {e}")))?,
        Err(e) => {
            tracing::warn!("no keychain to remove a token from: {e}");
            false
        }
    };
    for key in [SERVER_SETTING, TEAM_SETTING, MEMBER_SETTING] {
        store.set_setting(key, None)?;
    }
    let unsent = store.outbox(&server)?.len();
    Ok(LoggedOut { server: Some(server), forgot_token, unsent })
}
