//! [`Storage`] in PostgreSQL, for several stateless server processes over one database (or a
//! PostgreSQL-wire compatible one). **With `db::sqlite`, the server's only SQL.**
//!
//! - Connections come from a pool (`connect`): a read is one statement (a codemark's replies and
//!   a review's reviewers and revisions come aggregated into its row, so one snapshot shows them
//!   all), a [`Batch`] is one transaction. Point reads (a row by its key: a token, a codemark, a
//!   team key) and rate-limit checks share two connections on which concurrent requests'
//!   statements are pipelined (`Db::shared`); scans and transactions take a connection each.
//!   Reads of one codemark that arrive while another is in flight go together as one statement
//!   (`coalesce`).
//! - Tokens found valid are kept in memory (`auth_cache`) while `follow` listens: most requests
//!   are authenticated without a statement. A batch that revokes a token, changes a role,
//!   removes a member or deletes a team drops the team's entries here before it is answered, and
//!   in the other processes through its `NOTIFY`.
//! - Nothing assumes one process: uniqueness (ids, idempotency keys, invites) is the database's
//!   constraints; the last-admin rule, a review's revision numbers and its deletion lock the rows
//!   they read; the audit chain is appended under a transaction-level advisory lock; event
//!   sequence numbers come from a per-team counter row taken last and held to the commit, so a
//!   team's events become visible in order (see `schema.rs`). A transaction that deadlocks with
//!   another is run again.
//! - Each batch that writes events, revokes a token, changes a role, removes a member or deletes
//!   a team sends a `NOTIFY` in its own transaction; `follow` turns them into wake-ups of this
//!   process's event streams (and drops cached tokens). Rate-limit buckets are rows (`limits`).
//! - Wrapped team keys are in `marginalia_team_keys`, in the data's database or in another one
//!   (`--keys-database`), so data backups can leave them out.
//! - A database that cannot be reached is [`DbError::Unavailable`] (answered 503); the pool
//!   makes new connections when it comes back.

mod auth_cache;
mod coalesce;
mod connect;
mod follow;
mod limits;
mod schema;

pub use connect::{Target, Verify, target};
pub use limits::PostgresRateLimiter;
pub use schema::{DATA as DATA_MIGRATIONS, KEYS as KEYS_MIGRATIONS};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::{Object, Pool, Transaction};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};

use self::auth_cache::AuthCache;
use super::{
    AuthRow, Batch, CodemarkRow, Committed, DbError, DbFuture, EventRow, IdempotencyRow, InviteRow, MemberRow,
    ReplyRow, RepoRow, ReviewFilter, ReviewRecord, ReviewRow, ReviewerRow, RevisionDraft, RevisionRow, Stats, Storage,
    Subject, TeamRow, Thread, ThreadFilter, TokenRow, Write,
};
use crate::api::Role;
use crate::server::audit;
use crate::server::events::LocalNotifier;

/// Connections each server process keeps to a database, at most.
pub const DEFAULT_POOL: usize = 16;

/// The channel every process listens on.
const CHANNEL: &str = "marginalia";

/// Where the data and the keys are.
#[derive(Clone, Debug)]
pub struct Options {
    /// `postgres://...` of the data.
    pub data: String,
    /// `postgres://...` of the wrapped team keys; `None`: the data's database.
    pub keys: Option<String>,
    /// Connections per database, at most.
    pub pool: usize,
}

impl Options {
    pub fn new(data: &str) -> Options {
        Options { data: data.to_string(), keys: None, pool: DEFAULT_POOL }
    }
}

/// The PostgreSQL storage. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStorage {
    inner: Arc<Inner>,
}

struct Inner {
    data: Db,
    /// `None`: the keys are in the data's database.
    keys: Option<Db>,
    /// Batches waiting to be committed: whoever gets the write turn commits all of them.
    commits: coalesce::Groups<Batch, Result<Committed, DbError>>,
    /// Tokens found valid lately, trusted while `follow` listens.
    auth: Arc<AuthCache>,
    /// Reads of one codemark's thread by (team, id), gathered (see [`coalesce`]).
    threads_by_id: coalesce::Coalesced<(String, String), Thread>,
}

/// Gathered reads of one kind in flight at once, per process (see [`coalesce`]). One gathers
/// the most: in back-to-back benchmark runs, two processes served 1.10 to 1.21 times SQLite's
/// reads/s with one turn, 0.98 with two, 0.87 to 0.93 without gathering.
const READ_TURNS: usize = 1;

/// One database and its pool.
struct Db {
    pool: Pool,
    target: Target,
    /// Connections that point reads share (see [`Db::shared`]); none when the pool is too small
    /// to spare any.
    lanes: Vec<std::sync::Mutex<Option<Arc<Object>>>>,
    next_lane: AtomicUsize,
}

/// A connection a read runs on: one of the shared lanes, or one of its own from the pool.
type Conn = Arc<Object>;

/// Where a read runs: scans on a connection of their own, point reads on a shared lane.
#[derive(Clone, Copy)]
enum On {
    Own,
    Lane,
}

impl Db {
    fn open(url: &str, pool: usize, which: &str) -> Result<Db, DbError> {
        let bad = |cause: String| DbError::Backend { path: which.into(), context: "a bad URL".into(), cause };
        let target = target(url).map_err(bad)?;
        let pool_size = pool.max(1);
        let pool = connect::pool(&target, pool_size).map_err(bad)?;
        let lanes = (0..connect::lanes(pool_size)).map(|_| std::sync::Mutex::new(None)).collect();
        Ok(Db { pool, target, lanes, next_lane: AtomicUsize::new(0) })
    }

    /// A connection for a point read (a statement that reads a few rows by key), shared with
    /// other point reads running at the same time: tokio-postgres pipelines the statements of
    /// concurrent requests on one connection, so PostgreSQL takes a batch of them per wake-up
    /// and answers them in one write, where a connection per request costs a round trip, two
    /// context switches and their system calls on each side for every statement (on a machine
    /// with few cores, more than the statement itself). Each statement still runs on its own in
    /// its own implicit transaction, so it sees everything committed before it was sent,
    /// whichever process committed it. A lane is an ordinary connection from the pool, held for
    /// as long as it stays open: one that closes (the database restarted, the connection was
    /// cut) is let go, and the next read on that lane takes a fresh one.
    ///
    /// Scans and transactions take a connection of their own ([`Db::get`]): a long statement on
    /// a lane would hold up every read queued behind it.
    async fn shared(&self, context: &str) -> Result<Conn, DbError> {
        if self.lanes.is_empty() {
            return Ok(Arc::new(self.get(context).await?));
        }
        let lane = &self.lanes[self.next_lane.fetch_add(1, Ordering::Relaxed) % self.lanes.len()];
        if let Some(c) = lane.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let fresh = Arc::new(self.get(context).await?);
        // When another read filled the lane meanwhile, this one runs alone on the one it took.
        let mut held = lane.lock().unwrap_or_else(|p| p.into_inner());
        if held.as_ref().is_none_or(|c| c.is_closed()) {
            *held = Some(fresh.clone());
        }
        Ok(fresh)
    }

    fn place(&self) -> &str {
        &self.target.place
    }

    async fn get(&self, context: &str) -> Result<Object, DbError> {
        self.pool.get().await.map_err(|e| DbError::Unavailable {
            place: self.place().to_string(),
            context: context.to_string(),
            cause: with_sources(&e),
        })
    }

    fn err(&self, context: &str) -> impl Fn(tokio_postgres::Error) -> DbError + '_ {
        let context = context.to_string();
        move |e| failure(self.place(), &context, e)
    }
}

/// A failure as [`DbError`]: unreachable (the connection, or a server shutting down) or not.
pub(crate) fn failure(place: &str, context: &str, e: tokio_postgres::Error) -> DbError {
    let cause = describe(&e);
    if unreachable(&e) {
        DbError::Unavailable { place: place.to_string(), context: context.to_string(), cause }
    } else {
        DbError::Backend { path: place.into(), context: context.to_string(), cause }
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} (SQLSTATE {})", d.message(), d.code().code()),
        None => with_sources(e),
    }
}

/// An error and its causes, each once.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.ends_with(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = s.source();
    }
    text
}

