//! The floors: the same work as each function's success path, without the function.
//!
//! The SQL floor sends a function's statements, in its transactions and in its order,
//! over bare tokio-postgres connections (one per concurrent worker, as the runner's pool
//! has one per concurrent request). The statements are copied from the handlers; the
//! test at the bottom fails when a handler's SQL changes and this copy does not.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};
use uuid::Uuid;

use crate::stats::Latencies;

/// `shared::db`: every transaction starts with the role, the claims and a timeout.
const PROLOGUE: &str =
    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),
                    set_config('statement_timeout', $3, true)";
const SERVICE_CLAIMS: &str = r#"{"role":"service_role"}"#;

// `shared`: membership, and the keeper check of the billing functions.
const IS_MEMBER: &str =
    "SELECT 1 FROM public.family_members WHERE family_id = $1 AND user_id = (SELECT auth.uid())";
const KEEPER_OF: &str = "SELECT f.name, m.role, e.stripe_customer_id FROM public.families f
                     JOIN public.family_members m ON m.family_id = f.id AND m.user_id = (SELECT auth.uid())
                     LEFT JOIN public.entitlements e ON e.family_id = f.id
                     WHERE f.id = $1";

// create-family
const FAMILY_RATE_LIMIT: &str = "SELECT rate_limit_take($1, $2, interval '1 day')";
const INSERT_FAMILY: &str =
    "INSERT INTO public.families (name, language, created_by) VALUES ($1, $2, $3)
                         RETURNING id, name, created_at";
const INSERT_KEEPER: &str =
    "INSERT INTO public.family_members (family_id, user_id, role) VALUES ($1, $2, 'keeper')";
const INSERT_PROMPTS: &str = "INSERT INTO public.prompts (family_id, text, position, is_default)
                     SELECT $1, d.text, d.position, true FROM public.default_prompts d WHERE d.language = $2";
const INSERT_ENTITLEMENT: &str = "WITH e AS (INSERT INTO public.entitlements (family_id, plan, status) VALUES ($1, 'free', 'active')
                                    RETURNING plan, status, storage_used_bytes)
                         SELECT e.plan, e.status, p.storage_quota_bytes, e.storage_used_bytes, p.max_recording_seconds
                         FROM e JOIN public.plans p ON p.code = e.plan";

// create-invite
const INVITER: &str = "SELECT f.name, f.language, m.role FROM public.families f
                         JOIN public.family_members m ON m.family_id = f.id AND m.user_id = (SELECT auth.uid())
                         WHERE f.id = $1";
const HOURLY_RATE_LIMIT: &str = "SELECT public.rate_limit_take($1, $2, interval '1 hour')";
const SAVEPOINT: &str = "SAVEPOINT new_code";
const INSERT_INVITE: &str =
    "INSERT INTO public.invites (family_id, code_hmac, email, created_by, expires_at, max_uses)
                             VALUES ($1, $2, $3, $4, now() + make_interval(days => $5), $6)
                             RETURNING id, expires_at";

// redeem-invite
const LOCK_INVITE: &str = "SELECT i.id, i.family_id, f.name,
                                i.revoked_at IS NULL AND i.expires_at > now() AND i.use_count < i.max_uses
                         FROM public.invites i JOIN public.families f ON f.id = i.family_id
                         WHERE i.code_hmac = $1
                         FOR UPDATE OF i";
const MEMBER_ROLE: &str =
    "SELECT role FROM public.family_members WHERE family_id = $1 AND user_id = $2";
const INSERT_STORYTELLER: &str =
    "INSERT INTO public.family_members (family_id, user_id, role, invite_id)
                         VALUES ($1, $2, 'storyteller', $3)
                         ON CONFLICT ON CONSTRAINT family_members_family_user_key DO NOTHING
                         RETURNING role";
const REFUND: &str = "SELECT public.rate_limit_refund($1, interval '1 hour')";
const USE_INVITE: &str = "UPDATE public.invites SET use_count = use_count + 1 WHERE id = $1";

