//! The sync server without a socket, for tests: fresh storage (a data directory for SQLite, a new
//! database for PostgreSQL), the router driven with tower's `oneshot`, and helpers that make
//! teams and members the way people do (an operator's invite, then `POST /login`).
//!
//! One suite, both backends: a test written as `async fn name(backend: Backend)` and listed in
//! [`on_every_backend!`] runs as `sqlite::name` and `postgres::name`; the few things a test
//! checks below the API (the bytes at rest, raw SQL against the audit table) go through `Kit`
//! helpers that know both.

#![allow(dead_code)]

#[path = "postgres.rs"]
pub mod pg;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use marginalia::api::Role;
use marginalia::server::backend::{self, Location};
use marginalia::server::crypto::MasterKey;
use marginalia::server::db::Storage;
use marginalia::server::db::postgres::Options;
use marginalia::server::db::sqlite::SqliteStorage;
use marginalia::server::{Shared, app};

/// Runs each listed test, an `async fn name(backend: Backend)` of the including file, once per
/// storage: `sqlite::name`, and `postgres::name` (which says SKIPPED when no PostgreSQL can be
/// had, or fails under `MARGINALIA_REQUIRE_POSTGRES=1`).
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::kit::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = super::kit::Backend::postgres() {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

/// Which storage a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL when this process can have one (see [`pg::shared`]).
    pub fn postgres() -> Option<Backend> {
        pg::shared().map(|_| Backend::Postgres)
    }

    /// A server over fresh storage, without rate limits.
    pub async fn kit(self) -> Kit {
        Kit::on(self, 0.0, 1.0).await
    }

    pub async fn kit_with_rate(self, per_second: f64, burst: f64) -> Kit {
        Kit::on(self, per_second, burst).await
    }
}

/// The master key of every test server.
pub const MASTER_HEX: &str = "6d617267696e616c6961206d6173746572206b657920666f7220746573747321";

pub fn master() -> MasterKey {
    MasterKey::parse(MASTER_HEX, "a test").unwrap()
}

pub struct Kit {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// PostgreSQL: the database's URL.
    pub database: Option<String>,
    pub store: Arc<dyn Storage>,
    pub shared: Arc<Shared>,
    pub app: Router,
}

/// A member as a client sees itself.
#[derive(Clone, Debug)]
pub struct User {
    pub token: String,
    pub member_id: String,
    pub team_id: String,
    pub token_id: String,
}

#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Res {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    pub fn field(&self) -> Option<&str> {
        self.json["error"]["field"].as_str()
    }
    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }
}

impl Kit {
    pub fn new() -> Kit {
        Kit::with_rate(0.0, 1.0)
    }

    pub fn with_rate(per_second: f64, burst: f64) -> Kit {
        Kit::in_dir(tempfile::tempdir().unwrap(), per_second, burst)
    }

    /// A server over an existing data directory (a restart).
    pub fn in_dir(dir: tempfile::TempDir, per_second: f64, burst: f64) -> Kit {
        Kit::in_dir_with(dir, per_second, burst, master())
    }