fn unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code)
        }
        None => {
            let text = e.to_string();
            ["error connecting", "error communicating", "timeout", "error performing TLS", "connection closed"]
                .iter()
                .any(|p| text.starts_with(p))
                || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

impl PostgresStorage {
    /// Connects, and brings the schemas up to date (once, however many processes start at once).
    pub async fn connect(options: &Options) -> Result<PostgresStorage, DbError> {
        let data = Db::open(&options.data, options.pool, "--database")?;
        let keys = options.keys.as_deref().map(|url| Db::open(url, options.pool, "--keys-database")).transpose()?;
        {
            let mut c = data.get("could not connect").await?;
            schema::migrate(&mut c, data.place(), "marginalia_schema", schema::LOCK_DATA_MIGRATIONS, schema::DATA)
                .await?;
        }
        let keys_db = keys.as_ref().unwrap_or(&data);
        let mut c = keys_db.get("could not connect").await?;
        schema::migrate(&mut c, keys_db.place(), "marginalia_keys_schema", schema::LOCK_KEYS_MIGRATIONS, schema::KEYS)
            .await?;
        drop(c);
        Ok(PostgresStorage {
            inner: Arc::new(Inner {
                keys,
                commits: coalesce::Groups::new(1),
                auth: Arc::default(),
                threads_by_id: coalesce::Coalesced::new(READ_TURNS, data.place()),
                data,
            }),
        })
    }

    /// The data's database, without its password.
    pub fn place(&self) -> &str {
        self.inner.data.place()
    }

    /// Whether the keys live in a database of their own.
    pub fn keys_apart(&self) -> bool {
        self.inner.keys.is_some()
    }

    /// How the data's database's certificate is checked.
    pub fn verify(&self) -> Verify {
        self.inner.data.target.verify
    }

    fn keys(&self) -> &Db {
        self.inner.keys.as_ref().unwrap_or(&self.inner.data)
    }

    /// Feeds `notifier` with what other processes (and this one) commit, until it is dropped:
    /// a dedicated connection LISTENs, reconnecting when it is lost (and then waking every
    /// listener, since news may have been missed), and every few seconds the teams' counters are
    /// read in case a notification was missed anyway. While it listens, tokens are
    /// authenticated from memory (see `auth_cache`); without it, always from the database.
    pub fn follow(&self, notifier: &Arc<LocalNotifier>) {
        let inner = &self.inner;
        tokio::spawn(follow::run(inner.data.target.clone(), Arc::downgrade(notifier), inner.auth.clone()));
    }

    /// Rate limits kept in the database, shared by every process.
    pub fn rate_limiter(&self, per_second: f64, burst: f64) -> PostgresRateLimiter {
        PostgresRateLimiter::new(self.clone(), per_second, burst)
    }

    /// A scan: on a connection of its own.
    async fn read<T>(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> T,
    ) -> Result<Vec<T>, DbError> {
        self.read_on(On::Own, context, sql, params, f).await
    }

    /// One statement's rows, through its cached prepared statement.
    async fn read_on<T>(
        &self,
        on: On,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> T,
    ) -> Result<Vec<T>, DbError> {
        let db = &self.inner.data;
        let c = match on {
            On::Own => Arc::new(db.get(context).await?),
            On::Lane => db.shared(context).await?,
        };
        let stmt = c.prepare_cached(sql).await.map_err(db.err(context))?;
        let rows = c.query(&stmt, params).await.map_err(db.err(context))?;
        Ok(rows.iter().map(f).collect())
    }

    /// A row by its key, on a shared lane.
    async fn read_one<T>(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> T,
    ) -> Result<Option<T>, DbError> {
        Ok(self.read_on(On::Lane, context, sql, params, f).await?.into_iter().next())
    }

    async fn write(&self, context: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let db = &self.inner.data;
        let c = db.get(context).await?;
        let stmt = c.prepare_cached(sql).await.map_err(db.err(context))?;
        c.execute(&stmt, params).await.map_err(db.err(context))
    }

    /// Commits one batch in a transaction of its own, running it again when it deadlocks with
    /// another.
    async fn commit_alone(&self, batch: &Batch) -> Result<Committed, DbError> {
        let mut attempt = 0;
        loop {
            let outcome = async {
                let mut c = self.inner.data.get(COMMIT_CONTEXT).await.map_err(Fail::Db)?;
                let tx = c.transaction().await?;
                let signals = apply(&tx, batch).await?;
                let events: Vec<&super::EventDraft> = batch.events.iter().collect();
                let seqs = write_events(&tx, &events, &signals).await?;
                tx.commit().await?;
                Ok(Committed { events: events.iter().zip(seqs).map(|(e, seq)| (e.team_id.clone(), seq)).collect() })
            }
            .await;
            match outcome.map_err(|e| self.refusal(e)) {
                Err(Refusal::Retry(e)) if attempt < RETRIES => {
                    attempt += 1;
                    tracing::debug!("a change ran into another ({}); running it again", describe(&e));
                    tokio::time::sleep(std::time::Duration::from_millis(2 + 5 * attempt as u64)).await;
                }
                Err(Refusal::Retry(e)) => return Err(failure(self.place(), COMMIT_CONTEXT, e)),
                Err(Refusal::Db(e)) => return Err(e),
                Ok(committed) => return Ok(committed),
            }
        }
    }

    /// What a failed batch is told: refusals about the data ([`DbError::Exists`] from a unique
    /// key, [`DbError::NotFound`] from a foreign key), or a deadlock worth running again.
    fn refusal(&self, fail: Fail) -> Refusal {
        match fail {
            Fail::Db(e) => Refusal::Db(e),
            Fail::Pg(e) => match e.code() {
                Some(&SqlState::UNIQUE_VIOLATION) => Refusal::Db(DbError::Exists),
                Some(&SqlState::FOREIGN_KEY_VIOLATION) => Refusal::Db(DbError::NotFound),
                Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE) => Refusal::Retry(e),
                _ => Refusal::Db(failure(self.place(), COMMIT_CONTEXT, e)),
            },
        }
    }

    /// Commits waiting batches in one transaction (group commit): each in a savepoint of its
    /// own, so a refused one is rolled back alone, and all of them sharing one commit, which is
    /// one flush of the WAL. Outcomes are told once the group is committed (a request refused
    /// because another took its idempotency key reads that key's record next, and must find it);
    /// a batch that deadlocked is run again alone afterwards.
    async fn commit_group(&self, jobs: Vec<Pending>) {
        if jobs.len() == 1 {
            let (batch, done) = jobs.into_iter().next().expect("one job");
            let _ = done.send(self.commit_alone(&batch).await);
            return;
        }
        let mut applied: Vec<(Batch, Done)> = Vec::new();
        let mut refused: Vec<(DbError, Done)> = Vec::new();
        let mut again: Vec<(Batch, Done)> = Vec::new();
        let mut jobs = jobs.into_iter();
        let outcome: Result<Vec<i64>, DbError> = async {
            let db = &self.inner.data;
            let mut c = db.get(COMMIT_CONTEXT).await?;
            let mut tx = c.transaction().await.map_err(db.err(COMMIT_CONTEXT))?;
            let mut signals = Vec::new();
            for (batch, done) in jobs.by_ref() {
                // When the database goes away half way, the batch at hand is told so with the
                // rest (below): a request is never left without an answer.
                let sp = match tx.savepoint("batch").await {
                    Ok(sp) => sp,
                    Err(e) => {
                        again.push((batch, done));
                        return Err(db.err(COMMIT_CONTEXT)(e));
                    }
                };
                match apply(&sp, &batch).await {
                    Ok(s) => {
                        if let Err(e) = sp.commit().await {
                            again.push((batch, done));
                            return Err(db.err(COMMIT_CONTEXT)(e));
                        }
                        signals.extend(s);
                        applied.push((batch, done));
                    }
                    Err(fail) => {
                        if let Err(e) = sp.rollback().await {
                            again.push((batch, done));
                            return Err(db.err(COMMIT_CONTEXT)(e));
                        }
                        match self.refusal(fail) {
                            Refusal::Db(e @ DbError::Unavailable { .. }) => {
                                refused.push((DbError::Changed, done));
                                return Err(e);
                            }
                            Refusal::Db(e) => refused.push((e, done)),
                            Refusal::Retry(_) => again.push((batch, done)),
                        }
                    }
                }
            }
            let events: Vec<&super::EventDraft> = applied.iter().flat_map(|(b, _)| &b.events).collect();
            let seqs = write_events(&tx, &events, &signals).await.map_err(db.err(COMMIT_CONTEXT))?;
            tx.commit().await.map_err(db.err(COMMIT_CONTEXT))?;
            Ok(seqs)
        }
        .await;
        match outcome {
            Ok(seqs) => {
                let mut seqs = seqs.into_iter();
                for (batch, done) in applied {
                    let events = batch.events.iter().map(|e| (e.team_id.clone(), seqs.next().unwrap_or(0))).collect();
                    let _ = done.send(Ok(Committed { events }));
                }
                for (e, done) in refused {
                    let _ = done.send(Err(e));
                }
            }
            Err(e) => {
                // Nothing of the group was committed (or, when the commit itself was lost, it
                // is unknown): every batch is told the database failed; the refused ones too,
                // since what refused them was rolled back with the rest.
                let told = |done: Done| {
                    let _ = done.send(Err(copy_failure(&e)));
                };
                applied.into_iter().map(|(_, d)| d).chain(refused.into_iter().map(|(_, d)| d)).for_each(told);
                again.into_iter().map(|(_, d)| d).chain(jobs.map(|(_, d)| d)).for_each(told);
                return;
            }
        }
        for (batch, done) in again {
            let _ = done.send(self.commit_alone(&batch).await);
        }
    }

    /// Queues `batch` for the next group commit, or commits the group when its turn comes.
    async fn commit_queued(&self, batch: Batch) -> Result<Committed, DbError> {
        let storage = self.clone();
        let run = |jobs: Vec<Pending>| async move {
            // Each request drops its own batch's cached tokens once told, but one that went
            // away is told nothing: dropped here too.
            let teams = auth_changes(jobs.iter().map(|(batch, _)| batch));
            storage.commit_group(jobs).await;
            storage.forget_auth(&teams);
        };
        self.inner.commits.join(batch, run).await.unwrap_or_else(|cause| {
            Err(DbError::Backend { path: self.place().into(), context: COMMIT_CONTEXT.into(), cause })
        })
    }

    /// The threads of these (team, codemark id) pairs that exist, each with its pair.
    async fn threads_by_key(&self, keys: Vec<(String, String)>) -> Result<Vec<((String, String), Thread)>, DbError> {
        let (teams, ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let rows = self
            .read_on(
                On::Lane,
                "could not read codemarks",
                &format!("{} WHERE (c.team_id, c.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))", *THREAD_BY_ID),
                &[&teams, &ids],
                thread_row,
            )
            .await?;
        Ok(rows.into_iter().map(|t| ((t.codemark.team_id.clone(), t.codemark.id.clone()), t)).collect())
    }

    fn forget_auth(&self, teams: &[String]) {
        for team in teams {
            self.inner.auth.forget_team(team);
        }
    }
}

const COMMIT_CONTEXT: &str = "could not save a change";

/// A batch waiting for its group, and where its outcome goes.
type Done = tokio::sync::oneshot::Sender<Result<Committed, DbError>>;
type Pending = (Batch, Done);

/// What a failed batch comes to.
enum Refusal {
    Db(DbError),
    /// A deadlock or a serialization failure: running it again will do.
    Retry(tokio_postgres::Error),
}

/// The same failure, told to each batch of a group.
fn copy_failure(e: &DbError) -> DbError {
    match e {
        DbError::Unavailable { place, context, cause } => {
            DbError::Unavailable { place: place.clone(), context: context.clone(), cause: cause.clone() }
        }
        other => DbError::Backend {
            path: std::path::PathBuf::new(),
            context: COMMIT_CONTEXT.into(),
            cause: other.to_string(),
        },
    }
}

/// Why a batch was not applied.
enum Fail {
    /// An answer about the data, or the pool's failure.
    Db(DbError),
    Pg(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

/// Times a batch that deadlocked (or lost a serialization race) is run again.
const RETRIES: usize = 5;

async fn exec(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(sql).await?;
    tx.execute(&stmt, params).await
}

async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(sql).await?;
    tx.query(&stmt, params).await
}

async fn exists(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<bool, tokio_postgres::Error> {
    Ok(!query(tx, sql, params).await?.is_empty())
}

fn must_change(changed: u64) -> Result<(), Fail> {
    if changed == 0 { Err(Fail::Db(DbError::NotFound)) } else { Ok(()) }
}

fn refuse(e: DbError) -> Fail {
    Fail::Db(e)
}

/// Applies a batch's changes inside `tx`: its idempotency record first (a second request racing
/// on the same key waits here for the first to commit, then finds the key taken), its writes and
/// its audit entries. Returns the notifications its writes call for; its events are written by
/// [`write_events`], last thing before the commit.
async fn apply(tx: &Transaction<'_>, batch: &Batch) -> Result<Vec<String>, Fail> {
    if let Some(i) = &batch.idempotency {
        let status = i32::from(i.status);
        let taken = exec(
            tx,
            "INSERT INTO idempotency (team_id, member_id, key, route, status, resource_id, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[&i.team_id, &i.member_id, &i.key, &i.route, &status, &i.resource_id, &i.created],
        )
        .await?
            == 0;
        if taken {
            return Err(refuse(DbError::IdempotencyReplay));
        }
    }
    let mut signals = Vec::new();
    for w in &batch.writes {
        apply_write(tx, w, &mut signals).await?;
    }
    if !batch.audit.is_empty() {
        append_audit(tx, batch.time, &batch.audit).await?;
    }
    Ok(signals)
}

/// Writes events with their sequence numbers, and the notifications: per team (in the teams'
/// order, so two transactions never wait for each other's counters), the counter row is taken
/// and held to the commit, the events numbered after it and a notification sent. Returns each
/// event's number, in the order given.
async fn write_events(
    tx: &Transaction<'_>,
    events: &[&super::EventDraft],
    signals: &[String],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    let mut by_team: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        by_team.entry(e.team_id.as_str()).or_default().push(i);
    }
    let mut seqs = vec![0; events.len()];
    for (team, indexes) in by_team {
        let n = indexes.len() as i64;
        let kinds: Vec<&str> = indexes.iter().map(|&i| events[i].subject.as_str()).collect();
        let ids: Vec<&str> = indexes.iter().map(|&i| events[i].id.as_str()).collect();
        let deleted: Vec<bool> = indexes.iter().map(|&i| events[i].deleted).collect();
        let rows = query(
            tx,
            "WITH counter AS (
                 INSERT INTO event_counters AS c (team_id, last_seq) VALUES ($1, $2)
                 ON CONFLICT (team_id) DO UPDATE SET last_seq = c.last_seq + excluded.last_seq
                 RETURNING last_seq
             ), written AS (
                 INSERT INTO events (team_id, seq, kind, subject_id, deleted)
                 SELECT $1, counter.last_seq - $2 + e.n, e.kind, e.id, e.deleted
                 FROM counter, unnest($3::text[], $4::text[], $5::boolean[]) WITH ORDINALITY AS e(kind, id, deleted, n)
             )
             SELECT last_seq, pg_notify('marginalia', 'e ' || $1 || ' ' || last_seq) FROM counter",
            &[&team, &n, &kinds, &ids, &deleted],
        )
        .await?;
        let last: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        for (k, &i) in indexes.iter().enumerate() {
            seqs[i] = last - n + 1 + k as i64;
        }
    }
    if !signals.is_empty() {
        exec(tx, "SELECT pg_notify('marginalia', s) FROM unnest($1::text[]) AS s", &[&signals]).await?;
    }
    Ok(seqs)
}

/// The teams whose tokens' answers the batches' writes can change (those writes also NOTIFY `p`
/// or `c`, for the other processes).
fn auth_changes<'a>(batches: impl Iterator<Item = &'a Batch>) -> Vec<String> {
    let team = |w: &'a Write| match w {
        Write::SetRole { team_id, .. }
        | Write::DeleteMember { team_id, .. }
        | Write::RevokeToken { team_id, .. }
        | Write::DeleteTeam { team_id } => Some(team_id.clone()),
        _ => None,
    };
    batches.flat_map(|b| b.writes.iter().filter_map(team)).collect()
}

