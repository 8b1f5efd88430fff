//! HELO and EHLO (RFC 5321 4.1.1.1): the greeting that starts (and
//! resets) a session's transaction, and the ESMTP keywords we advertise.

use tokio::io::{AsyncRead, AsyncWrite};

use super::AuthMode;
use super::printable::sanitize;
use super::reply;
use super::session::{Next, Session, Transaction};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn hello(&mut self, host: &str, esmtp: bool) -> Next {
        if host.is_empty() || host.chars().any(char::is_control) {
            return self.error(if esmtp {
                reply::EHLO_SYNTAX
            } else {
                reply::HELO_SYNTAX
            });
        }
        // A new greeting resets any transaction (RFC 5321 4.1.4).
        self.tx = Transaction::default();
        self.helo = Some(host.to_string());
        self.esmtp = esmtp;
        // Echoed back: keep replies printable ASCII whatever the client sent.
        let host = sanitize(host);
        let name = &self.inbound.settings.hostname;
        if esmtp {
            let size = self.inbound.settings.limits.max_message_size;
            let words = keywords(size, self.starttls_offered(), self.auth_offered());
            for line in reply::ehlo(name, &host, &words) {
                self.reply(&line);
            }
        } else {
            let line = reply::helo(name, &host);
            self.reply(&line);
        }
        Next::Continue
    }

    fn starttls_offered(&self) -> bool {
        self.inbound.tls.is_some() && self.tls.is_none()
    }

    fn auth_offered(&self) -> bool {
        let sec = &self.inbound.settings.security;
        sec.auth != AuthMode::Off && (self.tls.is_some() || sec.allow_insecure_auth)
    }
}

/// The EHLO keywords, in the order we send them. STARTTLS only while the
/// session is plaintext and a certificate is configured; AUTH only where
/// credentials may be sent (on TLS, unless insecure AUTH is allowed).
fn keywords(max_message_size: u64, starttls: bool, auth: bool) -> Vec<String> {
    let mut words = vec![
        "PIPELINING".to_string(),
        format!("SIZE {max_message_size}"),
        "8BITMIME".to_string(),
        "SMTPUTF8".to_string(),
        "ENHANCEDSTATUSCODES".to_string(),
    ];
    if starttls {
        words.push("STARTTLS".into());
    }
    if auth {
        words.push("AUTH PLAIN LOGIN".into());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_table() {
        let base = [
            "PIPELINING",
            "SIZE 1000",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ];
        let with = |extra: &[&str]| -> Vec<String> {
            base.iter().chain(extra).map(|s| s.to_string()).collect()
        };
        assert_eq!(keywords(1000, false, false), with(&[]));
        assert_eq!(keywords(1000, true, false), with(&["STARTTLS"]));
        assert_eq!(keywords(1000, false, true), with(&["AUTH PLAIN LOGIN"]));
        assert_eq!(
            keywords(1000, true, true),
            with(&["STARTTLS", "AUTH PLAIN LOGIN"])
        );
    }
}
