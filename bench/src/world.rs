//! The benchmark's data: families with 1,000 recordings each, and, for every run, fresh
//! requests that take each function down its success path exactly once.

use std::sync::Arc;

use anyhow::{Context, ensure};
use futures::{StreamExt, TryStreamExt};
use secrecy::SecretString;
use serde_json::json;
use shared::auth::User as Caller;
use shared::invite::InviteCode;
use shared::r2::{AUDIO_CONTENT_TYPE, R2, RecordingKey};
use shared::store::invites::NewInvite;
use shared::store::recordings::Reservation;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::wrk::Line;

/// Families whose recordings are played, uploaded and finalized.
pub const FAMILIES: usize = 64;
/// Recordings in each of them.
pub const RECORDINGS: usize = 1_000;
/// Members of each: a keeper and three storytellers.
const MEMBERS: usize = 4;
/// Free-plan families with a Stripe customer, for invites and billing: create-invite
/// allows 20 invites per family per hour.
const BILLING_FAMILIES: usize = 2_000;
/// Requests prepared for one run (more than any run here gets through).
pub const PER_RUN: usize = 20_000;
/// For finalize-recording, whose every request needs an object in the bucket.
const FINALIZE_PER_RUN: usize = 10_000;
/// Size of each uploaded object.
pub const OBJECT_BYTES: usize = 4_096;
/// The SHA-256 the upload-URL runs declare (their bytes are never sent).
pub const UPLOAD_SHA256: &str = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";

/// The object each finalize run finds in the bucket, and its SHA-256.
pub fn object() -> Vec<u8> {
    vec![7u8; OBJECT_BYTES]
}

pub fn object_sha256() -> String {
    testkit::client::sha256(&object())
}

pub const PRICE: &str = "price_bench";
pub const APP: &str = "https://app.example.com";
pub const WEBHOOK_SECRET: &str = "whsec_bench";

/// What one request's SQL needs: the same values the function would bind.
#[derive(Clone)]
pub enum Work {
    CreateFamily {
        user: Uuid,
        name: String,
    },
    CreateInvite {
        caller: Caller,
        invite: NewInvite<'static>,
    },
    RedeemInvite {
        user: Uuid,
        code_hmac: Vec<u8>,
    },
    UploadUrl {
        reservation: Reservation,
    },
    Finalize {
        user: Uuid,
        family: Uuid,
        recording: Uuid,
        title: String,
    },
    Playback {
        caller: Caller,
        recording: Uuid,
    },
    Checkout {
        caller: Caller,
        family: Uuid,
        price: String,
    },
    /// A change of who belongs that changes nothing: the members and family locked.
    People {
        family: Uuid,
    },
    /// A function without a case of its own (the portal's too): the membership check,
    /// as the caller.
    Member {
        caller: Caller,
        family: Uuid,
    },
    Webhook {
        event: String,
        customer: String,
        subscription: String,
        price: String,
    },
}

/// A user and a token for them.
pub struct User {
    pub id: Uuid,
    pub token: String,
    /// The user as the functions' frame hands them on (their claims for Postgres).
    pub caller: shared::auth::User,
}

impl User {
    pub fn fresh() -> User {
        let id = Uuid::new_v4();
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "sub": id, "role": "authenticated", "aud": "authenticated",
            "email": format!("bench-{}@example.com", id.simple()), "iat": now, "exp": now + 12 * 3600,
        });
        User {
            id,
            token: format!("Bearer {}", testkit::server::hs256(&claims)),
            caller: shared::auth::User {
                id,
                email: None,
                claims,
            },
        }
    }
}

struct Family {
    id: Uuid,
    /// The keeper first.
    members: Vec<User>,
    recordings: Vec<Uuid>,
}

/// Which families finalize-recording's uploads go to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Each request to the next family, round robin.
    Families,
    /// Every request to the same family: they queue on its entitlement row.
    OneFamily,
}

