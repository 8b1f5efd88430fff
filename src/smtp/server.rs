//! The accept loops (plain SMTP with optional STARTTLS, and implicit TLS):
//! one tokio task per connection, tracked so shutdown can wait for sessions
//! in the middle of DATA, and capped globally and per client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info};

use super::reply;
use super::session::{Inbound, Peer, Session, handshake};

/// Counts open sessions, in total and per IP. A slot is held by a
/// [`Slot`] and given back when it drops, however the session ends.
#[derive(Debug)]
pub struct Limiter {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

impl Limiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Limiter> {
        Arc::new(Limiter {
            max_total,
            max_per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a slot for `ip`, or says which cap is full.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().expect("limiter lock");
        if open.0 >= self.max_total {
            return Err(Refusal::Total);
        }
        let per_ip = open.1.entry(ip).or_insert(0);
        if *per_ip >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *per_ip += 1;
        open.0 += 1;
        Ok(Slot {
            limiter: self.clone(),
            ip,
        })
    }
}

/// One open session's place under the caps.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().expect("limiter lock");
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain SMTP; STARTTLS when a certificate is configured.
    Plain,
    /// TLS from the first byte (RFC 8314).
    ImplicitTls,
}

/// Serves `listener` until `shutdown` is cancelled; returns once the loop
/// stopped accepting. Sessions keep running in `tracker`.
pub async fn run(
    listener: TcpListener,
    mode: Mode,
    inbound: Inbound,
    limiter: Arc<Limiter>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let (mut stream, addr) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                // EMFILE and friends: wait and retry, never give up the port.
                error!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let slot = match limiter.acquire(addr.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                info!(peer = %addr, ?why, "connection refused: session cap");
                if mode == Mode::Plain {
                    // Written from a task so a client that does not read
                    // cannot stall the accept loop.
                    let text = match why {
                        Refusal::Total => reply::TOO_MANY_CONNECTIONS,
                        Refusal::PerIp => reply::TOO_MANY_FROM_IP,
                    };
                    tracker.spawn(async move {
                        let line = format!("{text}\r\n");
                        let _ = tokio::time::timeout(
                            Duration::from_secs(5),
                            stream.write_all(line.as_bytes()),
                        )
                        .await;
                        let _ = stream.shutdown().await;
                    });
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inbound = inbound.clone();
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("smtp", peer = %addr, tls = mode == Mode::ImplicitTls);
        tracker.spawn(
            async move {
                let _slot = slot;
                let metrics = inbound.metrics.clone();
                metrics.smtp_sessions.inc();
                metrics.smtp_sessions_open.inc();
                serve(stream, addr.ip(), mode, inbound, shutdown).await;
                metrics.smtp_sessions_open.dec();
            }
            .instrument(span),
        );
    }
    info!(?mode, "SMTP listener stopped accepting");
}

async fn serve(
    stream: TcpStream,
    ip: IpAddr,
    mode: Mode,
    inbound: Inbound,
    shutdown: CancellationToken,
) {
    let peer = Peer { ip };
    match mode {
        Mode::Plain => {
            let end = Session::new(stream, inbound, peer, shutdown).run().await;
            debug!(?end, "connection closed");
        }
        Mode::ImplicitTls => {
            let Some(acceptor) = inbound.tls.clone() else {
                error!("implicit TLS listener without a certificate");
                return;
            };
            let Ok((tls, info)) = handshake(&acceptor, stream, &inbound, "TLS").await else {
                return;
            };
            let end = Session::new(tls, inbound, peer, shutdown)
                .with_tls(info)
                .run()
                .await;
            debug!(?end, "connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_ip_and_releases() {
        let l = Limiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = l.acquire(a).unwrap();
        let _a2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).unwrap_err(), Refusal::PerIp);
        let _b1 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).unwrap_err(), Refusal::Total);
        drop(a1);
        let _b2 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(a).unwrap_err(), Refusal::Total);
    }
}
