//! Configuration: read once from `POSTERN_*` environment variables, validated
//! at start-up, with errors that name the variable.
//!
//! The raw, stringly form (`RawConfig`) is what envy deserialises; `Config` is
//! the typed, validated form every other module receives. Nothing here reads
//! the process environment except [`Config::from_env`], so tests build configs
//! from a list of pairs.
//!
//! A typo must not change what the server accepts: a `POSTERN_*` name that is
//! not one of ours stops the start (with the closest known name as a hint),
//! and development mode, which accepts mail for anyone, is implicit only when
//! every listener is on loopback. Every problem is reported at once, so an
//! operator fixes a configuration in one round, not one error per restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::delivery::sign::{Secret, SecretError};
use crate::route::{Route, RouteError, RouteSpec};

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
/// field is optional; the defaults are applied in `Config::from_raw` and
/// listed in the README's Configuration table.
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
    // task C: per-endpoint concurrency and circuit breaker
    endpoint_concurrency: Option<String>,
    endpoint_breaker_failures: Option<String>,
    endpoint_breaker_cooldown: Option<String>,
    // task F6: PROXY protocol on the SMTP listeners
    smtp_proxy_protocol: Option<String>,
    smtp_proxy_trusted: Option<String>,
    smtp_proxy_timeout: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
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

/// Webhook delivery policy.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Delay before each retry; its length + 1 is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    /// Relative jitter applied to each delay (0.2 = ±20%).
    pub jitter: f64,
    /// Total time for one POST (connect + send + response).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// `Retry-After` is honoured up to this bound.
    pub max_retry_after: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Memory the deliveries in flight may use together, in bytes. Each
    /// attempt reserves about four times its message's size (raw message,
    /// decoded parts, base64 JSON), so a burst of large messages waits for
    /// room instead of exhausting memory.
    pub memory_budget: u64,
    /// Dead deliveries are removed this long after they died.
    pub dead_retention: Duration,
    /// Attempts in flight to one endpoint (scheme, host and port of the
    /// target) at once, so that one hung endpoint cannot hold every slot;
    /// at most `concurrency`. See [`crate::delivery::endpoint`].
    pub endpoint_concurrency: usize,
    /// Consecutive timeouts or connection failures that open an endpoint's
    /// circuit breaker; 0 turns breakers off.
    pub breaker_failures: u32,
    /// How long an open breaker leaves its endpoint alone before a probe.
    pub breaker_cooldown: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_schedule: default_schedule(),
            jitter: 0.2,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(6 * 3600),
            concurrency: 32,
            memory_budget: 512 * 1024 * 1024,
            dead_retention: Duration::from_secs(7 * 86400),
            endpoint_concurrency: 8,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(60),
        }
    }
}

fn default_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 36000]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

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

/// Outbound (HTTP API → SMTP relay) settings.
#[derive(Clone)]
pub struct OutboundConfig {
    /// `POSTERN_RELAY_URL` as given; parsed by [`crate::relay`]. In
    /// development mode without one, Postern relays to its own listener.
    pub relay_url: Option<String>,
    /// Where delivery events go, if anywhere.
    pub events_url: Option<String>,
    /// Secrets that sign events (default: the webhook secrets).
    pub events_secrets: Vec<Secret>,
    /// SHA-256 of each accepted API key: the keys themselves are not kept.
    pub api_key_hashes: Vec<[u8; 32]>,
    /// Largest request body of `POST /v1/messages`.
    pub api_max_bytes: usize,
    /// How long `GET /v1/messages/{id}` answers after a message is done.
    pub status_retention: Duration,
}

