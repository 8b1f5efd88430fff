//! Serving the HTTP router with the limits a public listener needs, which
//! `axum::serve` does not set: it reads request headers without a time
//! limit, keeps idle keep-alive connections forever and accepts any
//! number of connections. Here, hyper runs each connection with
//!
//! - a **header timeout** (`POSTERN_HTTP_HEADER_TIMEOUT`): the request line
//!   and headers, also of the next request on a kept-alive connection, must
//!   arrive within it, or the connection is closed (HTTP/1; hyper answers
//!   `408` when part of a request came);
//! - a **body timeout** (`POSTERN_HTTP_BODY_TIMEOUT`): a request's body must
//!   be complete this long after its headers, or reading it fails
//!   ([`DeadlineBody`]; `POST /v1/messages` answers `408 body_timeout`), so
//!   a body sent a byte a minute cannot hold the API's memory budget;
//! - a **connection cap** (`POSTERN_HTTP_MAX_CONNECTIONS`): at the cap the
//!   listener stops accepting, and new connections wait in the kernel's
//!   backlog until one closes, instead of each costing a task and a buffer.
//!
//! Responses are not limited: a Server-Sent Events stream may stay open as
//! long as its client reads it (it counts against the cap).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use crate::api::body::BodyTimedOut;

/// Connections served at once when `POSTERN_HTTP_MAX_CONNECTIONS` is
/// unset: far above what apps, probes and a console use, far below the
/// default file limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// What [`serve`] enforces on each connection (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            // Generous for any client that means it, short for one that
            // holds a socket open without asking anything.
            header_timeout: Duration::from_secs(10),
            // POSTERN_API_MAX_BYTES (40 MB) in a minute is 0.7 MB/s: slow
            // for a server-to-server API, fast for a trickle.
            body_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets the
/// open connections finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: the error is
                    // the listener's state, not the client's; wait a
                    // little instead of spinning on it.
                    warn!(error = %e, "HTTP accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service(app.clone(), peer, limits.body_timeout);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // hyper's header timer starts once it parses HTTP/1, but the
            // auto builder first waits for bytes to tell HTTP/1 from
            // HTTP/2, without a limit: a client that connects and says
            // nothing is cut off here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                drop(permit);
                return;
            }
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The router as a hyper service for one connection from `peer`: each
/// request carries the peer (what `ConnectInfo` extracts) and a body
/// bounded by `body_timeout`.
fn service(
    app: Router,
    peer: SocketAddr,
    body_timeout: Duration,
) -> hyper_util::service::TowerToHyperService<
    impl tower::Service<
        hyper::Request<Incoming>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send,
> {
    let svc = app.map_request(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|b| Body::new(DeadlineBody::new(b, body_timeout)));
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    hyper_util::service::TowerToHyperService::new(svc)
}

/// A request body that fails once its deadline passes.
pub struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    /// Armed on creation, i.e. when the request's headers were read.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // A body that is already complete never times out.
        if self.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
