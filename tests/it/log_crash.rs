//! The message log (`src/spool/log`) under crashes, with the real binary
//! and `POSTERN_FSYNC` on: SIGKILL at random points, again and again, and
//! torn records at the end of a segment.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::binary::{Conn, Launch, Ledger, Mail, Postern, transaction, wait_delivered};
use crate::helpers::*;

async fn start(spool: &Path, url: &str, log: &Path) -> Postern {
    Launch {
        domain: "log.test",
        spool,
        log,
        env: &[
            ("POSTERN_WEBHOOK_URL", url),
            ("POSTERN_FSYNC", "true"),
            (
                "POSTERN_RETRY_SCHEDULE",
                "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
            ),
            ("POSTERN_WEBHOOK_CONNECT_TIMEOUT", "500ms"),
            ("POSTERN_ENDPOINT_BREAKER_FAILURES", "0"),
            // Finished messages are not kept, so every segment but the one
            // being written can be deleted once its messages are delivered.
            ("POSTERN_HISTORY_RETENTION", "0"),
        ],
    }
    .start()
    .await
}

const MAIL: Mail = Mail {
    from: "a@log.test",
    to: "b@log.test",
    content: body,
};

fn body(mid: &str) -> String {
    format!(
        "From: a@log.test\r\nTo: b@log.test\r\nSubject: log {mid}\r\nMessage-ID: <{mid}>\r\n\r\n\
         {}\r\n.\r\n",
        format!("line of {mid}\r\n").repeat(20)
    )
}

