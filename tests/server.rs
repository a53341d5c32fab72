//! The sync server's API as clients use it, driven without a socket (tower's `oneshot` on
//! `server::app`): sessions end to end, idempotency across restarts, bad input, limits, the
//! changes feed and event stream, the OpenAPI document against the router, encryption at rest
//! down to the file's bytes, crypto-shredding of old backups, and the audit chain.

#[macro_use]
#[path = "common/server.rs"]
mod kit;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use kit::{Backend, CART_PATCH, Kit, User, id, new_codemark, new_review, new_revision, read_events, review_comment};
use marginalia::api::Role;
use marginalia::server::crypto::Place;

const REPO: &str = "github.com/acme/shop";

async fn a_team_discusses_code_from_login_to_deletion(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("acme", "Ada", Role::Admin).await;
    let bob = kit.join("acme", "Bob", Role::Member).await;

    let me = kit.call(Method::GET, "/api/v1/me", Some(&bob.token), None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["member"]["name"], "Bob");
    assert_eq!(me.json["member"]["role"], "member");
    assert_eq!(me.json["team"]["name"], "acme");
    assert_eq!(me.json["member"]["email"], "bob@example.com");

    let repo = kit
        .call(Method::PUT, "/api/v1/repos", Some(&bob.token), Some(json!({"key": REPO, "roots": ["a".repeat(40)]})))
        .await;
    assert_eq!(repo.status, 200, "{}", repo.text);
    let again = kit.call(Method::PUT, "/api/v1/repos", Some(&ada.token), Some(json!({"key": REPO}))).await;
    assert_eq!(again.json["id"], repo.json["id"], "one key, one repository");
    assert_eq!(again.json["roots"], json!(["a".repeat(40)]));

    // Bob asks a question; everyone in the team sees it.
    let cm = id();
    let made = kit
        .call(
            Method::POST,
            "/api/v1/codemarks",
            Some(&bob.token),
            Some(new_codemark(&cm, REPO, "Why cache forever?", "let cache = forever();")),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.json["author"], "Bob");
    assert_eq!(made.json["author_id"], bob.member_id.as_str());
    assert_eq!(made.json["anchors"][0]["text"], "let cache = forever();");
    assert_eq!(made.json["repo"], REPO);
    let dup = kit
        .call(Method::POST, "/api/v1/codemarks", Some(&bob.token), Some(new_codemark(&cm, REPO, "again", "x")))
        .await;
    assert_eq!((dup.status, dup.code()), (409, "conflict"));

    let listed =
        kit.call(Method::GET, &format!("/api/v1/codemarks?repo={}", urlencode(REPO)), Some(&ada.token), None).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1);
    let other_repo = kit.call(Method::GET, "/api/v1/codemarks?repo=elsewhere", Some(&ada.token), None).await;
    assert_eq!(other_repo.json, json!([]));

    // A third member may change the status, not the text.
    let cy = kit.join("acme", "Cy", Role::Member).await;
    let path = format!("/api/v1/codemarks/{cm}");
    let resolved = kit.call(Method::PATCH, &path, Some(&cy.token), Some(json!({"status": "resolved"}))).await;
    assert_eq!((resolved.status, resolved.json["status"].as_str()), (200, Some("resolved")));
    let edit = kit.call(Method::PATCH, &path, Some(&cy.token), Some(json!({"body": "mine now"}))).await;
    assert_eq!((edit.status, edit.code()), (403, "forbidden"));
    let retitled = kit
        .call(
            Method::PATCH,
            &path,
            Some(&bob.token),
            Some(json!({"title": null, "body": "Why cache forever? (edited)"})),
        )
        .await;
    assert_eq!(retitled.status, 200, "{}", retitled.text);
    assert_eq!(retitled.json["title"], Value::Null);
    assert_eq!(retitled.json["body"], "Why cache forever? (edited)");

    // Replies: Cy answers; Bob cannot delete Cy's reply; Ada (admin) can.
    let reply = id();
    let replied = kit
        .call(
            Method::POST,
            &format!("{path}/replies"),
            Some(&cy.token),
            Some(json!({"id": reply, "body": "Because it never changes.", "created": 1_700_000_100_000i64})),
        )
        .await;
    assert_eq!(replied.status, 201, "{}", replied.text);
    assert_eq!(replied.json["replies"][0]["author"], "Cy");
    let reply_path = format!("{path}/replies/{reply}");
    assert_eq!(kit.call(Method::DELETE, &reply_path, Some(&bob.token), None).await.status, 403);
    assert_eq!(kit.call(Method::DELETE, &reply_path, Some(&ada.token), None).await.status, 204);
    assert_eq!(kit.call(Method::DELETE, &reply_path, Some(&ada.token), None).await.status, 404);
    let thread = kit.call(Method::GET, &path, Some(&cy.token), None).await;
    assert_eq!(thread.json["replies"], json!([]));

    // Export: Bob's own codemark, and a reply he wrote on Ada's.
    let adas = id();
    kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&adas, REPO, "Ada's", "x"))).await;
    let bob_reply = id();
    kit.call(
        Method::POST,
        &format!("/api/v1/codemarks/{adas}/replies"),
        Some(&bob.token),
        Some(json!({"id": bob_reply, "body": "Bob was here", "created": 1})),
    )
    .await;
    let export = kit.call(Method::GET, "/api/v1/export", Some(&bob.token), None).await;
    assert_eq!(export.status, 200, "{}", export.text);
    assert_eq!(export.json["member"]["name"], "Bob");
    assert_eq!(export.json["codemarks"].as_array().unwrap().len(), 1);
    assert_eq!(export.json["codemarks"][0]["id"], cm.as_str());
    assert_eq!(export.json["replies"][0]["codemark_id"], adas.as_str());
    assert_eq!(export.json["replies"][0]["reply"]["body"], "Bob was here");
    assert_eq!(export.json["tokens"].as_array().unwrap().len(), 1);

    // Cy cannot delete Bob's codemark; Bob can.
    assert_eq!(kit.call(Method::DELETE, &path, Some(&cy.token), None).await.status, 403);
    assert_eq!(kit.call(Method::DELETE, &path, Some(&bob.token), None).await.status, 204);
    assert_eq!(kit.call(Method::GET, &path, Some(&bob.token), None).await.status, 404);

    // Cy leaves; their token stops working and their name is gone from the list.
    assert_eq!(
        kit.call(Method::DELETE, &format!("/api/v1/members/{}", cy.member_id), Some(&cy.token), None).await.status,
        204
    );
    let gone = kit.call(Method::GET, "/api/v1/me", Some(&cy.token), None).await;
    assert_eq!(gone.status, 401);
    assert!(gone.message().contains("revoked"), "{}", gone.message());
    let members = kit.call(Method::GET, "/api/v1/members", Some(&ada.token), None).await;
    let names: Vec<&str> = members.json.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ada", "Bob"]);

    // The admin deletes the team: every token dies with it.
    assert_eq!(kit.call(Method::DELETE, "/api/v1/team", Some(&bob.token), None).await.status, 403);
    assert_eq!(kit.call(Method::DELETE, "/api/v1/team", Some(&ada.token), None).await.status, 204);
    let after = kit.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await;
    assert_eq!(after.status, 401);
    assert_eq!(kit.shared.service.stats().await.unwrap().codemarks, 0);
}

fn urlencode(s: &str) -> String {
    s.replace('/', "%2F")
}

async fn invites_are_single_use_expire_and_carry_their_role(backend: Backend) {
    let kit = backend.kit().await;
    let first = kit.invite("new-team", None).await;
    let login = |code: &str, name: &str| json!({"invite": code, "name": name});
    let res = kit.call(Method::POST, "/api/v1/login", None, Some(login(&first, "Founder"))).await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.json["member"]["role"], "admin", "a new team's first invite is for an admin");
    assert!(res.json["token"].as_str().unwrap().starts_with("mrg_"));
    let founder = res.json["token"].as_str().unwrap().to_string();

    let reused = kit.call(Method::POST, "/api/v1/login", None, Some(login(&first, "Mallory"))).await;
    assert_eq!((reused.status, reused.code()), (401, "unauthorized"));
    assert!(reused.message().contains("used already"), "{}", reused.message());

    let second = kit.invite("new-team", None).await;
    let res = kit.call(Method::POST, "/api/v1/login", None, Some(login(&second, "Second"))).await;
    assert_eq!(res.json["member"]["role"], "member", "once the team has an admin, invites default to member");

    // An admin's invite over the API, with a role and a lifetime.
    let made =
        kit.call(Method::POST, "/api/v1/invites", Some(&founder), Some(json!({"role": "admin", "ttl_hours": 1}))).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.json["role"], "admin");
    let too_long = kit
        .call(Method::POST, "/api/v1/invites", Some(&founder), Some(json!({"role": "member", "ttl_hours": 9999})))
        .await;
    assert_eq!((too_long.status, too_long.field()), (422, Some("ttl_hours")));

    let unknown =
        kit.call(Method::POST, "/api/v1/login", None, Some(login(&format!("inv_{}", "A".repeat(43)), "X"))).await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.message().contains("unknown invite"));
    let malformed = kit.call(Method::POST, "/api/v1/login", None, Some(login("let me in", "X"))).await;
    assert_eq!(malformed.status, 401);
    assert!(malformed.message().contains("malformed"));
}

async fn an_expired_invite_is_refused(backend: Backend) {
    use marginalia::server::db::{Batch, InviteRow, Write};
    let kit = backend.kit().await;
    let admin = kit.join("t", "Admin", Role::Admin).await;
    let code = format!("inv_{}", "e".repeat(43));
    let storage = &kit.store;
    let row = InviteRow {
        hash: marginalia::server::crypto::sha256(code.as_bytes()).to_vec(),
        team_id: admin.team_id.clone(),
        role: Role::Member,
        created: 1,
        expires: 2,
        used: None,
    };
    storage.commit(Batch { writes: vec![Write::InsertInvite(row)], ..Batch::default() }).await.unwrap();
    let res = kit.call(Method::POST, "/api/v1/login", None, Some(json!({"invite": code, "name": "Late"}))).await;
    assert_eq!(res.status, 401);
    assert!(res.message().contains("expired"), "{}", res.message());
}

