//! One endpoint that hangs must not stall everyone's mail: the per-endpoint
//! concurrency limit keeps other routes (and the relay's neighbours) flowing,
//! and the circuit breaker stops contacting an endpoint that keeps timing
//! out until its cool-down is over, without losing or killing its mail.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

/// A TCP endpoint that accepts every connection and never says a word
/// (holding the sockets open, like a wedged backend behind a load
/// balancer), until [`Hung::recover`] makes it pass new connections on to a
/// real server. Counts the connections it accepted.
struct Hung {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    forward_to: Arc<Mutex<Option<SocketAddr>>>,
}

impl Hung {
    async fn start() -> Hung {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let forward_to: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (count, forward) = (connections.clone(), forward_to.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let target = *forward.lock().unwrap();
                match target {
                    None => held.push(socket),
                    Some(to) => {
                        tokio::spawn(async move {
                            let mut upstream = TcpStream::connect(to).await.unwrap();
                            let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                        });
                    }
                }
            }
        });
        Hung {
            addr,
            connections,
            forward_to,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// `scheme://host:port`: how Postern names this endpoint in metrics.
    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// From now on, new connections reach `to` (those held stay hung).
    fn recover(&self, to: SocketAddr) {
        *self.forward_to.lock().unwrap() = Some(to);
    }
}

/// Sends one message per entry of `to` (one recipient each) in one SMTP
/// session; returns the queue ids.
async fn send_each(app: &App, to: &[&str]) -> Vec<String> {
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let mut ids = Vec::new();
    for (i, rcpt) in to.iter().enumerate() {
        let message = format!("Subject: m{i}\r\nMessage-ID: <m{i}.{rcpt}>\r\n\r\nhi\r\n");
        ids.push(queue_id(
            &c.send_mail("alice@example.org", &[rcpt], &message).await,
        ));
    }
    c.cmd("QUIT").await;
    ids
}

/// The value of the series `name{endpoint="origin"}` (None: not exported).
fn series(text: &str, name: &str, origin: &str) -> Option<f64> {
    let prefix = format!("{name}{{endpoint=\"{origin}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

async fn breaker_state(app: &App, hung: &Hung) -> Option<f64> {
    series(
        &metrics(app).await,
        "postern_endpoint_breaker_state",
        &hung.origin(),
    )
}

/// More hung deliveries than `POSTERN_DELIVERY_CONCURRENCY`: before the
/// per-endpoint limit, they held every slot for the whole 30 s timeout and
/// the healthy route's mail waited behind them.
#[tokio::test]
async fn healthy_route_is_delivered_while_another_endpoint_hangs() {
    let hung = Hung::start().await;
    let rx = Receiver::start().await;
    let routes = json!([
        {"match": "stuck@example.com", "url": hung.url()},
        {"match": "*", "url": rx.url("/ok")},
    ])
    .to_string();
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_DELIVERY_CONCURRENCY", "4"),
        ("POSTERN_WEBHOOK_TIMEOUT", "30s"),
    ])
    .await;
    send_each(&app, &["stuck@example.com"; 10]).await;
    wait_until(
        10,
        || "the hung endpoint to be contacted".into(),
        || hung.connections() >= 1,
    )
    .await;
    let healthy = send_each(&app, &["a@example.com", "b@example.com", "c@example.com"]).await;
    // Far less than the hung endpoint's 30 s timeout: nothing here waits
    // for a hung attempt to give up.
    let hits = rx.wait_for(3, 10).await;
    let mut delivered: Vec<String> = hits.iter().map(|h| h.json()["id"].to_string()).collect();
    delivered.sort();
    let mut want: Vec<String> = healthy.iter().map(|id| format!("\"{id}\"")).collect();
    want.sort();
    assert_eq!(delivered, want);
    // The default per-endpoint limit is max(1, 4 / 4) = 1: one attempt at
    // a time, the other nine wait without holding a slot.
    assert_eq!(hung.connections(), 1);
}

