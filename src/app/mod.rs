//! Wiring and drain: builds every stage from the configuration, starts
//! them on the listeners it is given, and on cancellation stops them in
//! order (what `postern serve` runs, and what tests start on port 0).
//! Each stage is built by its constructor with what it needs; nothing is
//! patched in afterwards.

mod listeners;
mod settings;
mod setup;
mod sweep;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use listeners::{BindError, Listeners};

use crate::config::Config;
use crate::delivery::Worker;
use crate::smtp::session::Inbound;
use crate::{api, console, delivery, http, smtp, spool, telemetry, tls};

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spool at {path}: {source}")]
    Spool { path: String, source: spool::Error },
    /// The shared store's database: unreachable at start, or its schema
    /// could not be brought up to date.
    #[error("database: {0}")]
    Database(String),
    #[error("listener: {0}")]
    Listener(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Config(String),
}

/// Runs Postern until `shutdown` is cancelled, then drains: stops
/// accepting, lets DATA transfers and webhook POSTs in flight finish within
/// the grace period, and returns. Whatever is left is on disk.
pub async fn run(
    mut config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (store, corrupt) = setup::store(&config).await?;
    let http_addr = listeners.http.local_addr().map_err(Error::Listener)?;
    let smtp_addr = listeners.smtp.local_addr().map_err(Error::Listener)?;

    let dev_inbox = setup::dev_inbox(&mut config, http_addr);
    let (link_key, linker) = setup::attachment_links(&config, http_addr)?;

    let config = Arc::new(config);
    let tracker = TaskTracker::new();
    let tls = setup::tls(&config, &tracker, &shutdown)?;
    if tls.is_none() && (listeners.smtps.is_some() || config.security.require_tls) {
        return Err(Error::Config(
            "POSTERN_SMTPS_LISTEN and POSTERN_SMTP_REQUIRE_TLS need POSTERN_TLS_CERT and POSTERN_TLS_KEY".into(),
        ));
    }
    let sec = &config.security;
    if tls.is_none() && sec.auth != smtp::AuthMode::Off && !sec.allow_insecure_auth {
        warn!(
            "AUTH is configured but never offered: no TLS certificate and POSTERN_SMTP_ALLOW_INSECURE_AUTH is off"
        );
    }
    let metrics = Arc::new(telemetry::Metrics::new());
    metrics.spool_corrupt.inc_by(corrupt as u64);
    let mut inbound = Inbound::new(config.smtp_settings(), store.clone(), tls, metrics.clone())
        .with_attachment_links(linker.clone());
    if let Some(auth) = &config.auth_checks {
        // Only here, with a check on, is the system resolver read.
        let checker = smtp::checks::AuthChecker::new(auth)
            .map_err(|e| Error::Config(format!("POSTERN_AUTH_CHECKS: {e}")))?;
        inbound = inbound.with_auth_checks(checker);
    }
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
    let relay = setup::relay(&config, smtp_addr)?;
    let sending = Arc::new(delivery::outbox::InFlight::default());
    let api_state = api::ApiState::new(
        settings::api(&config, link_key),
        store.clone(),
        sending.clone(),
        relay.is_some(),
        shutdown.clone(),
    );
    if config.outbound.api_key_hashes.is_empty() {
        if config.dev_mode {
            warn!(
                "DEVELOPMENT MODE: the HTTP API accepts the key \"{}\" (set POSTERN_API_KEYS to change)",
                api::auth::DEV_API_KEY
            );
        } else {
            warn!("no POSTERN_API_KEYS: the sending API refuses every request");
        }
    }
    tracker.spawn(sweep::run(
        store.clone(),
        config.outbound.status_retention,
        config.delivery.dead_retention,
        metrics.clone(),
        shutdown.clone(),
    ));
    if !config.delivery.history_retention.is_zero() {
        tracker.spawn(sweep::history(
            store.clone(),
            config.delivery.history_retention,
            shutdown.clone(),
        ));
    }
    let worker = Worker::new(
        settings::delivery(&config, linker),
        store.clone(),
        relay,
        metrics.clone(),
        sending,
    );
    let ops = http::Ops {
        metrics: metrics.clone(),
        store: store.clone(),
        shutdown: shutdown.clone(),
        max_message_size: config.limits.max_message_size,
    };
    let console_settings = settings::console(&config);
    if let Some(why) = console_settings.off_reason() {
        info!("web console off (/ui/ answers 404): {why}");
    } else {
        info!(url = %format!("http://{http_addr}/ui/"), "web console on");
    }
    let console = console::router(console_settings, store.clone(), shutdown.clone());
    let worker_task = tokio::spawn(worker.run(tracker.clone(), shutdown.clone()));
    // HTTP stays up through the drain so /readyz can say "shutting down"
    // and the API can answer 503; it stops once the drain is over.
    let http_stop = CancellationToken::new();
    let http_shutdown = http_stop.clone();
    let http_limits = config.http_limits;
    let http_task = tokio::spawn(async move {
        let app = http::router(dev_inbox, api_state, ops);
        let app = match console {
            Some(ui) => app.merge(ui),
            None => app,
        };
        http::serve::serve(listeners.http, app, http_limits, http_shutdown).await;
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
