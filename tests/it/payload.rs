//! Real-world messages (tests/fixtures/*.eml) sent over SMTP, checked in
//! the payload the endpoint receives.

use base64::Engine;
use sha2::Digest;

use crate::helpers::*;

async fn deliver_fixture(name: &str, extra_route: &str) -> serde_json::Value {
    let rx = Receiver::start().await;
    let routes = format!(
        r#"[{{"match": "*", "url": "{}"{extra_route}}}]"#,
        rx.url("/h")
    );
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let raw = std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    c.cmd("MAIL FROM:<a@b.test>").await;
    c.cmd("RCPT TO:<bob@example.com>").await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    // dot-stuff like any client would
    let mut stuffed = Vec::new();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    if !stuffed.ends_with(b"\r\n") {
        stuffed.extend_from_slice(b"\r\n");
    }
    c.send(&stuffed).await;
    let r = c.cmd(".").await;
    assert!(r.starts_with("250 "), "{name}: {r}");
    let hit = rx.wait_for(1, 10).await.remove(0);
    assert!(hit.verify());
    hit.json()
}

#[tokio::test]
async fn multipart_alternative() {
    let p = deliver_fixture("multipart_alternative.eml", "").await;
    assert!(p["text"].as_str().unwrap().len() > 5);
    assert!(p["html"].as_str().unwrap().contains("<"));
    assert_eq!(p["attachments"], serde_json::json!([]));
    assert!(p.get("raw").is_none());
    assert_eq!(p["parse_error"], false);
}

#[tokio::test]
async fn attachments_carry_size_hash_and_content() {
    let p = deliver_fixture("attachments.eml", "").await;
    let atts = p["attachments"].as_array().unwrap();
    assert!(atts.len() >= 2);
    for a in atts {
        let content = base64::engine::general_purpose::STANDARD
            .decode(a["content"].as_str().unwrap())
            .unwrap();
        assert_eq!(a["size"].as_u64().unwrap() as usize, content.len());
        assert_eq!(
            a["sha256"].as_str().unwrap(),
            format!("{:x}", sha2::Sha256::digest(&content))
        );
        assert_eq!(a["disposition"], "attachment");
    }
}

#[tokio::test]
async fn large_attachments_can_be_left_out() {
    let p = deliver_fixture("attachments.eml", r#", "max_attachment_inline": 1"#).await;
    for a in p["attachments"].as_array().unwrap() {
        assert!(a["content"].is_null());
        assert!(a["size"].as_u64().unwrap() > 1);
    }
}

#[tokio::test]
async fn inline_image_with_content_id() {
    let p = deliver_fixture("inline_image.eml", "").await;
    let img = p["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["content_type"] == "image/png")
        .unwrap()
        .clone();
    assert_eq!(img["disposition"], "inline");
    assert_eq!(img["content_id"], "logo@x");
    assert!(p["html"].as_str().unwrap().contains("cid:logo@x"));
}

#[tokio::test]
async fn encoded_headers_are_decoded() {
    let p = deliver_fixture("encoded_headers.eml", "").await;
    assert!(
        p["subject"].as_str().unwrap().contains("Grüße"),
        "{}",
        p["subject"]
    );
    assert!(p["from"][0]["name"].as_str().is_some());
}

#[tokio::test]
async fn eight_bit_utf8_body() {
    let p = deliver_fixture("utf8_8bit.eml", "").await;
    assert!(!p["text"].as_str().unwrap().is_ascii());
}

#[tokio::test]
async fn broken_mime_is_delivered_with_raw() {
    let p = deliver_fixture("broken_mime.eml", r#", "raw": true"#).await;
    assert_raw_is_the_fixture(&p, "broken_mime.eml");
}

/// `raw` is the message as stored: our Received: header, then the fixture's
/// bytes, byte for byte.
fn assert_raw_is_the_fixture(p: &serde_json::Value, name: &str) {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(p["raw"].as_str().expect("raw present"))
        .unwrap();
    let original = std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(raw.starts_with(b"Received: "));
    assert!(raw.ends_with(&original) || raw.ends_with(&[original.as_slice(), b"\r\n"].concat()));
    assert_eq!(p["envelope"]["size"].as_u64().unwrap() as usize, raw.len());
}

/// Issue 9 item 7: Latin-1 header bytes without SMTPUTF8 (the client never
/// asks for it) used to arrive as U+FFFD with no way back to the bytes.
#[tokio::test]
async fn latin1_headers_are_decoded_and_the_original_bytes_kept() {
    let p = deliver_fixture("latin1_headers.eml", "").await;
    assert_eq!(p["subject"], "Grüße aus Köln");
    assert_eq!(payload_header(&p, "Subject"), "Grüße aus Köln");
    assert_eq!(
        p["from"],
        serde_json::json!([{"name": "Jörg Müller", "address": "joerg@example.de"}])
    );
    assert_eq!(p["to"][0]["name"], "Bäckerei Schäfer");
    assert_eq!(p["text"], "Schöne Grüße aus Köln,\r\nJörg\r\n");
    assert_eq!(p["parse_error"], false);
    assert_eq!(p["lossy"], true);
    let latin1 = |h: &str| {
        serde_json::json!({"kind": "header_8bit", "part": null, "header": h,
                           "charset": "iso-8859-1"})
    };
    assert_eq!(
        p["lossy_reasons"],
        serde_json::json!([latin1("From"), latin1("To"), latin1("Subject")])
    );
    // The route did not ask for raw: lossy decoding brings it anyway.
    assert_raw_is_the_fixture(&p, "latin1_headers.eml");
}

#[tokio::test]
async fn bytes_that_are_not_utf8_fall_back_to_windows_1252() {
    let p = deliver_fixture("cp1252_fallback.eml", "").await;
    assert_eq!(p["subject"], "“Angebot” für 100 €");
    assert_eq!(p["text"], "Unser “Angebot”: 100 €, gültig bis Freitag.\r\n");
    assert_eq!(p["attachments"][0]["filename"], "Preisliste März.txt");
    assert_eq!(p["lossy"], true);
    let kinds: Vec<(&str, &str)> = p["lossy_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["charset"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("header_8bit", "windows-1252"),
            ("body_charset", "windows-1252"),
            ("header_8bit", "windows-1252"),
            ("header_8bit", "windows-1252"),
        ]
    );
    assert_raw_is_the_fixture(&p, "cp1252_fallback.eml");
}

#[tokio::test]
async fn exact_messages_are_not_lossy() {
    for name in ["multipart_alternative.eml", "utf8_8bit.eml"] {
        let p = deliver_fixture(name, "").await;
        assert_eq!(p["lossy"], false, "{name}");
        assert_eq!(p["lossy_reasons"], serde_json::json!([]), "{name}");
        assert!(p.get("raw").is_none(), "{name}");
    }
}
