//! What went wrong in one attempt: lettre's error reduced to a [`Failure`]
//! the delivery policy ([`super::policy`]) can decide on, and the wording
//! operators see for each kind (stored as the recipient's last reply).

use std::fmt;

/// Why an attempt did not end in a 2xx, reduced from lettre's error to what
/// the delivery policy needs. Kept apart from lettre's `Error` (which has no
/// public constructor) so that [`classify`](super::policy::classify) can be
/// tested with a table.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Failure {
    /// The relay answered with a negative reply.
    Reply {
        /// The reply code, e.g. 550.
        code: u16,
        /// The reply text after the code (lines joined by spaces).
        text: String,
    },
    /// Could not connect, connection reset, garbled reply, pool reset.
    Network(String),
    /// TLS could not be set up.
    Tls(String),
    /// No answer in time.
    Timeout(String),
    /// STARTTLS is required but the relay does not announce it.
    StartTlsUnavailable,
    /// Credentials are configured but the relay offers neither PLAIN nor LOGIN.
    NoAuthMechanism,
    /// A non-ASCII address, and the relay does not announce SMTPUTF8.
    SmtpUtf8Unsupported,
    /// 8-bit message bytes, and the relay does not announce 8BITMIME.
    EightBitUnsupported,
    /// Any other local refusal by lettre.
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Reply { code, text } if is_auth_code(*code) => {
                write!(f, "relay authentication failed: {code} {text}")
            }
            Failure::Reply { code, text } => write!(f, "{code} {text}"),
            Failure::Network(e) => write!(f, "cannot talk to the relay: {e}"),
            Failure::Tls(e) => write!(f, "TLS with the relay failed: {e}"),
            Failure::Timeout(e) => write!(f, "relay timed out: {e}"),
            Failure::StartTlsUnavailable => f.write_str(
                "relay does not offer STARTTLS, which POSTERN_RELAY_URL requires \
                 (use ?tls=none only for a relay on a trusted network)",
            ),
            Failure::NoAuthMechanism => f.write_str(
                "relay offers neither AUTH PLAIN nor AUTH LOGIN for the configured credentials",
            ),
            Failure::SmtpUtf8Unsupported => {
                f.write_str("address is not ASCII and the relay does not support SMTPUTF8")
            }
            Failure::EightBitUnsupported => {
                f.write_str("message has 8-bit bytes and the relay does not support 8BITMIME")
            }
            Failure::Other(e) => write!(f, "relay error: {e}"),
        }
    }
}

impl Failure {
    /// Whether the relay said nothing at all: it could not be reached, TLS
    /// failed, or it went quiet. Every other failure is a reply, or a
    /// refusal judged from one.
    pub(super) fn is_silence(&self) -> bool {
        matches!(
            self,
            Failure::Network(_) | Failure::Timeout(_) | Failure::Tls(_)
        )
    }
}

/// 530 authentication required, 534 mechanism too weak, 535 credentials
/// invalid, 538 encryption required for the mechanism (RFC 4954).
pub(super) fn is_auth_code(code: u16) -> bool {
    matches!(code, 530 | 534 | 535 | 538)
}

/// Reduces lettre's error to a [`Failure`] (so that `?` does it wherever
/// lettre is called). lettre's local refusals are only told apart by their
/// text; anything unrecognised stays `Other` (deferred), the safe side.
impl From<lettre::transport::smtp::Error> for Failure {
    fn from(err: lettre::transport::smtp::Error) -> Self {
        use std::error::Error as _;
        if let Some(code) = err.status() {
            let text = err.source().map(ToString::to_string).unwrap_or_default();
            return Failure::Reply {
                code: u16::from(code),
                text,
            };
        }
        if err.is_timeout() {
            return Failure::Timeout(err.to_string());
        }
        if err.is_tls() {
            return Failure::Tls(err.to_string());
        }
        if err.is_client() {
            let text = err.to_string();
            return if text.contains("STARTTLS is not supported") {
                Failure::StartTlsUnavailable
            } else if text.contains("No compatible authentication mechanism") {
                Failure::NoAuthMechanism
            } else if text.contains("SMTPUTF8") {
                Failure::SmtpUtf8Unsupported
            } else if text.contains("8BITMIME") {
                Failure::EightBitUnsupported
            } else {
                Failure::Other(text)
            };
        }
        // Connection, network, unparsable reply, transport shut down: lettre
        // files TLS handshake failures under "connection" too, with rustls's
        // reason (e.g. "invalid peer certificate: UnknownIssuer") in the text.
        Failure::Network(err.to_string())
    }
}
