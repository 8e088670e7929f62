//! Family archives (contract §9): the jobs members ask for, who asked, and what each
//! archive holds.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{RunsAs, Statement, StoreError, maybe, one, query, sql_enum};
use crate::db::Tx;

sql_enum! {
    /// Where an archive job is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ArchiveStatus {
        /// Waiting for the worker (it runs every minute).
        Queued = "queued",
        /// Being written.
        Running = "running",
        /// Ready.
        Done = "done",
        /// Given up after retries.
        Failed = "failed",
        /// Its family was deleted, or a requester removed, while it waited.
        Cancelled = "cancelled",
    }
}

const SERIALIZE: Statement = Statement {
    name: "archives.serialize",
    runs_as: RunsAs::Service,
    // One request per family at a time (transaction-scoped: safe behind a pooler).
    sql: "SELECT pg_advisory_xact_lock(hashtextextended('archive:' || $1::text, 0))",
};

const IN_FLIGHT: Statement = Statement {
    name: "archives.in_flight",
    runs_as: RunsAs::Service,
    // The family's job in flight, if any.
    sql: "SELECT id, status FROM public.archives
          WHERE family_id = $1 AND status IN ('queued', 'running')",
};

const JOIN: Statement = Statement {
    name: "archives.join",
    runs_as: RunsAs::Service,
    // Someone asks for a job: they can follow it, and are emailed when it is done.
    sql: "INSERT INTO public.archive_requesters (archive_id, family_id, user_id)
          VALUES ($1, $2, $3)
          ON CONFLICT ON CONSTRAINT archive_requesters_archive_user_key DO NOTHING",
};

const TODAY: Statement = Statement {
    name: "archives.today",
    runs_as: RunsAs::Service,
    // The jobs of this UTC day that count (not failed, not withdrawn): the family's,
    // and those the caller ($2) asked for; and the seconds until the day ends.
    sql: "SELECT count(*) AS family, count(*) FILTER (WHERE requested_by = $2) AS mine,
                 ceil(extract(epoch FROM date_trunc('day', now(), 'UTC') + interval '1 day'
                                        - now()))::int AS day_left
          FROM public.archives
          WHERE family_id = $1 AND counted AND created_at >= date_trunc('day', now(), 'UTC')",
};

const QUEUE: Statement = Statement {
    name: "archives.queue",
    runs_as: RunsAs::Service,
    sql: "INSERT INTO public.archives (family_id, requested_by) VALUES ($1, $2) RETURNING id",
};

const SEEN: Statement = Statement {
    name: "archives.seen",
    runs_as: RunsAs::User,
    // The archive, if the caller may see it (RLS): its family, status, size, parts,
    // expiry, the family's name, whether it is past its expiry (or deleted), and why it
    // failed.
    sql: "SELECT a.family_id, a.status, a.size_bytes, a.parts_total, a.expires_at,
                 f.name AS family_name,
                 a.deleted_at IS NOT NULL
                   OR (a.status IN ('done', 'failed') AND a.expires_at <= now()) AS expired,
                 a.failure
          FROM public.archives a JOIN public.families f ON f.id = a.family_id
          WHERE a.id = $1",
};

const CLAIM: Statement = Statement {
    name: "archives.claim",
    runs_as: RunsAs::Service,
    // Takes the oldest job waiting, or one whose worker died holding it (its lease older
    // than $1 seconds: that counts as a failed attempt). Other workers skip it.
    sql: "WITH next AS (
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
                    a.multipart_key, a.multipart_upload_id",
};

