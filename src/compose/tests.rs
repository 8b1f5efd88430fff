//! End-to-end tests of [`compose`](super::compose): requests in, messages
//! parsed back out. Tests of one step live with that step's module.

use mail_parser::MimeHeaders;
use serde_json::{Value, json};

use super::address::MAX_DISPLAY_NAME_LEN;
use super::attachment::{MAX_CONTENT_TYPE_LEN, MAX_FILENAME_LEN};
use super::headers::{FORBIDDEN_HEADERS, MAX_HEADER_NAME_LEN};
use super::limits::{MAX_ATTACHMENTS, MAX_HEADER_VALUE_LEN, MAX_HEADERS};
use super::test_support::*;
use super::{FieldError, Limits, compose};

#[test]
fn validation_table() {
    let png = b64(b"\x89PNG");
    let cases: Vec<(&str, Value, (&'static str, String))> = vec![
        (
            "missing from",
            without(base(), "from"),
            err("missing_field", "from"),
        ),
        (
            "no recipients at all",
            without(base(), "to"),
            err("no_recipients", "to"),
        ),
        (
            "only empty recipient lists",
            with(with(base(), "to", json!([])), "bcc", json!([])),
            err("no_recipients", "to"),
        ),
        (
            "no body",
            without(base(), "text"),
            err("missing_body", "text"),
        ),
        (
            "second to is invalid",
            with(base(), "to", json!(["ok@example.com", "not-an-address"])),
            err("invalid_address", "to[1]"),
        ),
        (
            "space in address",
            with(base(), "to", json!(["a b@example.com"])),
            err("invalid_address", "to[0]"),
        ),
        (
            "unclosed angle bracket",
            with(base(), "to", json!("Name <b@example.com")),
            err("invalid_address", "to"),
        ),
        (
            "empty domain label",
            with(base(), "cc", json!("b@example..com")),
            err("invalid_address", "cc"),
        ),
        (
            "trailing dot in domain",
            with(base(), "cc", json!(["b@example.com."])),
            err("invalid_address", "cc[0]"),
        ),
        (
            "empty address",
            with(base(), "bcc", json!("")),
            err("invalid_address", "bcc"),
        ),
        (
            "empty angle address",
            with(base(), "bcc", json!("Name <>")),
            err("invalid_address", "bcc"),
        ),
        (
            "no at sign",
            with(base(), "from", json!("example.com")),
            err("invalid_address", "from"),
        ),
        (
            "empty local part",
            with(base(), "from", json!("@example.com")),
            err("invalid_address", "from"),
        ),
        (
            "two addresses in one string",
            with(base(), "to", json!("a@example.com, b@example.com")),
            err("invalid_address", "to"),
        ),
        (
            "brackets in object address",
            with(
                base(),
                "cc",
                json!({"name": "B", "address": "<b@example.com>"}),
            ),
            err("invalid_address", "cc.address"),
        ),
        (
            "unicode line separator in address",
            with(base(), "to", json!(["b\u{2028}x@example.com"])),
            err("invalid_address", "to[0]"),
        ),
        (
            "invalid reply_to",
            with(base(), "reply_to", json!(["r@example.com", "r@"])),
            err("invalid_address", "reply_to[1]"),
        ),
        (
            "display name too long",
            with(
                base(),
                "from",
                json!({"name": "n".repeat(257), "address": "a@example.com"}),
            ),
            err("too_long", "from.name"),
        ),
        (
            "address too long",
            with(
                base(),
                "to",
                json!(format!("{}@{}.com", "a".repeat(60), "b.".repeat(100))),
            ),
            err("invalid_address", "to"),
        ),
        (
            "CRLF in subject",
            with(base(), "subject", json!("hi\r\nBcc: x@evil.test")),
            err("header_injection", "subject"),
        ),
        (
            "NEL (C1 control) in a display name",
            with(
                base(),
                "from",
                json!({"name": "x\u{85}Bcc: y", "address": "a@example.com"}),
            ),
            err("header_injection", "from.name"),
        ),
        (
            "NUL in subject",
            with(base(), "subject", json!("hi\u{0}there")),
            err("header_injection", "subject"),
        ),
        (
            "LF in from display name",
            with(
                base(),
                "from",
                json!("Evil\nBcc: x@evil.test <a@example.com>"),
            ),
            err("header_injection", "from"),
        ),
        (
            "CR in object display name",
            with(
                base(),
                "to",
                json!([{"name": "Evil\rX", "address": "b@example.com"}]),
            ),
            err("header_injection", "to[0].name"),
        ),
        (
            "CRLF after an address",
            with(base(), "to", json!(["b@example.com\r\nBcc: x@evil.test"])),
            err("header_injection", "to[0]"),
        ),
        (
            "LF in header value",
            with(base(), "headers", json!({"X-Foo": "a\nBcc: x@evil.test"})),
            err("header_injection", "headers.X-Foo"),
        ),
        (
            "CRLF in header name",
            with(base(), "headers", json!({"X-Foo\r\nBcc": "x@evil.test"})),
            err("header_injection", "headers.X-Foo\\r\\nBcc"),
        ),
        (
            "space in header name",
            with(base(), "headers", json!({"X Foo": "1"})),
            err("invalid_header_name", "headers.X Foo"),
        ),
        (
            "colon in header name",
            with(base(), "headers", json!({"X-Foo:": "1"})),
            err("invalid_header_name", "headers.X-Foo:"),
        ),
        (
            "non-ASCII header name",
            with(base(), "headers", json!({"X-Grüße": "1"})),
            err("invalid_header_name", "headers.X-Grüße"),
        ),
        (
            "empty header name",
            with(base(), "headers", json!({"": "1"})),
            err("invalid_header_name", "headers."),
        ),
        (
            "header name past the folding limit",
            with(
                base(),
                "headers",
                json!({format!("X-{}", "a".repeat(63)): "Bcc: x@evil.test"}),
            ),
            err(
                "invalid_header_name",
                &format!("headers.X-{}", "a".repeat(63)),
            ),
        ),
        (
            "Content-* header",
            with(
                base(),
                "headers",
                json!({"content-transfer-encoding": "8bit"}),
            ),
            err("forbidden_header", "headers.content-transfer-encoding"),
        ),
        (
            "attachment with invalid base64",
            with(
                base(),
                "attachments",
                json!([{"filename": "a.bin", "content": "@@@"}]),
            ),
            err("invalid_base64", "attachments[0].content"),
        ),
        (
            "attachment with URL-safe base64",
            with(
                base(),
                "attachments",
                json!([{"filename": "a.bin", "content": "-_-_"}]),
            ),
            err("invalid_base64", "attachments[0].content"),
        ),
        (
            "attachment with wrapped base64",
            with(
                base(),
                "attachments",
                json!([{"filename": "a.bin", "content": "YWJj\r\nZGVm"}]),
            ),
            err("invalid_base64", "attachments[0].content"),
        ),
        (
            "content type without subtype",
            with(
                base(),
                "attachments",
                json!([
                    {"filename": "a.png", "content": png},
                    {"filename": "b.png", "content_type": "png", "content": png}
                ]),
            ),
            err("invalid_content_type", "attachments[1].content_type"),
        ),
        (
            "multipart content type",
            with(
                base(),
                "attachments",
                json!([{"filename": "a", "content_type": "multipart/mixed", "content": png}]),
            ),
            err("invalid_content_type", "attachments[0].content_type"),
        ),
        (
            "content type with a broken parameter",
            with(
                base(),
                "attachments",
                json!([{"filename": "a", "content_type": "text/plain; charset", "content": png}]),
            ),
            err("invalid_content_type", "attachments[0].content_type"),
        ),
        (
            "CRLF in content type",
            with(
                base(),
                "attachments",
                json!([{"filename": "a", "content_type": "image/png\r\nX-Evil: 1", "content": png}]),
            ),
            err("header_injection", "attachments[0].content_type"),
        ),
        (
            "LF in filename",
            with(
                base(),
                "attachments",
                json!([{"filename": "a\n.png", "content": png}]),
            ),
            err("header_injection", "attachments[0].filename"),
        ),
        (
            "empty filename",
            with(
                base(),
                "attachments",
                json!([{"filename": " ", "content": png}]),
            ),
            err("invalid_filename", "attachments[0].filename"),
        ),
        (
            "filename too long",
            with(
                base(),
                "attachments",
                json!([{"filename": "é".repeat(128), "content": png}]),
            ),
            err("too_long", "attachments[0].filename"),
        ),
        (
            "CR in content_id",
            with(
                base(),
                "attachments",
                json!([{"filename": "a.png", "content": png, "content_id": "logo\r"}]),
            ),
            err("header_injection", "attachments[0].content_id"),
        ),
        (
            "space in content_id",
            with(
                base(),
                "attachments",
                json!([{"filename": "a.png", "content": png, "content_id": "lo go"}]),
            ),
            err("invalid_content_id", "attachments[0].content_id"),
        ),
        (
            "empty content_id",
            with(
                base(),
                "attachments",
                json!([{"filename": "a.png", "content": png, "content_id": "<>"}]),
            ),
            err("invalid_content_id", "attachments[0].content_id"),
        ),
        (
            "envelope without raw",
            with(
                base(),
                "envelope",
                json!({"mail_from": "a@example.com", "rcpt_to": []}),
            ),
            err("conflicting_fields", "envelope"),
        ),
        (
            "raw without envelope",
            without(raw_base(), "envelope"),
            err("missing_field", "envelope"),
        ),
        (
            "raw with from",
            with(raw_base(), "from", json!("a@example.com")),
            err("conflicting_fields", "from"),
        ),
        (
            "raw with subject and text names the first",
            with(with(raw_base(), "text", json!("t")), "subject", json!("s")),
            err("conflicting_fields", "subject"),
        ),
        (
            "raw with attachments",
            with(
                raw_base(),
                "attachments",
                json!([{"filename": "a", "content": ""}]),
            ),
            err("conflicting_fields", "attachments"),
        ),
        (
            "raw not base64",
            with(raw_base(), "raw", json!("not base64!")),
            err("invalid_base64", "raw"),
        ),
        (
            "raw empty",
            with(raw_base(), "raw", json!("")),
            err("invalid_raw", "raw"),
        ),
        (
            "envelope mail_from with CRLF",
            with(
                raw_base(),
                "envelope",
                json!({"mail_from": "a@example.com\r\nRCPT TO:<x@evil.test>", "rcpt_to": ["b@example.com"]}),
            ),
            err("header_injection", "envelope.mail_from"),
        ),
        (
            "envelope rcpt_to invalid",
            with(
                raw_base(),
                "envelope",
                json!({"mail_from": "a@example.com", "rcpt_to": ["b@example.com", "Name <c@example.com>"]}),
            ),
            err("invalid_address", "envelope.rcpt_to[1]"),
        ),
        (
            "envelope without recipients",
            with(
                raw_base(),
                "envelope",
                json!({"mail_from": "a@example.com", "rcpt_to": []}),
            ),
            err("no_recipients", "envelope.rcpt_to"),
        ),
    ];
    for (name, request, (code, field)) in cases {
        let error = compose(&req(request), "mail.example.net", &Limits::default())
            .expect_err(&format!("{name}: should be refused"));
        assert_eq!(
            (error.code, error.field.as_str()),
            (code, field.as_str()),
            "{name}"
        );
        assert!(!error.message.is_empty(), "{name}: message is empty");
    }
}

#[test]
fn every_structural_header_is_forbidden_in_any_case() {
    for name in FORBIDDEN_HEADERS.iter().copied().chain([
        "Content-Type",
        "Content-ID",
        "content-disposition",
    ]) {
        for spelling in [name.to_string(), name.to_uppercase(), name.to_lowercase()] {
            let error = compose(
                &req(with(base(), "headers", json!({ spelling.clone(): "x" }))),
                "h",
                &Limits::default(),
            )
            .expect_err(&spelling);
            assert_eq!(
                error,
                FieldError::new(
                    "forbidden_header",
                    format!("headers.{spelling}"),
                    error.message.clone()
                )
            );
        }
    }
}

/// CR, LF and CRLF are refused wherever a string can reach a header or
/// the envelope, whatever comes after them.
#[test]
fn header_injection_cannot_be_bypassed() {
    let png = b64(b"img");
    for newline in ["\r", "\n", "\r\n", "\r\r", "\n\r"] {
        let evil = format!("x{newline}Bcc: victim@evil.test");
        let evil_addr = format!("b@example.com{newline}Bcc: victim@evil.test");
        let cases: Vec<(Value, &str)> = vec![
            (with(base(), "subject", json!(evil)), "subject"),
            (
                with(base(), "from", json!(format!("{evil} <a@example.com>"))),
                "from",
            ),
            (with(base(), "from", json!(evil_addr)), "from"),
            (
                with(
                    base(),
                    "from",
                    json!({"name": evil, "address": "a@example.com"}),
                ),
                "from.name",
            ),
            (
                with(base(), "from", json!({"address": evil_addr})),
                "from.address",
            ),
            (
                with(base(), "to", json!(["ok@example.com", evil_addr])),
                "to[1]",
            ),
            (with(base(), "cc", json!(evil_addr)), "cc"),
            (
                with(
                    base(),
                    "bcc",
                    json!([{"name": evil, "address": "c@example.com"}]),
                ),
                "bcc[0].name",
            ),
            (with(base(), "reply_to", json!(evil_addr)), "reply_to"),
            (with(base(), "headers", json!({"X-A": evil})), "headers.X-A"),
            (
                with(
                    base(),
                    "attachments",
                    json!([{"filename": evil, "content": png}]),
                ),
                "attachments[0].filename",
            ),
            (
                with(
                    base(),
                    "attachments",
                    json!([{"filename": "a", "content_type": format!("image/png{newline}X: y"), "content": png}]),
                ),
                "attachments[0].content_type",
            ),
            (
                with(
                    base(),
                    "attachments",
                    json!([{"filename": "a", "content": png, "content_id": format!("id{newline}X: y")}]),
                ),
                "attachments[0].content_id",
            ),
            (
                with(
                    raw_base(),
                    "envelope",
                    json!({"mail_from": evil_addr, "rcpt_to": ["b@example.com"]}),
                ),
                "envelope.mail_from",
            ),
            (
                with(
                    raw_base(),
                    "envelope",
                    json!({"mail_from": "a@example.com", "rcpt_to": [evil_addr]}),
                ),
                "envelope.rcpt_to[0]",
            ),
        ];
        for (request, field) in cases {
            let error = compose(&req(request), "h", &Limits::default()).expect_err(field);
            assert_eq!(error.code, "header_injection", "{field} with {newline:?}");
            assert_eq!(error.field, field, "{newline:?}");
        }
        let mut headers = serde_json::Map::new();
        headers.insert(format!("X-A{newline}Bcc"), json!("v"));
        let error = compose(
            &req(with(base(), "headers", Value::Object(headers))),
            "h",
            &Limits::default(),
        )
        .expect_err("CR/LF in a header name");
        assert_eq!(error.code, "header_injection");
        assert!(error.field.starts_with("headers.X-A\\"), "{}", error.field);
    }
}

/// Encoded forms of CR/LF are not raw CR/LF: they are accepted and never
/// turn into a header of their own. An encoded-word lookalike is text
/// like any other: it is encoded, so a reader decodes it into exactly
/// what the client sent, never into the CR LF it spells. (This used to
/// assert that it was passed through verbatim; issue 9 item 6 overruled
/// that: readers decoded it into a header of its own.)
#[test]
fn encoded_newlines_are_plain_text() {
    let escaped = "a%0D%0ABcc: x@evil.test =0D=0A \\r\\n &#13;&#10;";
    let encoded_word = "=?utf-8?Q?x=0D=0ABcc:_y@evil.test?=";
    let composed = build(json!({
        "from": "a@example.com",
        "to": "b@example.com",
        "subject": escaped,
        "headers": {"X-Note": escaped, "X-Word": encoded_word},
        "text": "hi"
    }));
    assert_wire_clean(&composed.message);
    assert_eq!(
        header_names(&composed.message),
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "X-Note",
            "X-Word",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding"
        ]
    );
    assert!(!header_block(&composed.message).contains(encoded_word));
    let message = parse(&composed);
    assert_eq!(message.subject(), Some(escaped));
    assert_eq!(header_text(&message, "X-Note").as_deref(), Some(escaped));
    assert_eq!(
        header_text(&message, "X-Word").as_deref(),
        Some(encoded_word)
    );
}

