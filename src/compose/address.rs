//! Mailboxes: parsing the address forms a request may use (`"Name <a@b>"`,
//! `"<a@b>"`, `"a@b"`, `{"name", "address"}`), validating addresses
//! (dot-atom local part, host-name domain, UTF-8 for SMTPUTF8), envelope
//! addresses, recipient de-duplication, and writing an address list header
//! with its display names.

use std::collections::HashSet;

use super::error::FieldError;
use super::headers::check_header_text;
use super::request::AddressInput;
use super::words::{
    self, MAX_WORD_INPUT, could_be_encoded_word, encoded_word, is_plain, quoted_string,
};
use crate::model::one_or_many::OneOrMany;

/// Longest display name in octets. `mail-builder` writes a display name as a
/// single encoded word, so this bounds the header line length.
pub const MAX_DISPLAY_NAME_LEN: usize = 256;

/// Longest address in octets (RFC 5321 path limit minus the brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

const MAX_LOCAL_PART_LEN: usize = 64;
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A parsed and validated mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
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

pub(super) fn is_valid_domain(domain: &str, allow_utf8: bool) -> bool {
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

pub(super) fn parse_mailbox_list(
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
pub(super) fn envelope_address(value: &str, field: &str) -> Result<String, FieldError> {
    check_header_text(value, field)?;
    let trimmed = value.trim();
    let bare = trimmed
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(trimmed);
    validate_address(bare, field)?;
    Ok(bare.to_string())
}

pub(super) fn dedup_addresses<'a>(addresses: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    addresses
        .filter(|address| seen.insert(address.to_lowercase()))
        .map(str::to_string)
        .collect()
}

/// An address list header value: `Name <a@b>, "Odd, Name" <c@d>`, with
/// non-ASCII display names as RFC 2047 encoded words (never inside quotes,
/// each at most 75 characters). Addresses themselves go out as they are
/// (UTF-8 ones need SMTPUTF8 at the relay, RFC 6532). Unfolded, for tests;
/// the header writer folds [`address_pieces`].
#[cfg(test)]
pub(super) fn address_header(mailboxes: &[Mailbox]) -> String {
    address_pieces(mailboxes).concat()
}

/// [`address_header`] as pieces for [`super::fold`]: a fold may go between
/// mailboxes, between the words of a display name and before `<address>`,
/// never inside a quoted string or an encoded word.
pub(super) fn address_pieces(mailboxes: &[Mailbox]) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    for (i, mailbox) in mailboxes.iter().enumerate() {
        if let Some(last) = pieces.last_mut() {
            last.push(',');
        }
        let lead = if i == 0 { "" } else { " " };
        match mailbox.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => {
                let mut words = display_name(name);
                words[0].insert_str(0, lead);
                pieces.extend(words);
                pieces.push(format!(" <{}>", mailbox.address));
            }
            None => pieces.push(format!("{lead}<{}>", mailbox.address)),
        }
    }
    pieces
}

/// A display name as an RFC 5322 phrase, in pieces (never empty):
///
/// - plain ASCII words separated by single spaces: the words as they are;
/// - other plain ASCII (specials, runs of whitespace): one quoted-string;
/// - text that needs encoding (non-ASCII, or `=?`, which decoders find
///   inside quoted strings too) and fits one encoded word: that word;
/// - longer: words that are plain atoms between single spaces stay as
///   they are, and each run of the others is encoded, whitespace inside
///   included (`words::layout`). Decoders drop the whitespace between
///   two encoded words (RFC 2047 §6.2), so this reads back exactly in
///   them; Python's `email` joins such words with a space instead, so
///   there a name that needs more than one encoded word per run gains a
///   space where the words meet (nothing can serve both: see README).
pub(super) fn display_name(name: &str) -> Vec<String> {
    if is_plain(name) {
        if is_atom_phrase(name) {
            return words::layout(&words::segments(name));
        }
        return vec![quoted_string(name)];
    }
    if name.len() <= MAX_WORD_INPUT {
        return vec![encoded_word(name)];
    }
    let mut segments = words::segments(name);
    for i in 0..segments.len() {
        let single_space_after = segments.get(i + 1).is_none_or(|next| next.space == " ");
        let plain =
            is_atom(segments[i].word) && (i == 0 || segments[i].space == " ") && single_space_after;
        segments[i].encode = !plain;
    }
    words::layout(&segments)
}

/// RFC 5322 atext words, no `=?`, separated by single spaces.
fn is_atom_phrase(name: &str) -> bool {
    !name.is_empty() && name.split(' ').all(is_atom)
}

/// One RFC 5322 atom that no decoder takes for an encoded word.
fn is_atom(word: &str) -> bool {
    !word.is_empty()
        && !could_be_encoded_word(word)
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

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
