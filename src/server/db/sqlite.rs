//! [`Storage`] in SQLite: `server.db` holds the data, `keys.db` the wrapped team keys (apart,
//! so a backup of the data never holds a key). **The server's only SQL.**
//!
//! `server.db` runs in WAL mode with a busy timeout, so `marginalia serve invite` can write while
//! the server runs; writes take the lock up front (`BEGIN IMMEDIATE`) on one writer connection,
//! reads run on a small pool of reader connections, all of it on tokio's blocking pool. Deleted
//! rows are overwritten (`secure_delete`). Schemas are versioned (`PRAGMA user_version`); a file
//! from a newer build, or another program's, is refused and left untouched. The audit table
//! refuses updates and deletes (triggers); its hash chain shows tampering that goes around them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};

use super::{
    AuthRow, Batch, CodemarkRow, Committed, DbError, DbFuture, EventRow, IdempotencyRow, InviteRow, MemberRow,
    ReplyRow, RepoRow, ReviewFilter, ReviewRecord, ReviewRow, ReviewerRow, RevisionDraft, RevisionRow, Stats, Storage,
    Subject, TeamRow, Thread, ThreadFilter, TokenRow, Write,
};
use crate::api::Role;
use crate::server::audit;

/// The data file's name in the data directory.
pub const DATA_FILE: &str = "server.db";
/// The key file's name in the data directory.
pub const KEYS_FILE: &str = "keys.db";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads running at once, each on its own connection (kept open, with its cached statements).
/// More would only queue blocking threads for the same cores; requests beyond wait their turn.
const READERS: usize = 4;
/// Prepared statements kept per connection (the writer uses about 45 distinct ones).
const STATEMENT_CACHE: usize = 64;

/// `PRAGMA application_id` of `server.db` ("MRGS") and `keys.db` ("MRGK"); the local store is "MRGN".
const DATA_APP_ID: i64 = 0x4D52_4753;
const KEYS_APP_ID: i64 = 0x4D52_474B;

/// `server.db`'s schema, one step per entry (append only: released steps are never edited).
const DATA_MIGRATIONS: &[&str] = &[
    // 1: teams, members, tokens, invites, repositories, codemarks, replies, events,
    //    idempotency records and the audit log.
    "CREATE TABLE teams (
        id          TEXT PRIMARY KEY NOT NULL,
        name_sealed BLOB NOT NULL,
        name_mac    BLOB NOT NULL UNIQUE, -- HMAC of the name: `serve invite --team` finds it
        created     INTEGER NOT NULL      -- ms since the Unix epoch, as every time here
    ) STRICT;

    CREATE TABLE members (
        team_id      TEXT NOT NULL REFERENCES teams(id),
        id           TEXT NOT NULL,
        name_sealed  BLOB NOT NULL,
        email_sealed BLOB,
        role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        joined       INTEGER NOT NULL,
        PRIMARY KEY (team_id, id)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE tokens (
        id           TEXT PRIMARY KEY NOT NULL,
        team_id      TEXT NOT NULL REFERENCES teams(id),
        member_id    TEXT NOT NULL,
        hash         BLOB NOT NULL UNIQUE, -- SHA-256 of the token; the token is never stored
        label_sealed BLOB NOT NULL,
        created      INTEGER NOT NULL,
        last_used    INTEGER,
        revoked      INTEGER
    ) STRICT;
    CREATE INDEX tokens_member ON tokens(team_id, member_id);

    CREATE TABLE invites (
        hash    BLOB PRIMARY KEY NOT NULL, -- SHA-256 of the code
        team_id TEXT NOT NULL REFERENCES teams(id),
        role    TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        used    INTEGER
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX invites_team ON invites(team_id);

    CREATE TABLE repos (
        team_id      TEXT NOT NULL REFERENCES teams(id),
        id           TEXT NOT NULL, -- derived from the HMAC of the key under the team's key
        key_sealed   BLOB NOT NULL,
        roots_sealed BLOB NOT NULL,
        created      INTEGER NOT NULL,
        PRIMARY KEY (team_id, id)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE codemarks (
        team_id        TEXT NOT NULL,
        id             TEXT NOT NULL,
        repo_id        TEXT NOT NULL,
        kind           TEXT NOT NULL,
        status         TEXT NOT NULL,
        author_id      TEXT NOT NULL,
        title_sealed   BLOB,
        body_sealed    BLOB NOT NULL,
        anchors_sealed BLOB NOT NULL, -- the anchors list, with snippets, as one sealed JSON value
        created        INTEGER NOT NULL,
        updated        INTEGER NOT NULL,
        PRIMARY KEY (team_id, id),
        FOREIGN KEY (team_id, repo_id) REFERENCES repos(team_id, id)
    ) STRICT;
    CREATE INDEX codemarks_repo ON codemarks(team_id, repo_id, created);
    CREATE INDEX codemarks_author ON codemarks(team_id, author_id);

    CREATE TABLE replies (
        team_id     TEXT NOT NULL,
        id          TEXT NOT NULL,
        codemark_id TEXT NOT NULL,
        author_id   TEXT NOT NULL,
        body_sealed BLOB NOT NULL,
        created     INTEGER NOT NULL,
        PRIMARY KEY (team_id, id),
        FOREIGN KEY (team_id, codemark_id) REFERENCES codemarks(team_id, id) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX replies_codemark ON replies(team_id, codemark_id, created);
    CREATE INDEX replies_author ON replies(team_id, author_id);

    -- Pointers to codemarks that changed; AUTOINCREMENT so a sequence number (a client's
    -- cursor) is never given twice, even after deletions.
    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        team_id     TEXT NOT NULL,
        codemark_id TEXT NOT NULL,
        deleted     INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX events_team ON events(team_id, seq);

    CREATE TABLE idempotency (
        team_id     TEXT NOT NULL,
        member_id   TEXT NOT NULL,
        key         TEXT NOT NULL,
        route       TEXT NOT NULL,
        status      INTEGER NOT NULL,
        resource_id TEXT,
        created     INTEGER NOT NULL,
        PRIMARY KEY (team_id, member_id, key)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY NOT NULL,
        time      INTEGER NOT NULL,
        team_id   TEXT NOT NULL,
        actor_id  TEXT NOT NULL,
        action    TEXT NOT NULL,
        target_id TEXT,
        detail    TEXT NOT NULL,
        hash      BLOB NOT NULL -- SHA-256(previous hash || canonical entry)
    ) STRICT;
    CREATE INDEX audit_team ON audit(team_id, seq);
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 2: feedback requests (reviews) with their revisions and reviewers, review comments' links
    //    on codemarks, and events that point at reviews. Only additions: version 1's rows, and
    //    the event sequence numbers clients hold as cursors, stay as they are.
    "CREATE TABLE reviews (
        team_id            TEXT NOT NULL,
        id                 TEXT NOT NULL,
        repo_id            TEXT NOT NULL,
        author_id          TEXT NOT NULL,
        title_sealed       BLOB NOT NULL,
        description_sealed BLOB NOT NULL,
        closed             INTEGER NOT NULL,
        created            INTEGER NOT NULL,
        updated            INTEGER NOT NULL,
        PRIMARY KEY (team_id, id),
        FOREIGN KEY (team_id, repo_id) REFERENCES repos(team_id, id)
    ) STRICT;
    CREATE INDEX reviews_created ON reviews(team_id, created);
    CREATE INDEX reviews_author ON reviews(team_id, author_id);

    -- files_sealed comes last: listing reads the columns before it and never the overflow pages
    -- of up to 16 MiB of patches.
    CREATE TABLE revisions (
        team_id        TEXT NOT NULL,
        review_id      TEXT NOT NULL,
        number         INTEGER NOT NULL, -- 1, 2, ... within the review
        id             TEXT NOT NULL,
        created        INTEGER NOT NULL,
        summary_sealed BLOB NOT NULL,    -- base, base note, head, files listed with line counts
        files_sealed   BLOB NOT NULL,    -- the files with their patches, one sealed JSON value
        PRIMARY KEY (team_id, review_id, number),
        UNIQUE (team_id, id),
        FOREIGN KEY (team_id, review_id) REFERENCES reviews(team_id, id) ON DELETE CASCADE
    ) STRICT;

    CREATE TABLE reviewers (
        team_id   TEXT NOT NULL,
        review_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        position  INTEGER NOT NULL, -- the order they were listed in
        verdict   TEXT NOT NULL CHECK (verdict IN ('pending', 'approved', 'changes_requested')),
        PRIMARY KEY (team_id, review_id, member_id),
        FOREIGN KEY (team_id, review_id) REFERENCES reviews(team_id, id) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX reviewers_member ON reviewers(team_id, member_id);

    -- A review comment is a codemark: its review in the clear (for deleting the review's
    -- comments with it), its whole link (revision, path, side) sealed.
    ALTER TABLE codemarks ADD COLUMN review_id TEXT;
    ALTER TABLE codemarks ADD COLUMN review_sealed BLOB;
    CREATE INDEX codemarks_review ON codemarks(team_id, review_id) WHERE review_id IS NOT NULL;

    -- What an event points at; for a review, `codemark_id` holds the review's id (the column
    -- keeps its name: renaming it would rewrite version 1's table).
    ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'codemark' CHECK (kind IN ('codemark', 'review'));",
];

/// `keys.db`'s schema.
const KEYS_MIGRATIONS: &[&str] = &[
    // 1: one wrapped data key per team.
    "CREATE TABLE team_keys (
        team_id TEXT PRIMARY KEY NOT NULL,
        wrapped BLOB NOT NULL, -- the team's data key sealed under the master key
        created INTEGER NOT NULL
    ) STRICT;",
];

/// The SQLite storage. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

struct Inner {
    data_path: PathBuf,
    keys_path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    keys: Mutex<Connection>,
    /// Turns to read ([`READERS`]) and to write (one): taken before a blocking thread is used,
    /// so waiting requests wait as futures, not as threads.
    read_turns: Arc<tokio::sync::Semaphore>,
    write_turn: Arc<tokio::sync::Semaphore>,
    /// Batches waiting to be committed: whoever gets the write turn commits all of them.
    pending: Mutex<Vec<Pending>>,
}

/// A batch waiting for the writer, and where its outcome goes.
type Pending = (Batch, tokio::sync::oneshot::Sender<Result<Committed, DbError>>);

/// Which turn a storage task waits for.
#[derive(Clone, Copy)]
enum Turn {
    Read,
    Write,
}

impl SqliteStorage {
    /// Opens (creating as needed) `server.db` and `keys.db` in `dir`, bringing their schemas up
    /// to date.
    pub fn open(dir: &Path) -> Result<SqliteStorage, DbError> {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Backend {
            path: dir.to_path_buf(),
            context: "cannot create the data directory".into(),
            cause: e.to_string(),
        })?;
        let data_path = dir.join(DATA_FILE);
        let keys_path = dir.join(KEYS_FILE);
        let writer = open_file(&data_path, DATA_APP_ID, DATA_MIGRATIONS, "wal")?;
        let keys = open_file(&keys_path, KEYS_APP_ID, KEYS_MIGRATIONS, "delete")?;
        // Checkpoints run beside the writer, not inside whichever commit crosses the threshold.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| DbError::Backend {
            path: data_path.clone(),
            context: "could not set up the file".into(),
            cause: e.to_string(),
        })?;
        let storage = SqliteStorage {
            inner: Arc::new(Inner {
                data_path,
                keys_path,
                writer: Mutex::new(writer),
                readers: Mutex::default(),
                keys: Mutex::new(keys),
                read_turns: Arc::new(tokio::sync::Semaphore::new(READERS)),
                write_turn: Arc::new(tokio::sync::Semaphore::new(1)),
                pending: Mutex::default(),
            }),
        };
        checkpoint_in_background(&storage.inner);
        Ok(storage)
    }

    /// The data file.
    pub fn data_path(&self) -> &Path {
        &self.inner.data_path
    }

    /// Runs `f` on the blocking pool once it is `turn`'s turn.
    fn run<T: Send + 'static>(
        &self,
        turn: Turn,
        f: impl FnOnce(&Inner) -> Result<T, DbError> + Send + 'static,
    ) -> DbFuture<'static, T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let path = inner.data_path.clone();
            let failed =
                |cause: String| DbError::Backend { path: path.clone(), context: "a storage task failed".into(), cause };
            let turns = match turn {
                Turn::Read => inner.read_turns.clone(),
                Turn::Write => inner.write_turn.clone(),
            };
            let permit = turns.acquire_owned().await.map_err(|e| failed(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let out = f(&inner);
                drop(permit);
                out
            })
            .await
            .map_err(|e| failed(e.to_string()))?
        })
    }

    fn read<T: Send + 'static>(
        &self,
        context: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> DbFuture<'static, T> {
        self.run(Turn::Read, move |inner| inner.read(context, f))
    }
}

