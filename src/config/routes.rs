//! Routes: `POSTERN_ROUTES` (JSON), `POSTERN_ROUTES_FILE` or the
//! `POSTERN_WEBHOOK_URL` shorthand, compiled by [`crate::route`], and the
//! default signing secrets `POSTERN_WEBHOOK_SECRET`; what the SMTP
//! sessions match recipients against and the webhook worker signs with.

use std::time::Duration;

use super::{ConfigError, Problems, RawConfig, invalid, secret_error};
use crate::model::secret::Secret;
use crate::model::subaddress::Delimiter;
use crate::route::{Route, RouteError, RouteSpec};

/// `POSTERN_WEBHOOK_SECRET`: the secrets of routes that name none.
pub(super) fn default_secrets(raw: &mut RawConfig, p: &mut Problems) -> Vec<Secret> {
    match raw.webhook_secret.take() {
        Some(s) => p.or(
            Secret::parse_list(&s).map_err(|e| secret_error("POSTERN_WEBHOOK_SECRET", e)),
            Vec::new(),
        ),
        None => Vec::new(),
    }
}

/// `POSTERN_RECIPIENT_DELIMITER`: `+` when unset, empty for none.
pub(super) fn delimiter(raw: &mut RawConfig, p: &mut Problems) -> Delimiter {
    match raw.recipient_delimiter.take() {
        None => Delimiter::default(),
        Some(set) => p.or(
            Delimiter::parse(&set)
                .map_err(|e| invalid("POSTERN_RECIPIENT_DELIMITER", e.to_string())),
            Delimiter::default(),
        ),
    }
}

/// The compiled routes, whether the user meant to configure any (also
/// when they failed to parse or compile, which are reported): that is
/// what decides development mode; and the variable they came from.
pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> (Vec<Route>, bool, &'static str) {
    // Which variable the routes came from, so an error names it.
    let (specs, var): (Vec<RouteSpec>, &'static str) = match (
        raw.routes.take(),
        raw.routes_file.take(),
        raw.webhook_url.take(),
    ) {
        (Some(_), Some(_), _) => {
            p.push(invalid(
                "POSTERN_ROUTES",
                "set either POSTERN_ROUTES or POSTERN_ROUTES_FILE, not both",
            ));
            (Vec::new(), "POSTERN_ROUTES")
        }
        (Some(json), None, _) => (
            p.or(parse_routes("POSTERN_ROUTES", &json), Vec::new()),
            "POSTERN_ROUTES",
        ),
        (None, Some(path), _) => (
            p.or(
                std::fs::read_to_string(&path)
                    .map_err(|e| invalid("POSTERN_ROUTES_FILE", format!("cannot read {path}: {e}")))
                    .and_then(|json| parse_routes("POSTERN_ROUTES_FILE", &json)),
                Vec::new(),
            ),
            "POSTERN_ROUTES_FILE",
        ),
        (None, None, Some(url)) => (vec![RouteSpec::catch_all(url)], "POSTERN_WEBHOOK_URL"),
        (None, None, None) => (Vec::new(), "POSTERN_ROUTES"),
    };
    let configured = !specs.is_empty() || p.0.iter().any(is_route_error);
    let mut routes = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        match Route::compile(spec) {
            Ok(r) => routes.push(r),
            Err(e) => p.push(route_error(var, i, e)),
        }
    }
    (routes, configured, var)
}

/// A sync route's `sync_timeout` must end before the session's idle
/// timeout (`POSTERN_SMTP_IDLE_TIMEOUT`, the longest we let the line be
/// quiet): an app slower than that would hold the client past the point
/// where we would have hung up on it ourselves.
pub(super) fn sync_timeouts(
    routes: &[Route],
    var: &'static str,
    idle: Duration,
) -> Vec<ConfigError> {
    routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let t = r.sync_timeout.filter(|t| *t >= idle)?;
            Some(route_error(
                var,
                i,
                RouteError::SyncTimeoutTooLong {
                    timeout: humantime::format_duration(t).to_string(),
                    idle: humantime::format_duration(idle).to_string(),
                },
            ))
        })
        .collect()
}

/// A route with no `"secret"` of its own needs `POSTERN_WEBHOOK_SECRET`
/// (development mode signs with a secret of its own).
pub(super) fn missing_secret(
    routes: &[Route],
    default_secrets: &[Secret],
    dev_mode: bool,
) -> Option<ConfigError> {
    (!dev_mode && default_secrets.is_empty() && routes.iter().any(|r| r.secrets.is_empty())).then(
        || {
            invalid(
                "POSTERN_WEBHOOK_SECRET",
                "required: a route has no \"secret\" of its own (generate one with `postern gen-secret`)",
            )
        },
    )
}

