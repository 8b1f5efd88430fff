//! Messages in the shared store: accepting one (streamed in chunk rows),
//! committing it with its jobs, loading it for an attempt.
//!
//! # Why chunk rows
//!
//! The content is stored as `message_chunks` rows of up to [`CHUNK`]
//! bytes, written as the message arrives: a large message never sits in
//! memory whole, and no pooled connection is held while a slow client
//! sends (a connection is taken per chunk, for one short statement).
//! `COPY` would need one connection (and one open transaction) for the
//! whole transfer, which a pool of ten cannot give fifty slow SMTP
//! clients; large objects live outside the table, so `ON DELETE CASCADE`
//! and plain `DELETE` would not remove them (`lo_unlink` and `vacuumlo`
//! would be part of every removal) and they are not replicated by logical
//! replication. Chunks are plain rows: deleted with their message,
//! streamed back in order, replicated like everything else.
//!
//! A message up to [`CHUNK`] (nearly all mail) is written by the commit
//! alone: one transaction inserts the message, its one chunk and its jobs.
//! A larger one has its first chunks written ahead under an uncommitted
//! `messages` row (`committed = false`): those inserts run with
//! `synchronous_commit` off, because the commit that makes the message
//! visible flushes the write-ahead log up to its own record, so those
//! chunks are durable by then too. An interrupted receive leaves only
//! that uncommitted row and its chunks: removed when the writer is
//! dropped, or else by the orphan sweep.

use deadpool_postgres::Transaction;

use super::{PgStore, db, idx};
use crate::spool::{
    CommitError, DeliveryState, Envelope, Error, JobKey, KeyRecord, Result, State, history,
};

/// Content bytes per chunk row (and what a writer buffers at most).
pub const CHUNK: usize = 256 * 1024;

/// A message being received into the shared store.
pub(crate) struct Writer {
    store: PgStore,
    envelope: Envelope,
    buf: Vec<u8>,
    /// Chunks already written (under an uncommitted row).
    written: i32,
    size: u64,
    committed: bool,
}

impl PgStore {
    /// Starts a message; nothing reaches the database before [`CHUNK`]
    /// bytes or the commit.
    pub fn create(&self, envelope: &Envelope) -> Writer {
        Writer {
            store: self.clone(),
            envelope: envelope.clone(),
            buf: Vec::new(),
            written: 0,
            size: 0,
            committed: false,
        }
    }

