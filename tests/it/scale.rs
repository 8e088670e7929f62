//! Cost that does not grow with the data: a member of one family reads through RLS in a
//! bounded number of buffers while another account belongs to 20,000 families, with
//! the statistics taken before that account joined them (as between two autovacuum
//! analyses) and after. `EXPLAIN (ANALYZE, BUFFERS)` counts the work done inside the
//! RLS helpers too, which a plain `EXPLAIN` can't see into.

use serde_json::Value;
use testkit::{As, TestDb, begin_as, fixtures};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// What one member's statement may read, in 8 KiB buffers.
const BOUND: i64 = 100;
/// Families beside the member's, a member and a recording each.
const FAMILIES: i32 = 100_000;
/// The account in many of them, as support, test and "grandparent of many branches"
/// accounts are.
const MANY: i64 = 20_000;

struct World {
    db: TestDb,
    member: Uuid,
    family: Uuid,
    recording: Uuid,
}

/// A member of one family with a recording, beside 100,000 other families (a member
/// and a recording each); statistics taken; then one account joins 20,000 of them.
async fn skewed() -> World {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (family, member) = fixtures::family(&admin, "The Small Family", "free").await;
    let recording = fixtures::recording(&admin, family, member, 1000).await;
    fixtures::skewed(&admin, FAMILIES, MANY).await;
    World {
        db,
        member,
        family,
        recording,
    }
}

/// The statements a member of one family sends through RLS, from the store's lists.
fn statement(name: &str) -> &'static str {
    shared::store::statements()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no statement {name} in the store"))
        .sql
}

/// Rows and shared buffers (hit or read) of `sql` as `who`, in a rolled-back transaction.
async fn cost(world: &World, who: Uuid, sql: &str, params: &[&(dyn ToSql + Sync)]) -> (i64, i64) {
    let mut client = world.db.login().await;
    let tx = begin_as(&mut client, As::User(who)).await;
    // Once first: a new connection's first statement reads the catalogs into its
    // caches, which a pooled connection did long ago.
    tx.query(sql, params).await.expect("the statement");
    let explained: Value = tx
        .query_one(
            &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"),
            params,
        )
        .await
        .expect("explain")
        .get(0);
    let plan = &explained[0]["Plan"];
    let count = |key: &str| plan[key].as_i64().unwrap_or_default();
    (
        count("Actual Rows"),
        count("Shared Hit Blocks") + count("Shared Read Blocks"),
    )
}

async fn assert_bounded(world: &World, when: &str) {
    let checks: [(&str, &str, &[&(dyn ToSql + Sync)]); 3] = [
        (
            "playback",
            statement("recordings.playable"),
            &[&world.recording],
        ),
        (
            "the family's members",
            "SELECT user_id, role FROM public.family_members WHERE family_id = $1",
            &[&world.family],
        ),
        (
            "the family's recordings",
            "SELECT id FROM public.recordings WHERE family_id = $1 AND deleted_at IS NULL",
            &[&world.family],
        ),
    ];
    for (what, sql, params) in checks {
        let (rows, buffers) = cost(world, world.member, sql, params).await;
        assert!(rows >= 1, "{what} ({when}): the member sees their family");
        assert!(
            buffers <= BOUND,
            "{what} ({when}): {buffers} shared buffers for a member of one family, over {BOUND}"
        );
    }
}

#[tokio::test]
async fn a_member_of_one_family_reads_in_bounded_buffers_beside_an_account_in_20000_families() {
    let world = skewed().await;
    // Statistics from before the account joined its 20,000 families.
    assert_bounded(&world, "stale statistics").await;
    world
        .db
        .admin()
        .await
        .batch_execute("ANALYZE")
        .await
        .expect("analyze");
    assert_bounded(&world, "fresh statistics").await;
}
