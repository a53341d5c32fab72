//! The sync server, `marginalia serve`: an HTTPS JSON API under `/api/v1` for teams, members,
//! tokens, repositories, codemarks and replies, and feedback requests (reviews) with their
//! revisions, with an event stream, export, deletion, an audit log, health and metrics. **Architecture invariant:** the only module that knows axum and
//! HTTP; SQL stays in `db::sqlite` and `db::postgres`, the cipher in `crypto`.
//!
//! # Code map
//!
//! - `routes`: the route table and the handlers (HTTP in, service calls, HTTP out), including the
//!   Server-Sent Events stream.
//! - `extract`: the caller from the token (and its rate limit), JSON bodies with the faulty field
//!   named, query and path parameters, the `Idempotency-Key` header.
//! - `service`: what each call does: team scoping, roles, validation, sealing, audit entries,
//!   events, idempotency. No HTTP. `service::reviews` holds the feedback requests'.
//! - `validate`: checks on what clients send (sizes, ids, kinds). Pure.
//! - `crypto`: the master key, team data keys, sealed values, lookup MACs, token hashes.
//! - `audit`: the hash-chained audit log's rules and its verification. Pure.
//! - `db`: the [`Storage`](db::Storage) trait (rows of sealed bytes) and its implementations,
//!   `db::sqlite` (one process) and `db::postgres` (several processes over one database).
//! - `backend`: which storage a server runs on, opened with its notifier and rate limiter;
//!   rotating the master key.
//! - `events`: waking event-stream listeners when their team changes ([`events::Notifier`]).
//! - `limits`: per-token rate limits ([`limits::RateLimiter`]).
//! - `metrics`: Prometheus counters; `openapi`: the OpenAPI document; `error`: refusals as
//!   HTTP answers.
//!
//! Requests flow: handler -> [`service::Service`] -> [`db::Storage`]. Every mutation is one
//! storage batch holding the change, its audit entries, its events and its idempotency record.

pub mod audit;
pub mod backend;
pub mod crypto;
pub mod db;
pub mod error;
pub mod events;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod service;
pub mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crypto::MasterKey;
use error::ApiError;
use metrics::Metrics;
use service::Service;

/// The master key's environment variable.
pub const MASTER_KEY_ENV: &str = "MARGINALIA_MASTER_KEY";
/// The key file dev mode creates in the data directory.
pub const DEV_KEY_FILE: &str = "master.key";

/// What every handler shares.
pub struct Shared {
    pub service: Service,
    pub limiter: Arc<dyn limits::RateLimiter>,
    pub metrics: Arc<Metrics>,
    /// Served over TLS: answers carry HSTS.
    pub tls: bool,
}

impl Shared {
    /// The server's parts over `store`, with the default notifier and rate limiter.
    pub fn new(store: Arc<dyn db::Storage>, master: MasterKey, rate_per_second: f64, burst: f64, tls: bool) -> Shared {
        let backend = backend::Backend {
            store,
            notifier: Arc::new(events::LocalNotifier::default()),
            limiter: Arc::new(limits::LocalRateLimiter::new(rate_per_second, burst)),
            warnings: Vec::new(),
        };
        Shared::over(backend, master, tls)
    }

    /// The server's parts over a storage opened with its own notifier and rate limiter.
    pub fn over(backend: backend::Backend, master: MasterKey, tls: bool) -> Shared {
        Shared {
            service: Service::new(backend.store, master, backend.notifier),
            limiter: backend.limiter,
            metrics: Arc::new(Metrics::default()),
            tls,
        }
    }
}

/// The whole API as a router: what the server serves, and what tests drive without a socket.
pub fn app(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for r in routes::table() {
        router = router.route(r.path, r.handler);
    }
    let router = router.fallback(not_found).method_not_allowed_fallback(method_not_allowed).with_state(shared.clone());
    harden(router, shared)
}

/// The layers every answer passes through, errors and 404s included: a panic becomes a 500,
/// security headers are set, and the request is counted.
fn harden(router: Router, shared: Arc<Shared>) -> Router {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked; answering 500");
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(middleware::from_fn_with_state(shared, observe))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not answer {method}", uri.path()))
}

