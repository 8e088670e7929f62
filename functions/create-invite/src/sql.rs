//! The statements create-invite sends (after the shared keeper check and rate limit),
//! in one transaction as the service role.

/// Marks where a colliding code is rolled back to, so the next one can be tried.
pub const SAVEPOINT: &str = "SAVEPOINT new_code";

/// Back to before a code that collided with an existing one.
pub const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT new_code";

/// The invite: only the code's HMAC is stored.
pub const INSERT_INVITE: &str = "
    INSERT INTO public.invites (family_id, code_hmac, email, created_by, expires_at, max_uses)
    VALUES ($1, $2, $3, $4, now() + make_interval(days => $5), $6)
    RETURNING id, expires_at";
