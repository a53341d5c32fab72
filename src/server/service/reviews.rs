//! Feedback requests (reviews) in the service layer: creating one with its first revision, new
//! revisions, verdicts, closing and reopening, deleting (with its comments), and the checks on a
//! review comment's link. Scoped, authorized, validated and sealed like codemarks.
//!
//! Sealed per review: its title and description. Sealed per revision, as two values: a small
//! summary (base, base note, head, each file's paths, binary flag and line counts) read whenever
//! the review is shown, and the files with their patches (blob ids and modes included) read only
//! when the revision itself is asked for. One value for all of a revision's patches rather than
//! one per file: a revision is always read whole, one seal and one row cost less than up to
//! [`api::limits::MAX_REVISION_FILES`], and the file holds one size (the total) instead of
//! every file's. Both are bound to the review and the revision (`REVIEW/REVISION` as the row of
//! their associated data), so a revision moved to another review no longer opens. Reviewers'
//! names are the members' (sealed there); verdicts and the closed flag are plain, as a
//! codemark's status is.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Answer, Caller, Idempotency, REMOVED_MEMBER, Service, answer, event, now_ms};
use crate::api;
use crate::server::audit::{self, Action};
use crate::server::crypto::{Place, TeamKey};
use crate::server::db::{
    DbError, IdempotencyRow, ReviewFilter, ReviewRecord, ReviewRow, RevisionDraft, RevisionRow, Subject, Write,
};
use crate::server::error::ApiError;
use crate::server::validate;

/// Which reviews `GET /reviews?for=` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewsFor {
    /// Those listing the caller as a reviewer.
    Me,
    /// Those the caller asked for.
    Mine,
    All,
}

impl ReviewsFor {
    pub fn parse(text: &str) -> Option<ReviewsFor> {
        match text {
            "me" => Some(ReviewsFor::Me),
            "mine" => Some(ReviewsFor::Mine),
            "all" => Some(ReviewsFor::All),
            _ => None,
        }
    }
}

/// What is shown of a revision without its patches, sealed as one small value.
#[derive(Serialize, Deserialize)]
struct Summary {
    base: String,
    base_note: String,
    head: Option<String>,
    files: Vec<api::FileSummary>,
}

/// Lines a patch adds and removes: its `+` and `-` lines (the patches carry no `+++`/`---` file
/// headers, so every such line is content).
pub fn line_counts(patch: &str) -> (u32, u32) {
    let (mut added, mut removed) = (0u32, 0u32);
    for line in patch.split('\n') {
        match line.as_bytes().first() {
            Some(b'+') => added = added.saturating_add(1),
            Some(b'-') => removed = removed.saturating_add(1),
            _ => {}
        }
    }
    (added, removed)
}

/// A review's status: `closed`, else `changes_requested` when a reviewer asked for changes on
/// the latest revision, `approved` when one approved it, else `open`.
pub fn review_status<'a>(closed: bool, verdicts: impl IntoIterator<Item = &'a str> + Clone) -> &'static str {
    if closed {
        "closed"
    } else if verdicts.clone().into_iter().any(|v| v == "changes_requested") {
        "changes_requested"
    } else if verdicts.into_iter().any(|v| v == "approved") {
        "approved"
    } else {
        "open"
    }
}

/// The row a revision's sealed values are bound to: its review and itself.
fn revision_place_row(review_id: &str, revision_id: &str) -> String {
    format!("{review_id}/{revision_id}")
}

fn seal_revision(key: &TeamKey, team: &str, review_id: &str, r: &api::NewRevision) -> RevisionDraft {
    let row = revision_place_row(review_id, &r.id);
    let place = |column| Place { column, team, row: &row };
    let summary = Summary {
        base: r.base.clone(),
        base_note: r.base_note.clone(),
        head: r.head.clone(),
        files: r
            .files
            .iter()
            .map(|f| {
                let (added, removed) = f.patch.as_deref().map_or((0, 0), line_counts);
                api::FileSummary {
                    old_path: f.old_path.clone(),
                    new_path: f.new_path.clone(),
                    binary: f.binary,
                    added,
                    removed,
                }
            })
            .collect(),
    };
    RevisionDraft {
        id: r.id.clone(),
        summary_sealed: key
            .seal(&place("revisions.summary"), &serde_json::to_vec(&summary).expect("a summary serializes")),
        files_sealed: key.seal(&place("revisions.files"), &serde_json::to_vec(&r.files).expect("files serialize")),
        created: r.created,
    }
}

