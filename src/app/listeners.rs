//! The listening sockets, bound before anything else starts, with errors
//! that name the variable and say what to do about the usual causes.

use tokio::net::TcpListener;

use crate::config::Config;

/// The sockets Postern serves, bound by the caller.
pub struct Listeners {
    pub smtp: TcpListener,
    /// Implicit TLS (RFC 8314), when configured.
    pub smtps: Option<TcpListener>,
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, BindError> {
        let smtps = match config.smtps_listen {
            Some(addr) => Some(bind_one("POSTERN_SMTPS_LISTEN", addr).await?),
            None => None,
        };
        Ok(Listeners {
            smtp: bind_one("POSTERN_SMTP_LISTEN", config.smtp_listen).await?,
            smtps,
            http: bind_one("POSTERN_HTTP_LISTEN", config.http_listen).await?,
        })
    }
}

/// A listener that could not be bound, with the variable that names it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: cannot listen on {addr}: {}", bind_reason(.source))]
pub struct BindError {
    pub var: &'static str,
    pub addr: std::net::SocketAddr,
    pub source: std::io::Error,
}

fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the address is in use: another process holds it (another Postern, perhaps the development instance?); stop it or set another address".into()
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{e} (ports below 1024 need privileges; use e.g. 2525 and map port 25 to it)")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{e} (no interface of this machine has that address)")
        }
        _ => e.to_string(),
    }
}

async fn bind_one(var: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { var, addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn bind_errors_say_what_to_do() {
        let addr: std::net::SocketAddr = "127.0.0.1:25".parse().unwrap();
        let text = |kind| {
            BindError {
                var: "POSTERN_SMTP_LISTEN",
                addr,
                source: Error::new(kind, "os says no"),
            }
            .to_string()
        };
        assert_eq!(
            text(ErrorKind::AddrInUse),
            "POSTERN_SMTP_LISTEN: cannot listen on 127.0.0.1:25: the address is in use: another process holds it (another Postern, perhaps the development instance?); stop it or set another address"
        );
        assert_eq!(
            text(ErrorKind::PermissionDenied),
            "POSTERN_SMTP_LISTEN: cannot listen on 127.0.0.1:25: os says no (ports below 1024 need privileges; use e.g. 2525 and map port 25 to it)"
        );
        assert_eq!(
            text(ErrorKind::AddrNotAvailable),
            "POSTERN_SMTP_LISTEN: cannot listen on 127.0.0.1:25: os says no (no interface of this machine has that address)"
        );
        assert_eq!(
            text(ErrorKind::Other),
            "POSTERN_SMTP_LISTEN: cannot listen on 127.0.0.1:25: os says no"
        );
    }
}
