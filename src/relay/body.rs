//! The message bytes as handed to lettre for `DATA`: line ends made CRLF
//! (the SMTP smuggling defence described in the [module docs](super)), and
//! the final CRLF left to lettre's terminator.

/// Prepares message bytes for lettre, which dot-stuffs CRLF lines and then
/// appends `CRLF . CRLF`:
/// * bare LF / bare CR become CRLF (SMTP smuggling defence, see module docs);
/// * one final CRLF is dropped, as lettre's terminator supplies it, so that
///   the relay receives exactly the CRLF-terminated message.
pub(super) fn smtp_body(message: &[u8]) -> Vec<u8> {
    let mut out = crate::model::crlf::to_crlf(message);
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_body_normalises_line_ends() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb"),
            (b"a\r\nb", b"a\r\nb"),
            (b"a\nb\n", b"a\r\nb"),
            (b"a\rb\r", b"a\r\nb"),
            (b"a\n.\r\nb", b"a\r\n.\r\nb"),
            (b"a\r\n\r\n", b"a\r\n"),
            (b"", b""),
            (b"\r\n", b""),
            (b"\r\r\n\n\r", b"\r\n\r\n\r\n"),
            (b"\n\r", b"\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                smtp_body(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
