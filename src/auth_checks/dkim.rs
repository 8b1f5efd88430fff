//! DKIM verification (RFC 6376) of a received message: one verdict per
//! `DKIM-Signature:` field, as the webhook payload's `auth.dkim` will carry
//! it (`[{result, domain, selector}]`).

use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, Error};
use serde::{Deserialize, Serialize};

use super::Verifier;

/// The result of one signature, in RFC 8601 words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Neutral,
    /// A DNS failure or timeout: the sender's side may be fine.
    Temperror,
    /// A broken signature or key record: it will not get better.
    Permerror,
}

/// One signature's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimVerdict {
    pub result: Outcome,
    /// The signature's `d=`; empty when it could not be read.
    pub domain: String,
    /// The signature's `s=`; empty when it could not be read.
    pub selector: String,
}

/// RFC 8601 name of mail-auth's result; `None` for no signature.
/// mail-auth calls a body hash mismatch `neutral`; RFC 6376 §6.1.3 makes
/// it a failed signature (PERMFAIL), which is `fail` (and what dkimpy
/// says): a body changed after signing must not read as "could not tell".
pub fn outcome(result: &DkimResult) -> Option<Outcome> {
    match result {
        DkimResult::Pass => Some(Outcome::Pass),
        DkimResult::Neutral(Error::FailedBodyHashMatch) => Some(Outcome::Fail),
        DkimResult::Fail(_) => Some(Outcome::Fail),
        DkimResult::Neutral(_) => Some(Outcome::Neutral),
        DkimResult::TempError(_) => Some(Outcome::Temperror),
        DkimResult::PermError(_) => Some(Outcome::Permerror),
        DkimResult::None => None,
    }
}

/// One verdict per signature mail-auth looked at.
pub(super) fn verdicts(outputs: &[DkimOutput<'_>]) -> Vec<DkimVerdict> {
    outputs
        .iter()
        .filter_map(|o| {
            let result = outcome(o.result())?;
            let (domain, selector) = o
                .signature()
                .map(|s| (s.d.clone(), s.s.clone()))
                .unwrap_or_default();
            Some(DkimVerdict {
                result,
                domain,
                selector,
            })
        })
        .collect()
}

impl Verifier {
    /// Every signature of `message`, verified; empty when it has none (or
    /// is not a message at all).
    pub async fn dkim(&self, message: &[u8]) -> Vec<DkimVerdict> {
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return Vec::new();
        };
        verdicts(&self.authenticator.verify_dkim(&parsed).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_to_rfc_8601_words() {
        let cases = [
            (DkimResult::Pass, Some(Outcome::Pass)),
            (
                DkimResult::Fail(Error::FailedVerification),
                Some(Outcome::Fail),
            ),
            (
                DkimResult::Neutral(Error::FailedBodyHashMatch),
                Some(Outcome::Fail),
            ),
            (
                DkimResult::Neutral(Error::SignatureExpired),
                Some(Outcome::Neutral),
            ),
            (
                DkimResult::TempError(Error::DnsError("t".into())),
                Some(Outcome::Temperror),
            ),
            (
                DkimResult::PermError(Error::DnsRecordNotFound(
                    mail_auth::hickory_resolver::proto::op::ResponseCode::NXDomain,
                )),
                Some(Outcome::Permerror),
            ),
            (DkimResult::None, None),
        ];
        for (r, want) in cases {
            assert_eq!(outcome(&r), want, "{r:?}");
        }
    }
}
