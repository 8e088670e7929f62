-- Cost that does not grow with the data. Every RLS policy asks these helpers, so their
-- plans are every checked statement's floor.
--
-- Before, each joined family_members to families (to hide deleted families). A join is
-- the planner's to choose: with statistics taken before one account joined 20,000
-- families it became a hash join over two sequential scans, 12-20 ms for every RLS
-- check, whoever asked. Now each helper starts from the caller's own membership rows,
-- by index (user_id for the list, the unique (family_id, user_id) for one family), and
-- asks whether the family is deleted as a correlated scalar subquery on its primary
-- key: PostgreSQL runs that as a SubPlan, one index probe per membership row, and never
-- turns it into a join, whatever the statistics say about one user. A member of a few
-- families pays a few probes; the work follows the caller's memberships, not the
-- number of families. And they are PL/pgSQL: a SECURITY DEFINER SQL function is never
-- inlined and is planned again at every call (about 100 µs, as long as playback's
-- whole statement), while PL/pgSQL keeps each query's plan for the connection's life.
CREATE OR REPLACE FUNCTION public.user_family_ids() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  RETURN QUERY
    SELECT m.family_id FROM public.family_members m
    WHERE m.user_id = (SELECT auth.uid())
      AND (SELECT f.deleted_at IS NULL FROM public.families f WHERE f.id = m.family_id);
END
$$;

CREATE OR REPLACE FUNCTION public.is_member_of(p_family_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  RETURN EXISTS (
    SELECT 1 FROM public.family_members m
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid())
      AND (SELECT f.deleted_at IS NULL FROM public.families f WHERE f.id = m.family_id));
END
$$;

CREATE OR REPLACE FUNCTION public.is_keeper_of(p_family_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  RETURN EXISTS (
    SELECT 1 FROM public.family_members m
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()) AND m.role = 'keeper'
      AND (SELECT f.deleted_at IS NULL FROM public.families f WHERE f.id = m.family_id));
END
$$;

CREATE OR REPLACE FUNCTION public.in_deleted_family(p_family_id uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  RETURN EXISTS (
    SELECT 1 FROM public.family_members m
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid())
      AND (SELECT f.deleted_at IS NOT NULL FROM public.families f WHERE f.id = m.family_id));
END
$$;

-- Statistics that keep up. The accounts in thousands of families are few: a larger
-- sample of family_members.user_id keeps them among the most common values, so the
-- planner knows them. The busy tables are analysed and vacuumed after 2-5% of their
-- rows changed rather than PostgreSQL's 10-20% (a million-family table would otherwise
-- wait for 100,000 changes); the append-only ones are vacuumed after inserts too (their
-- visibility map keeps index-only scans cheap). The rest is the server's (a Supabase
-- project can't set postgresql.conf freely): docs/RUNBOOK.md.
ALTER TABLE public.family_members ALTER COLUMN user_id SET STATISTICS 1000;
ALTER TABLE public.family_members SET (autovacuum_analyze_scale_factor = 0.02,
                                       autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE public.families SET (autovacuum_analyze_scale_factor = 0.02,
                                 autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE public.recordings SET (autovacuum_analyze_scale_factor = 0.02,
                                   autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE public.upload_reservations SET (autovacuum_analyze_scale_factor = 0.02,
                                            autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE public.rate_limits SET (autovacuum_vacuum_scale_factor = 0.01);
ALTER TABLE public.usage_ledger SET (autovacuum_analyze_scale_factor = 0.02,
                                     autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE public.family_events SET (autovacuum_analyze_scale_factor = 0.02,
                                      autovacuum_vacuum_insert_scale_factor = 0.05);
ALTER TABLE public.fixity_checks SET (autovacuum_analyze_scale_factor = 0.02,
                                      autovacuum_vacuum_insert_scale_factor = 0.05);
