//! The store interface: the one handle through which SMTP intake, the
//! sending API, the delivery worker, the admin endpoints, readiness and the
//! sweeps reach durable state. No module outside `spool/` knows which
//! backend it talks to.
//!
//! What callers ask for is about messages and deliveries, not files:
//! intake (accept → commit → schedule), claiming due deliveries with a
//! [`Lease`] and writing an attempt's outcome with it, the operator's view
//! and changes (list, retry, delete), small records (API status,
//! idempotency), readiness, and the sweeps. Today's backend is the file
//! spool ([`Spool`] and its in-memory schedule [`Queue`]: a lease is
//! in-process); a shared database backend adds a variant to [`Backend`]
//! and an arm to each method, and its callers do not change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Change, DeliveryInfo, DeliveryState, Envelope, Intake, JobKey, Kept, KeptPart, Lease,
    MessageWriter, Queue, Result, ScanReport, Spool, State,
};

/// The durable store, whichever backend holds it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    /// The spool directory (the embedded default): one process owns it,
    /// due work is scheduled in memory and rebuilt from disk at start.
    File { spool: Spool, queue: Arc<Queue> },
}

impl Store {
    /// The file spool at `root`, scanned: every pending delivery in it is
    /// scheduled at its recorded time. Returns what the scan found.
    pub fn open_file(root: impl Into<PathBuf>, fsync: bool) -> Result<(Store, ScanReport)> {
        let spool = Spool::open(root, fsync)?;
        let report = spool.scan()?;
        let queue = Arc::new(Queue::new());
        for (key, due) in &report.pending {
            queue.push(key.clone(), *due);
        }
        let store = Store {
            backend: Backend::File { spool, queue },
        };
        Ok((store, report))
    }

    /// The producers' way in: accept → write → commit → schedule.
    pub fn intake(&self) -> Intake {
        Intake::new(self.clone())
    }

    /// Starts writing a message (for [`Intake`]): its envelope first.
    pub(super) async fn create(&self, envelope: &Envelope) -> Result<MessageWriter> {
        match &self.backend {
            Backend::File { spool, .. } => spool.create(envelope).await,
        }
    }

    /// The earliest due delivery with a lease on it, or when the next one
    /// is due (`None`: nothing scheduled).
    pub fn claim(&self, now: u64) -> std::result::Result<Lease, Option<u64>> {
        match &self.backend {
            Backend::File { spool, queue } => spool.claim(queue, now),
        }
    }

    /// Resolves when something may have become due (a new schedule).
    pub async fn changed(&self) {
        match &self.backend {
            Backend::File { queue, .. } => queue.changed().await,
        }
    }

    /// Delivery `key` is due at `due` (unix ms).
    pub fn schedule(&self, key: JobKey, due: u64) {
        match &self.backend {
            Backend::File { queue, .. } => queue.push(key, due),
        }
    }

    /// Deliveries scheduled and not claimed.
    pub fn scheduled(&self) -> usize {
        match &self.backend {
            Backend::File { queue, .. } => queue.len(),
        }
    }

    /// The size of a committed message (0 when it is gone).
    pub fn message_size(&self, id: &str) -> Result<u64> {
        match &self.backend {
            Backend::File { spool, .. } => spool.message_size(id),
        }
    }

