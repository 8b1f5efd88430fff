//! The PostgreSQL backend of [`super::Store`] (issue #12): the shared
//! store that lets several replicas serve one queue. Used instead of the
//! spool directory when `POSTERN_DATABASE_URL` is set. The schema is
//! `migrations/0001_store.sql` and its successors (applied by [`migrate`]).
//!
//! By concern: [`connect`] (the pool, TLS, the health check), [`migrate`],
//! `messages` (accepting, streaming and loading a message), `jobs` (claims,
//! leases and outcomes), `records` (status, idempotency and verdicts
//! records), `kept` (attachments behind signed links),
//! `admin` (the operator's view and changes, sweeps) and `history`
//! (finished messages kept, the message list and detail).
//!
//! Every promise rests on a transaction: a message, its jobs (and its
//! idempotency key) become visible in the one transaction that commits it,
//! and the caller answers `250`/`202` only after that `COMMIT` returned
//! with `synchronous_commit` on (`SET LOCAL` in that transaction, whatever
//! the server's default). Claims and attempt outcomes, which promise
//! nothing, commit without waiting for the log flush (see `jobs`).
//! Nothing is cached in a replica: every replica sees what the others
//! committed on its next poll.

mod admin;
pub mod connect;
mod history;
mod jobs;
mod kept;
mod messages;
pub mod migrate;
mod records;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::Notify;

pub(crate) use messages::Writer;

use super::{Error, JobKey};

/// How often an idle worker looks for work that other replicas committed
/// (or whose lease expired): the claim query is cheap (an index range
/// scan), and a committed message waits at most this long on another
/// replica. This replica's own commits wake its worker at once.
pub const POLL: Duration = Duration::from_millis(500);

/// The shared store. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    /// Who holds a lease (`jobs.lease_owner`): this process.
    owner: String,
    lease: Duration,
    /// Wakes this replica's worker (a local commit or schedule).
    notify: Notify,
    /// The lease token (and the message's size) of each claim this
    /// replica made whose outcome is not written yet (see `jobs`'
    /// `schedule`), and the deliveries among them that the endpoint gate
    /// released, waiting to be handed out again by the next claim.
    granted: Mutex<Granted>,
    /// How long finished messages are kept (zero: deleted when done).
    history: Duration,
}

impl PgStore {
    /// A store over `pool` (migrated already); leases last `lease`.
    pub fn new(pool: Pool, lease: Duration) -> PgStore {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let owner = format!("{host}/{}/{}", std::process::id(), &super::new_id()[20..]);
        PgStore {
            inner: Arc::new(Inner {
                pool,
                owner,
                lease,
                notify: Notify::new(),
                granted: Mutex::default(),
                history: Duration::ZERO,
            }),
        }
    }

    /// Keeps finished messages for `retention`; called on a store no one
    /// shares yet (right after [`PgStore::new`]).
    pub fn keep_history(&mut self, retention: Duration) {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.history = retention,
            None => tracing::error!("history retention set on a store in use; ignored"),
        }
    }

    fn keeps_history(&self) -> bool {
        !self.inner.history.is_zero()
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// A pooled connection, or the database's trouble as an [`Error`].
    async fn conn(&self) -> Result<Object, Error> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| Error::Database(connect::error_chain(&e)))
    }

    /// Wakes this replica's worker.
    pub(crate) fn wake(&self) {
        self.inner.notify.notify_one();
    }

    fn granted(&self) -> MutexGuard<'_, Granted> {
        // A plain map, consistent between statements.
        self.inner.granted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when this replica committed or scheduled something.
    pub async fn changed(&self) {
        self.inner.notify.notified().await
    }
}

/// The leases this replica holds (see [`Inner::granted`]).
#[derive(Debug, Default)]
struct Granted {
    /// Delivery → (lease token, message size).
    tokens: HashMap<JobKey, (i64, u64)>,
    /// Released by the endpoint gate, still leased here: claimed again
    /// from memory, before the database is asked.
    released: std::collections::VecDeque<JobKey>,
}

/// A failed statement as an [`Error`], its cause included.
fn db(e: tokio_postgres::Error) -> Error {
    Error::Database(connect::error_chain(&e))
}

/// A row's delivery number as the `idx` column holds it.
fn idx(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// A state word as the `state` column holds it.
fn state_word(state: super::State) -> &'static str {
    match state {
        super::State::Pending => "pending",
        super::State::Dead => "dead",
        super::State::Delivered => "delivered",
    }
}

fn parse_state(word: &str) -> Result<super::State, Error> {
    Ok(match word {
        "pending" => super::State::Pending,
        "dead" => super::State::Dead,
        "delivered" => super::State::Delivered,
        other => return Err(Error::Corrupt("jobs".into(), format!("state {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::State;

    #[test]
    fn state_words_are_the_file_spools() {
        for s in [State::Pending, State::Dead, State::Delivered] {
            let file = serde_json::to_value(s).unwrap();
            assert_eq!(file, state_word(s), "{s:?}");
            assert_eq!(parse_state(state_word(s)).unwrap(), s);
        }
        assert!(parse_state("gone").is_err());
    }
}
