//! Pull requests on GitHub (and GitHub Enterprise Server), GitLab (and self-managed GitLab) and
//! Bitbucket Cloud, talked to directly from this machine: the team server never sees this
//! traffic and never holds a provider token.
//!
//! **Architecture invariant:** this is the only module that knows the providers' APIs (their
//! URLs, headers, JSON shapes, pagination and rate-limit conventions). The rest of the crate
//! sees the provider-neutral model below and [`Forge`]'s methods. A token goes only to its own
//! provider: to the API address of the host it was given for, never across a redirect to
//! another origin, and never into a log, the store or the egress ledger.
//!
//! - [`detect`]: which provider and repository a checkout's remotes name (github.com,
//!   gitlab.com, bitbucket.org, and self-hosted hosts named in settings), and each API address.
//! - [`auth`]: where a token comes from (the OS keychain, the environment, the provider's own
//!   CLI), storing one after checking it, and saying where each comes from without showing it.
//! - [`http`]: the one place requests are sent: HTTPS (plain `http://` only to loopback),
//!   timeouts, the egress ledger, redirects, pagination, rate limits and errors worded for people.
//! - [`diff`]: unified-diff hunks: which lines of a file a pull request's diff shows, and their
//!   numbers on each side (line comments can only go there).
//! - `github`, `gitlab`, `bitbucket`: each provider's endpoints and payloads, read leniently: a
//!   missing or mistyped field is an absent value, an entry without what it must have is skipped.
//! - [`place`]: review threads placed on the working copy, relocated with the anchor engine from
//!   the commit they were made on.
//!
//! The model is what the language server and the command line use; everything is async except
//! [`auth`]'s keychain calls and [`place`] (git), which block.

pub mod auth;
mod bitbucket;
pub mod detect;
pub mod diff;
mod github;
mod gitlab;
pub mod http;
pub mod place;

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::anchor::LineRange;

pub use auth::{Token, TokenSource};
pub use detect::RepoRef;
pub use http::{Http, HttpOptions, ProviderError};

/// A code host's kind. GitHub Enterprise Server is GitHub at another address; self-managed
/// GitLab is GitLab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    GitHub,
    GitLab,
    Bitbucket,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::GitHub, Provider::GitLab, Provider::Bitbucket];

    /// The stable lowercase name: `github`, `gitlab`, `bitbucket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Bitbucket => "bitbucket",
        }
    }

    /// For people: `GitHub`, `GitLab`, `Bitbucket`.
    pub fn title(self) -> &'static str {
        match self {
            Provider::GitHub => "GitHub",
            Provider::GitLab => "GitLab",
            Provider::Bitbucket => "Bitbucket",
        }
    }

    /// The public host.
    pub fn public_host(self) -> &'static str {
        match self {
            Provider::GitHub => "github.com",
            Provider::GitLab => "gitlab.com",
            Provider::Bitbucket => "bitbucket.org",
        }
    }

    /// What a pull request is called there: `pull request` or `merge request`.
    pub fn pr_noun(self) -> &'static str {
        match self {
            Provider::GitLab => "merge request",
            _ => "pull request",
        }
    }

    /// `#42` on GitHub and Bitbucket, `!42` on GitLab.
    pub fn pr_ref(self, n: u64) -> String {
        match self {
            Provider::GitLab => format!("!{n}"),
            _ => format!("#{n}"),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Provider, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "github" | "gh" | "github-enterprise" | "ghes" => Ok(Provider::GitHub),
            "gitlab" | "gl" => Ok(Provider::GitLab),
            "bitbucket" | "bb" => Ok(Provider::Bitbucket),
            _ => Err(format!("unknown provider `{s}`: expected github, gitlab or bitbucket")),
        }
    }
}

