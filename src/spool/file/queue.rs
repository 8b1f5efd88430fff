//! The file backend's in-memory schedule of due deliveries. It is rebuilt
//! from disk at start ([`super::Spool::scan`]), so losing it in a crash
//! loses nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::spool::JobKey;

/// Deliveries ordered by due time (unix ms).
#[derive(Debug, Default)]
pub struct Queue {
    heap: Mutex<BinaryHeap<Reverse<(u64, JobKey)>>>,
    notify: Notify,
}

impl Queue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `key` at `due` (unix ms) and wakes the dispatcher.
    pub fn push(&self, key: JobKey, due: u64) {
        self.heap
            .lock()
            .expect("queue lock")
            .push(Reverse((due, key)));
        self.notify.notify_one();
    }

    /// Takes the earliest job if it is due at `now`; otherwise tells when
    /// the next one is (None: queue empty).
    pub fn pop_due(&self, now: u64) -> Result<JobKey, Option<u64>> {
        let mut heap = self.heap.lock().expect("queue lock");
        match heap.peek() {
            Some(Reverse((due, _))) if *due <= now => Ok(heap.pop().expect("peeked").0.1),
            Some(Reverse((due, _))) => Err(Some(*due)),
            None => Err(None),
        }
    }

    pub fn len(&self) -> usize {
        self.heap.lock().expect("queue lock").len()
    }

    /// Resolves after the next `push`.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first() {
        let q = Queue::new();
        let k = |i| JobKey {
            id: "m".into(),
            index: i,
        };
        q.push(k(0), 30);
        q.push(k(1), 10);
        q.push(k(2), 20);
        assert_eq!(q.pop_due(5), Err(Some(10)));
        assert_eq!(q.pop_due(25), Ok(k(1)));
        assert_eq!(q.pop_due(25), Ok(k(2)));
        assert_eq!(q.pop_due(25), Err(Some(30)));
        assert_eq!(q.pop_due(30), Ok(k(0)));
        assert_eq!(q.pop_due(30), Err(None));
    }
}
