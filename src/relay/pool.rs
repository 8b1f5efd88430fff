//! The pool of idle connections to the relay, and one transaction on a
//! pooled connection: an idle connection is reused without a probe, and a
//! transaction it loses before the relay said anything is repeated once on a
//! new connection (see [`Pool::transact`]). A reaper closes connections idle
//! for too long.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::response::Response;
use tokio::time::Instant;

use super::conn::{Conn, Connector};
use super::failure::Failure;
use super::policy::unsupported;

/// Idle connections older than this are not reused (and are closed with
/// `QUIT` by the pool's reaper).
const MAX_IDLE: Duration = Duration::from_secs(60);
/// How long a `QUIT` to a retired idle connection may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept for reuse unless
/// [`Relay::with_pool_size`](super::Relay::with_pool_size) says
/// otherwise.
const DEFAULT_POOL_SIZE: usize = 10;

/// Closes an idle connection politely (`QUIT`), off the caller's path.
fn dismiss(mut conn: Conn) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.smtp.quit()).await;
    });
}

/// The connections to one relay: opened through `connector`, and kept
/// idle between transactions up to `size`.
pub(super) struct Pool {
    pub(super) connector: Connector,
    /// Most idle connections kept.
    pub(super) size: AtomicUsize,
    /// Idle connections, most recently used last.
    idle: Mutex<Vec<Conn>>,
    reaper_started: AtomicBool,
}

impl Pool {
    /// An empty pool that keeps up to [`DEFAULT_POOL_SIZE`] idle connections.
    pub(super) fn new(connector: Connector) -> Pool {
        Pool {
            connector,
            size: AtomicUsize::new(DEFAULT_POOL_SIZE),
            idle: Mutex::new(Vec::new()),
            reaper_started: AtomicBool::new(false),
        }
    }

    /// The most recently used idle connection that is young enough and has
    /// heard nothing from the relay since; the others on the way are closed.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() < MAX_IDLE && conn.socket.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection after a transaction that left it usable (ended
    /// with a reply, nothing aborted), while the pool has room.
    fn put_back(self: &Arc<Self>, mut conn: Conn) {
        if conn.smtp.has_broken() {
            return;
        }
        conn.idle_since = Instant::now();
        let surplus = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.size.load(Ordering::Relaxed) {
                idle.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        match surplus {
            Some(conn) => dismiss(conn),
            None => self.start_reaper(),
        }
    }

    /// Starts, once, the task that closes connections idle for
    /// [`MAX_IDLE`]; it ends when the [`Relay`](super::Relay) is dropped.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MAX_IDLE / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let expired: Vec<Conn> = {
                    let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
                    let (old, young) = std::mem::take(&mut *idle)
                        .into_iter()
                        .partition(|c| c.idle_since.elapsed() >= MAX_IDLE);
                    *idle = young;
                    old
                };
                drop(pool);
                expired.into_iter().for_each(dismiss);
            }
        });
    }

    /// One transaction: on an idle connection if there is one, else on a
    /// new one.
    ///
    /// An idle connection is reused without a probe. If the relay dropped it
    /// anyway, the transaction fails with a network error before the relay
    /// said anything (not one byte received). Then the relay cannot have
    /// received the message: lettre sends each command only after the
    /// previous reply, so without a reply to `MAIL` nothing after it went
    /// out. Only in that case the transaction is repeated, once, on a new
    /// connection. Every other failure is reported, so no message can be
    /// sent twice by this module.
    pub(super) async fn transact(
        self: &Arc<Self>,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<Response, Failure> {
        let mut idle = self.take_idle();
        loop {
            let reused = idle.is_some();
            let mut conn = match idle.take() {
                Some(conn) => conn,
                None => self.connector.open().await?,
            };
            if let Some(refusal) = unsupported(&conn.info, envelope, body) {
                self.put_back(conn);
                return Err(refusal);
            }
            let received = conn.socket.received();
            let failure = match conn.smtp.send(envelope, body).await {
                Ok(response) => {
                    self.put_back(conn);
                    return Ok(response);
                }
                Err(e) => Failure::from(e),
            };
            let heard = conn.socket.received() != received;
            if repeat_on_new_connection(reused, heard, &failure) {
                tracing::debug!(error = %failure, "idle relay connection was gone; using a new one");
                continue;
            }
            // lettre aborted (QUIT, close) after any error it got from the
            // relay; `put_back` drops such connections.
            self.put_back(conn);
            return Err(failure);
        }
    }
}

