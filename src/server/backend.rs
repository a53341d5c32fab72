//! Which storage a server runs on, opened with the parts that must agree with it: SQLite in a
//! data directory (one process: wake-ups and rate limits in memory), or PostgreSQL (any number
//! of processes: wake-ups through LISTEN/NOTIFY, rate limits in the database). Also the
//! operator's rotation of the master key, which rewraps every team's key.

use std::path::PathBuf;
use std::sync::Arc;

use super::audit::{self, Action};
use super::crypto::{MasterKey, Place};
use super::db::{self, Batch, DbError, Storage, Write};
use super::events::{LocalNotifier, Notifier};
use super::limits::{LocalRateLimiter, RateLimiter};
use super::service::{OPERATOR, now_ms};

/// Where the data lives.
#[derive(Clone, Debug)]
pub enum Location {
    /// `server.db` and `keys.db` in this directory.
    Sqlite(PathBuf),
    Postgres(db::postgres::Options),
}

impl Location {
    /// What the start-up message names: the directory, or the database without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(dir) => format!("SQLite in {}", dir.display()),
            Location::Postgres(o) => match db::postgres::target(&o.data) {
                Ok(t) => format!("PostgreSQL at {}", t.place),
                Err(_) => "PostgreSQL".into(),
            },
        }
    }
}

/// A storage with its notifier and rate limiter.
pub struct Backend {
    pub store: Arc<dyn Storage>,
    pub notifier: Arc<dyn Notifier>,
    pub limiter: Arc<dyn RateLimiter>,
    /// What an operator should know (said once at start).
    pub warnings: Vec<String>,
}

/// Opens the storage alone, for the operator's verbs.
pub async fn open_store(location: &Location) -> Result<Arc<dyn Storage>, DbError> {
    Ok(match location {
        Location::Sqlite(dir) => {
            let dir = dir.clone();
            let storage =
                tokio::task::spawn_blocking(move || db::sqlite::SqliteStorage::open(&dir)).await.map_err(|e| {
                    DbError::Backend { path: PathBuf::new(), context: "opening".into(), cause: e.to_string() }
                })??;
            Arc::new(storage)
        }
        Location::Postgres(options) => Arc::new(db::postgres::PostgresStorage::connect(options).await?),
    })
}

/// Opens the storage for serving: with PostgreSQL, this process starts following what every
/// process commits. Call inside the runtime that serves.
pub async fn open(location: &Location, rate_per_second: f64, burst: f64) -> Result<Backend, DbError> {
    match location {
        Location::Sqlite(_) => Ok(Backend {
            store: open_store(location).await?,
            notifier: Arc::new(LocalNotifier::default()),
            limiter: Arc::new(LocalRateLimiter::new(rate_per_second, burst)),
            warnings: Vec::new(),
        }),
        Location::Postgres(options) => {
            let storage = db::postgres::PostgresStorage::connect(options).await?;
            let notifier = Arc::new(LocalNotifier::default());
            storage.follow(&notifier);
            let mut warnings = Vec::new();
            if !storage.keys_apart() {
                warnings.push(
                    "the teams' wrapped keys are in the data's database (table marginalia_team_keys): a backup of \
                     the whole database holds both, so deleting a team shreds it only from backups taken without \
                     that table (pg_dump --exclude-table=marginalia_team_keys); give --keys-database to keep them \
                     in another database"
                        .to_string(),
                );
            }
            Ok(Backend {
                limiter: Arc::new(storage.rate_limiter(rate_per_second, burst)),
                store: Arc::new(storage),
                notifier,
                warnings,
            })
        }
    }
}

/// Why the master key could not be rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "the key of team {0} opens with neither the current nor the new master key: nothing more was changed (is \
         the current master key the one the server runs with?)"
    )]
    Unknown(String),
    #[error(
        "a team's key changed while it was being rewrapped (is a server running?): nothing was changed; run it again"
    )]
    Raced,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("team {team}: {cause}")]
    Team { team: String, cause: String },
}

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotated {
    /// Team keys rewrapped under the new master key now.
    pub rewrapped: usize,
    /// Already under the new key (an earlier run stopped half way).
    pub already: usize,
    /// Team-name lookup codes recomputed under the new key.
    pub renamed: usize,
}

/// Rewraps every team's data key under `new` (the data keys, and so the data, stay as they are),
/// then recomputes the teams' name lookup codes, which derive from the master key. Run with every
/// server stopped. Safe to run again after an interruption: keys already under `new` are left
/// alone, and so are lookup codes already computed with it.
pub async fn rotate_master_key(store: &dyn Storage, old: &MasterKey, new: &MasterKey) -> Result<Rotated, RotateError> {
    let mut done = Rotated::default();
    let mut replace = Vec::new();
    for (team, wrapped) in store.team_keys().await? {
        if new.unwrap_team_key(&team, &wrapped).is_ok() {
            done.already += 1;
            continue;
        }
        let rewrapped = old.rewrap_team_key(&team, &wrapped, new).map_err(|_| RotateError::Unknown(team.clone()))?;
        replace.push((team, wrapped, rewrapped));
    }
    done.rewrapped = replace.len();
    if !replace.is_empty() {
        store.replace_team_keys(replace).await.map_err(|e| match e {
            DbError::Changed => RotateError::Raced,
            e => RotateError::Db(e),
        })?;
    }
    for (team, wrapped) in store.team_keys().await? {
        let Some(row) = store.team(&team).await? else { continue };
        let key = new.unwrap_team_key(&team, &wrapped).map_err(|_| RotateError::Unknown(team.clone()))?;
        let name = key
            .open_string(&Place { column: "teams.name", team: &team, row: &team }, &row.name_sealed)
            .map_err(|e| RotateError::Team { team: team.clone(), cause: e.to_string() })?;
        let mac = new.team_name_mac(&name);
        if mac == row.name_mac {
            continue;
        }
        let mut batch = Batch {
            writes: vec![Write::SetTeamNameMac { team_id: team.clone(), name_mac: mac }],
            time: now_ms(),
            ..Batch::default()
        };
        batch.audit.push(audit::Draft::new(&team, OPERATOR, Action::MasterKeyRotated, Some(&team)));
        store.commit(batch).await?;
        done.renamed += 1;
    }
    Ok(done)
}
