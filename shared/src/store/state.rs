//! Where the maintenance job's rotating work stands between runs (its cursors).

use tokio_postgres::types::Type;

use super::{RunsAs, Statement, StoreError, maybe, query};
use crate::db::Tx;

const GET: Statement = Statement {
    name: "state.get",
    runs_as: RunsAs::Service,
    sql: "SELECT value FROM public.maintenance_state WHERE key = $1",
};

const SET: Statement = Statement {
    name: "state.set",
    runs_as: RunsAs::Service,
    sql: "INSERT INTO public.maintenance_state (key, value) VALUES ($1, $2)
          ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
};

const CLEAR: Statement = Statement {
    name: "state.clear",
    runs_as: RunsAs::Service,
    // The next run starts from the beginning.
    sql: "DELETE FROM public.maintenance_state WHERE key = $1",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[&GET, &SET, &CLEAR];

/// A cursor's value.
pub async fn get(tx: &Tx<'_>, key: &str) -> Result<Option<String>, StoreError> {
    Ok(maybe(tx, &GET, &[(&key, Type::TEXT)])
        .await?
        .map(|r| r.get("value")))
}

/// Moves a cursor (None: forgets it).
pub async fn set(tx: &Tx<'_>, key: &str, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        Some(v) => query(tx, &SET, &[(&key, Type::TEXT), (&v, Type::TEXT)]).await?,
        None => query(tx, &CLEAR, &[(&key, Type::TEXT)]).await?,
    };
    Ok(())
}
