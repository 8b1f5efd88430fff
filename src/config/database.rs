//! Database settings (`POSTERN_DATABASE_URL`, `POSTERN_DATABASE_CA`,
//! `POSTERN_DATABASE_POOL`) → [`DatabaseSettings`], which the PostgreSQL
//! store ([`crate::spool`]'s `pg` backend) receives. Unset URL: no database,
//! the spool directory is the store.
//!
//! `sslmode` is understood with libpq's five names, but Postern never uses
//! TLS without checking the certificate chain (an unverified TLS session
//! protects nothing against whoever sits on the path):
//!
//! | sslmode       | TLS                         | verified                 |
//! |---------------|-----------------------------|--------------------------|
//! | `disable`     | never                       | —                        |
//! | `prefer` (default) | if the server offers it | chain + host name      |
//! | `require`     | always                      | chain + host name        |
//! | `verify-ca`   | always                      | chain only               |
//! | `verify-full` | always                      | chain + host name        |
//!
//! tokio-postgres only parses `disable`/`prefer`/`require`, so `sslmode` is
//! taken out of the URL here and handed over as [`TlsMode`].

use std::path::PathBuf;
use std::time::Duration;

use super::{Problems, RawConfig, invalid};
pub use crate::spool::pg::settings::{DatabaseSettings, TlsMode};

/// Connections per process when `POSTERN_DATABASE_POOL` is unset: enough for
/// the delivery worker plus SMTP/API commits at once, small enough that a
/// few replicas stay far below PostgreSQL's default `max_connections` (100).
pub const DEFAULT_POOL_SIZE: usize = 10;

/// How long a claim reserves a delivery when `POSTERN_DATABASE_LEASE` is
/// unset: well above the longest attempt (webhook timeout, a relay
/// transaction), short enough that a dead replica's mail waits minutes.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// Shortest accepted `POSTERN_DATABASE_LEASE`.
const MIN_LEASE: Duration = Duration::from_secs(1);

/// Largest accepted `POSTERN_DATABASE_POOL`.
const MAX_POOL_SIZE: usize = 1000;

/// How long opening one connection may take when the URL does not say
/// (`connect_timeout`): a database that never answers must not hang start-up.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl DatabaseSettings {
    /// Settings from a URL alone (tests, tools): default pool, no CA file.
    pub fn from_url(url: &str) -> Result<DatabaseSettings, String> {
        let (pg, tls) = parse_url(url)?;
        Ok(DatabaseSettings {
            pg,
            tls,
            ca_file: None,
            pool_size: DEFAULT_POOL_SIZE,
            lease: DEFAULT_LEASE,
        })
    }
}

