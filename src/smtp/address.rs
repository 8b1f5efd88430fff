//! Envelope addresses as the session keeps them.
//!
//! smtp-proto returns a mailbox with the quoting of its local part removed
//! (`"john doe"@x` becomes `john doe@x`, `".."@x` becomes `..@x`), which
//! is no longer the address the client sent, and not one a later parser
//! reads back the same way. [`canonical`] puts the quotes back where the
//! local part needs them (RFC 5321 4.1.2: a local part that is not a
//! dot-atom must be a quoted string), so the envelope, the payload and the
//! route matching all see the client's mailbox, in its canonical form.

use std::borrow::Cow;

/// Why an envelope address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// A control character, which RFC 5321 allows nowhere in a mailbox,
    /// not even quoted (qtextSMTP and quoted-pairSMTP are %d32-126).
    Control,
}

/// The mailbox `addr` (unquoted, as smtp-proto gives it) in canonical
/// form: the local part quoted when it is not a dot-atom, with `"` and `\`
/// escaped. Addresses without `@` (`<>`, `postmaster`) are returned as they
/// are.
pub fn canonical(addr: &str) -> Result<Cow<'_, str>, Invalid> {
    if addr.chars().any(char::is_control) {
        return Err(Invalid::Control);
    }
    // The domain never holds '@'; a quoted local part may.
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Ok(Cow::Borrowed(addr));
    };
    if is_dot_atom(local) {
        return Ok(Cow::Borrowed(addr));
    }
    let mut out = String::with_capacity(addr.len() + 4);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"@");
    out.push_str(domain);
    Ok(Cow::Owned(out))
}

/// RFC 5321 `Dot-string` (with RFC 6531's UTF-8): atoms of atext joined by
/// single dots, none empty.
fn is_dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let table: &[(&str, &str)] = &[
            ("bob@example.com", "bob@example.com"),
            ("first.last+tag@example.com", "first.last+tag@example.com"),
            ("..@example.com", "\"..\"@example.com"),
            (".bob@example.com", "\".bob\"@example.com"),
            ("bob.@example.com", "\"bob.\"@example.com"),
            ("a..b@example.com", "\"a..b\"@example.com"),
            ("john doe@example.com", "\"john doe\"@example.com"),
            ("a@b@example.com", "\"a@b\"@example.com"),
            ("a\"b@example.com", "\"a\\\"b\"@example.com"),
            ("a\\b@example.com", "\"a\\\\b\"@example.com"),
            ("a/b@example.com", "a/b@example.com"),
            ("jörg@bücher.example", "jörg@bücher.example"),
            ("", ""),
            ("postmaster", "postmaster"),
        ];
        for (input, want) in table {
            assert_eq!(canonical(input).unwrap(), *want, "{input}");
        }
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(canonical("a\u{1}b@x.test"), Err(Invalid::Control));
        assert_eq!(canonical("a\u{7f}@x.test"), Err(Invalid::Control));
        assert_eq!(canonical("a\tb@x.test"), Err(Invalid::Control));
    }
}
