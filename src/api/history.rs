//! The message history over HTTP (#14): `GET /v1/messages` (newest first,
//! filters, cursor paging), `GET /v1/messages/{id}` (one message, inbound
//! or sent through the API, with its deliveries and their attempts),
//! `…/raw` (the source as received), `…/attachments/{n}` (the `n`th entry
//! of the webhook payload's `attachments`, decoded) and `…/cid/{content-id}`
//! (an inline part, for `cid:` images). What the store keeps and for how
//! long is [`crate::spool::history`].
//!
//! Every parameter is checked before the store sees it; a bad one is a
//! `400` naming it.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::auth::Authorized;
use super::deliveries::bad_request;
use super::{ApiError, ApiState, attachments};
use crate::delivery::outbox::OutboxRecord;
use crate::mail::{self, PayloadOptions};
use crate::model::attachment_url::AttachmentMode;
use crate::spool::history::{DeliveryDetail, MAX_PAGE, MessageDetail};
use crate::spool::{self, Direction, MessageQuery, MessageStatus, RECORDS_OUTBOX};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// Longest `address` or `q`.
const MAX_NEEDLE: usize = 256;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/messages/{id}", get(show))
        .route("/v1/messages/{id}/raw", get(raw))
        .route("/v1/messages/{id}/attachments/{n}", get(attachment))
        .route("/v1/messages/{id}/cid/{cid}", get(inline_part))
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no message with this id",
    )
    .field("id")
}

