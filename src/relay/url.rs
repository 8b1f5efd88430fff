//! `POSTERN_RELAY_URL` → [`RelayConfig`]: where the relay is, how the
//! connection is protected, the credentials, and the `?ca=`, `?helo=` and
//! `?timeout=` parameters.
//!
//! Pure: nothing here touches the network or the file system (the `?ca=`
//! file is read by [`Relay::new`](super::Relay::new)). The password is kept
//! out of every `Debug` output and error message.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::extension::ClientId;
use url::{Host, Url};

/// Default port for `smtp://`: submission (RFC 6409).
const DEFAULT_SMTP_PORT: u16 = 587;
/// Default port for `smtps://`: submission over implicit TLS (RFC 8314).
const DEFAULT_SMTPS_PORT: u16 = 465;
/// Default network timeout when the URL has no `?timeout=`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest `?timeout=` accepted, in seconds.
const MAX_TIMEOUT_SECS: u64 = 600;

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

impl TlsMode {
    /// The URL scheme that selects this mode: `smtps` for implicit TLS,
    /// `smtp` otherwise.
    pub(super) fn scheme(self) -> &'static str {
        match self {
            TlsMode::Implicit => "smtps",
            TlsMode::None | TlsMode::StartTls => "smtp",
        }
    }
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
/// EHLO name (default: the hostname passed to
/// [`Relay::new`](super::Relay::new)); `?timeout=SECS` (default 30) bounds
/// connecting and, scaled by the message size, a whole transaction.
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
    /// Pure: the `ca` file is only read by [`Relay::new`](super::Relay::new).
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

    /// Password for AUTH, if credentials were given. Not public: it must
    /// only reach lettre's `Credentials`.
    pub(super) fn password(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(_, pass)| pass.as_str())
    }

    /// Whether AUTH would send the password in clear text across a network:
    /// credentials with `tls=none` to a host other than this machine.
    pub(super) fn password_in_clear(&self) -> bool {
        let loopback = self.host == "localhost"
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        self.credentials.is_some() && self.tls == TlsMode::None && !loopback
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
pub(super) fn client_id(name: &str) -> Result<ClientId, RelayConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-PW";

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
    fn scheme_names_the_mode() {
        for url in ["smtp://relay", "smtp://relay?tls=none", "smtps://relay"] {
            let cfg = RelayConfig::parse(url).unwrap();
            assert!(
                url.starts_with(&format!("{}://", cfg.tls().scheme())),
                "{url}"
            );
        }
    }

    #[test]
    fn password_in_clear_only_off_this_machine() {
        for (url, in_clear) in [
            ("smtp://u:p@relay?tls=none", true),
            ("smtp://u:p@192.0.2.1?tls=none", true),
            ("smtp://u:p@localhost?tls=none", false),
            ("smtp://u:p@127.0.0.2?tls=none", false),
            ("smtp://u:p@[::1]?tls=none", false),
            ("smtp://relay?tls=none", false),
            ("smtp://u:p@relay", false),
            ("smtps://u:p@relay", false),
        ] {
            let cfg = RelayConfig::parse(url).unwrap();
            assert_eq!(cfg.password_in_clear(), in_clear, "{url}");
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
}
