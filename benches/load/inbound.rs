//! Inbound runs: SMTP into postern, webhooks out; one cell, the quick matrix, idle sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::clients::{SmtpConn, client, join_clients};
use crate::corpus::{DOMAIN, make_message};
use crate::options::{Opts, Size};
use crate::receiver::{Run, start_receiver};
use crate::report::{Report, percentiles};
use crate::server::{Server, session_caps};
use crate::system::{CLOCK_TICKS, ProcStats, busy_share, cpu_times, loadavg};

/// Matrix cells send for this long (N adapts to the machine), capped at N.
const CELL_SEND: Duration = Duration::from_secs(3);
pub(crate) const CELL_MAX_MESSAGES: usize = 50_000;
/// What one load run does: `send_for` stops starting new transactions
/// after that long (matrix cells); N is the cap either way; `rate` paces
/// the starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    pub(crate) size: Size,
    pub(crate) concurrency: usize,
    pub(crate) n: usize,
    pub(crate) send_for: Option<Duration>,
    pub(crate) rate: Option<f64>,
}

/// One load run against a fresh server.
pub(crate) async fn load(opts: &Opts, cell: Cell) -> Report {
    let Cell {
        size,
        concurrency,
        n,
        send_for,
        rate,
    } = cell;
    let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
    let body = Arc::new(make_message(size));
    let mut report = Report {
        size: size.label(),
        concurrency,
        message_bytes: body.len() + format!("Message-ID: <r0x0.{n}@{DOMAIN}>\r\n").len(),
        requested: n,
        loadavg: loadavg(),
        rate,
        ..Report::default()
    };
    let run = Arc::new(Run::paced(n, rate));
    let receiver = start_receiver(run.clone()).await;
    // Replicas start one after the other: the first applies the schema.
    let mut replicas = Vec::with_capacity(opts.replicas);
    for _ in 0..opts.replicas {
        match Server::start(opts, Some(receiver), &session_caps(concurrency)).await {
            Ok(s) => replicas.push(s),
            Err(e) => {
                report.error = Some(e);
                return report;
            }
        }
    }
    let server = &replicas[0];

    let server0 = replicas_stats(&replicas);
    report.server_rss_start_kb = server0.rss_kb;
    let client0 = ProcStats::read("self");
    let machine0 = cpu_times();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (run, done, pid) = (run.clone(), done.clone(), server.pid.to_string());
        tokio::spawn(async move {
            let (mut threads, mut backlog) = (0, 0);
            while !done.load(Relaxed) {
                threads = threads.max(ProcStats::read(&pid).threads);
                backlog = backlog.max(
                    run.accepted
                        .load(Relaxed)
                        .saturating_sub(run.verified.load(Relaxed)),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (threads, backlog)
        })
    };
    if let Some(d) = send_for {
        let run = run.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            run.stop_sending.store(true, Relaxed);
        });
    }
    run.origin.store(run.now(), Relaxed);
    // Connection i goes to replica i mod K: an even spread, like a
    // round-robin balancer.
    let clients: Vec<_> = (0..concurrency)
        .map(|i| {
            let smtp = replicas[i % replicas.len()].smtp;
            tokio::spawn(client(run.clone(), smtp, body.clone(), opts.new_connection))
        })
        .collect();
    // Every accepted message must come back as a webhook (one that
    // fails verification is counted, and not retried: we answer 200).
    let (errors, timed_out) = join_clients(clients, deadline, || {
        run.verified.load(Relaxed) + run.sig_failures.load(Relaxed) >= run.accepted.load(Relaxed)
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
    let server1 = replicas_stats(&replicas);
    let client1 = ProcStats::read("self");
    report.machine_busy = busy_share(machine0, cpu_times());
    done.store(true, Relaxed);
    let (threads, backlog) = sampler.await.unwrap_or((0, 0));

    // Tally.
    let get = |v: &Vec<AtomicU64>, i: usize| v[i].load(Relaxed);
    let mut starts = Vec::new();
    let (mut lat, mut smtp_lat) = (Vec::new(), Vec::new());
    let (mut last_arrival, mut last_accept) = (0u64, 0u64);
    for i in 0..n {
        let s = get(&run.started, i);
        if s == 0 {
            continue;
        }
        starts.push(s);
        let (a, w) = (get(&run.accepted_at, i), get(&run.arrived, i));
        if a != 0 {
            smtp_lat.push(a - s);
            last_accept = last_accept.max(a);
        }
        if w != 0 {
            lat.push(w - s);
            last_arrival = last_arrival.max(w);
        }
    }
    let first = starts.iter().copied().min().unwrap_or(0);
    report.started = starts.len();
    report.accepted = run.accepted.load(Relaxed);
    report.refused = run.refused.load(Relaxed);
    report.verified = run.verified.load(Relaxed);
    report.sig_failures = run.sig_failures.load(Relaxed);
    report.unknown = run.unknown.load(Relaxed);
    report.duplicates = run.duplicates.load(Relaxed);
    report.e2e_secs = last_arrival.saturating_sub(first) as f64 / 1e9;
    report.e2e_rate = report.verified as f64 / report.e2e_secs.max(1e-9);
    report.accept_rate =
        report.accepted as f64 / (last_accept.saturating_sub(first) as f64 / 1e9).max(1e-9);
    report.lat = percentiles(lat);
    report.smtp_lat = percentiles(smtp_lat);
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
    report.max_threads = threads;
    report.max_backlog = backlog;
    report.webhook_connections = run.webhook_peers.lock().expect("peers").len();

    for server in &mut replicas {
        let (took, killed) = server.stop().await;
        report.shutdown_ms = report.shutdown_ms.max(took.as_millis());
        report.killed |= killed;
        report.spool_left += server.spool_files();
        report.server_warnings += server.warnings();
    }
    report
}

/// The replicas' CPU added up, their peak RSS the largest of them.
fn replicas_stats(replicas: &[Server]) -> ProcStats {
    let mut sum = ProcStats::default();
    for s in replicas.iter().map(Server::stats) {
        sum.cpu_ticks += s.cpu_ticks;
        sum.sys_ticks += s.sys_ticks;
        sum.rss_kb = sum.rss_kb.max(s.rss_kb);
        sum.hwm_kb = sum.hwm_kb.max(s.hwm_kb);
        sum.threads = sum.threads.max(s.threads);
    }
    sum
}

pub(crate) async fn matrix(opts: &Opts) -> bool {
    let mut rows = Vec::new();
    for size in [Size::K2, Size::K20] {
        for c in [1, 10, 50] {
            let cell = Cell {
                size,
                concurrency: c,
                n: CELL_MAX_MESSAGES,
                send_for: Some(CELL_SEND),
                rate: None,
            };
            let r = load(opts, cell).await;
            r.print();
            rows.push(r);
        }
    }
    println!();
    println!(
        "| size | C | N | e2e msg/s | accept msg/s | p50 ms | p90 ms | p99 ms | max ms \
         | server peak RSS MB | server CPU s/1k | client CPU s/1k | sig fail | ok |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} | {} | {} |",
            r.size,
            r.concurrency,
            r.verified,
            r.e2e_rate,
            r.accept_rate,
            r.lat[0],
            r.lat[1],
            r.lat[2],
            r.lat[3],
            r.server_hwm_kb as f64 / 1024.0,
            r.per_1k(r.server_cpu_s),
            r.per_1k(r.client_cpu_s),
            r.sig_failures,
            if r.ok() { "yes" } else { "NO" },
        );
    }
    println!(
        "{}",
        json!({"bench": "load-matrix", "ok": rows.iter().all(Report::ok),
               "cells": rows.iter().map(Report::json).collect::<Vec<_>>()})
    );
    rows.iter().all(Report::ok)
}

