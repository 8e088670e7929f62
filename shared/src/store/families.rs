//! Families, their members, their history and their removals (contract §8): the
//! member rows locked in one order, the family read after them, the rules every
//! change keeps (a family never loses its last keeper), and each change appended to
//! `family_events`.
//!
//! The one lock order, everywhere: a family's member rows first (all of them, in user
//! order, by a change of who belongs; the caller's one, shared, by a write on a
//! member's behalf: [`Membership::lock`]), then the family row, then its invites (a
//! redemption, which writes a member row that doesn't exist yet, share-locks the family
//! and then its invite). Two changes at once queue instead of deadlocking, and the
//! later one sees what the first did.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::{RunsAs, Statement, StoreError, maybe, one, query, sql_enum};
use crate::db::Tx;

sql_enum! {
    /// A member's role in a family.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Role {
        Keeper = "keeper",
        Storyteller = "storyteller",
    }
}

sql_enum! {
    /// A family's language: of its prompts, its emails and its archive.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Language {
        #[default]
        En = "en",
        Es = "es",
    }
}

sql_enum! {
    /// What happened to a family, as `family_events.action` writes it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Change {
        MemberRemoved = "member_removed",
        MemberLeft = "member_left",
        RoleChanged = "role_changed",
        FamilyDeleted = "family_deleted",
        FamilyRestored = "family_restored",
    }
}

const CREATE: Statement = Statement {
    name: "families.create",
    runs_as: RunsAs::Service,
    // A new family, named by its founder in their language.
    sql: "INSERT INTO public.families (name, language, created_by) VALUES ($1, $2, $3)
          RETURNING id, name, created_at",
};

const ADD_KEEPER: Statement = Statement {
    name: "families.add_keeper",
    runs_as: RunsAs::Service,
    // Someone becomes a keeper of the family: its founder, or someone who restored it
    // (a member again if they were removed).
    sql: "INSERT INTO public.family_members (family_id, user_id, role) VALUES ($1, $2, 'keeper')
          ON CONFLICT ON CONSTRAINT family_members_family_user_key DO UPDATE SET role = 'keeper'",
};

const MEMBERSHIP: Statement = Statement {
    name: "families.membership",
    runs_as: RunsAs::User,
    // The caller's role in a family, with the family's name, language and Stripe
    // customer (as the caller: a family they do not belong to is no row).
    sql: "SELECT m.role, f.name, f.language, e.stripe_customer_id
          FROM public.families f
          JOIN public.family_members m ON m.family_id = f.id AND m.user_id = (SELECT auth.uid())
          LEFT JOIN public.entitlements e ON e.family_id = f.id
          WHERE f.id = $1",
};

const IN_DELETED_FAMILY: Statement = Statement {
    name: "families.in_deleted_family",
    runs_as: RunsAs::User,
    // Whether the caller belongs to the family and it is deleted (so a function answers
    // 404 where RLS no longer shows it).
    sql: "SELECT public.in_deleted_family($1) AS deleted",
};

const LOCK_MEMBERSHIP: Statement = Statement {
    name: "families.lock_membership",
    runs_as: RunsAs::Service,
    // A member's standing for a write on their behalf: their row share-locked, then the
    // family read afresh (the role, 'deleted', or NULL).
    sql: "SELECT public.lock_membership($1, $2) AS standing",
};

const LOCK_MEMBERS: Statement = Statement {
    name: "families.lock_members",
    runs_as: RunsAs::Service,
    // Every member of the family, their rows locked in user order.
    sql: "SELECT user_id, role FROM public.family_members WHERE family_id = $1
          ORDER BY user_id FOR UPDATE",
};

const LOCK_FAMILY: Statement = Statement {
    name: "families.lock",
    runs_as: RunsAs::Service,
    // The family, its row locked (after its members'): name, when it was deleted,
    // whether the trash retention still allows a restore, whether a purge claimed it.
    sql: "SELECT name, deleted_at,
                 coalesce(deleted_at > now() - public.trash_retention()
                          AND purge_started_at IS NULL, false) AS restorable
          FROM public.families WHERE id = $1 FOR UPDATE",
};

const REMOVE: Statement = Statement {
    name: "families.remove_member",
    runs_as: RunsAs::Service,
    sql: "DELETE FROM public.family_members WHERE family_id = $1 AND user_id = $2",
};

