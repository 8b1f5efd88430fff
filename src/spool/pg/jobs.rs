//! Jobs in the shared store: claiming due deliveries with a lease, and
//! writing an attempt's outcome only while that lease holds.
//!
//! The claim (up to as many jobs per call as the worker has free slots,
//! one round trip for all of them):
//!
//! ```sql
//! UPDATE jobs j SET lease_owner = $me, lease_until = now() + $lease,
//!                   lease_token = $random
//! FROM messages m
//! WHERE m.id = j.message_id AND (j.message_id, j.idx) IN (
//!     SELECT message_id, idx FROM jobs
//!     WHERE state = 'pending' AND next_at <= $now
//!       AND (lease_until IS NULL OR lease_until < now())
//!     ORDER BY next_at, message_id, idx LIMIT $n
//!     FOR UPDATE SKIP LOCKED)
//! RETURNING j.message_id, j.idx, j.lease_token, m.size,
//!           (m.envelope->'deliveries'->j.idx)::text
//! ```
//!
//! The size and the delivery come with the claim so that the worker can
//! reserve memory and wait for room at the delivery's endpoint before it
//! reads the message.
//!
//! `SKIP LOCKED` lets every replica's worker claim at once without
//! waiting on each other; the lease (`lease_until`, on the database's
//! clock) keeps a claimed job from being claimed again until it expires,
//! which is how a dead replica's jobs come back. Every outcome is written
//! `WHERE lease_token = $claimed` and ends the lease (bumping the token):
//! an operator change or a claim after expiry bumped it too, so a stale
//! attempt's outcome is refused ([`Error::LeaseLost`]).
//!
//! Claims and attempt outcomes commit with `synchronous_commit` off
//! ([`async_commit`]): they promise no one anything. If the database
//! crashes before the write-ahead log reaches the disk (within
//! `wal_writer_delay`, 200 ms by default), a claim lost is a job claimable
//! again, and an outcome lost is a delivery made once more: the
//! at-least-once promise, with the same `webhook-id`. What is promised
//! (a message accepted, an operator's change) still commits
//! synchronously. Every hot statement is prepared once per connection
//! (`prepare_cached`), so it costs one round trip, not two.
//!
//! Polling alone is correct (PgBouncer in transaction mode breaks
//! `LISTEN`): an idle worker claims again every [`super::POLL`], and this
//! replica's own commits wake it at once.

use std::sync::atomic::{AtomicBool, Ordering};

/// A condition that, evaluated in a statement's `WHERE`, makes the
/// implicit transaction of that one statement commit without waiting for
/// the write-ahead log flush (`set_config(…, is_local => true)` is `SET
/// LOCAL`, and the commit reads the setting): one round trip, where
/// `BEGIN; SET LOCAL …; …; COMMIT` takes four. Only for writes that promise
/// nothing (see the module docs).
macro_rules! async_commit {
    () => {
        "set_config('synchronous_commit', 'off', true) <> ''"
    };
}
pub(super) use async_commit;

use super::{PgStore, db, idx, state_word};
use crate::spool::{DeliveryState, Error, JobKey, Lease, Result};

/// Whether the last claim failed (its error is logged once per outage).
static CLAIM_FAILING: AtomicBool = AtomicBool::new(false);

/// The claim: see the module docs.
const CLAIM: &str = concat!(
    "UPDATE jobs j SET lease_owner = $1,
         lease_until = now() + $2::float8 * interval '1 millisecond',
         lease_token = $5
     FROM messages m
     WHERE m.id = j.message_id AND (j.message_id, j.idx) IN (
         SELECT message_id, idx FROM jobs
         WHERE state = 'pending' AND next_at <= $3
           AND (lease_until IS NULL OR lease_until < now())
         ORDER BY next_at, message_id, idx LIMIT $4
         FOR UPDATE SKIP LOCKED)
       AND ",
    async_commit!(),
    "
     RETURNING j.message_id, j.idx, j.lease_token, m.size,
               (m.envelope->'deliveries'->j.idx)::text"
);

