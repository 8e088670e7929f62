//! The create-invite Lambda: wiring only; the handler lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let app = shared::App::from_env()?;
    shared::config::require(app.config.invite_code_secret.as_ref(), "INVITE_CODE_SECRET")?;
    lambda_http::run(lambda_http::service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(create_invite::handle(&app, req).await)
    }))
    .await
}
