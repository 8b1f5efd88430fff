//! Configuration: read once from `POSTERN_*` environment variables, validated
//! at start-up, with errors that name the variable.
//!
//! The raw, stringly form (`RawConfig`) is what envy deserialises; `Config` is
//! the typed, validated form. Each stage's settings are parsed in a file of
//! their own, into the struct that stage receives: `smtp.rs` (listener
//! limits, [`SmtpLimits`](crate::smtp::SmtpLimits)), `security.rs` (TLS and AUTH,
//! [`SecurityConfig`]), `routes.rs` (routes and their default secrets),
//! `delivery.rs` (retries, timeouts, concurrency, [`DeliveryConfig`]) and
//! `outbound.rs` (relay, events, sending API, [`OutboundConfig`]),
//! `attachments.rs` (attachment links, [`AttachmentUrlConfig`]);
//! `auth_checks.rs` (SPF/DKIM/DMARC/ARC and their DNS servers);
//! `parse.rs` holds the value parsers they share and `names.rs` which
//! `POSTERN_*` names are ours. What is left here is what spans the stages:
//! the listeners, development mode, and collecting every problem. Nothing
//! here reads the process environment except [`Config::from_env`], so tests
//! build configs from a list of pairs.
//!
//! A typo must not change what the server accepts: a `POSTERN_*` name that is
//! not one of ours stops the start (with the closest known name as a hint),
//! and development mode, which accepts mail for anyone, is implicit only when
//! every listener is on loopback. Every problem is reported at once, so an
//! operator fixes a configuration in one round, not one error per restart.

mod attachments;
mod auth_checks;
mod console;
mod database;
mod delivery;
mod dkim;
mod http;
mod names;
mod outbound;
mod parse;
mod routes;
mod security;
mod smtp;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use attachments::AttachmentUrlConfig;
pub use console::ConsoleConfig;
pub use database::{DatabaseSettings, TlsMode};
pub use delivery::DeliveryConfig;
pub use http::HttpLimits;
pub use names::known_names;
pub use outbound::{OutboundConfig, api_keys};
pub use security::SecurityConfig;

use crate::model::secret::{Secret, SecretError};
use crate::model::subaddress::Delimiter;
use crate::route::Route;
use parse::{parse_addr, parse_bool};

/// `POSTERN_SMTP_LISTEN` when unset: loopback, where development mode may
/// be implicit.
pub const DEFAULT_SMTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2525));

/// `POSTERN_HTTP_LISTEN` when unset (also where `postern healthcheck` and
/// `postern deliveries` look for the server).
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {msg}")]
    Invalid { var: &'static str, msg: String },
    #[error("{}", unknown_message(.var, .suggestion))]
    Unknown {
        var: String,
        suggestion: Option<&'static str>,
    },
    #[error("reading environment: {0}")]
    Env(String),
}

fn unknown_message(var: &str, suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!("{var}: unknown variable; did you mean {s}?"),
        None => format!(
            "{var}: unknown variable (the README's Configuration table lists every POSTERN_* name)"
        ),
    }
}

/// Every problem found in one configuration, in the order of the checks.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn invalid(var: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        msg: msg.into(),
    }
}

fn secret_error(var: &'static str, e: SecretError) -> ConfigError {
    invalid(var, e.to_string())
}

/// Collects problems while parsing goes on with fallbacks, so that one
/// bad value does not hide the next.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    /// The value, or `fallback` with the error recorded.
    fn or<T>(&mut self, r: Result<T, ConfigError>, fallback: T) -> T {
        r.unwrap_or_else(|e| {
            self.0.push(e);
            fallback
        })
    }

    fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
}

