//! The accept loop: one tokio task per connection, tracked so shutdown can
//! wait for sessions in the middle of DATA.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, Instrument};

use super::session::{Inbound, Peer, Session};

/// Serves `listener` until `shutdown` is cancelled; returns once the loop
/// stopped accepting. Sessions keep running in `tracker`.
pub async fn run(
    listener: TcpListener,
    inbound: Inbound,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let (stream, addr) = match accepted {
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
        let _ = stream.set_nodelay(true);
        let session = Session::new(
            stream,
            inbound.clone(),
            Peer { ip: addr.ip() },
            shutdown.clone(),
        );
        let span = tracing::info_span!("smtp", peer = %addr);
        tracker.spawn(session.run().instrument(span));
    }
    info!("SMTP listener stopped accepting");
}
