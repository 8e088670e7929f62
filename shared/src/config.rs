//! Configuration: every environment variable of the contract (§6), read once per cold
//! start. Required ones fail at cold start naming the variable; secrets are
//! `SecretString`, so they never reach a log line or a `Debug` print.

use secrecy::SecretString;

/// What a missing or malformed variable stops.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is not valid: {why}")]
    Invalid { name: &'static str, why: String },
    #[error(
        "set SUPABASE_URL (JWKS) or SUPABASE_JWT_SECRET (legacy HS256): access tokens can't be verified without one"
    )]
    NoTokenVerification,
}

/// The functions' configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL` (required): the functions' connection, as `functions_authenticator`;
    /// in production Supavisor's transaction mode.
    pub database_url: SecretString,
    /// `DATABASE_POOL_SIZE` (1..=100, default 2): connections per process. A Lambda
    /// instance serves one request at a time and keeps the default; the local runner
    /// serving many requests at once (the benchmarks) raises it.
    pub database_pool_size: usize,
    /// `SUPABASE_URL`: JWKS at `$SUPABASE_URL/auth/v1/.well-known/jwks.json`, and the
    /// expected `iss` (`$SUPABASE_URL/auth/v1`).
    pub supabase_url: Option<String>,
    /// `SUPABASE_JWT_SECRET`: legacy HS256 verification (optional when JWKS is used).
    pub jwt_secret: Option<SecretString>,
    /// `R2_ACCOUNT_ID`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`, `R2_BUCKET_NAME`,
    /// `R2_ENDPOINT` (overrides `https://{account}.r2.cloudflarestorage.com`).
    pub r2: Option<R2Config>,
    /// `STRIPE_SECRET_KEY`: without it the billing functions answer 503.
    pub stripe_secret_key: Option<SecretString>,
    /// `STRIPE_API_BASE`: Stripe's API root, `/v1` is appended (default `https://api.stripe.com/`; tests
    /// point it at a local server).
    pub stripe_api_base: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`: the `whsec_…` the webhook signature is checked with; while
    /// Stripe rolls the endpoint's secret, the new and the old one, comma-separated
    /// (Stripe signs with both during the overlap).
    pub stripe_webhook_secret: Option<SecretString>,
    /// `RESEND_API_KEY`: without it invite emails go to the local mailbox folder.
    pub resend_api_key: Option<SecretString>,
    /// `RESEND_FROM` (default `Stories From the Sun <invites@sunstories.app>`).
    pub resend_from: String,
    /// `RESEND_BASE_URL`: Resend's API base (tests point it at a local server).
    pub resend_base_url: Option<String>,
    /// `MAILBOX_DIR`: where emails go without Resend (default `$TMPDIR/stories-mailbox`).
    pub mailbox_dir: std::path::PathBuf,
    /// `APP_URL` (default `http://localhost:8081`): the app, for join links.
    pub app_url: String,
    /// `ALLOWED_REDIRECT_ORIGINS`: comma-separated origins for Stripe redirects
    /// (default: the origin of `APP_URL`).
    pub allowed_redirect_origins: Vec<String>,
    /// `INVITE_CODE_SECRET`: the HMAC key invite codes are stored under.
    pub invite_code_secret: Option<SecretString>,
    /// `INVITE_CODE_SECRET_PREVIOUS`: the key before a rotation; codes stored under it
    /// still redeem (until they expire), new ones are stored under the current key.
    pub invite_code_secret_previous: Option<SecretString>,
    /// `SENTRY_DSN`: absent, Sentry is off.
    pub sentry_dsn: Option<SecretString>,
    /// `SENTRY_ENVIRONMENT` (default `development`).
    pub sentry_environment: String,
    /// `SENTRY_TRACES_SAMPLE_RATE` (0.0..=1.0, default 0.0).
    pub sentry_traces_sample_rate: f32,
    /// `UPLOAD_GRACE_MINUTES` (default 60): how long past its expiry a reservation's
    /// upload may still be arriving before the maintenance sweep finalizes or releases
    /// it. (`TRASH_RETENTION_DAYS` is the database's: `scripts/deploy-db.sh` sets it.)
    pub upload_grace_minutes: u32,
    /// `POSTHOG_API_KEY`: absent, analytics are off.
    pub posthog_api_key: Option<SecretString>,
    /// `POSTHOG_HOST` (default `https://us.i.posthog.com`).
    pub posthog_host: String,
    /// `BACKUP_S3_ENDPOINT`, `BACKUP_S3_REGION`, `BACKUP_S3_BUCKET`,
    /// `BACKUP_S3_ACCESS_KEY_ID`, `BACKUP_S3_SECRET_ACCESS_KEY`: the second copy (contract
    /// §10), an S3-compatible bucket of another provider and region. Only the
    /// preservation functions and the purge are given them.
    pub backup: Option<R2Config>,
    /// `BACKUP_S3_LOCK_DAYS` (1..=30): how long Object Lock (compliance mode) keeps each
    /// backup copy of a live recording, renewed for as long once a third has passed;
    /// never past the trash retention, so the purge finds it unlocked. Unset: the bucket
    /// has no lock (a local S3).
    pub backup_lock: Option<std::time::Duration>,
    /// `AUDIT_CYCLE_DAYS` (default 30): every copy is re-hashed at least this often.
    pub audit_cycle_days: u32,
}

