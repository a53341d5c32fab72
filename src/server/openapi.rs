//! The OpenAPI 3 document served at `/api/v1/openapi.json`, built by hand from the route table
//! ([`super::routes::table`]) and a description of each operation, with schemas for the
//! [`crate::api`] shapes. A test checks that every route is described and every described
//! operation is routed.

use axum::http::Method;
use serde_json::{Map, Value, json};

use super::routes::{Auth, table};
use crate::api::limits;

/// What the document says about one operation.
pub struct Operation {
    pub summary: &'static str,
    pub request: Option<&'static str>,
    pub status: u16,
    /// A schema name, `[Name]` for an array of it, or `None` for no body.
    pub response: Option<&'static str>,
}

const fn op(
    summary: &'static str,
    request: Option<&'static str>,
    status: u16,
    response: Option<&'static str>,
) -> Operation {
    Operation { summary, request, status, response }
}

/// The description of each route.
pub fn describe(method: &Method, path: &str) -> Option<Operation> {
    let m = method.as_str();
    Some(match (m, path) {
        ("GET", "/healthz") => op(
            "Liveness and storage check: 200, or 503 with a reason while the database does not answer.",
            None,
            200,
            Some("Health"),
        ),
        ("GET", "/metrics") => op("Prometheus text exposition (text/plain).", None, 200, None),
        ("GET", "/api/v1/openapi.json") => op("This document.", None, 200, None),
        ("POST", "/api/v1/login") => op(
            "Redeem a single-use invite code: creates the member and their first token.",
            Some("Login"),
            201,
            Some("Issued"),
        ),
        ("GET", "/api/v1/me") => op("Who the token belongs to.", None, 200, Some("Me")),
        ("GET", "/api/v1/team") => op("The caller's team.", None, 200, Some("Team")),
        ("DELETE", "/api/v1/team") => {
            op("Delete the team: every row of it, and its data key (admin).", None, 204, None)
        }
        ("POST", "/api/v1/invites") => {
            op("Make a single-use, expiring invite (admin).", Some("NewInvite"), 201, Some("Invite"))
        }
        ("GET", "/api/v1/members") => op("The team's members.", None, 200, Some("[Member]")),
        ("PATCH", "/api/v1/members/{id}") => op(
            "Change a member's role (admin); demoting the last admin answers 409.",
            Some("MemberPatch"),
            200,
            Some("Member"),
        ),
        ("DELETE", "/api/v1/members/{id}") => op(
            "Remove a member and revoke their tokens (admin, or a member leaving); the last admin answers 409.",
            None,
            204,
            None,
        ),
        ("GET", "/api/v1/tokens") => op("The caller's tokens (an admin: the team's).", None, 200, Some("[TokenInfo]")),
        ("POST", "/api/v1/tokens") => {
            op("Another token for the caller, shown once.", Some("NewToken"), 201, Some("Issued"))
        }
        ("DELETE", "/api/v1/tokens/{id}") => op("Revoke a token (one's own, or an admin: any).", None, 204, None),
        ("GET", "/api/v1/repos") => op("The team's repositories.", None, 200, Some("[Repository]")),
        ("PUT", "/api/v1/repos") => op(
            "Make a repository known by its identity (idempotent by key).",
            Some("RepoIdentity"),
            200,
            Some("Repository"),
        ),
        ("GET", "/api/v1/codemarks") => {
            op("The team's codemarks, or one repository's (`?repo=KEY`).", None, 200, Some("[Codemark]"))
        }
        ("POST", "/api/v1/codemarks") => {
            op("Create a codemark (its id exists: 409; bookmarks: 422).", Some("NewCodemark"), 201, Some("Codemark"))
        }
        ("GET", "/api/v1/codemarks/{id}") => op("One codemark with its thread.", None, 200, Some("Codemark")),
        ("PATCH", "/api/v1/codemarks/{id}") => op(
            "Change a codemark: status by any member; body, title, anchors by its author or an admin.",
            Some("CodemarkPatch"),
            200,
            Some("Codemark"),
        ),
        ("DELETE", "/api/v1/codemarks/{id}") => op("Delete a codemark (its author or an admin).", None, 204, None),
        ("POST", "/api/v1/codemarks/{id}/replies") => {
            op("Reply to a codemark; answers the codemark.", Some("NewReply"), 201, Some("Codemark"))
        }
        ("DELETE", "/api/v1/codemarks/{id}/replies/{reply_id}") => {
            op("Delete a reply (its author or an admin).", None, 204, None)
        }
        ("GET", "/api/v1/reviews") => op(
            "Feedback requests, newest first: `?for=me` (the caller reviews), `mine` (the caller asked), `all` \
             (default); `?status=open` (default: not closed) or `all`.",
            None,
            200,
            Some("[Review]"),
        ),
        ("POST", "/api/v1/reviews") => op(
            "Ask for feedback: the caller is the author, reviewers are other members; the first revision's patches \
             take at most 16 MiB (413 `revision.files`), the body 20 MiB; an existing id answers 409.",
            Some("NewReview"),
            201,
            Some("Review"),
        ),
        ("GET", "/api/v1/reviews/{id}") => op("One feedback request, its revisions listed.", None, 200, Some("Review")),
        ("PATCH", "/api/v1/reviews/{id}") => op(
            "Change a review (its author or an admin): title, description, status `closed` or `open`, reviewers.",
            Some("ReviewPatch"),
            200,
            Some("Review"),
        ),
        ("DELETE", "/api/v1/reviews/{id}") => {
            op("Delete a review with its revisions, verdicts and comments (its author or an admin).", None, 204, None)
        }
        ("POST", "/api/v1/reviews/{id}/revisions") => op(
            "A new revision (the author only; a closed review answers 409); every verdict goes back to pending. \
             Patches take at most 16 MiB (413 `files`), the body 20 MiB.",
            Some("NewRevision"),
            201,
            Some("Review"),
        ),
        ("GET", "/api/v1/reviews/{id}/revisions/{number}") => {
            op("One revision with its patches.", None, 200, Some("Revision"))
        }
        ("POST", "/api/v1/reviews/{id}/verdict") => op(
            "Approve or ask for changes on the latest revision (any member but the author, who gets 403; a member \
             not listed becomes a reviewer).",
            Some("Verdict"),
            200,
            Some("Review"),
        ),
        ("GET", "/api/v1/changes") => op(
            "What changed after a cursor (`?after=CURSOR&limit=N`), oldest first, each codemark and review as it is \
             now.",
            None,
            200,
            Some("Changes"),
        ),
        ("GET", "/api/v1/events") => op(
            "The changes as Server-Sent Events (text/event-stream): `id:` cursor, `event: change`, `data:` an Event; \
             resumes after `?after=` or `Last-Event-ID`.",
            None,
            200,
            None,
        ),
        ("GET", "/api/v1/export") => {
            op("Everything the server holds about the caller (audited).", None, 200, Some("Export"))
        }
        ("GET", "/api/v1/audit") => {
            op("The team's audit log (`?after=SEQ&limit=N`) (admin).", None, 200, Some("[AuditEntry]"))
        }
        _ => return None,
    })
}

