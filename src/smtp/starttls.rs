//! STARTTLS (RFC 3207): the verb, the handshake, and the rest of the
//! session on the encrypted stream. The handshake wrapper also serves the
//! implicit-TLS listener ([`super::server`]).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::reply;
use super::session::{End, Inbound, Next, Session};
use crate::spool::TlsInfo;

/// A TLS handshake that takes longer than this is abandoned.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// STARTTLS (RFC 3207). Whatever the client pipelined after the
    /// command was read in plaintext and is thrown away here, so it can
    /// never run inside the TLS session (CVE-2011-0411).
    pub(super) fn starttls(&mut self) -> Next {
        if self.tls.is_some() {
            return self.error(reply::TLS_ACTIVE);
        }
        if self.inbound.tls.is_none() {
            return self.error(reply::NOT_IMPLEMENTED);
        }
        let dropped = self.input.len();
        if dropped > 0 {
            warn!(
                bytes = dropped,
                "discarding plaintext pipelined after STARTTLS"
            );
        }
        self.input.clear();
        self.discarding = false;
        self.reply(reply::TLS_READY);
        Next::Close(End::StartTls)
    }

    /// After `220 Ready to start TLS`: the handshake, then a new session
    /// over the encrypted stream (the same code, over `TlsStream<S>`).
    pub(super) async fn upgrade(self) -> End
    where
        S: Send,
    {
        let Some(acceptor) = self.inbound.tls.clone() else {
            return End::TlsHandshake("no TLS configured".into());
        };
        let Session {
            stream,
            inbound,
            peer,
            shutdown,
            errors,
            deadline,
            ..
        } = self;
        let (tls, info) = match handshake(&acceptor, stream, &inbound, "STARTTLS").await {
            Ok(t) => t,
            Err(reason) => return End::TlsHandshake(reason),
        };
        // The connection's span said `tls=false` when it was accepted.
        tracing::Span::current().record("tls", true);
        debug!(?info, "STARTTLS established");
        // RFC 3207 4.2: all knowledge from before the handshake is
        // discarded; the client starts again with EHLO.
        let mut session = Session::new(tls, inbound, peer, shutdown).with_tls(info);
        session.errors = errors;
        session.deadline = deadline;
        let end = session.serve().await;
        let _ = session.stream.shutdown().await;
        debug!(?end, "session ended");
        end
    }
}

/// A server-side TLS handshake (STARTTLS or implicit TLS), bounded by
/// [`TLS_HANDSHAKE_TIMEOUT`]; failures are logged and counted.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    inbound: &Inbound,
    what: &str,
) -> Result<(tokio_rustls::server::TlsStream<S>, Option<TlsInfo>), String> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let info = tls_info(tls.get_ref().1);
            Ok((tls, info))
        }
        Ok(Err(e)) => {
            inbound.metrics.tls_handshake_failures.inc();
            warn!(error = %e, "{what} handshake failed");
            Err(e.to_string())
        }
        Err(_) => {
            warn!("{what} handshake timed out");
            Err("timeout".into())
        }
    }
}

fn tls_info(conn: &rustls::ServerConnection) -> Option<TlsInfo> {
    crate::tls::session_info(conn).map(|(version, cipher)| TlsInfo { version, cipher })
}

pub(super) fn unknown_tls() -> TlsInfo {
    TlsInfo {
        version: "unknown".into(),
        cipher: "unknown".into(),
    }
}
