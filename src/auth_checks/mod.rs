//! Authentication checks of inbound mail (issue 13 item 2), with
//! mail-auth: SPF ([`spf`]), DKIM ([`dkim`]), DMARC ([`dmarc`]) and ARC
//! ([`arc`]), the enabled ones at once with [`Verifier::verify`]; the
//! RFC 8601 `Authentication-Results:` header ([`header`]); and the record
//! of one message's verdicts kept beside it in the store ([`record`]).
//! Off unless `POSTERN_AUTH_CHECKS` names a check ([`settings`]): the
//! default path makes no DNS lookups.
//!
//! It sits beside [`crate::mail`] (raw message → JSON): given the bytes of
//! a received message it asks DNS (the resolvers it was built with) and
//! returns plain verdicts. The SMTP session runs it once a message is
//! committed; the delivery worker turns the stored verdicts into the
//! payload's `auth` and the prepended header.

pub mod arc;
pub mod dkim;
pub mod dmarc;
pub mod header;
pub mod record;
pub mod settings;
pub mod spf;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{AuthenticatedMessage, MessageAuthenticator};
use serde::{Deserialize, Serialize};

use arc::{ArcOutcome, ArcVerdict};
use dkim::DkimVerdict;
use dmarc::{DmarcOutcome, DmarcVerdict};
use mail_auth::hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use settings::{Checks, Servers, Settings};
use spf::{SpfOutcome, SpfVerdict};

/// The DNS side of the checks: one resolver, shared by every message.
pub struct Verifier {
    authenticator: MessageAuthenticator,
    /// The bound of one message's checks ([`Settings::budget`]).
    budget: Duration,
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
        Verifier::new(&Settings {
            checks: Checks::ALL,
            servers: Servers::These(servers.to_vec()),
            timeout,
        })
    }

    /// The verifier `settings` describe; the system resolver's
    /// configuration is read here, and only here.
    pub fn new(settings: &Settings) -> Result<Verifier, ResolverError> {
        let (config, mut opts) = match &settings.servers {
            Servers::These(servers) => (servers_config(servers), ResolverOpts::default()),
            Servers::System => mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| ResolverError(format!("/etc/resolv.conf: {e}")))?,
        };
        opts.timeout = settings.timeout;
        opts.attempts = 1;
        // Answers are cached per message by mail-auth's callers, not here:
        // a test (or an operator) changing a record sees it at once.
        opts.cache_size = 0;
        let authenticator =
            MessageAuthenticator::new(config, opts).map_err(|e| ResolverError(e.to_string()))?;
        Ok(Verifier {
            authenticator,
            budget: settings.budget(),
        })
    }
}

/// UDP and TCP (for truncated answers) to each of `servers`.
fn servers_config(servers: &[SocketAddr]) -> ResolverConfig {
    let mut group = NameServerConfigGroup::with_capacity(2 * servers.len());
    for addr in servers {
        group.merge(NameServerConfigGroup::from_ips_clear(
            &[addr.ip()],
            addr.port(),
            true,
        ));
    }
    ResolverConfig::from_parts(None, Vec::new(), group)
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

/// The verdicts of one message, as the payload's `auth` carries them;
/// a check that is off is `None` (`null` in the payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResults {
    pub spf: Option<SpfVerdict>,
    pub dkim: Option<Vec<DkimVerdict>>,
    pub dmarc: Option<DmarcVerdict>,
    pub arc: Option<ArcVerdict>,
}

impl Verifier {
    /// Every check (what the library tests use).
    pub async fn check(&self, r: &Received<'_>) -> AuthResults {
        self.verify(r, Checks::ALL).await
    }

    /// The `checks` of one message, bounded by the verifier's budget:
    /// whatever DNS does, this returns in time, the checks cut short
    /// saying `temperror`.
    pub async fn verify(&self, r: &Received<'_>, checks: Checks) -> AuthResults {
        match tokio::time::timeout(self.budget, self.run(r, checks)).await {
            Ok(results) => results,
            Err(_) => out_of_time(r, checks),
        }
    }

