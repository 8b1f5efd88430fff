//! Composition of outgoing mail for `POST /v1/messages`.
//!
//! [`compose`] turns a deserialised [`SendRequest`] into a validated SMTP
//! envelope plus the RFC 5322 / MIME bytes to hand to the relay, or into a
//! [`FieldError`] that the HTTP layer answers with `422` and
//! `{"error": {"code", "message", "field"}}` (see [`FieldError::to_json`]).
//!
//! Two request shapes are accepted:
//!
//! * **structured**: `from`, `to`/`cc`/`bcc`, `reply_to`, `subject`,
//!   `text`/`html`, extra `headers` and `attachments`; the MIME tree is built
//!   with `mail-builder`:
//!   - text only → `text/plain`; html only → `text/html`;
//!     both → `multipart/alternative`;
//!   - attachments with a `content_id` → `multipart/related` wrapping the
//!     body above, each part `Content-Disposition: inline` + `Content-ID`;
//!   - any other attachment → `multipart/mixed` outermost.
//! * **raw**: `raw` (base64 RFC 5322 bytes) plus an explicit `envelope`; the
//!   bytes are passed through, only line endings are normalised to CRLF.
//!
//! Security invariants, each covered by tests:
//!
//! * No caller-supplied string that ends up in a header (names, values,
//!   subject, addresses, display names, attachment metadata, envelope
//!   addresses) may contain CR, LF or any other control character except
//!   TAB (`header_injection`). On top of that the generated header section
//!   is re-parsed and must contain exactly the header fields this module
//!   emitted, so a folding quirk in the encoder cannot smuggle one in.
//! * Text is text: no caller-supplied string is ever written so that a
//!   recipient's decoder reads part of it as an RFC 2047 encoded word
//!   (`=?utf-8?q?a=0D=0AX-Injected:_yes?=` would decode into a CR LF and a
//!   header of its own). A subject, unstructured header value, display name
//!   or attachment parameter (filename) containing `=?` is written as
//!   encoded words of its exact bytes; where encoding would change the
//!   meaning (addresses, Content-IDs, structured headers such as
//!   `References`) `=?` is refused (see `could_be_encoded_word`).
//! * Every list and every string bound for a header has a cap
//!   ([`limits`]), so what a request turns into stays proportional
//!   to its size.
//! * `Bcc` recipients reach `rcpt_to` but never the message bytes.
//! * Output uses CRLF only and no line exceeds 998 octets (RFC 5322 §2.1.1):
//!   bodies are normalised to CRLF and left to `mail-builder`'s QP/base64
//!   choice, attachments are always base64, and every length that the
//!   encoder writes unfolded (header names, display names, filenames,
//!   addresses, Content-IDs) is capped.
//!
//! SMTP dot-stuffing is the transport's job, not this module's.
//!
//! Error codes: `missing_field`, `no_recipients`, `missing_body`,
//! `invalid_address`, `header_injection`, `invalid_header_name`,
//! `forbidden_header`, `invalid_base64`, `invalid_content_type`,
//! `invalid_content_id`, `invalid_filename`, `too_long`, `invalid_raw`,
//! `conflicting_fields`, `encoded_word`, `too_many`, `too_large`,
//! `internal_error`.

pub mod limits;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};
use serde::Deserialize;
use serde_json::{Value, json};

use limits::{
    Limits, MAX_ATTACHMENTS, MAX_HEADER_VALUE_LEN, MAX_HEADERS, check_count, check_len,
    check_recipients,
};

/// HTTP status the handler should answer a [`FieldError`] with.
pub const FIELD_ERROR_STATUS: u16 = 422;

/// Longest accepted extra header name. `mail-builder` folds a `Text` value
/// onto a new line *without* leading whitespace once the name is ≥ 74
/// octets, which would let the value start a header of its own; staying well
/// below that keeps every header on the line it belongs to.
pub const MAX_HEADER_NAME_LEN: usize = 64;

/// Longest display name in octets. `mail-builder` writes a display name as a
/// single encoded word, so this bounds the header line length.
pub const MAX_DISPLAY_NAME_LEN: usize = 256;

/// Longest attachment filename in octets (same reason as display names; 255
/// is also the common filesystem limit).
pub const MAX_FILENAME_LEN: usize = 255;

/// Longest Content-ID (without angle brackets) in octets.
pub const MAX_CONTENT_ID_LEN: usize = 250;

/// Longest attachment `content_type` (parameters included) in octets: the
/// type is written unfolded, and each parameter value on one line.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

/// Longest address in octets (RFC 5321 path limit minus the brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

const MAX_LOCAL_PART_LEN: usize = 64;
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Content type of an attachment that does not name one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

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

/// Base64 line length for attachment bodies (RFC 2045 §6.8 maximum).
const BASE64_LINE_LEN: usize = 76;

/// JSON body of `POST /v1/messages`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Author; also the SMTP `MAIL FROM` in structured mode.
    pub from: Option<AddressInput>,
    pub to: Option<OneOrMany<AddressInput>>,
    pub cc: Option<OneOrMany<AddressInput>>,
    /// Envelope-only recipients: never written to the message.
    pub bcc: Option<OneOrMany<AddressInput>>,
    pub reply_to: Option<OneOrMany<AddressInput>>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Extra header fields. A map cannot carry duplicates or an order, which
    /// is acceptable for the `X-*`/`List-*` style headers this is meant for.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
    /// Stored by the API layer; not part of the message.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Stored by the API layer; not part of the message.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
    /// Base64 of a complete RFC 5322 message; requires `envelope`.
    pub raw: Option<String>,
    /// SMTP envelope for `raw`; refused without it.
    pub envelope: Option<EnvelopeInput>,
}

