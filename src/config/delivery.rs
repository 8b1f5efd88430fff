//! Delivery settings: the retry schedule, webhook timeouts, concurrency,
//! the memory budget, dead-letter retention and the per-endpoint limits
//! (`POSTERN_RETRY_*`, `POSTERN_WEBHOOK_*TIMEOUT`, `POSTERN_DELIVERY_*`,
//! `POSTERN_ENDPOINT_*`, …) → [`DeliveryConfig`], which the delivery
//! worker receives.

use std::time::Duration;

use super::{ConfigError, Problems, RawConfig, invalid};

/// Webhook delivery policy.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Delay before each retry; its length + 1 is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    /// Relative jitter applied to each delay (0.2 = ±20%).
    pub jitter: f64,
    /// Total time for one POST (connect + send + response).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// `Retry-After` is honoured up to this bound.
    pub max_retry_after: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Memory the deliveries in flight may use together, in bytes
    /// (`POSTERN_DELIVERY_MEMORY`); see `delivery::Settings::memory_budget`.
    pub memory_budget: u64,
    /// Dead deliveries are removed this long after they died.
    pub dead_retention: Duration,
    /// Finished messages are kept this long (the history, #14); zero:
    /// removed as soon as every delivery is done.
    pub history_retention: Duration,
    /// Attempts in flight to one endpoint (scheme, host and port of the
    /// target) at once, so that one hung endpoint cannot hold every slot;
    /// at most `concurrency`. See [`crate::delivery::endpoint`].
    pub endpoint_concurrency: usize,
    /// Consecutive timeouts or connection failures that open an endpoint's
    /// circuit breaker; 0 turns breakers off.
    pub breaker_failures: u32,
    /// How long an open breaker leaves its endpoint alone before a probe.
    pub breaker_cooldown: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_schedule: default_schedule(),
            jitter: 0.2,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(6 * 3600),
            concurrency: 32,
            memory_budget: 256 * 1024 * 1024,
            dead_retention: Duration::from_secs(7 * 86400),
            history_retention: Duration::from_secs(3 * 86400),
            endpoint_concurrency: 8,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(60),
        }
    }
}

fn default_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 36000]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> DeliveryConfig {
    let dd = DeliveryConfig::default();
    let retry_schedule = match raw.retry_schedule.take() {
        None => dd.retry_schedule.clone(),
        Some(s) => p.or(
            parse_schedule(&s).map_err(|m| invalid("POSTERN_RETRY_SCHEDULE", m)),
            dd.retry_schedule.clone(),
        ),
    };
    let jitter = match raw.retry_jitter.take() {
        None => dd.jitter,
        Some(s) => p.or(parse_jitter(&s), dd.jitter),
    };
    let delivery = DeliveryConfig {
        retry_schedule,
        jitter,
        timeout: p.duration(
            "POSTERN_WEBHOOK_TIMEOUT",
            raw.webhook_timeout.take(),
            dd.timeout,
        ),
        connect_timeout: p.duration(
            "POSTERN_WEBHOOK_CONNECT_TIMEOUT",
            raw.webhook_connect_timeout.take(),
            dd.connect_timeout,
        ),
        max_retry_after: p.duration(
            "POSTERN_MAX_RETRY_AFTER",
            raw.max_retry_after.take(),
            dd.max_retry_after,
        ),
        concurrency: p.num(
            "POSTERN_DELIVERY_CONCURRENCY",
            raw.delivery_concurrency.take(),
            dd.concurrency,
        ),
        memory_budget: p.size(
            "POSTERN_DELIVERY_MEMORY",
            raw.delivery_memory.take(),
            dd.memory_budget,
        ),
        dead_retention: p.duration(
            "POSTERN_DEAD_RETENTION",
            raw.dead_retention.take(),
            dd.dead_retention,
        ),
        history_retention: p.duration(
            "POSTERN_HISTORY_RETENTION",
            raw.history_retention.take(),
            dd.history_retention,
        ),
        ..dd
    };
    if delivery.concurrency == 0 {
        p.push(invalid(
            "POSTERN_DELIVERY_CONCURRENCY",
            "must be at least 1",
        ));
    }
    parse_endpoint_limits(
        delivery,
        raw.endpoint_concurrency.take(),
        raw.endpoint_breaker_failures.take(),
        raw.endpoint_breaker_cooldown.take(),
        p,
    )
}

/// `POSTERN_RETRY_JITTER`: a fraction in [0, 1).
fn parse_jitter(s: &str) -> Result<f64, ConfigError> {
    match s.parse::<f64>() {
        Ok(j) if (0.0..1.0).contains(&j) => Ok(j),
        _ => Err(invalid(
            "POSTERN_RETRY_JITTER",
            "a fraction in [0, 1), e.g. 0.2",
        )),
    }
}