/// What a run's requests are for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// HTTP through the runner: uploads need their objects in the bucket.
    Http,
    /// The SQL floor: the database rows are enough.
    Sql,
}

/// One request: as wrk sends it, and as the SQL floor replays it.
pub struct Case {
    pub line: Line,
    pub work: Work,
}

pub struct World {
    admin: Client,
    families: Vec<Family>,
    billing: Vec<User>,
    billing_ids: Vec<Uuid>,
    newcomers: Vec<User>,
    invite_secret: SecretString,
    r2: Arc<R2>,
    http: reqwest::Client,
    runs: usize,
}

/// Functions whose every success takes a member or a family away: they can't be
/// replayed thousands of times on one world, and are measured by the cold start and
/// the tests (`tests/it/people.rs`) only.
pub const ONCE_EACH: [&str; 3] = ["remove-member", "leave-family", "delete-family"];

/// The HTTP functions the runner benches load, but those of `ONCE_EACH` and health (a
/// `GET` whose one statement reads no table: the cold start measures it); the webhook
/// last (its events put the billing families on a paid plan, which checkout refuses,
/// until `reset`).
pub fn under_load() -> Vec<&'static str> {
    let mut functions: Vec<&str> = local::functions()
        .into_iter()
        .filter(|f| f.kind == shared::Kind::Http && !ONCE_EACH.contains(&f.name))
        .filter(|f| f.name != local::health::NAME)
        .map(|f| f.name)
        .collect();
    functions.sort_by_key(|name| *name == local::stripe_webhook::NAME);
    functions
}

/// Whether `function`'s success path reads only, so its requests may be replayed; the
/// others' never are.
pub fn replayable(function: &str) -> bool {
    matches!(
        function,
        "get-signed-playback-url"
            | "create-checkout-session"
            | "create-portal-session"
            | "set-member-role"
            | "restore-family"
    )
}

/// The requests of `cases`, for wrk.
pub fn lines(cases: Vec<Case>) -> Vec<Line> {
    cases.into_iter().map(|c| c.line).collect()
}

fn ids(users: &[User]) -> Vec<Uuid> {
    users.iter().map(|u| u.id).collect()
}

