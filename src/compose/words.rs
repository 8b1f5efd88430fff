//! The forms caller text takes in a header field: as it is, as an RFC 5322
//! quoted-string, or as RFC 2047 encoded words, and when each one is safe.
//! Every writer of caller text into a header (subjects, display names,
//! attachment parameters) asks `could_be_encoded_word` first.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Whether a decoder could read part of `text` as an RFC 2047 encoded
/// word. Every encoded word starts with `=?`, and decoders find them
/// anywhere: inside a word (`pre=?…?=post`), a quoted string, an address
/// or a parameter value (Python's `email` does all of these). So text
/// without `=?` is the only text that is safe to write as it is.
pub(super) fn could_be_encoded_word(text: &str) -> bool {
    text.contains("=?")
}

/// `=?utf-8?B?…?=` words of at most 45 input bytes (75 characters), split
/// on character boundaries, separated by spaces (which decoders drop
/// between adjacent encoded words).
pub(super) fn encoded_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + 45).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!(
            "=?utf-8?B?{}?=",
            STANDARD.encode(&text.as_bytes()[start..end])
        ));
        start = end;
    }
    words.join(" ")
}

/// `text` as an RFC 5322 / RFC 2045 quoted-string, `"` and `\\` escaped.
pub(super) fn quoted_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}
