-- The functions the seed describes: RLS helpers, the quota accounting and the
-- recording finalization; plus the atomic rate-limit counter. Every function has a
-- fixed search_path and schema-qualified names.

-- RLS helpers: SECURITY DEFINER so that policies on family_members can ask who
-- belongs where without recursing into their own policy.
CREATE FUNCTION public.user_family_ids() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT m.family_id FROM public.family_members m WHERE m.user_id = (SELECT auth.uid())
$$;
COMMENT ON FUNCTION public.user_family_ids() IS 'Families the calling user belongs to (RLS helper).';

CREATE FUNCTION public.is_member_of(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()))
$$;
COMMENT ON FUNCTION public.is_member_of(uuid) IS 'Whether the calling user belongs to the family (RLS helper).';

CREATE FUNCTION public.is_keeper_of(p_family_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.family_members m
    WHERE m.family_id = p_family_id AND m.user_id = (SELECT auth.uid()) AND m.role = 'keeper')
$$;
COMMENT ON FUNCTION public.is_keeper_of(uuid) IS 'Whether the calling user is a keeper of the family (RLS helper).';

REVOKE ALL ON FUNCTION public.user_family_ids(), public.is_member_of(uuid), public.is_keeper_of(uuid)
  FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.user_family_ids(), public.is_member_of(uuid), public.is_keeper_of(uuid)
  TO authenticated, service_role;

-- The only way storage_used_bytes changes. Locks the family's entitlement row, so all
-- changes of one family's usage are serialised; clamps at 0; writes the ledger with
-- the delta actually applied (so the ledger always sums to the counter); raises P0001
-- when an increase would pass the plan's quota (the caller rolls back).
CREATE FUNCTION public.update_storage_quota(
  p_family_id uuid, p_delta_bytes bigint, p_operation text, p_recording_id uuid, p_description text
) RETURNS bigint
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_used  bigint;
  v_quota bigint;
  v_new   bigint;
BEGIN
  SELECT e.storage_used_bytes, p.storage_quota_bytes INTO v_used, v_quota
  FROM public.entitlements e JOIN public.plans p ON p.code = e.plan
  WHERE e.family_id = p_family_id
  FOR UPDATE OF e;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'family % has no entitlement', p_family_id USING ERRCODE = 'no_data_found';
  END IF;
  v_new := greatest(0, v_used + p_delta_bytes);
  IF p_delta_bytes > 0 AND v_new > v_quota THEN
    RAISE EXCEPTION 'storage quota exceeded'
      USING ERRCODE = 'P0001', DETAIL = format('used %s + %s > quota %s', v_used, p_delta_bytes, v_quota);
  END IF;
  UPDATE public.entitlements SET storage_used_bytes = v_new WHERE family_id = p_family_id;
  INSERT INTO public.usage_ledger (family_id, recording_id, delta_bytes, balance_after, operation, description)
  VALUES (p_family_id, p_recording_id, v_new - v_used, v_new, p_operation, p_description);
  RETURN v_new;
END
$$;
COMMENT ON FUNCTION public.update_storage_quota(uuid, bigint, text, uuid, text) IS
  'Atomic storage accounting: locks the entitlement, clamps at 0, writes the ledger, raises P0001 over quota.';

-- Records a finalized upload: idempotent (a second call for the same id returns false
-- and changes nothing), serialised per family by the entitlement lock.
CREATE FUNCTION public.finalize_recording_tx(
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
COMMENT ON FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint) IS
  'Inserts a recording and charges its size in one step; idempotent; P0001 when over quota.';

-- Fixed-window rate limit: takes one hit for key if fewer than p_limit were taken in
-- the current window. Returns 0 when taken, else the seconds until the window ends.
-- The upsert locks the counter row, so concurrent callers can't slip past the limit.
CREATE FUNCTION public.rate_limit_take(p_key text, p_limit integer, p_window interval) RETURNS integer
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  v_start timestamptz := date_bin(p_window, now(), timestamptz '2000-01-01 00:00:00+00');
  v_hits  integer;
BEGIN
  INSERT INTO public.rate_limits AS r (key, window_start, hits) VALUES (p_key, v_start, 1)
  ON CONFLICT (key, window_start) DO UPDATE SET hits = r.hits + 1 WHERE r.hits < p_limit
  RETURNING r.hits INTO v_hits;
  IF v_hits IS NULL THEN
    RETURN greatest(1, ceil(extract(epoch FROM (v_start + p_window - now()))))::integer;
  END IF;
  RETURN 0;
END
$$;
COMMENT ON FUNCTION public.rate_limit_take(text, integer, interval) IS
  'Atomic fixed-window counter: 0 when a hit was taken, else seconds until the window resets.';

-- Gives back a hit (an attempt that turned out not to count, e.g. a successful redemption).
CREATE FUNCTION public.rate_limit_refund(p_key text, p_window interval) RETURNS void
LANGUAGE sql SET search_path = '' AS $$
  UPDATE public.rate_limits SET hits = greatest(0, hits - 1)
  WHERE key = p_key AND window_start = date_bin(p_window, now(), timestamptz '2000-01-01 00:00:00+00')
$$;
COMMENT ON FUNCTION public.rate_limit_refund(text, interval) IS 'Gives back one hit of the current window.';

-- Privileged: on Supabase PostgREST exposes every function a client may execute.
REVOKE ALL ON FUNCTION
  public.update_storage_quota(uuid, bigint, text, uuid, text),
  public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint),
  public.rate_limit_take(text, integer, interval),
  public.rate_limit_refund(text, interval),
  public.usage_ledger_append_only(),
  public.trigger_set_updated_at()
  FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
  public.update_storage_quota(uuid, bigint, text, uuid, text),
  public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint),
  public.rate_limit_take(text, integer, interval),
  public.rate_limit_refund(text, interval)
  TO service_role;
