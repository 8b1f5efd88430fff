//! ARC (RFC 8617) of a received message: does the chain of
//! `ARC-Seal`/`ARC-Message-Signature` sets that forwarders added hold?
//! The payload's `auth.arc` carries the verdict (`{result}`). Postern
//! reports the chain; it does not act on it (a receiver that trusts a
//! forwarder's sealed verdicts decides that in its app).

use mail_auth::{AuthenticatedMessage, DkimResult};
use serde::{Deserialize, Serialize};

use super::Verifier;

/// RFC 8601 words for an ARC chain (`arc=` in the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArcOutcome {
    Pass,
    Fail,
    /// No ARC sets in the message.
    None,
    /// A DNS failure or timeout while checking a seal.
    Temperror,
    /// An unusable key record or a seal that cannot be read.
    Permerror,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArcVerdict {
    pub result: ArcOutcome,
}

/// RFC 8601 name of mail-auth's chain result. A `neutral` there (a
/// signature that does not verify for a reason other than the key, e.g. an
/// expired one, or a body hash mismatch) means the chain does not hold:
/// RFC 8617 §5.2 knows only pass, fail and none, so it is `fail`.
pub fn outcome(result: &DkimResult) -> ArcOutcome {
    match result {
        DkimResult::Pass => ArcOutcome::Pass,
        DkimResult::Fail(_) | DkimResult::Neutral(_) => ArcOutcome::Fail,
        DkimResult::TempError(_) => ArcOutcome::Temperror,
        DkimResult::PermError(_) => ArcOutcome::Permerror,
        DkimResult::None => ArcOutcome::None,
    }
}

impl Verifier {
    /// The ARC chain of `parsed`.
    pub(super) async fn arc(&self, parsed: &AuthenticatedMessage<'_>) -> ArcVerdict {
        ArcVerdict {
            result: outcome(self.authenticator.verify_arc(parsed).await.result()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::Error;

    #[test]
    fn chain_results_map_to_rfc_8601_words() {
        let cases = [
            (DkimResult::Pass, ArcOutcome::Pass),
            (DkimResult::Fail(Error::ArcBrokenChain), ArcOutcome::Fail),
            (
                DkimResult::Neutral(Error::FailedBodyHashMatch),
                ArcOutcome::Fail,
            ),
            (
                DkimResult::TempError(Error::DnsError("t".into())),
                ArcOutcome::Temperror,
            ),
            (
                DkimResult::PermError(Error::InvalidRecordType),
                ArcOutcome::Permerror,
            ),
            (DkimResult::None, ArcOutcome::None),
        ];
        for (r, want) in cases {
            assert_eq!(outcome(&r), want, "{r:?}");
        }
    }
}
