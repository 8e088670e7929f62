//! Billing: checkout, portal and the webhook, with Stripe's API played by a local
//! server that records what it receives and holds the subscriptions' state.

use std::sync::Arc;

use serde_json::{Value, json};
use testkit::TestDb;
use testkit::client::{put_object, sha256};
use testkit::server::Server;
use testkit::stubs::{self, StripeState, field};
use tokio::sync::Mutex;
use uuid::Uuid;

const WEBHOOK_SECRET: &str = "whsec_test_secret";

struct Billing {
    server: Server,
    stripe: Arc<Mutex<StripeState>>,
}

async fn billing_with(overrides: &[(&str, &str)], sentry: bool) -> Billing {
    let stub = stubs::stripe().await;
    let api = format!("{}/", stub.base);
    let mut vars = vec![
        ("STRIPE_SECRET_KEY", "sk_test_123"),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_API_BASE", api.as_str()),
        ("ALLOWED_REDIRECT_ORIGINS", "https://app.example.com"),
    ];
    vars.extend_from_slice(overrides);
    let server = if sentry {
        Server::start_with_sentry_and(&vars).await
    } else {
        Server::start_with(TestDb::new().await, &vars).await
    };
    server
        .db
        .admin()
        .await
        .batch_execute(
            "INSERT INTO plan_prices (stripe_price_id, plan) VALUES ('price_family', 'family'), ('price_legacy', 'legacy')",
        )
        .await
        .expect("prices");
    Billing {
        server,
        stripe: stub.state,
    }
}

async fn billing() -> Billing {
    billing_with(&[], false).await
}

fn checkout(family: Uuid) -> Value {
    json!({"familyId": family, "priceId": "price_family",
           "successUrl": "https://app.example.com/billing/done", "cancelUrl": "https://app.example.com/billing"})
}

async fn entitlement(
    server: &Server,
    family: Uuid,
) -> (String, String, Option<String>, Option<String>) {
    let row = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT plan, status, stripe_customer_id, stripe_subscription_id FROM entitlements WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("entitlement");
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn checkout_refuses_storytellers_unknown_prices_foreign_redirects_and_subscribed_families() {
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    let (teller, teller_token) = s.user().await;
    testkit::fixtures::add_member(&s.db.admin().await, family, teller, "storyteller").await;

    let (status, body, _) = s
        .post(
            "create-checkout-session",
            Some(&teller_token),
            &checkout(family),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let mut unknown = checkout(family);
    unknown["priceId"] = json!("price_nope");
    let (status, body, _) = s
        .post("create-checkout-session", Some(&keeper), &unknown)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("VALIDATION_FAILED")),
        "{body}"
    );
    for url in [
        "https://evil.net/",
        "https://app.example.com.evil.net/billing",
        "http://app.example.com/billing",
        "https://app.example.com@evil.net/",
        "javascript:alert(1)",
        "not a url",
    ] {
        for field in ["successUrl", "cancelUrl"] {
            let mut body = checkout(family);
            body[field] = json!(url);
            let (status, response, _) = s
                .post("create-checkout-session", Some(&keeper), &body)
                .await;
            assert_eq!(status, 400, "{field} = {url}: {response}");
            assert!(
                response["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(field)
            );
        }
    }
    assert!(
        b.stripe.lock().await.customers.is_empty(),
        "Stripe was never asked"
    );
    assert_eq!(entitlement(s, family).await.2, None);

    s.db.admin()
        .await
        .execute(
            "UPDATE entitlements SET plan = 'family', status = 'active' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("subscribed");
    let (status, body, _) = s
        .post("create-checkout-session", Some(&keeper), &checkout(family))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("CONFLICT"))
    );
}

#[tokio::test]
async fn two_concurrent_checkouts_create_one_customer_and_one_session_that_says_what_stripe_needs()
{
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    let body = checkout(family);
    let (first, second) = tokio::join!(
        s.post("create-checkout-session", Some(&keeper), &body),
        s.post("create-checkout-session", Some(&keeper), &body),
    );
    for (status, body, _) in [&first, &second] {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            body["data"]["url"],
            "https://checkout.stripe.com/c/pay/cs_test_1"
        );
        assert_eq!(body["data"]["sessionId"], "cs_test_1");
    }
    let stripe = b.stripe.lock().await;
    assert_eq!(stripe.customers.len(), 1, "one customer per family");
    let (key, customer) = &stripe.customers[0];
    assert_eq!(key, &format!("family-customer-{family}"));
    assert_eq!(
        field(customer, "metadata[family_id]"),
        Some(family.to_string().as_str())
    );
    assert_eq!(entitlement(s, family).await.2.as_deref(), Some("cus_1"));

    assert_eq!(
        stripe.sessions.len(),
        1,
        "the second checkout reuses the open session"
    );
    let session = &stripe.sessions[0];
    let family = family.to_string();
    assert_eq!(field(session, "mode"), Some("subscription"));
    assert_eq!(field(session, "customer"), Some("cus_1"));
    assert_eq!(field(session, "line_items[0][price]"), Some("price_family"));
    assert_eq!(field(session, "line_items[0][quantity]"), Some("1"));
    assert_eq!(field(session, "client_reference_id"), Some(family.as_str()));
    assert_eq!(field(session, "metadata[family_id]"), Some(family.as_str()));
    assert_eq!(
        field(session, "subscription_data[metadata][family_id]"),
        Some(family.as_str())
    );
    assert_eq!(
        field(session, "success_url"),
        Some("https://app.example.com/billing/done")
    );
}

