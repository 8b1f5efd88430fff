//! Bytes → text: which charset a piece of a message is decoded with, and
//! whether the result is exact or a guess.
//!
//! Owns the charset *policy* only; the decoders themselves are mail-parser's
//! (single-byte tables, and encoding_rs for the multi-byte ones through its
//! `full_encoding` feature). The rules, documented in README ("Lossy
//! decoding"):
//!
//! - Text that is valid UTF-8 is taken as UTF-8 when the part declares
//!   UTF-8, US-ASCII or nothing (RFC 6532 mail, and the many mailers that
//!   send UTF-8 without saying so).
//! - Bytes that are not valid UTF-8 where UTF-8 was declared or implied are
//!   decoded as windows-1252, byte run by byte run, keeping the valid UTF-8
//!   around them: mislabelled Latin-1 is by far the most common cause, and
//!   windows-1252 maps every byte to a character, so nothing becomes U+FFFD.
//! - A declared legacy charset is decoded with its table.
//! - Every guess, and every U+FFFD a decoder had to insert, is reported to
//!   the caller, which marks the payload lossy and attaches `raw`.

use mail_parser::decoders::charsets::DecoderFnc;
use mail_parser::decoders::charsets::map::charset_decoder;

/// What 8-bit bytes that are not UTF-8 are decoded as when nothing better
/// is known (the WHATWG reading of Latin-1 and US-ASCII labels too).
pub(crate) const FALLBACK: &str = "windows-1252";

/// Labels mail-parser has no decoder for because they need none.
const UTF8_LABELS: &[&str] = &[
    "utf-8",
    "utf8",
    "unicode11utf8",
    "unicode20utf8",
    "x-unicode20utf8",
    "unicode-1-1-utf-8",
];

/// mail-parser decodes these as windows-1252 (the WHATWG choice for web
/// pages). In mail, 8-bit bytes under an ASCII label are far more often
/// undeclared UTF-8, so they get the UTF-8-first rule instead.
const ASCII_LABELS: &[&str] = &[
    "us-ascii",
    "ascii",
    "ansi_x3.4-1968",
    "ansi_x3.4-1986",
    "iso646-us",
    "iso-ir-6",
    "iso_646.irv:1991",
    "csascii",
    "cp367",
    "ibm367",
    "us",
];

/// Charsets that are no use for header bytes: they are not ASCII-compatible
/// or have no 8-bit form, so a header cannot be in them.
const NOT_FOR_HEADERS: &[&str] = &["utf-16", "utf-32", "ucs-2", "ucs-4", "unicode", "utf-7"];

enum Charset {
    /// UTF-8, US-ASCII or nothing declared.
    Utf8,
    Known(DecoderFnc),
    Unknown,
}

fn classify(label: Option<&str>) -> Charset {
    let Some(label) = label.map(str::trim).filter(|l| !l.is_empty()) else {
        return Charset::Utf8;
    };
    let is = |list: &[&str]| list.iter().any(|l| l.eq_ignore_ascii_case(label));
    if is(UTF8_LABELS) || is(ASCII_LABELS) {
        return Charset::Utf8;
    }
    match charset_decoder(label.as_bytes()) {
        Some(decoder) => Charset::Known(decoder),
        None => Charset::Unknown,
    }
}

/// Decoded text, and `Some(charset actually used)` when the text is not an
/// exact decoding of the bytes in the charset they declared.
#[derive(Debug, PartialEq)]
pub(crate) struct Decoded {
    pub text: String,
    pub guessed: Option<String>,
}

/// Decodes a body part's (transfer-decoded) bytes under its declared charset.
pub(crate) fn decode_body(bytes: &[u8], declared: Option<&str>) -> Decoded {
    match classify(declared) {
        Charset::Utf8 => match std::str::from_utf8(bytes) {
            Ok(text) => exact(text.to_owned()),
            Err(_) => guessed(utf8_or_cp1252(bytes), FALLBACK),
        },
        Charset::Known(decoder) => {
            let text = decoder(bytes);
            // Tables map undefined bytes, and encoding_rs maps malformed
            // sequences, to U+FFFD; no ASCII-compatible input produces it
            // otherwise.
            if text.contains(char::REPLACEMENT_CHARACTER) {
                let label = declared.unwrap_or_default().trim().to_ascii_lowercase();
                Decoded {
                    text,
                    guessed: Some(label),
                }
            } else {
                exact(text)
            }
        }
        // Unknown label: ASCII reads the same in every charset we could
        // mean; anything else is a guess.
        Charset::Unknown if bytes.is_ascii() => exact(String::from_utf8_lossy(bytes).into_owned()),
        Charset::Unknown => match std::str::from_utf8(bytes) {
            Ok(text) => guessed(text.to_owned(), "utf-8"),
            Err(_) => guessed(utf8_or_cp1252(bytes), FALLBACK),
        },
    }
}

fn exact(text: String) -> Decoded {
    Decoded {
        text,
        guessed: None,
    }
}

fn guessed(text: String, charset: &str) -> Decoded {
    Decoded {
        text,
        guessed: Some(charset.to_owned()),
    }
}

/// The charset a message "implies" for raw 8-bit bytes in its headers,
/// which never have a declared charset of their own (RFC 2047 words have).
#[derive(Clone, Copy)]
pub(crate) struct HeaderHint<'a> {
    label: &'a str,
    decoder: DecoderFnc,
}

