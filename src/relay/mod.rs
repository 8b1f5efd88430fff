//! Outbound SMTP: hands messages that Postern accepted over HTTP to an SMTP
//! relay (smarthost), configured by `POSTERN_RELAY_URL`.
//!
//! The SMTP client is lettre's [`AsyncSmtpConnection`] on Tokio with rustls
//! (ring), on TCP connections Postern opens itself. This module adds what
//! Postern needs on top of it:
//!
//! * [`RelayConfig`]: parsing and validation of `POSTERN_RELAY_URL`, with the
//!   password kept out of every `Debug` output and error message.
//! * [`Relay::send`]: one [`RcptOutcome`] per recipient. lettre aborts the
//!   whole transaction on the first refused `RCPT`, so when the relay refuses
//!   something in a multi-recipient transaction each recipient is retried in
//!   a transaction of its own to learn which ones the relay really refuses.
//! * A pool of idle connections, reused without a probe (see
//!   [`Relay::with_pool_size`]), and `TCP_NODELAY` on every connection.
//! * A whole-transaction deadline, because lettre bounds no network wait.
//! * [`Relay::check`] for `postern doctor`: EHLO, STARTTLS and AUTH without
//!   sending mail.
//!
//! Delivery policy (see [`classify`]):
//!
//! | relay says / what happened                           | outcome    |
//! |------------------------------------------------------|------------|
//! | 2xx after `DATA`                                     | `Sent`     |
//! | 4xx, connection refused/reset, TLS failure, timeout  | `Deferred` |
//! | 530/534/535/538 (authentication problems)            | `Deferred` |
//! | no STARTTLS although required, no usable AUTH        | `Deferred` |
//! | other 5xx; 8-bit body and relay lacks 8BITMIME       | `Failed`   |
//! | non-ASCII address and relay lacks SMTPUTF8           | `Failed`   |
//!
//! A refusal that may concern single recipients (4xx except 421/454, 5xx
//! except authentication) in a multi-recipient transaction is followed by
//! one transaction per recipient; see [`Relay::send`].
//!
//! Authentication and TLS problems are `Deferred` rather than `Failed`: they
//! are fixed by an operator (credentials, certificates), not by the sender,
//! and the mail must survive until then.
//!
//! Message bytes: bare LF and bare CR are turned into CRLF before sending.
//! SMTP forbids them, and relays that accept them are the ones open to SMTP
//! smuggling (`<LF>.<CR><LF>`). A CRLF-terminated message arrives byte for
//! byte; one without a final CRLF gets one, since SMTP data is made of lines.
//! A message with 8-bit bytes needs a relay announcing 8BITMIME.
//!
//! Addresses are passed through as given (UTF-8 included). lettre only sends
//! non-ASCII addresses to a relay announcing SMTPUTF8; otherwise the affected
//! recipient is `Failed` with a reason saying so, since retrying cannot help.
//!
//! [`Relay::send`] and [`Relay::check`] must run inside a Tokio runtime (the
//! pool spawns its idle-connection reaper there).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)] // AsyncNetworkStream: lettre's only way to TLS on a stream of one's own.
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::{ClientId, Extension, ServerInfo};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Host, Url};

/// Default port for `smtp://`: submission (RFC 6409).
pub const DEFAULT_SMTP_PORT: u16 = 587;
/// Default port for `smtps://`: submission over implicit TLS (RFC 8314).
pub const DEFAULT_SMTPS_PORT: u16 = 465;
/// Default network timeout when the URL has no `?timeout=`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `?timeout=` accepted, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 600;

// Mechanisms in order of preference; lettre uses the first the relay offers.
const AUTH_MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// A problem with `POSTERN_RELAY_URL` (or the EHLO name / CA file it points to).
///
/// Messages never contain the password: none of the variants carries it.
#[derive(Debug, thiserror::Error)]
pub enum RelayConfigError {
    /// The URL does not parse at all.
    #[error("POSTERN_RELAY_URL: not a valid URL ({0})")]
    InvalidUrl(#[source] url::ParseError),
    /// Neither `smtp` nor `smtps`.
    #[error("POSTERN_RELAY_URL: unsupported scheme {0:?}; use smtp:// or smtps://")]
    UnsupportedScheme(String),
    /// `smtp://` with nothing (or something unusable) as host.
    #[error("POSTERN_RELAY_URL: missing host (expected smtp://host[:port] or smtps://host[:port])")]
    MissingHost,
    /// A host with characters no DNS name has.
    #[error("POSTERN_RELAY_URL: invalid host {0:?}")]
    InvalidHost(String),
    /// Port 0.
    #[error("POSTERN_RELAY_URL: port must be between 1 and 65535")]
    InvalidPort,
    /// Anything after the authority other than `/`.
    #[error("POSTERN_RELAY_URL: unexpected path; the URL takes no path")]
    UnexpectedPath,
    /// A `#`; usually an unencoded `#` in the password.
    #[error("POSTERN_RELAY_URL: unexpected '#' (percent-encode '#' as %23 in user or password)")]
    UnexpectedFragment,
    /// User without password or password without user.
    #[error("POSTERN_RELAY_URL: credentials need both a user and a password (user:pass@host)")]
    IncompleteCredentials,
    /// User or password percent-decodes to something that is not UTF-8.
    #[error("POSTERN_RELAY_URL: the {0} is not valid percent-encoded UTF-8")]
    BadCredentialEncoding(&'static str),
    /// A query parameter this module does not know (typos must not pass silently).
    #[error("POSTERN_RELAY_URL: unknown parameter {0:?} (known: tls, ca, helo, timeout)")]
    UnknownParameter(String),
    /// The same query parameter twice.
    #[error("POSTERN_RELAY_URL: parameter {0:?} given more than once")]
    DuplicateParameter(String),
    /// `?tls=` with a value other than `none` / `starttls`.
    #[error("POSTERN_RELAY_URL: tls must be \"none\" or \"starttls\" (got {0:?})")]
    InvalidTlsMode(String),
    /// `?tls=` on `smtps://`, which is always implicit TLS.
    #[error("POSTERN_RELAY_URL: smtps:// always uses implicit TLS; drop the tls parameter")]
    TlsParameterOnSmtps,
    /// `?ca=` together with `?tls=none`.
    #[error("POSTERN_RELAY_URL: ca is given but tls=none turns TLS off")]
    CaWithoutTls,
    /// `?ca=` empty.
    #[error("POSTERN_RELAY_URL: ca needs a file path")]
    EmptyCa,
    /// `?timeout=` not a whole number of seconds in range.
    #[error(
        "POSTERN_RELAY_URL: timeout must be whole seconds between 1 and {MAX_TIMEOUT_SECS} (got {0:?})"
    )]
    InvalidTimeout(String),
    /// The EHLO name (from `?helo=` or the hostname) is not a domain or address literal.
    #[error("POSTERN_RELAY_URL: invalid EHLO name {0:?} (need a domain name or IP address)")]
    InvalidHelo(String),
    /// The `?ca=` file cannot be read.
    #[error("POSTERN_RELAY_URL: cannot read ca file {path:?}: {source}")]
    CaUnreadable {
        /// The path from `?ca=`.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The `?ca=` file holds no PEM certificate rustls accepts.
    #[error("POSTERN_RELAY_URL: ca file {path:?} holds no usable PEM certificate ({reason})")]
    CaInvalid {
        /// The path from `?ca=`.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

impl From<url::ParseError> for RelayConfigError {
    fn from(e: url::ParseError) -> Self {
        match e {
            url::ParseError::EmptyHost => RelayConfigError::MissingHost,
            other => RelayConfigError::InvalidUrl(other),
        }
    }
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text (`smtp://…?tls=none`). Only for a relay on a trusted network.
    None,
    /// STARTTLS, required: a relay without it is treated as unavailable.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::None => "no TLS",
            TlsMode::StartTls => "STARTTLS",
            TlsMode::Implicit => "implicit TLS",
        })
    }
}

