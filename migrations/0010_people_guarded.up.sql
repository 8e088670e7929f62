-- People, guarded (contract §8): a removal sticks (the removed may rejoin only with a
-- code a current keeper made after the removal), no single keeper can destroy a family
-- unseen (every keeper removal, demotion and deletion is emailed to everyone who is or
-- was a keeper in the last 30 days, and any of them may restore a deleted family), and
-- a deleted family's keepers are reminded a week before its purge.

-- Who was removed from a family (not who left: leaving is a choice, not a ban). Lifted
-- when they rejoin with a code made after it, or restore the family themselves.
CREATE TABLE public.family_removals (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id  uuid NOT NULL,
  user_id    uuid NOT NULL,
  removed_by uuid,
  removed_at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT family_removals_family_user_key UNIQUE (family_id, user_id),
  CONSTRAINT family_removals_family_id_fkey FOREIGN KEY (family_id)
    REFERENCES public.families (id) ON DELETE CASCADE,
  CONSTRAINT family_removals_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES auth.users (id) ON DELETE CASCADE,
  CONSTRAINT family_removals_removed_by_fkey FOREIGN KEY (removed_by)
    REFERENCES auth.users (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.family_removals IS
  'Members a keeper removed: they may rejoin only with a code a current keeper created after the removal. Written by the functions only.';
CREATE INDEX idx_family_removals_user ON public.family_removals (user_id);
CREATE INDEX idx_family_removals_removed_by ON public.family_removals (removed_by);
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.family_removals
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();
ALTER TABLE public.family_removals ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.family_removals FROM anon, authenticated;

-- Revoking the codes someone created (at their removal, demotion or leaving as a
-- keeper) finds them by creator.
CREATE INDEX idx_invites_created_by ON public.invites (family_id, created_by)
  WHERE revoked_at IS NULL;
-- Who was a keeper lately is read from the history's keeper-ending events.
CREATE INDEX idx_family_events_family_action ON public.family_events (family_id, action, created_at);

-- The week-before reminder of a deleted family's purge: once per deletion.
ALTER TABLE public.families ADD COLUMN purge_reminder_sent_at timestamptz DEFAULT NULL;
COMMENT ON COLUMN public.families.purge_reminder_sent_at IS
  'When its keepers of the last 30 days were reminded that its purge is a week away (cleared by a restore and a new deletion).';
CREATE INDEX idx_families_purge_reminder ON public.families (deleted_at)
  WHERE deleted_at IS NOT NULL AND purged_at IS NULL AND purge_reminder_sent_at IS NULL;

ALTER TABLE public.outbox DROP CONSTRAINT outbox_kind_valid;
ALTER TABLE public.outbox ADD CONSTRAINT outbox_kind_valid CHECK (kind IN (
  'archive_ready', 'archive_withdrawn', 'keeper_removed', 'keeper_demoted', 'family_deleted',
  'family_restored', 'purge_reminder'));

-- Everyone who kept the family at some moment since p_since: its keepers now, and
-- those whose keeper role ended since (removed or leaving as a keeper, or demoted), as
-- the history tells.
CREATE FUNCTION public.keepers_since(p_family_id uuid, p_since timestamptz) RETURNS SETOF uuid
LANGUAGE sql STABLE SET search_path = '' AS $$
  SELECT m.user_id FROM public.family_members m
  WHERE m.family_id = p_family_id AND m.role = 'keeper'
  UNION
  SELECT e.subject_id FROM public.family_events e
  WHERE e.family_id = p_family_id AND e.created_at >= p_since AND e.subject_id IS NOT NULL
    AND ((e.action IN ('member_removed', 'member_left') AND e.details ->> 'role' = 'keeper')
         OR (e.action = 'role_changed' AND e.details ->> 'from' = 'keeper'))
$$;
COMMENT ON FUNCTION public.keepers_since(uuid, timestamptz) IS
  'Who kept the family at some moment since p_since: its keepers now, and those whose keeper role ended since.';

-- Who may restore a deleted family: whoever kept it in the 30 days before its deletion
-- (removed or demoted since, or not), and its founder for as long as the retention
-- allows, however long ago they were removed. Its membership does not change while it
-- is deleted, so its keepers now are its keepers at the deletion.
CREATE FUNCTION public.restorers(p_family_id uuid) RETURNS SETOF uuid
LANGUAGE sql STABLE SET search_path = '' AS $$
  SELECT f.created_by FROM public.families f
  WHERE f.id = p_family_id AND f.deleted_at IS NOT NULL AND f.created_by IS NOT NULL
  UNION
  SELECT k.k FROM public.families f,
    LATERAL public.keepers_since(f.id, f.deleted_at - interval '30 days') AS k (k)
  WHERE f.id = p_family_id AND f.deleted_at IS NOT NULL
$$;
COMMENT ON FUNCTION public.restorers(uuid) IS
  'Who may restore the deleted family: its keepers of the 30 days before its deletion, and its founder.';

REVOKE ALL ON FUNCTION public.keepers_since(uuid, timestamptz), public.restorers(uuid)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.keepers_since(uuid, timestamptz), public.restorers(uuid)
  TO service_role;

-- Redeeming an invite: as before, plus the removal lookup, which runs on every
-- redemption whatever the code (so it adds no timing difference): someone a keeper
-- removed may rejoin only with a code made after the removal by someone who keeps the
-- family now; any other code answers as an unusable one. A rejoin lifts the removal.
CREATE OR REPLACE FUNCTION public.redeem_invite(p_code_hmacs bytea[], p_user_id uuid, p_attempts_key text)
RETURNS TABLE (outcome text, family_id uuid, family_name text, role text)
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_invite public.invites%ROWTYPE;
  v_family_name text;
  v_family_live boolean;
  v_usable boolean;
  v_role text;
  v_removed_at timestamptz;
  v_by_keeper boolean;
BEGIN
  -- The family's row share-locked before the invite's: the changes that revoke invites
  -- (a removal, a demotion, a deletion) lock the family first too, so a redemption and
  -- such a change queue in one order instead of deadlocking, and the later sees the
  -- earlier.
  SELECT f.name, f.deleted_at IS NULL INTO v_family_name, v_family_live
  FROM public.families f
  WHERE f.id = (SELECT i.family_id FROM public.invites i WHERE i.code_hmac = ANY (p_code_hmacs))
  FOR SHARE;
  -- Locked: concurrent redemptions of one code queue here, so the use count is read and
  -- raised by one of them at a time.
  SELECT i.* INTO v_invite FROM public.invites i
  WHERE i.code_hmac = ANY (p_code_hmacs)
  FOR UPDATE;
  SELECT m.role INTO v_role FROM public.family_members m
  WHERE m.family_id = v_invite.family_id AND m.user_id = p_user_id;
  SELECT r.removed_at INTO v_removed_at FROM public.family_removals r
  WHERE r.family_id = v_invite.family_id AND r.user_id = p_user_id;
  SELECT EXISTS (SELECT 1 FROM public.family_members k
                 WHERE k.family_id = v_invite.family_id AND k.user_id = v_invite.created_by
                   AND k.role = 'keeper')
  INTO v_by_keeper;
  v_usable := coalesce(v_invite.revoked_at IS NULL AND v_invite.expires_at > now()
                       AND v_invite.use_count < v_invite.max_uses
                       AND (v_removed_at IS NULL
                            OR (v_invite.created_at > v_removed_at AND v_by_keeper)), false);

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
      DELETE FROM public.family_removals r
      WHERE r.family_id = v_invite.family_id AND r.user_id = p_user_id;
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
