-- Preservation (contract §10): every recording's bytes declared at ingest (SHA-256),
-- kept in two places, re-hashed at fixed intervals with every check logged, repaired
-- from a good copy, and deleted everywhere by the purge.

-- The SHA-256 an upload declared (standard base64 with padding, as
-- x-amz-checksum-sha256 carries it): R2 refuses other bytes, finalize compares.
-- Reservations made before this migration have none.
ALTER TABLE public.upload_reservations
  ADD COLUMN audio_sha256 text DEFAULT NULL,
  ADD CONSTRAINT upload_reservations_audio_sha256_format
    CHECK (audio_sha256 ~ '^[A-Za-z0-9+/]{43}=$');
COMMENT ON COLUMN public.upload_reservations.audio_sha256 IS
  'The SHA-256 the app declared for the audio (base64), signed into the PUT URL.';

ALTER TABLE public.recordings
  ADD COLUMN audio_sha256 text DEFAULT NULL,
  ADD COLUMN waveform_sha256 text DEFAULT NULL,
  ADD COLUMN damaged_at timestamptz DEFAULT NULL,
  ADD CONSTRAINT recordings_audio_sha256_format CHECK (audio_sha256 ~ '^[A-Za-z0-9+/]{43}=$'),
  ADD CONSTRAINT recordings_waveform_sha256_format CHECK (waveform_sha256 ~ '^[A-Za-z0-9+/]{43}=$');
COMMENT ON COLUMN public.recordings.audio_sha256 IS
  'The audio''s SHA-256 (base64): declared at upload and checked by the store, or, for recordings made before checksums, the first audit''s hash. Every copy is compared with it.';
COMMENT ON COLUMN public.recordings.waveform_sha256 IS
  'The waveform''s SHA-256 (base64), hashed at finalize (or by the first audit).';
COMMENT ON COLUMN public.recordings.damaged_at IS
  'When an audit found no good copy left of one of its objects: reported at the highest level, nothing deleted.';

-- Where each of a recording's objects is kept: R2 (primary) and the backup store of
-- another provider and region. A primary row is made with the recording; a backup row
-- waits ('pending') for the replicate function, then is 'copied'. The purge turns the
-- backup rows of what it purges into 'deleting' until every version is gone.
CREATE TABLE public.recording_copies (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  recording_id    uuid NOT NULL,
  family_id       uuid NOT NULL,
  location        text NOT NULL,
  object          text NOT NULL,
  state           text NOT NULL DEFAULT 'pending',
  size_bytes      bigint NOT NULL,
  -- The SHA-256 the copy was written or last verified with.
  sha256          text DEFAULT NULL,
  copied_at       timestamptz DEFAULT NULL,
  -- The last check that found its bytes right; checked_at, the last check at all.
  verified_at     timestamptz DEFAULT NULL,
  checked_at      timestamptz DEFAULT NULL,
  -- Until when the backup's Object Lock (compliance) keeps it from deletion.
  locked_until    timestamptz DEFAULT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text DEFAULT NULL,
  claimed_at      timestamptz DEFAULT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT recording_copies_location_valid CHECK (location IN ('primary', 'backup')),
  CONSTRAINT recording_copies_object_valid CHECK (object IN ('audio', 'waveform')),
  CONSTRAINT recording_copies_state_valid CHECK (state IN ('pending', 'copied', 'deleting')),
  CONSTRAINT recording_copies_sha256_format CHECK (sha256 ~ '^[A-Za-z0-9+/]{43}=$'),
  CONSTRAINT recording_copies_recording_location_object_key UNIQUE (recording_id, location, object),
  CONSTRAINT recording_copies_recording_id_fkey FOREIGN KEY (recording_id)
    REFERENCES public.recordings (id) ON DELETE CASCADE,
  CONSTRAINT recording_copies_family_id_fkey FOREIGN KEY (family_id)
    REFERENCES public.families (id) ON DELETE CASCADE
);
COMMENT ON TABLE public.recording_copies IS
  'Each copy of each recording object (primary in R2, backup elsewhere): its state, checksum, last check and lock. The service role only.';
-- The replicate function's queue, the purge's deletions, the audit's order (oldest
-- check first) and the lock's renewal: each index-bound.
CREATE INDEX idx_recording_copies_pending ON public.recording_copies (next_attempt_at)
  WHERE state = 'pending';
CREATE INDEX idx_recording_copies_deleting ON public.recording_copies (next_attempt_at)
  WHERE state = 'deleting';
CREATE INDEX idx_recording_copies_audit ON public.recording_copies (checked_at NULLS FIRST, id)
  WHERE state = 'copied';
CREATE INDEX idx_recording_copies_lock ON public.recording_copies (locked_until)
  WHERE state = 'copied' AND location = 'backup';
CREATE INDEX idx_recording_copies_family ON public.recording_copies (family_id);
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.recording_copies
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();

