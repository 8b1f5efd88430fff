//! A spool written by an earlier version is delivered by this one: the
//! server starts on a copy of `tests/fixtures/spool-v1` (how it was made:
//! its README) and every entry in it is delivered, listed or replayed.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::aiosmtpd::{Smtpd, data};
use crate::delivery::wait_empty;
use crate::helpers::*;

/// The API key the fixture's idempotency record is scoped to.
const API_KEY: &str = "spool-v1-fixture-key-0123456789ab";

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spool-v1");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A copy of the fixture spool in `to`. Idempotency records expire 24 h
/// after the time written in them, so that time is moved to now: the
/// record is otherwise exactly as the old version wrote it.
fn fixture_spool(to: &Path) {
    copy_dir(&Path::new(FIXTURE).join("spool"), to);
    for entry in std::fs::read_dir(to.join("idem")).unwrap() {
        let path = entry.unwrap().path();
        let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        record["created_ms"] = now.into();
        std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    }
}

fn ids() -> Value {
    serde_json::from_slice(&std::fs::read(format!("{FIXTURE}/ids.json")).unwrap()).unwrap()
}

fn id(ids: &Value, name: &str) -> String {
    ids[name].as_str().unwrap().to_string()
}

fn api(app: &App, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("http://{}{path}", app.http))
        .bearer_auth(API_KEY)
}

