//! The real `postern` binary (`CARGO_BIN_EXE_postern`) as a child process
//! on loopback ports, for the tests that kill, terminate and restart it;
//! and a raw SMTP client whose failures are values, since such a server
//! may vanish at any moment.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::helpers::{Hit, SECRET, free_port, message_id, wait_until};

pub type Io<T> = std::io::Result<T>;

/// The last 40 lines of the child's log.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Two distinct free loopback addresses (SMTP, HTTP).
pub fn free_pair() -> (SocketAddr, SocketAddr) {
    let smtp = free_port();
    let http = loop {
        let p = free_port();
        if p != smtp {
            break p;
        }
    };
    (
        SocketAddr::from(([127, 0, 0, 1], smtp)),
        SocketAddr::from(([127, 0, 0, 1], http)),
    )
}

/// Waits (at most `secs`) until `hits` holds a webhook for every Message-ID
/// in `want`; the panic names the missing ones and shows the log.
pub async fn wait_delivered(
    secs: u64,
    hits: impl Fn() -> Vec<Hit>,
    want: &HashSet<String>,
    log: &Path,
) {
    let got = || -> HashSet<String> { hits().iter().map(message_id).collect() };
    wait_until(
        secs,
        || {
            format!(
                "every expected message delivered; missing {:?}\n{}",
                want.difference(&got()).collect::<Vec<_>>(),
                log_tail(log)
            )
        },
        || got().is_superset(want),
    )
    .await;
}

/// `Command` for the real binary with none of the test's own `POSTERN_*`
/// variables (e.g. `POSTERN_TEST_PYTHON`), without colours or stdin.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_postern"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("POSTERN_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// How to run `postern serve`: everything but the ports.
pub struct Launch<'a> {
    /// Each start gets the hostname `p<random>.<domain>`, so its greeting
    /// proves which child answered (and not whatever else took the port).
    pub domain: &'a str,
    pub spool: &'a Path,
    /// Appended to by every start (stdout and stderr).
    pub log: &'a Path,
    /// On top of the listeners, hostname, spool, [`SECRET`], no retry
    /// jitter and `RUST_LOG=info`.
    pub env: &'a [(&'a str, &'a str)],
}

impl Launch<'_> {
    /// Starts on fresh ports (a port may be taken between our probe and the
    /// child's bind: then other ports, three tries in all).
    pub async fn start(&self) -> Postern {
        let mut last = String::new();
        for _ in 0..3 {
            match self.start_on(free_pair()).await {
                Ok(p) => return p,
                Err(e) => {
                    eprintln!("postern start failed, retrying: {e}");
                    last = e;
                }
            }
        }
        panic!("postern did not start: {last}");
    }

    /// Starts on `smtp`/`http` and waits for the greeting (by then the
    /// spool has been opened and scanned, and both listeners are bound).
    /// Fails when the child exits first, e.g. because a port is taken, or
    /// does not greet within 15 s.
    pub async fn start_on(
        &self,
        (smtp, http): (SocketAddr, SocketAddr),
    ) -> Result<Postern, String> {
        let hostname = format!("p{}.{}", rand::random::<u32>(), self.domain);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .unwrap();
        let mut cmd = command();
        cmd.arg("serve")
            .env("POSTERN_SMTP_LISTEN", smtp.to_string())
            .env("POSTERN_HTTP_LISTEN", http.to_string())
            .env("POSTERN_HOSTNAME", &hostname)
            .env("POSTERN_SPOOL_DIR", self.spool)
            .env("POSTERN_WEBHOOK_SECRET", SECRET)
            .env("POSTERN_RETRY_JITTER", "0")
            .env("RUST_LOG", "info")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start postern");
        // From here on, an early return kills and reaps the child (Drop).
        let mut p = Postern {
            child,
            smtp,
            http,
            log: self.log.to_path_buf(),
        };
        let greeting = format!("220 {hostname} ");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                return Err(format!(
                    "postern exited early ({status}):\n{}",
                    log_tail(&p.log)
                ));
            }
            if let Ok(mut c) = Conn::connect(smtp).await
                && let Ok(got) = c.reply().await
            {
                let _ = c.cmd("QUIT").await;
                if got.starts_with(&greeting) {
                    return Ok(p);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postern did not greet on {smtp} in time:\n{}",
                    log_tail(&p.log)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts on the same ports as before, retrying while they are not free
    /// yet (up to 5 s); then falls back to fresh ports. The flag says
    /// whether the ports were kept.
    pub async fn restart(&self, ports: (SocketAddr, SocketAddr)) -> (Postern, bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.start_on(ports).await {
                Ok(p) => return (p, true),
                Err(e) => {
                    eprintln!("restart on {ports:?} failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        (self.start().await, false)
    }
}

/// The `postern` binary running as a child process; killed (if still
/// running) and reaped on drop.
pub struct Postern {
    child: Child,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    log: PathBuf,
}

impl Postern {
    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "postern died before we killed it:\n{}",
            log_tail(&self.log)
        );
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed process reports {status}");
    }

    /// SIGTERM to our own child, by pid.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits (at most `secs`) for the exit after a SIGTERM; the exit status.
    pub async fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "postern still running {secs}s after SIGTERM:\n{}",
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then a clean exit within 30 s.
    pub async fn terminate(mut self) {
        self.sigterm();
        let status = self.wait_exit(30).await;
        assert!(
            status.success(),
            "exit after SIGTERM: {status}\n{}",
            log_tail(&self.log)
        );
    }
}

impl Drop for Postern {
    fn drop(&mut self) {
        // Only our own child; a no-op once it has been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw SMTP client whose failures are values: an I/O error, EOF or a
/// timeout is an `Err`, never a panic.
pub struct Conn {
    pub r: BufReader<OwnedReadHalf>,
    pub w: OwnedWriteHalf,
}

impl Conn {
    /// Connects (within 5 s) without reading anything.
    pub async fn connect(addr: SocketAddr) -> Io<Conn> {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timeout"))??;
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
        })
    }

    /// Connects, reads the greeting, says EHLO (which must get a 250).
    pub async fn open(addr: SocketAddr) -> Io<Conn> {
        let mut c = Conn::connect(addr).await?;
        c.reply().await?;
        let r = c.cmd("EHLO client.test").await?;
        assert!(r.starts_with("250"), "EHLO: {r}");
        Ok(c)
    }

    /// One (multi-line) reply; an error on EOF or after `secs`.
    pub async fn reply_within(&mut self, secs: u64) -> Io<String> {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(secs), self.r.read_line(&mut line))
                .await
                .map_err(|_| std::io::Error::other("reply timeout"))??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            out.push(line);
            if last {
                return Ok(out.join("\n"));
            }
        }
    }

    /// One (multi-line) reply; an error on EOF or after 10 s.
    pub async fn reply(&mut self) -> Io<String> {
        self.reply_within(10).await
    }

    pub async fn cmd(&mut self, line: &str) -> Io<String> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }
}

