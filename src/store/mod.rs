//! The local store: codemarks, their anchors and threads, and remembered anchor locations, in
//! one SQLite file shared by every editor and command line on the machine.
//!
//! **Architecture invariant:** this is the only module that knows SQLite (rusqlite, SQL). The
//! rest of the crate sees [`Store`]'s methods, the [`codemark`](crate::codemark) types and
//! [`StoreError`].
//!
//! - `schema`: the tables, the checks made before a file is touched, versioned migrations.
//! - `codemarks`: reading and writing codemarks, anchors and replies.
//! - `locations`: the cache of where an anchor is in one version of a file.
//! - `sync`: settings, the outbox of changes waiting for the team server, changes arriving from it.
//! - `egress`: the ledger of every request that left the machine.
//! - `error`: what can go wrong, worded for the people who see it.
//!
//! Several processes (two editors, an editor and the CLI) use the file at once: it runs in WAL
//! mode with a busy timeout, writes take the lock up front (`BEGIN IMMEDIATE`), and reads of
//! several tables run in one transaction so they see one state. A file this build cannot use (not
//! a database, another program's, newer) is refused and left as it was; a read-only file is
//! opened for reading, and writes then fail with [`StoreError::ReadOnly`].

mod codemarks;
mod egress;
mod error;
mod locations;
mod schema;
mod sync;
#[cfg(test)]
mod tests;

pub use egress::Egress;
pub use error::StoreError;
pub use sync::{Incoming, Outgoing, Queued};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::codemark::MarkStatus;

/// How long a statement waits for another process's write before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The store file's name inside [`data_dir`].
const FILE_NAME: &str = "marginalia.db";

/// Where marginalia keeps its data: `$MARGINALIA_DATA_DIR` when set and not empty, else the
/// platform's data directory (XDG on Linux) joined with `marginalia`.
pub fn data_dir() -> Result<PathBuf, StoreError> {
    let dir = data_dir_from(std::env::var_os("MARGINALIA_DATA_DIR"), dirs::data_dir())?;
    // A relative setting means relative to where it was set, not to each process's folder.
    Ok(std::path::absolute(&dir).unwrap_or(dir))
}

/// [`data_dir`] with its inputs handed in, so tests need not touch the process environment.
fn data_dir_from(env: Option<OsString>, platform: Option<PathBuf>) -> Result<PathBuf, StoreError> {
    match env {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => platform.map(|dir| dir.join("marginalia")).ok_or(StoreError::NoDataDir),
    }
}

/// A change to a codemark's own fields; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct Edit {
    pub body: Option<String>,
    /// `Some(None)` removes the title.
    pub title: Option<Option<String>>,
    pub status: Option<MarkStatus>,
}

/// One connection to the store file. `Send`, not `Sync`: share it behind a mutex.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
}

/// How much a connection asks of the file; each step down is tried when the one above is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
    /// Read-only, and promising SQLite that nobody changes the file, so it needs no `-shm`
    /// beside it: the only way to read a WAL file in a directory we cannot write.
    Immutable,
}

impl Store {
    /// The store in [`data_dir`], creating the directory and the file as needed.
    pub fn open_default() -> Result<Store, StoreError> {
        Store::open_in(&data_dir()?)
    }

