//! Migrations round trip: up -> down -> up gives the schema up gave, and down leaves
//! none of our objects behind.

use testkit::TestDb;

/// `pg_dump --schema-only` of the database's own objects (the runner's bookkeeping
/// excluded), without the random `\restrict` lines of pg_dump 15.14+.
fn schema(db: &TestDb) -> String {
    let out = std::process::Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--exclude-schema=schema_migrations",
            "--dbname",
        ])
        .arg(db.admin_url())
        .output()
        .expect("pg_dump runs (Debian package postgresql-client)");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn up_down_up_leaves_the_schema_identical_and_down_leaves_nothing() {
    let all = migrations::load(&migrations::default_dir()).expect("load");
    let pristine = TestDb::empty().await;
    let db = TestDb::empty().await;
    let mut client = db.admin().await;

    migrations::up(&mut client, &all).await.expect("up");
    let first = schema(&db);
    assert!(
        first.contains("CREATE TABLE public.recordings"),
        "the dump holds our schema"
    );

    // Plans and default prompts are rows the migrations themselves insert.
    migrations::down(&mut client, &all, all.len(), true)
        .await
        .expect("down everything");
    assert_eq!(schema(&db), schema(&pristine), "down left objects behind");

    migrations::up(&mut client, &all).await.expect("up again");
    assert_eq!(schema(&db), first, "up after down differs from up");
}
