//! SMTP replies we send, in one place so the exact text is easy to review
//! and to assert on in tests. Every reply carries an enhanced status code
//! (RFC 3463, RFC 2034).

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
