//! The PROXY protocol on the SMTP listeners (HAProxy's `proxy-protocol.txt`:
//! v1 text and v2 binary headers, as Postfix's
//! `smtpd_upstream_proxy_protocol` accepts them).
//!
//! Behind a TCP load balancer the socket's peer is the balancer; the header
//! it writes before the client's first byte names the real client. This
//! module owns the settings, the trust check, and reading one header off a
//! fresh connection: bounded in time ([`ProxyConfig::timeout`]) and size
//! ([`MAX_HEADER`]), and never reading a byte past the header, so what
//! follows (an early talker's SMTP, a TLS ClientHello) stays in the socket
//! for the session. Parsing is the `ppp` crate's. What the address is used
//! for (per-IP caps, AUTH throttle, `Received:`, `remote_ip`) is the accept
//! loop's and the session's business ([`super::server`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use ppp::{v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, info};

/// The whole header must have arrived this long after the accept. Postfix
/// waits 5 s too (`smtpd_upstream_proxy_timeout`): a balancer writes the
/// header at once, so anything slower is not a balancer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest header read. v1 headers are at most 107 bytes (the spec's
/// bound, which `ppp` enforces); a v2 header is 16 bytes plus its stated
/// length (up to 64 KiB), which leaves room here for the TLVs balancers add
/// (AWS's VPC endpoint, HAProxy's TLS details) without letting a peer make
/// us buffer 64 KiB per connection.
pub const MAX_HEADER: usize = 4096;

/// The fixed part of a v2 header: signature, version/command, family, length.
const V2_FIXED: usize = 16;
/// `PROXY UNKNOWN\r\n`, the shortest v1 header: a first read of this many
/// bytes cannot take anything past the end of any header.
const V1_SHORTEST: usize = 15;
/// The spec's largest v1 header, CRLF included.
const V1_LONGEST: usize = 107;

/// `POSTERN_SMTP_PROXY_PROTOCOL`: which headers a connection must start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// No header: the socket's peer is the client.
    #[default]
    Off,
    /// Text headers only (`PROXY TCP4 …\r\n`).
    V1,
    /// Binary headers only.
    V2,
    /// Either; the first byte tells them apart.
    Auto,
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Protocol, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Protocol::Off),
            "v1" => Ok(Protocol::V1),
            "v2" => Ok(Protocol::V2),
            "auto" => Ok(Protocol::Auto),
            _ => Err("must be off, v1, v2 or auto".into()),
        }
    }
}

/// The PROXY protocol settings, the same for both SMTP listeners.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub protocol: Protocol,
    /// The balancers: while the protocol is on, only these peers may
    /// connect, because whoever sends a header chooses the address that
    /// every per-IP limit and every trace header believes.
    pub trusted: Vec<IpNet>,
    /// See [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            protocol: Protocol::Off,
            trusted: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl ProxyConfig {
    pub fn is_on(&self) -> bool {
        self.protocol != Protocol::Off
    }

    /// Whether a connection from `peer` (the socket's address) may go on to
    /// its header; always true with the protocol off.
    pub fn allows_peer(&self, peer: IpAddr) -> bool {
        !self.is_on() || is_trusted(&self.trusted, peer)
    }
}

/// `10.0.0.0/8, 192.0.2.7, 2001:db8::/32` → networks; a bare address is
/// one host. Empty items (a trailing comma) are skipped.
pub fn parse_trusted(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not a network like 10.0.0.0/8 or an IP address"))
        })
        .collect()
}

/// Whether `peer` is inside one of `trusted`. An IPv4-mapped IPv6 peer (a
/// dual-stack listener on `[::]`) is compared as the IPv4 address it is.
pub fn is_trusted(trusted: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    trusted.iter().any(|net| net.contains(&peer))
}

/// What a valid header says about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// TCP over IPv4 or IPv6: the client as the balancer saw it.
    Client(SocketAddr),
    /// v2 `LOCAL`: the balancer's own connection, typically a health check.
    Local,
    /// v1 `UNKNOWN`, or v2 `PROXY` with an unspecified or UNIX-socket
    /// address: the balancer does not know an IP client address.
    Unknown,
}

