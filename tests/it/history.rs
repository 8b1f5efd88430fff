//! The message history (#14): finished messages kept for
//! `POSTERN_HISTORY_RETENTION`, listed newest first with filters and
//! cursor paging, shown with their deliveries and attempts, swept after
//! the retention. The store-level part runs against every backend
//! ([`crate::store::backends`]); the HTTP part (`/v1/messages…`) against
//! the real server.

use std::collections::HashSet;
use std::time::Duration;

use postern::spool::{
    Attempt, AttemptResult, DeliveryState, Direction, Envelope, MessageQuery, MessageStatus,
    Outbound, State, Store, Target,
};

use crate::store::{Backend, backends, claim_all, envelope};

fn content(subject: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

/// The state a delivered attempt leaves, with one recorded attempt.
fn delivered_once() -> DeliveryState {
    let mut s = DeliveryState {
        attempts: 1,
        ..DeliveryState::fresh()
    };
    s.record_attempt(Attempt {
        at: "2026-01-01T00:00:01Z".into(),
        target: Some("http://127.0.0.1:9/0".into()),
        status: Some(204),
        duration_ms: Some(12),
        outcome: Some(AttemptResult::Delivered),
        ..Default::default()
    });
    s
}

/// Commits `env` with `subject` and delivers every delivery of it (one
/// attempt each).
async fn delivered(store: &Store, env: Envelope, subject: &str) -> Envelope {
    let env = store.intake().submit(env, &content(subject)).await.unwrap();
    let n = env.deliveries.len();
    for lease in claim_all(store).await {
        store
            .finish(&lease, n, false, &delivered_once())
            .await
            .unwrap();
    }
    env
}

fn query(limit: usize) -> MessageQuery {
    MessageQuery {
        limit,
        ..Default::default()
    }
}

async fn kept(b: &Backend) -> Store {
    b.open().await.keep_history(Duration::from_secs(3600))
}

#[tokio::test]
async fn finished_messages_are_kept_with_their_attempts_and_swept() {
    for b in backends().await {
        let store = kept(&b).await;
        let name = b.name();
        let first = delivered(&store, envelope(2), "first").await;
        let mut event = envelope(1);
        event.deliveries[0].target = Target::Event {
            url: "http://127.0.0.1:9/events".into(),
        };
        let event = delivered(&store, event, "an event").await;
        let pending = store
            .intake()
            .submit(envelope(1), &content("still pending"))
            .await
            .unwrap();

        let page = store.list_messages(&query(10)).await.unwrap();
        let ids: Vec<&str> = page.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, [pending.id.as_str(), first.id.as_str()], "{name}");
        assert_eq!(page.next_cursor, None, "{name}");
        let done = &page.items[1];
        assert_eq!(done.status, MessageStatus::Delivered, "{name}");
        assert_eq!(done.subject.as_deref(), Some("first"), "{name}");
        assert_eq!(done.direction, Direction::Inbound, "{name}");
        assert_eq!(
            (done.deliveries, done.size),
            (2, content("first").len() as u64),
            "{name}"
        );
        assert_eq!(page.items[0].status, MessageStatus::Pending, "{name}");

        let detail = store.message_detail(&first.id).await.unwrap().unwrap();
        assert_eq!(detail.envelope, first, "{name}");
        assert_eq!(detail.deliveries.len(), 2, "{name}");
        for d in &detail.deliveries {
            assert_eq!(d.state.state, State::Delivered, "{name}");
            assert_eq!(d.state.attempts, 1, "{name}");
            let a = &d.state.history[0];
            assert_eq!((a.status, a.duration_ms), (Some(204), Some(12)), "{name}");
        }
        assert_eq!(detail.deliveries[1].id, format!("{}.1", first.id));
        assert_eq!(detail.deliveries[1].target, "http://127.0.0.1:9/1");
        assert_eq!(
            store.read_message(&first.id).await.unwrap(),
            content("first")
        );
        assert!(
            store.message_detail(&event.id).await.unwrap().is_none(),
            "{name}"
        );
        // Kept out of the queue: nothing to claim, nothing listed as a delivery.
        assert!(claim_all(&store).await.len() == 1, "{name}");
        let (listed, _) = store
            .list_deliveries(vec![State::Pending, State::Dead], None, 10)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");

        // Survives a restart.
        drop(store);
        let store = kept(&b).await;
        let page = store.list_messages(&query(10)).await.unwrap();
        assert_eq!(page.items.len(), 2, "{name} after a restart");
        assert_eq!(page.items[1].id, first.id);

        assert_eq!(
            store
                .sweep_history(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store.sweep_history(Duration::ZERO).await.unwrap(),
            1,
            "{name}"
        );
        assert!(
            store.message_detail(&first.id).await.unwrap().is_none(),
            "{name}"
        );
        assert!(store.read_message(&first.id).await.is_err(), "{name}");
        let page = store.list_messages(&query(10)).await.unwrap();
        assert_eq!(page.items.len(), 1, "{name}");
    }
}

/// Retention 0: a message leaves the store when done, as before #14.
#[tokio::test]
async fn without_retention_a_finished_message_is_gone() {
    for b in backends().await {
        let store = b.open().await.keep_history(Duration::ZERO);
        let env = delivered(&store, envelope(1), "gone").await;
        assert!(store.read_message(&env.id).await.is_err(), "{}", b.name());
        assert!(store.message_detail(&env.id).await.unwrap().is_none());
        assert!(!store.is_committed(&env.id).await.unwrap());
        assert!(
            store
                .list_messages(&query(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
}

#[tokio::test]
async fn the_list_filters_and_pages_without_gaps_or_duplicates() {
    for b in backends().await {
        let store = kept(&b).await;
        let name = b.name();
        let mut all = Vec::new();
        for i in 0..7 {
            let mut env = envelope(1);
            env.mail_from = format!("sender{i}@Example.org");
            if i % 3 == 0 {
                env.outbound = Some(Outbound::default());
                env.deliveries[0].target = Target::Relay;
            }
            let env = delivered(&store, env, &format!("Report {i}")).await;
            all.push(env.id);
        }
        all.reverse();
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..10 {
            let q = MessageQuery {
                cursor: cursor.clone(),
                ..query(3)
            };
            let page = store.list_messages(&q).await.unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.into_iter().map(|m| m.id));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen, all, "{name}: walked in order, each once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);

        let count = |q: MessageQuery| {
            let store = store.clone();
            async move { store.list_messages(&q).await.unwrap().items.len() }
        };
        let q = |f: fn(&mut MessageQuery)| {
            let mut q = query(50);
            f(&mut q);
            q
        };
        assert_eq!(
            count(q(|q| q.direction = Some(Direction::Outbound))).await,
            3,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.direction = Some(Direction::Inbound))).await,
            4,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.address = Some("SENDER4@".into()))).await,
            1,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.address = Some("b@example.COM".into()))).await,
            7,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.text = Some("report 5".into()))).await,
            1,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.text = Some("100%".into()))).await,
            0,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.status = Some(MessageStatus::Pending))).await,
            0,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.status = Some(MessageStatus::Delivered))).await,
            7,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.since_ms = Some(u64::MAX / 2))).await,
            0,
            "{name}"
        );
        assert_eq!(count(q(|q| q.until_ms = Some(1))).await, 0, "{name}");
        assert_eq!(count(q(|q| q.since_ms = Some(1))).await, 7, "{name}");
    }
}

