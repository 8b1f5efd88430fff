//! `reply_text` end to end: reply fixtures (tests/fixtures/replies) sent
//! over SMTP to the real server, checked in the webhook the endpoint
//! receives against each fixture's `.expected.txt`.

use crate::helpers::*;

/// Plain and html-only, top-posted and inline, four clients, and one that
/// is not a reply (null).
const SENT: &[&str] = &[
    "gmail_en_top_plain",
    "gmail_de_inline_plain",
    "outlookweb_en_top_html",
    "thunderbird_it_inline_html",
    "ios_fr_top_plain",
    "not_a_reply_plain",
];

fn expected(name: &str) -> serde_json::Value {
    let text = String::from_utf8(fixture(&format!("replies/{name}.expected.txt"))).unwrap();
    match text.strip_suffix('\n').unwrap_or(&text) {
        "null" => serde_json::Value::Null,
        reply => reply.into(),
    }
}

#[tokio::test]
async fn webhooks_carry_the_reply_text() {
    let (app, rx) = app_with_receiver(&[]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let mut ids = Vec::new();
    for name in SENT {
        let raw = fixture(&format!("replies/{name}.eml"));
        let r = c
            .send_raw_mail("a@b.test", &["bob@example.com"], &raw)
            .await;
        assert!(r.starts_with("250 "), "{name}: {r}");
        ids.push(queue_id(&r));
    }
    let hits = rx.wait_for(SENT.len(), 20).await;
    for (name, id) in SENT.iter().zip(&ids) {
        let hit = hits
            .iter()
            .find(|h| h.json()["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{name}: no webhook for {id}"));
        assert!(hit.verify(), "{name}");
        let p = hit.json();
        assert_eq!(p["reply_text"], expected(name), "{name}");
        // The views stay whole: reply_text is an addition.
        let whole = p["text"]
            .as_str()
            .map_or_else(|| p["html"].as_str().unwrap().to_owned(), str::to_owned);
        assert!(
            whole.len() > p["reply_text"].as_str().unwrap_or("").len(),
            "{name}"
        );
    }
    app.stop().await;
}
