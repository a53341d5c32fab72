//! The store's tables and how a file gets them: the checks made before a file is touched, the
//! connection settings, and versioned migrations tracked by `PRAGMA user_version`.

use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::StoreError;

/// Marks a file as a marginalia store (`PRAGMA application_id`, the bytes "MRGN"), so the store
/// never adds its tables to another program's database.
pub(super) const APPLICATION_ID: i64 = 0x4D52_474E;

/// The schema, one step per entry: entry `i` takes a file from version `i` to `i + 1`.
///
/// Append only: a released step is never edited, since files in the wild have run it. Later
/// issues (the outbox, the egress ledger) arrive as new entries.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: codemarks, their anchors and threads, and the remembered locations of anchors.
    "CREATE TABLE codemarks (
        id      TEXT PRIMARY KEY NOT NULL,
        repo    TEXT NOT NULL,
        kind    TEXT NOT NULL,
        title   TEXT,
        body    TEXT NOT NULL,
        author  TEXT NOT NULL,
        status  TEXT NOT NULL,
        created INTEGER NOT NULL, -- ms since the Unix epoch
        updated INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX codemarks_repo ON codemarks(repo);

    CREATE TABLE anchors (
        id          TEXT PRIMARY KEY NOT NULL,
        codemark_id TEXT NOT NULL REFERENCES codemarks(id) ON DELETE CASCADE,
        ord         INTEGER NOT NULL, -- position in the codemark's list of anchors
        commit_id   TEXT NOT NULL,
        path        TEXT NOT NULL,
        start_line  INTEGER NOT NULL, -- 1-based, inclusive
        end_line    INTEGER NOT NULL,
        text        TEXT,
        before_ctx  TEXT NOT NULL, -- JSON array of lines
        after_ctx   TEXT NOT NULL,
        pending     INTEGER NOT NULL -- 0 or 1
    ) STRICT;
    CREATE INDEX anchors_codemark ON anchors(codemark_id, ord);

    CREATE TABLE replies (
        id          TEXT PRIMARY KEY NOT NULL,
        codemark_id TEXT NOT NULL REFERENCES codemarks(id) ON DELETE CASCADE,
        author      TEXT NOT NULL,
        body        TEXT NOT NULL,
        created     INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX replies_codemark ON replies(codemark_id, created);

    -- Where an anchor is in one version of a file (a git blob): a cache, safe to empty.
    CREATE TABLE locations (
        anchor_id  TEXT NOT NULL REFERENCES anchors(id) ON DELETE CASCADE,
        blob       TEXT NOT NULL,
        status     TEXT NOT NULL,
        path       TEXT NOT NULL,
        start_line INTEGER NOT NULL,
        end_line   INTEGER NOT NULL,
        PRIMARY KEY (anchor_id, blob)
    ) STRICT, WITHOUT ROWID;",
    // 2: a team server: which codemarks are shared with it, the outbox of changes waiting to
    // reach it, sync cursors and other settings, and the egress ledger.
    "ALTER TABLE codemarks ADD COLUMN server TEXT; -- the team server it is shared with; NULL: only here
    ALTER TABLE codemarks ADD COLUMN review TEXT; -- JSON {review, revision, path, side}: a review comment

    CREATE TABLE settings (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;

    -- Changes waiting for the server, oldest first; each row is one request, sent with its key.
    CREATE TABLE outbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        key         TEXT NOT NULL UNIQUE, -- the Idempotency-Key: the server does it once
        server      TEXT NOT NULL,
        codemark_id TEXT NOT NULL,
        op          TEXT NOT NULL,
        method      TEXT NOT NULL,
        path        TEXT NOT NULL,
        body        TEXT,                 -- JSON
        code_bytes  INTEGER NOT NULL,     -- bytes of code in the body (snippets)
        created     INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        held        TEXT,                 -- why it waits for the user; NULL: free to go
        note        TEXT                  -- for the ledger, when it goes (an override)
    ) STRICT;
    CREATE INDEX outbox_codemark ON outbox(codemark_id);

    -- Every request that left the machine, for the user to read (`marginalia egress`).
    CREATE TABLE egress (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        destination TEXT NOT NULL,     -- scheme://host:port
        method      TEXT NOT NULL,
        endpoint    TEXT NOT NULL,     -- the path, without the query's values
        subject     TEXT,              -- the codemark, review or pull request it was about
        code_bytes  INTEGER NOT NULL,
        body_bytes  INTEGER NOT NULL,
        status      INTEGER,           -- the answer's HTTP status; NULL: no answer
        note        TEXT
    ) STRICT;

    -- A counter of changes to codemarks, their anchors and threads (not to caches, the outbox
    -- or the ledger), so a long-running editor can tell a change worth placing again.
    CREATE TABLE changes (what TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL) STRICT;
    INSERT INTO changes VALUES ('codemarks', 0);
    CREATE TRIGGER codemarks_i AFTER INSERT ON codemarks BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER codemarks_u AFTER UPDATE ON codemarks BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER codemarks_d AFTER DELETE ON codemarks BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER anchors_i AFTER INSERT ON anchors BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER anchors_u AFTER UPDATE ON anchors BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER anchors_d AFTER DELETE ON anchors BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER replies_i AFTER INSERT ON replies BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER replies_u AFTER UPDATE ON replies BEGIN UPDATE changes SET n = n + 1; END;
    CREATE TRIGGER replies_d AFTER DELETE ON replies BEGIN UPDATE changes SET n = n + 1; END;",
];