async fn the_last_admin_can_be_neither_demoted_nor_removed(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let bob = kit.join("t", "Bob", Role::Member).await;
    let ada_path = format!("/api/v1/members/{}", ada.member_id);
    let demote = kit.call(Method::PATCH, &ada_path, Some(&ada.token), Some(json!({"role": "member"}))).await;
    assert_eq!((demote.status, demote.code()), (409, "conflict"));
    assert_eq!(kit.call(Method::DELETE, &ada_path, Some(&ada.token), None).await.status, 409);
    // Bob becomes admin; then Ada may step down.
    let promote = kit
        .call(
            Method::PATCH,
            &format!("/api/v1/members/{}", bob.member_id),
            Some(&ada.token),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!((promote.status, promote.json["role"].as_str()), (200, Some("admin")));
    let demote = kit.call(Method::PATCH, &ada_path, Some(&ada.token), Some(json!({"role": "member"}))).await;
    assert_eq!(demote.status, 200, "{}", demote.text);
    // Roles are read on every request: Ada is no longer an admin.
    let invite = kit.call(Method::POST, "/api/v1/invites", Some(&ada.token), Some(json!({"role": "member"}))).await;
    assert_eq!(invite.status, 403);
}

async fn tokens_are_listed_without_secrets_and_revoked_for_good(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let bob = kit.join("t", "Bob", Role::Member).await;
    let ci = kit.call(Method::POST, "/api/v1/tokens", Some(&bob.token), Some(json!({"label": "ci"}))).await;
    assert_eq!(ci.status, 201, "{}", ci.text);
    let ci_token = ci.json["token"].as_str().unwrap().to_string();
    let ci_id = ci.json["info"]["id"].as_str().unwrap().to_string();
    assert_eq!(kit.call(Method::GET, "/api/v1/me", Some(&ci_token), None).await.json["token"]["label"], "ci");

    let bobs = kit.call(Method::GET, "/api/v1/tokens", Some(&bob.token), None).await;
    assert_eq!(bobs.json.as_array().unwrap().len(), 2, "a member sees their own tokens");
    assert!(!bobs.text.contains(&ci_token), "a listing never shows a token");
    let all = kit.call(Method::GET, "/api/v1/tokens", Some(&ada.token), None).await;
    assert_eq!(all.json.as_array().unwrap().len(), 3, "an admin sees the team's");

    // Bob cannot revoke Ada's token; Ada can revoke Bob's.
    let adas = format!("/api/v1/tokens/{}", ada.token_id);
    assert_eq!(kit.call(Method::DELETE, &adas, Some(&bob.token), None).await.status, 403);
    assert_eq!(kit.call(Method::DELETE, &format!("/api/v1/tokens/{ci_id}"), Some(&ada.token), None).await.status, 204);
    let refused = kit.call(Method::GET, "/api/v1/me", Some(&ci_token), None).await;
    assert_eq!(refused.status, 401);
    assert!(refused.message().contains("revoked"), "{}", refused.message());
    let listed = kit.call(Method::GET, "/api/v1/tokens", Some(&bob.token), None).await;
    let ci_row = listed.json.as_array().unwrap().iter().find(|t| t["id"] == ci_id.as_str()).unwrap().clone();
    assert!(ci_row["revoked"].is_i64(), "kept listed, marked revoked: {ci_row}");
}

async fn a_repeated_idempotency_key_answers_the_first_status_with_current_state_even_after_a_restart(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let cm = id();
    let key = [("idempotency-key", "outbox-1")];
    let body = new_codemark(&cm, REPO, "first", "snippet");
    let first = kit.call_with(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(body.clone()), &key).await;
    assert_eq!(first.status, 201);
    // Changed since by someone else's request: the replay shows it as it is now.
    kit.call(Method::PATCH, &format!("/api/v1/codemarks/{cm}"), Some(&ada.token), Some(json!({"status": "resolved"})))
        .await;
    let kit = kit.restart().await;
    let again = kit.call_with(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(body.clone()), &key).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json["status"], "resolved");
    let changes = kit.call(Method::GET, "/api/v1/changes", Some(&ada.token), None).await;
    assert_eq!(changes.json["events"].as_array().unwrap().len(), 1);
    assert_eq!(changes.json["cursor"], "2", "the replay wrote no event");

    // The same key for another request is refused.
    let other = kit
        .call_with(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&id(), REPO, "b", "s")), &key)
        .await;
    assert_eq!(other.status, 201, "a key is scoped to its route and body-independent: same route replays");
    let misuse = kit
        .call_with(
            Method::PATCH,
            &format!("/api/v1/codemarks/{cm}"),
            Some(&ada.token),
            Some(json!({"status": "open"})),
            &key,
        )
        .await;
    assert_eq!((misuse.status, misuse.code()), (409, "conflict"));

    // Deletions replay as done.
    let del_key = [("idempotency-key", "outbox-2")];
    let path = format!("/api/v1/codemarks/{cm}");
    assert_eq!(kit.call_with(Method::DELETE, &path, Some(&ada.token), None, &del_key).await.status, 204);
    assert_eq!(kit.call_with(Method::DELETE, &path, Some(&ada.token), None, &del_key).await.status, 204);
    assert_eq!(kit.call(Method::DELETE, &path, Some(&ada.token), None).await.status, 404);

    // Keys are per member: Bob's identical key is his own.
    let bob = kit.join("t", "Bob", Role::Member).await;
    let bobs = kit
        .call_with(Method::POST, "/api/v1/codemarks", Some(&bob.token), Some(new_codemark(&id(), REPO, "c", "s")), &key)
        .await;
    assert_eq!(bobs.status, 201);
    assert_eq!(bobs.json["author"], "Bob");
}

async fn concurrent_requests_with_one_key_make_one_codemark(backend: Backend) {
    use tower::ServiceExt;
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    // Several rounds, so that some duplicates land in one group commit and some in the next.
    for round in 1..=4 {
        let cm = id();
        let key = format!("same-{round}");
        let body = new_codemark(&cm, REPO, "once", "s");
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (app, token, body, key) = (kit.app.clone(), ada.token.clone(), body.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let req = Request::post("/api/v1/codemarks")
                    .header("authorization", format!("Bearer {token}"))
                    .header("idempotency-key", key)
                    .body(Body::from(body.to_string()))
                    .unwrap();
                app.oneshot(req).await.unwrap().status().as_u16()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 201, "every copy answers as the first did");
        }
        let changes = kit.call(Method::GET, "/api/v1/changes", Some(&ada.token), None).await;
        assert_eq!(changes.json["cursor"], round.to_string(), "one event per round: {}", changes.text);
    }
}

async fn bad_input_gets_a_4xx_naming_what_was_wrong(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let post = |body: Body| {
        Request::post("/api/v1/codemarks").header("authorization", format!("Bearer {}", ada.token)).body(body).unwrap()
    };
    let res = kit.send(post(Body::from(r#"{"id": "x",, }"#))).await;
    assert_eq!((res.status, res.code()), (400, "bad_request"));
    assert!(res.message().contains("line 1 column"), "{}", res.message());

    let mut wrong = new_codemark(&id(), REPO, "b", "s");
    wrong["anchors"][0]["start"] = json!("forty");
    let res = kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(wrong)).await;
    assert_eq!((res.status, res.field()), (422, Some("anchors[0].start")));

    let mut big = new_codemark(&id(), REPO, "b", "s");
    big["anchors"][0]["text"] = json!("x".repeat(300_000));
    let res = kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(big)).await;
    assert_eq!((res.status, res.code(), res.field()), (413, "too_large", Some("anchors[0].text")));
    assert_eq!(res.message(), "anchors[0].text is 300000 bytes; the limit is 262144");

    let mut bookmark = new_codemark(&id(), REPO, "b", "s");
    bookmark["kind"] = json!("bookmark");
    let res = kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(bookmark)).await;
    assert_eq!((res.status, res.field()), (422, Some("kind")));
    assert!(res.message().contains("private"));

    let huge = format!(r#"{{"pad": "{}"}}"#, "y".repeat(3 << 20));
    let res = kit.send(post(Body::from(huge))).await;
    assert_eq!((res.status, res.code()), (413, "too_large"));

    let res = kit.call(Method::GET, "/api/v1/changes?after=yesterday", Some(&ada.token), None).await;
    assert_eq!((res.status, res.field()), (400, Some("after")));
    let res = kit.call(Method::GET, "/api/v1/changes?limit=5000", Some(&ada.token), None).await;
    assert_eq!((res.status, res.field()), (400, Some("limit")));

    let res = kit
        .call_with(
            Method::POST,
            "/api/v1/tokens",
            Some(&ada.token),
            Some(json!({"label": "x"})),
            &[("idempotency-key", &"k".repeat(300))],
        )
        .await;
    assert_eq!((res.status, res.field()), (400, Some("Idempotency-Key")));

    let res = kit.call(Method::GET, "/api/v1/nowhere", Some(&ada.token), None).await;
    assert_eq!((res.status, res.code()), (404, "not_found"));
    assert_eq!(res.headers["x-content-type-options"], "nosniff", "headers on 404s too");
    let res = kit.call(Method::PUT, "/api/v1/me", Some(&ada.token), None).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.code(), "bad_request");
}

async fn every_answer_carries_the_security_headers_and_no_server_banner(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    for (method, path, token) in [
        (Method::GET, "/healthz", None),
        (Method::GET, "/api/v1/me", Some(ada.token.as_str())),
        (Method::GET, "/api/v1/me", None),
        (Method::GET, "/api/v1/codemarks/nope", Some(ada.token.as_str())),
    ] {
        let res = kit.call(method, path, token, None).await;
        let h = &res.headers;
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h["strict-transport-security"].to_str().unwrap().starts_with("max-age="), "HSTS under TLS");
        assert!(!h.contains_key("server"));
    }
}

async fn a_token_over_its_rate_limit_is_told_when_to_come_back(backend: Backend) {
    let kit = backend.kit_with_rate(1.0, 3.0).await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    for _ in 0..3 {
        assert_eq!(kit.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await.status, 200);
    }
    let res = kit.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await;
    assert_eq!((res.status, res.code()), (429, "rate_limited"));
    let retry: u64 = res.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let bob = kit.join("t", "Bob", Role::Member).await;
    assert_eq!(kit.call(Method::GET, "/api/v1/me", Some(&bob.token), None).await.status, 200, "limits are per token");
    let metrics = kit.call(Method::GET, "/metrics", None, None).await;
    assert!(metrics.text.contains("marginalia_rate_limited_total 1"), "{}", metrics.text);
}

async fn the_changes_feed_points_at_live_codemarks_and_collapses_repeats(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let (a, b) = (id(), id());
    kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&a, REPO, "a", "s"))).await; // 1
    kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&b, REPO, "b", "s"))).await; // 2
    for status in ["resolved", "open", "resolved"] {
        kit.call(Method::PATCH, &format!("/api/v1/codemarks/{a}"), Some(&ada.token), Some(json!({"status": status})))
            .await;
    } // 3, 4, 5
    kit.call(Method::DELETE, &format!("/api/v1/codemarks/{b}"), Some(&ada.token), None).await; // 6

    let all = kit.call(Method::GET, "/api/v1/changes", Some(&ada.token), None).await;
    assert_eq!(all.status, 200);
    let events = all.json["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{}", all.text);
    assert_eq!(events[0]["type"], "codemark");
    assert_eq!(events[0]["cursor"], "5");
    assert_eq!(events[0]["codemark"]["status"], "resolved");
    assert_eq!(events[1], json!({"cursor": "6", "type": "codemark_deleted", "id": b}));
    assert_eq!(all.json["cursor"], "6");
    assert_eq!(all.json["more"], false);

    let page = kit.call(Method::GET, "/api/v1/changes?after=0&limit=2", Some(&ada.token), None).await;
    assert_eq!(page.json["more"], true);
    assert_eq!(page.json["cursor"], "2");
    // b, created at 2, is deleted now: the pointer says so.
    assert_eq!(page.json["events"][1]["type"], "codemark_deleted");
    let rest = kit.call(Method::GET, "/api/v1/changes?after=2", Some(&ada.token), None).await;
    assert_eq!(rest.json["events"].as_array().unwrap().len(), 2);
    let none = kit.call(Method::GET, "/api/v1/changes?after=6", Some(&ada.token), None).await;
    assert_eq!(none.json, json!({"events": [], "cursor": "6", "more": false}));

    // Another team's feed is its own.
    let eve = kit.join("other", "Eve", Role::Admin).await;
    let theirs = kit.call(Method::GET, "/api/v1/changes", Some(&eve.token), None).await;
    assert_eq!(theirs.json["events"], json!([]));
}

