//! Attachments by URL (issue 13 item 5): how a route sends attachments
//! ([`AttachmentMode`]), and the signed, expiring link
//! `GET <POSTERN_PUBLIC_URL>/v1/attachments/<message id>/<index>?expires=<unix s>&sig=<mac>`
//! that stands in for an attachment's `content`.
//!
//! The signature is the only credential of that link (the endpoint takes
//! no API key): `sig` is the unpadded base64url HMAC-SHA256, under the
//! server's attachment key, of the message id, the attachment's index in
//! the payload's `attachments` and the expiry, so changing any of the
//! three invalidates it. Verification is constant-time
//! (`Mac::verify_slice`).
//!
//! A leaf in `model/` because two stages use it: the delivery worker
//! writes links into payloads, the HTTP API checks them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How a route sends attachments (route option `"attachments"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentMode {
    /// Base64 `content` in the payload, except above the route's
    /// `max_attachment_inline` (then a `url`).
    #[default]
    Inline,
    /// Every attachment as a `url`, never `content`.
    Url,
}

/// The key that signs attachment links. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkKey(Vec<u8>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

/// The fewest bytes a configured key may have (`POSTERN_ATTACHMENT_URL_SECRET`).
pub const MIN_KEY_LEN: usize = 16;

impl LinkKey {
    /// A configured secret: its bytes are the key.
    pub fn from_text(secret: &str) -> Option<LinkKey> {
        (secret.len() >= MIN_KEY_LEN).then(|| LinkKey(secret.as_bytes().to_vec()))
    }

    /// A fresh random 32-byte key.
    pub fn generate() -> LinkKey {
        LinkKey(rand::random::<[u8; 32]>().to_vec())
    }

    /// The form a generated key is kept in (base64, one line).
    pub fn to_file_text(&self) -> String {
        format!("{}\n", B64.encode(&self.0))
    }

    /// Reads [`LinkKey::to_file_text`] back; `None` when it is not that.
    pub fn from_file_text(text: &str) -> Option<LinkKey> {
        let key = B64.decode(text.trim()).ok()?;
        (key.len() >= MIN_KEY_LEN).then_some(LinkKey(key))
    }

    fn mac(&self, id: &str, index: usize, expires: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Newline-separated: a message id never holds one, so no two
        // triples give the same input.
        mac.update(format!("postern-attachment-v1\n{id}\n{index}\n{expires}").as_bytes());
        mac
    }

    /// The `sig` of a link to attachment `index` of message `id`, valid
    /// until `expires` (unix seconds).
    pub fn sign(&self, id: &str, index: usize, expires: u64) -> String {
        B64URL.encode(self.mac(id, index, expires).finalize().into_bytes())
    }
}

/// Writes links into payloads: where the API is reached, what signs,
/// how long a link lives.
#[derive(Debug, Clone)]
pub struct Linker {
    /// `POSTERN_PUBLIC_URL` without its trailing slash.
    base: String,
    key: LinkKey,
    ttl: Duration,
}

/// One link, as the payload carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    /// Unix seconds.
    pub expires: u64,
}

impl Linker {
    pub fn new(base: &str, key: LinkKey, ttl: Duration) -> Linker {
        Linker {
            base: base.trim_end_matches('/').to_string(),
            key,
            ttl,
        }
    }

    /// The link to attachment `index` of message `id`, made at `now`
    /// (unix seconds).
    pub fn link(&self, id: &str, index: usize, now: u64) -> Link {
        let expires = now.saturating_add(self.ttl.as_secs());
        let sig = self.key.sign(id, index, expires);
        Link {
            url: format!(
                "{}/v1/attachments/{id}/{index}?expires={expires}&sig={sig}",
                self.base
            ),
            expires,
        }
    }
}

/// Why a link is refused. The endpoint answers every one the same way
/// (no oracle); the variants are for the log and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Missing or malformed `expires`, `sig` or index.
    Malformed,
    /// The signature does not match id, index and expiry.
    BadSignature,
    /// Signed, but past its expiry.
    Expired,
}

/// Checks a link's parts at `now` (unix seconds); the attachment index
/// when it holds. The signature is checked before the expiry, so an
/// expired forgery reads as a forgery.
pub fn verify(
    key: &LinkKey,
    id: &str,
    index: &str,
    expires: Option<&str>,
    sig: Option<&str>,
    now: u64,
) -> Result<usize, Refused> {
    let index = canonical_number(index).ok_or(Refused::Malformed)?;
    let index = usize::try_from(index).map_err(|_| Refused::Malformed)?;
    let expires = expires
        .and_then(canonical_number)
        .ok_or(Refused::Malformed)?;
    let sig = sig
        .and_then(|s| B64URL.decode(s).ok())
        .ok_or(Refused::Malformed)?;
    key.mac(id, index, expires)
        .verify_slice(&sig)
        .map_err(|_| Refused::BadSignature)?;
    if now >= expires {
        return Err(Refused::Expired);
    }
    Ok(index)
}

