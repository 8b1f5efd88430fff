//! Helpers shared by the compose tests: requests from JSON, composing,
//! parsing the result back (with mail-parser, and with Python's `email`,
//! an independent strict parser, through tests/mime_check.py), and looking
//! at its header section.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::address::{display_name, parse_mailbox};
use super::request::AddressInput;
use super::{Composed, Limits, SendRequest, compose};
use mail_parser::{HeaderForm, Message, MessageParser, MimeHeaders, PartType};

pub(super) fn req(value: Value) -> SendRequest {
    serde_json::from_value(value).expect("request JSON should deserialize")
}

/// Composes `value`, which must succeed, and checks that Python reads the
/// message without a defect and as asked ([`assert_python_reads`]): so
/// every message a test builds is also a fixture of that check.
pub(super) fn build(value: Value) -> Composed {
    let composed = compose(&req(value.clone()), "mail.example.net", &Limits::default())
        .expect("request should compose");
    assert_python_reads(&value, &composed);
    composed
}

/// The test Python and Python's MIME check, shared with tests/it.
#[path = "../../tests/support/python.rs"]
mod python;

/// What Python's `email` package (`policy=default`) reads in each message
/// (tests/mime_check.py): defects, subject, display names, parts.
pub(super) fn python_reports(messages: &[&[u8]]) -> Vec<Value> {
    let input: Vec<String> = messages.iter().map(|m| b64(m)).collect();
    python::mime_reports(&input)
}

/// Whether Python reads `name` back exactly from the phrase it is written
/// as. Two deviations of Python's phrase parser from RFC 2047 §6.2 and
/// RFC 5322 §3.2.2 make that impossible for some names (README, "Sending
/// mail"): it joins adjacent encoded words with a space, and it turns any
/// run of whitespace inside an encoded word into one space.
pub(super) fn python_reads_phrase_exactly(name: &str) -> bool {
    let pieces = display_name(name);
    let encoded: Vec<Option<String>> = pieces
        .iter()
        .map(|piece| {
            let b64 = piece
                .trim_start()
                .strip_prefix("=?utf-8?B?")?
                .strip_suffix("?=")?;
            String::from_utf8(STANDARD.decode(b64).ok()?).ok()
        })
        .collect();
    let adjacent = encoded.windows(2).any(|w| w[0].is_some() && w[1].is_some());
    let odd_space = encoded
        .iter()
        .flatten()
        .any(|text| text.contains("  ") || text.contains('\t'));
    !adjacent && !odd_space
}

/// Python reads `composed` without any defect, and reads back what
/// `request` asked for: the subject, every display name, every attachment
/// name (Content-Disposition `filename` and the legacy Content-Type
/// `name`); `message/*` attachments are not encoded.
pub(super) fn assert_python_reads(request: &Value, composed: &Composed) {
    if request.get("raw").is_some() {
        // A raw message is the client's, passed through as it is.
        return;
    }
    assert_encoded_words_short(&composed.message);
    let report = &python_reports(&[&composed.message])[0];
    let wire = String::from_utf8_lossy(&composed.message);
    // Python notes a UTF-8 local part (RFC 6532, which the relay sends
    // with SMTPUTF8) as a defect of its own; it is not one of the message.
    let utf8_addresses =
        !composed.mail_from.is_ascii() || composed.rcpt_to.iter().any(|r| !r.is_ascii());
    let utf8_address = |d: &&Value| {
        utf8_addresses
            && d.as_str()
                .is_some_and(|d| d.contains("NonASCIILocalPartDefect"))
    };
    let defects: Vec<&Value> = report["defects"]
        .as_array()
        .expect("defects")
        .iter()
        .filter(|d| !utf8_address(d))
        .collect();
    assert!(defects.is_empty(), "Python reports {defects:?} in:\n{wire}");
    if let Some(subject) = request.get("subject") {
        assert_eq!(&report["subject"], subject, "subject of:\n{wire}");
    }
    for (key, header) in [
        ("from", "from"),
        ("to", "to"),
        ("cc", "cc"),
        ("reply_to", "reply-to"),
    ] {
        let inputs = match request.get(key) {
            None => continue,
            Some(Value::Array(list)) => list.clone(),
            Some(one) => vec![one.clone()],
        };
        if inputs.is_empty() {
            continue;
        }
        let got = report["addresses"][header]
            .as_array()
            .expect(header)
            .clone();
        assert_eq!(got.len(), inputs.len(), "{header} of:\n{wire}");
        for (input, got) in inputs.iter().zip(got) {
            let input: AddressInput = serde_json::from_value(input.clone()).expect("address");
            let want = parse_mailbox(&input, key)
                .expect("valid")
                .name
                .unwrap_or_default();
            let got = got.as_str().expect("a display name");
            if python_reads_phrase_exactly(&want) {
                assert_eq!(got, want, "{header} display name in:\n{wire}");
            } else {
                let strip = |s: &str| s.split_whitespace().collect::<String>();
                assert_eq!(
                    strip(got),
                    strip(&want),
                    "{header} display name in:\n{wire}"
                );
            }
        }
    }
    let parts = report["parts"].as_array().expect("parts");
    for attachment in request["attachments"].as_array().into_iter().flatten() {
        let filename = &attachment["filename"];
        let part = parts
            .iter()
            .find(|part| &part["filename"] == filename)
            .unwrap_or_else(|| panic!("no part named {filename} in {parts:?}:\n{wire}"));
        let content_type = attachment["content_type"].as_str().unwrap_or("");
        if !content_type.to_ascii_lowercase().contains("name=") {
            assert_eq!(&part["name"], filename, "Content-Type name in:\n{wire}");
        }
        if part["content_type"]
            .as_str()
            .is_some_and(|ct| ct.starts_with("message/"))
        {
            assert!(
                matches!(part["cte"].as_str(), Some("7bit" | "8bit")),
                "{part:?}"
            );
        }
    }
}