/// Values that a decoder could read as encoded words come back from
/// mail-parser exactly as sent, wherever they go: subject, unstructured
/// headers, display names (both forms), filenames and content-type
/// parameters; short or long, ASCII or not, alone or inside a word.
#[test]
fn encoded_word_lookalikes_decode_to_themselves() {
    let evil = "=?utf-8?q?a=0D=0AX-Injected:_yes?=";
    let values = [
        evil.to_string(),
        format!("pre{evil}post"),
        format!("  {evil}  spaced  "),
        format!("Grüße {evil} ✓"),
        format!("{}{evil}", "long words ".repeat(30)),
        format!("{}{evil}", "x".repeat(200)),
        "=?".to_string(),
        "a=?b".to_string(),
        "\"=?x?=\" \\ \"".to_string(),
        "=?utf-8?B?QQ==?=".to_string(),
    ];
    for value in values {
        let filename: String = value.chars().take(MAX_FILENAME_LEN / 4).collect();
        let name: String = value.chars().take(MAX_DISPLAY_NAME_LEN / 4).collect();
        let composed = build(json!({
            "from": {"name": name, "address": "a@example.com"},
            "to": [format!("\"{}\" <b@example.com>", name.replace('\\', "\\\\").replace('"', "\\\""))],
            "subject": value,
            "headers": {"X-Value": value},
            "text": "t",
            "attachments": [{
                "filename": filename,
                "content_type": format!("text/plain; x-note=\"{}\"", filename.replace(['"', '\\'], "")),
                "content": b64(b"x")
            }]
        }));
        assert_wire_clean(&composed.message);
        let block = String::from_utf8_lossy(&composed.message).to_string();
        assert!(
            !block.contains(evil),
            "{value:?} written verbatim:\n{block}"
        );
        assert!(!block.contains("X-Injected"), "{value:?}:\n{block}");
        let message = parse(&composed);
        assert_eq!(message.subject(), Some(value.as_str()));
        assert_eq!(
            header_text(&message, "X-Value").as_deref(),
            Some(value.as_str())
        );
        assert_eq!(
            message
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.name()),
            Some(name.trim())
        );
        assert_eq!(
            message.to().and_then(|a| a.first()).and_then(|a| a.name()),
            Some(name.trim())
        );
        let attachment = message.attachment(0).expect("attachment");
        assert_eq!(attachment.attachment_name(), Some(filename.as_str()));
        assert_eq!(
            attachment
                .content_type()
                .and_then(|ct| ct.attribute("name")),
            Some(filename.as_str())
        );
        assert_eq!(
            attachment
                .content_type()
                .and_then(|ct| ct.attribute("x-note")),
            Some(filename.replace(['"', '\\'], "").as_str())
        );
    }
}

