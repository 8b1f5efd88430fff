//! Outbound mail end to end: `POST /v1/messages` → spool → relay (a real
//! aiosmtpd on 127.0.0.1, `tests/smtp_server/server.py`) → `GET` status and
//! signed delivery events; `message.dead` for inbound webhooks; and a
//! SIGKILL of the real binary while relay attempts are in flight.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::aiosmtpd::{Smtpd, assert_mime_clean, data};
use crate::binary::{Launch, Postern};
use crate::helpers::*;

/// 32 characters, as `POSTERN_API_KEYS` wants at least 16.
const API_KEY: &str = "outbound-test-key-0123456789abcd";

/// Parses one message with Python's `email` package and describes it.
const PARSE_MESSAGE: &str = r#"
import email, email.policy, hashlib, json, sys
data = open(sys.argv[1], "rb").read()
msg = email.message_from_bytes(data, policy=email.policy.default)
defects = []
def tree(part):
    defects.extend(type(d).__name__ for d in part.defects)
    node = {"type": part.get_content_type()}
    if part.is_multipart():
        node["parts"] = [tree(p) for p in part.iter_parts()]
    else:
        payload = part.get_payload(decode=True) or b""
        node["disposition"] = part.get_content_disposition()
        node["filename"] = part.get_filename()
        node["content_id"] = part.get("Content-ID")
        node["sha256"] = hashlib.sha256(payload).hexdigest()
        if part.get_content_maintype() == "text":
            node["text"] = part.get_content()
    return node
lines = data.split(b"\r\n")
print(json.dumps({
    "tree": tree(msg),
    "defects": defects,
    "header_names": [k.lower() for k in msg.keys()],
    "subject": str(msg["subject"]),
    "from": str(msg["from"]),
    "to": str(msg["to"]),
    "cc": str(msg["cc"]),
    "message_id": str(msg["message-id"]),
    "date": msg["date"] is not None and msg["date"].datetime is not None,
    "max_line": max(len(l) for l in lines),
    "bare_line_ends": any(b"\n" in l or b"\r" in l for l in lines),
    "ends_with_crlf": data.endswith(b"\r\n"),
}))
"#;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Postern in-process (`spawn_app`) with a relay, an events receiver and a
/// catch-all inbound route (required outside development mode).
struct Setup {
    app: App,
    events: Receiver,
    hooks: Receiver,
    api: Api,
}

