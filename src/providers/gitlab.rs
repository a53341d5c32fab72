//! GitLab and self-managed GitLab (REST API v4). The project is named by its URL-encoded path
//! (`group%2Fsub%2Fproject`).
//!
//! - Merge requests: `GET /projects/:id/merge_requests?source_branch=B&state=opened`, `GET
//!   .../merge_requests/:iid` (its `diff_refs` say which commits the diff is between), `POST
//!   /projects/:id/merge_requests {source_branch, target_branch, title, description?}` (a draft
//!   is a title starting `Draft: `).
//! - Files: `GET .../merge_requests/:iid/diffs` (each with its `diff`).
//! - Threads: `GET .../merge_requests/:iid/discussions`; a `DiffNote`'s `position` says where,
//!   on which side and at which commits; a thread whose position's `head_sha` is not the merge
//!   request's head is outdated. System notes are left out.
//! - Line comments: `POST .../discussions {body, position}`, the position naming the diff's
//!   three commits, the paths, `new_line` and/or `old_line` (both for an unchanged line) of the
//!   last line, and for several lines `line_range {start, end}` with GitLab's line codes
//!   (`<sha1 of the path>_<old line>_<new line>`). Replies: `POST .../discussions/:id/notes`.
//! - Notes on the merge request as a whole (a CI summary): `GET .../merge_requests/:iid/notes`
//!   (oldest first; system notes left out), `POST .../notes {body}`, `PUT .../notes/:id {body}`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::anchor::LineRange;

use super::diff::{self, Kind, Line};
use super::http::{Call, Paging};
use super::read;
use super::{
    ChangedFile, Comment, Forge, NewComment, NewPull, Posted, PrComment, Provider, ProviderError, PullRequest, Side,
    Thread, Whoami,
};

const PER_PAGE: &str = "100";

/// A URL under `/projects/:id`, the id being the project's path as one encoded segment
/// (`group%2Fsub%2Fproject`).
fn purl(f: &Forge, rest: &[&str], query: &[(&str, &str)]) -> reqwest::Url {
    let id = f.repo.slug();
    let mut segments = vec!["projects", id.as_str()];
    segments.extend_from_slice(rest);
    f.url(&segments, query)
}

pub(super) fn pull_of(v: &Value) -> Option<PullRequest> {
    let Some(number) = read::n(v, "/iid") else {
        tracing::debug!("skipping a merge request without an iid");
        return None;
    };
    let state = match read::s(v, "/state").as_deref() {
        Some("opened") | None => "open".to_owned(),
        Some("locked") => "open".to_owned(),
        Some(other) => other.to_ascii_lowercase(),
    };
    let title = read::s(v, "/title").unwrap_or_default();
    let draft = read::b(v, "/draft").or(read::b(v, "/work_in_progress")).unwrap_or(false);
    Some(PullRequest {
        number,
        title,
        body: read::s(v, "/description"),
        state,
        draft,
        author: read::s(v, "/author/username"),
        url: read::s(v, "/web_url"),
        source_branch: read::s(v, "/source_branch"),
        target_branch: read::s(v, "/target_branch"),
        head_sha: read::text(v, "/diff_refs/head_sha").or_else(|| read::text(v, "/sha")),
        base_sha: read::text(v, "/diff_refs/base_sha"),
        start_sha: read::text(v, "/diff_refs/start_sha"),
        created: read::s(v, "/created_at"),
        updated: read::s(v, "/updated_at"),
    })
}