/// Pure: the query string of `GET /v1/messages` as a [`MessageQuery`].
pub(super) fn parse_query(query: &str) -> Result<MessageQuery, ApiError> {
    let mut q = MessageQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !seen.insert(name.to_string()) {
            return Err(bad_request(
                "invalid_parameter",
                &name,
                format!("{name} is given more than once"),
            ));
        }
        match &*name {
            "direction" => {
                q.direction = Some(Direction::parse(&value).ok_or_else(|| {
                    bad_request(
                        "invalid_direction",
                        "direction",
                        "direction must be inbound or outbound",
                    )
                })?)
            }
            "status" => {
                q.status = Some(MessageStatus::parse(&value).ok_or_else(|| {
                    bad_request(
                        "invalid_status",
                        "status",
                        "status must be pending, delivered, dead or partial",
                    )
                })?)
            }
            "address" => q.address = Some(needle("address", &value)?),
            "q" => q.text = Some(needle("q", &value)?),
            "since" => q.since_ms = Some(instant("since", &value)?),
            "until" => q.until_ms = Some(instant("until", &value)?),
            "cursor" => {
                if !spool::is_message_id(&value) {
                    return Err(bad_request(
                        "invalid_cursor",
                        "cursor",
                        "cursor must be a next_cursor from a previous page",
                    ));
                }
                q.cursor = Some(value.to_string());
            }
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n) && !value.starts_with(['+', '0']))
                    .ok_or_else(|| {
                        bad_request(
                            "invalid_limit",
                            "limit",
                            format!("limit must be a number from 1 to {MAX_PAGE}"),
                        )
                    })?
            }
            other => {
                return Err(bad_request(
                    "invalid_parameter",
                    other,
                    format!(
                        "unknown query parameter {other:?}: use direction, status, address, q, since, until, cursor or limit"
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// Pure: a search text: 1 to [`MAX_NEEDLE`] characters, no control
/// characters.
fn needle(field: &'static str, value: &str) -> Result<String, ApiError> {
    let n = value.chars().count();
    if n == 0 || n > MAX_NEEDLE || value.chars().any(char::is_control) {
        return Err(bad_request(
            "invalid_parameter",
            field,
            format!("{field} must be 1 to {MAX_NEEDLE} characters, without control characters"),
        ));
    }
    Ok(value.to_string())
}

/// Pure: an RFC 3339 time as unix ms (a time before 1970 is 0: no
/// message is older).
fn instant(field: &'static str, value: &str) -> Result<u64, ApiError> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| u64::try_from((t.unix_timestamp_nanos() / 1_000_000).max(0)).unwrap_or(u64::MAX))
        .ok_or_else(|| {
            bad_request(
                "invalid_time",
                field,
                format!("{field} must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"),
            )
        })
}

/// `GET /v1/messages`.
pub(super) async fn list(
    State(st): State<ApiState>,
    _: Authorized,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(query.as_deref().unwrap_or_default())?;
    let page = st
        .store
        .list_messages(&q)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(json!({"messages": page.items, "next_cursor": page.next_cursor})).into_response())
}

/// One delivery as `GET /v1/messages/{id}` shows it.
fn delivery_json(d: &DeliveryDetail) -> Value {
    json!({
        "id": d.id,
        "kind": d.kind,
        "target": d.target,
        "state": d.state.state,
        "attempt_count": d.state.attempts,
        "last_error": d.state.last_error,
        "recipients": d.state.recipients,
        "attempts": d.state.history,
    })
}

fn deliveries_json(detail: Option<&MessageDetail>) -> Value {
    detail
        .map(|d| d.deliveries.iter().map(delivery_json).collect())
        .unwrap_or_else(|| Value::Array(Vec::new()))
}

/// `GET /v1/messages/{id}`: for API mail, its status record (every field
/// it always had, `sending` while a relay attempt is in flight) with its
/// direction and deliveries; for inbound mail, the envelope, the
/// verdicts and the deliveries. Deliveries are empty once the message
/// left the history (its status record is kept apart, for
/// `POSTERN_STATUS_RETENTION`).
pub(super) async fn show(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    _: Authorized,
) -> Result<Response, ApiError> {
    // Only the exact shape of an id reaches the store.
    if !spool::is_message_id(&id) {
        return Err(not_found());
    }
    let detail = st
        .store
        .message_detail(&id)
        .await
        .map_err(ApiError::unavailable)?;
    let record = st
        .store
        .read_record(RECORDS_OUTBOX, &format!("{id}.json"))
        .await
        .map_err(ApiError::unavailable)?;
    let record = match record {
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(ApiError::unavailable)?),
        // API mail before its first attempt has no record: it is queued.
        None => detail
            .as_ref()
            .filter(|d| d.envelope.outbound.is_some())
            .map(|d| OutboxRecord::queued(&d.envelope)),
    };
    if let Some(mut record) = record {
        if st.sending.contains(&id) {
            record.status = record.status.while_sending();
        }
        let mut out = serde_json::to_value(record).map_err(ApiError::unavailable)?;
        out["direction"] = json!(Direction::Outbound);
        out["deliveries"] = deliveries_json(detail.as_ref());
        return Ok(Json(out).into_response());
    }
    let Some(d) = detail else {
        return Err(not_found());
    };
    let s = &d.summary;
    let env = &d.envelope;
    Ok(Json(json!({
        "id": s.id,
        "direction": s.direction,
        "status": s.status,
        "received_at": s.received_at,
        "mail_from": s.mail_from,
        "rcpt_to": s.rcpt_to,
        "subject": s.subject,
        "size": s.size,
        "helo": env.helo,
        "remote_ip": env.remote_ip,
        "tls": env.tls,
        "authenticated_user": env.authenticated_user,
        "auth": d.auth,
        "deliveries": deliveries_json(Some(&d)),
    }))
    .into_response())
}

/// The source of listed message `id` (not an event's), or 404.
async fn source(st: &ApiState, id: &str) -> Result<Vec<u8>, ApiError> {
    if !spool::is_message_id(id) {
        return Err(not_found());
    }
    let listed = st
        .store
        .message_detail(id)
        .await
        .map_err(ApiError::unavailable)?
        .is_some();
    if !listed {
        return Err(not_found());
    }
    match st.store.read_message(id).await {
        Ok(raw) => Ok(raw),
        // Swept between the two reads.
        Err(spool::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found()),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

/// `GET /v1/messages/{id}/raw`: the message as received, byte for byte.
pub(super) async fn raw(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    _: Authorized,
) -> Result<Response, ApiError> {
    let raw = source(&st, &id).await?;
    let mut out = HeaderMap::new();
    attachments::untrusted(
        &mut out,
        "message/rfc822",
        Some(&format!("{id}.eml")),
        false,
    );
    Ok((out, raw).into_response())
}

/// An attachment of a message: its payload entry and decoded bytes.
struct Part {
    content_type: String,
    filename: Option<String>,
    bytes: Vec<u8>,
}

/// Pure: the attachments of `raw` in the payload's order, decoded (the
/// webhook payload's parser, every attachment "linked" so its bytes come
/// back).
fn parts(raw: &[u8]) -> Vec<(mail::Attachment, Vec<u8>)> {
    let opts = PayloadOptions {
        include_raw: false,
        max_attachment_inline: None,
        attachments: AttachmentMode::Url,
        linkable: true,
        defer: false,
    };
    let parsed = mail::parse_message(raw, &opts);
    let mut bytes: Vec<Option<Vec<u8>>> = vec![None; parsed.attachments.len()];
    for l in parsed.linked {
        if let Some(slot) = bytes.get_mut(l.index) {
            *slot = Some(l.bytes);
        }
    }
    parsed
        .attachments
        .into_iter()
        .zip(bytes)
        .filter_map(|(a, b)| Some((a, b?)))
        .collect()
}

fn part_response(part: Part, inline: bool) -> Response {
    let mut out = HeaderMap::new();
    attachments::untrusted(
        &mut out,
        &part.content_type,
        part.filename.as_deref(),
        inline,
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    (out, part.bytes).into_response()
}

fn no_part() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such attachment in this message",
    )
}

/// `GET /v1/messages/{id}/attachments/{n}`: attachment `n` (from 0, as
/// in the payload's `attachments`), decoded, always as a download.
pub(super) async fn attachment(
    State(st): State<ApiState>,
    Path((id, n)): Path<(String, String)>,
    _: Authorized,
) -> Result<Response, ApiError> {
    // The spec's pattern: up to 4 digits, no leading zeros.
    let index = (n.len() <= 4 && (n == "0" || !n.starts_with('0')))
        .then(|| n.parse::<usize>().ok())
        .flatten()
        .filter(|_| n.bytes().all(|b| b.is_ascii_digit()));
    let raw = source(&st, &id).await?;
    let Some(index) = index else {
        return Err(no_part());
    };
    let (a, bytes) = parts(&raw).into_iter().nth(index).ok_or_else(no_part)?;
    Ok(part_response(
        Part {
            content_type: a.content_type,
            filename: a.filename,
            bytes,
        },
        false,
    ))
}

/// `GET /v1/messages/{id}/cid/{content-id}`: the part with that
/// `Content-ID` (without angle brackets); images inline (what a `cid:`
/// reference shows), anything else as a download.
pub(super) async fn inline_part(
    State(st): State<ApiState>,
    Path((id, cid)): Path<(String, String)>,
    _: Authorized,
) -> Result<Response, ApiError> {
    let raw = source(&st, &id).await?;
    let (a, bytes) = parts(&raw)
        .into_iter()
        .find(|(a, _)| a.content_id.as_deref() == Some(cid.as_str()))
        .ok_or_else(no_part)?;
    let inline = a.content_type.starts_with("image/") && a.content_type != "image/svg+xml";
    Ok(part_response(
        Part {
            content_type: a.content_type,
            filename: a.filename,
            bytes,
        },
        inline,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_checked() {
        let q = parse_query(
            "direction=inbound&status=dead&address=bob%40x&q=Invoice&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00%2B01:00&limit=10&cursor=0192f0c5c5a87b5e9d1d6d6f1c1e2a3b",
        )
        .unwrap();
        assert_eq!(q.direction, Some(Direction::Inbound));
        assert_eq!(q.status, Some(MessageStatus::Dead));
        assert_eq!(q.address.as_deref(), Some("bob@x"));
        assert_eq!(q.text.as_deref(), Some("Invoice"));
        assert_eq!(q.since_ms, Some(1_767_225_600_000));
        assert_eq!(q.until_ms, Some(1_767_225_600_000 + 23 * 3_600_000));
        assert_eq!(q.limit, 10);
        assert_eq!(parse_query("").unwrap().limit, DEFAULT_LIMIT);
        // What a JSON Schema `date-time` allows is taken.
        for t in [
            "0000-01-01T00:00:00Z",
            "2026-01-01t00:00:00z",
            "2026-01-01T00:00:00.123456789-23:59",
            "1969-12-31T23:59:59Z",
        ] {
            let q = parse_query(&format!("since={}", t.replace('+', "%2B"))).unwrap();
            assert!(q.since_ms.is_some(), "{t}");
        }
        for bad in [
            "direction=in",
            "status=Pending",
            "address=",
            "q=%00",
            "since=yesterday",
            "limit=0",
            "limit=201",
            "limit=010",
            "limit=+5",
            "cursor=abc",
            "page=2",
            "limit=5&limit=6",
        ] {
            let e = parse_query(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.field.is_some(), "{bad}");
        }
    }
}
