//! Bitbucket Cloud (API 2.0). Lists come in pages `{values, next}`; `next` is followed as an
//! opaque URL on the same origin.
//!
//! - Pull requests: `GET /repositories/{ws}/{repo}/pullrequests?q=source.branch.name="B" AND
//!   state="OPEN"`, `GET .../pullrequests/{id}`, `POST .../pullrequests {title, source: {branch:
//!   {name}}, destination?, description?, draft?}`.
//! - Files: `GET .../pullrequests/{id}/diffstat` (a redirect to the repository's diffstat);
//!   the lines a comment may go on come from `GET .../pullrequests/{id}/diff`.
//! - Comments: `GET .../pullrequests/{id}/comments`, grouped into threads by `parent`. An inline
//!   comment's `to` is a line of the new file, `from` a line of the old one; it carries no commit,
//!   so it is placed from the pull request's source commit (new side) or destination commit (old
//!   side), and `outdated` is what Bitbucket says.
//! - Inline comments: `POST .../comments {content: {raw}, inline: {path, to | from}}`. There are
//!   no multi-line comments: a range is anchored on its last line, and the answer says so.
//!   Replies: the same POST with `parent: {id}`.
//! - Comments on the pull request as a whole (a CI summary): the same list, without `inline` or
//!   `parent`; `POST .../comments {content: {raw}}`, edited with `PUT .../comments/{id}`.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::anchor::LineRange;

use super::diff;
use super::http::{Call, Paging};
use super::read;
use super::{
    ChangedFile, Comment, Forge, NewComment, NewPull, Posted, PrComment, Provider, ProviderError, PullRequest, Side,
    Thread, Whoami,
};

const PAGE_LEN: &str = "50";

fn rurl(f: &Forge, rest: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
    let mut segments = vec!["repositories", f.repo.owner.as_str(), f.repo.name.as_str()];
    segments.extend_from_slice(rest);
    f.url(&segments, query)
}

pub(super) fn pull_of(v: &Value) -> Option<PullRequest> {
    let Some(number) = read::n(v, "/id") else {
        tracing::debug!("skipping a pull request without an id");
        return None;
    };
    let state = match read::s(v, "/state").map(|s| s.to_ascii_uppercase()).as_deref() {
        Some("OPEN") | None => "open",
        Some("MERGED") => "merged",
        Some(_) => "closed",
    };
    Some(PullRequest {
        number,
        title: read::s(v, "/title").unwrap_or_default(),
        body: read::s(v, "/description").or_else(|| read::s(v, "/summary/raw")),
        state: state.to_owned(),
        draft: read::b(v, "/draft").unwrap_or(false),
        author: read::s(v, "/author/nickname").or_else(|| read::s(v, "/author/display_name")),
        url: read::s(v, "/links/html/href"),
        source_branch: read::s(v, "/source/branch/name"),
        target_branch: read::s(v, "/destination/branch/name"),
        head_sha: read::text(v, "/source/commit/hash"),
        base_sha: read::text(v, "/destination/commit/hash"),
        start_sha: None,
        created: read::s(v, "/created_on"),
        updated: read::s(v, "/updated_on"),
    })
}

/// A value for Bitbucket's query language: a quoted string with `"` and `\` escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(super) async fn pull_for_branch(f: &Forge, branch: &str) -> Result<Option<PullRequest>, ProviderError> {
    let q = format!("source.branch.name = {} AND state = \"OPEN\"", quoted(branch));
    let url = rurl(f, &["pullrequests"], &[("q", &q), ("pagelen", PAGE_LEN)]);
    let list = f.pages(url, Paging::Envelope, format!("the pull requests of {}", f.repo.slug()), None).await?;
    Ok(list.iter().filter_map(pull_of).next())
}

pub(super) async fn open_pulls(f: &Forge) -> Result<Vec<PullRequest>, ProviderError> {
    let url = rurl(f, &["pullrequests"], &[("state", "OPEN"), ("pagelen", PAGE_LEN)]);
    let list = f.pages(url, Paging::Envelope, format!("the pull requests of {}", f.repo.slug()), None).await?;
    Ok(list.iter().filter_map(pull_of).collect())
}

