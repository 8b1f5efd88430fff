//! `host:port` as written in a URL authority (RFC 3986 3.2.2) or a log
//! line: the one place that knows an IPv6 host needs brackets, so
//! `::1:2525` (unparsable, ambiguous) is never built.

/// `host:port`, with an IPv6 literal host in brackets (`[::1]:2525`).
/// `host` is a name, an IPv4 address, or an IPv6 address without
/// brackets (as [`std::net::IpAddr`] and our relay config print them); a
/// host that already has brackets is kept as it is.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets() {
        for (host, port, want) in [
            ("relay.example", 587, "relay.example:587"),
            ("127.0.0.1", 2525, "127.0.0.1:2525"),
            ("::1", 2525, "[::1]:2525"),
            ("2001:db8::7", 25, "[2001:db8::7]:25"),
            ("::ffff:192.0.2.7", 25, "[::ffff:192.0.2.7]:25"),
            ("[::1]", 25, "[::1]:25"),
        ] {
            assert_eq!(authority(host, port), want, "{host}");
        }
    }
}
