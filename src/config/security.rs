//! TLS and SMTP AUTH settings (`POSTERN_TLS_*`, `POSTERN_SMTP_AUTH`,
//! `POSTERN_SMTP_USERS[_FILE]`, `POSTERN_AUTH_*`, …) → [`SecurityConfig`],
//! which the TLS set-up and the SMTP sessions receive.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Problems, RawConfig, invalid};
use crate::smtp::AuthMode;

/// TLS and AUTH settings.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// PEM certificate chain and key; `None` with neither set.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// How often the certificate files are checked for changes.
    pub tls_reload_interval: Duration,
    /// MAIL on a plain session gets `530 5.7.0`.
    pub require_tls: bool,
    pub auth: AuthMode,
    pub users: crate::model::users::Users,
    /// Offer AUTH on plain sessions (development only).
    pub allow_insecure_auth: bool,
    /// Failed AUTH attempts per IP within `auth_failure_window` before
    /// `421` and close.
    pub auth_max_failures: u32,
    pub auth_failure_window: Duration,
    /// The delay before a `535` grows by this much per recent failure.
    pub auth_failure_delay: Duration,
}

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> SecurityConfig {
    let tls_files = match (raw.tls_cert.take(), raw.tls_key.take()) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        (Some(_), None) => {
            p.push(invalid("POSTERN_TLS_KEY", "required with POSTERN_TLS_CERT"));
            None
        }
        (None, Some(_)) => {
            p.push(invalid("POSTERN_TLS_CERT", "required with POSTERN_TLS_KEY"));
            None
        }
    };
    let users_text = match (raw.smtp_users.take(), raw.smtp_users_file.take()) {
        (Some(_), Some(_)) => {
            p.push(invalid(
                "POSTERN_SMTP_USERS",
                "set either POSTERN_SMTP_USERS or POSTERN_SMTP_USERS_FILE, not both",
            ));
            None
        }
        (Some(t), None) => Some(("POSTERN_SMTP_USERS", t)),
        (None, Some(path)) => p.or(
            std::fs::read_to_string(&path)
                .map(|text| Some(("POSTERN_SMTP_USERS_FILE", text)))
                .map_err(|e| {
                    invalid(
                        "POSTERN_SMTP_USERS_FILE",
                        format!("cannot read {path}: {e}"),
                    )
                }),
            None,
        ),
        (None, None) => None,
    };
    let no_users = || crate::model::users::Users::parse("").expect("no users parse");
    let users = match users_text {
        Some((var, text)) => p.or(
            crate::model::users::Users::parse(&text).map_err(|e| invalid(var, e.to_string())),
            no_users(),
        ),
        None => no_users(),
    };
    let users_given = p.0.iter().any(|e| {
        matches!(
            e,
            ConfigError::Invalid {
                var: "POSTERN_SMTP_USERS" | "POSTERN_SMTP_USERS_FILE",
                ..
            }
        )
    });
    let auth = p.or(
        auth_mode(raw.smtp_auth.take().as_deref(), !users.is_empty()),
        AuthMode::Off,
    );
    // Users that failed to parse are reported already; do not add a
    // second, misleading "no users" error for them.
    if auth != AuthMode::Off && users.is_empty() && !users_given {
        p.push(invalid(
            "POSTERN_SMTP_AUTH",
            "AUTH is on but no users are set (POSTERN_SMTP_USERS or POSTERN_SMTP_USERS_FILE; hash with `postern hash-password`)",
        ));
    }
    let require_tls = p.bool(
        "POSTERN_SMTP_REQUIRE_TLS",
        raw.smtp_require_tls.take(),
        false,
    );
    let allow_insecure_auth = p.bool(
        "POSTERN_SMTP_ALLOW_INSECURE_AUTH",
        raw.smtp_allow_insecure_auth.take(),
        false,
    );
    let auth_max_failures: u32 =
        p.num("POSTERN_AUTH_MAX_FAILURES", raw.auth_max_failures.take(), 5);
    if auth_max_failures == 0 {
        p.push(invalid("POSTERN_AUTH_MAX_FAILURES", "must be at least 1"));
    }
    let tls_reload_interval = p.duration(
        "POSTERN_TLS_RELOAD_INTERVAL",
        raw.tls_reload_interval.take(),
        Duration::from_secs(30),
    );
    let auth_failure_window = p.duration(
        "POSTERN_AUTH_FAILURE_WINDOW",
        raw.auth_failure_window.take(),
        Duration::from_secs(300),
    );
    let auth_failure_delay = p.duration(
        "POSTERN_AUTH_FAILURE_DELAY",
        raw.auth_failure_delay.take(),
        Duration::from_secs(1),
    );
    SecurityConfig {
        tls_files,
        tls_reload_interval,
        require_tls,
        auth,
        users,
        allow_insecure_auth,
        auth_max_failures,
        auth_failure_window,
        auth_failure_delay,
    }
}