/// A declared body charset is a usable hint for header bytes only when it
/// is a legacy 8-bit charset: a UTF-8 or ASCII label says nothing about
/// bytes that are not UTF-8.
pub(crate) fn header_hint(declared: &str) -> Option<HeaderHint<'_>> {
    let label = declared.trim();
    let lower = label.to_ascii_lowercase();
    if NOT_FOR_HEADERS.iter().any(|p| lower.starts_with(p)) {
        return None;
    }
    match classify(Some(label)) {
        Charset::Known(decoder) => Some(HeaderHint { label, decoder }),
        Charset::Utf8 | Charset::Unknown => None,
    }
}

/// Decodes one header field (name, value and folds) that is not valid
/// UTF-8; returns the text and the charset used.
pub(crate) fn decode_header_field(bytes: &[u8], hint: Option<HeaderHint<'_>>) -> (String, String) {
    match hint {
        Some(h) => ((h.decoder)(bytes), h.label.to_ascii_lowercase()),
        None => (utf8_or_cp1252(bytes), FALLBACK.to_owned()),
    }
}

/// Valid UTF-8 sequences as UTF-8, every other byte as windows-1252.
pub(crate) fn utf8_or_cp1252(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // Cannot fail: from_utf8 just said these bytes are valid.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len());
                out.extend(after[..bad].iter().map(|&b| cp1252(b)));
                rest = &after[bad..];
            }
        }
    }
}

/// windows-1252 as WHATWG defines it: the five holes in 0x80..0x9F map to
/// the C1 controls, so every byte survives as a distinct character.
fn cp1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    match byte {
        0x80..=0x9f => HIGH[usize::from(byte - 0x80)],
        // ASCII and 0xA0..=0xFF are Latin-1, i.e. the code point itself.
        _ => char::from(byte),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &[u8], declared: Option<&str>) -> (String, Option<String>) {
        let d = decode_body(bytes, declared);
        (d.text, d.guessed)
    }

    /// bytes, declared charset, expected text, expected guess.
    type Case = (
        &'static [u8],
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn body_charset_policy() {
        let cases: &[Case] = &[
            // UTF-8 where declared, implied or undeclared: exact.
            (b"caf\xc3\xa9", Some("utf-8"), "café", None),
            (b"caf\xc3\xa9", Some("UTF8"), "café", None),
            (b"caf\xc3\xa9", None, "café", None),
            (b"caf\xc3\xa9", Some("us-ascii"), "café", None),
            (b"plain", Some("us-ascii"), "plain", None),
            // Not UTF-8 although declared or implied: windows-1252, flagged.
            (b"caf\xe9", Some("utf-8"), "café", Some("windows-1252")),
            (b"caf\xe9", None, "café", Some("windows-1252")),
            (b"caf\xe9", Some("us-ascii"), "café", Some("windows-1252")),
            // Mixed: the valid UTF-8 is kept.
            (
                b"\xc3\xa9t\xe9 \x80",
                Some("utf-8"),
                "été €",
                Some("windows-1252"),
            ),
            // Declared legacy charsets: exact.
            (b"caf\xe9", Some("iso-8859-1"), "café", None),
            (
                b"\x93hi\x94",
                Some("windows-1252"),
                "\u{201c}hi\u{201d}",
                None,
            ),
            (
                b"\xbf\xe0\xd8\xd2\xd5\xe2",
                Some("iso-8859-5"),
                "Привет",
                None,
            ),
            (b"\x83n\x83\x8d\x81[", Some("shift_jis"), "ハロー", None),
            (b"\x1b$B%O%m!<\x1b(B", Some("ISO-2022-JP"), "ハロー", None),
            // A byte the declared table has no character for.
            (
                b"a\xa5b",
                Some("iso-8859-3"),
                "a\u{fffd}b",
                Some("iso-8859-3"),
            ),
            // Unknown label: ASCII is exact, the rest a guess.
            (b"hello", Some("x-klingon"), "hello", None),
            (b"caf\xc3\xa9", Some("x-klingon"), "café", Some("utf-8")),
            (b"caf\xe9", Some("x-klingon"), "café", Some("windows-1252")),
        ];
        for &(bytes, declared, text, guess) in cases {
            assert_eq!(
                body(bytes, declared),
                (text.to_owned(), guess.map(str::to_owned)),
                "{bytes:?} as {declared:?}"
            );
        }
    }

    #[test]
    fn fallback_maps_every_byte_to_a_distinct_character() {
        let all: Vec<u8> = (0x80..=0xff).collect();
        let text = utf8_or_cp1252(&all);
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(chars.len(), 128);
        assert!(!text.contains(char::REPLACEMENT_CHARACTER));
        let mut unique = chars.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 128);
        assert_eq!(chars[0], '€');
        assert_eq!(chars[0xe9 - 0x80], 'é');
    }

    #[test]
    fn truncated_utf8_at_the_end_is_not_lost() {
        assert_eq!(utf8_or_cp1252(b"ok \xe2\x82"), "ok \u{e2}\u{201a}");
    }

    #[test]
    fn header_hints() {
        let decode =
            |bytes: &[u8], declared: &str| decode_header_field(bytes, header_hint(declared));
        assert_eq!(
            decode(b"Subject: Gr\xfc\xdfe", "ISO-8859-1"),
            ("Subject: Grüße".to_owned(), "iso-8859-1".to_owned())
        );
        assert_eq!(
            decode(b"Subject: \xcf\xf0\xe8\xe2\xe5\xf2", "windows-1251"),
            ("Subject: Привет".to_owned(), "windows-1251".to_owned())
        );
        // UTF-8, ASCII, UTF-16 and unknown labels imply nothing: fallback.
        for declared in ["utf-8", "us-ascii", "utf-16le", "x-klingon", ""] {
            assert_eq!(
                decode(b"Subject: caf\xe9", declared),
                ("Subject: café".to_owned(), "windows-1252".to_owned()),
                "{declared}"
            );
        }
    }
}
