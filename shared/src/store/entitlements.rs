//! What a family may do and what it has used: its entitlement (plan, subscription,
//! storage used), the plans and their Stripe prices, and its Checkout sessions.
//!
//! Every change of a family's usage locks its entitlement row first ([`Entitlement::lock`],
//! `update_storage_quota`); checkouts are serialised on an advisory lock of their own
//! ([`checkout_lock`]), never the entitlement row, which no checkout holds across a call
//! to Stripe.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{RunsAs, Statement, StoreError, maybe, one, query, sql_enum};
use crate::db::Tx;

sql_enum! {
    /// A subscription's status, as Stripe and `entitlements.status` spell it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum SubscriptionStatus {
        Active = "active",
        Trialing = "trialing",
        PastDue = "past_due",
        Unpaid = "unpaid",
        Paused = "paused",
        Incomplete = "incomplete",
        IncompleteExpired = "incomplete_expired",
        Canceled = "canceled",
    }
}

impl SubscriptionStatus {
    /// Paid for, or Stripe still retrying a payment: the plan's limits apply.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue)
    }

    /// Over for good: it will never charge again.
    pub fn has_ended(self) -> bool {
        matches!(self, Self::Canceled | Self::IncompleteExpired)
    }

    /// Whether uploads may go on (contract §3's table): live (Stripe still retrying
    /// included), or cancelled (back on free); not while unpaid, paused or incomplete.
    pub fn allows_uploads(self) -> bool {
        self.is_live() || self == Self::Canceled
    }

    /// Whether the subscription may still charge the family: anything not ended, unless
    /// a paid (or trial) period is set to end (`cancel_at_period_end`).
    pub fn may_charge(self, cancel_at_period_end: bool) -> bool {
        let ending = matches!(self, Self::Active | Self::Trialing) && cancel_at_period_end;
        !self.has_ended() && !ending
    }
}

const CREATE_FREE: Statement = Statement {
    name: "entitlements.create_free",
    runs_as: RunsAs::Service,
    // A free entitlement, returned with its plan's limits.
    sql: "WITH e AS (
            INSERT INTO public.entitlements (family_id, plan, status) VALUES ($1, 'free', 'active')
            RETURNING plan, status, storage_used_bytes)
          SELECT e.plan, e.status, p.storage_quota_bytes, e.storage_used_bytes,
                 p.max_recording_seconds
          FROM e JOIN public.plans p ON p.code = e.plan",
};

const LOCK: Statement = Statement {
    name: "entitlements.lock",
    runs_as: RunsAs::Service,
    // The family's entitlement, plan limits and used bytes, its row locked: every
    // reservation of the family is made under this lock.
    sql: "SELECT e.status, p.is_paid, e.current_period_end > now() - interval '3 days' AS period_current,
                 p.storage_quota_bytes, p.max_recording_seconds, e.storage_used_bytes
          FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
          WHERE e.family_id = $1
          FOR UPDATE OF e",
};

const BILLING: Statement = Statement {
    name: "entitlements.billing",
    runs_as: RunsAs::Service,
    // The family's Stripe customer, whether its plan is a paid one and its
    // subscription's status (no row once the family is deleted).
    sql: "SELECT e.stripe_customer_id, p.is_paid, e.status
          FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
          JOIN public.families f ON f.id = e.family_id AND f.deleted_at IS NULL
          WHERE e.family_id = $1",
};

const FOLLOWED: Statement = Statement {
    name: "entitlements.followed",
    runs_as: RunsAs::Service,
    // The subscription the family follows, if any: its status and whether it is set to
    // end with its period.
    sql: "SELECT status, cancel_at_period_end FROM public.entitlements
          WHERE family_id = $1 AND stripe_subscription_id IS NOT NULL",
};

const CUSTOMER: Statement = Statement {
    name: "entitlements.customer",
    runs_as: RunsAs::Service,
    // The family's Stripe customer, whatever its state (a family being purged).
    sql: "SELECT stripe_customer_id FROM public.entitlements WHERE family_id = $1",
};

const SET_CUSTOMER: Statement = Statement {
    name: "entitlements.set_customer",
    runs_as: RunsAs::Service,
    // The customer Stripe created for the family, kept for every later checkout.
    sql: "UPDATE public.entitlements SET stripe_customer_id = $2 WHERE family_id = $1",
};

