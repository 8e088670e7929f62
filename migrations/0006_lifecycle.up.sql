-- Recordings over time: the trash can be emptied (purge), stranded uploads are saved or
-- released (sweep), and the books are checked. The maintenance function
-- (storage-maintenance) does all three; these are its columns and steps.

-- A purge claims a recording first (a restore is refused from then on), deletes its
-- objects, then marks it purged: the row stays as a tombstone, so the ledger keeps its
-- reference, and the quota is credited.
ALTER TABLE public.recordings
  ADD COLUMN purge_started_at timestamptz DEFAULT NULL,
  ADD COLUMN purged_at timestamptz DEFAULT NULL,
  ADD CONSTRAINT recordings_purged_from_the_trash
    CHECK (purged_at IS NULL OR (deleted_at IS NOT NULL AND purge_started_at IS NOT NULL));
COMMENT ON COLUMN public.recordings.purge_started_at IS
  'When the maintenance job claimed it for purging: no restore from then on.';
COMMENT ON COLUMN public.recordings.purged_at IS
  'When its objects were deleted and its bytes credited: a tombstone since.';
CREATE INDEX idx_recordings_trash ON public.recordings (deleted_at)
  WHERE deleted_at IS NOT NULL AND purged_at IS NULL;

-- The sweep closes a reservation whose object never arrived: it stops counting against
-- the quota. (A finalize whose object arrives after all re-opens it.)
ALTER TABLE public.upload_reservations
  ADD COLUMN closed_at timestamptz DEFAULT NULL,
  ADD COLUMN swept_at timestamptz DEFAULT NULL;
COMMENT ON COLUMN public.upload_reservations.closed_at IS
  'When the sweep released it, its object missing past the expiry and the grace.';
COMMENT ON COLUMN public.upload_reservations.swept_at IS
  'When the sweep last had to keep it (object there but over quota, or unlike what was declared): tried again later.';
CREATE INDEX idx_upload_reservations_unswept ON public.upload_reservations (expires_at)
  WHERE finalized_at IS NULL AND closed_at IS NULL;

-- The restore rule gains the claim: a value -> NULL only within the retention and before
-- a purge has claimed the row.
CREATE OR REPLACE FUNCTION public.recordings_deleted_at_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
    NEW.deleted_at := now();
  ELSIF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN
    IF OLD.deleted_at <= now() - public.trash_retention() OR OLD.purge_started_at IS NOT NULL THEN
      RAISE EXCEPTION 'this recording left the trash and can no longer be restored'
        USING ERRCODE = 'check_violation';
    END IF;
  ELSE
    NEW.deleted_at := OLD.deleted_at;
  END IF;
  RETURN NEW;
END
$$;

-- RLS: members don't see purged tombstones; whoever could delete a recording can
-- restore it while it is in the trash (the guard above keeps the rules).
DROP POLICY recordings_select_members ON public.recordings;
CREATE POLICY recordings_select_members ON public.recordings FOR SELECT TO authenticated
  USING (family_id IN (SELECT public.user_family_ids()) AND purged_at IS NULL);
DROP POLICY recordings_soft_delete ON public.recordings;
CREATE POLICY recordings_trash ON public.recordings FOR UPDATE TO authenticated
  USING (purge_started_at IS NULL AND (public.is_keeper_of(family_id)
         OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id))))
  WITH CHECK (public.is_keeper_of(family_id)
         OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id)));

-- Finalizing a reservation (by finalize-recording or the sweep) re-opens one the sweep
-- had closed.
CREATE OR REPLACE FUNCTION public.finalize_recording_tx(
  p_id uuid, p_family_id uuid, p_created_by uuid, p_prompt_id uuid, p_title text,
  p_duration_seconds double precision, p_content_type text,
  p_audio_size_bytes bigint, p_waveform_size_bytes bigint
) RETURNS boolean
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  -- Taken before the existence check, so concurrent finalizes of one recording queue
  -- here and each later one sees the row the first inserted.
  PERFORM 1 FROM public.entitlements WHERE family_id = p_family_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'family % has no entitlement', p_family_id USING ERRCODE = 'no_data_found';
  END IF;
  IF EXISTS (SELECT 1 FROM public.recordings WHERE id = p_id) THEN
    RETURN false;
  END IF;
  PERFORM public.update_storage_quota(p_family_id, p_audio_size_bytes + coalesce(p_waveform_size_bytes, 0),
    'upload', p_id, 'recording finalized');
  INSERT INTO public.recordings (id, family_id, created_by, prompt_id, title, duration_seconds, content_type,
    audio_size_bytes, waveform_size_bytes)
  VALUES (p_id, p_family_id, p_created_by, p_prompt_id, p_title, p_duration_seconds, p_content_type,
    p_audio_size_bytes, p_waveform_size_bytes);
  UPDATE public.upload_reservations SET finalized_at = now(), closed_at = NULL
  WHERE id = p_id AND finalized_at IS NULL;
  RETURN true;