impl std::fmt::Debug for OutboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConfig")
            .field("relay_url", &self.relay_url.as_ref().map(|_| "<set>"))
            .field("events_url", &self.events_url)
            .field("api_keys", &self.api_key_hashes.len())
            .field("api_max_bytes", &self.api_max_bytes)
            .finish()
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub smtp_listen: SocketAddr,
    /// Implicit-TLS listener (RFC 8314), if any.
    pub smtps_listen: Option<SocketAddr>,
    pub http_listen: SocketAddr,
    pub security: SecurityConfig,
    /// Our name in the greeting, EHLO reply and `Received:` header.
    pub hostname: String,
    pub spool_dir: PathBuf,
    pub routes: Vec<Route>,
    /// Secret used by routes that do not name their own.
    pub default_secrets: Vec<Secret>,
    pub limits: SmtpLimits,
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
        let known = known_fields();
        let mut pairs = Vec::new();
        for (k, v) in vars {
            let (k, v): (String, String) = (k.into(), v.into());
            let Some(field) = k.strip_prefix("POSTERN_") else {
                continue;
            };
            let field = field.to_ascii_lowercase();
            if !known.contains(&field.as_str()) {
                if !is_kubernetes_service_link(&k, &v) {
                    problems.push(ConfigError::Unknown {
                        suggestion: closest_name(&k),
                        var: k,
                    });
                }
                continue;
            }
            // An empty value is the same as unset.
            if !v.is_empty() {
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

    fn from_raw(mut raw: RawConfig, p: &mut Problems) -> Config {
        let security = parse_security(&mut raw, p);
        // Taken now: the rest of `raw` is moved apart field by field below.
        let mut outbound_raw = RawConfig {
            relay_url: raw.relay_url.take(),
            events_url: raw.events_url.take(),
            events_secret: raw.events_secret.take(),
            api_keys: raw.api_keys.take(),
            api_max_bytes: raw.api_max_bytes.take(),
            status_retention: raw.status_retention.take(),
            ..RawConfig::default()
        };
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let smtp_listen = p.or(
            parse_addr("POSTERN_SMTP_LISTEN", raw.smtp_listen, "127.0.0.1:2525"),
            loopback(2525),
        );
        let http_listen = p.or(
            parse_addr("POSTERN_HTTP_LISTEN", raw.http_listen, "127.0.0.1:8080"),
            loopback(8080),
        );
        let smtps_listen = match raw.smtps_listen {
            None => None,
            Some(v) => p.or(
                parse_addr("POSTERN_SMTPS_LISTEN", Some(v), "").map(Some),
                None,
            ),
        };
        let hostname = raw.hostname.unwrap_or_else(|| "localhost".to_string());
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
        let spool_dir = PathBuf::from(raw.spool_dir.unwrap_or_else(|| "./data".to_string()));

        let default_secrets = match raw.webhook_secret {
            Some(s) => p.or(
                Secret::parse_list(&s).map_err(|e| secret_error("POSTERN_WEBHOOK_SECRET", e)),
                Vec::new(),
            ),
            None => Vec::new(),
        };

        let specs: Vec<RouteSpec> = match (raw.routes, raw.routes_file, raw.webhook_url.clone()) {
            (Some(_), Some(_), _) => {
                p.push(invalid(
                    "POSTERN_ROUTES",
                    "set either POSTERN_ROUTES or POSTERN_ROUTES_FILE, not both",
                ));
                Vec::new()
            }
            (Some(json), None, _) => p.or(parse_routes("POSTERN_ROUTES", &json), Vec::new()),
            (None, Some(path), _) => p.or(
                std::fs::read_to_string(&path)
                    .map_err(|e| invalid("POSTERN_ROUTES_FILE", format!("cannot read {path}: {e}")))
                    .and_then(|json| parse_routes("POSTERN_ROUTES_FILE", &json)),
                Vec::new(),
            ),
            (None, None, Some(url)) => vec![RouteSpec::catch_all(url)],
            (None, None, None) => Vec::new(),
        };
        // Routes that failed to parse or compile are reported; whether the
        // user meant to configure routes is what decides development mode.
        let routes_configured = !specs.is_empty() || p.0.iter().any(is_route_error);
        let routes_var = if specs.is_empty() {
            ""
        } else {
            "POSTERN_ROUTES"
        };
        let mut routes = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            match Route::compile(spec) {
                Ok(r) => routes.push(r),
                Err(e) => p.push(route_error(routes_var, i, e)),
            }
        }
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
        if !dev_mode && default_secrets.is_empty() && routes.iter().any(|r| r.secrets.is_empty()) {
            p.push(invalid(
                "POSTERN_WEBHOOK_SECRET",
                "required: a route has no \"secret\" of its own (generate one with `postern gen-secret`)",
            ));
        }
        if security.tls_files.is_none()
            && !dev_mode
            && (smtps_listen.is_some() || security.require_tls)
        {
            p.push(invalid(
                if smtps_listen.is_some() {
                    "POSTERN_SMTPS_LISTEN"
                } else {
                    "POSTERN_SMTP_REQUIRE_TLS"
                },
                "needs a certificate: set POSTERN_TLS_CERT and POSTERN_TLS_KEY",
            ));
        }

        let d = SmtpLimits::default();
        let limits = SmtpLimits {
            max_message_size: p.or(
                parse_size(
                    "POSTERN_MAX_MESSAGE_SIZE",
                    raw.max_message_size,
                    d.max_message_size,
                ),
                d.max_message_size,
            ),
            max_recipients: p.or(
                parse_num(
                    "POSTERN_MAX_RECIPIENTS",
                    raw.max_recipients,
                    d.max_recipients,
                ),
                d.max_recipients,
            ),
            max_line_length: p.or(
                parse_num(
                    "POSTERN_MAX_LINE_LENGTH",
                    raw.max_line_length,
                    d.max_line_length,
                ),
                d.max_line_length,
            ),
            max_errors: p.or(
                parse_num("POSTERN_MAX_ERRORS", raw.max_errors, d.max_errors),
                d.max_errors,
            ),
            idle_timeout: p.or(
                parse_duration(
                    "POSTERN_SMTP_IDLE_TIMEOUT",
                    raw.smtp_idle_timeout,
                    d.idle_timeout,
                ),
                d.idle_timeout,
            ),
            session_timeout: p.or(
                parse_duration(
                    "POSTERN_SMTP_SESSION_TIMEOUT",
                    raw.smtp_session_timeout,
                    d.session_timeout,
                ),
                d.session_timeout,
            ),
            min_data_rate: p.or(
                parse_num(
                    "POSTERN_SMTP_MIN_DATA_RATE",
                    raw.smtp_min_data_rate,
                    d.min_data_rate,
                ),
                d.min_data_rate,
            ),
            data_rate_grace: p.or(
                parse_duration(
                    "POSTERN_SMTP_DATA_RATE_GRACE",
                    raw.smtp_data_rate_grace,
                    d.data_rate_grace,
                ),
                d.data_rate_grace,
            ),
            max_sessions: p.or(
                parse_num("POSTERN_MAX_SESSIONS", raw.max_sessions, d.max_sessions),
                d.max_sessions,
            ),
            max_sessions_per_ip: p.or(
                parse_num(
                    "POSTERN_MAX_SESSIONS_PER_IP",
                    raw.max_sessions_per_ip,
                    d.max_sessions_per_ip,
                ),
                d.max_sessions_per_ip,
            ),
            greeting_delay: p.or(
                parse_duration(
                    "POSTERN_SMTP_GREETING_DELAY",
                    raw.smtp_greeting_delay,
                    d.greeting_delay,
                ),
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

        let dd = DeliveryConfig::default();
        let retry_schedule = match raw.retry_schedule {
            None => dd.retry_schedule.clone(),
            Some(s) => p.or(
                parse_schedule(&s).map_err(|m| invalid("POSTERN_RETRY_SCHEDULE", m)),
                dd.retry_schedule.clone(),
            ),
        };
        let jitter = match raw.retry_jitter {
            None => dd.jitter,
            Some(s) => match s.parse::<f64>() {
                Ok(j) if (0.0..1.0).contains(&j) => j,
                _ => {
                    p.push(invalid(
                        "POSTERN_RETRY_JITTER",
                        "a fraction in [0, 1), e.g. 0.2",
                    ));
                    dd.jitter
                }
            },
        };
        let delivery = DeliveryConfig {
            retry_schedule,
            jitter,
            timeout: p.or(
                parse_duration("POSTERN_WEBHOOK_TIMEOUT", raw.webhook_timeout, dd.timeout),
                dd.timeout,
            ),
            connect_timeout: p.or(
                parse_duration(
                    "POSTERN_WEBHOOK_CONNECT_TIMEOUT",
                    raw.webhook_connect_timeout,
                    dd.connect_timeout,
                ),
                dd.connect_timeout,
            ),
            max_retry_after: p.or(
                parse_duration(
                    "POSTERN_MAX_RETRY_AFTER",
                    raw.max_retry_after,
                    dd.max_retry_after,
                ),
                dd.max_retry_after,
            ),
            concurrency: p.or(
                parse_num(
                    "POSTERN_DELIVERY_CONCURRENCY",
                    raw.delivery_concurrency,
                    dd.concurrency,
                ),
                dd.concurrency,
            ),
            memory_budget: p.or(
                parse_size(
                    "POSTERN_DELIVERY_MEMORY",
                    raw.delivery_memory,
                    dd.memory_budget,
                ),
                dd.memory_budget,
            ),
            dead_retention: p.or(
                parse_duration(
                    "POSTERN_DEAD_RETENTION",
                    raw.dead_retention,
                    dd.dead_retention,
                ),
                dd.dead_retention,
            ),
            ..dd
        };
        if delivery.concurrency == 0 {
            p.push(invalid(
                "POSTERN_DELIVERY_CONCURRENCY",
                "must be at least 1",
            ));
        }
        // task C
        let delivery = parse_endpoint_limits(
            delivery,
            raw.endpoint_concurrency,
            raw.endpoint_breaker_failures,
            raw.endpoint_breaker_cooldown,
            p,
        );

        // task F6
        let smtp_proxy = parse_smtp_proxy(
            raw.smtp_proxy_protocol,
            raw.smtp_proxy_trusted,
            raw.smtp_proxy_timeout,
            p,
        );

        let fsync = match raw.fsync.as_deref() {
            None => true,
            Some(v) => p.or(parse_bool("POSTERN_FSYNC", v), true),
        };
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => {
                p.push(invalid("POSTERN_LOG_FORMAT", "must be text or json"));
                LogFormat::Text
            }
        };

        let outbound = parse_outbound(&mut outbound_raw, &default_secrets, dev_mode, p);
        let shutdown_grace = p.or(
            parse_duration(
                "POSTERN_SHUTDOWN_GRACE",
                raw.shutdown_grace,
                Duration::from_secs(25),
            ),
            Duration::from_secs(25),
        );

        Config {
            smtp_listen,
            smtps_listen,
            security,
            http_listen,
            hostname,
            spool_dir,
            routes,
            default_secrets,
            limits,
            delivery,
            fsync,
            log_format,
            shutdown_grace,
            dev_mode,
            outbound,
            smtp_proxy,
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

fn is_route_error(e: &ConfigError) -> bool {
    matches!(
        e,
        ConfigError::Invalid {
            var: "POSTERN_ROUTES" | "POSTERN_ROUTES_FILE" | "POSTERN_WEBHOOK_URL",
            ..
        }
    )
}

/// The names envy reads, from `RawConfig`'s own `Deserialize` impl, so the
/// list of known variables cannot drift from the fields.
fn known_fields() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Introspect<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Introspect<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("introspected"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    static FIELDS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut fields: &'static [&'static str] = &[];
        let _ = RawConfig::deserialize(Introspect(&mut fields));
        fields
    })
}

/// Every `POSTERN_*` variable Postern reads, sorted.
pub fn known_names() -> Vec<String> {
    let mut names: Vec<String> = known_fields()
        .iter()
        .map(|f| format!("POSTERN_{}", f.to_ascii_uppercase()))
        .collect();
    names.sort();
    names
}

/// The known name closest to a misspelt one, if any is close enough to be
/// a plausible typo (a few edits, transpositions counting as one).
fn closest_name(var: &str) -> Option<&'static str> {
    let var = var.to_ascii_uppercase();
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        known_names()
            .into_iter()
            .map(|n| &*Box::leak(n.into_boxed_str()))
            .collect()
    });
    let limit = (var.len() / 4).clamp(2, 5);
    names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(&var, n), *n))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, n)| n)
}

