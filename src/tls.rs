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

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, InconsistentKeys, ProtocolVersion};
use tokio_util::sync::CancellationToken;

/// The setting that names the certificate file; errors quote it so an operator
/// knows which variable to fix.
const CERT_VAR: &str = "POSTERN_TLS_CERT";
/// The setting that names the private key file.
const KEY_VAR: &str = "POSTERN_TLS_KEY";

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
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads a PEM cert chain (full chain) + private key (PKCS#8, PKCS#1 or SEC1)
/// into a `CertifiedKey` using the ring provider.
///
/// The certificate file must hold the end-entity certificate first, then any
/// intermediates; other sections (such as a private key in a combined file)
/// are skipped. The key file's first private key is used. The key is checked
/// against the certificate's public key so that a mismatched rotation (new
/// certificate, old key) is refused instead of breaking every handshake.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    // Each file is read once and parsed from memory so the chain and the key
    // each come from one consistent snapshot of their file.
    let cert_pem = read_file(CERT_VAR, cert_path)?;
    let key_pem = read_file(KEY_VAR, key_path)?;

    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(CERT_VAR, cert_path, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }

    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoPrivateKey {
                path: key_path.to_owned(),
            });
        }
        Err(e) => return Err(pem_error(KEY_VAR, key_path, &e)),
    };
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::InvalidKey {
            path: key_path.to_owned(),
            source,
        })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        // Unlike `CertifiedKey::from_der`, an unverifiable key is refused:
        // ring's keys can always produce their public half, so this only
        // happens for something we could not vouch for during a rotation.
        Err(source @ rustls::Error::InconsistentKeys(_)) => Err(TlsError::InvalidKey {
            path: key_path.to_owned(),
            source,
        }),
        Err(source) => Err(TlsError::InvalidCertificate {
            path: cert_path.to_owned(),
            source,
        }),
    }
}

fn read_file(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        var,
        path: path.to_owned(),
        source,
    })
}

/// Turns a PEM parse error into a message an operator can act on; the
/// library's own `Display` prints markers and lines as byte arrays.
fn pem_error(var: &'static str, path: &Path, err: &pem::Error) -> TlsError {
    let detail = match err {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "no \"-----END {}-----\" line (file truncated?)",
            String::from_utf8_lossy(end_marker).trim()
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed BEGIN line {:?}",
            String::from_utf8_lossy(line).trim()
        ),
        other => other.to_string(),
    };
    TlsError::Pem {
        var,
        path: path.to_owned(),
        detail,
    }
}

/// A self-signed cert for `hostname` (plus "localhost", 127.0.0.1, ::1 as
/// SANs) via rcgen, for development mode.
///
/// Returns the key and the certificate PEM, so the caller can log it and a
/// client (or a test) can trust it. The key is a fresh ECDSA P-256 key, so
/// every start gets a new certificate.
pub fn self_signed(hostname: &str) -> Result<(Arc<CertifiedKey>, String), TlsError> {
    let failed = |detail: String| TlsError::SelfSigned {
        hostname: hostname.to_owned(),
        detail,
    };
    let hostname = hostname.trim();

    let mut names: Vec<String> = Vec::new();
    for name in [hostname, "localhost", "127.0.0.1", "::1"] {
        // An empty hostname would become an empty (invalid) SAN, and a
        // duplicate SAN is pointless; both are skipped.
        if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    let common_name = names[0].clone();

    // `CertificateParams::new` turns IP-address strings into IP SANs, which
    // clients need for connecting by address.
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| failed(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let key_pair = rcgen::KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| failed(e.to_string()))?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| failed(e.to_string()))?;
    let certified = CertifiedKey::new(vec![cert.der().clone()], signing_key);
    Ok((Arc::new(certified), cert.pem()))
}

