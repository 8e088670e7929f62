//! A family's prompts: its defaults copied at creation, more added by members.

use tokio_postgres::types::Type;
use uuid::Uuid;

use super::families::Language;
use super::{RunsAs, Statement, StoreError, query};
use crate::db::Tx;

const ADD_DEFAULTS: Statement = Statement {
    name: "prompts.add_defaults",
    runs_as: RunsAs::Service,
    // The default prompts of its language (data in the database, not code).
    sql: "INSERT INTO public.prompts (family_id, text, position, is_default)
          SELECT $1, d.text, d.position, true FROM public.default_prompts d WHERE d.language = $2",
};

const OF_FAMILY: Statement = Statement {
    name: "prompts.of_family",
    runs_as: RunsAs::Service,
    // Whether the prompt is a live one of this family.
    sql: "SELECT 1 AS found FROM public.prompts
          WHERE id = $1 AND family_id = $2 AND deleted_at IS NULL",
};

const LIVE: Statement = Statement {
    name: "prompts.live",
    runs_as: RunsAs::Service,
    // The family's live prompts, in order (the archive's manifest).
    sql: "SELECT id, text FROM public.prompts
          WHERE family_id = $1 AND deleted_at IS NULL ORDER BY position, created_at",
};

/// The statements of this module.
pub const STATEMENTS: &[&Statement] = &[&ADD_DEFAULTS, &OF_FAMILY, &LIVE];

/// Gives a new family the default prompts of its language.
pub async fn add_defaults(tx: &Tx<'_>, family: Uuid, language: Language) -> Result<(), StoreError> {
    let language = language.as_str();
    let params = [(&family as _, Type::UUID), (&language as _, Type::TEXT)];
    query(tx, &ADD_DEFAULTS, &params).await?;
    Ok(())
}

/// Whether `prompt` is a live prompt of the family.
pub async fn belongs(tx: &Tx<'_>, prompt: Uuid, family: Uuid) -> Result<bool, StoreError> {
    let params = [(&prompt as _, Type::UUID), (&family as _, Type::UUID)];
    Ok(!query(tx, &OF_FAMILY, &params).await?.is_empty())
}

/// The family's live prompts, in order: (id, text).
pub async fn live(tx: &Tx<'_>, family: Uuid) -> Result<Vec<(Uuid, String)>, StoreError> {
    let rows = query(tx, &LIVE, &[(&family, Type::UUID)]).await?;
    Ok(rows.iter().map(|r| (r.get("id"), r.get("text"))).collect())
}
