//! `marginalia check --post`: one summary comment on the pull request, kept up to date.
//!
//! The summary carries a hidden marker ([`MARKER`]). Each run reads the pull request's comments
//! (every page), takes the first one with the marker written by the token's own user (by any
//! user when the token may not say who it is, as GitHub Actions' `GITHUB_TOKEN`), and edits
//! it; with none, it adds one. Nothing touched and no earlier summary: nothing is posted. An
//! earlier summary with nothing touched any more is edited to say so.
//!
//! The pull request's number comes from `--pr`, else from CI's environment ([`pr_from_env`]),
//! else from the branch checked out (the caller asks the provider).

use crate::providers::{Forge, PrComment, ProviderError};

/// The hidden HTML comment that marks marginalia's summary on a pull request.
pub const MARKER: &str = "<!-- marginalia-check -->";

/// The pull request a CI job runs for, and which variable said so: GitHub Actions' event file
/// (`GITHUB_EVENT_PATH`: `pull_request.number`, else `number`) or `GITHUB_REF`
/// (`refs/pull/N/merge`), GitLab's `CI_MERGE_REQUEST_IID`, Bitbucket Pipelines'
/// `BITBUCKET_PR_ID`. `read` reads a file (the event file) and is handed in so this stays pure.
pub fn pr_from_env(
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&str) -> Option<String>,
) -> Option<(u64, String)> {
    let number = |s: &str| s.trim().parse::<u64>().ok().filter(|n| *n > 0);
    if let Some(path) = env("GITHUB_EVENT_PATH").filter(|p| !p.is_empty())
        && let Some(event) = read(&path).and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        let n = ["/pull_request/number", "/number"].iter().find_map(|p| event.pointer(p).and_then(|v| v.as_u64()));
        if let Some(n) = n.filter(|n| *n > 0) {
            return Some((n, "GITHUB_EVENT_PATH (pull_request.number)".into()));
        }
    }
    if let Some(r) = env("GITHUB_REF")
        && let Some(rest) = r.strip_prefix("refs/pull/")
        && let Some(n) = rest.split('/').next().and_then(number)
    {
        return Some((n, "GITHUB_REF".into()));
    }
    for var in ["CI_MERGE_REQUEST_IID", "BITBUCKET_PR_ID"] {
        if let Some(n) = env(var).as_deref().and_then(number) {
            return Some((n, var.into()));
        }
    }
    None
}

/// What `--post` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Posted {
    Created(PrComment),
    /// The earlier summary, edited.
    Updated(PrComment),
    /// The earlier summary already said this; nothing was sent.
    UpToDate(PrComment),
    /// Nothing was posted, and why.
    Skipped(String),
}

/// The summary comment to keep up to date among a pull request's comments: the first carrying
/// [`MARKER`] by `me` (by anyone when `me` is unknown).
pub fn previous<'c>(comments: &'c [PrComment], me: Option<&str>) -> Option<&'c PrComment> {
    comments.iter().find(|c| c.body.contains(MARKER) && (me.is_none() || c.author.as_deref() == me))
}

/// Posts or updates the summary on pull request `pr`. `body(again)` renders it; `again` is
/// true when an earlier summary exists (so an empty report can say "any more"). `touched` says
/// whether there is anything to report at all.
pub async fn post(
    forge: &Forge,
    pr: u64,
    touched: bool,
    body: &dyn Fn(bool) -> String,
    anyway: bool,
) -> Result<Posted, ProviderError> {
    let me = forge.me().await;
    let comments = forge.pr_comments(pr).await?;
    match previous(&comments, me.as_deref()) {
        None if !touched => Ok(Posted::Skipped(format!(
            "nothing to post on {}: the change touches no open discussion, and there is no earlier summary to update",
            forge.subject(Some(pr))
        ))),
        None => Ok(Posted::Created(forge.create_pr_comment(pr, &body(false), anyway).await?)),
        Some(old) => {
            let text = body(true);
            if old.body.trim_end() == text.trim_end() {
                return Ok(Posted::UpToDate(old.clone()));
            }
            Ok(Posted::Updated(forge.edit_pr_comment(pr, &old.id, &text, anyway).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_pull_request_number_comes_from_each_ci() {
        let none = |_: &str| None;
        let event = |p: &str| {
            (p == "/ev.json").then(|| r#"{"action":"opened","number":42,"pull_request":{"number":42}}"#.to_owned())
        };
        assert_eq!(
            pr_from_env(&env_of(&[("GITHUB_EVENT_PATH", "/ev.json")]), &event),
            Some((42, "GITHUB_EVENT_PATH (pull_request.number)".into()))
        );
        // A push event's file has no number: GITHUB_REF is next.
        let push = |_: &str| Some(r#"{"ref":"refs/heads/main"}"#.to_owned());
        assert_eq!(
            pr_from_env(&env_of(&[("GITHUB_EVENT_PATH", "/ev.json"), ("GITHUB_REF", "refs/pull/7/merge")]), &push),
            Some((7, "GITHUB_REF".into()))
        );
        assert_eq!(pr_from_env(&env_of(&[("GITHUB_REF", "refs/heads/main")]), &none), None);
        assert_eq!(
            pr_from_env(&env_of(&[("CI_MERGE_REQUEST_IID", "13")]), &none),
            Some((13, "CI_MERGE_REQUEST_IID".into()))
        );
        assert_eq!(pr_from_env(&env_of(&[("BITBUCKET_PR_ID", "5")]), &none), Some((5, "BITBUCKET_PR_ID".into())));
        assert_eq!(pr_from_env(&env_of(&[("BITBUCKET_PR_ID", "x")]), &none), None);
        assert_eq!(pr_from_env(&none, &none), None);
    }

    #[test]
    fn the_earlier_summary_is_ours_when_we_know_who_we_are() {
        let c = |id: &str, who: &str, body: &str| PrComment {
            id: id.into(),
            author: Some(who.into()),
            body: body.into(),
            url: None,
        };
        let list = vec![
            c("1", "ann", "LGTM"),
            c("2", "other-bot", &format!("{MARKER}\nsomeone else's")),
            c("3", "ci-bot", &format!("{MARKER}\nours")),
            c("4", "ci-bot", &format!("{MARKER}\na second one")),
        ];
        assert_eq!(previous(&list, Some("ci-bot")).map(|c| c.id.as_str()), Some("3"));
        assert_eq!(previous(&list, None).map(|c| c.id.as_str()), Some("2"));
        assert_eq!(previous(&list, Some("ann")), None);
    }
}