async fn the_event_stream_catches_up_then_pushes_new_changes_and_ends_when_the_token_is_revoked(backend: Backend) {
    use tower::ServiceExt;
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let first = id();
    kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&first, REPO, "old news", "s")))
        .await;

    let open = |after: Option<&str>, last_event_id: Option<&str>| {
        let mut req = Request::get(match after {
            Some(a) => format!("/api/v1/events?after={a}"),
            None => "/api/v1/events".into(),
        })
        .header("authorization", format!("Bearer {}", ada.token));
        if let Some(l) = last_event_id {
            req = req.header("last-event-id", l);
        }
        kit.app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let res = open(None, None).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let caught_up = read_events(&mut body, 1, Duration::from_secs(5)).await;
    assert_eq!(caught_up.len(), 1);
    assert_eq!(caught_up[0].0, "1");
    assert_eq!(caught_up[0].1["codemark"]["body"], "old news");

    let second = id();
    let started = std::time::Instant::now();
    kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&second, REPO, "breaking", "s")))
        .await;
    let pushed = read_events(&mut body, 1, Duration::from_secs(5)).await;
    assert_eq!(pushed.len(), 1, "a new codemark is pushed");
    assert_eq!(pushed[0].1["codemark"]["id"], second.as_str());
    assert!(started.elapsed() < Duration::from_secs(1), "promptly: {:?}", started.elapsed());

    // Resuming with Last-Event-ID skips what was seen.
    let resumed = open(None, Some("1")).await.unwrap();
    let mut resumed_body = resumed.into_body();
    let got = read_events(&mut resumed_body, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0].0, "2");
    assert_eq!(open(Some("x"), None).await.unwrap().status(), 400);

    // Revoking the token ends the stream.
    let revoked = kit.call(Method::DELETE, &format!("/api/v1/tokens/{}", ada.token_id), Some(&ada.token), None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match body.frame().await {
                None | Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream ended");
}

async fn health_metrics_and_the_openapi_document_need_no_token_and_everything_else_does(backend: Backend) {
    let kit = backend.kit().await;
    let health = kit.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((health.status, &health.json), (200, &json!({"status": "ok"})));
    let doc = kit.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."));
    let metrics = kit.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(
        metrics
            .text
            .contains("marginalia_http_requests_total{route=\"/api/v1/openapi.json\",method=\"GET\",class=\"2xx\"} 1"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("marginalia_teams 0"));
}

async fn the_openapi_document_and_the_router_agree(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let doc = kit.call(Method::GET, "/api/v1/openapi.json", None, None).await.json;
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    let routed: std::collections::BTreeSet<(String, String)> =
        marginalia::server::routes::table().iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    assert_eq!(documented, routed);
    // Every documented operation is answered by its route (never the fallback), and every other
    // method on a documented path is a 405.
    let all = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let paths: std::collections::BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path
            .replace("{id}", "00000000-0000-7000-8000-000000000000")
            .replace("{reply_id}", "00000000-0000-7000-8000-000000000001")
            .replace("{number}", "1");
        for m in all {
            if (m, path.as_str()) == ("DELETE", "/api/v1/team") {
                continue;
            }
            // The event stream never ends: a bad cursor makes it answer at once, from its own route.
            let target = if (m, path.as_str()) == ("GET", "/api/v1/events") {
                format!("{concrete}?after=x")
            } else {
                concrete.clone()
            };
            let res = kit.call(Method::from_bytes(m.as_bytes()).unwrap(), &target, Some(&ada.token), None).await;
            if documented.contains(&(m.to_string(), path.clone())) {
                assert_ne!(res.status, 405, "{m} {path}");
                assert!(!res.message().starts_with("no route"), "{m} {path} is routed");
            } else {
                assert_eq!(res.status, 405, "{m} {path} is not documented, so not routed");
            }
        }
    }
}

/// Every sensitive string a session writes, for the raw-bytes scan.
const SECRETS: [&str; 10] = [
    "Zanzibar Widgets Team",
    "Quentin Questioner",
    "quentin@zanzibar.example",
    "github.com/zanzibar/secret-repo",
    "TITLE-Kalamazoo",
    "BODY-Timbuktu-discussion",
    "SNIPPET-let xylophone_cache",
    "BEFORE-fn ocelot_context",
    "src/PATH-marmalade.rs",
    "REPLY-Ouagadougou answer",
];

/// What a feedback request adds to the session: every one must stay sealed too.
const REVIEW_SECRETS: [&str; 9] = [
    "REVIEW-TITLE-Kathmandu",
    "REVIEW-DESCRIPTION-Reykjavik",
    "PATCH-ADDED-let zebra_total",
    "PATCH-REMOVED-fn quokka_sum",
    "src/REVIEWPATH-papaya.rs",
    "src/RENAMED-FROM-guava.rs",
    "BASE-NOTE-merge-base with origin/walrus",
    "fedcba9876543210fedcba9876543210fedcba98",
    "0f1e2d3c4b5a69780f1e2d3c4b5a69780f1e2d3c",
];

async fn sensitive_session(kit: &Kit) -> String {
    let code = kit.invite(SECRETS[0], None).await;
    let login = kit
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"invite": code, "name": SECRETS[1], "email": SECRETS[2], "token_label": "laptop"})),
        )
        .await;
    assert_eq!(login.status, 201, "{}", login.text);
    let token = login.json["token"].as_str().unwrap().to_string();
    let cm = id();
    let mut body = new_codemark(&cm, SECRETS[3], SECRETS[5], SECRETS[6]);
    body["title"] = json!(SECRETS[4]);
    body["anchors"][0]["before"] = json!([SECRETS[7]]);
    body["anchors"][0]["path"] = json!(SECRETS[8]);
    let made = kit.call(Method::POST, "/api/v1/codemarks", Some(&token), Some(body)).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let r = kit
        .call(
            Method::POST,
            &format!("/api/v1/codemarks/{cm}/replies"),
            Some(&token),
            Some(json!({"id": id(), "body": SECRETS[9], "created": 5})),
        )
        .await;
    assert_eq!(r.status, 201);
    kit.call(Method::PUT, "/api/v1/repos", Some(&token), Some(json!({"key": SECRETS[3]}))).await;

    // A feedback request: its title, description, paths, base, blob ids and patch lines.
    let rv = id();
    let mut review = new_review(&rv, SECRETS[3], REVIEW_SECRETS[0], &[]);
    review["description"] = json!(REVIEW_SECRETS[1]);
    let revision = &mut review["revision"];
    revision["base"] = json!(REVIEW_SECRETS[7]);
    revision["base_note"] = json!(REVIEW_SECRETS[6]);
    let file = &mut revision["files"][0];
    file["old_path"] = json!(REVIEW_SECRETS[5]);
    file["new_path"] = json!(REVIEW_SECRETS[4]);
    file["old_blob"] = json!(REVIEW_SECRETS[8]);
    file["patch"] = json!(format!("@@ -1,1 +1,1 @@\n-{}\n+{}\n", REVIEW_SECRETS[3], REVIEW_SECRETS[2]));
    let made = kit.call(Method::POST, "/api/v1/reviews", Some(&token), Some(review)).await;
    assert_eq!(made.status, 201, "{}", made.text);
    // A second revision, and a comment on the renamed file's old side.
    let mut second = new_revision(&id(), CART_PATCH);
    second["files"][0]["new_path"] = json!(REVIEW_SECRETS[4]);
    let r = kit.call(Method::POST, &format!("/api/v1/reviews/{rv}/revisions"), Some(&token), Some(second)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let comment = review_comment(&id(), SECRETS[3], &rv, 1, REVIEW_SECRETS[5], "old", "a comment");
    let r = kit.call(Method::POST, "/api/v1/codemarks", Some(&token), Some(comment)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    kit.call(Method::GET, "/api/v1/export", Some(&token), None).await;

    // And it all reads back in the clear through the API.
    let read = kit.call(Method::GET, &format!("/api/v1/codemarks/{cm}"), Some(&token), None).await;
    for s in &SECRETS[3..] {
        assert!(read.text.contains(s), "{s} reads back");
    }
    let read = kit.call(Method::GET, &format!("/api/v1/reviews/{rv}/revisions/1"), Some(&token), None).await.text
        + &kit.call(Method::GET, &format!("/api/v1/reviews/{rv}"), Some(&token), None).await.text;
    for s in REVIEW_SECRETS {
        assert!(read.contains(s), "{s} reads back");
    }
    token
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn no_snippet_body_title_name_or_email_is_in_the_clear_in_the_files(backend: Backend) {
    let kit = backend.kit().await;
    let token = sensitive_session(&kit).await;
    let files = kit.at_rest().await;
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    if kit.is_postgres() {
        assert!(
            names.contains(&"codemarks.anchors_sealed") && names.contains(&"marginalia_team_keys.wrapped"),
            "{names:?}"
        );
    } else {
        assert!(names.contains(&"server.db-wal"), "the session is (at least partly) in the WAL: {names:?}");
    }
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let least = if kit.is_postgres() { 5_000 } else { 50_000 };
    assert!(total > least, "what is at rest holds the session: {total} bytes");
    for (name, bytes) in &files {
        for s in SECRETS.iter().chain(&REVIEW_SECRETS) {
            assert!(!contains(bytes, s.as_bytes()), "{s:?} is in the clear in {name}");
        }
        assert!(!contains(bytes, token.as_bytes()), "the token is in the clear in {name}");
        assert!(!contains(bytes, &token.as_bytes()[4..]), "the token is in the clear in {name}");
    }
}

async fn deleting_a_team_leaves_its_old_backups_unreadable_and_other_teams_readable(backend: Backend) {
    let kit = backend.kit().await;
    let doomed = kit.join("doomed", "Dora", Role::Admin).await;
    let kept = kit.join("kept", "Kim", Role::Admin).await;
    let (d, k) = (id(), id());
    kit.call(Method::POST, "/api/v1/codemarks", Some(&doomed.token), Some(new_codemark(&d, REPO, "doomed body", "s")))
        .await;
    kit.call(Method::POST, "/api/v1/codemarks", Some(&kept.token), Some(new_codemark(&k, REPO, "kept body", "s")))
        .await;
    let (doomed_review, kept_review) = (id(), id());
    let doomed_reviewer = kit.join("doomed", "Dan", Role::Member).await;
    let body = new_review(&doomed_review, REPO, "doomed review", &[&doomed_reviewer.member_id]);
    assert_eq!(kit.call(Method::POST, "/api/v1/reviews", Some(&doomed.token), Some(body)).await.status, 201);
    let comment = review_comment(&id(), REPO, &doomed_review, 1, "src/cart.rs", "new", "doomed comment");
    assert_eq!(
        kit.call(Method::POST, "/api/v1/codemarks", Some(&doomed_reviewer.token), Some(comment)).await.status,
        201
    );
    let body = new_review(&kept_review, REPO, "kept review", &[]);
    assert_eq!(kit.call(Method::POST, "/api/v1/reviews", Some(&kept.token), Some(body)).await.status, 201);

    // An old backup of the data, without the keys (SQLite: VACUUM INTO; PostgreSQL: the rows
    // as a dump without marginalia_team_keys holds them).
    let backup = kit.backup_of("codemarks", "body_sealed").await;
    let open_from_backup = async |team: &str, codemark: &str| -> Result<String, String> {
        let (_, _, sealed) = backup.iter().find(|(t, c, _)| t == team && c == codemark).ok_or("not in the backup")?;
        let wrapped = kit.store.team_key(team).await.map_err(|e| e.to_string())?.ok_or("no key")?;
        let key = kit::master().unwrap_team_key(team, &wrapped).map_err(|e| e.to_string())?;
        key.open_string(&Place { column: "codemarks.body", team, row: codemark }, sealed).map_err(|e| e.to_string())
    };
    assert_eq!(open_from_backup(&doomed.team_id, &d).await.unwrap(), "doomed body", "before: the backup opens");

    assert_eq!(kit.call(Method::DELETE, "/api/v1/team", Some(&doomed.token), None).await.status, 204);
    let err = open_from_backup(&doomed.team_id, &d).await.unwrap_err();
    assert!(err.contains("no key"), "{err}");
    assert_eq!(open_from_backup(&kept.team_id, &k).await.unwrap(), "kept body", "another team's data still opens");
    if kit.is_postgres() {
        let n = kit
            .number(&format!("SELECT count(*) FROM marginalia_team_keys WHERE team_id = '{}'", doomed.team_id))
            .await;
        assert_eq!(n, 0, "the deleted team's key row is gone");
    } else {
        // keys.db has no trace of the key's bytes either (secure delete, rollback journal).
        let keys_bytes = std::fs::read(kit.dir.path().join("keys.db")).unwrap();
        assert!(!contains(&keys_bytes, doomed.team_id.as_bytes()), "the deleted team's key row is overwritten");
    }
    // The live data has nothing of the team left.
    let still =
        kit.call(Method::GET, &format!("/api/v1/reviews/{kept_review}/revisions/1"), Some(&kept.token), None).await;
    assert_eq!(still.status, 200, "another team's review is untouched: {}", still.text);
    for table in [
        "teams",
        "members",
        "tokens",
        "codemarks",
        "replies",
        "repos",
        "events",
        "invites",
        "reviews",
        "revisions",
        "reviewers",
    ] {
        let column = if table == "teams" { "id" } else { "team_id" };
        let n = kit.number(&format!("SELECT count(*) FROM {table} WHERE {column} = '{}'", doomed.team_id)).await;
        assert_eq!(n, 0, "{table} keeps nothing of the deleted team");
    }
}

async fn the_audit_log_records_security_events_and_shows_tampering(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let bob = kit.join("t", "Bob", Role::Member).await;
    let cm = id();
    kit.call(Method::POST, "/api/v1/codemarks", Some(&bob.token), Some(new_codemark(&cm, REPO, "b", "s"))).await;
    kit.call(
        Method::PATCH,
        &format!("/api/v1/members/{}", bob.member_id),
        Some(&ada.token),
        Some(json!({"role": "admin"})),
    )
    .await;
    let t = kit.call(Method::POST, "/api/v1/tokens", Some(&bob.token), Some(json!({"label": "ci"}))).await;
    kit.call(
        Method::DELETE,
        &format!("/api/v1/tokens/{}", t.json["info"]["id"].as_str().unwrap()),
        Some(&bob.token),
        None,
    )
    .await;
    kit.call(Method::DELETE, &format!("/api/v1/codemarks/{cm}"), Some(&ada.token), None).await;
    kit.call(Method::GET, "/api/v1/export", Some(&bob.token), None).await;

    assert_eq!(kit.call(Method::GET, "/api/v1/audit", Some(&bob.token), None).await.status, 200, "Bob is an admin now");
    let log = kit.call(Method::GET, "/api/v1/audit", Some(&ada.token), None).await;
    let actions: Vec<&str> = log.json.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in [
        "team.created",
        "invite.created",
        "sign-in",
        "member.added",
        "token.created",
        "member.role_changed",
        "token.revoked",
        "codemark.deleted",
        "export",
    ] {
        assert!(actions.contains(&a), "{a} is recorded: {actions:?}");
    }
    assert!(!log.text.contains("Ada") && !log.text.contains("Bob"), "no names in the log");
    let other = kit.join("other", "Eve", Role::Admin).await;
    let theirs = kit.call(Method::GET, "/api/v1/audit", Some(&other.token), None).await;
    assert!(theirs.json.as_array().unwrap().iter().all(|e| e["actor_id"] != ada.member_id.as_str()), "one team's log");

    use marginalia::server::audit::Verdict;
    let storage = &kit.store;
    let Verdict::Intact { entries } = storage.verify_audit().await.unwrap() else { panic!("intact") };
    assert!(entries >= 15, "{entries}");

    // The table refuses edits...
    let refused = kit.sql("UPDATE audit SET action = 'nothing' WHERE seq = 5").await.unwrap_err();
    assert!(refused.contains("append-only"), "{refused}");
    let refused = kit.sql("DELETE FROM audit WHERE seq = 5").await.unwrap_err();
    assert!(refused.contains("append-only"), "{refused}");
    // ...and one that goes around the trigger is caught by the chain.
    let drop_triggers: &[&str] = if kit.is_postgres() {
        &["ALTER TABLE audit DISABLE TRIGGER USER"]
    } else {
        &["DROP TRIGGER audit_append_only_update", "DROP TRIGGER audit_append_only_delete"]
    };
    for sql in drop_triggers {
        kit.sql(sql).await.unwrap();
    }
    kit.sql("UPDATE audit SET target_id = 'someone-else' WHERE seq = 5").await.unwrap();
    match storage.verify_audit().await.unwrap() {
        Verdict::Broken { seq, checked, .. } => assert_eq!((seq, checked), (5, 4)),
        other => panic!("an edit in the middle is caught: {other:?}"),
    }
    assert_eq!(kit.number("SELECT seq FROM audit WHERE seq = 5").await, 5);
    kit.sql("DELETE FROM audit WHERE seq = 5").await.unwrap();
    match storage.verify_audit().await.unwrap() {
        Verdict::Broken { seq, .. } => assert_eq!(seq, 6, "a deleted entry is caught at the next one"),
        other => panic!("a deletion in the middle is caught: {other:?}"),
    }
}

async fn concurrent_writes_committed_together_fail_and_succeed_one_by_one(backend: Backend) {
    use marginalia::server::audit::Verdict;
    use tower::ServiceExt;
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let doomed: Vec<String> = (0..8).map(|_| id()).collect();
    for d in &doomed {
        kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(d, REPO, "x", "s"))).await;
    }
    // Each new id is sent twice at once (one must be refused), while the doomed are deleted.
    let ids: Vec<String> = (0..8).map(|_| id()).collect();
    let mut tasks = Vec::new();
    for (i, cm) in ids.iter().chain(ids.iter()).enumerate() {
        let (app, token, body) = (kit.app.clone(), ada.token.clone(), new_codemark(cm, REPO, "b", "s"));
        tasks.push(tokio::spawn(async move {
            let req = Request::post("/api/v1/codemarks")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body.to_string()))
                .unwrap();
            (i, app.oneshot(req).await.unwrap().status().as_u16())
        }));
    }
    for d in &doomed {
        let (app, token, path) = (kit.app.clone(), ada.token.clone(), format!("/api/v1/codemarks/{d}"));
        tasks.push(tokio::spawn(async move {
            let req =
                Request::delete(path).header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap();
            (100, app.oneshot(req).await.unwrap().status().as_u16())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().1);
    }
    statuses.sort();
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!((count(201), count(409), count(204)), (8, 8, 8), "{statuses:?}");
    let listed = kit.call(Method::GET, "/api/v1/codemarks", Some(&ada.token), None).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 8);
    let changes = kit.call(Method::GET, "/api/v1/changes?limit=1000", Some(&ada.token), None).await;
    assert_eq!(changes.json["cursor"], "24", "8 creates, 8 deletes, 8 new creates: refused ones wrote no event");
    assert!(matches!(kit.store.verify_audit().await.unwrap(), Verdict::Intact { .. }));
}

