//! Attachments of a structured request: validating each one (filename,
//! content type, base64 content, Content-ID) and writing it as a MIME part
//! with its own header fields.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::{BodyPart, MimePart};

use super::error::FieldError;
use super::headers::check_header_text;
use super::limits::{check_decoded_size, check_len};
use super::params::parameter_field;
use super::request::AttachmentInput;
use super::transfer::{
    base64_decoded_len, identity_encoding, needs_identity_encoding, push_base64_lines,
    validate_base64, wrapped_len,
};
use super::words::could_be_encoded_word;
use crate::model::crlf::to_crlf;

/// Longest attachment filename in octets (same reason as display names; 255
/// is also the common filesystem limit).
pub const MAX_FILENAME_LEN: usize = 255;

/// Longest Content-ID (without angle brackets) in octets.
pub const MAX_CONTENT_ID_LEN: usize = 250;

/// Longest attachment `content_type` (parameters included) in octets: the
/// type is written unfolded, and each parameter value on one line.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

/// Content type of an attachment that does not name one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A validated attachment ready to become a MIME part.
pub(super) struct Attachment<'a> {
    filename: &'a str,
    content_type: ContentType<'a>,
    body: Body<'a>,
    content_id: Option<&'a str>,
}

/// An attachment's content as it goes on the wire.
enum Body<'a> {
    /// The request's base64, validated: canonical standard base64 is what
    /// encoding the decoded bytes would give again, so it is re-wrapped
    /// into lines instead of being decoded and encoded (two copies saved).
    Base64(&'a str),
    /// Decoded, CRLF-normalised bytes sent as they are, with their
    /// `7bit`/`8bit` encoding (see `needs_identity_encoding`).
    Identity {
        bytes: Vec<u8>,
        encoding: &'static str,
    },
}

impl Attachment<'_> {
    /// An attachment with a Content-ID is an inline part of
    /// `multipart/related`; any other is a `multipart/mixed` attachment.
    pub(super) fn is_inline(&self) -> bool {
        self.content_id.is_some()
    }
}

/// The attachments together, decoded, against the message size limit:
/// measured on the base64 lengths, so a refusal costs no decoding.
pub(super) fn check_attachment_size(
    attachments: &[AttachmentInput],
    max: u64,
) -> Result<(), FieldError> {
    let total = attachments
        .iter()
        .map(|a| base64_decoded_len(&a.content))
        .fold(0u64, u64::saturating_add);
    check_decoded_size("attachments", total, max, "the attachments together")
}

pub(super) fn validate_attachment(
    index: usize,
    input: &AttachmentInput,
) -> Result<Attachment<'_>, FieldError> {
    let base = format!("attachments[{index}]");

    let field = format!("{base}.filename");
    check_header_text(&input.filename, &field)?;
    if input.filename.trim().is_empty() {
        return Err(FieldError::new(
            "invalid_filename",
            field,
            "filename must not be empty",
        ));
    }
    if input.filename.len() > MAX_FILENAME_LEN {
        return Err(FieldError::new(
            "too_long",
            field,
            format!("filename is longer than {MAX_FILENAME_LEN} bytes"),
        ));
    }

    let field = format!("{base}.content_type");
    let raw_type = input
        .content_type
        .as_deref()
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    check_header_text(raw_type, &field)?;
    check_len(&field, raw_type.len(), MAX_CONTENT_TYPE_LEN, "content_type")?;
    let mut content_type = parse_content_type(raw_type).ok_or_else(|| {
        FieldError::new(
            "invalid_content_type",
            field,
            "content_type must be type/subtype (not multipart/*), optionally with ; key=value parameters",
        )
    })?;
    // Older clients name attachments from Content-Type's `name`, newer ones
    // from Content-Disposition's `filename`; set both.
    if !content_type
        .attributes
        .iter()
        .any(|(key, _)| key.eq_ignore_ascii_case("name"))
    {
        content_type = content_type.attribute("name", input.filename.as_str());
    }

    validate_base64(&input.content).map_err(|err| {
        FieldError::new(
            "invalid_base64",
            format!("{base}.content"),
            format!("not valid standard base64: {err}"),
        )
    })?;

    let body = if needs_identity_encoding(&content_type.c_type) {
        identity_body(&input.content, &content_type.c_type)
            .map_err(|why| FieldError::new("invalid_attachment", format!("{base}.content"), why))?
    } else {
        Body::Base64(&input.content)
    };

    let content_id = match &input.content_id {
        None => None,
        Some(raw_id) => {
            let field = format!("{base}.content_id");
            check_header_text(raw_id, &field)?;
            if could_be_encoded_word(raw_id) {
                return Err(FieldError::new(
                    "invalid_content_id",
                    field,
                    "content_id must not contain `=?` (it would be read as an RFC 2047 encoded word)",
                ));
            }
            Some(normalize_content_id(raw_id).ok_or_else(|| {
                FieldError::new(
                    "invalid_content_id",
                    field,
                    format!(
                        "content_id must be 1 to {MAX_CONTENT_ID_LEN} printable ASCII characters without spaces or <>\"\\()[],;"
                    ),
                )
            })?)
        }
    };

    Ok(Attachment {
        filename: &input.filename,
        content_type,
        body,
        content_id,
    })
}

