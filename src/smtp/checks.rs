//! DATA, once the message is committed and before it is scheduled: the
//! SPF, DKIM, DMARC and ARC checks that `POSTERN_AUTH_CHECKS` turns on
//! ([`crate::auth_checks`]), run on the message read back from the store
//! with the session's client address, HELO and MAIL FROM. The verdicts
//! are stored beside the message (`auth/<id>.json`), where the delivery
//! worker finds them to build the payload's `auth` and our
//! `Authentication-Results:` header; or the message is refused, when a
//! route of one of its recipients has `"dmarc_reject": true` and it fails
//! DMARC under a `reject` policy.
//!
//! The checks are bounded as a whole (the verifier's budget): a DNS server
//! that never answers makes `temperror` verdicts, never a refusal and
//! never a stuck session.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::reply;
use super::session::{Session, Transaction};
use crate::auth_checks::dmarc::{DmarcOutcome, DmarcPolicy, DmarcVerdict};
use crate::auth_checks::header::word;
use crate::auth_checks::record::Record;
use crate::auth_checks::settings::{Checks, Settings};
use crate::auth_checks::{AuthResults, Received, ResolverError, Verifier};
use crate::route::Route;
use crate::spool::{self, Committed};
use crate::telemetry::{AuthResultLabels, Metrics};

/// The checks the sessions run, with their resolver (one for all).
#[derive(Debug)]
pub struct AuthChecker {
    verifier: Verifier,
    checks: Checks,
}

impl AuthChecker {
    /// Reads the system resolver's configuration when no DNS server is
    /// given: call it only when a check is on.
    pub fn new(settings: &Settings) -> Result<AuthChecker, ResolverError> {
        Ok(AuthChecker {
            verifier: Verifier::new(settings)?,
            checks: settings.checks,
        })
    }
}

/// Whether a message is refused at DATA: a route of one of its recipients
/// asks for it (`dmarc_reject`), the message fails DMARC, and its `From`
/// domain publishes `p=reject`. A `temperror` (DNS trouble) or a
/// `quarantine` policy never refuses: the message goes on, with its
/// verdict in the payload.
pub fn dmarc_refuses(dmarc: Option<&DmarcVerdict>, route_asks: bool) -> bool {
    route_asks
        && dmarc.is_some_and(|d| {
            d.result == DmarcOutcome::Fail && d.policy == Some(DmarcPolicy::Reject)
        })
}

/// Whether any route the transaction's recipients reached asks for
/// `dmarc_reject` (one such recipient refuses the whole message: a DATA
/// reply is for all recipients at once).
fn any_route_rejects(tx: &Transaction, routes: &[Route]) -> bool {
    tx.rcpts
        .iter()
        .flat_map(|(_, targets)| targets)
        .any(|t| routes.get(t.route).is_some_and(|r| r.dmarc_reject))
}

/// One count per verdict.
fn count(metrics: &Metrics, r: &AuthResults) {
    let inc = |check: &str, result: String| {
        metrics
            .auth_results
            .get_or_create(&AuthResultLabels {
                check: check.into(),
                result,
            })
            .inc();
    };
    if let Some(s) = &r.spf {
        inc("spf", word(&s.result));
    }
    for d in r.dkim.iter().flatten() {
        inc("dkim", word(&d.result));
    }
    if let Some(d) = &r.dmarc {
        inc("dmarc", word(&d.result));
    }
    if let Some(a) = &r.arc {
        inc("arc", word(&a.result));
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The enabled checks of a committed message: `Some` to schedule it
    /// (verdicts stored), `None` when it was refused and removed (the
    /// reply is sent). With the checks off this returns at once.
    pub(super) async fn authenticate(
        &mut self,
        committed: Committed,
        tx: &Transaction,
    ) -> Option<Committed> {
        let Some(checker) = self.inbound.auth_checker.clone() else {
            return Some(committed);
        };
        let started = Instant::now();
        let message = match committed.content().await {
            Ok(m) => m,
            Err(e) => return self.refuse_temporarily(committed, &e).await,
        };
        let hostname = self.inbound.settings.hostname.clone();
        let received = Received {
            message: &message,
            ip: self.peer.ip,
            helo: self.helo.as_deref().unwrap_or(""),
            mail_from: tx.mail_from.as_deref().unwrap_or(""),
            hostname: &hostname,
        };
        let results = checker.verifier.verify(&received, checker.checks).await;
        drop(message);
        let metrics = &self.inbound.metrics;
        metrics
            .auth_check_duration
            .observe(started.elapsed().as_secs_f64());
        count(metrics, &results);
        info!(
            spf = ?results.spf.as_ref().map(|s| s.result),
            dkim = ?results.dkim.as_ref().map(|d| d.iter().map(|v| v.result).collect::<Vec<_>>()),
            dmarc = ?results.dmarc.as_ref().map(|d| (d.result, d.policy)),
            arc = ?results.arc.as_ref().map(|a| a.result),
            "authentication checked"
        );
        let route_asks = any_route_rejects(tx, &self.inbound.settings.routes);
        if dmarc_refuses(results.dmarc.as_ref(), route_asks) {
            info!("message refused: DMARC policy reject");
            self.inbound.metrics.rejected("dmarc_reject");
            if let Err(e) = committed.withdraw().await {
                warn!(error = %e, "could not remove a refused message");
            }
            self.reply(reply::DMARC_REJECT);
            return None;
        }
        let record = Record {
            authserv_id: hostname,
            results,
        };
        if let Err(e) = committed
            .attach(spool::RECORDS_AUTH, record.to_bytes())
            .await
        {
            return self.refuse_temporarily(committed, &e).await;
        }
        Some(committed)
    }

    /// Our trouble after the commit (reading the message back, storing
    /// its verdicts): the message is removed and the client told to try
    /// again, rather than delivered without the verdicts it should carry.
    async fn refuse_temporarily(
        &mut self,
        committed: Committed,
        e: &spool::Error,
    ) -> Option<Committed> {
        warn!(error = %e, "authentication checks: spool error");
        self.inbound.metrics.rejected("spool_error");
        if let Err(e) = committed.withdraw().await {
            warn!(error = %e, "could not remove a message after a spool error");
        }
        self.reply(reply::for_spool_error(e));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_reject_policy_on_a_rejecting_route_refuses() {
        let v = |result, policy| DmarcVerdict {
            result,
            policy,
            aligned: false,
            domain: "d".into(),
        };
        use DmarcOutcome as O;
        use DmarcPolicy as P;
        let cases = [
            (Some(v(O::Fail, Some(P::Reject))), true, true),
            (Some(v(O::Fail, Some(P::Reject))), false, false),
            (Some(v(O::Fail, Some(P::Quarantine))), true, false),
            (Some(v(O::Fail, Some(P::None))), true, false),
            (Some(v(O::Pass, Some(P::Reject))), true, false),
            (Some(v(O::Temperror, Some(P::Reject))), true, false),
            (Some(v(O::Permerror, Some(P::Reject))), true, false),
            (Some(v(O::None, None)), true, false),
            (None, true, false),
        ];
        for (dmarc, asks, want) in cases {
            assert_eq!(
                dmarc_refuses(dmarc.as_ref(), asks),
                want,
                "{dmarc:?} {asks}"
            );
        }
    }
}
