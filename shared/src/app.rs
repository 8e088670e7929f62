//! The composition root: what a function needs, built once per cold start and borrowed
//! by every invocation.

use crate::error::ApiError;
use crate::{analytics, auth, config, db, email, r2, stripe, telemetry, tls};

/// What a function needs, built once per cold start and borrowed by every invocation.
pub struct App {
    pub config: config::Config,
    pub db: db::Db,
    pub auth: auth::Verifier,
    /// One HTTP client (one TLS setup) for every outbound call.
    pub http: reqwest::Client,
    /// Error reports; None without `SENTRY_DSN`.
    pub sentry: Option<std::sync::Arc<sentry::Client>>,
    /// Audio storage; None without `R2_BUCKET_NAME`.
    pub r2: Option<r2::R2>,
    /// The second copy (contract §10); None without `BACKUP_S3_BUCKET` (every function
    /// but the preservation ones and the purge).
    pub backup: Option<r2::R2>,
    /// Billing; None without `STRIPE_SECRET_KEY`.
    pub stripe: Option<stripe::Stripe>,
    /// Emails: Resend, or the local mailbox folder.
    pub mailer: email::Mailer,
    /// Server-side analytics; None without `POSTHOG_API_KEY`.
    pub analytics: Option<analytics::Analytics>,
}

impl App {
    /// The invite code HMAC key, for the invite functions (checked at cold start).
    pub fn invite_secret(&self) -> Result<&secrecy::SecretString, ApiError> {
        self.config
            .invite_code_secret
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable(anyhow::anyhow!("INVITE_CODE_SECRET is not set")))
    }

    /// Stripe, for the billing functions: 503 when it is not configured.
    pub fn stripe(&self) -> Result<&stripe::Stripe, ApiError> {
        self.stripe
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable(anyhow::anyhow!("STRIPE_SECRET_KEY is not set")))
    }

    /// The bucket, for the functions that can't work without it (checked at cold start).
    pub fn r2(&self) -> Result<&r2::R2, ApiError> {
        self.r2
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable(anyhow::anyhow!("R2 is not configured")))
    }

    /// From the environment; fails naming the first missing required variable.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::new(config::Config::from_env()?)
    }

    /// From a configuration in hand (the local runner and tests).
    pub fn new(config: config::Config) -> anyhow::Result<Self> {
        Self::with_sentry_transport(config, None)
    }

    /// As [`App::new`], with Sentry events going to `transport` (tests use Sentry's test transport).
    pub fn with_sentry_transport(
        config: config::Config,
        transport: Option<std::sync::Arc<dyn sentry::TransportFactory>>,
    ) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        // Connect and total timeouts well within the shortest function timeout (15 s):
        // a dependency that hangs is an answer, never a Lambda timeout.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config()?)
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(App {
            db: db::Db::new(
                config.database_url.expose_secret(),
                config.database_pool_size,
            )?,
            auth: auth::Verifier::new(&config, http.clone()),
            sentry: telemetry::sentry_client(&config, transport, &http)?,
            mailer: email::Mailer::new(&config, http.clone())?,
            r2: config.r2.as_ref().map(r2::R2::new),
            backup: config.backup.as_ref().map(r2::R2::backup),
            stripe: stripe::Stripe::new(&config)?,
            analytics: analytics::Analytics::new(
                config.posthog_api_key.as_ref(),
                &config.posthog_host,
                http.clone(),
            ),
            http,
            config,
        })
    }
}
