//! Database access: connections with the contract's TLS policy.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_postgres::config::Host;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls, Transaction};

use crate::error::ApiError;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Environment variable holding extra PEM root certificates for the database
/// (Supabase signs its Postgres certificates with its own CA).
pub const CA_CERT_VAR: &str = "DATABASE_CA_CERT";

/// How to reach a database: plain TCP only to loopback, TLS with verification otherwise.
pub enum Tls {
    /// Loopback or a Unix socket: nothing leaves the machine.
    Plain,
    /// Anything else: rustls, certificates verified against webpki roots (+ `DATABASE_CA_CERT`).
    Verified(MakeRustlsConnect),
}

/// True when every host of the config is on this machine.
pub fn is_local(config: &Config) -> bool {
    !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
}

/// Parses a connection URL and picks the TLS policy for it.
pub fn parse(url: &str) -> Result<(Config, Tls)> {
    let config: Config = url.parse().context("the database URL is not valid")?;
    let tls = if is_local(&config) {
        Tls::Plain
    } else {
        Tls::Verified(MakeRustlsConnect::new(client_tls_config()?))
    };
    Ok((config, tls))
}

/// The rustls configuration for database connections, built once per cold start.
pub fn client_tls_config() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Ok(pem) = std::env::var(CA_CERT_VAR) {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.with_context(|| format!("{CA_CERT_VAR} is not PEM"))?;
            roots
                .add(cert)
                .with_context(|| format!("{CA_CERT_VAR} holds a bad certificate"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Opens one connection (session) and drives it in the background.
pub async fn connect(url: &str) -> Result<Client> {
    let (config, tls) = parse(url)?;
    let client = match tls {
        Tls::Plain => {
            let (client, conn) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "database connection closed");
                }
            });
            client
        }
        Tls::Verified(tls) => {
            let (client, conn) = config.connect(tls).await?;
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "database connection closed");
                }
            });
            client
        }
    };
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_local_and_remote_hosts_are_not() {
        let local = |url: &str| is_local(&url.parse().expect("url"));
        assert!(local("postgres://postgres@127.0.0.1:5432/postgres"));
        assert!(local("postgres://postgres@localhost/postgres"));
        assert!(local("host=/var/run/postgresql user=postgres"));
        assert!(!local("postgres://u@db.abcd.supabase.co:5432/postgres"));
        assert!(!local("postgres://u@10.0.0.5:6543/postgres"));
        assert!(!local("host=127.0.0.1,db.example.com user=u"));
    }
}

/// How long a transaction may take to start (BEGIN and the role/claims prologue). A
/// pooler whose database is down holds the query while it waits for a server
/// (PgBouncer's `query_wait_timeout` is two minutes): this turns that into a 503 well
/// within the function's own timeout, instead of a hang Lambda kills without an answer.
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A statement stuck longer than this is cancelled, so it can't hold a family's
/// entitlement lock (and the caller gets a 503).
const STATEMENT_TIMEOUT: &str = "8s";

/// The functions' database: a small pool built once per cold start (it connects lazily).
#[derive(Clone)]
pub struct Db {
    pool: deadpool_postgres::Pool,
}

impl Db {
    /// Builds a pool of at most `size` connections to `url` (as the functions' login
    /// role). No connection yet.
    pub fn new(url: &str, size: usize) -> Result<Self> {
        use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
        let (mut config, tls) = parse(url)?;
        config.connect_timeout(std::time::Duration::from_secs(3));
        // Lambda freezes instances between requests and drops their idle connections;
        // Verified runs a round trip before handing a connection out again, so a dead
        // one is replaced instead of failing the request.
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = match tls {
            Tls::Plain => Manager::from_config(config, NoTls, manager_config),
            Tls::Verified(tls) => Manager::from_config(config, tls, manager_config),
        };
        let timeouts = Timeouts {
            wait: Some(std::time::Duration::from_secs(5)),
            create: Some(std::time::Duration::from_secs(3)),
            recycle: Some(std::time::Duration::from_secs(2)),
        };
        let pool = Pool::builder(manager)
            .max_size(size)
            .timeouts(timeouts)
            .runtime(Runtime::Tokio1)
            .build()
            .context("database pool")?;
        Ok(Db { pool })
    }

    /// Runs `f` in a transaction as the verified user: role `authenticated`, the claims
    /// transaction-local (so the next user of the connection never sees them), RLS on.
    pub async fn as_user<T>(
        &self,
        user: &crate::auth::User,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.run("authenticated", &user.claims.to_string(), f).await
    }

    /// Runs `f` in a transaction as `service_role` (RLS bypassed): only for the steps
    /// the contract's §4 lists.
    pub async fn as_service<T>(
        &self,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.run("service_role", r#"{"role":"service_role"}"#, f)
            .await
    }

    async fn run<T>(
        &self,
        role: &str,
        claims: &str,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut client = self.pool.get().await?;
        let Ok(begun) = tokio::time::timeout(START_TIMEOUT, async {
            let tx = client.transaction().await?;
            // Unnamed statements only (query_typed): the connection may sit behind a
            // transaction-mode pooler, where named prepared statements don't survive.
            tx.query_typed(
                crate::sql::PROLOGUE,
                &[
                    (&role, Type::TEXT),
                    (&claims, Type::TEXT),
                    (&STATEMENT_TIMEOUT, Type::TEXT),
                ],
            )
            .await?;
            Ok::<_, tokio_postgres::Error>(tx)
        })
        .await
        else {
            // Its late answer may still arrive: the connection is never reused.
            drop(deadpool_postgres::Object::take(client));
            return Err(ApiError::Unavailable(anyhow::anyhow!(
                "the database did not start a transaction within {START_TIMEOUT:?}"
            )));
        };
        let tx = begun?;
        match f(&tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // Dropping the transaction rolls it back; say so explicitly when we can.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

/// Takes one hit of the fixed-window rate limit `key` (at most `limit` per `window`, an
/// interval such as `1 hour`) in the caller's transaction: 429 with `Retry-After` when
/// the window is full. The counter row is locked, so concurrent callers can't slip past.
pub async fn rate_limit(
    tx: &Transaction<'_>,
    key: &str,
    limit: i32,
    window: &str,
) -> Result<(), ApiError> {
    let retry_after: i32 = tx
        .query_typed(
            crate::sql::RATE_LIMIT_TAKE,
            &[
                (&key, Type::TEXT),
                (&limit, Type::INT4),
                (&window, Type::TEXT),
            ],
        )
        .await?[0]
        .get(0);
    match retry_after {
        0 => Ok(()),
        seconds => Err(ApiError::RateLimit {
            retry_after_seconds: seconds.unsigned_abs(),
        }),
    }
}
