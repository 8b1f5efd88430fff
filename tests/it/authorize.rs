//! `authorize_url`: the app decides each recipient at RCPT time, over a
//! real HTTP server: accept, refuse with its text, no decision, a hung
//! app, signatures, and the answer cache.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const OK: &str = "250 2.1.5 Recipient OK";
const LATER: &str = "451 4.3.0 Recipient cannot be verified now, try again later";

/// Mail for `*@x.test` goes to `hook`, each recipient asked at `authz`.
async fn app(hook: &Receiver, authz: &str, timeout: Option<&str>) -> App {
    let mut route = json!({"match": "*@x.test", "url": hook.url("/hook"), "authorize_url": authz});
    if let Some(t) = timeout {
        route["authorize_timeout"] = json!(t);
    }
    let routes = json!([route, {"match": "*@open.test", "url": hook.url("/open")}]).to_string();
    spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await
}

async fn session(app: &App) -> Smtp {
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    c
}

#[tokio::test]
async fn the_apps_answer_is_the_rcpt_reply() {
    let hook = Receiver::start().await;
    let authz = Receiver::start().await;
    authz.script_text(&[
        (200, ""),
        (404, "No such user:\r\n250 ann"),
        (403, ""),
        (503, "busy"),
    ]);
    let app = app(&hook, &authz.url("/authz"), None).await;
    let mut c = session(&app).await;
    assert!(
        c.cmd("MAIL FROM:<a@b.test> SIZE=1234")
            .await
            .starts_with("250")
    );
    let replies = [
        c.cmd("RCPT TO:<bob+tag@x.test>").await,
        c.cmd("RCPT TO:<ann@x.test>").await,
        c.cmd("RCPT TO:<carl@x.test>").await,
        c.cmd("RCPT TO:<dave@x.test>").await,
        // a route without authorize_url asks nobody
        c.cmd("RCPT TO:<eve@open.test>").await,
    ];
    assert_eq!(
        replies,
        [
            OK,
            "550 5.7.1 No such user: 250 ann",
            "550 5.7.1 Recipient refused",
            LATER,
            OK
        ]
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(b"Subject: x\r\n\r\nx\r\n").await;
    assert!(c.cmd(".").await.starts_with("250"));
    let hits = hook.wait_for(2, 10).await;
    let mut delivered: Vec<_> = hits
        .iter()
        .map(|h| h.json()["envelope"]["rcpt_to"].clone())
        .collect();
    delivered.sort_by_key(|v| v.to_string());
    assert_eq!(
        delivered,
        [json!(["bob+tag@x.test"]), json!(["eve@open.test"])]
    );

    let asked = authz.hits();
    assert_eq!(asked.len(), 4);
    assert!(
        asked.iter().all(|h| h.verify()),
        "signed with the route's secret"
    );
    assert!(asked.iter().all(|h| h.path == "/authz"));
    assert!(asked[0].header("webhook-id").starts_with("authz_"));
    assert_ne!(asked[0].header("webhook-id"), asked[1].header("webhook-id"));
    assert_eq!(
        asked[0].json(),
        json!({
            "type": "recipient.authorize",
            "mail_from": "a@b.test",
            "rcpt_to": "bob+tag@x.test",
            "rcpt_detail": {"address": "bob+tag@x.test", "user": "bob", "detail": "tag", "domain": "x.test"},
            "remote_ip": "127.0.0.1",
            "helo": "client.test",
            "tls": null,
            "authenticated_user": null,
            "size": 1234
        })
    );
    assert_eq!(asked[1].json()["rcpt_to"], "ann@x.test");
}

#[tokio::test]
async fn a_hung_app_costs_one_timeout_per_session() {
    let hook = Receiver::start().await;
    let hung = Endpoint::slow(Duration::from_secs(30));
    let app = app(&hook, &hung.url(), Some("300ms")).await;
    let mut c = session(&app).await;
    assert!(c.cmd("MAIL FROM:<a@b.test>").await.starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<bob@x.test>").await, LATER);
    // not asked again in this session: the answer is at once
    assert_eq!(c.cmd("RCPT TO:<ann@x.test>").await, LATER);
    assert_eq!(c.cmd("RCPT TO:<eve@open.test>").await, OK);
    assert_eq!(hung.hits().len(), 1);
    // a new session tries the app again
    let mut d = session(&app).await;
    assert!(d.cmd("MAIL FROM:<a@b.test>").await.starts_with("250"));
    assert_eq!(d.cmd("RCPT TO:<ann@x.test>").await, LATER);
    assert_eq!(hung.hits().len(), 2);
}

#[tokio::test]
async fn an_app_that_is_not_listening_defers_the_recipient() {
    let hook = Receiver::start().await;
    let closed = Endpoint::reserve();
    let app = app(&hook, &closed.url(), None).await;
    let mut c = session(&app).await;
    assert!(c.cmd("MAIL FROM:<a@b.test>").await.starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<bob@x.test>").await, LATER);
}

#[tokio::test]
async fn a_pipelined_burst_asks_once_per_distinct_request() {
    let hook = Receiver::start().await;
    let authz = Receiver::start().await;
    // bob, BOB and carl for a@b.test, bob for z@b.test
    authz.script_text(&[(200, ""), (200, ""), (200, ""), (404, "not for you")]);
    let app = app(&hook, &authz.url("/authz"), None).await;
    let mut c = session(&app).await;
    c.send(
        b"MAIL FROM:<a@b.test>\r\n\
          RCPT TO:<bob@x.test>\r\n\
          RCPT TO:<bob@x.test>\r\n\
          RCPT TO:<BOB@x.test>\r\n\
          RSET\r\n\
          MAIL FROM:<a@b.test>\r\n\
          RCPT TO:<bob@x.test>\r\n\
          RCPT TO:<carl@x.test>\r\n\
          RSET\r\n\
          MAIL FROM:<z@b.test>\r\n\
          RCPT TO:<bob@x.test>\r\n",
    )
    .await;
    let mut replies = Vec::new();
    for _ in 0..11 {
        replies.push(c.reply().await);
    }
    let rcpts: Vec<&str> = replies
        .iter()
        .filter(|r| !r.contains("2.1.0") && !r.contains("2.0.0"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        rcpts,
        [OK, OK, OK, OK, OK, "550 5.7.1 not for you"],
        "{replies:?}"
    );
    // `BOB` is another request (the app sees what the client sent); the
    // same request again is answered from the cache; another sender's is
    // asked, never given the first sender's answer.
    let asked: Vec<(String, String)> = authz
        .hits()
        .iter()
        .map(|h| {
            let j = h.json();
            (
                j["mail_from"].as_str().unwrap().to_string(),
                j["rcpt_to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        asked,
        [
            pair("a@b.test", "bob@x.test"),
            pair("a@b.test", "BOB@x.test"),
            pair("a@b.test", "carl@x.test"),
            pair("z@b.test", "bob@x.test"),
        ]
    );
}

#[tokio::test]
async fn the_cache_is_bounded() {
    use postern::smtp::authorize::CACHE_ENTRIES;
    let hook = Receiver::start().await;
    let authz = Receiver::start().await;
    let routes = json!([{"match": "*@x.test", "url": hook.url("/hook"), "authorize_url": authz.url("/authz")}])
        .to_string();
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_MAX_RECIPIENTS", "1000"),
    ])
    .await;
    let mut c = session(&app).await;
    // r0 is answered, then asked again from the cache: one request
    let first = "MAIL FROM:<a@b.test>\r\nRCPT TO:<r0@x.test>\r\nRCPT TO:<r0@x.test>\r\nRSET\r\n";
    c.send(first.as_bytes()).await;
    for _ in 0..4 {
        c.reply().await;
    }
    assert_eq!(authz.hits().len(), 1);
    // as many other recipients as the cache holds push r0 out
    for batch in 0..CACHE_ENTRIES / 1000 {
        let mut cmds = String::from("MAIL FROM:<a@b.test>\r\n");
        for i in 0..1000 {
            cmds.push_str(&format!("RCPT TO:<r{}@x.test>\r\n", 1 + batch * 1000 + i));
        }
        cmds.push_str("RSET\r\n");
        c.send(cmds.as_bytes()).await;
        for _ in 0..1002 {
            let r = c.reply().await;
            assert!(r.starts_with("250"), "{r}");
        }
    }
    assert_eq!(authz.hits().len(), 1 + CACHE_ENTRIES);
    assert!(c.cmd("MAIL FROM:<a@b.test>").await.starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<r0@x.test>").await, OK);
    assert_eq!(authz.hits().len(), 2 + CACHE_ENTRIES, "r0 was evicted");
}
