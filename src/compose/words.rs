//! The forms caller text takes in a header field: as it is, as an RFC 5322
//! quoted-string, or as RFC 2047 encoded words, and when each one is safe.
//! Every writer of caller text into a header (subjects, display names,
//! attachment parameters) asks `could_be_encoded_word` first.
//!
//! Text is cut into `Segment`s (a word and the whitespace before it);
//! a policy (unstructured text here, display names in
//! [`super::address`]) marks the segments that must be encoded, and
//! `layout` turns them into pieces for [`super::fold`]: plain words as
//! they are, each run of marked segments as encoded words of at most 75
//! characters. Only what needs it is encoded, so a long ASCII subject is
//! folded, not encoded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Longest encoded word (RFC 2047 §2).
pub(super) const MAX_ENCODED_WORD_LEN: usize = 75;

/// Input bytes that fit in one `=?utf-8?B?…?=` word of
/// [`MAX_ENCODED_WORD_LEN`]: 63 characters of base64 are 15 whole groups.
pub(super) const MAX_WORD_INPUT: usize = (MAX_ENCODED_WORD_LEN - "=?utf-8?B??=".len()) / 4 * 3;

/// Longest word of an unstructured value written as it is. A line may
/// hold 998 octets (RFC 5322 §2.1.1) and a word cannot be folded, so a
/// longer one (nothing but a pathological value has one) is encoded, which
/// can be split.
const MAX_PLAIN_WORD: usize = 800;

/// Longest whitespace run written as it is between two words of an
/// unstructured value; a longer one goes inside an encoded word, for the
/// same reason as [`MAX_PLAIN_WORD`] (a line must not be only whitespace,
/// so a run cannot be folded away).
const MAX_PLAIN_SPACE: usize = 64;

/// Whether a decoder could read part of `text` as an RFC 2047 encoded
/// word. Every encoded word starts with `=?`, and decoders find them
/// anywhere: inside a word (`pre=?…?=post`), a quoted string, an address
/// or a parameter value (Python's `email` does all of these). So text
/// without `=?` is the only text that is safe to write as it is.
pub(super) fn could_be_encoded_word(text: &str) -> bool {
    text.contains("=?")
}

/// Whether `text` can go into a header as it is: ASCII, and nothing a
/// decoder would take for an encoded word.
pub(super) fn is_plain(text: &str) -> bool {
    text.is_ascii() && !could_be_encoded_word(text)
}

/// Header whitespace (WSP): the only characters a header may be folded at.
fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// One `=?utf-8?B?…?=` word of `text` (at most [`MAX_WORD_INPUT`] bytes).
pub(super) fn encoded_word(text: &str) -> String {
    debug_assert!(text.len() <= MAX_WORD_INPUT);
    format!("=?utf-8?B?{}?=", STANDARD.encode(text))
}

/// `text` as `=?utf-8?B?…?=` words of at most [`MAX_WORD_INPUT`] bytes
/// each (75 characters), split on character boundaries. A word ends after
/// the last whitespace that fits when there is one: decoders that join
/// adjacent words with a space (Python does in display names, against
/// RFC 2047 §6.2) then show a doubled space rather than a word cut in two.
pub(super) fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(MAX_WORD_INPUT);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end < rest.len()
            && let Some(space) = rest[..end].rfind(is_wsp).filter(|&at| at > 0)
        {
            end = space + 1;
        }
        words.push(encoded_word(&rest[..end]));
        rest = &rest[end..];
    }
    words
}

/// `text` as an RFC 5322 / RFC 2045 quoted-string, `"` and `\\` escaped.
pub(super) fn quoted_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// A word of caller text with the whitespace before it. The first segment
/// carries any leading whitespace; trailing whitespace is a last segment
/// with an empty word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segment<'a> {
    pub(super) space: &'a str,
    pub(super) word: &'a str,
    /// Must be written inside an encoded word.
    pub(super) encode: bool,
}

/// Cuts `text` into segments at header whitespace, none marked.
pub(super) fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let word_start = rest.find(|c: char| !is_wsp(c)).unwrap_or(rest.len());
        let word_end = rest[word_start..]
            .find(is_wsp)
            .map_or(rest.len(), |at| word_start + at);
        out.push(Segment {
            space: &rest[..word_start],
            word: &rest[word_start..word_end],
            encode: false,
        });
        rest = &rest[word_end..];
    }
    out
}

