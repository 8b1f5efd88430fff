//! Content-Transfer-Encoding: a part's bytes as sent → the bytes it carries,
//! and whether that decoding lost anything.
//!
//! base64 is decoded here rather than by mail-parser, whose decoder drops a
//! final quantum that lacks its padding (`QUJDRA` gives `ABC`, not `ABCD`)
//! and returns nothing at all for a lone trailing character, both without
//! saying so. Missing padding is supplied and misplaced padding ignored, as
//! Python's `email` package does. A body with characters outside the
//! alphabet (other than white space), or a dangling 6-bit group, is not
//! base64: it is delivered as it was sent, and reported. (RFC 2045 §6.8 lets
//! a decoder skip such characters, and Python does; but a part labelled
//! base64 that holds them is almost always not base64 at all, and skipping
//! turns it into garbage that looks decoded.)

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{MessagePart, MimeHeaders, PartType};

/// What happened while undoing the transfer encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// Decoded (or there was nothing to decode).
    Clean,
    /// Not decodable (or an unknown encoding): the bytes are as sent.
    Undecoded,
}

/// Encodings that leave the bytes as they are.
const IDENTITY: &[&str] = &["", "7bit", "8bit", "binary"];

/// The transfer-decoded bytes of `part`, from the message bytes `raw`.
pub(crate) fn decoded<'a>(raw: &'a [u8], part: &'a MessagePart<'_>) -> (Cow<'a, [u8]>, Transfer) {
    let Some(encoded) = raw.get(part.offset_body as usize..part.offset_end as usize) else {
        let bytes = match &part.body {
            PartType::Text(s) | PartType::Html(s) => Cow::Borrowed(s.as_bytes()),
            PartType::Binary(b) | PartType::InlineBinary(b) => Cow::Borrowed(b.as_ref()),
            _ => Cow::Borrowed(&[][..]),
        };
        return (bytes, Transfer::Clean);
    };
    match cte(part) {
        Cte::Base64 => match base64(encoded) {
            Some(bytes) => (Cow::Owned(bytes), Transfer::Clean),
            None => (Cow::Borrowed(encoded), Transfer::Undecoded),
        },
        Cte::QuotedPrintable => {
            // An empty boundary makes the decoder run to the end of the
            // slice, which already stops where the part ends. usize::MAX is
            // its "not valid in this encoding": deliver the bytes rather
            // than a silently shortened text.
            let (end, bytes) = MessageStream::new(encoded).decode_quoted_printable_mime(b"");
            if end == usize::MAX {
                (Cow::Borrowed(encoded), Transfer::Undecoded)
            } else {
                (bytes, Transfer::Clean)
            }
        }
        Cte::Identity => (Cow::Borrowed(encoded), Transfer::Clean),
        // x-uuencode and friends: RFC 2045 §6.4 says treat the body as
        // opaque data, which is what the receiver gets, told so.
        Cte::Other => (Cow::Borrowed(encoded), Transfer::Undecoded),
    }
}

/// A part's Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cte {
    Base64,
    QuotedPrintable,
    /// 7bit, 8bit, binary or none: the bytes are what they carry.
    Identity,
    Other,
}

/// The encoding `part` declares. The header, not `part.encoding`:
/// mail-parser resets the latter to None when it could not find the
/// closing boundary, yet the bytes up to the end of the message are
/// usually still perfectly decodable.
pub(crate) fn cte(part: &MessagePart<'_>) -> Cte {
    let cte = part.content_transfer_encoding().unwrap_or_default().trim();
    if cte.eq_ignore_ascii_case("base64") {
        Cte::Base64
    } else if cte.eq_ignore_ascii_case("quoted-printable") {
        Cte::QuotedPrintable
    } else if IDENTITY.iter().any(|i| i.eq_ignore_ascii_case(cte)) {
        Cte::Identity
    } else {
        Cte::Other
    }
}

/// base64 with the padding rules relaxed; `None` when it is not base64.
pub(crate) fn base64(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(encoded.len() / 4 * 3 + 3);
    let mut decoder = Base64::default();
    decoder.feed(encoded, &mut out).ok()?;
    decoder.finish(&mut out).ok()?;
    Some(out)
}

/// The body is not base64 (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotBase64;

/// [`base64`] fed in pieces: the same bytes and the same verdict whatever
/// the pieces, so that a large attachment is decoded as it is read.
#[derive(Debug, Default, Clone)]
pub(crate) struct Base64 {
    group: [u8; 4],
    n: usize,
    /// Anything but white space was seen.
    content: bool,
    produced: usize,
}

