//! Pull requests against a stand-in code host: a real HTTP server on loopback serving the
//! providers' documented payloads (`fixtures/providers/`), checking what we send (method, path,
//! query, headers, body) as strictly as the provider would: pagination over several pages, rate
//! limits waited out or reported, malformed answers, the egress ledger, and review threads
//! placed on a working copy that moved on. Nothing here reaches a real provider.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::fake_host::{FakeHost, Reply, fixture, fixture_json};
use common::{Scratch, stderr, stdout};
use marginalia::anchor::{LineRange, Status, Text};
use marginalia::providers::detect::Config;
use marginalia::providers::place::{self, Where};
use marginalia::providers::{
    Forge, Http, HttpOptions, NewComment, NewPull, Provider, ProviderError, PullRequest, Side, Token, TokenSource,
};
use marginalia::store::{Egress, Store};

const GH_TOKEN: &str = "ghp_fakeTokenForTests0123456789abcdefABCD";
const GH_REMOTE: &str = "git@github.com:octocat/Hello-World.git";
const GH_HEAD: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

struct Setup {
    forge: Forge,
    store: Arc<Mutex<Store>>,
    dir: tempfile::TempDir,
}

fn quick() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        max_wait: Duration::from_secs(3),
        max_pages: 20,
    }
}

fn setup_with(
    host: &FakeHost,
    provider: Provider,
    remote: &str,
    api_path: &str,
    token: &str,
    opts: HttpOptions,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Mutex::new(Store::open(&dir.path().join("marginalia.db")).unwrap()));
    let config = Config { hosts: Vec::new(), overrides: vec![(provider, format!("{}{api_path}", host.base))] };
    let repo = config.repo_of_url(remote).unwrap().expect("a provider remote");
    let http = Http::new(store.clone(), opts).unwrap();
    let var = match provider {
        Provider::GitHub => "GITHUB_TOKEN",
        Provider::GitLab => "GITLAB_TOKEN",
        Provider::Bitbucket => "BITBUCKET_TOKEN",
    };
    let forge = Forge::new(repo, http, Token::new(token), TokenSource::Env(var.into()));
    Setup { forge, store, dir }
}

fn github(host: &FakeHost) -> Setup {
    setup_with(host, Provider::GitHub, GH_REMOTE, "", GH_TOKEN, quick())
}

/// The ledger, oldest first.
fn ledger(s: &Setup) -> Vec<Egress> {
    let mut rows = s.store.lock().unwrap().egress(1000, false).unwrap();
    rows.reverse();
    rows
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    v.sort();
    v
}

/// The headers every GitHub request carries.
fn assert_github_headers(r: &common::fake_host::Request) {
    assert_eq!(r.header("authorization"), Some(format!("Bearer {GH_TOKEN}").as_str()), "{} {}", r.method, r.path);
    assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
    assert!(r.header("user-agent").is_some_and(|u| u.starts_with("marginalia/")), "{:?}", r.header("user-agent"));
}

fn serve_gh_pull(host: &FakeHost) {
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347", Reply::fixture(200, "github/pull.response-200-201.json"));
}

async fn gh_pull(s: &Setup) -> PullRequest {
    s.forge.pull(1347).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// GitHub
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn github_finds_the_branchs_pull_request_with_the_documented_request() {
    let host = FakeHost::start();
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls?head=octocat:new-topic&state=open&per_page=100",
        Reply::fixture(200, "github/list-pulls.response-200.json"),
    );
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls?head=someone:fork-topic&state=open&per_page=100",
        Reply::json(200, "[]"),
    );
    let s = github(&host);
    let pr = s.forge.pull_for_branch("new-topic", None).await.unwrap().expect("the fixture's pull request");
    assert_eq!(pr.number, 1347);
    assert_eq!(pr.title, "Amazing new feature");
    // The example says both `state: open` and `merged_at`: open wins.
    assert_eq!(pr.state, "open");
    assert_eq!(pr.source_branch.as_deref(), Some("new-topic"));
    assert_eq!(pr.target_branch.as_deref(), Some("master"));
    assert_eq!(pr.head_sha.as_deref(), Some(GH_HEAD));
    assert_eq!(pr.author.as_deref(), Some("octocat"));
    // A fork's branch is asked for under its own owner; none is open there.
    assert_eq!(s.forge.pull_for_branch("fork-topic", Some("someone")).await.unwrap(), None);

    let reqs = host.requests();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/repos/octocat/Hello-World/pulls"));
    assert_eq!(r.pairs(), pairs(&[("head", "octocat:new-topic"), ("state", "open"), ("per_page", "100")]));
    assert!(r.body.is_empty());
    assert_github_headers(r);
    assert_eq!(reqs[1].pairs(), pairs(&[("head", "someone:fork-topic"), ("state", "open"), ("per_page", "100")]));
}

/// One pull request per page, from the list example with its number changed (constructed).
fn gh_page(numbers: &[u64]) -> String {
    let item = fixture_json("github/list-pulls.response-200.json")[0].clone();
    let list: Vec<Value> = numbers
        .iter()
        .map(|n| {
            let mut v = item.clone();
            v["number"] = json!(n);
            v["title"] = json!(format!("pull {n}"));
            v
        })
        .collect();
    serde_json::to_string(&list).unwrap()
}

#[tokio::test]
async fn github_lists_every_page_through_link_headers() {
    let host = FakeHost::start();
    let path = "/repos/octocat/Hello-World/pulls";
    let link = |page: u32| {
        format!(
            "<{{base}}{path}?state=open&per_page=100&page={page}>; rel=\"next\", <{{base}}{path}?state=open&per_page=100&page=3>; rel=\"last\""
        )
    };
    host.on(
        "GET",
        &format!("{path}?state=open&per_page=100"),
        Reply::json(200, gh_page(&[3, 2])).header("link", &link(2)),
    );
    host.on(
        "GET",
        &format!("{path}?state=open&per_page=100&page=2"),
        Reply::json(200, gh_page(&[1])).header("link", &link(3)),
    );
    host.on("GET", &format!("{path}?state=open&per_page=100&page=3"), Reply::json(200, gh_page(&[0])));
    let s = github(&host);
    let pulls = s.forge.open_pulls().await.unwrap();
    assert_eq!(pulls.iter().map(|p| p.number).collect::<Vec<_>>(), vec![3, 2, 1, 0]);
    let reqs = host.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_github_headers(r);
    }
    assert_eq!(reqs[2].pairs(), pairs(&[("state", "open"), ("per_page", "100"), ("page", "3")]));
    // Each page is on the record, without its query.
    let rows = ledger(&s);
    assert_eq!(rows.len(), 3);
    for e in &rows {
        assert_eq!(e.method, "GET");
        assert_eq!(e.endpoint, path);
        assert_eq!(e.destination, host.base.clone());
        assert_eq!(e.subject.as_deref(), Some("github:octocat/Hello-World"));
        assert_eq!(e.status, Some(200));
        assert_eq!((e.code_bytes, e.body_bytes), (0, 0));
    }
}

/// Review comments (constructed around the documented example): the example itself (whose
/// `in_reply_to_id` names a comment not in the list, so it starts its thread), a reply to it,
/// an outdated comment, and one without an id.
fn gh_review_comments() -> String {
    let example = fixture_json("github/list-review-comments.response-200.json")[0].clone();
    let mut reply = example.clone();
    reply["id"] = json!(11);
    reply["in_reply_to_id"] = json!(10);
    reply["body"] = json!("Thanks, fixed");
    reply["user"]["login"] = json!("hubot");
    let mut outdated = example.clone();
    outdated["id"] = json!(12);
    outdated["in_reply_to_id"] = Value::Null;
    outdated["line"] = Value::Null;
    outdated["start_line"] = Value::Null;
    outdated["original_line"] = json!(7);
    outdated["original_start_line"] = Value::Null;
    outdated["diff_hunk"] = json!("@@ -5,3 +5,3 @@ def x\n a\n-b\n+c");
    outdated["body"] = json!("This changed");
    let mut no_id = example.clone();
    no_id.as_object_mut().unwrap().remove("id");
    serde_json::to_string(&vec![example, reply, outdated, no_id]).unwrap()
}

/// GitHub's GraphQL answer for the threads' state (constructed from the schema's fields):
/// (first comment's id, resolved, outdated) per thread.
fn gh_thread_state_of(threads: &[(u64, bool, bool)]) -> String {
    let nodes: Vec<Value> = threads
        .iter()
        .map(|(id, resolved, outdated)| {
            json!({"isResolved": resolved, "isOutdated": outdated, "comments": {"nodes": [{"databaseId": id}]}})
        })
        .collect();
    json!({"data": {"repository": {"pullRequest": {"reviewThreads": {
        "pageInfo": {"hasNextPage": false, "endCursor": "Y3Vyc29yOjI="}, "nodes": nodes }}}}})
    .to_string()
}

fn gh_thread_state() -> String {
    gh_thread_state_of(&[(10, true, false), (12, false, true)])
}

