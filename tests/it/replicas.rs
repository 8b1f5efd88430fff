//! Two real `postern` processes on one database (#12): what one replica
//! accepted, the other sees, delivers and answers for; one
//! `Idempotency-Key` sent to both at once is one message; and the jobs a
//! replica held when it was killed are delivered by the other after their
//! leases expire; a database outage is a `451` on both, and both recover.
//! Skipped (saying why) without a test database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::aiosmtpd::Smtpd;
use crate::api::{KEY, post_to, simple};
use crate::binary::{Launch, Postern, log_tail, wait_delivered};
use crate::database::{Cluster, fresh_database_url, test_database_url};
use crate::helpers::{Hit, Receiver, schedule, wait_until};
use crate::shared_store::send;

/// Two replicas' spools and their shared log; the database.
struct Pair {
    _dirs: [tempfile::TempDir; 3],
    spools: [PathBuf; 2],
    log: PathBuf,
    url: String,
}

async fn pair() -> Option<Pair> {
    Some(Pair::on(&test_database_url()?).await)
}

impl Pair {
    /// Two replicas' state on a fresh database of the server at `url`.
    async fn on(url: &str) -> Pair {
        let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
        Pair {
            spools: [dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf()],
            log: dirs[2].path().join("postern.log"),
            url: fresh_database_url(url).await,
            _dirs: dirs,
        }
    }

    /// Replica `n` (0 or 1) with `env` on top of the database and API key.
    async fn start(&self, n: usize, env: &[(&str, &str)]) -> Postern {
        let mut all = vec![
            ("POSTERN_DATABASE_URL", self.url.as_str()),
            ("POSTERN_API_KEYS", KEY),
        ];
        all.extend_from_slice(env);
        Launch {
            domain: "replicas.test",
            spool: &self.spools[n],
            log: &self.log,
            env: &all,
        }
        .start()
        .await
    }

    fn log(&self) -> &Path {
        &self.log
    }
}