/// Where encoding would change what a value means, `=?` is refused.
#[test]
fn encoded_word_lookalikes_are_refused_where_they_cannot_be_encoded() {
    let evil = "=?utf-8?q?a=0D=0AX-Injected:_yes?=";
    let png = b64(b"x");
    let cases: Vec<(Value, (&str, &str))> = vec![
        (
            with(
                base(),
                "to",
                json!(format!("{}@example.com", evil.replace(':', ""))),
            ),
            ("invalid_address", "to"),
        ),
        (
            with(base(), "from", json!({"address": "a=?b@example.com"})),
            ("invalid_address", "from.address"),
        ),
        (
            with(base(), "bcc", json!(["ok@example.com", "x=?y@example.com"])),
            ("invalid_address", "bcc[1]"),
        ),
        (
            with(base(), "reply_to", json!("Name <x=?y@example.com>")),
            ("invalid_address", "reply_to"),
        ),
        (
            with(
                base(),
                "attachments",
                json!([{"filename": "a", "content": png, "content_id": "=?x?=@example.com"}]),
            ),
            ("invalid_content_id", "attachments[0].content_id"),
        ),
        (
            with(
                base(),
                "headers",
                json!({"References": format!("<{evil}@x>")}),
            ),
            ("encoded_word", "headers.References"),
        ),
        (
            with(base(), "headers", json!({"in-reply-to": "<=?@x>"})),
            ("encoded_word", "headers.in-reply-to"),
        ),
        (
            with(
                base(),
                "headers",
                json!({"List-Unsubscribe": "<https://x.example/u?a=?b>"}),
            ),
            ("encoded_word", "headers.List-Unsubscribe"),
        ),
        (
            with(base(), "headers", json!({"Resent-To": evil})),
            ("encoded_word", "headers.Resent-To"),
        ),
    ];
    for (request, (code, field)) in cases {
        let error = compose(&req(request), "h", &Limits::default()).expect_err(field);
        assert_eq!((error.code, error.field.as_str()), (code, field));
        assert!(error.message.contains("=?"), "{}", error.message);
    }
    // The same headers without `=?` go through as they are.
    let composed = build(with(
        base(),
        "headers",
        json!({"References": "<a@x> <b@x>", "List-Unsubscribe": "<https://x.example/u?a=1>"}),
    ));
    assert!(header_block(&composed.message).contains("\r\nReferences: <a@x> <b@x>\r\n"));
}

