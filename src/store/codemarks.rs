//! Codemarks in tables and back: a codemark row, its anchor rows in order, its reply rows oldest
//! first. Values read back are checked, and one that does not parse is a [`StoreError::BadRow`]
//! naming the row, never a panic.

use std::collections::HashMap;

use rusqlite::{Connection, Transaction, params};

use super::{Edit, Store, StoreError};
use crate::anchor::{Anchor, LineRange};
use crate::codemark::{Codemark, Reply, StoredAnchor};

/// At most this many ids come back from [`Store::find_ids`].
const FIND_LIMIT: usize = 10;

/// Which codemarks a load reads: the SQL condition on `c`, the codemarks table, with `?1`.
#[derive(Clone, Copy)]
enum Which {
    Id,
    Repo,
    /// A JSON array of ids.
    Ids,
    /// The comments of a feedback request (by its id).
    Review,
}

impl Which {
    fn condition(self) -> &'static str {
        match self {
            Which::Id => "c.id = ?1",
            Which::Repo => "c.repo = ?1",
            Which::Ids => "c.id IN (SELECT value FROM json_each(?1))",
            Which::Review => "json_extract(c.review, '$.review') = ?1",
        }
    }

    /// The `FROM ... WHERE ...` that picks the rows of a child table (`anchors a`,
    /// `replies r`) of the chosen codemarks: by codemark id straight away when ids are given.
    fn children(self, table: &str, alias: &str) -> String {
        match self {
            Which::Id => format!("FROM {table} {alias} WHERE {alias}.codemark_id = ?1"),
            Which::Ids => {
                format!("FROM {table} {alias} WHERE {alias}.codemark_id IN (SELECT value FROM json_each(?1))")
            }
            Which::Repo | Which::Review => {
                format!(
                    "FROM {table} {alias} JOIN codemarks c ON c.id = {alias}.codemark_id WHERE {}",
                    self.condition()
                )
            }
        }
    }
}

impl Store {
    /// Saves a new codemark with its anchors (in order) and replies, all or nothing.
    pub fn insert(&self, c: &Codemark) -> Result<(), StoreError> {
        self.insert_queued(c, &[])
    }

    /// The codemark with this id, with its anchors in order and replies oldest first.
    pub fn get(&self, id: &str) -> Result<Option<Codemark>, StoreError> {
        Ok(self.load(Which::Id, id)?.pop())
    }

    /// Every codemark of a repository (its identity key), ordered by id (that is, by creation).
    pub fn of_repo(&self, repo: &str) -> Result<Vec<Codemark>, StoreError> {
        self.load(Which::Repo, repo)
    }

