//! The server's storage, behind [`Storage`]: rows of sealed bytes and plain metadata. It knows
//! nothing of HTTP, roles or keys' contents; the service layer decides, seals and checks, and
//! hands each mutation over as one [`Batch`] that is applied atomically with its audit entries,
//! its events and its idempotency record.
//!
//! - `sqlite`: the default implementation, `server.db` (data) and `keys.db` (wrapped team keys)
//!   in the data directory.
//! - `postgres`: several stateless server processes over one PostgreSQL; also the cross-process
//!   event wake-ups (LISTEN/NOTIFY) and rate limits kept in the database.
//!
//! **Architecture invariant:** these two files are the server's only SQL; handlers and the
//! service do not know which one runs. Wrapped team keys are kept apart from the data
//! (`keys.db`; a table PostgreSQL deployments can put in another database) so that backups of the
//! data need not hold a key.

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use crate::api::Role;

use super::audit;

/// What every storage method returns.
pub type DbFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DbError>> + Send + 'a>>;

/// Why storage could not do what was asked. The first few are answers about the data (the
/// service turns them into 404, 409...); the rest are failures of the storage itself.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A write's target row is absent (deleted meanwhile, or never there).
    #[error("the row to change is not there")]
    NotFound,
    /// A row with this id exists already.
    #[error("a row with this id exists already")]
    Exists,
    /// The write would leave the team without an admin.
    #[error("the team would have no admin left")]
    LastAdmin,
    /// The invite was used or expired between reading and redeeming it.
    #[error("the invite was used or has expired")]
    InviteGone,
    /// Another request with the same idempotency key committed first.
    #[error("the idempotency key was used by a request that committed first")]
    IdempotencyReplay,
    /// The review is closed: it takes no new revision.
    #[error("the review is closed")]
    Closed,
    /// Rows the batch was built from changed before it was applied (a comment added to a review
    /// being deleted): read again and build the batch anew.
    #[error("the rows changed since they were read")]
    Changed,
    #[error(
        "{} was written by a newer marginalia (schema version {found}; this one knows up to {known}) and was left \
         untouched; upgrade marginalia",
        path.display()
    )]
    NewerSchema { path: std::path::PathBuf, found: i64, known: i64 },
    #[error("{} is not a marginalia server file ({detail}); it was left untouched", path.display())]
    NotOurs { path: std::path::PathBuf, detail: String },
    /// The database cannot be reached (down, restarting, the network): nothing was done that
    /// can be relied on, and the same request may succeed in a moment. `place` names the
    /// database without its password.
    #[error("{context} ({place}): the database is unreachable: {cause}")]
    Unavailable { place: String, context: String, cause: String },
    /// Anything else: the database failed; `context` says what was being done.
    #[error("{context} ({}): {cause}", path.display())]
    Backend { path: std::path::PathBuf, context: String, cause: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamRow {
    pub id: String,
    pub name_sealed: Vec<u8>,
    pub name_mac: Vec<u8>,
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub id: String,
    pub team_id: String,
    pub name_sealed: Vec<u8>,
    pub email_sealed: Option<Vec<u8>>,
    pub role: Role,
    pub joined: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub team_id: String,
    pub member_id: String,
    /// SHA-256 of the token.
    pub hash: Vec<u8>,
    pub label_sealed: Vec<u8>,
    pub created: i64,
    pub last_used: Option<i64>,
    pub revoked: Option<i64>,
}

/// A token found by its hash, with its member's current role and sealed name (`None`: the
/// member is gone).
#[derive(Clone, Debug)]
pub struct AuthRow {
    pub token: TokenRow,
    pub role: Option<Role>,
    pub name_sealed: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRow {
    /// SHA-256 of the code.
    pub hash: Vec<u8>,
    pub team_id: String,
    pub role: Role,
    pub created: i64,
    pub expires: i64,
    pub used: Option<i64>,
}

/// A repository; its id is derived from the lookup MAC of its key, so one key is one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRow {
    pub id: String,
    pub team_id: String,
    pub key_sealed: Vec<u8>,
    pub roots_sealed: Vec<u8>,
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodemarkRow {
    pub team_id: String,
    pub id: String,
    pub repo_id: String,
    pub kind: String,
    pub status: String,
    pub author_id: String,
    pub title_sealed: Option<Vec<u8>>,
    pub body_sealed: Vec<u8>,
    /// The anchors list as one sealed JSON blob.
    pub anchors_sealed: Vec<u8>,
    pub created: i64,
    pub updated: i64,
    /// A review comment's review, in the clear (deleting the review finds its comments by it).
    pub review_id: Option<String>,
    /// A review comment's whole link ([`crate::api::ReviewRef`]: review, revision, path, side) as
    /// one sealed JSON value; set exactly when `review_id` is.
    pub review_sealed: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyRow {
    pub team_id: String,
    pub id: String,
    pub codemark_id: String,
    pub author_id: String,
    pub body_sealed: Vec<u8>,
    pub created: i64,
}

/// A codemark with what it is shown with: its repository's sealed key, its author's sealed
/// name (`None` once the member is removed) and its replies, oldest first.
#[derive(Clone, Debug)]
pub struct Thread {
    pub codemark: CodemarkRow,
    pub repo_key_sealed: Vec<u8>,
    pub author_name_sealed: Option<Vec<u8>>,
    pub replies: Vec<(ReplyRow, Option<Vec<u8>>)>,
}

/// Which threads to read; every condition given must hold.
#[derive(Clone, Debug, Default)]
pub struct ThreadFilter {
    pub repo_id: Option<String>,
    pub author_id: Option<String>,
    pub ids: Option<Vec<String>>,
}

/// A feedback request (review). Its reviewers and revisions are rows of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewRow {
    pub team_id: String,
    pub id: String,
    pub repo_id: String,
    pub author_id: String,
    pub title_sealed: Vec<u8>,
    pub description_sealed: Vec<u8>,
    pub closed: bool,
    pub created: i64,
    pub updated: i64,
}

/// A revision as the service writes it; the storage numbers it (the next after the review's
/// latest, 1 for a new review's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionDraft {
    pub id: String,
    /// Base, base note, head and the files listed with their line counts, without patches: one
    /// small sealed JSON value, read whenever the review is shown.
    pub summary_sealed: Vec<u8>,
    /// The files with their patches (up to [`crate::api::limits::MAX_REVISION_BYTES`]): one
    /// sealed JSON value, read only when the revision itself is asked for.
    pub files_sealed: Vec<u8>,
    pub created: i64,
}

/// A revision as listed with its review: without its patches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionRow {
    pub team_id: String,
    pub review_id: String,
    pub id: String,
    pub number: u32,
    pub summary_sealed: Vec<u8>,
    pub created: i64,
}

