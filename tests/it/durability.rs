//! Crash durability of the real binary: `250` means the message survives a
//! SIGKILL, and everything spooled is delivered after a restart.
//!
//! Each test runs `postern` as a child process on loopback ports, kills it
//! with SIGKILL (`Child::kill`) and starts it again on the same spool.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::binary::{Conn, Launch, Ledger, Mail, Postern, log_tail, transaction, wait_delivered};
use crate::helpers::*;

/// Starts the binary on `spool`, delivering to `url` with 20 retries
/// 200 ms apart: a delivery stays pending for about 4 s of failures, and
/// comes back quickly once the endpoint is up.
async fn start(spool: &Path, url: &str, log: &Path) -> Postern {
    let schedule = schedule(20, "200ms");
    Launch {
        domain: "durability.test",
        spool,
        log,
        env: &[
            ("POSTERN_WEBHOOK_URL", url),
            ("POSTERN_RETRY_SCHEDULE", &schedule),
            ("POSTERN_WEBHOOK_TIMEOUT", "5s"),
            ("POSTERN_WEBHOOK_CONNECT_TIMEOUT", "2s"),
            // Every delivery is to be tried while the endpoint is down (the
            // breaker would park most of them: tests/it/hung_endpoint.rs).
            ("POSTERN_ENDPOINT_BREAKER_FAILURES", "0"),
        ],
    }
    .start()
    .await
}

const MAIL: Mail = Mail {
    from: "alice@example.org",
    to: "bob@example.com",
    content,
};

fn content(message_id: &str) -> String {
    format!(
        "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: durability {message_id}\r\n\
         Message-ID: <{message_id}>\r\n\r\nbody of {message_id}\r\n.\r\n"
    )
}

/// Endpoint down: 20 messages are accepted and spooled, the process is
/// SIGKILLed, and a restart on the same spool delivers all of them, signed,
/// once the endpoint answers; the spool ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_then_sigkill_then_restart_delivers_everything() {
    const N: usize = 20;
    let spool_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let spool = spool_dir.path();
    let mut endpoint = Endpoint::reserve();

    // 1. Endpoint refuses connections; every message still gets 250.
    let first = start(spool, &endpoint.url(), &log).await;
    let mut c = Conn::connect(first.smtp).await.unwrap();
    c.reply().await.unwrap();
    assert!(c.cmd("EHLO client.test").await.unwrap().starts_with("250"));
    let mut queued: HashMap<String, String> = HashMap::new();
    for i in 0..N {
        let mid = format!("down-{i}@durability.test");
        let r = transaction(&mut c, MAIL, &mid, || {}).await.unwrap();
        queued.insert(mid, queue_id(&r));
    }
    let _ = c.cmd("QUIT").await;
    // Every delivery has been tried and failed (a state file each) while
    // still pending: the endpoint really was down.
    wait_until(
        10,
        || format!("{N} state files, have {}", count(spool, "state")),
        || count(spool, "state") == N,
    )
    .await;
    assert!(endpoint.hits().is_empty());

    first.kill9();
    assert_eq!(spooled(spool), N, "spooled messages after SIGKILL");

    // 2. Endpoint up, restart on the same spool.
    endpoint.open();
    let second = start(spool, &endpoint.url(), &log).await;
    let want: HashSet<String> = queued.keys().cloned().collect();
    wait_delivered(20, || endpoint.hits(), &want, &log).await;
    wait_until(
        10,
        || format!("empty msg/ (have {})", spooled(spool)),
        || spooled(spool) == 0,
    )
    .await;
    // Nothing more arrives once the spool is empty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = endpoint.hits();
    for h in &hits {
        assert!(h.verify(), "signature of {}", h.header("webhook-id"));
        assert_eq!(h.path, "/hook");
        let mid = message_id(h);
        let id = queued.get(&mid).unwrap_or_else(|| panic!("unknown {mid}"));
        assert_eq!(h.json()["id"], id.as_str());
        assert_eq!(h.header("webhook-id"), format!("msg_{id}_0"));
        assert_eq!(h.json()["subject"], format!("durability {mid}"));
    }
    assert_eq!(
        hits.len(),
        N,
        "each message exactly once (nothing in flight at the kill)"
    );
    assert_eq!(count(spool, "state"), 0, "state files left");
    assert_eq!(count(spool, "tmp"), 0, "tmp files left");
    drop(second);
}