    /// The codemarks with these ids that exist, complete, ordered by id: one read for the
    /// codemarks of a document, however many there are.
    pub fn get_many(&self, ids: &[&str]) -> Result<Vec<Codemark>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.load(Which::Ids, &serde_json::to_string(ids).expect("strings always serialize"))
    }

    /// The comments made on a feedback request (codemarks linked to it), ordered by id.
    pub fn of_review(&self, review: &str) -> Result<Vec<Codemark>, StoreError> {
        self.load(Which::Review, review)
    }

    /// How many codemarks the store holds, all repositories together.
    pub fn count(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM codemarks", [], |r| r.get(0))
            .map_err(self.sql_err("could not count codemarks"))?;
        Ok(n as usize)
    }

    /// Ids that start with `prefix` (a short id typed by a person), in order, at most ten.
    /// The match is exact: ids are stored as given (lowercase for UUIDs).
    pub fn find_ids(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let context = format!("could not look up codemark ids starting with `{prefix}`");
        let err = self.sql_err(&context);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM codemarks WHERE id >= ?1 AND substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(&err)?;
        let ids = stmt.query_map(params![prefix, FIND_LIMIT as i64], |r| r.get(0)).map_err(&err)?;
        ids.collect::<Result<Vec<String>, _>>().map_err(&err)
    }

    /// Adds a reply to a codemark's thread and moves the codemark's `updated` up to the reply's
    /// time (never back). `false` when there is no such codemark.
    pub fn add_reply(&self, codemark_id: &str, reply: &Reply) -> Result<bool, StoreError> {
        self.add_reply_queued(codemark_id, reply, &[])
    }

    /// Changes a codemark's body, title or status and sets its `updated` to `now`. `false` when
    /// there is no such codemark.
    pub fn edit(&self, id: &str, edit: &Edit, now: i64) -> Result<bool, StoreError> {
        self.edit_queued(id, edit, now, &[])
    }

    /// Removes a codemark with its anchors, replies and remembered locations (by cascade).
    /// `false` when there is no such codemark.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.write(&format!("could not delete codemark {id}"), |tx| {
            Ok(tx.execute("DELETE FROM codemarks WHERE id = ?1", [id])? > 0)
        })
    }

    /// Rewrites one anchor (found by its id) in place, keeping its codemark and position, and
    /// forgets its remembered locations, which described the old anchor. `false` when there is
    /// no such anchor.
    pub fn update_anchor(&self, a: &StoredAnchor) -> Result<bool, StoreError> {
        self.write(&format!("could not save anchor {}", a.id), |tx| update_anchor(tx, a))
    }

    /// Codemarks chosen by `which`, complete, ordered by id; one snapshot of the file.
    fn load(&self, which: Which, key: &str) -> Result<Vec<Codemark>, StoreError> {
        let context = match which {
            Which::Id => format!("could not read codemark {key}"),
            Which::Repo => format!("could not read the codemarks of repository {key}"),
            Which::Ids => "could not read codemarks by id".to_owned(),
            Which::Review => format!("could not read the comments of review {key}"),
        };
        self.read(&context, |conn| {
            let err = self.sql_err(&context);
            let marks = query_marks(conn, which, key).map_err(&err)?;
            let mut out = Vec::with_capacity(marks.len());
            let mut index = HashMap::with_capacity(marks.len());
            for m in marks {
                index.insert(m.id.clone(), out.len());
                out.push(self.codemark(m)?);
            }
            for a in query_anchors(conn, which, key).map_err(&err)? {
                if let Some(&i) = index.get(&a.codemark_id) {
                    let anchor = self.anchor(a)?;
                    out[i].anchors.push(anchor);
                }
            }
            for (codemark_id, reply) in query_replies(conn, which, key).map_err(&err)? {
                if let Some(&i) = index.get(&codemark_id) {
                    out[i].replies.push(reply);
                }
            }
            Ok(out)
        })
    }

    fn codemark(&self, m: MarkRow) -> Result<Codemark, StoreError> {
        let row = || format!("codemark {}", m.id);
        let kind = m.kind.parse().map_err(|e| self.bad_row(row(), e))?;
        let status = m.status.parse().map_err(|e| self.bad_row(row(), e))?;
        let review = match &m.review {
            Some(json) => Some(
                serde_json::from_str(json)
                    .map_err(|e| self.bad_row(row(), format!("its review link is not readable: {e}")))?,
            ),
            None => None,
        };
        Ok(Codemark {
            id: m.id,
            repo: m.repo,
            kind,
            title: m.title,
            body: m.body,
            author: m.author,
            status,
            anchors: Vec::new(),
            replies: Vec::new(),
            created: m.created,
            updated: m.updated,
            shared: m.server,
            review,
        })
    }

    fn anchor(&self, a: AnchorRow) -> Result<StoredAnchor, StoreError> {
        let row = || format!("anchor {} of codemark {}", a.id, a.codemark_id);
        let lines = line_range(a.start_line, a.end_line).map_err(|e| self.bad_row(row(), e))?;
        let lines_of = |json: &str, which: &str| {
            serde_json::from_str::<Vec<String>>(json)
                .map_err(|e| self.bad_row(row(), format!("the lines {which} it are not a JSON list of strings: {e}")))
        };
        let before = lines_of(&a.before_ctx, "before")?;
        let after = lines_of(&a.after_ctx, "after")?;
        let anchor = Anchor { commit: a.commit_id, path: a.path, lines, text: a.text, before, after };
        Ok(StoredAnchor { id: a.id, anchor, pending: a.pending != 0 })
    }
}

/// Lines as stored (two integers) to a range, refusing what [`LineRange`] cannot mean.
pub(super) fn line_range(start: i64, end: i64) -> Result<LineRange, String> {
    let line = |n: i64| u32::try_from(n).ok().filter(|&n| n >= 1);
    match (line(start), line(end)) {
        (Some(s), Some(e)) if s <= e => Ok(LineRange::new(s, e)),
        _ => Err(format!("lines {start}-{end} are not a range of lines (1-based, the end not before the start)")),
    }
}

pub(super) fn insert_codemark(tx: &Transaction<'_>, c: &Codemark) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO codemarks (id, repo, kind, title, body, author, status, created, updated, server, review)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
        c.shared,
        review_json(c)
    ])?;
    for (ord, a) in c.anchors.iter().enumerate() {
        insert_anchor(tx, &c.id, ord, a)?;
    }
    for r in &c.replies {
        insert_reply(tx, &c.id, r)?;
    }
    Ok(())
}

pub(super) fn add_reply(tx: &Transaction<'_>, codemark_id: &str, reply: &Reply) -> rusqlite::Result<bool> {
    let found = tx.execute(
        "UPDATE codemarks SET updated = max(updated, ?2) WHERE id = ?1",
        params![codemark_id, reply.created],
    )?;
    if found == 0 {
        return Ok(false);
    }
    insert_reply(tx, codemark_id, reply)?;
    Ok(true)
}

pub(super) fn edit(tx: &Transaction<'_>, id: &str, edit: &Edit, now: i64) -> rusqlite::Result<bool> {
    if tx.execute("UPDATE codemarks SET updated = ?2 WHERE id = ?1", params![id, now])? == 0 {
        return Ok(false);
    }
    if let Some(body) = &edit.body {
        tx.execute("UPDATE codemarks SET body = ?2 WHERE id = ?1", params![id, body])?;
    }
    if let Some(title) = &edit.title {
        tx.execute("UPDATE codemarks SET title = ?2 WHERE id = ?1", params![id, title])?;
    }
    if let Some(status) = edit.status {
        tx.execute("UPDATE codemarks SET status = ?2 WHERE id = ?1", params![id, status.as_str()])?;
    }
    Ok(true)
}