fn schema_ref(name: &str) -> Value {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(inner) => json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{inner}")}}),
        None => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema_ref("ErrorBody")}}})
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in table() {
        let d = describe(&route.method, route.path).expect("every route is described");
        let mut o = Map::new();
        o.insert("summary".into(), json!(d.summary));
        let mut responses = Map::new();
        let ok = match d.response {
            Some(s) => json!({"description": "OK", "content": {"application/json": {"schema": schema_ref(s)}}}),
            None => json!({"description": "OK"}),
        };
        responses.insert(d.status.to_string(), ok);
        if let Some(r) = d.request {
            o.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema_ref(r)}}}),
            );
            responses.insert("400".into(), error("Malformed JSON or a bad parameter; `field` names it"));
            responses.insert("413".into(), error("The body or one field over its limit"));
            responses.insert("422".into(), error("A wrong type, a missing or unknown field, a bad value"));
        }
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut params = params;
        if route.method != Method::GET && route.auth != Auth::Public {
            params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "schema": {"type": "string", "maxLength": 200},
                "description": "Makes a mutation safe to send again: a repeated key answers the first status with the resource as it is now."}));
        }
        match route.path {
            "/api/v1/codemarks" if route.method == Method::GET => {
                params.push(json!({"name": "repo", "in": "query", "schema": {"type": "string"}}));
            }
            "/api/v1/reviews" if route.method == Method::GET => {
                params.push(json!({"name": "for", "in": "query",
                    "schema": {"type": "string", "enum": ["me", "mine", "all"], "default": "all"}}));
                params.push(json!({"name": "status", "in": "query",
                    "schema": {"type": "string", "enum": ["open", "all"], "default": "open"}}));
            }
            "/api/v1/changes" | "/api/v1/events" | "/api/v1/audit" => {
                params.push(json!({"name": "after", "in": "query", "schema": {"type": "string"}}));
                if route.path != "/api/v1/events" {
                    params.push(json!({"name": "limit", "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": limits::MAX_PAGE}}));
                } else {
                    params.push(json!({"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}}));
                }
            }
            _ => {}
        }
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        match route.auth {
            Auth::Public => {
                o.insert("security".into(), json!([]));
            }
            Auth::Member | Auth::Admin => {
                responses.insert("401".into(), error("No token, or a malformed, unknown or revoked one"));
                responses.insert("429".into(), error("Over the token's rate limit; see Retry-After"));
                if route.path.contains('{') || route.auth == Auth::Admin || route.method != Method::GET {
                    responses.insert("403".into(), error("An admin action, or another member's content"));
                    responses.insert("404".into(), error("Absent, or another team's (the same answer)"));
                    responses.insert("409".into(), error("Conflict: an id taken, the last admin, a reused key"));
                }
            }
        }
        if route.path == "/api/v1/login" {
            responses.insert("401".into(), error("Unknown, used or expired invite code"));
        }
        o.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| Value::Object(Map::new()));
        entry.as_object_mut().expect("an object").insert(route.method.as_str().to_lowercase(), Value::Object(o));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "marginalia sync API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Teams, members, tokens, repositories, codemarks and their replies, feedback requests \
                (reviews) with their revisions, and the changes feed. \
                JSON in and out; every route but login, health, metrics and this document needs `Authorization: Bearer <token>`."
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        }
    })
}

