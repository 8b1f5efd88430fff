//! Raw RFC 5322 message → the `message` part of the webhook JSON payload.
//!
//! This module owns only what can be derived from the message bytes
//! themselves: headers, addresses, thread ids, bodies and attachments. The SMTP
//! envelope (MAIL FROM / RCPT TO, client address), delivery metadata and
//! payload signing belong to the caller, which wraps [`MessageJson`] into the
//! full payload.
//!
//! Parsing is delegated to `mail-parser`; this module decides which of its
//! views to trust. The guiding rule is that a webhook must never lose a
//! message: [`parse_message`] cannot fail, and whenever the bytes could not be
//! understood, or were understood only by guessing (see [`LossyReason`]), the
//! base64 of the untouched input is attached (`raw`), even if the route did
//! not ask for it, so the receiver can still recover the mail.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::parsers::MessageStream;
use mail_parser::{
    Address as ParsedAddress, Header as ParsedHeader, HeaderName, MessageParser, MessagePart,
    MimeHeaders, PartType,
};

use super::body::{self, Structure, TextKind};
use super::carry::{Carry, LinkedPart, carry};
use super::charset::{self, HeaderHint};
use super::deferred::{self, Deferred, Digest, Source, Splice};
use super::elide::{self, Elided};
use super::lossy::{LossyKind, LossyReason, Reasons};
use super::repair;
use super::reply::{self, Reply};
use super::transfer::{self, Cte, Transfer};
use crate::model::attachment_url::AttachmentMode;
use crate::model::brackets::strip_brackets;

/// Options that come from the route.
#[derive(Debug, Clone, Default)]
pub struct PayloadOptions {
    /// include `raw`: base64 of the whole message
    pub include_raw: bool,
    /// attachments larger than this many bytes get `content: null` (metadata still present). None = no limit.
    pub max_attachment_inline: Option<usize>,
    /// The route's `"attachments"` mode (see [`super::carry`]).
    pub attachments: AttachmentMode,
    /// Whether the caller can link attachments: then the ones that are
    /// not inlined come back in [`MessageJson::linked`] for it to keep
    /// and link.
    pub linkable: bool,
    /// Leave large base64 values (`content`, `raw`) for the sender to
    /// encode while sending: see [`super::deferred`] and
    /// [`MessageJson::deferred`].
    pub defer: bool,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Address {
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Attachment {
    /// MIME part number as IMAP numbers them ("2", "1.2"): places the part
    /// among the `parts` (e.g. an image between two texts).
    pub section: Option<String>,
    pub filename: Option<String>,
    /// `type/subtype`, lowercase, without parameters.
    pub content_type: String,
    /// Size of the transfer-decoded bytes.
    pub size: usize,
    /// Lowercase hex SHA-256 of the transfer-decoded bytes.
    pub sha256: String,
    /// `"attachment"` or `"inline"`.
    pub disposition: String,
    /// Without the angle brackets.
    pub content_id: Option<String>,
    /// Standard padded base64 of the decoded bytes; `None` when larger than
    /// [`PayloadOptions::max_attachment_inline`] or sent as a `url`.
    pub content: Option<String>,
    /// The signed link that serves the decoded bytes instead of `content`
    /// (filled by the caller, see [`MessageJson::linked`]).
    pub url: Option<String>,
    /// When `url` stops working (RFC 3339).
    pub url_expires_at: Option<String>,
}

/// One body text part, as the sender wrote it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct TextPart {
    /// MIME part number as IMAP numbers them ("1", "1.2").
    pub section: Option<String>,
    /// `text/plain` or `text/html`.
    pub content_type: String,
    /// As declared, lowercase; `None` when the part declares none.
    pub charset: Option<String>,
    /// `"inline"` when the part says so; `None` when it has no
    /// Content-Disposition (body parts are never attachments).
    pub disposition: Option<String>,
    /// Transfer- and charset-decoded; HTML source for text/html.
    pub body: String,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct MessageJson {
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// RFC 2047 decoded.
    pub subject: Option<String>,
    /// RFC 3339; `None` when the Date header is missing or unparseable (the
    /// original text is still available in `headers`).
    pub date: Option<String>,
    pub from: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub reply_to: Vec<Address>,
    /// Message ids without angle brackets.
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Every header of the top-level message, in order, duplicates kept.
    /// Names as written; values unfolded, RFC 2047 decoded and trimmed.
    pub headers: Vec<Header>,
    /// The message as a plain-text reader shows it: every text/plain body
    /// part in reading order (the plain alternative of each
    /// multipart/alternative), html-only parts converted to text; `None`
    /// when the message has no text/plain body part at all.
    pub text: Option<String>,
    /// The same for an HTML reader (plain-only parts escaped into it);
    /// `None` when the message has no text/html body part at all.
    pub html: Option<String>,
    /// The new text of a reply, without the quoted thread and the
    /// signature; `None` when not a reply or no boundary was found (see
    /// `reply.rs`).
    pub reply_text: Option<String>,
    /// Every body text part, in MIME order, alternatives included.
    pub parts: Vec<TextPart>,
    /// Attachments and inline parts (e.g. `cid:` images), but not the bodies.
    pub attachments: Vec<Attachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// true when mail-parser could not parse the message at all (then most fields are empty); `raw` is then ALWAYS included, regardless of include_raw, so nothing is lost
    pub parse_error: bool,
    /// true when some text above is not an exact decoding of the message
    /// (see `lossy_reasons`), or when `parse_error`; `raw` is then always
    /// included.
    pub lossy: bool,
    /// What was guessed or replaced, at most [`super::lossy::MAX_REASONS`].
    pub lossy_reasons: Vec<LossyReason>,
    /// The decoded bytes of the attachments to send as links, for the
    /// caller to keep and link ([`PayloadOptions::linkable`]); not sent.
    #[serde(skip)]
    pub linked: Vec<LinkedPart>,
    /// The values that stand as markers in this JSON
    /// ([`PayloadOptions::defer`]); their ranges are in the message parsed.
    #[serde(skip)]
    pub deferred: Vec<Deferred>,
}

impl MessageJson {
    fn unparsed(raw: &[u8], opts: &PayloadOptions) -> Self {
        let mut splice = Splice::new(opts.defer);
        let whole = splice.value(Source::Plain(0..raw.len()), raw);
        MessageJson {
            message_id: None,
            subject: None,
            date: None,
            from: Vec::new(),
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: Vec::new(),
            in_reply_to: Vec::new(),
            references: Vec::new(),
            headers: Vec::new(),
            text: None,
            html: None,
            reply_text: None,
            parts: Vec::new(),
            attachments: Vec::new(),
            raw: Some(whole),
            parse_error: true,
            lossy: true,
            lossy_reasons: Vec::new(),
            linked: Vec::new(),
            deferred: splice.deferred,
        }
    }
}

/// Converts a raw message into its JSON representation. Never fails and never
/// panics: input that cannot be parsed yields `parse_error: true` plus `raw`.
pub fn parse_message(raw: &[u8], opts: &PayloadOptions) -> MessageJson {
    // mail-parser promises not to panic, but it is a large hand-written parser
    // fed with attacker-controlled bytes and contains `debug_assert!`s on
    // "impossible" states. A panic here would drop the mail, so treat it like
    // any other unparseable message. (Only effective with panic=unwind.)
    match std::panic::catch_unwind(|| parse(raw, opts)) {
        Ok(Some(message)) => message,
        Ok(None) | Err(_) => MessageJson::unparsed(raw, opts),
    }
}

/// A large message is parsed from its elided copy ([`super::elide`]) when
/// every cut is inside a base64 attachment; any other outcome parses the
/// message itself, so the copy can change nothing but the memory used.
fn parse(raw: &[u8], opts: &PayloadOptions) -> Option<MessageJson> {
    if raw.len() > elide::ELIDE_ABOVE
        && let Some(elided) = elide::elide(raw)
    {
        let origin = Origin {
            message: raw,
            elided: Some(&elided),
        };
        if let Some(message) = convert(&origin, opts) {
            return Some(message);
        }
    }
    let origin = Origin {
        message: raw,
        elided: None,
    };
    convert(&origin, opts)
}

/// The message, and the copy of it that is parsed when it is elided.
struct Origin<'a> {
    message: &'a [u8],
    elided: Option<&'a Elided>,
}

impl Origin<'_> {
    /// The bytes mail-parser reads.
    fn parsed(&self) -> &[u8] {
        self.elided.map_or(self.message, |e| e.bytes.as_slice())
    }

    /// Where `part`'s body is in the message, when its offsets are valid.
    fn body(&self, part: &MessagePart<'_>) -> Option<std::ops::Range<usize>> {
        let range = part.offset_body as usize..part.offset_end as usize;
        if range.start > range.end || range.end > self.parsed().len() {
            return None;
        }
        Some(self.elided.map_or(range.clone(), |e| e.original(range)))
    }
}

