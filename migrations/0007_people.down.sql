DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_publication_tables
             WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = 'family_members') THEN
    ALTER PUBLICATION supabase_realtime DROP TABLE public.family_members;
  END IF;
END
$$;

DROP FUNCTION public.purge_family(uuid);
DROP FUNCTION public.lock_membership(uuid, uuid);
DROP FUNCTION public.in_deleted_family(uuid);

CREATE OR REPLACE FUNCTION public.redeem_invite(p_code_hmacs bytea[], p_user_id uuid, p_attempts_key text)
RETURNS TABLE (outcome text, family_id uuid, family_name text, role text)
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_invite public.invites%ROWTYPE;
  v_family_name text;
  v_usable boolean;
  v_role text;
BEGIN
  -- Locked: concurrent redemptions of one code queue here, so the use count is read and
  -- raised by one of them at a time.
  SELECT i.* INTO v_invite FROM public.invites i
  WHERE i.code_hmac = ANY (p_code_hmacs)
  FOR UPDATE;
  SELECT f.name INTO v_family_name FROM public.families f WHERE f.id = v_invite.family_id;
  v_usable := coalesce(v_invite.revoked_at IS NULL AND v_invite.expires_at > now()
                       AND v_invite.use_count < v_invite.max_uses, false);
  SELECT m.role INTO v_role FROM public.family_members m
  WHERE m.family_id = v_invite.family_id AND m.user_id = p_user_id;

  IF v_invite.id IS NULL OR (v_role IS NULL AND NOT v_usable) THEN
    RETURN QUERY SELECT 'invalid'::text, NULL::uuid, NULL::text, NULL::text;
    RETURN;
  END IF;
  IF v_role IS NULL THEN
    -- Joined through another path a moment ago: not an error, and no use consumed.
    INSERT INTO public.family_members (family_id, user_id, role, invite_id)
    VALUES (v_invite.family_id, p_user_id, 'storyteller', v_invite.id)
    ON CONFLICT ON CONSTRAINT family_members_family_user_key DO NOTHING
    RETURNING family_members.role INTO v_role;
    IF v_role IS NOT NULL THEN
      UPDATE public.invites SET use_count = use_count + 1 WHERE id = v_invite.id;
      PERFORM public.rate_limit_refund(p_attempts_key, interval '1 hour');
      RETURN QUERY SELECT 'joined'::text, v_invite.family_id, v_family_name, v_role;
      RETURN;
    END IF;
    v_role := 'storyteller';
  END IF;
  PERFORM public.rate_limit_refund(p_attempts_key, interval '1 hour');
  RETURN QUERY SELECT 'member'::text, v_invite.family_id, v_family_name, v_role;
END
$$;

CREATE OR REPLACE FUNCTION public.user_family_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT m.family_id FROM public.family_members m WHERE m.user_id = (SELECT auth.uid())
$$;

CREATE OR REPLACE FUNCTION public.is_member_of(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()))
$$;

CREATE OR REPLACE FUNCTION public.is_keeper_of(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()) AND m.role = 'keeper')
$$;

DROP TABLE public.family_events;
DROP FUNCTION public.family_events_append_only();
ALTER TABLE public.entitlements DROP COLUMN cancel_at_period_end;
DROP INDEX public.idx_families_trash;
ALTER TABLE public.families
  DROP CONSTRAINT families_purged_from_the_trash,
  DROP CONSTRAINT families_deleted_by_fkey,
  DROP COLUMN purged_at,
  DROP COLUMN purge_started_at,
  DROP COLUMN deleted_by,
  DROP COLUMN deleted_at;
