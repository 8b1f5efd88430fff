//! Postfix's `smtp-source` into `smtp-sink`: the ceiling of this machine for SMTP over loopback.

use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::clients::SmtpConn;
use crate::corpus::{DOMAIN, source_file};
use crate::options::{Opts, Size};
use crate::server::free_port;
use crate::system::{CLOCK_TICKS, ProcStats};

/// Whether this process runs as root (smtp-sink then needs `-u`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            Some(line.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Postfix's `smtp-sink` on a free loopback port: accepts any number of
/// messages and throws them away, counting them (`-c`) on its stdout.
pub(crate) struct Sink {
    pub(crate) child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
}

impl Sink {
    pub(crate) async fn start(opts: &Opts) -> Result<Sink, String> {
        std::fs::create_dir_all(&opts.spool_parent).map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("smtp-sink-")
            .tempdir_in(&opts.spool_parent)
            .map_err(|e| format!("sink tempdir: {e}"))?;
        let addr = free_port();
        let out = std::fs::File::create(dir.path().join("counters")).map_err(|e| e.to_string())?;
        let err = std::fs::File::create(dir.path().join("stderr")).map_err(|e| e.to_string())?;
        let bin = opts.postfix_bin.join("smtp-sink");
        let mut cmd = Command::new(&bin);
        // -c: running counters; -m: up to 2048 simultaneous sessions (the
        // default 256 would queue the C = 200 runs' connections).
        cmd.args(["-c", "-m", "2048"]);
        if is_root() {
            cmd.args(["-u", "root"]);
        }
        cmd.arg(format!("127.0.0.1:{}", addr.port()))
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e} (apt-get install postfix)", bin.display()))?;
        let mut sink = Sink {
            pid: child.id(),
            child: Some(child),
            addr,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(2), SmtpConn::connect(addr)).await
            {
                let _ = c.send(b"QUIT\r\n").await;
                let _ = c.reply().await;
                return Ok(sink);
            }
            if let Some(status) = sink
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let err = std::fs::read_to_string(sink.dir.path().join("stderr"));
                return Err(format!("smtp-sink exited at start ({status}): {err:?}"));
            }
            if Instant::now() > deadline {
                return Err("smtp-sink did not greet within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Messages received so far: the last `mesg=N` of its counters.
    pub(crate) fn count(&self) -> u64 {
        self.counter("mesg=")
    }

    /// SMTP sessions so far (the connections its clients opened, minus one
    /// for our own readiness probe).
    pub(crate) fn sessions(&self) -> u64 {
        self.counter("sess=").saturating_sub(1)
    }

    fn counter(&self, name: &str) -> u64 {
        let Ok(mut f) = std::fs::File::open(self.dir.path().join("counters")) else {
            return 0;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(200)));
        let mut tail = String::new();
        let _ = f.read_to_string(&mut tail);
        tail.rsplit_once(name)
            .and_then(|(_, n)| {
                let digits: String = n.chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse().ok()
            })
            .unwrap_or(0)
    }

    pub(crate) fn stats(&self) -> ProcStats {
        ProcStats::read(&self.pid.to_string())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `smtp-source` into `smtp-sink`: the same message, sessions and count.
#[derive(Debug, Default)]
pub(crate) struct SourceRun {
    pub(crate) size: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) n: usize,
    delivered: u64,
    pub(crate) secs: f64,
    pub(crate) rate: f64,
    pub(crate) sink_cpu_s: f64,
    pub(crate) error: Option<String>,
}

impl SourceRun {
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none() && self.delivered == self.n as u64
    }

    pub(crate) fn print(&self) {
        println!(
            "smtp-source -> smtp-sink size={} c={} n={}: {:.0} msg/s ({:.3} s; sink got {}, sink CPU {:.2} s){}",
            self.size,
            self.concurrency,
            self.n,
            self.rate,
            self.secs,
            self.delivered,
            self.sink_cpu_s,
            self.error
                .as_ref()
                .map_or(String::new(), |e| format!("; FAILED: {e}")),
        );
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        json!({"bench": "smtp-source-to-smtp-sink", "ok": self.ok(), "size": self.size,
               "concurrency": self.concurrency, "messages": self.n, "delivered": self.delivered,
               "seconds": self.secs, "msgs_per_s": self.rate, "sink_cpu_s": self.sink_cpu_s,
               "error": self.error})
    }
}

/// `smtp-source -d -s C -m N -F file` against a fresh `smtp-sink`, timed
/// from spawning smtp-source to its exit (it waits for every reply).
/// smtp-source does not pipeline: it waits for each command's reply.
pub(crate) async fn source_to_sink(opts: &Opts, size: Size, c: usize, n: usize) -> SourceRun {
    let mut run = SourceRun {
        size: size.label(),
        concurrency: c,
        n,
        ..SourceRun::default()
    };
    let sink = match Sink::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            run.error = Some(e);
            return run;
        }
    };
    let file = sink.dir.path().join("message.txt");
    if let Err(e) = std::fs::write(&file, source_file(size)) {
        run.error = Some(format!("writing {}: {e}", file.display()));
        return run;
    }
    let before = sink.count();
    let cpu0 = sink.stats();
    let mut cmd = tokio::process::Command::new(opts.postfix_bin.join("smtp-source"));
    // -d: reuse connections (as our clients do), unless asked for a new
    // connection per message (smtp-source's default).
    if !opts.new_connection {
        cmd.arg("-d");
    }
    cmd.args(["-s", &c.to_string(), "-m", &n.to_string()])
        .arg("-F")
        .arg(&file)
        .args(["-f", &format!("sender@{DOMAIN}")])
        .args(["-t", &format!("sink@{DOMAIN}")])
        .args(["-M", "load-client.test"])
        .arg(format!("127.0.0.1:{}", sink.addr.port()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let t = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            run.error = Some(format!("starting smtp-source: {e}"));
            return run;
        }
    };
    let limit = Duration::from_secs(opts.max_seconds);
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            run.secs = t.elapsed().as_secs_f64();
            if !out.status.success() {
                run.error = Some(format!(
                    "smtp-source {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(Err(e)) => run.error = Some(format!("smtp-source: {e}")),
        Err(_) => {
            run.secs = t.elapsed().as_secs_f64();
            run.error = Some(format!("smtp-source still running after {limit:?}: killed"));
        }
    }
    // The sink counts at ".", before its reply: settled by now, but be sure.
    let settle = Instant::now();
    while sink.count() - before < n as u64 && settle.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.delivered = sink.count() - before;
    run.sink_cpu_s = sink.stats().cpu_ticks.saturating_sub(cpu0.cpu_ticks) as f64 / CLOCK_TICKS;
    run.rate = run.delivered as f64 / run.secs.max(1e-9);
    run
}

// ------------------------------------------------------- outbound (API)
