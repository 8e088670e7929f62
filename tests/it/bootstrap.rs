//! The cluster bootstrap and the Supabase stand-in of migration 0001.

use testkit::{As, TEST_FUNCTIONS_PASSWORD, TestDb, admin_url, begin_as, connect};
use uuid::Uuid;

#[tokio::test]
async fn the_cluster_bootstrap_runs_twice_and_concurrently_without_error() {
    let mut one = connect(&admin_url()).await;
    migrations::bootstrap_cluster(&mut one, TEST_FUNCTIONS_PASSWORD)
        .await
        .expect("first");
    migrations::bootstrap_cluster(&mut one, TEST_FUNCTIONS_PASSWORD)
        .await
        .expect("second");

    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(&admin_url()).await);
    }
    let runs = clients
        .iter_mut()
        .map(|c| migrations::bootstrap_cluster(c, TEST_FUNCTIONS_PASSWORD));
    for result in futures::future::join_all(runs).await {
        result.expect("concurrent bootstrap");
    }

    let row = one
        .query_one(
            "SELECT rolcanlogin, rolinherit, rolsuper, rolbypassrls,
                    pg_has_role('functions_authenticator', 'authenticated', 'MEMBER'),
                    pg_has_role('functions_authenticator', 'service_role', 'MEMBER'),
                    pg_has_role('functions_authenticator', 'anon', 'MEMBER')
             FROM pg_roles WHERE rolname = 'functions_authenticator'",
            &[],
        )
        .await
        .expect("role");
    let flags: [bool; 7] = std::array::from_fn(|i| row.get(i));
    assert_eq!(flags, [true, false, false, false, true, true, false]);
}

#[tokio::test]
async fn the_login_role_has_no_table_privileges_until_it_takes_a_role() {
    let db = TestDb::new().await;
    let mut login = db.login().await;
    let err = login
        .query("SELECT count(*) FROM auth.users", &[])
        .await
        .expect_err("denied");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    let tx = begin_as(&mut login, As::ServiceRole).await;
    let role: String = tx
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("role")
        .get(0);
    assert_eq!(role, "service_role");
}

#[tokio::test]
async fn auth_uid_reads_the_transaction_local_claims_and_is_null_outside() {
    let db = TestDb::new().await;
    let mut login = db.login().await;
    let user = Uuid::new_v4();

    let tx = begin_as(&mut login, As::User(user)).await;
    let row = tx
        .query_one("SELECT auth.uid(), auth.role(), auth.jwt() ->> 'aud'", &[])
        .await
        .expect("uid");
    assert_eq!(row.get::<_, Option<Uuid>>(0), Some(user));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("authenticated")
    );
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("authenticated")
    );
    tx.commit().await.expect("commit");

    // After commit the setting reads '' on this session; auth.uid() must say NULL.
    let row = login
        .query_one("SELECT auth.uid(), auth.jwt(), current_user::text", &[])
        .await;
    // The login role itself may not even execute auth.uid(): both outcomes mean "no user".
    if let Ok(row) = row {
        assert_eq!(row.get::<_, Option<Uuid>>(0), None);
        assert_eq!(row.get::<_, Option<serde_json::Value>>(1), None);
        assert_eq!(row.get::<_, String>(2), "functions_authenticator");
    }
    // The functions never act as anon; PostgREST's anon is played from a superuser session.
    let mut admin = db.admin().await;
    let tx = begin_as(&mut admin, As::Anon).await;
    let uid: Option<Uuid> = tx
        .query_one("SELECT auth.uid()", &[])
        .await
        .expect("anon uid")
        .get(0);
    assert_eq!(uid, None);
}

#[tokio::test]
async fn the_functions_login_role_cannot_become_anon() {
    let db = TestDb::new().await;
    let mut login = db.login().await;
    let tx = login.transaction().await.expect("begin");
    let err = tx
        .execute("SET LOCAL ROLE anon", &[])
        .await
        .expect_err("refused");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
}
