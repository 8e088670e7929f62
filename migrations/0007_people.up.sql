-- People and families (contract §8): members can be removed, leave and change roles, a
-- family can be deleted (into the trash with its recordings) and restored, and every
-- such change is appended to family_events.
--
-- Locking, everywhere: a family's member rows are locked first (all of them, FOR UPDATE,
-- in user-id order, by whoever changes who belongs; the caller's one FOR SHARE by
-- whoever writes on a member's behalf), and only then is the family row read or
-- locked. One order, so two changes at once queue instead of deadlocking, and a write
-- that waited sees the change it waited for.

ALTER TABLE public.families
  ADD COLUMN deleted_at timestamptz DEFAULT NULL,
  ADD COLUMN deleted_by uuid DEFAULT NULL,
  ADD COLUMN purge_started_at timestamptz DEFAULT NULL,
  ADD COLUMN purged_at timestamptz DEFAULT NULL,
  ADD CONSTRAINT families_deleted_by_fkey FOREIGN KEY (deleted_by)
    REFERENCES auth.users (id) ON DELETE SET NULL,
  ADD CONSTRAINT families_purged_from_the_trash
    CHECK (purged_at IS NULL OR (deleted_at IS NOT NULL AND purge_started_at IS NOT NULL));
COMMENT ON COLUMN public.families.deleted_at IS
  'When a keeper deleted it (delete-family): invisible to everyone since, restorable within the trash retention.';
COMMENT ON COLUMN public.families.purged_at IS
  'When the maintenance job purged it: objects, recordings, members, prompts and invites gone, the row a tombstone.';
CREATE INDEX idx_families_trash ON public.families (deleted_at)
  WHERE deleted_at IS NOT NULL AND purged_at IS NULL;

-- Whether the followed subscription ends at its period's end (a keeper cancelled it in
-- the portal): such a family may be deleted.
ALTER TABLE public.entitlements
  ADD COLUMN cancel_at_period_end boolean NOT NULL DEFAULT false;

