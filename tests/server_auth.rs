//! The authorization matrix: every route of the API against no token, a malformed, an unknown
//! and a revoked token, another team's token, and a member calling admin actions. Each must be
//! refused with the right status and code, and leave the data as it was.

#[macro_use]
#[path = "common/server.rs"]
mod kit;

use axum::http::Method;
use serde_json::{Value, json};

use kit::{Backend, Kit, User, id, new_codemark, new_review, new_revision, review_comment};
use marginalia::api::Role;
use marginalia::server::routes::{Auth, Route, table};

/// Team A's resources that routes with ids point at.
struct Ids {
    member: String,
    token: String,
    codemark: String,
    reply: String,
    review: String,
}

/// The route's path with `ids` filled in, and a body it accepts.
fn concrete(route: &Route, ids: &Ids) -> (String, Option<Value>) {
    let path = route
        .path
        .replace("/members/{id}", &format!("/members/{}", ids.member))
        .replace("/tokens/{id}", &format!("/tokens/{}", ids.token))
        .replace("/codemarks/{id}", &format!("/codemarks/{}", ids.codemark))
        .replace("{reply_id}", &ids.reply)
        .replace("/reviews/{id}", &format!("/reviews/{}", ids.review))
        .replace("{number}", "1");
    let body = match (route.method.as_str(), route.path) {
        ("POST", "/api/v1/login") => Some(json!({"invite": format!("inv_{}", "Z".repeat(43)), "name": "X"})),
        ("POST", "/api/v1/invites") => Some(json!({"role": "member"})),
        ("PATCH", "/api/v1/members/{id}") => Some(json!({"role": "admin"})),
        ("POST", "/api/v1/tokens") => Some(json!({"label": "matrix"})),
        ("PUT", "/api/v1/repos") => Some(json!({"key": "matrix-repo"})),
        ("POST", "/api/v1/codemarks") => Some(new_codemark(&id(), "matrix-repo", "b", "s")),
        ("PATCH", "/api/v1/codemarks/{id}") => Some(json!({"status": "resolved", "body": "changed"})),
        ("POST", "/api/v1/codemarks/{id}/replies") => Some(json!({"id": id(), "body": "r", "created": 1})),
        ("POST", "/api/v1/reviews") => Some(new_review(&id(), "matrix-repo", "matrix review", &[])),
        ("PATCH", "/api/v1/reviews/{id}") => Some(json!({"title": "changed", "status": "closed"})),
        ("POST", "/api/v1/reviews/{id}/revisions") => Some(new_revision(&id(), "@@ -1,1 +1,1 @@\n-a\n+b\n")),
        ("POST", "/api/v1/reviews/{id}/verdict") => Some(json!({"verdict": "changes_requested"})),
        _ => None,
    };
    (path, body)
}

struct World {
    kit: Kit,
    admin: User,
    member: User,
    revoked: User,
    other: User,
    ids: Ids,
}

async fn world(backend: Backend) -> World {
    let kit = backend.kit().await;
    let admin = kit.join("alpha", "Ann", Role::Admin).await;
    let member = kit.join("alpha", "Mo", Role::Member).await;
    let revoked = kit.join("alpha", "Rex", Role::Member).await;
    let other = kit.join("beta", "Eve", Role::Admin).await;
    let r = kit.call(Method::DELETE, &format!("/api/v1/tokens/{}", revoked.token_id), Some(&admin.token), None).await;
    assert_eq!(r.status, 204);
    let codemark = id();
    let made = kit
        .call(
            Method::POST,
            "/api/v1/codemarks",
            Some(&admin.token),
            Some(new_codemark(&codemark, "alpha-repo", "alpha's secret body", "alpha snippet")),
        )
        .await;
    assert_eq!(made.status, 201);
    let reply = id();
    let replied = kit
        .call(
            Method::POST,
            &format!("/api/v1/codemarks/{codemark}/replies"),
            Some(&admin.token),
            Some(json!({"id": reply, "body": "alpha reply", "created": 2})),
        )
        .await;
    assert_eq!(replied.status, 201);
    // Ann asks Mo for feedback; Mo comments on it.
    let review = id();
    let mut asked = new_review(&review, "alpha-repo", "alpha review title", &[&member.member_id]);
    asked["revision"]["files"][0]["patch"] = json!("@@ -1,1 +1,1 @@\n-alpha old line\n+alpha patch line\n");
    let asked = kit.call(Method::POST, "/api/v1/reviews", Some(&admin.token), Some(asked)).await;
    assert_eq!(asked.status, 201, "{}", asked.text);
    let comment = review_comment(&id(), "alpha-repo", &review, 1, "src/cart.rs", "new", "alpha comment");
    assert_eq!(kit.call(Method::POST, "/api/v1/codemarks", Some(&member.token), Some(comment)).await.status, 201);
    let ids = Ids { member: admin.member_id.clone(), token: admin.token_id.clone(), codemark, reply, review };
    World { kit, admin, member, revoked, other, ids }
}

