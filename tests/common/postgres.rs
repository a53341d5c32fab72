//! A PostgreSQL for tests. `MARGINALIA_TEST_POSTGRES=postgres://USER@HOST:PORT` names a server
//! the tests may create databases in; without it, a throwaway cluster is made here with the
//! PostgreSQL binaries this machine has (`PG_BINDIR`, `pg_config --bindir`,
//! `/usr/lib/postgresql/*/bin`, or `PATH`): `initdb` in a temp dir, the server on a free
//! loopback port, TLS on with a certificate made here. PostgreSQL refuses to run as root, so
//! under root (CI) the cluster runs as the `postgres` user, or `nobody`. A watchdog stops it and
//! removes it when the test process ends.
//!
//! When there is no PostgreSQL to be had, the tests that need one print a loud SKIPPED line; with
//! `MARGINALIA_REQUIRE_POSTGRES=1` (set by `.ci/test` under CI) they fail instead.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The super-user every cluster made here has (trust authentication on loopback).
pub const USER: &str = "marginalia";

/// A running cluster made by these tests.
pub struct Cluster {
    /// `postgres://marginalia@127.0.0.1:PORT`, without a database.
    pub base: String,
    pub port: u16,
    bin: PathBuf,
    /// The cluster's directory (`data` in it), owned by `run_as`.
    dir: PathBuf,
    run_as: Option<(u32, u32)>,
    /// The CA that signed the server's certificate (for `localhost` and `127.0.0.1`).
    pub ca_pem: PathBuf,
}

/// Where tests find PostgreSQL: a cluster of this process, or a server given from outside.
pub enum Server {
    Ours(Cluster),
    Given(String),
}

impl Server {
    pub fn base(&self) -> &str {
        match self {
            Server::Ours(c) => &c.base,
            Server::Given(url) => url,
        }
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        match self {
            Server::Ours(c) => Some(c),
            Server::Given(_) => None,
        }
    }

    /// A new, empty database: its URL.
    pub async fn database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) =
            tokio_postgres::connect(&format!("{}/postgres?sslmode=disable", self.base()), tokio_postgres::NoTls)
                .await
                .expect("the test PostgreSQL answers");
        let driver = tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("a test database");
        drop(client);
        let _ = driver.await;
        format!("{}/{name}?sslmode=disable", self.base())
    }
}

/// Why a test could not have its PostgreSQL; says SKIPPED loudly, or fails under
/// `MARGINALIA_REQUIRE_POSTGRES`.
pub fn unavailable(why: &str) {
    if std::env::var_os("MARGINALIA_REQUIRE_POSTGRES").is_some_and(|v| v == "1") {
        panic!("PostgreSQL is required (MARGINALIA_REQUIRE_POSTGRES=1) but {why}");
    }
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        eprintln!(
            "\n******** SKIPPED: the PostgreSQL runs of these tests ({why}). Install PostgreSQL (Debian: apt-get install \
             postgresql) or set MARGINALIA_TEST_POSTGRES=postgres://USER@HOST:PORT. ********\n"
        )
    });
}

/// The PostgreSQL of this test process, made on first use; `None` (said loudly) when there is none.
pub fn shared() -> Option<&'static Server> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("MARGINALIA_TEST_POSTGRES")
            && !url.trim().is_empty()
        {
            return Ok(Server::Given(url.trim().trim_end_matches('/').to_string()));
        }
        Cluster::start(Tuning::Fast).map(Server::Ours)
    });
    match server {
        Ok(s) => Some(s),
        Err(why) => {
            unavailable(why);
            None
        }
    }
}

/// How a cluster trades durability for speed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// No fsync: for tests that never crash PostgreSQL itself.
    Fast,
    /// PostgreSQL's defaults (fsync on every commit): for benchmarks.
    Durable,
}

/// Where the PostgreSQL binaries are.
pub fn bindir() -> Option<PathBuf> {
    let has = |d: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| d.join(b).is_file());
    if let Some(d) = std::env::var_os("PG_BINDIR").map(PathBuf::from).filter(|d| has(d)) {
        return Some(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| has(d))
}

