//! The statement get-signed-playback-url sends, as the caller (RLS decides).

/// The family of a live recording the caller's families hold.
pub const PLAYABLE: &str = "
    SELECT family_id FROM public.recordings WHERE id = $1 AND deleted_at IS NULL";