/// SIGKILL while clients are sending and deliveries are in flight: after a
/// restart, every `250`ed message is delivered at least once, and nothing
/// that never reached DATA content is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_traffic_loses_no_acknowledged_message() {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 75;
    let spool_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let spool = spool_dir.path();
    let rx = Receiver::start().await;
    let url = rx.url("/hook");

    let first = start(spool, &url, &log).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let traffic_deadline = Instant::now() + Duration::from_secs(10);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let mids = (0..PER_CLIENT)
                .map(|i| format!("kill-{n}-{i}@durability.test"))
                .collect();
            Ledger::client(ledger.clone(), first.smtp, MAIL, mids, traffic_deadline)
        })
        .collect();

    // Kill at a random-ish point after ~50 acknowledgements.
    let threshold = rand::thread_rng().gen_range(50..90);
    let kill_deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let acked = ledger.lock().unwrap().acked.len();
        let all_done = clients.iter().all(|c| c.is_finished());
        if acked >= threshold || all_done || Instant::now() > kill_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered_before = rx.hits().len();
    first.kill9();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(15), c)
            .await
            .expect("clients stop after the kill")
            .unwrap();
    }
    let (attempted, acked, refused) = Ledger::snapshot(&ledger);
    assert!(refused.is_empty(), "non-250 replies: {refused:?}");
    assert!(
        acked.len() >= 50,
        "only {} messages acknowledged before the kill (threshold {threshold})\n{}",
        acked.len(),
        log_tail(&log)
    );
    let spooled_at_kill = spooled(spool);

    // Restart on the same spool; the endpoint URL is unchanged.
    let second = start(spool, &url, &log).await;
    wait_delivered(20, || rx.hits(), &acked, &log).await;
    // Messages committed but not acknowledged are delivered too: the spool
    // empties.
    wait_until(
        10,
        || format!("empty msg/ (have {})", spooled(spool)),
        || spooled(spool) == 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(second);

    let hits = rx.hits();
    let mut by_message: HashMap<String, Vec<&Hit>> = HashMap::new();
    for h in &hits {
        assert!(h.verify(), "signature of {}", h.header("webhook-id"));
        by_message.entry(message_id(h)).or_default().push(h);
    }
    let delivered: HashSet<String> = by_message.keys().cloned().collect();
    let unexpected: Vec<&String> = delivered.difference(&attempted).collect();
    assert!(
        unexpected.is_empty(),
        "delivered but never sent: {unexpected:?}"
    );
    let lost: Vec<&String> = acked.difference(&delivered).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // Repeats of one message are the same delivery: same webhook-id and
    // payload id, so a receiver can deduplicate.
    for (mid, hs) in &by_message {
        let ids: HashSet<(String, String)> = hs
            .iter()
            .map(|h| {
                (
                    h.header("webhook-id"),
                    h.json()["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(ids.len(), 1, "{mid} delivered under several ids: {ids:?}");
    }
    let duplicates = hits.len() - delivered.len();
    let committed_unacked = delivered.difference(&acked).count();
    println!(
        "durability: threshold {threshold}, attempted {}, acknowledged {}, \
         delivered before kill {delivered_before}, spooled at kill {spooled_at_kill}, \
         delivered {} distinct ({committed_unacked} committed without a 250 seen), \
         {} requests, duplicates {duplicates}",
        attempted.len(),
        acked.len(),
        delivered.len(),
        hits.len()
    );
}
