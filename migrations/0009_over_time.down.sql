GRANT UPDATE, DELETE ON public.family_events TO service_role;
ALTER TABLE public.checkout_sessions DROP COLUMN completed_at;
CREATE OR REPLACE FUNCTION public.account_of(p_user_id uuid) RETURNS TABLE (name text, email text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT coalesce(nullif(btrim(u.raw_user_meta_data ->> 'full_name'), ''),
                  nullif(btrim(u.raw_user_meta_data ->> 'name'), '')),
         u.email
  FROM auth.users u WHERE u.id = p_user_id
$$;
DROP TABLE public.outbox;
DROP POLICY archives_select_requesters_or_keepers ON public.archives;
CREATE POLICY archives_select_requester_or_keepers ON public.archives FOR SELECT TO authenticated
  USING ((requested_by = (SELECT auth.uid()) AND public.is_member_of(family_id))
         OR public.is_keeper_of(family_id));
ALTER TABLE public.archives DROP COLUMN multipart_upload_id, DROP COLUMN multipart_key, DROP COLUMN counted;
DROP TABLE public.archive_requesters;
CREATE OR REPLACE FUNCTION public.finalize_recording_tx(
  p_id uuid, p_family_id uuid, p_created_by uuid, p_prompt_id uuid, p_title text,
  p_duration_seconds double precision, p_content_type text,
  p_audio_size_bytes bigint, p_waveform_size_bytes bigint
) RETURNS boolean
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
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
DROP INDEX public.idx_upload_reservations_member;
ALTER TABLE public.upload_reservations
  DROP CONSTRAINT upload_reservations_revoked_closed,
  DROP CONSTRAINT upload_reservations_departure_dated,
  DROP CONSTRAINT upload_reservations_departure_valid,
  DROP COLUMN sweep_claimed_at, DROP COLUMN departed_at, DROP COLUMN departure;
