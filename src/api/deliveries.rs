//! Operator access to deliveries: `/v1/deliveries` lists the pending and
//! dead ones, shows one, retries a dead one and deletes one; and
//! `postern deliveries …`, the command line over that API (run next to the
//! server, e.g. with `kubectl exec`).
//!
//! A delivery is named `<message id>.<index>`: delivery `index` of the
//! message's envelope, its file `state/<message id>.<index>.json`. Ids are
//! checked ([`spool::parse_delivery_id`]) before anything touches the disk.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

use super::{ApiError, ApiState, authorize};
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

fn rfc3339_ms(ms: u64) -> String {
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

fn bad_request(code: &'static str, field: &str, message: impl Into<String>) -> ApiError {
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
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    authorize(&st.config, &headers)?;
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
        .spool
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st.config, &headers)?;
    let key = key_of(&id)?;
    let info = st
        .spool
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st.config, &headers)?;
    let key = key_of(&id)?;
    match st
        .spool
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
                .spool
                .delivery_info(&key)
                .await
                .map_err(ApiError::unavailable)?
                .map(Item::from);
            st.queue.push(key.clone(), spool::now_ms());
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&st.config, &headers)?;
    let key = key_of(&id)?;
    match st
        .spool
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

fn state_name(s: spool::State) -> &'static str {
    match s {
        spool::State::Pending => "pending",
        spool::State::Dead => "dead",
        spool::State::Delivered => "delivered",
    }
}

// ---------------------------------------------------------------------------
// The command line: `postern deliveries …`

pub const CLI_USAGE: &str = "usage: postern deliveries list [--state dead|pending]
       postern deliveries retry <id>
       postern deliveries delete <id>

Talks to the running server at POSTERN_HTTP_LISTEN (0.0.0.0 is reached on
127.0.0.1) with the first key of POSTERN_API_KEYS (\"dev\" when unset).";

/// `postern deliveries <args>`; returns the exit code (0 done, 1 failed,
/// 2 usage).
pub fn cli(args: &[String]) -> i32 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = match args.as_slice() {
        ["list"] => Cmd::List(None),
        ["list", "--state", s] => Cmd::List(Some(s.to_string())),
        ["list", flag] if flag.starts_with("--state=") => {
            Cmd::List(Some(flag["--state=".len()..].to_string()))
        }
        ["retry", id] => Cmd::Retry(id.to_string()),
        ["delete", id] => Cmd::Delete(id.to_string()),
        ["help" | "-h" | "--help"] => {
            println!("{CLI_USAGE}");
            return 0;
        }
        _ => {
            eprintln!("{CLI_USAGE}");
            return 2;
        }
    };
    if let Cmd::List(Some(s)) = &cmd
        && s != "dead"
        && s != "pending"
    {
        eprintln!("--state must be dead or pending\n\n{CLI_USAGE}");
        return 2;
    }
    let client = match Client::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(async {
        match cmd {
            Cmd::List(state) => client.list(state.as_deref()).await,
            Cmd::Retry(id) => client.retry(&id).await,
            Cmd::Delete(id) => client.delete(&id).await,
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

enum Cmd {
    List(Option<String>),
    Retry(String),
    Delete(String),
}

struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    fn from_env() -> Result<Client, String> {
        let listen =
            std::env::var("POSTERN_HTTP_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
        let mut addr: std::net::SocketAddr = listen
            .trim()
            .parse()
            .map_err(|_| format!("POSTERN_HTTP_LISTEN: not an address: {listen}"))?;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let key = std::env::var("POSTERN_API_KEYS")
            .ok()
            .and_then(|keys| {
                keys.split([',', ' ', '\n'])
                    .find(|k| !k.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| super::DEV_API_KEY.to_string());
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Client {
            base: format!("http://{addr}"),
            key,
            http,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let resp = req.bearer_auth(&self.key).send().await.map_err(|e| {
            let mut msg = format!("cannot reach Postern at {}: {e}", self.base);
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("");
        let message = body["error"]["message"].as_str().unwrap_or("");
        Err(format!("{status}: {code}: {message}"))
    }

    async fn list(&self, state: Option<&str>) -> Result<(), String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", MAX_LIMIT.to_string())];
            if let Some(s) = state {
                query.push(("state", s.to_string()));
            }
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page: Page = self
                .send(
                    self.http
                        .get(format!("{}/v1/deliveries", self.base))
                        .query(&query),
                )
                .await?
                .json()
                .await
                .map_err(|e| format!("unexpected answer: {e}"))?;
            items.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        print!("{}", table(&items));
        let what = state.unwrap_or("pending or dead");
        match items.len() {
            0 => println!("no {what} deliveries"),
            1 => println!("1 {what} delivery"),
            n => println!("{n} {what} deliveries"),
        }
        Ok(())
    }

    async fn retry(&self, id: &str) -> Result<(), String> {
        let url = format!("{}/v1/deliveries/{}/retry", self.base, path_segment(id));
        self.send(self.http.post(url)).await?;
        println!("{id}: retrying now (pending, attempts reset)");
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), String> {
        let url = format!("{}/v1/deliveries/{}", self.base, path_segment(id));
        self.send(self.http.delete(url)).await?;
        println!("{id}: deleted");
        Ok(())
    }
}

/// Keeps an id typed by a person from changing the URL's path.
fn path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The readable table `deliveries list` prints (empty for no items).
pub fn table(items: &[Item]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let header = [
        "ID",
        "STATE",
        "KIND",
        "ATTEMPTS",
        "RECEIVED",
        "NEXT ATTEMPT",
        "URL",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|i| {
            [
                i.id.clone(),
                state_name(i.state).to_string(),
                i.kind.as_str().to_string(),
                i.attempts.to_string(),
                i.received_at.clone(),
                i.next_attempt_at.clone().unwrap_or_else(|| "-".into()),
                i.url.clone().unwrap_or_else(|| format!("({})", i.route)),
                i.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header.map(String::from));
    for r in &rows {
        line(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, state: spool::State, error: Option<&str>) -> Item {
        Item {
            id: id.into(),
            message_id: id.split('.').next().unwrap().into(),
            kind: Kind::Webhook,
            route: "*".into(),
            url: Some("http://h/hook".into()),
            recipients: vec!["a@b".into()],
            state,
            attempts: 1,
            next_attempt_at: None,
            last_error: error.map(str::to_string),
            received_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            item("ab.0", spool::State::Dead, Some("endpoint answered 410")),
            item("abcdef.12", spool::State::Pending, None),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID         STATE    KIND     ATTEMPTS"));
        assert!(lines[1].starts_with("ab.0       dead     webhook  1 "));
        assert!(lines[1].ends_with("endpoint answered 410"));
        assert!(lines[2].ends_with("  -"));
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn rfc3339_from_ms() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
