//! Delivery policy: what an HTTP result means, and when to try again.
//! Pure functions, so the whole policy is visible in one table-driven test.

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
}