/// Team A as its admin sees it, to show nothing changed.
async fn snapshot(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    let revision = format!("/api/v1/reviews/{}/revisions/1", w.ids.review);
    for path in [
        "/api/v1/members",
        "/api/v1/codemarks",
        "/api/v1/team",
        "/api/v1/repos",
        "/api/v1/reviews?status=all",
        &revision,
    ] {
        let res = w.kit.call(Method::GET, path, Some(&w.admin.token), None).await;
        assert_eq!(res.status, 200, "{path}");
        out.push(res.text);
    }
    let tokens = w.kit.call(Method::GET, "/api/v1/tokens", Some(&w.admin.token), None).await;
    let mut tokens: Vec<Value> = serde_json::from_str(&tokens.text).unwrap();
    for t in &mut tokens {
        t["last_used"] = Value::Null;
    }
    out.push(serde_json::to_string(&tokens).unwrap());
    out
}

fn protected() -> Vec<Route> {
    table().into_iter().filter(|r| r.auth != Auth::Public).collect()
}

async fn every_protected_route_refuses_missing_malformed_unknown_and_revoked_tokens(backend: Backend) {
    let w = world(backend).await;
    let before = snapshot(&w).await;
    let unknown = format!("mrg_{}", "Q".repeat(43));
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("no token", None, "no token"),
        ("malformed", Some("Bearer not-a-token"), "malformed"),
        ("not bearer", Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l"), "malformed"),
        ("unknown", Some(&format!("Bearer {unknown}")), "unknown token"),
        ("revoked", Some(&format!("Bearer {}", w.revoked.token)), "revoked"),
    ];
    let routes = protected();
    assert!(routes.len() >= 20, "the matrix covers the API: {}", routes.len());
    for route in &routes {
        let (path, body) = concrete(route, &w.ids);
        for (case, header, says) in &cases {
            let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", *h)).collect();
            let res = w.kit.call_with(route.method.clone(), &path, None, body.clone(), &headers).await;
            assert_eq!(res.status, 401, "{case}: {} {}: {}", route.method, route.path, res.text);
            assert_eq!(res.code(), "unauthorized");
            assert!(res.message().contains(says), "{case}: {} {}: {}", route.method, route.path, res.message());
            assert!(!res.text.contains("alpha"), "a refusal names nothing of the team");
            assert_eq!(res.headers["www-authenticate"], "Bearer");
            assert_eq!(res.headers["x-content-type-options"], "nosniff");
        }
    }
    assert_eq!(snapshot(&w).await, before, "nothing changed");
}

