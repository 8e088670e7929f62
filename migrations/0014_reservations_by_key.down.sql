DROP INDEX public.idx_upload_reservations_open;
CREATE INDEX idx_upload_reservations_open ON public.upload_reservations (family_id, expires_at)
  WHERE finalized_at IS NULL;
DROP INDEX public.idx_upload_reservations_member;
CREATE INDEX idx_upload_reservations_member ON public.upload_reservations (family_id, user_id)
  WHERE finalized_at IS NULL AND closed_at IS NULL;
DROP INDEX public.idx_upload_reservations_unswept;
CREATE INDEX idx_upload_reservations_unswept ON public.upload_reservations (expires_at)
  WHERE finalized_at IS NULL AND closed_at IS NULL;