/// An address as accepted in JSON: `"Name <a@b>"`, `"<a@b>"`, `"a@b"` or
/// `{"name": "Name", "address": "a@b"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressInput {
    Text(String),
    Object {
        name: Option<String>,
        address: String,
    },
}

/// Object form of [`AddressInput`]. Kept as a struct so that unknown keys
/// (a typo such as `adress`) are refused, which serde cannot do on a variant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressObject {
    #[serde(default)]
    name: Option<String>,
    address: String,
}

/// Hand-written rather than `#[serde(untagged)]`: serde lets a struct be
/// deserialised from a JSON array, so an untagged object variant would read
/// `["x@a", "y@b"]` as `{name: "x@a", address: "y@b"}` and a list of two
/// recipients would silently become one. Only strings and maps are accepted.
impl<'de> Deserialize<'de> for AddressInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddressVisitor;

        impl<'de> serde::de::Visitor<'de> for AddressVisitor {
            type Value = AddressInput;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address string or an object with `address` and optional `name`")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<AddressInput, E> {
                Ok(AddressInput::Text(value.to_string()))
            }

            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<AddressInput, E> {
                Ok(AddressInput::Text(value))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AddressInput, A::Error> {
                let AddressObject { name, address } =
                    AddressObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(AddressInput::Object { name, address })
            }
        }

        deserializer.deserialize_any(AddressVisitor)
    }
}

/// A single value or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice, whichever form was sent.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(value) => std::slice::from_ref(value),
            OneOrMany::Many(values) => values,
        }
    }

    /// JSON path of the `index`-th value below `base`: a single value is
    /// reported as `base` itself so the path matches what the client sent.
    pub fn field_path(&self, base: &str, index: usize) -> String {
        match self {
            OneOrMany::One(_) => base.to_string(),
            OneOrMany::Many(_) => format!("{base}[{index}]"),
        }
    }
}

/// One attachment of a structured request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    pub filename: String,
    /// `type/subtype`, optionally with `; key=value` parameters; defaults to
    /// [`DEFAULT_CONTENT_TYPE`].
    #[serde(default)]
    pub content_type: Option<String>,
    /// Standard base64 (RFC 4648 §4, padded, no whitespace).
    pub content: String,
    /// Makes the attachment an inline part of `multipart/related`; angle
    /// brackets are optional and stripped.
    #[serde(default)]
    pub content_id: Option<String>,
}

/// SMTP envelope for raw mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeInput {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

/// A field-level validation error → HTTP 422 with
/// `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message} ({code})")]
pub struct FieldError {
    /// Stable machine-readable code, see the module docs for the list.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// JSON path of the offending value, e.g. `to[1]`, `headers.X-Foo`,
    /// `attachments[0].content`.
    pub field: String,
}

impl FieldError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
            field: field.into(),
        }
    }

    /// The response body for this error.
    pub fn to_json(&self) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "field": self.field,
            }
        })
    }
}

/// A validated envelope and the message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// SMTP `MAIL FROM`.
    pub mail_from: String,
    /// SMTP `RCPT TO`: to + cc + bcc (or `envelope.rcpt_to`), deduplicated
    /// case-insensitively, first spelling and order kept.
    pub rcpt_to: Vec<String>,
    /// RFC 5322 message with CRLF line endings.
    pub message: Vec<u8>,
    /// Message-ID without angle brackets; empty for a raw message that has
    /// none (raw messages are never modified to add one).
    pub message_id: String,
}

/// A parsed and validated mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// Validates `req` and builds the message. `hostname` is the Message-ID
/// domain when the sender's domain cannot be used (non-ASCII).
pub fn compose(req: &SendRequest, hostname: &str, limits: &Limits) -> Result<Composed, FieldError> {
    match &req.raw {
        Some(raw) => compose_raw(req, raw, limits),
        None => compose_structured(req, hostname, limits),
    }
}