impl Inner {
    fn sql(&self, context: &str) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        let context = context.to_string();
        move |e| DbError::Backend { path: self.data_path.clone(), context: context.clone(), cause: e.to_string() }
    }

    /// Runs `f` in one read transaction on a pooled reader connection, so reads of several
    /// tables see one state. BEGIN and COMMIT come from the statement cache too.
    fn read<T>(&self, context: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(&self.data_path)?,
        };
        let out = (|| {
            exec(&conn, "BEGIN", [])?;
            match f(&conn) {
                Ok(out) => exec(&conn, "COMMIT", []).map(|_| out),
                Err(e) => {
                    let _ = exec(&conn, "ROLLBACK", []);
                    Err(e)
                }
            }
        })()
        .map_err(self.sql(context));
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.len() < READERS && conn.is_autocommit() {
            readers.push(conn);
        }
        out
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer connection, committed when
    /// it succeeds and rolled back when it does not.
    fn write<T>(&self, context: &str, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        exec(&conn, "BEGIN IMMEDIATE", []).map_err(self.sql(context))?;
        let out = f(&conn).and_then(|out| exec(&conn, "COMMIT", []).map(|_| out).map_err(self.sql(context)));
        if out.is_err() && !conn.is_autocommit() {
            let _ = exec(&conn, "ROLLBACK", []);
        }
        out
    }

    /// Commits waiting batches in one transaction (group commit): each batch runs inside its
    /// own savepoint, so one refused batch (an id taken, the last admin) is rolled back alone,
    /// and the others share one `BEGIN`, one `COMMIT` and one write of the pages they all touch.
    fn commit_group(&self, jobs: Vec<Pending>) {
        let context = "could not save a change";
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE", []) {
            let cause = e.to_string();
            for (_, done) in jobs {
                let path = self.data_path.clone();
                let _ = done.send(Err(DbError::Backend { path, context: context.into(), cause: cause.clone() }));
            }
            return;
        }
        // Outcomes are told only once the group is committed: a request refused because another
        // in the group took its idempotency key reads that key's record next, and must find it.
        let mut applied = Vec::with_capacity(jobs.len());
        let mut refused = Vec::new();
        for (batch, done) in jobs {
            let outcome =
                exec(&conn, "SAVEPOINT batch", []).map_err(self.sql(context)).and_then(|_| self.apply(&conn, batch));
            match outcome {
                Ok(committed) => {
                    let _ = exec(&conn, "RELEASE batch", []);
                    applied.push((committed, done));
                }
                Err(e) => {
                    let _ = exec(&conn, "ROLLBACK TO batch", []);
                    let _ = exec(&conn, "RELEASE batch", []);
                    refused.push((e, done));
                }
            }
        }
        match exec(&conn, "COMMIT", []) {
            Ok(_) => {
                for (committed, done) in applied {
                    let _ = done.send(Ok(committed));
                }
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = exec(&conn, "ROLLBACK", []);
                }
                let cause = e.to_string();
                for (_, done) in applied {
                    let _ = done.send(Err(DbError::Backend {
                        path: self.data_path.clone(),
                        context: context.into(),
                        cause: cause.clone(),
                    }));
                }
            }
        }
        for (e, done) in refused {
            let _ = done.send(Err(e));
        }
    }

    fn keys<T>(&self, context: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let conn = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| DbError::Backend {
            path: self.keys_path.clone(),
            context: context.to_string(),
            cause: e.to_string(),
        })
    }

    fn apply(&self, tx: &Connection, batch: Batch) -> Result<Committed, DbError> {
        let sql = self.sql("could not save a change");
        if let Some(idem) = &batch.idempotency {
            let taken: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM idempotency WHERE team_id = ?1 AND member_id = ?2 AND key = ?3)",
                    params![idem.team_id, idem.member_id, idem.key],
                    |r| r.get(0),
                )
                .map_err(&sql)?;
            if taken {
                return Err(DbError::IdempotencyReplay);
            }
        }
        for w in batch.writes {
            apply_write(tx, w).map_err(|e| match e {
                Applied::Db(e) => e,
                Applied::Sql(e) => sql(e),
            })?;
        }
        let mut committed = Committed::default();
        for e in batch.events {
            exec(
                tx,
                "INSERT INTO events (team_id, codemark_id, kind, deleted) VALUES (?1, ?2, ?3, ?4)",
                params![e.team_id, e.id, e.subject.as_str(), e.deleted],
            )
            .map_err(&sql)?;
            committed.events.push((e.team_id, tx.last_insert_rowid()));
        }
        for d in batch.audit {
            append_audit(tx, batch.time, &d).map_err(&sql)?;
        }
        if let Some(i) = batch.idempotency {
            exec(
                tx,
                "INSERT INTO idempotency (team_id, member_id, key, route, status, resource_id, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![i.team_id, i.member_id, i.key, i.route, i.status, i.resource_id, i.created],
            )
            .map_err(&sql)?;
        }
        Ok(committed)
    }
}