const SET_ROLE: Statement = Statement {
    name: "families.set_role",
    runs_as: RunsAs::Service,
    sql: "UPDATE public.family_members SET role = $3 WHERE family_id = $1 AND user_id = $2",
};

const REMEMBER_REMOVAL: Statement = Statement {
    name: "families.remember_removal",
    runs_as: RunsAs::Service,
    // A removal, remembered: the removed may rejoin only with a code made after it.
    sql: "INSERT INTO public.family_removals (family_id, user_id, removed_by) VALUES ($1, $2, $3)
          ON CONFLICT ON CONSTRAINT family_removals_family_user_key
          DO UPDATE SET removed_at = now(), removed_by = EXCLUDED.removed_by",
};

const LIFT_REMOVAL: Statement = Statement {
    name: "families.lift_removal",
    runs_as: RunsAs::Service,
    // A removal lifted (the removed restored the family themselves).
    sql: "DELETE FROM public.family_removals WHERE family_id = $1 AND user_id = $2",
};

const RECORD: Statement = Statement {
    name: "families.record",
    runs_as: RunsAs::Service,
    // One line of the family's history.
    sql: "INSERT INTO public.family_events (family_id, actor_id, subject_id, action, details)
          VALUES ($1, $2, $3, $4, $5)",
};

const KEEPERS_SINCE: Statement = Statement {
    name: "families.keepers_since",
    runs_as: RunsAs::Service,
    // Everyone who kept the family in the last $2 days (its keepers now included).
    sql: "SELECT public.keepers_since($1, now() - make_interval(days => $2)) AS user_id",
};

const RESTORERS: Statement = Statement {
    name: "families.restorers",
    runs_as: RunsAs::Service,
    // Who may restore the deleted family.
    sql: "SELECT public.restorers($1) AS user_id",
};

const PERSON: Statement = Statement {
    name: "families.person",
    runs_as: RunsAs::Service,
    // A person as the family's emails and archive name them: their display name
    // (capped, control and format characters out, by account_of) and their address.
    sql: "SELECT name, email FROM public.account_of($1)",
};

const FIRST_KEEPER: Statement = Statement {
    name: "families.first_keeper",
    runs_as: RunsAs::Service,
    // The family's first keeper: the distinct id of its server-side analytics.
    sql: "SELECT user_id FROM public.family_members WHERE family_id = $1 AND role = 'keeper'
          ORDER BY joined_at LIMIT 1",
};

const DELETE: Statement = Statement {
    name: "families.delete",
    runs_as: RunsAs::Service,
    // The family deleted (a new deletion, reminded afresh); when, and until when it can
    // be restored.
    sql: "UPDATE public.families
          SET deleted_at = now(), deleted_by = $2, purge_reminder_sent_at = NULL
          WHERE id = $1
          RETURNING deleted_at, deleted_at + public.trash_retention() AS restorable_until",
};

const RESTORE: Statement = Statement {
    name: "families.restore",
    runs_as: RunsAs::Service,
    sql: "UPDATE public.families
          SET deleted_at = NULL, deleted_by = NULL, purge_reminder_sent_at = NULL
          WHERE id = $1",
};

const ABOUT: Statement = Statement {
    name: "families.about",
    runs_as: RunsAs::Service,
    // The family as its archive tells it: name, language, whether it was deleted.
    sql: "SELECT name, language, deleted_at IS NOT NULL AS deleted
          FROM public.families WHERE id = $1",
};

const CLAIM_PURGE: Statement = Statement {
    name: "families.claim_purge",
    runs_as: RunsAs::Service,
    // Claims deleted families past the retention, a few at a time (a restore is refused
    // from now on); a claim older than any run's budget is taken over.
    sql: "UPDATE public.families f SET purge_started_at = now()
          WHERE f.id IN (
            SELECT id FROM public.families
            WHERE deleted_at <= now() - public.trash_retention() AND purged_at IS NULL
              AND (purge_started_at IS NULL OR purge_started_at < now() - interval '10 minutes')
            ORDER BY deleted_at
            LIMIT 10
            FOR UPDATE SKIP LOCKED)
          RETURNING f.id",
};

const PURGE: Statement = Statement {
    name: "families.purge",
    runs_as: RunsAs::Service,
    // A claimed family, its recordings purged and objects deleted, emptied to a
    // tombstone (false while a recording is left).
    sql: "SELECT public.purge_family($1) AS purged",
};

