//! The floors: the same work as each function's success path, without the function.
//!
//! The SQL floor sends a function's statements, in its transactions and in its order,
//! over bare tokio-postgres connections (one per concurrent worker, as the runner's pool
//! has one per concurrent request). The statements are the functions' own constants
//! (each crate's `sql` module and `shared::sql`), so they cannot drift apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::stats::Latencies;

use local::create_checkout_session::sql as checkout;
use local::create_family::{self, sql as family};
use local::create_invite::{self, sql as invite};
use local::get_signed_playback_url::sql as playback;
use local::get_signed_upload_url::sql as upload;
use local::redeem_invite::{self, sql as redeem};
use local::stripe_webhook::sql as webhook;
use shared::members::sql::{self as members, LOCK_MEMBERSHIP};
use shared::recordings::sql as finalize;
use shared::sql::{CHECKOUT_LOCK, IS_MEMBER, MEMBERSHIP, RATE_LIMIT_TAKE};

const SERVICE_CLAIMS: &str = r#"{"role":"service_role"}"#;

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
        family: Uuid,
        size: i64,
        duration: f64,
    },
    Finalize {
        user: Uuid,
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
    /// A change of who belongs that changes nothing: the members and family locked.
    People {
        family: Uuid,
    },
    /// A function without a case of its own: the membership check, as the caller.
    Member {
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

/// A transaction on a bare connection, begun as `shared::db` begins them (one round trip).
struct Tx<'c>(&'c Client);

impl Tx<'_> {
    async fn query_typed(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.0.query_typed(sql, params).await
    }

    async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.0.batch_execute("COMMIT").await
    }
}

