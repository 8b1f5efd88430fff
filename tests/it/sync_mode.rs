//! `"mode": "sync"`: the app's answer to the POST made during DATA is the
//! SMTP reply, over a real HTTP receiver and a real SMTP session: 2xx,
//! 4xx with and without a usable text, 5xx, a redirect, a hung app, no
//! app at all; sync and async routes in one message; the config checks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const LATER: &str = "451 4.3.0 Message cannot be delivered now, try again later";

/// Mail for `*@sync.test` goes to `sync` (sync mode, `timeout` when
/// given), for `*@async.test` to `/async` of `spooled`.
async fn app(sync: &str, timeout: Option<&str>, spooled: &Receiver) -> App {
    let mut route = json!({"match": "*@sync.test", "url": sync, "mode": "sync"});
    if let Some(t) = timeout {
        route["sync_timeout"] = json!(t);
    }
    let routes = json!([route, {"match": "*@async.test", "url": spooled.url("/async")}]);
    spawn_app(&[
        ("POSTERN_ROUTES", &routes.to_string()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await
}

async fn session(app: &App) -> Smtp {
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    c
}

fn mail(subject: &str) -> String {
    format!("Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\nhello\r\n")
}

fn rcpt_to(hit: &Hit) -> Value {
    hit.json()["envelope"]["rcpt_to"].clone()
}

#[tokio::test]
async fn the_apps_answer_is_the_reply_to_data() {
    let app_rx = Receiver::start().await;
    let spooled = Receiver::start().await;
    let long = format!("Refused: {}", "z".repeat(491));
    app_rx.script_text(&[(200, ""), (403, "No such\r\nuser\r\n250 OK\x07 here")]);
    app_rx.script_text(&[(422, &long)]);
    // 4xx without a text/plain body, 5xx, a redirect
    app_rx.script(&[(403, None), (500, None), (302, None)]);
    let app = app(&app_rx.url("/sync"), None, &spooled).await;
    let mut c = session(&app).await;

    let ok = c
        .send_mail("a@b.test", &["bob@sync.test"], &mail("m0"))
        .await;
    let id = queue_id(&ok);
    let mut replies = Vec::new();
    for i in 1..6 {
        replies.push(
            c.send_mail("a@b.test", &["bob@sync.test"], &mail(&format!("m{i}")))
                .await,
        );
    }
    assert_eq!(
        replies,
        [
            "550 5.7.1 No such user 250 OK here".to_string(),
            format!("550 5.7.1 {}", &long[..200]),
            "550 5.7.1 Message refused".into(),
            LATER.into(),
            LATER.into(),
        ]
    );

    // One POST per message, signed like every webhook, the v1 payload.
    let hits = app_rx.hits();
    assert_eq!(hits.len(), 6);
    assert!(hits.iter().all(|h| h.verify()), "signed with the secret");
    assert_eq!(hits[0].path, "/sync");
    assert_eq!(hits[0].header("webhook-id"), format!("msg_{id}_0"));
    let first = hits[0].json();
    assert_eq!(first["type"], "message.received");
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["subject"], "m0");
    assert_eq!(first["envelope"]["rcpt_to"], json!(["bob@sync.test"]));
    assert_eq!(first["envelope"]["mail_from"], "a@b.test");

    // Nothing is kept: the accepted one was delivered, the rest refused.
    assert_eq!(crate::helpers::spooled(&app.spool), 0);
    assert_eq!(count(&app.spool, "state"), 0);
    let m = metrics(&app).await;
    let answers = |o: &str| {
        sample(
            &m,
            &format!("postern_sync_answers_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(answers("accepted"), Some(1.0), "{m}");
    assert_eq!(answers("refused"), Some(3.0), "{m}");
    assert_eq!(answers("tempfail"), Some(2.0), "{m}");
    assert!(spooled.hits().is_empty());
}

#[tokio::test]
async fn async_routes_get_the_message_only_when_the_sync_ones_accept() {
    let app_rx = Receiver::start().await;
    let spooled = Receiver::start().await;
    app_rx.script_text(&[(403, "mailbox full"), (503, "busy"), (200, "")]);
    let app = app(&app_rx.url("/sync"), None, &spooled).await;
    let mut c = session(&app).await;
    let both = ["bob@sync.test", "ann@async.test"];

    let refused = c.send_mail("a@b.test", &both, &mail("refused")).await;
    assert_eq!(refused, "550 5.7.1 mailbox full");
    let deferred = c.send_mail("a@b.test", &both, &mail("deferred")).await;
    assert_eq!(deferred, LATER);
    assert_eq!(
        crate::helpers::spooled(&app.spool),
        0,
        "withdrawn before any schedule"
    );
    let id = queue_id(&c.send_mail("a@b.test", &both, &mail("accepted")).await);

    // The async route gets the accepted message once, and only that one.
    let hits = spooled.wait_for(1, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits_later = spooled.hits();
    assert_eq!(hits_later.len(), 1, "{hits:?}");
    let h = &hits_later[0];
    assert_eq!(h.json()["subject"], "accepted");
    assert_eq!(rcpt_to(h), json!(["ann@async.test"]));
    assert_eq!(h.header("webhook-id"), format!("msg_{id}_0"));
    assert!(h.verify());

    // Each sync POST lists only its own recipients; its webhook-id is
    // numbered after the spooled delivery's.
    let sync_hits = app_rx.hits();
    assert_eq!(sync_hits.len(), 3);
    assert!(
        sync_hits
            .iter()
            .all(|h| rcpt_to(h) == json!(["bob@sync.test"]))
    );
    assert_eq!(sync_hits[2].header("webhook-id"), format!("msg_{id}_1"));
    assert!(sync_hits[2].verify());
    wait_until(
        10,
        || "the async delivery to finish".into(),
        || crate::helpers::spooled(&app.spool) == 0,
    )
    .await;
}

#[tokio::test]
async fn a_hung_or_absent_app_defers_the_message() {
    let spooled = Receiver::start().await;
    let hung = Endpoint::slow(Duration::from_secs(30));
    let app = app(&hung.url(), Some("300ms"), &spooled).await;
    let mut c = session(&app).await;
    let reply = c
        .send_mail("a@b.test", &["bob@sync.test", "ann@async.test"], &mail("h"))
        .await;
    assert_eq!(reply, LATER);
    assert_eq!(hung.hits().len(), 1);
    // the session goes on
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert_eq!(crate::helpers::spooled(&app.spool), 0);

    let closed = Endpoint::reserve();
    let app = self::app(&closed.url(), None, &spooled).await;
    let mut c = session(&app).await;
    assert_eq!(
        c.send_mail("a@b.test", &["bob@sync.test"], &mail("c"))
            .await,
        LATER
    );
    assert!(spooled.hits().is_empty());
}

/// Shutting down does not wait out a hung app: the message is deferred.
#[tokio::test]
async fn a_shutdown_while_waiting_defers_the_message() {
    let spooled = Receiver::start().await;
    let hung = Endpoint::slow(Duration::from_secs(30));
    let app = app(&hung.url(), None, &spooled).await;
    let mut c = session(&app).await;
    assert!(c.cmd("MAIL FROM:<a@b.test>").await.starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@sync.test>").await.starts_with("250"));
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(mail("s").as_bytes()).await;
    c.send(b".\r\n").await;
    wait_until(10, || "the sync POST".into(), || hung.hits().len() == 1).await;
    app.shutdown.cancel();
    assert_eq!(c.reply().await, LATER);
    assert_eq!(crate::helpers::spooled(&app.spool), 0);
}

/// Two sync routes for one recipient (fan-out): both are asked at once;
/// a 2xx from one and no answer from the other is a 451, and the first
/// app has the message already (at-least-once: the sender sends again).
#[tokio::test]
async fn every_sync_route_must_accept() {
    let fast = Receiver::start().await;
    let hung = Endpoint::slow(Duration::from_secs(30));
    let routes = json!([
        {"match": "*@sync.test", "url": fast.url("/a"), "mode": "sync", "continue": true},
        {"match": "*@sync.test", "url": hung.url(), "mode": "sync", "sync_timeout": "500ms"},
    ]);
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes.to_string()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let mut c = session(&app).await;
    assert_eq!(
        c.send_mail("a@b.test", &["bob@sync.test"], &mail("f"))
            .await,
        LATER
    );
    assert_eq!(fast.hits().len(), 1);
    assert_eq!(hung.hits().len(), 1);
    let (a, b) = (
        fast.hits()[0].header("webhook-id"),
        hung.hits()[0].header("webhook-id"),
    );
    assert_ne!(a, b);
}

/// Routes, other variables, the error the configuration starts with.
type ConfigCase<'a> = (Value, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn bad_mode_and_timeouts_are_config_errors() {
    let table: &[ConfigCase] = &[
        (
            json!([{"match": "*", "url": "http://127.0.0.1:9/", "mode": "spool"}]),
            &[],
            "POSTERN_ROUTES: invalid routes JSON: unknown variant `spool`, expected `async` or `sync`",
        ),
        (
            json!([{"match": "*", "url": "http://127.0.0.1:9/", "mode": "sync", "sync_timeout": "2m"}]),
            &[],
            "POSTERN_ROUTES: route 0: \"sync_timeout\" must be a duration from 1ms to 60s, like \"20s\": \"2m\"",
        ),
        (
            json!([{"match": "*", "url": "http://127.0.0.1:9/", "sync_timeout": "5s"}]),
            &[],
            "POSTERN_ROUTES: route 0: \"sync_timeout\" without \"mode\": \"sync\"",
        ),
        (
            json!([{"match": "*", "url": "http://127.0.0.1:9/", "mode": "sync"}]),
            &[("POSTERN_SMTP_IDLE_TIMEOUT", "15s")],
            "POSTERN_ROUTES: route 0: \"sync_timeout\" (20s) must be shorter than POSTERN_SMTP_IDLE_TIMEOUT (15s)",
        ),
    ];
    for (routes, extra, want) in table {
        let routes = routes.to_string();
        let mut vars = vec![
            ("POSTERN_ROUTES", routes.as_str()),
            ("POSTERN_WEBHOOK_SECRET", SECRET),
        ];
        vars.extend_from_slice(extra);
        let e = postern::config::Config::from_vars(
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(want), "{routes}: {e}");
    }
}
