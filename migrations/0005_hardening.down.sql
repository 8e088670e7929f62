DROP FUNCTION public.redeem_invite(bytea[], uuid, text);
DROP TABLE public.checkout_sessions;
ALTER TABLE public.invites DROP CONSTRAINT invites_email_printable;
ALTER TABLE public.recordings DROP CONSTRAINT recordings_title_printable;
ALTER TABLE public.prompts DROP CONSTRAINT prompts_text_printable;
ALTER TABLE public.families DROP CONSTRAINT families_name_printable;
DROP TRIGGER deleted_at_guard ON public.recordings;
DROP FUNCTION public.recordings_deleted_at_guard();
DROP FUNCTION public.trash_retention();