#[tokio::test]
async fn a_spool_written_by_v1_is_delivered_listed_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    fixture_spool(dir.path());
    let ids = ids();
    let hooks = Receiver::start().await;
    let events = Receiver::start().await;
    let relay = Smtpd::start(0, &[]);
    // The routes of the version that wrote the fixture, with the same
    // `match` texts and new URLs: spooled mail follows its route.
    let routes = serde_json::json!([
        {"match": "dead@in.test", "url": hooks.url("/gone")},
        {"match": "ok@in.test", "url": hooks.url("/ok")},
        {"match": "hang@in.test", "url": hooks.url("/hang")},
        {"match": "/^(?P<user>[^+]+)\\+(?P<tag>.+)@tag\\.test$/",
         "url": hooks.url("/in/{user}?tag={tag}"), "raw": true},
        {"match": "*@in.test", "url": hooks.url("/later")},
    ])
    .to_string();
    let spool = dir.path().display().to_string();
    let events_url = events.url("/events");
    let relay_url = format!("smtp://127.0.0.1:{}?tls=none", relay.port);
    let app = spawn_app(&[
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_EVENTS_URL", &events_url),
        ("POSTERN_RELAY_URL", &relay_url),
        ("POSTERN_API_KEYS", API_KEY),
        ("POSTERN_HOSTNAME", "postern.test"),
        ("POSTERN_RETRY_JITTER", "0"),
    ])
    .await;

    // Inbound webhooks: retried ones, one never tried, the pending half of
    // a fan-out (its delivered half is not sent again) and a regex route
    // whose URL is filled from the recipient again.
    let mut hits = hooks.wait_for(4, 20).await;
    hits.sort_by(|a, b| a.path.cmp(&b.path));
    let seen: Vec<(String, String, String)> = hits
        .iter()
        .map(|h| {
            assert!(h.verify(), "signature of {}", h.path);
            (
                h.path.clone(),
                h.header("webhook-id"),
                h.json()["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let webhook = |path: &str, name: &str, index: usize, subject: &str| {
        (
            path.to_string(),
            format!("msg_{}_{index}", id(&ids, name)),
            subject.to_string(),
        )
    };
    let mut want = vec![
        webhook("/hang", "never_tried", 0, "v1 never tried"),
        webhook("/in/bob?tag=news", "regex_route", 0, "v1 regex route"),
        webhook("/later", "fan_out", 1, "v1 fan-out, one delivered"),
        webhook("/later", "webhook_pending", 0, "v1 pending webhook"),
    ];
    want.sort();
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    assert_eq!(seen_sorted, want);
    let regex_hit = hits.iter().find(|h| h.path.starts_with("/in/")).unwrap();
    assert!(
        regex_hit.json()["raw"].is_string(),
        "the route's raw flag was kept"
    );
    let fan_out = &hits
        .iter()
        .find(|h| {
            h.header("webhook-id")
                .starts_with(&format!("msg_{}", id(&ids, "fan_out")))
        })
        .unwrap()
        .json();
    assert_eq!(
        fan_out["envelope"]["rcpt_to"],
        serde_json::json!(["later@in.test"])
    );

    // The relay message: sent now, its earlier deferral kept in its history.
    let outbound = id(&ids, "outbound");
    wait_until(
        20,
        || "the relay to get the message".into(),
        || !relay.messages().is_empty(),
    )
    .await;
    let got = &relay.messages()[0];
    assert_eq!(
        got["rcpt_tos"],
        serde_json::json!(["carol@example.net", "dave@example.net"])
    );
    let body = String::from_utf8(data(got)).unwrap();
    assert!(body.contains("Subject: v1 outbound"), "{body}");
    let mut status = Value::Null;
    for _ in 0..500 {
        let r = api(
            &app,
            reqwest::Method::GET,
            &format!("/v1/messages/{outbound}"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        status = r.json().await.unwrap();
        if status["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status["status"], "sent", "{status:#}");
    assert_eq!(status["tags"], serde_json::json!(["v1"]));
    assert_eq!(status["metadata"]["order"], 42);
    let outcomes: Vec<Value> = status["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcomes"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            serde_json::json!(["deferred", "deferred"]),
            serde_json::json!(["sent", "sent"])
        ]
    );

    // The idempotency record: the same request with the same key replays
    // the answer the old version gave.
    let request = std::fs::read(format!("{FIXTURE}/request.json")).unwrap();
    let r = api(&app, reqwest::Method::POST, "/v1/messages")
        .header("content-type", "application/json")
        .header("idempotency-key", "v1-fixture-key")
        .body(request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let replay: Value = r.json().await.unwrap();
    assert_eq!(replay["id"], outbound.as_str());

    // The dead delivery is listed as the old version left it, and a retry
    // delivers it.
    let dead = format!("{}.0", id(&ids, "webhook_dead"));
    let page: Value = api(&app, reqwest::Method::GET, "/v1/deliveries?state=dead")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page:#}");
    assert_eq!(items[0]["id"], dead.as_str());
    assert_eq!(items[0]["kind"], "webhook");
    assert_eq!(items[0]["route"], "dead@in.test");
    assert_eq!(items[0]["attempts"], 1);
    assert_eq!(items[0]["last_error"], "endpoint answered 410");
    let r = api(
        &app,
        reqwest::Method::POST,
        &format!("/v1/deliveries/{dead}/retry"),
    )
    .send()
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let hits = hooks.wait_for(5, 20).await;
    let gone: Vec<&Hit> = hits.iter().filter(|h| h.path == "/gone").collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].json()["subject"], "v1 dead webhook");
    assert!(
        hits.iter().all(|h| h.path != "/ok"),
        "a delivered half was sent again"
    );

    // Events: the two the old version spooled, then the new message.sent,
    // all signed and sent to the events URL configured now.
    let got = events.wait_for(3, 20).await;
    let mut kinds: Vec<(String, String)> = got
        .iter()
        .map(|h| {
            assert!(h.verify());
            assert_eq!(h.path, "/events");
            let e = h.json();
            (
                e["type"].as_str().unwrap().to_string(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    kinds.sort();
    let mut want = vec![
        ("message.dead".to_string(), id(&ids, "webhook_dead")),
        ("message.deferred".to_string(), outbound.clone()),
        ("message.sent".to_string(), outbound.clone()),
    ];
    want.sort();
    assert_eq!(kinds, want);

    wait_empty(dir.path()).await;
    app.stop().await;
}
