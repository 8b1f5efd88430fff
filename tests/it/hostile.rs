//! Hostile clients: connection caps, the session and DATA time limits,
//! early talkers, garbage input and the error limit. Every wait is bounded.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::helpers::*;

const TOO_MANY_CONNECTIONS: &str = "421 4.7.0 Too many connections, try again later";
const TOO_MANY_FROM_IP: &str = "421 4.7.0 Too many connections from your address, try again later";
const SESSION_TIMEOUT: &str = "421 4.4.2 Session time limit exceeded, closing connection";
const TOO_SLOW: &str = "421 4.4.2 Data transfer too slow, closing connection";
const EARLY_TALKER: &str = "554 5.5.1 Protocol error: client sent data before the greeting";
const LINE_TOO_LONG: &str = "500 5.5.6 Line too long";
const UNRECOGNIZED: &str = "500 5.5.1 Command unrecognized";
const TOO_MANY_ERRORS: &str = "421 4.7.0 Too many errors, closing connection";

/// 127.0.0.2: Linux routes all of 127/8 to lo, so it is a second client
/// address without any setup.
pub(crate) const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Connects until greeted: a slot is given back when the session task
/// ends, a moment after the client saw the connection close.
async fn greeted(app: &App) -> Smtp {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (c, greeting) = Smtp::connect(app.smtp).await;
        if greeting.starts_with("220 ") {
            return c;
        }
        assert!(
            greeting.starts_with("421 ") && Instant::now() < deadline,
            "{greeting}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn global_session_cap() {
    let (app, _rx) = app_with_receiver(&[
        ("POSTERN_MAX_SESSIONS", "3"),
        ("POSTERN_MAX_SESSIONS_PER_IP", "100"),
    ])
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(greeted(&app).await);
    }
    let (mut fourth, greeting) = Smtp::connect(app.smtp).await;
    assert_eq!(greeting, TOO_MANY_CONNECTIONS);
    assert!(fourth.closed().await);
    for c in &mut open {
        assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    }
    let mut first = open.remove(0);
    assert_eq!(first.cmd("QUIT").await, "221 2.0.0 Bye");
    assert!(first.closed().await);
    let mut again = greeted(&app).await;
    assert_eq!(again.cmd("NOOP").await, "250 2.0.0 OK");
    // ...and the cap holds again with the new session in.
    let (mut fifth, greeting) = Smtp::connect(app.smtp).await;
    assert_eq!(greeting, TOO_MANY_CONNECTIONS);
    assert!(fifth.closed().await);
}

#[tokio::test]
async fn per_ip_session_cap() {
    let (app, _rx) = app_with_receiver(&[("POSTERN_MAX_SESSIONS_PER_IP", "2")]).await;
    let mut a = greeted(&app).await;
    let mut b = greeted(&app).await;
    let (mut third, greeting) = Smtp::connect(app.smtp).await;
    assert_eq!(greeting, TOO_MANY_FROM_IP);
    assert!(third.closed().await);

    let mut other = Smtp::connect_from(OTHER_IP, app.smtp).await;
    assert!(other.reply().await.starts_with("220 "));
    assert_eq!(
        other.cmd("EHLO other.test").await.lines().next().unwrap(),
        "250-localhost Hello other.test"
    );
    assert_eq!(a.cmd("NOOP").await, "250 2.0.0 OK");
    assert_eq!(b.cmd("NOOP").await, "250 2.0.0 OK");
}

