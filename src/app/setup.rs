//! What is built from the configuration before serving: the spool and the
//! schedule of what it holds, the TLS acceptor, the relay for API mail,
//! and in development mode the built-in inbox.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::Error;
use crate::config::Config;
use crate::model::attachment_url::{LinkKey, Linker};
use crate::model::authority::authority;
use crate::model::one_or_many::OneOrMany;
use crate::model::secret::Secret;
use crate::route::{Route, RouteSpec};
use crate::spool::{Store, pg};
use crate::{http, relay, tls};

/// The store, and how many entries the start-up scan found corrupt: the
/// shared PostgreSQL store when `POSTERN_DATABASE_URL` is set (connected
/// and migrated, once across replicas starting together: the migration
/// runner's advisory lock), else the file spool with every pending
/// delivery in it scheduled (due at its recorded time).
pub(super) async fn store(config: &Config) -> Result<(Store, usize), Error> {
    if let Some(db) = &config.database {
        let pool = pg::connect::pool(db).map_err(|e| Error::Database(e.to_string()))?;
        let applied = pg::migrate::migrate(&pool)
            .await
            .map_err(|e| Error::Database(e.to_string()))?;
        info!(
            migrations_applied = ?applied,
            hosts = ?db.pg.get_hosts(),
            tls = db.tls.name(),
            pool = db.pool_size,
            lease_s = db.lease.as_secs(),
            "shared PostgreSQL store ready"
        );
        let store = Store::open_pg(pool, db.lease).keep_history(config.delivery.history_retention);
        return Ok((store, 0));
    }
    let spool_error = |source| Error::Spool {
        path: config.spool_dir.display().to_string(),
        source,
    };
    let (store, report) = Store::open_file(&config.spool_dir, config.fsync).map_err(spool_error)?;
    let store = store.keep_history(config.delivery.history_retention);
    info!(
        messages = report.messages,
        pending = report.pending.len(),
        dead = report.dead,
        corrupt = report.corrupt,
        spool = %config.spool_dir.display(),
        "spool scanned"
    );
    Ok((store, report.corrupt))
}

