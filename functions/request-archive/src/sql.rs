//! The statements request-archive sends (after the caller's membership lock), in one
//! transaction as the service role.

/// One request per family at a time (transaction-scoped: safe behind a pooler).
pub const SERIALIZE: &str = "
    SELECT pg_advisory_xact_lock(hashtextextended('archive:' || $1::text, 0))";

/// The family's job in flight, if any.
pub const IN_FLIGHT: &str = "
    SELECT id, status FROM public.archives
    WHERE family_id = $1 AND status IN ('queued', 'running')";

/// A new job.
pub const QUEUE: &str = "
    INSERT INTO public.archives (family_id, requested_by) VALUES ($1, $2) RETURNING id";
