//! The stores each platform offers, in the order they are tried, and what the kernel keyring
//! needs before it can be used.
//!
//! ## The Linux kernel keyring, and what survives a process
//!
//! `linux-keyutils-keyring-store` adds each key to the calling thread's *session* keyring and
//! links it into the user's *persistent* keyring (`persistent-keyring(7)`); it looks keys up by
//! searching the session keyring, into which it links the persistent one first. So:
//!
//! - A thread needs a session keyring of its own. Without one (a process started outside a login
//!   session: a container, a CI job, a service, an editor started by systemd), the kernel answers
//!   with the shared user-session keyring, which the process does not *possess*, and every key
//!   operation is refused (`EACCES`). [`keyutils_prepare`] then joins a new anonymous session
//!   keyring (`KEYCTL_JOIN_SESSION_KEYRING`, through `KEYCTL_GET_KEYRING_ID` with `create`) and
//!   links the user keyring into it, as `pam_keyinit` does at login. Keyrings belong to threads,
//!   not processes, so this runs before every use, on the calling thread; it costs a syscall
//!   or two.
//! - The persistent keyring is what carries a token from `marginalia login` to a later
//!   `marginalia lsp` started by an editor, in another shell or another login session: it is per
//!   user, not per session. It is kept in kernel memory, so a **reboot clears it**, and the
//!   kernel drops it after `/proc/sys/kernel/keys/persistent_keyring_expiry` seconds (3 days by
//!   default) without use; every use restarts that clock. After either, the token must be given
//!   again. A process in another user namespace (some containers, Flatpak) has another
//!   persistent keyring and sees nothing.
//! - The user keyring (`@u`) would be the other choice; it lives only while the user has a
//!   process running, and the store crate does not use it.
//!
//! The Secret Service, where there is one, keeps tokens on disk, encrypted, across reboots: it
//! is tried first.

use std::sync::Arc;

use keyring_core::CredentialStore;

use super::{Backend, Candidate};

/// What to do when no store works, for [`super::KeychainError::Unavailable`].
#[cfg(target_os = "linux")]
pub(super) const ADVICE: &str = "For a headless run, give tokens in the environment instead (MARGINALIA_TOKEN for the \
     sync server, and the provider's token variable such as GITHUB_TOKEN); to keep them in a keychain, run a Secret \
     Service (GNOME Keyring, KeePassXC) in a D-Bus session, or allow the kernel keyring (keyctl) to this process";
#[cfg(target_os = "macos")]
pub(super) const ADVICE: &str = "Unlock the login keychain, or give tokens in the environment instead \
     (MARGINALIA_TOKEN for the sync server, and the provider's token variable such as GITHUB_TOKEN)";
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(super) const ADVICE: &str = "Give tokens in the environment instead (MARGINALIA_TOKEN for the sync server, and \
     the provider's token variable such as GITHUB_TOKEN)";

/// Nothing to do before using most stores.
pub(super) fn nothing() -> Result<(), String> {
    Ok(())
}

#[cfg(target_os = "linux")]
pub(super) fn candidates() -> Vec<Candidate> {
    vec![
        Candidate {
            backend: Backend::SecretService,
            connect: Box::new(|| {
                let store: Arc<CredentialStore> = zbus_secret_service_keyring_store::Store::new()
                    .map_err(|e| format!("cannot reach it over D-Bus ({})", super::describe(&e)))?;
                Ok(store)
            }),
            prepare: nothing,
        },
        Candidate { backend: Backend::Keyutils, connect: Box::new(keyutils_connect), prepare: keyutils_prepare },
    ]
}

#[cfg(target_os = "macos")]
pub(super) fn candidates() -> Vec<Candidate> {
    vec![Candidate {
        backend: Backend::MacOs,
        connect: Box::new(|| {
            let store: Arc<CredentialStore> =
                apple_native_keyring_store::keychain::Store::new().map_err(|e| super::describe(&e))?;
            Ok(store)
        }),
        prepare: nothing,
    }]
}

#[cfg(target_os = "windows")]
pub(super) fn candidates() -> Vec<Candidate> {
    vec![Candidate {
        backend: Backend::Windows,
        connect: Box::new(|| {
            let store: Arc<CredentialStore> =
                windows_native_keyring_store::Store::new().map_err(|e| super::describe(&e))?;
            Ok(store)
        }),
        prepare: nothing,
    }]
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub(super) fn candidates() -> Vec<Candidate> {
    Vec::new()
}

/// Gives the calling thread a session keyring of its own if it has none (see the module
/// documentation). `Ok(true)` when it had to make one.
#[cfg(target_os = "linux")]
fn keyutils_session() -> Result<bool, String> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier as Id};
    let refused = |what: &str, e: linux_keyutils::KeyError| format!("the kernel refused {what} ({e})");
    let session = KeyRing::from_special_id(Id::Session, false).map_err(|e| refused("the session keyring", e))?;
    let shared = KeyRing::from_special_id(Id::UserSession, false).map_err(|e| refused("the user keyrings", e))?;
    if session != shared {
        return Ok(false);
    }
    let joined = KeyRing::from_special_id(Id::Session, true).map_err(|e| refused("a new session keyring", e))?;
    if let Err(e) = joined.link_keyring_id(Id::User) {
        // Only other programs started from this thread would miss it.
        tracing::debug!("keychain: could not link the user keyring into the new session keyring: {e}");
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
pub(super) fn keyutils_prepare() -> Result<(), String> {
    keyutils_session().map(|_| ())
}

/// The kernel keyring store, once this thread has a session keyring and the persistent keyring
/// is known to be there to carry keys beyond this process.
#[cfg(target_os = "linux")]
fn keyutils_connect() -> Result<Arc<CredentialStore>, String> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier as Id};
    let made_session = keyutils_session()?;
    if let Err(e) = KeyRing::get_persistent(Id::Session) {
        if made_session {
            return Err(format!(
                "the kernel has no persistent keyring for this user ({e}) and this process no login session \
                 keyring, so a token stored now would be gone when marginalia exits"
            ));
        }
        tracing::warn!("keychain: no persistent kernel keyring ({e}): tokens will last until this login session ends");
    }
    // `service_no_divider`: keys are named `keyring:<account>@<service>`; with no '@' in the
    // service, two entries can never share a name.
    let config = std::collections::HashMap::from([("service_no_divider", "true")]);
    let store: Arc<CredentialStore> =
        linux_keyutils_keyring_store::Store::new_with_configuration(&config).map_err(|e| super::describe(&e))?;
    Ok(store)
}
