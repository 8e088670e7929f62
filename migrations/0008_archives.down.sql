DROP FUNCTION public.account_of(uuid);
DROP TABLE public.archive_items;
DROP TABLE public.archives;