/// What envy reads: one field per `POSTERN_*` name (lowercased, without the
/// prefix), which is also the list of known names ([`known_names`]). Every
/// field is optional. Each stage's file takes its own fields out (`take`)
/// and applies its defaults (its settings struct's `Default`, or the value
/// at the parse call); the README's Configuration table lists them all.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    smtp_listen: Option<String>,
    smtps_listen: Option<String>,
    http_listen: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_reload_interval: Option<String>,
    smtp_require_tls: Option<String>,
    smtp_auth: Option<String>,
    smtp_users: Option<String>,
    smtp_users_file: Option<String>,
    smtp_allow_insecure_auth: Option<String>,
    max_sessions: Option<String>,
    max_sessions_per_ip: Option<String>,
    smtp_session_timeout: Option<String>,
    smtp_min_data_rate: Option<String>,
    smtp_data_rate_grace: Option<String>,
    smtp_greeting_delay: Option<String>,
    auth_max_failures: Option<String>,
    auth_failure_window: Option<String>,
    auth_failure_delay: Option<String>,
    hostname: Option<String>,
    spool_dir: Option<String>,
    routes: Option<String>,
    routes_file: Option<String>,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    recipient_delimiter: Option<String>,
    max_message_size: Option<String>,
    max_recipients: Option<String>,
    max_line_length: Option<String>,
    max_errors: Option<String>,
    smtp_idle_timeout: Option<String>,
    retry_schedule: Option<String>,
    retry_jitter: Option<String>,
    webhook_timeout: Option<String>,
    webhook_connect_timeout: Option<String>,
    max_retry_after: Option<String>,
    delivery_concurrency: Option<String>,
    delivery_memory: Option<String>,
    fsync: Option<String>,
    log_format: Option<String>,
    shutdown_grace: Option<String>,
    dev_mode: Option<String>,
    relay_url: Option<String>,
    events_url: Option<String>,
    events_secret: Option<String>,
    api_keys: Option<String>,
    api_max_bytes: Option<String>,
    status_retention: Option<String>,
    dead_retention: Option<String>,
    history_retention: Option<String>,
    // task C: per-endpoint concurrency and circuit breaker
    endpoint_concurrency: Option<String>,
    endpoint_breaker_failures: Option<String>,
    endpoint_breaker_cooldown: Option<String>,
    // task F6: PROXY protocol on the SMTP listeners
    smtp_proxy_protocol: Option<String>,
    smtp_proxy_trusted: Option<String>,
    smtp_proxy_timeout: Option<String>,
    // issue 13 item 7: DKIM signing of API mail
    dkim_keys: Option<String>,
    // issue 13 item 2: SPF, DKIM, DMARC and ARC of inbound mail
    auth_checks: Option<String>,
    dns_servers: Option<String>,
    dns_timeout: Option<String>,
    // issue #12: the PostgreSQL store
    database_url: Option<String>,
    database_ca: Option<String>,
    database_pool: Option<String>,
    // issue 13 item 5: attachments by signed URL
    public_url: Option<String>,
    attachment_url_ttl: Option<String>,
    attachment_url_secret: Option<String>,
    database_lease: Option<String>,
    // the HTTP listener's limits
    http_header_timeout: Option<String>,
    http_body_timeout: Option<String>,
    http_max_connections: Option<String>,
    // issue 14: the web console
    ui_users: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub smtp_listen: SocketAddr,
    /// Implicit-TLS listener (RFC 8314), if any.
    pub smtps_listen: Option<SocketAddr>,
    pub http_listen: SocketAddr,
    /// Timeouts and the connection cap of the HTTP listener.
    pub http_limits: HttpLimits,
    pub security: SecurityConfig,
    /// Our name in the greeting, EHLO reply and `Received:` header.
    pub hostname: String,
    pub spool_dir: PathBuf,
    pub routes: Vec<Route>,
    /// `POSTERN_RECIPIENT_DELIMITER`: where a recipient's subaddress starts.
    pub recipient_delimiter: Delimiter,
    /// Secret used by routes that do not name their own.
    pub default_secrets: Vec<Secret>,
    pub limits: crate::smtp::SmtpLimits,
    pub delivery: DeliveryConfig,
    /// fsync spool writes (never turn off in production; tests of logic may).
    pub fsync: bool,
    pub log_format: LogFormat,
    /// How long shutdown waits for DATA transfers and POSTs in flight.
    pub shutdown_grace: Duration,
    /// No webhook configured: deliver to the built-in `/dev/inbox`.
    pub dev_mode: bool,
    pub outbound: OutboundConfig,
    /// PROXY protocol on both SMTP listeners (task F6).
    pub smtp_proxy: crate::smtp::proxy::ProxyConfig,
    /// The PostgreSQL store, when `POSTERN_DATABASE_URL` is set (issue #12).
    pub database: Option<DatabaseSettings>,
    /// Attachments by signed URL (issue 13 item 5).
    pub attachment_urls: AttachmentUrlConfig,
    /// SPF/DKIM/DMARC/ARC of inbound mail; `None` while every check is
    /// off (the default: no DNS at all).
    pub auth_checks: Option<crate::auth_checks::settings::Settings>,
    /// The web console's logins besides API keys (issue 14).
    pub console: ConsoleConfig,
}

