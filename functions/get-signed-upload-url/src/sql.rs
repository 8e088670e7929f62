//! The statements get-signed-upload-url sends (after the shared membership lock), in
//! one transaction as the service role.

/// The family's entitlement, plan limits and used bytes, its row locked: every
/// reservation of the family is made under this lock.
pub const LOCK_ENTITLEMENT: &str = "
    SELECT e.status, p.is_paid, e.current_period_end > now() - interval '3 days',
           p.storage_quota_bytes, p.max_recording_seconds, e.storage_used_bytes
    FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
    WHERE e.family_id = $1
    FOR UPDATE OF e";

/// The bytes the family's open reservations hold: not finalized and not closed by the
/// sweep (an expired one still counts, its upload may yet be saved). A statement of its
/// own, after the lock: READ COMMITTED gives each statement a snapshot of its own, so
/// this one counts the reservations committed while we waited (a subquery of the
/// locking statement would read them from before the wait).
pub const RESERVED_BYTES: &str = "
    SELECT coalesce(sum(audio_size_bytes + coalesce(waveform_size_bytes, 0)), 0)::bigint
    FROM public.upload_reservations
    WHERE family_id = $1 AND finalized_at IS NULL AND closed_at IS NULL";

/// Whether the prompt is a live one of this family.
pub const PROMPT_OF_FAMILY: &str = "
    SELECT 1 FROM public.prompts WHERE id = $1 AND family_id = $2 AND deleted_at IS NULL";

/// The reservation: who, which family, declared sizes, duration, prompt and expiry.
pub const INSERT_RESERVATION: &str = "
    INSERT INTO public.upload_reservations
      (id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
       duration_seconds, content_type, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)";
