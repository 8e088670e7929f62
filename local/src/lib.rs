//! The local runner: serves every function crate at `/functions/v1/<name>` (Supabase's
//! local URL layout), calling the same handler the Lambda binary calls.

use std::sync::{Arc, LazyLock};

use axum::body::Body as AxumBody;
use axum::extract::{Path, Request as AxumRequest, State};
use axum::response::IntoResponse;
use lambda_http::Body;
use shared::{ApiError, App, Function, Kind, Response};

pub mod auth;
mod functions;
pub mod openapi;
pub mod s3;
pub use functions::*;

/// Bodies larger than this are cut off here; the handler answers 413 for anything over 64 KiB.
const RUNNER_BODY_LIMIT: usize = 1024 * 1024;

/// The runner's routes, serving `app`.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route(
            "/functions/v1/openapi.json",
            axum::routing::get(openapi_json),
        )
        .route("/functions/v1/reference", axum::routing::get(reference))
        .route("/functions/v1/{name}", axum::routing::any(invoke))
        .with_state(app)
}

/// The OpenAPI document, as the functions' types make it now.
async fn openapi_json() -> axum::response::Response {
    let body = serde_json::to_string_pretty(&openapi::document()).unwrap_or_default();
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A page that renders the document for people (no network beyond the runner).
async fn reference() -> axum::response::Response {
    (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../../api/reference.html"),
    )
        .into_response()
}

/// Every function, built once.
fn all() -> &'static [Function] {
    static ALL: LazyLock<Vec<Function>> = LazyLock::new(functions);
    &ALL
}

/// The function named `name`.
pub fn function(name: &str) -> Option<&'static Function> {
    all().iter().find(|f| f.name == name)
}

async fn invoke(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    req: AxumRequest,
) -> axum::response::Response {
    let not_found = || {
        convert(shared::http::error_response(&ApiError::NotFound(
            "No such function",
        )))
    };
    let Some(function) = function(&name).filter(|f| f.kind == Kind::Http) else {
        return not_found();
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, RUNNER_BODY_LIMIT).await {
        Ok(bytes) if bytes.is_empty() => Body::Empty,
        Ok(bytes) => Body::Binary(bytes.to_vec()),
        Err(_) => return convert(shared::http::error_response(&ApiError::PayloadTooLarge)),
    };
    match function
        .answer(&app, http::Request::from_parts(parts, body))
        .await
    {
        Some(response) => convert(response),
        None => not_found(),
    }
}

/// Runs a scheduled or worker function once, here, with `event`: its report (the tests
/// and `scripts/dev.sh invoke`).
pub async fn run_event(
    app: &App,
    name: &str,
    event: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let function = function(name).ok_or_else(|| anyhow::anyhow!("no function named {name}"))?;
    function.invoke(app, event).await.ok_or_else(|| {
        anyhow::anyhow!("{name} is reached over HTTP: call it at /functions/v1/{name}")
    })?
}

fn convert(response: Response) -> axum::response::Response {
    response.map(|body| match body {
        Body::Empty => AxumBody::empty(),
        Body::Text(s) => AxumBody::from(s),
        Body::Binary(b) => AxumBody::from(b),
        _ => AxumBody::empty(),
    })
}

/// A Supabase-style access token for a local user, HS256 with the legacy secret, valid
/// for `lifetime` seconds; each has its own `session_id` and `jti`, so a refreshed token
/// differs from the last even within a second.
pub fn access_token(
    user: uuid::Uuid,
    email: &str,
    secret: &str,
    supabase_url: Option<&str>,
    lifetime: i64,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "sub": user, "email": email, "role": "authenticated", "aud": "authenticated",
        "iat": now, "exp": now + lifetime,
        "session_id": uuid::Uuid::new_v4(), "jti": uuid::Uuid::new_v4(),
    });
    if let Some(url) = supabase_url {
        claims["iss"] = format!("{}/auth/v1", url.trim_end_matches('/')).into();
    }
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// The local user with `email` in `auth.users`, made if there is none (an admin
/// connection: `auth.users` is not the functions').
pub async fn find_or_create_user(
    db: &tokio_postgres::Client,
    email: &str,
) -> anyhow::Result<uuid::Uuid> {
    let row = db
        .query_one(
            "WITH found AS (SELECT id FROM auth.users WHERE email = $1 LIMIT 1),
                  made AS (INSERT INTO auth.users (email) SELECT $1 WHERE NOT EXISTS (SELECT FROM found) RETURNING id)
             SELECT id FROM found UNION ALL SELECT id FROM made",
            &[&email],
        )
        .await
        .map_err(|e| anyhow::anyhow!("finding or making the user {email} (are the migrations applied?): {e}"))?;
    Ok(row.get("id"))
}