pub(super) fn parse(composed: &Composed) -> Message<'_> {
    MessageParser::default()
        .parse(&composed.message)
        .expect("output should parse")
}

pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Content types of the MIME tree, e.g. `multipart/mixed(text/plain,image/png)`.
pub(super) fn tree(message: &Message<'_>, id: u32) -> String {
    let part = &message.parts[id as usize];
    let ct = part
        .content_type()
        .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")))
        .unwrap_or_default();
    match &part.body {
        PartType::Multipart(children) => format!(
            "{ct}({})",
            children
                .iter()
                .map(|child| tree(message, *child))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => ct,
    }
}

/// An extra header's value, RFC 2047 decoded.
pub(super) fn header_text(message: &Message<'_>, name: &str) -> Option<String> {
    message
        .header_as(name.to_string(), HeaderForm::Text)
        .into_iter()
        .next()
        .and_then(|value| value.into_text())
        .map(|text| text.into_owned())
}

pub(super) fn header_block(bytes: &[u8]) -> String {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header/body separator");
    String::from_utf8(bytes[..end + 2].to_vec()).expect("headers are UTF-8")
}

/// Top-level header names, in order.
pub(super) fn header_names(bytes: &[u8]) -> Vec<String> {
    header_block(bytes)
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.starts_with([' ', '\t']))
        .map(|line| line.split(':').next().unwrap_or_default().to_string())
        .collect()
}

/// CRLF only, and no line above 998 octets.
pub(super) fn assert_wire_clean(bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(line.len() <= 998, "line of {} octets", line.len());
    }
}

/// Every RFC 2047 encoded word in the header section is at most 75
/// characters (RFC 2047 §2).
pub(super) fn assert_encoded_words_short(bytes: &[u8]) {
    let head = header_block(bytes);
    let mut rest = head.as_str();
    while let Some(start) = rest.find("=?") {
        let word = &rest[start..];
        // charset ? encoding ? text ?=
        let end = word
            .match_indices("?=")
            .map(|(i, _)| i + 2)
            .find(|&i| word[..i].matches('?').count() >= 4)
            .unwrap_or(word.len());
        assert!(
            end <= 75,
            "encoded word of {end} characters: {}",
            &word[..end]
        );
        rest = &word[end..];
    }
}

pub(super) fn err(code: &'static str, field: &str) -> (&'static str, String) {
    (code, field.to_string())
}

pub(super) fn base() -> Value {
    json!({"from": "a@example.com", "to": "b@example.com", "text": "hi"})
}

pub(super) fn with(mut value: Value, key: &str, field: Value) -> Value {
    value[key] = field;
    value
}

pub(super) fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().expect("object").remove(key);
    value
}

pub(super) fn raw_base() -> Value {
    json!({
        "raw": b64(b"Subject: x\r\n\r\nbody\r\n"),
        "envelope": {"mail_from": "a@example.com", "rcpt_to": ["b@example.com"]}
    })
}