pub(super) async fn pull(f: &Forge, n: u64) -> Result<PullRequest, ProviderError> {
    let what = format!("pull request #{n} of {}", f.repo.slug());
    let v = f.get_json(rurl(f, &["pullrequests", &n.to_string()], &[]), what.clone(), Some(n)).await?;
    pull_of(&v).ok_or_else(|| f.unexpected(&what, "a pull request without an id".into()))
}

pub(super) async fn files(f: &Forge, n: u64) -> Result<Vec<ChangedFile>, ProviderError> {
    let url = rurl(f, &["pullrequests", &n.to_string(), "diffstat"], &[]);
    let list = f.pages(url, Paging::Envelope, format!("the files of pull request #{n}"), Some(n)).await?;
    Ok(list
        .iter()
        .filter_map(|v| {
            let new = read::text(v, "/new/path");
            let old = read::text(v, "/old/path");
            let status = read::s(v, "/status").unwrap_or_else(|| "modified".into());
            Some(ChangedFile {
                path: new.clone().or(old.clone())?,
                old_path: old.filter(|o| new.as_ref().is_some_and(|n| n != o)),
                status,
                additions: read::n(v, "/lines_added"),
                deletions: read::n(v, "/lines_removed"),
                patch: None,
            })
        })
        .collect())
}

fn comment_of(v: &Value) -> Option<Comment> {
    let deleted = read::b(v, "/deleted") == Some(true);
    Some(Comment {
        id: read::s(v, "/id")?,
        author: read::s(v, "/user/display_name").or_else(|| read::s(v, "/user/nickname")),
        body: if deleted { "(deleted)".to_owned() } else { read::s(v, "/content/raw").unwrap_or_default() },
        created: read::s(v, "/created_on"),
    })
}

fn threads_of(comments: &[Value], pr: &PullRequest) -> Vec<Thread> {
    let parent: HashMap<u64, u64> =
        comments.iter().filter_map(|c| Some((read::n(c, "/id")?, read::n(c, "/parent/id")?))).collect();
    let ids: std::collections::HashSet<u64> = comments.iter().filter_map(|c| read::n(c, "/id")).collect();
    // The top of each comment's chain of parents (bounded: a cycle in bad data ends it).
    let root = |mut id: u64| {
        for _ in 0..64 {
            match parent.get(&id) {
                Some(p) if ids.contains(p) => id = *p,
                _ => break,
            }
        }
        id
    };
    let mut order: Vec<u64> = Vec::new();
    let mut members: HashMap<u64, Vec<&Value>> = HashMap::new();
    for c in comments {
        let Some(id) = read::n(c, "/id") else {
            tracing::debug!("skipping a comment without an id");
            continue;
        };
        let r = root(id);
        if !members.contains_key(&r) {
            order.push(r);
        }
        members.entry(r).or_default().push(c);
    }
    order
        .into_iter()
        .filter_map(|r| {
            let list = members.remove(&r)?;
            let top = list.iter().find(|c| read::n(c, "/id") == Some(r)).copied().unwrap_or(list[0]);
            let path = read::text(top, "/inline/path");
            let to = read::line(top, "/inline/to");
            let from = read::line(top, "/inline/from");
            let (side, line) = match (to, from) {
                (Some(t), _) => (Side::New, Some(t)),
                (None, Some(fr)) => (Side::Old, Some(fr)),
                _ => (Side::New, None),
            };
            let lines = path.as_ref().and(line).map(|l| LineRange::new(l, l));
            let commit = match side {
                Side::New => pr.head_sha.clone(),
                Side::Old => pr.base_sha.clone(),
            };
            let resolved = top.as_object().and_then(|o| o.get("resolution")).map(|r| r.is_object());
            let mut comments: Vec<Comment> = list.iter().filter_map(|c| comment_of(c)).collect();
            comments.sort_by(|a, b| a.created.cmp(&b.created));
            Some(Thread {
                id: r.to_string(),
                provider: Provider::Bitbucket,
                path,
                side,
                lines,
                commit: lines.and(commit),
                resolved,
                outdated: read::b(top, "/inline/outdated").unwrap_or(false),
                comments,
                url: read::s(top, "/links/html/href"),
                anchored_text: None,
            })
        })
        .collect()
}

