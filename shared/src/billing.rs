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

/// A subscription's status, as Stripe and `entitlements.status` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Active,
    Trialing,
    PastDue,
    Unpaid,
    Paused,
    Incomplete,
    IncompleteExpired,
    Canceled,
}

impl SubscriptionStatus {
    /// From Stripe's (and the database's) spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "trialing" => Self::Trialing,
            "past_due" => Self::PastDue,
            "unpaid" => Self::Unpaid,
            "paused" => Self::Paused,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    /// Stripe's (and the database's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Trialing => "trialing",
            Self::PastDue => "past_due",
            Self::Unpaid => "unpaid",
            Self::Paused => "paused",
            Self::Incomplete => "incomplete",
            Self::IncompleteExpired => "incomplete_expired",
            Self::Canceled => "canceled",
        }
    }

    /// Paid for, or Stripe still retrying a payment: the plan's limits apply.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue)
    }

    /// Over for good: it will never charge again.
    pub fn has_ended(self) -> bool {
        matches!(self, Self::Canceled | Self::IncompleteExpired)
    }

    /// Whether uploads may go on (contract §3's table): live (Stripe still retrying
    /// included), or cancelled (back on free); not while unpaid, paused or incomplete.
    pub fn allows_uploads(self) -> bool {
        self.is_live() || self == Self::Canceled
    }

    /// Whether the subscription may still charge the family: anything not ended, unless
    /// a paid (or trial) period is set to end (`cancel_at_period_end`).
    pub fn may_charge(self, cancel_at_period_end: bool) -> bool {
        let ending = matches!(self, Self::Active | Self::Trialing) && cancel_at_period_end;
        !self.has_ended() && !ending
    }
}

#[cfg(test)]
mod tests {
    use super::SubscriptionStatus as S;

    #[test]
    fn a_family_may_be_charged_until_its_subscription_ends_or_is_set_to_end() {
        let all = [
            S::Active,
            S::Trialing,
            S::PastDue,
            S::Unpaid,
            S::Paused,
            S::Incomplete,
            S::IncompleteExpired,
            S::Canceled,
        ];
        for status in all {
            assert_eq!(S::parse(status.as_str()), Some(status));
            let ended = matches!(status, S::Canceled | S::IncompleteExpired);
            assert_eq!(status.may_charge(false), !ended, "{status:?}");
        }
        assert!(!S::Active.may_charge(true));
        assert!(!S::Trialing.may_charge(true));
        // Past due, unpaid or paused: Stripe still holds it, whatever the flag says.
        for status in [S::PastDue, S::Unpaid, S::Paused, S::Incomplete] {
            assert!(status.may_charge(true), "{status:?}");
        }
    }
}