impl Config {
    /// Reads `POSTERN_*` from the process environment.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::from_vars(std::env::vars())
    }

    /// Builds a config from `(name, value)` pairs; names carry the
    /// `POSTERN_` prefix, other names are ignored. Every problem is
    /// reported, not only the first.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut problems = Problems::default();
        let known = names::known_fields();
        let mut pairs = Vec::new();
        for (k, v) in vars {
            let (k, v): (String, String) = (k.into(), v.into());
            let Some(field) = k.strip_prefix("POSTERN_") else {
                continue;
            };
            let field = field.to_ascii_lowercase();
            if !known.contains(&field.as_str()) {
                if !names::is_kubernetes_service_link(&k, &v) {
                    problems.push(ConfigError::Unknown {
                        suggestion: names::closest_name(&k),
                        var: k,
                    });
                }
                continue;
            }
            // An empty value is the same as unset, except where empty is a
            // setting of its own (no recipient delimiter, as in Postfix).
            if !v.is_empty() || field == "recipient_delimiter" {
                pairs.push((field, v));
            }
        }
        let raw: RawConfig = match envy::from_iter(pairs) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(ConfigError::Env(e.to_string()));
                RawConfig::default()
            }
        };
        let config = Config::from_raw(raw, &mut problems);
        if problems.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(problems.0))
        }
    }

    /// The stages' settings in a fixed order, which is the order their
    /// problems are reported in.
    fn from_raw(mut raw: RawConfig, p: &mut Problems) -> Config {
        let security = security::parse(&mut raw, p);
        let smtp_listen = p.addr(
            "POSTERN_SMTP_LISTEN",
            raw.smtp_listen.take(),
            DEFAULT_SMTP_LISTEN,
        );
        let http_listen = p.addr(
            "POSTERN_HTTP_LISTEN",
            raw.http_listen.take(),
            DEFAULT_HTTP_LISTEN,
        );
        let http_limits = http::parse(&mut raw, p);
        let smtps_listen = match raw.smtps_listen.take() {
            None => None,
            Some(v) => p.or(parse_addr("POSTERN_SMTPS_LISTEN", &v).map(Some), None),
        };
        let hostname = raw
            .hostname
            .take()
            .unwrap_or_else(|| "localhost".to_string());
        if hostname.is_empty()
            || hostname
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b < 0x21)
        {
            p.push(invalid(
                "POSTERN_HOSTNAME",
                "must be a host name without spaces",
            ));
        }
        let spool_dir = PathBuf::from(raw.spool_dir.take().unwrap_or_else(|| "./data".to_string()));

        let default_secrets = routes::default_secrets(&mut raw, p);
        let (routes, routes_configured, routes_var) = routes::parse(&mut raw, p);
        let recipient_delimiter = routes::delimiter(&mut raw, p);
        let explicit_dev = match raw.dev_mode.as_deref() {
            None => None,
            Some(v) => p.or(parse_bool("POSTERN_DEV_MODE", v).map(Some), None),
        };
        let mut listeners = vec![
            ("POSTERN_SMTP_LISTEN", smtp_listen),
            ("POSTERN_HTTP_LISTEN", http_listen),
        ];
        if let Some(a) = smtps_listen {
            listeners.push(("POSTERN_SMTPS_LISTEN", a));
        }
        let dev_mode = p.or(
            development_mode(explicit_dev, routes_configured, &listeners),
            false,
        );
        if let Some(e) = routes::missing_secret(&routes, &default_secrets, dev_mode) {
            p.push(e);
        }
        if let Some(e) = security::missing_certificate(&security, smtps_listen.is_some(), dev_mode)
        {
            p.push(e);
        }

        let limits = smtp::parse(&mut raw, p);
        for e in routes::sync_timeouts(&routes, routes_var, limits.idle_timeout) {
            p.push(e);
        }
        let delivery = delivery::parse(&mut raw, p);
        let smtp_proxy = smtp::parse_proxy(&mut raw, p);
        let database = database::parse(&mut raw, p);
        let attachment_urls = attachments::parse(&mut raw, p);
        if let Some(e) =
            attachments::missing_public_url(&routes, attachment_urls.public_url.is_some(), dev_mode)
        {
            p.push(e);
        }
        let auth_checks = auth_checks::parse(&mut raw, p);
        if let Some(e) = auth_checks::dmarc_reject_without_dmarc(&routes, auth_checks.as_ref()) {
            p.push(e);
        }

        let fsync = p.bool("POSTERN_FSYNC", raw.fsync.take(), true);
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => {
                p.push(invalid("POSTERN_LOG_FORMAT", "must be text or json"));
                LogFormat::Text
            }
        };

        let outbound = outbound::parse(&mut raw, &default_secrets, dev_mode, p);
        let console = console::parse(&mut raw, p);
        let shutdown_grace = p.duration(
            "POSTERN_SHUTDOWN_GRACE",
            raw.shutdown_grace.take(),
            Duration::from_secs(25),
        );

        Config {
            smtp_listen,
            smtps_listen,
            security,
            http_listen,
            http_limits,
            hostname,
            spool_dir,
            routes,
            recipient_delimiter,
            default_secrets,
            limits,
            delivery,
            fsync,
            log_format,
            shutdown_grace,
            dev_mode,
            outbound,
            smtp_proxy,
            database,
            attachment_urls,
            auth_checks,
            console,
        }
    }
}