/// One message for [`transaction`]: its envelope, and its content from
/// its Message-ID (the whole DATA, final `.` included).
#[derive(Clone, Copy)]
pub struct Mail {
    pub from: &'static str,
    pub to: &'static str,
    pub content: fn(&str) -> String,
}

/// MAIL, RCPT, DATA and the content of message `mid`. `on_data` runs
/// after `354`, just before the content goes out: from then on the server
/// may commit it. Returns the reply to the end of data, or the first
/// reply before it that was not `250`/`354`.
pub async fn transaction(
    c: &mut Conn,
    mail: Mail,
    mid: &str,
    on_data: impl FnOnce(),
) -> Io<String> {
    for line in [
        format!("MAIL FROM:<{}>", mail.from),
        format!("RCPT TO:<{}>", mail.to),
        "DATA".to_string(),
    ] {
        let r = c.cmd(&line).await?;
        if !(r.starts_with("250") || r.starts_with("354")) {
            return Ok(r);
        }
    }
    on_data();
    c.w.write_all((mail.content)(mid).as_bytes()).await?;
    c.reply().await
}

/// What clients of a server that is killed under them know about their
/// messages.
#[derive(Default)]
pub struct Ledger {
    /// The content was (about to be) sent: the server may have committed it.
    pub attempted: HashSet<String>,
    /// Got `250`: the server promised to deliver it.
    pub acked: HashSet<String>,
    /// Any other reply (none expected).
    pub refused: Vec<String>,
}

impl Ledger {
    /// Attempted, acknowledged, refused: a copy.
    pub fn snapshot(ledger: &Mutex<Ledger>) -> (HashSet<String>, HashSet<String>, Vec<String>) {
        let l = ledger.lock().unwrap();
        (l.attempted.clone(), l.acked.clone(), l.refused.clone())
    }

    /// A client task: connects to `addr`, says EHLO, and sends one
    /// message per Message-ID in `mids` until `deadline`, recording each.
    /// An I/O error is the kill: the task ends, and the ledger says how
    /// far it got.
    pub fn client(
        ledger: Arc<Mutex<Ledger>>,
        addr: SocketAddr,
        mail: Mail,
        mids: Vec<String>,
        deadline: Instant,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let run = async {
                let mut c = Conn::connect(addr).await?;
                c.reply().await?;
                c.cmd("EHLO client.test").await?;
                for mid in mids {
                    if Instant::now() > deadline {
                        break;
                    }
                    let r = transaction(&mut c, mail, &mid, || {
                        ledger.lock().unwrap().attempted.insert(mid.clone());
                    })
                    .await?;
                    let mut l = ledger.lock().unwrap();
                    if r.starts_with("250 ") {
                        l.acked.insert(mid);
                    } else {
                        l.refused.push(format!("{mid}: {r}"));
                    }
                }
                let _ = c.cmd("QUIT").await;
                Io::Ok(())
            };
            let _ = run.await;
        })
    }
}
