//! Operator access to deliveries: `/v1/deliveries` lists the pending and
//! dead ones, shows one, retries a dead one and deletes one. The command
//! line over this API, `postern deliveries …`, is a client of it in the
//! binary (`src/cli/deliveries.rs`).
//!
//! A delivery is named `<message id>.<index>`: delivery `index` of the
//! message's envelope, its file `state/<message id>.<index>.json`. Ids are
//! checked ([`spool::parse_delivery_id`]) before anything touches the disk.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

use super::auth::Authorized;
use super::{ApiError, ApiState};
use crate::spool::{self, Change, DeliveryInfo, JobKey, Kind};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest `limit`.
pub const MAX_LIMIT: usize = 500;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/deliveries", get(list))
        .route("/v1/deliveries/{id}", get(show).delete(delete))
        .route("/v1/deliveries/{id}/retry", post(retry))
}

/// One delivery, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// `<message id>.<index>`.
    pub id: String,
    pub message_id: String,
    pub kind: Kind,
    pub route: String,
    /// `null` for relay deliveries (they go to `POSTERN_RELAY_URL`).
    pub url: Option<String>,
    pub recipients: Vec<String>,
    pub state: spool::State,
    pub attempts: u32,
    /// RFC 3339; `null` unless pending.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    /// When the message was accepted, RFC 3339.
    pub received_at: String,
}

impl From<DeliveryInfo> for Item {
    fn from(d: DeliveryInfo) -> Item {
        let next_attempt_at = (d.state.state == spool::State::Pending).then(|| {
            // No recorded time (never tried, or retried by hand): due now.
            let ms = if d.state.next_at == 0 {
                spool::now_ms()
            } else {
                d.state.next_at
            };
            rfc3339_ms(ms)
        });
        Item {
            id: spool::delivery_id(&d.key),
            message_id: d.key.id,
            kind: d.delivery.target.kind(),
            route: d.delivery.target.route().to_string(),
            url: d.delivery.target.url().map(str::to_string),
            recipients: d.delivery.rcpt_to,
            state: d.state.state,
            attempts: d.state.attempts,
            next_attempt_at,
            last_error: d.state.last_error,
            received_at: d.received_at,
        }
    }
}

/// RFC 3339 of Unix milliseconds (also the console's).
pub fn rfc3339_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A page of `GET /v1/deliveries`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A `400` naming the query parameter `field` (also the history's).
pub(super) fn bad_request(code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message).field(field)
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no pending or dead delivery with this id",
    )
    .field("id")
}

/// The id from the path, checked before it names a file.
fn key_of(id: &str) -> Result<JobKey, ApiError> {
    spool::parse_delivery_id(id).ok_or_else(not_found)
}

/// `GET /v1/deliveries?state=pending|dead&limit=N&cursor=C`: ordered by
/// message id, then delivery number; without `state`, both.
async fn list(
    State(st): State<ApiState>,
    _: Authorized,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let mut states = vec![spool::State::Pending, spool::State::Dead];
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    let query = query.unwrap_or_default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "state" => {
                states = match &*value {
                    "pending" => vec![spool::State::Pending],
                    "dead" => vec![spool::State::Dead],
                    _ => {
                        return Err(bad_request(
                            "invalid_state",
                            "state",
                            "state must be pending or dead",
                        ));
                    }
                }
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad_request(
                            "invalid_limit",
                            "limit",
                            format!("limit must be a number from 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            "cursor" => {
                after = Some(spool::parse_delivery_id(&value).ok_or_else(|| {
                    bad_request(
                        "invalid_cursor",
                        "cursor",
                        "cursor must be a next_cursor from a previous page",
                    )
                })?)
            }
            other => {
                return Err(bad_request(
                    "invalid_parameter",
                    other,
                    format!("unknown query parameter {other:?}: use state, limit or cursor"),
                ));
            }
        }
    }
    let (found, more) = st
        .store
        .list_deliveries(states, after, limit)
        .await
        .map_err(ApiError::unavailable)?;
    let items: Vec<Item> = found.into_iter().map(Item::from).collect();
    let next_cursor = if more {
        items.last().map(|i| i.id.clone())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }).into_response())
}

/// `GET /v1/deliveries/{id}`.
async fn show(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    _: Authorized,
) -> Result<Response, ApiError> {
    let key = key_of(&id)?;
    let info = st
        .store
        .delivery_info(&key)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(not_found)?;
    Ok(Json(Item::from(info)).into_response())
}

/// `POST /v1/deliveries/{id}/retry`: a dead delivery is pending again,
/// with no attempts, and goes to the worker at once.
async fn retry(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    _: Authorized,
) -> Result<Response, ApiError> {
    let key = key_of(&id)?;
    match st
        .store
        .retry_dead(&key)
        .await
        .map_err(ApiError::unavailable)?
    {
        Change::NotFound => Err(not_found()),
        Change::WrongState(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_dead",
            format!(
                "only dead deliveries can be retried; this one is {}",
                state_name(state)
            ),
        )
        .field("id")),
        Change::Done { .. } => {
            // Read before scheduling: once queued it may be gone at once.
            let item = st
                .store
                .delivery_info(&key)
                .await
                .map_err(ApiError::unavailable)?
                .map(Item::from);
            st.store.schedule_fresh(key.clone(), spool::now_ms());
            info!(message_id = %key.id, delivery = key.index, "dead delivery retried by API");
            Ok(Json(item.map_or_else(|| json!({"id": id}), |i| json!(i))).into_response())
        }
    }
}

/// `DELETE /v1/deliveries/{id}`: gives up on a pending or dead delivery.
/// When no delivery of the message is left, the message leaves the spool.
async fn delete(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    _: Authorized,
) -> Result<Response, ApiError> {
    let key = key_of(&id)?;
    match st
        .store
        .discard(&key, &[spool::State::Pending, spool::State::Dead])
        .await
        .map_err(ApiError::unavailable)?
    {
        Change::NotFound => Err(not_found()),
        Change::WrongState(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_delivered",
            "this delivery is already delivered",
        )
        .field("id")),
        Change::Done { message_removed } => {
            info!(
                message_id = %key.id,
                delivery = key.index,
                message_removed,
                reason = "deleted by API",
                "delivery deleted"
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// A state as the API names it (the same word as its JSON form).
pub fn state_name(s: spool::State) -> &'static str {
    match s {
        spool::State::Pending => "pending",
        spool::State::Dead => "dead",
        spool::State::Delivered => "delivered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_from_ms() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
