//! The statements archive-worker sends, each in a short transaction as the service role
//! (the worker acts for no user; what it may do is what request-archive recorded).

/// Takes the oldest job waiting, or one whose worker died holding it (its lease older
/// than $1 seconds: that counts as a failed attempt). Other workers skip it.
pub const CLAIM: &str = "
    WITH next AS (
      SELECT id FROM public.archives
      WHERE status = 'queued'
         OR (status = 'running' AND claimed_at < now() - make_interval(secs => $1))
      ORDER BY created_at
      LIMIT 1
      FOR UPDATE SKIP LOCKED)
    UPDATE public.archives a
    SET attempts = a.attempts + CASE WHEN a.status = 'running' THEN 1 ELSE 0 END,
        status = 'running', claimed_at = now()
    FROM next WHERE a.id = next.id
    RETURNING a.id, a.family_id, a.attempts, a.parts_total, a.parts_done,
              a.multipart_key, a.multipart_upload_id";

/// The multipart upload of the part being written, so that it can be aborted even if
/// this worker dies.
pub const PART_STARTED: &str = "
    UPDATE public.archives SET multipart_key = $2, multipart_upload_id = $3
    WHERE id = $1 AND status = 'running'";

/// A dead worker's multipart upload was aborted.
pub const FORGET_UPLOAD: &str = "
    UPDATE public.archives SET multipart_key = NULL, multipart_upload_id = NULL WHERE id = $1";

/// The family: name, language, whether it was deleted.
pub const FAMILY: &str = "
    SELECT name, language, deleted_at IS NOT NULL FROM public.families WHERE id = $1";

/// The live recordings of the family, oldest first, with who spoke and to what prompt.
pub const RECORDINGS: &str = "
    SELECT r.id, r.created_at, r.duration_seconds, r.title, r.audio_size_bytes,
           r.waveform_size_bytes, r.prompt_id, p.text, speaker.name
    FROM public.recordings r
    LEFT JOIN public.prompts p ON p.id = r.prompt_id
    LEFT JOIN LATERAL public.account_of(r.created_by) speaker ON true
    WHERE r.family_id = $1 AND r.deleted_at IS NULL AND r.purged_at IS NULL
    ORDER BY r.created_at, r.id";

/// The archive's list, made once.
pub const INSERT_ITEMS: &str = "
    INSERT INTO public.archive_items (archive_id, recording_id, part, position, name,
      recorded_at, duration_seconds, speaker, prompt_id, prompt_text, title,
      audio_size_bytes, waveform_size_bytes)
    SELECT $1, * FROM unnest($2::uuid[], $3::int[], $4::int[], $5::text[],
      $6::timestamptz[], $7::float8[], $8::text[], $9::uuid[], $10::text[], $11::text[],
      $12::int8[], $13::int8[])";

/// How many parts, once listed; still running (a cancel may have come meanwhile).
pub const SET_PARTS: &str = "
    UPDATE public.archives SET parts_total = $2 WHERE id = $1 AND status = 'running'";

/// The archive's list, for its parts from $2 to $3 (every part: the manifest's view).
pub const ITEMS: &str = "
    SELECT recording_id, part, name, recorded_at, duration_seconds, speaker, prompt_id,
           prompt_text, title, audio_size_bytes, waveform_size_bytes, audio_sha256,
           waveform_sha256, missing
    FROM public.archive_items
    WHERE archive_id = $1 AND part BETWEEN $2 AND $3
    ORDER BY part, position";

/// The family's live prompts, for the manifest.
pub const PROMPTS: &str = "
    SELECT id, text FROM public.prompts
    WHERE family_id = $1 AND deleted_at IS NULL ORDER BY position, created_at";

/// What writing a part found out about its recordings.
pub const WRITTEN: &str = "
    UPDATE public.archive_items i
    SET audio_sha256 = w.audio, waveform_sha256 = w.waveform, missing = w.missing
    FROM unnest($2::uuid[], $3::bytea[], $4::bytea[], $5::bool[])
      AS w (recording_id, audio, waveform, missing)
    WHERE i.archive_id = $1 AND i.recording_id = w.recording_id";

/// A part done: the lease renewed. False when the job is no longer this worker's.
pub const PART_DONE: &str = "
    UPDATE public.archives
    SET parts_done = $2, size_bytes = size_bytes + $3, claimed_at = now(),
        multipart_key = NULL, multipart_upload_id = NULL
    WHERE id = $1 AND status = 'running'
    RETURNING true";

/// Done: kept 7 days if every requester is still a member of the family and it is not
/// deleted; else (a requester left: they may hold its URLs) deleted by the next
/// maintenance run, and it counts toward no allowance. Returns whether the family is
/// live, whether it is kept, and its requesters still in the family, for the emails.
pub const DONE: &str = "
    WITH state AS (
      SELECT f.deleted_at IS NULL AS live,
             NOT EXISTS (
               SELECT 1 FROM public.archive_requesters r
               WHERE r.archive_id = a.id
                 AND NOT EXISTS (SELECT 1 FROM public.family_members m
                                 WHERE m.family_id = a.family_id AND m.user_id = r.user_id)
             ) AS whole
      FROM public.archives a JOIN public.families f ON f.id = a.family_id
      WHERE a.id = $1)
    UPDATE public.archives a
    SET status = 'done', finished_at = now(), claimed_at = NULL, failure = NULL,
        multipart_key = NULL, multipart_upload_id = NULL,
        expires_at = now() + CASE WHEN state.live AND state.whole THEN interval '7 days'
                                  ELSE interval '0' END,
        counted = a.counted AND (state.whole OR NOT state.live)
    FROM state
    WHERE a.id = $1 AND a.status = 'running'
    RETURNING state.live, state.whole,
      ARRAY(SELECT r.user_id FROM public.archive_requesters r
            WHERE r.archive_id = a.id
              AND EXISTS (SELECT 1 FROM public.family_members m
                          WHERE m.family_id = a.family_id AND m.user_id = r.user_id)
            ORDER BY r.created_at)";

/// The requesters were told.
pub const EMAILED: &str = "UPDATE public.archives SET emailed_at = now() WHERE id = $1";

/// The run's time is up with parts left: back in the queue, the next run goes on.
pub const PAUSE: &str = "
    UPDATE public.archives SET status = 'queued', claimed_at = NULL
    WHERE id = $1 AND status = 'running'";

/// The family was deleted meanwhile: what was written goes with the next maintenance run.
pub const CANCEL: &str = "
    UPDATE public.archives
    SET status = 'cancelled', claimed_at = NULL, expires_at = now()
    WHERE id = $1 AND status = 'running'";

/// A failed attempt: queued again, or failed for good after $3 attempts. A failed job
/// keeps its reason ($2, for the app) for the archive's 7 days, holds no objects (the
/// worker deletes them) and counts toward no allowance.
pub const FAIL: &str = "
    UPDATE public.archives
    SET attempts = attempts + 1, claimed_at = NULL, failure = $2,
        multipart_key = NULL, multipart_upload_id = NULL,
        status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'queued' END,
        expires_at = CASE WHEN attempts + 1 >= $3 THEN now() + interval '7 days' END,
        counted = counted AND attempts + 1 < $3
    WHERE id = $1 AND status = 'running'
    RETURNING status";

/// A job whose workers kept dying: failed for good, as [`FAIL`] leaves it.
pub const GIVE_UP: &str = "
    UPDATE public.archives
    SET status = 'failed', claimed_at = NULL, failure = $2, counted = false,
        expires_at = now() + interval '7 days',
        multipart_key = NULL, multipart_upload_id = NULL
    WHERE id = $1 AND status = 'running'";
