//! `GET /v1/attachments/{message id}/{index}?expires=…&sig=…`: the bytes
//! behind an attachment's signed `url` in a webhook payload (issue 13
//! item 5; links are made by the delivery worker,
//! [`crate::model::attachment_url`]).
//!
//! No API key: the link is the credential, so the app can hand it to a
//! browser or a download job. Its signature binds the message id, the
//! index and the expiry; a tampered, expired or borrowed link (another
//! message, another index) is a `403` with one body for all, so the answer
//! tells nothing about which part was wrong or whether the message exists.
//! A valid link whose bytes are no longer kept (swept after expiry, or the
//! spool lost them) is a `404`; only the holder of a valid link sees it.
//!
//! The bytes are served as kept ([`crate::spool::kept`]), streamed from
//! disk: a 20 MB attachment is never in memory whole. `ETag` is the
//! SHA-256 of the bytes (the payload's `sha256`), so `If-None-Match`
//! answers `304`; one `Range: bytes=…` answers `206` (several ranges get
//! the whole body, which RFC 9110 allows), one past the end `416`.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::debug;

use super::{ApiError, ApiState};
use crate::model::attachment_url;
use crate::spool;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/v1/attachments/{id}/{index}", get(serve))
}

async fn serve(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // A path that does not even decode is refused like any bad link.
    let Ok(Path((id, index))) = path else {
        return forbidden();
    };
    let (expires, sig) = link_query(query.as_deref().unwrap_or(""));
    let now = spool::now_ms() / 1000;
    let key = &state.settings.link_key;
    let index = match attachment_url::verify(key, &id, &index, expires, sig, now) {
        Ok(i) => i,
        Err(why) => {
            debug!(message_id = %id, reason = ?why, "attachment link refused");
            return forbidden();
        }
    };
    let kept = match state.store.open_kept(&id, index).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this attachment is no longer kept",
            )
            .into_response();
        }
        Err(e) => return ApiError::unavailable(e).into_response(),
    };
    let meta = kept.meta.clone();
    let etag = format!("\"{}\"", meta.sha256);
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, value(&etag));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // The link is private to whoever got the payload.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    if header_text(&headers, header::IF_NONE_MATCH).is_some_and(|v| etag_matches(v, &etag)) {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    untrusted(
        &mut out,
        &meta.content_type,
        meta.filename.as_deref(),
        false,
    );
    // A Range for another version of the bytes (If-Range) gets them whole.
    let range_header = header_text(&headers, header::RANGE)
        .filter(|_| header_text(&headers, header::IF_RANGE).is_none_or(|v| v.trim() == etag));
    let (status, start, len) = match range(range_header, meta.size) {
        Span::Full => (StatusCode::OK, 0, meta.size),
        Span::Part { start, end } => {
            let content_range = format!("bytes {start}-{end}/{}", meta.size);
            out.insert(header::CONTENT_RANGE, value(&content_range));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Span::Unsatisfiable => {
            out.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes */{}", meta.size)),
            );
            out.remove(header::CONTENT_TYPE);
            out.remove(header::CONTENT_DISPOSITION);
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
    };
    let reader = match kept.range(start, len).await {
        Ok(r) => r,
        Err(e) => return ApiError::unavailable(e).into_response(),
    };
    out.insert(header::CONTENT_LENGTH, value(&len.to_string()));
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    (status, out, body).into_response()
}

/// The one answer for every refused link (no oracle).
fn forbidden() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this attachment link is not valid (altered, expired, or not for this attachment)",
    )
    .into_response()
}

/// `expires` and `sig` from a link's query (first of each; they are
/// digits and base64url, never percent-encoded by us).
fn link_query(query: &str) -> (Option<&str>, Option<&str>) {
    let mut expires = None;
    let mut sig = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) if expires.is_none() => expires = Some(v),
            Some(("sig", v)) if sig.is_none() => sig = Some(v),
            _ => {}
        }
    }
    (expires, sig)
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A header value we built from checked parts.
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 13.1.2).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

