//! `spawn_app()`, a recording webhook receiver, and a raw SMTP client for
//! asserting exact replies.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use postern::config::Config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
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
        postern::run(config, postern::Listeners { smtp, smtps, http }, token)
            .await
            .unwrap();
    });
    // Ready once a greeting comes: the spool is open and scanned by then.
    let (mut c, greeting) = Smtp::connect(smtp_addr).await;
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
        let secret = postern::webhook::sign::Secret::parse(SECRET).unwrap();
        let ts: i64 = self.header("webhook-timestamp").parse().unwrap();
        postern::webhook::sign::verify(
            &secret,
            &self.header("webhook-id"),
            ts,
            &self.body,
            &self.header("webhook-signature"),
        )
    }
}

#[derive(Default)]
struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    /// Scripted answers (status, Retry-After), used in order; then 200.
    script: Mutex<VecDeque<(u16, Option<String>)>>,
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
        s.extend(answers.iter().map(|(c, r)| (*c, r.map(str::to_string))));
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
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
    let (code, retry_after) = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, None));
    let mut resp = StatusCode::from_u16(code).unwrap().into_response();
    if let Some(r) = retry_after {
        resp.headers_mut().insert("retry-after", r.parse().unwrap());
    }
    resp
}

/// A raw SMTP client: sends exact bytes, reads whole (multi-line) replies.
pub struct Smtp {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
}

impl Smtp {
    /// Connects and returns the client with the greeting.
    pub async fn connect(addr: SocketAddr) -> (Smtp, String) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = tokio::io::split(stream);
        let mut s = Smtp {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = s.reply().await;
        (s, greeting)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// One reply; lines of a multi-line reply joined with `\n`. Empty when
    /// the server closed the connection.
    pub async fn reply(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
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

    /// Sends `line` + CRLF and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// True once the server has closed the connection.
    pub async fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut line)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
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

/// The test Python (a virtualenv with standardwebhooks), set by tests/run.sh.
pub fn python() -> String {
    std::env::var("POSTERN_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-venv/bin/python");
        if std::path::Path::new(venv).exists() {
            venv.to_string()
        } else {
            panic!("POSTERN_TEST_PYTHON is not set: run the tests through tests/run.sh")
        }
    })
}