/// Two timeouts in a row open the breaker: the endpoint is left alone for
/// the cool-down, then one probe goes (and fails, so it opens again), then
/// the endpoint recovers and every message is delivered. The retry schedule
/// allows two attempts only, so had waiting behind the breaker counted as
/// attempts, messages would have gone dead.
#[tokio::test]
async fn breaker_opens_for_a_hung_endpoint_and_nothing_is_lost() {
    let hung = Hung::start().await;
    let rx = Receiver::start().await;
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", &hung.url()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_DELIVERY_CONCURRENCY", "4"),
        ("POSTERN_WEBHOOK_TIMEOUT", "1s"),
        ("POSTERN_RETRY_SCHEDULE", "100ms"),
        ("POSTERN_RETRY_JITTER", "0"),
        ("POSTERN_ENDPOINT_BREAKER_FAILURES", "2"),
        ("POSTERN_ENDPOINT_BREAKER_COOLDOWN", "5s"),
    ])
    .await;
    let ids = send_each(&app, &["bob@example.com"; 5]).await;

    // Open after the second timeout (one attempt at a time: the limit is 1).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while breaker_state(&app, &hung).await != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "breaker never opened"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(hung.connections(), 2, "exactly the two failed attempts");
    // Well inside the 5 s cool-down: not contacted, though retries are due
    // every 100 ms.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hung.connections(), 2, "contacted during the cool-down");
    assert_eq!(breaker_state(&app, &hung).await, Some(1.0));

    // After the cool-down, a single probe.
    wait_until(10, || "the probe".into(), || hung.connections() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hung.connections(), 3, "one probe, not a flood");
    // The probe hangs too (its connection was accepted while hung); it
    // times out and the breaker opens again. Meanwhile the endpoint recovers.
    hung.recover(rx.addr);

    let hits = rx.wait_for(5, 30).await;
    let mut delivered: Vec<String> = hits
        .iter()
        .map(|h| h.json()["id"].as_str().unwrap().to_string())
        .collect();
    delivered.sort();
    delivered.dedup();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(delivered, want, "every message delivered, none dead");
    crate::delivery::wait_empty(&app.spool).await;
    assert_eq!(count(&app.spool, "state"), 0, "no dead delivery left");
    let text = metrics(&app).await;
    assert_eq!(
        series(&text, "postern_endpoint_breaker_state", &hung.origin()),
        Some(0.0),
        "closed again"
    );
    assert_eq!(
        series(
            &text,
            "postern_endpoint_breaker_opens_total",
            &hung.origin()
        ),
        Some(2.0),
        "opened after two timeouts, and again after the failed probe"
    );
}

/// The relay is one endpoint too: a relay that accepts the connection and
/// never greets held every delivery slot for its whole transaction deadline
/// (60 s), so inbound webhooks waited.
#[tokio::test]
async fn hung_relay_does_not_stall_inbound_webhooks() {
    const API_KEY: &str = "hung-relay-test-key-0123456789ab";
    let relay = Hung::start().await;
    let rx = Receiver::start().await;
    let relay_url = format!("smtp://{}?tls=none", relay.addr);
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", &rx.url("/hook")),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_RELAY_URL", &relay_url),
        ("POSTERN_API_KEYS", API_KEY),
        ("POSTERN_DELIVERY_CONCURRENCY", "4"),
    ])
    .await;
    let client = reqwest::Client::new();
    for i in 0..6 {
        let r = client
            .post(format!("http://{}/v1/messages", app.http))
            .bearer_auth(API_KEY)
            .json(&json!({
                "from": "app@example.org",
                "to": [format!("user{i}@example.net")],
                "subject": "via a hung relay",
                "text": "hello\n",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    wait_until(
        10,
        || "the relay to be contacted".into(),
        || relay.connections() >= 1,
    )
    .await;
    let inbound = send_each(&app, &["bob@example.com"]).await;
    let hit = rx.wait_for(1, 10).await.remove(0);
    assert_eq!(hit.json()["id"], inbound[0].as_str());
    // One relay transaction at a time (max(1, 4 / 4)); the rest wait.
    assert_eq!(relay.connections(), 1);
}