/// Locks the team's row so that changes to its members' roles are made one after the other
/// (the last-admin rule reads them all).
async fn lock_team(tx: &Transaction<'_>, team_id: &str) -> Result<(), tokio_postgres::Error> {
    exec(tx, "SELECT 1 FROM teams WHERE id = $1 FOR NO KEY UPDATE", &[&team_id]).await.map(drop)
}

async fn admins_left(tx: &Transaction<'_>, team_id: &str, without: &str) -> Result<i64, tokio_postgres::Error> {
    let rows = query(
        tx,
        "SELECT count(*) FROM members WHERE team_id = $1 AND role = 'admin' AND id <> $2",
        &[&team_id, &without],
    )
    .await?;
    Ok(rows[0].get(0))
}

async fn member_exists(tx: &Transaction<'_>, team_id: &str, member_id: &str) -> Result<bool, tokio_postgres::Error> {
    exists(tx, "SELECT 1 FROM members WHERE team_id = $1 AND id = $2", &[&team_id, &member_id]).await
}

async fn apply_write(tx: &Transaction<'_>, w: &Write, signals: &mut Vec<String>) -> Result<(), Fail> {
    match w {
        Write::InsertTeam(t) => {
            exec(
                tx,
                "INSERT INTO teams (id, name_sealed, name_mac, created) VALUES ($1, $2, $3, $4)",
                &[&t.id, &t.name_sealed, &t.name_mac, &t.created],
            )
            .await?;
        }
        Write::InsertInvite(i) => {
            exec(
                tx,
                "INSERT INTO invites (hash, team_id, role, created, expires, used) VALUES ($1, $2, $3, $4, $5, NULL)",
                &[&i.hash, &i.team_id, &i.role.as_str(), &i.created, &i.expires],
            )
            .await?;
        }
        Write::RedeemInvite { hash, now } => {
            let changed = exec(
                tx,
                "UPDATE invites SET used = $2 WHERE hash = $1 AND used IS NULL AND expires > $2",
                &[hash, now],
            )
            .await?;
            if changed == 0 {
                return Err(refuse(DbError::InviteGone));
            }
        }
        Write::InsertMember(m) => {
            exec(
                tx,
                "INSERT INTO members (team_id, id, name_sealed, email_sealed, role, joined)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&m.team_id, &m.id, &m.name_sealed, &m.email_sealed, &m.role.as_str(), &m.joined],
            )
            .await?;
        }
        Write::SetRole { team_id, member_id, role } => {
            lock_team(tx, team_id).await?;
            if *role != Role::Admin && admins_left(tx, team_id, member_id).await? == 0 {
                if !member_exists(tx, team_id, member_id).await? {
                    return Err(refuse(DbError::NotFound));
                }
                return Err(refuse(DbError::LastAdmin));
            }
            must_change(
                exec(
                    tx,
                    "UPDATE members SET role = $3 WHERE team_id = $1 AND id = $2",
                    &[team_id, member_id, &role.as_str()],
                )
                .await?,
            )?;
            signals.push(format!("p {team_id}"));
        }
        Write::DeleteMember { team_id, member_id, now } => {
            lock_team(tx, team_id).await?;
            if !member_exists(tx, team_id, member_id).await? {
                return Err(refuse(DbError::NotFound));
            }
            if admins_left(tx, team_id, member_id).await? == 0 {
                return Err(refuse(DbError::LastAdmin));
            }
            exec(
                tx,
                "UPDATE tokens SET revoked = $3 WHERE team_id = $1 AND member_id = $2 AND revoked IS NULL",
                &[team_id, member_id, now],
            )
            .await?;
            exec(tx, "DELETE FROM idempotency WHERE team_id = $1 AND member_id = $2", &[team_id, member_id]).await?;
            exec(tx, "DELETE FROM members WHERE team_id = $1 AND id = $2", &[team_id, member_id]).await?;
            signals.push(format!("p {team_id}"));
        }
        Write::InsertToken(t) => {
            exec(
                tx,
                "INSERT INTO tokens (id, team_id, member_id, hash, label_sealed, created, last_used, revoked)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
                &[&t.id, &t.team_id, &t.member_id, &t.hash, &t.label_sealed, &t.created],
            )
            .await?;
        }
        Write::RevokeToken { team_id, token_id, now } => {
            must_change(
                exec(
                    tx,
                    "UPDATE tokens SET revoked = coalesce(revoked, $3) WHERE team_id = $1 AND id = $2",
                    &[team_id, token_id, now],
                )
                .await?,
            )?;
            signals.push(format!("p {team_id}"));
        }
        Write::InsertRepo(r) => {
            exec(
                tx,
                "INSERT INTO repos (team_id, id, key_sealed, roots_sealed, created) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (team_id, id) DO NOTHING",
                &[&r.team_id, &r.id, &r.key_sealed, &r.roots_sealed, &r.created],
            )
            .await?;
        }
        Write::InsertCodemark(c) => {
            // A taken id is the primary key's refusal (Exists), checked before the review as
            // SQLite does.
            exec(
                tx,
                "INSERT INTO codemarks (team_id, id, repo_id, kind, status, author_id, title_sealed, body_sealed,
                                        anchors_sealed, created, updated, review_id, review_sealed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &c.team_id,
                    &c.id,
                    &c.repo_id,
                    &c.kind,
                    &c.status,
                    &c.author_id,
                    &c.title_sealed,
                    &c.body_sealed,
                    &c.anchors_sealed,
                    &c.created,
                    &c.updated,
                    &c.review_id,
                    &c.review_sealed,
                ],
            )
            .await?;
            // The review is held (FOR KEY SHARE) until the commit: a deletion of it waits, then
            // finds this comment among the review's.
            if let Some(review) = &c.review_id
                && !exists(
                    tx,
                    "SELECT 1 FROM reviews WHERE team_id = $1 AND id = $2 FOR KEY SHARE",
                    &[&c.team_id, review],
                )
                .await?
            {
                return Err(refuse(DbError::NotFound));
            }
        }
        Write::UpdateCodemark { team_id, id, title_sealed, body_sealed, status, anchors_sealed, updated } => {
            let set_title = title_sealed.is_some();
            let title = title_sealed.clone().flatten();
            must_change(
                exec(
                    tx,
                    "UPDATE codemarks SET
                        title_sealed = CASE WHEN $3 THEN $4 ELSE title_sealed END,
                        body_sealed = coalesce($5, body_sealed),
                        status = coalesce($6, status),
                        anchors_sealed = coalesce($7, anchors_sealed),
                        updated = greatest(updated, $8)
                     WHERE team_id = $1 AND id = $2",
                    &[team_id, id, &set_title, &title, body_sealed, status, anchors_sealed, updated],
                )
                .await?,
            )?;
        }
        Write::DeleteCodemark { team_id, id } => {
            exec(tx, "DELETE FROM replies WHERE team_id = $1 AND codemark_id = $2", &[team_id, id]).await?;
            must_change(exec(tx, "DELETE FROM codemarks WHERE team_id = $1 AND id = $2", &[team_id, id]).await?)?;
        }
        Write::InsertReply(r) => {
            // A missing codemark is the foreign key's refusal (NotFound), a taken id the primary
            // key's (Exists).
            exec(
                tx,
                "INSERT INTO replies (team_id, id, codemark_id, author_id, body_sealed, created)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&r.team_id, &r.id, &r.codemark_id, &r.author_id, &r.body_sealed, &r.created],
            )
            .await?;
        }
        Write::DeleteReply { team_id, codemark_id, id } => {
            must_change(
                exec(
                    tx,
                    "DELETE FROM replies WHERE team_id = $1 AND codemark_id = $2 AND id = $3",
                    &[team_id, codemark_id, id],
                )
                .await?,
            )?;
        }
        Write::InsertReview { review: v, reviewers, revision } => {
            exec(
                tx,
                "INSERT INTO reviews (team_id, id, repo_id, author_id, title_sealed, description_sealed, closed,
                                      created, updated)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &v.team_id,
                    &v.id,
                    &v.repo_id,
                    &v.author_id,
                    &v.title_sealed,
                    &v.description_sealed,
                    &v.closed,
                    &v.created,
                    &v.updated,
                ],
            )
            .await?;
            set_reviewers(tx, &v.team_id, &v.id, reviewers).await?;
            insert_revision(tx, &v.team_id, &v.id, 1, revision).await?;
        }
        Write::AddRevision { team_id, review_id, revision } => {
            // The review's row is held until the commit: revisions of one review are numbered
            // one after the other.
            let closed = query(
                tx,
                "SELECT closed FROM reviews WHERE team_id = $1 AND id = $2 FOR UPDATE",
                &[team_id, review_id],
            )
            .await?;
            match closed.first().map(|r| r.get::<_, bool>(0)) {
                None => return Err(refuse(DbError::NotFound)),
                Some(true) => return Err(refuse(DbError::Closed)),
                Some(false) => {}
            }
            let latest: i32 = query(
                tx,
                "SELECT coalesce(max(number), 0) FROM revisions WHERE team_id = $1 AND review_id = $2",
                &[team_id, review_id],
            )
            .await?[0]
                .get(0);
            insert_revision(tx, team_id, review_id, latest + 1, revision).await?;
            exec(
                tx,
                "UPDATE reviewers SET verdict = 'pending' WHERE team_id = $1 AND review_id = $2",
                &[team_id, review_id],
            )
            .await?;
            touch_review(tx, team_id, review_id, revision.created).await?;
        }
        Write::SetVerdict { team_id, review_id, member_id, verdict, updated } => {
            if !exists(tx, "SELECT 1 FROM reviews WHERE team_id = $1 AND id = $2 FOR UPDATE", &[team_id, review_id])
                .await?
            {
                return Err(refuse(DbError::NotFound));
            }
            exec(
                tx,
                "INSERT INTO reviewers (team_id, review_id, member_id, position, verdict)
                 VALUES ($1, $2, $3,
                         (SELECT coalesce(max(position), -1) + 1 FROM reviewers WHERE team_id = $1 AND review_id = $2),
                         $4)
                 ON CONFLICT (team_id, review_id, member_id) DO UPDATE SET verdict = excluded.verdict",
                &[team_id, review_id, member_id, verdict],
            )
            .await?;
            touch_review(tx, team_id, review_id, *updated).await?;
        }
        Write::UpdateReview { team_id, id, title_sealed, description_sealed, closed, reviewers, updated } => {
            must_change(
                exec(
                    tx,
                    "UPDATE reviews SET
                        title_sealed = coalesce($3, title_sealed),
                        description_sealed = coalesce($4, description_sealed),
                        closed = coalesce($5, closed),
                        updated = greatest(updated, $6)
                     WHERE team_id = $1 AND id = $2",
                    &[team_id, id, title_sealed, description_sealed, closed, updated],
                )
                .await?,
            )?;
            if let Some(reviewers) = reviewers {
                set_reviewers(tx, team_id, id, reviewers).await?;
            }
        }
        Write::DeleteReview { team_id, id, comments } => {
            // Held until the commit; a comment being added holds it FOR KEY SHARE, so this waits
            // for it and then sees it.
            if !exists(tx, "SELECT 1 FROM reviews WHERE team_id = $1 AND id = $2 FOR UPDATE", &[team_id, id]).await? {
                return Err(refuse(DbError::NotFound));
            }
            let mut now = review_comment_ids(tx, team_id, id).await?;
            let mut expected = comments.clone();
            now.sort();
            expected.sort();
            if now != expected {
                return Err(refuse(DbError::Changed));
            }
            exec(tx, "DELETE FROM replies WHERE team_id = $1 AND codemark_id = ANY($2)", &[team_id, &now]).await?;
            exec(tx, "DELETE FROM codemarks WHERE team_id = $1 AND review_id = $2", &[team_id, id]).await?;
            exec(tx, "DELETE FROM reviewers WHERE team_id = $1 AND review_id = $2", &[team_id, id]).await?;
            exec(tx, "DELETE FROM revisions WHERE team_id = $1 AND review_id = $2", &[team_id, id]).await?;
            exec(tx, "DELETE FROM reviews WHERE team_id = $1 AND id = $2", &[team_id, id]).await?;
        }
        Write::SetTeamNameMac { team_id, name_mac } => {
            must_change(exec(tx, "UPDATE teams SET name_mac = $2 WHERE id = $1", &[team_id, name_mac]).await?)?;
        }
        Write::DeleteTeam { team_id } => {
            for table in [
                "events",
                "event_counters",
                "idempotency",
                "replies",
                "codemarks",
                "reviewers",
                "revisions",
                "reviews",
                "repos",
                "invites",
                "tokens",
                "members",
            ] {
                exec(tx, &format!("DELETE FROM {table} WHERE team_id = $1"), &[team_id]).await?;
            }
            must_change(exec(tx, "DELETE FROM teams WHERE id = $1", &[team_id]).await?)?;
            signals.push(format!("c {team_id}"));
        }
    }
    Ok(())
}

