//! Access tokens, verified locally (contract §2): ES256/RS256 by `kid` from the
//! project's JWKS, and/or legacy HS256. The algorithm comes from the key, never from
//! the token header. No network call per request: the JWKS is cached, fetched lazily
//! (not at cold start) and refetched on an unknown `kid` at most once a minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::HeaderMap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::config::Config;
use crate::error::ApiError;

/// How far past `exp` a token is still accepted (the contract allows at most 60 s).
const LEEWAY_SECONDS: u64 = 30;
/// An unknown `kid` refetches the JWKS at most this often.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, wait this long before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// A verified caller.
#[derive(Debug, Clone)]
pub struct User {
    /// `sub`: the user's id.
    pub id: Uuid,
    /// `email`, when the token has one (for masked error reports only).
    pub email: Option<String>,
    /// The verified claims, as Postgres will see them in `request.jwt.claims`.
    pub claims: serde_json::Value,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default)]
    email: Option<String>,
}

/// Verifies access tokens; built once per cold start, without any network call.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    fetch: Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_failed: bool,
}

impl Verifier {
    /// From the configuration: JWKS when `SUPABASE_URL` is set, HS256 when the secret is.
    pub fn new(config: &Config, http: reqwest::Client) -> Self {
        Self::with(
            config.jwt_secret.clone(),
            config
                .supabase_url
                .as_ref()
                .map(|u| format!("{u}/auth/v1/.well-known/jwks.json")),
            config.supabase_url.as_ref().map(|u| format!("{u}/auth/v1")),
            http,
        )
    }

    /// From parts: the HS256 secret, the JWKS URL and the expected issuer.
    pub fn with(
        secret: Option<SecretString>,
        jwks_url: Option<String>,
        issuer: Option<String>,
        http: reqwest::Client,
    ) -> Self {
        Verifier {
            hs256: secret.map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            jwks_url,
            issuer,
            http,
            keys: RwLock::default(),
            fetch: Mutex::default(),
        }
    }

    /// Verifies the `Authorization: Bearer` token of a request.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<User, ApiError> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthorized)?;

        let (key, algorithm) = if header.alg == Algorithm::HS256 {
            // The legacy shared secret is an HS256 key; nothing else is checked with it.
            let key = self.hs256.clone().ok_or(ApiError::Unauthorized)?;
            (key, Algorithm::HS256)
        } else {
            let kid = header.kid.as_deref().ok_or(ApiError::Unauthorized)?;
            self.key(kid).await?
        };

        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(&["authenticated"]);
        let mut required = vec!["exp", "sub", "aud"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);

        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|_| ApiError::Unauthorized)?;
        let claims: Claims =
            serde_json::from_value(data.claims.clone()).map_err(|_| ApiError::Unauthorized)?;
        // The anon and service-role keys are valid tokens too: only users get through.
        if claims.role != "authenticated" {
            return Err(ApiError::Unauthorized);
        }
        let id = Uuid::parse_str(&claims.sub).map_err(|_| ApiError::Unauthorized)?;
        crate::telemetry::set_user(id, claims.email.clone());
        Ok(User {
            id,
            email: claims.email,
            claims: data.claims,
        })
    }

    /// The key for `kid`, refetching the JWKS when it is unknown (at most once a minute).
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), ApiError> {
        if let Some(found) = self.keys.read().await.get(kid) {
            return Ok(found.clone());
        }
        let url = self.jwks_url.as_deref().ok_or(ApiError::Unauthorized)?;
        // One fetch at a time; whoever waited here looks again before fetching.
        let mut state = self.fetch.lock().await;
        if let Some(found) = self.keys.read().await.get(kid) {
            return Ok(found.clone());
        }
        let wait = if state.last_failed {
            RETRY_AFTER_FAILURE
        } else {
            REFETCH_INTERVAL
        };
        if state.last_attempt.is_some_and(|t| t.elapsed() < wait) {
            return Err(self.no_key(state.last_failed).await);
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch_jwks(url).await {
            Ok(keys) => {
                state.last_failed = false;
                let mut cache = self.keys.write().await;
                *cache = keys;
                cache.get(kid).cloned().ok_or(ApiError::Unauthorized)
            }
            Err(e) => {
                state.last_failed = true;
                tracing::warn!(error = %e, "JWKS fetch failed");
                Err(self.no_key(true).await)
            }
        }
    }

    /// Unknown key: 401 when we know the project's keys, 503 when we couldn't load them.
    async fn no_key(&self, fetch_failed: bool) -> ApiError {
        if fetch_failed && self.keys.read().await.is_empty() {
            ApiError::Unavailable(anyhow::anyhow!("JWKS unreachable and no key cached"))
        } else {
            ApiError::Unauthorized
        }
    }

    async fn fetch_jwks(
        &self,
        url: &str,
    ) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let set: JwkSet = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            // The key's own type fixes its algorithm.
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => continue,
            };
            keys.insert(kid, (DecodingKey::from_jwk(jwk)?, algorithm));
        }
        Ok(keys)
    }
}
