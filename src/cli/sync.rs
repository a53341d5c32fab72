//! `marginalia login | logout | sync | outbox | egress | export`: the team server from the
//! command line. Glue over [`crate::sync`]; what it prints is for people unless `--json`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::api;
use crate::codemark::rfc3339;
use crate::store::{Queued, Store};
use crate::sync::client::Call;
use crate::sync::engine::{self, Pushed};
use crate::sync::session::{self, LoginRequest, SERVER_ENV, TOKEN_ENV};
use crate::sync::{Client, SyncError};

#[derive(Args)]
#[command(after_help = r#"Examples:
  marginalia login --server https://marginalia.example.com --invite 7Q2M-…
  marginalia login --server https://marginalia.example.com --invite 7Q2M-… --name ci-bot --print-token

The token goes to the OS keychain (Secret Service or the kernel keyring on Linux, the macOS
Keychain, the Windows Credential Manager); it is never written to a file or the local store.
With --print-token it is printed once instead and nothing is saved here: give it to a CI bot
as MARGINALIA_TOKEN, with MARGINALIA_SERVER. Plain http:// is refused except to this machine.
Set MARGINALIA_CA_CERT to a PEM file to trust a server whose certificate a private authority
signed."#)]
pub struct LoginArgs {
    /// The team server, `https://host[:port]`.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The single-use invite code an admin gave you (`marginalia serve invite` prints one).
    #[arg(long, value_name = "CODE")]
    invite: String,
    /// How teammates see you; git's user.name by default.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Your email; git's user.email by default.
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// A label for this token in `tokens` lists ("laptop", "ci"); the host name by default.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
    /// Print the token once instead of keeping it (for a CI bot); nothing is saved here.
    #[arg(long)]
    print_token: bool,
}

#[derive(Args)]
#[command(after_help = r#"Pushes the outbox (changes made here, each sent once whatever happens
in between), then pulls what teammates changed since the last pull.

