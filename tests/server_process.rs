//! The real `marginalia serve` process on loopback: TLS with a certificate made here (rcgen),
//! the operator's `serve invite` while the server runs, a session over HTTPS with reqwest, the
//! event stream, dev mode's warnings, the refusal of plain HTTP off loopback, and
//! `serve verify-audit`'s verdicts.

#[path = "common/server.rs"]
mod kit;
#[path = "common/serve.rs"]
mod serve;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_marginalia");

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let s = serve::spawn(args, env);
        Server { child: s.child, url: s.url, stderr: s.stderr, seen: s.seen }
    }
}

/// A test CA (its PEM), and a certificate for localhost and 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let (ca, cert, key) = serve::certificates(dir);
    (std::fs::read_to_string(ca).unwrap(), cert, key)
}

fn invite(data: &Path, team: &str) -> String {
    let out = Command::new(BIN)
        .args(["serve", "invite", "--data", data.to_str().unwrap(), "--team", team])
        .env("MARGINALIA_MASTER_KEY", kit::MASTER_HEX)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin invite for team \"acme\" (new team)"), "{stderr}");
    let code = String::from_utf8(out.stdout).unwrap();
    assert_eq!(code.lines().count(), 1, "the code alone on stdout: {code:?}");
    code.trim().to_string()
}

#[tokio::test]
async fn a_real_server_over_tls_serves_a_session_and_streams_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ca_pem, cert, key) = certificates(dir.path());
    let server = Server::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[("MARGINALIA_MASTER_KEY", kit::MASTER_HEX)],
    );
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    assert!(!server.seen.iter().any(|l| l.contains("dev mode")), "no dev mode with TLS and a key: {:?}", server.seen);

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let health = client.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers()["strict-transport-security"].to_str().unwrap().contains("max-age"));
    assert!(health.headers().get("server").is_none());

    // The operator bootstraps the team while the server runs.
    let code = invite(&data, "acme");
    let login: Value = client
        .post(format!("{}/api/v1/login", server.url))
        .json(&json!({"invite": code, "name": "Ada", "token_label": "laptop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("a token").to_string();
    assert_eq!(login["member"]["role"], "admin");

    let events = client.get(format!("{}/api/v1/events", server.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();

    let cm = kit::id();
    let made = client
        .post(format!("{}/api/v1/codemarks", server.url))
        .bearer_auth(&token)
        .header("Idempotency-Key", "k1")
        .json(&kit::new_codemark(&cm, "github.com/acme/shop", "Over TLS", "let x = 1;"))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);

    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains(&cm) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "the event arrived: {seen}");
    assert!(seen.contains("id: 1\n") || seen.contains("id:1\n"), "{seen}");
    assert!(seen.contains("event: change") || seen.contains("event:change"), "{seen}");

    // Plain HTTP to the TLS port gets nothing.
    let plain = reqwest::Client::new().get(server.url.replace("https://", "http://") + "/healthz").send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    drop(server);
}

#[test]
fn plain_http_is_refused_off_loopback_and_loopback_dev_mode_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data", data])
        .env("MARGINALIA_MASTER_KEY", kit::MASTER_HEX)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen on 0.0.0.0:0 without TLS"));

    let server = Server::start(&["--listen", "127.0.0.1:0", "--data", data], &[]);
    assert!(server.url.starts_with("http://127.0.0.1:"), "{}", server.url);
    let said = server.seen.join("\n");
    assert!(said.contains("dev mode") && said.contains("master.key"), "{said}");
    assert!(said.contains("plain HTTP"), "{said}");
    assert!(dir.path().join("master.key").is_file());
    let _ = &server.stderr;

    let out = Command::new(BIN).args(["serve", "verify-audit", "--data", data]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0 entries, chain intact");
}

#[tokio::test]
async fn verify_audit_says_intact_or_names_the_first_broken_entry() {
    let k = kit::Kit::new();
    k.join("t", "Ada", marginalia::api::Role::Admin).await;
    k.join("t", "Bob", marginalia::api::Role::Member).await;
    let data = k.dir.path().to_str().unwrap().to_string();
    let verify = || Command::new(BIN).args(["serve", "verify-audit", "--data", &data]).output().unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "9 entries, chain intact");

    let raw = rusqlite::Connection::open(k.dir.path().join("server.db")).unwrap();
    raw.execute_batch("DROP TRIGGER audit_append_only_update").unwrap();
    raw.execute("UPDATE audit SET time = time + 1 WHERE seq = 4", []).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("audit chain broken at entry 4 (3 entries before it are intact)"), "{said}");
}