impl Source {
    /// The address the session is counted and recorded under. `LOCAL` and
    /// `UNKNOWN` get the socket's peer, the balancer itself: the spec says
    /// the receiver must then use the real connection's addresses, Postfix
    /// does the same, and HAProxy's SMTP health checks (`LOCAL`, then a
    /// greeting expected) keep working. They share the balancer's per-IP
    /// budget, which cannot be spoofed: only trusted peers get here.
    pub fn client_ip(self, peer: IpAddr) -> IpAddr {
        match self {
            Source::Client(addr) => addr.ip().to_canonical(),
            Source::Local | Source::Unknown => peer,
        }
    }
}

/// Why a connection was closed before its greeting.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed after {0} bytes, before the end of a PROXY header")]
    Closed(usize),
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    #[error("PROXY v2 header of {0} bytes, more than the {MAX_HEADER} accepted")]
    TooLarge(usize),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

impl HeaderError {
    /// A peer that connects and closes without a byte is what TCP health
    /// checks do (AWS NLB's, for one, sends no header): not worth an
    /// info line every few seconds.
    fn is_probe(&self) -> bool {
        matches!(self, HeaderError::Closed(0))
    }
}

/// Reads the header when the protocol is on and returns the address to
/// serve the connection as; with the protocol off, `peer` at once.
pub async fn accept<R: AsyncRead + Unpin>(
    stream: &mut R,
    peer: IpAddr,
    config: &ProxyConfig,
) -> Result<IpAddr, HeaderError> {
    if !config.is_on() {
        return Ok(peer);
    }
    let source = match read_header(stream, config.protocol, config.timeout).await {
        Ok(source) => source,
        Err(e) => {
            if e.is_probe() {
                debug!(error = %e, "connection closed before the PROXY header");
            } else {
                info!(error = %e, "connection closed before the greeting");
            }
            return Err(e);
        }
    };
    match source {
        Source::Client(addr) => debug!(client = %addr, "PROXY header"),
        Source::Local => debug!("PROXY LOCAL: served as the balancer's own connection"),
        Source::Unknown => info!("PROXY header without a client address: served as the balancer"),
    }
    Ok(source.client_ip(peer))
}

