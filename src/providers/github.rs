//! GitHub and GitHub Enterprise Server (REST API version 2022-11-28; GraphQL only for whether a
//! review thread is resolved, which REST does not say).
//!
//! - Pull requests: `GET /repos/{o}/{r}/pulls?head=OWNER:BRANCH&state=open`, `GET
//!   .../pulls/{n}`, `POST .../pulls {title, head, base, body?, draft?}`.
//! - Files: `GET .../pulls/{n}/files` (with each file's `patch`).
//! - Review comments: `GET .../pulls/{n}/comments`, grouped into threads by `in_reply_to_id`; a
//!   comment whose `line` is null is outdated and is placed from `original_commit_id` and
//!   `original_line`. Left-side comments refer to the base version of the file.
//! - Comments on the pull request as a whole (a CI summary): `GET /repos/{o}/{r}/issues/{n}/comments`,
//!   `POST .../issues/{n}/comments {body}`, edited with `PATCH /repos/{o}/{r}/issues/comments/{id}`.
//! - Line comments: `POST .../pulls/{n}/comments {body, commit_id, path, line, side}` plus
//!   `start_line, start_side` for several lines; `subject_type: file` for a file comment.
//!   Replies: `POST .../pulls/{n}/comments/{id}/replies {body}`.

use std::collections::HashMap;

use reqwest::{Method, Url};
use serde_json::{Value, json};

use crate::anchor::LineRange;

use super::diff;
use super::http::{Call, Paging};
use super::read;
use super::{
    ChangedFile, Comment, Forge, NewComment, NewPull, Posted, PrComment, Provider, ProviderError, PullRequest, Side,
    Thread, Whoami,
};

const PER_PAGE: &str = "100";

