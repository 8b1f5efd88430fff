//! Leases: an attempt's claim on one delivery, from the moment the worker
//! takes it from the schedule ([`super::Spool::claim`]) until its outcome
//! is written.
//!
//! The outcome of an attempt is written with its lease
//! ([`super::Spool::write_state`], [`super::Spool::finish`]) and refused
//! ([`super::Error::LeaseLost`]) when the lease no longer holds. An
//! operator change to the delivery (delete, retry) revokes its lease under
//! the same lock the outcome write takes, so a delivery deleted or retried
//! while an attempt is in flight is never resurrected or overwritten by
//! that attempt (#12).
//!
//! With the file spool one process owns the spool, so a lease lives in
//! memory and lasts as long as the attempt holds it (no expiry is needed:
//! a crash ends every lease with the process).
//!
//! With the PostgreSQL store a lease is a row's `lease_owner`,
//! `lease_until` and `lease_token` (see `pg::jobs`): the claim takes a new
//! token, the outcome is written only while the token is unchanged, an
//! operator change bumps it. It expires on the database's clock, so the
//! jobs of a replica that died are claimed by another one after expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::JobKey;

/// The leases held in this process: delivery → token of its holder.
#[derive(Debug, Default)]
pub(super) struct Leases {
    next: u64,
    held: HashMap<JobKey, u64>,
}

/// Shared table of [`Leases`].
#[derive(Debug, Clone, Default)]
pub(super) struct Table(Arc<Mutex<Leases>>);

impl Table {
    fn lock(&self) -> MutexGuard<'_, Leases> {
        // The map stays consistent between statements; a poisoned lock is
        // still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new lease on `key`. A second claim of the same delivery (it was
    /// scheduled twice) takes the lease over: only the newest attempt may
    /// write an outcome.
    pub(super) fn grant(&self, key: JobKey) -> Lease {
        let mut t = self.lock();
        t.next += 1;
        let token = t.next;
        t.held.insert(key.clone(), token);
        Lease {
            key,
            holder: Holder::Local {
                token,
                table: self.clone(),
            },
            size: None,
            delivery: None,
        }
    }

    /// Ends whatever lease `key` has: its holder's outcome will be refused.
    pub(super) fn revoke(&self, key: &JobKey) {
        self.lock().held.remove(key);
    }

    pub(super) fn holds(&self, key: &JobKey, token: u64) -> bool {
        self.lock().held.get(key) == Some(&token)
    }
}

/// One attempt's claim on one delivery. Dropping a file spool's lease
/// ends it; a database lease ends with its outcome or at its expiry.
#[derive(Debug)]
pub struct Lease {
    key: JobKey,
    holder: Holder,
    /// The message's size, when the claim read it (saves the worker a
    /// round trip to the database before it reserves memory).
    size: Option<u64>,
    /// What the delivery delivers, when the claim read it: the worker
    /// then knows the endpoint, and waits for room there, before it reads
    /// the message.
    delivery: Option<Box<super::Delivery>>,
}

#[derive(Debug)]
enum Holder {
    /// In this process's [`Table`].
    Local { token: u64, table: Table },
    /// In the job's row: the `lease_token` the claim set.
    Row { token: i64 },
}

impl Lease {
    /// A lease held in the database row of `key` with `token`, on a
    /// message of `size` bytes.
    pub(super) fn row(key: JobKey, token: i64, size: u64) -> Lease {
        Lease {
            key,
            holder: Holder::Row { token },
            size: Some(size),
            delivery: None,
        }
    }

    /// The same lease, knowing what its delivery delivers.
    pub(super) fn with_delivery(mut self, delivery: Option<super::Delivery>) -> Lease {
        self.delivery = delivery.map(Box::new);
        self
    }

    pub fn key(&self) -> &JobKey {
        &self.key
    }

    /// The message's size as the claim saw it, if it read it.
    pub fn size_hint(&self) -> Option<u64> {
        self.size
    }

    /// The delivery's target and recipients as the claim saw them, if it
    /// read them.
    pub fn delivery_hint(&self) -> Option<&super::Delivery> {
        self.delivery.as_deref()
    }

    /// Whether no operator change has revoked it (nor a newer claim taken
    /// it over). A database lease cannot be checked without a round trip
    /// (`Store::holds` makes it); here it reads as held, and the outcome
    /// write it is used for is refused when it is not.
    pub fn holds(&self) -> bool {
        match &self.holder {
            Holder::Local { token, table } => table.holds(&self.key, *token),
            Holder::Row { .. } => true,
        }
    }

    /// The row's `lease_token` this lease was granted with (database
    /// leases only).
    pub(super) fn row_token(&self) -> Option<i64> {
        match self.holder {
            Holder::Row { token } => Some(token),
            Holder::Local { .. } => None,
        }
    }

    /// What an outcome write checks, on the blocking pool.
    pub(super) fn check(&self) -> Check {
        Check {
            key: self.key.clone(),
            local: match &self.holder {
                Holder::Local { token, table } => Some((*token, table.clone())),
                Holder::Row { .. } => None,
            },
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Holder::Local { token, table } = &self.holder else {
            return;
        };
        let mut t = table.lock();
        if t.held.get(&self.key) == Some(token) {
            t.held.remove(&self.key);
        }
    }
}

/// A lease's identity, movable into a blocking task.
pub(super) struct Check {
    pub(super) key: JobKey,
    /// `None`: not a lease of this process's table (never held by it).
    local: Option<(u64, Table)>,
}

impl Check {
    pub(super) fn holds(&self) -> bool {
        self.local
            .as_ref()
            .is_some_and(|(token, table)| table.holds(&self.key, *token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> JobKey {
        JobKey {
            id: "m".into(),
            index: i,
        }
    }

    #[test]
    fn a_lease_holds_until_revoked_dropped_or_taken_over() {
        let table = Table::default();
        let a = table.grant(key(0));
        let b = table.grant(key(1));
        assert!(a.holds() && b.holds());
        table.revoke(&key(0));
        assert!(!a.holds());
        assert!(b.holds(), "revoking one delivery leaves the others");

        let old = table.grant(key(2));
        let new = table.grant(key(2));
        assert!(!old.holds() && new.holds());
        drop(old);
        assert!(new.holds(), "an old lease dropped does not end the new one");
        drop(new);
        assert!(!table.lock().held.contains_key(&key(2)));
    }
}
