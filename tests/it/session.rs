//! SMTP exchanges over a real socket, asserting exact replies.

use crate::helpers::*;

/// App whose only route is `*@example.com`, with small limits.
async fn app() -> (App, Receiver) {
    let rx = Receiver::start().await;
    let routes = format!(
        r#"[{{"match": "*@example.com", "url": "{}"}}]"#,
        rx.url("/hook")
    );
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_HOSTNAME", "mx.test"),
        ("POSTERN_MAX_MESSAGE_SIZE", "10K"),
        ("POSTERN_MAX_RECIPIENTS", "3"),
        ("POSTERN_MAX_ERRORS", "8"),
    ])
    .await;
    (app, rx)
}

/// Runs a table of (command, expected reply) on one session.
async fn exchange(app: &App, table: &[(&str, &str)]) -> Smtp {
    let (mut c, greeting) = Smtp::connect(app.smtp).await;
    assert_eq!(greeting, "220 mx.test ESMTP Postern ready");
    for (cmd, want) in table {
        let got = c.cmd(cmd).await;
        assert_eq!(&got, want, "reply to {cmd:?}");
    }
    c
}

const EHLO: &str = "250-mx.test Hello client.test\n250-PIPELINING\n250-SIZE 10240\n250-8BITMIME\n250-SMTPUTF8\n250 ENHANCEDSTATUSCODES";

#[tokio::test]
async fn every_command() {
    let (app, _rx) = app().await;
    exchange(
        &app,
        &[
            ("EHLO client.test", EHLO),
            ("HELO client.test", "250 mx.test Hello client.test"),
            ("NOOP", "250 2.0.0 OK"),
            (
                "VRFY bob",
                "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
            ),
            (
                "HELP",
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            ),
            ("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK"),
            ("RCPT TO:<bob@example.com>", "250 2.1.5 Recipient OK"),
            ("RSET", "250 2.0.0 OK"),
            ("RCPT TO:<bob@example.com>", "503 5.5.1 Send MAIL first"),
            ("QUIT", "221 2.0.0 Bye"),
        ],
    )
    .await;
}

#[tokio::test]
async fn unknown_and_out_of_order_commands() {
    let (app, _rx) = app().await;
    exchange(
        &app,
        &[
            ("FOO bar", "500 5.5.1 Command unrecognized"),
            ("MAIL FROM:<a@b.test>", "503 5.5.1 Send EHLO or HELO first"),
            ("EHLO client.test", EHLO),
            ("DATA", "503 5.5.1 Send MAIL first"),
            ("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK"),
            ("MAIL FROM:<a@b.test>", "503 5.5.1 Sender already specified"),
            ("DATA", "554 5.5.1 No valid recipients"),
            ("STARTTLS", "502 5.5.1 Command not implemented"),
        ],
    )
    .await;
}

#[tokio::test]
async fn bad_syntax() {
    let (app, _rx) = app().await;
    let mut c = exchange(
        &app,
        &[
            ("EHLO client.test", EHLO),
            (
                "MAIL FROM:a@b.test",
                "501 5.5.4 Syntax: MAIL FROM:<reverse-path> [parameters]",
            ),
            (
                "MAIL FROM:<a@b.test> FOO=BAR",
                "555 5.5.4 Unsupported parameter FOO=BAR",
            ),
        ],
    )
    .await;
    // a fresh, well-formed transaction still works after errors
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
    assert_eq!(
        c.cmd("RCPT TO:<>").await,
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(
        c.cmd("RCPT TO:bob@example.com").await,
        "501 5.5.4 Syntax: RCPT TO:<forward-path> [parameters]"
    );
    assert_eq!(c.cmd("EHLO").await, "501 5.5.4 Syntax: EHLO domain");
}

#[tokio::test]
async fn null_sender_space_after_colon_and_postmaster() {
    let rx = Receiver::start().await;
    let routes = format!(
        r#"[{{"match": "postmaster@mx.test", "url": "{}"}}]"#,
        rx.url("/pm")
    );
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_HOSTNAME", "mx.test"),
    ])
    .await;
    let mut c = exchange(
        &app,
        &[
            (
                "EHLO client.test",
                EHLO.replace("10240", "26214400").as_str(),
            ),
            ("MAIL FROM:<>", "250 2.1.0 Sender OK"),
            ("RSET", "250 2.0.0 OK"),
            (
                "MAIL FROM: <a@b.test> SIZE=100 BODY=8BITMIME SMTPUTF8",
                "250 2.1.0 Sender OK",
            ),
            ("RCPT TO:<Postmaster>", "250 2.1.5 Recipient OK"),
            (
                "RCPT TO:<someone@mx.test>",
                "550 5.1.1 Recipient address rejected: no route for this mailbox",
            ),
            ("DATA", "354 Start mail input; end with <CRLF>.<CRLF>"),
        ],
    )
    .await;
    c.send(b"Subject: bounce\r\n\r\nx\r\n").await;
    assert!(c.cmd(".").await.starts_with("250 2.0.0 OK: queued as "));
    let hits = rx.wait_for(1, 10).await;
    assert_eq!(hits[0].path, "/pm");
    assert_eq!(
        hits[0].json()["envelope"]["rcpt_to"],
        serde_json::json!(["postmaster@mx.test"])
    );
}

