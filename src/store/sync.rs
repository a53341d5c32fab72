//! The store's side of a team server: settings (the server, sync cursors, approvals), the
//! outbox of changes waiting to reach the server, and codemarks that arrive from it.
//!
//! A local change and the outbox rows that carry it to the server are written in one
//! transaction, so a crash can never leave one without the other; each row keeps the
//! idempotency key it is sent with every time, so the server does it once.

use rusqlite::{OptionalExtension, Transaction, params};

use super::codemarks::{insert_anchor, insert_reply, json_lines};
use super::{Edit, Store, StoreError};
use crate::codemark::{Codemark, Reply, StoredAnchor};

/// One request waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The `Idempotency-Key` it is sent with, every time.
    pub key: String,
    /// The server's URL.
    pub server: String,
    pub codemark_id: String,
    /// What it does, for people: `create`, `reply`, `edit`, `status`, `anchors`, `delete`.
    pub op: String,
    pub method: String,
    /// The request's path, from `/api/v1`.
    pub path: String,
    /// The JSON body.
    pub body: Option<String>,
    /// Bytes of code in the body (anchored lines and their context).
    pub code_bytes: usize,
    /// Why it waits for the user (a likely secret, say); `None` when it may go.
    pub held: Option<String>,
    /// Recorded in the egress ledger when it goes (the user sent it despite a warning).
    pub note: Option<String>,
}

/// An outbox row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub seq: i64,
    pub out: Outgoing,
    pub created: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// A change that arrived from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
// Short-lived: one page of changes at a time.
#[allow(clippy::large_enum_variant)]
pub enum Incoming {
    /// Created or changed: the codemark as the server has it now.
    Upsert(Codemark),
    Delete(String),
}

