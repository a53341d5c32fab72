//! Where a check's codemarks come from: the team server (`GET /codemarks?repo=KEY`, through the
//! sync client, so the request is on the egress ledger), or the local store.
//!
//! `auto` takes the server when one is configured (`MARGINALIA_SERVER`, or a `marginalia
//! login`), else the local store. A server configured without a token to be found is an error
//! that says what to set, never a silent fall back to the local store: a CI bot that quietly
//! checks nothing would be worse than one that fails.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use crate::api;
use crate::codemark::Codemark;
use crate::store::{Store, StoreError};
use crate::sync::client::Call;
use crate::sync::{Client, SyncError, convert, session};

/// Where the codemarks were read, for every format to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The team server at this address.
    Server { url: String },
    /// The local store file.
    Local { store: PathBuf },
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Server { .. } => "server",
            Source::Local { .. } => "local",
        }
    }

    /// `the team server https://…` or `the local store /…/marginalia.db`.
    pub fn describe(&self) -> String {
        match self {
            Source::Server { url } => format!("the team server {url}"),
            Source::Local { store } => format!("the local store {}", store.display()),
        }
    }
}

/// `--source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The server when one is configured, else the local store.
    Auto,
    Server,
    Local,
}

impl FromStr for Wanted {
    type Err = String;
    fn from_str(s: &str) -> Result<Wanted, String> {
        match s {
            "auto" => Ok(Wanted::Auto),
            "server" => Ok(Wanted::Server),
            "local" => Ok(Wanted::Local),
            _ => Err(format!("`{s}`: expected auto, server or local")),
        }
    }
}

/// Why the codemarks could not be read. Nothing here holds a token.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The codemarks of one repository, where they came from, and the server's entries that could
/// not be read (each named; the rest are checked).
#[derive(Debug)]
pub struct Loaded {
    pub source: Source,
    pub codemarks: Vec<Codemark>,
    pub unreadable: Vec<String>,
}

/// Reads the codemarks of the repository `key` from where `wanted` says. Blocking; the server
/// is asked on `rt`.
pub fn load(
    wanted: Wanted,
    key: &str,
    store: &Arc<Mutex<Store>>,
    rt: &tokio::runtime::Runtime,
) -> Result<Loaded, SourceError> {
    let lock = || store.lock().unwrap_or_else(|e| e.into_inner());
    let use_server = match wanted {
        Wanted::Server => true,
        Wanted::Local => false,
        Wanted::Auto => session::server(&lock())?.is_some(),
    };
    if !use_server {
        let s = lock();
        return Ok(Loaded {
            source: Source::Local { store: s.path().to_owned() },
            codemarks: s.of_repo(key)?,
            unreadable: Vec::new(),
        });
    }
    let Some(signed_in) = session::current(&lock())? else {
        return Err(SourceError::Setup(format!(
            "--source server needs a team server: set {} and {} (a CI bot's token, from `marginalia login \
             --print-token`), or sign in with `marginalia login`",
            session::SERVER_ENV,
            session::TOKEN_ENV
        )));
    };
    let client = Client::new(&signed_in.server, Some(signed_in.token), store.clone())?;
    let path = format!("/codemarks?{}", query(&[("repo", key)]));
    let mut call = Call::get(&path);
    call.note = Some("marginalia check".into());
    let wire: Vec<api::Codemark> = rt.block_on(client.json(call))?;
    let mut codemarks = Vec::with_capacity(wire.len());
    let mut unreadable = Vec::new();
    for c in wire {
        match convert::codemark_in(c, client.server()) {
            Ok(c) => codemarks.push(c),
            Err(why) => unreadable.push(why),
        }
    }
    Ok(Loaded { source: Source::Server { url: client.server().to_owned() }, codemarks, unreadable })
}

/// `a=1&b=x%2Fy`: pairs percent-encoded as a form.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://query.invalid/").expect("a valid URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_keys_are_encoded_in_the_query() {
        assert_eq!(query(&[("repo", "github.com/acme/shop")]), "repo=github.com%2Facme%2Fshop");
        assert_eq!(query(&[("repo", "path:/tmp/a b&c")]), "repo=path%3A%2Ftmp%2Fa+b%26c");
    }
}