/// A write's failure: an answer about the data, or SQLite's.
enum Applied {
    Db(DbError),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Applied {
    fn from(e: rusqlite::Error) -> Applied {
        Applied::Sql(e)
    }
}

/// `execute` through the connection's statement cache: the server runs the same few statements
/// all day, and parsing and planning them each time cost more than running them.
fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// `query_row` through the statement cache.
fn row<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

fn exists(tx: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<bool> {
    row(tx, &format!("SELECT EXISTS ({sql})"), p, |r| r.get(0))
}

fn admins_left(tx: &Connection, team_id: &str, without: &str) -> rusqlite::Result<i64> {
    row(
        tx,
        "SELECT count(*) FROM members WHERE team_id = ?1 AND role = 'admin' AND id <> ?2",
        params![team_id, without],
        |r| r.get(0),
    )
}

fn must_change(changed: usize) -> Result<(), Applied> {
    if changed == 0 { Err(Applied::Db(DbError::NotFound)) } else { Ok(()) }
}

fn apply_write(tx: &Connection, w: Write) -> Result<(), Applied> {
    match w {
        Write::InsertTeam(t) => {
            exec(
                tx,
                "INSERT INTO teams (id, name_sealed, name_mac, created) VALUES (?1, ?2, ?3, ?4)",
                params![t.id, t.name_sealed, t.name_mac, t.created],
            )?;
        }
        Write::InsertInvite(i) => {
            exec(
                tx,
                "INSERT INTO invites (hash, team_id, role, created, expires, used) VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
                params![i.hash, i.team_id, i.role.as_str(), i.created, i.expires],
            )?;
        }
        Write::RedeemInvite { hash, now } => {
            let changed = exec(
                tx,
                "UPDATE invites SET used = ?2 WHERE hash = ?1 AND used IS NULL AND expires > ?2",
                params![hash, now],
            )?;
            if changed == 0 {
                return Err(Applied::Db(DbError::InviteGone));
            }
        }
        Write::InsertMember(m) => {
            exec(
                tx,
                "INSERT INTO members (team_id, id, name_sealed, email_sealed, role, joined)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![m.team_id, m.id, m.name_sealed, m.email_sealed, m.role.as_str(), m.joined],
            )?;
        }
        Write::SetRole { team_id, member_id, role } => {
            if role != Role::Admin && admins_left(tx, &team_id, &member_id)? == 0 {
                if !exists(tx, "SELECT 1 FROM members WHERE team_id = ?1 AND id = ?2", params![team_id, member_id])? {
                    return Err(Applied::Db(DbError::NotFound));
                }
                return Err(Applied::Db(DbError::LastAdmin));
            }
            must_change(exec(
                tx,
                "UPDATE members SET role = ?3 WHERE team_id = ?1 AND id = ?2",
                params![team_id, member_id, role.as_str()],
            )?)?;
        }
        Write::DeleteMember { team_id, member_id, now } => {
            if !exists(tx, "SELECT 1 FROM members WHERE team_id = ?1 AND id = ?2", params![team_id, member_id])? {
                return Err(Applied::Db(DbError::NotFound));
            }
            if admins_left(tx, &team_id, &member_id)? == 0 {
                return Err(Applied::Db(DbError::LastAdmin));
            }
            exec(
                tx,
                "UPDATE tokens SET revoked = ?3 WHERE team_id = ?1 AND member_id = ?2 AND revoked IS NULL",
                params![team_id, member_id, now],
            )?;
            exec(tx, "DELETE FROM idempotency WHERE team_id = ?1 AND member_id = ?2", params![team_id, member_id])?;
            exec(tx, "DELETE FROM members WHERE team_id = ?1 AND id = ?2", params![team_id, member_id])?;
        }
        Write::InsertToken(t) => {
            exec(
                tx,
                "INSERT INTO tokens (id, team_id, member_id, hash, label_sealed, created, last_used, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)",
                params![t.id, t.team_id, t.member_id, t.hash, t.label_sealed, t.created],
            )?;
        }
        Write::RevokeToken { team_id, token_id, now } => {
            must_change(exec(
                tx,
                "UPDATE tokens SET revoked = coalesce(revoked, ?3) WHERE team_id = ?1 AND id = ?2",
                params![team_id, token_id, now],
            )?)?;
        }
        Write::InsertRepo(r) => {
            exec(
                tx,
                "INSERT INTO repos (team_id, id, key_sealed, roots_sealed, created) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (team_id, id) DO NOTHING",
                params![r.team_id, r.id, r.key_sealed, r.roots_sealed, r.created],
            )?;
        }
        Write::InsertCodemark(c) => {
            if exists(tx, "SELECT 1 FROM codemarks WHERE team_id = ?1 AND id = ?2", params![c.team_id, c.id])? {
                return Err(Applied::Db(DbError::Exists));
            }
            if let Some(review) = &c.review_id
                && !review_exists(tx, &c.team_id, review)?
            {
                return Err(Applied::Db(DbError::NotFound));
            }
            exec(
                tx,
                "INSERT INTO codemarks (team_id, id, repo_id, kind, status, author_id, title_sealed, body_sealed,
                                        anchors_sealed, created, updated, review_id, review_sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    c.team_id,
                    c.id,
                    c.repo_id,
                    c.kind,
                    c.status,
                    c.author_id,
                    c.title_sealed,
                    c.body_sealed,
                    c.anchors_sealed,
                    c.created,
                    c.updated,
                    c.review_id,
                    c.review_sealed
                ],
            )?;
        }
        Write::UpdateCodemark { team_id, id, title_sealed, body_sealed, status, anchors_sealed, updated } => {
            must_change(exec(
                tx,
                "UPDATE codemarks SET
                    title_sealed = CASE WHEN ?3 THEN ?4 ELSE title_sealed END,
                    body_sealed = coalesce(?5, body_sealed),
                    status = coalesce(?6, status),
                    anchors_sealed = coalesce(?7, anchors_sealed),
                    updated = max(updated, ?8)
                 WHERE team_id = ?1 AND id = ?2",
                params![
                    team_id,
                    id,
                    title_sealed.is_some(),
                    title_sealed.flatten(),
                    body_sealed,
                    status,
                    anchors_sealed,
                    updated
                ],
            )?)?;
        }
        Write::DeleteCodemark { team_id, id } => {
            exec(tx, "DELETE FROM replies WHERE team_id = ?1 AND codemark_id = ?2", params![team_id, id])?;
            must_change(exec(tx, "DELETE FROM codemarks WHERE team_id = ?1 AND id = ?2", params![team_id, id])?)?;
        }
        Write::InsertReply(r) => {
            if !exists(tx, "SELECT 1 FROM codemarks WHERE team_id = ?1 AND id = ?2", params![r.team_id, r.codemark_id])?
            {
                return Err(Applied::Db(DbError::NotFound));
            }
            if exists(tx, "SELECT 1 FROM replies WHERE team_id = ?1 AND id = ?2", params![r.team_id, r.id])? {
                return Err(Applied::Db(DbError::Exists));
            }
            exec(
                tx,
                "INSERT INTO replies (team_id, id, codemark_id, author_id, body_sealed, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.team_id, r.id, r.codemark_id, r.author_id, r.body_sealed, r.created],
            )?;
        }
        Write::DeleteReply { team_id, codemark_id, id } => {
            must_change(exec(
                tx,
                "DELETE FROM replies WHERE team_id = ?1 AND codemark_id = ?2 AND id = ?3",
                params![team_id, codemark_id, id],
            )?)?;
        }
        Write::InsertReview { review: v, reviewers, revision } => {
            if review_exists(tx, &v.team_id, &v.id)? {
                return Err(Applied::Db(DbError::Exists));
            }
            exec(
                tx,
                "INSERT INTO reviews (team_id, id, repo_id, author_id, title_sealed, description_sealed, closed,
                                      created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    v.team_id,
                    v.id,
                    v.repo_id,
                    v.author_id,
                    v.title_sealed,
                    v.description_sealed,
                    v.closed,
                    v.created,
                    v.updated
                ],
            )?;
            set_reviewers(tx, &v.team_id, &v.id, &reviewers)?;
            insert_revision(tx, &v.team_id, &v.id, 1, revision)?;
        }
        Write::AddRevision { team_id, review_id, revision } => {
            let closed: Option<bool> = row(
                tx,
                "SELECT closed FROM reviews WHERE team_id = ?1 AND id = ?2",
                params![team_id, review_id],
                |r| r.get(0),
            )
            .optional()?;
            match closed {
                None => return Err(Applied::Db(DbError::NotFound)),
                Some(true) => return Err(Applied::Db(DbError::Closed)),
                Some(false) => {}
            }
            let latest: u32 = row(
                tx,
                "SELECT coalesce(max(number), 0) FROM revisions WHERE team_id = ?1 AND review_id = ?2",
                params![team_id, review_id],
                |r| r.get(0),
            )?;
            let updated = revision.created;
            insert_revision(tx, &team_id, &review_id, latest + 1, revision)?;
            exec(
                tx,
                "UPDATE reviewers SET verdict = 'pending' WHERE team_id = ?1 AND review_id = ?2",
                params![team_id, review_id],
            )?;
            touch_review(tx, &team_id, &review_id, updated)?;
        }
        Write::SetVerdict { team_id, review_id, member_id, verdict, updated } => {
            if !review_exists(tx, &team_id, &review_id)? {
                return Err(Applied::Db(DbError::NotFound));
            }
            exec(
                tx,
                "INSERT INTO reviewers (team_id, review_id, member_id, position, verdict)
                 VALUES (?1, ?2, ?3,
                         (SELECT coalesce(max(position), -1) + 1 FROM reviewers WHERE team_id = ?1 AND review_id = ?2),
                         ?4)
                 ON CONFLICT (team_id, review_id, member_id) DO UPDATE SET verdict = excluded.verdict",
                params![team_id, review_id, member_id, verdict],
            )?;
            touch_review(tx, &team_id, &review_id, updated)?;
        }
        Write::UpdateReview { team_id, id, title_sealed, description_sealed, closed, reviewers, updated } => {
            must_change(exec(
                tx,
                "UPDATE reviews SET
                    title_sealed = coalesce(?3, title_sealed),
                    description_sealed = coalesce(?4, description_sealed),
                    closed = coalesce(?5, closed),
                    updated = max(updated, ?6)
                 WHERE team_id = ?1 AND id = ?2",
                params![team_id, id, title_sealed, description_sealed, closed, updated],
            )?)?;
            if let Some(reviewers) = reviewers {
                set_reviewers(tx, &team_id, &id, &reviewers)?;
            }
        }
        Write::DeleteReview { team_id, id, comments } => {
            if !review_exists(tx, &team_id, &id)? {
                return Err(Applied::Db(DbError::NotFound));
            }
            let mut now = review_comment_ids(tx, &team_id, &id)?;
            let mut expected = comments;
            now.sort();
            expected.sort();
            if now != expected {
                return Err(Applied::Db(DbError::Changed));
            }
            for c in &now {
                exec(tx, "DELETE FROM replies WHERE team_id = ?1 AND codemark_id = ?2", params![team_id, c])?;
            }
            exec(tx, "DELETE FROM codemarks WHERE team_id = ?1 AND review_id = ?2", params![team_id, id])?;
            exec(tx, "DELETE FROM reviewers WHERE team_id = ?1 AND review_id = ?2", params![team_id, id])?;
            exec(tx, "DELETE FROM revisions WHERE team_id = ?1 AND review_id = ?2", params![team_id, id])?;
            exec(tx, "DELETE FROM reviews WHERE team_id = ?1 AND id = ?2", params![team_id, id])?;
        }
        Write::SetTeamNameMac { team_id, name_mac } => {
            must_change(exec(tx, "UPDATE teams SET name_mac = ?2 WHERE id = ?1", params![team_id, name_mac])?)?;
        }
        Write::DeleteTeam { team_id } => {
            for table in [
                "events",
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
                exec(tx, &format!("DELETE FROM {table} WHERE team_id = ?1"), params![team_id])?;
            }
            must_change(exec(tx, "DELETE FROM teams WHERE id = ?1", params![team_id])?)?;
        }
    }
    Ok(())
}

