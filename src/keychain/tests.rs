//! Two kinds of tests, named for what they touch:
//!
//! - `real_*`: the store [`Keychain::open`] picks on this machine, for real (on a headless Linux
//!   box, the kernel keyring). They write entries under the service `marginalia-test` and delete
//!   them. `real_a_secret_crosses_processes` starts this test binary again as a child (the
//!   `child_role` test, which does nothing unless `MARGINALIA_KEYCHAIN_CHILD` is set), in a fresh
//!   session keyring on Linux, as a new login would have.
//! - `choosing_*` and `errors_*`: how a store is chosen and how failures read, with
//!   `keyring_core::mock::Store` standing in for the platform's stores. They test that logic
//!   only; the mock keeps nothing beyond the process.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use expect_test::expect;
use keyring_core::api::{CredentialPersistence, CredentialStoreApi};
use keyring_core::{CredentialStore, Entry, mock};

use super::*;

const SERVICE: &str = "marginalia-test";

/// A unique account per test run, so that runs and tests never share an entry.
fn account(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}:{}:{nanos}", std::process::id())
}

fn real() -> Keychain {
    let keychain = Keychain::open().unwrap_or_else(|e| panic!("no keychain on this machine: {e}"));
    eprintln!("keychain backend: {}", keychain.backend());
    keychain
}

#[test]
fn real_round_trip() {
    let keychain = real();
    let account = account("round-trip");
    assert_eq!(keychain.get(SERVICE, &account).unwrap(), None, "absent reads as None");
    keychain.set(SERVICE, &account, "first-secret").unwrap();
    assert_eq!(keychain.get(SERVICE, &account).unwrap().as_deref(), Some("first-secret"));
    keychain.set(SERVICE, &account, "second-secret ✓").unwrap();
    assert_eq!(keychain.get(SERVICE, &account).unwrap().as_deref(), Some("second-secret ✓"), "overwritten");
    assert!(keychain.delete(SERVICE, &account).unwrap(), "deleting what is there");
    assert_eq!(keychain.get(SERVICE, &account).unwrap(), None, "gone after delete");
    assert!(!keychain.delete(SERVICE, &account).unwrap(), "deleting twice");
}

#[test]
fn real_entries_are_told_apart_by_service_and_account() {
    let keychain = real();
    let account = account("sync:https://host:8443");
    let other = format!("github:{account}");
    keychain.set(SERVICE, &account, "one").unwrap();
    keychain.set(SERVICE, &other, "two").unwrap();
    keychain.set("marginalia-test-other", &account, "three").unwrap();
    assert_eq!(keychain.get(SERVICE, &account).unwrap().as_deref(), Some("one"));
    assert_eq!(keychain.get(SERVICE, &other).unwrap().as_deref(), Some("two"));
    assert_eq!(keychain.get("marginalia-test-other", &account).unwrap().as_deref(), Some("three"));
    for (service, account) in [(SERVICE, &account), (SERVICE, &other), ("marginalia-test-other", &account)] {
        assert!(keychain.delete(service, account).unwrap());
    }
}

/// Another thread, which has no session keyring of its own yet on Linux, sees what this one
/// stored: the blocking pool's threads come and go.
#[test]
fn real_a_secret_crosses_threads() {
    let keychain = real();
    let account = account("threads");
    keychain.set(SERVICE, &account, "from the first thread").unwrap();
    let other = keychain.clone();
    let (account2, read) = std::thread::spawn(move || {
        let read = other.get(SERVICE, &account).unwrap();
        other.set(SERVICE, &account, "from the second thread").unwrap();
        (account, read)
    })
    .join()
    .unwrap();
    assert_eq!(read.as_deref(), Some("from the first thread"));
    assert_eq!(keychain.get(SERVICE, &account2).unwrap().as_deref(), Some("from the second thread"));
    assert!(keychain.delete(SERVICE, &account2).unwrap());
}

/// A secret stored by this process is read by another one, started afterwards in a session of
/// its own, which then replaces it; this process reads the replacement.
#[test]
fn real_a_secret_crosses_processes() {
    let keychain = real();
    let account = account("processes");
    keychain.set(SERVICE, &account, "stored by the parent").unwrap();
    let out = child(&format!("get-then-set:{account}"));
    eprintln!("{out}");
    let read = keychain.get(SERVICE, &account).unwrap();
    keychain.delete(SERVICE, &account).unwrap();
    assert!(out.contains(&format!("child backend: {}", keychain.backend())), "{out}");
    assert!(out.contains("child read: Some(\"stored by the parent\")"), "{out}");
    assert_eq!(read.as_deref(), Some("stored by the child"));
}