fn string() -> Value {
    json!({"type": "string"})
}
fn nullable_string() -> Value {
    json!({"type": "string", "nullable": true})
}
fn int() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn max(n: usize) -> Value {
    json!({"type": "string", "maxLength": n})
}
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn schemas() -> Value {
    let mut all = team_and_codemark_schemas();
    let Value::Object(reviews) = review_schemas() else { unreachable!("an object") };
    all.as_object_mut().expect("an object").extend(reviews);
    all
}

fn team_and_codemark_schemas() -> Value {
    let role = json!({"type": "string", "enum": ["admin", "member"]});
    let kind = json!({"type": "string", "enum": ["comment", "question", "issue"]});
    let status = json!({"type": "string", "enum": ["open", "resolved"]});
    json!({
        "Health": object(&["status"], json!({"status": string(), "reason": string()})),
        "Login": object(&["invite", "name"], json!({"invite": string(), "name": max(limits::MAX_NAME_BYTES),
            "email": nullable_string(), "token_label": nullable_string()})),
        "Issued": object(&["token", "info", "team", "member"], json!({"token": string(),
            "info": schema_ref("TokenInfo"), "team": schema_ref("Team"), "member": schema_ref("Member")})),
        "Team": object(&["id", "name", "created"], json!({"id": string(), "name": string(), "created": int()})),
        "Member": object(&["id", "name", "role", "joined"], json!({"id": string(), "name": string(),
            "email": nullable_string(), "role": role, "joined": int()})),
        "Me": object(&["team", "member", "token"], json!({"team": schema_ref("Team"),
            "member": schema_ref("Member"), "token": schema_ref("TokenInfo")})),
        "NewInvite": object(&["role"], json!({"role": role,
            "ttl_hours": {"type": "integer", "minimum": 1, "maximum": 720, "nullable": true}})),
        "Invite": object(&["code", "role", "expires"], json!({"code": string(), "role": role, "expires": int()})),
        "MemberPatch": object(&["role"], json!({"role": role})),
        "NewToken": object(&["label"], json!({"label": max(limits::MAX_NAME_BYTES)})),
        "TokenInfo": object(&["id", "member_id", "label", "created"], json!({"id": string(), "member_id": string(),
            "label": string(), "created": int(), "last_used": {"type": "integer", "nullable": true},
            "revoked": {"type": "integer", "nullable": true}})),
        "RepoIdentity": object(&["key"], json!({"key": max(limits::MAX_NAME_BYTES),
            "roots": {"type": "array", "items": string(), "maxItems": 16}})),
        "Repository": object(&["id", "key", "roots", "created"], json!({"id": string(), "key": string(),
            "roots": {"type": "array", "items": string()}, "created": int()})),
        "Anchor": object(&["id", "commit", "path", "start", "end"], json!({"id": string(),
            "commit": string(), "path": max(limits::MAX_NAME_BYTES),
            "start": {"type": "integer", "minimum": 1}, "end": {"type": "integer", "minimum": 1},
            "text": {"type": "string", "nullable": true, "maxLength": limits::MAX_SNIPPET_BYTES},
            "before": {"type": "array", "items": string()}, "after": {"type": "array", "items": string()},
            "pending": {"type": "boolean"}})),
        "Reply": object(&["id", "body", "created"], json!({"id": string(), "author": string(),
            "author_id": nullable_string(), "body": max(limits::MAX_BODY_BYTES), "created": int()})),
        "Codemark": object(&["id", "repo", "kind", "body", "author", "status", "anchors", "replies", "created", "updated"],
            json!({"id": string(), "repo": string(), "kind": kind, "title": nullable_string(), "body": string(),
            "author": string(), "author_id": nullable_string(), "status": status,
            "anchors": {"type": "array", "items": schema_ref("Anchor")},
            "replies": {"type": "array", "items": schema_ref("Reply")}, "created": int(), "updated": int(),
            "review": schema_ref("ReviewRef")})),
        "NewCodemark": object(&["id", "repo", "kind", "body", "anchors", "created"], json!({"id": string(),
            "repo": max(limits::MAX_NAME_BYTES), "kind": kind,
            "title": {"type": "string", "nullable": true, "maxLength": limits::MAX_TITLE_BYTES},
            "body": max(limits::MAX_BODY_BYTES), "status": status,
            "anchors": {"type": "array", "items": schema_ref("Anchor"), "maxItems": limits::MAX_ANCHORS},
            "created": int(), "review": schema_ref("ReviewRef")})),
        "CodemarkPatch": object(&[], json!({"body": max(limits::MAX_BODY_BYTES),
            "title": {"type": "string", "nullable": true, "maxLength": limits::MAX_TITLE_BYTES}, "status": status,
            "anchors": {"type": "array", "items": schema_ref("Anchor"), "maxItems": limits::MAX_ANCHORS}})),
        "NewReply": object(&["id", "body", "created"], json!({"id": string(), "body": max(limits::MAX_BODY_BYTES),
            "created": int()})),
        "Event": {"type": "object", "required": ["cursor", "type"], "properties": {"cursor": string(),
            "type": {"type": "string", "enum": ["codemark", "codemark_deleted", "review", "review_deleted"]},
            "codemark": schema_ref("Codemark"), "review": schema_ref("Review"), "id": string()}},
        "ExportedReply": object(&["codemark_id", "reply"], json!({"codemark_id": string(), "reply": schema_ref("Reply")})),
        "Export": object(&["exported", "team", "member", "tokens", "codemarks", "replies"], json!({"exported": int(),
            "team": schema_ref("Team"), "member": schema_ref("Member"),
            "tokens": {"type": "array", "items": schema_ref("TokenInfo")},
            "codemarks": {"type": "array", "items": schema_ref("Codemark")},
            "replies": {"type": "array", "items": schema_ref("ExportedReply")},
            "reviews": {"type": "array", "items": schema_ref("Review")}})),
        "AuditEntry": object(&["seq", "time", "actor_id", "action", "detail"], json!({"seq": int(), "time": int(),
            "actor_id": string(), "action": string(), "target_id": nullable_string(), "detail": string()})),
        "ErrorBody": object(&["error"], json!({"error": object(&["code", "message"], json!({
            "code": {"type": "string", "enum": ["unauthorized", "forbidden", "not_found", "bad_request", "conflict",
                "too_large", "rate_limited", "internal", "unavailable"]},
            "message": string(), "field": string()}))})),
    })
}