async fn review_comment_ids(
    tx: &Transaction<'_>,
    team_id: &str,
    review_id: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = query(
        tx,
        "SELECT id FROM codemarks WHERE team_id = $1 AND review_id = $2 ORDER BY id",
        &[&team_id, &review_id],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn touch_review(
    tx: &Transaction<'_>,
    team_id: &str,
    id: &str,
    updated: i64,
) -> Result<(), tokio_postgres::Error> {
    exec(
        tx,
        "UPDATE reviews SET updated = greatest(updated, $3) WHERE team_id = $1 AND id = $2",
        &[&team_id, &id, &updated],
    )
    .await
    .map(drop)
}

/// Makes `members` the review's reviewers, in this order: those who stay keep their verdicts,
/// new ones start pending, the others are dropped.
async fn set_reviewers(
    tx: &Transaction<'_>,
    team_id: &str,
    review_id: &str,
    members: &[String],
) -> Result<(), tokio_postgres::Error> {
    exec(
        tx,
        "DELETE FROM reviewers WHERE team_id = $1 AND review_id = $2 AND NOT (member_id = ANY($3))",
        &[&team_id, &review_id, &members],
    )
    .await?;
    let positions: Vec<i32> = (0..members.len() as i32).collect();
    exec(
        tx,
        "INSERT INTO reviewers (team_id, review_id, member_id, position, verdict)
         SELECT $1, $2, m.member, m.position, 'pending' FROM unnest($3::text[], $4::integer[]) AS m(member, position)
         ON CONFLICT (team_id, review_id, member_id) DO UPDATE SET position = excluded.position",
        &[&team_id, &review_id, &members, &positions],
    )
    .await
    .map(drop)
}

async fn insert_revision(
    tx: &Transaction<'_>,
    team_id: &str,
    review_id: &str,
    number: i32,
    r: &RevisionDraft,
) -> Result<(), tokio_postgres::Error> {
    exec(
        tx,
        "INSERT INTO revisions (team_id, review_id, number, id, created, summary_sealed, files_sealed)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&team_id, &review_id, &number, &r.id, &r.created, &r.summary_sealed, &r.files_sealed],
    )
    .await
    .map(drop)
}

/// Appends to the audit chain under a transaction-level advisory lock: the chain is one line
/// through every process's entries, so its end is read and extended by one transaction at a
/// time (entries are rare: sign-ins, tokens, deletions, exports).
async fn append_audit(tx: &Transaction<'_>, time: i64, drafts: &[audit::Draft]) -> Result<(), tokio_postgres::Error> {
    exec(tx, "SELECT pg_advisory_xact_lock($1, $2)", &[&schema::LOCK_SPACE, &schema::LOCK_AUDIT]).await?;
    let last = query(tx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[]).await?;
    let (mut seq, mut prev): (i64, Vec<u8>) =
        last.first().map_or((0, audit::GENESIS.to_vec()), |r| (r.get(0), r.get(1)));
    let (mut seqs, mut teams, mut actors, mut actions, mut targets, mut details, mut hashes) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for d in drafts {
        seq += 1;
        let action = d.action.as_str();
        let hash =
            audit::chain_hash(&prev, seq, time, &d.team_id, &d.actor_id, action, d.target_id.as_deref(), &d.detail);
        prev = hash.to_vec();
        seqs.push(seq);
        teams.push(d.team_id.as_str());
        actors.push(d.actor_id.as_str());
        actions.push(action);
        targets.push(d.target_id.as_deref());
        details.push(d.detail.as_str());
        hashes.push(hash.to_vec());
    }
    exec(
        tx,
        "INSERT INTO audit (seq, time, team_id, actor_id, action, target_id, detail, hash)
         SELECT e.seq, $1, e.team_id, e.actor_id, e.action, e.target_id, e.detail, e.hash
         FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[])
              AS e(seq, team_id, actor_id, action, target_id, detail, hash)",
        &[&time, &seqs, &teams, &actors, &actions, &targets, &details, &hashes],
    )
    .await
    .map(drop)
}

fn role(text: &str) -> Role {
    // The column's CHECK allows nothing else.
    text.parse().unwrap_or(Role::Member)
}

const TEAM_COLUMNS: &str = "id, name_sealed, name_mac, created";
fn team_row(r: &Row) -> TeamRow {
    TeamRow { id: r.get(0), name_sealed: r.get(1), name_mac: r.get(2), created: r.get(3) }
}

const MEMBER_COLUMNS: &str = "team_id, id, name_sealed, email_sealed, role, joined";
fn member_row(r: &Row) -> MemberRow {
    MemberRow {
        team_id: r.get(0),
        id: r.get(1),
        name_sealed: r.get(2),
        email_sealed: r.get(3),
        role: role(r.get(4)),
        joined: r.get(5),
    }
}

const TOKEN_COLUMNS: &str = "t.id, t.team_id, t.member_id, t.hash, t.label_sealed, t.created, t.last_used, t.revoked";
fn token_row(r: &Row) -> TokenRow {
    TokenRow {
        id: r.get(0),
        team_id: r.get(1),
        member_id: r.get(2),
        hash: r.get(3),
        label_sealed: r.get(4),
        created: r.get(5),
        last_used: r.get(6),
        revoked: r.get(7),
    }
}

const REPO_COLUMNS: &str = "team_id, id, key_sealed, roots_sealed, created";
fn repo_row(r: &Row) -> RepoRow {
    RepoRow { team_id: r.get(0), id: r.get(1), key_sealed: r.get(2), roots_sealed: r.get(3), created: r.get(4) }
}

/// A codemark with its repository key, its author's name and its replies (oldest first, each
/// with its author's name), in one row: [`THREAD_BY_ID`] and [`THREAD_SCAN`] differ in how they
/// find the key and the names, not in what they return. The replies come as one array of
/// records: one ordered aggregate is one sort, where an array per column sorted the same rows
/// once per column (PostgreSQL before 16 does not share the sort between aggregates).
const THREAD_COLUMNS: &str = "c.team_id, c.id, c.repo_id, c.kind, c.status, c.author_id, c.title_sealed,
        c.body_sealed, c.anchors_sealed, c.created, c.updated";
/// The review it belongs to, and the replies.
const THREAD_TAIL: &str = "c.review_id, c.review_sealed,
        (SELECT array_agg((p.id, p.author_id, p.body_sealed, p.created,
                           (SELECT pm.name_sealed FROM members pm WHERE pm.team_id = p.team_id AND pm.id = p.author_id))
                          ORDER BY p.created, p.id)
         FROM replies p WHERE p.team_id = c.team_id AND p.codemark_id = c.id)";

/// Codemarks by id (followed by `WHERE`): the key and the author's name are looked up by their
/// primary keys for each codemark. Joins would do the same work, but on a small team (a page of
/// members) the planner hashes every member to find one, which made a codemark read cost half
/// again as much.
static THREAD_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {THREAD_COLUMNS},
            (SELECT r.key_sealed FROM repos r WHERE r.team_id = c.team_id AND r.id = c.repo_id),
            (SELECT m.name_sealed FROM members m WHERE m.team_id = c.team_id AND m.id = c.author_id),
            {THREAD_TAIL}
         FROM codemarks c"
    )
});

