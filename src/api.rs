//! The sync API's wire format: the JSON that `marginalia serve` ([`crate::server`]) and its
//! clients (the language server and the CLI, through [`crate::sync`]) exchange under
//! [`PREFIX`]. Plain serde data and the limits both sides enforce.
//!
//! **Architecture invariant:** no HTTP, SQL, crypto or LSP here; both sides depend on this
//! module and on nothing of each other. The server's OpenAPI document (`GET
//! /api/v1/openapi.json`) describes exactly these shapes.
//!
//! Conventions:
//! - Ids are UUIDs in text form. Codemark, anchor and reply ids are made by the client (UUID
//!   v7), so a change written offline keeps its id when it reaches the server.
//! - Times are milliseconds since the Unix epoch (`i64`).
//! - Every request but `POST /api/v1/login`, `/healthz`, `/metrics` and the OpenAPI document carries
//!   `Authorization: Bearer <token>`.
//! - Every mutation may carry an [`IDEMPOTENCY_HEADER`]; the server answers a repeated key with
//!   the first answer's status and the resource's current state, and does nothing twice.
//! - Errors are [`ErrorBody`] with a 4xx/5xx status; `field` names the offending field.

use serde::{Deserialize, Serialize};

/// Every API route starts with this.
pub const PREFIX: &str = "/api/v1";

/// The header that makes a mutation safe to send again (any string up to 200 bytes; the
/// client uses a UUID v7 written into its outbox together with the change).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Limits both sides enforce: the client refuses to queue what the server would refuse.
pub mod limits {
    /// A whole request body.
    pub const MAX_REQUEST_BYTES: usize = 2 << 20;
    /// A codemark's or reply's body (Markdown).
    pub const MAX_BODY_BYTES: usize = 256 << 10;
    /// A codemark's title.
    pub const MAX_TITLE_BYTES: usize = 1 << 10;
    /// One anchor's snippet: its anchored text plus its context lines.
    pub const MAX_SNIPPET_BYTES: usize = 256 << 10;
    /// Anchors on one codemark.
    pub const MAX_ANCHORS: usize = 16;
    /// Paths, repository keys, names, emails, token labels.
    pub const MAX_NAME_BYTES: usize = 1 << 10;
    /// Events in one page of [`super::Changes`].
    pub const MAX_PAGE: usize = 1000;
    /// The patches of one review revision, all files together.
    pub const MAX_REVISION_BYTES: usize = 16 << 20;
    /// The request body of the two routes that carry a revision.
    pub const MAX_REVISION_REQUEST_BYTES: usize = 20 << 20;
    /// Files in one revision.
    pub const MAX_REVISION_FILES: usize = 5_000;
}

/// A member's role in a team.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May invite, change roles, remove members, revoke anyone's tokens, delete the team.
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(format!("unknown role `{s}`: expected admin or member")),
        }
    }
}

/// `POST /api/v1/login`, without a token: the invite code is the credential. Single use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub invite: String,
    /// How teammates see this member.
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// A label for the token this login creates ("laptop", "ci"); the host name by default.
    #[serde(default)]
    pub token_label: Option<String>,
}

/// The answer to [`Login`] and to `POST /api/v1/tokens`: the token, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// `mrg_` followed by 43 base64url characters (256 random bits). The server keeps only a
    /// hash of it.
    pub token: String,
    pub info: TokenInfo,
    pub team: Team,
    pub member: Member,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub role: Role,
    pub joined: i64,
}

/// `GET /api/v1/me`: who the token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub team: Team,
    pub member: Member,
    pub token: TokenInfo,
}

/// `POST /api/v1/invites` (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    pub role: Role,
    /// Hours until it expires; 72 by default, at most 720.
    #[serde(default)]
    pub ttl_hours: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Shown once; the server keeps a hash.
    pub code: String,
    pub role: Role,
    pub expires: i64,
}

/// `PATCH /api/v1/members/{id}` (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub role: Role,
}

/// `POST /api/v1/tokens`: another token for the caller (a CI bot's, say).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub label: String,
}

/// A token as listed (`GET /api/v1/tokens`): never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub member_id: String,
    pub label: String,
    pub created: i64,
    pub last_used: Option<i64>,
    pub revoked: Option<i64>,
}

/// `PUT /api/v1/repos`: makes a repository known to the team by its identity (idempotent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoIdentity {
    /// The local store's repository key (the normalised primary remote, else `root:<sha>`):
    /// clones of one repository send the same key.
    pub key: String,
    /// Root commits, when known: a later version may match forks by them.
    #[serde(default)]
    pub roots: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub id: String,
    pub key: String,
    pub roots: Vec<String>,
    pub created: i64,
}

