//! The sync server's API as clients use it, driven without a socket (tower's `oneshot` on
//! `server::app`): sessions end to end, idempotency across restarts, bad input, limits, the
//! changes feed and event stream, the OpenAPI document against the router, encryption at rest
//! down to the file's bytes, crypto-shredding of old backups, and the audit chain.

#[path = "common/server.rs"]
mod kit;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use kit::{Kit, id, new_codemark};
use marginalia::api::Role;
use marginalia::server::crypto::Place;

const REPO: &str = "github.com/acme/shop";

#[tokio::test]
async fn a_team_discusses_code_from_login_to_deletion() {
    let kit = Kit::new();
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

#[tokio::test]
async fn invites_are_single_use_expire_and_carry_their_role() {
    let kit = Kit::new();
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

#[tokio::test]
async fn an_expired_invite_is_refused() {
    use marginalia::server::db::{Batch, InviteRow, Storage, Write};
    let kit = Kit::new();
    let admin = kit.join("t", "Admin", Role::Admin).await;
    let code = format!("inv_{}", "e".repeat(43));
    let storage = marginalia::server::db::sqlite::SqliteStorage::open(kit.dir.path()).unwrap();
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

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_removed() {
    let kit = Kit::new();
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

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_revoked_for_good() {
    let kit = Kit::new();
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

#[tokio::test]
async fn a_repeated_idempotency_key_answers_the_first_status_with_current_state_even_after_a_restart() {
    let kit = Kit::new();
    let ada = kit.join("t", "Ada", Role::Admin).await;
    let cm = id();
    let key = [("idempotency-key", "outbox-1")];
    let body = new_codemark(&cm, REPO, "first", "snippet");
    let first = kit.call_with(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(body.clone()), &key).await;
    assert_eq!(first.status, 201);
    // Changed since by someone else's request: the replay shows it as it is now.
    kit.call(Method::PATCH, &format!("/api/v1/codemarks/{cm}"), Some(&ada.token), Some(json!({"status": "resolved"})))
        .await;
    let kit = kit.restart();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_make_one_codemark() {
    use tower::ServiceExt;
    let kit = Kit::new();
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

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_what_was_wrong() {
    let kit = Kit::new();
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

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_no_server_banner() {
    let kit = Kit::new();
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

#[tokio::test]
async fn a_token_over_its_rate_limit_is_told_when_to_come_back() {
    let kit = Kit::with_rate(1.0, 3.0);
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

#[tokio::test]
async fn the_changes_feed_points_at_live_codemarks_and_collapses_repeats() {
    let kit = Kit::new();
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

/// Reads SSE frames from a response body until `n` events arrived (or the time is up).
async fn read_events(body: &mut Body, n: usize, within: Duration) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + within;
    while events.len() < n {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            _ => break,
        };
        if let Some(data) = frame.data_ref() {
            buffer.push_str(&String::from_utf8_lossy(data));
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_event_stream_catches_up_then_pushes_new_changes_and_ends_when_the_token_is_revoked() {
    use tower::ServiceExt;
    let kit = Kit::new();
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

#[tokio::test]
async fn health_metrics_and_the_openapi_document_need_no_token_and_everything_else_does() {
    let kit = Kit::new();
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

#[tokio::test]
async fn the_openapi_document_and_the_router_agree() {
    let kit = Kit::new();
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
            .replace("{reply_id}", "00000000-0000-7000-8000-000000000001");
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
    kit.call(Method::GET, "/api/v1/export", Some(&token), None).await;
    // And it all reads back in the clear through the API.
    let read = kit.call(Method::GET, &format!("/api/v1/codemarks/{cm}"), Some(&token), None).await;
    for s in &SECRETS[3..] {
        assert!(read.text.contains(s), "{s} reads back");
    }
    token
}

fn files_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_snippet_body_title_name_or_email_is_in_the_clear_in_the_files() {
    let kit = Kit::new();
    let token = sensitive_session(&kit).await;
    let files = files_bytes(kit.dir.path());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"server.db-wal"), "the session is (at least partly) in the WAL: {names:?}");
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert!(total > 50_000, "the files hold the session: {total} bytes");
    for (name, bytes) in &files {
        for s in SECRETS {
            assert!(!contains(bytes, s.as_bytes()), "{s:?} is in the clear in {name}");
        }
        assert!(!contains(bytes, token.as_bytes()), "the token is in the clear in {name}");
        assert!(!contains(bytes, &token.as_bytes()[4..]), "the token is in the clear in {name}");
    }
}

#[tokio::test]
async fn deleting_a_team_leaves_its_old_backups_unreadable_and_other_teams_readable() {
    let kit = Kit::new();
    let doomed = kit.join("doomed", "Dora", Role::Admin).await;
    let kept = kit.join("kept", "Kim", Role::Admin).await;
    let (d, k) = (id(), id());
    kit.call(Method::POST, "/api/v1/codemarks", Some(&doomed.token), Some(new_codemark(&d, REPO, "doomed body", "s")))
        .await;
    kit.call(Method::POST, "/api/v1/codemarks", Some(&kept.token), Some(new_codemark(&k, REPO, "kept body", "s")))
        .await;

    // An old backup of the data file, taken the way SQLite backups are (VACUUM INTO).
    let backup = kit.dir.path().join("backup-of-server.db");
    {
        let c = rusqlite::Connection::open(kit.dir.path().join("server.db")).unwrap();
        c.execute("VACUUM INTO ?1", [backup.to_str().unwrap()]).unwrap();
    }
    let open_from_backup = |team: &str, codemark: &str| -> Result<String, String> {
        let b = rusqlite::Connection::open(&backup).unwrap();
        let sealed: Vec<u8> = b
            .query_row("SELECT body_sealed FROM codemarks WHERE team_id = ?1 AND id = ?2", [team, codemark], |r| {
                r.get(0)
            })
            .map_err(|e| e.to_string())?;
        let keys = rusqlite::Connection::open(kit.dir.path().join("keys.db")).unwrap();
        let wrapped: Vec<u8> = keys
            .query_row("SELECT wrapped FROM team_keys WHERE team_id = ?1", [team], |r| r.get(0))
            .map_err(|e| format!("no key: {e}"))?;
        let key = kit::master().unwrap_team_key(team, &wrapped).map_err(|e| e.to_string())?;
        key.open_string(&Place { column: "codemarks.body", team, row: codemark }, &sealed).map_err(|e| e.to_string())
    };
    assert_eq!(open_from_backup(&doomed.team_id, &d).unwrap(), "doomed body", "before: the backup opens");

    assert_eq!(kit.call(Method::DELETE, "/api/v1/team", Some(&doomed.token), None).await.status, 204);
    let err = open_from_backup(&doomed.team_id, &d).unwrap_err();
    assert!(err.contains("no key"), "{err}");
    assert_eq!(open_from_backup(&kept.team_id, &k).unwrap(), "kept body", "another team's data still opens");
    // keys.db has no trace of the key's bytes either (secure delete, rollback journal).
    let keys_bytes = std::fs::read(kit.dir.path().join("keys.db")).unwrap();
    let b = rusqlite::Connection::open(&backup).unwrap();
    let team_name_sealed: Vec<u8> =
        b.query_row("SELECT name_sealed FROM teams WHERE id = ?1", [&doomed.team_id], |r| r.get(0)).unwrap();
    assert!(!team_name_sealed.is_empty());
    assert!(!contains(&keys_bytes, doomed.team_id.as_bytes()), "the deleted team's key row is overwritten");
    // The live data has nothing of the team left.
    let live = rusqlite::Connection::open(kit.dir.path().join("server.db")).unwrap();
    for table in ["teams", "members", "tokens", "codemarks", "replies", "repos", "events", "invites"] {
        let column = if table == "teams" { "id" } else { "team_id" };
        let n: i64 = live
            .query_row(&format!("SELECT count(*) FROM {table} WHERE {column} = ?1"), [&doomed.team_id], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table} keeps nothing of the deleted team");
    }
}

#[tokio::test]
async fn the_audit_log_records_security_events_and_shows_tampering() {
    let kit = Kit::new();
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
    use marginalia::server::db::Storage;
    let storage = marginalia::server::db::sqlite::SqliteStorage::open(kit.dir.path()).unwrap();
    let Verdict::Intact { entries } = storage.verify_audit().await.unwrap() else { panic!("intact") };
    assert!(entries >= 15, "{entries}");

    // The table refuses edits...
    let raw = rusqlite::Connection::open(kit.dir.path().join("server.db")).unwrap();
    let refused = raw.execute("UPDATE audit SET action = 'nothing' WHERE seq = 5", []).unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    // ...and one that goes around the trigger is caught by the chain.
    raw.execute_batch("DROP TRIGGER audit_append_only_update; DROP TRIGGER audit_append_only_delete;").unwrap();
    raw.execute("UPDATE audit SET target_id = 'someone-else' WHERE seq = 5", []).unwrap();
    match storage.verify_audit().await.unwrap() {
        Verdict::Broken { seq, checked, .. } => assert_eq!((seq, checked), (5, 4)),
        other => panic!("an edit in the middle is caught: {other:?}"),
    }
    let backup: (i64, String) =
        raw.query_row("SELECT seq, action FROM audit WHERE seq = 5", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(backup.0, 5);
    raw.execute("DELETE FROM audit WHERE seq = 5", []).unwrap();
    match storage.verify_audit().await.unwrap() {
        Verdict::Broken { seq, .. } => assert_eq!(seq, 6, "a deleted entry is caught at the next one"),
        other => panic!("a deletion in the middle is caught: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_committed_together_fail_and_succeed_one_by_one() {
    use marginalia::server::audit::Verdict;
    use marginalia::server::db::Storage;
    use tower::ServiceExt;
    let kit = Kit::new();
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
    let storage = marginalia::server::db::sqlite::SqliteStorage::open(kit.dir.path()).unwrap();
    assert!(matches!(storage.verify_audit().await.unwrap(), Verdict::Intact { .. }));
}