/// Seals a revision on the blocking pool: up to 16 MiB of patches to serialize and encrypt.
async fn seal_revision_apart(
    key: Arc<TeamKey>,
    team: String,
    review_id: String,
    r: api::NewRevision,
) -> Result<RevisionDraft, ApiError> {
    tokio::task::spawn_blocking(move || seal_revision(&key, &team, &review_id, &r))
        .await
        .map_err(|e| ApiError::Internal(format!("sealing a revision failed: {e}")))
}

fn open_json<T: serde::de::DeserializeOwned>(key: &TeamKey, place: &Place<'_>, sealed: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(&key.open(place, sealed)?).map_err(|e| ApiError::Internal(format!("{place}: {e}")))
}

fn open_summary(key: &TeamKey, rev: &RevisionRow) -> Result<Summary, ApiError> {
    let row = revision_place_row(&rev.review_id, &rev.id);
    open_json(key, &Place { column: "revisions.summary", team: &rev.team_id, row: &row }, &rev.summary_sealed)
}

fn review_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no review {id} in this team"))
}

/// A review comment naming a review the team does not have (absent, or another team's: the
/// same answer).
pub(super) fn missing_review_ref(id: &str) -> ApiError {
    ApiError::invalid("review.review", format!("review.review: no review {id} in this team"))
}

fn closed(id: &str) -> ApiError {
    ApiError::Conflict(format!("review {id} is closed: reopen it before sending a new revision"))
}

