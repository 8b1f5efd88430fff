//! Per-element limits of `POST /v1/messages` and the memory budget of the
//! requests in flight, over real HTTP against the real server (issue 9
//! item 5). The limits themselves are documented in README.md ("Sending
//! mail") and docs/openapi.yaml.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::api::{
    KEY, accepted, assert_error, pair, parts, post, post_raw, sender_vars_to, simple, spawn_vars,
};
use crate::helpers::*;

/// A sender whose relay is a closed port: requests are answered (202 or an
/// error) and nothing is ever delivered. `extra`: more variables.
async fn sender(extra: &[(&str, &str)]) -> (App, Receiver) {
    let inbound = Receiver::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut vars = sender_vars_to(&inbound, closed);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    (spawn_vars(&vars).await, inbound)
}

/// `n` copies of `item`, as a JSON array.
fn list(n: usize, item: Value) -> Value {
    Value::Array(vec![item; n])
}

/// `{prefix0: value, prefix1: value, …}` with `n` keys.
fn object(n: usize, prefix: &str, value: Value) -> Value {
    Value::Object(
        (0..n)
            .map(|i| (format!("{prefix}{i}"), value.clone()))
            .collect(),
    )
}

/// `simple()` with `key` set to `value`.
fn with(key: &str, value: Value) -> Value {
    let mut body = simple("limits");
    body[key] = value;
    body
}

/// The message of an error response, which must state the limit.
async fn error_message(resp: reqwest::Response) -> (u16, String, String, String) {
    let (status, body) = parts(resp).await;
    let e = &body["error"];
    (
        status,
        e["code"].as_str().unwrap_or_default().to_string(),
        e["field"].as_str().unwrap_or_default().to_string(),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// The body that drove the server to 1.4 GB, at a tenth of its size: a
/// hundred thousand empty attachments. It is refused by count before any of
/// them is built (the memory this takes is measured in docs/BENCHMARKS.md,
/// not asserted here).
#[tokio::test]
async fn a_hundred_thousand_empty_attachments_are_422_attachments() {
    let (a, _inbound) = sender(&[]).await;
    let attachment = r#"{"filename":"a","content":""}"#;
    let body = format!(
        r#"{{"from":"a@example.com","to":"b@example.com","text":"x","attachments":[{}]}}"#,
        vec![attachment; 100_000].join(",")
    );
    let resp = post_raw(&a, Some(KEY), None, body).await;
    let (status, code, field, message) = error_message(resp).await;
    assert_eq!(
        (status, code.as_str(), field.as_str()),
        (422, "too_many", "attachments")
    );
    assert!(message.contains("at most 100 attachments"), "{message}");

    // A hundred is the limit, not more than it.
    let at_cap = with(
        "attachments",
        list(100, json!({"filename": "a", "content": ""})),
    );
    accepted(post(&a, &at_cap).await).await;
    let over = with(
        "attachments",
        list(101, json!({"filename": "a", "content": ""})),
    );
    assert_error(post(&a, &over).await, 422, "too_many", Some("attachments")).await;
}

/// `to` + `cc` + `bcc` share `POSTERN_MAX_RECIPIENTS` (here 5), the list
/// that crosses it is named, and a message at the cap is relayed in one
/// transaction with every recipient.
#[tokio::test]
async fn recipients_share_postern_max_recipients() {
    let p = pair(&[("POSTERN_MAX_RECIPIENTS", "5")]).await;
    let addr = |i: usize| json!(format!("r{i}@example.net"));
    let addrs = |from: usize, n: usize| Value::Array((from..from + n).map(addr).collect());

    let mut flood = simple("bcc flood");
    flood["bcc"] = addrs(0, 50_000);
    let (status, code, field, message) = error_message(post(&p.a, &flood).await).await;
    assert_eq!(
        (status, code.as_str(), field.as_str()),
        (422, "too_many", "bcc")
    );
    assert!(
        message.contains("at most 5 recipients") && message.contains("POSTERN_MAX_RECIPIENTS"),
        "{message}"
    );

    let mut mixed = simple("mixed");
    mixed["to"] = addrs(0, 2);
    mixed["cc"] = addrs(2, 2);
    mixed["bcc"] = addrs(4, 2);
    assert_error(post(&p.a, &mixed).await, 422, "too_many", Some("bcc")).await;
    mixed["bcc"] = json!([]);
    mixed["cc"] = addrs(2, 4);
    assert_error(post(&p.a, &mixed).await, 422, "too_many", Some("cc")).await;

    let reply_to = with("reply_to", addrs(0, 6));
    assert_error(
        post(&p.a, &reply_to).await,
        422,
        "too_many",
        Some("reply_to"),
    )
    .await;

    let raw = json!({
        "raw": "U3ViamVjdDogeA0KDQp4DQo=",
        "envelope": {"mail_from": "a@example.com", "rcpt_to": addrs(0, 6)},
    });
    assert_error(
        post(&p.a, &raw).await,
        422,
        "too_many",
        Some("envelope.rcpt_to"),
    )
    .await;

    // At the cap: accepted and relayed, all five in one transaction.
    let mut at_cap = simple("at the cap");
    at_cap["to"] = addrs(0, 3);
    at_cap["cc"] = addrs(3, 1);
    at_cap["bcc"] = addr(4);
    accepted(post(&p.a, &at_cap).await).await;
    let hits = p.rx.wait_for(1, 15).await;
    let rcpts = hits[0].json()["envelope"]["rcpt_to"].clone();
    assert_eq!(rcpts, addrs(0, 5), "{rcpts}");
    // Nothing refused went anywhere.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.rx.hits().len(), 1);
}

/// Headers, subject, tags and metadata: each cap refused one past it with
/// the field named, and accepted at it.
#[tokio::test]
async fn header_subject_tag_and_metadata_caps() {
    let (a, _inbound) = sender(&[]).await;
    let long = |n: usize| json!("v".repeat(n));
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "51 headers",
            with("headers", object(51, "X-H", json!("v"))),
            "too_many",
            "headers",
        ),
        (
            "a header value over 8192 bytes",
            with("headers", json!({"X-Long": "v".repeat(8193)})),
            "too_long",
            "headers.X-Long",
        ),
        (
            "a subject over 8192 bytes",
            with("subject", long(8193)),
            "too_long",
            "subject",
        ),
        (
            "21 tags",
            with("tags", list(21, json!("t"))),
            "too_many",
            "tags",
        ),
        (
            "a tag over 128 bytes",
            with("tags", json!(["ok", "t".repeat(129)])),
            "too_long",
            "tags[1]",
        ),
        (
            "51 metadata keys",
            with("metadata", object(51, "k", json!(1))),
            "too_many",
            "metadata",
        ),
        (
            "a metadata key over 64 bytes",
            with("metadata", json!({"k".repeat(65): 1})),
            "too_long",
            "metadata",
        ),
        (
            "a metadata value over 1024 bytes of JSON",
            with("metadata", json!({"order": {"lines": list(600, json!(1))}})),
            "too_long",
            "metadata.order",
        ),
    ];
    for (name, body, code, field) in cases {
        let (status, got_code, got_field, message) = error_message(post(&a, &body).await).await;
        assert_eq!(
            (status, got_code.as_str(), got_field.as_str()),
            (422, code, field),
            "{name}: {message}"
        );
        assert!(
            message.chars().any(|c| c.is_ascii_digit()),
            "{name}: the message states the limit: {message}"
        );
    }

    let mut at_caps = simple(&"s".repeat(8192));
    at_caps["headers"] = object(50, "X-H", long(8192));
    at_caps["tags"] = list(20, json!("t".repeat(128)));
    at_caps["metadata"] = object(50, &"k".repeat(62), long(1022));
    accepted(post(&a, &at_caps).await).await;
}

