//! Emails owed after a committed change: to a user, about a family. The recipient's
//! address is read from their account when the email goes, and stored nowhere else.

use serde_json::Value;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::families::Language;
use super::{RunsAs, Statement, StoreError, query};
use crate::db::Tx;

const QUEUE: Statement = Statement {
    name: "outbox.queue",
    runs_as: RunsAs::Service,
    // One email of a kind to each of several users, about a family.
    sql: "INSERT INTO public.outbox (family_id, user_id, kind, details)
          SELECT $1, u, $3, $4 FROM unnest($2::uuid[]) AS u
          RETURNING id",
};

/// What a claim answers: the email, and whom and what it is about.
macro_rules! claimed {
    () => {
        "RETURNING o.id, o.kind, o.details, o.attempts, o.family_id,
           (SELECT a.email FROM public.account_of(o.user_id) a) AS email,
           (SELECT f.name FROM public.families f WHERE f.id = o.family_id) AS family_name,
           (SELECT f.language FROM public.families f WHERE f.id = o.family_id) AS language"
    };
}

const CLAIM_THESE: Statement = Statement {
    name: "outbox.claim_these",
    runs_as: RunsAs::Service,
    // Claims the given emails if still unsent (another sender skips them).
    sql: concat!(
        "UPDATE public.outbox o SET claimed_at = now(), attempts = o.attempts + 1
         WHERE o.id IN (
           SELECT id FROM public.outbox
           WHERE id = ANY ($1) AND sent_at IS NULL AND failed_at IS NULL
             AND (claimed_at IS NULL OR claimed_at < now() - interval '10 minutes')
           FOR UPDATE SKIP LOCKED) ",
        claimed!()
    ),
};

const CLAIM_DUE: Statement = Statement {
    name: "outbox.claim_due",
    runs_as: RunsAs::Service,
    // Claims the emails due (never sent, or due for another try), oldest first; a claim
    // older than 10 minutes (its sender died) is taken over.
    sql: concat!(
        "UPDATE public.outbox o SET claimed_at = now(), attempts = o.attempts + 1
         WHERE o.id IN (
           SELECT id FROM public.outbox
           WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
             AND (claimed_at IS NULL OR claimed_at < now() - interval '10 minutes')
           ORDER BY next_attempt_at
           LIMIT $1
           FOR UPDATE SKIP LOCKED) ",
        claimed!()
    ),
};

const SENT: Statement = Statement {
    name: "outbox.sent",
    runs_as: RunsAs::Service,
    sql: "UPDATE public.outbox SET sent_at = now(), claimed_at = NULL WHERE id = $1",
};

const RETRY: Statement = Statement {
    name: "outbox.retry",
    runs_as: RunsAs::Service,
    // Not sent: tried again in $2 minutes, or given up ($3: no more tries).
    sql: "UPDATE public.outbox
          SET claimed_at = NULL, next_attempt_at = now() + make_interval(mins => $2),
              failed_at = CASE WHEN $3 THEN now() END
          WHERE id = $1",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[&QUEUE, &CLAIM_THESE, &CLAIM_DUE, &SENT, &RETRY];

/// Queues an email of `kind` with `details` to each of `users` about `family`; the ids.
pub async fn queue(
    tx: &Tx<'_>,
    family: Uuid,
    users: &[Uuid],
    kind: &str,
    details: &Value,
) -> Result<Vec<Uuid>, StoreError> {
    let params = [
        (&family as _, Type::UUID),
        (&users as _, Type::UUID_ARRAY),
        (&kind as _, Type::TEXT),
        (&details as _, Type::JSONB),
    ];
    let rows = query(tx, &QUEUE, &params).await?;
    Ok(rows.iter().map(|r| r.get("id")).collect())
}

/// An email claimed for sending.
#[derive(Debug, Clone)]
pub struct Owed {
    pub id: Uuid,
    pub kind: String,
    pub details: Value,
    /// Tries so far, this one included.
    pub attempts: i32,
    pub family_id: Uuid,
    /// Their address (None: their account has none, or is gone).
    pub email: Option<String>,
    pub family_name: Option<String>,
    pub language: Option<Language>,
}

/// Which emails to claim.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// These, just queued.
    These(&'a [Uuid]),
    /// Up to this many that are due.
    Due(i64),
}

/// Claims emails for sending.
pub async fn claim(tx: &Tx<'_>, which: Claim<'_>) -> Result<Vec<Owed>, StoreError> {
    let rows = match which {
        Claim::These(ids) => query(tx, &CLAIM_THESE, &[(&ids, Type::UUID_ARRAY)]).await?,
        Claim::Due(limit) => query(tx, &CLAIM_DUE, &[(&limit, Type::INT8)]).await?,
    };
    Ok(rows
        .iter()
        .map(|r| Owed {
            id: r.get("id"),
            kind: r.get("kind"),
            details: r.get("details"),
            attempts: r.get("attempts"),
            family_id: r.get("family_id"),
            email: r.get("email"),
            family_name: r.get("family_name"),
            language: r.get("language"),
        })
        .collect())
}

/// Sent.
pub async fn sent(tx: &Tx<'_>, id: Uuid) -> Result<(), StoreError> {
    query(tx, &SENT, &[(&id, Type::UUID)]).await?;
    Ok(())
}

/// Not sent: tried again in `wait_minutes`, or given up when `last`.
pub async fn retry(tx: &Tx<'_>, id: Uuid, wait_minutes: i32, last: bool) -> Result<(), StoreError> {
    let params = [
        (&id as _, Type::UUID),
        (&wait_minutes as _, Type::INT4),
        (&last as _, Type::BOOL),
    ];
    query(tx, &RETRY, &params).await?;
    Ok(())
}