impl Service {
    pub(super) fn open_review(&self, key: &TeamKey, r: &ReviewRecord) -> Result<api::Review, ApiError> {
        let v = &r.review;
        let team = v.team_id.as_str();
        let place = |column| Place { column, team, row: &v.id };
        let name = |sealed: &Option<Vec<u8>>, member: &str| -> Result<String, ApiError> {
            match sealed {
                Some(s) => Ok(key.open_string(&Place { column: "members.name", team, row: member }, s)?),
                None => Ok(REMOVED_MEMBER.to_string()),
            }
        };
        let reviewers = r
            .reviewers
            .iter()
            .map(|w| {
                Ok(api::Reviewer {
                    member_id: w.member_id.clone(),
                    name: name(&w.name_sealed, &w.member_id)?,
                    verdict: w.verdict.clone(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let revisions = r
            .revisions
            .iter()
            .map(|rev| {
                let s = open_summary(key, rev)?;
                Ok(api::RevisionSummary {
                    id: rev.id.clone(),
                    number: rev.number,
                    base: s.base,
                    base_note: s.base_note,
                    head: s.head,
                    files: s.files,
                    created: rev.created,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(api::Review {
            id: v.id.clone(),
            repo: key.open_string(&Place { column: "repos.key", team, row: &v.repo_id }, &r.repo_key_sealed)?,
            title: key.open_string(&place("reviews.title"), &v.title_sealed)?,
            description: key.open_string(&place("reviews.description"), &v.description_sealed)?,
            author: name(&r.author_name_sealed, &v.author_id)?,
            author_id: Some(v.author_id.clone()),
            status: review_status(v.closed, reviewers.iter().map(|w| w.verdict.as_str())).to_string(),
            reviewers,
            revisions,
            created: v.created,
            updated: v.updated,
        })
    }

    /// The review's rows, within the caller's team only.
    async fn review_record(&self, caller: &Caller, id: &str) -> Result<ReviewRecord, ApiError> {
        let filter = ReviewFilter { ids: Some(vec![id.to_string()]), ..ReviewFilter::default() };
        self.store.reviews(&caller.team_id, filter).await?.pop().ok_or_else(|| review_not_found(id))
    }

    /// `GET /reviews`: newest first; `open_only` leaves closed ones out.
    pub async fn reviews(
        &self,
        caller: &Caller,
        whose: ReviewsFor,
        open_only: bool,
    ) -> Result<Vec<api::Review>, ApiError> {
        let me = || Some(caller.member_id.clone());
        let filter = ReviewFilter {
            ids: None,
            author_id: if whose == ReviewsFor::Mine { me() } else { None },
            reviewer_id: if whose == ReviewsFor::Me { me() } else { None },
            open_only,
        };
        let key = self.team_key(&caller.team_id).await?;
        self.store.reviews(&caller.team_id, filter).await?.iter().map(|r| self.open_review(&key, r)).collect()
    }

    pub async fn review(&self, caller: &Caller, id: &str) -> Result<api::Review, ApiError> {
        let record = self.review_record(caller, id).await?;
        let key = self.team_key(&caller.team_id).await?;
        self.open_review(&key, &record)
    }

    /// `GET /reviews/{id}/revisions/{number}`: the revision with its patches.
    pub async fn revision(&self, caller: &Caller, id: &str, number: u32) -> Result<api::Revision, ApiError> {
        let (row, files_sealed) = self
            .store
            .revision(&caller.team_id, id, number)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no revision {number} of review {id} in this team")))?;
        let key = self.team_key(&caller.team_id).await?;
        tokio::task::spawn_blocking(move || {
            let summary = open_summary(&key, &row)?;
            let place_row = revision_place_row(&row.review_id, &row.id);
            let place = Place { column: "revisions.files", team: &row.team_id, row: &place_row };
            let files: Vec<api::FilePatch> = open_json(&key, &place, &files_sealed)?;
            Ok(api::Revision {
                id: row.id.clone(),
                number: row.number,
                base: summary.base,
                base_note: summary.base_note,
                head: summary.head,
                files,
                created: row.created,
            })
        })
        .await
        .map_err(|e| ApiError::Internal(format!("opening a revision failed: {e}")))?
    }

    /// The review a replayed request's record points at, as it is now.
    async fn replay_review(&self, caller: &Caller, done: IdempotencyRow) -> Result<Answer<api::Review>, ApiError> {
        let id = done.resource_id.unwrap_or_default();
        match self.review(caller, &id).await {
            Ok(r) => Ok(answer(done.status, r)),
            Err(ApiError::NotFound(_)) => {
                Err(ApiError::NotFound(format!("review {id} was changed by this request, then deleted")))
            }
            Err(e) => Err(e),
        }
    }

    /// Reviewers must be members of the team, and not the review's author.
    async fn check_reviewers(&self, caller: &Caller, ids: &[String], author_id: &str) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Ok(());
        }
        let members = self.store.members(&caller.team_id).await?;
        for (i, id) in ids.iter().enumerate() {
            let field = format!("reviewers[{i}]");
            if *id == author_id {
                return Err(ApiError::invalid(
                    &field,
                    format!("{field} is the review's author: one does not review one's own request"),
                ));
            }
            if !members.iter().any(|m| m.id == *id) {
                return Err(ApiError::invalid(&field, format!("{field}: no member {id} in this team")));
            }
        }
        Ok(())
    }

    /// `POST /reviews`: a feedback request by the caller, with its first revision.
    pub async fn create_review(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        new: api::NewReview,
    ) -> Result<Answer<api::Review>, ApiError> {
        if let Some(done) = self.replayed(caller, idem).await? {
            return self.replay_review(caller, done).await;
        }
        validate::new_review(&new)?;
        self.check_reviewers(caller, &new.reviewers, &caller.member_id).await?;
        let api::NewReview { id, repo, title, description, reviewers, revision } = new;
        let key = self.team_key(&caller.team_id).await?;
        let team = &caller.team_id;
        let repo = self.repo_row(&key, team, &api::RepoIdentity { key: repo, roots: vec![] }, now_ms());
        let place = |column| Place { column, team, row: &id };
        let review = ReviewRow {
            team_id: team.clone(),
            id: id.clone(),
            repo_id: repo.id.clone(),
            author_id: caller.member_id.clone(),
            title_sealed: key.seal_str(&place("reviews.title"), &title),
            description_sealed: key.seal_str(&place("reviews.description"), &description),
            closed: false,
            created: revision.created,
            updated: revision.created,
        };
        let revision_id = revision.id.clone();
        let revision = seal_revision_apart(key.clone(), team.clone(), id.clone(), revision).await?;
        let mut batch = self.batch(vec![Write::InsertRepo(repo), Write::InsertReview { review, reviewers, revision }]);
        batch.events.push(event(team, Subject::Review, &id, false));
        batch.idempotency = Self::idempotency_row(caller, idem, 201, Some(&id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::Exists => {
                ApiError::Conflict(format!("review {id} exists already, or another review has revision {revision_id}"))
            }
            e => e.into(),
        })?;
        if let Some(record) = done {
            return self.replay_review(caller, record).await;
        }
        Ok(answer(201, self.review(caller, &id).await?))
    }

    /// `POST /reviews/{id}/revisions`: the author's next revision; every verdict starts over.
    pub async fn add_revision(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        id: &str,
        new: api::NewRevision,
    ) -> Result<Answer<api::Review>, ApiError> {
        if let Some(done) = self.replayed(caller, idem).await? {
            return self.replay_review(caller, done).await;
        }
        let record = self.review_record(caller, id).await?;
        if record.review.author_id != caller.member_id {
            return Err(ApiError::Forbidden("only its author can send a new revision of a review".into()));
        }
        validate::revision("", &new)?;
        if record.review.closed {
            return Err(closed(id));
        }
        let key = self.team_key(&caller.team_id).await?;
        let team = &caller.team_id;
        let revision_id = new.id.clone();
        let revision = seal_revision_apart(key, team.clone(), id.to_string(), new).await?;
        let mut batch =
            self.batch(vec![Write::AddRevision { team_id: team.clone(), review_id: id.to_string(), revision }]);
        batch.events.push(event(team, Subject::Review, id, false));
        batch.idempotency = Self::idempotency_row(caller, idem, 201, Some(id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => review_not_found(id),
            DbError::Closed => closed(id),
            DbError::Exists => ApiError::Conflict(format!("revision {revision_id} exists already")),
            e => e.into(),
        })?;
        if let Some(record) = done {
            return self.replay_review(caller, record).await;
        }
        Ok(answer(201, self.review(caller, id).await?))
    }

    /// `POST /reviews/{id}/verdict`: any member but the author; one not listed becomes a
    /// reviewer. Allowed on a closed review too (it stays closed): a verdict written offline
    /// still lands.
    pub async fn set_verdict(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        id: &str,
        verdict: api::Verdict,
    ) -> Result<Answer<api::Review>, ApiError> {
        if let Some(done) = self.replayed(caller, idem).await? {
            return self.replay_review(caller, done).await;
        }
        let record = self.review_record(caller, id).await?;
        validate::verdict(&verdict)?;
        if record.review.author_id == caller.member_id {
            return Err(ApiError::Forbidden(
                "the author of a review cannot give it a verdict; its reviewers do".into(),
            ));
        }
        let team = &caller.team_id;
        let mut batch = self.batch(vec![Write::SetVerdict {
            team_id: team.clone(),
            review_id: id.to_string(),
            member_id: caller.member_id.clone(),
            verdict: verdict.verdict,
            updated: now_ms(),
        }]);
        batch.events.push(event(team, Subject::Review, id, false));
        batch.idempotency = Self::idempotency_row(caller, idem, 200, Some(id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => review_not_found(id),
            e => e.into(),
        })?;
        if let Some(record) = done {
            return self.replay_review(caller, record).await;
        }
        Ok(answer(200, self.review(caller, id).await?))
    }

    /// `PATCH /reviews/{id}`: its author or an admin.
    pub async fn patch_review(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        id: &str,
        patch: api::ReviewPatch,
    ) -> Result<Answer<api::Review>, ApiError> {
        if let Some(done) = self.replayed(caller, idem).await? {
            return self.replay_review(caller, done).await;
        }
        let record = self.review_record(caller, id).await?;
        if record.review.author_id != caller.member_id && !caller.is_admin() {
            return Err(ApiError::Forbidden("only its author or an admin can change a review".into()));
        }
        validate::review_patch(&patch)?;
        if let Some(reviewers) = &patch.reviewers {
            self.check_reviewers(caller, reviewers, &record.review.author_id).await?;
        }
        let key = self.team_key(&caller.team_id).await?;
        if patch == api::ReviewPatch::default() {
            return Ok(answer(200, self.open_review(&key, &record)?));
        }
        let team = &caller.team_id;
        let place = |column| Place { column, team, row: id };
        let mut batch = self.batch(vec![Write::UpdateReview {
            team_id: team.clone(),
            id: id.to_string(),
            title_sealed: patch.title.as_deref().map(|t| key.seal_str(&place("reviews.title"), t)),
            description_sealed: patch.description.as_deref().map(|d| key.seal_str(&place("reviews.description"), d)),
            closed: patch.status.as_deref().map(|s| s == "closed"),
            reviewers: patch.reviewers,
            updated: now_ms(),
        }]);
        batch.events.push(event(team, Subject::Review, id, false));
        batch.idempotency = Self::idempotency_row(caller, idem, 200, Some(id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => review_not_found(id),
            e => e.into(),
        })?;
        if let Some(record) = done {
            return self.replay_review(caller, record).await;
        }
        Ok(answer(200, self.review(caller, id).await?))
    }

    /// `DELETE /reviews/{id}`: its author or an admin. The review, its revisions, its verdicts
    /// and its comments (codemarks linked to it, with their replies) leave the live database in
    /// one transaction; the feed says so for each.
    pub async fn delete_review(&self, caller: &Caller, idem: Option<&Idempotency>, id: &str) -> Result<(), ApiError> {
        if self.replayed(caller, idem).await?.is_some() {
            return Ok(());
        }
        let record = self.review_record(caller, id).await?;
        if record.review.author_id != caller.member_id && !caller.is_admin() {
            return Err(ApiError::Forbidden("only its author or an admin can delete a review".into()));
        }
        let team = &caller.team_id;
        // A comment added between reading the comments and deleting them would be deleted with
        // no event of its own: the write refuses then, and the comments are read again.
        for _ in 0..3 {
            let comments = self.store.review_comments(team, id).await?;
            let mut batch = self.batch(vec![Write::DeleteReview {
                team_id: team.clone(),
                id: id.to_string(),
                comments: comments.clone(),
            }]);
            batch.events.extend(comments.iter().map(|c| event(team, Subject::Codemark, c, true)));
            batch.events.push(event(team, Subject::Review, id, true));
            batch.audit.push(
                audit::Draft::new(team, &caller.member_id, Action::ReviewDeleted, Some(id))
                    .detail(format!("comments={}", comments.len())),
            );
            batch.idempotency = Self::idempotency_row(caller, idem, 204, Some(id));
            match self.commit(caller, idem, batch).await {
                Ok(_) => return Ok(()),
                Err(DbError::Changed) => continue,
                Err(DbError::NotFound) => return Err(review_not_found(id)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(format!("review {id} kept getting new comments while being deleted; try again")))
    }

    /// A review comment's link: the review is the team's (else the same answer as for one that
    /// does not exist), the revision is one of its, and the path is one of that revision's files
    /// on that side.
    pub(super) async fn check_review_ref(&self, caller: &Caller, link: &api::ReviewRef) -> Result<(), ApiError> {
        let record = match self.review_record(caller, &link.review).await {
            Ok(r) => r,
            Err(ApiError::NotFound(_)) => return Err(missing_review_ref(&link.review)),
            Err(e) => return Err(e),
        };
        let Some(rev) = record.revisions.iter().find(|r| r.number == link.revision) else {
            let latest = record.revisions.last().map_or(0, |r| r.number);
            return Err(ApiError::invalid(
                "review.revision",
                format!("review.revision is {}; review {} has revisions 1 to {latest}", link.revision, link.review),
            ));
        };
        let key = self.team_key(&caller.team_id).await?;
        let summary = open_summary(&key, rev)?;
        let (side, found) = match link.side {
            api::Side::Old => ("old", summary.files.iter().any(|f| f.old_path.as_deref() == Some(link.path.as_str()))),
            api::Side::New => ("new", summary.files.iter().any(|f| f.new_path.as_deref() == Some(link.path.as_str()))),
        };
        if !found {
            return Err(ApiError::invalid(
                "review.path",
                format!(
                    "review.path: revision {} of review {} has no file `{}` on its {side} side",
                    rev.number, link.review, link.path
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_from_the_hunks_including_lines_that_look_like_headers() {
        let patch = "@@ -1,4 +1,4 @@\n context\n-old\n+new\n+++ not a header: an added `++ x`\n--- removed `-- y`\n\\ No newline at end of file\n";
        assert_eq!(line_counts(patch), (2, 2));
        assert_eq!(line_counts(""), (0, 0));
        assert_eq!(line_counts("@@ -0,0 +1,2 @@\r\n+a\r\n+\r\n"), (2, 0));
    }

    #[test]
    fn a_request_for_changes_outweighs_approvals_and_closing_outweighs_both() {
        assert_eq!(review_status(false, []), "open");
        assert_eq!(review_status(false, ["pending", "pending"]), "open");
        assert_eq!(review_status(false, ["pending", "approved"]), "approved");
        assert_eq!(review_status(false, ["approved", "changes_requested"]), "changes_requested");
        assert_eq!(review_status(true, ["approved", "changes_requested"]), "closed");
    }
}