impl World {
    /// Seeds the database behind `admin` (a superuser session).
    pub async fn seed(
        admin: Client,
        invite_secret: &str,
        r2: Arc<R2>,
        stripe: &testkit::stubs::Stripe,
    ) -> anyhow::Result<World> {
        let families: Vec<Family> = (0..FAMILIES)
            .map(|_| Family {
                id: Uuid::new_v4(),
                members: (0..MEMBERS).map(|_| User::fresh()).collect(),
                recordings: Vec::new(),
            })
            .collect();
        let billing: Vec<User> = (0..BILLING_FAMILIES).map(|_| User::fresh()).collect();
        let billing_ids: Vec<Uuid> = (0..BILLING_FAMILIES).map(|_| Uuid::new_v4()).collect();
        let newcomers: Vec<User> = (0..PER_RUN).map(|_| User::fresh()).collect();

        let mut users = ids(&billing);
        users.extend(ids(&newcomers));
        let (mut family_ids, mut member_families, mut member_users, mut roles) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for f in &families {
            family_ids.push(f.id);
            for (i, m) in f.members.iter().enumerate() {
                users.push(m.id);
                member_families.push(f.id);
                member_users.push(m.id);
                roles.push(if i == 0 { "keeper" } else { "storyteller" });
            }
        }
        let keepers: Vec<Uuid> = families.iter().map(|f| f.members[0].id).collect();
        for (family, keeper) in billing_ids.iter().zip(&billing) {
            member_families.push(*family);
            member_users.push(keeper.id);
            roles.push("keeper");
        }
        let customers: Vec<String> = (0..BILLING_FAMILIES)
            .map(|i| format!("cus_bench_{i}"))
            .collect();
        // Stripe holds subscription `sub_bench_N` of customer `cus_bench_N`, active on
        // the benchmark's price: what the webhook's events re-fetch.
        let mut held = stripe.state.lock().await;
        for (i, (customer, family)) in customers.iter().zip(&billing_ids).enumerate() {
            let id = format!("sub_bench_{i}");
            let sub =
                testkit::stubs::subscription(&id, customer, "active", PRICE, &family.to_string());
            held.subscriptions.insert(id, sub);
        }
        drop(held);

        admin
            .execute(
                "INSERT INTO auth.users (id, email) SELECT u, 'bench-' || u || '@example.com' FROM unnest($1::uuid[]) u",
                &[&users],
            )
            .await?;
        let all_families: Vec<Uuid> = family_ids.iter().chain(&billing_ids).copied().collect();
        let creators: Vec<Uuid> = keepers.iter().chain(&ids(&billing)).copied().collect();
        admin
            .execute(
                "INSERT INTO families (id, name, created_by)
                 SELECT f, 'The Bench family', k FROM unnest($1::uuid[], $2::uuid[]) t(f, k)",
                &[&all_families, &creators],
            )
            .await?;
        admin
            .execute(
                "INSERT INTO family_members (family_id, user_id, role)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])",
                &[&member_families, &member_users, &roles],
            )
            .await?;
        admin
            .execute(
                "INSERT INTO entitlements (family_id, plan, status, current_period_end)
                 SELECT f, 'family', 'active', now() + interval '30 days' FROM unnest($1::uuid[]) f",
                &[&family_ids],
            )
            .await?;
        admin
            .execute(
                "INSERT INTO entitlements (family_id, stripe_customer_id)
                 SELECT * FROM unnest($1::uuid[], $2::text[])",
                &[&billing_ids, &customers],
            )
            .await?;
        admin
            .batch_execute(&format!(
                "INSERT INTO prompts (family_id, text, position, is_default)
                 SELECT f.id, d.text, d.position, true FROM families f JOIN default_prompts d ON d.language = f.language;
                 INSERT INTO plan_prices (stripe_price_id, plan) VALUES ('{PRICE}', 'family');"
            ))
            .await?;
        // A family's 1,000 recordings: two years of stories, of 1–10 minutes.
        admin
            .execute(
                "INSERT INTO recordings (id, family_id, created_by, title, duration_seconds, audio_size_bytes, created_at)
                 SELECT gen_random_uuid(), f, k, 'Story ' || g, 60 + (g * 7) % 540, 500000 + (g * 7919) % 4500000,
                        now() - g * interval '17 hours'
                 FROM unnest($1::uuid[], $2::uuid[]) t(f, k), generate_series(1, $3::int) g",
                &[&family_ids, &keepers, &(RECORDINGS as i32)],
            )
            .await?;
        admin
            .batch_execute(
                "UPDATE entitlements e SET storage_used_bytes = r.total
                 FROM (SELECT family_id, sum(size_bytes)::bigint AS total FROM recordings GROUP BY family_id) r
                 WHERE r.family_id = e.family_id;
                 INSERT INTO usage_ledger (family_id, delta_bytes, balance_after, operation, description)
                 SELECT family_id, storage_used_bytes, storage_used_bytes, 'adjustment', 'benchmark seed'
                 FROM entitlements WHERE storage_used_bytes > 0;",
            )
            .await?;
        // Statistics for the planner, and the seed's writes flushed, so no checkpoint
        // lands in the first function's runs.
        for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
            admin.batch_execute(sql).await?;
        }
        let mut families = families;
        for f in &mut families {
            f.recordings = admin
                .query("SELECT id FROM recordings WHERE family_id = $1", &[&f.id])
                .await?
                .iter()
                .map(|r| r.get("id"))
                .collect();
        }
        Ok(World {
            admin,
            families,
            billing,
            billing_ids,
            newcomers,
            invite_secret: SecretString::from(invite_secret.to_owned()),
            r2,
            http: reqwest::Client::new(),
            runs: 0,
        })
    }

    /// Fresh requests for one run of `function`.
    pub async fn prepare(
        &mut self,
        function: &str,
        purpose: Purpose,
        spread: Spread,
    ) -> anyhow::Result<Vec<Case>> {
        self.runs += 1;
        let run = self.runs;
        let post = |path: &str, user: &User, body: serde_json::Value| Line {
            method: "POST",
            path: format!("/functions/v1/{path}"),
            header: ("Authorization", user.token.clone()),
            body: body.to_string(),
        };
        let member = |j: usize| {
            let f = &self.families[j % FAMILIES];
            (f, &f.members[(j / FAMILIES) % MEMBERS])
        };
        let billing = |j: usize| {
            (
                self.billing_ids[j % BILLING_FAMILIES],
                &self.billing[j % BILLING_FAMILIES],
                j % BILLING_FAMILIES,
            )
        };
        let cases = match function {
            "create-family" => (0..PER_RUN)
                .map(|j| {
                    // Ten a day per user: each user's quota is spent once per run.
                    let user = &self.newcomers[j / 10];
                    let name = format!("The Bench family {run}-{j}");
                    Case {
                        line: post(function, user, json!({"name": name, "language": "en"})),
                        work: Work::CreateFamily { user: user.id, name },
                    }
                })
                .collect(),
            "create-invite" => (0..PER_RUN)
                .map(|j| {
                    let (family, keeper, _) = billing(j);
                    let code = InviteCode::generate().context("random")?;
                    Ok(Case {
                        line: post(function, keeper, json!({"familyId": family})),
                        work: Work::CreateInvite {
                            caller: keeper.caller.clone(),
                            invite: NewInvite {
                                family_id: family,
                                code_hmac: code.hmac(&self.invite_secret),
                                email: None,
                                created_by: keeper.id,
                                expires_in_days: 7,
                                max_uses: 1,
                            },
                        },
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            "redeem-invite" => {
                // Twenty uses per code; each newcomer joins once.
                let codes = (0..PER_RUN / 20)
                    .map(|_| InviteCode::generate().context("random"))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let hmacs: Vec<Vec<u8>> = codes.iter().map(|c| c.hmac(&self.invite_secret)).collect();
                let families: Vec<Uuid> = (0..codes.len()).map(|i| self.families[i % FAMILIES].id).collect();
                let keepers: Vec<Uuid> = (0..codes.len()).map(|i| self.families[i % FAMILIES].members[0].id).collect();
                self.admin
                    .execute(
                        "INSERT INTO invites (family_id, code_hmac, created_by, expires_at, max_uses)
                         SELECT f, c, k, now() + interval '7 days', 20 FROM unnest($1::uuid[], $2::bytea[], $3::uuid[]) t(f, c, k)",
                        &[&families, &hmacs, &keepers],
                    )
                    .await?;
                self.newcomers
                    .iter()
                    .enumerate()
                    .map(|(j, user)| Case {
                        line: post(function, user, json!({"code": codes[j % codes.len()].to_string()})),
                        work: Work::RedeemInvite { user: user.id, code_hmac: hmacs[j % codes.len()].clone() },
                    })
                    .collect()
            }
            "get-signed-upload-url" => (0..PER_RUN)
                .map(|j| {
                    let (family, user) = member(j);
                    let (size, duration) = (1_843_200, 95.5);
                    Case {
                        line: post(
                            function,
                            user,
                            json!({"familyId": family.id, "durationSeconds": duration, "sizeBytes": size,
                                   "sha256": UPLOAD_SHA256, "contentType": AUDIO_CONTENT_TYPE}),
                        ),
                        work: Work::UploadUrl {
                            reservation: Reservation {
                                id: Uuid::new_v4(),
                                family_id: family.id,
                                user_id: Some(user.id),
                                prompt_id: None,
                                audio_size: size,
                                waveform_size: None,
                                duration_seconds: duration,
                                content_type: AUDIO_CONTENT_TYPE.to_owned(),
                                audio_sha256: Some(UPLOAD_SHA256.to_owned()),
                                closed: false,
                                departure: None,
                            },
                        },
                    }
                })
                .collect(),
            "finalize-recording" => {
                let pick = |j: usize| match spread {
                    Spread::Families => member(j),
                    Spread::OneFamily => (&self.families[0], &self.families[0].members[j % MEMBERS]),
                };
                let picked: Vec<(Uuid, Uuid, Uuid)> = (0..FINALIZE_PER_RUN)
                    .map(|j| {
                        let (f, u) = pick(j);
                        (Uuid::new_v4(), f.id, u.id)
                    })
                    .collect();
                let column = |k: fn(&(Uuid, Uuid, Uuid)) -> Uuid| picked.iter().map(k).collect::<Vec<_>>();
                self.admin
                    .execute(
                        "INSERT INTO upload_reservations (id, family_id, user_id, audio_size_bytes, audio_sha256, duration_seconds, expires_at)
                         SELECT r, f, u, $4, $5, 95.5, now() + interval '15 minutes' FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) t(r, f, u)",
                        &[&column(|p| p.0), &column(|p| p.1), &column(|p| p.2), &(OBJECT_BYTES as i64), &object_sha256()],
                    )
                    .await?;
                if purpose == Purpose::Http {
                    self.upload(&picked).await?;
                }
                (0..FINALIZE_PER_RUN)
                    .map(|j| {
                        let (_, user) = pick(j);
                        let (recording, family, _) = picked[j];
                        let title = "The summer we drove to the coast".to_owned();
                        Case {
                            line: post(function, user, json!({"recordingId": recording, "familyId": family, "title": title})),
                            work: Work::Finalize { user: user.id, family, recording, title },
                        }
                    })
                    .collect()
            }
            "get-signed-playback-url" => (0..PER_RUN)
                .map(|j| {
                    let (family, user) = member(j);
                    let recording = family.recordings[(j / FAMILIES) % family.recordings.len()];
                    Case {
                        line: Line {
                            method: "GET",
                            path: format!("/functions/v1/{function}?recordingId={recording}"),
                            header: ("Authorization", user.token.clone()),
                            body: String::new(),
                        },
                        work: Work::Playback { caller: user.caller.clone(), recording },
                    }
                })
                .collect(),
            "create-checkout-session" => (0..PER_RUN)
                .map(|j| {
                    let (family, keeper, _) = billing(j);
                    Case {
                        line: post(
                            function,
                            keeper,
                            json!({"familyId": family, "priceId": PRICE,
                                   "successUrl": format!("{APP}/billing/done"), "cancelUrl": format!("{APP}/billing")}),
                        ),
                        work: Work::Checkout { caller: keeper.caller.clone(), family, price: PRICE.to_owned() },
                    }
                })
                .collect(),
            // Their read-only success paths (the member already has the role; the family
            // is not deleted): the members locked, the rules checked, nothing written.
            "set-member-role" => (0..PER_RUN)
                .map(|j| {
                    let f = &self.families[j % FAMILIES];
                    let (keeper, teller) = (&f.members[0], &f.members[1 + (j / FAMILIES) % (MEMBERS - 1)]);
                    Case {
                        line: post(function, keeper, json!({"familyId": f.id, "userId": teller.id, "role": "storyteller"})),
                        work: Work::People { family: f.id },
                    }
                })
                .collect(),
            "restore-family" => (0..PER_RUN)
                .map(|j| {
                    let f = &self.families[j % FAMILIES];
                    Case {
                        line: post(function, &f.members[0], json!({"familyId": f.id})),
                        work: Work::People { family: f.id },
                    }
                })
                .collect(),
            // A done archive of each family, its parts signed for a member (the keeper
            // who asked for it): one RLS read and a presigned URL.
            "get-archive" => {
                let ids: Vec<Uuid> = self.families.iter().map(|f| f.id).collect();
                let archives: Vec<Uuid> = self
                    .admin
                    .query(
                        "INSERT INTO archives (family_id, requested_by, status, parts_total, parts_done, expires_at)
                         SELECT f.id, f.created_by, 'done', 1, 1, now() + interval '7 days'
                         FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n) JOIN families f USING (id)
                         ORDER BY t.n RETURNING id",
                        &[&ids],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get("id"))
                    .collect();
                (0..PER_RUN)
                    .map(|j| {
                        let f = &self.families[j % FAMILIES];
                        Case {
                            line: post(function, &f.members[0], json!({"archiveId": archives[j % FAMILIES]})),
                            work: Work::Member { caller: f.members[0].caller.clone(), family: f.id },
                        }
                    })
                    .collect()
            }
            "create-portal-session" => (0..PER_RUN)
                .map(|j| {
                    let (family, keeper, _) = billing(j);
                    Case {
                        line: post(function, keeper, json!({"familyId": family, "returnUrl": format!("{APP}/billing")})),
                        work: Work::Member { caller: keeper.caller.clone(), family },
                    }
                })
                .collect(),
            "stripe-webhook" => {
                let now = chrono::Utc::now().timestamp();
                (0..PER_RUN)
                    .map(|j| {
                        let (_, _, i) = billing(j);
                        let (event, subscription, customer) =
                            (format!("evt_bench_{run}_{j}"), format!("sub_bench_{i}"), format!("cus_bench_{i}"));
                        let body = json!({"id": event, "object": "event", "type": "customer.subscription.updated",
                                          "created": now, "livemode": false,
                                          "data": {"object": {"id": subscription, "object": "subscription", "customer": customer}}})
                        .to_string();
                        Case {
                            line: Line {
                                method: "POST",
                                path: format!("/functions/v1/{function}"),
                                header: ("Stripe-Signature", shared::stripe::sign(WEBHOOK_SECRET, body.as_bytes(), now)),
                                body,
                            },
                            work: Work::Webhook { event, customer, subscription, price: PRICE.to_owned() },
                        }
                    })
                    .collect()
            }
            // A function without a case of its own: a member asks with `{"familyId"}`,
            // the success path of scripts/new-function.sh's template. One that needs
            // more fails the run loudly, and gets a case above.
            _ => (0..PER_RUN)
                .map(|j| {
                    let (family, user) = member(j);
                    Case {
                        line: post(function, user, json!({"familyId": family.id})),
                        work: Work::Member { caller: user.caller.clone(), family: family.id },
                    }
                })
                .collect(),
        };
        Ok(cases)
    }

    /// Puts each reservation's object in the bucket, as the app would.
    async fn upload(&self, picked: &[(Uuid, Uuid, Uuid)]) -> anyhow::Result<()> {
        let body = object();
        futures::stream::iter(picked)
            .map(|(recording, family, _)| {
                let body = body.clone();
                async move {
                    let key = RecordingKey {
                        family_id: *family,
                        recording_id: *recording,
                    }
                    .audio();
                    let url = self
                        .r2
                        .presign_put(
                            &key,
                            AUDIO_CONTENT_TYPE,
                            OBJECT_BYTES as i64,
                            Some(&object_sha256()),
                            std::time::Duration::from_secs(900),
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!("presign: {e:?}"))?;
                    let status =
                        testkit::client::put_object(&self.http, &url.url, AUDIO_CONTENT_TYPE, body)
                            .await;
                    ensure!(status == 200, "upload to the local S3: {status}");
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await
    }

    /// Undoes what a run of `function` leaves that would change the next run: rate
    /// limit counters, joined members, open reservations, archives, subscriptions. Only
    /// this world's: a database may hold other families beside it (the scale bench's).
    pub async fn reset(&self, function: &str) -> anyhow::Result<()> {
        // A statement over this world's users or families, then any without parameters.
        let (scoped, plain): (Option<(&str, Vec<Uuid>)>, Option<&str>) = match function {
            "create-family" | "create-invite" => (None, Some("DELETE FROM rate_limits")),
            // By who joined, not by invite: a request wrk left in flight may commit its
            // join after this reset, and deleting its invite then nulls the member's
            // invite_id; such a member is deleted by the next reset.
            "redeem-invite" => (
                Some((
                    "DELETE FROM family_members WHERE role = 'storyteller' AND user_id = ANY($1)",
                    ids(&self.newcomers),
                )),
                Some(
                    "DELETE FROM invites WHERE max_uses = 20;
                     DELETE FROM rate_limits",
                ),
            ),
            "get-signed-upload-url" | "finalize-recording" => (
                Some((
                    "DELETE FROM upload_reservations WHERE finalized_at IS NULL AND family_id = ANY($1)",
                    self.family_ids(),
                )),
                None,
            ),
            // The day's allowances are counted from the archives themselves (and
            // get-archive's runs left done ones): each run starts with none.
            "request-archive" => (
                Some((
                    "DELETE FROM archives WHERE family_id = ANY($1)",
                    self.family_ids(),
                )),
                None,
            ),
            // Its events put the billing families on a paid plan, which checkout
            // refuses: they go back to the plan they were seeded with.
            "stripe-webhook" => (
                Some((
                    "UPDATE entitlements
                     SET plan = DEFAULT, status = DEFAULT, stripe_subscription_id = NULL,
                         current_period_end = NULL, cancel_at_period_end = DEFAULT
                     WHERE family_id = ANY($1)",
                    self.billing_ids.clone(),
                )),
                None,
            ),
            _ => (None, None),
        };
        if let Some((sql, ids)) = scoped {
            self.admin.execute(sql, &[&ids]).await?;
        }
        if let Some(sql) = plain {
            self.admin.batch_execute(sql).await?;
        }
        Ok(())
    }

    /// A code of each kind that doesn't let anyone in, on one family: unknown, expired,
    /// revoked and used up.
    pub async fn bad_invite_codes(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let family = &self.families[0];
        let mut codes = vec![(
            "unknown",
            InviteCode::generate().context("random")?.to_string(),
        )];
        for (kind, expires, revoked, used) in [
            ("expired", "now() - interval '1 day'", "NULL", 0),
            ("revoked", "now() + interval '7 days'", "now()", 0),
            ("used up", "now() + interval '7 days'", "NULL", 1),
        ] {
            let code = InviteCode::generate().context("random")?;
            self.admin
                .execute(
                    &format!(
                        "INSERT INTO invites (family_id, code_hmac, created_by, expires_at, max_uses,
                                              revoked_at, use_count)
                         VALUES ($1, $2, $3, {expires}, 1, {revoked}, {used})"
                    ),
                    &[&family.id, &code.hmac(&self.invite_secret), &family.members[0].id],
                )
                .await?;
            codes.push((kind, code.to_string()));
        }
        Ok(codes)
    }

    /// The `Authorization` header of newcomer `i` (a user of no family).
    pub fn newcomer(&self, i: usize) -> &str {
        &self.newcomers[i % self.newcomers.len()].token
    }

    fn family_ids(&self) -> Vec<Uuid> {
        self.families.iter().map(|f| f.id).collect()
    }

    /// A member of one family (its keeper) and one of its recordings, for playback.
    pub fn playback(&self) -> (Uuid, Uuid) {
        let family = &self.families[0];
        (family.members[0].id, family.recordings[0])
    }

    /// One of the families with recordings (the calls-alone floors upload into it).
    pub fn family(&self) -> Uuid {
        self.families[0].id
    }
}