/// Reads one header of `protocol`, in reads no larger than what must still
/// belong to it, within `timeout`.
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Source, HeaderError> {
    let mut buf = Vec::with_capacity(V1_LONGEST);
    let read = async {
        loop {
            match step(protocol, &buf)? {
                Step::Done(source) => return Ok(source),
                Step::Read(n) => {
                    let start = buf.len();
                    debug_assert!(start + n <= MAX_HEADER);
                    buf.resize(start + n, 0);
                    let got = stream.read(&mut buf[start..]).await?;
                    buf.truncate(start + got);
                    if got == 0 {
                        return Err(HeaderError::Closed(start));
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| HeaderError::Timeout(timeout))?
}

/// What to do after looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done(Source),
    /// Read at most this many more bytes: all of them belong to the header.
    Read(usize),
}

/// The decision for `buf`, the start of a connection: a complete header,
/// how much more may be read, or why it is not a header of `protocol`.
fn step(protocol: Protocol, buf: &[u8]) -> Result<Step, HeaderError> {
    let invalid = |why: &str| Err(HeaderError::Invalid(why.to_string()));
    match (buf.first(), protocol) {
        (_, Protocol::Off) => invalid("the PROXY protocol is off"),
        (None, Protocol::V2) => Ok(Step::Read(V2_FIXED)),
        (None, _) => Ok(Step::Read(V1_SHORTEST)),
        (Some(b'\r'), Protocol::V2 | Protocol::Auto) => v2_step(buf),
        (Some(b'P'), Protocol::V1 | Protocol::Auto) => v1_step(buf),
        (Some(b'\r'), Protocol::V1) => invalid("a binary (v2) header, but only v1 is accepted"),
        (Some(b'P'), Protocol::V2) => invalid("a text (v1) header, but only v2 is accepted"),
        (Some(b), _) => Err(HeaderError::Invalid(format!(
            "not a PROXY header (first byte {b:#04x})"
        ))),
    }
}

/// A v1 header is one line: it is parsed once its LF is in, because
/// `ppp` mistakes some incomplete lines for invalid ones (`PROXY TCP4
/// 1.2.3.4 ` reads as an empty destination address), and a header split
/// across TCP segments at a space must still work. Until then, only its
/// start is checked, so a client talking SMTP is refused at once.
fn v1_step(buf: &[u8]) -> Result<Step, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    if !buf.starts_with(&PREFIX[..buf.len().min(PREFIX.len())]) {
        return Err(HeaderError::Invalid(
            "a text (v1) header starts with \"PROXY \"".into(),
        ));
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() < V1_LONGEST {
            Ok(Step::Read(1))
        } else {
            Err(HeaderError::Invalid(
                "text (v1) header without CRLF within 107 bytes".into(),
            ))
        };
    };
    match v1::Header::try_from(&buf[..=end]) {
        Ok(header) => Ok(Step::Done(match header.addresses {
            v1::Addresses::Tcp4(a) => {
                Source::Client(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            v1::Addresses::Tcp6(a) => {
                Source::Client(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            v1::Addresses::Unknown => Source::Unknown,
        })),
        Err(e) => Err(HeaderError::Invalid(e.to_string())),
    }
}

fn v2_step(buf: &[u8]) -> Result<Step, HeaderError> {
    match v2::Header::try_from(buf) {
        Ok(header) => v2_source(&header).map(Step::Done),
        Err(v2::ParseError::Incomplete(have)) => Ok(Step::Read(V2_FIXED - have)),
        Err(v2::ParseError::Partial(_, len)) if V2_FIXED + len > MAX_HEADER => {
            Err(HeaderError::TooLarge(V2_FIXED + len))
        }
        Err(v2::ParseError::Partial(have, len)) => Ok(Step::Read(len - have)),
        Err(e) => Err(HeaderError::Invalid(e.to_string())),
    }
}

/// A v2 header's meaning. The spec has the receiver drop connections with
/// family/protocol pairs it does not define; a datagram (UDP) source on a
/// TCP connection means a misconfigured balancer, so it is refused too.
fn v2_source(header: &v2::Header) -> Result<Source, HeaderError> {
    use v2::{Addresses, Command, Protocol as Transport};
    if header.command == Command::Local {
        // The spec: accept, use the real connection's endpoints, ignore
        // the address block whatever its family.
        return Ok(Source::Local);
    }
    match (&header.addresses, header.protocol) {
        (Addresses::IPv4(a), Transport::Stream) => Ok(Source::Client(SocketAddr::new(
            a.source_address.into(),
            a.source_port,
        ))),
        (Addresses::IPv6(a), Transport::Stream) => Ok(Source::Client(SocketAddr::new(
            a.source_address.into(),
            a.source_port,
        ))),
        (Addresses::Unspecified, Transport::Unspecified)
        | (Addresses::Unix(_), Transport::Stream) => Ok(Source::Unknown),
        (_, Transport::Datagram) => Err(HeaderError::Invalid(
            "a datagram (UDP) source for a TCP connection".into(),
        )),
        _ => Err(HeaderError::Invalid(
            "an address family and protocol pair the spec does not define".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";

    /// A v2 header by hand: command byte, family/protocol byte, address
    /// block (and TLVs).
    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = SIG.to_vec();
        h.push(command);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn v4_block() -> Vec<u8> {
        // 203.0.113.7:51234 → 192.0.2.10:25
        let mut b = vec![203, 0, 113, 7, 192, 0, 2, 10];
        b.extend_from_slice(&51234u16.to_be_bytes());
        b.extend_from_slice(&25u16.to_be_bytes());
        b
    }

    fn v6_block() -> Vec<u8> {
        let src: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: std::net::Ipv6Addr = "2001:db8::25".parse().unwrap();
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&4321u16.to_be_bytes());
        b.extend_from_slice(&25u16.to_be_bytes());
        b
    }

    /// Feeds `bytes` the way [`read_header`] reads them (never more than
    /// `step` asks for) and returns the outcome and the bytes consumed.
    fn feed(protocol: Protocol, bytes: &[u8]) -> (Result<Source, String>, usize) {
        let mut buf = Vec::new();
        loop {
            match step(protocol, &buf) {
                Ok(Step::Done(s)) => return (Ok(s), buf.len()),
                Ok(Step::Read(n)) => {
                    let rest = &bytes[buf.len()..];
                    if rest.is_empty() {
                        return (Err("needs more".into()), buf.len());
                    }
                    buf.extend_from_slice(&rest[..n.min(rest.len())]);
                }
                Err(e) => return (Err(e.to_string()), buf.len()),
            }
        }
    }

    fn client(s: &str) -> Result<Source, String> {
        Ok(Source::Client(s.parse().unwrap()))
    }

    #[test]
    fn headers_and_what_they_mean() {
        use Protocol::*;
        let v4 = v2(0x21, 0x11, &v4_block());
        let v6 = v2(0x21, 0x21, &v6_block());
        let mut with_tlv = v4_block();
        with_tlv.extend_from_slice(&[0xEA, 0x00, 0x03, b'v', b'p', b'c']);
        let with_tlv = v2(0x21, 0x11, &with_tlv);
        let local = v2(0x20, 0x00, &[]);
        let local_with_block = v2(0x20, 0x11, &v4_block());
        let unspec = v2(0x21, 0x00, &[]);
        let unix = v2(0x21, 0x31, &[0u8; 216]);
        let cases: Vec<(Protocol, &[u8], Result<Source, String>)> = vec![
            (
                V1,
                b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 25\r\n",
                client("203.0.113.7:51234"),
            ),
            (
                Auto,
                b"PROXY TCP6 2001:db8::7 2001:db8::25 4321 25\r\n",
                client("[2001:db8::7]:4321"),
            ),
            (V1, b"PROXY UNKNOWN\r\n", Ok(Source::Unknown)),
            (
                Auto,
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
                Ok(Source::Unknown),
            ),
            (V2, &v4, client("203.0.113.7:51234")),
            (Auto, &v6, client("[2001:db8::7]:4321")),
            (V2, &with_tlv, client("203.0.113.7:51234")),
            (V2, &local, Ok(Source::Local)),
            (Auto, &local_with_block, Ok(Source::Local)),
            (V2, &unspec, Ok(Source::Unknown)),
            (V2, &unix, Ok(Source::Unknown)),
        ];
        for (protocol, bytes, want) in cases {
            let (got, used) = feed(protocol, bytes);
            assert_eq!(got, want, "{protocol:?} {bytes:?}");
            assert_eq!(used, bytes.len(), "{protocol:?} {bytes:?}");
        }
    }

    #[test]
    fn never_reads_past_the_header() {
        let mut v4 = v2(0x21, 0x11, &v4_block());
        let len = v4.len();
        v4.extend_from_slice(b"\x16\x03\x01 a ClientHello");
        for (protocol, bytes, header_len) in [
            (Protocol::V1, &b"PROXY UNKNOWN\r\nEHLO x\r\n"[..], 15),
            (
                Protocol::Auto,
                &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nEHLO x\r\n"[..],
                32,
            ),
            (Protocol::V2, &v4[..], len),
            (Protocol::Auto, &v4[..], len),
        ] {
            let (got, used) = feed(protocol, bytes);
            assert!(got.is_ok(), "{got:?}");
            assert_eq!(used, header_len);
        }
    }

    #[test]
    fn bad_headers_are_refused_with_a_reason() {
        use Protocol::*;
        let v4 = v2(0x21, 0x11, &v4_block());
        let udp = v2(0x21, 0x12, &v4_block());
        let v4_unspec_transport = v2(0x21, 0x10, &v4_block());
        let version_3 = v2(0x31, 0x11, &v4_block());
        let short_block = v2(0x21, 0x11, &[1, 2, 3]);
        let cases: Vec<(Protocol, &[u8], &str)> = vec![
            (
                Auto,
                b"EHLO client.test\r\n",
                "not a PROXY header (first byte 0x45)",
            ),
            (
                V1,
                b"\x16\x03\x01\x02\x00",
                "not a PROXY header (first byte 0x16)",
            ),
            (V1, &v4, "a binary (v2) header, but only v1 is accepted"),
            (
                V2,
                b"PROXY UNKNOWN\r\n",
                "a text (v1) header, but only v2 is accepted",
            ),
            (
                Auto,
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                "invalid PROXY header: ",
            ),
            (
                V1,
                b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
                "invalid PROXY header: ",
            ),
            (
                V1,
                b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
                "invalid PROXY header: ",
            ),
            (
                V1,
                b"PROXY TCP4 1.2.3.4\r\nEHLO x\r\n",
                "invalid PROXY header: ",
            ),
            (Auto, b"POST / HTTP/1.1\r\n", "starts with \"PROXY \""),
            (
                V1,
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                "invalid PROXY header: ",
            ),
            (V2, &udp, "a datagram (UDP) source"),
            (V2, &v4_unspec_transport, "pair the spec does not define"),
            (V2, &version_3, "invalid PROXY header: "),
            (V2, &short_block, "invalid PROXY header: "),
            (
                V2,
                b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c",
                "invalid PROXY header: ",
            ),
        ];
        for (protocol, bytes, want) in cases {
            let (got, _) = feed(protocol, bytes);
            let err = got.expect_err(&format!("{bytes:?}"));
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        // v1: the spec's 107 bytes, even while the parser would wait on.
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(200));
        let (got, used) = feed(Protocol::V1, long.as_bytes());
        assert_eq!(
            got.unwrap_err(),
            "invalid PROXY header: text (v1) header without CRLF within 107 bytes"
        );
        assert_eq!(used, V1_LONGEST);
        // v2: refused from the fixed part alone, before the block is read.
        let mut big = SIG.to_vec();
        big.extend_from_slice(&[0x21, 0x11]);
        big.extend_from_slice(&((MAX_HEADER - V2_FIXED + 1) as u16).to_be_bytes());
        let (got, used) = feed(Protocol::V2, &big);
        assert_eq!(
            got.unwrap_err(),
            format!(
                "PROXY v2 header of {} bytes, more than the 4096 accepted",
                MAX_HEADER + 1
            )
        );
        assert_eq!(used, V2_FIXED);
        // ...while the largest accepted one is read.
        let mut block = v4_block();
        block.resize(MAX_HEADER - V2_FIXED, 0);
        // one NOOP TLV filling the rest: type 4, length 4080 - 12 - 3
        block[12..15].copy_from_slice(&[0x04, 0x0f, 0xe1]);
        let (got, used) = feed(Protocol::V2, &v2(0x21, 0x11, &block));
        assert_eq!(got, client("203.0.113.7:51234"));
        assert_eq!(used, MAX_HEADER);
    }

    #[test]
    fn protocol_and_trusted_networks_parse() {
        assert_eq!(Protocol::parse("off"), Ok(Protocol::Off));
        assert_eq!(Protocol::parse(" V2 "), Ok(Protocol::V2));
        assert_eq!(Protocol::parse("auto"), Ok(Protocol::Auto));
        assert_eq!(
            Protocol::parse("v3"),
            Err("must be off, v1, v2 or auto".to_string())
        );
        let nets = parse_trusted("10.0.0.0/8, 192.0.2.7,2001:db8::/32,").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(is_trusted(&nets, ip("10.1.2.3")));
        assert!(is_trusted(&nets, ip("192.0.2.7")));
        assert!(!is_trusted(&nets, ip("192.0.2.8")));
        assert!(is_trusted(&nets, ip("2001:db8:1::1")));
        assert!(!is_trusted(&nets, ip("2001:db9::1")));
        // a dual-stack listener's view of an IPv4 balancer
        assert!(is_trusted(&nets, ip("::ffff:10.9.9.9")));
        // host bits are ignored, as in any routing table
        assert_eq!(
            parse_trusted("10.1.2.3/8").unwrap()[0].to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_trusted("10.0.0.0/8,lb.internal"),
            Err("\"lb.internal\" is not a network like 10.0.0.0/8 or an IP address".into())
        );
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted(" , ").unwrap().is_empty());
    }

    #[test]
    fn the_session_sees_the_client_or_the_balancer() {
        let balancer: IpAddr = "10.0.0.5".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:203.0.113.7]:1".parse().unwrap();
        assert_eq!(
            Source::Client(mapped).client_ip(balancer),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(Source::Local.client_ip(balancer), balancer);
        assert_eq!(Source::Unknown.client_ip(balancer), balancer);
        let off = ProxyConfig::default();
        assert!(off.allows_peer(balancer));
        let on = ProxyConfig {
            protocol: Protocol::Auto,
            trusted: parse_trusted("10.0.0.0/24").unwrap(),
            ..ProxyConfig::default()
        };
        assert!(on.allows_peer(balancer));
        assert!(!on.allows_peer("10.0.1.5".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_header_split_across_reads_leaves_the_rest_unread() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let header = v2(0x21, 0x11, &v4_block());
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in header.chunks(5) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"EHLO x\r\n").await.unwrap();
            client
        });
        let source = read_header(&mut server, Protocol::Auto, DEFAULT_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(source, Source::Client("203.0.113.7:51234".parse().unwrap()));
        let _client = writer.await.unwrap();
        let mut rest = [0u8; 8];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn a_slow_or_missing_header_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        client.write_all(b"PROXY TCP4 1.2").await.unwrap();
        let e = read_header(&mut server, Protocol::V1, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "no complete PROXY header within 50ms");
        drop(client);
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        let e = read_header(&mut server, Protocol::V1, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.is_probe(), "{e}");
    }
}