fn compose_structured(
    req: &SendRequest,
    hostname: &str,
    limits: &Limits,
) -> Result<Composed, FieldError> {
    if req.envelope.is_some() {
        return Err(FieldError::new(
            "conflicting_fields",
            "envelope",
            "`envelope` is only accepted together with `raw`",
        ));
    }
    // Presence first, so a client missing a whole field learns that before
    // it learns about the details of another one.
    let from_input = req
        .from
        .as_ref()
        .ok_or_else(|| FieldError::new("missing_field", "from", "`from` is required"))?;
    let recipient_count: usize = [&req.to, &req.cc, &req.bcc]
        .iter()
        .map(|list| list.as_ref().map_or(0, |list| list.as_slice().len()))
        .sum();
    if recipient_count == 0 {
        return Err(FieldError::new(
            "no_recipients",
            "to",
            "at least one recipient is required in `to`, `cc` or `bcc`",
        ));
    }
    if req.text.is_none() && req.html.is_none() {
        return Err(FieldError::new(
            "missing_body",
            "text",
            "`text` or `html` (or both) is required",
        ));
    }
    // Counts before contents: they are cheap, and bound the work below.
    let count =
        |list: &Option<OneOrMany<AddressInput>>| list.as_ref().map_or(0, |l| l.as_slice().len());
    check_recipients(
        count(&req.to),
        count(&req.cc),
        count(&req.bcc),
        limits.max_recipients,
    )?;
    check_count(
        "reply_to",
        count(&req.reply_to),
        limits.max_recipients,
        "reply_to addresses (POSTERN_MAX_RECIPIENTS)",
    )?;
    check_count("headers", req.headers.len(), MAX_HEADERS, "extra headers")?;
    check_count(
        "attachments",
        req.attachments.len(),
        MAX_ATTACHMENTS,
        "attachments",
    )?;
    check_attachment_size(&req.attachments, limits.max_message_size)?;

    let from = parse_mailbox(from_input, "from")?;
    let to = parse_mailbox_list(req.to.as_ref(), "to")?;
    let cc = parse_mailbox_list(req.cc.as_ref(), "cc")?;
    let bcc = parse_mailbox_list(req.bcc.as_ref(), "bcc")?;
    let reply_to = parse_mailbox_list(req.reply_to.as_ref(), "reply_to")?;
    if let Some(subject) = &req.subject {
        check_header_text(subject, "subject")?;
        check_len("subject", subject.len(), MAX_HEADER_VALUE_LEN, "subject")?;
    }
    let extra_headers = validate_headers(&req.headers)?;
    let attachments = req
        .attachments
        .iter()
        .enumerate()
        .map(|(index, input)| validate_attachment(index, input))
        .collect::<Result<Vec<_>, _>>()?;

    let rcpt_to = dedup_addresses(
        to.iter()
            .chain(&cc)
            .chain(&bcc)
            .map(|mailbox| mailbox.address.as_str()),
    );
    let message_id = format!(
        "{}@{}",
        uuid::Uuid::now_v7(),
        message_id_domain(&from.address, hostname)
    );

    // Address headers are written by `address_header`, not mail-builder's
    // Address type: mail-builder puts encoded words inside quotes, which
    // RFC 2047 section 5 forbids and parsers then show literally.
    let mut builder = MessageBuilder::new().header(
        "From",
        Raw::new(address_header(std::slice::from_ref(&from))),
    );
    if !to.is_empty() {
        builder = builder.header("To", Raw::new(address_header(&to)));
    }
    if !cc.is_empty() {
        builder = builder.header("Cc", Raw::new(address_header(&cc)));
    }
    // Bcc is deliberately never written: it only feeds `rcpt_to`.
    if !reply_to.is_empty() {
        builder = builder.header("Reply-To", Raw::new(address_header(&reply_to)));
    }
    if let Some(subject) = &req.subject {
        builder = builder.header("Subject", unstructured(subject));
    }
    builder = builder
        .header("Date", Raw::new(rfc5322_now()))
        .message_id(message_id.as_str());
    for (name, value) in extra_headers {
        builder = builder.header(name, unstructured(value));
    }

    let expected_headers: Vec<String> = builder
        .headers
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    let body = build_body(req.text.as_deref(), req.html.as_deref(), attachments);
    // Sized up front: growing a Vec by doubling would briefly hold two
    // copies of a message that is mostly attachments.
    let mut message = Vec::with_capacity(body.size() + body.size() / 8 + 16 * 1024);
    builder.body(body).write_to(&mut message).map_err(|err| {
        FieldError::new(
            "internal_error",
            "",
            format!("message could not be built: {err}"),
        )
    })?;

    if !header_section_is_sound(&message, &expected_headers) {
        return Err(FieldError::new(
            "header_injection",
            "headers",
            "the generated header section does not match the requested headers",
        ));
    }

    Ok(Composed {
        mail_from: from.address,
        rcpt_to,
        message,
        message_id,
    })
}

fn compose_raw(req: &SendRequest, raw: &str, limits: &Limits) -> Result<Composed, FieldError> {
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

    let message = normalize_line_endings(&bytes);
    let message_id = raw_message_id(&message).unwrap_or_default();
    Ok(Composed {
        mail_from,
        rcpt_to: dedup_addresses(recipients.iter().map(String::as_str)),
        message,
        message_id,
    })
}

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

/// Parses and validates one address input. `field` is its JSON path; the
/// object form reports `field.name` / `field.address`.
pub fn parse_mailbox(input: &AddressInput, field: &str) -> Result<Mailbox, FieldError> {
    let (name, address, name_field, address_field) = match input {
        AddressInput::Text(text) => {
            check_header_text(text, field)?;
            let (name, address) = split_name_addr(text);
            (
                name,
                address.to_string(),
                field.to_string(),
                field.to_string(),
            )
        }
        AddressInput::Object { name, address } => {
            let name_field = format!("{field}.name");
            let address_field = format!("{field}.address");
            if let Some(name) = name {
                check_header_text(name, &name_field)?;
            }
            check_header_text(address, &address_field)?;
            let name = name
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_string);
            (name, address.trim().to_string(), name_field, address_field)
        }
    };
    validate_address(&address, &address_field)?;
    if could_be_encoded_word(&address) {
        // `=?` is legal in a local part, but decoders read encoded words
        // in addresses too, and an address cannot be encoded.
        return Err(FieldError::new(
            "invalid_address",
            address_field,
            "address must not contain `=?` (it would be read as an RFC 2047 encoded word)",
        ));
    }
    if let Some(name) = &name
        && name.len() > MAX_DISPLAY_NAME_LEN
    {
        return Err(FieldError::new(
            "too_long",
            name_field,
            format!("display name is longer than {MAX_DISPLAY_NAME_LEN} bytes"),
        ));
    }
    Ok(Mailbox { name, address })
}

