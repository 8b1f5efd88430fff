//! Raw mode: `raw` (base64 of a complete RFC 5322 message) plus an
//! explicit `envelope`. The bytes are passed through; only line endings are
//! normalised to CRLF, and the Message-ID is read, never added.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Composed;
use super::address::{dedup_addresses, envelope_address};
use super::error::FieldError;
use super::limits::{Limits, check_count, check_decoded_size};
use super::request::SendRequest;
use super::transfer::base64_decoded_len;
use crate::model::crlf::to_crlf;

/// Composes a raw request: nothing of the structured shape may come along,
/// the envelope is validated and the bytes are decoded and normalised.
pub(super) fn compose_raw(
    req: &SendRequest,
    raw: &str,
    limits: &Limits,
) -> Result<Composed, FieldError> {
    // Anything that would be silently ignored next to a raw message is an
    // error instead; tags and metadata belong to the API, not the message.
    let conflicts = [
        ("from", req.from.is_some()),
        ("to", req.to.is_some()),
        ("cc", req.cc.is_some()),
        ("bcc", req.bcc.is_some()),
        ("reply_to", req.reply_to.is_some()),
        ("subject", req.subject.is_some()),
        ("text", req.text.is_some()),
        ("html", req.html.is_some()),
        ("headers", !req.headers.is_empty()),
        ("attachments", !req.attachments.is_empty()),
    ];
    if let Some((field, _)) = conflicts.iter().find(|(_, present)| *present) {
        return Err(FieldError::new(
            "conflicting_fields",
            *field,
            format!("`{field}` cannot be combined with `raw`"),
        ));
    }
    let envelope = req.envelope.as_ref().ok_or_else(|| {
        FieldError::new(
            "missing_field",
            "envelope",
            "`envelope` is required with `raw`",
        )
    })?;
    check_count(
        "envelope.rcpt_to",
        envelope.rcpt_to.len(),
        limits.max_recipients,
        "recipients (POSTERN_MAX_RECIPIENTS)",
    )?;
    check_decoded_size(
        "raw",
        base64_decoded_len(raw),
        limits.max_message_size,
        "`raw`",
    )?;
    let bytes = STANDARD.decode(raw).map_err(|err| {
        FieldError::new(
            "invalid_base64",
            "raw",
            format!("not valid standard base64: {err}"),
        )
    })?;
    if bytes.is_empty() {
        return Err(FieldError::new("invalid_raw", "raw", "`raw` is empty"));
    }

    let mail_from = envelope_address(&envelope.mail_from, "envelope.mail_from")?;
    if envelope.rcpt_to.is_empty() {
        return Err(FieldError::new(
            "no_recipients",
            "envelope.rcpt_to",
            "at least one recipient is required",
        ));
    }
    let recipients = envelope
        .rcpt_to
        .iter()
        .enumerate()
        .map(|(index, rcpt)| envelope_address(rcpt, &format!("envelope.rcpt_to[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;

    let message = to_crlf(&bytes);
    let message_id = raw_message_id(&message).unwrap_or_default();
    Ok(Composed {
        mail_from,
        rcpt_to: dedup_addresses(recipients.iter().map(String::as_str)),
        message,
        message_id,
    })
}

/// Header fields of a CRLF-normalised message, unfolded, up to the first
/// empty line.
fn unfolded_headers(message: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        match fields.last_mut() {
            Some(last) if matches!(line.first(), Some(b' ' | b'\t')) => {
                last.extend_from_slice(line)
            }
            _ => fields.push(line.to_vec()),
        }
    }
    fields
}

/// The first Message-ID of a raw message, without angle brackets.
fn raw_message_id(message: &[u8]) -> Option<String> {
    unfolded_headers(message).into_iter().find_map(|field| {
        let colon = field.iter().position(|&b| b == b':')?;
        let (name, value) = field.split_at(colon);
        if !name.trim_ascii().eq_ignore_ascii_case(b"message-id") {
            return None;
        }
        let value = String::from_utf8_lossy(&value[1..]);
        let value = value.trim();
        let id = match (value.find('<'), value.rfind('>')) {
            (Some(open), Some(close)) if open < close => &value[open + 1..close],
            _ => value,
        };
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
}

#[cfg(test)]
mod tests {
    use crate::compose::test_support::*;
    use serde_json::json;

    #[test]
    fn raw_mode_passes_message_through() {
        let raw = b"From: a@example.com\nMessage-ID:\n <abc.123@example.com>\nSubject: raw\r\n\nline1\nline2\rline3\r\n";
        let composed = build(json!({
            "raw": b64(raw),
            "envelope": {"mail_from": "<a@example.com>", "rcpt_to": ["B@example.com", "b@example.com", "c@example.com"]},
            "tags": ["t"],
            "metadata": {"k": "v"}
        }));
        assert_eq!(composed.mail_from, "a@example.com");
        assert_eq!(composed.rcpt_to, ["B@example.com", "c@example.com"]);
        assert_eq!(composed.message_id, "abc.123@example.com");
        assert_eq!(
            composed.message,
            b"From: a@example.com\r\nMessage-ID:\r\n <abc.123@example.com>\r\nSubject: raw\r\n\r\nline1\r\nline2\r\nline3\r\n"
        );
        assert_wire_clean(&composed.message);
    }

    #[test]
    fn raw_without_message_id_is_not_modified() {
        let raw =
            b"From: a@example.com\r\nSubject: no id\r\n\r\nMessage-ID: <in-body@example.com>\r\n";
        let composed = build(json!({
            "raw": b64(raw),
            "envelope": {"mail_from": "a@example.com", "rcpt_to": ["b@example.com"]}
        }));
        assert_eq!(composed.message_id, "");
        assert_eq!(composed.message, raw);
    }
}
