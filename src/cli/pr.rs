//! `marginalia pr ...`: pull requests on GitHub, GitLab and Bitbucket from the command line.
//! Glue over [`crate::providers`]; what it prints is for people unless `--json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::anchor::{LineRange, Text};
use crate::git::{Repo, Target};
use crate::keychain::Keychain;
use crate::providers::place::{self, Where};
use crate::providers::{
    ChangedFile, Forge, HttpOptions, NewComment, NewPull, ProviderError, PullRequest, Side, Thread,
};
use crate::store::Store;

use super::codemark::{read_body, repo_path};

#[derive(Args)]
#[command(after_help = r#"Examples:
  marginalia pr current                       # the pull request of the branch you are on
  marginalia pr list --json
  marginalia pr comments                      # review threads, at their lines in your working copy
  marginalia pr comment --path src/cache.rs --lines 40-42 --body "Why forever?"
  marginalia pr reply 1234 --body "Fixed in the next push"
  marginalia pr create --title "Cache: expire entries" --base main --draft

The provider and repository come from the remotes (`upstream`, else `origin`, else the first
on a known host; --remote chooses). Tokens: `marginalia auth login PROVIDER`, or GITHUB_TOKEN,
GITLAB_TOKEN, BITBUCKET_TOKEN and the like (`marginalia auth status` says which is used).
Every request is recorded in the egress ledger (`marginalia egress`).

Exit codes: 0 done; 1 not found or refused (no pull request for the branch, lines not in the
diff, a text held back for a likely secret, rate limited); 2 usage or environment (no token,
a token refused or lacking a scope, no provider remote, host unreachable)."#)]
pub struct PrArgs {
    #[command(subcommand)]
    verb: Verb,
}