fn is_route_error(e: &ConfigError) -> bool {
    matches!(
        e,
        ConfigError::Invalid {
            var: "POSTERN_ROUTES" | "POSTERN_ROUTES_FILE" | "POSTERN_WEBHOOK_URL",
            ..
        }
    )
}

fn route_error(var: &'static str, index: usize, e: RouteError) -> ConfigError {
    // POSTERN_WEBHOOK_URL is one route: its index says nothing.
    if var == "POSTERN_WEBHOOK_URL" {
        invalid(var, e.to_string())
    } else {
        invalid(var, format!("route {index}: {e}"))
    }
}

fn parse_routes(var: &'static str, json: &str) -> Result<Vec<RouteSpec>, ConfigError> {
    serde_json::from_str(json).map_err(|e| invalid(var, format!("invalid routes JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::cfg;

    #[test]
    fn route_errors_name_the_variable_they_came_from() {
        let table: &[(&str, &str, &str)] = &[
            (
                "POSTERN_WEBHOOK_URL",
                "ftp://x/",
                "POSTERN_WEBHOOK_URL: \"url\" must start with http:// or https://",
            ),
            (
                "POSTERN_ROUTES",
                r#"[{"match": "*", "url": "ftp://x/"}]"#,
                "POSTERN_ROUTES: route 0: \"url\" must start with http:// or https://",
            ),
        ];
        for (var, value, want) in table {
            let e = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(e.starts_with(want), "{var}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.json");
        std::fs::write(&file, r#"[{"match": "*", "url": "ftp://x/"}]"#).unwrap();
        let e = cfg(&[("POSTERN_ROUTES_FILE", file.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("POSTERN_ROUTES_FILE: route 0: \"url\" must start with"),
            "{e}"
        );
    }

    #[test]
    fn sync_timeouts_end_before_the_idle_timeout() {
        let secret = (
            "POSTERN_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let routes = |t: &str| {
            format!(
                r#"[{{"match": "a@x.test", "url": "http://127.0.0.1:9/a"}},
                   {{"match": "*", "url": "http://127.0.0.1:9/s", "mode": "sync", "sync_timeout": "{t}"}}]"#
            )
        };
        let idle = ("POSTERN_SMTP_IDLE_TIMEOUT", "10s");
        let ok = routes("9s");
        let cfg_ok = cfg(&[("POSTERN_ROUTES", &ok), secret, idle]).unwrap();
        assert_eq!(
            cfg_ok.routes[1].sync_timeout,
            Some(std::time::Duration::from_secs(9))
        );
        for t in ["10s", "30s"] {
            let json = routes(t);
            let e = cfg(&[("POSTERN_ROUTES", &json), secret, idle])
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "POSTERN_ROUTES: route 1: \"sync_timeout\" ({t}) must be shorter than POSTERN_SMTP_IDLE_TIMEOUT (10s)"
                )
            );
        }
        // the default idle timeout (5 min) is above any allowed sync_timeout
        let max = routes("60s");
        assert!(cfg(&[("POSTERN_ROUTES", &max), secret]).is_ok());
    }

    #[test]
    fn recipient_delimiter() {
        use crate::model::subaddress::Delimiter;
        let hook = ("POSTERN_WEBHOOK_URL", "http://127.0.0.1:9/hook");
        let secret = (
            "POSTERN_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let table: &[(Option<&str>, Delimiter)] = &[
            (None, Delimiter::default()),
            (Some(""), Delimiter::off()),
            (Some("+-"), Delimiter::parse("+-").unwrap()),
        ];
        for (value, want) in table {
            let mut vars = vec![hook, secret];
            if let Some(v) = value {
                vars.push(("POSTERN_RECIPIENT_DELIMITER", v));
            }
            assert_eq!(cfg(&vars).unwrap().recipient_delimiter, *want, "{value:?}");
        }
        let e = cfg(&[hook, secret, ("POSTERN_RECIPIENT_DELIMITER", "+.")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "POSTERN_RECIPIENT_DELIMITER: '.' cannot be a delimiter: use characters of !#$%&'*+-/=?^_`{|}~ (letters, digits, '.', '@', quotes and spaces are part of addresses)"
        );
    }

    #[test]
    fn webhook_url_is_a_catch_all_route() {
        let c = cfg(&[
            ("POSTERN_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
            (
                "POSTERN_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ])
        .unwrap();
        assert!(!c.dev_mode);
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn bad_routes_do_not_fall_back_to_development_mode() {
        let e = cfg(&[("POSTERN_ROUTES", "[{")]).unwrap_err();
        assert_eq!(e.iter().count(), 1, "{e}");
        assert!(
            e.to_string()
                .starts_with("POSTERN_ROUTES: invalid routes JSON"),
            "{e}"
        );
    }
}