-- Who changed what in a family, for its keepers to read.
CREATE TABLE public.family_events (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id  uuid NOT NULL,
  actor_id   uuid,
  subject_id uuid,
  action     text NOT NULL,
  details    jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT family_events_action_valid CHECK (action IN ('member_joined', 'member_removed',
    'member_left', 'role_changed', 'family_deleted', 'family_restored', 'family_purged')),
  CONSTRAINT family_events_family_id_fkey FOREIGN KEY (family_id)
    REFERENCES public.families (id) ON DELETE RESTRICT,
  CONSTRAINT family_events_actor_id_fkey FOREIGN KEY (actor_id)
    REFERENCES auth.users (id) ON DELETE SET NULL,
  CONSTRAINT family_events_subject_id_fkey FOREIGN KEY (subject_id)
    REFERENCES auth.users (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.family_events IS
  'Append-only history of who joined, left, was removed or changed role, and of the family''s deletion and restore. Keepers read it; only the functions write it. No updated_at: rows never change (but an erased account''s id becomes NULL).';
COMMENT ON COLUMN public.family_events.actor_id IS 'Who made the change (NULL: the system, or an erased account).';
COMMENT ON COLUMN public.family_events.subject_id IS 'Whom it was about, when a person (NULL otherwise).';
CREATE INDEX idx_family_events_family ON public.family_events (family_id, created_at DESC);
CREATE INDEX idx_family_events_actor ON public.family_events (actor_id);
CREATE INDEX idx_family_events_subject ON public.family_events (subject_id);

-- Append-only, for every role; the one change allowed is an erased account's id
-- becoming NULL (the foreign keys' ON DELETE SET NULL).
CREATE FUNCTION public.family_events_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  IF TG_OP = 'UPDATE'
     AND NEW.id = OLD.id AND NEW.family_id = OLD.family_id AND NEW.action = OLD.action
     AND NEW.details = OLD.details AND NEW.created_at = OLD.created_at
     AND (NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id OR NEW.actor_id IS NULL)
     AND (NEW.subject_id IS NOT DISTINCT FROM OLD.subject_id OR NEW.subject_id IS NULL) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'family_events is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
COMMENT ON FUNCTION public.family_events_append_only() IS
  'Refuses UPDATE, DELETE and TRUNCATE of family_events, but for an erased account''s id set to NULL.';
CREATE TRIGGER family_events_append_only BEFORE UPDATE OR DELETE ON public.family_events
  FOR EACH ROW EXECUTE FUNCTION public.family_events_append_only();
CREATE TRIGGER family_events_no_truncate BEFORE TRUNCATE ON public.family_events
  FOR EACH STATEMENT EXECUTE FUNCTION public.family_events_append_only();

ALTER TABLE public.family_events ENABLE ROW LEVEL SECURITY;
REVOKE TRUNCATE, REFERENCES, TRIGGER ON public.family_events FROM anon, authenticated;
REVOKE INSERT, UPDATE, DELETE ON public.family_events FROM anon, authenticated;
CREATE POLICY family_events_select_keepers ON public.family_events FOR SELECT TO authenticated
  USING (public.is_keeper_of(family_id));

-- A deleted family is invisible to everyone: the RLS helpers every policy asks (and so
-- every table's policies) know only the families that are not deleted.
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

-- Whether the caller belongs to the family and it is deleted: what lets a function
-- answer 404 (the family is gone) rather than 403 (not yours) to its own members.
CREATE FUNCTION public.in_deleted_family(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    JOIN public.families f ON f.id = m.family_id AND f.deleted_at IS NOT NULL
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()))
$$;
COMMENT ON FUNCTION public.in_deleted_family(uuid) IS
  'Whether the calling user belongs to the family and it is deleted (a function''s 404 rather than 403).';
REVOKE ALL ON FUNCTION public.in_deleted_family(uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.in_deleted_family(uuid) TO authenticated, service_role;

-- A member's standing, for a write on their behalf (a reservation, a recording): their
-- membership row share-locked first (a removal waits for the write, or the write sees
-- the removal), then the family read afresh (VOLATILE: a statement of its own, which
-- sees a deletion committed while the lock was awaited). Returns the role, 'deleted',
-- or NULL for a non-member.
CREATE FUNCTION public.lock_membership(p_family_id uuid, p_user_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  v_role text;
BEGIN
  SELECT m.role INTO v_role FROM public.family_members m
  WHERE m.family_id = p_family_id AND m.user_id = p_user_id
  FOR SHARE;
  IF v_role IS NULL THEN
    RETURN NULL;
  END IF;
  IF EXISTS (SELECT 1 FROM public.families f WHERE f.id = p_family_id AND f.deleted_at IS NOT NULL) THEN
    RETURN 'deleted';
  END IF;
  RETURN v_role;
END
$$;
COMMENT ON FUNCTION public.lock_membership(uuid, uuid) IS
  'A member''s role, their row share-locked for the rest of the transaction; ''deleted'' for a deleted family; NULL for a non-member.';
REVOKE ALL ON FUNCTION public.lock_membership(uuid, uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.lock_membership(uuid, uuid) TO service_role;

-- Redeeming an invite: a deleted family's codes are invalid (its row share-locked, so a
-- deletion and a redemption queue), and a join is recorded in family_events. The same
-- queries run whatever the code, as before.
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

-- Realtime: an open app notices that it lost (or gained) access.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE public.family_members;
  END IF;
END
$$;

-- Purges a deleted family after its recordings were purged and its objects deleted (the
-- maintenance job, which claimed it through purge_started_at first): its members,
-- prompts, invites, reservations and Checkout session go, recording titles and the
-- family's name are scrubbed, and the row stays as a tombstone (the ledger and Stripe's
-- references need it). False, and nothing done, while a recording is left.
CREATE FUNCTION public.purge_family(p_family_id uuid) RETURNS boolean
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  PERFORM 1 FROM public.family_members WHERE family_id = p_family_id ORDER BY user_id FOR UPDATE;
  PERFORM 1 FROM public.families
  WHERE id = p_family_id AND purge_started_at IS NOT NULL AND purged_at IS NULL
  FOR UPDATE;
  IF NOT FOUND OR EXISTS (SELECT 1 FROM public.recordings
                          WHERE family_id = p_family_id AND purged_at IS NULL) THEN
    RETURN false;
  END IF;
  DELETE FROM public.family_members WHERE family_id = p_family_id;
  DELETE FROM public.invites WHERE family_id = p_family_id;
  DELETE FROM public.upload_reservations WHERE family_id = p_family_id;
  DELETE FROM public.checkout_sessions WHERE family_id = p_family_id;
  DELETE FROM public.prompts WHERE family_id = p_family_id;
  UPDATE public.recordings SET title = NULL WHERE family_id = p_family_id AND title IS NOT NULL;
  UPDATE public.families SET name = 'Deleted family', purged_at = now() WHERE id = p_family_id;
  INSERT INTO public.family_events (family_id, action) VALUES (p_family_id, 'family_purged');
  RETURN true;
END
$$;
COMMENT ON FUNCTION public.purge_family(uuid) IS
  'Empties a claimed deleted family whose recordings are purged, leaving a tombstone with its name scrubbed.';
REVOKE ALL ON FUNCTION public.purge_family(uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.purge_family(uuid) TO service_role;