/// Variables Kubernetes injects for every Service in the namespace
/// (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_2525_TCP_ADDR`, …): a Service named
/// `postern…` makes them start with `POSTERN_`. They are not ours, and
/// refusing to start over them would break ordinary deployments (our chart
/// also sets `enableServiceLinks: false`). Their shapes are distinctive,
/// and a `*_PORT` is only skipped when its value is a `tcp://…` link, so
/// `POSTERN_SMTP_PORT=25` is still reported as unknown.
fn is_kubernetes_service_link(var: &str, value: &str) -> bool {
    if var.ends_with("_SERVICE_HOST")
        || var.ends_with("_SERVICE_PORT")
        || var.contains("_SERVICE_PORT_")
    {
        return true;
    }
    let link_value = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|p| value.starts_with(p));
    if var.ends_with("_PORT") && link_value {
        return true;
    }
    // <NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]
    let parts: Vec<&str> = var.split('_').collect();
    parts.windows(3).enumerate().any(|(i, w)| {
        w[0] == "PORT"
            && !w[1].is_empty()
            && w[1].bytes().all(|b| b.is_ascii_digit())
            && matches!(w[2], "TCP" | "UDP" | "SCTP")
            && match parts.get(i + 3..) {
                Some([]) | None => true,
                Some([last]) => matches!(*last, "PROTO" | "PORT" | "ADDR"),
                Some(_) => false,
            }
    })
}