/// `POSTERN_SMTP_AUTH`; unset means "optional" once there are users to
/// check against, and "off" without them.
fn auth_mode(value: Option<&str>, have_users: bool) -> Result<AuthMode, ConfigError> {
    match value {
        None if !have_users => Ok(AuthMode::Off),
        None | Some("optional") => Ok(AuthMode::Optional),
        Some("off") => Ok(AuthMode::Off),
        Some("required") => Ok(AuthMode::Required),
        Some(_) => Err(invalid(
            "POSTERN_SMTP_AUTH",
            "must be off, optional or required",
        )),
    }
}

/// A TLS-only listener or `POSTERN_SMTP_REQUIRE_TLS` without a certificate
/// (development mode makes a self-signed one, so it is exempt).
pub(super) fn missing_certificate(
    security: &SecurityConfig,
    smtps_listen: bool,
    dev_mode: bool,
) -> Option<ConfigError> {
    if security.tls_files.is_some() || dev_mode || !(smtps_listen || security.require_tls) {
        return None;
    }
    Some(invalid(
        if smtps_listen {
            "POSTERN_SMTPS_LISTEN"
        } else {
            "POSTERN_SMTP_REQUIRE_TLS"
        },
        "needs a certificate: set POSTERN_TLS_CERT and POSTERN_TLS_KEY",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_mode_defaults_to_optional_only_with_users() {
        let ok = |v, users| auth_mode(v, users).map_err(|e| e.to_string());
        assert_eq!(ok(None, false), Ok(AuthMode::Off));
        assert_eq!(ok(None, true), Ok(AuthMode::Optional));
        for users in [false, true] {
            assert_eq!(ok(Some("off"), users), Ok(AuthMode::Off));
            assert_eq!(ok(Some("optional"), users), Ok(AuthMode::Optional));
            assert_eq!(ok(Some("required"), users), Ok(AuthMode::Required));
            assert_eq!(
                ok(Some("Required"), users),
                Err("POSTERN_SMTP_AUTH: must be off, optional or required".into())
            );
        }
    }

    #[test]
    fn tls_only_settings_need_a_certificate_outside_development_mode() {
        let mut security = parse(&mut RawConfig::default(), &mut Problems::default());
        let var = |e: Option<ConfigError>| e.map(|e| e.to_string());
        assert_eq!(var(missing_certificate(&security, false, false)), None);
        assert_eq!(
            var(missing_certificate(&security, true, false)),
            Some("POSTERN_SMTPS_LISTEN: needs a certificate: set POSTERN_TLS_CERT and POSTERN_TLS_KEY".into())
        );
        assert_eq!(var(missing_certificate(&security, true, true)), None);
        security.require_tls = true;
        assert_eq!(
            var(missing_certificate(&security, false, false)),
            Some("POSTERN_SMTP_REQUIRE_TLS: needs a certificate: set POSTERN_TLS_CERT and POSTERN_TLS_KEY".into())
        );
        security.tls_files = Some(("c.pem".into(), "k.pem".into()));
        assert_eq!(var(missing_certificate(&security, true, false)), None);
    }
}
