-- Hardening after an attack review: deleted_at is the database's to set, user text
-- holds no control characters, checkouts are serialised per family with at most one
-- open Checkout session each, and redeeming an invite is one call whatever the code.

-- The trash retention (TRASH_RETENTION_DAYS, default 30), as the database knows it: the
-- setting stories.trash_retention_days (scripts/deploy-db.sh sets it per database).
CREATE FUNCTION public.trash_retention() RETURNS interval
LANGUAGE sql STABLE SET search_path = '' AS $$
  SELECT make_interval(days => coalesce(
    nullif(current_setting('stories.trash_retention_days', true), '')::integer, 30))
$$;
COMMENT ON FUNCTION public.trash_retention() IS
  'How long a soft-deleted recording stays restorable (stories.trash_retention_days, default 30).';

-- deleted_at is set by the database, whoever writes it (a client through PostgREST,
-- or a function): NULL -> a value is always now(); a value -> NULL (a restore) only
-- within the trash retention; any other change keeps the old value. So the retention
-- can't be shortened (or a deletion back-dated) from outside.
CREATE FUNCTION public.recordings_deleted_at_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
    NEW.deleted_at := now();
  ELSIF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN
    IF OLD.deleted_at <= now() - public.trash_retention() THEN
      RAISE EXCEPTION 'this recording left the trash and can no longer be restored'
        USING ERRCODE = 'check_violation';
    END IF;
  ELSE
    NEW.deleted_at := OLD.deleted_at;
  END IF;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION public.recordings_deleted_at_guard() IS
  'BEFORE UPDATE on recordings: deleted_at is now() when set, restorable only within the retention, otherwise unchanged.';
CREATE TRIGGER deleted_at_guard BEFORE UPDATE ON public.recordings
  FOR EACH ROW EXECUTE FUNCTION public.recordings_deleted_at_guard();

-- No control characters in user-written text (prompts may span lines). Added NOT VALID,
-- existing rows cleaned, then validated: the migration can't fail on production text.
ALTER TABLE public.families ADD CONSTRAINT families_name_printable
  CHECK (name !~ '[\x01-\x1f\x7f-\x9f]') NOT VALID;
ALTER TABLE public.prompts ADD CONSTRAINT prompts_text_printable
  CHECK (text !~ '[\x01-\x09\x0b-\x1f\x7f-\x9f]') NOT VALID;
ALTER TABLE public.recordings ADD CONSTRAINT recordings_title_printable
  CHECK (title !~ '[\x01-\x1f\x7f-\x9f]') NOT VALID;
ALTER TABLE public.invites ADD CONSTRAINT invites_email_printable
  CHECK (email !~ '[\x01-\x1f\x7f-\x9f]') NOT VALID;
UPDATE public.families SET name = btrim(regexp_replace(name, '[\x01-\x1f\x7f-\x9f]+', ' ', 'g'))
  WHERE name ~ '[\x01-\x1f\x7f-\x9f]';
UPDATE public.prompts SET text = regexp_replace(text, '[\x01-\x09\x0b-\x1f\x7f-\x9f]+', ' ', 'g')
  WHERE text ~ '[\x01-\x09\x0b-\x1f\x7f-\x9f]';
UPDATE public.recordings SET title = regexp_replace(title, '[\x01-\x1f\x7f-\x9f]+', ' ', 'g')
  WHERE title ~ '[\x01-\x1f\x7f-\x9f]';
UPDATE public.invites SET email = NULL WHERE email ~ '[\x01-\x1f\x7f-\x9f]';
ALTER TABLE public.families VALIDATE CONSTRAINT families_name_printable;
ALTER TABLE public.prompts VALIDATE CONSTRAINT prompts_text_printable;
ALTER TABLE public.recordings VALIDATE CONSTRAINT recordings_title_printable;
ALTER TABLE public.invites VALIDATE CONSTRAINT invites_email_printable;

-- The family's open Stripe Checkout session: at most one at a time, so two checkouts
-- can't become two paid subscriptions. Written by create-checkout-session (the service
-- role, under a per-family advisory lock).
CREATE TABLE public.checkout_sessions (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id         uuid NOT NULL,
  stripe_session_id text NOT NULL,
  stripe_price_id   text NOT NULL,
  success_url       text NOT NULL,
  cancel_url        text NOT NULL,
  url               text NOT NULL,
  expires_at        timestamptz NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT checkout_sessions_family_id_key UNIQUE (family_id),
  CONSTRAINT checkout_sessions_stripe_session_id_key UNIQUE (stripe_session_id),
  CONSTRAINT checkout_sessions_family_id_fkey FOREIGN KEY (family_id)
    REFERENCES public.families (id) ON DELETE CASCADE
);
COMMENT ON TABLE public.checkout_sessions IS
  'The latest Stripe Checkout session of each family (reused while open, expired before a new one). Invisible to users.';
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.checkout_sessions
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();
ALTER TABLE public.checkout_sessions ENABLE ROW LEVEL SECURITY;
REVOKE TRUNCATE, REFERENCES, TRIGGER ON public.checkout_sessions FROM anon, authenticated;

-- Redeems an invite code for a user: one call, whatever the code, so that the time an
-- answer takes doesn't tell whether a code exists. Every path runs the same queries:
-- the invite is looked up (and locked) by any of the code's HMACs (the current secret
-- and, during a rotation, the previous one), the user's membership of its family (or of
-- no family) is read, and the outcome decided from both. Returns the outcome
-- ('joined', 'member' or 'invalid') with the family; 'joined' and 'member' give the
-- attempt back to the rate limit.
CREATE FUNCTION public.redeem_invite(p_code_hmacs bytea[], p_user_id uuid, p_attempts_key text)
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
COMMENT ON FUNCTION public.redeem_invite(bytea[], uuid, text) IS
  'Redeems an invite code (by its HMACs) for a user, the same queries whatever the code: joined, member or invalid.';

REVOKE ALL ON FUNCTION public.trash_retention(), public.recordings_deleted_at_guard(),
  public.redeem_invite(bytea[], uuid, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.trash_retention() TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.redeem_invite(bytea[], uuid, text) TO service_role;