async fn another_teams_token_finds_nothing_as_if_it_were_absent(backend: Backend) {
    let w = world(backend).await;
    let before = snapshot(&w).await;
    let absent = Ids { member: id(), token: id(), codemark: id(), reply: id(), review: id() };
    for route in protected() {
        if route.path == "/api/v1/team" && route.method == Method::DELETE {
            continue; // it would delete the other team's own team, rightly
        }
        let (path, body) = concrete(&route, &w.ids);
        if route.path == "/api/v1/events" {
            // A stream never ends: its status is checked, and its content by the changes feed.
            assert_eq!(w.kit.status_of(Method::GET, &path, &w.other.token).await, 200);
            continue;
        }
        let res = w.kit.call(route.method.clone(), &path, Some(&w.other.token), body.clone()).await;
        if route.path.contains('{') {
            assert_eq!(res.status, 404, "{} {}: {}", route.method, route.path, res.text);
            assert_eq!(res.code(), "not_found");
            // Exactly as an id that exists nowhere.
            let (absent_path, body) = concrete(&route, &absent);
            let missing = w.kit.call(route.method.clone(), &absent_path, Some(&w.other.token), body).await;
            assert_eq!(missing.status, 404);
            assert_eq!(
                res.message()
                    .replace(&w.ids.codemark, "ID")
                    .replace(&w.ids.member, "ID")
                    .replace(&w.ids.token, "ID")
                    .replace(&w.ids.reply, "ID")
                    .replace(&w.ids.review, "ID"),
                missing
                    .message()
                    .replace(&absent.codemark, "ID")
                    .replace(&absent.member, "ID")
                    .replace(&absent.token, "ID")
                    .replace(&absent.reply, "ID")
                    .replace(&absent.review, "ID"),
                "{} {}",
                route.method,
                route.path
            );
        } else {
            assert!(res.status < 300, "{} {} works on the caller's own team: {}", route.method, route.path, res.text);
        }
        for secret in [
            "alpha's secret body",
            "alpha snippet",
            "alpha reply",
            "Ann",
            "alpha-repo",
            "alpha review title",
            "alpha patch line",
            "alpha comment",
        ] {
            assert!(!res.text.contains(secret), "{} {} leaks {secret}", route.method, route.path);
        }
    }
    assert_eq!(snapshot(&w).await, before, "team A is untouched");
}

