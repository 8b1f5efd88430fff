//! What the SMTP stage needs from the configuration, handed to
//! [`Inbound::new`](super::session::Inbound::new) by the wiring (built by
//! `Config::smtp_settings`), so the stage never sees the whole `Config`.

use std::time::Duration;

use super::proxy::ProxyConfig;
use crate::model::secret::Secret;
use crate::model::subaddress::Delimiter;
use crate::model::users::Users;
use crate::route::Route;

/// Who may use SMTP AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// AUTH is not offered.
    Off,
    /// AUTH is offered; unauthenticated clients may still send to routes
    /// that do not require it.
    Optional,
    /// MAIL before a successful AUTH is refused.
    Required,
}

/// SMTP listener limits.
#[derive(Debug, Clone)]
pub struct SmtpLimits {
    /// Largest message accepted, in octets (advertised as `SIZE`).
    pub max_message_size: u64,
    /// Recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command line, CRLF included (RFC 5321 4.5.3.1.4 says 512).
    pub max_line_length: usize,
    /// Bad commands tolerated before `421` and close.
    pub max_errors: usize,
    /// How long we wait for the next command (or DATA chunk).
    pub idle_timeout: Duration,
    /// Longest a session may last, whatever it does.
    pub session_timeout: Duration,
    /// Slowest DATA transfer tolerated (bytes/s, averaged), once
    /// `data_rate_grace` has passed. 0 disables the check.
    pub min_data_rate: u64,
    /// The DATA rate is judged only after this long, so TCP slow start and
    /// a slow first read do not count against a client.
    pub data_rate_grace: Duration,
    /// Concurrent sessions, all clients together.
    pub max_sessions: usize,
    /// Concurrent sessions from one IP address.
    pub max_sessions_per_ip: usize,
    /// Pause before the greeting; a client that talks during it is an
    /// early talker (a spam bot that does not wait for the greeting).
    pub greeting_delay: Duration,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        SmtpLimits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 512,
            max_errors: 10,
            idle_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            min_data_rate: 1024,
            data_rate_grace: Duration::from_secs(10),
            max_sessions: 1000,
            max_sessions_per_ip: 20,
            greeting_delay: Duration::ZERO,
        }
    }
}

/// AUTH and TLS policy of the sessions.
#[derive(Debug, Clone)]
pub struct Security {
    /// MAIL on a plain session gets `530 5.7.0`.
    pub require_tls: bool,
    pub auth: AuthMode,
    pub users: Users,
    /// Offer AUTH on plain sessions (development only).
    pub allow_insecure_auth: bool,
    /// Failed AUTH attempts per IP within `auth_failure_window` before
    /// `421` and close.
    pub auth_max_failures: u32,
    pub auth_failure_window: Duration,
    /// The delay before a `535` grows by this much per recent failure.
    pub auth_failure_delay: Duration,
}

/// Everything the SMTP listeners and sessions read from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our name in the greeting, EHLO reply and `Received:` header.
    pub hostname: String,
    pub limits: SmtpLimits,
    pub security: Security,
    /// Matched at RCPT (accept or refuse) and at DATA (the spooled target).
    pub routes: Vec<Route>,
    /// PROXY protocol on both listeners.
    pub proxy: ProxyConfig,
    /// Splits `user+detail@domain` for routing (RFC 5233).
    pub recipient_delimiter: Delimiter,
    /// Signs `authorize_url` requests of routes without their own secrets.
    pub default_secrets: Vec<Secret>,
}
