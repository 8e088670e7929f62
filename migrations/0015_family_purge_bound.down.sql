DROP INDEX public.idx_family_members_invite;
DROP INDEX public.idx_recordings_family_all;
DROP INDEX public.idx_prompts_family_all;
DROP INDEX public.idx_upload_reservations_family;
DROP INDEX public.idx_invites_family_all;
