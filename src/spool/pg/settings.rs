//! What the PostgreSQL store is handed: [`DatabaseSettings`], parsed and
//! validated by `config::database` (which documents the `sslmode` mapping).
//! Kept here so the spool imports nothing above it.

use std::path::PathBuf;
use std::time::Duration;

/// What `sslmode` asks for; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    /// libpq's name for it.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    pub fn parse(s: &str) -> Option<TlsMode> {
        Some(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the host name must match the certificate.
    pub fn checks_host_name(self) -> bool {
        !matches!(self, TlsMode::VerifyCa)
    }
}

/// The validated database settings.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// The URL parsed by tokio-postgres, `sslmode` already taken out
    /// (carries the password: never print it).
    pub pg: tokio_postgres::Config,
    pub tls: TlsMode,
    /// `POSTERN_DATABASE_CA`: trust only this CA (PEM); else the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Most connections this process opens.
    pub pool_size: usize,
    /// `POSTERN_DATABASE_LEASE`: how long a claimed delivery is reserved
    /// for the replica that claimed it; after that (the replica died)
    /// another one takes it.
    pub lease: Duration,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("hosts", &self.pg.get_hosts())
            .field("ports", &self.pg.get_ports())
            .field("user", &self.pg.get_user())
            .field("dbname", &self.pg.get_dbname())
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("lease", &self.lease)
            .finish()
    }
}
