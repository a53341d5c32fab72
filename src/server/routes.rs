//! The routes: one table of (method, path, handler) that builds the router and that the OpenAPI
//! document is checked against, and the handlers, which only translate between HTTP and
//! [`Service`](super::service::Service) calls.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::Shared;
use super::error::ApiError;
use super::extract::{Authed, Idem, Json, Path, Query, RevisionJson, cursor, page_limit};
use super::metrics::ListenerGuard;
use super::service::{Answer, Caller, ReviewsFor};
use crate::api::{self, limits};

/// Events in one `GET /changes` page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 500;
/// How often an idle event stream sends a comment, so proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One route: what it answers and who may call it (for the OpenAPI document).
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub auth: Auth,
    pub handler: MethodRouter<Arc<Shared>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No token.
    Public,
    /// A token of any member.
    Member,
    /// A token of an admin.
    Admin,
}

fn route<H, T>(method: Method, path: &'static str, auth: Auth, handler: H) -> Route
where
    H: Handler<T, Arc<Shared>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    Route { method, path, auth, handler: on(filter, handler) }
}

/// Every route the server answers.
pub fn table() -> Vec<Route> {
    use Auth::*;
    vec![
        route(Method::GET, "/healthz", Public, healthz),
        route(Method::GET, "/metrics", Public, metrics),
        route(Method::GET, "/api/v1/openapi.json", Public, openapi),
        route(Method::POST, "/api/v1/login", Public, login),
        route(Method::GET, "/api/v1/me", Member, me),
        route(Method::GET, "/api/v1/team", Member, team),
        route(Method::DELETE, "/api/v1/team", Admin, delete_team),
        route(Method::POST, "/api/v1/invites", Admin, create_invite),
        route(Method::GET, "/api/v1/members", Member, members),
        route(Method::PATCH, "/api/v1/members/{id}", Admin, patch_member),
        route(Method::DELETE, "/api/v1/members/{id}", Member, delete_member),
        route(Method::GET, "/api/v1/tokens", Member, tokens),
        route(Method::POST, "/api/v1/tokens", Member, create_token),
        route(Method::DELETE, "/api/v1/tokens/{id}", Member, revoke_token),
        route(Method::GET, "/api/v1/repos", Member, repos),
        route(Method::PUT, "/api/v1/repos", Member, put_repo),
        route(Method::GET, "/api/v1/codemarks", Member, codemarks),
        route(Method::POST, "/api/v1/codemarks", Member, create_codemark),
        route(Method::GET, "/api/v1/codemarks/{id}", Member, codemark),
        route(Method::PATCH, "/api/v1/codemarks/{id}", Member, patch_codemark),
        route(Method::DELETE, "/api/v1/codemarks/{id}", Member, delete_codemark),
        route(Method::POST, "/api/v1/codemarks/{id}/replies", Member, add_reply),
        route(Method::DELETE, "/api/v1/codemarks/{id}/replies/{reply_id}", Member, delete_reply),
        route(Method::GET, "/api/v1/reviews", Member, reviews),
        route(Method::POST, "/api/v1/reviews", Member, create_review),
        route(Method::GET, "/api/v1/reviews/{id}", Member, review),
        route(Method::PATCH, "/api/v1/reviews/{id}", Member, patch_review),
        route(Method::DELETE, "/api/v1/reviews/{id}", Member, delete_review),
        route(Method::POST, "/api/v1/reviews/{id}/revisions", Member, add_revision),
        route(Method::GET, "/api/v1/reviews/{id}/revisions/{number}", Member, revision),
        route(Method::POST, "/api/v1/reviews/{id}/verdict", Member, set_verdict),
        route(Method::GET, "/api/v1/changes", Member, changes),
        route(Method::GET, "/api/v1/events", Member, events),
        route(Method::GET, "/api/v1/export", Member, export),
        route(Method::GET, "/api/v1/audit", Admin, audit),
    ]
}

type Result<T> = std::result::Result<T, ApiError>;

fn json<T: Serialize>(a: Answer<T>) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    (status, axum::Json(a.body)).into_response()
}

