-- Back to the helpers of 0007 (a join of family_members and families) and the
-- server's autovacuum defaults.
CREATE OR REPLACE FUNCTION public.user_family_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT m.family_id FROM public.family_members m
  JOIN public.families f ON f.id = m.family_id AND f.deleted_at IS NULL
  WHERE m.user_id = (SELECT auth.uid())
$$;

CREATE OR REPLACE FUNCTION public.is_member_of(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    JOIN public.families f ON f.id = m.family_id AND f.deleted_at IS NULL
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()))
$$;

CREATE OR REPLACE FUNCTION public.is_keeper_of(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    JOIN public.families f ON f.id = m.family_id AND f.deleted_at IS NULL
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()) AND m.role = 'keeper')
$$;

CREATE OR REPLACE FUNCTION public.in_deleted_family(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    JOIN public.families f ON f.id = m.family_id AND f.deleted_at IS NOT NULL
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()))
$$;

ALTER TABLE public.family_members ALTER COLUMN user_id SET STATISTICS -1;
ALTER TABLE public.family_members RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_scale_factor);
ALTER TABLE public.families RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_scale_factor);
ALTER TABLE public.recordings RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_scale_factor);
ALTER TABLE public.upload_reservations RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_scale_factor);
ALTER TABLE public.rate_limits RESET (autovacuum_vacuum_scale_factor);
ALTER TABLE public.usage_ledger RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_insert_scale_factor);
ALTER TABLE public.family_events RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_insert_scale_factor);
ALTER TABLE public.fixity_checks RESET (autovacuum_analyze_scale_factor, autovacuum_vacuum_insert_scale_factor);
