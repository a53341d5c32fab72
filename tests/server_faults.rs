//! The server under faults, with real `marginalia serve` processes and a real PostgreSQL:
//!
//! - `kill -9` of a server in the middle of a burst of writes: on SQLite the process is started
//!   again over its files; on PostgreSQL the other of two processes carries on.
//! - PostgreSQL crashed (immediate shutdown) and started again under load: `/healthz` says
//!   unavailable meanwhile, and the servers recover by themselves.
//!
//! Clients write as the sync client does: each write has its own idempotency key and is sent
//! again, to whichever server is up, until it is acknowledged. Afterwards every write a client
//! saw acknowledged is there, none twice (the team's event counter counts each write once), and
//! the rest were retried to completion.

#[path = "common/server.rs"]
mod kit;
#[path = "common/serve.rs"]
mod serve;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use kit::pg;

const REPO: &str = "github.com/acme/shop";
/// Concurrent clients, and codemarks each makes (each followed by a reply to it).
const CLIENTS: usize = 8;
const EACH: usize = 12;
const WRITES: usize = CLIENTS * EACH * 2;
/// How long clients may keep retrying before the test gives up (a bound, not a measurement).
const PATIENCE: Duration = Duration::from_secs(120);

/// Where the servers keep their data.
#[derive(Clone)]
enum Store {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Store {
    fn args(&self) -> Vec<String> {
        match self {
            Store::Sqlite(dir) => vec!["--data".into(), dir.display().to_string()],
            Store::Postgres(url) => vec!["--database".into(), url.clone()],
        }
    }
}

/// A `marginalia serve` process, killed (SIGKILL) when dropped.
struct Server {
    child: std::process::Child,
    url: String,
    /// Its log, kept (and so read) to the end: a server whose stderr is not read blocks once the
    /// pipe is full, and a database outage makes it log a line a request.
    log: std::sync::mpsc::Receiver<String>,
}

impl Server {
    fn start(store: &Store) -> Server {
        let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into(), "--rate-limit".into(), "0".into()];
        args.extend(store.args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = serve::spawn(&args, &[("MARGINALIA_MASTER_KEY", kit::MASTER_HEX), ("MARGINALIA_LOG", "warn")]);
        Server { child: s.child, url: s.url, log: s.stderr }
    }