const CLAIM_REMINDERS: Statement = Statement {
    name: "families.claim_reminders",
    runs_as: RunsAs::Service,
    // Claims deleted families a week or less from their purge whose keepers were not
    // yet reminded (once per deletion: a restore clears the mark, a new deletion starts
    // afresh; concurrent runs claim different ones).
    sql: "UPDATE public.families f SET purge_reminder_sent_at = now()
          WHERE f.id IN (
            SELECT id FROM public.families
            WHERE deleted_at IS NOT NULL AND purged_at IS NULL AND purge_started_at IS NULL
              AND purge_reminder_sent_at IS NULL
              AND deleted_at <= now() - public.trash_retention() + interval '7 days'
              AND deleted_at > now() - public.trash_retention()
            ORDER BY deleted_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED)
          RETURNING f.id, f.deleted_at + public.trash_retention() AS purge_at",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[
    &CREATE,
    &ADD_KEEPER,
    &MEMBERSHIP,
    &IN_DELETED_FAMILY,
    &LOCK_MEMBERSHIP,
    &LOCK_MEMBERS,
    &LOCK_FAMILY,
    &REMOVE,
    &SET_ROLE,
    &REMEMBER_REMOVAL,
    &LIFT_REMOVAL,
    &RECORD,
    &KEEPERS_SINCE,
    &RESTORERS,
    &PERSON,
    &FIRST_KEEPER,
    &DELETE,
    &RESTORE,
    &ABOUT,
    &CLAIM_PURGE,
    &PURGE,
    &CLAIM_REMINDERS,
];

/// How long someone who stopped keeping a family is still told of, and may undo, what
/// happens to it.
pub const KEEPER_MEMORY_DAYS: i32 = 30;

/// A family.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Family")]
pub struct NewFamily {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
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

/// What a change of the family is refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The caller doesn't belong to it.
    NotAMember,
    /// The caller doesn't keep it.
    NotAKeeper,
    /// It is deleted.
    Gone,
    /// It would be left without a keeper.
    LastKeeper,
}

impl Family {
    /// Makes a family with its founder as its keeper.
    pub async fn create(
        tx: &Tx<'_>,
        name: &str,
        language: Language,
        founder: Uuid,
    ) -> Result<NewFamily, StoreError> {
        let language = language.as_str();
        let params = [
            (&name as _, Type::TEXT),
            (&language as _, Type::TEXT),
            (&founder as _, Type::UUID),
        ];
        let row = one(tx, &CREATE, &params).await?;
        let family = NewFamily {
            id: row.get("id"),
            name: row.get("name"),
            created_at: row.get("created_at"),
        };
        add_keeper(tx, family.id, founder).await?;
        Ok(family)
    }

    /// Locks the family's member rows, then the family. None when the caller is not a
    /// member, whether or not the family exists.
    pub async fn lock(tx: &Tx<'_>, id: Uuid, caller: Uuid) -> Result<Option<Family>, StoreError> {
        Ok(Self::lock_any(tx, id)
            .await?
            .filter(|family| family.role_of(caller).is_some()))
    }

