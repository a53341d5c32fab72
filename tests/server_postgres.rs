//! What only PostgreSQL has: several server processes over one database. Here two servers in one
//! test process, each with its own connection pool and its own event-stream wake-ups, as two
//! processes would be (tests/server_faults.rs runs real processes): events made through one
//! reach listeners of the other, cursors resume on either, idempotency keys and rate limits hold
//! across both, a team's events become visible in sequence order even when their transactions
//! commit late, reads on the connections that point reads share see the other server's writes
//! and outlive connections the database cuts, migrations run once when servers start together,
//! a newer schema is refused, the keys can live in a database of their own, TLS to the database
//! is verified, and a token revoked, a member demoted or removed through one server is refused
//! promptly by the other though it had the token cached (and not trusted from the cache while
//! its listening connection is down).

#[path = "common/server.rs"]
mod kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::json;

use kit::{Kit, id, new_codemark, pg, read_events};
use marginalia::api::Role;
use marginalia::server::db::postgres::{DATA_MIGRATIONS, Options, PostgresStorage};
use marginalia::server::db::{Batch, DbError, EventDraft, Storage, Subject};

const REPO: &str = "github.com/acme/shop";

/// Two servers over one new database, or `None` (SKIPPED) without PostgreSQL.
async fn two_servers(per_second: f64, burst: f64) -> Option<(Kit, Kit)> {
    let server = pg::shared()?;
    let url = server.database().await;
    let one = Kit::over_postgres(tempfile::tempdir().unwrap(), url.clone(), per_second, burst).await;
    let two = Kit::over_postgres(tempfile::tempdir().unwrap(), url, per_second, burst).await;
    Some((one, two))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codemark_made_through_one_server_reaches_a_listener_of_the_other_and_cursors_resume_anywhere() {
    let Some((one, two)) = two_servers(0.0, 1.0).await else { return };
    let ada = one.join("acme", "Ada", Role::Admin).await;
    let bob = one.join("acme", "Bob", Role::Member).await;
    let mut stream = two.events(&bob, None).await;
    // Subscribed, and caught up (nothing yet): give the stream a moment to be waiting.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Promptly means through LISTEN/NOTIFY, not the slow poll: the commit notifies the channel
    // every process listens on (seen here by a listener of the test's own).
    let notified = notifications(one.database.as_deref().unwrap()).await;

    let cm = id();
    let started = Instant::now();
    let made = one
        .call(Method::POST, "/api/v1/codemarks", Some(&ada.token), Some(new_codemark(&cm, REPO, "from one", "s")))
        .await;
    assert_eq!(made.status, 201);
    let got = read_events(&mut stream, 1, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(got.len(), 1, "the event crossed over");
    assert_eq!(got[0].1["codemark"]["body"], "from one");
    println!("a codemark made through server one reached a listener of server two in {took:?}");
    let note = tokio::time::timeout(Duration::from_secs(5), notified).await;
    assert!(matches!(note, Ok(Ok(_))), "the commit notified the processes' channel: {note:?}");

    // A reply through two; the cursor server two gave resumes on server one.
    let reply = json!({"id": id(), "body": "from two", "created": 2});
    assert_eq!(
        two.call(Method::POST, &format!("/api/v1/codemarks/{cm}/replies"), Some(&bob.token), Some(reply)).await.status,
        201
    );
    let first_cursor = got[0].0.clone();
    let mut resumed = one.events(&ada, Some(&first_cursor)).await;
    let after = read_events(&mut resumed, 1, Duration::from_secs(5)).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1["codemark"]["replies"][0]["body"], "from two");
    let feed = two.call(Method::GET, &format!("/api/v1/changes?after={first_cursor}"), Some(&bob.token), None).await;
    assert_eq!(feed.json["cursor"], after[0].0.as_str(), "both servers number the team's events alike");

    // Revoking Bob's token through one ends his stream on two.
    let revoked = one.call(Method::DELETE, &format!("/api/v1/tokens/{}", bob.token_id), Some(&ada.token), None).await;
    assert_eq!(revoked.status, 204);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        use http_body_util::BodyExt;
        loop {
            match stream.frame().await {
                None | Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the other server's stream ended");
}

/// Listens on the channel the server processes use; the first notification's payload.
async fn notifications(url: &str) -> tokio::sync::oneshot::Receiver<String> {
    use futures_util::StreamExt;
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_string());
                return;
            }
        }
    });
    client.batch_execute("LISTEN marginalia").await.unwrap();
    // The client must live as long as the connection listens.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(client);
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_sent_to_both_servers_at_once_makes_one_codemark() {
    let Some((one, two)) = two_servers(0.0, 1.0).await else { return };
    let ada = one.join("t", "Ada", Role::Admin).await;
    let (one, two) = (Arc::new(one), Arc::new(two));
    for round in 0..10 {
        let cm = id();
        let key = format!("both-{round}");
        let mut tasks = Vec::new();
        for server in [&one, &two, &one, &two] {
            let (server, token, body, key) =
                (server.clone(), ada.token.clone(), new_codemark(&cm, REPO, "once", "s"), key.clone());
            tasks.push(tokio::spawn(async move {
                server
                    .call_with(
                        Method::POST,
                        "/api/v1/codemarks",
                        Some(&token),
                        Some(body),
                        &[("idempotency-key", &key)],
                    )
                    .await
            }));
        }
        for t in tasks {
            let res = t.await.unwrap();
            assert_eq!(res.status, 201, "every copy answers as the first did: {}", res.text);
            assert_eq!(res.json["id"], cm.as_str());
        }
    }
    let list = two.call(Method::GET, "/api/v1/codemarks", Some(&ada.token), None).await;
    assert_eq!(list.json.as_array().unwrap().len(), 10);
    let feed = one.call(Method::GET, "/api/v1/changes?limit=1000", Some(&ada.token), None).await;
    assert_eq!(feed.json["cursor"], "10", "one event each: {}", feed.text);
}

