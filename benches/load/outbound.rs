//! Outbound runs: the sending API into postern, `smtp-sink` as the relay.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use crate::clients::{api_client, join_clients, relay_time};
use crate::corpus::api_request;
use crate::options::{Opts, Size};
use crate::receiver::Run;
use crate::report::{OutReport, percentiles};
use crate::server::Server;
use crate::sink::Sink;
use crate::system::{
    CLOCK_TICKS, ProcStats, busy_share, cpu_times, loadavg, thread_sampler, unix_ns,
};

/// One sending-API run: C clients POST /v1/messages to a fresh server whose
/// relay is a fresh smtp-sink. Throughput and latency are taken at the
/// relay: each message's status record has the time of the attempt that
/// the relay accepted, read back after the run (no polling during it).
pub(crate) async fn outbound(
    opts: &Opts,
    size: Size,
    c: usize,
    n: usize,
    send_for: Option<Duration>,
    rate: Option<f64>,
) -> OutReport {
    let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
    let body = Bytes::from(api_request(size));
    let mut report = OutReport {
        size: size.label(),
        concurrency: c,
        request_bytes: body.len(),
        requested: n,
        rate,
        loadavg: loadavg(),
        ..OutReport::default()
    };
    let sink = match Sink::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let env = [(
        "POSTERN_RELAY_URL",
        format!("smtp://127.0.0.1:{}?tls=none", sink.addr.port()),
    )];
    let mut server = match Server::start(opts, None, &env).await {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let http = match reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(c + 8)
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            report.error = Some(format!("HTTP client: {e}"));
            return report;
        }
    };
    let base = format!("http://{}", server.http);
    let run = Arc::new(Run::paced(n, rate));
    let base_unix = unix_ns() - run.now() as i128;
    let ids: Arc<Vec<OnceLock<String>>> = Arc::new((0..n).map(|_| OnceLock::new()).collect());
    let sink0 = sink.count();
    let server0 = server.stats();
    let client0 = ProcStats::read("self");
    let sink_cpu0 = sink.stats();
    let machine0 = cpu_times();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = thread_sampler(server.pid, done.clone());
    if let Some(d) = send_for {
        let run = run.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            run.stop_sending.store(true, Relaxed);
        });
    }
    run.origin.store(run.now(), Relaxed);
    let url = format!("{base}/v1/messages");
    let clients: Vec<_> = (0..c)
        .map(|_| {
            tokio::spawn(api_client(
                run.clone(),
                ids.clone(),
                http.clone(),
                url.clone(),
                body.clone(),
            ))
        })
        .collect();
    // The relay must receive every accepted message.
    let (errors, timed_out) = join_clients(clients, deadline, || {
        sink.count() - sink0 >= run.accepted.load(Relaxed) as u64
    })
    .await;
    report.client_errors = errors;
    report.timed_out = timed_out;
    if timed_out {
        eprintln!(
            "--max-seconds {} reached: reporting what arrived so far",
            opts.max_seconds
        );
    }
    let server1 = server.stats();
    let client1 = ProcStats::read("self");
    report.sink_received = sink.count() - sink0;
    report.relay_sessions = sink.sessions();
    report.machine_busy = busy_share(machine0, cpu_times());
    report.sink_cpu_s =
        sink.stats().cpu_ticks.saturating_sub(sink_cpu0.cpu_ticks) as f64 / CLOCK_TICKS;
    done.store(true, Relaxed);
    report.max_threads = sampler.await.unwrap_or(0);

    // The relay's acceptance times, from the status records (8 readers).
    let until = Instant::now() + Duration::from_secs(10);
    let next = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (run, ids, http, base, next) = (
                run.clone(),
                ids.clone(),
                http.clone(),
                base.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= ids.len() {
                        break;
                    }
                    if let Some(id) = ids[i].get() {
                        let t = relay_time(&http, &base, id, base_unix, until).await;
                        run.arrived[i].store(t, Relaxed);
                    }
                }
            })
        })
        .collect();
    for r in readers {
        let _ = r.await;
    }

    let get = |v: &Vec<AtomicU64>, i: usize| v[i].load(Relaxed);
    let (mut lat, mut api_lat, mut first, mut last_202, mut last_sent) =
        (Vec::new(), Vec::new(), u64::MAX, 0u64, 0u64);
    let mut started = 0;
    for i in 0..n {
        let s = get(&run.started, i);
        if s == 0 {
            continue;
        }
        started += 1;
        first = first.min(s);
        let (a, w) = (get(&run.accepted_at, i), get(&run.arrived, i));
        if a != 0 {
            api_lat.push(a - s);
            last_202 = last_202.max(a);
        }
        if w != 0 {
            lat.push(w.saturating_sub(s));
            last_sent = last_sent.max(w);
        }
    }
    report.started = started;
    report.accepted = run.accepted.load(Relaxed);
    report.refused = run.refused.load(Relaxed);
    report.sent = lat.len();
    report.api_rate =
        report.accepted as f64 / (last_202.saturating_sub(first) as f64 / 1e9).max(1e-9);
    report.relay_secs = last_sent.saturating_sub(first) as f64 / 1e9;
    report.relay_rate = report.sent as f64 / report.relay_secs.max(1e-9);
    report.lat = percentiles(lat);
    report.api_lat = percentiles(api_lat);
    report.sched_lag = percentiles(
        run.lag
            .iter()
            .map(|l| l.load(Relaxed))
            .filter(|l| *l > 0)
            .map(|l| l - 1)
            .collect(),
    );
    report.server_hwm_kb = server1.hwm_kb;
    report.server_cpu_s = server1.cpu_ticks.saturating_sub(server0.cpu_ticks) as f64 / CLOCK_TICKS;
    report.server_sys_s = server1.sys_ticks.saturating_sub(server0.sys_ticks) as f64 / CLOCK_TICKS;
    report.client_cpu_s = client1.cpu_ticks.saturating_sub(client0.cpu_ticks) as f64 / CLOCK_TICKS;
    let (_, killed) = server.stop().await;
    report.killed = killed;
    report.server_warnings = server.warnings();
    report
}

// ----------------------------------------------------------- full matrix
