//! Bodies on the wire: checking standard base64 without decoding it,
//! measuring what it decodes to, wrapping it into MIME lines, and turning
//! every line ending into CRLF (RFC 2045 canonical form, and what SMTP
//! requires).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::model::crlf::to_crlf;

/// Base64 line length for attachment bodies (RFC 2045 §6.8 maximum).
const BASE64_LINE_LEN: usize = 76;

/// Decoded size of standard base64 of `len` characters ending in
/// `padding` `=` (exact for valid input), without decoding it.
fn decoded_len(len: usize, padding: usize) -> u64 {
    ((len / 4) * 3).saturating_sub(padding) as u64
}

pub(super) fn base64_decoded_len(text: &str) -> u64 {
    let padding = text.bytes().rev().take(2).filter(|&b| b == b'=').count();
    decoded_len(text.len(), padding)
}

/// Checks standard base64 (RFC 4648, padded, canonical) without keeping
/// the decoded bytes: chunk by chunk into a small buffer. Only the last
/// chunk may hold padding; each other chunk is whole 4-character groups, so
/// chunk-wise validity is the validity of the whole.
pub(super) fn validate_base64(text: &str) -> Result<(), base64::DecodeError> {
    const CHUNK: usize = 4096;
    if validate_base64_chunked(text.as_bytes(), CHUNK) {
        return Ok(());
    }
    // Decoding the whole value gives the error its true offset (and stays
    // the authority on what is valid).
    STANDARD.decode(text).map(drop)
}

fn validate_base64_chunked(text: &[u8], chunk: usize) -> bool {
    debug_assert!(chunk.is_multiple_of(4) && chunk > 0);
    let mut buf = vec![0u8; chunk / 4 * 3];
    let mut chunks = text.chunks(chunk).peekable();
    while let Some(piece) = chunks.next() {
        let last = chunks.peek().is_none();
        if !last && piece.contains(&b'=') {
            return false;
        }
        if STANDARD.decode_slice(piece, &mut buf).is_err() {
            return false;
        }
    }
    true
}

/// Bytes [`push_base64_lines`] adds for `len` characters of base64.
pub(super) fn wrapped_len(len: usize) -> usize {
    len + len.div_ceil(BASE64_LINE_LEN) * 2
}

/// `base64` in lines of [`BASE64_LINE_LEN`], each ending in CRLF.
pub(super) fn push_base64_lines(out: &mut Vec<u8>, base64: &str) {
    for line in base64.as_bytes().chunks(BASE64_LINE_LEN) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
}

/// CRLF, lone CR and lone LF all become CRLF (RFC 2045 canonical text).
pub(super) fn normalize_newlines(text: &str) -> String {
    let bytes = to_crlf(text.as_bytes());
    // Only ASCII CR and LF were added or replaced by CRLF: still UTF-8.
    String::from_utf8(bytes).expect("line endings keep UTF-8 valid")
}

/// Whether a part of this content type must not be base64 or
/// quoted-printable: RFC 2046 §5.2 allows only 7bit, 8bit or binary for
/// `message/rfc822`, `message/partial` and `message/external-body`, and
/// strict readers refuse to open one that is encoded.
pub(super) fn needs_identity_encoding(content_type: &str) -> bool {
    matches!(
        content_type,
        "message/rfc822" | "message/partial" | "message/external-body"
    )
}

/// Why bytes cannot go out unencoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum IdentityError {
    #[error("it holds a NUL byte")]
    Nul,
    #[error("it has a line longer than 998 octets")]
    LongLine,
}

