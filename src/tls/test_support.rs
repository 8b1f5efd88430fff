//! What the TLS tests share: a test CA issuing leaves, certificate files
//! rotated the careful way, a TLS echo server and a client that reports
//! what it negotiated.

use super::names::{cipher_suite_name, protocol_name};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use super::load::load_certified_key;
use super::names::session_info;
use super::provider;
use super::reload::{ReloadingResolver, acceptor, watch};

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
pub(super) const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the watcher to pick up a rotation.
pub(super) const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
pub(super) const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

pub(super) async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test timed out")
}

pub(super) struct TestCa {
    pub(super) cert: rcgen::Certificate,
    pub(super) key: KeyPair,
}

impl TestCa {
    pub(super) fn new() -> Self {
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

    pub(super) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for localhost/127.0.0.1 with its own key, subject and serial.
    pub(super) fn leaf(&self, common_name: &str, serial: u8) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
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

pub(super) struct Leaf {
    pub(super) chain_pem: String,
    pub(super) key_pem: String,
    pub(super) der: CertificateDer<'static>,
    pub(super) pkcs8: Vec<u8>,
}

pub(super) struct Files {
    pub(super) _dir: tempfile::TempDir,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

impl Files {
    pub(super) fn new() -> Self {
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
    pub(super) fn install(&self, leaf: &Leaf) {
        replace(&self.cert, &leaf.chain_pem);
        replace(&self.key, &leaf.key_pem);
    }
}

pub(super) fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TLS server on 127.0.0.1 that, per connection, sends one line with
/// `session_info` ("<protocol> <cipher>") and then echoes what it reads.
pub(super) async fn serve(acceptor: TlsAcceptor) -> SocketAddr {
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

pub(super) struct Client {
    pub(super) stream: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
    /// What the server's `session_info` reported.
    pub(super) server_info: (String, String),
    /// The same, as the client saw it negotiated.
    pub(super) client_info: (String, String),
    /// The certificate chain the server presented.
    pub(super) chain: Vec<CertificateDer<'static>>,
}

impl Client {
    pub(super) async fn echo(&mut self, line: &str) -> io::Result<String> {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        self.stream.flush().await?;
        let mut reply = String::new();
        self.stream.read_line(&mut reply).await?;
        Ok(reply.trim_end().to_owned())
    }
}

pub(super) fn roots(pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

pub(super) async fn connect(
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
pub(super) async fn wait_for_leaf(addr: SocketAddr, ca_pem: &str, expected: &CertificateDer<'_>) {
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
pub(super) async fn watched_server(files: &Files) -> (SocketAddr, CancellationToken) {
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
