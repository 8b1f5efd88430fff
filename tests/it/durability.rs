//! Crash durability of the real binary: `250` means the message survives a
//! SIGKILL, and everything spooled is delivered after a restart.
//!
//! Each test runs `postern` as a child process on loopback ports, kills it
//! with SIGKILL (`Child::kill`) and starts it again on the same spool.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use crate::helpers::*;

/// 20 retries 200 ms apart: a delivery stays pending for about 4 s of
/// failures, and comes back quickly once the endpoint is up.
fn schedule() -> String {
    vec!["200ms"; 20].join(",")
}

/// A port nothing listens on (bound, read, dropped).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Files in `spool/<sub>`.
fn count(spool: &Path, sub: &str) -> usize {
    std::fs::read_dir(spool.join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The `postern` binary running as a child process.
struct Postern {
    child: Child,
    smtp: SocketAddr,
    log: PathBuf,
}

impl Postern {
    /// Starts the binary on fresh loopback ports and waits until it greets
    /// on SMTP (by then the spool has been opened and scanned). A free port
    /// may be taken by someone else before the child binds it: then the
    /// child exits and we try again with other ports.
    async fn start(spool: &Path, url: &str, log: &Path) -> Postern {
        for attempt in 1..=3 {
            match Postern::try_start(spool, url, log).await {
                Ok(p) => return p,
                Err(e) if attempt < 3 => eprintln!("postern start failed, retrying: {e}"),
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    async fn try_start(spool: &Path, url: &str, log: &Path) -> Result<Postern, String> {
        let smtp_port = free_port();
        let http_port = loop {
            let p = free_port();
            if p != smtp_port {
                break p;
            }
        };
        let smtp: SocketAddr = format!("127.0.0.1:{smtp_port}").parse().unwrap();
        // A name of our own, so the greeting proves we reached our child
        // and not whatever else may hold the port.
        let hostname = format!("p{}.durability.test", rand::random::<u32>());
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_postern"));
        // Nothing from the test's own environment (e.g. POSTERN_TEST_PYTHON).
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("POSTERN_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("POSTERN_SMTP_LISTEN", smtp.to_string())
            .env("POSTERN_HTTP_LISTEN", format!("127.0.0.1:{http_port}"))
            .env("POSTERN_HOSTNAME", &hostname)
            .env("POSTERN_SPOOL_DIR", spool)
            .env("POSTERN_WEBHOOK_URL", url)
            .env("POSTERN_WEBHOOK_SECRET", SECRET)
            .env("POSTERN_RETRY_SCHEDULE", schedule())
            .env("POSTERN_RETRY_JITTER", "0")
            .env("POSTERN_WEBHOOK_TIMEOUT", "5s")
            .env("POSTERN_WEBHOOK_CONNECT_TIMEOUT", "2s")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = cmd.spawn().expect("start postern");
        let mut p = Postern {
            child,
            smtp,
            log: log.to_path_buf(),
        };
        p.wait_ready(&format!("220 {hostname} ")).await?;
        Ok(p)
    }

    async fn wait_ready(&mut self, greeting: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!(
                    "postern exited early ({status}):\n{}",
                    log_tail(&self.log)
                ));
            }
            if let Ok(mut c) = Conn::connect(self.smtp).await
                && let Ok(got) = c.reply().await
            {
                let _ = c.cmd("QUIT").await;
                if got.starts_with(greeting) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postern did not greet on {} in time:\n{}",
                    self.smtp,
                    log_tail(&self.log)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then reap.
    fn kill9(mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "postern died before we killed it:\n{}",
            log_tail(&self.log)
        );
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed process reports {status}");
    }
}

impl Drop for Postern {
    fn drop(&mut self) {
        // Only our own child; a no-op once it has been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw SMTP client whose failures are values: the server may vanish at
/// any moment in these tests.
struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

type Io<T> = std::io::Result<T>;

impl Conn {
    async fn connect(addr: SocketAddr) -> Io<Conn> {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timeout"))??;
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
        })
    }

    /// One (multi-line) reply; an error on EOF or after 10 s.
    async fn reply(&mut self) -> Io<String> {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .map_err(|_| std::io::Error::other("reply timeout"))??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            out.push(line);
            if last {
                return Ok(out.join("\n"));
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> Io<String> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// MAIL, RCPT, DATA for one message. `on_data` runs after `354`, just
    /// before the content goes out: from then on the server may commit it.
    /// Returns the reply to the end of data.
    async fn send_mail(&mut self, message_id: &str, on_data: impl FnOnce()) -> Io<String> {
        let r = self.cmd("MAIL FROM:<alice@example.org>").await?;
        assert!(r.starts_with("250"), "MAIL: {r}");
        let r = self.cmd("RCPT TO:<bob@example.com>").await?;
        assert!(r.starts_with("250"), "RCPT: {r}");
        let r = self.cmd("DATA").await?;
        assert!(r.starts_with("354"), "DATA: {r}");
        on_data();
        let body = format!(
            "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: durability {message_id}\r\n\
             Message-ID: <{message_id}>\r\n\r\nbody of {message_id}\r\n.\r\n"
        );
        self.w.write_all(body.as_bytes()).await?;
        self.reply().await
    }
}

/// `queued as <id>` from a 250 reply.
fn queue_id(reply: &str) -> String {
    assert!(reply.starts_with("250 2.0.0 OK: queued as "), "{reply}");
    reply.rsplit(' ').next().unwrap().to_string()
}

/// The Message-ID a webhook carries (without angle brackets).
fn message_id(hit: &Hit) -> String {
    hit.json()["message_id"]
        .as_str()
        .expect("message_id in payload")
        .to_string()
}

/// Waits until `cond` holds, polling; panics with `what` after `secs`.
async fn wait_until(secs: u64, what: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {}", what());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A recording webhook endpoint on a port reserved in advance: bound but not
/// listening (connections are refused) until [`Endpoint::open`].
///
/// The webhook URL is written into each spooled message at accept time, so
/// "the endpoint comes back" has to mean the same URL starts answering.
struct Endpoint {
    socket: Option<tokio::net::TcpSocket>,
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Endpoint {
    fn reserve() -> Endpoint {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        Endpoint {
            socket: Some(socket),
            addr,
            hits: Arc::default(),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn open(&mut self) {
        let listener = self.socket.take().expect("open once").listen(128).unwrap();
        let app = axum::Router::new()
            .fallback(
                |State(hits): State<Arc<Mutex<Vec<Hit>>>>,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    hits.lock().unwrap().push(Hit {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    StatusCode::OK
                },
            )
            .with_state(self.hits.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
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
    let first = Postern::start(spool, &endpoint.url(), &log).await;
    let mut c = Conn::connect(first.smtp).await.unwrap();
    c.reply().await.unwrap();
    assert!(c.cmd("EHLO client.test").await.unwrap().starts_with("250"));
    let mut queued: HashMap<String, String> = HashMap::new();
    for i in 0..N {
        let mid = format!("down-{i}@durability.test");
        let r = c.send_mail(&mid, || {}).await.unwrap();
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
    assert_eq!(count(spool, "msg"), N, "spooled messages after SIGKILL");

    // 2. Endpoint up, restart on the same spool.
    endpoint.open();
    let second = Postern::start(spool, &endpoint.url(), &log).await;
    let want: HashSet<String> = queued.keys().cloned().collect();
    wait_until(
        20,
        || {
            let got: HashSet<String> = endpoint.hits().iter().map(message_id).collect();
            format!(
                "all {N} delivered; missing {:?}\n{}",
                want.difference(&got).collect::<Vec<_>>(),
                log_tail(&log)
            )
        },
        || {
            let got: HashSet<String> = endpoint.hits().iter().map(message_id).collect();
            got.is_superset(&want)
        },
    )
    .await;
    wait_until(
        10,
        || format!("empty msg/ (have {})", count(spool, "msg")),
        || count(spool, "msg") == 0,
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

/// What the SMTP clients know about their messages.
#[derive(Default)]
struct Ledger {
    /// The content was (about to be) sent: the server may have committed it.
    attempted: HashSet<String>,
    /// Got `250`: the server promised to deliver it.
    acked: HashSet<String>,
    /// Replies to the end of data other than 250 (none expected).
    refused: Vec<String>,
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

    let first = Postern::start(spool, &url, &log).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let traffic_deadline = Instant::now() + Duration::from_secs(10);
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let ledger = ledger.clone();
        let addr = first.smtp;
        clients.push(tokio::spawn(async move {
            let run = async {
                let mut c = Conn::connect(addr).await?;
                c.reply().await?;
                c.cmd("EHLO client.test").await?;
                for i in 0..PER_CLIENT {
                    if Instant::now() > traffic_deadline {
                        break;
                    }
                    let mid = format!("kill-{n}-{i}@durability.test");
                    let r = c
                        .send_mail(&mid, || {
                            ledger.lock().unwrap().attempted.insert(mid.clone());
                        })
                        .await?;
                    let mut l = ledger.lock().unwrap();
                    if r.starts_with("250 ") {
                        l.acked.insert(mid);
                    } else {
                        l.refused.push(format!("{mid}: {r}"));
                    }
                }
                let _ = c.cmd("QUIT").await;
                Io::Ok(())
            };
            // An I/O error is the kill; the ledger says how far we got.
            let _ = run.await;
        }));
    }

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
    let (attempted, acked, refused) = {
        let l = ledger.lock().unwrap();
        (l.attempted.clone(), l.acked.clone(), l.refused.clone())
    };
    assert!(refused.is_empty(), "non-250 replies: {refused:?}");
    assert!(
        acked.len() >= 50,
        "only {} messages acknowledged before the kill (threshold {threshold})\n{}",
        acked.len(),
        log_tail(&log)
    );
    let spooled_at_kill = count(spool, "msg");

    // Restart on the same spool; the endpoint URL is unchanged.
    let second = Postern::start(spool, &url, &log).await;
    wait_until(
        20,
        || {
            let got: HashSet<String> = rx.hits().iter().map(message_id).collect();
            format!(
                "every acknowledged message delivered; missing {:?}\n{}",
                acked.difference(&got).collect::<Vec<_>>(),
                log_tail(&log)
            )
        },
        || {
            let got: HashSet<String> = rx.hits().iter().map(message_id).collect();
            got.is_superset(&acked)
        },
    )
    .await;
    // Messages committed but not acknowledged are delivered too: the spool
    // empties.
    wait_until(
        10,
        || format!("empty msg/ (have {})", count(spool, "msg")),
        || count(spool, "msg") == 0,
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
