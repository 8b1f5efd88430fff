//! DMARC (RFC 7489) of a received message: does an SPF or DKIM pass align
//! with the `From` domain, and what does that domain ask for when not?
//! The payload's `auth.dmarc` will carry the verdict (`{result, policy,
//! aligned}`), and a route's `dmarc_reject` will act on `policy`.
//!
//! Alignment here is by exact domain: relaxed alignment needs the
//! organizational domain, i.e. the Public Suffix List, which Postern does
//! not ship yet; guessing it ("the last two labels") would let
//! `evil.co.uk` align with `bank.co.uk`. So a pass through a subdomain
//! (`bounces.example.com` for `From: example.com`) reads as not aligned.

use mail_auth::DmarcResult;
use mail_auth::dmarc::Policy;
use serde::{Deserialize, Serialize};

/// RFC 8601 words for a DMARC result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcOutcome {
    Pass,
    Fail,
    /// The `From` domain publishes no DMARC record (or the message has no
    /// single `From` domain).
    None,
    Temperror,
    Permerror,
}

/// What the `From` domain asks receivers to do with mail that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcVerdict {
    pub result: DmarcOutcome,
    /// `None` when there is no record.
    pub policy: Option<DmarcPolicy>,
    /// An SPF or DKIM pass aligned with the `From` domain.
    pub aligned: bool,
    /// The `From` domain whose policy applies; empty when there is no
    /// single one.
    pub domain: String,
}

/// The verdict from mail-auth's per-mechanism results: a pass of either
/// is a pass (RFC 7489 §6.6.2); a DNS failure is a temperror, an unusable
/// record a permerror; no record (`policy` is `None`: mail-auth's own
/// policy field then reads `none`, which is not the same) is `none`;
/// otherwise, with a
/// record and no aligned pass (even if SPF and DKIM had nothing to say),
/// a fail.
pub fn verdict(
    spf: &DmarcResult,
    dkim: &DmarcResult,
    policy: Option<Policy>,
    domain: &str,
) -> DmarcVerdict {
    let policy = policy.and_then(|p| match p {
        Policy::None => Some(DmarcPolicy::None),
        Policy::Quarantine => Some(DmarcPolicy::Quarantine),
        Policy::Reject => Some(DmarcPolicy::Reject),
        Policy::Unspecified => None,
    });
    let aligned = matches!(spf, DmarcResult::Pass) || matches!(dkim, DmarcResult::Pass);
    let result = if aligned {
        DmarcOutcome::Pass
    } else {
        match (spf, dkim) {
            (DmarcResult::TempError(_), _) | (_, DmarcResult::TempError(_)) => {
                DmarcOutcome::Temperror
            }
            (DmarcResult::PermError(_), _) | (_, DmarcResult::PermError(_)) => {
                DmarcOutcome::Permerror
            }
            _ if policy.is_none() => DmarcOutcome::None,
            _ => DmarcOutcome::Fail,
        }
    };
    DmarcVerdict {
        result,
        policy,
        aligned,
        domain: domain.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::Error;

    #[test]
    fn either_aligned_pass_passes() {
        use DmarcResult as R;
        let fail = || R::Fail(Error::NotAligned);
        let temp = || R::TempError(Error::DnsError("t".into()));
        let perm = || R::PermError(Error::InvalidRecordType);
        let cases = [
            (R::Pass, fail(), DmarcOutcome::Pass, true),
            (fail(), R::Pass, DmarcOutcome::Pass, true),
            (temp(), R::Pass, DmarcOutcome::Pass, true),
            (fail(), fail(), DmarcOutcome::Fail, false),
            (fail(), R::None, DmarcOutcome::Fail, false),
            (temp(), fail(), DmarcOutcome::Temperror, false),
            (perm(), fail(), DmarcOutcome::Permerror, false),
            (R::None, R::None, DmarcOutcome::Fail, false),
        ];
        for (spf, dkim, result, aligned) in cases {
            let v = verdict(&spf, &dkim, Some(Policy::Reject), "d");
            assert_eq!((v.result, v.aligned), (result, aligned), "{spf:?} {dkim:?}");
            assert_eq!(v.policy, Some(DmarcPolicy::Reject));
        }
        let none = verdict(&R::None, &R::None, None, "");
        assert_eq!((none.result, none.policy), (DmarcOutcome::None, None));
    }
}
