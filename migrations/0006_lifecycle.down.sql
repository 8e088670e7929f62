DROP TABLE public.maintenance_state;
DROP FUNCTION public.storage_books(uuid[]);
DROP FUNCTION public.reconcile_storage(uuid, text);
DROP FUNCTION public.purge_recordings(uuid[]);
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
  UPDATE public.upload_reservations SET finalized_at = now() WHERE id = p_id AND finalized_at IS NULL;
  RETURN true;
END
$$;
DROP POLICY recordings_trash ON public.recordings;
CREATE POLICY recordings_soft_delete ON public.recordings FOR UPDATE TO authenticated
  USING (deleted_at IS NULL AND (public.is_keeper_of(family_id)
         OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id))))
  WITH CHECK (deleted_at IS NOT NULL AND (public.is_keeper_of(family_id)
         OR (created_by = (SELECT auth.uid()) AND public.is_member_of(family_id))));
DROP POLICY recordings_select_members ON public.recordings;
CREATE POLICY recordings_select_members ON public.recordings FOR SELECT TO authenticated
  USING (family_id IN (SELECT public.user_family_ids()));
CREATE OR REPLACE FUNCTION public.recordings_deleted_at_guard() RETURNS trigger
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
DROP INDEX public.idx_upload_reservations_unswept;
ALTER TABLE public.upload_reservations DROP COLUMN swept_at, DROP COLUMN closed_at;
DROP INDEX public.idx_recordings_trash;
ALTER TABLE public.recordings DROP CONSTRAINT recordings_purged_from_the_trash,
  DROP COLUMN purged_at, DROP COLUMN purge_started_at;
