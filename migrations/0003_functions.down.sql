DROP FUNCTION public.rate_limit_refund(text, interval);
DROP FUNCTION public.rate_limit_take(text, integer, interval);
DROP FUNCTION public.finalize_recording_tx(uuid, uuid, uuid, uuid, text, double precision, text, bigint, bigint);
DROP FUNCTION public.update_storage_quota(uuid, bigint, text, uuid, text);
DROP FUNCTION public.is_keeper_of(uuid);
DROP FUNCTION public.is_member_of(uuid);
DROP FUNCTION public.user_family_ids();
