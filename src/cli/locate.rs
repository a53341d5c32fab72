//! `marginalia locate`: the batch form (JSON Lines, the stable interface) and the single
//! anchor form for people.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::anchor::{Anchor, LineRange, Status};
use crate::git::{Repo, Target};
use crate::locate::batch::{self, Answer};
use crate::locate::{Located, Locator};

/// Batches at least this large show a progress bar on a terminal.
const PROGRESS_FROM: usize = 500;
/// Batches at least this large are spread over the machine's cores.
const PARALLEL_FROM: usize = 1_000;

#[derive(Args)]
#[command(after_help = r#"Examples:
  # Many anchors at once (JSON Lines in, JSON Lines out, same order):
  marginalia locate --repo . --batch anchors.jsonl
  echo '{"id":"a1","commit":"9fceb02d0ae598e95dc970b74767f19372d61af8","path":"src/x.rs","start":10,"end":14}' \
    | marginalia locate --repo . --to main --batch -
  # -> {"id":"a1","status":"modified","path":"src/y.rs","start":12,"end":16}

  # One anchor, for people:
  marginalia locate --commit 9fceb02 --path src/x.rs --lines 10-14

Input fields: id (echoed back), commit (hex), path, start, end (1-based, inclusive), and
optionally text (the anchored lines: used when the commit is missing, as in a shallow
clone), before/after (context lines).
Status: intact (every line there, unchanged), modified (part of it survives, or it was
edited), deleted (nothing survives; path/start/end say where it used to be), unknown (with a
reason: unknown commit without text, binary file, lines past the end of the file). A
malformed input line answers {"line":N,"status":"error","reason":...} and the batch goes on.

Without --to the target is the working tree as it is on disk, uncommitted edits included."#)]
pub struct LocateArgs {
    /// The repository (its top folder or any folder inside; a bare repository needs --to).
    #[arg(long, value_name = "DIR", default_value = ".")]
    repo: PathBuf,

    /// Relocate to this revision (commit, branch, tag, `HEAD~3`) instead of the working tree.
    #[arg(long, value_name = "REV")]
    to: Option<String>,

    /// Read cases from FILE as JSON Lines (`-` for stdin); answers go to stdout.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["commit", "path", "lines", "text"])]
    batch: Option<PathBuf>,

    /// Single anchor: the commit its line numbers refer to.
    #[arg(long, value_name = "COMMIT", requires_all = ["path", "lines"])]
    commit: Option<String>,

    /// Single anchor: the file, relative to the repository root.
    #[arg(long, value_name = "PATH", requires = "commit")]
    path: Option<String>,

    /// Single anchor: the lines, `A-B` or `A` (1-based, inclusive).
    #[arg(long, value_name = "A-B", requires = "commit", value_parser = LineRange::parse)]
    lines: Option<LineRange>,

    /// Single anchor: the anchored text, used when the commit is missing.
    #[arg(long, value_name = "TEXT", requires = "commit")]
    text: Option<String>,

    /// Single anchor: print the answer as one JSON object instead of for people.
    #[arg(long)]
    json: bool,

    /// Add "via" to each answer: found through the diff, by searching, or from text alone.
    #[arg(long)]
    explain: bool,
}

pub fn run(args: LocateArgs) -> Result<ExitCode> {
    let repo = Repo::discover(&args.repo)?;
    let target = match &args.to {
        Some(rev) => Target::Commit(repo.resolve(rev)?),
        None if repo.is_bare() => bail!(
            "{} is a bare repository, which has no working tree to relocate to: pass --to REV (for example --to HEAD)",
            args.repo.display()
        ),
        None => Target::Worktree,
    };
    let locator = Locator::new(&repo, target);
    match (&args.batch, &args.commit) {
        (Some(file), _) => run_batch(&args.repo, target, file, args.explain),
        (None, Some(commit)) => {
            let anchor = Anchor {
                commit: commit.clone(),
                path: args.path.clone().unwrap_or_default(),
                lines: args.lines.unwrap_or_default(),
                text: args.text.clone(),
                ..Anchor::default()
            };
            if let Err(why) = batch::check_path(&anchor.path) {
                bail!("{why}");
            }
            run_single(&repo, &locator, &anchor, args.json, args.explain)
        }
        (None, None) => bail!(
            "say what to locate: --batch FILE (JSON Lines, `-` for stdin) or --commit C --path P --lines A-B \
             (see marginalia locate --help)"
        ),
    }
}

fn run_batch(dir: &Path, target: Target, file: &PathBuf, explain: bool) -> Result<ExitCode> {
    let lines = if file.as_os_str() == "-" {
        read_lines(std::io::stdin().lock()).context("reading cases from stdin")?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        read_lines(std::io::BufReader::new(f)).with_context(|| format!("reading {}", file.display()))?
    };
    let cases = lines.iter().filter(|l| !l.trim().is_empty()).count();
    let bar = (cases >= PROGRESS_FROM && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(cases as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("locating {bar:40} {pos}/{len} anchors, {per_sec}, {eta} left")
                .expect("a valid progress template"),
        );
        bar
    });
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    // Small batches are not worth a second repository handle.
    let threads = if cases >= PARALLEL_FROM { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { 1 };
    let answers = batch::answer_all_parallel(&lines, dir, target, threads, explain, &tick);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for a in &answers {
        serde_json::to_writer(&mut out, a)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Lines of the input; bytes that are not UTF-8 become U+FFFD rather than failing the batch.
fn read_lines(mut r: impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    while r.read_until(b'\n', &mut buf)? > 0 {
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        lines.push(String::from_utf8_lossy(line).into_owned());
        buf.clear();
    }
    Ok(lines)
}

fn run_single(repo: &Repo, locator: &Locator<'_>, anchor: &Anchor, json: bool, explain: bool) -> Result<ExitCode> {
    let located = locator.locate(anchor);
    let code = if matches!(located, Located::Unknown(_)) { ExitCode::from(1) } else { ExitCode::SUCCESS };
    let mut out = std::io::stdout().lock();
    if json {
        let answer = Answer::located(serde_json::Value::Null, located, explain);
        serde_json::to_writer(&mut out, &answer)?;
        writeln!(out)?;
        return Ok(code);
    }
    let from = format!("{}:{} at {}", anchor.path, anchor.lines, anchor.commit);
    match located {
        Located::Unknown(reason) => writeln!(out, "unknown   {from}\n          {reason}")?,
        Located::Found(r) if r.status == Status::Deleted => {
            writeln!(out, "deleted   {from}")?;
            writeln!(out, "          nothing of it survives; it used to be where {}:{} is now", r.path, r.lines.start)?;
        }
        Located::Found(r) => {
            writeln!(out, "{:<9} {}:{}", r.status.as_str(), r.path, r.lines)?;
            writeln!(out, "          from {from}")?;
            if let Ok(Some(file)) = repo.file(locator.target(), &r.path) {
                writeln!(out)?;
                let (s, e) = (r.lines.start as usize - 1, (r.lines.end as usize).min(file.text.len()));
                let shown = e.min(s + 40);
                for i in s..shown {
                    writeln!(out, "{:>6} | {}", i + 1, file.text.line(i))?;
                }
                if shown < e {
                    writeln!(out, "       | ... {} more lines", e - shown)?;
                }
            }
        }
    }
    Ok(code)
}
