//! The PostgreSQL store's connection (issue #12), against the throwaway
//! server `tests/run.sh` starts (or `POSTERN_TEST_DATABASE_URL`).

use std::time::Duration;

use postern::config::DatabaseSettings;
use postern::spool::pg::connect;
use postern::spool::pg::migrate::{self, Migration};

/// The test database's URL; `None` (test skipped) outside CI when there is
/// none, a clear failure in CI, where one must exist.
pub fn test_database_url() -> Option<String> {
    match std::env::var("POSTERN_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => panic!(
            "POSTERN_TEST_DATABASE_URL is not set and CI is: run the tests with \
             `bash tests/run.sh` (it starts a throwaway PostgreSQL; needs initdb, \
             e.g. apt-get install postgresql) or point the variable at a database"
        ),
        _ => {
            eprintln!("skipped: POSTERN_TEST_DATABASE_URL is not set (bash tests/run.sh sets it)");
            None
        }
    }
}

#[tokio::test]
async fn select_one_through_the_production_pool() {
    let Some(url) = test_database_url() else {
        return;
    };
    let settings = DatabaseSettings::from_url(&url).expect("test database URL parses");
    let pool = connect::pool(&settings).expect("pool builds");
    let health = connect::check(&pool, Duration::from_secs(10))
        .await
        .expect("SELECT 1 on the test database");
    // The throwaway server has no certificate: prefer falls back to plain.
    assert!(!health.tls);
}

#[tokio::test]
async fn a_closed_port_is_reported_unreachable() {
    let port = crate::helpers::free_port();
    let settings =
        DatabaseSettings::from_url(&format!("postgres://u:hunter2@127.0.0.1:{port}/d")).unwrap();
    let pool = connect::pool(&settings).unwrap();
    let e = connect::check(&pool, Duration::from_secs(10))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("database unreachable"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

/// A fresh database on the test server, so runs never see each other's
/// schema.
pub async fn fresh_database(url: &str) -> DatabaseSettings {
    let admin = connect::pool(&DatabaseSettings::from_url(url).unwrap()).unwrap();
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let client = admin.get().await.unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut s = DatabaseSettings::from_url(url).unwrap();
    s.pg.dbname(&name);
    s
}

const TEST_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "counter",
        sql: "CREATE TABLE t_counter (n int NOT NULL); INSERT INTO t_counter VALUES (0);",
    },
    Migration {
        version: 2,
        name: "bump",
        // Not idempotent on purpose: applied twice, n would be 2.
        sql: "UPDATE t_counter SET n = n + 1;",
    },
];

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    let Some(url) = test_database_url() else {
        return;
    };
    let settings = fresh_database(&url).await;
    let mut runners = Vec::new();
    for _ in 0..6 {
        let pool = connect::pool(&settings).unwrap();
        runners.push(tokio::spawn(async move {
            migrate::apply(&pool, TEST_MIGRATIONS).await
        }));
    }
    let mut applied = Vec::new();
    for r in runners {
        applied.extend(r.await.unwrap().expect("runner succeeds"));
    }
    applied.sort();
    assert_eq!(
        applied,
        vec![1, 2],
        "each version applied by exactly one runner"
    );
    let pool = connect::pool(&settings).unwrap();
    let n: i32 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT n FROM t_counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let status = migrate::status(&pool, TEST_MIGRATIONS).await.unwrap();
    assert_eq!((status.applied, status.known), (Some(2), Some(2)));
    // A binary knowing only version 1 refuses this database.
    let e = migrate::apply(&pool, &TEST_MIGRATIONS[..1])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the database is at schema version 2, newer than this binary knows (1); run a newer Postern"
    );
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_applied() {
    let Some(url) = test_database_url() else {
        return;
    };
    let settings = fresh_database(&url).await;
    let pool = connect::pool(&settings).unwrap();
    let broken = [
        TEST_MIGRATIONS[0],
        Migration {
            version: 2,
            name: "broken",
            sql: "SELECT no_such_column FROM t_counter;",
        },
    ];
    let e = migrate::apply(&pool, &broken).await.unwrap_err();
    assert!(
        e.to_string().starts_with("migration 2 (broken) failed"),
        "{e}"
    );
    let status = migrate::status(&pool, &broken).await.unwrap();
    assert_eq!(status.applied, None);
}