impl Base64 {
    /// Decodes `encoded`, appending to `out`.
    pub(crate) fn feed(&mut self, encoded: &[u8], out: &mut Vec<u8>) -> Result<(), NotBase64> {
        let before = out.len();
        let mut rest = encoded;
        // Whole lines of whole quanta (what every encoder writes) go
        // through the base64 crate's table decoder; anything else, and
        // any line that starts inside a group, byte by byte below.
        while self.n == 0 {
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                break;
            };
            let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
            if !fast_line(line, out) {
                break;
            }
            self.content |= !line.is_empty();
            rest = &rest[nl + 1..];
        }
        self.slow(rest, out)?;
        self.produced += out.len() - before;
        Ok(())
    }

    fn slow(&mut self, encoded: &[u8], out: &mut Vec<u8>) -> Result<(), NotBase64> {
        for &c in encoded {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b' ' | b'\t' | b'\r' | b'\n' => continue,
                // Padding ends a partial group; elsewhere (a second `=`, or
                // after a complete group) it carries nothing.
                b'=' => {
                    self.content = true;
                    if self.n >= 2 {
                        flush(&self.group[..self.n], out);
                        self.n = 0;
                    }
                    continue;
                }
                _ => return Err(NotBase64),
            };
            self.content = true;
            self.group[self.n] = value;
            self.n += 1;
            if self.n == 4 {
                flush(&self.group, out);
                self.n = 0;
            }
        }
        Ok(())
    }

    /// The last bytes, or the verdict that this was not base64.
    pub(crate) fn finish(self, out: &mut Vec<u8>) -> Result<(), NotBase64> {
        let before = out.len();
        match self.n {
            // Six bits cannot make a byte: this is not base64 (or was cut).
            1 => return Err(NotBase64),
            2 | 3 => flush(&self.group[..self.n], out),
            _ => {}
        }
        if self.produced + (out.len() - before) == 0 && self.content {
            return Err(NotBase64);
        }
        Ok(())
    }
}

/// Decodes `line` onto `out` when it is whole quanta of the alphabet
/// without padding (then the result is what the byte-by-byte decoder
/// gives); false, with `out` unchanged, otherwise.
fn fast_line(line: &[u8], out: &mut Vec<u8>) -> bool {
    use base64::Engine as _;
    if !line.len().is_multiple_of(4) || line.last() == Some(&b'=') {
        return false;
    }
    let at = out.len();
    out.resize(at + line.len() / 4 * 3, 0);
    match base64::engine::general_purpose::STANDARD.decode_slice_unchecked(line, &mut out[at..]) {
        Ok(n) if n == line.len() / 4 * 3 => true,
        _ => {
            out.truncate(at);
            false
        }
    }
}

/// 2, 3 or 4 sextets → 1, 2 or 3 bytes.
fn flush(group: &[u8], out: &mut Vec<u8>) {
    let bits = group
        .iter()
        .chain(std::iter::repeat(&0))
        .take(4)
        .fold(0u32, |acc, &v| (acc << 6) | u32::from(v));
    let bytes = bits.to_be_bytes();
    out.extend_from_slice(&bytes[1..group.len()]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_table() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"", Some(b"")),
            (b"  \r\n", Some(b"")),
            (b"QUJD", Some(b"ABC")),
            (b"QUJDRA==", Some(b"ABCD")),
            (b"QUJDREU=", Some(b"ABCDE")),
            (b"QUJD\r\nREU=\r\n", Some(b"ABCDE")),
            (b" QU JD\tRA == ", Some(b"ABCD")),
            // Missing padding is supplied: mail-parser would give "ABC".
            (b"QUJDRA", Some(b"ABCD")),
            (b"QUJDREU", Some(b"ABCDE")),
            // Misplaced padding carries nothing.
            (b"QUJD=RA", Some(b"ABCD")),
            // Separately encoded chunks, concatenated.
            (b"QUJDRA==QUJD", Some(b"ABCDABC")),
            // Not base64: a lone sextet, nothing decodable, or characters
            // outside the alphabet.
            (b"Q", None),
            (b"QUJDR", None),
            (b"====", None),
            (b"QUJD!RA==", None),
            (b"!!!this is not base64***", None),
            (b"QUJD\xc3\xa9", None),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                base64(input).as_deref(),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn base64_in_pieces_gives_the_same_bytes_and_verdict() {
        let inputs: &[&[u8]] = &[
            b"QUJDREU=",
            b"QUJD\r\nREU=\r\n",
            b" QU JD\tRA == ",
            b"QUJDRA",
            b"QUJD=RA",
            b"QUJDRA==QUJD",
            b"Q",
            b"QUJDR",
            b"====",
            b"QUJD!RA==",
            b"  \r\n",
        ];
        for input in inputs {
            let whole = base64(input);
            for a in 0..=input.len() {
                for b in a..=input.len() {
                    let mut out = Vec::new();
                    let mut d = Base64::default();
                    let ok = [&input[..a], &input[a..b], &input[b..]]
                        .iter()
                        .all(|piece| d.feed(piece, &mut out).is_ok())
                        && d.finish(&mut out).is_ok();
                    assert_eq!(ok.then_some(out), whole, "{input:?} split at {a}, {b}");
                }
            }
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        for len in 0..data.len() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data[..len]);
            assert_eq!(base64(encoded.as_bytes()), Some(data[..len].to_vec()));
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(base64(unpadded.as_bytes()), Some(data[..len].to_vec()));
            // in lines, as mailers write it (whole quanta per line or not)
            for width in [76, 8, 10] {
                let lines: Vec<u8> = encoded
                    .as_bytes()
                    .chunks(width)
                    .flat_map(|l| [l, b"\r\n"].concat())
                    .collect();
                assert_eq!(base64(&lines), Some(data[..len].to_vec()), "{len} {width}");
                let mut d = Base64::default();
                let mut out = Vec::new();
                for piece in lines.chunks(13) {
                    d.feed(piece, &mut out).unwrap();
                }
                d.finish(&mut out).unwrap();
                assert_eq!(out, data[..len], "{len} {width} in pieces");
            }
        }
    }
}
