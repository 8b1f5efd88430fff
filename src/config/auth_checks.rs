//! `POSTERN_AUTH_CHECKS`, `POSTERN_DNS_SERVERS` and `POSTERN_DNS_TIMEOUT`
//! → [`Settings`] of the authentication checks of inbound mail, or `None`
//! when no check is on. Nothing is read here (not even
//! `/etc/resolv.conf`): the default resolver is read by the wiring, and
//! only when a check is on.

use super::{ConfigError, Problems, RawConfig, invalid};
use crate::auth_checks::settings::{self, Checks, DEFAULT_DNS_TIMEOUT, Servers, Settings};
use crate::route::Route;

/// A route's `dmarc_reject` needs the `dmarc` check: without it the
/// option would silently never refuse anything.
pub(super) fn dmarc_reject_without_dmarc(
    routes: &[Route],
    settings: Option<&Settings>,
) -> Option<ConfigError> {
    let dmarc_on = settings.is_some_and(|s| s.checks.dmarc);
    (routes.iter().any(|r| r.dmarc_reject) && !dmarc_on).then(|| {
        invalid(
            "POSTERN_ROUTES",
            "a route has \"dmarc_reject\": true, but POSTERN_AUTH_CHECKS does not include dmarc",
        )
    })
}

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> Option<Settings> {
    let checks = match raw.auth_checks.take() {
        None => Checks::default(),
        Some(v) => p.or(
            Checks::parse(&v).map_err(|m| invalid("POSTERN_AUTH_CHECKS", m)),
            Checks::default(),
        ),
    };
    let servers = raw.dns_servers.take().map(|v| {
        p.or(
            settings::parse_servers(&v).map_err(|m| invalid("POSTERN_DNS_SERVERS", m)),
            Vec::new(),
        )
    });
    let timeout_given = raw.dns_timeout.is_some();
    let timeout = p.duration(
        "POSTERN_DNS_TIMEOUT",
        raw.dns_timeout.take(),
        DEFAULT_DNS_TIMEOUT,
    );
    if timeout.is_zero() {
        p.push(invalid("POSTERN_DNS_TIMEOUT", "must be more than 0s"));
    }
    if !checks.any() {
        // Settings that would silently do nothing are a typo's sign.
        for (given, var) in [
            (servers.is_some(), "POSTERN_DNS_SERVERS"),
            (timeout_given, "POSTERN_DNS_TIMEOUT"),
        ] {
            if given {
                p.push(invalid(
                    var,
                    "set, but POSTERN_AUTH_CHECKS is off (set it to e.g. spf,dkim,dmarc,arc)",
                ));
            }
        }
        return None;
    }
    Some(Settings {
        checks,
        servers: servers.map_or(Servers::System, Servers::These),
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::auth_checks::settings::{Checks, Servers};
    use crate::config::tests::cfg;

    #[test]
    fn auth_check_settings_parse_and_name_their_variable() {
        assert_eq!(cfg(&[]).unwrap().auth_checks, None);
        assert_eq!(
            cfg(&[("POSTERN_AUTH_CHECKS", "")]).unwrap().auth_checks,
            None
        );
        let on = cfg(&[("POSTERN_AUTH_CHECKS", "spf,dkim,dmarc,arc")])
            .unwrap()
            .auth_checks
            .unwrap();
        assert_eq!(on.checks, Checks::ALL);
        assert_eq!(on.servers, Servers::System);
        assert_eq!(on.timeout, Duration::from_secs(2));
        let given = cfg(&[
            ("POSTERN_AUTH_CHECKS", "dkim"),
            ("POSTERN_DNS_SERVERS", "127.0.0.1:5353"),
            ("POSTERN_DNS_TIMEOUT", "500ms"),
        ])
        .unwrap()
        .auth_checks
        .unwrap();
        assert_eq!(
            given.servers,
            Servers::These(vec!["127.0.0.1:5353".parse().unwrap()])
        );
        assert_eq!(given.timeout, Duration::from_millis(500));
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("POSTERN_AUTH_CHECKS", "spf,dkin")],
                "POSTERN_AUTH_CHECKS: unknown check \"dkin\": the checks are spf, dkim, dmarc and arc",
            ),
            (
                &[
                    ("POSTERN_AUTH_CHECKS", "spf"),
                    ("POSTERN_DNS_SERVERS", "resolver:53"),
                ],
                "POSTERN_DNS_SERVERS: \"resolver:53\" is not ip:port (e.g. 127.0.0.1:53 or [::1]:53)",
            ),
            (
                &[("POSTERN_DNS_SERVERS", "127.0.0.1:53")],
                "POSTERN_DNS_SERVERS: set, but POSTERN_AUTH_CHECKS is off (set it to e.g. spf,dkim,dmarc,arc)",
            ),
            (
                &[
                    ("POSTERN_AUTH_CHECKS", "spf"),
                    ("POSTERN_DNS_TIMEOUT", "0s"),
                ],
                "POSTERN_DNS_TIMEOUT: must be more than 0s",
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(cfg(vars).unwrap_err().to_string(), *want, "{vars:?}");
        }
    }

    #[test]
    fn dmarc_reject_needs_the_dmarc_check() {
        let routes = r#"[{"match": "*", "url": "http://127.0.0.1:9/", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "dmarc_reject": true}]"#;
        let e = cfg(&[
            ("POSTERN_ROUTES", routes),
            ("POSTERN_AUTH_CHECKS", "spf,dkim"),
        ])
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "POSTERN_ROUTES: a route has \"dmarc_reject\": true, but POSTERN_AUTH_CHECKS does not include dmarc"
        );
        let c = cfg(&[("POSTERN_ROUTES", routes), ("POSTERN_AUTH_CHECKS", "dmarc")]).unwrap();
        assert!(c.routes[0].dmarc_reject);
    }
}