// ---- over HTTP: the real server, every backend ----

const KEY: &str = "history-key-0123456789abcdef";

/// The file spool (`None`) and, with a test server, a fresh database.
async fn http_backends() -> Vec<Option<String>> {
    let mut all = vec![None];
    if let Some(url) = crate::database::test_database_url() {
        all.push(Some(crate::database::fresh_database_url(&url).await));
    }
    all
}

/// An app on `db` (or a spool) delivering to the webhook `url`, with `vars`.
async fn http_app(db: &Option<String>, url: &str, vars: &[(&str, &str)]) -> crate::helpers::App {
    let mut all = vec![
        ("POSTERN_WEBHOOK_URL", url),
        ("POSTERN_WEBHOOK_SECRET", crate::helpers::SECRET),
        ("POSTERN_API_KEYS", KEY),
        ("POSTERN_RETRY_JITTER", "0"),
        ("POSTERN_RETRY_SCHEDULE", "100ms,100ms"),
    ];
    if let Some(db) = db {
        all.push(("POSTERN_DATABASE_URL", db.as_str()));
    }
    all.extend_from_slice(vars);
    crate::helpers::spawn_app(&all).await
}

async fn get(app: &crate::helpers::App, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{}{}", app.http, path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
}

async fn get_json(app: &crate::helpers::App, path: &str) -> (u16, serde_json::Value) {
    let r = get(app, path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A multipart message: text, an inline PNG (Content-ID `logo@x`) and a
/// PDF attachment with a name that needs escaping.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really a png\x00\xff";
const PDF: &[u8] = b"%PDF-1.4 a long enough body";

fn multipart(subject: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
         --b\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{png}\r\n\
         --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r\u{e9}sum\u{e9} \\\"1\\\".pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n--b--\r\n",
        png = b64.encode(PNG),
        pdf = b64.encode(PDF),
    )
}

async fn send(app: &crate::helpers::App, message: &str) -> String {
    crate::helpers::Smtp::mail_one(app.smtp, "bob@example.com", message).await
}

/// Polls `GET /v1/messages/{id}` until `done` holds for its body.
async fn wait_message(
    app: &crate::helpers::App,
    id: &str,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..500 {
        let (status, body) = get_json(app, &format!("/v1/messages/{id}")).await;
        if done(status, &body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("message {id} never got there");
}

#[tokio::test]
async fn a_delivered_message_is_kept_with_its_attempts_then_swept() {
    for db in http_backends().await {
        let rx = crate::helpers::Receiver::start().await;
        rx.script(&[(503, None)]);
        let app = http_app(
            &db,
            &rx.url("/hook"),
            &[("POSTERN_HISTORY_RETENTION", "2s")],
        )
        .await;
        let name = if db.is_some() { "postgres" } else { "file" };
        let message = multipart("Quarterly report");
        let id = send(&app, &message).await;
        rx.wait_for(2, 20).await;
        let body = wait_message(&app, &id, |s, b| s == 200 && b["status"] == "delivered").await;
        assert_eq!(body["direction"], "inbound", "{name}");
        assert_eq!(body["subject"], "Quarterly report", "{name}");
        assert_eq!(body["mail_from"], "alice@example.org");
        let d = &body["deliveries"][0];
        assert_eq!(d["state"], "delivered", "{name}: {body}");
        assert_eq!(d["target"], rx.url("/hook"));
        assert_eq!(d["attempt_count"], 2);
        let attempts = d["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{name}: {body}");
        assert_eq!(attempts[0]["status"], 503);
        assert_eq!(attempts[0]["outcome"], "retry");
        assert!(attempts[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert_eq!(attempts[1]["status"], 200);
        assert_eq!(attempts[1]["outcome"], "delivered");
        for a in attempts {
            assert!(a["duration_ms"].as_u64().is_some(), "{a}");
            assert_eq!(a["target"], rx.url("/hook"));
        }

        let (status, list) = get_json(&app, "/v1/messages?direction=inbound&q=quarterly").await;
        assert_eq!(status, 200);
        assert_eq!(list["messages"][0]["id"], id.as_str(), "{name}: {list}");
        assert_eq!(list["messages"][0]["status"], "delivered");

        // The source byte for byte: our Received: line, then what was sent.
        let r = get(&app, &format!("/v1/messages/{id}/raw")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "message/rfc822");
        let raw = r.bytes().await.unwrap();
        assert!(raw.starts_with(b"Received: "), "{name}");
        assert!(raw.ends_with(message.as_bytes()), "{name}");

        let r = get(&app, &format!("/v1/messages/{id}/attachments/1")).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["content-type"], "application/pdf");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let cd = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cd.starts_with("attachment; filename=\""), "{cd}");
        assert!(
            cd.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf"),
            "{cd}"
        );
        assert_eq!(&r.bytes().await.unwrap()[..], PDF, "{name}");
        let r = get(&app, &format!("/v1/messages/{id}/cid/logo@x")).await;
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.headers()["content-type"], "image/png");
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("inline")
        );
        assert_eq!(&r.bytes().await.unwrap()[..], PNG, "{name}");
        let r = get(&app, &format!("/v1/messages/{id}/attachments/2")).await;
        assert_eq!(r.status(), 404);
        let r = get(&app, &format!("/v1/messages/{id}/cid/nope")).await;
        assert_eq!(r.status(), 404);

        // Gone once the retention is over (the sweep runs every second).
        wait_message(&app, &id, |s, _| s == 404).await;
        assert_eq!(
            get(&app, &format!("/v1/messages/{id}/raw")).await.status(),
            404
        );
        app.stop().await;
    }
}

/// A retry by an operator restarts the schedule but keeps the record: the
/// delivered message's timeline still shows the attempts that killed it.
#[tokio::test]
async fn a_retried_dead_delivery_keeps_its_earlier_attempts() {
    for db in http_backends().await {
        let name = if db.is_some() { "postgres" } else { "file" };
        let rx = crate::helpers::Receiver::start().await;
        // Three answers of 500 use up the schedule (100ms, 100ms): dead.
        rx.script(&[(500, None), (500, None), (500, None)]);
        let app = http_app(&db, &rx.url("/hook"), &[]).await;
        let id = send(&app, "Subject: dies once\r\n\r\nbody\r\n").await;
        let dead = wait_message(&app, &id, |s, b| {
            s == 200 && b["deliveries"][0]["state"] == "dead"
        })
        .await;
        assert_eq!(
            dead["deliveries"][0]["attempts"].as_array().unwrap().len(),
            3,
            "{name}: {dead}"
        );

        let r = reqwest::Client::new()
            .post(format!("http://{}/v1/deliveries/{id}.0/retry", app.http))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let retried: serde_json::Value = r.json().await.unwrap();
        assert_eq!(retried["attempts"], 0, "{name}: the schedule starts over");

        let body = wait_message(&app, &id, |s, b| s == 200 && b["status"] == "delivered").await;
        let attempts = body["deliveries"][0]["attempts"].as_array().unwrap();
        let outcomes: Vec<&str> = attempts
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(
            outcomes,
            ["retry", "retry", "dead", "delivered"],
            "{name}: {body}"
        );
        assert_eq!(attempts[2]["status"], 500);
        assert_eq!(attempts[3]["status"], 200);
        assert_eq!(rx.wait_for(4, 10).await.len(), 4);
        app.stop().await;
    }
}

#[tokio::test]
async fn with_retention_zero_a_delivered_message_is_gone_as_before() {
    for db in http_backends().await {
        let rx = crate::helpers::Receiver::start().await;
        let app = http_app(&db, &rx.url("/hook"), &[("POSTERN_HISTORY_RETENTION", "0")]).await;
        let id = send(&app, "Subject: short-lived\r\n\r\nhi\r\n").await;
        rx.wait_for(1, 20).await;
        wait_message(&app, &id, |s, _| s == 404).await;
        let (_, list) = get_json(&app, "/v1/messages").await;
        assert_eq!(list["messages"], serde_json::json!([]));
        if db.is_none() {
            crate::helpers::wait_until(
                10,
                || "msg/ and history/ empty".into(),
                || {
                    crate::helpers::spooled(&app.spool)
                        + crate::helpers::count(&app.spool, "history")
                        == 0
                },
            )
            .await;
        }
        app.stop().await;
    }
}

/// A route URL with a password and a signed query: neither shows in the
/// history, nor does the Authorization header reqwest makes of it.
#[tokio::test]
async fn attempts_never_show_secrets() {
    for db in http_backends().await {
        let rx = crate::helpers::Receiver::start().await;
        rx.script(&[(500, None)]);
        let url = format!(
            "http://hookuser:pa55w0rd-secret@{}/in?sig=signed-key-secret&token=t0ken-secret",
            rx.addr
        );
        let app = http_app(&db, &url, &[]).await;
        let id = send(&app, "Subject: s\r\n\r\nhi\r\n").await;
        rx.wait_for(2, 20).await;
        let body = wait_message(&app, &id, |s, b| s == 200 && b["status"] == "delivered").await;
        let (_, list) = get_json(&app, "/v1/messages").await;
        for text in [body.to_string(), list.to_string()] {
            for secret in [
                "pa55w0rd",
                "signed-key",
                "t0ken",
                "hookuser",
                "Basic ",
                SECRET_PART,
            ] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert_eq!(
            body["deliveries"][0]["attempts"][0]["target"],
            format!("http://{}/in", rx.addr)
        );
        app.stop().await;
    }
}
const SECRET_PART: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn the_history_survives_a_restart_and_pages_over_http() {
    for db in http_backends().await {
        let rx = crate::helpers::Receiver::start().await;
        let spool = tempfile::tempdir().unwrap();
        let dir = spool.path().display().to_string();
        let vars = [("POSTERN_SPOOL_DIR", dir.as_str())];
        let app = http_app(&db, &rx.url("/hook"), &vars).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(send(&app, &format!("Subject: page {i}\r\n\r\nhi\r\n")).await);
        }
        rx.wait_for(5, 20).await;
        for id in &ids {
            wait_message(&app, id, |s, b| s == 200 && b["status"] == "delivered").await;
        }
        app.stop().await;
        let app = http_app(&db, &rx.url("/hook"), &vars).await;
        let mut seen = Vec::new();
        let mut path = "/v1/messages?limit=2".to_string();
        for _ in 0..10 {
            let (status, page) = get_json(&app, &path).await;
            assert_eq!(status, 200, "{page}");
            let items = page["messages"].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|m| m["id"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/messages?limit=2&cursor={c}"),
                None => break,
            }
        }
        ids.reverse();
        assert_eq!(seen, ids, "after a restart, newest first, each once");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_json_error_shape() {
    let rx = crate::helpers::Receiver::start().await;
    let app = http_app(&None, &rx.url("/hook"), &[]).await;
    for (query, field) in [
        ("direction=sideways", "direction"),
        ("status=lost", "status"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("cursor=..%2F..%2Fetc", "cursor"),
        ("address=", "address"),
        ("page=2", "page"),
    ] {
        let (status, body) = get_json(&app, &format!("/v1/messages?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
        assert!(
            body["error"]["code"]
                .as_str()
                .is_some_and(|c| c.starts_with("invalid_"))
        );
        assert!(body["error"]["message"].is_string());
    }
    let (status, body) = get_json(&app, "/v1/messages/nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = reqwest::get(format!("http://{}/v1/messages", app.http))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}