async fn setup(relay_port: Option<u16>, schedule: &str) -> Setup {
    let events = Receiver::start().await;
    let hooks = Receiver::start().await;
    let hook_url = hooks.url("/hook");
    let events_url = events.url("/events");
    let relay = relay_port.map(|p| format!("smtp://127.0.0.1:{p}?tls=none"));
    let mut vars = vec![
        ("POSTERN_WEBHOOK_URL", hook_url.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_EVENTS_URL", events_url.as_str()),
        ("POSTERN_API_KEYS", API_KEY),
        ("POSTERN_RETRY_SCHEDULE", schedule),
        ("POSTERN_RETRY_JITTER", "0"),
        ("POSTERN_HOSTNAME", "postern.test"),
    ];
    if let Some(r) = &relay {
        vars.push(("POSTERN_RELAY_URL", r.as_str()));
    }
    let app = spawn_app(&vars).await;
    let api = Api::new(app.http);
    Setup {
        app,
        events,
        hooks,
        api,
    }
}

/// A client of the HTTP API.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(addr: SocketAddr) -> Api {
        Api {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// `POST /v1/messages`; (status, JSON body).
    async fn post(&self, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Sends and expects `202 {"id", "status": "queued"}`; returns the id.
    async fn send(&self, body: &Value) -> String {
        let (status, resp) = self.post(body).await;
        assert_eq!(status, 202, "{resp}");
        assert_eq!(resp["status"], "queued", "{resp}");
        resp["id"].as_str().unwrap().to_string()
    }

    async fn status(&self, id: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/v1/messages/{id}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// Polls the status until `cond` holds (at most `secs`).
    async fn wait_status(&self, id: &str, secs: u64, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status(id).await;
            if cond(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("status of {id} did not reach the expected state in {secs}s: {s:#}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The events received so far, in order, as (hit, body).
fn events(rx: &Receiver) -> Vec<(Hit, Value)> {
    rx.hits()
        .into_iter()
        .map(|h| {
            let body = h.json();
            (h, body)
        })
        .collect()
}

fn of_type<'a>(events: &'a [(Hit, Value)], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(_, e)| e["type"] == kind)
        .map(|(_, e)| e)
        .collect()
}

/// Waits until the events received satisfy `cond` (at most `secs`).
async fn wait_events(
    rx: &Receiver,
    secs: u64,
    cond: impl Fn(&[(Hit, Value)]) -> bool,
) -> Vec<(Hit, Value)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = events(rx);
        if cond(&got) {
            return got;
        }
        if Instant::now() > deadline {
            let types: Vec<_> = got.iter().map(|(_, e)| e["type"].clone()).collect();
            panic!("events did not arrive in {secs}s; got {types:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every event is signed with the events secret (here the webhook secret)
/// and carries what the API was given.
fn check_relay_event(hit: &Hit, event: &Value, id: &str, request: &Value) {
    assert!(hit.verify(), "event signature does not verify: {event}");
    assert_eq!(hit.path, "/events");
    assert!(hit.header("webhook-id").starts_with("msg_"), "{hit:?}");
    assert_eq!(event["id"], id, "{event}");
    assert_eq!(event["tags"], request["tags"], "{event}");
    assert_eq!(event["metadata"], request["metadata"], "{event}");
    assert!(
        event["recipients"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(event["created_at"].is_string(), "{event}");
    assert!(
        event["message_id"]
            .as_str()
            .is_some_and(|m| m.contains('@')),
        "{event}"
    );
}

/// Addresses and statuses of an event's or a record's `recipients`.
fn rcpt_states(v: &Value) -> Vec<(String, String)> {
    v["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect()
}

fn simple_request(to: &[&str]) -> Value {
    json!({
        "from": "app@example.org",
        "to": to,
        "subject": "outbound test",
        "text": "hello\n",
        "tags": ["test", "outbound"],
        "metadata": {"user_id": 42, "plan": "pro"},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_receives_a_well_formed_mime_message() {
    let smtpd = Smtpd::start(0, &[]);
    let s = setup(Some(smtpd.port), "200ms").await;

    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"
        .iter()
        .copied()
        .chain((0..300u32).map(|i| (i * 13 % 256) as u8))
        .collect();
    let pdf: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let subject = "Grüße aus Köln — ✓ ünïcödé and a long-ish subject line to be encoded";
    let text = format!(
        "Hallo Bob,\n\nein Bericht.\n{}\n.\n..two dots\nEnde\n",
        "lange Zeile ".repeat(200)
    );
    let html = "<p>Grüße <img src=\"cid:logo@example.org\"></p>\n";
    let request = json!({
        "from": {"name": "Älice Sender", "address": "alice@example.org"},
        "to": ["Bob <bob@example.com>"],
        "cc": "carol@example.com",
        "bcc": "dave-hidden@example.net",
        "subject": subject,
        "text": text,
        "html": html,
        "attachments": [
            {"filename": "report.pdf", "content_type": "application/pdf", "content": b64(&pdf)},
            {"filename": "logo.png", "content_type": "image/png", "content": b64(&png),
             "content_id": "<logo@example.org>"},
        ],
        "tags": ["welcome"],
        "metadata": {"user_id": 42},
    });
    let id = s.api.send(&request).await;
    let status = s.api.wait_status(&id, 15, |v| v["status"] == "sent").await;
    assert_eq!(
        rcpt_states(&status),
        pairs(&[
            ("bob@example.com", "sent"),
            ("carol@example.com", "sent"),
            ("dave-hidden@example.net", "sent"),
        ])
    );
    assert_eq!(status["mail_from"], "alice@example.org");
    assert_eq!(status["attempts"].as_array().unwrap().len(), 1);

    // The envelope: MAIL FROM and every recipient, Bcc included, in one
    // transaction.
    let msgs = smtpd.messages();
    assert_mime_clean(&msgs);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["mail_from"], "alice@example.org");
    assert_eq!(
        msgs[0]["rcpt_tos"],
        json!([
            "bob@example.com",
            "carol@example.com",
            "dave-hidden@example.net"
        ])
    );
    assert_eq!(msgs[0]["helo"], "postern.test");

    // The bytes, as Python's email package sees them.
    let raw = data(&msgs[0]);
    assert!(
        !raw.windows(b"dave-hidden".len())
            .any(|w| w == b"dave-hidden"),
        "the Bcc address leaked into the message:\n{}",
        String::from_utf8_lossy(&raw)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, &raw).unwrap();
    let out = Command::new(python())
        .arg("-c")
        .arg(PARSE_MESSAGE)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = || String::from_utf8_lossy(&raw).into_owned();

    let tree = &parsed["tree"];
    let types = |v: &Value| -> Vec<Value> {
        v["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].clone())
            .collect()
    };
    assert_eq!(tree["type"], "multipart/mixed", "{}", shown());
    assert_eq!(
        types(tree),
        [json!("multipart/related"), json!("application/pdf")]
    );
    let related = &tree["parts"][0];
    assert_eq!(
        types(related),
        [json!("multipart/alternative"), json!("image/png")]
    );
    let alternative = &related["parts"][0];
    assert_eq!(
        types(alternative),
        [json!("text/plain"), json!("text/html")]
    );
    // Text parts are in canonical form (CRLF) once decoded.
    let decoded = |v: &Value| v["text"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(decoded(&alternative["parts"][0]), text);
    assert_eq!(decoded(&alternative["parts"][1]), html);
    let image = &related["parts"][1];
    assert_eq!(image["content_id"], "<logo@example.org>");
    assert_eq!(image["disposition"], "inline");
    assert_eq!(image["sha256"], sha256_hex(&png));
    let attachment = &tree["parts"][1];
    assert_eq!(attachment["disposition"], "attachment");
    assert_eq!(attachment["filename"], "report.pdf");
    assert_eq!(attachment["sha256"], sha256_hex(&pdf));

    assert_eq!(parsed["defects"], json!([]), "{}", shown());
    assert_eq!(parsed["subject"], subject);
    assert_eq!(parsed["from"], "Älice Sender <alice@example.org>");
    assert_eq!(parsed["to"], "Bob <bob@example.com>");
    assert_eq!(parsed["cc"], "carol@example.com");
    assert_eq!(
        parsed["message_id"],
        format!("<{}>", status["message_id"].as_str().unwrap())
    );
    assert_eq!(parsed["date"], true, "Date header missing or unparsable");
    let names = parsed["header_names"].as_array().unwrap();
    for want in ["message-id", "date", "mime-version", "received"] {
        assert!(names.contains(&json!(want)), "no {want}: {names:?}");
    }
    assert!(!names.contains(&json!("bcc")), "{names:?}");
    assert!(
        parsed["max_line"].as_u64().unwrap() <= 998,
        "a line is {} octets",
        parsed["max_line"]
    );
    assert_eq!(parsed["bare_line_ends"], false, "{}", shown());
    assert_eq!(parsed["ends_with_crlf"], true);

    let got = wait_events(&s.events, 10, |e| !of_type(e, "message.sent").is_empty()).await;
    let (hit, sent) = got
        .iter()
        .find(|(_, e)| e["type"] == "message.sent")
        .unwrap();
    check_relay_event(hit, sent, &id, &request);
    assert_eq!(sent["mail_from"], "alice@example.org");
    assert_eq!(rcpt_states(sent).len(), 3);
    assert!(s.hooks.hits().is_empty());
}

/// Decodes what the tests of encoded-word lookalikes need, with Python's
/// `email` (`policy=default`): every header name in the message and its
/// parts, the decoded subject, extra headers, display names and filename.
/// A value that fails to decode is reported as `error: …`.
const DECODE_TEXT: &str = r#"
import email, email.policy, json, sys
msg = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
def get(f):
    try:
        return f()
    except Exception as e:
        return "error: %s: %s" % (type(e).__name__, e)
names = []
for part in msg.walk():
    names.extend(k.lower() for k in part.keys())
attachments = list(msg.iter_attachments())
print(json.dumps({
    "names": names,
    "subject": get(lambda: str(msg["subject"])),
    "x_note": get(lambda: str(msg["x-note"])),
    "x_mixed": get(lambda: str(msg["x-mixed"])),
    "from_name": get(lambda: msg["from"].addresses[0].display_name),
    "to_names": get(lambda: [a.display_name for a in msg["to"].addresses]),
    "cc_name": get(lambda: msg["cc"].addresses[0].display_name),
    "filenames": get(lambda: [a.get_filename() for a in attachments]),
    "name_params": get(lambda: [a["content-type"].params.get("name") for a in attachments]),
}))
"#;

/// Text from the API that looks like RFC 2047 encoded words reaches the
/// relay encoded so that an independent decoder (Python's `email`) gives
/// back exactly the characters sent, and never a CR LF or a header of its
/// own (issue 9 item 6). Before, it was written verbatim and the decoder
/// turned `=0D=0A` into a line break and `X-Injected: yes` into a header
/// line.
#[tokio::test(flavor = "multi_thread")]
async fn encoded_word_lookalikes_reach_the_relay_as_text() {
    let smtpd = Smtpd::start(0, &[]);
    let s = setup(Some(smtpd.port), "200ms").await;
    let evil = "=?utf-8?q?a=0D=0AX-Injected:_yes?=";
    let mixed = format!("Grüße {evil} and =?utf-8?B?DQpYLUluamVjdGVkOiB5ZXM=?= end");
    let long = format!("{} {evil}", "a long subject ".repeat(12));
    // Display names stay within one encoded word (45 bytes): Python puts a
    // space between adjacent encoded words of a display name (RFC 2047
    // 6.2 says to drop it), which is about long names, not lookalikes.
    let short_mixed = "Grüße =?utf-8?Q?=0D=0A?= ✓";
    let request = json!({
        "from": {"name": evil, "address": "alice@example.org"},
        "to": [
            {"name": format!("pre{evil}post"), "address": "bob@example.com"},
            format!("\"{evil}, quoted\" <carol@example.com>"),
        ],
        "cc": {"name": short_mixed, "address": "dave@example.com"},
        "subject": long,
        "headers": {"X-Note": evil, "X-Mixed": mixed},
        "text": "body",
        "attachments": [
            {"filename": format!("{evil}.txt"), "content_type": "text/plain", "content": b64(b"one")},
            {"filename": format!("Grüße-{evil}"), "content": b64(b"two")},
        ],
    });
    let id = s.api.send(&request).await;
    s.api.wait_status(&id, 15, |v| v["status"] == "sent").await;
    let msgs = smtpd.messages();
    assert_mime_clean(&msgs);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let raw = data(&msgs[0]);
    let shown = String::from_utf8_lossy(&raw).into_owned();
    assert!(
        !shown.contains(evil) && !shown.contains("=0D=0A"),
        "a lookalike was written verbatim:\n{shown}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, &raw).unwrap();
    let got = python_json(DECODE_TEXT, &[path.to_str().unwrap()], 30).await;
    let names = got["names"].as_array().unwrap();
    assert!(
        !names.iter().any(|n| n == "x-injected"),
        "{names:?}\n{shown}"
    );
    assert_eq!(got["subject"], long, "{shown}");
    assert_eq!(got["x_note"], evil, "{shown}");
    assert_eq!(got["x_mixed"], mixed.as_str(), "{shown}");
    assert_eq!(got["from_name"], evil, "{shown}");
    assert_eq!(
        got["to_names"],
        json!([format!("pre{evil}post"), format!("{evil}, quoted")]),
        "{shown}"
    );
    assert_eq!(got["cc_name"], short_mixed, "{shown}");
    let filenames = json!([format!("{evil}.txt"), format!("Grüße-{evil}")]);
    assert_eq!(got["filenames"], filenames, "{shown}");
    assert_eq!(got["name_params"], filenames, "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_down_defers_then_sends_once_it_is_up() {
    let port = free_port();
    let schedule = vec!["300ms"; 40].join(",");
    let s = setup(Some(port), &schedule).await;
    let request = simple_request(&["bob@example.com", "carol@example.com"]);
    let id = s.api.send(&request).await;

    let status = s
        .api
        .wait_status(&id, 10, |v| v["status"] == "deferred")
        .await;
    assert_eq!(
        rcpt_states(&status),
        pairs(&[
            ("bob@example.com", "pending"),
            ("carol@example.com", "pending")
        ])
    );
    for r in status["recipients"].as_array().unwrap() {
        let reply = r["reply"].as_str().unwrap();
        assert!(reply.starts_with("cannot talk to the relay"), "{reply}");
    }
    let first = &status["attempts"][0];
    assert_eq!(first["outcomes"], json!(["deferred", "deferred"]));

    let smtpd = Smtpd::start(port, &[]);
    let status = s.api.wait_status(&id, 20, |v| v["status"] == "sent").await;
    assert_eq!(
        rcpt_states(&status),
        pairs(&[("bob@example.com", "sent"), ("carol@example.com", "sent")])
    );
    let attempts = status["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{status:#}");
    assert_eq!(
        attempts.last().unwrap()["outcomes"],
        json!(["sent", "sent"])
    );
    let msgs = smtpd.messages();
    assert_mime_clean(&msgs);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(
        msgs[0]["rcpt_tos"],
        json!(["bob@example.com", "carol@example.com"])
    );

    let got = wait_events(&s.events, 10, |e| !of_type(e, "message.sent").is_empty()).await;
    let first_deferred = got
        .iter()
        .position(|(_, e)| e["type"] == "message.deferred")
        .expect("a message.deferred event");
    let sent = got
        .iter()
        .position(|(_, e)| e["type"] == "message.sent")
        .unwrap();
    assert!(first_deferred < sent, "message.deferred after message.sent");
    for (hit, event) in &got {
        check_relay_event(hit, event, &id, &request);
    }
    let (_, deferred) = &got[first_deferred];
    assert_eq!(
        rcpt_states(deferred),
        pairs(&[
            ("bob@example.com", "pending"),
            ("carol@example.com", "pending")
        ])
    );
    assert_eq!(
        rcpt_states(&got[sent].1),
        pairs(&[("bob@example.com", "sent"), ("carol@example.com", "sent")])
    );
    assert_eq!(of_type(&got, "message.sent").len(), 1);
    assert_eq!(of_type(&got, "message.failed").len(), 0);
    // One deferred event per failed attempt.
    assert_eq!(of_type(&got, "message.deferred").len(), attempts.len() - 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_refused_recipient_of_three_fails_alone() {
    let smtpd = Smtpd::start(0, &[]);
    let s = setup(Some(smtpd.port), "200ms").await;
    let request = simple_request(&["ok1@example.com", "bad-x@example.com", "ok2@example.com"]);
    let id = s.api.send(&request).await;

    let status = s
        .api
        .wait_status(&id, 15, |v| v["status"] == "failed")
        .await;
    assert_eq!(
        rcpt_states(&status),
        pairs(&[
            ("ok1@example.com", "sent"),
            ("bad-x@example.com", "failed"),
            ("ok2@example.com", "sent"),
        ])
    );
    let rs = &status["recipients"];
    assert_eq!(
        rs[1]["reply"],
        "550 5.1.1 <bad-x@example.com>: Recipient address rejected"
    );
    assert!(
        rs[0]["reply"]
            .as_str()
            .unwrap()
            .starts_with("250 2.0.0 Ok: queued as Q")
    );
    assert_eq!(status["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(
        status["attempts"][0]["outcomes"],
        json!(["sent", "failed", "sent"])
    );

    let msgs = smtpd.messages();
    assert_mime_clean(&msgs);
    let rcpts: Vec<_> = msgs.iter().map(|m| m["rcpt_tos"].clone()).collect();
    assert_eq!(
        rcpts,
        [json!(["ok1@example.com"]), json!(["ok2@example.com"])]
    );

    let got = wait_events(&s.events, 10, |e| {
        !of_type(e, "message.sent").is_empty() && !of_type(e, "message.failed").is_empty()
    })
    .await;
    for (hit, event) in &got {
        check_relay_event(hit, event, &id, &request);
    }
    assert_eq!(got.len(), 2, "no message.deferred: {got:?}");
    assert_eq!(
        rcpt_states(of_type(&got, "message.sent")[0]),
        pairs(&[("ok1@example.com", "sent"), ("ok2@example.com", "sent")])
    );
    let failed = of_type(&got, "message.failed")[0];
    assert_eq!(
        rcpt_states(failed),
        pairs(&[("bad-x@example.com", "failed")])
    );
    assert_eq!(
        failed["recipients"][0]["reply"],
        "550 5.1.1 <bad-x@example.com>: Recipient address rejected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn greylisted_recipient_is_retried_alone_then_given_up() {
    let smtpd = Smtpd::start(0, &[]);
    let s = setup(Some(smtpd.port), "200ms,200ms,200ms").await;
    let request = simple_request(&["ok1@example.com", "later-x@example.com", "ok2@example.com"]);
    let id = s.api.send(&request).await;

    let early = s
        .api
        .wait_status(&id, 10, |v| v["status"] == "deferred")
        .await;
    assert_eq!(
        rcpt_states(&early),
        pairs(&[
            ("ok1@example.com", "sent"),
            ("later-x@example.com", "pending"),
            ("ok2@example.com", "sent"),
        ])
    );

    let status = s
        .api
        .wait_status(&id, 15, |v| v["status"] == "failed")
        .await;
    assert_eq!(
        rcpt_states(&status),
        pairs(&[
            ("ok1@example.com", "sent"),
            ("later-x@example.com", "failed"),
            ("ok2@example.com", "sent"),
        ])
    );
    assert_eq!(
        status["recipients"][1]["reply"],
        "gave up after 4 attempts: 451 4.3.0 <later-x@example.com>: Try again later"
    );
    let attempts = status["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{status:#}");
    assert_eq!(attempts[0]["outcomes"], json!(["sent", "deferred", "sent"]));
    for a in &attempts[1..] {
        assert_eq!(a["recipients"], json!(["later-x@example.com"]), "{a}");
        assert_eq!(a["outcomes"], json!(["deferred"]), "{a}");
    }

    // Three attempts deferred, the fourth gave up: /metrics says so (the
    // metrics are counted before the status record is written).
    let metrics = reqwest::get(format!("http://{}/metrics", s.app.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let relay_attempts = |outcome: &str| {
        sample(
            &metrics,
            &format!("postern_delivery_attempts_total{{kind=\"relay\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(relay_attempts("retry"), Some(3.0), "{metrics}");
    assert_eq!(relay_attempts("dead"), Some(1.0), "{metrics}");
    assert_eq!(relay_attempts("delivered"), None, "{metrics}");

    // The delivery is finished: nothing more reaches the relay, and the
    // recipients already sent were sent exactly once.
    let settled = smtpd.connections();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(smtpd.connections(), settled, "attempts after giving up");
    let msgs = smtpd.messages();
    assert_mime_clean(&msgs);
    let rcpts: Vec<_> = msgs.iter().map(|m| m["rcpt_tos"].clone()).collect();
    assert_eq!(
        rcpts,
        [json!(["ok1@example.com"]), json!(["ok2@example.com"])]
    );

    let got = wait_events(&s.events, 10, |e| {
        !of_type(e, "message.failed").is_empty() && of_type(e, "message.deferred").len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = {
        let later = events(&s.events);
        assert!(later.len() >= got.len());
        later
    };
    for (hit, event) in &got {
        check_relay_event(hit, event, &id, &request);
    }
    assert_eq!(of_type(&got, "message.sent").len(), 1);
    assert_eq!(
        rcpt_states(of_type(&got, "message.sent")[0]),
        pairs(&[("ok1@example.com", "sent"), ("ok2@example.com", "sent")])
    );
    let deferred = of_type(&got, "message.deferred");
    assert_eq!(deferred.len(), 3, "one per attempt before the last");
    for d in deferred {
        assert_eq!(rcpt_states(d), pairs(&[("later-x@example.com", "pending")]));
    }
    let failed = of_type(&got, "message.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        rcpt_states(failed[0]),
        pairs(&[("later-x@example.com", "failed")])
    );
    assert!(
        failed[0]["recipients"][0]["reply"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 4 attempts: 451")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_relay_defers_everyone_until_it_recovers() {
    let busy = Smtpd::start(0, &["--busy"]);
    let port = busy.port;
    let schedule = vec!["250ms"; 40].join(",");
    let s = setup(Some(port), &schedule).await;
    let request = simple_request(&["a1@example.com", "a2@example.com", "a3@example.com"]);
    let id = s.api.send(&request).await;

    let status = s
        .api
        .wait_status(&id, 10, |v| v["status"] == "deferred")
        .await;
    for r in status["recipients"].as_array().unwrap() {
        assert_eq!(r["status"], "pending", "{r}");
        assert!(
            r["reply"]
                .as_str()
                .unwrap()
                .starts_with("421 4.3.2 Service busy"),
            "{r}"
        );
    }
    // Retried: each attempt is a new connection (lettre drops a connection
    // after an error); none is split per recipient (421 concerns everyone).
    wait_until(
        10,
        || format!("{} connections", busy.connections()),
        || busy.connections() >= 3,
    )
    .await;
    let status = s.api.status(&id).await;
    let attempts = status["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{status:#}");
    for a in attempts {
        assert_eq!(a["outcomes"], json!(["deferred", "deferred", "deferred"]));
    }
    assert!(busy.messages().is_empty());
    busy.kill();

    let smtpd = Smtpd::start(port, &[]);
    let status = s.api.wait_status(&id, 20, |v| v["status"] == "sent").await;
    assert_eq!(
        rcpt_states(&status),
        pairs(&[
            ("a1@example.com", "sent"),
            ("a2@example.com", "sent"),
            ("a3@example.com", "sent"),
        ])
    );
    let msgs = smtpd.messages();
    assert_mime_clean(&msgs);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(
        msgs[0]["rcpt_tos"],
        json!(["a1@example.com", "a2@example.com", "a3@example.com"])
    );

    let got = wait_events(&s.events, 10, |e| !of_type(e, "message.sent").is_empty()).await;
    for (hit, event) in &got {
        check_relay_event(hit, event, &id, &request);
    }
    let first_deferred = got
        .iter()
        .position(|(_, e)| e["type"] == "message.deferred")
        .expect("message.deferred");
    let sent = got
        .iter()
        .position(|(_, e)| e["type"] == "message.sent")
        .unwrap();
    assert!(first_deferred < sent);
    assert_eq!(rcpt_states(&got[sent].1).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_inbound_webhook_emits_a_signed_message_dead_event() {
    let s = setup(None, "200ms").await;
    s.hooks.script(&[(410, None)]);

    let (mut c, _) = Smtp::connect(s.app.smtp).await;
    assert!(c.cmd("EHLO client.test").await.starts_with("250"));
    let reply = c
        .send_mail(
            "sender@example.org",
            &["inbox@example.com"],
            "Subject: dead\r\n\r\nbody\r\n",
        )
        .await;
    let queue_id = queue_id(&reply);
    c.cmd("QUIT").await;

    let got = wait_events(&s.events, 10, |e| !of_type(e, "message.dead").is_empty()).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (hit, dead) = &got[0];
    assert!(hit.verify(), "message.dead is not signed with the secret");
    assert_eq!(hit.path, "/events");
    assert_eq!(dead["type"], "message.dead");
    assert_eq!(dead["id"], queue_id.as_str());
    assert_eq!(dead["endpoint"], s.hooks.url("/hook"));
    assert_eq!(dead["recipients"], json!(["inbox@example.com"]));
    assert_eq!(dead["mail_from"], "sender@example.org");
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["reason"], "endpoint answered 410");
    assert_eq!(s.hooks.hits().len(), 1, "a 410 is not retried");
}

/// The real binary for the SIGKILL test, relaying through `relay`, with
/// retries an hour apart (nothing is retried within a test).
/// The first recipient of each message the relay received, sorted.
fn first_rcpts(smtpd: &Smtpd) -> Vec<String> {
    let mut rcpts: Vec<String> = smtpd
        .messages()
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    rcpts.sort();
    rcpts
}

async fn start_binary(spool: &Path, relay: &str, hook: &str, events: &str, log: &Path) -> Postern {
    Launch {
        domain: "outbound.test",
        spool,
        log,
        env: &[
            ("POSTERN_WEBHOOK_URL", hook),
            ("POSTERN_EVENTS_URL", events),
            ("POSTERN_API_KEYS", API_KEY),
            ("POSTERN_RELAY_URL", relay),
            ("POSTERN_RETRY_SCHEDULE", "1h"),
        ],
    }
    .start()
    .await
}

/// A message not tried yet has no status file: its `queued` status comes
/// from the pending message, with every field a stored record has. One
/// worker, held by a relay that never greets, keeps the second message
/// waiting for its first attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_not_tried_yet_is_queued_with_its_fields() {
    let silent = Silent::start().await;
    let spool = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let relay = format!("smtp://127.0.0.1:{}?tls=none", silent.port);
    let server = Launch {
        domain: "outbound.test",
        spool: spool.path(),
        log: &log,
        env: &[
            ("POSTERN_API_KEYS", API_KEY),
            ("POSTERN_RELAY_URL", &relay),
            ("POSTERN_DELIVERY_CONCURRENCY", "1"),
        ],
    }
    .start()
    .await;
    let api = Api::new(server.http);
    let first = api.send(&simple_request(&["a@example.com"])).await;
    api.wait_status(&first, 10, |v| v["status"] == "sending")
        .await;
    let second = api
        .send(&simple_request(&["b@example.com", "c@example.com"]))
        .await;
    for _ in 0..5 {
        let got = api.status(&second).await;
        assert_eq!(got["status"], "queued", "{got:#}");
        assert_eq!(got["id"], second.as_str());
        assert_eq!(got["direction"], "outbound");
        assert_eq!(got["mail_from"], "app@example.org");
        assert_eq!(got["created_at"], got["updated_at"]);
        assert!(
            got["created_at"].as_str().unwrap().ends_with('Z'),
            "{got:#}"
        );
        assert!(got["message_id"].as_str().unwrap().contains('@'), "{got:#}");
        assert_eq!(
            got["recipients"],
            json!([
                {"address": "b@example.com", "status": "pending", "reply": null},
                {"address": "c@example.com", "status": "pending", "reply": null},
            ]),
            "{got:#}"
        );
        assert_eq!(got["attempts"], json!([]));
        assert_eq!(got["tags"], json!(["test", "outbound"]));
        assert_eq!(got["metadata"], json!({"user_id": 42, "plan": "pro"}));
        assert_eq!(got["deliveries"].as_array().unwrap().len(), 1, "{got:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No status record before the first attempt: the records log (where
    // status records go, their keys in plain text) never saw this id.
    let mut records = 0;
    for entry in std::fs::read_dir(spool.path().join("records")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        records += 1;
        assert!(
            !bytes.windows(second.len()).any(|w| w == second.as_bytes()),
            "a status record before the first attempt"
        );
    }
    assert!(records > 0, "the records log is where it should be");
    assert!(!spool.path().join(format!("outbox/{second}.json")).exists());
    drop(server);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_with_relay_attempts_in_flight_then_restart_sends_all() {
    // A "relay" that accepts connections and never says a word: every
    // attempt stays in flight (lettre waits for the greeting), so nothing
    // about them is on disk but the 202-acknowledged messages.
    let silent = Silent::start().await;

    let events = Receiver::start().await;
    let hooks = Receiver::start().await;
    let spool = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let (hook_url, events_url) = (hooks.url("/hook"), events.url("/events"));
    let first = start_binary(
        spool.path(),
        &format!("smtp://127.0.0.1:{}?tls=none", silent.port),
        &hook_url,
        &events_url,
        &log,
    )
    .await;
    let api = Api::new(first.http);
    let mut ids = Vec::new();
    for i in 0..5 {
        let to = format!("r{i}@example.com");
        ids.push(api.send(&simple_request(&[to.as_str()])).await);
    }
    // Every attempt has started and is stuck waiting for the greeting.
    for id in &ids {
        api.wait_status(id, 10, |v| v["status"] == "sending").await;
    }
    wait_until(
        10,
        || format!("{} connections", silent.accepted()),
        || silent.accepted() >= 1,
    )
    .await;
    let states = std::fs::read_dir(spool.path().join("state"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(states, 0, "an attempt in flight wrote a state");
    first.kill9();
    drop(silent);

    let smtpd = Smtpd::start(0, &[]);
    let second = start_binary(
        spool.path(),
        &format!("smtp://127.0.0.1:{}?tls=none", smtpd.port),
        &hook_url,
        &events_url,
        &log,
    )
    .await;
    let api = Api::new(second.http);
    for id in &ids {
        let status = api.wait_status(id, 20, |v| v["status"] == "sent").await;
        assert_eq!(
            status["attempts"].as_array().unwrap().len(),
            1,
            "the killed attempt is not recorded: {status:#}"
        );
    }
    assert_mime_clean(&smtpd.messages());
    let rcpts = first_rcpts(&smtpd);
    let want: Vec<String> = (0..5).map(|i| format!("r{i}@example.com")).collect();
    assert_eq!(rcpts, want, "each message exactly once");

    let got = wait_events(&events, 10, |e| of_type(e, "message.sent").len() >= 5).await;
    let mut sent_ids: Vec<String> = got
        .iter()
        .filter(|(_, e)| e["type"] == "message.sent")
        .map(|(h, e)| {
            assert!(h.verify());
            e["id"].as_str().unwrap().to_string()
        })
        .collect();
    sent_ids.sort();
    let mut want_ids = ids.clone();
    want_ids.sort();
    assert_eq!(sent_ids, want_ids);
    assert!(hooks.hits().is_empty());
}

/// Status records are in the records log (`records/`): one that `GET`
/// showed as `sent` was written before it was shown, and the restart reads
/// it back, so a `kill -9` right after never takes it back; every message
/// ends `sent`. (A kill keeps the page cache; against power loss the
/// records writer answers only after its `fdatasync`, like the message
/// log's.)
#[tokio::test(flavor = "multi_thread")]
async fn a_status_seen_sent_survives_sigkill() {
    let smtpd = Smtpd::start(0, &[]);
    let events = Receiver::start().await;
    let hooks = Receiver::start().await;
    let spool = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("postern.log");
    let relay = format!("smtp://127.0.0.1:{}?tls=none", smtpd.port);
    let (hook_url, events_url) = (hooks.url("/hook"), events.url("/events"));
    let first = start_binary(spool.path(), &relay, &hook_url, &events_url, &log).await;
    let api = Api::new(first.http);
    let mut ids = Vec::new();
    for i in 0..30 {
        let to = format!("r{i}@example.com");
        ids.push(api.send(&simple_request(&[to.as_str()])).await);
    }
    // Kill as soon as some are sent, while others may still be in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen_sent = loop {
        let mut sent = Vec::new();
        for id in &ids {
            if api.status(id).await["status"] == "sent" {
                sent.push(id.clone());
            }
        }
        if sent.len() >= 10 || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    first.kill9();
    assert!(seen_sent.len() >= 10, "only {} sent", seen_sent.len());
    assert!(
        std::fs::read_dir(spool.path().join("records"))
            .unwrap()
            .count()
            >= 1,
        "the records log is where it should be"
    );
    assert_eq!(
        std::fs::read_dir(spool.path().join("outbox"))
            .unwrap()
            .count(),
        0,
        "no status file per message"
    );

    let second = start_binary(spool.path(), &relay, &hook_url, &events_url, &log).await;
    let api = Api::new(second.http);
    for id in &seen_sent {
        let status = api.status(id).await;
        assert_eq!(status["status"], "sent", "{status:#}");
        assert!(!status["attempts"].as_array().unwrap().is_empty());
    }
    for id in &ids {
        api.wait_status(id, 20, |v| v["status"] == "sent").await;
    }
    let mut rcpts = first_rcpts(&smtpd);
    rcpts.dedup();
    assert_eq!(rcpts.len(), 30, "every message reached the relay");
}