/// A decimal number as we write them: digits only, no sign, no leading
/// zero (so one number has one spelling).
fn canonical_number(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// id, index, expires, sig, now → the verdict.
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        u64,
        Result<usize, Refused>,
    );

    fn key() -> LinkKey {
        LinkKey::from_text("0123456789abcdef-test-key").unwrap()
    }

    /// The query of a link, split back into its parts.
    fn parts(url: &str) -> (String, String, String, String) {
        let (path, query) = url.split_once('?').unwrap();
        let mut segs = path.rsplitn(3, '/');
        let index = segs.next().unwrap().to_string();
        let id = segs.next().unwrap().to_string();
        let mut q = query.split('&');
        let expires = q.next().unwrap().strip_prefix("expires=").unwrap().into();
        let sig = q.next().unwrap().strip_prefix("sig=").unwrap().into();
        (id, index, expires, sig)
    }

    #[test]
    fn links_verify_only_for_their_message_index_and_time() {
        let linker = Linker::new("https://mail.example/", key(), Duration::from_secs(60));
        let link = linker.link("abc123", 2, 1000);
        assert!(
            link.url
                .starts_with("https://mail.example/v1/attachments/abc123/2?expires=1060&sig="),
            "{}",
            link.url
        );
        assert_eq!(link.expires, 1060);
        let (id, index, expires, sig) = parts(&link.url);
        let check = |id: &str, index: &str, expires: Option<&str>, sig: Option<&str>, now| {
            verify(&key(), id, index, expires, sig, now)
        };
        let (e, s) = (Some(expires.as_str()), Some(sig.as_str()));
        let mut other_sig = sig.clone().into_bytes();
        other_sig[0] = if other_sig[0] == b'A' { b'B' } else { b'A' };
        let other_sig = String::from_utf8(other_sig).unwrap();
        let cases: &[Case] = &[
            (&id, &index, e, s, 1000, Ok(2)),
            (&id, &index, e, s, 1059, Ok(2)),
            (&id, &index, e, s, 1060, Err(Refused::Expired)),
            ("abc124", &index, e, s, 1000, Err(Refused::BadSignature)),
            (&id, "3", e, s, 1000, Err(Refused::BadSignature)),
            (
                &id,
                &index,
                Some("1061"),
                s,
                1000,
                Err(Refused::BadSignature),
            ),
            (
                &id,
                &index,
                e,
                Some(&other_sig),
                1000,
                Err(Refused::BadSignature),
            ),
            // An expired forgery is a forgery.
            (&id, &index, Some("10"), s, 1000, Err(Refused::BadSignature)),
            (&id, "02", e, s, 1000, Err(Refused::Malformed)),
            (&id, "+2", e, s, 1000, Err(Refused::Malformed)),
            (&id, "", e, s, 1000, Err(Refused::Malformed)),
            (&id, &index, None, s, 1000, Err(Refused::Malformed)),
            (&id, &index, Some("01060"), s, 1000, Err(Refused::Malformed)),
            (&id, &index, e, None, 1000, Err(Refused::Malformed)),
            (
                &id,
                &index,
                e,
                Some("not base64!"),
                1000,
                Err(Refused::Malformed),
            ),
        ];
        for (id, index, expires, sig, now, want) in cases {
            assert_eq!(
                check(id, index, *expires, *sig, *now),
                *want,
                "{id} {index} {expires:?} {sig:?} {now}"
            );
        }
        // Another key does not verify it.
        let other = LinkKey::from_text("another key of enough length").unwrap();
        assert_eq!(
            verify(&other, &id, &index, e, s, 1000),
            Err(Refused::BadSignature)
        );
    }

    #[test]
    fn keys_round_trip_and_short_ones_are_refused() {
        let k = LinkKey::generate();
        assert_eq!(LinkKey::from_file_text(&k.to_file_text()), Some(k.clone()));
        assert_ne!(k, LinkKey::generate());
        assert_eq!(LinkKey::from_file_text("c2hvcnQ="), None);
        assert_eq!(LinkKey::from_file_text("not base64 at all"), None);
        assert_eq!(LinkKey::from_text("15 bytes long.."), None);
        assert!(LinkKey::from_text("16 bytes long...").is_some());
        assert_eq!(format!("{k:?}"), "LinkKey(<redacted>)");
    }

    #[test]
    fn modes_parse_from_route_json() {
        let m: AttachmentMode = serde_json::from_str(r#""url""#).unwrap();
        assert_eq!(m, AttachmentMode::Url);
        let m: AttachmentMode = serde_json::from_str(r#""inline""#).unwrap();
        assert_eq!(m, AttachmentMode::Inline);
        assert!(serde_json::from_str::<AttachmentMode>(r#""link""#).is_err());
    }
}
