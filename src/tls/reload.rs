//! The certificate a new handshake gets, and its rotation: see the module
//! docs of [`super`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::load::load_certified_key;
use super::provider;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_support::*;

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
}