/// Parsed POSTERN_RELAY_URL:
/// `smtp://[user:pass@]host[:port][?tls=none|starttls]` (default port 587,
/// STARTTLS REQUIRED unless `?tls=none`) or `smtps://[user:pass@]host[:port]`
/// (default 465, implicit TLS). User and password are percent-decoded.
/// `Debug` redacts the password.
///
/// Further parameters: `?ca=/path/to/ca.pem` trusts extra roots (tests,
/// private relays) on top of the built-in Mozilla roots; `?helo=name` sets the
/// EHLO name (default: the hostname passed to [`Relay::new`]);
/// `?timeout=SECS` (default 30) bounds connecting and, scaled, a whole
/// transaction (see [`transaction_deadline`]).
#[derive(Clone)]
pub struct RelayConfig {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<(String, String)>,
    ca: Option<PathBuf>,
    helo: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user())
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("helo", &self.helo)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RelayConfig {
    /// Parses and validates a `POSTERN_RELAY_URL` value.
    ///
    /// Pure: the `ca` file is only read by [`Relay::new`].
    pub fn parse(input: &str) -> Result<Self, RelayConfigError> {
        let url = Url::parse(input.trim())?;
        let (mut tls, port) = match url.scheme() {
            "smtp" => (TlsMode::StartTls, DEFAULT_SMTP_PORT),
            "smtps" => (TlsMode::Implicit, DEFAULT_SMTPS_PORT),
            other => return Err(RelayConfigError::UnsupportedScheme(other.to_owned())),
        };
        let host = match url.host() {
            None => return Err(RelayConfigError::MissingHost),
            Some(Host::Domain("")) => return Err(RelayConfigError::MissingHost),
            Some(Host::Domain(name)) => {
                // smtp is not a "special" scheme to the url crate, so the host
                // stays opaque (no IDNA, no lowercasing); check it here.
                let ok = name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !ok {
                    return Err(RelayConfigError::InvalidHost(name.to_owned()));
                }
                name.to_ascii_lowercase()
            }
            Some(Host::Ipv4(ip)) => ip.to_string(),
            // Without brackets: lettre hands host and port to the resolver
            // separately, and rustls wants the bare address as server name.
            Some(Host::Ipv6(ip)) => ip.to_string(),
        };
        let port = match url.port() {
            Some(0) => return Err(RelayConfigError::InvalidPort),
            Some(p) => p,
            None => port,
        };
        if !matches!(url.path(), "" | "/") {
            return Err(RelayConfigError::UnexpectedPath);
        }
        if url.fragment().is_some() {
            return Err(RelayConfigError::UnexpectedFragment);
        }

        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            ("", Some(_)) | (_, None) | (_, Some("")) => {
                return Err(RelayConfigError::IncompleteCredentials);
            }
            (user, Some(pass)) => Some((
                percent_decode(user).ok_or(RelayConfigError::BadCredentialEncoding("user"))?,
                percent_decode(pass).ok_or(RelayConfigError::BadCredentialEncoding("password"))?,
            )),
        };

        let mut tls_param = None;
        let mut ca = None;
        let mut helo = None;
        let mut timeout = None;
        for (key, value) in url.query_pairs() {
            let slot = match key.as_ref() {
                "tls" => &mut tls_param,
                "ca" => &mut ca,
                "helo" => &mut helo,
                "timeout" => &mut timeout,
                _ => return Err(RelayConfigError::UnknownParameter(key.into_owned())),
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(RelayConfigError::DuplicateParameter(key.into_owned()));
            }
        }
        if let Some(mode) = tls_param {
            if tls == TlsMode::Implicit {
                return Err(RelayConfigError::TlsParameterOnSmtps);
            }
            tls = match mode.to_ascii_lowercase().as_str() {
                "none" => TlsMode::None,
                "starttls" => TlsMode::StartTls,
                _ => return Err(RelayConfigError::InvalidTlsMode(mode)),
            };
        }
        let ca = match ca {
            Some(path) if path.is_empty() => return Err(RelayConfigError::EmptyCa),
            Some(_) if tls == TlsMode::None => return Err(RelayConfigError::CaWithoutTls),
            other => other.map(PathBuf::from),
        };
        if let Some(name) = &helo {
            client_id(name)?;
        }
        let timeout = match timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => match t.parse::<u64>() {
                Ok(secs @ 1..=MAX_TIMEOUT_SECS) => Duration::from_secs(secs),
                _ => return Err(RelayConfigError::InvalidTimeout(t)),
            },
        };

        Ok(RelayConfig {
            host,
            port,
            tls,
            credentials,
            ca,
            helo,
            timeout,
        })
    }

    /// Host to connect to (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the connection is protected.
    pub fn tls(&self) -> TlsMode {
        self.tls
    }

    /// User for AUTH, if credentials were given.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(user, _)| user.as_str())
    }

    /// Extra trusted root certificates (`?ca=`).
    pub fn ca(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    /// EHLO name override (`?helo=`).
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// Network timeout (`?timeout=`, default 30 s).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Percent-decodes URL userinfo. Not `form_urlencoded`: `+` stays `+` here.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Turns an EHLO name into lettre's `ClientId`, refusing anything that could
/// smuggle extra SMTP commands (spaces, CR, LF) or is not a plausible name.
fn client_id(name: &str) -> Result<ClientId, RelayConfigError> {
    let invalid = || RelayConfigError::InvalidHelo(name.to_owned());
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => return Ok(ClientId::Ipv4(ip)),
        Ok(IpAddr::V6(ip)) => return Ok(ClientId::Ipv6(ip)),
        Err(_) if bare != name => return Err(invalid()),
        Err(_) => {}
    }
    let valid = name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid {
        Ok(ClientId::Domain(name.to_owned()))
    } else {
        Err(invalid())
    }
}

/// One recipient's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum RcptOutcome {
    /// The relay took responsibility for the message (2xx after `DATA`).
    Sent {
        /// The relay's final reply, e.g. `250 2.0.0 Ok: queued as X`.
        reply: String,
    },
    /// Try again later; nothing was lost.
    Deferred {
        /// The relay's reply or what went wrong.
        reply: String,
    },
    /// The relay refused this recipient for good (or it can never be sent).
    Failed {
        /// The relay's reply or what went wrong.
        reply: String,
    },
}

/// Whether the relay answered an attempt: see [`Relay::send_reporting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// The relay replied, whatever it said.
    Answered,
    /// No reply: no connection, a timeout, a lost connection, TLS failed.
    Unreachable,
    /// Nothing was tried (no valid sender or recipient).
    None,
}

/// Why an attempt did not end in a 2xx, reduced from lettre's error to what
/// the delivery policy needs. Kept apart from lettre's `Error` (which has no
/// public constructor) so that [`classify`] can be tested with a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
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

/// 530 authentication required, 534 mechanism too weak, 535 credentials
/// invalid, 538 encryption required for the mechanism (RFC 4954).
fn is_auth_code(code: u16) -> bool {
    matches!(code, 530 | 534 | 535 | 538)
}

