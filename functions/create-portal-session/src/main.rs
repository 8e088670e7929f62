//! The create-portal-session Lambda: wiring only; the handler lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let app = shared::App::from_env()?;

    lambda_http::run(lambda_http::service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(create_portal_session::handle(&app, req).await)
    }))
    .await
}