#[tokio::test]
async fn github_review_threads_group_replies_and_take_resolution_from_graphql() {
    let host = FakeHost::start();
    serve_gh_pull(&host);
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls/1347/comments?per_page=100",
        Reply::json(200, gh_review_comments()),
    );
    host.on("POST", "/graphql", Reply::json(200, gh_thread_state()));
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let threads = s.forge.threads(&pr).await.unwrap();
    assert_eq!(threads.len(), 2, "{threads:#?}");
    let t = &threads[0];
    assert_eq!((t.id.as_str(), t.path.as_deref(), t.side), ("10", Some("file1.txt"), Side::New));
    assert_eq!(t.lines, Some(LineRange::new(1, 2)));
    assert_eq!(t.commit.as_deref(), Some(GH_HEAD));
    assert_eq!((t.resolved, t.outdated), (Some(true), false));
    let said: Vec<(&str, &str)> = t.comments.iter().map(|c| (c.author.as_deref().unwrap(), c.body.as_str())).collect();
    assert_eq!(said, vec![("octocat", "Great stuff!"), ("hubot", "Thanks, fixed")]);
    let o = &threads[1];
    assert_eq!((o.id.as_str(), o.lines, o.outdated, o.resolved), ("12", Some(LineRange::new(7, 7)), true, Some(false)));
    assert_eq!(o.commit.as_deref(), Some("9c48853fa3dc5c1c3d6f1f1cd1f2743e72652840"), "outdated: the original commit");
    assert_eq!(o.anchored_text.as_deref(), Some("c"), "the commented line from the diff hunk");

    let q = &host.requests_to("POST", "/graphql")[0];
    assert_github_headers(q);
    assert_eq!(q.header("content-type"), Some("application/json"));
    let body = q.json();
    assert!(body["query"].as_str().unwrap().contains("reviewThreads"), "{body}");
    assert_eq!(body["variables"], json!({"owner": "octocat", "name": "Hello-World", "number": 1347, "after": null}));

    // Without GraphQL (a token that may not use it, an error), the threads come anyway.
    let host2 = FakeHost::start();
    serve_gh_pull(&host2);
    host2.on("GET", "/repos/octocat/Hello-World/pulls/1347/comments", Reply::json(200, gh_review_comments()));
    host2.on("POST", "/graphql", Reply::json(502, "<html>bad gateway</html>"));
    let s2 = github(&host2);
    let threads = s2.forge.threads(&gh_pull(&s2).await).await.unwrap();
    assert_eq!(threads.iter().map(|t| t.resolved).collect::<Vec<_>>(), vec![None, None]);
}

/// The files of the pull request, with a real patch (constructed): new lines 1-2 added, old
/// lines 1-5 removed.
fn gh_files(with_patch: bool) -> String {
    let mut f = fixture_json("github/list-pull-files.response-200.json")[0].clone();
    f["status"] = json!("modified");
    if with_patch {
        f["patch"] = json!("@@ -1,5 +1,2 @@\n+new one\n+new two\n-old1\n-old2\n-old3\n-old4\n-old5");
    } else {
        f.as_object_mut().unwrap().remove("patch");
    }
    serde_json::to_string(&vec![f]).unwrap()
}

fn new_comment(path: &str, lines: LineRange, side: Side, body: &str) -> NewComment {
    NewComment { path: path.into(), lines, side, body: body.into(), file_level: false, anyway: false }
}

#[tokio::test]
async fn github_line_and_multi_line_comments_send_exactly_the_documented_bodies() {
    let host = FakeHost::start();
    serve_gh_pull(&host);
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347/files", Reply::json(200, gh_files(true)));
    host.on(
        "POST",
        "/repos/octocat/Hello-World/pulls/1347/comments",
        Reply::fixture(201, "github/create-review-comment.response-201-multi-line.json"),
    );
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let multi =
        s.forge.comment(&pr, &new_comment("file1.txt", LineRange::new(1, 2), Side::New, "Great stuff!")).await.unwrap();
    assert_eq!(multi.thread_id, "10");
    assert_eq!(multi.comment.body, "Great stuff!");
    let single = new_comment("file1.txt", LineRange::new(5, 5), Side::Old, "Let's add this deleted line back.");
    s.forge.comment(&pr, &single).await.unwrap();
    let mut file = new_comment("file1.txt", LineRange::new(9, 9), Side::New, "About this file");
    file.file_level = true;
    s.forge.comment(&pr, &file).await.unwrap();

    let posts = host.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments");
    assert_eq!(posts.len(), 3);
    for p in &posts {
        assert_github_headers(p);
        assert_eq!(p.header("content-type"), Some("application/json"));
        assert!(p.query.is_empty());
    }
    assert_eq!(posts[0].json(), fixture_json("github/create-review-comment.request-multi-line.json"));
    assert_eq!(posts[1].json(), fixture_json("github/create-review-comment.request-single-line.json"));
    assert_eq!(
        posts[2].json(),
        json!({"body": "About this file", "commit_id": GH_HEAD, "path": "file1.txt", "subject_type": "file"})
    );
    // The files were read before each line comment, to check the lines.
    let files = host.requests_to("GET", "/repos/octocat/Hello-World/pulls/1347/files");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].pairs(), pairs(&[("per_page", "100")]));
}

