//! Fault injection: a crash loop of the real binary under traffic, a
//! flapping webhook endpoint, and corrupt spool entries found at start.
//!
//! Everything runs on loopback; each test is bounded (the whole file takes
//! well under a minute).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::binary::{Conn, Io, Launch, log_tail, wait_delivered};
use crate::helpers::*;

/// State files that say `dead`.
fn dead_states(spool: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(spool.join("state")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let path = e.ok()?.path();
        let text = std::fs::read_to_string(&path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["state"] == "dead").then(|| format!("{}: {text}", path.display()))
    })
    .collect()
}

/// Per Message-ID, the hits that carry it.
fn by_message(hits: &[Hit]) -> HashMap<String, Vec<&Hit>> {
    let mut out: HashMap<String, Vec<&Hit>> = HashMap::new();
    for h in hits {
        out.entry(message_id(h)).or_default().push(h);
    }
    out
}

/// Every attempt of one message carries the same `webhook-id`, which is
/// `msg_<payload id>_0`, and every signature verifies.
fn assert_stable_ids_and_signatures(hits: &[Hit]) {
    for (mid, hs) in by_message(hits) {
        let ids: HashSet<String> = hs.iter().map(|h| h.header("webhook-id")).collect();
        assert_eq!(
            ids.len(),
            1,
            "{mid} sent under several webhook-ids: {ids:?}"
        );
        for h in hs {
            assert!(
                h.verify(),
                "signature of {} ({mid})",
                h.header("webhook-id")
            );
            let id = h.json()["id"].as_str().unwrap().to_string();
            assert_eq!(h.header("webhook-id"), format!("msg_{id}_0"), "{mid}");
        }
    }
}

/// Fixture message with Message-ID `mid`.
fn message(mid: &str) -> String {
    format!(
        "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: faults {mid}\r\n\
         Message-ID: <{mid}>\r\n\r\nbody of {mid}\r\n"
    )
}

// ---------------------------------------------------------------------
// 1. Crash loop
// ---------------------------------------------------------------------

/// What the crash-loop client knows about its messages.
#[derive(Default)]
struct Ledger {
    /// Every Message-ID the client used (MAIL was about to be sent).
    started: HashSet<String>,
    /// The content, with its final `.`, was (about to be) written: the
    /// server may have committed it even without a reply.
    attempted: HashSet<String>,
    /// Got `250` after the content: must be delivered.
    acked: HashSet<String>,
    /// Any other reply to MAIL/RCPT/DATA/end of data (none expected).
    refused: Vec<String>,
    connections: usize,
}

/// Connects, checks the greeting is one of ours, says EHLO.
async fn connect_greeted(addr: SocketAddr) -> Io<Conn> {
    let mut c = Conn::connect(addr).await?;
    let greeting = c.reply().await?;
    if !(greeting.starts_with("220 ") && greeting.contains(".faults.test ")) {
        return Err(std::io::Error::other(format!(
            "foreign greeting {greeting}"
        )));
    }
    let ehlo = c.cmd("EHLO client.test").await?;
    if !ehlo.starts_with("250") {
        return Err(std::io::Error::other(format!("EHLO: {ehlo}")));
    }
    Ok(c)
}

/// One transaction, recorded in the ledger step by step. An error means the
/// connection is unusable (the server is gone).
async fn send_recorded(c: &mut Conn, mid: &str, ledger: &Mutex<Ledger>) -> Io<()> {
    for (line, want) in [
        ("MAIL FROM:<alice@example.org>", "250"),
        ("RCPT TO:<bob@example.com>", "250"),
        ("DATA", "354"),
    ] {
        let r = c.cmd(line).await?;
        if !r.starts_with(want) {
            ledger
                .lock()
                .unwrap()
                .refused
                .push(format!("{mid}: {line}: {r}"));
            return Err(std::io::Error::other("refused before the content"));
        }
    }
    ledger.lock().unwrap().attempted.insert(mid.to_string());
    c.w.write_all(format!("{}.\r\n", message(mid)).as_bytes())
        .await?;
    let r = c.reply().await?;
    let mut l = ledger.lock().unwrap();
    if r.starts_with("250 ") {
        l.acked.insert(mid.to_string());
    } else {
        l.refused.push(format!("{mid}: end of data: {r}"));
    }
    Ok(())
}

