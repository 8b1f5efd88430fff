//! The JSON body of `POST /v1/messages` as it is deserialised: the input
//! types and their serde rules (unknown fields refused, an address as a
//! string or an object, a value or a list). What the fields may hold is
//! checked later, by [`super::compose`].

use std::collections::BTreeMap;

use crate::model::one_or_many::OneOrMany;
use serde::Deserialize;
use serde_json::Value;

/// JSON body of `POST /v1/messages`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Author; also the SMTP `MAIL FROM` in structured mode.
    pub from: Option<AddressInput>,
    pub to: Option<OneOrMany<AddressInput>>,
    pub cc: Option<OneOrMany<AddressInput>>,
    /// Envelope-only recipients: never written to the message.
    pub bcc: Option<OneOrMany<AddressInput>>,
    pub reply_to: Option<OneOrMany<AddressInput>>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Extra header fields. A map cannot carry duplicates or an order, which
    /// is acceptable for the `X-*`/`List-*` style headers this is meant for.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
    /// Stored by the API layer; not part of the message.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Stored by the API layer; not part of the message.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
    /// Base64 of a complete RFC 5322 message; requires `envelope`.
    pub raw: Option<String>,
    /// SMTP envelope for `raw`; refused without it.
    pub envelope: Option<EnvelopeInput>,
}

/// An address as accepted in JSON: `"Name <a@b>"`, `"<a@b>"`, `"a@b"` or
/// `{"name": "Name", "address": "a@b"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressInput {
    Text(String),
    Object {
        name: Option<String>,
        address: String,
    },
}

/// Object form of [`AddressInput`]. Kept as a struct so that unknown keys
/// (a typo such as `adress`) are refused, which serde cannot do on a variant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressObject {
    #[serde(default)]
    name: Option<String>,
    address: String,
}

/// Hand-written rather than `#[serde(untagged)]`: serde lets a struct be
/// deserialised from a JSON array, so an untagged object variant would read
/// `["x@a", "y@b"]` as `{name: "x@a", address: "y@b"}` and a list of two
/// recipients would silently become one. Only strings and maps are accepted.
impl<'de> Deserialize<'de> for AddressInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddressVisitor;

        impl<'de> serde::de::Visitor<'de> for AddressVisitor {
            type Value = AddressInput;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address string or an object with `address` and optional `name`")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<AddressInput, E> {
                Ok(AddressInput::Text(value.to_string()))
            }

            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<AddressInput, E> {
                Ok(AddressInput::Text(value))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AddressInput, A::Error> {
                let AddressObject { name, address } =
                    AddressObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(AddressInput::Object { name, address })
            }
        }

        deserializer.deserialize_any(AddressVisitor)
    }
}

/// One attachment of a structured request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    pub filename: String,
    /// `type/subtype`, optionally with `; key=value` parameters; defaults to
    /// [`DEFAULT_CONTENT_TYPE`](super::attachment::DEFAULT_CONTENT_TYPE).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Standard base64 (RFC 4648 §4, padded, no whitespace).
    pub content: String,
    /// Makes the attachment an inline part of `multipart/related`; angle
    /// brackets are optional and stripped.
    #[serde(default)]
    pub content_id: Option<String>,
}

/// SMTP envelope for raw mode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeInput {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::test_support::req;
    use serde_json::json;

    #[test]
    fn deserialization_shapes() {
        let request = req(json!({
            "from": {"address": "a@example.com"},
            "to": "b@example.com",
            "cc": ["c@example.com", {"name": "D", "address": "d@example.com"}],
            "text": "x",
            "attachments": [{"filename": "f", "content": ""}]
        }));
        assert_eq!(
            request.from,
            Some(AddressInput::Object {
                name: None,
                address: "a@example.com".into()
            })
        );
        assert!(matches!(
            request.to,
            Some(OneOrMany::One(AddressInput::Text(_)))
        ));
        assert_eq!(request.cc.as_ref().map(|cc| cc.as_slice().len()), Some(2));
        assert_eq!(request.attachments[0].content_type, None);
        assert!(
            request.headers.is_empty() && request.tags.is_empty() && request.metadata.is_empty()
        );

        for unknown in [
            json!({"from": "a@example.com", "bogus": 1}),
            json!({"from": {"address": "a@example.com", "nmae": "typo"}}),
            json!({"attachments": [{"filename": "f", "content": "", "inline": true}]}),
            json!({"raw": "", "envelope": {"mail_from": "a@b", "rcpt_to": [], "x": 1}}),
        ] {
            assert!(
                serde_json::from_value::<SendRequest>(unknown.clone()).is_err(),
                "{unknown}"
            );
        }
    }
}