/// Splits `sslmode` out of a `postgres://` URL and parses the rest with
/// tokio-postgres. Messages never contain the URL (it may hold a password).
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, TlsMode), String> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| format!("not a URL ({e}); expected postgres://user:password@host:port/db"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err("must start with postgres:// or postgresql://".into());
    }
    let mut tls = TlsMode::Prefer;
    let mut kept = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                tls = TlsMode::parse(&v).ok_or_else(|| {
                    format!(
                        "sslmode={v} is not one of disable, prefer, require, verify-ca, verify-full"
                    )
                })?
            }
            "sslrootcert" | "sslcert" | "sslkey" => {
                return Err(format!(
                    "{k} is not supported in the URL; set POSTERN_DATABASE_CA to the CA's PEM file"
                ));
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let mut pg: tokio_postgres::Config = parsed
        .as_str()
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("not a valid PostgreSQL URL: {e}"))?;
    if pg.get_hosts().is_empty() {
        return Err("names no host".into());
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    pg.ssl_mode(match tls {
        TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
        TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    if pg.get_application_name().is_none() {
        pg.application_name("postern");
    }
    Ok((pg, tls))
}

/// Pure: `POSTERN_DATABASE_LEASE` → the lease's length.
fn parse_lease(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d >= MIN_LEASE => Ok(d),
        _ => Err("must be a duration of at least 1s (e.g. 300s, 5m)".into()),
    }
}

/// Pure: `POSTERN_DATABASE_POOL` → connections.
fn parse_pool(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_POOL_SIZE).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {MAX_POOL_SIZE}")),
    }
}

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> Option<DatabaseSettings> {
    let url = raw.database_url.take();
    let ca = raw.database_ca.take();
    let pool = raw.database_pool.take();
    let lease = match raw.database_lease.take() {
        Some(s) => p.or(
            parse_lease(&s).map_err(|m| invalid("POSTERN_DATABASE_LEASE", m)),
            DEFAULT_LEASE,
        ),
        None => DEFAULT_LEASE,
    };
    let pool_size = match pool {
        Some(s) => p.or(
            parse_pool(&s).map_err(|m| invalid("POSTERN_DATABASE_POOL", m)),
            DEFAULT_POOL_SIZE,
        ),
        None => DEFAULT_POOL_SIZE,
    };
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        for (var, set) in [
            ("POSTERN_DATABASE_CA", ca.is_some()),
            ("POSTERN_DATABASE_POOL", pool_size != DEFAULT_POOL_SIZE),
            ("POSTERN_DATABASE_LEASE", lease != DEFAULT_LEASE),
        ] {
            if set {
                p.push(invalid(var, "needs POSTERN_DATABASE_URL"));
            }
        }
        return None;
    };
    let parsed = p.or(
        parse_url(&url)
            .map(Some)
            .map_err(|m| invalid("POSTERN_DATABASE_URL", m)),
        None,
    );
    let ca_file = ca.map(PathBuf::from);
    if let Some(path) = &ca_file
        && !path.is_file()
    {
        p.push(invalid(
            "POSTERN_DATABASE_CA",
            format!("{} is not a readable file", path.display()),
        ));
    }
    let (pg, tls) = parsed?;
    if tls == TlsMode::Disable && ca_file.is_some() {
        p.push(invalid(
            "POSTERN_DATABASE_CA",
            "is set but POSTERN_DATABASE_URL has sslmode=disable",
        ));
    }
    Some(DatabaseSettings {
        pg,
        tls,
        ca_file,
        pool_size,
        lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_durations_of_a_second_or_more() {
        for (s, want) in [("300s", 300), ("5m", 300), (" 1s ", 1)] {
            assert_eq!(parse_lease(s), Ok(Duration::from_secs(want)), "{s}");
        }
        for bad in ["", "0s", "500ms", "five", "-1s"] {
            assert!(parse_lease(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sslmode_is_taken_out_and_mapped() {
        for (q, mode) in [
            ("", TlsMode::Prefer),
            ("?sslmode=disable", TlsMode::Disable),
            ("?sslmode=prefer", TlsMode::Prefer),
            ("?sslmode=require", TlsMode::Require),
            ("?sslmode=verify-ca", TlsMode::VerifyCa),
            (
                "?sslmode=verify-full&connect_timeout=3",
                TlsMode::VerifyFull,
            ),
        ] {
            let (pg, tls) = parse_url(&format!("postgres://u:pw@db.example:5433/app{q}")).unwrap();
            assert_eq!(tls, mode, "{q}");
            assert_eq!(pg.get_dbname(), Some("app"));
            assert_eq!(pg.get_ports(), &[5433]);
        }
        let (pg, _) =
            parse_url("postgresql://u@h/d?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for (url, want) in [
            ("mysql://u:hunter2@h/d", "must start with postgres://"),
            (
                "postgres://u:hunter2@h/d?sslmode=allow",
                "sslmode=allow is not one of",
            ),
            (
                "postgres://u:hunter2@h/d?sslrootcert=/x",
                "POSTERN_DATABASE_CA",
            ),
            (
                "postgres://u:hunter2@h/d?bogus=1",
                "not a valid PostgreSQL URL",
            ),
            ("hunter2", "not a URL"),
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn pool_size_bounds() {
        assert_eq!(parse_pool("1"), Ok(1));
        assert_eq!(parse_pool("1000"), Ok(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert!(parse_pool(bad).is_err(), "{bad}");
        }
    }
}
