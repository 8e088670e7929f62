//! delete-family: a keeper deletes the family, typing its name to confirm. From then on
//! it is invisible to every member (RLS, and every function answers 404), its
//! recordings are in the trash, and anyone who kept it in the last 30 days (all of whom
//! are emailed) can restore it for the trash retention; after that the maintenance job
//! purges it.

pub mod sql;

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::billing::SubscriptionStatus;
use shared::db::Tx;
use shared::http::{json_body, serve};
use shared::members::{Change, Family};
use shared::outbox::{self, Mail};
use shared::{ApiError, App, Function, Methods, Request, Response, members, telemetry};
use tokio_postgres::types::Type;
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
    Function::http(NAME, |app, req| Box::pin(handle(app, req)))
}

/// Handles one invocation.
pub async fn handle(app: &App, req: Request) -> Response {
    serve(app, NAME, Methods::Post, &req, async |req| {
        run(app, req).await
    })
    .await
}

async fn run(app: &App, req: &Request) -> Result<Output, ApiError> {
    // 1. Who is asking, and the confirmation.
    let user = app.auth.verify(req.headers()).await?;
    let input: Input = json_body(req)?;
    telemetry::set_family(input.family_id);

    // Stripe is never called while the family's rows are locked (that would stall its
    // uploads for as long as Stripe takes): the checks come first, then the open
    // Checkout session is expired with no lock held, then the deletion re-checks all of
    // it under the locks. A session opened in between is expired in one more round; a
    // third is a conflict.
    let mut expired = None;
    for _ in 0..2 {
        // 2. The caller keeps the family, typed its name, and no subscription may still
        //    charge it (a refused delete expires nothing); its open Checkout session.
        let open = app
            .db
            .as_service(async |tx| {
                let family = Family::lock(tx, input.family_id, user.id).await?;
                deletable(tx, &family, user.id, &input.confirm_name).await?;
                open_session(tx, input.family_id, expired.as_deref()).await
            })
            .await?;
        // 3. Nobody can pay through it from now on.
        if let Some(session) = &open {
            app.stripe()?.expire_checkout_session(session).await?;
            expired = open;
        }
        // 4. One transaction as the service role (families are not users' to delete),
        //    on the family's checkout lock (no Checkout session can open meanwhile) with
        //    its members and row locked: all of the above again, the family and its
        //    recordings into the trash, its archives gone and its invites revoked (a
        //    restore brings no old code back), the change recorded.
        let deleted = app
            .db
            .as_service(async |tx| {
                let family_id = [(&input.family_id as _, Type::UUID)];
                tx.query_typed(shared::sql::CHECKOUT_LOCK, &family_id)
                    .await?;
                if open_session(tx, input.family_id, expired.as_deref())
                    .await?
                    .is_some()
                {
                    return Ok(None);
                }
                let family = Family::lock(tx, input.family_id, user.id).await?;
                deletable(tx, &family, user.id, &input.confirm_name).await?;
                tx.query_typed(sql::FORGET_SESSION, &family_id).await?;
                let params = [
                    (&input.family_id as _, Type::UUID),
                    (&user.id as _, Type::UUID),
                ];
                let row = &tx.query_typed(sql::DELETE, &params).await?[0];
                let (deleted_at, restorable_until) = (row.get(0), row.get(1));
                let trashed: i64 = tx.query_typed(sql::TRASH, &family_id).await?[0].get(0);
                members::forget_archives(tx, family.id).await?;
                members::revoke_invites(tx, family.id).await?;
                let details = json!({"recordingsTrashed": trashed});
                members::record(tx, family.id, user.id, Change::FamilyDeleted, None, details)
                    .await?;
                let mail = Mail::FamilyDeleted {
                    actor: members::name_of(tx, user.id).await?,
                    until: restorable_until,
                };
                let mails = members::tell_keepers(tx, family.id, &mail).await?;
                let output = Output {
                    family_id: input.family_id,
                    deleted_at,
                    restorable_until,
                    recordings_trashed: trashed,
                };
                Ok(Some((output, mails)))
            })
            .await?;
        // 5. Everyone who kept the family in the last 30 days is told, and how to undo it.
        if let Some((output, mails)) = deleted {
            outbox::deliver(app, &mails).await;
            return Ok(output);
        }
    }
    Err(ApiError::Conflict(
        "A payment was being started for this family: try again in a moment",
    ))
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
    let rows = tx
        .query_typed(sql::SUBSCRIPTION, &[(&family.id, Type::UUID)])
        .await?;
    if let Some(row) = rows.first() {
        let status = SubscriptionStatus::parse(row.get(0));
        // A status we don't know is taken as one that may charge.
        if status.is_none_or(|s| s.may_charge(row.get(1))) {
            return Err(ApiError::SubscriptionActive);
        }
    }
    Ok(())
}

/// The family's open Checkout session, other than `except` (expired already).
async fn open_session(
    tx: &Tx<'_>,
    family: Uuid,
    except: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let params = [(&family as _, Type::UUID), (&except as _, Type::TEXT)];
    let rows = tx.query_typed(sql::OPEN_SESSION, &params).await?;
    Ok(rows.first().map(|r| r.get(0)))
}