/// The schema version this build writes and reads.
pub(super) fn known_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// What a file says about itself before anything is written to it.
pub(super) struct Header {
    pub version: i64,
}

/// Reads the file's identity and refuses files that are not ours or are from a newer build.
/// Only reads: the first read is also what finds out that a file is not a database at all.
pub(super) fn inspect(conn: &Connection, path: &Path) -> Result<Header, StoreError> {
    let err = |e| StoreError::from_sql(path, "could not read the store's header", e);
    let (app_id, version, objects): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_schema)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(err)?;
    if app_id != APPLICATION_ID && (app_id != 0 || objects > 0) {
        let detail = "it is an SQLite database made by another program".to_string();
        return Err(StoreError::Corrupt { path: path.to_path_buf(), detail });
    }
    check_not_newer(path, version)?;
    Ok(Header { version })
}

fn check_not_newer(path: &Path, found: i64) -> Result<(), StoreError> {
    let known = known_version();
    if found > known {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found, known });
    }
    Ok(())
}

/// WAL so readers never wait for the writer, NORMAL sync (safe with WAL, durable at checkpoints),
/// and foreign keys, which SQLite leaves off unless asked on every connection.
pub(super) fn configure_writable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sql(path, "could not set up the store", e);
    let mut mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        mode = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0)).map_err(err)?;
    }
    if !mode.eq_ignore_ascii_case("wal") {
        // Some file systems (network shares) refuse WAL; the rollback journal still works.
        tracing::warn!("the store {} runs in `{mode}` journal mode, not WAL", path.display());
    }
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
    conn.pragma_update(None, "foreign_keys", true).map_err(err)
}

/// Runs the steps the file lacks, all in one `BEGIN IMMEDIATE` transaction. The version is read
/// again once the write lock is held, so when two processes open a new file together the second
/// finds the work done and each step runs once.
pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |context: &'static str| move |e| StoreError::from_sql(path, context, e);
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(err("could not lock the store to upgrade it"))?;
    let found: i64 =
        tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err("could not read the store's version"))?;
    check_not_newer(path, found)?;
    let known = known_version();
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let context = format!("could not upgrade the store to schema version {}", i + 1);
        tx.execute_batch(step).map_err(|e| StoreError::from_sql(path, context, e))?;
    }
    if found < known {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(err("could not mark the store as marginalia's"))?;
        tx.pragma_update(None, "user_version", known).map_err(err("could not record the store's version"))?;
        tracing::info!("upgraded the store {} from schema version {found} to {known}", path.display());
    }
    tx.commit().map_err(err("could not save the store's upgrade"))
}
