//! `serve`: all functions on http://127.0.0.1:$PORT/functions/v1/<name> (PORT default 54321).

use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let app = Arc::new(shared::App::from_env()?);
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(54321);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    for (name, _) in local::functions() {
        tracing::info!("serving http://127.0.0.1:{port}/functions/v1/{name}");
    }
    local::serve(listener, app).await?;
    Ok(())
}