/// One hold of a codemark on code, with its snippet (`text`, `before`, `after`): the only code
/// that ever reaches the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub id: String,
    /// 40 hex digits: the commit the lines are numbered in (for a pending anchor, its base).
    pub commit: String,
    pub path: String,
    /// 1-based, inclusive.
    pub start: u32,
    pub end: u32,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub after: Vec<String>,
    /// The lines were not committed when the codemark was made (see the local model).
    #[serde(default)]
    pub pending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub id: String,
    /// Set by the server from the caller; ignored when sent.
    #[serde(default)]
    pub author: String,
    /// Set by the server; ignored when sent.
    #[serde(default)]
    pub author_id: Option<String>,
    pub body: String,
    pub created: i64,
}

/// A codemark as the server holds it. `kind` is `comment`, `question` or `issue` (bookmarks
/// are private and never sent); `status` is `open` or `resolved`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Codemark {
    pub id: String,
    /// The repository key (see [`RepoIdentity::key`]).
    pub repo: String,
    pub kind: String,
    pub title: Option<String>,
    pub body: String,
    pub author: String,
    pub author_id: Option<String>,
    pub status: String,
    pub anchors: Vec<Anchor>,
    pub replies: Vec<Reply>,
    pub created: i64,
    pub updated: i64,
    /// Set for a comment made in a feedback request (a review comment is a codemark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewRef>,
}

/// `POST /api/v1/codemarks`: the author is the caller. Creating an id that exists already
/// (sent again without the idempotency key) answers 409.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCodemark {
    pub id: String,
    pub repo: String,
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
    pub body: String,
    #[serde(default = "open")]
    pub status: String,
    pub anchors: Vec<Anchor>,
    pub created: i64,
    /// A comment in a feedback request: the review (of this team) and revision must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewRef>,
}

fn open() -> String {
    "open".into()
}

/// `PATCH /api/v1/codemarks/{id}`: changes what is given. A `null` title removes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodemarkPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "double_option")]
    pub title: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Anchors rewritten by the client (a pending anchor promoted to the commit that now holds
    /// its lines); replaces the codemark's anchors when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<Vec<Anchor>>,
}

/// `POST /api/v1/codemarks/{id}/replies`: the author is the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReply {
    pub id: String,
    pub body: String,
    pub created: i64,
}

/// What changed, as the event stream and the changes feed carry it. Events point at live data:
/// a codemark changed several times since a cursor is sent once, as it is now; a deleted one
/// is sent as deleted (its content is gone from the server).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// A change lives for one page of the feed; boxing the codemark would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// Created or changed (body, title, status, anchors, a reply added or deleted).
    Codemark {
        codemark: Codemark,
    },
    CodemarkDeleted {
        id: String,
    },
    /// A feedback request created or changed (a revision, a verdict, its status).
    Review {
        review: Review,
    },
    ReviewDeleted {
        id: String,
    },
}

/// One event: the change and the cursor just after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Opaque; hand it back as `after` (or SSE `Last-Event-ID`) to resume after this event.
    pub cursor: String,
    #[serde(flatten)]
    pub change: Change,
}

/// `GET /api/v1/changes?after=CURSOR&limit=N`: the team's changes after a cursor (from the
/// start without one), oldest first. `GET /api/v1/events?after=CURSOR` streams the same events
/// as Server-Sent Events (`id:` the cursor, `event: change`, `data:` an [`Event`]), and
/// honours `Last-Event-ID`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub events: Vec<Event>,
    /// Where the next pull starts: the last event's cursor, or the one given when none.
    pub cursor: String,
    /// More events wait past this page.
    pub more: bool,
}

/// Which side of a review file a comment is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The base version.
    Old,
    /// The proposed version.
    New,
}

/// Where a review comment sits. Its codemark's anchor is on the lines of that side's content
/// (pending, with their text, until a commit holds them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewRef {
    pub review: String,
    /// The revision it was made on (1-based).
    pub revision: u32,
    /// The file's path on that side.
    pub path: String,
    pub side: Side,
}

/// One file of a revision: how to rebuild the proposed version from the base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePatch {
    /// The path in the base; absent for an added file.
    #[serde(default)]
    pub old_path: Option<String>,
    /// The proposed path; absent for a deleted file.
    #[serde(default)]
    pub new_path: Option<String>,
    /// Git file modes (`100644`, `100755`, `120000`).
    #[serde(default)]
    pub old_mode: Option<String>,
    #[serde(default)]
    pub new_mode: Option<String>,
    /// The base version's blob id, when the file existed.
    #[serde(default)]
    pub old_blob: Option<String>,
    /// The proposed version's blob id: a rebuild that does not hash to it is refused.
    #[serde(default)]
    pub new_blob: Option<String>,
    /// A binary file is listed, never sent.
    #[serde(default)]
    pub binary: bool,
    /// Unified diff hunks (`@@ -a,b +c,d @@` and their lines, no file headers) from the base to
    /// the proposed text; absent when only the path or mode changed, or for binary files.
    #[serde(default)]
    pub patch: Option<String>,
}

