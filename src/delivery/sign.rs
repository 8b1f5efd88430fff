//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>).
//!
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
//! where the key is the base64-decoded part of a `whsec_…` secret. With
//! several secrets (rotation) the header carries one signature per secret,
//! space-separated, so receivers holding either the old or the new secret
//! verify. We always sign the exact bytes we send.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";

/// A signing key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret must look like whsec_<base64>")]
    Format,
    #[error("a webhook secret needs at least 16 bytes of key (24 base64 characters)")]
    TooShort,
}

impl Secret {
    /// Parses `whsec_<base64>`.
    pub fn parse(s: &str) -> Result<Secret, SecretError> {
        let b64 = s.trim().strip_prefix(PREFIX).ok_or(SecretError::Format)?;
        let key = B64.decode(b64).map_err(|_| SecretError::Format)?;
        if key.len() < 16 {
            return Err(SecretError::TooShort);
        }
        Ok(Secret(key))
    }

    /// Space- or comma-separated secrets, newest first.
    pub fn parse_list(s: &str) -> Result<Vec<Secret>, SecretError> {
        s.split([' ', ','])
            .filter(|p| !p.is_empty())
            .map(Secret::parse)
            .collect()
    }

    /// A fresh random 32-byte secret.
    pub fn generate() -> Secret {
        Secret(rand::random::<[u8; 32]>().to_vec())
    }

    /// The `whsec_…` text form (for printing a generated secret once).
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", B64.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The `webhook-signature` header value for `body`, one `v1,` entry per secret.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            format!(
                "v1,{}",
                B64.encode(s.mac(id, timestamp, body).finalize().into_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        secret.mac(id, timestamp, body).verify_slice(&raw).is_ok()
    })
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

    #[test]
    fn secret_parsing() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_!!!").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err());
        let g = Secret::generate();
        assert_eq!(Secret::parse(&g.to_whsec()).unwrap(), g);
        assert_eq!(format!("{g:?}"), "Secret(<redacted>)");
        assert_eq!(
            Secret::parse_list(&format!("{SECRET} {}", g.to_whsec()))
                .unwrap()
                .len(),
            2
        );
    }
}