// ---- feedback requests (reviews) --------------------------------------------------------------

async fn ask(kit: &Kit, who: &User, body: Value, key: Option<&str>) -> kit::Res {
    let headers: Vec<(&str, &str)> = key.iter().map(|k| ("idempotency-key", *k)).collect();
    kit.call_with(Method::POST, "/api/v1/reviews", Some(&who.token), Some(body), &headers).await
}

fn names(review: &Value) -> Vec<(String, String)> {
    review["reviewers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["verdict"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn ids_of(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
}

async fn a_team_reviews_unpushed_work_from_request_to_deletion(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("acme", "Ada", Role::Admin).await;
    let bob = kit.join("acme", "Bob", Role::Member).await;
    let cy = kit.join("acme", "Cy", Role::Member).await;
    let dee = kit.join("acme", "Dee", Role::Member).await;
    let rv = id();
    let path = format!("/api/v1/reviews/{rv}");

    // Bob asks Cy and Dee; the same request sent again with its key is done once.
    let sent = new_review(&rv, REPO, "Round totals once", &[&cy.member_id, &dee.member_id]);
    let made = ask(&kit, &bob, sent.clone(), Some("outbox-review-1")).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let r = &made.json;
    assert_eq!(
        (r["id"].as_str(), r["repo"].as_str(), r["author"].as_str()),
        (Some(rv.as_str()), Some(REPO), Some("Bob"))
    );
    assert_eq!(r["author_id"], bob.member_id.as_str());
    assert_eq!((r["title"].as_str(), r["status"].as_str()), (Some("Round totals once"), Some("open")));
    assert_eq!(r["description"], "description of Round totals once");
    assert_eq!(names(r), pairs(&[("Cy", "pending"), ("Dee", "pending")]));
    let rev1 = &r["revisions"][0];
    assert_eq!((rev1["number"].as_u64(), rev1["base"].as_str()), (Some(1), Some(kit::BASE)));
    assert_eq!(rev1["base_note"], "merge-base with origin/main");
    assert_eq!(
        rev1["files"],
        json!([
            {"old_path": "src/cart.rs", "new_path": "src/cart.rs", "binary": false, "added": 2, "removed": 1},
            {"old_path": "logo.png", "new_path": "logo.png", "binary": true, "added": 0, "removed": 0},
            {"old_path": null, "new_path": "src/new.rs", "binary": false, "added": 2, "removed": 0},
        ]),
        "counted from the + and - lines, a `+++` line included"
    );
    let again = ask(&kit, &bob, sent.clone(), Some("outbox-review-1")).await;
    assert_eq!((again.status, &again.json), (201, &made.json), "a replay answers the first status, as it is now");
    let dup = ask(&kit, &bob, sent.clone(), None).await;
    assert_eq!((dup.status, dup.code()), (409, "conflict"), "{}", dup.text);

    // Who sees it where.
    let list = |who: &User, query: &'static str| {
        let token = who.token.clone();
        let kit = &kit;
        async move {
            let res = kit.call(Method::GET, &format!("/api/v1/reviews{query}"), Some(&token), None).await;
            assert_eq!(res.status, 200, "{query}: {}", res.text);
            res.json
        }
    };
    assert_eq!(ids_of(&list(&cy, "?for=me").await), [rv.as_str()]);
    assert_eq!(ids_of(&list(&bob, "?for=me").await), Vec::<&str>::new());
    assert_eq!(ids_of(&list(&bob, "?for=mine").await), [rv.as_str()]);
    assert_eq!(ids_of(&list(&cy, "?for=mine").await), Vec::<&str>::new());
    assert_eq!(ids_of(&list(&ada, "").await), [rv.as_str()]);
    let bad = kit.call(Method::GET, "/api/v1/reviews?for=everyone", Some(&ada.token), None).await;
    assert_eq!((bad.status, bad.field()), (400, Some("for")));
    let got = kit.call(Method::GET, &path, Some(&ada.token), None).await;
    assert_eq!((got.status, &got.json), (200, &made.json));

    // Revision 1's patches come back exactly as they were sent.
    let rev = kit.call(Method::GET, &format!("{path}/revisions/1"), Some(&dee.token), None).await;
    assert_eq!(rev.status, 200, "{}", rev.text);
    assert_eq!(rev.json["files"][0]["patch"].as_str(), Some(CART_PATCH));
    let sent_rev = &sent["revision"];
    for field in ["id", "base", "base_note", "head", "created"] {
        assert_eq!(rev.json[field], sent_rev[field], "{field}");
    }
    let sent_files: Vec<marginalia::api::FilePatch> = serde_json::from_value(sent_rev["files"].clone()).unwrap();
    let got_files: Vec<marginalia::api::FilePatch> = serde_json::from_value(rev.json["files"].clone()).unwrap();
    assert_eq!(got_files, sent_files);
    assert_eq!(rev.json["number"], 1);
    assert_eq!(kit.call(Method::GET, &format!("{path}/revisions/2"), Some(&dee.token), None).await.status, 404);
    let nan = kit.call(Method::GET, &format!("{path}/revisions/first"), Some(&dee.token), None).await;
    assert_eq!((nan.status, nan.field()), (400, Some("number")));

    // Comments are codemarks linked to the review; a link must point at something there.
    let c1 = id();
    let comment = review_comment(&c1, REPO, &rv, 1, "src/cart.rs", "new", "Why round here?");
    let said = kit.call(Method::POST, "/api/v1/codemarks", Some(&cy.token), Some(comment)).await;
    assert_eq!(said.status, 201, "{}", said.text);
    let link = json!({"review": rv, "revision": 1, "path": "src/cart.rs", "side": "new"});
    assert_eq!(said.json["review"], link);
    let c2 = id();
    let old_side = review_comment(&c2, REPO, &rv, 1, "src/cart.rs", "old", "This was fine");
    assert_eq!(kit.call(Method::POST, "/api/v1/codemarks", Some(&dee.token), Some(old_side)).await.status, 201);
    for (revision, file, side, field) in [
        (2, "src/cart.rs", "new", "review.revision"),
        (1, "src/other.rs", "new", "review.path"),
        (1, "src/new.rs", "old", "review.path"),
        (1, "../src/cart.rs", "new", "review.path"),
    ] {
        let wrong = review_comment(&id(), REPO, &rv, revision, file, side, "x");
        let res = kit.call(Method::POST, "/api/v1/codemarks", Some(&cy.token), Some(wrong)).await;
        assert_eq!((res.status, res.field()), (422, Some(field)), "{file} {side}: {}", res.text);
    }
    let nowhere = review_comment(&id(), REPO, &id(), 1, "src/cart.rs", "new", "x");
    let res = kit.call(Method::POST, "/api/v1/codemarks", Some(&cy.token), Some(nowhere)).await;
    assert_eq!((res.status, res.field()), (422, Some("review.review")));
    let listed = kit.call(Method::GET, "/api/v1/codemarks", Some(&bob.token), None).await;
    let linked: Vec<&Value> = listed.json.as_array().unwrap().iter().map(|c| &c["review"]).collect();
    assert_eq!(linked, [&link, &json!({"review": rv, "revision": 1, "path": "src/cart.rs", "side": "old"})]);
    let one = kit.call(Method::GET, &format!("/api/v1/codemarks/{c1}"), Some(&bob.token), None).await;
    assert_eq!(one.json["review"], link);
    let feed = kit.call(Method::GET, "/api/v1/changes", Some(&bob.token), None).await;
    let comment_event = feed.json["events"].as_array().unwrap().iter().find(|e| e["codemark"]["id"] == c1.as_str());
    assert_eq!(comment_event.expect("the comment is in the feed")["codemark"]["review"], link);

    // Verdicts, and the status they make.
    let verdict = |who: &User, v: &'static str| {
        let (token, path) = (who.token.clone(), format!("{path}/verdict"));
        let kit = &kit;
        async move { kit.call(Method::POST, &path, Some(&token), Some(json!({"verdict": v}))).await }
    };
    let own = verdict(&bob, "approved").await;
    assert_eq!((own.status, own.code()), (403, "forbidden"), "the author does not judge their own request");
    let odd = verdict(&cy, "lgtm").await;
    assert_eq!((odd.status, odd.field()), (422, Some("verdict")));
    let approved = verdict(&cy, "approved").await;
    assert_eq!((approved.status, approved.json["status"].as_str()), (200, Some("approved")), "{}", approved.text);
    let asked = verdict(&dee, "changes_requested").await;
    assert_eq!(asked.json["status"], "changes_requested", "a request for changes outweighs an approval");
    let by_ada = verdict(&ada, "approved").await;
    assert_eq!(names(&by_ada.json), pairs(&[("Cy", "approved"), ("Dee", "changes_requested"), ("Ada", "approved")]));
    assert_eq!(by_ada.json["status"], "changes_requested");

    // A new revision: the author's only; numbered 2; every verdict starts over; once per key.
    let second = new_revision(&id(), "@@ -1,1 +1,1 @@\n-    a + b\n+    (a + b).round_ties_even()\n");
    let by_cy = kit.call(Method::POST, &format!("{path}/revisions"), Some(&cy.token), Some(second.clone())).await;
    assert_eq!((by_cy.status, by_cy.code()), (403, "forbidden"));
    let key = [("idempotency-key", "outbox-revision-2")];
    let revised =
        kit.call_with(Method::POST, &format!("{path}/revisions"), Some(&bob.token), Some(second.clone()), &key).await;
    assert_eq!(revised.status, 201, "{}", revised.text);
    let numbers: Vec<u64> =
        revised.json["revisions"].as_array().unwrap().iter().map(|r| r["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(revised.json["revisions"][1]["files"][0]["added"], 1);
    assert_eq!(names(&revised.json), pairs(&[("Cy", "pending"), ("Dee", "pending"), ("Ada", "pending")]));
    assert_eq!(revised.json["status"], "open");
    let replayed =
        kit.call_with(Method::POST, &format!("{path}/revisions"), Some(&bob.token), Some(second.clone()), &key).await;
    assert_eq!((replayed.status, &replayed.json), (201, &revised.json), "the replay added nothing");
    let rev2 = kit.call(Method::GET, &format!("{path}/revisions/2"), Some(&cy.token), None).await;
    assert_eq!(rev2.json["files"][0]["patch"], second["files"][0]["patch"]);
    assert_eq!(verdict(&dee, "approved").await.json["status"], "approved");

    // Reviewers replaced: the author cannot be one, nor a stranger, nor one twice; who stays
    // keeps their verdict.
    let stranger = id();
    for (list, field) in [
        (json!([dee.member_id, bob.member_id]), "reviewers[1]"),
        (json!([dee.member_id, stranger]), "reviewers[1]"),
        (json!([dee.member_id, dee.member_id]), "reviewers[1]"),
    ] {
        let res = kit.call(Method::PATCH, &path, Some(&bob.token), Some(json!({"reviewers": list}))).await;
        assert_eq!((res.status, res.field()), (422, Some(field)), "{}", res.text);
    }
    let replaced = kit
        .call(Method::PATCH, &path, Some(&bob.token), Some(json!({"reviewers": [dee.member_id, cy.member_id]})))
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(names(&replaced.json), pairs(&[("Dee", "approved"), ("Cy", "pending")]));

    // Closing and reopening: the author or an admin; a closed review takes no revision, but
    // its discussion goes on.
    let by_cy = kit.call(Method::PATCH, &path, Some(&cy.token), Some(json!({"status": "closed"}))).await;
    assert_eq!((by_cy.status, by_cy.code()), (403, "forbidden"));
    let closed = kit
        .call(Method::PATCH, &path, Some(&bob.token), Some(json!({"status": "closed", "title": "Round totals, once"})))
        .await;
    assert_eq!(
        (closed.json["status"].as_str(), closed.json["title"].as_str()),
        (Some("closed"), Some("Round totals, once"))
    );
    assert_eq!(ids_of(&list(&cy, "?for=me").await), Vec::<&str>::new(), "open ones by default");
    assert_eq!(ids_of(&list(&cy, "?for=me&status=all").await), [rv.as_str()]);
    let late = kit
        .call(Method::POST, &format!("{path}/revisions"), Some(&bob.token), Some(new_revision(&id(), CART_PATCH)))
        .await;
    assert_eq!((late.status, late.code()), (409, "conflict"), "{}", late.text);
    let c3 = id();
    let after_close = review_comment(&c3, REPO, &rv, 2, "src/cart.rs", "new", "Still: why?");
    assert_eq!(kit.call(Method::POST, "/api/v1/codemarks", Some(&cy.token), Some(after_close)).await.status, 201);
    let reopened = kit.call(Method::PATCH, &path, Some(&ada.token), Some(json!({"status": "open"}))).await;
    assert_eq!(reopened.json["status"], "approved", "Dee's approval of revision 2 still stands");

    // Export: Bob's request; Cy's comments with their links.
    let export = kit.call(Method::GET, "/api/v1/export", Some(&bob.token), None).await;
    assert_eq!(ids_of(&export.json["reviews"]), [rv.as_str()]);
    let export = kit.call(Method::GET, "/api/v1/export", Some(&cy.token), None).await;
    assert_eq!(export.json["reviews"], json!([]));
    assert_eq!(export.json["codemarks"][0]["review"], link);
    assert!(kit.call(Method::GET, "/metrics", None, None).await.text.contains("marginalia_reviews 1"));

    // Deleting: the author or an admin; the review, its revisions, verdicts and comments go.
    let before = kit.call(Method::GET, "/api/v1/changes", Some(&ada.token), None).await.json["cursor"].clone();
    assert_eq!(kit.call(Method::DELETE, &path, Some(&cy.token), None).await.status, 403);
    let del_key = [("idempotency-key", "outbox-delete")];
    assert_eq!(kit.call_with(Method::DELETE, &path, Some(&bob.token), None, &del_key).await.status, 204);
    assert_eq!(kit.call_with(Method::DELETE, &path, Some(&bob.token), None, &del_key).await.status, 204);
    assert_eq!(kit.call(Method::DELETE, &path, Some(&bob.token), None).await.status, 404);
    assert_eq!(kit.call(Method::GET, &path, Some(&bob.token), None).await.status, 404);
    assert_eq!(kit.call(Method::GET, &format!("{path}/revisions/1"), Some(&bob.token), None).await.status, 404);
    for c in [&c1, &c2, &c3] {
        assert_eq!(kit.call(Method::GET, &format!("/api/v1/codemarks/{c}"), Some(&bob.token), None).await.status, 404);
    }
    assert_eq!(ids_of(&list(&ada, "?status=all").await), Vec::<&str>::new());
    let feed = kit
        .call(Method::GET, &format!("/api/v1/changes?after={}", before.as_str().unwrap()), Some(&ada.token), None)
        .await;
    let mut said: Vec<Value> =
        feed.json["events"].as_array().unwrap().iter().map(|e| json!({"type": e["type"], "id": e["id"]})).collect();
    let last = said.pop().unwrap();
    assert_eq!(last, json!({"type": "review_deleted", "id": rv}));
    said.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
    let mut comments = [&c1, &c2, &c3].map(|c| json!({"type": "codemark_deleted", "id": c})).to_vec();
    comments.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
    assert_eq!(said, comments, "{}", feed.text);
    let log = kit.call(Method::GET, "/api/v1/audit", Some(&ada.token), None).await;
    let entry = log.json.as_array().unwrap().iter().find(|e| e["action"] == "review.deleted").expect("audited");
    assert_eq!((entry["target_id"].as_str(), entry["detail"].as_str()), (Some(rv.as_str()), Some("comments=3")));
    assert_eq!(entry["actor_id"].as_str(), Some(bob.member_id.as_str()));
    for (table, column) in
        [("reviews", "id"), ("revisions", "review_id"), ("reviewers", "review_id"), ("codemarks", "review_id")]
    {
        let n = kit.number(&format!("SELECT count(*) FROM {table} WHERE {column} = '{rv}'")).await;
        assert_eq!(n, 0, "{table} keeps nothing of the deleted review");
    }
    assert!(kit.call(Method::GET, "/metrics", None, None).await.text.contains("marginalia_reviews 0"));
}

async fn a_reply_to_a_review_comment_goes_when_the_review_is_deleted(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let bob = kit.join("t", "Bob", Role::Member).await;
    let rv = id();
    assert_eq!(ask(&kit, &bob, new_review(&rv, REPO, "t", &[&ada.member_id]), None).await.status, 201);
    let c = id();
    let comment = review_comment(&c, REPO, &rv, 1, "src/new.rs", "new", "nit");
    assert_eq!(kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(comment)).await.status, 201);
    let reply = json!({"id": id(), "body": "REPLY-on-a-review-comment", "created": 3});
    let replied =
        kit.call(Method::POST, &format!("/api/v1/codemarks/{c}/replies"), Some(&bob.token), Some(reply)).await;
    assert_eq!(replied.status, 201);
    // An admin may delete another's review.
    assert_eq!(kit.call(Method::DELETE, &format!("/api/v1/reviews/{rv}"), Some(&ada.token), None).await.status, 204);
    let n = kit.number(&format!("SELECT count(*) FROM replies WHERE codemark_id = '{c}'")).await;
    assert_eq!(n, 0, "the comment's replies went with it");
    let late = review_comment(&id(), REPO, &rv, 1, "src/new.rs", "new", "too late");
    let res = kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(late)).await;
    assert_eq!((res.status, res.field()), (422, Some("review.review")));
}