    /// The size of a committed message (0 when it is gone).
    pub async fn message_size(&self, id: &str) -> Result<u64> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT size FROM messages WHERE id = $1 AND committed",
                &[&id],
            )
            .await
            .map_err(db)?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    /// A committed message, the state of one of its deliveries, and
    /// `prepare` run on its content on the blocking pool. A message that
    /// is gone is `Io(NotFound)`, as with the file spool.
    pub async fn load_with<T: Send + 'static>(
        &self,
        key: &JobKey,
        prepare: impl FnOnce(&Envelope, &DeliveryState, Vec<u8>, Option<Vec<u8>>) -> T + Send + 'static,
    ) -> Result<(Envelope, DeliveryState, T)> {
        let c = self.conn().await?;
        // One round trip: a row per chunk, in order, each with the
        // envelope and the job (a few hundred bytes again per 256 KiB).
        let load = c
            .prepare_cached(
                "SELECT m.envelope::text, m.size, j.state, j.attempts, j.next_at, j.last_error,
                        j.recipients::text, j.history::text, a.record, ch.bytes
                 FROM messages m
                 LEFT JOIN jobs j ON j.message_id = m.id AND j.idx = $2
                 LEFT JOIN auth_results a ON a.message_id = m.id
                 LEFT JOIN message_chunks ch ON ch.message_id = m.id
                 WHERE m.id = $1 AND m.committed
                 ORDER BY ch.seq",
            )
            .await
            .map_err(db)?;
        let rows = c
            .query(&load, &[&key.id, &idx(key.index)])
            .await
            .map_err(db)?;
        drop(c);
        let Some(row) = rows.first() else {
            return Err(Error::Io(std::io::ErrorKind::NotFound.into()));
        };
        let envelope: Envelope = parse_json(&key.id, row.get(0))?;
        let size: i64 = row.get(1);
        let state = match row.get::<_, Option<String>>(2) {
            Some(_) => job_state(&key.id, row, 2)?,
            // Only a message without deliveries (sync routes only) reads
            // as fresh; a delivery whose job is gone is gone.
            None if envelope.deliveries.is_empty() => DeliveryState::fresh(),
            None => return Err(Error::Io(std::io::ErrorKind::NotFound.into())),
        };
        let auth: Option<Vec<u8>> = row.get(8);
        let mut raw = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for row in &rows {
            if let Some(bytes) = row.get::<_, Option<&[u8]>>(9) {
                raw.extend_from_slice(bytes);
            }
        }
        drop(rows);
        super::super::blocking(move || {
            let prepared = prepare(&envelope, &state, raw, auth);
            Ok((envelope, state, prepared))
        })
        .await
    }

    /// The content of committed message `id`.
    pub async fn read_message(&self, id: &str) -> Result<Vec<u8>> {
        let c = self.conn().await?;
        let Some(row) = c
            .query_opt(
                "SELECT size FROM messages WHERE id = $1 AND committed",
                &[&id],
            )
            .await
            .map_err(db)?
        else {
            return Err(Error::Io(std::io::ErrorKind::NotFound.into()));
        };
        content(&c, id, row.get(0)).await
    }

    /// Removes committed message `id` that was never scheduled, with its
    /// chunks, jobs and verdicts (cascade), in one statement.
    pub async fn withdraw(&self, id: &str) -> Result<()> {
        self.conn()
            .await?
            .execute("DELETE FROM messages WHERE id = $1", &[&id])
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Whether message `id` was committed: it is in the store, or (once
    /// delivered) its status record is.
    pub async fn is_committed(&self, id: &str) -> Result<bool> {
        if !crate::spool::is_message_id(id) {
            return Ok(false);
        }
        let c = self.conn().await?;
        let row = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1 AND committed)
                     OR EXISTS (SELECT 1 FROM outbox WHERE name = $1 || '.json')",
                &[&id],
            )
            .await
            .map_err(db)?;
        Ok(row.get(0))
    }
}

impl Writer {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK {
                self.spill().await?;
            }
        }
        Ok(())
    }

    /// Writes the buffered chunk ahead of the commit (the first one with
    /// the uncommitted message row).
    async fn spill(&mut self) -> Result<()> {
        let mut c = self.store.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        tx.batch_execute("SET LOCAL synchronous_commit TO off")
            .await
            .map_err(db)?;
        if self.written == 0 {
            insert_message(&tx, &self.envelope, false, 0, &self.buf).await?;
        }
        insert_chunk(&tx, &self.envelope.id, self.written, &self.buf).await?;
        tx.commit().await.map_err(db)?;
        self.size += self.buf.len() as u64;
        self.written += 1;
        self.buf.clear();
        Ok(())
    }

    /// Commits the message and its jobs (every delivery pending, due now)
    /// in one transaction, with `key` when given; when this returns `Ok`
    /// the message is durable and visible to every replica.
    pub async fn commit(mut self, key: Option<KeyRecord>) -> std::result::Result<(), CommitError> {
        let id = self.envelope.id.clone();
        let size = self.size + self.buf.len() as u64;
        let mut c = self.store.conn().await?;
        let tx = c.transaction().await.map_err(db)?;
        // Durable before the caller answers, whatever the server default.
        tx.batch_execute("SET LOCAL synchronous_commit TO on")
            .await
            .map_err(db)?;
        if let Some(key) = &key {
            let inserted = tx
                .execute(
                    // A key past its lifetime and not swept yet is taken over.
                    "INSERT INTO idempotency_keys (name, record) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, created_at = now()
                     WHERE idempotency_keys.created_at < now() - $3::float8 * interval '1 second'",
                    &[&key.name, &key.record, &key.ttl.as_secs_f64()],
                )
                .await
                .map_err(db)?;
            if inserted == 0 {
                return Err(CommitError::KeyTaken);
            }
        }
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        if self.written == 0 {
            insert_message(&tx, &self.envelope, true, size, &self.buf).await?;
        } else {
            tx.execute(
                "UPDATE messages SET committed = true, size = $2 WHERE id = $1",
                &[&id, &size],
            )
            .await
            .map_err(db)?;
        }
        if !self.buf.is_empty() || self.written == 0 {
            insert_chunk(&tx, &id, self.written, &self.buf).await?;
        }
        let deliveries = i32::try_from(self.envelope.deliveries.len()).unwrap_or(i32::MAX);
        let now = crate::spool::now_ms() as i64;
        let jobs = tx
            .prepare_cached(
                "INSERT INTO jobs (message_id, idx, next_at)
                 SELECT $1, i, $3 FROM generate_series(0, $2 - 1) AS i",
            )
            .await
            .map_err(db)?;
        tx.execute(&jobs, &[&id, &deliveries, &now])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.committed = true;
        self.store.wake();
        Ok(())
    }
}