fn review_exists(tx: &Connection, team_id: &str, id: &str) -> rusqlite::Result<bool> {
    exists(tx, "SELECT 1 FROM reviews WHERE team_id = ?1 AND id = ?2", params![team_id, id])
}

fn review_comment_ids(tx: &Connection, team_id: &str, review_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare_cached("SELECT id FROM codemarks WHERE team_id = ?1 AND review_id = ?2 ORDER BY id")?;
    stmt.query_map(params![team_id, review_id], |r| r.get(0))?.collect()
}

fn touch_review(tx: &Connection, team_id: &str, id: &str, updated: i64) -> rusqlite::Result<()> {
    exec(
        tx,
        "UPDATE reviews SET updated = max(updated, ?3) WHERE team_id = ?1 AND id = ?2",
        params![team_id, id, updated],
    )
    .map(drop)
}

/// Makes `members` the review's reviewers, in this order: those who stay keep their verdicts,
/// new ones start pending, the others are dropped.
fn set_reviewers(tx: &Connection, team_id: &str, review_id: &str, members: &[String]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("SELECT member_id FROM reviewers WHERE team_id = ?1 AND review_id = ?2")?;
    let present: Vec<String> = stmt.query_map(params![team_id, review_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for gone in present.iter().filter(|p| !members.contains(p)) {
        exec(
            tx,
            "DELETE FROM reviewers WHERE team_id = ?1 AND review_id = ?2 AND member_id = ?3",
            params![team_id, review_id, gone],
        )?;
    }
    for (position, member) in members.iter().enumerate() {
        exec(
            tx,
            "INSERT INTO reviewers (team_id, review_id, member_id, position, verdict) VALUES (?1, ?2, ?3, ?4, 'pending')
             ON CONFLICT (team_id, review_id, member_id) DO UPDATE SET position = excluded.position",
            params![team_id, review_id, member, position as i64],
        )?;
    }
    Ok(())
}

fn insert_revision(
    tx: &Connection,
    team_id: &str,
    review_id: &str,
    number: u32,
    r: RevisionDraft,
) -> Result<(), Applied> {
    if exists(tx, "SELECT 1 FROM revisions WHERE team_id = ?1 AND id = ?2", params![team_id, r.id])? {
        return Err(Applied::Db(DbError::Exists));
    }
    exec(
        tx,
        "INSERT INTO revisions (team_id, review_id, number, id, created, summary_sealed, files_sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![team_id, review_id, number, r.id, r.created, r.summary_sealed, r.files_sealed],
    )?;
    Ok(())
}

fn append_audit(tx: &Connection, time: i64, d: &audit::Draft) -> rusqlite::Result<()> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (prev_seq, prev_hash) = last.unwrap_or((0, audit::GENESIS.to_vec()));
    let seq = prev_seq + 1;
    let action = d.action.as_str();
    let hash =
        audit::chain_hash(&prev_hash, seq, time, &d.team_id, &d.actor_id, action, d.target_id.as_deref(), &d.detail);
    exec(
        tx,
        "INSERT INTO audit (seq, time, team_id, actor_id, action, target_id, detail, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![seq, time, d.team_id, d.actor_id, action, d.target_id, d.detail, hash.to_vec()],
    )?;
    Ok(())
}

fn role(text: String) -> rusqlite::Result<Role> {
    text.parse()
        .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

const TEAM_COLUMNS: &str = "id, name_sealed, name_mac, created";
fn team_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TeamRow> {
    Ok(TeamRow { id: r.get(0)?, name_sealed: r.get(1)?, name_mac: r.get(2)?, created: r.get(3)? })
}

const MEMBER_COLUMNS: &str = "team_id, id, name_sealed, email_sealed, role, joined";
fn member_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemberRow> {
    Ok(MemberRow {
        team_id: r.get(0)?,
        id: r.get(1)?,
        name_sealed: r.get(2)?,
        email_sealed: r.get(3)?,
        role: role(r.get(4)?)?,
        joined: r.get(5)?,
    })
}

const TOKEN_COLUMNS: &str = "t.id, t.team_id, t.member_id, t.hash, t.label_sealed, t.created, t.last_used, t.revoked";
fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        team_id: r.get(1)?,
        member_id: r.get(2)?,
        hash: r.get(3)?,
        label_sealed: r.get(4)?,
        created: r.get(5)?,
        last_used: r.get(6)?,
        revoked: r.get(7)?,
    })
}