async fn oversized_revisions_and_hostile_paths_are_refused_naming_the_field(backend: Backend) {
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let bob = kit.join("t", "Bob", Role::Member).await;

    // Over the codemark routes' 2 MiB but within a revision's cap: taken, on these two routes.
    let rv = id();
    let mut big = new_review(&rv, REPO, "big", &[]);
    let three_mib = format!("@@ -0,0 +1,1 @@\n+{}\n", "x".repeat(3 << 20));
    big["revision"]["files"][2]["patch"] = json!(three_mib);
    let res = ask(&kit, &ada, big, None).await;
    assert_eq!(res.status, 201, "{}", res.text);
    let back = kit.call(Method::GET, &format!("/api/v1/reviews/{rv}/revisions/1"), Some(&bob.token), None).await;
    assert_eq!(back.json["files"][2]["patch"].as_str(), Some(three_mib.as_str()));

    // 18 MiB of patches in a body under 20 MiB: refused for the patches, with the cap stated.
    let nine_mib = format!("@@ -0,0 +1,1 @@\n+{}\n", "y".repeat(9 << 20));
    let mut over = new_review(&id(), REPO, "too big", &[]);
    over["revision"]["files"][0]["patch"] = json!(nine_mib);
    over["revision"]["files"][2]["patch"] = json!(nine_mib);
    let total = 2 * nine_mib.len();
    let res = ask(&kit, &ada, over, None).await;
    assert_eq!((res.status, res.code(), res.field()), (413, "too_large", Some("revision.files")), "{}", res.text);
    assert_eq!(res.message(), format!("the patches are {total} bytes; a revision takes at most 16777216"));
    let mut over = new_revision(&id(), &nine_mib);
    over["files"][2]["patch"] = json!(nine_mib);
    let res = kit.call(Method::POST, &format!("/api/v1/reviews/{rv}/revisions"), Some(&ada.token), Some(over)).await;
    assert_eq!((res.status, res.field()), (413, Some("files")), "{}", res.text);
    assert!(res.message().contains("at most 16777216"), "{}", res.message());

    // A body over 20 MiB is refused before it is read whole, saying both limits.
    let huge = format!(r#"{{"pad": "{}"}}"#, "z".repeat(21 << 20));
    let req = Request::post("/api/v1/reviews")
        .header("authorization", format!("Bearer {}", ada.token))
        .body(Body::from(huge))
        .unwrap();
    let res = kit.send(req).await;
    assert_eq!((res.status, res.code()), (413, "too_large"));
    assert!(res.message().contains("20971520") && res.message().contains("16777216"), "{}", res.message());
    // The other routes keep their 2 MiB.
    let patch = json!({"description": "d".repeat(3 << 20)});
    let res = kit.call(Method::PATCH, &format!("/api/v1/reviews/{rv}"), Some(&ada.token), Some(patch)).await;
    assert_eq!(res.status, 413);
    assert!(res.message().contains(&(2 << 20).to_string()), "{}", res.message());

    // Paths that would leave the repository, or reach into .git.
    for bad in ["../x", "/etc/passwd", ".git/config", "a/.GIT/b", "src/../../x", "C:/Windows/x", "a\\b"] {
        for (side, field) in [("new_path", "revision.files[0].new_path"), ("old_path", "revision.files[0].old_path")] {
            let mut body = new_review(&id(), REPO, "hostile", &[]);
            body["revision"]["files"][0][side] = json!(bad);
            let res = ask(&kit, &ada, body, None).await;
            assert_eq!((res.status, res.field()), (422, Some(field)), "{bad:?}: {}", res.text);
        }
        let mut body = new_revision(&id(), CART_PATCH);
        body["files"][2]["new_path"] = json!(bad);
        let res =
            kit.call(Method::POST, &format!("/api/v1/reviews/{rv}/revisions"), Some(&ada.token), Some(body)).await;
        assert_eq!((res.status, res.field()), (422, Some("files[2].new_path")), "{bad:?}: {}", res.text);
    }
    let refused = |edit: fn(&mut Value), field: &'static str| {
        let mut body = new_review(&id(), REPO, "bad", &[]);
        edit(&mut body);
        let kit = &kit;
        let token = ada.token.clone();
        async move {
            let res = kit.call(Method::POST, "/api/v1/reviews", Some(&token), Some(body)).await;
            assert_eq!((res.status, res.field()), (422, Some(field)), "{}", res.text);
        }
    };
    refused(|b| b["revision"]["files"][1]["patch"] = json!("@@ -1 +1 @@\n-a\n+b\n"), "revision.files[1].patch").await;
    refused(|b| b["revision"]["files"][0]["new_mode"] = json!("100777"), "revision.files[0].new_mode").await;
    refused(|b| b["revision"]["files"][0]["old_blob"] = json!("HEAD"), "revision.files[0].old_blob").await;
    refused(|b| b["revision"]["files"][0]["new_path"] = Value::Null, "revision.files[0].new_mode").await;
    refused(
        |b| {
            b["revision"]["files"][2]["new_path"] = Value::Null;
            b["revision"]["files"][2]["new_mode"] = Value::Null;
            b["revision"]["files"][2]["new_blob"] = Value::Null;
        },
        "revision.files[2]",
    )
    .await;
    refused(|b| b["revision"]["base"] = json!("main"), "revision.base").await;
    refused(|b| b["revision"]["id"] = json!("r1"), "revision.id").await;
    refused(|b| b["id"] = json!("not-a-uuid"), "id").await;
    refused(|b| b["title"] = json!(" "), "title").await;
    refused(|b| b["reviewers"] = json!(["Bob"]), "reviewers[0]").await;
    refused(|b| b["reviewers"] = json!([id()]), "reviewers[0]").await;
    refused(|b| b["revision"]["files"] = json!([]), "revision.files").await;
    refused(|b| b["revision"]["files"][0]["side"] = json!("x"), "revision.files[0].side").await;
    let own = new_review(&id(), REPO, "mine", &[&ada.member_id]);
    let res = ask(&kit, &ada, own, None).await;
    assert_eq!((res.status, res.field()), (422, Some("reviewers[0]")), "{}", res.text);
    let mut many = new_review(&id(), REPO, "many", &[]);
    let one = many["revision"]["files"][2].clone();
    many["revision"]["files"] = Value::Array(
        (0..5001)
            .map(|i| {
                let mut f = one.clone();
                f["new_path"] = json!(format!("f{i}"));
                f
            })
            .collect(),
    );
    let res = ask(&kit, &ada, many, None).await;
    assert_eq!((res.status, res.field()), (422, Some("revision.files")), "{}", res.text);
    let listed = kit.call(Method::GET, "/api/v1/reviews?status=all", Some(&ada.token), None).await;
    assert_eq!(ids_of(&listed.json), [rv.as_str()], "nothing refused was stored");
}

