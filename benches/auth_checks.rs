//! Auth-check latency: what `POSTERN_AUTH_CHECKS=spf,dkim,dmarc,arc` adds
//! to a message, against the loopback DNS server of the tests
//! (`tests/dns_server/server.py`, dnslib).
//!
//! `cargo bench --bench auth_checks -- [--messages N] [--max-seconds T]`
//! starts Postern in-process twice (checks off, then on) with a fresh
//! spool each, and sends N DKIM-signed messages (RSA-2048, From a domain
//! with SPF and `p=reject` DMARC records) one after the other over one SMTP
//! connection, timing the end of DATA (`.`) to its `250`: the part of a
//! transaction the checks run in. It prints the median and p99 of both
//! runs and their difference. Bounded: at most N messages and T seconds
//! per run. Python with dnslib: `POSTERN_TEST_PYTHON`, else
//! `$POSTERN_TEST_VENV/bin/python`, else `python3`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern::compose::dkim::{DkimKey, DkimKeys};
use postern::config::Config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DOMAIN: &str = "bench.example";

fn python() -> String {
    std::env::var("POSTERN_TEST_PYTHON")
        .or_else(|_| std::env::var("POSTERN_TEST_VENV").map(|v| format!("{v}/bin/python")))
        .unwrap_or_else(|_| "python3".into())
}

/// The DNS server as a child, with the zone; killed on drop.
struct Dns {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dns(key: &DkimKey) -> Dns {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("zone.json");
    let records = serde_json::json!({
        key.record_name(): {"TXT": [key.record_text()]},
        DOMAIN: {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        format!("_dmarc.{DOMAIN}"): {"TXT": ["v=DMARC1; p=reject"]},
    });
    std::fs::write(&zone, records.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dns_server/server.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg("--zone")
        .arg(&zone)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tests/dns_server/server.py (needs dnslib)");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("dns server said {line:?}"));
    Dns {
        child,
        port,
        _dir: dir,
    }
}

/// A webhook receiver that takes everything.
async fn receiver() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut out = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), r.read_line(&mut line))
            .await
            .expect("reply within 30 s")
            .unwrap();
        assert!(n > 0, "connection closed");
        out.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return out;
        }
    }
}

/// End-of-DATA → 250 times of up to `n` messages, within `max`.
async fn run(checks: Option<u16>, message: &[u8], n: usize, max: Duration) -> Vec<Duration> {
    let hook = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{hook}/hook");
    let dns = checks.map(|port| format!("127.0.0.1:{port}"));
    let mut vars = vec![
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", dir.path().to_str().unwrap()),
        ("POSTERN_HOSTNAME", "mx.postern.test"),
    ];
    if let Some(dns) = &dns {
        vars.push(("POSTERN_AUTH_CHECKS", "spf,dkim,dmarc,arc"));
        vars.push(("POSTERN_DNS_SERVERS", dns));
    }
    let config = Config::from_vars(vars).expect("bench config");
    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = smtp.local_addr().unwrap();
    let token = CancellationToken::new();
    let app = tokio::spawn(postern::app::run(
        config,
        postern::app::Listeners {
            smtp,
            smtps: None,
            http,
        },
        token.clone(),
    ));
    let (r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let mut r = BufReader::new(r);
    assert!(reply(&mut r).await.starts_with("220"));
    w.write_all(b"EHLO mx.bench.example\r\n").await.unwrap();
    reply(&mut r).await;
    let started = Instant::now();
    let mut times = Vec::with_capacity(n);
    while times.len() < n && started.elapsed() < max {
        w.write_all(
            format!("MAIL FROM:<a@{DOMAIN}>\r\nRCPT TO:<b@postern.test>\r\nDATA\r\n").as_bytes(),
        )
        .await
        .unwrap();
        for _ in 0..3 {
            reply(&mut r).await;
        }
        w.write_all(message).await.unwrap();
        let t = Instant::now();
        w.write_all(b".\r\n").await.unwrap();
        let end = reply(&mut r).await;
        times.push(t.elapsed());
        assert!(end.starts_with("250"), "{end}");
    }
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), app).await;
    times
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let mut n = 200usize;
    let mut max = Duration::from_secs(60);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--messages" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--max-seconds" => {
                max = Duration::from_secs(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--max-seconds T"),
                )
            }
            "--bench" => {}
            other => panic!("unknown option {other}; usage: --messages N --max-seconds T"),
        }
    }
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dkim/rsa2048.pem"
    ))
    .unwrap();
    let key = DkimKey::load(DOMAIN, "bench", "rsa2048.pem", &pem).unwrap();
    let dns = start_dns(&key);
    let body = "The numbers are in.\r\n".repeat(100);
    let unsigned = format!(
        "From: Alice <alice@{DOMAIN}>\r\nTo: b@postern.test\r\nSubject: bench\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <b1@{DOMAIN}>\r\n\r\n{body}"
    );
    let mut message = DkimKeys::new(vec![key]).sign(unsigned.as_bytes()).unwrap();
    message.extend_from_slice(unsigned.as_bytes());
    let mut rows = Vec::new();
    for (name, checks) in [("off", None), ("spf,dkim,dmarc,arc", Some(dns.port))] {
        let mut t = run(checks, &message, n, max).await;
        t.sort();
        let (p50, p99) = (quantile(&t, 0.5), quantile(&t, 0.99));
        println!(
            "checks {name:<20} messages {:>5}  median {:>7.3} ms  p99 {:>7.3} ms",
            t.len(),
            ms(p50),
            ms(p99)
        );
        rows.push((p50, p99));
    }
    let (off, on) = (rows[0], rows[1]);
    println!(
        "added by the checks: median {:.3} ms, p99 {:.3} ms",
        ms(on.0.saturating_sub(off.0)),
        ms(on.1.saturating_sub(off.1))
    );
}
