//! SMTP replies we send, in one place so the exact text is easy to review
//! and to assert on in tests. Every reply carries an enhanced status code
//! (RFC 3463, RFC 2034). Replies that carry a value (a host name, a
//! queue id, a parser detail) are built by the functions below; no other
//! file writes a reply code.

use std::borrow::Cow;

use smtp_proto::Error as ParseError;

use super::printable::sanitize;
use crate::spool;

pub const EHLO_SYNTAX: &str = "501 5.5.4 Syntax: EHLO hostname";
pub const HELO_SYNTAX: &str = "501 5.5.4 Syntax: HELO hostname";
/// The PLAIN challenge: empty, the client sends its credentials next.
pub const PLAIN_CHALLENGE: &str = "334 ";

pub const DATA_START: &str = "354 Start mail input; end with <CRLF>.<CRLF>";
pub const OK: &str = "250 2.0.0 OK";
pub const SENDER_OK: &str = "250 2.1.0 Sender OK";
pub const RCPT_OK: &str = "250 2.1.5 Recipient OK";
pub const BYE: &str = "221 2.0.0 Bye";
pub const VRFY: &str = "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery";
pub const HELP: &str = "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP";

pub const SHUTTING_DOWN: &str = "421 4.3.2 Service shutting down, try again later";
pub const SESSION_TIMEOUT: &str = "421 4.4.2 Session time limit exceeded, closing connection";
pub const TOO_SLOW: &str = "421 4.4.2 Data transfer too slow, closing connection";
pub const TOO_MANY_CONNECTIONS: &str = "421 4.7.0 Too many connections, try again later";
pub const TOO_MANY_FROM_IP: &str =
    "421 4.7.0 Too many connections from your address, try again later";
pub const AUTH_BLOCKED: &str =
    "421 4.7.0 Too many failed authentication attempts, closing connection";
pub const TIMEOUT: &str = "421 4.4.2 Idle timeout, closing connection";
pub const TOO_MANY_ERRORS: &str = "421 4.7.0 Too many errors, closing connection";
pub const LOCAL_ERROR: &str = "451 4.3.0 Local error in processing, try again later";
pub const STORAGE_FULL: &str = "452 4.3.1 Insufficient system storage, try again later";
pub const TOO_MANY_RCPTS: &str = "452 4.5.3 Too many recipients";

pub const UNRECOGNIZED: &str = "500 5.5.1 Command unrecognized";
pub const NOT_UTF8: &str = "500 5.5.2 Syntax error: command is not valid UTF-8";
pub const SYNTAX: &str = "500 5.5.2 Syntax error";
pub const LINE_TOO_LONG: &str = "500 5.5.6 Line too long";
pub const BAD_SENDER: &str = "501 5.1.7 Bad sender address syntax";
pub const BAD_RCPT: &str = "501 5.1.3 Bad recipient address syntax";
pub const NOT_IMPLEMENTED: &str = "502 5.5.1 Command not implemented";
pub const NEED_HELO: &str = "503 5.5.1 Send EHLO or HELO first";
pub const NESTED_MAIL: &str = "503 5.5.1 Sender already specified";
pub const NEED_MAIL: &str = "503 5.5.1 Send MAIL first";
pub const NO_RCPTS: &str = "554 5.5.1 No valid recipients";
pub const RCPT_UNSAFE_FOR_ROUTE: &str =
    "550 5.1.3 Recipient address rejected: not usable in its route's webhook URL";
/// The app behind a route's `authorize_url` did not answer in time, or
/// not with `2xx`/`4xx`: temporary, the sender tries again.
pub const AUTHORIZE_UNAVAILABLE: &str =
    "451 4.3.0 Recipient cannot be verified now, try again later";
/// The app refused without a `text/plain` reason.
pub const AUTHORIZE_REFUSED: &str = "550 5.7.1 Recipient refused";
/// A route's `dmarc_reject`: the message fails DMARC and its `From`
/// domain's policy is `reject` (RFC 7489 §10.3's suggested reply).
pub const DMARC_REJECT: &str = "550 5.7.1 Email rejected per DMARC policy of the From domain";

