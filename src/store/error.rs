//! The store's errors: what went wrong and with which file, in sentences fit for an editor's
//! message line, and the one place where SQLite's result codes are sorted into them.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Why the store could not do what was asked. Every variant names the file or directory.
///
/// The messages carry their cause in their text (the language server shows `to_string()`), so
/// none of them has a [`source`](std::error::Error::source): printing the chain shows it once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot tell where to keep marginalia's data: this system names no data directory (is HOME set?); \
         set MARGINALIA_DATA_DIR to a directory"
    )]
    NoDataDir,

    #[error(
        "cannot create the data directory {}: {cause}; create it by hand, or set MARGINALIA_DATA_DIR to a directory \
         you can write",
        path.display()
    )]
    CreateDir { path: PathBuf, cause: std::io::Error },

    #[error(
        "{} is not a marginalia store or is damaged ({detail}); it was left untouched: move it aside to start a new \
         store, or set MARGINALIA_DATA_DIR to use another directory",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    /// One row holds a value this build cannot read; the rest of the store is fine.
    #[error(
        "the store {} holds a value this marginalia cannot read ({row}: {problem}); the row may be damaged or written \
         by a newer marginalia",
        path.display()
    )]
    BadRow { path: PathBuf, row: String, problem: String },

    #[error(
        "the store {} is read-only, so nothing can be saved; make the file and its directory writable, or set \
         MARGINALIA_DATA_DIR to another directory",
        path.display()
    )]
    ReadOnly { path: PathBuf },

    #[error(
        "the store {} was written by a newer marginalia (schema version {found}; this one knows up to {known}) and \
         was left untouched; upgrade marginalia, or set MARGINALIA_DATA_DIR to another directory to keep a separate \
         store",
        path.display()
    )]
    NewerSchema { path: PathBuf, found: i64, known: i64 },

    /// The file is older than this build and must be upgraded, which a read-only file forbids.
    #[error(
        "the store {} must be upgraded from schema version {found} to {known} before this marginalia can read it, \
         but it is read-only; make the file and its directory writable and try again",
        path.display()
    )]
    OutdatedReadOnly { path: PathBuf, found: i64, known: i64 },

    /// Any other SQLite failure; `context` says what was being done.
    #[error("{context} (store {}): {cause}", path.display())]
    Sql { path: PathBuf, context: String, cause: rusqlite::Error },
}

impl StoreError {
    /// Sorts a SQLite failure: a read-only file, a file that is not a database, or the rest.
    pub(super) fn from_sql(path: &Path, context: impl Into<String>, cause: rusqlite::Error) -> StoreError {
        let path = path.to_path_buf();
        match cause.sqlite_error_code() {
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { path, detail: format!("SQLite says: {cause}") }
            }
            _ => StoreError::Sql { path, context: context.into(), cause },
        }
    }

    /// Another connection holds a lock this one could not wait for.
    pub(super) fn is_busy(&self) -> bool {
        matches!(self, StoreError::Sql { cause, .. }
            if matches!(cause.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)))
    }

    /// A failure that opening the file with less access may avoid: permissions, a read-only
    /// file system, or a WAL index (`-shm`) that cannot be created beside the file.
    pub(super) fn is_access_problem(&self) -> bool {
        match self {
            StoreError::ReadOnly { .. } => true,
            StoreError::Sql { cause, .. } => matches!(
                cause.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly)
            ),
            _ => false,
        }
    }
}
