//! Invites: only the HMAC of a code is stored; a redemption is one call of
//! `redeem_invite()`, the same queries whatever the code.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::families::Role;
use super::{RunsAs, Statement, StoreError, one, query, sql_enum};
use crate::db::Tx;

const CREATE: Statement = Statement {
    name: "invites.create",
    runs_as: RunsAs::Service,
    // The invite: only the code's HMAC is stored.
    sql:
        "INSERT INTO public.invites (family_id, code_hmac, email, created_by, expires_at, max_uses)
          VALUES ($1, $2, $3, $4, now() + make_interval(days => $5), $6)
          RETURNING id, expires_at",
};

const REDEEM: Statement = Statement {
    name: "invites.redeem",
    runs_as: RunsAs::Service,
    // The whole redemption in one call, the same queries whatever the code (so timing
    // doesn't tell whether it exists): `joined`, `member` (already one) or `invalid`.
    sql: "SELECT outcome, family_id, family_name, role FROM public.redeem_invite($1, $2, $3)",
};

const REVOKE_OF: Statement = Statement {
    name: "invites.revoke_of",
    runs_as: RunsAs::Service,
    // The open invites someone created for the family stop being a keeper's word.
    sql: "UPDATE public.invites SET revoked_at = now()
          WHERE family_id = $1 AND created_by = $2 AND revoked_at IS NULL",
};

const REVOKE_ALL: Statement = Statement {
    name: "invites.revoke_all",
    runs_as: RunsAs::Service,
    // Every open invite of the family revoked (it is being deleted: a restore brings no
    // old code back).
    sql: "UPDATE public.invites SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[&CREATE, &REDEEM, &REVOKE_OF, &REVOKE_ALL];

/// The constraint a code colliding with an existing one breaks.
pub const CODE_TAKEN: &str = "invites_code_hmac_key";

/// An invite just made.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// What an invite is made of.
#[derive(Debug, Clone)]
pub struct NewInvite<'a> {
    pub family_id: Uuid,
    pub code_hmac: Vec<u8>,
    pub email: Option<&'a str>,
    pub created_by: Uuid,
    pub expires_in_days: i32,
    pub max_uses: i32,
}

/// Stores an invite. A code that collides with an existing one is [`CODE_TAKEN`]; the
/// statement runs in a savepoint, so the transaction goes on and the caller tries
/// another.
pub async fn create(tx: &Tx<'_>, invite: &NewInvite<'_>) -> Result<Created, StoreError> {
    let params = [
        (&invite.family_id as _, Type::UUID),
        (&invite.code_hmac as _, Type::BYTEA),
        (&invite.email as _, Type::TEXT),
        (&invite.created_by as _, Type::UUID),
        (&invite.expires_in_days as _, Type::INT4),
        (&invite.max_uses as _, Type::INT4),
    ];
    tx.client().batch_execute("SAVEPOINT new_code").await?;
    match one(tx, &CREATE, &params).await {
        Ok(row) => Ok(Created {
            id: row.get("id"),
            expires_at: row.get("expires_at"),
        }),
        Err(e) => {
            if e.is_constraint(CODE_TAKEN) {
                tx.client()
                    .batch_execute("ROLLBACK TO SAVEPOINT new_code")
                    .await?;
            }
            Err(e)
        }
    }
}

sql_enum! {
    /// What a redemption came to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        Joined = "joined",
        /// Already a member: no use consumed.
        Member = "member",
        /// Unknown, expired, revoked, used up, or not theirs to use: all the same.
        Invalid = "invalid",
    }
}

/// A redemption that let the caller in (or found them in).
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub already_member: bool,
    pub family_id: Uuid,
    pub family_name: String,
    pub role: Role,
}

/// Redeems a code (by its HMACs under the current and any previous key) for `user`,
/// giving back the attempt counted under `attempts_key` when it lets them in.
pub async fn redeem(
    tx: &Tx<'_>,
    hmacs: &[Vec<u8>],
    user: Uuid,
    attempts_key: &str,
) -> Result<Option<Redeemed>, StoreError> {
    let params = [
        (&hmacs as _, Type::BYTEA_ARRAY),
        (&user as _, Type::UUID),
        (&attempts_key as _, Type::TEXT),
    ];
    let row = one(tx, &REDEEM, &params).await?;
    let already_member = match row.get("outcome") {
        Outcome::Joined => false,
        Outcome::Member => true,
        Outcome::Invalid => return Ok(None),
    };
    Ok(Some(Redeemed {
        already_member,
        family_id: row.get("family_id"),
        family_name: row.get("family_name"),
        role: row.get("role"),
    }))
}

/// Revokes the open invites `user` created for the family.
pub async fn revoke_of(tx: &Tx<'_>, family: Uuid, user: Uuid) -> Result<(), StoreError> {
    let params = [(&family as _, Type::UUID), (&user as _, Type::UUID)];
    query(tx, &REVOKE_OF, &params).await?;
    Ok(())
}

/// Revokes every open invite of the family.
pub async fn revoke_all(tx: &Tx<'_>, family: Uuid) -> Result<(), StoreError> {
    query(tx, &REVOKE_ALL, &[(&family, Type::UUID)]).await?;
    Ok(())
}