/// The refusal a case expects (code, field), or `None` for success.
type Want = Option<(&'static str, &'static str)>;

/// The counts and sizes compose itself enforces (the API's scan checks
/// the counts earlier, on the raw JSON).
#[test]
fn limits_are_enforced_on_the_parsed_request() {
    let limits = Limits {
        max_recipients: 3,
        max_message_size: 10,
    };
    let a = json!("a@example.com");
    let list = |n: usize, v: &Value| Value::Array(vec![v.clone(); n]);
    let attachment = |bytes: &[u8]| json!({"filename": "f", "content": b64(bytes)});
    let headers =
        |n: usize| Value::Object((0..n).map(|i| (format!("X-H{i}"), json!("v"))).collect());
    let raw = |bytes: &[u8], rcpts: usize| json!({"raw": b64(bytes), "envelope": {"mail_from": "a@example.com", "rcpt_to": list(rcpts, &a)}});
    let cases: Vec<(&str, Value, Want)> = vec![
        (
            "at the caps",
            with(with(base(), "cc", list(2, &a)), "reply_to", list(3, &a)),
            None,
        ),
        (
            "to + cc + bcc",
            with(with(base(), "cc", list(2, &a)), "bcc", a.clone()),
            Some(("too_many", "bcc")),
        ),
        (
            "reply_to",
            with(base(), "reply_to", list(4, &a)),
            Some(("too_many", "reply_to")),
        ),
        (
            "headers at the cap",
            with(base(), "headers", headers(MAX_HEADERS)),
            None,
        ),
        (
            "headers",
            with(base(), "headers", headers(MAX_HEADERS + 1)),
            Some(("too_many", "headers")),
        ),
        (
            "attachments",
            with(
                base(),
                "attachments",
                list(MAX_ATTACHMENTS + 1, &attachment(b"")),
            ),
            Some(("too_many", "attachments")),
        ),
        (
            "decoded attachments at the limit",
            with(
                base(),
                "attachments",
                json!([attachment(b"12345"), attachment(b"12345")]),
            ),
            None,
        ),
        (
            "decoded attachments over the limit",
            with(
                base(),
                "attachments",
                json!([attachment(b"12345"), attachment(b"123456")]),
            ),
            Some(("too_large", "attachments")),
        ),
        (
            "subject at the cap",
            with(base(), "subject", json!("s".repeat(MAX_HEADER_VALUE_LEN))),
            None,
        ),
        (
            "subject",
            with(
                base(),
                "subject",
                json!("s".repeat(MAX_HEADER_VALUE_LEN + 1)),
            ),
            Some(("too_long", "subject")),
        ),
        (
            "header value",
            with(
                base(),
                "headers",
                json!({"X-Long": "v".repeat(MAX_HEADER_VALUE_LEN + 1)}),
            ),
            Some(("too_long", "headers.X-Long")),
        ),
        (
            "content_type",
            with(
                base(),
                "attachments",
                json!([{"filename": "f", "content": "", "content_type": format!("text/plain; x=\"{}\"", "v".repeat(MAX_CONTENT_TYPE_LEN))}]),
            ),
            Some(("too_long", "attachments[0].content_type")),
        ),
        ("raw at the limits", raw(b"0123456789", 3), None),
        (
            "raw recipients",
            raw(b"x", 4),
            Some(("too_many", "envelope.rcpt_to")),
        ),
        (
            "raw size",
            raw(b"0123456789a", 1),
            Some(("too_large", "raw")),
        ),
    ];
    for (name, request, want) in cases {
        let got = compose(&req(request.clone()), "h", &limits);
        match (got, want) {
            (Ok(composed), None) => assert_python_reads(&request, &composed),
            (Err(e), Some((code, field))) => {
                assert_eq!((e.code, e.field.as_str()), (code, field), "{name}");
                assert!(!e.message.is_empty());
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn text_only_round_trip() {
    let composed = build(json!({
        "from": {"name": "Jürgen Müller", "address": "juergen@example.com"},
        "to": ["Zoë <zoe@example.org>", "<plain@example.org>", "bare@example.org"],
        "subject": "Grüße ☕",
        "text": "Hallo Zoë,\nwie geht's?\n"
    }));
    assert_wire_clean(&composed.message);
    assert_eq!(composed.mail_from, "juergen@example.com");
    assert_eq!(
        composed.rcpt_to,
        ["zoe@example.org", "plain@example.org", "bare@example.org"]
    );

    let message = parse(&composed);
    assert_eq!(tree(&message, 0), "text/plain");
    assert_eq!(message.subject(), Some("Grüße ☕"));
    let from = message.from().and_then(|from| from.first()).expect("from");
    assert_eq!(from.name(), Some("Jürgen Müller"));
    assert_eq!(from.address(), Some("juergen@example.com"));
    let to: Vec<_> = message
        .to()
        .expect("to")
        .iter()
        .map(|addr| (addr.name(), addr.address()))
        .collect();
    assert_eq!(
        to,
        [
            (Some("Zoë"), Some("zoe@example.org")),
            (None, Some("plain@example.org")),
            (None, Some("bare@example.org")),
        ]
    );
    assert_eq!(
        message.body_text(0).as_deref(),
        Some("Hallo Zoë,\r\nwie geht's?\r\n")
    );
    assert!(message.date().is_some(), "Date header parses");
    assert_eq!(message.message_id(), Some(composed.message_id.as_str()));
    assert_eq!(
        message.header_raw("MIME-Version").map(str::trim),
        Some("1.0")
    );
    assert_eq!(
        header_names(&composed.message),
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding"
        ]
    );
}

#[test]
fn message_id_is_uuid_v7_at_sender_domain() {
    let composed = build(base());
    let (id, domain) = composed.message_id.split_once('@').expect("id@domain");
    assert_eq!(domain, "example.com");
    let uuid = uuid::Uuid::parse_str(id).expect("uuid");
    assert_eq!(uuid.get_version_num(), 7);
    let raw = header_block(&composed.message);
    assert!(raw.contains(&format!("Message-ID: <{}>\r\n", composed.message_id)));
}

#[test]
fn message_id_falls_back_to_hostname_for_utf8_sender() {
    let composed = build(json!({
        "from": "jürgen@müller.example",
        "to": "zoë@exämple.org",
        "text": "hi"
    }));
    assert!(composed.message_id.ends_with("@mail.example.net"));
    assert_eq!(composed.mail_from, "jürgen@müller.example");
    assert_eq!(composed.rcpt_to, ["zoë@exämple.org"]);
    let bad_host = compose(
        &req(json!({"from": "a@ü.example", "to": "b@example.com", "text": "x"})),
        "bad host\r\n",
        &Limits::default(),
    )
    .expect("composes");
    assert!(bad_host.message_id.ends_with("@localhost"));
}

#[test]
fn bcc_is_envelope_only_and_recipients_dedupe() {
    let composed = build(json!({
        "from": "a@example.com",
        "to": ["One <One@Example.com>", "two@example.com"],
        "cc": "one@example.com",
        "bcc": ["Secret <secret@hidden.example>", "TWO@example.com"],
        "text": "hi"
    }));
    assert_eq!(
        composed.rcpt_to,
        [
            "One@Example.com",
            "two@example.com",
            "secret@hidden.example"
        ]
    );
    let names = header_names(&composed.message);
    assert!(
        !names.iter().any(|name| name.eq_ignore_ascii_case("bcc")),
        "{names:?}"
    );
    let raw = String::from_utf8_lossy(&composed.message);
    assert!(!raw.contains("secret@hidden.example"));
    assert!(!raw.contains("Secret"));
    let message = parse(&composed);
    assert!(message.bcc().is_none());
    assert_eq!(
        message
            .cc()
            .and_then(|cc| cc.first())
            .and_then(|a| a.address()),
        Some("one@example.com")
    );
}

#[test]
fn bcc_only_message_has_no_to_header() {
    let composed = build(json!({"from": "a@example.com", "bcc": "x@example.com", "text": "hi"}));
    assert_eq!(composed.rcpt_to, ["x@example.com"]);
    let names = header_names(&composed.message);
    assert!(!names.iter().any(|n| n == "To" || n == "Bcc"), "{names:?}");
}

#[test]
fn extra_headers_and_reply_to_round_trip() {
    let long_name = format!("X-{}", "n".repeat(MAX_HEADER_NAME_LEN - 2));
    let long_value = "word ".repeat(200);
    let composed = build(json!({
        "from": "\"Doe, John\" <john@example.com>",
        "to": "b@example.com",
        "reply_to": [{"name": "Support ☎", "address": "help@example.com"}, "ops@example.com"],
        "text": "hi",
        "headers": {
            "X-Campaign": "Grüße ☕ aus Köln",
            "List-Unsubscribe": "<mailto:unsub@example.com>",
            "X-Empty": "",
            "X-Tab": "a\tb",
            long_name.clone(): "Bcc: not-a-header@evil.test",
            "X-Long": long_value.trim_end()
        }
    }));
    assert_wire_clean(&composed.message);
    let message = parse(&composed);
    let text = |name: &str| header_text(&message, name);
    assert_eq!(text("X-Campaign").as_deref(), Some("Grüße ☕ aus Köln"));
    assert_eq!(
        text(&long_name).as_deref(),
        Some("Bcc: not-a-header@evil.test")
    );
    assert_eq!(text("X-Long").as_deref(), Some(long_value.trim_end()));
    assert!(
        message
            .header_raw("List-Unsubscribe")
            .is_some_and(|raw| raw.contains("<mailto:unsub@example.com>"))
    );
    let raw = header_block(&composed.message);
    assert!(
        raw.contains("X-Campaign: =?utf-8?"),
        "non-ASCII value is RFC 2047 encoded"
    );
    let names = header_names(&composed.message);
    assert!(names.contains(&long_name));
    assert!(!names.iter().any(|name| name.eq_ignore_ascii_case("bcc")));

    let from = message.from().and_then(|from| from.first()).expect("from");
    assert_eq!(from.name(), Some("Doe, John"));
    let reply_to: Vec<_> = message
        .reply_to()
        .expect("reply-to")
        .iter()
        .map(|addr| (addr.name(), addr.address()))
        .collect();
    assert_eq!(
        reply_to,
        [
            (Some("Support ☎"), Some("help@example.com")),
            (None, Some("ops@example.com"))
        ]
    );
}

#[test]
fn long_lines_stay_within_998_octets() {
    let html = format!("<p>{}</p>", "x".repeat(5000));
    let text = "ü".repeat(1500) + &"y".repeat(1500);
    let composed = build(json!({
        "from": {"name": "ä".repeat(120), "address": format!("{}@{}.example", "l".repeat(64), "d".repeat(63))},
        "to": (0..40).map(|i| format!("Recipient Number {i} <r{i}@example.com>")).collect::<Vec<_>>(),
        "subject": "s".repeat(2000),
        "text": text,
        "html": html,
        "headers": {"X-Long": "v".repeat(3000), "X-Long-Utf8": "ö".repeat(1500)},
        "attachments": [{"filename": "é".repeat(127), "content": b64(&[7; 5000]), "content_id": "c".repeat(250)}]
    }));
    assert_wire_clean(&composed.message);
    let message = parse(&composed);
    assert_eq!(message.body_html(0).as_deref(), Some(html.as_str()));
    assert_eq!(message.body_text(0).as_deref(), Some(text.as_str()));
    assert_eq!(message.subject(), Some("s".repeat(2000).as_str()));
    assert_eq!(message.to().map(|to| to.iter().count()), Some(40));
}

/// Whatever hostile string goes into a header-bound field, a successful
/// compose emits exactly the headers it means to.
#[test]
fn hostile_values_never_add_headers() {
    let hostile = [
        "Bcc: x@evil.test",
        ": leading colon",
        "=?utf-8?Q?Bcc=3A_x=0D=0A?=",
        "\u{2029}Bcc: ps",
        "\u{2028}Bcc: ls",
        "\t\ttabs\t",
        "\"quoted\" <x@evil.test>",
        "very long ",
    ];
    for value in hostile {
        let value = if value == "very long " {
            value.repeat(300)
        } else {
            value.to_string()
        };
        let request = json!({
            "from": {"name": value, "address": "a@example.com"},
            "to": [{"name": value, "address": "b@example.com"}],
            "subject": value,
            "text": value,
            "headers": {"X-Value": value},
            "attachments": [{"filename": value, "content": b64(b"x")}]
        });
        let request = if value.len() > MAX_DISPLAY_NAME_LEN {
            with(
                with(request, "from", json!("a@example.com")),
                "to",
                json!("b@example.com"),
            )
        } else {
            request
        };
        let request = if value.len() > MAX_FILENAME_LEN {
            without(request, "attachments")
        } else {
            request
        };
        let composed = compose(&req(request.clone()), "h", &Limits::default())
            .unwrap_or_else(|e| panic!("{value:?} refused: {e}"));
        assert_wire_clean(&composed.message);
        assert_python_reads(&request, &composed);
        let mut expected = vec![
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "X-Value",
            "MIME-Version",
            "Content-Type",
        ];
        if request.get("attachments").is_none() {
            expected.push("Content-Transfer-Encoding");
        }
        assert_eq!(header_names(&composed.message), expected, "{value:?}");
        let message = parse(&composed);
        assert_eq!(message.subject(), Some(value.as_str()), "{value:?}");
    }
}

/// Issue 10's outbound cases, each checked on the wire and through the
/// readers (`build` also runs Python's `email` on every message).
#[test]
fn message_attachments_go_unencoded_with_crlf() {
    let inner = "From: x@example.com\nSubject: Grüße\n\nZeile 1\rZeile 2\r\n";
    let composed = build(json!({
        "from": "a@example.com",
        "to": "b@example.com",
        "text": "forwarded",
        "attachments": [
            {"filename": "fwd.eml", "content_type": "message/rfc822", "content": b64(inner.as_bytes())},
            {"filename": "plain.eml", "content_type": "message/rfc822", "content": b64(b"Subject: a\r\n\r\nb\r\n")}
        ]
    }));
    assert_wire_clean(&composed.message);
    let wire = String::from_utf8_lossy(&composed.message);
    assert!(
        wire.contains("Content-Transfer-Encoding: 8bit\r\n\r\nFrom: x@example.com\r\nSubject: Grüße\r\n\r\nZeile 1\r\nZeile 2\r\n"),
        "{wire}"
    );
    assert!(
        wire.contains("Content-Transfer-Encoding: 7bit\r\n\r\nSubject: a\r\n"),
        "{wire}"
    );
    let message = parse(&composed);
    let forwarded = message.attachment(0).expect("the message/rfc822 part");
    let nested = forwarded.message().expect("opened as a message");
    assert_eq!(nested.subject(), Some("Grüße"));

    // What cannot go unencoded is refused, with the reason.
    for (content, why) in [
        (
            format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(999)),
            "998 octets",
        ),
        ("Subject: x\r\n\r\na\0b\r\n".to_string(), "NUL"),
    ] {
        let error = compose(
            &req(with(
                base(),
                "attachments",
                json!([{"filename": "m.eml", "content_type": "message/rfc822", "content": b64(content.as_bytes())}]),
            )),
            "h",
            &Limits::default(),
        )
        .expect_err(why);
        assert_eq!(
            (error.code, error.field.as_str()),
            ("invalid_attachment", "attachments[0].content")
        );
        assert!(error.message.contains(why), "{}", error.message);
        assert!(error.message.contains("application/octet-stream"));
    }
}

#[test]
fn non_ascii_filenames_are_rfc_2231_and_continued() {
    // The issue's 218-byte name, a short one, and lookalikes of encoded words.
    let long = format!("{}.pdf", "Ünïcødé-".repeat(18));
    assert!(long.len() >= 218);
    for filename in [
        long.as_str(),
        "Grüße.txt",
        "=?utf-8?B?QQ==?=.bin",
        "plain name.txt",
    ] {
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "text": "t",
            "attachments": [{"filename": filename, "content": b64(b"x")}]
        }));
        assert_wire_clean(&composed.message);
        let wire = String::from_utf8_lossy(&composed.message);
        let part = &wire[wire
            .find("Content-Type: application/octet-stream")
            .expect("part")..];
        let part_head = &part[..part.find("\r\n\r\n").expect("part head")];
        assert!(
            !part_head.contains("=?"),
            "an encoded word in:\n{part_head}"
        );
        for line in part_head.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
        }
        if filename.is_ascii() && !filename.contains("=?") {
            assert!(part_head.contains(&format!("filename=\"{filename}\"")));
        } else {
            assert!(part_head.contains("filename*"), "{part_head}");
        }
        if filename.len() > 60 {
            assert!(part_head.contains("filename*0*=utf-8''"), "{part_head}");
            assert!(part_head.contains("filename*1*="), "{part_head}");
        }
        let message = parse(&composed);
        let attachment = message.attachment(0).expect("attachment");
        assert_eq!(attachment.attachment_name(), Some(filename));
    }
}

