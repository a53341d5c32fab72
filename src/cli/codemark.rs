//! `marginalia codemark ...`: what the editor does with codemarks, for scripts and CI, over the
//! same local store. `--json` output is for programs; the rest is for people.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::anchor::{LineRange, Status};
use crate::codemark::{self, Codemark, Kind, MarkStatus, Reply, StoredAnchor, new_id, now_ms, rfc3339};
use crate::git::{Repo, Target};
use crate::locate::Located;
use crate::store::{Edit, Store};
use crate::sync::outbox;

#[derive(Args)]
pub struct CodemarkArgs {
    #[command(subcommand)]
    verb: Verb,
}

/// Options every verb takes.
#[derive(Args)]
struct Common {
    /// The repository (its top folder or any folder inside).
    #[arg(long, value_name = "DIR", default_value = ".", global = true)]
    repo: PathBuf,

    /// Print JSON for programs instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Verb {
    /// Start a discussion on lines of a file in the working tree.
    #[command(after_help = r#"Examples:
  marginalia codemark add --path src/cache.rs --lines 40-52 --body "Why is this cached forever?" --kind question
  git diff | marginalia codemark add --path src/cache.rs --lines 40 --body - --kind issue

Lines that HEAD holds unchanged are anchored to HEAD; lines not committed yet are anchored
to their text and move onto the commit that holds them once it exists."#)]
    Add {
        /// The file, relative to the repository's top folder (or to the current folder).
        #[arg(long, value_name = "PATH")]
        path: String,
        /// The lines, `A-B` or `A` (1-based, inclusive), as the file on disk has them.
        #[arg(long, value_name = "A-B", value_parser = LineRange::parse)]
        lines: LineRange,
        /// The discussion's first message (Markdown); `-` reads it from stdin.
        #[arg(long, value_name = "TEXT")]
        body: String,
        /// comment, question, issue or bookmark.
        #[arg(long, value_name = "KIND", default_value = "comment")]
        kind: Kind,
        /// A short title.
        #[arg(long, value_name = "TEXT")]
        title: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List codemarks with where their code is now in the working tree.
    List {
        /// Only codemarks whose code is (or was) in this file.
        #[arg(long, value_name = "PATH")]
        path: Option<String>,
        /// Only open or only resolved ones.
        #[arg(long, value_name = "STATUS")]
        status: Option<MarkStatus>,
        #[command(flatten)]
        common: Common,
    },
    /// One codemark with its thread.
    Show {
        /// Its id, or enough of its start to name it alone.
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Add a reply to a codemark's thread.
    Reply {
        id: String,
        /// The reply (Markdown); `-` reads it from stdin.
        #[arg(long, value_name = "TEXT")]
        body: String,
        #[command(flatten)]
        common: Common,
    },
    /// Mark a codemark resolved.
    Resolve {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Open a resolved codemark again.
    Reopen {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Change a codemark's body or title.
    Edit {
        id: String,
        #[arg(long, value_name = "TEXT")]
        body: Option<String>,
        /// The new title (an empty one removes it).
        #[arg(long, value_name = "TEXT")]
        title: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a codemark and its thread from the local store.
    Delete {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

pub fn run(args: CodemarkArgs) -> Result<ExitCode> {
    match args.verb {
        Verb::Add { path, lines, body, kind, title, common } => add(&common, &path, lines, body, kind, title),
        Verb::List { path, status, common } => list(&common, path.as_deref(), status),
        Verb::Show { id, common } => show(&common, &id),
        Verb::Reply { id, body, common } => {
            let store = Store::open_default()?;
            let (repo, _) = open_repo(&common.repo)?;
            let id = resolve_id(&store, &id)?;
            let body = read_body(body)?;
            let author = codemark::author(Some(&repo));
            let q = outbox::reply(&store, &id, &Reply { id: new_id(), author, body, created: now_ms() })?;
            tell(q.as_ref());
            done(&common, &store, &id, "replied to")
        }
        Verb::Resolve { id, common } => set_status(&common, &id, MarkStatus::Resolved),
        Verb::Reopen { id, common } => set_status(&common, &id, MarkStatus::Open),
        Verb::Edit { id, body, title, common } => {
            if body.is_none() && title.is_none() {
                bail!("nothing to edit: give --body, --title or both");
            }
            let store = Store::open_default()?;
            let id = resolve_id(&store, &id)?;
            let body = body.map(read_body).transpose()?;
            let title = title.map(|t| Some(t).filter(|t| !t.trim().is_empty()));
            let q = outbox::edit(&store, &id, &Edit { body, title, status: None }, now_ms())?;
            tell(q.as_ref());
            done(&common, &store, &id, "edited")
        }
        Verb::Delete { id, common } => {
            let store = Store::open_default()?;
            let id = resolve_id(&store, &id)?;
            outbox::delete(&store, &id)?;
            if common.json {
                println!("{}", json!({ "id": id, "deleted": true }));
            } else {
                println!("deleted {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_repo(dir: &Path) -> Result<(Repo, String)> {
    let repo = Repo::discover(dir)?;
    if repo.workdir().is_none() {
        bail!("{} is a bare repository: codemarks live on a working tree", dir.display());
    }
    let key = codemark::repo_key(&repo)?;
    Ok((repo, key))
}

/// `-` means stdin.
pub(super) fn read_body(body: String) -> Result<String> {
    if body != "-" {
        return Ok(body);
    }
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).context("reading the body from stdin")?;
    Ok(s.trim_end().to_owned())
}

/// A path given on the command line, as a path in the repository: relative to the current
/// folder when it names a file from here, else relative to the repository's top.
pub(super) fn repo_path(repo: &Repo, path: &str) -> Result<String> {
    let root = std::fs::canonicalize(repo.root()).unwrap_or_else(|_| repo.root().to_owned());
    if let Ok(full) = std::fs::canonicalize(path) {
        if let Ok(rel) = full.strip_prefix(&root) {
            return Ok(rel.to_string_lossy().replace('\\', "/"));
        }
        if Path::new(path).is_absolute() {
            bail!("{path} is outside the repository at {}", root.display());
        }
    }
    crate::locate::batch::check_path(path).map_err(anyhow::Error::msg)?;
    Ok(path.trim_start_matches("./").to_owned())
}

/// The full id of a codemark named by its id or a unique start of it.
fn resolve_id(store: &Store, given: &str) -> Result<String> {
    if given.len() < 4 {
        bail!("`{given}` is too short to name a codemark: give at least 4 characters of its id");
    }
    let ids = store.find_ids(&given.to_ascii_lowercase())?;
    match ids.as_slice() {
        [] => bail!("no codemark `{given}` in {}", store.path().display()),
        [one] => Ok(one.clone()),
        many => bail!("`{given}` names {} codemarks ({}...): give more of the id", many.len(), many[0]),
    }
}

fn add(
    common: &Common,
    path: &str,
    lines: LineRange,
    body: String,
    kind: Kind,
    title: Option<String>,
) -> Result<ExitCode> {
    let (repo, key) = open_repo(&common.repo)?;
    let path = repo_path(&repo, path)?;
    let body = read_body(body)?;
    if body.trim().is_empty() && kind != Kind::Bookmark {
        bail!("the body is empty: say something (only bookmarks may be empty)");
    }
    let Some(file) = repo.file(Target::Worktree, &path)? else {
        bail!("{path} does not exist in the working tree of {}", repo.root().display());
    };
    let anchor = codemark::anchor_selection(&repo, &path, &file.text, lines)?;
    let store = Store::open_default()?;
    let now = now_ms();
    let c = Codemark {
        id: new_id(),
        repo: key,
        kind,
        title: title.filter(|t| !t.trim().is_empty()),
        body,
        author: codemark::author(Some(&repo)),
        status: MarkStatus::Open,
        anchors: vec![anchor],
        replies: Vec::new(),
        created: now,
        updated: now,
        shared: None,
        review: None,
    };
    let (c, q) = outbox::create(&store, c)?;
    tell(Some(&q));
    if common.json {
        let mut v = codemark_json(&c);
        place_json(&mut v, &path, lines, Status::Intact);
        println!("{v}");
    } else {
        let how = if c.anchors[0].pending { " (not committed yet: anchored to its text)" } else { "" };
        println!("{} {kind} on {path}:{lines}{how}", c.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn list(common: &Common, path: Option<&str>, status: Option<MarkStatus>) -> Result<ExitCode> {
    let (repo, key) = open_repo(&common.repo)?;
    let path = path.map(|p| repo_path(&repo, p)).transpose()?;
    let store = Store::open_default()?;
    let marks = store.of_repo(&key)?;
    let marks: Vec<&Codemark> = marks.iter().filter(|c| status.is_none_or(|s| c.status == s)).collect();
    let anchors: Vec<&StoredAnchor> = marks.iter().flat_map(|c| &c.anchors).collect();
    let places = codemark::locate_in_worktree(&repo, &anchors, &store, &|| {});
    let mut out = Vec::new();
    for c in &marks {
        for a in &c.anchors {
            let mut v = codemark_json(c);
            match places.get(&a.id) {
                Some(Located::Found(rel)) => {
                    if path.as_deref().is_some_and(|p| p != rel.path && p != a.anchor.path) {
                        continue;
                    }
                    place_json(&mut v, &rel.path, rel.lines, rel.status);
                }
                found if path.as_deref().is_none_or(|p| p == a.anchor.path) => {
                    let why = match found {
                        Some(Located::Unknown(why)) => why.clone(),
                        _ => "not located".to_owned(),
                    };
                    v["path"] = json!(a.anchor.path);
                    v["anchorStatus"] = json!("unknown");
                    v["reason"] = json!(why);
                }
                _ => continue,
            }
            out.push(v);
        }
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if out.is_empty() {
        println!("no codemarks{}", path.map(|p| format!(" in {p}")).unwrap_or_default());
    }
    for v in &out {
        let at = match (v["start"].as_u64(), v["end"].as_u64()) {
            (Some(s), Some(e)) if s == e => format!("{}:{s}", v["path"].as_str().unwrap_or("")),
            (Some(s), Some(e)) => format!("{}:{s}-{e}", v["path"].as_str().unwrap_or("")),
            _ => v["path"].as_str().unwrap_or("").to_owned(),
        };
        let id = v["id"].as_str().unwrap_or("");
        println!(
            "{}  {at}  {} {}  [{}, {}]  {}",
            &id[..id.len().min(13)],
            v["kind"].as_str().unwrap_or(""),
            v["status"].as_str().unwrap_or(""),
            v["anchorStatus"].as_str().unwrap_or(""),
            plural(v["replies"].as_array().map_or(0, Vec::len), "reply", "replies"),
            v["headline"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn show(common: &Common, id: &str) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let id = resolve_id(&store, id)?;
    let c = store.get(&id)?.context("the codemark disappeared while reading it")?;
    let mut v = codemark_json(&c);
    // Where it is now, when this is its repository.
    let here = Repo::discover(&common.repo).ok().filter(|r| codemark::repo_key(r).is_ok_and(|k| k == c.repo));
    if let Some(repo) = &here {
        let anchors: Vec<&StoredAnchor> = c.anchors.iter().collect();
        let places = codemark::locate_in_worktree(repo, &anchors, &store, &|| {});
        if let Some(Located::Found(rel)) = places.get(&c.anchors[0].id) {
            place_json(&mut v, &rel.path, rel.lines, rel.status);
        }
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let at = match (v["path"].as_str(), v["start"].as_u64(), v["end"].as_u64()) {
        (Some(p), Some(s), Some(e)) => format!("{p}:{}", LineRange::new(s as u32, e as u32)),
        _ => {
            let a = &c.anchors[0].anchor;
            format!("{}:{} at {}", a.path, a.lines, &a.commit[..a.commit.len().min(12)])
        }
    };
    println!("{} {} · {} · {}", c.kind, c.id, c.status, at);
    if let Some(s) = v["anchorStatus"].as_str() {
        println!("code: {s}");
    }
    println!();
    if let Some(t) = &c.title {
        println!("{t}\n");
    }
    println!("{} · {}\n{}", c.author, rfc3339(c.created), c.body);
    for r in &c.replies {
        println!("\n{} · {}\n{}", r.author, rfc3339(r.created), r.body);
    }
    Ok(ExitCode::SUCCESS)
}

fn set_status(common: &Common, id: &str, status: MarkStatus) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let id = resolve_id(&store, id)?;
    let q = outbox::edit(&store, &id, &Edit { status: Some(status), ..Edit::default() }, now_ms())?;
    tell(q.as_ref());
    done(common, &store, &id, if status == MarkStatus::Open { "reopened" } else { "resolved" })
}

/// Says on stderr what a change queued for the team server, when it holds something back.
fn tell(q: Option<&outbox::Queued>) {
    if let Some(why) = q.and_then(|q| q.held.as_deref()) {
        eprintln!(
            "{why}.\nIt is saved here and not sent: `marginalia outbox` lists it; `marginalia outbox send SEQ --redact` \
             sends it with the secret replaced, `--anyway` as it is, and `marginalia outbox drop SEQ` keeps it here only."
        );
    }
}

fn done(common: &Common, store: &Store, id: &str, what: &str) -> Result<ExitCode> {
    let c = store.get(id)?.context("the codemark disappeared while changing it")?;
    if common.json {
        println!("{}", codemark_json(&c));
    } else {
        println!("{what} {id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON of a codemark, as `list`, `show` and `add` print it.
fn codemark_json(c: &Codemark) -> Value {
    let mut v = c.to_json();
    v["headline"] = json!(c.title.clone().unwrap_or_else(|| c.body.lines().next().unwrap_or("").to_owned()));
    v["anchor"] = json!(c.anchors.first().map(|a| json!({
        "commit": a.anchor.commit, "path": a.anchor.path,
        "start": a.anchor.lines.start, "end": a.anchor.lines.end,
    })));
    v
}

fn place_json(v: &mut Value, path: &str, lines: LineRange, status: Status) {
    v["path"] = json!(path);
    v["start"] = json!(lines.start);
    v["end"] = json!(lines.end);
    v["anchorStatus"] = json!(status.as_str());
}
