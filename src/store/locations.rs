//! The remembered answers: where an anchor is in one version of a file (a git blob id). A cache:
//! rows go when their anchor is rewritten or deleted, and losing them only costs time.

use rusqlite::{OptionalExtension, params};

use super::codemarks::line_range;
use super::{Store, StoreError};
use crate::anchor::Status;
use crate::codemark::CachedLocation;

impl Store {
    /// Where the anchor was found in the blob, if that was remembered.
    pub fn cached_location(&self, anchor_id: &str, blob: &str) -> Result<Option<CachedLocation>, StoreError> {
        let context = format!("could not read the remembered location of anchor {anchor_id}");
        let row: Option<(String, String, i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT status, path, start_line, end_line FROM locations WHERE anchor_id = ?1 AND blob = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row([anchor_id, blob], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()
            })
            .map_err(self.sql_err(&context))?;
        let Some((status, path, start, end)) = row else { return Ok(None) };
        let bad = |problem| self.bad_row(format!("remembered location of anchor {anchor_id} in blob {blob}"), problem);
        let status = parse_status(&status).map_err(bad)?;
        let lines = line_range(start, end).map_err(bad)?;
        Ok(Some(CachedLocation { status, path, lines }))
    }

    /// Remembers where the anchor is in the blob, replacing what was remembered. Nothing is
    /// stored when the anchor no longer exists (another process deleted it meanwhile).
    pub fn cache_location(&self, anchor_id: &str, blob: &str, loc: &CachedLocation) -> Result<(), StoreError> {
        self.write(&format!("could not remember the location of anchor {anchor_id}"), |tx| {
            tx.prepare_cached(
                "INSERT INTO locations (anchor_id, blob, status, path, start_line, end_line)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM anchors WHERE id = ?1)
                 ON CONFLICT (anchor_id, blob) DO UPDATE
                 SET status = excluded.status, path = excluded.path, start_line = excluded.start_line,
                     end_line = excluded.end_line",
            )?
            .execute(params![
                anchor_id,
                blob,
                loc.status.as_str(),
                loc.path,
                loc.lines.start,
                loc.lines.end
            ])?;
            Ok(())
        })
    }
}

/// The stored form of a [`Status`] back to it.
fn parse_status(s: &str) -> Result<Status, String> {
    [Status::Intact, Status::Modified, Status::Deleted]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown location status `{s}`: expected intact, modified or deleted"))
}
