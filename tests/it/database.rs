//! The PostgreSQL store's connection (issue #12), against the throwaway
//! server `tests/run.sh` starts (or `POSTERN_TEST_DATABASE_URL`).

use std::time::Duration;

use postern::config::DatabaseSettings;
use postern::spool::pg::connect;

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
