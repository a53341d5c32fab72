//! A real `marginalia serve` process on loopback over TLS (a certificate authority made here),
//! and what a client needs to reach it: its URL, the CA file, invites, tokens.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_marginalia");
pub const MASTER_HEX: &str = "6d617267696e616c6961206d6173746572206b657920666f7220746573747321";

/// A server process, killed when dropped.
pub struct Served {
    child: Child,
    pub url: String,
    pub data: TempDir,
    /// The PEM file of the authority that signed its certificate (`MARGINALIA_CA_CERT`).
    pub ca: PathBuf,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started `marginalia serve`: the process, its address, the rest of its stderr, and the
/// lines it printed before `listening on`.
pub struct Spawned {
    pub child: Child,
    pub url: String,
    pub stderr: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

/// Starts `marginalia serve ARGS` (without `MARGINALIA_MASTER_KEY` unless `env` sets it) and
/// waits for its `listening on URL` line.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.env_remove("MARGINALIA_MASTER_KEY");
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("the marginalia binary starts");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let url = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no `listening on` line from the server: {seen:?}"));
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.trim().to_string();
        }
        seen.push(line);
    };
    Spawned { child, url, stderr: rx, seen }
}

/// The built binary in `cwd`, with its store in `data` and `env` set (git's own configuration
/// ignored).
pub fn run(cwd: &Path, data: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .env("MARGINALIA_DATA_DIR", data)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("MARGINALIA_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("the marginalia binary runs")
}

/// A CA, and a certificate it signed for localhost and 127.0.0.1, written into `dir`.
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "marginalia test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

impl Served {
    /// Starts a server over TLS on a free loopback port, with a fresh data directory.
    pub fn start() -> Served {
        let data = tempfile::tempdir().unwrap();
        let (ca, cert, key) = certificates(data.path());
        Served::start_in(data, ca, &cert, &key)
    }

    fn start_in(data: TempDir, ca: PathBuf, cert: &Path, key: &Path) -> Served {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let dir = data.path().display().to_string();
        let args =
            ["--listen", "127.0.0.1:0", "--data", &dir, "--tls-cert", &cert, "--tls-key", &key, "--rate-limit", "0"];
        let s = spawn(&args, &[("MARGINALIA_MASTER_KEY", MASTER_HEX), ("MARGINALIA_LOG", "warn")]);
        Served { child: s.child, url: s.url, data, ca, stderr: s.stderr }
    }

    /// A single-use invite to `team` (made on first use), as an operator gets one.
    pub fn invite(&self, team: &str, role: &str) -> String {
        let out = Command::new(BIN)
            .args(["serve", "invite", "--team", team, "--role", role, "--data"])
            .arg(self.data.path())
            .env("MARGINALIA_MASTER_KEY", MASTER_HEX)
            .output()
            .unwrap();
        assert!(out.status.success(), "serve invite: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The environment a client of this server needs to trust it.
    pub fn trust(&self) -> (&'static str, String) {
        ("MARGINALIA_CA_CERT", self.ca.display().to_string())
    }

    /// A new member of `team` through `marginalia login --print-token`; their token.
    pub fn member(&self, team: &str, name: &str, role: &str) -> String {
        let data = tempfile::tempdir().unwrap();
        let invite = self.invite(team, role);
        let out = Command::new(BIN)
            .args(["login", "--server", &self.url, "--invite", &invite, "--name", name, "--print-token"])
            .env("MARGINALIA_DATA_DIR", data.path())
            .env(self.trust().0, self.trust().1)
            .output()
            .unwrap();
        assert!(out.status.success(), "login: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A JSON request with a token, straight to the API (what the test checks against).
    pub fn get(&self, token: &str, path: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.ca).unwrap()).unwrap();
        let http = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();
        rt.block_on(async {
            let res = http.get(format!("{}/api/v1{path}", self.url)).bearer_auth(token).send().await.unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            assert!(status.is_success(), "GET {path}: {status} {text}");
            serde_json::from_str(&text).unwrap()
        })
    }
}
