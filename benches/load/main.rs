//! Load benchmark: the real `postern` binary, end to end.
//!
//! `cargo bench --bench load -- [options]` starts the release binary as a
//! child process on free loopback ports with a fresh on-disk spool (fsync
//! on, the default), points its webhook at an in-process axum receiver that
//! verifies every signature, and drives it with C raw SMTP connections
//! (PIPELINING: MAIL, RCPT and DATA in one write). See docs/BENCHMARKS.md.
//!
//! Every run is bounded: at most N messages and `--max-seconds` of wall
//! clock, after which it reports what it has and exits non-zero.
//!
//! `--matrix full` also runs Postfix's `smtp-source` into `smtp-sink` (the
//! ceiling of this machine for moving SMTP over loopback) pair by pair with
//! the same message, concurrency and count, and drives the sending API
//! (`POST /v1/messages`) with `smtp-sink` as the relay.
//!
//! # Layout
//!
//! - `options`: the command line ([`options::Opts`]).
//! - `corpus`: the messages sent, SMTP sources and API requests per size.
//! - `server`: the `postern` binary under test on free loopback ports.
//! - `receiver`: the webhook receiver, verifying every signature.
//! - `clients`: pipelined SMTP connections and the sending-API client.
//! - `sink`: Postfix's `smtp-source` → `smtp-sink`, the machine's ceiling.
//! - `inbound` / `outbound`: one run of each direction, the quick matrix,
//!   idle sessions.
//! - `report`: what a run measured, printed; `system`: CPU, load, RSS.
//! - this file: `main` and the full matrix (every run side by side).

mod clients;
mod corpus;
mod inbound;
mod options;
mod outbound;
mod receiver;
mod report;
mod server;
mod sink;
mod system;

use std::time::{Duration, Instant};

use serde_json::json;

use crate::inbound::{CELL_MAX_MESSAGES, Cell, idle, load, matrix};
use crate::options::{Matrix, Opts, Size, USAGE, parse_args};
use crate::outbound::outbound;
use crate::report::{OutReport, Report};
use crate::sink::{SourceRun, source_to_sink};
use crate::system::describe_setup;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        // `cargo test --benches` runs bench targets without `--bench`:
        // a load run does not belong in a test suite.
        println!("load bench: run it with `cargo bench --bench load -- [options]`");
        return;
    }
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}\n");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = rt.block_on(async {
        describe_setup(&opts);
        if let Some(k) = opts.idle {
            idle(&opts, k).await
        } else if opts.matrix == Some(Matrix::Quick) {
            matrix(&opts).await
        } else if opts.matrix == Some(Matrix::Full) {
            full_matrix(&opts, true).await
        } else if opts.matrix == Some(Matrix::Outbound) {
            full_matrix(&opts, false).await
        } else if opts.sink {
            let s = source_to_sink(&opts, opts.size, opts.concurrency, opts.messages).await;
            s.print();
            println!("{}", s.json());
            s.ok()
        } else if opts.outbound {
            let r = outbound(
                &opts,
                opts.size,
                opts.concurrency,
                opts.messages,
                None,
                opts.rate,
            )
            .await;
            r.print();
            r.ok()
        } else {
            let cell = Cell {
                size: opts.size,
                concurrency: opts.concurrency,
                n: opts.messages,
                send_for: None,
                rate: opts.rate,
            };
            let r = load(&opts, cell).await;
            r.print();
            r.ok()
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    if !ok {
        std::process::exit(1);
    }
}