const REPO_COLUMNS: &str = "team_id, id, key_sealed, roots_sealed, created";
fn repo_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RepoRow> {
    Ok(RepoRow {
        team_id: r.get(0)?,
        id: r.get(1)?,
        key_sealed: r.get(2)?,
        roots_sealed: r.get(3)?,
        created: r.get(4)?,
    })
}

/// A codemark with its repository key and author name; replies are read separately.
const THREAD_SELECT: &str = "SELECT c.team_id, c.id, c.repo_id, c.kind, c.status, c.author_id, c.title_sealed,
        c.body_sealed, c.anchors_sealed, c.created, c.updated, r.key_sealed, m.name_sealed, c.review_id,
        c.review_sealed
    FROM codemarks c
    JOIN repos r ON r.team_id = c.team_id AND r.id = c.repo_id
    LEFT JOIN members m ON m.team_id = c.team_id AND m.id = c.author_id";
fn thread_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Thread> {
    Ok(Thread {
        codemark: CodemarkRow {
            team_id: r.get(0)?,
            id: r.get(1)?,
            repo_id: r.get(2)?,
            kind: r.get(3)?,
            status: r.get(4)?,
            author_id: r.get(5)?,
            title_sealed: r.get(6)?,
            body_sealed: r.get(7)?,
            anchors_sealed: r.get(8)?,
            created: r.get(9)?,
            updated: r.get(10)?,
            review_id: r.get(13)?,
            review_sealed: r.get(14)?,
        },
        repo_key_sealed: r.get(11)?,
        author_name_sealed: r.get(12)?,
        replies: Vec::new(),
    })
}

const REPLY_SELECT: &str = "SELECT p.team_id, p.id, p.codemark_id, p.author_id, p.body_sealed, p.created, m.name_sealed
    FROM replies p LEFT JOIN members m ON m.team_id = p.team_id AND m.id = p.author_id";
fn reply_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ReplyRow, Option<Vec<u8>>)> {
    Ok((
        ReplyRow {
            team_id: r.get(0)?,
            id: r.get(1)?,
            codemark_id: r.get(2)?,
            author_id: r.get(3)?,
            body_sealed: r.get(4)?,
            created: r.get(5)?,
        },
        r.get(6)?,
    ))
}

fn read_threads(tx: &Connection, team_id: &str, filter: &ThreadFilter) -> rusqlite::Result<Vec<Thread>> {
    let mut threads: Vec<Thread> = Vec::new();
    match &filter.ids {
        Some(ids) => {
            let mut stmt = tx.prepare_cached(&format!("{THREAD_SELECT} WHERE c.team_id = ?1 AND c.id = ?2"))?;
            for id in ids {
                if let Some(t) = stmt.query_row(params![team_id, id], thread_row).optional()? {
                    threads.push(t);
                }
            }
        }
        None => {
            let mut stmt = tx.prepare_cached(&format!(
                "{THREAD_SELECT} WHERE c.team_id = ?1 AND (?2 IS NULL OR c.repo_id = ?2)
                   AND (?3 IS NULL OR c.author_id = ?3) ORDER BY c.created, c.id"
            ))?;
            threads = stmt
                .query_map(params![team_id, filter.repo_id, filter.author_id], thread_row)?
                .collect::<rusqlite::Result<_>>()?;
        }
    }
    threads.retain(|t| {
        filter.repo_id.as_ref().is_none_or(|r| *r == t.codemark.repo_id)
            && filter.author_id.as_ref().is_none_or(|a| *a == t.codemark.author_id)
    });
    let mut stmt = tx.prepare_cached(&format!(
        "{REPLY_SELECT} WHERE p.team_id = ?1 AND p.codemark_id = ?2 ORDER BY p.created, p.id"
    ))?;
    for t in &mut threads {
        t.replies = stmt.query_map(params![team_id, t.codemark.id], reply_row)?.collect::<rusqlite::Result<_>>()?;
    }
    Ok(threads)
}

/// A review with its repository key and author name; reviewers and revisions are read
/// separately.
const REVIEW_SELECT: &str = "SELECT v.team_id, v.id, v.repo_id, v.author_id, v.title_sealed, v.description_sealed,
        v.closed, v.created, v.updated, r.key_sealed, m.name_sealed
    FROM reviews v
    JOIN repos r ON r.team_id = v.team_id AND r.id = v.repo_id
    LEFT JOIN members m ON m.team_id = v.team_id AND m.id = v.author_id";
fn review_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReviewRecord> {
    Ok(ReviewRecord {
        review: ReviewRow {
            team_id: r.get(0)?,
            id: r.get(1)?,
            repo_id: r.get(2)?,
            author_id: r.get(3)?,
            title_sealed: r.get(4)?,
            description_sealed: r.get(5)?,
            closed: r.get(6)?,
            created: r.get(7)?,
            updated: r.get(8)?,
        },
        repo_key_sealed: r.get(9)?,
        author_name_sealed: r.get(10)?,
        reviewers: Vec::new(),
        revisions: Vec::new(),
    })
}

/// A revision without its files (the column after these is never read here).
const REVISION_COLUMNS: &str = "team_id, review_id, id, number, summary_sealed, created";
fn revision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RevisionRow> {
    Ok(RevisionRow {
        team_id: r.get(0)?,
        review_id: r.get(1)?,
        id: r.get(2)?,
        number: r.get(3)?,
        summary_sealed: r.get(4)?,
        created: r.get(5)?,
    })
}

