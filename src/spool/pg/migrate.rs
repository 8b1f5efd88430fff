//! Schema migrations for the PostgreSQL store: the SQL files of
//! `migrations/` (embedded, see its README), applied at start-up before the
//! store serves. All pending ones run in one transaction under a
//! transaction-scoped advisory lock, so N replicas starting at once apply
//! each exactly once and the others then see them applied.

use deadpool_postgres::Pool;

use super::connect::error_chain;

/// One embedded SQL file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations this binary knows, ascending (`migrations/NNNN_*.sql`).
pub static MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store",
        sql: include_str!("../../../migrations/0001_store.sql"),
    },
    Migration {
        version: 2,
        name: "auth_kept",
        sql: include_str!("../../../migrations/0002_auth_kept.sql"),
    },
    Migration {
        version: 3,
        name: "history",
        sql: include_str!("../../../migrations/0003_history.sql"),
    },
];

/// Advisory lock key shared by every Postern ("postern" in ASCII).
const LOCK_KEY: i64 = 0x0070_6f73_7465_726e;

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database unreachable: {0}")]
    Unreachable(String),
    #[error("migration {version} ({name}) failed: {msg}")]
    Failed {
        version: i64,
        name: &'static str,
        msg: String,
    },
    #[error("migrations: {0}")]
    Db(String),
    #[error(
        "the database is at schema version {db}, newer than this binary knows ({known}); run a newer Postern"
    )]
    TooNew { db: i64, known: i64 },
    #[error("migration list out of order at version {0}")]
    Unordered(i64),
}

/// Applied versus known, for `postern doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Highest applied version (`None`: nothing applied yet).
    pub applied: Option<i64>,
    /// Highest version this binary knows.
    pub known: Option<i64>,
}

fn db(e: tokio_postgres::Error) -> MigrateError {
    MigrateError::Db(error_chain(&e))
}

/// Applies [`MIGRATIONS`]; returns the versions this call applied.
pub async fn migrate(pool: &Pool) -> Result<Vec<i64>, MigrateError> {
    apply(pool, MIGRATIONS).await
}

/// Applies what of `migrations` is not applied yet (tests pass their own list).
pub async fn apply(pool: &Pool, migrations: &[Migration]) -> Result<Vec<i64>, MigrateError> {
    if let Some(w) = migrations.windows(2).find(|w| w[1].version <= w[0].version) {
        return Err(MigrateError::Unordered(w[1].version));
    }
    let mut client = pool
        .get()
        .await
        .map_err(|e| MigrateError::Unreachable(error_chain(&e)))?;
    let tx = client.transaction().await.map_err(db)?;
    // Taken before the table is created: concurrent CREATE TABLE IF NOT
    // EXISTS can still collide in the catalog.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS postern_schema_migrations (
             version bigint PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db)?;
    let applied: Option<i64> = tx
        .query_one("SELECT max(version) FROM postern_schema_migrations", &[])
        .await
        .map_err(db)?
        .get(0);
    let known = migrations.last().map(|m| m.version);
    check_not_newer(applied, known)?;
    let mut done = Vec::new();
    for m in migrations.iter().filter(|m| Some(m.version) > applied) {
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| MigrateError::Failed {
                version: m.version,
                name: m.name,
                msg: error_chain(&e),
            })?;
        tx.execute(
            "INSERT INTO postern_schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(db)?;
        done.push(m.version);
    }
    tx.commit().await.map_err(db)?;
    Ok(done)
}

/// Applied versus known, without changing anything.
pub async fn status(pool: &Pool, migrations: &[Migration]) -> Result<Status, MigrateError> {
    let client = pool
        .get()
        .await
        .map_err(|e| MigrateError::Unreachable(error_chain(&e)))?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('postern_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    let applied = if exists {
        client
            .query_one("SELECT max(version) FROM postern_schema_migrations", &[])
            .await
            .map_err(db)?
            .get(0)
    } else {
        None
    };
    Ok(Status {
        applied,
        known: migrations.last().map(|m| m.version),
    })
}

/// Pure: refuse a database migrated by a newer binary.
fn check_not_newer(applied: Option<i64>, known: Option<i64>) -> Result<(), MigrateError> {
    match (applied, known) {
        (Some(db), k) if Some(db) > k => Err(MigrateError::TooNew {
            db,
            known: k.unwrap_or(0),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_database_is_refused() {
        assert!(check_not_newer(None, None).is_ok());
        assert!(check_not_newer(None, Some(3)).is_ok());
        assert!(check_not_newer(Some(3), Some(3)).is_ok());
        assert!(check_not_newer(Some(2), Some(3)).is_ok());
        assert!(matches!(
            check_not_newer(Some(4), Some(3)),
            Err(MigrateError::TooNew { db: 4, known: 3 })
        ));
        assert!(check_not_newer(Some(1), None).is_err());
    }
}
