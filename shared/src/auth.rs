//! Access tokens, verified locally (contract §2): ES256/RS256 by `kid` from the
//! project's JWKS, and/or legacy HS256. The algorithm comes from the key, never from
//! the token header. No network call per request: the JWKS is cached, fetched lazily
//! (not at cold start), refetched on an unknown `kid` at most once a minute and when the
//! cached set is older than [`KEY_MAX_AGE`] (so a key removed from the JWKS stops being
//! accepted within minutes). One fetch at a time: whoever waited for it shares its
//! result. While a refresh fails, the last good key set stays in use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// A fetch of the JWKS may take this long (connect included).
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Cached keys are refreshed once they are this old.
pub const KEY_MAX_AGE: Duration = Duration::from_secs(600);

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
    key_max_age: Duration,
    cache: RwLock<KeySet>,
    /// Held for the length of one fetch: concurrent callers queue behind it.
    fetch: Mutex<FetchState>,
    /// Fetches finished so far: a caller that queued before one finished shares it.
    finished: AtomicU64,
}

/// The keys of the last good fetch.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
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
            key_max_age: KEY_MAX_AGE,
            cache: RwLock::default(),
            fetch: Mutex::default(),
            finished: AtomicU64::new(0),
        }
    }

    /// The same verifier, refreshing its cached keys once they are `age` old (tests).
    pub fn with_key_max_age(self, age: Duration) -> Self {
        Verifier {
            key_max_age: age,
            ..self
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

    /// The key for `kid`: from the cache while it is fresh; otherwise after a refresh
    /// (an unknown `kid` at most once a minute, a stale set whenever it is due).
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), ApiError> {
        let (found, stale) = self.cached(kid).await;
        if let (Some(key), false) = (&found, stale) {
            return Ok(key.clone());
        }
        let url = self.jwks_url.as_deref().ok_or(ApiError::Unauthorized)?;
        self.refresh(url, self.finished.load(Ordering::SeqCst))
            .await;
        match self.cached(kid).await {
            (Some(key), _) => Ok(key),
            // Still unknown: 401 when we know the project's keys, 503 when we have none
            // because the JWKS can't be reached.
            (None, _) => {
                let failed = self.fetch.lock().await.last_failed;
                if failed && self.cache.read().await.keys.is_empty() {
                    Err(ApiError::Unavailable(anyhow::anyhow!(
                        "JWKS unreachable and no key cached"
                    )))
                } else {
                    Err(ApiError::Unauthorized)
                }
            }
        }
    }

    /// The cached key for `kid`, and whether the cached set is due for a refresh.
    async fn cached(&self, kid: &str) -> (Option<(DecodingKey, Algorithm)>, bool) {
        let cache = self.cache.read().await;
        let stale = cache
            .fetched
            .is_none_or(|t| t.elapsed() >= self.key_max_age);
        (cache.keys.get(kid).cloned(), stale)
    }

    /// Fetches the JWKS once, unless a fetch finished since `finished_before` (its result
    /// is shared) or one was tried too recently. A failure keeps the last good keys.
    async fn refresh(&self, url: &str, finished_before: u64) {
        let mut state = self.fetch.lock().await;
        if self.finished.load(Ordering::SeqCst) != finished_before {
            return;
        }
        let wait = if state.last_failed {
            RETRY_AFTER_FAILURE
        } else {
            REFETCH_INTERVAL
        };
        let fresh = self
            .cache
            .read()
            .await
            .fetched
            .is_some_and(|t| t.elapsed() < self.key_max_age);
        if fresh && state.last_attempt.is_some_and(|t| t.elapsed() < wait) {
            return;
        }
        if state.last_failed && state.last_attempt.is_some_and(|t| t.elapsed() < wait) {
            return;
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch_jwks(url).await {
            Ok(keys) => {
                state.last_failed = false;
                *self.cache.write().await = KeySet {
                    keys,
                    fetched: Some(Instant::now()),
                };
            }
            Err(e) => {
                state.last_failed = true;
                tracing::warn!(error = %e, "JWKS fetch failed; the last good keys stay in use");
            }
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    async fn fetch_jwks(
        &self,
        url: &str,
    ) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let set: JwkSet = self
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
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