    /// A message, the state of one of its deliveries, and `prepare` run
    /// on its content and its verdicts record ([`super::RECORDS_AUTH`],
    /// when there is one; see [`Spool::load_with`]).
    pub async fn load_with<T: Send + 'static>(
        &self,
        key: &JobKey,
        prepare: impl FnOnce(&Envelope, &DeliveryState, Vec<u8>, Option<Vec<u8>>) -> T + Send + 'static,
    ) -> Result<(Envelope, DeliveryState, T)> {
        match &self.backend {
            Backend::File { spool, .. } => spool.load_with(key, prepare).await,
        }
    }

    /// Removes committed message `id`, never scheduled (for
    /// [`super::Committed::withdraw`]).
    pub(super) async fn withdraw(&self, id: &str, deliveries: usize) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.withdraw(id, deliveries).await,
        }
    }

    /// The content of committed message `id`, read back (the SMTP stage
    /// checks a message's authenticity after its commit).
    pub async fn read_message(&self, id: &str) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.read_message(id).await,
        }
    }

    /// An attempt's outcome: the new state of the delivery `lease` holds;
    /// refused ([`super::Error::LeaseLost`]) once the lease is gone.
    pub async fn write_state(&self, lease: &Lease, state: &DeliveryState) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.write_state(lease, state).await,
        }
    }

    /// An attempt's outcome: the delivery `lease` holds is done (see
    /// [`Spool::finish`]); refused once the lease is gone.
    pub async fn finish(&self, lease: &Lease, deliveries: usize, had_state: bool) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.finish(lease, deliveries, had_state).await,
        }
    }

    /// Deliveries in `states`, in id order after `after`; at most `limit`,
    /// and whether more follow.
    pub async fn list_deliveries(
        &self,
        states: Vec<State>,
        after: Option<JobKey>,
        limit: usize,
    ) -> Result<(Vec<DeliveryInfo>, bool)> {
        match &self.backend {
            Backend::File { spool, .. } => spool.list_deliveries(states, after, limit).await,
        }
    }

    /// One delivery, whatever its state.
    pub async fn delivery_info(&self, key: &JobKey) -> Result<Option<DeliveryInfo>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.delivery_info(key).await,
        }
    }

    /// A dead delivery is pending again with no attempts, due now; the
    /// caller [`Store::schedule`]s it (after reading what it answers with:
    /// once scheduled it may be delivered and gone at once).
    pub async fn retry_dead(&self, key: &JobKey) -> Result<Change> {
        match &self.backend {
            Backend::File { spool, .. } => spool.retry_dead(key).await,
        }
    }

    /// Gives up on a delivery whose state is one of `allowed`.
    pub async fn discard(&self, key: &JobKey, allowed: &'static [State]) -> Result<Change> {
        match &self.backend {
            Backend::File { spool, .. } => spool.discard(key, allowed).await,
        }
    }

    /// Durably writes a small record ([`super::RECORDS_OUTBOX`],
    /// [`super::RECORDS_IDEM`]).
    pub async fn write_record(&self, dir: &'static str, name: &str, bytes: Vec<u8>) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.write_record(dir, name, bytes).await,
        }
    }

    /// A record, or `None`.
    pub async fn read_record(&self, dir: &'static str, name: &str) -> Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.read_record(dir, name).await,
        }
    }

    /// Whether message `id` was committed (see [`Spool::is_committed`]).
    pub async fn is_committed(&self, id: &str) -> Result<bool> {
        match &self.backend {
            Backend::File { spool, .. } => spool.is_committed(id).await,
        }
    }

    /// Can the store take a message now? `Ok(Some(bytes))`: yes, with that
    /// much room left (when the backend knows).
    pub async fn probe(&self) -> Result<Option<u64>> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || {
                    spool.probe_writable()?;
                    Ok(spool.free_space().ok())
                })
                .await
            }
        }
    }

    /// Age of the oldest message held (pending or dead), if any.
    pub async fn oldest_age(&self) -> Option<Duration> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || Ok(spool.oldest_age()))
                    .await
                    .ok()
                    .flatten()
            }
        }
    }

    /// Removes records in `dir` older than `max_age`; returns how many.
    pub async fn sweep(&self, dir: &'static str, max_age: Duration) -> Result<usize> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || spool.sweep(dir, max_age)).await
            }
        }
    }

    /// Keeps `parts` of message `id` (the attachments its payload links)
    /// until at least `expires` (unix s), whatever becomes of the
    /// message; see [`super::kept`].
    pub async fn keep(&self, id: &str, parts: Vec<KeptPart>, expires: u64) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.keep(id, parts, expires).await,
        }
    }

    /// Kept attachment `index` of message `id`, or `None`.
    pub async fn open_kept(&self, id: &str, index: usize) -> Result<Option<Kept>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.open_kept(id, index).await,
        }
    }

    /// Removes kept attachments whose expiry is at or before `now` (unix
    /// s); returns how many.
    pub async fn sweep_kept(&self, now: u64) -> Result<usize> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || spool.sweep_kept(now)).await
            }
        }
    }

    /// Discards dead deliveries older than `max_age`; returns them.
    pub async fn sweep_dead(&self, max_age: Duration) -> Result<Vec<(JobKey, DeliveryState)>> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || spool.sweep_dead(max_age)).await
            }
        }
    }
}