    /// DMARC needs SPF's and DKIM's outputs, so they run when it is on,
    /// reported or not; SPF, DKIM and ARC ask DNS at the same time.
    async fn run(&self, r: &Received<'_>, checks: Checks) -> AuthResults {
        let parsed = AuthenticatedMessage::parse(r.message);
        let spf_fut = async {
            if checks.spf || checks.dmarc {
                Some(self.spf_output(r.ip, r.helo, r.mail_from, r.hostname).await)
            } else {
                None
            }
        };
        let dkim_fut = async {
            match &parsed {
                Some(p) if checks.dkim || checks.dmarc => self.authenticator.verify_dkim(p).await,
                _ => Vec::new(),
            }
        };
        let arc_fut = async {
            match &parsed {
                Some(p) if checks.arc => Some(self.arc(p).await),
                _ if checks.arc => Some(ArcVerdict {
                    result: ArcOutcome::None,
                }),
                _ => None,
            }
        };
        let (spf_output, dkim_outputs, arc) = tokio::join!(spf_fut, dkim_fut, arc_fut);
        let dmarc = match (&parsed, &spf_output) {
            (Some(parsed), Some(spf)) if checks.dmarc => {
                // The SPF identity's domain: MAIL FROM's, or HELO's for <>.
                let out = self
                    .authenticator
                    .verify_dmarc(DmarcParameters::new(
                        parsed,
                        &dkim_outputs,
                        spf.domain(),
                        spf,
                    ))
                    .await;
                Some(dmarc::verdict(
                    out.spf_result(),
                    out.dkim_result(),
                    out.dmarc_record().map(|_| out.policy()),
                    out.domain(),
                ))
            }
            _ if checks.dmarc => Some(no_dmarc()),
            _ => None,
        };
        AuthResults {
            spf: spf_output.filter(|_| checks.spf).map(|o| spf::verdict(&o)),
            dkim: checks.dkim.then(|| dkim::verdicts(&dkim_outputs)),
            dmarc,
            arc,
        }
    }
}

/// DMARC of something that is not a message (or has no single `From`).
fn no_dmarc() -> DmarcVerdict {
    DmarcVerdict {
        result: DmarcOutcome::None,
        policy: None,
        aligned: false,
        domain: String::new(),
    }
}

/// The verdicts of checks cut short by the budget: `temperror` each,
/// with what the message itself says (the SPF identity, each signature's
/// `d=` and `s=`, the `From` domain), so the header still names them.
fn out_of_time(r: &Received<'_>, checks: Checks) -> AuthResults {
    let parsed = AuthenticatedMessage::parse(r.message);
    let spf_domain = match r.mail_from.rsplit_once('@') {
        Some((_, d)) => d,
        None if r.mail_from.is_empty() => r.helo,
        None => r.mail_from,
    };
    let dkim = parsed
        .as_ref()
        .map(|p| {
            p.dkim_headers
                .iter()
                .map(|h| {
                    let (domain, selector) = h
                        .header
                        .as_ref()
                        .map(|s| (s.d.clone(), s.s.clone()))
                        .unwrap_or_default();
                    DkimVerdict {
                        result: dkim::Outcome::Temperror,
                        domain,
                        selector,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let from_domain = parsed
        .as_ref()
        .and_then(|p| p.from.first())
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    AuthResults {
        spf: checks.spf.then(|| SpfVerdict {
            result: SpfOutcome::Temperror,
            domain: spf_domain.to_ascii_lowercase(),
        }),
        dkim: checks.dkim.then_some(dkim),
        dmarc: checks.dmarc.then_some(DmarcVerdict {
            result: DmarcOutcome::Temperror,
            policy: None,
            aligned: false,
            domain: from_domain,
        }),
        arc: checks.arc.then_some(ArcVerdict {
            result: ArcOutcome::Temperror,
        }),
    }
}