/// The feedback requests' shapes.
fn review_schemas() -> Value {
    let side = json!({"type": "string", "enum": ["old", "new"]});
    let mode = json!({"type": "string", "enum": ["100644", "100755", "120000", "160000"], "nullable": true});
    let verdict = json!({"type": "string", "enum": ["pending", "approved", "changes_requested"]});
    let review_status = json!({"type": "string", "enum": ["open", "approved", "changes_requested", "closed"]});
    let array = |name: &str| json!({"type": "array", "items": schema_ref(name)});
    json!({
        "ReviewRef": object(&["review", "revision", "path", "side"], json!({"review": string(),
            "revision": {"type": "integer", "minimum": 1}, "path": max(limits::MAX_NAME_BYTES), "side": side})),
        "FilePatch": object(&[], json!({"old_path": nullable_string(), "new_path": nullable_string(),
            "old_mode": mode, "new_mode": mode, "old_blob": nullable_string(), "new_blob": nullable_string(),
            "binary": {"type": "boolean"}, "patch": {"type": "string", "nullable": true,
                "description": "Unified diff hunks without file headers; all of a revision's patches together take at most MAX_REVISION_BYTES"}})),
        "NewRevision": object(&["id", "base", "files", "created"], json!({"id": string(), "base": string(),
            "base_note": max(limits::MAX_NAME_BYTES), "head": nullable_string(),
            "files": {"type": "array", "items": schema_ref("FilePatch"), "minItems": 1,
                "maxItems": limits::MAX_REVISION_FILES},
            "created": int()})),
        "NewReview": object(&["id", "repo", "title", "revision"], json!({"id": string(),
            "repo": max(limits::MAX_NAME_BYTES), "title": max(limits::MAX_TITLE_BYTES),
            "description": max(limits::MAX_BODY_BYTES), "reviewers": {"type": "array", "items": string()},
            "revision": schema_ref("NewRevision")})),
        "ReviewPatch": object(&[], json!({"title": max(limits::MAX_TITLE_BYTES),
            "description": max(limits::MAX_BODY_BYTES), "status": {"type": "string", "enum": ["open", "closed"]},
            "reviewers": {"type": "array", "items": string()}})),
        "Verdict": object(&["verdict"], json!({"verdict": {"type": "string",
            "enum": ["approved", "changes_requested"]}})),
        "FileSummary": object(&["binary", "added", "removed"], json!({"old_path": nullable_string(),
            "new_path": nullable_string(), "binary": {"type": "boolean"}, "added": int(), "removed": int()})),
        "RevisionSummary": object(&["id", "number", "base", "base_note", "files", "created"], json!({"id": string(),
            "number": int(), "base": string(), "base_note": string(), "head": nullable_string(),
            "files": array("FileSummary"), "created": int()})),
        "Revision": object(&["id", "number", "base", "base_note", "files", "created"], json!({"id": string(),
            "number": int(), "base": string(), "base_note": string(), "head": nullable_string(),
            "files": array("FilePatch"), "created": int()})),
        "Reviewer": object(&["member_id", "name", "verdict"], json!({"member_id": string(), "name": string(),
            "verdict": verdict})),
        "Review": object(&["id", "repo", "title", "description", "author", "status", "reviewers", "revisions",
            "created", "updated"], json!({"id": string(), "repo": string(), "title": string(),
            "description": string(), "author": string(), "author_id": nullable_string(), "status": review_status,
            "reviewers": array("Reviewer"), "revisions": array("RevisionSummary"), "created": int(),
            "updated": int()})),
        "Changes": object(&["events", "cursor", "more"], json!({"events": {"type": "array", "items": schema_ref("Event")},
            "cursor": string(), "more": {"type": "boolean"}})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_and_every_schema_referenced_exists() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "schema {name} is referenced but not defined");
        }
        let mut operations = 0;
        for (_, item) in doc["paths"].as_object().unwrap() {
            operations += item.as_object().unwrap().len();
        }
        assert_eq!(operations, table().len());
    }
}