/// A revision as the author sends it: the changeset against a base the reviewers have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRevision {
    pub id: String,
    /// 40 hex digits: the commit the patches apply to (the reviewers have it).
    pub base: String,
    /// Why that base, for people: `merge-base with origin/main`.
    #[serde(default)]
    pub base_note: String,
    /// The author's HEAD when the revision was made (its commits may not be pushed).
    #[serde(default)]
    pub head: Option<String>,
    pub files: Vec<FilePatch>,
    pub created: i64,
}

/// `POST /api/v1/reviews`: a feedback request with its first revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    pub id: String,
    pub repo: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Member ids of this team.
    #[serde(default)]
    pub reviewers: Vec<String>,
    pub revision: NewRevision,
}

/// `PATCH /api/v1/reviews/{id}` (its author, or an admin).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `closed`, or `open` to reopen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Replaces the reviewers (member ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewers: Option<Vec<String>>,
}

/// `POST /api/v1/reviews/{id}/verdict` (a member other than the author): `approved` or
/// `changes_requested`, on the latest revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub verdict: String,
}

/// A file of a revision, listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub binary: bool,
    pub added: u32,
    pub removed: u32,
}

/// A revision without its patches (`GET /api/v1/reviews/{id}/revisions/{number}` has them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionSummary {
    pub id: String,
    pub number: u32,
    pub base: String,
    pub base_note: String,
    pub head: Option<String>,
    pub files: Vec<FileSummary>,
    pub created: i64,
}

/// A revision with its patches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    pub id: String,
    pub number: u32,
    pub base: String,
    pub base_note: String,
    pub head: Option<String>,
    pub files: Vec<FilePatch>,
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewer {
    pub member_id: String,
    pub name: String,
    /// `pending`, `approved` or `changes_requested`, on the latest revision.
    pub verdict: String,
}

/// A feedback request. `status` is `closed` when closed, else `changes_requested` when a
/// reviewer asked for changes on the latest revision, `approved` when one approved it and none
/// asked for changes, else `open`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    pub repo: String,
    pub title: String,
    pub description: String,
    pub author: String,
    pub author_id: Option<String>,
    pub status: String,
    pub reviewers: Vec<Reviewer>,
    /// Oldest first; the last is the one to read.
    pub revisions: Vec<RevisionSummary>,
    pub created: i64,
    pub updated: i64,
}

/// `GET /api/v1/export`: everything the server holds about the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub exported: i64,
    pub team: Team,
    pub member: Member,
    pub tokens: Vec<TokenInfo>,
    /// Codemarks the caller wrote, with their whole threads.
    pub codemarks: Vec<Codemark>,
    /// Replies the caller wrote on others' codemarks: (codemark id, reply).
    pub replies: Vec<ExportedReply>,
    /// Feedback requests the caller asked for, as listed (each revision's patches are at
    /// `GET /api/v1/reviews/{id}/revisions/{number}`). Absent from older servers' exports.
    #[serde(default)]
    pub reviews: Vec<Review>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedReply {
    pub codemark_id: String,
    pub reply: Reply,
}

/// One entry of `GET /api/v1/audit?after=SEQ&limit=N` (admins only): the team's audit log,
/// oldest first. Entries hold ids and actions, never names or text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the server's hash chain; hand the last one back as `after` for the next page.
    pub seq: i64,
    pub time: i64,
    /// The member who acted, or `operator` (the server's command line).
    pub actor_id: String,
    /// `sign-in`, `member.added`, `member.removed`, `member.role_changed`, `token.created`,
    /// `token.revoked`, `invite.created`, `codemark.deleted`, `reply.deleted`, `review.deleted`,
    /// `export`, `team.created`, `team.deleted`.
    pub action: String,
    pub target_id: Option<String>,
    pub detail: String,
}

/// Every error answer's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, for programs: `unauthorized`, `forbidden`, `not_found`, `bad_request`,
    /// `conflict`, `too_large`, `rate_limited`, `internal`.
    pub code: String,
    /// For people: says what was wrong.
    pub message: String,
    /// The request field at fault, when one is (`body`, `anchors[0].text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Serde for `Option<Option<T>>`: absent is `None`, `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_title_removes_it_and_an_absent_one_keeps_it() {
        let p: CodemarkPatch = serde_json::from_str(r#"{"title":null}"#).unwrap();
        assert_eq!(p.title, Some(None));
        let p: CodemarkPatch = serde_json::from_str(r#"{"body":"x"}"#).unwrap();
        assert_eq!(p.title, None);
        assert_eq!(
            serde_json::to_string(&CodemarkPatch { title: Some(None), ..Default::default() }).unwrap(),
            r#"{"title":null}"#
        );
    }

    #[test]
    fn events_carry_their_type_beside_the_cursor() {
        let e = Event { cursor: "7".into(), change: Change::CodemarkDeleted { id: "x".into() } };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"cursor":"7","type":"codemark_deleted","id":"x"}"#);
    }
}
