//! Who belongs to a family, as what, and its changes (contract §8): the member rows
//! locked in one order, the family read after them, the rules every change keeps (a
//! family never loses its last keeper), and each change appended to `family_events`.
//!
//! The one lock order, everywhere: a family's member rows first (all of them, in user
//! order, by a change of who belongs; the caller's one, shared, by a write on a
//! member's behalf: `lock_membership()`), then the family row, then its invites (a
//! redemption, which writes a member row that doesn't exist yet, share-locks the family
//! and then its invite). Two changes at once queue instead of deadlocking, and the
//! later one sees what the first did.

use crate::db::Tx;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::api::Role;
use crate::outbox::{self, Mail};
use crate::{ApiError, recordings};

/// The statements of this module, as the service role.
pub mod sql {
    /// Every member of the family, their rows locked in user order.
    pub const LOCK_MEMBERS: &str = "
        SELECT user_id, role FROM public.family_members WHERE family_id = $1
        ORDER BY user_id FOR UPDATE";

    /// The family, its row locked (after its members'): name, when it was deleted,
    /// whether the trash retention still allows a restore, whether a purge claimed it.
    pub const LOCK_FAMILY: &str = "
        SELECT name, deleted_at, deleted_at > now() - public.trash_retention(),
               purge_started_at IS NOT NULL
        FROM public.families WHERE id = $1 FOR UPDATE";

    /// A member's standing for a write on their behalf: their row share-locked, then
    /// the family read afresh (the role, 'deleted', or NULL).
    pub const LOCK_MEMBERSHIP: &str = "SELECT public.lock_membership($1, $2)";

    /// A member out of the family.
    pub const REMOVE: &str =
        "DELETE FROM public.family_members WHERE family_id = $1 AND user_id = $2";

    /// A member's new role.
    pub const SET_ROLE: &str =
        "UPDATE public.family_members SET role = $3 WHERE family_id = $1 AND user_id = $2";

    /// Someone becomes a keeper of the family (a member, or someone who was removed).
    pub const MAKE_KEEPER: &str = "
        INSERT INTO public.family_members (family_id, user_id, role) VALUES ($1, $2, 'keeper')
        ON CONFLICT ON CONSTRAINT family_members_family_user_key DO UPDATE SET role = 'keeper'";

    /// A removal, remembered: the removed may rejoin only with a code made after it.
    pub const REMEMBER_REMOVAL: &str = "
        INSERT INTO public.family_removals (family_id, user_id, removed_by) VALUES ($1, $2, $3)
        ON CONFLICT ON CONSTRAINT family_removals_family_user_key
        DO UPDATE SET removed_at = now(), removed_by = EXCLUDED.removed_by";

    /// A removal lifted (the removed restored the family themselves).
    pub const LIFT_REMOVAL: &str =
        "DELETE FROM public.family_removals WHERE family_id = $1 AND user_id = $2";

    /// The open invites someone created for the family stop being a keeper's word.
    pub const REVOKE_INVITES_OF: &str = "
        UPDATE public.invites SET revoked_at = now()
        WHERE family_id = $1 AND created_by = $2 AND revoked_at IS NULL";

    /// Every open invite of the family revoked (it is being deleted: a restore brings
    /// no old code back).
    pub const REVOKE_INVITES: &str = "
        UPDATE public.invites SET revoked_at = now()
        WHERE family_id = $1 AND revoked_at IS NULL";

    /// Everyone who kept the family in the last $2 days (its keepers now included).
    pub const KEEPERS_SINCE: &str =
        "SELECT public.keepers_since($1, now() - make_interval(days => $2))";

    /// Who may restore the deleted family.
    pub const RESTORERS: &str = "SELECT public.restorers($1)";

    /// A person as a family's emails name them: their display name (capped, by
    /// `account_of`), and their address for when they have none.
    pub const NAME: &str = "SELECT name, email FROM public.account_of($1)";

    /// The family's archives go (it is being deleted): one waiting is cancelled, one
    /// made is deleted by the next maintenance run; one being written is left to its
    /// worker, which deletes it when done if it may no longer be had.
    pub const FORGET_ARCHIVES: &str = "
        UPDATE public.archives
        SET status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
            expires_at = now()
        WHERE family_id = $1 AND status <> 'running' AND deleted_at IS NULL";

