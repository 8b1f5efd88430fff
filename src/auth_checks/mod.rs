//! Authentication checks of inbound mail (issue 13 item 2), with
//! mail-auth: DKIM ([`dkim`]), SPF ([`spf`]) and DMARC ([`dmarc`]), all
//! three at once with [`Verifier::check`], and the `Authentication-Results:`
//! header ([`header`]); ARC follows. This is the library half only: nothing in the SMTP session
//! calls it yet, and no `POSTERN_*` variable turns it on, so the default
//! path still makes no DNS lookups.
//!
//! It sits beside [`crate::mail`] (raw message → JSON): given the bytes of
//! a received message it asks DNS (the resolvers it was built with) and
//! returns plain verdicts, which the payload and an RFC 8601
//! `Authentication-Results:` header will be made from.

pub mod dkim;
pub mod dmarc;
pub mod header;
pub mod spf;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, MessageAuthenticator};
use serde::Serialize;

use dkim::DkimVerdict;
use dmarc::{DmarcOutcome, DmarcVerdict};
use mail_auth::hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use spf::SpfVerdict;

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

/// What the checks need to know of one received message.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub message: &'a [u8],
    /// The client's address.
    pub ip: IpAddr,
    pub helo: &'a str,
    /// `MAIL FROM`; empty for the null sender.
    pub mail_from: &'a str,
    /// Our host name (SPF's `%{r}`).
    pub hostname: &'a str,
}

/// Every verdict for one message, as the payload's `auth` will carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthResults {
    pub spf: SpfVerdict,
    pub dkim: Vec<DkimVerdict>,
    pub dmarc: DmarcVerdict,
}

impl Verifier {
    /// SPF, DKIM and DMARC of one message (DMARC from the other two).
    pub async fn check(&self, r: &Received<'_>) -> AuthResults {
        let spf_output = self.spf_output(r.ip, r.helo, r.mail_from, r.hostname).await;
        let spf = spf::verdict(&spf_output);
        let Some(parsed) = AuthenticatedMessage::parse(r.message) else {
            return AuthResults {
                spf,
                dkim: Vec::new(),
                dmarc: DmarcVerdict {
                    result: DmarcOutcome::None,
                    policy: None,
                    aligned: false,
                    domain: String::new(),
                },
            };
        };
        let dkim_outputs = self.authenticator.verify_dkim(&parsed).await;
        // The SPF identity's domain: MAIL FROM's, or HELO's for <>.
        let dmarc_output = self
            .authenticator
            .verify_dmarc(DmarcParameters::new(
                &parsed,
                &dkim_outputs,
                spf_output.domain(),
                &spf_output,
            ))
            .await;
        AuthResults {
            spf,
            dkim: dkim::verdicts(&dkim_outputs),
            dmarc: dmarc::verdict(
                dmarc_output.spf_result(),
                dmarc_output.dkim_result(),
                dmarc_output.dmarc_record().map(|_| dmarc_output.policy()),
                dmarc_output.domain(),
            ),
        }
    }
}
