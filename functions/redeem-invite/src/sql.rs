//! The statement redeem-invite sends after counting the attempt (the shared rate limit),
//! as the service role.

/// The whole redemption in one call, the same queries whatever the code (so timing
/// doesn't tell whether it exists): `joined`, `member` (already one) or `invalid`.
pub const REDEEM: &str = "
    SELECT outcome, family_id, family_name, role FROM public.redeem_invite($1, $2, $3)";
