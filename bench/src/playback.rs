//! Playback's one statement (`recordings.playable`) timed as the caller (`authenticated`:
//! RLS asks `user_family_ids()`) and as the service role (no RLS): what RLS costs.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use shared::auth::User;
use shared::db::Tx;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// How much RLS may add to playback's statement.
pub const RLS_BOUND: f64 = 1.2;

/// RLS-checked and unchecked p50s of playback's statement for `recording`, and their
/// ratio, on one connection in one transaction begun as `member` (with a Supabase access
/// token's claims): each of `runs` executions as `member` is followed at once by one as the service role (the role
/// switched between them, untimed), so whatever else the machine does at a moment weighs
/// on both figures alike. (Timed one after the other, the ratio moved between 1.26x and
/// 1.58x from one run to the next on a quiet machine; alternated between two
/// connections, between 1.7x and 4.8x: each backend then waits for the other's turn.)
/// Each is sent as the functions send it (unprepared, so each run is planned), after
/// 100 that warm the connection's caches as a pooled connection's are.
pub async fn rls_cost(
    client: &Client,
    member: Uuid,
    recording: Uuid,
    runs: usize,
) -> anyhow::Result<(Duration, Duration, f64)> {
    let sql = shared::store::statements()
        .into_iter()
        .find(|s| s.name == "recordings.playable")
        .context("no recordings.playable in the store")?
        .sql;
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&recording, Type::UUID)];
    let tx = Tx::begin(client, Some(&supabase_caller(member))).await?;
    let mut latencies = [Vec::with_capacity(runs), Vec::with_capacity(runs)];
    for i in 0..runs + 100 {
        for (role, samples) in ["authenticated", "service_role"].iter().zip(&mut latencies) {
            client
                .query_typed("SELECT set_config('role', $1, true)", &[(role, Type::TEXT)])
                .await?;
            let started = Instant::now();
            let rows = client.query_typed(sql, &params).await?;
            let took = started.elapsed();
            ensure!(
                rows.len() == 1,
                "playback found {} rows as {role}",
                rows.len()
            );
            if i >= 100 {
                samples.push(took);
            }
        }
    }
    tx.commit().await?;
    let [checked, unchecked] = latencies.map(|mut samples| {
        samples.sort_unstable();
        samples[samples.len() / 2]
    });
    Ok((
        checked,
        unchecked,
        checked.as_secs_f64() / unchecked.as_secs_f64(),
    ))
}

/// `id` as the functions' frame hands a caller on, with the claims of a Supabase access
/// token as its Auth server issues them (the functions give Postgres the verified claims
/// whole).
fn supabase_caller(id: Uuid) -> User {
    let email = "grandma@example.com";
    User {
        id,
        email: None,
        claims: serde_json::json!({
            "iss": "https://abcdefghijklmnopqrst.supabase.co/auth/v1", "sub": id,
            "aud": "authenticated", "exp": 1_796_000_000, "iat": 1_795_996_400,
            "email": email, "phone": "",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {"email": email, "email_verified": true,
                              "phone_verified": false, "sub": id},
            "role": "authenticated", "aal": "aal1",
            "amr": [{"method": "password", "timestamp": 1_795_996_400}],
            "session_id": "6f1c2c87-93a4-4f7e-9d55-0b8f3c1e2a4d", "is_anonymous": false,
        }),
    }
}
