//! health: which build answers, and whether the database does (contract §11).

use std::time::Duration;

use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::Operation;
use shared::function::Anyone;
use shared::{ApiError, App, Function, store};

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// How long the database may take to answer before the check says it is down.
const DATABASE_WITHIN: Duration = Duration::from_secs(1);

/// Nothing: query parameters, if any, are ignored.
#[derive(Debug, Deserialize, Validate)]
pub struct Input {}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "HealthOutput")]
pub struct Output {
    /// The git revision the function was built from (also its Sentry release's).
    pub revision: String,
    /// `ok`: the database answered through the pooler within a second.
    pub database: String,
}

/// This function in the OpenAPI document (`cargo run -p local --bin openapi -- --write`).
pub fn api() -> Operation {
    Operation::get::<Output>(
        NAME,
        "Which build answers, and whether the database does",
        "`GET`, no credentials, no input. 200 with the git revision of the build and \
         `database: \"ok\"` when the database answered through the pooler within a second; \
         503 SERVICE_UNAVAILABLE naming the dependency (`database did not answer in time`) \
         otherwise. Says nothing else about the system: no secrets, no versions of what it \
         runs on. The deploy's post-deploy check and scripts/smoke.sh call it.",
        || {
            (
                json!({}),
                json!({"revision": "1d61f3a2b4c5", "database": "ok"}),
            )
        },
    )
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i))).get_only()
}

async fn run(app: &App, _: Anyone, _: Input) -> Result<Output, ApiError> {
    // 1. One round trip to the database, bounded: a stuck pooler is a failed check.
    let ping = app.db.as_service(async |tx| store::ping(tx).await);
    match tokio::time::timeout(DATABASE_WITHIN, ping).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: the database refused the ping");
            return Err(ApiError::DependencyDown("database"));
        }
        Err(_) => return Err(ApiError::DependencyDown("database")),
    }
    // 2. The build.
    Ok(Output {
        revision: shared::telemetry::REVISION.to_owned(),
        database: "ok".to_owned(),
    })
}
