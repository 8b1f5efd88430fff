//! `docs/openapi.yaml` against the real server. Development mode makes
//! every endpoint live (no routes → `/dev/inbox`; the relay is Postern's own
//! SMTP listener), so `tests/openapi_check.py` can call each documented
//! operation and validate every answer against the spec. For
//! `/v1/deliveries` the events endpoint refuses the events of two marked
//! messages (410: dead at once), so the checker has dead deliveries to
//! list, get, retry, see die again and delete. The webhook bodies (live
//! `message.sent` events, and bodies built by the library for the other
//! events and payload variants) are validated against the spec's
//! `webhooks`. A pure-Rust probe checks that the documented (method, path)
//! pairs are exactly the ones the server answers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, Uri};

use postern::delivery::events::{dead_event, relay_event};
use postern::delivery::webhook::{build, payload};
use postern::model::attachment_url::{LinkKey, Linker};
use postern::spool::{
    Delivery, DeliveryState, Envelope, Outbound, RcptState, RcptStatus, State, Target, TlsInfo,
};
use serde_json::{Value, json};

use crate::helpers::{Hit, SECRET, python, spawn_app};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi_check.py");

/// Methods probed on every path. HEAD is left out: every GET route answers
/// it (axum), as the spec says.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Paths probed besides the documented ones: routes the server has (or
/// might grow) must be documented, so each is probed with every method and
/// any answer other than "no such endpoint" / `405` must be in the spec.
const PROBED: &[&str] = &[
    "/v1/messages",
    "/v1/messages/{id}",
    "/v1/deliveries",
    "/v1/deliveries/{id}",
    "/v1/deliveries/{id}/retry",
    "/dev/inbox",
];

/// Paths the server must not have: each must get `404 not_found`.
const UNDOCUMENTED: &[&str] = &[
    "/",
    "/v1",
    "/v1/nope",
    "/v1/messages/",
    "/v1/messages/0123456789abcdef0123456789abcdef/events",
    "/v1/deliveries/",
    "/v1/deliveries/0123456789abcdef0123456789abcdef.0/x",
    "/v1/deliveries/0123456789abcdef0123456789abcdef.0/retry/x",
    "/dev",
    "/dev/inbox/1",
    "/healthz/x",
    "/readyz/x",
    "/metrics/",
    "/openapi.yaml",
];

/// Runs the checker with `args`; returns (success, stdout + stderr).
async fn run_check(args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(python())
            .arg(CHECK)
            .args(args)
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONUNBUFFERED", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("openapi_check.py finishes in time")
    .expect("python starts");
    (out.status.success(), transcript(&out))
}

/// The (METHOD, path) pairs under `paths:`, read from the YAML by
/// indentation (paths at two spaces, methods at four), so this check needs
/// nothing but the file.
fn spec_operations(yaml: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in yaml.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            in_paths = line.trim_end() == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let Some(key) = trimmed.strip_suffix(':') else {
            continue;
        };
        let key = key.trim_matches(['"', '\'']);
        match indent {
            2 => path = Some(key.to_string()),
            4 if METHODS.contains(&key.to_uppercase().as_str()) || key == "head" => {
                let p = path.clone().expect("a method under a path");
                out.insert((key.to_uppercase(), p));
            }
            _ => {}
        }
    }
    out
}

