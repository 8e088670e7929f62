//! The one error type of every function: its variants are the contract's codes (§2).

use http::StatusCode;

pub use crate::api::ErrorCode;
use crate::store::StoreError;

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
    /// The uploaded bytes are not those whose SHA-256 the upload URL was signed with:
    /// the object was deleted, nothing charged.
    #[error(
        "The uploaded audio does not match the SHA-256 declared for it: it was deleted. \
         Upload it again."
    )]
    ChecksumMismatch,
    #[error("Too many requests. Please try again later.")]
    RateLimit { retry_after_seconds: u32 },
    #[error("Request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// A dependency is down or not configured; the source says which (logged, not sent).
    #[error("Service temporarily unavailable. Please try again.")]
    Unavailable(#[source] anyhow::Error),
    /// A dependency the health check asks did not answer in time: its name is sent
    /// (`database`), nothing else about it.
    #[error("{0} did not answer in time")]
    DependencyDown(&'static str),
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
            ApiError::ChecksumMismatch => ErrorCode::ChecksumMismatch,
            ApiError::RateLimit { .. } => ErrorCode::RateLimit,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Unavailable(_) | ApiError::DependencyDown(_) => ErrorCode::ServiceUnavailable,
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
            ApiError::ChecksumMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::DependencyDown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
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
    "archive_requesters_user_id_fkey",
    "family_removals_removed_by_fkey",
];

impl From<StoreError> for ApiError {
    /// What the database's answers mean to a caller, unless the call site decided
    /// otherwise first.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::OverQuota { .. } => ApiError::QuotaExceeded,
            StoreError::Unavailable(e) => ApiError::Unavailable(e),
            // A valid token for an account that no longer exists writes nothing.
            StoreError::Constraint { ref constraint, .. }
                if USER_FOREIGN_KEYS.contains(&constraint.as_str()) =>
            {
                ApiError::Unauthorized
            }
            e => ApiError::Internal(e.into()),
        }
    }
}
