//! Capability links for a preview's inline (`cid:`) images.
//!
//! The preview runs in `<iframe sandbox>` without `allow-same-origin`, so
//! its document has an opaque origin and every image it asks for is a
//! cross-site request: the browser leaves the `SameSite=Strict` session
//! cookie out, and a cookie-guarded image route would answer with the
//! log-in page. So the (cookie-guarded) preview writes each `cid:` as
//! `/ui/messages/<id>/inline/<token>/<content-id>`, where the token is an
//! HMAC-SHA256, under a key made at start-up and never shown, of the
//! message id and an expiry [`TTL`] ahead. The token grants exactly that:
//! the inline images of one message a logged-in reader just opened, for
//! a few minutes. Verification is constant-time (`Mac::verify_slice`).
//! The preview sends `Referrer-Policy: no-referrer`, so the token does
//! not travel onwards.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long a preview's image links work: long enough for a slow page,
/// short enough that a copied link is soon useless. Reloading the preview
/// makes new ones.
pub const TTL: Duration = Duration::from_secs(600);

/// The key of this process's image links (`Debug` never shows it).
pub struct InlineKey([u8; 32]);

impl std::fmt::Debug for InlineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlineKey(<redacted>)")
    }
}

impl InlineKey {
    pub fn generate() -> InlineKey {
        InlineKey(rand::random())
    }

    fn mac(&self, id: &str, expires: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("postern-console-inline-v1\n{id}\n{expires}").as_bytes());
        mac
    }

    /// The token for message `id`'s inline images, made at `now` (unix
    /// seconds): `<expires>.<base64url mac>`, safe in a path segment.
    pub fn mint(&self, id: &str, now: u64) -> String {
        let expires = now.saturating_add(TTL.as_secs());
        let mac = B64URL.encode(self.mac(id, expires).finalize().into_bytes());
        format!("{expires}.{mac}")
    }

    /// Whether `token` grants message `id`'s inline images at `now`.
    pub fn allows(&self, id: &str, token: &str, now: u64) -> bool {
        let Some((expires, mac)) = token.split_once('.') else {
            return false;
        };
        let canonical = !expires.is_empty()
            && expires.len() <= 20
            && expires.bytes().all(|b| b.is_ascii_digit())
            && !expires.starts_with('0');
        let (Some(expires), Ok(mac)) = (
            canonical.then(|| expires.parse::<u64>().ok()).flatten(),
            B64URL.decode(mac),
        ) else {
            return false;
        };
        self.mac(id, expires).verify_slice(&mac).is_ok() && now < expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_one_message_until_it_expires() {
        let key = InlineKey::generate();
        let t = key.mint("m1", 1000);
        assert!(t.starts_with("1600."), "{t}");
        assert!(key.allows("m1", &t, 1000));
        assert!(key.allows("m1", &t, 1599));
        assert!(!key.allows("m1", &t, 1600), "expired");
        assert!(!key.allows("m2", &t, 1000), "another message");
        assert!(!InlineKey::generate().allows("m1", &t, 1000), "another key");
        let (_, mac) = t.split_once('.').unwrap();
        for forged in [
            format!("1601.{mac}"),
            format!("01600.{mac}"),
            "1600.".to_string(),
            format!("1600{mac}"),
            format!("1600.{mac}x"),
            String::new(),
        ] {
            assert!(!key.allows("m1", &forged, 1000), "{forged}");
        }
        assert_eq!(format!("{key:?}"), "InlineKey(<redacted>)");
    }
}
