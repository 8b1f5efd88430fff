//! The header section's gatekeeping: the one check for header injection
//! ([`check_header_text`], applied to every caller string bound for a
//! header or the envelope), the rules for the extra `headers` a request
//! may add (names, forbidden and structured fields), and the final
//! re-parse of the generated header section (`header_section_is_sound`).

use std::collections::BTreeMap;

use super::error::{FieldError, escape_controls};
use super::limits::{MAX_HEADER_VALUE_LEN, check_len};
use super::words::could_be_encoded_word;

/// Longest accepted extra header name. A name is never folded, so it sets
/// how long the first line of its field may get; 64 keeps that line short
/// (mail-builder, which wrote these fields once, even folded the value
/// onto a line of its own without whitespace after a name of 74 octets,
/// which would have let the value start a header field of its own).
pub const MAX_HEADER_NAME_LEN: usize = 64;

/// Extra header names (compared case-insensitively) that would override the
/// structure this module controls. Every `Content-*` name is refused too.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "sender",
    "return-path",
    "received",
];

/// Refuses CR, LF and every other control character except TAB in a value
/// that will be written into a header. This is the single gate for header
/// injection, so it is applied to raw input before any parsing.
pub fn check_header_text(value: &str, field: &str) -> Result<(), FieldError> {
    if value.contains(['\r', '\n']) {
        return Err(FieldError::new(
            "header_injection",
            field,
            "must not contain CR or LF",
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(FieldError::new(
            "header_injection",
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub(super) fn validate_headers(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(&str, &str)>, FieldError> {
    headers
        .iter()
        .map(|(name, value)| {
            let field = format!("headers.{}", escape_controls(name));
            check_header_text(name, &field)?;
            if name.is_empty()
                || name.len() > MAX_HEADER_NAME_LEN
                || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
            {
                return Err(FieldError::new(
                    "invalid_header_name",
                    field,
                    format!(
                        "header names are 1 to {MAX_HEADER_NAME_LEN} printable ASCII characters without ':'"
                    ),
                ));
            }
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("content-") {
                return Err(FieldError::new(
                    "forbidden_header",
                    field,
                    format!("`{name}` is set from the request fields and cannot be overridden"),
                ));
            }
            check_header_text(value, &field)?;
            check_len(&field, value.len(), MAX_HEADER_VALUE_LEN, "a header value")?;
            if is_structured_header(&lower) && could_be_encoded_word(value) {
                return Err(FieldError::new(
                    "encoded_word",
                    field,
                    format!(
                        "`{name}` holds message ids, addresses or URLs, which cannot be RFC 2047 encoded; its value must not contain `=?`"
                    ),
                ));
            }
            Ok((name.as_str(), value.as_str()))
        })
        .collect()
}

/// Extra headers whose values are message ids, addresses or URLs
/// (RFC 5322, 2369, 2919, 3798, 5064, 8058): an encoded word there is not
/// allowed and would change the value, so `=?` in them is refused rather
/// than encoded. Every other extra header is treated as unstructured.
fn is_structured_header(lower_name: &str) -> bool {
    matches!(
        lower_name,
        "in-reply-to"
            | "references"
            | "disposition-notification-to"
            | "return-receipt-to"
            | "archived-at"
    ) || lower_name.starts_with("list-")
        || lower_name.starts_with("resent-")
}

/// Re-parses the generated header section: every line must be CRLF
/// terminated, continuation lines must follow a field, and the fields must
/// be exactly `expected` followed by MIME-Version and the root part's
/// Content-Type / -Transfer-Encoding (written by mail-builder).
pub(super) fn header_section_is_sound(message: &[u8], expected: &[String]) -> bool {
    let Some(end) = message.windows(4).position(|window| window == b"\r\n\r\n") else {
        return false;
    };
    let mut names: Vec<&[u8]> = Vec::new();
    for line in message[..end + 2].split_inclusive(|&b| b == b'\n') {
        let Some(content) = line.strip_suffix(b"\r\n") else {
            return false;
        };
        if content.contains(&b'\r') || content.contains(&b'\n') {
            return false;
        }
        if matches!(content.first(), Some(b' ' | b'\t')) {
            if names.is_empty() {
                return false;
            }
            continue;
        }
        let Some(colon) = content.iter().position(|&b| b == b':') else {
            return false;
        };
        names.push(&content[..colon]);
    }
    if names.len() < expected.len()
        || !names
            .iter()
            .zip(expected)
            .all(|(name, want)| *name == want.as_bytes())
    {
        return false;
    }
    let trailer = &names[expected.len()..];
    let allowed: [&[u8]; 3] = [
        b"MIME-Version",
        b"Content-Type",
        b"Content-Transfer-Encoding",
    ];
    trailer.len() <= allowed.len()
        && trailer.iter().all(|name| allowed.contains(name))
        && trailer.contains(&b"Content-Type".as_slice())
        && trailer
            .iter()
            .enumerate()
            .all(|(i, name)| !trailer[..i].contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_header_table() {
        for (name, structured) in [
            ("references", true),
            ("in-reply-to", true),
            ("list-unsubscribe", true),
            ("list-id", true),
            ("resent-from", true),
            ("archived-at", true),
            ("disposition-notification-to", true),
            ("x-mailer", false),
            ("comments", false),
            ("keywords", false),
            ("x-list-id", false),
        ] {
            assert_eq!(is_structured_header(name), structured, "{name}");
        }
    }

    #[test]
    fn header_check_rejects_unexpected_fields() {
        let expected = vec!["From".to_string()];
        let ok = b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nx";
        assert!(header_section_is_sound(ok, &expected));
        for bad in [
            &b"From: a@b\r\nBcc: x@y\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nx"[..],
            b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nBcc: x\r\n\r\nx",
            b"From: a@b\nX: y\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nx",
            b"From: a@b\r\nno colon\r\nContent-Type: text/plain\r\n\r\nx",
            b" folded first\r\nFrom: a@b\r\nContent-Type: text/plain\r\n\r\nx",
            b"From: a@b\r\nContent-Type: a\r\nContent-Type: b\r\n\r\nx",
            b"From: a@b\r\nMIME-Version: 1.0\r\n\r\nx",
            b"From: a@b",
        ] {
            assert!(
                !header_section_is_sound(bad, &expected),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
