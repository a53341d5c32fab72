//! `marginalia serve`: runs the sync server, and its operator verbs `serve invite` (bootstrap a
//! team without a UI) and `serve verify-audit` (check the audit log's hash chain). Glue: the
//! work is in [`crate::server`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::api::Role;
use crate::server::{self, db, limits};

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

    /// The data directory: server.db (the data) and keys.db (the teams' wrapped keys) live here.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,

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
        /// The data directory of the server.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
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
        /// The data directory of the server.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        None => run_server(args.run),
        Some(ServeAction::Invite { data, team, role, ttl_hours, key }) => invite(&data, &team, role, ttl_hours, key),
        Some(ServeAction::VerifyAudit { data }) => verify_audit(&data),
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
    let Some(data) = args.data else { bail!("--data DIR is required: the directory for server.db and keys.db") };
    if args.rate_limit < 0.0 || !args.rate_limit.is_finite() {
        bail!("--rate-limit must be 0 (off) or a positive number of requests per second");
    }
    let config = server::Config {
        listen: args.listen,
        data,
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

fn invite(data: &Path, team: &str, role: Option<Role>, ttl_hours: u32, key: KeyArgs) -> anyhow::Result<ExitCode> {
    let dev_key_exists = data.join(server::DEV_KEY_FILE).exists();
    let (master, _) = server::master_key(key.master_key_file.as_deref(), env_key(), data, dev_key_exists)
        .context("cannot make an invite")?;
    let storage = db::sqlite::SqliteStorage::open(data)?;
    let shared = server::Shared::new(std::sync::Arc::new(storage), master, 0.0, 1.0, false);
    let (invite, team, created) = runtime(1)?
        .block_on(shared.service.operator_invite(team, role, Some(ttl_hours)))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
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

fn verify_audit(data: &Path) -> anyhow::Result<ExitCode> {
    let file = data.join(db::sqlite::DATA_FILE);
    if !file.is_file() {
        bail!("{} does not exist: is --data the server's data directory?", file.display());
    }
    let storage = db::sqlite::SqliteStorage::open(data)?;
    let verdict = runtime(1)?.block_on(db::Storage::verify_audit(&storage))?;
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