/// The user a cluster runs as when the tests run as root: (uid, gid) of `postgres`, or `nobody`.
fn unprivileged() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let find = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
        })
    };
    find("postgres").or_else(|| find("nobody"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Makes and starts a cluster of this process's own.
    pub fn start(tuning: Tuning) -> Result<Cluster, String> {
        let bin = bindir().ok_or("no PostgreSQL binaries (initdb, pg_ctl, postgres) were found")?;
        #[cfg(unix)]
        let root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").map_err(|e| e.to_string())?) == 0;
        #[cfg(not(unix))]
        let root = false;
        let run_as = if root {
            Some(unprivileged().ok_or("running as root, with no `postgres` or `nobody` user")?)
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("marginalia-pg-").tempdir().map_err(|e| e.to_string())?.keep();
        let (ca_pem, cert, key) = certificates(&dir);
        if let Some((uid, gid)) = run_as {
            for p in [&dir, &cert, &key] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let port = free_port();
        let cluster = Cluster { base: format!("postgres://{USER}@127.0.0.1:{port}"), port, bin, dir, run_as, ca_pem };
        let out = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", USER, "--encoding=UTF8", "--locale=C", "-D"])
            .arg(cluster.data())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 300\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nshared_buffers = 128MB\n",
            cluster.dir.display(),
            cert.display(),
            key.display()
        );
        if tuning == Tuning::Fast {
            conf.push_str("fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n");
        }
        std::fs::write(cluster.data().join("postgresql.auto.conf"), conf).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = run_as {
            let _ = std::os::unix::fs::chown(cluster.data().join("postgresql.auto.conf"), Some(uid), Some(gid));
        }
        cluster.pg_ctl(&["start", "-w", "-t", "60", "-l"], Some(&cluster.dir.join("log")))?;
        cluster.watch();
        Ok(cluster)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.env("LC_ALL", "C").env_remove("PGDATA").stdin(Stdio::null());
        #[cfg(unix)]
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid).current_dir(&self.dir);
        }
        cmd
    }

    fn pg_ctl(&self, args: &[&str], log: Option<&Path>) -> Result<(), String> {
        let mut cmd = self.command("pg_ctl");
        cmd.args(args);
        if let Some(l) = log {
            cmd.arg(l);
        }
        cmd.arg("-D").arg(self.data());
        let out = cmd.stdout(Stdio::null()).output().map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            return Err(format!("pg_ctl {args:?} failed: {}\n{log}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    /// Stops the server now (fast shutdown: connections are closed, nothing committed is lost).
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast", "-w"], None).expect("the test PostgreSQL stops");
    }

    /// Stops the server as a crash would (immediate shutdown: no checkpoint; what was committed
    /// is recovered from the write-ahead log on the next start, when the cluster is durable).
    pub fn crash(&self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"], None).expect("the test PostgreSQL stops");
    }

    /// Starts it again after [`Cluster::stop`] or [`Cluster::crash`].
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-w", "-t", "60", "-l"], Some(&self.dir.join("log")))
            .expect("the test PostgreSQL starts");
    }

    /// A new, empty database: its URL.
    pub async fn database(&self) -> String {
        let server = Server::Given(self.base.clone());
        server.database().await
    }

    /// Stops and removes the cluster when this process ends, however it ends: a small shell
    /// loop, in a process group of its own, running as the cluster's user.
    fn watch(&self) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; '{pg_ctl}' stop -m immediate -D '{data}' >/dev/null 2>&1; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.dir.display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            if let Some((uid, gid)) = self.run_as {
                cmd.uid(uid).gid(gid).current_dir(&self.dir);
            }
        }
        let _ = cmd.spawn();
    }

    /// Waits until the server accepts connections (after a start), at most `within`.
    pub async fn wait_ready(&self, within: Duration) {
        let started = Instant::now();
        loop {
            let url = format!("{}/postgres?sslmode=disable", self.base);
            if tokio_postgres::connect(&url, tokio_postgres::NoTls).await.is_ok() {
                return;
            }
            assert!(started.elapsed() < within, "the test PostgreSQL did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by it: the CA's PEM
/// path, and the server's certificate and key paths (the key readable by its owner only).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "marginalia test database CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&ca_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (ca_path, cert_path, key_path)
}
