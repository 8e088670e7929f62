-- Family archives (contract §9): a member asks for one (request-archive), the
-- archive-worker streams every live recording into ZIP parts under
-- archives/{family}/{archive}/ in R2, the requester is emailed, get-archive signs the
-- parts' URLs, and the maintenance job deletes them after 7 days (or at once when
-- their requester leaves or the family is deleted). Archives never count toward the
-- quota.

CREATE TABLE public.archives (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id     uuid NOT NULL,
  requested_by  uuid,
  status        text NOT NULL DEFAULT 'queued',
  -- Failed runs so far (a run that died holding the job counts as one).
  attempts      integer NOT NULL DEFAULT 0,
  -- Why it failed, in words the app can show.
  failure       text,
  -- Set when the worker first takes it (the recordings are listed then, once).
  parts_total   integer,
  parts_done    integer NOT NULL DEFAULT 0,
  size_bytes    bigint NOT NULL DEFAULT 0,
  -- The worker's lease: a running job whose lease is older than the worker's timeout
  -- was abandoned, and is taken again.
  claimed_at    timestamptz,
  finished_at   timestamptz,
  emailed_at    timestamptz,
  -- From then on the maintenance job deletes its objects...
  expires_at    timestamptz,
  -- ...and when it has, this is set (and its items are gone).
  deleted_at    timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT archives_status_valid CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  CONSTRAINT archives_attempts_valid CHECK (attempts >= 0),
  CONSTRAINT archives_parts_valid CHECK (parts_total IS NULL OR parts_done BETWEEN 0 AND parts_total),
  CONSTRAINT archives_size_valid CHECK (size_bytes >= 0),
  CONSTRAINT archives_family_id_fkey FOREIGN KEY (family_id)
    REFERENCES public.families (id) ON DELETE RESTRICT,
  CONSTRAINT archives_requested_by_fkey FOREIGN KEY (requested_by)
    REFERENCES auth.users (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.archives IS
  'Downloadable family archives: one ZIP (in parts) of every live recording, under archives/{family}/{id}/ in R2. Written only by the functions; the requester (while a member) and the keepers read them.';
-- One job in flight per family: a second request returns it.
CREATE UNIQUE INDEX archives_one_open_per_family ON public.archives (family_id)
  WHERE status IN ('queued', 'running');
CREATE INDEX idx_archives_family ON public.archives (family_id, created_at DESC);
CREATE INDEX idx_archives_requested_by ON public.archives (requested_by);
CREATE INDEX idx_archives_open ON public.archives (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX idx_archives_expiring ON public.archives (expires_at)
  WHERE expires_at IS NOT NULL AND deleted_at IS NULL;

-- What an archive holds, listed once when the worker first takes it: a recording
-- finalized later is not in it, one purged meanwhile is left out (missing), and the
-- names, sizes and checksums the manifest tells are these.
CREATE TABLE public.archive_items (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  archive_id      uuid NOT NULL,
  recording_id    uuid NOT NULL,
  part            integer NOT NULL,
  position        integer NOT NULL,
  -- The file's path in the ZIP, without its extension (`.m4a`, `.waveform.json`).
  name            text NOT NULL,
  recorded_at     timestamptz NOT NULL,
  duration_seconds double precision NOT NULL,
  speaker         text NOT NULL,
  prompt_id       uuid,
  prompt_text     text,
  title           text,
  audio_size_bytes    bigint NOT NULL,
  waveform_size_bytes bigint,
  audio_sha256    bytea,
  waveform_sha256 bytea,
  -- Its object was gone when the worker came to it (purged meanwhile).
  missing         boolean NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT archive_items_archive_recording_key UNIQUE (archive_id, recording_id),
  CONSTRAINT archive_items_archive_name_key UNIQUE (archive_id, name),
  CONSTRAINT archive_items_part_valid CHECK (part >= 1),
  CONSTRAINT archive_items_archive_id_fkey FOREIGN KEY (archive_id)
    REFERENCES public.archives (id) ON DELETE CASCADE,
  -- No foreign key to recordings: an item outlives a purge of what it lists.
  CONSTRAINT archive_items_prompt_id_fkey FOREIGN KEY (prompt_id)
    REFERENCES public.prompts (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.archive_items IS
  'The recordings of an archive as listed when its job began, with their names in the ZIP and, once written, their SHA-256. Deleted with the archive''s objects.';
CREATE INDEX idx_archive_items_part ON public.archive_items (archive_id, part, position);
CREATE INDEX idx_archive_items_prompt ON public.archive_items (prompt_id);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.archives
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.archive_items
  FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at();

ALTER TABLE public.archives ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.archive_items ENABLE ROW LEVEL SECURITY;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.archives FROM anon, authenticated;
REVOKE ALL ON public.archive_items FROM anon, authenticated;
-- The requester while still a member, and the keepers; of a family that is not deleted
-- (the helpers know only those).
CREATE POLICY archives_select_requester_or_keepers ON public.archives FOR SELECT TO authenticated
  USING ((requested_by = (SELECT auth.uid()) AND public.is_member_of(family_id))
         OR public.is_keeper_of(family_id));

-- What an archive says of a person: their name (from their account's metadata) and the
-- email their archive is sent to, which only the auth schema holds. For the archive
-- worker (the service role) only.
CREATE FUNCTION public.account_of(p_user_id uuid) RETURNS TABLE (name text, email text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT coalesce(nullif(btrim(u.raw_user_meta_data ->> 'full_name'), ''),
                  nullif(btrim(u.raw_user_meta_data ->> 'name'), '')),
         u.email
  FROM auth.users u WHERE u.id = p_user_id
$$;
COMMENT ON FUNCTION public.account_of(uuid) IS
  'A user''s display name and email, for the archive worker: a speaker''s name in the archive, the requester''s address.';
REVOKE ALL ON FUNCTION public.account_of(uuid) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.account_of(uuid) TO service_role;
