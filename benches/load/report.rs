//! Throughput, latency and resource reports, printed as one block per run.

use serde_json::json;

#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) size: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) message_bytes: usize,
    pub(crate) requested: usize,
    pub(crate) started: usize,
    pub(crate) accepted: usize,
    pub(crate) refused: usize,
    pub(crate) verified: usize,
    pub(crate) sig_failures: usize,
    pub(crate) unknown: usize,
    pub(crate) duplicates: usize,
    pub(crate) client_errors: Vec<String>,
    pub(crate) timed_out: bool,
    pub(crate) e2e_secs: f64,
    pub(crate) e2e_rate: f64,
    pub(crate) accept_rate: f64,
    /// ms, start of transaction → verified webhook.
    pub(crate) lat: [f64; 4],
    /// ms, start of transaction → 250.
    pub(crate) smtp_lat: [f64; 4],
    pub(crate) server_hwm_kb: u64,
    /// RSS of the server just before the first transaction.
    pub(crate) server_rss_start_kb: u64,
    /// `--rate`: the target, and p99 / max of how late transactions started.
    pub(crate) rate: Option<f64>,
    pub(crate) sched_lag: [f64; 4],
    pub(crate) server_cpu_s: f64,
    pub(crate) server_sys_s: f64,
    pub(crate) client_cpu_s: f64,
    /// Share of all CPUs busy (anyone's) during the run.
    pub(crate) machine_busy: f64,
    pub(crate) loadavg: f64,
    pub(crate) max_threads: u64,
    pub(crate) max_backlog: usize,
    pub(crate) webhook_connections: usize,
    pub(crate) shutdown_ms: u128,
    pub(crate) killed: bool,
    pub(crate) spool_left: usize,
    pub(crate) server_warnings: usize,
    pub(crate) error: Option<String>,
}

