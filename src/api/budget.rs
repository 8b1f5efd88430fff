//! The memory budget of `POST /v1/messages`: what all requests in flight
//! may hold together.
//!
//! A request is read, parsed and composed in memory: the body, the parsed
//! strings, the wrapped attachment bodies and the message come to about
//! three times the body at the peak (see docs/BENCHMARKS.md). The per-element
//! caps ([`crate::compose::limits`]) keep that factor small; this budget keeps the
//! number of large requests at once from multiplying it. Before its body
//! is read, a request reserves its declared `Content-Length` (the whole
//! `POSTERN_API_MAX_BYTES` when it declares none, returned down to the real
//! size once the body is in); the reservation lasts until the answer. The
//! budget is [`BODIES`] × `POSTERN_API_MAX_BYTES`: two maximum-size requests
//! at once, or any number of small ones.
//!
//! A request that does not fit is answered `503 busy` at once rather than
//! made to wait: a reservation is held while its client uploads, which a
//! slow client can make last, so waiting requests would pile up behind it
//! holding connections; a `503` with `Retry-After` is what clients already
//! retry.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in units of this many bytes.
const UNIT: usize = 1024;

/// The budget holds this many maximum-size request bodies.
pub const BODIES: usize = 2;

/// Request bytes that may be in flight at once.
#[derive(Clone)]
pub struct Budget {
    semaphore: Arc<Semaphore>,
    total: u32,
}

/// Part of the budget, returned when dropped.
pub struct Reservation {
    permit: OwnedSemaphorePermit,
    total: u32,
}

impl Budget {
    /// The budget for requests of at most `max_body` bytes.
    pub fn for_max_body(max_body: usize) -> Budget {
        let total = u32::try_from(max_body.saturating_mul(BODIES).div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(
                1,
                (Semaphore::MAX_PERMITS as u64).min(u32::MAX as u64) as u32,
            );
        Budget {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Reserves room for a request of `bytes`, or `None` when the requests
    /// in flight leave too little.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let permit = self
            .semaphore
            .clone()
            .try_acquire_many_owned(units(bytes, self.total))
            .ok()?;
        Some(Reservation {
            permit,
            total: self.total,
        })
    }

    /// Bytes not reserved right now (for tests and logs).
    pub fn available(&self) -> usize {
        self.semaphore.available_permits() * UNIT
    }
}

impl Reservation {
    /// Returns what is reserved beyond `bytes` (a body that turned out
    /// smaller than reserved for).
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = units(bytes, self.total) as usize;
        let extra = self.permit.num_permits().saturating_sub(keep);
        if extra > 0 {
            drop(self.permit.split(extra));
        }
    }
}

/// Units for `bytes`: rounded up, at least one (every request costs
/// something), at most the whole budget (so a request at the limit still
/// runs, alone).
fn units(bytes: usize, total: u32) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT))
        .unwrap_or(u32::MAX)
        .clamp(1, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_table() {
        for (bytes, total, want) in [
            (0, 100, 1),
            (1, 100, 1),
            (1024, 100, 1),
            (1025, 100, 2),
            (100 * 1024, 100, 100),
            (usize::MAX, 100, 100),
            (5000, 1, 1),
        ] {
            assert_eq!(units(bytes, total), want, "{bytes} of {total}");
        }
    }

    #[test]
    fn reservations_fill_and_return_the_budget() {
        let budget = Budget::for_max_body(10 * 1024);
        assert_eq!(budget.available(), 20 * 1024);
        let a = budget
            .try_reserve(10 * 1024)
            .expect("a maximum-size request");
        let mut b = budget.try_reserve(10 * 1024).expect("a second one");
        assert!(budget.try_reserve(1).is_none(), "the budget is full");
        // A body that turned out small gives back the rest.
        b.shrink_to(1500);
        assert_eq!(budget.available(), 8 * 1024);
        assert!(budget.try_reserve(9 * 1024).is_none());
        let c = budget.try_reserve(8 * 1024).expect("fits now");
        drop((a, b, c));
        assert_eq!(budget.available(), 20 * 1024);
        // Shrinking never grows a reservation.
        let mut d = budget.try_reserve(1024).unwrap();
        d.shrink_to(1 << 30);
        assert_eq!(budget.available(), 19 * 1024);
    }

    #[test]
    fn a_huge_limit_still_makes_a_budget() {
        let budget = Budget::for_max_body(usize::MAX);
        assert!(budget.try_reserve(usize::MAX).is_some());
    }
}