fn ok<T: Serialize>(body: T) -> Response {
    axum::Json(body).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// 200 while the database answers; 503 with the reason while it does not (a load balancer takes
/// the process out of rotation, and puts it back once the pool reconnects).
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.service.health().await {
        Ok(()) => ok(serde_json::json!({"status": "ok"})),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            axum::Json(serde_json::json!({"status": "unavailable", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let stats = shared.service.stats().await.ok();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.metrics.render(stats)).into_response()
}

async fn openapi() -> Response {
    ok(super::openapi::document())
}

async fn login(State(shared): State<Arc<Shared>>, Json(body): Json<api::Login>) -> Result<Response> {
    Ok(json(shared.service.login(body).await?))
}

async fn me(State(shared): State<Arc<Shared>>, Authed(caller): Authed) -> Result<Response> {
    Ok(ok(shared.service.me(&caller).await?))
}

async fn team(State(shared): State<Arc<Shared>>, Authed(caller): Authed) -> Result<Response> {
    Ok(ok(shared.service.team(&caller).await?))
}

async fn delete_team(State(shared): State<Arc<Shared>>, Authed(caller): Authed) -> Result<Response> {
    shared.service.delete_team(&caller).await?;
    Ok(no_content())
}

async fn create_invite(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Json(body): Json<api::NewInvite>,
) -> Result<Response> {
    Ok(json(shared.service.create_invite(&caller, idem.as_ref(), body).await?))
}

async fn members(State(shared): State<Arc<Shared>>, Authed(caller): Authed) -> Result<Response> {
    Ok(ok(shared.service.members(&caller).await?))
}

async fn patch_member(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
    Json(body): Json<api::MemberPatch>,
) -> Result<Response> {
    Ok(json(shared.service.set_role(&caller, idem.as_ref(), &id, body).await?))
}

async fn delete_member(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
) -> Result<Response> {
    shared.service.remove_member(&caller, idem.as_ref(), &id).await?;
    Ok(no_content())
}

async fn tokens(State(shared): State<Arc<Shared>>, Authed(caller): Authed) -> Result<Response> {
    Ok(ok(shared.service.tokens(&caller).await?))
}

async fn create_token(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Json(body): Json<api::NewToken>,
) -> Result<Response> {
    Ok(json(shared.service.create_token(&caller, idem.as_ref(), body).await?))
}

async fn revoke_token(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
) -> Result<Response> {
    shared.service.revoke_token(&caller, idem.as_ref(), &id).await?;
    Ok(no_content())
}

async fn repos(State(shared): State<Arc<Shared>>, Authed(caller): Authed) -> Result<Response> {
    Ok(ok(shared.service.repos(&caller).await?))
}

async fn put_repo(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Json(body): Json<api::RepoIdentity>,
) -> Result<Response> {
    Ok(ok(shared.service.put_repo(&caller, body).await?))
}

#[derive(Deserialize)]
struct RepoQuery {
    repo: Option<String>,
}

async fn codemarks(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Query(q): Query<RepoQuery>,
) -> Result<Response> {
    if let Some(r) = &q.repo {
        super::validate::max_bytes("repo", r, limits::MAX_NAME_BYTES)?;
    }
    Ok(ok(shared.service.codemarks(&caller, q.repo.as_deref()).await?))
}

async fn create_codemark(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Json(body): Json<api::NewCodemark>,
) -> Result<Response> {
    Ok(json(shared.service.create_codemark(&caller, idem.as_ref(), body).await?))
}

async fn codemark(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(ok(shared.service.codemark(&caller, &id).await?))
}

async fn patch_codemark(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
    Json(body): Json<api::CodemarkPatch>,
) -> Result<Response> {
    Ok(json(shared.service.patch_codemark(&caller, idem.as_ref(), &id, body).await?))
}

async fn delete_codemark(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
) -> Result<Response> {
    shared.service.delete_codemark(&caller, idem.as_ref(), &id).await?;
    Ok(no_content())
}

async fn add_reply(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
    Json(body): Json<api::NewReply>,
) -> Result<Response> {
    Ok(json(shared.service.add_reply(&caller, idem.as_ref(), &id, body).await?))
}

async fn delete_reply(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path((id, reply_id)): Path<(String, String)>,
) -> Result<Response> {
    shared.service.delete_reply(&caller, idem.as_ref(), &id, &reply_id).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct ReviewsQuery {
    #[serde(rename = "for")]
    whose: Option<String>,
    status: Option<String>,
}

async fn reviews(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Query(q): Query<ReviewsQuery>,
) -> Result<Response> {
    let whose = match q.whose.as_deref() {
        None => ReviewsFor::All,
        Some(w) => ReviewsFor::parse(w)
            .ok_or_else(|| ApiError::bad_request("for", format!("for `{w}` is not one of me, mine, all")))?,
    };
    let open_only = match q.status.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(s) => return Err(ApiError::bad_request("status", format!("status `{s}` is not one of open, all"))),
    };
    Ok(ok(shared.service.reviews(&caller, whose, open_only).await?))
}

async fn create_review(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Json(body): RevisionJson<api::NewReview>,
) -> Result<Response> {
    Ok(json(shared.service.create_review(&caller, idem.as_ref(), body).await?))
}

async fn review(State(shared): State<Arc<Shared>>, Authed(caller): Authed, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(shared.service.review(&caller, &id).await?))
}

async fn patch_review(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
    Json(body): Json<api::ReviewPatch>,
) -> Result<Response> {
    Ok(json(shared.service.patch_review(&caller, idem.as_ref(), &id, body).await?))
}

async fn delete_review(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
) -> Result<Response> {
    shared.service.delete_review(&caller, idem.as_ref(), &id).await?;
    Ok(no_content())
}

async fn add_revision(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
    Json(body): RevisionJson<api::NewRevision>,
) -> Result<Response> {
    Ok(json(shared.service.add_revision(&caller, idem.as_ref(), &id, body).await?))
}

async fn revision(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Path((id, number)): Path<(String, String)>,
) -> Result<Response> {
    let number = number.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::bad_request("number", format!("revision number `{number}` is not a number from 1 up"))
    })?;
    Ok(ok(shared.service.revision(&caller, &id, number).await?))
}