pub(super) async fn pull_for_branch(f: &Forge, branch: &str) -> Result<Option<PullRequest>, ProviderError> {
    let url = purl(f, &["merge_requests"], &[("source_branch", branch), ("state", "opened"), ("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the merge requests of {}", f.repo.slug()), None).await?;
    match list.iter().filter_map(pull_of).next() {
        // The list leaves out `diff_refs`; the merge request itself has them.
        Some(mr) => Ok(Some(pull(f, mr.number).await?)),
        None => Ok(None),
    }
}

pub(super) async fn open_pulls(f: &Forge) -> Result<Vec<PullRequest>, ProviderError> {
    let url = purl(f, &["merge_requests"], &[("state", "opened"), ("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the merge requests of {}", f.repo.slug()), None).await?;
    Ok(list.iter().filter_map(pull_of).collect())
}

pub(super) async fn pull(f: &Forge, n: u64) -> Result<PullRequest, ProviderError> {
    let what = format!("merge request !{n} of {}", f.repo.slug());
    let v = f.get_json(purl(f, &["merge_requests", &n.to_string()], &[]), what.clone(), Some(n)).await?;
    pull_of(&v).ok_or_else(|| f.unexpected(&what, "a merge request without an iid".into()))
}

pub(super) async fn files(f: &Forge, n: u64) -> Result<Vec<ChangedFile>, ProviderError> {
    let url = purl(f, &["merge_requests", &n.to_string(), "diffs"], &[("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the diffs of merge request !{n}"), Some(n)).await?;
    Ok(list
        .iter()
        .filter_map(|v| {
            let new_path = read::text(v, "/new_path");
            let old_path = read::text(v, "/old_path");
            let deleted = read::b(v, "/deleted_file") == Some(true);
            let path =
                if deleted { old_path.clone().or(new_path.clone()) } else { new_path.clone().or(old_path.clone()) }?;
            let status = if read::b(v, "/new_file") == Some(true) {
                "added"
            } else if deleted {
                "removed"
            } else if read::b(v, "/renamed_file") == Some(true) {
                "renamed"
            } else {
                "modified"
            };
            let patch = read::s(v, "/diff");
            let lines = patch.as_deref().map(diff::parse).unwrap_or_default();
            let count = |k: Kind| patch.as_ref().map(|_| lines.iter().filter(|l| l.kind == k).count() as u64);
            Some(ChangedFile {
                old_path: old_path.filter(|o| status == "renamed" && Some(o) != new_path.as_ref()),
                path,
                status: status.to_owned(),
                additions: count(Kind::Added),
                deletions: count(Kind::Removed),
                patch,
            })
        })
        .collect())
}

fn comment_of(v: &Value) -> Option<Comment> {
    Some(Comment {
        id: read::s(v, "/id")?,
        author: read::s(v, "/author/username"),
        body: read::s(v, "/body").unwrap_or_default(),
        created: read::s(v, "/created_at"),
    })
}

/// A line code's numbers: `<sha>_<old>_<new>`.
fn line_code_numbers(code: &str) -> Option<(u32, u32)> {
    let mut parts = code.rsplitn(3, '_');
    let new = parts.next()?.parse().ok()?;
    let old = parts.next()?.parse().ok()?;
    Some((old, new))
}

/// The first line of a `line_range` end on `side`: its `new_line`/`old_line`, else from its
/// line code.
fn range_line(v: &Value, end: &str, side: Side) -> Option<u32> {
    let key = if side == Side::New { "new_line" } else { "old_line" };
    read::line(v, &format!("/position/line_range/{end}/{key}")).or_else(|| {
        let (old, new) = line_code_numbers(&read::s(v, &format!("/position/line_range/{end}/line_code"))?)?;
        let n = if side == Side::New { new } else { old };
        (n >= 1).then_some(n)
    })
}

fn thread_of(d: &Value, pr: &PullRequest) -> Option<Thread> {
    let id = read::text(d, "/id")?;
    let notes: Vec<&Value> =
        d.get("notes").and_then(Value::as_array)?.iter().filter(|n| read::b(n, "/system") != Some(true)).collect();
    let first = *notes.first()?;
    let diff_note =
        read::s(first, "/type").as_deref() == Some("DiffNote") && first.get("position").is_some_and(Value::is_object);
    let (path, side, lines, commit, outdated) = if diff_note {
        let new_line = read::line(first, "/position/new_line");
        let old_line = read::line(first, "/position/old_line");
        let side = if new_line.is_some() || old_line.is_none() { Side::New } else { Side::Old };
        let end = if side == Side::New { new_line } else { old_line };
        let start = range_line(first, "start", side);
        let lines = end.map(|e| LineRange::new(start.filter(|s| *s <= e).unwrap_or(e), e));
        let path = if side == Side::New {
            read::text(first, "/position/new_path").or_else(|| read::text(first, "/position/old_path"))
        } else {
            read::text(first, "/position/old_path").or_else(|| read::text(first, "/position/new_path"))
        };
        let head = read::text(first, "/position/head_sha");
        let commit = if side == Side::New { head.clone() } else { read::text(first, "/position/base_sha") };
        let outdated = match (&head, &pr.head_sha) {
            (Some(h), Some(p)) => h != p,
            _ => false,
        };
        (path, side, lines, commit, outdated)
    } else {
        (None, Side::New, None, None, false)
    };
    let resolvable = notes.iter().any(|n| read::b(n, "/resolvable") == Some(true));
    let resolved = if resolvable {
        Some(
            notes
                .iter()
                .filter(|n| read::b(n, "/resolvable") == Some(true))
                .all(|n| read::b(n, "/resolved") == Some(true)),
        )
    } else {
        None
    };
    Some(Thread {
        id,
        provider: Provider::GitLab,
        path,
        side,
        lines,
        commit,
        resolved,
        outdated,
        comments: notes.iter().filter_map(|n| comment_of(n)).collect(),
        url: pr.url.as_ref().and_then(|u| read::s(first, "/id").map(|nid| format!("{u}#note_{nid}"))),
        anchored_text: None,
    })
}

pub(super) async fn threads(f: &Forge, pr: &PullRequest) -> Result<Vec<Thread>, ProviderError> {
    let n = pr.number;
    let url = purl(f, &["merge_requests", &n.to_string(), "discussions"], &[("per_page", PER_PAGE)]);
    let list = f.pages(url, Paging::Link, format!("the discussions of merge request !{n}"), Some(n)).await?;
    Ok(list.iter().filter_map(|d| thread_of(d, pr)).collect())
}

/// GitLab's code for a diff line: the SHA-1 of the file's path, then the old and new line
/// counters.
pub fn line_code(path: &str, old: u32, new: u32) -> String {
    format!("{}_{old}_{new}", sha1_smol::Sha1::from(path.as_bytes()).digest())
}

fn range_end(path: &str, l: &Line) -> Value {
    json!({
        "line_code": line_code(path, l.old, l.new),
        "type": if l.kind == Kind::Added { "new" } else { "old" },
        "old_line": l.on(Side::Old),
        "new_line": l.on(Side::New),
    })
}

pub(super) async fn comment(
    f: &Forge,
    pr: &PullRequest,
    c: &NewComment,
    note: Option<String>,
) -> Result<Posted, ProviderError> {
    let n = pr.number;
    let what = format!("a thread on merge request !{n}");
    let (Some(base), Some(start), Some(head)) = (&pr.base_sha, &pr.start_sha, &pr.head_sha) else {
        return Err(ProviderError::Refused {
            host: f.repo.host.clone(),
            status: 0,
            what,
            message: "GitLab has not worked out this merge request's diff yet (its diff_refs are empty); try again in \
                      a moment"
                .into(),
        });
    };
    if c.file_level {
        return Err(ProviderError::Setup(
            "GitLab line threads need lines the diff shows; a comment on the whole file is not offered for GitLab"
                .into(),
        ));
    }
    let files = files(f, n).await?;
    let file = files.iter().find(|x| x.path == c.path || x.old_path.as_deref() == Some(&c.path));
    let Some(file) = file else {
        return Err(ProviderError::NotInDiff(diff::not_in_diff(&c.path, c.side, c.lines, None, "merge request")));
    };
    let lines = diff::parse(file.patch.as_deref().unwrap_or(""));
    let found = diff::find(&lines, c.side, c.lines).map_err(|_| {
        ProviderError::NotInDiff(diff::not_in_diff(&c.path, c.side, c.lines, Some(&lines), "merge request"))
    })?;
    let (first, last) = (found[0], found[found.len() - 1]);
    let new_path = file.path.clone();
    let old_path = file.old_path.clone().unwrap_or_else(|| file.path.clone());
    let mut position = json!({
        "base_sha": base, "start_sha": start, "head_sha": head, "position_type": "text",
        "old_path": old_path, "new_path": new_path,
    });
    // An unchanged line is named on both sides; an added one by its new line, a removed one by
    // its old line.
    if let Some(o) = last.on(Side::Old) {
        position["old_line"] = json!(o);
    }
    if let Some(nl) = last.on(Side::New) {
        position["new_line"] = json!(nl);
    }
    if c.lines.start < c.lines.end {
        let code_path = if c.side == Side::Old { &old_path } else { &new_path };
        position["line_range"] = json!({ "start": range_end(code_path, &first), "end": range_end(code_path, &last) });
    }
    let url = purl(f, &["merge_requests", &n.to_string(), "discussions"], &[]);
    let call = Call::post(url, json!({ "body": c.body, "position": position }), f.subject(Some(n)), what.clone())
        .carrying(&c.body, note);
    let v = f.json(&call).await?;
    let thread = thread_of(&v, pr).ok_or_else(|| f.unexpected(&what, "the new thread has no id or note".into()))?;
    let comment =
        thread.comments.into_iter().next().ok_or_else(|| f.unexpected(&what, "the new thread has no note".into()))?;
    Ok(Posted { thread_id: thread.id, comment, note: None })
}

pub(super) async fn reply(
    f: &Forge,
    pr: &PullRequest,
    thread: &str,
    body: &str,
    note: Option<String>,
) -> Result<Posted, ProviderError> {
    let n = pr.number;
    let id = thread.trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ProviderError::Setup(format!("`{thread}` is not a GitLab discussion id")));
    }
    let url = purl(f, &["merge_requests", &n.to_string(), "discussions", id, "notes"], &[]);
    let call = Call::post(url, json!({ "body": body }), f.subject(Some(n)), format!("a reply in discussion {id}"))
        .carrying(body, note);
    let v = f.json(&call).await?;
    let comment = comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the new note has no id".into()))?;
    Ok(Posted { thread_id: id.to_owned(), comment, note: None })
}

/// A note on the merge request as a whole; system notes ("added 1 commit") are not comments.
/// Note objects carry no link of their own (the page is the merge request's, `#note_ID`).
fn pr_comment_of(v: &Value) -> Option<PrComment> {
    if read::b(v, "/system") == Some(true) {
        return None;
    }
    Some(PrComment {
        id: read::s(v, "/id")?,
        author: read::s(v, "/author/username"),
        body: read::s(v, "/body").unwrap_or_default(),
        url: None,
    })
}

pub(super) async fn pr_comments(f: &Forge, n: u64) -> Result<Vec<PrComment>, ProviderError> {
    let url = purl(
        f,
        &["merge_requests", &n.to_string(), "notes"],
        &[("sort", "asc"), ("order_by", "created_at"), ("per_page", PER_PAGE)],
    );
    let list = f.pages(url, Paging::Link, format!("the notes of merge request !{n}"), Some(n)).await?;
    Ok(list.iter().filter_map(pr_comment_of).collect())
}

pub(super) async fn create_pr_comment(
    f: &Forge,
    n: u64,
    body: &str,
    note: Option<String>,
) -> Result<PrComment, ProviderError> {
    let url = purl(f, &["merge_requests", &n.to_string(), "notes"], &[]);
    let call = Call::post(url, json!({ "body": body }), f.subject(Some(n)), format!("a note on merge request !{n}"))
        .carrying(body, note);
    let v = f.json(&call).await?;
    pr_comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the new note has no id".into()))
}

pub(super) async fn edit_pr_comment(
    f: &Forge,
    n: u64,
    id: &str,
    body: &str,
    note: Option<String>,
) -> Result<PrComment, ProviderError> {
    let url = purl(f, &["merge_requests", &n.to_string(), "notes", id], &[]);
    let what = format!("note {id} on merge request !{n}");
    let call =
        Call::with_body(Method::PUT, url, json!({ "body": body }), f.subject(Some(n)), what).carrying(body, note);
    let v = f.json(&call).await?;
    pr_comment_of(&v).ok_or_else(|| f.unexpected(&call.what, "the edited note has no id".into()))
}

async fn default_branch(f: &Forge) -> Result<String, ProviderError> {
    let what = format!("the project {}", f.repo.slug());
    let v = f.get_json(purl(f, &[], &[]), what.clone(), None).await?;
    read::text(&v, "/default_branch").ok_or_else(|| f.unexpected(&what, "it names no default branch".into()))
}

pub(super) async fn create_pull(f: &Forge, new: &NewPull, note: Option<String>) -> Result<PullRequest, ProviderError> {
    let target = match &new.base {
        Some(b) => b.clone(),
        None => default_branch(f).await?,
    };
    let title = if new.draft && !new.title.to_ascii_lowercase().starts_with("draft:") {
        format!("Draft: {}", new.title)
    } else {
        new.title.clone()
    };
    let mut body = json!({ "source_branch": new.head, "target_branch": target, "title": title });
    if let Some(d) = new.body.as_deref().filter(|b| !b.is_empty()) {
        body["description"] = json!(d);
    }
    let what = format!("a new merge request from {} into {target}", new.head);
    let call = Call::post(purl(f, &["merge_requests"], &[]), body, f.subject(None), what.clone())
        .carrying(new.body.as_deref().unwrap_or(""), note);
    let v = f.json(&call).await?;
    pull_of(&v).ok_or_else(|| f.unexpected(&what, "the new merge request has no iid".into()))
}

pub(super) async fn whoami(f: &Forge) -> Result<Whoami, ProviderError> {
    let call = Call::get(f.url(&["user"], &[]), format!("gitlab:{}", f.repo.host), "the signed-in user".into());
    let v = f.json(&call).await?;
    Ok(Whoami { user: read::text(&v, "/username"), scopes: None, note: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_codes_are_the_path_hash_and_both_counters() {
        // `printf README | sha1sum`
        let code = line_code("README", 3, 4);
        assert_eq!(code, "69e27356ef629022720d868ab0c0e3394775b6c1_3_4");
        assert_eq!(line_code_numbers(&code), Some((3, 4)));
        assert_eq!(line_code_numbers("junk"), None);
    }
}
