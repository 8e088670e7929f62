//! What the billing functions share: who keeps a family, and redirect URLs limited to
//! the allowed origins.

use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::App;
use crate::auth::User;
use crate::config::origin_of;
use crate::error::ApiError;

/// The family's name and Stripe customer, if the caller is one of its keepers (read as
/// the caller, so RLS decides); otherwise 403.
pub async fn keeper_of(
    app: &App,
    user: &User,
    family_id: Uuid,
) -> Result<(String, Option<String>), ApiError> {
    let row = app
        .db
        .as_user(user, async |tx| {
            let rows = tx
                .query_typed(
                    "SELECT f.name, m.role, e.stripe_customer_id FROM public.families f
                     JOIN public.family_members m ON m.family_id = f.id AND m.user_id = (SELECT auth.uid())
                     LEFT JOIN public.entitlements e ON e.family_id = f.id
                     WHERE f.id = $1",
                    &[(&family_id, Type::UUID)],
                )
                .await?;
            Ok(rows.first().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, Option<String>>(2))))
        })
        .await?;
    match row {
        Some((name, role, customer)) if role == "keeper" => Ok((name, customer)),
        _ => Err(ApiError::Forbidden(
            "Only a keeper of this family can manage billing",
        )),
    }
}

/// Refuses a redirect URL whose parsed origin is not one of the allowed origins.
pub fn allowed_redirect(app: &App, field: &str, url: &str) -> Result<(), ApiError> {
    match origin_of(url) {
        Some(origin) if app.config.allowed_redirect_origins.contains(&origin) => Ok(()),
        _ => Err(ApiError::Validation(format!(
            "{field}: must be a URL of the app"
        ))),
    }
}
