//! The PostgreSQL schemas and their migrations. Each database records the versions it has in a
//! table of its own (`marginalia_schema` for the data, `marginalia_keys_schema` for the keys);
//! the steps run in one transaction that first takes a transaction-level advisory lock, so
//! several server processes starting together run each step once (the others wait, then find it
//! done). A database with a version this build does not know is refused and left untouched.

use deadpool_postgres::Object;

use super::super::DbError;

/// One step per entry, append only: a released step is never edited.
pub const DATA: &[&str] = &[
    // 1: what SQLite's versions 1 and 2 hold, with event sequence numbers per team (see
    //    `event_counters`) and rate-limit buckets shared by every process.
    "CREATE TABLE teams (
        id          TEXT PRIMARY KEY,
        name_sealed BYTEA NOT NULL,
        name_mac    BYTEA NOT NULL UNIQUE, -- HMAC of the name: `serve invite --team` finds it
        created     BIGINT NOT NULL        -- ms since the Unix epoch, as every time here
    );

    CREATE TABLE members (
        team_id      TEXT NOT NULL REFERENCES teams(id),
        id           TEXT NOT NULL,
        name_sealed  BYTEA NOT NULL,
        email_sealed BYTEA,
        role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        joined       BIGINT NOT NULL,
        PRIMARY KEY (team_id, id)
    );

    CREATE TABLE tokens (
        id           TEXT PRIMARY KEY,
        team_id      TEXT NOT NULL REFERENCES teams(id),
        member_id    TEXT NOT NULL,
        hash         BYTEA NOT NULL UNIQUE, -- SHA-256 of the token; the token is never stored
        label_sealed BYTEA NOT NULL,
        created      BIGINT NOT NULL,
        last_used    BIGINT,
        revoked      BIGINT
    );
    CREATE INDEX tokens_member ON tokens(team_id, member_id);

    CREATE TABLE invites (
        hash    BYTEA PRIMARY KEY, -- SHA-256 of the code
        team_id TEXT NOT NULL REFERENCES teams(id),
        role    TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        created BIGINT NOT NULL,
        expires BIGINT NOT NULL,
        used    BIGINT
    );
    CREATE INDEX invites_team ON invites(team_id);

    CREATE TABLE repos (
        team_id      TEXT NOT NULL REFERENCES teams(id),
        id           TEXT NOT NULL, -- derived from the HMAC of the key under the team's key
        key_sealed   BYTEA NOT NULL,
        roots_sealed BYTEA NOT NULL,
        created      BIGINT NOT NULL,
        PRIMARY KEY (team_id, id)
    );

    CREATE TABLE codemarks (
        team_id        TEXT NOT NULL,
        id             TEXT NOT NULL,
        repo_id        TEXT NOT NULL,
        kind           TEXT NOT NULL,
        status         TEXT NOT NULL,
        author_id      TEXT NOT NULL,
        title_sealed   BYTEA,
        body_sealed    BYTEA NOT NULL,
        anchors_sealed BYTEA NOT NULL, -- the anchors list, with snippets, as one sealed JSON value
        created        BIGINT NOT NULL,
        updated        BIGINT NOT NULL,
        review_id      TEXT,           -- a review comment's review, in the clear
        review_sealed  BYTEA,          -- a review comment's whole link, sealed
        PRIMARY KEY (team_id, id),
        FOREIGN KEY (team_id, repo_id) REFERENCES repos(team_id, id)
    );
    CREATE INDEX codemarks_repo ON codemarks(team_id, repo_id, created);
    CREATE INDEX codemarks_author ON codemarks(team_id, author_id);
    CREATE INDEX codemarks_review ON codemarks(team_id, review_id) WHERE review_id IS NOT NULL;

    CREATE TABLE replies (
        team_id     TEXT NOT NULL,
        id          TEXT NOT NULL,
        codemark_id TEXT NOT NULL,
        author_id   TEXT NOT NULL,
        body_sealed BYTEA NOT NULL,
        created     BIGINT NOT NULL,
        PRIMARY KEY (team_id, id),
        FOREIGN KEY (team_id, codemark_id) REFERENCES codemarks(team_id, id) ON DELETE CASCADE
    );
    CREATE INDEX replies_codemark ON replies(team_id, codemark_id, created);
    CREATE INDEX replies_author ON replies(team_id, author_id);

    CREATE TABLE reviews (
        team_id            TEXT NOT NULL,
        id                 TEXT NOT NULL,
        repo_id            TEXT NOT NULL,
        author_id          TEXT NOT NULL,
        title_sealed       BYTEA NOT NULL,
        description_sealed BYTEA NOT NULL,
        closed             BOOLEAN NOT NULL,
        created            BIGINT NOT NULL,
        updated            BIGINT NOT NULL,
        PRIMARY KEY (team_id, id),
        FOREIGN KEY (team_id, repo_id) REFERENCES repos(team_id, id)
    );
    CREATE INDEX reviews_created ON reviews(team_id, created);
    CREATE INDEX reviews_author ON reviews(team_id, author_id);

    CREATE TABLE revisions (
        team_id        TEXT NOT NULL,
        review_id      TEXT NOT NULL,
        number         INTEGER NOT NULL, -- 1, 2, ... within the review
        id             TEXT NOT NULL,
        created        BIGINT NOT NULL,
        summary_sealed BYTEA NOT NULL,   -- base, base note, head, files listed with line counts
        files_sealed   BYTEA NOT NULL,   -- the files with their patches, one sealed JSON value
        PRIMARY KEY (team_id, review_id, number),
        UNIQUE (team_id, id),
        FOREIGN KEY (team_id, review_id) REFERENCES reviews(team_id, id) ON DELETE CASCADE
    );

    CREATE TABLE reviewers (
        team_id   TEXT NOT NULL,
        review_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        position  INTEGER NOT NULL,
        verdict   TEXT NOT NULL CHECK (verdict IN ('pending', 'approved', 'changes_requested')),
        PRIMARY KEY (team_id, review_id, member_id),
        FOREIGN KEY (team_id, review_id) REFERENCES reviews(team_id, id) ON DELETE CASCADE
    );
    CREATE INDEX reviewers_member ON reviewers(team_id, member_id);

    -- Each team's last event sequence number. A transaction that writes events takes the next
    -- numbers by updating this row, last thing before it commits, and holds the row until it
    -- has committed: a team's events therefore become visible in sequence order, and a reader
    -- that has seen number N can never later find a smaller one appear (no gaps skipped).
    CREATE TABLE event_counters (
        team_id  TEXT PRIMARY KEY,
        last_seq BIGINT NOT NULL
    );

    -- Pointers to codemarks and reviews that changed; (team, seq) is a client's cursor.
    CREATE TABLE events (
        team_id    TEXT NOT NULL,
        seq        BIGINT NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('codemark', 'review')),
        subject_id TEXT NOT NULL,
        deleted    BOOLEAN NOT NULL,
        PRIMARY KEY (team_id, seq)
    );

    -- The primary key is what makes two processes racing on one key do the request once.
    CREATE TABLE idempotency (
        team_id     TEXT NOT NULL,
        member_id   TEXT NOT NULL,
        key         TEXT NOT NULL,
        route       TEXT NOT NULL,
        status      INTEGER NOT NULL,
        resource_id TEXT,
        created     BIGINT NOT NULL,
        PRIMARY KEY (team_id, member_id, key)
    );

    CREATE TABLE audit (
        seq       BIGINT PRIMARY KEY,
        time      BIGINT NOT NULL,
        team_id   TEXT NOT NULL,
        actor_id  TEXT NOT NULL,
        action    TEXT NOT NULL,
        target_id TEXT,
        detail    TEXT NOT NULL,
        hash      BYTEA NOT NULL -- SHA-256(previous hash || canonical entry)
    );
    CREATE INDEX audit_team ON audit(team_id, seq);
    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
    CREATE TRIGGER audit_append_only_update BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

    -- A token bucket per token, shared by every server process. Unlogged: written on every
    -- request, worthless after a crash (PostgreSQL empties it then), never worth a WAL record.
    CREATE UNLOGGED TABLE rate_buckets (
        token_id TEXT PRIMARY KEY,
        tokens   DOUBLE PRECISION NOT NULL,
        at       DOUBLE PRECISION NOT NULL, -- ms since the epoch, on the database's clock
        granted  BOOLEAN NOT NULL           -- whether the last request took a token
    );",
];

