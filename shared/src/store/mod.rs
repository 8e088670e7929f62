//! The typed store: every statement the functions send, one module per group of
//! tables. Each statement is private to its module, beside the typed function that
//! binds its parameters and reads its rows by column name; each module lists its
//! statements (name, SQL, the role it runs as), so a test can check every one.
//!
//! A store function takes the transaction it runs in ([`Tx`], begun by `Db::as_user`
//! or `Db::as_service`) and answers a [`StoreError`]; what an error means to a caller
//! is the caller's to decide (an HTTP function maps it to the contract's codes with
//! `?`, a worker reports it).

pub mod archives;
pub mod copies;
pub mod entitlements;
pub mod families;
pub mod invites;
pub mod outbox;
pub mod prompts;
pub mod rate_limits;
pub mod recordings;
pub mod state;
pub mod stripe_events;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use crate::db::Tx;

/// Whose transaction a statement is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsAs {
    /// The caller, as `authenticated`: RLS decides what it sees.
    User,
    /// `service_role`: the steps the contract's §4 lists.
    Service,
    /// The operator's own admin connection (the `books` tool), never a function.
    Operator,
}

/// One statement of the store.
#[derive(Debug)]
pub struct Statement {
    /// `module.what`, as the plan test and the logs name it.
    pub name: &'static str,
    pub sql: &'static str,
    pub runs_as: RunsAs,
}

const PROLOGUE: Statement = Statement {
    name: "session.prologue",
    runs_as: RunsAs::Service,
    // Every transaction's prologue: the role, the verified claims, the caller's id and
    // a statement timeout, all transaction-local (a pooled connection's next user never
    // sees them). The id is the claims' `sub`, set on its own because `auth.uid()` reads
    // `request.jwt.claim.sub` first (as Supabase's does): each call then casts a string
    // instead of parsing the claims' JSON again, and every RLS check calls it.
    sql: "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),
                 set_config('request.jwt.claim.sub', $3, true),
                 set_config('statement_timeout', $4, true)",
};

/// Sets a transaction's role, claims, caller's id (`""` for none) and statement timeout
/// (sent with its `BEGIN`).
pub(crate) async fn prologue(
    client: &tokio_postgres::Client,
    role: &str,
    claims: &str,
    sub: &str,
    statement_timeout: &str,
) -> Result<(), StoreError> {
    let params: [(&(dyn ToSql + Sync), Type); 4] = [
        (&role, Type::TEXT),
        (&claims, Type::TEXT),
        (&sub, Type::TEXT),
        (&statement_timeout, Type::TEXT),
    ];
    client.query_typed(PROLOGUE.sql, &params).await?;
    Ok(())
}

const WHOAMI: Statement = Statement {
    name: "session.whoami",
    runs_as: RunsAs::User,
    // Who the transaction runs as, on which connection.
    sql: "SELECT auth.uid() AS uid, pg_backend_pid() AS pid, current_user::text AS role",
};

const PING: Statement = Statement {
    name: "session.ping",
    runs_as: RunsAs::Service,
    // The health check: the database answers, through the pooler, and that is all.
    sql: "SELECT true AS ok",
};

/// One round trip to the database, touching no table.
pub async fn ping(tx: &Tx<'_>) -> Result<(), StoreError> {
    one(tx, &PING, &[]).await?;
    Ok(())
}

/// Who a transaction runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The caller's id, as RLS sees it (None for the service role).
    pub uid: Option<uuid::Uuid>,
    /// The server process behind the connection.
    pub pid: i32,
    /// The database role it took.
    pub role: String,
}

/// Who the transaction runs as (one round trip: also a ping of the database).
pub async fn whoami(tx: &Tx<'_>) -> Result<Session, StoreError> {
    let row = one(tx, &WHOAMI, &[]).await?;
    Ok(Session {
        uid: row.get("uid"),
        pid: row.get("pid"),
        role: row.get("role"),
    })
}

/// Every statement the code sends, module by module.
pub fn statements() -> Vec<&'static Statement> {
    [
        &[&PROLOGUE, &WHOAMI, &PING][..],
        archives::STATEMENTS,
        copies::STATEMENTS,
        entitlements::STATEMENTS,
        families::STATEMENTS,
        invites::STATEMENTS,
        outbox::STATEMENTS,
        prompts::STATEMENTS,
        rate_limits::STATEMENTS,
        recordings::STATEMENTS,
        state::STATEMENTS,
        stripe_events::STATEMENTS,
    ]
    .concat()
}

