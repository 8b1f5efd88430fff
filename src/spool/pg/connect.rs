//! Opening the PostgreSQL connection pool from [`DatabaseSettings`], TLS by
//! rustls (ring), and the health check `/readyz` and `postern doctor` use.
//! Sits under the spool: the store takes connections from this pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::settings::{DatabaseSettings, TlsMode};

/// Why the database could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("POSTERN_DATABASE_CA {path}: {msg}")]
    Ca { path: String, msg: String },
    #[error("building the connection pool: {0}")]
    Pool(String),
    #[error("database unreachable: {0}")]
    Unreachable(String),
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("database query failed: {0}")]
    Query(String),
}

/// What one health check saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Round trip of `SELECT 1` on a pooled connection.
    pub latency: Duration,
    /// Whether this connection is encrypted (from `pg_stat_ssl`).
    pub tls: bool,
}

/// The pool; connections open lazily, so this does not touch the network.
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, ConnectError> {
    let tls = MakeRustlsConnect::new(client_config(settings)?);
    let manager = Manager::from_config(
        settings.pg.clone(),
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| ConnectError::Pool(e.to_string()))
}

/// `SELECT 1` within `timeout` (connecting included), and whether TLS is on.
pub async fn check(pool: &Pool, timeout: Duration) -> Result<Health, ConnectError> {
    let run = async {
        let client = pool
            .get()
            .await
            .map_err(|e| ConnectError::Unreachable(error_chain(&e)))?;
        let start = Instant::now();
        let row = client
            .query_one("SELECT 1", &[])
            .await
            .map_err(|e| ConnectError::Query(error_chain(&e)))?;
        let latency = start.elapsed();
        let one: i32 = row.get(0);
        if one != 1 {
            return Err(ConnectError::Query(format!("SELECT 1 returned {one}")));
        }
        let tls: bool = client
            .query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .await
            .map_err(|e| ConnectError::Query(error_chain(&e)))?
            .get(0);
        Ok(Health { latency, tls })
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(ConnectError::Timeout(timeout)))
}

/// An error and its sources on one line: tokio-postgres hides the cause
/// (refused, bad certificate, bad password) in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn roots(settings: &DatabaseSettings) -> Result<RootCertStore, ConnectError> {
    let mut roots = RootCertStore::empty();
    let Some(path) = &settings.ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let err = |msg: String| ConnectError::Ca {
        path: path.display().to_string(),
        msg,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no certificate".into()));
    }
    for c in certs {
        roots.add(c).map_err(|e| err(e.to_string()))?;
    }
    Ok(roots)
}

fn client_config(settings: &DatabaseSettings) -> Result<rustls::ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Pool(e.to_string()))?;
    if settings.tls == TlsMode::Disable {
        // Never used (sslmode=disable), but the connector needs a config.
        return Ok(builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(settings)?), provider)
        .build()
        .map_err(|e| ConnectError::Pool(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if settings.tls.checks_host_name() {
        webpki
    } else {
        Arc::new(ChainOnly(webpki))
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root, the name in
/// the certificate may differ from the host we dialled.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
