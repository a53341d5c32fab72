//! `marginalia serve`: runs the sync server, and its operator verbs `serve invite` (bootstrap a
//! team without a UI), `serve verify-audit` (check the audit log's hash chain) and
//! `serve rotate-master-key`, each on SQLite (`--data`) or PostgreSQL (`--database`). Glue: the
//! work is in [`crate::server`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::api::Role;
use crate::server::backend::Location;
use crate::server::{self, db, limits};

/// The environment variables that may carry the database URLs (which may hold a password, better
/// kept out of the process list).
const DATABASE_ENV: &str = "MARGINALIA_DATABASE_URL";
const KEYS_DATABASE_ENV: &str = "MARGINALIA_KEYS_DATABASE_URL";

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    action: Option<ServeAction>,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Address to listen on; port 0 picks a free port (the `listening on` line says which).
    /// Plain HTTP (no TLS) is allowed on loopback only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,

    #[command(flatten)]
    store: StoreArgs,

    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    #[command(flatten)]
    key: KeyArgs,

    /// Requests per second each token may make, sustained (0 turns rate limits off).
    #[arg(long, value_name = "PER_SECOND", default_value_t = limits::DEFAULT_PER_SECOND)]
    rate_limit: f64,

    /// Requests a token may make at once after a quiet spell.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_BURST)]
    rate_burst: f64,
}

/// Where the data is: SQLite in a directory, or PostgreSQL.
#[derive(Args)]
struct StoreArgs {
    /// SQLite: the data directory (server.db, the data; keys.db, the teams' wrapped keys). Beside
    /// --database it only holds dev mode's master.key.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,

    /// PostgreSQL instead of SQLite (several server processes may share it):
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=CA.pem].
    /// Without it, MARGINALIA_DATABASE_URL is read.
    #[arg(long, value_name = "URL")]
    database: Option<String>,

    /// PostgreSQL: keep the teams' wrapped keys in this database rather than in --database's, so
    /// that backups of the data hold no key. Without it, MARGINALIA_KEYS_DATABASE_URL is read.
    #[arg(long, value_name = "URL", requires = "database")]
    keys_database: Option<String>,

    /// PostgreSQL: connections this process keeps to each database, at most.
    #[arg(long, value_name = "N", default_value_t = db::postgres::DEFAULT_POOL)]
    database_pool: usize,
}

impl StoreArgs {
    fn location(&self) -> anyhow::Result<Location> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(url) = self.database.clone().or_else(|| env(DATABASE_ENV)) {
            if self.database_pool == 0 {
                bail!("--database-pool must be at least 1");
            }
            let keys = self.keys_database.clone().or_else(|| env(KEYS_DATABASE_ENV));
            return Ok(Location::Postgres(db::postgres::Options { data: url, keys, pool: self.database_pool }));
        }
        match &self.data {
            Some(dir) => Ok(Location::Sqlite(dir.clone())),
            None => bail!(
                "give --data DIR (SQLite: the directory for server.db and keys.db) or --database postgres://... (or \
                 {DATABASE_ENV})"
            ),
        }
    }

    /// Where dev mode's key file is, when there is one.
    fn dev_key(&self) -> Option<PathBuf> {
        self.data.as_ref().map(|d| d.join(server::DEV_KEY_FILE)).filter(|p| p.exists())
    }
}

