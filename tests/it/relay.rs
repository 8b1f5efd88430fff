//! End-to-end tests of the relay client against a real SMTP server on
//! 127.0.0.1: aiosmtpd, run by `tests/smtp_server/server.py` from the test
//! virtualenv that tests/run.sh makes (tests/requirements.txt).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern::relay::{RcptOutcome, Relay, RelayConfig, RelayConfigError};
use serde_json::Value;

const HELO: &str = "postern.test";

/// The test virtualenv's interpreter (aiosmtpd is in tests/requirements.txt).
fn python() -> PathBuf {
    PathBuf::from(crate::helpers::python())
}

/// A CA and a leaf certificate for localhost / 127.0.0.1 signed by it.
fn write_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Postern test CA");
    let ca = ca.self_signed(&ca_key).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();

    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
}

/// The Python server as a child process; killed by PID on drop.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// `tls`: "none", "starttls" or "implicit"; `extra`: more server.py flags.
    fn start(tls: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server/server.py");
        let stderr = std::fs::File::create(dir.path().join("stderr.txt")).unwrap();
        let mut child = Command::new(python())
            .arg(script)
            .arg("--log")
            .arg(dir.path().join("events.jsonl"))
            .args(["--tls", tls])
            .arg("--cert")
            .arg(dir.path().join("cert.pem"))
            .arg("--key")
            .arg(dir.path().join("key.pem"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start server.py");
        // The server binds port 0 and prints the port once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(port) = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
            panic!("server.py did not report its port ({line:?}); stderr:\n{err}");
        };
        Server { child, port, dir }
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    fn relay(&self, url: &str) -> Relay {
        let cfg = RelayConfig::parse(&url.replace("PORT", &self.port.to_string()))
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        Relay::new(&cfg, HELO).unwrap()
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("events.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["event"] == kind)
            .collect()
    }

    fn messages(&self) -> Vec<Value> {
        self.events("message")
    }

    fn connections(&self) -> usize {
        self.events("connect").len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn data(message: &Value) -> Vec<u8> {
    let hex = message["data_hex"].as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn sent(outcome: &RcptOutcome) -> &str {
    match outcome {
        RcptOutcome::Sent { reply } => reply,
        other => panic!("expected Sent, got {other:?}"),
    }
}

fn deferred(outcome: &RcptOutcome) -> &str {
    match outcome {
        RcptOutcome::Deferred { reply } => reply,
        other => panic!("expected Deferred, got {other:?}"),
    }
}

fn failed(outcome: &RcptOutcome) -> &str {
    match outcome {
        RcptOutcome::Failed { reply } => reply,
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const MESSAGE: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n\
.leading dot\r\n.\r\n..two dots\r\nend\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn plain_delivery_is_byte_exact_with_null_sender() {
    let server = Server::start("none", &[]);
    let relay = server.relay("smtp://127.0.0.1:PORT?tls=none");

    let out = relay.send("", &rcpts(&["b@example.com"]), MESSAGE).await;
    assert_eq!(out.len(), 1);
    assert!(
        sent(&out[0]).starts_with("250 2.0.0 Ok: queued as Q"),
        "{out:?}"
    );

    // Bare LF, no final line end: normalised to CRLF lines.
    let out = relay
        .send(
            "<a@example.com>",
            &rcpts(&["<c@example.com>"]),
            b"Subject: x\n\nbody\n.\nlast",
        )
        .await;
    sent(&out[0]);

    let msgs = server.messages();
    assert_eq!(msgs.len(), 2);
    // aiosmtpd records the null sender as "<>".
    assert_eq!(msgs[0]["mail_from"], "<>");
    assert_eq!(msgs[0]["rcpt_tos"], serde_json::json!(["b@example.com"]));
    assert_eq!(
        data(&msgs[0]),
        MESSAGE,
        "{}",
        String::from_utf8_lossy(&data(&msgs[0]))
    );
    assert_eq!(msgs[0]["helo"], HELO);
    assert_eq!(msgs[0]["tls"], false);
    assert_eq!(msgs[0]["auth"], Value::Null);
    assert_eq!(msgs[1]["mail_from"], "a@example.com");
    assert_eq!(data(&msgs[1]), b"Subject: x\r\n\r\nbody\r\n.\r\nlast\r\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_and_auth_plain() {
    let server = Server::start("starttls", &["--auth", "postern:pw"]);
    let relay = server.relay(&format!(
        "smtp://postern:pw@127.0.0.1:PORT?ca={}&helo=mx.postern.test",
        server.ca()
    ));
    let out = relay
        .send("a@example.com", &rcpts(&["b@example.com"]), MESSAGE)
        .await;
    sent(&out[0]);
    let msgs = server.messages();
    assert_eq!(msgs[0]["tls"], true);
    assert_eq!(msgs[0]["auth"]["user"], "postern");
    assert_eq!(msgs[0]["auth"]["mechanism"], "PLAIN");
    assert_eq!(msgs[0]["helo"], "mx.postern.test");
    assert_eq!(data(&msgs[0]), MESSAGE);

    let summary = relay.check().await.unwrap();
    eprintln!("check: {summary}");
    assert!(
        summary.contains("STARTTLS") && summary.contains("\"postern\""),
        "{summary}"
    );
    assert!(summary.contains("test.smtp.local"), "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn smtps_implicit_tls_and_auth_login_with_encoded_password() {
    let server = Server::start(
        "implicit",
        &["--auth", "user@example.com:p@ss:w/rd", "--login-only"],
    );
    let relay = server.relay(&format!(
        "smtps://user%40example.com:p%40ss%3Aw%2Frd@127.0.0.1:PORT?ca={}",
        server.ca()
    ));
    let out = relay
        .send("a@example.com", &rcpts(&["b@example.com"]), MESSAGE)
        .await;
    sent(&out[0]);
    let msgs = server.messages();
    assert_eq!(msgs[0]["tls"], true);
    assert_eq!(msgs[0]["auth"]["user"], "user@example.com");
    assert_eq!(msgs[0]["auth"]["mechanism"], "LOGIN");
    let summary = relay.check().await.unwrap();
    assert!(summary.contains("implicit TLS"), "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_defers_everyone() {
    let server = Server::start("starttls", &["--auth", "postern:pw"]);
    let relay = server.relay(&format!(
        "smtp://postern:nope@127.0.0.1:PORT?ca={}",
        server.ca()
    ));
    let out = relay
        .send(
            "a@example.com",
            &rcpts(&["b@example.com", "c@example.com"]),
            MESSAGE,
        )
        .await;
    for o in &out {
        let reply = deferred(o);
        assert!(reply.contains("authentication failed: 535"), "{reply}");
        assert!(!reply.contains("nope"));
    }
    assert!(server.messages().is_empty());
    // Auth failures are not per recipient: one transaction, no retries.
    assert_eq!(server.connections(), 1);
    let err = relay.check().await.unwrap_err();
    assert!(err.contains("535"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_down_defers_everyone() {
    let port = closed_port();
    let cfg = RelayConfig::parse(&format!("smtp://127.0.0.1:{port}?tls=none")).unwrap();
    let relay = Relay::new(&cfg, HELO).unwrap();
    let out = relay
        .send(
            "a@example.com",
            &rcpts(&["b@example.com", "c@example.com"]),
            MESSAGE,
        )
        .await;
    assert_eq!(out.len(), 2);
    for o in &out {
        assert!(deferred(o).to_lowercase().contains("refused"), "{o:?}");
    }
    assert!(
        relay
            .check()
            .await
            .unwrap_err()
            .to_lowercase()
            .contains("refused")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_refused_recipient_of_three_fails_alone() {
    let server = Server::start("none", &[]);
    let relay = server.relay("smtp://127.0.0.1:PORT?tls=none");
    let to = rcpts(&[
        "ok1@example.com",
        "bad@example.com",
        "ok2@example.com",
        "not an address",
    ]);
    let out = relay.send("a@example.com", &to, MESSAGE).await;
    assert_eq!(out.len(), 4);
    sent(&out[0]);
    assert!(
        failed(&out[1]).starts_with("550 5.1.1 <bad@example.com>"),
        "{out:?}"
    );
    sent(&out[2]);
    assert!(
        failed(&out[3]).contains("invalid recipient address"),
        "{out:?}"
    );
    let msgs = server.messages();
    assert_eq!(msgs.len(), 2, "each good recipient in its own transaction");
    assert_eq!(msgs[0]["rcpt_tos"], serde_json::json!(["ok1@example.com"]));
    assert_eq!(msgs[1]["rcpt_tos"], serde_json::json!(["ok2@example.com"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_greylisted_recipient_of_three_is_deferred_alone() {
    let server = Server::start("none", &[]);
    let relay = server.relay("smtp://127.0.0.1:PORT?tls=none");
    let to = rcpts(&["ok1@example.com", "later@example.com", "ok2@example.com"]);
    let out = relay.send("a@example.com", &to, MESSAGE).await;
    sent(&out[0]);
    assert!(deferred(&out[1]).starts_with("451 4.3.0"), "{out:?}");
    sent(&out[2]);
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_relay_421_defers_everyone_without_retries() {
    let server = Server::start("none", &["--busy"]);
    let relay = server.relay("smtp://127.0.0.1:PORT?tls=none");
    let out = relay
        .send(
            "a@example.com",
            &rcpts(&["b@example.com", "c@example.com", "d@example.com"]),
            MESSAGE,
        )
        .await;
    for o in &out {
        assert!(deferred(o).starts_with("421 4.3.2"), "{o:?}");
    }
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_required_but_not_offered_defers() {
    let server = Server::start("none", &[]);
    let relay = server.relay("smtp://127.0.0.1:PORT");
    let out = relay
        .send("a@example.com", &rcpts(&["b@example.com"]), MESSAGE)
        .await;
    let reply = deferred(&out[0]);
    assert!(reply.contains("does not offer STARTTLS"), "{reply}");
    assert!(server.messages().is_empty());
    assert!(relay.check().await.unwrap_err().contains("STARTTLS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_certificate_defers() {
    let server = Server::start("implicit", &[]);
    // No ?ca=: the test CA is unknown to the built-in roots.
    let relay = server.relay("smtps://127.0.0.1:PORT");
    let out = relay
        .send("a@example.com", &rcpts(&["b@example.com"]), MESSAGE)
        .await;
    let reply = deferred(&out[0]);
    assert!(reply.contains("certificate"), "{reply}");
    assert!(server.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_reuses_connections() {
    let server = Server::start("starttls", &["--auth", "postern:pw"]);
    let relay = server.relay(&format!(
        "smtp://postern:pw@127.0.0.1:PORT?ca={}",
        server.ca()
    ));
    for i in 0..20 {
        let out = relay
            .send(
                "a@example.com",
                &rcpts(&[&format!("r{i}@example.com")]),
                MESSAGE,
            )
            .await;
        sent(&out[0]);
    }
    assert_eq!(server.messages().len(), 20);
    // lettre hands a connection back to the pool from a spawned task, so a
    // send can occasionally start before it is back and open another one.
    let connections = server.connections();
    eprintln!("20 sends used {connections} connection(s)");
    assert!(connections <= 3, "{connections} connections for 20 sends");
}

#[tokio::test(flavor = "multi_thread")]
async fn smtputf8_addresses_pass_through_or_fail_clearly() {
    let server = Server::start("none", &["--smtputf8"]);
    let relay = server.relay("smtp://127.0.0.1:PORT?tls=none");
    let out = relay
        .send("jörg@bücher.example", &rcpts(&["zoë@example.com"]), MESSAGE)
        .await;
    sent(&out[0]);
    let msgs = server.messages();
    assert_eq!(msgs[0]["mail_from"], "jörg@bücher.example");
    assert_eq!(msgs[0]["rcpt_tos"], serde_json::json!(["zoë@example.com"]));
    assert!(msgs[0]["mail_options"].to_string().contains("SMTPUTF8"));

    let ascii_only = Server::start("none", &[]);
    let relay = ascii_only.relay("smtp://127.0.0.1:PORT?tls=none");
    let out = relay
        .send(
            "a@example.com",
            &rcpts(&["zoë@example.com", "zoe@example.com"]),
            MESSAGE,
        )
        .await;
    assert!(failed(&out[0]).contains("SMTPUTF8"), "{out:?}");
    sent(&out[1]);
    assert_eq!(ascii_only.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_relay_times_out_and_the_pool_recovers() {
    let server = Server::start("none", &[]);
    // timeout=1 s gives a 2 s transaction deadline; the server stalls 3 s.
    let relay = server.relay("smtp://127.0.0.1:PORT?tls=none&timeout=1");
    let started = Instant::now();
    let out = relay
        .send("a@example.com", &rcpts(&["slow@example.com"]), MESSAGE)
        .await;
    assert!(deferred(&out[0]).contains("timed out"), "{out:?}");
    assert!(started.elapsed() < Duration::from_millis(2900));

    // The stalled connection must not be reused mid-command.
    let out = relay
        .send(
            "a@example.com",
            &rcpts(&["next@example.com"]),
            b"second\r\n",
        )
        .await;
    sent(&out[0]);
    assert_eq!(server.connections(), 2);
    let msgs = server.messages();
    let next = msgs
        .iter()
        .find(|m| m["rcpt_tos"][0] == "next@example.com")
        .unwrap();
    assert_eq!(data(next), b"second\r\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and never greets.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let cfg = RelayConfig::parse(&format!("smtp://127.0.0.1:{port}?tls=none&timeout=1")).unwrap();
    let relay = Relay::new(&cfg, HELO).unwrap();
    let out = relay
        .send("a@example.com", &rcpts(&["b@example.com"]), MESSAGE)
        .await;
    assert!(deferred(&out[0]).contains("timed out"), "{out:?}");
    assert!(relay.check().await.unwrap_err().contains("timed out"));
    holder.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_sender_fails_without_contacting_the_relay() {
    let cfg = RelayConfig::parse(&format!("smtp://127.0.0.1:{}?tls=none", closed_port())).unwrap();
    let relay = Relay::new(&cfg, HELO).unwrap();
    let out = relay
        .send(
            "no at sign",
            &rcpts(&["b@example.com", "c@example.com"]),
            MESSAGE,
        )
        .await;
    assert_eq!(out.len(), 2);
    for o in &out {
        assert!(failed(o).contains("invalid sender address"), "{o:?}");
    }
    assert!(relay.send("a@example.com", &[], MESSAGE).await.is_empty());
}

#[test]
fn bad_ca_files_and_helo_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let cfg =
        RelayConfig::parse(&format!("smtps://u:s3cr3t@relay?ca={}", missing.display())).unwrap();
    let err = Relay::new(&cfg, HELO).unwrap_err();
    assert!(
        matches!(err, RelayConfigError::CaUnreadable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("POSTERN_RELAY_URL: cannot read ca file")
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let cfg =
        RelayConfig::parse(&format!("smtps://u:s3cr3t@relay?ca={}", garbage.display())).unwrap();
    let err = Relay::new(&cfg, HELO).unwrap_err();
    assert!(matches!(err, RelayConfigError::CaInvalid { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("s3cr3t"));

    let cfg = RelayConfig::parse("smtp://relay").unwrap();
    let err = Relay::new(&cfg, "bad name\r\n").unwrap_err();
    assert!(matches!(err, RelayConfigError::InvalidHelo(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_share_the_pool() {
    let server = Server::start("none", &[]);
    let relay = std::sync::Arc::new(server.relay("smtp://127.0.0.1:PORT?tls=none"));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let relay = std::sync::Arc::clone(&relay);
            tokio::spawn(async move {
                let to = rcpts(&[&format!("c{i}@example.com")]);
                relay.send("a@example.com", &to, MESSAGE).await
            })
        })
        .collect();
    for task in tasks {
        sent(&task.await.unwrap()[0]);
    }
    let msgs = server.messages();
    assert_eq!(msgs.len(), 10);
    assert!(msgs.iter().all(|m| data(m) == MESSAGE));
    // lettre's default pool holds at most 10 connections.
    assert!(server.connections() <= 10);
}
