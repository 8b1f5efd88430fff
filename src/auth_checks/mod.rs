//! Authentication checks of inbound mail (issue 13 item 2), with
//! mail-auth: for now DKIM verification ([`dkim`]) and SPF ([`spf`]);
//! DMARC and ARC follow. This is the library half only: nothing in the SMTP session
//! calls it yet, and no `POSTERN_*` variable turns it on, so the default
//! path still makes no DNS lookups.
//!
//! It sits beside [`crate::mail`] (raw message → JSON): given the bytes of
//! a received message it asks DNS (the resolvers it was built with) and
//! returns plain verdicts, which the payload and an RFC 8601
//! `Authentication-Results:` header will be made from.

pub mod dkim;
pub mod spf;

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};

/// The DNS side of the checks: one resolver, shared by every message.
pub struct Verifier {
    authenticator: MessageAuthenticator,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct ResolverError(String);

impl Verifier {
    /// Asks `servers` (UDP, then TCP for truncated answers), each query
    /// bounded by `timeout` with one retry: a DNS server that never answers
    /// gives `temperror` verdicts, never a stuck session.
    pub fn with_servers(
        servers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Verifier, ResolverError> {
        let mut group = NameServerConfigGroup::with_capacity(2 * servers.len());
        for addr in servers {
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[addr.ip()],
                addr.port(),
                true,
            ));
        }
        let config = ResolverConfig::from_parts(None, Vec::new(), group);
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        // Answers are cached per message by mail-auth's callers, not here:
        // a test (or an operator) changing a record sees it at once.
        opts.cache_size = 0;
        let authenticator =
            MessageAuthenticator::new(config, opts).map_err(|e| ResolverError(e.to_string()))?;
        Ok(Verifier { authenticator })
    }
}
