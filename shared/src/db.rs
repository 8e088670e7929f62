//! Database access: connections with the contract's TLS policy.

use std::borrow::Cow;
use std::net::IpAddr;

use anyhow::{Context, Result};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::auth::User;
use crate::store::StoreError;
use tokio_postgres_rustls::MakeRustlsConnect;

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
        Tls::Verified(MakeRustlsConnect::new(crate::tls::client_config()?))
    };
    Ok((config, tls))
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

/// The claims of the service role's transactions.
const SERVICE_CLAIMS: &str = r#"{"role":"service_role"}"#;

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
        // Fast: a pooled connection is handed out without a round trip to check it;
        // one that died while Lambda froze the instance fails at BEGIN, and `begin`
        // tries once more on a new connection.
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
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
    pub async fn as_user<T, E: From<StoreError>>(
        &self,
        user: &User,
        f: impl AsyncFnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(Some(user), f).await
    }

    /// Runs `f` in a transaction as `service_role` (RLS bypassed): only for the steps
    /// the contract's §4 lists.
    pub async fn as_service<T, E: From<StoreError>>(
        &self,
        f: impl AsyncFnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(None, f).await
    }

    async fn run<T, E: From<StoreError>>(
        &self,
        user: Option<&User>,
        f: impl AsyncFnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut open = self.begin(user).await?;
        let (result, ended) = {
            let client = open.client();
            let result = f(&Tx(client)).await;
            let end = match &result {
                Ok(_) => "COMMIT",
                // Said explicitly: the connection goes back to the pool clean.
                Err(_) => "ROLLBACK",
            };
            (result, client.batch_execute(end).await)
        };
        open.done();
        match (result, ended) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(StoreError::from(e).into()),
            (Err(e), _) => Err(e),
        }
    }

    /// A connection in a transaction with the prologue applied, in one round trip:
    /// `BEGIN` and the prologue are sent together (tokio-postgres pipelines requests
    /// issued together; the claims stay a bind parameter). A pooled connection is not
    /// checked before use (that was a round trip of its own); one that died while
    /// Lambda froze the instance fails here, before anything was done, and the
    /// transaction is tried once more on a new connection (the other idle ones idled
    /// as long: they go too). Safe behind a transaction-mode pooler: BEGIN comes first.
    async fn begin(&self, user: Option<&User>) -> Result<Open, StoreError> {
        let mut retried = false;
        loop {
            let open = Open(Some(self.pool.get().await?));
            let started = tokio::time::timeout(START_TIMEOUT, start(open.client(), user)).await;
            match started {
                Ok(Ok(())) => return Ok(open),
                // Its late answer may still arrive: the connection is never reused
                // (dropping `open` unfinished discards it).
                Err(_) => {
                    return Err(StoreError::Unavailable(anyhow::anyhow!(
                        "the database did not start a transaction within {START_TIMEOUT:?}"
                    )));
                }
                // Nothing was done yet, and BEGIN and the prologue fail only when the
                // connection does (closed, or an error from a pooler whose server
                // connection died): any failure here is worth one more try.
                Ok(Err(e)) if !retried => {
                    tracing::debug!(error = %e, "a pooled connection was dead; once more on a new one");
                    self.pool.retain(|_, _| false);
                    retried = true;
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

/// Begins a transaction on `client` as `user` (role `authenticated`, RLS on) or, with
/// None, as `service_role` (RLS bypassed): `BEGIN` and the prologue sent together, one
/// round trip.
async fn start(client: &Client, user: Option<&User>) -> Result<(), StoreError> {
    let (role, claims, sub): (_, Cow<str>, _) = match user {
        Some(user) => (
            "authenticated",
            user.claims.to_string().into(),
            user.id.to_string(),
        ),
        // No caller: `auth.uid()` is NULL.
        None => ("service_role", SERVICE_CLAIMS.into(), String::new()),
    };
    let (begun, prologue) = tokio::join!(
        client.batch_execute("BEGIN"),
        crate::store::prologue(client, role, &claims, &sub, STATEMENT_TIMEOUT)
    );
    begun?;
    prologue
}

/// A pooled connection inside a transaction. Dropped before [`Open::done`] (a failed
/// start, or the request future dropped mid-transaction) it is discarded, never handed
/// to the next request with this one's role and claims still set.
struct Open(Option<deadpool_postgres::Object>);

impl Open {
    fn client(&self) -> &Client {
        self.0.as_deref().map(|c| &**c).expect("an open connection")
    }

    /// The transaction ended: the connection may go back to the pool.
    fn done(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// One transaction, as the role it was begun as: what every store function runs in.
pub struct Tx<'a>(&'a Client);

impl<'a> Tx<'a> {
    /// A transaction on a connection of the caller's own, begun as the pool begins them
    /// (the benchmark's SQL floor, on bare connections): as `user` (their claims) or,
    /// with None, as the service role.
    pub async fn begin(client: &'a Client, user: Option<&User>) -> Result<Tx<'a>, StoreError> {
        start(client, user).await?;
        Ok(Tx(client))
    }

    /// A transaction on an operator's admin connection, as the connection's own role
    /// (the statements that run as [`RunsAs::Operator`](crate::store::RunsAs::Operator)).
    pub async fn operator(client: &'a Client) -> Result<Tx<'a>, StoreError> {
        client.batch_execute("BEGIN").await?;
        Ok(Tx(client))
    }

    /// Commits a transaction [`Tx::begin`] or [`Tx::operator`] began.
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.batch_execute("COMMIT").await?)
    }

    /// Its connection, for the store's statements.
    pub(crate) fn client(&self) -> &Client {
        self.0
    }
}