-- Every fixity check's outcome, appended (a year of them kept).
CREATE TABLE public.fixity_checks (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  recording_id uuid NOT NULL,
  location     text NOT NULL,
  object       text NOT NULL,
  outcome      text NOT NULL,
  detail       text DEFAULT NULL,
  checked_at   timestamptz NOT NULL DEFAULT now(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT fixity_checks_location_valid CHECK (location IN ('primary', 'backup')),
  CONSTRAINT fixity_checks_object_valid CHECK (object IN ('audio', 'waveform')),
  CONSTRAINT fixity_checks_outcome_valid CHECK (outcome IN ('ok', 'missing', 'mismatch', 'repaired')),
  CONSTRAINT fixity_checks_recording_id_fkey FOREIGN KEY (recording_id)
    REFERENCES public.recordings (id) ON DELETE CASCADE
);
COMMENT ON TABLE public.fixity_checks IS
  'The log of every fixity check (ok, missing, mismatch, repaired), a year of it. Append-only; the service role only.';
CREATE INDEX idx_fixity_checks_recording ON public.fixity_checks (recording_id, checked_at);
CREATE INDEX idx_fixity_checks_checked_at ON public.fixity_checks (checked_at);
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.fixity_checks
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();

ALTER TABLE public.recording_copies ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.fixity_checks ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.recording_copies, public.fixity_checks FROM anon, authenticated;
REVOKE UPDATE ON public.fixity_checks FROM service_role;

-- The copies of the recordings made before this migration: the primary ones are due
-- for their first audit (which records their hash), the backup ones wait for it.
INSERT INTO public.recording_copies (recording_id, family_id, location, object, state, size_bytes, copied_at)
SELECT r.id, r.family_id, l.location, o.object,
       CASE l.location WHEN 'primary' THEN 'copied' ELSE 'pending' END,
       o.size, CASE l.location WHEN 'primary' THEN r.created_at END
FROM public.recordings r
CROSS JOIN (VALUES ('primary'), ('backup')) AS l (location)
CROSS JOIN LATERAL (VALUES ('audio', r.audio_size_bytes), ('waveform', r.waveform_size_bytes)) AS o (object, size)
WHERE r.purged_at IS NULL AND o.size IS NOT NULL;

-- Finalizing now keeps the checksums and makes the recording's copies: the primary
-- ones checked at ingest when their hash is known (due for an audit at once when not),
-- the backup ones pending for the replicate function.
DROP FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint);
CREATE FUNCTION public.finalize_recording_tx(
  p_id uuid, p_family_id uuid, p_created_by uuid, p_prompt_id uuid, p_title text,
  p_duration_seconds double precision, p_content_type text,
  p_audio_size_bytes bigint, p_waveform_size_bytes bigint,
  p_audio_sha256 text, p_waveform_sha256 text
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
    audio_size_bytes, waveform_size_bytes, audio_sha256, waveform_sha256)
  VALUES (p_id, p_family_id, p_created_by, p_prompt_id, p_title, p_duration_seconds, p_content_type,
    p_audio_size_bytes, p_waveform_size_bytes, p_audio_sha256, p_waveform_sha256);
  INSERT INTO public.recording_copies (recording_id, family_id, location, object, state, size_bytes,
    sha256, copied_at, verified_at, checked_at)
  SELECT p_id, p_family_id, l.location, o.object,
         CASE l.location WHEN 'primary' THEN 'copied' ELSE 'pending' END, o.size,
         CASE l.location WHEN 'primary' THEN o.sha256 END,
         CASE l.location WHEN 'primary' THEN now() END,
         CASE WHEN l.location = 'primary' AND o.sha256 IS NOT NULL THEN now() END,
         CASE WHEN l.location = 'primary' AND o.sha256 IS NOT NULL THEN now() END
  FROM (VALUES ('primary'), ('backup')) AS l (location)
  CROSS JOIN (VALUES ('audio', p_audio_size_bytes, p_audio_sha256),
                     ('waveform', p_waveform_size_bytes, p_waveform_sha256)) AS o (object, size, sha256)
  WHERE o.size IS NOT NULL;
  UPDATE public.upload_reservations SET finalized_at = now(), closed_at = NULL, sweep_claimed_at = NULL
  WHERE id = p_id AND finalized_at IS NULL;
  RETURN true;
END
$$;
COMMENT ON FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint, text, text) IS
  'Inserts a recording with its checksums and copies and charges its size in one step; idempotent; P0001 when over quota.';
REVOKE ALL ON FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint, text, text)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint, text, text)
  TO service_role;

-- An archive lists a recording whose copies all failed their check as damaged (its
-- bytes are left out, never replaced by wrong ones).
ALTER TABLE public.archive_items ADD COLUMN damaged boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN public.archive_items.damaged IS
  'No copy of its bytes matched the recording''s SHA-256 when the worker came to it: left out, listed as damaged.';

-- The purge: after the maintenance job deleted the primary objects, their rows go; the
-- backup copies wait as 'deleting' until every version of them is gone (at once when
-- the backup answers, later when it is down).
CREATE OR REPLACE FUNCTION public.purge_recordings(p_ids uuid[]) RETURNS SETOF uuid
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  r record;
BEGIN
  -- One family's entitlement lock at a time, in a fixed order: no deadlock with
  -- uploads or another run.
  FOR r IN
    SELECT id, family_id, size_bytes FROM public.recordings
    WHERE id = ANY (p_ids) AND purge_started_at IS NOT NULL AND purged_at IS NULL
    ORDER BY family_id, id
  LOOP
    PERFORM public.update_storage_quota(r.family_id, -r.size_bytes, 'purge', r.id, 'recording purged');
    UPDATE public.recordings SET purged_at = now() WHERE id = r.id;
    DELETE FROM public.recording_copies WHERE recording_id = r.id AND location = 'primary';
    UPDATE public.recording_copies
    SET state = 'deleting', attempts = 0, next_attempt_at = now(), claimed_at = NULL, last_error = NULL
    WHERE recording_id = r.id AND location = 'backup';
    RETURN NEXT r.family_id;
  END LOOP;
END
$$;