fn read_reviews(tx: &Connection, team_id: &str, filter: &ReviewFilter) -> rusqlite::Result<Vec<ReviewRecord>> {
    let mut reviews: Vec<ReviewRecord> = Vec::new();
    match &filter.ids {
        Some(ids) => {
            let mut stmt = tx.prepare_cached(&format!("{REVIEW_SELECT} WHERE v.team_id = ?1 AND v.id = ?2"))?;
            for id in ids {
                if let Some(v) = stmt.query_row(params![team_id, id], review_row).optional()? {
                    reviews.push(v);
                }
            }
        }
        None => {
            let mut stmt = tx.prepare_cached(&format!(
                "{REVIEW_SELECT} WHERE v.team_id = ?1 AND (?2 IS NULL OR v.author_id = ?2)
                   AND (?3 IS NULL OR EXISTS (SELECT 1 FROM reviewers w
                        WHERE w.team_id = v.team_id AND w.review_id = v.id AND w.member_id = ?3))
                   AND (NOT ?4 OR v.closed = 0)
                 ORDER BY v.created DESC, v.id DESC"
            ))?;
            reviews = stmt
                .query_map(params![team_id, filter.author_id, filter.reviewer_id, filter.open_only], review_row)?
                .collect::<rusqlite::Result<_>>()?;
        }
    }
    let mut reviewers = tx.prepare_cached(
        "SELECT w.member_id, w.verdict, m.name_sealed FROM reviewers w
         LEFT JOIN members m ON m.team_id = w.team_id AND m.id = w.member_id
         WHERE w.team_id = ?1 AND w.review_id = ?2 ORDER BY w.position, w.member_id",
    )?;
    let mut revisions = tx.prepare_cached(&format!(
        "SELECT {REVISION_COLUMNS} FROM revisions WHERE team_id = ?1 AND review_id = ?2 ORDER BY number"
    ))?;
    for v in &mut reviews {
        v.reviewers = reviewers
            .query_map(params![team_id, v.review.id], |r| {
                Ok(ReviewerRow { member_id: r.get(0)?, verdict: r.get(1)?, name_sealed: r.get(2)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        v.revisions =
            revisions.query_map(params![team_id, v.review.id], revision_row)?.collect::<rusqlite::Result<_>>()?;
    }
    reviews.retain(|v| {
        filter.author_id.as_ref().is_none_or(|a| *a == v.review.author_id)
            && filter.reviewer_id.as_ref().is_none_or(|m| v.reviewers.iter().any(|w| w.member_id == *m))
            && (!filter.open_only || !v.review.closed)
    });
    Ok(reviews)
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<audit::Entry> {
    Ok(audit::Entry {
        seq: r.get(0)?,
        time: r.get(1)?,
        team_id: r.get(2)?,
        actor_id: r.get(3)?,
        action: r.get(4)?,
        target_id: r.get(5)?,
        detail: r.get(6)?,
        hash: r.get(7)?,
    })
}

impl Storage for SqliteStorage {
    fn commit(&self, batch: Batch) -> DbFuture<'_, Committed> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let failed = |cause: String| DbError::Backend {
                path: inner.data_path.clone(),
                context: "could not save a change".into(),
                cause,
            };
            let (done, mut outcome) = tokio::sync::oneshot::channel();
            inner.pending.lock().unwrap_or_else(|p| p.into_inner()).push((batch, done));
            let turn = inner.write_turn.clone().acquire_owned().await.map_err(|e| failed(e.to_string()))?;
            // The writer before us may have committed ours with its own.
            if let Ok(result) = outcome.try_recv() {
                return result;
            }
            let jobs = std::mem::take(&mut *inner.pending.lock().unwrap_or_else(|p| p.into_inner()));
            let writer = inner.clone();
            tokio::task::spawn_blocking(move || {
                writer.commit_group(jobs);
                drop(turn);
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
            outcome.await.map_err(|e| failed(e.to_string()))?
        })
    }

    fn team(&self, id: &str) -> DbFuture<'_, Option<TeamRow>> {
        let id = id.to_owned();
        self.read("could not read a team", move |tx| {
            row(tx, &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = ?1"), [id], team_row).optional()
        })
    }

    fn team_by_name_mac(&self, mac: &[u8]) -> DbFuture<'_, Option<TeamRow>> {
        let mac = mac.to_vec();
        self.read("could not look a team up", move |tx| {
            row(tx, &format!("SELECT {TEAM_COLUMNS} FROM teams WHERE name_mac = ?1"), [mac], team_row).optional()
        })
    }

    fn team_key(&self, team_id: &str) -> DbFuture<'_, Option<Vec<u8>>> {
        let team_id = team_id.to_owned();
        self.run(Turn::Write, move |inner| {
            inner.keys("could not read a team key", |c| {
                c.query_row("SELECT wrapped FROM team_keys WHERE team_id = ?1", [team_id], |r| r.get(0)).optional()
            })
        })
    }

    fn put_team_key(&self, team_id: &str, wrapped: Vec<u8>, now: i64) -> DbFuture<'_, ()> {
        let team_id = team_id.to_owned();
        self.run(Turn::Write, move |inner| {
            inner.keys("could not save a team key", |c| {
                c.execute(
                    "INSERT INTO team_keys (team_id, wrapped, created) VALUES (?1, ?2, ?3)",
                    params![team_id, wrapped, now],
                )
                .map(drop)
            })
        })
    }

    fn delete_team_key(&self, team_id: &str) -> DbFuture<'_, ()> {
        let team_id = team_id.to_owned();
        self.run(Turn::Write, move |inner| {
            inner.keys("could not destroy a team key", |c| {
                c.execute("DELETE FROM team_keys WHERE team_id = ?1", [team_id]).map(drop)
            })
        })
    }

    fn sweep_orphan_keys(&self, before: i64) -> DbFuture<'_, usize> {
        self.run(Turn::Write, move |inner| {
            let candidates: Vec<String> = inner.keys("could not list team keys", |c| {
                let mut stmt = c.prepare("SELECT team_id FROM team_keys WHERE created < ?1")?;
                stmt.query_map([before], |r| r.get(0))?.collect()
            })?;
            let mut swept = 0;
            for team_id in candidates {
                let id = team_id.clone();
                let present = inner
                    .read("could not read a team", move |tx| exists(tx, "SELECT 1 FROM teams WHERE id = ?1", [id]))?;
                if !present {
                    swept += inner.keys("could not destroy a team key", |c| {
                        c.execute("DELETE FROM team_keys WHERE team_id = ?1", [team_id])
                    })?;
                }
            }
            Ok(swept)
        })
    }

    fn invite(&self, hash: &[u8]) -> DbFuture<'_, Option<InviteRow>> {
        let hash = hash.to_vec();
        self.read("could not read an invite", move |tx| {
            row(tx, "SELECT hash, team_id, role, created, expires, used FROM invites WHERE hash = ?1", [hash], |r| {
                Ok(InviteRow {
                    hash: r.get(0)?,
                    team_id: r.get(1)?,
                    role: role(r.get(2)?)?,
                    created: r.get(3)?,
                    expires: r.get(4)?,
                    used: r.get(5)?,
                })
            })
            .optional()
        })
    }

    fn auth(&self, token_hash: &[u8]) -> DbFuture<'_, Option<AuthRow>> {
        let hash = token_hash.to_vec();
        self.read("could not look a token up", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS}, m.role, m.name_sealed FROM tokens t
                 LEFT JOIN members m ON m.team_id = t.team_id AND m.id = t.member_id WHERE t.hash = ?1"
            ))?
            .query_row([hash], |r| {
                let role = r.get::<_, Option<String>>(8)?.map(role).transpose()?;
                Ok(AuthRow { token: token_row(r)?, role, name_sealed: r.get(9)? })
            })
            .optional()
        })
    }

    fn touch_token(&self, token_id: &str, now: i64) -> DbFuture<'_, ()> {
        let token_id = token_id.to_owned();
        self.run(Turn::Write, move |inner| {
            inner.write("could not record a token's use", |tx| {
                exec(tx, "UPDATE tokens SET last_used = ?2 WHERE id = ?1", params![token_id, now])
                    .map(drop)
                    .map_err(inner.sql("could not record a token's use"))
            })
        })
    }

    fn tokens(&self, team_id: &str, member_id: Option<&str>) -> DbFuture<'_, Vec<TokenRow>> {
        let (team_id, member_id) = (team_id.to_owned(), member_id.map(str::to_owned));
        self.read("could not list tokens", move |tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.team_id = ?1 AND (?2 IS NULL OR t.member_id = ?2)
                 ORDER BY t.created, t.id"
            ))?;
            stmt.query_map(params![team_id, member_id], token_row)?.collect()
        })
    }

    fn token(&self, team_id: &str, token_id: &str) -> DbFuture<'_, Option<TokenRow>> {
        let (team_id, token_id) = (team_id.to_owned(), token_id.to_owned());
        self.read("could not read a token", move |tx| {
            row(
                tx,
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.team_id = ?1 AND t.id = ?2"),
                params![team_id, token_id],
                token_row,
            )
            .optional()
        })
    }

    fn members(&self, team_id: &str) -> DbFuture<'_, Vec<MemberRow>> {
        let team_id = team_id.to_owned();
        self.read("could not list members", move |tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members WHERE team_id = ?1 ORDER BY joined, id"
            ))?;
            stmt.query_map([team_id], member_row)?.collect()
        })
    }

    fn member(&self, team_id: &str, member_id: &str) -> DbFuture<'_, Option<MemberRow>> {
        let (team_id, member_id) = (team_id.to_owned(), member_id.to_owned());
        self.read("could not read a member", move |tx| {
            tx.prepare_cached(&format!("SELECT {MEMBER_COLUMNS} FROM members WHERE team_id = ?1 AND id = ?2"))?
                .query_row(params![team_id, member_id], member_row)
                .optional()
        })
    }

    fn repos(&self, team_id: &str) -> DbFuture<'_, Vec<RepoRow>> {
        let team_id = team_id.to_owned();
        self.read("could not list repositories", move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!("SELECT {REPO_COLUMNS} FROM repos WHERE team_id = ?1 ORDER BY created, id"))?;
            stmt.query_map([team_id], repo_row)?.collect()
        })
    }

    fn repo(&self, team_id: &str, repo_id: &str) -> DbFuture<'_, Option<RepoRow>> {
        let (team_id, repo_id) = (team_id.to_owned(), repo_id.to_owned());
        self.read("could not read a repository", move |tx| {
            tx.prepare_cached(&format!("SELECT {REPO_COLUMNS} FROM repos WHERE team_id = ?1 AND id = ?2"))?
                .query_row(params![team_id, repo_id], repo_row)
                .optional()
        })
    }

    fn threads(&self, team_id: &str, filter: ThreadFilter) -> DbFuture<'_, Vec<Thread>> {
        let team_id = team_id.to_owned();
        self.read("could not read codemarks", move |tx| read_threads(tx, &team_id, &filter))
    }

    fn replies_by(&self, team_id: &str, author_id: &str) -> DbFuture<'_, Vec<(ReplyRow, Option<Vec<u8>>)>> {
        let (team_id, author_id) = (team_id.to_owned(), author_id.to_owned());
        self.read("could not read replies", move |tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "{REPLY_SELECT} WHERE p.team_id = ?1 AND p.author_id = ?2 ORDER BY p.created, p.id"
            ))?;
            stmt.query_map(params![team_id, author_id], reply_row)?.collect()
        })
    }

    fn reviews(&self, team_id: &str, filter: ReviewFilter) -> DbFuture<'_, Vec<ReviewRecord>> {
        let team_id = team_id.to_owned();
        self.read("could not read reviews", move |tx| read_reviews(tx, &team_id, &filter))
    }

    fn revision(&self, team_id: &str, review_id: &str, number: u32) -> DbFuture<'_, Option<(RevisionRow, Vec<u8>)>> {
        let (team_id, review_id) = (team_id.to_owned(), review_id.to_owned());
        self.read("could not read a revision", move |tx| {
            row(
                tx,
                &format!(
                    "SELECT {REVISION_COLUMNS}, files_sealed FROM revisions
                     WHERE team_id = ?1 AND review_id = ?2 AND number = ?3"
                ),
                params![team_id, review_id, number],
                |r| Ok((revision_row(r)?, r.get(6)?)),
            )
            .optional()
        })
    }

    fn review_comments(&self, team_id: &str, review_id: &str) -> DbFuture<'_, Vec<String>> {
        let (team_id, review_id) = (team_id.to_owned(), review_id.to_owned());
        self.read("could not read a review's comments", move |tx| review_comment_ids(tx, &team_id, &review_id))
    }

    fn events(&self, team_id: &str, after: i64, limit: usize) -> DbFuture<'_, Vec<EventRow>> {
        let team_id = team_id.to_owned();
        self.read("could not read events", move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, kind, codemark_id, deleted FROM events WHERE team_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            stmt.query_map(params![team_id, after, limit as i64], |r| {
                let kind: String = r.get(1)?;
                let subject = Subject::parse(&kind).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        format!("an event of unknown kind `{kind}`").into(),
                    )
                })?;
                Ok(EventRow { seq: r.get(0)?, subject, id: r.get(2)?, deleted: r.get(3)? })
            })?
            .collect()
        })
    }

    fn idempotency(&self, team_id: &str, member_id: &str, key: &str) -> DbFuture<'_, Option<IdempotencyRow>> {
        let (team_id, member_id, key) = (team_id.to_owned(), member_id.to_owned(), key.to_owned());
        self.read("could not read an idempotency key", move |tx| {
            tx.prepare_cached(
                "SELECT team_id, member_id, key, route, status, resource_id, created FROM idempotency
                 WHERE team_id = ?1 AND member_id = ?2 AND key = ?3",
            )?
            .query_row(params![team_id, member_id, key], |r| {
                Ok(IdempotencyRow {
                    team_id: r.get(0)?,
                    member_id: r.get(1)?,
                    key: r.get(2)?,
                    route: r.get(3)?,
                    status: r.get(4)?,
                    resource_id: r.get(5)?,
                    created: r.get(6)?,
                })
            })
            .optional()
        })
    }

    fn audit(&self, team_id: Option<&str>, after: i64, limit: usize) -> DbFuture<'_, Vec<audit::Entry>> {
        let team_id = team_id.map(str::to_owned);
        self.read("could not read the audit log", move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, time, team_id, actor_id, action, target_id, detail, hash FROM audit
                 WHERE (?1 IS NULL OR team_id = ?1) AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            stmt.query_map(params![team_id, after, limit as i64], audit_row)?.collect()
        })
    }

    fn verify_audit(&self) -> DbFuture<'_, audit::Verdict> {
        self.read("could not read the audit log", move |tx| {
            let mut stmt = tx.prepare(
                "SELECT seq, time, team_id, actor_id, action, target_id, detail, hash FROM audit ORDER BY seq",
            )?;
            let mut failure = None;
            let entries = stmt.query_map([], audit_row)?.map_while(|r| r.map_err(|e| failure = Some(e)).ok());
            let verdict = audit::verify(entries);
            match failure {
                Some(e) => Err(e),
                None => Ok(verdict),
            }
        })
    }

    fn ping(&self) -> DbFuture<'_, ()> {
        self.read("the database does not answer", |tx| row(tx, "SELECT 1", [], |_| Ok(())))
    }

    fn team_keys(&self) -> DbFuture<'_, Vec<(String, Vec<u8>)>> {
        self.run(Turn::Write, move |inner| {
            inner.keys("could not list team keys", |c| {
                let mut stmt = c.prepare("SELECT team_id, wrapped FROM team_keys ORDER BY team_id")?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
            })
        })
    }

    fn replace_team_keys(&self, keys: Vec<(String, Vec<u8>, Vec<u8>)>) -> DbFuture<'_, ()> {
        self.run(Turn::Write, move |inner| {
            let conn = inner.keys.lock().unwrap_or_else(|p| p.into_inner());
            let err = |e: rusqlite::Error| DbError::Backend {
                path: inner.keys_path.clone(),
                context: "could not replace team keys".into(),
                cause: e.to_string(),
            };
            let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).map_err(err)?;
            for (team_id, old, new) in keys {
                let changed = tx
                    .execute(
                        "UPDATE team_keys SET wrapped = ?3 WHERE team_id = ?1 AND wrapped = ?2",
                        params![team_id, old, new],
                    )
                    .map_err(err)?;
                if changed != 1 {
                    return Err(DbError::Changed);
                }
            }
            tx.commit().map_err(err)
        })
    }

    fn stats(&self) -> DbFuture<'_, Stats> {
        self.read("could not count rows", move |tx| {
            row(
                tx,
                "SELECT (SELECT count(*) FROM teams), (SELECT count(*) FROM members),
                        (SELECT count(*) FROM codemarks), (SELECT count(*) FROM reviews),
                        (SELECT coalesce(max(seq), 0) FROM events)",
                [],
                |r| {
                    Ok(Stats {
                        teams: r.get(0)?,
                        members: r.get(1)?,
                        codemarks: r.get(2)?,
                        reviews: r.get(3)?,
                        events: r.get(4)?,
                    })
                },
            )
        })
    }
}

