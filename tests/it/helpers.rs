//! `spawn_app()`, recording webhook receivers, a raw SMTP client for
//! asserting exact replies, and small waiting and spool helpers.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use postern::config::Config;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A running Postern on ephemeral ports with its own spool.
pub struct App {
    pub smtp: SocketAddr,
    /// The implicit-TLS listener, when the test set `POSTERN_SMTPS_LISTEN`.
    pub smtps: Option<SocketAddr>,
    pub http: SocketAddr,
    pub spool: std::path::PathBuf,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl App {
    /// Cancels and waits for `run` to return.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let h = std::mem::replace(&mut self.handle, tokio::spawn(async {}));
        tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("shutdown in time")
            .unwrap();
    }
}

/// Starts Postern with `vars` (a temp spool unless `POSTERN_SPOOL_DIR` is given).
pub async fn spawn_app(vars: &[(&str, &str)]) -> App {
    let mut vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = if vars.iter().any(|(k, _)| k == "POSTERN_SPOOL_DIR") {
        None
    } else {
        let d = tempfile::tempdir().unwrap();
        vars.push(("POSTERN_SPOOL_DIR".into(), d.path().display().to_string()));
        Some(d)
    };
    let probe = proxy_probe(&vars);
    let config = Config::from_vars(vars).expect("valid test config");
    let spool = config.spool_dir.clone();
    let smtp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtps = match config.smtps_listen {
        Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        None => None,
    };
    let smtps_addr = smtps.as_ref().map(|l| l.local_addr().unwrap());
    let (smtp_addr, http_addr) = (smtp.local_addr().unwrap(), http.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        postern::app::run(config, postern::app::Listeners { smtp, smtps, http }, token)
            .await
            .unwrap();
    });
    // Ready once a greeting comes: the spool is open and scanned by then.
    // Behind the PROXY protocol the probe sends a header first, as a
    // balancer's health check does.
    let mut c = Smtp::connect_raw(smtp_addr).await;
    c.send(&probe).await;
    let greeting = c.reply().await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    c.cmd("QUIT").await;
    App {
        smtp: smtp_addr,
        smtps: smtps_addr,
        http: http_addr,
        spool,
        shutdown,
        handle,
        _dir: dir,
    }
}

/// What a balancer's health check sends first under
/// `POSTERN_SMTP_PROXY_PROTOCOL` (nothing with the protocol off).
fn proxy_probe(vars: &[(String, String)]) -> Vec<u8> {
    let protocol = vars
        .iter()
        .find(|(k, _)| k == "POSTERN_SMTP_PROXY_PROTOCOL");
    match protocol.map(|(_, v)| v.as_str()) {
        Some("v1") => b"PROXY UNKNOWN\r\n".to_vec(),
        Some("v2" | "auto") => proxy_v2(0x20, 0x00, &[]),
        _ => Vec::new(),
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    /// Verifies the Standard Webhooks signature with [`SECRET`].
    pub fn verify(&self) -> bool {
        let secret = postern::model::secret::Secret::parse(SECRET).unwrap();
        let ts: i64 = self.header("webhook-timestamp").parse().unwrap();
        postern::model::sign::verify(
            &secret,
            &self.header("webhook-id"),
            ts,
            &self.body,
            &self.header("webhook-signature"),
        )
    }
}

/// A scripted answer: status, Retry-After, `text/plain` body.
type Answer = (u16, Option<String>, Option<String>);

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    /// Scripted answers (status, Retry-After, text/plain body), used in
    /// order; then 200.
    script: Mutex<VecDeque<Answer>>,
    /// Answers wait (after recording the request) while a test holds it
    /// ([`Receiver::hold`]).
    hold: Arc<tokio::sync::RwLock<()>>,
}

/// A real HTTP server that records webhook requests.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .fallback(record)
            // Payloads of large messages are larger than axum's 2 MB.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next answers, in order (status, Retry-After).
    pub fn script(&self, answers: &[(u16, Option<&str>)]) {
        let mut s = self.state.script.lock().unwrap();
        s.extend(
            answers
                .iter()
                .map(|(c, r)| (*c, r.map(str::to_string), None)),
        );
    }

    /// The next answers, in order (status, `text/plain` body).
    pub fn script_text(&self, answers: &[(u16, &str)]) {
        let mut s = self.state.script.lock().unwrap();
        s.extend(answers.iter().map(|(c, b)| (*c, None, Some(b.to_string()))));
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Holds every answer (requests are still recorded) until the guard
    /// is dropped: an attempt stays in flight as long as the test wants.
    pub async fn hold(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.state.hold.clone().write_owned().await
    }

    /// Waits until at least `n` requests arrived (or panics after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Hit> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("expected {n} webhook requests, got {}", hits.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    state.hits.lock().unwrap().push(Hit {
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body,
    });
    drop(state.hold.read().await);
    let (code, retry_after, text) = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, None, None));
    let status = StatusCode::from_u16(code).unwrap();
    let mut resp = match text {
        Some(t) => (status, [("content-type", "text/plain")], t).into_response(),
        None => status.into_response(),
    };
    if let Some(r) = retry_after {
        resp.headers_mut().insert("retry-after", r.parse().unwrap());
    }
    resp
}

