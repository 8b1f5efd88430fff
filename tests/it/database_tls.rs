//! TLS to the database (#12): `sslmode` in `POSTERN_DATABASE_URL` and
//! `POSTERN_DATABASE_CA`, against a cluster of the test's own that serves a
//! certificate of a test CA, through the production pool.

use std::time::Duration;

use postern::config::DatabaseSettings;
use postern::spool::pg::connect::{self, ConnectError, Health};

use crate::database::{Cluster, test_database_url};
use crate::pki::{Pki, TestCa};

/// `connect::check` on `url` trusting the CA in `ca_file`.
async fn check(url: &str, ca_file: Option<&str>) -> Result<Health, ConnectError> {
    let mut settings = DatabaseSettings::from_url(url).expect("URL parses");
    settings.ca_file = ca_file.map(Into::into);
    let pool = connect::pool(&settings).expect("pool builds");
    connect::check(&pool, Duration::from_secs(10)).await
}

#[tokio::test]
async fn verify_full_with_the_issuing_ca_connects_over_tls_and_another_ca_is_refused() {
    let pki = Pki::new();
    let Some(cluster) = Cluster::start_tls(&pki.leaf) else {
        return;
    };
    let url = format!("{}?sslmode=verify-full", cluster.url());
    let health = check(&url, Some(&pki.ca_file))
        .await
        .expect("verify-full with the issuing CA connects");
    assert!(health.tls, "the connection is not encrypted");

    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), TestCa::new("Some other CA").pem()).unwrap();
    let other = other.path().display().to_string();
    for mode in ["verify-full", "verify-ca"] {
        let url = format!("{}?sslmode={mode}", cluster.url());
        let msg = check(&url, Some(&other)).await.unwrap_err().to_string();
        assert!(msg.starts_with("database unreachable"), "{mode}: {msg}");
        assert!(msg.contains("UnknownIssuer"), "{mode}: {msg}");
    }
    // Without POSTERN_DATABASE_CA the public roots do not know the test CA.
    let msg = check(&url, None).await.unwrap_err().to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails() {
    // The shared test server runs without ssl.
    let Some(url) = test_database_url() else {
        return;
    };
    let mut u = url::Url::parse(&url).unwrap();
    u.query_pairs_mut().append_pair("sslmode", "require");
    let msg = check(u.as_str(), None).await.unwrap_err().to_string();
    assert!(msg.starts_with("database unreachable"), "{msg}");
    assert!(msg.to_lowercase().contains("tls"), "{msg}");
}
