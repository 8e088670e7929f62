//! The one crate every Stories From the Sun function uses.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod telemetry;

pub use error::ApiError;
pub use http::{Methods, Request, Response};

/// What a function needs, built once per cold start and borrowed by every invocation.
pub struct App {
    pub config: config::Config,
    pub db: db::Db,
    pub auth: auth::Verifier,
    /// One HTTP client (one TLS setup) for every outbound call.
    pub http: reqwest::Client,
}

impl App {
    /// From the environment; fails naming the first missing required variable.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::new(config::Config::from_env()?)
    }

    /// From a configuration in hand (the local runner and tests).
    pub fn new(config: config::Config) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(App {
            db: db::Db::new(config.database_url.expose_secret())?,
            auth: auth::Verifier::new(&config, http.clone()),
            http,
            config,
        })
    }
}
