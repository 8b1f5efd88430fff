//! What the checks read from the configuration (`POSTERN_AUTH_CHECKS`,
//! `POSTERN_DNS_SERVERS`, `POSTERN_DNS_TIMEOUT`), built by `config`; the
//! wiring makes a [`super::Verifier`] of it only when a check is on, so
//! the default path neither reads `/etc/resolv.conf` nor asks DNS.

use std::net::SocketAddr;
use std::time::Duration;

/// Which checks run on each received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checks {
    pub spf: bool,
    pub dkim: bool,
    pub dmarc: bool,
    pub arc: bool,
}

impl Checks {
    pub const ALL: Checks = Checks {
        spf: true,
        dkim: true,
        dmarc: true,
        arc: true,
    };

    /// `spf,dkim,dmarc,arc` (any subset, any order, spaces and case
    /// ignored); empty means none. An unknown name is an error naming it.
    pub fn parse(list: &str) -> Result<Checks, String> {
        let mut c = Checks::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "spf" => c.spf = true,
                "dkim" => c.dkim = true,
                "dmarc" => c.dmarc = true,
                "arc" => c.arc = true,
                _ => {
                    return Err(format!(
                        "unknown check {name:?}: the checks are spf, dkim, dmarc and arc"
                    ));
                }
            }
        }
        Ok(c)
    }

    pub fn any(&self) -> bool {
        self.spf || self.dkim || self.dmarc || self.arc
    }
}

/// Where the checks ask their DNS questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Servers {
    /// The system resolver (`/etc/resolv.conf`), read when the verifier
    /// is built.
    System,
    /// `POSTERN_DNS_SERVERS`.
    These(Vec<SocketAddr>),
}

/// The checks' settings; `None` in the configuration when none is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub checks: Checks,
    pub servers: Servers,
    /// One DNS query's bound (with one retry over TCP for a truncated
    /// answer); a whole message's checks are bounded by
    /// [`Settings::budget`].
    pub timeout: Duration,
}

/// `POSTERN_DNS_TIMEOUT` when unset.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

impl Settings {
    /// The most one message's checks may take, whatever DNS does: SPF
    /// alone may make ten lookups (RFC 7208 §4.6.4), so each query's
    /// timeout is not enough of a bound. Past it the checks still running
    /// are `temperror`.
    pub fn budget(&self) -> Duration {
        self.timeout * 5
    }
}

/// `ip:port,…` (IPv6 as `[::1]:53`); a bare IP means port 53.
pub fn parse_servers(list: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = item
            .parse::<SocketAddr>()
            .or_else(|_| {
                item.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| format!("{item:?} is not ip:port (e.g. 127.0.0.1:53 or [::1]:53)"))?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err("no server given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_lists() {
        let c = |spf, dkim, dmarc, arc| Checks {
            spf,
            dkim,
            dmarc,
            arc,
        };
        let cases: &[(&str, Result<Checks, &str>)] = &[
            ("", Ok(Checks::default())),
            (" , ", Ok(Checks::default())),
            ("spf", Ok(c(true, false, false, false))),
            ("DKIM, dmarc", Ok(c(false, true, true, false))),
            ("spf,dkim,dmarc,arc", Ok(Checks::ALL)),
            ("arc,arc", Ok(c(false, false, false, true))),
            (
                "spf,dkim2",
                Err("unknown check \"dkim2\": the checks are spf, dkim, dmarc and arc"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Checks::parse(input),
                want.map_err(str::to_string),
                "{input:?}"
            );
        }
        assert!(!Checks::default().any());
        assert!(c(false, false, false, true).any());
    }

    #[test]
    fn server_lists() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            parse_servers("127.0.0.1:5353, [::1]:53,10.0.0.2"),
            Ok(vec![a("127.0.0.1:5353"), a("[::1]:53"), a("10.0.0.2:53")])
        );
        assert!(
            parse_servers("dns.example:53")
                .unwrap_err()
                .contains("dns.example")
        );
        assert!(parse_servers(",").is_err());
    }
}