const INSERT_ITEMS: Statement = Statement {
    name: "archives.insert_items",
    runs_as: RunsAs::Service,
    // The archive's list, made once, with the SHA-256 the recordings keep (what the
    // bytes read must hash to).
    sql: "INSERT INTO public.archive_items (archive_id, recording_id, part, position, name,
            recorded_at, duration_seconds, speaker, prompt_id, prompt_text, title,
            audio_size_bytes, waveform_size_bytes, audio_sha256, waveform_sha256)
          SELECT $1, * FROM unnest($2::uuid[], $3::int[], $4::int[], $5::text[],
            $6::timestamptz[], $7::float8[], $8::text[], $9::uuid[], $10::text[], $11::text[],
            $12::int8[], $13::int8[], $14::bytea[], $15::bytea[])",
};

const SET_PARTS: Statement = Statement {
    name: "archives.set_parts",
    runs_as: RunsAs::Service,
    // How many parts, once listed; still running (a cancel may have come meanwhile).
    sql: "UPDATE public.archives SET parts_total = $2 WHERE id = $1 AND status = 'running'",
};

const ITEMS: Statement = Statement {
    name: "archives.items",
    runs_as: RunsAs::Service,
    // The archive's list, for its parts from $2 to $3 (every part: the manifest's view).
    sql: "SELECT recording_id, part, name, recorded_at, duration_seconds, speaker, prompt_id,
                 prompt_text, title, audio_size_bytes, waveform_size_bytes, audio_sha256,
                 waveform_sha256, missing, damaged
          FROM public.archive_items
          WHERE archive_id = $1 AND part BETWEEN $2 AND $3
          ORDER BY part, position",
};

const WRITTEN: Statement = Statement {
    name: "archives.written",
    runs_as: RunsAs::Service,
    // What writing a part found out about its recordings.
    sql: "UPDATE public.archive_items i
          SET audio_sha256 = w.audio, waveform_sha256 = w.waveform, missing = w.missing,
              damaged = w.damaged
          FROM unnest($2::uuid[], $3::bytea[], $4::bytea[], $5::bool[], $6::bool[])
            AS w (recording_id, audio, waveform, missing, damaged)
          WHERE i.archive_id = $1 AND i.recording_id = w.recording_id",
};

const PART_STARTED: Statement = Statement {
    name: "archives.part_started",
    runs_as: RunsAs::Service,
    // The multipart upload of the part being written, so that it can be aborted even if
    // its worker dies.
    sql: "UPDATE public.archives SET multipart_key = $2, multipart_upload_id = $3
          WHERE id = $1 AND status = 'running'",
};

const FORGET_UPLOAD: Statement = Statement {
    name: "archives.forget_upload",
    runs_as: RunsAs::Service,
    // A dead worker's multipart upload was aborted.
    sql: "UPDATE public.archives SET multipart_key = NULL, multipart_upload_id = NULL
          WHERE id = $1",
};

const PART_DONE: Statement = Statement {
    name: "archives.part_done",
    runs_as: RunsAs::Service,
    // A part done: the lease renewed. No row when the job is no longer this worker's.
    sql: "UPDATE public.archives
          SET parts_done = $2, size_bytes = size_bytes + $3, claimed_at = now(),
              multipart_key = NULL, multipart_upload_id = NULL
          WHERE id = $1 AND status = 'running'
          RETURNING id",
};

const DONE: Statement = Statement {
    name: "archives.done",
    runs_as: RunsAs::Service,
    // Done: kept 7 days if every requester is still a member of the family and it is
    // not deleted; else (a requester left: they may hold its URLs) deleted by the next
    // maintenance run, and it counts toward no allowance. Returns whether the family is
    // live, whether it is kept, and its requesters still in the family.
    sql: "WITH state AS (
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
                  ORDER BY r.created_at) AS requesters",
};

const EMAILED: Statement = Statement {
    name: "archives.emailed",
    runs_as: RunsAs::Service,
    // The requesters were told.
    sql: "UPDATE public.archives SET emailed_at = now() WHERE id = $1",
};

const PAUSE: Statement = Statement {
    name: "archives.pause",
    runs_as: RunsAs::Service,
    // The run's time is up with parts left: back in the queue, the next run goes on.
    sql: "UPDATE public.archives SET status = 'queued', claimed_at = NULL
          WHERE id = $1 AND status = 'running'",
};

