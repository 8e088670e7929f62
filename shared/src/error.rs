//! The one error type of every function: its variants are the contract's codes (§2).

use http::StatusCode;

pub use crate::api::ErrorCode;
use tokio_postgres::error::SqlState;

/// The message of every 500: the log gets the chain, the caller gets this.
pub const INTERNAL_MESSAGE: &str = "Something went wrong. Please try again.";

/// An expected failure, turned into the contract's envelope at the boundary.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Missing or invalid access token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("Storage quota exceeded")]
    QuotaExceeded,
    /// A finalize of an upload that came after the sweep released its reservation, and
    /// that no longer fits beside the family's other uploads.
    #[error(
        "Storage quota exceeded: this upload arrived after its reservation was released, \
         and it no longer fits beside the family's other uploads. It is kept for \
         {grace_minutes} minutes after it arrived: free some space or upgrade, then \
         finalize it again to save it."
    )]
    LateUploadOverQuota { grace_minutes: u32 },
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    /// The change would leave a family without a keeper.
    #[error("{0}")]
    LastKeeper(&'static str),
    #[error("This family has an active subscription: cancel it in the billing portal first")]
    SubscriptionActive,
    #[error("Too many requests. Please try again later.")]
    RateLimit { retry_after_seconds: u32 },
    #[error("Request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// A dependency is down or not configured; the source says which (logged, not sent).
    #[error("Service temporarily unavailable. Please try again.")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or anything unforeseen; the source is logged, never sent.
    #[error("{INTERNAL_MESSAGE}")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The contract's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::QuotaExceeded | ApiError::LateUploadOverQuota { .. } => {
                ErrorCode::QuotaExceeded
            }
            ApiError::Validation(_) => ErrorCode::ValidationFailed,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::LastKeeper(_) => ErrorCode::LastKeeper,
            ApiError::SubscriptionActive => ErrorCode::SubscriptionActive,
            ApiError::RateLimit { .. } => ErrorCode::RateLimit,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            ApiError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The contract's status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_)
            | ApiError::QuotaExceeded
            | ApiError::LateUploadOverQuota { .. } => StatusCode::FORBIDDEN,
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::LastKeeper(_) | ApiError::SubscriptionActive => {
                StatusCode::CONFLICT
            }
            ApiError::RateLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Wraps anything unforeseen as a 500.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }
}

/// The foreign keys from our tables to `auth.users`: writing one for a user who is not
/// there means the token outlived its account (deleted, but the token is still valid).
const USER_FOREIGN_KEYS: &[&str] = &[
    "families_created_by_fkey",
    "families_deleted_by_fkey",
    "family_events_actor_id_fkey",
    "family_members_user_id_fkey",
    "invites_created_by_fkey",
    "prompts_created_by_fkey",
    "recordings_created_by_fkey",
    "upload_reservations_user_id_fkey",
];

impl From<tokio_postgres::Error> for ApiError {
    /// Database errors are mapped where they mean something to the caller.
    fn from(e: tokio_postgres::Error) -> Self {
        let constraint = e.as_db_error().and_then(|db| db.constraint());
        match e.code() {
            // Raised by update_storage_quota() when an upload would pass the quota.
            Some(c) if *c == SqlState::RAISE_EXCEPTION => ApiError::QuotaExceeded,
            // A valid token for an account that no longer exists writes nothing.
            Some(c)
                if *c == SqlState::FOREIGN_KEY_VIOLATION
                    && constraint.is_some_and(|c| USER_FOREIGN_KEYS.contains(&c)) =>
            {
                ApiError::Unauthorized
            }
            Some(c) if is_unavailable(c) => ApiError::Unavailable(describe(&e)),
            Some(_) => ApiError::Internal(describe(&e)),
            // No SQLSTATE: the connection itself failed or closed.
            None => ApiError::Unavailable(e.into()),
        }
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

impl From<deadpool_postgres::PoolError> for ApiError {
    /// No connection to be had, whatever the reason: the database is unavailable.
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(e.into())
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
