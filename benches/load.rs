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

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern::model::secret::Secret;
use postern::model::sign::verify;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DOMAIN: &str = "load.postern.test";
const CLOCK_TICKS: f64 = 100.0;
const MAX_MESSAGE_SIZE: &str = "64M";
/// Matrix cells send for this long (N adapts to the machine), capped at N.
const CELL_SEND: Duration = Duration::from_secs(3);
const CELL_MAX_MESSAGES: usize = 50_000;
/// The API key the outbound runs use (Postern wants at least 16 characters).
const API_KEY: &str = "load-bench-api-key-0123456789";

const USAGE: &str = "usage: cargo bench --bench load -- [options]

  --concurrency C     SMTP connections (default 10)
  --messages N        messages in total (default 1000)
  --size S            2k | 20k | 1m | 20m (default 2k)
  --max-seconds T     wall-clock cap per run (default 120)
  --matrix quick      concurrency {1,10,50} x sizes {2k,20k}, markdown table
  --matrix full       concurrency {1,10,50,200} x sizes {2k,20k,1m} (+20m at 1
                      and 10), each paired with smtp-source -> smtp-sink; the
                      20k c=50 cell again at half its rate; the sending API
                      at c=10 and 50 into smtp-sink. Markdown tables
  --matrix outbound   only the sending-API part of --matrix full
  --outbound          one sending-API run (POST /v1/messages -> smtp-sink)
  --rate R            start at most R transactions (or API requests) per second
  --cell-seconds S    how long each matrix cell sends (default 3)
  --postfix-bin DIR   where smtp-sink and smtp-source are (default /usr/sbin)
  --server-wrap CMD   run the server under CMD (e.g. \"valgrind --tool=callgrind\")
  --idle K            open K idle SMTP connections, report server RSS
  --spool-parent DIR  where the temporary spool goes (default target/load-bench)
  --no-fsync          POSTERN_FSYNC=false (voids durability; comparison only)
  --client-threads T  tokio worker threads for the client+receiver (default 2)";

// ---------------------------------------------------------------- options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    K2,
    K20,
    M1,
    M20,
}

