//! Postern on the shared PostgreSQL store (#12), in-process: mail flows
//! through the database, and an outage of the database is a temporary
//! failure (`451 4.3.0`, `/readyz` 503), never a `250`, until it returns;
//! and what only a shared store has (the store suite, tests/it/store.rs,
//! covers the rest on both backends): replicas racing on one
//! idempotency key, and leases that expire.

use std::time::Duration;

use postern::spool::pg::{connect, migrate};
use postern::spool::{
    CommitError, DeliveryState, Envelope, Error, KeyRecord, RECORDS_IDEM, Store, now_ms,
};

use crate::database::{Cluster, fresh_database, fresh_database_url, test_database_url};
use crate::helpers::{Smtp, app_with_receiver, sample};

async fn readyz(http: std::net::SocketAddr) -> u16 {
    reqwest::get(format!("http://{http}/readyz"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One message with `subject` on a new session; the reply to its DATA.
pub async fn send(smtp: std::net::SocketAddr, subject: &str) -> String {
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.test").await;
    c.send_mail(
        "a@example.org",
        &["b@example.com"],
        &format!("Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nhi\r\n"),
    )
    .await
}

#[tokio::test]
async fn mail_flows_through_the_database_and_an_outage_is_a_451() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = fresh_database_url(&cluster.url()).await;
    let (app, rx) = app_with_receiver(&[("POSTERN_DATABASE_URL", url.as_str())]).await;
    let reply = send(app.smtp, "one").await;
    assert!(reply.starts_with("250 "), "{reply}");
    rx.wait_for(1, 10).await;
    assert_eq!(readyz(app.http).await, 200);
    let metrics = reqwest::get(format!("http://{}/metrics", app.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in ["postern_database_pool_in_use", "postern_database_jobs_due"] {
        assert!(
            sample(&metrics, name).is_some(),
            "{name} missing:\n{metrics}"
        );
    }
    let claims = sample(&metrics, "postern_store_claim_seconds_count").unwrap_or(0.0);
    assert!(claims >= 1.0, "{metrics}");

    cluster.down();
    let reply = send(app.smtp, "two").await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert_eq!(readyz(app.http).await, 503);

    cluster.up();
    // Mail flows again on its own, on fresh connections. A 451 while the
    // server comes back may still have committed (the answer to COMMIT
    // was lost): the client retries, so that one may be delivered too.
    let mut accepted = None;
    for i in 0..50 {
        let subject = format!("three-{i}");
        let reply = send(app.smtp, &subject).await;
        if reply.starts_with("250 ") {
            accepted = Some(subject);
            break;
        }
        assert!(reply.starts_with("451 4.3.0"), "{reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = accepted.expect("a 250 after the database came back");
    let subject = |h: &crate::helpers::Hit| h.json()["subject"].as_str().unwrap_or("").to_string();
    crate::helpers::wait_until(
        10,
        || format!("{accepted} delivered"),
        || rx.hits().iter().any(|h| subject(h) == accepted),
    )
    .await;
    let hits = rx.hits();
    let subjects: Vec<String> = hits.iter().map(subject).collect();
    assert!(
        !subjects.contains(&"two".to_string()),
        "the 451'd message was delivered: {subjects:?}"
    );
    let ids: std::collections::HashSet<String> =
        hits.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        hits.len(),
        "a delivery was made twice: {subjects:?}"
    );
    assert_eq!(readyz(app.http).await, 200);
    app.stop().await;
}

/// Two stores on one fresh database of the test server, as two replicas
/// see it; claims reserve a delivery for `lease`.
async fn two_replicas(lease: Duration) -> Option<(Store, Store)> {
    let url = test_database_url()?;
    let mut settings = fresh_database(&url).await;
    settings.lease = lease;
    let open = || async {
        let pool = connect::pool(&settings).unwrap();
        migrate::migrate(&pool).await.unwrap();
        Store::open_pg(pool, settings.lease)
    };
    Some((open().await, open().await))
}

fn envelope() -> Envelope {
    crate::store::envelope(1)
}

/// Of concurrent commits with one idempotency key, on two replicas, one
/// commits; the others commit nothing and find the winner's record.
#[tokio::test]
async fn one_idempotency_key_commits_one_message_across_replicas() {
    let Some((a, b)) = two_replicas(Duration::from_secs(300)).await else {
        return;
    };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut incoming = store.intake().accept(envelope()).await.unwrap();
            incoming.write(b"Subject: x\r\n\r\nx\r\n").await.unwrap();
            let key = KeyRecord {
                name: "k.json".into(),
                record: format!("winner {i}").into_bytes(),
                ttl: Duration::from_secs(3600),
            };
            match incoming.commit_keyed(Some(key)).await {
                Ok(c) => Some((i, c.schedule().id)),
                Err(CommitError::KeyTaken) => None,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let record = a.read_record(RECORDS_IDEM, "k.json").await.unwrap();
    assert_eq!(record, Some(format!("winner {}", won[0].0).into_bytes()));
    let mut claimed = Vec::new();
    while let Ok(lease) = b.claim(now_ms()).await {
        claimed.push(lease.key().id.clone());
    }
    assert_eq!(claimed, [won[0].1.clone()], "one message in the store");
}

/// A replica's lease keeps the others off its delivery until it expires;
/// then another replica claims it, and the first one's late outcome is
/// refused.
#[tokio::test]
async fn an_expired_lease_passes_the_delivery_to_another_replica() {
    let Some((a, b)) = two_replicas(Duration::from_secs(1)).await else {
        return;
    };
    let env = a
        .intake()
        .submit(envelope(), b"Subject: x\r\n\r\nx\r\n")
        .await
        .unwrap();
    let first = a.claim(now_ms()).await.unwrap();
    assert!(b.claim(now_ms()).await.is_err(), "claimed while leased");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = b.claim(now_ms()).await.expect("claimable after expiry");
    assert_eq!(second.key(), first.key());
    assert_eq!(second.key().id, env.id);
    let late = DeliveryState {
        attempts: 1,
        next_at: now_ms() + 60_000,
        ..DeliveryState::fresh()
    };
    let refused = a.write_state(&first, &late).await;
    assert!(matches!(refused, Err(Error::LeaseLost(..))), "{refused:?}");
    b.finish(&second, 1, false, &DeliveryState::fresh())
        .await
        .unwrap();
    assert!(!a.is_committed(&env.id).await.unwrap());
}

/// What an interrupted receive left behind (chunks written ahead of a
/// commit that never came) is swept; while another replica runs that
/// sweep (holds its advisory lock), this one skips it.
#[tokio::test]
async fn orphans_of_interrupted_receives_are_swept_once_across_replicas() {
    let Some((a, b)) = two_replicas(Duration::from_secs(300)).await else {
        return;
    };
    let mut incoming = a.intake().accept(envelope()).await.unwrap();
    incoming.write(&vec![b'x'; 600 * 1024]).await.unwrap();
    // A crash: no commit, and no writer left to clean up.
    std::mem::forget(incoming);
    let pool = a.database().unwrap();
    let holder = pool.get().await.unwrap();
    // "postern" in ASCII + 2: the orphan sweep's lock.
    let lock: i64 = 0x0070_6f73_7465_726e + 2;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&lock])
        .await
        .unwrap();
    assert_eq!(b.sweep_orphans(Duration::ZERO).await.unwrap(), 0);
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&lock])
        .await
        .unwrap();
    assert_eq!(b.sweep_orphans(Duration::ZERO).await.unwrap(), 1);
    let chunks: i64 = holder
        .query_one("SELECT count(*) FROM message_chunks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(chunks, 0);
}
