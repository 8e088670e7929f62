//! `serve`: all functions on http://127.0.0.1:$PORT/functions/v1/<name> (PORT default
//! 54321). With LOCAL_S3_DIR set it also serves that folder as the S3 endpoint in
//! R2_ENDPOINT (an `http://127.0.0.1:PORT` address), with the R2_* credentials and the
//! bucket's CORS rules for the app's origins (`deploy/r2/cors.json`); with
//! LOCAL_BACKUP_DIR set, that folder as the backup store at BACKUP_S3_ENDPOINT with the
//! BACKUP_S3_* credentials. With LOCAL_SCHEDULE_SECONDS set it runs every scheduled
//! function that often (as EventBridge would in the cloud). With
//! MIGRATIONS_DATABASE_URL set (an admin connection), it also stands in for Supabase
//! Auth at /auth/v1 (`local::auth`), so supabase-js signs in and refreshes locally.

use std::sync::Arc;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let app = Arc::new(shared::App::from_env()?);
    if let Ok(dir) = std::env::var("LOCAL_S3_DIR") {
        let r2 = app.config.r2.as_ref();
        let r2 = r2.context("LOCAL_S3_DIR needs R2_BUCKET_NAME, R2_ENDPOINT and keys")?;
        // The bucket's CORS rules for the app's origins, as scripts/r2-setup.sh gives R2.
        let cors = local::s3::Cors::for_origins(&app.config.allowed_redirect_origins)?;
        local::s3::serve_bucket("local S3", r2, dir, cors).await?;
    }
    if let Ok(dir) = std::env::var("LOCAL_BACKUP_DIR") {
        let backup = app.config.backup.as_ref();
        let backup = backup.context("LOCAL_BACKUP_DIR needs the BACKUP_S3_* variables")?;
        // No browser ever reaches the backup: no CORS rule.
        local::s3::serve_bucket("local backup S3", backup, dir, local::s3::Cors::default()).await?;
    }
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(54321);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    for f in local::functions() {
        if f.kind == shared::Kind::Http {
            tracing::info!("serving http://127.0.0.1:{port}/functions/v1/{}", f.name);
        }
    }
    if let Some(every) = std::env::var("LOCAL_SCHEDULE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        for f in local::functions() {
            if f.kind == shared::Kind::Scheduled {
                tracing::info!("running {} every {every} s", f.name);
                let app = app.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
                    loop {
                        tick.tick().await;
                        // The function reports its own failures.
                        let _ = f.invoke(&app, serde_json::json!({})).await;
                    }
                });
            }
        }
    }
    let mut router = local::router(app.clone());
    // Supabase Auth's stand-in, when the admin connection auth.users needs is given.
    if let Ok(admin) = std::env::var("MIGRATIONS_DATABASE_URL") {
        let secret = app.config.jwt_secret.as_ref();
        let secret = secret.context("the Auth stand-in needs SUPABASE_JWT_SECRET")?;
        let secret = secrecy::ExposeSecret::expose_secret(secret).to_owned();
        let stand_in =
            local::auth::StandIn::connect(&admin, secret, app.config.supabase_url.clone()).await?;
        tracing::info!("Supabase Auth stand-in at http://127.0.0.1:{port}/auth/v1");
        router = router.merge(local::auth::router(Arc::new(stand_in)));
    }
    axum::serve(listener, router).await?;
    Ok(())
}