// get-signed-upload-url
const LOCK_ENTITLEMENT_FOR_UPLOAD: &str = "SELECT e.status, p.is_paid, e.current_period_end > now() - interval '3 days',
                                p.storage_quota_bytes, p.max_recording_seconds,
                                e.storage_used_bytes + coalesce((
                                  SELECT sum(r.audio_size_bytes + coalesce(r.waveform_size_bytes, 0))
                                  FROM public.upload_reservations r
                                  WHERE r.family_id = e.family_id AND r.finalized_at IS NULL AND r.expires_at > now()
                                ), 0)::bigint
                         FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
                         WHERE e.family_id = $1
                         FOR UPDATE OF e";
const INSERT_RESERVATION: &str = "INSERT INTO public.upload_reservations
                       (id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
                        duration_seconds, content_type, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)";

// finalize-recording
const RESERVATION: &str = "SELECT prompt_id, audio_size_bytes, waveform_size_bytes, duration_seconds, content_type
                         FROM public.upload_reservations WHERE id = $1 AND family_id = $2 AND user_id = $3";
const FINALIZE: &str = "SELECT public.finalize_recording_tx($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const FINALIZED: &str =
    "SELECT id, family_id, created_by, prompt_id, title, duration_seconds, size_bytes, created_at
                         FROM public.recordings WHERE id = $1 AND family_id = $2";

// get-signed-playback-url
const PLAYABLE: &str =
    "SELECT family_id FROM public.recordings WHERE id = $1 AND deleted_at IS NULL";

// create-checkout-session
const PRICE_OFFERED: &str =
    "SELECT 1 FROM public.plan_prices pp JOIN public.plans p ON p.code = pp.plan
                         WHERE pp.stripe_price_id = $1 AND p.is_paid";
const LOCK_ENTITLEMENT_FOR_CHECKOUT: &str =
    "SELECT e.stripe_customer_id, p.is_paid AND e.status IN ('active', 'trialing', 'past_due')
                         FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
                         WHERE e.family_id = $1 FOR UPDATE OF e";

// stripe-webhook
const RECORD_EVENT: &str =
    "INSERT INTO public.stripe_events (stripe_event_id, event_type, livemode, stripe_created_at)
                         VALUES ($1, $2, $3, to_timestamp($4))
                         ON CONFLICT ON CONSTRAINT stripe_events_stripe_event_id_key DO NOTHING
                         RETURNING id";
const LOCK_ENTITLEMENT_OF_CUSTOMER: &str =
    "SELECT family_id, plan, status, stripe_subscription_id FROM public.entitlements
             WHERE stripe_customer_id = $1 OR (stripe_customer_id IS NULL AND family_id = $2)
             ORDER BY stripe_customer_id IS NULL LIMIT 1
             FOR UPDATE";
const PLAN_OF_PRICE: &str = "SELECT plan FROM public.plan_prices WHERE stripe_price_id = $1";
const APPLY_SUBSCRIPTION: &str = "UPDATE public.entitlements
         SET plan = $2, status = $3, stripe_subscription_id = $4,
             stripe_customer_id = coalesce(stripe_customer_id, $5), current_period_end = to_timestamp($6)
         WHERE family_id = $1";
const FIRST_KEEPER: &str =
    "SELECT user_id FROM public.family_members WHERE family_id = $1 AND role = 'keeper'
             ORDER BY joined_at LIMIT 1";

/// What one request's SQL needs: the same values the function would bind.
#[derive(Clone)]
pub enum Work {
    CreateFamily {
        user: Uuid,
        name: String,
    },
    CreateInvite {
        user: Uuid,
        claims: String,
        family: Uuid,
        code_hmac: Vec<u8>,
    },
    RedeemInvite {
        user: Uuid,
        code_hmac: Vec<u8>,
    },
    UploadUrl {
        user: Uuid,
        claims: String,
        family: Uuid,
        size: i64,
        duration: f64,
    },
    Finalize {
        user: Uuid,
        claims: String,
        family: Uuid,
        recording: Uuid,
        title: String,
    },
    Playback {
        claims: String,
        recording: Uuid,
    },
    Checkout {
        claims: String,
        family: Uuid,
        price: String,
    },
    Portal {
        claims: String,
        family: Uuid,
    },
    Webhook {
        event: String,
        customer: String,
        subscription: String,
        price: String,
    },
}