pub(super) async fn threads(f: &Forge, pr: &PullRequest) -> Result<Vec<Thread>, ProviderError> {
    let n = pr.number;
    let url = rurl(f, &["pullrequests", &n.to_string(), "comments"], &[("pagelen", "100")]);
    let list = f.pages(url, Paging::Envelope, format!("the comments of pull request #{n}"), Some(n)).await?;
    Ok(threads_of(&list, pr))
}

/// The lines each file's hunks show, from the whole diff; `None` when the diff cannot be read
/// (a token without the repository scope): Bitbucket then decides.
async fn diff_lines(f: &Forge, n: u64) -> Option<HashMap<String, String>> {
    let mut call = Call::get(
        rurl(f, &["pullrequests", &n.to_string(), "diff"], &[]),
        f.subject(Some(n)),
        format!("the diff of pull request #{n}"),
    );
    call.accept = Some("text/plain");
    match f.send(&call).await {
        Ok(a) => Some(diff::split_files(&String::from_utf8_lossy(&a.body))),
        Err(e) => {
            tracing::info!("cannot check the lines against the diff: {e}");
            None
        }
    }
}

pub(super) async fn comment(
    f: &Forge,
    pr: &PullRequest,
    c: &NewComment,
    note: Option<String>,
) -> Result<Posted, ProviderError> {
    let n = pr.number;
    let mut told = None;
    let inline = if c.file_level {
        json!({ "path": c.path })
    } else {
        if let Some(files) = diff_lines(f, n).await {
            let Some(patch) = files.get(&c.path) else {
                return Err(ProviderError::NotInDiff(diff::not_in_diff(
                    &c.path,
                    c.side,
                    c.lines,
                    None,
                    "pull request",
                )));
            };
            let lines = diff::parse(patch);
            if diff::find(&lines, c.side, c.lines).is_err() {
                return Err(ProviderError::NotInDiff(diff::not_in_diff(
                    &c.path,
                    c.side,
                    c.lines,
                    Some(&lines),
                    "pull request",
                )));
            }
        }
        if c.lines.start < c.lines.end {
            told = Some(format!(
                "Bitbucket has no multi-line comments: anchored on line {} (the last of {})",
                c.lines.end, c.lines
            ));
        }
        match c.side {
            Side::New => json!({ "path": c.path, "to": c.lines.end }),
            Side::Old => json!({ "path": c.path, "from": c.lines.end }),
        }
    };
    let body = json!({ "content": { "raw": c.body }, "inline": inline });
    let what = format!("a comment on pull request #{n}");
    let call =
        Call::post(rurl(f, &["pullrequests", &n.to_string(), "comments"], &[]), body, f.subject(Some(n)), what.clone())
            .carrying(&c.body, note);
    let v = f.json(&call).await?;
    let comment = comment_of(&v).ok_or_else(|| f.unexpected(&what, "the new comment has no id".into()))?;
    Ok(Posted { thread_id: comment.id.clone(), comment, note: told })
}

pub(super) async fn reply(
    f: &Forge,
    pr: &PullRequest,
    thread: &str,
    body: &str,
    note: Option<String>,
) -> Result<Posted, ProviderError> {
    let n = pr.number;
    let id: u64 = thread
        .trim()
        .parse()
        .map_err(|_| ProviderError::Setup(format!("`{thread}` is not a Bitbucket comment id (a number)")))?;
    let payload = json!({ "content": { "raw": body }, "parent": { "id": id } });
    let what = format!("a reply to comment {id}");
    let call = Call::post(
        rurl(f, &["pullrequests", &n.to_string(), "comments"], &[]),
        payload,
        f.subject(Some(n)),
        what.clone(),
    )
    .carrying(body, note);
    let v = f.json(&call).await?;
    let comment = comment_of(&v).ok_or_else(|| f.unexpected(&what, "the reply has no id".into()))?;
    Ok(Posted { thread_id: id.to_string(), comment, note: None })
}

