//! Prometheus metrics. One [`Metrics`] value is created by [`crate::app::run`]
//! and handed to the parts that count things; nothing is process-global, so
//! tests run several servers side by side without their counts mixing.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    /// `2xx` … `5xx`.
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `webhook`, `relay` or `event`.
    pub kind: String,
    /// `delivered`, `retry`, `rejected`, `dead`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthResultLabels {
    /// `spf`, `dkim`, `dmarc` or `arc`.
    pub check: String,
    /// The RFC 8601 word: `pass`, `fail`, `temperror`, …
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// `scheme://host:port`, see [`crate::delivery::endpoint::Endpoint`].
    pub endpoint: String,
}

/// Endpoints with series of their own; the rest share `endpoint="other"`.
/// A route URL with a placeholder in its host name would otherwise let
/// senders add series at will.
const MAX_ENDPOINT_LABELS: usize = 100;

/// Reply classes, in the order of `Metrics::reply_classes`.
const REPLY_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "other"];

/// Every metric Postern exports.
pub struct Metrics {
    registry: Registry,
    pub smtp_sessions_open: Gauge,
    pub smtp_sessions: Counter,
    pub smtp_replies: Family<ClassLabel, Counter>,
    /// The `smtp_replies` series of each class, looked up once: `reply` runs
    /// for every SMTP reply and should not hash a label each time.
    reply_classes: [Counter; 5],
    pub messages_accepted: Counter,
    pub messages_rejected: Family<ReasonLabel, Counter>,
    pub received_bytes: Counter,
    pub spool_pending: Gauge,
    pub spool_oldest_pending_age: Gauge<f64, AtomicU64>,
    pub spool_corrupt: Counter,
    pub delivery_attempts: Family<AttemptLabels, Counter>,
    pub delivery_latency: Histogram,
    pub dead: Counter,
    pub dead_removed: Counter,
    pub relay_submissions: Family<OutcomeLabel, Counter>,
    /// Sync routes' answers during DATA: `accepted`, `refused`, `tempfail`.
    pub sync_answers: Family<OutcomeLabel, Counter>,
    pub tls_handshake_failures: Counter,
    pub auth_failures: Counter,
    /// 0 closed, 1 open, 2 half-open; only endpoints whose breaker has
    /// opened at least once have a series.
    pub endpoint_breaker_state: Family<EndpointLabel, Gauge>,
    pub endpoint_breaker_opens: Family<EndpointLabel, Counter>,
    /// Deliveries waiting for their endpoint (limit reached or breaker
    /// open), outside the schedule.
    pub endpoint_parked: Gauge,
    /// Time the authentication checks of one message took (DNS included).
    pub auth_check_duration: Histogram,
    /// Verdicts of the authentication checks, one per check (per
    /// signature for DKIM).
    pub auth_results: Family<AuthResultLabels, Counter>,
    endpoint_labels: Mutex<HashSet<String>>,
    /// The shared store (#12): connections of the pool in use, deliveries
    /// due and not leased (0 with the file spool), and how long claiming
    /// one took.
    pub database_pool_in_use: Gauge,
    pub database_jobs_due: Gauge,
    pub claim_latency: Histogram,
}