const LOCK_OF_CUSTOMER: Statement = Statement {
    name: "entitlements.lock_of_customer",
    runs_as: RunsAs::Service,
    // The family of a customer (else of the subscription's metadata), its entitlement
    // row locked: every change of a family's entitlement is serialised on it.
    sql: "SELECT e.family_id, e.plan, e.status, e.stripe_subscription_id,
                 EXISTS (SELECT 1 FROM public.families f
                         WHERE f.id = e.family_id AND f.purged_at IS NOT NULL) AS purged
          FROM public.entitlements e
          WHERE e.stripe_customer_id = $1 OR (e.stripe_customer_id IS NULL AND e.family_id = $2)
          ORDER BY e.stripe_customer_id IS NULL LIMIT 1
          FOR UPDATE OF e",
};

const APPLY: Statement = Statement {
    name: "entitlements.apply_subscription",
    runs_as: RunsAs::Service,
    // The entitlement as Stripe holds the subscription now.
    sql: "UPDATE public.entitlements
          SET plan = $2, status = $3, stripe_subscription_id = $4,
              stripe_customer_id = coalesce(stripe_customer_id, $5),
              current_period_end = to_timestamp($6), cancel_at_period_end = $7
          WHERE family_id = $1",
};

const PLAN_OF_PRICE: Statement = Statement {
    name: "entitlements.plan_of_price",
    runs_as: RunsAs::Service,
    // The plan a Stripe price stands for.
    sql: "SELECT plan FROM public.plan_prices WHERE stripe_price_id = $1",
};

const PAID_PRICE: Statement = Statement {
    name: "entitlements.paid_price",
    runs_as: RunsAs::Service,
    // Whether the price maps to a paid plan we sell (in this environment).
    sql: "SELECT 1 AS found FROM public.plan_prices pp JOIN public.plans p ON p.code = pp.plan
          WHERE pp.stripe_price_id = $1 AND p.is_paid",
};

const SAMPLE: Statement = Statement {
    name: "entitlements.sample",
    runs_as: RunsAs::Service,
    // The next families of the books' rotating sample.
    sql: "SELECT family_id FROM public.entitlements WHERE family_id > $1
          ORDER BY family_id LIMIT $2",
};

const RECONCILE: Statement = Statement {
    name: "entitlements.reconcile",
    runs_as: RunsAs::Operator,
    // An operator's correction after a human looked: counter and ledger brought to the
    // family's recordings, the reason recorded (not granted to the service role).
    sql: "SELECT public.reconcile_storage($1, $2) AS used",
};

const CHECKOUT_LOCK: Statement = Statement {
    name: "entitlements.checkout_lock",
    runs_as: RunsAs::Service,
    // Serialises the checkouts of one family, and a deletion with them
    // (transaction-scoped: safe behind a pooler).
    sql: "SELECT pg_advisory_xact_lock(hashtextextended('checkout:' || $1::text, 0))",
};

const OPEN_SESSION: Statement = Statement {
    name: "entitlements.open_session",
    runs_as: RunsAs::Service,
    // The family's Checkout session that is still open (not expired, not known to be
    // paid), if any.
    sql: "SELECT stripe_session_id, stripe_price_id, success_url, cancel_url, url
          FROM public.checkout_sessions
          WHERE family_id = $1 AND expires_at > now() AND completed_at IS NULL",
};

const SAVE_SESSION: Statement = Statement {
    name: "entitlements.save_session",
    runs_as: RunsAs::Service,
    // The family's new Checkout session, in place of the one before.
    sql: "INSERT INTO public.checkout_sessions
            (family_id, stripe_session_id, stripe_price_id, success_url, cancel_url, url, expires_at)
          VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7))
          ON CONFLICT ON CONSTRAINT checkout_sessions_family_id_key DO UPDATE
          SET stripe_session_id = EXCLUDED.stripe_session_id, completed_at = NULL,
              stripe_price_id = EXCLUDED.stripe_price_id, success_url = EXCLUDED.success_url,
              cancel_url = EXCLUDED.cancel_url, url = EXCLUDED.url,
              expires_at = EXCLUDED.expires_at",
};

