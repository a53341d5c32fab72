//! The OS keychain: where provider tokens and the sync token are kept, so that they never sit in
//! a config file, a log, the local database or the egress ledger.
//!
//! **Architecture invariant:** the only module that knows keyring (`keyring-core` and the
//! platform store crates). The rest of the crate sees [`Keychain`], [`Backend`] and
//! [`KeychainError`].
//!
//! [`Keychain::open`] tries the platform's stores in order and takes the first that passes a
//! test write (write, read back, delete a throwaway entry):
//!
//! | platform | stores, in order |
//! | --- | --- |
//! | Linux | the Secret Service over D-Bus (GNOME Keyring, KWallet, KeePassXC), then the kernel keyring (keyutils) |
//! | macOS | the login keychain |
//! | Windows | the Credential Manager |
//!
//! On a headless Linux box there is no D-Bus session, so the Secret Service fails at once and the
//! kernel keyring is used (see `platform.rs` for how, and what it keeps across processes). When
//! no store works, [`KeychainError::Unavailable`] lists what was tried, why each failed, and
//! what to do: headless runs take their tokens from the environment (`MARGINALIA_TOKEN`), which
//! is the caller's business, not this module's.
//!
//! The choice is made per process, so two processes can choose differently: a Secret Service
//! whose keyring is locked and cannot ask for it to be unlocked (no one to answer) fails its test
//! write, and the kernel keyring is used instead; a token stored then is not in the Secret
//! Service that a later process, with the keyring unlocked, will use. The `info` log line names
//! the store each process uses and why the ones before it failed.
//!
//! **The API is blocking.** A store may talk to a daemon over D-Bus, or wait for the user to
//! unlock a keyring. Call it from `tokio::task::spawn_blocking` or a plain thread, never on an
//! async worker. (The Secret Service store is used through its blocking API; its `rt-tokio-*`
//! features would panic inside a tokio runtime, and are not enabled.)
//!
//! Secrets never appear in errors, logs or `Debug` output: store errors are turned into text
//! here, variant by variant, dropping whatever data they carry.

mod platform;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyring_core::{CredentialStore, Entry};

/// The kind of store a [`Keychain`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The freedesktop Secret Service over D-Bus (GNOME Keyring, KWallet, KeePassXC).
    SecretService,
    /// The Linux kernel's key retention service (keyutils): the persistent keyring.
    Keyutils,
    /// The macOS login keychain.
    MacOs,
    /// The Windows Credential Manager.
    Windows,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::SecretService => "the Secret Service (D-Bus)",
            Backend::Keyutils => "the Linux kernel keyring (keyutils)",
            Backend::MacOs => "the macOS login keychain",
            Backend::Windows => "the Windows Credential Manager",
        })
    }
}

/// What was being done when a store failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Read,
    Store,
    Delete,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Read => "read",
            Action::Store => "store",
            Action::Delete => "delete",
        })
    }
}

/// One store [`Keychain::open`] tried, and why it could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub backend: Backend,
    pub reason: String,
}

/// Why the keychain could not do what was asked. No variant holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    #[error("no keychain works here: {}. {}", list_attempts(.attempts), platform::ADVICE)]
    Unavailable { attempts: Vec<Attempt> },

    #[error("{backend} could not {action} the secret for {account} ({service}): {cause}")]
    Store { backend: Backend, action: Action, service: String, account: String, cause: String },

    #[error("cannot store an empty secret for {account} ({service})")]
    EmptySecret { service: String, account: String },

    #[error(
        "cannot use {service:?} / {account:?} as a keychain entry: the service and account must not be empty, \
         and the service must not contain '@'"
    )]
    BadName { service: String, account: String },
}

fn list_attempts(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "this platform has no keychain marginalia can use".to_owned();
    }
    attempts.iter().map(|a| format!("{} failed: {}", a.backend, a.reason)).collect::<Vec<_>>().join("; ")
}

/// How long [`Keychain::open`] waits for a store to answer its test write. A Secret Service
/// whose keyring is locked asks the user to unlock it; on a box with no one to answer, it would
/// wait for ever.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The service of the throwaway entries [`Keychain::open`] writes to test a store.
const PROBE_SERVICE: &str = "marginalia";

/// A store that works, chosen by [`Keychain::open`]. Cheap to clone; shareable across threads.
#[derive(Clone)]
pub struct Keychain {
    backend: Backend,
    store: Arc<CredentialStore>,
    /// Runs on the calling thread before each use (keyutils: give the thread a session keyring).
    prepare: fn() -> Result<(), String>,
}

impl fmt::Debug for Keychain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keychain").field("backend", &self.backend).finish_non_exhaustive()
    }
}

/// A store this platform might have, before it is tried.
pub(crate) struct Candidate {
    pub backend: Backend,
    /// Opens the store (a D-Bus connection, a keyring lookup); fails when it is not there.
    pub connect: Box<dyn Fn() -> Result<Arc<CredentialStore>, String> + Send + Sync>,
    pub prepare: fn() -> Result<(), String>,
}

impl Keychain {
    /// Finds a store that works on this machine: tries each of the platform's stores with a test
    /// write, takes the first that passes, and logs which (`tracing::info`). Blocking; takes a
    /// few milliseconds, or up to [`PROBE_TIMEOUT`] per store that does not answer.
    pub fn open() -> Result<Keychain, KeychainError> {
        open_from(platform::candidates(), PROBE_TIMEOUT)
    }

