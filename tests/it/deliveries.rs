//! `/v1/deliveries` and `postern deliveries`: listing pending and dead
//! deliveries, retrying and deleting them, and the dead-delivery retention.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const KEY: &str = "ops-key-0123456789abcdef";

/// A receiver whose first answer is `410` (dead at once) and an app
/// delivering to it, with the API key [`KEY`].
async fn app_410(extra: &[(&str, &str)]) -> (App, Receiver) {
    let mut vars = vec![("POSTERN_API_KEYS", KEY), ("POSTERN_RETRY_JITTER", "0")];
    vars.extend_from_slice(extra);
    let (app, rx) = app_with_receiver(&vars).await;
    rx.script(&[(410, None)]);
    (app, rx)
}

async fn send_one(app: &App, subject: &str) -> String {
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail(
            "alice@example.org",
            &["bob@example.com"],
            &format!("Subject: {subject}\r\n\r\nhi\r\n"),
        )
        .await;
    queue_id(&r)
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn url(app: &App, path: &str) -> String {
    format!("http://{}{}", app.http, path)
}

/// GET with the key; (status, JSON body or null).
async fn get(app: &App, path: &str) -> (u16, Value) {
    let r = client()
        .get(url(app, path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn call(app: &App, method: reqwest::Method, path: &str) -> (u16, Value) {
    let r = client()
        .request(method, url(app, path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until delivery `id` shows `state`.
async fn wait_state(app: &App, id: &str, state: &str) -> Value {
    for _ in 0..500 {
        let (status, body) = get(app, &format!("/v1/deliveries/{id}")).await;
        if status == 200 && body["state"] == state {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("delivery {id} never became {state}");
}

/// Sends a message that becomes dead; returns its delivery id.
async fn dead_one(app: &App, subject: &str) -> String {
    let id = format!("{}.0", send_one(app, subject).await);
    wait_state(app, &id, "dead").await;
    id
}

fn files(app: &App, dir: &str) -> usize {
    std::fs::read_dir(app.spool.join(dir)).unwrap().count()
}

async fn wait_files_gone(app: &App) {
    for _ in 0..500 {
        if spooled(&app.spool) == 0 && files(app, "state") == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "spool not empty: msg {} state {}",
        spooled(&app.spool),
        files(app, "state")
    );
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn dead_delivery_is_listed_then_retried_and_delivered() {
    let (app, rx) = app_410(&[]).await;
    let id = dead_one(&app, "dead").await;
    let msg_id = id.strip_suffix(".0").unwrap();

    let (status, page) = get(&app, "/v1/deliveries?state=dead").await;
    assert_eq!(status, 200);
    assert_eq!(page["next_cursor"], Value::Null);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let item = &items[0];
    assert_eq!(item["id"], id.as_str());
    assert_eq!(item["message_id"], msg_id);
    assert_eq!(item["kind"], "webhook");
    assert_eq!(item["route"], "*");
    assert_eq!(item["url"], rx.url("/hook"));
    assert_eq!(item["recipients"], json!(["bob@example.com"]));
    assert_eq!(item["state"], "dead");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["next_attempt_at"], Value::Null);
    assert_eq!(item["last_error"], "endpoint answered 410");
    let received = item["received_at"].as_str().unwrap();
    time::OffsetDateTime::parse(received, &time::format_description::well_known::Rfc3339)
        .expect("received_at is RFC 3339");

    let (status, one) = get(&app, &format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(&one, item);
    // Not pending; and without a filter, dead ones are listed too.
    let (_, pending) = get(&app, "/v1/deliveries?state=pending").await;
    assert_eq!(pending["items"], json!([]));
    let (_, all) = get(&app, "/v1/deliveries").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);

    // The receiver answers 200 from now on (its script is used up).
    let (status, retried) = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/deliveries/{id}/retry"),
    )
    .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["id"], id.as_str());
    assert_eq!(retried["state"], "pending");
    assert_eq!(retried["attempts"], 0);
    assert!(retried["next_attempt_at"].is_string(), "{retried}");

    let hits = rx.wait_for(2, 10).await;
    assert_eq!(hits[1].header("webhook-id"), format!("msg_{msg_id}_0"));
    assert!(hits[1].verify());
    wait_files_gone(&app).await;
    let (_, all) = get(&app, "/v1/deliveries").await;
    assert_eq!(all["items"], json!([]));
    let (status, body) = get(&app, &format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn deleting_a_dead_delivery_removes_the_message() {
    let (app, rx) = app_410(&[]).await;
    let id = dead_one(&app, "delete me").await;
    assert_eq!((spooled(&app.spool), files(&app, "state")), (1, 1));

    let r = client()
        .delete(url(&app, &format!("/v1/deliveries/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_eq!((spooled(&app.spool), files(&app, "state")), (0, 0));

    let (status, body) = get(&app, &format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/deliveries/{id}"),
    )
    .await;
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
    let (_, all) = get(&app, "/v1/deliveries").await;
    assert_eq!(all["items"], json!([]));
    assert_eq!(rx.hits().len(), 1, "deleting does not deliver");
}

/// An app (with `extra`) routing each message to two endpoints: `a` takes
/// the recipients at example.com (delivery 0), `b` everyone (delivery 1).
async fn two_endpoints(extra: &[(&str, &str)]) -> (App, Receiver, Receiver) {
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let routes = json!([
        {"match": "*@example.com", "url": a.url("/a"), "continue": true},
        {"match": "*", "url": b.url("/b")},
    ])
    .to_string();
    let mut vars = vec![
        ("POSTERN_ROUTES", routes.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_API_KEYS", KEY),
    ];
    vars.extend_from_slice(extra);
    (spawn_app(&vars).await, a, b)
}

/// Two endpoints: one delivered, one dead. The message stays until the
/// dead one is deleted; a delivered one cannot be deleted.
#[tokio::test]
async fn a_message_leaves_when_its_last_delivery_is_deleted() {
    let (app, a, b) = two_endpoints(&[]).await;
    a.script(&[(410, None)]);
    let msg_id = send_one(&app, "two").await;
    let dead = format!("{msg_id}.0");
    let done = format!("{msg_id}.1");
    wait_state(&app, &dead, "dead").await;
    wait_state(&app, &done, "delivered").await;
    b.wait_for(1, 10).await;
    let (_, all) = get(&app, "/v1/deliveries").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["items"][0]["id"], dead.as_str());
    assert_eq!(spooled(&app.spool), 1);

    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/deliveries/{done}"),
    )
    .await;
    assert_eq!(status, 409);
    assert_error(&body, "already_delivered");

    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/deliveries/{dead}"),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!((spooled(&app.spool), files(&app, "state")), (0, 0));
}

#[tokio::test]
async fn errors_are_json_with_codes() {
    // One attempt answered 500, the retry an hour away: pending.
    let (app, rx) = app_410(&[("POSTERN_RETRY_SCHEDULE", "1h")]).await;
    let dead = dead_one(&app, "dead").await;
    rx.script(&[(500, None)]);
    let pending = format!("{}.0", send_one(&app, "pending").await);
    rx.wait_for(2, 10).await;
    let mut item = Value::Null;
    for _ in 0..500 {
        item = get(&app, &format!("/v1/deliveries/{pending}")).await.1;
        if item["attempts"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(item["state"], "pending", "{item}");
    assert_eq!(item["attempts"], 1, "{item}");
    assert_eq!(item["last_error"], "endpoint answered 500");
    let next = item["next_attempt_at"].as_str().unwrap();
    let next =
        time::OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(next - time::OffsetDateTime::now_utc() > time::Duration::minutes(55));

    // 401: no key, a wrong key; on every endpoint.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/deliveries".to_string()),
        (reqwest::Method::GET, format!("/v1/deliveries/{dead}")),
        (
            reqwest::Method::POST,
            format!("/v1/deliveries/{dead}/retry"),
        ),
        (reqwest::Method::DELETE, format!("/v1/deliveries/{dead}")),
    ] {
        let r = client()
            .request(method.clone(), url(&app, &path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_error(&r.json().await.unwrap(), "unauthorized");
        let r = client()
            .request(method.clone(), url(&app, &path))
            .bearer_auth("not-the-key-at-all-0000")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert_error(&r.json().await.unwrap(), "unauthorized");
    }

    // 400: the query.
    for (query, code, field) in [
        ("state=gone", "invalid_state", "state"),
        ("state=delivered", "invalid_state", "state"),
        ("limit=0", "invalid_limit", "limit"),
        ("limit=501", "invalid_limit", "limit"),
        ("limit=ten", "invalid_limit", "limit"),
        ("cursor=..%2F..%2Fetc", "invalid_cursor", "cursor"),
        ("status=dead", "invalid_parameter", "status"),
    ] {
        let (status, body) = get(&app, &format!("/v1/deliveries?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error(&body, code);
        assert_eq!(body["error"]["field"], field, "{query}");
    }

    // 404: ids that are not ids, or name nothing.
    let msg_id = dead.strip_suffix(".0").unwrap();
    for id in [
        "..%2F..%2Fmsg%2Fx.0".to_string(),
        "nothex.0".to_string(),
        msg_id.to_string(),
        format!("{msg_id}.01"),
        format!("{msg_id}.1"),
        format!("{msg_id}.x"),
        "0123456789abcdef0123456789abcdef.0".to_string(),
    ] {
        for (method, path) in [
            (reqwest::Method::GET, format!("/v1/deliveries/{id}")),
            (reqwest::Method::POST, format!("/v1/deliveries/{id}/retry")),
            (reqwest::Method::DELETE, format!("/v1/deliveries/{id}")),
        ] {
            let (status, body) = call(&app, method.clone(), &path).await;
            assert_eq!(status, 404, "{method} {path}: {body}");
            assert_error(&body, "not_found");
        }
    }

    // 409: only dead deliveries are retried.
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/deliveries/{pending}/retry"),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "not_dead");
    assert_eq!(body["error"]["field"], "id");

    // A pending delivery can be deleted (given up on) too.
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/deliveries/{pending}"),
    )
    .await;
    assert_eq!(status, 204);
    let (_, all) = get(&app, "/v1/deliveries").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(all["items"][0]["id"], dead.as_str());
}

#[tokio::test]
async fn pages_follow_the_cursor() {
    let (app, rx) = app_410(&[]).await;
    rx.script(&[(410, None), (410, None)]);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(dead_one(&app, &format!("dead {i}")).await);
    }
    ids.sort();

    let (status, first) = get(&app, "/v1/deliveries?state=dead&limit=2").await;
    assert_eq!(status, 200);
    let got: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(first["next_cursor"], ids[1].as_str());

    let cursor = first["next_cursor"].as_str().unwrap();
    let (status, rest) = get(
        &app,
        &format!("/v1/deliveries?state=dead&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(status, 200);
    let got: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str()]);
    assert_eq!(rest["next_cursor"], Value::Null);

    // Exactly a page: no cursor. The default limit takes all three.
    let (_, whole) = get(&app, "/v1/deliveries?limit=3").await;
    assert_eq!(whole["items"].as_array().unwrap().len(), 3);
    assert_eq!(whole["next_cursor"], Value::Null);
    let (_, default) = get(&app, "/v1/deliveries").await;
    assert_eq!(default["items"].as_array().unwrap().len(), 3);
}

async fn cli(app: &App, key: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("deliveries")
        .args(args)
        .env("POSTERN_HTTP_LISTEN", app.http.to_string())
        .env("POSTERN_API_KEYS", key)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_lists_retries_and_deletes() {
    let (app, rx) = app_410(&[]).await;
    rx.script(&[(410, None)]);
    let first = dead_one(&app, "cli one").await;
    let second = dead_one(&app, "cli two").await;

    let (code, out, err) = cli(&app, KEY, &["list", "--state", "dead"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID "), "{out}");
    assert!(lines[0].contains("LAST ERROR"), "{out}");
    for id in [&first, &second] {
        let line = lines.iter().find(|l| l.starts_with(id.as_str())).unwrap();
        assert!(line.contains(" dead "), "{line}");
        assert!(line.ends_with("endpoint answered 410"), "{line}");
    }
    assert_eq!(*lines.last().unwrap(), "2 dead deliveries");

    let (code, out, err) = cli(&app, KEY, &["retry", &first]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&first), "{out}");
    rx.wait_for(3, 10).await;
    for _ in 0..500 {
        if spooled(&app.spool) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(spooled(&app.spool), 1, "the retried message was delivered");

    let (code, out, err) = cli(&app, KEY, &["delete", &second]).await;
    assert_eq!(code, 0, "{out}{err}");
    wait_files_gone(&app).await;
    let (code, out, _) = cli(&app, KEY, &["list"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "no pending or dead deliveries");

    // Failures: exit 1 with the API's reason.
    let (code, _, err) = cli(&app, KEY, &["retry", &first]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("not_found"), "{err}");
    let (code, _, err) = cli(&app, "wrong-key-0123456789", &["list"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unauthorized"), "{err}");
    let (code, _, err) = cli(&app, KEY, &["list", "--state", "gone"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("usage"), "{err}");
}

/// Dead deliveries older than `POSTERN_DEAD_RETENTION` are removed by the
/// sweep, which also runs at start.
#[tokio::test]
async fn retention_removes_old_dead_deliveries_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().display().to_string();
    let (app, _rx) = app_410(&[("POSTERN_SPOOL_DIR", &spool)]).await;
    let id = dead_one(&app, "old").await;
    app.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (app, _rx) = app_410(&[
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_DEAD_RETENTION", "1s"),
    ])
    .await;
    wait_files_gone(&app).await;
    let (status, _) = get(&app, &format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, 404);
    // The sweep counts a removal just after the files are gone: poll.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = client()
            .get(url(&app, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics
            .lines()
            .any(|l| l == "postern_dead_deliveries_removed_total 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == "postern_dead_deliveries_removed_total 1"),
        "{metrics}"
    );
}

/// A dead delivery younger than the retention stays.
#[tokio::test]
async fn retention_keeps_recent_dead_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().display().to_string();
    let (app, _rx) = app_410(&[("POSTERN_SPOOL_DIR", &spool)]).await;
    let id = dead_one(&app, "recent").await;
    app.stop().await;

    let (app, _rx) = app_410(&[
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_DEAD_RETENTION", "1h"),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get(&app, &format!("/v1/deliveries/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "dead");
    assert_eq!(spooled(&app.spool), 1);
}

/// A delivery deleted while its attempt is in flight stays deleted: the
/// attempt's outcome (here a 500, which would schedule a retry) is refused
/// because the attempt's lease went with the delete (#12).
#[tokio::test]
async fn a_delivery_deleted_in_flight_is_not_resurrected_by_its_attempt() {
    let retry = [
        ("POSTERN_RETRY_SCHEDULE", "1s"),
        ("POSTERN_RETRY_JITTER", "0"),
    ];
    let (app, a, b) = two_endpoints(&retry).await;
    a.script(&[(500, None)]);
    b.script(&[(410, None)]);
    let held = a.hold().await;
    let msg_id = send_one(&app, "in flight").await;
    let (inflight, dead) = (format!("{msg_id}.0"), format!("{msg_id}.1"));
    // The other delivery is dead, so the message stays after the delete.
    wait_state(&app, &dead, "dead").await;
    a.wait_for(1, 10).await;
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        &format!("/v1/deliveries/{inflight}"),
    )
    .await;
    assert_eq!(status, 204);
    drop(held);

    // The attempt ends (counted as a retry); its retry would be due within
    // a second: wait past that.
    let metrics = url(&app, "/metrics");
    let retried = "postern_delivery_attempts_total{kind=\"webhook\",outcome=\"retry\"} 1";
    let mut ended = false;
    for _ in 0..500 {
        let text = client().get(&metrics).send().await.unwrap();
        if text.text().await.unwrap().lines().any(|l| l == retried) {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ended, "the in-flight attempt never ended");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, item) = get(&app, &format!("/v1/deliveries/{inflight}")).await;
    assert_ne!(item["state"], "pending", "{item}");
    assert_eq!(a.hits().len(), 1, "the deleted delivery was tried again");
    let (_, listed) = get(&app, "/v1/deliveries").await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [dead.as_str()], "{listed}");
}