/// A pull request (GitLab: merge request), as much as the provider said of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequest {
    /// GitHub's number, GitLab's `iid`, Bitbucket's id: what people write after `#` or `!`.
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    /// `open`, `closed`, `merged` (Bitbucket's `declined` and `superseded` are `closed`).
    pub state: String,
    pub draft: bool,
    pub author: Option<String>,
    /// The page people open in a browser.
    pub url: Option<String>,
    pub source_branch: Option<String>,
    pub target_branch: Option<String>,
    /// The commit the pull request's diff ends at (its head), when known.
    pub head_sha: Option<String>,
    /// The commit its diff starts from, when known.
    pub base_sha: Option<String>,
    /// GitLab's `diff_refs.start_sha` (the target branch's commit the diff was made against).
    pub start_sha: Option<String>,
    pub created: Option<String>,
    pub updated: Option<String>,
}

/// One file a pull request changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedFile {
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
    /// `added`, `modified`, `removed`, `renamed` (or what else the provider said).
    pub status: String,
    pub additions: Option<u64>,
    pub deletions: Option<u64>,
    /// The file's unified-diff hunks, when the provider sends them with the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// Which side of a diff lines are on: the file before the change, or after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Old,
    New,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Old => "old",
            Side::New => "new",
        }
    }
}

impl FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "old" | "left" | "base" => Ok(Side::Old),
            "new" | "right" | "head" => Ok(Side::New),
            _ => Err(format!("unknown side `{s}`: expected old or new")),
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message in a review thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub id: String,
    pub author: Option<String>,
    pub body: String,
    pub created: Option<String>,
}

/// A review thread: a comment on lines of a file (or on the whole pull request when `path` is
/// `None`) and its replies, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Thread {
    /// What a reply names: GitHub's first comment id, GitLab's discussion id, Bitbucket's first
    /// comment id.
    pub id: String,
    pub provider: Provider,
    pub path: Option<String>,
    pub side: Side,
    /// The lines at `commit`, 1-based and inclusive; `None` for a comment on a whole file or
    /// the whole pull request.
    #[serde(serialize_with = "lines_json")]
    pub lines: Option<LineRange>,
    /// The commit whose file `lines` refer to (the side's version of the file), when known.
    pub commit: Option<String>,
    /// `None` when the provider does not say.
    pub resolved: Option<bool>,
    /// The code it was made on has changed in the pull request since.
    pub outdated: bool,
    pub comments: Vec<Comment>,
    pub url: Option<String>,
    /// The commented lines' text when the provider gives it (GitHub's `diff_hunk`): a thread
    /// whose commit is missing here is still placed by searching for it.
    #[serde(skip)]
    pub anchored_text: Option<String>,
}

fn lines_json<S: serde::Serializer>(lines: &Option<LineRange>, s: S) -> Result<S::Ok, S::Error> {
    match lines {
        Some(l) => serde::Serialize::serialize(&serde_json::json!({ "start": l.start, "end": l.end }), s),
        None => s.serialize_none(),
    }
}

/// A line or multi-line comment to make: `lines` of `path` on `side` of the pull request's diff
/// at `commit` (its head for the new side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewComment {
    pub path: String,
    pub lines: LineRange,
    pub side: Side,
    pub body: String,
    /// A comment on the whole file rather than on lines (GitHub and Bitbucket have them); used
    /// when the lines are not part of the diff and the user asked for it.
    pub file_level: bool,
    /// Send the body even when it looks like it holds a credential (recorded in the ledger).
    pub anyway: bool,
}

/// A pull request to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPull {
    pub title: String,
    pub body: Option<String>,
    /// The branch on the provider that holds the changes.
    pub head: String,
    /// The branch to merge into; the repository's default branch when `None`.
    pub base: Option<String>,
    pub draft: bool,
    /// Send the body even when it looks like it holds a credential (recorded in the ledger).
    pub anyway: bool,
}

/// What a new comment or reply became, with anything the user should be told about how it was
/// made (`Bitbucket has no multi-line comments: anchored on line 14`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Posted {
    pub thread_id: String,
    pub comment: Comment,
    pub note: Option<String>,
}

/// A comment on a pull request as a whole, not on lines of it (GitHub's issue comments, GitLab's
/// merge request notes, Bitbucket's comments without `inline`): where a CI bot's summary goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrComment {
    pub id: String,
    /// The login (GitHub), username (GitLab) or display name (Bitbucket): what
    /// [`Forge::me`] says for the token's own comments.
    pub author: Option<String>,
    pub body: String,
    /// The comment's page, when the provider says or it can be built from the pull request's.
    pub url: Option<String>,
}

