//! The SQL floor: a function's statements, in its transactions and in its order, without
//! the function, over bare tokio-postgres connections (one per concurrent worker, as the
//! runner's pool has one per concurrent request). It calls the same store functions the
//! functions call (`shared::store`), so the two cannot drift apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shared::auth::User;
use shared::db::Tx;
use shared::store::entitlements::{
    self, Applied, CheckoutSession, Entitlement, SubscriptionStatus,
};
use shared::store::families::{self, Family, Language, Membership};
use shared::store::invites;
use shared::store::recordings::{self, Reservation, Stored};
use shared::store::{StoreError, prompts, rate_limits, stripe_events};
use tokio_postgres::{Client, NoTls};

use crate::stats::Latencies;
use crate::world::{Purpose, Spread, Work, World};

use local::{create_family, create_invite, redeem_invite};

/// One transaction on a bare connection, begun as the functions' pool begins them (as
/// `caller`, or the service role), committed.
async fn transaction<T>(
    client: &Client,
    caller: Option<&User>,
    f: impl AsyncFnOnce(&Tx<'_>) -> Result<T, StoreError>,
) -> anyhow::Result<T> {
    let tx = Tx::begin(client, caller).await?;
    let value = f(&tx).await?;
    tx.commit().await?;
    Ok(value)
}

/// One request's SQL, as its function sends it: the same store functions, in the same
/// transactions and order.
pub async fn run(client: &Client, work: &Work) -> anyhow::Result<()> {
    match work {
        Work::CreateFamily { user, name } => {
            transaction(client, None, async |tx| {
                let key = format!("create-family:{user}");
                rate_limits::take(tx, &key, create_family::DAILY_LIMIT, "1 day").await?;
                let family = Family::create(tx, name, Language::En, *user).await?;
                prompts::add_defaults(tx, family.id, Language::En).await?;
                entitlements::create_free(tx, family.id).await
            })
            .await?;
        }
        Work::CreateInvite { caller, invite } => {
            let family = invite.family_id;
            let seen = Membership::of_caller;
            transaction(client, Some(caller), async |tx| seen(tx, family).await).await?;
            transaction(client, None, async |tx| {
                Membership::lock(tx, family, caller.id).await?;
                let key = format!("create-invite:{family}");
                rate_limits::take(tx, &key, create_invite::HOURLY_LIMIT, "1 hour").await?;
                invites::create(tx, invite).await
            })
            .await?;
        }
        Work::RedeemInvite { user, code_hmac } => {
            let key = format!("redeem-invite:{user}");
            let limit = redeem_invite::HOURLY_ATTEMPTS;
            transaction(client, None, async |tx| {
                rate_limits::take(tx, &key, limit, "1 hour").await
            })
            .await?;
            let hmacs = [code_hmac.clone()];
            let joined = transaction(client, None, async |tx| {
                invites::redeem(tx, &hmacs, *user, &key).await
            })
            .await?;
            if joined.is_none_or(|j| j.already_member) {
                bail!("the floor's redemption did not join");
            }
        }
        Work::UploadUrl { reservation } => {
            let (family, user) = (
                reservation.family_id,
                reservation.user_id.unwrap_or_default(),
            );
            transaction(client, None, async |tx| {
                Membership::lock(tx, family, user).await?;
                Entitlement::lock(tx, family).await?;
                recordings::reserved_bytes(tx, family).await?;
                reservation.create(tx, shared::r2::URL_EXPIRY).await
            })
            .await?;
        }
        Work::Finalize {
            user,
            family,
            recording,
            title,
        } => {
            let reservation = transaction(client, None, async |tx| {
                Reservation::get(tx, *recording).await
            })
            .await?
            .context("no reservation")?;
            transaction(client, None, async |tx| {
                Membership::lock(tx, *family, *user).await?;
                let audio = Stored {
                    size: reservation.audio_size,
                    sha256: reservation.audio_sha256.clone(),
                };
                reservation.finalize(tx, Some(title), &audio, None).await
            })
            .await?;
        }
        Work::Playback { caller, recording } => {
            let playable = transaction(client, Some(caller), async |tx| {
                recordings::playable(tx, *recording).await
            })
            .await?;
            if playable.is_none() {
                bail!("recording {recording} is not visible");
            }
        }
        Work::Checkout {
            caller,
            family,
            price,
        } => {
            let seen = Membership::of_caller;
            transaction(client, Some(caller), async |tx| seen(tx, *family).await).await?;
            transaction(client, None, async |tx| {
                entitlements::checkout_lock(tx, *family).await?;
                entitlements::is_paid_price(tx, price).await?;
                entitlements::billing(tx, *family).await
            })
            .await?;
            transaction(client, None, async |tx| {
                entitlements::checkout_lock(tx, *family).await?;
                entitlements::billing(tx, *family).await?;
                CheckoutSession::open(tx, *family).await?;
                Membership::lock(tx, *family, caller.id).await
            })
            .await?;
        }
        Work::Member { caller, family } => {
            let seen = Membership::of_caller;
            transaction(client, Some(caller), async |tx| seen(tx, *family).await).await?;
        }
        Work::People { family } => {
            transaction(client, None, async |tx| Family::lock_any(tx, *family).await).await?;
        }
        Work::Webhook {
            event,
            customer,
            subscription,
            price,
        } => {
            transaction(client, None, async |tx| {
                let created = chrono::Utc::now().timestamp();
                let kind = "customer.subscription.updated";
                stripe_events::record(tx, event, kind, false, created).await?;
                let current = entitlements::lock_of_customer(tx, customer, None).await?;
                let family = current.map(|c| c.family_id).unwrap_or_default();
                let plan = entitlements::plan_of_price(tx, price)
                    .await?
                    .unwrap_or_default();
                let applied = Applied {
                    plan: &plan,
                    status: SubscriptionStatus::Active,
                    subscription,
                    customer,
                    period_end: Some(1_900_000_000),
                    cancel_at_period_end: false,
                };
                entitlements::apply(tx, family, &applied).await?;
                families::first_keeper(tx, family).await
            })
            .await?;
        }
    }
    Ok(())
}

/// The SQL floor of `function` on `world` at `concurrency`: the database work of its
/// cases (spread over the world's families), then the world reset for the next run.
pub async fn of_function(
    world: &mut World,
    function: &str,
    url: &str,
    concurrency: usize,
    duration: Duration,
    wrap: bool,
) -> anyhow::Result<Latencies> {
    let works = world
        .prepare(function, Purpose::Sql, Spread::Families)
        .await?
        .into_iter()
        .map(|case| case.work)
        .collect();
    let latencies = measure(url, works, concurrency, duration, wrap).await?;
    world.reset(function).await?;
    Ok(latencies)
}

/// Runs `works` through `concurrency` connections for `duration`: each worker takes the
/// next work item, so none is done twice unless `wrap` (read-only work); running out is
/// an error.
async fn measure(
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
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
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
                run(&client, work).await?;
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
