//! From an upload to a recording, one way for whoever does it: finalize-recording for
//! the app, the maintenance sweep for an upload whose finalize never came (the phone
//! lost signal; the recording must not be lost with it), and a member's departure for
//! the uploads they leave behind. The objects as R2 holds them are checked against the
//! reservation, and their real size is charged together with the recording, in one
//! idempotent step (`Reservation::finalize`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::App;
use crate::r2::{R2, R2Error, WAVEFORM_CONTENT_TYPE};
use crate::store::StoreError;
use crate::store::recordings::{self, Departure, Reservation, Stored};

/// What R2 holds for a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// No audio object.
    Missing,
    /// An object whose size or type is not what was declared (`upload` or `waveform`).
    Mismatch {
        what: &'static str,
        arrived: DateTime<Utc>,
    },
    /// Audio whose bytes are not those whose SHA-256 was declared: never a recording.
    Corrupt,
    /// The audio, and the waveform when one was declared and arrived: the sizes charged
    /// and the checksums kept.
    Complete {
        audio: Stored,
        waveform: Option<Stored>,
        arrived: DateTime<Utc>,
    },
}

/// Where a reservation's objects are.
pub fn key(reservation: &Reservation) -> crate::r2::RecordingKey {
    crate::r2::RecordingKey {
        family_id: reservation.family_id,
        recording_id: reservation.id,
    }
}

/// HEADs the reservation's objects and checks the audio's SHA-256: the one the bucket
/// stored (it verified the bytes against it at the PUT) must be the declared one; a
/// bucket that stored none has the bytes hashed here. A waveform is optional (without
/// one the recording still plays) and hashed here (it is at most 256 KiB). A
/// reservation made before checksums existed is taken as it is: the audit hashes it.
pub async fn inspect(r2: &R2, reservation: &Reservation) -> Result<Upload, R2Error> {
    let key = key(reservation);
    let Some(audio) = r2.head(&key.audio()).await? else {
        return Ok(Upload::Missing);
    };
    // An object without a time is taken as arriving now (never as before a departure).
    let arrived = audio.last_modified.unwrap_or_else(Utc::now);
    if audio.size != reservation.audio_size
        || audio.content_type.as_deref() != Some(&reservation.content_type)
    {
        return Ok(Upload::Mismatch {
            what: "upload",
            arrived,
        });
    }
    let audio_sha256 = match (&reservation.audio_sha256, audio.sha256) {
        (None, _) => None,
        (Some(declared), Some(stored)) if *declared == stored => Some(stored),
        (Some(_), Some(_)) => return Ok(Upload::Corrupt),
        (Some(declared), None) => match r2.hash(&key.audio()).await? {
            Some(hashed) if hashed.sha256 == *declared => Some(hashed.sha256),
            Some(_) => return Ok(Upload::Corrupt),
            None => return Ok(Upload::Missing),
        },
    };
    let waveform = match reservation.waveform_size {
        None => None,
        Some(declared) => match r2.head(&key.waveform()).await? {
            None => None,
            Some(w)
                if w.size == declared
                    && w.content_type.as_deref() == Some(WAVEFORM_CONTENT_TYPE) =>
            {
                r2.hash(&key.waveform()).await?.map(|hashed| Stored {
                    size: hashed.size,
                    sha256: Some(hashed.sha256),
                })
            }
            Some(_) => {
                return Ok(Upload::Mismatch {
                    what: "waveform",
                    arrived,
                });
            }
        },
    };
    Ok(Upload::Complete {
        audio: Stored {
            size: audio.size,
            sha256: audio_sha256,
        },
        waveform,
        arrived,
    })
}

/// Deletes an upload whose audio is not what was declared (its waveform with it): nothing
/// of it is kept or charged.
pub async fn discard(r2: &R2, reservation: &Reservation) -> Result<(), R2Error> {
    let key = key(reservation);
    r2.delete(&[key.audio(), key.waveform()]).await
}