fn convert(origin: &Origin<'_>, opts: &PayloadOptions) -> Option<MessageJson> {
    let original = origin.parsed();
    let first = MessageParser::default().parse(original)?;
    // Header blocks without their blank line: parse a repaired copy. From
    // here on `raw` is the bytes parsed (offsets point into them); only the
    // `raw` field is always the original.
    let fixed = repair::repair(original, &first);
    if fixed.is_some() && origin.elided.is_some() {
        return None;
    }
    let (raw, message, inserted) = match &fixed {
        Some((bytes, at)) => (
            bytes.as_slice(),
            MessageParser::default().parse(bytes.as_slice())?,
            at.as_slice(),
        ),
        None => (original, first, &[][..]),
    };
    // Offsets of parts point into the message (through the cuts) only
    // when no repair shifted them.
    let stored_body = |part: &MessagePart<'_>| fixed.is_none().then(|| origin.body(part)).flatten();
    let root = message.parts.first()?;
    // mail-parser returns Some for almost anything, e.g. junk without a colon
    // becomes one header *name*. Without a single `name:` field nothing was
    // understood, and only `raw` (forced on by parse_message) keeps it intact.
    if !root.headers.iter().any(|h| has_colon(raw, h)) {
        return None;
    }
    let mut reasons = Reasons::default();
    let sections = sections(&message.parts);
    let hint = implied_charset(&message.parts);
    separator_reasons(&message.parts, &sections, inserted, &mut reasons);

    // Raw 8-bit header bytes: mail-parser would turn every byte that is not
    // UTF-8 into U+FFFD, in the typed values too. Re-read the headers from a
    // UTF-8 copy instead (offsets then refer to that copy).
    let fixed = utf8_headers(header_bytes(raw, root), hint, None, &mut reasons);
    let reparsed = fixed
        .as_deref()
        .and_then(|b| MessageParser::default().parse_headers(b));
    let (block, typed) = match (&fixed, reparsed.as_ref().and_then(|m| m.parts.first())) {
        (Some(bytes), Some(part)) => (bytes.as_slice(), &part.headers),
        _ => (raw, &root.headers),
    };
    let headers: Vec<Header> = typed
        .iter()
        .map(|h| {
            let (header, replaced) = raw_header(block, h);
            if replaced {
                reasons.push(LossyReason {
                    kind: LossyKind::EncodedWord,
                    part: None,
                    header: Some(header.name.clone()),
                    charset: None,
                });
            }
            header
        })
        .collect();

    let structure = Structure::of(&message.parts);
    let elided_parts = match origin.elided {
        Some(elided) => elided.owner(&elidable(&message.parts, &structure))?,
        None => Vec::new(),
    };
    let mut splice = Splice::new(opts.defer);
    let mut decoded: Vec<Option<String>> = vec![None; message.parts.len()];
    for (id, _) in structure.texts() {
        decoded[id] = Some(body_text(
            raw,
            &message.parts[id],
            sections[id].clone(),
            &mut reasons,
        ));
    }
    let view = |kind: TextKind| {
        let pieces: Vec<(TextKind, &str)> = structure
            .view(kind)
            .into_iter()
            .filter_map(|(id, k)| Some((k, decoded[id].as_deref()?)))
            .collect();
        (!pieces.is_empty()).then(|| body::join(kind, &pieces))
    };
    let text = view(TextKind::Plain);
    let html = view(TextKind::Html);
    let parts = structure
        .texts()
        .filter_map(|(id, kind)| {
            let body = decoded[id].take()?;
            Some(text_part(
                &message.parts[id],
                sections[id].clone(),
                kind,
                body,
            ))
        })
        .collect();

    let mut linked = Vec::new();
    let attachments = structure
        .attachments()
        .enumerate()
        .map(|(index, id)| {
            let located = Located {
                part: &message.parts[id],
                section: sections[id].clone(),
                hint,
                is_root: id == 0,
            };
            let stored = Stored {
                message: origin.message,
                body: stored_body(&message.parts[id]),
                elided: elided_parts.contains(&id),
            };
            let (attachment, bytes) =
                attachment(raw, &located, &stored, opts, &mut splice, &mut reasons);
            if let Some(bytes) = bytes {
                linked.push(LinkedPart { index, bytes });
            }
            attachment
        })
        .collect();

    let lossy_reasons = reasons.into_vec();
    let lossy = !lossy_reasons.is_empty();
    // Same text as in `headers`; mail-parser's typed value is missing
    // when the header is the last bytes of the input.
    let subject = typed
        .iter()
        .position(|h| h.name == HeaderName::Subject)
        .map(|i| headers[i].value.clone())
        .filter(|s| !s.is_empty());
    let in_reply_to = ids(typed, HeaderName::InReplyTo);
    let references = ids(typed, HeaderName::References);
    let reply_text = reply::reply_text(&Reply {
        text: text.as_deref(),
        html: html.as_deref(),
        subject: subject.as_deref(),
        threaded: !in_reply_to.is_empty() || !references.is_empty(),
    });
    Some(MessageJson {
        message_id: ids(typed, HeaderName::MessageId).into_iter().next(),
        subject,
        date: first_value(typed, HeaderName::Date)
            .and_then(|v| v.as_datetime())
            // mail-parser fills in whatever it could scan; a month 0 or a
            // year 20 would be valid-looking but wrong RFC 3339.
            .filter(|d| d.is_valid())
            .map(|d| d.to_rfc3339()),
        from: addresses(typed, HeaderName::From),
        to: addresses(typed, HeaderName::To),
        cc: addresses(typed, HeaderName::Cc),
        reply_to: addresses(typed, HeaderName::ReplyTo),
        in_reply_to,
        references,
        headers,
        text,
        html,
        reply_text,
        parts,
        attachments,
        raw: (opts.include_raw || lossy)
            .then(|| splice.value(Source::Plain(0..origin.message.len()), origin.message)),
        parse_error: false,
        lossy,
        lossy_reasons,
        linked,
        deferred: splice.deferred,
    })
}

/// The attachments whose bodies a cut may be in: leaves that declare
/// base64 and that mail-parser decoded as base64 to their boundary (any
/// trouble there, and the message is parsed whole).
fn elidable(
    parts: &[MessagePart<'_>],
    structure: &Structure,
) -> Vec<(usize, std::ops::Range<usize>)> {
    structure
        .attachments()
        .filter(|&id| {
            let p = &parts[id];
            !matches!(p.body, PartType::Multipart(_) | PartType::Message(_))
                && transfer::cte(p) == Cte::Base64
                && p.encoding == mail_parser::Encoding::Base64
        })
        .map(|id| {
            (
                id,
                parts[id].offset_body as usize..parts[id].offset_end as usize,
            )
        })
        .collect()
}

/// Where an attachment's body is in the stored message.
struct Stored<'a> {
    message: &'a [u8],
    /// `None` when the offsets do not point into `message` (a repaired copy).
    body: Option<std::ops::Range<usize>>,
    /// A cut is in it: the parsed copy does not hold its bytes.
    elided: bool,
}

/// An attachment's bytes: decoded in memory, or a range of the message.
enum Found<'a> {
    Decoded(Cow<'a, [u8]>),
    Stored(Source),
}

/// Reports each blank line `repair` inserted, under the part whose header
/// block it now ends (`None` for the message's own).
fn separator_reasons(
    parts: &[MessagePart<'_>],
    sections: &[Option<String>],
    inserted: &[usize],
    reasons: &mut Reasons,
) {
    if inserted.is_empty() {
        return;
    }
    // Header blocks do not overlap; sorted, each insertion is a binary
    // search away (a hostile message can have many of both).
    let mut blocks: Vec<(usize, usize, usize)> = parts
        .iter()
        .enumerate()
        .map(|(id, p)| (p.offset_header as usize, p.offset_body as usize, id))
        .collect();
    blocks.sort_unstable();
    for &at in inserted {
        let i = blocks.partition_point(|&(start, _, _)| start <= at);
        let Some(&(_, end, id)) = i.checked_sub(1).and_then(|i| blocks.get(i)) else {
            continue;
        };
        if at < end {
            reasons.push(LossyReason {
                kind: LossyKind::HeaderSeparator,
                part: if id == 0 { None } else { sections[id].clone() },
                header: None,
                charset: None,
            });
        }
    }
}

fn text_part(
    part: &MessagePart<'_>,
    section: Option<String>,
    kind: TextKind,
    body: String,
) -> TextPart {
    TextPart {
        section,
        content_type: match kind {
            TextKind::Plain => "text/plain",
            TextKind::Html => "text/html",
        }
        .to_owned(),
        charset: part
            .content_type()
            .and_then(|ct| ct.attribute("charset"))
            .map(|c| c.trim().to_ascii_lowercase()),
        disposition: part
            .content_disposition()
            .filter(|cd| cd.is_inline())
            .map(|_| "inline".to_owned()),
        body,
    }
}

/// A part together with what is needed to describe it.
struct Located<'a, 'x> {
    part: &'a MessagePart<'x>,
    /// IMAP part number; `None` for a multipart root.
    section: Option<String>,
    hint: Option<HeaderHint<'a>>,
    /// The message itself (a single-part message): its headers are the
    /// message's, already reported as such.
    is_root: bool,
}

/// Parts nested deeper get no number: a number's length grows with the
/// depth, and thousands of parts at the bottom of a deep chain would each
/// carry one (quadratic output from a small message).
pub const MAX_SECTION_DEPTH: usize = 32;

/// IMAP-style part numbers ("1", "2.1"), indexed like `parts`: a single-part
/// message's body is "1", a multipart root has none, and nested messages
/// (attachments) are not descended into. Iterative: multipart nesting depth
/// is attacker-controlled.
fn sections(parts: &[MessagePart<'_>]) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = vec![None; parts.len()];
    let mut stack: Vec<(&[u32], String, usize)> = match parts.first().map(|p| &p.body) {
        Some(PartType::Multipart(children)) => vec![(children.as_slice(), String::new(), 1)],
        Some(_) => {
            out[0] = Some("1".to_owned());
            Vec::new()
        }
        None => Vec::new(),
    };
    while let Some((children, prefix, depth)) = stack.pop() {
        if depth > MAX_SECTION_DEPTH {
            continue;
        }
        for (i, &id) in children.iter().enumerate() {
            let id = id as usize;
            // The root and parts already numbered are skipped, so a
            // malformed tree cannot loop.
            if id == 0 || out.get(id).is_none_or(Option::is_some) {
                continue;
            }
            let number = if prefix.is_empty() {
                (i + 1).to_string()
            } else {
                format!("{prefix}.{}", i + 1)
            };
            if let PartType::Multipart(grandchildren) = &parts[id].body {
                stack.push((grandchildren.as_slice(), number.clone(), depth + 1));
            }
            out[id] = Some(number);
        }
    }
    out
}

/// The first legacy charset a text part declares: the best evidence of
/// what raw 8-bit header bytes are in (see [`charset::header_hint`]).
fn implied_charset<'a>(parts: &'a [MessagePart<'_>]) -> Option<HeaderHint<'a>> {
    parts.iter().find_map(|part| {
        let ct = part.content_type()?;
        if !ct.ctype().eq_ignore_ascii_case("text") {
            return None;
        }
        charset::header_hint(ct.attribute("charset")?)
    })
}

fn header_bytes<'a>(raw: &'a [u8], part: &MessagePart<'_>) -> &'a [u8] {
    raw.get(part.offset_header as usize..part.offset_body as usize)
        .unwrap_or_default()
}

/// A UTF-8 copy of a header block whose bytes are not all UTF-8 (`None`
/// when they are), each offending field decoded as the message implies or
/// as windows-1252, and reported.
fn utf8_headers(
    block: &[u8],
    hint: Option<HeaderHint<'_>>,
    part: Option<&str>,
    reasons: &mut Reasons,
) -> Option<Vec<u8>> {
    if std::str::from_utf8(block).is_ok() {
        return None;
    }
    let mut out = Vec::with_capacity(block.len() + block.len() / 2);
    for field in fields(block) {
        if std::str::from_utf8(field).is_ok() {
            out.extend_from_slice(field);
            continue;
        }
        let (text, used) = charset::decode_header_field(field, hint);
        reasons.push(LossyReason {
            kind: LossyKind::Header8bit,
            part: part.map(str::to_owned),
            header: text.split_once(':').map(|(name, _)| name.trim().to_owned()),
            charset: Some(used),
        });
        out.extend_from_slice(text.as_bytes());
    }
    Some(out)
}

/// Splits a header block into fields: a line plus its continuation lines.
fn fields(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = block;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        loop {
            end = memchr::memchr(b'\n', &rest[end..]).map_or(rest.len(), |i| end + i + 1);
            if end >= rest.len() || !matches!(rest[end], b' ' | b'\t') {
                break;
            }
        }
        let (field, after) = rest.split_at(end);
        rest = after;
        Some(field)
    })
}

/// The transfer-decoded bytes of a part; a transfer encoding that had to be
/// repaired or could not be undone is reported.
fn transfer_bytes<'a>(
    raw: &'a [u8],
    part: &'a MessagePart<'_>,
    section: Option<&str>,
    reasons: &mut Reasons,
) -> Cow<'a, [u8]> {
    let (bytes, outcome) = transfer::decoded(raw, part);
    if outcome != Transfer::Clean {
        undecoded(section, reasons);
    }
    bytes
}