/// The Secret Service either works here or says why not; on a headless box, at once.
#[cfg(target_os = "linux")]
#[test]
fn real_secret_service_is_used_or_says_why_not() {
    let secret_service = platform::candidates().into_iter().filter(|c| c.backend == Backend::SecretService).collect();
    let started = std::time::Instant::now();
    match open_from(secret_service, PROBE_TIMEOUT) {
        Ok(keychain) => eprintln!("the Secret Service works here: {keychain:?}"),
        Err(e) => {
            eprintln!("{e}");
            assert!(e.to_string().contains("the Secret Service (D-Bus) failed: "), "{e}");
        }
    }
    eprintln!("answered in {:?}", started.elapsed());
}

/// Runs this test binary's `child_role` test with `role`, and returns what it printed.
fn child(role: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "keychain::tests::child_role", "--nocapture", "--test-threads=1"])
        .env("MARGINALIA_KEYCHAIN_CHILD", role)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child failed:\n{text}");
    text
}

/// The child process of [`real_a_secret_crosses_processes`]; nothing without
/// `MARGINALIA_KEYCHAIN_CHILD`. Also usable by hand, from any shell, to see what another process
/// sees: `MARGINALIA_KEYCHAIN_CHILD=set:ACCOUNT:VALUE` (or `get:ACCOUNT`, `delete:ACCOUNT`)
/// `cargo test --lib keychain::tests::child_role -- --exact --nocapture`.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("MARGINALIA_KEYCHAIN_CHILD") else { return };
    #[cfg(target_os = "linux")]
    fresh_session_keyring();
    let keychain = real();
    eprintln!("child backend: {}", keychain.backend());
    let (verb, rest) = role.split_once(':').expect("VERB:ACCOUNT");
    match verb {
        "get-then-set" => {
            eprintln!("child read: {:?}", keychain.get(SERVICE, rest).unwrap());
            keychain.set(SERVICE, rest, "stored by the child").unwrap();
        }
        "get" => eprintln!("child read: {:?}", keychain.get(SERVICE, rest).unwrap()),
        "set" => {
            let (account, value) = rest.split_once(':').expect("set:ACCOUNT:VALUE");
            keychain.set(SERVICE, account, value).unwrap();
            eprintln!("child stored {account}");
        }
        "delete" => eprintln!("child deleted: {}", keychain.delete(SERVICE, rest).unwrap()),
        other => panic!("unknown child role {other}"),
    }
}

/// Leaves whatever session keyring this thread had for a new, empty one, as a new login does.
#[cfg(target_os = "linux")]
fn fresh_session_keyring() {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) takes no memory from us (a null name
    // means an anonymous keyring) and only changes this thread's credentials.
    let id = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<libc::c_char>()) };
    assert!(id > 0, "joining a new session keyring: {}", std::io::Error::last_os_error());
    eprintln!("child session keyring: {id}");
}

// ---- choosing a store, and errors: the mock store stands in for the platform's ----

/// A mock store whose entries fail their next operation with `error()`.
struct Failing {
    inner: Arc<mock::Store>,
    error: fn() -> keyring_core::Error,
}