#[tokio::test]
async fn unrouted_recipient_is_refused_at_rcpt() {
    let (app, rx) = app().await;
    let mut c = exchange(
        &app,
        &[
            ("EHLO client.test", EHLO),
            ("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK"),
            (
                "RCPT TO:<bob@elsewhere.test>",
                "550 5.1.1 Recipient address rejected: no route for this mailbox",
            ),
            ("DATA", "554 5.5.1 No valid recipients"),
            ("RCPT TO:<bob@example.com>", "250 2.1.5 Recipient OK"),
        ],
    )
    .await;
    assert_eq!(
        c.cmd("DATA").await,
        "354 Start mail input; end with <CRLF>.<CRLF>"
    );
    c.send(b"Subject: x\r\n\r\nbody\r\n").await;
    assert!(c.cmd(".").await.starts_with("250 "));
    let hits = rx.wait_for(1, 10).await;
    assert_eq!(
        hits[0].json()["envelope"]["rcpt_to"],
        serde_json::json!(["bob@example.com"])
    );
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let (app, rx) = app().await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.send(b"EHLO client.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@nowhere.test>\r\nRCPT TO:<one@example.com>\r\nRCPT TO:<two@example.com>\r\nDATA\r\n").await;
    assert_eq!(c.reply().await, EHLO);
    assert_eq!(c.reply().await, "250 2.1.0 Sender OK");
    assert!(c.reply().await.starts_with("550 5.1.1"));
    assert_eq!(c.reply().await, "250 2.1.5 Recipient OK");
    assert_eq!(c.reply().await, "250 2.1.5 Recipient OK");
    assert_eq!(
        c.reply().await,
        "354 Start mail input; end with <CRLF>.<CRLF>"
    );
    // the message, its end, and the next commands in one write
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        .await;
    assert!(c.reply().await.starts_with("250 2.0.0 OK: queued as "));
    assert_eq!(c.reply().await, "250 2.0.0 OK");
    assert_eq!(c.reply().await, "221 2.0.0 Bye");
    assert!(c.closed().await);
    let hits = rx.wait_for(1, 10).await;
    assert_eq!(
        hits[0].json()["envelope"]["rcpt_to"],
        serde_json::json!(["one@example.com", "two@example.com"])
    );
}

