//! `stripe-event TYPE [SUBSCRIPTION_ID]`: posts a correctly signed sample Stripe event
//! to the local runner's stripe-webhook (PORT, default 54321), signed with
//! STRIPE_WEBHOOK_SECRET, and prints the answer. Subscription events make the webhook
//! re-fetch the subscription from Stripe (STRIPE_SECRET_KEY, test mode).

// A command-line tool: the answer is its output.
#![allow(clippy::print_stdout)]

use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let kind = args
        .next()
        .unwrap_or_else(|| "customer.subscription.updated".to_owned());
    let subscription = args.next().unwrap_or_else(|| "sub_local_sample".to_owned());
    let secret =
        std::env::var("STRIPE_WEBHOOK_SECRET").context("STRIPE_WEBHOOK_SECRET is not set")?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "54321".to_owned());
    let now = chrono::Utc::now().timestamp();
    let object = match kind.as_str() {
        k if k.starts_with("customer.subscription.") => {
            serde_json::json!({"id": subscription, "object": "subscription"})
        }
        k if k.starts_with("invoice.") => {
            serde_json::json!({"id": "in_local_sample", "object": "invoice", "subscription": subscription})
        }
        _ => serde_json::json!({"id": "obj_local_sample"}),
    };
    let event = serde_json::json!({
        "id": format!("evt_local_{}", uuid::Uuid::new_v4().simple()), "object": "event", "type": kind,
        "created": now, "livemode": false, "data": {"object": object},
    });
    let body = event.to_string();
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/functions/v1/stripe-webhook"
        ))
        .header(
            "stripe-signature",
            shared::stripe::sign(&secret, body.as_bytes(), now),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("is the local runner up (scripts/dev.sh)?")?;
    println!("{} {}", response.status(), response.text().await?);
    Ok(())
}