/// `POSTERN_ENDPOINT_*`, the per-endpoint limit and breaker.
/// The limit defaults to a quarter of the delivery concurrency, so one hung
/// endpoint holds at most a quarter of the slots; above the delivery
/// concurrency it means the same as that.
fn parse_endpoint_limits(
    mut d: DeliveryConfig,
    concurrency: Option<String>,
    failures: Option<String>,
    cooldown: Option<String>,
    p: &mut Problems,
) -> DeliveryConfig {
    let var = "POSTERN_ENDPOINT_CONCURRENCY";
    let default = (d.concurrency / 4).max(1);
    let n: usize = p.num(var, concurrency, default);
    if n == 0 {
        p.push(invalid(var, "must be at least 1"));
    }
    d.endpoint_concurrency = n.max(1).min(d.concurrency.max(1));
    d.breaker_failures = p.num(
        "POSTERN_ENDPOINT_BREAKER_FAILURES",
        failures,
        d.breaker_failures,
    );
    d.breaker_cooldown = p.duration(
        "POSTERN_ENDPOINT_BREAKER_COOLDOWN",
        cooldown,
        d.breaker_cooldown,
    );
    d
}

/// `5s,5m,30m` → delays before each retry.
fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let s = s.trim();
    if s.is_empty() || s == "none" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|p| {
            humantime::parse_duration(p.trim())
                .map_err(|e| format!("bad delay {:?}: {e}", p.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::cfg;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_schedule("100ms, 2s,1m").unwrap(),
            vec![
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        assert!(parse_schedule("none").unwrap().is_empty());
    }

    #[test]
    fn jitter_is_a_fraction_below_one() {
        assert_eq!(parse_jitter("0").unwrap(), 0.0);
        assert_eq!(parse_jitter("0.2").unwrap(), 0.2);
        for bad in ["1", "1.5", "-0.1", "20%", "NaN", ""] {
            assert_eq!(
                parse_jitter(bad).unwrap_err().to_string(),
                "POSTERN_RETRY_JITTER: a fraction in [0, 1), e.g. 0.2",
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoint_limits_default_to_a_quarter_and_name_their_variable() {
        let d = cfg(&[]).unwrap().delivery;
        assert_eq!(
            (
                d.endpoint_concurrency,
                d.breaker_failures,
                d.breaker_cooldown
            ),
            (8, 5, Duration::from_secs(60))
        );
        let d = |vars: &[(&str, &str)]| cfg(vars).unwrap().delivery.endpoint_concurrency;
        assert_eq!(d(&[("POSTERN_DELIVERY_CONCURRENCY", "100")]), 25);
        assert_eq!(d(&[("POSTERN_DELIVERY_CONCURRENCY", "3")]), 1);
        assert_eq!(d(&[("POSTERN_ENDPOINT_CONCURRENCY", "2")]), 2);
        // above the total it is the total
        assert_eq!(
            d(&[
                ("POSTERN_DELIVERY_CONCURRENCY", "4"),
                ("POSTERN_ENDPOINT_CONCURRENCY", "10")
            ]),
            4
        );
        let c = cfg(&[
            ("POSTERN_ENDPOINT_BREAKER_FAILURES", "0"),
            ("POSTERN_ENDPOINT_BREAKER_COOLDOWN", "5m"),
        ])
        .unwrap();
        assert_eq!(c.delivery.breaker_failures, 0);
        assert_eq!(c.delivery.breaker_cooldown, Duration::from_secs(300));
        let cases = [
            ("POSTERN_ENDPOINT_CONCURRENCY", "0", "must be at least 1"),
            (
                "POSTERN_ENDPOINT_CONCURRENCY",
                "many",
                "must be a whole number",
            ),
            (
                "POSTERN_ENDPOINT_BREAKER_FAILURES",
                "-1",
                "must be a whole number",
            ),
            (
                "POSTERN_ENDPOINT_BREAKER_COOLDOWN",
                "soon",
                "must be a duration",
            ),
        ];
        for (var, value, msg) in cases {
            let e = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{var}: {msg}")),
                "{var}={value}: {e}"
            );
        }
    }

    #[test]
    fn history_retention_defaults_to_three_days_and_zero_turns_it_off() {
        let d = cfg(&[]).unwrap().delivery.history_retention;
        assert_eq!(d, Duration::from_secs(3 * 86400));
        let c = cfg(&[("POSTERN_HISTORY_RETENTION", "0")]).unwrap();
        assert_eq!(c.delivery.history_retention, Duration::ZERO);
        let c = cfg(&[("POSTERN_HISTORY_RETENTION", "2s")]).unwrap();
        assert_eq!(c.delivery.history_retention, Duration::from_secs(2));
        let e = cfg(&[("POSTERN_HISTORY_RETENTION", "soon")]).unwrap_err();
        assert!(e.to_string().contains("POSTERN_HISTORY_RETENTION"), "{e}");
    }

    #[test]
    fn dead_retention_defaults_to_a_week() {
        let d = cfg(&[]).unwrap().delivery.dead_retention;
        assert_eq!(d, Duration::from_secs(7 * 86400));
        let c = cfg(&[("POSTERN_DEAD_RETENTION", "36h")]).unwrap();
        assert_eq!(c.delivery.dead_retention, Duration::from_secs(36 * 3600));
        let e = cfg(&[("POSTERN_DEAD_RETENTION", "soon")]).unwrap_err();
        assert!(e.to_string().starts_with("POSTERN_DEAD_RETENTION:"), "{e}");
    }
}
