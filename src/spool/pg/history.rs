//! The message history in the shared store (see
//! [`crate::spool::history`] and `migrations/0003_history.sql`): a message
//! whose deliveries are all done keeps its rows with `finished_at` set,
//! until the sweep (once across the cluster) deletes it after
//! `POSTERN_HISTORY_RETENTION`.
//!
//! The list is one statement over a window of at most [`SCAN_LIMIT`]
//! message ids, newest first (the `messages_listed` index; the cursor and
//! the time range bound the ids, the direction is a column), filtered by
//! address, subject and status (computed from the jobs of each message in
//! the window).

use std::time::Duration;

use super::messages::{job_state, parse_json};
use super::{PgStore, db, idx, jobs};
use crate::spool::history::{
    self, Direction, MessageDetail, MessagePage, MessageQuery, MessageSummary, SCAN_LIMIT,
};
use crate::spool::{DeliveryState, Envelope, Lease, Result, State};

/// The window of ids a list call looks at: $1 below (cursor, until), $2
/// from (since), $3 direction, $4 the scan limit.
const WINDOW: &str = "SELECT id FROM messages
     WHERE committed AND direction IS NOT NULL
       AND ($1::text IS NULL OR id < $1) AND ($2::text IS NULL OR id >= $2)
       AND ($3::text IS NULL OR direction = $3)
     ORDER BY id DESC LIMIT $4";

/// A message's status from its jobs (see [`history::status_of`]).
const STATUS: &str = "CASE WHEN bool_or(j.state = 'pending') THEN 'pending'
         WHEN count(*) = 0 OR bool_and(j.state = 'delivered') THEN 'delivered'
         WHEN bool_and(j.state = 'dead') THEN 'dead' ELSE 'partial' END";

/// A delivery done, with its final attempts, while its lease holds ($1
/// message, $2 index, $3 token, $4 attempts, $5 last error, $6 recipients,
/// $7 attempts' history). A literal, for [`FINISH_ONLY`] to build on.
macro_rules! done_job {
    () => {
        "UPDATE jobs SET state = 'delivered', attempts = $4, next_at = 0,
             last_error = $5, recipients = $6::text::jsonb, history = $7::text::jsonb,
             lease_owner = NULL, lease_until = NULL, lease_token = lease_token + 1,
             updated_at = now()
         WHERE message_id = $1 AND idx = $2 AND lease_token = $3"
    };
}

/// See [`done_job`].
const DONE_JOB: &str = done_job!();

/// [`DONE_JOB`] for a message's only delivery, and the message finished
/// with it (kept), or gone (an event message): one statement, committed
/// without waiting for the log flush; how many jobs it changed (0: the
/// lease was gone).
const FINISH_ONLY: &str = concat!(
    "WITH done AS (",
    done_job!(),
    " AND ",
    jobs::async_commit!(),
    "
         RETURNING message_id),
     kept AS (
         UPDATE messages SET finished_at = now()
         WHERE id IN (SELECT message_id FROM done) AND direction IS NOT NULL),
     gone AS (
         DELETE FROM messages
         WHERE id IN (SELECT message_id FROM done) AND direction IS NULL)
     SELECT count(*) FROM done"
);