/// The identity transfer encoding that CRLF-normalised `bytes` qualify for:
/// `7bit` when all ASCII, else `8bit` (RFC 2045 §2.7, §2.8: no NUL, lines
/// of at most 998 octets; the relay then sends `BODY=8BITMIME`).
pub(super) fn identity_encoding(bytes: &[u8]) -> Result<&'static str, IdentityError> {
    if bytes.contains(&0) {
        return Err(IdentityError::Nul);
    }
    if bytes
        .split(|&b| b == b'\n')
        .any(|line| line.strip_suffix(b"\r").unwrap_or(line).len() > 998)
    {
        return Err(IdentityError::LongLine);
    }
    Ok(if bytes.is_ascii() { "7bit" } else { "8bit" })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::compose::test_support::b64;
    use proptest::prelude::*;

    /// The character-at-a-time conversion this replaced: the reference.
    fn normalize_by_char(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    chars.next_if_eq(&'\n');
                    out.push_str("\r\n");
                }
                '\n' => out.push_str("\r\n"),
                c => out.push(c),
            }
        }
        out
    }

    /// Text from pieces that sit on every edge of the decision: line
    /// breaks of each kind, spaces and tabs before them and at the end,
    /// `=`, DEL, non-ASCII, and runs that make lines of 74 to 80.
    pub(crate) fn text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("a".to_string()),
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("\n".to_string()),
            Just("\r".to_string()),
            Just("\r\n".to_string()),
            Just("=".to_string()),
            Just("\u{7f}".to_string()),
            Just("é".to_string()),
            (74usize..81).prop_map(|n| "x".repeat(n)),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn newlines_normalise_as_the_character_loop_did(t in text()) {
            prop_assert_eq!(normalize_newlines(&t), normalize_by_char(&t));
        }
    }

    /// Chunk-wise validation agrees with decoding the whole value, for
    /// every string up to 8 characters over an alphabet that has canonical
    /// and non-canonical endings, padding and an invalid symbol, with
    /// chunks as small as one group.
    #[test]
    fn identity_encoding_table() {
        let long = [b"a".repeat(998), b"\r\n".to_vec(), b"b".repeat(999)].concat();
        let cases: Vec<(&[u8], Result<&str, IdentityError>)> = vec![
            (b"Subject: x\r\n\r\nhi\r\n", Ok("7bit")),
            (b"", Ok("7bit")),
            (
                "Subject: Gr\u{fc}\u{df}e\r\n\r\n\u{e9}\r\n".as_bytes(),
                Ok("8bit"),
            ),
            (&long[..998], Ok("7bit")),
            (&long[..1000 + 998], Ok("7bit")),
            (&long, Err(IdentityError::LongLine)),
            (b"a\0b", Err(IdentityError::Nul)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                identity_encoding(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        for (ct, identity) in [
            ("message/rfc822", true),
            ("message/partial", true),
            ("message/external-body", true),
            ("message/global", false),
            ("text/plain", false),
            ("application/octet-stream", false),
        ] {
            assert_eq!(needs_identity_encoding(ct), identity, "{ct}");
        }
    }

    #[test]
    fn chunked_base64_validation_agrees_with_decoding() {
        let alphabet = [b'A', b'Q', b'g', b'=', b'-'];
        let mut text = Vec::new();
        for len in 0..=8u32 {
            for mut n in 0..alphabet.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let whole = STANDARD.decode(&text).is_ok();
                for chunk in [4, 8] {
                    assert_eq!(
                        validate_base64_chunked(&text, chunk),
                        whole,
                        "{:?} in chunks of {chunk}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
        let long = b64(&(0..10_000u32)
            .map(|i| (i * 31 % 256) as u8)
            .collect::<Vec<_>>());
        assert!(validate_base64(&long).is_ok());
        let mut padded_inside = long.clone();
        padded_inside.replace_range(4096..4100, "QQ==");
        let err = validate_base64(&padded_inside).unwrap_err();
        assert_eq!(Some(err), STANDARD.decode(&padded_inside).err());
        assert_eq!(base64_decoded_len(&b64(b"12345")), 5);
        assert_eq!(base64_decoded_len(&b64(b"1234")), 4);
        assert_eq!(base64_decoded_len(""), 0);
    }
}