impl Store {
    /// A setting's value.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let context = format!("could not read setting `{key}`");
        self.conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(self.sql_err(&context))
    }

    /// Sets a setting, or removes it with `None`.
    pub fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.write(&format!("could not save setting `{key}`"), |tx| {
            set_setting(tx, key, value)?;
            Ok(())
        })
    }

    /// Settings whose keys start with `prefix`, by key.
    pub fn settings_under(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let context = format!("could not read settings `{prefix}*`");
        let err = self.sql_err(&context);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
            .map_err(&err)?;
        let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    /// [`insert`](Store::insert), with the requests that carry it to the server.
    pub fn insert_queued(&self, c: &Codemark, queue: &[Outgoing]) -> Result<(), StoreError> {
        self.write(&format!("could not save codemark {}", c.id), |tx| {
            super::codemarks::insert_codemark(tx, c)?;
            enqueue(tx, queue)
        })
    }

    /// [`add_reply`](Store::add_reply), with the requests that carry it to the server.
    pub fn add_reply_queued(&self, codemark_id: &str, reply: &Reply, queue: &[Outgoing]) -> Result<bool, StoreError> {
        self.write(&format!("could not save a reply to codemark {codemark_id}"), |tx| {
            if !super::codemarks::add_reply(tx, codemark_id, reply)? {
                return Ok(false);
            }
            enqueue(tx, queue)?;
            Ok(true)
        })
    }

    /// [`edit`](Store::edit), with the requests that carry it to the server.
    pub fn edit_queued(&self, id: &str, edit: &Edit, now: i64, queue: &[Outgoing]) -> Result<bool, StoreError> {
        self.write(&format!("could not save changes to codemark {id}"), |tx| {
            if !super::codemarks::edit(tx, id, edit, now)? {
                return Ok(false);
            }
            enqueue(tx, queue)?;
            Ok(true)
        })
    }

    /// [`update_anchor`](Store::update_anchor) for several anchors, with the requests that
    /// carry them to the server.
    pub fn update_anchors_queued(&self, anchors: &[StoredAnchor], queue: &[Outgoing]) -> Result<(), StoreError> {
        self.write("could not save anchors", |tx| {
            for a in anchors {
                super::codemarks::update_anchor(tx, a)?;
            }
            enqueue(tx, queue)
        })
    }

    /// [`delete`](Store::delete), with the requests that tell the server. A codemark whose
    /// creation is still in the outbox never reached the server: its rows there are dropped
    /// and `queue` is not added, so nothing about it ever leaves. `false` when there is no such
    /// codemark.
    pub fn delete_queued(&self, id: &str, queue: &[Outgoing]) -> Result<bool, StoreError> {
        self.write(&format!("could not delete codemark {id}"), |tx| {
            if tx.execute("DELETE FROM codemarks WHERE id = ?1", [id])? == 0 {
                return Ok(false);
            }
            let unsent: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE codemark_id = ?1 AND op = 'create')",
                [id],
                |r| r.get(0),
            )?;
            if unsent {
                tx.execute("DELETE FROM outbox WHERE codemark_id = ?1", [id])?;
            } else {
                enqueue(tx, queue)?;
            }
            Ok(true)
        })
    }

    /// Queues requests that go with no local change (a feedback request lives on the server).
    pub fn enqueue(&self, queue: &[Outgoing]) -> Result<(), StoreError> {
        self.write("could not write to the outbox", |tx| enqueue(tx, queue))
    }

    /// The outbox rows for `server`, oldest first, held ones included.
    pub fn outbox(&self, server: &str) -> Result<Vec<Queued>, StoreError> {
        self.outbox_where("server = ?1", server)
    }

    /// Every outbox row, whatever its server, oldest first.
    pub fn outbox_all(&self) -> Result<Vec<Queued>, StoreError> {
        self.outbox_where("?1 = ?1", "")
    }

    fn outbox_where(&self, condition: &str, value: &str) -> Result<Vec<Queued>, StoreError> {
        let err = self.sql_err("could not read the outbox");
        let sql = format!(
            "SELECT seq, key, server, codemark_id, op, method, path, body, code_bytes, held, created, attempts,
                    last_error, note
             FROM outbox WHERE {condition} ORDER BY seq"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(&err)?;
        let rows = stmt
            .query_map([value], |r| {
                Ok(Queued {
                    seq: r.get(0)?,
                    out: Outgoing {
                        key: r.get(1)?,
                        server: r.get(2)?,
                        codemark_id: r.get(3)?,
                        op: r.get(4)?,
                        method: r.get(5)?,
                        path: r.get(6)?,
                        body: r.get(7)?,
                        code_bytes: r.get::<_, i64>(8)?.max(0) as usize,
                        held: r.get(9)?,
                        note: r.get(13)?,
                    },
                    created: r.get(10)?,
                    attempts: r.get(11)?,
                    last_error: r.get(12)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }

    /// Whether a codemark has changes waiting for the server.
    pub fn has_outgoing(&self, codemark_id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM outbox WHERE codemark_id = ?1)", [codemark_id], |r| r.get(0))
            .map_err(self.sql_err("could not read the outbox"))
    }

    /// The server has done the request: its row goes.
    pub fn outbox_sent(&self, seq: i64) -> Result<(), StoreError> {
        self.write("could not update the outbox", |tx| {
            tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
            Ok(())
        })
    }

    /// A try failed: counted, with why; `hold` keeps it for the user (a refusal that sending
    /// again cannot change).
    pub fn outbox_failed(&self, seq: i64, error: &str, hold: bool) -> Result<(), StoreError> {
        self.write("could not update the outbox", |tx| {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                        held = CASE WHEN ?3 THEN ?2 ELSE held END
                 WHERE seq = ?1",
                params![seq, error, hold],
            )?;
            Ok(())
        })
    }

    /// Lets a held row go, with a new body and its bytes of code when given (the secret
    /// redacted), and a note for the ledger. `false` when there is no such row.
    pub fn outbox_release(
        &self,
        seq: i64,
        body: Option<(&str, usize)>,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.write("could not update the outbox", |tx| {
            let mut n = tx.execute("UPDATE outbox SET held = NULL, note = ?2 WHERE seq = ?1", params![seq, note])?;
            if let Some((b, code)) = body {
                n = tx.execute(
                    "UPDATE outbox SET body = ?2, code_bytes = ?3 WHERE seq = ?1",
                    params![seq, b, code as i64],
                )?;
            }
            Ok(n > 0)
        })
    }

    /// Drops a row: the change stays on this machine. `false` when there is no such row.
    pub fn outbox_drop(&self, seq: i64) -> Result<bool, StoreError> {
        self.write("could not update the outbox", |tx| Ok(tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])? > 0))
    }

    /// Takes changes from `server` and moves its cursor, in one transaction. A codemark with
    /// changes of ours still waiting in the outbox is left as it is here: the server's answer to
    /// those changes brings it back. Returns the repository keys whose codemarks changed.
    pub fn apply_incoming(
        &self,
        server: &str,
        changes: &[Incoming],
        cursor: (&str, &str),
    ) -> Result<Vec<String>, StoreError> {
        self.write("could not save changes from the server", |tx| {
            let mut repos: Vec<String> = Vec::new();
            for change in changes {
                let id = match change {
                    Incoming::Upsert(c) => &c.id,
                    Incoming::Delete(id) => id,
                };
                let waiting: bool =
                    tx.query_row("SELECT EXISTS (SELECT 1 FROM outbox WHERE codemark_id = ?1)", [id], |r| r.get(0))?;
                if waiting {
                    continue;
                }
                let repo = match change {
                    Incoming::Upsert(c) => {
                        upsert_remote(tx, c, server)?;
                        Some(c.repo.clone())
                    }
                    Incoming::Delete(id) => tx
                        .query_row("DELETE FROM codemarks WHERE id = ?1 RETURNING repo", [id], |r| r.get(0))
                        .optional()?,
                };
                if let Some(r) = repo
                    && !repos.contains(&r)
                {
                    repos.push(r);
                }
            }
            set_setting(tx, cursor.0, Some(cursor.1))?;
            Ok(repos)
        })
    }
}