const CANCEL: Statement = Statement {
    name: "archives.cancel",
    runs_as: RunsAs::Service,
    // The family was deleted meanwhile: what was written goes with the next maintenance
    // run.
    sql: "UPDATE public.archives
          SET status = 'cancelled', claimed_at = NULL, expires_at = now()
          WHERE id = $1 AND status = 'running'",
};

const FAIL: Statement = Statement {
    name: "archives.fail",
    runs_as: RunsAs::Service,
    // A failed attempt: queued again, or failed for good after $3 attempts. A failed job
    // keeps its reason ($2, for the app) for the archive's 7 days, holds no objects (the
    // worker deletes them) and counts toward no allowance.
    sql: "UPDATE public.archives
          SET attempts = attempts + 1, claimed_at = NULL, failure = $2,
              multipart_key = NULL, multipart_upload_id = NULL,
              status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'queued' END,
              expires_at = CASE WHEN attempts + 1 >= $3 THEN now() + interval '7 days' END,
              counted = counted AND attempts + 1 < $3
          WHERE id = $1 AND status = 'running'
          RETURNING status",
};

const GIVE_UP: Statement = Statement {
    name: "archives.give_up",
    runs_as: RunsAs::Service,
    // A job whose workers kept dying: failed for good, as a last failed attempt leaves it.
    sql: "UPDATE public.archives
          SET status = 'failed', claimed_at = NULL, failure = $2, counted = false,
              expires_at = now() + interval '7 days',
              multipart_key = NULL, multipart_upload_id = NULL
          WHERE id = $1 AND status = 'running'",
};

const EXPIRED: Statement = Statement {
    name: "archives.expired",
    runs_as: RunsAs::Service,
    // Archives past their time, not yet deleted (none being written).
    sql: "SELECT id, family_id FROM public.archives
          WHERE expires_at <= now() AND deleted_at IS NULL AND status <> 'running'
          ORDER BY expires_at LIMIT $1",
};

const DELETED: Statement = Statement {
    name: "archives.deleted",
    runs_as: RunsAs::Service,
    // Archives whose objects are gone: marked deleted, their lists (names, titles)
    // dropped.
    sql: "WITH gone AS (
            UPDATE public.archives SET deleted_at = now()
            WHERE id = ANY ($1) AND deleted_at IS NULL
            RETURNING id)
          DELETE FROM public.archive_items WHERE archive_id IN (SELECT id FROM gone)",
};

const FORGET_FAMILY: Statement = Statement {
    name: "archives.forget_family",
    runs_as: RunsAs::Service,
    // The family's archives go (it is being deleted): one waiting is cancelled, one made
    // is deleted by the next maintenance run; one being written is left to its worker,
    // which deletes it when done if it may no longer be had.
    sql: "UPDATE public.archives
          SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
              expires_at = now()
          WHERE family_id = $1 AND status <> 'running' AND deleted_at IS NULL",
};