/// Opens a writable connection to one file, checks it is ours and not newer, sets it up and
/// runs the migrations it lacks.
fn open_file(path: &Path, app_id: i64, migrations: &[&str], journal: &str) -> Result<Connection, DbError> {
    let err = |context: &str| {
        let context = context.to_string();
        move |e: rusqlite::Error| DbError::Backend {
            path: path.to_path_buf(),
            context: context.clone(),
            cause: e.to_string(),
        }
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err("could not open the file"))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err("could not set up the file"))?;
    let (found_id, version, objects): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_schema)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => {
                DbError::NotOurs { path: path.to_path_buf(), detail: "it is not an SQLite database".into() }
            }
            _ => err("could not read the file's header")(e),
        })?;
    if found_id != app_id && (found_id != 0 || objects > 0) {
        return Err(DbError::NotOurs { path: path.to_path_buf(), detail: "it is another program's database".into() });
    }
    let known = migrations.len() as i64;
    if version > known {
        return Err(DbError::NewerSchema { path: path.to_path_buf(), found: version, known });
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", journal, |r| r.get(0))
        .map_err(err("could not set up the file"))?;
    if !mode.eq_ignore_ascii_case(journal) {
        tracing::warn!("{} runs in `{mode}` journal mode, not {journal}", path.display());
    }
    configure(&conn).map_err(err("could not set up the file"))?;
    if version < known {
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)
            .map_err(err("could not lock the file"))?;
        let found: i64 =
            tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err("could not read the version"))?;
        if found > known {
            return Err(DbError::NewerSchema { path: path.to_path_buf(), found, known });
        }
        for (i, step) in migrations.iter().enumerate().skip(found.max(0) as usize) {
            tx.execute_batch(step).map_err(err(&format!("could not upgrade the schema to version {}", i + 1)))?;
        }
        tx.pragma_update(None, "application_id", app_id).map_err(err("could not mark the file"))?;
        tx.pragma_update(None, "user_version", known).map_err(err("could not record the version"))?;
        tx.commit().map_err(err("could not save the upgrade"))?;
        if found < known {
            tracing::info!("upgraded {} from schema version {found} to {known}", path.display());
        }
    }
    Ok(conn)
}