fn parse_outbound(
    raw: &mut RawConfig,
    default_secrets: &[Secret],
    dev_mode: bool,
    p: &mut Problems,
) -> OutboundConfig {
    let events_url = raw.events_url.take();
    if let Some(u) = &events_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        p.push(invalid(
            "POSTERN_EVENTS_URL",
            "must start with http:// or https://",
        ));
    }
    let events_secrets = match raw.events_secret.take() {
        Some(s) => p.or(
            Secret::parse_list(&s).map_err(|e| secret_error("POSTERN_EVENTS_SECRET", e)),
            Vec::new(),
        ),
        None => default_secrets.to_vec(),
    };
    if events_url.is_some() && events_secrets.is_empty() && !dev_mode {
        p.push(invalid(
            "POSTERN_EVENTS_SECRET",
            "required with POSTERN_EVENTS_URL when POSTERN_WEBHOOK_SECRET is not set",
        ));
    }
    let mut api_key_hashes = Vec::new();
    if let Some(keys) = raw.api_keys.take() {
        let keys: Vec<&str> = keys
            .split([',', ' ', '\n'])
            .filter(|k| !k.is_empty())
            .collect();
        if keys.iter().any(|k| k.len() < 16) {
            p.push(invalid(
                "POSTERN_API_KEYS",
                "each key needs at least 16 characters",
            ));
        }
        for k in keys {
            api_key_hashes.push(
                sha2::Digest::finalize(sha2::Digest::chain_update(
                    <sha2::Sha256 as sha2::Digest>::new(),
                    k.as_bytes(),
                ))
                .into(),
            );
        }
    }
    let d_max = 40 * 1024 * 1024;
    let api_max_bytes = p.or(
        parse_size("POSTERN_API_MAX_BYTES", raw.api_max_bytes.take(), d_max),
        d_max,
    ) as usize;
    let d_retention = Duration::from_secs(7 * 86400);
    let status_retention = p.or(
        parse_duration(
            "POSTERN_STATUS_RETENTION",
            raw.status_retention.take(),
            d_retention,
        ),
        d_retention,
    );
    let relay_url = raw.relay_url.take();
    if let Some(url) = &relay_url
        && let Err(e) = crate::relay::RelayConfig::parse(url)
    {
        p.push(invalid("POSTERN_RELAY_URL", e.to_string()));
    }
    OutboundConfig {
        relay_url,
        events_url,
        events_secrets,
        api_key_hashes,
        api_max_bytes,
        status_retention,
    }
}