/// The app's `4xx` answer to `authorize_url`: its text (already one safe
/// line) or ours.
pub fn authorize_refused(text: Option<&str>) -> String {
    app_refused(text, AUTHORIZE_REFUSED)
}

/// A sync route's app answered DATA with `5xx`, a redirect, or not in
/// time: temporary, the sender tries again (nothing is kept for it).
pub const SYNC_UNAVAILABLE: &str = "451 4.3.0 Message cannot be delivered now, try again later";
/// A sync route's app refused without a `text/plain` reason.
pub const SYNC_REFUSED: &str = "550 5.7.1 Message refused";

/// A sync route's `4xx` answer to DATA: its text or ours.
pub fn sync_refused(text: Option<&str>) -> String {
    app_refused(text, SYNC_REFUSED)
}

/// `550 5.7.1` with an app's text, or `fixed` when it gave none.
fn app_refused(text: Option<&str>, fixed: &str) -> String {
    match text {
        Some(t) => format!("550 5.7.1 {t}"),
        None => fixed.to_string(),
    }
}

pub const NO_ROUTE: &str = "550 5.1.1 Recipient address rejected: no route for this mailbox";
pub const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed maximum message size";
pub const EARLY_TALKER: &str = "554 5.5.1 Protocol error: client sent data before the greeting";
pub const TLS_READY: &str = "220 2.0.0 Ready to start TLS";
pub const TLS_ACTIVE: &str = "503 5.5.1 TLS already active";
pub const MUST_STARTTLS: &str = "530 5.7.0 Must issue a STARTTLS command first";
pub const AUTH_REQUIRED: &str = "530 5.7.0 Authentication required";
pub const AUTH_OK: &str = "235 2.7.0 Authentication successful";
pub const AUTH_FAILED: &str = "535 5.7.8 Authentication credentials invalid";
pub const AUTH_DISABLED: &str = "503 5.5.1 Authentication not enabled";
pub const AUTH_NEEDS_TLS: &str =
    "538 5.7.11 Encryption required for requested authentication mechanism";
pub const AUTH_ALREADY: &str = "503 5.5.1 Already authenticated";
pub const AUTH_IN_TRANSACTION: &str = "503 5.5.1 AUTH not permitted during a mail transaction";
pub const AUTH_MECHANISM: &str = "504 5.5.4 Unrecognized authentication type";
pub const AUTH_DECODE: &str = "501 5.5.2 Cannot decode AUTH response";
pub const AUTH_CANCELLED: &str = "501 5.7.0 Authentication cancelled";
pub const BARE_LINE_END: &str =
    "550 5.5.2 Message refused: bare CR or LF in content; lines must end with CRLF";

/// A reply's code class: the first digit.
pub fn class(line: &str) -> u8 {
    line.as_bytes().first().map_or(0, |b| b.wrapping_sub(b'0'))
}

/// The `220` greeting.
pub fn greeting(hostname: &str) -> String {
    format!("220 {hostname} ESMTP Postern ready")
}

/// The `250` answer to HELO; `client` is already printable.
pub fn helo(hostname: &str, client: &str) -> String {
    format!("250 {hostname} Hello {client}")
}

/// The multi-line `250` answer to EHLO: the greeting line, then one line
/// per keyword, `250-` on all but the last.
pub fn ehlo(hostname: &str, client: &str, keywords: &[String]) -> Vec<String> {
    let first = format!("{hostname} Hello {client}");
    let lines: Vec<&str> = std::iter::once(first.as_str())
        .chain(keywords.iter().map(String::as_str))
        .collect();
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let sep = if i == last { ' ' } else { '-' };
            format!("250{sep}{l}")
        })
        .collect()
}