Before the first send to a server, it shows exactly what will leave (each request's body: the
codemark's text and the lines of code it is anchored to, with a little context) and asks.
--preview shows it without sending; --yes agrees without asking (scripts, CI).

Exit codes: 0 all sent and pulled; 1 something waits (held back for a likely secret or
refused by the server: see `marginalia outbox`) or the server could not be reached (the
changes stay queued); 2 not signed in, or the first send still needs your agreement.
Headless: MARGINALIA_SERVER and MARGINALIA_TOKEN."#)]
pub struct SyncArgs {
    /// Agree to send (needed once per server when not asked on a terminal).
    #[arg(long)]
    yes: bool,
    /// Show exactly what would be sent, and send nothing.
    #[arg(long)]
    preview: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    verb: Option<OutboxVerb>,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum OutboxVerb {
    /// Changes waiting for the server (the default).
    List,
    /// Let a held change go: with the secrets replaced (--redact), or as it is (--anyway,
    /// recorded in the egress ledger).
    Send {
        seq: i64,
        #[arg(long, conflicts_with = "anyway", required_unless_present = "anyway")]
        redact: bool,
        #[arg(long)]
        anyway: bool,
    },
    /// Keep a change on this machine only: it is never sent.
    Drop { seq: i64 },
}

#[derive(Args)]
#[command(after_help = "Every request that left this machine for the team server or a code host: when, where, \
                        what about, how many bytes of code. Newest first. Tokens are never recorded.")]
pub struct EgressArgs {
    /// How many, newest first.
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    /// Only requests that carried code.
    #[arg(long)]
    code_only: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(after_help = "Everything the team server holds about you, as JSON: your membership, your tokens (never \
                        the tokens themselves), the codemarks you wrote with their threads, and your replies.")]
pub struct ExportArgs {
    /// Write it to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

pub(super) fn shared_store() -> Result<Arc<Mutex<Store>>> {
    Ok(Arc::new(Mutex::new(Store::open_default()?)))
}

/// The session, or an error saying how to sign in.
pub(super) fn session_of(store: &Arc<Mutex<Store>>) -> Result<(session::Session, Client)> {
    let s = session::current(&store.lock().unwrap_or_else(|e| e.into_inner()))?;
    let Some(s) = s else {
        bail!(
            "not signed in to a team server: run `marginalia login --server URL --invite CODE`, or set {SERVER_ENV} and \
             {TOKEN_ENV}"
        );
    };
    let client = Client::new(&s.server, Some(s.token.clone()), store.clone())?;
    Ok((s, client))
}

pub fn login(a: LoginArgs) -> Result<ExitCode> {
    let store = shared_store()?;
    let git_config = |key: &str| {
        std::process::Command::new("git")
            .args(["config", key])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let name = a
        .name
        .or_else(|| git_config("user.name"))
        .or_else(|| std::env::var("USER").ok())
        .context("who are you? give --name (git's user.name is not set)")?;
    let email = a.email.or_else(|| git_config("user.email"));
    let label = a.label.or_else(hostname).or_else(|| Some("marginalia".into()));
    let req = LoginRequest {
        server: a.server,
        invite: a.invite,
        name,
        email,
        token_label: label,
        print_token: a.print_token,
    };
    let done = runtime()?.block_on(session::login(store, req))?;
    let i = &done.issued;
    match done.kept_in {
        Some(place) => {
            eprintln!(
                "signed in to team {} as {} ({}); the token is kept in {place}",
                i.team.name,
                i.member.name,
                i.member.role.as_str()
            );
            eprintln!("codemarks you make from now on are shared with the team; bookmarks stay private");
        }
        None => {
            eprintln!(
                "signed in to team {} as {} ({}); the token, shown this once (set it as {TOKEN_ENV}):",
                i.team.name,
                i.member.name,
                i.member.role.as_str()
            );
            println!("{}", i.token);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|s| !s.is_empty())
}

pub fn logout() -> Result<ExitCode> {
    let store = Store::open_default()?;
    let out = session::logout(&store)?;
    let Some(server) = out.server else {
        eprintln!("not signed in to a team server");
        return Ok(ExitCode::SUCCESS);
    };
    let token = if out.forgot_token { "; its token is removed from the keychain" } else { "" };
    eprintln!("signed out of {server}{token}");
    if out.unsent > 0 {
        eprintln!(
            "{} change(s) had not reached it; they stay queued here and go when you sign in to {server} again",
            out.unsent
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn sync(a: SyncArgs) -> Result<ExitCode> {
    let store = shared_store()?;
    let (session, client) = session_of(&store)?;
    let server = session.server.clone();
    let rt = runtime()?;
    let rows = {
        let s = store.lock().unwrap_or_else(|e| e.into_inner());
        s.outbox(&server)?
    };
    let ready: Vec<&Queued> = rows.iter().filter(|r| r.out.held.is_none()).collect();
    if a.preview {
        print_preview(&server, &ready);
        return Ok(ExitCode::SUCCESS);
    }
    if a.yes && !rt.block_on(engine::approved(&store, &server))? {
        rt.block_on(engine::approve(&store, &server))?;
    }
    if !ready.is_empty() && !rt.block_on(engine::approved(&store, &server))? {
        if !ask_first_send(&server, &ready)? {
            eprintln!(
                "nothing was sent. `marginalia sync --preview` shows what would leave; `marginalia sync --yes` sends it"
            );
            return Ok(ExitCode::from(2));
        }
        rt.block_on(engine::approve(&store, &server))?;
    }
    let pushed = rt.block_on(engine::push(&store, &client))?;
    let pulled = match &pushed.stopped {
        Some(_) => None,
        None => Some(rt.block_on(engine::pull(&store, &client))),
    };
    report(&server, &pushed, pulled.as_ref(), a.json)
}

fn report(
    server: &str,
    pushed: &Pushed,
    pulled: Option<&Result<engine::Pulled, SyncError>>,
    json_out: bool,
) -> Result<ExitCode> {
    let pull_error = pulled.and_then(|p| p.as_ref().err()).map(ToString::to_string);
    let error = pushed.stopped.as_ref().map(ToString::to_string).or(pull_error);
    let ok = pulled.and_then(|p| p.as_ref().ok());
    if json_out {
        let v = json!({
            "server": server,
            "sent": pushed.sent,
            "held": pushed.held.iter().map(row_json).collect::<Vec<_>>(),
            "pulled": ok.map(|p| p.events),
            "repositories": ok.map(|p| &p.repos),
            "skipped": ok.map(|p| &p.skipped),
            "error": error,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("sent {} change(s) to {server}", pushed.sent);
        for h in &pushed.held {
            println!(
                "  waiting: #{} {} {}: {}",
                h.seq,
                h.out.op,
                short(&h.out.codemark_id),
                h.out.held.as_deref().unwrap_or("")
            );
        }
        if !pushed.held.is_empty() {
            println!(
                "  (`marginalia outbox` lists them; `marginalia outbox send SEQ --redact | --anyway` or `drop SEQ`)"
            );
        }
        if let Some(p) = ok {
            println!("took {} change(s) from {server} ({} repositories)", p.events, p.repos.len());
            for s in &p.skipped {
                println!("  skipped: {s}");
            }
        }
        if let Some(e) = &error {
            eprintln!("error: {e}");
        }
    }
    Ok(if error.is_some() || !pushed.held.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

fn row_json(q: &Queued) -> Value {
    json!({
        "seq": q.seq,
        "server": q.out.server,
        "op": q.out.op,
        "codemark": q.out.codemark_id,
        "request": format!("{} {}{}", q.out.method, api::PREFIX, q.out.path),
        "codeBytes": q.out.code_bytes,
        "created": rfc3339(q.created),
        "attempts": q.attempts,
        "held": q.out.held,
        "lastError": q.last_error,
    })
}

fn print_preview(server: &str, rows: &[&Queued]) {
    let code: usize = rows.iter().map(|r| r.out.code_bytes).sum();
    println!("{} request(s) would go to {server}, {code} bytes of code in all:", rows.len());
    for r in rows {
        println!("\n#{} {} {}{}  ({} bytes of code)", r.seq, r.out.method, api::PREFIX, r.out.path, r.out.code_bytes);
        if let Some(b) = &r.out.body {
            let pretty = serde_json::from_str::<Value>(b)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| b.clone());
            println!("{pretty}");
        }
    }
}

/// Shows what the first send carries and asks, on a terminal. `false` when not agreed (or no
/// terminal to ask on).
pub(super) fn ask_first_send(server: &str, rows: &[&Queued]) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!("the first send to {server} needs your agreement, and there is no terminal to ask on");
        return Ok(false);
    }
    print_preview(server, rows);
    eprint!("\nThis is the first send to {server}. Send these, and later changes, to it? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub fn outbox(a: OutboxArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    match a.verb.unwrap_or(OutboxVerb::List) {
        OutboxVerb::List => {
            let rows = store.outbox_all()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows.iter().map(row_json).collect::<Vec<_>>())?);
            } else if rows.is_empty() {
                println!("the outbox is empty: everything made here reached its server");
            } else {
                for r in &rows {
                    let state = match (&r.out.held, &r.last_error) {
                        (Some(h), _) => format!("held: {h}"),
                        (None, Some(e)) => format!("{} tries; last: {e}", r.attempts),
                        (None, None) => "ready".into(),
                    };
                    println!(
                        "#{}  {}  {} {}  {} bytes of code  → {}  {state}",
                        r.seq,
                        rfc3339(r.created),
                        r.out.op,
                        short(&r.out.codemark_id),
                        r.out.code_bytes,
                        r.out.server
                    );
                }
            }
        }
        OutboxVerb::Send { seq, redact, anyway: _ } => {
            let row = store
                .outbox_all()?
                .into_iter()
                .find(|r| r.seq == seq)
                .with_context(|| format!("no #{seq} in the outbox"))?;
            let why = row.out.held.clone().unwrap_or_default();
            if redact && matches!(row.out.op.as_str(), "review" | "revision") {
                bail!(
                    "a review's diffs cannot be redacted after the fact (the reviewer checks each file against your \
                     version): take the secret out of the files and request again, then `marginalia outbox drop {seq}`; \
                     or send it as it is with --anyway"
                );
            }
            if redact {
                let body = row.out.body.as_deref().unwrap_or("null");
                let (redacted, code, found) = crate::sync::outbox::redact_body(body);
                store.outbox_release(
                    seq,
                    Some((&redacted, code)),
                    Some(&format!("redacted before sending: {found}")),
                )?;
                eprintln!("#{seq} goes with {found} redacted at the next `marginalia sync`");
            } else {
                let note = format!("sent as it was, despite: {why}");
                store.outbox_release(seq, None, Some(&note))?;
                eprintln!(
                    "#{seq} goes as it is at the next `marginalia sync`; the egress ledger notes that you chose so"
                );
            }
        }
        OutboxVerb::Drop { seq } => {
            if !store.outbox_drop(seq)? {
                bail!("no #{seq} in the outbox");
            }
            eprintln!("#{seq} dropped: that change stays on this machine");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn egress(a: EgressArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let rows = store.egress(a.limit, a.code_only)?;
    if a.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|e| {
                json!({
                    "at": rfc3339(e.at), "destination": e.destination, "method": e.method,
                    "endpoint": e.endpoint, "subject": e.subject, "codeBytes": e.code_bytes,
                    "bodyBytes": e.body_bytes, "status": e.status, "note": e.note,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("nothing has left this machine");
    }
    for e in &rows {
        let status = e.status.map_or("no answer".to_owned(), |s| s.to_string());
        // Codemark ids are shortened; a pull request (`github:acme/shop#42`) is shown whole.
        let about = e
            .subject
            .as_deref()
            .map(|s| format!("  {}", if s.contains(':') { s } else { short(s) }))
            .unwrap_or_default();
        let note = e.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
        println!(
            "{}  {} {}{}  {status}{about}  {} bytes of code, {} in all{note}",
            rfc3339(e.at),
            e.method,
            e.destination,
            e.endpoint,
            e.code_bytes,
            e.body_bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(a: ExportArgs) -> Result<ExitCode> {
    let store = shared_store()?;
    let (_, client) = session_of(&store)?;
    let data: api::Export = runtime()?.block_on(client.json(Call::get("/export")))?;
    let text = serde_json::to_string_pretty(&data)?;
    match a.output {
        Some(path) => {
            std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote your data from {} to {}", client.server(), path.display());
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
