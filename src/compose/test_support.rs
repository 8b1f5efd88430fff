//! Helpers shared by the compose tests: requests from JSON, composing,
//! parsing the result back, and looking at its header section.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Composed, Limits, SendRequest, compose};
use mail_parser::{HeaderForm, Message, MessageParser, MimeHeaders, PartType};

pub(super) fn req(value: Value) -> SendRequest {
    serde_json::from_value(value).expect("request JSON should deserialize")
}

pub(super) fn build(value: Value) -> Composed {
    compose(&req(value), "mail.example.net", &Limits::default()).expect("request should compose")
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
