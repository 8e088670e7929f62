//! Fixed-window counters: how many times something was done in the current window.

use tokio_postgres::types::Type;

use super::{RunsAs, Statement, StoreError, one};
use crate::db::Tx;

const TAKE: Statement = Statement {
    name: "rate_limits.take",
    runs_as: RunsAs::Service,
    // Takes one hit of a fixed-window rate limit: 0, or the seconds until the window
    // ends. The counter row is locked, so concurrent callers can't slip past.
    sql: "SELECT public.rate_limit_take($1, $2, $3::interval) AS retry_after",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[&TAKE];

/// Takes one hit of the limit `key` (at most `limit` per `window`, an interval such as
/// `1 hour`) in the caller's transaction: None, or the seconds until the window ends
/// when it is full.
pub async fn take(
    tx: &Tx<'_>,
    key: &str,
    limit: i32,
    window: &str,
) -> Result<Option<u32>, StoreError> {
    let params = [
        (&key as _, Type::TEXT),
        (&limit as _, Type::INT4),
        (&window as _, Type::TEXT),
    ];
    let retry_after: i32 = one(tx, &TAKE, &params).await?.get("retry_after");
    Ok((retry_after > 0).then(|| retry_after.unsigned_abs()))
}
