//! End-to-end tests of the relay client against a real SMTP server on
//! 127.0.0.1: aiosmtpd, run by `tests/smtp_server/server.py` from the test
//! virtualenv that tests/run.sh makes (tests/requirements.txt).

use std::time::{Duration, Instant};

use postern::relay::{RcptOutcome, Relay, RelayConfig, RelayConfigError};
use serde_json::Value;

use crate::aiosmtpd::{Smtpd, data};
use crate::helpers::{Silent, free_port};

const HELO: &str = "postern.test";

/// A relay client of `server`, from `url` with the literal `PORT` in place
/// of the server's port.
fn relay_to(server: &Smtpd, url: &str) -> Relay {
    let cfg = RelayConfig::parse(&url.replace("PORT", &server.port.to_string()))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    Relay::new(&cfg, HELO).unwrap()
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

const MESSAGE: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n\
.leading dot\r\n.\r\n..two dots\r\nend\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn plain_delivery_is_byte_exact_with_null_sender() {
    let server = Smtpd::start_tls("none", &[]);
    let relay = relay_to(&server, "smtp://127.0.0.1:PORT?tls=none");

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
    let server = Smtpd::start_tls("starttls", &["--auth", "postern:pw"]);
    let relay = relay_to(
        &server,
        &format!(
            "smtp://postern:pw@127.0.0.1:PORT?ca={}&helo=mx.postern.test",
            server.ca()
        ),
    );
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
    let server = Smtpd::start_tls(
        "implicit",
        &["--auth", "user@example.com:p@ss:w/rd", "--login-only"],
    );
    let relay = relay_to(
        &server,
        &format!(
            "smtps://user%40example.com:p%40ss%3Aw%2Frd@127.0.0.1:PORT?ca={}",
            server.ca()
        ),
    );
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
    let server = Smtpd::start_tls("starttls", &["--auth", "postern:pw"]);
    let relay = relay_to(
        &server,
        &format!("smtp://postern:nope@127.0.0.1:PORT?ca={}", server.ca()),
    );
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
    let port = free_port();
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
    let server = Smtpd::start_tls("none", &[]);
    let relay = relay_to(&server, "smtp://127.0.0.1:PORT?tls=none");
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
    let server = Smtpd::start_tls("none", &[]);
    let relay = relay_to(&server, "smtp://127.0.0.1:PORT?tls=none");
    let to = rcpts(&["ok1@example.com", "later@example.com", "ok2@example.com"]);
    let out = relay.send("a@example.com", &to, MESSAGE).await;
    sent(&out[0]);
    assert!(deferred(&out[1]).starts_with("451 4.3.0"), "{out:?}");
    sent(&out[2]);
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_relay_421_defers_everyone_without_retries() {
    let server = Smtpd::start_tls("none", &["--busy"]);
    let relay = relay_to(&server, "smtp://127.0.0.1:PORT?tls=none");
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
    let server = Smtpd::start_tls("none", &[]);
    let relay = relay_to(&server, "smtp://127.0.0.1:PORT");
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
    let server = Smtpd::start_tls("implicit", &[]);
    // No ?ca=: the test CA is unknown to the built-in roots.
    let relay = relay_to(&server, "smtps://127.0.0.1:PORT");
    let out = relay
        .send("a@example.com", &rcpts(&["b@example.com"]), MESSAGE)
        .await;
    let reply = deferred(&out[0]);
    assert!(reply.contains("certificate"), "{reply}");
    assert!(server.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_reuses_connections() {
    let server = Smtpd::start_tls("starttls", &["--auth", "postern:pw"]);
    let relay = relay_to(
        &server,
        &format!("smtp://postern:pw@127.0.0.1:PORT?ca={}", server.ca()),
    );
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
    let server = Smtpd::start_tls("none", &["--smtputf8"]);
    let relay = relay_to(&server, "smtp://127.0.0.1:PORT?tls=none");
    let out = relay
        .send("jörg@bücher.example", &rcpts(&["zoë@example.com"]), MESSAGE)
        .await;
    sent(&out[0]);
    let msgs = server.messages();
    assert_eq!(msgs[0]["mail_from"], "jörg@bücher.example");
    assert_eq!(msgs[0]["rcpt_tos"], serde_json::json!(["zoë@example.com"]));
    assert!(msgs[0]["mail_options"].to_string().contains("SMTPUTF8"));

    let ascii_only = Smtpd::start_tls("none", &[]);
    let relay = relay_to(&ascii_only, "smtp://127.0.0.1:PORT?tls=none");
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
    let server = Smtpd::start_tls("none", &[]);
    // timeout=1 s gives a 2 s transaction deadline; the server stalls 3 s.
    let relay = relay_to(&server, "smtp://127.0.0.1:PORT?tls=none&timeout=1");
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
    // Accepts and never greets.
    let silent = Silent::start().await;
    let port = silent.port;
    let cfg = RelayConfig::parse(&format!("smtp://127.0.0.1:{port}?tls=none&timeout=1")).unwrap();
    let relay = Relay::new(&cfg, HELO).unwrap();
    let out = relay
        .send("a@example.com", &rcpts(&["b@example.com"]), MESSAGE)
        .await;
    assert!(deferred(&out[0]).contains("timed out"), "{out:?}");
    assert!(relay.check().await.unwrap_err().contains("timed out"));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_sender_fails_without_contacting_the_relay() {
    let cfg = RelayConfig::parse(&format!("smtp://127.0.0.1:{}?tls=none", free_port())).unwrap();
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
    let server = Smtpd::start_tls("none", &[]);
    let relay = std::sync::Arc::new(relay_to(&server, "smtp://127.0.0.1:PORT?tls=none"));
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
