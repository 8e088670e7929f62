//! What the runner talks to besides Postgres and S3: a Stripe stand-in answering the
//! calls of the billing success paths, and the HTTP floor (an endpoint that does nothing).

use axum::extract::Path;
use axum::routing::{get, post};
use serde_json::json;

use crate::world::PRICE;

/// Serves `router` on a random loopback port; returns its base URL.
pub async fn spawn(router: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

/// Stripe's answers to checkout, portal and subscription retrieval. Subscription
/// `sub_bench_N` belongs to customer `cus_bench_N`, active on the benchmark's price.
pub fn stripe() -> axum::Router {
    axum::Router::new()
        .route(
            "/v1/checkout/sessions",
            post(|| async {
                axum::Json(json!({"id": "cs_bench", "object": "checkout.session",
                                  "url": "https://checkout.stripe.com/c/pay/cs_bench"}))
            }),
        )
        .route(
            "/v1/billing_portal/sessions",
            post(|| async {
                axum::Json(json!({"id": "bps_bench", "object": "billing_portal.session",
                                  "url": "https://billing.stripe.com/p/session/bench"}))
            }),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(|Path(id): Path<String>| async move {
                let customer = id.replace("sub_", "cus_");
                axum::Json(json!({"id": id, "object": "subscription", "customer": customer, "status": "active",
                                  "items": {"object": "list", "data": [{"id": "si_bench", "price": {"id": PRICE},
                                                                        "current_period_end": 1_900_000_000}]},
                                  "metadata": {}}))
            }),
        )
}

/// Answers every request at once with a small JSON envelope: loopback HTTP, wrk and a
/// tokio server, and nothing else.
pub fn nothing() -> axum::Router {
    axum::Router::new().fallback(|| async {
        (
            [("content-type", "application/json")],
            r#"{"data":{"ok":true},"error":null}"#,
        )
    })
}
