//! The migration runner against real PostgreSQL.

use migrations::{Error, State};
use testkit::TestDb;

fn project() -> Vec<migrations::Migration> {
    migrations::load(&migrations::default_dir()).expect("migrations load")
}

/// A copy of the project's migrations in a folder of the test's own, to edit.
fn copy_of_project() -> tempdir::Dir {
    let dir = tempdir::Dir::new();
    for m in project() {
        std::fs::write(dir.path.join(format!("{}.up.sql", m.id())), &m.up).expect("write");
        std::fs::write(dir.path.join(format!("{}.down.sql", m.id())), &m.down).expect("write");
    }
    dir
}

mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Self {
            let path =
                std::env::temp_dir().join(format!("sfts-mig-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[tokio::test]
async fn up_status_down_and_up_again_on_an_empty_database() {
    let db = TestDb::empty().await;
    let mut client = db.admin().await;
    let all = project();

    let applied = migrations::up(&mut client, &all).await.expect("up");
    assert_eq!(applied, all.iter().map(|m| m.id()).collect::<Vec<_>>());
    let status = migrations::status(&client, &all).await.expect("status");
    assert!(
        status.iter().all(|s| s.state == State::Applied),
        "{status:?}"
    );

    let last = all.last().expect("at least one migration").id();
    assert_eq!(
        migrations::down(&mut client, &all, 1, false)
            .await
            .expect("down"),
        vec![last.clone()]
    );
    let status = migrations::status(&client, &all).await.expect("status");
    assert_eq!(status.last().map(|s| &s.state), Some(&State::Pending));
    assert_eq!(
        status.iter().filter(|s| s.state == State::Applied).count(),
        all.len() - 1
    );

    assert_eq!(
        migrations::up(&mut client, &all).await.expect("up again"),
        vec![last]
    );
    assert!(
        migrations::up(&mut client, &all)
            .await
            .expect("nothing left")
            .is_empty()
    );
}

#[tokio::test]
async fn a_second_concurrent_up_waits_for_the_first_and_finds_nothing_to_do() {
    let db = TestDb::empty().await;
    let all = project();
    let (mut a, mut b) = (db.admin().await, db.admin().await);
    let (ra, rb) = tokio::join!(migrations::up(&mut a, &all), migrations::up(&mut b, &all));
    let (ra, rb) = (ra.expect("first up"), rb.expect("second up"));
    let mut counts = [ra.len(), rb.len()];
    counts.sort_unstable();
    assert_eq!(
        counts,
        [0, all.len()],
        "exactly one of the two applied everything"
    );

    let recorded: i64 = a
        .query_one("SELECT count(*) FROM schema_migrations.applied", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(recorded, all.len() as i64);
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_with_a_clear_message() {
    let db = TestDb::empty().await;
    let mut client = db.admin().await;
    let dir = copy_of_project();
    let all = migrations::load(&dir.path).expect("load");
    migrations::up(&mut client, &all).await.expect("up");

    let first = &all[0];
    let path = dir.path.join(format!("{}.up.sql", first.id()));
    std::fs::write(&path, format!("{}\n-- an innocent edit\n", first.up)).expect("edit");
    let edited = migrations::load(&dir.path).expect("load");

    let err = migrations::up(&mut client, &edited)
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::Edited { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&first.id()) && message.contains("edited after it was applied"),
        "{message}"
    );
    let status = migrations::status(&client, &edited).await.expect("status");
    assert_eq!(status[0].state, State::Edited);
    assert!(matches!(
        migrations::down(&mut client, &edited, 1, false).await,
        Err(Error::Edited { .. })
    ));
}

#[tokio::test]
async fn a_down_that_would_drop_a_table_holding_rows_refuses_without_the_flag() {
    let db = TestDb::empty().await;
    let mut client = db.admin().await;
    let all = project();
    migrations::up(&mut client, &all).await.expect("up");
    testkit::create_user(&client, "grandma@example.com").await;

    // Rolling everything back would drop auth.users, which now holds a row.
    let err = migrations::down(&mut client, &all, all.len(), false)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, Error::DataLoss { tables, .. } if tables.contains("auth.users")),
        "{err:?}"
    );
    let status = migrations::status(&client, &all).await.expect("status");
    assert!(
        status.iter().all(|s| s.state == State::Applied),
        "nothing rolled back: {status:?}"
    );
    let users: i64 = client
        .query_one("SELECT count(*) FROM auth.users", &[])
        .await
        .expect("users")
        .get(0);
    assert_eq!(users, 1);

    let rolled = migrations::down(&mut client, &all, all.len(), true)
        .await
        .expect("told data loss is intended");
    assert_eq!(rolled.len(), all.len());
    let auth_left: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'auth')",
            &[],
        )
        .await
        .expect("auth")
        .get(0);
    assert!(!auth_left);
}

#[tokio::test]
async fn the_hardening_migration_cleans_existing_text_before_it_validates_its_checks() {
    let db = TestDb::empty().await;
    let mut client = db.admin().await;
    let all = project();
    let before: Vec<_> = all.iter().filter(|m| m.version < 5).cloned().collect();
    migrations::up(&mut client, &before)
        .await
        .expect("up to 0004");
    // Text written before the checks existed (through PostgREST, say).
    let (family, keeper) = testkit::fixtures::family(&client, "The Smiths\r\nBcc: x", "free").await;
    client
        .execute(
            "INSERT INTO prompts (family_id, text) VALUES ($1, E'Two\\nlines\\tand a tab')",
            &[&family],
        )
        .await
        .expect("prompt");
    // Recorded as 0003's finalize did (the fixtures speak the newest schema).
    let recording = uuid::Uuid::new_v4();
    client
        .execute(
            "SELECT finalize_recording_tx($1, $2, $3, NULL, 'A story', 42.0, 'audio/mp4', 10, NULL)",
            &[&recording, &family, &keeper],
        )
        .await
        .expect("recording");
    client
        .execute(
            "UPDATE recordings SET title = E'Bell\\u0007' WHERE id = $1",
            &[&recording],
        )
        .await
        .expect("title");

    migrations::up(&mut client, &all)
        .await
        .expect("0005 applies over production text");
    let row = client
        .query_one(
            "SELECT (SELECT name FROM families), (SELECT text FROM prompts), (SELECT title FROM recordings),
                    (SELECT bool_and(convalidated) FROM pg_constraint WHERE conname LIKE '%printable')",
            &[],
        )
        .await
        .expect("cleaned");
    let cleaned: (String, String, String, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        cleaned,
        (
            "The Smiths Bcc: x".to_owned(),
            "Two\nlines and a tab".to_owned(),
            "Bell ".to_owned(),
            true
        )
    );
}
