//! The value parsers every stage's settings use (addresses, booleans,
//! whole numbers, durations, sizes), each error naming the variable; and
//! [`Problems`] helpers that take a value or record why not and fall back
//! to the default, so that one bad value does not hide the next.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::{ConfigError, Problems, invalid};

impl Problems {
    /// A whole number, or `default` when unset or invalid (recorded).
    pub(super) fn num<T: FromStr + Copy>(
        &mut self,
        var: &'static str,
        v: Option<String>,
        default: T,
    ) -> T {
        self.or(parse_num(var, v, default), default)
    }

    /// A duration, or `default` when unset or invalid (recorded).
    pub(super) fn duration(
        &mut self,
        var: &'static str,
        v: Option<String>,
        default: Duration,
    ) -> Duration {
        self.or(parse_duration(var, v, default), default)
    }

    /// A size, or `default` when unset or invalid (recorded).
    pub(super) fn size(&mut self, var: &'static str, v: Option<String>, default: u64) -> u64 {
        self.or(parse_size(var, v, default), default)
    }

    /// A listen address, or `default` when unset or invalid (recorded).
    pub(super) fn addr(
        &mut self,
        var: &'static str,
        v: Option<String>,
        default: SocketAddr,
    ) -> SocketAddr {
        match v {
            None => default,
            Some(v) => self.or(parse_addr(var, &v), default),
        }
    }

    /// A boolean, or `default` when unset or invalid (recorded).
    pub(super) fn bool(&mut self, var: &'static str, v: Option<String>, default: bool) -> bool {
        match v {
            None => default,
            Some(v) => self.or(parse_bool(var, &v), default),
        }
    }
}

pub(super) fn parse_addr(var: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|_| invalid(var, "must be an IP address and port, e.g. 0.0.0.0:2525"))
}

pub(super) fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, "must be true or false")),
    }
}

fn parse_num<T: FromStr>(
    var: &'static str,
    v: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| invalid(var, "must be a whole number")),
    }
}

fn parse_duration(
    var: &'static str,
    v: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.trim())
            .map_err(|e| invalid(var, format!("must be a duration like 30s or 5m: {e}"))),
    }
}

/// Sizes accept a plain number of octets or a K/M/G (binary) suffix.
fn parse_size(var: &'static str, v: Option<String>, default: u64) -> Result<u64, ConfigError> {
    let Some(s) = v else { return Ok(default) };
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => n.checked_mul(mult).ok_or_else(|| invalid(var, "too large")),
        _ => Err(invalid(var, "must be a size like 26214400, 25M or 512K")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            parse_size("X", Some("25M".into()), 0).unwrap(),
            25 * 1024 * 1024
        );
        assert_eq!(parse_size("X", Some("512k".into()), 0).unwrap(), 512 * 1024);
        assert_eq!(parse_size("X", Some("1000".into()), 0).unwrap(), 1000);
    }
}
