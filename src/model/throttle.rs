//! The per-IP throttle for failed SMTP AUTH attempts, shared by all
//! sessions (and, as its own instance, for failed console logins). Pure with respect to time (callers pass `now`), so its policy
//! is unit-tested without sleeping.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the session should do about an AUTH attempt from some IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No recent failures: proceed normally.
    Allow,
    /// Recent failures: wait this long before answering.
    Delay(Duration),
    /// Too many failures within the window: reply `421 4.7.0` and close.
    Block,
}

/// Upper bound on any delay, so a generous configuration cannot push clients
/// into their own command timeouts (RFC 5321 suggests 5 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Default bound on the number of tracked client networks.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Per-IP throttle for failed AUTH attempts.
///
/// Failures are remembered per client for `window`. Each failure adds
/// `base_delay` to the delay (capped at [`MAX_DELAY`]); at `max_failures`
/// failures within `window` the client is blocked until the oldest failure
/// ages out. IPv6 clients are tracked per /64 because a single host usually
/// controls a whole /64 and could otherwise rotate addresses freely;
/// IPv4-mapped IPv6 addresses count as their IPv4 address.
///
/// An attempt is counted as a failure *before* its password is checked
/// ([`AuthThrottle::begin`] reserves a slot under the lock), because the
/// check is slow on purpose: were failures counted only afterwards, twenty
/// parallel sessions would all get their guess checked before the first
/// failure landed. A correct password releases only its own reservation
/// ([`AuthThrottle::succeeded`]): a login to an account the attacker knows
/// must not wipe the failures of guesses against other accounts, so
/// failures are never reset, they only age out. (Tracking per IP and user
/// would let one client guess against many users; the per-IP count is the
/// bound that matters.) An attempt abandoned mid-check stays a failure.
///
/// Memory is bounded: beyond `max_tracked` clients, expired entries are
/// dropped and then the least recently failing tenth is evicted (in one
/// batch, so the cost is amortised under a flood of new addresses).
///
/// Pure with respect to time: callers pass `now`.
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    base_delay: Duration,
    max_tracked: usize,
    inner: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    next_token: u64,
    // Each deque holds at most `max_failures` (instant, token) pairs,
    // oldest first: failures and attempts still being checked.
    by_client: HashMap<IpAddr, VecDeque<(Instant, u64)>>,
}

/// An AUTH attempt whose password is being checked, counted as a failure
/// until [`AuthThrottle::succeeded`] releases it.
#[derive(Debug)]
#[must_use = "an attempt ends with succeeded() or failed()"]
pub struct Attempt {
    key: IpAddr,
    token: u64,
}

impl fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("max_failures", &self.max_failures)
            .field("window", &self.window)
            .field("base_delay", &self.base_delay)
            .field("max_tracked", &self.max_tracked)
            .field("tracked", &self.lock().by_client.len())
            .finish()
    }
}

impl AuthThrottle {
    /// Creates a throttle. `max_failures` is clamped to at least 1 (0 would
    /// block every client before its first attempt).
    pub fn new(max_failures: u32, window: Duration, base_delay: Duration) -> Self {
        AuthThrottle {
            max_failures: max_failures.max(1),
            window,
            base_delay,
            max_tracked: DEFAULT_MAX_TRACKED,
            inner: Mutex::new(Slots::default()),
        }
    }

    /// Overrides the bound on tracked clients (mainly for tests); at least 1.
    pub fn with_max_tracked(mut self, max_tracked: usize) -> Self {
        self.max_tracked = max_tracked.max(1);
        self
    }

