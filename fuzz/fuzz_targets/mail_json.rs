//! `postern::mail::parse_message` on arbitrary bytes, with both `include_raw`
//! settings.
//!
//! Fails (aborts) on a panic, on JSON serialisation failing, or when a
//! documented promise of `MessageJson` does not hold:
//! - `raw` is the base64 of the input whenever `include_raw`, `parse_error`
//!   or `lossy`, and absent otherwise; `lossy` is set exactly when
//!   `parse_error` is or `lossy_reasons` is not empty, and that list stays
//!   within `MAX_REASONS`;
//! - an attachment's `sha256` is 64 lowercase hex digits, its `content`
//!   decodes to `size` bytes, and it is `null` exactly when `size` is over
//!   `max_attachment_inline`;
//! - the options change nothing else in the payload.
//!
//! mail-parser has `debug_assert!`s on states it deems impossible, and cargo
//! fuzz builds with debug assertions. `parse_message` catches any panic of
//! the parser (the message is then sent with `parse_error` and `raw`), which
//! is the behaviour under test, so by default a panic raised *inside
//! mail-parser* does not stop the run. Set `POSTERN_FUZZ_STRICT=1` to make it
//! a crash too (to hunt mail-parser bugs). A panic anywhere else, or one that
//! escapes `parse_message`, is always a crash.

#![no_main]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use postern::mail::{parse_message, MessageJson, PayloadOptions, MAX_REASONS};
use serde_json::Value;

const INLINE_MAX: usize = 64;

fuzz_target!(
    init: {
        if std::env::var_os("POSTERN_FUZZ_STRICT").is_none() {
            // libfuzzer-sys' hook prints and aborts; keep it for every
            // panic that is not raised in mail-parser's own source.
            let abort = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let in_parser = info
                    .location()
                    .is_some_and(|l| l.file().contains("/mail-parser-"));
                if !in_parser {
                    abort(info);
                }
            }));
        }
    },
    |data: &[u8]| {
    let plain = PayloadOptions {
        include_raw: false,
        max_attachment_inline: None,
        ..PayloadOptions::default()
    };
    let with_raw = PayloadOptions {
        include_raw: true,
        max_attachment_inline: Some(INLINE_MAX),
        ..PayloadOptions::default()
    };
    let a = parse_message(data, &plain);
    let b = parse_message(data, &with_raw);
    let expect_raw = BASE64.encode(data);

    for (m, opts) in [(&a, &plain), (&b, &with_raw)] {
        assert_eq!(m.lossy, m.parse_error || !m.lossy_reasons.is_empty(), "lossy flag");
        assert!(m.lossy_reasons.len() <= MAX_REASONS, "too many lossy reasons");
        if m.parse_error || m.lossy || opts.include_raw {
            assert_eq!(m.raw.as_deref(), Some(expect_raw.as_str()), "raw missing or wrong");
        } else {
            assert!(m.raw.is_none(), "raw present without include_raw");
        }
        check_attachments(m, opts.max_attachment_inline);
    }

    let ja = to_json(&a);
    let jb = to_json(&b);
    assert_eq!(strip_option_fields(ja), strip_option_fields(jb), "options changed the payload");
    }
);

fn check_attachments(m: &MessageJson, max: Option<usize>) {
    for att in &m.attachments {
        assert!(
            att.sha256.len() == 64
                && att
                    .sha256
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "bad sha256 {:?}",
            att.sha256
        );
        match &att.content {
            Some(c) => {
                let bytes = BASE64.decode(c).expect("content is standard base64");
                assert_eq!(bytes.len(), att.size, "content length != size");
                assert!(
                    max.is_none_or(|m| att.size <= m),
                    "content inlined over the limit"
                );
            }
            None => assert!(
                max.is_some_and(|m| att.size > m),
                "content null although within the limit"
            ),
        }
    }
}

/// Serialises, and checks the text parses back as JSON.
fn to_json(m: &MessageJson) -> Value {
    let bytes = serde_json::to_vec(m).expect("MessageJson serialises");
    serde_json::from_slice(&bytes).expect("serialised MessageJson is valid JSON")
}

/// Drops what the options are allowed to change: `raw` and attachment `content`.
fn strip_option_fields(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("raw");
        if let Some(Value::Array(atts)) = o.get_mut("attachments") {
            for att in atts {
                if let Some(a) = att.as_object_mut() {
                    a.remove("content");
                }
            }
        }
    }
    v
}