impl Drop for Writer {
    /// An uncommitted message with chunks written ahead is removed; if
    /// that fails too (the database is gone), the orphan sweep removes it.
    fn drop(&mut self) {
        if self.committed || self.written == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let id = self.envelope.id.clone();
        runtime.spawn(async move {
            if let Ok(c) = store.conn().await {
                let _ = c
                    .execute(
                        "DELETE FROM messages WHERE id = $1 AND NOT committed",
                        &[&id],
                    )
                    .await;
            }
        });
    }
}

/// Inserts the message row; `start`: the first bytes of its content, for
/// the subject the history lists ([`crate::spool::history`]).
async fn insert_message(
    tx: &Transaction<'_>,
    envelope: &Envelope,
    committed: bool,
    size: i64,
    start: &[u8],
) -> Result<()> {
    let json = serde_json::to_string(envelope).expect("envelope serialises");
    let direction = history::direction_of(envelope).map(|d| d.as_str());
    let subject = history::subject_of(start);
    let insert = tx
        .prepare_cached(
            "INSERT INTO messages (id, envelope, committed, size, direction, subject)
             VALUES ($1, $2::text::jsonb, $3, $4, $5, $6)",
        )
        .await
        .map_err(db)?;
    tx.execute(
        &insert,
        &[&envelope.id, &json, &committed, &size, &direction, &subject],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn insert_chunk(tx: &Transaction<'_>, id: &str, seq: i32, bytes: &[u8]) -> Result<()> {
    let insert = tx
        .prepare_cached("INSERT INTO message_chunks (message_id, seq, bytes) VALUES ($1, $2, $3)")
        .await
        .map_err(db)?;
    tx.execute(&insert, &[&id, &seq, &bytes])
        .await
        .map_err(db)?;
    Ok(())
}

/// A JSON column read as text, or `Corrupt` naming `what`.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(what.into(), e.to_string()))
}

/// A job's [`DeliveryState`] from the six columns at `first`: state,
/// attempts, next_at, last_error, recipients::text, history::text.
pub(super) fn job_state(
    id: &str,
    row: &tokio_postgres::Row,
    first: usize,
) -> Result<DeliveryState> {
    let state: State = super::parse_state(row.get(first))?;
    let attempts = row.get::<_, i32>(first + 1).max(0) as u32;
    let next_at = row.get::<_, i64>(first + 2).max(0) as u64;
    Ok(DeliveryState {
        state,
        attempts,
        next_at: reported_next_at(attempts, next_at),
        last_error: row.get(first + 3),
        recipients: parse_json(id, row.get(first + 4))?,
        history: parse_json(id, row.get(first + 5))?,
    })
}

/// Pure: the `next_at` a delivery shows. Never tried, it is due "now"
/// (0), as the file spool shows a delivery with no state file yet; the
/// row keeps its real due time for the claim's order.
fn reported_next_at(attempts: u32, next_at: u64) -> u64 {
    if attempts == 0 { 0 } else { next_at }
}

/// The chunks of message `id`, in order, as one buffer of `size` bytes.
async fn content(c: &deadpool_postgres::Object, id: &str, size: i64) -> Result<Vec<u8>> {
    let chunks = c
        .prepare_cached("SELECT bytes FROM message_chunks WHERE message_id = $1 ORDER BY seq")
        .await
        .map_err(db)?;
    let chunks = c.query(&chunks, &[&id]).await.map_err(db)?;
    let mut raw = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for chunk in chunks {
        raw.extend_from_slice(chunk.get::<_, &[u8]>(0));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untried_deliveries_show_as_due_now() {
        for (attempts, row, shown) in [(0, 0, 0), (0, 1_700_000_000_000, 0), (1, 5, 5), (3, 0, 0)] {
            assert_eq!(reported_next_at(attempts, row), shown, "{attempts} {row}");
        }
    }
}