/// Attachments together, decoded, stay within `POSTERN_MAX_MESSAGE_SIZE`
/// (here 10 KiB), as does a decoded `raw` message.
#[tokio::test]
async fn attachments_and_raw_stay_within_the_message_size() {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let (a, _inbound) = sender(&[("POSTERN_MAX_MESSAGE_SIZE", "10K")]).await;
    let files = |sizes: &[usize]| {
        Value::Array(
            sizes
                .iter()
                .map(|&n| json!({"filename": "f.bin", "content": b64(n)}))
                .collect(),
        )
    };
    let over = with("attachments", files(&[6 * 1024, 4 * 1024 + 1]));
    let (status, code, field, message) = error_message(post(&a, &over).await).await;
    assert_eq!(
        (status, code.as_str(), field.as_str()),
        (422, "too_large", "attachments")
    );
    assert!(
        message.contains("10241") && message.contains("10240"),
        "{message}"
    );
    accepted(post(&a, &with("attachments", files(&[6 * 1024, 4 * 1024]))).await).await;

    let raw = |n: usize| json!({"raw": b64(n), "envelope": {"mail_from": "a@example.com", "rcpt_to": ["b@example.com"]}});
    assert_error(
        post(&a, &raw(10 * 1024 + 1)).await,
        422,
        "too_large",
        Some("raw"),
    )
    .await;
}

/// An upload held open after its headers: the server has reserved its
/// declared size once it answers `100 Continue` (hyper sends that when the
/// handler starts reading the body, after the reservation).
async fn hold_upload(app: &App, declared: usize) -> TcpStream {
    let mut s = TcpStream::connect(app.http).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(&mut s);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    s.write_all(b"{\"from\":").await.unwrap();
    s
}

/// A request body of about `bytes`.
fn sized(bytes: usize) -> Value {
    let mut body = simple("sized");
    body["text"] = json!("x".repeat(bytes));
    body
}

/// Requests in flight share a budget of 2 × `POSTERN_API_MAX_BYTES` (here
/// 2 MiB), reserved by declared size before the body is read. What does not
/// fit is `503 busy` (with its body read, so the client sees the answer)
/// while smaller requests still fit; the room comes back when an upload
/// ends, even one whose client went away.
#[tokio::test]
async fn requests_in_flight_share_a_memory_budget() {
    let (a, _inbound) = sender(&[("POSTERN_API_MAX_BYTES", "1M")]).await;
    // 1024 + 900 of the 2048 KiB: 124 KiB left.
    let hog1 = hold_upload(&a, 1024 * 1024).await;
    let hog2 = hold_upload(&a, 900 * 1024).await;

    let big = sized(300 * 1024);
    let resp = post(&a, &big).await;
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("30")
    );
    let (status, code, field, _) = error_message(resp).await;
    assert_eq!((status, code.as_str(), field.as_str()), (503, "busy", ""));
    accepted(post(&a, &sized(10 * 1024)).await).await;

    drop(hog1);
    drop(hog2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = parts(post(&a, &big).await).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the budget never came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
