//! The contract of a JSON request body, before any field rule: its media
//! type (`415` unless the client says it sends JSON) and its decoding
//! (`400` for bad syntax; `422 invalid_field` for the wrong shape, with
//! `field` naming where, e.g. `attachments[0].foo`). What the fields mean is
//! [`crate::compose`]'s business.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiError;

/// Why a `Content-Type` is refused; the text is the `415` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaTypeError {
    #[error("Content-Type is missing; send the body as application/json")]
    Missing,
    #[error("Content-Type must be application/json (or application/*+json)")]
    NotJson,
    #[error("a JSON body must be UTF-8 (RFC 8259); drop the charset or say utf-8")]
    Charset,
}

/// Decides whether a `Content-Type` value announces JSON: `application/json`
/// or a structured-syntax `application/<x>+json` (RFC 6839), in any case,
/// with any parameters except a `charset` other than UTF-8 (JSON exchanged
/// between systems is UTF-8, RFC 8259 §8.1, and this server reads nothing
/// else). A missing header is refused too: a client that does not say what
/// it sends (`curl -d` says form data) learns it here rather than through a
/// confusing parse error, and a browser form cannot post JSON cross-site
/// without a preflight.
pub fn check_media_type(value: Option<&str>) -> Result<(), MediaTypeError> {
    let value = value.ok_or(MediaTypeError::Missing)?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/').ok_or(MediaTypeError::NotJson)?;
    let json_subtype = subtype == "json"
        || subtype
            .strip_suffix("+json")
            .is_some_and(|s| !s.is_empty() && !s.contains('/'));
    if kind != "application" || !json_subtype {
        return Err(MediaTypeError::NotJson);
    }
    for param in parts {
        let Some((name, v)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("charset") {
            let v = v.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
                return Err(MediaTypeError::Charset);
            }
        }
    }
    Ok(())
}

/// Why a request body stopped: its time ran out (`POSTERN_HTTP_BODY_TIMEOUT`; the HTTP listener's
/// `DeadlineBody` puts it into the body it serves).
#[derive(Debug, thiserror::Error)]
#[error("the request body was not complete within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// Whether reading a body failed because the body's time ran out
/// (anywhere in the error's chain: axum and `Limited` wrap it).
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// `415 unsupported_media_type` unless the request's `Content-Type` is JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = match headers.get(header::CONTENT_TYPE) {
        None => None,
        // Not text at all: certainly not a JSON media type.
        Some(v) => Some(
            v.to_str()
                .map_err(|_| unsupported(MediaTypeError::NotJson))?,
        ),
    };
    check_media_type(value).map_err(unsupported)
}

fn unsupported(e: MediaTypeError) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        e.to_string(),
    )
    .field("Content-Type")
}

/// Parses a JSON body into `T`. Syntax errors are `400 invalid_json`
/// (`field: null`); a body of the wrong shape is `422 invalid_field` whose
/// `field` is the JSON path of the offending value (an unknown key
/// included), or `null` when the whole body is wrong (not an object).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde would read a struct from a JSON array too (its fields in
    // order), which names no field a client wrote: the body is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Malformed JSON is a 400 whatever its type.
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(json_error)?;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "the body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = field_path(e.path(), &e.inner().to_string());
        let e = e.into_inner();
        // Only a shape error has a place to name.
        let shape = e.is_data();
        let mut err = json_error(e);
        if shape {
            err.field = field;
        }
        err
    })?;
    // Trailing characters after the value are a syntax error, as in
    // `serde_json::from_slice`.
    de.end().map_err(json_error)?;
    Ok(value)
}

/// A body that is not JSON is `400 invalid_json`; JSON of the wrong shape
/// is `422 invalid_field`.
pub fn json_error(e: serde_json::Error) -> ApiError {
    if e.is_data() {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            e.to_string(),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {e}"),
        )
    }
}

