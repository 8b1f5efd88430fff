//! One message's verdicts as the store keeps them beside the message
//! (`auth/<id>.json`, written after its commit and before it is
//! scheduled, removed with it), and what a delivery makes of them: the
//! payload's `auth`, and the message as the payload shows it, with our
//! `Authentication-Results:` first and any incoming one claiming our
//! authserv-id removed.
//!
//! The message in the store stays exactly as received: the header is
//! added when a payload is built (from these verdicts), so a forged
//! header is removed from what the app sees but is still on disk for an
//! operator to look at.

use serde::{Deserialize, Serialize};

use super::AuthResults;
use super::header::{authentication_results, strip_ours};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Our host name when the checks ran (the header's authserv-id).
    pub authserv_id: String,
    pub results: AuthResults,
}

impl Record {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("record serialises")
    }

    /// `None` for a record that cannot be read (then the payload goes
    /// without verdicts rather than not at all).
    pub fn from_bytes(bytes: &[u8]) -> Option<Record> {
        serde_json::from_slice(bytes).ok()
    }

    /// The message as the app sees it: our header first, then `raw`
    /// without the `Authentication-Results:` fields claiming our id.
    pub fn apply(&self, raw: &[u8]) -> Vec<u8> {
        let header = authentication_results(&self.authserv_id, &self.results);
        let rest = strip_ours(raw, &self.authserv_id);
        let mut out = Vec::with_capacity(header.len() + rest.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_checks::spf::{SpfOutcome, SpfVerdict};

    #[test]
    fn our_header_replaces_forged_ones_and_the_record_round_trips() {
        let record = Record {
            authserv_id: "mx.postern.test".into(),
            results: AuthResults {
                spf: Some(SpfVerdict {
                    result: SpfOutcome::Pass,
                    domain: "a.example".into(),
                }),
                dkim: None,
                dmarc: None,
                arc: None,
            },
        };
        let raw = b"Received: from x\r\nAuthentication-Results: MX.postern.test; dkim=pass\r\nAuthentication-Results: other.example; spf=fail\r\nFrom: a@a.example\r\n\r\nhi\r\n";
        assert_eq!(
            String::from_utf8(record.apply(raw)).unwrap(),
            "Authentication-Results: mx.postern.test;\r\n\tspf=pass smtp.mailfrom=a.example\r\n\
             Received: from x\r\nAuthentication-Results: other.example; spf=fail\r\nFrom: a@a.example\r\n\r\nhi\r\n"
        );
        assert_eq!(Record::from_bytes(&record.to_bytes()), Some(record));
        assert_eq!(Record::from_bytes(b"{"), None);
    }
}