/// Whether a failed transaction is repeated on a new connection (see
/// [`Pool::transact`]): only one on a `reused` idle connection that failed
/// in silence before the relay sent a single byte (`heard`).
fn repeat_on_new_connection(reused: bool, heard: bool, failure: &Failure) -> bool {
    reused && !heard && failure.is_silence()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::repeat_on_new_connection;
    use crate::relay::RcptOutcome;
    use crate::relay::failure::Failure;
    use crate::relay::fake::{FakeRelay, Hangup, fake_relay, plain_relay_to, send_one};

    #[test]
    fn repeat_only_a_silent_loss_of_a_reused_connection() {
        use Failure as F;
        let reply = || F::Reply {
            code: 421,
            text: "4.3.2 bye".into(),
        };
        #[rustfmt::skip]
        let cases = [
            (true, false, F::Network("reset".into()), true),
            (true, false, F::Timeout("60 s".into()), true),
            (true, false, F::Tls("close_notify".into()), true),
            // A new connection, or one the relay said something on.
            (false, false, F::Network("reset".into()), false),
            (true, true, F::Network("reset".into()), false),
            (true, true, F::Timeout("60 s".into()), false),
            // Replies and local refusals are answers, not a lost connection.
            (true, false, reply(), false),
            (true, false, F::SmtpUtf8Unsupported, false),
            (true, false, F::EightBitUnsupported, false),
            (true, false, F::StartTlsUnavailable, false),
            (true, false, F::NoAuthMechanism, false),
            (true, false, F::Other("weird".into()), false),
        ];
        for (reused, heard, failure, want) in cases {
            assert_eq!(
                repeat_on_new_connection(reused, heard, &failure),
                want,
                "reused {reused}, heard {heard}, {failure:?}"
            );
        }
    }

    /// Sends two messages, `pause` apart, through a relay whose first
    /// connection misbehaves as `hangup` says; the second one's outcome.
    async fn second_of_two(hangup: Hangup, pause: Option<Duration>) -> (FakeRelay, RcptOutcome) {
        let fake = fake_relay("", None, hangup).await;
        let relay = plain_relay_to(&fake);
        assert!(matches!(
            send_one(&relay, b"1\r\n").await,
            RcptOutcome::Sent { .. }
        ));
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let second = send_one(&relay, b"2\r\n").await;
        (fake, second)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn idle_connection_closed_by_the_relay_is_not_used() {
        let pause = Some(Duration::from_millis(100));
        let (fake, second) = second_of_two(Hangup::AfterFirstMessage, pause).await;
        assert!(matches!(second, RcptOutcome::Sent { .. }), "{second:?}");
        assert_eq!(fake.messages(), 2);
        assert_eq!(fake.connections(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reused_connection_lost_before_any_reply_is_retried_once() {
        let (fake, second) = second_of_two(Hangup::OnSecondMail, None).await;
        assert!(matches!(second, RcptOutcome::Sent { .. }), "{second:?}");
        assert_eq!(fake.messages(), 2);
        assert_eq!(fake.connections(), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reused_connection_lost_after_the_data_is_not_retried() {
        let (fake, second) = second_of_two(Hangup::OnSecondDot, None).await;
        assert!(matches!(second, RcptOutcome::Deferred { .. }), "{second:?}");
        // Received once; a retry could have delivered it twice.
        assert_eq!(fake.messages(), 2);
        assert_eq!(fake.connections(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn pool_size_bounds_idle_connections() {
        let fake = fake_relay("", None, Hangup::Never).await;
        let relay = Arc::new(plain_relay_to(&fake).with_pool_size(2));
        let sends: Vec<_> = (0..6)
            .map(|_| {
                let relay = Arc::clone(&relay);
                tokio::spawn(async move { send_one(&relay, b"x\r\n").await })
            })
            .collect();
        for send in sends {
            assert!(matches!(send.await.unwrap(), RcptOutcome::Sent { .. }));
        }
        let idle = relay.pool.idle.lock().unwrap().len();
        assert!(idle <= 2, "{idle} idle connections kept");
        let opened = fake.connections();
        for _ in 0..4 {
            assert!(matches!(
                send_one(&relay, b"y\r\n").await,
                RcptOutcome::Sent { .. }
            ));
        }
        assert_eq!(
            fake.connections(),
            opened,
            "sequential sends reuse idle connections"
        );

        let none = plain_relay_to(&fake).with_pool_size(0);
        let before = fake.connections();
        send_one(&none, b"z\r\n").await;
        send_one(&none, b"z\r\n").await;
        assert_eq!(fake.connections(), before + 2);
    }
}
