//! The stripe-webhook Lambda: wiring only; the handler lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let app = shared::App::from_env()?;
    shared::config::require(
        app.config.stripe_webhook_secret.as_ref(),
        "STRIPE_WEBHOOK_SECRET",
    )?;
    lambda_http::run(lambda_http::service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(stripe_webhook::handle(&app, req).await)
    }))
    .await
}
