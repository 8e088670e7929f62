//! The migration runner and the cluster bootstrap.
//!
//! Migrations are ordered files in this folder, `NNNN_name.up.sql` with its reverse
//! `NNNN_name.down.sql`. Each is applied in its own transaction, under an advisory
//! lock so two deploys can't migrate at once. The checksum of every applied `up` is
//! recorded, and an applied migration whose file has changed since is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// The folder holding the project's migrations (this crate's own folder).
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Environment variable with the password of the functions' login role.
pub const FUNCTIONS_PASSWORD_VAR: &str = "FUNCTIONS_DB_PASSWORD";

/// The login role the functions connect as.
pub const FUNCTIONS_ROLE: &str = "functions_authenticator";

/// Key of the session advisory lock held while migrating ("SFTS" in ASCII).
const LOCK_KEY: i64 = 0x5346_5453;

/// Where applied migrations are recorded; not one of the schema's own objects.
const BOOKKEEPING: &str = "
    CREATE SCHEMA IF NOT EXISTS schema_migrations;
    CREATE TABLE IF NOT EXISTS schema_migrations.applied (
        version    bigint PRIMARY KEY,
        name       text NOT NULL,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE schema_migrations.applied IS 'Migrations applied by scripts/migrate, with the checksum of each up file.';";

/// What can stop a migration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read migrations: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad migration file name {0:?}: expected NNNN_name.up.sql / NNNN_name.down.sql")]
    BadName(String),
    #[error("migration {0} has an up file but no down file (every migration needs its reverse)")]
    MissingDown(String),
    #[error("migration {0} has a down file but no up file")]
    MissingUp(String),
    #[error("two migrations share version {0}")]
    DuplicateVersion(i64),
    #[error(
        "migration {version:04}_{name} was edited after it was applied \
         (recorded checksum {recorded}, file now {current}); \
         restore the file and write a new migration for the change"
    )]
    Edited {
        version: i64,
        name: String,
        recorded: String,
        current: String,
    },
    #[error("migration {version:04}_{name} is applied but its file is missing")]
    Missing { version: i64, name: String },
    #[error(
        "rolling back {migration} would drop tables holding rows: {tables}; \
         pass --allow-data-loss if that data loss is intended"
    )]
    DataLoss { migration: String, tables: String },
    #[error("{FUNCTIONS_PASSWORD_VAR} is not set: the functions' login role needs a password")]
    NoPassword,
    #[error("migration {migration} failed: {source}")]
    Failed {
        migration: String,
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// One migration: its up and down SQL and the checksum of the up.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub up: String,
    pub down: String,
    pub checksum: String,
}

impl Migration {
    /// `NNNN_name`, as the files are named.
    pub fn id(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// Reads every migration of a folder, in version order.
pub fn load(dir: &Path) -> Result<Vec<Migration>, Error> {
    let mut ups = BTreeMap::new();
    let mut downs = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let (stem, is_up) = if let Some(stem) = file.strip_suffix(".up.sql") {
            (stem, true)
        } else if let Some(stem) = file.strip_suffix(".down.sql") {
            (stem, false)
        } else {
            continue;
        };
        let (version, name) = stem
            .split_once('_')
            .and_then(|(v, n)| Some((v.parse::<i64>().ok()?, n.to_owned())))
            .ok_or_else(|| Error::BadName(file.to_owned()))?;
        let side = if is_up { &mut ups } else { &mut downs };
        if side
            .insert(version, (name, std::fs::read_to_string(&path)?))
            .is_some()
        {
            return Err(Error::DuplicateVersion(version));
        }
    }
    let mut migrations = Vec::with_capacity(ups.len());
    for (version, (name, up)) in ups {
        let Some((down_name, down)) = downs.remove(&version) else {
            return Err(Error::MissingDown(format!("{version:04}_{name}")));
        };
        if down_name != name {
            return Err(Error::MissingDown(format!("{version:04}_{name}")));
        }
        let checksum = hex::encode(Sha256::digest(up.as_bytes()));
        migrations.push(Migration {
            version,
            name,
            up,
            down,
            checksum,
        });
    }
    if let Some((version, (name, _))) = downs.into_iter().next() {
        return Err(Error::MissingUp(format!("{version:04}_{name}")));
    }
    Ok(migrations)
}

/// A migration as `status` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: String,
    pub state: State,
}

/// Whether a migration is applied, pending, or applied and since edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    Edited,
}

