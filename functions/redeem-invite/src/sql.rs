//! The statements redeem-invite sends after counting the attempt (the shared rate
//! limit), in one transaction as the service role.

/// The invite of a code, locked: concurrent redemptions of one code queue here, so the
/// use count is read and raised by one of them at a time.
pub const LOCK_INVITE: &str = "
    SELECT i.id, i.family_id, f.name,
           i.revoked_at IS NULL AND i.expires_at > now() AND i.use_count < i.max_uses
    FROM public.invites i JOIN public.families f ON f.id = i.family_id
    WHERE i.code_hmac = $1
    FOR UPDATE OF i";

/// The caller's role in the invite's family, if they already belong to it.
pub const MEMBER_ROLE: &str = "
    SELECT role FROM public.family_members WHERE family_id = $1 AND user_id = $2";

/// The caller, a storyteller; nothing when they joined through another path a moment ago.
pub const INSERT_STORYTELLER: &str = "
    INSERT INTO public.family_members (family_id, user_id, role, invite_id)
    VALUES ($1, $2, 'storyteller', $3)
    ON CONFLICT ON CONSTRAINT family_members_family_user_key DO NOTHING
    RETURNING role";

/// Gives back the attempt of a caller who got in (or already was).
pub const REFUND_ATTEMPT: &str = "SELECT public.rate_limit_refund($1, interval '1 hour')";

/// One use of the invite consumed.
pub const USE_INVITE: &str = "UPDATE public.invites SET use_count = use_count + 1 WHERE id = $1";