/// Pieces of a header value for [`super::fold`]: a plain segment is its
/// whitespace and word as they are; a run of marked segments becomes
/// encoded words of its exact text, whitespace between them included (a
/// decoder drops the whitespace *between* adjacent encoded words). A run
/// is separated from plain text by one whitespace character, the first of
/// the whitespace before it; the rest of that whitespace goes inside.
/// Every piece but the first starts with whitespace, where it may be
/// folded.
pub(super) fn layout(segments: &[Segment<'_>]) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut run = String::new();
    let mut run_separator = "";
    let flush = |pieces: &mut Vec<String>, run: &mut String, separator: &str| {
        for (i, word) in encoded_words(run).into_iter().enumerate() {
            let lead = if i == 0 { separator } else { " " };
            pieces.push(format!("{lead}{word}"));
        }
        run.clear();
    };
    for segment in segments {
        if !segment.encode {
            if !run.is_empty() {
                flush(&mut pieces, &mut run, run_separator);
            }
            pieces.push(format!("{}{}", segment.space, segment.word));
            continue;
        }
        if run.is_empty() {
            if pieces.is_empty() {
                // Nothing before it: leading whitespace is text too.
                run_separator = "";
                run.push_str(segment.space);
            } else {
                let split = segment.space.chars().next().map_or(0, char::len_utf8);
                run_separator = &segment.space[..split];
                run.push_str(&segment.space[split..]);
            }
        } else {
            run.push_str(segment.space);
        }
        run.push_str(segment.word);
    }
    if !run.is_empty() {
        flush(&mut pieces, &mut run, run_separator);
    }
    pieces
}

/// An unstructured value (`Subject`, an extra header) as pieces: a word is
/// encoded when it is not plain ([`is_plain`]) or too long to write on a
/// line; whitespace that a reader would drop or could not get back
/// (leading, trailing, or too long a run) goes inside encoded words with
/// the words next to it, so the value reads back exactly.
pub(super) fn unstructured(text: &str) -> Vec<String> {
    let mut segments = segments(text);
    let last = segments.len().saturating_sub(1);
    for i in 0..segments.len() {
        let segment = segments[i];
        let leading = i == 0 && !segment.space.is_empty();
        let trailing = i == last && segment.word.is_empty();
        let long_space = segment.space.len() > MAX_PLAIN_SPACE;
        let encode = !is_plain(segment.word)
            || segment.word.len() > MAX_PLAIN_WORD
            || leading
            || trailing
            || long_space;
        segments[i].encode = encode;
        if (trailing || long_space) && i > 0 {
            // The whitespace needs a word on its left inside the run too.
            segments[i - 1].encode = true;
        }
    }
    layout(&segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader gets back from pieces: unfolded, adjacent encoded
    /// words joined without the whitespace between them (RFC 2047 §6.2).
    fn decode(pieces: &[String]) -> String {
        let mut out = String::new();
        let mut previous_encoded = false;
        for piece in pieces {
            let word = piece.trim_start_matches(is_wsp);
            let space = &piece[..piece.len() - word.len()];
            match word
                .strip_prefix("=?utf-8?B?")
                .and_then(|w| w.strip_suffix("?="))
            {
                Some(b64) => {
                    if !previous_encoded {
                        out.push_str(space);
                    }
                    let bytes = STANDARD.decode(b64).expect("base64");
                    out.push_str(std::str::from_utf8(&bytes).expect("whole characters"));
                    previous_encoded = true;
                }
                None => {
                    out.push_str(piece);
                    previous_encoded = false;
                }
            }
        }
        out
    }

    #[test]
    fn max_word_input_fills_a_75_character_word() {
        assert_eq!(MAX_WORD_INPUT, 45);
        assert_eq!(encoded_word(&"a".repeat(45)).len(), 72);
        let one_group_more = format!("=?utf-8?B?{}?=", STANDARD.encode("a".repeat(48)));
        assert!(one_group_more.len() > MAX_ENCODED_WORD_LEN);
    }

    #[test]
    fn encoded_words_are_short_whole_and_prefer_whitespace() {
        for text in [
            "ü".repeat(128),
            "Александр Сергеевич Пушкин".to_string(),
            "a".repeat(45),
            "€".repeat(16),
            format!("{} {}", "é".repeat(30), "ö".repeat(30)),
        ] {
            let words = encoded_words(&text);
            for word in &words {
                assert!(word.len() <= MAX_ENCODED_WORD_LEN, "{word}");
            }
            let pieces: Vec<String> = words
                .iter()
                .enumerate()
                .map(|(i, w)| if i == 0 { w.clone() } else { format!(" {w}") })
                .collect();
            assert_eq!(decode(&pieces), text);
        }
        // Split after the space, not inside a name.
        let words = encoded_words("Александр Сергеевич Пушкин");
        assert_eq!(words.len(), 2);
        assert_eq!(words[0], encoded_word("Александр Сергеевич "));
    }

    /// (value, expected pieces): only what needs it is encoded, and each
    /// value reads back exactly.
    #[test]
    fn unstructured_table() {
        let e = encoded_word;
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("", vec![]),
            ("hello world", vec!["hello".into(), " world".into()]),
            ("a\tb  c", vec!["a".into(), "\tb".into(), "  c".into()]),
            (
                "Grüße ☕ aus Köln",
                vec![e("Grüße ☕"), " aus".into(), format!(" {}", e("Köln"))],
            ),
            (
                "x =?utf-8?q?a?= y",
                vec!["x".into(), format!(" {}", e("=?utf-8?q?a?=")), " y".into()],
            ),
            ("  lead", vec![e("  lead")]),
            ("trail  ", vec![e("trail  ")]),
            ("a b  ", vec!["a".into(), format!(" {}", e("b  "))]),
            ("   ", vec![e("   ")]),
        ];
        for (value, want) in cases {
            let got = unstructured(value);
            assert_eq!(got, want, "{value:?}");
            assert_eq!(decode(&got), value, "{value:?}");
        }
    }

    #[test]
    fn unstructured_long_values_stay_plain_or_split() {
        let subject = "word ".repeat(40) + "end";
        let pieces = unstructured(&subject);
        assert!(pieces.iter().all(|p| !p.contains("=?")), "{pieces:?}");
        assert_eq!(pieces.concat(), subject);

        for value in [
            "s".repeat(2000),
            format!("a{}b", " ".repeat(100)),
            format!("{}x", "ö".repeat(1500)),
        ] {
            let pieces = unstructured(&value);
            assert_eq!(decode(&pieces), value);
            for piece in &pieces {
                assert!(piece.len() <= MAX_PLAIN_WORD + MAX_PLAIN_SPACE, "{piece}");
                assert!(!piece.trim().is_empty(), "a whitespace-only piece");
            }
        }
    }
}