fn undecoded(section: Option<&str>, reasons: &mut Reasons) {
    reasons.push(LossyReason {
        kind: LossyKind::TransferEncoding,
        part: section.map(str::to_owned),
        header: Some("Content-Transfer-Encoding".to_owned()),
        charset: None,
    });
}

/// An attachment's bytes and their digest. A base64 or unencoded body that
/// was elided, or that is large and deferred, is read from the stored
/// message as it is needed (its digest decoded in pieces, never whole);
/// anything else is decoded here, as [`transfer::decoded`] says.
fn attachment_bytes<'a>(
    raw: &'a [u8],
    part: &'a MessagePart<'_>,
    section: Option<&str>,
    stored: &Stored<'_>,
    opts: &PayloadOptions,
    reasons: &mut Reasons,
) -> (Found<'a>, Digest) {
    if let Some(range) = stored.body.clone()
        && (stored.elided || opts.defer && range.len() >= deferred::DEFER_AT)
    {
        match transfer::cte(part) {
            Cte::Base64 => {
                if let Some(d) = deferred::digest_base64(stored.message, range.clone()) {
                    let len = d.len;
                    return (Found::Stored(Source::Base64 { range, len }), d);
                }
                // Not base64: delivered as sent, as `transfer::decoded` does.
                undecoded(section, reasons);
                let d = deferred::digest(&stored.message[range.clone()]);
                return (Found::Stored(Source::Plain(range)), d);
            }
            Cte::Identity => {
                let d = deferred::digest(&stored.message[range.clone()]);
                return (Found::Stored(Source::Plain(range)), d);
            }
            Cte::QuotedPrintable | Cte::Other => {}
        }
    }
    let bytes = transfer_bytes(raw, part, section, reasons);
    let d = deferred::digest(&bytes);
    (Found::Decoded(bytes), d)
}

/// The text of a body part, decoded by the charset policy rather than by
/// mail-parser (which turns invalid UTF-8 into U+FFFD and reads 8-bit bytes
/// under a US-ASCII label as windows-1252).
fn body_text(
    raw: &[u8],
    part: &MessagePart<'_>,
    section: Option<String>,
    reasons: &mut Reasons,
) -> String {
    let bytes = transfer_bytes(raw, part, section.as_deref(), reasons);
    let declared = part.content_type().and_then(|ct| ct.attribute("charset"));
    let decoded = charset::decode_body(&bytes, declared);
    if let Some(used) = decoded.guessed {
        reasons.push(LossyReason {
            kind: LossyKind::BodyCharset,
            part: section,
            header: None,
            charset: Some(used),
        });
    }
    decoded.text
}

fn first_value<'a, 'x>(
    headers: &'a [ParsedHeader<'x>],
    name: HeaderName<'static>,
) -> Option<&'a mail_parser::HeaderValue<'x>> {
    headers.iter().find(|h| h.name == name).map(|h| &h.value)
}

/// All occurrences are collected: duplicated address headers are obsolete
/// syntax (RFC 5322 §4.5.3) but real, and dropping recipients is worse.
fn addresses(headers: &[ParsedHeader<'_>], name: HeaderName<'static>) -> Vec<Address> {
    let convert = |a: &mail_parser::Addr<'_>| Address {
        name: a.name.as_deref().map(str::to_owned),
        address: a.address.as_deref().map(str::to_owned),
    };
    let mut out = Vec::new();
    for header in headers.iter().filter(|h| h.name == name) {
        match header.value.as_address() {
            Some(ParsedAddress::List(list)) => out.extend(list.iter().map(convert)),
            // Groups are flattened: receivers want mailboxes, and the group
            // display name is still visible in `headers`.
            Some(ParsedAddress::Group(groups)) => {
                out.extend(groups.iter().flat_map(|g| g.addresses.iter()).map(convert))
            }
            None => {}
        }
    }
    out
}

fn ids(headers: &[ParsedHeader<'_>], name: HeaderName<'static>) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name == name)
        // Not `as_text()`: for a list it returns the *last* id.
        .filter_map(|h| h.value.as_text_list())
        .flatten()
        // mail-parser already strips brackets from well-formed ids; this
        // covers the fallback paths where it returns the token as written.
        .map(|id| strip_brackets(id))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

fn has_colon(raw: &[u8], header: &ParsedHeader<'_>) -> bool {
    raw.get(header.offset_field as usize..header.offset_start as usize)
        .is_some_and(|name| name.ends_with(b":"))
}

/// Built from the raw bytes rather than mail-parser's typed values so every
/// header — including ones it only partially understood — comes out in a
/// uniform, lossless-as-possible textual form. Also says whether an encoded
/// word in it had to be decoded with U+FFFD.
fn raw_header(raw: &[u8], header: &ParsedHeader<'_>) -> (Header, bool) {
    let name = raw
        .get(header.offset_field as usize..header.offset_start as usize)
        .map(|n| {
            String::from_utf8_lossy(n)
                .trim()
                .trim_end_matches(':')
                .trim()
                .to_owned()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| header.name.as_str().to_owned());
    let (value, replaced) = raw
        .get(header.offset_start as usize..header.offset_end as usize)
        .map(|v| {
            let (value, replaced) = decode_encoded_words(&unfold(v));
            (value.trim().to_owned(), replaced)
        })
        .unwrap_or_default();
    (Header { name, value }, replaced)
}

/// Every line break together with the whitespace around the fold becomes one
/// space, so a value reads the same however the sender's MUA wrapped it.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if matches!(value[i], b'\r' | b'\n') {
            while i < value.len() && matches!(value[i], b'\r' | b'\n' | b' ' | b'\t') {
                i += 1;
            }
            while out.last().is_some_and(|c| matches!(c, b' ' | b'\t')) {
                out.pop();
            }
            out.push(b' ');
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded words in place and leaves everything else as
/// written. mail-parser's `parse_unstructured` would also decode, but it
/// re-tokenises the value and mangles encoded words inside quotes (as some
/// MUAs emit in display names), so only its word decoder is reused here.
/// The flag says a word held bytes invalid in its charset: mail-parser's
/// decoder then inserts U+FFFD, which a real encoded word never needs.
fn decode_encoded_words(value: &[u8]) -> (String, bool) {
    let mut replaced = false;
    let mut out: Vec<u8> = Vec::with_capacity(value.len());
    // Where the last encoded word ended: whitespace between two adjacent
    // encoded words is not part of the text (RFC 2047 §6.2).
    let mut after_word: Option<usize> = None;
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'=' && value.get(i + 1) == Some(&b'?') {
            let rest = &value[i + 1..];
            let mut stream = MessageStream::new(rest);
            if let Some(decoded) = stream.decode_rfc2047() {
                if let Some(end) = after_word
                    && out[end..].iter().all(|c| matches!(c, b' ' | b'\t'))
                {
                    out.truncate(end);
                }
                replaced |= decoded.contains(char::REPLACEMENT_CHARACTER);
                out.extend_from_slice(decoded.as_bytes());
                after_word = Some(out.len());
                // Always advance, whatever offset the stream reports.
                i += 1 + stream.offset().clamp(1, rest.len());
                continue;
            }
        }
        if !matches!(value[i], b' ' | b'\t') {
            after_word = None;
        }
        out.push(value[i]);
        i += 1;
    }
    (String::from_utf8_lossy(&out).into_owned(), replaced)
}