impl PgStore {
    /// Up to `max` (at least one) of the earliest due jobs, each with a
    /// lease on it; when there are none, when to look again (always:
    /// other replicas commit work too).
    pub async fn claim_batch(
        &self,
        now: u64,
        max: usize,
    ) -> std::result::Result<Vec<Lease>, Option<u64>> {
        let again = Some(now + super::POLL.as_millis() as u64);
        match self.try_claim(now, max.max(1)).await {
            Ok(found) => {
                if CLAIM_FAILING.swap(false, Ordering::Relaxed) {
                    tracing::info!("claiming deliveries from the database again");
                }
                if found.is_empty() {
                    Err(again)
                } else {
                    Ok(found)
                }
            }
            Err(e) => {
                if !CLAIM_FAILING.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "cannot claim deliveries from the database; retrying");
                }
                Err(again)
            }
        }
    }

    async fn try_claim(&self, now: u64, max: usize) -> Result<Vec<Lease>> {
        let held = self.take_released(max);
        if !held.is_empty() {
            return Ok(held);
        }
        let c = self.conn().await?;
        let lease_ms = self.inner.lease.as_secs_f64() * 1000.0;
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let claim = c.prepare_cached(CLAIM).await.map_err(db)?;
        // Random, not the row's token + 1: a claim lost in a database
        // crash (it commits without waiting for the flush) would otherwise
        // leave the old token, and the next claim would hand out the lost
        // one again, to a second attempt that a stale one could not be
        // told apart from.
        let token: i64 = rand::random();
        let rows = c
            .query(&claim, &[&self.inner.owner, &lease_ms, &now, &max, &token])
            .await
            .map_err(db)?;
        let mut granted = self.granted();
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = JobKey {
                    id: r.get(0),
                    index: r.get::<_, i32>(1).max(0) as usize,
                };
                let token = r.get(2);
                let size = r.get::<_, i64>(3).max(0) as u64;
                granted.tokens.insert(key.clone(), (token, size));
                // Unreadable here, it is read with the message (and judged
                // there).
                let delivery = r
                    .get::<_, Option<&str>>(4)
                    .and_then(|d| serde_json::from_str(d).ok());
                Lease::row(key, token, size).with_delivery(delivery)
            })
            .collect())
    }

    /// Delivery `key`, leased here and parked by the endpoint gate, may go
    /// now: the next claim hands it out again from memory, with the lease
    /// it has. Sending it back through the database instead would cost two
    /// writes, and another replica could claim it while this replica's
    /// gate keeps room for it. A delivery parked longer than the lease may
    /// have been claimed elsewhere meanwhile: the lease token decides
    /// whose outcome is written.
    pub fn release(&self, key: JobKey) {
        {
            let mut granted = self.granted();
            if granted.tokens.contains_key(&key) {
                granted.released.push_back(key);
            }
        }
        self.wake();
    }

    /// Up to `max` released deliveries still leased here.
    fn take_released(&self, max: usize) -> Vec<Lease> {
        let mut granted = self.granted();
        let mut leases = Vec::new();
        while leases.len() < max {
            let Some(key) = granted.released.pop_front() else {
                break;
            };
            if let Some(&(token, size)) = granted.tokens.get(&key) {
                leases.push(Lease::row(key, token, size));
            }
        }
        leases
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
        let Some((token, _)) = self.granted().tokens.remove(&key) else {
            return self.wake();
        };
        let this = self.clone();
        tokio::spawn(async move {
            let due = i64::try_from(due).unwrap_or(i64::MAX);
            let released = async {
                let c = this.conn().await?;
                let release = c.prepare_cached(RELEASE).await.map_err(db)?;
                c.execute(&release, &[&key.id, &idx(key.index), &due, &token])
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
        let c = self.conn().await?;
        let outcome = c.prepare_cached(OUTCOME).await.map_err(db)?;
        let n = c
            .execute(
                &outcome,
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
            return self.finish_kept(lease, deliveries, done).await;
        }
        let key = lease.key();
        let token = self.forget(lease)?;
        let mut c = self.conn().await?;
        if deliveries <= 1 {
            // One delivery: done means gone, in one statement.
            let gone = c.prepare_cached(GONE).await.map_err(db)?;
            let n = c
                .execute(&gone, &[&key.id, &idx(key.index), &token])
                .await
                .map_err(db)?;
            return held(lease, n);
        }
        let tx = c.transaction().await.map_err(db)?;
        tx.batch_execute("SET LOCAL synchronous_commit TO off")
            .await
            .map_err(db)?;
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

/// Ends a lease without an outcome (see [`PgStore::schedule`]).
const RELEASE: &str = concat!(
    "UPDATE jobs SET next_at = $3, lease_owner = NULL, lease_until = NULL,
         lease_token = lease_token + 1
     WHERE message_id = $1 AND idx = $2 AND state = 'pending' AND lease_token = $4
       AND ",
    async_commit!()
);

/// An attempt's outcome, while its lease holds (see [`PgStore::write_state`]).
const OUTCOME: &str = concat!(
    "UPDATE jobs SET state = $3, attempts = $4, next_at = $5, last_error = $6,
         recipients = $7::text::jsonb, history = $8::text::jsonb,
         lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1,
         updated_at = now()
     WHERE message_id = $1 AND idx = $2 AND lease_token = $9 AND ",
    async_commit!()
);

/// The only delivery of a message is done: the message goes (its jobs and
/// chunks by cascade), while the lease holds.
const GONE: &str = concat!(
    "DELETE FROM messages WHERE id = $1 AND EXISTS (
         SELECT 1 FROM jobs WHERE message_id = $1 AND idx = $2 AND lease_token = $3)
       AND ",
    async_commit!()
);

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
        if granted.tokens.get(lease.key()).map(|t| t.0) == Some(token) {
            granted.tokens.remove(lease.key());
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
