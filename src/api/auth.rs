//! API keys: `Authorization: Bearer <key>`, checked by the [`Authorized`]
//! extractor that every `/v1/` handler takes, before anything else of the
//! request is looked at. Keys are compared as SHA-256 digests in constant
//! time; the keys themselves are never stored or logged.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};

/// The API key accepted in development mode when none is configured.
pub const DEV_API_KEY: &str = "dev";

/// The keys the API accepts. `Debug` shows how many, not their digests.
#[derive(Clone)]
pub struct Keys {
    /// SHA-256 of each key of `POSTERN_API_KEYS`.
    hashes: Vec<[u8; 32]>,
    /// [`DEV_API_KEY`] is accepted: development mode with no keys set.
    dev: bool,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("keys", &self.hashes.len())
            .field("dev", &self.dev)
            .finish()
    }
}

impl Keys {
    pub fn new(hashes: Vec<[u8; 32]>, dev_mode: bool) -> Keys {
        Keys {
            dev: hashes.is_empty() && dev_mode,
            hashes,
        }
    }

    /// Checks an `Authorization` header value (`None`: missing or not
    /// text) and returns the key's digest.
    fn check(&self, authorization: Option<&str>) -> Result<[u8; 32], ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let value =
            authorization.ok_or_else(|| unauthorized("missing Authorization: Bearer <API key>"))?;
        // The scheme is case-insensitive (RFC 9110 11.1).
        let key = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or_else(|| unauthorized("the Authorization header must be Bearer <API key>"))?;
        if self.accepts(key) {
            Ok(Sha256::digest(key.as_bytes()).into())
        } else {
            Err(unauthorized("invalid API key"))
        }
    }

    /// Whether `key` is one of the accepted keys (also the web console's
    /// login, which has no `Authorization` header).
    pub fn accepts(&self, key: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Every configured key is compared, so the time taken does not
        // tell which one came close.
        let mut ok = false;
        for k in &self.hashes {
            ok |= constant_time_eq(k, &digest);
        }
        ok || (self.dev && key == DEV_API_KEY)
    }

    /// Whether any key at all is accepted (configured ones, or the
    /// development key).
    pub fn any(&self) -> bool {
        self.dev || !self.hashes.is_empty()
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request that carried a valid API key; a handler that takes one is
/// never reached without (`401`, JSON, `WWW-Authenticate: Bearer`).
#[derive(Debug)]
pub struct Authorized {
    /// SHA-256 of the key: the scope of its idempotency keys, so two
    /// clients cannot replay each other's answers.
    pub scope: [u8; 32],
}

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        st.settings
            .keys
            .check(value)
            .map(|scope| Authorized { scope })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k3y-of-at-least-16-chars";

    fn keys(configured: &[&str], dev_mode: bool) -> Keys {
        let hashes = configured
            .iter()
            .map(|k| Sha256::digest(k.as_bytes()).into())
            .collect();
        Keys::new(hashes, dev_mode)
    }

    fn verdict(keys: &Keys, header: Option<&str>) -> Result<[u8; 32], String> {
        keys.check(header).map_err(|e| {
            assert_eq!(
                (e.status, e.code),
                (StatusCode::UNAUTHORIZED, "unauthorized")
            );
            e.message
        })
    }

    #[test]
    fn bearer_keys() {
        let k = keys(&["another-key-of-16-chars", KEY], false);
        let digest: [u8; 32] = Sha256::digest(KEY.as_bytes()).into();
        type Verdict = Result<[u8; 32], &'static str>;
        let cases: &[(Option<&str>, Verdict)] = &[
            (Some("Bearer k3y-of-at-least-16-chars"), Ok(digest)),
            (Some("bearer k3y-of-at-least-16-chars"), Ok(digest)),
            (Some("BEARER  k3y-of-at-least-16-chars "), Ok(digest)),
            (None, Err("missing Authorization: Bearer <API key>")),
            (
                Some("Basic a2V5"),
                Err("the Authorization header must be Bearer <API key>"),
            ),
            (
                Some("Bearer"),
                Err("the Authorization header must be Bearer <API key>"),
            ),
            (Some("Bearer nope"), Err("invalid API key")),
            (Some("Bearer dev"), Err("invalid API key")),
        ];
        for (header, want) in cases {
            assert_eq!(
                verdict(&k, *header),
                want.map_err(str::to_string),
                "{header:?}"
            );
        }
    }

    #[test]
    fn debug_shows_no_digest() {
        assert_eq!(
            format!("{:?}", keys(&[KEY, "another-key-of-16-chars"], false)),
            "Keys { keys: 2, dev: false }"
        );
    }

    #[test]
    fn the_development_key_only_in_development_mode_without_keys() {
        let dev = Some("Bearer dev");
        assert!(verdict(&keys(&[], true), dev).is_ok());
        assert!(verdict(&keys(&[], false), dev).is_err());
        assert!(verdict(&keys(&[KEY], true), dev).is_err());
        // With no keys and no development mode, nothing gets in.
        assert!(verdict(&keys(&[], false), Some("Bearer ")).is_err());
    }
}
