//! SPF (RFC 7208) of a received message: is the client address allowed to
//! send for the envelope sender's domain? The payload's `auth.spf` will
//! carry the verdict (`{result, domain}`).
//!
//! The identity checked is `MAIL FROM`'s domain; for the null sender
//! (bounces, `MAIL FROM:<>`) it is the HELO name, as RFC 7208 §2.4 says
//! (`postmaster@<helo>`).

use std::net::IpAddr;

use mail_auth::spf::verify::SpfParameters;
use mail_auth::{SpfOutput, SpfResult};
use serde::{Deserialize, Serialize};

use super::Verifier;

/// RFC 8601 words for an SPF result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfOutcome {
    Pass,
    Fail,
    Softfail,
    Neutral,
    None,
    Temperror,
    Permerror,
}

/// The SPF verdict for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfVerdict {
    pub result: SpfOutcome,
    /// The domain whose policy was checked.
    pub domain: String,
}

pub(super) fn verdict(output: &SpfOutput) -> SpfVerdict {
    SpfVerdict {
        result: outcome(output.result()),
        domain: output.domain().to_string(),
    }
}

pub fn outcome(result: SpfResult) -> SpfOutcome {
    match result {
        SpfResult::Pass => SpfOutcome::Pass,
        SpfResult::Fail => SpfOutcome::Fail,
        SpfResult::SoftFail => SpfOutcome::Softfail,
        SpfResult::Neutral => SpfOutcome::Neutral,
        SpfResult::None => SpfOutcome::None,
        SpfResult::TempError => SpfOutcome::Temperror,
        SpfResult::PermError => SpfOutcome::Permerror,
    }
}

impl Verifier {
    /// SPF for a client at `ip` that said `helo` and `MAIL FROM:<mail_from>`
    /// (empty for the null sender); `hostname` is ours (the `%{r}` macro).
    pub async fn spf(&self, ip: IpAddr, helo: &str, mail_from: &str, hostname: &str) -> SpfVerdict {
        verdict(&self.spf_output(ip, helo, mail_from, hostname).await)
    }

    /// mail-auth's output, which DMARC needs as it is.
    pub(super) async fn spf_output(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        hostname: &str,
    ) -> SpfOutput {
        let params = if mail_from.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, hostname)
        } else {
            SpfParameters::verify_mail_from(ip, helo, hostname, mail_from)
        };
        self.authenticator.verify_spf(params).await
    }
}