/// Security headers on every answer, and the request counted by its route template.
async fn observe(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = req.method().clone();
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    if shared.tls {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
    }
    h.remove(header::SERVER);
    shared.metrics.observe(&route, method.as_str(), response.status().as_u16(), started.elapsed());
    response
}

/// Where the master key came from, for the start-up message.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env,
    /// Dev mode: a key file in the data directory, made now or at an earlier start.
    DevFile {
        path: PathBuf,
        created: bool,
    },
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0} without TLS: plain HTTP is only for loopback (127.0.0.1, [::1]); give --tls-cert \
         and --tls-key"
    )]
    PlainOffLoopback(SocketAddr),
    #[error(
        "no master key: give --master-key-file FILE or set {MASTER_KEY_ENV} (32 bytes as 64 hex characters or \
         base64); only a loopback dev server makes its own"
    )]
    NoMasterKey,
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error(transparent)]
    Key(#[from] crypto::CryptoError),
    #[error(transparent)]
    Storage(#[from] db::DbError),
    #[error("cannot load the TLS certificate or key ({cert}, {key}): {cause}")]
    Tls { cert: String, key: String, cause: std::io::Error },
    #[error("cannot listen on {addr}: {cause}")]
    Listen { addr: SocketAddr, cause: std::io::Error },
}

/// Process-wide settings for a server process; call before starting threads that use storage.
pub fn prepare_process() {
    db::sqlite::tune_process();
}

/// Finds the master key: `--master-key-file`, else the environment, else (on loopback only, and
/// with a data directory) a dev key file in the data directory, created when missing.
pub fn master_key(
    file: Option<&Path>,
    env: Option<String>,
    data: Option<&Path>,
    loopback: bool,
) -> Result<(MasterKey, KeySource), StartError> {
    if let Some(f) = file {
        return Ok((MasterKey::read_file(f)?, KeySource::File(f.to_path_buf())));
    }
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        return Ok((MasterKey::parse(&text, &format!("in {MASTER_KEY_ENV}"))?, KeySource::Env));
    }
    let Some(data) = data.filter(|_| loopback) else {
        return Err(StartError::NoMasterKey);
    };
    let path = data.join(DEV_KEY_FILE);
    if path.exists() {
        return Ok((MasterKey::read_file(&path)?, KeySource::DevFile { path, created: false }));
    }
    std::fs::create_dir_all(data)
        .map_err(|cause| crypto::CryptoError::WriteKeyFile { path: data.display().to_string(), cause })?;
    Ok((MasterKey::create_file(&path)?, KeySource::DevFile { path, created: true }))
}

/// How `marginalia serve` runs.
pub struct Config {
    pub listen: SocketAddr,
    /// Where the data is: SQLite in a directory, or PostgreSQL.
    pub location: backend::Location,
    /// The directory of dev mode's key file (SQLite's data directory, or `--data` beside
    /// `--database`).
    pub data: Option<PathBuf>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub master_key_file: Option<PathBuf>,
    pub master_key_env: Option<String>,
    pub rate_per_second: f64,
    pub burst: f64,
}

