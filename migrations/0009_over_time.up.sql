-- Recordings and archives over time, mended after a real client's check (contract §3,
-- §7-9): a released reservation re-opens only at a finalize and only if it fits, a
-- departure decides what becomes of the departed member's uploads, the sweep claims
-- its rows, archives are shared by whoever asked while they ran, a failed archive
-- keeps its reason, finished Checkout sessions are known, family_events is
-- append-only for the service role too, and display names are capped.

-- A departure's mark on each of the departed member's open reservations: 'unknown'
-- (marked in the departure's own transaction, before the bucket is asked), then
-- 'arrived' (the object was there before the departure: it is finalized, or kept open
-- for the sweep) or 'revoked' (no object, or one that came after: closed for good, an
-- object that comes later is deleted). The sweep settles 'unknown' ones by the
-- object's LastModified.
ALTER TABLE public.upload_reservations
  ADD COLUMN departure text DEFAULT NULL,
  ADD COLUMN departed_at timestamptz DEFAULT NULL,
  ADD COLUMN sweep_claimed_at timestamptz DEFAULT NULL,
  ADD CONSTRAINT upload_reservations_departure_valid
    CHECK (departure IN ('unknown', 'arrived', 'revoked')),
  ADD CONSTRAINT upload_reservations_departure_dated
    CHECK ((departure IS NULL) = (departed_at IS NULL)),
  ADD CONSTRAINT upload_reservations_revoked_closed
    CHECK (departure IS DISTINCT FROM 'revoked' OR (closed_at IS NOT NULL AND finalized_at IS NULL));
COMMENT ON COLUMN public.upload_reservations.departure IS
  'What its creator''s departure (removal or leaving) made of it: unknown (not yet settled), arrived (its object came before), revoked (closed for good).';
COMMENT ON COLUMN public.upload_reservations.departed_at IS
  'When its creator left the family: an object that arrived later never becomes a recording.';
COMMENT ON COLUMN public.upload_reservations.sweep_claimed_at IS
  'When a maintenance run claimed it for the sweep (another run skips it; a claim older than 10 minutes is taken over).';
COMMENT ON COLUMN public.upload_reservations.closed_at IS
  'When it stopped holding quota: released by the sweep (object missing past the expiry and the grace; only a finalize may re-open it, if it fits) or revoked by a departure.';
CREATE INDEX idx_upload_reservations_member ON public.upload_reservations (family_id, user_id)
  WHERE finalized_at IS NULL AND closed_at IS NULL;

-- Finalizing: a released reservation (closed by the sweep, its object late) re-opens
-- only here, at a finalize, and only if the recording fits beside the used bytes and
-- every open reservation: those were granted in the belief that this one was gone, and
-- a URL granted within the quota is never refused for quota at its finalize. A revoked
-- one never finalizes. A finalize that finds the recording saved already (by the
-- sweep) gives it the title the user sent, if it has none.
CREATE OR REPLACE FUNCTION public.finalize_recording_tx(
  p_id uuid, p_family_id uuid, p_created_by uuid, p_prompt_id uuid, p_title text,
  p_duration_seconds double precision, p_content_type text,
  p_audio_size_bytes bigint, p_waveform_size_bytes bigint
) RETURNS boolean
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_size     bigint := p_audio_size_bytes + coalesce(p_waveform_size_bytes, 0);
  v_closed   boolean;
  v_revoked  boolean;
  v_used     bigint;
  v_quota    bigint;
  v_reserved bigint;
BEGIN
  -- Taken before the existence check, so concurrent finalizes of one recording queue
  -- here and each later one sees the row the first inserted; and before the open
  -- reservations are summed, which every reservation is made under.
  PERFORM 1 FROM public.entitlements WHERE family_id = p_family_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'family % has no entitlement', p_family_id USING ERRCODE = 'no_data_found';
  END IF;
  IF EXISTS (SELECT 1 FROM public.recordings WHERE id = p_id) THEN
    UPDATE public.recordings SET title = p_title
    WHERE id = p_id AND family_id = p_family_id AND title IS NULL AND p_title IS NOT NULL
      AND purged_at IS NULL;
    RETURN false;
  END IF;
  SELECT r.closed_at IS NOT NULL, r.departure = 'revoked' INTO v_closed, v_revoked
  FROM public.upload_reservations r WHERE r.id = p_id
  FOR UPDATE;
  IF coalesce(v_revoked, false) THEN
    RAISE EXCEPTION 'reservation % was revoked by its creator''s departure', p_id
      USING ERRCODE = 'no_data_found';
  END IF;
  IF coalesce(v_closed, false) THEN
    SELECT e.storage_used_bytes, p.storage_quota_bytes INTO v_used, v_quota
    FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
    WHERE e.family_id = p_family_id;
    SELECT coalesce(sum(r.audio_size_bytes + coalesce(r.waveform_size_bytes, 0)), 0)::bigint
    INTO v_reserved
    FROM public.upload_reservations r
    WHERE r.family_id = p_family_id AND r.finalized_at IS NULL AND r.closed_at IS NULL
      AND r.id <> p_id;
    IF v_used + v_reserved + v_size > v_quota THEN
      RAISE EXCEPTION 'storage quota exceeded'
        USING ERRCODE = 'P0001', HINT = 'released',
              DETAIL = format('used %s + reserved %s + %s > quota %s', v_used, v_reserved, v_size, v_quota);
    END IF;
  END IF;
  PERFORM public.update_storage_quota(p_family_id, v_size, 'upload', p_id, 'recording finalized');
  INSERT INTO public.recordings (id, family_id, created_by, prompt_id, title, duration_seconds, content_type,
    audio_size_bytes, waveform_size_bytes)
  VALUES (p_id, p_family_id, p_created_by, p_prompt_id, p_title, p_duration_seconds, p_content_type,
    p_audio_size_bytes, p_waveform_size_bytes);
  UPDATE public.upload_reservations SET finalized_at = now(), closed_at = NULL, sweep_claimed_at = NULL
  WHERE id = p_id AND finalized_at IS NULL;
  RETURN true;
END
$$;

-- Archives are shared: whoever asks while a job is in flight joins it, can follow it
-- and is emailed when it is done. The first requester stays in archives.requested_by
-- (what the per-storyteller allowance counts).
CREATE TABLE public.archive_requesters (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  archive_id uuid NOT NULL,
  family_id  uuid NOT NULL,
  user_id    uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT archive_requesters_archive_user_key UNIQUE (archive_id, user_id),
  CONSTRAINT archive_requesters_archive_id_fkey FOREIGN KEY (archive_id)
    REFERENCES public.archives (id) ON DELETE CASCADE,
  CONSTRAINT archive_requesters_family_id_fkey FOREIGN KEY (family_id)
    REFERENCES public.families (id) ON DELETE RESTRICT,
  CONSTRAINT archive_requesters_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES auth.users (id) ON DELETE CASCADE
);
COMMENT ON TABLE public.archive_requesters IS
  'Who asked for an archive (the first requester, and whoever asked while it was in flight): they may follow it, and each is emailed when it is done.';
CREATE INDEX idx_archive_requesters_user ON public.archive_requesters (user_id, family_id);
CREATE INDEX idx_archive_requesters_family ON public.archive_requesters (family_id);
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.archive_requesters
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();
INSERT INTO public.archive_requesters (archive_id, family_id, user_id)
SELECT id, family_id, requested_by FROM public.archives WHERE requested_by IS NOT NULL;

-- Whether a job counts toward the day's allowances: a failed one doesn't, nor one
-- withdrawn because a requester was removed (the others may ask again that day).
ALTER TABLE public.archives
  ADD COLUMN counted boolean NOT NULL DEFAULT true,
  ADD COLUMN multipart_key text DEFAULT NULL,
  ADD COLUMN multipart_upload_id text DEFAULT NULL;
COMMENT ON COLUMN public.archives.counted IS
  'Whether it counts toward the family''s and its requester''s archives of the day (false once failed or withdrawn).';
COMMENT ON COLUMN public.archives.multipart_upload_id IS
  'The multipart upload of the part being written (at multipart_key), so a failure aborts it even when its worker died.';

ALTER TABLE public.archive_requesters ENABLE ROW LEVEL SECURITY;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.archive_requesters
  FROM anon, authenticated;
CREATE POLICY archive_requesters_select_self_or_keepers ON public.archive_requesters
  FOR SELECT TO authenticated
  USING ((user_id = (SELECT auth.uid()) AND public.is_member_of(family_id))
         OR public.is_keeper_of(family_id));
DROP POLICY archives_select_requester_or_keepers ON public.archives;
CREATE POLICY archives_select_requesters_or_keepers ON public.archives FOR SELECT TO authenticated
  USING ((public.is_member_of(family_id)
          AND EXISTS (SELECT 1 FROM public.archive_requesters r
                      WHERE r.archive_id = archives.id AND r.user_id = (SELECT auth.uid())))
         OR public.is_keeper_of(family_id));

-- Emails that follow a change, written in the change's own transaction and sent after
-- it commits (by the function that made it, at once, and by the maintenance job for
-- whatever that missed), retried a few times. The recipient's address is read when it
-- is sent, from their account: it is stored nowhere else.
CREATE TABLE public.outbox (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id       uuid NOT NULL,
  user_id         uuid NOT NULL,
  kind            text NOT NULL,
  details         jsonb NOT NULL DEFAULT '{}',
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  claimed_at      timestamptz,
  sent_at         timestamptz,
  failed_at       timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT outbox_kind_valid CHECK (kind IN ('archive_ready', 'archive_withdrawn')),
  CONSTRAINT outbox_attempts_valid CHECK (attempts >= 0),
  CONSTRAINT outbox_family_id_fkey FOREIGN KEY (family_id)
    REFERENCES public.families (id) ON DELETE CASCADE,
  CONSTRAINT outbox_user_id_fkey FOREIGN KEY (user_id)
    REFERENCES auth.users (id) ON DELETE CASCADE
);
COMMENT ON TABLE public.outbox IS
  'Emails owed after a committed change (to a user, about a family), sent and retried by the functions; the address is read at sending time.';
CREATE INDEX idx_outbox_due ON public.outbox (next_attempt_at)
  WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX idx_outbox_user ON public.outbox (user_id);
CREATE INDEX idx_outbox_family ON public.outbox (family_id);
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.outbox
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();
ALTER TABLE public.outbox ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.outbox FROM anon, authenticated;

-- A display name as everything shows it (archive items, manifest, index.html, every
-- email): control and format characters out (but the zero-width joiner and non-joiner
-- that Persian words and emoji need), at most 80 characters.
CREATE OR REPLACE FUNCTION public.account_of(p_user_id uuid) RETURNS TABLE (name text, email text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT nullif(btrim(left(btrim(regexp_replace(
           coalesce(nullif(btrim(u.raw_user_meta_data ->> 'full_name'), ''),
                    nullif(btrim(u.raw_user_meta_data ->> 'name'), '')),
           '[\x01-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]',
           '', 'g')), 80)), ''),
         u.email
  FROM auth.users u WHERE u.id = p_user_id
$$;

-- A Checkout session paid for (checkout.session.completed): no longer open, so nothing
-- tries to expire it, and a later checkout is refused only while the subscription is
-- live.
ALTER TABLE public.checkout_sessions ADD COLUMN completed_at timestamptz DEFAULT NULL;
COMMENT ON COLUMN public.checkout_sessions.completed_at IS
  'When Stripe reported it paid (checkout.session.completed): it is no longer open.';

-- family_events is append-only for the service role too: only the foreign keys' SET
-- NULL (an erased account, run as the table's owner) changes a row.
REVOKE UPDATE, DELETE ON public.family_events FROM service_role;