/// An S3-compatible bucket's access: Cloudflare R2 (region `auto`), the backup store,
/// or a local S3.
#[derive(Debug, Clone)]
pub struct R2Config {
    pub account_id: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub bucket: String,
    pub endpoint: String,
    pub region: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secret = |name: &str| get(name).map(SecretString::from);
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));

        let supabase_url = get("SUPABASE_URL").map(|u| u.trim_end_matches('/').to_owned());
        let jwt_secret = secret("SUPABASE_JWT_SECRET");
        if supabase_url.is_none() && jwt_secret.is_none() {
            return Err(ConfigError::NoTokenVerification);
        }
        let app_url = get("APP_URL").unwrap_or_else(|| "http://localhost:8081".to_owned());
        let allowed_redirect_origins = match get("ALLOWED_REDIRECT_ORIGINS") {
            Some(list) => list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .collect(),
            None => vec![origin_of(&app_url).ok_or_else(|| ConfigError::Invalid {
                name: "APP_URL",
                why: "not an http(s) URL".to_owned(),
            })?],
        };
        let r2 = match get("R2_BUCKET_NAME") {
            None => None,
            Some(bucket) => {
                let account_id = get("R2_ACCOUNT_ID").unwrap_or_default();
                let endpoint = match get("R2_ENDPOINT") {
                    Some(e) => e,
                    None if !account_id.is_empty() => {
                        format!("https://{account_id}.r2.cloudflarestorage.com")
                    }
                    None => return Err(ConfigError::Missing("R2_ACCOUNT_ID")),
                };
                Some(R2Config {
                    account_id,
                    access_key_id: required("R2_ACCESS_KEY_ID")?,
                    secret_access_key: secret("R2_SECRET_ACCESS_KEY")
                        .ok_or(ConfigError::Missing("R2_SECRET_ACCESS_KEY"))?,
                    bucket,
                    endpoint,
                    region: "auto".to_owned(),
                })
            }
        };
        let backup = match get("BACKUP_S3_BUCKET") {
            None => None,
            Some(bucket) => Some(R2Config {
                account_id: String::new(),
                access_key_id: required("BACKUP_S3_ACCESS_KEY_ID")?,
                secret_access_key: secret("BACKUP_S3_SECRET_ACCESS_KEY")
                    .ok_or(ConfigError::Missing("BACKUP_S3_SECRET_ACCESS_KEY"))?,
                bucket,
                endpoint: required("BACKUP_S3_ENDPOINT")?,
                region: required("BACKUP_S3_REGION")?,
            }),
        };
        let backup_lock = match get("BACKUP_S3_LOCK_DAYS") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|d| (1..=30).contains(d))
                    .map(|d| std::time::Duration::from_secs(d * 86_400))
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "BACKUP_S3_LOCK_DAYS",
                        why: "expected 1..=30 days (at most the trash retention)".to_owned(),
                    })?,
            ),
        };
        let audit_cycle_days = match get("AUDIT_CYCLE_DAYS") {
            None => 30,
            Some(v) => v
                .parse()
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or_else(|| ConfigError::Invalid {
                    name: "AUDIT_CYCLE_DAYS",
                    why: "expected 1..=365 days".to_owned(),
                })?,
        };
        let sentry_traces_sample_rate = match get("SENTRY_TRACES_SAMPLE_RATE") {
            None => 0.0,
            Some(v) => v
                .parse()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| ConfigError::Invalid {
                    name: "SENTRY_TRACES_SAMPLE_RATE",
                    why: "expected 0.0..=1.0".to_owned(),
                })?,
        };
        let database_pool_size = match get("DATABASE_POOL_SIZE") {
            None => 2,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    name: "DATABASE_POOL_SIZE",
                    why: "expected 1..=100".to_owned(),
                })?,
        };
        let upload_grace_minutes = match get("UPLOAD_GRACE_MINUTES") {
            None => 60,
            Some(v) => v
                .parse()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "UPLOAD_GRACE_MINUTES",
                    why: "expected a number of minutes".to_owned(),
                })?,
        };
        Ok(Config {
            upload_grace_minutes,
            database_url: SecretString::from(required("DATABASE_URL")?),
            database_pool_size,
            supabase_url,
            jwt_secret,
            r2,
            stripe_secret_key: secret("STRIPE_SECRET_KEY"),
            stripe_webhook_secret: secret("STRIPE_WEBHOOK_SECRET"),
            stripe_api_base: get("STRIPE_API_BASE"),
            resend_api_key: secret("RESEND_API_KEY"),
            resend_from: get("RESEND_FROM")
                .unwrap_or_else(|| "Stories From the Sun <invites@sunstories.app>".to_owned()),
            resend_base_url: get("RESEND_BASE_URL"),
            mailbox_dir: get("MAILBOX_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("stories-mailbox")),
            app_url,
            allowed_redirect_origins,
            invite_code_secret: secret("INVITE_CODE_SECRET"),
            invite_code_secret_previous: secret("INVITE_CODE_SECRET_PREVIOUS"),
            sentry_dsn: secret("SENTRY_DSN"),
            sentry_environment: get("SENTRY_ENVIRONMENT")
                .unwrap_or_else(|| "development".to_owned()),
            sentry_traces_sample_rate,
            posthog_api_key: secret("POSTHOG_API_KEY"),
            posthog_host: get("POSTHOG_HOST")
                .unwrap_or_else(|| "https://us.i.posthog.com".to_owned()),
            backup,
            backup_lock,
            audit_cycle_days,
        })
    }
}

