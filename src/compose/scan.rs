//! The early scan of a `POST /v1/messages` body: every count and
//! tag/metadata size of [`super::limits`] checked on the raw JSON *before*
//! the request is deserialised.
//!
//! [`scan`] walks the body with serde visitors that keep no values
//! (`IgnoredAny`, borrowed `RawValue`s), and stops at the first element
//! over a cap. Only a body that passes is deserialised into a
//! [`SendRequest`](super::SendRequest), so nothing is built for a request
//! with a million attachments.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::error::{FieldError, escape_controls};
use super::limits::{
    Limits, MAX_ATTACHMENTS, MAX_HEADERS, MAX_METADATA_KEY_LEN, MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LEN, MAX_TAG_LEN, MAX_TAGS, check_count, check_len, check_recipients,
};

/// Why [`scan`] refused a body.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Not JSON (syntax, depth, trailing bytes): answered like any other
    /// malformed body.
    #[error("malformed JSON: {0}")]
    Json(serde_json::Error),
    /// A cap was exceeded.
    #[error(transparent)]
    Limit(FieldError),
}

/// Checks every count and tag/metadata size of a `POST /v1/messages` body
/// without building it, stopping at the first violation. Wrong types are
/// not its business: they pass here and the real deserialisation reports
/// them.
pub fn scan(body: &[u8], limits: &Limits) -> Result<(), ScanError> {
    let scan = Scan {
        limits,
        found: RefCell::new(None),
        to: Cell::new(0),
        cc: Cell::new(0),
        bcc: Cell::new(0),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = Top(&scan).deserialize(&mut de).and_then(|()| de.end());
    // A limit aborts the walk with a placeholder serde error; the real
    // error is the one recorded.
    if let Some(error) = scan.found.into_inner() {
        return Err(ScanError::Limit(error));
    }
    result.map_err(ScanError::Json)
}

/// State shared by the visitors of one scan.
struct Scan<'a> {
    limits: &'a Limits,
    found: RefCell<Option<FieldError>>,
    to: Cell<usize>,
    cc: Cell<usize>,
    bcc: Cell<usize>,
}

impl Scan<'_> {
    /// Records the violation and returns the error that stops the walk.
    fn fail<E: de::Error>(&self, error: FieldError) -> E {
        self.found.borrow_mut().get_or_insert(error);
        E::custom("request limit exceeded")
    }

    fn check<E: de::Error>(&self, result: Result<(), FieldError>) -> Result<(), E> {
        result.map_err(|e| self.fail(e))
    }
}

/// The top-level request fields the scan looks into.
#[derive(Clone, Copy)]
enum Key {
    To,
    Cc,
    Bcc,
    ReplyTo,
    Headers,
    Attachments,
    Tags,
    Metadata,
    Envelope,
    RcptTo,
    Other,
}

/// Reads an object key without keeping it.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "to" => Key::To,
            "cc" => Key::Cc,
            "bcc" => Key::Bcc,
            "reply_to" => Key::ReplyTo,
            "headers" => Key::Headers,
            "attachments" => Key::Attachments,
            "tags" => Key::Tags,
            "metadata" => Key::Metadata,
            "envelope" => Key::Envelope,
            "rcpt_to" => Key::RcptTo,
            _ => Key::Other,
        })
    }
}

/// A seed that is its own visitor, for any JSON value.
macro_rules! seed_via_visitor {
    ($ty:ty) => {
        impl<'de> DeserializeSeed<'de> for $ty {
            type Value = <Self as Visitor<'de>>::Value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
    };
}

/// `visit_str` and `visit_seq` of a visitor that looks only inside
/// objects: a string or a list in its place passes the scan.
macro_rules! skip_strings_and_lists {
    () => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(())
        }
    };
}

