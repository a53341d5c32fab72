//! The egress ledger: every request that left the machine for the team server or a code host,
//! written before it is sent and completed with its answer, so a request cut short by a crash
//! is still on the record. Never a token, never the body: where, what about, and how many bytes
//! of code.

use rusqlite::params;

use super::{Store, StoreError};

/// One request that left the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Egress {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// `scheme://host:port` of the server or code host.
    pub destination: String,
    pub method: String,
    /// The path, with query values left out.
    pub endpoint: String,
    /// The codemark, review or pull request it was about.
    pub subject: Option<String>,
    /// Bytes of code it carried (anchored lines, context, diffs).
    pub code_bytes: usize,
    /// Bytes of its whole body.
    pub body_bytes: usize,
    /// The answer's HTTP status; `None` when no answer came (or not yet).
    pub status: Option<u16>,
    /// Anything the user should know (`sent despite a likely secret: ...`).
    pub note: Option<String>,
}

impl Store {
    /// Records a request about to be sent; returns its row id for [`Store::egress_answered`].
    pub fn egress_begin(&self, e: &Egress) -> Result<i64, StoreError> {
        self.write("could not write to the egress ledger", |tx| {
            tx.prepare_cached(
                "INSERT INTO egress (at, destination, method, endpoint, subject, code_bytes, body_bytes, status, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.at,
                e.destination,
                e.method,
                e.endpoint,
                e.subject,
                e.code_bytes as i64,
                e.body_bytes as i64,
                e.status,
                e.note
            ])?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Completes a recorded request with the status it got.
    pub fn egress_answered(&self, id: i64, status: u16) -> Result<(), StoreError> {
        self.write("could not write to the egress ledger", |tx| {
            tx.execute("UPDATE egress SET status = ?2 WHERE id = ?1", params![id, status])?;
            Ok(())
        })
    }

    /// The newest `limit` requests, newest first; only those that carried code when `code_only`.
    pub fn egress(&self, limit: usize, code_only: bool) -> Result<Vec<Egress>, StoreError> {
        let err = self.sql_err("could not read the egress ledger");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, destination, method, endpoint, subject, code_bytes, body_bytes, status, note
                 FROM egress WHERE NOT ?2 OR code_bytes > 0 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![limit as i64, code_only], |r| {
                Ok(Egress {
                    at: r.get(0)?,
                    destination: r.get(1)?,
                    method: r.get(2)?,
                    endpoint: r.get(3)?,
                    subject: r.get(4)?,
                    code_bytes: r.get::<_, i64>(5)?.max(0) as usize,
                    body_bytes: r.get::<_, i64>(6)?.max(0) as usize,
                    status: r.get(7)?,
                    note: r.get(8)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&err)
    }
}