#[test]
fn subjects_are_folded_and_encode_only_what_needs_it() {
    let ascii = "Quarterly report: numbers for every region, the forecast, and the notes from the review meeting last Tuesday";
    let mixed = "Re: Grüße aus Köln and the rest of the words stay plain ASCII for once, ok?";
    for subject in [ascii, mixed] {
        let composed = build(with(base(), "subject", json!(subject)));
        let head = header_block(&composed.message);
        let field = &head[head.find("Subject:").expect("subject")..];
        let field = &field[..field
            .find("\r\n")
            .map(|first| {
                // the field and its continuation lines
                let mut end = first;
                while field[end + 2..].starts_with([' ', '\t']) {
                    end += 2 + field[end + 2..].find("\r\n").expect("CRLF");
                }
                end
            })
            .expect("CRLF")];
        assert!(field.contains("\r\n "), "not folded: {field}");
        for line in field.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
        }
        assert!(!field.contains("us-ascii"), "{field}");
        assert_eq!(parse(&composed).subject(), Some(subject));
        if subject == ascii {
            assert!(!field.contains("=?"), "ASCII encoded: {field}");
        } else {
            // Only the words with ü and ö are encoded.
            assert_eq!(field.matches("=?utf-8?").count(), 2, "{field}");
            assert!(field.starts_with("Subject: Re: =?utf-8?"), "{field}");
        }
    }
}