// ------------------------------------------------------------- idle mode

pub(crate) async fn idle(opts: &Opts, k: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(opts.max_seconds);
    let mut server = match Server::start(opts, None, &session_caps(k)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("RUN FAILED: {e}");
            return false;
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.stats();
    let t = Instant::now();
    let mut conns = Vec::with_capacity(k);
    let mut error = None;
    while conns.len() < k {
        if Instant::now() > deadline {
            error = Some(format!("--max-seconds reached with {} open", conns.len()));
            break;
        }
        match tokio::time::timeout(Duration::from_secs(10), SmtpConn::connect(server.smtp)).await {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                error = Some(format!("connection {}: {e}", conns.len() + 1));
                break;
            }
            Err(_) => {
                error = Some(format!(
                    "connection {}: no greeting in 10 s",
                    conns.len() + 1
                ));
                break;
            }
        }
    }
    let open_ms = t.elapsed().as_millis();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held0 = server.stats();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = server.stats();
    // Are the idle sessions all still there? Each should answer NOOP.
    let mut alive = 0;
    for c in conns.iter_mut().step_by((k / 20).max(1)) {
        if c.send(b"NOOP\r\n").await.is_ok() && matches!(c.reply().await, Ok((250, _))) {
            alive += 1;
        }
    }
    let open = conns.len();
    drop(conns);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.stats();
    let (took, killed) = server.stop().await;
    let per_conn = (held.rss_kb as f64 - before.rss_kb as f64) / open.max(1) as f64;
    let idle_cpu = held.cpu_ticks.saturating_sub(held0.cpu_ticks) as f64 / CLOCK_TICKS;
    println!(
        "idle: {open}/{k} connections open in {open_ms} ms; server RSS {:.1} MB before, \
         {:.1} MB with {open} open ({per_conn:.1} KB per connection), {:.1} MB after closing; \
         threads {} -> {}; CPU while idle 2 s: {idle_cpu:.2} s; {}",
        before.rss_kb as f64 / 1024.0,
        held.rss_kb as f64 / 1024.0,
        after.rss_kb as f64 / 1024.0,
        before.threads,
        held.threads,
        if error.is_none() { "ok" } else { "FAILED" },
    );
    if let Some(e) = &error {
        println!("    {e}");
    }
    println!(
        "{}",
        json!({"bench": "idle", "ok": error.is_none() && !killed, "requested": k, "open": open,
               "open_ms": open_ms, "rss_before_kb": before.rss_kb, "rss_open_kb": held.rss_kb,
               "rss_after_close_kb": after.rss_kb, "rss_per_connection_kb": per_conn,
               "peak_rss_kb": after.hwm_kb, "threads_before": before.threads,
               "threads_open": held.threads, "server_cpu_s_idle_2s": idle_cpu,
               "noop_probes_alive": alive, "shutdown_ms": took.as_millis(), "killed": killed,
               "error": error})
    );
    error.is_none() && !killed
}

// ---------------------------------------------------- Postfix's tools