async fn a_member_is_refused_every_admin_action(backend: Backend) {
    let w = world(backend).await;
    let before = snapshot(&w).await;
    let admin_routes: Vec<Route> = protected().into_iter().filter(|r| r.auth == Auth::Admin).collect();
    let names: Vec<String> = admin_routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        names,
        ["DELETE /api/v1/team", "POST /api/v1/invites", "PATCH /api/v1/members/{id}", "GET /api/v1/audit"],
        "the admin-only routes"
    );
    for route in admin_routes {
        let (path, body) = concrete(&route, &w.ids);
        let res = w.kit.call(route.method.clone(), &path, Some(&w.member.token), body).await;
        assert_eq!((res.status, res.code()), (403, "forbidden"), "{} {}: {}", route.method, route.path, res.text);
        assert!(res.message().contains("admin"), "{}", res.message());
    }
    // Admin-only actions inside member routes: others' members, tokens, codemarks and replies.
    let refused = [
        (Method::DELETE, format!("/api/v1/members/{}", w.admin.member_id), None),
        (Method::DELETE, format!("/api/v1/tokens/{}", w.admin.token_id), None),
        (Method::PATCH, format!("/api/v1/codemarks/{}", w.ids.codemark), Some(json!({"body": "mine"}))),
        (Method::PATCH, format!("/api/v1/codemarks/{}", w.ids.codemark), Some(json!({"anchors": []}))),
        (Method::DELETE, format!("/api/v1/codemarks/{}", w.ids.codemark), None),
        (Method::DELETE, format!("/api/v1/codemarks/{}/replies/{}", w.ids.codemark, w.ids.reply), None),
        // Someone else's review: only its author sends revisions; its author or an admin changes
        // or deletes it. Mo is one of its reviewers, and still may not.
        (
            Method::POST,
            format!("/api/v1/reviews/{}/revisions", w.ids.review),
            Some(new_revision(&id(), "@@ -1,1 +1,1 @@\n-a\n+b\n")),
        ),
        (Method::PATCH, format!("/api/v1/reviews/{}", w.ids.review), Some(json!({"status": "closed"}))),
        (Method::PATCH, format!("/api/v1/reviews/{}", w.ids.review), Some(json!({"reviewers": []}))),
        (Method::DELETE, format!("/api/v1/reviews/{}", w.ids.review), None),
    ];
    for (method, path, body) in refused {
        let res = w.kit.call(method.clone(), &path, Some(&w.member.token), body).await;
        assert_eq!((res.status, res.code()), (403, "forbidden"), "{method} {path}: {}", res.text);
    }
    // The author may not judge their own request, admin or not.
    let own = w
        .kit
        .call(
            Method::POST,
            &format!("/api/v1/reviews/{}/verdict", w.ids.review),
            Some(&w.admin.token),
            Some(json!({"verdict": "approved"})),
        )
        .await;
    assert_eq!((own.status, own.code()), (403, "forbidden"), "{}", own.text);
    // Nor may an admin send a revision of another's request.
    let mo_review = id();
    let made = w
        .kit
        .call(
            Method::POST,
            "/api/v1/reviews",
            Some(&w.member.token),
            Some(new_review(&mo_review, "alpha-repo", "Mo's", &[])),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let revise = w
        .kit
        .call(
            Method::POST,
            &format!("/api/v1/reviews/{mo_review}/revisions"),
            Some(&w.admin.token),
            Some(new_revision(&id(), "@@ -1,1 +1,1 @@\n-a\n+b\n")),
        )
        .await;
    assert_eq!((revise.status, revise.code()), (403, "forbidden"), "{}", revise.text);
    let deleted = w.kit.call(Method::DELETE, &format!("/api/v1/reviews/{mo_review}"), Some(&w.admin.token), None).await;
    assert_eq!(deleted.status, 204, "an admin may delete anyone's review");
    assert_eq!(snapshot(&w).await, before, "nothing changed");
    // What a member may do to others' things: judge a review, change a codemark's status.
    let verdict = w
        .kit
        .call(
            Method::POST,
            &format!("/api/v1/reviews/{}/verdict", w.ids.review),
            Some(&w.member.token),
            Some(json!({"verdict": "approved"})),
        )
        .await;
    assert_eq!((verdict.status, verdict.json["status"].as_str()), (200, Some("approved")), "{}", verdict.text);
    let res = w
        .kit
        .call(
            Method::PATCH,
            &format!("/api/v1/codemarks/{}", w.ids.codemark),
            Some(&w.member.token),
            Some(json!({"status": "resolved"})),
        )
        .await;
    assert_eq!(res.status, 200);
}

async fn a_comment_on_another_teams_review_is_refused_as_if_the_review_did_not_exist(backend: Backend) {
    let w = world(backend).await;
    let before = snapshot(&w).await;
    let comment = |review: &str| review_comment(&id(), "beta-repo", review, 1, "src/cart.rs", "new", "eve's");
    let theirs =
        w.kit.call(Method::POST, "/api/v1/codemarks", Some(&w.other.token), Some(comment(&w.ids.review))).await;
    let absent = id();
    let missing = w.kit.call(Method::POST, "/api/v1/codemarks", Some(&w.other.token), Some(comment(&absent))).await;
    assert_eq!((theirs.status, theirs.field()), (422, Some("review.review")), "{}", theirs.text);
    assert_eq!((missing.status, missing.field()), (422, Some("review.review")), "{}", missing.text);
    assert_eq!(theirs.message().replace(&w.ids.review, "ID"), missing.message().replace(&absent, "ID"));
    for secret in ["alpha", "Ann", "src/cart.rs on"] {
        assert!(!theirs.text.contains(secret), "the refusal leaks {secret}: {}", theirs.text);
    }
    let listed = w.kit.call(Method::GET, "/api/v1/codemarks", Some(&w.other.token), None).await;
    assert_eq!(listed.json, json!([]), "nothing was made");
    assert_eq!(snapshot(&w).await, before, "team A is untouched");
}

on_every_backend!(
    every_protected_route_refuses_missing_malformed_unknown_and_revoked_tokens,
    another_teams_token_finds_nothing_as_if_it_were_absent,
    a_member_is_refused_every_admin_action,
    a_comment_on_another_teams_review_is_refused_as_if_the_review_did_not_exist,
);
