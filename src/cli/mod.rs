//! The command line: argument parsing and what people and scripts read. Glue only: the work
//! is done in [`crate::locate`], [`crate::anchor`] and [`crate::git`].
//!
//! Exit codes: 0 when the command did its job; 1 when a single anchor could not be located;
//! 2 for usage or environment errors (a bad flag, a folder that is not a repository, an
//! unknown revision), with a message that says what is wrong.

mod locate;

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
}

/// Runs the command line and returns the process exit code.
pub fn run() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Locate(args) => locate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr (stdout carries answers, and for `lsp` the protocol); `MARGINALIA_LOG`
/// sets the level or filter (`debug`, `marginalia=trace`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MARGINALIA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