    /// The store file in `dir`, creating the directory as needed.
    fn open_in(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir { path: dir.to_path_buf(), cause })?;
        Store::open(&dir.join(FILE_NAME))
    }

    /// The store at `path`, creating the file (not its directory) when missing and bringing its
    /// schema up to date. A file that cannot be written is opened read-only.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let refused = match Store::open_patiently(path, Access::ReadWrite) {
            Err(e) if e.is_access_problem() && path.is_file() => e,
            other => return other,
        };
        tracing::debug!("opening the store for reading only: {refused}");
        let fallback = match Store::open_patiently(path, Access::ReadOnly) {
            Err(e) if e.is_access_problem() => Store::open_patiently(path, Access::Immutable),
            other => other,
        };
        match fallback {
            Ok(store) => {
                tracing::warn!("the store {} is read-only: codemarks can be read but not saved", path.display());
                Ok(store)
            }
            // Reading failed for the same kind of reason: the first refusal says it best.
            Err(e) if e.is_access_problem() => Err(refused),
            Err(e) => Err(e),
        }
    }

    /// [`open_as`](Store::open_as), tried again while another process holds the file busy.
    ///
    /// The busy timeout does not cover everything done at open: switching a new file to WAL,
    /// or reading a WAL file while another connection recovers it, answers "busy" at once. Two
    /// editors starting together meet exactly that, so the whole open is retried for as long as
    /// a statement would wait.
    fn open_patiently(path: &Path, access: Access) -> Result<Store, StoreError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            match Store::open_as(path, access) {
                Err(e) if e.is_busy() && started.elapsed() < BUSY_TIMEOUT => {
                    tracing::debug!("the store is busy, trying again: {e}");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    fn open_as(path: &Path, access: Access) -> Result<Store, StoreError> {
        let opened = match access {
            Access::ReadWrite => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            Access::ReadOnly => {
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            }
            Access::Immutable => Connection::open_with_flags(
                immutable_uri(path),
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
        };
        let conn = opened.map_err(|e| StoreError::from_sql(path, "could not open the store file", e))?;
        let err = |e| StoreError::from_sql(path, "could not set up the store", e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // SQLite opens a write-protected file read-only without saying so, unless asked.
        let read_only = access != Access::ReadWrite || conn.is_readonly(rusqlite::MAIN_DB).map_err(err)?;
        let header = schema::inspect(&conn, path)?;
        let known = schema::known_version();
        if read_only {
            if header.version < known {
                return Err(StoreError::OutdatedReadOnly { path: path.to_path_buf(), found: header.version, known });
            }
            conn.pragma_update(None, "foreign_keys", true).map_err(err)?;
        } else {
            schema::configure_writable(&conn, path)?;
            if header.version < known {
                schema::migrate(&conn, path)?;
            }
        }
        Ok(Store { conn, path: path.to_path_buf(), read_only })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file could only be opened for reading; every write then fails with
    /// [`StoreError::ReadOnly`].
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Frees this connection's page cache (SQLite keeps up to about 2 MiB of pages read), for a
    /// long-running process after a pass that read every codemark. Best effort.
    pub fn release_memory(&self) {
        let _ = self.conn.execute_batch("PRAGMA shrink_memory");
    }

    /// A number that changes when another connection (another process, or another `Store`)
    /// commits to the file, and not when this one does: a long-running editor polls it to notice
    /// the command line's writes.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .map_err(self.sql_err("could not read the store's data version"))
    }

    /// A number that moves whenever codemarks, their anchors or threads change, by any
    /// connection; caches, the outbox and the ledger do not move it. Cheap: one row.
    pub fn codemarks_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT n FROM changes WHERE what = 'codemarks'", [], |r| r.get(0))
            .map_err(self.sql_err("could not read the store's change counter"))
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed when it succeeds.
    fn write<T>(
        &self,
        context: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly { path: self.path.clone() });
        }
        let tx =
            Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(self.sql_err(context))?;
        let out = f(&tx).map_err(self.sql_err(context))?;
        tx.commit().map_err(self.sql_err(context))?;
        Ok(out)
    }

    /// Runs `f` in one read transaction, so that reads of several tables see one state of the file.
    fn read<T>(&self, context: &str, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let tx =
            Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred).map_err(self.sql_err(context))?;
        let out = f(&tx)?;
        tx.commit().map_err(self.sql_err(context))?;
        Ok(out)
    }

    fn sql_err<'a>(&'a self, context: &'a str) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
        move |e| StoreError::from_sql(&self.path, context, e)
    }

    fn bad_row(&self, row: String, problem: String) -> StoreError {
        StoreError::BadRow { path: self.path.clone(), row, problem }
    }
}

/// `path` as a SQLite URI with `immutable=1`, its bytes percent-encoded where URIs require it.
fn immutable_uri(path: &Path) -> String {
    let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file://");
    let bytes = full.as_os_str().as_encoded_bytes();
    if bytes.first() != Some(&b'/') {
        uri.push('/'); // `C:\x` on Windows becomes `file:///C:/x`
    }
    for &b in bytes {
        match b {
            b'\\' if cfg!(windows) => uri.push('/'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => uri.push(b as char),
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    uri
}
