//! shared::db: claims stay with their transaction, dead connections are replaced,
//! a database that is down is a 503 and recovery needs no restart.

use serde_json::json;
use shared::auth::User;
use shared::db::Db;
use tests::TestDb;
use tests::server::Server;
use uuid::Uuid;

fn user(id: Uuid) -> User {
    User {
        id,
        email: None,
        claims: json!({"sub": id, "role": "authenticated", "aud": "authenticated"}),
    }
}

async fn whoami(db: &Db, who: Option<&User>) -> (Option<Uuid>, i32, String) {
    let read = async |tx: &tokio_postgres::Transaction<'_>| {
        let row = &tx
            .query_typed(
                "SELECT auth.uid(), pg_backend_pid(), current_user::text",
                &[],
            )
            .await?[0];
        Ok((row.get(0), row.get(1), row.get(2)))
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
            .as_user(&a, async |tx| {
                tx.query_typed("SELECT 1/0", &[]).await?;
                Ok(())
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
async fn the_database_down_is_a_503_and_the_first_request_after_it_is_back_succeeds() {
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
        let (status, body, _) = server
            .post("create-family", Some(&token), &json!({"name": "Down"}))
            .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
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
