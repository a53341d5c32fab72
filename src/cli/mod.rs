//! The command line: argument parsing and what people and scripts read. Glue only: the work
//! is done in [`crate::locate`], [`crate::anchor`] and [`crate::git`].
//!
//! Exit codes: 0 when the command did its job; 1 when a single anchor could not be located, a
//! code host said no (`pr`: not found, refused, lines not in the diff, held back), or `check
//! --fail-on` found what it names;
//! 2 for usage or environment errors (a bad flag, a folder that is not a repository, an
//! unknown revision), with a message that says what is wrong.

mod auth;
mod check;
mod codemark;
mod locate;
mod pr;
mod review;
mod serve;
mod sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "marginalia",
    version,
    about = "Local-first code discussions for teams: anchors on code that survive edits, moves and renames.",
    long_about = None,
    propagate_version = true,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Where are these lines now? Follow line ranges anchored at a commit to another commit or
    /// to the working tree, through edits, moves and renames.
    Locate(locate::LocateArgs),

    /// Start, list, read and answer discussions on code (the local store; what the editor
    /// does, for scripts and CI).
    Codemark(codemark::CodemarkArgs),

    /// Ask for feedback on local work without pushing; read, check out and comment on requests.
    Review(review::ReviewArgs),

    /// Sign in to a team server with an invite; the token goes to the OS keychain.
    Login(sync::LoginArgs),

    /// Sign out of the team server: forget its token (queued changes stay).
    Logout,

    /// Send queued changes to the team server and take teammates' changes, once.
    Sync(sync::SyncArgs),

    /// Changes waiting for the team server; let held ones go, or keep them here.
    Outbox(sync::OutboxArgs),

    /// Every request that left this machine: when, where, what about, bytes of code.
    Egress(sync::EgressArgs),

    /// Everything the team server holds about you, as JSON.
    Export(sync::ExportArgs),

    /// For CI bots: which open discussions a change (a pull request) deletes, modifies or
    /// moves; text, JSON, Markdown or SARIF; `--post` keeps a summary on the pull request.
    Check(check::CheckArgs),

    /// Pull requests on GitHub, GitLab and Bitbucket: the current branch's, review threads at
    /// their lines in the working copy, comments, replies, and opening one.
    Pr(pr::PrArgs),

    /// Provider tokens in the OS keychain: log in (the token is checked first), log out, and
    /// where each provider's token comes from.
    Auth(auth::AuthArgs),

    /// Run the language server on stdin/stdout, for an editor to start (VS Code, Neovim,
    /// JetBrains through LSP4IJ). Codemarks live in the local store: MARGINALIA_DATA_DIR
    /// chooses its folder.
    Lsp,

    /// Run the sync server (HTTPS JSON API, SQLite in --data DIR), or its operator verbs:
    /// `serve invite` bootstraps a team, `serve verify-audit` checks the audit log.
    Serve(serve::ServeArgs),
}

/// Runs the command line and returns the process exit code.
pub fn run() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Locate(args) => locate::run(args),
        Command::Codemark(args) => codemark::run(args),
        Command::Review(args) => review::run(args),
        Command::Login(args) => sync::login(args),
        Command::Logout => sync::logout(),
        Command::Sync(args) => sync::sync(args),
        Command::Outbox(args) => sync::outbox(args),
        Command::Egress(args) => sync::egress(args),
        Command::Export(args) => sync::export(args),
        Command::Check(args) => check::run(args),
        Command::Pr(args) => pr::run(args),
        Command::Auth(args) => auth::run(args),
        Command::Lsp => lsp(),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The language server owns stdout; it stops when the editor says exit or closes the pipe.
fn lsp() -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    runtime.block_on(crate::lsp::serve_stdio());
    // Blocking work still running (a relocation pass) is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr (stdout carries answers, and for `lsp` the protocol); `MARGINALIA_LOG`
/// sets the level or filter (`debug`, `marginalia=trace`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MARGINALIA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