async fn begin<'c>(client: &'c mut Client, role: &str, claims: &str) -> anyhow::Result<Tx<'c>> {
    shared::db::start(client, role, claims).await?;
    Ok(Tx(client))
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
            let (limit, language) = (create_family::DAILY_LIMIT, "en");
            let tx = begin(client, "service_role", SERVICE_CLAIMS).await?;
            tx.query_typed(
                RATE_LIMIT_TAKE,
                &[
                    (&key, Type::TEXT),
                    (&limit, Type::INT4),
                    (&"1 day", Type::TEXT),
                ],
            )
            .await?;
            let family: Uuid = tx
                .query_typed(
                    family::INSERT_FAMILY,
                    &[
                        (name, Type::TEXT),
                        (&language, Type::TEXT),
                        (user, Type::UUID),
                    ],
                )
                .await?[0]
                .get(0);
            tx.query_typed(
                family::INSERT_KEEPER,
                &[(&family, Type::UUID), (user, Type::UUID)],
            )
            .await?;
            tx.query_typed(
                family::INSERT_PROMPTS,
                &[(&family, Type::UUID), (&language, Type::TEXT)],
            )
            .await?;
            tx.query_typed(family::INSERT_ENTITLEMENT, &[(&family, Type::UUID)])
                .await?;
            tx.commit().await?;
        }
        Work::CreateInvite {
            user,
            claims,
            family,
            code_hmac,
        } => {
            as_user(client, claims, &[(MEMBERSHIP, &[(family, Type::UUID)])]).await?;
            let key = format!("create-invite:{family}");
            let (limit, days, uses) = (create_invite::HOURLY_LIMIT, 7_i32, 1_i32);
            let hour = "1 hour";
            service(
                client,
                &[
                    (
                        RATE_LIMIT_TAKE,
                        &[
                            (&key, Type::TEXT),
                            (&limit, Type::INT4),
                            (&hour, Type::TEXT),
                        ],
                    ),
                    (invite::SAVEPOINT, &[]),
                    (
                        invite::INSERT_INVITE,
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
            let (limit, hour) = (redeem_invite::HOURLY_ATTEMPTS, "1 hour");
            service(
                client,
                &[(
                    RATE_LIMIT_TAKE,
                    &[
                        (&key, Type::TEXT),
                        (&limit, Type::INT4),
                        (&hour, Type::TEXT),
                    ],
                )],
            )
            .await?;
            let hmacs = vec![code_hmac.clone()];
            let rows = service(
                client,
                &[(
                    redeem::REDEEM,
                    &[
                        (&hmacs, Type::BYTEA_ARRAY),
                        (user, Type::UUID),
                        (&key, Type::TEXT),
                    ],
                )],
            )
            .await?;
            if rows.first().map(|r| r.get::<_, String>(0)).as_deref() != Some("joined") {
                bail!("the floor's redemption did not join");
            }
        }
        Work::UploadUrl {
            user,
            family,
            size,
            duration,
        } => {
            let id = Uuid::new_v4();
            service(
                client,
                &[
                    (LOCK_MEMBERSHIP, &[(family, Type::UUID), (user, Type::UUID)]),
                    (upload::LOCK_ENTITLEMENT, &[(family, Type::UUID)]),
                    (upload::RESERVED_BYTES, &[(family, Type::UUID)]),
                    (
                        upload::INSERT_RESERVATION,
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
            family,
            recording,
            title,
        } => {
            let rows = service(
                client,
                &[(finalize::RESERVATION, &[(recording, Type::UUID)])],
            )
            .await?;
            let row = rows.first().context("no reservation")?;
            let (size, duration): (i64, f64) = (row.get(4), row.get(6));
            let title = Some(title.clone());
            service(
                client,
                &[
                    (LOCK_MEMBERSHIP, &[(family, Type::UUID), (user, Type::UUID)]),
                    (
                        finalize::FINALIZE,
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
                    (
                        finalize::FINALIZED,
                        &[(recording, Type::UUID), (family, Type::UUID)],
                    ),
                ],
            )
            .await?;
        }
        Work::Playback { claims, recording } => {
            let rows = as_user(
                client,
                claims,
                &[(playback::PLAYABLE, &[(recording, Type::UUID)])],
            )
            .await?;
            if rows.is_empty() {
                bail!("recording {recording} is not visible");
            }
        }
        Work::Checkout {
            claims,
            family,
            price,
        } => {
            as_user(client, claims, &[(MEMBERSHIP, &[(family, Type::UUID)])]).await?;
            service(
                client,
                &[
                    (CHECKOUT_LOCK, &[(family, Type::UUID)]),
                    (checkout::PRICE_OFFERED, &[(price, Type::TEXT)]),
                    (checkout::BILLING_STATE, &[(family, Type::UUID)]),
                ],
            )
            .await?;
            service(
                client,
                &[
                    (CHECKOUT_LOCK, &[(family, Type::UUID)]),
                    (checkout::BILLING_STATE, &[(family, Type::UUID)]),
                    (checkout::OPEN_SESSION, &[(family, Type::UUID)]),
                ],
            )
            .await?;
        }
        Work::Member { claims, family } => {
            as_user(client, claims, &[(IS_MEMBER, &[(family, Type::UUID)])]).await?;
        }
        Work::People { family } => {
            service(
                client,
                &[
                    (members::LOCK_MEMBERS, &[(family, Type::UUID)]),
                    (members::LOCK_FAMILY, &[(family, Type::UUID)]),
                ],
            )
            .await?;
        }
        Work::Portal { claims, family } => {
            as_user(client, claims, &[(MEMBERSHIP, &[(family, Type::UUID)])]).await?;
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
                webhook::RECORD_EVENT,
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
                    webhook::LOCK_ENTITLEMENT_OF_CUSTOMER,
                    &[(customer, Type::TEXT), (&none_uuid, Type::UUID)],
                )
                .await?;
            let family: Uuid = rows.first().context("no family for customer")?.get(0);
            let plan: String = tx
                .query_typed(webhook::PLAN_OF_PRICE, &[(price, Type::TEXT)])
                .await?[0]
                .get(0);
            let (status, period_end) = ("active", 1_900_000_000_f64);
            tx.query_typed(
                webhook::APPLY_SUBSCRIPTION,
                &[
                    (&family, Type::UUID),
                    (&plan, Type::TEXT),
                    (&status, Type::TEXT),
                    (subscription, Type::TEXT),
                    (customer, Type::TEXT),
                    (&period_end, Type::FLOAT8),
                    (&false, Type::BOOL),
                ],
            )
            .await?;
            tx.query_typed(webhook::FIRST_KEEPER, &[(&family, Type::UUID)])
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
