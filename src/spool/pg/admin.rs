//! The operator's view and changes in the shared store (`/v1/deliveries`,
//! retention, readiness): every replica lists, retries and deletes the same
//! deliveries. A change ends any lease on the delivery (it bumps
//! `lease_token`), so an attempt in flight on any replica cannot write its
//! outcome over it.

use std::time::Duration;

use tokio_postgres::Row;

use super::messages::{job_state, parse_json};
use super::{PgStore, connect, db, idx, jobs, state_word};
use crate::spool::{Change, DeliveryInfo, DeliveryState, Error, JobKey, Result, State, now_ms};

/// A job with what `/v1/deliveries` shows of its message.
const SELECT_INFO: &str = "SELECT j.message_id, j.idx, m.envelope->>'received_at',
        (m.envelope->'deliveries'->j.idx)::text,
        j.state, j.attempts, j.next_at, j.last_error, j.recipients::text, j.history::text
     FROM jobs j JOIN messages m ON m.id = j.message_id";

/// How long the readiness probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

fn info(row: &Row) -> Result<DeliveryInfo> {
    let id: String = row.get(0);
    let delivery: Option<&str> = row.get(3);
    let delivery = parse_json(&id, delivery.unwrap_or("null"))?;
    Ok(DeliveryInfo {
        key: JobKey {
            index: row.get::<_, i32>(1).max(0) as usize,
            id: id.clone(),
        },
        received_at: row.get::<_, Option<String>>(2).unwrap_or_default(),
        delivery,
        state: job_state(&id, row, 4)?,
    })
}

impl PgStore {
    /// Deliveries in `states`, in id order after `after`; at most `limit`,
    /// and whether more follow.
    pub async fn list_deliveries(
        &self,
        states: Vec<State>,
        after: Option<JobKey>,
        limit: usize,
    ) -> Result<(Vec<DeliveryInfo>, bool)> {
        let words: Vec<&str> = states.into_iter().map(state_word).collect();
        let (after_id, after_idx) = match &after {
            Some(k) => (k.id.clone(), idx(k.index)),
            None => (String::new(), -1),
        };
        let want = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "{SELECT_INFO} WHERE m.committed AND j.state = ANY($1)
                       AND (j.message_id, j.idx) > ($2, $3)
                     ORDER BY j.message_id, j.idx LIMIT $4"
                ),
                &[&words, &after_id, &after_idx, &want],
            )
            .await
            .map_err(db)?;
        let more = rows.len() > limit;
        let out = rows.iter().take(limit).map(info).collect::<Result<_>>()?;
        Ok((out, more))
    }

    /// One delivery, whatever its state.
    pub async fn delivery_info(&self, key: &JobKey) -> Result<Option<DeliveryInfo>> {
        let row = self
            .conn()
            .await?
            .query_opt(
                &format!("{SELECT_INFO} WHERE m.committed AND j.message_id = $1 AND j.idx = $2"),
                &[&key.id, &idx(key.index)],
            )
            .await
            .map_err(db)?;
        row.as_ref().map(info).transpose()
    }

    /// A dead delivery is pending again with no attempts, due now; its
    /// lease (if any) ends.
    pub async fn retry_dead(&self, key: &JobKey) -> Result<Change> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        let Some(state) = lock_job(&tx, key).await? else {
            return Ok(Change::NotFound);
        };
        if state != State::Dead {
            return Ok(Change::WrongState(state));
        }
        // `history` stays: see `DeliveryState::retried`.
        let now = now_ms() as i64;
        tx.execute(
            "UPDATE jobs SET state = 'pending', attempts = 0, next_at = $3, last_error = NULL,
                 recipients = '[]', lease_owner = NULL, lease_until = NULL,
                 lease_token = lease_token + 1, updated_at = now()
             WHERE message_id = $1 AND idx = $2",
            &[&key.id, &idx(key.index), &now],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.wake();
        Ok(Change::Done {
            message_removed: false,
        })
    }

    /// Gives up on a delivery whose state is one of `allowed`: it is done,
    /// and when no delivery of its message is left pending or dead the
    /// message goes.
    pub async fn discard(&self, key: &JobKey, allowed: &[State]) -> Result<Change> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        let change = discard_in(&tx, key, allowed).await?;
        tx.commit().await.map_err(db)?;
        Ok(change)
    }

    /// Discards dead deliveries last changed more than `max_age` ago;
    /// returns them with the state they had. Once across the cluster: a
    /// replica that finds another one sweeping skips (see [`sweeping`]).
    pub async fn sweep_dead(&self, max_age: Duration) -> Result<Vec<(JobKey, DeliveryState)>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        if !sweeping(&tx, Sweep::Dead).await? {
            return Ok(Vec::new());
        }
        let rows = tx
            .query(
                &format!(
                    "{SELECT_INFO} WHERE j.state = 'dead'
                       AND j.updated_at < now() - $1::float8 * interval '1 second'
                     ORDER BY j.message_id, j.idx"
                ),
                &[&max_age.as_secs_f64()],
            )
            .await
            .map_err(db)?;
        let mut removed = Vec::new();
        for row in &rows {
            let found = info(row)?;
            if let Change::Done { .. } = discard_in(&tx, &found.key, &[State::Dead]).await? {
                removed.push((found.key, found.state));
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    /// Removes messages never committed (an interrupted receive whose
    /// writer could not clean up) older than `max_age`, with their chunks;
    /// returns how many. Once across the cluster.
    pub async fn sweep_orphans(&self, max_age: Duration) -> Result<usize> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        if !sweeping(&tx, Sweep::Orphans).await? {
            return Ok(0);
        }
        let n = tx
            .execute(
                "DELETE FROM messages WHERE NOT committed
                   AND created_at < now() - $1::float8 * interval '1 second'",
                &[&max_age.as_secs_f64()],
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n as usize)
    }

    /// Can the store take a message now? The database answers in time.
    pub async fn probe(&self) -> Result<()> {
        connect::check(self.pool(), PROBE_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| Error::Database(e.to_string()))
    }

    /// Age of the oldest committed message not finished, if any.
    pub async fn oldest_age(&self) -> Result<Option<Duration>> {
        let row = self
            .conn()
            .await?
            .query_one(
                "SELECT extract(epoch FROM now() - min(created_at))::float8
                 FROM messages WHERE committed AND finished_at IS NULL",
                &[],
            )
            .await
            .map_err(db)?;
        Ok(row
            .get::<_, Option<f64>>(0)
            .map(|s| Duration::from_secs_f64(s.max(0.0))))
    }
}

