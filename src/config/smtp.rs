//! The SMTP listeners' settings: limits on sizes, counts, timeouts and
//! rates (`POSTERN_MAX_*`, `POSTERN_SMTP_*_TIMEOUT`, …) → [`SmtpLimits`](crate::smtp::SmtpLimits),
//! and the PROXY protocol (`POSTERN_SMTP_PROXY_*`) → `ProxyConfig`; what
//! the SMTP server and its sessions receive.

use super::{Config, ConfigError, Problems, RawConfig, invalid};
use crate::smtp::proxy::{self, Protocol, ProxyConfig};
use crate::smtp::{Security, Settings, SmtpLimits};

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

/// `POSTERN_SMTP_PROXY_*`. The trusted networks are required while the
/// protocol is on (trusting everyone would let any client pick its own
/// address), and refused while it is off, where they would silently do
/// nothing.
pub(super) fn parse_proxy(raw: &mut RawConfig, p: &mut Problems) -> ProxyConfig {
    let (protocol_var, trusted_var) = ("POSTERN_SMTP_PROXY_PROTOCOL", "POSTERN_SMTP_PROXY_TRUSTED");
    let protocol = match raw.smtp_proxy_protocol.take() {
        None => Protocol::Off,
        Some(v) => p.or(
            Protocol::parse(&v).map_err(|m| invalid(protocol_var, m)),
            Protocol::Off,
        ),
    };
    let trusted = match raw.smtp_proxy_trusted.take() {
        None => Vec::new(),
        Some(v) => p.or(
            proxy::parse_trusted(&v).map_err(|m| invalid(trusted_var, m)),
            Vec::new(),
        ),
    };
    let given =
        p.0.iter()
            .any(|e| matches!(e, ConfigError::Invalid { var, .. } if *var == trusted_var));
    if protocol != Protocol::Off && trusted.is_empty() && !given {
        p.push(invalid(
            trusted_var,
            "required with POSTERN_SMTP_PROXY_PROTOCOL: the load balancers' networks, e.g. 10.0.0.0/8",
        ));
    }
    if protocol == Protocol::Off && !trusted.is_empty() {
        p.push(invalid(
            trusted_var,
            "set, but POSTERN_SMTP_PROXY_PROTOCOL is off (set it to v1, v2 or auto)",
        ));
    }
    let timeout = p.duration(
        "POSTERN_SMTP_PROXY_TIMEOUT",
        raw.smtp_proxy_timeout.take(),
        proxy::DEFAULT_TIMEOUT,
    );
    if timeout.is_zero() {
        p.push(invalid(
            "POSTERN_SMTP_PROXY_TIMEOUT",
            "must be more than 0s",
        ));
    }
    ProxyConfig {
        protocol,
        trusted,
        timeout,
    }
}

impl Config {
    /// What the SMTP stage receives instead of the whole configuration.
    pub fn smtp_settings(&self) -> Settings {
        let sec = &self.security;
        Settings {
            hostname: self.hostname.clone(),
            limits: self.limits.clone(),
            security: Security {
                require_tls: sec.require_tls,
                auth: sec.auth,
                users: sec.users.clone(),
                allow_insecure_auth: sec.allow_insecure_auth,
                auth_max_failures: sec.auth_max_failures,
                auth_failure_window: sec.auth_failure_window,
                auth_failure_delay: sec.auth_failure_delay,
            },
            routes: self.routes.clone(),
            proxy: self.smtp_proxy.clone(),
            recipient_delimiter: self.recipient_delimiter.clone(),
            default_secrets: self.default_secrets.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::cfg;
    use std::time::Duration;

    // task F6
    #[test]
    fn smtp_proxy_settings_parse_and_name_their_variable() {
        use crate::smtp::proxy::Protocol;
        let off = cfg(&[]).unwrap().smtp_proxy;
        assert_eq!(off.protocol, Protocol::Off);
        assert_eq!(off.timeout, Duration::from_secs(5));
        let on = cfg(&[
            ("POSTERN_SMTP_PROXY_PROTOCOL", "auto"),
            ("POSTERN_SMTP_PROXY_TRUSTED", "10.0.0.0/8, 192.0.2.7"),
            ("POSTERN_SMTP_PROXY_TIMEOUT", "2s"),
        ])
        .unwrap()
        .smtp_proxy;
        assert_eq!(on.protocol, Protocol::Auto);
        assert_eq!(on.trusted.len(), 2);
        assert_eq!(on.timeout, Duration::from_secs(2));
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("POSTERN_SMTP_PROXY_PROTOCOL", "v3")],
                "POSTERN_SMTP_PROXY_PROTOCOL: must be off, v1, v2 or auto",
            ),
            (
                &[("POSTERN_SMTP_PROXY_PROTOCOL", "v2")],
                "POSTERN_SMTP_PROXY_TRUSTED: required with POSTERN_SMTP_PROXY_PROTOCOL: the load balancers' networks, e.g. 10.0.0.0/8",
            ),
            (
                &[
                    ("POSTERN_SMTP_PROXY_PROTOCOL", "v1"),
                    ("POSTERN_SMTP_PROXY_TRUSTED", "10.0.0.0/8,lb"),
                ],
                "POSTERN_SMTP_PROXY_TRUSTED: \"lb\" is not a network like 10.0.0.0/8 or an IP address",
            ),
            (
                &[("POSTERN_SMTP_PROXY_TRUSTED", "10.0.0.0/8")],
                "POSTERN_SMTP_PROXY_TRUSTED: set, but POSTERN_SMTP_PROXY_PROTOCOL is off (set it to v1, v2 or auto)",
            ),
            (
                &[
                    ("POSTERN_SMTP_PROXY_PROTOCOL", "v1"),
                    ("POSTERN_SMTP_PROXY_TRUSTED", "10.0.0.1"),
                    ("POSTERN_SMTP_PROXY_TIMEOUT", "0s"),
                ],
                "POSTERN_SMTP_PROXY_TIMEOUT: must be more than 0s",
            ),
        ];
        for (vars, want) in cases {
            // exactly one problem each: a bad list is not also "required"
            assert_eq!(cfg(vars).unwrap_err().to_string(), *want, "{vars:?}");
        }
    }
}