const SESSION_COMPLETED: Statement = Statement {
    name: "entitlements.session_completed",
    runs_as: RunsAs::Service,
    // A Checkout session paid: it is no longer open (nothing expires it, and a later
    // checkout is refused only while the subscription is live).
    sql: "UPDATE public.checkout_sessions SET completed_at = coalesce(completed_at, now())
          WHERE stripe_session_id = $1",
};

const FORGET_SESSION: Statement = Statement {
    name: "entitlements.forget_session",
    runs_as: RunsAs::Service,
    // Forgets the family's Checkout session (expired at Stripe, or paid).
    sql: "DELETE FROM public.checkout_sessions WHERE family_id = $1",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[
    &CREATE_FREE,
    &LOCK,
    &BILLING,
    &FOLLOWED,
    &CUSTOMER,
    &SET_CUSTOMER,
    &LOCK_OF_CUSTOMER,
    &APPLY,
    &PLAN_OF_PRICE,
    &PAID_PRICE,
    &SAMPLE,
    &RECONCILE,
    &CHECKOUT_LOCK,
    &OPEN_SESSION,
    &SAVE_SESSION,
    &SESSION_COMPLETED,
    &FORGET_SESSION,
];

/// A family's plan, its standing and its storage.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Entitlement")]
pub struct Summary {
    /// `free`, `family` or `legacy`.
    pub plan: String,
    /// As Stripe holds the subscription (`active` on free).
    pub status: SubscriptionStatus,
    pub storage_quota_bytes: i64,
    pub storage_used_bytes: i64,
    pub max_recording_seconds: i32,
}

/// Gives a new family the free plan.
pub async fn create_free(tx: &Tx<'_>, family: Uuid) -> Result<Summary, StoreError> {
    let row = one(tx, &CREATE_FREE, &[(&family, Type::UUID)]).await?;
    Ok(Summary {
        plan: row.get("plan"),
        status: row.get("status"),
        storage_quota_bytes: row.get("storage_quota_bytes"),
        storage_used_bytes: row.get("storage_used_bytes"),
        max_recording_seconds: row.get("max_recording_seconds"),
    })
}

/// A family's entitlement, its row locked.
#[derive(Debug, Clone)]
pub struct Entitlement {
    pub status: SubscriptionStatus,
    pub is_paid: bool,
    /// A paid plan's period ended less than 3 days ago or later (None: no period).
    pub period_current: Option<bool>,
    pub quota: i64,
    pub max_seconds: i32,
    pub used: i64,
}

/// Why an upload is refused, in the order the checks run (contract §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadRefusal {
    /// Unpaid, paused, incomplete.
    Status,
    /// A paid plan whose period is over.
    NotCurrent,
    /// Used + reserved + this would pass the quota.
    Quota,
    /// Longer than the plan allows.
    Duration,
}

impl Entitlement {
    /// The family's entitlement, locked until the transaction ends: every reservation
    /// and finalize of the family queues here.
    pub async fn lock(tx: &Tx<'_>, family: Uuid) -> Result<Option<Entitlement>, StoreError> {
        Ok(maybe(tx, &LOCK, &[(&family, Type::UUID)])
            .await?
            .map(|r| Entitlement {
                status: r.get("status"),
                is_paid: r.get("is_paid"),
                period_current: r.get("period_current"),
                quota: r.get("storage_quota_bytes"),
                max_seconds: r.get("max_recording_seconds"),
                used: r.get("storage_used_bytes"),
            }))
    }

    /// Whether an upload of `bytes` lasting `seconds` may be reserved, with `reserved`
    /// bytes held by the family's open reservations.
    pub fn allows_upload(
        &self,
        bytes: i64,
        seconds: f64,
        reserved: i64,
    ) -> Result<(), UploadRefusal> {
        if !self.status.allows_uploads() {
            return Err(UploadRefusal::Status);
        }
        if self.is_paid
            && (self.status == SubscriptionStatus::Canceled || self.period_current == Some(false))
        {
            return Err(UploadRefusal::NotCurrent);
        }
        if self.used + reserved + bytes > self.quota {
            return Err(UploadRefusal::Quota);
        }
        if seconds > f64::from(self.max_seconds) {
            return Err(UploadRefusal::Duration);
        }
        Ok(())
    }
}