/// What one attempt means for its recipients.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The outcome for every recipient of the attempt.
    pub outcome: RcptOutcome,
    /// Whether recipients of a multi-recipient attempt may fare differently
    /// on their own (a refused RCPT aborts the whole lettre transaction), so
    /// that they are worth a transaction each.
    pub split: bool,
}

/// The delivery policy, as a pure function of one attempt's result.
pub fn classify(result: &Result<Response, Failure>) -> Verdict {
    let failure = match result {
        Ok(response) => {
            return Verdict {
                outcome: RcptOutcome::Sent {
                    reply: reply_text(response),
                },
                split: false,
            };
        }
        Err(failure) => failure,
    };
    let reply = failure.to_string();
    let (outcome, split) = match failure {
        // Operator problems: the relay will take the mail once fixed.
        Failure::Reply { code, .. } if is_auth_code(*code) => {
            (RcptOutcome::Deferred { reply }, false)
        }
        // 421: the relay is closing the channel; 454: TLS or AUTH temporarily
        // unavailable. Neither depends on the recipient.
        Failure::Reply {
            code: 421 | 454, ..
        } => (RcptOutcome::Deferred { reply }, false),
        // Other 4xx may be one RCPT (451 greylisting, 452 too many
        // recipients): the other recipients should not wait for it.
        Failure::Reply {
            code: 400..=499, ..
        } => (RcptOutcome::Deferred { reply }, true),
        Failure::Reply {
            code: 500..=599, ..
        } => (RcptOutcome::Failed { reply }, true),
        // A 1xx/2xx/3xx where a 2xx was due, or no code at all: a confused
        // relay, which is no reason to drop mail.
        Failure::Reply { .. } => (RcptOutcome::Deferred { reply }, false),
        // May concern one recipient's address only.
        Failure::SmtpUtf8Unsupported => (RcptOutcome::Failed { reply }, true),
        // Concerns the message itself, for every recipient alike.
        Failure::EightBitUnsupported => (RcptOutcome::Failed { reply }, false),
        Failure::Network(_)
        | Failure::Tls(_)
        | Failure::Timeout(_)
        | Failure::StartTlsUnavailable
        | Failure::NoAuthMechanism
        | Failure::Other(_) => (RcptOutcome::Deferred { reply }, false),
    };
    Verdict { outcome, split }
}

/// `250 2.0.0 Ok: queued as X` from lettre's code + lines.
fn reply_text(response: &Response) -> String {
    let mut text = response.code().to_string();
    for line in response.message() {
        text.push(' ');
        text.push_str(line);
    }
    text
}

/// Reduces lettre's error to a [`Failure`]. lettre's local refusals are
/// only told apart by their text; anything unrecognised stays `Other`
/// (deferred), the safe side.
fn reduce(err: &lettre::transport::smtp::Error) -> Failure {
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

/// How long one transaction (connect, EHLO, STARTTLS, AUTH, MAIL, RCPTs,
/// DATA, final reply) may take: twice the network timeout plus one second per
/// 64 KiB of message. Only the TCP connect has a timeout of its own, so
/// without this a relay that accepts and then stalls would hold a sender
/// forever.
pub fn transaction_deadline(timeout: Duration, message_len: usize) -> Duration {
    timeout * 2 + Duration::from_secs((message_len / (64 * 1024)) as u64)
}

/// Prepares message bytes for lettre, which dot-stuffs CRLF lines and then
/// appends `CRLF . CRLF`:
/// * bare LF / bare CR become CRLF (SMTP smuggling defence, see module docs);
/// * one final CRLF is dropped, as lettre's terminator supplies it, so that
///   the relay receives exactly the CRLF-terminated message.
pub fn smtp_body(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64);
    let mut bytes = message.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// Parses `MAIL FROM`; `""` and `"<>"` are the null sender (bounces).
fn parse_sender(mail_from: &str) -> Result<Option<Address>, String> {
    let bare = strip_brackets(mail_from);
    if bare.is_empty() {
        return Ok(None);
    }
    bare.parse::<Address>()
        .map(Some)
        .map_err(|e| format!("invalid sender address {mail_from:?}: {e}"))
}

fn parse_recipient(rcpt: &str) -> Result<Address, String> {
    strip_brackets(rcpt)
        .parse::<Address>()
        .map_err(|e| format!("invalid recipient address {rcpt:?}: {e}"))
}

fn strip_brackets(addr: &str) -> &str {
    addr.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(addr)
}

/// Idle connections older than this are not reused (and are closed with
/// `QUIT` by the pool's reaper).
const MAX_IDLE: Duration = Duration::from_secs(60);
/// How long a `QUIT` to a retired idle connection may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept for reuse unless [`Relay::with_pool_size`] says
/// otherwise.
pub const DEFAULT_POOL_SIZE: usize = 10;

/// The TCP socket under one relay connection, opened by Postern (with
/// `TCP_NODELAY`: lettre writes the message and the final `.` separately,
/// and Nagle's algorithm would hold the `.` back until the relay's delayed
/// ACK, some 40 ms per message). Shared between the stream lettre drives and
/// the pool, which looks at an idle socket without reading from it.
#[derive(Debug)]
struct Socket {
    tcp: TcpStream,
    /// Bytes received so far, to tell whether the relay said anything
    /// during a transaction.
    received: AtomicU64,
}

impl Socket {
    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Whether nothing arrived while the connection was idle. A relay that
    /// timed the connection out has closed it (end of stream) or said `421`
    /// first; either way the connection is no use. Costs one `recv` with
    /// `MSG_PEEK` at most, no round trip.
    fn is_quiet(&self) -> bool {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        self.tcp.poll_peek(&mut cx, &mut buf).is_pending()
    }
}

/// The [`Socket`] as the stream lettre reads and writes (through TLS when
/// there is TLS).
#[derive(Debug)]
struct SocketStream(Arc<Socket>);

impl AsyncRead for SocketStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = &self.0;
        loop {
            ready!(socket.tcp.poll_read_ready(cx))?;
            match socket.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    socket.received.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SocketStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The socket closes when the connection is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncTokioStream for SocketStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.tcp.peer_addr()
    }
}

/// What lettre reads while [`AsyncSmtpConnection::connect_with_transport`]
/// builds a connection for implicit TLS (see [`Shared::open`]): a greeting
/// and an EHLO reply, played from memory. Writes go nowhere.
///
/// lettre can only start a connection on a plain stream, and its TLS stream
/// can only be handed to a connection that exists. So the connection is
/// built on this stand-in, given the real TLS stream, and then greets and
/// says EHLO for real. The stand-in's EHLO reply announces what Postern may
/// ask for, so that lettre's checks, which look at it, defer to Postern's,
/// which look at the relay's real reply ([`unsupported`], [`Shared::open`]).
#[derive(Debug, Default)]
struct StandIn {
    sent: usize,
}

const STAND_IN_REPLIES: &[u8] =
    b"220 stand-in\r\n250-stand-in\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN\r\n";