/// What became of an upload whose finalize may never come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Its object arrived (before its creator's departure, if they left): a recording.
    Saved,
    /// Nothing arrived: closed, its hold on the quota released (revoked for good when
    /// its creator left).
    Released,
    /// Its object came after its creator left: deleted, the reservation revoked.
    Refused,
    /// Its audio's bytes are not those declared: deleted, the reservation closed.
    Discarded,
    /// Its object is there but can't be a recording now (the quota is full, or it is
    /// unlike what was declared): kept open, with the reason, for a later try.
    Kept(&'static str),
}

/// Settles one open reservation by what R2 holds, as the sweep and a departure do: an
/// object that arrived (before any departure of its creator) becomes a recording, quota
/// permitting; one that came after a departure is deleted; a missing one releases its
/// hold.
pub async fn settle_one(
    app: &App,
    r2: &R2,
    reservation: &Reservation,
) -> anyhow::Result<Settlement> {
    let (audio, waveform, arrived) = match inspect(r2, reservation).await? {
        Upload::Missing => {
            app.db
                .as_service(async |tx| reservation.close(tx).await)
                .await?;
            return Ok(Settlement::Released);
        }
        Upload::Mismatch { arrived, .. } if !reservation.accepts(arrived) => {
            return refuse(app, r2, reservation).await;
        }
        Upload::Mismatch { .. } => return Ok(Settlement::Kept("it is unlike what was declared")),
        Upload::Corrupt => {
            discard(r2, reservation).await?;
            app.db
                .as_service(async |tx| reservation.close(tx).await)
                .await?;
            return Ok(Settlement::Discarded);
        }
        Upload::Complete {
            audio,
            waveform,
            arrived,
        } => (audio, waveform, arrived),
    };
    if !reservation.accepts(arrived) {
        return refuse(app, r2, reservation).await;
    }
    if matches!(reservation.departure, Some((Departure::Unknown, _))) {
        app.db
            .as_service(async |tx| reservation.arrived(tx).await)
            .await?;
    }
    let finalized = app
        .db
        .as_service(async |tx| {
            reservation
                .finalize(tx, None, &audio, waveform.as_ref())
                .await
        })
        .await;
    match finalized {
        Ok(_) => Ok(Settlement::Saved),
        Err(StoreError::OverQuota { .. }) => Ok(Settlement::Kept("the family's quota is full")),
        Err(e) => Err(e.into()),
    }
}

/// A departed member's upload that came too late: revoked, its objects deleted.
async fn refuse(app: &App, r2: &R2, reservation: &Reservation) -> anyhow::Result<Settlement> {
    app.db
        .as_service(async |tx| reservation.revoke(tx).await)
        .await?;
    let key = key(reservation);
    r2.delete(&[key.audio(), key.waveform()]).await?;
    Ok(Settlement::Refused)
}

/// What became of a departed member's unfinished uploads.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    /// Uploads whose audio had arrived: recordings now, theirs, in the family.
    pub saved: u32,
    /// Uploads that had not arrived: closed for good, their hold on the quota released.
    pub released: u32,
}

/// Settles the uploads of someone who just left `family` (after their departure was
/// committed): an upload whose audio arrived before they left becomes a recording (a
/// recording is never lost because its maker left), one that never arrived is revoked,
/// one that came after is deleted. What can't be settled now (the bucket is down, the
/// quota is full, the upload is unlike what was declared) is left to the sweep, which
/// decides the same way; so this never fails the change it follows.
pub async fn settle(app: &App, family: Uuid, user: Uuid) -> Settled {
    let mut settled = Settled::default();
    let result = async {
        let r2 = app.r2()?;
        let departed = app
            .db
            .as_service(async |tx| recordings::departed(tx, family, user).await)
            .await?;
        for reservation in &departed {
            // Boxed: the settling future is deep, and the departure's handler holds it.
            match Box::pin(settle_one(app, r2, reservation)).await? {
                Settlement::Saved => settled.saved += 1,
                Settlement::Released | Settlement::Refused | Settlement::Discarded => {
                    settled.released += 1
                }
                Settlement::Kept(_) => {}
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "a departed member's uploads are left to the sweep");
    }
    settled
}