/// Validates a bare address: `local@domain`, dot-atom local part (RFC 5322
/// atext, plus UTF-8 for SMTPUTF8), non-empty domain labels of letters,
/// digits, hyphens or UTF-8, no whitespace, brackets or controls.
pub fn validate_address(address: &str, field: &str) -> Result<(), FieldError> {
    let invalid = |why: &str| FieldError::new("invalid_address", field, why.to_string());
    if address.is_empty() {
        return Err(invalid("address is empty"));
    }
    if address.len() > MAX_ADDRESS_LEN {
        return Err(invalid("address is longer than 254 bytes"));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(invalid("address must be local@domain"));
    };
    if local.is_empty() || local.len() > MAX_LOCAL_PART_LEN {
        return Err(invalid("local part must be 1 to 64 bytes"));
    }
    if !local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_local_char))
    {
        return Err(invalid("local part has an invalid character or dot"));
    }
    if !is_valid_domain(domain, true) {
        return Err(invalid("domain is not a valid host name"));
    }
    Ok(())
}

fn is_local_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
    } else {
        is_visible_non_ascii(c)
    }
}

/// Non-ASCII characters allowed by SMTPUTF8 are all fine except invisible
/// ones that could disguise an address or break a line in some client.
fn is_visible_non_ascii(c: char) -> bool {
    !c.is_ascii()
        && !c.is_control()
        && !c.is_whitespace()
        && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{FEFF}')
}

fn is_valid_domain(domain: &str, allow_utf8: bool) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN_LEN
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '-' || (allow_utf8 && is_visible_non_ascii(c))
                })
        })
}

/// Splits `"Name <a@b>"`, `"<a@b>"` or `"a@b"` into display name and
/// address. Whatever is left is validated as an address by the caller, so a
/// malformed input (stray `<`, a list) surfaces as `invalid_address`.
fn split_name_addr(text: &str) -> (Option<String>, &str) {
    let text = text.trim();
    if let Some(rest) = text.strip_suffix('>')
        && let Some(open) = rest.rfind('<')
    {
        let name = unquote(rest[..open].trim());
        let name = (!name.is_empty()).then_some(name);
        return (name, &rest[open + 1..]);
    }
    (None, text)
}

/// Removes RFC 5322 quoting from a display name (`"Doe, John"` → `Doe,
/// John`); the encoder quotes it again as needed.
fn unquote(name: &str) -> String {
    let Some(inner) = name
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return name.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_string()
}

fn parse_mailbox_list(
    list: Option<&OneOrMany<AddressInput>>,
    base: &str,
) -> Result<Vec<Mailbox>, FieldError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.as_slice()
        .iter()
        .enumerate()
        .map(|(index, input)| parse_mailbox(input, &list.field_path(base, index)))
        .collect()
}

/// Envelope addresses are bare, optionally in SMTP angle brackets.
fn envelope_address(value: &str, field: &str) -> Result<String, FieldError> {
    check_header_text(value, field)?;
    let trimmed = value.trim();
    let bare = trimmed
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(trimmed);
    validate_address(bare, field)?;
    Ok(bare.to_string())
}

fn dedup_addresses<'a>(addresses: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    addresses
        .filter(|address| seen.insert(address.to_lowercase()))
        .map(str::to_string)
        .collect()
}

fn validate_headers(headers: &BTreeMap<String, String>) -> Result<Vec<(&str, &str)>, FieldError> {
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

/// Field paths are echoed to clients and logs; keep them on one line.
pub(crate) fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A validated attachment ready to become a MIME part.
struct Attachment<'a> {
    filename: &'a str,
    content_type: ContentType<'a>,
    /// The request's base64, validated: canonical standard base64 is what
    /// encoding the decoded bytes would give again, so it is re-wrapped
    /// into lines instead of being decoded and encoded (two copies saved).
    base64: &'a str,
    content_id: Option<&'a str>,
}

/// Decoded size of standard base64 of `len` characters ending in
/// `padding` `=` (exact for valid input), without decoding it.
fn decoded_len(len: usize, padding: usize) -> u64 {
    ((len / 4) * 3).saturating_sub(padding) as u64
}

fn base64_decoded_len(text: &str) -> u64 {
    let padding = text.bytes().rev().take(2).filter(|&b| b == b'=').count();
    decoded_len(text.len(), padding)
}

fn check_decoded_size(field: &str, size: u64, max: u64, what: &str) -> Result<(), FieldError> {
    if size > max {
        return Err(FieldError::new(
            "too_large",
            field,
            format!(
                "{what} decodes to {size} bytes, more than the {max} bytes a message may have (POSTERN_MAX_MESSAGE_SIZE)"
            ),
        ));
    }
    Ok(())
}

/// The attachments together, decoded, against the message size limit:
/// measured on the base64 lengths, so a refusal costs no decoding.
fn check_attachment_size(attachments: &[AttachmentInput], max: u64) -> Result<(), FieldError> {
    let total = attachments
        .iter()
        .map(|a| base64_decoded_len(&a.content))
        .fold(0u64, u64::saturating_add);
    check_decoded_size("attachments", total, max, "the attachments together")
}

/// Checks standard base64 (RFC 4648, padded, canonical) without keeping
/// the decoded bytes: chunk by chunk into a small buffer. Only the last
/// chunk may hold padding; each other chunk is whole 4-character groups, so
/// chunk-wise validity is the validity of the whole.
fn validate_base64(text: &str) -> Result<(), base64::DecodeError> {
    const CHUNK: usize = 4096;
    if validate_base64_chunked(text.as_bytes(), CHUNK) {
        return Ok(());
    }
    // Decoding the whole value gives the error its true offset (and stays
    // the authority on what is valid).
    STANDARD.decode(text).map(drop)
}

