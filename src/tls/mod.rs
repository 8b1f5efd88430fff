//! TLS for the SMTP listener (STARTTLS and implicit TLS).
//!
//! This module loads the server certificate chain and private key from PEM
//! files, makes a self-signed certificate for development mode, swaps the
//! certificate at runtime when the files are rotated, and names the negotiated
//! protocol and cipher suite for the `Received:` header and the payload's
//! `envelope.tls`.
//!
//! Everything is built on rustls' *ring* provider, passed explicitly rather
//! than taken from the process-wide default, so the result does not depend on
//! what other crates in the binary (reqwest, for one) enable or install.
//!
//! Rotation: the [`ReloadingResolver`] hands every new handshake an
//! `Arc<CertifiedKey>` cloned from the current one. A session keeps the `Arc`
//! it handshook with, so swapping the key never disturbs open connections;
//! only handshakes that start afterwards see the new certificate. [`watch`]
//! polls the files and performs the swap, and it refuses (and logs) anything
//! that does not load cleanly, so a half-written or mismatched rotation leaves
//! the server on its previous, working certificate.
//!
//! Layout: [`load`] reads certificate and key files and makes the
//! development certificate, [`reload`] serves the current one and swaps it
//! when the files rotate, [`names`] names what a handshake negotiated, and
//! [`x509`] reads what `postern doctor` shows of a certificate.

mod load;
mod names;
mod reload;
#[cfg(test)]
mod test_support;
pub mod x509;

pub use load::{load_certified_key, self_signed};
pub use names::session_info;
pub use reload::{ReloadingResolver, acceptor, watch};

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The setting that names the certificate file; errors quote it so an operator
/// knows which variable to fix.
pub(crate) const CERT_VAR: &str = "POSTERN_TLS_CERT";
/// The setting that names the private key file.
pub(crate) const KEY_VAR: &str = "POSTERN_TLS_KEY";

/// Why a certificate or key could not be loaded or made.
///
/// Every file-related message starts with the setting and the path, e.g.
/// `POSTERN_TLS_CERT /etc/postern/tls.crt: no certificate found`.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read (missing, permissions, ...).
    #[error("{var} {}: cannot read: {source}", path.display())]
    Read {
        var: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file has a PEM section that is malformed, typically one cut short
    /// by a rotation that has not finished writing yet.
    #[error("{var} {}: invalid PEM: {detail}", path.display())]
    Pem {
        var: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The certificate file has no `CERTIFICATE` section.
    #[error("POSTERN_TLS_CERT {}: no certificate found", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file has no PKCS#8, PKCS#1 or SEC1 private key section.
    #[error("POSTERN_TLS_KEY {}: no private key found", path.display())]
    NoPrivateKey { path: PathBuf },
    /// The end-entity certificate is not valid X.509 DER.
    #[error("POSTERN_TLS_CERT {}: invalid certificate: {source}", path.display())]
    InvalidCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The key is of a kind or curve the ring provider cannot sign with, or
    /// its public half cannot be compared with the certificate.
    #[error("POSTERN_TLS_KEY {}: unusable private key: {source}", path.display())]
    InvalidKey {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The key is not the one the certificate was issued for: serving it
    /// would fail every handshake, so it is refused.
    #[error(
        "POSTERN_TLS_KEY {} does not match the certificate in POSTERN_TLS_CERT {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The development-mode certificate could not be generated.
    #[error("self-signed certificate for {hostname:?}: {detail}")]
    SelfSigned { hostname: String, detail: String },
}

/// The crypto provider for everything here; see the module docs for why it
/// is explicit.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
