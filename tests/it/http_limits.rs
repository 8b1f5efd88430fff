//! The HTTP listener's limits, over raw sockets: a client that never
//! finishes its headers, idles on a kept-alive connection, trickles a
//! body, or opens more connections than the cap gets what the README
//! says, and the listener keeps serving everyone else.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::run;
use crate::helpers::spawn_app;

/// Everything the server sends until it closes the connection, or `None`
/// when it is still open after `secs` (the behaviour under test is that
/// it closes; the bound only keeps a failing test from hanging).
async fn until_closed(s: &mut TcpStream, secs: u64) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(secs), s.read_to_end(&mut got)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

/// One `GET /healthz` on a fresh connection; the status line.
async fn health(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = until_closed(&mut s, 10).await.expect("answer in time");
    text.lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn headers_that_never_end_and_idle_connections_are_closed() {
    let app = spawn_app(&[("POSTERN_HTTP_HEADER_TIMEOUT", "1s")]).await;
    // Half a request: the request line and one header, never the blank line.
    let mut half = TcpStream::connect(app.http).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // A connection that says nothing at all.
    let mut silent = TcpStream::connect(app.http).await.unwrap();
    // A kept-alive connection after one answered request.
    let mut kept = TcpStream::connect(app.http).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();

    let half = until_closed(&mut half, 15).await;
    let half = half.expect("a request whose headers never end is cut off");
    assert!(
        half.is_empty() || half.starts_with("HTTP/1.1 408"),
        "{half:?}"
    );
    assert!(
        until_closed(&mut silent, 15).await.is_some(),
        "a silent connection is closed"
    );
    let kept = until_closed(&mut kept, 15)
        .await
        .expect("an idle kept-alive connection is closed");
    assert!(kept.starts_with("HTTP/1.1 200"), "{kept:?}");
    assert_eq!(health(app.http).await, "HTTP/1.1 200 OK");
    app.stop().await;
}

/// Starts a `POST /v1/messages` declaring `len` bytes, sends a few and
/// then nothing.
async fn trickle(addr: SocketAddr, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer dev\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{\"from\""
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// What the server answers on `s` first.
async fn first_answer(s: &mut TcpStream) -> String {
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut answer))
        .await
        .expect("an answer before the client finishes its body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_returns_its_budget() {
    const MAX: usize = 1024 * 1024;
    let app = spawn_app(&[
        ("POSTERN_HTTP_BODY_TIMEOUT", "2s"),
        ("POSTERN_API_MAX_BYTES", "1M"),
    ])
    .await;
    // Two maximum-size bodies fill the API's memory budget (twice
    // POSTERN_API_MAX_BYTES) and then stall.
    let mut slow = vec![trickle(app.http, MAX).await, trickle(app.http, MAX).await];
    let client = reqwest::Client::new();
    let send = |body: String| {
        client
            .post(format!("http://{}/v1/messages", app.http))
            .bearer_auth("dev")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let big = format!(r#"{{"from": "{}"}}"#, "a".repeat(MAX - 20));
    let r = send(big.clone()).await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        503,
        "the stalled bodies hold the budget"
    );
    for s in &mut slow {
        let answer = first_answer(s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
    }
    // Their budget is free again: a request that needs all of one share
    // is taken (and refused only for its content, not with 503 busy).
    let r = send(big).await.unwrap();
    assert_eq!(r.status().as_u16(), 422, "{:?}", r.text().await);
    app.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_for_a_free_one() {
    let app = spawn_app(&[
        ("POSTERN_HTTP_MAX_CONNECTIONS", "2"),
        ("POSTERN_HTTP_HEADER_TIMEOUT", "30s"),
    ])
    .await;
    let idle1 = TcpStream::connect(app.http).await.unwrap();
    let idle2 = TcpStream::connect(app.http).await.unwrap();
    // Give the listener time to take both (accept is asynchronous).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = tokio::spawn(health(app.http));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(idle1);
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    drop(idle2);
    app.stop().await;
}

#[tokio::test]
async fn http_limits_are_validated() {
    let (code, out) = run(
        &[],
        &[
            ("POSTERN_HTTP_MAX_CONNECTIONS", "0".into()),
            ("POSTERN_HTTP_HEADER_TIMEOUT", "0s".into()),
            ("POSTERN_HTTP_BODY_TIMEOUT", "soon".into()),
        ],
    )
    .await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("POSTERN_HTTP_MAX_CONNECTIONS: must be between 1 and 1000000"),
        "{out}"
    );
    assert!(
        out.contains("POSTERN_HTTP_HEADER_TIMEOUT: must be at least 1s"),
        "{out}"
    );
    assert!(out.contains("POSTERN_HTTP_BODY_TIMEOUT"), "{out}");
}