#[tokio::test]
async fn size_limits() {
    let (app, rx) = app().await;
    let mut c = exchange(
        &app,
        &[
            ("EHLO client.test", EHLO),
            (
                "MAIL FROM:<a@b.test> SIZE=10241",
                "552 5.3.4 Message size exceeds fixed maximum message size",
            ),
            ("MAIL FROM:<a@b.test> SIZE=10240", "250 2.1.0 Sender OK"),
            ("RCPT TO:<bob@example.com>", "250 2.1.5 Recipient OK"),
            ("DATA", "354 Start mail input; end with <CRLF>.<CRLF>"),
        ],
    )
    .await;
    // 1 MB body, 100 times the limit: drained, refused, session still usable
    let line = "x".repeat(998) + "\r\n";
    for _ in 0..1000 {
        c.send(line.as_bytes()).await;
    }
    assert_eq!(
        c.cmd(".").await,
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    // nothing stored, nothing delivered
    assert_eq!(std::fs::read_dir(app.spool.join("msg")).unwrap().count(), 0);
    assert!(crate::helpers::pending(&app.spool).is_empty());
    assert_eq!(std::fs::read_dir(app.spool.join("tmp")).unwrap().count(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(rx.hits().is_empty());
}

#[tokio::test]
async fn too_many_recipients() {
    let (app, _rx) = app().await;
    exchange(
        &app,
        &[
            ("EHLO client.test", EHLO),
            ("MAIL FROM:<a@b.test>", "250 2.1.0 Sender OK"),
            ("RCPT TO:<a@example.com>", "250 2.1.5 Recipient OK"),
            ("RCPT TO:<b@example.com>", "250 2.1.5 Recipient OK"),
            ("RCPT TO:<c@example.com>", "250 2.1.5 Recipient OK"),
            ("RCPT TO:<d@example.com>", "452 4.5.3 Too many recipients"),
            ("DATA", "354 Start mail input; end with <CRLF>.<CRLF>"),
        ],
    )
    .await;
}

#[tokio::test]
async fn long_lines_and_error_limit() {
    let (app, _rx) = app().await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    let long = format!("NOOP {}", "x".repeat(600));
    assert_eq!(c.cmd(&long).await, "500 5.5.6 Line too long");
    // 100 KB without a newline: one reply as soon as the limit is passed;
    // the rest of that line, up to its end, is discarded without a reply.
    c.send(&vec![b'A'; 100_000]).await;
    assert_eq!(c.reply().await, "500 5.5.6 Line too long");
    c.send(&vec![b'A'; 50_000]).await;
    assert_eq!(c.cmd("\r\nNOOP").await, "250 2.0.0 OK");
    // errors so far: 2; the 8th closes the session
    for _ in 0..5 {
        assert_eq!(c.cmd("BOGUS").await, "500 5.5.1 Command unrecognized");
    }
    assert_eq!(c.cmd("BOGUS").await, "500 5.5.1 Command unrecognized");
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many errors, closing connection"
    );
    assert!(c.closed().await);
}

#[tokio::test]
async fn garbage_gets_replies_and_the_server_stays_up() {
    let (app, _rx) = app().await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    assert_eq!(c.cmd("\0\0\0").await, "500 5.5.1 Command unrecognized");
    c.send(b"EHLO \xff\xfe\r\n").await;
    assert_eq!(
        c.reply().await,
        "500 5.5.2 Syntax error: command is not valid UTF-8"
    );
    c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n")
        .await;
    assert!(c.reply().await.starts_with("500 "));
    drop(c);
    // and a new session is served normally
    let (mut c, g) = Smtp::connect(app.smtp).await;
    assert!(g.starts_with("220 "));
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
}

#[tokio::test]
async fn dot_stuffing_round_trips() {
    let (app, rx) = app().await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail(
            "a@b.test",
            &["bob@example.com"],
            "Subject: dots\r\n\r\n..leading dot\r\n...\r\nend\r\n",
        )
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let hits = rx.wait_for(1, 10).await;
    assert_eq!(hits[0].json()["text"], ".leading dot\r\n..\r\nend\r\n");
}

/// SMTP smuggling: `<LF>.<LF>`, `<LF>.<CRLF>` and `<CR>.<CRLF>` must not end
/// the data; the message (with a bare line end) is refused as a whole and
/// the "smuggled" command inside it is never run.
#[tokio::test]
async fn smuggling_is_refused() {
    let (app, rx) = app().await;
    for variant in ["\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n"] {
        let (mut c, _) = Smtp::connect(app.smtp).await;
        c.cmd("EHLO client.test").await;
        c.cmd("MAIL FROM:<a@b.test>").await;
        c.cmd("RCPT TO:<bob@example.com>").await;
        assert!(c.cmd("DATA").await.starts_with("354"));
        let body = format!(
            "Subject: outer\r\n\r\nhello{variant}MAIL FROM:<evil@b.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n"
        );
        c.send(body.as_bytes()).await;
        // the real end: one reply for the whole thing
        assert_eq!(
            c.cmd(".").await,
            "550 5.5.2 Message refused: bare CR or LF in content; lines must end with CRLF",
            "variant {variant:?}"
        );
        assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(rx.hits().is_empty(), "nothing may be delivered");
}

#[tokio::test]
async fn received_header_is_prepended() {
    let (app, rx) = app().await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail("a@b.test", &["bob@example.com"], "Subject: r\r\n\r\nx\r\n")
        .await;
    let id = r.rsplit(' ').next().unwrap().to_string();
    let hits = rx.wait_for(1, 10).await;
    let headers = hits[0].json()["headers"].as_array().unwrap().clone();
    assert_eq!(headers[0]["name"], "Received");
    let v = headers[0]["value"].as_str().unwrap();
    assert!(
        v.starts_with("from client.test ([127.0.0.1]) by mx.test (Postern) with ESMTP id "),
        "{v}"
    );
    assert!(
        v.contains(&id) && v.contains("for <bob@example.com>"),
        "{v}"
    );
    assert_eq!(headers[1]["name"], "Subject");
}