/// What part of `size` bytes a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    /// No range (or one we do not serve as a range): the whole body.
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A single byte range that selects nothing: `416`.
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 14.1.2): `a-b`, `a-` or `-n`. Other
/// units, several ranges and syntax errors are ignored (the whole body),
/// as the RFC lets a server do.
fn range(header: Option<&str>, size: u64) -> Span {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Span::Full;
    };
    if spec.contains(',') {
        return Span::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Span::Full;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first, last) {
        ("", n) => match number(n) {
            None => Span::Full,
            Some(0) => Span::Unsatisfiable,
            Some(_) if size == 0 => Span::Unsatisfiable,
            Some(n) => Span::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (a, b) => {
            let Some(start) = number(a) else {
                return Span::Full;
            };
            let end = match b {
                "" => u64::MAX,
                b => match number(b) {
                    Some(e) if e >= start => e,
                    _ => return Span::Full,
                },
            };
            if start >= size {
                Span::Unsatisfiable
            } else {
                Span::Part {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
    }
}

/// The headers of a part of a message served as it is (a sender's
/// bytes): its content type when it is well-formed, a safe
/// `Content-Disposition` (`inline` only when asked for, for `cid:`
/// images), and what keeps a browser from sniffing or running it on our
/// origin.
pub(super) fn untrusted(
    out: &mut HeaderMap,
    content_type: &str,
    filename: Option<&str>,
    inline: bool,
) {
    out.insert(header::CONTENT_TYPE, value(safe_content_type(content_type)));
    let disposition = content_disposition(filename);
    let disposition = match disposition.strip_prefix("attachment") {
        Some(rest) if inline => format!("inline{rest}"),
        _ => disposition,
    };
    out.insert(header::CONTENT_DISPOSITION, value(&disposition));
    // Whatever the sender declared, a browser must not run it on our origin.
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
}

/// `type/subtype` as kept, when both are RFC 9110 tokens; otherwise
/// `application/octet-stream`.
fn safe_content_type(ct: &str) -> &str {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match ct.split_once('/') {
        Some((t, s)) if token(t) && token(s) => ct,
        _ => "application/octet-stream",
    }
}

/// `Content-Disposition: attachment` with the filename (RFC 6266): an
/// ASCII `filename` fallback (anything that is not printable ASCII, a
/// quote, a backslash, a percent sign or a path separator becomes `_`)
/// and, when that lost something, the exact name as RFC 8187 `filename*`.
/// No byte of the name reaches the header unescaped.
fn content_disposition(filename: Option<&str>) -> String {
    let Some(name) = filename.filter(|n| !n.is_empty()) else {
        return "attachment".into();
    };
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%' | '/') => c,
            _ => '_',
        })
        .collect();
    let mut out = format!("attachment; filename=\"{fallback}\"");
    if fallback != name {
        out.push_str("; filename*=UTF-8''");
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Span::*;
        let cases: &[(Option<&str>, u64, Span)] = &[
            (None, 10, Full),
            (Some("bytes=0-3"), 10, Part { start: 0, end: 3 }),
            (Some("bytes=2-"), 10, Part { start: 2, end: 9 }),
            (Some("bytes=5-100"), 10, Part { start: 5, end: 9 }),
            (Some("bytes=-4"), 10, Part { start: 6, end: 9 }),
            (Some("bytes=-40"), 10, Part { start: 0, end: 9 }),
            (Some("bytes=9-9"), 10, Part { start: 9, end: 9 }),
            (Some(" bytes= 1-2 "), 10, Part { start: 1, end: 2 }),
            (Some("bytes=10-"), 10, Unsatisfiable),
            (Some("bytes=10-20"), 10, Unsatisfiable),
            (Some("bytes=-0"), 10, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=-1"), 0, Unsatisfiable),
            (Some("bytes=3-2"), 10, Full),
            (Some("bytes=0-1,4-5"), 10, Full),
            (Some("items=0-1"), 10, Full),
            (Some("bytes=a-b"), 10, Full),
            (Some("bytes=+1-2"), 10, Full),
            (Some("bytes=1"), 10, Full),
            (Some("bytes=-"), 10, Full),
        ];
        for (header, size, want) in cases {
            assert_eq!(range(*header, *size), *want, "{header:?} of {size}");
        }
    }

    #[test]
    fn content_dispositions_never_carry_raw_name_bytes() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "attachment"),
            (Some(""), "attachment"),
            (Some("report.pdf"), "attachment; filename=\"report.pdf\""),
            (
                Some("my report.pdf"),
                "attachment; filename=\"my report.pdf\"",
            ),
            (
                Some("résumé.pdf"),
                "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
            ),
            (
                Some("a\"b\\c.txt"),
                "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt",
            ),
            (
                Some("x\r\nSet-Cookie: a=b"),
                "attachment; filename=\"x__Set-Cookie: a=b\"; filename*=UTF-8''x%0D%0ASet-Cookie%3A%20a%3Db",
            ),
            (
                Some("../../etc/passwd"),
                "attachment; filename=\".._.._etc_passwd\"; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd",
            ),
            (
                Some("100%.txt"),
                "attachment; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt",
            ),
        ];
        for (name, want) in cases {
            let got = content_disposition(*name);
            assert_eq!(got, *want, "{name:?}");
            assert!(HeaderValue::from_str(&got).is_ok(), "{got}");
            assert!(got.is_ascii() && !got.contains(['\r', '\n']), "{got}");
        }
    }

    #[test]
    fn etags_and_content_types() {
        let etag = "\"abc\"";
        for (inm, want) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abcd\"", false),
            ("abc", false),
        ] {
            assert_eq!(etag_matches(inm, etag), want, "{inm}");
        }
        for (ct, want) in [
            ("application/pdf", "application/pdf"),
            ("text/html", "text/html"),
            ("image/svg+xml", "image/svg+xml"),
            ("text", "application/octet-stream"),
            ("text/plain; charset=x", "application/octet-stream"),
            ("a\r\nb/c", "application/octet-stream"),
            ("/x", "application/octet-stream"),
        ] {
            assert_eq!(safe_content_type(ct), want, "{ct}");
        }
    }

    #[test]
    fn link_queries() {
        assert_eq!(link_query("expires=1&sig=ab"), (Some("1"), Some("ab")));
        assert_eq!(link_query("sig=ab&x=y&expires=1"), (Some("1"), Some("ab")));
        assert_eq!(link_query("sig=a&sig=b"), (None, Some("a")));
        assert_eq!(link_query(""), (None, None));
    }
}
