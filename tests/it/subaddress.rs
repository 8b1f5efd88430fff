//! Subaddresses (RFC 5233) through real sessions and deliveries: exact
//! routes take `user+detail@x`, a route naming the detail wins, and each
//! payload splits its recipients in `envelope.rcpt_detail`.

use serde_json::json;

use crate::helpers::*;

async fn app(rx: &Receiver, extra: &[(&str, &str)]) -> App {
    let routes = json!([
        {"match": "bob@x.test", "url": rx.url("/bob")},
        {"match": "ann@x.test", "url": rx.url("/ann")},
        {"match": "ann+vip@x.test", "url": rx.url("/ann-vip")},
        {"match": "/^(?P<u>[^@]+)@re\\.test$/", "url": rx.url("/re?u={u}")}
    ])
    .to_string();
    let mut vars = vec![
        ("POSTERN_ROUTES", routes.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ];
    vars.extend_from_slice(extra);
    spawn_app(&vars).await
}

/// The RCPT replies for `rcpts`, in one transaction that is then reset.
async fn rcpt_replies(app: &App, rcpts: &[&str]) -> Vec<String> {
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    assert!(c.cmd("MAIL FROM:<a@b.test>").await.starts_with("250"));
    let mut out = Vec::new();
    for r in rcpts {
        out.push(c.cmd(&format!("RCPT TO:<{r}>")).await);
    }
    c.cmd("QUIT").await;
    out
}

const OK: &str = "250 2.1.5 Recipient OK";
const NO_ROUTE: &str = "550 5.1.1 Recipient address rejected: no route for this mailbox";

#[tokio::test]
async fn exact_routes_take_subaddresses_and_a_named_detail_wins() {
    let rx = Receiver::start().await;
    let app = app(&rx, &[]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail(
            "a@b.test",
            &[
                "bob+news@x.test",
                "Bob+Shop+2@X.test",
                "bob+@x.test",
                "ann+vip@x.test",
                "ann+other@x.test",
                "bob+news@re.test",
            ],
            "Subject: sub\r\n\r\nx\r\n",
        )
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let hits = rx.wait_for(4, 10).await;
    let mut got: Vec<(String, serde_json::Value, serde_json::Value)> = hits
        .iter()
        .map(|h| {
            let e = &h.json()["envelope"];
            (
                h.path.clone(),
                e["rcpt_to"].clone(),
                e["rcpt_detail"].clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let parts = |address: &str, user: &str, detail: Option<&str>, domain: &str| json!({"address": address, "user": user, "detail": detail, "domain": domain});
    assert_eq!(
        got,
        vec![
            (
                "/ann".into(),
                json!(["ann+other@x.test"]),
                json!([parts("ann+other@x.test", "ann", Some("other"), "x.test")])
            ),
            (
                "/ann-vip".into(),
                json!(["ann+vip@x.test"]),
                json!([parts("ann+vip@x.test", "ann", Some("vip"), "x.test")])
            ),
            (
                "/bob".into(),
                json!(["bob+news@x.test", "Bob+Shop+2@X.test", "bob+@x.test"]),
                json!([
                    parts("bob+news@x.test", "bob", Some("news"), "x.test"),
                    parts("Bob+Shop+2@X.test", "Bob", Some("Shop+2"), "X.test"),
                    parts("bob+@x.test", "bob", Some(""), "x.test"),
                ])
            ),
            // the regex saw the whole address
            (
                "/re?u=bob%2Bnews".into(),
                json!(["bob+news@re.test"]),
                json!([parts("bob+news@re.test", "bob", Some("news"), "re.test")])
            ),
        ]
    );
    assert!(hits.iter().all(|h| h.verify()));
}

#[tokio::test]
async fn addresses_that_are_not_subaddresses_need_their_own_route() {
    let rx = Receiver::start().await;
    let app = app(&rx, &[]).await;
    assert_eq!(
        rcpt_replies(
            &app,
            &[
                "bob@x.test",
                "+bob@x.test",
                "bob-news@x.test",
                "\"bob+a b\"@x.test"
            ]
        )
        .await,
        [OK, NO_ROUTE, NO_ROUTE, NO_ROUTE]
    );
}

#[tokio::test]
async fn the_delimiter_is_configurable_and_can_be_turned_off() {
    let rx = Receiver::start().await;
    let several = app(&rx, &[("POSTERN_RECIPIENT_DELIMITER", "-+")]).await;
    assert_eq!(
        rcpt_replies(
            &several,
            &["bob-news@x.test", "bob+news@x.test", "bob=n@x.test"]
        )
        .await,
        [OK, OK, NO_ROUTE]
    );
    let off = app(&rx, &[("POSTERN_RECIPIENT_DELIMITER", "")]).await;
    assert_eq!(
        rcpt_replies(&off, &["bob@x.test", "bob+news@x.test"]).await,
        [OK, NO_ROUTE]
    );
}

#[tokio::test]
async fn a_recipient_without_detail_has_a_null_detail() {
    let rx = Receiver::start().await;
    let app = app(&rx, &[("POSTERN_RECIPIENT_DELIMITER", "")]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail("a@b.test", &["bob@x.test"], "Subject: s\r\n\r\nx\r\n")
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let hits = rx.wait_for(1, 10).await;
    assert_eq!(
        hits[0].json()["envelope"]["rcpt_detail"],
        json!([{"address": "bob@x.test", "user": "bob", "detail": null, "domain": "x.test"}])
    );
}