/// Sends unique messages until `stop`, 400 messages or 20 s, reconnecting
/// to wherever `addr` points whenever the server goes away.
async fn crash_client(
    addr: Arc<Mutex<SocketAddr>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
) {
    const MAX: usize = 400;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let more = |n: usize| n < MAX && Instant::now() < deadline && !stop.is_cancelled();
    'connect: while more(n) {
        let target = *addr.lock().unwrap();
        let mut c = match connect_greeted(target).await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        ledger.lock().unwrap().connections += 1;
        loop {
            if !more(n) {
                let _ = c.cmd("QUIT").await;
                break 'connect;
            }
            let mid = format!("crash-{n}@faults.test");
            n += 1;
            ledger.lock().unwrap().started.insert(mid.clone());
            if send_recorded(&mut c, &mid, &ledger).await.is_err() {
                continue 'connect;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

/// SIGKILL four times at random moments under continuous traffic, each
/// time restarted on the same spool and ports: every `250`ed message is
/// delivered at least once, nothing the server never received the end of
/// is, and every repeat carries the same webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_under_traffic_loses_nothing_acknowledged() {
    const KILLS: usize = 4;
    let spool_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let spool = spool_dir.path();
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let sched = schedule(20, "200ms");
    let env = [
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_RETRY_SCHEDULE", sched.as_str()),
        ("POSTERN_WEBHOOK_TIMEOUT", "5s"),
        ("POSTERN_WEBHOOK_CONNECT_TIMEOUT", "2s"),
    ];
    let launch = Launch {
        domain: "faults.test",
        spool,
        log: &log,
        env: &env,
    };
    let started = Instant::now();

    let mut server = launch.start().await;
    let addr = Arc::new(Mutex::new(server.smtp));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = CancellationToken::new();
    let client = tokio::spawn(crash_client(addr.clone(), ledger.clone(), stop.clone()));

    let delays: Vec<u64> = {
        let mut rng = rand::thread_rng();
        (0..KILLS).map(|_| rng.gen_range(300..=1500)).collect()
    };
    let mut moved = 0;
    for delay in &delays {
        tokio::time::sleep(Duration::from_millis(*delay)).await;
        let ports = (server.smtp, server.http);
        server.kill9();
        let (next, same) = launch.restart(ports).await;
        if !same {
            moved += 1;
        }
        *addr.lock().unwrap() = next.smtp;
        server = next;
    }
    // A little traffic for the last incarnation, then stop the client.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), client)
        .await
        .expect("client stops")
        .unwrap();
    let (started_ids, attempted, acked, refused, connections) = {
        let l = ledger.lock().unwrap();
        (
            l.started.clone(),
            l.attempted.clone(),
            l.acked.clone(),
            l.refused.clone(),
            l.connections,
        )
    };
    assert!(refused.is_empty(), "unexpected replies: {refused:?}");
    assert!(
        acked.len() >= 20,
        "only {} messages acknowledged\n{}",
        acked.len(),
        log_tail(&log)
    );

    wait_delivered(20, || rx.hits(), &acked, &log).await;
    wait_until(
        20,
        || {
            format!(
                "empty msg/ and state/ (have {} and {}); dead: {:?}\n{}",
                spooled(spool),
                count(spool, "state"),
                dead_states(spool),
                log_tail(&log)
            )
        },
        || spooled(spool) == 0 && count(spool, "state") == 0,
    )
    .await;
    // Nothing more arrives once the spool is empty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server);

    let hits = rx.hits();
    for h in &hits {
        assert_eq!(h.path, "/hook");
    }
    assert_stable_ids_and_signatures(&hits);
    let delivered: HashSet<String> = hits.iter().map(message_id).collect();
    let unknown: Vec<&String> = delivered.difference(&started_ids).collect();
    assert!(unknown.is_empty(), "delivered but never sent: {unknown:?}");
    let before_content: Vec<&String> = delivered.difference(&attempted).collect();
    assert!(
        before_content.is_empty(),
        "delivered though the content was never sent: {before_content:?}"
    );
    let lost: Vec<&String> = acked.difference(&delivered).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let maybe: HashSet<&String> = attempted.difference(&acked).collect();
    let maybe_arrived = maybe.iter().filter(|m| delivered.contains(**m)).count();
    let duplicates = hits.len() - delivered.len();
    println!(
        "faults crash loop: {KILLS} kills after {delays:?} ms, restarts on new ports {moved}, \
         {connections} connections; sent {} messages, content sent {}, acknowledged {}, \
         maybe {} (arrived {maybe_arrived}); {} requests for {} messages, duplicates {duplicates}; \
         {:.1}s",
        started_ids.len(),
        attempted.len(),
        acked.len(),
        maybe.len(),
        hits.len(),
        delivered.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------
// 2. Endpoint outage and flapping
// ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    /// Answers 500.
    Error,
    /// Reads the request and answers nothing for 1 s.
    Hang,
    /// The listener is closed: connections are refused.
    Refuse,
    /// Starts a 200 answer, then stalls 1 s before finishing its headers.
    Slow,
    /// 200 at once.
    Healthy,
}

type Hits = Arc<Mutex<Vec<(Mode, Hit)>>>;

/// A raw HTTP/1.1 endpoint on a fixed loopback port whose behaviour is
/// switched by the test. Every answer closes the connection, so no pooled
/// connection outlives a switch.
struct Flaky {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Hits,
    accept: Option<JoinHandle<()>>,
}

fn listen(addr: SocketAddr) -> Io<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(128)
}

impl Flaky {
    async fn start(mode: Mode) -> Flaky {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut f = Flaky {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            hits: Arc::default(),
            accept: None,
        };
        f.accept = Some(f.serve(listener));
        f
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let (mode, hits) = (self.mode.clone(), self.hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, mode.clone(), hits.clone()));
            }
        })
    }

    async fn set(&mut self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
        if mode == Mode::Refuse {
            if let Some(h) = self.accept.take() {
                h.abort();
                let _ = h.await; // the listener is closed once this returns
            }
        } else if self.accept.is_none() {
            let deadline = Instant::now() + Duration::from_secs(5);
            let listener = loop {
                match listen(self.addr) {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("rebinding {}: {e}", self.addr);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
                }
            };
            self.accept = Some(self.serve(listener));
        }
    }

    fn hits(&self) -> Vec<(Mode, Hit)> {
        self.hits.lock().unwrap().clone()
    }
}

