//! The PROXY protocol on the real listeners: raw TCP clients play the load
//! balancer (127.0.0.1, trusted) and send v1 or v2 headers built by hand,
//! then SMTP; 127.0.0.2 is a peer outside the trusted networks. What the
//! header names must be what the payload, `Received:`, the per-IP session
//! cap and the AUTH throttle see; anything else is closed before the
//! greeting, without a reply.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::hostile::OTHER_IP;
use crate::pki::Pki;

const GREETING: &str = "220 localhost ESMTP Postern ready";
const TOO_MANY_FROM_IP: &str = "421 4.7.0 Too many connections from your address, try again later";

/// PROXY protocol on (`auto` unless `extra` says otherwise), trusting only
/// 127.0.0.1.
async fn app(extra: &[(&str, &str)]) -> (App, Receiver) {
    let mut vars = vec![
        ("POSTERN_SMTP_PROXY_PROTOCOL", "auto"),
        ("POSTERN_SMTP_PROXY_TRUSTED", "127.0.0.1/32"),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((*k, *v));
    }
    app_with_receiver(&vars).await
}

fn v1(client: &str, port: u16) -> Vec<u8> {
    match client.parse::<IpAddr>().unwrap() {
        IpAddr::V4(_) => format!("PROXY TCP4 {client} 192.0.2.25 {port} 25\r\n"),
        IpAddr::V6(_) => format!("PROXY TCP6 {client} 2001:db8::25 {port} 25\r\n"),
    }
    .into_bytes()
}

/// A v2 PROXY header for a TCP client.
fn v2(client: &str, port: u16) -> Vec<u8> {
    let (family, mut block) = match client.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => (0x11, [a.octets().to_vec(), vec![192, 0, 2, 25]].concat()),
        IpAddr::V6(a) => {
            let ours: Ipv6Addr = "2001:db8::25".parse().unwrap();
            (0x21, [a.octets().to_vec(), ours.octets().to_vec()].concat())
        }
    };
    block.extend_from_slice(&port.to_be_bytes());
    block.extend_from_slice(&25u16.to_be_bytes());
    proxy_v2(0x21, family, &block)
}

/// Connects from the balancer, sends `header`; returns the client and what
/// the server said first.
async fn behind(app: &App, header: &[u8]) -> (Smtp, String) {
    let mut c = Smtp::connect_raw(app.smtp).await;
    c.send(header).await;
    let first = c.reply().await;
    (c, first)
}

fn message(subject: &str) -> String {
    format!("From: a@example.org\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\r\nhi\r\n")
}

/// The payload whose subject is `subject`.
fn by_subject(hits: &[Hit], subject: &str) -> Value {
    hits.iter()
        .map(Hit::json)
        .find(|p| p["subject"] == subject)
        .unwrap_or_else(|| panic!("no payload with subject {subject}"))
}

/// The payload's `remote_ip` and its `Received:` header both name `ip`.
fn assert_client(p: &Value, ip: &str) {
    assert_eq!(p["envelope"]["remote_ip"], ip, "{p}");
    let received = payload_header(p, "Received");
    // RFC 5321 4.1.3 address literals: IPv6 is tagged.
    let literal = match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(_) => format!("[{ip}]"),
        IpAddr::V6(_) => format!("[IPv6:{ip}]"),
    };
    assert!(
        received.contains(&format!("({literal})")),
        "Received: {received}"
    );
}

