//! The statements get-signed-upload-url sends (after the shared membership check), in
//! one transaction as the service role.

/// The family's entitlement, plan limits and committed bytes (used plus open
/// reservations), its row locked: concurrent requests can't reserve the same bytes twice.
pub const LOCK_ENTITLEMENT: &str = "
    SELECT e.status, p.is_paid, e.current_period_end > now() - interval '3 days',
           p.storage_quota_bytes, p.max_recording_seconds,
           e.storage_used_bytes + coalesce((
             SELECT sum(r.audio_size_bytes + coalesce(r.waveform_size_bytes, 0))
             FROM public.upload_reservations r
             WHERE r.family_id = e.family_id AND r.finalized_at IS NULL AND r.expires_at > now()
           ), 0)::bigint
    FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
    WHERE e.family_id = $1
    FOR UPDATE OF e";

/// Whether the prompt is a live one of this family.
pub const PROMPT_OF_FAMILY: &str = "
    SELECT 1 FROM public.prompts WHERE id = $1 AND family_id = $2 AND deleted_at IS NULL";

/// The reservation: who, which family, declared sizes, duration, prompt and expiry.
pub const INSERT_RESERVATION: &str = "
    INSERT INTO public.upload_reservations
      (id, family_id, user_id, prompt_id, audio_size_bytes, waveform_size_bytes,
       duration_seconds, content_type, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)";
