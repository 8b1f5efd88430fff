//! Postern: an SMTP ⇄ HTTP webhook bridge.
//!
//! Mail arrives over SMTP, is written durably to a spool before we answer
//! `250`, and is then POSTed as signed JSON (Standard Webhooks) to the
//! endpoints its recipients route to, with retries for about a day.
//!
//! # Layout
//!
//! - [`config`]: `POSTERN_*` environment → validated [`config::Config`].
//! - [`smtp`]: accept loop, session state machine, DATA decoder, replies.
//! - [`model`]: leaf types every stage shares (the clock).
//! - [`route`]: recipient → webhook endpoints, at RCPT and again at each
//!   attempt of a spooled delivery.
//! - [`spool`]: the durable store, its one intake path (accept → commit →
//!   schedule) and the in-memory schedule of due work.
//! - [`mail`]: raw message → JSON fields (mail-parser).
//! - [`delivery`]: the worker that claims due deliveries and runs one
//!   attempt each (signed webhook POST, relay submission, event), the
//!   outcome policy, per-endpoint limits and circuit breakers, outbox
//!   bookkeeping.
//! - [`http`]: health endpoint and the development inbox.
//! - [`doctor`]: `postern doctor`, checks a configuration without serving.
//!
//! The SMTP side and the delivery side never call each other: they meet at
//! the spool. [`run`] takes already-bound listeners and a cancellation
//! token, so tests start everything on port 0 and stop it at will.

#![forbid(unsafe_code)]

pub mod api;
pub mod compose;
pub mod config;
pub mod delivery;
pub mod doctor;
pub mod http;
pub mod mail;
pub mod model;
pub mod relay;
pub mod route;
pub mod smtp;
pub mod spool;
pub mod telemetry;
pub mod tls;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::delivery::Worker;
use crate::delivery::sign::Secret;
use crate::route::{Route, RouteSpec};
use crate::smtp::session::Inbound;
use crate::spool::{JobKey, Queue, Spool};

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spool at {path}: {source}")]
    Spool { path: String, source: spool::Error },
    #[error("listener: {0}")]
    Listener(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Config(String),
}

/// The sockets Postern serves, bound by the caller.
pub struct Listeners {
    pub smtp: TcpListener,
    /// Implicit TLS (RFC 8314), when configured.
    pub smtps: Option<TcpListener>,
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, BindError> {
        let smtps = match config.smtps_listen {
            Some(addr) => Some(bind_one("POSTERN_SMTPS_LISTEN", addr).await?),
            None => None,
        };
        Ok(Listeners {
            smtp: bind_one("POSTERN_SMTP_LISTEN", config.smtp_listen).await?,
            smtps,
            http: bind_one("POSTERN_HTTP_LISTEN", config.http_listen).await?,
        })
    }
}

/// A listener that could not be bound, with the variable that names it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: cannot listen on {addr}: {}", bind_reason(.source))]
pub struct BindError {
    pub var: &'static str,
    pub addr: std::net::SocketAddr,
    pub source: std::io::Error,
}

fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the address is in use: another process holds it (another Postern, perhaps the development instance?); stop it or set another address".into()
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{e} (ports below 1024 need privileges; use e.g. 2525 and map port 25 to it)")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{e} (no interface of this machine has that address)")
        }
        _ => e.to_string(),
    }
}

async fn bind_one(var: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { var, addr, source })
}

/// The TLS acceptor: the configured certificate (watched for rotation), a
/// self-signed one in development mode, or none.
fn tls_setup(
    config: &Config,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Option<tokio_rustls::TlsAcceptor>, Error> {
    if let Some((cert, key)) = &config.security.tls_files {
        let resolver = tls::ReloadingResolver::new(tls::load_certified_key(cert, key)?);
        tracker.spawn(tls::watch(
            resolver.clone(),
            cert.clone(),
            key.clone(),
            config.security.tls_reload_interval,
            shutdown.clone(),
        ));
        info!(cert = %cert.display(), "TLS certificate loaded; watching it for changes");
        return Ok(Some(tls::acceptor(resolver)));
    }
    if config.dev_mode {
        let (key, pem) = tls::self_signed(&config.hostname)?;
        let path = config.spool_dir.join("dev-tls-cert.pem");
        match std::fs::write(&path, pem) {
            Ok(()) => {
                warn!(cert = %path.display(), "DEVELOPMENT MODE: generated a self-signed TLS certificate for STARTTLS (new at each start)")
            }
            Err(e) => {
                warn!(error = %e, "DEVELOPMENT MODE: generated a self-signed TLS certificate for STARTTLS, but could not write it out")
            }
        }
        return Ok(Some(tls::acceptor(tls::ReloadingResolver::new(key))));
    }
    Ok(None)
}

/// The relay for API mail: `POSTERN_RELAY_URL`, or in development mode
/// Postern's own SMTP listener, so a message sent through the API comes
/// back in as inbound mail and shows up in the dev inbox.
fn relay_setup(
    config: &Config,
    smtp_addr: std::net::SocketAddr,
) -> Result<Option<Arc<relay::Relay>>, Error> {
    let url = match &config.outbound.relay_url {
        Some(u) => u.clone(),
        None if config.dev_mode => {
            let host = if smtp_addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                smtp_addr.ip().to_string()
            };
            let url = format!("smtp://{host}:{}?tls=none", smtp_addr.port());
            warn!(relay = %url, "DEVELOPMENT MODE: no POSTERN_RELAY_URL; API mail is relayed to Postern's own SMTP listener");
            url
        }
        None => return Ok(None),
    };
    let cfg = relay::RelayConfig::parse(&url).map_err(|e| Error::Config(e.to_string()))?;
    let relay = relay::Relay::new(&cfg, &config.hostname)
        .map_err(|e| Error::Config(e.to_string()))?
        // Relay attempts are limited like any endpoint's (see
        // `delivery::endpoint`): idle connections beyond that are never used.
        .with_pool_size(config.delivery.endpoint_concurrency);
    info!(host = cfg.host(), port = cfg.port(), "relay configured");
    Ok(Some(Arc::new(relay)))
}

