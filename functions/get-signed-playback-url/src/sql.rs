//! The statement get-signed-playback-url sends, as the caller (RLS decides).

/// The family of a live recording the caller's families hold, and whether a waveform
/// was uploaded with it (finalize recorded its size).
pub const PLAYABLE: &str = "
    SELECT family_id, waveform_size_bytes IS NOT NULL
    FROM public.recordings WHERE id = $1 AND deleted_at IS NULL";