/// The JSON path where a shape error happened, in the notation of every
/// other `field` (`to[1]`, `headers.X-Foo`, `attachments[0].content`).
/// serde reports a missing or duplicate field at the object that lacks or
/// repeats it, so that field's name (from the message) is appended: the
/// client is told `attachments[0].filename`, not `attachments[0]`.
fn field_path(path: &serde_path_to_error::Path, message: &str) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut out, key),
            // Past a value serde cannot name, a longer path would be a guess.
            Segment::Unknown => break,
        }
    }
    for prefix in ["missing field `", "duplicate field `"] {
        if let Some(name) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name)
        {
            push_key(&mut out, name);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Longest key echoed in `field`: a client-chosen key can be as long as the
/// body, and the answer should not grow with it.
const MAX_KEY_CHARS: usize = 128;

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    match key.char_indices().nth(MAX_KEY_CHARS) {
        Some((cut, _)) => {
            out.push_str(&key[..cut]);
            out.push('…');
        }
        None => out.push_str(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::SendRequest;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            "application/json; charset=utf8",
            "application/json; boundary=x",
            "application/json;",
            " application/json ",
            "application/merge-patch+json",
            "application/vnd.postern.v1+json",
        ] {
            assert_eq!(check_media_type(Some(ok)), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            ("", MediaTypeError::NotJson),
            ("json", MediaTypeError::NotJson),
            ("text/plain", MediaTypeError::NotJson),
            ("text/json", MediaTypeError::NotJson),
            ("application/x-www-form-urlencoded", MediaTypeError::NotJson),
            ("multipart/form-data; boundary=x", MediaTypeError::NotJson),
            ("application/jsonx", MediaTypeError::NotJson),
            ("application/+json", MediaTypeError::NotJson),
            ("application/json/x", MediaTypeError::NotJson),
            ("application/*", MediaTypeError::NotJson),
            ("*/*", MediaTypeError::NotJson),
            ("application/json; charset=latin1", MediaTypeError::Charset),
            ("application/json; charset=utf-16", MediaTypeError::Charset),
        ] {
            assert_eq!(check_media_type(Some(bad)), Err(why), "{bad:?}");
        }
        assert_eq!(check_media_type(None), Err(MediaTypeError::Missing));
    }

    fn shape_error(body: &str) -> (StatusCode, &'static str, Option<String>) {
        let e = decode::<SendRequest>(body.as_bytes()).unwrap_err();
        (e.status, e.code, e.field)
    }

    #[test]
    fn shape_errors_name_the_field() {
        let unprocessable = |f: Option<&str>| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                f.map(str::to_string),
            )
        };
        for (body, field) in [
            (r#"{"nope": 1}"#, Some("nope")),
            (r#"{"from": "a@b", "bcc_list": []}"#, Some("bcc_list")),
            (r#"{"to": 5}"#, Some("to")),
            (r#"{"text": ["x"]}"#, Some("text")),
            (r#"{"from": {"adress": "a@b"}}"#, Some("from.adress")),
            (r#"{"from": {"name": "A"}}"#, Some("from.address")),
            (
                r#"{"attachments": [{"filename": "a", "content": "", "foo": 1}]}"#,
                Some("attachments[0].foo"),
            ),
            (
                r#"{"attachments": [{"filename": "a", "content": ""}, {"content": ""}]}"#,
                Some("attachments[1].filename"),
            ),
            (
                r#"{"attachments": [{"filename": "a", "content": 7}]}"#,
                Some("attachments[0].content"),
            ),
            (r#"{"headers": {"X-A": 5}}"#, Some("headers.X-A")),
            (
                r#"{"envelope": {"mail_from": "a@b", "rcpt_to": [], "x": 1}}"#,
                Some("envelope.x"),
            ),
            (
                r#"{"envelope": {"mail_from": "a@b"}}"#,
                Some("envelope.rcpt_to"),
            ),
            (r#"{"tags": ["a", 2]}"#, Some("tags[1]")),
            (r#"{"subject": "a", "subject": "b"}"#, Some("subject")),
            // The list-or-one form is decided as a whole: serde cannot say
            // which element of an address list is wrong.
            (r#"{"to": [{"adress": "a@b"}]}"#, Some("to")),
            ("[]", None),
            ("5", None),
            (" null", None),
            (r#"[{"from": "a@b"}]"#, None),
            (r#"["a@b", "c@d"]"#, None),
        ] {
            assert_eq!(shape_error(body), unprocessable(field), "{body}");
        }
    }

    #[test]
    fn long_unknown_keys_are_cut_in_field() {
        let key = "k".repeat(10_000);
        let field = shape_error(&format!(r#"{{"{key}": 1}}"#)).2.unwrap();
        assert_eq!(field, format!("{}…", "k".repeat(MAX_KEY_CHARS)));
        let key = "é".repeat(MAX_KEY_CHARS);
        assert_eq!(shape_error(&format!(r#"{{"{key}": 1}}"#)).2, Some(key));
    }

    #[test]
    fn syntax_errors_are_400_without_field() {
        for body in [
            "",
            "{",
            r#"{"from": "#,
            "{} x",
            r#"{"to": [1,]}"#,
            "[1,",
            "nul",
            "\x0c{}",
        ] {
            assert_eq!(
                shape_error(body),
                (StatusCode::BAD_REQUEST, "invalid_json", None),
                "{body:?}"
            );
        }
        let ok: SendRequest = decode(b" {} \n").unwrap();
        assert_eq!(ok, SendRequest::default());
    }
}
