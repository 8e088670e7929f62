//! The harness itself: databases of their own, really isolated.

use testkit::TestDb;
use uuid::Uuid;

async fn write_and_count(db: &TestDb, id: Uuid) -> i64 {
    let client = db.admin().await;
    client
        .execute(
            "INSERT INTO auth.users (id, email) VALUES ($1, 'same@example.com')",
            &[&id],
        )
        .await
        .expect("insert");
    client
        .query_one("SELECT count(*) FROM auth.users", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn two_tests_writing_the_same_rows_in_parallel_never_see_each_other() {
    let (a, b) = tokio::join!(TestDb::new(), TestDb::new());
    assert_ne!(a.name, b.name);
    let id = Uuid::new_v4();
    let (in_a, in_b) = tokio::join!(write_and_count(&a, id), write_and_count(&b, id));
    assert_eq!(
        (in_a, in_b),
        (1, 1),
        "the same primary key went into both without conflict"
    );
}

#[tokio::test]
async fn a_test_database_is_dropped_when_the_test_ends() {
    let name = {
        let db = TestDb::new().await;
        db.name.clone()
    };
    let admin = testkit::connect(&testkit::admin_url()).await;
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
}
