//! Per-element limits of `POST /v1/messages`: the caps on every list and
//! every string bound for a header, and the rules that apply them.
//!
//! The body limit (`POSTERN_API_MAX_BYTES`) bounds the bytes of a request,
//! not what they turn into: a 30 MB body of a million `{"filename": "a",
//! "content": ""}` attachments deserialises into a million structs, then
//! MIME parts, and took 1.4 GB. So every list and map in the request has a
//! cap, counted on the raw JSON before anything is built
//! ([`scan`](mod@super::scan)).
//!
//! The count rules are small pure functions ([`check_recipients`],
//! [`check_count`], [`check_len`], `check_decoded_size`) shared by the
//! scan and by [`compose`](super::compose), which checks the message's own
//! elements again on the parsed request (it is also called without the
//! scan, e.g. from tests). Tags and metadata are the API's, not the
//! message's, so only the scan checks them.
//!
//! Every violation is a [`FieldError`] (`422`) naming the field and stating
//! the limit. Codes: `too_many` (a count), `too_long` (one value),
//! `too_large` (decoded attachments or `raw` over the message size limit).

use super::error::FieldError;
/// Attachments per message.
pub const MAX_ATTACHMENTS: usize = 100;
/// Extra header fields per message (`headers`).
pub const MAX_HEADERS: usize = 50;
/// Longest `subject` or extra header value, in bytes. Long enough for a
/// deep `References` chain or a JSON header some relays read (SendGrid's
/// `X-SMTPAPI`), short enough that 50 of them stay a small header section.
pub const MAX_HEADER_VALUE_LEN: usize = 8192;
/// Entries of `tags`.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 128;
/// Keys of `metadata`.
pub const MAX_METADATA_KEYS: usize = 50;
/// Longest `metadata` key, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest `metadata` value, in bytes of its JSON text as sent. Values may
/// be any JSON, so the size of the text is the measure that also bounds
/// what a value deserialises into (every event repeats the metadata).
pub const MAX_METADATA_VALUE_LEN: usize = 1024;

/// The limits that come from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `to` + `cc` + `bcc` together, `reply_to` on its own, and raw mode's
    /// `envelope.rcpt_to`: `POSTERN_MAX_RECIPIENTS`. One message is one
    /// SMTP transaction at the relay, so the SMTP side's cap applies.
    pub max_recipients: usize,
    /// Decoded attachments together, or a decoded `raw` message:
    /// `POSTERN_MAX_MESSAGE_SIZE`, the size the SMTP side accepts.
    pub max_message_size: u64,
}

impl Default for Limits {
    /// The configuration's defaults.
    fn default() -> Self {
        Limits {
            max_recipients: 100,
            max_message_size: 25 * 1024 * 1024,
        }
    }
}

/// `to`, `cc` and `bcc` hold `to`, `cc` and `bcc` addresses: together at
/// most `max`. The error names the list that crosses the limit, in that
/// order, so a flood of Bcc recipients is reported as `bcc`.
pub fn check_recipients(to: usize, cc: usize, bcc: usize, max: usize) -> Result<(), FieldError> {
    let mut total = 0usize;
    for (field, n) in [("to", to), ("cc", cc), ("bcc", bcc)] {
        total = total.saturating_add(n);
        if total > max {
            return Err(FieldError::new(
                "too_many",
                field,
                format!(
                    "to, cc and bcc together may hold at most {max} recipients (POSTERN_MAX_RECIPIENTS)"
                ),
            ));
        }
    }
    Ok(())
}

/// `n` elements of `field` against `max`; `what` names them in the message.
pub fn check_count(field: &str, n: usize, max: usize, what: &str) -> Result<(), FieldError> {
    if n > max {
        return Err(FieldError::new(
            "too_many",
            field,
            format!("at most {max} {what} are accepted"),
        ));
    }
    Ok(())
}

/// A value of `len` bytes against `max`; `what` names it in the message.
pub fn check_len(field: &str, len: usize, max: usize, what: &str) -> Result<(), FieldError> {
    if len > max {
        return Err(FieldError::new(
            "too_long",
            field,
            format!("{what} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

pub(super) fn check_decoded_size(
    field: &str,
    size: u64,
    max: u64,
    what: &str,
) -> Result<(), FieldError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_count_together_and_name_the_list_that_crosses() {
        assert_eq!(check_recipients(5, 0, 0, 5), Ok(()));
        let field = |r: Result<(), FieldError>| r.map_err(|e| (e.code, e.field));
        assert_eq!(
            field(check_recipients(6, 0, 0, 5)),
            Err(("too_many", "to".into()))
        );
        assert_eq!(
            field(check_recipients(2, 3, 1, 5)),
            Err(("too_many", "bcc".into()))
        );
        assert_eq!(
            field(check_recipients(2, 4, 0, 5)),
            Err(("too_many", "cc".into()))
        );
        assert_eq!(
            field(check_recipients(usize::MAX, usize::MAX, 0, 5)),
            Err(("too_many", "to".into()))
        );
        let e = check_recipients(0, 0, 6, 5).unwrap_err();
        assert!(e.message.contains("at most 5 recipients"), "{}", e.message);
    }
}
