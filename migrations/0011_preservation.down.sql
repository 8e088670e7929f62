-- Back to one copy and no checksums. The copies' records and the fixity log go with
-- their tables; the checksums with their columns.
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
    RETURN NEXT r.family_id;
  END LOOP;
END
$$;
DROP FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint, text, text);
CREATE FUNCTION public.finalize_recording_tx(
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
COMMENT ON FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint) IS
  'Inserts a recording and charges its size in one step; idempotent; P0001 when over quota.';
REVOKE ALL ON FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint)
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint)
  TO service_role;
ALTER TABLE public.archive_items DROP COLUMN damaged;
DROP TABLE public.fixity_checks;
DROP TABLE public.recording_copies;
ALTER TABLE public.recordings
  DROP CONSTRAINT recordings_waveform_sha256_format,
  DROP CONSTRAINT recordings_audio_sha256_format,
  DROP COLUMN damaged_at, DROP COLUMN waveform_sha256, DROP COLUMN audio_sha256;
ALTER TABLE public.upload_reservations
  DROP CONSTRAINT upload_reservations_audio_sha256_format,
  DROP COLUMN audio_sha256;