async fn the_feed_and_the_stream_carry_reviews_as_they_are_and_a_deleted_one_as_deleted(backend: Backend) {
    use tower::ServiceExt;
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let bob = kit.join("t", "Bob", Role::Member).await;
    let req = Request::get("/api/v1/events").header("authorization", format!("Bearer {}", bob.token));
    let res = kit.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    let mut stream = res.into_body();

    let (kept, gone) = (id(), id());
    assert_eq!(ask(&kit, &ada, new_review(&kept, REPO, "kept", &[&bob.member_id]), None).await.status, 201); // 1
    let pushed = read_events(&mut stream, 1, Duration::from_secs(5)).await;
    assert_eq!(pushed.len(), 1, "a new review is pushed");
    assert_eq!((pushed[0].1["type"].as_str(), pushed[0].1["review"]["title"].as_str()), (Some("review"), Some("kept")));
    let verdict = json!({"verdict": "approved"});
    let path = format!("/api/v1/reviews/{kept}/verdict");
    assert_eq!(kit.call(Method::POST, &path, Some(&bob.token), Some(verdict)).await.status, 200); // 2
    let pushed = read_events(&mut stream, 1, Duration::from_secs(5)).await;
    assert_eq!(pushed[0].1["review"]["status"], "approved", "a verdict is pushed");
    assert_eq!(ask(&kit, &ada, new_review(&gone, REPO, "gone", &[]), None).await.status, 201); // 3
    let c = id();
    let comment = review_comment(&c, REPO, &gone, 1, "src/cart.rs", "old", "hm");
    assert_eq!(kit.call(Method::POST, "/api/v1/codemarks", Some(&bob.token), Some(comment)).await.status, 201); // 4
    assert_eq!(kit.call(Method::DELETE, &format!("/api/v1/reviews/{gone}"), Some(&ada.token), None).await.status, 204); // 5, 6
    // However the stream's pages fell, it ends with the comment and the review deleted.
    let mut pushed = Vec::new();
    while !pushed.iter().any(|(_, e): &(String, Value)| e["type"] == "review_deleted") {
        let more = read_events(&mut stream, 1, Duration::from_secs(5)).await;
        assert!(!more.is_empty(), "the deletion is pushed: {pushed:?}");
        pushed.extend(more);
    }
    let kinds: Vec<(&str, &str)> = pushed
        .iter()
        .map(|(_, e)| (e["type"].as_str().unwrap(), e["id"].as_str().or(e["review"]["id"].as_str()).unwrap_or("")))
        .collect();
    assert!(kinds.ends_with(&[("codemark_deleted", c.as_str()), ("review_deleted", gone.as_str())]), "{kinds:?}");

    // The feed from the start: each review once, as it is now; the deleted one as deleted.
    let feed = kit.call(Method::GET, "/api/v1/changes", Some(&bob.token), None).await;
    let events = feed.json["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{}", feed.text);
    assert_eq!((events[0]["cursor"].as_str(), events[0]["type"].as_str()), (Some("2"), Some("review")));
    assert_eq!(events[0]["review"]["id"], kept.as_str());
    assert_eq!(events[0]["review"]["status"], "approved");
    assert_eq!(events[1], json!({"cursor": "5", "type": "codemark_deleted", "id": c}));
    assert_eq!(events[2], json!({"cursor": "6", "type": "review_deleted", "id": gone}));
    // Another team's feed has none of it.
    let eve = kit.join("other", "Eve", Role::Admin).await;
    let theirs = kit.call(Method::GET, "/api/v1/changes", Some(&eve.token), None).await;
    assert_eq!(theirs.json["events"], json!([]));
}

