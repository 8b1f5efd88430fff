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
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_raw_mail("a@b.test", &["bob@example.com"], &fixture(name))
        .await;
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
    let original = fixture(name);
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

/// `parts` as (section, content_type, body) triples.
fn parts(p: &serde_json::Value) -> Vec<(String, String, String)> {
    p["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let s = |k: &str| x[k].as_str().unwrap().to_string();
            (s("section"), s("content_type"), s("body"))
        })
        .collect()
}

fn triple(section: &str, content_type: &str, body: &str) -> (String, String, String) {
    (section.into(), content_type.into(), body.into())
}

/// Issue 10: the list footer after a multipart/alternative used to be
/// missing from the payload.
#[tokio::test]
async fn list_footer_is_in_both_views_and_in_parts() {
    let p = deliver_fixture("list_footer.eml", "").await;
    let footer = "_______________________________________________\r\n\
                  team mailing list -- team@lists.example.org\r\n\
                  To unsubscribe send an email to team-leave@lists.example.org\r\n";
    let plain = "We ship on Friday – please review the checklist.\r\n";
    let html = "<div dir=\"ltr\">We ship on Friday – please review the <b>checklist</b>.</div>\r\n";
    assert_eq!(p["text"], format!("{plain}{footer}"));
    assert_eq!(
        p["html"],
        format!("{html}<div style=\"white-space: pre-wrap\">{footer}</div>")
    );
    assert_eq!(
        parts(&p),
        [
            triple("1.1", "text/plain", plain),
            triple("1.2", "text/html", html),
            triple("2", "text/plain", footer),
        ]
    );
    assert_eq!(p["parts"][2]["disposition"], "inline");
    assert_eq!(p["parts"][2]["charset"], "us-ascii");
    assert_eq!(p["parts"][0]["disposition"], serde_json::Value::Null);
    assert_eq!(p["attachments"], serde_json::json!([]));
    assert_eq!(p["lossy"], false);
}

#[tokio::test]
async fn digest_keeps_masthead_topics_footer_and_articles() {
    let p = deliver_fixture("digest.eml", "").await;
    let text = p["text"].as_str().unwrap();
    for piece in [
        "Send Python-list mailing list submissions to",
        "   2. Packaging question (Ben)\r\n",
        "https://lists.example.org/mailman/listinfo/python-list\r\n",
    ] {
        assert!(text.contains(piece), "{piece:?} in {text:?}");
    }
    let sections: Vec<String> = parts(&p).into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(sections, ["1", "2", "4"]);
    assert_eq!(p["html"], serde_json::Value::Null);
    // The articles are messages: attachments with their raw bytes.
    let atts = p["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    for (a, (section, line)) in atts.iter().zip([
        ("3.1", "Use loop.add_signal_handler()."),
        ("3.2", "Which build backend"),
    ]) {
        assert_eq!(a["section"], section);
        assert_eq!(a["content_type"], "message/rfc822");
        let article = base64::engine::general_purpose::STANDARD
            .decode(a["content"].as_str().unwrap())
            .unwrap();
        let article = String::from_utf8(article).unwrap();
        assert!(article.contains(line), "{article}");
    }
}

/// Apple Mail's "text, image, text": the html alternative is two html parts
/// around an inline image.
#[tokio::test]
async fn text_image_text_keeps_both_texts_and_places_the_image() {
    let p = deliver_fixture("apple_text_image_text.eml", "").await;
    let first = "<html><head></head><body>Here is the view from the top:<br><br></body></html>";
    let second = "<html><head></head><body><br>And this is where we had lunch.</body></html>";
    assert_eq!(p["html"], format!("{first}\r\n{second}"));
    assert!(
        p["text"]
            .as_str()
            .unwrap()
            .ends_with("And this is where we had lunch.\r\n")
    );
    let sections: Vec<String> = parts(&p).into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(sections, ["1", "2.1", "2.3"]);
    let image = &p["attachments"][0];
    assert_eq!(image["section"], "2.2");
    assert_eq!(image["disposition"], "inline");
    assert_eq!(image["filename"], "IMG_0042.png");

    let p = deliver_fixture("text_image_text.eml", "").await;
    assert_eq!(p["text"], "Before the picture: café.\r\nAfter the picture.");
    assert_eq!(p["html"], serde_json::Value::Null);
    assert_eq!(p["attachments"][0]["section"], "2");
}

#[tokio::test]
async fn several_plain_bodies_each_in_its_own_charset() {
    let p = deliver_fixture("multiple_plain.eml", "").await;
    assert_eq!(
        p["text"],
        "Grüße aus Köln.\r\nПривет из Москвы.\n東京からこんにちは。\n"
    );
    let charsets: Vec<&str> = p["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["charset"].as_str().unwrap())
        .collect();
    assert_eq!(charsets, ["iso-8859-1", "koi8-r", "shift_jis"]);
    assert_eq!(p["lossy"], false);
}

/// `Content-Type: text`, part headers without their blank line, base64
/// that is not, and base64 without padding.
#[tokio::test]
async fn sloppy_mime_is_recovered_and_flagged() {
    let p = deliver_fixture("sloppy_mime.eml", "").await;
    assert_eq!(
        parts(&p),
        [
            triple(
                "1",
                "text/plain",
                "A part whose Content-Type has no subtype."
            ),
            triple(
                "2",
                "text/plain",
                "This body follows its headers without a blank line.\r\nIt has two lines."
            ),
            triple("3", "text/plain", "!!!this is not base64***"),
        ]
    );
    let att = &p["attachments"][0];
    assert_eq!(att["filename"], "abcd.bin");
    assert_eq!(att["section"], "4");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(att["content"].as_str().unwrap())
            .unwrap(),
        b"ABCD"
    );
    assert_eq!(p["lossy"], true);
    assert_eq!(
        p["lossy_reasons"],
        serde_json::json!([
            {"kind": "header_separator", "part": "2", "header": null, "charset": null},
            {"kind": "transfer_encoding", "part": "3",
             "header": "Content-Transfer-Encoding", "charset": null},
        ])
    );
    assert_raw_is_the_fixture(&p, "sloppy_mime.eml");
}

/// Behaviours that were better than the reference parsers: kept.
#[tokio::test]
async fn bounce_keeps_comment_names_and_the_null_sender() {
    let p = deliver_fixture("bounce_comments.eml", "").await;
    assert_eq!(
        p["from"],
        serde_json::json!([{"name": "MAILER DAEMON", "address": null}])
    );
    assert_eq!(
        p["to"],
        serde_json::json!([{"name": "John Doe", "address": "john@example.org"}])
    );
    assert!(
        p["text"]
            .as_str()
            .unwrap()
            .starts_with("This is the mail system")
    );
    let types: Vec<&str> = p["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["message/delivery-status", "text/rfc822-headers"]);

    // Parts behind a broken boundary are recovered.
    let p = deliver_fixture("broken_mime.eml", "").await;
    assert_eq!(
        p["text"],
        "This text must survive even though the MIME structure is broken.\r\n"
    );
    let names: Vec<&str> = p["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["filename"].as_str())
        .collect();
    assert_eq!(names, ["cut.bin"]);
}
