//! Intake: the one way a message enters the spool, used by SMTP `DATA`,
//! the API's `POST /v1/messages` and the worker's delivery events.
//!
//! accept ([`Intake::accept`]: the file is opened with its envelope, so a
//! full disk is refused before any content is taken) → write (streamed, or
//! all at once) → commit ([`Incoming::commit`]: durable, the caller may now
//! answer `250` / `202`) → schedule ([`Committed::schedule`]: every
//! delivery is due now). A message dropped before its commit leaves
//! nothing behind.
//!
//! Committing and scheduling are two steps so that what the first attempt
//! will overwrite (the API's `queued` status record) can be written in
//! between, never after that attempt.

use super::store::Writer;
use super::{Envelope, Error, JobKey, Result, Store, now_ms};

/// An `Idempotency-Key` record to commit with its message.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The record's name (unique per key and API key).
    pub name: String,
    pub record: Vec<u8>,
    /// How long a key is remembered: an older record with this name no
    /// longer counts and is replaced.
    pub ttl: std::time::Duration,
}

/// Why a keyed commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another request with this key committed its message first (on any
    /// replica): nothing was committed; answer from its record.
    #[error("the Idempotency-Key was taken by another request")]
    KeyTaken,
    #[error(transparent)]
    Store(#[from] Error),
}

/// The store, as the producers of messages see it.
#[derive(Debug, Clone)]
pub struct Intake {
    store: Store,
}

impl Intake {
    pub(super) fn new(store: Store) -> Intake {
        Intake { store }
    }

    /// Opens a message: its envelope is written first, the content follows
    /// with [`Incoming::write`].
    pub async fn accept(&self, envelope: Envelope) -> Result<Incoming> {
        let writer = self.store.create(&envelope).await?;
        Ok(Incoming {
            writer,
            envelope,
            store: self.store.clone(),
        })
    }

    /// The whole path for content at hand: accept, write `content`, commit,
    /// schedule.
    pub async fn submit(&self, envelope: Envelope, content: &[u8]) -> Result<Envelope> {
        let mut incoming = self.accept(envelope).await?;
        incoming.write(content).await?;
        Ok(incoming.commit().await?.schedule())
    }
}

/// A message being received.
pub struct Incoming {
    writer: Writer,
    envelope: Envelope,
    store: Store,
}

impl Incoming {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write(bytes).await
    }

    /// Makes the message durable: when this returns `Ok` it survives a
    /// crash (the file renamed into `msg/` and synced, or the database
    /// transaction committed).
    pub async fn commit(self) -> Result<Committed> {
        match self.commit_keyed(None).await {
            Ok(c) => Ok(c),
            Err(CommitError::Store(e)) => Err(e),
            Err(CommitError::KeyTaken) => unreachable!("no key to take"),
        }
    }

    /// [`Incoming::commit`] together with its idempotency record, which
    /// counts only once the message committed (see `Writer::commit`).
    pub async fn commit_keyed(
        self,
        key: Option<KeyRecord>,
    ) -> std::result::Result<Committed, CommitError> {
        self.writer.commit(&self.store, key).await?;
        Ok(Committed {
            envelope: self.envelope,
            store: self.store,
        })
    }
}

/// A durable message, not yet scheduled.
#[must_use = "a committed message is only delivered once scheduled (or after a restart)"]
pub struct Committed {
    envelope: Envelope,
    store: Store,
}

