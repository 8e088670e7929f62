//! The statements create-checkout-session sends (after the shared keeper check), in one
//! transaction as the service role.

/// Whether the price maps to a paid plan we sell (in this environment).
pub const PRICE_OFFERED: &str = "
    SELECT 1 FROM public.plan_prices pp JOIN public.plans p ON p.code = pp.plan
    WHERE pp.stripe_price_id = $1 AND p.is_paid";

/// The family's Stripe customer and whether a paid subscription is live, the
/// entitlement row locked: checkouts of one family queue here.
pub const LOCK_ENTITLEMENT: &str = "
    SELECT e.stripe_customer_id,
           p.is_paid AND e.status IN ('active', 'trialing', 'past_due')
    FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
    WHERE e.family_id = $1 FOR UPDATE OF e";

/// The customer Stripe created for the family, kept for every later checkout.
pub const SET_CUSTOMER: &str = "
    UPDATE public.entitlements SET stripe_customer_id = $2 WHERE family_id = $1";
