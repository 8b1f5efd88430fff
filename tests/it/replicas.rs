//! Two real `postern` processes on one database (#12): what one replica
//! accepted, the other sees, delivers and answers for; one
//! `Idempotency-Key` sent to both at once is one message; and the jobs a
//! replica held when it was killed are delivered by the other after their
//! leases expire; a database outage is a `451` on both, and both recover;
//! a database restart under load loses no `250`.
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
        want.insert(accepted_again(p, &format!("up-{n}"), pair.log()).await);
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

/// The Message-ID of the first message (`{prefix}-{i}`) `p` accepts
/// within 50 tries 100 ms apart, after `451 4.3.0`s while the database
/// comes back.
async fn accepted_again(p: &Postern, prefix: &str, log: &Path) -> String {
    for i in 0..50 {
        let subject = format!("{prefix}-{i}");
        let reply = send(p.smtp, &subject).await;
        if reply.starts_with("250 ") {
            return format!("{subject}@test");
        }
        assert!(reply.starts_with("451 4.3.0"), "{reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not recover\n{}", p.smtp, log_tail(log));
}

/// PostgreSQL restarted (`-m fast`: every connection dropped) while both
/// replicas take a load: every `250` is delivered, the refusals are
/// temporary (4xx), and both replicas take and deliver mail afterwards on
/// their own. A `4xx` whose COMMIT did commit (its answer lost) may be
/// delivered too, and so may a duplicate (at-least-once): both counted and
/// reported, never a loss.
#[tokio::test]
async fn a_database_restart_during_a_load_loses_nothing_and_both_replicas_recover() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let cluster = std::sync::Arc::new(cluster);
    let pair = Pair::on(&cluster.url()).await;
    // Quick retries: a delivery whose outcome the restart cut off is retried.
    let sched = schedule(20, "200ms");
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let env = [
        ("POSTERN_RETRY_SCHEDULE", sched.as_str()),
        ("POSTERN_WEBHOOK_URL", url.as_str()),
    ];
    let replicas = [pair.start(0, &env).await, pair.start(1, &env).await];
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // 30 messages per replica, paced so the load spans the restart.
    let senders: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let (smtp, accepted) = (p.smtp, accepted.clone());
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for i in 0..30 {
                    let subject = format!("load-{n}-{i}");
                    let reply = send(smtp, &subject).await;
                    if reply.starts_with("250 ") {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    replies.push((subject, reply));
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                replies
            })
        })
        .collect();
    wait_until(
        20,
        || "10 messages accepted before the restart".into(),
        || accepted.load(std::sync::atomic::Ordering::SeqCst) >= 10,
    )
    .await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.down();
        c.up();
    })
    .await
    .unwrap();
    let mut replies = Vec::new();
    for s in senders {
        replies.extend(s.await.unwrap());
    }
    let refused: Vec<&(String, String)> = replies
        .iter()
        .filter(|(_, r)| !r.starts_with("250 "))
        .collect();
    for (subject, reply) in &refused {
        assert!(reply.starts_with('4'), "{subject}: not a 4xx: {reply}");
    }
    let mut want: HashSet<String> = replies
        .iter()
        .filter(|(_, r)| r.starts_with("250 "))
        .map(|(s, _)| format!("{s}@test"))
        .collect();
    let during = want.len();
    // After the restart each replica accepts mail again, on its own.
    for (n, p) in replicas.iter().enumerate() {
        want.insert(accepted_again(p, &format!("after-{n}"), pair.log()).await);
    }
    wait_delivered(30, || rx.hits(), &want, pair.log()).await;
    // Late retries of a refused-but-committed message would have come by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = rx.hits();
    let delivered: Vec<String> = hits.iter().map(crate::helpers::message_id).collect();
    let distinct: HashSet<&String> = delivered.iter().collect();
    let refused_delivered = refused
        .iter()
        .filter(|(s, _)| distinct.contains(&format!("{s}@test")))
        .count();
    eprintln!(
        "database restart under load: {} sent, {during} accepted, {} refused (4xx), \
         {refused_delivered} refused yet delivered (COMMIT answer lost), \
         {} webhook requests for {} messages ({} duplicates)",
        replies.len(),
        refused.len(),
        hits.len(),
        distinct.len(),
        hits.len() - distinct.len()
    );
    for p in replicas {
        p.terminate().await;
    }
}

/// The endpoint gate parks what its endpoint has no room for and lets it
/// go when a slot frees; with two replicas, a delivery one replica let go
/// must come back to that replica (whose gate keeps the slot for it), or
/// the slot is lost and, one slot at a time, that replica stops delivering.
/// One slot per endpoint, a slow endpoint and mail through both replicas
/// make every delivery wait parked; every one arrives, exactly once.
#[tokio::test]
async fn deliveries_parked_behind_a_narrow_endpoint_all_arrive_from_both_replicas() {
    let Some(pair) = pair().await else {
        return;
    };
    let endpoint = crate::helpers::Endpoint::slow(Duration::from_millis(30));
    let url = endpoint.url();
    let env = [
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_ENDPOINT_CONCURRENCY", "1"),
        // 20 sessions at once per replica from one address is the default
        // per-IP cap exactly; the start's readiness probe may still count.
        ("POSTERN_MAX_SESSIONS_PER_IP", "100"),
    ];
    let a = pair.start(0, &env).await;
    let b = pair.start(1, &env).await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40 {
        let smtp = if i % 2 == 0 { a.smtp } else { b.smtp };
        sends.spawn(async move { queue_id(&send(smtp, &format!("narrow-{i}")).await) });
    }
    while let Some(sent) = sends.join_next().await {
        sent.unwrap();
    }
    let want: HashSet<String> = (0..40).map(|i| format!("narrow-{i}@test")).collect();
    wait_delivered(30, || endpoint.hits(), &want, pair.log()).await;
    // Nothing is sent twice: no lease expired, no outcome was lost.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(endpoint.hits().len(), 40, "{}", log_tail(pair.log()));
    a.terminate().await;
    b.terminate().await;
}