async fn rotating_the_master_key_keeps_every_team_readable_under_the_new_key_only(backend: Backend) {
    use marginalia::server::backend::{Rotated, rotate_master_key};
    use marginalia::server::crypto::MasterKey;
    let kit = backend.kit().await;
    let ada = kit.join("acme", "Ada", Role::Admin).await;
    let eve = kit.join("other", "Eve", Role::Admin).await;
    let cm = id();
    let made = kit
        .call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&cm, REPO, "kept body", "s")))
        .await;
    assert_eq!(made.status, 201);
    let new = MasterKey::parse(&"5a".repeat(32), "the new key").unwrap();
    let done = rotate_master_key(kit.store.as_ref(), &kit::master(), &new).await.unwrap();
    assert_eq!(done, Rotated { rewrapped: 2, already: 0, renamed: 2 });
    // Run again (as after an interruption): nothing left to do, and the wrong key is refused.
    let again = rotate_master_key(kit.store.as_ref(), &kit::master(), &new).await.unwrap();
    assert_eq!(again, Rotated { rewrapped: 0, already: 2, renamed: 0 });
    let stranger = MasterKey::parse(&"77".repeat(32), "x").unwrap();
    assert!(
        rotate_master_key(kit.store.as_ref(), &stranger, &MasterKey::parse(&"78".repeat(32), "y").unwrap())
            .await
            .is_err()
    );

    let (team, wrapped) = kit.store.team_keys().await.unwrap().into_iter().find(|(t, _)| *t == ada.team_id).unwrap();
    assert!(kit::master().unwrap_team_key(&team, &wrapped).is_err(), "the old key opens nothing now");
    let kit = kit.restart_with(new).await;
    let read = kit.call(Method::GET, &format!("/api/v1/codemarks/{cm}"), Some(&ada.token), None).await;
    assert_eq!((read.status, read.json["body"].as_str()), (200, Some("kept body")), "{}", read.text);
    assert_eq!(kit.call(Method::GET, "/api/v1/me", Some(&eve.token), None).await.json["team"]["name"], "other");
    // The operator still finds the team by its name (its lookup code was recomputed).
    let (_, team, created) = kit.shared.service.operator_invite("acme", None, None).await.unwrap();
    assert_eq!((team.id.as_str(), created), (ada.team_id.as_str(), false));
    let log = kit.call(Method::GET, "/api/v1/audit", Some(&ada.token), None).await;
    assert!(log.text.contains("master_key.rotated"), "{}", log.text);
}

on_every_backend!(
    a_team_discusses_code_from_login_to_deletion,
    invites_are_single_use_expire_and_carry_their_role,
    an_expired_invite_is_refused,
    the_last_admin_can_be_neither_demoted_nor_removed,
    tokens_are_listed_without_secrets_and_revoked_for_good,
    a_repeated_idempotency_key_answers_the_first_status_with_current_state_even_after_a_restart,
    concurrent_requests_with_one_key_make_one_codemark,
    bad_input_gets_a_4xx_naming_what_was_wrong,
    every_answer_carries_the_security_headers_and_no_server_banner,
    a_token_over_its_rate_limit_is_told_when_to_come_back,
    the_changes_feed_points_at_live_codemarks_and_collapses_repeats,
    the_event_stream_catches_up_then_pushes_new_changes_and_ends_when_the_token_is_revoked,
    health_metrics_and_the_openapi_document_need_no_token_and_everything_else_does,
    the_openapi_document_and_the_router_agree,
    no_snippet_body_title_name_or_email_is_in_the_clear_in_the_files,
    deleting_a_team_leaves_its_old_backups_unreadable_and_other_teams_readable,
    the_audit_log_records_security_events_and_shows_tampering,
    concurrent_writes_committed_together_fail_and_succeed_one_by_one,
    a_team_reviews_unpushed_work_from_request_to_deletion,
    a_reply_to_a_review_comment_goes_when_the_review_is_deleted,
    oversized_revisions_and_hostile_paths_are_refused_naming_the_field,
    the_feed_and_the_stream_carry_reviews_as_they_are_and_a_deleted_one_as_deleted,
    rotating_the_master_key_keeps_every_team_readable_under_the_new_key_only,
    spoiled_requests_at_every_route_get_a_4xx_and_change_nothing,
);

/// One way to spoil a request: each always makes it invalid, whatever the route.
#[derive(Clone, Debug)]
enum Spoil {
    /// The JSON cut short after this many bytes (a prefix of an object is never a whole one).
    Truncated(proptest::sample::Index),
    /// A byte that is never UTF-8 (0xFF) put in at this place.
    NotUtf8(proptest::sample::Index),
    /// The value at this place (of the body's values, in document order) of another type.
    WrongType(proptest::sample::Index, proptest::sample::Index),
    /// The next string from this place made longer than any field's limit.
    Huge(proptest::sample::Index),
    /// A field no request has, in the next object from this place.
    Unknown(proptest::sample::Index, String),
    /// The next `id` field from this place (else the path's id) not a UUID.
    BadId(proptest::sample::Index, proptest::sample::Index),
}

fn spoil_strategy() -> impl proptest::strategy::Strategy<Value = (proptest::sample::Index, Spoil)> {
    use proptest::prelude::*;
    use proptest::sample::Index;
    let spoil = prop_oneof![
        any::<Index>().prop_map(Spoil::Truncated),
        any::<Index>().prop_map(Spoil::NotUtf8),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Spoil::WrongType(a, b)),
        any::<Index>().prop_map(Spoil::Huge),
        (any::<Index>(), "zz_[a-z]{1,12}").prop_map(|(a, k)| Spoil::Unknown(a, k)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Spoil::BadId(a, b)),
    ];
    (any::<Index>(), spoil)
}

const BAD_IDS: [&str; 6] = [
    "not-a-uuid",
    "0190c5a8-7b7e-7c3e-9f00-00000000000g",
    "'; DROP TABLE codemarks; --",
    "..%2F..%2Fetc%2Fpasswd",
    "%F0%28%8C%28",
    "",
];

/// `s` as one path segment: spaces, quotes and the like percent-encoded (a `%` already there is
/// kept, so the ids above may carry encoded bytes of their own).
fn in_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'%' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// JSON pointers to every value of `v`, the root first.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            m.iter().for_each(|(k, x)| pointers(x, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| pointers(x, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// The first pointer from `start` (going round) whose value passes `fits`.
fn next_fitting(body: &Value, start: &proptest::sample::Index, fits: impl Fn(&str, &Value) -> bool) -> Option<String> {
    let mut all = Vec::new();
    pointers(body, String::new(), &mut all);
    let first = start.index(all.len());
    (0..all.len()).map(|i| &all[(first + i) % all.len()]).find(|p| fits(p, body.pointer(p).unwrap())).cloned()
}