const WITHDRAW: Statement = Statement {
    name: "archives.withdraw",
    runs_as: RunsAs::Service,
    // The archives a departing member ($2) asked for (alone or with others) go as the
    // family's do, and count toward no allowance; returns the other requesters still in
    // the family, to be told they may ask again.
    sql: "WITH gone AS (
            UPDATE public.archives a
            SET status = CASE WHEN a.status = 'queued' THEN 'cancelled' ELSE a.status END,
                expires_at = now(), counted = false
            WHERE a.family_id = $1 AND a.status IN ('queued', 'done') AND a.deleted_at IS NULL
              AND (a.expires_at IS NULL OR a.expires_at > now())
              AND EXISTS (SELECT 1 FROM public.archive_requesters r
                          WHERE r.archive_id = a.id AND r.user_id = $2)
            RETURNING a.id)
          SELECT r.archive_id, r.user_id
          FROM public.archive_requesters r JOIN gone ON gone.id = r.archive_id
          WHERE r.user_id <> $2
            AND EXISTS (SELECT 1 FROM public.family_members m
                        WHERE m.family_id = $1 AND m.user_id = r.user_id)
          ORDER BY r.archive_id",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[
    &SERIALIZE,
    &IN_FLIGHT,
    &JOIN,
    &TODAY,
    &QUEUE,
    &SEEN,
    &CLAIM,
    &INSERT_ITEMS,
    &SET_PARTS,
    &ITEMS,
    &WRITTEN,
    &PART_STARTED,
    &FORGET_UPLOAD,
    &PART_DONE,
    &DONE,
    &EMAILED,
    &PAUSE,
    &CANCEL,
    &FAIL,
    &GIVE_UP,
    &EXPIRED,
    &DELETED,
    &FORGET_FAMILY,
    &WITHDRAW,
];

/// Serialises the family's archive requests until the transaction ends.
pub async fn serialize(tx: &Tx<'_>, family: Uuid) -> Result<(), StoreError> {
    query(tx, &SERIALIZE, &[(&family, Type::UUID)]).await?;
    Ok(())
}

/// The family's job in flight: its id and status.
pub async fn in_flight(
    tx: &Tx<'_>,
    family: Uuid,
) -> Result<Option<(Uuid, ArchiveStatus)>, StoreError> {
    Ok(maybe(tx, &IN_FLIGHT, &[(&family, Type::UUID)])
        .await?
        .map(|r| (r.get("id"), r.get("status"))))
}

/// Makes `user` one of the job's requesters (once).
pub async fn join(tx: &Tx<'_>, archive: Uuid, family: Uuid, user: Uuid) -> Result<(), StoreError> {
    let params = [
        (&archive as _, Type::UUID),
        (&family as _, Type::UUID),
        (&user as _, Type::UUID),
    ];
    query(tx, &JOIN, &params).await?;
    Ok(())
}

/// The jobs of the UTC day that count.
#[derive(Debug, Clone, Copy)]
pub struct Today {
    /// The family's.
    pub family: i64,
    /// Those the caller asked for.
    pub mine: i64,
    /// Seconds until the day ends.
    pub seconds_left: u32,
}

/// The jobs of the UTC day that count, for the family and for `user`.
pub async fn today(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<Today, StoreError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    let row = one(tx, &TODAY, &params).await?;
    Ok(Today {
        family: row.get("family"),
        mine: row.get("mine"),
        seconds_left: row.get::<_, i32>("day_left").max(1).unsigned_abs(),
    })
}

/// A new job, asked for by `user` (who becomes its first requester).
pub async fn queue(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<Uuid, StoreError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    let id: Uuid = one(tx, &QUEUE, &params).await?.get("id");
    join(tx, id, family, user).await?;
    Ok(id)
}

/// An archive as one of its requesters or a keeper sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub family_id: Uuid,
    pub family_name: String,
    pub status: ArchiveStatus,
    pub size_bytes: i64,
    pub parts_total: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Past its time, or deleted.
    pub expired: bool,
    pub failure: Option<String>,
}

/// The archive, if the caller may see it (as the caller: RLS decides).
pub async fn seen(tx: &Tx<'_>, archive: Uuid) -> Result<Option<Seen>, StoreError> {
    Ok(maybe(tx, &SEEN, &[(&archive, Type::UUID)])
        .await?
        .map(|r| Seen {
            family_id: r.get("family_id"),
            family_name: r.get("family_name"),
            status: r.get("status"),
            size_bytes: r.get("size_bytes"),
            parts_total: r.get("parts_total"),
            expires_at: r.get("expires_at"),
            expired: r.get("expired"),
            failure: r.get("failure"),
        }))
}