impl Report {
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none()
            && !self.timed_out
            && !self.killed
            && self.client_errors.is_empty()
            && self.sig_failures == 0
            && self.refused == 0
            && self.unknown == 0
            && self.started > 0
            && self.verified == self.started
    }

    pub(crate) fn per_1k(&self, secs: f64) -> f64 {
        if self.verified == 0 {
            0.0
        } else {
            secs * 1000.0 / self.verified as f64
        }
    }

    pub(crate) fn print(&self) {
        if let Some(e) = &self.error {
            eprintln!("RUN FAILED: {e}");
        }
        let status = if self.ok() { "ok" } else { "INCOMPLETE/FAILED" };
        println!(
            "load size={} ({} B) c={} n={}: {:.0} msg/s end-to-end, {:.0} msg/s accepted; \
             latency p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms (SMTP 250 p50 {:.1} p99 {:.1} ms); \
             server peak RSS {:.1} MB, CPU {:.3} s/1000 msgs ({:.2} cores, {:.0}% sys), client CPU {:.3} s/1000 msgs ({:.2} cores); \
             signature failures {}; {status}",
            self.size,
            self.message_bytes,
            self.concurrency,
            self.verified,
            self.e2e_rate,
            self.accept_rate,
            self.lat[0],
            self.lat[1],
            self.lat[2],
            self.lat[3],
            self.smtp_lat[0],
            self.smtp_lat[2],
            self.server_hwm_kb as f64 / 1024.0,
            self.per_1k(self.server_cpu_s),
            self.server_cpu_s / self.e2e_secs.max(1e-9),
            100.0 * self.server_sys_s / self.server_cpu_s.max(1e-9),
            self.per_1k(self.client_cpu_s),
            self.client_cpu_s / self.e2e_secs.max(1e-9),
            self.sig_failures,
        );
        println!(
            "    machine CPUs {:.0}% busy (everyone); server threads peak {}; server RSS {:.1} MB \
             before the first message{}",
            100.0 * self.machine_busy,
            self.max_threads,
            self.server_rss_start_kb as f64 / 1024.0,
            if self.message_bytes >= 1 << 20 {
                format!(
                    "; peak - start = {:.2} x the message size",
                    (self.server_hwm_kb.saturating_sub(self.server_rss_start_kb) * 1024) as f64
                        / self.message_bytes as f64
                )
            } else {
                String::new()
            },
        );
        if let Some(rate) = self.rate {
            println!(
                "    paced at {rate:.0} msg/s: started late by p50 {:.2} p99 {:.2} max {:.2} ms",
                self.sched_lag[0], self.sched_lag[2], self.sched_lag[3]
            );
        }
        if self.sig_failures > 0 {
            println!(
                "!!! {} WEBHOOK SIGNATURES FAILED VERIFICATION !!!",
                self.sig_failures
            );
        }
        if !self.ok() {
            println!(
                "    started {} accepted {} refused {} verified {} unknown {} timed_out {} \
                 killed {} client errors {:?}",
                self.started,
                self.accepted,
                self.refused,
                self.verified,
                self.unknown,
                self.timed_out,
                self.killed,
                self.client_errors
            );
        }
        println!("{}", self.json());
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "bench": "load",
            "ok": self.ok(),
            "size": self.size,
            "message_bytes": self.message_bytes,
            "concurrency": self.concurrency,
            "requested": self.requested,
            "started": self.started,
            "accepted": self.accepted,
            "refused": self.refused,
            "verified": self.verified,
            "signature_failures": self.sig_failures,
            "unknown_webhooks": self.unknown,
            "duplicate_webhooks": self.duplicates,
            "timed_out": self.timed_out,
            "client_errors": self.client_errors,
            "e2e_seconds": r3(self.e2e_secs),
            "e2e_msgs_per_s": r3(self.e2e_rate),
            "accept_msgs_per_s": r3(self.accept_rate),
            "latency_ms": {"p50": r3(self.lat[0]), "p90": r3(self.lat[1]),
                           "p99": r3(self.lat[2]), "max": r3(self.lat[3])},
            "smtp_latency_ms": {"p50": r3(self.smtp_lat[0]), "p90": r3(self.smtp_lat[1]),
                                "p99": r3(self.smtp_lat[2]), "max": r3(self.smtp_lat[3])},
            "server_peak_rss_kb": self.server_hwm_kb,
            "server_rss_start_kb": self.server_rss_start_kb,
            "peak_rss_over_start_per_message_byte": r3((self.server_hwm_kb.saturating_sub(self.server_rss_start_kb) * 1024) as f64 / self.message_bytes.max(1) as f64),
            "rate_target": self.rate,
            "schedule_lag_ms": {"p50": r3(self.sched_lag[0]), "p99": r3(self.sched_lag[2]), "max": r3(self.sched_lag[3])},
            "server_cpu_s": r3(self.server_cpu_s),
            "server_cpu_s_per_1000": r3(self.per_1k(self.server_cpu_s)),
            "server_sys_s": r3(self.server_sys_s),
            "loadavg_at_start": self.loadavg,
            "machine_cpu_busy_share": r3(self.machine_busy),
            "client_cpu_s": r3(self.client_cpu_s),
            "client_cpu_s_per_1000": r3(self.per_1k(self.client_cpu_s)),
            "server_max_threads": self.max_threads,
            "max_backlog": self.max_backlog,
            "webhook_connections": self.webhook_connections,
            "shutdown_ms": self.shutdown_ms,
            "killed": self.killed,
            "spool_files_left": self.spool_left,
            "server_warnings": self.server_warnings,
            "error": self.error,
        })
    }
}

/// Nearest-rank percentiles p50, p90, p99 and the maximum, in ms.
pub(crate) fn percentiles(mut ns: Vec<u64>) -> [f64; 4] {
    if ns.is_empty() {
        return [0.0; 4];
    }
    ns.sort_unstable();
    let at = |p: f64| {
        let rank = ((p * ns.len() as f64).ceil() as usize).clamp(1, ns.len());
        ns[rank - 1] as f64 / 1e6
    };
    [at(0.50), at(0.90), at(0.99), at(1.0)]
}

#[derive(Debug, Default)]
pub(crate) struct OutReport {
    pub(crate) size: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) request_bytes: usize,
    pub(crate) requested: usize,
    pub(crate) started: usize,
    /// `202`s.
    pub(crate) accepted: usize,
    pub(crate) refused: usize,
    pub(crate) client_errors: Vec<String>,
    pub(crate) timed_out: bool,
    /// Messages whose status record says `sent`, and how many the sink got.
    pub(crate) sent: usize,
    pub(crate) sink_received: u64,
    /// SMTP sessions Postern opened to the relay (smtp-sink's count).
    pub(crate) relay_sessions: u64,
    /// 202s / (first request start → last 202).
    pub(crate) api_rate: f64,
    /// sent / (first request start → last relay acceptance).
    pub(crate) relay_rate: f64,
    pub(crate) relay_secs: f64,
    /// ms, request start → the relay's 250 (the attempt's `at` in the
    /// status record).
    pub(crate) lat: [f64; 4],
    /// ms, request start → 202.
    pub(crate) api_lat: [f64; 4],
    pub(crate) rate: Option<f64>,
    pub(crate) sched_lag: [f64; 4],
    pub(crate) server_hwm_kb: u64,
    pub(crate) server_cpu_s: f64,
    pub(crate) server_sys_s: f64,
    pub(crate) client_cpu_s: f64,
    pub(crate) sink_cpu_s: f64,
    pub(crate) machine_busy: f64,
    pub(crate) max_threads: u64,
    pub(crate) loadavg: f64,
    pub(crate) killed: bool,
    pub(crate) server_warnings: usize,
    pub(crate) error: Option<String>,
}

