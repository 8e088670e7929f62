//! The statements delete-family sends (after the shared locks), in one transaction as
//! the service role.

/// Whether a paid subscription is live and not set to end: the family can't be
/// deleted while it would go on being charged.
pub const SUBSCRIPTION: &str = "
    SELECT p.is_paid AND e.status IN ('active', 'trialing', 'past_due')
           AND NOT e.cancel_at_period_end
    FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
    WHERE e.family_id = $1";

/// The family's Checkout session that has not expired yet, if any.
pub const OPEN_SESSION: &str = "
    SELECT stripe_session_id FROM public.checkout_sessions
    WHERE family_id = $1 AND expires_at > now()";

/// Forgets the family's Checkout session (expired at Stripe).
pub const FORGET_SESSION: &str = "DELETE FROM public.checkout_sessions WHERE family_id = $1";

/// The family deleted; when, and until when it can be restored.
pub const DELETE: &str = "
    UPDATE public.families SET deleted_at = now(), deleted_by = $2 WHERE id = $1
    RETURNING deleted_at, deleted_at + public.trash_retention()";

/// Its recordings into the trash, at the family's deletion time (a restore brings back
/// exactly these).
pub const TRASH: &str = "
    WITH trashed AS (
      UPDATE public.recordings SET deleted_at = now()
      WHERE family_id = $1 AND deleted_at IS NULL
      RETURNING 1)
    SELECT count(*) FROM trashed";