impl Metrics {
    // No `Default`: metrics made where they are not handed down count into
    // nothing, so a missed wire-up must fail to compile, not go silent.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("postern");
        let m = Metrics {
            smtp_sessions_open: Gauge::default(),
            smtp_sessions: Counter::default(),
            smtp_replies: Family::default(),
            reply_classes: Default::default(),
            messages_accepted: Counter::default(),
            messages_rejected: Family::default(),
            received_bytes: Counter::default(),
            spool_pending: Gauge::default(),
            spool_oldest_pending_age: Gauge::default(),
            spool_corrupt: Counter::default(),
            delivery_attempts: Family::default(),
            // 5 ms … ~11 min: from a local endpoint to a long outage.
            delivery_latency: Histogram::new(exponential_buckets(0.005, 2.0, 18)),
            dead: Counter::default(),
            dead_removed: Counter::default(),
            relay_submissions: Family::default(),
            sync_answers: Family::default(),
            tls_handshake_failures: Counter::default(),
            auth_failures: Counter::default(),
            endpoint_breaker_state: Family::default(),
            endpoint_breaker_opens: Family::default(),
            endpoint_parked: Gauge::default(),
            // 1 ms … ~16 s: a warm local resolver to the checks' budget.
            auth_check_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            auth_results: Family::default(),
            endpoint_labels: Mutex::default(),
            database_pool_in_use: Gauge::default(),
            database_jobs_due: Gauge::default(),
            // 50 µs … ~1.6 s: an in-memory pop to a slow database.
            claim_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register(
            "smtp_sessions_open",
            "SMTP sessions open now",
            m.smtp_sessions_open.clone(),
        );
        registry.register(
            "smtp_sessions",
            "SMTP sessions accepted",
            m.smtp_sessions.clone(),
        );
        registry.register(
            "smtp_replies",
            "SMTP replies sent, by code class",
            m.smtp_replies.clone(),
        );
        registry.register(
            "messages_accepted",
            "messages accepted with 250 (durable in the spool)",
            m.messages_accepted.clone(),
        );
        registry.register(
            "messages_rejected",
            "messages refused after DATA, by reason",
            m.messages_rejected.clone(),
        );
        registry.register(
            "received_bytes",
            "message bytes accepted over SMTP",
            m.received_bytes.clone(),
        );
        registry.register(
            "spool_pending_deliveries",
            "deliveries waiting in the schedule",
            m.spool_pending.clone(),
        );
        registry.register_with_unit(
            "spool_oldest_pending_age",
            "age of the oldest message in the spool",
            prometheus_client::registry::Unit::Seconds,
            m.spool_oldest_pending_age.clone(),
        );
        registry.register(
            "database_pool_in_use",
            "database connections of this process in use (shared store only)",
            m.database_pool_in_use.clone(),
        );
        registry.register(
            "database_jobs_due",
            "deliveries due and not leased by any replica (shared store only)",
            m.database_jobs_due.clone(),
        );
        registry.register_with_unit(
            "store_claim",
            "time to claim a due delivery (or find none)",
            prometheus_client::registry::Unit::Seconds,
            m.claim_latency.clone(),
        );
        registry.register(
            "spool_corrupt_entries",
            "spool entries moved to corrupt/ at start",
            m.spool_corrupt.clone(),
        );
        registry.register(
            "delivery_attempts",
            "delivery attempts, by kind and outcome",
            m.delivery_attempts.clone(),
        );
        registry.register_with_unit(
            "delivery_latency",
            "time from accepting a message to its webhook delivery",
            prometheus_client::registry::Unit::Seconds,
            m.delivery_latency.clone(),
        );
        registry.register(
            "dead_deliveries",
            "deliveries that became dead",
            m.dead.clone(),
        );
        registry.register(
            "dead_deliveries_removed",
            "dead deliveries removed after the retention",
            m.dead_removed.clone(),
        );
        registry.register(
            "relay_submissions",
            "recipients submitted to the relay, by outcome",
            m.relay_submissions.clone(),
        );
        registry.register(
            "sync_answers",
            "answers of sync routes' apps during DATA, by outcome (accepted, refused, tempfail)",
            m.sync_answers.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "failed TLS handshakes (STARTTLS and implicit)",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "smtp_auth_failures",
            "failed SMTP AUTH attempts",
            m.auth_failures.clone(),
        );
        registry.register(
            "endpoint_breaker_state",
            "circuit breaker of an endpoint: 0 closed, 1 open, 2 half-open",
            m.endpoint_breaker_state.clone(),
        );
        registry.register(
            "endpoint_breaker_opens",
            "times an endpoint's circuit breaker opened",
            m.endpoint_breaker_opens.clone(),
        );
        registry.register(
            "endpoint_parked_deliveries",
            "deliveries waiting for their endpoint (limit reached or breaker open)",
            m.endpoint_parked.clone(),
        );
        registry.register_with_unit(
            "auth_check_duration",
            "time the SPF/DKIM/DMARC/ARC checks of one message took",
            prometheus_client::registry::Unit::Seconds,
            m.auth_check_duration.clone(),
        );
        registry.register(
            "auth_results",
            "authentication check verdicts, by check and result",
            m.auth_results.clone(),
        );
        let reply_classes = REPLY_CLASSES.map(|class| {
            m.smtp_replies
                .get_or_create(&ClassLabel {
                    class: class.into(),
                })
                .clone()
        });
        Metrics {
            registry,
            reply_classes,
            ..m
        }
    }