/// A job a worker claimed.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub family_id: Uuid,
    pub attempts: i32,
    pub parts_total: Option<i32>,
    pub parts_done: i32,
    /// A multipart upload a worker that died left behind (key, upload id).
    pub abandoned: Option<(String, String)>,
}

impl Job {
    /// Claims the next job (a lease of `lease_seconds`).
    pub async fn claim(tx: &Tx<'_>, lease_seconds: f64) -> Result<Option<Job>, StoreError> {
        Ok(maybe(tx, &CLAIM, &[(&lease_seconds, Type::FLOAT8)])
            .await?
            .map(|r| Job {
                id: r.get("id"),
                family_id: r.get("family_id"),
                attempts: r.get("attempts"),
                parts_total: r.get("parts_total"),
                parts_done: r.get("parts_done"),
                abandoned: r
                    .get::<_, Option<String>>("multipart_key")
                    .zip(r.get("multipart_upload_id")),
            }))
    }

    /// Lists what it holds, once, and how many parts.
    pub async fn list(&self, tx: &Tx<'_>, items: &[Item], parts: i32) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = items.iter().map(|i| i.recording_id).collect();
        let item_parts: Vec<i32> = items.iter().map(|i| i.part).collect();
        let positions: Vec<i32> = items.iter().map(|i| i.position).collect();
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        let times: Vec<DateTime<Utc>> = items.iter().map(|i| i.recorded_at).collect();
        let durations: Vec<f64> = items.iter().map(|i| i.duration_seconds).collect();
        let speakers: Vec<&str> = items.iter().map(|i| i.speaker.as_str()).collect();
        let prompt_ids: Vec<Option<Uuid>> = items.iter().map(|i| i.prompt_id).collect();
        let prompts: Vec<Option<&str>> = items.iter().map(|i| i.prompt_text.as_deref()).collect();
        let titles: Vec<Option<&str>> = items.iter().map(|i| i.title.as_deref()).collect();
        let audio: Vec<i64> = items.iter().map(|i| i.audio_size_bytes).collect();
        let waveform: Vec<Option<i64>> = items.iter().map(|i| i.waveform_size_bytes).collect();
        let audio_sha256: Vec<Option<&[u8]>> =
            items.iter().map(|i| i.audio_sha256.as_deref()).collect();
        let waveform_sha256: Vec<Option<&[u8]>> =
            items.iter().map(|i| i.waveform_sha256.as_deref()).collect();
        let params = [
            (&self.id as _, Type::UUID),
            (&ids as _, Type::UUID_ARRAY),
            (&item_parts as _, Type::INT4_ARRAY),
            (&positions as _, Type::INT4_ARRAY),
            (&names as _, Type::TEXT_ARRAY),
            (&times as _, Type::TIMESTAMPTZ_ARRAY),
            (&durations as _, Type::FLOAT8_ARRAY),
            (&speakers as _, Type::TEXT_ARRAY),
            (&prompt_ids as _, Type::UUID_ARRAY),
            (&prompts as _, Type::TEXT_ARRAY),
            (&titles as _, Type::TEXT_ARRAY),
            (&audio as _, Type::INT8_ARRAY),
            (&waveform as _, Type::INT8_ARRAY),
            (&audio_sha256 as _, Type::BYTEA_ARRAY),
            (&waveform_sha256 as _, Type::BYTEA_ARRAY),
        ];
        query(tx, &INSERT_ITEMS, &params).await?;
        let params = [(&self.id as _, Type::UUID), (&parts as _, Type::INT4)];
        query(tx, &SET_PARTS, &params).await?;
        Ok(())
    }