/// Server cert resolver whose key can be swapped at runtime: sessions already
/// open keep the cert they handshook with; new handshakes get the new one.
#[derive(Debug)]
pub struct ReloadingResolver {
    // The lock is held only to clone or replace the `Arc`, never across a
    // handshake, so readers and the (rare) writer do not wait on each other
    // for long.
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingResolver {
    /// A resolver that serves `key` until [`set`](Self::set) replaces it.
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(key),
        })
    }

    /// Serves `key` to every handshake that starts from now on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        // A poisoned lock still holds a whole `Arc` (replacing it cannot
        // panic half-way), so it is safe to keep using.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// The key new handshakes currently get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate for every SNI name: Postern serves one MX identity.
        Some(self.current())
    }
}

/// A `TlsAcceptor`: TLS 1.2 and 1.3, ring provider, no client auth, the
/// resolver above.
pub fn acceptor(resolver: Arc<ReloadingResolver>) -> tokio_rustls::TlsAcceptor {
    // TLS 1.2 stays enabled because a good share of sending MTAs still
    // negotiate nothing newer; refusing them would push them to plaintext.
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider has cipher suites for TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// What identifies one version of a file: a rotation changes at least one of
/// these. The inode is included where there is one because a symlink swap
/// (Kubernetes' `..data`) always points at a new file, even in the unlikely
/// case that its time and length match the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamp of `path`, following symlinks; `None` if it cannot be read
/// (a missing file is then reported by the load that follows).
async fn stamp(path: &Path) -> Option<Stamp> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Polls the two files' (modified time, length) every `interval` (metadata
/// follows symlinks: Kubernetes/cert-manager swap a `..data` symlink),
/// reloads on change, logs info on success and error (keeping the old key) on
/// failure — e.g. a half-written file during rotation is retried at the next
/// tick. Returns when `shutdown` is cancelled.
///
/// The first poll happens at once and loads the files again (quietly, at
/// debug level), so a rotation between the caller's own load and the start of
/// this task is not missed. After a failure the load is retried at every tick
/// until it succeeds, but the same error for the same files is logged once.
pub async fn watch(
    resolver: Arc<ReloadingResolver>,
    cert_path: PathBuf,
    key_path: PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    type Stamps = (Option<Stamp>, Option<Stamp>);
    // The stamps of the files as last loaded successfully; `None` before the
    // first poll so that poll always loads.
    let mut loaded: Option<Stamps> = None;
    // The last failure logged, so a file that stays broken is not reported
    // at every tick.
    let mut logged_failure: Option<(Stamps, String)> = None;

    let mut ticker = tokio::time::interval(interval);
    // After a stall (a suspended VM, say) one poll is enough; a burst of
    // catch-up polls would only reload the same files repeatedly.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }

        // Stamps are taken before reading: if a file changes while it is
        // being read, the next poll sees a new stamp and loads it again.
        let now = (stamp(&cert_path).await, stamp(&key_path).await);
        if loaded == Some(now) {
            continue;
        }

        let (cert, key) = (cert_path.clone(), key_path.clone());
        // File reads block; keep them off the runtime's worker threads.
        let result = tokio::task::spawn_blocking(move || load_certified_key(&cert, &key)).await;
        let result = match result {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(join_error) => Err(format!("certificate reload task failed: {join_error}")),
        };

        match result {
            Ok(key) => {
                resolver.set(key);
                if loaded.is_none() {
                    tracing::debug!(
                        cert = %cert_path.display(),
                        key = %key_path.display(),
                        "watching the TLS certificate for rotation"
                    );
                } else {
                    tracing::info!(
                        cert = %cert_path.display(),
                        key = %key_path.display(),
                        "TLS certificate reloaded; new connections use it"
                    );
                }
                loaded = Some(now);
                logged_failure = None;
            }
            Err(message) => {
                let failure = (now, message);
                if logged_failure.as_ref() != Some(&failure) {
                    tracing::error!(
                        error = %failure.1,
                        "TLS certificate reload failed; still serving the previous certificate"
                    );
                    logged_failure = Some(failure);
                }
            }
        }
    }
}