/// Reads one request, records it with the mode at that moment, answers
/// per the mode, closes.
async fn answer(stream: TcpStream, mode: Arc<Mutex<Mode>>, hits: Hits) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let read = async {
        let mut request_line = String::new();
        r.read_line(&mut request_line).await?;
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut headers = HeaderMap::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.trim().as_bytes()),
                    HeaderValue::from_str(v.trim()),
                )
            {
                headers.append(k, v);
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        Io::Ok(Hit {
            path,
            headers,
            body: Bytes::from(body),
        })
    };
    let Ok(Ok(hit)) = tokio::time::timeout(Duration::from_secs(5), read).await else {
        return;
    };
    let mode = *mode.lock().unwrap();
    hits.lock().unwrap().push((mode, hit));
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = match mode {
        Mode::Error => {
            w.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.write_all(ok.as_bytes()).await
        }
        Mode::Slow => {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\n").await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.write_all(&ok.as_bytes()[17..]).await
        }
        // A request accepted just before the listener closed.
        Mode::Refuse => {
            w.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
        }
        Mode::Healthy => w.write_all(ok.as_bytes()).await,
    };
    let _ = w.shutdown().await;
}

/// The kinds of failure recorded in `state/` (`last_error`).
fn error_kinds(spool: &Path) -> HashSet<&'static str> {
    let mut out = HashSet::new();
    let Ok(dir) = std::fs::read_dir(spool.join("state")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let err = v["last_error"].as_str().unwrap_or_default();
        if err.contains("answered 500") {
            out.insert("500");
        } else if err.starts_with("timeout") {
            out.insert("timeout");
        } else if err.starts_with("connection failed") {
            out.insert("refused");
        }
    }
    out
}