impl Committed {
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Runs `prepare` on the content as committed and its stored
    /// verdicts (`auth/`), on the blocking pool (a sync route's payload is
    /// built from them before the reply).
    pub async fn with_content<T: Send + 'static>(
        &self,
        prepare: impl FnOnce(&Envelope, Vec<u8>, Option<Vec<u8>>) -> T + Send + 'static,
    ) -> Result<T> {
        // Delivery 0 may not exist (a message for sync routes only): its
        // state then reads as fresh, and only the content matters here.
        let key = JobKey {
            id: self.envelope.id.clone(),
            index: 0,
        };
        let (_, _, prepared) = self
            .store
            .load_with(&key, move |env, _, raw, auth| prepare(env, raw, auth))
            .await?;
        Ok(prepared)
    }

    /// Takes the acceptance back: the message and its records leave the
    /// store, and nothing of it is scheduled (a sync route or DMARC
    /// refused it, or it has no delivery to make). Scheduling it afterwards does nothing useful.
    pub async fn withdraw(&self) -> Result<()> {
        self.store
            .withdraw(&self.envelope.id, self.envelope.deliveries.len())
            .await
    }

    /// Keeps the attachments a sync route's payload links, until `expires`
    /// (unix s), before that payload is sent (see [`Store::keep`]).
    pub async fn keep(&self, parts: Vec<super::KeptPart>, expires: u64) -> Result<()> {
        self.store.keep(&self.envelope.id, parts, expires).await
    }

    /// The committed content, read back from the store (the caller does
    /// not keep a copy while receiving).
    pub async fn content(&self) -> Result<Vec<u8>> {
        self.store.read_message(&self.envelope.id).await
    }

    /// Writes a record of this message (`dir`/`<id>.json`), durably,
    /// before it is scheduled; removed with the message.
    pub async fn attach(&self, dir: &'static str, bytes: Vec<u8>) -> Result<()> {
        let name = format!("{}.json", self.envelope.id);
        self.store.write_record(dir, &name, bytes).await
    }

    /// Every delivery of the message is due now; returns its envelope.
    pub fn schedule(self) -> Envelope {
        let now = now_ms();
        for index in 0..self.envelope.deliveries.len() {
            self.store.schedule_fresh(
                JobKey {
                    id: self.envelope.id.clone(),
                    index,
                },
                now,
            );
        }
        self.envelope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::new_id;

    fn envelope(deliveries: usize) -> Envelope {
        crate::spool::tests::envelope(&new_id(), deliveries)
    }

    fn intake() -> (tempfile::TempDir, Intake, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open_file(dir.path(), false).unwrap();
        (dir, store.intake(), store)
    }

    #[tokio::test]
    async fn committed_then_scheduled_once_per_delivery() {
        let (dir, intake, store) = intake();
        let env = envelope(2);
        let id = env.id.clone();
        let mut incoming = intake.accept(env).await.unwrap();
        incoming.write(b"Subject: a\r\n").await.unwrap();
        incoming.write(b"\r\nbody\r\n").await.unwrap();
        let committed = incoming.commit().await.unwrap();
        // durable, not yet due
        assert_eq!(crate::spool::pending_on_disk(dir.path()).unwrap().len(), 1);
        assert_eq!(store.scheduled().await, 0);
        assert_eq!(committed.schedule().id, id);
        let mut due = Vec::new();
        while let Ok(lease) = store.claim(now_ms()).await {
            assert_eq!(lease.key().id, id);
            due.push(lease.key().index);
        }
        assert_eq!(due, [0, 1]);
        let key = JobKey { id, index: 0 };
        let (_, _, raw) = store.load_with(&key, |_, _, raw, _| raw).await.unwrap();
        assert_eq!(raw, b"Subject: a\r\n\r\nbody\r\n");
    }

    #[tokio::test]
    async fn dropped_before_commit_leaves_nothing() {
        let (dir, intake, store) = intake();
        let mut incoming = intake.accept(envelope(1)).await.unwrap();
        incoming.write(b"partial").await.unwrap();
        drop(incoming);
        for sub in ["msg", "tmp"] {
            assert_eq!(std::fs::read_dir(dir.path().join(sub)).unwrap().count(), 0);
        }
        assert!(
            crate::spool::pending_on_disk(dir.path())
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.scheduled().await, 0);
    }

    #[tokio::test]
    async fn withdrawn_messages_leave_nothing_and_read_before() {
        let (dir, intake, store) = intake();
        let mut incoming = intake.accept(envelope(2)).await.unwrap();
        incoming.write(b"Subject: w\r\n\r\nx\r\n").await.unwrap();
        let committed = incoming.commit().await.unwrap();
        let len = committed.with_content(|_, raw, _| raw.len()).await.unwrap();
        assert_eq!(len, 17);
        committed.withdraw().await.unwrap();
        assert_eq!(crate::spool::pending_on_disk(dir.path()).unwrap().len(), 0);
        assert_eq!(store.scheduled().await, 0);
    }

    #[tokio::test]
    async fn a_message_without_deliveries_is_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open_file(dir.path(), false).unwrap();
            let mut incoming = store.intake().accept(envelope(0)).await.unwrap();
            incoming.write(b"x").await.unwrap();
            // committed, then the process dies before the sync answer
            drop(incoming.commit().await.unwrap());
        }
        let (_, report) = Store::open_file(dir.path(), false).unwrap();
        assert_eq!(report.messages, 0);
        assert_eq!(crate::spool::pending_on_disk(dir.path()).unwrap().len(), 0);
    }

    #[tokio::test]
    async fn submit_is_the_whole_path() {
        let (_dir, intake, store) = intake();
        let env = intake.submit(envelope(1), b"{}").await.unwrap();
        let lease = store.claim(now_ms()).await.unwrap();
        assert_eq!(
            lease.key(),
            &JobKey {
                id: env.id,
                index: 0
            }
        );
    }
}
