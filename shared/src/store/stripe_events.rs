//! Stripe's events already applied, so each takes effect at most once.

use tokio_postgres::types::Type;

use super::{RunsAs, Statement, StoreError, query};
use crate::db::Tx;

const RECORD: Statement = Statement {
    name: "stripe_events.record",
    runs_as: RunsAs::Service,
    // The event id recorded; nothing returned when it was already (a repeat delivery,
    // which waits here for the first one's transaction and then finds the id taken).
    sql:
        "INSERT INTO public.stripe_events (stripe_event_id, event_type, livemode, stripe_created_at)
          VALUES ($1, $2, $3, to_timestamp($4))
          ON CONFLICT ON CONSTRAINT stripe_events_stripe_event_id_key DO NOTHING
          RETURNING id",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[&RECORD];

/// Records an event; false when it was recorded before (a repeat: apply nothing).
pub async fn record(
    tx: &Tx<'_>,
    id: &str,
    kind: &str,
    livemode: bool,
    created: i64,
) -> Result<bool, StoreError> {
    let created = created as f64;
    let params = [
        (&id as _, Type::TEXT),
        (&kind as _, Type::TEXT),
        (&livemode as _, Type::BOOL),
        (&created as _, Type::FLOAT8),
    ];
    Ok(!query(tx, &RECORD, &params).await?.is_empty())
}
