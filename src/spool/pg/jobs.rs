//! Jobs in the shared store: claiming due deliveries with a lease, and
//! writing an attempt's outcome only while that lease holds.
//!
//! The claim (one job per call: the worker claims per free slot):
//!
//! ```sql
//! UPDATE jobs SET lease_owner = $me, lease_until = now() + $lease,
//!                 lease_token = lease_token + 1
//! WHERE (message_id, idx) IN (
//!     SELECT message_id, idx FROM jobs
//!     WHERE state = 'pending' AND next_at <= $now
//!       AND (lease_until IS NULL OR lease_until < now())
//!     ORDER BY next_at, message_id, idx LIMIT 1
//!     FOR UPDATE SKIP LOCKED)
//! RETURNING message_id, idx, lease_token
//! ```
//!
//! `SKIP LOCKED` lets every replica's worker claim at once without
//! waiting on each other; the lease (`lease_until`, on the database's
//! clock) keeps a claimed job from being claimed again until it expires,
//! which is how a dead replica's jobs come back. Every outcome is written
//! `WHERE lease_token = $claimed` and ends the lease (bumping the token):
//! an operator change or a claim after expiry bumped it too, so a stale
//! attempt's outcome is refused ([`Error::LeaseLost`]).
//!
//! Polling alone is correct (PgBouncer in transaction mode breaks
//! `LISTEN`): an idle worker claims again every [`super::POLL`], and this
//! replica's own commits wake it at once.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{PgStore, db, idx, state_word};
use crate::spool::{DeliveryState, Error, JobKey, Lease, Result};

/// Whether the last claim failed (its error is logged once per outage).
static CLAIM_FAILING: AtomicBool = AtomicBool::new(false);

