//! Operations: `postern doctor`, `/readyz` with `postern healthcheck`,
//! `/metrics`, and a graceful shutdown (SIGTERM) of the real binary under
//! traffic followed by a restart on the same spool.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::binary::{Conn, Io, Launch, Postern, log_tail};
use crate::helpers::*;

/// Runs a short-lived subcommand (bounded); returns (exit code, stdout + stderr).
async fn run_cmd(args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::from(crate::binary::command());
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("command finishes in time")
        .expect("command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// PEM certificate and key for `cn`, written under `dir`.
fn write_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

// ----------------------------------------------------------------- doctor

/// Everything reachable: config, spool, TLS, relay (a second Postern's SMTP
/// listener) and the endpoints pass; each distinct endpoint got one signed
/// `postern.test` event; a route whose URL depends on the recipient is
/// skipped; no secret appears in the transcript.
#[tokio::test]
async fn doctor_passes_against_a_live_setup() {
    let rx = Receiver::start().await;
    let relay = spawn_app(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path(), "doctor.test");
    let spool = dir.path().join("spool");
    let hook = rx.url("/hook");
    let routes = serde_json::json!([
        {"match": "a@x.test", "url": hook},
        {"match": "*@x.test", "url": hook},
        {"match": "/^(?P<user>[^@]+)@y\\.test$/", "url": rx.url("/u/{user}")},
        {"match": "*", "url": rx.url("/other")},
    ])
    .to_string();
    let env = [
        ("POSTERN_ROUTES", routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET.to_string()),
        ("POSTERN_SPOOL_DIR", spool.display().to_string()),
        ("POSTERN_HOSTNAME", "doctor.test".to_string()),
        ("POSTERN_TLS_CERT", cert.display().to_string()),
        ("POSTERN_TLS_KEY", key.display().to_string()),
        (
            "POSTERN_RELAY_URL",
            format!("smtp://127.0.0.1:{}?tls=none", relay.smtp.port()),
        ),
        ("POSTERN_EVENTS_URL", rx.url("/events?token=tok3n")),
        ("POSTERN_API_KEYS", "api-key-0123456789abcdef".to_string()),
    ];
    let (code, out) = run_cmd(&["doctor"], &env).await;
    assert_eq!(code, 0, "doctor failed:\n{out}");
    for want in [
        "[PASS] config: valid",
        "routes         4",
        "tls            on",
        "auth           off",
        &format!("relay          127.0.0.1:{} (no TLS)", relay.smtp.port()),
        "[PASS] spool:",
        "[PASS] tls: loads; expires 2099-01-01",
        "subject CN=doctor.test",
        "[PASS] relay:",
        &format!("[PASS] webhook {hook}: HTTP 200 OK"),
        &format!("[PASS] webhook {}: HTTP 200 OK", rx.url("/other")),
        "[PASS] events ",
        "token=***",
        "[SKIP] webhook: route /^(?P<user>[^@]+)@y\\.test$/",
        "verdict: OK",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    for secret in [&SECRET[6..], "tok3n", "api-key-0123456789abcdef"] {
        assert!(!out.contains(secret), "secret {secret:?} printed:\n{out}");
    }
    // Dedupe: one POST per distinct URL; nothing left in the spool dir,
    // which the doctor does not create.
    let hits = rx.hits();
    let mut paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/events?token=tok3n", "/hook", "/other"], "{out}");
    for h in &hits {
        assert!(h.verify(), "signature on {}", h.path);
        let body = h.json();
        assert_eq!(body["type"], "postern.test");
        assert!(body["id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(body["created_at"].as_str().is_some());
        assert!(h.header("webhook-id").starts_with("msg_"));
        assert_eq!(h.header("content-type"), "application/json");
    }
    assert!(!spool.exists(), "doctor created the spool dir");
    relay.stop().await;
}

/// With `POSTERN_DATABASE_URL`: reachable, its latency and schema (behind
/// on a fresh database: `serve` migrates); a closed port fails, without
/// the password.
#[tokio::test]
async fn doctor_checks_the_database() {
    let Some(url) = crate::database::test_database_url() else {
        return;
    };
    let db = crate::database::fresh_database_url(&url).await;
    let spool = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let env = |db: String| {
        [
            ("POSTERN_WEBHOOK_URL", rx.url("/hook")),
            ("POSTERN_WEBHOOK_SECRET", SECRET.to_string()),
            ("POSTERN_SPOOL_DIR", spool.path().display().to_string()),
            ("POSTERN_DATABASE_URL", db),
        ]
    };
    let (code, out) = run_cmd(&["doctor"], &env(db)).await;
    assert_eq!(code, 0, "{out}");
    let latest = postern::spool::pg::migrate::MIGRATIONS
        .last()
        .expect("migrations")
        .version;
    let schema = format!("schema at version none, this binary knows {latest}: applied at start");
    for want in ["[PASS] database: reachable in ", schema.as_str()] {
        assert!(
            out.contains(want),
            "missing {want:?} in
{out}"
        );
    }
    let closed = format!("postgres://u:hunter2@127.0.0.1:{}/d", free_port());
    let (code, out) = run_cmd(&["doctor"], &env(closed)).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] database: database unreachable"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
}

/// An endpoint nothing listens on: exit 1, and the failing check is named
/// both where it fails and in the verdict; the other checks still pass.
#[tokio::test]
async fn doctor_fails_and_names_an_unreachable_webhook() {
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook?token=tok3n");
    let shown = format!("http://127.0.0.1:{port}/hook?token=***");
    let env = [
        ("POSTERN_WEBHOOK_URL", url.clone()),
        ("POSTERN_WEBHOOK_SECRET", SECRET.to_string()),
        ("POSTERN_SPOOL_DIR", spool.path().display().to_string()),
    ];
    let (code, out) = run_cmd(&["doctor"], &env).await;
    assert_eq!(code, 1, "{out}");
    for want in [
        "[PASS] config: valid",
        "[PASS] spool: writable",
        "[SKIP] tls",
        "[SKIP] relay",
        &format!("[FAIL] webhook {shown}: connection failed"),
        &format!("verdict: FAILED (1 failed: webhook {shown};"),
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("tok3n"), "URL token printed:\n{out}");
    // The probe file is gone.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);

    // A broken configuration fails the first check and names the variable.
    let (code, out) = run_cmd(&["doctor"], &[("POSTERN_WEBHOOK_URL", url.clone())]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] config: POSTERN_WEBHOOK_SECRET"),
        "{out}"
    );
}

// ------------------------------------------------------ readyz/healthcheck

/// Puts `spool/tmp` back as a directory even if the test fails.
struct RestoreTmp(PathBuf);

impl Drop for RestoreTmp {
    fn drop(&mut self) {
        if self.0.is_file() {
            let _ = std::fs::remove_file(&self.0);
        }
        let _ = std::fs::create_dir_all(&self.0);
    }
}

async fn readyz(http: SocketAddr) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{http}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn healthcheck(http: String) -> (i32, String) {
    run_cmd(&["healthcheck"], &[("POSTERN_HTTP_LISTEN", http)]).await
}

#[tokio::test]
async fn readyz_follows_the_spool_and_healthcheck_follows_readyz() {
    let (app, _rx) = app_with_receiver(&[]).await;
    let (status, body) = readyz(app.http).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    let (code, out) = healthcheck(app.http.to_string()).await;
    assert_eq!(code, 0, "{out}");

    // spool/tmp replaced by a file: the spool cannot take a message.
    let tmp = app.spool.join("tmp");
    let restore = RestoreTmp(tmp.clone());
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let (status, body) = readyz(app.http).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("spool"), "{body}");
    let (code, out) = healthcheck(app.http.to_string()).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not ready") && out.contains("503"), "{out}");

    drop(restore);
    let (status, body) = readyz(app.http).await;
    assert_eq!(status, 200, "after restoring: {body}");
    let (code, out) = healthcheck(app.http.to_string()).await;
    assert_eq!(code, 0, "{out}");

    // Nothing listening.
    let (code, out) = healthcheck(format!("127.0.0.1:{}", free_port())).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not ready"), "{out}");
    app.stop().await;
}

// ----------------------------------------------------------------- metrics

#[tokio::test]
async fn metrics_count_sessions_messages_replies_and_deliveries() {
    let rx = Receiver::start().await;
    let routes =
        serde_json::json!([{"match": "*@example.com", "url": rx.url("/hook")}]).to_string();
    let app = spawn_app(&[
        ("POSTERN_ROUTES", routes.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    for i in 0..2 {
        let r = c
            .send_mail(
                "alice@example.org",
                &["bob@example.com"],
                &format!("Subject: m{i}\r\n\r\nhello\r\n"),
            )
            .await;
        assert!(r.starts_with("250 "), "{r}");
    }
    assert!(
        c.cmd("MAIL FROM:<alice@example.org>")
            .await
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<nobody@elsewhere.test>").await;
    assert!(r.starts_with("550"), "{r}");
    assert!(c.cmd("RSET").await.starts_with("250"));
    let r = c.cmd("FROBNICATE").await;
    assert!(r.starts_with('5'), "{r}");
    assert!(c.cmd("QUIT").await.starts_with("221"));
    rx.wait_for(2, 10).await;

    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", app.http);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ctype, text) = loop {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        let delivered = sample(
            &text,
            "postern_delivery_attempts_total{kind=\"webhook\",outcome=\"delivered\"}",
        );
        if delivered == Some(2.0) || Instant::now() > deadline {
            break (ctype, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        ctype.starts_with("application/openmetrics-text"),
        "content type {ctype}"
    );
    // spawn_app's readiness probe is a session too.
    assert!(
        sample(&text, "postern_smtp_sessions_total").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "postern_messages_accepted_total"),
        Some(2.0),
        "{text}"
    );
    assert!(
        sample(&text, "postern_smtp_replies_total{class=\"5xx\"}").is_some_and(|v| v >= 2.0),
        "{text}"
    );
    assert!(
        sample(&text, "postern_smtp_replies_total{class=\"2xx\"}").is_some_and(|v| v >= 5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "postern_delivery_attempts_total{kind=\"webhook\",outcome=\"delivered\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "postern_delivery_latency_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "postern_spool_pending_deliveries"),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("postern_spool_oldest_pending_age_seconds"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    app.stop().await;
}

// -------------------------------------------------------- graceful shutdown

const GRACE_SECS: u64 = 5;

/// The binary with a grace period of [`GRACE_SECS`], delivering to `url`
/// with 20 retries 200 ms apart.
async fn start(spool: &Path, url: &str, log: &Path) -> Postern {
    let grace = format!("{GRACE_SECS}s");
    let schedule = schedule(20, "200ms");
    Launch {
        domain: "ops.test",
        spool,
        log,
        env: &[
            ("POSTERN_WEBHOOK_URL", url),
            ("POSTERN_SHUTDOWN_GRACE", &grace),
            ("POSTERN_RETRY_SCHEDULE", &schedule),
        ],
    }
    .start()
    .await
}

fn message(mid: &str) -> String {
    format!(
        "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: shutdown {mid}\r\n\
         Message-ID: <{mid}>\r\n\r\nbody of {mid}\r\n.\r\n"
    )
}

/// What the clients saw.
#[derive(Default)]
struct Ledger {
    /// Message content was sent (the server may commit it).
    attempted: HashSet<String>,
    /// Got 250: Message-ID → queue id.
    acked: HashMap<String, String>,
    /// Replies that were neither what a step expects nor `421 4.3.2`.
    unexpected: Vec<String>,
    /// Sessions that got `421 4.3.2`.
    shutting_down: usize,
}

/// The Message-IDs of the webhooks `endpoint` got, each signature verified.
fn message_ids(endpoint: &Endpoint) -> Vec<String> {
    endpoint
        .hits()
        .iter()
        .map(|h| {
            assert!(h.verify(), "signature of {}", h.header("webhook-id"));
            message_id(h)
        })
        .collect()
}

/// One traffic client: messages back to back on one session until the
/// server stops answering 250 (or `max` / the deadline).
async fn traffic(
    addr: SocketAddr,
    n: usize,
    max: usize,
    until: Instant,
    ledger: Arc<Mutex<Ledger>>,
) {
    let run = async {
        let mut c = Conn::open(addr).await?;
        for i in 0..max {
            if Instant::now() > until {
                break;
            }
            let mid = format!("t{n}-{i}@ops.test");
            for (cmd, want) in [
                ("MAIL FROM:<alice@example.org>", "250"),
                ("RCPT TO:<bob@example.com>", "250"),
                ("DATA", "354"),
            ] {
                let r = c.cmd(cmd).await?;
                if !r.starts_with(want) {
                    let mut l = ledger.lock().unwrap();
                    if r.starts_with("421 4.3.2") {
                        l.shutting_down += 1;
                    } else {
                        l.unexpected.push(format!("{cmd}: {r}"));
                    }
                    return Io::Ok(());
                }
            }
            ledger.lock().unwrap().attempted.insert(mid.clone());
            c.w.write_all(message(&mid).as_bytes()).await?;
            let r = c.reply().await?;
            let mut l = ledger.lock().unwrap();
            if r.starts_with("250 ") {
                l.acked.insert(mid, queue_id(&r));
            } else {
                l.unexpected.push(format!("end of data for {mid}: {r}"));
                return Ok(());
            }
        }
        let _ = c.cmd("QUIT").await;
        Ok(())
    };
    // An I/O error (the server closed after its 421, or refused the
    // connection) ends the client; the ledger says how far it got.
    let _ = run.await;
}

/// SIGTERM under traffic: the process drains and exits 0 within the grace
/// period; idle and mid-transaction sessions get `421 4.3.2`; a DATA
/// transfer in progress is completed and acknowledged; `/readyz` says
/// "shutting down" during the drain. Every 250'd message is delivered
/// before the exit or is still spooled, and after a restart on the same
/// spool each is delivered exactly once across both runs; nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_and_restart_delivers_every_acknowledged_message_once() {
    const CLIENTS: usize = 3;
    const PER_CLIENT: usize = 150;
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = spool_dir.path();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    // Answers 200 after 100 ms, on a fixed URL that outlives both runs of
    // the binary.
    let endpoint = Endpoint::slow(Duration::from_millis(100));
    let mut first = start(spool, &endpoint.url(), &log).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // An idle session and one in the middle of a transaction.
    let mut idle = Conn::open(first.smtp).await.unwrap();
    let mut mid_tx = Conn::open(first.smtp).await.unwrap();
    assert!(
        mid_tx
            .cmd("MAIL FROM:<a@example.org>")
            .await
            .unwrap()
            .starts_with("250")
    );
    assert!(
        mid_tx
            .cmd("RCPT TO:<b@example.com>")
            .await
            .unwrap()
            .starts_with("250")
    );
    // A DATA transfer that is half sent when the signal comes.
    let mut slow = Conn::open(first.smtp).await.unwrap();
    let slow_mid = "slow@ops.test".to_string();
    assert!(
        slow.cmd("MAIL FROM:<alice@example.org>")
            .await
            .unwrap()
            .starts_with("250")
    );
    assert!(
        slow.cmd("RCPT TO:<bob@example.com>")
            .await
            .unwrap()
            .starts_with("250")
    );
    assert!(slow.cmd("DATA").await.unwrap().starts_with("354"));
    let body = message(&slow_mid);
    let (head, tail) = body.split_at(body.len() / 2);
    slow.w.write_all(head.as_bytes()).await.unwrap();
    ledger.lock().unwrap().attempted.insert(slow_mid.clone());

    let until = Instant::now() + Duration::from_secs(15);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(traffic(first.smtp, n, PER_CLIENT, until, ledger.clone())))
        .collect();
    let wait = Instant::now() + Duration::from_secs(10);
    while ledger.lock().unwrap().acked.len() < 40 && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered_before_signal = message_ids(&endpoint).len();
    let signalled = Instant::now();
    first.sigterm();

    // The half-sent DATA holds the drain open: readyz must say so.
    let client = reqwest::Client::new();
    let mut draining = None;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(r) = client
            .get(format!("http://{}/readyz", first.http))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            && r.status() == 503
        {
            draining = Some(r.text().await.unwrap_or_default());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let draining = draining.expect("readyz answered 503 during the drain");
    assert!(draining.contains("shutting down"), "{draining}");
    // A new connection is no longer served.
    let late = match Conn::connect(first.smtp).await {
        Ok(mut c) => c.reply_within(1).await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    assert!(
        late.is_empty() || late.starts_with("421"),
        "new session during the drain: {late}"
    );

    // Idle and mid-transaction sessions are told to come back.
    let r = idle.reply_within(5).await.unwrap();
    assert!(r.starts_with("421 4.3.2"), "idle session: {r}");
    let r = mid_tx.reply_within(5).await.unwrap();
    assert!(r.starts_with("421 4.3.2"), "mid-transaction session: {r}");
    // The DATA in progress completes and is acknowledged, then 421.
    slow.w.write_all(tail.as_bytes()).await.unwrap();
    let r = slow.reply().await.unwrap();
    ledger
        .lock()
        .unwrap()
        .acked
        .insert(slow_mid.clone(), queue_id(&r));
    let r = slow.reply_within(5).await.unwrap();
    assert!(r.starts_with("421 4.3.2"), "after the last DATA: {r}");

    let status = first.wait_exit(GRACE_SECS + 5).await;
    let exit_after = signalled.elapsed();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{}",
        log_tail(&log)
    );
    for c in clients {
        tokio::time::timeout(Duration::from_secs(15), c)
            .await
            .expect("clients stop after the shutdown")
            .unwrap();
    }
    let (attempted, acked, unexpected, shutting_down) = {
        let l = ledger.lock().unwrap();
        (
            l.attempted.clone(),
            l.acked.clone(),
            l.unexpected.clone(),
            l.shutting_down,
        )
    };
    assert!(unexpected.is_empty(), "unexpected replies: {unexpected:?}");
    assert!(acked.len() >= 41, "only {} acknowledged", acked.len());
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains("grace period over"),
        "the drain ran out of time:\n{}",
        log_tail(&log)
    );

    // Every 250'd message was delivered before the exit or is on disk.
    let run1: Vec<String> = message_ids(&endpoint);
    let run1_set: HashSet<&String> = run1.iter().collect();
    let mut spooled = 0;
    let on_disk_ids = pending(spool);
    for (mid, qid) in &acked {
        let on_disk = on_disk_ids.contains(qid);
        spooled += usize::from(on_disk);
        assert!(
            run1_set.contains(mid) || on_disk,
            "{mid} ({qid}) acknowledged, neither delivered nor spooled"
        );
        assert!(
            !(run1_set.contains(mid) && on_disk),
            "{mid} ({qid}) delivered but still spooled: it would be sent twice"
        );
    }
    assert_eq!(
        on_disk_ids.len(),
        spooled,
        "spooled messages that nobody got a 250 for"
    );
    assert!(
        spooled >= 1,
        "the message whose DATA completed during the drain is spooled"
    );

    // Restart on the same spool; the endpoint never went away.
    let mut second = start(spool, &endpoint.url(), &log).await;
    let want: HashSet<&String> = acked.keys().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = message_ids(&endpoint);
        let got: HashSet<&String> = got.iter().collect();
        let msgs = pending(spool).len();
        if got.is_superset(&want) && msgs == 0 {
            break;
        }
        if Instant::now() > deadline {
            panic!(
                "after restart: missing {:?}, {msgs} still spooled\n{}",
                want.iter()
                    .filter(|m| !got.contains(**m))
                    .collect::<Vec<_>>(),
                log_tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    second.sigterm();
    assert!(second.wait_exit(GRACE_SECS + 5).await.success());

    let all = message_ids(&endpoint);
    let mut per_message: HashMap<&String, usize> = HashMap::new();
    for m in &all {
        *per_message.entry(m).or_default() += 1;
    }
    let duplicates: Vec<(&&String, &usize)> = per_message.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "delivered more than once: {duplicates:?}"
    );
    let delivered: HashSet<&String> = per_message.keys().copied().collect();
    assert_eq!(
        delivered, want,
        "delivered set differs from the acknowledged set"
    );
    assert!(attempted.is_superset(&acked.keys().cloned().collect()));
    println!(
        "graceful shutdown: {} acknowledged ({delivered_before_signal} delivered before SIGTERM, \
         {} before exit, {spooled} spooled at exit), {} attempted, {shutting_down} traffic \
         sessions got 421, exit {:?} after SIGTERM, {} requests in all, 0 duplicates",
        acked.len(),
        run1.len(),
        attempted.len(),
        exit_after,
        all.len()
    );
}

/// A relay whose certificate is itself a CA (what `openssl req -x509`
/// makes by default): rustls refuses it as a server certificate even when
/// it is named in `?ca=`, and `postern doctor` says why and what to do.
#[tokio::test]
async fn doctor_explains_a_ca_certificate_used_by_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "relay self-signed CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let relay = crate::aiosmtpd::Smtpd::start(
        0,
        &[
            "--tls",
            "starttls",
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
        ],
    );
    let spool = tempfile::tempdir().unwrap();
    let env = [
        (
            "POSTERN_RELAY_URL",
            format!("smtp://127.0.0.1:{}?ca={}", relay.port, c.display()),
        ),
        ("POSTERN_SPOOL_DIR", spool.path().display().to_string()),
    ];
    let (code, out) = run_cmd(&["doctor"], &env).await;
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("[FAIL] relay"))
        .unwrap_or_else(|| panic!("no failing relay check in\n{out}"));
    assert!(line.contains("CaUsedAsEndEntity"), "{line}");
    assert!(
        line.contains("the relay presents a CA certificate (basicConstraints CA:TRUE) as its own"),
        "{line}"
    );
}
