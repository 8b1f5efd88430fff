//! The HTTP API for sending mail: `POST /v1/messages` turns JSON into a
//! MIME message ([`crate::compose`]), spools it for the relay and answers `202`
//! only once it is durable; `GET /v1/messages/{id}` reports its status.
//!
//! Errors are JSON `{"error": {"code", "message", "field"}}`: 400 for
//! malformed JSON, 401 for a missing or wrong API key, 413 for a body over
//! `POSTERN_API_MAX_BYTES`, 415 for a body that is not declared JSON
//! ([`body`]), 422 for a request that parses but cannot be sent (including
//! every per-element limit, [`crate::compose::limits`]), 503 when the spool cannot take it
//! or the requests in flight fill the memory budget ([`budget`]); the
//! client retries a 503.

pub mod body;
pub mod budget;
pub mod deliveries;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use crate::compose;
use crate::config::Config;
use crate::delivery::outbox::{self, InFlight, OutboxRecord};
use crate::spool::{
    self, Delivery, Envelope, Intake, Outbound, Queue, RECORDS_IDEM, RECORDS_OUTBOX, Spool, Target,
};

/// Idempotency keys are remembered this long.
const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;

/// The API key accepted in development mode when none is configured.
pub const DEV_API_KEY: &str = "dev";

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub config: Arc<Config>,
    pub spool: Spool,
    pub queue: Arc<Queue>,
    /// Where accepted messages go (the same spool and queue).
    pub intake: Intake,
    /// Ids with a relay attempt in flight (status `sending`).
    pub sending: Arc<InFlight>,
    /// Serialises requests that carry an `Idempotency-Key`, so two
    /// concurrent retries of one request cannot both send.
    pub idempotency: Arc<tokio::sync::Mutex<()>>,
    /// Whether a relay exists to send through.
    pub relay_ready: bool,
    /// Once cancelled, new messages get `503` (the client retries
    /// elsewhere or later).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What `POST /v1/messages` requests may hold in memory together.
    pub budget: budget::Budget,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/messages", post(send))
        .route("/v1/messages/{id}", get(status))
        .merge(deliveries::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// An API error, rendered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A 5xx: the client gets a generic text, the log gets the detail.
    fn unavailable(detail: impl std::fmt::Display) -> Self {
        error!(error = %detail, "API request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the message could not be stored; try again later",
        )
    }
}

impl From<compose::FieldError> for ApiError {
    fn from(e: compose::FieldError) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: e.code,
            message: e.message,
            field: Some(e.field),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "field": self.field}});
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        resp
    }
}