    /// Its items in parts `from` to `to`, in order.
    pub async fn items(&self, tx: &Tx<'_>, from: i32, to: i32) -> Result<Vec<Item>, StoreError> {
        let params = [
            (&self.id as _, Type::UUID),
            (&from as _, Type::INT4),
            (&to as _, Type::INT4),
        ];
        let rows = query(tx, &ITEMS, &params).await?;
        Ok(rows
            .iter()
            .map(|r| Item {
                recording_id: r.get("recording_id"),
                part: r.get("part"),
                position: 0,
                name: r.get("name"),
                recorded_at: r.get("recorded_at"),
                duration_seconds: r.get("duration_seconds"),
                speaker: r.get("speaker"),
                prompt_id: r.get("prompt_id"),
                prompt_text: r.get("prompt_text"),
                title: r.get("title"),
                audio_size_bytes: r.get("audio_size_bytes"),
                waveform_size_bytes: r.get("waveform_size_bytes"),
                audio_sha256: r.get("audio_sha256"),
                waveform_sha256: r.get("waveform_sha256"),
                missing: r.get("missing"),
                damaged: r.get("damaged"),
            })
            .collect())
    }

    /// Records the part being written (its multipart upload).
    pub async fn part_started(
        &self,
        tx: &Tx<'_>,
        key: &str,
        upload: &str,
    ) -> Result<(), StoreError> {
        let params = [
            (&self.id as _, Type::UUID),
            (&key as _, Type::TEXT),
            (&upload as _, Type::TEXT),
        ];
        query(tx, &PART_STARTED, &params).await?;
        Ok(())
    }

