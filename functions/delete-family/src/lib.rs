//! delete-family: a keeper deletes the family, typing its name to confirm. From then on
//! it is invisible to every member (RLS, and every function answers 404), its
//! recordings are in the trash, and a keeper can restore it for the trash retention;
//! after that the maintenance job purges it.

pub mod sql;

use chrono::{DateTime, Utc};
use garde::Validate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{ErrorCode, Operation};
use shared::http::{json_body, serve};
use shared::members::{Change, Family};
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
         within the trash retention. A paid subscription must be cancelled first \
         (SUBSCRIPTION_ACTIVE); an open Checkout session is expired.",
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
        (409, &[ErrorCode::SubscriptionActive]),
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

    // 2. One transaction as the service role (families are not users' to delete), on
    //    the family's checkout lock (no Checkout session can open meanwhile) with its
    //    members and row locked: the confirmation, the subscription, an open Checkout
    //    session expired, the family and its recordings into the trash, the change
    //    recorded.
    app.db
        .as_service(async |tx| {
            let family_id = [(&input.family_id as _, Type::UUID)];
            tx.query_typed(shared::sql::CHECKOUT_LOCK, &family_id)
                .await?;
            let family = Family::lock(tx, input.family_id, user.id).await?;
            family.kept_by(user.id)?;
            if input.confirm_name != family.name {
                return Err(ApiError::Validation(
                    "confirmName: must be the family's name, exactly".into(),
                ));
            }
            let billing = tx.query_typed(sql::SUBSCRIPTION, &family_id).await?;
            if billing.first().is_some_and(|r| r.get::<_, bool>(0)) {
                return Err(ApiError::SubscriptionActive);
            }
            let open = tx.query_typed(sql::OPEN_SESSION, &family_id).await?;
            if let Some(session) = open.first().map(|r| r.get::<_, String>(0)) {
                app.stripe()?.expire_checkout_session(&session).await?;
                tx.query_typed(sql::FORGET_SESSION, &family_id).await?;
            }
            let params = [
                (&input.family_id as _, Type::UUID),
                (&user.id as _, Type::UUID),
            ];
            let row = &tx.query_typed(sql::DELETE, &params).await?[0];
            let (deleted_at, restorable_until) = (row.get(0), row.get(1));
            let trashed: i64 = tx.query_typed(sql::TRASH, &family_id).await?[0].get(0);
            members::forget_archives(tx, family.id, None).await?;
            let details = json!({"recordingsTrashed": trashed});
            members::record(tx, family.id, user.id, Change::FamilyDeleted, None, details).await?;
            Ok(Output {
                family_id: input.family_id,
                deleted_at,
                restorable_until,
                recordings_trashed: trashed,
            })
        })
        .await
}
