CREATE OR REPLACE FUNCTION public.redeem_invite(p_code_hmacs bytea[], p_user_id uuid, p_attempts_key text)
RETURNS TABLE (outcome text, family_id uuid, family_name text, role text)
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_invite public.invites%ROWTYPE;
  v_family_name text;
  v_family_live boolean;
  v_usable boolean;
  v_role text;
BEGIN
  -- Locked: concurrent redemptions of one code queue here, so the use count is read and
  -- raised by one of them at a time.
  SELECT i.* INTO v_invite FROM public.invites i
  WHERE i.code_hmac = ANY (p_code_hmacs)
  FOR UPDATE;
  SELECT f.name, f.deleted_at IS NULL INTO v_family_name, v_family_live
  FROM public.families f WHERE f.id = v_invite.family_id
  FOR SHARE;
  v_usable := coalesce(v_invite.revoked_at IS NULL AND v_invite.expires_at > now()
                       AND v_invite.use_count < v_invite.max_uses, false);
  SELECT m.role INTO v_role FROM public.family_members m
  WHERE m.family_id = v_invite.family_id AND m.user_id = p_user_id;

  IF v_invite.id IS NULL OR NOT coalesce(v_family_live, false) OR (v_role IS NULL AND NOT v_usable) THEN
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
      INSERT INTO public.family_events (family_id, actor_id, subject_id, action, details)
      VALUES (v_invite.family_id, p_user_id, p_user_id, 'member_joined',
              jsonb_build_object('inviteId', v_invite.id, 'role', v_role));
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
DROP FUNCTION public.restorers(uuid);
DROP FUNCTION public.keepers_since(uuid, timestamptz);
ALTER TABLE public.outbox DROP CONSTRAINT outbox_kind_valid;
DELETE FROM public.outbox WHERE kind NOT IN ('archive_ready', 'archive_withdrawn');
ALTER TABLE public.outbox ADD CONSTRAINT outbox_kind_valid CHECK (kind IN ('archive_ready', 'archive_withdrawn'));
DROP INDEX public.idx_families_purge_reminder;
ALTER TABLE public.families DROP COLUMN purge_reminder_sent_at;
DROP INDEX public.idx_family_events_family_action;
DROP INDEX public.idx_invites_created_by;
DROP TABLE public.family_removals;
