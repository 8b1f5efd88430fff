//! The `Received:` trace header (RFC 5321 4.4) that the DATA phase writes
//! in front of every message: what it says is decided here, purely, from
//! the session's facts ([`Trace`]).

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::printable::{sanitize, sanitize_utf8};
use super::session::{Session, Transaction};
use crate::spool::TlsInfo;

/// What the trace header records about one message.
pub(super) struct Trace<'a> {
    /// HELO/EHLO name as the client gave it.
    pub helo: Option<&'a str>,
    pub esmtp: bool,
    /// MAIL carried SMTPUTF8.
    pub smtputf8: bool,
    pub ip: IpAddr,
    pub tls: Option<&'a TlsInfo>,
    pub authenticated: bool,
    /// Our host name.
    pub host: &'a str,
    /// The spool id.
    pub id: &'a str,
    pub rcpts: &'a [&'a str],
    /// RFC 2822 date of receipt.
    pub date: &'a str,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The trace header for the message `tx` about to be spooled as `id`.
    pub(super) fn received_header(&self, id: &str, tx: &Transaction) -> String {
        let rcpts: Vec<&str> = tx.rcpts.iter().map(|(a, _)| a.as_str()).collect();
        let date = crate::model::clock::rfc2822_now();
        header(&Trace {
            helo: self.helo.as_deref(),
            esmtp: self.esmtp,
            smtputf8: tx.smtputf8,
            ip: self.peer.ip,
            tls: self.tls.as_ref(),
            authenticated: self.auth_user.is_some(),
            host: &self.inbound.settings.hostname,
            id,
            rcpts: &rcpts,
            date: &date,
        })
    }
}

/// The header, CRLF-terminated. `for` only with a single recipient, so one
/// recipient's copy does not reveal the others.
pub(super) fn header(t: &Trace) -> String {
    let from = from_domain(t.helo, t.ip);
    let with = with_protocol(t.esmtp, t.smtputf8, t.tls.is_some(), t.authenticated);
    let tls = match t.tls {
        Some(t) => format!("\r\n\t(using {} with cipher {})", t.version, t.cipher),
        None => String::new(),
    };
    let for_clause = match t.rcpts {
        // With SMTPUTF8 the message may carry UTF-8 headers (RFC 6532),
        // so a UTF-8 address is written as it is.
        [one] if t.smtputf8 => format!("\r\n\tfor <{}>", sanitize_utf8(one)),
        [one] => format!("\r\n\tfor <{}>", sanitize(one)),
        _ => String::new(),
    };
    format!(
        "Received: from {from}{tls}\r\n\tby {host} (Postern) with {with} id {id}{for_clause};\r\n\t{date}\r\n",
        host = t.host,
        id = t.id,
        date = t.date,
    )
}

/// The `from` part (RFC 5321 4.4 `From-domain`): the HELO name, when it is
/// a domain or an address literal, with the client's address as TCP-info
/// (`from mail.example ([192.0.2.7])`); any other HELO text is not a
/// domain, so the address stands in for it and the text goes into a
/// comment (`from [192.0.2.7] (helo=…)`, as Exim writes it), with every
/// character that could end the comment, escape out of it or split the
/// header at its `;` (what parsers take the date after) made `?`.
fn from_domain(helo: Option<&str>, ip: IpAddr) -> String {
    let ip = address_literal(ip);
    match helo {
        Some(h) if is_domain(h) || is_address_literal(h) => format!("{h} ({ip})"),
        Some(h) => {
            let inert: String = sanitize(h)
                .chars()
                .map(|c| {
                    if matches!(c, ';' | '"' | '\\') {
                        '?'
                    } else {
                        c
                    }
                })
                .collect();
            format!("{ip} (helo={inert})")
        }
        None => format!("{ip} (no helo)"),
    }
}

/// A host name as clients send it in HELO: dot-separated labels of ASCII
/// letters, digits, `-` (not at a label's ends) and `_` (not in the
/// RFC 5321 grammar, but common in HELO names of Windows machines and
/// harmless in the header), each 1 to 63 long, 253 at most.
fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `[...]` holding printable ASCII other than brackets and backslash
/// (RFC 5321 4.1.3, general-address-literal's dcontent).
fn is_address_literal(s: &str) -> bool {
    s.len() > 2
        && s.starts_with('[')
        && s.ends_with(']')
        && s[1..s.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'[' | b']' | b'\\'))
}