impl CredentialStoreApi for Failing {
    fn vendor(&self) -> String {
        "failing mock".to_owned()
    }
    fn id(&self) -> String {
        self.inner.id()
    }
    fn build(
        &self,
        service: &str,
        user: &str,
        modifiers: Option<&std::collections::HashMap<&str, &str>>,
    ) -> keyring_core::Result<Entry> {
        let entry = self.inner.build(service, user, modifiers)?;
        let cred: &mock::Cred = entry.as_any().downcast_ref().expect("a mock credential");
        cred.set_error((self.error)());
        Ok(entry)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn persistence(&self) -> CredentialPersistence {
        CredentialPersistence::ProcessOnly
    }
}

fn works(backend: Backend) -> Candidate {
    Candidate {
        backend,
        connect: Box::new(|| {
            let store: Arc<CredentialStore> = mock::Store::new().unwrap();
            Ok(store)
        }),
        prepare: platform::nothing,
    }
}

fn absent(backend: Backend, why: &'static str) -> Candidate {
    Candidate { backend, connect: Box::new(move || Err(why.to_owned())), prepare: platform::nothing }
}

fn refusing(backend: Backend, error: fn() -> keyring_core::Error) -> Candidate {
    Candidate {
        backend,
        connect: Box::new(move || {
            let store: Arc<CredentialStore> = Arc::new(Failing { inner: mock::Store::new().unwrap(), error });
            Ok(store)
        }),
        prepare: platform::nothing,
    }
}

fn access_denied() -> keyring_core::Error {
    keyring_core::Error::NoStorageAccess("AccessDenied".into())
}

#[test]
fn choosing_takes_the_first_store_that_passes_the_test_write() {
    let candidates = vec![
        absent(Backend::SecretService, "cannot reach it over D-Bus (no session bus)"),
        refusing(Backend::Keyutils, access_denied),
        works(Backend::MacOs),
        works(Backend::Windows),
    ];
    let keychain = open_from(candidates, Duration::from_secs(5)).unwrap();
    assert_eq!(keychain.backend(), Backend::MacOs);
    expect![[r#"Keychain { backend: MacOs, .. }"#]].assert_eq(&format!("{keychain:?}"));
}

#[test]
fn choosing_lists_what_was_tried_and_what_to_do_when_nothing_works() {
    let slow = Candidate {
        backend: Backend::Windows,
        connect: Box::new(|| {
            std::thread::sleep(Duration::from_secs(2));
            Err("too late".to_owned())
        }),
        prepare: platform::nothing,
    };
    let candidates = vec![
        absent(Backend::SecretService, "cannot reach it over D-Bus (no session bus)"),
        refusing(Backend::Keyutils, access_denied),
        refusing(Backend::MacOs, || keyring_core::Error::BadEncoding(b"the-secret".to_vec())),
        slow,
    ];
    let error = open_from(candidates, Duration::from_millis(200)).unwrap_err();
    let text = error.to_string().replace(platform::ADVICE, "<advice for this platform>");
    expect!["no keychain works here: the Secret Service (D-Bus) failed: cannot reach it over D-Bus (no session bus); the Linux kernel keyring (keyutils) failed: a test write failed: access refused (AccessDenied); the macOS login keychain failed: a test write failed: the stored secret is not UTF-8 text; the Windows Credential Manager failed: did not answer within 0.2 s (a locked keyring waiting for someone to unlock it?). <advice for this platform>"].assert_eq(&text);
    assert!(!format!("{error:?}").contains("the-secret"));
}

#[test]
fn choosing_with_no_store_at_all_says_so() {
    let error = open_from(Vec::new(), Duration::from_secs(1)).unwrap_err();
    let text = error.to_string().replace(platform::ADVICE, "<advice>");
    expect!["no keychain works here: this platform has no keychain marginalia can use. <advice>"].assert_eq(&text);
}

#[test]
fn errors_name_the_entry_and_the_store_but_never_the_secret() {
    let keychain = open_from(vec![works(Backend::SecretService)], Duration::from_secs(5)).unwrap();
    keychain.set("marginalia", "sync:https://host:8443", "hunter2-the-secret").unwrap();
    let failing = Keychain {
        store: Arc::new(Failing {
            inner: mock::Store::new().unwrap(),
            error: || keyring_core::Error::BadDataFormat(b"hunter2-the-secret".to_vec(), "bad padding".into()),
        }),
        ..keychain.clone()
    };
    let error = failing.get("marginalia", "sync:https://host:8443").unwrap_err();
    expect!["the Secret Service (D-Bus) could not read the secret for sync:https://host:8443 (marginalia): the stored secret is malformed"].assert_eq(&error.to_string());
    assert!(!format!("{error:?}{keychain:?}").contains("hunter2"));
    let empty = keychain.set("marginalia", "github:github.com", "").unwrap_err();
    expect!["cannot store an empty secret for github:github.com (marginalia)"].assert_eq(&empty.to_string());
    let bad = keychain.get("marginalia@x", "a").unwrap_err();
    expect![[r#"cannot use "marginalia@x" / "a" as a keychain entry: the service and account must not be empty, and the service must not contain '@'"#]].assert_eq(&bad.to_string());
}

#[test]
fn a_keychain_is_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Keychain>();
}

#[test]
fn choosing_does_not_keep_the_test_entry() {
    let store = mock::Store::new().unwrap();
    let shared: Arc<CredentialStore> = store.clone();
    let candidate = Candidate {
        backend: Backend::Keyutils,
        connect: Box::new(move || Ok(shared.clone())),
        prepare: platform::nothing,
    };
    open_from(vec![candidate], Duration::from_secs(5)).unwrap();
    let left: Vec<Entry> = store.search(&std::collections::HashMap::from([("service", PROBE_SERVICE)])).unwrap();
    assert!(left.iter().all(|e| e.get_password().is_err()), "the test entry was deleted");
}