/// Implements the `visit_*` methods of a visitor that accepts any scalar
/// (and returns `$value`): values of the wrong type pass the scan.
macro_rules! accept_scalars {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The request object.
struct Top<'s, 'a>(&'s Scan<'a>);

seed_via_visitor!(Top<'_, '_>);

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    accept_scalars!(());
    skip_strings_and_lists!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let scan = self.0;
        let max_rcpt = scan.limits.max_recipients;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::To | Key::Cc | Key::Bcc => {
                    let cell = match key {
                        Key::To => &scan.to,
                        Key::Cc => &scan.cc,
                        _ => &scan.bcc,
                    };
                    map.next_value_seed(Count {
                        shape: Shape::OneOrMany,
                        on_element: &|| {
                            cell.set(cell.get() + 1);
                            check_recipients(scan.to.get(), scan.cc.get(), scan.bcc.get(), max_rcpt)
                        },
                        scan,
                    })?
                }
                Key::ReplyTo => map.next_value_seed(capped(
                    scan,
                    Shape::OneOrMany,
                    "reply_to",
                    max_rcpt,
                    "reply_to addresses (POSTERN_MAX_RECIPIENTS)",
                ))?,
                Key::Headers => map.next_value_seed(capped(
                    scan,
                    Shape::Map,
                    "headers",
                    MAX_HEADERS,
                    "extra headers",
                ))?,
                Key::Attachments => map.next_value_seed(capped(
                    scan,
                    Shape::Seq,
                    "attachments",
                    MAX_ATTACHMENTS,
                    "attachments",
                ))?,
                Key::Tags => map.next_value_seed(Tags(scan))?,
                Key::Metadata => map.next_value_seed(Metadata(scan))?,
                Key::Envelope => map.next_value_seed(Envelope(scan))?,
                Key::RcptTo | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// How a counted field is shaped in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A list, or one value (an address string or object) standing alone.
    OneOrMany,
    /// A list: its elements count.
    Seq,
    /// An object: its entries count.
    Map,
}

/// Counts the elements of one field, calling `on_element` after each; its
/// error stops the walk.
struct Count<'s, 'a, 'f> {
    scan: &'s Scan<'a>,
    shape: Shape,
    on_element: &'f dyn Fn() -> Result<(), FieldError>,
}

/// A [`Count`] with a fixed cap on its own elements.
struct Capped<'s, 'a> {
    scan: &'s Scan<'a>,
    shape: Shape,
    field: &'static str,
    max: usize,
    what: &'static str,
}

fn capped<'s, 'a>(
    scan: &'s Scan<'a>,
    shape: Shape,
    field: &'static str,
    max: usize,
    what: &'static str,
) -> Capped<'s, 'a> {
    Capped {
        scan,
        shape,
        field,
        max,
        what,
    }
}

impl<'de> DeserializeSeed<'de> for Capped<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let n = Cell::new(0usize);
        let on_element = || {
            n.set(n.get() + 1);
            check_count(self.field, n.get(), self.max, self.what)
        };
        Count {
            scan: self.scan,
            shape: self.shape,
            on_element: &on_element,
        }
        .deserialize(d)
    }
}

seed_via_visitor!(Count<'_, '_, '_>);

impl<'de> Visitor<'de> for Count<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list or an object")
    }
    accept_scalars!(());
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        if self.shape == Shape::OneOrMany {
            self.scan.check((self.on_element)())?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {
            if self.shape != Shape::Map {
                self.scan.check((self.on_element)())?;
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.shape {
            Shape::OneOrMany => self.scan.check((self.on_element)())?,
            Shape::Seq => {}
            Shape::Map => {
                while map.next_key::<IgnoredAny>()?.is_some() {
                    self.scan.check((self.on_element)())?;
                    map.next_value::<IgnoredAny>()?;
                }
                return Ok(());
            }
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// `tags`: a count and each tag's length.
struct Tags<'s, 'a>(&'s Scan<'a>);

seed_via_visitor!(Tags<'_, '_>);

impl<'de> Visitor<'de> for Tags<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of tags")
    }
    accept_scalars!(());
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(len) = seq.next_element_seed(StrLen)? {
            self.0
                .check(check_count("tags", index + 1, MAX_TAGS, "tags"))?;
            let field = format!("tags[{index}]");
            self.0.check(check_len(&field, len, MAX_TAG_LEN, "a tag"))?;
            index += 1;
        }
        Ok(())
    }
}

/// The length of a string (0 for any other value), without keeping it.
struct StrLen;

seed_via_visitor!(StrLen);

impl<'de> Visitor<'de> for StrLen {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    accept_scalars!(0);
    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        Ok(v.len())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(0)
    }
}

/// A `metadata` key, kept only while it is short enough to name in an
/// error.
struct MetaKey;

impl<'de> DeserializeSeed<'de> for MetaKey {
    type Value = Result<String, usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for MetaKey {
    type Value = Result<String, usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(if v.len() > MAX_METADATA_KEY_LEN {
            Err(v.len())
        } else {
            Ok(v.to_string())
        })
    }
}

/// `metadata`: a key count, each key's length and each value's JSON size.
struct Metadata<'s, 'a>(&'s Scan<'a>);

seed_via_visitor!(Metadata<'_, '_>);

