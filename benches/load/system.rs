//! What the machine is doing: CPU times, load, file systems, a process's RSS and threads.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use crate::options::Opts;

pub(crate) const CLOCK_TICKS: f64 = 100.0;
pub(crate) fn describe_setup(opts: &Opts) {
    let bin = env!("CARGO_BIN_EXE_postern");
    eprintln!(
        "postern binary: {bin}{}",
        if bin.contains("/debug/") {
            "  (DEBUG BUILD: numbers are meaningless, use `cargo bench`)"
        } else {
            ""
        }
    );
    let _ = std::fs::create_dir_all(&opts.spool_parent);
    let fs = fs_type(&opts.spool_parent).unwrap_or_else(|| "?".into());
    eprintln!(
        "spool parent: {} (filesystem {fs}), fsync {}",
        opts.spool_parent.display(),
        if opts.fsync { "on" } else { "OFF" }
    );
    if fs == "tmpfs" || fs == "ramfs" {
        eprintln!("WARNING: the spool is in memory; fsync costs nothing there");
    }
    let load = loadavg();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("load average {load:.2} on {cpus} CPUs");
    if load > 0.5 * cpus as f64 {
        eprintln!("WARNING: the machine is busy; numbers will be noisy");
    }
}

/// Machine-wide CPU time from /proc/stat: (busy, total) in ticks.
pub(crate) fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPUs that were busy between two `cpu_times()`.
pub(crate) fn busy_share(a: (u64, u64), b: (u64, u64)) -> f64 {
    (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64
}

/// The 1-minute load average.
pub(crate) fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The filesystem type holding `path` (longest mount-point prefix in
/// /proc/self/mountinfo).
fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount = *fields.get(4)?;
        let sep = fields.iter().position(|f| *f == "-")?;
        let fstype = fields.get(sep + 1)?.to_string();
        if path.starts_with(mount) && best.as_ref().is_none_or(|(l, _)| mount.len() >= *l) {
            best = Some((mount.len(), fstype));
        }
    }
    best.map(|(_, t)| t)
}

// ------------------------------------------------------------- messages

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProcStats {
    pub(crate) rss_kb: u64,
    pub(crate) hwm_kb: u64,
    pub(crate) threads: u64,
    pub(crate) cpu_ticks: u64,
    pub(crate) sys_ticks: u64,
}

impl ProcStats {
    /// `who` is a pid or "self".
    pub(crate) fn read(who: &str) -> ProcStats {
        let mut s = ProcStats::default();
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{who}/status")) {
            for line in status.lines() {
                let mut f = line.split_whitespace();
                let (k, v) = (f.next(), f.next().and_then(|v| v.parse().ok()));
                match (k, v) {
                    (Some("VmRSS:"), Some(v)) => s.rss_kb = v,
                    (Some("VmHWM:"), Some(v)) => s.hwm_kb = v,
                    (Some("Threads:"), Some(v)) => s.threads = v,
                    _ => {}
                }
            }
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{who}/stat")) {
            // Fields after "(comm)": state is field 3, utime 14, stime 15.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<u64> = rest
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0))
                    .collect();
                s.sys_ticks = f.get(12).copied().unwrap_or(0);
                s.cpu_ticks = f.get(11).copied().unwrap_or(0) + s.sys_ticks;
            }
        }
        s
    }
}

// ------------------------------------------------------------ SMTP client

pub(crate) fn unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Peak thread count of `pid`, sampled every 50 ms until `done`.
pub(crate) fn thread_sampler(pid: u32, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut threads = 0;
        while !done.load(Relaxed) {
            threads = threads.max(ProcStats::read(&pid.to_string()).threads);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        threads
    })
}
