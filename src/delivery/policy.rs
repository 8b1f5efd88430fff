//! Delivery policy: what an HTTP result means ([`classify`]), when to try
//! again ([`next_delay`]), and what an attempt's outcome does to its
//! delivery ([`decide`]: done, retry, or dead), for every kind of delivery.
//! Pure functions, so the whole policy is visible in table-driven tests.

use std::time::Duration;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx: done.
    Delivered,
    /// The endpoint refused the message for good (406, 410): no retry.
    Rejected { reason: String },
    /// Try again later; `retry_after` is the endpoint's hint, if any.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// Maps an HTTP response to an [`Outcome`].
///
/// 406 and 410 are the Standard Webhooks / Svix convention for "stop sending
/// this"; everything else that is not 2xx (including 4xx, since a
/// misconfigured endpoint gets fixed) is retried.
pub fn classify(status: u16, retry_after: Option<&str>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        406 | 410 => Outcome::Rejected {
            reason: format!("endpoint answered {status}"),
        },
        _ => Outcome::Retry {
            reason: format!("endpoint answered {status}"),
            retry_after: retry_after.and_then(parse_retry_after),
        },
    }
}

/// `Retry-After` as delay-seconds. (The HTTP-date form is rare on webhook
/// endpoints; it is ignored and the schedule applies.)
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The delay before the next attempt after `attempts` failed ones, or `None`
/// when the schedule is used up (the delivery becomes dead).
///
/// `unit` is a random number in `[0, 1)` supplied by the caller so the
/// function stays pure; jitter spreads retries of a burst of messages that
/// failed together. A `Retry-After` hint replaces the scheduled delay when it
/// is longer, capped at `max_retry_after`, but never extends the number of
/// attempts.
pub fn next_delay(
    schedule: &[Duration],
    attempts: u32,
    jitter: f64,
    unit: f64,
    retry_after: Option<Duration>,
    max_retry_after: Duration,
) -> Option<Duration> {
    let base = *schedule.get(attempts.checked_sub(1)? as usize)?;
    let factor = 1.0 + jitter * (2.0 * unit - 1.0);
    let jittered = base.mul_f64(factor.max(0.0));
    Some(match retry_after {
        Some(hint) => jittered.max(hint.min(max_retry_after)),
        None => jittered,
    })
}

/// The retry schedule (`POSTERN_RETRY_SCHEDULE` and its bounds).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Delay before each retry; its length + 1 is the number of attempts.
    pub delays: Vec<Duration>,
    /// Relative jitter applied to each delay (0.2 = ±20%).
    pub jitter: f64,
    /// `Retry-After` is honoured up to this bound.
    pub max_retry_after: Duration,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delivered: the delivery is done.
    Done,
    /// Pending: the next attempt is `delay` from now.
    Retry { delay: Duration, reason: String },
    /// Dead now: the endpoint refused the message for good.
    Reject { reason: String },
    /// Dead now: the schedule is used up.
    GiveUp { reason: String },
}

impl Action {
    /// The `outcome` label of `postern_delivery_attempts_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Done => "delivered",
            Action::Retry { .. } => "retry",
            Action::Reject { .. } => "rejected",
            Action::GiveUp { .. } => "dead",
        }
    }
}

/// The one retry/dead decision: what `outcome` does to a delivery that has
/// now had `attempts` attempts (this one included). `unit` is a random
/// number in `[0, 1)` for the jitter (see [`next_delay`]).
pub fn decide(outcome: Outcome, attempts: u32, schedule: &Schedule, unit: f64) -> Action {
    match outcome {
        Outcome::Delivered => Action::Done,
        Outcome::Rejected { reason } => Action::Reject { reason },
        Outcome::Retry {
            reason,
            retry_after,
        } => match next_delay(
            &schedule.delays,
            attempts,
            schedule.jitter,
            unit,
            retry_after,
            schedule.max_retry_after,
        ) {
            Some(delay) => Action::Retry { delay, reason },
            None => Action::GiveUp {
                reason: gave_up(attempts, &reason),
            },
        },
    }
}

