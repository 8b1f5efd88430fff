//! Routing through real deliveries: kinds of match, fan-out, splitting.

use serde_json::json;

use crate::helpers::*;

async fn routed_app(rx: &Receiver) -> App {
    let routes = json!([
        {"match": "support@example.com", "url": rx.url("/support")},
        {"match": "*@example.com", "url": rx.url("/all"), "continue": true},
        {"match": "/^(?P<user>[^+]+)\\+(?P<tag>.+)@example\\.com$/", "url": rx.url("/in/{user}?tag={tag}")},
        {"match": "*@catch.test", "url": rx.url("/catch")},
        {"match": "*", "url": rx.url("/other")}
    ])
    .to_string();
    spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await
}

async fn send(app: &App, to: &[&str]) {
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail("a@b.test", to, "Subject: route\r\n\r\nx\r\n")
        .await;
    assert!(r.starts_with("250 "), "{r}");
}

fn by_path(hits: &[Hit]) -> Vec<(String, serde_json::Value)> {
    let mut v: Vec<(String, serde_json::Value)> = hits
        .iter()
        .map(|h| (h.path.clone(), h.json()["envelope"]["rcpt_to"].clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test]
async fn each_kind_of_match() {
    let rx = Receiver::start().await;
    let app = routed_app(&rx).await;
    for (to, want_path) in [
        ("support@example.com", "/support"),
        ("x@catch.test", "/catch"),
        ("someone@else.test", "/other"),
    ] {
        let before = rx.hits().len();
        send(&app, &[to]).await;
        let hits = rx.wait_for(before + 1, 10).await;
        assert_eq!(hits[before].path, want_path, "{to}");
    }
}

#[tokio::test]
async fn regex_captures_fill_the_url_and_fan_out_continues() {
    let rx = Receiver::start().await;
    let app = routed_app(&rx).await;
    send(&app, &["bob+news@example.com"]).await;
    let hits = rx.wait_for(2, 10).await;
    assert_eq!(
        by_path(&hits),
        vec![
            ("/all".to_string(), json!(["bob+news@example.com"])),
            (
                "/in/bob?tag=news".to_string(),
                json!(["bob+news@example.com"])
            ),
        ]
    );
    assert!(hits.iter().all(|h| h.verify()));
    assert_ne!(hits[0].header("webhook-id"), hits[1].header("webhook-id"));
}

#[tokio::test]
async fn multi_recipient_message_is_split_per_endpoint() {
    let rx = Receiver::start().await;
    let app = routed_app(&rx).await;
    send(
        &app,
        &[
            "support@example.com",
            "carol@example.com",
            "dave@example.com",
            "x@catch.test",
        ],
    )
    .await;
    let hits = rx.wait_for(4, 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(rx.hits().len(), 4);
    // carol and dave match "*@example.com", which continues to "*"
    assert_eq!(
        by_path(&hits),
        vec![
            (
                "/all".to_string(),
                json!(["carol@example.com", "dave@example.com"])
            ),
            ("/catch".to_string(), json!(["x@catch.test"])),
            (
                "/other".to_string(),
                json!(["carol@example.com", "dave@example.com"])
            ),
            ("/support".to_string(), json!(["support@example.com"])),
        ]
    );
    // one message: the same id in every payload
    let ids: Vec<_> = hits.iter().map(|h| h.json()["id"].clone()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
}

/// Routes whose regex captures go into the URL path, one keeping the
/// quotes of a quoted local part, one stripping them.
async fn capture_app(rx: &Receiver) -> App {
    let routes = json!([
        {"match": "/^(?P<user>.+)@keep\\.test$/", "url": rx.url("/in/{user}/mail")},
        {"match": "/^\"?(?P<user>[^\"]+)\"?@strip\\.test$/", "url": rx.url("/in/{user}/mail")}
    ])
    .to_string();
    spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await
}

#[tokio::test]
async fn quoted_local_parts_stay_quoted_and_inside_the_path() {
    let rx = Receiver::start().await;
    let app = capture_app(&rx).await;
    // `".."` is a valid mailbox; unquoted, its capture was a dot segment
    // and the webhook went to the parent path (`/in/../mail` → `/mail`).
    send(&app, &["\"..\"@keep.test", "\"john doe\"@keep.test"]).await;
    let hits = rx.wait_for(2, 10).await;
    assert_eq!(
        by_path(&hits),
        vec![
            ("/in/%22..%22/mail".to_string(), json!(["\"..\"@keep.test"])),
            (
                "/in/%22john%20doe%22/mail".to_string(),
                json!(["\"john doe\"@keep.test"])
            ),
        ]
    );
}

#[tokio::test]
async fn captures_that_would_leave_their_path_segment_are_refused_at_rcpt() {
    let rx = Receiver::start().await;
    let app = capture_app(&rx).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("MAIL FROM:<a@b.test>").await.starts_with("250"));
    let refused = "550 5.1.3 Recipient address rejected: not usable in its route's webhook URL";
    for rcpt in [
        "\"..\"@strip.test",
        "\".\"@strip.test",
        "a/b@strip.test",
        "\"a\\\\b\"@strip.test",
    ] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).await, refused, "{rcpt}");
    }
    // A control character is not a mailbox, quoted or not.
    assert_eq!(
        c.cmd("RCPT TO:<\"a\u{1}b\"@keep.test>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(
        c.cmd("RCPT TO:<\"ok\"@strip.test>").await,
        "250 2.1.5 Recipient OK"
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: x\r\n\r\nx\r\n").await;
    assert!(c.cmd(".").await.starts_with("250"));
    let hits = rx.wait_for(1, 10).await;
    assert_eq!(hits[0].path, "/in/ok/mail");
    // The envelope keeps what the client sent, minus needless quotes.
    assert_eq!(
        hits[0].json()["envelope"]["rcpt_to"],
        json!(["ok@strip.test"])
    );
}