#[test]
fn quoted_display_names_are_never_folded_inside() {
    let names: Vec<String> = (0..6).map(|i| format!("Doe, John the {i}th")).collect();
    let to: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"name": name, "address": format!("john{i}@example.com")}))
        .collect();
    let composed = build(json!({"from": "a@example.com", "to": to, "text": "t"}));
    let head = header_block(&composed.message);
    assert!(
        head.contains("\r\n \"Doe"),
        "the To field is folded between mailboxes:\n{head}"
    );
    for name in &names {
        assert!(head.contains(&format!("\"{name}\"")), "{name} cut:\n{head}");
    }
    let message = parse(&composed);
    let got: Vec<_> = message
        .to()
        .expect("to")
        .iter()
        .map(|a| a.name().map(str::to_string))
        .collect();
    assert_eq!(got, names.iter().cloned().map(Some).collect::<Vec<_>>());
}

#[test]
fn long_non_ascii_display_names() {
    let mixed = "Dr. Jürgen Müller-Lüdenscheidt von und zu Hohenzollern-Sigmaringen";
    let cases = [
        // Plain words stay plain between encoded ones: exact in every reader.
        (mixed, true),
        (
            "Zoë Ångström, Ærø Kommune og Søren Kierkegaards Venner",
            true,
        ),
        ("Александр Сергеевич Пушкин", false),
        (&*"ü".repeat(128), false),
    ];
    for (name, python_exact) in cases {
        assert_eq!(python_reads_phrase_exactly(name), python_exact, "{name}");
        let composed = build(json!({
            "from": {"name": name, "address": "a@example.com"},
            "to": "b@example.com",
            "text": "t"
        }));
        let message = parse(&composed);
        let from = message.from().and_then(|f| f.first()).expect("from");
        assert_eq!(from.name(), Some(name), "mail-parser reads {name}");
    }
    let head = header_block(
        &build(json!({
            "from": {"name": mixed, "address": "a@example.com"},
            "to": "b@example.com",
            "text": "t"
        }))
        .message,
    );
    assert!(
        head.contains("?= von und zu"),
        "plain words encoded:\n{head}"
    );
}