impl PgStore {
    /// [`PgStore::finish`] when finished messages are kept: the job keeps
    /// its final state and attempts; the last one marks its message
    /// finished (an event message is deleted instead, as without history).
    /// Committed without waiting for the log flush (see `jobs`).
    pub(super) async fn finish_kept(
        &self,
        lease: &Lease,
        deliveries: usize,
        done: &DeliveryState,
    ) -> Result<()> {
        let key = lease.key();
        let token = self.forget(lease)?;
        let recipients = serde_json::to_string(&done.recipients).expect("recipients serialise");
        let attempts_json = serde_json::to_string(&done.history).expect("history serialises");
        let attempts = i32::try_from(done.attempts).unwrap_or(i32::MAX);
        let mut c = self.conn().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &key.id,
            &idx(key.index),
            &token,
            &attempts,
            &done.last_error,
            &recipients,
            &attempts_json,
        ];
        if deliveries <= 1 {
            // Its only delivery: no other finish to wait for, one statement.
            let finish = c.prepare_cached(FINISH_ONLY).await.map_err(db)?;
            let n: i64 = c.query_one(&finish, &params).await.map_err(db)?.get(0);
            return super::jobs::held(lease, n.max(0) as u64);
        }
        let tx = c.transaction().await.map_err(db)?;
        tx.batch_execute("SET LOCAL synchronous_commit TO off")
            .await
            .map_err(db)?;
        // The message row's lock serialises the finishes of its
        // deliveries, as in `finish`.
        tx.execute(
            "SELECT 1 FROM messages WHERE id = $1 FOR UPDATE",
            &[&key.id],
        )
        .await
        .map_err(db)?;
        let done_job = tx.prepare_cached(DONE_JOB).await.map_err(db)?;
        let n = tx.execute(&done_job, &params).await.map_err(db)?;
        super::jobs::held(lease, n)?;
        tx.execute(
            "UPDATE messages SET finished_at = now()
             WHERE id = $1 AND direction IS NOT NULL AND NOT EXISTS (
                 SELECT 1 FROM jobs WHERE message_id = $1 AND state <> 'delivered')",
            &[&key.id],
        )
        .await
        .map_err(db)?;
        jobs::remove_if_done(&tx, &key.id).await?;
        tx.commit().await.map_err(db)
    }

    /// Deletes messages finished more than `max_age` ago; returns how
    /// many. Once across the cluster.
    pub async fn sweep_history(&self, max_age: Duration) -> Result<usize> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        if !super::admin::sweeping(&tx, super::admin::Sweep::History).await? {
            return Ok(0);
        }
        let n = tx
            .execute(
                "DELETE FROM messages WHERE finished_at IS NOT NULL
                   AND finished_at < now() - $1::float8 * interval '1 second'",
                &[&max_age.as_secs_f64()],
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n as usize)
    }

    /// A page of messages, newest first (see the module docs).
    pub async fn list_messages(&self, q: &MessageQuery) -> Result<MessagePage> {
        let limit = q.page_size();
        let below = q.id_below();
        let from = q.id_from();
        let direction = q.direction.map(Direction::as_str);
        let scan = SCAN_LIMIT as i64;
        let address = q.address.as_deref().map(history::like_pattern);
        let text = q.text.as_deref().map(history::like_pattern);
        let status = q.status.map(|s| s.as_str());
        let want = limit as i64 + 1;
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "WITH w AS ({WINDOW})
                     SELECT m.id, m.envelope->>'received_at', m.envelope->>'mail_from',
                            (m.envelope->'rcpt_to')::text, m.subject, m.size, m.direction,
                            s.status, jsonb_array_length(m.envelope->'deliveries')
                     FROM w JOIN messages m ON m.id = w.id
                     CROSS JOIN LATERAL (SELECT {STATUS} AS status
                                         FROM jobs j WHERE j.message_id = m.id) s
                     WHERE ($5::text IS NULL OR m.envelope->>'mail_from' ILIKE $5
                            OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(m.envelope->'rcpt_to') r
                                       WHERE r ILIKE $5))
                       AND ($6::text IS NULL OR m.subject ILIKE $6)
                       AND ($7::text IS NULL OR s.status = $7)
                     ORDER BY m.id DESC LIMIT $8"
                ),
                &[
                    &below, &from, &direction, &scan, &address, &text, &status, &want,
                ],
            )
            .await
            .map_err(db)?;
        let more = rows.len() > limit;
        let items = rows
            .iter()
            .take(limit)
            .map(|r| {
                let id: String = r.get(0);
                let status = history::MessageStatus::parse(r.get(7))
                    .unwrap_or(history::MessageStatus::Pending);
                Ok(MessageSummary {
                    received_at: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    mail_from: r.get::<_, Option<String>>(2).unwrap_or_default(),
                    rcpt_to: parse_json(&id, r.get::<_, Option<&str>>(3).unwrap_or("[]"))?,
                    subject: r.get(4),
                    size: r.get::<_, i64>(5).max(0) as u64,
                    direction: Direction::parse(r.get(6)).unwrap_or(Direction::Inbound),
                    status,
                    deliveries: r.get::<_, Option<i32>>(8).unwrap_or(0).max(0) as usize,
                    id,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if more {
            items.last().map(|m| m.id.clone())
        } else {
            // A window at the scan limit may have older messages after it.
            let w = c
                .query_one(
                    &format!("SELECT count(*), min(id) FROM ({WINDOW}) w"),
                    &[&below, &from, &direction, &scan],
                )
                .await
                .map_err(db)?;
            (w.get::<_, i64>(0) >= scan)
                .then(|| w.get::<_, Option<String>>(1))
                .flatten()
        };
        Ok(MessagePage { items, next_cursor })
    }

    /// Message `id` with its deliveries; `None` when there is none (or it
    /// is an event).
    pub async fn message_detail(&self, id: &str) -> Result<Option<MessageDetail>> {
        let c = self.conn().await?;
        let Some(row) = c
            .query_opt(
                "SELECT m.envelope::text, m.size, m.subject, a.record
                 FROM messages m LEFT JOIN auth_results a ON a.message_id = m.id
                 WHERE m.id = $1 AND m.committed AND m.direction IS NOT NULL",
                &[&id],
            )
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let envelope: Envelope = parse_json(id, row.get(0))?;
        let Some(direction) = history::direction_of(&envelope) else {
            return Ok(None);
        };
        let jobs = c
            .query(
                "SELECT idx, state, attempts, next_at, last_error, recipients::text, history::text
                 FROM jobs WHERE message_id = $1 ORDER BY idx",
                &[&id],
            )
            .await
            .map_err(db)?;
        let mut states = vec![
            DeliveryState {
                state: State::Delivered,
                ..DeliveryState::fresh()
            };
            envelope.deliveries.len()
        ];
        for j in &jobs {
            let index = j.get::<_, i32>(0).max(0) as usize;
            if let Some(s) = states.get_mut(index) {
                *s = job_state(id, j, 1)?;
            }
        }
        let auth = row
            .get::<_, Option<&[u8]>>(3)
            .and_then(|b| serde_json::from_slice(b).ok());
        let summary = MessageSummary {
            id: id.to_string(),
            received_at: envelope.received_at.clone(),
            direction,
            mail_from: envelope.mail_from.clone(),
            rcpt_to: envelope.rcpt_to.clone(),
            subject: row.get(2),
            size: row.get::<_, i64>(1).max(0) as u64,
            status: history::status_of(states.iter().map(|s| s.state)),
            deliveries: envelope.deliveries.len(),
        };
        let deliveries = history::delivery_details(&envelope, states);
        Ok(Some(MessageDetail {
            summary,
            envelope,
            auth,
            deliveries,
        }))
    }
}