/// Many codemarks (followed by `WHERE`): joined with the repositories and members, which the
/// planner may hash once for all of them.
static THREAD_SCAN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {THREAD_COLUMNS}, r.key_sealed, m.name_sealed, {THREAD_TAIL}
         FROM codemarks c
         JOIN repos r ON r.team_id = c.team_id AND r.id = c.repo_id
         LEFT JOIN members m ON m.team_id = c.team_id AND m.id = c.author_id"
    )
});

fn thread_row(r: &Row) -> Thread {
    let team_id: String = r.get(0);
    let id: String = r.get(1);
    let replies = r
        .get::<_, Option<Records<ReplyRecord>>>(15)
        .map_or_else(Vec::new, |r| r.0)
        .into_iter()
        .map(|p| {
            let row = ReplyRow {
                team_id: team_id.clone(),
                id: p.id,
                codemark_id: id.clone(),
                author_id: p.author_id,
                body_sealed: p.body_sealed,
                created: p.created,
            };
            (row, p.name_sealed)
        })
        .collect();
    Thread {
        codemark: CodemarkRow {
            team_id: team_id.clone(),
            id: id.clone(),
            repo_id: r.get(2),
            kind: r.get(3),
            status: r.get(4),
            author_id: r.get(5),
            title_sealed: r.get(6),
            body_sealed: r.get(7),
            anchors_sealed: r.get(8),
            created: r.get(9),
            updated: r.get(10),
            review_id: r.get(13),
            review_sealed: r.get(14),
        },
        repo_key_sealed: r.get(11),
        author_name_sealed: r.get(12),
        replies,
    }
}

/// A reply as a thread read aggregates it: the record `(id, author_id, body_sealed, created,
/// author's name_sealed)`.
struct ReplyRecord {
    id: String,
    author_id: String,
    body_sealed: Vec<u8>,
    created: i64,
    name_sealed: Option<Vec<u8>>,
}

