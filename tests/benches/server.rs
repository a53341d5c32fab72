//! Sync server throughput and latency: `cargo bench --bench server` (release build; figures go
//! to stdout). Real `marginalia serve` processes on loopback (plain HTTP, as a dev server on
//! 127.0.0.1; the TLS figures are measured the same way with `BENCH_TLS=1`), 64 concurrent
//! clients each with its own member and token, keep-alive connections, against two setups side
//! by side:
//!
//! - SQLite, one process;
//! - PostgreSQL (a durable cluster made here: fsync on), two processes behind a round-robin
//!   balancer (each client keeps to one process, as sticky connections do).
//!
//! Phases on each, every one for a fixed time:
//!
//! 1. reads: random codemarks by id (`GET /api/v1/codemarks/{id}`), as fast as answers come
//!    back (throughput), then paced to 5,000/s in all (latency at the target rate, counted from
//!    when each request was due, so a slow answer also delays, and counts against, the next);
//! 2. writes: creates (one anchor with a 1 KiB snippet) and replies to random codemarks, half
//!    each, with idempotency keys, the same two ways, paced to 1,000/s;
//! 3. mixed: 56 clients doing 70% reads, 20% creates and 10% replies while 8 more listen on the
//!    event stream (each listener gets every change of the team).
//!
//! Targets on this 2-core machine (clients, servers and PostgreSQL all share it): SQLite at least
//! 5,000 reads/s and 1,000 writes/s with p99 under 20 ms at those rates; PostgreSQL with two
//! processes at least as many reads/s as SQLite. `BENCH_QUICK=1` runs a small version (a smoke
//! test of the benchmark itself). Without PostgreSQL binaries the PostgreSQL column is SKIPPED
//! (it fails instead under `MARGINALIA_REQUIRE_POSTGRES=1`).