/// The TLS acceptor: the configured certificate (watched for rotation), a
/// self-signed one in development mode, or none.
pub(super) fn tls(
    config: &Config,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Option<tokio_rustls::TlsAcceptor>, Error> {
    if let Some((cert, key)) = &config.security.tls_files {
        let resolver = tls::ReloadingResolver::new(tls::load_certified_key(cert, key)?);
        tracker.spawn(tls::watch(
            resolver.clone(),
            cert.clone(),
            key.clone(),
            config.security.tls_reload_interval,
            shutdown.clone(),
        ));
        info!(cert = %cert.display(), "TLS certificate loaded; watching it for changes");
        return Ok(Some(tls::acceptor(resolver)));
    }
    if config.dev_mode {
        let (key, pem) = tls::self_signed(&config.hostname)?;
        let path = config.spool_dir.join("dev-tls-cert.pem");
        match std::fs::write(&path, pem) {
            Ok(()) => {
                warn!(cert = %path.display(), "DEVELOPMENT MODE: generated a self-signed TLS certificate for STARTTLS (new at each start)")
            }
            Err(e) => {
                warn!(error = %e, "DEVELOPMENT MODE: generated a self-signed TLS certificate for STARTTLS, but could not write it out")
            }
        }
        return Ok(Some(tls::acceptor(tls::ReloadingResolver::new(key))));
    }
    Ok(None)
}

/// The relay for API mail: `POSTERN_RELAY_URL`, or in development mode
/// Postern's own SMTP listener, so a message sent through the API comes
/// back in as inbound mail and shows up in the dev inbox.
pub(super) fn relay(
    config: &Config,
    smtp_addr: SocketAddr,
) -> Result<Option<Arc<relay::Relay>>, Error> {
    let url = match &config.outbound.relay_url {
        Some(u) => u.clone(),
        None if config.dev_mode => {
            let url = format!(
                "smtp://{}?tls=none",
                authority(&local_host(smtp_addr), smtp_addr.port())
            );
            warn!(relay = %url, "DEVELOPMENT MODE: no POSTERN_RELAY_URL; API mail is relayed to Postern's own SMTP listener");
            url
        }
        None => return Ok(None),
    };
    let cfg = relay::RelayConfig::parse(&url).map_err(|e| Error::Config(e.to_string()))?;
    let relay = relay::Relay::new(&cfg, &config.hostname)
        .map_err(|e| Error::Config(e.to_string()))?
        // Relay attempts are limited like any endpoint's (see
        // `delivery::endpoint`): idle connections beyond that are never used.
        .with_pool_size(config.delivery.endpoint_concurrency);
    info!(host = cfg.host(), port = cfg.port(), "relay configured");
    Ok(Some(Arc::new(relay)))
}

/// Development mode without routes: every recipient goes to the built-in
/// inbox (`/dev/inbox` on our HTTP listener), signed with a secret made
/// for this run, and the log says so loudly.
pub(super) fn dev_inbox(config: &mut Config, http_addr: SocketAddr) -> Option<Arc<http::DevInbox>> {
    if !(config.dev_mode && config.routes.is_empty()) {
        return None;
    }
    let secret = Secret::generate();
    let url = format!(
        "http://{}/dev/inbox",
        authority(&local_host(http_addr), http_addr.port())
    );
    let mut spec = RouteSpec::catch_all(url.clone());
    spec.secret = Some(OneOrMany::One(secret.to_whsec()));
    config.routes = vec![Route::compile(spec).expect("dev route compiles")];
    warn!("==============================================================");
    warn!("DEVELOPMENT MODE: no POSTERN_WEBHOOK_URL or POSTERN_ROUTES set.");
    warn!("Every recipient is accepted and delivered to the built-in inbox");
    warn!("  {url}  (GET it to see the signed payloads)");
    warn!(
        "  or look in the web console: http://{}/ui/",
        authority(&local_host(http_addr), http_addr.port())
    );
    warn!(
        "Dev webhook secret (new at each start): {}",
        secret.to_whsec()
    );
    warn!("Do not expose this instance: it accepts mail for anyone.");
    warn!("==============================================================");
    Some(http::DevInbox::new(secret))
}

/// The file under the spool directory that keeps the generated key of
/// attachment links.
const LINK_KEY_FILE: &str = "attachment-url.key";

/// What signs attachment links, and what writes them into payloads.
/// The key is `POSTERN_ATTACHMENT_URL_SECRET`, or else one generated once
/// and kept in the spool directory (mode 0600), so links survive a
/// restart; replicas that share no spool must all be given the same
/// secret. The links point at `POSTERN_PUBLIC_URL`, in development mode
/// at our HTTP listener; otherwise none are made.
pub(super) fn attachment_links(
    config: &Config,
    http_addr: SocketAddr,
) -> Result<(LinkKey, Option<Linker>), Error> {
    let c = &config.attachment_urls;
    let key = match &c.secret {
        Some(k) => k.clone(),
        None => spool_link_key(&config.spool_dir.join(LINK_KEY_FILE))?,
    };
    let base = match &c.public_url {
        Some(u) => Some(u.clone()),
        None if config.dev_mode => {
            let base = format!(
                "http://{}",
                authority(&local_host(http_addr), http_addr.port())
            );
            info!(base = %base, "DEVELOPMENT MODE: attachment links point at the HTTP listener (set POSTERN_PUBLIC_URL to change)");
            Some(base)
        }
        None => {
            if config
                .routes
                .iter()
                .any(|r| r.max_attachment_inline.is_some())
            {
                warn!(
                    "no POSTERN_PUBLIC_URL: attachments over a route's max_attachment_inline are sent without content or url"
                );
            }
            None
        }
    };
    let linker = base.map(|b| Linker::new(&b, key.clone(), c.ttl));
    Ok((key, linker))
}

/// The generated link key at `path`, made on first use.
fn spool_link_key(path: &std::path::Path) -> Result<LinkKey, Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return LinkKey::from_file_text(&text).ok_or_else(|| {
                Error::Config(format!(
                    "{}: not an attachment link key (remove it to make a new one; links made with it stop working)",
                    path.display()
                ))
            });
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        Err(_) => {}
    }
    let key = LinkKey::generate();
    // With the shared store nothing else creates the spool directory.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(key.to_file_text().as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    info!(key_file = %path.display(), "generated the key of attachment links (set POSTERN_ATTACHMENT_URL_SECRET on every replica to share one)");
    Ok(key)
}

/// The host in a URL that reaches one of our listeners from this machine:
/// a wildcard listener is reached on 127.0.0.1.
fn local_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_link_key_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LINK_KEY_FILE);
        let key = spool_link_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(spool_link_key(&path).unwrap(), key);
        std::fs::write(&path, "junk").unwrap();
        assert!(spool_link_key(&path).is_err());
    }

    #[test]
    fn the_link_key_is_made_where_no_spool_directory_exists_yet() {
        // The shared store: nothing has created the spool directory.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool").join(LINK_KEY_FILE);
        let key = spool_link_key(&path).unwrap();
        assert_eq!(spool_link_key(&path).unwrap(), key);
    }

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let host = |a: &str| local_host(a.parse().unwrap());
        assert_eq!(host("0.0.0.0:2525"), "127.0.0.1");
        assert_eq!(host("[::]:2525"), "127.0.0.1");
        assert_eq!(host("127.0.0.2:2525"), "127.0.0.2");
        assert_eq!(host("10.0.0.7:8080"), "10.0.0.7");
    }
}