/// What the database said, in the terms a caller decides on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database, or the pooler in front of it, is down, restarting, overloaded or
    /// stuck (a timeout, a deadlock): worth a retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A storage quota would be passed (`update_storage_quota`'s `P0001`);
    /// `released` when the upload's reservation had been released by the sweep.
    #[error("storage quota exceeded")]
    OverQuota { released: bool },
    /// A constraint refused the write: its name.
    #[error("constraint {constraint} refused the write")]
    Constraint {
        constraint: String,
        #[source]
        source: anyhow::Error,
    },
    /// Anything else: a bug of ours.
    #[error("database error")]
    Other(#[source] anyhow::Error),
}

impl StoreError {
    /// Whether `constraint` refused the write (the call site decides what it means, as
    /// realworld-axum-sqlx's `on_constraint` does).
    pub fn is_constraint(&self, constraint: &str) -> bool {
        matches!(self, StoreError::Constraint { constraint: c, .. } if c == constraint)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let db = e.as_db_error();
        match e.code() {
            Some(c) if *c == SqlState::RAISE_EXCEPTION => StoreError::OverQuota {
                released: db.and_then(|d| d.hint()) == Some("released"),
            },
            Some(c) if is_unavailable(c) => StoreError::Unavailable(describe(&e)),
            Some(c) if c.code().starts_with("23") && db.and_then(|d| d.constraint()).is_some() => {
                StoreError::Constraint {
                    constraint: db
                        .and_then(|d| d.constraint())
                        .unwrap_or_default()
                        .to_owned(),
                    source: describe(&e),
                }
            }
            Some(_) => StoreError::Other(describe(&e)),
            // No SQLSTATE: the connection itself failed or closed.
            None => StoreError::Unavailable(e.into()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    /// No connection to be had, whatever the reason: the database is unavailable.
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(e.into())
    }
}

/// A database error for logs and Sentry, without its DETAIL: Postgres puts row values
/// there ("Failing row contains (…)", "Key (email)=(…)"), and those may be personal.
fn describe(e: &tokio_postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => anyhow::anyhow!(
            "database error {}: {}{}{}",
            db.code().code(),
            db.message(),
            db.table()
                .map(|t| format!(" (table {t})"))
                .unwrap_or_default(),
            db.constraint()
                .map(|c| format!(" (constraint {c})"))
                .unwrap_or_default(),
        ),
        None => anyhow::anyhow!("database error: {e}"),
    }
}

/// SQLSTATEs that mean the database (or the pooler in front of it) is down,
/// restarting, overloaded or stuck: worth a retry, not a bug.
fn is_unavailable(c: &SqlState) -> bool {
    let code = c.code();
    code.starts_with("08") // connection exception (PgBouncer reports its own here)
        || code.starts_with("53") // insufficient resources, too many connections
        || code.starts_with("57P") // admin / crash shutdown, cannot connect now
        || [
            SqlState::QUERY_CANCELED, // statement_timeout
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
        ]
        .contains(c)
}

/// A statement's parameters, each with its type (sent unnamed: safe behind a
/// transaction-mode pooler).
type Params<'a> = &'a [(&'a (dyn ToSql + Sync), Type)];

/// Sends one statement in the transaction.
async fn query(
    tx: &Tx<'_>,
    statement: &Statement,
    params: Params<'_>,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    Ok(tx.client().query_typed(statement.sql, params).await?)
}

/// Sends one statement that answers one row.
async fn one(
    tx: &Tx<'_>,
    statement: &Statement,
    params: Params<'_>,
) -> Result<tokio_postgres::Row, StoreError> {
    query(tx, statement, params)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("{} answered no row", statement.name)))
}

/// Sends one statement that answers at most one row.
async fn maybe(
    tx: &Tx<'_>,
    statement: &Statement,
    params: Params<'_>,
) -> Result<Option<tokio_postgres::Row>, StoreError> {
    Ok(query(tx, statement, params).await?.into_iter().next())
}

/// A value spelled one way in Rust and one way in SQL (a `text` column with a check
/// constraint): each spelling written once, in its `impl`.
macro_rules! sql_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $sql:literal,)* }) => {
        $(#[$meta])*
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// As the database writes it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $sql,)* }
            }

            /// From the database's spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($sql => Some($name::$variant),)* _ => None }
            }
        }

        impl<'a> tokio_postgres::types::FromSql<'a> for $name {
            fn from_sql(
                ty: &tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let s = <&str as tokio_postgres::types::FromSql>::from_sql(ty, raw)?;
                Self::parse(s).ok_or_else(|| {
                    format!("{} is not a {}", s, stringify!($name)).into()
                })
            }

            fn accepts(ty: &tokio_postgres::types::Type) -> bool {
                <&str as tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}
pub(crate) use sql_enum;