pub(super) fn update_anchor(tx: &Transaction<'_>, a: &StoredAnchor) -> rusqlite::Result<bool> {
    let (before, after) = (json_lines(&a.anchor.before), json_lines(&a.anchor.after));
    let found = tx.execute(
        "UPDATE anchors SET commit_id = ?2, path = ?3, start_line = ?4, end_line = ?5, text = ?6,
                before_ctx = ?7, after_ctx = ?8, pending = ?9
         WHERE id = ?1",
        params![
            a.id,
            a.anchor.commit,
            a.anchor.path,
            a.anchor.lines.start,
            a.anchor.lines.end,
            a.anchor.text,
            before,
            after,
            a.pending
        ],
    )?;
    if found == 0 {
        return Ok(false);
    }
    tx.execute("DELETE FROM locations WHERE anchor_id = ?1", [&a.id])?;
    Ok(true)
}

/// A codemark's review link as stored (JSON), if it has one.
pub(super) fn review_json(c: &Codemark) -> Option<String> {
    c.review.as_ref().map(|r| serde_json::to_string(r).expect("a review link always serializes"))
}

pub(super) fn json_lines(lines: &[String]) -> String {
    serde_json::to_string(lines).expect("a list of strings always serializes")
}

pub(super) fn insert_anchor(
    tx: &Transaction<'_>,
    codemark_id: &str,
    ord: usize,
    a: &StoredAnchor,
) -> rusqlite::Result<()> {
    let x = &a.anchor;
    tx.prepare_cached(
        "INSERT INTO anchors (id, codemark_id, ord, commit_id, path, start_line, end_line, text, before_ctx,
                              after_ctx, pending)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        a.id,
        codemark_id,
        ord as i64,
        x.commit,
        x.path,
        x.lines.start,
        x.lines.end,
        x.text,
        json_lines(&x.before),
        json_lines(&x.after),
        a.pending
    ])?;
    Ok(())
}

pub(super) fn insert_reply(tx: &Transaction<'_>, codemark_id: &str, r: &Reply) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO replies (id, codemark_id, author, body, created) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![r.id, codemark_id, r.author, r.body, r.created])?;
    Ok(())
}

/// A codemarks row as stored, before its values are checked.
struct MarkRow {
    id: String,
    repo: String,
    kind: String,
    title: Option<String>,
    body: String,
    author: String,
    status: String,
    created: i64,
    updated: i64,
    server: Option<String>,
    review: Option<String>,
}

/// An anchors row as stored, before its values are checked.
struct AnchorRow {
    id: String,
    codemark_id: String,
    commit_id: String,
    path: String,
    start_line: i64,
    end_line: i64,
    text: Option<String>,
    before_ctx: String,
    after_ctx: String,
    pending: i64,
}

fn query_marks(conn: &Connection, which: Which, key: &str) -> rusqlite::Result<Vec<MarkRow>> {
    let sql = format!(
        "SELECT c.id, c.repo, c.kind, c.title, c.body, c.author, c.status, c.created, c.updated, c.server, c.review
         FROM codemarks c WHERE {} ORDER BY c.id",
        which.condition()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([key], |r| {
        Ok(MarkRow {
            id: r.get(0)?,
            repo: r.get(1)?,
            kind: r.get(2)?,
            title: r.get(3)?,
            body: r.get(4)?,
            author: r.get(5)?,
            status: r.get(6)?,
            created: r.get(7)?,
            updated: r.get(8)?,
            server: r.get(9)?,
            review: r.get(10)?,
        })
    })?;
    rows.collect()
}

fn query_anchors(conn: &Connection, which: Which, key: &str) -> rusqlite::Result<Vec<AnchorRow>> {
    let sql = format!(
        "SELECT a.id, a.codemark_id, a.commit_id, a.path, a.start_line, a.end_line, a.text, a.before_ctx,
                a.after_ctx, a.pending
         {} ORDER BY a.codemark_id, a.ord",
        which.children("anchors", "a")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([key], |r| {
        Ok(AnchorRow {
            id: r.get(0)?,
            codemark_id: r.get(1)?,
            commit_id: r.get(2)?,
            path: r.get(3)?,
            start_line: r.get(4)?,
            end_line: r.get(5)?,
            text: r.get(6)?,
            before_ctx: r.get(7)?,
            after_ctx: r.get(8)?,
            pending: r.get(9)?,
        })
    })?;
    rows.collect()
}

fn query_replies(conn: &Connection, which: Which, key: &str) -> rusqlite::Result<Vec<(String, Reply)>> {
    let sql = format!(
        "SELECT r.codemark_id, r.id, r.author, r.body, r.created
         {} ORDER BY r.codemark_id, r.created, r.id",
        which.children("replies", "r")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([key], |r| {
        Ok((r.get(0)?, Reply { id: r.get(1)?, author: r.get(2)?, body: r.get(3)?, created: r.get(4)? }))
    })?;
    rows.collect()
}