fn validate_base64_chunked(text: &[u8], chunk: usize) -> bool {
    debug_assert!(chunk.is_multiple_of(4) && chunk > 0);
    let mut buf = vec![0u8; chunk / 4 * 3];
    let mut chunks = text.chunks(chunk).peekable();
    while let Some(piece) = chunks.next() {
        let last = chunks.peek().is_none();
        if !last && piece.contains(&b'=') {
            return false;
        }
        if STANDARD.decode_slice(piece, &mut buf).is_err() {
            return false;
        }
    }
    true
}

fn validate_attachment(
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
        base64: &input.content,
        content_id,
    })
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

/// An address list header value: `Name <a@b>, "Odd, Name" <c@d>`, with
/// non-ASCII display names as RFC 2047 encoded words (never inside quotes,
/// each at most 75 characters). Addresses themselves go out as they are
/// (UTF-8 ones need SMTPUTF8 at the relay, RFC 6532).
fn address_header(mailboxes: &[Mailbox]) -> String {
    mailboxes
        .iter()
        .map(|m| match m.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => format!("{} <{}>", display_name(name), m.address),
            None => format!("<{}>", m.address),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A display name as an RFC 5322 phrase.
fn display_name(name: &str) -> String {
    // Decoders look for encoded words inside quoted strings too, so quoting
    // does not protect an ASCII name containing `=?`.
    if !name.is_ascii() || could_be_encoded_word(name) {
        return encoded_words(name);
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~ ".contains(c);
    if name.chars().all(atext) && !name.starts_with(' ') && !name.ends_with(' ') {
        return name.to_string();
    }
    let mut q = String::with_capacity(name.len() + 2);
    q.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Whether a decoder could read part of `text` as an RFC 2047 encoded
/// word. Every encoded word starts with `=?`, and decoders find them
/// anywhere: inside a word (`pre=?…?=post`), a quoted string, an address
/// or a parameter value (Python's `email` does all of these). So text
/// without `=?` is the only text that is safe to write as it is.
fn could_be_encoded_word(text: &str) -> bool {
    text.contains("=?")
}

/// A value for an unstructured header (`Subject`, `X-*`). mail-builder's
/// `Text` encodes non-ASCII and over-long values but writes other ASCII as
/// it is, so a value that only looks like an encoded word would reach the
/// recipient as one. Such a value goes out as encoded words of its exact
/// bytes instead (folded between words, where decoders drop the space).
fn unstructured(text: &str) -> HeaderType<'_> {
    if could_be_encoded_word(text) {
        Raw::new(encoded_words(text)).into()
    } else {
        Text::new(text).into()
    }
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

/// `=?utf-8?B?…?=` words of at most 45 input bytes (75 characters), split
/// on character boundaries, separated by spaces (which decoders drop
/// between adjacent encoded words).
fn encoded_words(text: &str) -> String {
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

/// Message-ID domain: the sender's domain when it is plain ASCII (a UTF-8
/// msg-id would need SMTPUTF8 end to end), else the configured host name,
/// else `localhost` if that is not a valid host name either.
fn message_id_domain<'a>(from_address: &'a str, hostname: &'a str) -> &'a str {
    match from_address.rsplit_once('@') {
        Some((_, domain)) if domain.is_ascii() && is_valid_domain(domain, false) => domain,
        _ if is_valid_domain(hostname, false) => hostname,
        _ => "localhost",
    }
}

/// Current time as an RFC 5322 date in UTC.
fn rfc5322_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        // Formatting the current UTC time cannot realistically fail, but a
        // missing Date header must not be the result if it ever does.
        .unwrap_or_else(|_| mail_builder::headers::date::Date::now().to_rfc822())
}

fn build_body<'a>(
    text: Option<&'a str>,
    html: Option<&'a str>,
    attachments: Vec<Attachment<'a>>,
) -> MimePart<'a> {
    let text_part = text.map(|text| {
        MimePart::new(
            "text/plain",
            BodyPart::Text(normalize_newlines(text).into()),
        )
    });
    let html_part = html
        .map(|html| MimePart::new("text/html", BodyPart::Text(normalize_newlines(html).into())));
    let (mut body, root_type) = match (text_part, html_part) {
        (Some(text), Some(html)) => (
            MimePart::new("multipart/alternative", vec![text, html]),
            "multipart/alternative",
        ),
        (None, Some(html)) => (html, "text/html"),
        (Some(text), None) => (text, "text/plain"),
        // compose() refuses a request without a body before getting here;
        // an empty text part is the harmless answer if that ever changes.
        (None, None) => (
            MimePart::new("text/plain", BodyPart::Text("".into())),
            "text/plain",
        ),
    };

    let (inline, regular): (Vec<_>, Vec<_>) = attachments
        .into_iter()
        .partition(|attachment| attachment.content_id.is_some());
    if !inline.is_empty() {
        let mut parts = Vec::with_capacity(inline.len() + 1);
        parts.push(body);
        parts.extend(inline.into_iter().map(attachment_part));
        // RFC 2387 requires `type` to name the root part's content type.
        let related = ContentType::new("multipart/related").attribute("type", root_type);
        body = MimePart::new(related, parts);
    }
    if !regular.is_empty() {
        let mut parts = Vec::with_capacity(regular.len() + 1);
        parts.push(body);
        parts.extend(regular.into_iter().map(attachment_part));
        body = MimePart::new("multipart/mixed", parts);
    }
    body
}

/// Attachments are always base64: it round-trips every byte exactly (QP or
/// 7bit on a `text/*` part would rewrite line endings) and yields short
/// CRLF lines whatever the content.
///
/// The part's header fields are written here, not by mail-builder: its
/// parameter writer puts an ASCII value such as a filename between quotes
/// as it is, and decoders read encoded words even there. (Filenames move to
/// RFC 2231 later; [`parameter_field`] is where that goes.)
fn attachment_part(attachment: Attachment<'_>) -> MimePart<'_> {
    let disposition = if attachment.content_id.is_some() {
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
    head.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let mut bytes = Vec::with_capacity(head.len() + wrapped_len(attachment.base64.len()));
    bytes.extend_from_slice(head.as_bytes());
    push_base64_lines(&mut bytes, attachment.base64);
    // A part without headers of its own is written by mail-builder as it is.
    MimePart::raw(BodyPart::Binary(bytes.into()))
}

/// One header field `Name: value; key="v"; …` with CRLF, folded between
/// parameters. Each value is a quoted string, or, when it is not ASCII or
/// could be read as an encoded word, one `=?utf-8?B?…?=` word inside the
/// quotes: the form mail-builder uses for non-ASCII values, which mail
/// readers decode (the words decode to exactly the original text).
fn parameter_field(name: &str, value: &str, params: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    let mut out = format!("{name}: {value}");
    let mut line = out.len();
    for (key, value) in params {
        let item = format!("{key}={}", parameter_value(value));
        out.push(';');
        if line + 2 + item.len() > 76 {
            out.push_str("\r\n\t");
            line = 1;
        } else {
            out.push(' ');
            line += 2;
        }
        line += item.len();
        out.push_str(&item);
    }
    out.push_str("\r\n");
    out
}

fn parameter_value(value: &str) -> String {
    if !value.is_ascii() || could_be_encoded_word(value) {
        return format!("\"=?utf-8?B?{}?=\"", STANDARD.encode(value));
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Bytes [`push_base64_lines`] adds for `len` characters of base64.
fn wrapped_len(len: usize) -> usize {
    len + len.div_ceil(BASE64_LINE_LEN) * 2
}

/// `base64` in lines of [`BASE64_LINE_LEN`], each ending in CRLF.
fn push_base64_lines(out: &mut Vec<u8>, base64: &str) {
    for line in base64.as_bytes().chunks(BASE64_LINE_LEN) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
}

/// CRLF, lone CR and lone LF all become CRLF (RFC 2045 canonical text).
fn normalize_newlines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// Byte version of [`normalize_newlines`] for raw messages. A lone CR is
/// converted too: SMTP forbids bare CR as much as bare LF.
fn normalize_line_endings(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut iter = bytes.iter().copied().peekable();
    while let Some(b) = iter.next() {
        match b {
            b'\r' => {
                iter.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
    }
    out
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

/// Re-parses the generated header section: every line must be CRLF
/// terminated, continuation lines must follow a field, and the fields must
/// be exactly `expected` followed by what mail-builder adds itself
/// (MIME-Version and the root part's Content-Type / -Transfer-Encoding).
fn header_section_is_sound(message: &[u8], expected: &[String]) -> bool {
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
    use mail_parser::{HeaderForm, Message, MessageParser, MimeHeaders, PartType};

    fn req(value: Value) -> SendRequest {
        serde_json::from_value(value).expect("request JSON should deserialize")
    }

    fn build(value: Value) -> Composed {
        compose(&req(value), "mail.example.net", &Limits::default())
            .expect("request should compose")
    }

    fn parse(composed: &Composed) -> Message<'_> {
        MessageParser::default()
            .parse(&composed.message)
            .expect("output should parse")
    }

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    /// Content types of the MIME tree, e.g. `multipart/mixed(text/plain,image/png)`.
    fn tree(message: &Message<'_>, id: u32) -> String {
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
    fn header_text(message: &Message<'_>, name: &str) -> Option<String> {
        message
            .header_as(name.to_string(), HeaderForm::Text)
            .into_iter()
            .next()
            .and_then(|value| value.into_text())
            .map(|text| text.into_owned())
    }

    fn header_block(bytes: &[u8]) -> String {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header/body separator");
        String::from_utf8(bytes[..end + 2].to_vec()).expect("headers are UTF-8")
    }

    /// Top-level header names, in order.
    fn header_names(bytes: &[u8]) -> Vec<String> {
        header_block(bytes)
            .split("\r\n")
            .filter(|line| !line.is_empty() && !line.starts_with([' ', '\t']))
            .map(|line| line.split(':').next().unwrap_or_default().to_string())
            .collect()
    }

    /// CRLF only, and no line above 998 octets.
    fn assert_wire_clean(bytes: &[u8]) {
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

    fn err(code: &'static str, field: &str) -> (&'static str, String) {
        (code, field.to_string())
    }

    fn base() -> Value {
        json!({"from": "a@example.com", "to": "b@example.com", "text": "hi"})
    }

    fn with(mut value: Value, key: &str, field: Value) -> Value {
        value[key] = field;
        value
    }

    fn without(mut value: Value, key: &str) -> Value {
        value.as_object_mut().expect("object").remove(key);
        value
    }

    fn raw_base() -> Value {
        json!({
            "raw": b64(b"Subject: x\r\n\r\nbody\r\n"),
            "envelope": {"mail_from": "a@example.com", "rcpt_to": ["b@example.com"]}
        })
    }

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
            let got = compose(&req(request), "h", &limits);
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some((code, field))) => {
                    assert_eq!((e.code, e.field.as_str()), (code, field), "{name}");
                    assert!(!e.message.is_empty());
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Chunk-wise validation agrees with decoding the whole value, for
    /// every string up to 8 characters over an alphabet that has canonical
    /// and non-canonical endings, padding and an invalid symbol, with
    /// chunks as small as one group.
    #[test]
    fn chunked_base64_validation_agrees_with_decoding() {
        let alphabet = [b'A', b'Q', b'g', b'=', b'-'];
        let mut text = Vec::new();
        for len in 0..=8u32 {
            for mut n in 0..alphabet.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let whole = STANDARD.decode(&text).is_ok();
                for chunk in [4, 8] {
                    assert_eq!(
                        validate_base64_chunked(&text, chunk),
                        whole,
                        "{:?} in chunks of {chunk}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
        let long = b64(&(0..10_000u32)
            .map(|i| (i * 31 % 256) as u8)
            .collect::<Vec<_>>());
        assert!(validate_base64(&long).is_ok());
        let mut padded_inside = long.clone();
        padded_inside.replace_range(4096..4100, "QQ==");
        let err = validate_base64(&padded_inside).unwrap_err();
        assert_eq!(Some(err), STANDARD.decode(&padded_inside).err());
        assert_eq!(base64_decoded_len(&b64(b"12345")), 5);
        assert_eq!(base64_decoded_len(&b64(b"1234")), 4);
        assert_eq!(base64_decoded_len(""), 0);
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
    fn html_only_round_trip() {
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "html": "<p>Grüße</p>"
        }));
        assert_wire_clean(&composed.message);
        let message = parse(&composed);
        assert_eq!(tree(&message, 0), "text/html");
        assert_eq!(message.body_html(0).as_deref(), Some("<p>Grüße</p>"));
    }

    #[test]
    fn text_and_html_are_alternative() {
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "text": "plain",
            "html": "<b>rich</b>"
        }));
        assert_wire_clean(&composed.message);
        let message = parse(&composed);
        assert_eq!(
            tree(&message, 0),
            "multipart/alternative(text/plain,text/html)"
        );
        assert_eq!(message.body_text(0).as_deref(), Some("plain"));
        assert_eq!(message.body_html(0).as_deref(), Some("<b>rich</b>"));
    }

    #[test]
    fn inline_image_is_related_to_html() {
        let image: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "html": "<img src=\"cid:logo@example.com\">",
            "attachments": [{
                "filename": "logo.png",
                "content_type": "image/png",
                "content": b64(&image),
                "content_id": "<logo@example.com>"
            }]
        }));
        assert_wire_clean(&composed.message);
        let message = parse(&composed);
        assert_eq!(tree(&message, 0), "multipart/related(text/html,image/png)");
        assert_eq!(
            message.parts[0]
                .content_type()
                .and_then(|ct| ct.attribute("type")),
            Some("text/html")
        );
        let inline = message.attachment(0).expect("inline part");
        assert_eq!(inline.content_id(), Some("logo@example.com"));
        assert_eq!(inline.contents(), image.as_slice());
        let disposition = inline.content_disposition().expect("disposition");
        assert_eq!(disposition.ctype(), "inline");
        assert_eq!(inline.attachment_name(), Some("logo.png"));
        let raw = String::from_utf8_lossy(&composed.message);
        assert!(raw.contains("Content-ID: <logo@example.com>\r\n"));
    }

    #[test]
    fn full_shape_nests_mixed_related_alternative() {
        let image = b"\x89PNG\r\n\x1a\n\0\0binary".to_vec();
        let pdf: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let csv = b"a,b\nc,d\re\r\n".to_vec();
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "text": "plain",
            "html": "<img src=\"cid:logo\">",
            "attachments": [
                {"filename": "Bericht-Ü.pdf", "content_type": "application/pdf", "content": b64(&pdf)},
                {"filename": "logo.png", "content_type": "image/png", "content": b64(&image), "content_id": "logo"},
                {"filename": "data.csv", "content_type": "Text/CSV; charset=\"utf-8\"", "content": b64(&csv)},
                {"filename": "blob", "content": b64(b"")}
            ]
        }));
        assert_wire_clean(&composed.message);
        let message = parse(&composed);
        assert_eq!(
            tree(&message, 0),
            "multipart/mixed(multipart/related(multipart/alternative(text/plain,text/html),image/png),application/pdf,text/csv,application/octet-stream)"
        );
        let attachments: Vec<_> = message.attachments().collect();
        let named = |name: &str| {
            *attachments
                .iter()
                .find(|part| part.attachment_name() == Some(name))
                .unwrap_or_else(|| panic!("attachment {name}"))
        };
        assert_eq!(named("Bericht-Ü.pdf").contents(), pdf.as_slice());
        assert_eq!(named("logo.png").contents(), image.as_slice());
        assert_eq!(named("logo.png").content_id(), Some("logo"));
        // Text attachments keep their exact bytes, lone CR and LF included.
        assert_eq!(named("data.csv").contents(), csv.as_slice());
        assert_eq!(
            named("data.csv")
                .content_type()
                .and_then(|ct| ct.attribute("charset")),
            Some("utf-8")
        );
        assert_eq!(named("blob").contents(), b"");
        assert_eq!(
            named("Bericht-Ü.pdf")
                .content_disposition()
                .map(|cd| cd.ctype()),
            Some("attachment")
        );
    }

    #[test]
    fn text_with_attachment_is_mixed() {
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "text": "see attached",
            "attachments": [{"filename": "a.bin", "content": b64(b"\0\x01\x02")}]
        }));
        let message = parse(&composed);
        assert_eq!(
            tree(&message, 0),
            "multipart/mixed(text/plain,application/octet-stream)"
        );
        assert_eq!(
            message.attachment(0).map(|a| a.contents()),
            Some(&b"\0\x01\x02"[..])
        );
    }

    #[test]
    fn text_only_with_inline_part_is_related() {
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "text": "t",
            "attachments": [{"filename": "i.gif", "content_type": "image/gif", "content": b64(b"GIF89a"), "content_id": "i"}]
        }));
        let message = parse(&composed);
        assert_eq!(tree(&message, 0), "multipart/related(text/plain,image/gif)");
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
        let composed =
            build(json!({"from": "a@example.com", "bcc": "x@example.com", "text": "hi"}));
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

    #[test]
    fn body_line_endings_are_normalised() {
        let composed = build(json!({
            "from": "a@example.com",
            "to": "b@example.com",
            "text": "one\ntwo\rthree\r\nfour",
            "html": "<p>\n</p>"
        }));
        assert_wire_clean(&composed.message);
        let message = parse(&composed);
        assert_eq!(
            message.body_text(0).as_deref(),
            Some("one\r\ntwo\r\nthree\r\nfour")
        );
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

    #[test]
    fn deserialization_shapes() {
        let request = req(json!({
            "from": {"address": "a@example.com"},
            "to": "b@example.com",
            "cc": ["c@example.com", {"name": "D", "address": "d@example.com"}],
            "text": "x",
            "attachments": [{"filename": "f", "content": ""}]
        }));
        assert_eq!(
            request.from,
            Some(AddressInput::Object {
                name: None,
                address: "a@example.com".into()
            })
        );
        assert!(matches!(
            request.to,
            Some(OneOrMany::One(AddressInput::Text(_)))
        ));
        assert_eq!(request.cc.as_ref().map(|cc| cc.as_slice().len()), Some(2));
        assert_eq!(request.attachments[0].content_type, None);
        assert!(
            request.headers.is_empty() && request.tags.is_empty() && request.metadata.is_empty()
        );

        for unknown in [
            json!({"from": "a@example.com", "bogus": 1}),
            json!({"from": {"address": "a@example.com", "nmae": "typo"}}),
            json!({"attachments": [{"filename": "f", "content": "", "inline": true}]}),
            json!({"raw": "", "envelope": {"mail_from": "a@b", "rcpt_to": [], "x": 1}}),
        ] {
            assert!(
                serde_json::from_value::<SendRequest>(unknown.clone()).is_err(),
                "{unknown}"
            );
        }
    }

    #[test]
    fn field_error_json_shape() {
        let error = FieldError::new("invalid_address", "to[1]", "bad");
        assert_eq!(
            error.to_json(),
            json!({"error": {"code": "invalid_address", "message": "bad", "field": "to[1]"}})
        );
        assert_eq!(error.to_string(), "to[1]: bad (invalid_address)");
    }

    #[test]
    fn address_forms_parse() {
        let parse_text = |text: &str| parse_mailbox(&AddressInput::Text(text.into()), "f");
        assert_eq!(
            parse_text("  Jane Doe  <jane@example.com> "),
            Ok(Mailbox {
                name: Some("Jane Doe".into()),
                address: "jane@example.com".into()
            })
        );
        assert_eq!(
            parse_text(r#""Doe, \"JD\" Jane" <jane@example.com>"#).map(|m| m.name),
            Ok(Some(r#"Doe, "JD" Jane"#.into()))
        );
        assert_eq!(parse_text("<jane@example.com>").map(|m| m.name), Ok(None));
        assert_eq!(
            parse_text("\"\" <jane@example.com>").map(|m| m.name),
            Ok(None)
        );
        assert!(parse_text("o'brien+tag@sub.example.co.uk").is_ok());
        assert!(parse_text("用户@例子.广告").is_ok());
        for bad in [
            "a@-example.com",
            "a.@example.com",
            ".a@example.com",
            "a..b@example.com",
            "a@exa_mple.com",
            "a@[127.0.0.1]",
            "a\u{200B}@example.com",
            "<a@example.com> trailing",
            "a@example.com>",
        ] {
            assert_eq!(
                parse_text(bad).map_err(|e| e.code),
                Err("invalid_address"),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_names_are_phrases_and_encoded_words_never_quoted() {
        let m = |name: &str| Mailbox {
            name: Some(name.to_string()),
            address: "a@example.org".to_string(),
        };
        assert_eq!(address_header(&[m("Alice")]), "Alice <a@example.org>");
        assert_eq!(
            address_header(&[m("Smith, John")]),
            "\"Smith, John\" <a@example.org>"
        );
        assert_eq!(
            address_header(&[m("say \"hi\"")]),
            "\"say \\\"hi\\\"\" <a@example.org>"
        );
        let enc = address_header(&[m("Grüße Laden")]);
        assert_eq!(enc, "=?utf-8?B?R3LDvMOfZSBMYWRlbg==?= <a@example.org>");
        let long = "ü".repeat(128);
        let header = address_header(&[m(&long)]);
        assert!(!header.contains('"'));
        for word in header.split(' ').filter(|w| w.starts_with("=?")) {
            assert!(word.len() <= 75, "{word}");
        }
        // and a real parser reads the names back
        let raw = format!("From: {header}\r\nTo: {enc}\r\n\r\nx\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some(long.as_str())
        );
        assert_eq!(
            parsed.to().unwrap().first().unwrap().name(),
            Some("Grüße Laden")
        );
    }
}