/// Checks `Authorization: Bearer <key>` and returns the key's hash (the
/// scope of its idempotency keys). Keys are compared as SHA-256 digests in
/// constant time; the keys themselves are never stored or logged.
fn authorize(config: &Config, headers: &HeaderMap) -> Result<[u8; 32], ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <API key>"))?;
    // The scheme is case-insensitive (RFC 9110 11.1).
    let key = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .ok_or_else(|| unauthorized("the Authorization header must be Bearer <API key>"))?;
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let keys = &config.outbound.api_key_hashes;
    let mut ok = false;
    for k in keys {
        ok |= constant_time_eq(k, &digest);
    }
    if keys.is_empty() && config.dev_mode && key == DEV_API_KEY {
        ok = true;
    }
    if ok {
        Ok(digest)
    } else {
        Err(unauthorized("invalid API key"))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What an idempotency record keeps.
#[derive(Debug, Serialize, Deserialize)]
struct IdemRecord {
    body_sha256: String,
    created_ms: u64,
    status: u16,
    response: Value,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn send(
    State(st): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let scope = authorize(&st.config, &headers)?;
    body::require_json(&headers)?;
    let limit = st.config.outbound.api_max_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Reserved before the body is read, held until the answer: the body,
    // what it parses into and the message all count.
    let wanted = declared.unwrap_or(limit);
    let Some(mut reservation) = st.budget.try_reserve(wanted) else {
        warn!(
            bytes = wanted,
            available = st.budget.available(),
            "API memory budget full; answering 503"
        );
        discard(req.into_body(), limit).await;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many large requests are in progress; try again shortly",
        ));
    };
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| too_large())?;
    reservation.shrink_to(body.len());
    if st.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; try again",
        ));
    }
    if !st.relay_ready {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "relay_not_configured",
            "no POSTERN_RELAY_URL is configured, so nothing can be sent",
        ));
    }

    let idem_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| {
                    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())
                })
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                    .field("Idempotency-Key")
                })?;
            Some(k.to_string())
        }
    };
    // Held from the check to the record: one request per key at a time.
    let _guard = match idem_key {
        Some(_) => Some(st.idempotency.lock().await),
        None => None,
    };
    let body_hash = hex(&Sha256::digest(&body));
    let idem_name = idem_key.as_ref().map(|k| {
        let mut h = Sha256::new();
        h.update(scope);
        h.update(k.as_bytes());
        format!("{}.json", hex(&h.finalize()))
    });
    if let Some(name) = &idem_name {
        let record = st
            .spool
            .read_record(RECORDS_IDEM, name)
            .await
            .map_err(ApiError::unavailable)?
            .and_then(|b| serde_json::from_slice::<IdemRecord>(&b).ok())
            .filter(|r| spool::now_ms().saturating_sub(r.created_ms) < IDEMPOTENCY_TTL_MS);
        if let Some(r) = record {
            if r.body_sha256 != body_hash {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request body",
                )
                .field("Idempotency-Key"));
            }
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::ACCEPTED);
            let mut resp = (status, Json(r.response)).into_response();
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(resp);
        }
    }

    // Counts first, on the raw JSON: nothing is built for a request with
    // a million attachments.
    let limits = compose::Limits {
        max_recipients: st.config.limits.max_recipients,
        max_message_size: st.config.limits.max_message_size,
    };
    match compose::scan(&body, &limits) {
        Ok(()) => {}
        Err(compose::ScanError::Limit(e)) => return Err(ApiError::from(e)),
        // Not the request's shape: decoding names the problem and where.
        Err(compose::ScanError::Json(e)) => {
            body::decode::<compose::SendRequest>(&body)?;
            return Err(json_error(e));
        }
    }
    let request: compose::SendRequest = body::decode(&body)?;
    drop(body);
    let composed = compose::compose(&request, &st.config.hostname, &limits)?;
    // Only tags and metadata are needed from here on; the rest (attachment
    // base64 included) goes now rather than while the message is spooled.
    // (The block makes the request a temporary, so its other fields are
    // dropped at the end of this statement, not of the function.)
    let compose::SendRequest { tags, metadata, .. } = { request };

    let id = spool::new_id();
    let envelope = Envelope {
        id: id.clone(),
        received_at: crate::model::clock::rfc3339_now(),
        mail_from: composed.mail_from.clone(),
        rcpt_to: composed.rcpt_to.clone(),
        helo: "api".into(),
        remote_ip: peer.ip().to_string(),
        tls: None,
        authenticated_user: None,
        deliveries: vec![Delivery {
            target: Target::Relay,
            rcpt_to: composed.rcpt_to.clone(),
            raw: false,
            max_attachment_inline: None,
        }],
        outbound: Some(Outbound {
            tags,
            metadata,
            message_id: composed.message_id.clone(),
        }),
    };
    let received = format!(
        "Received: from [{ip}]\r\n\tby {host} (Postern) with HTTP id {id};\r\n\t{date}\r\n",
        ip = peer.ip(),
        host = st.config.hostname,
        date = crate::model::clock::rfc2822_now(),
    );
    let mut incoming = st
        .intake
        .accept(envelope)
        .await
        .map_err(ApiError::unavailable)?;
    incoming
        .write(received.as_bytes())
        .await
        .map_err(ApiError::unavailable)?;
    incoming
        .write(&composed.message)
        .await
        .map_err(ApiError::unavailable)?;
    let committed = incoming.commit().await.map_err(ApiError::unavailable)?;
    // Before the message is scheduled: its first attempt rewrites this.
    outbox::store(&st.spool, &OutboxRecord::queued(committed.envelope()))
        .await
        .unwrap_or_else(|e| {
            // The message is durable, so the promise of a 202 holds; the
            // status record reappears after the first attempt.
            warn!(message_id = %id, error = %e, "could not write the status record");
        });
    let response = json!({"id": id, "status": outbox::Status::Queued});
    if let Some(name) = &idem_name {
        let rec = IdemRecord {
            body_sha256: body_hash,
            created_ms: spool::now_ms(),
            status: 202,
            response: response.clone(),
        };
        if let Err(e) = st
            .spool
            .write_record(
                RECORDS_IDEM,
                name,
                serde_json::to_vec(&rec).expect("record serialises"),
            )
            .await
        {
            // The message is durable and will be sent; only a retry of this
            // request could now send it twice.
            warn!(message_id = %id, error = %e, "could not record the Idempotency-Key");
        }
    }
    let envelope = committed.schedule();
    info!(message_id = %id, from = %envelope.mail_from, rcpts = envelope.rcpt_to.len(), "message queued for the relay");
    Ok((StatusCode::ACCEPTED, Json(response)).into_response())
}

/// Reads and drops a body (up to `limit` bytes) without keeping it. A
/// client that sends its whole body before reading the answer (most do)
/// would otherwise see the connection reset instead of the answer.
async fn discard(mut body: axum::body::Body, limit: usize) {
    use axum::body::HttpBody as _;
    let mut seen = 0usize;
    while let Some(Ok(frame)) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
        if seen > limit {
            break;
        }
    }
}

/// A body that is not JSON is `400`; JSON of the wrong shape is `422`.
fn json_error(e: serde_json::Error) -> ApiError {
    if e.is_data() {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {e}"),
        )
    }
}

async fn status(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st.config, &headers)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no message with this id",
        )
        .field("id")
    };
    // Only the exact shape of an id reaches the store: anything else names
    // no message (a 300-character id would be an I/O error there).
    if !spool::is_message_id(&id) {
        return Err(not_found());
    }
    let bytes = st
        .spool
        .read_record(RECORDS_OUTBOX, &format!("{id}.json"))
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(not_found)?;
    let mut record: OutboxRecord = serde_json::from_slice(&bytes).map_err(ApiError::unavailable)?;
    if st.sending.contains(&id) {
        record.status = record.status.while_sending();
    }
    Ok(Json(record).into_response())
}

/// A known path with the wrong method, JSON like every other error.
pub async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support that method",
    )
    .into_response()
}

/// The fallback for unknown paths, JSON like every other error.
pub async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}