#[path = "../common/postgres.rs"]
mod pg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_marginalia");
const MASTER: &str = "62656e63686d61726b206d6173746572206b657920666f7220746865207365727665";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--data DIR` or `--database URL`.
type Store = Vec<String>;

fn start(store: &Store, tls: Option<(&std::path::Path, &std::path::Path)>) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0"]).args(store);
    if let Some((cert, key)) = tls {
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    cmd.env("MARGINALIA_MASTER_KEY", &MASTER[..64]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the server starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("a `listening on` line").unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_string();
        }
    };
    // Keep reading stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Server { child, url }
}

fn invite(store: &Store) -> String {
    let out = Command::new(BIN)
        .args(["serve", "invite", "--team", "bench"])
        .args(store)
        .env("MARGINALIA_MASTER_KEY", &MASTER[..64])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn certificates(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (ca.pem(), c, k)
}

/// What a request was, for the figures.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Read,
    Write,
}

/// One phase's figures, by kind of request.
struct Phase {
    name: &'static str,
    errors: usize,
    elapsed: Duration,
    latencies: BTreeMap<Kind, Vec<Duration>>,
    /// Events the listeners received meanwhile.
    events: u64,
}

/// Requests/s, p50 and p99 (ms) of one kind in a phase.
#[derive(Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50: f64,
    p99: f64,
}

impl Phase {
    fn figures(&mut self, kind: Kind) -> Option<Figures> {
        let l = self.latencies.get_mut(&kind)?;
        l.sort();
        let pct = |p: f64| {
            let i = ((l.len() as f64 * p).ceil() as usize).saturating_sub(1);
            l.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
        };
        Some(Figures { rps: l.len() as f64 / self.elapsed.as_secs_f64(), p50: pct(0.5), p99: pct(0.99) })
    }
}

/// Runs one loop of `request` per token for `time`: as fast as answers come back (`rate`
/// `None`: throughput at saturation), or paced to `rate` requests/s in all, each latency counted
/// from when its request was due (so a slow answer also delays, and counts against, the next).
/// `request` answers the kind of request it made, or `None` when it failed.
async fn phase<F, Fut>(
    name: &'static str,
    tokens: &[String],
    time: Duration,
    rate: Option<f64>,
    request: Arc<F>,
) -> Phase
where
    F: Fn(usize, String, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Kind>> + Send,
{
    let started = Instant::now();
    let clients = tokens.len() as f64;
    let mut tasks = Vec::new();
    for (i, token) in tokens.iter().cloned().enumerate() {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<(Kind, Duration)> = Vec::new();
            let mut errors = 0;
            let mut n = 0u64;
            let interval = rate.map(|r| Duration::from_secs_f64(clients / r));
            let mut due = started + interval.map_or(Duration::ZERO, |d| d.mul_f64(i as f64 / clients));
            while due.duration_since(started) < time && started.elapsed() < time {
                let t = match interval {
                    Some(d) => {
                        let this = due;
                        tokio::time::sleep_until(this.into()).await;
                        due += d;
                        this
                    }
                    None => Instant::now(),
                };
                match request(i, token.clone(), n).await {
                    Some(kind) => latencies.push((kind, t.elapsed())),
                    None => errors += 1,
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    let mut latencies: BTreeMap<Kind, Vec<Duration>> = BTreeMap::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        for (kind, d) in l {
            latencies.entry(kind).or_default().push(d);
        }
        errors += e;
    }
    Phase { name, errors, elapsed: started.elapsed(), latencies, events: 0 }
}

/// A 1 KiB snippet (JSON-escaped: 16 lines joined by `\n`).
fn snippet(i: u64) -> String {
    (0..16).map(|l| format!("    let value_{i}_{l} = compute(input, {l}); // padding padding\\n")).collect()
}

/// A codemark as clients send it, with `{ID}`, `{ANCHOR}` and `{SNIPPET}` to fill in.
const BODY_TEMPLATE: &str = r#"{"id":"{ID}","repo":"github.com/bench/repo","kind":"comment","title":"A question","body":"Why is this computed twice? It looks like the cache misses.","anchors":[{"id":"{ANCHOR}","commit":"0123456789abcdef0123456789abcdef01234567","path":"src/lib.rs","start":10,"end":26,"text":"{SNIPPET}","before":["fn before() {}"],"after":["fn after() {}"]}],"created":1700000000000}"#;

/// A reply as clients send it, with `{ID}` to fill in.
const REPLY_TEMPLATE: &str =
    r#"{"id":"{ID}","body":"I think the cache key includes the time, so it never hits.","created":1700000000001}"#;

/// The requests clients make against a set of servers (client `i` keeps to server `i % n`).
#[derive(Clone)]
struct Traffic {
    client: reqwest::Client,
    urls: Arc<Vec<String>>,
    /// Codemarks to read and reply to.
    known: Arc<Vec<String>>,
    /// Writes acknowledged so far: each is one event of the team, so this is the team's cursor
    /// between phases.
    written: Arc<AtomicU64>,
}

impl Traffic {
    fn url(&self, i: usize) -> &str {
        &self.urls[i % self.urls.len()]
    }

    fn pick(&self, i: usize, n: u64) -> &str {
        &self.known[(i * 7919 + n as usize * 104_729) % self.known.len()]
    }

    async fn read(&self, i: usize, token: &str, n: u64) -> Option<Kind> {
        let url = format!("{}/api/v1/codemarks/{}", self.url(i), self.pick(i, n));
        match self.client.get(url).bearer_auth(token).send().await {
            Ok(r) if r.status() == 200 => r.bytes().await.is_ok().then_some(Kind::Read),
            _ => None,
        }
    }

    /// A new codemark (the body is formatted from a template: the client's own JSON work would
    /// otherwise take as much of the shared CPU as the server's).
    async fn create(&self, i: usize, token: &str, n: u64) -> Option<Kind> {
        let id = uuid::Uuid::now_v7().to_string();
        let body = BODY_TEMPLATE
            .replacen("{ID}", &id, 1)
            .replacen("{ANCHOR}", &uuid::Uuid::now_v7().to_string(), 1)
            .replacen("{SNIPPET}", &snippet(n), 1);
        self.post(&format!("{}/api/v1/codemarks", self.url(i)), token, &id, body).await
    }

    async fn reply(&self, i: usize, token: &str, n: u64) -> Option<Kind> {
        let id = uuid::Uuid::now_v7().to_string();
        let url = format!("{}/api/v1/codemarks/{}/replies", self.url(i), self.pick(i, n));
        self.post(&url, token, &id, REPLY_TEMPLATE.replacen("{ID}", &id, 1)).await
    }

    async fn post(&self, url: &str, token: &str, key: &str, body: String) -> Option<Kind> {
        let sent = self
            .client
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let ok = sent.is_ok_and(|r| r.status() == 201);
        if ok {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
        ok.then_some(Kind::Write)
    }
}

/// Listens on the event stream with each token from the team's current cursor (as a client
/// that was already caught up), counting the events received, until aborted.
fn listen(traffic: &Traffic, tokens: &[String], count: Arc<AtomicU64>) -> Vec<tokio::task::JoinHandle<()>> {
    let after = traffic.written.load(Ordering::Relaxed);
    tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let (client, url, token, count) =
                (traffic.client.clone(), traffic.url(i).to_string(), token.clone(), count.clone());
            tokio::spawn(async move {
                let events = format!("{url}/api/v1/events?after={after}");
                let Ok(r) = client.get(events).bearer_auth(&token).send().await else { return };
                let mut stream = r.bytes_stream();
                while let Some(Ok(chunk)) = stream.next().await {
                    let n = chunk.windows(5).filter(|w| w == b"data:").count() as u64;
                    count.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// The phases against one setup: each phase's figures.
async fn run(
    setup: &str,
    urls: Vec<String>,
    store: &Store,
    clients: usize,
    time: Duration,
    ca: Option<&str>,
) -> Vec<Phase> {
    let mut builder = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(clients * 2);
    if let Some(ca) = ca {
        builder = builder.tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()]);
    }
    // Listeners hold their connections: a client of their own, so requests never queue behind them.
    let http = builder.build().unwrap();
    let url = urls[0].clone();
    // One admin from the operator's invite; one member and token per client.
    let admin: Value = http
        .post(format!("{url}/api/v1/login"))
        .json(&json!({"invite": invite(store), "name": "Admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = admin["token"].as_str().unwrap().to_string();
    let mut tokens = Vec::new();
    for i in 0..clients {
        let inv: Value = http
            .post(format!("{url}/api/v1/invites"))
            .bearer_auth(&admin)
            .json(&json!({"role": "member"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let member: Value = http
            .post(format!("{url}/api/v1/login"))
            .json(&json!({"invite": inv["code"], "name": format!("Client {i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(member["token"].as_str().unwrap().to_string());
    }
    // Codemarks to read and reply to.
    let mut traffic = Traffic {
        client: http.clone(),
        urls: Arc::new(urls),
        known: Arc::new(Vec::new()),
        written: Arc::new(AtomicU64::new(0)),
    };
    let mut known = Vec::new();
    for n in 0..200u64 {
        let id = uuid::Uuid::now_v7().to_string();
        let body = BODY_TEMPLATE
            .replacen("{ID}", &id, 1)
            .replacen("{ANCHOR}", &uuid::Uuid::now_v7().to_string(), 1)
            .replacen("{SNIPPET}", &snippet(n), 1);
        assert_eq!(traffic.post(&format!("{url}/api/v1/codemarks"), &admin, &id, body).await, Some(Kind::Write));
        known.push(id);
    }
    traffic.known = Arc::new(known);

    let t = traffic.clone();
    let read = Arc::new(move |i: usize, token: String, n: u64| {
        let t = t.clone();
        async move { t.read(i, &token, n).await }
    });
    let t = traffic.clone();
    let write = Arc::new(move |i: usize, token: String, n: u64| {
        let t = t.clone();
        async move { if n.is_multiple_of(2) { t.create(i, &token, n).await } else { t.reply(i, &token, n).await } }
    });
    let mut phases = vec![
        phase("reads", &tokens, time, None, read.clone()).await,
        phase("reads at 5,000/s", &tokens, time, Some(5000.0), read).await,
        phase("writes", &tokens, time, None, write.clone()).await,
        phase("writes at 1,000/s", &tokens, time, Some(1000.0), write).await,
    ];
    // Mixed: an eighth of the clients listen, the rest read (70%), create (20%) and reply (10%).
    let listeners = (clients / 8).max(1);
    let count = Arc::new(AtomicU64::new(0));
    let listening = listen(&traffic, &tokens[..listeners], count.clone());
    let t = traffic.clone();
    let mixed = Arc::new(move |i: usize, token: String, n: u64| {
        let t = t.clone();
        async move {
            match (i as u64 + n) % 10 {
                0 | 1 => t.create(i, &token, n).await,
                2 => t.reply(i, &token, n).await,
                _ => t.read(i, &token, n).await,
            }
        }
    });
    let mut p = phase("mixed + listeners", &tokens[listeners..], time, None, mixed).await;
    p.events = count.load(Ordering::Relaxed);
    for l in listening {
        l.abort();
    }
    phases.push(p);
    for p in &phases {
        assert_eq!(p.errors, 0, "{setup}, {}: every request succeeded", p.name);
        assert!(!p.latencies.is_empty(), "{setup}, {}: requests were made", p.name);
    }
    phases
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let tls = std::env::var_os("BENCH_TLS").is_some();
    let (clients, time) = if quick { (8, Duration::from_millis(500)) } else { (64, Duration::from_secs(10)) };
    println!(
        "marginalia sync server benchmark ({} build, {} on loopback, {clients} clients, {:?} per phase)",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        if tls { "HTTPS" } else { "HTTP" },
        time
    );
    let dir = tempfile::tempdir().unwrap();
    let certs = tls.then(|| certificates(dir.path()));
    let tls_files = certs.as_ref().map(|(_, c, k)| (c.as_path(), k.as_path()));
    let ca = certs.as_ref().map(|(ca, _, _)| ca.as_str());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let sqlite_store: Store = vec!["--data".into(), dir.path().join("data").display().to_string()];
    let sqlite = {
        let server = start(&sqlite_store, tls_files);
        runtime.block_on(run("SQLite", vec![server.url.clone()], &sqlite_store, clients, time, ca))
    };
    let postgres = match pg::Cluster::start(pg::Tuning::Durable) {
        Ok(cluster) => {
            let url = runtime.block_on(cluster.database());
            let store: Store = vec!["--database".into(), url];
            let servers: Vec<Server> = (0..2).map(|_| start(&store, tls_files)).collect();
            let urls = servers.iter().map(|s| s.url.clone()).collect();
            Some(runtime.block_on(run("PostgreSQL", urls, &store, clients, time, ca)))
        }
        Err(why) => {
            pg::unavailable(&why);
            None
        }
    };
    report(sqlite, postgres);
}

/// The figures side by side, with the targets.
fn report(mut sqlite: Vec<Phase>, mut postgres: Option<Vec<Phase>>) {
    let cell = |f: Option<Figures>| match f {
        Some(f) => format!("{:>8.0}/s {:>7.2} {:>7.2}", f.rps, f.p50, f.p99),
        None => format!("{:>27}", "-"),
    };
    println!();
    println!("{:<28} {:^27} | {:^27}", "", "SQLite, 1 process", "PostgreSQL, 2 processes");
    println!(
        "{:<28} {:>10} {:>7} {:>7} | {:>10} {:>7} {:>7}",
        "phase", "req/s", "p50 ms", "p99 ms", "req/s", "p50 ms", "p99 ms"
    );
    let mut best = BTreeMap::new();
    for i in 0..sqlite.len() {
        for kind in [Kind::Read, Kind::Write] {
            let a = sqlite[i].figures(kind);
            let b = postgres.as_mut().and_then(|p| p[i].figures(kind));
            if a.is_none() && b.is_none() {
                continue;
            }
            let label = format!("{} ({})", sqlite[i].name, if kind == Kind::Read { "reads" } else { "writes" });
            println!("{label:<28} {} | {}", cell(a), cell(b));
            if i == 0 || i == 2 {
                best.insert((kind, "sqlite"), a.unwrap_or_default().rps);
                best.insert((kind, "postgres"), b.unwrap_or_default().rps);
            }
            if i == 1 || i == 3 {
                best.insert((kind, "sqlite p99"), a.unwrap_or_default().p99);
            }
        }
        let events = |p: &Phase| format!("{:.0}/s", p.events as f64 / p.elapsed.as_secs_f64());
        if sqlite[i].events > 0 {
            let theirs = postgres.as_ref().map_or("-".into(), |p| events(&p[i]));
            println!("{:<28} {:>27} | {:>27}", "  events to listeners", events(&sqlite[i]), theirs);
        }
    }
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let get = |k| best.get(&k).copied().unwrap_or_default();
    println!();
    println!("targets: SQLite >= 5,000 reads/s: {}", met(get((Kind::Read, "sqlite")) >= 5000.0));
    println!("         SQLite >= 1,000 writes/s: {}", met(get((Kind::Write, "sqlite")) >= 1000.0));
    println!(
        "         SQLite p99 < 20 ms at 5,000 reads/s and 1,000 writes/s: {}",
        met(get((Kind::Read, "sqlite p99")) < 20.0 && get((Kind::Write, "sqlite p99")) < 20.0)
    );
    if postgres.is_some() {
        println!(
            "         PostgreSQL (2 processes) reads/s >= SQLite's: {}",
            met(get((Kind::Read, "postgres")) >= get((Kind::Read, "sqlite")))
        );
    } else {
        println!("         PostgreSQL: SKIPPED (no PostgreSQL here)");
    }
}