    /// Locks the family's member rows, then the family, whoever asks (a restore by
    /// someone removed from it); None when there is no such family.
    pub async fn lock_any(tx: &Tx<'_>, id: Uuid) -> Result<Option<Family>, StoreError> {
        let members = query(tx, &LOCK_MEMBERS, &[(&id, Type::UUID)])
            .await?
            .iter()
            .map(|r| (r.get("user_id"), r.get("role")))
            .collect();
        let Some(row) = maybe(tx, &LOCK_FAMILY, &[(&id, Type::UUID)]).await? else {
            return Ok(None);
        };
        Ok(Some(Family {
            id,
            name: row.get("name"),
            deleted_at: row.get("deleted_at"),
            restorable: row.get("restorable"),
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

    /// A live family the caller keeps.
    pub fn kept_by(&self, caller: Uuid) -> Result<(), Refusal> {
        self.live()?;
        match self.role_of(caller) {
            Some(Role::Keeper) => Ok(()),
            _ => Err(Refusal::NotAKeeper),
        }
    }

    /// Not deleted.
    pub fn live(&self) -> Result<(), Refusal> {
        match self.deleted_at {
            None => Ok(()),
            Some(_) => Err(Refusal::Gone),
        }
    }

    /// Takes a member out (the invites they created revoked with them: their codes stop
    /// being a keeper's word); a removal by a keeper is remembered.
    pub async fn remove(
        &self,
        tx: &Tx<'_>,
        user: Uuid,
        leaving: Leaving,
    ) -> Result<(), StoreError> {
        let params = [(&self.id as _, Type::UUID), (&user as _, Type::UUID)];
        query(tx, &REMOVE, &params).await?;
        super::invites::revoke_of(tx, self.id, user).await?;
        if let Leaving::RemovedBy(keeper) = leaving {
            let params = [
                (&self.id as _, Type::UUID),
                (&user as _, Type::UUID),
                (&keeper as _, Type::UUID),
            ];
            query(tx, &REMEMBER_REMOVAL, &params).await?;
        }
        Ok(())
    }

    /// Gives a member a role; a keeper made a storyteller has the invites they created
    /// revoked.
    pub async fn set_role(&self, tx: &Tx<'_>, user: Uuid, role: Role) -> Result<(), StoreError> {
        let name = role.as_str();
        let params = [
            (&self.id as _, Type::UUID),
            (&user as _, Type::UUID),
            (&name as _, Type::TEXT),
        ];
        query(tx, &SET_ROLE, &params).await?;
        if role == Role::Storyteller {
            super::invites::revoke_of(tx, self.id, user).await?;
        }
        Ok(())
    }

    /// Makes someone a keeper again (a restore by a former keeper): a member again if
    /// they were removed, the removal lifted.
    pub async fn reinstate(&self, tx: &Tx<'_>, user: Uuid) -> Result<(), StoreError> {
        add_keeper(tx, self.id, user).await?;
        let params = [(&self.id as _, Type::UUID), (&user as _, Type::UUID)];
        query(tx, &LIFT_REMOVAL, &params).await?;
        Ok(())
    }

    /// Appends a change to the family's history, in the transaction that made it.
    pub async fn record(
        &self,
        tx: &Tx<'_>,
        actor: Uuid,
        change: Change,
        subject: Option<Uuid>,
        details: Value,
    ) -> Result<(), StoreError> {
        let action = change.as_str();
        let params = [
            (&self.id as _, Type::UUID),
            (&actor as _, Type::UUID),
            (&subject as _, Type::UUID),
            (&action as _, Type::TEXT),
            (&details as _, Type::JSONB),
        ];
        query(tx, &RECORD, &params).await?;
        Ok(())
    }

    /// Deletes it; when, and until when it can be restored.
    pub async fn delete(
        &self,
        tx: &Tx<'_>,
        by: Uuid,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), StoreError> {
        let params = [(&self.id as _, Type::UUID), (&by as _, Type::UUID)];
        let row = one(tx, &DELETE, &params).await?;
        Ok((row.get("deleted_at"), row.get("restorable_until")))
    }

    /// Brings it back.
    pub async fn restore(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        query(tx, &RESTORE, &[(&self.id, Type::UUID)]).await?;
        Ok(())
    }
}

async fn add_keeper(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<(), StoreError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    query(tx, &ADD_KEEPER, &params).await?;
    Ok(())
}

/// How someone leaves a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// A keeper removed them: they may rejoin only with a code made after this.
    RemovedBy(Uuid),
    /// Of their own accord: they may rejoin with any valid code.
    Left,
}

/// Everyone who kept the family in the last [`KEEPER_MEMORY_DAYS`] (its keepers now
/// included; after a change is recorded, the one it took the role from too).
pub async fn recent_keepers(tx: &Tx<'_>, family: Uuid) -> Result<Vec<Uuid>, StoreError> {
    let params = [
        (&family as _, Type::UUID),
        (&KEEPER_MEMORY_DAYS as _, Type::INT4),
    ];
    let rows = query(tx, &KEEPERS_SINCE, &params).await?;
    Ok(rows.iter().map(|r| r.get("user_id")).collect())
}

/// Who may restore the deleted family: its keepers of the 30 days before the deletion,
/// and its founder.
pub async fn restorers(tx: &Tx<'_>, family: Uuid) -> Result<Vec<Uuid>, StoreError> {
    let rows = query(tx, &RESTORERS, &[(&family, Type::UUID)]).await?;
    Ok(rows.iter().map(|r| r.get("user_id")).collect())
}

/// The family's first keeper, if any.
pub async fn first_keeper(tx: &Tx<'_>, family: Uuid) -> Result<Option<Uuid>, StoreError> {
    Ok(maybe(tx, &FIRST_KEEPER, &[(&family, Type::UUID)])
        .await?
        .map(|r| r.get("user_id")))
}

/// A person as the family's emails and archive know them.
#[derive(Debug, Clone, Default)]
pub struct Person {
    /// Their display name, capped; None when their account has none.
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Person {
    /// Someone by id (nobody, once their account is gone).
    pub async fn get(tx: &Tx<'_>, user: Uuid) -> Result<Person, StoreError> {
        Ok(maybe(tx, &PERSON, &[(&user, Type::UUID)])
            .await?
            .map(|r| Person {
                name: r.get("name"),
                email: r.get("email"),
            })
            .unwrap_or_default())
    }

    /// What an email calls them: their name, else their address masked.
    pub fn called(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.email.as_deref().map(crate::telemetry::mask_email))
            .unwrap_or_else(|| "?".to_owned())
    }
}

/// The caller's place in a family, as RLS shows it, and what the functions need of the
/// family.
#[derive(Debug, Clone)]
pub struct Membership {
    pub role: Role,
    pub family_name: String,
    /// The language of its prompts and emails.
    pub language: Language,
    pub stripe_customer_id: Option<String>,
}

/// What RLS shows the caller of a family.
#[derive(Debug, Clone)]
pub enum Seen {
    Member(Membership),
    /// They belong to it, and it is deleted (a 404, not a 403).
    Deleted,
    Nothing,
}

/// A member's standing, for a write on their behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Member(Role),
    /// They belong to it, and it is deleted.
    Deleted,
    NotAMember,
}

impl Membership {
    /// The caller's membership of the family, read as the caller (RLS decides).
    pub async fn of_caller(tx: &Tx<'_>, family: Uuid) -> Result<Seen, StoreError> {
        if let Some(r) = maybe(tx, &MEMBERSHIP, &[(&family, Type::UUID)]).await? {
            return Ok(Seen::Member(Membership {
                role: r.get("role"),
                family_name: r.get("name"),
                language: r.get("language"),
                stripe_customer_id: r.get("stripe_customer_id"),
            }));
        }
        let deleted = one(tx, &IN_DELETED_FAMILY, &[(&family, Type::UUID)]).await?;
        Ok(
            if deleted.get::<_, Option<bool>>("deleted").unwrap_or(false) {
                Seen::Deleted
            } else {
                Seen::Nothing
            },
        )
    }

    /// A member's standing for a write on their behalf, in the transaction that writes:
    /// their membership row share-locked until it commits, so a removal either waits
    /// for the write or is seen by it.
    pub async fn lock(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<Standing, StoreError> {
        let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
        let row = one(tx, &LOCK_MEMBERSHIP, &params).await?;
        let standing: Option<String> = row.get("standing");
        Ok(match standing.as_deref() {
            None => Standing::NotAMember,
            Some("deleted") => Standing::Deleted,
            Some(role) => Role::parse(role).map_or(Standing::NotAMember, Standing::Member),
        })
    }
}

/// A family as its archive tells it.
#[derive(Debug, Clone)]
pub struct About {
    pub id: Uuid,
    pub name: String,
    pub language: Language,
}

/// The family, unless it was deleted.
pub async fn about(tx: &Tx<'_>, id: Uuid) -> Result<Option<About>, StoreError> {
    Ok(maybe(tx, &ABOUT, &[(&id, Type::UUID)])
        .await?
        .filter(|r| !r.get::<_, bool>("deleted"))
        .map(|r| About {
            id,
            name: r.get("name"),
            language: r.get("language"),
        }))
}

/// Claims deleted families past the retention (up to 10).
pub async fn claim_purge(tx: &Tx<'_>) -> Result<Vec<Uuid>, StoreError> {
    let rows = query(tx, &CLAIM_PURGE, &[]).await?;
    Ok(rows.iter().map(|r| r.get("id")).collect())
}

/// Empties a claimed family whose recordings are purged to a tombstone; false while a
/// recording is left.
pub async fn purge(tx: &Tx<'_>, family: Uuid) -> Result<bool, StoreError> {
    Ok(one(tx, &PURGE, &[(&family, Type::UUID)])
        .await?
        .get("purged"))
}

/// Claims up to `limit` deleted families whose purge is a week or less away and whose
/// restorers were not reminded yet; each with its purge time.
pub async fn claim_reminders(
    tx: &Tx<'_>,
    limit: i64,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
    let rows = query(tx, &CLAIM_REMINDERS, &[(&limit, Type::INT8)]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("id"), r.get("purge_at")))
        .collect())
}