/// The decoded, CRLF-normalised content of a `message/*` attachment that
/// must go out unencoded, or why it cannot (the `422` message).
fn identity_body(base64: &str, content_type: &str) -> Result<Body<'static>, String> {
    // Validated as base64 just before.
    let decoded = STANDARD.decode(base64).unwrap_or_default();
    // A lone CR is converted too: SMTP forbids bare CR as much as bare LF.
    let bytes = to_crlf(&decoded);
    let encoding = identity_encoding(&bytes).map_err(|why| {
        format!(
            "a {content_type} attachment is sent unencoded (RFC 2046 section 5.2), and {why}; send it as application/octet-stream instead"
        )
    })?;
    Ok(Body::Identity { bytes, encoding })
}

/// RFC 2045 token: printable ASCII minus tspecials.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| (33..=126).contains(&b) && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// Parses `type/subtype[; key=value]*`. Quoted values may not contain `"`,
/// `\` or `;`, which keeps the parser trivial. `multipart/*` is refused
/// because a leaf part cannot carry a boundary.
fn parse_content_type(text: &str) -> Option<ContentType<'static>> {
    let mut pieces = text.split(';');
    let essence = pieces.next()?.trim();
    let (main, sub) = essence.split_once('/')?;
    if !is_token(main) || !is_token(sub) || main.eq_ignore_ascii_case("multipart") {
        return None;
    }
    let mut content_type = ContentType::new(format!(
        "{}/{}",
        main.to_ascii_lowercase(),
        sub.to_ascii_lowercase()
    ));
    for piece in pieces {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let (key, value) = piece.split_once('=')?;
        let (key, value) = (key.trim(), value.trim());
        if !is_token(key) {
            return None;
        }
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) if !inner.contains(['"', '\\']) => inner,
            Some(_) => return None,
            None if is_token(value) => value,
            None => return None,
        };
        content_type = content_type.attribute(key.to_ascii_lowercase(), value.to_string());
    }
    Some(content_type)
}

fn normalize_content_id(raw: &str) -> Option<&str> {
    let id = raw.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id);
    let valid = !id.is_empty()
        && id.len() <= MAX_CONTENT_ID_LEN
        && id
            .bytes()
            .all(|b| (33..=126).contains(&b) && !b"<>\"\\()[],;".contains(&b));
    valid.then_some(id)
}

/// An attachment as a MIME part with its own header fields. Attachments
/// are base64: it round-trips every byte exactly (QP or 7bit on a `text/*`
/// part would rewrite line endings) and yields short CRLF lines whatever
/// the content; a `message/*` part that may not be encoded goes as it is
/// (already CRLF, checked for line length).
///
/// The header fields are written here, not by mail-builder: its parameter
/// writer puts an ASCII value such as a filename between quotes as it is
/// (decoders read encoded words even there), and a non-ASCII one as an
/// encoded word, which RFC 2047 forbids in parameters ([`super::params`]
/// writes RFC 2231 instead).
pub(super) fn attachment_part(attachment: Attachment<'_>) -> MimePart<'_> {
    let disposition = if attachment.is_inline() {
        "inline"
    } else {
        "attachment"
    };
    let mut head = parameter_field(
        "Content-Type",
        &attachment.content_type.c_type,
        &attachment.content_type.attributes,
    );
    head.push_str(&parameter_field(
        "Content-Disposition",
        disposition,
        &[("filename".into(), attachment.filename.into())],
    ));
    if let Some(content_id) = attachment.content_id {
        head.push_str(&format!("Content-ID: <{content_id}>\r\n"));
    }
    let bytes = match attachment.body {
        Body::Base64(base64) => {
            head.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
            let mut bytes = Vec::with_capacity(head.len() + wrapped_len(base64.len()));
            bytes.extend_from_slice(head.as_bytes());
            push_base64_lines(&mut bytes, base64);
            bytes
        }
        Body::Identity {
            bytes: body,
            encoding,
        } => {
            head.push_str(&format!("Content-Transfer-Encoding: {encoding}\r\n\r\n"));
            let mut bytes = Vec::with_capacity(head.len() + body.len());
            bytes.extend_from_slice(head.as_bytes());
            bytes.extend_from_slice(&body);
            bytes
        }
    };
    // A part without headers of its own is written by mail-builder as it is.
    MimePart::raw(BodyPart::Binary(bytes.into()))
}