/// A comment on the pull request as a whole: not inline, not a reply, not deleted.
fn pr_comment_of(v: &Value) -> Option<PrComment> {
    let inline = v.get("inline").is_some_and(|i| !i.is_null());
    let reply = v.get("parent").is_some_and(|p| !p.is_null());
    if inline || reply || read::b(v, "/deleted") == Some(true) {
        return None;
    }
    let c = comment_of(v)?;
    Some(PrComment { id: c.id, author: c.author, body: c.body, url: read::s(v, "/links/html/href") })
}

pub(super) async fn pr_comments(f: &Forge, n: u64) -> Result<Vec<PrComment>, ProviderError> {
    let url = rurl(f, &["pullrequests", &n.to_string(), "comments"], &[("pagelen", "100")]);
    let list = f.pages(url, Paging::Envelope, format!("the comments of pull request #{n}"), Some(n)).await?;
    Ok(list.iter().filter_map(pr_comment_of).collect())
}

pub(super) async fn create_pr_comment(
    f: &Forge,
    n: u64,
    body: &str,
    note: Option<String>,
) -> Result<PrComment, ProviderError> {
    let url = rurl(f, &["pullrequests", &n.to_string(), "comments"], &[]);
    let payload = json!({ "content": { "raw": body } });
    let call =
        Call::post(url, payload, f.subject(Some(n)), format!("a comment on pull request #{n}")).carrying(body, note);
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
    let url = rurl(f, &["pullrequests", &n.to_string(), "comments", id], &[]);
    let what = format!("comment {id} on pull request #{n}");
    let payload = json!({ "content": { "raw": body } });
    let call = Call::with_body(Method::PUT, url, payload, f.subject(Some(n)), what).carrying(body, note);
    let v = f.json(&call).await?;
    pr_comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the edited comment has no id".into()))
}

pub(super) async fn create_pull(f: &Forge, new: &NewPull, note: Option<String>) -> Result<PullRequest, ProviderError> {
    let mut body = json!({ "title": new.title, "source": { "branch": { "name": new.head } } });
    if let Some(base) = &new.base {
        body["destination"] = json!({ "branch": { "name": base } });
    }
    if let Some(d) = new.body.as_deref().filter(|b| !b.is_empty()) {
        body["description"] = json!(d);
    }
    if new.draft {
        body["draft"] = json!(true);
    }
    let what = format!("a new pull request from {}", new.head);
    let call = Call::post(rurl(f, &["pullrequests"], &[]), body, f.subject(None), what.clone())
        .carrying(new.body.as_deref().unwrap_or(""), note);
    let v = f.json(&call).await?;
    pull_of(&v).ok_or_else(|| f.unexpected(&what, "the new pull request has no id".into()))
}

pub(super) async fn whoami(f: &Forge) -> Result<Whoami, ProviderError> {
    let call = Call::get(f.url(&["user"], &[]), format!("bitbucket:{}", f.repo.host), "the signed-in user".into());
    match f.json(&call).await {
        Ok(v) => Ok(Whoami {
            user: read::text(&v, "/display_name").or_else(|| read::text(&v, "/nickname")),
            scopes: None,
            note: None,
        }),
        // Authenticated, but scoped to repositories and pull requests: good enough.
        Err(ProviderError::Forbidden(_)) => Ok(Whoami {
            user: None,
            scopes: None,
            note: Some(
                "the token is accepted but may not read the account (no `read:account` scope); that is fine".into(),
            ),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_quoted_for_the_query_language() {
        assert_eq!(quoted("feature/x"), "\"feature/x\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