/// The request `spoil` makes of a route's valid request: its path and body bytes.
fn spoiled(path: &str, id: Option<&str>, body: &Value, spoil: &Spoil) -> (String, Vec<u8>) {
    let text = serde_json::to_vec(body).unwrap();
    let mut body = body.clone();
    let mut path = path.to_string();
    match spoil {
        Spoil::Truncated(at) => return (path, text[..at.index(text.len())].to_vec()),
        Spoil::NotUtf8(at) => {
            let mut text = text;
            text.insert(at.index(text.len() + 1), 0xFF);
            return (path, text);
        }
        Spoil::WrongType(at, with) => {
            let p = next_fitting(&body, at, |_, _| true).unwrap();
            let other: Vec<Value> = match body.pointer(&p).unwrap() {
                Value::String(_) => vec![json!(7), json!(true), json!([]), json!({})],
                Value::Number(_) => vec![json!("seven"), json!(true), json!([1]), json!({})],
                Value::Bool(_) => vec![json!(1), json!("yes"), json!([]), json!({})],
                Value::Array(_) => vec![json!("x"), json!(1), json!({"a": 1})],
                Value::Object(_) => vec![json!("x"), json!(1), json!([])],
                Value::Null => vec![json!(1), json!([]), json!({})],
            };
            *body.pointer_mut(&p).unwrap() = other[with.index(other.len())].clone();
        }
        Spoil::Huge(at) => {
            let p = next_fitting(&body, at, |_, v| v.is_string()).unwrap();
            *body.pointer_mut(&p).unwrap() = json!("x".repeat(300_000));
        }
        Spoil::Unknown(at, key) => {
            let p = next_fitting(&body, at, |_, v| v.is_object()).unwrap();
            body.pointer_mut(&p).unwrap().as_object_mut().unwrap().insert(key.clone(), json!(1));
        }
        Spoil::BadId(at, which) => {
            let bad = BAD_IDS[which.index(BAD_IDS.len())];
            match next_fitting(&body, at, |p, v| v.is_string() && (p.ends_with("/id") || p.ends_with("_id"))) {
                Some(p) => *body.pointer_mut(&p).unwrap() = json!(bad),
                None => match id {
                    Some(id) => path = path.replace(id, &in_path(bad)),
                    None => return (path, b"[".to_vec()),
                },
            }
        }
    }
    (path, serde_json::to_vec(&body).unwrap())
}

/// A route that takes a body: method, path, the id in the path, a valid body, the token.
type SpoiledRoute<'a> = (Method, String, Option<String>, Value, Option<&'a str>);

/// What a refused request must leave as it was: the rows of every table but the audit log, the
/// idempotency records and the rate limits, and what the team's members read (but the tokens'
/// `last_used`, which any request moves).
async fn everything_as_it_was(kit: &Kit, ada: &User, places: &[String]) -> Vec<String> {
    let mut seen = Vec::new();
    for table in [
        "teams",
        "members",
        "tokens",
        "invites",
        "repos",
        "codemarks",
        "replies",
        "events",
        "reviews",
        "revisions",
        "reviewers",
    ] {
        seen.push(format!("{table}: {}", kit.number(&format!("SELECT count(*) FROM {table}")).await));
    }
    for place in places {
        seen.push(kit.call(Method::GET, place, Some(&ada.token), None).await.text);
    }
    seen
}

/// Bad input at volume, as a property: generated spoilings (cut-short and non-UTF-8 JSON, values
/// of the wrong type, strings over every limit, unknown fields, ids that are no UUID) of a valid
/// request to every route that takes a body, plus oversized bodies and hostile ids in every path:
/// never a 5xx, never a panic, every write refused with a 4xx, and nothing stored or changed.
async fn spoiled_requests_at_every_route_get_a_4xx_and_change_nothing(backend: Backend) {
    use proptest::strategy::{Strategy, ValueTree};
    let kit = backend.kit().await;
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let bob = kit.join("t", "Bob", Role::Member).await;
    let (cm, reply, rv) = (id(), id(), id());
    let made =
        kit.call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&cm, REPO, "b", "s"))).await;
    assert_eq!(made.status, 201);
    let replied = json!({"id": reply, "body": "r", "created": 2});
    let made =
        kit.call(Method::POST, &format!("/api/v1/codemarks/{cm}/replies"), Some(&ada.token), Some(replied)).await;
    assert_eq!(made.status, 201);
    let made = kit.call(Method::POST, "/api/v1/reviews", Some(&ada.token), Some(new_review(&rv, REPO, "r", &[]))).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let code = kit.invite("t", Some(Role::Member)).await;
    let places = [
        format!("/api/v1/codemarks/{cm}"),
        format!("/api/v1/reviews/{rv}"),
        "/api/v1/members".to_string(),
        "/api/v1/repos".to_string(),
        "/api/v1/changes?limit=1000".to_string(),
    ];
    let before = everything_as_it_was(&kit, &ada, &places).await;

    let bob_id = bob.member_id.clone();
    // Each route that takes a body, with a valid body, and the id in its path.
    let routes: Vec<SpoiledRoute> = vec![
        (
            Method::POST,
            "/api/v1/login".into(),
            None,
            json!({"invite": code, "name": "Zed", "email": "z@example.com", "token_label": "t"}),
            None,
        ),
        (Method::POST, "/api/v1/invites".into(), None, json!({"role": "member", "ttl_hours": 24}), Some(&ada.token)),
        (
            Method::PATCH,
            format!("/api/v1/members/{bob_id}"),
            Some(bob_id.clone()),
            json!({"role": "admin"}),
            Some(&ada.token),
        ),
        (Method::POST, "/api/v1/tokens".into(), None, json!({"label": "laptop"}), Some(&ada.token)),
        (
            Method::PUT,
            "/api/v1/repos".into(),
            None,
            json!({"key": "github.com/acme/other", "roots": ["1".repeat(40)]}),
            Some(&ada.token),
        ),
        (Method::POST, "/api/v1/codemarks".into(), None, new_codemark(&id(), REPO, "b", "s"), Some(&ada.token)),
        (
            Method::PATCH,
            format!("/api/v1/codemarks/{cm}"),
            Some(cm.clone()),
            json!({"body": "changed", "title": "changed", "status": "resolved"}),
            Some(&ada.token),
        ),
        (
            Method::POST,
            format!("/api/v1/codemarks/{cm}/replies"),
            Some(cm.clone()),
            json!({"id": id(), "body": "r", "created": 3}),
            Some(&ada.token),
        ),
        (Method::POST, "/api/v1/reviews".into(), None, new_review(&id(), REPO, "another", &[]), Some(&ada.token)),
        (
            Method::PATCH,
            format!("/api/v1/reviews/{rv}"),
            Some(rv.clone()),
            json!({"title": "x", "description": "y", "status": "closed", "reviewers": [bob_id]}),
            Some(&ada.token),
        ),
        (
            Method::POST,
            format!("/api/v1/reviews/{rv}/revisions"),
            Some(rv.clone()),
            new_revision(&id(), CART_PATCH),
            Some(&ada.token),
        ),
        (
            Method::POST,
            format!("/api/v1/reviews/{rv}/verdict"),
            Some(rv.clone()),
            json!({"verdict": "approved"}),
            Some(&bob.token),
        ),
    ];

    let send = |method: Method, path: String, body: Vec<u8>, token: Option<&str>| {
        let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        kit.send(req.body(Body::from(body)).unwrap())
    };

    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = spoil_strategy();
    let cases = 400;
    for _ in 0..cases {
        let (route, spoil) = strategy.new_tree(&mut runner).unwrap().current();
        let (method, path, path_id, body, token) = &routes[route.index(routes.len())];
        let (to, bytes) = spoiled(path, path_id.as_deref(), body, &spoil);
        let sent: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        let res = send(method.clone(), to.clone(), bytes, *token).await;
        assert!(
            (400..500).contains(&res.status),
            "{method} {to} with {sent} answered {}: {}",
            res.status,
            res.text.chars().take(300).collect::<String>()
        );
        assert!(res.json["error"]["code"].is_string(), "an error body: {}", res.text);
    }

    // Bodies over the request limit, at every route that takes one.
    for (method, path, _, _, token) in &routes {
        let limit = if path.ends_with("/revisions") || path == "/api/v1/reviews" {
            marginalia::api::limits::MAX_REVISION_REQUEST_BYTES
        } else {
            marginalia::api::limits::MAX_REQUEST_BYTES
        };
        let huge = format!(r#"{{"pad": "{}"}}"#, "y".repeat(limit));
        let res = send(method.clone(), path.clone(), huge.into_bytes(), *token).await;
        assert_eq!((res.status, res.code()), (413, "too_large"), "{method} {path}");
    }
    // Hostile ids in every path that has one, whatever the method (a DELETE too).
    let templates = [
        (Method::PATCH, "/api/v1/members/{}"),
        (Method::DELETE, "/api/v1/members/{}"),
        (Method::DELETE, "/api/v1/tokens/{}"),
        (Method::GET, "/api/v1/codemarks/{}"),
        (Method::PATCH, "/api/v1/codemarks/{}"),
        (Method::DELETE, "/api/v1/codemarks/{}"),
        (Method::POST, "/api/v1/codemarks/{}/replies"),
        (Method::DELETE, "/api/v1/codemarks/{}/replies/{}"),
        (Method::GET, "/api/v1/reviews/{}"),
        (Method::PATCH, "/api/v1/reviews/{}"),
        (Method::DELETE, "/api/v1/reviews/{}"),
        (Method::POST, "/api/v1/reviews/{}/revisions"),
        (Method::GET, "/api/v1/reviews/{}/revisions/{}"),
        (Method::POST, "/api/v1/reviews/{}/verdict"),
    ];
    let long = "a".repeat(5000);
    for (method, template) in &templates {
        for bad in BAD_IDS.iter().copied().chain([long.as_str(), "-1", "99999999999999999999999"]) {
            let path = template.replace("{}", &in_path(bad));
            if path.contains("//") || path.ends_with('/') {
                continue;
            }
            let res = send(method.clone(), path.clone(), b"{}".to_vec(), Some(&ada.token)).await;
            assert!((400..500).contains(&res.status), "{method} {path} answered {}: {}", res.status, res.text);
        }
    }
    // Hostile query strings on the reads.
    for q in [
        "/api/v1/changes?after=-1",
        "/api/v1/changes?limit=abc",
        "/api/v1/changes?after=99999999999999999999999",
        "/api/v1/events?after=%FF",
        "/api/v1/codemarks?repo=%00",
        "/api/v1/reviews?status=%27",
        "/api/v1/export?x=%ZZ",
    ] {
        let res = kit.call(Method::GET, q, Some(&ada.token), None).await;
        assert!(res.status < 500, "{q} answered {}: {}", res.status, res.text);
    }

    assert_eq!(everything_as_it_was(&kit, &ada, &places).await, before, "nothing stored, nothing changed");
}