type SqlResult<T> = Result<T, Box<dyn std::error::Error + Sync + Send>>;

impl<'a> FromSql<'a> for ReplyRecord {
    fn from_sql(_: &Type, raw: &'a [u8]) -> SqlResult<ReplyRecord> {
        let mut fields = Fields { raw };
        fields.int()?;
        Ok(ReplyRecord {
            id: fields.field()?,
            author_id: fields.field()?,
            body_sealed: fields.field()?,
            created: fields.field()?,
            name_sealed: fields.field()?,
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::RECORD
    }
}

/// An array of records (`record[]`, which tokio-postgres does not read as an array: it is a
/// pseudo-type), one dimension, no NULLs.
struct Records<T>(Vec<T>);

impl<'a, T: FromSql<'a>> FromSql<'a> for Records<T> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> SqlResult<Records<T>> {
        let mut array = Fields { raw };
        let dimensions = array.int()?;
        array.int()?; // whether it holds NULLs
        array.int()?; // the type of its elements
        if dimensions == 0 {
            return Ok(Records(Vec::new()));
        }
        if dimensions != 1 {
            return Err(format!("an array of records with {dimensions} dimensions").into());
        }
        let len = array.int()?;
        array.int()?; // its lower bound
        (0..len).map(|_| array.value(&Type::RECORD)).collect::<SqlResult<_>>().map(Records)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::RECORD_ARRAY
    }
}

/// Reads PostgreSQL's binary format of records (a count, then each field's type, length (-1:
/// NULL) and value) and of arrays.
struct Fields<'a> {
    raw: &'a [u8],
}

impl<'a> Fields<'a> {
    fn int(&mut self) -> SqlResult<i32> {
        let (head, rest) = self.raw.split_first_chunk::<4>().ok_or("a record ends early")?;
        self.raw = rest;
        Ok(i32::from_be_bytes(*head))
    }

    /// A record's next field, of the type it says.
    fn field<T: FromSql<'a>>(&mut self) -> SqlResult<T> {
        let oid = self.int()? as u32;
        let ty = Type::from_oid(oid).ok_or_else(|| format!("a record field of unknown type {oid}"))?;
        if !T::accepts(&ty) {
            return Err(format!("a record field of type {ty} where {} was expected", std::any::type_name::<T>()).into());
        }
        self.value(&ty)
    }

    /// A length (-1: NULL) and a value of type `ty`.
    fn value<T: FromSql<'a>>(&mut self, ty: &Type) -> SqlResult<T> {
        let len = self.int()?;
        if len < 0 {
            return T::from_sql_null(ty);
        }
        let (value, rest) = self.raw.split_at_checked(len as usize).ok_or("a record ends early")?;
        self.raw = rest;
        T::from_sql(ty, value)
    }
}

const REPLY_SELECT: &str = "SELECT p.team_id, p.id, p.codemark_id, p.author_id, p.body_sealed, p.created, m.name_sealed
    FROM replies p LEFT JOIN members m ON m.team_id = p.team_id AND m.id = p.author_id";
fn reply_row(r: &Row) -> (ReplyRow, Option<Vec<u8>>) {
    (
        ReplyRow {
            team_id: r.get(0),
            id: r.get(1),
            codemark_id: r.get(2),
            author_id: r.get(3),
            body_sealed: r.get(4),
            created: r.get(5),
        },
        r.get(6),
    )
}

/// A review with its repository key, its author's name, its reviewers (in the order listed)
/// and its revisions without their patches, in one row.
const REVIEW_SELECT: &str = "SELECT v.team_id, v.id, v.repo_id, v.author_id, v.title_sealed, v.description_sealed,
        v.closed, v.created, v.updated, r.key_sealed, m.name_sealed,
        w.members, w.verdicts, w.names, s.ids, s.numbers, s.summaries, s.times
    FROM reviews v
    JOIN repos r ON r.team_id = v.team_id AND r.id = v.repo_id
    LEFT JOIN members m ON m.team_id = v.team_id AND m.id = v.author_id
    LEFT JOIN LATERAL (
        SELECT array_agg(w.member_id ORDER BY w.position, w.member_id) AS members,
               array_agg(w.verdict ORDER BY w.position, w.member_id) AS verdicts,
               array_agg(wm.name_sealed ORDER BY w.position, w.member_id) AS names
        FROM reviewers w LEFT JOIN members wm ON wm.team_id = w.team_id AND wm.id = w.member_id
        WHERE w.team_id = v.team_id AND w.review_id = v.id
    ) w ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(x.id ORDER BY x.number) AS ids, array_agg(x.number ORDER BY x.number) AS numbers,
               array_agg(x.summary_sealed ORDER BY x.number) AS summaries,
               array_agg(x.created ORDER BY x.number) AS times
        FROM revisions x WHERE x.team_id = v.team_id AND x.review_id = v.id
    ) s ON true";

fn review_row(r: &Row) -> ReviewRecord {
    let team_id: String = r.get(0);
    let id: String = r.get(1);
    let members: Vec<String> = r.get::<_, Option<Vec<String>>>(11).unwrap_or_default();
    let verdicts: Vec<String> = r.get::<_, Option<Vec<String>>>(12).unwrap_or_default();
    let names: Vec<Option<Vec<u8>>> = r.get::<_, Option<Vec<Option<Vec<u8>>>>>(13).unwrap_or_default();
    let reviewers = members
        .into_iter()
        .zip(verdicts)
        .zip(names)
        .map(|((member_id, verdict), name_sealed)| ReviewerRow { member_id, verdict, name_sealed })
        .collect();
    let ids: Vec<String> = r.get::<_, Option<Vec<String>>>(14).unwrap_or_default();
    let numbers: Vec<i32> = r.get::<_, Option<Vec<i32>>>(15).unwrap_or_default();
    let summaries: Vec<Vec<u8>> = r.get::<_, Option<Vec<Vec<u8>>>>(16).unwrap_or_default();
    let times: Vec<i64> = r.get::<_, Option<Vec<i64>>>(17).unwrap_or_default();
    let revisions = ids
        .into_iter()
        .zip(numbers)
        .zip(summaries)
        .zip(times)
        .map(|(((rev, number), summary_sealed), created)| RevisionRow {
            team_id: team_id.clone(),
            review_id: id.clone(),
            id: rev,
            number: number.max(0) as u32,
            summary_sealed,
            created,
        })
        .collect();
    ReviewRecord {
        review: ReviewRow {
            team_id: team_id.clone(),
            id: id.clone(),
            repo_id: r.get(2),
            author_id: r.get(3),
            title_sealed: r.get(4),
            description_sealed: r.get(5),
            closed: r.get(6),
            created: r.get(7),
            updated: r.get(8),
        },
        repo_key_sealed: r.get(9),
        author_name_sealed: r.get(10),
        reviewers,
        revisions,
    }
}

const REVISION_COLUMNS: &str = "team_id, review_id, id, number, summary_sealed, created";
fn revision_row(r: &Row) -> RevisionRow {
    RevisionRow {
        team_id: r.get(0),
        review_id: r.get(1),
        id: r.get(2),
        number: r.get::<_, i32>(3).max(0) as u32,
        summary_sealed: r.get(4),
        created: r.get(5),
    }
}

const AUDIT_COLUMNS: &str = "seq, time, team_id, actor_id, action, target_id, detail, hash";
fn audit_row(r: &Row) -> audit::Entry {
    audit::Entry {
        seq: r.get(0),
        time: r.get(1),
        team_id: r.get(2),
        actor_id: r.get(3),
        action: r.get(4),
        target_id: r.get(5),
        detail: r.get(6),
        hash: r.get(7),
    }
}

/// Puts rows read by `ids` in the order the ids were given, as SQLite's reads return them.
fn in_order<T>(ids: &[String], mut rows: Vec<T>, id_of: impl Fn(&T) -> &str) -> Vec<T> {
    let mut out = Vec::with_capacity(rows.len());
    for id in ids {
        if let Some(i) = rows.iter().position(|r| id_of(r) == id) {
            out.push(rows.swap_remove(i));
        }
    }
    out
}