/// The endpoint answers 500, hangs past the timeout, refuses connections
/// and answers too slowly while 30 messages arrive; once it recovers, all
/// 30 are delivered within 15 s, none dead, each under one webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_endpoint_delivers_everything_after_recovery() {
    const N: usize = 30;
    let mut endpoint = Flaky::start(Mode::Error).await;
    let url = endpoint.url();
    let sched = schedule(15, "200ms");
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_RETRY_SCHEDULE", sched.as_str()),
        ("POSTERN_RETRY_JITTER", "0"),
        ("POSTERN_WEBHOOK_TIMEOUT", "300ms"),
        ("POSTERN_WEBHOOK_CONNECT_TIMEOUT", "300ms"),
        // The circuit breaker opens in the hang and refuse phases; a short
        // cool-down keeps probing, so every kind of failure is still seen
        // and recovery is noticed at once.
        ("POSTERN_ENDPOINT_BREAKER_COOLDOWN", "100ms"),
    ])
    .await;
    let spool = app.spool.clone();

    // Watch state/ during the bad phase: which failures were recorded, and
    // that nothing ever goes dead.
    let bad_over = CancellationToken::new();
    let sampler = {
        let (spool, done) = (spool.clone(), bad_over.clone());
        tokio::spawn(async move {
            let mut kinds = HashSet::new();
            let mut dead = Vec::new();
            while !done.is_cancelled() {
                kinds.extend(error_kinds(&spool));
                dead.extend(dead_states(&spool));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (kinds, dead)
        })
    };

    let (mut c, _) = Smtp::connect(app.smtp).await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    let phases = [Mode::Error, Mode::Hang, Mode::Refuse, Mode::Slow];
    let mut sent = 0;
    for (i, mode) in phases.iter().enumerate() {
        let phase_start = Instant::now();
        endpoint.set(*mode).await;
        let upto = N * (i + 1) / phases.len();
        while sent < upto {
            let mid = format!("flap-{sent}@faults.test");
            let r = c
                .send_mail("alice@example.org", &["bob@example.com"], &message(&mid))
                .await;
            assert!(r.starts_with("250 "), "{mid}: {r}");
            sent += 1;
        }
        tokio::time::sleep_until(phase_start + Duration::from_millis(400)).await;
    }
    c.cmd("QUIT").await;
    let bad_hits = endpoint.hits();
    endpoint.set(Mode::Healthy).await;
    let recovered = Instant::now();
    bad_over.cancel();
    let (kinds, dead) = sampler.await.unwrap();
    assert!(dead.is_empty(), "dead during the outage: {dead:?}");

    let want: HashSet<String> = (0..N).map(|i| format!("flap-{i}@faults.test")).collect();
    let healthy = |hits: &[(Mode, Hit)]| -> HashSet<String> {
        hits.iter()
            .filter(|(m, _)| *m == Mode::Healthy)
            .map(|(_, h)| message_id(h))
            .collect()
    };
    wait_until(
        15,
        || {
            format!(
                "all {N} delivered after recovery; missing {:?}; dead {:?}",
                want.difference(&healthy(&endpoint.hits()))
                    .collect::<Vec<_>>(),
                dead_states(&spool)
            )
        },
        || healthy(&endpoint.hits()).is_superset(&want),
    )
    .await;
    let took = recovered.elapsed();
    wait_until(
        10,
        || {
            format!(
                "empty msg/ and state/ (have {} and {}); dead {:?}",
                spooled(&spool),
                count(&spool, "state"),
                dead_states(&spool)
            )
        },
        || spooled(&spool) == 0 && count(&spool, "state") == 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.stop().await;

    // The outage really had every kind of failure.
    let per_mode = |m: Mode| bad_hits.iter().filter(|(x, _)| *x == m).count();
    for m in [Mode::Error, Mode::Hang, Mode::Slow] {
        assert!(per_mode(m) > 0, "no request during {m:?}");
    }
    for k in ["500", "timeout", "refused"] {
        assert!(kinds.contains(k), "no {k} failure recorded; saw {kinds:?}");
    }
    let all: Vec<Hit> = endpoint.hits().into_iter().map(|(_, h)| h).collect();
    for h in &all {
        assert_eq!(h.path, "/hook");
        assert!(want.contains(&message_id(h)), "unknown {}", message_id(h));
    }
    assert_stable_ids_and_signatures(&all);
    println!(
        "faults flapping: {} requests during the outage (500 {}, hang {}, slow {}), \
         {} in total; all {N} delivered {:.2}s after recovery",
        bad_hits.len(),
        per_mode(Mode::Error),
        per_mode(Mode::Hang),
        per_mode(Mode::Slow),
        all.len(),
        took.as_secs_f64()
    );
}

// ---------------------------------------------------------------------
// 3. Corrupt and truncated entries at start
// ---------------------------------------------------------------------

/// Ids of the pending messages (files and log).
fn spooled_ids(spool: &Path) -> Vec<String> {
    pending(spool)
}

/// A spool with three pending messages, a truncated entry (half an envelope
/// line) and garbage state files, started again: the truncated entry is
/// moved to corrupt/ and counted (log and metric), the garbage states do
/// not stop anything, and the three messages are delivered once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_entry_and_garbage_state_at_start() {
    let spool_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let spool = spool_dir.path();
    let mut endpoint = Endpoint::reserve();
    let url = endpoint.url();
    let sched = schedule(20, "200ms");
    let env = [
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_RETRY_SCHEDULE", sched.as_str()),
        ("POSTERN_WEBHOOK_TIMEOUT", "2s"),
        ("POSTERN_WEBHOOK_CONNECT_TIMEOUT", "500ms"),
    ];
    let launch = Launch {
        domain: "faults.test",
        spool,
        log: &log,
        env: &env,
    };

    // 1. Endpoint down: three messages accepted, tried, pending; SIGTERM.
    let first = launch.start().await;
    let mut c = connect_greeted(first.smtp).await.unwrap();
    let mids: Vec<String> = (0..3).map(|i| format!("valid-{i}@faults.test")).collect();
    for mid in &mids {
        let ledger = Mutex::new(Ledger::default());
        send_recorded(&mut c, mid, &ledger).await.unwrap();
        let l = ledger.lock().unwrap();
        assert!(l.acked.contains(mid), "{mid}: {:?}", l.refused);
    }
    let _ = c.cmd("QUIT").await;
    wait_until(
        10,
        || format!("3 state files, have {}", count(spool, "state")),
        || count(spool, "state") == 3,
    )
    .await;
    first.terminate().await;
    assert!(endpoint.hits().is_empty());
    let valid = spooled_ids(spool);
    assert_eq!(valid.len(), 3, "pending after SIGTERM");

    // 2. Damage, as a crash or a bad disk would leave it.
    // A `msg/` file (the layout of larger messages and of spools written
    // before the log) cut in the middle of its envelope line.
    let torn_id = postern::spool::new_id();
    let line = format!(
        r#"{{"id":"{torn_id}","received_at":"2026-12-02T10:00:00Z","mail_from":"a@faults.test","rcpt_to":["b@faults.test"],"deliveries":[]}}"#
    );
    let torn = line.as_bytes()[..line.len() / 2].to_vec();
    std::fs::write(spool.join("msg").join(format!("{torn_id}.msg")), &torn).unwrap();
    // The state of a valid message, overwritten with garbage.
    std::fs::write(
        spool.join("state").join(format!("{}.0.json", valid[1])),
        b"\x00\x17{\"state\": \"pend",
    )
    .unwrap();
    // A garbage state file of the torn entry.
    std::fs::write(
        spool.join("state").join(format!("{torn_id}.0.json")),
        b"not json at all",
    )
    .unwrap();

    // 3. Endpoint up; start again on the same spool.
    endpoint.open();
    let second = launch.start().await;
    wait_until(
        15,
        || {
            format!(
                "3 delivered (have {:?})\n{}",
                endpoint.hits().iter().map(message_id).collect::<Vec<_>>(),
                log_tail(&log)
            )
        },
        || {
            let got: HashSet<String> = endpoint.hits().iter().map(message_id).collect();
            mids.iter().all(|m| got.contains(m))
        },
    )
    .await;
    // Everything delivered leaves nothing behind, the garbage state file
    // of one of them included.
    wait_until(
        10,
        || {
            format!(
                "empty msg/ and state/ (have {:?} and {:?})",
                pending(spool),
                listing(spool, "state")
            )
        },
        || {
            let state = listing(spool, "state");
            spooled(spool) == 0 && state.is_empty()
        },
    )
    .await;
    // An unreadable state file is removed when it is read, so it cannot
    // outlive its delivered message.
    assert_eq!(count(spool, "state"), 0);
    let metrics = reqwest::get(format!("http://{}/metrics", second.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(second);

    // The torn entry is kept, byte for byte, in corrupt/.
    assert_eq!(
        std::fs::read(spool.join("corrupt").join(format!("{torn_id}.msg"))).unwrap(),
        torn
    );
    assert_eq!(count(spool, "corrupt"), 1);
    assert!(
        metrics
            .lines()
            .any(|l| l == "postern_spool_corrupt_entries_total 1"),
        "metric:\n{metrics}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let moved = text
        .lines()
        .find(|l| l.contains("corrupt spool entry moved to corrupt/"))
        .unwrap_or_else(|| panic!("no corrupt-entry log line:\n{}", log_tail(&log)));
    assert!(moved.contains(&torn_id), "{moved}");
    assert!(
        text.lines()
            .any(|l| l.contains("unreadable delivery state") && l.contains(&valid[1])),
        "no log line for the garbage state:\n{}",
        log_tail(&log)
    );

    let hits = endpoint.hits();
    assert_eq!(hits.len(), 3, "each valid message exactly once");
    assert_stable_ids_and_signatures(&hits);
    let ids: HashSet<String> = hits
        .iter()
        .map(|h| h.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, valid.iter().cloned().collect::<HashSet<_>>());

    // A further start finds nothing to do and sends nothing again.
    let third = launch.start().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(third);
    assert_eq!(endpoint.hits().len(), 3);
}
