//! delete-family: a keeper deletes the family, typing its name to confirm. From then on
//! it is invisible to every member (RLS, and every function answers 404), its
//! recordings are in the trash, and anyone who kept it in the last 30 days (all of whom
//! are emailed) can restore it for the trash retention; after that the maintenance job
//! purges it.

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::auth::User;
use shared::db::Tx;
use shared::outbox::{self, Mail};
use shared::store::entitlements::{self, CheckoutSession};
use shared::store::families::{Change, Family};
use shared::store::{archives, invites, recordings};
use shared::{ApiError, App, Function, members};
use uuid::Uuid;

/// The function's name, as routed and deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

#[derive(Debug, Deserialize, Validate, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "DeleteFamilyInput")]
pub struct Input {
    /// A family the caller keeps.
    #[garde(skip)]
    pub family_id: Uuid,
    /// The family's name, exactly: the typed confirmation.
    #[garde(length(chars, min = 1, max = 100))]
    pub confirm_name: String,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "DeleteFamilyOutput")]
pub struct Output {
    pub family_id: Uuid,
    pub deleted_at: DateTime<Utc>,
    /// Until when restore-family brings it back; the maintenance job purges it after.
    pub restorable_until: DateTime<Utc>,
    /// Recordings that went into the trash with it.
    pub recordings_trashed: i64,
}

/// This function in the OpenAPI document.
pub fn api() -> Operation {
    Operation::post::<Input, Output>(
        NAME,
        "Delete a family",
        "A keeper deletes the family, typing its name to confirm. It disappears for every \
         member at once, its recordings go to the trash, and restore-family brings it back \
         within the trash retention. A subscription that may still charge the family must \
         be cancelled first (SUBSCRIPTION_ACTIVE: anything but canceled, \
         incomplete_expired, or active/trialing set to cancel at the period end); an open \
         Checkout session is expired.",
        || {
            let family = json!("0b7f8a8e-8f6e-4b5a-9a43-2f0c1f7f5e21");
            (
                json!({"familyId": family, "confirmName": "The Garcias"}),
                json!({"familyId": family, "deletedAt": "2026-03-14T18:30:00Z",
                       "restorableUntil": "2026-04-13T18:30:00Z", "recordingsTrashed": 42}),
            )
        },
    )
    .errors(&[
        (400, &[ErrorCode::ValidationFailed]),
        (403, &[ErrorCode::Forbidden]),
        (404, &[ErrorCode::NotFound]),
        (409, &[ErrorCode::SubscriptionActive, ErrorCode::Conflict]),
    ])
}

/// This function, as its Lambda binary and the local runner serve it.
pub fn function() -> Function {
    Function::http(shared::manifest!(), |a, c, i| Box::pin(run(a, c, i)))
}

async fn run(app: &App, user: User, input: Input) -> Result<Output, ApiError> {
    // Stripe is never called while the family's rows are locked (that would stall its
    // uploads for as long as Stripe takes): the checks come first, then the open
    // Checkout session is expired with no lock held, then the deletion re-checks all of
    // it under the locks. A session opened in between is expired in one more round; a
    // third is a conflict.
    let mut expired: Option<String> = None;
    for _ in 0..2 {
        // 1. The caller keeps the family, typed its name, and no subscription may still
        //    charge it (a refused delete expires nothing); its open Checkout session.
        let open = app
            .db
            .as_service(async |tx| {
                let family = members::lock(tx, input.family_id, user.id).await?;
                deletable(tx, &family, user.id, &input.confirm_name).await?;
                open_session(tx, input.family_id, expired.as_deref()).await
            })
            .await?;
        // 2. Nobody can pay through it from now on.
        if let Some(session) = open {
            app.stripe()?.expire_checkout_session(&session).await?;
            expired = Some(session);
        }
        // 3. The deletion, if no session opened meanwhile; the emails after it.
        if let Some((output, mails)) = delete(app, &user, &input, expired.as_deref()).await? {
            outbox::deliver(app, &mails).await;
            return Ok(output);
        }
    }
    Err(ApiError::Conflict(
        "A payment was being started for this family: try again in a moment",
    ))
}

/// One transaction as the service role (families are not users' to delete), on the
/// family's checkout lock (no Checkout session can open meanwhile) with its members and
/// row locked: the checks again, the family and its recordings into the trash, its
/// archives gone and its invites revoked (a restore brings no old code back), the
/// change recorded and everyone who kept it in the last 30 days told. None when a
/// Checkout session opened since the one `expired`.
async fn delete(
    app: &App,
    user: &User,
    input: &Input,
    expired: Option<&str>,
) -> Result<Option<(Output, Vec<Uuid>)>, ApiError> {
    app.db
        .as_service(async |tx| {
            entitlements::checkout_lock(tx, input.family_id).await?;
            if open_session(tx, input.family_id, expired).await?.is_some() {
                return Ok(None);
            }
            let family = members::lock(tx, input.family_id, user.id).await?;
            deletable(tx, &family, user.id, &input.confirm_name).await?;
            CheckoutSession::forget(tx, family.id).await?;
            let (deleted_at, restorable_until) = family.delete(tx, user.id).await?;
            let trashed = recordings::trash_family(tx, family.id).await?;
            archives::forget_family(tx, family.id).await?;
            invites::revoke_all(tx, family.id).await?;
            let details = json!({"recordingsTrashed": trashed});
            family
                .record(tx, user.id, Change::FamilyDeleted, None, details)
                .await?;
            let actor = members::called(tx, user.id).await?;
            let mail = Mail::FamilyDeleted {
                actor,
                until: restorable_until,
            };
            let mails = members::tell_keepers(tx, family.id, &mail).await?;
            let output = Output {
                family_id: family.id,
                deleted_at,
                restorable_until,
                recordings_trashed: trashed,
            };
            Ok(Some((output, mails)))
        })
        .await
}

/// Whether the caller may delete the family: they keep it, typed its name exactly,
/// and no subscription may still charge it.
async fn deletable(
    tx: &Tx<'_>,
    family: &Family,
    caller: Uuid,
    confirm_name: &str,
) -> Result<(), ApiError> {
    family.kept_by(caller)?;
    if confirm_name != family.name {
        return Err(ApiError::Validation(
            "confirmName: must be the family's name, exactly".into(),
        ));
    }
    match entitlements::followed(tx, family.id).await? {
        Some((status, ending)) if status.may_charge(ending) => Err(ApiError::SubscriptionActive),
        _ => Ok(()),
    }
}

/// The family's open Checkout session, other than `except` (expired already).
async fn open_session(
    tx: &Tx<'_>,
    family: Uuid,
    except: Option<&str>,
) -> Result<Option<String>, ApiError> {
    Ok(CheckoutSession::open(tx, family)
        .await?
        .map(|s| s.id)
        .filter(|id| Some(id.as_str()) != except))
}
