//! The store interface: the one handle through which SMTP intake, the
//! sending API, the delivery worker, the admin endpoints, readiness and the
//! sweeps reach durable state. No module outside `spool/` knows which
//! backend it talks to.
//!
//! What callers ask for is about messages and deliveries, not files:
//! intake (accept → commit → schedule), claiming due deliveries with a
//! [`Lease`] and writing an attempt's outcome with it, the operator's view
//! and changes (list, retry, delete), small records (API status,
//! idempotency), readiness, and the sweeps. Two backends: the file spool
//! ([`Spool`] and its in-memory schedule [`Queue`]: a lease is in-process),
//! the embedded default; and the shared PostgreSQL store ([`PgStore`],
//! #12: the schedule is the `jobs` table, a lease is a row's, several
//! replicas serve one queue). Each method has an arm per backend; callers
//! do not know which one they talk to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::pg::PgStore;
use super::{
    Change, CommitError, DeliveryInfo, DeliveryState, Envelope, Intake, JobKey, Kept, KeptPart,
    KeyRecord, Lease, MessageDetail, MessagePage, MessageQuery, MessageWriter, Queue, RECORDS_IDEM,
    Result, ScanReport, Spool, State,
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
    /// The shared PostgreSQL store: every replica claims from its `jobs`.
    Pg(PgStore),
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

    /// The shared store on `pool`, already migrated ([`super::pg::migrate`]);
    /// a claim reserves a delivery for `lease`.
    pub fn open_pg(pool: deadpool_postgres::Pool, lease: Duration) -> Store {
        Store {
            backend: Backend::Pg(PgStore::new(pool, lease)),
        }
    }

    /// Keeps finished messages for `retention` (`POSTERN_HISTORY_RETENTION`;
    /// zero: a message leaves the store when its last delivery is done).
    /// Called once, right after opening.
    pub fn keep_history(mut self, retention: Duration) -> Store {
        match &mut self.backend {
            Backend::File { spool, .. } => spool.keep_history(retention),
            Backend::Pg(pg) => pg.keep_history(retention),
        }
        self
    }

    /// A page of messages (inbound and outbound, pending and finished),
    /// newest first (see [`super::history`]).
    pub async fn list_messages(&self, query: &MessageQuery) -> Result<MessagePage> {
        match &self.backend {
            Backend::File { spool, .. } => spool.list_messages(query.clone()).await,
            Backend::Pg(pg) => pg.list_messages(query).await,
        }
    }

    /// Message `id` with its deliveries and their attempts, pending or
    /// finished; `None` when there is none (or it is an event).
    pub async fn message_detail(&self, id: &str) -> Result<Option<MessageDetail>> {
        if !super::is_message_id(id) {
            return Ok(None);
        }
        match &self.backend {
            Backend::File { spool, .. } => spool.message_detail(id).await,
            Backend::Pg(pg) => pg.message_detail(id).await,
        }
    }

    /// Removes finished messages kept longer than `max_age`; returns how
    /// many. Once across the cluster (the shared store's sweep lock).
    pub async fn sweep_history(&self, max_age: Duration) -> Result<usize> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || spool.sweep_history(max_age)).await
            }
            Backend::Pg(pg) => pg.sweep_history(max_age).await,
        }
    }

    /// Moves pending messages that hold up the file spool's log out to
    /// files (see `spool::log`); returns how many. Nothing to do for the
    /// shared store.
    pub async fn move_out_stuck(&self) -> Result<usize> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || spool.move_out_stuck()).await
            }
            Backend::Pg(_) => Ok(0),
        }
    }

    /// The database pool, when this is the shared store (health checks).
    pub fn database(&self) -> Option<&deadpool_postgres::Pool> {
        match &self.backend {
            Backend::File { .. } => None,
            Backend::Pg(pg) => Some(pg.pool()),
        }
    }

    /// The shared store's pool and queue, for the metrics (`None`: the
    /// file spool).
    pub async fn database_stats(&self) -> Option<DatabaseStats> {
        match &self.backend {
            Backend::File { .. } => None,
            Backend::Pg(pg) => {
                let status = pg.pool().status();
                Some(DatabaseStats {
                    in_use: status.size.saturating_sub(status.available),
                    jobs_due: pg.due(super::now_ms()).await.unwrap_or(0),
                })
            }
        }
    }

    /// The producers' way in: accept → write → commit → schedule.
    pub fn intake(&self) -> Intake {
        Intake::new(self.clone())
    }

    /// Starts writing a message (for [`Intake`]): its envelope first.
    pub(super) async fn create(&self, envelope: &Envelope) -> Result<Writer> {
        match &self.backend {
            Backend::File { spool, .. } => Ok(Writer::File(spool.create(envelope).await?)),
            Backend::Pg(pg) => Ok(Writer::Pg(Box::new(pg.create(envelope)))),
        }
    }

    /// The earliest due delivery with a lease on it, or when to look
    /// again (`None`: nothing scheduled). A database that cannot be
    /// reached has nothing to claim for now.
    pub async fn claim(&self, now: u64) -> std::result::Result<Lease, Option<u64>> {
        self.claim_batch(now, 1)
            .await
            .map(|mut leases| leases.swap_remove(0))
    }

    /// Up to `max` (at least one) due deliveries, earliest first, each
    /// with a lease on it (the shared store claims them in one round
    /// trip); when there are none, what [`Store::claim`] says.
    pub async fn claim_batch(
        &self,
        now: u64,
        max: usize,
    ) -> std::result::Result<Vec<Lease>, Option<u64>> {
        match &self.backend {
            Backend::File { spool, queue } => {
                let mut leases = vec![spool.claim(queue, now)?];
                while leases.len() < max {
                    match spool.claim(queue, now) {
                        Ok(lease) => leases.push(lease),
                        Err(_) => break,
                    }
                }
                Ok(leases)
            }
            Backend::Pg(pg) => pg.claim_batch(now, max).await,
        }
    }

    /// Resolves when something may have become due (a new schedule).
    pub async fn changed(&self) {
        match &self.backend {
            Backend::File { queue, .. } => queue.changed().await,
            Backend::Pg(pg) => pg.changed().await,
        }
    }

    /// A delivery no attempt has held yet (just committed, or reset by an
    /// operator's retry) is due at `due` (unix ms). The shared store has
    /// it in its `jobs` already and only wakes its worker: it must not
    /// touch a lease, since a worker may have claimed it by now.
    pub fn schedule_fresh(&self, key: JobKey, due: u64) {
        match &self.backend {
            Backend::File { queue, .. } => queue.push(key, due),
            Backend::Pg(pg) => pg.wake(),
        }
    }

    /// Delivery `key`, whose attempt ended (its lease dropped, with or
    /// without an outcome), is due at `due` (unix ms).
    pub fn schedule(&self, key: JobKey, due: u64) {
        match &self.backend {
            Backend::File { queue, .. } => queue.push(key, due),
            Backend::Pg(pg) => pg.schedule(key, due),
        }
    }

    /// Delivery `key`, parked by the endpoint gate after its claim, may be
    /// attempted now: claimable again at once (the shared store hands it
    /// out before anything else, still under its lease; the file spool
    /// queues it as due now).
    pub fn release(&self, key: JobKey) {
        match &self.backend {
            Backend::File { queue, .. } => queue.push(key, super::now_ms()),
            Backend::Pg(pg) => pg.release(key),
        }
    }

    /// Deliveries scheduled and not claimed (0 when the database cannot
    /// tell).
    pub async fn scheduled(&self) -> usize {
        match &self.backend {
            Backend::File { queue, .. } => queue.len(),
            Backend::Pg(pg) => pg.scheduled().await.unwrap_or(0),
        }
    }

    /// The size of a committed message (0 when it is gone).
    pub async fn message_size(&self, id: &str) -> Result<u64> {
        match &self.backend {
            Backend::File { spool, .. } => spool.message_size(id),
            Backend::Pg(pg) => pg.message_size(id).await,
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
            Backend::Pg(pg) => pg.load_with(key, prepare).await,
        }
    }

    /// Whether `lease` still holds (no operator change, no later claim):
    /// asked before an outcome that has effects beyond the delivery (the
    /// `message.dead` event). A database that cannot answer says yes; the
    /// outcome write itself is refused if it did not.
    pub async fn holds(&self, lease: &Lease) -> bool {
        match &self.backend {
            Backend::File { .. } => lease.holds(),
            Backend::Pg(pg) => pg.holds(lease).await.unwrap_or(true),
        }
    }

    /// Removes committed message `id`, never scheduled (for
    /// [`super::Committed::withdraw`]).
    pub(super) async fn withdraw(&self, id: &str, deliveries: usize) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.withdraw(id, deliveries).await,
            Backend::Pg(pg) => pg.withdraw(id).await,
        }
    }

    /// The content of committed message `id`, read back (the SMTP stage
    /// checks a message's authenticity after its commit; the API serves
    /// it), pending or in the history.
    pub async fn read_message(&self, id: &str) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.read_message(id).await,
            Backend::Pg(pg) => pg.read_message(id).await,
        }
    }

    /// An attempt's outcome: the new state of the delivery `lease` holds;
    /// refused ([`super::Error::LeaseLost`]) once the lease is gone.
    pub async fn write_state(&self, lease: &Lease, state: &DeliveryState) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.write_state(lease, state).await,
            Backend::Pg(pg) => pg.write_state(lease, state).await,
        }
    }

    /// An attempt's outcome: the delivery `lease` holds is done, `done`
    /// its state with its attempts (see [`Spool::finish`]); refused once
    /// the lease is gone.
    pub async fn finish(
        &self,
        lease: &Lease,
        deliveries: usize,
        had_state: bool,
        done: &DeliveryState,
    ) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.finish(lease, deliveries, had_state, done).await,
            Backend::Pg(pg) => pg.finish(lease, deliveries, done).await,
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
            Backend::Pg(pg) => pg.list_deliveries(states, after, limit).await,
        }
    }

    /// One delivery, whatever its state.
    pub async fn delivery_info(&self, key: &JobKey) -> Result<Option<DeliveryInfo>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.delivery_info(key).await,
            Backend::Pg(pg) => pg.delivery_info(key).await,
        }
    }

    /// A dead delivery is pending again with no attempts, due now; the
    /// caller [`Store::schedule`]s it (after reading what it answers with:
    /// once scheduled it may be delivered and gone at once).
    pub async fn retry_dead(&self, key: &JobKey) -> Result<Change> {
        match &self.backend {
            Backend::File { spool, .. } => spool.retry_dead(key).await,
            Backend::Pg(pg) => pg.retry_dead(key).await,
        }
    }

    /// Gives up on a delivery whose state is one of `allowed`.
    pub async fn discard(&self, key: &JobKey, allowed: &'static [State]) -> Result<Change> {
        match &self.backend {
            Backend::File { spool, .. } => spool.discard(key, allowed).await,
            Backend::Pg(pg) => pg.discard(key, allowed).await,
        }
    }

    /// Durably writes a small record ([`super::RECORDS_OUTBOX`],
    /// [`super::RECORDS_IDEM`]).
    pub async fn write_record(&self, dir: &'static str, name: &str, bytes: Vec<u8>) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.write_record(dir, name, bytes).await,
            Backend::Pg(pg) => pg.write_record(dir, name, bytes).await,
        }
    }

    /// A record, or `None`.
    pub async fn read_record(&self, dir: &'static str, name: &str) -> Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.read_record(dir, name).await,
            Backend::Pg(pg) => pg.read_record(dir, name).await,
        }
    }

    /// Whether message `id` was committed (see [`Spool::is_committed`]).
    pub async fn is_committed(&self, id: &str) -> Result<bool> {
        match &self.backend {
            Backend::File { spool, .. } => spool.is_committed(id).await,
            Backend::Pg(pg) => pg.is_committed(id).await,
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
            Backend::Pg(pg) => pg.probe().await.map(|()| None),
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
            Backend::Pg(pg) => pg.oldest_age().await.ok().flatten(),
        }
    }

    /// Removes records in `dir` older than `max_age`; returns how many.
    pub async fn sweep(&self, dir: &'static str, max_age: Duration) -> Result<usize> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || spool.sweep(dir, max_age)).await
            }
            Backend::Pg(pg) => pg.sweep_records(dir, max_age).await,
        }
    }

    /// Removes what interrupted receives left (older than `max_age`);
    /// returns how many messages. The file spool clears its `tmp/` at
    /// start instead.
    pub async fn sweep_orphans(&self, max_age: Duration) -> Result<usize> {
        match &self.backend {
            Backend::File { .. } => Ok(0),
            Backend::Pg(pg) => pg.sweep_orphans(max_age).await,
        }
    }

    /// Keeps `parts` of message `id` (the attachments its payload links)
    /// until at least `expires` (unix s), whatever becomes of the
    /// message; see [`super::kept`].
    pub async fn keep(&self, id: &str, parts: Vec<KeptPart>, expires: u64) -> Result<()> {
        match &self.backend {
            Backend::File { spool, .. } => spool.keep(id, parts, expires).await,
            Backend::Pg(pg) => pg.keep(id, parts, expires).await,
        }
    }

    /// Kept attachment `index` of message `id`, or `None`.
    pub async fn open_kept(&self, id: &str, index: usize) -> Result<Option<Kept>> {
        match &self.backend {
            Backend::File { spool, .. } => spool.open_kept(id, index).await,
            Backend::Pg(pg) => pg.open_kept(id, index).await,
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
            Backend::Pg(pg) => pg.sweep_kept(now).await,
        }
    }

    /// Discards dead deliveries older than `max_age`; returns them.
    pub async fn sweep_dead(&self, max_age: Duration) -> Result<Vec<(JobKey, DeliveryState)>> {
        match &self.backend {
            Backend::File { spool, .. } => {
                let spool = spool.clone();
                super::blocking(move || spool.sweep_dead(max_age)).await
            }
            Backend::Pg(pg) => pg.sweep_dead(max_age).await,
        }
    }
}

/// What the metrics show of the shared store.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseStats {
    /// Connections of this process's pool in use.
    pub in_use: usize,
    /// Deliveries due and not leased, across the cluster.
    pub jobs_due: usize,
}

/// A message being received, in whichever backend.
pub(super) enum Writer {
    File(MessageWriter),
    Pg(Box<super::pg::Writer>),
}

impl Writer {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Writer::File(w) => w.write(bytes).await,
            Writer::Pg(w) => w.write(bytes).await,
        }
    }

    /// Makes the message durable, with its idempotency record when given.
    /// The file spool writes the record first and trusts it only while
    /// its message is committed ([`Store::is_committed`]): one file cannot
    /// hold both, so a crash between the two leaves an untrusted record.
    /// The database inserts both in one transaction.
    pub(super) async fn commit(
        self,
        store: &Store,
        key: Option<KeyRecord>,
    ) -> std::result::Result<(), CommitError> {
        match self {
            Writer::File(w) => {
                if let Some(key) = key {
                    store
                        .write_record(RECORDS_IDEM, &key.name, key.record)
                        .await?;
                }
                Ok(w.commit().await?)
            }
            Writer::Pg(w) => w.commit(key).await,
        }
    }
}