/// A raw SMTP client: sends exact bytes, reads whole (multi-line) replies.
/// It owns its halves, so a test can talk before the greeting, bind its
/// source address, watch for unsolicited replies (`r.fill_buf()`) or hand
/// its writer to a task.
pub struct Smtp {
    pub r: BufReader<OwnedReadHalf>,
    pub w: OwnedWriteHalf,
}

impl Smtp {
    /// Connects and returns the client with the greeting.
    pub async fn connect(addr: SocketAddr) -> (Smtp, String) {
        let mut s = Smtp::connect_raw(addr).await;
        let greeting = s.reply().await;
        (s, greeting)
    }

    /// Connects without reading anything.
    pub async fn connect_raw(to: SocketAddr) -> Smtp {
        Smtp::new(TcpStream::connect(to).await.unwrap())
    }

    /// Connects from `src` (port chosen by the kernel), without reading.
    pub async fn connect_from(src: IpAddr, to: SocketAddr) -> Smtp {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(src, 0)).unwrap();
        Smtp::new(socket.connect(to).await.unwrap())
    }

    fn new(stream: TcpStream) -> Smtp {
        let (r, w) = stream.into_split();
        Smtp {
            r: BufReader::new(r),
            w,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    /// One reply; see [`read_reply`].
    pub async fn reply(&mut self) -> String {
        read_reply(&mut self.r).await
    }

    /// Sends `line` + CRLF and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// True once the server has closed the connection (within 5 s) without
    /// sending anything more.
    pub async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.r.read_to_end(&mut rest)).await,
            Ok(Ok(_)) | Ok(Err(_))
        ) && rest.is_empty()
    }

    /// A full transaction for a message given as bytes (a `.eml` file):
    /// dot-stuffed and terminated like any client would; returns the reply
    /// to the end of DATA.
    pub async fn send_raw_mail(&mut self, from: &str, to: &[&str], raw: &[u8]) -> String {
        assert!(
            self.cmd(&format!("MAIL FROM:<{from}>"))
                .await
                .starts_with("250")
        );
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            assert!(r.starts_with("250"), "RCPT {t}: {r}");
        }
        assert!(self.cmd("DATA").await.starts_with("354"));
        let mut stuffed = Vec::with_capacity(raw.len() + 64);
        for line in raw.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                stuffed.push(b'.');
            }
            stuffed.extend_from_slice(line);
        }
        if !stuffed.ends_with(b"\r\n") {
            stuffed.extend_from_slice(b"\r\n");
        }
        self.send(&stuffed).await;
        self.cmd(".").await
    }

    /// Connects to `addr`, greets, sends `message` from alice@example.org to
    /// `to`, expects the `250` and quits; the queue id from the reply.
    pub async fn mail_one(addr: SocketAddr, to: &str, message: &str) -> String {
        let (mut c, _) = Smtp::connect(addr).await;
        c.cmd("EHLO client.test").await;
        let r = c.send_mail("alice@example.org", &[to], message).await;
        assert!(r.starts_with("250"), "{r}");
        c.cmd("QUIT").await;
        queue_id(&r)
    }

    /// A full transaction; returns the reply to the end of DATA.
    pub async fn send_mail(&mut self, from: &str, to: &[&str], message: &str) -> String {
        assert!(
            self.cmd(&format!("MAIL FROM:<{from}>"))
                .await
                .starts_with("250")
        );
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            assert!(r.starts_with("250"), "RCPT {t}: {r}");
        }
        assert!(self.cmd("DATA").await.starts_with("354"));
        self.send(message.as_bytes()).await;
        self.cmd(".").await
    }
}

/// One reply from any stream (plain or TLS): the lines of a multi-line
/// reply joined with `\n`; empty once the server closed (or reset) the
/// connection. Panics after 10 s.
pub async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> String {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .expect("reply in time")
            .unwrap_or(0);
        if n == 0 {
            return out.join("\n");
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        out.push(line);
        if last {
            return out.join("\n");
        }
    }
}