/// Runs the server until ctrl-c or SIGTERM. Start-up messages go to stderr; the line
/// `listening on http(s)://ADDR` says where it answers (the real port when 0 was asked).
pub async fn serve(config: Config) -> Result<(), StartError> {
    let loopback = config.listen.ip().is_loopback();
    if config.tls.is_none() && !loopback {
        return Err(StartError::PlainOffLoopback(config.listen));
    }
    let (master, source) =
        master_key(config.master_key_file.as_deref(), config.master_key_env.clone(), config.data.as_deref(), loopback)?;
    match &source {
        KeySource::DevFile { path, created: true } => eprintln!(
            "WARNING: dev mode: no master key was given, so a new one was written to {} (mode 0600). Anyone with \
             this file and the database can read every team's data. Give --master-key-file or {MASTER_KEY_ENV} \
             outside development.",
            path.display()
        ),
        KeySource::DevFile { path, created: false } => {
            eprintln!("WARNING: dev mode: using the master key in {} (no key was given)", path.display())
        }
        _ => {}
    }
    let backend = backend::open(&config.location, config.rate_per_second, config.burst).await?;
    eprintln!("storage: {}", config.location.describe());
    for w in &backend.warnings {
        eprintln!("WARNING: {w}");
    }
    // Keys whose team never made it (or whose team's deletion stopped half way).
    let swept = backend.store.sweep_orphan_keys(service::now_ms() - 3_600_000).await?;
    if swept > 0 {
        tracing::warn!("destroyed {swept} data keys whose teams are gone");
    }
    let shared = Arc::new(Shared::over(backend, master, config.tls.is_some()));
    let app = app(shared).into_make_service();
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        wait_for_stop().await;
        eprintln!("stopping: finishing requests in flight (at most 5 s)");
        shutdown.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|cause| StartError::Listen { addr: config.listen, cause })?;
    let bound = listener.local_addr().map_err(|cause| StartError::Listen { addr: config.listen, cause })?;
    match &config.tls {
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.map_err(|cause| {
                StartError::Tls { cert: cert.display().to_string(), key: key.display().to_string(), cause }
            })?;
            eprintln!("listening on https://{bound}");
            axum_server::from_tcp_rustls(listener, tls)
                .map_err(|cause| StartError::Listen { addr: bound, cause })?
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            eprintln!(
                "WARNING: dev mode: plain HTTP without TLS, allowed because {bound} is a loopback address; give \
                 --tls-cert and --tls-key to serve anyone else"
            );
            eprintln!("listening on http://{bound}");
            axum_server::from_tcp(listener)
                .map_err(|cause| StartError::Listen { addr: bound, cause })?
                .handle(handle)
                .serve(app)
                .await
        }
    }
    .map_err(|cause| StartError::Listen { addr: bound, cause })
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_headers_and_the_server_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let storage = db::sqlite::SqliteStorage::open(dir.path()).unwrap();
        let master = MasterKey::parse(&"11".repeat(32), "test").unwrap();
        let shared = Arc::new(Shared::new(Arc::new(storage), master, 0.0, 1.0, true));
        let router: Router = Router::new()
            .route("/boom", axum::routing::get(boom))
            .route("/fine", axum::routing::get(|| async { "fine" }));
        let router = harden(router, shared);
        let res = router.clone().oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 500);
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        assert!(res.headers().contains_key("strict-transport-security"));
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let body: crate::api::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.code, "internal");
        assert!(!body.error.message.contains("boom"), "the panic's text stays in the log");
        let res = router.oneshot(Request::get("/fine").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn the_master_key_comes_from_the_file_the_environment_or_dev_mode_on_loopback_only() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "22".repeat(32);
        let (_, source) = master_key(None, Some(hex.clone()), Some(dir.path()), false).unwrap();
        assert_eq!(source, KeySource::Env);
        assert!(matches!(master_key(None, None, Some(dir.path()), false), Err(StartError::NoMasterKey)));
        assert!(matches!(master_key(None, None, None, true), Err(StartError::NoMasterKey)), "no directory, no dev key");
        let (k1, source) = master_key(None, None, Some(dir.path()), true).unwrap();
        assert!(matches!(source, KeySource::DevFile { created: true, .. }));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(DEV_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, source) = master_key(None, None, Some(dir.path()), true).unwrap();
        assert!(matches!(source, KeySource::DevFile { created: false, .. }));
        assert_eq!(k1.team_name_mac("t"), k2.team_name_mac("t"), "the same key is read back");
        let file = dir.path().join("given.key");
        std::fs::write(&file, format!("{hex}\n")).unwrap();
        let (k3, source) = master_key(Some(&file), None, Some(dir.path()), false).unwrap();
        assert_eq!(source, KeySource::File(file));
        let (k4, _) = master_key(None, Some(hex), Some(dir.path()), false).unwrap();
        assert_eq!(k3.team_name_mac("t"), k4.team_name_mac("t"));
    }
}