impl Storage for PostgresStorage {
    fn commit(&self, batch: Batch) -> DbFuture<'_, Committed> {
        Box::pin(async move {
            // Dropped here whatever the outcome (a lost connection leaves it unknown), before
            // the request is answered; other processes drop theirs on the batch's NOTIFY.
            let teams = auth_changes(std::iter::once(&batch));
            let outcome = self.commit_queued(batch).await;
            self.forget_auth(&teams);
            outcome
        })
    }

    fn team(&self, id: &str) -> DbFuture<'_, Option<TeamRow>> {
        let id = id.to_owned();
        Box::pin(async move {
            self.read_one(
                "could not read a team",
                &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1"),
                &[&id],
                team_row,
            )
            .await
        })
    }

    fn team_by_name_mac(&self, mac: &[u8]) -> DbFuture<'_, Option<TeamRow>> {
        let mac = mac.to_vec();
        Box::pin(async move {
            self.read_one(
                "could not look a team up",
                &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE name_mac = $1"),
                &[&mac],
                team_row,
            )
            .await
        })
    }

    fn team_key(&self, team_id: &str) -> DbFuture<'_, Option<Vec<u8>>> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            let db = self.keys();
            let context = "could not read a team key";
            let c = db.shared(context).await?;
            let stmt = c
                .prepare_cached("SELECT wrapped FROM marginalia_team_keys WHERE team_id = $1")
                .await
                .map_err(db.err(context))?;
            let row = c.query_opt(&stmt, &[&team_id]).await.map_err(db.err(context))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn put_team_key(&self, team_id: &str, wrapped: Vec<u8>, now: i64) -> DbFuture<'_, ()> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            let db = self.keys();
            let context = "could not save a team key";
            let c = db.get(context).await?;
            c.execute(
                "INSERT INTO marginalia_team_keys (team_id, wrapped, created) VALUES ($1, $2, $3)",
                &[&team_id, &wrapped, &now],
            )
            .await
            .map_err(db.err(context))
            .map(drop)
        })
    }

    fn delete_team_key(&self, team_id: &str) -> DbFuture<'_, ()> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            let db = self.keys();
            let context = "could not destroy a team key";
            let c = db.get(context).await?;
            c.execute("DELETE FROM marginalia_team_keys WHERE team_id = $1", &[&team_id])
                .await
                .map_err(db.err(context))?;
            // The deleted row stays in the table's file until it is rewritten: rewrite it now
            // (the table is small: one row per team). Copies in WAL and in backups of this
            // database are the operator's to expire (see the README).
            if let Err(e) = c.batch_execute("VACUUM FULL marginalia_team_keys").await {
                tracing::warn!("a team key was deleted, but its table could not be rewritten yet: {}", describe(&e));
            }
            Ok(())
        })
    }

    fn sweep_orphan_keys(&self, before: i64) -> DbFuture<'_, usize> {
        Box::pin(async move {
            let keys = self.keys();
            let context = "could not sweep team keys";
            let k = keys.get(context).await?;
            let candidates: Vec<String> = k
                .query("SELECT team_id FROM marginalia_team_keys WHERE created < $1", &[&before])
                .await
                .map_err(keys.err(context))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if candidates.is_empty() {
                return Ok(0);
            }
            let present: Vec<String> =
                self.read(context, "SELECT id FROM teams WHERE id = ANY($1)", &[&candidates], |r| r.get(0)).await?;
            let orphans: Vec<&String> = candidates.iter().filter(|c| !present.contains(c)).collect();
            if orphans.is_empty() {
                return Ok(0);
            }
            let swept = k
                .execute(
                    "DELETE FROM marginalia_team_keys WHERE team_id = ANY($1) AND created < $2",
                    &[&orphans, &before],
                )
                .await
                .map_err(keys.err(context))?;
            Ok(swept as usize)
        })
    }

    fn invite(&self, hash: &[u8]) -> DbFuture<'_, Option<InviteRow>> {
        let hash = hash.to_vec();
        Box::pin(async move {
            self.read_one(
                "could not read an invite",
                "SELECT hash, team_id, role, created, expires, used FROM invites WHERE hash = $1",
                &[&hash],
                |r| InviteRow {
                    hash: r.get(0),
                    team_id: r.get(1),
                    role: role(r.get(2)),
                    created: r.get(3),
                    expires: r.get(4),
                    used: r.get(5),
                },
            )
            .await
        })
    }

    fn auth(&self, token_hash: &[u8]) -> DbFuture<'_, Option<AuthRow>> {
        let hash = token_hash.to_vec();
        Box::pin(async move {
            let ticket = match self.inner.auth.get(&hash) {
                Ok(known) => return Ok(Some(known)),
                Err(ticket) => ticket,
            };
            let row = self
                .read_one(
                    "could not look a token up",
                    &format!(
                        "SELECT {TOKEN_COLUMNS}, m.role, m.name_sealed FROM tokens t
                         LEFT JOIN members m ON m.team_id = t.team_id AND m.id = t.member_id WHERE t.hash = $1"
                    ),
                    &[&hash],
                    |r| AuthRow {
                        token: token_row(r),
                        role: r.get::<_, Option<&str>>(8).map(role),
                        name_sealed: r.get(9),
                    },
                )
                .await?;
            if let Some(row) = &row {
                self.inner.auth.keep(ticket, &hash, row);
            }
            Ok(row)
        })
    }

    fn touch_token(&self, token_id: &str, now: i64) -> DbFuture<'_, ()> {
        let token_id = token_id.to_owned();
        Box::pin(async move {
            // Recorded in the cached answer too, even when the write fails: the next requests
            // need not try again at once.
            self.inner.auth.touched(&token_id, now);
            self.write(
                "could not record a token's use",
                "UPDATE tokens SET last_used = $2 WHERE id = $1",
                &[&token_id, &now],
            )
            .await
            .map(drop)
        })
    }

    fn tokens(&self, team_id: &str, member_id: Option<&str>) -> DbFuture<'_, Vec<TokenRow>> {
        let (team_id, member_id) = (team_id.to_owned(), member_id.map(str::to_owned));
        Box::pin(async move {
            self.read(
                "could not list tokens",
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.team_id = $1 AND ($2::text IS NULL OR t.member_id = $2)
                     ORDER BY t.created, t.id"
                ),
                &[&team_id, &member_id],
                token_row,
            )
            .await
        })
    }

    fn token(&self, team_id: &str, token_id: &str) -> DbFuture<'_, Option<TokenRow>> {
        let (team_id, token_id) = (team_id.to_owned(), token_id.to_owned());
        Box::pin(async move {
            self.read_one(
                "could not read a token",
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.team_id = $1 AND t.id = $2"),
                &[&team_id, &token_id],
                token_row,
            )
            .await
        })
    }

    fn members(&self, team_id: &str) -> DbFuture<'_, Vec<MemberRow>> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            self.read(
                "could not list members",
                &format!("SELECT {MEMBER_COLUMNS} FROM members WHERE team_id = $1 ORDER BY joined, id"),
                &[&team_id],
                member_row,
            )
            .await
        })
    }

    fn member(&self, team_id: &str, member_id: &str) -> DbFuture<'_, Option<MemberRow>> {
        let (team_id, member_id) = (team_id.to_owned(), member_id.to_owned());
        Box::pin(async move {
            self.read_one(
                "could not read a member",
                &format!("SELECT {MEMBER_COLUMNS} FROM members WHERE team_id = $1 AND id = $2"),
                &[&team_id, &member_id],
                member_row,
            )
            .await
        })
    }

    fn repos(&self, team_id: &str) -> DbFuture<'_, Vec<RepoRow>> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            self.read(
                "could not list repositories",
                &format!("SELECT {REPO_COLUMNS} FROM repos WHERE team_id = $1 ORDER BY created, id"),
                &[&team_id],
                repo_row,
            )
            .await
        })
    }

    fn repo(&self, team_id: &str, repo_id: &str) -> DbFuture<'_, Option<RepoRow>> {
        let (team_id, repo_id) = (team_id.to_owned(), repo_id.to_owned());
        Box::pin(async move {
            self.read_one(
                "could not read a repository",
                &format!("SELECT {REPO_COLUMNS} FROM repos WHERE team_id = $1 AND id = $2"),
                &[&team_id, &repo_id],
                repo_row,
            )
            .await
        })
    }

    fn threads(&self, team_id: &str, filter: ThreadFilter) -> DbFuture<'_, Vec<Thread>> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            let context = "could not read codemarks";
            let mut threads = match &filter.ids {
                // One codemark by id (what a client reads most): gathered with the others
                // being read at the same moment into one statement.
                Some(ids) if ids.len() == 1 => {
                    let storage = self.clone();
                    let key = (team_id.clone(), ids[0].clone());
                    let read = move |keys| async move { storage.threads_by_key(keys).await };
                    self.inner.threads_by_id.get(key, read).await?.into_iter().collect()
                }
                Some(ids) => {
                    let rows = self
                        .read_on(
                            On::Lane,
                            context,
                            &format!("{} WHERE c.team_id = $1 AND c.id = ANY($2)", *THREAD_BY_ID),
                            &[&team_id, ids],
                            thread_row,
                        )
                        .await?;
                    in_order(ids, rows, |t| &t.codemark.id)
                }
                None => {
                    self.read(
                        context,
                        &format!(
                            "{} WHERE c.team_id = $1 AND ($2::text IS NULL OR c.repo_id = $2)
                               AND ($3::text IS NULL OR c.author_id = $3) ORDER BY c.created, c.id",
                            *THREAD_SCAN
                        ),
                        &[&team_id, &filter.repo_id, &filter.author_id],
                        thread_row,
                    )
                    .await?
                }
            };
            threads.retain(|t| {
                filter.repo_id.as_ref().is_none_or(|r| *r == t.codemark.repo_id)
                    && filter.author_id.as_ref().is_none_or(|a| *a == t.codemark.author_id)
            });
            Ok(threads)
        })
    }

    fn replies_by(&self, team_id: &str, author_id: &str) -> DbFuture<'_, Vec<(ReplyRow, Option<Vec<u8>>)>> {
        let (team_id, author_id) = (team_id.to_owned(), author_id.to_owned());
        Box::pin(async move {
            self.read(
                "could not read replies",
                &format!("{REPLY_SELECT} WHERE p.team_id = $1 AND p.author_id = $2 ORDER BY p.created, p.id"),
                &[&team_id, &author_id],
                reply_row,
            )
            .await
        })
    }

    fn reviews(&self, team_id: &str, filter: ReviewFilter) -> DbFuture<'_, Vec<ReviewRecord>> {
        let team_id = team_id.to_owned();
        Box::pin(async move {
            let context = "could not read reviews";
            let mut reviews = match &filter.ids {
                Some(ids) => {
                    let rows = self
                        .read(
                            context,
                            &format!("{REVIEW_SELECT} WHERE v.team_id = $1 AND v.id = ANY($2)"),
                            &[&team_id, ids],
                            review_row,
                        )
                        .await?;
                    in_order(ids, rows, |v| &v.review.id)
                }
                None => {
                    self.read(
                        context,
                        &format!(
                            "{REVIEW_SELECT} WHERE v.team_id = $1 AND ($2::text IS NULL OR v.author_id = $2)
                               AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM reviewers x
                                    WHERE x.team_id = v.team_id AND x.review_id = v.id AND x.member_id = $3))
                               AND (NOT $4 OR NOT v.closed)
                             ORDER BY v.created DESC, v.id DESC"
                        ),
                        &[&team_id, &filter.author_id, &filter.reviewer_id, &filter.open_only],
                        review_row,
                    )
                    .await?
                }
            };
            reviews.retain(|v| {
                filter.author_id.as_ref().is_none_or(|a| *a == v.review.author_id)
                    && filter.reviewer_id.as_ref().is_none_or(|m| v.reviewers.iter().any(|w| w.member_id == *m))
                    && (!filter.open_only || !v.review.closed)
            });
            Ok(reviews)
        })
    }

    fn revision(&self, team_id: &str, review_id: &str, number: u32) -> DbFuture<'_, Option<(RevisionRow, Vec<u8>)>> {
        let (team_id, review_id) = (team_id.to_owned(), review_id.to_owned());
        let number = i32::try_from(number).unwrap_or(i32::MAX);
        Box::pin(async move {
            // Not on a shared lane: a revision's files can be large.
            let rows = self
                .read(
                    "could not read a revision",
                    &format!(
                        "SELECT {REVISION_COLUMNS}, files_sealed FROM revisions
                         WHERE team_id = $1 AND review_id = $2 AND number = $3"
                    ),
                    &[&team_id, &review_id, &number],
                    |r| (revision_row(r), r.get(6)),
                )
                .await?;
            Ok(rows.into_iter().next())
        })
    }

    fn review_comments(&self, team_id: &str, review_id: &str) -> DbFuture<'_, Vec<String>> {
        let (team_id, review_id) = (team_id.to_owned(), review_id.to_owned());
        Box::pin(async move {
            self.read(
                "could not read a review's comments",
                "SELECT id FROM codemarks WHERE team_id = $1 AND review_id = $2 ORDER BY id",
                &[&team_id, &review_id],
                |r| r.get(0),
            )
            .await
        })
    }

    fn events(&self, team_id: &str, after: i64, limit: usize) -> DbFuture<'_, Vec<EventRow>> {
        let team_id = team_id.to_owned();
        let limit = limit as i64;
        Box::pin(async move {
            let rows = self
                .read(
                    "could not read events",
                    "SELECT seq, kind, subject_id, deleted FROM events WHERE team_id = $1 AND seq > $2
                     ORDER BY seq LIMIT $3",
                    &[&team_id, &after, &limit],
                    |r| (r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, bool>(3)),
                )
                .await?;
            rows.into_iter()
                .map(|(seq, kind, id, deleted)| {
                    let subject = Subject::parse(&kind).ok_or_else(|| DbError::Backend {
                        path: self.place().into(),
                        context: "could not read events".into(),
                        cause: format!("an event of unknown kind `{kind}`"),
                    })?;
                    Ok(EventRow { seq, subject, id, deleted })
                })
                .collect()
        })
    }

    fn idempotency(&self, team_id: &str, member_id: &str, key: &str) -> DbFuture<'_, Option<IdempotencyRow>> {
        let (team_id, member_id, key) = (team_id.to_owned(), member_id.to_owned(), key.to_owned());
        Box::pin(async move {
            self.read_one(
                "could not read an idempotency key",
                "SELECT team_id, member_id, key, route, status, resource_id, created FROM idempotency
                 WHERE team_id = $1 AND member_id = $2 AND key = $3",
                &[&team_id, &member_id, &key],
                |r| IdempotencyRow {
                    team_id: r.get(0),
                    member_id: r.get(1),
                    key: r.get(2),
                    route: r.get(3),
                    status: u16::try_from(r.get::<_, i32>(4)).unwrap_or(500),
                    resource_id: r.get(5),
                    created: r.get(6),
                },
            )
            .await
        })
    }

    fn audit(&self, team_id: Option<&str>, after: i64, limit: usize) -> DbFuture<'_, Vec<audit::Entry>> {
        let team_id = team_id.map(str::to_owned);
        let limit = limit as i64;
        Box::pin(async move {
            self.read(
                "could not read the audit log",
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit WHERE ($1::text IS NULL OR team_id = $1) AND seq > $2
                     ORDER BY seq LIMIT $3"
                ),
                &[&team_id, &after, &limit],
                audit_row,
            )
            .await
        })
    }

    fn verify_audit(&self) -> DbFuture<'_, audit::Verdict> {
        Box::pin(async move {
            let entries = self
                .read(
                    "could not read the audit log",
                    &format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"),
                    &[],
                    audit_row,
                )
                .await?;
            Ok(audit::verify(entries))
        })
    }

    fn stats(&self) -> DbFuture<'_, Stats> {
        Box::pin(async move {
            // Counting scans: not on a shared lane.
            let stats = self
                .read(
                    "could not count rows",
                    "SELECT (SELECT count(*) FROM teams), (SELECT count(*) FROM members),
                            (SELECT count(*) FROM codemarks), (SELECT count(*) FROM reviews),
                            (SELECT coalesce(sum(last_seq), 0)::bigint FROM event_counters)",
                    &[],
                    |r| Stats {
                        teams: r.get(0),
                        members: r.get(1),
                        codemarks: r.get(2),
                        reviews: r.get(3),
                        events: r.get(4),
                    },
                )
                .await?;
            Ok(stats.into_iter().next().unwrap_or_default())
        })
    }

    fn ping(&self) -> DbFuture<'_, ()> {
        Box::pin(async move {
            self.read_one("the database does not answer", "SELECT 1", &[], |_| ()).await?;
            if let Some(keys) = &self.inner.keys {
                let context = "the keys' database does not answer";
                let c = keys.get(context).await?;
                c.simple_query("SELECT 1").await.map_err(keys.err(context))?;
            }
            Ok(())
        })
    }

    fn team_keys(&self) -> DbFuture<'_, Vec<(String, Vec<u8>)>> {
        Box::pin(async move {
            let db = self.keys();
            let context = "could not list team keys";
            let c = db.get(context).await?;
            let rows = c
                .query("SELECT team_id, wrapped FROM marginalia_team_keys ORDER BY team_id", &[])
                .await
                .map_err(db.err(context))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn replace_team_keys(&self, keys: Vec<(String, Vec<u8>, Vec<u8>)>) -> DbFuture<'_, ()> {
        Box::pin(async move {
            let db = self.keys();
            let context = "could not replace team keys";
            let mut c = db.get(context).await?;
            let tx = c.transaction().await.map_err(db.err(context))?;
            for (team_id, old, new) in &keys {
                let changed = tx
                    .execute(
                        "UPDATE marginalia_team_keys SET wrapped = $3 WHERE team_id = $1 AND wrapped = $2",
                        &[team_id, old, new],
                    )
                    .await
                    .map_err(db.err(context))?;
                if changed != 1 {
                    return Err(DbError::Changed);
                }
            }
            tx.commit().await.map_err(db.err(context))
        })
    }
}