/// A `334` AUTH challenge carrying `prompt` (base64).
pub fn challenge(prompt: &str) -> String {
    format!("334 {prompt}")
}

/// The `250` after DATA: the message is on disk under `id`.
pub fn queued(id: &str) -> String {
    format!("250 2.0.0 OK: queued as {id}")
}

/// A parser error becomes a reply.
pub fn for_parse_error(e: &ParseError) -> Cow<'static, str> {
    match e {
        ParseError::UnknownCommand => UNRECOGNIZED.into(),
        ParseError::InvalidSenderAddress => BAD_SENDER.into(),
        ParseError::InvalidRecipientAddress => BAD_RCPT.into(),
        ParseError::SyntaxError { syntax } => format!("501 5.5.4 Syntax: {syntax}").into(),
        ParseError::InvalidParameter { param } => {
            format!("501 5.5.4 Invalid parameter {param}").into()
        }
        ParseError::UnsupportedParameter { param } => {
            format!("555 5.5.4 Unsupported parameter {}", sanitize(param)).into()
        }
        ParseError::ResponseTooLong => LINE_TOO_LONG.into(),
        ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => SYNTAX.into(),
    }
}

/// Spool trouble is always temporary for the client: it keeps the message.
pub fn for_spool_error(e: &spool::Error) -> &'static str {
    match e {
        spool::Error::Full(_) => STORAGE_FULL,
        _ => LOCAL_ERROR,
    }
}

/// A command line that is not UTF-8: MAIL and RCPT get their address
/// replies (the address is what is broken), anything else the generic one.
pub fn for_invalid_utf8(line: &[u8]) -> &'static str {
    let verb = line.get(..4).unwrap_or(b"");
    if verb.eq_ignore_ascii_case(b"MAIL") {
        BAD_SENDER
    } else if verb.eq_ignore_ascii_case(b"RCPT") {
        BAD_RCPT
    } else {
        NOT_UTF8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_is_the_first_digit() {
        for (line, expected) in [
            ("250 2.0.0 OK", 2),
            ("354 Start", 3),
            ("421 4.3.2 x", 4),
            ("550 5.1.1 x", 5),
            ("", 0),
        ] {
            assert_eq!(class(line), expected, "{line:?}");
        }
        assert!(class("x") > 5);
    }

    #[test]
    fn ehlo_reply_continues_all_but_the_last_line() {
        let keywords = vec!["PIPELINING".to_string(), "SIZE 10".to_string()];
        assert_eq!(
            ehlo("mx.example", "client", &keywords),
            [
                "250-mx.example Hello client",
                "250-PIPELINING",
                "250 SIZE 10"
            ]
        );
        assert_eq!(ehlo("mx", "c", &[]), ["250 mx Hello c"]);
    }

    #[test]
    fn invalid_utf8_reply_names_the_broken_address() {
        assert_eq!(for_invalid_utf8(b"MAIL FROM:<\xff>\r\n"), BAD_SENDER);
        assert_eq!(for_invalid_utf8(b"rcpt TO:<\xff>\r\n"), BAD_RCPT);
        assert_eq!(for_invalid_utf8(b"HELO \xff\r\n"), NOT_UTF8);
        assert_eq!(for_invalid_utf8(b"\xff"), NOT_UTF8);
    }

    #[test]
    fn spool_trouble_is_temporary() {
        let full = spool::Error::Full(std::io::ErrorKind::StorageFull.into());
        assert_eq!(for_spool_error(&full), STORAGE_FULL);
        let other = spool::Error::Io(std::io::ErrorKind::PermissionDenied.into());
        assert_eq!(for_spool_error(&other), LOCAL_ERROR);
        assert_eq!(class(for_spool_error(&other)), 4);
    }

    #[test]
    fn unsupported_parameter_is_echoed_printable() {
        let e = ParseError::UnsupportedParameter {
            param: "X=a b".into(),
        };
        assert_eq!(for_parse_error(&e), "555 5.5.4 Unsupported parameter X=a?b");
    }
}