/// A family's billing as checkouts see it.
#[derive(Debug, Clone)]
pub struct Billing {
    pub customer: Option<String>,
    pub is_paid: bool,
    pub status: SubscriptionStatus,
}

impl Billing {
    /// A paid plan whose subscription is live: no second checkout.
    pub fn subscribed(&self) -> bool {
        self.is_paid && self.status.is_live()
    }
}

/// The family's billing, unless it is deleted.
pub async fn billing(tx: &Tx<'_>, family: Uuid) -> Result<Option<Billing>, StoreError> {
    Ok(maybe(tx, &BILLING, &[(&family, Type::UUID)])
        .await?
        .map(|r| Billing {
            customer: r.get("stripe_customer_id"),
            is_paid: r.get("is_paid"),
            status: r.get("status"),
        }))
}

/// The subscription the family follows, if any: its status and whether it ends with
/// its period.
pub async fn followed(
    tx: &Tx<'_>,
    family: Uuid,
) -> Result<Option<(SubscriptionStatus, bool)>, StoreError> {
    Ok(maybe(tx, &FOLLOWED, &[(&family, Type::UUID)])
        .await?
        .map(|r| (r.get("status"), r.get("cancel_at_period_end"))))
}

/// The family's Stripe customer.
pub async fn customer(tx: &Tx<'_>, family: Uuid) -> Result<Option<String>, StoreError> {
    Ok(maybe(tx, &CUSTOMER, &[(&family, Type::UUID)])
        .await?
        .and_then(|r| r.get("stripe_customer_id")))
}

/// Keeps the customer Stripe created for the family.
pub async fn set_customer(tx: &Tx<'_>, family: Uuid, customer: &str) -> Result<(), StoreError> {
    let params = [(&family as _, Type::UUID), (&customer as _, Type::TEXT)];
    query(tx, &SET_CUSTOMER, &params).await?;
    Ok(())
}

/// The entitlement a Stripe event is about, locked.
#[derive(Debug, Clone)]
pub struct Followed {
    pub family_id: Uuid,
    pub plan: String,
    pub status: SubscriptionStatus,
    pub subscription: Option<String>,
    /// Its family was purged: nothing Stripe says changes it.
    pub purged: bool,
}

/// The entitlement of a Stripe customer (else of the family its subscription's metadata
/// names), locked.
pub async fn lock_of_customer(
    tx: &Tx<'_>,
    customer: &str,
    metadata_family: Option<Uuid>,
) -> Result<Option<Followed>, StoreError> {
    let params = [
        (&customer as _, Type::TEXT),
        (&metadata_family as _, Type::UUID),
    ];
    Ok(maybe(tx, &LOCK_OF_CUSTOMER, &params)
        .await?
        .map(|r| Followed {
            family_id: r.get("family_id"),
            plan: r.get("plan"),
            status: r.get("status"),
            subscription: r.get("stripe_subscription_id"),
            purged: r.get("purged"),
        }))
}

/// A subscription as Stripe holds it now, as the entitlement keeps it.
#[derive(Debug, Clone)]
pub struct Applied<'a> {
    pub plan: &'a str,
    pub status: SubscriptionStatus,
    pub subscription: &'a str,
    pub customer: &'a str,
    /// Unix seconds.
    pub period_end: Option<i64>,
    pub cancel_at_period_end: bool,
}

/// Sets the family's entitlement to what Stripe holds.
pub async fn apply(tx: &Tx<'_>, family: Uuid, applied: &Applied<'_>) -> Result<(), StoreError> {
    let status = applied.status.as_str();
    let period_end = applied.period_end.map(|t| t as f64);
    let params = [
        (&family as _, Type::UUID),
        (&applied.plan as _, Type::TEXT),
        (&status as _, Type::TEXT),
        (&applied.subscription as _, Type::TEXT),
        (&applied.customer as _, Type::TEXT),
        (&period_end as _, Type::FLOAT8),
        (&applied.cancel_at_period_end as _, Type::BOOL),
    ];
    query(tx, &APPLY, &params).await?;
    Ok(())
}

/// The plan a Stripe price stands for.
pub async fn plan_of_price(tx: &Tx<'_>, price: &str) -> Result<Option<String>, StoreError> {
    Ok(maybe(tx, &PLAN_OF_PRICE, &[(&price, Type::TEXT)])
        .await?
        .map(|r| r.get("plan")))
}