/// A variable a function can't start without (see `Function::requires`), checked at
/// cold start.
pub fn require_var(name: &'static str) -> Result<(), ConfigError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(()),
        _ => Err(ConfigError::Missing(name)),
    }
}

/// The origin (`scheme://host[:port]`) of an http(s) URL, parsed the way browsers
/// parse it; None for anything else, or for a URL carrying credentials.
pub fn origin_of(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let usable = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none();
    usable.then(|| url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn a_missing_database_url_is_named() {
        let err = config(&[("SUPABASE_JWT_SECRET", "s")]).expect_err("required");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_pool_size_defaults_to_two_and_refuses_nonsense() {
        let base = [
            ("DATABASE_URL", "postgres://x@127.0.0.1/db"),
            ("SUPABASE_JWT_SECRET", "s"),
        ];
        assert_eq!(config(&base).expect("config").database_pool_size, 2);
        let sized = config(&[base[0], base[1], ("DATABASE_POOL_SIZE", "64")]).expect("config");
        assert_eq!(sized.database_pool_size, 64);
        for bad in ["0", "101", "many"] {
            let err = config(&[base[0], base[1], ("DATABASE_POOL_SIZE", bad)]).expect_err(bad);
            assert!(err.to_string().contains("DATABASE_POOL_SIZE"), "{err}");
        }
    }

    #[test]
    fn without_any_way_to_verify_tokens_the_function_does_not_start() {
        let err = config(&[("DATABASE_URL", "postgres://x@127.0.0.1/db")]).expect_err("required");
        assert!(matches!(err, ConfigError::NoTokenVerification));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:db-password-123@127.0.0.1/db"),
            ("SUPABASE_JWT_SECRET", "jwt-secret-456"),
            ("INVITE_CODE_SECRET", "invite-secret-789"),
        ])
        .expect("config");
        let printed = format!("{c:?}");
        for secret in ["db-password-123", "jwt-secret-456", "invite-secret-789"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
    }

    #[test]
    fn redirect_origins_default_to_the_app_origin() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u@127.0.0.1/db"),
            ("SUPABASE_JWT_SECRET", "s"),
            ("APP_URL", "https://App.Example.com/home"),
        ])
        .expect("config");
        assert_eq!(
            c.allowed_redirect_origins,
            vec!["https://app.example.com".to_owned()]
        );
    }

    #[test]
    fn an_r2_bucket_without_credentials_names_what_is_missing() {
        let err = config(&[
            ("DATABASE_URL", "postgres://u@127.0.0.1/db"),
            ("SUPABASE_JWT_SECRET", "s"),
            ("R2_BUCKET_NAME", "audio"),
            ("R2_ACCOUNT_ID", "acct"),
        ])
        .expect_err("missing key");
        assert!(err.to_string().contains("R2_ACCESS_KEY_ID"), "{err}");
    }

    #[test]
    fn origins_are_parsed_not_prefixed() {
        assert_eq!(
            origin_of("https://app.example.com/x").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            origin_of("https://app.example.com.evil.net/").as_deref(),
            Some("https://app.example.com.evil.net")
        );
        assert_eq!(origin_of("https://app.example.com@evil.net/"), None);
        assert_eq!(
            origin_of("https://app.example.com:443/").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            origin_of("https://APP.example.com/").as_deref(),
            Some("https://app.example.com")
        );
        assert_ne!(
            origin_of("http://app.example.com/").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
    }
}