/// Whether to run in development mode (accept every recipient, deliver to
/// the built-in inbox, take the API key `dev`).
///
/// `POSTERN_DEV_MODE` decides when it is set. Otherwise development mode
/// is what an empty configuration means, but only while every listener is
/// on loopback: a server reachable from elsewhere with no routes is almost
/// certainly a typo in a route variable, and must not become an open relay
/// to a test inbox.
fn development_mode(
    explicit: Option<bool>,
    routes_configured: bool,
    listeners: &[(&'static str, SocketAddr)],
) -> Result<bool, ConfigError> {
    match explicit {
        Some(true) => Ok(true),
        Some(false) if !routes_configured => Err(invalid(
            "POSTERN_ROUTES",
            "no routes: set POSTERN_WEBHOOK_URL or POSTERN_ROUTES (or leave everything unset for development mode)",
        )),
        Some(false) => Ok(false),
        None if routes_configured => Ok(false),
        None => match listeners.iter().find(|(_, a)| !a.ip().is_loopback()) {
            None => Ok(true),
            Some((var, addr)) => Err(invalid(
                var,
                format!(
                    "{addr} is not a loopback address and no route is configured: set POSTERN_WEBHOOK_URL \
                     (with POSTERN_WEBHOOK_SECRET) or POSTERN_ROUTES; development mode, which accepts mail \
                     for anyone and the API key \"dev\", is implicit only on loopback \
                     (POSTERN_DEV_MODE=true turns it on anywhere)"
                ),
            )),
        },
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A config from `(name, value)` pairs, for every test in `config`.
    pub(in crate::config) fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn empty_environment_is_development_mode() {
        let c = cfg(&[]).unwrap();
        assert!(c.dev_mode);
        assert_eq!(c.smtp_listen.to_string(), "127.0.0.1:2525");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.limits.max_message_size, 25 * 1024 * 1024);
        assert_eq!(c.delivery.retry_schedule.len(), 7);
        assert!(c.fsync);
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("POSTERN_SMTP_LISTEN", "nope")], "POSTERN_SMTP_LISTEN"),
            (
                &[("POSTERN_MAX_MESSAGE_SIZE", "huge")],
                "POSTERN_MAX_MESSAGE_SIZE",
            ),
            (
                &[("POSTERN_RETRY_SCHEDULE", "5s,soon")],
                "POSTERN_RETRY_SCHEDULE",
            ),
            (&[("POSTERN_ROUTES", "[{")], "POSTERN_ROUTES"),
            (
                &[
                    ("POSTERN_WEBHOOK_URL", "http://x/"),
                    ("POSTERN_WEBHOOK_SECRET", "nope"),
                ],
                "POSTERN_WEBHOOK_SECRET",
            ),
            (
                &[("POSTERN_WEBHOOK_URL", "http://x/")],
                "POSTERN_WEBHOOK_SECRET",
            ),
            (
                &[("POSTERN_MAX_LINE_LENGTH", "100")],
                "POSTERN_MAX_LINE_LENGTH",
            ),
            (&[("POSTERN_LOG_FORMAT", "xml")], "POSTERN_LOG_FORMAT"),
            (&[("POSTERN_FSYNC", "maybe")], "POSTERN_FSYNC"),
            (
                &[("POSTERN_SMTP_IDLE_TIMEOUT", "forever")],
                "POSTERN_SMTP_IDLE_TIMEOUT",
            ),
        ];
        for (vars, name) in cases {
            let err = cfg(vars).unwrap_err().to_string();
            assert!(err.starts_with(name), "{vars:?}: {err}");
        }
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = cfg(&[
            ("POSTERN_SMTP_LISTEN", "nope"),
            ("POSTERN_MAX_MESSAGE_SIZE", "huge"),
            ("POSTERN_LOG_FORMAT", "xml"),
            ("POSTERN_RETRY_SCHEDUL", "5s"),
            ("POSTERN_RELAY_URL", "ftp://relay"),
        ])
        .unwrap_err();
        let vars: Vec<String> = e
            .iter()
            .map(|e| e.to_string().split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(
            vars,
            [
                "POSTERN_RETRY_SCHEDUL",
                "POSTERN_SMTP_LISTEN",
                "POSTERN_MAX_MESSAGE_SIZE",
                "POSTERN_LOG_FORMAT",
                "POSTERN_RELAY_URL"
            ],
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 5);
    }

    #[test]
    fn development_mode_is_implicit_only_on_loopback() {
        let lo = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let any: SocketAddr = "0.0.0.0:2525".parse().unwrap();
        let v6lo: SocketAddr = "[::1]:8080".parse().unwrap();
        let v6any: SocketAddr = "[::]:8080".parse().unwrap();
        let ok = |e: Option<bool>, r: bool, l: &[(&'static str, SocketAddr)]| {
            development_mode(e, r, l).map_err(|e| e.to_string())
        };
        let both_lo = [
            ("POSTERN_SMTP_LISTEN", lo(2525)),
            ("POSTERN_HTTP_LISTEN", v6lo),
        ];
        let public_http = [
            ("POSTERN_SMTP_LISTEN", lo(2525)),
            ("POSTERN_HTTP_LISTEN", v6any),
        ];
        let public_smtp = [
            ("POSTERN_SMTP_LISTEN", any),
            ("POSTERN_HTTP_LISTEN", lo(8080)),
        ];
        assert_eq!(ok(None, false, &both_lo), Ok(true));
        assert_eq!(ok(None, true, &both_lo), Ok(false));
        assert_eq!(ok(None, true, &public_smtp), Ok(false));
        assert!(
            ok(None, false, &public_http)
                .unwrap_err()
                .starts_with("POSTERN_HTTP_LISTEN: [::]:8080")
        );
        let e = ok(None, false, &public_smtp).unwrap_err();
        assert!(
            e.starts_with("POSTERN_SMTP_LISTEN: 0.0.0.0:2525 is not a loopback address"),
            "{e}"
        );
        assert!(e.contains("POSTERN_DEV_MODE=true"), "{e}");
        // Explicit always wins, except "false" with nothing to deliver to.
        assert_eq!(ok(Some(true), false, &public_smtp), Ok(true));
        assert_eq!(ok(Some(true), true, &public_smtp), Ok(true));
        assert_eq!(ok(Some(false), true, &both_lo), Ok(false));
        assert!(
            ok(Some(false), false, &both_lo)
                .unwrap_err()
                .starts_with("POSTERN_ROUTES: no routes")
        );
        // The same through the variables, including the implicit-TLS listener.
        assert!(cfg(&[("POSTERN_SMTPS_LISTEN", "0.0.0.0:4650")]).is_err());
        assert!(
            cfg(&[
                ("POSTERN_SMTP_LISTEN", "0.0.0.0:2525"),
                ("POSTERN_DEV_MODE", "true")
            ])
            .unwrap()
            .dev_mode
        );
    }
}