/// `--matrix full` (and `outbound`): Postern against Postfix's own test
/// tools, pair by pair, in one run; markdown tables at the end.
async fn full_matrix(opts: &Opts, inbound: bool) -> bool {
    let t0 = Instant::now();
    let send = Some(Duration::from_secs(opts.cell_seconds));
    let mut ok = true;
    let mut pairs: Vec<(Report, SourceRun)> = Vec::new();
    let mut half: Option<Report> = None;
    if inbound {
        let mut cells = Vec::new();
        for size in [Size::K2, Size::K20, Size::M1] {
            for c in [1, 10, 50, 200] {
                cells.push(Cell {
                    size,
                    concurrency: c,
                    n: if size == Size::M1 {
                        5000
                    } else {
                        CELL_MAX_MESSAGES
                    },
                    send_for: send,
                    rate: None,
                });
            }
        }
        for (c, n) in [(1, 3), (10, 20)] {
            cells.push(Cell {
                size: Size::M20,
                concurrency: c,
                n,
                send_for: None,
                rate: None,
            });
        }
        for cell in cells {
            let r = load(opts, cell).await;
            r.print();
            let s = source_to_sink(opts, cell.size, cell.concurrency, r.verified.max(1)).await;
            s.print();
            if cell.size == Size::K20 && cell.concurrency == 50 && r.ok() {
                let rate = r.e2e_rate / 2.0;
                let h = load(
                    opts,
                    Cell {
                        rate: Some(rate),
                        ..cell
                    },
                )
                .await;
                h.print();
                half = Some(h);
            }
            pairs.push((r, s));
        }
    }
    let mut out: Vec<(OutReport, SourceRun)> = Vec::new();
    for size in [Size::K2, Size::K20] {
        for c in [10, 50] {
            let r = outbound(opts, size, c, CELL_MAX_MESSAGES, send, None).await;
            r.print();
            let s = source_to_sink(opts, size, c, r.sent.max(1)).await;
            s.print();
            // Unpaced, the API accepts faster than the relay drains, so the
            // latency above is mostly queueing: again at half the relay rate.
            let paced = (c == 50 && r.ok()).then_some(r.relay_rate / 2.0);
            out.push((r, s));
            if let Some(rate) = paced {
                let r = outbound(opts, size, c, CELL_MAX_MESSAGES, send, Some(rate)).await;
                r.print();
                let s = source_to_sink(opts, size, c, r.sent.max(1)).await;
                s.print();
                out.push((r, s));
            }
        }
    }

    println!();
    if inbound {
        println!(
            "| size | C | N | Postern e2e msg/s | Postern accept msg/s | p50 ms | p99 ms \
             | peak RSS MB | server CPU s/1k | CPUs busy | smtp-source→smtp-sink msg/s | e2e / sink | accept / sink | ok |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        for (r, s) in &pairs {
            ok &= r.ok() && s.ok();
            println!(
                "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.3} | {:.0} % | {:.0} | {:.2} | {:.2} | {} |",
                r.size,
                r.concurrency,
                r.verified,
                r.e2e_rate,
                r.accept_rate,
                r.lat[0],
                r.lat[2],
                r.server_hwm_kb as f64 / 1024.0,
                r.per_1k(r.server_cpu_s),
                100.0 * r.machine_busy,
                s.rate,
                r.e2e_rate / s.rate.max(1e-9),
                r.accept_rate / s.rate.max(1e-9),
                if r.ok() && s.ok() { "yes" } else { "NO" },
            );
        }
        if let Some(h) = &half {
            ok &= h.ok();
            println!();
            println!(
                "| 20k, C = 50, paced | target msg/s | e2e msg/s | N | p50 ms | p90 ms | p99 ms | max ms \
                 | SMTP 250 p99 ms | start lag p99 ms | p99 < 25 ms | ok |"
            );
            println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|");
            println!(
                "| 50 % of max | {:.0} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} |",
                h.rate.unwrap_or(0.0),
                h.e2e_rate,
                h.verified,
                h.lat[0],
                h.lat[1],
                h.lat[2],
                h.lat[3],
                h.smtp_lat[2],
                h.sched_lag[2],
                if h.lat[2] < 25.0 { "met" } else { "MISSED" },
                if h.ok() { "yes" } else { "NO" },
            );
        }
    }
    println!();
    println!(
        "| outbound size | C | pace | N | API 202 msg/s | relay-accepted msg/s | p50 ms | p90 ms | p99 ms | max ms \
         | 202 p99 ms | peak RSS MB | server CPU s/1k | CPUs busy | relay sessions | smtp-source→smtp-sink msg/s | relay / sink | ok |"
    );
    println!("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for (r, s) in &out {
        ok &= r.ok() && s.ok();
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} | {:.0} % | {} | {:.0} | {:.2} | {} |",
            r.size,
            r.concurrency,
            r.rate.map_or("max".to_string(), |x| format!("{x:.0}/s")),
            r.sent,
            r.api_rate,
            r.relay_rate,
            r.lat[0],
            r.lat[1],
            r.lat[2],
            r.lat[3],
            r.api_lat[2],
            r.server_hwm_kb as f64 / 1024.0,
            r.per_1k(r.server_cpu_s),
            100.0 * r.machine_busy,
            r.relay_sessions,
            s.rate,
            r.relay_rate / s.rate.max(1e-9),
            if r.ok() && s.ok() { "yes" } else { "NO" },
        );
    }
    if inbound
        && let Some((r, s)) = pairs
            .iter()
            .find(|(r, _)| r.size == "20k" && r.concurrency == 50)
    {
        let ratio = r.e2e_rate / s.rate.max(1e-9);
        println!(
            "\ntarget: 20k at C = 50 >= 60 % of smtp-sink: {:.0} % end to end ({:.0} % accepted): {}",
            100.0 * ratio,
            100.0 * r.accept_rate / s.rate.max(1e-9),
            if ratio >= 0.6 { "met" } else { "MISSED" }
        );
    }
    println!("total time {:.0} s", t0.elapsed().as_secs_f64());
    println!(
        "{}",
        json!({"bench": "load-matrix-full", "ok": ok,
               "inbound": pairs.iter().map(|(r, s)| json!({"postern": r.json(), "smtp_sink": s.json()})).collect::<Vec<_>>(),
               "half_rate": half.as_ref().map(Report::json),
               "outbound": out.iter().map(|(r, s)| json!({"postern": r.json(), "smtp_sink": s.json()})).collect::<Vec<_>>()})
    );
    ok
}