/// A pull request's threads, read in one go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    pub pull: PullRequest,
    pub threads: Vec<Thread>,
}

/// A repository on a code host, with a token and the HTTP client to reach it.
pub struct Forge {
    pub repo: RepoRef,
    pub http: Http,
    token: Token,
    /// Where the token came from, for messages ("GITHUB_TOKEN", "the keychain").
    pub token_source: TokenSource,
}

impl Forge {
    pub fn new(repo: RepoRef, http: Http, token: Token, token_source: TokenSource) -> Forge {
        Forge { repo, http, token, token_source }
    }

    pub fn provider(&self) -> Provider {
        self.repo.provider
    }

    /// `github:acme/shop#42`: what the egress ledger records a request to be about.
    pub fn subject(&self, pr: Option<u64>) -> String {
        self.repo.subject(pr)
    }

    /// The open pull request whose source is `branch` (its name on the provider), if any.
    /// `head_owner` is the owner of the repository the branch is pushed to, when it is another
    /// (a fork's pull request on GitHub).
    pub async fn pull_for_branch(
        &self,
        branch: &str,
        head_owner: Option<&str>,
    ) -> Result<Option<PullRequest>, ProviderError> {
        match self.provider() {
            Provider::GitHub => github::pull_for_branch(self, branch, head_owner).await,
            Provider::GitLab => gitlab::pull_for_branch(self, branch).await,
            Provider::Bitbucket => bitbucket::pull_for_branch(self, branch).await,
        }
    }

    /// The open pull requests, newest first, every page.
    pub async fn open_pulls(&self) -> Result<Vec<PullRequest>, ProviderError> {
        match self.provider() {
            Provider::GitHub => github::open_pulls(self).await,
            Provider::GitLab => gitlab::open_pulls(self).await,
            Provider::Bitbucket => bitbucket::open_pulls(self).await,
        }
    }

    /// One pull request by number.
    pub async fn pull(&self, number: u64) -> Result<PullRequest, ProviderError> {
        match self.provider() {
            Provider::GitHub => github::pull(self, number).await,
            Provider::GitLab => gitlab::pull(self, number).await,
            Provider::Bitbucket => bitbucket::pull(self, number).await,
        }
    }

    /// The files a pull request changes, every page, with their hunks where the provider sends
    /// them in the list (GitHub, GitLab).
    pub async fn files(&self, pr: &PullRequest) -> Result<Vec<ChangedFile>, ProviderError> {
        match self.provider() {
            Provider::GitHub => github::files(self, pr.number).await,
            Provider::GitLab => gitlab::files(self, pr.number).await,
            Provider::Bitbucket => bitbucket::files(self, pr.number).await,
        }
    }

    /// The review threads of a pull request with their replies and resolved state.
    pub async fn threads(&self, pr: &PullRequest) -> Result<Vec<Thread>, ProviderError> {
        match self.provider() {
            Provider::GitHub => github::threads(self, pr).await,
            Provider::GitLab => gitlab::threads(self, pr).await,
            Provider::Bitbucket => bitbucket::threads(self, pr).await,
        }
    }

    /// Makes a line or multi-line comment on the pull request's diff. The lines are checked
    /// against the diff first: lines it does not show are refused with [`ProviderError::NotInDiff`]
    /// (nothing is posted), unless `file_level` asks for a comment on the whole file.
    pub async fn comment(&self, pr: &PullRequest, c: &NewComment) -> Result<Posted, ProviderError> {
        if c.body.trim().is_empty() {
            return Err(ProviderError::Setup("the comment is empty: say something".into()));
        }
        let note = screen(&c.body, c.anyway)?;
        match self.provider() {
            Provider::GitHub => github::comment(self, pr, c, note).await,
            Provider::GitLab => gitlab::comment(self, pr, c, note).await,
            Provider::Bitbucket => bitbucket::comment(self, pr, c, note).await,
        }
    }