fn parse_security(raw: &mut RawConfig, p: &mut Problems) -> SecurityConfig {
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
    let auth = match raw.smtp_auth.take().as_deref() {
        None if users.is_empty() => AuthMode::Off,
        None | Some("optional") => AuthMode::Optional,
        Some("off") => AuthMode::Off,
        Some("required") => AuthMode::Required,
        Some(_) => {
            p.push(invalid(
                "POSTERN_SMTP_AUTH",
                "must be off, optional or required",
            ));
            AuthMode::Off
        }
    };
    // Users that failed to parse are reported already; do not add a
    // second, misleading "no users" error for them.
    if auth != AuthMode::Off && users.is_empty() && !users_given {
        p.push(invalid(
            "POSTERN_SMTP_AUTH",
            "AUTH is on but no users are set (POSTERN_SMTP_USERS or POSTERN_SMTP_USERS_FILE; hash with `postern hash-password`)",
        ));
    }
    let require_tls = match raw.smtp_require_tls.take() {
        None => false,
        Some(v) => p.or(parse_bool("POSTERN_SMTP_REQUIRE_TLS", &v), false),
    };
    let allow_insecure_auth = match raw.smtp_allow_insecure_auth.take() {
        None => false,
        Some(v) => p.or(parse_bool("POSTERN_SMTP_ALLOW_INSECURE_AUTH", &v), false),
    };
    let auth_max_failures: u32 = p.or(
        parse_num("POSTERN_AUTH_MAX_FAILURES", raw.auth_max_failures.take(), 5),
        5,
    );
    if auth_max_failures == 0 {
        p.push(invalid("POSTERN_AUTH_MAX_FAILURES", "must be at least 1"));
    }
    let tls_reload_interval = p.or(
        parse_duration(
            "POSTERN_TLS_RELOAD_INTERVAL",
            raw.tls_reload_interval.take(),
            Duration::from_secs(30),
        ),
        Duration::from_secs(30),
    );
    let auth_failure_window = p.or(
        parse_duration(
            "POSTERN_AUTH_FAILURE_WINDOW",
            raw.auth_failure_window.take(),
            Duration::from_secs(300),
        ),
        Duration::from_secs(300),
    );
    let auth_failure_delay = p.or(
        parse_duration(
            "POSTERN_AUTH_FAILURE_DELAY",
            raw.auth_failure_delay.take(),
            Duration::from_secs(1),
        ),
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

fn secret_error(var: &'static str, e: SecretError) -> ConfigError {
    invalid(var, e.to_string())
}

fn route_error(var: &'static str, index: usize, e: RouteError) -> ConfigError {
    invalid(
        if var.is_empty() {
            "POSTERN_WEBHOOK_URL"
        } else {
            var
        },
        format!("route {index}: {e}"),
    )
}

fn parse_routes(var: &'static str, json: &str) -> Result<Vec<RouteSpec>, ConfigError> {
    serde_json::from_str(json).map_err(|e| invalid(var, format!("invalid routes JSON: {e}")))
}

fn parse_addr(
    var: &'static str,
    v: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    v.as_deref()
        .unwrap_or(default)
        .parse()
        .map_err(|_| invalid(var, "must be an IP address and port, e.g. 0.0.0.0:2525"))
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, "must be true or false")),
    }
}

