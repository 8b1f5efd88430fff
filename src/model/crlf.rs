//! Line endings made CRLF: what RFC 2045 canonical text and SMTP require.

/// CRLF, lone CR and lone LF all become CRLF. Runs between line endings
/// are copied whole: this is on every composed and every relayed message.
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut rest = bytes;
    while let Some(at) = memchr::memchr2(b'\r', b'\n', rest) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"\r\n");
        let crlf = rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n');
        rest = &rest[at + if crlf { 2 } else { 1 }..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_ending_becomes_crlf() {
        for (input, want) in [
            (&b"a\r\nb"[..], &b"a\r\nb"[..]),
            (b"a\nb\rc", b"a\r\nb\r\nc"),
            (b"\r\r\n\n\r", b"\r\n\r\n\r\n\r\n"),
            (b"\n\r", b"\r\n\r\n"),
            (b"", b""),
            (b"no ending", b"no ending"),
        ] {
            assert_eq!(to_crlf(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
