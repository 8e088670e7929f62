//! The statements restore-family sends (after the shared locks), in one transaction as
//! the service role.

/// The family back.
pub const RESTORE: &str = "
    UPDATE public.families
    SET deleted_at = NULL, deleted_by = NULL, purge_reminder_sent_at = NULL
    WHERE id = $1";

/// The recordings that went into the trash with the family (their deleted_at is the
/// family's) back, unless a purge claimed them; those trashed before stay there.
pub const UNTRASH: &str = "
    WITH restored AS (
      UPDATE public.recordings SET deleted_at = NULL
      WHERE family_id = $1 AND deleted_at = $2 AND purge_started_at IS NULL
      RETURNING 1)
    SELECT count(*) FROM restored";