fn parse_num<T: std::str::FromStr>(
    var: &'static str,
    v: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| invalid(var, "must be a whole number")),
    }
}

fn parse_duration(
    var: &'static str,
    v: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.trim())
            .map_err(|e| invalid(var, format!("must be a duration like 30s or 5m: {e}"))),
    }
}

/// Sizes accept a plain number of octets or a K/M/G (binary) suffix.
fn parse_size(var: &'static str, v: Option<String>, default: u64) -> Result<u64, ConfigError> {
    let Some(s) = v else { return Ok(default) };
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => n.checked_mul(mult).ok_or_else(|| invalid(var, "too large")),
        _ => Err(invalid(var, "must be a size like 26214400, 25M or 512K")),
    }
}

/// task C: `POSTERN_ENDPOINT_*`, the per-endpoint limit and breaker.
/// The limit defaults to a quarter of the delivery concurrency, so one hung
/// endpoint holds at most a quarter of the slots; above the delivery
/// concurrency it means the same as that.
fn parse_endpoint_limits(
    mut d: DeliveryConfig,
    concurrency: Option<String>,
    failures: Option<String>,
    cooldown: Option<String>,
    p: &mut Problems,
) -> DeliveryConfig {
    let var = "POSTERN_ENDPOINT_CONCURRENCY";
    let default = (d.concurrency / 4).max(1);
    let n: usize = p.or(parse_num(var, concurrency, default), default);
    if n == 0 {
        p.push(invalid(var, "must be at least 1"));
    }
    d.endpoint_concurrency = n.max(1).min(d.concurrency.max(1));
    d.breaker_failures = p.or(
        parse_num(
            "POSTERN_ENDPOINT_BREAKER_FAILURES",
            failures,
            d.breaker_failures,
        ),
        d.breaker_failures,
    );
    d.breaker_cooldown = p.or(
        parse_duration(
            "POSTERN_ENDPOINT_BREAKER_COOLDOWN",
            cooldown,
            d.breaker_cooldown,
        ),
        d.breaker_cooldown,
    );
    d
}

