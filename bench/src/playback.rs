//! Playback's one statement (`recordings.playable`) timed as the caller (`authenticated`:
//! RLS asks `user_family_ids()`) and as the service role (no RLS): what RLS costs.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use shared::auth::User;
use shared::db::Tx;
use tokio_postgres::types::{ToSql, Type};

/// How much RLS may add to playback's statement.
pub const RLS_BOUND: f64 = 1.2;

/// The p50 of `runs` executions of playback's statement for `recording` in one
/// transaction as `caller` (None: the service role), each sent as the functions send
/// it (unprepared, so each run is planned), after 100 that warm the connection's caches
/// as a pooled connection's are.
pub async fn p50(
    client: &tokio_postgres::Client,
    caller: Option<&User>,
    recording: uuid::Uuid,
    runs: usize,
) -> anyhow::Result<Duration> {
    let sql = shared::store::statements()
        .into_iter()
        .find(|s| s.name == "recordings.playable")
        .context("no recordings.playable in the store")?
        .sql;
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&recording, Type::UUID)];
    let tx = Tx::begin(client, caller).await?;
    let mut latencies = Vec::with_capacity(runs);
    for i in 0..runs + 100 {
        let started = Instant::now();
        let rows = client.query_typed(sql, &params).await?;
        if i >= 100 {
            latencies.push(started.elapsed());
        }
        ensure!(rows.len() == 1, "playback found {} rows", rows.len());
    }
    tx.commit().await?;
    latencies.sort();
    Ok(latencies[latencies.len() / 2])
}

/// RLS-checked and unchecked p50s of playback's statement, and their ratio.
pub async fn rls_cost(
    client: &tokio_postgres::Client,
    caller: &User,
    recording: uuid::Uuid,
    runs: usize,
) -> anyhow::Result<(Duration, Duration, f64)> {
    let checked = p50(client, Some(caller), recording, runs).await?;
    let unchecked = p50(client, None, recording, runs).await?;
    Ok((
        checked,
        unchecked,
        checked.as_secs_f64() / unchecked.as_secs_f64(),
    ))
}
