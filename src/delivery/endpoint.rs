//! Endpoint isolation: how many attempts one endpoint may have in flight,
//! and its circuit breaker ([`super::breaker`]).
//!
//! An *endpoint* is the origin of a delivery's target: scheme, host and
//! port of the webhook or events URL (`https://app.example:443`), or the
//! relay (`smtp://relay.example:587`). Paths do not matter: two routes to
//! one server share its capacity, and when it hangs, it hangs for both.
//!
//! A delivery whose endpoint is at its limit, or whose breaker is open,
//! does not wait holding one of the worker's delivery slots: it is *parked*
//! here, in memory, in arrival order, and handed back to the queue
//! ([`Gate`] returns the keys to push) when its endpoint has room again.
//! Nothing of this is written to disk: a parked delivery is pending in the
//! spool like any other, and a restart schedules it again.
//!
//! A parked delivery that is handed back is *released*: the gate
//! remembers its endpoint, so when it comes out of the queue it is admitted
//! before its message is read again (see [`Gate::admit_released`]).
//!
//! [`Gate`] is plain data behind the worker's mutex, with times passed in,
//! so the tests below drive it without sockets or clocks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use super::breaker::{self, Allowance, Signal};
use crate::spool::JobKey;

/// Entries with nothing in flight, nothing waiting and a closed breaker
/// are forgotten; past this many endpoints, also those that merely have
/// nothing in flight or waiting (their failure counts are lost), so that
/// URL templates with a placeholder in the host cannot grow the map
/// without bound.
const MAX_IDLE_ENDPOINTS: usize = 4096;

/// The origin of a target, as a cheap key (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint(Arc<str>);

impl Endpoint {
    /// The endpoint of an `http(s)://` URL: `scheme://host:port`. User
    /// info, path and query are left out (they often carry tokens, and this
    /// name is logged and exported in metrics).
    pub fn of_url(url: &str) -> Endpoint {
        match url::Url::parse(url) {
            Ok(u) => match (u.host_str(), u.port_or_known_default()) {
                (Some(host), Some(port)) => Endpoint::named(u.scheme(), host, port),
                _ => Endpoint(Arc::from(format!("{}://", u.scheme()))),
            },
            // It cannot be sent either; all such URLs share one name.
            Err(_) => Endpoint(Arc::from("invalid-url")),
        }
    }

    /// `scheme://host:port`; an IPv6 `host` gets its brackets.
    pub fn named(scheme: &str, host: &str, port: u16) -> Endpoint {
        let host = host.to_ascii_lowercase();
        let name = if host.contains(':') && !host.starts_with('[') {
            format!("{scheme}://[{host}]:{port}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        Endpoint(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The limits every endpoint gets.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Attempts in flight to one endpoint at once (at least 1).
    pub concurrency: usize,
    pub breaker: breaker::Policy,
}

/// Permission for one attempt; give it back with [`Gate::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub endpoint: Endpoint,
    /// This attempt is the breaker's probe.
    pub probe: bool,
}

/// What [`Gate::admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go(Pass),
    /// Parked until the endpoint has room.
    Parked,
}

/// What changed, for the caller to act on: push `release` into the queue
/// (due now), and report the breaker.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Parked deliveries to schedule again, now.
    pub release: Vec<JobKey>,
    /// The breaker's new state, when it changed.
    pub breaker: Option<breaker::State>,
    /// The breaker opened (from closed or half-open).
    pub opened: bool,
}

#[derive(Debug, Default)]
struct Entry {
    breaker: breaker::State,
    in_flight: usize,
    waiting: VecDeque<JobKey>,
    /// Released and on their way back through the queue: they count
    /// against the room, so that one free slot releases one delivery.
    released: usize,
}