/// A reviewer of a review, with their sealed name (`None` once the member is removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewerRow {
    pub member_id: String,
    /// `pending`, `approved` or `changes_requested`, on the latest revision.
    pub verdict: String,
    pub name_sealed: Option<Vec<u8>>,
}

/// A review with what it is shown with: its repository's sealed key, its author's sealed name
/// (`None` once the member is removed), its reviewers in the order they were listed, and its
/// revisions (oldest first) without their patches.
#[derive(Clone, Debug)]
pub struct ReviewRecord {
    pub review: ReviewRow,
    pub repo_key_sealed: Vec<u8>,
    pub author_name_sealed: Option<Vec<u8>>,
    pub reviewers: Vec<ReviewerRow>,
    pub revisions: Vec<RevisionRow>,
}

/// Which reviews to read; every condition given must hold.
#[derive(Clone, Debug, Default)]
pub struct ReviewFilter {
    pub ids: Option<Vec<String>>,
    pub author_id: Option<String>,
    /// Reviews listing this member as a reviewer.
    pub reviewer_id: Option<String>,
    /// Only reviews that are not closed.
    pub open_only: bool,
}

/// What an event points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Codemark,
    Review,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Codemark => "codemark",
            Subject::Review => "review",
        }
    }

    pub fn parse(text: &str) -> Option<Subject> {
        match text {
            "codemark" => Some(Subject::Codemark),
            "review" => Some(Subject::Review),
            _ => None,
        }
    }
}

/// One entry of the changes feed: a pointer to a codemark or a review, not its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    pub seq: i64,
    pub subject: Subject,
    /// The codemark's or the review's id.
    pub id: String,
    pub deleted: bool,
}

/// What a mutation carrying an idempotency key answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRow {
    pub team_id: String,
    pub member_id: String,
    pub key: String,
    /// Method and path of the first request: the key cannot be reused for another one.
    pub route: String,
    pub status: u16,
    pub resource_id: Option<String>,
    pub created: i64,
}

