//! Header blocks that are not ended by a blank line.
//!
//! RFC 5322 and RFC 2045 end a header block with an empty line. Some
//! mailers omit it, in a MIME part or in the message itself, and go straight
//! to the body. mail-parser then reads the body lines as (broken) header
//! fields and carries on to the next blank line, swallowing the body, the
//! boundary after it and sometimes the next part: the text is gone. Tolerant
//! parsers (Python's `email`, reporting `MissingHeaderBodySeparatorDefect`)
//! start the body at the first line that cannot be a header field. This
//! module does the same by inserting the missing blank line, so that
//! mail-parser sees a well-formed message; the caller parses the repaired
//! copy and reports the repair.

use std::collections::HashSet;

use mail_parser::{Message, MessageParser, MimeHeaders};

/// New boundaries can only be learnt from a parse of the repaired bytes
/// (a swallowed part may itself be a multipart); bounded, because each pass
/// parses the whole message again.
const MAX_PASSES: usize = 4;

/// A copy of `raw` with the missing blank lines inserted and where they
/// went (ascending offsets into the copy), or `None` when nothing is
/// missing. `first` is mail-parser's parse of `raw`, for its boundaries.
pub(crate) fn repair(raw: &[u8], first: &Message<'_>) -> Option<(Vec<u8>, Vec<usize>)> {
    let mut known = boundaries(first);
    let first_cuts = cuts(raw, &known);
    if first_cuts.is_empty() {
        return None;
    }
    let (mut buf, mut inserted) = insert(raw, &first_cuts, Vec::new());
    for _ in 1..MAX_PASSES {
        let Some(message) = MessageParser::default().parse(&buf) else {
            break;
        };
        let found = boundaries(&message);
        if found.is_subset(&known) {
            break;
        }
        let more = cuts(&buf, &found);
        known = found;
        if more.is_empty() {
            break;
        }
        (buf, inserted) = insert(&buf, &more, inserted);
    }
    Some((buf, inserted))
}

/// Inserts a line ending at each cut; moves the earlier insertions along.
fn insert(buf: &[u8], cuts: &[usize], mut inserted: Vec<usize>) -> (Vec<u8>, Vec<usize>) {
    let mut next = Vec::with_capacity(buf.len() + cuts.len() * 2);
    let mut from = 0;
    let mut shifts = Vec::with_capacity(cuts.len());
    for &cut in cuts {
        next.extend_from_slice(&buf[from..cut]);
        let ending = line_ending(buf, cut);
        // Where this one lands in the new buffer, and how far what follows moves.
        shifts.push((cut, next.len(), ending.len()));
        next.extend_from_slice(ending);
        from = cut;
    }
    next.extend_from_slice(&buf[from..]);
    // Both are ascending: one merge, not a product (hostile messages can
    // have many of each).
    let (mut next_shift, mut moved) = (0, 0);
    for pos in &mut inserted {
        while next_shift < shifts.len() && shifts[next_shift].0 <= *pos {
            moved += shifts[next_shift].2;
            next_shift += 1;
        }
        *pos += moved;
    }
    inserted.extend(shifts.iter().map(|(_, at, _)| at));
    inserted.sort_unstable();
    (next, inserted)
}