impl Entry {
    /// Attempts that may start now.
    fn room(&self, limits: &Limits, now: u64) -> usize {
        let free = limits
            .concurrency
            .saturating_sub(self.in_flight + self.released);
        match self.breaker.allowance(now) {
            Allowance::Any => free,
            Allowance::Probe => free.min(1usize.saturating_sub(self.released)),
            Allowance::None => 0,
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.waiting.is_empty() && self.released == 0
    }
}

/// Per-endpoint slots, parked deliveries and breakers.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    entries: HashMap<Endpoint, Entry>,
    /// Endpoint of each released delivery.
    released: HashMap<JobKey, Endpoint>,
    /// When open breakers' cool-downs end.
    cooldowns: BinaryHeap<Reverse<(u64, Endpoint)>>,
    /// Parked deliveries, all endpoints together.
    parked: usize,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits: Limits {
                concurrency: limits.concurrency.max(1),
                ..limits
            },
            entries: HashMap::new(),
            released: HashMap::new(),
            cooldowns: BinaryHeap::new(),
            parked: 0,
        }
    }

    /// Deliveries parked now (released ones are back in the queue).
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Admits `key`, a released delivery, to the endpoint it waited for;
    /// `None` when `key` was not released (it then has to be read to know
    /// its endpoint, and goes through [`Gate::admit`]).
    pub fn admit_released(&mut self, key: &JobKey, now: u64) -> Option<(Admission, Effects)> {
        let endpoint = self.released.remove(key)?;
        if let Some(e) = self.entries.get_mut(&endpoint) {
            e.released = e.released.saturating_sub(1);
        }
        Some(self.enter(endpoint, key, true, now))
    }

    /// Admits an attempt of `key` to `endpoint`, or parks it.
    pub fn admit(&mut self, endpoint: Endpoint, key: &JobKey, now: u64) -> (Admission, Effects) {
        self.enter(endpoint, key, false, now)
    }

    fn enter(
        &mut self,
        endpoint: Endpoint,
        key: &JobKey,
        was_released: bool,
        now: u64,
    ) -> (Admission, Effects) {
        if !self.entries.contains_key(&endpoint) && self.entries.len() >= MAX_IDLE_ENDPOINTS {
            self.entries.retain(|_, e| !e.idle());
        }
        let limits = self.limits;
        let entry = self.entries.entry(endpoint.clone()).or_default();
        let mut effects = Effects::default();
        if entry.room(&limits, now) == 0 {
            // A released delivery that lost its slot to a newcomer keeps
            // its place at the front.
            if was_released {
                entry.waiting.push_front(key.clone());
            } else {
                entry.waiting.push_back(key.clone());
            }
            self.parked += 1;
            return (Admission::Parked, effects);
        }
        let (state, probe) = entry.breaker.start(now);
        if state != entry.breaker {
            effects.breaker = Some(state);
        }
        entry.breaker = state;
        entry.in_flight += 1;
        (Admission::Go(Pass { endpoint, probe }), effects)
    }

    /// An admitted attempt ended with `signal`.
    pub fn finish(&mut self, pass: Pass, signal: Signal, now: u64) -> Effects {
        let limits = self.limits;
        let mut effects = Effects::default();
        let Some(entry) = self.entries.get_mut(&pass.endpoint) else {
            return effects;
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        let before = entry.breaker;
        let after = before.record(signal, pass.probe, &limits.breaker, now);
        entry.breaker = after;
        if after != before {
            effects.breaker = Some(after);
            if let breaker::State::Open { until } = after {
                effects.opened = true;
                self.cooldowns.push(Reverse((until, pass.endpoint.clone())));
            }
        }
        effects.release = self.pump(&pass.endpoint, now);
        self.forget_if_idle(&pass.endpoint);
        effects
    }

    /// Releases what open breakers whose cool-down ended may let through
    /// (their probe). Call before taking jobs from the queue.
    pub fn tick(&mut self, now: u64) -> Vec<JobKey> {
        let mut release = Vec::new();
        while let Some(Reverse((until, _))) = self.cooldowns.peek() {
            if *until > now {
                break;
            }
            let Reverse((_, endpoint)) = self.cooldowns.pop().expect("peeked");
            release.extend(self.pump(&endpoint, now));
        }
        release
    }

    /// When [`Gate::tick`] next has something to do.
    pub fn next_cooldown_end(&self) -> Option<u64> {
        self.cooldowns.peek().map(|Reverse((until, _))| *until)
    }

    /// Moves as many parked deliveries of `endpoint` to "released" as it
    /// has room for.
    fn pump(&mut self, endpoint: &Endpoint, now: u64) -> Vec<JobKey> {
        let limits = self.limits;
        let Some(entry) = self.entries.get_mut(endpoint) else {
            return Vec::new();
        };
        let n = entry.room(&limits, now).min(entry.waiting.len());
        let keys: Vec<JobKey> = entry.waiting.drain(..n).collect();
        entry.released += n;
        self.parked -= n;
        for key in &keys {
            self.released.insert(key.clone(), endpoint.clone());
        }
        keys
    }

    fn forget_if_idle(&mut self, endpoint: &Endpoint) {
        if let Some(e) = self.entries.get(endpoint)
            && e.idle()
            && e.breaker == breaker::State::default()
        {
            self.entries.remove(endpoint);
        }
    }

    /// The breaker state of `endpoint` (closed when unknown).
    pub fn breaker(&self, endpoint: &Endpoint) -> breaker::State {
        self.entries
            .get(endpoint)
            .map(|e| e.breaker)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::delivery::breaker::State;

    fn key(i: usize) -> JobKey {
        JobKey {
            id: format!("m{i}"),
            index: 0,
        }
    }

    fn gate(concurrency: usize, failures: u32) -> Gate {
        Gate::new(Limits {
            concurrency,
            breaker: breaker::Policy {
                failures,
                cooldown: Duration::from_millis(1000),
            },
        })
    }

    fn go(a: (Admission, Effects)) -> Pass {
        match a.0 {
            Admission::Go(p) => p,
            Admission::Parked => panic!("parked"),
        }
    }

    #[test]
    fn endpoint_is_the_origin() {
        let table = [
            (
                "https://app.example/hooks/a?token=x",
                "https://app.example:443",
            ),
            ("https://APP.example:8443/b", "https://app.example:8443"),
            ("http://user:pw@app.example/c", "http://app.example:80"),
            ("http://127.0.0.1:9000/x", "http://127.0.0.1:9000"),
            ("http://[::1]:9000/x", "http://[::1]:9000"),
            ("not a url", "invalid-url"),
        ];
        for (url, want) in table {
            assert_eq!(Endpoint::of_url(url).as_str(), want, "{url}");
        }
        assert_eq!(
            Endpoint::named("smtp", "::1", 25).as_str(),
            "smtp://[::1]:25"
        );
    }

    #[test]
    fn an_endpoint_at_its_limit_parks_and_releases_one_per_free_slot() {
        let a = Endpoint::of_url("http://a.test/");
        let b = Endpoint::of_url("http://b.test/");
        let mut g = gate(2, 0);
        let p0 = go(g.admit(a.clone(), &key(0), 0));
        let _p1 = go(g.admit(a.clone(), &key(1), 0));
        assert_eq!(g.admit(a.clone(), &key(2), 0).0, Admission::Parked);
        assert_eq!(g.admit(a.clone(), &key(3), 0).0, Admission::Parked);
        assert_eq!(g.parked(), 2);
        // another endpoint is not affected
        go(g.admit(b.clone(), &key(9), 0));
        // one slot frees: the first parked one is released, only it
        let fx = g.finish(p0, Signal::Answered, 1);
        assert_eq!(fx.release, vec![key(2)]);
        assert_eq!(g.parked(), 1);
        // a newcomer does not take the released one's slot
        assert_eq!(g.admit(a.clone(), &key(4), 1).0, Admission::Parked);
        // the released one comes back from the queue and goes
        let p2 = go(g.admit_released(&key(2), 2).unwrap());
        assert_eq!(p2.endpoint, a);
        assert!(g.admit_released(&key(2), 2).is_none(), "once");
        let fx = g.finish(p2, Signal::Answered, 3);
        assert_eq!(fx.release, vec![key(3)]);
    }

    #[test]
    fn a_released_one_that_finds_the_breaker_open_keeps_its_place() {
        let a = Endpoint::of_url("http://a.test/");
        let mut g = gate(2, 1);
        let p0 = go(g.admit(a.clone(), &key(0), 0));
        let p1 = go(g.admit(a.clone(), &key(1), 0));
        g.admit(a.clone(), &key(2), 0);
        assert_eq!(g.finish(p0, Signal::Answered, 1).release, vec![key(2)]);
        // while key 2 is on its way back, the other attempt times out
        assert!(g.finish(p1, Signal::Unreachable, 2).opened);
        assert_eq!(g.admit(a.clone(), &key(3), 3).0, Admission::Parked);
        let (adm, _) = g.admit_released(&key(2), 4).unwrap();
        assert_eq!(adm, Admission::Parked);
        // first in line for the probe
        assert_eq!(g.tick(1002), vec![key(2)]);
    }

    #[test]
    fn the_breaker_parks_everything_then_probes_once() {
        let a = Endpoint::of_url("http://a.test/");
        let mut g = gate(4, 2);
        let p0 = go(g.admit(a.clone(), &key(0), 0));
        let p1 = go(g.admit(a.clone(), &key(1), 0));
        let p2 = go(g.admit(a.clone(), &key(2), 0));
        assert!(!g.finish(p0, Signal::Unreachable, 10).opened);
        let fx = g.finish(p1, Signal::Unreachable, 20);
        assert!(fx.opened);
        assert_eq!(fx.breaker, Some(State::Open { until: 1020 }));
        assert!(fx.release.is_empty());
        // open: new attempts park, a late result changes nothing
        for i in 3..6 {
            assert_eq!(g.admit(a.clone(), &key(i), 30).0, Admission::Parked);
        }
        let fx = g.finish(p2, Signal::Answered, 40);
        assert_eq!(fx.breaker, None);
        assert!(fx.release.is_empty());
        assert_eq!(g.next_cooldown_end(), Some(1020));
        assert!(g.tick(1019).is_empty());
        // cool-down over: exactly one is released, as the probe
        assert_eq!(g.tick(1020), vec![key(3)]);
        assert_eq!(g.next_cooldown_end(), None);
        let (adm, fx) = g.admit_released(&key(3), 1021).unwrap();
        let probe = go((adm, Effects::default()));
        assert!(probe.probe);
        assert_eq!(fx.breaker, Some(State::HalfOpen { probing: true }));
        assert_eq!(g.admit(a.clone(), &key(6), 1022).0, Admission::Parked);
        // probe fails: open again, nothing released
        let fx = g.finish(probe, Signal::Unreachable, 1500);
        assert!(fx.opened);
        assert!(fx.release.is_empty());
        assert_eq!(g.tick(2500), vec![key(4)]);
        let probe = go(g.admit_released(&key(4), 2500).unwrap());
        // probe answered: closed, and as many released as there is room
        let fx = g.finish(probe, Signal::Answered, 2600);
        assert_eq!(fx.breaker, Some(State::Closed { failures: 0 }));
        assert_eq!(fx.release, vec![key(5), key(6)]);
        assert_eq!(g.parked(), 0);
    }

    #[test]
    fn a_probe_that_sent_nothing_lets_the_next_one_probe() {
        let a = Endpoint::of_url("http://a.test/");
        let mut g = gate(4, 1);
        let p = go(g.admit(a.clone(), &key(0), 0));
        assert!(g.finish(p, Signal::Unreachable, 0).opened);
        g.admit(a.clone(), &key(1), 1);
        g.admit(a.clone(), &key(2), 1);
        assert_eq!(g.tick(1000), vec![key(1)]);
        let probe = go(g.admit_released(&key(1), 1000).unwrap());
        // key 1 turned out to be delivered already: no contact
        let fx = g.finish(probe, Signal::NoContact, 1001);
        assert_eq!(fx.release, vec![key(2)]);
        assert!(go(g.admit_released(&key(2), 1002).unwrap()).probe);
    }

    #[test]
    fn idle_closed_endpoints_are_forgotten() {
        let a = Endpoint::of_url("http://a.test/");
        let mut g = gate(1, 3);
        let p = go(g.admit(a.clone(), &key(0), 0));
        g.finish(p, Signal::Answered, 1);
        assert!(g.entries.is_empty());
        // a failure count is kept while it matters
        let p = go(g.admit(a.clone(), &key(0), 2));
        g.finish(p, Signal::Unreachable, 3);
        assert_eq!(g.breaker(&a), State::Closed { failures: 1 });
    }
}