/// task F6: `POSTERN_SMTP_PROXY_*`. The trusted networks are required
/// while the protocol is on (trusting everyone would let any client pick
/// its own address), and refused while it is off, where they would
/// silently do nothing.
fn parse_smtp_proxy(
    protocol: Option<String>,
    trusted: Option<String>,
    timeout: Option<String>,
    p: &mut Problems,
) -> crate::smtp::proxy::ProxyConfig {
    use crate::smtp::proxy::{self, Protocol, ProxyConfig};
    let (protocol_var, trusted_var) = ("POSTERN_SMTP_PROXY_PROTOCOL", "POSTERN_SMTP_PROXY_TRUSTED");
    let protocol = match protocol {
        None => Protocol::Off,
        Some(v) => p.or(
            Protocol::parse(&v).map_err(|m| invalid(protocol_var, m)),
            Protocol::Off,
        ),
    };
    let trusted = match trusted {
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
    let d = proxy::DEFAULT_TIMEOUT;
    let timeout = p.or(parse_duration("POSTERN_SMTP_PROXY_TIMEOUT", timeout, d), d);
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

/// `5s,5m,30m` → delays before each retry.
pub(crate) fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let s = s.trim();
    if s.is_empty() || s == "none" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|p| {
            humantime::parse_duration(p.trim())
                .map_err(|e| format!("bad delay {:?}: {e}", p.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
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
    fn sizes_and_schedules_parse() {
        assert_eq!(
            parse_size("X", Some("25M".into()), 0).unwrap(),
            25 * 1024 * 1024
        );
        assert_eq!(parse_size("X", Some("512k".into()), 0).unwrap(), 512 * 1024);
        assert_eq!(parse_size("X", Some("1000".into()), 0).unwrap(), 1000);
        assert_eq!(
            parse_schedule("100ms, 2s,1m").unwrap(),
            vec![
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        assert!(parse_schedule("none").unwrap().is_empty());
    }

    #[test]
    fn endpoint_limits_default_to_a_quarter_and_name_their_variable() {
        let d = cfg(&[]).unwrap().delivery;
        assert_eq!(
            (
                d.endpoint_concurrency,
                d.breaker_failures,
                d.breaker_cooldown
            ),
            (8, 5, Duration::from_secs(60))
        );
        let d = |vars: &[(&str, &str)]| cfg(vars).unwrap().delivery.endpoint_concurrency;
        assert_eq!(d(&[("POSTERN_DELIVERY_CONCURRENCY", "100")]), 25);
        assert_eq!(d(&[("POSTERN_DELIVERY_CONCURRENCY", "3")]), 1);
        assert_eq!(d(&[("POSTERN_ENDPOINT_CONCURRENCY", "2")]), 2);
        // above the total it is the total
        assert_eq!(
            d(&[
                ("POSTERN_DELIVERY_CONCURRENCY", "4"),
                ("POSTERN_ENDPOINT_CONCURRENCY", "10")
            ]),
            4
        );
        let c = cfg(&[
            ("POSTERN_ENDPOINT_BREAKER_FAILURES", "0"),
            ("POSTERN_ENDPOINT_BREAKER_COOLDOWN", "5m"),
        ])
        .unwrap();
        assert_eq!(c.delivery.breaker_failures, 0);
        assert_eq!(c.delivery.breaker_cooldown, Duration::from_secs(300));
        let cases = [
            ("POSTERN_ENDPOINT_CONCURRENCY", "0", "must be at least 1"),
            (
                "POSTERN_ENDPOINT_CONCURRENCY",
                "many",
                "must be a whole number",
            ),
            (
                "POSTERN_ENDPOINT_BREAKER_FAILURES",
                "-1",
                "must be a whole number",
            ),
            (
                "POSTERN_ENDPOINT_BREAKER_COOLDOWN",
                "soon",
                "must be a duration",
            ),
        ];
        for (var, value, msg) in cases {
            let e = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{var}: {msg}")),
                "{var}={value}: {e}"
            );
        }
    }

    #[test]
    fn dead_retention_defaults_to_a_week() {
        let d = cfg(&[]).unwrap().delivery.dead_retention;
        assert_eq!(d, Duration::from_secs(7 * 86400));
        let c = cfg(&[("POSTERN_DEAD_RETENTION", "36h")]).unwrap();
        assert_eq!(c.delivery.dead_retention, Duration::from_secs(36 * 3600));
        let e = cfg(&[("POSTERN_DEAD_RETENTION", "soon")]).unwrap_err();
        assert!(e.to_string().starts_with("POSTERN_DEAD_RETENTION:"), "{e}");
    }

    #[test]
    fn unknown_names_are_errors_with_a_suggestion() {
        let e = cfg(&[
            ("POSTERN_WEBHOOK_ULR", "http://x/"),
            ("POSTERN_SMTP_LISTEN", "0.0.0.0:2525"),
        ])
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(
                "POSTERN_WEBHOOK_ULR: unknown variable; did you mean POSTERN_WEBHOOK_URL?"
            ),
            "{text}"
        );
        // ...and the typo does not turn on development mode on 0.0.0.0.
        assert!(
            text.contains("POSTERN_SMTP_LISTEN: 0.0.0.0:2525 is not a loopback address"),
            "{text}"
        );
        let far = cfg(&[("POSTERN_COMPLETELY_DIFFERENT", "1")]).unwrap_err();
        assert_eq!(
            far.to_string(),
            "POSTERN_COMPLETELY_DIFFERENT: unknown variable (the README's Configuration table lists every POSTERN_* name)"
        );
        // An unknown name is an error even when empty; other prefixes are not ours.
        assert!(cfg(&[("POSTERN_FSYNK", "")]).is_err());
        assert!(cfg(&[("POSTERNX_FOO", "1"), ("HOME", "/root")]).is_ok());
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

    #[test]
    fn kubernetes_service_links_are_not_ours() {
        let links = [
            ("POSTERN_SERVICE_HOST", "10.0.0.7"),
            ("POSTERN_SERVICE_PORT", "2525"),
            ("POSTERN_SERVICE_PORT_SMTP", "2525"),
            ("POSTERN_PORT", "tcp://10.0.0.7:2525"),
            ("POSTERN_PORT_2525_TCP", "tcp://10.0.0.7:2525"),
            ("POSTERN_PORT_2525_TCP_PROTO", "tcp"),
            ("POSTERN_PORT_2525_TCP_PORT", "2525"),
            ("POSTERN_PORT_2525_TCP_ADDR", "10.0.0.7"),
            ("POSTERN_SMTP_PORT_2525_TCP_ADDR", "10.0.0.7"),
        ];
        assert!(cfg(&links).is_ok());
        for (k, v) in [
            ("POSTERN_SMTP_PORT", "25"),
            ("POSTERN_PORT", "2525"),
            ("POSTERN_PORT_2525_TCP_HOST", "x"),
        ] {
            assert!(cfg(&[(k, v)]).is_err(), "{k}={v}");
        }
    }

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

    #[test]
    fn known_names_match_the_fields() {
        let names = known_names();
        assert!(names.contains(&"POSTERN_WEBHOOK_URL".to_string()));
        assert!(names.contains(&"POSTERN_DEAD_RETENTION".to_string()));
        assert!(names.len() >= 49, "{names:?}");
        // Every known name is accepted (with some value) as a name.
        for n in &names {
            let r = cfg(&[(n.as_str(), "")]);
            assert!(r.is_ok(), "{n}: {:?}", r.err());
        }
    }
}
