//! The statements storage-maintenance sends, each in a transaction of its own as the
//! service role.

/// Claims a batch of recordings whose trash time is over (a restore is refused from
/// now on). Rows another run claimed and is working on are skipped; a claim older than
/// any run's budget is taken over (that run died).
pub const CLAIM_PURGE: &str = "
    UPDATE public.recordings r SET purge_started_at = now()
    WHERE r.id IN (
      SELECT id FROM public.recordings
      WHERE deleted_at <= now() - public.trash_retention() AND purged_at IS NULL
        AND (purge_started_at IS NULL OR purge_started_at < now() - interval '10 minutes')
      ORDER BY deleted_at
      LIMIT $1
      FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.family_id";

/// Claims a batch of the recordings left of a family being purged, whatever their
/// trash time (one never trashed goes into the trash as it is claimed).
pub const CLAIM_FAMILY_RECORDINGS: &str = "
    UPDATE public.recordings r
    SET purge_started_at = now(), deleted_at = coalesce(r.deleted_at, now())
    WHERE r.id IN (
      SELECT id FROM public.recordings
      WHERE family_id = $1 AND purged_at IS NULL
        AND (purge_started_at IS NULL OR purge_started_at < now() - interval '10 minutes')
      LIMIT $2
      FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.family_id";

/// Claims deleted families past the retention, a few at a time (a restore is refused
/// from now on); a claim older than any run's budget is taken over.
pub const CLAIM_FAMILIES: &str = "
    UPDATE public.families f SET purge_started_at = now()
    WHERE f.id IN (
      SELECT id FROM public.families
      WHERE deleted_at <= now() - public.trash_retention() AND purged_at IS NULL
        AND (purge_started_at IS NULL OR purge_started_at < now() - interval '10 minutes')
      ORDER BY deleted_at
      LIMIT 10
      FOR UPDATE SKIP LOCKED)
    RETURNING f.id";

/// Claims deleted families a week or less from their purge whose keepers were not yet
/// reminded (once per deletion: a restore clears the mark, a new deletion starts
/// afresh; concurrent runs claim different ones). Returns each with its purge time.
pub const CLAIM_REMINDERS: &str = "
    UPDATE public.families f SET purge_reminder_sent_at = now()
    WHERE f.id IN (
      SELECT id FROM public.families
      WHERE deleted_at IS NOT NULL AND purged_at IS NULL AND purge_started_at IS NULL
        AND purge_reminder_sent_at IS NULL
        AND deleted_at <= now() - public.trash_retention() + interval '7 days'
        AND deleted_at > now() - public.trash_retention()
      ORDER BY deleted_at
      LIMIT $1
      FOR UPDATE SKIP LOCKED)
    RETURNING f.id, f.deleted_at + public.trash_retention()";

/// A claimed family, its recordings purged and objects deleted, emptied to a tombstone
/// (false while a recording is left).
pub const PURGE_FAMILY: &str = "SELECT public.purge_family($1)";

/// Marks claimed recordings purged and credits their bytes, once each; the families.
pub const PURGE: &str = "SELECT public.purge_recordings($1)";

/// Claims a batch of reservations past their expiry and the grace, neither finalized
/// nor closed (those the sweep had to keep are tried again after six hours), of
/// families not deleted (a deleted family's uploads wait for its restore, or go with
/// its purge). Another run skips them until this one is done with them (the claim is
/// a column: a row lock would end with this statement's transaction, before the HEADs
/// and the finalize); a claim older than any run's budget is taken over.
pub const CLAIM_STRANDED: &str = "
    UPDATE public.upload_reservations r SET sweep_claimed_at = now()
    WHERE r.id IN (
      SELECT id FROM public.upload_reservations s
      WHERE finalized_at IS NULL AND closed_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM public.families f
                        WHERE f.id = s.family_id AND f.deleted_at IS NOT NULL)
        AND expires_at < now() - make_interval(mins => $1)
        AND (swept_at IS NULL OR swept_at < now() - interval '6 hours')
        AND (sweep_claimed_at IS NULL OR sweep_claimed_at < now() - interval '10 minutes')
      ORDER BY expires_at
      LIMIT $2
      FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.family_id, r.user_id, r.prompt_id, r.audio_size_bytes,
              r.waveform_size_bytes, r.duration_seconds, r.content_type,
              r.closed_at IS NOT NULL, r.departure, r.departed_at";

/// Notes that the sweep had to keep a reservation (tried again later), and lets go of
/// it.
pub const KEEP: &str = "
    UPDATE public.upload_reservations SET swept_at = now(), sweep_claimed_at = NULL
    WHERE id = $1";

/// What owns the recordings' objects found in the bucket: the recording (whether it has
/// a waveform, whether it was purged) or a reservation not finalized (whether it is
/// open, whether a departure revoked it).
pub const OWNERS: &str = "
    SELECT id, true, waveform_size_bytes IS NOT NULL, purged_at IS NOT NULL
    FROM public.recordings WHERE id = ANY ($1)
    UNION ALL
    SELECT id, false, closed_at IS NULL, departure IS NOT DISTINCT FROM 'revoked'
    FROM public.upload_reservations WHERE id = ANY ($1) AND finalized_at IS NULL";

/// The Stripe customer of a family being purged.
pub const CUSTOMER: &str = "
    SELECT stripe_customer_id FROM public.entitlements WHERE family_id = $1";

/// A cursor of the job's rotating work.
pub const STATE: &str = "SELECT value FROM public.maintenance_state WHERE key = $1";

/// Moves a cursor.
pub const SET_STATE: &str = "
    INSERT INTO public.maintenance_state (key, value) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";

/// Forgets a cursor (the next run starts from the beginning).
pub const CLEAR_STATE: &str = "DELETE FROM public.maintenance_state WHERE key = $1";

/// The next families of the books' rotating sample.
pub const SAMPLE: &str = "
    SELECT family_id FROM public.entitlements WHERE family_id > $1 ORDER BY family_id LIMIT $2";

/// Counter, ledger and recordings of each family.
pub const BOOKS: &str =
    "SELECT family_id, counter, ledger, recordings FROM public.storage_books($1)";

/// Archives past their time, not yet deleted (none being written).
pub const EXPIRED_ARCHIVES: &str = "
    SELECT id, family_id FROM public.archives
    WHERE expires_at <= now() AND deleted_at IS NULL AND status <> 'running'
    ORDER BY expires_at LIMIT $1";

/// Archives whose objects are gone: marked deleted, their lists (names, titles) dropped.
pub const ARCHIVES_DELETED: &str = "
    WITH gone AS (
      UPDATE public.archives SET deleted_at = now()
      WHERE id = ANY ($1) AND deleted_at IS NULL
      RETURNING id)
    DELETE FROM public.archive_items WHERE archive_id IN (SELECT id FROM gone)";
