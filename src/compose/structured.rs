//! Structured mode: validates `from`, the recipients, `subject`, extra
//! `headers` and `attachments`, then writes the header section and the MIME
//! body ([`super::mime`]) and re-parses the header section before handing
//! the message back.

use super::Composed;
use super::address::{
    address_pieces, dedup_addresses, is_valid_domain, parse_mailbox, parse_mailbox_list,
};
use super::attachment::{check_attachment_size, validate_attachment};
use super::error::FieldError;
use super::fold;
use super::headers::{check_header_text, header_section_is_sound, validate_headers};
use super::limits::{
    Limits, MAX_ATTACHMENTS, MAX_HEADER_VALUE_LEN, MAX_HEADERS, check_count, check_len,
    check_recipients,
};
use super::mime::build_body;
use super::request::{AddressInput, SendRequest};
use super::words::unstructured;
use crate::model::one_or_many::OneOrMany;

/// Composes a structured request: every field validated, counts before
/// contents, then the message written and its header section re-parsed.
pub(super) fn compose_structured(
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

    // The header section is written here, field by field, and folded only
    // where its writers allow (never inside a quoted display name or an
    // encoded word). mail-builder writes the body; its own header writers
    // put encoded words inside quotes (RFC 2047 section 5 forbids that) and
    // fold anywhere there is a space.
    let mut fields: Vec<(&str, String)> = vec![(
        "From",
        fold::field("From", &address_pieces(std::slice::from_ref(&from))),
    )];
    if !to.is_empty() {
        fields.push(("To", fold::field("To", &address_pieces(&to))));
    }
    if !cc.is_empty() {
        fields.push(("Cc", fold::field("Cc", &address_pieces(&cc))));
    }
    // Bcc is deliberately never written: it only feeds `rcpt_to`.
    if !reply_to.is_empty() {
        fields.push((
            "Reply-To",
            fold::field("Reply-To", &address_pieces(&reply_to)),
        ));
    }
    if let Some(subject) = &req.subject {
        fields.push(("Subject", fold::field("Subject", &unstructured(subject))));
    }
    fields.push(("Date", format!("Date: {}\r\n", rfc5322_now())));
    fields.push(("Message-ID", format!("Message-ID: <{message_id}>\r\n")));
    for (name, value) in extra_headers {
        fields.push((name, fold::field(name, &unstructured(value))));
    }

    let expected_headers: Vec<String> = fields.iter().map(|(name, _)| name.to_string()).collect();
    let head: usize = fields.iter().map(|(_, field)| field.len()).sum();
    let body = build_body(req.text.as_deref(), req.html.as_deref(), attachments);
    // Sized up front: growing a Vec by doubling would briefly hold two
    // copies of a message that is mostly attachments.
    let mut message = Vec::with_capacity(head + body.size() + body.size() / 8 + 16 * 1024);
    for (_, field) in &fields {
        message.extend_from_slice(field.as_bytes());
    }
    message.extend_from_slice(b"MIME-Version: 1.0\r\n");
    body.write_part(&mut message).map_err(|err| {
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
