-- A family's purge, index-bound (the plan test found it once its sample family got as
-- far as being emptied; the scale bench stalled on the same foreign key): it deletes
-- the family's invites, reservations and prompts and scrubs its recordings' titles, and
-- the only indexes by family on those tables were partial (live invites, open
-- reservations, live prompts, unpurged recordings), so each was a scan of the whole
-- table; and every invite deleted set family_members.invite_id to NULL through a
-- foreign key no index served: a scan of every membership per invite. At a million
-- families, minutes per family purged.
CREATE INDEX idx_invites_family_all ON public.invites (family_id);
CREATE INDEX idx_upload_reservations_family ON public.upload_reservations (family_id);
CREATE INDEX idx_prompts_family_all ON public.prompts (family_id);
CREATE INDEX idx_recordings_family_all ON public.recordings (family_id);
CREATE INDEX idx_family_members_invite ON public.family_members (invite_id)
  WHERE invite_id IS NOT NULL;
