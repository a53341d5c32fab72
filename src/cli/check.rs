//! `marginalia check`: which open discussions a pull request touches, for CI bots. Glue over
//! [`crate::check`]: resolves the revisions, reads the codemarks, runs the check with a
//! progress bar where one helps, prints the chosen format, posts the summary when asked.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::check::post::{self, Posted};
use crate::check::report;
use crate::check::source::{self, Wanted};
use crate::check::{self as engine, Change, FailOn, Report, Rev};
use crate::codemark::repo_key;
use crate::git::Repo;
use crate::providers::{HttpOptions, ProviderError};
use crate::store::Store;

/// Checks with at least this many anchors show a progress bar on a terminal (unless in CI).
const PROGRESS_FROM: usize = 500;
/// Checks with at least this many anchors are spread over the machine's cores.
const PARALLEL_FROM: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
    Sarif,
}

#[derive(Args)]
#[command(after_help = r#"Examples:
  marginalia check --base origin/main                      # what this branch does to open discussions
  marginalia check --base "$BASE_SHA" --head "$HEAD_SHA" --format sarif > marginalia.sarif
  marginalia check --base origin/main --format markdown --post --fail-on deleted

The change runs from the merge base of --base and --head to --head (a pull request's diff).
Each open codemark (comment, question, issue) is relocated to both ends and reported as
deleted, modified or moved when the change did that to its code; unchanged ones are counted;
unknown ones (could not be located) come with the reason. Drift already on the base branch is
not blamed on the change. In a shallow clone without --base, codemarks are reported by their
state at --head, and the report says so.

Codemarks come from the team server (MARGINALIA_SERVER and MARGINALIA_TOKEN, or a login) or
the local store (--source local). --post keeps one summary comment on the pull request up to
date (its number from --pr, CI's environment, or the branch's pull request); provider tokens
as for `marginalia pr` (GITHUB_TOKEN, GITLAB_TOKEN, BITBUCKET_TOKEN, ...).

Exit codes: 0 nothing touched, or touched without --fail-on asking to fail; 1 touched and
--fail-on modified (modified or deleted) or --fail-on deleted (deleted) asked to fail; 2 usage
or environment errors (not a repository, an unknown revision, no server or token, a --post
that could not be made), with a message saying what is missing."#)]
pub struct CheckArgs {
    /// The repository (its top folder or any folder inside; bare repositories work too).
    #[arg(long, value_name = "DIR", default_value = ".")]
    repo: PathBuf,

    /// Where the change starts: the pull request's target (`origin/main`, a commit). The
    /// change is compared from the merge base of --base and --head.
    #[arg(long, value_name = "REV")]
    base: String,

    /// Where the change ends: the pull request's head.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    head: String,

    /// text (for logs), json, markdown (a pull request summary) or sarif (SARIF 2.1.0, for
    /// GitHub code scanning).
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    format: Format,

    /// Where the codemarks come from: auto (the team server when MARGINALIA_SERVER or a login
    /// names one, else the local store), server or local.
    #[arg(long, value_name = "SOURCE", default_value = "auto", value_parser = parse_source)]
    source: Wanted,

    /// Count bookmarks (private notes to self) in too; only from the local store.
    #[arg(long)]
    include_bookmarks: bool,

    /// Exit 1 when the change modified or deleted (`modified`) or deleted (`deleted`) code
    /// under an open discussion.
    #[arg(long, value_name = "WHAT", value_parser = parse_fail_on)]
    fail_on: Option<FailOn>,

    /// Post the Markdown summary on the pull request, or update the one posted before.
    #[arg(long)]
    post: bool,

    /// The pull request (or merge request) to post on; else from CI's environment, else the
    /// branch's.
    #[arg(long, value_name = "N", requires = "post")]
    pr: Option<u64>,

    /// The git remote that names the repository on the code host (for --post).
    #[arg(long, value_name = "NAME", requires = "post")]
    remote: Option<String>,

    /// Post the summary even if it looks like it holds a credential (recorded in the egress
    /// ledger).
    #[arg(long, requires = "post")]
    anyway: bool,

    /// Show a progress bar on stderr (by default only on a terminal, outside CI, for large checks).
    #[arg(long)]
    progress: bool,
}

fn parse_source(s: &str) -> Result<Wanted, String> {
    s.parse()
}

fn parse_fail_on(s: &str) -> Result<FailOn, String> {
    s.parse()
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    if args.include_bookmarks && args.source == Wanted::Server {
        bail!("--include-bookmarks reads the local store: bookmarks are private and never on the team server");
    }
    let repo = Repo::discover(&args.repo)?;
    let head = repo.resolve(&args.head).with_context(|| format!("--head {}", args.head))?;
    let mut notes = Vec::new();
    let base = match repo.resolve(&args.base) {
        Ok(b) => Some(b),
        Err(_) if repo.is_shallow() => {
            notes.push(format!(
                "base `{}` is not in this shallow clone: each codemark is reported by its state at head, so changes \
                 made before the base count too (fetch it for an exact answer: git fetch --depth=1 origin {})",
                args.base, args.base
            ));
            None
        }
        Err(e) => bail!("--base: {e}; fetch it first (git fetch origin {})", args.base),
    };
    let start = base.map(|b| match repo.common_ancestor(b, head) {
        Some(m) => m,
        None => {
            notes.push(format!(
                "`{}` and `{}` have no common history here: compared from `{}` itself",
                args.base, args.head, args.base
            ));
            b
        }
    });
    let key = repo_key(&repo)?;
    let store = Arc::new(Mutex::new(Store::open_default()?));
    let rt = super::pr::runtime()?;
    let loaded = source::load(args.source, &key, &store, &rt)?;
    for why in &loaded.unreadable {
        notes.push(format!("left out: {why}"));
    }
    let include_bookmarks = args.include_bookmarks && matches!(loaded.source, engine::Source::Local { .. });
    let selection = engine::select(loaded.codemarks, include_bookmarks);

    let anchors: usize = selection.open.iter().map(|c| c.anchors.len()).sum();
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let show = args.progress || (anchors >= PROGRESS_FROM && std::io::stderr().is_terminal() && !in_ci);
    let bar = show.then(|| {
        let bar = indicatif::ProgressBar::new(anchors as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("checking {bar:40} {pos}/{len} anchors, {per_sec}, {eta} left")
                .expect("a valid progress template"),
        );
        bar
    });
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let threads =
        if anchors >= PARALLEL_FROM { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { 1 };
    let checked = engine::check(&args.repo, Change { start, head }, selection.open, threads, &tick);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let from_text = checked.iter().filter(|c| c.from_text()).count();
    if from_text > 0 && base.is_some() && repo.is_shallow() {
        notes.push(format!(
            "{from_text} codemarks were located from their anchored text: their commits are not in this shallow clone"
        ));
    }
    let report = Report {
        base: Rev { rev: args.base.clone(), commit: base.map(|b| b.to_string()) },
        head: Rev { rev: args.head.clone(), commit: Some(head.to_string()) },
        start: start.map(|s| s.to_string()),
        source: loaded.source,
        skipped: selection.skipped,
        checked,
        notes,
    };

    let printed = match args.format {
        Format::Text => report::text(&report),
        Format::Json => format!("{:#}\n", report::json(&report)),
        Format::Markdown => report::markdown(&report, false),
        Format::Sarif => format!("{:#}\n", report::sarif(&report)),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(printed.as_bytes())?;
    out.flush()?;
    drop(out);

    if args.post {
        post_summary(&args, &repo, store, &rt, &report).map_err(|e| match e.downcast::<ProviderError>() {
            // Every failure to post is an environment problem for CI (a token, a scope, a host).
            Ok(p) => anyhow::anyhow!("--post: {p}"),
            Err(e) => e.context("--post"),
        })?;
    }
    Ok(ExitCode::from(report.exit_code(args.fail_on)))
}

fn post_summary(
    args: &CheckArgs,
    repo: &Repo,
    store: Arc<Mutex<Store>>,
    rt: &tokio::runtime::Runtime,
    report: &Report,
) -> Result<()> {
    let forge = crate::providers::connect(repo, store, args.remote.as_deref(), HttpOptions::from_env())?;
    let env = |k: &str| std::env::var(k).ok();
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let (pr, from) = match args.pr {
        Some(n) => (n, "--pr".to_owned()),
        None => match post::pr_from_env(&env, &read) {
            Some(found) => found,
            None => {
                let (branch, owner) = crate::providers::detect::head_branch(repo, &forge.repo)?;
                match rt.block_on(forge.pull_for_branch(&branch, owner.as_deref()))? {
                    Some(p) => (p.number, format!("the open {} of branch {branch}", forge.provider().pr_noun())),
                    None => bail!(
                        "no {} to post on: give --pr N (CI: GITHUB_EVENT_PATH, CI_MERGE_REQUEST_IID or BITBUCKET_PR_ID \
                         name it), or open one for branch {branch}",
                        forge.provider().pr_noun()
                    ),
                }
            }
        },
    };
    let body = |again: bool| report::markdown(report, again);
    let subject = forge.subject(Some(pr));
    let done = rt.block_on(post::post(&forge, pr, report.touched() > 0, &body, args.anyway))?;
    let link = |c: &crate::providers::PrComment| c.url.as_deref().map(|u| format!(": {u}")).unwrap_or_default();
    match done {
        Posted::Created(c) => {
            eprintln!("posted the summary on {subject} (from {from}) as comment {}{}", c.id, link(&c))
        }
        Posted::Updated(c) => eprintln!("updated the summary comment {} on {subject}{}", c.id, link(&c)),
        Posted::UpToDate(c) => eprintln!("the summary comment {} on {subject} is up to date{}", c.id, link(&c)),
        Posted::Skipped(why) => eprintln!("{why}"),
    }
    Ok(())
}