#[derive(Args)]
struct KeyArgs {
    /// File holding the master key (32 bytes as 64 hex characters, or base64). Without it,
    /// MARGINALIA_MASTER_KEY is read; without either, DIR/master.key, which a loopback server
    /// makes in dev mode.
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ServeAction {
    /// Print a single-use invite code for a team (made on first use), so an operator can
    /// bootstrap without a UI. Works while the server runs. The code goes to stdout, alone.
    ///
    /// Without --role, the invite is for an admin while the team has no admin (a new team's
    /// first invite), and for a member after that.
    Invite {
        #[command(flatten)]
        store: StoreArgs,
        /// The team's name.
        #[arg(long, value_name = "NAME")]
        team: String,
        /// admin or member (see above for the default).
        #[arg(long, value_name = "ROLE")]
        role: Option<Role>,
        /// Hours until the code expires (1 to 720).
        #[arg(long, value_name = "N", default_value_t = server::service::DEFAULT_INVITE_HOURS)]
        ttl_hours: u32,
        #[command(flatten)]
        key: KeyArgs,
    },

    /// Walk the audit log's hash chain: prints "N entries, chain intact" (exit 0), or the first
    /// broken entry (exit 1).
    VerifyAudit {
        #[command(flatten)]
        store: StoreArgs,
    },

    /// Rewrap every team's data key under a new master key (the data stays as it is), and
    /// recompute what derives from the master key. Stop every server process first; start them
    /// again with the new key. Safe to run again if it was interrupted.
    RotateMasterKey {
        #[command(flatten)]
        store: StoreArgs,
        /// The current master key (see `serve --master-key-file`).
        #[command(flatten)]
        key: KeyArgs,
        /// File holding the new master key (32 bytes as 64 hex characters, or base64; for
        /// example `openssl rand -hex 32`).
        #[arg(long, value_name = "FILE")]
        new_master_key_file: PathBuf,
    },
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        None => run_server(args.run),
        Some(ServeAction::Invite { store, team, role, ttl_hours, key }) => invite(&store, &team, role, ttl_hours, key),
        Some(ServeAction::VerifyAudit { store }) => verify_audit(&store),
        Some(ServeAction::RotateMasterKey { store, key, new_master_key_file }) => {
            rotate_master_key(&store, key, &new_master_key_file)
        }
    }
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn env_key() -> Option<String> {
    std::env::var(server::MASTER_KEY_ENV).ok()
}

fn run_server(args: RunArgs) -> anyhow::Result<ExitCode> {
    let location = args.store.location()?;
    if args.rate_limit < 0.0 || !args.rate_limit.is_finite() {
        bail!("--rate-limit must be 0 (off) or a positive number of requests per second");
    }
    let config = server::Config {
        listen: args.listen,
        location,
        data: args.store.data,
        tls: args.tls_cert.zip(args.tls_key),
        master_key_file: args.key.master_key_file,
        master_key_env: env_key(),
        rate_per_second: args.rate_limit,
        burst: args.rate_burst,
    };
    server::prepare_process();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    runtime(threads)?.block_on(server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}

/// The master key an operator's verb runs with: as the server finds it, without making one.
fn operator_key(store: &StoreArgs, key: &KeyArgs, what: &str) -> anyhow::Result<server::crypto::MasterKey> {
    let dev = store.dev_key();
    let dir = dev.as_deref().and_then(Path::parent);
    let (master, _) =
        server::master_key(key.master_key_file.as_deref(), env_key(), dir, dev.is_some()).context(what.to_string())?;
    Ok(master)
}

fn invite(store: &StoreArgs, team: &str, role: Option<Role>, ttl_hours: u32, key: KeyArgs) -> anyhow::Result<ExitCode> {
    let master = operator_key(store, &key, "cannot make an invite")?;
    let location = store.location()?;
    let (invite, team, created) = runtime(1)?.block_on(async {
        let storage = server::backend::open_store(&location).await?;
        let shared = server::Shared::new(storage, master, 0.0, 1.0, false);
        shared.service.operator_invite(team, role, Some(ttl_hours)).await.map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_millis(invite.expires.max(0) as u64);
    eprintln!(
        "{} invite for team \"{}\"{}; single use, expires {}. Redeem it with POST /api/v1/login.",
        invite.role.as_str(),
        team.name,
        if created { " (new team)" } else { "" },
        humantime::format_rfc3339_seconds(expires),
    );
    println!("{}", invite.code);
    Ok(ExitCode::SUCCESS)
}

fn verify_audit(store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let location = store.location()?;
    if let Location::Sqlite(data) = &location {
        let file = data.join(db::sqlite::DATA_FILE);
        if !file.is_file() {
            bail!("{} does not exist: is --data the server's data directory?", file.display());
        }
    }
    let verdict = runtime(1)?.block_on(async {
        let storage = server::backend::open_store(&location).await?;
        storage.verify_audit().await
    })?;
    match verdict {
        server::audit::Verdict::Intact { entries } => {
            println!("{entries} entries, chain intact");
            Ok(ExitCode::SUCCESS)
        }
        server::audit::Verdict::Broken { seq, checked, reason } => {
            println!("audit chain broken at entry {seq} ({checked} entries before it are intact): {reason}");
            Ok(ExitCode::from(1))
        }
    }
}

fn rotate_master_key(store: &StoreArgs, key: KeyArgs, new_file: &Path) -> anyhow::Result<ExitCode> {
    let old = operator_key(store, &key, "cannot read the current master key")?;
    let new = server::crypto::MasterKey::read_file(new_file)?;
    let location = store.location()?;
    let rotated = runtime(1)?.block_on(async {
        let storage = server::backend::open_store(&location).await?;
        server::backend::rotate_master_key(storage.as_ref(), &old, &new).await.map_err(anyhow::Error::from)
    })?;
    println!(
        "{} team keys rewrapped under the new master key ({} were already), {} team name lookups recomputed",
        rotated.rewrapped, rotated.already, rotated.renamed
    );
    eprintln!(
        "Start the server processes with the new key ({}); the old key no longer opens anything here, but it still \
         opens backups taken before now: keep it as long as those backups, or destroy both.",
        new_file.display()
    );
    Ok(ExitCode::SUCCESS)
}
