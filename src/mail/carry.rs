//! How each attachment travels in the payload: as base64 `content`, as a
//! signed `url` (issue 13 item 5), or as metadata only. One decision,
//! [`carry`]; the link itself is made by the caller (the delivery
//! worker), which also keeps the bytes the link serves.

use crate::model::attachment_url::AttachmentMode;

/// Where an attachment's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// Base64 in `content`.
    Content,
    /// `content: null`, a `url` instead: the bytes are kept for it.
    Link,
    /// `content: null` and no `url`: over the inline limit with no way to
    /// link (no `POSTERN_PUBLIC_URL`); size and sha256 still tell what it was.
    Omitted,
}

/// How an attachment of `size` decoded bytes travels, under the route's
/// `mode` and `max_inline`, when links can (`linkable`) or cannot be made.
/// `"url"` mode without links falls back to the inline limit: the
/// configuration refuses that combination, so only payloads built without
/// a linker (tests, tools) get there.
pub fn carry(
    mode: AttachmentMode,
    max_inline: Option<usize>,
    size: usize,
    linkable: bool,
) -> Carry {
    let over = max_inline.is_some_and(|max| size > max);
    match (mode, over, linkable) {
        (AttachmentMode::Url, _, true) => Carry::Link,
        (_, false, _) => Carry::Content,
        (_, true, true) => Carry::Link,
        (_, true, false) => Carry::Omitted,
    }
}

/// The decoded bytes of an attachment sent as a link, for the caller to
/// keep: `index` is its place in the payload's `attachments`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedPart {
    pub index: usize,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttachmentMode::{Inline, Url};

    #[test]
    fn each_attachment_travels_one_way() {
        let cases: &[(AttachmentMode, Option<usize>, usize, bool, Carry)] = &[
            (Inline, None, 10_000_000, true, Carry::Content),
            (Inline, None, 10_000_000, false, Carry::Content),
            (Inline, Some(100), 100, true, Carry::Content),
            (Inline, Some(100), 101, true, Carry::Link),
            (Inline, Some(100), 101, false, Carry::Omitted),
            (Inline, Some(0), 0, true, Carry::Content),
            (Url, None, 1, true, Carry::Link),
            (Url, Some(100), 1, true, Carry::Link),
            (Url, None, 0, true, Carry::Link),
            // No linker: the inline limit alone decides.
            (Url, None, 1, false, Carry::Content),
            (Url, Some(100), 101, false, Carry::Omitted),
        ];
        for &(mode, max, size, linkable, want) in cases {
            assert_eq!(
                carry(mode, max, size, linkable),
                want,
                "{mode:?} {max:?} {size} {linkable}"
            );
        }
    }
}