#[tokio::test]
async fn session_lifetime_is_capped_even_for_a_busy_client() {
    let (app, _rx) = app_with_receiver(&[("POSTERN_SMTP_SESSION_TIMEOUT", "1s")]).await;
    let start = Instant::now();
    let mut c = Smtp::connect_raw(app.smtp).await;
    assert!(c.reply().await.starts_with("220 "));
    let mut noops = 0;
    let end = loop {
        assert!(start.elapsed() < Duration::from_secs(3), "no 421 in time");
        // Between NOOPs, watch for the server speaking on its own.
        tokio::select! {
            biased;
            r = c.r.fill_buf() => {
                assert!(!r.unwrap().is_empty(), "closed without a reply");
                break c.reply().await;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let r = c.cmd("NOOP").await;
        if r != "250 2.0.0 OK" {
            break r;
        }
        noops += 1;
    };
    let elapsed = start.elapsed();
    assert_eq!(end, SESSION_TIMEOUT);
    assert!(noops >= 3, "the client was kept busy: {noops} NOOPs");
    assert!(
        elapsed >= Duration::from_millis(950) && elapsed <= Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert!(c.closed().await);
}

#[tokio::test]
async fn slow_data_is_cut_after_the_grace_period() {
    let (app, rx) = app_with_receiver(&[
        ("POSTERN_SMTP_MIN_DATA_RATE", "1000000"),
        ("POSTERN_SMTP_DATA_RATE_GRACE", "1s"),
    ])
    .await;
    // We watch for an unsolicited reply (`r.fill_buf()`) while trickling.
    let mut c = Smtp::connect_raw(app.smtp).await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO slow.test").await.starts_with("250"));
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
    assert_eq!(c.cmd("RCPT TO:<x@y.test>").await, "250 2.1.5 Recipient OK");
    assert_eq!(
        c.cmd("DATA").await,
        "354 Start mail input; end with <CRLF>.<CRLF>"
    );
    let start = Instant::now();
    c.send(b"Subject: slow\r\n\r\n").await;
    let got = loop {
        assert!(start.elapsed() < Duration::from_secs(5), "no 421 in time");
        tokio::select! {
            biased;
            r = c.r.fill_buf() => {
                assert!(!r.unwrap().is_empty(), "closed without a reply");
                break c.reply().await;
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => c.send(b"x").await,
        }
    };
    let elapsed = start.elapsed();
    assert_eq!(got, TOO_SLOW);
    assert!(
        elapsed >= Duration::from_secs(1),
        "judged before the grace period: {elapsed:?}"
    );
    assert!(c.closed().await);
    for dir in ["msg", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(app.spool.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "spool {dir}/ not empty: {left:?}");
    }
    assert_eq!(
        pending(&app.spool),
        Vec::<String>::new(),
        "nothing in the log"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.hits().is_empty());
}

#[tokio::test]
async fn early_talker_is_refused_and_polite_client_greeted() {
    let (app, _rx) = app_with_receiver(&[("POSTERN_SMTP_GREETING_DELAY", "300ms")]).await;
    let mut rude = Smtp::connect_raw(app.smtp).await;
    rude.send(b"EHLO x\r\n").await;
    assert_eq!(rude.reply().await, EARLY_TALKER);
    assert!(rude.closed().await);

    let start = Instant::now();
    let (mut polite, greeting) = Smtp::connect(app.smtp).await;
    let waited = start.elapsed();
    assert_eq!(greeting, "220 localhost ESMTP Postern ready");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(
        polite
            .cmd("EHLO x")
            .await
            .starts_with("250-localhost Hello x")
    );
}

/// A real TLS 1.3 ClientHello (rustls), as a client that dialled the wrong
/// port sends it.
fn client_hello() -> Vec<u8> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "mx.test".try_into().unwrap())
            .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    assert_eq!(out[0], 0x16, "a TLS handshake record");
    out
}

#[tokio::test]
async fn garbage_gets_defined_replies_and_the_server_survives() {
    let (app, rx) = app_with_receiver(&[("POSTERN_MAX_ERRORS", "100")]).await;

    // 10 MB without a newline: one 500 5.5.6, the rest of the line is dropped.
    let mut c = Smtp::connect_raw(app.smtp).await;
    assert!(c.reply().await.starts_with("220 "));
    let Smtp { mut r, mut w } = c;
    let writer = tokio::spawn(async move {
        w.write_all(&vec![b'A'; 10 * 1024 * 1024]).await.unwrap();
        w
    });
    assert_eq!(read_reply(&mut r).await, LINE_TOO_LONG);
    let w = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("server keeps reading")
        .unwrap();
    let mut c = Smtp { r, w };
    assert_eq!(c.cmd("\r\nNOOP").await, "250 2.0.0 OK", "exactly one 500");

    // NUL bytes.
    assert_eq!(c.cmd("\0\0\0").await, UNRECOGNIZED);
    assert_eq!(c.cmd("NOOP\0").await, UNRECOGNIZED);
    assert!(c.cmd("EHLO client.test").await.starts_with("250-"));
    assert_eq!(
        c.cmd("MAIL FROM:<a@b.test>\0").await,
        "501 5.5.4 Syntax: MAIL FROM:<reverse-path> [parameters]"
    );
    // Bytes that are not UTF-8.
    c.send(b"\xff\xfe\r\n").await;
    assert_eq!(
        c.reply().await,
        "500 5.5.2 Syntax error: command is not valid UTF-8"
    );
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
    c.send(b"RCPT TO:<\xc3\x28@x.test>\r\n").await;
    assert_eq!(c.reply().await, "501 5.1.3 Bad recipient address syntax");
    assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");

    // A TLS ClientHello on the plain port: one 5xx per "line" it holds.
    let hello = client_hello();
    let lines = hello.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut t = Smtp::connect_raw(app.smtp).await;
    assert!(t.reply().await.starts_with("220 "));
    t.send(&hello).await;
    t.send(b"\r\n").await;
    for i in 0..lines {
        let r = t.reply().await;
        assert!(
            r == UNRECOGNIZED
                || r == LINE_TOO_LONG
                || r.starts_with("501 ")
                || r.starts_with("500 5.5.2 "),
            "line {i} of {lines}: {r:?}"
        );
    }
    assert_eq!(t.cmd("NOOP").await, "250 2.0.0 OK");

    // The server is still up and accepts mail.
    let (mut ok, greeting) = Smtp::connect(app.smtp).await;
    assert!(greeting.starts_with("220 "));
    assert!(ok.cmd("EHLO client.test").await.starts_with("250-"));
    let r = ok
        .send_mail(
            "a@b.test",
            &["x@y.test"],
            "Subject: fine\r\n\r\nstill up\r\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 OK: queued as "), "{r}");
    assert_eq!(rx.wait_for(1, 10).await[0].json()["subject"], "fine");
}

/// smtp-proto decodes addresses lossily; an address that is not UTF-8
/// must be refused, not accepted with U+FFFD in place of its bytes.
#[tokio::test]
async fn invalid_utf8_mail_from_is_refused() {
    let (app, _rx) = app_with_receiver(&[]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250-"));
    c.send(b"MAIL FROM:<\xff\xfe@x.test>\r\n").await;
    assert_eq!(c.reply().await, "501 5.1.7 Bad sender address syntax");
    c.send(b"MAIL FROM:<a@b.test>\r\n").await;
    assert_eq!(c.reply().await, "250 2.1.0 Sender OK");
    c.send(b"RCPT TO:<\xff\xfe@x.test>\r\n").await;
    assert_eq!(c.reply().await, "501 5.1.3 Bad recipient address syntax");
}

#[tokio::test]
async fn too_many_errors_closes_the_session() {
    let (app, _rx) = app_with_receiver(&[("POSTERN_MAX_ERRORS", "3")]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    assert_eq!(c.cmd("FOO").await, UNRECOGNIZED);
    assert_eq!(c.cmd("BAR").await, UNRECOGNIZED);
    // Not an error: a well-formed command in between does not reset the count.
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    assert_eq!(c.cmd("BAZ").await, UNRECOGNIZED);
    assert_eq!(c.reply().await, TOO_MANY_ERRORS);
    assert!(c.closed().await);
}

/// A client that pipelines commands and never reads its replies must not
/// block the session in a write past its time limits (and so hold its
/// slot under the caps).
#[tokio::test]
async fn client_that_never_reads_is_still_timed_out() {
    let (app, _rx) = app_with_receiver(&[
        ("POSTERN_SMTP_SESSION_TIMEOUT", "1s"),
        ("POSTERN_SMTP_IDLE_TIMEOUT", "1s"),
        ("POSTERN_MAX_SESSIONS", "1"),
    ])
    .await;
    let mut c = Smtp::connect_raw(app.smtp).await;
    assert!(c.reply().await.starts_with("220 "));
    let Smtp { r: _unread, mut w } = c;
    // ~14 MB of replies: more than both socket buffers hold.
    let pipeline = b"NOOP\r\n".repeat(1_000_000);
    let writer = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(6), w.write_all(&pipeline)).await;
        w
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_next, greeting) = Smtp::connect(app.smtp).await;
    assert!(
        greeting.starts_with("220 "),
        "slot still held 3 s into a 1 s session limit: {greeting}"
    );
    let _ = writer.await;
}
