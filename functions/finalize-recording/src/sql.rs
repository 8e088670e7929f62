//! The statements finalize-recording sends, each transaction as the service role (the
//! membership check in between is the shared one, as the caller).

/// The caller's reservation for this recording and family (an expired one too).
pub const RESERVATION: &str = "
    SELECT prompt_id, audio_size_bytes, waveform_size_bytes, duration_seconds, content_type
    FROM public.upload_reservations WHERE id = $1 AND family_id = $2 AND user_id = $3";

/// The entitlement lock, the quota and the ledger, the recording, the reservation
/// closed: one idempotent step (false when the recording already exists).
pub const FINALIZE: &str = "
    SELECT public.finalize_recording_tx($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// The recording as finalized (now or by an earlier call).
pub const FINALIZED: &str = "
    SELECT id, family_id, created_by, prompt_id, title, duration_seconds, size_bytes, created_at
    FROM public.recordings WHERE id = $1 AND family_id = $2";
