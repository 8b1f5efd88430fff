//! TLS towards the relay: lettre's [`TlsParameters`] from the
//! [`RelayConfig`] (roots, `?ca=`), and the way into an implicit-TLS
//! (`smtps://`) connection, which lettre offers no direct path to on a
//! stream of one's own.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

#[allow(deprecated)] // AsyncNetworkStream: lettre's only way to TLS on a stream of one's own.
use lettre::transport::smtp::client::AsyncNetworkStream;
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::{ClientId, ServerInfo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::failure::Failure;
use super::url::{RelayConfig, RelayConfigError};

/// lettre's TLS settings for the relay: the host as server name, the
/// built-in Mozilla roots plus the `?ca=` file, which is read here.
pub(super) fn parameters(cfg: &RelayConfig) -> Result<TlsParameters, RelayConfigError> {
    let mut builder = TlsParameters::builder(cfg.host().to_owned());
    if let Some(path) = cfg.ca() {
        let pem = std::fs::read(path).map_err(|source| RelayConfigError::CaUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| RelayConfigError::CaInvalid {
            path: path.to_path_buf(),
            reason,
        };
        // lettre accepts a PEM file without certificates as an empty list.
        if !pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(invalid("no BEGIN CERTIFICATE block".to_owned()));
        }
        let cert = Certificate::from_pem(&pem).map_err(|e| invalid(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| RelayConfigError::CaInvalid {
            path: cfg.ca().map(Path::to_path_buf).unwrap_or_default(),
            reason: e.to_string(),
        })
}

/// A connection over implicit TLS on `stream`: TLS first, then the greeting
/// and EHLO through it. Returns the relay's real EHLO reply alongside, since
/// lettre's own copy is the stand-in's.
#[allow(deprecated)] // lettre's AsyncNetworkStream; its only way to TLS.
pub(super) async fn connect_implicit(
    stream: Box<dyn AsyncTokioStream>,
    tls: &TlsParameters,
    hello: &ClientId,
) -> Result<(AsyncSmtpConnection, ServerInfo), Failure> {
    let mut tls_stream = AsyncNetworkStream::use_existing_tokio1(stream);
    tls_stream.upgrade_tls(tls.clone()).await?;
    let mut smtp =
        AsyncSmtpConnection::connect_with_transport(Box::new(StandIn::default()), hello).await?;
    smtp.set_stream(tls_stream);
    smtp.read_response().await?;
    let ehlo = smtp.command(Ehlo::new(hello.clone())).await?;
    let info = ServerInfo::from_response(&ehlo)?;
    Ok((smtp, info))
}

/// What lettre reads while [`AsyncSmtpConnection::connect_with_transport`]
/// builds a connection for implicit TLS (see [`connect_implicit`]): a greeting
/// and an EHLO reply, played from memory. Writes go nowhere.
///
/// lettre can only start a connection on a plain stream, and its TLS stream
/// can only be handed to a connection that exists. So the connection is
/// built on this stand-in, given the real TLS stream, and then greets and
/// says EHLO for real. The stand-in's EHLO reply announces what Postern may
/// ask for, so that lettre's checks, which look at it, defer to Postern's,
/// which look at the relay's real reply
/// ([`unsupported`](super::policy::unsupported), [`connect_implicit`]).
#[derive(Debug, Default)]
struct StandIn {
    sent: usize,
}

const STAND_IN_REPLIES: &[u8] =
    b"220 stand-in\r\n250-stand-in\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN\r\n";

impl AsyncRead for StandIn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rest = &STAND_IN_REPLIES[self.sent..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.sent += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StandIn {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncTokioStream for StandIn {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Err(io::Error::other("stand-in stream has no peer"))
    }
}

#[cfg(test)]
mod tests {
    use crate::relay::fake::{FakeRelay, Hangup, fake_relay, send_one};
    use crate::relay::{RcptOutcome, Relay, RelayConfig};

    /// Implicit TLS goes through a stand-in EHLO reply; what Postern asks of
    /// the relay must still follow the relay's real one.
    #[tokio::test(flavor = "multi_thread")]
    async fn implicit_tls_follows_the_real_ehlo_reply() {
        let (key, pem) = crate::tls::self_signed("localhost").unwrap();
        let acceptor = crate::tls::acceptor(crate::tls::ReloadingResolver::new(key));
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), pem).unwrap();
        let relay_for = |fake: &FakeRelay| {
            let url = format!("smtps://127.0.0.1:{}?ca={}", fake.port, ca.path().display());
            Relay::new(&RelayConfig::parse(&url).unwrap(), "postern.test").unwrap()
        };

        let eight_bit = fake_relay("250-8BITMIME\r\n", Some(acceptor.clone()), Hangup::Never).await;
        let relay = relay_for(&eight_bit);
        let out = relay
            .send(
                "a@example.com",
                &["zoë@example.com".to_owned(), "b@example.com".to_owned()],
                "caf\u{e9}\r\n".as_bytes(),
            )
            .await;
        assert!(
            matches!(&out[0], RcptOutcome::Failed { reply } if reply.contains("SMTPUTF8")),
            "{out:?}"
        );
        assert!(matches!(out[1], RcptOutcome::Sent { .. }), "{out:?}");
        assert!(matches!(
            send_one(&relay, b"ascii\r\n").await,
            RcptOutcome::Sent { .. }
        ));
        assert_eq!(
            eight_bit.log(),
            [
                "MAIL FROM:<a@example.com> BODY=8BITMIME",
                "MESSAGE",
                "MAIL FROM:<a@example.com>",
                "MESSAGE"
            ]
        );
        assert_eq!(eight_bit.connections(), 1);
        let summary = relay.check().await.unwrap();
        assert!(
            summary.contains("EightBitMime") && !summary.contains("SmtpUtfEight"),
            "{summary}"
        );

        let seven_bit = fake_relay("", Some(acceptor), Hangup::Never).await;
        let relay = relay_for(&seven_bit);
        let out = send_one(&relay, "caf\u{e9}\r\n".as_bytes()).await;
        assert!(
            matches!(&out, RcptOutcome::Failed { reply } if reply.contains("8BITMIME")),
            "{out:?}"
        );
        assert!(seven_bit.log().is_empty());
    }
}
