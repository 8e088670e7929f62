//! Who may do what in a family, as the functions ask it and answer it (contract §8):
//! the caller's membership as RLS shows it, a member's standing share-locked for a
//! write on their behalf, the family locked for a change of who belongs, and what a
//! departure takes with it. The statements are the families store's.

use uuid::Uuid;

use crate::App;
use crate::auth::User;
use crate::db::Tx;
use crate::error::ApiError;
use crate::outbox::{self, Mail};
use crate::store::families::{self, Family, Leaving, Membership, Refusal, Role, Standing};
use crate::store::{archives, recordings};

/// The refusal for a caller who doesn't belong to the family (or there is none).
pub const NOT_A_MEMBER: &str = "You are not a member of this family";
/// The refusal for a member who doesn't keep it.
pub const NOT_A_KEEPER: &str = "Only a keeper of this family can do this";
/// What a deleted family is, to its members.
pub const GONE: &str = "Family not found";
/// Why a change that would leave no keeper is refused.
pub const LAST_KEEPER: &str = "A family needs a keeper: make someone else a keeper first";

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotAMember => ApiError::Forbidden(NOT_A_MEMBER),
            Refusal::NotAKeeper => ApiError::Forbidden(NOT_A_KEEPER),
            Refusal::Gone => ApiError::NotFound(GONE),
            Refusal::LastKeeper => ApiError::LastKeeper(LAST_KEEPER),
        }
    }
}

/// The caller's membership of the family, read as the caller (RLS decides): None when
/// they don't belong to it; 404 when it is theirs but deleted.
pub async fn membership(
    app: &App,
    user: &User,
    family: Uuid,
) -> Result<Option<Membership>, ApiError> {
    app.db
        .as_user(user, async |tx| {
            match Membership::of_caller(tx, family).await? {
                families::Seen::Member(membership) => Ok(Some(membership)),
                families::Seen::Deleted => Err(ApiError::NotFound(GONE)),
                families::Seen::Nothing => Ok(None),
            }
        })
        .await
}

/// The caller's membership, if they keep the family; otherwise 403 with `refusal`.
pub async fn keeper(
    app: &App,
    user: &User,
    family: Uuid,
    refusal: &'static str,
) -> Result<Membership, ApiError> {
    match membership(app, user, family).await? {
        Some(m) if m.role == Role::Keeper => Ok(m),
        _ => Err(ApiError::Forbidden(refusal)),
    }
}

/// A member's role, for a write on their behalf in this transaction: their membership
/// share-locked until it commits (a removal waits for the write, or the write sees the
/// removal). 403 for a non-member, 404 once the family is deleted.
pub async fn standing(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<Role, ApiError> {
    match Membership::lock(tx, family, user).await? {
        Standing::Member(role) => Ok(role),
        Standing::Deleted => Err(ApiError::NotFound(GONE)),
        Standing::NotAMember => Err(ApiError::Forbidden(NOT_A_MEMBER)),
    }
}

/// The family, its members and row locked for a change; 403 for a caller who doesn't
/// belong to it (whether or not it exists).
pub async fn lock(tx: &Tx<'_>, family: Uuid, caller: Uuid) -> Result<Family, ApiError> {
    Family::lock(tx, family, caller)
        .await?
        .ok_or(ApiError::Forbidden(NOT_A_MEMBER))
}

/// Takes someone out of the family (after [`lock`]): their codes revoked, a removal
/// remembered, their open uploads marked (only what arrived before now can become a
/// recording: `recordings::settle` decides once this commits), and the archives they
/// asked for withdrawn. Returns the emails owed to the archives' other requesters, to
/// [`outbox::deliver`] after the commit.
pub async fn depart(
    tx: &Tx<'_>,
    family: &Family,
    user: Uuid,
    leaving: Leaving,
) -> Result<Vec<Uuid>, ApiError> {
    family.remove(tx, user, leaving).await?;
    recordings::depart(tx, family.id, user).await?;
    let mut mails = Vec::new();
    for (archive_id, others) in archives::withdraw(tx, family.id, user).await? {
        let mail = Mail::ArchiveWithdrawn { archive_id };
        mails.extend(outbox::queue(tx, family.id, &others, &mail).await?);
    }
    Ok(mails)
}

/// Queues `mail` to everyone who kept the family in the last 30 days (after the change
/// is recorded, so the one it took the role from is among them).
pub async fn tell_keepers(tx: &Tx<'_>, family: Uuid, mail: &Mail) -> Result<Vec<Uuid>, ApiError> {
    let keepers = families::recent_keepers(tx, family).await?;
    Ok(outbox::queue(tx, family, &keepers, mail).await?)
}

/// What the family's emails call someone.
pub async fn called(tx: &Tx<'_>, user: Uuid) -> Result<String, ApiError> {
    Ok(families::Person::get(tx, user).await?.called())
}