/// Options every verb takes.
#[derive(Args)]
struct Common {
    /// The repository (its top folder or any folder inside).
    #[arg(long, value_name = "DIR", default_value = ".", global = true)]
    repo: PathBuf,
    /// The git remote that names the repository on the code host.
    #[arg(long, value_name = "NAME", global = true)]
    remote: Option<String>,
    /// Print JSON for programs instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Verb {
    /// The open pull request of the branch you are on.
    Current {
        #[command(flatten)]
        common: Common,
    },
    /// The open pull requests.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// One pull request (the current branch's when no number is given).
    Show {
        number: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// The files a pull request changes.
    Files {
        number: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Review threads with their replies, each at its lines in the working copy now.
    #[command(after_help = "Each thread is placed where its code is now in the working tree, relocated from the \
                            commit it was made on (through later commits, your local edits and renames): intact, \
                            modified, or deleted (then where the code used to be); outdated when the pull request \
                            changed that code since.")]
    Comments {
        number: Option<u64>,
        /// Only threads on this file.
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Comment on lines of the pull request's diff.
    #[command(after_help = r#"Examples:
  marginalia pr comment --path src/cache.rs --lines 40 --body "Off by one?"
  marginalia pr comment --path src/cache.rs --lines 40-44 --body - < review.md
  marginalia pr comment --path src/old.rs --lines 12 --side old --body "Why was this removed?"

New-side lines are lines of the file in your working tree; they must be the same in the pull
request's head commit (commit and push first), and are sent as that commit's line numbers.
Old-side lines are lines of the file before the change. Lines the diff does not show are
refused, saying which it shows; --file comments on the whole file instead (GitHub, Bitbucket).
Bitbucket has no multi-line comments: a range is anchored on its last line."#)]
    Comment {
        number: Option<u64>,
        #[arg(long, value_name = "PATH")]
        path: String,
        /// `A-B` or `A`, 1-based.
        #[arg(long, value_name = "A-B", value_parser = LineRange::parse)]
        lines: LineRange,
        /// `new` (the changed file, the default) or `old` (the file before the change).
        #[arg(long, value_name = "SIDE", default_value = "new")]
        side: Side,
        /// The comment (Markdown); `-` reads it from stdin.
        #[arg(long, value_name = "TEXT")]
        body: String,
        /// Comment on the whole file.
        #[arg(long)]
        file: bool,
        /// Send it even if it looks like it holds a credential (recorded in the egress ledger).
        #[arg(long)]
        anyway: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Reply to a review thread (its id as `pr comments` shows it).
    Reply {
        thread: String,
        number: Option<u64>,
        /// The reply (Markdown); `-` reads it from stdin.
        #[arg(long, value_name = "TEXT")]
        body: String,
        #[arg(long)]
        anyway: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Open a pull request from the branch you are on (push it first).
    Create {
        #[arg(long, value_name = "TEXT")]
        title: String,
        /// The description (Markdown); `-` reads it from stdin.
        #[arg(long, value_name = "TEXT")]
        body: Option<String>,
        /// The branch to merge into; the repository's default branch when not given.
        #[arg(long, value_name = "BRANCH")]
        base: Option<String>,
        #[arg(long)]
        draft: bool,
        #[arg(long)]
        anyway: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// Runs a `pr` verb; a provider's refusal is printed and becomes its exit code.
pub fn run(args: PrArgs) -> Result<ExitCode> {
    let result = match args.verb {
        Verb::Current { common } => current(&common),
        Verb::List { common } => list(&common),
        Verb::Show { number, common } => show(&common, number),
        Verb::Files { number, common } => files(&common, number),
        Verb::Comments { number, path, common } => comments(&common, number, path.as_deref()),
        Verb::Comment { number, path, lines, side, body, file, anyway, common } => {
            comment(&common, number, &path, lines, side, body, file, anyway)
        }
        Verb::Reply { thread, number, body, anyway, common } => reply(&common, number, &thread, body, anyway),
        Verb::Create { title, body, base, draft, anyway, common } => create(&common, title, body, base, draft, anyway),
    };
    exit_for(result)
}

/// A provider error exits with its own code; anything else is left to the caller (code 2).
pub(super) fn exit_for(result: Result<ExitCode>) -> Result<ExitCode> {
    match result {
        Err(e) => match e.downcast_ref::<ProviderError>() {
            Some(p) => {
                eprintln!("error: {p}");
                Ok(ExitCode::from(p.exit_code()))
            }
            None => Err(e),
        },
        ok => ok,
    }
}

/// The repository, the code host, and a runtime to talk to it.
struct Session {
    repo: Repo,
    forge: Forge,
    rt: tokio::runtime::Runtime,
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

/// The keychain as a token source, or why there is none.
pub(super) fn keychain() -> std::result::Result<Keychain, String> {
    Keychain::open().map_err(|e| e.to_string())
}

fn session(common: &Common) -> Result<Session> {
    let repo = Repo::discover(&common.repo)?;
    let store = Arc::new(Mutex::new(Store::open_default()?));
    let forge = crate::providers::connect(&repo, store, common.remote.as_deref(), HttpOptions::from_env())?;
    Ok(Session { repo, forge, rt: runtime()? })
}

impl Session {
    /// The branch on the provider that HEAD's branch is pushed to, and the owner of the
    /// repository it is pushed to when that is another (a fork).
    fn head_branch(&self) -> Result<(String, Option<String>)> {
        Ok(crate::providers::detect::head_branch(&self.repo, &self.forge.repo)?)
    }

    fn current(&self) -> Result<Option<PullRequest>> {
        let (branch, owner) = self.head_branch()?;
        Ok(self.rt.block_on(self.forge.pull_for_branch(&branch, owner.as_deref()))?)
    }

    /// The pull request named, or the current branch's.
    fn pull(&self, number: Option<u64>) -> Result<PullRequest> {
        if let Some(n) = number {
            return Ok(self.rt.block_on(self.forge.pull(n))?);
        }
        match self.current()? {
            Some(pr) => Ok(pr),
            None => {
                let (branch, _) = self.head_branch()?;
                Err(ProviderError::NotFound(format!(
                    "no open {} for branch {branch} on {}: give its number, or open one with `marginalia pr create \
                     --title TEXT`",
                    self.forge.provider().pr_noun(),
                    self.forge.subject(None)
                ))
                .into())
            }
        }
    }

    fn label(&self, pr: &PullRequest) -> String {
        self.forge.subject(Some(pr.number))
    }
}

fn pull_json(pr: &PullRequest, s: &Session) -> Value {
    let mut v = serde_json::to_value(pr).unwrap_or(Value::Null);
    v["provider"] = json!(s.forge.provider());
    v["repository"] = json!(s.forge.repo.slug());
    v["host"] = json!(s.forge.repo.host);
    v
}

fn print_pull(pr: &PullRequest, s: &Session) {
    let draft = if pr.draft { " · draft" } else { "" };
    println!("{} · {}{draft} · {}", s.label(pr), pr.state, pr.title);
    let branches = match (&pr.source_branch, &pr.target_branch) {
        (Some(a), Some(b)) => format!("{a} → {b}"),
        (Some(a), None) => a.clone(),
        _ => String::new(),
    };
    let by = pr.author.as_deref().map(|a| format!(" · by {a}")).unwrap_or_default();
    let head = pr.head_sha.as_deref().map(|h| format!(" · head {}", &h[..h.len().min(12)])).unwrap_or_default();
    println!("{branches}{by}{head}");
    if let Some(u) = &pr.url {
        println!("{u}");
    }
}

fn current(c: &Common) -> Result<ExitCode> {
    let s = session(c)?;
    let pr = s.pull(None)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&pull_json(&pr, &s))?);
    } else {
        print_pull(&pr, &s);
    }
    Ok(ExitCode::SUCCESS)
}

fn list(c: &Common) -> Result<ExitCode> {
    let s = session(c)?;
    let pulls = s.rt.block_on(s.forge.open_pulls())?;
    let mine = s.repo.branch().map(|b| s.repo.upstream_of(&b).map_or(b, |(_, n)| n));
    if c.json {
        let v: Vec<Value> = pulls.iter().map(|p| pull_json(p, &s)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if pulls.is_empty() {
        println!("no open {}s on {}", s.forge.provider().pr_noun(), s.forge.subject(None));
    }
    for p in &pulls {
        let here = if p.source_branch.is_some() && p.source_branch == mine { "*" } else { " " };
        let draft = if p.draft { " (draft)" } else { "" };
        println!(
            "{here}{:<6} {:<28} {:<14} {}{draft}",
            s.forge.provider().pr_ref(p.number),
            cut(p.source_branch.as_deref().unwrap_or("?"), 28),
            cut(p.author.as_deref().unwrap_or(""), 14),
            p.title
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() > n { format!("{}…", s.chars().take(n - 1).collect::<String>()) } else { s.to_owned() }
}

fn show(c: &Common, number: Option<u64>) -> Result<ExitCode> {
    let s = session(c)?;
    let pr = s.pull(number)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&pull_json(&pr, &s))?);
        return Ok(ExitCode::SUCCESS);
    }
    print_pull(&pr, &s);
    if let Some(b) = pr.body.as_deref().filter(|b| !b.trim().is_empty()) {
        println!("\n{}", b.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn files(c: &Common, number: Option<u64>) -> Result<ExitCode> {
    let s = session(c)?;
    let pr = s.pull(number)?;
    let list = s.rt.block_on(s.forge.files(&pr))?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for f in &list {
        println!("{}", file_line(f));
    }
    let (add, del) = list.iter().fold((0, 0), |(a, d), f| (a + f.additions.unwrap_or(0), d + f.deletions.unwrap_or(0)));
    let n = list.len();
    println!("{n} file{}, +{add} -{del} in {}", if n == 1 { "" } else { "s" }, s.label(&pr));
    Ok(ExitCode::SUCCESS)
}

fn file_line(f: &ChangedFile) -> String {
    let mark = match f.status.as_str() {
        "added" => "A",
        "removed" | "deleted" => "D",
        "renamed" => "R",
        "modified" | "changed" => "M",
        _ => "?",
    };
    let name = match &f.old_path {
        Some(o) => format!("{o} → {}", f.path),
        None => f.path.clone(),
    };
    let counts = match (f.additions, f.deletions) {
        (Some(a), Some(d)) => format!("  +{a} -{d}"),
        _ => String::new(),
    };
    format!("{mark}  {name}{counts}")
}

fn comments(c: &Common, number: Option<u64>, only: Option<&str>) -> Result<ExitCode> {
    let s = session(c)?;
    let only = only.map(|p| repo_path(&s.repo, p)).transpose()?;
    let pr = s.pull(number)?;
    let threads = s.rt.block_on(s.forge.threads(&pr))?;
    let places = place::in_worktree(&s.repo, &threads);
    let shown: Vec<(&Thread, &Where)> = threads
        .iter()
        .zip(&places)
        .filter(|(t, w)| only.as_deref().is_none_or(|p| w.path() == Some(p) || t.path.as_deref() == Some(p)))
        .collect();
    if c.json {
        let v: Vec<Value> = shown.iter().map(|(t, w)| place::placed_json(t, w)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        println!("no review threads on {}{}", s.label(&pr), only.map(|p| format!(" in {p}")).unwrap_or_default());
    }
    for (t, w) in shown {
        print_thread(t, w);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_thread(t: &Thread, w: &Where) {
    let at = match w {
        Where::Found(r) => format!("{}:{}", r.path, r.lines),
        Where::File(p) => format!("{p} (the whole file)"),
        Where::General => "(the whole pull request)".to_owned(),
        Where::Unknown(_) => match (&t.path, t.lines) {
            (Some(p), Some(l)) => {
                format!("{p}:{l} (as of {})", t.commit.as_deref().map_or("?", |c| &c[..c.len().min(12)]))
            }
            (Some(p), None) => p.clone(),
            _ => "?".to_owned(),
        },
    };
    let mut status = vec![w.status().to_owned()];
    if t.outdated {
        status.insert(0, "outdated".into());
    }
    if matches!(w, Where::File(_) | Where::General) {
        status.clear();
    }
    let state = match t.resolved {
        Some(true) => "resolved",
        Some(false) => "open",
        None => "",
    };
    let n = t.comments.len();
    let mut head = at;
    if !status.is_empty() {
        head.push_str(&format!("  [{}]", status.join(", ")));
    }
    if !state.is_empty() {
        head.push_str(&format!(" · {state}"));
    }
    head.push_str(&format!(" · {n} comment{} · {} thread {}", if n == 1 { "" } else { "s" }, t.provider, t.id));
    println!("{head}");
    if let Where::Unknown(why) = w {
        println!("  (not placed: {why})");
    }
    for c in &t.comments {
        let when = c.created.as_deref().map(|d| format!(" · {}", &d[..d.len().min(10)])).unwrap_or_default();
        let first = c.body.lines().next().unwrap_or("");
        let more = if c.body.lines().count() > 1 { " …" } else { "" };
        println!("  {}{when}: {first}{more}", c.author.as_deref().unwrap_or("someone"));
    }
    println!();
}

#[allow(clippy::too_many_arguments)]
fn comment(
    c: &Common,
    number: Option<u64>,
    path: &str,
    lines: LineRange,
    side: Side,
    body: String,
    file_level: bool,
    anyway: bool,
) -> Result<ExitCode> {
    let s = session(c)?;
    let path = repo_path(&s.repo, path)?;
    let body = read_body(body)?;
    if body.trim().is_empty() {
        bail!("the comment is empty: say something");
    }
    let pr = s.pull(number)?;
    let sent_lines = if side == Side::New && !file_level {
        let head = pr.head_sha.as_deref().context("the pull request names no head commit")?;
        let Some(file) = s.repo.file(Target::Worktree, &path)? else {
            bail!("{path} does not exist in the working tree of {}", s.repo.root().display());
        };
        map_lines(&s.repo, head, &path, &file.text, lines)?
    } else {
        lines
    };
    let new = NewComment { path: path.clone(), lines: sent_lines, side, body, file_level, anyway };
    let posted = s.rt.block_on(s.forge.comment(&pr, &new))?;
    if c.json {
        let mut v = serde_json::to_value(&posted)?;
        v["path"] = json!(path);
        v["lines"] = json!({ "start": sent_lines.start, "end": sent_lines.end });
        v["side"] = json!(side);
        v["pullRequest"] = json!(s.label(&pr));
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let at = if file_level { format!("{path} (the whole file)") } else { format!("{path}:{sent_lines}") };
        let moved = if sent_lines != lines && !file_level {
            format!(" (your lines {lines} are {sent_lines} in the head commit)")
        } else {
            String::new()
        };
        println!("commented on {at}{moved} of {}: thread {}", s.label(&pr), posted.thread_id);
        if let Some(n) = &posted.note {
            eprintln!("note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Working-tree lines as the head commit's, with the reason as a refusal when they differ.
fn map_lines(repo: &Repo, head: &str, path: &str, text: &Text, lines: LineRange) -> Result<LineRange> {
    place::lines_at_commit(repo, head, path, text, lines).map_err(|why| ProviderError::NotInDiff(why).into())
}

fn reply(c: &Common, number: Option<u64>, thread: &str, body: String, anyway: bool) -> Result<ExitCode> {
    let s = session(c)?;
    let body = read_body(body)?;
    if body.trim().is_empty() {
        bail!("the reply is empty: say something");
    }
    let pr = s.pull(number)?;
    let posted = s.rt.block_on(s.forge.reply(&pr, thread, &body, anyway))?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&posted)?);
    } else {
        println!("replied in thread {} of {} (comment {})", posted.thread_id, s.label(&pr), posted.comment.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn create(
    c: &Common,
    title: String,
    body: Option<String>,
    base: Option<String>,
    draft: bool,
    anyway: bool,
) -> Result<ExitCode> {
    let s = session(c)?;
    let body = body.map(read_body).transpose()?;
    let (branch, owner) = s.head_branch()?;
    let head = match owner {
        Some(o) if s.forge.provider() == crate::providers::Provider::GitHub => format!("{o}:{branch}"),
        _ => branch,
    };
    let new = NewPull { title, body, head, base, draft, anyway };
    let pr = s.rt.block_on(s.forge.create_pull(&new))?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&pull_json(&pr, &s))?);
    } else {
        println!("opened {}", s.label(&pr));
        print_pull(&pr, &s);
    }
    Ok(ExitCode::SUCCESS)
}
