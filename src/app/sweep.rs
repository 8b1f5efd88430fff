//! The hourly clean-up of the spool's expired records, kept attachments
//! whose links have expired, and old dead deliveries, run by the wiring
//! for as long as the server runs. With the shared store every replica
//! runs it; each sweep takes an advisory lock in the database, so
//! replicas never sweep at once.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::spool::{self, Store};
use crate::{api, telemetry};

/// An uncommitted message this old is an orphan: no receive takes that
/// long (`POSTERN_SMTP_SESSION_TIMEOUT` is 30 minutes by default).
const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Removes finished messages kept longer than `POSTERN_HISTORY_RETENTION`,
/// at start and then every quarter of it (at least every second, at most
/// hourly: a short retention is swept close to its end).
pub(super) async fn history(
    store: Store,
    retention: std::time::Duration,
    shutdown: CancellationToken,
) {
    let every = (retention / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(3600),
    );
    loop {
        match store.sweep_history(retention).await {
            Ok(0) => {}
            Ok(n) => info!(
                messages = n,
                "finished messages older than POSTERN_HISTORY_RETENTION removed"
            ),
            Err(e) => warn!(error = %e, "could not sweep the message history"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Removes expired status and idempotency records, kept attachments
/// whose links have expired, and dead deliveries older than
/// `POSTERN_DEAD_RETENTION`, at start and hourly.
pub(super) async fn run(
    store: Store,
    retention: std::time::Duration,
    dead_retention: std::time::Duration,
    metrics: Arc<telemetry::Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        match store.sweep_dead(dead_retention).await {
            Ok(removed) => {
                for (key, state) in removed {
                    metrics.dead_removed.inc();
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
        let a = store
            .sweep(spool::RECORDS_OUTBOX, retention)
            .await
            .unwrap_or(0);
        let b = store
            .sweep(spool::RECORDS_IDEM, api::idempotency::TTL)
            .await
            .unwrap_or(0);
        let c = store
            .sweep_kept(spool::now_ms() / 1000)
            .await
            .unwrap_or_else(|e| {
                warn!(error = %e, "could not sweep kept attachments");
                0
            });
        match store.sweep_orphans(ORPHAN_AGE).await {
            Ok(0) => {}
            Ok(n) => info!(
                messages = n,
                "uncommitted messages of interrupted receives removed"
            ),
            Err(e) => warn!(error = %e, "could not sweep uncommitted messages"),
        }
        match store.move_out_stuck().await {
            Ok(0) => {}
            Ok(n) => info!(
                messages = n,
                "pending messages moved from the oldest log segment to files, so finished segments can go"
            ),
            Err(e) => warn!(error = %e, "could not move pending messages out of the log"),
        }
        if a + b + c > 0 {
            info!(
                status_records = a,
                idempotency_records = b,
                kept_attachments = c,
                "expired records removed"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