impl AsyncRead for StandIn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rest = &STAND_IN_REPLIES[self.sent..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.sent += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StandIn {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncTokioStream for StandIn {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Err(io::Error::other("stand-in stream has no peer"))
    }
}

/// One open, greeted (and, as configured, encrypted and authenticated)
/// connection to the relay.
struct Conn {
    smtp: AsyncSmtpConnection,
    /// The relay's real EHLO reply (lettre's own copy is the stand-in's for
    /// implicit TLS).
    info: ServerInfo,
    socket: Arc<Socket>,
    idle_since: Instant,
}

/// Why the relay cannot take this envelope or message at all, judged from
/// its EHLO reply as lettre would (SMTPUTF8 first, then 8BITMIME).
fn unsupported(info: &ServerInfo, envelope: &Envelope, body: &[u8]) -> Option<Failure> {
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii && !info.supports_feature(Extension::SmtpUtfEight) {
        return Some(Failure::SmtpUtf8Unsupported);
    }
    if !body.is_ascii() && !info.supports_feature(Extension::EightBitMime) {
        return Some(Failure::EightBitUnsupported);
    }
    None
}

/// Closes an idle connection politely (`QUIT`), off the caller's path.
fn dismiss(mut conn: Conn) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.smtp.quit()).await;
    });
}

struct Shared {
    host: String,
    port: u16,
    tls_mode: TlsMode,
    tls: Option<TlsParameters>,
    hello: ClientId,
    credentials: Option<Credentials>,
    user: Option<String>,
    timeout: Duration,
    /// Most idle connections kept.
    pool_size: AtomicUsize,
    /// Idle connections, most recently used last.
    idle: Mutex<Vec<Conn>>,
    reaper_started: AtomicBool,
}

impl Shared {
    /// The most recently used idle connection that is young enough and has
    /// heard nothing from the relay since; the others on the way are closed.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() < MAX_IDLE && conn.socket.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection after a transaction that left it usable (ended
    /// with a reply, nothing aborted), while the pool has room.
    fn put_back(self: &Arc<Self>, mut conn: Conn) {
        if conn.smtp.has_broken() {
            return;
        }
        conn.idle_since = Instant::now();
        let surplus = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.pool_size.load(Ordering::Relaxed) {
                idle.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        match surplus {
            Some(conn) => dismiss(conn),
            None => self.start_reaper(),
        }
    }

    /// Starts, once, the task that closes connections idle for
    /// [`MAX_IDLE`]; it ends when the [`Relay`] is dropped.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let shared = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MAX_IDLE / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let expired: Vec<Conn> = {
                    let mut idle = shared.idle.lock().unwrap_or_else(PoisonError::into_inner);
                    let (old, young) = std::mem::take(&mut *idle)
                        .into_iter()
                        .partition(|c| c.idle_since.elapsed() >= MAX_IDLE);
                    *idle = young;
                    old
                };
                drop(shared);
                expired.into_iter().for_each(dismiss);
            }
        });
    }

    /// A TCP connection with `TCP_NODELAY` to the first address of the relay
    /// that answers, each address given the network timeout.
    async fn connect_tcp(&self) -> Result<TcpStream, Failure> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| Failure::Network(format!("Connection error: {e}")))?;
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    tcp.set_nodelay(true)
                        .map_err(|e| Failure::Network(format!("Connection error: {e}")))?;
                    return Ok(tcp);
                }
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some("connection timed out".to_owned()),
            }
        }
        let reason = last.unwrap_or_else(|| "could not resolve to any address".to_owned());
        Err(Failure::Network(format!("Connection error: {reason}")))
    }

    /// A new connection: TCP, greeting, EHLO, TLS as configured, AUTH when
    /// credentials are given.
    #[allow(deprecated)] // lettre's AsyncNetworkStream; its only way to TLS.
    async fn open(&self) -> Result<Conn, Failure> {
        let lettre = |e: lettre::transport::smtp::Error| reduce(&e);
        let socket = Arc::new(Socket {
            tcp: self.connect_tcp().await?,
            received: AtomicU64::new(0),
        });
        let stream = Box::new(SocketStream(Arc::clone(&socket)));
        let (mut smtp, info) = match (self.tls_mode, &self.tls) {
            (TlsMode::Implicit, Some(tls)) => {
                let mut tls_stream = AsyncNetworkStream::use_existing_tokio1(stream);
                tls_stream.upgrade_tls(tls.clone()).await.map_err(lettre)?;
                let mut smtp = AsyncSmtpConnection::connect_with_transport(
                    Box::new(StandIn::default()),
                    &self.hello,
                )
                .await
                .map_err(lettre)?;
                smtp.set_stream(tls_stream);
                smtp.read_response().await.map_err(lettre)?;
                let ehlo = smtp
                    .command(Ehlo::new(self.hello.clone()))
                    .await
                    .map_err(lettre)?;
                let info = ServerInfo::from_response(&ehlo).map_err(lettre)?;
                (smtp, info)
            }
            (mode, tls) => {
                let mut smtp = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                    .await
                    .map_err(lettre)?;
                if let (TlsMode::StartTls, Some(tls)) = (mode, tls) {
                    smtp.starttls(tls.clone(), &self.hello)
                        .await
                        .map_err(lettre)?;
                }
                let info = smtp.server_info().clone();
                (smtp, info)
            }
        };
        if let Some(credentials) = &self.credentials {
            // Chosen from the real EHLO reply; lettre's copy may be the
            // stand-in's, which offers both.
            let mechanism = info
                .get_auth_mechanism(&AUTH_MECHANISMS)
                .ok_or(Failure::NoAuthMechanism)?;
            smtp.auth(&[mechanism], credentials).await.map_err(lettre)?;
        }
        Ok(Conn {
            smtp,
            info,
            socket,
            idle_since: Instant::now(),
        })
    }

    /// One transaction: on an idle connection if there is one, else on a
    /// new one.
    ///
    /// An idle connection is reused without a probe. If the relay dropped it
    /// anyway, the transaction fails with a network error before the relay
    /// said anything (not one byte received). Then the relay cannot have
    /// received the message: lettre sends each command only after the
    /// previous reply, so without a reply to `MAIL` nothing after it went
    /// out. Only in that case the transaction is repeated, once, on a new
    /// connection. Every other failure is reported, so no message can be
    /// sent twice by this module.
    async fn transact(
        self: &Arc<Self>,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<Response, Failure> {
        let mut idle = self.take_idle();
        loop {
            let reused = idle.is_some();
            let mut conn = match idle.take() {
                Some(conn) => conn,
                None => self.open().await?,
            };
            if let Some(refusal) = unsupported(&conn.info, envelope, body) {
                self.put_back(conn);
                return Err(refusal);
            }
            let received = conn.socket.received();
            match conn.smtp.send(envelope, body).await {
                Ok(response) => {
                    self.put_back(conn);
                    return Ok(response);
                }
                Err(e)
                    if reused
                        && conn.socket.received() == received
                        && e.status().is_none()
                        && !e.is_client() =>
                {
                    tracing::debug!(error = %e, "idle relay connection was gone; using a new one");
                }
                Err(e) => {
                    // lettre aborted (QUIT, close) after any error it got
                    // from the relay; `put_back` drops such connections.
                    self.put_back(conn);
                    return Err(reduce(&e));
                }
            }
        }
    }
}