fn attachment(
    raw: &[u8],
    located: &Located<'_, '_>,
    stored: &Stored<'_>,
    opts: &PayloadOptions,
    splice: &mut Splice,
    reasons: &mut Reasons,
) -> (Attachment, Option<Vec<u8>>) {
    let part = located.part;
    let section = located.section.as_deref();
    // Filenames are where raw 8-bit bytes show up in part headers (old
    // mailers writing Latin-1 names unencoded): read names from a UTF-8 copy.
    let mut already_reported = Reasons::default();
    let header_reasons = if located.is_root {
        &mut already_reported
    } else {
        &mut *reasons
    };
    let fixed = utf8_headers(
        header_bytes(raw, part),
        located.hint,
        section,
        header_reasons,
    );
    let reparsed = fixed
        .as_deref()
        .and_then(|b| MessageParser::default().parse_headers(b));
    let named = reparsed
        .as_ref()
        .and_then(|m| m.parts.first())
        .unwrap_or(part);
    let filename = named.attachment_name().map(str::to_owned);
    if fixed.is_none()
        && let Some(name) = &filename
        && name.contains(char::REPLACEMENT_CHARACTER)
    {
        reasons.push(LossyReason {
            kind: LossyKind::EncodedWord,
            part: section.map(str::to_owned),
            header: Some(filename_header(part).to_owned()),
            charset: None,
        });
    }
    // Also for binary parts that mail-parser decoded already: its base64
    // decoder drops an unpadded last group, and text parts were
    // charset-converted, a nested message's `raw_message` can be the
    // *outer* message, and a part with an encoding problem holds its
    // still-encoded bytes. The receiver wants the file that was attached.
    let (found, digest) = attachment_bytes(raw, part, section, stored, opts, reasons);
    let content_id = named
        .content_id()
        .map(strip_brackets)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let disposition = match part.content_disposition() {
        Some(cd) if cd.is_inline() => "inline",
        Some(_) => "attachment",
        // Content-ID without a disposition is how multipart/related marks
        // parts referenced from the html (`cid:`).
        None if content_id.is_some() => "inline",
        None => "attachment",
    };
    let how = carry(
        opts.attachments,
        opts.max_attachment_inline,
        digest.len,
        opts.linkable,
    );
    let message = stored.message;
    let (content, linked) = match (how, found) {
        (Carry::Content, Found::Decoded(b)) if !splice.defers(b.len()) => {
            (Some(BASE64.encode(&b)), None)
        }
        (Carry::Content, Found::Decoded(b)) => (
            Some(splice.value(Source::Held(b.into_owned()), message)),
            None,
        ),
        (Carry::Content, Found::Stored(source)) => (Some(splice.value(source, message)), None),
        (Carry::Link, Found::Decoded(b)) => (None, Some(b.into_owned())),
        (Carry::Link, Found::Stored(source)) => (None, Some(source.to_vec(message))),
        (Carry::Omitted, _) => (None, None),
    };
    let attachment = Attachment {
        section: located.section.clone(),
        filename,
        content_type: content_type(part),
        size: digest.len,
        sha256: digest.sha256,
        disposition: disposition.to_owned(),
        content_id,
        content,
        url: None,
        url_expires_at: None,
    };
    (attachment, linked)
}

