//! The sending API end to end: `POST /v1/messages` and
//! `GET /v1/messages/{id}` over real HTTP, relayed through real SMTP.
//!
//! The relay is Postern itself: app B receives over SMTP and hands every
//! message to a recording webhook receiver (with `raw` on), and app A, the
//! one under test, has `POSTERN_RELAY_URL` pointing at B's SMTP port. What B's
//! receiver gets is therefore exactly what the relay was handed.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// The configured API key (32 characters).
pub(crate) const KEY: &str = "postern-api-test-key-0123456789a";
/// A second configured key (its own idempotency scope).
const KEY2: &str = "postern-api-test-key-zyxwvutsrqp";
/// Well-formed but not configured.
const WRONG_KEY: &str = "postern-api-test-key-notthekey00";

/// The relay: a Postern whose one catch-all route (raw included) records
/// everything it receives over SMTP.
async fn relay_b() -> (App, Receiver) {
    relay_b_for("*").await
}

/// The relay, accepting only recipients that `matcher` routes (others get
/// `550 5.1.1` at RCPT).
async fn relay_b_for(matcher: &str) -> (App, Receiver) {
    let rx = Receiver::start().await;
    let routes = json!([{"match": matcher, "url": rx.url("/relayed"), "raw": true}]).to_string();
    let app = spawn_app(&[
        ("POSTERN_ROUTES", routes.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    (app, rx)
}

/// The vars of a sender A relaying to `relay_url` (its own inbound route goes to
/// `inbound`, which the tests never use).
fn sender_vars(inbound: &Receiver, relay: &App) -> Vec<(String, String)> {
    sender_vars_to(inbound, relay.smtp.port())
}

pub(crate) fn sender_vars_to(inbound: &Receiver, relay_port: u16) -> Vec<(String, String)> {
    vec![
        ("POSTERN_WEBHOOK_URL".into(), inbound.url("/inbound")),
        ("POSTERN_WEBHOOK_SECRET".into(), SECRET.into()),
        ("POSTERN_API_KEYS".into(), format!("{KEY},{KEY2}")),
        (
            "POSTERN_RELAY_URL".into(),
            format!("smtp://127.0.0.1:{relay_port}?tls=none"),
        ),
    ]
}

pub(crate) async fn spawn_vars(vars: &[(String, String)]) -> App {
    let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    spawn_app(&v).await
}

/// Relay B, and sender A relaying to it with `extra` vars.
pub(crate) struct Pair {
    pub(crate) a: App,
    _b: App,
    /// What B received (= what the relay got).
    pub(crate) rx: Receiver,
    _inbound: Receiver,
}

pub(crate) async fn pair(extra: &[(&str, &str)]) -> Pair {
    let (b, rx) = relay_b().await;
    let inbound = Receiver::start().await;
    let mut vars = sender_vars(&inbound, &b);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let a = spawn_vars(&vars).await;
    Pair {
        a,
        _b: b,
        rx,
        _inbound: inbound,
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn messages_url(app: &App) -> String {
    format!("http://{}/v1/messages", app.http)
}

/// POST /v1/messages with `key` (if any) and a raw body.
pub(crate) async fn post_raw(
    app: &App,
    key: Option<&str>,
    idem: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    post_to(app.http, key, idem, body).await
}

/// [`post_raw`] to the HTTP listener `http` (e.g. of the real binary).
pub(crate) async fn post_to(
    http: std::net::SocketAddr,
    key: Option<&str>,
    idem: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = client()
        .post(format!("http://{http}/v1/messages"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(i) = idem {
        req = req.header("Idempotency-Key", i);
    }
    req.send().await.unwrap()
}

pub(crate) async fn post(app: &App, body: &Value) -> reqwest::Response {
    post_raw(app, Some(KEY), None, body.to_string()).await
}

/// Status and JSON body of a response.
pub(crate) async fn parts(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text:?}"));
    (status, json)
}

/// Asserts an error response: status, exact code and field (message free).
pub(crate) async fn assert_error(
    resp: reqwest::Response,
    status: u16,
    code: &str,
    field: Option<&str>,
) {
    let (got, body) = parts(resp).await;
    assert_eq!(got, status, "{body}");
    let err = &body["error"];
    assert_eq!(err["code"], code, "{body}");
    assert_eq!(err["field"], json!(field), "{body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 1, "only `error`: {body}");
}

async fn get_status(app: &App, id: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}/{id}", messages_url(app)));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

/// Polls GET /v1/messages/{id} until its status is `want`.
async fn wait_status(app: &App, id: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = parts(get_status(app, id, Some(KEY)).await).await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A 202 `{"id", "status": "queued"}`; returns the id.
pub(crate) async fn accepted(resp: reqwest::Response) -> String {
    let (code, body) = parts(resp).await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(body, json!({"id": id, "status": "queued"}));
    id
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header_values<'a>(payload: &'a Value, name: &str) -> Vec<&'a str> {
    payload["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h["value"].as_str().unwrap())
        .collect()
}

fn raw_of(payload: &Value) -> Vec<u8> {
    STANDARD
        .decode(payload["raw"].as_str().expect("raw included"))
        .unwrap()
}

/// Waits `ms` and returns how many messages B got by then.
async fn settle(rx: &Receiver, ms: u64) -> usize {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    rx.hits().len()
}

/// A valid structured request.
pub(crate) fn simple(subject: &str) -> Value {
    json!({
        "from": "shop@example.com",
        "to": ["bob@example.com"],
        "subject": subject,
        "text": "hello",
    })
}

#[tokio::test]
async fn unauthorized_without_key_wrong_key_or_basic() {
    let p = pair(&[]).await;
    let body = simple("auth").to_string();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("wrong key", Some(format!("Bearer {WRONG_KEY}"))),
        ("basic", Some(format!("Basic {}", STANDARD.encode("u:p")))),
        ("basic with the key", Some(format!("Basic {KEY}"))),
        ("empty bearer", Some("Bearer ".into())),
    ];
    for (what, auth) in &cases {
        let mut req = client()
            .post(messages_url(&p.a))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
        assert_error(resp, 401, "unauthorized", None).await;
    }
    // GET is guarded too, before it says whether the id exists.
    let resp = get_status(&p.a, "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b", None).await;
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_error(resp, 401, "unauthorized", None).await;
    let resp = get_status(&p.a, "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b", Some(WRONG_KEY)).await;
    assert_error(resp, 401, "unauthorized", None).await;
    // Nothing was sent.
    assert_eq!(settle(&p.rx, 300).await, 0);
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_types_are_422() {
    let p = pair(&[]).await;
    let resp = post_raw(&p.a, Some(KEY), None, r#"{"from":"#).await;
    assert_error(resp, 400, "invalid_json", None).await;
    let resp = post_raw(&p.a, Some(KEY), None, "").await;
    assert_error(resp, 400, "invalid_json", None).await;
    for (body, field) in [
        (r#"{"to": 5}"#, Some("to")),
        (
            r#"{"from": "a@example.com", "to": "b@example.com", "text": ["x"]}"#,
            Some("text"),
        ),
        (
            r#"{"from": {"adress": "a@example.com"}, "to": "b@example.com", "text": "x"}"#,
            Some("from.adress"),
        ),
        (
            r#"{"from": "a@example.com", "to": "b@example.com", "text": "x", "unknown": 1}"#,
            Some("unknown"),
        ),
        ("[]", None),
    ] {
        let resp = post_raw(&p.a, Some(KEY), None, body).await;
        assert_error(resp, 422, "invalid_field", field).await;
    }
}

#[tokio::test]
async fn validation_errors_name_the_code_and_field() {
    let p = pair(&[]).await;
    let base = json!({
        "from": {"name": "Shop", "address": "shop@example.com"},
        "to": ["bob@example.com", "carol@example.com"],
        "subject": "valid",
        "text": "hello",
        "headers": {"X-Campaign": "spring"},
        "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content": "aGk="}],
    });
    let raw = STANDARD.encode("Subject: r\r\n\r\nbody\r\n");
    let envelope = json!({"mail_from": "a@example.com", "rcpt_to": ["b@example.com"]});
    type Edit = Box<dyn Fn(&mut Value)>;
    let set = |path: &'static str, v: Value| -> Edit {
        Box::new(move |b: &mut Value| {
            *b.pointer_mut(path).unwrap() = v.clone();
        })
    };
    let remove = |key: &'static str| -> Edit {
        Box::new(move |b: &mut Value| {
            b.as_object_mut().unwrap().remove(key);
        })
    };
    let header = |name: &'static str, value: &'static str| -> Edit {
        Box::new(move |b: &mut Value| {
            b["headers"] = json!({ name: value });
        })
    };
    let whole = |v: Value| -> Edit { Box::new(move |b: &mut Value| *b = v.clone()) };
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        ("missing from", remove("from"), "missing_field", "from"),
        ("no recipients", remove("to"), "no_recipients", "to"),
        (
            "empty recipient list",
            set("/to", json!([])),
            "no_recipients",
            "to",
        ),
        ("missing body", remove("text"), "missing_body", "text"),
        (
            "bad address in to[1]",
            set("/to/1", json!("not-an-address")),
            "invalid_address",
            "to[1]",
        ),
        (
            "bad sender address",
            set("/from/address", json!("shop@@example.com")),
            "invalid_address",
            "from.address",
        ),
        (
            "bad base64",
            set("/attachments/0/content", json!("%%% not base64 %%%")),
            "invalid_base64",
            "attachments[0].content",
        ),
        (
            "CRLF in subject",
            set("/subject", json!("Hi\r\nBcc: victim@example.net")),
            "header_injection",
            "subject",
        ),
        (
            "LF in subject",
            set("/subject", json!("Hi\nX-Evil: 1")),
            "header_injection",
            "subject",
        ),
        (
            "CRLF in a header value",
            header("X-Campaign", "spring\r\nBcc: victim@example.net"),
            "header_injection",
            "headers.X-Campaign",
        ),
        (
            "CRLF in a header name",
            header("X-Evil\r\nBcc", "victim@example.net"),
            "header_injection",
            "headers.X-Evil\\r\\nBcc",
        ),
        (
            "CRLF in a display name",
            set("/from/name", json!("Shop\r\nBcc: victim@example.net")),
            "header_injection",
            "from.name",
        ),
        (
            "CRLF in a name-addr string",
            set(
                "/to/0",
                json!("Bob\r\nBcc: x@example.net <bob@example.com>"),
            ),
            "header_injection",
            "to[0]",
        ),
        (
            "CRLF in an address",
            set(
                "/to/1",
                json!({"address": "carol@example.com\r\nBcc: victim@example.net"}),
            ),
            "header_injection",
            "to[1].address",
        ),
        (
            "CRLF in an attachment filename",
            set("/attachments/0/filename", json!("a.txt\r\nX-Evil: 1")),
            "header_injection",
            "attachments[0].filename",
        ),
        (
            "forbidden From",
            header("From", "evil@example.net"),
            "forbidden_header",
            "headers.From",
        ),
        (
            "forbidden Bcc",
            header("Bcc", "victim@example.net"),
            "forbidden_header",
            "headers.Bcc",
        ),
        (
            "forbidden Message-ID",
            header("Message-ID", "<x@example.net>"),
            "forbidden_header",
            "headers.Message-ID",
        ),
        (
            "forbidden Date",
            header("Date", "Mon, 1 Jan 2001 00:00:00 +0000"),
            "forbidden_header",
            "headers.Date",
        ),
        (
            "forbidden MIME-Version",
            header("MIME-Version", "1.0"),
            "forbidden_header",
            "headers.MIME-Version",
        ),
        (
            "forbidden Content-Type",
            header("Content-Type", "text/html"),
            "forbidden_header",
            "headers.Content-Type",
        ),
        (
            "forbidden, any case",
            header("bcc", "victim@example.net"),
            "forbidden_header",
            "headers.bcc",
        ),
        (
            "raw without envelope",
            whole(json!({ "raw": raw })),
            "missing_field",
            "envelope",
        ),
        (
            "raw with from",
            whole(json!({"raw": raw, "envelope": envelope, "from": "a@example.com"})),
            "conflicting_fields",
            "from",
        ),
        (
            "raw with text",
            whole(json!({"raw": raw, "envelope": envelope, "text": "x"})),
            "conflicting_fields",
            "text",
        ),
        (
            "bad raw base64",
            whole(json!({"raw": "not base64!", "envelope": envelope})),
            "invalid_base64",
            "raw",
        ),
        (
            "envelope without raw",
            Box::new(move |b: &mut Value| b["envelope"] = envelope.clone()),
            "conflicting_fields",
            "envelope",
        ),
    ];
    for (what, edit, code, field) in &cases {
        let mut body = base.clone();
        edit(&mut body);
        let (status, resp) = parts(post(&p.a, &body).await).await;
        assert_eq!(status, 422, "{what}: {resp}");
        assert_eq!(
            resp,
            json!({"error": {"code": code, "field": field, "message": resp["error"]["message"]}}),
            "{what}"
        );
        assert!(resp["error"]["message"].is_string(), "{what}: {resp}");
    }
    // The base itself is fine, and none of the refused ones went anywhere.
    accepted(post(&p.a, &base).await).await;
    p.rx.wait_for(1, 10).await;
    assert_eq!(settle(&p.rx, 300).await, 1);
}

#[tokio::test]
async fn body_over_api_max_bytes_is_413() {
    let p = pair(&[("POSTERN_API_MAX_BYTES", "1K")]).await;
    let mut body = simple("big");
    body["text"] = json!("x".repeat(2048));
    let resp = post(&p.a, &body).await;
    assert_error(resp, 413, "too_large", None).await;

    // Without a Content-Length (chunked), the limit holds while reading.
    let mut s = tokio::net::TcpStream::connect(p.a.http).await.unwrap();
    let chunk = body.to_string();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains(r#""code":"too_large""#), "{out}");

    // Just under the limit is fine.
    accepted(post(&p.a, &simple("small")).await).await;
    assert_eq!(p.rx.wait_for(1, 10).await.len(), 1);
}

#[tokio::test]
async fn structured_message_is_relayed_and_reported_sent() {
    let events = Receiver::start().await;
    let events_url = events.url("/events");
    let p = pair(&[("POSTERN_EVENTS_URL", events_url.as_str())]).await;
    let attachment = b"%PDF-1.4 not really a pdf\x00\x01\x02\xff".repeat(40);
    let logo = b"\x89PNG\r\n\x1a\n fake image bytes".to_vec();
    let text = "Hallo Bob,\nschöne Grüße ☕\nline 3";
    let html = r#"<p>Hallo <b>Bob</b></p><img src="cid:logo@shop.example" alt="logo">"#;
    let body = json!({
        "from": {"name": "Der Laden", "address": "shop@example.com"},
        "to": ["Bob <bob@example.com>"],
        "cc": "carol@example.com",
        "bcc": ["hidden@example.net"],
        "reply_to": "help@example.com",
        "subject": "Grüße ☕",
        "text": text,
        "html": html,
        "headers": {"X-Campaign": "spring-2026"},
        "attachments": [
            {"filename": "invoice.pdf", "content_type": "application/pdf",
             "content": STANDARD.encode(&attachment)},
            {"filename": "logo.png", "content_type": "image/png",
             "content": STANDARD.encode(&logo), "content_id": "<logo@shop.example>"},
        ],
        "tags": ["welcome"],
        "metadata": {"user": 42},
    });
    let id = accepted(post(&p.a, &body).await).await;

    let status = wait_status(&p.a, &id, "sent").await;
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["mail_from"], "shop@example.com");
    assert_eq!(status["tags"], json!(["welcome"]));
    assert_eq!(status["metadata"], json!({"user": 42}));
    let rcpts = status["recipients"].as_array().unwrap();
    let addrs: Vec<&str> = rcpts
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addrs,
        ["bob@example.com", "carol@example.com", "hidden@example.net"]
    );
    for r in rcpts {
        assert_eq!(r["status"], "sent", "{status}");
        assert!(r["reply"].as_str().unwrap().starts_with("250"), "{status}");
    }
    let attempts = status["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{status}");
    assert_eq!(attempts[0]["recipients"], json!(addrs));
    assert_eq!(attempts[0]["outcomes"], json!(["sent", "sent", "sent"]));
    assert!(
        attempts[0]["replies"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().starts_with("250")),
        "{status}"
    );
    let message_id = status["message_id"].as_str().unwrap().to_string();
    assert!(message_id.ends_with("@example.com"), "{message_id}");

    // What the relay got.
    let hits = p.rx.wait_for(1, 10).await;
    assert!(hits[0].verify());
    let m = hits[0].json();
    assert_eq!(m["envelope"]["mail_from"], "shop@example.com");
    assert_eq!(
        m["envelope"]["rcpt_to"],
        json!(["bob@example.com", "carol@example.com", "hidden@example.net"])
    );
    assert_eq!(m["subject"], "Grüße ☕");
    assert_eq!(m["message_id"], message_id.as_str());
    assert_eq!(
        m["from"],
        json!([{"name": "Der Laden", "address": "shop@example.com"}])
    );
    assert_eq!(
        m["to"],
        json!([{"name": "Bob", "address": "bob@example.com"}])
    );
    assert_eq!(m["cc"][0]["address"], "carol@example.com");
    assert_eq!(m["reply_to"][0]["address"], "help@example.com");
    let got_text = m["text"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(got_text.trim_end(), text);
    assert_eq!(m["html"].as_str().unwrap().trim_end(), html);
    assert_eq!(header_values(&m, "X-Campaign"), ["spring-2026"]);
    assert!(header_values(&m, "Bcc").is_empty(), "{}", m["headers"]);
    assert_eq!(header_values(&m, "MIME-Version"), ["1.0"]);
    assert_eq!(header_values(&m, "Date").len(), 1);
    let raw = String::from_utf8_lossy(&raw_of(&m)).into_owned();
    assert!(!raw.contains("hidden@example.net"), "Bcc leaked:\n{raw}");
    assert!(raw.contains(&format!("with HTTP id {id}")), "{raw}");

    let atts = m["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2, "{atts:?}");
    let pdf = atts
        .iter()
        .find(|a| a["filename"] == "invoice.pdf")
        .unwrap();
    assert_eq!(pdf["content_type"], "application/pdf");
    assert_eq!(pdf["size"], attachment.len());
    assert_eq!(pdf["sha256"], sha256_hex(&attachment));
    assert_eq!(pdf["disposition"], "attachment");
    assert_eq!(pdf["content_id"], Value::Null);
    let img = atts.iter().find(|a| a["filename"] == "logo.png").unwrap();
    assert_eq!(img["content_type"], "image/png");
    assert_eq!(img["size"], logo.len());
    assert_eq!(img["sha256"], sha256_hex(&logo));
    assert_eq!(img["disposition"], "inline");
    assert_eq!(img["content_id"], "logo@shop.example");

    // And the delivery event.
    let ev = events.wait_for(1, 10).await.remove(0);
    assert!(ev.verify());
    let ev = ev.json();
    assert_eq!(ev["type"], "message.sent");
    assert_eq!(ev["id"], id.as_str());
    assert_eq!(ev["message_id"], message_id.as_str());
    assert_eq!(ev["recipients"].as_array().unwrap().len(), 3);
    assert_eq!(settle(&p.rx, 300).await, 1);
}

#[tokio::test]
async fn raw_message_is_relayed_as_is() {
    let p = pair(&[]).await;
    let original = "From: Raw Sender <raw@example.org>\r\n\
        To: dest@example.com\r\n\
        Subject: Raw mode, preserved\r\n\
        Message-ID: <raw-1@example.org>\r\n\
        X-Raw: yes\r\n\
        \r\n\
        first line\r\n\
        .a line starting with a dot\r\n\
        .\r\n\
        last line\r\n";
    let body = json!({
        "raw": STANDARD.encode(original),
        "envelope": {"mail_from": "<bounce@example.org>",
                     "rcpt_to": ["dest@example.com", "other@example.net", "DEST@example.com"]},
    });
    let id = accepted(post(&p.a, &body).await).await;
    let status = wait_status(&p.a, &id, "sent").await;
    assert_eq!(status["message_id"], "raw-1@example.org");
    assert_eq!(status["mail_from"], "bounce@example.org");

    let m = p.rx.wait_for(1, 10).await[0].json();
    assert_eq!(m["subject"], "Raw mode, preserved");
    assert_eq!(m["message_id"], "raw-1@example.org");
    assert_eq!(m["envelope"]["mail_from"], "bounce@example.org");
    assert_eq!(
        m["envelope"]["rcpt_to"],
        json!(["dest@example.com", "other@example.net"])
    );
    assert_eq!(header_values(&m, "X-Raw"), ["yes"]);
    // Byte for byte, after the two Received headers (A's and B's).
    let raw = raw_of(&m);
    assert!(
        raw.ends_with(original.as_bytes()),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let prefix = String::from_utf8_lossy(&raw[..raw.len() - original.len()]).into_owned();
    assert_eq!(prefix.matches("Received: ").count(), 2, "{prefix}");
}

#[tokio::test]
async fn idempotency_key_replays_and_sends_once() {
    let p = pair(&[]).await;
    let body = simple("idempotent").to_string();
    let first = post_raw(&p.a, Some(KEY), Some("order-1"), body.clone()).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let id = accepted(first).await;
    let second = post_raw(&p.a, Some(KEY), Some("order-1"), body.clone()).await;
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(accepted(second).await, id);

    // Same key, other body: refused, and the original stands.
    let other = simple("something else").to_string();
    let resp = post_raw(&p.a, Some(KEY), Some("order-1"), other).await;
    assert_error(resp, 422, "idempotency_key_reused", Some("Idempotency-Key")).await;

    // Keys are per API key: the other key's "order-1" is a new request.
    let resp = post_raw(&p.a, Some(KEY2), Some("order-1"), body.clone()).await;
    let id2 = accepted(resp).await;
    assert_ne!(id2, id);

    // A different key is a new message.
    let resp = post_raw(&p.a, Some(KEY), Some("order-2"), body.clone()).await;
    let id3 = accepted(resp).await;
    assert_ne!(id3, id);

    p.rx.wait_for(3, 10).await;
    assert_eq!(settle(&p.rx, 1000).await, 3);
    let ids: Vec<String> =
        p.rx.hits()
            .iter()
            .map(|h| {
                let raw = String::from_utf8_lossy(&raw_of(&h.json())).into_owned();
                let at = raw.find("with HTTP id ").unwrap() + "with HTTP id ".len();
                raw[at..].split(';').next().unwrap().to_string()
            })
            .collect();
    for want in [&id, &id2, &id3] {
        assert_eq!(ids.iter().filter(|i| i == &want).count(), 1, "{ids:?}");
    }

    // A bad key value is a field error.
    let resp = post_raw(&p.a, Some(KEY), Some(&"k".repeat(256)), body).await;
    assert_error(
        resp,
        422,
        "invalid_idempotency_key",
        Some("Idempotency-Key"),
    )
    .await;
}

#[tokio::test]
async fn concurrent_retries_with_one_key_send_once() {
    let p = pair(&[]).await;
    let body = simple("concurrent").to_string();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (messages_url(&p.a), body.clone());
            tokio::spawn(async move {
                let resp = client()
                    .post(url)
                    .bearer_auth(KEY)
                    .header("Idempotency-Key", "burst")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                accepted(resp).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    p.rx.wait_for(1, 10).await;
    assert_eq!(settle(&p.rx, 1000).await, 1);
}

/// Relay B (and what it received), an inbound receiver, and the vars of a
/// sender A on a spool directory of its own, to start (and restart) with
/// [`spawn_vars`].
async fn restartable_sender() -> (
    App,
    Receiver,
    Receiver,
    tempfile::TempDir,
    Vec<(String, String)>,
) {
    let (b, rx) = relay_b().await;
    let inbound = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars = sender_vars(&inbound, &b);
    vars.push(("POSTERN_SPOOL_DIR".into(), dir.path().display().to_string()));
    (b, rx, inbound, dir, vars)
}

#[tokio::test]
async fn idempotency_key_survives_a_restart() {
    let (b, rx, _inbound, _dir, vars) = restartable_sender().await;
    let body = simple("restart").to_string();

    let a = spawn_vars(&vars).await;
    let id = accepted(post_raw(&a, Some(KEY), Some("restart-1"), body.clone()).await).await;
    wait_status(&a, &id, "sent").await;
    rx.wait_for(1, 10).await;
    a.stop().await;

    let a = spawn_vars(&vars).await;
    let resp = post_raw(&a, Some(KEY), Some("restart-1"), body).await;
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    assert_eq!(accepted(resp).await, id);
    let resp = post_raw(
        &a,
        Some(KEY),
        Some("restart-1"),
        simple("changed").to_string(),
    )
    .await;
    assert_error(resp, 422, "idempotency_key_reused", Some("Idempotency-Key")).await;
    // The status record survived too.
    let (code, status) = parts(get_status(&a, &id, Some(KEY)).await).await;
    assert_eq!(code, 200);
    assert_eq!(status["status"], "sent");
    assert_eq!(settle(&rx, 1000).await, 1);
    drop(b);
}

/// An Idempotency-Key that cannot be recorded fails the request before
/// the message is committed: never a 202 whose retry could send twice
/// (#12).
#[tokio::test]
async fn an_idempotency_record_that_cannot_be_written_sends_nothing() {
    let p = pair(&[]).await;
    // The record is written as tmp/idem-<name> first (then renamed): a
    // directory in its way makes that write fail, while reading records
    // still works. <name> is SHA-256(SHA-256(API key) || key).
    let mut scoped = Sha256::digest(KEY.as_bytes()).to_vec();
    scoped.extend_from_slice(b"k-1");
    let name = format!("idem-{}.json", sha256_hex(&scoped));
    std::fs::create_dir(p.a.spool.join("tmp").join(name)).unwrap();
    let resp = post_raw(&p.a, Some(KEY), Some("k-1"), simple("x").to_string()).await;
    assert_error(resp, 503, "unavailable", None).await;
    assert_eq!(spooled(&p.a.spool), 0);
    assert_eq!(settle(&p.rx, 500).await, 0);
    // Without a key the message still goes.
    accepted(post(&p.a, &simple("no key")).await).await;
    p.rx.wait_for(1, 10).await;
}

/// What a crash between the idempotency record and its message's commit
/// leaves (the record, no message, no status) is not trusted: the retry
/// sends the message, once (#12).
#[tokio::test]
async fn an_idempotency_record_without_its_message_is_not_replayed() {
    let (b, rx, _inbound, dir, vars) = restartable_sender().await;
    let body = simple("crash").to_string();

    let a = spawn_vars(&vars).await;
    let first = accepted(post_raw(&a, Some(KEY), Some("crash-1"), body.clone()).await).await;
    wait_status(&a, &first, "sent").await;
    rx.wait_for(1, 10).await;
    a.stop().await;
    // Make it as if the message had never been committed: its status
    // record (the only one in the records log) goes.
    std::fs::remove_dir_all(dir.path().join("records")).unwrap();
    assert_eq!(spooled(dir.path()), 0);
    assert_eq!(count(dir.path(), "idem"), 1);

    let a = spawn_vars(&vars).await;
    let resp = post_raw(&a, Some(KEY), Some("crash-1"), body.clone()).await;
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let second = accepted(resp).await;
    assert_ne!(second, first);
    rx.wait_for(2, 10).await;
    // Its record now stands: the next retry replays it.
    let resp = post_raw(&a, Some(KEY), Some("crash-1"), body).await;
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    assert_eq!(accepted(resp).await, second);
    assert_eq!(settle(&rx, 500).await, 2);
    drop(b);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let p = pair(&[]).await;
    for id in [
        "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b",
        "..%2F..%2Fetc%2Fpasswd",
        "..%2Fetc",
        "a.json",
        "%00",
    ] {
        let resp = get_status(&p.a, id, Some(KEY)).await;
        assert_error(resp, 404, "not_found", Some("id")).await;
    }
    // A path the router normalises away is still a JSON 404.
    let resp = get_status(&p.a, "../../etc/passwd", Some(KEY)).await;
    assert_error(resp, 404, "not_found", None).await;
}

#[tokio::test]
async fn no_relay_and_not_dev_mode_is_503() {
    let rx = Receiver::start().await;
    let url = rx.url("/inbound");
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_API_KEYS", KEY),
    ])
    .await;
    let resp = post(&app, &simple("nowhere")).await;
    assert_error(resp, 503, "relay_not_configured", None).await;
    // Authentication still comes first.
    let resp = post_raw(&app, None, None, simple("nowhere").to_string()).await;
    assert_error(resp, 401, "unauthorized", None).await;
}

/// The first message of the dev inbox on `http` (waits up to 15 s).
async fn first_in_dev_inbox(http: std::net::SocketAddr) -> Value {
    let inbox = format!("http://{http}/dev/inbox");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let v: Value = client()
            .get(&inbox)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(item) = v["messages"].as_array().and_then(|m| m.first()) {
            return item.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing in the dev inbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Development mode relays API mail to its own SMTP listener: on `[::1]`
/// that relay URL needs brackets (`smtp://[::1]:port`), or the binary
/// does not even start.
#[tokio::test]
async fn dev_mode_relays_to_an_ipv6_smtp_listener() {
    let smtp = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let spool = dir.path().join("spool");
    let launch = crate::binary::Launch {
        domain: "dev6.test",
        spool: &spool,
        log: &log,
        env: &[],
    };
    let p = launch.start_on((smtp, http)).await.unwrap();
    // HTTP is served only after the relay is built (which failed without
    // the brackets, and the binary exited).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while client()
        .get(format!("http://{http}/dev/inbox"))
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HTTP never came up:\n{}",
            crate::binary::log_tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = json!({"from": "app@example.org", "to": "someone@example.com",
        "subject": "over ipv6", "text": "hi"});
    accepted(post_to(http, Some("dev"), None, body.to_string()).await).await;
    let item = first_in_dev_inbox(http).await;
    assert_eq!(item["payload"]["subject"], "over ipv6");
    assert_eq!(item["payload"]["envelope"]["remote_ip"], "::1");
    // The relay is built after the SMTP listener greets: only now is the
    // line surely in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("smtp://[::1]:{}?tls=none", smtp.port())),
        "{text}"
    );
    p.terminate().await;
}

#[tokio::test]
async fn dev_mode_round_trip_through_the_dev_inbox() {
    let app = spawn_app(&[]).await;
    let body = json!({
        "from": "app@example.org",
        "to": "someone@example.com",
        "subject": "dev round trip ☕",
        "text": "hi from the API",
    });
    let resp = post_raw(&app, Some("dev"), None, body.to_string()).await;
    let id = accepted(resp).await;

    let item = first_in_dev_inbox(app.http).await;
    assert_eq!(item["verified"], true);
    let m = &item["payload"];
    assert_eq!(m["subject"], "dev round trip ☕");
    assert_eq!(m["envelope"]["mail_from"], "app@example.org");
    assert_eq!(m["envelope"]["rcpt_to"], json!(["someone@example.com"]));
    assert_eq!(m["text"].as_str().unwrap().trim_end(), "hi from the API");

    let resp = get_status(&app, &id, Some("dev")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, s) = parts(get_status(&app, &id, Some("dev")).await).await;
        if s["status"] == "sent" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Any other key is refused.
    let resp = post_raw(&app, Some(WRONG_KEY), None, body.to_string()).await;
    assert_error(resp, 401, "unauthorized", None).await;
}

#[tokio::test]
async fn dev_key_is_refused_once_api_keys_are_configured() {
    let app = spawn_app(&[("POSTERN_API_KEYS", KEY)]).await;
    let resp = post_raw(&app, Some("dev"), None, simple("x").to_string()).await;
    assert_error(resp, 401, "unauthorized", None).await;
    accepted(post(&app, &simple("configured key")).await).await;
}

#[tokio::test]
async fn refused_recipient_fails_alone() {
    let (b, rx) = relay_b_for("*@example.com").await;
    let inbound = Receiver::start().await;
    let events = Receiver::start().await;
    let mut vars = sender_vars(&inbound, &b);
    vars.push(("POSTERN_EVENTS_URL".into(), events.url("/events")));
    let a = spawn_vars(&vars).await;
    let body = json!({
        "from": "shop@example.com",
        "to": ["ok@example.com", "nobody@elsewhere.test"],
        "subject": "half",
        "text": "x",
    });
    let id = accepted(post(&a, &body).await).await;
    let status = wait_status(&a, &id, "failed").await;
    let r = status["recipients"].as_array().unwrap();
    assert_eq!(r[0]["address"], "ok@example.com");
    assert_eq!(r[0]["status"], "sent");
    assert!(
        r[0]["reply"].as_str().unwrap().starts_with("250"),
        "{status}"
    );
    assert_eq!(r[1]["address"], "nobody@elsewhere.test");
    assert_eq!(r[1]["status"], "failed");
    assert!(
        r[1]["reply"].as_str().unwrap().starts_with("550"),
        "{status}"
    );
    assert_eq!(status["attempts"][0]["outcomes"], json!(["sent", "failed"]));

    let m = rx.wait_for(1, 10).await[0].json();
    assert_eq!(m["envelope"]["rcpt_to"], json!(["ok@example.com"]));
    assert_eq!(m["subject"], "half");

    let evs: Vec<Value> = events
        .wait_for(2, 10)
        .await
        .iter()
        .map(|h| h.json())
        .collect();
    let of = |kind: &str| {
        evs.iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {evs:?}"))
    };
    assert_eq!(
        of("message.sent")["recipients"][0]["address"],
        "ok@example.com"
    );
    assert_eq!(
        of("message.failed")["recipients"][0]["address"],
        "nobody@elsewhere.test"
    );
    assert_eq!(settle(&rx, 300).await, 1);
}

/// A relay that answers the first connection `421` and then forwards to
/// `to`: the first attempt is deferred, the retry goes through.
async fn flaky_relay(to: std::net::SocketAddr) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut first, _) = listener.accept().await.unwrap();
        let _ = first
            .write_all(b"421 4.3.2 busy, try again later\r\n")
            .await;
        drop(first);
        loop {
            let (mut c, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut up = tokio::net::TcpStream::connect(to).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn deferred_then_sent_on_retry() {
    let (b, rx) = relay_b().await;
    let inbound = Receiver::start().await;
    let events = Receiver::start().await;
    let port = flaky_relay(b.smtp).await;
    let mut vars = sender_vars_to(&inbound, port);
    vars.extend([
        ("POSTERN_RETRY_SCHEDULE".into(), "1s".into()),
        ("POSTERN_RETRY_JITTER".into(), "0".into()),
        ("POSTERN_EVENTS_URL".into(), events.url("/events")),
    ]);
    let a = spawn_vars(&vars).await;
    let id = accepted(post(&a, &simple("retry")).await).await;

    let status = wait_status(&a, &id, "deferred").await;
    assert_eq!(status["recipients"][0]["status"], "pending");
    assert!(
        status["recipients"][0]["reply"]
            .as_str()
            .unwrap()
            .starts_with("421"),
        "{status}"
    );
    assert_eq!(status["attempts"][0]["outcomes"], json!(["deferred"]));
    assert_eq!(rx.hits().len(), 0);

    let status = wait_status(&a, &id, "sent").await;
    let attempts = status["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{status}");
    assert_eq!(attempts[1]["outcomes"], json!(["sent"]));
    assert_eq!(rx.wait_for(1, 10).await[0].json()["subject"], "retry");

    let kinds: Vec<String> = events
        .wait_for(2, 10)
        .await
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["message.deferred", "message.sent"]);
    assert_eq!(settle(&rx, 300).await, 1);
}

#[tokio::test]
async fn relay_down_gives_up_after_the_schedule() {
    let inbound = Receiver::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut vars = sender_vars_to(&inbound, closed);
    vars.extend([
        ("POSTERN_RETRY_SCHEDULE".into(), "200ms".into()),
        ("POSTERN_RETRY_JITTER".into(), "0".into()),
    ]);
    let a = spawn_vars(&vars).await;
    let id = accepted(post(&a, &simple("nowhere")).await).await;
    let status = wait_status(&a, &id, "failed").await;
    let attempts = status["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{status}");
    assert_eq!(attempts[0]["outcomes"], json!(["deferred"]));
    assert_eq!(attempts[1]["outcomes"], json!(["deferred"]));
    let r = &status["recipients"][0];
    assert_eq!(r["status"], "failed");
    assert!(
        r["reply"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 2 attempts: "),
        "{status}"
    );
}