impl OutReport {
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none()
            && !self.timed_out
            && !self.killed
            && self.client_errors.is_empty()
            && self.refused == 0
            && self.started > 0
            && self.accepted == self.started
            && self.sent == self.accepted
            && self.sink_received == self.accepted as u64
    }

    pub(crate) fn per_1k(&self, secs: f64) -> f64 {
        secs * 1000.0 / self.sent.max(1) as f64
    }

    pub(crate) fn print(&self) {
        if let Some(e) = &self.error {
            eprintln!("RUN FAILED: {e}");
        }
        println!(
            "outbound size={} ({} B request) c={} n={}: {:.0} msg/s accepted by the API (202), \
             {:.0} msg/s accepted by the relay; request -> relay 250 p50 {:.1} p90 {:.1} p99 {:.1} \
             max {:.1} ms; request -> 202 p50 {:.1} p99 {:.1} ms; server peak RSS {:.1} MB, \
             CPU {:.3} s/1000 msgs ({:.0}% sys), client CPU {:.3} s/1000, sink CPU {:.3} s/1000; \
             sent {} sink got {} in {} relay sessions; machine CPUs {:.0}% busy; {}",
            self.size,
            self.request_bytes,
            self.concurrency,
            self.accepted,
            self.api_rate,
            self.relay_rate,
            self.lat[0],
            self.lat[1],
            self.lat[2],
            self.lat[3],
            self.api_lat[0],
            self.api_lat[2],
            self.server_hwm_kb as f64 / 1024.0,
            self.per_1k(self.server_cpu_s),
            100.0 * self.server_sys_s / self.server_cpu_s.max(1e-9),
            self.per_1k(self.client_cpu_s),
            self.per_1k(self.sink_cpu_s),
            self.sent,
            self.sink_received,
            self.relay_sessions,
            100.0 * self.machine_busy,
            if self.ok() { "ok" } else { "INCOMPLETE/FAILED" },
        );
        if !self.ok() {
            println!(
                "    started {} accepted {} refused {} sent {} sink {} timed_out {} errors {:?}",
                self.started,
                self.accepted,
                self.refused,
                self.sent,
                self.sink_received,
                self.timed_out,
                self.client_errors
            );
        }
        println!("{}", self.json());
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let ms = |p: &[f64; 4]| json!({"p50": r3(p[0]), "p90": r3(p[1]), "p99": r3(p[2]), "max": r3(p[3])});
        json!({
            "bench": "outbound", "ok": self.ok(), "size": self.size,
            "request_bytes": self.request_bytes, "concurrency": self.concurrency,
            "requested": self.requested, "started": self.started, "accepted": self.accepted,
            "refused": self.refused, "sent": self.sent, "sink_received": self.sink_received,
            "relay_sessions": self.relay_sessions,
            "client_errors": self.client_errors, "timed_out": self.timed_out,
            "api_msgs_per_s": r3(self.api_rate), "relay_msgs_per_s": r3(self.relay_rate),
            "relay_seconds": r3(self.relay_secs),
            "request_to_relay_250_ms": ms(&self.lat), "request_to_202_ms": ms(&self.api_lat),
            "rate_target": self.rate, "schedule_lag_ms": ms(&self.sched_lag),
            "server_peak_rss_kb": self.server_hwm_kb,
            "server_cpu_s_per_1000": r3(self.per_1k(self.server_cpu_s)),
            "server_sys_s": r3(self.server_sys_s),
            "client_cpu_s_per_1000": r3(self.per_1k(self.client_cpu_s)),
            "sink_cpu_s_per_1000": r3(self.per_1k(self.sink_cpu_s)),
            "server_max_threads": self.max_threads, "loadavg_at_start": self.loadavg,
            "machine_cpu_busy_share": r3(self.machine_busy),
            "killed": self.killed, "server_warnings": self.server_warnings, "error": self.error,
        })
    }
}
