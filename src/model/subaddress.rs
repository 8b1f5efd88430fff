//! Subaddresses (RFC 5233): `bob+tag@example.com` is the mailbox
//! `bob@example.com` with the detail `tag`.
//!
//! A leaf: the SMTP session's routing ([`crate::route`]) matches exact
//! routes on the base address through [`split`], and the webhook payload
//! lists each recipient's parts (`envelope.rcpt_detail`) from the same
//! function, so both always agree on where the detail starts.
//!
//! The delimiter is a set of characters, like Postfix's
//! `recipient_delimiter`: the detail starts after the FIRST character of
//! the local part that is in the set (`a+b-c@x` with `+-` is `a` + `b-c`).

use serde::Serialize;

/// `POSTERN_RECIPIENT_DELIMITER`: the characters that start a detail;
/// empty turns subaddressing off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiter(String);

/// Why a delimiter set is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelimiterError {
    #[error(
        "{0:?} cannot be a delimiter: use characters of !#$%&'*+-/=?^_`{{|}}~ (letters, digits, '.', '@', quotes and spaces are part of addresses)"
    )]
    Character(char),
}

impl Default for Delimiter {
    /// `+`, the delimiter of Gmail, Fastmail, Postfix and Sieve examples.
    fn default() -> Delimiter {
        Delimiter("+".into())
    }
}

impl Delimiter {
    /// No subaddressing: every address is matched whole.
    pub fn off() -> Delimiter {
        Delimiter(String::new())
    }

    /// The set as configured. Only the specials of `atext` (RFC 5322) are
    /// allowed: a letter or a digit would cut ordinary names, `.` would cut
    /// `first.last`, and the others never occur in a dot-atom.
    pub fn parse(set: &str) -> Result<Delimiter, DelimiterError> {
        match set.chars().find(|c| !"!#$%&'*+-/=?^_`{|}~".contains(*c)) {
            Some(c) => Err(DelimiterError::Character(c)),
            None => Ok(Delimiter(set.to_string())),
        }
    }
}

/// One recipient in parts: `envelope.rcpt_detail` in the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parts<'a> {
    /// The whole address, as in `rcpt_to`.
    pub address: &'a str,
    /// The local part before the delimiter (the whole local part when
    /// there is no detail).
    pub user: &'a str,
    /// After the delimiter; `None` without one, `Some("")` for `bob+@x`.
    pub detail: Option<&'a str>,
    /// After the last `@`; empty for an address without one (`postmaster`).
    pub domain: &'a str,
}

impl<'a> Parts<'a> {
    /// The address without its detail (`bob@x` for `bob+tag@x`), or `None`
    /// when it has no detail.
    pub fn base(&self) -> Option<String> {
        self.detail?;
        Some(if self.domain.is_empty() && !self.address.contains('@') {
            self.user.to_string()
        } else {
            format!("{}@{}", self.user, self.domain)
        })
    }
}

/// Splits `addr` (canonical form, see `smtp::address`) into user, detail
/// and domain. No detail is found:
/// - with subaddressing off;
/// - in a quoted local part (`"bob+x y"@x`): it is one opaque string, and
///   taking it apart would change its quoting;
/// - when the user would be empty (`+tag@x`): that is not a mailbox.
///
/// An empty detail is kept (`bob+@x`: user `bob`, detail `""`), as RFC
/// 5233 distinguishes it from no detail. The delimiters are compared as
/// they are (they are never letters, so case does not arise); the parts
/// keep the case the client sent.
pub fn split<'a>(addr: &'a str, delimiter: &Delimiter) -> Parts<'a> {
    let (local, domain) = addr.rsplit_once('@').unwrap_or((addr, ""));
    let whole = Parts {
        address: addr,
        user: local,
        detail: None,
        domain,
    };
    if delimiter.0.is_empty() || local.starts_with('"') {
        return whole;
    }
    match local.find(|c| delimiter.0.contains(c)) {
        Some(0) | None => whole,
        Some(at) => {
            // Delimiters are ASCII: the detail starts one byte later.
            Parts {
                user: &local[..at],
                detail: Some(&local[at + 1..]),
                ..whole
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table() {
        let plus = Delimiter::default();
        let several = Delimiter::parse("+-").unwrap();
        let off = Delimiter::off();
        // (address, delimiter, user, detail, domain, base)
        type Row<'a> = (
            &'a str,
            &'a Delimiter,
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
        );
        let table: &[Row] = &[
            ("bob@x.test", &plus, "bob", None, "x.test", None),
            (
                "bob+tag@x.test",
                &plus,
                "bob",
                Some("tag"),
                "x.test",
                Some("bob@x.test"),
            ),
            // the first delimiter starts the detail; later ones are in it
            (
                "a+b+c@x.test",
                &plus,
                "a",
                Some("b+c"),
                "x.test",
                Some("a@x.test"),
            ),
            (
                "a-b+c@x.test",
                &several,
                "a",
                Some("b+c"),
                "x.test",
                Some("a@x.test"),
            ),
            (
                "a+b-c@x.test",
                &several,
                "a",
                Some("b-c"),
                "x.test",
                Some("a@x.test"),
            ),
            ("a-b@x.test", &plus, "a-b", None, "x.test", None),
            // an empty detail is a detail
            (
                "bob+@x.test",
                &plus,
                "bob",
                Some(""),
                "x.test",
                Some("bob@x.test"),
            ),
            // an empty user is not: the address stays whole
            ("+tag@x.test", &plus, "+tag", None, "x.test", None),
            // quoted local parts are opaque
            (
                "\"bob+x y\"@x.test",
                &plus,
                "\"bob+x y\"",
                None,
                "x.test",
                None,
            ),
            // case is kept in the parts
            (
                "Bob+Tag@X.test",
                &plus,
                "Bob",
                Some("Tag"),
                "X.test",
                Some("Bob@X.test"),
            ),
            ("bob+tag@x.test", &off, "bob+tag", None, "x.test", None),
            // no domain (`<Postmaster>` routed as `postmaster`)
            ("postmaster", &plus, "postmaster", None, "", None),
            (
                "postmaster+x",
                &plus,
                "postmaster",
                Some("x"),
                "",
                Some("postmaster"),
            ),
            // UTF-8 local parts (SMTPUTF8) around an ASCII delimiter
            (
                "jörg+ä@bücher.test",
                &plus,
                "jörg",
                Some("ä"),
                "bücher.test",
                Some("jörg@bücher.test"),
            ),
        ];
        for (addr, delim, user, detail, domain, base) in table {
            let p = split(addr, delim);
            assert_eq!(
                (p.address, p.user, p.detail, p.domain),
                (*addr, *user, *detail, *domain),
                "{addr} {delim:?}"
            );
            assert_eq!(p.base().as_deref(), *base, "{addr} {delim:?}");
        }
    }

    #[test]
    fn delimiter_characters() {
        for ok in ["", "+", "+-", "-", "=_~"] {
            assert!(Delimiter::parse(ok).is_ok(), "{ok:?}");
        }
        for (bad, c) in [
            ("a", 'a'),
            ("+.", '.'),
            ("@", '@'),
            (" ", ' '),
            ("\"", '"'),
            ("1", '1'),
        ] {
            assert_eq!(Delimiter::parse(bad), Err(DelimiterError::Character(c)));
        }
    }
}