/// What the delivery worker needs from the configuration.
fn delivery_settings(config: &Config) -> delivery::Settings {
    let d = &config.delivery;
    delivery::Settings {
        schedule: delivery::policy::Schedule {
            delays: d.retry_schedule.clone(),
            jitter: d.jitter,
            max_retry_after: d.max_retry_after,
        },
        timeout: d.timeout,
        connect_timeout: d.connect_timeout,
        concurrency: d.concurrency,
        memory_budget: d.memory_budget,
        endpoints: delivery::endpoint::Limits {
            concurrency: d.endpoint_concurrency,
            breaker: delivery::breaker::Policy {
                failures: d.breaker_failures,
                cooldown: d.breaker_cooldown,
            },
        },
        routes: config.routes.clone(),
        default_secrets: config.default_secrets.clone(),
        events_url: config.outbound.events_url.clone(),
        events_secrets: config.outbound.events_secrets.clone(),
    }
}

/// Removes expired status and idempotency records and dead deliveries
/// older than `POSTERN_DEAD_RETENTION`, at start and hourly.
async fn sweep(
    spool: Spool,
    retention: std::time::Duration,
    dead_retention: std::time::Duration,
    metrics: Arc<telemetry::Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let s = spool.clone();
        let m = metrics.clone();
        let _ = tokio::task::spawn_blocking(move || {
            match s.sweep_dead(dead_retention) {
                Ok(removed) => {
                    for (key, state) in removed {
                        m.dead_removed.inc();
                        info!(
                            message_id = %key.id,
                            delivery = key.index,
                            reason = "dead for longer than POSTERN_DEAD_RETENTION",
                            last_error = state.last_error.as_deref().unwrap_or(""),
                            "dead delivery removed"
                        );
                    }
                }
                Err(e) => warn!(error = %e, "could not sweep dead deliveries"),
            }
            let a = s.sweep(spool::RECORDS_OUTBOX, retention).unwrap_or(0);
            let b = s
                .sweep(
                    spool::RECORDS_IDEM,
                    std::time::Duration::from_secs(24 * 3600),
                )
                .unwrap_or(0);
            if a + b > 0 {
                info!(
                    status_records = a,
                    idempotency_records = b,
                    "expired records removed"
                );
            }
        })
        .await;
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Runs Postern until `shutdown` is cancelled, then drains: stops
/// accepting, lets DATA transfers and webhook POSTs in flight finish within
/// the grace period, and returns. Whatever is left is on disk.
pub async fn run(
    mut config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let spool = Spool::open(&config.spool_dir, config.fsync).map_err(|source| Error::Spool {
        path: config.spool_dir.display().to_string(),
        source,
    })?;
    let http_addr = listeners.http.local_addr().map_err(Error::Listener)?;
    let smtp_addr = listeners.smtp.local_addr().map_err(Error::Listener)?;

    let dev_inbox = if config.dev_mode && config.routes.is_empty() {
        let secret = Secret::generate();
        let host = if http_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            http_addr.ip().to_string()
        };
        let url = format!("http://{host}:{}/dev/inbox", http_addr.port());
        let mut spec = RouteSpec::catch_all(url.clone());
        spec.secret = Some(route::OneOrMany::One(secret.to_whsec()));
        config.routes = vec![Route::compile(spec).expect("dev route compiles")];
        warn!("==============================================================");
        warn!("DEVELOPMENT MODE: no POSTERN_WEBHOOK_URL or POSTERN_ROUTES set.");
        warn!("Every recipient is accepted and delivered to the built-in inbox");
        warn!("  {url}  (GET it to see the signed payloads)");
        warn!(
            "Dev webhook secret (new at each start): {}",
            secret.to_whsec()
        );
        warn!("Do not expose this instance: it accepts mail for anyone.");
        warn!("==============================================================");
        Some(http::DevInbox::new(secret))
    } else {
        None
    };

    let report = spool.scan().map_err(|source| Error::Spool {
        path: config.spool_dir.display().to_string(),
        source,
    })?;
    let queue = Arc::new(Queue::new());
    for (key, due) in &report.pending {
        queue.push(JobKey::clone(key), *due);
    }
    info!(
        messages = report.messages,
        pending = report.pending.len(),
        dead = report.dead,
        corrupt = report.corrupt,
        spool = %config.spool_dir.display(),
        "spool scanned"
    );

    let config = Arc::new(config);
    let tracker = TaskTracker::new();
    let tls = tls_setup(&config, &tracker, &shutdown)?;
    if tls.is_none() && (listeners.smtps.is_some() || config.security.require_tls) {
        return Err(Error::Config(
            "POSTERN_SMTPS_LISTEN and POSTERN_SMTP_REQUIRE_TLS need POSTERN_TLS_CERT and POSTERN_TLS_KEY".into(),
        ));
    }
    let sec = &config.security;
    if tls.is_none() && sec.auth != config::AuthMode::Off && !sec.allow_insecure_auth {
        warn!(
            "AUTH is configured but never offered: no TLS certificate and POSTERN_SMTP_ALLOW_INSECURE_AUTH is off"
        );
    }
    let metrics = Arc::new(telemetry::Metrics::new());
    metrics.spool_corrupt.inc_by(report.corrupt as u64);
    let inbound = Inbound {
        tls,
        metrics: metrics.clone(),
        ..Inbound::new(config.clone(), spool.clone(), queue.clone())
    };
    let limiter = smtp::server::Limiter::new(
        config.limits.max_sessions,
        config.limits.max_sessions_per_ip,
    );
    let smtps_addr = listeners.smtps.as_ref().and_then(|l| l.local_addr().ok());
    info!(%smtp_addr, ?smtps_addr, %http_addr, hostname = %config.hostname, "Postern listening");

    let smtp_task = tokio::spawn(smtp::server::run(
        listeners.smtp,
        smtp::server::Mode::Plain,
        inbound.clone(),
        limiter.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    let smtps_task = listeners.smtps.map(|l| {
        tokio::spawn(smtp::server::run(
            l,
            smtp::server::Mode::ImplicitTls,
            inbound.clone(),
            limiter.clone(),
            tracker.clone(),
            shutdown.clone(),
        ))
    });
    let relay = relay_setup(&config, smtp_addr)?;
    let sending = Arc::new(delivery::outbox::InFlight::default());
    let api_state = api::ApiState {
        config: config.clone(),
        spool: spool.clone(),
        queue: queue.clone(),
        intake: spool::Intake::new(spool.clone(), queue.clone()),
        sending: sending.clone(),
        idempotency: Arc::default(),
        shutdown: shutdown.clone(),
        relay_ready: relay.is_some(),
        budget: api::budget::Budget::for_max_body(config.outbound.api_max_bytes),
    };
    if config.outbound.api_key_hashes.is_empty() {
        if config.dev_mode {
            warn!(
                "DEVELOPMENT MODE: the HTTP API accepts the key \"{}\" (set POSTERN_API_KEYS to change)",
                api::DEV_API_KEY
            );
        } else {
            warn!("no POSTERN_API_KEYS: the sending API refuses every request");
        }
    }
    tracker.spawn(sweep(
        spool.clone(),
        config.outbound.status_retention,
        config.delivery.dead_retention,
        metrics.clone(),
        shutdown.clone(),
    ));
    let worker = Worker::new(
        delivery_settings(&config),
        spool.clone(),
        queue.clone(),
        relay,
        metrics.clone(),
        sending,
    );
    let ops = http::Ops {
        metrics: metrics.clone(),
        queue: queue.clone(),
        spool: spool.clone(),
        shutdown: shutdown.clone(),
        max_message_size: config.limits.max_message_size,
    };
    let worker_task = tokio::spawn(worker.run(tracker.clone(), shutdown.clone()));
    // HTTP stays up through the drain so /readyz can say "shutting down"
    // and the API can answer 503; it stops once the drain is over.
    let http_stop = CancellationToken::new();
    let http_shutdown = http_stop.clone();
    let http_task = tokio::spawn(async move {
        let app = http::router(dev_inbox, api_state, ops)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(e) = axum::serve(listeners.http, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
        {
            error!(error = %e, "HTTP server failed");
        }
    });

    shutdown.cancelled().await;
    info!("shutting down");
    let _ = smtp_task.await;
    if let Some(t) = smtps_task {
        let _ = t.await;
    }
    let _ = worker_task.await;
    tracker.close();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!("grace period over; work still in flight stays pending on disk");
    }
    http_stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http_task).await;
    info!("stopped");
    Ok(())
}