fn repo_path<'a>(f: &'a Forge, rest: &[&'a str]) -> Vec<&'a str> {
    let mut p = vec!["repos", f.repo.owner.as_str(), f.repo.name.as_str()];
    p.extend_from_slice(rest);
    p
}

pub(super) fn pull_of(v: &Value) -> Option<PullRequest> {
    let Some(number) = read::n(v, "/number") else {
        tracing::debug!("skipping a pull request without a number");
        return None;
    };
    // `merged_at` alone is not trusted over `state: open` (GitHub's own examples have both).
    let state = read::s(v, "/state").map(|s| s.to_ascii_lowercase()).unwrap_or_else(|| "open".into());
    let merged = read::b(v, "/merged") == Some(true) || v.pointer("/merged_at").is_some_and(|m| !m.is_null());
    let state = if state != "open" && merged { "merged".to_owned() } else { state };
    Some(PullRequest {
        number,
        title: read::s(v, "/title").unwrap_or_default(),
        body: read::s(v, "/body"),
        state,
        draft: read::b(v, "/draft").unwrap_or(false),
        author: read::s(v, "/user/login"),
        url: read::s(v, "/html_url"),
        source_branch: read::s(v, "/head/ref"),
        target_branch: read::s(v, "/base/ref"),
        head_sha: read::text(v, "/head/sha"),
        base_sha: read::text(v, "/base/sha"),
        start_sha: None,
        created: read::s(v, "/created_at"),
        updated: read::s(v, "/updated_at"),
    })
}

pub(super) async fn pull_for_branch(
    f: &Forge,
    branch: &str,
    head_owner: Option<&str>,
) -> Result<Option<PullRequest>, ProviderError> {
    let head = format!("{}:{branch}", head_owner.unwrap_or(&f.repo.owner));
    let url = f.url(&repo_path(f, &["pulls"]), &[("head", &head), ("state", "open"), ("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the pull requests of {}", f.repo.slug()), None).await?;
    Ok(list.iter().filter_map(pull_of).next())
}

pub(super) async fn open_pulls(f: &Forge) -> Result<Vec<PullRequest>, ProviderError> {
    let url = f.url(&repo_path(f, &["pulls"]), &[("state", "open"), ("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the pull requests of {}", f.repo.slug()), None).await?;
    Ok(list.iter().filter_map(pull_of).collect())
}

pub(super) async fn pull(f: &Forge, n: u64) -> Result<PullRequest, ProviderError> {
    let what = format!("pull request #{n} of {}", f.repo.slug());
    let v = f.get_json(f.url(&repo_path(f, &["pulls", &n.to_string()]), &[]), what.clone(), Some(n)).await?;
    pull_of(&v).ok_or_else(|| f.unexpected(&what, "a pull request without a number".into()))
}

pub(super) async fn files(f: &Forge, n: u64) -> Result<Vec<ChangedFile>, ProviderError> {
    let url = f.url(&repo_path(f, &["pulls", &n.to_string(), "files"]), &[("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the files of pull request #{n}"), Some(n)).await?;
    Ok(list
        .iter()
        .filter_map(|v| {
            let path = read::text(v, "/filename")?;
            Some(ChangedFile {
                path,
                old_path: read::text(v, "/previous_filename"),
                status: read::s(v, "/status").unwrap_or_else(|| "modified".into()),
                additions: read::n(v, "/additions"),
                deletions: read::n(v, "/deletions"),
                patch: read::s(v, "/patch"),
            })
        })
        .collect())
}

fn comment_of(v: &Value) -> Option<Comment> {
    Some(Comment {
        id: read::s(v, "/id")?,
        author: read::s(v, "/user/login"),
        body: read::s(v, "/body").unwrap_or_default(),
        created: read::s(v, "/created_at"),
    })
}

/// The last `n` lines of a diff hunk on `side`, without their `+`/`-`/` ` marks: the lines a
/// comment was made on (GitHub's `diff_hunk` ends at the comment's last line).
fn hunk_tail(hunk: &str, side: Side, n: usize) -> Option<String> {
    let lines: Vec<&str> = hunk
        .lines()
        .skip_while(|l| !l.starts_with("@@"))
        .skip(1)
        .filter(|l| !l.starts_with('\\'))
        .filter(|l| match side {
            Side::New => !l.starts_with('-'),
            Side::Old => !l.starts_with('+'),
        })
        .map(|l| l.get(1..).unwrap_or(""))
        .collect();
    if n == 0 || lines.len() < n {
        return None;
    }
    Some(lines[lines.len() - n..].join("\n"))
}

/// Review comments grouped into threads, oldest first.
fn threads_of(comments: &[Value], pr: &PullRequest, state: &HashMap<u64, (bool, bool)>) -> Vec<Thread> {
    let mut roots: Vec<(u64, &Value)> = Vec::new();
    let mut replies: HashMap<u64, Vec<&Value>> = HashMap::new();
    let ids: std::collections::HashSet<u64> = comments.iter().filter_map(|c| read::n(c, "/id")).collect();
    for c in comments {
        let Some(id) = read::n(c, "/id") else {
            tracing::debug!("skipping a review comment without an id");
            continue;
        };
        match read::n(c, "/in_reply_to_id").filter(|p| ids.contains(p)) {
            Some(parent) => replies.entry(parent).or_default().push(c),
            None => roots.push((id, c)),
        }
    }
    roots
        .into_iter()
        .map(|(id, c)| {
            let side = if read::s(c, "/side").as_deref() == Some("LEFT") { Side::Old } else { Side::New };
            let file_level = read::s(c, "/subject_type").as_deref() == Some("file");
            let current = read::line(c, "/line");
            let (end, start, commit, outdated) = match current {
                Some(line) => (Some(line), read::line(c, "/start_line"), read::text(c, "/commit_id"), false),
                None => (
                    read::line(c, "/original_line"),
                    read::line(c, "/original_start_line"),
                    read::text(c, "/original_commit_id"),
                    !file_level,
                ),
            };
            let lines = match (file_level, end) {
                (false, Some(e)) => Some(LineRange::new(start.filter(|s| *s <= e).unwrap_or(e), e)),
                _ => None,
            };
            // Left-side lines are lines of the base's file.
            let commit = if side == Side::Old { pr.base_sha.clone().or(commit) } else { commit };
            let anchored_text = lines.and_then(|l| {
                hunk_tail(&read::s(c, "/diff_hunk").unwrap_or_default(), side, (l.end - l.start + 1) as usize)
            });
            let mut comments: Vec<Comment> = comment_of(c).into_iter().collect();
            comments.extend(replies.get(&id).into_iter().flatten().filter_map(|r| comment_of(r)));
            let known = state.get(&id);
            Thread {
                id: id.to_string(),
                provider: Provider::GitHub,
                path: read::text(c, "/path"),
                side,
                lines,
                commit,
                resolved: known.map(|k| k.0),
                outdated: outdated || known.is_some_and(|k| k.1),
                comments,
                url: read::s(c, "/html_url"),
                anchored_text,
            }
        })
        .collect()
}

pub(super) async fn threads(f: &Forge, pr: &PullRequest) -> Result<Vec<Thread>, ProviderError> {
    let n = pr.number;
    let url = f.url(&repo_path(f, &["pulls", &n.to_string(), "comments"]), &[("per_page", PER_PAGE)]);
    let comments = f.pages(url, Paging::Link, format!("the review comments of pull request #{n}"), Some(n)).await?;
    let state = match thread_state(f, n).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("whether review threads are resolved is unknown: {e}");
            HashMap::new()
        }
    };
    Ok(threads_of(&comments, pr, &state))
}

/// The GraphQL endpoint: `https://api.github.com/graphql`, `https://HOST/api/graphql`.
fn graphql_url(f: &Forge) -> Url {
    match f.repo.api_base.strip_suffix("/api/v3") {
        Some(host) => Url::parse(&format!("{host}/api/graphql")).unwrap_or_else(|_| f.url(&["graphql"], &[])),
        None => f.url(&["graphql"], &[]),
    }
}

const THREADS_QUERY: &str = "query($owner: String!, $name: String!, $number: Int!, $after: String) { \
    repository(owner: $owner, name: $name) { pullRequest(number: $number) { \
    reviewThreads(first: 100, after: $after) { pageInfo { hasNextPage endCursor } \
    nodes { isResolved isOutdated comments(first: 1) { nodes { databaseId } } } } } } }";

/// Whether each thread (by its first comment's id) is resolved and outdated, from GraphQL.
async fn thread_state(f: &Forge, n: u64) -> Result<HashMap<u64, (bool, bool)>, ProviderError> {
    let mut out = HashMap::new();
    let mut after: Option<String> = None;
    let what = format!("the review threads of pull request #{n}");
    for _ in 0..f.http.options.max_pages {
        let vars = json!({ "owner": f.repo.owner, "name": f.repo.name, "number": n, "after": after });
        let call = Call::post(
            graphql_url(f),
            json!({ "query": THREADS_QUERY, "variables": vars }),
            f.subject(Some(n)),
            what.clone(),
        );
        let v = f.json(&call).await?;
        if let Some(errors) = v.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            let said: Vec<&str> = errors.iter().filter_map(|e| e.get("message").and_then(Value::as_str)).collect();
            return Err(f.unexpected(&what, format!("GraphQL errors: {}", said.join("; "))));
        }
        let Some(threads) = v.pointer("/data/repository/pullRequest/reviewThreads") else {
            return Err(f.unexpected(&what, "no reviewThreads in the answer".into()));
        };
        for t in threads.get("nodes").and_then(Value::as_array).into_iter().flatten() {
            if let Some(id) = read::n(t, "/comments/nodes/0/databaseId") {
                out.insert(
                    id,
                    (read::b(t, "/isResolved").unwrap_or(false), read::b(t, "/isOutdated").unwrap_or(false)),
                );
            }
        }
        match (read::b(threads, "/pageInfo/hasNextPage"), read::text(threads, "/pageInfo/endCursor")) {
            (Some(true), Some(cursor)) if after.as_deref() != Some(cursor.as_str()) => after = Some(cursor),
            _ => break,
        }
    }
    Ok(out)
}

pub(super) async fn comment(
    f: &Forge,
    pr: &PullRequest,
    c: &NewComment,
    note: Option<String>,
) -> Result<Posted, ProviderError> {
    let n = pr.number;
    let head = pr
        .head_sha
        .clone()
        .ok_or_else(|| f.unexpected(&format!("pull request #{n}"), "it names no head commit".into()))?;
    let side = if c.side == Side::Old { "LEFT" } else { "RIGHT" };
    let mut note = note;
    let body = if c.file_level {
        json!({ "body": c.body, "commit_id": head, "path": c.path, "subject_type": "file" })
    } else {
        check_in_diff(f, n, c).await?;
        let mut b = json!({ "body": c.body, "commit_id": head, "path": c.path, "line": c.lines.end, "side": side });
        if c.lines.start < c.lines.end {
            b["start_line"] = json!(c.lines.start);
            b["start_side"] = json!(side);
        }
        b
    };
    let url = f.url(&repo_path(f, &["pulls", &n.to_string(), "comments"]), &[]);
    let call = Call::post(url, body, f.subject(Some(n)), format!("a review comment on pull request #{n}"))
        .carrying(&c.body, note.take());
    let v = match f.json(&call).await {
        Err(ProviderError::Refused { status: 422, message, .. }) if !c.file_level && mentions_diff(&message) => {
            return Err(ProviderError::NotInDiff(format!(
                "{} (GitHub: {message})",
                diff::not_in_diff(&c.path, c.side, c.lines, None, "pull request")
            )));
        }
        other => other?,
    };
    let comment = comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the new comment has no id".into()))?;
    Ok(Posted { thread_id: comment.id.clone(), comment, note: None })
}

fn mentions_diff(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("diff") || m.contains("could not be resolved") || m.contains("line must be")
}

/// Refuses lines the pull request's diff does not show (the file's `patch`); when GitHub sends
/// no patch for the file (a large or binary one), GitHub decides.
async fn check_in_diff(f: &Forge, n: u64, c: &NewComment) -> Result<(), ProviderError> {
    let files = files(f, n).await?;
    let Some(file) =
        files.iter().find(|x| x.path == c.path || (c.side == Side::Old && x.old_path.as_deref() == Some(&c.path)))
    else {
        return Err(ProviderError::NotInDiff(diff::not_in_diff(&c.path, c.side, c.lines, None, "pull request")));
    };
    let Some(patch) = &file.patch else { return Ok(()) };
    let lines = diff::parse(patch);
    match diff::find(&lines, c.side, c.lines) {
        Ok(_) => Ok(()),
        Err(_) => {
            Err(ProviderError::NotInDiff(diff::not_in_diff(&c.path, c.side, c.lines, Some(&lines), "pull request")))
        }
    }
}

pub(super) async fn reply(
    f: &Forge,
    pr: &PullRequest,
    thread: &str,
    body: &str,
    note: Option<String>,
) -> Result<Posted, ProviderError> {
    let n = pr.number;
    let id: u64 = thread.trim().parse().map_err(|_| {
        ProviderError::Setup(format!(
            "`{thread}` is not a GitHub review thread: it is named by its first comment's number"
        ))
    })?;
    let url = f.url(&repo_path(f, &["pulls", &n.to_string(), "comments", &id.to_string(), "replies"]), &[]);
    let call = Call::post(url, json!({ "body": body }), f.subject(Some(n)), format!("a reply to review thread {id}"))
        .carrying(body, note);
    let v = f.json(&call).await?;
    let comment = comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the reply has no id".into()))?;
    Ok(Posted { thread_id: id.to_string(), comment, note: None })
}

fn pr_comment_of(v: &Value) -> Option<PrComment> {
    Some(PrComment {
        id: read::s(v, "/id")?,
        author: read::s(v, "/user/login"),
        body: read::s(v, "/body").unwrap_or_default(),
        url: read::s(v, "/html_url"),
    })
}

pub(super) async fn pr_comments(f: &Forge, n: u64) -> Result<Vec<PrComment>, ProviderError> {
    let url = f.url(&repo_path(f, &["issues", &n.to_string(), "comments"]), &[("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the comments of pull request #{n}"), Some(n)).await?;
    Ok(list.iter().filter_map(pr_comment_of).collect())
}

pub(super) async fn create_pr_comment(
    f: &Forge,
    n: u64,
    body: &str,
    note: Option<String>,
) -> Result<PrComment, ProviderError> {
    let url = f.url(&repo_path(f, &["issues", &n.to_string(), "comments"]), &[]);
    let call = Call::post(url, json!({ "body": body }), f.subject(Some(n)), format!("a comment on pull request #{n}"))
        .carrying(body, note);
    let v = f.json(&call).await?;
    pr_comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the new comment has no id".into()))
}

pub(super) async fn edit_pr_comment(
    f: &Forge,
    n: u64,
    id: &str,
    body: &str,
    note: Option<String>,
) -> Result<PrComment, ProviderError> {
    let url = f.url(&repo_path(f, &["issues", "comments", id]), &[]);
    let what = format!("comment {id} on pull request #{n}");
    let call =
        Call::with_body(Method::PATCH, url, json!({ "body": body }), f.subject(Some(n)), what).carrying(body, note);
    let v = f.json(&call).await?;
    pr_comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the edited comment has no id".into()))
}

/// The repository's default branch.
async fn default_branch(f: &Forge) -> Result<String, ProviderError> {
    let what = format!("the repository {}", f.repo.slug());
    let v = f.get_json(f.url(&repo_path(f, &[]), &[]), what.clone(), None).await?;
    read::text(&v, "/default_branch").ok_or_else(|| f.unexpected(&what, "it names no default branch".into()))
}

pub(super) async fn create_pull(f: &Forge, new: &NewPull, note: Option<String>) -> Result<PullRequest, ProviderError> {
    let base = match &new.base {
        Some(b) => b.clone(),
        None => default_branch(f).await?,
    };
    let mut body = json!({ "title": new.title, "head": new.head, "base": base });
    if let Some(b) = new.body.as_deref().filter(|b| !b.is_empty()) {
        body["body"] = json!(b);
    }
    if new.draft {
        body["draft"] = json!(true);
    }
    let what = format!("a new pull request from {} into {base}", new.head);
    let call = Call::post(f.url(&repo_path(f, &["pulls"]), &[]), body, f.subject(None), what.clone())
        .carrying(new.body.as_deref().unwrap_or(""), note);
    let v = f.json(&call).await?;
    pull_of(&v).ok_or_else(|| f.unexpected(&what, "the new pull request has no number".into()))
}

pub(super) async fn whoami(f: &Forge) -> Result<Whoami, ProviderError> {
    let call = Call::get(f.url(&["user"], &[]), format!("github:{}", f.repo.host), "the signed-in user".into());
    let a = f.send(&call).await?;
    let v = f.parse(&call.what, &a.body)?;
    let scopes = a.headers.get("x-oauth-scopes").and_then(|s| s.to_str().ok()).map(str::to_owned);
    Ok(Whoami { user: read::text(&v, "/login"), scopes, note: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_lines_are_the_end_of_the_hunk() {
        let hunk = "@@ -16,33 +16,40 @@ public class Connection : IConnection...\n     a\n-    b\n+    c\n+    d";
        assert_eq!(hunk_tail(hunk, Side::New, 2).as_deref(), Some("    c\n    d"));
        assert_eq!(hunk_tail(hunk, Side::Old, 1).as_deref(), Some("    b"));
        assert_eq!(hunk_tail(hunk, Side::New, 9), None);
        assert_eq!(hunk_tail("garbage", Side::New, 1), None);
    }
}