    /// Replies to a thread; `anyway` sends a body that looks like it holds a credential.
    pub async fn reply(
        &self,
        pr: &PullRequest,
        thread_id: &str,
        body: &str,
        anyway: bool,
    ) -> Result<Posted, ProviderError> {
        let note = screen(body, anyway)?;
        match self.provider() {
            Provider::GitHub => github::reply(self, pr, thread_id, body, note).await,
            Provider::GitLab => gitlab::reply(self, pr, thread_id, body, note).await,
            Provider::Bitbucket => bitbucket::reply(self, pr, thread_id, body, note).await,
        }
    }

    /// Opens a pull request.
    pub async fn create_pull(&self, new: &NewPull) -> Result<PullRequest, ProviderError> {
        if new.title.trim().is_empty() {
            return Err(ProviderError::Setup(format!("a {} needs a title", self.provider().pr_noun())));
        }
        let note = screen(new.body.as_deref().unwrap_or(""), new.anyway)?;
        match self.provider() {
            Provider::GitHub => github::create_pull(self, new, note).await,
            Provider::GitLab => gitlab::create_pull(self, new, note).await,
            Provider::Bitbucket => bitbucket::create_pull(self, new, note).await,
        }
    }

    /// The comments on pull request `pr` as a whole (not review comments on lines), oldest
    /// first, every page; GitLab's system notes are left out.
    pub async fn pr_comments(&self, pr: u64) -> Result<Vec<PrComment>, ProviderError> {
        match self.provider() {
            Provider::GitHub => github::pr_comments(self, pr).await,
            Provider::GitLab => gitlab::pr_comments(self, pr).await,
            Provider::Bitbucket => bitbucket::pr_comments(self, pr).await,
        }
    }

    /// Adds a comment on pull request `pr` as a whole; `anyway` sends a body that looks like it
    /// holds a credential.
    pub async fn create_pr_comment(&self, pr: u64, body: &str, anyway: bool) -> Result<PrComment, ProviderError> {
        if body.trim().is_empty() {
            return Err(ProviderError::Setup("the comment is empty: say something".into()));
        }
        let note = screen(body, anyway)?;
        match self.provider() {
            Provider::GitHub => github::create_pr_comment(self, pr, body, note).await,
            Provider::GitLab => gitlab::create_pr_comment(self, pr, body, note).await,
            Provider::Bitbucket => bitbucket::create_pr_comment(self, pr, body, note).await,
        }
    }

    /// Replaces the body of comment `id` on pull request `pr` (one of [`Forge::pr_comments`]).
    pub async fn edit_pr_comment(
        &self,
        pr: u64,
        id: &str,
        body: &str,
        anyway: bool,
    ) -> Result<PrComment, ProviderError> {
        if body.trim().is_empty() {
            return Err(ProviderError::Setup("the comment is empty: say something".into()));
        }
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProviderError::Setup(format!("`{id}` is not a comment id (a number)")));
        }
        let note = screen(body, anyway)?;
        match self.provider() {
            Provider::GitHub => github::edit_pr_comment(self, pr, id, body, note).await,
            Provider::GitLab => gitlab::edit_pr_comment(self, pr, id, body, note).await,
            Provider::Bitbucket => bitbucket::edit_pr_comment(self, pr, id, body, note).await,
        }
    }

    /// Who the token belongs to, as comments name their authors; `None` when the token may not
    /// say (GitHub Actions' `GITHUB_TOKEN` cannot read `/user`) or the host does not answer.
    pub async fn me(&self) -> Option<String> {
        let who = match self.provider() {
            Provider::GitHub => github::whoami(self).await,
            Provider::GitLab => gitlab::whoami(self).await,
            Provider::Bitbucket => bitbucket::whoami(self).await,
        };
        match who {
            Ok(w) => w.user,
            Err(e) => {
                tracing::info!("{}: who the token belongs to is unknown: {e}", self.repo.host);
                None
            }
        }
    }

    /// A pull request and its threads.
    pub async fn review(&self, number: u64) -> Result<Review, ProviderError> {
        let pull = self.pull(number).await?;
        let threads = self.threads(&pull).await?;
        Ok(Review { pull, threads })
    }
}