/// The sweeps, each under an advisory lock of its own.
#[derive(Debug, Clone, Copy)]
pub(super) enum Sweep {
    Dead,
    Orphans,
    Records,
    Kept,
    History,
}

/// Pure: the advisory lock key of a sweep ("postern" in ASCII, as the
/// migration lock, plus the sweep's number).
fn sweep_lock(sweep: Sweep) -> i64 {
    const BASE: i64 = 0x0070_6f73_7465_726e;
    BASE + 1 + sweep as i64
}

/// Takes `sweep`'s transaction-scoped advisory lock if no other replica
/// holds it: `false` means another replica is running this sweep now, so
/// this one skips it (replicas never sweep the same rows at once, and a
/// sweep runs once across the cluster, whoever gets there).
pub(super) async fn sweeping(tx: &tokio_postgres::Transaction<'_>, sweep: Sweep) -> Result<bool> {
    let row = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1)",
            &[&sweep_lock(sweep)],
        )
        .await
        .map_err(db)?;
    Ok(row.get(0))
}

/// [`PgStore::discard`] in the caller's transaction.
async fn discard_in(
    tx: &tokio_postgres::Transaction<'_>,
    key: &JobKey,
    allowed: &[State],
) -> Result<Change> {
    let Some(state) = lock_job(tx, key).await? else {
        return Ok(Change::NotFound);
    };
    if !allowed.contains(&state) {
        return Ok(Change::WrongState(state));
    }
    tx.execute(
        "UPDATE jobs SET state = 'delivered', lease_owner = NULL, lease_until = NULL,
             lease_token = lease_token + 1, updated_at = now()
         WHERE message_id = $1 AND idx = $2",
        &[&key.id, &idx(key.index)],
    )
    .await
    .map_err(db)?;
    let message_removed = jobs::remove_if_done(tx, &key.id).await?;
    Ok(Change::Done { message_removed })
}

/// Locks the row of `key` (its message committed) and tells its state;
/// `None` when there is no such delivery.
async fn lock_job(tx: &tokio_postgres::Transaction<'_>, key: &JobKey) -> Result<Option<State>> {
    // The message row first, as `finish` takes it: changes to one
    // message's deliveries are serialised, and always in that order.
    let message = tx
        .query_opt(
            "SELECT 1 FROM messages WHERE id = $1 AND committed FOR UPDATE",
            &[&key.id],
        )
        .await
        .map_err(db)?;
    if message.is_none() {
        return Ok(None);
    }
    let row = tx
        .query_opt(
            "SELECT state FROM jobs WHERE message_id = $1 AND idx = $2 FOR UPDATE",
            &[&key.id, &idx(key.index)],
        )
        .await
        .map_err(db)?;
    row.map(|r| super::parse_state(r.get(0))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sweep_has_its_own_lock_apart_from_the_migrations() {
        let keys = [
            Sweep::Dead,
            Sweep::Orphans,
            Sweep::Records,
            Sweep::Kept,
            Sweep::History,
        ]
        .map(sweep_lock);
        let migrate = 0x0070_6f73_7465_726e;
        for (i, k) in keys.iter().enumerate() {
            assert_ne!(*k, migrate);
            assert!(!keys[..i].contains(k), "{keys:?}");
        }
    }
}
