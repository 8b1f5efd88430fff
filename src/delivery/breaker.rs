//! The circuit breaker of one endpoint, as a pure state machine: what may
//! be sent to it now, and what an attempt's result does to that.
//!
//! An endpoint that keeps timing out (or refusing connections) is *open*
//! for a cool-down: its due deliveries wait without an attempt, so they
//! neither hold delivery slots for a timeout each nor use up their retry
//! schedule. After the cool-down one probe goes (*half-open*); its result
//! closes the breaker or opens it for another cool-down.
//!
//! Only "no HTTP answer" counts as a failure (timeout, connection refused
//! or reset, TLS failure: [`Signal::Unreachable`]). An endpoint that
//! answers `500` quickly is alive: it costs no slot time, and the retry
//! schedule (with `Retry-After`) is the right tool for it.
//!
//! This file owns the transitions only; the per-endpoint bookkeeping
//! (slots, who waits) is in [`super::endpoint`]. Times are unix ms passed
//! in by the caller, so the table test below needs no clock.

use std::time::Duration;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Consecutive failures that open the breaker; 0 turns it off.
    pub failures: u32,
    /// How long an open breaker keeps the endpoint alone.
    pub cooldown: Duration,
}

/// What one attempt told us about the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The endpoint answered (any HTTP status, any SMTP reply).
    Answered,
    /// No answer: timeout, connection refused or reset, TLS failure.
    Unreachable,
    /// Nothing was sent (the message was gone, no secret, …): no evidence.
    NoContact,
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Normal; `failures` in a row so far.
    Closed { failures: u32 },
    /// Left alone until `until` (unix ms); after that the next attempt is
    /// the probe.
    Open { until: u64 },
    /// The cool-down is over; `probing` while the one probe is in flight.
    HalfOpen { probing: bool },
}

/// How many attempts the breaker lets start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// As many as the endpoint's concurrency limit allows.
    Any,
    /// One: the probe.
    Probe,
    /// None: open, or the probe is still out.
    None,
}

impl Default for State {
    fn default() -> Self {
        State::Closed { failures: 0 }
    }
}

impl State {
    pub fn allowance(self, now: u64) -> Allowance {
        match self {
            State::Closed { .. } => Allowance::Any,
            State::Open { until } if now < until => Allowance::None,
            State::Open { .. } | State::HalfOpen { probing: false } => Allowance::Probe,
            State::HalfOpen { probing: true } => Allowance::None,
        }
    }

    /// An attempt starts (the caller checked [`State::allowance`]); returns
    /// the new state and whether this attempt is the probe.
    pub fn start(self, now: u64) -> (State, bool) {
        match self.allowance(now) {
            Allowance::Probe => (State::HalfOpen { probing: true }, true),
            _ => (self, false),
        }
    }

    /// An attempt ended with `signal`; `probe` says whether it was the
    /// probe. Results of attempts that started before the breaker opened
    /// are ignored once it is open: only the probe decides.
    pub fn record(self, signal: Signal, probe: bool, policy: &Policy, now: u64) -> State {
        if policy.failures == 0 {
            return State::default();
        }
        let open = State::Open {
            until: now.saturating_add(policy.cooldown.as_millis() as u64),
        };
        match (self, probe, signal) {
            (State::Closed { .. }, _, Signal::Answered) => State::Closed { failures: 0 },
            (State::Closed { failures }, _, Signal::Unreachable) => {
                let failures = failures.saturating_add(1);
                if failures >= policy.failures {
                    open
                } else {
                    State::Closed { failures }
                }
            }
            (State::HalfOpen { .. }, true, Signal::Answered) => State::Closed { failures: 0 },
            (State::HalfOpen { .. }, true, Signal::Unreachable) => open,
            // The probe found nothing to send: the next attempt probes.
            (State::HalfOpen { .. }, true, Signal::NoContact) => State::HalfOpen { probing: false },
            (state, _, _) => state,
        }
    }

    /// The `postern_endpoint_breaker_state` value: 0 closed, 1 open,
    /// 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        failures: 3,
        cooldown: Duration::from_millis(1000),
    };

    fn closed(failures: u32) -> State {
        State::Closed { failures }
    }
    fn open(until: u64) -> State {
        State::Open { until }
    }
    fn half(probing: bool) -> State {
        State::HalfOpen { probing }
    }

    #[test]
    fn allowance_table() {
        let table = [
            (closed(0), 50, Allowance::Any),
            (closed(2), 50, Allowance::Any),
            (open(100), 50, Allowance::None),
            (open(100), 99, Allowance::None),
            (open(100), 100, Allowance::Probe),
            (open(100), 5000, Allowance::Probe),
            (half(false), 50, Allowance::Probe),
            (half(true), 50, Allowance::None),
        ];
        for (state, now, want) in table {
            assert_eq!(state.allowance(now), want, "{state:?} at {now}");
        }
    }

    #[test]
    fn start_table() {
        let table = [
            (closed(1), 50, closed(1), false),
            (open(100), 100, half(true), true),
            (half(false), 50, half(true), true),
        ];
        for (state, now, want, probe) in table {
            assert_eq!(state.start(now), (want, probe), "{state:?} at {now}");
        }
    }

    #[test]
    fn record_table() {
        use Signal::*;
        let now = 10_000;
        let reopened = open(now + 1000);
        let table = [
            // closed: failures in a row open it, an answer resets the count
            (closed(0), false, Unreachable, closed(1)),
            (closed(1), false, Unreachable, closed(2)),
            (closed(2), false, Unreachable, reopened),
            (closed(2), false, Answered, closed(0)),
            (closed(2), false, NoContact, closed(2)),
            // open: late results of attempts started before it opened
            (open(now + 500), false, Answered, open(now + 500)),
            (open(now + 500), false, Unreachable, open(now + 500)),
            // half-open: the probe decides, others do not
            (half(true), true, Answered, closed(0)),
            (half(true), true, Unreachable, reopened),
            (half(true), true, NoContact, half(false)),
            (half(true), false, Answered, half(true)),
            (half(true), false, Unreachable, half(true)),
        ];
        for (state, probe, signal, want) in table {
            assert_eq!(
                state.record(signal, probe, &POLICY, now),
                want,
                "{state:?} probe={probe} {signal:?}"
            );
        }
    }

    #[test]
    fn zero_failures_turns_the_breaker_off() {
        let off = Policy {
            failures: 0,
            ..POLICY
        };
        let mut s = State::default();
        for _ in 0..10 {
            s = s.record(Signal::Unreachable, false, &off, 1);
            assert_eq!(s.allowance(1), Allowance::Any);
        }
    }

    #[test]
    fn a_full_cycle() {
        let mut s = State::default();
        for t in 0..3 {
            assert_eq!(s.allowance(t), Allowance::Any);
            s = s.record(Signal::Unreachable, false, &POLICY, t);
        }
        assert_eq!(s, open(1002));
        assert_eq!(s.allowance(1001), Allowance::None);
        let (s2, probe) = s.start(1002);
        assert!(probe);
        assert_eq!(s2.allowance(1002), Allowance::None, "one probe at a time");
        let s3 = s2.record(Signal::Unreachable, true, &POLICY, 1500);
        assert_eq!(s3, open(2500));
        let (s4, probe) = s3.start(2500);
        assert!(probe);
        assert_eq!(s4.record(Signal::Answered, true, &POLICY, 2600), closed(0));
    }
}
