//! The HTTP listener: health, and in development mode the built-in webhook
//! receiver (`/dev/inbox`) that the catch-all route points at, so a fresh
//! checkout shows the whole SMTP → signed JSON loop with nothing else
//! running.

pub mod serve;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::model::secret::Secret;
use crate::model::sign::verify;

/// How many payloads the dev inbox keeps.
pub const DEV_INBOX_SIZE: usize = 100;

/// Signature timestamps further than this from now are refused, as
/// Standard Webhooks receivers do (replay protection).
const TOLERANCE_SECS: i64 = 5 * 60;

/// Most digits a `webhook-timestamp` may have: any Unix time until far
/// beyond the year 30 000 000 000, and `now - ts` cannot overflow.
const TIMESTAMP_MAX_DIGITS: usize = 18;

/// Reads `webhook-timestamp`: 1 to [`TIMESTAMP_MAX_DIGITS`] decimal digits
/// (no sign, no spaces, as the spec's pattern says). The error is the `400`
/// text: a value that is there but unusable is "invalid", never "missing".
fn timestamp(value: Option<&[u8]>) -> Result<i64, &'static str> {
    let value = value.ok_or("missing webhook-timestamp")?;
    if value.is_empty()
        || value.len() > TIMESTAMP_MAX_DIGITS
        || !value.iter().all(u8::is_ascii_digit)
    {
        return Err("invalid webhook-timestamp");
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or("invalid webhook-timestamp")
}

/// The development receiver's state.
pub struct DevInbox {
    secret: Secret,
    items: Mutex<VecDeque<Value>>,
}

impl DevInbox {
    pub fn new(secret: Secret) -> Arc<DevInbox> {
        Arc::new(DevInbox {
            secret,
            items: Mutex::new(VecDeque::with_capacity(DEV_INBOX_SIZE)),
        })
    }
}

/// What the operations endpoints look at.
#[derive(Clone)]
pub struct Ops {
    pub metrics: Arc<crate::telemetry::Metrics>,
    pub store: crate::spool::Store,
    pub shutdown: tokio_util::sync::CancellationToken,
    /// `/readyz` fails while the spool has less room than one message.
    pub max_message_size: u64,
}

pub fn router(inbox: Option<Arc<DevInbox>>, api: crate::api::ApiState, ops: Ops) -> Router {
    let r = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(
            Router::new()
                .route("/readyz", get(ready))
                .route("/metrics", get(metrics))
                .with_state(ops),
        )
        .merge(crate::api::router(api));
    let r = match inbox {
        Some(inbox) => r.merge(
            Router::new()
                .route("/dev/inbox", get(list_inbox).post(receive))
                // Payloads of maximum-size messages with base64 parts.
                .layer(axum::extract::DefaultBodyLimit::max(128 * 1024 * 1024))
                .with_state(inbox),
        ),
        None => r,
    };
    r.fallback(crate::api::error::not_found)
        .method_not_allowed_fallback(crate::api::error::method_not_allowed)
}

/// Ready: listeners bound (they are, before this router serves), the
/// spool writable, and not shutting down.
async fn ready(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "shutting down"})),
        );
    }
    match ops.store.probe().await {
        // Below one message's worth, every DATA gets 452: not ready, so a
        // balancer sends the mail to a replica that can take it.
        Ok(Some(free)) if free < ops.max_message_size => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "reason": format!(
                    "spool free space ({free} bytes) is below the maximum message size ({} bytes)",
                    ops.max_message_size
                ),
            })),
        ),
        Ok(_) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": format!("spool not writable: {e}")})),
        ),
    }
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    // Deliveries parked behind their endpoint's limit or breaker are out
    // of the schedule for a while, but pending all the same.
    let parked = ops.metrics.endpoint_parked.get();
    ops.metrics
        .spool_pending
        .set(ops.store.scheduled().await as i64 + parked);
    if let Some(stats) = ops.store.database_stats().await {
        ops.metrics.database_pool_in_use.set(stats.in_use as i64);
        ops.metrics.database_jobs_due.set(stats.jobs_due as i64);
    }
    let age = ops.store.oldest_age().await;
    ops.metrics
        .spool_oldest_pending_age
        .set(age.map_or(0.0, |d| d.as_secs_f64()));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.render(),
    )
}

async fn list_inbox(State(inbox): State<Arc<DevInbox>>, headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        // A browser: the console is the place to look (the JSON stays for
        // scripts and curl, which do not ask for HTML).
        return Redirect::to("/ui/messages").into_response();
    }
    let items: Vec<Value> = inbox
        .items
        .lock()
        .expect("inbox lock")
        .iter()
        .rev()
        .cloned()
        .collect();
    Json(json!({ "count": items.len(), "messages": items })).into_response()
}

/// Whether a request names `text/html` in its `Accept`, as browsers'
/// page loads do.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("text/html")
        })
}

/// Verifies like any Standard Webhooks receiver would, then keeps the
/// payload. 401 on a bad signature, so a mis-signed build shows up at once.
async fn receive(
    State(inbox): State<Arc<DevInbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (id, sig) = (h("webhook-id"), h("webhook-signature"));
    let ts = match timestamp(headers.get("webhook-timestamp").map(|v| v.as_bytes())) {
        Ok(ts) => ts,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - ts).abs() > TOLERANCE_SECS || !verify(&inbox.secret, id, ts, &body, sig) {
        return (StatusCode::UNAUTHORIZED, "bad webhook signature").into_response();
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let entry = json!({ "webhook_id": id, "verified": true, "payload": payload });
    let mut items = inbox.items.lock().expect("inbox lock");
    if items.len() == DEV_INBOX_SIZE {
        items.pop_front();
    }
    items.push_back(entry);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_timestamps() {
        assert_eq!(timestamp(Some(b"1764237600")), Ok(1_764_237_600));
        assert_eq!(timestamp(Some(b"0")), Ok(0));
        assert_eq!(
            timestamp(Some(b"999999999999999999")),
            Ok(999_999_999_999_999_999)
        );
        assert_eq!(timestamp(None), Err("missing webhook-timestamp"));
        for bad in [
            &b""[..],
            b"1234567890123456789",
            b"99999999999999999999999999",
            b"-1",
            b"+1",
            b"1.5",
            b" 1",
            b"1 ",
            b"abc",
            b"-9223372036854775808",
            b"\xff1",
        ] {
            assert_eq!(
                timestamp(Some(bad)),
                Err("invalid webhook-timestamp"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
