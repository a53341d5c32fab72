//! `marginalia review ...`: feedback requests from the command line. Glue over
//! [`crate::review`] (building and rebuilding changesets) and [`crate::sync::reviews`] (the
//! server).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::anchor::LineRange;
use crate::api::{self, Side};
use crate::codemark::{self, new_id, rfc3339};
use crate::git::Repo;
use crate::review::{changeset, rebuild};
use crate::store::Store;
use crate::sync::engine::{self, Pushed};
use crate::sync::reviews::{self, Queue, Whose};
use crate::sync::{Client, outbox};

use super::sync::{runtime, session_of, shared_store};

#[derive(Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    verb: Verb,
    /// The repository (any folder inside it).
    #[arg(long, value_name = "DIR", default_value = ".", global = true)]
    repo: PathBuf,
    /// Print JSON for programs instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Verb {
    /// Ask teammates to review the work in this working tree, pushed or not.
    #[command(after_help = r#"The request carries the diffs that rebuild your work on top of a base the reviewers
have: the merge-base with your branch's upstream, else with the remote's default branch
(or --base REV). It holds your local commits since then, staged and unstaged changes, and
untracked files only with --untracked. Binary files are listed, never sent. What the diffs add
is scanned for secrets first; a likely one holds the request back.

Examples:
  marginalia review request --title "Round totals once" --reviewer Bob --reviewer ann@example.com
  marginalia review request --title "WIP parser" --untracked --base origin/main"#)]
    Request {
        #[arg(long, value_name = "TEXT")]
        title: String,
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
        /// A reviewer: a member's name, email or id (repeat for several).
        #[arg(long = "reviewer", value_name = "WHO")]
        reviewers: Vec<String>,
        /// Include files git does not track yet.
        #[arg(long)]
        untracked: bool,
        /// The base to diff against, instead of the merge-base with the upstream.
        #[arg(long, value_name = "REV")]
        base: Option<String>,
        /// Agree to the first send to this server without being asked.
        #[arg(long)]
        yes: bool,
    },
    /// Send a new revision of a request of yours: the work as it is now.
    Amend {
        id: String,
        #[arg(long)]
        untracked: bool,
        #[arg(long, value_name = "REV")]
        base: Option<String>,
    },
    /// Requests for you to review (open ones), or yours with --mine, or all.
    List {
        #[arg(long, conflicts_with = "all")]
        mine: bool,
        #[arg(long)]
        all: bool,
        /// Closed ones too.
        #[arg(long)]
        closed: bool,
    },
    /// The request's diff (unified), rebuilt from your own git objects plus its patches.
    Show {
        id: String,
        /// A revision other than the latest.
        #[arg(long, value_name = "N")]
        revision: Option<u32>,
        /// Only what changed since revision N (the one you read last).
        #[arg(long, value_name = "N", conflicts_with = "revision")]
        since: Option<u32>,
    },
    /// Write the proposed tree into a new folder, leaving your working copy as it is.
    Checkout {
        id: String,
        dir: PathBuf,
        #[arg(long, value_name = "N")]
        revision: Option<u32>,
    },
    /// Comment on lines of a file of the request, on its base (old) or proposed (new) side.
    Comment {
        id: String,
        #[arg(long, value_name = "PATH")]
        path: String,
        #[arg(long, value_name = "A-B", value_parser = LineRange::parse)]
        lines: LineRange,
        #[arg(long, value_name = "old|new", default_value = "new")]
        side: String,
        #[arg(long, value_name = "TEXT")]
        body: String,
        #[arg(long, value_name = "N")]
        revision: Option<u32>,
    },
    /// Approve the latest revision.
    Approve { id: String },
    /// Ask for changes on the latest revision.
    RequestChanges { id: String },
    /// Close the request (yours, or as an admin).
    Close { id: String },
    /// Open a closed request again.
    Reopen { id: String },
}