/// A client for the repository a checkout's remotes name (`remote` chooses one): its host from
/// the remotes and the self-hosted hosts in `store`'s settings, its token from the keychain,
/// the environment or the provider's command line, requests recorded in `store`'s ledger.
/// Blocking (the keychain, reading settings).
pub fn connect(
    repo: &crate::git::Repo,
    store: std::sync::Arc<std::sync::Mutex<crate::store::Store>>,
    remote: Option<&str>,
    options: HttpOptions,
) -> Result<Forge, ProviderError> {
    let settings = store.lock().unwrap_or_else(|e| e.into_inner()).settings_under(detect::HOST_SETTING_PREFIX)?;
    let target = detect::Config::from_env(&settings).detect(&repo.remotes(), remote)?;
    let keychain = crate::keychain::Keychain::open().map_err(|e| e.to_string());
    let env = |name: &str| std::env::var(name).ok();
    let sources = auth::Sources {
        keychain: keychain.as_ref().map(|k| k as &dyn auth::SecretStore).map_err(Clone::clone),
        env: &env,
        cli: true,
    };
    let (token, source) = auth::find_token(&target, &sources)?;
    tracing::info!("{}: token from {source}", target.host);
    let http = Http::new(store, options)?;
    Ok(Forge::new(target, http, token, source))
}

/// Scans a text about to be sent for what looks like a credential: held back with
/// [`secrets::describe`](crate::secrets::describe)'s message, unless `anyway`, in which case the
/// ledger note says it was sent despite it.
pub fn screen(text: &str, anyway: bool) -> Result<Option<String>, ProviderError> {
    let findings = crate::secrets::scan(text);
    if findings.is_empty() {
        return Ok(None);
    }
    let why = crate::secrets::describe(&findings);
    if anyway {
        return Ok(Some(format!("sent despite: {why}")));
    }
    Err(ProviderError::Held(format!("{why}. Nothing was sent; remove it, or send it as it is with --anyway")))
}

/// Lenient JSON reading: a missing field or a field of another type is `None`, never a panic.
mod read {
    use serde_json::Value;

    /// A string at a JSON pointer (`/head/ref`); numbers are given as text.
    pub fn s(v: &Value, ptr: &str) -> Option<String> {
        match v.pointer(ptr)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A non-empty string.
    pub fn text(v: &Value, ptr: &str) -> Option<String> {
        s(v, ptr).filter(|s| !s.trim().is_empty())
    }

    /// A whole number at a JSON pointer, also from a string of digits.
    pub fn n(v: &Value, ptr: &str) -> Option<u64> {
        match v.pointer(ptr)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A line number: a whole number from 1 up.
    pub fn line(v: &Value, ptr: &str) -> Option<u32> {
        n(v, ptr).filter(|&l| l >= 1 && l <= u32::MAX as u64).map(|l| l as u32)
    }

    pub fn b(v: &Value, ptr: &str) -> Option<bool> {
        v.pointer(ptr)?.as_bool()
    }
}

/// Who a token belongs to, from a cheap authenticated call (`auth login`, `auth status
/// --check`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Whoami {
    /// The login or display name, when the token may read it.
    pub user: Option<String>,
    /// Scopes the provider reported for the token (GitHub classic tokens), if any.
    pub scopes: Option<String>,
    /// Something worth telling (`the token cannot read the user; it is kept anyway`).
    pub note: Option<String>,
}

/// Checks a token with a cheap authenticated call to `repo`'s host (its owner and name may be
/// empty).
pub async fn whoami(repo: &RepoRef, http: &Http, token: &Token) -> Result<Whoami, ProviderError> {
    let forge = Forge::new(repo.clone(), http.clone(), token.clone(), TokenSource::Given);
    match repo.provider {
        Provider::GitHub => github::whoami(&forge).await,
        Provider::GitLab => gitlab::whoami(&forge).await,
        Provider::Bitbucket => bitbucket::whoami(&forge).await,
    }
}