/// The keys database's steps. Its table has a name of its own, so it can share the data's
/// database (the default) or live in another one.
pub const KEYS: &[&str] = &[
    // 1: one wrapped data key per team.
    "CREATE TABLE marginalia_team_keys (
        team_id TEXT PRIMARY KEY,
        wrapped BYTEA NOT NULL, -- the team's data key sealed under the master key
        created BIGINT NOT NULL
    );",
];

/// The advisory lock keys: two 32-bit halves, "MRGN" and what is locked.
pub const LOCK_SPACE: i32 = 0x4D52_474E;
pub const LOCK_DATA_MIGRATIONS: i32 = 1;
pub const LOCK_KEYS_MIGRATIONS: i32 = 2;
pub const LOCK_AUDIT: i32 = 3;

/// Brings one database's schema up to date: `table` records the versions applied.
pub async fn migrate(client: &mut Object, place: &str, table: &str, lock: i32, steps: &[&str]) -> Result<(), DbError> {
    let err = |context: String| {
        let place = place.to_string();
        move |e: tokio_postgres::Error| super::failure(&place, &context, e)
    };
    let tx = client.transaction().await.map_err(err("could not begin the schema upgrade".into()))?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_SPACE, &lock])
        .await
        .map_err(err("could not lock the schema".into()))?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)"
    ))
    .await
    .map_err(err("could not record schema versions".into()))?;
    let found: i32 = tx
        .query_one(&format!("SELECT coalesce(max(version), 0) FROM {table}"), &[])
        .await
        .map_err(err("could not read the schema version".into()))?
        .get(0);
    let known = steps.len() as i32;
    if found > known {
        return Err(DbError::NewerSchema { path: place.into(), found: i64::from(found), known: i64::from(known) });
    }
    for (i, step) in steps.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(step).await.map_err(err(format!("could not upgrade the schema to version {version}")))?;
        tx.execute(
            &format!("INSERT INTO {table} (version, applied) VALUES ($1, $2)"),
            &[&version, &crate::server::service::now_ms()],
        )
        .await
        .map_err(err("could not record the schema version".into()))?;
    }
    tx.commit().await.map_err(err("could not save the schema upgrade".into()))?;
    if found < known {
        tracing::info!("upgraded {place} ({table}) from schema version {found} to {known}");
    }
    Ok(())
}
