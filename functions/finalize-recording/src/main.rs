//! The finalize-recording Lambda: wiring only; the handler lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let app = shared::App::from_env()?;
    shared::config::require(app.r2.as_ref(), "R2_BUCKET_NAME")?;
    lambda_http::run(lambda_http::service_fn(async |req| {
        Ok::<_, std::convert::Infallible>(finalize_recording::handle(&app, req).await)
    }))
    .await
}
