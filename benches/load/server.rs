//! The `postern` binary under test, started on free loopback ports.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::SmtpConn;
use crate::options::Opts;
use crate::receiver::SECRET;
use crate::system::ProcStats;

const MAX_MESSAGE_SIZE: &str = "64M";
/// The API key the outbound runs use (Postern wants at least 16 characters).
pub(crate) const API_KEY: &str = "load-bench-api-key-0123456789";

/// The attachment-link key every replica on one database is given.
const LINK_SECRET: &str = "load-bench-link-secret-0123456789";

pub(crate) struct Server {
    pub(crate) child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) smtp: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    /// Runs under `--server-wrap` (valgrind): slower to start and stop.
    wrapped: bool,
}

/// Session caps high enough for `sessions` connections from one address
/// (the defaults, 1000 and 20 per IP, protect a real MX from one client).
pub(crate) fn session_caps(sessions: usize) -> Vec<(&'static str, String)> {
    let n = (sessions + 50).max(1000).to_string();
    vec![
        ("POSTERN_MAX_SESSIONS", n.clone()),
        ("POSTERN_MAX_SESSIONS_PER_IP", n),
    ]
}

pub(crate) fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

impl Server {
    pub(crate) async fn start(
        opts: &Opts,
        webhook: Option<SocketAddr>,
        env: &[(&str, String)],
    ) -> Result<Server, String> {
        std::fs::create_dir_all(&opts.spool_parent).map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("postern-load-")
            .tempdir_in(&opts.spool_parent)
            .map_err(|e| format!("spool tempdir: {e}"))?;
        let (smtp, http) = (free_port(), free_port());
        let log =
            std::fs::File::create(dir.path().join("server.log")).map_err(|e| e.to_string())?;
        let mut cmd = match opts.server_wrap.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_postern")),
            Some((wrapper, args)) => {
                let mut c = Command::new(wrapper);
                c.args(args).arg(env!("CARGO_BIN_EXE_postern"));
                c
            }
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("POSTERN_") {
                cmd.env_remove(k);
            }
        }
        // Without a receiver (idle mode) the URL points at a closed port:
        // no mail is sent there anyway.
        let hook = webhook.unwrap_or_else(free_port);
        cmd.arg("serve")
            .env("POSTERN_SMTP_LISTEN", smtp.to_string())
            .env("POSTERN_HTTP_LISTEN", http.to_string())
            .env("POSTERN_SPOOL_DIR", dir.path().join("spool"))
            .env("POSTERN_WEBHOOK_URL", format!("http://{hook}/hook"))
            .env("POSTERN_WEBHOOK_SECRET", SECRET)
            .env("POSTERN_MAX_MESSAGE_SIZE", MAX_MESSAGE_SIZE)
            .env("POSTERN_API_KEYS", API_KEY)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if !opts.fsync {
            cmd.env("POSTERN_FSYNC", "false");
        }
        if let Some(url) = &opts.database_url {
            // Replicas must share the attachment-link key (README); a given
            // one also means no spool directory is needed for the key file.
            cmd.env("POSTERN_DATABASE_URL", url)
                .env("POSTERN_ATTACHMENT_URL_SECRET", LINK_SECRET);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("starting postern: {e}"))?;
        eprintln!("postern pid {}", child.id());
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            smtp,
            http,
            dir,
            wrapped: !opts.server_wrap.is_empty(),
        };
        let startup = if opts.server_wrap.is_empty() { 15 } else { 120 };
        let deadline = Instant::now() + Duration::from_secs(startup);
        loop {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "postern exited at start ({status}):\n{}",
                    server.log_tail(20)
                ));
            }
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(2), SmtpConn::connect(smtp)).await
            {
                let _ = c.send(b"QUIT\r\n").await;
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postern did not greet within {startup} s:\n{}",
                    server.log_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn stats(&self) -> ProcStats {
        ProcStats::read(&self.pid.to_string())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Counts the warnings and errors in the server's log and prints the
    /// first ones.
    pub(crate) fn warnings(&self) -> usize {
        let log = self.log();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        if !warnings.is_empty() {
            eprintln!(
                "server logged {} warnings/errors, first ones:",
                warnings.len()
            );
            for w in warnings.iter().take(5) {
                eprintln!("    {w}");
            }
        }
        warnings.len()
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub(crate) fn spool_files(&self) -> usize {
        ["msg", "state", "tmp"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.dir.path().join("spool").join(d)).ok())
            .map(|r| r.count())
            .sum()
    }

    /// SIGTERM, up to 10 s for a clean exit, then SIGKILL. Returns how long
    /// the exit took and whether it had to be killed.
    pub(crate) async fn stop(&mut self) -> (Duration, bool) {
        let Some(mut child) = self.child.take() else {
            return (Duration::ZERO, false);
        };
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let grace = if self.wrapped { 60 } else { 10 };
        while t.elapsed() < Duration::from_secs(grace) {
            if let Ok(Some(_)) = child.try_wait() {
                return (t.elapsed(), false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "postern (pid {}) ignored SIGTERM for {grace} s: SIGKILL",
            self.pid
        );
        let _ = child.kill();
        let _ = child.wait();
        (t.elapsed(), true)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
