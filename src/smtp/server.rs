//! The accept loops (plain SMTP with optional STARTTLS, and implicit TLS):
//! one tokio task per connection, tracked so shutdown can wait for sessions
//! in the middle of DATA, and capped globally and per client IP. With the
//! PROXY protocol on, only trusted balancers may connect and the client IP
//! is the one their header names ([`super::proxy`]), read before the per-IP
//! cap and the session see it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info};

use super::session::{Inbound, Peer, Session};
use super::starttls::handshake;
use super::{proxy, reply};

/// Counts open sessions, in total and per IP. A connection first takes a
/// [`Pending`] place under the global cap, then, once its client address
/// is known (after the PROXY header, when that is on), a [`Slot`] under the
/// per-IP cap; both are given back when they drop, however the session ends.
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
        self.acquire_total()?.for_ip(ip)
    }

    /// Takes a place under the global cap only.
    pub fn acquire_total(self: &Arc<Self>) -> Result<Pending, Refusal> {
        let mut open = self.open.lock().expect("limiter lock");
        if open.0 >= self.max_total {
            return Err(Refusal::Total);
        }
        open.0 += 1;
        Ok(Pending {
            limiter: self.clone(),
        })
    }
}

/// A connection's place under the global cap, before its client address
/// is known: the PROXY header, read after the accept, may still change it.
#[derive(Debug)]
pub struct Pending {
    limiter: Arc<Limiter>,
}

impl Pending {
    /// Adds the per-IP place for `ip`; refused, the global place is given
    /// back too.
    pub fn for_ip(self, ip: IpAddr) -> Result<Slot, Refusal> {
        {
            let mut open = self.limiter.open.lock().expect("limiter lock");
            let per_ip = open.1.entry(ip).or_insert(0);
            if *per_ip >= self.limiter.max_per_ip {
                return Err(Refusal::PerIp);
            }
            *per_ip += 1;
        }
        Ok(Slot { ip, total: self })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.limiter.open.lock().expect("limiter lock").0 -= 1;
    }
}

/// One open session's place under the caps.
#[derive(Debug)]
pub struct Slot {
    ip: IpAddr,
    /// Dropped after [`Slot`]'s own `drop`, giving back the global place.
    total: Pending,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.total.limiter.open.lock().expect("limiter lock");
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
        let proxy = &inbound.settings.proxy;
        if !proxy.allows_peer(addr.ip()) {
            // Whoever may send a PROXY header chooses the client address
            // every limit believes: others are closed unanswered.
            info!(peer = %addr, "connection refused: not in POSTERN_SMTP_PROXY_TRUSTED");
            continue;
        }
        // The global cap applies before the PROXY header is read, so that
        // connections waiting for theirs are bounded too.
        let pending = match limiter.acquire_total() {
            Ok(pending) => pending,
            Err(why) => {
                info!(peer = %addr, ?why, "connection refused: session cap");
                if mode == Mode::Plain {
                    // From a task so a client that does not read cannot
                    // stall the accept loop.
                    tracker.spawn(refuse(stream, why));
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inbound = inbound.clone();
        let shutdown = shutdown.clone();
        let span = tracing::info_span!(
            "smtp",
            peer = %addr,
            client = tracing::field::Empty,
            tls = mode == Mode::ImplicitTls
        );
        tracker.spawn(
            async move {
                let peer = addr.ip();
                // With the protocol on, the header comes first, before any
                // greeting or TLS handshake; a bad one closes unanswered.
                let header = proxy::accept(&mut stream, peer, &inbound.settings.proxy);
                let ip = tokio::select! {
                    r = header => match r {
                        Ok(ip) => ip,
                        Err(_) => return,
                    },
                    _ = shutdown.cancelled() => return,
                };
                if ip != peer {
                    tracing::Span::current().record("client", tracing::field::display(ip));
                }
                let _slot = match pending.for_ip(ip) {
                    Ok(slot) => slot,
                    Err(why) => {
                        info!(%ip, ?why, "connection refused: session cap");
                        if mode == Mode::Plain {
                            refuse(stream, why).await;
                        }
                        return;
                    }
                };
                let metrics = inbound.metrics.clone();
                metrics.smtp_sessions.inc();
                metrics.smtp_sessions_open.inc();
                serve(stream, ip, mode, inbound, shutdown).await;
                metrics.smtp_sessions_open.dec();
            }
            .instrument(span),
        );
    }
    info!(?mode, "SMTP listener stopped accepting");
}

/// The `421` of a full cap, written within 5 s, then the close.
async fn refuse(mut stream: TcpStream, why: Refusal) {
    let text = match why {
        Refusal::Total => reply::TOO_MANY_CONNECTIONS,
        Refusal::PerIp => reply::TOO_MANY_FROM_IP,
    };
    let line = format!("{text}\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
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
        // Boxed: a TLS session is bigger than a plain one, and every plain
        // session's task would otherwise reserve room for it.
        Mode::ImplicitTls => {
            Box::pin(async move {
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
            })
            .await
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

    #[test]
    fn a_pending_place_counts_globally_until_its_ip_is_known() {
        let l = Limiter::new(2, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let p1 = l.acquire_total().unwrap();
        let p2 = l.acquire_total().unwrap();
        assert_eq!(l.acquire_total().unwrap_err(), Refusal::Total);
        let a1 = p1.for_ip(a).unwrap();
        // Refused per IP: its global place is given back at once.
        assert_eq!(p2.for_ip(a).unwrap_err(), Refusal::PerIp);
        let p3 = l.acquire_total().unwrap();
        assert_eq!(l.acquire_total().unwrap_err(), Refusal::Total);
        drop(a1);
        let _a2 = p3.for_ip(a).unwrap();
        let _p4 = l.acquire_total().unwrap();
        assert_eq!(l.acquire(a).unwrap_err(), Refusal::Total);
    }
}