/// The client's address as the TCP-info of RFC 5321 4.4: an address
/// literal (4.1.3), where IPv6 carries its `IPv6:` tag so a reader does not
/// take it for a general-address-literal.
fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("[{a}]"),
        IpAddr::V6(a) => format!("[IPv6:{a}]"),
    }
}

/// The `with` protocol name of the Received: header (RFC 3848, RFC 6531).
fn with_protocol(esmtp: bool, smtputf8: bool, tls: bool, auth: bool) -> String {
    let base = match (esmtp, smtputf8) {
        (_, true) => "UTF8SMTP",
        (true, false) => "ESMTP",
        (false, false) => "SMTP",
    };
    if !esmtp && !smtputf8 {
        return base.to_string();
    }
    format!(
        "{base}{}{}",
        if tls { "S" } else { "" },
        if auth { "A" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_protocol_table() {
        // (esmtp, smtputf8, tls, auth) -> name
        for (esmtp, utf8, tls, auth, name) in [
            (false, false, false, false, "SMTP"),
            (false, false, true, true, "SMTP"),
            (true, false, false, false, "ESMTP"),
            (true, false, true, false, "ESMTPS"),
            (true, false, false, true, "ESMTPA"),
            (true, false, true, true, "ESMTPSA"),
            (true, true, false, false, "UTF8SMTP"),
            (true, true, true, true, "UTF8SMTPSA"),
        ] {
            assert_eq!(with_protocol(esmtp, utf8, tls, auth), name);
        }
    }

    #[test]
    fn client_address_is_an_rfc5321_address_literal() {
        for (ip, literal) in [
            ("192.0.2.7", "[192.0.2.7]"),
            ("2001:db8::1", "[IPv6:2001:db8::1]"),
            ("::1", "[IPv6:::1]"),
            ("::ffff:192.0.2.7", "[IPv6:::ffff:192.0.2.7]"),
        ] {
            assert_eq!(address_literal(ip.parse().unwrap()), literal, "{ip}");
        }
    }

    fn trace<'a>(rcpts: &'a [&'a str], tls: Option<&'a TlsInfo>) -> Trace<'a> {
        Trace {
            helo: Some("client (evil)"),
            esmtp: true,
            smtputf8: false,
            ip: "192.0.2.7".parse().unwrap(),
            tls,
            authenticated: false,
            host: "mx.example",
            id: "ID1",
            rcpts,
            date: "Mon, 1 Jan 2024 00:00:00 +0000",
        }
    }

    #[test]
    fn header_names_one_recipient_only() {
        assert_eq!(
            header(&trace(&["a@example.com"], None)),
            "Received: from [192.0.2.7] (helo=client??evil?)\r\n\tby mx.example (Postern) with ESMTP id ID1\r\n\tfor <a@example.com>;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n"
        );
        let two = header(&trace(&["a@example.com", "b@example.com"], None));
        assert!(!two.contains("for <"), "{two}");
    }

    #[test]
    fn helo_names_that_are_not_domains_go_into_a_comment() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for (helo, from) in [
            (Some("mail.example.org"), "mail.example.org ([192.0.2.7])"),
            (Some("DESKTOP-7_X"), "DESKTOP-7_X ([192.0.2.7])"),
            (Some("[192.0.2.7]"), "[192.0.2.7] ([192.0.2.7])"),
            (
                Some("[IPv6:2001:db8::1]"),
                "[IPv6:2001:db8::1] ([192.0.2.7])",
            ),
            (None, "[192.0.2.7] (no helo)"),
            // A `;` would end the tokens before the date for a parser
            // that splits there; quotes and backslashes quote and escape.
            (Some("x;by evil"), "[192.0.2.7] (helo=x?by?evil)"),
            (Some(r#"a"b\c"#), "[192.0.2.7] (helo=a?b?c)"),
            (Some("a)(b"), "[192.0.2.7] (helo=a??b)"),
            (Some("-bad.example"), "[192.0.2.7] (helo=-bad.example)"),
            (Some("a..b"), "[192.0.2.7] (helo=a..b)"),
            (Some("[1.2.3.4\\]"), "[192.0.2.7] (helo=[1.2.3.4?])"),
            (Some("héllo"), "[192.0.2.7] (helo=h?llo)"),
        ] {
            assert_eq!(from_domain(helo, ip), from, "{helo:?}");
        }
    }

    #[test]
    fn header_records_tls() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        };
        let h = header(&trace(&[], Some(&tls)));
        assert!(
            h.starts_with("Received: from [192.0.2.7] (helo=client??evil?)\r\n\t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\tby mx.example (Postern) with ESMTPS id ID1;"),
            "{h}"
        );
    }
}