/// One write inside a [`Batch`]. Conditions are checked inside the transaction.
#[derive(Clone, Debug)]
pub enum Write {
    InsertTeam(TeamRow),
    InsertInvite(InviteRow),
    /// Marks the invite used; [`DbError::InviteGone`] when it was used or expired meanwhile.
    RedeemInvite {
        hash: Vec<u8>,
        now: i64,
    },
    InsertMember(MemberRow),
    /// [`DbError::NotFound`], or [`DbError::LastAdmin`] when it demotes the last admin.
    SetRole {
        team_id: String,
        member_id: String,
        role: Role,
    },
    /// Removes the member and revokes their tokens; [`DbError::LastAdmin`] for the last admin.
    DeleteMember {
        team_id: String,
        member_id: String,
        now: i64,
    },
    InsertToken(TokenRow),
    /// Revokes a token (the first revocation time is kept); [`DbError::NotFound`] when absent.
    RevokeToken {
        team_id: String,
        token_id: String,
        now: i64,
    },
    /// Does nothing when the repository is known already.
    InsertRepo(RepoRow),
    /// [`DbError::Exists`] when the team has a codemark with this id; [`DbError::NotFound`] when
    /// it is a review comment and the team has no such review.
    InsertCodemark(CodemarkRow),
    /// Changes what is `Some`; [`DbError::NotFound`] when absent.
    UpdateCodemark {
        team_id: String,
        id: String,
        title_sealed: Option<Option<Vec<u8>>>,
        body_sealed: Option<Vec<u8>>,
        status: Option<String>,
        anchors_sealed: Option<Vec<u8>>,
        updated: i64,
    },
    /// Removes the codemark and its replies; [`DbError::NotFound`] when absent.
    DeleteCodemark {
        team_id: String,
        id: String,
    },
    /// [`DbError::Exists`] for a taken id, [`DbError::NotFound`] when the codemark is gone.
    InsertReply(ReplyRow),
    DeleteReply {
        team_id: String,
        codemark_id: String,
        id: String,
    },
    /// A review with its reviewers (member ids, in order, verdicts pending) and its first
    /// revision (number 1); [`DbError::Exists`] when the team has a review or a revision with
    /// one of these ids.
    InsertReview {
        review: ReviewRow,
        reviewers: Vec<String>,
        revision: RevisionDraft,
    },
    /// A revision numbered after the review's latest; every verdict goes back to `pending`.
    /// [`DbError::NotFound`], [`DbError::Closed`], or [`DbError::Exists`] for a taken revision id.
    AddRevision {
        team_id: String,
        review_id: String,
        revision: RevisionDraft,
    },
    /// A member's verdict on the latest revision; a member not listed becomes a reviewer.
    /// [`DbError::NotFound`] when the review is absent.
    SetVerdict {
        team_id: String,
        review_id: String,
        member_id: String,
        verdict: String,
        updated: i64,
    },
    /// Changes what is `Some`. Replaced reviewers who stay keep their verdicts; new ones start
    /// `pending`. [`DbError::NotFound`] when absent.
    UpdateReview {
        team_id: String,
        id: String,
        title_sealed: Option<Vec<u8>>,
        description_sealed: Option<Vec<u8>>,
        closed: Option<bool>,
        reviewers: Option<Vec<String>>,
        updated: i64,
    },
    /// Removes the review, its revisions, its reviewers and verdicts, and its comments (the
    /// codemarks linked to it) with their replies. `comments` are the comment ids the batch's
    /// events were made for: [`DbError::Changed`] when the review's comments are others now.
    /// [`DbError::NotFound`] when absent.
    DeleteReview {
        team_id: String,
        id: String,
        comments: Vec<String>,
    },
    /// The team's name lookup code, recomputed under a new master key; [`DbError::NotFound`]
    /// when the team is gone.
    SetTeamNameMac {
        team_id: String,
        name_mac: Vec<u8>,
    },
    /// Removes every row of the team from the data (not its audit entries, which hold no
    /// personal data, and not its key: see [`Storage::delete_team_key`]).
    DeleteTeam {
        team_id: String,
    },
}

/// A codemark or a review changed (or was deleted): an event for the changes feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventDraft {
    pub team_id: String,
    pub subject: Subject,
    pub id: String,
    pub deleted: bool,
}

/// Writes applied in one transaction, all or nothing, with what they must leave behind.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub writes: Vec<Write>,
    pub audit: Vec<audit::Draft>,
    pub events: Vec<EventDraft>,
    /// Recorded in the same transaction; [`DbError::IdempotencyReplay`] when the key was taken.
    pub idempotency: Option<IdempotencyRow>,
    /// The time audit entries are stamped with (ms since the epoch).
    pub time: i64,
}

/// What a committed batch produced.
#[derive(Clone, Debug, Default)]
pub struct Committed {
    /// (team, sequence number) of each event written.
    pub events: Vec<(String, i64)>,
}