pub fn run(a: ReviewArgs) -> Result<ExitCode> {
    let store = shared_store()?;
    let (session, client) = session_of(&store)?;
    let rt = runtime()?;
    let server = session.server.clone();
    match a.verb {
        Verb::Request { title, description, reviewers, untracked, base, yes } => {
            let repo = open(&a.repo)?;
            let key = codemark::repo_key(&repo)?;
            let base = match base {
                Some(b) => repo.review_base_at(&b)?,
                None => repo.review_base()?,
            };
            let built = changeset::build(&repo, &base, untracked)?;
            describe(&built, &server);
            let ids = rt.block_on(reviews::reviewers(&client, &reviewers))?;
            let agreed = agree(&rt, &store, &server, yes, &built)?;
            let held = built.secrets.clone();
            let review = api::NewReview {
                id: new_id(),
                repo: key,
                title,
                description,
                reviewers: ids,
                revision: built.revision,
            };
            let id = review.id.clone();
            let (body, code) = reviews::request_body(&review);
            let q = Queue {
                server: &server,
                subject: &id,
                op: "review",
                method: "POST",
                path: "/reviews".into(),
                body: Some(body),
                code_bytes: code,
                held: held.clone(),
            };
            let pushed =
                if agreed { Some(rt.block_on(reviews::send(&store, &client, q))?) } else { queue_only(&store, q)? };
            report(&id, pushed.as_ref(), held.as_deref(), a.json)
        }
        Verb::Amend { id, untracked, base } => {
            let repo = open(&a.repo)?;
            let review = rt.block_on(reviews::get(&client, &id))?;
            let base = match base {
                Some(b) => repo.review_base_at(&b)?,
                None => repo.review_base()?,
            };
            let built = changeset::build(&repo, &base, untracked)?;
            describe(&built, &server);
            let held = built.secrets.clone();
            let (body, code) = reviews::revision_body(&built.revision);
            let q = Queue {
                server: &server,
                subject: &review.id,
                op: "revision",
                method: "POST",
                path: format!("/reviews/{}/revisions", review.id),
                body: Some(body),
                code_bytes: code,
                held: held.clone(),
            };
            let pushed = rt.block_on(reviews::send(&store, &client, q))?;
            report(&review.id, Some(&pushed), held.as_deref(), a.json)
        }
        Verb::List { mine, all, closed } => {
            let whose = if mine {
                Whose::Mine
            } else if all {
                Whose::All
            } else {
                Whose::ForMe
            };
            let list = rt.block_on(reviews::list(&client, whose, closed))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                println!("no feedback requests");
            }
            for r in &list {
                let files = r.revisions.last().map_or(0, |v| v.files.len());
                println!(
                    "{}  {}  {}  by {}  r{} · {files} files · {}",
                    &r.id[..r.id.len().min(13)],
                    r.status,
                    r.title,
                    r.author,
                    r.revisions.last().map_or(0, |v| v.number),
                    rfc3339(r.updated)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Show { id, revision, since } => {
            let repo = open(&a.repo)?;
            let review = rt.block_on(reviews::get(&client, &id))?;
            let rev = rt.block_on(reviews::revision(&client, &review, revision))?;
            let files = rebuild::rebuild(&repo, &rev)?;
            if let Some(n) = since {
                if n >= rev.number {
                    bail!("revision {n} is the latest ({}); nothing came since", rev.number);
                }
                let earlier = rt.block_on(reviews::revision(&client, &review, Some(n)))?;
                let earlier_files = rebuild::rebuild(&repo, &earlier)?;
                let diff = rebuild::interdiff(&repo, (&earlier, &earlier_files), (&rev, &files))?;
                if a.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &json!({"review": review.id, "since": n, "revision": rev.number, "diff": diff})
                        )?
                    );
                } else {
                    eprintln!("{}: what changed from revision {n} to revision {}", review.title, rev.number);
                    print!("{diff}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if a.json {
                let v = json!({
                    "review": review,
                    "revision": rev.number,
                    "base": rev.base,
                    "baseNote": rev.base_note,
                    "files": files.iter().map(|f| json!({"oldPath": f.old_path, "newPath": f.new_path, "binary": f.binary})).collect::<Vec<_>>(),
                    "diff": rebuild::unified(&files),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                eprintln!(
                    "{} · {} · by {} · revision {} on {} ({})",
                    review.title,
                    review.status,
                    review.author,
                    rev.number,
                    &rev.base[..rev.base.len().min(12)],
                    rev.base_note
                );
                print!("{}", rebuild::unified(&files));
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Checkout { id, dir, revision } => {
            let repo = open(&a.repo)?;
            let review = rt.block_on(reviews::get(&client, &id))?;
            let rev = rt.block_on(reviews::revision(&client, &review, revision))?;
            let files = rebuild::rebuild(&repo, &rev)?;
            let written = rebuild::checkout(&repo, &rev, &files, &dir)?;
            eprintln!(
                "wrote revision {} of \"{}\" ({} files) into {}; your working copy is untouched",
                rev.number,
                review.title,
                written.files,
                dir.display()
            );
            for b in &written.binary {
                eprintln!("  {b}: binary, not sent (the base version is there, if it had one)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Comment { id, path, lines, side, body, revision } => {
            let side = match side.as_str() {
                "old" => Side::Old,
                "new" => Side::New,
                other => bail!("--side is `old` (the base) or `new` (the proposed version), not `{other}`"),
            };
            let repo = open(&a.repo)?;
            let review = rt.block_on(reviews::get(&client, &id))?;
            let rev = rt.block_on(reviews::revision(&client, &review, revision))?;
            let files = rebuild::rebuild(&repo, &rev)?;
            let author = codemark::author(Some(&repo));
            let c = crate::review::comment::new(&review, &rev, &files, &path, lines, side, body, author)
                .map_err(anyhow::Error::msg)?;
            let cid = c.id.clone();
            let queued = {
                let s = store.lock().unwrap_or_else(|e| e.into_inner());
                outbox::create(&s, c)?.1
            };
            if let Some(why) = &queued.held {
                eprintln!("{why}\nSaved here, not sent: `marginalia outbox` shows it.");
            }
            let pushed = rt.block_on(engine::push(&store, &client))?;
            stopped(&pushed);
            if a.json {
                println!("{}", json!({"id": cid, "review": review.id}));
            } else {
                println!("{cid}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Approve { id } => verdict(&rt, &store, &client, &server, &id, "approved", a.json),
        Verb::RequestChanges { id } => verdict(&rt, &store, &client, &server, &id, "changes_requested", a.json),
        Verb::Close { id } => status(&rt, &store, &client, &server, &id, "closed", a.json),
        Verb::Reopen { id } => status(&rt, &store, &client, &server, &id, "open", a.json),
    }
}

fn open(dir: &Path) -> Result<Repo> {
    let repo = Repo::discover(dir)?;
    if repo.workdir().is_none() {
        bail!("{} is a bare repository: reviews are made from and read in a working tree", dir.display());
    }
    Ok(repo)
}

/// What will leave, for people, on stderr.
fn describe(b: &changeset::Built, server: &str) {
    eprintln!(
        "{} file(s), {} lines of diff ({} bytes) go to {server}, against {} ({})",
        b.revision.files.len(),
        b.lines,
        b.bytes,
        &b.revision.base[..12],
        b.revision.base_note
    );
    for f in &b.binary {
        eprintln!("  {f}: binary, listed but not sent");
    }
}

/// The first send to a server needs the user's agreement: `--yes`, or asked on a terminal.
fn agree(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Mutex<Store>>,
    server: &str,
    yes: bool,
    b: &changeset::Built,
) -> Result<bool> {
    if rt.block_on(engine::approved(store, server))? {
        return Ok(true);
    }
    if yes {
        rt.block_on(engine::approve(store, server))?;
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("the first send to {server} needs your agreement (--yes); the request is queued, not sent");
        return Ok(false);
    }
    let files: Vec<&str> =
        b.revision.files.iter().map(|f| f.new_path.as_deref().or(f.old_path.as_deref()).unwrap_or("")).collect();
    eprint!(
        "This is the first send to {server}: the diffs of {} ({} bytes). Send it, and later changes? [y/N] ",
        files.join(", "),
        b.bytes
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let ok = matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES");
    if ok {
        rt.block_on(engine::approve(store, server))?;
    }
    Ok(ok)
}

fn queue_only(store: &Arc<Mutex<Store>>, q: Queue<'_>) -> Result<Option<Pushed>> {
    store.lock().unwrap_or_else(|e| e.into_inner()).enqueue(&[q.outgoing()])?;
    Ok(None)
}

fn stopped(p: &Pushed) {
    if let Some(e) = &p.stopped {
        eprintln!("not sent yet: {e}");
    }
}

fn report(id: &str, pushed: Option<&Pushed>, held: Option<&str>, json_out: bool) -> Result<ExitCode> {
    let state = match (held, pushed) {
        (Some(_), _) => "held",
        (None, Some(p)) if p.stopped.is_none() => "sent",
        _ => "queued",
    };
    if let Some(why) = held {
        eprintln!(
            "{why}\nNothing was sent. Take the secret out of the files and request again (`marginalia outbox drop SEQ` \
             forgets this one), or send it as it is with `marginalia outbox send SEQ --anyway`."
        );
    }
    if let Some(p) = pushed {
        stopped(p);
    }
    if json_out {
        println!("{}", json!({"id": id, "state": state}));
    } else {
        println!("{id}");
    }
    Ok(if state == "sent" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn verdict(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Mutex<Store>>,
    client: &Client,
    server: &str,
    id: &str,
    verdict: &str,
    json_out: bool,
) -> Result<ExitCode> {
    let review = rt.block_on(reviews::get(client, id))?;
    let body = serde_json::to_string(&api::Verdict { verdict: verdict.to_owned() })?;
    let q = Queue {
        server,
        subject: &review.id,
        op: "verdict",
        method: "POST",
        path: format!("/reviews/{}/verdict", review.id),
        body: Some(body),
        code_bytes: 0,
        held: None,
    };
    let pushed = rt.block_on(reviews::send(store, client, q))?;
    report(&review.id, Some(&pushed), None, json_out)
}

fn status(
    rt: &tokio::runtime::Runtime,
    store: &Arc<Mutex<Store>>,
    client: &Client,
    server: &str,
    id: &str,
    status: &str,
    json_out: bool,
) -> Result<ExitCode> {
    let review = rt.block_on(reviews::get(client, id))?;
    let patch = api::ReviewPatch { status: Some(status.to_owned()), ..Default::default() };
    let q = Queue {
        server,
        subject: &review.id,
        op: "status",
        method: "PATCH",
        path: format!("/reviews/{}", review.id),
        body: Some(serde_json::to_string(&patch)?),
        code_bytes: 0,
        held: None,
    };
    let pushed = rt.block_on(reviews::send(store, client, q))?;
    report(&review.id, Some(&pushed), None, json_out)
}