impl<'de> Visitor<'de> for Metadata<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    accept_scalars!(());
    skip_strings_and_lists!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let scan = self.0;
        let mut n = 0;
        while let Some(key) = map.next_key_seed(MetaKey)? {
            n += 1;
            scan.check(check_count(
                "metadata",
                n,
                MAX_METADATA_KEYS,
                "metadata keys",
            ))?;
            let key = match key {
                Ok(key) => key,
                Err(len) => {
                    return Err(scan.fail(FieldError::new(
                        "too_long",
                        "metadata",
                        format!(
                            "a metadata key of {len} bytes is longer than {MAX_METADATA_KEY_LEN} bytes"
                        ),
                    )));
                }
            };
            // Borrowed from the body: the value is measured, not copied.
            let value: &RawValue = map.next_value()?;
            let field = format!("metadata.{}", escape_controls(&key));
            scan.check(check_len(
                &field,
                value.get().len(),
                MAX_METADATA_VALUE_LEN,
                "a metadata value (as JSON)",
            ))?;
        }
        Ok(())
    }
}

/// Raw mode's `envelope`: the count of `rcpt_to`.
struct Envelope<'s, 'a>(&'s Scan<'a>);

seed_via_visitor!(Envelope<'_, '_>);

impl<'de> Visitor<'de> for Envelope<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope object")
    }
    accept_scalars!(());
    skip_strings_and_lists!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let scan = self.0;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if matches!(key, Key::RcptTo) {
                map.next_value_seed(capped(
                    scan,
                    Shape::Seq,
                    "envelope.rcpt_to",
                    scan.limits.max_recipients,
                    "recipients (POSTERN_MAX_RECIPIENTS)",
                ))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn limits() -> Limits {
        Limits {
            max_recipients: 5,
            max_message_size: 1000,
        }
    }

    fn scan_value(value: &Value) -> Result<(), ScanError> {
        scan(value.to_string().as_bytes(), &limits())
    }

    /// The refused field and code, or `None` when the scan passes.
    fn refused(value: Value) -> Option<(&'static str, String)> {
        match scan_value(&value) {
            Ok(()) => None,
            Err(ScanError::Limit(e)) => {
                assert!(!e.message.is_empty());
                Some((e.code, e.field))
            }
            Err(ScanError::Json(e)) => panic!("{value}: not JSON? {e}"),
        }
    }

    fn list(n: usize, item: Value) -> Value {
        Value::Array(vec![item; n])
    }

    fn object(n: usize, value: Value) -> Value {
        Value::Object((0..n).map(|i| (format!("k{i}"), value.clone())).collect())
    }

    /// The refusal a case expects (code, field), or `None` for success.
    type Want = Option<(&'static str, &'static str)>;

    #[test]
    fn scan_table() {
        let a = json!("a@example.com");
        let attachment = json!({"filename": "a", "content": ""});
        let cases: Vec<(&str, Value, Want)> = vec![
            ("plain request", json!({"to": a, "text": "x"}), None),
            ("to at the cap", json!({"to": list(5, a.clone())}), None),
            (
                "to over the cap",
                json!({"to": list(6, a.clone())}),
                Some(("too_many", "to")),
            ),
            (
                "single values count one each",
                json!({"to": a, "cc": a, "bcc": list(3, a.clone())}),
                None,
            ),
            (
                "bcc tips the sum over",
                json!({"to": list(2, a.clone()), "cc": {"address": "c@example.com"}, "bcc": list(3, a.clone())}),
                Some(("too_many", "bcc")),
            ),
            (
                "the list named is the one that crosses in to, cc, bcc order",
                json!({"bcc": list(3, a.clone()), "to": list(3, a.clone())}),
                Some(("too_many", "bcc")),
            ),
            (
                "reply_to has its own cap",
                json!({"to": list(5, a.clone()), "reply_to": list(5, a.clone())}),
                None,
            ),
            (
                "reply_to over",
                json!({"reply_to": list(6, a.clone())}),
                Some(("too_many", "reply_to")),
            ),
            (
                "attachments at the cap",
                json!({"attachments": list(MAX_ATTACHMENTS, attachment.clone())}),
                None,
            ),
            (
                "attachments over",
                json!({"attachments": list(MAX_ATTACHMENTS + 1, attachment.clone())}),
                Some(("too_many", "attachments")),
            ),
            (
                "headers at the cap",
                json!({"headers": object(MAX_HEADERS, json!("v"))}),
                None,
            ),
            (
                "headers over",
                json!({"headers": object(MAX_HEADERS + 1, json!("v"))}),
                Some(("too_many", "headers")),
            ),
            (
                "tags at the cap",
                json!({"tags": list(MAX_TAGS, json!("t".repeat(MAX_TAG_LEN)))}),
                None,
            ),
            (
                "tags over",
                json!({"tags": list(MAX_TAGS + 1, json!("t"))}),
                Some(("too_many", "tags")),
            ),
            (
                "a tag too long",
                json!({"tags": ["ok", "t".repeat(MAX_TAG_LEN + 1)]}),
                Some(("too_long", "tags[1]")),
            ),
            (
                "a tag's length counts its decoded text",
                json!({"tags": ["\u{e9}".repeat(MAX_TAG_LEN / 2)]}),
                None,
            ),
            (
                "metadata at the cap",
                json!({"metadata": object(MAX_METADATA_KEYS, json!(1))}),
                None,
            ),
            (
                "metadata over",
                json!({"metadata": object(MAX_METADATA_KEYS + 1, json!(1))}),
                Some(("too_many", "metadata")),
            ),
            (
                "metadata key too long",
                json!({"metadata": {"k".repeat(MAX_METADATA_KEY_LEN + 1): 1}}),
                Some(("too_long", "metadata")),
            ),
            (
                "metadata value at the cap",
                json!({"metadata": {"k": "v".repeat(MAX_METADATA_VALUE_LEN - 2)}}),
                None,
            ),
            (
                "metadata value too long",
                json!({"metadata": {"order": "v".repeat(MAX_METADATA_VALUE_LEN - 1)}}),
                Some(("too_long", "metadata.order")),
            ),
            (
                "a nested metadata value is measured as a whole",
                json!({"metadata": {"n": list(MAX_METADATA_VALUE_LEN, json!(0))}}),
                Some(("too_long", "metadata.n")),
            ),
            (
                "envelope recipients at the cap",
                json!({"envelope": {"mail_from": "a@b.c", "rcpt_to": list(5, a.clone())}}),
                None,
            ),
            (
                "envelope recipients over",
                json!({"envelope": {"rcpt_to": list(6, a.clone()), "mail_from": "a@b.c"}}),
                Some(("too_many", "envelope.rcpt_to")),
            ),
            (
                "nested names are not top-level fields",
                json!({"envelope": {"to": list(6, a.clone())}, "metadata": {"to": 1}, "x": {"bcc": list(9, a.clone())}}),
                None,
            ),
            (
                "wrong types are left to deserialisation",
                json!({"to": 5, "headers": ["a"], "attachments": {"a": 1}, "tags": "t", "metadata": [1], "envelope": 1}),
                None,
            ),
            ("not an object", json!([1, 2]), None),
        ];
        for (name, request, want) in cases {
            let got = refused(request);
            assert_eq!(got.as_ref().map(|(c, f)| (*c, f.as_str())), want, "{name}");
        }
    }

    #[test]
    fn escaped_names_and_duplicates_are_counted() {
        // `\u0062cc` is `bcc`: the scan sees keys as the parser does.
        let body = format!(
            r#"{{"\u0062cc": [{}]}}"#,
            [r#""a@example.com""#; 6].join(",")
        );
        assert!(matches!(
            scan(body.as_bytes(), &limits()),
            Err(ScanError::Limit(FieldError { code: "too_many", ref field, .. })) if field == "bcc"
        ));
        // A repeated key cannot reset the count.
        let body = r#"{"to": ["a@b.c","a@b.c","a@b.c"], "to": ["a@b.c","a@b.c","a@b.c"]}"#;
        assert!(matches!(
            scan(body.as_bytes(), &limits()),
            Err(ScanError::Limit(_))
        ));
    }

    #[test]
    fn malformed_json_is_a_json_error() {
        for body in [&b"{"[..], b"{\"to\": [\"a\",]}", b"{} trailing", b""] {
            assert!(
                matches!(scan(body, &limits()), Err(ScanError::Json(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// The scan stops at the first element over a cap: whatever follows is
    /// never read, so a huge body is refused after a few elements.
    #[test]
    fn scan_stops_at_the_cap() {
        let mut body = String::from(r#"{"attachments": ["#);
        for _ in 0..=MAX_ATTACHMENTS {
            body.push_str(r#"{"filename":"a","content":""},"#);
        }
        // Not JSON from here on: a scan that read on would say so.
        body.push_str("this is never read");
        match scan(body.as_bytes(), &limits()) {
            Err(ScanError::Limit(e)) => assert_eq!(e.field, "attachments"),
            other => panic!("{other:?}"),
        }
    }
}