/// Counts for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub teams: i64,
    pub members: i64,
    pub codemarks: i64,
    pub reviews: i64,
    pub events: i64,
}

/// The server's storage. Every method is one transaction.
pub trait Storage: Send + Sync + 'static {
    fn commit(&self, batch: Batch) -> DbFuture<'_, Committed>;

    fn team(&self, id: &str) -> DbFuture<'_, Option<TeamRow>>;
    fn team_by_name_mac(&self, mac: &[u8]) -> DbFuture<'_, Option<TeamRow>>;

    /// Wrapped team keys live apart from the data (another file, or database).
    fn team_key(&self, team_id: &str) -> DbFuture<'_, Option<Vec<u8>>>;
    fn put_team_key(&self, team_id: &str, wrapped: Vec<u8>, now: i64) -> DbFuture<'_, ()>;
    /// Destroys a team's key: whatever of the team remains anywhere can no longer be opened.
    fn delete_team_key(&self, team_id: &str) -> DbFuture<'_, ()>;
    /// Destroys keys older than `before` whose team is not in the data (left by a crash between
    /// writing a key and its team, or between deleting a team and its key). Returns how many.
    fn sweep_orphan_keys(&self, before: i64) -> DbFuture<'_, usize>;

    fn invite(&self, hash: &[u8]) -> DbFuture<'_, Option<InviteRow>>;
    fn auth(&self, token_hash: &[u8]) -> DbFuture<'_, Option<AuthRow>>;
    /// Records that a token was used (best effort; no audit).
    fn touch_token(&self, token_id: &str, now: i64) -> DbFuture<'_, ()>;
    /// The team's tokens, or one member's.
    fn tokens(&self, team_id: &str, member_id: Option<&str>) -> DbFuture<'_, Vec<TokenRow>>;
    fn token(&self, team_id: &str, token_id: &str) -> DbFuture<'_, Option<TokenRow>>;

    fn members(&self, team_id: &str) -> DbFuture<'_, Vec<MemberRow>>;
    fn member(&self, team_id: &str, member_id: &str) -> DbFuture<'_, Option<MemberRow>>;

    fn repos(&self, team_id: &str) -> DbFuture<'_, Vec<RepoRow>>;
    fn repo(&self, team_id: &str, repo_id: &str) -> DbFuture<'_, Option<RepoRow>>;

    /// Threads, oldest codemark first.
    fn threads(&self, team_id: &str, filter: ThreadFilter) -> DbFuture<'_, Vec<Thread>>;
    /// Replies a member wrote, with the author's sealed name.
    fn replies_by(&self, team_id: &str, author_id: &str) -> DbFuture<'_, Vec<(ReplyRow, Option<Vec<u8>>)>>;

    /// Reviews, newest first (by creation).
    fn reviews(&self, team_id: &str, filter: ReviewFilter) -> DbFuture<'_, Vec<ReviewRecord>>;
    /// One revision of a review, by number, with its sealed files (patches).
    fn revision(&self, team_id: &str, review_id: &str, number: u32) -> DbFuture<'_, Option<(RevisionRow, Vec<u8>)>>;
    /// The ids of a review's comments (the codemarks linked to it).
    fn review_comments(&self, team_id: &str, review_id: &str) -> DbFuture<'_, Vec<String>>;

    /// Up to `limit` events after `after`, oldest first.
    fn events(&self, team_id: &str, after: i64, limit: usize) -> DbFuture<'_, Vec<EventRow>>;

    fn idempotency(&self, team_id: &str, member_id: &str, key: &str) -> DbFuture<'_, Option<IdempotencyRow>>;

    /// Audit entries after `after`, oldest first; one team's, or all of them.
    fn audit(&self, team_id: Option<&str>, after: i64, limit: usize) -> DbFuture<'_, Vec<audit::Entry>>;
    /// Walks the whole audit chain.
    fn verify_audit(&self) -> DbFuture<'_, audit::Verdict>;

    fn stats(&self) -> DbFuture<'_, Stats>;

    /// Whether the database answers now (`/healthz`).
    fn ping(&self) -> DbFuture<'_, ()>;

    /// Every team's wrapped key (rotating the master key rewraps them all).
    fn team_keys(&self) -> DbFuture<'_, Vec<(String, Vec<u8>)>>;
    /// Replaces wrapped keys, all or nothing: `(team, wrapped now, wrapped anew)`.
    /// [`DbError::Changed`] when a key is not what was read (nothing is replaced then).
    fn replace_team_keys(&self, keys: Vec<(String, Vec<u8>, Vec<u8>)>) -> DbFuture<'_, ()>;
}