/// A concrete path for a template (`{id}` → a well-formed id).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("closed template") + open;
        out.push_str("0123456789abcdef0123456789abcdef");
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether the server has a route for (method, path): anything but `405`
/// and its own "no such endpoint" (`404 not_found`, `field: null`).
async fn answers(client: &reqwest::Client, base: &str, method: &str, path: &str) -> bool {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = client
        .request(m, format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let no_route = status == 405
        || (status == 404
            && body["error"]["code"] == "not_found"
            && body["error"]["field"].is_null());
    !no_route
}

#[tokio::test]
async fn documented_routes_are_exactly_the_served_routes() {
    let yaml = std::fs::read_to_string(SPEC).unwrap();
    let documented = spec_operations(&yaml);
    assert!(
        documented.contains(&("GET".into(), "/healthz".into()))
            && documented.contains(&("POST".into(), "/v1/messages".into())),
        "the spec parser found {documented:?}"
    );
    let app = spawn_app(&[]).await;
    let base = format!("http://{}", app.http);
    let client = reqwest::Client::new();

    let paths: BTreeSet<&str> = documented
        .iter()
        .map(|(_, p)| p.as_str())
        .chain(PROBED.iter().copied())
        .collect();
    let mut served = BTreeSet::new();
    for path in &paths {
        for method in METHODS {
            if answers(&client, &base, method, &concrete(path)).await {
                served.insert((method.to_string(), path.to_string()));
            }
        }
    }
    assert_eq!(
        served, documented,
        "left: what the server answers, right: what docs/openapi.yaml documents"
    );

    for path in UNDOCUMENTED {
        for method in METHODS {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let resp = client
                .request(m, format!("{base}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 404, "{method} {path}");
            let body: Value = resp.json().await.expect("404 is JSON");
            assert_eq!(
                body,
                json!({"error": {"code": "not_found", "message": "no such endpoint", "field": null}}),
                "{method} {path}"
            );
        }
    }
    app.stop().await;
}

/// The API key of the live check (development mode, keys configured).
const KEY: &str = "openapi-check-key-0123456789";

/// `metadata.openapi_check` of the API messages whose events are refused.
const DEAD_MARK: &str = "dead letter";

/// The events endpoint: records every request and answers 200, except for
/// the events of messages marked [`DEAD_MARK`]: 410 (dead at once), then,
/// for the attempt after a retry, 503 (pending until the next attempt),
/// then 410 again (dead again).
#[derive(Clone, Default)]
struct Events {
    hits: Arc<Mutex<Vec<(bool, Hit)>>>,
    attempts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Events {
    async fn start() -> (Events, String) {
        let events = Events::default();
        let app = axum::Router::new()
            .fallback(events_answer)
            .with_state(events.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (events, url)
    }

    /// Waits until `n` unmarked events arrived; returns every request.
    async fn wait_for(&self, n: usize, secs: u64) -> Vec<Hit> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let hits = self.hits.lock().unwrap().clone();
            let unmarked = hits.iter().filter(|(marked, _)| !marked).count();
            if unmarked >= n {
                return hits.into_iter().map(|(_, h)| h).collect();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} events, got {unmarked}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn events_answer(
    AxumState(events): AxumState<Events>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let marked = json["metadata"]["openapi_check"] == DEAD_MARK;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    events.hits.lock().unwrap().push((
        marked,
        Hit {
            path: uri.to_string(),
            headers,
            body,
        },
    ));
    if !marked {
        return StatusCode::OK;
    }
    let mut attempts = events.attempts.lock().unwrap();
    let n = attempts.entry(id).or_default();
    *n += 1;
    if *n == 2 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::GONE
    }
}

/// A development-mode server with the API key [`KEY`] whose events
/// endpoint ([`Events`]) refuses the events of two messages: it holds two
/// dead deliveries (to list, get, retry, see die again and delete).
async fn app_with_dead_deliveries() -> (crate::helpers::App, Events, String) {
    let (events, events_url) = Events::start().await;
    let app = spawn_app(&[
        ("POSTERN_EVENTS_URL", events_url.as_str()),
        ("POSTERN_EVENTS_SECRET", SECRET),
        ("POSTERN_API_KEYS", KEY),
        // The attempt after a 503 comes 2 s later: the checker sees the
        // retried delivery pending, then dead again.
        ("POSTERN_RETRY_SCHEDULE", "2s"),
        ("POSTERN_RETRY_JITTER", "0"),
    ])
    .await;
    let base = format!("http://{}", app.http);

    // Two dead deliveries (their message.sent events, refused with 410).
    let client = reqwest::Client::new();
    for i in 0..2 {
        let r = client
            .post(format!("{base}/v1/messages"))
            .bearer_auth(KEY)
            .json(&json!({
                "from": "app@example.com",
                "to": "bob@example.org",
                "subject": format!("dead letter {i}"),
                "text": "Its message.sent event is refused.",
                // For the history's downloads (the spec's links ask
                // for attachment 0 and the part with Content-ID `logo`).
                "attachments": [{"filename": "logo.png", "content_type": "image/png",
                                 "content": "iVBORw0KGgo=", "content_id": "logo"}],
                "metadata": {"openapi_check": DEAD_MARK},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = client
            .get(format!("{base}/v1/deliveries?state=dead"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["items"].as_array().map_or(0, Vec::len) == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no two dead deliveries: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    (app, events, base)
}

#[tokio::test]
async fn spec_matches_the_live_server_and_the_webhooks() {
    let (app, events, base) = app_with_dead_deliveries().await;
    let (ok, out) = run_check(&[SPEC, &base, KEY]).await;
    assert!(ok, "openapi_check.py found mismatches:\n{out}");
    for walked in [
        "ok   POST /v1/deliveries/{id}/retry [while pending] -> 409",
        "ok   DELETE /v1/deliveries/{id} [the dead delivery] -> 204",
        "ok   GET /v1/deliveries/{id} [deleted] -> 404",
    ] {
        assert!(out.contains(walked), "missing {walked:?} in:\n{out}");
    }
    // One message.sent per message the checker got accepted (each settles
    // as sent in development mode).
    let accepted = out
        .lines()
        .filter(|l| l.starts_with("info GET /v1/messages/") && l.ends_with("sent"))
        .count();
    assert!(
        accepted >= 4,
        "expected the four examples to be sent:\n{out}"
    );
    let hits = events.wait_for(accepted, 30).await;

    let mut bodies = Vec::new();
    for hit in &hits {
        assert!(hit.verify(), "event signed with POSTERN_EVENTS_SECRET");
        let headers: serde_json::Map<String, Value> = [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "user-agent",
            "content-type",
        ]
        .iter()
        .map(|h| (h.to_string(), Value::String(hit.header(h))))
        .collect();
        bodies.push(json!({"headers": headers, "body": hit.json()}));
    }
    bodies.extend(library_bodies().into_iter().map(|b| json!({"body": b})));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhooks.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bodies).unwrap()).unwrap();
    let (ok, out) = run_check(&[SPEC, "--webhook-bodies", file.to_str().unwrap()]).await;
    assert!(ok, "webhook bodies do not match the spec:\n{out}");
    app.stop().await;
}

/// Bodies the server builds, made with the library functions it uses, for
/// what development mode does not produce live: deferred, failed and dead
/// events, and payloads with TLS, AUTH, `raw`, attachments over
/// `max_attachment_inline` (with and without links) and an unparseable
/// message.
fn library_bodies() -> Vec<Value> {
    let envelope = |raw: bool, limit: Option<usize>| Envelope {
        id: "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b".into(),
        received_at: "2026-11-27T10:00:00.123Z".into(),
        mail_from: "alice@example.org".into(),
        rcpt_to: vec!["bob@example.com".into(), "carol@example.com".into()],
        helo: "mail.example.org".into(),
        remote_ip: "192.0.2.1".into(),
        tls: Some(TlsInfo {
            version: "TLSv1_3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        }),
        authenticated_user: Some("alice".into()),
        deliveries: vec![Delivery {
            target: Target::Webhook {
                route: "*".into(),
                url: "https://app.example/hooks/mail".into(),
            },
            rcpt_to: vec!["bob@example.com".into()],
            raw,
            max_attachment_inline: limit,
            attachment_urls: false,
        }],
        outbound: Some(Outbound {
            tags: vec!["t".into()],
            metadata: json!({"k": 1}).as_object().unwrap().clone(),
            message_id: "x@example.org".into(),
        }),
    };
    let mime = "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.com>, undisclosed-recipients:;\r\n\
        Subject: =?utf-8?q?caf=C3=A9?=\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n\
        Message-ID: <m1@example.org>\r\nIn-Reply-To: <m0@example.org>\r\nReferences: <a@x> <m0@example.org>\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n\
        --b\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
        --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF-1.4 a long enough body\r\n\
        --b--\r\n";
    let parse = |bytes: Vec<u8>| serde_json::from_slice::<Value>(&bytes).unwrap();
    let rcpt = |address: &str, status, reply: Option<&str>| RcptState {
        address: address.into(),
        status,
        reply: reply.map(str::to_string),
    };
    let dead = |last_error: Option<&str>| {
        let state = DeliveryState {
            state: State::Dead,
            attempts: 8,
            last_error: last_error.map(str::to_string),
            ..DeliveryState::fresh()
        };
        dead_event(&envelope(false, None), 0, "https://app.example/h", &state)
    };
    let plus = postern::model::subaddress::Delimiter::default();
    let linker = Linker::new(
        "https://postern.example",
        LinkKey::generate(),
        Duration::from_secs(3600),
    );
    let mut null_sender = envelope(false, None);
    null_sender.mail_from = String::new();
    null_sender.tls = None;
    null_sender.authenticated_user = None;
    vec![
        parse(payload(&envelope(true, Some(8)), 0, mime.as_bytes(), &plus)),
        parse(payload(&null_sender, 0, mime.as_bytes(), &plus)),
        // Over the inline limit with links: `url` and `url_expires_at`.
        parse(
            build(
                &envelope(false, Some(8)),
                0,
                &bytes::Bytes::copy_from_slice(mime.as_bytes()),
                &plus,
                Some((&linker, 1_796_119_200)),
                None,
            )
            .body
            .into_vec(),
        ),
        parse(payload(
            &envelope(false, None),
            0,
            b"\x00\x01 no header here\r\n",
            &plus,
        )),
        relay_event(
            "message.deferred",
            &envelope(false, None),
            &[rcpt(
                "bob@example.com",
                RcptStatus::Pending,
                Some("451 4.3.0 later"),
            )],
        ),
        relay_event(
            "message.failed",
            &envelope(false, None),
            &[rcpt(
                "bob@example.com",
                RcptStatus::Failed,
                Some("550 5.1.1 no such user"),
            )],
        ),
        relay_event(
            "message.sent",
            &envelope(false, None),
            &[rcpt("bob@example.com", RcptStatus::Sent, Some("250 ok"))],
        ),
        dead(Some("gave up after 8 attempts: endpoint answered 500")),
        dead(None),
    ]
}

/// The checker is only worth something if it fails: a spec with a wrong
/// response schema, a path the server does not have, a wrong error code and
/// a wrong webhook schema must each be reported.
#[tokio::test]
async fn checker_fails_on_a_wrong_spec() {
    let yaml = std::fs::read_to_string(SPEC).unwrap();
    let mutate = |yaml: &str, from: &str, to: &str| {
        assert_eq!(yaml.matches(from).count(), 1, "mutation anchor {from:?}");
        yaml.replacen(from, to, 1)
    };
    // SendAccepted.status is "queued", not "accepted".
    let bad = mutate(
        &yaml,
        "        status:\n          const: queued\n",
        "        status:\n          const: accepted\n",
    );
    // A path the server does not serve.
    let bad = mutate(&bad, "  /healthz:\n", "  /health:\n");
    // message.dead's `attempts` is an integer.
    let bad = mutate(
        &bad,
        "        attempts:\n          type: integer\n          minimum: 1\n",
        "        attempts:\n          type: string\n",
    );
    // `invalid_cursor` is a code of the listing's 400.
    let bad = mutate(
        &bad,
        "[invalid_state, invalid_limit, invalid_cursor, invalid_parameter]",
        "[invalid_state, invalid_limit, invalid_parameter]",
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.yaml");
    std::fs::write(&spec, &bad).unwrap();
    let bodies = dir.path().join("bodies.json");
    let dead = library_bodies()
        .into_iter()
        .filter(|b| b["type"] == "message.dead")
        .map(|b| json!({"body": b}))
        .collect::<Vec<_>>();
    std::fs::write(&bodies, serde_json::to_vec(&dead).unwrap()).unwrap();

    let app = spawn_app(&[]).await;
    let base = format!("http://{}", app.http);
    let spec = spec.to_str().unwrap();
    let (ok, out) = run_check(&[
        spec,
        &base,
        "dev",
        "--quiet",
        "--webhook-bodies",
        bodies.to_str().unwrap(),
    ])
    .await;
    assert!(!ok, "the checker accepted a wrong spec:\n{out}");
    for expected in [
        "FAIL POST /v1/messages [example text] -> 202: body does not match the documented schema: status:",
        "FAIL GET /health [documented call] -> 404: 404 not_found for the path itself",
        "FAIL webhook body #0 (message.dead): body does not match the documented schema: attempts:",
        "FAIL GET /v1/deliveries [query cursor=..%2F..%2Fetc] -> 400: body does not match the documented schema: error/code:",
        // This server holds no dead delivery.
        "FAIL GET /v1/deliveries?state=dead: no dead delivery to walk",
        // Bodies of other types were not given.
        "FAIL webhook message.received: documented, but no body of this type was checked",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    app.stop().await;
}

const SCHEMATHESIS_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/schemathesis/config.toml"
);
const SCHEMATHESIS_HOOKS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis/hooks.py");

/// Runs schemathesis (from the test venv) on `spec` against `base` with
/// every check, positive and negative data, a fixed seed and a bounded
/// number of examples; returns (success, output).
///
/// `--workers 1` and the seed make the generated requests the same on every
/// run; the example budget keeps the run to seconds (a few thousand
/// requests).
async fn run_schemathesis(spec: &str, base: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(python())
            .args(["-m", "schemathesis.cli", "--no-color"])
            .args(["--config-file", SCHEMATHESIS_CONFIG])
            .args(["run", spec, "--url", base])
            .args(["--header", &format!("Authorization: Bearer {KEY}")])
            .args(["--checks", "all", "--mode", "all"])
            .args(["--max-examples", "50", "--seed", "20261201"])
            .args(["--workers", "1", "--continue-on-failure"])
            .args(["--generation-database", "none", "--request-timeout", "10"])
            .env("SCHEMATHESIS_HOOKS", SCHEMATHESIS_HOOKS)
            .env("PYTHONIOENCODING", "utf-8")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "120")
            // Reports, caches and the like stay in the temp dir.
            .current_dir(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis finishes in time")
    .expect("python starts");
    (out.status.success(), transcript(&out))
}

/// How many test cases schemathesis reports as generated.
fn generated(out: &str) -> usize {
    // The summary line `980 generated, 980 passed, 12 skipped` (warnings
    // above it may say "generated" too).
    out.lines()
        .find_map(|l| {
            let (n, _) = l.trim().split_once(" generated, ")?;
            n.trim().parse().ok()
        })
        .unwrap_or(0)
}

/// Property-based testing of docs/openapi.yaml against the real server:
/// schemathesis generates valid and invalid requests for every operation
/// (and follows the spec's links, so deliveries are fetched, retried and
/// deleted for real) and checks every answer against the spec: no 5xx,
/// documented statuses, content types, headers and schemas, invalid data
/// refused, valid data accepted (with tests/schemathesis/hooks.py for the
/// 422s of rules no schema can state).
#[tokio::test]
async fn schemathesis_finds_no_disagreement_between_spec_and_server() {
    let (app, _events, base) = app_with_dead_deliveries().await;
    let (ok, out) = run_schemathesis(SPEC, &base).await;
    assert!(ok, "schemathesis found disagreements:\n{out}");
    let n = generated(&out);
    assert!(
        n > 500,
        "schemathesis generated only {n} test cases:\n{out}"
    );
    let operations = spec_operations(&std::fs::read_to_string(SPEC).unwrap()).len();
    assert!(
        out.contains(&format!("Tested: {operations}\n")),
        "not all {operations} operations were tested:\n{out}"
    );
    // The spec's links led to the dead deliveries: they were not only
    // asked for by made-up ids (which schemathesis reports as missing data).
    assert!(
        !out.contains("Missing test data"),
        "deliveries were never found:\n{out}"
    );
    app.stop().await;
}

/// The schemathesis run is only worth something if it fails when spec and
/// server drift apart: each mutation of the spec below is one kind of
/// drift, and each must be reported.
#[tokio::test]
async fn schemathesis_fails_when_spec_and_server_drift_apart() {
    let yaml = std::fs::read_to_string(SPEC).unwrap();
    let mutate = |yaml: &str, from: &str, to: &str| {
        assert_eq!(yaml.matches(from).count(), 1, "mutation anchor {from:?}");
        yaml.replacen(from, to, 1)
    };
    // 1. The spec forgets which fields go together (`envelope` needs
    //    `raw`, structured requests need `from`...): the server's 422 for a
    //    schema-valid body is caught by hooks.py.
    let one_of = yaml
        .find("      oneOf:\n        - title: Structured")
        .expect("SendRequest's oneOf");
    let props = yaml[one_of..]
        .find("      properties:\n        from:\n")
        .expect("SendRequest's properties")
        + one_of;
    let bad = format!("{}{}", &yaml[..one_of], &yaml[props..]);
    // 2. The spec is looser than the server: any string as a cursor.
    let bad = mutate(
        &bad,
        "            invalid_cursor`.\n          schema:\n            $ref: \"#/components/schemas/DeliveryId\"\n",
        "            invalid_cursor`.\n          schema:\n            type: string\n",
    );
    // 3. The spec is stricter than the server: `limit` up to 400 only.
    let bad = mutate(
        &bad,
        "            minimum: 1\n            maximum: 500\n",
        "            minimum: 1\n            maximum: 400\n",
    );
    // 4. A response schema that is wrong: SendAccepted.status.
    let bad = mutate(
        &bad,
        "        status:\n          const: queued\n",
        "        status:\n          const: accepted\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.yaml");
    std::fs::write(&spec, &bad).unwrap();

    let app = spawn_app(&[("POSTERN_API_KEYS", KEY)]).await;
    let base = format!("http://{}", app.http);
    let (ok, out) = run_schemathesis(spec.to_str().unwrap(), &base).await;
    assert!(!ok, "schemathesis accepted a drifted spec:\n{out}");
    for expected in [
        "Custom check failed: `shape_rules_are_in_the_schema`",
        "Schema-valid request rejected",
        "Schema-violating request accepted",
        "Response violates schema",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    app.stop().await;
}

/// A Python run's stdout, then its stderr, for assertion messages.
fn transcript(out: &std::process::Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