/// Point reads share pipelined connections: many at once through one server, each right after
/// a write through the other, all see that write; and when the database cuts every connection,
/// the shared ones are replaced, so reads answer again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_shared_connections_see_the_other_servers_writes_and_outlive_cut_connections() {
    let Some((one, two)) = two_servers(0.0, 1.0).await else { return };
    let ada = one.join("t", "Ada", Role::Admin).await;
    let (one, two) = (Arc::new(one), Arc::new(two));
    let mut tasks = Vec::new();
    let mut made = Vec::new();
    for n in 0..32 {
        let cm = id();
        made.push(cm.clone());
        let (one, two, token) = (one.clone(), two.clone(), ada.token.clone());
        tasks.push(tokio::spawn(async move {
            let body = format!("body {n}");
            let res =
                one.call(Method::POST, "/api/v1/codemarks", Some(&token), Some(new_codemark(&cm, REPO, &body, "s")));
            assert_eq!(res.await.status, 201);
            let read = two.call(Method::GET, &format!("/api/v1/codemarks/{cm}"), Some(&token), None).await;
            assert_eq!(read.status, 200, "written through one, read at once through two: {}", read.text);
            assert_eq!(read.json["body"], body.as_str());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    // The database cuts every connection of both servers (as a failover or a proxy would).
    let (client, connection) =
        tokio_postgres::connect(one.database.as_deref().unwrap(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let cut = client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'marginalia'",
            &[],
        )
        .await
        .unwrap();
    assert!(cut > 0, "the servers had connections to cut");
    // A read sent on a connection before it was seen to close fails (503); the next ones run on
    // fresh connections.
    let read = |cm: String| {
        let (two, token) = (two.clone(), ada.token.clone());
        async move { two.call(Method::GET, &format!("/api/v1/codemarks/{cm}"), Some(&token), None).await }
    };
    let mut tries = 0;
    loop {
        let res = read(made[0].clone()).await;
        if res.status == 200 {
            break;
        }
        assert_eq!(res.status, 503, "{}", res.text);
        tries += 1;
        assert!(tries < 10, "reads answer again once the connections are replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reads: Vec<_> = made.iter().map(|cm| tokio::spawn(read(cm.clone()))).collect();
    for r in reads {
        let res = r.await.unwrap();
        assert_eq!(res.status, 200, "{}", res.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_rate_limit_holds_across_servers() {
    let Some((one, two)) = two_servers(1.0, 3.0).await else { return };
    let ada = one.join("t", "Ada", Role::Admin).await;
    let statuses = [
        one.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await.status,
        two.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await.status,
        one.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await.status,
    ];
    assert_eq!(statuses, [200, 200, 200], "a burst of 3");
    let over = two.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await;
    assert_eq!(over.status, 429, "the fourth, on the other server, is over the shared limit");
    assert!(over.headers.contains_key("retry-after"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(one.call(Method::GET, "/api/v1/me", Some(&ada.token), None).await.status, 200, "refilled");
}

fn draft(team: &str) -> EventDraft {
    EventDraft { team_id: team.into(), subject: Subject::Codemark, id: id(), deleted: false }
}

fn events(n: usize, team: &str) -> Batch {
    Batch { events: (0..n).map(|_| draft(team)).collect(), ..Batch::default() }
}

/// The gap problem: a transaction that took its sequence number but has not committed yet must
/// not let a reader skip past it. Here a transaction holds the team's counter (as a slow commit
/// does); a batch committed meanwhile waits for it, so a reader never sees number N+1 before N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_skips_an_event_whose_transaction_commits_late() {
    let Some(server) = pg::shared() else { return };
    let url = server.database().await;
    let store = Arc::new(PostgresStorage::connect(&Options::new(&url)).await.unwrap());
    store.commit(events(1, "t")).await.unwrap();

    // A slow transaction: number 2 taken, not committed.
    let mut raw = kit::pg_client(&url).await;
    let slow = raw.transaction().await.unwrap();
    let taken: i64 = slow
        .query_one("UPDATE event_counters SET last_seq = last_seq + 1 WHERE team_id = 't' RETURNING last_seq", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(taken, 2);
    slow.execute(
        "INSERT INTO events (team_id, seq, kind, subject_id, deleted) VALUES ('t', 2, 'codemark', 'slow', false)",
        &[],
    )
    .await
    .unwrap();

    let fast = tokio::spawn({
        let store = store.clone();
        async move { store.commit(events(1, "t")).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: Vec<i64> = store.events("t", 1, 10).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seen, Vec::<i64>::new(), "nothing after 1 is visible while 2 is in flight");
    assert!(!fast.is_finished(), "the later batch waits for the counter");

    slow.commit().await.unwrap();
    let committed = fast.await.unwrap();
    assert_eq!(committed.events, [("t".to_string(), 3)]);
    let seen: Vec<(i64, String)> = store.events("t", 1, 10).await.unwrap().into_iter().map(|e| (e.seq, e.id)).collect();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].0, seen[0].1.as_str(), seen[1].0), (2, "slow", 3));
}

/// Many writers on two servers' storages while a reader follows the feed by cursor, as an event
/// stream does: the reader ends with every event, each once, in order, with no gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_the_feed_while_two_servers_write_sees_every_event_once() {
    let Some(server) = pg::shared() else { return };
    let url = server.database().await;
    let a = Arc::new(PostgresStorage::connect(&Options::new(&url)).await.unwrap());
    let b = Arc::new(PostgresStorage::connect(&Options::new(&url)).await.unwrap());
    let (writers, each) = (8, 40);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                store.commit(events(1 + (w + i) % 3, "t")).await.unwrap();
            }
        }));
    }
    let expected: i64 = (0..writers).flat_map(|w| (0..each).map(move |i| 1 + ((w + i) % 3) as i64)).sum();
    let mut cursor = 0;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (seen.len() as i64) < expected && Instant::now() < deadline {
        for e in a.events("t", cursor, 50).await.unwrap() {
            assert_eq!(e.seq, cursor + 1, "no gap, no repeat: after {cursor} came {}", e.seq);
            cursor = e.seq;
            seen.push(e.seq);
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(seen.len() as i64, expected, "the reader saw every event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(server) = pg::shared() else { return };
    let url = server.database().await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStorage::connect(&Options::new(&url)).await.map(drop) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let raw = kit::pg_client(&url).await;
    let versions: Vec<i32> = raw
        .query("SELECT version FROM marginalia_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=DATA_MIGRATIONS.len() as i32).collect::<Vec<_>>(), "each step once");

    let before: i64 = raw.query_one("SELECT count(*) FROM information_schema.tables", &[]).await.unwrap().get(0);
    raw.execute("INSERT INTO marginalia_schema (version, applied) VALUES (99, 0)", &[]).await.unwrap();
    let refused = PostgresStorage::connect(&Options::new(&url)).await.err().expect("refused");
    assert!(matches!(refused, DbError::NewerSchema { found: 99, .. }), "{refused}");
    let said = refused.to_string();
    assert!(said.contains("newer marginalia") && !said.contains("password"), "{said}");
    let after: i64 = raw.query_one("SELECT count(*) FROM information_schema.tables", &[]).await.unwrap().get(0);
    assert_eq!(before, after, "left untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_keys_can_live_in_a_database_of_their_own() {
    let Some(server) = pg::shared() else { return };
    let (data, keys) = (server.database().await, server.database().await);
    let options = Options { data: data.clone(), keys: Some(keys.clone()), pool: 4 };
    let backend =
        marginalia::server::backend::open(&marginalia::server::backend::Location::Postgres(options), 0.0, 1.0)
            .await
            .unwrap();
    assert!(backend.warnings.is_empty(), "apart: nothing to warn about");
    let shared = Arc::new(marginalia::server::Shared::over(backend, kit::master(), true));
    let (invite, team, _) = shared.service.operator_invite("apart", None, None).await.unwrap();
    assert!(invite.code.starts_with("inv_"));
    let data_has_table: bool = kit::pg_client(&data)
        .await
        .query_one("SELECT to_regclass('marginalia_team_keys') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!data_has_table, "the data's database holds no key table at all");
    let n: i64 = kit::pg_client(&keys)
        .await
        .query_one("SELECT count(*) FROM marginalia_team_keys WHERE team_id = $1", &[&team.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified_against_the_ca_given() {
    let Some(cluster) = pg::shared().and_then(|s| s.cluster()) else {
        if pg::shared().is_some() {
            eprintln!("SKIPPED: TLS to the database needs the tests' own cluster (its CA is made here)");
        }
        return;
    };
    let url = cluster.database().await;
    let plain = url.trim_end_matches("?sslmode=disable");
    let ca = cluster.ca_pem.display().to_string();
    for host in ["127.0.0.1", "localhost"] {
        let verified = format!("{}?sslmode=verify-full&sslrootcert={ca}", plain.replace("127.0.0.1", host));
        let store = PostgresStorage::connect(&Options::new(&verified)).await.unwrap();
        store.ping().await.unwrap();
        let raw = kit::pg_client(&url).await;
        let encrypted: bool = raw
            .query_one("SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'marginalia' AND datname = current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(encrypted, "the server's connections are encrypted ({host})");
    }
    // Without the CA, verify-full does not trust the test certificate.
    let untrusted = format!("{plain}?sslmode=verify-full");
    let refused = PostgresStorage::connect(&Options::new(&untrusted)).await.err().expect("refused");
    assert!(refused.to_string().to_lowercase().contains("certificate"), "{refused}");
    // require encrypts without checking, as libpq's does.
    let store = PostgresStorage::connect(&Options::new(&format!("{plain}?sslmode=require"))).await.unwrap();
    store.ping().await.unwrap();
}

// ---- the token cache ------------------------------------------------------------------------

/// How soon a change made through one server must be seen by the other.
const PROMPTLY: Duration = Duration::from_secs(2);

/// Waits until both servers listen for each other's changes: only then do they keep tokens.
async fn both_listen(url: &str) {
    let client = kit::pg_client(url).await;
    let started = Instant::now();
    loop {
        // `query` is the listening connection's last statement: empty until it has LISTENed.
        let listening: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                 AND application_name = 'marginalia listener' AND query <> ''",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if listening >= 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "both servers listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The cache is trusted as soon as LISTEN's answer is read.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Uses `token` on `kit`, then changes the database behind every server's back with `sql` (no
/// one is told of such a change) and checks that `kit` still answers as before: it answers from
/// its cache.
async fn cached(kit: &Kit, token: &str, path: &str, sql: &str) {
    let before = kit.call(Method::GET, path, Some(token), None).await;
    assert_eq!(before.status, 200, "{}", before.text);
    kit.sql(sql).await.unwrap();
    let after = kit.call(Method::GET, path, Some(token), None).await;
    assert_eq!(after.status, 200, "answered from the cache, which no one told of `{sql}`: {}", after.text);
}

/// Calls `path` with `token` on `kit` until it answers `status`, for [`PROMPTLY`] at most.
async fn answers_promptly(kit: &Kit, token: &str, path: &str, status: u16, what: &str) {
    let started = Instant::now();
    loop {
        let res = kit.call(Method::GET, path, Some(token), None).await;
        if res.status == status {
            println!("{what} after {:?}", started.elapsed());
            return;
        }
        assert_eq!(res.status, 200, "{}", res.text);
        assert!(started.elapsed() < PROMPTLY, "{what} within {PROMPTLY:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_server_is_refused_at_once_there_and_promptly_by_the_other() {
    let Some((one, two)) = two_servers(0.0, 1.0).await else { return };
    let ada = one.join("t", "Ada", Role::Admin).await;
    let bob = one.join("t", "Bob", Role::Member).await;
    both_listen(one.database.as_deref().unwrap()).await;
    one.call(Method::GET, "/api/v1/team", Some(&bob.token), None).await;
    cached(&two, &bob.token, "/api/v1/team", &format!("UPDATE tokens SET revoked = 1 WHERE id = '{}'", bob.token_id))
        .await;
    let still = one.call(Method::GET, "/api/v1/team", Some(&bob.token), None).await;
    assert_eq!(still.status, 200, "server one has it cached too: {}", still.text);

    let revoked = one.call(Method::DELETE, &format!("/api/v1/tokens/{}", bob.token_id), Some(&ada.token), None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let here = one.call(Method::GET, "/api/v1/team", Some(&bob.token), None).await;
    assert_eq!(here.status, 401, "refused at once by the server that revoked it: {}", here.text);
    answers_promptly(&two, &bob.token, "/api/v1/team", 401, "the revoked token was refused by the other server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_demoted_or_removed_through_one_server_loses_their_rights_promptly_on_the_other() {
    let Some((one, two)) = two_servers(0.0, 1.0).await else { return };
    let ada = one.join("t", "Ada", Role::Admin).await;
    let bob = one.join("t", "Bob", Role::Admin).await;
    let cyd = one.join("t", "Cyd", Role::Member).await;
    both_listen(one.database.as_deref().unwrap()).await;

    // An admin-only read, refused once Bob is a member.
    let audit = "/api/v1/audit";
    cached(&two, &bob.token, audit, &format!("UPDATE members SET role = 'member' WHERE id = '{}'", bob.member_id))
        .await;
    let demoted = one
        .call(
            Method::PATCH,
            &format!("/api/v1/members/{}", bob.member_id),
            Some(&ada.token),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text);
    answers_promptly(&two, &bob.token, audit, 403, "the demoted admin was refused an admin's read by the other server")
        .await;

    cached(
        &two,
        &cyd.token,
        "/api/v1/team",
        &format!("UPDATE tokens SET revoked = 1 WHERE member_id = '{}'", cyd.member_id),
    )
    .await;
    let removed = one.call(Method::DELETE, &format!("/api/v1/members/{}", cyd.member_id), Some(&ada.token), None).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    answers_promptly(&two, &cyd.token, "/api/v1/team", 401, "the removed member was refused by the other server").await;
}

/// A revocation the other server is not told of while its listening connection is down (here:
/// one made straight in the database, which no one is ever told of) does not outlive the
/// connection: the cache is emptied when it goes, and kept empty until it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_cache_is_not_trusted_once_the_listening_connection_is_lost() {
    let Some((one, two)) = two_servers(0.0, 1.0).await else { return };
    let bob = one.join("t", "Bob", Role::Member).await;
    let url = one.database.as_deref().unwrap();
    both_listen(url).await;
    cached(&two, &bob.token, "/api/v1/team", &format!("UPDATE tokens SET revoked = 1 WHERE id = '{}'", bob.token_id))
        .await;
    let cut: i64 = kit::pg_client(url)
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'marginalia listener'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cut, 2, "both servers' listening connections were cut");
    answers_promptly(&two, &bob.token, "/api/v1/team", 401, "the token was looked up again once the listener was cut")
        .await;
}