    /// The archives a departing member ($2) asked for (alone or with others) go as the
    /// family's do, and count toward no allowance; returns the other requesters still
    /// in the family, to be told they may ask again.
    pub const WITHDRAW_ARCHIVES: &str = "
        WITH gone AS (
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
        ORDER BY r.archive_id";

    /// One line of the family's history.
    pub const EVENT: &str = "
        INSERT INTO public.family_events (family_id, actor_id, subject_id, action, details)
        VALUES ($1, $2, $3, $4, $5)";
}

/// A family and its members, locked for a change.
#[derive(Debug)]
pub struct Family {
    pub id: Uuid,
    pub name: String,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Deleted, and still within the trash retention with no purge begun.
    pub restorable: bool,
    pub members: Vec<(Uuid, Role)>,
}

/// The refusal for a caller who doesn't belong to the family (or there is none).
pub const NOT_A_MEMBER: &str = "You are not a member of this family";
/// The refusal for a member who doesn't keep it.
pub const NOT_A_KEEPER: &str = "Only a keeper of this family can do this";
/// What a deleted family is, to its members.
pub const GONE: &str = "Family not found";
/// Why a change that would leave no keeper is refused.
pub const LAST_KEEPER: &str = "A family needs a keeper: make someone else a keeper first";

impl Family {
    /// Locks the family's member rows, then the family. A caller who is not a member
    /// gets 403, whether or not the family exists.
    pub async fn lock(tx: &Tx<'_>, id: Uuid, caller: Uuid) -> Result<Family, ApiError> {
        match Self::lock_any(tx, id).await? {
            Some(family) if family.role_of(caller).is_some() => Ok(family),
            _ => Err(ApiError::Forbidden(NOT_A_MEMBER)),
        }
    }

    /// Locks the family's member rows, then the family, whoever asks (a restore by
    /// someone removed from it); None when there is no such family.
    pub async fn lock_any(tx: &Tx<'_>, id: Uuid) -> Result<Option<Family>, ApiError> {
        let members: Vec<(Uuid, Role)> = tx
            .query_typed(sql::LOCK_MEMBERS, &[(&id, Type::UUID)])
            .await?
            .iter()
            .filter_map(|r| Some((r.get(0), Role::parse(r.get(1))?)))
            .collect();
        let rows = tx
            .query_typed(sql::LOCK_FAMILY, &[(&id, Type::UUID)])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let (restorable, claimed): (Option<bool>, bool) = (row.get(2), row.get(3));
        Ok(Some(Family {
            id,
            name: row.get(0),
            deleted_at: row.get(1),
            restorable: restorable.unwrap_or(false) && !claimed,
            members,
        }))
    }

    /// A member's role.
    pub fn role_of(&self, user: Uuid) -> Option<Role> {
        self.members
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, role)| *role)
    }

    /// How many keepers it has.
    pub fn keepers(&self) -> usize {
        self.members
            .iter()
            .filter(|(_, role)| *role == Role::Keeper)
            .count()
    }

    /// Whether taking `user`'s keeper role away (removing them, or making them a
    /// storyteller) would leave the family without one.
    pub fn would_lose_last_keeper(&self, user: Uuid) -> bool {
        self.role_of(user) == Some(Role::Keeper) && self.keepers() == 1
    }

    /// A live family the caller keeps: 404 once deleted, 403 for a storyteller.
    pub fn kept_by(&self, caller: Uuid) -> Result<(), ApiError> {
        self.live()?;
        match self.role_of(caller) {
            Some(Role::Keeper) => Ok(()),
            _ => Err(ApiError::Forbidden(NOT_A_KEEPER)),
        }
    }

    /// 404 once deleted.
    pub fn live(&self) -> Result<(), ApiError> {
        match self.deleted_at {
            None => Ok(()),
            Some(_) => Err(ApiError::NotFound(GONE)),
        }
    }
}

/// What happened, as `family_events.action` writes it.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    MemberRemoved,
    MemberLeft,
    RoleChanged,
    FamilyDeleted,
    FamilyRestored,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::MemberRemoved => "member_removed",
            Change::MemberLeft => "member_left",
            Change::RoleChanged => "role_changed",
            Change::FamilyDeleted => "family_deleted",
            Change::FamilyRestored => "family_restored",
        }
    }
}

/// How someone leaves a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// A keeper removed them: they may rejoin only with a code made after this.
    RemovedBy(Uuid),
    /// Of their own accord: they may rejoin with any valid code.
    Left,
}

/// Takes a member out of the family (after [`Family::lock`]): the invites they created
/// revoked (their codes stop being a keeper's word), a removal remembered, their open
/// uploads marked (only what arrived before now can become a recording:
/// `recordings::settle` decides once this commits), and the archives they asked for
/// withdrawn. Returns the emails owed to the archives' other requesters, to
/// [`outbox::deliver`] after the commit.
pub async fn remove(
    tx: &Tx<'_>,
    family: Uuid,
    user: Uuid,
    leaving: Leaving,
) -> Result<Vec<Uuid>, ApiError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    tx.query_typed(sql::REMOVE, &params).await?;
    tx.query_typed(sql::REVOKE_INVITES_OF, &params).await?;
    if let Leaving::RemovedBy(keeper) = leaving {
        let params = [
            (&family as _, Type::UUID),
            (&user as _, Type::UUID),
            (&keeper as _, Type::UUID),
        ];
        tx.query_typed(sql::REMEMBER_REMOVAL, &params).await?;
    }
    recordings::depart(tx, family, user).await?;
    let rows = tx.query_typed(sql::WITHDRAW_ARCHIVES, &params).await?;
    let mut mails = Vec::new();
    for group in rows.chunk_by(|a, b| a.get::<_, Uuid>(0) == b.get::<_, Uuid>(0)) {
        let archive_id: Uuid = group[0].get(0);
        let others: Vec<Uuid> = group.iter().map(|r| r.get(1)).collect();
        let mail = Mail::ArchiveWithdrawn { archive_id };
        mails.extend(outbox::queue(tx, family, &others, &mail).await?);
    }
    Ok(mails)
}