/// Like the line before it, so the repaired message keeps one style.
fn line_ending(buf: &[u8], at: usize) -> &'static [u8] {
    if at >= 2 && &buf[at - 2..at] == b"\r\n" || at == 0 {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// Every multipart boundary mail-parser found in the message's own
/// structure (nested messages keep theirs: they are delivered as they are).
fn boundaries(message: &Message<'_>) -> HashSet<Vec<u8>> {
    message
        .parts
        .iter()
        .filter_map(|p| p.content_type())
        .filter(|ct| ct.ctype().eq_ignore_ascii_case("multipart"))
        .filter_map(|ct| ct.attribute("boundary"))
        .filter(|b| !b.is_empty())
        .map(|b| b.as_bytes().to_vec())
        .collect()
}

#[derive(Debug, PartialEq)]
enum Line {
    Blank,
    /// `name:` or a continuation (leading white space).
    Field {
        continuation: bool,
    },
    /// `--boundary` (`close`: `--boundary--`) of a known boundary.
    Delimiter {
        close: bool,
    },
    Other,
}

fn classify(line: &[u8], boundaries: &HashSet<Vec<u8>>) -> Line {
    let trimmed = trim_end(line);
    if trimmed.is_empty() || trimmed.iter().all(|c| matches!(c, b' ' | b'\t')) {
        return Line::Blank;
    }
    if let Some(rest) = trimmed.strip_prefix(b"--") {
        if boundaries.contains(rest) {
            return Line::Delimiter { close: false };
        }
        if let Some(b) = rest.strip_suffix(b"--")
            && boundaries.contains(b)
        {
            return Line::Delimiter { close: true };
        }
    }
    if matches!(line[0], b' ' | b'\t') {
        return Line::Field { continuation: true };
    }
    match trimmed.iter().position(|&c| c == b':') {
        // RFC 5322 field names are printable ASCII; white space before the
        // colon is the obsolete syntax, still seen.
        Some(colon) => {
            let name = trim_end(&trimmed[..colon]);
            if !name.is_empty() && name.iter().all(|c| (0x21..=0x7e).contains(c)) {
                Line::Field {
                    continuation: false,
                }
            } else {
                Line::Other
            }
        }
        None => Line::Other,
    }
}

fn trim_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|c| !matches!(c, b'\r' | b'\n' | b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// Offsets where a blank line is missing, ascending.
fn cuts(buf: &[u8], boundaries: &HashSet<Vec<u8>>) -> Vec<usize> {
    /// Where the scan is: in a header block (the message's own when
    /// `top`), or in a body.
    enum State {
        Headers {
            top: bool,
            seen_field: bool,
            /// The first line that cannot be a header field, while no field
            /// line followed it: a field after it means a broken fold,
            /// which mail-parser already handles, not a missing separator.
            other: Option<usize>,
        },
        Body,
    }
    let mut out = Vec::new();
    let mut state = State::Headers {
        top: true,
        seen_field: false,
        other: None,
    };
    let mut start = 0;
    while start < buf.len() {
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i + 1);
        let line = &buf[start..end];
        let kind = classify(line, boundaries);
        state = match (state, kind) {
            (State::Body, Line::Delimiter { close: false }) => State::Headers {
                top: false,
                seen_field: false,
                other: None,
            },
            (State::Body, _) => State::Body,
            (
                State::Headers {
                    top,
                    seen_field,
                    other,
                },
                kind,
            ) => match kind {
                Line::Blank => {
                    if let Some(cut) = other.filter(|_| seen_field || !top) {
                        out.push(cut);
                    }
                    State::Body
                }
                Line::Delimiter { close } => {
                    // The block ran into the next boundary: the body starts
                    // at the odd line, or is empty.
                    if seen_field || !top || other.is_some() {
                        out.push(other.unwrap_or(start));
                    }
                    if close {
                        State::Body
                    } else {
                        State::Headers {
                            top: false,
                            seen_field: false,
                            other: None,
                        }
                    }
                }
                Line::Field { continuation } => State::Headers {
                    top,
                    seen_field: seen_field || !continuation,
                    other: if continuation { other } else { None },
                },
                Line::Other => State::Headers {
                    top,
                    seen_field,
                    other: other.or(Some(start)),
                },
            },
        };
        start = end;
    }
    if let State::Headers {
        top,
        seen_field,
        other: Some(cut),
    } = state
        && (seen_field || !top)
    {
        out.push(cut);
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(raw: &[u8]) -> (String, Vec<usize>) {
        let first = MessageParser::default().parse(raw).unwrap();
        let (buf, at) = repair(raw, &first).expect("repaired");
        (String::from_utf8(buf).unwrap(), at)
    }

    #[test]
    fn well_formed_messages_are_left_alone() {
        for raw in [
            &b"Subject: s\r\n\r\nbody\r\nwith lines\r\n"[..],
            b"Subject: only a header",
            b"From: a@b.example\nSubject: lf\n\nbody\n",
            b"From sender@example.org Mon Jan  1 00:00:00 2024\r\nSubject: mbox\r\n\r\nx",
            b"Subject: s\r\nX-Broken: folded\r\nnot indented\r\nTo: b@example.org\r\n\r\nx",
            b"\xff\xfe\x00garbage without any colon",
            b"Subject : obsolete space before the colon\r\n\r\nx",
        ] {
            let first = MessageParser::default().parse(raw).unwrap();
            assert_eq!(repair(raw, &first), None, "{raw:?}");
        }
    }

    #[test]
    fn a_part_without_a_blank_line_gets_one() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\nThis is the body\r\nsecond line\r\n\
            --b\r\nhello world\r\n\
            --b\r\nContent-Type: text/plain\r\n--b--\r\n";
        let (text, at) = repaired(raw);
        assert_eq!(
            text,
            "Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nThis is the body\r\nsecond line\r\n\
            --b\r\n\r\nhello world\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\n--b--\r\n"
        );
        assert_eq!(at.len(), 3);
        for pos in at {
            assert_eq!(&text.as_bytes()[pos..pos + 2], b"\r\n");
        }
    }

    #[test]
    fn the_message_itself_without_a_blank_line() {
        let (text, at) = repaired(b"From: a@b\nSubject: s\nHello Bob,\n\nbye\n");
        assert_eq!(text, "From: a@b\nSubject: s\n\nHello Bob,\n\nbye\n");
        assert_eq!(at, [21]);
    }

    #[test]
    fn a_swallowed_multipart_is_found_on_the_next_pass() {
        // The inner boundary is only visible once the outer part is repaired.
        let raw = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n\
            --a\r\nContent-Type: text/plain\r\nfirst\r\n\
            --a\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n\
            --c\r\nContent-Type: text/plain\r\nsecond\r\n--c--\r\n--a--\r\n";
        let (text, at) = repaired(raw);
        assert!(text.contains("text/plain\r\n\r\nfirst"), "{text}");
        assert!(text.contains("text/plain\r\n\r\nsecond"), "{text}");
        assert_eq!(at.len(), 2);
        for pos in at {
            assert_eq!(&text.as_bytes()[pos..pos + 2], b"\r\n");
        }
    }
}