/// 200 times: start on the same spool, three clients send, deliveries go
/// out, and SIGKILL comes after a random 0–60 ms. Then one last start:
/// every message that got a `250` in any round is delivered (at least
/// once, under one webhook-id), nothing is delivered that was never sent,
/// each payload is whole, and the log shrinks back to the one segment
/// being written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_points_200_times_loses_no_acknowledged_message() {
    const ROUNDS: usize = 200;
    let spool_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let spool = spool_dir.path();
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut rng = rand::rngs::StdRng::from_entropy();
    for round in 0..ROUNDS {
        assert!(Instant::now() < deadline, "round {round}: out of time");
        let p = start(spool, &url, &log).await;
        let clients: Vec<_> = (0..3)
            .map(|n| {
                let mids = (0..50)
                    .map(|i| format!("r{round}-c{n}-{i}@log.test"))
                    .collect();
                Ledger::client(ledger.clone(), p.smtp, MAIL, mids, deadline)
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
        p.kill9();
        for c in clients {
            tokio::time::timeout(Duration::from_secs(15), c)
                .await
                .expect("clients stop after the kill")
                .unwrap();
        }
    }
    let (attempted, acked, refused) = Ledger::snapshot(&ledger);
    assert!(
        refused.is_empty(),
        "non-250 replies: {:?}",
        &refused[..refused.len().min(5)]
    );
    assert!(
        acked.len() >= ROUNDS,
        "only {} acknowledged in {ROUNDS} rounds",
        acked.len()
    );

    let last = start(spool, &url, &log).await;
    wait_delivered(60, || rx.hits(), &acked, &log).await;
    wait_until(
        20,
        || format!("spool empty (have {})", spooled(spool)),
        || spooled(spool) == 0,
    )
    .await;
    let hits = rx.hits();
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for h in &hits {
        assert!(h.verify(), "signature of {}", h.header("webhook-id"));
        let mid = message_id(h);
        assert!(attempted.contains(&mid), "delivered but never sent: {mid}");
        assert_eq!(h.json()["subject"], format!("log {mid}"));
        assert_eq!(
            h.json()["text"]
                .as_str()
                .unwrap()
                .replace("\r\n", "\n")
                .trim_end(),
            format!("line of {mid}\n").repeat(20).trim_end(),
            "{mid}: the payload is the whole message"
        );
        ids.entry(mid).or_default().insert(h.header("webhook-id"));
    }
    assert!(
        ids.values().all(|s| s.len() == 1),
        "one webhook-id per message"
    );
    // Every earlier start's segment is finished: only the one being written
    // is left (a file per start would otherwise pile up).
    let segments = wait_segments(spool, 1).await;
    assert_eq!(segments, 1, "log segments left");
    println!(
        "log crash loop: {ROUNDS} kills, {} attempted, {} acknowledged, {} delivered distinct, \
         {} webhooks ({} duplicates)",
        attempted.len(),
        acked.len(),
        ids.len(),
        hits.len(),
        hits.len() - ids.len()
    );
    drop(last);
}

async fn wait_segments(spool: &Path, want: usize) -> usize {
    let n = || count(spool, "segments");
    let deadline = Instant::now() + Duration::from_secs(5);
    while n() != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    n()
}

fn segments(spool: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(spool.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    s.sort();
    s
}

/// The first record of a segment: `[len][crc32c][kind][id_len][id][content]`
/// (the layout in `src/spool/log/record.rs`), re-encoded for `new_id` the
/// way the writer would have written that message.
fn record_for(segment: &[u8], old_id: &str, new_id: &str) -> Vec<u8> {
    let len = u32::from_le_bytes(segment[8..12].try_into().unwrap()) as usize;
    let body = &segment[16..16 + len];
    assert_eq!(body[0], 1, "a Message record");
    let id_len = body[1] as usize;
    assert_eq!(&body[2..2 + id_len], old_id.as_bytes());
    let content = String::from_utf8_lossy(&body[2 + id_len..]).replace(old_id, new_id);
    let mut payload = vec![1u8, new_id.len() as u8];
    payload.extend_from_slice(new_id.as_bytes());
    payload.extend_from_slice(content.as_bytes());
    let mut rec = (payload.len() as u32).to_le_bytes().to_vec();
    rec.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    rec.extend_from_slice(&payload);
    rec
}

/// A crash during a write leaves a torn record at the end of a segment:
/// cut at a random offset (and sometimes followed by garbage). On restart
/// the acknowledged messages are all delivered, the torn one is not (not
/// even in part), and its bytes are set aside in `corrupt/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_record_at_the_end_of_a_segment_is_set_aside_and_never_delivered() {
    let mut rng = rand::rngs::StdRng::from_entropy();
    for round in 0..12 {
        let spool_dir = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("postern.log");
        let spool = spool_dir.path();
        let mut endpoint = Endpoint::reserve();
        let first = start(spool, &endpoint.url(), &log).await;
        let mut c = Conn::connect(first.smtp).await.unwrap();
        c.reply().await.unwrap();
        c.cmd("EHLO client.log.test").await.unwrap();
        let mut acked = HashSet::new();
        let mut first_id = None;
        for i in 0..5 {
            let mid = format!("torn{round}-{i}@log.test");
            let r = transaction(&mut c, MAIL, &mid, || {}).await.unwrap();
            first_id.get_or_insert_with(|| queue_id(&r));
            acked.insert(mid);
        }
        first.kill9();

        let seg = segments(spool).pop().unwrap();
        let bytes = std::fs::read(&seg).unwrap();
        let torn_id = postern::spool::new_id();
        let whole = record_for(&bytes, first_id.as_ref().unwrap(), &torn_id);
        let cut = rng.gen_range(1..whole.len());
        let mut tail = whole[..cut].to_vec();
        if round % 3 == 0 {
            tail.extend((0..rng.gen_range(1..200)).map(|_| rng.r#gen::<u8>()));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all_sync(&tail);

        endpoint.open();
        let second = start(spool, &endpoint.url(), &log).await;
        wait_delivered(20, || endpoint.hits(), &acked, &log).await;
        wait_until(
            10,
            || format!("spool empty (have {:?})", pending(spool)),
            || spooled(spool) == 0,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let hits = endpoint.hits();
        assert!(
            hits.iter().all(|h| h.json()["id"] != torn_id.as_str()),
            "round {round}: the torn record (cut at {cut} of {}) was delivered",
            whole.len()
        );
        assert_eq!(hits.len(), acked.len(), "round {round}: each once");
        let aside = listing(spool, "corrupt");
        assert_eq!(aside.len(), 1, "round {round}: {aside:?}");
        assert_eq!(
            std::fs::read(spool.join("corrupt").join(&aside[0])).unwrap(),
            tail,
            "round {round}: exactly the torn bytes are set aside"
        );
        drop(second);
    }
}

trait WriteAllSync {
    fn write_all_sync(self, bytes: &[u8]);
}

impl WriteAllSync for std::fs::File {
    fn write_all_sync(mut self, bytes: &[u8]) {
        use std::io::Write as _;
        self.write_all(bytes).unwrap();
        self.sync_all().unwrap();
    }
}
