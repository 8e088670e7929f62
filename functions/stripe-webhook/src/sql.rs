//! The statements stripe-webhook sends, in one transaction as the service role.

/// The event id recorded; nothing returned when it was already (a repeat delivery).
pub const RECORD_EVENT: &str = "
    INSERT INTO public.stripe_events (stripe_event_id, event_type, livemode, stripe_created_at)
    VALUES ($1, $2, $3, to_timestamp($4))
    ON CONFLICT ON CONSTRAINT stripe_events_stripe_event_id_key DO NOTHING
    RETURNING id";

/// The family of a customer (else of the subscription's metadata), its entitlement row
/// locked: every change of a family's entitlement is serialised on it.
pub const LOCK_ENTITLEMENT_OF_CUSTOMER: &str = "
    SELECT e.family_id, e.plan, e.status, e.stripe_subscription_id,
           EXISTS (SELECT 1 FROM public.families f
                   WHERE f.id = e.family_id AND f.purged_at IS NOT NULL)
    FROM public.entitlements e
    WHERE e.stripe_customer_id = $1 OR (e.stripe_customer_id IS NULL AND e.family_id = $2)
    ORDER BY e.stripe_customer_id IS NULL LIMIT 1
    FOR UPDATE OF e";

/// A Checkout session paid: it is no longer open (nothing expires it, and a later
/// checkout is refused only while the subscription is live).
pub const SESSION_COMPLETED: &str = "
    UPDATE public.checkout_sessions SET completed_at = coalesce(completed_at, now())
    WHERE stripe_session_id = $1";

/// The plan a Stripe price stands for.
pub const PLAN_OF_PRICE: &str = "
    SELECT plan FROM public.plan_prices WHERE stripe_price_id = $1";

/// The entitlement as Stripe holds the subscription now.
pub const APPLY_SUBSCRIPTION: &str = "
    UPDATE public.entitlements
    SET plan = $2, status = $3, stripe_subscription_id = $4,
        stripe_customer_id = coalesce(stripe_customer_id, $5),
        current_period_end = to_timestamp($6), cancel_at_period_end = $7
    WHERE family_id = $1";

/// The family's first keeper: the distinct id of its server-side analytics.
pub const FIRST_KEEPER: &str = "
    SELECT user_id FROM public.family_members WHERE family_id = $1 AND role = 'keeper'
    ORDER BY joined_at LIMIT 1";