type Params<'a> = &'a [(&'a (dyn ToSql + Sync), Type)];

async fn begin<'c>(
    client: &'c mut Client,
    role: &str,
    claims: &str,
) -> anyhow::Result<Transaction<'c>> {
    let tx = client.transaction().await?;
    let timeout = "8s";
    tx.query_typed(
        PROLOGUE,
        &[
            (&role, Type::TEXT),
            (&claims, Type::TEXT),
            (&timeout, Type::TEXT),
        ],
    )
    .await?;
    Ok(tx)
}

/// Runs statements in one transaction as `role`; the rows of the last one.
async fn transaction(
    client: &mut Client,
    role: &str,
    claims: &str,
    statements: &[(&str, Params<'_>)],
) -> anyhow::Result<Vec<tokio_postgres::Row>> {
    let tx = begin(client, role, claims).await?;
    let mut rows = Vec::new();
    for (sql, params) in statements {
        rows = tx.query_typed(sql, params).await?;
    }
    tx.commit().await?;
    Ok(rows)
}

fn service(
    client: &mut Client,
    statements: &[(&str, Params<'_>)],
) -> impl Future<Output = anyhow::Result<Vec<tokio_postgres::Row>>> {
    transaction(client, "service_role", SERVICE_CLAIMS, statements)
}

fn as_user<'a>(
    client: &'a mut Client,
    claims: &'a str,
    statements: &'a [(&'a str, Params<'a>)],
) -> impl Future<Output = anyhow::Result<Vec<tokio_postgres::Row>>> + 'a {
    transaction(client, "authenticated", claims, statements)
}

/// One request's SQL, as its function sends it.
pub async fn run(client: &mut Client, work: &Work) -> anyhow::Result<()> {
    let expiry = "900 seconds";
    let audio = "audio/mp4";
    let none_uuid: Option<Uuid> = None;
    let none_i64: Option<i64> = None;
    let none_text: Option<String> = None;
    match work {
        Work::CreateFamily { user, name } => {
            let key = format!("create-family:{user}");
            let (limit, language) = (10_i32, "en");
            let tx = begin(client, "service_role", SERVICE_CLAIMS).await?;
            tx.query_typed(
                FAMILY_RATE_LIMIT,
                &[(&key, Type::TEXT), (&limit, Type::INT4)],
            )
            .await?;
            let family: Uuid = tx
                .query_typed(
                    INSERT_FAMILY,
                    &[
                        (name, Type::TEXT),
                        (&language, Type::TEXT),
                        (user, Type::UUID),
                    ],
                )
                .await?[0]
                .get(0);
            tx.query_typed(INSERT_KEEPER, &[(&family, Type::UUID), (user, Type::UUID)])
                .await?;
            tx.query_typed(
                INSERT_PROMPTS,
                &[(&family, Type::UUID), (&language, Type::TEXT)],
            )
            .await?;
            tx.query_typed(INSERT_ENTITLEMENT, &[(&family, Type::UUID)])
                .await?;
            tx.commit().await?;
        }
        Work::CreateInvite {
            user,
            claims,
            family,
            code_hmac,
        } => {
            as_user(client, claims, &[(INVITER, &[(family, Type::UUID)])]).await?;
            let key = format!("create-invite:{family}");
            let (limit, days, uses) = (20_i32, 7_i32, 1_i32);
            service(
                client,
                &[
                    (
                        HOURLY_RATE_LIMIT,
                        &[(&key, Type::TEXT), (&limit, Type::INT4)],
                    ),
                    (SAVEPOINT, &[]),
                    (
                        INSERT_INVITE,
                        &[
                            (family, Type::UUID),
                            (code_hmac, Type::BYTEA),
                            (&none_text, Type::TEXT),
                            (user, Type::UUID),
                            (&days, Type::INT4),
                            (&uses, Type::INT4),
                        ],
                    ),
                ],
            )
            .await?;
        }
        Work::RedeemInvite { user, code_hmac } => {
            let key = format!("redeem-invite:{user}");
            let limit = 10_i32;
            service(
                client,
                &[(
                    HOURLY_RATE_LIMIT,
                    &[(&key, Type::TEXT), (&limit, Type::INT4)],
                )],
            )
            .await?;
            let tx = begin(client, "service_role", SERVICE_CLAIMS).await?;
            let rows = tx
                .query_typed(LOCK_INVITE, &[(code_hmac, Type::BYTEA)])
                .await?;
            let row = rows.first().context("the invite is gone")?;
            let (invite, family): (Uuid, Uuid) = (row.get(0), row.get(1));
            tx.query_typed(MEMBER_ROLE, &[(&family, Type::UUID), (user, Type::UUID)])
                .await?;
            tx.query_typed(
                INSERT_STORYTELLER,
                &[
                    (&family, Type::UUID),
                    (user, Type::UUID),
                    (&invite, Type::UUID),
                ],
            )
            .await?;
            tx.query_typed(REFUND, &[(&key, Type::TEXT)]).await?;
            tx.query_typed(USE_INVITE, &[(&invite, Type::UUID)]).await?;
            tx.commit().await?;
        }
        Work::UploadUrl {
            user,
            claims,
            family,
            size,
            duration,
        } => {
            as_user(client, claims, &[(IS_MEMBER, &[(family, Type::UUID)])]).await?;
            let id = Uuid::new_v4();
            service(
                client,
                &[
                    (LOCK_ENTITLEMENT_FOR_UPLOAD, &[(family, Type::UUID)]),
                    (
                        INSERT_RESERVATION,
                        &[
                            (&id, Type::UUID),
                            (family, Type::UUID),
                            (user, Type::UUID),
                            (&none_uuid, Type::UUID),
                            (size, Type::INT8),
                            (&none_i64, Type::INT8),
                            (duration, Type::FLOAT8),
                            (&audio, Type::TEXT),
                            (&expiry, Type::TEXT),
                        ],
                    ),
                ],
            )
            .await?;
        }
        Work::Finalize {
            user,
            claims,
            family,
            recording,
            title,
        } => {
            let rows = service(
                client,
                &[(
                    RESERVATION,
                    &[
                        (recording, Type::UUID),
                        (family, Type::UUID),
                        (user, Type::UUID),
                    ],
                )],
            )
            .await?;
            let row = rows.first().context("no reservation")?;
            let (size, duration): (i64, f64) = (row.get(1), row.get(3));
            as_user(client, claims, &[(IS_MEMBER, &[(family, Type::UUID)])]).await?;
            let title = Some(title.clone());
            service(
                client,
                &[
                    (
                        FINALIZE,
                        &[
                            (recording, Type::UUID),
                            (family, Type::UUID),
                            (user, Type::UUID),
                            (&none_uuid, Type::UUID),
                            (&title, Type::TEXT),
                            (&duration, Type::FLOAT8),
                            (&audio, Type::TEXT),
                            (&size, Type::INT8),
                            (&none_i64, Type::INT8),
                        ],
                    ),
                    (FINALIZED, &[(recording, Type::UUID), (family, Type::UUID)]),
                ],
            )
            .await?;
        }
        Work::Playback { claims, recording } => {
            let rows = as_user(client, claims, &[(PLAYABLE, &[(recording, Type::UUID)])]).await?;
            if rows.is_empty() {
                bail!("recording {recording} is not visible");
            }
        }
        Work::Checkout {
            claims,
            family,
            price,
        } => {
            as_user(client, claims, &[(KEEPER_OF, &[(family, Type::UUID)])]).await?;
            service(
                client,
                &[
                    (PRICE_OFFERED, &[(price, Type::TEXT)]),
                    (LOCK_ENTITLEMENT_FOR_CHECKOUT, &[(family, Type::UUID)]),
                ],
            )
            .await?;
        }
        Work::Portal { claims, family } => {
            as_user(client, claims, &[(KEEPER_OF, &[(family, Type::UUID)])]).await?;
        }
        Work::Webhook {
            event,
            customer,
            subscription,
            price,
        } => {
            let (kind, livemode, created) = (
                "customer.subscription.updated",
                false,
                chrono::Utc::now().timestamp() as f64,
            );
            let tx = begin(client, "service_role", SERVICE_CLAIMS).await?;
            tx.query_typed(
                RECORD_EVENT,
                &[
                    (event, Type::TEXT),
                    (&kind, Type::TEXT),
                    (&livemode, Type::BOOL),
                    (&created, Type::FLOAT8),
                ],
            )
            .await?;
            let rows = tx
                .query_typed(
                    LOCK_ENTITLEMENT_OF_CUSTOMER,
                    &[(customer, Type::TEXT), (&none_uuid, Type::UUID)],
                )
                .await?;
            let family: Uuid = rows.first().context("no family for customer")?.get(0);
            let plan: String = tx
                .query_typed(PLAN_OF_PRICE, &[(price, Type::TEXT)])
                .await?[0]
                .get(0);
            let (status, period_end) = ("active", 1_900_000_000_f64);
            tx.query_typed(
                APPLY_SUBSCRIPTION,
                &[
                    (&family, Type::UUID),
                    (&plan, Type::TEXT),
                    (&status, Type::TEXT),
                    (subscription, Type::TEXT),
                    (customer, Type::TEXT),
                    (&period_end, Type::FLOAT8),
                ],
            )
            .await?;
            tx.query_typed(FIRST_KEEPER, &[(&family, Type::UUID)])
                .await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Runs `works` through `concurrency` connections for `duration`: each worker takes the
/// next work item, so none is done twice unless `wrap` (read-only work); running out is
/// an error.
pub async fn measure(
    url: &str,
    works: Vec<Work>,
    concurrency: usize,
    duration: Duration,
    wrap: bool,
) -> anyhow::Result<Latencies> {
    let works = Arc::new(works);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        let (works, next) = (works.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let mut i = next.fetch_add(1, Ordering::Relaxed);
                if wrap {
                    i %= works.len();
                }
                let work = works
                    .get(i)
                    .context("the SQL floor ran out of prepared work")?;
                let started = Instant::now();
                run(&mut client, work).await?;
                samples.push(started.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await??);
    }
    Ok(Latencies::new(samples, started.elapsed().max(duration)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squeeze(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Every statement of the floor, and the sources it was copied from.
    #[test]
    fn the_floor_sends_the_statements_the_functions_send() {
        let shared = [
            include_str!("../../../shared/src/db.rs"),
            include_str!("../../../shared/src/lib.rs"),
            include_str!("../../../shared/src/billing.rs"),
        ]
        .concat();
        let catalog: [(&str, &[&str]); 9] = [
            (
                include_str!("../../../functions/create-family/src/lib.rs"),
                &[
                    FAMILY_RATE_LIMIT,
                    INSERT_FAMILY,
                    INSERT_KEEPER,
                    INSERT_PROMPTS,
                    INSERT_ENTITLEMENT,
                ],
            ),
            (
                include_str!("../../../functions/create-invite/src/lib.rs"),
                &[INVITER, HOURLY_RATE_LIMIT, SAVEPOINT, INSERT_INVITE],
            ),
            (
                include_str!("../../../functions/redeem-invite/src/lib.rs"),
                &[
                    HOURLY_RATE_LIMIT,
                    LOCK_INVITE,
                    MEMBER_ROLE,
                    INSERT_STORYTELLER,
                    REFUND,
                    USE_INVITE,
                ],
            ),
            (
                include_str!("../../../functions/get-signed-upload-url/src/lib.rs"),
                &[LOCK_ENTITLEMENT_FOR_UPLOAD, INSERT_RESERVATION],
            ),
            (
                include_str!("../../../functions/finalize-recording/src/lib.rs"),
                &[RESERVATION, FINALIZE, FINALIZED],
            ),
            (
                include_str!("../../../functions/get-signed-playback-url/src/lib.rs"),
                &[PLAYABLE],
            ),
            (
                include_str!("../../../functions/create-checkout-session/src/lib.rs"),
                &[PRICE_OFFERED, LOCK_ENTITLEMENT_FOR_CHECKOUT],
            ),
            (
                include_str!("../../../functions/stripe-webhook/src/lib.rs"),
                &[
                    RECORD_EVENT,
                    LOCK_ENTITLEMENT_OF_CUSTOMER,
                    PLAN_OF_PRICE,
                    APPLY_SUBSCRIPTION,
                    FIRST_KEEPER,
                ],
            ),
            (shared.as_str(), &[PROLOGUE, IS_MEMBER, KEEPER_OF]),
        ];
        for (source, statements) in catalog {
            let source = squeeze(source);
            for sql in statements {
                assert!(
                    source.contains(&squeeze(sql)),
                    "the floor's copy of this statement no longer matches its function:\n{sql}"
                );
            }
        }
        assert_eq!(squeeze(SERVICE_CLAIMS), r#"{"role":"service_role"}"#);
    }
}
