//! The statements create-checkout-session sends (after the shared keeper check), in two
//! transactions as the service role, each under the family's checkout lock.

/// Whether the price maps to a paid plan we sell (in this environment).
pub const PRICE_OFFERED: &str = "
    SELECT 1 FROM public.plan_prices pp JOIN public.plans p ON p.code = pp.plan
    WHERE pp.stripe_price_id = $1 AND p.is_paid";

/// The family's Stripe customer, whether its plan is a paid one and its subscription's
/// status (no row once the family is deleted).
pub const BILLING_STATE: &str = "
    SELECT e.stripe_customer_id, p.is_paid, e.status
    FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
    JOIN public.families f ON f.id = e.family_id AND f.deleted_at IS NULL
    WHERE e.family_id = $1";

/// The customer Stripe created for the family, kept for every later checkout (the
/// entitlement row is locked only until the commit that follows at once).
pub const SET_CUSTOMER: &str = "
    UPDATE public.entitlements SET stripe_customer_id = $2 WHERE family_id = $1";

/// The family's Checkout session that is still open (not expired, not known to be
/// paid), if any.
pub const OPEN_SESSION: &str = "
    SELECT stripe_session_id, stripe_price_id, success_url, cancel_url, url
    FROM public.checkout_sessions
    WHERE family_id = $1 AND expires_at > now() AND completed_at IS NULL";

/// The session was paid (Stripe says so; its webhook may come later or never).
pub const COMPLETED: &str = "
    UPDATE public.checkout_sessions SET completed_at = coalesce(completed_at, now())
    WHERE stripe_session_id = $1";

/// The family's new Checkout session, in place of the one before.
pub const SAVE_SESSION: &str = "
    INSERT INTO public.checkout_sessions
      (family_id, stripe_session_id, stripe_price_id, success_url, cancel_url, url, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7))
    ON CONFLICT ON CONSTRAINT checkout_sessions_family_id_key DO UPDATE
    SET stripe_session_id = EXCLUDED.stripe_session_id, completed_at = NULL,
        stripe_price_id = EXCLUDED.stripe_price_id, success_url = EXCLUDED.success_url,
        cancel_url = EXCLUDED.cancel_url, url = EXCLUDED.url, expires_at = EXCLUDED.expires_at";
