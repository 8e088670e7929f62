//! The statements delete-family sends, as the service role: its checks, then (after
//! an open Checkout session is expired at Stripe, no lock held) the deletion.

/// The subscription the family follows, if any: its status and whether it is set to
/// end with its period (the family can't be deleted while it may go on being charged).
pub const SUBSCRIPTION: &str = "
    SELECT status, cancel_at_period_end FROM public.entitlements
    WHERE family_id = $1 AND stripe_subscription_id IS NOT NULL";

/// The family's Checkout session that is still open (not paid, not expired), unless it
/// is $2 (the one just expired at Stripe).
pub const OPEN_SESSION: &str = "
    SELECT stripe_session_id FROM public.checkout_sessions
    WHERE family_id = $1 AND expires_at > now() AND completed_at IS NULL
      AND stripe_session_id IS DISTINCT FROM $2";

/// Forgets the family's Checkout session (expired at Stripe, or paid).
pub const FORGET_SESSION: &str = "DELETE FROM public.checkout_sessions WHERE family_id = $1";

/// The family deleted; when, and until when it can be restored.
pub const DELETE: &str = "
    UPDATE public.families
    SET deleted_at = now(), deleted_by = $2, purge_reminder_sent_at = NULL
    WHERE id = $1
    RETURNING deleted_at, deleted_at + public.trash_retention()";

/// Its recordings into the trash, at the family's deletion time (a restore brings back
/// exactly these).
pub const TRASH: &str = "
    WITH trashed AS (
      UPDATE public.recordings SET deleted_at = now()
      WHERE family_id = $1 AND deleted_at IS NULL
      RETURNING 1)
    SELECT count(*) FROM trashed";
