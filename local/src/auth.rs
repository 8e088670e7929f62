//! A stand-in for Supabase Auth, for the local stack only, so supabase-js can sign in and
//! refresh against the runner as it does against a project: the `password` and
//! `refresh_token` grants of `POST /auth/v1/token` and `GET /auth/v1/user`. Any password
//! signs in (the account is made on its first sign-in); access tokens are HS256 with the
//! local `SUPABASE_JWT_SECRET`, as the functions verify them; refresh tokens live in
//! memory and are used once. Never deployed: the runner mounts it only when it has the
//! admin connection that `auth.users` needs (`MIGRATIONS_DATABASE_URL`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// How long an access token lives (Supabase's default).
const ACCESS_TOKEN_SECONDS: i64 = 3600;

/// What the stand-in needs: the admin connection, the signing secret and the issuer.
pub struct StandIn {
    db: tokio_postgres::Client,
    secret: String,
    supabase_url: Option<String>,
    /// Refresh token → the user it signs in again (each is used once).
    refresh_tokens: Mutex<HashMap<String, (Uuid, String)>>,
}

impl StandIn {
    /// Connects to `admin_url` (a superuser or the migrations' owner).
    pub async fn connect(
        admin_url: &str,
        secret: String,
        supabase_url: Option<String>,
    ) -> anyhow::Result<Self> {
        Ok(StandIn {
            db: shared::db::connect(admin_url).await?,
            secret,
            supabase_url,
            refresh_tokens: Mutex::default(),
        })
    }

    /// A session for `user`, as GoTrue answers a grant.
    fn session(&self, user: Uuid, email: &str) -> anyhow::Result<Value> {
        let access_token = crate::access_token(
            user,
            email,
            &self.secret,
            self.supabase_url.as_deref(),
            ACCESS_TOKEN_SECONDS,
        )?;
        let refresh_token = Uuid::new_v4().simple().to_string();
        self.refresh_tokens
            .lock()
            .map_err(|_| anyhow::anyhow!("refresh tokens poisoned"))?
            .insert(refresh_token.clone(), (user, email.to_owned()));
        Ok(json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "expires_at": chrono::Utc::now().timestamp() + ACCESS_TOKEN_SECONDS,
            "refresh_token": refresh_token,
            "user": user_json(user, email),
        }))
    }
}

fn user_json(id: Uuid, email: &str) -> Value {
    json!({
        "id": id, "aud": "authenticated", "role": "authenticated", "email": email,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {}, "created_at": "2026-01-01T00:00:00Z",
    })
}

/// The stand-in's routes.
pub fn router(stand_in: Arc<StandIn>) -> axum::Router {
    axum::Router::new()
        .route("/auth/v1/token", axum::routing::post(token))
        .route("/auth/v1/user", axum::routing::get(user))
        .with_state(stand_in)
}

#[derive(Deserialize, Default)]
struct GrantBody {
    email: Option<String>,
    refresh_token: Option<String>,
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let headers = [(http::header::CONTENT_TYPE, "application/json")];
    (status, headers, body.to_string()).into_response()
}

/// GoTrue's error shape.
fn refused(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"code": status.as_u16(), "error_code": code, "msg": message});
    json_response(status, &body)
}

async fn token(State(auth): State<Arc<StandIn>>, uri: Uri, body: Bytes) -> Response {
    let grant = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("grant_type="))
        .unwrap_or_default();
    let body: GrantBody = serde_json::from_slice(&body).unwrap_or_default();
    let signed_in = match grant {
        "password" => match body.email.filter(|e| e.contains('@')) {
            Some(email) => crate::find_or_create_user(&auth.db, &email)
                .await
                .map(|id| (id, email)),
            None => return refused(StatusCode::BAD_REQUEST, "validation_failed", "email"),
        },
        "refresh_token" => {
            let used = body.refresh_token.and_then(|t| {
                auth.refresh_tokens
                    .lock()
                    .ok()
                    .and_then(|mut tokens| tokens.remove(&t))
            });
            match used {
                Some(user) => Ok(user),
                None => {
                    return refused(
                        StatusCode::BAD_REQUEST,
                        "refresh_token_not_found",
                        "Invalid Refresh Token: Refresh Token Not Found",
                    );
                }
            }
        }
        _ => return refused(StatusCode::BAD_REQUEST, "validation_failed", "grant_type"),
    };
    match signed_in.and_then(|(id, email)| auth.session(id, &email)) {
        Ok(session) => json_response(StatusCode::OK, &session),
        Err(e) => {
            tracing::error!(error = %e, "auth stand-in");
            refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected_failure",
                "see the runner's log",
            )
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Uuid,
    email: String,
}

async fn user(State(auth): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["authenticated"]);
    let key = jsonwebtoken::DecodingKey::from_secret(auth.secret.as_bytes());
    match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => json_response(
            StatusCode::OK,
            &user_json(data.claims.sub, &data.claims.email),
        ),
        Err(_) => refused(StatusCode::UNAUTHORIZED, "bad_jwt", "invalid JWT"),
    }
}
