//! Client-supplied text made safe to echo: in replies (the EHLO greeting,
//! a parser error naming a parameter) and in the `Received:` header.

use std::borrow::Cow;

/// Keeps client-supplied text from breaking our header: printable ASCII
/// without spaces or parentheses (they would open a comment).
pub(crate) fn sanitize(s: &str) -> Cow<'_, str> {
    if s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'(' && b != b')')
    {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| {
                    if c.is_ascii_graphic() && c != '(' && c != ')' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect(),
        )
    }
}

/// [`sanitize`] for SMTPUTF8 sessions: non-ASCII letters stay.
pub(crate) fn sanitize_utf8(s: &str) -> String {
    s.chars()
        .map(|c| {
            let ascii_ok = c.is_ascii_graphic() && c != '(' && c != ')';
            let utf8_ok = !c.is_ascii() && !c.is_control() && !c.is_whitespace();
            if ascii_ok || utf8_ok { c } else { '?' }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_text_is_kept_printable() {
        assert_eq!(sanitize("client.example"), "client.example");
        assert_eq!(sanitize("a b(c)\u{e9}"), "a?b?c??");
        assert_eq!(
            sanitize_utf8("j\u{f6}rg@b\u{fc}cher.example"),
            "j\u{f6}rg@b\u{fc}cher.example"
        );
        assert_eq!(sanitize_utf8("a b\u{85}(x)"), "a?b??x?");
    }
}