/// Receiver + app with one catch-all route to `/hook`, signed with [`SECRET`].
pub async fn app_with_receiver(extra: &[(&str, &str)]) -> (App, Receiver) {
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let mut vars = vec![
        ("POSTERN_WEBHOOK_URL", url.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ];
    vars.extend_from_slice(extra);
    let app = spawn_app(&vars).await;
    (app, rx)
}

/// A file under tests/fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The test Python and Python's MIME check, shared with the library's
/// unit tests.
#[path = "../support/python.rs"]
mod python_support;
pub use python_support::{mime_reports, python};

/// Runs the test Python on `script` (`-c`) with `args`, killed after
/// `secs`; the script must succeed and print one JSON value, returned.
pub async fn python_json(script: &str, args: &[&str], secs: u64) -> serde_json::Value {
    let out = tokio::time::timeout(
        Duration::from_secs(secs),
        tokio::process::Command::new(python())
            .arg("-c")
            .arg(script)
            .args(args)
            .env("PYTHONIOENCODING", "utf-8")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python finishes in time")
    .expect("python starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A recording webhook endpoint (200 to everything) on a port reserved in
/// advance: bound but not listening (connections are refused) until
/// [`Endpoint::open`].
///
/// The webhook URL is written into each spooled message at accept time, so
/// "the endpoint comes back" has to mean the same URL starts answering.
pub struct Endpoint {
    socket: Option<TcpSocket>,
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// How long each answer waits after the request was recorded.
    delay: Duration,
}

impl Endpoint {
    pub fn reserve() -> Endpoint {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        Endpoint {
            socket: Some(socket),
            addr,
            hits: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    /// Open at once, answering each request `delay` after recording it.
    pub fn slow(delay: Duration) -> Endpoint {
        let mut e = Endpoint::reserve();
        e.delay = delay;
        e.open();
        e
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn open(&mut self) {
        let listener = self.socket.take().expect("open once").listen(128).unwrap();
        let delay = self.delay;
        let app = axum::Router::new()
            .fallback(
                move |State(hits): State<Arc<Mutex<Vec<Hit>>>>,
                      uri: axum::http::Uri,
                      headers: HeaderMap,
                      body: Bytes| async move {
                    hits.lock().unwrap().push(Hit {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    StatusCode::OK
                },
            )
            .with_state(self.hits.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

/// The Message-ID a webhook carries (without angle brackets).
pub fn message_id(hit: &Hit) -> String {
    hit.json()["message_id"]
        .as_str()
        .expect("message_id in payload")
        .to_string()
}

/// The value of the first header `name` in a webhook payload.
pub fn payload_header(payload: &serde_json::Value, name: &str) -> String {
    payload["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("{name} header"))["value"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `queued as <id>` from a 250 reply.
pub fn queue_id(reply: &str) -> String {
    assert!(reply.starts_with("250 2.0.0 OK: queued as "), "{reply}");
    reply.rsplit(' ').next().unwrap().to_string()
}

/// A PROXY protocol v2 header, built by hand from the spec (not by the
/// crate the server parses with): the command byte (`0x21` PROXY, `0x20`
/// LOCAL), the family/transport byte (`0x11` TCP over IPv4, `0x21` TCP
/// over IPv6, `0x00` unspecified) and the address block.
pub fn proxy_v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    h.push(command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    h.extend_from_slice(block);
    h
}

/// A port nothing listens on (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` retries `every` apart, as a `POSTERN_RETRY_SCHEDULE` value.
pub fn schedule(n: usize, every: &str) -> String {
    vec![every; n].join(",")
}

/// Files in `spool/<sub>` (0 when it does not exist).
pub fn count(spool: &Path, sub: &str) -> usize {
    std::fs::read_dir(spool.join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Ids of the messages pending in the spool: its `msg/` files and its
/// log's pending records, read from disk (`postern::spool::pending_on_disk`).
pub fn pending(spool: &Path) -> Vec<String> {
    postern::spool::pending_on_disk(spool).unwrap_or_default()
}

/// How many messages are pending in the spool ([`pending`]).
pub fn spooled(spool: &Path) -> usize {
    pending(spool).len()
}

/// Names of the files in `spool/<sub>`.
pub fn listing(spool: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool.join(sub))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The `/metrics` text of `app`.
pub async fn metrics(app: &App) -> String {
    reqwest::get(format!("http://{}/metrics", app.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `cond` holds, polling; panics with `what` after `secs`.
pub async fn wait_until(secs: u64, what: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {}", what());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The port a helper child process announces as its first stdout line,
/// `PORT <n>` (tests/smtp_server/server.py, tests/dns_server/server.py),
/// waited for at most 20 s on a thread so that a hung child cannot hang
/// the test; `Err` with the line (possibly empty) otherwise.
pub fn announced_port(child: &mut std::process::Child) -> Result<u16, String> {
    use std::io::BufRead as _;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    line.trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or(line)
}

/// The value of the sample line starting with `name` (labels included).
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// A TCP server on loopback that accepts every connection, holds it open
/// and never writes a byte (an SMTP server that never greets). Dropped,
/// it stops and closes what it held.
pub struct Silent {
    pub port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(sock);
            }
        });
        Silent {
            port,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}
