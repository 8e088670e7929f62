//! The statement get-archive sends, as the caller (RLS decides).

/// The archive, if the caller may see it: its family, status, size, parts, expiry, the
/// family's name, whether it is past its expiry (or deleted), and why it failed.
pub const ARCHIVE: &str = "
    SELECT a.family_id, a.status, a.size_bytes, a.parts_total, a.expires_at, f.name,
           a.deleted_at IS NOT NULL
             OR (a.status IN ('done', 'failed') AND a.expires_at <= now()),
           a.failure
    FROM public.archives a JOIN public.families f ON f.id = a.family_id
    WHERE a.id = $1";
