//! Opening one connection to the relay: TCP (see [`Socket`]), greeting,
//! EHLO, TLS as configured, AUTH when credentials are given. What a
//! connection is used for afterwards is the pool's business ([`super::pool`]).

use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::{ClientId, ServerInfo};
use tokio::time::Instant;

use super::failure::Failure;
use super::socket::{Socket, SocketStream};
use super::tls;
use super::url::{RelayConfig, RelayConfigError, TlsMode, client_id};

// Mechanisms in order of preference; lettre uses the first the relay offers.
const AUTH_MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// One open, greeted (and, as configured, encrypted and authenticated)
/// connection to the relay.
pub(super) struct Conn {
    pub(super) smtp: AsyncSmtpConnection,
    /// The relay's real EHLO reply (lettre's own copy is the stand-in's for
    /// implicit TLS).
    pub(super) info: ServerInfo,
    pub(super) socket: Arc<Socket>,
    pub(super) idle_since: Instant,
}

/// Everything needed to open a connection to the relay, settled once from
/// the [`RelayConfig`].
pub(super) struct Connector {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls_mode: TlsMode,
    tls: Option<TlsParameters>,
    pub(super) hello: ClientId,
    credentials: Option<Credentials>,
    pub(super) user: Option<String>,
    pub(super) timeout: Duration,
}

impl Connector {
    /// Reads the `?ca=` file; connects to nothing. `helo_name` is used for
    /// EHLO unless the URL has `?helo=`.
    pub(super) fn new(cfg: &RelayConfig, helo_name: &str) -> Result<Connector, RelayConfigError> {
        let hello = client_id(cfg.helo().unwrap_or(helo_name))?;
        let tls = match cfg.tls() {
            TlsMode::None => None,
            TlsMode::StartTls | TlsMode::Implicit => Some(tls::parameters(cfg)?),
        };
        let credentials = cfg
            .user()
            .zip(cfg.password())
            .map(|(user, pass)| Credentials::new(user.to_owned(), pass.to_owned()));
        if cfg.password_in_clear() {
            tracing::warn!(
                host = %cfg.host(),
                "POSTERN_RELAY_URL has tls=none with credentials: the password crosses the network in clear text"
            );
        }
        Ok(Connector {
            host: cfg.host().to_owned(),
            port: cfg.port(),
            tls_mode: cfg.tls(),
            tls,
            hello,
            credentials,
            user: cfg.user().map(str::to_owned),
            timeout: cfg.timeout(),
        })
    }

    /// A new connection: TCP, greeting, EHLO, TLS as configured, AUTH when
    /// credentials are given.
    pub(super) async fn open(&self) -> Result<Conn, Failure> {
        let socket = Arc::new(Socket::connect(&self.host, self.port, self.timeout).await?);
        let stream = Box::new(SocketStream(Arc::clone(&socket)));
        let (mut smtp, info) = match (self.tls_mode, &self.tls) {
            (TlsMode::Implicit, Some(tls)) => {
                tls::connect_implicit(stream, tls, &self.hello).await?
            }
            (mode, tls) => {
                let mut smtp =
                    AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
                if let (TlsMode::StartTls, Some(tls)) = (mode, tls) {
                    smtp.starttls(tls.clone(), &self.hello).await?;
                }
                let info = smtp.server_info().clone();
                (smtp, info)
            }
        };
        if let Some(credentials) = &self.credentials {
            // Chosen from the real EHLO reply; lettre's copy may be the
            // stand-in's, which offers both.
            let mechanism = info
                .get_auth_mechanism(&AUTH_MECHANISMS)
                .ok_or(Failure::NoAuthMechanism)?;
            smtp.auth(&[mechanism], credentials).await?;
        }
        Ok(Conn {
            smtp,
            info,
            socket,
            idle_since: Instant::now(),
        })
    }
}