#[tokio::test]
async fn v1_and_v2_headers_name_the_client_in_the_payload_and_received() {
    let (app, rx) = app(&[]).await;
    let cases = [
        ("v1 tcp4", v1("203.0.113.7", 40001), "203.0.113.7"),
        ("v1 tcp6", v1("2001:db8::7", 40002), "2001:db8::7"),
        ("v2 tcp4", v2("198.51.100.9", 40003), "198.51.100.9"),
        ("v2 tcp6", v2("2001:db8:1::9", 40004), "2001:db8:1::9"),
        // LOCAL (a health check) and UNKNOWN are served as the balancer.
        ("v2 local", proxy_v2(0x20, 0x00, &[]), "127.0.0.1"),
        ("v1 unknown", b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1"),
    ];
    for (subject, header, _) in &cases {
        let (mut c, greeting) = behind(&app, header).await;
        assert_eq!(greeting, GREETING, "{subject}");
        assert!(c.cmd("EHLO client.test").await.starts_with("250-"));
        let done = c
            .send_mail("a@example.org", &["bob@example.com"], &message(subject))
            .await;
        assert!(done.starts_with("250 2.0.0 OK"), "{subject}: {done}");
        assert_eq!(c.cmd("QUIT").await, "221 2.0.0 Bye");
    }
    let hits = rx.wait_for(cases.len(), 10).await;
    for (subject, _, ip) in &cases {
        assert_client(&by_subject(&hits, subject), ip);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_per_ip_session_cap_counts_the_proxied_address() {
    let (app, _rx) = app(&[("POSTERN_MAX_SESSIONS_PER_IP", "2")]).await;
    let (mut a1, g1) = behind(&app, &v1("203.0.113.7", 1)).await;
    let (mut a2, g2) = behind(&app, &v2("203.0.113.7", 2)).await;
    assert_eq!((g1.as_str(), g2.as_str()), (GREETING, GREETING));
    // The same client behind the same balancer: its cap is full...
    let (mut a3, g3) = behind(&app, &v1("203.0.113.7", 3)).await;
    assert_eq!(g3, TOO_MANY_FROM_IP);
    assert!(a3.closed().await);
    // ...while other clients behind that balancer are not affected.
    let (mut b, gb) = behind(&app, &v2("203.0.113.8", 4)).await;
    assert_eq!(gb, GREETING);
    let (mut c, gc) = behind(&app, &v1("203.0.113.9", 5)).await;
    assert_eq!(gc, GREETING);
    for s in [&mut a1, &mut a2, &mut b, &mut c] {
        assert_eq!(s.cmd("NOOP").await, "250 2.0.0 OK");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_auth_throttle_counts_the_proxied_address() {
    let password = "correct horse battery staple";
    let users = format!("alice:{}", postern::model::users::hash_password(password));
    let (app, _rx) = app(&[
        ("POSTERN_SMTP_USERS", &users),
        ("POSTERN_SMTP_ALLOW_INSECURE_AUTH", "true"),
        ("POSTERN_AUTH_MAX_FAILURES", "1"),
        ("POSTERN_AUTH_FAILURE_DELAY", "1ms"),
    ])
    .await;
    let plain = |pw: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{pw}"));
        format!("AUTH PLAIN {b64}")
    };
    const BLOCKED: &str = "421 4.7.0 Too many failed authentication attempts, closing connection";

    let (mut a, _) = behind(&app, &v1("203.0.113.7", 1)).await;
    assert!(a.cmd("EHLO client.test").await.contains("AUTH PLAIN LOGIN"));
    assert_eq!(
        a.cmd(&plain("wrong")).await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(a.reply().await, BLOCKED);
    // The same client again, through the same balancer: still blocked.
    let (mut a, _) = behind(&app, &v2("203.0.113.7", 2)).await;
    a.cmd("EHLO client.test").await;
    assert_eq!(a.cmd(&plain(password)).await, BLOCKED);
    // Another client of the balancer logs in.
    let (mut b, _) = behind(&app, &v1("203.0.113.8", 3)).await;
    b.cmd("EHLO client.test").await;
    assert_eq!(
        b.cmd(&plain(password)).await,
        "235 2.7.0 Authentication successful"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_a_valid_header_or_from_an_untrusted_peer_the_connection_closes_unanswered() {
    let (app, _rx) = app(&[]).await;
    let cases: [(&str, Vec<u8>); 6] = [
        ("plain SMTP", b"EHLO client.test\r\n".to_vec()),
        ("HTTP", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        (
            "bad v1",
            b"PROXY TCP4 203.0.113.300 192.0.2.25 1 25\r\n".to_vec(),
        ),
        (
            "v1 without CRLF",
            [b"PROXY UNKNOWN ".to_vec(), vec![b'x'; 200]].concat(),
        ),
        ("bad v2 signature", {
            let mut h = v2("203.0.113.7", 1);
            h[9] = b'X';
            h
        }),
        ("v2 UDP", {
            let mut h = v2("203.0.113.7", 1);
            h[13] = 0x12;
            h
        }),
    ];
    for (what, bytes) in &cases {
        let mut c = Smtp::connect_raw(app.smtp).await;
        c.send(bytes).await;
        assert!(c.closed().await, "{what}: not closed, or a reply came");
    }
    // A valid header from outside the trusted networks: closed at once,
    // though the same header from the balancer is greeted.
    let mut c = Smtp::connect_from(OTHER_IP, app.smtp).await;
    let _ = c.w.write_all(&v1("203.0.113.7", 1)).await;
    assert!(c.closed().await, "untrusted peer");
    let (_c, greeting) = behind(&app, &v1("203.0.113.7", 1)).await;
    assert_eq!(greeting, GREETING);
    app.stop().await;
}

#[tokio::test]
async fn the_configured_version_only() {
    for (version, accepted, refused) in [
        ("v1", v1("203.0.113.7", 1), v2("203.0.113.7", 1)),
        ("v2", v2("203.0.113.7", 1), v1("203.0.113.7", 1)),
    ] {
        let (server, _rx) = app(&[("POSTERN_SMTP_PROXY_PROTOCOL", version)]).await;
        let mut c = Smtp::connect_raw(server.smtp).await;
        c.send(&refused).await;
        assert!(
            c.closed().await,
            "the other version on a {version} listener"
        );
        assert_eq!(behind(&server, &accepted).await.1, GREETING, "{version}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_header_split_across_writes_is_read_whole() {
    let (app, rx) = app(&[]).await;
    let v1_header = v1("203.0.113.7", 40001);
    let v2_header = v2("2001:db8::7", 40002);
    // v1 cut right after spaces (where a parser that guesses goes wrong),
    // v2 inside its fixed part and inside the addresses.
    let splits: [(&str, &[u8], &[usize]); 2] = [
        ("split v1", &v1_header, &[6, 11, 23, 34]),
        ("split v2", &v2_header, &[5, 14, 20]),
    ];
    for (subject, header, cuts) in splits {
        let mut c = Smtp::connect_raw(app.smtp).await;
        let mut from = 0;
        for &cut in cuts.iter().chain([header.len()].iter()) {
            c.send(&header[from..cut]).await;
            c.w.flush().await.unwrap();
            from = cut;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(c.reply().await, GREETING, "{subject}");
        c.cmd("EHLO client.test").await;
        let done = c
            .send_mail("a@example.org", &["bob@example.com"], &message(subject))
            .await;
        assert!(done.starts_with("250 2.0.0 OK"), "{done}");
    }
    let hits = rx.wait_for(2, 10).await;
    assert_client(&by_subject(&hits, "split v1"), "203.0.113.7");
    assert_client(&by_subject(&hits, "split v2"), "2001:db8::7");
    app.stop().await;
}

#[tokio::test]
async fn a_slow_or_missing_header_is_closed_after_the_timeout() {
    let (app, _rx) = app(&[("POSTERN_SMTP_PROXY_TIMEOUT", "1s")]).await;
    let start = Instant::now();
    let mut slow = Smtp::connect_raw(app.smtp).await;
    slow.send(b"PROXY TCP4 203.0.113.7 ").await;
    // A client that waits for a greeting without sending a header.
    let mut silent = Smtp::connect_raw(app.smtp).await;
    assert!(slow.closed().await, "half a header");
    assert!(silent.closed().await, "no header");
    // Not before the timeout: the server's clock started after ours.
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    app.stop().await;
}

#[tokio::test]
async fn implicit_tls_reads_the_header_before_the_handshake() {
    let pki = Pki::new();
    let mut vars = pki.vars();
    vars.push(("POSTERN_SMTPS_LISTEN", "127.0.0.1:0"));
    let (app, rx) = app(&vars).await;
    let smtps = app.smtps.expect("implicit TLS listener");

    let mut tcp = TcpStream::connect(smtps).await.unwrap();
    tcp.write_all(&v2("2001:db8::465", 40465)).await.unwrap();
    let tls = crate::tls::handshake(tcp, &pki.ca.pem())
        .await
        .expect("TLS handshake after the header");
    let mut io = BufReader::new(tls);
    assert_eq!(read_reply(&mut io).await, GREETING);
    for (line, want) in [
        ("EHLO client.test", "250-"),
        ("MAIL FROM:<a@example.org>", "250 "),
        ("RCPT TO:<bob@example.com>", "250 "),
        ("DATA", "354 "),
    ] {
        io.get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        let r = read_reply(&mut io).await;
        assert!(r.starts_with(want), "{line}: {r}");
    }
    io.get_mut()
        .write_all(format!("{}.\r\n", message("over tls")).as_bytes())
        .await
        .unwrap();
    let done = read_reply(&mut io).await;
    assert!(done.starts_with("250 2.0.0 OK"), "{done}");

    let p = by_subject(&rx.wait_for(1, 10).await, "over tls");
    assert_client(&p, "2001:db8::465");
    assert_eq!(p["envelope"]["tls"]["version"], "TLSv1.3", "{p}");

    // A ClientHello where the header should be is not a header.
    let tcp = TcpStream::connect(smtps).await.unwrap();
    assert!(crate::tls::handshake(tcp, &pki.ca.pem()).await.is_err());
    app.stop().await;
}