    /// What it logged so far (WARN and up), for a failure's message.
    fn logged(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// `kill -9`: no shutdown, no flush, connections cut mid-request.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An operator's invite (the CLI, while the servers run), used to sign in: the admin's token.
async fn admin_token(store: &Store, url: &str) -> String {
    let out = Command::new(serve::BIN)
        .args(["serve", "invite", "--team", "acme"])
        .args(store.args())
        .env("MARGINALIA_MASTER_KEY", kit::MASTER_HEX)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let login: Value = http()
        .post(format!("{url}/api/v1/login"))
        .json(&json!({"invite": code, "name": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["token"].as_str().expect("a token").to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

/// One write a client makes: where it goes, what it sends, its idempotency key.
struct Write {
    key: String,
    path: String,
    body: Value,
}

/// A client's burst: codemarks, each followed by a reply to it.
fn burst(client: usize) -> Vec<Write> {
    let mut list = Vec::new();
    for i in 0..EACH {
        let cm = kit::id();
        let body = kit::new_codemark(&cm, REPO, &format!("client {client}, codemark {i}"), "let x = 1;");
        list.push(Write { key: kit::id(), path: "/api/v1/codemarks".into(), body });
        let reply = json!({"id": kit::id(), "body": format!("reply to {client}/{i}"), "created": 2});
        list.push(Write { key: kit::id(), path: format!("/api/v1/codemarks/{cm}/replies"), body: reply });
    }
    list
}

/// What the clients saw: the writes acknowledged (their bodies' ids), and how often a write had
/// to be sent again.
#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<String>>,
    retries: AtomicUsize,
}

impl Tally {
    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// The live servers' addresses, as a load balancer knows them.
type Balancer = Arc<Mutex<Vec<String>>>;

/// Sends each write until it is acknowledged (201), to the next live server after a failure. A
/// refusal other than "unavailable" (503) or a dropped connection is an error.
async fn client(n: usize, token: String, balancer: Balancer, tally: Arc<Tally>) -> Result<(), String> {
    let http = http();
    let deadline = Instant::now() + PATIENCE;
    for write in burst(n) {
        let mut attempt = n;
        loop {
            if Instant::now() > deadline {
                return Err(format!("client {n}: {} was never acknowledged", write.path));
            }
            let url = {
                let live = balancer.lock().unwrap();
                (!live.is_empty()).then(|| live[attempt % live.len()].clone())
            };
            attempt += 1;
            let Some(url) = url else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let sent = http
                .post(format!("{url}{}", write.path))
                .bearer_auth(&token)
                .header("idempotency-key", &write.key)
                .json(&write.body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 201 => {
                    let answer: Value = r.json().await.map_err(|e| e.to_string())?;
                    let id = write.body["id"].as_str().unwrap();
                    let echoed = answer["id"] == id
                        || answer["replies"].as_array().is_some_and(|rs| rs.iter().any(|r| r["id"] == id));
                    if !echoed {
                        return Err(format!("client {n}: the answer to {} is not about {id}: {answer}", write.path));
                    }
                    tally.acked.lock().unwrap().push(id.to_string());
                    break;
                }
                Ok(r) if r.status() == 503 => {}
                Ok(r) => {
                    let status = r.status();
                    return Err(format!(
                        "client {n}: {} answered {status}: {}",
                        write.path,
                        r.text().await.unwrap_or_default()
                    ));
                }
                Err(_) => {}
            }
            tally.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

fn start_clients(
    token: &str,
    balancer: &Balancer,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    (0..CLIENTS).map(|n| tokio::spawn(client(n, token.to_string(), balancer.clone(), tally.clone()))).collect()
}

/// Waits until the clients have `n` writes acknowledged.
async fn until_acked(tally: &Tally, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while tally.acked() < n {
        assert!(Instant::now() < deadline, "the clients got only {} writes acknowledged", tally.acked());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every write of every client is there once: `CLIENTS * EACH` codemarks with one reply each,
/// every acknowledged id among them, and the team's event counter at exactly one per write.
async fn everything_there_once(url: &str, token: &str, tally: &Tally) {
    let http = http();
    let list: Value =
        http.get(format!("{url}/api/v1/codemarks")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    let list = list.as_array().expect("a list");
    let mut ids: Vec<&str> = Vec::new();
    for cm in list {
        ids.push(cm["id"].as_str().unwrap());
        let replies = cm["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 1, "one reply each: {cm}");
        ids.push(replies[0]["id"].as_str().unwrap());
    }
    assert_eq!(list.len(), CLIENTS * EACH, "every codemark, once");
    let mut acked = tally.acked.lock().unwrap().clone();
    acked.sort();
    ids.sort();
    assert_eq!(ids, acked, "what is stored is exactly what the clients saw acknowledged");
    let feed: Value = http
        .get(format!("{url}/api/v1/changes?limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feed["cursor"], WRITES.to_string(), "one event per write: none applied twice");
}

/// Kills one of `processes` servers (SIGKILL) once a third of the burst is acknowledged; with
/// one process it is started again over the same data, as a supervisor would.
async fn a_server_killed_mid_burst_loses_nothing_acknowledged(store: Store, processes: usize) {
    let mut servers: Vec<Server> = (0..processes).map(|_| Server::start(&store)).collect();
    let token = admin_token(&store, &servers[0].url).await;
    let balancer: Balancer = Arc::new(Mutex::new(servers.iter().map(|s| s.url.clone()).collect()));
    let tally = Arc::new(Tally::default());
    let clients = start_clients(&token, &balancer, &tally);

    until_acked(&tally, WRITES / 3).await;
    let mut victim = servers.remove(0);
    balancer.lock().unwrap().retain(|u| *u != victim.url);
    victim.kill();
    let at_kill = tally.acked();
    assert!(at_kill < WRITES, "killed in the middle of the burst ({at_kill} of {WRITES} acknowledged)");
    if servers.is_empty() {
        let again = Server::start(&store);
        balancer.lock().unwrap().push(again.url.clone());
        servers.push(again);
    }
    for c in clients {
        c.await.unwrap().unwrap();
    }
    assert!(tally.retries.load(Ordering::Relaxed) > 0, "the kill cut some writes off, which were sent again");
    everything_there_once(&servers[0].url, &token, &tally).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_server_killed_mid_burst_is_restarted_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    a_server_killed_mid_burst_loses_nothing_acknowledged(Store::Sqlite(dir.path().join("data")), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_of_two_servers_killed_mid_burst_the_other_carries_on_and_nothing_acknowledged_is_lost() {
    let Some(server) = pg::shared() else { return };
    let url = server.database().await;
    a_server_killed_mid_burst_loses_nothing_acknowledged(Store::Postgres(url), 2).await;
}

async fn health(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(format!("{url}/healthz")).send().await.ok().map(|r| r.status().as_u16())
}

/// Polls every server's `/healthz` until each answers `status`.
async fn until_health(urls: &[String], status: u16, within: Duration) {
    let http = http();
    let deadline = Instant::now() + within;
    for url in urls {
        loop {
            let now = health(&http, url).await;
            if now == Some(status) {
                break;
            }
            if Instant::now() > deadline {
                panic!("{url}/healthz never answered {status} (last: {now:?})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// PostgreSQL crashes (immediate shutdown) in the middle of a burst through two servers, and is
/// started again: both servers say unavailable meanwhile, recover without being restarted, and
/// every acknowledged write survives (a durable cluster: fsync on, commits flushed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_and_restarted_under_load_makes_the_servers_unhealthy_meanwhile_and_loses_nothing() {
    let Some(shared) = pg::shared() else { return };
    if shared.cluster().is_none() {
        eprintln!("SKIPPED: restarting PostgreSQL needs the tests' own cluster, not MARGINALIA_TEST_POSTGRES");
        return;
    }
    // A cluster of this test's own: the others in this process keep theirs.
    let cluster = match pg::Cluster::start(pg::Tuning::Durable) {
        Ok(c) => c,
        Err(why) => {
            pg::unavailable(&why);
            return;
        }
    };
    let store = Store::Postgres(cluster.database().await);
    let servers: Vec<Server> = (0..2).map(|_| Server::start(&store)).collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let token = admin_token(&store, &urls[0]).await;
    until_health(&urls, 200, Duration::from_secs(10)).await;
    let balancer: Balancer = Arc::new(Mutex::new(urls.clone()));
    let tally = Arc::new(Tally::default());
    let clients = start_clients(&token, &balancer, &tally);

    until_acked(&tally, WRITES / 3).await;
    cluster.crash();
    let at_crash = tally.acked();
    assert!(at_crash < WRITES, "crashed in the middle of the burst ({at_crash} of {WRITES} acknowledged)");
    until_health(&urls, 503, Duration::from_secs(30)).await;
    let body: Value = http().get(format!("{}/healthz", urls[1])).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(!body.to_string().contains("marginalia@"), "no connection details: {body}");
    // Down for a while under load: the clients' writes are refused meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.start_again();
    until_health(&urls, 200, Duration::from_secs(60)).await;
    for c in clients {
        if let Err(e) = c.await.unwrap() {
            panic!("{e}\nthe servers' logs:\n{}", servers.iter().map(Server::logged).collect::<Vec<_>>().join("\n"));
        }
    }
    assert!(tally.retries.load(Ordering::Relaxed) > 0, "writes were refused while the database was down");
    for url in &urls {
        everything_there_once(url, &token, &tally).await;
    }
    // After recovery the servers still carry each other's changes: a codemark through one is
    // readable through the other at once (same database), and its event is counted once.
    let cm = kit::id();
    let made = http()
        .post(format!("{}/api/v1/codemarks", urls[0]))
        .bearer_auth(&token)
        .json(&kit::new_codemark(&cm, REPO, "after the restart", "s"))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let read = http().get(format!("{}/api/v1/codemarks/{cm}", urls[1])).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.status(), 200);
    drop(servers);
}