#[tokio::test]
async fn without_a_stripe_key_billing_answers_503() {
    let server = Server::start().await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    for (function, body) in [
        ("create-checkout-session", checkout(family)),
        (
            "create-portal-session",
            json!({"familyId": family, "returnUrl": "https://app.example.com/"}),
        ),
    ] {
        let (status, body, _) = server.post(function, Some(&keeper), &body).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("SERVICE_UNAVAILABLE")),
            "{function}"
        );
    }
}

#[tokio::test]
async fn the_portal_needs_a_keeper_a_customer_and_an_app_return_url() {
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    let portal = |url: &str| json!({"familyId": family, "returnUrl": url});
    let (status, _, _) = s
        .post(
            "create-portal-session",
            Some(&keeper),
            &portal("https://app.example.com/"),
        )
        .await;
    assert_eq!(status, 404, "no customer yet");
    s.db.admin()
        .await
        .execute(
            "UPDATE entitlements SET stripe_customer_id = 'cus_42' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("customer");
    let (status, _, _) = s
        .post(
            "create-portal-session",
            Some(&keeper),
            &portal("https://app.example.com.evil.net/"),
        )
        .await;
    assert_eq!(status, 400);
    let (_, stranger) = s.user().await;
    assert_eq!(
        s.post(
            "create-portal-session",
            Some(&stranger),
            &portal("https://app.example.com/")
        )
        .await
        .0,
        403
    );
    let (status, body, _) = s
        .post(
            "create-portal-session",
            Some(&keeper),
            &portal("https://app.example.com/settings"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["url"],
        "https://billing.stripe.com/p/session/test"
    );
    let stripe = b.stripe.lock().await;
    assert_eq!(stripe.portals.len(), 1);
    assert_eq!(field(&stripe.portals[0], "customer"), Some("cus_42"));
    assert_eq!(
        field(&stripe.portals[0], "return_url"),
        Some("https://app.example.com/settings")
    );
}

// ---- the webhook ----

fn event(id: &str, kind: &str, object: Value) -> Vec<u8> {
    json!({"id": id, "object": "event", "type": kind, "created": chrono::Utc::now().timestamp(), "livemode": false,
           "data": {"object": object}})
    .to_string()
    .into_bytes()
}

async fn deliver(server: &Server, body: &[u8], signature: Option<String>) -> (u16, Value) {
    let reply = server.stripe_webhook(body, signature.as_deref()).await;
    (reply.status, reply.body)
}

async fn deliver_signed(server: &Server, body: &[u8]) -> (u16, Value) {
    deliver(
        server,
        body,
        Some(shared::stripe::sign(
            WEBHOOK_SECRET,
            body,
            chrono::Utc::now().timestamp(),
        )),
    )
    .await
}

fn subscription(id: &str, customer: &str, status: &str, price: &str, family: Uuid) -> Value {
    stubs::subscription(id, customer, status, price, &family.to_string())
}

/// A family whose customer is `cus_{family}`, with Stripe holding `sub_1` in `status`.
async fn subscribed(b: &Billing, status: &str, price: &str) -> (Uuid, String, String) {
    let (_, keeper) = b.server.user().await;
    let family = b.server.family(&keeper).await;
    let customer = format!("cus_{}", family.simple());
    b.server
        .db
        .admin()
        .await
        .execute(
            "UPDATE entitlements SET stripe_customer_id = $2 WHERE family_id = $1",
            &[&family, &customer],
        )
        .await
        .expect("customer");
    let sub = format!("sub_{}", family.simple());
    b.stripe.lock().await.subscriptions.insert(
        sub.clone(),
        subscription(&sub, &customer, status, price, family),
    );
    (family, sub, keeper)
}

#[tokio::test]
async fn every_bad_signature_is_a_400_and_writes_nothing() {
    let b = billing().await;
    let s = &b.server;
    let (family, sub, _) = subscribed(&b, "active", "price_family").await;
    let body = event(
        "evt_sig",
        "customer.subscription.updated",
        json!({"id": sub}),
    );
    let now = chrono::Utc::now().timestamp();
    let good = shared::stripe::sign(WEBHOOK_SECRET, &body, now);
    let v1 = good.split("v1=").nth(1).expect("v1").to_owned();
    let mut changed = body.clone();
    changed[10] ^= 1;
    let attacks = [
        ("missing header", None, body.clone()),
        (
            "malformed header",
            Some("nonsense".to_owned()),
            body.clone(),
        ),
        ("only v0", Some(format!("t={now},v0={v1}")), body.clone()),
        (
            "wrong secret",
            Some(shared::stripe::sign("whsec_wrong", &body, now)),
            body.clone(),
        ),
        ("body changed by one byte", Some(good.clone()), changed),
        (
            "301 s old",
            Some(shared::stripe::sign(WEBHOOK_SECRET, &body, now - 301)),
            body.clone(),
        ),
        (
            // Beyond the tolerance however long the request takes to arrive: the
            // server's clock has moved on from `now` by then (301 s raced it).
            "310 s ahead",
            Some(shared::stripe::sign(WEBHOOK_SECRET, &body, now + 310)),
            body.clone(),
        ),
        (
            // A timestamp at the end of i64: far off, never an overflow.
            "t = i64::MIN",
            Some(shared::stripe::sign(WEBHOOK_SECRET, &body, i64::MIN)),
            body.clone(),
        ),
        (
            "t = i64::MAX",
            Some(shared::stripe::sign(WEBHOOK_SECRET, &body, i64::MAX)),
            body.clone(),
        ),
    ];
    for (attack, header, payload) in attacks {
        let (status, response) = deliver(s, &payload, header).await;
        assert_eq!(status, 400, "{attack}: {response}");
    }
    assert_eq!(s.count("stripe_events").await, 0);
    assert_eq!(entitlement(s, family).await.0, "free");

    let two = format!("t={now},v1={},v1={v1}", "0".repeat(64));
    let (status, response) = deliver(s, &body, Some(two)).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(entitlement(s, family).await.0, "family");
}

#[tokio::test]
async fn the_same_event_ten_times_at_once_takes_effect_once() {
    let b = billing().await;
    let s = &b.server;
    let (family, sub, _) = subscribed(&b, "active", "price_legacy").await;
    let body = event(
        "evt_once",
        "customer.subscription.created",
        json!({"id": sub}),
    );
    let deliveries = (0..10).map(|_| deliver_signed(s, &body));
    let results = futures::future::join_all(deliveries).await;
    assert!(
        results.iter().all(|(status, _)| *status == 200),
        "{results:?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|(_, r)| r["data"]["duplicate"] == false)
            .count(),
        1
    );
    assert_eq!(s.count("stripe_events").await, 1);
    assert_eq!(b.stripe.lock().await.fetches, 1, "applied once");
    assert_eq!(entitlement(s, family).await.0, "legacy");
}

#[tokio::test]
async fn whatever_the_delivery_order_the_entitlement_ends_as_stripe_holds_it() {
    let b = billing().await;
    let s = &b.server;
    // Deleted arrives before the older update: Stripe holds canceled.
    let (family, sub, _) = subscribed(&b, "canceled", "price_family").await;
    let deleted = event(
        "evt_del",
        "customer.subscription.deleted",
        json!({"id": sub, "status": "canceled"}),
    );
    let updated = event(
        "evt_upd",
        "customer.subscription.updated",
        json!({"id": sub, "status": "active"}),
    );
    assert_eq!(deliver_signed(s, &deleted).await.0, 200);
    assert_eq!(deliver_signed(s, &updated).await.0, 200);
    let (plan, status, _, _) = entitlement(s, family).await;
    assert_eq!((plan.as_str(), status.as_str()), ("free", "canceled"));

    // Updates out of order: Stripe ends on legacy, active.
    let (family, sub, _) = subscribed(&b, "active", "price_legacy").await;
    for (id, payload_status) in [
        ("evt_3", "active"),
        ("evt_1", "incomplete"),
        ("evt_2", "past_due"),
    ] {
        let body = event(
            id,
            "customer.subscription.updated",
            json!({"id": sub, "status": payload_status}),
        );
        assert_eq!(deliver_signed(s, &body).await.0, 200);
    }
    let (plan, status, _, subscription) = entitlement(s, family).await;
    assert_eq!((plan.as_str(), status.as_str()), ("legacy", "active"));
    assert_eq!(subscription.as_deref(), Some(sub.as_str()));
}

#[tokio::test]
async fn unknown_types_and_unknown_customers_are_200_the_latter_reported() {
    let b = billing_with(&[], true).await;
    let s = &b.server;
    let (status, _) = deliver_signed(
        s,
        &event("evt_x", "customer.created", json!({"id": "cus_x"})),
    )
    .await;
    assert_eq!(status, 200);
    b.stripe.lock().await.subscriptions.insert(
        "sub_orphan".into(),
        json!({
        "id": "sub_orphan", "customer": "cus_nobody", "status": "active",
        "items": {"data": [{"price": {"id": "price_family"}}]}, "metadata": {}}),
    );
    let (status, _) = deliver_signed(
        s,
        &event(
            "evt_y",
            "customer.subscription.updated",
            json!({"id": "sub_orphan"}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.count("stripe_events").await, 2, "both recorded");
    let events = s.sentry.as_ref().expect("sentry").fetch_and_clear_events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0].tags.get("feature").map(String::as_str),
        Some("billing")
    );
}

/// Uploads and finalizes a recording of `size` bytes through the API; returns its id.
async fn record(server: &Server, token: &str, family: Uuid, size: usize) -> String {
    let (status, body, _) = server
        .post(
            "get-signed-upload-url",
            Some(token),
            &json!({"familyId": family, "durationSeconds": 5, "sizeBytes": size, "sha256": sha256(&vec![7u8; size])}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"]["upload"]["url"].as_str().expect("url");
    let put = put_object(&server.http, url, "audio/mp4", vec![7u8; size]).await;
    assert_eq!(put, 200);
    let id = body["data"]["recordingId"].as_str().expect("id").to_owned();
    let (status, body, _) = server
        .post(
            "finalize-recording",
            Some(token),
            &json!({"recordingId": id, "familyId": family}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    id
}

#[tokio::test]
async fn a_failed_payment_or_an_ended_subscription_never_touches_a_recording() {
    let b = billing().await;
    let s = &b.server;
    let (family, sub, keeper) = subscribed(&b, "active", "price_family").await;
    assert_eq!(
        deliver_signed(
            s,
            &event("evt_a", "customer.subscription.created", json!({"id": sub}))
        )
        .await
        .0,
        200
    );
    // Above what free allows, once the family is back on it.
    s.db.admin()
        .await
        .execute(
            "UPDATE plans SET storage_quota_bytes = 1000 WHERE code = 'free'",
            &[],
        )
        .await
        .expect("free");
    let recordings = [
        record(s, &keeper, family, 900).await,
        record(s, &keeper, family, 900).await,
    ];

    b.stripe
        .lock()
        .await
        .subscriptions
        .get_mut(&sub)
        .expect("sub")["status"] = json!("past_due");
    let failed = event(
        "evt_b",
        "invoice.payment_failed",
        json!({"id": "in_1", "subscription": sub}),
    );
    assert_eq!(deliver_signed(s, &failed).await.0, 200);
    assert_eq!(entitlement(s, family).await.1, "past_due");
    assert_eq!(s.count("recordings").await, 2);

    b.stripe
        .lock()
        .await
        .subscriptions
        .get_mut(&sub)
        .expect("sub")["status"] = json!("canceled");
    let deleted = event("evt_c", "customer.subscription.deleted", json!({"id": sub}));
    assert_eq!(deliver_signed(s, &deleted).await.0, 200);
    let (plan, status, _, _) = entitlement(s, family).await;
    assert_eq!((plan.as_str(), status.as_str()), ("free", "canceled"));

    let (status, body, _) = s
        .post(
            "get-signed-upload-url",
            Some(&keeper),
            &json!({"familyId": family, "durationSeconds": 5, "sizeBytes": 10, "sha256": sha256(&[0; 10])}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("QUOTA_EXCEEDED"))
    );
    for id in &recordings {
        let (status, body, _) = s
            .post(
                "get-signed-playback-url",
                Some(&keeper),
                &json!({"recordingId": id}),
            )
            .await;
        assert_eq!(status, 200, "playback never stops: {body}");
        let audio = s
            .http
            .get(body["data"]["url"].as_str().expect("url"))
            .send()
            .await
            .expect("get");
        assert_eq!(audio.bytes().await.expect("bytes").len(), 900);
    }
    let admin = s.db.admin().await;
    assert_eq!(
        testkit::fixtures::accounting(&admin, family).await,
        (1800, 1800, 1800)
    );
    let deleted: i64 = admin
        .query_one(
            "SELECT count(*) FROM recordings WHERE deleted_at IS NOT NULL",
            &[],
        )
        .await
        .expect("n")
        .get(0);
    assert_eq!(deleted, 0);
}

#[tokio::test]
async fn a_webhook_while_the_database_is_down_is_a_503_and_redelivery_applies_it_once() {
    let b = billing().await;
    let s = &b.server;
    let (family, sub, _) = subscribed(&b, "active", "price_family").await;
    let body = event(
        "evt_down",
        "customer.subscription.updated",
        json!({"id": sub}),
    );

    s.db.take_offline().await;
    let (status, response) = deliver_signed(s, &body).await;
    assert_eq!(
        (status, response["error"]["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE"))
    );
    s.db.bring_online().await;
    assert_eq!(s.count("stripe_events").await, 0, "no partial write");
    assert_eq!(entitlement(s, family).await.0, "free");

    let (status, response) = deliver_signed(s, &body).await;
    assert_eq!(
        (status, &response["data"]["duplicate"]),
        (200, &json!(false)),
        "{response}"
    );
    let (status, response) = deliver_signed(s, &body).await;
    assert_eq!(
        (status, &response["data"]["duplicate"]),
        (200, &json!(true))
    );
    assert_eq!(entitlement(s, family).await.0, "family");
}

#[tokio::test]
async fn the_webhook_tells_posthog_of_plan_changes_and_cancellations() {
    let (posthog, received, _) = stubs::posthog(std::time::Duration::ZERO).await;
    let b = billing_with(
        &[("POSTHOG_API_KEY", "phc_test"), ("POSTHOG_HOST", &posthog)],
        false,
    )
    .await;
    let (family, sub, _) = subscribed(&b, "active", "price_family").await;
    let keeper: Uuid = b
        .server
        .db
        .admin()
        .await
        .query_one(
            "SELECT user_id FROM family_members WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("keeper")
        .get(0);
    assert_eq!(
        deliver_signed(
            &b.server,
            &event(
                "evt_p1",
                "customer.subscription.created",
                json!({"id": sub})
            )
        )
        .await
        .0,
        200
    );
    b.stripe
        .lock()
        .await
        .subscriptions
        .get_mut(&sub)
        .expect("sub")["status"] = json!("canceled");
    assert_eq!(
        deliver_signed(
            &b.server,
            &event(
                "evt_p2",
                "customer.subscription.deleted",
                json!({"id": sub})
            )
        )
        .await
        .0,
        200
    );

    let batches = received.lock().await;
    let events: Vec<&Value> = batches
        .iter()
        .flat_map(|b| b["batch"].as_array().into_iter().flatten())
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        [
            "billing_plan_changed",
            "billing_plan_changed",
            "billing_subscription_canceled"
        ]
    );
    assert_eq!(events[0]["properties"]["fromPlan"], "free");
    assert_eq!(events[0]["properties"]["toPlan"], "family");
    for e in &events {
        assert_eq!(e["distinct_id"], keeper.to_string().as_str());
        assert_eq!(
            e["properties"]["$groups"]["family"],
            family.to_string().as_str()
        );
    }
    assert!(
        !batches.iter().any(|b| b.to_string().contains('@')),
        "no email"
    );
}

#[tokio::test]
async fn without_a_stripe_key_the_webhook_records_what_needs_no_stripe_and_defers_the_rest() {
    let s = Server::start_with(
        TestDb::new().await,
        &[("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)],
    )
    .await;
    let (status, _) = deliver_signed(
        &s,
        &event("evt_plain", "customer.created", json!({"id": "cus_1"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = deliver_signed(
        &s,
        &event(
            "evt_sub",
            "customer.subscription.updated",
            json!({"id": "sub_1"}),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE"))
    );
    assert_eq!(
        s.count("stripe_events").await,
        1,
        "the deferred event is not recorded, so it applies when retried"
    );
}

// ---- at most one subscription per family ----

async fn session_status(b: &Billing, id: &str) -> Option<String> {
    b.stripe.lock().await.session_status.get(id).cloned()
}

#[tokio::test]
async fn a_second_checkout_reuses_the_open_session_and_another_price_expires_it_first() {
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;

    let first = s.create_checkout_session(&keeper, &checkout(family)).await;
    let again = s.create_checkout_session(&keeper, &checkout(family)).await;
    assert_eq!(first.data()["sessionId"], "cs_test_1");
    assert_eq!(
        again.data(),
        first.data(),
        "the open session, not a second one"
    );
    assert_eq!(b.stripe.lock().await.sessions.len(), 1);

    let mut legacy = checkout(family);
    legacy["priceId"] = json!("price_legacy");
    let other = s.create_checkout_session(&keeper, &legacy).await;
    assert_eq!(other.data()["sessionId"], "cs_test_2");
    assert_eq!(
        session_status(&b, "cs_test_1").await.as_deref(),
        Some("expired"),
        "the first can no longer be paid"
    );
    assert_eq!(
        session_status(&b, "cs_test_2").await.as_deref(),
        Some("open")
    );
    let kept: String =
        s.db.admin()
            .await
            .query_one(
                "SELECT stripe_session_id FROM checkout_sessions WHERE family_id = $1",
                &[&family],
            )
            .await
            .expect("session")
            .get(0);
    assert_eq!(kept, "cs_test_2");
}

#[tokio::test]
async fn ten_concurrent_checkouts_of_one_family_leave_one_open_session() {
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    let bodies: Vec<Value> = (0..10)
        .map(|i| {
            let mut body = checkout(family);
            if i % 2 == 1 {
                body["priceId"] = json!("price_legacy");
            }
            body
        })
        .collect();
    let answers = futures::future::join_all(
        bodies
            .iter()
            .map(|body| s.create_checkout_session(&keeper, body)),
    )
    .await;
    assert!(answers.iter().all(|r| r.status == 200), "{answers:#?}");
    let stripe = b.stripe.lock().await;
    let open: Vec<&String> = stripe
        .session_status
        .iter()
        .filter(|(_, status)| *status == "open")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(open.len(), 1, "{:?}", stripe.session_status);
    assert_eq!(stripe.customers.len(), 1);
}

#[tokio::test]
async fn a_paid_session_the_webhook_has_not_told_us_about_yet_is_a_409_while_it_lasts() {
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    let first = s.create_checkout_session(&keeper, &checkout(family)).await;
    let id = first.data()["sessionId"].as_str().expect("id").to_owned();
    {
        let mut stripe = b.stripe.lock().await;
        stripe
            .session_status
            .insert(id.clone(), "complete".to_owned());
        stripe
            .session_subscription
            .insert(id, "sub_paid".to_owned());
        let sub = stubs::subscription(
            "sub_paid",
            "cus_1",
            "active",
            "price_family",
            &family.to_string(),
        );
        stripe.subscriptions.insert("sub_paid".to_owned(), sub);
    }
    let again = s.create_checkout_session(&keeper, &checkout(family)).await;
    assert_eq!(
        (again.status, again.code()),
        (409, Some("CONFLICT")),
        "{again:?}"
    );
    assert_eq!(b.stripe.lock().await.sessions.len(), 1);

    // The subscription it started has ended since (and its webhooks never came): the
    // family, back on free, may check out again.
    b.stripe
        .lock()
        .await
        .subscriptions
        .get_mut("sub_paid")
        .expect("sub")["status"] = json!("canceled");
    let later = s.create_checkout_session(&keeper, &checkout(family)).await;
    assert_eq!(later.status, 200, "{later:?}");
    assert_eq!(b.stripe.lock().await.sessions.len(), 2);
}

#[tokio::test]
async fn with_two_live_subscriptions_the_family_keeps_one_and_deleting_either_leaves_it_on_the_other()
 {
    for deleted in ["kept", "duplicate"] {
        let b = billing_with(&[], true).await;
        let s = &b.server;
        let (family, kept, _) = subscribed(&b, "active", "price_family").await;
        let customer = format!("cus_{}", family.simple());
        assert_eq!(
            deliver_signed(
                s,
                &event(
                    "evt_1",
                    "customer.subscription.created",
                    json!({"id": kept})
                )
            )
            .await
            .0,
            200
        );
        // A second paid subscription (two sessions paid, or made in the dashboard).
        let duplicate = format!("sub_dup_{}", family.simple());
        let mut second = subscription(&duplicate, &customer, "active", "price_legacy", family);
        second["created"] = json!(chrono::Utc::now().timestamp() + 60);
        b.stripe
            .lock()
            .await
            .subscriptions
            .insert(duplicate.clone(), second);
        let created = event(
            "evt_2",
            "customer.subscription.created",
            json!({"id": duplicate}),
        );
        assert_eq!(deliver_signed(s, &created).await.0, 200);
        let (plan, _, _, following) = entitlement(s, family).await;
        assert_eq!(
            (plan.as_str(), following.as_deref()),
            ("family", Some(kept.as_str())),
            "the family keeps the subscription it had"
        );
        let events = s
            .sentry
            .as_ref()
            .expect("transport")
            .fetch_and_clear_events();
        assert!(
            events
                .iter()
                .any(|e| e.tags.get("action").map(String::as_str)
                    == Some("duplicate_subscription")
                    && format!("{e:?}").contains(&duplicate)),
            "the duplicate is reported: {events:#?}"
        );

        let (gone, other, other_plan) = if deleted == "kept" {
            (&kept, &duplicate, "legacy")
        } else {
            (&duplicate, &kept, "family")
        };
        b.stripe
            .lock()
            .await
            .subscriptions
            .get_mut(gone)
            .expect("sub")["status"] = json!("canceled");
        let ended = event(
            "evt_3",
            "customer.subscription.deleted",
            json!({"id": gone}),
        );
        assert_eq!(deliver_signed(s, &ended).await.0, 200);
        let (plan, status, _, following) = entitlement(s, family).await;
        assert_eq!(
            (plan.as_str(), status.as_str(), following.as_deref()),
            (other_plan, "active", Some(other.as_str())),
            "deleting the {deleted} one leaves the family on the other"
        );
    }
}

#[tokio::test]
async fn a_first_checkout_creating_the_customer_does_not_hold_up_the_familys_uploads() {
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    let gate = std::sync::Arc::new(stubs::Gate::default());
    b.stripe.lock().await.customer_gate = Some(gate.clone());

    let checkout = tokio::spawn({
        let (base, token, body) = (
            s.url("create-checkout-session"),
            keeper.clone(),
            checkout(family),
        );
        async move {
            reqwest::Client::new()
                .post(base)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("checkout")
                .status()
                .as_u16()
        }
    });
    // Stripe is creating the family's customer, and takes its time...
    gate.reached.notified().await;
    // ...while the family records: no lock the upload needs is held meanwhile.
    let upload = s
        .get_signed_upload_url(
            &keeper,
            &json!({"familyId": family, "durationSeconds": 5, "sizeBytes": 10, "sha256": sha256(&[0; 10])}),
        )
        .await;
    assert_eq!(upload.status, 200, "{upload:?}");
    assert!(
        !checkout.is_finished(),
        "the checkout is still waiting for Stripe"
    );
    gate.release.notify_one();
    assert_eq!(checkout.await.expect("join"), 200);
}

#[tokio::test]
async fn a_hung_stripe_is_a_503_within_seconds_and_writes_nothing() {
    let hung = stubs::silent().await;
    let api = format!("{hung}/");
    let b = billing_with(&[("STRIPE_API_BASE", &api)], false).await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    for (what, reply) in [
        (
            "checkout",
            s.create_checkout_session(&keeper, &checkout(family)).await,
        ),
        (
            "webhook",
            s.stripe_webhook(
                &event(
                    "evt_h",
                    "customer.subscription.updated",
                    json!({"id": "sub_h"}),
                ),
                Some(&shared::stripe::sign(
                    WEBHOOK_SECRET,
                    &event(
                        "evt_h",
                        "customer.subscription.updated",
                        json!({"id": "sub_h"}),
                    ),
                    chrono::Utc::now().timestamp(),
                )),
            )
            .await,
        ),
    ] {
        assert_eq!(
            (reply.status, reply.code()),
            (503, Some("SERVICE_UNAVAILABLE")),
            "{what}"
        );
    }
    assert_eq!(
        s.count("stripe_events").await,
        0,
        "rolled back: Stripe retries"
    );
    assert_eq!(s.count("checkout_sessions").await, 0);
    assert_eq!(entitlement(s, family).await.2, None, "no customer stored");
}

#[tokio::test]
async fn a_paid_family_can_be_deleted_once_its_subscription_is_set_to_end() {
    let b = billing().await;
    let (family, sub, keeper) = subscribed(&b, "active", "price_family").await;
    let customer = format!("cus_{}", family.simple());
    let object = subscription(&sub, &customer, "active", "price_family", family);
    let created = event(
        "evt_sub_created",
        "customer.subscription.created",
        object.clone(),
    );
    assert_eq!(deliver_signed(&b.server, &created).await.0, 200);
    let admin = b.server.db.admin().await;
    let name: String = admin
        .query_one("SELECT name FROM families WHERE id = $1", &[&family])
        .await
        .expect("name")
        .get(0);
    let delete = json!({"familyId": family, "confirmName": name});
    let refused = b.server.call("delete-family", Some(&keeper), &delete).await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, Some("SUBSCRIPTION_ACTIVE"))
    );

    // The keeper cancels in the portal; Stripe tells us it ends with the period.
    let mut cancelled = object;
    cancelled["cancel_at_period_end"] = json!(true);
    b.stripe
        .lock()
        .await
        .subscriptions
        .insert(sub.clone(), cancelled.clone());
    let updated = event(
        "evt_sub_updated",
        "customer.subscription.updated",
        cancelled,
    );
    assert_eq!(deliver_signed(&b.server, &updated).await.0, 200);
    let ending: bool = admin
        .query_one(
            "SELECT cancel_at_period_end FROM entitlements WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("entitlement")
        .get(0);
    assert!(ending);
    let deleted = b.server.call("delete-family", Some(&keeper), &delete).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
}

/// While Stripe rolls the endpoint's secret it signs with both; the webhook, given both
/// (comma-separated), accepts either and nothing else.
#[tokio::test]
async fn while_the_webhook_secret_rolls_either_secret_passes_and_no_other() {
    let secrets = format!("whsec_rolled_in, {WEBHOOK_SECRET}");
    let b = billing_with(&[("STRIPE_WEBHOOK_SECRET", secrets.as_str())], false).await;
    let s = &b.server;
    let (_, sub, _) = subscribed(&b, "active", "price_family").await;
    let now = chrono::Utc::now().timestamp();
    for (i, secret) in ["whsec_rolled_in", WEBHOOK_SECRET].into_iter().enumerate() {
        let body = event(
            &format!("evt_roll_{i}"),
            "customer.subscription.updated",
            json!({"id": sub}),
        );
        let signature = shared::stripe::sign(secret, &body, now);
        let (status, reply) = deliver(s, &body, Some(signature)).await;
        assert_eq!(status, 200, "{secret}: {reply}");
    }
    let before = s.count("stripe_events").await;
    let body = event(
        "evt_roll_neither",
        "customer.subscription.updated",
        json!({"id": sub}),
    );
    let forged = shared::stripe::sign("whsec_neither", &body, now);
    let (status, reply) = deliver(s, &body, Some(forged)).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (400, &json!("VALIDATION_FAILED"))
    );
    assert_eq!(s.count("stripe_events").await, before);
}

/// The family's name, for delete-family's confirmation.
async fn name_of(server: &Server, family: Uuid) -> String {
    server
        .db
        .admin()
        .await
        .query_one("SELECT name FROM families WHERE id = $1", &[&family])
        .await
        .expect("name")
        .get(0)
}

#[tokio::test]
async fn a_family_can_be_deleted_only_once_its_subscription_can_charge_no_more() {
    let b = billing().await;
    let admin = b.server.db.admin().await;
    for (status, ending, deletable) in [
        ("active", false, false),
        ("trialing", false, false),
        ("past_due", false, false),
        ("past_due", true, false),
        ("unpaid", false, false),
        ("paused", false, false),
        ("incomplete", false, false),
        ("unpaid", true, false),
        ("active", true, true),
        ("trialing", true, true),
        ("canceled", false, true),
        ("incomplete_expired", false, true),
    ] {
        let (_, keeper) = b.server.user().await;
        let family = b.server.family(&keeper).await;
        admin
            .execute(
                "UPDATE entitlements SET plan = 'family', status = $2, cancel_at_period_end = $3,
                                         stripe_customer_id = $4, stripe_subscription_id = 'sub_x'
                 WHERE family_id = $1",
                &[
                    &family,
                    &status,
                    &ending,
                    &format!("cus_{}", family.simple()),
                ],
            )
            .await
            .expect("a subscription");
        let body = json!({"familyId": family, "confirmName": name_of(&b.server, family).await});
        let reply = b.server.call("delete-family", Some(&keeper), &body).await;
        let deleted: bool = admin
            .query_one(
                "SELECT deleted_at IS NOT NULL FROM families WHERE id = $1",
                &[&family],
            )
            .await
            .expect("family")
            .get(0);
        if deletable {
            assert_eq!(reply.status, 200, "{status} {ending}: {:?}", reply.body);
        } else {
            assert_eq!(
                (reply.status, reply.code()),
                (409, Some("SUBSCRIPTION_ACTIVE")),
                "{status} {ending}"
            );
        }
        assert_eq!(deleted, deletable, "{status} {ending}");
    }
}

/// A deleted family whose retention is over, due for the purge.
async fn past_retention(server: &Server, family: Uuid) {
    let admin = server.db.admin().await;
    for sql in [
        "UPDATE families SET deleted_at = now() - interval '31 days' WHERE id = $1",
        "UPDATE recordings SET deleted_at = now() - interval '31 days' WHERE family_id = $1",
    ] {
        testkit::fixtures::backdate(&admin, sql, &[&family]).await;
    }
}

#[tokio::test]
async fn the_purge_cancels_the_familys_subscriptions_first_and_waits_while_stripe_is_down() {
    let b = billing_with(&[], true).await;
    let s = &b.server;
    let (family, sub, keeper) = subscribed(&b, "active", "price_family").await;
    let admin = s.db.admin().await;
    admin
        .execute(
            "UPDATE entitlements SET plan = 'family', status = 'active', cancel_at_period_end = true,
                                     stripe_subscription_id = $2 WHERE family_id = $1",
            &[&family, &sub],
        )
        .await
        .expect("set to end");
    let body = json!({"familyId": family, "confirmName": name_of(s, family).await});
    assert_eq!(
        s.call("delete-family", Some(&keeper), &body).await.status,
        200
    );
    past_retention(s, family).await;

    // Stripe down: nothing of the family is scrubbed, its claim kept, and it is said.
    b.stripe.lock().await.down = true;
    let report = local::run_event(&s.app, "storage-maintenance", json!({}))
        .await
        .expect("run");
    assert_eq!(
        (
            &report["familiesPurged"],
            &report["familiesWaitingForBilling"]
        ),
        (&json!(0), &json!(1)),
        "{report}"
    );
    assert_ne!(name_of(s, family).await, "Deleted family");
    let events = s.sentry.as_ref().expect("sentry").fetch_and_clear_events();
    assert!(
        events
            .iter()
            .any(|e| e.tags.get("action").map(String::as_str) == Some("purge_billing")),
        "{events:?}"
    );

    // Stripe back, the claim taken over: the subscription is cancelled now, without
    // proration, once; then the family is purged.
    b.stripe.lock().await.down = false;
    testkit::fixtures::backdate(
        &admin,
        "UPDATE families SET purge_started_at = now() - interval '11 minutes' WHERE id = $1",
        &[&family],
    )
    .await;
    let report = local::run_event(&s.app, "storage-maintenance", json!({}))
        .await
        .expect("run");
    assert_eq!(report["familiesPurged"], 1, "{report}");
    {
        let stripe = b.stripe.lock().await;
        assert_eq!(stripe.cancels.len(), 1, "{:?}", stripe.cancels);
        let (key, query) = &stripe.cancels[0];
        assert_eq!(key, &format!("cancel-{sub}"));
        assert_eq!(query.get("prorate").map(String::as_str), Some("false"));
        assert_eq!(query.get("invoice_now").map(String::as_str), Some("false"));
        assert_eq!(stripe.subscriptions[&sub]["status"], "canceled");
    }

    // The deletion Stripe then announces is recorded, changes nothing, and is no alarm.
    let before = entitlement(s, family).await;
    let customer = format!("cus_{}", family.simple());
    let object = subscription(&sub, &customer, "canceled", "price_family", family);
    let deleted = event("evt_after_purge", "customer.subscription.deleted", object);
    assert_eq!(deliver_signed(s, &deleted).await.0, 200);
    assert_eq!(entitlement(s, family).await, before);
    assert_eq!(s.count("stripe_events").await, 1);
    assert!(
        s.sentry
            .as_ref()
            .expect("sentry")
            .fetch_and_clear_events()
            .is_empty()
    );
}

#[tokio::test]
async fn without_stripe_configured_a_family_with_a_customer_is_not_purged() {
    let server = Server::start().await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    let body = json!({"familyId": family, "confirmName": name_of(&server, family).await});
    assert_eq!(
        server
            .call("delete-family", Some(&keeper), &body)
            .await
            .status,
        200
    );
    server
        .db
        .admin()
        .await
        .execute(
            "UPDATE entitlements SET stripe_customer_id = 'cus_x' WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("a customer");
    past_retention(&server, family).await;
    let report = local::run_event(&server.app, "storage-maintenance", json!({}))
        .await
        .expect("run");
    assert_eq!(report["familiesWaitingForBilling"], 1, "{report}");
    assert_ne!(name_of(&server, family).await, "Deleted family");
}

#[tokio::test]
async fn a_completed_checkout_is_no_longer_open_for_deleting_the_family_or_checking_out_again() {
    let b = billing().await;
    let s = &b.server;
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    let first = s.create_checkout_session(&keeper, &checkout(family)).await;
    let session = first.data()["sessionId"].as_str().expect("id").to_owned();
    // Paid: Stripe completes the session, the subscription starts, and later ends.
    let customer: String = entitlement(s, family).await.2.expect("a customer");
    {
        let mut stripe = b.stripe.lock().await;
        stripe
            .session_status
            .insert(session.clone(), "complete".into());
        let sub = subscription("sub_done", &customer, "canceled", "price_family", family);
        stripe.subscriptions.insert("sub_done".into(), sub);
    }
    let completed = event(
        "evt_cs_done",
        "checkout.session.completed",
        json!({"id": session, "object": "checkout.session", "subscription": "sub_done",
               "customer": customer}),
    );
    assert_eq!(deliver_signed(s, &completed).await.0, 200);

    // Back on free, the family checks out again: a new session, no 409.
    let again = s.create_checkout_session(&keeper, &checkout(family)).await;
    assert_eq!(again.status, 200, "{again:?}");
    // Stripe refuses to expire a session that is no longer open: that is done, not a 500.
    let second = again.data()["sessionId"].as_str().expect("id").to_owned();
    b.stripe
        .lock()
        .await
        .session_status
        .insert(second, "complete".into());
    let body = json!({"familyId": family, "confirmName": name_of(s, family).await});
    let deleted = s.call("delete-family", Some(&keeper), &body).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
}

#[tokio::test]
async fn deleting_a_family_never_holds_its_rows_while_stripe_expires_a_session() {
    let b = billing().await;
    let s = std::sync::Arc::new(b.server);
    let (_, keeper) = s.user().await;
    let family = s.family(&keeper).await;
    s.create_checkout_session(&keeper, &checkout(family))
        .await
        .data();
    b.stripe.lock().await.expire_delay = std::time::Duration::from_secs(2);
    let body = json!({"familyId": family, "confirmName": name_of(&s, family).await});
    let deleting = {
        let (s, keeper) = (s.clone(), keeper.clone());
        tokio::spawn(async move { s.call("delete-family", Some(&keeper), &body).await })
    };
    // While Stripe takes its time, a checkout opens a new session meanwhile (it went in
    // before the deletion's locks), and an upload is asked for: neither waits.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let upload = s
        .get_signed_upload_url(
            &keeper,
            &json!({"familyId": family, "durationSeconds": 3, "sizeBytes": 10, "sha256": sha256(&[0; 10])}),
        )
        .await;
    assert_eq!(upload.status, 200, "{upload:?}");
    assert!(
        !deleting.is_finished(),
        "the upload was answered while Stripe was called"
    );
    let mut other = checkout(family);
    other["priceId"] = json!("price_legacy");
    let reopened = s.create_checkout_session(&keeper, &other).await;
    assert_eq!(reopened.status, 200, "{reopened:?}");

    let deleted = deleting.await.expect("the deletion");
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let stripe = b.stripe.lock().await;
    assert!(
        stripe.session_status.values().all(|s| s == "expired"),
        "every session expired: {:?}",
        stripe.session_status
    );
}