/// Async SMTP client on lettre's [`AsyncSmtpConnection`], with connections
/// Postern opens itself (`TCP_NODELAY`) and a pool of idle ones (see
/// [`Relay::with_pool_size`]); AUTH PLAIN/LOGIN when credentials are given;
/// 30 s connect timeout by default and a whole-transaction deadline, see
/// [`transaction_deadline`].
pub struct Relay {
    shared: Arc<Shared>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("Relay")
            .field("host", &s.host)
            .field("port", &s.port)
            .field("tls", &s.tls_mode)
            .field("user", &s.user)
            .field("hello", &s.hello)
            .field("pool_size", &s.pool_size.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Builds the client with an empty pool that keeps up to
    /// [`DEFAULT_POOL_SIZE`] idle connections. Reads the `?ca=` file.
    /// Connects to nothing yet.
    ///
    /// `helo_name` is used for EHLO unless the URL has `?helo=`.
    pub fn new(cfg: &RelayConfig, helo_name: &str) -> Result<Relay, RelayConfigError> {
        let hello = client_id(cfg.helo.as_deref().unwrap_or(helo_name))?;
        let tls = match cfg.tls {
            TlsMode::None => None,
            TlsMode::StartTls | TlsMode::Implicit => Some(tls_parameters(cfg)?),
        };
        let credentials = cfg
            .credentials
            .as_ref()
            .map(|(user, pass)| Credentials::new(user.clone(), pass.clone()));
        if credentials.is_some() {
            let loopback = cfg.host == "localhost"
                || cfg.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if cfg.tls == TlsMode::None && !loopback {
                tracing::warn!(
                    host = %cfg.host,
                    "POSTERN_RELAY_URL has tls=none with credentials: the password crosses the network in clear text"
                );
            }
        }
        Ok(Relay {
            shared: Arc::new(Shared {
                host: cfg.host.clone(),
                port: cfg.port,
                tls_mode: cfg.tls,
                tls,
                hello,
                credentials,
                user: cfg.user().map(str::to_owned),
                timeout: cfg.timeout,
                pool_size: AtomicUsize::new(DEFAULT_POOL_SIZE),
                idle: Mutex::new(Vec::new()),
                reaper_started: AtomicBool::new(false),
            }),
        })
    }

    /// Keeps up to `n` idle connections for reuse (0: none). Connections in
    /// use are not limited: every concurrent [`Relay::send`] has its own, so
    /// `n` is best the number of concurrent senders. An idle connection is
    /// reused for up to 60 s, then closed with `QUIT`.
    #[must_use]
    pub fn with_pool_size(self, n: usize) -> Relay {
        self.shared.pool_size.store(n, Ordering::Relaxed);
        self
    }

    /// Submits `message` (raw RFC 5322 bytes) for `mail_from` (`""` for the
    /// null sender) to `rcpt_to`, returning one outcome per recipient in the
    /// same order. Never panics on relay behaviour; see [`classify`] for the
    /// policy. Syntactically invalid addresses are `Failed` without asking
    /// the relay.
    ///
    /// When a multi-recipient transaction is refused in a way that may be
    /// per-recipient (4xx other than 421/454, 5xx other than authentication),
    /// each recipient is retried alone, one after another, and reported on
    /// its own. Nothing was delivered by the refused transaction, so this
    /// cannot duplicate mail.
    ///
    /// A timed-out attempt reports `Deferred`; as always with SMTP, a relay
    /// that stalled after receiving the data may still deliver it.
    pub async fn send(
        &self,
        mail_from: &str,
        rcpt_to: &[String],
        message: &[u8],
    ) -> Vec<RcptOutcome> {
        self.send_reporting(mail_from, rcpt_to, message).await.0
    }

    /// [`Relay::send`], also telling whether the relay answered at all (the
    /// delivery worker's circuit breaker counts the attempts that did not).
    pub async fn send_reporting(
        &self,
        mail_from: &str,
        rcpt_to: &[String],
        message: &[u8],
    ) -> (Vec<RcptOutcome>, Contact) {
        let sender = match parse_sender(mail_from) {
            Ok(sender) => sender,
            Err(reply) => {
                return (
                    vec![RcptOutcome::Failed { reply }; rcpt_to.len()],
                    Contact::None,
                );
            }
        };
        let mut outcomes = Vec::with_capacity(rcpt_to.len());
        let mut valid = Vec::with_capacity(rcpt_to.len());
        for (index, rcpt) in rcpt_to.iter().enumerate() {
            match parse_recipient(rcpt) {
                Ok(address) => {
                    valid.push((index, address));
                    // Placeholder, overwritten below for every valid index.
                    outcomes.push(RcptOutcome::Deferred {
                        reply: String::new(),
                    });
                }
                Err(reply) => outcomes.push(RcptOutcome::Failed { reply }),
            }
        }
        if valid.is_empty() {
            return (outcomes, Contact::None);
        }

        let body: Arc<[u8]> = smtp_body(message).into();
        let everyone = valid.iter().map(|(_, a)| a.clone()).collect();
        let first = self
            .attempt(sender.clone(), everyone, Arc::clone(&body))
            .await;
        let contact = match &first {
            Err(Failure::Network(_) | Failure::Timeout(_) | Failure::Tls(_)) => {
                Contact::Unreachable
            }
            _ => Contact::Answered,
        };
        let verdict = classify(&first);
        if verdict.split && valid.len() > 1 {
            tracing::debug!(
                reply = ?verdict.outcome,
                recipients = valid.len(),
                "relay refused the transaction; retrying each recipient alone"
            );
            for (index, address) in valid {
                let alone = self
                    .attempt(sender.clone(), vec![address], Arc::clone(&body))
                    .await;
                outcomes[index] = classify(&alone).outcome;
            }
        } else {
            for (index, _) in valid {
                outcomes[index] = verdict.outcome.clone();
            }
        }
        (outcomes, contact)
    }

    /// Scheme (`smtp` or `smtps`), host and port: the relay's endpoint name
    /// for the delivery worker's per-endpoint limit.
    pub fn origin(&self) -> (&'static str, &str, u16) {
        let scheme = match self.shared.tls_mode {
            TlsMode::Implicit => "smtps",
            TlsMode::None | TlsMode::StartTls => "smtp",
        };
        (scheme, &self.shared.host, self.shared.port)
    }

    /// One SMTP transaction, under the deadline (see [`Shared::transact`]).
    ///
    /// Runs as its own task so that a caller who stops waiting (a dropped
    /// HTTP request) does not cut a transaction short at an arbitrary point.
    /// At the deadline the transaction is dropped, and with it its
    /// connection, which is mid-command and must not be reused.
    async fn attempt(
        &self,
        from: Option<Address>,
        to: Vec<Address>,
        body: Arc<[u8]>,
    ) -> Result<Response, Failure> {
        let envelope = Envelope::new(from, to).map_err(|e| Failure::Other(e.to_string()))?;
        let shared = Arc::clone(&self.shared);
        let deadline = transaction_deadline(shared.timeout, body.len());
        let task = tokio::spawn(async move {
            tokio::time::timeout(deadline, shared.transact(&envelope, &body))
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::Timeout(format!(
                        "transaction not finished within {} s",
                        deadline.as_secs()
                    )))
                })
        });
        task.await
            .unwrap_or_else(|e| Err(Failure::Other(format!("relay task failed: {e}"))))
    }

    /// EHLO (+STARTTLS, +AUTH) on a fresh connection outside the pool,
    /// without sending mail, for `postern doctor`. `Ok` holds a one-line
    /// summary (address, TLS, authenticated user, EHLO name and extensions);
    /// `Err` holds the reason, worded as in [`RcptOutcome::Deferred`].
    pub async fn check(&self) -> Result<String, String> {
        let s = &self.shared;
        let probe = async {
            let mut conn = s.open().await?;
            let info = conn.info.to_string();
            // The check already succeeded; a relay hanging up early on QUIT
            // changes nothing.
            let _ = conn.smtp.quit().await;
            Ok::<_, Failure>(info)
        };
        let auth = match &s.user {
            Some(user) => format!(", authenticated as {user:?}"),
            None => String::new(),
        };
        match tokio::time::timeout(s.timeout * 2, probe).await {
            Ok(Ok(info)) => Ok(format!(
                "{}:{} ({}{auth}): {info}",
                s.host, s.port, s.tls_mode
            )),
            Ok(Err(failure)) => Err(failure.to_string()),
            Err(_) => Err(Failure::Timeout(format!(
                "no answer within {} s",
                (s.timeout * 2).as_secs()
            ))
            .to_string()),
        }
    }
}

