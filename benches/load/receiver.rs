//! The webhook receiver: an in-process axum server that verifies every signature and records latency.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use postern::model::secret::Secret;
use postern::model::sign::verify;

use crate::corpus::DOMAIN;

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Shared by the SMTP clients and the webhook receiver. Times are ns since
/// `base`, plus one (0 = not yet).
pub(crate) struct Run {
    pub(crate) base: Instant,
    tag: String,
    pub(crate) n: usize,
    pub(crate) next: AtomicUsize,
    pub(crate) stop_sending: AtomicBool,
    pub(crate) started: Vec<AtomicU64>,
    pub(crate) accepted_at: Vec<AtomicU64>,
    pub(crate) arrived: Vec<AtomicU64>,
    pub(crate) accepted: AtomicUsize,
    pub(crate) refused: AtomicUsize,
    pub(crate) verified: AtomicUsize,
    pub(crate) sig_failures: AtomicUsize,
    pub(crate) unknown: AtomicUsize,
    pub(crate) duplicates: AtomicUsize,
    pub(crate) webhook_peers: Mutex<HashSet<SocketAddr>>,
    secret: Secret,
    /// `--rate`: transaction i may start at `origin + i * interval_ns`
    /// (0 = as fast as the connections allow).
    interval_ns: u64,
    pub(crate) origin: AtomicU64,
    /// How late each paced transaction started against its schedule (ns + 1).
    pub(crate) lag: Vec<AtomicU64>,
}

impl Run {
    pub(crate) fn paced(n: usize, rate: Option<f64>) -> Run {
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
    pub(crate) async fn wait_turn(&self, i: usize) -> bool {
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

    pub(crate) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    pub(crate) fn message_id(&self, i: usize) -> String {
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
    pub(crate) message_id: Option<String>,
}

pub(crate) async fn hook(
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

pub(crate) async fn start_receiver(run: Arc<Run>) -> SocketAddr {
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
