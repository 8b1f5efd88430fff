//! The envelope as lettre takes it: `MAIL FROM` and `RCPT TO` as stored in
//! the spool (bare or in angle brackets, `""` or `"<>"` for the null sender)
//! turned into lettre [`Address`]es. An address that does not parse is the
//! sender's mistake; the caller fails it without asking the relay.

use lettre::Address;

use crate::model::brackets::strip_brackets;

/// Parses `MAIL FROM`; `""` and `"<>"` are the null sender (bounces).
pub(super) fn parse_sender(mail_from: &str) -> Result<Option<Address>, String> {
    let bare = strip_brackets(mail_from);
    if bare.is_empty() {
        return Ok(None);
    }
    bare.parse::<Address>()
        .map(Some)
        .map_err(|e| format!("invalid sender address {mail_from:?}: {e}"))
}

pub(super) fn parse_recipient(rcpt: &str) -> Result<Address, String> {
    strip_brackets(rcpt)
        .parse::<Address>()
        .map_err(|e| format!("invalid recipient address {rcpt:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_sender(""), Ok(None));
        assert_eq!(parse_sender("<>"), Ok(None));
        assert_eq!(
            parse_sender("<a@example.com>")
                .unwrap()
                .unwrap()
                .to_string(),
            "a@example.com"
        );
        assert!(parse_sender("not an address").is_err());
        // UTF-8 passes through to lettre, which needs SMTPUTF8 on the wire.
        assert_eq!(
            parse_recipient("jörg@bücher.example").unwrap().to_string(),
            "jörg@bücher.example"
        );
        assert!(parse_recipient("").is_err());
        assert!(parse_recipient("a@b\r\nRCPT TO:<x@y>").is_err());
    }
}
