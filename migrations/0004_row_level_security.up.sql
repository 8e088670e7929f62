-- Row Level Security: the contract's matrix for `authenticated`; `anon` gets nothing
-- anywhere; no user DELETE anywhere. Supabase's default privileges grant every table
-- to the API roles, so RLS does the row filtering and column grants narrow UPDATE to
-- the columns the matrix allows. Policies use (select auth.uid()) so it runs once.

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['plans', 'plan_prices', 'families', 'family_members', 'default_prompts', 'prompts',
    'recordings', 'invites', 'entitlements', 'usage_ledger', 'stripe_events', 'upload_reservations',
    'rate_limits'] LOOP
    EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', t);
    -- TRUNCATE, REFERENCES and TRIGGER bypass or sidestep RLS: no API role needs them.
    EXECUTE format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON public.%I FROM anon, authenticated', t);
  END LOOP;
END
$$;
REVOKE TRUNCATE ON public.usage_ledger FROM service_role;

-- families: members read; keepers rename (name only); created by create-family.
CREATE POLICY families_select_members ON public.families FOR SELECT TO authenticated
  USING (id IN (SELECT public.user_family_ids()));
CREATE POLICY families_update_keepers ON public.families FOR UPDATE TO authenticated
  USING (public.is_keeper_of(id)) WITH CHECK (public.is_keeper_of(id));
REVOKE UPDATE ON public.families FROM anon, authenticated;
GRANT UPDATE (name) ON public.families TO authenticated;

-- family_members: members see the members of their families; written by the service role.
CREATE POLICY family_members_select_same_family ON public.family_members FOR SELECT TO authenticated
  USING (family_id IN (SELECT public.user_family_ids()));

-- prompts: members read and add (as themselves); keepers or the creator edit and soft delete.
CREATE POLICY prompts_select_members ON public.prompts FOR SELECT TO authenticated
  USING (family_id IN (SELECT public.user_family_ids()));
CREATE POLICY prompts_insert_members ON public.prompts FOR INSERT TO authenticated
  WITH CHECK (family_id IN (SELECT public.user_family_ids()) AND created_by = (SELECT auth.uid()));
CREATE POLICY prompts_update_keeper_or_creator ON public.prompts FOR UPDATE TO authenticated
  USING (public.is_keeper_of(family_id) OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id)))
  WITH CHECK (public.is_keeper_of(family_id) OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id)));
REVOKE INSERT, UPDATE ON public.prompts FROM anon, authenticated;
GRANT INSERT (family_id, text, position, created_by) ON public.prompts TO authenticated;
GRANT UPDATE (text, position, deleted_at) ON public.prompts TO authenticated;

-- recordings: members read, soft-deleted rows included (the app's trash view filters);
-- the only change a user may make is deleted_at from NULL to a time: keepers on any
-- recording of the family, storytellers on their own. No un-delete.
CREATE POLICY recordings_select_members ON public.recordings FOR SELECT TO authenticated
  USING (family_id IN (SELECT public.user_family_ids()));
CREATE POLICY recordings_soft_delete ON public.recordings FOR UPDATE TO authenticated
  USING (deleted_at IS NULL AND (public.is_keeper_of(family_id)
         OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id))))
  WITH CHECK (deleted_at IS NOT NULL AND (public.is_keeper_of(family_id)
         OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id))));
REVOKE UPDATE ON public.recordings FROM anon, authenticated;
GRANT UPDATE (deleted_at) ON public.recordings TO authenticated;

-- invites: keepers read and revoke (revoked_at only, once).
CREATE POLICY invites_select_keepers ON public.invites FOR SELECT TO authenticated
  USING (public.is_keeper_of(family_id));
CREATE POLICY invites_revoke_keepers ON public.invites FOR UPDATE TO authenticated
  USING (revoked_at IS NULL AND public.is_keeper_of(family_id))
  WITH CHECK (revoked_at IS NOT NULL AND public.is_keeper_of(family_id));
REVOKE UPDATE ON public.invites FROM anon, authenticated;
GRANT UPDATE (revoked_at) ON public.invites TO authenticated;

-- entitlements: members read.
CREATE POLICY entitlements_select_members ON public.entitlements FOR SELECT TO authenticated
  USING (family_id IN (SELECT public.user_family_ids()));

-- usage_ledger: keepers read; written only by update_storage_quota().
CREATE POLICY usage_ledger_select_keepers ON public.usage_ledger FOR SELECT TO authenticated
  USING (public.is_keeper_of(family_id));

-- plans and prices: everyone signed in reads.
CREATE POLICY plans_select_signed_in ON public.plans FOR SELECT TO authenticated USING (true);
CREATE POLICY plan_prices_select_signed_in ON public.plan_prices FOR SELECT TO authenticated USING (true);

-- stripe_events, upload_reservations, rate_limits, default_prompts: no policies at all.

-- Realtime, where Supabase has it.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE public.recordings, public.prompts;
  END IF;
END
$$;
