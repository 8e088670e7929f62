//! What the billing functions share: redirect URLs limited to the allowed origins.

use crate::App;
use crate::config::origin_of;
use crate::error::ApiError;

/// Why a member who is not a keeper is refused.
pub const BILLING_IS_FOR_KEEPERS: &str = "Only a keeper of this family can manage billing";

/// Refuses a redirect URL whose parsed origin is not one of the allowed origins.
pub fn allowed_redirect(app: &App, field: &str, url: &str) -> Result<(), ApiError> {
    match origin_of(url) {
        Some(origin) if app.config.allowed_redirect_origins.contains(&origin) => Ok(()),
        _ => Err(ApiError::Validation(format!(
            "{field}: must be a URL of the app"
        ))),
    }
}
