//! The typed store: every statement the code sends is listed, named once, and valid
//! against the migrated schema.

use std::collections::HashSet;

use testkit::TestDb;

#[tokio::test]
async fn every_statement_of_the_store_is_named_once_and_prepares_against_the_schema() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let statements = shared::store::statements();
    assert!(statements.len() > 100, "{}", statements.len());
    let mut names = HashSet::new();
    let mut invalid = Vec::new();
    for statement in &statements {
        assert!(names.insert(statement.name), "{} twice", statement.name);
        if let Err(e) = admin.prepare(statement.sql).await {
            invalid.push(format!("{}: {e}", statement.name));
        }
    }
    assert!(invalid.is_empty(), "{invalid:#?}");
}