/// NORMAL sync (durable at checkpoints with WAL), foreign keys, and deleted content overwritten.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    settle_plans(conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "secure_delete", true)
}

fn open_reader(path: &Path) -> Result<Connection, DbError> {
    let err = |e: rusqlite::Error| DbError::Backend {
        path: path.to_path_buf(),
        context: "could not open a reader".into(),
        cause: e.to_string(),
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    settle_plans(&conn).map_err(err)?;
    Ok(conn)
}

/// Keeps prepared statements prepared. Without the query planner stability guarantee, SQLite
/// (built with STAT4, as rusqlite bundles it) marks parameters that constant propagation touches
/// (`team_id = ?1` joined to another table's `team_id`) as "re-plan when rebound", so every
/// cached statement was parsed and planned again on each use: a fifth of the server's CPU.
fn settle_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(drop)
}

/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies committed pages from the WAL into `server.db` every [`CHECKPOINT_EVERY`] on its own
/// connection (PASSIVE: it never waits for readers or the writer), so no commit pays for a
/// checkpoint. Stops when the storage is dropped.
fn checkpoint_in_background(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let path = inner.data_path.clone();
    let spawned = std::thread::Builder::new().name("marginalia-checkpoint".into()).spawn(move || {
        let conn = match Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) {
            Ok(c) => c,
            Err(e) => return tracing::warn!("no background checkpoints for {}: {e}", path.display()),
        };
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            if weak.strong_count() == 0 {
                return;
            }
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!("a checkpoint of {} failed: {e}", path.display());
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no background checkpoints: {e}");
    }
}

/// Turns off SQLite's memory statistics, whose global mutex every allocation takes: with
/// several connections busy at once it is the most contended lock of the server. Call it once,
/// before anything in the process uses SQLite (it does nothing after that).
pub fn tune_process() {
    // SAFETY: sqlite3_config must not run concurrently with any other SQLite call; the caller
    // runs this before the process starts threads that use SQLite. Called too late, SQLite
    // refuses with SQLITE_MISUSE and changes nothing.
    let rc = unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::debug!("SQLite memory statistics stay on (sqlite3_config answered {rc})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data file as version 1 of the schema left it: a team with a codemark and its events.
    fn version_1_file(dir: &Path) {
        let c = Connection::open(dir.join(DATA_FILE)).unwrap();
        c.execute_batch(DATA_MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "application_id", DATA_APP_ID).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute_batch(
            "INSERT INTO teams VALUES ('t', x'00', x'01', 1);
             INSERT INTO repos VALUES ('t', 'r', x'02', x'03', 1);
             INSERT INTO codemarks VALUES ('t', 'c', 'r', 'comment', 'open', 'm', NULL, x'04', x'05', 1, 1);
             INSERT INTO events (team_id, codemark_id, deleted) VALUES ('t', 'c', 0), ('t', 'gone', 1);
             DELETE FROM events WHERE seq = 1;
             INSERT INTO events (team_id, codemark_id, deleted) VALUES ('t', 'c', 0);",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_version_1_file_is_upgraded_in_place_and_its_cursors_still_point_where_they_did() {
        let dir = tempfile::tempdir().unwrap();
        version_1_file(dir.path());
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let events = storage.events("t", 0, 10).await.unwrap();
        let seen: Vec<(i64, Subject, &str, bool)> =
            events.iter().map(|e| (e.seq, e.subject, e.id.as_str(), e.deleted)).collect();
        assert_eq!(seen, [(2, Subject::Codemark, "gone", true), (3, Subject::Codemark, "c", false)]);
        let threads = storage.threads("t", ThreadFilter::default()).await.unwrap();
        assert_eq!(threads.len(), 1);
        assert_eq!((threads[0].codemark.review_id.as_ref(), threads[0].codemark.review_sealed.as_ref()), (None, None));

        // The next event continues the sequence (AUTOINCREMENT survives the upgrade).
        let draft =
            super::super::EventDraft { team_id: "t".into(), subject: Subject::Review, id: "v".into(), deleted: true };
        let committed = storage.commit(Batch { events: vec![draft], ..Batch::default() }).await.unwrap();
        assert_eq!(committed.events, [("t".to_string(), 4)]);
        let after = storage.events("t", 3, 10).await.unwrap();
        assert_eq!((after[0].subject, after[0].id.as_str()), (Subject::Review, "v"));
        drop(storage);

        let c = Connection::open(dir.path().join(DATA_FILE)).unwrap();
        let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, DATA_MIGRATIONS.len() as i64);
    }
}
