//! Real SMTP client libraries against the in-process server: lettre (Rust)
//! and smtplib (Python), checked end to end through the webhook payload.

use std::time::Duration;

use base64::Engine as _;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::helpers::*;

fn lettre_transport(app: &App) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(app.smtp.port())
        .timeout(Some(Duration::from_secs(10)))
        .build()
}

/// The queue id from lettre's view of our `250 2.0.0 OK: queued as <id>`.
fn lettre_queue_id(response: &lettre::transport::smtp::response::Response) -> String {
    assert!(response.is_positive(), "{response:?}");
    assert_eq!(u16::from(response.code()), 250, "{response:?}");
    let line = response.first_line().expect("reply text");
    assert!(line.starts_with("2.0.0 OK: queued as "), "{line}");
    line.rsplit(' ').next().unwrap().to_string()
}

/// The hit whose payload has this Message-ID.
fn hit_for<'a>(hits: &'a [Hit], message_id: &str) -> &'a Hit {
    let found: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.json()["message_id"] == message_id)
        .collect();
    assert_eq!(found.len(), 1, "one webhook for {message_id}");
    found[0]
}

fn header_names(payload: &Value) -> Vec<String> {
    payload["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn lettre_alternative_with_attachment_and_three_recipients() {
    let (app, rx) = app_with_receiver(&[]).await;
    let mailer = lettre_transport(&app);

    // 1. text + html alternative, plus a binary attachment, to one recipient.
    let attachment: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let first = Message::builder()
        .from("Alice <alice@example.org>".parse().unwrap())
        .to("Bob <bob@example.com>".parse().unwrap())
        .subject("lettre alternative")
        .message_id(Some("<lettre-alt@clients.test>".into()))
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(
                    String::from("Hello from lettre, in text."),
                    String::from("<p>Hello from <b>lettre</b>, in HTML.</p>"),
                ))
                .singlepart(Attachment::new("report.bin".to_string()).body(
                    attachment.clone(),
                    ContentType::parse("application/octet-stream").unwrap(),
                )),
        )
        .unwrap();
    let id1 = lettre_queue_id(&mailer.send(first).await.expect("lettre send 1"));

    // 2. three envelope recipients (To, Cc, Bcc).
    let second = Message::builder()
        .from("alice@example.org".parse().unwrap())
        .to("bob@example.com".parse().unwrap())
        .cc("carol@example.com".parse().unwrap())
        .bcc("dave@example.net".parse().unwrap())
        .subject("lettre three")
        .message_id(Some("<lettre-three@clients.test>".into()))
        .header(ContentType::TEXT_PLAIN)
        .body(String::from("For three."))
        .unwrap();
    let id2 = lettre_queue_id(&mailer.send(second).await.expect("lettre send 2"));
    assert_ne!(id1, id2);

    let hits = rx.wait_for(2, 10).await;
    for h in &hits {
        assert!(h.verify(), "signature of {}", h.header("webhook-id"));
        assert_eq!(h.path, "/hook");
    }

    let h1 = hit_for(&hits, "lettre-alt@clients.test");
    assert_eq!(h1.header("webhook-id"), format!("msg_{id1}_0"));
    let p = h1.json();
    assert_eq!(p["id"], id1.as_str());
    assert_eq!(p["parse_error"], false);
    assert_eq!(p["subject"], "lettre alternative");
    assert_eq!(
        p["from"],
        json!([{"name": "Alice", "address": "alice@example.org"}])
    );
    assert_eq!(
        p["to"],
        json!([{"name": "Bob", "address": "bob@example.com"}])
    );
    assert_eq!(p["envelope"]["mail_from"], "alice@example.org");
    assert_eq!(p["envelope"]["rcpt_to"], json!(["bob@example.com"]));
    assert_eq!(
        p["text"].as_str().unwrap().trim_end(),
        "Hello from lettre, in text."
    );
    assert_eq!(
        p["html"].as_str().unwrap().trim_end(),
        "<p>Hello from <b>lettre</b>, in HTML.</p>"
    );
    let atts = p["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 1, "{atts:?}");
    let a = &atts[0];
    assert_eq!(a["filename"], "report.bin");
    assert_eq!(a["content_type"], "application/octet-stream");
    assert_eq!(a["disposition"], "attachment");
    assert_eq!(a["size"], attachment.len());
    let sha = sha2::Sha256::digest(&attachment);
    let sha_hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(a["sha256"], sha_hex.as_str());
    let content = base64::engine::general_purpose::STANDARD
        .decode(a["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(content, attachment);

    let h2 = hit_for(&hits, "lettre-three@clients.test");
    assert_eq!(h2.header("webhook-id"), format!("msg_{id2}_0"));
    let p = h2.json();
    assert_eq!(p["id"], id2.as_str());
    assert_eq!(p["subject"], "lettre three");
    assert_eq!(p["text"].as_str().unwrap().trim_end(), "For three.");
    let mut rcpts: Vec<&str> = p["envelope"]["rcpt_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["bob@example.com", "carol@example.com", "dave@example.net"]
    );
    // Bcc stays in the envelope only; our Received: names no recipient
    // when there are several.
    let names = header_names(&p);
    assert!(!names.contains(&"bcc".to_string()), "{names:?}");
    let received = payload_header(&p, "Received");
    assert!(received.contains(&id2), "{received}");
    assert!(!received.contains("for <"), "{received}");

    app.stop().await;
}

/// Runs a Python script (`-c`) with the SMTP port as argv[1]; returns its
/// stdout parsed as JSON.
async fn run_python(script: &str, port: u16) -> Value {
    python_json(script, &[&port.to_string()], 30).await
}

const SMTPLIB_UTF8: &str = r#"
import json, smtplib, sys
from email.message import EmailMessage

port = int(sys.argv[1])
out = {}
with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as s:
    code, _ = s.ehlo()
    out["ehlo"] = code
    out["features"] = sorted(s.esmtp_features)
    out["size"] = s.esmtp_features.get("size")
    # ASCII envelope: SMTPUTF8 and 8BITMIME asked for explicitly; the
    # subject goes RFC 2047-encoded, the body as 8bit.
    m = EmailMessage()
    m["From"] = "alice@example.org"
    m["To"] = "bob@example.com"
    m["Subject"] = "Grüße ☕"
    m["Message-ID"] = "<py-utf8-ascii@clients.test>"
    m.set_content("Grüße ☕\n")
    out["cte"] = m["Content-Transfer-Encoding"]
    out["refused_ascii"] = s.send_message(m, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    # UTF-8 sender: smtplib itself switches to SMTPUTF8 + BODY=8BITMIME and
    # sends raw UTF-8 headers.
    m = EmailMessage()
    m["From"] = "grüße@example.org"
    m["To"] = "bob@example.com"
    m["Subject"] = "Grüße ☕"
    m["Message-ID"] = "<py-utf8-intl@clients.test>"
    m.set_content("Grüße ☕\n")
    out["refused_intl"] = s.send_message(m)
print(json.dumps(out))
"#;

#[tokio::test]
async fn python_smtplib_utf8_subject_and_body() {
    let (app, rx) = app_with_receiver(&[]).await;
    let out = run_python(SMTPLIB_UTF8, app.smtp.port()).await;

    assert_eq!(out["ehlo"], 250);
    let features: Vec<&str> = out["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "size",
        "pipelining",
        "8bitmime",
        "smtputf8",
        "enhancedstatuscodes",
    ] {
        assert!(features.contains(&f), "EHLO lacks {f}: {features:?}");
    }
    assert_eq!(out["size"], "26214400");
    assert_eq!(out["cte"], "8bit", "the body really is 8bit");
    assert_eq!(out["refused_ascii"], json!({}));
    assert_eq!(out["refused_intl"], json!({}));

    let hits = rx.wait_for(2, 10).await;
    for (mid, from) in [
        ("py-utf8-ascii@clients.test", "alice@example.org"),
        ("py-utf8-intl@clients.test", "grüße@example.org"),
    ] {
        let h = hit_for(&hits, mid);
        assert!(h.verify(), "signature of {mid}");
        let p = h.json();
        assert_eq!(p["parse_error"], false, "{mid}");
        assert_eq!(p["subject"], "Grüße ☕", "{mid}");
        assert_eq!(p["text"].as_str().unwrap().trim_end(), "Grüße ☕", "{mid}");
        assert_eq!(p["envelope"]["mail_from"], from, "{mid}");
        assert_eq!(p["envelope"]["rcpt_to"], json!(["bob@example.com"]));
        assert_eq!(p["from"][0]["address"], from, "{mid}");
    }
    app.stop().await;
}

const SMTPLIB_REFUSED: &str = r#"
import json, smtplib, sys

port = int(sys.argv[1])
out = {}
msg = b"From: alice@example.org\r\nSubject: partly refused\r\nMessage-ID: <py-refused@clients.test>\r\n\r\nhello\r\n"
with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as s:
    refused = s.sendmail("alice@example.org", ["bob@example.com", "eve@elsewhere.test"], msg)
    out["refused"] = {k: [c, m.decode()] for k, (c, m) in refused.items()}
    # every recipient refused: smtplib raises, and sends no DATA
    try:
        s.sendmail("alice@example.org", ["mallory@elsewhere.test"], msg)
        out["all_refused"] = None
    except smtplib.SMTPRecipientsRefused as e:
        out["all_refused"] = {k: [c, m.decode()] for k, (c, m) in e.recipients.items()}
print(json.dumps(out))
"#;

#[tokio::test]
async fn python_smtplib_partly_refused_recipients() {
    let rx = Receiver::start().await;
    let routes = json!([{"match": "*@example.com", "url": rx.url("/hook")}]).to_string();
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let out = run_python(SMTPLIB_REFUSED, app.smtp.port()).await;

    let no_route = "5.1.1 Recipient address rejected: no route for this mailbox";
    assert_eq!(
        out["refused"],
        json!({"eve@elsewhere.test": [550, no_route]})
    );
    assert_eq!(
        out["all_refused"],
        json!({"mallory@elsewhere.test": [550, no_route]})
    );

    let hits = rx.wait_for(1, 10).await;
    // Only the first message was sent; nothing else is coming.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.hits().len(), 1);
    let h = &hits[0];
    assert!(h.verify());
    let p = h.json();
    assert_eq!(p["message_id"], "py-refused@clients.test");
    assert_eq!(p["subject"], "partly refused");
    assert_eq!(p["envelope"]["rcpt_to"], json!(["bob@example.com"]));
    app.stop().await;
}