async fn get(p: &Postern, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", p.http))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Whether, within 2 s, `p`'s pending deliveries come to include
/// (`want`) or exclude a delivery of message `id`.
async fn listed_within(p: &Postern, id: &str, want: bool) -> bool {
    for _ in 0..100 {
        let (status, page) = get(p, "/v1/deliveries?state=pending").await;
        assert_eq!(status, 200, "{page}");
        let listed = page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["message_id"] == id);
        if listed == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The queue ids of `250` replies.
fn queue_id(reply: &str) -> String {
    assert!(reply.starts_with("250 "), "{reply}");
    crate::helpers::queue_id(reply)
}

#[tokio::test]
async fn mail_accepted_by_one_replica_is_seen_and_delivered_by_the_other() {
    let Some(pair) = pair().await else {
        return;
    };
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    // Refused twice, so the delivery is pending for a while.
    rx.script(&[(503, None), (503, None)]);
    let sched = schedule(10, "1s");
    let env = [
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_RETRY_SCHEDULE", sched.as_str()),
    ];
    let a = pair.start(0, &env).await;
    let b = pair.start(1, &env).await;
    let id = queue_id(&send(a.smtp, "via-a").await);
    // B lists the delivery A accepted while it is pending.
    assert!(
        listed_within(&b, &id, true).await,
        "B does not list A's delivery\n{}",
        log_tail(pair.log())
    );
    let (status, one) = get(&b, &format!("/v1/deliveries/{id}.0")).await;
    assert_eq!(status, 200, "{one}");
    let want = HashSet::from(["via-a@test".to_string()]);
    wait_delivered(20, || rx.hits(), &want, pair.log()).await;
    assert!(
        listed_within(&b, &id, false).await,
        "still pending on B after delivery"
    );
    a.terminate().await;
    b.terminate().await;
}

#[tokio::test]
async fn one_idempotency_key_sent_to_both_replicas_is_one_message() {
    let Some(pair) = pair().await else {
        return;
    };
    let relay = Smtpd::start(0, &[]);
    let relay_url = format!("smtp://127.0.0.1:{}?tls=none", relay.port);
    let rx = Receiver::start().await;
    let hook = rx.url("/hook");
    let env = [
        ("POSTERN_RELAY_URL", relay_url.as_str()),
        ("POSTERN_WEBHOOK_URL", hook.as_str()),
    ];
    let a = pair.start(0, &env).await;
    let b = pair.start(1, &env).await;
    let mut ids = HashSet::new();
    for round in 0..5 {
        let key = format!("order-{round}");
        let body = simple(&format!("idem {round}")).to_string();
        let (ra, rb) = tokio::join!(
            post_to(a.http, Some(KEY), Some(&key), body.clone()),
            post_to(b.http, Some(KEY), Some(&key), body.clone()),
        );
        let (sa, sb) = (ra.status().as_u16(), rb.status().as_u16());
        let (ja, jb): (Value, Value) = (ra.json().await.unwrap(), rb.json().await.unwrap());
        assert_eq!((sa, sb), (202, 202), "{ja} {jb}");
        assert_eq!(ja["id"], jb["id"], "round {round}: two ids for one key");
        let id = ja["id"].as_str().unwrap().to_string();
        // The status of a message sent through either is on both.
        for p in [&a, &b] {
            let (status, st) = get(p, &format!("/v1/messages/{id}")).await;
            assert_eq!(status, 200, "{st}");
        }
        ids.insert(id);
    }
    wait_until(
        20,
        || format!("5 messages at the relay, got {}", relay.messages().len()),
        || relay.messages().len() >= 5,
    )
    .await;
    // Anything sent twice would have arrived by now with the first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.messages().len(), 5, "a key was sent twice");
    assert_eq!(ids.len(), 5);
    a.terminate().await;
    b.terminate().await;
}

/// `kill -9` of the replica holding every lease while the endpoint hangs;
/// the endpoint recovers; the other replica delivers every message once
/// the leases expire. Duplicates (at-least-once: the killed replica's
/// attempts reached the endpoint) are counted and reported, never lost
/// mail.
#[tokio::test]
async fn a_killed_replicas_leased_jobs_are_delivered_by_the_other() {
    let Some(pair) = pair().await else {
        return;
    };
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let env = [
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_DATABASE_LEASE", "2s"),
        ("POSTERN_WEBHOOK_TIMEOUT", "60s"),
    ];
    let held = rx.hold().await;
    let a = pair.start(0, &env).await;
    let mut want = HashSet::new();
    for i in 0..5 {
        queue_id(&send(a.smtp, &format!("kill-{i}")).await);
        want.insert(format!("kill-{i}@test"));
    }
    // Every message is in flight on A (leased, its POST unanswered).
    rx.wait_for(5, 10).await;
    a.kill9();
    let before = rx.hits().len();
    drop(held);
    let b = pair.start(1, &env).await;
    // Delivered again, by B: requests after the kill.
    let after = || rx.hits()[before..].to_vec();
    wait_delivered(30, after, &want, pair.log()).await;
    let hits: Vec<Hit> = rx.hits();
    eprintln!(
        "kill -9 with 5 leased jobs: {} webhook requests for 5 messages ({} duplicates, all with one webhook-id per message)",
        hits.len(),
        hits.len() - 5
    );
    let ids: HashSet<String> = hits.iter().map(|h| h.header("webhook-id")).collect();
    assert_eq!(ids.len(), 5, "webhook-id is stable across replicas");
    b.terminate().await;
}

/// The database stopped under two replicas: both answer `451 4.3.0` and
/// `/readyz` 503; when it returns, mail flows through both again on its
/// own.
#[tokio::test]
async fn both_replicas_refuse_mail_while_the_database_is_down_and_recover() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let pair = Pair::on(&cluster.url()).await;
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let env = [("POSTERN_WEBHOOK_URL", url.as_str())];
    let replicas = [pair.start(0, &env).await, pair.start(1, &env).await];
    let readyz = |p: &Postern| {
        let url = format!("http://{}/readyz", p.http);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    cluster.down();
    for (n, p) in replicas.iter().enumerate() {
        let reply = send(p.smtp, &format!("down-{n}")).await;
        assert!(reply.starts_with("451 4.3.0"), "{reply}");
        assert_eq!(readyz(p).await, 503);
    }
    cluster.up();
    let mut want = HashSet::new();
    for (n, p) in replicas.iter().enumerate() {
        let mut accepted = false;
        for i in 0..50 {
            let subject = format!("up-{n}-{i}");
            let reply = send(p.smtp, &subject).await;
            if reply.starts_with("250 ") {
                want.insert(format!("{subject}@test"));
                accepted = true;
                break;
            }
            assert!(reply.starts_with("451 4.3.0"), "{reply}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            accepted,
            "replica {n} did not recover\n{}",
            log_tail(pair.log())
        );
        assert_eq!(readyz(p).await, 200);
    }
    wait_delivered(20, || rx.hits(), &want, pair.log()).await;
    let delivered: HashSet<String> = rx.hits().iter().map(crate::helpers::message_id).collect();
    assert!(
        !delivered.iter().any(|m| m.starts_with("down-")),
        "a 451'd message was delivered: {delivered:?}"
    );
    for p in replicas {
        p.terminate().await;
    }
}
