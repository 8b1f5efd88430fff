//! The transfer encoding of a text or html body part: chosen and applied
//! here, byte for byte as mail-builder's own detection would do it
//! (`get_encoding_type(text, false, true)`, then its base64 or
//! quoted-printable encoder), but a run of bytes at a time. mail-builder
//! goes a byte at a time, with a `format!` for each encoded byte; on the
//! sending path its scan and encoders were a quarter of the server's CPU
//! (docs/BENCHMARKS.md). The unit tests check every output against
//! mail-builder's on generated text that sits on each edge of the rules.

/// mail-builder's soft line limit for quoted-printable output.
const QP_LINE: usize = 76;

/// How a text body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Whether the byte at `pos` is a space or tab that quoted-printable
/// must encode: right before LF or CRLF, or the last byte.
fn ws_before_break(text: &[u8], pos: usize) -> bool {
    is_ws(text[pos])
        && (pos == text.len() - 1 || matches!(&text[pos + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

/// mail-builder's choice for a body part, with its rules: it needs
/// encoding when a byte is 127 or more, a space or tab ends a line or the
/// text, or a line is over 77 bytes with its line break; then
/// quoted-printable when its estimated length is below base64's.
fn choose(text: &[u8]) -> Encoding {
    let high = text.iter().filter(|&&b| b >= 127).count();
    let mut ws_encoded = usize::from(text.last().is_some_and(|&b| is_ws(b)));
    let mut lone_lf = 0;
    let mut long_line = false;
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', text) {
        long_line |= nl + 1 - start > 77;
        match nl.checked_sub(1).map(|p| text[p]) {
            Some(b'\r') => {
                // The CR is the line's; a space or tab before it is encoded.
                ws_encoded += usize::from(nl >= 2 && is_ws(text[nl - 2]));
            }
            Some(b) => {
                lone_lf += 1;
                ws_encoded += usize::from(is_ws(b));
            }
            None => lone_lf += 1,
        }
        start = nl + 1;
    }
    long_line |= text.len() - start > 77;
    // A space or tab that is the last byte and also before a break cannot
    // be both: the last byte is not followed by one.
    if high == 0 && ws_encoded == 0 && !long_line {
        return Encoding::SevenBit;
    }
    let equals = memchr::memchr_iter(b'=', text).count();
    let qp_len = text.len() / QP_LINE + text.len() + 2 * (high + ws_encoded + equals) + lone_lf;
    let base64_len = (text.len() * 4 / 3 + 3) & !3;
    if qp_len < base64_len {
        Encoding::QuotedPrintable
    } else {
        Encoding::Base64
    }
}

/// The end of the run of bytes from `from` that quoted-printable copies
/// as they are, but for a space or tab before a break at its very end
/// (see [`qp_body`]): the next `=`, LF or byte of 127 or more.
fn run_end(text: &[u8], from: usize) -> usize {
    let rest = &text[from..];
    let stop = memchr::memchr2(b'=', b'\n', rest).unwrap_or(rest.len());
    let run = &rest[..stop];
    // Vectorised for the usual ASCII run; a byte at a time only otherwise.
    let high = if run.is_ascii() {
        memchr::memchr(0x7f, run)
    } else {
        run.iter().position(|&b| b >= 127)
    };
    from + high.unwrap_or(stop)
}

/// mail-builder's `quoted_printable_encode(text, out, true)`, a run at a
/// time: `=`, bytes of 127 or more and a space or tab before a line break
/// (or at the end) become `=XX`; lines are broken softly (`=` CRLF) before
/// a byte that would pass 76; LF goes out as CRLF unless the byte copied
/// last was a CR. Like mail-builder, a CR is an ordinary byte here.
fn qp_body(text: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut col = 0usize;
    // The last byte copied as it is (what decides how LF goes out).
    let mut prev = 0u8;
    let plain = |out: &mut Vec<u8>, mut bytes: &[u8], col: &mut usize, prev: &mut u8| {
        while let Some(&last) = bytes.last() {
            if *col >= QP_LINE {
                out.extend_from_slice(b"=\r\n");
                *col = 0;
            }
            let n = (QP_LINE - *col).min(bytes.len());
            out.extend_from_slice(&bytes[..n]);
            *col += n;
            bytes = &bytes[n..];
            *prev = last;
        }
    };
    let encoded = |out: &mut Vec<u8>, b: u8, col: &mut usize| {
        if *col + 3 > QP_LINE {
            out.extend_from_slice(b"=\r\n");
            *col = 0;
        }
        out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        *col += 3;
    };
    let mut i = 0;
    while i < text.len() {
        let j = run_end(text, i);
        // Inside the run only its last space or tab can need encoding:
        // the one right before the LF that ends it (or before that LF's
        // CR), or the text's last byte.
        let ws = [j.checked_sub(1), j.checked_sub(2)]
            .into_iter()
            .flatten()
            .find(|&p| p >= i && ws_before_break(text, p));
        match ws {
            Some(p) => {
                plain(out, &text[i..p], &mut col, &mut prev);
                encoded(out, text[p], &mut col);
                plain(out, &text[p + 1..j], &mut col, &mut prev);
            }
            None => plain(out, &text[i..j], &mut col, &mut prev),
        }
        let Some(&b) = text.get(j) else {
            break;
        };
        if b == b'\n' {
            out.extend_from_slice(if prev == b'\r' { b"\n" } else { b"\r\n" });
            col = 0;
        } else {
            encoded(out, b, &mut col);
        }
        i = j + 1;
    }
}

/// The transfer encoding and encoded body of a CRLF-normalised text part.
pub(super) fn encode_text_body(text: String) -> (&'static str, String) {
    let input = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    let cte = match choose(input) {
        // As mail-builder writes it: the text is CRLF-normalised already.
        Encoding::SevenBit => return ("7bit", text),
        Encoding::QuotedPrintable => {
            qp_body(input, &mut out);
            "quoted-printable"
        }
        Encoding::Base64 => {
            mail_builder::encoders::base64::base64_encode_mime(input, &mut out, false)
                .expect("writes to a Vec");
            "base64"
        }
    };
    let out = String::from_utf8(out).expect("base64 and quoted-printable are ASCII");
    (cte, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::transfer::normalize_newlines;
    use crate::compose::transfer::tests::text;
    use mail_builder::encoders::{encode, quoted_printable};
    use proptest::prelude::*;

    /// What mail-builder writes for a text part when it chooses the
    /// encoding itself.
    fn as_mail_builder_writes(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        mail_builder::mime::MimePart::new(
            "text/plain",
            mail_builder::mime::BodyPart::Text(text.to_string().into()),
        )
        .write_part(&mut out)
        .unwrap();
        out
    }

    fn as_we_write(text: &str) -> Vec<u8> {
        let (cte, body) = encode_text_body(text.to_string());
        let mut out = Vec::new();
        mail_builder::mime::MimePart::new(
            "text/plain",
            mail_builder::mime::BodyPart::Text(body.into()),
        )
        .transfer_encoding(cte)
        .write_part(&mut out)
        .unwrap();
        out
    }

    fn theirs(text: &[u8]) -> Encoding {
        match encode::get_encoding_type(text, false, true) {
            encode::EncodingType::None => Encoding::SevenBit,
            encode::EncodingType::QuotedPrintable(_) => Encoding::QuotedPrintable,
            encode::EncodingType::Base64 => Encoding::Base64,
        }
    }

    proptest! {
        /// Byte for byte what mail-builder's own choice writes, headers
        /// included, for every kind of text (normalised, as parts are).
        #[test]
        fn text_parts_are_written_as_mail_builder_would(t in text()) {
            let t = normalize_newlines(&t);
            prop_assert_eq!(as_we_write(&t), as_mail_builder_writes(&t));
        }

        /// The choice and the encoder agree with mail-builder's on any
        /// text, normalised or not (lone CR and LF included).
        #[test]
        fn choice_and_encoder_agree_on_any_text(t in text()) {
            let t = t.as_bytes();
            prop_assert_eq!(choose(t), theirs(t));
            let mut want = Vec::new();
            quoted_printable::quoted_printable_encode(t, &mut want, true).unwrap();
            let mut got = Vec::new();
            qp_body(t, &mut got);
            prop_assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
        }
    }

    #[test]
    fn the_fast_path_takes_short_ascii_lines_and_nothing_else() {
        let enc = |t: &str| encode_text_body(t.to_string()).0;
        let line75 = "y".repeat(75);
        assert_eq!(enc(&format!("{line75}\r\nok\r\n")), "7bit");
        assert_eq!(enc(&format!("{line75}z\r\n")), "quoted-printable");
        assert_eq!(enc("trailing \r\nspace"), "quoted-printable");
        assert_eq!(enc("ends in a tab\t"), "quoted-printable");
        let long = "Viele Grüße aus Köln, und bis bald: wir sehen uns am Montag.\r\n";
        assert_eq!(enc(long), "quoted-printable");
        // Short and mostly non-ASCII: base64 is the shorter.
        assert_eq!(enc("Grüße\r\n"), "base64");
        assert_eq!(enc("ééééééééé"), "base64");
        assert_eq!(enc(""), "7bit");
    }

    #[test]
    fn quoted_printable_of_a_long_prose_line_matches() {
        let line = "The quick brown fox = jumps over the lazy dog, again and again. ".repeat(9);
        let t = format!("{line}\r\n{line} \r\nÄnd the end\t");
        let mut want = Vec::new();
        quoted_printable::quoted_printable_encode(t.as_bytes(), &mut want, true).unwrap();
        let mut got = Vec::new();
        qp_body(t.as_bytes(), &mut got);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }
}
