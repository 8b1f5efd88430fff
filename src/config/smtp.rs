//! The SMTP listener's limits: sizes, counts, timeouts and rates
//! (`POSTERN_MAX_*`, `POSTERN_SMTP_*_TIMEOUT`, …) → [`SmtpLimits`], which
//! the SMTP server and its sessions receive.

use std::time::Duration;

use super::{Problems, RawConfig, invalid};

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

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> SmtpLimits {
    let d = SmtpLimits::default();
    let limits = SmtpLimits {
        max_message_size: p.size(
            "POSTERN_MAX_MESSAGE_SIZE",
            raw.max_message_size.take(),
            d.max_message_size,
        ),
        max_recipients: p.num(
            "POSTERN_MAX_RECIPIENTS",
            raw.max_recipients.take(),
            d.max_recipients,
        ),
        max_line_length: p.num(
            "POSTERN_MAX_LINE_LENGTH",
            raw.max_line_length.take(),
            d.max_line_length,
        ),
        max_errors: p.num("POSTERN_MAX_ERRORS", raw.max_errors.take(), d.max_errors),
        idle_timeout: p.duration(
            "POSTERN_SMTP_IDLE_TIMEOUT",
            raw.smtp_idle_timeout.take(),
            d.idle_timeout,
        ),
        session_timeout: p.duration(
            "POSTERN_SMTP_SESSION_TIMEOUT",
            raw.smtp_session_timeout.take(),
            d.session_timeout,
        ),
        min_data_rate: p.num(
            "POSTERN_SMTP_MIN_DATA_RATE",
            raw.smtp_min_data_rate.take(),
            d.min_data_rate,
        ),
        data_rate_grace: p.duration(
            "POSTERN_SMTP_DATA_RATE_GRACE",
            raw.smtp_data_rate_grace.take(),
            d.data_rate_grace,
        ),
        max_sessions: p.num(
            "POSTERN_MAX_SESSIONS",
            raw.max_sessions.take(),
            d.max_sessions,
        ),
        max_sessions_per_ip: p.num(
            "POSTERN_MAX_SESSIONS_PER_IP",
            raw.max_sessions_per_ip.take(),
            d.max_sessions_per_ip,
        ),
        greeting_delay: p.duration(
            "POSTERN_SMTP_GREETING_DELAY",
            raw.smtp_greeting_delay.take(),
            d.greeting_delay,
        ),
    };
    if limits.max_sessions == 0 || limits.max_sessions_per_ip == 0 {
        p.push(invalid(
            "POSTERN_MAX_SESSIONS",
            "POSTERN_MAX_SESSIONS and POSTERN_MAX_SESSIONS_PER_IP must be at least 1",
        ));
    }
    if limits.max_line_length < 512 {
        p.push(invalid(
            "POSTERN_MAX_LINE_LENGTH",
            "must be at least 512 (RFC 5321)",
        ));
    }
    if limits.max_recipients == 0 {
        p.push(invalid("POSTERN_MAX_RECIPIENTS", "must be at least 1"));
    }
    limits
}