impl PgStore {
    /// The earliest due job with a lease on it; otherwise when to look
    /// again (always: other replicas commit work too).
    pub async fn claim(&self, now: u64) -> std::result::Result<Lease, Option<u64>> {
        let again = Some(now + super::POLL.as_millis() as u64);
        match self.try_claim(now).await {
            Ok(found) => {
                if CLAIM_FAILING.swap(false, Ordering::Relaxed) {
                    tracing::info!("claiming deliveries from the database again");
                }
                found.ok_or(again)
            }
            Err(e) => {
                if !CLAIM_FAILING.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "cannot claim deliveries from the database; retrying");
                }
                Err(again)
            }
        }
    }

    async fn try_claim(&self, now: u64) -> Result<Option<Lease>> {
        let c = self.conn().await?;
        let lease_ms = self.inner.lease.as_secs_f64() * 1000.0;
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let row = c
            .query_opt(
                "UPDATE jobs SET lease_owner = $1,
                     lease_until = now() + $2::float8 * interval '1 millisecond',
                     lease_token = lease_token + 1
                 WHERE (message_id, idx) IN (
                     SELECT message_id, idx FROM jobs
                     WHERE state = 'pending' AND next_at <= $3
                       AND (lease_until IS NULL OR lease_until < now())
                     ORDER BY next_at, message_id, idx LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING message_id, idx, lease_token",
                &[&self.inner.owner, &lease_ms, &now],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| {
            let key = JobKey {
                id: r.get(0),
                index: r.get::<_, i32>(1).max(0) as usize,
            };
            let token = r.get(2);
            self.granted().insert(key.clone(), token);
            Lease::row(key, token)
        }))
    }

    /// Deliveries due at `now` and not leased.
    pub async fn due(&self, now: u64) -> Result<usize> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let row = self
            .conn()
            .await?
            .query_one(
                "SELECT count(*) FROM jobs WHERE state = 'pending' AND next_at <= $1
                   AND (lease_until IS NULL OR lease_until < now())",
                &[&now],
            )
            .await
            .map_err(db)?;
        Ok(row.get::<_, i64>(0).max(0) as usize)
    }

    /// Deliveries pending and not leased.
    pub async fn scheduled(&self) -> Result<usize> {
        let c = self.conn().await?;
        let row = c
            .query_one(
                "SELECT count(*) FROM jobs WHERE state = 'pending'
                   AND (lease_until IS NULL OR lease_until < now())",
                &[],
            )
            .await
            .map_err(db)?;
        Ok(row.get::<_, i64>(0).max(0) as usize)
    }

    /// Delivery `key`, whose attempt here ended, is due at `due`: a job
    /// this replica leased and left without an outcome (parked behind its
    /// endpoint, or its load failed) is released at that time. Only the
    /// lease this replica was granted last is released (by its token): a
    /// no-op once an outcome was written (it set the due time and ended
    /// the lease), or after any later claim, here or on another replica.
    pub fn schedule(&self, key: JobKey, due: u64) {
        let Some(token) = self.granted().remove(&key) else {
            return self.wake();
        };
        let this = self.clone();
        tokio::spawn(async move {
            let due = i64::try_from(due).unwrap_or(i64::MAX);
            let released = async {
                this.conn()
                    .await?
                    .execute(
                        "UPDATE jobs SET next_at = $3, lease_owner = NULL, lease_until = NULL,
                             lease_token = lease_token + 1
                         WHERE message_id = $1 AND idx = $2 AND state = 'pending'
                           AND lease_token = $4",
                        &[&key.id, &idx(key.index), &due, &token],
                    )
                    .await
                    .map_err(db)
            };
            if let Err(e) = released.await {
                // The lease then ends at its expiry instead.
                tracing::warn!(message_id = %key.id, delivery = key.index, error = %e, "could not reschedule a delivery");
            }
            this.wake();
        });
    }

    /// Whether the row still carries `lease`'s token.
    pub async fn holds(&self, lease: &Lease) -> Result<bool> {
        let Some(token) = lease.row_token() else {
            return Ok(false);
        };
        let key = lease.key();
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT 1 FROM jobs WHERE message_id = $1 AND idx = $2 AND lease_token = $3",
                &[&key.id, &idx(key.index), &token],
            )
            .await
            .map_err(db)?;
        Ok(row.is_some())
    }

    /// An attempt's outcome, written only while `lease` holds; ends it.
    pub async fn write_state(&self, lease: &Lease, state: &DeliveryState) -> Result<()> {
        let key = lease.key();
        let token = self.forget(lease)?;
        let recipients = serde_json::to_string(&state.recipients).expect("recipients serialise");
        let history = serde_json::to_string(&state.history).expect("history serialises");
        let attempts = i32::try_from(state.attempts).unwrap_or(i32::MAX);
        let next_at = i64::try_from(state.next_at).unwrap_or(i64::MAX);
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE jobs SET state = $3, attempts = $4, next_at = $5, last_error = $6,
                     recipients = $7::text::jsonb, history = $8::text::jsonb,
                     lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1,
                     updated_at = now()
                 WHERE message_id = $1 AND idx = $2 AND lease_token = $9",
                &[
                    &key.id,
                    &idx(key.index),
                    &state_word(state.state),
                    &attempts,
                    &next_at,
                    &state.last_error,
                    &recipients,
                    &history,
                    &token,
                ],
            )
            .await
            .map_err(db)?;
        held(lease, n)
    }

    /// The delivery `lease` holds is done (`done`: its final state, kept
    /// with the history); when it was the last one of its message, the
    /// message (chunks, jobs) goes, or is kept as finished. Refused once
    /// the lease is gone.
    pub async fn finish(
        &self,
        lease: &Lease,
        deliveries: usize,
        done: &DeliveryState,
    ) -> Result<()> {
        if self.keeps_history() {
            return self.finish_kept(lease, done).await;
        }
        let key = lease.key();
        let token = self.forget(lease)?;
        let mut c = self.conn().await?;
        if deliveries <= 1 {
            // One delivery: done means gone, in one statement.
            let n = c
                .execute(
                    "DELETE FROM messages WHERE id = $1 AND EXISTS (
                         SELECT 1 FROM jobs WHERE message_id = $1 AND idx = $2
                           AND lease_token = $3)",
                    &[&key.id, &idx(key.index), &token],
                )
                .await
                .map_err(db)?;
            return held(lease, n);
        }
        let tx = c.transaction().await.map_err(db)?;
        // The message row's lock serialises the finishes of its
        // deliveries, so the last one (on whichever replica) sees the
        // others done and removes the message.
        tx.execute(
            "SELECT 1 FROM messages WHERE id = $1 FOR UPDATE",
            &[&key.id],
        )
        .await
        .map_err(db)?;
        let n = tx
            .execute(
                "UPDATE jobs SET state = 'delivered', lease_owner = NULL, lease_until = NULL,
                     lease_token = lease_token + 1, updated_at = now()
                 WHERE message_id = $1 AND idx = $2 AND lease_token = $3",
                &[&key.id, &idx(key.index), &token],
            )
            .await
            .map_err(db)?;
        held(lease, n)?;
        remove_if_done(&tx, &key.id).await?;
        tx.commit().await.map_err(db)
    }
}

/// Removes message `id` when none of its jobs is pending or dead; whether
/// it did. The caller holds the message row's lock.
pub(super) async fn remove_if_done(tx: &tokio_postgres::Transaction<'_>, id: &str) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM messages WHERE id = $1 AND finished_at IS NULL AND NOT EXISTS (
                 SELECT 1 FROM jobs WHERE message_id = $1 AND state <> 'delivered')",
            &[&id],
        )
        .await
        .map_err(db)?;
    Ok(n > 0)
}

impl PgStore {
    /// The token of `lease`, for the outcome write that ends it: this
    /// replica no longer has it to release.
    pub(super) fn forget(&self, lease: &Lease) -> Result<i64> {
        let token = lease
            .row_token()
            .ok_or_else(|| Error::LeaseLost(lease.key().id.clone(), lease.key().index))?;
        let mut granted = self.granted();
        if granted.get(lease.key()) == Some(&token) {
            granted.remove(lease.key());
        }
        Ok(token)
    }
}

/// Pure: an outcome write that changed no row found its lease gone.
pub(super) fn held(lease: &Lease, rows: u64) -> Result<()> {
    if rows == 0 {
        Err(Error::LeaseLost(lease.key().id.clone(), lease.key().index))
    } else {
        Ok(())
    }
}