async fn set_verdict(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Idem(idem): Idem,
    Path(id): Path<String>,
    Json(body): Json<api::Verdict>,
) -> Result<Response> {
    Ok(json(shared.service.set_verdict(&caller, idem.as_ref(), &id, body).await?))
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<String>,
}

async fn changes(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    let after = cursor("after", q.after.as_deref())?;
    let limit = page_limit(q.limit.as_deref(), DEFAULT_PAGE)?;
    Ok(ok(shared.service.changes(&caller, after, limit).await?))
}

async fn export(State(shared): State<Arc<Shared>>, Authed(caller): Authed) -> Result<Response> {
    Ok(ok(shared.service.export(&caller).await?))
}

async fn audit(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    let after = cursor("after", q.after.as_deref())?;
    let limit = page_limit(q.limit.as_deref(), limits::MAX_PAGE)?;
    Ok(ok(shared.service.audit(&caller, after, limit).await?))
}

/// `GET /events`: the changes feed as Server-Sent Events, from `after` (or `Last-Event-ID`),
/// then live. Ends when the token is revoked, its member removed or the team deleted.
async fn events(
    State(shared): State<Arc<Shared>>,
    Authed(caller): Authed,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().map_err(|_| ApiError::bad_request("Last-Event-ID", "Last-Event-ID is not plain text")))
        .transpose()?;
    let after = match q.after.as_deref() {
        Some(a) => cursor("after", Some(a))?,
        None => cursor("Last-Event-ID", last_event_id)?,
    };
    // Subscribe before the first read, so nothing committed in between is missed.
    let wake = shared.service.notifier().subscribe(&caller.team_id);
    let stream = Listener {
        shared: shared.clone(),
        caller,
        cursor: after,
        pending: VecDeque::new(),
        wake,
        _guard: shared.metrics.listener(),
    }
    .into_stream();
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response())
}

struct Listener {
    shared: Arc<Shared>,
    caller: Caller,
    cursor: i64,
    pending: VecDeque<api::Event>,
    wake: tokio::sync::watch::Receiver<i64>,
    _guard: ListenerGuard,
}

impl Listener {
    fn into_stream(self) -> impl Stream<Item = std::result::Result<SseEvent, Infallible>> {
        futures_util::stream::unfold(self, |mut l| async move {
            let event = l.next().await?;
            let data = serde_json::to_string(&event).expect("events serialize");
            Some((Ok(SseEvent::default().id(event.cursor).event("change").data(data)), l))
        })
    }

    /// The next event, waiting for one; `None` ends the stream.
    async fn next(&mut self) -> Option<api::Event> {
        let mut woken = false;
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            // A wake-up (perhaps while the client was not reading) may mean a revoked token, a
            // removed member or a deleted team: check before reading on.
            let changed = match self.wake.has_changed() {
                Ok(changed) => changed,
                Err(_) => return None, // the team was deleted
            };
            if woken || changed {
                self.wake.borrow_and_update();
                match self.shared.service.check_token(&self.caller.token_hash).await {
                    Ok(caller) => self.caller = caller,
                    Err(_) => return None,
                }
            }
            match self.shared.service.changes(&self.caller, self.cursor, limits::MAX_PAGE).await {
                Ok(page) => {
                    self.cursor = page.cursor.parse().unwrap_or(self.cursor);
                    if !page.events.is_empty() {
                        self.pending.extend(page.events);
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!("an event stream ends: {e}");
                    return None;
                }
            }
            // Nothing new: wait for a commit of the team (or the team's end).
            self.wake.changed().await.ok()?;
            woken = true;
        }
    }
}