    /// Current verdict for `ip` without recording anything: `Block` while
    /// blocked, `Delay` with the current penalty, `Allow` with a clean record.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let key = throttle_key(ip);
        let mut slots = self.lock();
        let count = match slots.by_client.get_mut(&key) {
            Some(times) => {
                self.prune(times, now);
                times.len()
            }
            None => 0,
        };
        if count == 0 {
            slots.by_client.remove(&key);
        }
        self.verdict(count)
    }

    /// Reserves a failure slot for an attempt about to be checked, or
    /// `Err(Verdict::Block)` when the failures and attempts in flight
    /// already reach the limit (then the password must not be checked).
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Result<Attempt, Verdict> {
        let key = throttle_key(ip);
        let mut slots = self.lock();
        if !slots.by_client.contains_key(&key) && slots.by_client.len() >= self.max_tracked {
            self.make_room(&mut slots.by_client, now);
        }
        slots.next_token += 1;
        let token = slots.next_token;
        let times = slots.by_client.entry(key).or_default();
        self.prune(times, now);
        if times.len() >= self.max_failures as usize {
            return Err(Verdict::Block);
        }
        times.push_back((now, token));
        Ok(Attempt { key, token })
    }

    /// The attempt failed: its slot stays, now dated `now`. Returns the
    /// verdict for the reply to it.
    pub fn failed(&self, attempt: Attempt, now: Instant) -> Verdict {
        let mut slots = self.lock();
        let times = slots.by_client.entry(attempt.key).or_default();
        times.retain(|&(_, t)| t != attempt.token);
        self.prune(times, now);
        times.push_back((now, attempt.token));
        while times.len() > self.max_failures as usize {
            times.pop_front();
        }
        self.verdict(times.len())
    }

    /// The attempt succeeded: releases its own slot, and nothing else.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut slots = self.lock();
        if let Some(times) = slots.by_client.get_mut(&attempt.key) {
            times.retain(|&(_, t)| t != attempt.token);
            if times.is_empty() {
                slots.by_client.remove(&attempt.key);
            }
        }
    }

    /// Records a failed attempt in one step (`begin` + `failed`).
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> Verdict {
        match self.begin(ip, now) {
            Ok(attempt) => self.failed(attempt, now),
            Err(v) => v,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding the lock cannot leave the map logically
        // inconsistent (each operation is a simple update), so recover
        // instead of propagating the poison to every later session.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verdict(&self, count: usize) -> Verdict {
        if count == 0 {
            Verdict::Allow
        } else if count >= self.max_failures as usize {
            Verdict::Block
        } else {
            let n = u32::try_from(count).unwrap_or(u32::MAX);
            let delay = self.base_delay.checked_mul(n).unwrap_or(MAX_DELAY);
            Verdict::Delay(delay.min(MAX_DELAY))
        }
    }

    fn is_expired(&self, t: Instant, now: Instant) -> bool {
        now.saturating_duration_since(t) >= self.window
    }

    fn prune(&self, times: &mut VecDeque<(Instant, u64)>, now: Instant) {
        while times.front().is_some_and(|&(t, _)| self.is_expired(t, now)) {
            times.pop_front();
        }
    }

    fn make_room(&self, map: &mut HashMap<IpAddr, VecDeque<(Instant, u64)>>, now: Instant) {
        map.retain(|_, times| times.back().is_some_and(|&(t, _)| !self.is_expired(t, now)));
        if map.len() < self.max_tracked {
            return;
        }
        let evict = (self.max_tracked / 10).max(1);
        let mut by_age: Vec<(Instant, IpAddr)> = map
            .iter()
            .filter_map(|(ip, times)| times.back().map(|&(t, _)| (t, *ip)))
            .collect();
        let cut = evict.min(by_age.len()) - 1;
        by_age.select_nth_unstable(cut);
        for (_, ip) in &by_age[..=cut] {
            map.remove(ip);
        }
    }
}

