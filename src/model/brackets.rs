//! The one rule for the angle brackets around an SMTP path (`<a@b>`, RFC
//! 5321 4.1.2) and a Message-ID (`<left@right>`, RFC 5322 3.6.4): both are
//! a matched pair around the value, so only a matched pair is removed; a
//! lone `<` or `>` is part of what was written (and fails later checks
//! loudly instead of being half-repaired). Surrounding white space is folding
//! or CFWS, never part of the value, so it goes on both sides of the pair.

/// `value` without surrounding white space and one matched `<…>` pair.
pub fn strip_brackets(value: &str) -> &str {
    let v = value.trim();
    v.strip_prefix('<')
        .and_then(|inner| inner.strip_suffix('>'))
        .map_or(v, str::trim)
}

#[cfg(test)]
mod tests {
    use super::strip_brackets;

    #[test]
    fn strips_only_a_matched_pair_and_white_space() {
        for (input, want) in [
            ("<a@b>", "a@b"),
            ("a@b", "a@b"),
            ("", ""),
            ("<>", ""),
            ("  <a@b>  ", "a@b"),
            ("< a@b >", "a@b"),
            (" a@b ", "a@b"),
            ("<a@b", "<a@b"),
            ("a@b>", "a@b>"),
            ("<<a@b>>", "<a@b>"),
            ("<", "<"),
            (">", ">"),
        ] {
            assert_eq!(strip_brackets(input), want, "{input:?}");
        }
    }
}
