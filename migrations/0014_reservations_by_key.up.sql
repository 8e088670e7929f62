-- Every statement index-bound, continued (the scale bench and the plan test found it):
-- a statement naming a partial index's predicate may be planned as a scan of that whole
-- index, and when the statistics were taken with few uploads in flight the planner
-- believes every partial index of open reservations empty. So a finalize's
-- `WHERE id = $1 AND finalized_at IS NULL`, the sweep's close and revoke by id, the
-- owners of the bucket's objects, and a family's reserved bytes and departed member's
-- uploads read every open reservation of every family, dropping all but one: a cost
-- that grew with the uploads in flight everywhere (a finalize at 2.4× at scale).
--
-- Each index now states a clause only its own statements imply: the family indexes
-- `family_id IS NOT NULL` (implied by `family_id = $1`, never by a lookup by id), the
-- sweep's queue `expires_at IS NOT NULL` (implied by its `expires_at < ...`, never by
-- a family's or an id's statement). Both columns are NOT NULL, so the indexes hold the
-- same rows as before; what changes is which statements may use them. A lookup by id
-- can only take the primary key, a family's only a family index, whatever the
-- statistics say.
DROP INDEX public.idx_upload_reservations_open;
CREATE INDEX idx_upload_reservations_open ON public.upload_reservations (family_id, expires_at)
  WHERE finalized_at IS NULL AND family_id IS NOT NULL;
DROP INDEX public.idx_upload_reservations_member;
CREATE INDEX idx_upload_reservations_member ON public.upload_reservations (family_id, user_id)
  WHERE finalized_at IS NULL AND closed_at IS NULL AND family_id IS NOT NULL;
DROP INDEX public.idx_upload_reservations_unswept;
CREATE INDEX idx_upload_reservations_unswept ON public.upload_reservations (expires_at)
  WHERE finalized_at IS NULL AND closed_at IS NULL AND expires_at IS NOT NULL;