impl Size {
    fn parse(s: &str) -> Option<Size> {
        match s.to_ascii_lowercase().as_str() {
            "2k" => Some(Size::K2),
            "20k" => Some(Size::K20),
            "1m" => Some(Size::M1),
            "20m" => Some(Size::M20),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Size::K2 => "2k",
            Size::K20 => "20k",
            Size::M1 => "1m",
            Size::M20 => "20m",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matrix {
    Quick,
    Full,
    Outbound,
}

#[derive(Debug, Clone)]
struct Opts {
    concurrency: usize,
    messages: usize,
    size: Size,
    max_seconds: u64,
    matrix: Option<Matrix>,
    idle: Option<usize>,
    spool_parent: PathBuf,
    fsync: bool,
    client_threads: usize,
    outbound: bool,
    rate: Option<f64>,
    cell_seconds: u64,
    postfix_bin: PathBuf,
    server_wrap: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        concurrency: 10,
        messages: 1000,
        size: Size::K2,
        max_seconds: 120,
        matrix: None,
        idle: None,
        spool_parent: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/load-bench"),
        fsync: true,
        client_threads: 2,
        outbound: false,
        rate: None,
        cell_seconds: 3,
        postfix_bin: PathBuf::from("/usr/sbin"),
        server_wrap: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{a}: {v:?} is not a positive number"))
        };
        match a.as_str() {
            "--bench" => {} // added by `cargo bench`
            "--concurrency" | "-c" => o.concurrency = num(val()?)?,
            "--messages" | "-n" => o.messages = num(val()?)?,
            "--size" => {
                let v = val()?;
                o.size = Size::parse(&v).ok_or(format!("--size: {v:?} is not 2k|20k|1m|20m"))?;
            }
            "--max-seconds" => o.max_seconds = num(val()?)? as u64,
            "--matrix" => {
                o.matrix = Some(match val()?.as_str() {
                    "quick" => Matrix::Quick,
                    "full" => Matrix::Full,
                    "outbound" => Matrix::Outbound,
                    v => return Err(format!("--matrix: quick|full|outbound, not {v:?}")),
                })
            }
            "--outbound" => o.outbound = true,
            "--rate" => {
                let v = val()?;
                o.rate = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0)
                        .ok_or(format!("--rate: {v:?} is not a positive number"))?,
                );
            }
            "--cell-seconds" => o.cell_seconds = num(val()?)? as u64,
            "--postfix-bin" => o.postfix_bin = PathBuf::from(val()?),
            "--server-wrap" => {
                o.server_wrap = val()?.split_whitespace().map(String::from).collect()
            }
            "--idle" => o.idle = Some(num(val()?)?),
            "--spool-parent" => o.spool_parent = PathBuf::from(val()?),
            "--no-fsync" => o.fsync = false,
            "--client-threads" => o.client_threads = num(val()?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

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

fn describe_setup(opts: &Opts) {
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
fn cpu_times() -> (u64, u64) {
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
fn busy_share(a: (u64, u64), b: (u64, u64)) -> f64 {
    (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64
}

/// The 1-minute load average.
fn loadavg() -> f64 {
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

/// The message minus its `Message-ID:` line, dot-stuffed, CRLF line ends,
/// ending in CRLF: ready to follow `DATA` on the wire.
fn make_message(size: Size) -> Vec<u8> {
    let msg = raw_message(size);
    let mut out = Vec::with_capacity(msg.len() + 64);
    for line in msg.split_inclusive('\n') {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// The same message for `smtp-source -F`: LF line ends (it appends CRLF to
/// every line and dot-stuffs by itself), with a `Message-ID:` line.
fn source_file(size: Size) -> String {
    format!(
        "Message-ID: <smtp-source.0@{DOMAIN}>\n{}",
        raw_message(size).replace("\r\n", "\n")
    )
}

/// The message minus its `Message-ID:` line, CRLF line ends, not stuffed.
fn raw_message(size: Size) -> String {
    let mut h = format!(
        "From: Load Sender <sender@{DOMAIN}>\r\n\
         To: Sink <sink@{DOMAIN}>\r\n\
         Subject: postern load test ({})\r\n\
         Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n",
        size.label()
    );
    if size == Size::K2 {
        h.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        h.push_str(&prose(2000 - h.len(), 1));
        return h;
    }
    let (text, html, attachment) = parts(size);
    multipart(h, text, html, attachment)
}

/// The text, HTML and attachment sizes of each message shape.
fn parts(size: Size) -> (usize, usize, usize) {
    match size {
        Size::K2 => (1800, 0, 0),
        Size::K20 => (6000, 7000, 4096),
        Size::M1 | Size::M20 => {
            let total = if size == Size::M1 { 1 << 20 } else { 20 << 20 };
            // base64 with 76-column lines: 78 wire bytes per 57 raw bytes.
            (4000, 6000, (total - 12_000) / 78 * 57)
        }
    }
}

/// The same shape as a `POST /v1/messages` body: Postern composes the MIME.
fn api_request(size: Size) -> Vec<u8> {
    let (text, html, attachment) = parts(size);
    let mut v = json!({
        "from": format!("Load Sender <sender@{DOMAIN}>"),
        "to": [format!("Sink <sink@{DOMAIN}>")],
        "subject": format!("postern outbound load ({})", size.label()),
        "text": prose(text, 2),
    });
    if html > 0 {
        let body: String = prose(html, 3)
            .lines()
            .map(|p| format!("<p>{p}</p>\n"))
            .collect();
        v["html"] = json!(format!("<html><body>\n{body}</body></html>\n"));
    }
    if attachment > 0 {
        v["attachments"] = json!([{
            "filename": "data.bin",
            "content_type": "application/octet-stream",
            "content": B64.encode(pseudo_random(attachment)),
        }]);
    }
    serde_json::to_vec(&v).expect("request serialises")
}

/// Incompressible bytes, the same every time.
fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn multipart(mut h: String, text: usize, html: usize, attachment: usize) -> String {
    const B: &str = "=_postern_load_boundary";
    h.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{B}\"\r\n\r\n\
         This is a multi-part message in MIME format.\r\n\
         --{B}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    h.push_str(&prose(text, 2));
    h.push_str(&format!(
        "--{B}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n"
    ));
    for p in prose(html, 3).lines() {
        h.push_str(&format!("<p>{p}</p>\r\n"));
    }
    h.push_str(&format!(
        "</body></html>\r\n--{B}\r\n\
         Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    ));
    for chunk in B64.encode(pseudo_random(attachment)).as_bytes().chunks(76) {
        h.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        h.push_str("\r\n");
    }
    h.push_str(&format!("--{B}--\r\n"));
    h
}

/// About `bytes` bytes of plain text in lines of at most 72 characters.
fn prose(bytes: usize, seed: usize) -> String {
    const WORDS: &[&str] = &[
        "postern",
        "gate",
        "mail",
        "webhook",
        "signed",
        "spool",
        "durable",
        "queue",
        "retry",
        "endpoint",
        "message",
        "envelope",
        "header",
        "the",
        "a",
        "of",
        "and",
        "to",
        "is",
        "for",
        "loopback",
        "benchmark",
        "latency",
        "throughput",
    ];
    let mut out = String::with_capacity(bytes + 80);
    let mut line = String::new();
    let mut i = seed;
    while out.len() + line.len() < bytes {
        let w = WORDS[(i * 7 + i / 3) % WORDS.len()];
        i += 1;
        if line.len() + w.len() + 1 > 72 {
            out.push_str(&line);
            out.push_str("\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&line);
    out.push_str("\r\n");
    out
}

// ----------------------------------------------------------- run state

/// Shared by the SMTP clients and the webhook receiver. Times are ns since
/// `base`, plus one (0 = not yet).
struct Run {
    base: Instant,
    tag: String,
    n: usize,
    next: AtomicUsize,
    stop_sending: AtomicBool,
    started: Vec<AtomicU64>,
    accepted_at: Vec<AtomicU64>,
    arrived: Vec<AtomicU64>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
    verified: AtomicUsize,
    sig_failures: AtomicUsize,
    unknown: AtomicUsize,
    duplicates: AtomicUsize,
    webhook_peers: Mutex<HashSet<SocketAddr>>,
    secret: Secret,
    /// `--rate`: transaction i may start at `origin + i * interval_ns`
    /// (0 = as fast as the connections allow).
    interval_ns: u64,
    origin: AtomicU64,
    /// How late each paced transaction started against its schedule (ns + 1).
    lag: Vec<AtomicU64>,
}

impl Run {
    fn paced(n: usize, rate: Option<f64>) -> Run {
        let zeros = || (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Run {
            base: Instant::now(),
            tag: format!("r{}x{}", std::process::id(), rand_tag()),
            n,
            next: AtomicUsize::new(0),
            stop_sending: AtomicBool::new(false),
            started: zeros(),
            accepted_at: zeros(),
            arrived: zeros(),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            verified: AtomicUsize::new(0),
            sig_failures: AtomicUsize::new(0),
            unknown: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            webhook_peers: Mutex::new(HashSet::new()),
            secret: Secret::parse(SECRET).expect("test secret parses"),
            interval_ns: rate.map_or(0, |r| (1e9 / r) as u64),
            origin: AtomicU64::new(0),
            lag: if rate.is_some() { zeros() } else { Vec::new() },
        }
    }

    /// With `--rate`, waits for transaction i's turn. False when sending
    /// stopped meanwhile (the transaction is then not started).
    async fn wait_turn(&self, i: usize) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let due = self.origin.load(Relaxed) + i as u64 * self.interval_ns;
        let now = self.now();
        if due > now {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
        }
        self.lag[i].store(self.now().saturating_sub(due) + 1, Relaxed);
        !self.stop_sending.load(Relaxed)
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    fn message_id(&self, i: usize) -> String {
        format!("{}.{i}@{DOMAIN}", self.tag)
    }

    fn index_of(&self, message_id: &str) -> Option<usize> {
        let local = message_id.strip_suffix(DOMAIN)?.strip_suffix('@')?;
        let (tag, i) = local.rsplit_once('.')?;
        let i: usize = i.parse().ok()?;
        (tag == self.tag && i < self.n).then_some(i)
    }
}

fn rand_tag() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

// ------------------------------------------------------------- receiver

#[derive(serde::Deserialize)]
struct PayloadIds {
    message_id: Option<String>,
}

async fn hook(
    State(run): State<Arc<Run>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = run.now();
    run.webhook_peers.lock().expect("peers").insert(peer);
    let run2 = run.clone();
    // HMAC and JSON over a 27 MB body take a while: off the async workers.
    let verdict = tokio::task::spawn_blocking(move || {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let ts: i64 = h("webhook-timestamp").parse().unwrap_or(0);
        let good = verify(
            &run2.secret,
            h("webhook-id"),
            ts,
            &body,
            h("webhook-signature"),
        );
        if !good {
            return Err(h("webhook-id").to_string());
        }
        Ok(serde_json::from_slice::<PayloadIds>(&body)
            .ok()
            .and_then(|p| p.message_id))
    })
    .await
    .expect("verifier task");
    match verdict {
        Err(id) => {
            let k = run.sig_failures.fetch_add(1, Relaxed);
            if k < 5 {
                eprintln!("!!! SIGNATURE VERIFICATION FAILED for webhook-id {id:?}");
            }
        }
        Ok(id) => match id.as_deref().and_then(|id| run.index_of(id)) {
            Some(i) => {
                if run.arrived[i]
                    .compare_exchange(0, now, Relaxed, Relaxed)
                    .is_ok()
                {
                    run.verified.fetch_add(1, Relaxed);
                } else {
                    run.duplicates.fetch_add(1, Relaxed);
                }
            }
            None => {
                if run.unknown.fetch_add(1, Relaxed) < 5 {
                    eprintln!("webhook with unexpected message_id {id:?}");
                }
            }
        },
    }
    StatusCode::OK
}

async fn start_receiver(run: Arc<Run>) -> SocketAddr {
    let app = axum::Router::new()
        .fallback(hook)
        .layer(DefaultBodyLimit::max(512 << 20))
        .with_state(run);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("receiver serves")
    });
    addr
}

// --------------------------------------------------------------- server

struct Server {
    child: Option<Child>,
    pid: u32,
    smtp: SocketAddr,
    http: SocketAddr,
    dir: tempfile::TempDir,
    /// Runs under `--server-wrap` (valgrind): slower to start and stop.
    wrapped: bool,
}

/// Session caps high enough for `sessions` connections from one address
/// (the defaults, 1000 and 20 per IP, protect a real MX from one client).
fn session_caps(sessions: usize) -> Vec<(&'static str, String)> {
    let n = (sessions + 50).max(1000).to_string();
    vec![
        ("POSTERN_MAX_SESSIONS", n.clone()),
        ("POSTERN_MAX_SESSIONS_PER_IP", n),
    ]
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

impl Server {
    async fn start(
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
        for (k, v) in env {
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

    fn stats(&self) -> ProcStats {
        ProcStats::read(&self.pid.to_string())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Counts the warnings and errors in the server's log and prints the
    /// first ones.
    fn warnings(&self) -> usize {
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

    fn spool_files(&self) -> usize {
        ["msg", "state", "tmp"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.dir.path().join("spool").join(d)).ok())
            .map(|r| r.count())
            .sum()
    }

    /// SIGTERM, up to 10 s for a clean exit, then SIGKILL. Returns how long
    /// the exit took and whether it had to be killed.
    async fn stop(&mut self) -> (Duration, bool) {
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

#[derive(Debug, Default, Clone, Copy)]
struct ProcStats {
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    cpu_ticks: u64,
    sys_ticks: u64,
}

impl ProcStats {
    /// `who` is a pid or "self".
    fn read(who: &str) -> ProcStats {
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

struct SmtpConn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    line: Vec<u8>,
}

impl SmtpConn {
    /// Connects and reads the greeting.
    async fn connect(addr: SocketAddr) -> Result<SmtpConn, String> {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        let mut c = SmtpConn {
            r: BufReader::with_capacity(16 * 1024, r),
            w,
            line: Vec::with_capacity(256),
        };
        let (code, text) = c.reply().await?;
        if code != 220 {
            return Err(format!("greeting: {code} {text}"));
        }
        Ok(c)
    }

    async fn send(&mut self, b: &[u8]) -> Result<(), String> {
        self.w.write_all(b).await.map_err(|e| format!("write: {e}"))
    }

    /// One (possibly multi-line) reply: its code and its text.
    async fn reply(&mut self) -> Result<(u16, String), String> {
        let mut text = String::new();
        loop {
            self.line.clear();
            let n = self
                .r
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            let l = String::from_utf8_lossy(&self.line);
            let l = l.trim_end();
            text.push_str(l);
            let code = l.get(..3).and_then(|c| c.parse::<u16>().ok());
            if l.as_bytes().get(3) != Some(&b'-') {
                return code
                    .map(|c| (c, text.clone()))
                    .ok_or(format!("malformed reply {text:?}"));
            }
            text.push('\n');
        }
    }
}

/// One client connection: sends messages until N are taken or sending stops.
async fn client(run: Arc<Run>, smtp: SocketAddr, body: Arc<Vec<u8>>) -> Result<(), String> {
    let mut c = SmtpConn::connect(smtp).await?;
    c.send(b"EHLO load-client.test\r\n").await?;
    let (code, text) = c.reply().await?;
    if code != 250 || !text.contains("PIPELINING") {
        return Err(format!("EHLO: {text}"));
    }
    let envelope = format!(
        "MAIL FROM:<sender@{DOMAIN}> SIZE={}\r\nRCPT TO:<sink@{DOMAIN}>\r\nDATA\r\n",
        body.len() + 80
    );
    let mut small = Vec::with_capacity(if body.len() < 256 << 10 {
        body.len() + 128
    } else {
        0
    });
    loop {
        if run.stop_sending.load(Relaxed) {
            break;
        }
        let i = run.next.fetch_add(1, Relaxed);
        if i >= run.n {
            break;
        }
        let mid = format!("Message-ID: <{}>\r\n", run.message_id(i));
        if !run.wait_turn(i).await {
            break;
        }
        run.started[i].store(run.now(), Relaxed);
        c.send(envelope.as_bytes()).await?;
        let (mail, _) = c.reply().await?;
        let (rcpt, _) = c.reply().await?;
        let (data, data_text) = c.reply().await?;
        if (mail, rcpt, data) != (250, 250, 354) {
            if run.refused.fetch_add(1, Relaxed) < 5 {
                eprintln!("transaction refused: MAIL {mail}, RCPT {rcpt}, DATA {data_text}");
            }
            c.send(b"RSET\r\n").await?;
            c.reply().await?;
            continue;
        }
        if small.capacity() > 0 {
            small.clear();
            small.extend_from_slice(mid.as_bytes());
            small.extend_from_slice(&body);
            small.extend_from_slice(b".\r\n");
            c.send(&small).await?;
        } else {
            c.send(mid.as_bytes()).await?;
            c.send(&body).await?;
            c.send(b".\r\n").await?;
        }
        let (code, text) = c.reply().await?;
        if code == 250 {
            run.accepted_at[i].store(run.now(), Relaxed);
            run.accepted.fetch_add(1, Relaxed);
        } else if run.refused.fetch_add(1, Relaxed) < 5 {
            eprintln!("message refused at end of DATA: {text}");
        }
    }
    c.send(b"QUIT\r\n").await?;
    let _ = c.reply().await;
    Ok(())
}

// ------------------------------------------------------------ load runs

#[derive(Debug, Default)]
struct Report {
    size: &'static str,
    concurrency: usize,
    message_bytes: usize,
    requested: usize,
    started: usize,
    accepted: usize,
    refused: usize,
    verified: usize,
    sig_failures: usize,
    unknown: usize,
    duplicates: usize,
    client_errors: Vec<String>,
    timed_out: bool,
    e2e_secs: f64,
    e2e_rate: f64,
    accept_rate: f64,
    /// ms, start of transaction → verified webhook.
    lat: [f64; 4],
    /// ms, start of transaction → 250.
    smtp_lat: [f64; 4],
    server_hwm_kb: u64,
    /// RSS of the server just before the first transaction.
    server_rss_start_kb: u64,
    /// `--rate`: the target, and p99 / max of how late transactions started.
    rate: Option<f64>,
    sched_lag: [f64; 4],
    server_cpu_s: f64,
    server_sys_s: f64,
    client_cpu_s: f64,
    /// Share of all CPUs busy (anyone's) during the run.
    machine_busy: f64,
    loadavg: f64,
    max_threads: u64,
    max_backlog: usize,
    webhook_connections: usize,
    shutdown_ms: u128,
    killed: bool,
    spool_left: usize,
    server_warnings: usize,
    error: Option<String>,
}

impl Report {
    fn ok(&self) -> bool {
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

    fn per_1k(&self, secs: f64) -> f64 {
        if self.verified == 0 {
            0.0
        } else {
            secs * 1000.0 / self.verified as f64
        }
    }

    fn print(&self) {
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

    fn json(&self) -> serde_json::Value {
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
fn percentiles(mut ns: Vec<u64>) -> [f64; 4] {
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

/// What one load run does: `send_for` stops starting new transactions
/// after that long (matrix cells); N is the cap either way; `rate` paces
/// the starts.
#[derive(Debug, Clone, Copy)]
struct Cell {
    size: Size,
    concurrency: usize,
    n: usize,
    send_for: Option<Duration>,
    rate: Option<f64>,
}

/// One load run against a fresh server.
async fn load(opts: &Opts, cell: Cell) -> Report {
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
    let mut server = match Server::start(opts, Some(receiver), &session_caps(concurrency)).await {
        Ok(s) => s,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };

    let server0 = server.stats();
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
    let clients: Vec<_> = (0..concurrency)
        .map(|_| tokio::spawn(client(run.clone(), server.smtp, body.clone())))
        .collect();
    let aborts: Vec<_> = clients.iter().map(|h| h.abort_handle()).collect();

    let finished = tokio::time::timeout_at(deadline.into(), async {
        let mut errors = Vec::new();
        for h in clients {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(format!("client task: {e}")),
            }
        }
        // Every accepted message must come back as a webhook (one that
        // fails verification is counted, and not retried: we answer 200).
        while run.verified.load(Relaxed) + run.sig_failures.load(Relaxed)
            < run.accepted.load(Relaxed)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        errors
    })
    .await;
    match finished {
        Ok(errors) => report.client_errors = errors,
        Err(_) => {
            report.timed_out = true;
            aborts.iter().for_each(|a| a.abort());
            eprintln!(
                "--max-seconds {} reached: reporting what arrived so far",
                opts.max_seconds
            );
        }
    }
    let server1 = server.stats();
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

    let (took, killed) = server.stop().await;
    report.shutdown_ms = took.as_millis();
    report.killed = killed;
    report.spool_left = server.spool_files();
    report.server_warnings = server.warnings();
    report
}

async fn matrix(opts: &Opts) -> bool {
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

async fn idle(opts: &Opts, k: usize) -> bool {
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
struct Sink {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Sink {
    async fn start(opts: &Opts) -> Result<Sink, String> {
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
    fn count(&self) -> u64 {
        self.counter("mesg=")
    }

    /// SMTP sessions so far (the connections its clients opened, minus one
    /// for our own readiness probe).
    fn sessions(&self) -> u64 {
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

    fn stats(&self) -> ProcStats {
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
struct SourceRun {
    size: &'static str,
    concurrency: usize,
    n: usize,
    delivered: u64,
    secs: f64,
    rate: f64,
    sink_cpu_s: f64,
    error: Option<String>,
}

impl SourceRun {
    fn ok(&self) -> bool {
        self.error.is_none() && self.delivered == self.n as u64
    }

    fn print(&self) {
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

    fn json(&self) -> serde_json::Value {
        json!({"bench": "smtp-source-to-smtp-sink", "ok": self.ok(), "size": self.size,
               "concurrency": self.concurrency, "messages": self.n, "delivered": self.delivered,
               "seconds": self.secs, "msgs_per_s": self.rate, "sink_cpu_s": self.sink_cpu_s,
               "error": self.error})
    }
}

/// `smtp-source -d -s C -m N -F file` against a fresh `smtp-sink`, timed
/// from spawning smtp-source to its exit (it waits for every reply).
/// smtp-source does not pipeline: it waits for each command's reply.
async fn source_to_sink(opts: &Opts, size: Size, c: usize, n: usize) -> SourceRun {
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
    cmd.args(["-d", "-s", &c.to_string(), "-m", &n.to_string()])
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

#[derive(Debug, Default)]
struct OutReport {
    size: &'static str,
    concurrency: usize,
    request_bytes: usize,
    requested: usize,
    started: usize,
    /// `202`s.
    accepted: usize,
    refused: usize,
    client_errors: Vec<String>,
    timed_out: bool,
    /// Messages whose status record says `sent`, and how many the sink got.
    sent: usize,
    sink_received: u64,
    /// SMTP sessions Postern opened to the relay (smtp-sink's count).
    relay_sessions: u64,
    /// 202s / (first request start → last 202).
    api_rate: f64,
    /// sent / (first request start → last relay acceptance).
    relay_rate: f64,
    relay_secs: f64,
    /// ms, request start → the relay's 250 (the attempt's `at` in the
    /// status record).
    lat: [f64; 4],
    /// ms, request start → 202.
    api_lat: [f64; 4],
    rate: Option<f64>,
    sched_lag: [f64; 4],
    server_hwm_kb: u64,
    server_cpu_s: f64,
    server_sys_s: f64,
    client_cpu_s: f64,
    sink_cpu_s: f64,
    machine_busy: f64,
    max_threads: u64,
    loadavg: f64,
    killed: bool,
    server_warnings: usize,
    error: Option<String>,
}

impl OutReport {
    fn ok(&self) -> bool {
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

    fn per_1k(&self, secs: f64) -> f64 {
        secs * 1000.0 / self.sent.max(1) as f64
    }

    fn print(&self) {
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

    fn json(&self) -> serde_json::Value {
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

fn unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// One API client: POSTs until N are taken or sending stops. `run.started`
/// is the request start, `run.accepted_at` the 202.
async fn api_client(
    run: Arc<Run>,
    ids: Arc<Vec<OnceLock<String>>>,
    http: reqwest::Client,
    url: String,
    body: Bytes,
) -> Result<(), String> {
    loop {
        if run.stop_sending.load(Relaxed) {
            break;
        }
        let i = run.next.fetch_add(1, Relaxed);
        if i >= run.n || !run.wait_turn(i).await {
            break;
        }
        run.started[i].store(run.now(), Relaxed);
        let resp = http
            .post(&url)
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| format!("POST: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("POST body: {e}"))?;
        let id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["id"].as_str().map(String::from));
        match (status.as_u16(), id) {
            (202, Some(id)) => {
                run.accepted_at[i].store(run.now(), Relaxed);
                run.accepted.fetch_add(1, Relaxed);
                let _ = ids[i].set(id);
            }
            _ => {
                if run.refused.fetch_add(1, Relaxed) < 5 {
                    eprintln!(
                        "POST /v1/messages: {status} {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
            }
        }
    }
    Ok(())
}

/// The relay attempt's time from `GET /v1/messages/{id}` once it is
/// `sent`, as ns since `run.base` + 1; 0 if it never got there.
async fn relay_time(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    base_unix: i128,
    until: Instant,
) -> u64 {
    loop {
        let record = match http
            .get(format!("{base}/v1/messages/{id}"))
            .bearer_auth(API_KEY)
            .send()
            .await
        {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        if let Some(r) = record
            && r["status"] == "sent"
        {
            let at = r["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|a| a["at"].as_str())
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
            return at.map_or(0, |t| {
                (t.unix_timestamp_nanos() - base_unix).max(0) as u64 + 1
            });
        }
        if Instant::now() > until {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Peak thread count of `pid`, sampled every 50 ms until `done`.
fn thread_sampler(pid: u32, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut threads = 0;
        while !done.load(Relaxed) {
            threads = threads.max(ProcStats::read(&pid.to_string()).threads);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        threads
    })
}

/// One sending-API run: C clients POST /v1/messages to a fresh server whose
/// relay is a fresh smtp-sink. Throughput and latency are taken at the
/// relay: each message's status record has the time of the attempt that
/// the relay accepted, read back after the run (no polling during it).
async fn outbound(
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
    let aborts: Vec<_> = clients.iter().map(|h| h.abort_handle()).collect();
    let finished = tokio::time::timeout_at(deadline.into(), async {
        let mut errors = Vec::new();
        for h in clients {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(format!("client task: {e}")),
            }
        }
        // The relay must receive every accepted message.
        while sink.count() - sink0 < run.accepted.load(Relaxed) as u64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        errors
    })
    .await;
    match finished {
        Ok(errors) => report.client_errors = errors,
        Err(_) => {
            report.timed_out = true;
            aborts.iter().for_each(|a| a.abort());
            eprintln!(
                "--max-seconds {} reached: reporting what arrived so far",
                opts.max_seconds
            );
        }
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