fn tls_parameters(cfg: &RelayConfig) -> Result<TlsParameters, RelayConfigError> {
    let mut builder = TlsParameters::builder(cfg.host.clone());
    if let Some(path) = &cfg.ca {
        let pem = std::fs::read(path).map_err(|source| RelayConfigError::CaUnreadable {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| RelayConfigError::CaInvalid {
            path: path.clone(),
            reason,
        };
        // lettre accepts a PEM file without certificates as an empty list.
        if !pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(invalid("no BEGIN CERTIFICATE block".to_owned()));
        }
        let cert = Certificate::from_pem(&pem).map_err(|e| invalid(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| RelayConfigError::CaInvalid {
            path: cfg.ca.clone().unwrap_or_default(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::transport::smtp::response::{Category, Code, Detail, Severity};

    const SECRET: &str = "s3cr3t-PW";

    fn response(code: [u8; 3], lines: &[&str]) -> Response {
        let severity = match code[0] {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegativeCompletion,
            _ => Severity::PermanentNegativeCompletion,
        };
        let category = match code[1] {
            0 => Category::Syntax,
            1 => Category::Information,
            2 => Category::Connections,
            3 => Category::Unspecified3,
            4 => Category::Unspecified4,
            _ => Category::MailSystem,
        };
        let detail = match code[2] {
            0 => Detail::Zero,
            1 => Detail::One,
            _ => Detail::Two,
        };
        Response::new(
            Code::new(severity, category, detail),
            lines.iter().map(|l| (*l).to_owned()).collect(),
        )
    }

    fn reply(code: u16, text: &str) -> Result<Response, Failure> {
        Err(Failure::Reply {
            code,
            text: text.to_owned(),
        })
    }

    #[test]
    fn policy_table() {
        use Failure as F;
        let auth = "relay authentication failed: ";
        // (attempt, expected outcome: 'S'ent / 'D'eferred / 'F'ailed, reply, split)
        #[rustfmt::skip]
        let cases: Vec<(Result<Response, Failure>, char, String, bool)> = vec![
            (Ok(response([2, 5, 0], &["2.0.0 Ok: queued as X"])), 'S', "250 2.0.0 Ok: queued as X".into(), false),
            (Ok(response([2, 5, 0], &[])), 'S', "250".into(), false),
            (reply(451, "4.3.0 try later"), 'D', "451 4.3.0 try later".into(), true),
            (reply(452, "4.5.3 too many"), 'D', "452 4.5.3 too many".into(), true),
            (reply(421, "4.3.2 busy"), 'D', "421 4.3.2 busy".into(), false),
            (reply(454, "4.7.0 no TLS now"), 'D', "454 4.7.0 no TLS now".into(), false),
            (reply(550, "5.1.1 no such user"), 'F', "550 5.1.1 no such user".into(), true),
            (reply(554, "5.7.1 rejected"), 'F', "554 5.7.1 rejected".into(), true),
            (reply(535, "5.7.8 invalid"), 'D', format!("{auth}535 5.7.8 invalid"), false),
            (reply(530, "5.7.0 required"), 'D', format!("{auth}530 5.7.0 required"), false),
            (reply(534, "5.7.9 weak"), 'D', format!("{auth}534 5.7.9 weak"), false),
            (reply(538, "5.7.11 encrypt"), 'D', format!("{auth}538 5.7.11 encrypt"), false),
            (reply(354, "go on"), 'D', "354 go on".into(), false),
            (Err(F::Network("refused".into())), 'D', "cannot talk to the relay: refused".into(), false),
            (Err(F::Tls("bad cert".into())), 'D', "TLS with the relay failed: bad cert".into(), false),
            (Err(F::Timeout("60 s".into())), 'D', "relay timed out: 60 s".into(), false),
            (Err(F::StartTlsUnavailable), 'D', F::StartTlsUnavailable.to_string(), false),
            (Err(F::NoAuthMechanism), 'D', F::NoAuthMechanism.to_string(), false),
            (Err(F::SmtpUtf8Unsupported), 'F', F::SmtpUtf8Unsupported.to_string(), true),
            (Err(F::EightBitUnsupported), 'F', F::EightBitUnsupported.to_string(), false),
            (Err(F::Other("weird".into())), 'D', "relay error: weird".into(), false),
        ];
        for (input, kind, reply, split) in cases {
            let outcome = match kind {
                'S' => RcptOutcome::Sent { reply },
                'D' => RcptOutcome::Deferred { reply },
                _ => RcptOutcome::Failed { reply },
            };
            assert_eq!(
                classify(&input),
                Verdict { outcome, split },
                "for {input:?}"
            );
        }
    }

    #[test]
    fn url_table() {
        // (url, host, port, tls, user, password)
        type Case<'a> = (
            &'a str,
            &'a str,
            u16,
            TlsMode,
            Option<&'a str>,
            Option<&'a str>,
        );
        use TlsMode::{Implicit, StartTls};
        #[rustfmt::skip]
        let ok: &[Case] = &[
            ("smtp://relay.example.com", "relay.example.com", 587, StartTls, None, None),
            ("smtp://Relay.Example.COM:25/", "relay.example.com", 25, StartTls, None, None),
            ("smtp://relay?tls=none", "relay", 587, TlsMode::None, None, None),
            ("smtp://relay?tls=STARTTLS", "relay", 587, StartTls, None, None),
            ("smtps://relay", "relay", 465, Implicit, None, None),
            ("smtps://relay:2465", "relay", 2465, Implicit, None, None),
            ("smtp://127.0.0.1:2525?tls=none", "127.0.0.1", 2525, TlsMode::None, None, None),
            ("smtp://[::1]:2525", "::1", 2525, StartTls, None, None),
            ("  smtp://u:p@relay  ", "relay", 587, StartTls, Some("u"), Some("p")),
            ("smtp://user%40example.com:p%40ss%3Aw%2Bo%23rd%20x@relay", "relay", 587, StartTls,
                Some("user@example.com"), Some("p@ss:w+o#rd x")),
            ("smtps://us+er:pa+ss@relay", "relay", 465, Implicit, Some("us+er"), Some("pa+ss")),
            ("smtp://j%C3%B6rg:%E2%82%AC@relay", "relay", 587, StartTls, Some("jörg"), Some("€")),
        ];
        for &(url, host, port, tls, user, pass) in ok {
            let cfg = RelayConfig::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(cfg.host(), host, "{url}");
            assert_eq!(cfg.port(), port, "{url}");
            assert_eq!(cfg.tls(), tls, "{url}");
            assert_eq!(cfg.user(), user, "{url}");
            let password = cfg.credentials.as_ref().map(|(_, p)| p.as_str());
            assert_eq!(password, pass, "{url}");
            assert_eq!(cfg.timeout(), DEFAULT_TIMEOUT);
            assert_eq!(cfg.helo(), None);
            assert_eq!(cfg.ca(), None);
        }

        let cfg =
            RelayConfig::parse("smtp://r?ca=/etc/ca.pem&helo=mx.example.org&timeout=5").unwrap();
        assert_eq!(cfg.ca(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(cfg.helo(), Some("mx.example.org"));
        assert_eq!(cfg.timeout(), Duration::from_secs(5));
    }

    #[test]
    fn url_errors_never_show_the_password() {
        use RelayConfigError as E;
        type Check = fn(&RelayConfigError) -> bool;
        #[rustfmt::skip]
        let bad: &[(&str, Check)] = &[
            ("http://u:s3cr3t-PW@relay", |e| matches!(e, E::UnsupportedScheme(s) if s == "http")),
            ("relay.example.com:587", |e| matches!(e, E::UnsupportedScheme(_))),
            ("not a url s3cr3t-PW", |e| matches!(e, E::InvalidUrl(_))),
            ("smtp://u:s3cr3t-PW@", |e| matches!(e, E::MissingHost)),
            ("smtp://", |e| matches!(e, E::MissingHost)),
            ("smtp:relay", |e| matches!(e, E::MissingHost)),
            ("smtp://u:s3cr3t-PW@:25", |e| matches!(e, E::MissingHost)),
            ("smtp://u:s3cr3t-PW@re%20lay", |e| matches!(e, E::InvalidHost(_))),
            ("smtp://u:s3cr3t-PW@relay:0", |e| matches!(e, E::InvalidPort)),
            ("smtp://u:s3cr3t-PW@relay:99999", |e| matches!(e, E::InvalidUrl(_))),
            ("smtp://u:s3cr3t-PW@relay/x", |e| matches!(e, E::UnexpectedPath)),
            ("smtp://u:s3cr3t-PW@relay#frag", |e| matches!(e, E::UnexpectedFragment)),
            ("smtp://u:s3cr3t#PW@relay", |e| matches!(e, E::MissingHost | E::InvalidUrl(_))),
            ("smtp://:s3cr3t-PW@relay", |e| matches!(e, E::IncompleteCredentials)),
            ("smtp://u@relay", |e| matches!(e, E::IncompleteCredentials)),
            ("smtp://u:@relay", |e| matches!(e, E::IncompleteCredentials)),
            ("smtp://u:s3cr3t-PW%ff@relay", |e| matches!(e, E::BadCredentialEncoding("password"))),
            ("smtp://u:s3cr3t-PW%zz@relay", |e| matches!(e, E::BadCredentialEncoding("password"))),
            ("smtp://u:s3cr3t-PW@relay?tsl=none", |e| matches!(e, E::UnknownParameter(k) if k == "tsl")),
            ("smtp://u:s3cr3t-PW@relay?tls=none&tls=none", |e| matches!(e, E::DuplicateParameter(_))),
            ("smtp://u:s3cr3t-PW@relay?tls=maybe", |e| matches!(e, E::InvalidTlsMode(_))),
            ("smtp://u:s3cr3t-PW@relay?tls=implicit", |e| matches!(e, E::InvalidTlsMode(_))),
            ("smtps://u:s3cr3t-PW@relay?tls=none", |e| matches!(e, E::TlsParameterOnSmtps)),
            ("smtp://u:s3cr3t-PW@relay?tls=none&ca=/x.pem", |e| matches!(e, E::CaWithoutTls)),
            ("smtp://u:s3cr3t-PW@relay?ca=", |e| matches!(e, E::EmptyCa)),
            ("smtp://u:s3cr3t-PW@relay?timeout=0", |e| matches!(e, E::InvalidTimeout(_))),
            ("smtp://u:s3cr3t-PW@relay?timeout=abc", |e| matches!(e, E::InvalidTimeout(_))),
            ("smtp://u:s3cr3t-PW@relay?helo=a%20b", |e| matches!(e, E::InvalidHelo(_))),
            ("smtp://u:s3cr3t-PW@relay?helo=x%0D%0AQUIT", |e| matches!(e, E::InvalidHelo(_))),
        ];
        for &(url, check) in bad {
            let err = RelayConfig::parse(url).expect_err(url);
            assert!(check(&err), "{url}: unexpected {err:?}");
            let shown = format!("{err} / {err:?}");
            assert!(shown.starts_with("POSTERN_RELAY_URL: "), "{url}: {shown}");
            assert!(!shown.contains("s3cr3t"), "{url}: {shown}");
        }
    }

    #[test]
    fn debug_redacts_password() {
        let cfg = RelayConfig::parse(&format!("smtps://alice:{SECRET}@relay")).unwrap();
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(
            shown.contains("alice") && shown.contains("<redacted>"),
            "{shown}"
        );
        let plain = RelayConfig::parse("smtp://relay").unwrap();
        assert!(format!("{plain:?}").contains("password: None"));
    }

    #[test]
    fn helo_names() {
        for good in [
            "mx.example.org",
            "localhost",
            "host_1",
            "[192.0.2.1]",
            "192.0.2.1",
            "::1",
            "[::1]",
        ] {
            client_id(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        assert_eq!(
            client_id("192.0.2.1").unwrap(),
            ClientId::Ipv4([192, 0, 2, 1].into())
        );
        for bad in [
            "",
            "a b",
            "a\r\nQUIT",
            "-x",
            "x-",
            "a..b",
            "[mx.example.org]",
            "é.example",
        ] {
            assert!(client_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn smtp_body_normalises_line_ends() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb"),
            (b"a\r\nb", b"a\r\nb"),
            (b"a\nb\n", b"a\r\nb"),
            (b"a\rb\r", b"a\r\nb"),
            (b"a\n.\r\nb", b"a\r\n.\r\nb"),
            (b"a\r\n\r\n", b"a\r\n"),
            (b"", b""),
            (b"\r\n", b""),
        ];
        for (input, want) in cases {
            assert_eq!(
                smtp_body(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_sender(""), Ok(None));
        assert_eq!(parse_sender("<>"), Ok(None));
        assert_eq!(
            parse_sender("<a@example.com>")
                .unwrap()
                .unwrap()
                .to_string(),
            "a@example.com"
        );
        assert!(parse_sender("not an address").is_err());
        // UTF-8 passes through to lettre, which needs SMTPUTF8 on the wire.
        assert_eq!(
            parse_recipient("jörg@bücher.example").unwrap().to_string(),
            "jörg@bücher.example"
        );
        assert!(parse_recipient("").is_err());
        assert!(parse_recipient("a@b\r\nRCPT TO:<x@y>").is_err());
    }

    #[test]
    fn deadline_grows_with_size() {
        let t = Duration::from_secs(30);
        assert_eq!(transaction_deadline(t, 0), Duration::from_secs(60));
        assert_eq!(
            transaction_deadline(t, 10 * 1024 * 1024),
            Duration::from_secs(220)
        );
    }

    /// How the fake relay below misbehaves on the first connection's second
    /// transaction.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Hangup {
        Never,
        /// Closes the connection right after the first message's reply.
        AfterFirstMessage,
        /// Closes the connection on `MAIL`, without replying.
        OnSecondMail,
        /// Takes the whole second message, then closes without replying.
        OnSecondDot,
    }

    struct FakeRelay {
        port: u16,
        connections: Arc<AtomicUsize>,
        /// `MAIL` commands as received, and "MESSAGE" for each message
        /// received up to its final dot.
        log: Arc<Mutex<Vec<String>>>,
    }

    impl FakeRelay {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        fn messages(&self) -> usize {
            self.log().iter().filter(|l| *l == "MESSAGE").count()
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    /// A minimal SMTP server on 127.0.0.1 announcing `extensions`, with
    /// implicit TLS when `tls` is given.
    async fn fake_relay(
        extensions: &'static str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        hangup: Hangup,
    ) -> FakeRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (c, l) = (Arc::clone(&connections), Arc::clone(&log));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let first = c.fetch_add(1, Ordering::SeqCst) == 0;
                let hangup = if first { hangup } else { Hangup::Never };
                let (tls, log) = (tls.clone(), Arc::clone(&l));
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, extensions, hangup, log).await;
                            }
                        }
                        None => serve(tcp, extensions, hangup, log).await,
                    }
                });
            }
        });
        FakeRelay {
            port,
            connections,
            log,
        }
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        stream: S,
        extensions: &str,
        hangup: Hangup,
        log: Arc<Mutex<Vec<String>>>,
    ) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (r, mut w) = tokio::io::split(stream);
        let mut lines = BufReader::new(r).lines();
        let mut done = 0;
        let _ = w.write_all(b"220 fake ESMTP\r\n").await;
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            let reply = match verb.as_str() {
                "EHLO" => format!("250-fake\r\n{extensions}250 HELP\r\n"),
                "MAIL" if done == 1 && hangup == Hangup::OnSecondMail => return,
                "MAIL" => {
                    log.lock().unwrap().push(line.clone());
                    "250 ok\r\n".to_owned()
                }
                "RCPT" => "250 ok\r\n".to_owned(),
                "DATA" => {
                    let _ = w.write_all(b"354 go on\r\n").await;
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l == "." {
                            break;
                        }
                    }
                    log.lock().unwrap().push("MESSAGE".to_owned());
                    done += 1;
                    if done == 2 && hangup == Hangup::OnSecondDot {
                        return;
                    }
                    let _ = w.write_all(b"250 queued\r\n").await;
                    let _ = w.flush().await;
                    if hangup == Hangup::AfterFirstMessage {
                        return;
                    }
                    continue;
                }
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => "502 no\r\n".to_owned(),
            };
            let _ = w.write_all(reply.as_bytes()).await;
            let _ = w.flush().await;
        }
    }

    fn plain_relay_to(fake: &FakeRelay) -> Relay {
        let cfg = RelayConfig::parse(&format!("smtp://127.0.0.1:{}?tls=none", fake.port)).unwrap();
        Relay::new(&cfg, "postern.test").unwrap()
    }

    async fn send_one(relay: &Relay, body: &[u8]) -> RcptOutcome {
        let mut out = relay
            .send("a@example.com", &["b@example.com".to_owned()], body)
            .await;
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn idle_connection_closed_by_the_relay_is_not_used() {
        let fake = fake_relay("", None, Hangup::AfterFirstMessage).await;
        let relay = plain_relay_to(&fake);
        assert!(matches!(
            send_one(&relay, b"1\r\n").await,
            RcptOutcome::Sent { .. }
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(
            send_one(&relay, b"2\r\n").await,
            RcptOutcome::Sent { .. }
        ));
        assert_eq!(fake.messages(), 2);
        assert_eq!(fake.connections(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reused_connection_lost_before_any_reply_is_retried_once() {
        let fake = fake_relay("", None, Hangup::OnSecondMail).await;
        let relay = plain_relay_to(&fake);
        assert!(matches!(
            send_one(&relay, b"1\r\n").await,
            RcptOutcome::Sent { .. }
        ));
        let second = send_one(&relay, b"2\r\n").await;
        assert!(matches!(second, RcptOutcome::Sent { .. }), "{second:?}");
        assert_eq!(fake.messages(), 2);
        assert_eq!(fake.connections(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reused_connection_lost_after_the_data_is_not_retried() {
        let fake = fake_relay("", None, Hangup::OnSecondDot).await;
        let relay = plain_relay_to(&fake);
        assert!(matches!(
            send_one(&relay, b"1\r\n").await,
            RcptOutcome::Sent { .. }
        ));
        let second = send_one(&relay, b"2\r\n").await;
        assert!(matches!(second, RcptOutcome::Deferred { .. }), "{second:?}");
        // Received once; a retry could have delivered it twice.
        assert_eq!(fake.messages(), 2);
        assert_eq!(fake.connections(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn pool_size_bounds_idle_connections() {
        let fake = fake_relay("", None, Hangup::Never).await;
        let relay = Arc::new(plain_relay_to(&fake).with_pool_size(2));
        let sends: Vec<_> = (0..6)
            .map(|_| {
                let relay = Arc::clone(&relay);
                tokio::spawn(async move { send_one(&relay, b"x\r\n").await })
            })
            .collect();
        for send in sends {
            assert!(matches!(send.await.unwrap(), RcptOutcome::Sent { .. }));
        }
        let idle = relay.shared.idle.lock().unwrap().len();
        assert!(idle <= 2, "{idle} idle connections kept");
        let opened = fake.connections();
        for _ in 0..4 {
            assert!(matches!(
                send_one(&relay, b"y\r\n").await,
                RcptOutcome::Sent { .. }
            ));
        }
        assert_eq!(
            fake.connections(),
            opened,
            "sequential sends reuse idle connections"
        );

        let none = plain_relay_to(&fake).with_pool_size(0);
        let before = fake.connections();
        send_one(&none, b"z\r\n").await;
        send_one(&none, b"z\r\n").await;
        assert_eq!(fake.connections(), before + 2);
    }

    /// Implicit TLS goes through a stand-in EHLO reply; what Postern asks of
    /// the relay must still follow the relay's real one.
    #[tokio::test(flavor = "multi_thread")]
    async fn implicit_tls_follows_the_real_ehlo_reply() {
        let (key, pem) = crate::tls::self_signed("localhost").unwrap();
        let acceptor = crate::tls::acceptor(crate::tls::ReloadingResolver::new(key));
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), pem).unwrap();
        let relay_for = |fake: &FakeRelay| {
            let url = format!("smtps://127.0.0.1:{}?ca={}", fake.port, ca.path().display());
            Relay::new(&RelayConfig::parse(&url).unwrap(), "postern.test").unwrap()
        };

        let eight_bit = fake_relay("250-8BITMIME\r\n", Some(acceptor.clone()), Hangup::Never).await;
        let relay = relay_for(&eight_bit);
        let out = relay
            .send(
                "a@example.com",
                &["zoë@example.com".to_owned(), "b@example.com".to_owned()],
                "caf\u{e9}\r\n".as_bytes(),
            )
            .await;
        assert!(
            matches!(&out[0], RcptOutcome::Failed { reply } if reply.contains("SMTPUTF8")),
            "{out:?}"
        );
        assert!(matches!(out[1], RcptOutcome::Sent { .. }), "{out:?}");
        assert!(matches!(
            send_one(&relay, b"ascii\r\n").await,
            RcptOutcome::Sent { .. }
        ));
        assert_eq!(
            eight_bit.log(),
            [
                "MAIL FROM:<a@example.com> BODY=8BITMIME",
                "MESSAGE",
                "MAIL FROM:<a@example.com>",
                "MESSAGE"
            ]
        );
        assert_eq!(eight_bit.connections(), 1);
        let summary = relay.check().await.unwrap();
        assert!(
            summary.contains("EightBitMime") && !summary.contains("SmtpUtfEight"),
            "{summary}"
        );

        let seven_bit = fake_relay("", Some(acceptor), Hangup::Never).await;
        let relay = relay_for(&seven_bit);
        let out = send_one(&relay, "caf\u{e9}\r\n".as_bytes()).await;
        assert!(
            matches!(&out, RcptOutcome::Failed { reply } if reply.contains("8BITMIME")),
            "{out:?}"
        );
        assert!(seven_bit.log().is_empty());
    }
}