    /// Counts one SMTP reply by its class (`smtp::reply::class`: the
    /// caller classifies, so telemetry stays below the SMTP stage).
    pub fn reply(&self, class: u8) {
        let index = match class {
            2 => 0,
            3 => 1,
            4 => 2,
            5 => 3,
            _ => 4,
        };
        self.reply_classes[index].inc();
    }

    pub fn rejected(&self, reason: &str) {
        self.messages_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn attempt(&self, kind: &str, outcome: &str) {
        self.delivery_attempts
            .get_or_create(&AttemptLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn sync_answer(&self, outcome: &str) {
        self.sync_answers
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn relay(&self, outcome: &str, n: u64) {
        self.relay_submissions
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc_by(n);
    }

    /// Reports a change of an endpoint's breaker (`gauge`: see
    /// [`Metrics::endpoint_breaker_state`]).
    pub fn breaker(&self, endpoint: &str, gauge: i64, opened: bool) {
        let mut labels = self.endpoint_labels.lock().expect("labels lock");
        let known = labels.contains(endpoint);
        if !known && !opened {
            // Never opened (or not tracked): its state is "closed", implied.
            return;
        }
        if known || labels.len() < MAX_ENDPOINT_LABELS {
            labels.insert(endpoint.to_string());
            let label = EndpointLabel {
                endpoint: endpoint.to_string(),
            };
            self.endpoint_breaker_state.get_or_create(&label).set(gauge);
            if opened {
                self.endpoint_breaker_opens.get_or_create(&label).inc();
            }
        } else {
            // A state shared by many endpoints means nothing; count only.
            let label = EndpointLabel {
                endpoint: "other".into(),
            };
            self.endpoint_breaker_opens.get_or_create(&label).inc();
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_names() {
        let m = Metrics::new();
        m.reply(crate::smtp::reply::class("250 2.0.0 OK"));
        m.reply(crate::smtp::reply::class("550 5.1.1 no"));
        m.attempt("webhook", "delivered");
        m.delivery_latency.observe(0.02);
        let text = m.render();
        for want in [
            "postern_smtp_replies_total{class=\"2xx\"} 1",
            "postern_smtp_replies_total{class=\"5xx\"} 1",
            "postern_delivery_attempts_total{kind=\"webhook\",outcome=\"delivered\"} 1",
            "postern_delivery_latency_seconds_count 1",
            "# TYPE postern_smtp_sessions_open gauge",
            "postern_spool_oldest_pending_age_seconds",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn breaker_series_exist_once_opened_and_are_bounded() {
        let m = Metrics::new();
        m.breaker("http://quiet:80", 0, false);
        m.breaker("http://a:80", 1, true);
        m.breaker("http://a:80", 2, false);
        for i in 0..MAX_ENDPOINT_LABELS + 5 {
            m.breaker(&format!("http://h{i}:80"), 1, true);
        }
        let text = m.render();
        assert!(!text.contains("quiet"), "{text}");
        for want in [
            "postern_endpoint_breaker_state{endpoint=\"http://a:80\"} 2",
            "postern_endpoint_breaker_opens_total{endpoint=\"http://a:80\"} 1",
            "postern_endpoint_breaker_opens_total{endpoint=\"other\"} 6",
            "# TYPE postern_endpoint_parked_deliveries gauge",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