/// The reason recorded for a delivery (or a relay recipient) whose
/// schedule ran out; `reason` is the last failure.
pub fn gave_up(attempts: u32, reason: &str) -> String {
    format!("gave up after {attempts} attempts: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let retry = |r: Option<u64>| Outcome::Retry {
            reason: String::new(),
            retry_after: r.map(Duration::from_secs),
        };
        let table: &[(u16, Option<&str>, Outcome)] = &[
            (200, None, Outcome::Delivered),
            (204, None, Outcome::Delivered),
            (299, None, Outcome::Delivered),
            (301, None, retry(None)),
            (400, None, retry(None)),
            (404, None, retry(None)),
            (
                406,
                None,
                Outcome::Rejected {
                    reason: String::new(),
                },
            ),
            (
                410,
                None,
                Outcome::Rejected {
                    reason: String::new(),
                },
            ),
            (429, Some("120"), retry(Some(120))),
            (429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), retry(None)),
            (500, None, retry(None)),
            (503, Some(" 7 "), retry(Some(7))),
        ];
        for (status, ra, want) in table {
            let got = match classify(*status, *ra) {
                Outcome::Retry { retry_after, .. } => Outcome::Retry {
                    reason: String::new(),
                    retry_after,
                },
                Outcome::Rejected { .. } => Outcome::Rejected {
                    reason: String::new(),
                },
                d => d,
            };
            assert_eq!(&got, want, "status {status}");
        }
    }

    #[test]
    fn schedule_then_dead() {
        let s: Vec<Duration> = [5, 300, 1800].map(Duration::from_secs).to_vec();
        let max = Duration::from_secs(3600);
        assert_eq!(
            next_delay(&s, 1, 0.0, 0.5, None, max),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            next_delay(&s, 2, 0.0, 0.5, None, max),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            next_delay(&s, 3, 0.0, 0.5, None, max),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(next_delay(&s, 4, 0.0, 0.5, None, max), None);
        assert_eq!(next_delay(&[], 1, 0.2, 0.5, None, max), None);
    }

    #[test]
    fn jitter_bounds() {
        let s = [Duration::from_secs(100)];
        let max = Duration::from_secs(3600);
        assert_eq!(
            next_delay(&s, 1, 0.2, 0.0, None, max),
            Some(Duration::from_secs(80))
        );
        assert_eq!(
            next_delay(&s, 1, 0.2, 0.5, None, max),
            Some(Duration::from_secs(100))
        );
        let hi = next_delay(&s, 1, 0.2, 0.999_999, None, max).unwrap();
        assert!(hi > Duration::from_secs(119) && hi <= Duration::from_secs(120));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let s = [Duration::from_secs(5), Duration::from_secs(5)];
        let max = Duration::from_secs(600);
        let ra = |secs| Some(Duration::from_secs(secs));
        // longer hint wins
        assert_eq!(next_delay(&s, 1, 0.0, 0.5, ra(60), max), ra(60));
        // shorter hint does not speed us up
        assert_eq!(next_delay(&s, 1, 0.0, 0.5, ra(1), max), ra(5));
        // capped
        assert_eq!(next_delay(&s, 1, 0.0, 0.5, ra(86400), max), ra(600));
        // never adds attempts
        assert_eq!(next_delay(&s, 3, 0.0, 0.5, ra(60), max), None);
    }

    #[test]
    fn decide_table() {
        let schedule = Schedule {
            delays: [5, 300].map(Duration::from_secs).to_vec(),
            jitter: 0.0,
            max_retry_after: Duration::from_secs(3600),
        };
        let secs = Duration::from_secs;
        let retry = |reason: &str, hint: Option<u64>| Outcome::Retry {
            reason: reason.into(),
            retry_after: hint.map(secs),
        };
        let rejected = || Outcome::Rejected {
            reason: "endpoint answered 410".into(),
        };
        let table: Vec<(Outcome, u32, Action)> = vec![
            (Outcome::Delivered, 1, Action::Done),
            (Outcome::Delivered, 99, Action::Done),
            (
                rejected(),
                1,
                Action::Reject {
                    reason: "endpoint answered 410".into(),
                },
            ),
            // a refusal is final even with retries left, and even after the last
            (
                rejected(),
                3,
                Action::Reject {
                    reason: "endpoint answered 410".into(),
                },
            ),
            (
                retry("endpoint answered 500", None),
                1,
                Action::Retry {
                    delay: secs(5),
                    reason: "endpoint answered 500".into(),
                },
            ),
            (
                retry("endpoint answered 500", None),
                2,
                Action::Retry {
                    delay: secs(300),
                    reason: "endpoint answered 500".into(),
                },
            ),
            (
                retry("endpoint answered 429", Some(60)),
                1,
                Action::Retry {
                    delay: secs(60),
                    reason: "endpoint answered 429".into(),
                },
            ),
            (
                retry("endpoint answered 500", None),
                3,
                Action::GiveUp {
                    reason: "gave up after 3 attempts: endpoint answered 500".into(),
                },
            ),
            // a Retry-After hint never adds an attempt
            (
                retry("timeout", Some(60)),
                3,
                Action::GiveUp {
                    reason: "gave up after 3 attempts: timeout".into(),
                },
            ),
        ];
        for (outcome, attempts, want) in table {
            let got = decide(outcome.clone(), attempts, &schedule, 0.5);
            assert_eq!(got, want, "{outcome:?} after {attempts} attempts");
        }
    }

    #[test]
    fn action_labels() {
        let d = Duration::ZERO;
        let r = || String::new();
        assert_eq!(Action::Done.label(), "delivered");
        assert_eq!(
            Action::Retry {
                delay: d,
                reason: r()
            }
            .label(),
            "retry"
        );
        assert_eq!(Action::Reject { reason: r() }.label(), "rejected");
        assert_eq!(Action::GiveUp { reason: r() }.label(), "dead");
    }
}
