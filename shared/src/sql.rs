//! The statements `shared` sends on every function's behalf. Each function crate keeps
//! its own in its `sql` module; the benchmark's SQL floor sends these same constants.

/// Every transaction's prologue: the role, the verified claims and a statement
/// timeout, all transaction-local (a pooled connection's next user never sees them).
pub const PROLOGUE: &str = "
    SELECT set_config('role', $1, true),
           set_config('request.jwt.claims', $2, true),
           set_config('statement_timeout', $3, true)";

/// Whether the caller belongs to the family (as the caller: RLS decides).
pub const IS_MEMBER: &str = "
    SELECT 1 FROM public.family_members
    WHERE family_id = $1 AND user_id = (SELECT auth.uid())";

/// The caller's role in a family, with the family's name, language and Stripe customer
/// (as the caller: a family they do not belong to is no row).
pub const MEMBERSHIP: &str = "
    SELECT m.role, f.name, f.language, e.stripe_customer_id
    FROM public.families f
    JOIN public.family_members m ON m.family_id = f.id AND m.user_id = (SELECT auth.uid())
    LEFT JOIN public.entitlements e ON e.family_id = f.id
    WHERE f.id = $1";

/// Whether the caller belongs to the family and it is deleted (so a function answers
/// 404 where RLS no longer shows it).
pub const IN_DELETED_FAMILY: &str = "SELECT public.in_deleted_family($1)";

/// Serialises the checkouts of one family, and a deletion with them: the uploads lock
/// the entitlement row, which no checkout holds across a call to Stripe.
pub const CHECKOUT_LOCK: &str = "
    SELECT pg_advisory_xact_lock(hashtextextended('checkout:' || $1::text, 0))";

/// Takes one hit of a fixed-window rate limit: 0, or the seconds until the window ends.
pub const RATE_LIMIT_TAKE: &str = "SELECT public.rate_limit_take($1, $2, $3::interval)";