fn set_setting(tx: &Transaction<'_>, key: &str, value: Option<&str>) -> rusqlite::Result<()> {
    match value {
        Some(v) => tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, v],
        )?,
        None => tx.execute("DELETE FROM settings WHERE key = ?1", [key])?,
    };
    Ok(())
}

fn enqueue(tx: &Transaction<'_>, queue: &[Outgoing]) -> rusqlite::Result<()> {
    let now = crate::codemark::now_ms();
    for o in queue {
        tx.prepare_cached(
            "INSERT INTO outbox (key, server, codemark_id, op, method, path, body, code_bytes, held, created, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            o.key,
            o.server,
            o.codemark_id,
            o.op,
            o.method,
            o.path,
            o.body,
            o.code_bytes as i64,
            o.held,
            now,
            o.note
        ])?;
    }
    Ok(())
}

/// Writes a codemark as the server has it over ours: its fields, its anchors (an anchor whose
/// content changed forgets its remembered locations), its thread.
fn upsert_remote(tx: &Transaction<'_>, c: &Codemark, server: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO codemarks (id, repo, kind, title, body, author, status, created, updated, server, review)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (id) DO UPDATE SET repo = excluded.repo, kind = excluded.kind, title = excluded.title,
             body = excluded.body, author = excluded.author, status = excluded.status,
             created = excluded.created, updated = excluded.updated, server = excluded.server,
             review = excluded.review",
    )?
    .execute(params![
        c.id,
        c.repo,
        c.kind.as_str(),
        c.title,
        c.body,
        c.author,
        c.status.as_str(),
        c.created,
        c.updated,
        server,
        super::codemarks::review_json(c)
    ])?;
    let mut keep = Vec::with_capacity(c.anchors.len());
    for (ord, a) in c.anchors.iter().enumerate() {
        keep.push(a.id.clone());
        let x = &a.anchor;
        let (before, after) = (json_lines(&x.before), json_lines(&x.after));
        let same: Option<bool> = tx
            .query_row(
                "SELECT codemark_id = ?2 AND commit_id = ?3 AND path = ?4 AND start_line = ?5 AND end_line = ?6
                        AND text IS ?7 AND before_ctx = ?8 AND after_ctx = ?9 AND pending = ?10
                 FROM anchors WHERE id = ?1",
                params![a.id, c.id, x.commit, x.path, x.lines.start, x.lines.end, x.text, before, after, a.pending],
                |r| r.get(0),
            )
            .optional()?;
        match same {
            Some(true) => {
                tx.execute("UPDATE anchors SET ord = ?2 WHERE id = ?1", params![a.id, ord as i64])?;
            }
            Some(false) => {
                tx.execute("DELETE FROM anchors WHERE id = ?1", [&a.id])?;
                insert_anchor(tx, &c.id, ord, a)?;
            }
            None => insert_anchor(tx, &c.id, ord, a)?,
        }
    }
    tx.execute(
        "DELETE FROM anchors WHERE codemark_id = ?1 AND id NOT IN (SELECT value FROM json_each(?2))",
        params![c.id, serde_json::to_string(&keep).expect("strings always serialize")],
    )?;
    tx.execute("DELETE FROM replies WHERE codemark_id = ?1", [&c.id])?;
    for r in &c.replies {
        insert_reply(tx, &c.id, r)?;
    }
    Ok(())
}
