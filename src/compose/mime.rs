//! The MIME tree of a structured message: text and/or html, inline parts
//! under `multipart/related`, other attachments under `multipart/mixed`.

use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::{BodyPart, MimePart};

use super::attachment::{Attachment, attachment_part};
use super::text_body::encode_text_body;
use super::transfer::normalize_newlines;

/// A text or html body part, its transfer encoding chosen and applied here
/// ([`encode_text_body`]); the header comes last, where mail-builder puts
/// the one it chooses.
fn body_part<'a>(content_type: &'static str, text: &str) -> MimePart<'a> {
    let (cte, body) = encode_text_body(normalize_newlines(text));
    MimePart::new(content_type, BodyPart::Text(body.into())).transfer_encoding(cte)
}

pub(super) fn build_body<'a>(
    text: Option<&'a str>,
    html: Option<&'a str>,
    attachments: Vec<Attachment<'a>>,
) -> MimePart<'a> {
    let text_part = text.map(|text| body_part("text/plain", text));
    let html_part = html.map(|html| body_part("text/html", html));
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
        .partition(|attachment| attachment.is_inline());
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

#[cfg(test)]
mod tests {
    use crate::compose::test_support::*;
    use mail_parser::MimeHeaders;
    use serde_json::json;

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
}