END
$$;

-- Marks claimed recordings purged and credits their bytes, one ledger row each;
-- idempotent (a recording already purged is skipped), so a run that died after deleting
-- the objects is completed by the next. Returns the families it credited.
CREATE FUNCTION public.purge_recordings(p_ids uuid[]) RETURNS SETOF uuid
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
COMMENT ON FUNCTION public.purge_recordings(uuid[]) IS
  'Marks claimed recordings purged and credits the quota, once each (the maintenance job, after deleting their objects).';

-- An operator's correction, after a human has looked at a drift the maintenance job
-- reported: the counter set to what the family's unpurged recordings hold, and an
-- adjustment in the ledger (with the reason) that brings its sum there too. Unlike
-- update_storage_quota it may pass the quota: it corrects the books, it stores nothing.
CREATE FUNCTION public.reconcile_storage(p_family_id uuid, p_reason text) RETURNS bigint
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_recordings bigint;
  v_ledger     bigint;
BEGIN
  IF coalesce(btrim(p_reason), '') = '' THEN
    RAISE EXCEPTION 'an adjustment needs a reason' USING ERRCODE = 'check_violation';
  END IF;
  PERFORM 1 FROM public.entitlements WHERE family_id = p_family_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'family % has no entitlement', p_family_id USING ERRCODE = 'no_data_found';
  END IF;
  SELECT coalesce(sum(size_bytes), 0) INTO v_recordings FROM public.recordings
  WHERE family_id = p_family_id AND purged_at IS NULL;
  SELECT coalesce(sum(delta_bytes), 0) INTO v_ledger FROM public.usage_ledger
  WHERE family_id = p_family_id;
  UPDATE public.entitlements SET storage_used_bytes = v_recordings WHERE family_id = p_family_id;
  INSERT INTO public.usage_ledger (family_id, recording_id, delta_bytes, balance_after, operation, description)
  VALUES (p_family_id, NULL, v_recordings - v_ledger, v_recordings, 'adjustment', p_reason);
  RETURN v_recordings;
END
$$;
COMMENT ON FUNCTION public.reconcile_storage(uuid, text) IS
  'An operator''s correction: counter and ledger brought to the family''s recordings, the reason recorded.';

-- The books of a family: counter, Σ ledger, Σ unpurged recordings (soft-deleted
-- included). They agree unless something is wrong.
CREATE FUNCTION public.storage_books(p_family_ids uuid[])
RETURNS TABLE (family_id uuid, counter bigint, ledger bigint, recordings bigint)
LANGUAGE sql STABLE SET search_path = '' AS $$
  SELECT e.family_id, e.storage_used_bytes,
         (SELECT coalesce(sum(l.delta_bytes), 0)::bigint FROM public.usage_ledger l
          WHERE l.family_id = e.family_id),
         (SELECT coalesce(sum(r.size_bytes), 0)::bigint FROM public.recordings r
          WHERE r.family_id = e.family_id AND r.purged_at IS NULL)
  FROM public.entitlements e WHERE e.family_id = ANY (p_family_ids)
$$;
COMMENT ON FUNCTION public.storage_books(uuid[]) IS
  'Counter, ledger and recordings of each family: equal unless the books drifted.';

-- Where the maintenance job's rotating work stands between runs: the books' sample
-- cursor and the bucket listing's continuation token.
CREATE TABLE public.maintenance_state (
  key        text PRIMARY KEY,
  value      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.maintenance_state IS
  'Cursors of the maintenance job (books sample, bucket listing), so each run picks up where the last stopped.';
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.maintenance_state
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();
ALTER TABLE public.maintenance_state ENABLE ROW LEVEL SECURITY;
REVOKE TRUNCATE, REFERENCES, TRIGGER ON public.maintenance_state FROM anon, authenticated;

REVOKE ALL ON FUNCTION public.purge_recordings(uuid[]), public.reconcile_storage(uuid, text),
  public.storage_books(uuid[]) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.purge_recordings(uuid[]), public.storage_books(uuid[]) TO service_role;
