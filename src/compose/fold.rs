//! Header fields on the wire: `Name: value` with CRLF, folded only between
//! the pieces its writer made ([`super::words`], [`super::address`],
//! [`super::params`]), never inside one, so a quoted display name or an
//! encoded word is never cut. A piece that starts with whitespace may go
//! to a new line (RFC 5322 §2.2.3 folding: CRLF before the whitespace,
//! which unfolding keeps); a line is broken once it would pass 78
//! characters (§2.1.1), and never left holding only the field name.

/// Lines are folded once they would pass this many characters.
const LINE_LEN: usize = 78;

/// The header field `name: pieces…` with its CRLF, folded.
pub(super) fn field(name: &str, pieces: &[String]) -> String {
    let mut out =
        String::with_capacity(name.len() + 2 + pieces.iter().map(String::len).sum::<usize>() + 8);
    out.push_str(name);
    out.push(':');
    let mut line = out.len();
    let mut first = true;
    for piece in pieces {
        let breakable = piece.starts_with([' ', '\t']);
        if first {
            // The value's first piece stays on the name's line.
            if !breakable {
                out.push(' ');
                line += 1;
            }
            first = false;
        } else if breakable && line + piece.len() > LINE_LEN {
            out.push_str("\r\n");
            line = 0;
        }
        out.push_str(piece);
        line += piece.len();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn folds_only_before_whitespace_and_past_78() {
        assert_eq!(field("X", &[]), "X:\r\n");
        assert_eq!(field("X", &pieces(&["a", " b"])), "X: a b\r\n");
        let long = "w".repeat(70);
        assert_eq!(
            field("Subject", &pieces(&[&long, " next", "glued", "\tt"])),
            format!("Subject: {long}\r\n nextglued\tt\r\n")
        );
        // A piece without whitespace in front is never moved, however long.
        let out = field("X", &pieces(&["a", &"b".repeat(100)]));
        assert_eq!(out, format!("X: a{}\r\n", "b".repeat(100)));
    }

    #[test]
    fn unfolding_gives_the_pieces_back() {
        let list: Vec<String> = (0..50).map(|i| format!(" word{i}")).collect();
        let out = field("X-Long", &list);
        for line in out.split("\r\n") {
            assert!(line.len() <= LINE_LEN, "{line}");
        }
        assert_eq!(
            out.replace("\r\n", "").trim_end(),
            format!("X-Long:{}", list.concat())
        );
    }
}
