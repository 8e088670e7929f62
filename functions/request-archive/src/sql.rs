//! The statements request-archive sends (after the caller's membership lock), in one
//! transaction as the service role.

/// One request per family at a time (transaction-scoped: safe behind a pooler).
pub const SERIALIZE: &str = "
    SELECT pg_advisory_xact_lock(hashtextextended('archive:' || $1::text, 0))";

/// The family's job in flight, if any.
pub const IN_FLIGHT: &str = "
    SELECT id, status FROM public.archives
    WHERE family_id = $1 AND status IN ('queued', 'running')";

/// The caller joins a job (whoever asks while it runs can follow it, and is emailed).
pub const JOIN: &str = "
    INSERT INTO public.archive_requesters (archive_id, family_id, user_id)
    VALUES ($1, $2, $3)
    ON CONFLICT ON CONSTRAINT archive_requesters_archive_user_key DO NOTHING";

/// The jobs of this UTC day that count (not failed, not withdrawn): the family's, and
/// those the caller ($2) asked for; and the seconds until the day ends.
pub const TODAY: &str = "
    SELECT count(*), count(*) FILTER (WHERE requested_by = $2),
           ceil(extract(epoch FROM date_trunc('day', now(), 'UTC') + interval '1 day' - now()))::int
    FROM public.archives
    WHERE family_id = $1 AND counted AND created_at >= date_trunc('day', now(), 'UTC')";

/// A new job.
pub const QUEUE: &str = "
    INSERT INTO public.archives (family_id, requested_by) VALUES ($1, $2) RETURNING id";
