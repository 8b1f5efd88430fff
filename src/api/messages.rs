//! `POST /v1/messages`: JSON → MIME ([`crate::compose`]) → spool, answered
//! `202` only once the message is durable (its status, with the rest of the
//! history, is `GET /v1/messages/{id}` in [`super::history`]). `send` reads as its steps: key (the [`Authorized`]
//! extractor), media type, body within the size and memory limits, whether
//! we take messages at all, idempotency, compose, DKIM-sign
//! ([`compose::dkim`]), spool.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use super::auth::Authorized;
use super::budget::Reservation;
use super::idempotency::Keyed;
use super::{ApiError, ApiState, body};
use crate::compose;
use crate::delivery::outbox;
use crate::spool::{self, CommitError, Delivery, Envelope, Outbound, Target};

pub(super) async fn send(
    State(st): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    auth: Authorized,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    body::require_json(&headers)?;
    // Held until the answer: the body, what it parses into and the
    // message all count.
    let (body, _reservation) = read_body(&st, req).await?;
    accepting(&st)?;
    let keyed = Keyed::from_request(&headers, auth.scope, &body)?;
    let _guard = match keyed {
        Some(_) => Some(st.idempotency.hold().await),
        None => None,
    };
    if let Some(k) = &keyed
        && let Some(replay) = k.replay(&st.store).await?
    {
        return Ok(replay);
    }
    let message = compose_request(&st, body)?;
    spool_message(&st, peer, message, keyed).await
}

/// The request body, within `POSTERN_API_MAX_BYTES` (`413`) and the
/// memory budget (`503 busy`). The budget is reserved before the body is
/// read, for the declared length or else the limit, then shrunk to what
/// came.
async fn read_body(st: &ApiState, req: Request) -> Result<(Bytes, Reservation), ApiError> {
    let limit = st.settings.max_body;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over {limit} bytes"),
        )
    };
    let declared = declared_length(req.headers());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
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
        .map_err(|e| {
            if body::is_body_timeout(&e) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body did not arrive in time (POSTERN_HTTP_BODY_TIMEOUT)",
                )
            } else {
                too_large()
            }
        })?;
    reservation.shrink_to(body.len());
    Ok((body, reservation))
}

/// `Content-Length`, when it is there and a number.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
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

/// `503` while shutting down (the client retries elsewhere or later) or
/// with no relay to send through.
fn accepting(st: &ApiState) -> Result<(), ApiError> {
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
    Ok(())
}

/// A request made into a message, with what its envelope keeps beside it.
struct Message {
    composed: compose::Composed,
    /// `DKIM-Signature:` fields to put in front (empty when the `From`
    /// domain has no key).
    signature: Vec<u8>,
    tags: Vec<String>,
    metadata: Map<String, Value>,
}

/// The message a request describes; `400` or `422` for a request that
/// cannot be sent.
fn compose_request(st: &ApiState, body: Bytes) -> Result<Message, ApiError> {
    // Counts first, on the raw JSON: nothing is built for a request with
    // a million attachments.
    let limits = &st.settings.limits;
    match compose::scan(&body, limits) {
        Ok(()) => {}
        Err(compose::ScanError::Limit(e)) => return Err(ApiError::from(e)),
        // Not the request's shape: decoding names the problem and where.
        Err(compose::ScanError::Json(e)) => {
            body::decode::<compose::SendRequest>(&body)?;
            return Err(body::json_error(e));
        }
    }
    let request: compose::SendRequest = body::decode(&body)?;
    drop(body);
    let composed = compose::compose(&request, &st.settings.hostname, limits)?;
    // Signed once, here: every relay attempt sends these same bytes.
    let signature = st
        .settings
        .dkim
        .sign(&composed.message)
        .map_err(ApiError::unavailable)?;
    // Only tags and metadata are needed from here on; the rest (attachment
    // base64 included) goes now rather than while the message is spooled.
    // (The block makes the request a temporary, so its other fields are
    // dropped at the end of this statement, not of the function.)
    let compose::SendRequest { tags, metadata, .. } = { request };
    Ok(Message {
        composed,
        signature,
        tags,
        metadata,
    })
}

/// Spools the message for the relay (with its idempotency record), writes
/// its status record, schedules it, and returns the `202`; or, when a
/// concurrent request with the same key (on another replica) committed
/// first, that request's answer.
async fn spool_message(
    st: &ApiState,
    peer: SocketAddr,
    message: Message,
    keyed: Option<Keyed>,
) -> Result<Response, ApiError> {
    let Message {
        composed,
        signature,
        tags,
        metadata,
    } = message;
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
            attachment_urls: false,
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
        host = st.settings.hostname,
        date = crate::model::clock::rfc2822_now(),
    );
    let mut incoming = st
        .intake
        .accept(envelope)
        .await
        .map_err(ApiError::unavailable)?;
    // On top, as a signing MTA adds it after its own trace header.
    incoming
        .write(&signature)
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
    let response = json!({"id": id, "status": outbox::Status::Queued});
    // The record commits with its message (see `idempotency`).
    let record = keyed.as_ref().map(|k| k.record(&response));
    let committed = match incoming.commit_keyed(record).await {
        Ok(c) => c,
        Err(CommitError::KeyTaken) => {
            let keyed = keyed.expect("only a keyed commit loses its key");
            info!(message_id = %id, "a concurrent request with this Idempotency-Key was first; answering with its result");
            return keyed.replay(&st.store).await?.ok_or_else(|| {
                ApiError::unavailable("the Idempotency-Key's first request left no answer")
            });
        }
        Err(CommitError::Store(e)) => return Err(ApiError::unavailable(e)),
    };
    // No status record yet: until the first attempt writes one,
    // `GET /v1/messages/{id}` derives `queued` from the pending envelope
    // (`OutboxRecord::queued`), which saves a durable write per message.
    let envelope = committed.schedule();
    info!(message_id = %id, from = %envelope.mail_from, rcpts = envelope.rcpt_to.len(), "message queued for the relay");
    Ok((StatusCode::ACCEPTED, Json(response)).into_response())
}
