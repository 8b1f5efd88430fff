//! The TCP socket under one relay connection, and the stream lettre reads
//! and writes through it: opened by Postern rather than lettre so that it has
//! `TCP_NODELAY`, counts the bytes the relay sent, and lets the pool look at
//! an idle connection without reading from it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::failure::Failure;

/// The TCP socket under one relay connection, opened by Postern (with
/// `TCP_NODELAY`: lettre writes the message and the final `.` separately,
/// and Nagle's algorithm would hold the `.` back until the relay's delayed
/// ACK, some 40 ms per message). Shared between the stream lettre drives and
/// the pool, which looks at an idle socket without reading from it.
#[derive(Debug)]
pub(super) struct Socket {
    tcp: TcpStream,
    /// Bytes received so far, to tell whether the relay said anything
    /// during a transaction.
    received: AtomicU64,
}

impl Socket {
    /// A TCP connection with `TCP_NODELAY` to the first address of the relay
    /// that answers, each address given the network timeout.
    pub(super) async fn connect(
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Socket, Failure> {
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(connection_error)?;
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    tcp.set_nodelay(true).map_err(connection_error)?;
                    return Ok(Socket {
                        tcp,
                        received: AtomicU64::new(0),
                    });
                }
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some("connection timed out".to_owned()),
            }
        }
        let reason = last.unwrap_or_else(|| "could not resolve to any address".to_owned());
        Err(connection_error(reason))
    }

    /// Bytes received so far.
    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Whether nothing arrived while the connection was idle. A relay that
    /// timed the connection out has closed it (end of stream) or said `421`
    /// first; either way the connection is no use. Costs one `recv` with
    /// `MSG_PEEK` at most, no round trip.
    pub(super) fn is_quiet(&self) -> bool {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(Waker::noop());
        self.tcp.poll_peek(&mut cx, &mut buf).is_pending()
    }
}

/// Worded as lettre words its own connection errors, so that a relay that
/// cannot be reached reads the same whoever noticed.
fn connection_error(reason: impl fmt::Display) -> Failure {
    Failure::Network(format!("Connection error: {reason}"))
}

/// The [`Socket`] as the stream lettre reads and writes (through TLS when
/// there is TLS).
#[derive(Debug)]
pub(super) struct SocketStream(pub(super) Arc<Socket>);

impl AsyncRead for SocketStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = &self.0;
        loop {
            ready!(socket.tcp.poll_read_ready(cx))?;
            match socket.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    socket.received.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SocketStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The socket closes when the connection is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncTokioStream for SocketStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.tcp.peer_addr()
    }
}