/// Whether the price is one of a paid plan we sell.
pub async fn is_paid_price(tx: &Tx<'_>, price: &str) -> Result<bool, StoreError> {
    Ok(!query(tx, &PAID_PRICE, &[(&price, Type::TEXT)])
        .await?
        .is_empty())
}

/// The next `limit` families after `after`, in id order (the books' rotating sample).
pub async fn sample(tx: &Tx<'_>, after: Uuid, limit: i64) -> Result<Vec<Uuid>, StoreError> {
    let params = [(&after as _, Type::UUID), (&limit as _, Type::INT8)];
    let rows = query(tx, &SAMPLE, &params).await?;
    Ok(rows.iter().map(|r| r.get("family_id")).collect())
}

/// Brings a family's counter and ledger to its recordings, recording `reason` (in an
/// operator's transaction, [`Tx::operator`]): the bytes it now uses.
pub async fn reconcile(tx: &Tx<'_>, family: Uuid, reason: &str) -> Result<i64, StoreError> {
    let params = [(&family as _, Type::UUID), (&reason as _, Type::TEXT)];
    Ok(one(tx, &RECONCILE, &params).await?.get("used"))
}

/// Takes the family's checkout lock until the transaction ends.
pub async fn checkout_lock(tx: &Tx<'_>, family: Uuid) -> Result<(), StoreError> {
    query(tx, &CHECKOUT_LOCK, &[(&family, Type::UUID)]).await?;
    Ok(())
}

/// A family's Checkout session.
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub id: String,
    pub price: String,
    pub success_url: String,
    pub cancel_url: String,
    pub url: String,
}

impl CheckoutSession {
    /// The family's open session, if any.
    pub async fn open(tx: &Tx<'_>, family: Uuid) -> Result<Option<CheckoutSession>, StoreError> {
        Ok(maybe(tx, &OPEN_SESSION, &[(&family, Type::UUID)])
            .await?
            .map(|r| CheckoutSession {
                id: r.get("stripe_session_id"),
                price: r.get("stripe_price_id"),
                success_url: r.get("success_url"),
                cancel_url: r.get("cancel_url"),
                url: r.get("url"),
            }))
    }

    /// Keeps it as the family's session (in place of the one before), open until
    /// `expires_at`.
    pub async fn save(
        &self,
        tx: &Tx<'_>,
        family: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let expires_at = expires_at.timestamp() as f64;
        let params = [
            (&family as _, Type::UUID),
            (&self.id as _, Type::TEXT),
            (&self.price as _, Type::TEXT),
            (&self.success_url as _, Type::TEXT),
            (&self.cancel_url as _, Type::TEXT),
            (&self.url as _, Type::TEXT),
            (&expires_at as _, Type::FLOAT8),
        ];
        query(tx, &SAVE_SESSION, &params).await?;
        Ok(())
    }

    /// The session with this Stripe id was paid.
    pub async fn completed(tx: &Tx<'_>, id: &str) -> Result<(), StoreError> {
        query(tx, &SESSION_COMPLETED, &[(&id, Type::TEXT)]).await?;
        Ok(())
    }

    /// The family has no session any more.
    pub async fn forget(tx: &Tx<'_>, family: Uuid) -> Result<(), StoreError> {
        query(tx, &FORGET_SESSION, &[(&family, Type::UUID)]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SubscriptionStatus as S;

    #[test]
    fn a_family_may_be_charged_until_its_subscription_ends_or_is_set_to_end() {
        let all = [
            S::Active,
            S::Trialing,
            S::PastDue,
            S::Unpaid,
            S::Paused,
            S::Incomplete,
            S::IncompleteExpired,
            S::Canceled,
        ];
        for status in all {
            assert_eq!(S::parse(status.as_str()), Some(status));
            let ended = matches!(status, S::Canceled | S::IncompleteExpired);
            assert_eq!(status.may_charge(false), !ended, "{status:?}");
        }
        assert!(!S::Active.may_charge(true));
        assert!(!S::Trialing.may_charge(true));
        // Past due, unpaid or paused: Stripe still holds it, whatever the flag says.
        for status in [S::PastDue, S::Unpaid, S::Paused, S::Incomplete] {
            assert!(status.may_charge(true), "{status:?}");
        }
    }
}
