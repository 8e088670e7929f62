//! The contract as code: the envelope and the error codes as types (what `http::serve`
//! sends is these), and what each HTTP function says of itself for the OpenAPI document
//! the local runner serves and `api/openapi.json` holds.

use schemars::generate::SchemaGenerator;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

/// The contract's error codes (§2): the `code` of every failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    QuotaExceeded,
    ValidationFailed,
    NotFound,
    Conflict,
    LastKeeper,
    SubscriptionActive,
    ChecksumMismatch,
    RateLimit,
    PayloadTooLarge,
    MethodNotAllowed,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    /// As it is written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::LastKeeper => "LAST_KEEPER",
            ErrorCode::SubscriptionActive => "SUBSCRIPTION_ACTIVE",
            ErrorCode::ChecksumMismatch => "CHECKSUM_MISMATCH",
            ErrorCode::RateLimit => "RATE_LIMIT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// A member's role in a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Keeper,
    Storyteller,
}

impl Role {
    /// As the database and the wire write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Keeper => "keeper",
            Role::Storyteller => "storyteller",
        }
    }

    /// From the database's `family_members.role`.
    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "keeper" => Some(Role::Keeper),
            "storyteller" => Some(Role::Storyteller),
            _ => None,
        }
    }
}

/// The schema pattern of user-written text: no control characters (the functions'
/// `printable` rule, which the database's check constraints repeat).
pub const PRINTABLE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The schema pattern of a SHA-256 in standard base64 with padding (44 characters): 32
/// bytes are 256 bits in 43 characters of 6, so the last character's two spare bits are
/// zero (one of `AEIMQUYcgkosw048`), as the strict decoder the functions use requires.
pub const SHA256_BASE64: &str = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";

/// A success: `{"data": …}`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Data<T> {
    pub data: T,
}

/// A failure: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    pub error: ErrorBody,
}

/// What went wrong: one of the contract's codes, and a message for people (a 500's is
/// always the same).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// How a caller proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// A Supabase access token: `Authorization: Bearer …`.
    Bearer,
    /// Stripe's `Stripe-Signature` over the raw body (the webhook).
    StripeSignature,
    /// No credentials (the health check).
    None,
}

/// A follow-up call the answer makes possible (an OpenAPI link): `target`'s body
/// fields filled from this operation's answer or request (runtime expressions such as
/// `$response.body#/data/family/id`).
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub target: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
}

/// What an HTTP function says of itself in the OpenAPI document.
pub struct Operation {
    pub name: &'static str,
    /// One line.
    pub summary: &'static str,
    /// What it does, who may call it, what it refuses.
    pub description: &'static str,
    pub auth: Auth,
    /// Takes `POST` with a JSON body (false: only `GET`).
    pub post: bool,
    /// Also `GET ?field=…` (the input's fields as query parameters).
    pub get: bool,
    pub input: fn(&mut SchemaGenerator) -> Schema,
    pub output: fn(&mut SchemaGenerator) -> Schema,
    /// The refusals of its own, by status (the frame's are added for every function:
    /// 400, 401, 405, 413, 500, 503).
    pub errors: &'static [(u16, &'static [ErrorCode])],
    /// One request body and the answer's `data`.
    pub example: fn() -> (serde_json::Value, serde_json::Value),
    pub links: &'static [Link],
}

impl Operation {
    /// A `POST` with a bearer token, taking `I` and answering `O`.
    pub fn post<I: JsonSchema, O: JsonSchema>(
        name: &'static str,
        summary: &'static str,
        description: &'static str,
        example: fn() -> (serde_json::Value, serde_json::Value),
    ) -> Self {
        Operation {
            name,
            summary,
            description,
            auth: Auth::Bearer,
            post: true,
            get: false,
            input: |g| g.subschema_for::<I>(),
            output: |g| g.subschema_for::<O>(),
            errors: &[],
            example,
            links: &[],
        }
    }

    /// A `GET` with no input and no credentials, answering `O`; `example` gives the
    /// answer's `data` (as the second of the pair, the first unused).
    pub fn get<O: JsonSchema>(
        name: &'static str,
        summary: &'static str,
        description: &'static str,
        example: fn() -> (serde_json::Value, serde_json::Value),
    ) -> Self {
        Operation {
            auth: Auth::None,
            post: false,
            get: true,
            ..Operation::post::<(), O>(name, summary, description, example)
        }
    }

    /// Its own refusals, by status.
    pub fn errors(self, errors: &'static [(u16, &'static [ErrorCode])]) -> Self {
        Operation { errors, ..self }
    }

    /// The calls its answer makes possible.
    pub fn links(self, links: &'static [Link]) -> Self {
        Operation { links, ..self }
    }

    /// Also takes `GET ?field=…`.
    pub fn also_get(self) -> Self {
        Operation { get: true, ..self }
    }

    /// Authenticated by Stripe's signature instead of a token.
    pub fn signed_by_stripe(self) -> Self {
        Operation {
            auth: Auth::StripeSignature,
            ..self
        }
    }
}