    /// Which kind of store this is; its `Display` names it for people.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The secret stored for `service` and `account`, or `None` when there is none.
    pub fn get(&self, service: &str, account: &str) -> Result<Option<String>, KeychainError> {
        let entry = self.entry(service, account, Action::Read)?;
        match entry.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(self.error(Action::Read, service, account, &e)),
        }
    }

    /// Stores `secret` for `service` and `account`, replacing any secret stored there.
    pub fn set(&self, service: &str, account: &str, secret: &str) -> Result<(), KeychainError> {
        if secret.is_empty() {
            return Err(KeychainError::EmptySecret { service: service.to_owned(), account: account.to_owned() });
        }
        let entry = self.entry(service, account, Action::Store)?;
        entry.set_password(secret).map_err(|e| self.error(Action::Store, service, account, &e))
    }

    /// Deletes the secret stored for `service` and `account`; `false` when there was none.
    pub fn delete(&self, service: &str, account: &str) -> Result<bool, KeychainError> {
        let entry = self.entry(service, account, Action::Delete)?;
        match entry.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(self.error(Action::Delete, service, account, &e)),
        }
    }

    fn entry(&self, service: &str, account: &str, action: Action) -> Result<Entry, KeychainError> {
        if service.is_empty() || account.is_empty() || service.contains('@') {
            return Err(KeychainError::BadName { service: service.to_owned(), account: account.to_owned() });
        }
        let failed = |cause: String| KeychainError::Store {
            backend: self.backend,
            action,
            service: service.to_owned(),
            account: account.to_owned(),
            cause,
        };
        (self.prepare)().map_err(failed)?;
        Entry::new_in_store(&self.store, service, account).map_err(|e| failed(describe(&e)))
    }

    fn error(&self, action: Action, service: &str, account: &str, e: &keyring_core::Error) -> KeychainError {
        KeychainError::Store {
            backend: self.backend,
            action,
            service: service.to_owned(),
            account: account.to_owned(),
            cause: describe(e),
        }
    }
}

/// Tries `candidates` in order; see [`Keychain::open`].
pub(crate) fn open_from(candidates: Vec<Candidate>, timeout: Duration) -> Result<Keychain, KeychainError> {
    let mut attempts = Vec::new();
    for candidate in candidates {
        let backend = candidate.backend;
        match probe(candidate, timeout) {
            Ok(keychain) => {
                if attempts.is_empty() {
                    tracing::info!("keychain: using {backend}");
                } else {
                    tracing::info!("keychain: using {backend} ({})", list_attempts(&attempts));
                }
                return Ok(keychain);
            }
            Err(reason) => {
                tracing::debug!("keychain: {backend} failed: {reason}");
                attempts.push(Attempt { backend, reason });
            }
        }
    }
    Err(KeychainError::Unavailable { attempts })
}

/// Connects to a store and writes, reads back and deletes a throwaway entry, on a thread of its
/// own so that a store that never answers is given up after `timeout` (that thread is then left
/// to finish or hang on its own).
fn probe(candidate: Candidate, timeout: Duration) -> Result<Keychain, String> {
    let (tx, rx) = mpsc::channel();
    let backend = candidate.backend;
    let spawned = std::thread::Builder::new().name("keychain-probe".into()).spawn(move || {
        let _ = tx.send(probe_here(candidate));
    });
    if let Err(e) = spawned {
        return Err(format!("could not start a thread to test it: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "did not answer within {} s (a locked keyring waiting for someone to unlock it?)",
            timeout.as_secs_f32()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("testing {backend} crashed")),
    }
}

fn probe_here(candidate: Candidate) -> Result<Keychain, String> {
    let store = (candidate.connect)()?;
    let keychain = Keychain { backend: candidate.backend, store, prepare: candidate.prepare };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let account = format!("keychain-probe:{}:{nanos}", std::process::id());
    let value = format!("probe {nanos}");
    let step = |what: &str, e: KeychainError| match e {
        KeychainError::Store { cause, .. } => format!("{what} failed: {cause}"),
        other => format!("{what} failed: {other}"),
    };
    keychain.set(PROBE_SERVICE, &account, &value).map_err(|e| step("a test write", e))?;
    let read = keychain.get(PROBE_SERVICE, &account).map_err(|e| step("reading the test entry back", e));
    let deleted = keychain.delete(PROBE_SERVICE, &account).map_err(|e| step("deleting the test entry", e));
    match read? {
        Some(back) if back == value => {}
        Some(_) => return Err("the test entry read back differently from what was written".to_owned()),
        None => return Err("the test entry was gone right after it was written".to_owned()),
    }
    deleted?;
    Ok(keychain)
}

/// A store's error as text for people, built from each variant's meaning and never from the data
/// some variants carry (`BadEncoding` and `BadDataFormat` hold the stored bytes; `Ambiguous`
/// holds entries whose `Debug` may show them).
fn describe(e: &keyring_core::Error) -> String {
    use keyring_core::Error as E;
    match e {
        E::PlatformFailure(inner) => inner.to_string(),
        E::NoStorageAccess(inner) => format!("access refused ({inner})"),
        E::NoEntry => "there is no such entry".to_owned(),
        E::BadEncoding(_) => "the stored secret is not UTF-8 text".to_owned(),
        E::BadDataFormat(..) => "the stored secret is malformed".to_owned(),
        E::BadStoreFormat(why) => format!("the store is malformed: {why}"),
        E::TooLong(what, limit) => format!("the {what} is longer than the store's limit of {limit}"),
        E::Invalid(what, why) => format!("the {what} is invalid: {why}"),
        E::Ambiguous(entries) => format!("{} entries match", entries.len()),
        E::NoDefaultStore => "no store is set".to_owned(),
        E::NotSupportedByStore(why) => format!("not supported: {why}"),
        _ => "the store failed in a way this version of marginalia does not know".to_owned(),
    }
}
