//! `Idempotency-Key`: a client that retries `POST /v1/messages` with the
//! same key (and the same body) gets the first answer again, marked
//! `idempotent-replayed: true`, instead of sending the message twice. Keys
//! are scoped to the API key that sent them, remembered for 24 hours in the
//! store's records (swept hourly), and one request per key is handled at a
//! time in a process ([`Lock`]); across replicas of the shared store, the
//! key's row is inserted by the transaction that commits the message (its
//! primary key lets one of two concurrent requests commit; the other
//! commits nothing and answers from the winner's record).
//!
//! # The record commits with its message (#12)
//!
//! The record is handed to the commit ([`spool::Incoming::commit_keyed`]).
//! With the shared store both are one transaction. The file spool writes
//! the record (durably) *before* its message is committed, and a record is
//! only trusted when its message was committed: the message is in the
//! spool, or its status record is ([`Store::is_committed`]). So a `kill -9`
//! at any point leaves one of:
//! - no record: the message was not committed either (the record comes
//!   first), and the retry sends it, once;
//! - a record whose message never committed (killed between the two): not
//!   trusted, the retry sends the message and its record replaces this one;
//! - a record and its message: the retry is answered from the record.
//!
//! Before, the record followed the commit, so a crash between the two let a
//! retried request send the mail twice. A record that cannot be written
//! now fails the request (`503`) before anything is sent.
//!
//! Limit: a record outlives its proof when `POSTERN_STATUS_RETENTION` is
//! shorter than the 24 hours a key is kept; a retry after the status
//! record was swept (and the message delivered) is then sent again.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::spool::{self, KeyRecord, RECORDS_IDEM, Store};

/// Idempotency keys are remembered this long.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// Serialises requests that carry an `Idempotency-Key`, so two concurrent
/// retries of one request cannot both send.
#[derive(Clone, Default)]
pub struct Lock(Arc<tokio::sync::Mutex<()>>);

impl Lock {
    /// Held from the check to the record: one keyed request at a time.
    pub(super) async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// What an idempotency record keeps.
#[derive(Debug, Serialize, Deserialize)]
struct IdemRecord {
    body_sha256: String,
    created_ms: u64,
    status: u16,
    response: Value,
}

/// A request that carries an `Idempotency-Key`.
pub(super) struct Keyed {
    /// The record's name: the key, scoped to the API key.
    name: String,
    body_sha256: String,
}

impl Keyed {
    /// The request's key, if it has one; `422` for a key that is not 1 to
    /// 255 visible ASCII characters. `scope` is the API key's digest.
    pub(super) fn from_request(
        headers: &HeaderMap,
        scope: [u8; 32],
        body: &[u8],
    ) -> Result<Option<Keyed>, ApiError> {
        let Some(key) = key(headers)? else {
            return Ok(None);
        };
        Ok(Some(Keyed {
            name: record_name(&scope, key),
            body_sha256: hex(&Sha256::digest(body)),
        }))
    }

    /// The answer to replay, when this key was used within the last 24
    /// hours: the same answer for the same body, `422` for another body.
    pub(super) async fn replay(&self, spool: &Store) -> Result<Option<Response>, ApiError> {
        let record = spool
            .read_record(RECORDS_IDEM, &self.name)
            .await
            .map_err(ApiError::unavailable)?
            .and_then(|b| serde_json::from_slice::<IdemRecord>(&b).ok())
            .filter(|r| u128::from(spool::now_ms().saturating_sub(r.created_ms)) < TTL.as_millis());
        let Some(r) = record else {
            return Ok(None);
        };
        let id = r.response.get("id").and_then(Value::as_str).unwrap_or("");
        if !spool
            .is_committed(id)
            .await
            .map_err(ApiError::unavailable)?
        {
            // Written for a request whose message never committed.
            return Ok(None);
        }
        if r.body_sha256 != self.body_sha256 {
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
        Ok(Some(resp))
    }

    /// The record of the `202` answer, committed with its message
    /// ([`spool::Incoming::commit_keyed`]; see the module docs).
    pub(super) fn record(&self, response: &Value) -> KeyRecord {
        let rec = IdemRecord {
            body_sha256: self.body_sha256.clone(),
            created_ms: spool::now_ms(),
            status: 202,
            response: response.clone(),
        };
        KeyRecord {
            name: self.name.clone(),
            record: serde_json::to_vec(&rec).expect("record serialises"),
            ttl: TTL,
        }
    }
}

/// The `Idempotency-Key` header, if any.
fn key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .field("Idempotency-Key")
        })
}

/// The record of `key` sent with the API key whose digest is `scope`.
fn record_name(scope: &[u8; 32], key: &str) -> String {
    let mut h = Sha256::new();
    h.update(scope);
    h.update(key.as_bytes());
    format!("{}.json", hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        let header = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert("idempotency-key", HeaderValue::from_bytes(v).unwrap());
            h
        };
        assert_eq!(key(&HeaderMap::new()).unwrap(), None);
        let long = "k".repeat(255);
        for ok in ["a", "order-42/retry:1", long.as_str()] {
            assert_eq!(key(&header(ok.as_bytes())).unwrap(), Some(ok));
        }
        for bad in [
            &b""[..],
            b"two words",
            &[b'k'; 256],
            b"caf\xc3\xa9",
            b"tab\there",
        ] {
            let e = key(&header(bad)).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("invalid_idempotency_key", Some("Idempotency-Key")),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn records_are_scoped_to_the_api_key() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(record_name(&a, "k"), record_name(&a, "k"));
        assert_ne!(record_name(&a, "k"), record_name(&b, "k"));
        assert_ne!(record_name(&a, "k"), record_name(&a, "l"));
        let name = record_name(&a, "k");
        assert_eq!(name.len(), 64 + ".json".len(), "{name}");
        assert!(name[..64].bytes().all(|c| c.is_ascii_hexdigit()), "{name}");
    }
}