/// What goes into the `Received:` header and the payload's `envelope.tls`:
/// the protocol version like `"TLSv1.3"` / `"TLSv1.2"` and the IANA cipher
/// suite name like `"TLS_AES_256_GCM_SHA384"` or
/// `"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"`.
///
/// `None` until the handshake has negotiated both.
pub fn session_info(conn: &ServerConnection) -> Option<(String, String)> {
    let version = conn.protocol_version()?;
    let suite = conn.negotiated_cipher_suite()?.suite();
    Some((protocol_name(version), cipher_suite_name(suite)))
}

/// The protocol names OpenSSL and Postfix print, which is what readers of
/// `Received:` headers are used to.
fn protocol_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        ProtocolVersion::TLSv1_1 => "TLSv1.1".to_owned(),
        ProtocolVersion::TLSv1_0 => "TLSv1".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The IANA registry name of a cipher suite. rustls spells the TLS 1.3 suites
/// `TLS13_*` to keep them apart from TLS 1.2 ones; IANA names them `TLS_*`.
/// The TLS 1.2 names already match IANA's.
fn cipher_suite_name(suite: CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_owned(),
        },
        // A suite rustls has no name for can only come from a custom
        // provider; its code point is still unambiguous.
        None => format!("0x{:04X}", u16::from(suite)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io;
    use std::net::SocketAddr;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
    };
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Every test's network and timing work is bounded by this.
    const TEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long to wait for the watcher to pick up a rotation.
    const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
    const ALL_VERSIONS: &[&SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];

    async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
        tokio::time::timeout(TEST_TIMEOUT, fut)
            .await
            .expect("test timed out")
    }

    struct TestCa {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    impl TestCa {
        fn new() -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "Postern test CA");
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Self { cert, key }
        }

        fn pem(&self) -> String {
            self.cert.pem()
        }

        /// A leaf for localhost/127.0.0.1 with its own key, subject and serial.
        fn leaf(&self, common_name: &str, serial: u8) -> Leaf {
            let mut params =
                CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                    .unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            // A leading byte below 0x80 keeps the DER INTEGER positive and minimal.
            params.serial_number = Some(SerialNumber::from(vec![0x0a, serial]));
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            Leaf {
                // Full chain, as cert-manager writes tls.crt.
                chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
                key_pem: key.serialize_pem(),
                der: cert.der().clone(),
                pkcs8: key.serialize_der(),
            }
        }
    }

    struct Leaf {
        chain_pem: String,
        key_pem: String,
        der: CertificateDer<'static>,
        pkcs8: Vec<u8>,
    }

    struct Files {
        _dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let cert = dir.path().join("tls.crt");
            let key = dir.path().join("tls.key");
            Self {
                _dir: dir,
                cert,
                key,
            }
        }

        /// Installs a leaf the way a careful rotation does: write aside, then
        /// rename over the old file, so no reader sees a partial file.
        fn install(&self, leaf: &Leaf) {
            replace(&self.cert, &leaf.chain_pem);
            replace(&self.key, &leaf.key_pem);
        }
    }

    fn replace(path: &Path, contents: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// A TLS server on 127.0.0.1 that, per connection, sends one line with
    /// `session_info` ("<protocol> <cipher>") and then echoes what it reads.
    async fn serve(acceptor: TlsAcceptor) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (protocol, cipher) =
                        session_info(tls.get_ref().1).expect("handshake is complete");
                    if tls
                        .write_all(format!("{protocol} {cipher}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let mut buf = [0u8; 1024];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if tls.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    struct Client {
        stream: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
        /// What the server's `session_info` reported.
        server_info: (String, String),
        /// The same, as the client saw it negotiated.
        client_info: (String, String),
        /// The certificate chain the server presented.
        chain: Vec<CertificateDer<'static>>,
    }

    impl Client {
        async fn echo(&mut self, line: &str) -> io::Result<String> {
            self.stream
                .write_all(format!("{line}\n").as_bytes())
                .await?;
            self.stream.flush().await?;
            let mut reply = String::new();
            self.stream.read_line(&mut reply).await?;
            Ok(reply.trim_end().to_owned())
        }
    }

    fn roots(pem: &str) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }

    async fn connect(
        addr: SocketAddr,
        trusted_pem: &str,
        server_name: &str,
        versions: &[&'static SupportedProtocolVersion],
    ) -> io::Result<Client> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots(trusted_pem))
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let conn = tls.get_ref().1;
        let client_info = (
            protocol_name(conn.protocol_version().unwrap()),
            cipher_suite_name(conn.negotiated_cipher_suite().unwrap().suite()),
        );
        let chain = conn.peer_certificates().unwrap().to_vec();
        let mut stream = BufReader::new(tls);
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let (protocol, cipher) = line
            .trim_end()
            .split_once(' ')
            .map(|(p, c)| (p.to_owned(), c.to_owned()))
            .ok_or_else(|| io::Error::other(format!("bad info line {line:?}")))?;
        Ok(Client {
            stream,
            server_info: (protocol, cipher),
            client_info,
            chain,
        })
    }

    /// Connects until the server presents `expected` (the watcher polls, so
    /// a rotation shows up after a tick or two), within `RELOAD_DEADLINE`.
    async fn wait_for_leaf(addr: SocketAddr, ca_pem: &str, expected: &CertificateDer<'_>) {
        let deadline = tokio::time::Instant::now() + RELOAD_DEADLINE;
        loop {
            let client = connect(addr, ca_pem, "localhost", ALL_VERSIONS)
                .await
                .unwrap();
            if client.chain[0] == *expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rotated certificate was not picked up in time"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A server on the leaf in `files`, with a watcher polling every 50 ms.
    async fn watched_server(files: &Files) -> (SocketAddr, CancellationToken) {
        let key = load_certified_key(&files.cert, &files.key).unwrap();
        let resolver = ReloadingResolver::new(key);
        let shutdown = CancellationToken::new();
        tokio::spawn(watch(
            Arc::clone(&resolver),
            files.cert.clone(),
            files.key.clone(),
            Duration::from_millis(50),
            shutdown.clone(),
        ));
        (serve(acceptor(resolver)).await, shutdown)
    }

    #[tokio::test]
    async fn tls13_handshake_serves_the_full_chain_and_reports_the_session() {
        bounded(async {
            let ca = TestCa::new();
            let leaf = ca.leaf("mx.test", 1);
            let files = Files::new();
            files.install(&leaf);

            let key = load_certified_key(&files.cert, &files.key).unwrap();
            assert_eq!(key.cert.len(), 2, "leaf and CA from the full-chain file");
            let addr = serve(acceptor(ReloadingResolver::new(key))).await;

            let mut client = connect(addr, &ca.pem(), "localhost", ALL_VERSIONS)
                .await
                .unwrap();
            assert_eq!(client.chain, vec![leaf.der.clone(), ca.cert.der().clone()]);
            assert_eq!(
                client.server_info,
                ("TLSv1.3".to_owned(), "TLS_AES_256_GCM_SHA384".to_owned())
            );
            assert_eq!(client.server_info, client.client_info);
            assert_eq!(client.echo("EHLO").await.unwrap(), "EHLO");
        })
        .await;
    }

    #[tokio::test]
    async fn tls12_handshake_reports_the_iana_suite_name() {
        bounded(async {
            let ca = TestCa::new();
            let files = Files::new();
            files.install(&ca.leaf("mx.test", 1));
            let key = load_certified_key(&files.cert, &files.key).unwrap();
            let addr = serve(acceptor(ReloadingResolver::new(key))).await;

            let mut client = connect(addr, &ca.pem(), "127.0.0.1", &[&rustls::version::TLS12])
                .await
                .unwrap();
            // rcgen makes ECDSA P-256 keys, and the client's first choice wins.
            assert_eq!(
                client.server_info,
                (
                    "TLSv1.2".to_owned(),
                    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_owned()
                )
            );
            assert_eq!(client.server_info, client.client_info);
            assert_eq!(client.echo("NOOP").await.unwrap(), "NOOP");
        })
        .await;
    }

    #[test]
    fn suite_and_protocol_names_follow_iana_and_openssl() {
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
            "TLS_CHACHA20_POLY1305_SHA256"
        );
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(cipher_suite_name(CipherSuite::from(0xfafa)), "0xFAFA");
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let ca = TestCa::new();
        let (a, b) = (ca.leaf("a.test", 1), ca.leaf("b.test", 2));
        let files = Files::new();
        replace(&files.cert, &a.chain_pem);
        replace(&files.key, &b.key_pem);

        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&files.cert.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&files.key.display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn unreadable_files_are_reported_with_their_path() {
        let ca = TestCa::new();
        let leaf = ca.leaf("mx.test", 1);
        let files = Files::new();

        // Missing certificate file.
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "POSTERN_TLS_CERT {}: cannot read",
                files.cert.display()
            )),
            "{err}"
        );

        // Text with no PEM section at all.
        replace(&files.cert, "this is not a certificate\n");
        replace(&files.key, &leaf.key_pem);
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "POSTERN_TLS_CERT {}: no certificate found",
                files.cert.display()
            )
        );

        // A certificate cut short, as seen mid-rotation.
        let half = &leaf.chain_pem[..leaf.chain_pem.len() / 4];
        replace(&files.cert, half);
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "POSTERN_TLS_CERT {}: invalid PEM",
                files.cert.display()
            )),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("no \"-----END CERTIFICATE-----\" line (file truncated?)"),
            "{err}"
        );

        // Base64 garbage inside a well-formed section.
        replace(
            &files.cert,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");

        // A key file holding only a certificate.
        replace(&files.cert, &leaf.chain_pem);
        replace(&files.key, &leaf.chain_pem);
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "POSTERN_TLS_KEY {}: no private key found",
                files.key.display()
            )
        );

        // A key section whose contents are not a key.
        replace(
            &files.key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::InvalidKey { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("POSTERN_TLS_KEY {}:", files.key.display())),
            "{err}"
        );
    }

    /// Reads one DER TLV: (tag, contents, rest).
    fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let (len, header) = if input[1] < 0x80 {
            (usize::from(input[1]), 2)
        } else {
            let n = usize::from(input[1] & 0x7f);
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |len, b| (len << 8) | usize::from(*b));
            (len, 2 + n)
        };
        (
            input[0],
            &input[header..header + len],
            &input[header + len..],
        )
    }

    fn base64(data: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn a_sec1_ec_private_key_is_accepted() {
        let ca = TestCa::new();
        let leaf = ca.leaf("mx.test", 1);
        // PKCS#8 is SEQUENCE { version, algorithm, OCTET STRING { ECPrivateKey } };
        // the inner ECPrivateKey is exactly what `BEGIN EC PRIVATE KEY` holds.
        let (tag, pkcs8, _) = der_tlv(&leaf.pkcs8);
        assert_eq!(tag, 0x30);
        let (_, _, rest) = der_tlv(pkcs8); // version
        let (_, _, rest) = der_tlv(rest); // algorithm
        let (tag, sec1, _) = der_tlv(rest);
        assert_eq!(tag, 0x04);
        let pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64(sec1)
        );
        assert!(matches!(
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap(),
            PrivateKeyDer::Sec1(_)
        ));

        let files = Files::new();
        replace(&files.cert, &leaf.chain_pem);
        replace(&files.key, &pem);
        let key = load_certified_key(&files.cert, &files.key).unwrap();
        assert_eq!(key.cert[0], leaf.der);
    }

    #[tokio::test]
    async fn rotation_reaches_new_handshakes_and_spares_open_sessions() {
        bounded(async {
            let ca = TestCa::new();
            let (a, b) = (ca.leaf("a.test", 1), ca.leaf("b.test", 2));
            let files = Files::new();
            files.install(&a);
            let (addr, shutdown) = watched_server(&files).await;

            let mut before = connect(addr, &ca.pem(), "localhost", ALL_VERSIONS)
                .await
                .unwrap();
            assert_eq!(before.chain[0], a.der);
            assert_eq!(before.echo("before").await.unwrap(), "before");

            files.install(&b);
            wait_for_leaf(addr, &ca.pem(), &b.der).await;

            // The session opened on A still works after the swap.
            assert_eq!(before.echo("after").await.unwrap(), "after");
            assert_eq!(before.chain[0], a.der);

            shutdown.cancel();
        })
        .await;
    }

    #[tokio::test]
    async fn a_broken_rotation_keeps_the_old_key_until_it_is_fixed() {
        bounded(async {
            let ca = TestCa::new();
            let (a, b) = (ca.leaf("a.test", 1), ca.leaf("b.test", 2));
            let files = Files::new();
            files.install(&a);
            let (addr, shutdown) = watched_server(&files).await;
            let ticks = Duration::from_millis(300);

            let client = connect(addr, &ca.pem(), "localhost", ALL_VERSIONS)
                .await
                .unwrap();
            assert_eq!(client.chain[0], a.der);

            // Half of the new certificate, written in place, as a slow
            // writer leaves it for a moment.
            std::fs::write(&files.cert, &b.chain_pem[..b.chain_pem.len() / 2]).unwrap();
            tokio::time::sleep(ticks).await;
            let client = connect(addr, &ca.pem(), "localhost", ALL_VERSIONS)
                .await
                .unwrap();
            assert_eq!(client.chain[0], a.der);

            // The whole new certificate, but the key is still the old one.
            std::fs::write(&files.cert, &b.chain_pem).unwrap();
            tokio::time::sleep(ticks).await;
            let client = connect(addr, &ca.pem(), "localhost", ALL_VERSIONS)
                .await
                .unwrap();
            assert_eq!(client.chain[0], a.der);

            // The key arrives: the rotation completes.
            std::fs::write(&files.key, &b.key_pem).unwrap();
            wait_for_leaf(addr, &ca.pem(), &b.der).await;

            shutdown.cancel();
        })
        .await;
    }

    #[tokio::test]
    async fn watch_returns_when_shut_down() {
        bounded(async {
            let ca = TestCa::new();
            let files = Files::new();
            files.install(&ca.leaf("mx.test", 1));
            let key = load_certified_key(&files.cert, &files.key).unwrap();
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(watch(
                ReloadingResolver::new(key),
                files.cert.clone(),
                files.key.clone(),
                Duration::from_secs(3600),
                shutdown.clone(),
            ));
            tokio::time::sleep(Duration::from_millis(50)).await;
            shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("watch did not return after shutdown")
                .unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn self_signed_is_trusted_through_its_pem() {
        bounded(async {
            let (key, pem) = self_signed("mx.example.test").unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
            assert_eq!(key.cert.len(), 1);
            key.keys_match().unwrap();
            let addr = serve(acceptor(ReloadingResolver::new(key))).await;

            for name in ["mx.example.test", "localhost", "127.0.0.1", "::1"] {
                let mut client = connect(addr, &pem, name, ALL_VERSIONS)
                    .await
                    .unwrap_or_else(|e| panic!("handshake as {name}: {e}"));
                assert_eq!(client.server_info.0, "TLSv1.3");
                assert_eq!(client.echo(name).await.unwrap(), name);
            }

            // A name that is not in the certificate is rejected by the client.
            let err = connect(addr, &pem, "other.example.test", ALL_VERSIONS).await;
            assert!(err.is_err());

            // "localhost" as the hostname is not listed twice.
            let (key, _) = self_signed("localhost").unwrap();
            key.keys_match().unwrap();
        })
        .await;
    }
}
