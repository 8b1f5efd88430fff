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
//!   header of its own). A subject, unstructured header value or display
//!   name containing `=?` is written as encoded words of its exact bytes,
//!   an attachment parameter (filename) as an RFC 2231 value; where
//!   encoding would change the
//!   meaning (addresses, Content-IDs, structured headers such as
//!   `References`) `=?` is refused (see `could_be_encoded_word`).
//! * Every list and every string bound for a header has a cap
//!   ([`limits`]), so what a request turns into stays proportional
//!   to its size.
//! * `Bcc` recipients reach `rcpt_to` but never the message bytes.
//! * Output uses CRLF only and no line exceeds 998 octets (RFC 5322 §2.1.1):
//!   bodies are normalised to CRLF and left to `mail-builder`'s QP/base64
//!   choice, attachments are base64 (a `message/rfc822` one goes as
//!   7bit/8bit, CRLF-normalised and checked for line length), header
//!   fields are folded between their tokens only (never inside a quoted
//!   string or an encoded word, each of which is at most 75 characters),
//!   and every length that is written unfolded (header names, display
//!   names, addresses, Content-IDs) is capped.
//!
//! SMTP dot-stuffing is the transport's job, not this module's.
//!
//! Error codes: `missing_field`, `no_recipients`, `missing_body`,
//! `invalid_address`, `header_injection`, `invalid_header_name`,
//! `forbidden_header`, `invalid_base64`, `invalid_content_type`,
//! `invalid_content_id`, `invalid_filename`, `invalid_attachment`,
//! `too_long`, `invalid_raw`,
//! `conflicting_fields`, `encoded_word`, `too_many`, `too_large`,
//! `internal_error`.
//!
//! # Layout
//!
//! The request flows through these modules in this order:
//!
//! - [`request`]: the JSON input types and their deserialisation;
//! - [`scan`](mod@scan): the per-element caps of [`limits`], counted on the raw JSON
//!   before deserialisation (and again by each step on the parsed request);
//! - [`structured`] or [`raw`]: the two request shapes, each validating its
//!   fields and producing a [`Composed`];
//! - [`address`], [`headers`], [`attachment`]: the validation and header
//!   writing of each kind of field, with [`words`] for the forms caller text
//!   takes in a header (as it is, quoted-string, RFC 2047 encoded words),
//!   [`params`] for MIME parameters (RFC 2231) and [`fold`] for laying a
//!   field out on lines;
//! - [`mime`]: the body tree, with [`transfer`] for base64 and line endings;
//! - [`error`]: the [`FieldError`] every step returns.

pub mod address;
pub mod attachment;
pub mod dkim;
pub mod error;
pub mod fold;
pub mod headers;
pub mod limits;
pub mod mime;
pub mod params;
pub mod raw;
pub mod request;
pub mod scan;
pub mod structured;
pub mod text_body;
pub mod transfer;
pub mod words;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use error::FieldError;
pub use limits::Limits;
pub use request::SendRequest;
pub use scan::{ScanError, scan};

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

/// Validates `req` and builds the message. `hostname` is the Message-ID
/// domain when the sender's domain cannot be used (non-ASCII).
pub fn compose(req: &SendRequest, hostname: &str, limits: &Limits) -> Result<Composed, FieldError> {
    match &req.raw {
        Some(raw) => raw::compose_raw(req, raw, limits),
        None => structured::compose_structured(req, hostname, limits),
    }
}
