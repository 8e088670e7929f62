//! shared::db: claims stay with their transaction, dead connections are replaced,
//! a database that is down is a 503 and recovery needs no restart.

use serde_json::json;
use shared::auth::User;
use shared::db::Db;
use shared::store::families::{Family, Language};
use testkit::TestDb;
use testkit::server::Server;
use uuid::Uuid;

fn user(id: Uuid) -> User {
    User {
        id,
        email: None,
        claims: json!({"sub": id, "role": "authenticated", "aud": "authenticated"}),
    }
}

async fn whoami(db: &Db, who: Option<&User>) -> (Option<Uuid>, i32, String) {
    let read = async |tx: &shared::db::Tx<'_>| {
        let me = shared::store::whoami(tx).await?;
        Ok::<_, shared::store::StoreError>((me.uid, me.pid, me.role))
    };
    match who {
        Some(u) => db.as_user(u, read).await,
        None => db.as_service(read).await,
    }
    .expect("transaction")
}

#[tokio::test]
async fn two_users_on_the_same_pooled_connection_never_see_each_others_claims() {
    let test_db = TestDb::new().await;
    let db = Db::new(&test_db.login_url(), 2).expect("pool");
    let (a, b) = (user(Uuid::new_v4()), user(Uuid::new_v4()));

    let mut pids = std::collections::HashSet::new();
    for _ in 0..20 {
        for (who, want) in [(Some(&a), Some(a.id)), (None, None), (Some(&b), Some(b.id))] {
            let (uid, pid, role) = whoami(&db, who).await;
            assert_eq!(uid, want);
            assert_eq!(
                role,
                if who.is_some() {
                    "authenticated"
                } else {
                    "service_role"
                }
            );
            pids.insert(pid);
        }
        // A transaction that fails half-way leaves nothing for the next one either.
        let failed = db
            .as_service(async |tx| {
                let long = "x".repeat(300);
                Family::create(tx, &long, Language::En, a.id).await
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(whoami(&db, Some(&b)).await.0, Some(b.id));
    }
    assert!(
        pids.len() <= 2,
        "the pool holds at most two connections: {pids:?}"
    );

    let concurrent = (0..40).map(|i| {
        let (db, who) = (&db, if i % 2 == 0 { &a } else { &b });
        async move { (whoami(db, Some(who)).await.0, who.id) }
    });
    for (seen, want) in futures::future::join_all(concurrent).await {
        assert_eq!(seen, Some(want));
    }
}

#[tokio::test]
async fn killed_connections_are_replaced_without_a_500() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    assert_eq!(
        server
            .post("create-family", Some(&token), &json!({"name": "Before"}))
            .await
            .0,
        200
    );
    server.db.kill_functions_connections().await;
    let (status, body, _) = server
        .post("create-family", Some(&token), &json!({"name": "After"}))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_database_down_is_a_503_with_retry_after_and_the_first_request_after_it_is_back_succeeds()
 {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    assert_eq!(
        server
            .post("create-family", Some(&token), &json!({"name": "Up"}))
            .await
            .0,
        200
    );

    server.db.take_offline().await;
    for _ in 0..3 {
        let (status, body, headers) = server
            .post("create-family", Some(&token), &json!({"name": "Down"}))
            .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
        // A back-off the app's client honours, as for a 429.
        assert_eq!(headers["retry-after"], "2");
    }

    server.db.bring_online().await;
    let (status, body, _) = server
        .post("create-family", Some(&token), &json!({"name": "Back"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server.count("families").await,
        2,
        "nothing written while down"
    );
}

/// A TCP proxy to the test PostgreSQL that lets each connection's startup through and
/// then holds everything the client sends: a pooler waiting for a server that never comes.
async fn stalling_proxy(target: String) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&target)
                .await
                .expect("connect to PostgreSQL");
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let (ready, started) = tokio::sync::watch::channel(false);
            // Server to client: everything, noting the first ReadyForQuery ('Z') before
            // the client can see it.
            tokio::spawn(async move {
                let (mut seen, mut chunk) = (Vec::new(), [0u8; 8192]);
                while let Ok(n @ 1..) = from_server.read(&mut chunk).await {
                    if !*ready.borrow() {
                        seen.extend_from_slice(&chunk[..n]);
                        while seen.len() >= 5 {
                            let len =
                                u32::from_be_bytes([seen[1], seen[2], seen[3], seen[4]]) as usize;
                            if seen.len() < 1 + len {
                                break;
                            }
                            if seen[0] == b'Z' {
                                let _ = ready.send(true);
                            }
                            seen.drain(..1 + len);
                        }
                    }
                    if to_client.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
            });
            // Client to server: the startup, then nothing.
            tokio::spawn(async move {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = from_client.read(&mut chunk).await {
                    if *started.borrow() {
                        return std::future::pending::<()>().await;
                    }
                    if to_server.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_transaction_that_cannot_start_is_a_503_within_seconds_not_a_hang() {
    let test_db = TestDb::new().await;
    let config: tokio_postgres::Config = test_db.login_url().parse().expect("url");
    let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(h)), Some(p)) => (h.clone(), *p),
        _ => panic!("the test PostgreSQL is reached over TCP"),
    };
    let proxy = stalling_proxy(format!("{host}:{port}")).await;
    let url = test_db
        .login_url()
        .replace(&format!("@{host}:{port}/"), &format!("@{proxy}/"));
    let db = Db::new(&url, 2).expect("pool");

    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        db.as_service(async |tx| {
            shared::store::state::set(tx, "written_while_stalled", Some("x")).await?;
            Ok::<_, shared::ApiError>(())
        }),
    )
    .await
    .expect("the request hung instead of answering");
    let error = result.expect_err("nothing can run through the stalled connection");
    assert_eq!(
        (error.status().as_u16(), error.code().as_str()),
        (503, "SERVICE_UNAVAILABLE")
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let written: i64 = test_db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM maintenance_state WHERE key = 'written_while_stalled'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(written, 0);
}

/// Playback signs its URLs without calling R2 (here R2 is unreachable) and its one
/// transaction costs three round trips: BEGIN with the prologue, the read, COMMIT (no
/// check of the pooled connection first, no BEGIN of its own).
#[tokio::test]
async fn playback_makes_no_r2_call_and_three_database_round_trips() {
    let (server, wire) =
        Server::start_through_proxy(&[("R2_ENDPOINT", "http://127.0.0.1:9")]).await;
    let (user, token) = server.user().await;
    let family = server.family(&token).await;
    let admin = server.db.admin().await;
    let recording = testkit::fixtures::recording(&admin, family, user, 1000).await;
    wire.clear();
    let reply = server
        .call(
            "get-signed-playback-url",
            Some(&token),
            &json!({"recordingId": recording}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert!(
        reply.data()["url"]
            .as_str()
            .is_some_and(|u| u.contains("127.0.0.1:9"))
    );
    assert_eq!(wire.round_trips(), 3, "{:#?}", wire.statements());
}
