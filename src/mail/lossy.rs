//! `lossy_reasons`: where the JSON text of a message is not an exact
//! decoding of its bytes. Whenever there is one, the payload is marked
//! `lossy` and carries `raw`, so the original bytes stay reachable.

/// What kind of guess or repair was made.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq, Eq)]
pub enum LossyKind {
    /// A header held 8-bit bytes that are not UTF-8 (no charset can be
    /// declared for those); decoded as `charset`.
    #[serde(rename = "header_8bit")]
    Header8bit,
    /// An RFC 2047 encoded word (or an RFC 2231 parameter) whose bytes are
    /// not valid in its charset: U+FFFD stands in for them.
    #[serde(rename = "encoded_word")]
    EncodedWord,
    /// A text part's bytes are not valid in its declared charset, or the
    /// charset is unknown or missing for 8-bit text; decoded as `charset`.
    #[serde(rename = "body_charset")]
    BodyCharset,
    /// A part's transfer encoding could not be undone (base64 that is not
    /// base64, invalid quoted-printable, an unknown encoding): its bytes are
    /// given as sent.
    #[serde(rename = "transfer_encoding")]
    TransferEncoding,
    /// A header block was not ended by a blank line; its body was taken to
    /// start at the first line that cannot be a header field.
    #[serde(rename = "header_separator")]
    HeaderSeparator,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct LossyReason {
    pub kind: LossyKind,
    /// MIME part number as IMAP numbers them ("1", "2.1"); null for the
    /// message's own headers.
    pub part: Option<String>,
    /// The header concerned, for header kinds.
    pub header: Option<String>,
    /// The charset the text was finally decoded with.
    pub charset: Option<String>,
}

/// Caps the list: a hostile message with thousands of bad headers or parts
/// must not turn a few bytes each into a JSON object each. `lossy` stays
/// true, and `raw` has everything.
pub const MAX_REASONS: usize = 100;

#[derive(Debug, Default)]
pub(crate) struct Reasons(Vec<LossyReason>);

impl Reasons {
    /// Adds a reason unless the same one is already listed or the list is full.
    pub fn push(&mut self, reason: LossyReason) {
        if self.0.len() < MAX_REASONS && !self.0.contains(&reason) {
            self.0.push(reason);
        }
    }

    pub fn into_vec(self) -> Vec<LossyReason> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(header: &str) -> LossyReason {
        LossyReason {
            kind: LossyKind::Header8bit,
            part: None,
            header: Some(header.to_owned()),
            charset: Some("windows-1252".to_owned()),
        }
    }

    #[test]
    fn duplicates_are_dropped_and_the_list_is_capped() {
        let mut r = Reasons::default();
        r.push(reason("Subject"));
        r.push(reason("Subject"));
        r.push(reason("From"));
        assert_eq!(r.0, vec![reason("Subject"), reason("From")]);
        for i in 0..MAX_REASONS * 2 {
            r.push(reason(&format!("X-{i}")));
        }
        assert_eq!(r.into_vec().len(), MAX_REASONS);
    }

    #[test]
    fn kinds_serialise_as_documented() {
        let names: Vec<String> = [
            LossyKind::Header8bit,
            LossyKind::EncodedWord,
            LossyKind::BodyCharset,
            LossyKind::TransferEncoding,
            LossyKind::HeaderSeparator,
        ]
        .iter()
        .map(|k| serde_json::to_string(k).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                "\"header_8bit\"",
                "\"encoded_word\"",
                "\"body_charset\"",
                "\"transfer_encoding\"",
                "\"header_separator\""
            ]
        );
    }
}
