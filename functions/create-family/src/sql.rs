//! The statements create-family sends, in order, in one transaction as the service role.

/// A new family, named by the caller in their language.
pub const INSERT_FAMILY: &str = "
    INSERT INTO public.families (name, language, created_by) VALUES ($1, $2, $3)
    RETURNING id, name, created_at";

/// The caller, its first keeper.
pub const INSERT_KEEPER: &str = "
    INSERT INTO public.family_members (family_id, user_id, role) VALUES ($1, $2, 'keeper')";

/// The default prompts of its language (data in the database, not code).
pub const INSERT_PROMPTS: &str = "
    INSERT INTO public.prompts (family_id, text, position, is_default)
    SELECT $1, d.text, d.position, true FROM public.default_prompts d WHERE d.language = $2";

/// A free entitlement, returned with its plan's limits.
pub const INSERT_ENTITLEMENT: &str = "
    WITH e AS (
      INSERT INTO public.entitlements (family_id, plan, status) VALUES ($1, 'free', 'active')
      RETURNING plan, status, storage_used_bytes)
    SELECT e.plan, e.status, p.storage_quota_bytes, e.storage_used_bytes, p.max_recording_seconds
    FROM e JOIN public.plans p ON p.code = e.plan";