/// The key under which a client is throttled (see [`AuthThrottle`]).
pub fn throttle_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn throttle_delays_grow_then_block() {
        let t = AuthThrottle::new(4, Duration::from_secs(60), ms(500));
        let now = Instant::now();
        assert_eq!(t.check(IP, now), Verdict::Allow);
        assert_eq!(t.record_failure(IP, now), Verdict::Delay(ms(500)));
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(500)));
        assert_eq!(t.record_failure(IP, now + ms(1)), Verdict::Delay(ms(1000)));
        assert_eq!(t.record_failure(IP, now + ms(2)), Verdict::Delay(ms(1500)));
        assert_eq!(t.record_failure(IP, now + ms(3)), Verdict::Block);
        assert_eq!(t.check(IP, now + ms(4)), Verdict::Block);
        assert_eq!(t.record_failure(IP, now + ms(5)), Verdict::Block);
    }

    #[test]
    fn throttle_delay_is_capped() {
        let t = AuthThrottle::new(1000, Duration::from_secs(3600), Duration::from_secs(20));
        let now = Instant::now();
        t.record_failure(IP, now);
        assert_eq!(t.record_failure(IP, now), Verdict::Delay(MAX_DELAY));
    }

    #[test]
    fn throttle_window_expiry_resets() {
        let window = Duration::from_secs(60);
        let t = AuthThrottle::new(3, window, ms(100));
        let start = Instant::now();
        for i in 0..3 {
            t.record_failure(IP, start + ms(i));
        }
        assert_eq!(t.check(IP, start + ms(10)), Verdict::Block);
        // Sliding window: once the oldest failure ages out, one fewer counts.
        assert_eq!(t.check(IP, start + window), Verdict::Delay(ms(200)));
        assert_eq!(t.check(IP, start + window + ms(2)), Verdict::Allow);
        assert_eq!(
            t.record_failure(IP, start + window + ms(3)),
            Verdict::Delay(ms(100))
        );
    }

    #[test]
    fn throttle_other_ips_unaffected() {
        let t = AuthThrottle::new(2, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        t.record_failure(IP, now);
        t.record_failure(IP, now);
        assert_eq!(t.check(IP, now), Verdict::Block);
        assert_eq!(t.check(OTHER, now), Verdict::Allow);
        assert_eq!(t.record_failure(OTHER, now), Verdict::Delay(ms(100)));
    }

    #[test]
    fn throttle_success_releases_only_its_own_attempt() {
        let t = AuthThrottle::new(3, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        t.record_failure(IP, now);
        t.record_failure(IP, now);
        // A login to a known account does not wipe the other failures.
        let ok = t.begin(IP, now).unwrap();
        t.succeeded(ok);
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(200)));
        assert_eq!(t.record_failure(IP, now), Verdict::Block);
    }

    #[test]
    fn throttle_counts_attempts_in_flight() {
        // Parallel sessions: every attempt takes its slot before the slow
        // check, so only `max_failures` passwords are ever checked.
        let t = AuthThrottle::new(3, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        let attempts: Vec<_> = (0..20).filter_map(|_| t.begin(IP, now).ok()).collect();
        assert_eq!(attempts.len(), 3);
        assert_eq!(t.begin(IP, now).unwrap_err(), Verdict::Block);
        let mut verdicts = Vec::new();
        for a in attempts {
            verdicts.push(t.failed(a, now + ms(1)));
        }
        assert_eq!(verdicts, [Verdict::Block; 3]);
        // Other clients are unaffected.
        assert!(t.begin(OTHER, now).is_ok());
    }

    #[test]
    fn throttle_success_in_flight_frees_its_slot() {
        let t = AuthThrottle::new(2, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        let a = t.begin(IP, now).unwrap();
        let b = t.begin(IP, now).unwrap();
        assert!(t.begin(IP, now).is_err());
        t.succeeded(a);
        assert_eq!(t.failed(b, now), Verdict::Delay(ms(100)));
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(100)));
    }

    #[test]
    fn throttle_zero_max_failures_is_clamped() {
        let t = AuthThrottle::new(0, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        assert_eq!(t.check(IP, now), Verdict::Allow);
        assert_eq!(t.record_failure(IP, now), Verdict::Block);
    }

    #[test]
    fn throttle_ipv6_tracked_per_64_and_mapped_v4() {
        let t = AuthThrottle::new(2, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.record_failure(a, now);
        assert_eq!(t.record_failure(b, now), Verdict::Block);
        assert_eq!(t.check(c, now), Verdict::Allow);

        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        t.record_failure(mapped, now);
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(100)));
        assert_eq!(
            throttle_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn throttle_bounded_evicts_oldest() {
        let t = AuthThrottle::new(5, Duration::from_secs(600), ms(100)).with_max_tracked(20);
        let now = Instant::now();
        for i in 0..20u8 {
            t.record_failure(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                now + ms(u64::from(i)),
            );
        }
        assert_eq!(t.lock().by_client.len(), 20);
        // Full: adding one more evicts the least recent tenth (2 entries).
        t.record_failure(OTHER, now + ms(100));
        assert_eq!(t.lock().by_client.len(), 19);
        let first = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
        let second = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let newest = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 19));
        assert_eq!(t.check(first, now + ms(100)), Verdict::Allow);
        assert_eq!(t.check(second, now + ms(100)), Verdict::Allow);
        assert_eq!(t.check(newest, now + ms(100)), Verdict::Delay(ms(100)));
        assert_eq!(t.check(OTHER, now + ms(100)), Verdict::Delay(ms(100)));
    }

    #[test]
    fn throttle_expired_entries_dropped_before_evicting() {
        let window = Duration::from_secs(10);
        let t = AuthThrottle::new(5, window, ms(100)).with_max_tracked(3);
        let now = Instant::now();
        t.record_failure(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), now);
        t.record_failure(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), now);
        let fresh = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        t.record_failure(fresh, now + window);
        t.record_failure(OTHER, now + window);
        assert_eq!(t.lock().by_client.len(), 2);
        assert_eq!(t.check(fresh, now + window), Verdict::Delay(ms(100)));
    }
}