/// What every process's follower reads from a notification: `e TEAM SEQ` (events up to SEQ),
/// `p TEAM` (a token revoked, a member removed: listeners check their token), `c TEAM` (the team
/// was deleted).
#[derive(Debug, PartialEq, Eq)]
enum Signal<'a> {
    Events(&'a str, i64),
    Poke(&'a str),
    Closed(&'a str),
}

fn signal(payload: &str) -> Option<Signal<'_>> {
    let mut parts = payload.split(' ');
    match (parts.next()?, parts.next()?, parts.next()) {
        ("e", team, Some(seq)) => Some(Signal::Events(team, seq.parse().ok()?)),
        ("p", team, None) => Some(Signal::Poke(team)),
        ("c", team, None) => Some(Signal::Closed(team)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_read_back_as_they_were_written() {
        assert_eq!(signal("e 0190-a 42"), Some(Signal::Events("0190-a", 42)));
        assert_eq!(signal("p t"), Some(Signal::Poke("t")));
        assert_eq!(signal("c t"), Some(Signal::Closed("t")));
        assert_eq!(signal("e t"), None);
        assert_eq!(signal("x t"), None);
        assert_eq!(signal(""), None);
    }

    #[test]
    fn rows_read_by_id_come_back_in_the_order_asked() {
        let ids: Vec<String> = ["b", "a", "c"].iter().map(|s| s.to_string()).collect();
        let rows = vec!["a".to_string(), "b".to_string()];
        assert_eq!(in_order(&ids, rows, |r| r.as_str()), ["b", "a"]);
    }
}
