//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>).
//!
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! where the key is the base64-decoded part of a `whsec_…` secret. With
//! several secrets (rotation) the header carries one signature per secret,
//! space-separated, so receivers holding either the old or the new secret
//! verify. We always sign the exact bytes we send.
//!
//! A leaf in `model/` because two stages sign: webhook deliveries
//! (`delivery::webhook`) and the SMTP session's RCPT-time authorization
//! requests (`smtp::authorize`), which must not import delivery.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The `webhook-signature` header value for `body`, one `v1,` entry per secret.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            format!(
                "v1,{}",
                B64.encode(mac(s, id, timestamp, body).finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Standard Webhooks headers of a request sent now: `webhook-id`
/// (`id`), `webhook-timestamp` and `webhook-signature` over `body`, one
/// place for every signed POST (webhooks, events, RCPT authorization).
pub fn headers(secrets: &[Secret], id: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(secrets, id, timestamp, body)),
    ]
}

/// True when any `v1,` signature in `header` is valid for `secret`.
/// Comparison is constant-time (`Mac::verify_slice`).
pub fn verify(secret: &Secret, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(raw) = B64.decode(b64) else {
            return false;
        };
        mac(secret, id, timestamp, body).verify_slice(&raw).is_ok()
    })
}

fn mac(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = mac_head(secret, id, timestamp);
    mac.update(body);
    mac
}

/// The MAC over `"{id}.{timestamp}."`, ready for the body.
fn mac_head(secret: &Secret, id: &str, timestamp: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.key()).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac
}

/// [`headers`] for a body given in pieces (`for_each` calls its argument
/// with each piece, in order): the same headers as for the pieces joined.
pub fn headers_pieces(
    secrets: &[Secret],
    id: &str,
    for_each: impl FnOnce(&mut dyn FnMut(&[u8])),
) -> [(&'static str, String); 3] {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut macs: Vec<HmacSha256> = secrets.iter().map(|s| mac_head(s, id, timestamp)).collect();
    for_each(&mut |piece| macs.iter_mut().for_each(|m| m.update(piece)));
    let signature = macs
        .into_iter()
        .map(|m| format!("v1,{}", B64.encode(m.finalize().into_bytes())))
        .collect::<Vec<_>>()
        .join(" ");
    [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector published with the Standard Webhooks reference
    // libraries (standard-webhooks/libraries, spec and test suites).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_published_vector() {
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(sign(std::slice::from_ref(&s), ID, TS, BODY), EXPECTED);
        assert!(verify(&s, ID, TS, BODY, EXPECTED));
        assert!(!verify(&s, ID, TS + 1, BODY, EXPECTED));
        assert!(!verify(&s, ID, TS, b"{}", EXPECTED));
    }

    #[test]
    fn rotation_gives_one_signature_per_secret() {
        let old = Secret::parse(SECRET).unwrap();
        let new = Secret::generate();
        let header = sign(&[new.clone(), old.clone()], ID, TS, BODY);
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.ends_with(EXPECTED));
        assert!(verify(&old, ID, TS, BODY, &header));
        assert!(verify(&new, ID, TS, BODY, &header));
        assert!(!verify(&Secret::generate(), ID, TS, BODY, &header));
    }
}