#[tokio::test]
async fn github_lines_outside_the_diff_are_refused_and_nothing_is_posted() {
    let host = FakeHost::start();
    serve_gh_pull(&host);
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347/files", Reply::json(200, gh_files(true)));
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let e = s.forge.comment(&pr, &new_comment("file1.txt", LineRange::new(2, 4), Side::New, "x")).await.unwrap_err();
    assert!(matches!(e, ProviderError::NotInDiff(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "lines 2-4 of file1.txt (new side) are not part of the pull request's diff (it shows 1-2 of the new file); a \
         line comment can only go on lines the diff shows"
    );
    let e = s.forge.comment(&pr, &new_comment("other.txt", LineRange::new(1, 1), Side::New, "x")).await.unwrap_err();
    assert!(e.to_string().contains("other.txt is not changed by this pull request"), "{e}");
    assert_eq!(e.exit_code(), 1);
    assert!(host.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments").is_empty());

    // No patch for the file (too large): GitHub decides, and its refusal is put the same way.
    let host = FakeHost::start();
    serve_gh_pull(&host);
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347/files", Reply::json(200, gh_files(false)));
    host.on(
        "POST",
        "/repos/octocat/Hello-World/pulls/1347/comments",
        Reply::json(
            422,
            r#"{"message":"Validation Failed","errors":[{"resource":"PullRequestReviewComment","code":"custom","field":"pull_request_review_thread.line","message":"pull_request_review_thread.line must be part of the diff"}],"documentation_url":"https://docs.github.com/rest"}"#,
        ),
    );
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let e = s.forge.comment(&pr, &new_comment("file1.txt", LineRange::new(40, 40), Side::New, "x")).await.unwrap_err();
    assert!(matches!(e, ProviderError::NotInDiff(_)), "{e:?}");
    assert!(e.to_string().contains("must be part of the diff"), "{e}");
}

#[tokio::test]
async fn github_replies_and_opens_pull_requests_with_the_documented_bodies() {
    let host = FakeHost::start();
    serve_gh_pull(&host);
    host.on(
        "POST",
        "/repos/octocat/Hello-World/pulls/1347/comments/10/replies",
        Reply::fixture(201, "github/create-reply.response-201.json"),
    );
    host.on("GET", "/repos/octocat/Hello-World", Reply::json(200, r#"{"id":1296269,"default_branch":"master"}"#));
    host.on("POST", "/repos/octocat/Hello-World/pulls", Reply::fixture(201, "github/pull.response-200-201.json"));
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let posted = s.forge.reply(&pr, "10", "Great stuff!", false).await.unwrap();
    assert_eq!((posted.thread_id.as_str(), posted.comment.id.as_str()), ("10", "10"));
    let r = &host.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments/10/replies")[0];
    assert_github_headers(r);
    assert_eq!(r.json(), fixture_json("github/create-reply.request.json"));
    let e = s.forge.reply(&pr, "r10", "x", false).await.unwrap_err();
    assert!(e.to_string().contains("is not a GitHub review thread"), "{e}");

    let new = NewPull {
        title: "Amazing new feature".into(),
        body: Some("Please pull these awesome changes in!".into()),
        head: "octocat:new-feature".into(),
        base: None,
        draft: false,
        anyway: false,
    };
    let made = s.forge.create_pull(&new).await.unwrap();
    assert_eq!(made.number, 1347);
    let posts = host.requests_to("POST", "/repos/octocat/Hello-World/pulls");
    assert_eq!(posts[0].json(), fixture_json("github/create-pull.request.json"), "base: the default branch, asked for");
    assert_eq!(host.requests_to("GET", "/repos/octocat/Hello-World").len(), 1);
    let draft = NewPull { base: Some("develop".into()), draft: true, body: None, ..new };
    s.forge.create_pull(&draft).await.unwrap();
    let posts = host.requests_to("POST", "/repos/octocat/Hello-World/pulls");
    assert_eq!(
        posts[1].json(),
        json!({"title": "Amazing new feature", "head": "octocat:new-feature", "base": "develop", "draft": true})
    );
    assert_eq!(host.requests_to("GET", "/repos/octocat/Hello-World").len(), 1, "a base given is not looked up");
}

// ---------------------------------------------------------------------------------------------
// Rate limits, errors, malformed answers, timeouts, redirects, the ledger
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rate_limited_answer_is_waited_out_and_then_succeeds() {
    let host = FakeHost::start();
    let path = "/repos/octocat/Hello-World/pulls";
    host.on(
        "GET",
        path,
        Reply::json(403, r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#secondary-rate-limits"}"#)
            .header("retry-after", "1"),
    );
    host.on("GET", path, Reply::json(200, gh_page(&[5])));
    let s = github(&host);
    let started = Instant::now();
    let pulls = s.forge.open_pulls().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(pulls.len(), 1);
    assert_eq!(host.requests().len(), 2);
    assert_eq!(ledger(&s).iter().map(|e| e.status).collect::<Vec<_>>(), vec![Some(403), Some(200)]);

    // GitLab's 429 with Retry-After, the same way.
    let host = FakeHost::start();
    let mrs = "/api/v4/projects/group%2Fshop/merge_requests";
    host.on("GET", mrs, Reply::text(429, "Retry later").header("retry-after", "1").header("ratelimit-remaining", "0"));
    host.on("GET", mrs, Reply::fixture(200, "gitlab/list-project-merge-requests.response-200.json"));
    let s = setup_with(&host, Provider::GitLab, "git@gitlab.com:group/shop.git", "/api/v4", "glpat-x", quick());
    assert_eq!(s.forge.open_pulls().await.unwrap().len(), 1);
    assert_eq!(host.requests().len(), 2);
}

#[tokio::test]
async fn a_long_rate_limit_is_an_error_that_says_when_to_try_again() {
    let host = FakeHost::start();
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls",
        Reply::json(403, r#"{"message":"API rate limit exceeded for user ID 1."}"#)
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-used", "5000")
            .header("x-ratelimit-reset", &reset.to_string())
            .header("x-ratelimit-resource", "core"),
    );
    let s = github(&host);
    let started = Instant::now();
    let e = s.forge.open_pulls().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "it did not wait an hour");
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
    let said = e.to_string();
    assert!(said.starts_with("github.com: the rate limit of 5000 requests is used up; try again at "), "{said}");
    assert!(said.ends_with("(60 min from now)") || said.ends_with("(61 min from now)"), "{said}");
    assert_eq!(e.exit_code(), 1);
    assert_eq!(host.requests().len(), 1, "no retry inside the window");
}

#[tokio::test]
async fn refusals_say_whether_the_token_its_scope_or_the_repository_is_the_problem() {
    let host = FakeHost::start();
    let s = github(&host);
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls/1",
        Reply::json(401, r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}"#),
    );
    let e = s.forge.pull(1).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "github.com does not accept the token from GITHUB_TOKEN (Bad credentials): it is wrong, expired or revoked. \
         Run `marginalia auth login github` with a new token (the `repo` scope (`public_repo` for a public repository), \
         or read access to pull requests for a fine-grained token), or set GITHUB_TOKEN or GH_TOKEN"
    );
    assert_eq!(e.exit_code(), 2);
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls/2",
        Reply::json(403, r#"{"message":"Resource not accessible by personal access token"}"#)
            .header("x-oauth-scopes", "read:user")
            .header("x-accepted-oauth-scopes", "repo"),
    );
    let e = s.forge.pull(2).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "github.com refused pull request #2 of octocat/Hello-World: the token from GITHUB_TOKEN has the scopes \
         `read:user` but this needs one of `repo` (Resource not accessible by personal access token)"
    );
    assert_eq!(e.exit_code(), 2);
    host.on("GET", "/repos/octocat/Hello-World/pulls/3", Reply::json(404, r#"{"message":"Not Found"}"#));
    let e = s.forge.pull(3).await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound(_)));
    assert!(
        e.to_string().starts_with(
            "github.com has no pull request #3 of octocat/Hello-World, or the token from GITHUB_TOKEN cannot see it"
        ),
        "{e}"
    );
    assert_eq!(e.exit_code(), 1);

    // GitLab's documented error bodies.
    let host = FakeHost::start();
    let s = setup_with(&host, Provider::GitLab, "git@gitlab.com:group/shop.git", "/api/v4", "glpat-x", quick());
    let mr = "/api/v4/projects/group%2Fshop/merge_requests/1";
    host.on("GET", mr, Reply::fixture(401, "gitlab/error-401.response.json"));
    let e = s.forge.pull(1).await.unwrap_err();
    assert!(
        e.to_string().starts_with("gitlab.com does not accept the token from GITLAB_TOKEN (401 Unauthorized)"),
        "{e}"
    );
    host.on(
        "GET",
        "/api/v4/projects/group%2Fshop/merge_requests/2",
        Reply::fixture(403, "gitlab/error-403-insufficient-scope.response.json"),
    );
    let e = s.forge.pull(2).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "gitlab.com refused merge request !2 of group/shop: the token from GITLAB_TOKEN lacks the scope for it (the \
         `read_api` scope): The request requires higher privileges than provided by the access token."
    );
    host.on("GET", "/api/v4/projects/group%2Fshop", Reply::json(200, r#"{"default_branch":"main"}"#));
    host.on(
        "POST",
        "/api/v4/projects/group%2Fshop/merge_requests",
        Reply::fixture(400, "gitlab/error-400-validation.response.json"),
    );
    let new = NewPull { title: "T".into(), body: None, head: "f".into(), base: None, draft: false, anyway: false };
    let e = s.forge.create_pull(&new).await.unwrap_err();
    assert!(matches!(e, ProviderError::Refused { status: 400, .. }), "{e:?}");
    assert!(e.to_string().starts_with("gitlab.com refused a new merge request from f into main (400): "), "{e}");
}

#[tokio::test]
async fn malformed_answers_are_errors_or_skipped_entries_never_a_crash() {
    let host = FakeHost::start();
    let s = github(&host);
    let path = "/repos/octocat/Hello-World/pulls";
    host.on("GET", path, Reply::text(200, "<html>Service unavailable</html>"));
    let e = s.forge.open_pulls().await.unwrap_err();
    assert!(matches!(e, ProviderError::Unexpected { .. }), "{e:?}");
    assert!(e.to_string().contains("not JSON"), "{e}");
    host.on("GET", path, Reply::json(200, r#"{"message":"a list was promised"}"#));
    let e = s.forge.open_pulls().await.unwrap_err();
    assert!(e.to_string().contains("a list was expected, not an object"), "{e}");
    // Entries without what they must have are skipped; mistyped fields are absent values.
    host.on(
        "GET",
        path,
        Reply::json(
            200,
            r#"[{"title":"no number"}, {"number":"12","title":5,"user":"not an object","head":[],"draft":"yes"}, {"number":13}, 7, null]"#,
        ),
    );
    let pulls = s.forge.open_pulls().await.unwrap();
    assert_eq!(pulls.iter().map(|p| p.number).collect::<Vec<_>>(), vec![12, 13]);
    assert_eq!((pulls[0].author.clone(), pulls[0].draft, pulls[0].head_sha.clone()), (None, false, None));
    host.on("GET", "/repos/octocat/Hello-World/pulls/13", Reply::json(200, r#"{"number":13,"head":{"sha":null}}"#));
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls/13/comments",
        Reply::json(200, r#"[{"id":1,"line":"x","path":null,"user":null,"body":null,"side":42}, {"id":"2","in_reply_to_id":1,"body":"ok"}, {}]"#),
    );
    host.on("POST", "/graphql", Reply::json(200, r#"{"data":null,"errors":[{"message":"Something went wrong"}]}"#));
    let pr = s.forge.pull(13).await.unwrap();
    let threads = s.forge.threads(&pr).await.unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!((threads[0].path.clone(), threads[0].lines, threads[0].comments.len()), (None, None, 2));
    // A comment needs the head commit, which this pull request does not name.
    let e = s.forge.comment(&pr, &new_comment("a", LineRange::new(1, 1), Side::New, "x")).await.unwrap_err();
    assert!(e.to_string().contains("it names no head commit"), "{e}");

    // Bitbucket: a page without `values`, and a `next` on another host.
    let host = FakeHost::start();
    let s = setup_with(&host, Provider::Bitbucket, "git@bitbucket.org:team-ws/shop.git", "/2.0", "bbtoken", quick());
    let list = "/2.0/repositories/team-ws/shop/pullrequests";
    host.on("GET", list, Reply::json(200, r#"{"pagelen":50,"size":0}"#));
    let e = s.forge.open_pulls().await.unwrap_err();
    assert!(e.to_string().contains("a page with `values` was expected"), "{e}");
    host.on("GET", list, Reply::json(200, r#"{"values":[{"id":1}],"next":"https://elsewhere.example/2.0/steal"}"#));
    let e = s.forge.open_pulls().await.unwrap_err();
    assert!(
        e.to_string().contains(
            "the next page is on another host (https://elsewhere.example:443); not following it with the token"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_host_that_does_not_answer_in_time_is_reported_and_the_request_stays_on_the_record() {
    let host = FakeHost::start();
    host.on("GET", "/repos/octocat/Hello-World/pulls/1", Reply::json(200, "{}").delay(Duration::from_secs(3)));
    let opts = HttpOptions { timeout: Duration::from_millis(800), ..quick() };
    let s = setup_with(&host, Provider::GitHub, GH_REMOTE, "", GH_TOKEN, opts);
    let started = Instant::now();
    let e = s.forge.pull(1).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "github.com did not answer pull request #1 of octocat/Hello-World within 1 s; try again later \
         (MARGINALIA_PROVIDER_TIMEOUT sets the limit)"
    );
    let rows = ledger(&s);
    assert_eq!((rows.len(), rows[0].status), (1, None), "sent, no answer");
}

#[tokio::test]
async fn redirects_are_followed_on_the_record_and_the_token_never_leaves_its_origin() {
    let host = FakeHost::start();
    let other = FakeHost::start();
    let s = setup_with(&host, Provider::Bitbucket, "git@bitbucket.org:team-ws/shop.git", "/2.0", "bbtoken", quick());
    // Same origin: Bitbucket's diffstat is a redirect to the repository's.
    host.on(
        "GET",
        "/2.0/repositories/team-ws/shop/pullrequests/7/diffstat",
        Reply::redirect(302, "{base}/2.0/repositories/team-ws/shop/diffstat/team-ws/shop:d222fa235229%0De1749643d655?from_pullrequest_id=7"),
    );
    host.on(
        "GET",
        "/2.0/repositories/team-ws/shop/diffstat/team-ws/shop:d222fa235229%0De1749643d655",
        Reply::fixture(200, "bitbucket/diffstat.response-200.json"),
    );
    let pr = PullRequest {
        number: 7,
        title: String::new(),
        body: None,
        state: "open".into(),
        draft: false,
        author: None,
        url: None,
        source_branch: None,
        target_branch: None,
        head_sha: None,
        base_sha: None,
        start_sha: None,
        created: None,
        updated: None,
    };
    let files = s.forge.files(&pr).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].path.as_str(), files[0].additions, files[0].deletions), ("setup.py", Some(2), Some(1)));
    let reqs = host.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.header("authorization") == Some("Bearer bbtoken")));
    assert_eq!(reqs[1].pairs(), pairs(&[("from_pullrequest_id", "7")]));
    // Another origin: followed without the token.
    host.on(
        "GET",
        "/2.0/repositories/team-ws/shop/pullrequests/8/diffstat",
        Reply::redirect(302, &format!("{}/cdn/diffstat", other.base)),
    );
    other.on("GET", "/cdn/diffstat", Reply::fixture(200, "bitbucket/diffstat.response-200.json"));
    let pr8 = PullRequest { number: 8, ..pr };
    assert_eq!(s.forge.files(&pr8).await.unwrap().len(), 1);
    let elsewhere = other.requests();
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(elsewhere[0].header("authorization"), None, "the token stays with its own origin");
    let rows = ledger(&s);
    assert_eq!(rows.len(), 4, "every hop is on the record");
    assert_eq!(rows[3].destination, other.base);
    assert_eq!(rows[2].status, Some(302));
}

#[tokio::test]
async fn the_ledger_has_every_call_with_its_code_bytes_and_never_the_token() {
    let host = FakeHost::start();
    serve_gh_pull(&host);
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347/files", Reply::json(200, gh_files(true)));
    host.on(
        "POST",
        "/repos/octocat/Hello-World/pulls/1347/comments",
        Reply::fixture(201, "github/create-review-comment.response-201-multi-line.json"),
    );
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let body = "Could this be shorter?\n```suggestion\nlet new = one();\n```\n";
    s.forge.comment(&pr, &new_comment("file1.txt", LineRange::new(1, 2), Side::New, body)).await.unwrap();
    let rows = ledger(&s);
    let shown: Vec<(&str, &str, Option<u16>)> =
        rows.iter().map(|e| (e.method.as_str(), e.endpoint.as_str(), e.status)).collect();
    assert_eq!(
        shown,
        vec![
            ("GET", "/repos/octocat/Hello-World/pulls/1347", Some(200)),
            ("GET", "/repos/octocat/Hello-World/pulls/1347/files", Some(200)),
            ("POST", "/repos/octocat/Hello-World/pulls/1347/comments", Some(201)),
        ]
    );
    let post = &rows[2];
    assert_eq!(post.subject.as_deref(), Some("github:octocat/Hello-World#1347"));
    assert_eq!(post.code_bytes, "let new = one();\n".len(), "the suggestion block is code; the prose is not");
    assert_eq!(
        post.body_bytes,
        host.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments")[0].body.len()
    );
    assert_eq!(post.destination, host.base);
    drop(s.forge);
    s.store.lock().unwrap().egress(1, false).unwrap();
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(GH_TOKEN.len()).any(|w| w == GH_TOKEN.as_bytes()), "the token is in the store");
    }
}

#[tokio::test]
async fn a_comment_that_looks_like_it_holds_a_secret_is_held_back_unless_sent_anyway() {
    let host = FakeHost::start();
    serve_gh_pull(&host);
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347/files", Reply::json(200, gh_files(true)));
    host.on(
        "POST",
        "/repos/octocat/Hello-World/pulls/1347/comments",
        Reply::fixture(201, "github/create-review-comment.response-201-multi-line.json"),
    );
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let mut c = new_comment("file1.txt", LineRange::new(1, 1), Side::New, "use key AKIAIOSFODNN7EXAMPLE here");
    let e = s.forge.comment(&pr, &c).await.unwrap_err();
    assert!(matches!(e, ProviderError::Held(_)), "{e:?}");
    assert!(e.to_string().starts_with("held back: line 1 has an AWS access key id (AKIA…"), "{e}");
    assert!(host.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments").is_empty());
    c.anyway = true;
    s.forge.comment(&pr, &c).await.unwrap();
    let rows = ledger(&s);
    let post = rows.iter().find(|e| e.method == "POST").unwrap();
    assert!(
        post.note.as_deref().unwrap().starts_with("sent despite: held back: line 1 has an AWS access key id"),
        "{post:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// GitLab
// ---------------------------------------------------------------------------------------------

const GL_MR: &str = "/api/v4/projects/group%2Fsub%2Fshop/merge_requests";

fn gitlab(host: &FakeHost) -> Setup {
    setup_with(host, Provider::GitLab, "https://gitlab.com/group/sub/shop.git", "/api/v4", "glpat-testtoken", quick())
}

fn assert_gitlab_headers(r: &common::fake_host::Request) {
    assert_eq!(r.header("authorization"), Some("Bearer glpat-testtoken"), "{} {}", r.method, r.path);
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("x-github-api-version"), None);
}

#[tokio::test]
async fn gitlab_merge_request_of_the_branch_by_the_encoded_project_path_with_its_diff_refs() {
    let host = FakeHost::start();
    host.on(
        "GET",
        &format!("{GL_MR}?source_branch=test1&state=opened&per_page=100"),
        Reply::fixture(200, "gitlab/list-project-merge-requests.response-200.json"),
    );
    host.on("GET", &format!("{GL_MR}/1"), Reply::fixture(200, "gitlab/get-merge-request.response-200.json"));
    let s = gitlab(&host);
    let mr = s.forge.pull_for_branch("test1", None).await.unwrap().unwrap();
    // The example MR is iid 133 with diff_refs (the list's example is iid 1 without them).
    assert_eq!(mr.number, 133);
    assert_eq!(mr.state, "open");
    assert_eq!(mr.head_sha.as_deref(), Some("e82eb4a098e32c796079ca3915e07487fc4db24c"));
    assert_eq!(mr.base_sha.as_deref(), Some("1162f719d711319a2efb2a35566f3bfdadee8bab"));
    assert_eq!(mr.start_sha.as_deref(), Some("1162f719d711319a2efb2a35566f3bfdadee8bab"));
    let reqs = host.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, GL_MR, "the project path is one encoded segment");
    assert_eq!(reqs[0].pairs(), pairs(&[("source_branch", "test1"), ("state", "opened"), ("per_page", "100")]));
    assert_eq!(reqs[1].path, format!("{GL_MR}/1"));
    reqs.iter().for_each(assert_gitlab_headers);
}

#[tokio::test]
async fn gitlab_discussions_page_by_x_next_page_and_keep_position_and_resolution() {
    let host = FakeHost::start();
    host.on("GET", &format!("{GL_MR}/133"), Reply::fixture(200, "gitlab/get-merge-request.response-200.json"));
    host.on(
        "GET",
        &format!("{GL_MR}/133/discussions?per_page=100"),
        Reply::fixture(200, "gitlab/list-mr-discussions.response-200.json")
            .header("x-next-page", "2")
            .header("x-page", "1"),
    );
    host.on(
        "GET",
        &format!("{GL_MR}/133/discussions?per_page=100&page=2"),
        Reply::fixture(200, "gitlab/list-mr-discussions.diffnote-with-position.response-200.json")
            .header("x-next-page", ""),
    );
    let s = gitlab(&host);
    let mr = s.forge.pull(133).await.unwrap();
    let threads = s.forge.threads(&mr).await.unwrap();
    let summary: Vec<(&str, usize, Option<bool>, Option<&str>)> =
        threads.iter().map(|t| (&t.id[..6], t.comments.len(), t.resolved, t.path.as_deref())).collect();
    assert_eq!(
        summary,
        vec![
            ("6a9c17", 2, Some(false), None),
            ("87805b", 1, Some(false), None),
            ("87805b", 1, Some(false), Some("package.json"))
        ]
    );
    let d = &threads[2];
    assert_eq!(d.side, Side::New);
    // The example's position says line 27 and its line_range starts at 10 (it is inconsistent);
    // the position's line is the last line, the range's start the first.
    assert_eq!(d.lines, Some(LineRange::new(10, 27)));
    assert_eq!(d.commit.as_deref(), Some("4803c71e6b1833ca72b8b26ef2ecd5adc8a38031"));
    assert!(d.outdated, "made on another head than the merge request's");
    assert_eq!(d.comments[0].author.as_deref(), Some("root"));
    assert_eq!(host.requests().len(), 3);
}

/// A diff with real hunks (constructed): ` keep1` (old 10, new 10), `-old` old 11, `+new1` new
/// 11, `+new2` new 12, ` keep2` (12, 13), ` keep3` (13, 14).
fn gl_diffs() -> String {
    let mut d = fixture_json("gitlab/list-merge-request-diffs.response-200.json")[0].clone();
    d["old_path"] = json!("src/app.rb");
    d["new_path"] = json!("src/app.rb");
    d["diff"] = json!("@@ -10,4 +10,5 @@ class App\n keep1\n-old\n+new1\n+new2\n keep2\n keep3\n");
    serde_json::to_string(&vec![d]).unwrap()
}

/// `printf src/app.rb | sha1sum`
const APP_RB_SHA1: &str = "b6bfc746cab71003c3a05e18598151227edb9b60";

#[tokio::test]
async fn gitlab_line_threads_send_a_position_with_both_lines_where_unchanged_and_line_codes() {
    let host = FakeHost::start();
    host.on("GET", &format!("{GL_MR}/133"), Reply::fixture(200, "gitlab/get-merge-request.response-200.json"));
    host.on("GET", &format!("{GL_MR}/133/diffs?per_page=100"), Reply::json(200, gl_diffs()));
    // The POST answers one discussion: the example's first.
    let one = fixture_json("gitlab/list-mr-discussions.diffnote-with-position.response-200.json")[0].to_string();
    host.on("POST", &format!("{GL_MR}/133/discussions"), Reply::json(201, one.clone()));
    let s = gitlab(&host);
    let mr = s.forge.pull(133).await.unwrap();
    let cases = [
        (LineRange::new(11, 11), Side::New),
        (LineRange::new(13, 13), Side::New),
        (LineRange::new(11, 13), Side::New),
        (LineRange::new(11, 11), Side::Old),
    ];
    for (lines, side) in cases {
        let _ = s.forge.comment(&mr, &new_comment("src/app.rb", lines, side, "Why?")).await;
    }
    let posts = host.requests_to("POST", &format!("{GL_MR}/133/discussions"));
    assert_eq!(posts.len(), 4);
    posts.iter().for_each(assert_gitlab_headers);
    let refs = json!({
        "base_sha": "1162f719d711319a2efb2a35566f3bfdadee8bab",
        "start_sha": "1162f719d711319a2efb2a35566f3bfdadee8bab",
        "head_sha": "e82eb4a098e32c796079ca3915e07487fc4db24c",
        "position_type": "text", "old_path": "src/app.rb", "new_path": "src/app.rb",
    });
    let with = |extra: Value| {
        let mut p = refs.clone();
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        json!({ "body": "Why?", "position": p })
    };
    assert_eq!(posts[0].json(), with(json!({"new_line": 11})), "an added line: its new line only");
    assert_eq!(posts[1].json(), with(json!({"old_line": 12, "new_line": 13})), "an unchanged line: both");
    assert_eq!(
        posts[2].json(),
        with(json!({"old_line": 12, "new_line": 13, "line_range": {
            "start": {"line_code": format!("{APP_RB_SHA1}_12_11"), "type": "new", "old_line": null, "new_line": 11},
            "end": {"line_code": format!("{APP_RB_SHA1}_12_13"), "type": "old", "old_line": 12, "new_line": 13},
        }})),
        "several lines: the last in the position, both ends in line_range with GitLab's line codes"
    );
    assert_eq!(posts[3].json(), with(json!({"old_line": 11})), "a removed line: its old line only");

    // Lines the diff does not show are refused before anything is posted.
    let e = s.forge.comment(&mr, &new_comment("src/app.rb", LineRange::new(30, 31), Side::New, "x")).await.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("merge request's diff (it shows 10-14 of the new file)"), "{e}");
    assert_eq!(host.requests_to("POST", &format!("{GL_MR}/133/discussions")).len(), 4);
}

#[tokio::test]
async fn gitlab_replies_and_opens_merge_requests_with_the_documented_bodies() {
    let host = FakeHost::start();
    host.on("GET", &format!("{GL_MR}/133"), Reply::fixture(200, "gitlab/get-merge-request.response-200.json"));
    let disc = "6a9c1750b37d513a43987b574953fceb50b03ce7";
    host.on(
        "POST",
        &format!("{GL_MR}/133/discussions/{disc}/notes"),
        Reply::fixture(201, "gitlab/get-merge-request-note.response-200.json"),
    );
    host.on("GET", "/api/v4/projects/group%2Fsub%2Fshop", Reply::json(200, r#"{"id":5,"default_branch":"main"}"#));
    host.on("POST", GL_MR, Reply::fixture(201, "gitlab/create-merge-request.response-201.json"));
    let s = gitlab(&host);
    let mr = s.forge.pull(133).await.unwrap();
    let posted = s.forge.reply(&mr, disc, "Comment for MR", false).await.unwrap();
    assert_eq!((posted.thread_id.as_str(), posted.comment.id.as_str()), (disc, "301"));
    let r = &host.requests_to("POST", &format!("{GL_MR}/133/discussions/{disc}/notes"))[0];
    assert_gitlab_headers(r);
    assert_eq!(r.json(), json!({"body": "Comment for MR"}));
    let e = s.forge.reply(&mr, "../../x", "x", false).await.unwrap_err();
    assert!(e.to_string().contains("is not a GitLab discussion id"), "{e}");

    let new = NewPull {
        title: "Cache: expire entries".into(),
        body: Some("Entries now expire.".into()),
        head: "cache-expiry".into(),
        base: None,
        draft: true,
        anyway: false,
    };
    let made = s.forge.create_pull(&new).await.unwrap();
    assert_eq!(made.number, 1);
    let p = &host.requests_to("POST", GL_MR)[0];
    assert_eq!(
        p.json(),
        json!({"source_branch": "cache-expiry", "target_branch": "main", "title": "Draft: Cache: expire entries", "description": "Entries now expire."})
    );
}

// ---------------------------------------------------------------------------------------------
// Bitbucket
// ---------------------------------------------------------------------------------------------

const BB: &str = "/2.0/repositories/team-ws/shop";

fn bitbucket(host: &FakeHost, token: &str) -> Setup {
    setup_with(host, Provider::Bitbucket, "https://alice@bitbucket.org/team-ws/shop.git", "/2.0", token, quick())
}

fn bb_pull() -> String {
    json!({
        "type": "pullrequest", "id": 7, "title": "Cache expiry", "description": "Entries expire",
        "state": "OPEN", "author": {"display_name": "Alice", "nickname": "alice"},
        "source": {"branch": {"name": "feature/x"}, "commit": {"hash": "abc123def456"}},
        "destination": {"branch": {"name": "main"}, "commit": {"hash": "0011223344aa"}},
        "links": {"html": {"href": "https://bitbucket.org/team-ws/shop/pull-requests/7"}},
        "created_on": "2026-01-02T03:04:05.000000+00:00",
    })
    .to_string()
}

#[tokio::test]
async fn bitbucket_sends_api_tokens_as_basic_auth_with_the_email_and_others_as_bearer() {
    let host = FakeHost::start();
    host.on("GET", &format!("{BB}/pullrequests/7"), Reply::json(200, bb_pull()));
    let basic = bitbucket(&host, "dev@example.com:ATATT3xFfGF0");
    basic.forge.pull(7).await.unwrap();
    let bearer = bitbucket(&host, "bbaccesstoken");
    let pr = bearer.forge.pull(7).await.unwrap();
    assert_eq!((pr.number, pr.state.as_str(), pr.head_sha.as_deref()), (7, "open", Some("abc123def456")));
    let reqs = host.requests();
    assert_eq!(reqs[0].header("authorization"), Some("Basic ZGV2QGV4YW1wbGUuY29tOkFUQVRUM3hGZkdGMA=="));
    assert_eq!(reqs[1].header("authorization"), Some("Bearer bbaccesstoken"));
    assert_eq!(reqs[1].header("accept"), Some("application/json"));
}

#[tokio::test]
async fn bitbucket_follows_next_through_every_page_and_queries_the_branch() {
    let host = FakeHost::start();
    let page1 = {
        let mut v = fixture_json("bitbucket/list-pullrequests.partial-fields.response-200.json");
        v["next"] = json!(format!("{{base}}{BB}/pullrequests?state=OPEN&pagelen=50&page=2"));
        v.to_string()
    };
    host.on("GET", &format!("{BB}/pullrequests?state=OPEN&pagelen=50"), Reply::json(200, page1));
    host.on(
        "GET",
        &format!("{BB}/pullrequests?state=OPEN&pagelen=50&page=2"),
        Reply::json(200, json!({"values": [{"id": 11300, "state": "OPEN"}], "page": 2, "pagelen": 50}).to_string()),
    );
    host.on(
        "GET",
        &format!("{BB}/pullrequests?q=source.branch.name%20%3D%20%22feature%2Fx%22%20AND%20state%20%3D%20%22OPEN%22&pagelen=50"),
        Reply::json(200, format!(r#"{{"values":[{}],"pagelen":50}}"#, bb_pull())),
    );
    let s = bitbucket(&host, "bbtoken");
    let pulls = s.forge.open_pulls().await.unwrap();
    let got: Vec<(u64, &str)> = pulls.iter().map(|p| (p.number, p.state.as_str())).collect();
    assert_eq!(got, vec![(11355, "open"), (11347, "merged"), (11344, "open"), (11300, "open")]);
    let mine = s.forge.pull_for_branch("feature/x", None).await.unwrap().unwrap();
    assert_eq!((mine.number, mine.source_branch.as_deref()), (7, Some("feature/x")));
    let q = host.requests().into_iter().find(|r| r.query.contains("q=")).unwrap();
    assert_eq!(
        q.pairs(),
        pairs(&[("q", "source.branch.name = \"feature/x\" AND state = \"OPEN\""), ("pagelen", "50")])
    );
}

/// The documented comment object, as its text (it repeats `created_on` and `user`, which a
/// strict reader would refuse): cut out of the activity example.
fn bb_documented_comment() -> String {
    let text = fixture("bitbucket/pullrequest-activity.comment-example.response-200.json");
    let start = text.find("\"comment\": {").unwrap() + "\"comment\": ".len();
    let mut depth = 0;
    for (i, ch) in text[start..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return text[start..=start + i].to_owned();
                }
            }
            _ => {}
        }
    }
    panic!("no comment object in the example");
}

#[tokio::test]
async fn bitbucket_comments_become_threads_by_their_parents() {
    let host = FakeHost::start();
    host.on("GET", &format!("{BB}/pullrequests/7"), Reply::json(200, bb_pull()));
    let c = |id: u64, parent: Option<u64>, inline: Value, body: &str, at: &str| {
        let mut v = json!({"id": id, "content": {"raw": body}, "user": {"display_name": "Alice"}, "created_on": at, "deleted": false, "type": "pullrequest_comment"});
        if let Some(p) = parent {
            v["parent"] = json!({"id": p});
        }
        if !inline.is_null() {
            v["inline"] = inline;
        }
        v.to_string()
    };
    // Constructed: an inline thread with a reply and a reply to the reply, a resolved one, a
    // deleted one; and the documented comment (an old-side line, no path) on a second page.
    let page1 = format!(
        r#"{{"values":[{},{},{},{},{}],"next":"{{base}}{BB}/pullrequests/7/comments?pagelen=100&page=2"}}"#,
        c(
            20,
            None,
            json!({"path": "src/app.py", "to": 14, "from": null, "outdated": false}),
            "Why 14?",
            "2026-01-01T00:00:00Z"
        ),
        c(22, Some(21), Value::Null, "and again", "2026-01-01T00:02:00Z"),
        c(21, Some(20), Value::Null, "Because", "2026-01-01T00:01:00Z"),
        c(
            30,
            None,
            json!({"path": "src/app.py", "from": 3, "to": null, "outdated": true}),
            "Old line",
            "2026-01-01T00:03:00Z"
        )
        .replacen("\"type\"", "\"resolution\":{\"type\":\"comment_resolution\"},\"type\"", 1),
        c(40, None, Value::Null, "gone", "2026-01-01T00:04:00Z").replace("\"deleted\":false", "\"deleted\":true"),
    );
    host.on("GET", &format!("{BB}/pullrequests/7/comments?pagelen=100"), Reply::json(200, page1));
    host.on(
        "GET",
        &format!("{BB}/pullrequests/7/comments?pagelen=100&page=2"),
        Reply::json(200, format!(r#"{{"values":[{}]}}"#, bb_documented_comment())),
    );
    let s = bitbucket(&host, "bbtoken");
    let pr = s.forge.pull(7).await.unwrap();
    let threads = s.forge.threads(&pr).await.unwrap();
    type Shape<'a> = (&'a str, usize, Option<LineRange>, Side, bool, Option<bool>);
    let shape: Vec<Shape> =
        threads.iter().map(|t| (t.id.as_str(), t.comments.len(), t.lines, t.side, t.outdated, t.resolved)).collect();
    assert_eq!(
        shape,
        vec![
            ("20", 3, Some(LineRange::new(14, 14)), Side::New, false, None),
            ("30", 1, Some(LineRange::new(3, 3)), Side::Old, true, Some(true)),
            ("40", 1, None, Side::New, false, None),
            ("118571088", 1, None, Side::Old, false, None),
        ]
    );
    assert_eq!(
        threads[0].comments.iter().map(|c| c.body.as_str()).collect::<Vec<_>>(),
        vec!["Why 14?", "Because", "and again"]
    );
    assert_eq!(threads[0].commit.as_deref(), Some("abc123def456"), "new side: the source commit");
    assert_eq!(threads[1].commit.as_deref(), Some("0011223344aa"), "old side: the destination commit");
    assert_eq!(threads[2].comments[0].body, "(deleted)");
    assert_eq!(threads[3].comments[0].body, "inline with to a dn from lines");
}

#[tokio::test]
async fn bitbucket_anchors_a_range_on_its_last_line_and_says_so() {
    let host = FakeHost::start();
    host.on("GET", &format!("{BB}/pullrequests/7"), Reply::json(200, bb_pull()));
    host.on(
        "GET",
        &format!("{BB}/pullrequests/7/diff"),
        Reply::redirect(
            302,
            &format!("{{base}}{BB}/diff/team-ws/shop:abc123def456%0D0011223344aa?from_pullrequest_id=7"),
        ),
    );
    host.on(
        "GET",
        &format!("{BB}/diff/team-ws/shop:abc123def456%0D0011223344aa"),
        Reply::text(200, "diff --git a/src/app.py b/src/app.py\nindex 1..2 100644\n--- a/src/app.py\n+++ b/src/app.py\n@@ -10,4 +10,6 @@ def f():\n a\n b\n+c\n+d\n e\n f\n"),
    );
    host.on(
        "POST",
        &format!("{BB}/pullrequests/7/comments"),
        Reply::json(
            201,
            r#"{"id":99,"content":{"raw":"Why?"},"user":{"display_name":"Me"},"created_on":"2026-01-01T00:00:00Z"}"#,
        ),
    );
    let s = bitbucket(&host, "bbtoken");
    let pr = s.forge.pull(7).await.unwrap();
    let posted =
        s.forge.comment(&pr, &new_comment("src/app.py", LineRange::new(12, 14), Side::New, "Why?")).await.unwrap();
    assert_eq!(posted.thread_id, "99");
    assert_eq!(
        posted.note.as_deref(),
        Some("Bitbucket has no multi-line comments: anchored on line 14 (the last of 12-14)")
    );
    let diff = &host.requests_to("GET", &format!("{BB}/pullrequests/7/diff"))[0];
    assert_eq!(diff.header("accept"), Some("text/plain"));
    s.forge.comment(&pr, &new_comment("src/app.py", LineRange::new(11, 11), Side::Old, "Old?")).await.unwrap();
    s.forge.reply(&pr, "99", "Agreed", false).await.unwrap();
    let posts = host.requests_to("POST", &format!("{BB}/pullrequests/7/comments"));
    assert_eq!(posts[0].json(), json!({"content": {"raw": "Why?"}, "inline": {"path": "src/app.py", "to": 14}}));
    assert_eq!(posts[1].json(), json!({"content": {"raw": "Old?"}, "inline": {"path": "src/app.py", "from": 11}}));
    assert_eq!(posts[2].json(), json!({"content": {"raw": "Agreed"}, "parent": {"id": 99}}));
    let e = s.forge.comment(&pr, &new_comment("src/app.py", LineRange::new(20, 20), Side::New, "x")).await.unwrap_err();
    assert!(e.to_string().contains("it shows 10-15 of the new file"), "{e}");
    assert_eq!(host.requests_to("POST", &format!("{BB}/pullrequests/7/comments")).len(), 3);
}

#[tokio::test]
async fn bitbucket_opens_pull_requests_with_the_documented_bodies() {
    let host = FakeHost::start();
    host.on("POST", &format!("{BB}/pullrequests"), Reply::json(201, bb_pull()));
    let s = bitbucket(&host, "bbtoken");
    let mut new = NewPull {
        title: "My Title".into(),
        body: None,
        head: "my-feature-branch".into(),
        base: Some("staging".into()),
        draft: false,
        anyway: false,
    };
    assert_eq!(s.forge.create_pull(&new).await.unwrap().number, 7);
    new.head = "staging".into();
    new.base = None;
    s.forge.create_pull(&new).await.unwrap();
    let posts = host.requests_to("POST", &format!("{BB}/pullrequests"));
    assert_eq!(posts[0].json(), fixture_json("bitbucket/create-pullrequest.request-with-destination.json"));
    assert_eq!(posts[1].json(), fixture_json("bitbucket/create-pullrequest.request-minimal.json"));
}

// ---------------------------------------------------------------------------------------------
// Threads on the working copy, and the command line
// ---------------------------------------------------------------------------------------------

/// A repository whose `src/shop.py` was commented on at commit `a`, then moved on: three lines
/// inserted above in commit `b` (the pull request's head), and two more in the working tree.
struct MovedOn {
    repo: Scratch,
    a: String,
    b: String,
}

fn moved_on() -> MovedOn {
    let repo = Scratch::new();
    let base: String = (1..=20).map(|i| format!("def step_{i}(cart):\n    return cart.total() * {i}\n")).collect();
    repo.write("src/shop.py", &base);
    let a = repo.commit("shop");
    repo.write("src/shop.py", format!("import math\nimport os\nimport sys\n{base}"));
    let b = repo.commit("imports");
    repo.write("src/shop.py", format!("# local note\n# another\nimport math\nimport os\nimport sys\n{base}"));
    MovedOn { repo, a, b }
}

fn moved_on_pull(m: &MovedOn) -> String {
    let mut v = fixture_json("github/pull.response-200-201.json");
    v["head"]["sha"] = json!(m.b);
    v["head"]["ref"] = json!("feature");
    v["base"]["sha"] = json!(m.a);
    v.to_string()
}

/// Review comments (constructed around the documented example): one made at `a` on lines 5-6
/// (`def step_3` and its body), one outdated made at `a` on line 1.
fn moved_on_comments(m: &MovedOn) -> String {
    let example = fixture_json("github/list-review-comments.response-200.json")[0].clone();
    let mut at_a = example.clone();
    at_a["id"] = json!(501);
    at_a["in_reply_to_id"] = Value::Null;
    at_a["path"] = json!("src/shop.py");
    at_a["commit_id"] = json!(m.a);
    at_a["original_commit_id"] = json!(m.a);
    at_a["start_line"] = json!(5);
    at_a["line"] = json!(6);
    at_a["body"] = json!("Why times three?");
    let mut outdated = at_a.clone();
    outdated["id"] = json!(502);
    outdated["line"] = Value::Null;
    outdated["start_line"] = Value::Null;
    outdated["original_line"] = json!(1);
    outdated["original_start_line"] = Value::Null;
    outdated["body"] = json!("Name this better");
    serde_json::to_string(&vec![at_a, outdated]).unwrap()
}

#[tokio::test]
async fn a_github_review_comment_on_an_older_commit_shows_at_its_line_in_a_working_copy_that_moved_on() {
    let m = moved_on();
    let host = FakeHost::start();
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347", Reply::json(200, moved_on_pull(&m)));
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347/comments", Reply::json(200, moved_on_comments(&m)));
    host.on("POST", "/graphql", Reply::json(200, gh_thread_state_of(&[(501, true, false), (502, false, true)])));
    let s = github(&host);
    let pr = gh_pull(&s).await;
    let threads = s.forge.threads(&pr).await.unwrap();
    let repo = marginalia::git::Repo::open(m.repo.path()).unwrap();
    let places = place::in_worktree(&repo, &threads);
    match &places[0] {
        Where::Found(r) => {
            assert_eq!((r.path.as_str(), r.lines, r.status), ("src/shop.py", LineRange::new(10, 11), Status::Intact));
        }
        other => panic!("{other:?}"),
    }
    // Line 1 of commit a, outdated since, is where it is now too: five lines down.
    match &places[1] {
        Where::Found(r) => assert_eq!((r.lines, r.status), (LineRange::new(6, 6), Status::Intact)),
        other => panic!("{other:?}"),
    }
    // In an editor buffer with one more line typed above, one further down.
    let buffer = format!("# typed\n{}", m.repo.read("src/shop.py"));
    let placed = place::in_text(&repo, &threads, &places, "src/shop.py", &Text::new(buffer));
    assert_eq!(placed[0].as_ref().map(|r| r.lines), Some(LineRange::new(11, 12)));
    let _ = &m.b;
}

#[test]
fn working_copy_lines_are_sent_as_the_head_commits_lines_or_refused_when_they_differ() {
    let m = moved_on();
    let repo = marginalia::git::Repo::open(m.repo.path()).unwrap();
    let text = Text::new(m.repo.read("src/shop.py"));
    // Lines 10-11 here are 8-9 at b (two local lines above).
    assert_eq!(
        place::lines_at_commit(&repo, &m.b, "src/shop.py", &text, LineRange::new(10, 11)),
        Ok(LineRange::new(8, 9))
    );
    let e = place::lines_at_commit(&repo, &m.b, "src/shop.py", &text, LineRange::new(1, 2)).unwrap_err();
    assert!(e.contains("lines 1-2 of src/shop.py are not in the pull request's head commit"), "{e}");
    let e = place::lines_at_commit(&repo, &"f".repeat(40), "src/shop.py", &text, LineRange::new(10, 11)).unwrap_err();
    assert!(e.contains("is not in this repository: `git fetch` it first"), "{e}");
}

/// Runs the binary in `dir` against the stand-in GitHub, with a token in the environment unless
/// `token` is `None`; no other token variable leaks in from the machine.
fn cli(dir: &Path, data: &Path, host: &FakeHost, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marginalia"));
    cmd.args(args)
        .current_dir(dir)
        .env("MARGINALIA_DATA_DIR", data)
        .env("MARGINALIA_GITHUB_API", &host.base)
        .env("MARGINALIA_PROVIDER_MAX_WAIT", "2")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null());
    for v in [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN",
        "GITLAB_TOKEN",
        "BITBUCKET_TOKEN",
    ] {
        cmd.env_remove(v);
    }
    if let Some(t) = token {
        cmd.env("GITHUB_TOKEN", t);
    }
    cmd.output().unwrap()
}

#[test]
fn the_command_line_reads_threads_comments_and_says_what_is_missing() {
    let m = moved_on();
    m.repo.git(&["remote", "add", "origin", GH_REMOTE]);
    m.repo.git(&["checkout", "-q", "-b", "feature"]);
    let data = tempfile::tempdir().unwrap();
    let host = FakeHost::start();
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls?head=octocat:feature&state=open&per_page=100",
        Reply::json(200, format!("[{}]", moved_on_pull(&m))),
    );
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347", Reply::json(200, moved_on_pull(&m)));
    host.on("GET", "/repos/octocat/Hello-World/pulls/1347/comments", Reply::json(200, moved_on_comments(&m)));
    host.on("POST", "/graphql", Reply::json(200, gh_thread_state_of(&[(501, true, false), (502, false, true)])));
    host.on(
        "GET",
        "/repos/octocat/Hello-World/pulls/1347/files",
        Reply::json(200, json!([{"filename": "src/shop.py", "status": "modified", "additions": 3, "deletions": 0, "patch": "@@ -1,3 +1,6 @@\n+import math\n+import os\n+import sys\n def step_1(cart):\n     return cart.total() * 1\n def step_2(cart):"}]).to_string()),
    );
    host.on(
        "POST",
        "/repos/octocat/Hello-World/pulls/1347/comments",
        Reply::fixture(201, "github/create-review-comment.response-201-multi-line.json"),
    );
    let dir = m.repo.path();
    let run = |args: &[&str]| cli(dir, data.path(), &host, Some(GH_TOKEN), args);

    let out = run(&["pr", "comments", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (v[0]["path"].as_str(), v[0]["start"].as_u64(), v[0]["end"].as_u64()),
        (Some("src/shop.py"), Some(10), Some(11))
    );
    assert_eq!(
        (v[0]["anchorStatus"].as_str(), v[0]["resolved"].as_bool(), v[0]["provider"].as_str()),
        (Some("intact"), Some(true), Some("github"))
    );
    assert_eq!(v[0]["original"], json!({"commit": m.a, "path": "src/shop.py", "start": 5, "end": 6}));
    assert_eq!((v[1]["outdated"].as_bool(), v[1]["start"].as_u64()), (Some(true), Some(6)));

    let out = run(&["pr", "comments"]);
    let text = stdout(&out);
    assert!(text.starts_with("src/shop.py:10-11  [intact] · resolved · 1 comment · github thread 501\n  octocat · 2011-04-14: Why times three?\n"), "{text}");
    assert!(text.contains("src/shop.py:6  [outdated, intact] · open · 1 comment · github thread 502"), "{text}");

    // Working-tree lines 7-8 (step_1's body, def step_2) are 5-6 at the head, which the diff shows.
    let out = run(&["pr", "comment", "--path", "src/shop.py", "--lines", "7-8", "--body", "Why two?"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "commented on src/shop.py:5-6 (your lines 7-8 are 5-6 in the head commit) of github:octocat/Hello-World#1347: \
         thread 10\n"
    );
    let post = &host.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments")[0];
    assert_eq!(
        post.json(),
        json!({"body": "Why two?", "commit_id": m.b, "path": "src/shop.py", "start_line": 5, "start_side": "RIGHT", "line": 6, "side": "RIGHT"})
    );
    // Lines the diff does not show: exit 1, nothing posted.
    let out = run(&["pr", "comment", "1347", "--path", "src/shop.py", "--lines", "30", "--body", "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "line 28 of src/shop.py (new side) is not part of the pull request's diff (it shows 1-6 of the new file)"
        ),
        "{}",
        stderr(&out)
    );
    // Lines edited here and not pushed: exit 1.
    let out = run(&["pr", "comment", "--path", "src/shop.py", "--lines", "1", "--body", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 1 of src/shop.py is not in the pull request's head commit"),
        "{}",
        stderr(&out)
    );
    assert_eq!(host.requests_to("POST", "/repos/octocat/Hello-World/pulls/1347/comments").len(), 1);

    // No token anywhere: exit 2, saying where it looked and what to do.
    let out = cli(dir, data.path(), &host, None, &["pr", "current"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no GitHub token for github.com") && err.contains("GITHUB_TOKEN and GH_TOKEN are not set"),
        "{err}"
    );
    assert!(err.contains("Run `marginalia auth login github`"), "{err}");
    // The ledger is there for people to read, with every call.
    let out = cli(dir, data.path(), &host, None, &["egress", "--json"]);
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["endpoint"] == "/repos/octocat/Hello-World/pulls/1347/comments" && r["method"] == "POST")
    );
    assert!(!stdout(&out).contains(GH_TOKEN));
}

#[test]
fn the_command_line_exits_1_when_the_branch_has_no_pull_request_and_2_without_a_provider_remote() {
    let repo = Scratch::new();
    repo.write("a.txt", "a\n");
    repo.commit("a");
    let data = tempfile::tempdir().unwrap();
    let host = FakeHost::start();
    let out = cli(repo.path(), data.path(), &host, Some(GH_TOKEN), &["pr", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("this repository has no remote"), "{}", stderr(&out));
    repo.git(&["remote", "add", "origin", "git@git.example.org:team/app.git"]);
    let out = cli(repo.path(), data.path(), &host, Some(GH_TOKEN), &["pr", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no remote of this repository is on a code host marginalia knows (remotes: origin → git@git.example.org:team/app.git)"), "{}", stderr(&out));
    repo.git(&["remote", "set-url", "origin", GH_REMOTE]);
    host.on("GET", "/repos/octocat/Hello-World/pulls", Reply::json(200, "[]"));
    let out = cli(repo.path(), data.path(), &host, Some(GH_TOKEN), &["pr", "current"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: no open pull request for branch main on github:octocat/Hello-World: give its number, or open one with \
         `marginalia pr create --title TEXT`\n"
    );
    let out = cli(repo.path(), data.path(), &host, Some(GH_TOKEN), &["pr", "list"]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(0), "no open pull requests on github:octocat/Hello-World\n".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Comments on a pull request as a whole (a CI bot's summary): list, create, edit
// ---------------------------------------------------------------------------------------------

/// An issue comment as GitHub returns it: the documented example with another id, author and body.
fn gh_issue_comment(id: u64, login: &str, body: &str) -> Value {
    let mut v = fixture_json("github/create-issue-comment.response-201.json");
    v["id"] = json!(id);
    v["user"]["login"] = json!(login);
    v["body"] = json!(body);
    v["html_url"] = json!(format!("https://github.com/octocat/Hello-World/issues/1347#issuecomment-{id}"));
    v
}

#[tokio::test]
async fn github_pull_request_comments_are_listed_page_by_page_created_and_edited_as_documented() {
    let host = FakeHost::start();
    let path = "/repos/octocat/Hello-World/issues/1347/comments";
    host.on(
        "GET",
        &format!("{path}?per_page=100"),
        Reply::json(200, json!([gh_issue_comment(1, "octocat", "Me too")]).to_string())
            .header("link", &format!("<{{base}}{path}?per_page=100&page=2>; rel=\"next\"")),
    );
    host.on(
        "GET",
        &format!("{path}?per_page=100&page=2"),
        Reply::json(
            200,
            json!([gh_issue_comment(2, "ci-bot", "<!-- marginalia-check -->"), {"body": "no id"}]).to_string(),
        ),
    );
    host.on("POST", path, Reply::fixture(201, "github/create-issue-comment.response-201.json"));
    host.on(
        "PATCH",
        "/repos/octocat/Hello-World/issues/comments/2",
        Reply::json(200, gh_issue_comment(2, "ci-bot", "edited").to_string()),
    );
    let s = github(&host);
    let list = s.forge.pr_comments(1347).await.unwrap();
    let got: Vec<(&str, Option<&str>)> = list.iter().map(|c| (c.id.as_str(), c.author.as_deref())).collect();
    assert_eq!(got, [("1", Some("octocat")), ("2", Some("ci-bot"))], "an entry without an id is skipped");

    // The documented request body, and the documented answer read back.
    let made = s.forge.create_pr_comment(1347, "Me too", false).await.unwrap();
    assert_eq!(
        (made.id.as_str(), made.author.as_deref(), made.body.as_str(), made.url.as_deref()),
        ("1", Some("octocat"), "Me too", Some("https://github.com/octocat/Hello-World/issues/1347#issuecomment-1"))
    );
    let post = &host.requests_to("POST", path)[0];
    assert_eq!(post.json(), fixture_json("github/create-issue-comment.request.json"));
    assert!(post.query.is_empty());
    let edited = s.forge.edit_pr_comment(1347, "2", "edited", false).await.unwrap();
    assert_eq!((edited.id.as_str(), edited.body.as_str()), ("2", "edited"));
    let patch = &host.requests_to("PATCH", "/repos/octocat/Hello-World/issues/comments/2")[0];
    assert_eq!(patch.json(), json!({"body": "edited"}));
    for r in host.requests() {
        assert_github_headers(&r);
    }
    assert_eq!(host.requests_to("GET", path)[1].pairs(), pairs(&[("per_page", "100"), ("page", "2")]));

    // An id that is not a number never reaches a URL; a likely secret is held back; nothing sent.
    let before = host.requests().len();
    let e = s.forge.edit_pr_comment(1347, "../../pulls/1", "x", false).await.unwrap_err();
    assert!(e.to_string().contains("is not a comment id"), "{e}");
    let e = s.forge.create_pr_comment(1347, "key AKIAIOSFODNN7EXAMPLE", false).await.unwrap_err();
    assert!(matches!(e, ProviderError::Held(_)), "{e}");
    assert_eq!(host.requests().len(), before);
    // Each call is on the ledger with its method and path.
    let rows = ledger(&s);
    let calls: Vec<(&str, &str)> = rows.iter().map(|e| (e.method.as_str(), e.endpoint.as_str())).collect();
    assert_eq!(
        calls,
        [("GET", path), ("GET", path), ("POST", path), ("PATCH", "/repos/octocat/Hello-World/issues/comments/2")]
    );
    assert!(rows.iter().all(|e| e.subject.as_deref() == Some("github:octocat/Hello-World#1347")));
}

#[tokio::test]
async fn gitlab_merge_request_notes_leave_system_notes_out_and_are_edited_with_put() {
    let host = FakeHost::start();
    let notes = format!("{GL_MR}/133/notes");
    let note = |id: u64, who: &str, body: &str, system: bool| {
        let mut v = fixture_json("gitlab/get-merge-request-note.response-200.json");
        v["id"] = json!(id);
        v["author"]["username"] = json!(who);
        v["body"] = json!(body);
        v["system"] = json!(system);
        v
    };
    host.on(
        "GET",
        &format!("{notes}?sort=asc&order_by=created_at&per_page=100"),
        Reply::json(
            200,
            json!([note(1, "pipin", "Looks fine", false), note(2, "pipin", "added 1 commit", true)]).to_string(),
        )
        .header("x-next-page", "2"),
    );
    host.on(
        "GET",
        &format!("{notes}?sort=asc&order_by=created_at&per_page=100&page=2"),
        Reply::json(200, json!([note(3, "ci-bot", "<!-- marginalia-check -->", false)]).to_string())
            .header("x-next-page", ""),
    );
    host.on("POST", &notes, Reply::fixture(201, "gitlab/get-merge-request-note.response-200.json"));
    host.on("PUT", &format!("{notes}/3"), Reply::json(200, note(3, "ci-bot", "new", false).to_string()));
    let s = gitlab(&host);
    let list = s.forge.pr_comments(133).await.unwrap();
    let got: Vec<(&str, Option<&str>)> = list.iter().map(|c| (c.id.as_str(), c.author.as_deref())).collect();
    assert_eq!(got, [("1", Some("pipin")), ("3", Some("ci-bot"))], "the system note is not a comment");
    let made = s.forge.create_pr_comment(133, "Comment for MR", false).await.unwrap();
    assert_eq!(
        (made.id.as_str(), made.author.as_deref(), made.body.as_str()),
        ("301", Some("pipin"), "Comment for MR")
    );
    let edited = s.forge.edit_pr_comment(133, "3", "new", false).await.unwrap();
    assert_eq!(edited.body, "new");
    assert_eq!(host.requests_to("POST", &notes)[0].json(), json!({"body": "Comment for MR"}));
    assert_eq!(host.requests_to("PUT", &format!("{notes}/3"))[0].json(), json!({"body": "new"}));
    let reqs = host.requests();
    assert_eq!(reqs.len(), 4);
    reqs.iter().for_each(assert_gitlab_headers);
    assert_eq!(
        reqs[1].pairs(),
        pairs(&[("sort", "asc"), ("order_by", "created_at"), ("per_page", "100"), ("page", "2")])
    );
}

#[tokio::test]
async fn bitbucket_pull_request_comments_leave_inline_replies_and_deleted_out_and_follow_next() {
    let host = FakeHost::start();
    let path = format!("{BB}/pullrequests/7/comments");
    let c = |id: u64, extra: Value| {
        let mut v = json!({"id": id, "content": {"raw": format!("comment {id}")}, "user": {"display_name": "Ann"},
            "links": {"html": {"href": format!("https://bitbucket.org/team-ws/shop/pull-requests/7#comment-{id}")}}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    host.on(
        "GET",
        &format!("{path}?pagelen=100"),
        Reply::json(
            200,
            json!({"values": [c(1, json!({})), c(2, json!({"inline": {"path": "a.py", "to": 3}}))],
                   "next": format!("{{base}}{path}?pagelen=100&page=2"), "pagelen": 100})
            .to_string(),
        ),
    );
    host.on(
        "GET",
        &format!("{path}?pagelen=100&page=2"),
        Reply::json(
            200,
            json!({"values": [c(3, json!({"parent": {"id": 1}})), c(4, json!({"deleted": true})), c(5, json!({"user": {"display_name": "CI Bot"}}))],
                   "pagelen": 100, "page": 2})
            .to_string(),
        ),
    );
    host.on("POST", &path, Reply::json(201, c(6, json!({"user": {"display_name": "CI Bot"}})).to_string()));
    host.on("PUT", &format!("{path}/5"), Reply::json(200, c(5, json!({"content": {"raw": "new"}})).to_string()));
    let s = bitbucket(&host, "bbtoken");
    let list = s.forge.pr_comments(7).await.unwrap();
    let got: Vec<(&str, Option<&str>)> = list.iter().map(|c| (c.id.as_str(), c.author.as_deref())).collect();
    assert_eq!(got, [("1", Some("Ann")), ("5", Some("CI Bot"))]);
    assert_eq!(list[0].url.as_deref(), Some("https://bitbucket.org/team-ws/shop/pull-requests/7#comment-1"));
    let made = s.forge.create_pr_comment(7, "summary", false).await.unwrap();
    assert_eq!(made.id, "6");
    let edited = s.forge.edit_pr_comment(7, "5", "new", false).await.unwrap();
    assert_eq!((edited.id.as_str(), edited.body.as_str()), ("5", "new"));
    assert_eq!(host.requests_to("POST", &path)[0].json(), json!({"content": {"raw": "summary"}}));
    assert_eq!(host.requests_to("PUT", &format!("{path}/5"))[0].json(), json!({"content": {"raw": "new"}}));
    for r in host.requests() {
        assert_eq!(r.header("authorization"), Some("Bearer bbtoken"));
        assert_eq!(r.header("accept"), Some("application/json"));
    }
}