    /// A dead worker's multipart upload is aborted.
    pub async fn forget_upload(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &FORGET_UPLOAD, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// Records a written part (`bytes` long) and what writing it found out of its items;
    /// false when the job was taken from this worker meanwhile.
    pub async fn part_done(
        &self,
        tx: &Tx<'_>,
        part: i32,
        bytes: i64,
        items: &[Item],
    ) -> Result<bool, StoreError> {
        let ids: Vec<Uuid> = items.iter().map(|i| i.recording_id).collect();
        let audio: Vec<Option<&[u8]>> = items.iter().map(|i| i.audio_sha256.as_deref()).collect();
        let waveform: Vec<Option<&[u8]>> =
            items.iter().map(|i| i.waveform_sha256.as_deref()).collect();
        let missing: Vec<bool> = items.iter().map(|i| i.missing).collect();
        let damaged: Vec<bool> = items.iter().map(|i| i.damaged).collect();
        let params = [
            (&self.id as _, Type::UUID),
            (&ids as _, Type::UUID_ARRAY),
            (&audio as _, Type::BYTEA_ARRAY),
            (&waveform as _, Type::BYTEA_ARRAY),
            (&missing as _, Type::BOOL_ARRAY),
            (&damaged as _, Type::BOOL_ARRAY),
        ];
        query(tx, &WRITTEN, &params).await?;
        let params = [
            (&self.id as _, Type::UUID),
            (&part as _, Type::INT4),
            (&bytes as _, Type::INT8),
        ];
        Ok(!query(tx, &PART_DONE, &params).await?.is_empty())
    }

    /// Done: kept for its week, unless a requester left or the family was deleted.
    pub async fn done(&self, tx: &Tx<'_>) -> Result<Option<Done>, StoreError> {
        Ok(maybe(tx, &DONE, &[(&self.id, Type::UUID)])
            .await?
            .map(|r| Done {
                live: r.get("live"),
                whole: r.get("whole"),
                requesters: r.get("requesters"),
            }))
    }

    /// Its requesters were told.
    pub async fn emailed(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &EMAILED, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// Back in the queue: the next run goes on with its next part.
    pub async fn pause(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &PAUSE, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// Cancelled: its family was deleted.
    pub async fn cancel(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &CANCEL, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }

    /// A failed attempt, after which it is queued again, or failed for good after
    /// `attempts`; whether for good.
    pub async fn fail(&self, tx: &Tx<'_>, reason: &str, attempts: i32) -> Result<bool, StoreError> {
        let params = [
            (&self.id as _, Type::UUID),
            (&reason as _, Type::TEXT),
            (&attempts as _, Type::INT4),
        ];
        Ok(maybe(tx, &FAIL, &params)
            .await?
            .is_some_and(|r| r.get::<_, ArchiveStatus>("status") == ArchiveStatus::Failed))
    }

    /// Failed for good: its workers kept dying.
    pub async fn give_up(&self, tx: &Tx<'_>, reason: &str) -> Result<(), StoreError> {
        let params = [(&self.id as _, Type::UUID), (&reason as _, Type::TEXT)];
        query(tx, &GIVE_UP, &params).await?;
        Ok(())
    }
}

/// How a finished job came out.
#[derive(Debug, Clone)]
pub struct Done {
    /// Its family is not deleted.
    pub live: bool,
    /// Every requester is still in the family: it is kept.
    pub whole: bool,
    /// Its requesters still in the family.
    pub requesters: Vec<Uuid>,
}

/// A recording as an archive lists it.
#[derive(Debug, Clone)]
pub struct Item {
    pub recording_id: Uuid,
    pub part: i32,
    /// Its place in the listing (when it is made).
    pub position: i32,
    /// The file name without extension, unique in the archive.
    pub name: String,
    pub recorded_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub speaker: String,
    pub prompt_id: Option<Uuid>,
    pub prompt_text: Option<String>,
    pub title: Option<String>,
    pub audio_size_bytes: i64,
    pub waveform_size_bytes: Option<i64>,
    /// The SHA-256 of its audio and waveform: at listing the recording's (what the bytes
    /// read must hash to; None when not yet known), once written the bytes'.
    pub audio_sha256: Option<Vec<u8>>,
    pub waveform_sha256: Option<Vec<u8>>,
    /// Its object was gone (purged meanwhile): left out.
    pub missing: bool,
    /// No copy of its bytes matched its SHA-256: left out, listed as damaged.
    pub damaged: bool,
}

impl Item {
    /// The audio's path in the ZIP, under the archive's folder.
    pub fn audio_path(&self) -> String {
        format!("recordings/{}.m4a", self.name)
    }

    /// The waveform's path, when the recording has one.
    pub fn waveform_path(&self) -> Option<String> {
        self.waveform_size_bytes
            .map(|_| format!("recordings/{}.waveform.json", self.name))
    }
}

/// Archives past their time, up to `limit`: (archive, family).
pub async fn expired(tx: &Tx<'_>, limit: i64) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
    let rows = query(tx, &EXPIRED, &[(&limit, Type::INT8)]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("id"), r.get("family_id")))
        .collect())
}

/// Archives whose objects are gone: deleted, their lists dropped.
pub async fn deleted(tx: &Tx<'_>, ids: &[Uuid]) -> Result<(), StoreError> {
    query(tx, &DELETED, &[(&ids, Type::UUID_ARRAY)]).await?;
    Ok(())
}

/// The family's archives go (it is being deleted).
pub async fn forget_family(tx: &Tx<'_>, family: Uuid) -> Result<(), StoreError> {
    query(tx, &FORGET_FAMILY, &[(&family, Type::UUID)]).await?;
    Ok(())
}

/// The archives `user` asked for go with them; each one's other requesters still in the
/// family: (archive, requesters).
pub async fn withdraw(
    tx: &Tx<'_>,
    family: Uuid,
    user: Uuid,
) -> Result<Vec<(Uuid, Vec<Uuid>)>, StoreError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    let rows = query(tx, &WITHDRAW, &params).await?;
    let mut withdrawn: Vec<(Uuid, Vec<Uuid>)> = Vec::new();
    for r in &rows {
        let (archive, other): (Uuid, Uuid) = (r.get("archive_id"), r.get("user_id"));
        match withdrawn.last_mut() {
            Some((a, others)) if *a == archive => others.push(other),
            _ => withdrawn.push((archive, vec![other])),
        }
    }
    Ok(withdrawn)
}
