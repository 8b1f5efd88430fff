//! The HTTP API's smaller contracts, over real sockets: a shape error names
//! its field (unknown keys included), a body not declared as JSON is `415`,
//! an id that cannot be one is `404` before the store is touched, a cursor
//! must be a delivery id exactly as the spec's pattern says, and the
//! development inbox tells a bad `webhook-timestamp` from a missing one.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// The API key of development mode without configured keys.
const DEV_KEY: &str = "dev";

/// A well-formed message id (32 lowercase hex digits) that names nothing.
const UNKNOWN_ID: &str = "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Status and JSON body (`null` when the body is not JSON).
async fn parts(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POST /v1/messages with the dev key, `content_type` (none if `None`) and
/// `body`.
async fn post(
    base: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = client()
        .post(format!("{base}/v1/messages"))
        .bearer_auth(DEV_KEY)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    parts(req.send().await.unwrap()).await
}

async fn call(method: reqwest::Method, url: &str) -> (u16, Value) {
    parts(
        client()
            .request(method, url)
            .bearer_auth(DEV_KEY)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Asserts `{"error": {"code", "message", "field"}}` with that code and field.
fn assert_error(what: &str, got: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(*s, status, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert_eq!(body["error"]["field"], json!(field), "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

fn valid() -> Value {
    json!({"from": "app@example.com", "to": "bob@example.org", "subject": "s", "text": "hi"})
}

#[tokio::test]
async fn shape_errors_name_the_field_even_when_unknown() {
    let app = spawn_app(&[]).await;
    let base = format!("http://{}", app.http);
    let attachment = json!({"filename": "a.txt", "content": "aGk="});
    let with = |key: &str, value: Value| {
        let mut v = valid();
        v[key] = value;
        v
    };
    for (body, field) in [
        (with("unknown", json!(1)), Some("unknown")),
        (with("Subject", json!("capitalised")), Some("Subject")),
        (
            with(
                "attachments",
                json!([attachment, {"filename": "b", "content": "", "size": 1}]),
            ),
            Some("attachments[1].size"),
        ),
        (
            with("attachments", json!([{"content": "aGk="}])),
            Some("attachments[0].filename"),
        ),
        (
            with("from", json!({"adress": "app@example.com"})),
            Some("from.adress"),
        ),
        (with("headers", json!({"X-A": 1})), Some("headers.X-A")),
        (with("tags", json!(["a", {}])), Some("tags[1]")),
        (with("text", json!(["x"])), Some("text")),
        (
            json!({"raw": "aGk=", "envelope": {"mail_from": "a@b.example", "rcpt_to": ["c@d.example"], "bcc": []}}),
            Some("envelope.bcc"),
        ),
        (json!([valid()]), None),
    ] {
        let got = post(&base, Some("application/json"), body.to_string()).await;
        assert_error(&body.to_string(), &got, 422, "invalid_field", field);
    }
    // Syntax errors stay 400 with no field.
    let got = post(&base, Some("application/json"), r#"{"from": "#).await;
    assert_error("truncated", &got, 400, "invalid_json", None);
    let got = post(&base, Some("application/json"), format!("{} x", valid())).await;
    assert_error("trailing characters", &got, 400, "invalid_json", None);
    app.stop().await;
}

#[tokio::test]
async fn a_body_not_declared_as_json_is_415() {
    let app = spawn_app(&[]).await;
    let base = format!("http://{}", app.http);
    let body = valid().to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("text/json"),
        Some("application/jsonl"),
        Some("application/json; charset=iso-8859-1"),
    ] {
        let got = post(&base, ct, body.clone()).await;
        assert_error(
            &format!("{ct:?}"),
            &got,
            415,
            "unsupported_media_type",
            Some("Content-Type"),
        );
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=\"UTF-8\"",
        "application/vnd.example+json",
    ] {
        let (status, reply) = post(&base, Some(ct), body.clone()).await;
        assert_eq!(status, 202, "{ct}: {reply}");
    }
    // The API key is still checked first, and the media type before the
    // body is read (a declared length over the limit is not what is said).
    let resp = client()
        .post(format!("{base}/v1/messages"))
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_error("no key", &parts(resp).await, 401, "unauthorized", None);
    app.stop().await;
}

/// Replaces a spool directory by a plain file: every read below it is
/// then an I/O error (`503`), so a `404` proves the store was not asked.
fn break_dir(app: &crate::helpers::App, dir: &str) {
    let path = app.spool.join(dir);
    std::fs::remove_dir_all(&path).unwrap();
    std::fs::write(&path, b"not a directory").unwrap();
}

#[tokio::test]
async fn ids_that_cannot_be_ids_are_404_before_the_store_is_touched() {
    let app = spawn_app(&[]).await;
    let base = format!("http://{}", app.http);
    let long = "a".repeat(300);
    let upper = UNKNOWN_ID.to_uppercase();
    let short = &UNKNOWN_ID[1..];
    let not_ids = [
        long.as_str(),
        upper.as_str(),
        short,
        "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b0",
        "0192f0c5-c5a8-7b5e-9d1d-6d6f1c1e2a3b",
    ];
    // Even with a healthy store a 300-character id must not reach it.
    let got = call(reqwest::Method::GET, &format!("{base}/v1/messages/{long}")).await;
    assert_error("300 characters", &got, 404, "not_found", Some("id"));

    break_dir(&app, "outbox");
    break_dir(&app, "msg");
    break_dir(&app, "state");
    // A well-formed id reaches the (broken) store: this test can tell.
    let got = call(
        reqwest::Method::GET,
        &format!("{base}/v1/messages/{UNKNOWN_ID}"),
    )
    .await;
    assert_error("well-formed message id", &got, 503, "unavailable", None);
    for (method, path) in [
        (reqwest::Method::GET, "/v1/deliveries/{id}"),
        (reqwest::Method::DELETE, "/v1/deliveries/{id}"),
        (reqwest::Method::POST, "/v1/deliveries/{id}/retry"),
    ] {
        let url = format!("{base}{}", path.replace("{id}", &format!("{UNKNOWN_ID}.0")));
        let got = call(method.clone(), &url).await;
        assert_error(&format!("{method} {url}"), &got, 503, "unavailable", None);
    }

    for id in not_ids {
        let got = call(reqwest::Method::GET, &format!("{base}/v1/messages/{id}")).await;
        assert_error(&format!("message {id}"), &got, 404, "not_found", Some("id"));
    }
    let mut delivery_ids: Vec<String> = not_ids.iter().map(|id| format!("{id}.0")).collect();
    delivery_ids.extend(
        [
            "0.5",
            "a.5",
            "0.0",
            "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b.0000001",
        ]
        .map(String::from),
    );
    for id in &delivery_ids {
        for (method, path) in [
            (reqwest::Method::GET, "/v1/deliveries/{id}"),
            (reqwest::Method::DELETE, "/v1/deliveries/{id}"),
            (reqwest::Method::POST, "/v1/deliveries/{id}/retry"),
        ] {
            let url = format!("{base}{}", path.replace("{id}", id));
            let got = call(method.clone(), &url).await;
            assert_error(
                &format!("{method} {url}"),
                &got,
                404,
                "not_found",
                Some("id"),
            );
        }
    }
}

#[tokio::test]
async fn a_cursor_must_be_a_delivery_id() {
    let app = spawn_app(&[]).await;
    let base = format!("http://{}", app.http);
    let upper = format!("{}.0", UNKNOWN_ID.to_uppercase());
    for cursor in ["0.5", "a.5", "0.0", upper.as_str(), "", "."] {
        let url = format!("{base}/v1/deliveries?cursor={cursor}");
        let got = call(reqwest::Method::GET, &url).await;
        assert_error(&url, &got, 400, "invalid_cursor", Some("cursor"));
    }
    let url = format!("{base}/v1/deliveries?cursor={UNKNOWN_ID}.0");
    let (status, page) = call(reqwest::Method::GET, &url).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page, json!({"items": [], "next_cursor": null}));
    app.stop().await;
}

#[tokio::test]
async fn the_dev_inbox_says_invalid_timestamp_not_missing() {
    let app = spawn_app(&[]).await;
    let url = format!("http://{}/dev/inbox", app.http);
    let send = |ts: Option<&str>| {
        let mut req = client()
            .post(&url)
            .header("webhook-id", format!("msg_{UNKNOWN_ID}_0"))
            .header("webhook-signature", "v1,AAAA")
            .header("content-type", "application/json")
            .body("{}");
        if let Some(ts) = ts {
            req = req.header("webhook-timestamp", ts);
        }
        async move {
            let r = req.send().await.expect("the server answers");
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(send(None).await, (400, "missing webhook-timestamp".into()));
    for ts in [
        "99999999999999999999999",
        "9223372036854775808",
        "-9223372036854775808",
        "-1",
        "+1764237600",
        "1.5",
        "soon",
        "",
    ] {
        assert_eq!(
            send(Some(ts)).await,
            (400, "invalid webhook-timestamp".into()),
            "{ts:?}"
        );
    }
    // A usable timestamp gets as far as the signature.
    let now = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    assert_eq!(
        send(Some(&now)).await,
        (401, "bad webhook signature".into())
    );
    assert_eq!(send(Some("1")).await, (401, "bad webhook signature".into()));
    app.stop().await;
}
