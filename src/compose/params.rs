//! MIME parameters (`Content-Type`, `Content-Disposition`): an RFC 2045
//! quoted-string where the value is plain ASCII, else an RFC 2231 extended
//! value, `filename*=utf-8''%C3%BC.pdf`, continued (`filename*0*=`,
//! `filename*1*=`, …) when it would not fit on a line. Never an encoded
//! word: RFC 2047 §5 forbids them in parameters, strict parsers (Python's
//! `email`) report them as defects, and decoders that do read them would
//! also read a plain `=?…?=` filename as one.

use std::borrow::Cow;

use super::fold;
use super::words::{is_plain, quoted_string};

/// A parameter's piece (`; key=value` on its line) is kept within this
/// many characters where continuations can make it so.
const MAX_PIECE_LEN: usize = 76;

/// The header field `name: value; key=…; …` with CRLF, folded between
/// parameters and never inside one.
pub(super) fn parameter_field(
    name: &str,
    value: &str,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
) -> String {
    let mut pieces = vec![value.to_string()];
    for (key, value) in params {
        for item in parameter(key, value) {
            if let Some(last) = pieces.last_mut() {
                last.push(';');
            }
            pieces.push(format!(" {item}"));
        }
    }
    fold::field(name, &pieces)
}

/// One parameter as one or more `key=value` items: `key="value"` for plain
/// text; else `key*=utf-8''…`, or RFC 2231 continuations `key*0*=utf-8''…`,
/// `key*1*=…` of at most [`MAX_PIECE_LEN`] characters each, cut between
/// characters (some readers decode each continuation on its own).
pub(super) fn parameter(key: &str, value: &str) -> Vec<String> {
    if is_plain(value) {
        return vec![format!("{key}={}", quoted_string(value))];
    }
    let encoded: Vec<String> = value.chars().map(percent_encode).collect();
    let single = format!("{key}*=utf-8''{}", encoded.concat());
    // `; ` before the item on a line of its own: the item with one space.
    if single.len() + 2 <= MAX_PIECE_LEN {
        return vec![single];
    }
    let mut items = Vec::new();
    let mut item = format!("{key}*0*=utf-8''");
    let mut empty = true;
    for char in &encoded {
        if !empty && item.len() + char.len() + 2 > MAX_PIECE_LEN {
            items.push(std::mem::take(&mut item));
            item = format!("{key}*{}*=", items.len());
        }
        item.push_str(char);
        empty = false;
    }
    items.push(item);
    items
}

/// Letters, digits, `.` and `_` stay as they are; every other byte of the
/// character's UTF-8 is `%XX`. RFC 2231 allows more characters unencoded,
/// but encoding them means an encoded value cannot spell anything that
/// looks like a header field (`X-Injected:`) in the raw message either.
fn percent_encode(c: char) -> String {
    if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
        return c.to_string();
    }
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2231 decoding of one parameter's items, as a reader does it.
    fn decode(key: &str, items: &[String]) -> String {
        if let [item] = items
            && let Some(quoted) = item.strip_prefix(&format!("{key}=\""))
        {
            return quoted
                .trim_end_matches('"')
                .replace("\\\"", "\"")
                .replace("\\\\", "\\");
        }
        let mut bytes = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let (name, value) = item.split_once('=').expect("key=value");
            let value = if i == 0 {
                let want = if items.len() == 1 {
                    format!("{key}*")
                } else {
                    format!("{key}*0*")
                };
                assert_eq!(name, want);
                value.strip_prefix("utf-8''").expect("charset")
            } else {
                assert_eq!(name, format!("{key}*{i}*"));
                value
            };
            let raw = value.as_bytes();
            let mut j = 0;
            while j < raw.len() {
                if raw[j] == b'%' {
                    let hex = std::str::from_utf8(&raw[j + 1..j + 3]).unwrap();
                    bytes.push(u8::from_str_radix(hex, 16).unwrap());
                    j += 3;
                } else {
                    bytes.push(raw[j]);
                    j += 1;
                }
            }
        }
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn plain_values_are_quoted_others_are_rfc_2231() {
        assert_eq!(parameter("filename", "a b.pdf"), ["filename=\"a b.pdf\""]);
        assert_eq!(
            parameter("filename", "say \"hi\""),
            ["filename=\"say \\\"hi\\\"\""]
        );
        assert_eq!(
            parameter("filename", "Grüße.pdf"),
            ["filename*=utf-8''Gr%C3%BC%C3%9Fe.pdf"]
        );
        assert_eq!(
            parameter("name", "=?utf-8?B?QQ==?="),
            ["name*=utf-8''%3D%3Futf%2D8%3FB%3FQQ%3D%3D%3F%3D"]
        );
    }

    #[test]
    fn long_values_are_continued_between_characters() {
        // The 218-byte filename.
        let filename = format!("{}.pdf", "Ünïcødé-".repeat(18));
        for value in [
            filename.clone(),
            "é".repeat(127),
            "€".repeat(85),
            "a=?".repeat(80),
        ] {
            let items = parameter("filename", &value);
            assert!(items.len() > 1, "{value}");
            for item in &items {
                assert!(item.len() + 2 <= MAX_PIECE_LEN, "{item}");
            }
            assert_eq!(decode("filename", &items), value);
        }
        let field = parameter_field(
            "Content-Disposition",
            "attachment",
            &[("filename".into(), filename.as_str().into())],
        );
        for line in field.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
            assert!(!line.contains("=?"), "{line}");
        }
    }
}