/// Makes someone a keeper of the family again (a restore by a former keeper): a member
/// again if they were removed, the removal lifted.
pub async fn reinstate(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<(), ApiError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    tx.query_typed(sql::MAKE_KEEPER, &params).await?;
    tx.query_typed(sql::LIFT_REMOVAL, &params).await?;
    Ok(())
}

/// Revokes every open invite of the family (it is being deleted).
pub async fn revoke_invites(tx: &Tx<'_>, family: Uuid) -> Result<(), ApiError> {
    tx.query_typed(sql::REVOKE_INVITES, &[(&family, Type::UUID)])
        .await?;
    Ok(())
}

/// How long someone who stopped keeping a family is still told of, and may undo, what
/// happens to it.
pub const KEEPER_MEMORY_DAYS: i32 = 30;

/// Queues `mail` to everyone who kept the family in the last [`KEEPER_MEMORY_DAYS`]
/// (after the change is recorded, so the one it took the role from is among them).
pub async fn tell_keepers(tx: &Tx<'_>, family: Uuid, mail: &Mail) -> Result<Vec<Uuid>, ApiError> {
    let params = [
        (&family as _, Type::UUID),
        (&KEEPER_MEMORY_DAYS as _, Type::INT4),
    ];
    let rows = tx.query_typed(sql::KEEPERS_SINCE, &params).await?;
    let keepers: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    outbox::queue(tx, family, &keepers, mail).await
}

/// Who may restore the deleted family: its keepers of the 30 days before the deletion,
/// and its founder.
pub async fn restorers(tx: &Tx<'_>, family: Uuid) -> Result<Vec<Uuid>, ApiError> {
    let rows = tx
        .query_typed(sql::RESTORERS, &[(&family, Type::UUID)])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What the family's emails call someone: their display name, else their address
/// masked.
pub async fn name_of(tx: &Tx<'_>, user: Uuid) -> Result<String, ApiError> {
    let rows = tx.query_typed(sql::NAME, &[(&user, Type::UUID)]).await?;
    let (name, email): (Option<String>, Option<String>) =
        rows.first().map_or((None, None), |r| (r.get(0), r.get(1)));
    Ok(name
        .or_else(|| email.as_deref().map(crate::telemetry::mask_email))
        .unwrap_or_else(|| "?".to_owned()))
}

/// The family's archives go (see [`sql::FORGET_ARCHIVES`]).
pub async fn forget_archives(tx: &Tx<'_>, family: Uuid) -> Result<(), ApiError> {
    tx.query_typed(sql::FORGET_ARCHIVES, &[(&family, Type::UUID)])
        .await?;
    Ok(())
}

/// Gives a member a role (after [`Family::lock`]); a keeper made a storyteller has the
/// invites they created revoked.
pub async fn set_role(tx: &Tx<'_>, family: Uuid, user: Uuid, role: Role) -> Result<(), ApiError> {
    let name = role.as_str();
    let params = [
        (&family as _, Type::UUID),
        (&user as _, Type::UUID),
        (&name as _, Type::TEXT),
    ];
    tx.query_typed(sql::SET_ROLE, &params).await?;
    if role == Role::Storyteller {
        tx.query_typed(sql::REVOKE_INVITES_OF, &params[..2]).await?;
    }
    Ok(())
}

/// Appends a change to the family's history, in the transaction that made it.
pub async fn record(
    tx: &Tx<'_>,
    family: Uuid,
    actor: Uuid,
    change: Change,
    subject: Option<Uuid>,
    details: Value,
) -> Result<(), ApiError> {
    let action = change.as_str();
    let params = [
        (&family as _, Type::UUID),
        (&actor as _, Type::UUID),
        (&subject as _, Type::UUID),
        (&action as _, Type::TEXT),
        (&details as _, Type::JSONB),
    ];
    tx.query_typed(sql::EVENT, &params).await?;
    Ok(())
}

/// A member's standing for a write on their behalf (a reservation, a recording), in the
/// transaction that writes: their membership row share-locked until it commits, so a
/// removal either waits for the write or is seen by it. 403 for a non-member, 404 once
/// the family is deleted.
pub async fn lock_membership(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<Role, ApiError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    let rows = tx.query_typed(sql::LOCK_MEMBERSHIP, &params).await?;
    let standing: Option<String> = rows.first().and_then(|r| r.get(0));
    match standing.as_deref() {
        None => Err(ApiError::Forbidden(NOT_A_MEMBER)),
        Some("deleted") => Err(ApiError::NotFound(GONE)),
        Some(role) => Role::parse(role)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown role {role}"))),
    }
}