    fn in_dir_with(dir: tempfile::TempDir, per_second: f64, burst: f64, master: MasterKey) -> Kit {
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(dir.path()).unwrap());
        let shared = Arc::new(Shared::new(storage.clone(), master, per_second, burst, true));
        let app = app(shared.clone());
        Kit { dir, backend: Backend::Sqlite, database: None, store: storage, shared, app }
    }

    /// A server over fresh storage of `backend`.
    pub async fn on(backend: Backend, per_second: f64, burst: f64) -> Kit {
        match backend {
            Backend::Sqlite => Kit::with_rate(per_second, burst),
            Backend::Postgres => {
                let server = pg::shared().expect("a PostgreSQL for the tests");
                let url = server.database().await;
                Kit::over_postgres(tempfile::tempdir().unwrap(), url, per_second, burst).await
            }
        }
    }

    /// A server process over the PostgreSQL database `url` (one of several, when called again).
    pub async fn over_postgres(dir: tempfile::TempDir, url: String, per_second: f64, burst: f64) -> Kit {
        Kit::over_postgres_with(dir, url, per_second, burst, master()).await
    }

    async fn over_postgres_with(
        dir: tempfile::TempDir,
        url: String,
        per_second: f64,
        burst: f64,
        master: MasterKey,
    ) -> Kit {
        let options = Options { data: url.clone(), keys: None, pool: 4 };
        let backend = backend::open(&Location::Postgres(options), per_second, burst).await.unwrap();
        let store = backend.store.clone();
        let shared = Arc::new(Shared::over(backend, master, true));
        let app = app(shared.clone());
        Kit { dir, backend: Backend::Postgres, database: Some(url), store, shared, app }
    }

    /// The same storage served anew, as after a restart.
    pub async fn restart(self) -> Kit {
        self.restart_with(master()).await
    }

    /// The same storage served anew with another master key.
    pub async fn restart_with(self, master: MasterKey) -> Kit {
        let Kit { dir, backend, database, store, shared, app } = self;
        drop((app, shared, store));
        match (backend, database) {
            (Backend::Postgres, Some(url)) => Kit::over_postgres_with(dir, url, 0.0, 1.0, master).await,
            _ => Kit::in_dir_with(dir, 0.0, 1.0, master),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Runs one SQL statement straight against the data, as someone with the database's
    /// credentials could: the rows it changed, or the database's refusal.
    pub async fn sql(&self, sql: &str) -> Result<u64, String> {
        match &self.database {
            None => {
                let c = rusqlite::Connection::open(self.dir.path().join("server.db")).unwrap();
                c.execute(sql, []).map(|n| n as u64).map_err(|e| e.to_string())
            }
            Some(url) => {
                let c = pg_client(url).await;
                c.execute(sql, &[])
                    .await
                    .map_err(|e| e.as_db_error().map_or(e.to_string(), |d| d.message().to_string()))
            }
        }
    }

    /// A number read straight from the data (`SELECT count(*) ...`).
    pub async fn number(&self, sql: &str) -> i64 {
        match &self.database {
            None => {
                let c = rusqlite::Connection::open(self.dir.path().join("server.db")).unwrap();
                c.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Some(url) => pg_client(url).await.query_one(sql, &[]).await.unwrap().get(0),
        }
    }

    /// Everything the storage holds at rest, as bytes to search: SQLite's files (data, WAL,
    /// keys), or every value of every table of the PostgreSQL database (text as UTF-8, bytea as
    /// its bytes).
    pub async fn at_rest(&self) -> Vec<(String, Vec<u8>)> {
        let Some(url) = &self.database else {
            return std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
                .collect();
        };
        let c = pg_client(url).await;
        let columns = c
            .query(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
                &[],
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        for col in columns {
            let (table, column, kind): (String, String, String) = (col.get(0), col.get(1), col.get(2));
            let mut bytes = Vec::new();
            if kind == "bytea" {
                for r in c.query(&format!("SELECT {column} FROM {table}"), &[]).await.unwrap() {
                    bytes.extend(r.get::<_, Option<Vec<u8>>>(0).unwrap_or_default());
                }
            } else {
                for r in c.query(&format!("SELECT {column}::text FROM {table}"), &[]).await.unwrap() {
                    bytes.extend(r.get::<_, Option<String>>(0).unwrap_or_default().into_bytes());
                }
            }
            out.push((format!("{table}.{column}"), bytes));
        }
        out
    }

    /// A copy of one sealed column, `(team_id, id, value)` by row, as a backup holds it: SQLite's
    /// `VACUUM INTO` a file read back; PostgreSQL's rows copied out (what `pg_dump
    /// --exclude-table=marginalia_team_keys` writes).
    pub async fn backup_of(&self, table: &str, column: &str) -> Vec<(String, String, Vec<u8>)> {
        let sql = format!("SELECT team_id, id, {column} FROM {table}");
        match &self.database {
            None => {
                let backup = self.dir.path().join(format!("backup-{}.db", uuid::Uuid::now_v7()));
                let c = rusqlite::Connection::open(self.dir.path().join("server.db")).unwrap();
                c.execute("VACUUM INTO ?1", [backup.to_str().unwrap()]).unwrap();
                let b = rusqlite::Connection::open(&backup).unwrap();
                let mut stmt = b.prepare(&sql).unwrap();
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
            }
            Some(url) => {
                let rows = pg_client(url).await.query(&sql, &[]).await.unwrap();
                rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
            }
        }
    }

    pub async fn invite(&self, team: &str, role: Option<Role>) -> String {
        let (invite, _, _) = self.shared.service.operator_invite(team, role, None).await.unwrap();
        invite.code
    }

    /// A new member of `team` (made on first use), signed in with an operator's invite.
    pub async fn join(&self, team: &str, name: &str, role: Role) -> User {
        let code = self.invite(team, Some(role)).await;
        let res = self
            .call(Method::POST, "/api/v1/login", None, Some(json!({"invite": code, "name": name, "email": format!("{}@example.com", name.to_lowercase().replace(' ', "."))})))
            .await;
        assert_eq!(res.status, 201, "login: {}", res.text);
        User {
            token: res.json["token"].as_str().unwrap().to_string(),
            member_id: res.json["member"]["id"].as_str().unwrap().to_string(),
            team_id: res.json["team"]["id"].as_str().unwrap().to_string(),
            token_id: res.json["info"]["id"].as_str().unwrap().to_string(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Res {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// The status of an answer whose body is not read (an event stream's).
    pub async fn status_of(&self, method: Method, path: &str, token: &str) -> u16 {
        let req = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {token}"));
        self.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap().status().as_u16()
    }

    pub async fn send(&self, req: Request<Body>) -> Res {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Res { status, headers, text, json }
    }
}

/// A UUID v7 for ids the client makes.
pub fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A codemark as a client sends it.
pub fn new_codemark(id: &str, repo: &str, body: &str, snippet: &str) -> Value {
    json!({
        "id": id,
        "repo": repo,
        "kind": "question",
        "title": format!("title of {id}"),
        "body": body,
        "anchors": [{
            "id": self::id(),
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "path": "src/cache.rs",
            "start": 40,
            "end": 42,
            "text": snippet,
            "before": ["fn before() {}"],
            "after": ["fn after() {}"],
        }],
        "created": 1_700_000_000_000i64,
    })
}

/// A base commit the review tests' revisions apply to.
pub const BASE: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// A modified file's patch: CRLF lines, non-ASCII text, a line that looks like a header, and a
/// last line without a line break, so a copy that is not byte for byte the same shows.
pub const CART_PATCH: &str = "@@ -1,4 +1,4 @@\n fn total(a: f64, b: f64) -> f64 {\r\n-    a + b // naïve\r\n+    (a + b).round() // ½ up\r\n+++ still a line of code\n }\n\\ No newline at end of file\n";

/// A revision as a client sends it: `src/cart.rs` changed by `patch`, `logo.png` (binary, listed
/// only) and `src/new.rs` added.
pub fn new_revision(id: &str, patch: &str) -> Value {
    json!({
        "id": id,
        "base": BASE,
        "base_note": "merge-base with origin/main",
        "head": "0123456789abcdef0123456789abcdef01234567",
        "files": [
            {"old_path": "src/cart.rs", "new_path": "src/cart.rs", "old_mode": "100644", "new_mode": "100644",
             "old_blob": "1".repeat(40), "new_blob": "2".repeat(40), "patch": patch},
            {"old_path": "logo.png", "new_path": "logo.png", "old_mode": "100644", "new_mode": "100644",
             "old_blob": "3".repeat(40), "new_blob": "4".repeat(40), "binary": true},
            {"new_path": "src/new.rs", "new_mode": "100755", "new_blob": "5".repeat(40),
             "patch": "@@ -0,0 +1,2 @@\n+fn fresh() {}\n+// two\n"},
        ],
        "created": 1_700_000_000_000i64,
    })
}

/// A feedback request as a client sends it.
pub fn new_review(id: &str, repo: &str, title: &str, reviewers: &[&str]) -> Value {
    json!({
        "id": id,
        "repo": repo,
        "title": title,
        "description": format!("description of {title}"),
        "reviewers": reviewers,
        "revision": new_revision(&self::id(), CART_PATCH),
    })
}

/// A comment on a review's file: a codemark linked to it.
pub fn review_comment(id: &str, repo: &str, review: &str, revision: u32, path: &str, side: &str, body: &str) -> Value {
    let mut c = new_codemark(id, repo, body, "(a + b).round()");
    c["kind"] = json!("comment");
    c["title"] = Value::Null;
    c["anchors"][0]["path"] = json!(path);
    c["anchors"][0]["pending"] = json!(true);
    c["review"] = json!({"review": review, "revision": revision, "path": path, "side": side});
    c
}

/// A plain connection to a PostgreSQL database, driven on a task of its own.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("the test database answers");
    tokio::spawn(connection);
    client
}

/// Reads up to `n` events from an event stream's body within `within`: `(id, data)` each.
pub async fn read_events(body: &mut Body, n: usize, within: std::time::Duration) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while events.len() < n {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            _ => break,
        };
        if let Some(data) = frame.data_ref() {
            buffer.push_str(&String::from_utf8_lossy(data));
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

impl Kit {
    /// Opens the event stream as `user` (from `after`, when given): its body.
    pub async fn events(&self, user: &User, after: Option<&str>) -> Body {
        let path = after.map_or("/api/v1/events".to_string(), |a| format!("/api/v1/events?after={a}"));
        let req = Request::get(path).header("authorization", format!("Bearer {}", user.token));
        let res = self.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body()
    }
}