async fn applied(client: &Client) -> Result<Vec<(i64, String, String)>, Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('schema_migrations.applied') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations.applied ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Refuses applied migrations whose file was edited or removed.
fn verify(applied: &[(i64, String, String)], migrations: &[Migration]) -> Result<(), Error> {
    for (version, name, recorded) in applied {
        match migrations.iter().find(|m| m.version == *version) {
            None => {
                return Err(Error::Missing {
                    version: *version,
                    name: name.clone(),
                });
            }
            Some(m) if m.checksum != *recorded => {
                return Err(Error::Edited {
                    version: *version,
                    name: name.clone(),
                    recorded: recorded.clone(),
                    current: m.checksum.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Every migration with its state, in order.
pub async fn status(client: &Client, migrations: &[Migration]) -> Result<Vec<Status>, Error> {
    let applied = applied(client).await?;
    Ok(migrations
        .iter()
        .map(|m| {
            let state = match applied.iter().find(|(v, ..)| *v == m.version) {
                None => State::Pending,
                Some((_, _, sum)) if *sum == m.checksum => State::Applied,
                Some(_) => State::Edited,
            };
            Status { id: m.id(), state }
        })
        .collect())
}

/// Holds the migration lock for as long as it lives on this session.
async fn lock(client: &Client) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    Ok(())
}

async fn unlock(client: &Client) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    Ok(())
}

/// Applies every pending migration, each in its own transaction; returns their ids.
///
/// Needs a session (direct or a session-mode pooler): the lock is a session lock.
pub async fn up(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>, Error> {
    lock(client).await?;
    let result = up_locked(client, migrations).await;
    unlock(client).await?;
    result
}

async fn up_locked(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>, Error> {
    client.batch_execute(BOOKKEEPING).await?;
    let applied = applied(client).await?;
    verify(&applied, migrations)?;
    let mut done = Vec::new();
    for m in migrations
        .iter()
        .filter(|m| !applied.iter().any(|(v, ..)| *v == m.version))
    {
        let tx = client.transaction().await?;
        tx.batch_execute(&m.up)
            .await
            .map_err(|source| Error::Failed {
                migration: m.id(),
                source,
            })?;
        tx.execute(
            "INSERT INTO schema_migrations.applied (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(migration = %m.id(), "applied");
        done.push(m.id());
    }
    Ok(done)
}

/// Tables (by oid) that hold at least one row, outside the system schemas.
const NON_EMPTY_TABLES: &str = "
    SELECT c.oid, format('%I.%I', n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'schema_migrations')
      AND n.nspname NOT LIKE 'pg\\_%'
      AND has_table_privilege(c.oid, 'SELECT')
      AND (xpath('/row/x/text()', query_to_xml(
            format('SELECT EXISTS (SELECT 1 FROM %I.%I) AS x', n.nspname, c.relname),
            false, true, '')))[1]::text::boolean";

/// Rolls back the last `n` applied migrations, newest first, in one transaction;
/// returns their ids.
///
/// If the rollback would drop a table holding rows it is refused, and nothing of it is
/// done, unless `allow_data_loss` is set.
pub async fn down(
    client: &mut Client,
    migrations: &[Migration],
    n: usize,
    allow_data_loss: bool,
) -> Result<Vec<String>, Error> {
    lock(client).await?;
    let result = down_locked(client, migrations, n, allow_data_loss).await;
    unlock(client).await?;
    result
}

async fn down_locked(
    client: &mut Client,
    migrations: &[Migration],
    n: usize,
    allow_data_loss: bool,
) -> Result<Vec<String>, Error> {
    let applied = applied(client).await?;
    verify(&applied, migrations)?;
    let targets: Vec<&Migration> = applied
        .iter()
        .rev()
        .take(n)
        .filter_map(|(version, ..)| migrations.iter().find(|m| m.version == *version))
        .collect();
    let tx = client.transaction().await?;
    let holding_rows = tx.query(NON_EMPTY_TABLES, &[]).await?;
    for m in &targets {
        tx.batch_execute(&m.down)
            .await
            .map_err(|source| Error::Failed {
                migration: m.id(),
                source,
            })?;
        tx.execute(
            "DELETE FROM schema_migrations.applied WHERE version = $1",
            &[&m.version],
        )
        .await?;
    }
    let oids: Vec<u32> = holding_rows.iter().map(|r| r.get(0)).collect();
    let still_there: Vec<u32> = tx
        .query("SELECT oid FROM pg_class WHERE oid = ANY($1)", &[&oids])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let dropped: Vec<String> = holding_rows
        .iter()
        .filter(|r| !still_there.contains(&r.get::<_, u32>(0)))
        .map(|r| r.get(1))
        .collect();
    let ids: Vec<String> = targets.iter().map(|m| m.id()).collect();
    if !dropped.is_empty() && !allow_data_loss {
        tx.rollback().await?;
        return Err(Error::DataLoss {
            migration: ids.join(", "),
            tables: dropped.join(", "),
        });
    }
    tx.commit().await?;
    tracing::info!(migrations = ?ids, dropped_tables_with_rows = ?dropped, "rolled back");
    Ok(ids)
}

/// Creates the cluster-wide roles (idempotent, safe to run concurrently).
pub async fn bootstrap_cluster(client: &mut Client, functions_password: &str) -> Result<(), Error> {
    const SQL: &str = include_str!("../cluster/bootstrap.sql");
    let mut attempt = 0;
    loop {
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT set_config('sfts.functions_password', $1, true)",
            &[&functions_password],
        )
        .await?;
        let result = match tx.batch_execute(SQL).await {
            Ok(()) => tx.commit().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(()),
            // A concurrent bootstrap created or altered the same role first; the next
            // attempt sees its work and has nothing left to race on.
            Err(e) if attempt < 5 && is_catalog_race(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_catalog_race(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_OBJECT
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::INTERNAL_ERROR // "tuple concurrently updated"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_migrations_load_in_order_with_their_reverses() {
        let all = load(&default_dir()).expect("migrations load");
        assert!(!all.is_empty());
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
        assert!(all.iter().all(|m| !m.down.trim().is_empty()));
    }

    #[test]
    fn a_migration_without_its_reverse_is_refused() {
        let dir = std::env::temp_dir().join(format!("mig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("0001_a.up.sql"), "SELECT 1;").expect("write");
        assert!(matches!(load(&dir), Err(Error::MissingDown(_))));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
