//! Webhook signing secrets: the `whsec_<base64>` form routes, events and
//! the dev inbox are configured with, parsed once; see
//! `model::sign` for what they sign. `Debug` never shows a key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

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

    /// The key itself, for the signature's HMAC and nothing else.
    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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