/// Which header a part's filename came from (`attachment_name` prefers
/// Content-Disposition's `filename` to Content-Type's `name`).
fn filename_header(part: &MessagePart<'_>) -> &'static str {
    match part.content_disposition() {
        Some(cd) if cd.attribute("filename").is_some() => "Content-Disposition",
        _ => "Content-Type",
    }
}

fn content_type(part: &MessagePart<'_>) -> String {
    if let Some(ct) = part.content_type()
        && let Some(subtype) = ct.subtype()
    {
        return format!("{}/{}", ct.ctype(), subtype).to_ascii_lowercase();
    }
    // No usable Content-Type: report what mail-parser decided the part is
    // (RFC 2045 defaults to text/plain, multipart/digest to message/rfc822).
    match part.body {
        PartType::Message(_) => "message/rfc822",
        PartType::Binary(_) | PartType::InlineBinary(_) => "application/octet-stream",
        _ => "text/plain",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    // The only place that knows where fixtures live; when this file moves to
    // src/mail/json.rs, "/tests/fixtures/" becomes "/tests/fixtures/".
    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/",
                $name
            ))
            .as_slice()
        };
    }

    fn all_fixtures() -> [(&'static str, &'static [u8]); 16] {
        [
            (
                "multipart_alternative",
                fixture!("multipart_alternative.eml"),
            ),
            ("attachments", fixture!("attachments.eml")),
            ("inline_image", fixture!("inline_image.eml")),
            ("encoded_headers", fixture!("encoded_headers.eml")),
            ("utf8_8bit", fixture!("utf8_8bit.eml")),
            ("broken_mime", fixture!("broken_mime.eml")),
            ("forwarded_rfc822", fixture!("forwarded_rfc822.eml")),
            ("latin1_headers", fixture!("latin1_headers.eml")),
            ("cp1252_fallback", fixture!("cp1252_fallback.eml")),
            ("digest", fixture!("digest.eml")),
            ("list_footer", fixture!("list_footer.eml")),
            (
                "apple_text_image_text",
                fixture!("apple_text_image_text.eml"),
            ),
            ("text_image_text", fixture!("text_image_text.eml")),
            ("multiple_plain", fixture!("multiple_plain.eml")),
            ("sloppy_mime", fixture!("sloppy_mime.eml")),
            ("bounce_comments", fixture!("bounce_comments.eml")),
        ]
    }

    fn parse(raw: &[u8]) -> MessageJson {
        parse_message(raw, &PayloadOptions::default())
    }

    /// The payload of `raw` parsed whole, and from its elided copy when
    /// the copy is taken (`None` when it falls back).
    fn both_ways(raw: &[u8], opts: &PayloadOptions) -> (String, Option<String>) {
        let whole = convert(
            &Origin {
                message: raw,
                elided: None,
            },
            opts,
        );
        let whole = serde_json::to_string(&whole).unwrap();
        let elided = elide::elide(raw).and_then(|e| {
            convert(
                &Origin {
                    message: raw,
                    elided: Some(&e),
                },
                opts,
            )
        });
        (whole, elided.map(|m| serde_json::to_string(&m).unwrap()))
    }

    fn b64_body(len: usize, seed: u32) -> String {
        let data: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(seed) >> 3) as u8)
            .collect();
        let encoded = BASE64.encode(data);
        let mut out = String::new();
        for line in encoded.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push_str("\r\n");
        }
        out
    }

    fn big_message(parts: &[String]) -> Vec<u8> {
        let mut m = String::from(
            "From: a@b.test\r\nTo: c@d.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\npreamble\r\n",
        );
        for p in parts {
            m.push_str("--BB\r\n");
            m.push_str(p);
        }
        m.push_str("--BB--\r\n");
        m.into_bytes()
    }

    fn attachment_part(name: &str, body: &str) -> String {
        format!(
            "Content-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{body}"
        )
    }

    #[test]
    fn a_large_attachment_is_parsed_from_the_elided_copy_with_the_same_payload() {
        let raw = big_message(&[
            "Content-Type: text/plain\r\n\r\nhello\r\n".into(),
            attachment_part("one.bin", &b64_body(1_500_000, 7)),
            "Content-Type: text/html\r\n\r\n<p>x</p>\r\n".into(),
            attachment_part("two.bin", &b64_body(300_000, 11)),
        ]);
        for opts in [
            PayloadOptions::default(),
            PayloadOptions {
                include_raw: true,
                max_attachment_inline: Some(400_000),
                ..PayloadOptions::default()
            },
        ] {
            let (whole, elided) = both_ways(&raw, &opts);
            assert_eq!(elided.as_deref(), Some(whole.as_str()));
        }
        // and parse_message takes that way
        let m = parse_message(&raw, &PayloadOptions::default());
        assert_eq!(m.attachments.len(), 2);
        assert_eq!(m.attachments[0].size, 1_500_000);
    }

    #[test]
    fn cuts_outside_a_clean_base64_attachment_fall_back_to_the_whole_message() {
        let long = b64_body(400_000, 3);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            // base64 in a text body
            (
                "text body",
                big_message(&[
                    format!(
                        "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{long}"
                    ),
                    attachment_part("a.bin", &b64_body(900_000, 5)),
                ]),
            ),
            // base64 lines where a part's header block is
            (
                "header block",
                big_message(&[
                    format!("{long}\r\nbody\r\n"),
                    attachment_part("a.bin", &long),
                ]),
            ),
            // an unencoded part that happens to look like base64
            (
                "7bit",
                big_message(&[
                    format!("Content-Type: application/octet-stream\r\n\r\n{long}"),
                    attachment_part("a.bin", &long),
                ]),
            ),
            // a nested message
            (
                "nested",
                big_message(&[format!(
                    "Content-Type: message/rfc822\r\n\r\n{}",
                    String::from_utf8(big_message(&[attachment_part("in.bin", &long)])).unwrap()
                )]),
            ),
            // no closing boundary: mail-parser drops the encoding
            ("unclosed", {
                let mut m = big_message(&[attachment_part("a.bin", &long)]);
                m.truncate(m.len() - "--BB--\r\n".len());
                m
            }),
            // a bad character after the run
            (
                "bad tail",
                big_message(&[attachment_part("a.bin", &format!("{long}!!!!\r\n"))]),
            ),
            // a header block without its blank line (repaired)
            (
                "repaired",
                big_message(&[format!(
                    "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n{long}"
                )]),
            ),
        ];
        for (name, raw) in cases {
            assert!(raw.len() > elide::ELIDE_ABOVE / 4, "{name}");
            for opts in [
                PayloadOptions::default(),
                PayloadOptions {
                    include_raw: true,
                    ..PayloadOptions::default()
                },
            ] {
                let (whole, elided) = both_ways(&raw, &opts);
                if let Some(elided) = elided {
                    assert_eq!(elided, whole, "{name}");
                }
                let taken = serde_json::to_string(&super::parse(&raw, &opts)).unwrap();
                assert_eq!(taken, whole, "{name}");
            }
        }
    }

    #[test]
    fn random_lines_in_a_large_message_never_change_the_payload() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let junk: &[&str] = &[
            "--BB\r\n",
            "--BB--\r\n",
            "\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            "AAAA=\r\n",
            "QUJD\r\n",
            "QUJDR\r\n",
            "!!\r\n",
            " folded\r\n",
            "=?utf-8?b?w6k=?=\r\n",
        ];
        let base = big_message(&[
            "Content-Type: text/plain\r\n\r\nhello\r\n".into(),
            attachment_part("one.bin", &b64_body(200_000, 7)),
            attachment_part("two.bin", &b64_body(100_000, 9)),
        ]);
        let mut used = 0;
        for round in 0..40 {
            let mut lines: Vec<&[u8]> = base.split_inclusive(|&b| b == b'\n').collect();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..lines.len());
                lines.insert(at, junk[rng.gen_range(0..junk.len())].as_bytes());
            }
            let raw = lines.concat();
            let opts = PayloadOptions {
                include_raw: round % 2 == 0,
                ..PayloadOptions::default()
            };
            let (whole, elided) = both_ways(&raw, &opts);
            if let Some(elided) = elided {
                used += 1;
                assert_eq!(elided, whole, "round {round}");
            }
        }
        // most insertions leave the attachments clean: the copy is used
        assert!(used > 5, "{used}");
    }

    /// Bypasses the `catch_unwind` safety net, so a panic anywhere in the
    /// conversion fails the test instead of being reported as parse_error.
    fn parse_unguarded(raw: &[u8]) {
        let opts = PayloadOptions {
            include_raw: false,
            max_attachment_inline: Some(16),
            ..PayloadOptions::default()
        };
        if let Some(m) = super::parse(raw, &opts) {
            serde_json::to_string(&m).unwrap();
        }
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        use sha2::{Digest as _, Sha256};
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn header_values<'a>(m: &'a MessageJson, name: &str) -> Vec<&'a str> {
        m.headers
            .iter()
            .filter(|h| h.name == name)
            .map(|h| h.value.as_str())
            .collect()
    }

    fn addr(name: Option<&str>, address: &str) -> Address {
        Address {
            name: name.map(str::to_owned),
            address: Some(address.to_owned()),
        }
    }

    /// The PDF attachment of attachments.eml, as generated (unwrapped).
    const PDF_B64: &str = "JVBERi0xLjQKJeLjz9MKMSAwIG9iago8PCAvVHlwZSAvQ2F0YWxvZyAvUGFnZXMgMiAwIFIgPj4KZW5kb2JqCjIgMCBvYmoKPDwgL1R5cGUgL1BhZ2VzIC9LaWRzIFszIDAgUl0gL0NvdW50IDEgPj4KZW5kb2JqCjMgMCBvYmoKPDwgL1R5cGUgL1BhZ2UgL1BhcmVudCAyIDAgUiAvTWVkaWFCb3ggWzAgMCA2MTIgNzkyXSA+PgplbmRvYmoKNCAwIG9iago8PCAvTGVuZ3RoIDExID4+CnN0cmVhbQoAAQL//v2AfxAgMAplbmRzdHJlYW0KZW5kb2JqCnhyZWYKMCA1CnRyYWlsZXIKPDwgL1NpemUgNSAvUm9vdCAxIDAgUiA+PgpzdGFydHhyZWYKOQolJUVPRgo=";

    #[test]
    fn fixtures_use_crlf_line_endings() {
        for (name, raw) in all_fixtures() {
            for (i, &b) in raw.iter().enumerate() {
                if b == b'\n' {
                    assert!(i > 0 && raw[i - 1] == b'\r', "{name}: bare LF at {i}");
                }
            }
        }
    }

    #[test]
    fn multipart_alternative_has_text_and_html() {
        let m = parse(fixture!("multipart_alternative.eml"));
        assert!(!m.parse_error);
        assert_eq!(
            m.text.as_deref(),
            Some(
                "Hi team,\r\n\r\nthe quarterly numbers are attached to the wiki.\r\n\r\nAlice\r\n"
            )
        );
        let html = m.html.as_deref().unwrap();
        assert!(html.starts_with("<div dir=\"ltr\">"), "{html}");
        assert!(html.contains("<b>wiki</b>"));
        assert!(m.attachments.is_empty());
        assert_eq!(m.subject.as_deref(), Some("Quarterly numbers"));
        assert_eq!(m.date.as_deref(), Some("2024-05-14T11:12:33+02:00"));
        assert_eq!(
            m.message_id.as_deref(),
            Some("CAHx5Vd3=Qm2Lk8x+JmKpZw@mail.gmail.com")
        );
        assert_eq!(
            m.from,
            vec![addr(Some("Alice Sender"), "alice.sender@gmail.com")]
        );
        assert_eq!(
            m.to,
            vec![
                addr(Some("Inbox"), "inbox@postern.example"),
                addr(None, "bob@example.org")
            ]
        );
        assert_eq!(
            m.cc,
            vec![addr(Some("Carol, Finance"), "carol@example.org")]
        );
        assert!(m.reply_to.is_empty());
        assert_eq!(
            header_values(&m, "Cc"),
            vec!["\"Carol, Finance\" <carol@example.org>"]
        );
        // Folded with a mix of spaces and tabs; unfolding gives single spaces.
        assert_eq!(
            header_values(&m, "DKIM-Signature"),
            vec![
                "v=1; a=rsa-sha256; c=relaxed/relaxed; d=gmail.com; s=20230601; \
                 t=1715677964; x=1716282764; h=to:subject:message-id:date:from:\
                 mime-version:from:to:cc:subject :date:message-id:reply-to; \
                 bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=Zm9vYmFyYmF6"
            ]
        );
        assert!(m.raw.is_none());
    }

    #[test]
    fn attachments_are_decoded_and_hashed() {
        let m = parse(fixture!("attachments.eml"));
        assert!(!m.parse_error);
        assert_eq!(
            m.text.as_deref(),
            Some("Hallo,\r\n\r\nanbei die Rechnung und meine Notizen.\r\n\r\nGruss\r\nDieter\r\n")
        );
        assert_eq!(m.html, None);
        assert_eq!(m.attachments.len(), 3);

        let pdf_bytes = BASE64.decode(PDF_B64).unwrap();
        let pdf = &m.attachments[0];
        assert_eq!(pdf.filename.as_deref(), Some("Rechnung_März.pdf"));
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.disposition, "attachment");
        assert_eq!(pdf.content_id, None);
        assert_eq!(pdf.size, 314);
        assert_eq!(pdf.size, pdf_bytes.len());
        // Expected hash computed outside Rust (Python hashlib) and here.
        assert_eq!(
            pdf.sha256,
            "e243ddc80c6989982899b806ac580207a684e97d664e3c0461d79b09a8a7b5e4"
        );
        assert_eq!(pdf.sha256, sha256_hex(&pdf_bytes));
        assert_eq!(pdf.content.as_deref(), Some(PDF_B64));

        let notes_bytes = "Notizen zum Treffen:\n- Budget prüfen\n- Termin: 3. Juni\n".as_bytes();
        let notes = &m.attachments[1];
        assert_eq!(notes.filename.as_deref(), Some("notes.txt"));
        assert_eq!(notes.content_type, "text/plain");
        assert_eq!(notes.size, notes_bytes.len());
        assert_eq!(notes.sha256, sha256_hex(notes_bytes));
        assert_eq!(
            BASE64.decode(notes.content.as_deref().unwrap()).unwrap(),
            notes_bytes
        );

        // The file's own ISO-8859-1 bytes, not a UTF-8 re-encoding; QP line
        // breaks are CRLF in MIME canonical form.
        let csv_bytes: &[u8] = b"Name;Stadt\r\nJ\xfcrgen;K\xf6ln\r\nRen\xe9;Z\xfcrich\r\n";
        let csv = &m.attachments[2];
        assert_eq!(csv.filename.as_deref(), Some("liste.csv"));
        assert_eq!(csv.content_type, "text/csv");
        assert_eq!(csv.size, csv_bytes.len());
        assert_eq!(csv.sha256, sha256_hex(csv_bytes));
        assert_eq!(
            BASE64.decode(csv.content.as_deref().unwrap()).unwrap(),
            csv_bytes
        );
    }

    #[test]
    fn inline_image_is_listed_with_content_id() {
        let m = parse(fixture!("inline_image.eml"));
        assert_eq!(m.text.as_deref(), Some("Our new logo is here.\r\n"));
        let html = m.html.as_deref().unwrap();
        // Quoted-printable decoded, soft line break joined.
        assert!(
            html.contains(r#"<img src="cid:logo@x" alt="logo">"#),
            "{html}"
        );
        assert_eq!(m.attachments.len(), 1);
        let logo = &m.attachments[0];
        assert_eq!(logo.content_type, "image/png");
        assert_eq!(logo.disposition, "inline");
        assert_eq!(logo.content_id.as_deref(), Some("logo@x"));
        assert_eq!(logo.filename.as_deref(), Some("logo.png"));
        let png = BASE64.decode(logo.content.as_deref().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(logo.size, 69);
        assert_eq!(
            logo.sha256,
            "7c36483b937f722bc8a8052eb61978bcbda084d1cec7c512e461c285016ded0d"
        );
    }

    #[test]
    fn content_id_without_disposition_counts_as_inline() {
        let raw = b"Content-Type: multipart/related; boundary=b\r\n\r\n--b\r\n\
            Content-Type: text/html\r\n\r\n<img src=cid:a>\r\n--b\r\n\
            Content-Type: image/gif\r\nContent-ID: <a>\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n--b--\r\n";
        let m = parse(raw);
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].disposition, "inline");
        assert_eq!(m.attachments[0].content_id.as_deref(), Some("a"));
        assert_eq!(m.attachments[0].size, 6);
    }

    #[test]
    fn encoded_and_folded_headers_are_decoded() {
        let m = parse(fixture!("encoded_headers.eml"));
        assert_eq!(m.subject.as_deref(), Some("Grüße aus Köln ☕"));
        assert_eq!(header_values(&m, "Subject"), vec!["Grüße aus Köln ☕"]);
        assert_eq!(
            m.from,
            vec![addr(Some("Jürgen Müller"), "juergen@example.de")]
        );
        assert_eq!(
            m.to,
            vec![
                addr(Some("Anna König"), "anna@example.de"),
                addr(Some("Bernd Schulz"), "bernd@example.de"),
            ]
        );
        assert_eq!(
            m.reply_to,
            vec![addr(Some("Support Team"), "support@example.de")]
        );
        assert_eq!(
            header_values(&m, "From"),
            vec!["Jürgen Müller <juergen@example.de>"]
        );
        assert_eq!(
            header_values(&m, "To"),
            vec!["Anna König <anna@example.de>, \"Bernd Schulz\" <bernd@example.de>"]
        );
        assert_eq!(
            header_values(&m, "X-Long-Header"),
            vec!["this header value is folded across two lines"]
        );
        assert_eq!(m.text.as_deref(), Some("Viele Grüße aus Köln!\r\n"));
        assert_eq!(m.date.as_deref(), Some("2024-05-17T09:00:00+02:00"));
    }

    #[test]
    fn message_ids_have_no_angle_brackets() {
        let m = parse(fixture!("encoded_headers.eml"));
        assert_eq!(m.message_id.as_deref(), Some("a1b2c3@mail.example.de"));
        assert_eq!(m.in_reply_to, vec!["parent-1@mail.example.de"]);
        assert_eq!(
            m.references,
            vec!["root-0@mail.example.de", "parent-1@mail.example.de"]
        );
        // The header view keeps what was written.
        assert_eq!(
            header_values(&m, "References"),
            vec!["<root-0@mail.example.de> <parent-1@mail.example.de>"]
        );
    }

    #[test]
    fn headers_keep_order_duplicates_and_spelling() {
        let m = parse(fixture!("encoded_headers.eml"));
        let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Received",
                "Received",
                "From",
                "To",
                "Reply-To",
                "Subject",
                "Date",
                "Message-ID",
                "In-Reply-To",
                "References",
                "X-Long-Header",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding",
            ]
        );
        assert_eq!(
            header_values(&m, "Received"),
            vec![
                "from a.example (a.example [192.0.2.1]) by mx.postern.example; \
                 Fri, 17 May 2024 07:00:00 +0000",
                "from b.example (b.example [192.0.2.2]) by a.example; \
                 Fri, 17 May 2024 06:59:58 +0000",
            ]
        );

        let m = parse(b"SUBJECT: shouting\r\nx-lower: a\r\nX-Lower: b\r\n\r\nbody");
        let pairs: Vec<(&str, &str)> = m
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("SUBJECT", "shouting"), ("x-lower", "a"), ("X-Lower", "b")]
        );
        assert_eq!(m.subject.as_deref(), Some("shouting"));
    }

    #[test]
    fn encoded_words_inside_quotes_and_invalid_utf8_in_headers() {
        let raw = b"From: \"=?UTF-8?Q?J=C3=B6rg?=\" <j@x.de>\r\n\
            Subject: =?utf-8?q?a?= b =?utf-8?q?c?=  =?utf-8?q?d?=\r\n\
            X-Latin1: caf\xe9\r\n\r\nbody";
        let m = parse(raw);
        assert_eq!(header_values(&m, "From"), vec!["\"Jörg\" <j@x.de>"]);
        assert_eq!(m.from, vec![addr(Some("Jörg"), "j@x.de")]);
        // Whitespace between adjacent encoded words is dropped, other kept.
        assert_eq!(m.subject.as_deref(), Some("a b cd"));
        // No charset anywhere: windows-1252, and the original bytes kept.
        assert_eq!(header_values(&m, "X-Latin1"), vec!["café"]);
        assert!(m.lossy);
        assert_eq!(
            m.lossy_reasons,
            vec![reason(
                LossyKind::Header8bit,
                None,
                Some("X-Latin1"),
                Some("windows-1252")
            )]
        );
        assert_eq!(BASE64.decode(m.raw.as_deref().unwrap()).unwrap(), raw);
    }

    fn reason(
        kind: LossyKind,
        part: Option<&str>,
        header: Option<&str>,
        charset: Option<&str>,
    ) -> LossyReason {
        LossyReason {
            kind,
            part: part.map(str::to_owned),
            header: header.map(str::to_owned),
            charset: charset.map(str::to_owned),
        }
    }

    #[test]
    fn latin1_headers_are_decoded_with_the_declared_body_charset() {
        let raw = fixture!("latin1_headers.eml");
        let m = parse(raw);
        assert!(!m.parse_error);
        assert_eq!(m.subject.as_deref(), Some("Grüße aus Köln"));
        assert_eq!(header_values(&m, "Subject"), vec!["Grüße aus Köln"]);
        assert_eq!(m.from, vec![addr(Some("Jörg Müller"), "joerg@example.de")]);
        assert_eq!(
            m.to,
            vec![
                addr(Some("Bäckerei Schäfer"), "info@baeckerei.example"),
                addr(None, "inbox@postern.example"),
            ]
        );
        assert_eq!(
            m.text.as_deref(),
            Some("Schöne Grüße aus Köln,\r\nJörg\r\n")
        );
        // The untouched headers and typed values around them are unchanged.
        assert_eq!(m.message_id.as_deref(), Some("latin1-1@example.de"));
        assert_eq!(m.date.as_deref(), Some("2024-05-20T10:00:00+02:00"));
        assert_eq!(m.headers.len(), 10);
        assert!(m.lossy);
        let latin1 = |h| reason(LossyKind::Header8bit, None, Some(h), Some("iso-8859-1"));
        // The body is exact: it declared its charset.
        assert_eq!(
            m.lossy_reasons,
            vec![latin1("From"), latin1("To"), latin1("Subject")]
        );
        assert_eq!(BASE64.decode(m.raw.as_deref().unwrap()).unwrap(), raw);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json["lossy_reasons"][0],
            serde_json::json!({"kind": "header_8bit", "part": null, "header": "From",
                               "charset": "iso-8859-1"})
        );
    }

    #[test]
    fn bytes_that_are_not_the_declared_utf8_fall_back_to_windows_1252() {
        let raw = fixture!("cp1252_fallback.eml");
        let m = parse(raw);
        // Declared UTF-8 implies nothing for the bytes that are not UTF-8.
        assert_eq!(m.subject.as_deref(), Some("“Angebot” für 100 €"));
        assert_eq!(
            m.text.as_deref(),
            Some("Unser “Angebot”: 100 €, gültig bis Freitag.\r\n")
        );
        assert_eq!(m.attachments.len(), 1);
        let att = &m.attachments[0];
        assert_eq!(att.filename.as_deref(), Some("Preisliste März.txt"));
        assert_eq!(
            BASE64.decode(att.content.as_deref().unwrap()).unwrap(),
            b"Preise\n"
        );
        let cp = Some("windows-1252");
        assert_eq!(
            m.lossy_reasons,
            vec![
                reason(LossyKind::Header8bit, None, Some("Subject"), cp),
                reason(LossyKind::BodyCharset, Some("1"), None, cp),
                reason(LossyKind::Header8bit, Some("2"), Some("Content-Type"), cp),
                reason(
                    LossyKind::Header8bit,
                    Some("2"),
                    Some("Content-Disposition"),
                    cp
                ),
            ]
        );
        assert!(m.lossy);
        assert_eq!(BASE64.decode(m.raw.as_deref().unwrap()).unwrap(), raw);
    }

    #[test]
    fn invalid_bytes_in_encoded_words_and_filenames_are_flagged() {
        let raw =
            b"Subject: =?utf-8?q?caf=E9?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
            --b\r\nContent-Type: application/pdf\r\n\
            Content-Disposition: attachment; filename*=utf-8''r%E9sum%E9.pdf\r\n\r\nx\r\n--b--\r\n";
        let m = parse(raw);
        assert_eq!(m.subject.as_deref(), Some("caf\u{fffd}"));
        assert_eq!(
            m.lossy_reasons,
            vec![
                reason(LossyKind::EncodedWord, None, Some("Subject"), None),
                reason(
                    LossyKind::EncodedWord,
                    Some("2"),
                    Some("Content-Disposition"),
                    None
                ),
            ]
        );
        assert!(m.raw.is_some());
    }

    #[test]
    fn a_wrong_body_charset_is_flagged_and_an_exact_one_is_not() {
        let m =
            parse(b"Subject: s\r\nContent-Type: text/plain; charset=iso-8859-3\r\n\r\n\xa5\r\n");
        assert_eq!(m.text.as_deref(), Some("\u{fffd}\r\n"));
        assert_eq!(
            m.lossy_reasons,
            vec![reason(
                LossyKind::BodyCharset,
                Some("1"),
                None,
                Some("iso-8859-3")
            )]
        );
        // US-ASCII label, UTF-8 bytes: the UTF-8 reading, not mojibake.
        let m = parse(
            b"Subject: s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\ncaf\xc3\xa9\r\n",
        );
        assert_eq!(m.text.as_deref(), Some("café\r\n"));
        assert!(!m.lossy && m.lossy_reasons.is_empty() && m.raw.is_none());
        // Valid UTF-8 headers (RFC 6532) are not lossy.
        let m = parse("Subject: Grüße\r\n\r\nx".as_bytes());
        assert_eq!(m.subject.as_deref(), Some("Grüße"));
        assert!(!m.lossy && m.raw.is_none());
    }

    #[test]
    fn part_numbers_follow_imap() {
        let raw = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n\
            --a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nt\r\n\
            --b\r\nContent-Type: text/html\r\n\r\nh\r\n--b--\r\n\
            --a\r\nContent-Type: image/png\r\n\r\np\r\n--a--\r\n";
        let message = MessageParser::default().parse(raw).unwrap();
        let numbers = sections(&message.parts);
        let numbers: Vec<Option<&str>> = numbers.iter().map(|s| s.as_deref()).collect();
        assert_eq!(
            numbers,
            [None, Some("1"), Some("1.1"), Some("1.2"), Some("2")]
        );
        let single = MessageParser::default()
            .parse(b"Subject: s\r\n\r\nbody")
            .unwrap();
        assert_eq!(sections(&single.parts), [Some("1".to_owned())]);
    }

    #[test]
    fn thousands_of_bad_headers_give_a_bounded_list() {
        let mut raw = Vec::new();
        for i in 0..5000 {
            raw.extend_from_slice(format!("X-{i}: ").as_bytes());
            raw.extend_from_slice(b"\xe9\r\n");
        }
        raw.extend_from_slice(b"\r\nbody");
        let m = parse(&raw);
        assert!(m.lossy);
        assert_eq!(m.lossy_reasons.len(), crate::mail::MAX_REASONS);
        assert_eq!(m.headers.len(), 5000);
        assert!(m.headers.iter().all(|h| h.value == "é"));
    }

    #[test]
    fn utf8_8bit_plain_text_only() {
        let m = parse(fixture!("utf8_8bit.eml"));
        assert!(!m.parse_error);
        assert_eq!(
            m.text.as_deref(),
            Some(
                "Hei! Blåbærsyltetøy på smørbrød, 日本語のテキスト, emoji 🎉.\r\n\
                 Zweite Zeile mit Umlauten: äöüß.\r\n"
            )
        );
        assert_eq!(m.html, None, "html must not be synthesised from text");
        assert!(m.attachments.is_empty());
        assert_eq!(m.subject.as_deref(), Some("Smörgåsbord"));
        assert_eq!(m.from, vec![addr(Some("Zoë Ødegård"), "zoe@example.no")]);
    }

    #[test]
    fn html_only_message_has_no_invented_text() {
        let single = parse(b"Subject: s\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n");
        assert_eq!(single.text, None);
        assert_eq!(single.html.as_deref(), Some("<p>hi</p>\r\n"));

        let alternative = parse(
            b"Subject: s\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
              --b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n",
        );
        assert_eq!(alternative.text, None);
        assert_eq!(alternative.html.as_deref(), Some("<p>hi</p>"));
        assert!(alternative.attachments.is_empty());
    }

    #[test]
    fn broken_mime_recovers_what_it_can() {
        let raw = fixture!("broken_mime.eml");
        let opts = PayloadOptions {
            include_raw: true,
            max_attachment_inline: None,
            ..PayloadOptions::default()
        };
        let m = parse_message(raw, &opts);
        assert!(!m.parse_error);
        assert_eq!(
            m.text.as_deref(),
            Some("This text must survive even though the MIME structure is broken.\r\n")
        );
        assert_eq!(m.subject.as_deref(), Some("Broken MIME structure"));
        // The unterminated base64 part is decoded up to where the input ends.
        let cut = m
            .attachments
            .iter()
            .find(|a| a.filename.as_deref() == Some("cut.bin"))
            .expect("cut.bin listed");
        let expected: Vec<u8> = (0u8..=110).collect();
        assert_eq!(cut.size, expected.len());
        assert_eq!(cut.sha256, sha256_hex(&expected));
        assert_eq!(
            BASE64.decode(cut.content.as_deref().unwrap()).unwrap(),
            expected
        );
        assert_eq!(BASE64.decode(m.raw.as_deref().unwrap()).unwrap(), raw);
    }

    #[test]
    fn undecodable_base64_is_delivered_as_is() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            !!!not base64***\r\n--b--\r\n";
        let m = parse(raw);
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(
            BASE64
                .decode(m.attachments[0].content.as_deref().unwrap())
                .unwrap(),
            b"!!!not base64***"
        );
    }

    #[test]
    fn nested_message_is_one_attachment_with_its_raw_bytes() {
        let raw = fixture!("forwarded_rfc822.eml");
        let m = parse(raw);
        assert_eq!(m.text.as_deref(), Some("See the forwarded message.\r\n"));
        assert_eq!(m.html, None, "the nested html must not leak out");
        assert_eq!(m.attachments.len(), 1);
        let fwd = &m.attachments[0];
        assert_eq!(fwd.content_type, "message/rfc822");
        assert_eq!(fwd.filename.as_deref(), Some("The original.eml"));
        assert_eq!(fwd.disposition, "attachment");

        let start = find(raw, b"Return-Path: <orig@example.net>");
        let end = find(raw, b"--nested-b--\r\n") + b"--nested-b--\r\n".len();
        let nested = &raw[start..end];
        assert_eq!(fwd.size, nested.len());
        assert_eq!(fwd.sha256, sha256_hex(nested));
        assert_eq!(
            BASE64.decode(fwd.content.as_deref().unwrap()).unwrap(),
            nested
        );
    }

    #[test]
    fn base64_encoded_nested_message_is_decoded() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
            --b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            U3ViamVjdDogbmVzdGVkDQoNCmJvZHkNCg==\r\n--b--\r\n";
        let m = parse(raw);
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].content_type, "message/rfc822");
        assert_eq!(
            BASE64
                .decode(m.attachments[0].content.as_deref().unwrap())
                .unwrap(),
            b"Subject: nested\r\n\r\nbody\r\n"
        );
    }

    fn find(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("needle present")
    }

    #[test]
    fn include_raw_round_trips_exactly() {
        let opts = PayloadOptions {
            include_raw: true,
            max_attachment_inline: None,
            ..PayloadOptions::default()
        };
        for (name, raw) in all_fixtures() {
            let m = parse_message(raw, &opts);
            let decoded = BASE64
                .decode(m.raw.as_deref().expect("raw present"))
                .unwrap();
            assert_eq!(decoded, raw, "{name}");
            let plain = parse(raw);
            assert_eq!(
                plain.raw.is_some(),
                plain.lossy,
                "{name}: raw only on request or when lossy"
            );
        }
    }

    #[test]
    fn max_attachment_inline_drops_content_but_keeps_metadata() {
        let full = parse(fixture!("attachments.eml"));
        let opts = PayloadOptions {
            include_raw: false,
            max_attachment_inline: Some(56),
            ..PayloadOptions::default()
        };
        let limited = parse_message(fixture!("attachments.eml"), &opts);
        let pdf = &limited.attachments[0];
        assert_eq!(pdf.content, None);
        assert_eq!(pdf.size, 314);
        assert_eq!(pdf.sha256, full.attachments[0].sha256);
        assert_eq!(pdf.filename, full.attachments[0].filename);
        // notes.txt is exactly at the limit: "larger than" excludes it.
        assert_eq!(limited.attachments[1].size, 56);
        assert_eq!(limited.attachments[1], full.attachments[1]);
        assert_eq!(limited.attachments[2], full.attachments[2]);

        let json = serde_json::to_value(&limited).unwrap();
        assert_eq!(json["attachments"][0]["content"], Value::Null);
    }

    #[test]
    fn serialises_with_snake_case_field_names() {
        let m = parse(fixture!("inline_image.eml"));
        let json = serde_json::to_value(&m).unwrap();
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |k: &[&str]| -> Vec<String> {
            let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&json),
            sorted(&[
                "message_id",
                "subject",
                "date",
                "from",
                "to",
                "cc",
                "reply_to",
                "in_reply_to",
                "references",
                "headers",
                "text",
                "html",
                "reply_text",
                "parts",
                "attachments",
                "parse_error",
                "lossy",
                "lossy_reasons",
            ]),
            "raw is omitted when not requested"
        );
        assert_eq!(
            keys(&json["attachments"][0]),
            sorted(&[
                "section",
                "filename",
                "content_type",
                "size",
                "sha256",
                "disposition",
                "content_id",
                "content",
                "url",
                "url_expires_at",
            ])
        );
        assert_eq!(keys(&json["from"][0]), sorted(&["name", "address"]));
        assert_eq!(keys(&json["headers"][0]), sorted(&["name", "value"]));
        assert_eq!(json["message_id"], "20240516183000.4711@shop.example");
        assert_eq!(json["to"][0]["name"], Value::Null);
        assert_eq!(json["attachments"][0]["content_id"], "logo@x");
        assert_eq!(json["attachments"][0]["size"], 69);
        assert_eq!(json["parse_error"], false);
        assert_eq!(json["lossy"], false);
        assert_eq!(json["lossy_reasons"], serde_json::json!([]));

        let with_raw = serde_json::to_value(parse_message(
            fixture!("inline_image.eml"),
            &PayloadOptions {
                include_raw: true,
                max_attachment_inline: None,
                ..PayloadOptions::default()
            },
        ))
        .unwrap();
        assert!(with_raw["raw"].is_string());
    }

    #[test]
    fn unparseable_input_forces_raw() {
        let inputs: [&[u8]; 5] = [
            b"",
            &[0u8; 64],
            b"\r\n\r\n\r\n",
            b"\xff\xfe\x00garbage\x80\x81 without any colon",
            b"   \t  ",
        ];
        for raw in inputs {
            // include_raw is false: a parse error must override it.
            let m = parse(raw);
            assert!(m.parse_error, "{raw:?}");
            assert_eq!(BASE64.decode(m.raw.as_deref().unwrap()).unwrap(), raw);
            assert!(m.headers.is_empty() && m.attachments.is_empty());
            assert_eq!((m.text, m.html, m.subject), (None, None, None));
            assert!(m.lossy);
            let json = serde_json::to_value(parse(raw)).unwrap();
            assert_eq!(json["parse_error"], true);
            assert!(json["raw"].is_string());
        }
    }

    #[test]
    fn unusual_but_parseable_inputs() {
        // Bare LF line endings (not SMTP-conformant, but seen in the wild).
        let m = parse(b"From: a@b.example\nSubject: lf\n\nbody\n");
        assert_eq!(m.subject.as_deref(), Some("lf"));
        assert_eq!(m.text.as_deref(), Some("body\n"));

        // Header as the very last bytes, no body separator.
        let m = parse(b"Subject: only a header");
        assert!(!m.parse_error);
        assert_eq!(m.subject.as_deref(), Some("only a header"));

        // Unparseable date: no made-up timestamp, original kept in headers.
        let m = parse(b"Date: Mon, 45 Foo 20 99:99:99\r\n\r\nx");
        assert_eq!(m.date, None);
        assert_eq!(header_values(&m, "Date"), vec!["Mon, 45 Foo 20 99:99:99"]);
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic xorshift so failures are reproducible.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: &[u8] = b"\0\r\n\t :;=?\"<>-_/abcAZ09+\xff\xc3\x80";
        for len in 0..400usize {
            let junk: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            parse_unguarded(&junk);
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            parse_unguarded(&random);
        }
    }

    #[test]
    fn truncated_fixtures_never_panic() {
        // Every prefix of every fixture: covers cuts inside headers,
        // boundaries, encoded words and base64 lines.
        for (_, raw) in all_fixtures() {
            for end in 0..=raw.len() {
                parse_unguarded(&raw[..end]);
            }
        }
    }

    #[test]
    fn mail_parser_assertion_does_not_escape() {
        // Found by mutation fuzzing: trips a `debug_assert!` inside
        // mail-parser 0.11.9 (message.rs, "Invalid part ID"), so in debug
        // builds this only passes thanks to the catch_unwind in parse_message.
        let raw = b"Content-Type:multipart/;boundary=fwdBoundary123\n\n\
            --fwdBoundary123Content-Type:message/rfc822;\n\n<\n\
            Content-Type:message/rfc822;\n\n\n--fwdBoundary123--";
        let m = parse(raw);
        assert!(!m.parse_error || m.raw.is_some());
    }

    #[test]
    fn huge_and_hostile_headers() {
        let mut raw = b"Subject: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 1 << 20));
        raw.extend_from_slice(b"\r\nX-Words: ");
        for _ in 0..20_000 {
            raw.extend_from_slice(b"=?utf-8?q?unterminated ");
        }
        raw.extend_from_slice(b"\r\nX-");
        raw.extend(std::iter::repeat_n(b'n', 100_000));
        raw.extend_from_slice(b": long name\r\n\r\nbody\r\n");
        let m = super::parse(&raw, &PayloadOptions::default()).expect("parsed");
        assert_eq!(m.subject.as_ref().map(String::len), Some(1 << 20));
        assert_eq!(m.headers.len(), 3);
        assert_eq!(m.headers[2].name.len(), 100_002);
        assert_eq!(m.text.as_deref(), Some("body\r\n"));
    }

    #[test]
    fn a_message_without_the_blank_line_after_its_headers() {
        let raw = b"From: a@b.example\r\nSubject: hi\r\nHello Bob,\r\n\r\nbye\r\n";
        let m = parse(raw);
        assert_eq!(m.subject.as_deref(), Some("hi"));
        assert_eq!(m.headers.len(), 2);
        assert_eq!(m.text.as_deref(), Some("Hello Bob,\r\n\r\nbye\r\n"));
        assert_eq!(
            m.lossy_reasons,
            vec![reason(LossyKind::HeaderSeparator, None, None, None)]
        );
        // raw is the original, not the repaired copy.
        assert_eq!(BASE64.decode(m.raw.as_deref().unwrap()).unwrap(), raw);
    }

    #[test]
    fn transfer_encodings_that_cannot_be_undone_are_flagged() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\
            begin 644 a\r\n--b\r\nContent-Type: application/pdf\r\n\
            Content-Transfer-Encoding: base64\r\n\r\nQ\r\n--b--\r\n";
        let m = parse(raw);
        assert_eq!(m.text.as_deref(), Some("begin 644 a"));
        // mail-parser would have made this 0 bytes.
        assert_eq!(
            BASE64
                .decode(m.attachments[0].content.as_deref().unwrap())
                .unwrap(),
            b"Q"
        );
        let cte = |part| {
            reason(
                LossyKind::TransferEncoding,
                Some(part),
                Some("Content-Transfer-Encoding"),
                None,
            )
        };
        assert_eq!(m.lossy_reasons, vec![cte("1"), cte("2")]);
    }

    #[test]
    fn single_part_views_are_the_part_itself() {
        for (name, raw) in all_fixtures() {
            let m = parse(raw);
            let of = |ct: &str| -> Vec<&str> {
                m.parts
                    .iter()
                    .filter(|p| p.content_type == ct)
                    .map(|p| p.body.as_str())
                    .collect()
            };
            // With one part of a kind and none of the other, the view is it.
            if m.parts.len() == 1 {
                let only = m.parts[0].body.as_str();
                match m.parts[0].content_type.as_str() {
                    "text/plain" => assert_eq!(m.text.as_deref(), Some(only), "{name}"),
                    _ => assert_eq!(m.html.as_deref(), Some(only), "{name}"),
                }
            }
            // A view exists exactly when a part of its kind does.
            assert_eq!(m.text.is_some(), !of("text/plain").is_empty(), "{name}");
            assert_eq!(m.html.is_some(), !of("text/html").is_empty(), "{name}");
        }
    }

    #[test]
    fn part_numbers_stop_at_a_depth() {
        let depth = 200;
        let mut raw = Vec::new();
        for i in 0..depth {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
        let m = parse(&raw);
        assert_eq!(m.text.as_deref(), Some("deep\r\n"));
        assert_eq!(m.parts.len(), 1);
        assert_eq!(m.parts[0].section, None);
        let message = MessageParser::default().parse(&raw).unwrap();
        let numbers = sections(&message.parts);
        let longest = numbers.iter().flatten().map(String::len).max().unwrap();
        assert_eq!(longest, MAX_SECTION_DEPTH * 2 - 1, "1.1.….1");
    }

    #[test]
    fn a_single_part_attachment_reports_its_headers_once() {
        let m = parse(
            b"Subject: caf\xe9\r\nContent-Type: application/pdf; name=\"r\xe9sum\xe9.pdf\"\r\n\r\nx",
        );
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].filename.as_deref(), Some("résumé.pdf"));
        assert_eq!(m.attachments[0].section.as_deref(), Some("1"));
        let cp = Some("windows-1252");
        assert_eq!(
            m.lossy_reasons,
            vec![
                reason(LossyKind::Header8bit, None, Some("Subject"), cp),
                reason(LossyKind::Header8bit, None, Some("Content-Type"), cp),
            ]
        );
    }

    #[test]
    fn many_parts_without_blank_lines() {
        let mut raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for i in 0..3000 {
            raw.extend_from_slice(
                format!("--b\r\nContent-Type: text/plain\r\nline {i}\r\n").as_bytes(),
            );
        }
        raw.extend_from_slice(b"--b--\r\n");
        let m = parse(&raw);
        assert_eq!(m.parts.len(), 3000);
        assert_eq!(m.parts[2999].body, "line 2999");
        assert_eq!(m.lossy_reasons.len(), crate::mail::MAX_REASONS);
        assert_eq!(m.lossy_reasons[0].kind, LossyKind::HeaderSeparator);
        assert_eq!(m.lossy_reasons[0].part.as_deref(), Some("1"));
    }
}
