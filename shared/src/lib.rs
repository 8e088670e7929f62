//! The one crate every Stories From the Sun function uses.

pub mod analytics;
pub mod api;
pub mod auth;
pub mod billing;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod event;
pub mod function;
pub mod http;
pub mod invite;
pub mod members;
pub mod outbox;
pub mod r2;
pub mod recordings;
pub mod sql;
pub mod stripe;
pub mod telemetry;
pub mod tls;

pub use error::ApiError;
pub use function::{Function, Kind};
pub use http::{Methods, Request, Response};
use tokio_postgres::types::Type;

/// The caller's place in a family, and what the functions need of the family.
#[derive(Debug, Clone)]
pub struct Membership {
    pub is_keeper: bool,
    pub family_name: String,
    /// `en` or `es`: the language of its prompts and emails.
    pub language: String,
    pub stripe_customer_id: Option<String>,
}

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
    /// Billing; None without `STRIPE_SECRET_KEY`.
    pub stripe: Option<stripe::Stripe>,
    /// Invite emails: Resend, or the local mailbox folder.
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

    /// Whether the caller belongs to the family, read as the caller (RLS decides); 404
    /// when it is theirs but deleted.
    pub async fn is_member(
        &self,
        user: &auth::User,
        family_id: uuid::Uuid,
    ) -> Result<bool, ApiError> {
        self.db
            .as_user(user, async |tx| {
                let rows = tx
                    .query_typed(sql::IS_MEMBER, &[(&family_id, Type::UUID)])
                    .await?;
                Ok(!rows.is_empty() || gone(tx, family_id).await?)
            })
            .await
    }

    /// The caller's membership of the family, read as the caller (RLS decides): None
    /// when they don't belong to it; 404 when it is theirs but deleted.
    pub async fn membership(
        &self,
        user: &auth::User,
        family_id: uuid::Uuid,
    ) -> Result<Option<Membership>, ApiError> {
        self.db
            .as_user(user, async |tx| {
                let rows = tx
                    .query_typed(sql::MEMBERSHIP, &[(&family_id, Type::UUID)])
                    .await?;
                if rows.is_empty() {
                    gone(tx, family_id).await?;
                }
                Ok(rows.first().map(|r| Membership {
                    is_keeper: r.get::<_, &str>(0) == "keeper",
                    family_name: r.get(1),
                    language: r.get(2),
                    stripe_customer_id: r.get(3),
                }))
            })
            .await
    }

    /// The caller's membership, if they keep the family; otherwise 403 with `refusal`.
    pub async fn keeper(
        &self,
        user: &auth::User,
        family_id: uuid::Uuid,
        refusal: &'static str,
    ) -> Result<Membership, ApiError> {
        match self.membership(user, family_id).await? {
            Some(m) if m.is_keeper => Ok(m),
            _ => Err(ApiError::Forbidden(refusal)),
        }
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

/// Where RLS shows the caller no membership: 404 when the family is theirs but deleted
/// (a deleted family is gone for its members, not forbidden), otherwise false.
async fn gone(tx: &crate::db::Tx<'_>, family_id: uuid::Uuid) -> Result<bool, ApiError> {
    let rows = tx
        .query_typed(sql::IN_DELETED_FAMILY, &[(&family_id, Type::UUID)])
        .await?;
    match rows.first().map(|r| r.get::<_, bool>(0)) {
        Some(true) => Err(ApiError::NotFound(members::GONE)),
        _ => Ok(false),
    }
}
