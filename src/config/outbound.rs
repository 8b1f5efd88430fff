//! Sending-side settings: the relay, delivery events and the HTTP API
//! (`POSTERN_RELAY_URL`, `POSTERN_EVENTS_*`, `POSTERN_API_*`,
//! `POSTERN_STATUS_RETENTION`, `POSTERN_DKIM_KEYS` through `dkim.rs`) →
//! [`OutboundConfig`], which the API, the
//! relay set-up and the event spooling receive.

use std::time::Duration;

use super::{Problems, RawConfig, invalid, secret_error};
use crate::compose::dkim::DkimKeys;
use crate::model::secret::Secret;

/// Outbound (HTTP API → SMTP relay) settings.
#[derive(Clone)]
pub struct OutboundConfig {
    /// `POSTERN_RELAY_URL` as given; parsed by [`crate::relay`]. In
    /// development mode without one, Postern relays to its own listener.
    pub relay_url: Option<String>,
    /// Where delivery events go, if anywhere.
    pub events_url: Option<String>,
    /// Secrets that sign events (default: the webhook secrets).
    pub events_secrets: Vec<Secret>,
    /// SHA-256 of each accepted API key: the keys themselves are not kept.
    pub api_key_hashes: Vec<[u8; 32]>,
    /// Largest request body of `POST /v1/messages`.
    pub api_max_bytes: usize,
    /// How long `GET /v1/messages/{id}` answers after a message is done.
    pub status_retention: Duration,
    /// DKIM keys that sign API mail (`POSTERN_DKIM_KEYS`), loaded.
    pub dkim: DkimKeys,
}

impl std::fmt::Debug for OutboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConfig")
            .field("relay_url", &self.relay_url.as_ref().map(|_| "<set>"))
            .field("events_url", &self.events_url)
            .field("api_keys", &self.api_key_hashes.len())
            .field("api_max_bytes", &self.api_max_bytes)
            .field("dkim", &self.dkim)
            .finish()
    }
}

pub(super) fn parse(
    raw: &mut RawConfig,
    default_secrets: &[Secret],
    dev_mode: bool,
    p: &mut Problems,
) -> OutboundConfig {
    let events_url = raw.events_url.take();
    if let Some(u) = &events_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        p.push(invalid(
            "POSTERN_EVENTS_URL",
            "must start with http:// or https://",
        ));
    }
    let events_secrets = match raw.events_secret.take() {
        Some(s) => p.or(
            Secret::parse_list(&s).map_err(|e| secret_error("POSTERN_EVENTS_SECRET", e)),
            Vec::new(),
        ),
        None => default_secrets.to_vec(),
    };
    if events_url.is_some() && events_secrets.is_empty() && !dev_mode {
        p.push(invalid(
            "POSTERN_EVENTS_SECRET",
            "required with POSTERN_EVENTS_URL when POSTERN_WEBHOOK_SECRET is not set",
        ));
    }
    let mut api_key_hashes = Vec::new();
    if let Some(keys) = raw.api_keys.take() {
        let keys: Vec<&str> = api_keys(&keys).collect();
        if keys.iter().any(|k| k.len() < 16) {
            p.push(invalid(
                "POSTERN_API_KEYS",
                "each key needs at least 16 characters",
            ));
        }
        for k in keys {
            api_key_hashes.push(
                sha2::Digest::finalize(sha2::Digest::chain_update(
                    <sha2::Sha256 as sha2::Digest>::new(),
                    k.as_bytes(),
                ))
                .into(),
            );
        }
    }
    let d_max = 40 * 1024 * 1024;
    let api_max_bytes = p.size("POSTERN_API_MAX_BYTES", raw.api_max_bytes.take(), d_max) as usize;
    let status_retention = p.duration(
        "POSTERN_STATUS_RETENTION",
        raw.status_retention.take(),
        Duration::from_secs(7 * 86400),
    );
    let relay_url = raw.relay_url.take();
    if let Some(url) = &relay_url
        && let Err(e) = crate::relay::RelayConfig::parse(url)
    {
        p.push(invalid("POSTERN_RELAY_URL", e.to_string()));
    }
    let dkim = super::dkim::parse(raw, p);
    OutboundConfig {
        dkim,
        relay_url,
        events_url,
        events_secrets,
        api_key_hashes,
        api_max_bytes,
        status_retention,
    }
}

/// The keys in a `POSTERN_API_KEYS` value: separated by commas, spaces or
/// newlines. Also how `postern deliveries` finds the key it sends.
pub fn api_keys(list: &str) -> impl Iterator<Item = &str> {
    list.split([',', ' ', '\n']).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_lists_split_on_commas_spaces_and_newlines() {
        let keys: Vec<&str> = api_keys("a,b c\nd,, e\n").collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
        assert_eq!(api_keys("").count(), 0);
    }
}
