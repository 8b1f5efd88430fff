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
            token,
            table: self.clone(),
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

/// One attempt's claim on one delivery. Dropping it ends it.
#[derive(Debug)]
pub struct Lease {
    key: JobKey,
    token: u64,
    table: Table,
}

impl Lease {
    pub fn key(&self) -> &JobKey {
        &self.key
    }

    /// Whether no operator change has revoked it (nor a newer claim taken
    /// it over).
    pub fn holds(&self) -> bool {
        self.table.holds(&self.key, self.token)
    }

    /// What an outcome write checks, on the blocking pool.
    pub(super) fn check(&self) -> Check {
        Check {
            key: self.key.clone(),
            token: self.token,
            table: self.table.clone(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if t.held.get(&self.key) == Some(&self.token) {
            t.held.remove(&self.key);
        }
    }
}

/// A lease's identity, movable into a blocking task.
pub(super) struct Check {
    pub(super) key: JobKey,
    token: u64,
    table: Table,
}

impl Check {
    pub(super) fn holds(&self) -> bool {
        self.table.holds(&self.key, self.token)
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
